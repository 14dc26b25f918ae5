import os
from pathlib import Path

import pytest
import torch
from torch import nn

from helpers.counting import count_macs, count_nonzero_parameters, file_size, layer_sparsity, sparsity
from helpers.speed import measure_latency
from helpers.models import build_model


def test_sparsity_counts_zero_weights_of_prunable_layers_only():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 26 * 26, 4))
    with torch.no_grad():
        model[0].weight.zero_()              # 18 zeros of 18
        model[3].weight.fill_(1.0)
        model[3].weight[0, :100] = 0.0       # 100 zeros of 5408
        model[3].bias.zero_()                # biases do not count
    assert layer_sparsity(model) == {"0": 1.0, "3": 100 / 5408}
    assert sparsity(model) == 118 / (18 + 5408)
    assert count_nonzero_parameters(model) == 5408 - 100 + 2  # BN γ = 1, β = 0


def test_macs_match_the_hand_formula():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_macs(conv, (1, 3, 10, 10)) == 8 * 10 * 10 * 3 * 9
    linear = nn.Linear(20, 7)
    assert count_macs(linear, (4, 20)) == 20 * 7  # per image
    convs = 28 * 28 * 32 * 9 + 14 * 14 * 64 * 32 * 9 + 7 * 7 * 128 * 64 * 9
    fcs = 1152 * 1000 + 1000 * 120 + 120 * 10
    assert count_macs(build_model()) == convs + fcs


@pytest.mark.timing
def test_latency_is_positive_and_grows_with_batch():
    latency = measure_latency(build_model(), batch_sizes=(1, 256), min_run_time=0.1)
    assert 0 < latency["latency_ms_b1"] < latency["latency_ms_b256"]  # 256x the work


def test_file_size_is_bytes_on_disk(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 1234)
    assert file_size(path) == 1234


# --- compare_speed: the one protocol for speed comparisons ------------------------------------

import numpy as np  # noqa: E402

from helpers.speed import Spread, compare_speed, pool_speed, reuse_freed_memory  # noqa: E402


def _linear_stacks(short: int, long: int, width: int = 256) -> tuple[nn.Sequential, nn.Sequential]:
    """Two stacks of one shared Linear layer: the same weights in cache, only the call count differs
    (distinct layers measured ~5x for 4x the layers: 8 of them overflow the L2 cache)."""
    torch.manual_seed(0)
    layer = nn.Linear(width, width)
    return nn.Sequential(*[layer] * short), nn.Sequential(*[layer] * long)


class _Logged(nn.Module):
    """Appends its name to ``log`` at every call (to see the interleaving order)."""

    def __init__(self, name: str, log: list):
        super().__init__()
        self.name, self.log, self.layer = name, log, nn.Linear(8, 8)

    def forward(self, x):
        self.log.append(self.name)
        return self.layer(x)


@pytest.mark.timing
def test_four_times_the_layers_is_about_four_times_slower():
    short, long = _linear_stacks(2, 8)
    models = {"long": long, "short": short, "long_again": long}
    result = compare_speed(models, "long", batch_sizes=(1, 64), rounds=7, warmup_s=0.05, input_shape=(256,))
    assert 2.0 < result.get("short", 1).speedup.median < 6.0  # per-call overhead weighs more at batch 1
    short = result.get("short", 64)
    assert 3.0 < short.speedup.median < 5.0, short
    assert short.speedup.q1 <= short.speedup.median <= short.speedup.q3
    assert 0.8 < result.get("long_again", 64).speedup.median < 1.25  # the same model timed apart: about 1
    # the median of per-round ratios agrees with the ratio of median times: a ratio taken upside down fails
    assert 0.8 < short.speedup.median / (result.get("long", 64).cpu_ms / short.cpu_ms) < 1.25
    assert result.get("short", 64).cpu_ms < result.get("long", 64).cpu_ms
    assert result.threads == 1 and result.clock == "process_time" and result.rounds == 7


def test_models_run_interleaved_in_rounds_and_threads_and_modes_are_restored():
    log = []
    models = {name: _Logged(name, log) for name in "ABC"}
    models["A"].eval()  # a fresh module is in training mode: A eval, B and C training
    threads_before = torch.get_num_threads()
    result = compare_speed(models, "A", batch_sizes=(1, 4), threads=threads_before + 1, rounds=3,
                           calls_per_round=2, warmup_s=0.0, input_shape=(8,))
    per_batch = len(log) // 2
    for batch_log in (log[:per_batch], log[per_batch:]):
        warmup, timed = batch_log[:-18], batch_log[-18:]
        assert timed == ["A", "A", "B", "B", "C", "C", "B", "B", "C", "C", "A", "A", "C", "C", "A", "A", "B", "B"]
        assert set(warmup) == {"A", "B", "C"}  # every model warmed up before the first round
    assert torch.get_num_threads() == threads_before
    assert models["B"].training and models["C"].training and not models["A"].training
    frame = result.to_frame()
    assert list(frame["model"]) == ["A", "B", "C"] * 2 and list(frame["batch_size"]) == [1] * 3 + [4] * 3
    assert {"speedup", "speedup_q1", "speedup_q3", "wall_speedup", "cpu_ms", "wall_ms"} <= set(frame.columns)


def test_thread_count_is_restored_when_a_model_fails():
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    threads_before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="boom"):
        compare_speed({"a": Broken()}, "a", threads=threads_before + 1, warmup_s=0.0)
    assert torch.get_num_threads() == threads_before


@pytest.mark.parametrize("kwargs, message", [
    ({"models": {}}, "non-empty dict"),
    ({"reference": "missing"}, "not one of the models"),
    ({"batch_sizes": (0,)}, "batch_sizes"),
    ({"batch_sizes": ()}, "batch_sizes"),
    ({"threads": 0}, "threads"),
    ({"rounds": 2}, "rounds"),
    ({"calls_per_round": 0}, "calls_per_round"),
    ({"warmup_s": -1.0}, "warmup_s"),
])
def test_bad_arguments_are_refused(kwargs, message):
    args = {"models": {"a": nn.Linear(2, 2)}, "reference": "a"} | kwargs
    with pytest.raises(ValueError, match=message):
        compare_speed(**args)


def test_a_non_module_is_refused():
    with pytest.raises(TypeError, match="not an nn.Module"):
        compare_speed({"a": nn.Linear(2, 2), "b": lambda x: x}, "a")


@pytest.mark.timing
def test_pooled_rounds_are_the_union_of_the_comparisons_rounds():
    short, long = _linear_stacks(2, 8)
    parts = [compare_speed({"long": long, "short": short}, "long", batch_sizes=(64,), rounds=r, warmup_s=0.01,
                           input_shape=(256,)) for r in (3, 5)]
    pooled = pool_speed(parts)
    samples = [s for part in parts for s in part.get("short", 64).rounds]
    assert pooled.rounds == 8 and len(pooled.get("short", 64).rounds) == 8
    ratios = sorted(s[0] for s in samples)
    assert pooled.get("short", 64).speedup.median == pytest.approx((ratios[3] + ratios[4]) / 2)
    assert pooled.get("short", 64).speedup == Spread.of([s[0] for s in samples])
    assert pooled.get("short", 64).cpu_ms == pytest.approx(float(np.median([s[2] for s in samples])))
    assert 3.0 < pooled.get("short", 64).speedup.median < 5.0
    with pytest.raises(ValueError, match="different models"):
        pool_speed([parts[0], compare_speed({"long": long}, "long", batch_sizes=(64,), rounds=3, warmup_s=0.0,
                                            input_shape=(256,))])
    with pytest.raises(ValueError, match="at least one"):
        pool_speed([])


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="page-fault counts come from Linux's /proc")
def test_freed_activation_memory_is_reused_without_page_faults():
    model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2)).eval()
    x = torch.rand(256, 1, 28, 28)  # a 25.7 MB conv output, as in the course model's first block at batch 256

    def page_faults_of_a_call():
        before = int(Path("/proc/self/stat").read_text().split()[9])  # minor page faults of this process
        with torch.no_grad():
            model(x)
        return int(Path("/proc/self/stat").read_text().split()[9]) - before

    if not reuse_freed_memory():
        pytest.skip("the C library is not glibc")
    for _ in range(3):
        page_faults_of_a_call()  # the first calls map the memory
    assert np.median([page_faults_of_a_call() for _ in range(7)]) < 100  # by default about 12,500 per call


@pytest.mark.timing
def test_a_speed_up_over_another_timed_model_comes_from_the_same_rounds():
    short, long = _linear_stacks(2, 8)
    result = compare_speed({"long": long, "short": short, "mid": _linear_stacks(4, 4)[0]}, "long",
                           batch_sizes=(64,), rounds=5, warmup_s=0.01, input_shape=(256,))
    over_mid = result.speedup_over("short", "mid", 64)
    rounds = zip(result.get("short", 64).rounds, result.get("mid", 64).rounds)
    assert over_mid == Spread.of([m[2] / s[2] for s, m in rounds])
    assert 1.3 < over_mid.median < 2.7  # 2 layers against 4
    own, reference = result.speedup_over("short", "long", 64), result.get("short", 64).speedup  # the reference's ratio
    assert (own.median, own.q1, own.q3) == pytest.approx((reference.median, reference.q1, reference.q3))


@pytest.mark.timing
def test_a_compiled_model_gives_the_same_outputs_and_reports_its_compile_time_apart():
    from helpers.speed import compile_unavailable, compiled_model

    reason = compile_unavailable()
    if reason and not os.environ.get("CI"):
        pytest.skip(reason)
    assert reason is None, f"CI requires the compiled path: {reason}"
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    compiled, seconds = compiled_model(model, batch_sizes=(1, 4))
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x), atol=1e-5)
    assert seconds > 0


@pytest.mark.timing
def test_every_model_of_a_benchmark_is_really_compiled_past_dynamos_recompile_limit():
    """Five models of one class at two batch sizes: ten graphs for one forward, past dynamo's default
    recompile limit of 8. Each must get its own graphs (the benchmark once timed every float file
    from the fifth on eagerly under the name "compiled")."""
    from torch._dynamo.utils import counters

    from helpers.speed import compile_unavailable, compiled_model

    reason = compile_unavailable()
    if reason and not os.environ.get("CI"):
        pytest.skip(reason)
    assert reason is None, f"CI requires the compiled path: {reason}"
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Flatten(), nn.Linear(784, 8 + i), nn.ReLU(), nn.Linear(8 + i, 10)).eval()
              for i in range(5)]
    for model in models:
        before = counters["stats"]["unique_graphs"]
        compiled, _ = compiled_model(model, batch_sizes=(1, 2))
        assert counters["stats"]["unique_graphs"] - before == 2, "a batch size ran without a compiled graph"
        with torch.no_grad():
            x = torch.rand(2, 1, 28, 28)
            assert torch.allclose(compiled(x), model(x), atol=1e-5)


def test_without_a_compiler_the_compiled_path_says_why(monkeypatch):
    from helpers import speed

    monkeypatch.setattr(speed.shutil, "which", lambda name: None)
    assert "no C++ compiler" in speed.compile_unavailable()
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        speed.compiled_model(nn.Linear(2, 2), batch_sizes=(1,), input_shape=(2,))
