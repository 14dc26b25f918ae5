"""``python -m helpers.live --benchmark [--topics 03,06] [--moves 20]``: seconds per slider move.

Loads ``weights/01_baseline.pt`` (and the stage weights a topic asks for through its ``WEIGHTS``),
prepares every topic module that exists, and times ``point`` + ``draw`` over random control values:
median and max wall seconds per move, and process CPU seconds beside them (other tenants of a
shared machine steal wall time). Not a test: a report.
"""
from __future__ import annotations

import argparse
import importlib
import random
import statistics
import time

TOPICS = {"02": "filters", "03": "wanda", "04": "slimming", "05": "schedules", "06": "quantization",
          "07": "combined", "08": "comparison"}


def random_values(controls: dict, rng: random.Random) -> dict:
    """One random value per control, on its grid."""
    values = {}
    for name, spec in controls.items():
        if spec["kind"] == "choice":
            values[name] = rng.choice(spec["options"])
        else:
            steps = round((spec["max"] - spec["min"]) / spec["step"])
            value = spec["min"] + rng.randint(0, steps) * spec["step"]
            values[name] = int(value) if spec["kind"] == "int" else round(min(value, spec["max"]), 6)
    return values


def benchmark(topic, model, splits, moves: int = 20, seed: int = 0) -> dict:
    """Prepare once, then time ``moves`` random moves (point + draw into one figure)."""
    import matplotlib.pyplot as plt

    from ..paths import REPO_ROOT

    started = time.perf_counter()
    state = topic.prepare(model, splits)
    prepare_s = time.perf_counter() - started
    reference = topic.reference(REPO_ROOT / "results")
    rng, fig, wall, cpu = random.Random(seed), None, [], []
    for _ in range(moves):
        values = random_values(topic.CONTROLS, rng)
        w0, c0 = time.perf_counter(), time.process_time()
        fig = topic.draw(topic.point(state, **values), reference, fig=fig)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    plt.close(fig)
    return {"prepare_s": prepare_s, "median_s": statistics.median(wall), "max_s": max(wall),
            "median_cpu_s": statistics.median(cpu), "max_cpu_s": max(cpu)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.live", description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", action="store_true", help="time random slider moves per topic")
    parser.add_argument("--topics", default=",".join(TOPICS), help="notebook numbers, e.g. 03,06")
    parser.add_argument("--moves", type=int, default=20)
    args = parser.parse_args(argv)
    if not args.benchmark:
        parser.print_help()
        return 0
    wanted = [t.strip() for t in args.topics.split(",") if t.strip()]
    unknown = [t for t in wanted if t not in TOPICS]
    if unknown:
        parser.error(f"unknown topics {unknown}; known: {', '.join(TOPICS)}")

    import matplotlib
    matplotlib.use("Agg")
    import torch

    from ..storage import load
    from ..data import load_splits
    from ..paths import REPO_ROOT

    splits = load_splits()
    baseline = load(REPO_ROOT / "weights" / "01_baseline.pt")
    print(f"{args.moves} random moves per topic · torch threads {torch.get_num_threads()} · "
          f"validation subset of 1000 images · seconds per move (point + draw)")
    for number in wanted:
        name = TOPICS[number]
        try:
            topic = importlib.import_module(f"helpers.live.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"helpers.live.{name}":
                raise
            print(f"{number} {name}: skipped (helpers/live/{name}.py does not exist)")
            continue
        weights = getattr(topic, "WEIGHTS", None)  # a topic that starts from another stage's model
        model = load(REPO_ROOT / "weights" / weights) if weights else baseline
        r = benchmark(topic, model, splits, args.moves)
        print(f"{number} {name}: median {r['median_s']:.2f} s · max {r['max_s']:.2f} s "
              f"(process CPU median {r['median_cpu_s']:.2f} s · max {r['max_cpu_s']:.2f} s) · "
              f"prepare {r['prepare_s']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
