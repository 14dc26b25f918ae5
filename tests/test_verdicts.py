"""Paired comparisons on the same images (bootstrap interval, exact McNemar) and the verdict rule,
on hand-computed cases."""
import math

import numpy as np
import pytest
import torch

from helpers.verdicts import PairedComparison, mcnemar_p, paired_comparison, sentence, verdict


def _pair(a_only: int, b_only: int, both: int, neither: int):
    """Per-image correctness of A and B with the given discordant and concordant counts."""
    a = [True] * a_only + [False] * b_only + [True] * both + [False] * neither
    b = [False] * a_only + [True] * b_only + [True] * both + [False] * neither
    return np.array(a), np.array(b)


def test_a_known_discordant_table_gives_its_difference_and_exact_mcnemar_p():
    a, b = _pair(10, 2, 70, 18)  # n = 100
    result = paired_comparison(a, b)
    assert (result.a_only, result.b_only, result.n) == (10, 2, 100)
    assert result.difference_pp == 8.0
    # two-sided exact binomial: 2 * P(X >= 10 | 12, 1/2) = 2 * (66 + 12 + 1) / 4096
    assert result.p_value == pytest.approx(2 * (66 + 12 + 1) / 4096)
    assert mcnemar_p(2, 10) == pytest.approx(result.p_value)  # symmetric


def test_the_bootstrap_interval_is_close_to_the_normal_approximation_of_the_paired_difference():
    a, b = _pair(10, 2, 70, 18)
    low, high = paired_comparison(a, b).ci95_pp
    d = np.where(a & ~b, 1.0, np.where(b & ~a, -1.0, 0.0))
    se = 100 * d.std() / math.sqrt(len(d))
    assert low == pytest.approx(8.0 - 1.96 * se, abs=1.0) and high == pytest.approx(8.0 + 1.96 * se, abs=1.0)
    assert low < 8.0 < high


def test_a_model_against_itself_gives_zero_an_empty_interval_and_p_one():
    a, _ = _pair(0, 0, 60, 40)
    result = paired_comparison(a, a.copy())
    assert (result.difference_pp, result.ci95_pp, result.p_value) == (0.0, (0.0, 0.0), 1.0)
    assert verdict(result) == "tie"


def test_the_interval_is_reproducible_with_its_seed_and_accepts_tensors():
    a, b = _pair(30, 20, 400, 50)
    first = paired_comparison(torch.tensor(a), torch.tensor(b))
    assert paired_comparison(a, b) == first
    assert paired_comparison(a, b, seed=1).ci95_pp != first.ci95_pp  # another seed, other resamples


@pytest.mark.parametrize("a, b, message", [
    (np.ones(5, bool), np.ones(4, bool), "same images"),
    (np.ones((2, 2), bool), np.ones((2, 2), bool), "1-D"),
    (np.array([], bool), np.array([], bool), "non-empty"),
    (np.array([0.5, 1.0]), np.array([1.0, 1.0]), "right/wrong"),
])
def test_bad_inputs_are_refused(a, b, message):
    with pytest.raises(ValueError, match=message):
        paired_comparison(a, b)


def test_too_few_resamples_are_refused():
    a, b = _pair(3, 1, 10, 2)
    with pytest.raises(ValueError, match="1,000 resamples"):
        paired_comparison(a, b, resamples=100)


def _comparison(low: float, high: float) -> PairedComparison:
    return PairedComparison((low + high) / 2, (low, high), 0.01, 10, 2, 5000)


@pytest.mark.parametrize("interval, seeds, expected", [
    ((0.1, 0.9), (), "a"),                 # no seeds: the interval decides
    ((0.1, 0.9), (0.3, 0.2, 0.4), "a"),    # the interval above 0 and every seed agrees
    ((0.1, 0.9), (0.3, -0.1, 0.4), "tie"), # one seed disagrees
    ((-0.9, -0.1), (-0.2, -0.3), "b"),
    ((-0.1, 0.9), (0.3, 0.2), "tie"),      # the interval holds 0
    ((0.0, 0.9), (), "tie"),               # touching 0 is not beyond it
])
def test_the_verdict_rule(interval, seeds, expected):
    assert verdict(_comparison(*interval), seeds) == expected


def test_the_sentence_states_the_numbers_and_the_outcome():
    a, b = _pair(10, 2, 70, 18)
    result = paired_comparison(a, b)
    text = sentence("step-by-step vs one-shot", "step-by-step", "one-shot", result, verdict(result), seed_differences_pp=(0.4, 0.1))
    assert "step-by-step wins" in text and "+8.00 pp on validation" in text and "10 vs 2 discordant of 100" in text
    assert "seeds +0.40, +0.10 pp" in text
    assert "a tie" in sentence("q", "A", "B", result, "tie")


def test_per_image_correctness_of_a_model_feeds_the_comparison(random_model, quick_splits):
    from helpers.data import Batches
    from helpers.training import accuracy, per_image_correct

    batches = Batches(quick_splits.val.head(200), 100)
    correct = per_image_correct(random_model, batches)
    assert correct.dtype == torch.bool and correct.shape == (200,)
    assert 100 * correct.float().mean().item() == pytest.approx(accuracy(random_model, batches))


def _record(outputs, notebook="02", question="step-by-step vs one-shot", seeds=((93.1, 93.3, 93.2), (92.9, 93.0, 92.8))):
    from helpers.results import verdict_record

    a, b = _pair(60, 20, 4700, 220)
    return verdict_record(notebook, question, "step-by-step", "one-shot", paired_comparison(a, b), outputs,
                          seeds_a=seeds[0], seeds_b=seeds[1])


def test_verdict_records_are_written_per_notebook_read_back_and_tabled(tmp_path):
    from helpers.paths import OutputDirs
    from helpers.records import read_verdicts
    from helpers.results import verdicts_table, write_verdicts

    outputs = OutputDirs(tmp_path, "full")
    first = _record(outputs)
    assert first["verdict"] == "a" and first["seeds_a"] == [93.1, 93.3, 93.2] and first["quick"] is False
    write_verdicts("02", [first], outputs)
    write_verdicts("05", [_record(outputs, "05", "AGP vs one-shot", ((95.0, 94.0), (94.5, 94.5)))], outputs)
    write_verdicts("02", [_record(outputs, question="distilled vs plain")], outputs)  # replaces 02's records only
    records = read_verdicts(tmp_path / "results")
    assert [(r["notebook"], r["question"], r["verdict"]) for r in records] == [
        ("02", "distilled vs plain", "a"), ("05", "AGP vs one-shot", "tie")]  # 05's seeds disagree: a tie
    table = verdicts_table(records)
    assert "| 02 | distilled vs plain: step-by-step vs one-shot | step-by-step | +0.80 pp" in table
    assert "93.20 ± 0.10 (n=3)" in table and "| 05 |" in table and "| tie |" in table


@pytest.mark.parametrize("change, message", [
    ({"verdict": "a", "ci95_pp": [-0.1, 0.5]}, "holds 0: only a tie may"),
    ({"verdict": "b", "ci95_pp": [-0.5, 0.1]}, "holds 0: only a tie may"),
    ({"split": "train"}, "split must be"),
    ({"p_value": 1.5}, "p_value"),
    ({"seeds_a": [93.0, "x"]}, "lists of accuracies"),
    ({"notebook": "2"}, "two digits"),
    ({"ci95_pp": [0.5, 0.1]}, "low <= high"),
])
def test_broken_verdict_records_are_refused_and_named_by_results_check(tmp_path, change, message):
    import json

    from helpers.paths import OutputDirs
    from helpers.records import read_verdicts

    record = {**_record(OutputDirs(tmp_path, "full")), **change}
    (tmp_path / "results").mkdir(exist_ok=True)
    (tmp_path / "results" / "verdicts.json").write_text(json.dumps([record]))
    with pytest.raises(ValueError, match=f"verdicts.json, verdict 0: .*{message}"):
        read_verdicts(tmp_path / "results")


def test_seeds_must_pair_up(tmp_path):
    from helpers.paths import OutputDirs

    with pytest.raises(ValueError, match="seeds pair up"):
        _record(OutputDirs(tmp_path, "full"), seeds=((93.0, 93.1), (92.0,)))


def test_spread_prints_mean_sample_sd_and_every_seed():
    from helpers.verdicts import spread

    assert spread([93.0, 93.2, 93.4]) == "93.20 ± 0.20 (93.00, 93.20, 93.40)"
    assert spread([90]) == "90.00 ± 0.00 (90.00)"
    with pytest.raises(ValueError):
        spread([])


@pytest.mark.parametrize("values, threshold, at_least, status", [
    ([50.2, 51.0, 50.5], 50.0, True, "met"),
    ([49.9, 51.0, 50.5], 50.0, True, "at the edge"),
    ([40.0, 45.0], 50.0, True, "missed"),
    ([50.0], 50.0, True, "met"),                # the threshold itself reaches it
    ([0.4, 0.6], 0.5, False, "at the edge"),    # at most 0.5 pp lost
    ([0.1, 0.5], 0.5, False, "met"),
])
def test_a_target_is_met_only_when_every_seed_reaches_it(values, threshold, at_least, status):
    from helpers.verdicts import target_status

    assert target_status(values, threshold, at_least) == status


class _Fixed(torch.nn.Module):
    """A 'model' that answers class ``answers[i]`` for image i (the image holds its index)."""

    def __init__(self, answers):
        super().__init__()
        self.answers = torch.as_tensor(answers)

    def forward(self, x):
        return torch.nn.functional.one_hot(self.answers[x.flatten(1)[:, 0].long()], 2).float()


def test_compare_models_decides_by_the_rule_and_prints_its_sentence(tmp_path, capsys):
    from helpers.paths import OutputDirs
    from helpers.results import compare_models

    n = 400
    labels = torch.zeros(n, dtype=torch.long)
    batches = [(torch.arange(n, dtype=torch.float).view(n, 1, 1, 1), labels)]
    good = _Fixed([0] * 380 + [1] * 20)      # 95% right
    worse = _Fixed([0] * 340 + [1] * 60)     # 85% right, wrong on every image the good one gets wrong
    outputs = OutputDirs(tmp_path, "full")
    record = compare_models("02", "which is better", "good", "worse", good, worse, batches, outputs,
                            test_batches=batches, seeds_a=[95.0, 94.8, 95.1], seeds_b=[85.0, 85.3, 84.9])
    out = capsys.readouterr().out
    assert record["verdict"] == "a" and record["difference_pp"] == 10.0 and record["ci95_pp"][0] > 0
    assert "which is better: good wins — good − worse = +10.00 pp on validation" in out
    assert "seeds (validation %): good 94.97 ± 0.15" in out and "test (reporting only): good − worse = +10.00 pp" in out
    # one seed disagreeing makes it a tie, whatever the interval says
    tie = compare_models("02", "q", "good", "worse", good, worse, batches, outputs,
                         seeds_a=[95.0, 84.0, 95.1], seeds_b=[85.0, 85.3, 84.9])
    assert tie["verdict"] == "tie" and "a tie (the simpler or cheaper one is kept)" in capsys.readouterr().out
    # per-image correctness instead of models gives the same record
    same = compare_models("02", "which is better", "good", "worse", torch.arange(n) < 380, torch.arange(n) < 340,
                          batches, outputs, seeds_a=[95.0, 94.8, 95.1], seeds_b=[85.0, 85.3, 84.9])
    assert same == record
