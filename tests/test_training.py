"""fit: training really moves the model, after_step runs after every optimizer step."""
import pytest
import torch
from torch import nn

from helpers.training import accuracy, bf16_supported, fit


def toy_batches(n=256, seed=0):
    """A separable 2-class problem as a list of (images, labels) batches of 1x2x2 'images'."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    images = torch.randn(n, 1, 2, 2, generator=g) * 0.3 + labels.view(-1, 1, 1, 1).float()
    return [(images[i:i + 32], labels[i:i + 32]) for i in range(0, n, 32)]


def test_fit_learns_a_separable_task_and_calls_after_step_every_step():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    batches, calls = toy_batches(), []
    start = accuracy(model, batches)
    history = fit(model, batches, batches, epochs=3, lr=0.1, device="cpu", after_step=lambda m: calls.append(1))
    assert len(calls) == 3 * len(batches)
    assert len(history.val_accuracy) == 3 and accuracy(model, batches) > max(start, 95.0)
    assert not model.training  # fit leaves the model in eval mode


def test_fit_refuses_zero_epochs():
    with pytest.raises(ValueError, match="epochs"):
        fit(nn.Linear(4, 2), toy_batches(), epochs=0, device="cpu")


@pytest.mark.parametrize("epochs,n_batches", [(1, 1), (1, 2), (1, 3), (2, 2), (1, 4), (4, 1), (1, 5), (3, 3)])
def test_fit_works_for_any_step_count_and_peaks_at_lr(epochs, n_batches):
    """torch's OneCycleLR alone divides by zero at 4 steps (a quarter warm-up of 0 steps)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    steps = []
    history = fit(model, toy_batches(32 * n_batches), epochs=epochs, lr=0.1, device="cpu",
                  after_step=lambda m: steps.append(1))
    assert len(steps) == epochs * n_batches and len(history.train_loss) == epochs


def test_history_without_timings_leaves_out_seconds():
    from helpers.training import History

    history = History([1.0], [50.0], [], [], [3.2])
    assert "seconds" in history.as_dict() and "seconds" not in history.as_dict(timings=False)


def train_course_cnn_two_steps(record, hook="forward_pre", **fit_kwargs):
    """One epoch of two identical batches through the course CNN, ``record`` hooked on its first conv."""
    from helpers.models import build_model

    torch.manual_seed(0)
    model = build_model()
    images, labels = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    register = {"forward_pre": model.features[0].conv.register_forward_pre_hook,
                "forward": model.features[0].conv.register_forward_hook}[hook]
    register(record)
    fit(model, [(images, labels)] * 2, epochs=1, lr=1e-3, device="cpu", **fit_kwargs)
    return model


def test_fit_trains_channels_last_and_hands_back_a_contiguous_cnn():
    layouts = []
    model = train_course_cnn_two_steps(
        lambda module, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    assert layouts == [True, True]  # both training steps ran channels-last (no validation batches here)
    assert all(p.is_contiguous() for p in model.parameters())  # saved and measured as usual


@pytest.mark.parametrize("bf16", [False, True])
def test_fit_runs_convolutions_in_bf16_only_when_asked_and_supported(bf16):
    dtypes = []
    model = train_course_cnn_two_steps(lambda module, args, out: dtypes.append(out.dtype), hook="forward", bf16=bf16)
    expected = torch.bfloat16 if bf16 and bf16_supported(torch.device("cpu")) else torch.float32
    assert dtypes == [expected, expected]
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay float32
    assert torch.is_autocast_enabled("cpu") is False  # nothing leaks out of fit


def test_headless_progress_prints_only_its_final_state_once(monkeypatch, capsys):
    from helpers.training import progress
    from helpers.widgets import HEADLESS_ENV
    monkeypatch.setenv(HEADLESS_ENV, "1")
    with progress(6, "train") as bar:
        for epoch in range(2):
            bar.set_description(f"train epoch {epoch + 1}/2")
            bar.update(3)
            bar.set_postfix(val_acc="91.50")
    bar.close()  # a second close (as __del__ does) prints nothing more
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "train epoch 2/2" in lines[0] and "100%" in lines[0]
    assert "6/6" in lines[0] and "val_acc=91.50" in lines[0]


def test_headless_fit_leaves_one_line_per_run(monkeypatch, capsys):
    from helpers.widgets import HEADLESS_ENV
    monkeypatch.setenv(HEADLESS_ENV, "1")
    fit(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), toy_batches(), toy_batches(), epochs=2, device="cpu", desc="toy")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("toy epoch 2/2: 100%") and "16/16" in lines[0]
    assert "val_acc=" in lines[0]


def test_distillation_loss_is_zero_when_student_agrees_and_matches_the_formula():
    from helpers.training import distillation_loss

    g = torch.Generator().manual_seed(0)
    teacher, student = torch.randn(8, 10, generator=g), torch.randn(8, 10, generator=g)
    assert distillation_loss(teacher, teacher, 4.0).abs().item() < 1e-6
    T = 3.0
    p = torch.softmax(teacher / T, 1)
    by_hand = (p * (p.log() - torch.log_softmax(student / T, 1))).sum(1).mean() * T ** 2
    assert torch.allclose(distillation_loss(student, teacher, T), by_hand, atol=1e-5)


def test_fit_with_a_teacher_and_only_soft_targets_learns_the_teachers_answers():
    """distill_weight=1 ignores the labels: the student must end up predicting what the teacher
    predicts, here the opposite of the (deliberately wrong) labels."""
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    fit(teacher, toy_batches(), epochs=3, lr=0.1, device="cpu")
    wrong = [(x, 1 - y) for x, y in toy_batches()]
    student = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    fit(student, wrong, epochs=4, lr=0.1, device="cpu", teacher=teacher, distill_weight=1.0, label_smoothing=0.0)
    agree = torch.cat([(student(x).argmax(1) == teacher(x).argmax(1)) for x, _ in wrong]).float().mean()
    assert agree > 0.95 and accuracy(student, wrong) < 5.0
    # the same run with weight 0 follows the labels instead
    plain = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    fit(plain, wrong, epochs=4, lr=0.1, device="cpu", teacher=teacher, distill_weight=0.0)
    assert accuracy(plain, wrong) > 95.0


@pytest.mark.parametrize("kwargs,match", [({"temperature": 0}, "temperature"), ({"temperature": "4"}, "temperature"),
                                          ({"distill_weight": 1.5}, "distill_weight")])
def test_fit_refuses_bad_distillation_settings(kwargs, match):
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match=match):
        fit(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), toy_batches(), epochs=1, device="cpu", teacher=teacher, **kwargs)


def _toy_batches(seed=0):
    from helpers.data import Batches, ImageSet
    g = torch.Generator().manual_seed(seed)
    images = (torch.rand(64, 28, 28, generator=g) * 255).to(torch.uint8)
    labels = torch.randint(0, 10, (64,), generator=g)
    return ImageSet(images, labels)


def test_compare_distillation_trains_both_on_the_same_batches_and_leaves_the_start_alone():
    """With distill_weight=0 the distilled run is plain training: identical weights prove the two runs
    saw the same seed and batches; the start model is not changed; the verdict reads the spread."""
    from helpers.data import Batches
    from helpers.models import build_model
    from helpers.training import compare_distillation

    data = _toy_batches()
    start, teacher = build_model(), build_model()
    before = {k: v.clone() for k, v in start.state_dict().items()}
    train = Batches(data, 16, shuffle=True, augment=True, seed=3)
    evals = Batches(data, 32)
    same = compare_distillation(start, teacher, train, evals, evals, epochs=1, device="cpu", distill_weight=0.0)
    for (name, a), b in zip(same.plain.state_dict().items(), same.distilled.state_dict().values()):
        assert torch.equal(a, b), name
    assert all(torch.equal(v, start.state_dict()[k]) for k, v in before.items())
    assert same.gain("test") == 0.0 and same.gain("val") == 0.0 and same.verdict().startswith("a tie")
    other = compare_distillation(start, teacher, train, evals, evals, epochs=1, device="cpu", distill_weight=1.0)
    assert any(not torch.equal(a, b) for a, b in zip(other.plain.parameters(), other.distilled.parameters()))
    assert other.epochs == 1 and set(other.test_accuracy) == {"plain", "distilled"}


def test_distillation_verdict_names_the_direction_beyond_the_rerun_spread():
    from helpers.training import DistillationComparison

    def verdict(plain, distilled, val=None):
        val = {"plain": val[0], "distilled": val[1]} if val else {}
        return DistillationComparison(None, None, val, {"plain": plain, "distilled": distilled}, 4).verdict()
    assert verdict(90.0, 90.5).startswith("distillation helped: +0.50 pp test") and "beyond" in verdict(90.0, 90.5)
    assert verdict(90.0, 89.5).startswith("distillation hurt: -0.50 pp test")
    assert verdict(90.0, 90.1).startswith("a tie") and "within" in verdict(90.0, 90.1)
    # both splits: "helped" only where validation agrees beyond the spread
    assert verdict(90.0, 90.5, val=(91.0, 91.6)).startswith("distillation helped: +0.50 pp test accuracy, +0.60 pp validation")
    assert verdict(90.96, 91.33, val=(92.10, 92.14)).startswith("not settled: +0.37 pp test accuracy, +0.04 pp validation")
    assert verdict(90.0, 90.5, val=(91.0, 90.5)).startswith("not settled")       # the splits disagree
    assert verdict(90.0, 90.1, val=(91.0, 91.05)).startswith("a tie")
    assert verdict(90.0, 89.5, val=(91.0, 90.6)).startswith("distillation hurt")

def test_distillation_at_weight_zero_is_the_hard_loss_and_never_asks_the_teacher():
    from helpers.training import Distillation

    class NoTeacher(torch.nn.Module):
        def forward(self, x):
            raise AssertionError("the teacher was run at distill_weight 0")

    logits, labels = torch.randn(8, 10), torch.randint(0, 10, (8,))
    loss = Distillation(NoTeacher(), torch.nn.CrossEntropyLoss(), weight=0.0)(logits, labels, torch.rand(8, 1, 28, 28))
    assert torch.equal(loss, torch.nn.functional.cross_entropy(logits, labels))
