"""``use``: the learner's function drives the notebook's next cells once it passes its check,
the reference until then; it says which one runs."""
import torch

from helpers import exercises as ex


def test_use_returns_the_learners_function_only_once_it_passes(capsys):
    reference = ex.REGISTRY["filter_l1_scores"].reference

    def stub(weight):
        raise NotImplementedError

    def wrong(weight):  # L2 instead of L1
        return weight.flatten(1).norm(dim=1)

    def right(weight):
        return weight.abs().flatten(1).sum(dim=1)

    assert ex.use("filter_l1_scores", stub) is reference
    assert "run the reference" in capsys.readouterr().out and ex.in_use("filter_l1_scores") == "the reference"
    assert ex.use("filter_l1_scores", wrong) is reference
    assert "has not passed check yet" in capsys.readouterr().out
    assert ex.use("filter_l1_scores", right) is right
    out = capsys.readouterr().out
    assert out.startswith("▶ filter_l1_scores: the cells below run YOUR function") and "✔" not in out
    assert ex.in_use("filter_l1_scores") == "yours"
    assert ex.use("filter_l1_scores") is reference and ex.in_use("filter_l1_scores") == "the reference"
    w = torch.randn(4, 3, 3, 3)
    assert torch.allclose(right(w), reference(w))


def test_a_list_of_numbers_reordered_in_place_is_named():
    from helpers.exercises.core import Hint, _call

    def sorts_in_place(values):
        values.sort()
        return values

    import pytest
    with pytest.raises(Hint, match="changed its input values"):
        _call(sorts_in_place, [3.0, 2.0, 1.0])
    assert _call(lambda values: sorted(values), [3.0, float("nan"), 1.0]) is not None
