"""helpers.live.comparison: the budget's picks equal within_budget on the records; one figure."""
import inspect
import json

import matplotlib

matplotlib.use("Agg")
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from helpers.comparison import records_frame, within_budget  # noqa: E402
from helpers.live import check_controls  # noqa: E402
from helpers.live import comparison as live  # noqa: E402


def record(name, stage, test, size, val=None, weights=None, latency=None):
    r = {"name": name, "method": name, "stage": stage, "test_accuracy": test, "sparsity": 0.0, "params_nonzero": 100,
         "weight_bits": 32, "activation_bits": None, "size_bytes": size, "weights_file": weights, "quick": False,
         "latency_ms": {"batch_1": 1.0, "batch_256": latency} if latency else None}
    return r | ({"val_accuracy": val} if val is not None else {})


@pytest.fixture
def results_dir(tmp_path):
    """Baseline 93.0 test / 94.0 val; "a" loses 0.5 on val but 1.5 on test; "b" has test only."""
    files = {
        "01_baseline": [record("baseline", "01_baseline", 93.0, 1000, weights="weights/01_baseline.pt", latency=50.0)],
        "02_x": [record("baseline (re-measured)", "02_x", 93.0, 1000, val=94.0, weights="weights/01_baseline.pt"),
                 record("a", "02_x", 91.5, 100, val=93.5, latency=10.0)],
        "06_y": [record("b", "06_y", 92.2, 300, latency=20.0), record("c", "06_y", 80.0, 10)],
    }
    for stage, records in files.items():
        (tmp_path / f"{stage}.json").write_text(json.dumps(records))
    return tmp_path


def test_the_budget_is_a_loss_on_validation_and_records_without_it_cannot_be_chosen(results_dir):
    state = live.prepare(results_dir=results_dir)
    assert (state.baseline_test, state.baseline_val) == (93.0, 94.0)
    result = live.point(state, max_loss_pp=1.0)
    assert result["smallest_name"] == "a" and result["fastest_name"] == "a"  # 0.5 pp lost on validation
    assert result["val_accuracy"] == 93.5 and result["smallest_test_accuracy"] == 91.5  # test reported
    assert live.point(state, max_loss_pp=0.4)["smallest_name"] == "baseline (re-measured)"
    # "b" and "c" have no validation accuracy: never chosen, never counted, whatever the budget
    assert [live.point(state, max_loss_pp=p)["models_within"] for p in (0.0, 0.4, 0.6, 5.0)] == [1, 1, 2, 2]
    assert live.point(state, max_loss_pp=5.0)["smallest_name"] == "a"
    with pytest.raises(ValueError, match="budget"):
        live.point(state, max_loss_pp=-1)


def test_fastest_prefers_the_speedups_of_speed_json(results_dir):
    (results_dir / "02_x.json").write_text(json.dumps([
        record("baseline (re-measured)", "02_x", 93.0, 1000, val=94.0, weights="weights/01_baseline.pt",
               latency=50.0),
        record("a", "02_x", 91.5, 100, val=93.5, weights="weights/a.pt", latency=10.0),
        record("d", "02_x", 92.0, 500, val=93.8, weights="weights/d.pt", latency=30.0)]))
    assert live.point(live.prepare(results_dir=results_dir), 1.0)["fastest_name"] == "a"  # by latency
    (results_dir / "speed.json").write_text(json.dumps([
        {"weights_file": "weights/a.pt", "speedup": {"batch_256": {"median": 1.5, "q1": 1.4, "q3": 1.6}}},
        {"weights_file": "weights/d.pt", "speedup": {"batch_256": {"median": 2.5, "q1": 2.4, "q3": 2.6}}}]))
    state = live.prepare(results_dir=results_dir)
    assert live.point(state, 1.0)["fastest_name"] == "d"  # the measured speed-up wins over latency
    assert live.point(state, 0.1)["fastest_name"] == "baseline (re-measured)"  # d (0.2 pp) out of budget


def test_point_equals_within_budget_on_the_committed_records():
    try:
        frame = records_frame()
    except FileNotFoundError:
        pytest.skip("no committed results")
    state = live.prepare()
    if state.baseline_val is None:
        pytest.skip("no committed baseline validation accuracy")
    for loss in (0.25, 1.0, 3.0):
        result = live.point(state, max_loss_pp=loss)
        best = within_budget(state.frame, state.baseline_val - loss - 1e-9)
        assert result["smallest_name"] == (None if best["smallest"] is None else best["smallest"]["name"])
        if state.frame["speedup_b256"].isna().all():
            assert result["fastest_name"] == (None if best["fastest"] is None else best["fastest"]["name"])
    assert len(state.frame) == len(frame)


def test_draw_returns_one_figure_and_redraws_into_it(results_dir):
    state = live.prepare(results_dir=results_dir)
    fig = live.draw(live.point(state, 1.0), live.reference(results_dir))
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert live.draw(live.point(state, 0.0), None, fig=fig) is fig and len(fig.axes) == 2


def test_controls_follow_the_contract():
    check_controls(live.CONTROLS)
    assert set(live.CONTROLS) == set(inspect.signature(live.point).parameters) - {"state"}


def test_the_front_function_given_to_prepare_draws_the_frontiers(results_dir):
    calls = []

    def spy(costs, accuracies):
        from helpers.comparison import pareto_mask

        calls.append(len(costs))
        return pareto_mask(costs, accuracies)

    state = live.prepare(results_dir=results_dir, front=spy)
    fig = live.draw(live.point(state, 1.0))
    assert calls and isinstance(fig, Figure)
