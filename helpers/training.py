"""Training and evaluation: seeding, the one place the device is chosen, fit / evaluate / fine_tune."""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm
from tqdm.std import tqdm as text_tqdm

from .paths import HEADLESS_ENV

DEVICE_ENV = "COURSE_DEVICE"


class _Discard:
    """A file that drops what is written to it (the silent bar's output while it runs)."""

    def write(self, _text):
        pass

    def flush(self):
        pass


class FinalLineProgress(text_tqdm):
    """A text tqdm bar that draws nothing while it runs and prints its final state as one line when
    closed: what a saved notebook should show (a widget bar's saved text is its first frame, '0%')."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, file=_Discard(), mininterval=float("inf"), ascii=False, **kwargs)

    def close(self):
        if not self.disable:  # tqdm marks a closed bar as disabled: the line is printed once
            line = str(self)
            super().close()
            print(line, flush=True)


def progress(total: int, desc: str, unit: str = "batch"):
    """The progress bar of every training loop: tqdm.auto's live bar in an interactive session; in a
    headless run (``$COURSE_HEADLESS``, set by ``helpers.run_notebooks``) a ``FinalLineProgress``."""
    if os.environ.get(HEADLESS_ENV):
        return FinalLineProgress(total=total, desc=desc, unit=unit)
    return tqdm(total=total, desc=desc, unit=unit)


def pick_device(preferred: str | None = None) -> torch.device:
    """The device for training: the argument, else ``$COURSE_DEVICE``, else cuda > mps > cpu."""
    name = preferred or os.environ.get(DEVICE_ENV)
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (a CUDA GPU with bf16, or a CPU with AVX512-BF16/AMX).

    Elsewhere bf16 is emulated and slower than float32, so ``fit(bf16=True)`` trains in float32 there.
    """
    device = torch.device(device)
    if device.type == "cuda":
        try:  # a T4 only emulates bf16: count native support alone
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # older torch: no emulation to exclude
            return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        native = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)  # oneDNN's own check
        return bool(torch.backends.mkldnn.is_available() and native is not None and native())
    return False


def seed_everything(seed: int = 0) -> None:
    """Seed Python, and torch (CPU and CUDA) for repeatable runs."""
    random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


@dataclass
class History:
    """Per-epoch training loss and accuracy, validation loss and accuracy (percent)."""

    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def as_dict(self, timings: bool = True) -> dict:
        """The lists by name; ``timings=False`` leaves out ``seconds``, which differ from run to run
        (what a saved model's meta should hold, so that the same model gives the same file)."""
        return {k: list(v) for k, v in self.__dict__.items() if timings or k != "seconds"}


@torch.no_grad()
def predict(model: nn.Module, batches: Iterable, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) over all batches, in eval mode."""
    if device is None:  # an int8 GraphModule has no parameters: it runs on the CPU
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    model.eval()
    logits, labels = [], []
    for images, targets in batches:
        logits.append(model(images.to(device)).float().cpu())
        labels.append(targets)
    return torch.cat(logits), torch.cat(labels)


def accuracy_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Percent of rows whose highest logit is the label (counted exactly, not as a float32 mean)."""
    return 100.0 * int((logits.argmax(1) == labels).sum()) / len(labels)


def evaluate(model: nn.Module, batches: Iterable, device=None) -> dict:
    """Accuracy (percent) and mean cross-entropy loss of ``model`` on ``batches``."""
    logits, labels = predict(model, batches, device)
    return {
        "accuracy": accuracy_from_logits(logits, labels),
        "loss": nn.functional.cross_entropy(logits, labels).item(),
    }


def per_image_correct(model: nn.Module, batches: Iterable, device=None) -> torch.Tensor:
    """Whether ``model``'s top-1 prediction is right, image by image (bool, in the batches' order):
    what a paired comparison of two models on the same images needs (``helpers.verdicts``)."""
    logits, labels = predict(model, batches, device)
    return logits.argmax(1) == labels


def accuracy(model: nn.Module, batches: Iterable, device=None) -> float:
    """Accuracy in percent."""
    return evaluate(model, batches, device)["accuracy"]


def make_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float):
    """AdamW or SGD (Nesterov momentum 0.9); no weight decay on biases and BatchNorm."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
    raise ValueError(f"unknown optimizer {name!r}: use 'adamw' or 'sgd'")


def one_cycle(optimizer, lr: float, total_steps: int):
    """OneCycleLR (a quarter warm-up, then cosine annealing) over ``total_steps`` >= 1 steps.

    torch's OneCycleLR divides by zero when a phase would last 0 steps (e.g. 4 steps with a
    quarter warm-up); short runs get a half warm-up, and 1 or 2 steps a constant rate.
    """
    if total_steps <= 2:
        for group in optimizer.param_groups:
            group["lr"] = lr
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    pct_start = 0.25 if total_steps > 4 else 0.5
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps, pct_start=pct_start)


def fit(model: nn.Module, train_batches, val_batches=None, epochs: int = 10, lr: float = 3e-3,
        weight_decay: float = 5e-4, label_smoothing: float = 0.1, optimizer: str = "adamw", device=None,
        after_step: Callable[[nn.Module], None] | None = None, desc: str = "train",
        bf16: bool = False, teacher: nn.Module | None = None, temperature: float = 4.0,
        distill_weight: float = 0.7) -> History:
    """Train with AdamW (or SGD) and a one-cycle learning rate; returns the per-epoch ``History``.

    ``after_step(model)`` runs after every optimizer step (e.g. to re-apply pruning masks).
    Training runs in the channels-last memory format (about 1.5x faster convolutions on a CPU here);
    the model is handed back in the default format, so saved files and latencies are unaffected.
    ``bf16=True`` runs forward and backward under bfloat16 autocast (weights, optimizer and
    BatchNorm statistics stay float32) where ``bf16_supported(device)``; elsewhere it is ignored.
    With a ``teacher`` the model also learns from the teacher's softened logits (knowledge
    distillation, Hinton et al. 2015): see ``Distillation`` for ``temperature`` and ``distill_weight``.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    device = torch.device(device or pick_device())
    model.to(device, memory_format=torch.channels_last)
    optimizer = make_optimizer(model, optimizer, lr, weight_decay)
    if len(train_batches) < 1:
        raise ValueError("no training batches: the training set is empty")
    scheduler = one_cycle(optimizer, lr, epochs * len(train_batches))
    hard_loss = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    # one signature for every loss: (logits, labels, images); distillation needs the images for its teacher
    criterion = (Distillation(teacher.to(device), hard_loss, temperature, distill_weight) if teacher is not None
                 else lambda logits, labels, _images: hard_loss(logits, labels))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and bf16_supported(device))
    history = History()
    # one bar for the whole run (a bar per epoch would leave a line per epoch in saved notebooks)
    with progress(epochs * len(train_batches), desc) as bar:
        for epoch in range(epochs):
            bar.set_description(f"{desc} epoch {epoch + 1}/{epochs}")
            stats = _train_one_epoch(model, train_batches, optimizer, scheduler, criterion, device,
                                     after_step, bar, autocast)
            history.train_loss.append(stats["loss"])
            history.train_accuracy.append(stats["accuracy"])
            history.seconds.append(stats["seconds"])
            if val_batches is not None:
                val = evaluate(model, val_batches, device)
                history.val_loss.append(val["loss"])
                history.val_accuracy.append(val["accuracy"])
                model.train()
                bar.set_postfix(loss=f"{stats['loss']:.3f}", val_acc=f"{val['accuracy']:.2f}")
    model.to(memory_format=torch.contiguous_format).eval()
    return history


def _train_one_epoch(model, batches, optimizer, scheduler, criterion, device, after_step, progress, autocast):
    import time

    model.train()
    start, total_loss, correct, seen = time.perf_counter(), 0.0, 0, 0
    for images, labels in batches:
        images, labels = images.to(device), labels.to(device)
        if images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast:
            logits = model(images)
            loss = criterion(logits.float(), labels, images)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if after_step is not None:
            after_step(model)
        total_loss += loss.item() * len(labels)
        correct += (logits.argmax(1) == labels).sum().item()
        seen += len(labels)
        progress.update(1)
    return {"loss": total_loss / seen, "accuracy": 100.0 * correct / seen,
            "seconds": time.perf_counter() - start}


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      temperature: float) -> torch.Tensor:
    """``T² · KL(softmax(teacher/T) ‖ softmax(student/T))``, averaged over the batch (Hinton et al.
    2015; the T² keeps its gradients on the scale of the hard-label loss). Zero when they agree."""
    soft_teacher = torch.log_softmax(teacher_logits.float() / temperature, dim=1)
    soft_student = torch.log_softmax(student_logits.float() / temperature, dim=1)
    kl = nn.functional.kl_div(soft_student, soft_teacher, reduction="batchmean", log_target=True)
    return kl * temperature ** 2


class Distillation:
    """The loss of a student learning from a frozen teacher:
    ``(1 - weight) · hard_loss(student, labels) + weight · distillation_loss(student, teacher, T)``.
    A higher ``temperature`` softens both distributions, so the student also learns how the teacher
    ranks the wrong classes ("dark knowledge"); ``weight`` 0 is plain training, 1 ignores the labels."""

    def __init__(self, teacher: nn.Module, hard_loss: nn.Module, temperature: float = 4.0, weight: float = 0.7):
        if not (isinstance(temperature, (int, float)) and 0 < temperature < float("inf")):
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")
        if not (isinstance(weight, (int, float)) and 0.0 <= weight <= 1.0):
            raise ValueError(f"distill_weight must be a number in [0, 1], got {weight!r}")
        self.teacher, self.hard_loss = teacher.eval(), hard_loss
        self.temperature, self.weight = float(temperature), float(weight)

    def __call__(self, student_logits, labels, images):
        if self.weight == 0.0:  # plain training: the teacher's forward pass would be thrown away
            return self.hard_loss(student_logits, labels)
        with torch.no_grad():
            teacher_logits = self.teacher(images)
        soft = distillation_loss(student_logits, teacher_logits, self.temperature)
        return (1.0 - self.weight) * self.hard_loss(student_logits, labels) + self.weight * soft


def fine_tune(model: nn.Module, train_batches, epochs: int = 2, lr: float = 1e-3, **kwargs) -> History:
    """A short, gentler ``fit`` for a pruned or quantized model (same schedule, lower rate)."""
    return fit(model, train_batches, epochs=epochs, lr=lr, desc=kwargs.pop("desc", "fine-tune"), **kwargs)


@dataclass
class DistillationComparison:
    """Two fine-tunes of one starting point, plain and distilled, at equal epochs on the same batches:
    the models, and their validation (choice) and test (report) accuracy in percent."""

    plain: nn.Module
    distilled: nn.Module
    val_accuracy: dict[str, float]
    test_accuracy: dict[str, float]
    epochs: int

    def gain(self, split: str = "test") -> float:
        """Distilled minus plain accuracy on ``split`` ("val" or "test"), in percentage points."""
        acc = self.val_accuracy if split == "val" else self.test_accuracy
        return acc["distilled"] - acc["plain"]

    def verdict(self) -> str:
        """One line on the difference, read against the re-run spread (``records.is_tie``) on both splits:
        "helped" or "hurt" only where validation (the choice split) and test (the report) agree beyond it."""
        from .records import RERUN_SPREAD_PP, is_tie

        splits = {"test": self.test_accuracy, "validation": self.val_accuracy}
        gains = {name: acc["distilled"] - acc["plain"] for name, acc in splits.items() if acc}
        beyond = {name: not is_tie(acc["distilled"], acc["plain"]) for name, acc in splits.items() if acc}
        signs = {gain > 0 for name, gain in gains.items() if beyond[name]}
        if not any(beyond.values()):
            effect, where = "a tie", "within"
        elif all(beyond.values()) and len(signs) == 1:
            effect, where = ("distillation helped" if signs == {True} else "distillation hurt"), "beyond"
        else:
            effect, where = "not settled", "only one split, or the splits disagree, beyond"
        read = ", ".join(f"{gain:+.2f} pp {name} accuracy" for name, gain in gains.items())
        return (f"{effect}: {read} after {self.epochs} epochs each "
                f"({where} the 2 x {RERUN_SPREAD_PP} pp two re-runs can differ by)")


def compare_distillation(start: nn.Module, teacher: nn.Module, train_batches, val_batches, test_batches,
                         epochs: int, seed: int = 0, desc: str = "fine-tune", **kwargs) -> DistillationComparison:
    """Fine-tune two copies of ``start`` for ``epochs``, once plain and once learning from the frozen
    ``teacher`` (``fine_tune(..., teacher=teacher)``), with the same seed and the same batches
    (``train_batches.reset()``) and the same ``kwargs`` (lr, device, bf16, temperature, ...), then
    measure both on the validation and test batches. ``start`` itself is left untouched."""
    import copy

    teacher_device = next(teacher.parameters()).device  # fit moves the teacher to the training device
    models = {}
    for label in ("plain", "distilled"):
        seed_everything(seed)
        train_batches.reset()
        student = copy.deepcopy(start)
        extra = {"teacher": teacher} if label == "distilled" else {}
        fine_tune(student, train_batches, epochs=epochs, desc=f"{desc} ({label})", **extra, **kwargs)
        models[label] = student.cpu().eval()
    teacher.to(teacher_device)
    return DistillationComparison(
        models["plain"], models["distilled"],
        {k: evaluate(m, val_batches)["accuracy"] for k, m in models.items()},
        {k: evaluate(m, test_batches)["accuracy"] for k, m in models.items()}, epochs)
