"""Measured speed: one protocol for every comparison (``compare_speed``: warm-up, interleaved
rounds, process CPU time, median speed-up with its interquartile range); ``latency_ms`` /
``measure_latency`` give one model's absolute wall-clock latency, which is not comparable between runs.
"""
from __future__ import annotations

import functools
import math
import os
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils import benchmark

from .records import format_spread

LATENCY_THREADS = 2  # the course machine has two cores; every latency is measured with these
LATENCY_BATCHES = (1, 256)


def latency_ms(model: nn.Module, batch_size: int, threads: int = LATENCY_THREADS,
               min_run_time: float = 1.0) -> float:
    """Median CPU latency in milliseconds of one forward pass at ``batch_size`` (torch.utils.benchmark).

    An absolute wall-clock time of one model: it moves by tens of percent between runs on a shared
    machine. To compare models, use ``compare_speed`` (interleaved rounds, process CPU time).

    The timer first runs for half of ``min_run_time`` unrecorded: at batch 256 the first calls pay
    for oneDNN's primitive set-up and for fresh activation memory, and a few calls did not cover it
    (the same model measured 138 ms, then 46-53 ms, in one process).
    """
    model.eval()  # (an exported program's eval() returns no module)
    model = model.cpu()
    x = torch.rand(batch_size, 1, 28, 28)
    timer = benchmark.Timer(stmt="model(x)", globals={"model": model, "x": x},
                            num_threads=threads, label="latency")
    with torch.no_grad():
        timer.blocked_autorange(min_run_time=min_run_time / 2)  # warm-up, discarded
        measurement = timer.blocked_autorange(min_run_time=min_run_time)
    return measurement.median * 1e3


def measure_latency(model: nn.Module, batch_sizes=LATENCY_BATCHES, threads: int = LATENCY_THREADS,
                    min_run_time: float = 1.0) -> dict[str, float]:
    """``{"latency_ms_b1": ..., "latency_ms_b256": ...}`` for the given batch sizes (wall-clock).

    Not for comparisons between models or runs: those use ``compare_speed``.
    """
    with torch.no_grad():
        return {f"latency_ms_b{b}": latency_ms(model, b, threads, min_run_time) for b in batch_sizes}


SPEED_THREADS = 1            # process CPU time sums over threads: one thread keeps it a clean per-call cost
SPEED_BATCHES = (1, 256)
SPEED_ROUNDS = 20
SPEED_WARMUP_S = 0.2        # wall seconds of unrecorded calls per model and batch size
MIN_BLOCK_S = 0.025         # automatic calls_per_round: at least this much CPU time per model per round
MAX_CALLS_PER_ROUND = 1000


@dataclass(frozen=True)
class Spread:
    """The median of per-round values with their first and third quartiles."""

    median: float
    q1: float
    q3: float

    @classmethod
    def of(cls, values) -> "Spread":
        q1, median, q3 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
        return cls(float(median), float(q1), float(q3))

    def __str__(self) -> str:
        return format_spread(self.median, self.q1, self.q3)


@dataclass(frozen=True)
class ModelSpeed:
    """One model at one batch size: its speed-up over the reference and its time per call."""

    model: str
    batch_size: int
    speedup: Spread          # per-round ratios reference / model, process CPU time
    wall_speedup: Spread     # the same rounds by the wall clock
    cpu_ms: float            # median process CPU milliseconds per call
    wall_ms: float           # median wall-clock milliseconds per call
    calls_per_round: int
    rounds: tuple = field(default=(), repr=False)  # per round: (CPU ratio, wall ratio, CPU ms, wall ms)


@dataclass(frozen=True)
class SpeedComparison:
    """What ``compare_speed`` measured: one ``ModelSpeed`` per model and batch size."""

    reference: str
    threads: int
    rounds: int
    results: tuple[ModelSpeed, ...]
    clock: str = "process_time"

    def get(self, model: str, batch_size: int) -> ModelSpeed:
        for result in self.results:
            if result.model == model and result.batch_size == batch_size:
                return result
        raise KeyError(f"no measurement of {model!r} at batch {batch_size}")

    def speedup_over(self, model: str, other: str, batch_size: int) -> Spread:
        """``model``'s CPU-time speed-up over ``other`` (both timed in this comparison), from the same
        interleaved rounds: e.g. a pruned model over the *compiled* baseline, beside the reference."""
        mine, theirs = self.get(model, batch_size).rounds, self.get(other, batch_size).rounds
        if not mine or len(mine) != len(theirs):
            raise ValueError(f"{model!r} and {other!r} were not timed in the same rounds")
        return Spread.of([t[2] / m[2] for m, t in zip(mine, theirs)])

    def to_frame(self):
        """A pandas DataFrame, one row per model and batch size (for notebooks)."""
        import pandas as pd

        rows = []
        for r in self.results:
            row = {"model": r.model, "batch_size": r.batch_size}
            for clock, spread in (("speedup", r.speedup), ("wall_speedup", r.wall_speedup)):
                row.update({clock: spread.median, f"{clock}_q1": spread.q1, f"{clock}_q3": spread.q3})
            row.update(cpu_ms=r.cpu_ms, wall_ms=r.wall_ms, calls_per_round=r.calls_per_round)
            rows.append(row)
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        return asdict(self)


_MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's largest: every activation of the course's models fits below
_TRIM_THRESHOLD_BYTES = 1024 ** 3


@functools.cache
def reuse_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks up to 32 MiB for reuse instead of returning them to the OS.

    By default glibc hands a large block (above a threshold that starts at 128 KiB) straight back to
    the kernel when it is freed, so the next call maps it again and pays a page fault per 4 KiB. Measured
    here: the dense baseline at batch 256 (conv outputs of 25.7 MB) took about 17,000 page faults and
    50 ms of kernel time per call, a quarter of its CPU time, while the pruned models (smaller outputs)
    took none; that cost moves with the machine's memory state: two benchmark runs with it disagreed by
    up to 18% at batch 256, without it by at most 7.5%. PyTorch's CPU tuning guide recommends an
    allocator that reuses memory (jemalloc, TCMalloc) for the same reason. Process-wide, set once
    (cached); returns False (and changes nothing) where the C library is not glibc.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES))


def compare_speed(models: dict[str, nn.Module], reference: str, batch_sizes=SPEED_BATCHES,
                  threads: int = SPEED_THREADS, rounds: int = SPEED_ROUNDS,
                  calls_per_round: int | None = None, warmup_s: float = SPEED_WARMUP_S,
                  input_shape=(1, 28, 28), progress: bool = False) -> SpeedComparison:
    """Speed-up of every model over ``models[reference]`` on the same random input, per batch size.

    The protocol: each model is warmed up (``warmup_s`` of unrecorded calls: oneDNN set-up, fresh
    activation memory), then the models run interleaved in ``rounds`` rounds,
    each round timing ``calls_per_round`` calls of each model (None: enough calls for about
    ``MIN_BLOCK_S`` of CPU time, from the warm-up). Each round gives the ratio
    reference time / model time; the result is the median of those ratios with its interquartile
    range (q1, q3), plus the median milliseconds per call. Each round starts one model later
    (A B C, B C A, C A B, ...) so that no model always runs first, or right after the same one.
    Models run in eval mode under
    ``torch.no_grad`` at ``threads`` threads; both the thread count and the models' modes are
    restored afterwards.

    The primary clock is **process CPU time** (``time.process_time``), with the wall clock
    (``time.perf_counter``) beside it: other tenants of a shared machine steal wall time, not the
    process's CPU time. Measured on the course's shared two-core machine: wall-clock medians of the
    same two models moved between 1.85x and 2.82x from run to run; interleaved CPU-time ratios gave
    2.55x, 2.55x, 2.57x. With ``threads > 1`` the process CPU time *sums over the threads* (and
    includes threads spinning while they wait), so it measures the work, not the latency a user
    waits for: compare at one thread (the default) and read the wall clock for parallel speed-ups.
    Freed memory is kept for reuse (``reuse_freed_memory``): otherwise the largest model pays page
    faults on every call, in kernel time that moves from run to run.
    CPU time does not remove contention for shared caches and memory bandwidth: timing all 38
    saved models three times at a load of 8-14 on two cores moved batch-256 ratios by up to 35%
    between runs (within-run interquartile ranges about +-10%).
    """
    _check_speed_args(models, reference, batch_sizes, threads, rounds, calls_per_round, warmup_s)
    reuse_freed_memory()  # no model pays page faults for its activations on every call (see there)
    modes = {module: module.training for model in models.values() for module in model.modules()}
    previous_threads = torch.get_num_threads()
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(batch_sizes) * rounds, desc="speed rounds", unit="round")
    torch.set_num_threads(threads)
    try:
        for model in models.values():
            model.eval()
        results = []
        with torch.no_grad():
            for batch_size in batch_sizes:
                x = torch.rand((batch_size, *input_shape), generator=torch.Generator().manual_seed(0))
                results += _time_interleaved(models, reference, x, rounds, calls_per_round, warmup_s, bar)
    finally:
        torch.set_num_threads(previous_threads)
        for module, training in modes.items():
            module.training = training
        if bar is not None:
            bar.close()
    return SpeedComparison(reference, threads, rounds, tuple(results))


def _check_speed_args(models, reference, batch_sizes, threads, rounds, calls_per_round, warmup_s):
    if not isinstance(models, dict) or not models:
        raise ValueError("models must be a non-empty dict {name: nn.Module}")
    for name, model in models.items():
        if not isinstance(model, nn.Module):
            raise TypeError(f"models[{name!r}] is a {type(model).__name__}, not an nn.Module")
        if any(t.device.type != "cpu" for t in (*model.parameters(), *model.buffers())):
            raise ValueError(f"models[{name!r}] is not on the CPU: process CPU time would time only "
                             "the kernel launches")
    if reference not in models:
        raise ValueError(f"reference {reference!r} is not one of the models {list(models)}")
    if not batch_sizes or any(not isinstance(b, int) or isinstance(b, bool) or b < 1 for b in batch_sizes):
        raise ValueError(f"batch_sizes must be positive integers, got {batch_sizes!r}")
    for label, value, least in (("threads", threads, 1), ("rounds", rounds, 3)):
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ValueError(f"{label} must be an integer >= {least}, got {value!r}")
    if calls_per_round is not None and (not isinstance(calls_per_round, int) or calls_per_round < 1):
        raise ValueError(f"calls_per_round must be None (automatic) or an integer >= 1, got {calls_per_round!r}")
    if not warmup_s >= 0:
        raise ValueError(f"warmup_s must be >= 0 seconds, got {warmup_s!r}")


def _warm_up(model: nn.Module, x: torch.Tensor, warmup_s: float) -> float:
    """Run ``model(x)`` for ``warmup_s`` wall seconds (two calls at least); CPU seconds of the last call."""
    start = time.perf_counter()
    calls = 0
    while calls < 2 or time.perf_counter() - start < warmup_s:
        c0 = time.process_time()
        model(x)
        last = time.process_time() - c0
        calls += 1
    return last


def _time_interleaved(models, reference, x, rounds, calls_per_round, warmup_s, bar) -> list[ModelSpeed]:
    resolution = time.get_clock_info("process_time").resolution
    block_s = max(MIN_BLOCK_S, 100 * resolution)
    calls = {}
    for name, model in models.items():
        per_call = max(_warm_up(model, x, warmup_s), resolution)
        calls[name] = calls_per_round or min(MAX_CALLS_PER_ROUND, max(1, math.ceil(block_s / per_call)))
    cpu = {name: [] for name in models}
    wall = {name: [] for name in models}
    names = list(models)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:  # each round starts one later
            model = models[name]
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(calls[name]):
                model(x)
            c1, w1 = time.process_time(), time.perf_counter()
            cpu[name].append((c1 - c0) / calls[name])
            wall[name].append((w1 - w0) / calls[name])
        if bar is not None:
            bar.update()
    if any(t <= 0 for times in cpu.values() for t in times):
        raise RuntimeError("the process clock did not advance during a round: raise calls_per_round")
    ref_cpu, ref_wall = np.array(cpu[reference]), np.array(wall[reference])
    return [_model_speed(name, len(x), calls[name],
                         list(zip(ref_cpu / np.array(cpu[name]), ref_wall / np.array(wall[name]),
                                  np.array(cpu[name]) * 1e3, np.array(wall[name]) * 1e3)))
            for name in models]


def _model_speed(name: str, batch_size: int, calls_per_round: int, rounds: list) -> ModelSpeed:
    """A ``ModelSpeed`` from its per-round samples (CPU ratio, wall ratio, CPU ms, wall ms)."""
    cpu_ratio, wall_ratio, cpu_ms, wall_ms = (np.array(column, dtype=float) for column in zip(*rounds))
    return ModelSpeed(name, batch_size, Spread.of(cpu_ratio), Spread.of(wall_ratio), float(np.median(cpu_ms)),
                      float(np.median(wall_ms)), calls_per_round,
                      tuple(tuple(float(v) for v in sample) for sample in rounds))


def pool_speed(comparisons: list[SpeedComparison]) -> SpeedComparison:
    """One comparison from several of the same models, threads and clock: their rounds pooled.

    ``helpers.benchmark`` times each pair in several passes spread over its whole run, so that every
    file's ratio samples the same slow changes of a shared machine (another tenant's memory traffic
    starting or stopping), not only the minute in which its pair happened to run.
    """
    if not comparisons:
        raise ValueError("pool_speed needs at least one SpeedComparison")
    first = comparisons[0]
    keys = [(r.model, r.batch_size) for r in first.results]
    for other in comparisons[1:]:
        if (other.reference, other.threads, other.clock) != (first.reference, first.threads, first.clock):
            raise ValueError("pool_speed: comparisons differ in reference, threads or clock")
        if sorted(keys) != sorted((r.model, r.batch_size) for r in other.results):
            raise ValueError("pool_speed: comparisons time different models or batch sizes")
    pooled = []
    for model, batch in keys:
        parts = [c.get(model, batch) for c in comparisons]
        if any(not part.rounds for part in parts):
            raise ValueError(f"pool_speed: {model!r} at batch {batch} carries no per-round samples")
        pooled.append(_model_speed(model, batch, int(np.median([p.calls_per_round for p in parts])),
                                   [sample for part in parts for sample in part.rounds]))
    return SpeedComparison(first.reference, first.threads, sum(c.rounds for c in comparisons), tuple(pooled),
                           first.clock)


def compile_unavailable() -> str | None:
    """Why ``torch.compile`` cannot build CPU kernels here (its inductor backend needs a C++
    compiler), or None when it can."""
    compilers = [os.environ.get("CXX"), "g++", "c++", "clang++"]
    if not any(shutil.which(c) for c in compilers if c):
        return "no C++ compiler (g++, c++ or clang++) on PATH: torch.compile's inductor needs one on the CPU"
    return None


RECOMPILE_LIMIT = 1024  # compiled graphs per code object: one per model and batch size of a benchmark


def compiled_model(model: nn.Module, batch_sizes=SPEED_BATCHES, input_shape=(1, 28, 28),
                   threads: int = SPEED_THREADS) -> tuple[nn.Module, float]:
    """``(torch.compile(model, dynamic=False), seconds)``: compiled for each batch size by one call
    each, so that compiling (the seconds returned, wall clock) stays out of any timed call. The
    weights are frozen into the kernels (inductor's ``freezing``, as ``TORCHINDUCTOR_FREEZING=1``):
    inference only, and what a PT2E int8 program needs to fuse its int8 kernels. Compiled at
    ``threads`` (the thread count ``compare_speed`` times at): inductor's int8 kernels keep the
    thread count they were built for (compiled at 2 and timed at 1, PT2E int8 ran about 3x slower)."""
    from torch._dynamo import config as dynamo_config
    from torch._inductor import config as inductor_config

    reason = compile_unavailable()
    if reason:
        raise RuntimeError(reason)
    model.eval()  # (an exported program's eval() returns no module)
    # dynamo caches compiled graphs per code object: every FashionCNN shares one forward, and past
    # recompile_limit entries (8: four models at two batch sizes) it runs the model eagerly, silently
    # (the benchmark's fifth float file on was "compiled" in 0.1 s and timed eager). Room for every file:
    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, RECOMPILE_LIMIT)
    dynamo_config.accumulated_recompile_limit = max(dynamo_config.accumulated_recompile_limit, RECOMPILE_LIMIT)
    compiled = torch.compile(model, dynamic=False)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        with torch.no_grad(), inductor_config.patch(freezing=True), warnings.catch_warnings():
            # inductor's mkldnn lowering of int8 weights warns "To copy construct from a tensor": its code, not ours
            warnings.filterwarnings("ignore", message="To copy construct from a tensor", category=UserWarning)
            for batch_size in batch_sizes:
                compiled(torch.zeros((batch_size, *input_shape)))
    finally:
        torch.set_num_threads(previous_threads)
    return compiled, time.perf_counter() - start
