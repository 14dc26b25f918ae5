"""One figure style for the course, and the plots the notebooks share. ``save_fig`` writes PNGs."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
from torch import Tensor

from .data import CLASS_NAMES
from .io_utils import atomic_path
from .models import prunable_layers
from .provenance import digests, png_metadata


def set_style() -> None:
    """The course's figure style (seaborn whitegrid, readable fonts)."""
    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 120, "savefig.bbox": "tight"})


def save_fig(fig, name: str, figures_dir: str | os.PathLike, records=None, drew: dict[str, str] | None = None) -> Path:
    """Save ``fig`` as ``<figures_dir>/<name>.png`` atomically; returns the path.

    The PNG carries its provenance (``helpers.provenance``): the run's mode, the time, and the
    sha256 of every results file the figure drew: ``records`` names them (a file, a results folder,
    or a list of them; None: drawn from this run's computations only), ``drew`` gives them already
    hashed (``{"results/03_wanda.json": sha256}``, from ``provenance.reading()``)."""
    path = Path(figures_dir) / f"{name}.png"
    metadata = png_metadata({**digests(records), **(drew or {})})
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata=metadata)
    return path


def sample_grid(images: torch.Tensor, labels: torch.Tensor, per_class: int = 8):
    """A grid with ``per_class`` sample images (uint8, N x 28 x 28) in a row per class."""
    fig, axes = plt.subplots(len(CLASS_NAMES), per_class, figsize=(per_class * 0.9, 10))
    for cls, row in enumerate(axes):
        idx = torch.nonzero(labels == cls).flatten()[:per_class]
        for ax, i in zip(row, idx):
            ax.imshow(images[i], cmap="gray_r")
        for ax in row:
            ax.set_xticks([]), ax.set_yticks([])
        row[0].set_ylabel(CLASS_NAMES[cls], rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle("Fashion-MNIST: samples per class (training split)")
    return fig


def training_curves(history: dict):
    """Loss and accuracy per epoch, training and validation."""
    epochs = np.arange(1, len(history["train_loss"]) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(epochs, history["train_loss"], "o-", label="train (augmented, smoothed labels)")
    ax_acc.plot(epochs, history["train_accuracy"], "o-", label="train (augmented)")
    if history.get("val_loss"):
        ax_loss.plot(epochs, history["val_loss"], "s-", label="validation")
        ax_acc.plot(epochs, history["val_accuracy"], "s-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.legend()
    return fig


def confusion_and_per_class(logits: torch.Tensor, labels: torch.Tensor):
    """Confusion matrix (row-normalised, percent) and per-class accuracy, side by side."""
    preds = logits.argmax(1)
    n = len(CLASS_NAMES)
    matrix = torch.zeros(n, n)
    matrix.index_put_((labels, preds), torch.ones(len(labels)), accumulate=True)
    percent = 100 * matrix / matrix.sum(1, keepdim=True).clamp(min=1)
    fig, (ax_cm, ax_pc) = plt.subplots(1, 2, figsize=(15, 6), gridspec_kw={"width_ratios": [3, 2]})
    sns.heatmap(percent.numpy(), annot=True, fmt=".1f", cmap="Blues", cbar=False, ax=ax_cm,
                xticklabels=CLASS_NAMES, yticklabels=CLASS_NAMES, annot_kws={"fontsize": 8})
    ax_cm.set(xlabel="predicted", ylabel="true", title="Confusion matrix (% of each true class)")
    per_class = percent.diag().numpy()
    sns.barplot(x=per_class, y=list(CLASS_NAMES), ax=ax_pc, hue=list(CLASS_NAMES), legend=False)
    ax_pc.set(xlabel="accuracy (%)", title="Per-class test accuracy", xlim=(min(60, per_class.min() - 5), 100))
    for i, v in enumerate(per_class):
        ax_pc.text(v - 0.5, i, f"{v:.1f}", va="center", ha="right", fontsize=8, color="white")
    return fig


def weight_histograms(model: torch.nn.Module, bins: int = 80):
    """One histogram of weights per prunable layer, with its std and share of exact zeros."""
    layers = prunable_layers(model)
    cols = 3
    rows = (len(layers) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for ax, (name, layer) in zip(axes.flat, layers.items()):
        w = layer.weight.detach().flatten().cpu().numpy()
        ax.hist(w, bins=bins, color="C0")
        ax.set_title(f"{name}  {tuple(layer.weight.shape)}", fontsize=9)
        ax.text(0.98, 0.95, f"std {w.std():.3f}\nzeros {np.mean(w == 0):.1%}", transform=ax.transAxes,
                ha="right", va="top", fontsize=8)
    for ax in axes.flat[len(layers):]:
        ax.set_visible(False)
    fig.suptitle("Weight distribution per layer")
    fig.tight_layout()
    return fig


def misclassified_examples(images: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor,
                           cls: int, n: int = 8):
    """Up to ``n`` images of class ``cls`` the model got wrong, titled with the predicted class."""
    preds = logits.argmax(1)
    wrong = torch.nonzero((labels == cls) & (preds != cls)).flatten()[:n]
    fig, axes = plt.subplots(1, n, figsize=(1.6 * n, 2.2))
    for ax in axes:
        ax.axis("off")
    for ax, i in zip(axes, wrong):
        ax.imshow(images[i], cmap="gray_r")
        ax.set_title(f"→ {CLASS_NAMES[preds[i]]}", fontsize=8)
    fig.suptitle(f"misclassified '{CLASS_NAMES[cls]}' test images (title: predicted class)")
    return fig


def stage_bars(stages: dict, title: str = "Compression stages"):
    """Bytes on disk per stage (bars, log scale, 'N x smaller' labels) and test accuracy (line).

    ``stages``: name -> (bytes, accuracy percent), in order, the first being the reference.
    """
    names = list(stages)
    sizes = np.array([stages[n][0] for n in names], dtype=float)
    accs = [stages[n][1] for n in names]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    bars = ax.bar(range(len(names)), sizes, color=sns.color_palette("Blues_d", len(names)))
    ax.set_yscale("log")
    ax.set(ylabel="bytes on disk (log)", title=title)
    ax.set_xticks(range(len(names)), names, rotation=12, ha="right", fontsize=9)
    for bar, size in zip(bars, sizes):
        label = "reference" if size == sizes[0] else f"{sizes[0] / size:.1f}x smaller"
        ax.text(bar.get_x() + bar.get_width() / 2, size * 1.1, f"{size / 1e3:,.0f} kB\n{label}",
                ha="center", va="bottom", fontsize=8)
    ax.set_ylim(sizes.min() / 3, sizes.max() * 6)
    twin = ax.twinx()
    twin.plot(range(len(names)), accs, "o-", color="C3")
    twin.set_ylabel("test accuracy (%)", color="C3")
    twin.set_ylim(min(accs) - 2, max(accs) + 1)
    twin.grid(False)
    return fig


# ------------------------------------------------------------- structured pruning (notebook 02)
def plot_filter_norms(scores: dict[str, Tensor], keeps: dict[str, Tensor] | None = None):
    """Sorted L1 norms per layer (one panel each); with ``keeps``, the removed ones in red."""
    fig, axes = plt.subplots(1, len(scores), figsize=(3.2 * len(scores), 3.0), squeeze=False)
    for ax, (name, s) in zip(axes[0], scores.items()):
        order = torch.sort(s, descending=True).indices
        colors = ["C0"] * len(s)
        if keeps is not None and name in keeps:
            kept = set(torch.as_tensor(keeps[name]).tolist())
            colors = ["C0" if int(i) in kept else "C3" for i in order]
        ax.bar(range(len(s)), s[order].numpy(), color=colors, width=1.0)
        ax.set(title=name.split(".")[-2] + "." + name.split(".")[-1] if "block" in name else name.split(".")[-1],
               xlabel="filter/unit (sorted)", ylabel="Σ|W|" if ax is axes[0][0] else None)
    fig.tight_layout()
    return fig


def plot_sensitivity(scan: dict[str, list[float]], ratios: Sequence[float], reference: float,
                     max_drop: float | None = None, chosen: dict[str, float] | None = None):
    """Validation accuracy vs pruning ratio, one line per layer pruned alone (no fine-tuning)."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, (name, accs) in enumerate(scan.items()):
        ax.plot(ratios, accs, "o-", color=f"C{i}", label=name)
        if chosen is not None and name in chosen:
            ax.axvline(chosen[name], color=f"C{i}", ls=":", lw=1)
    ax.axhline(reference, color="k", lw=1, label="unpruned")
    if max_drop is not None:
        ax.axhline(reference - max_drop, color="k", ls="--", lw=1, label=f"unpruned − {max_drop} pp")
    ax.set(xlabel="fraction of the layer's filters/units removed (by smallest Σ|W|)",
           ylabel="validation accuracy (%)", title="Sensitivity: one layer pruned at a time, no fine-tuning",
           ylim=(max(0, min(min(a) for a in scan.values()) - 2), reference + 2))
    ax.legend(fontsize=8, loc="lower left")
    return fig


def draw_layer_filters(ax_norms, ax_images, weight: Tensor, keep: Tensor, title: str = "") -> None:
    """A layer's filters by L1 norm (bars, removed in red) and as 3×3 images (removed crossed out)."""
    weight = weight.detach().cpu()
    scores = weight.abs().flatten(1).sum(1)
    kept = torch.zeros(len(scores), dtype=torch.bool)
    kept[torch.as_tensor(keep, dtype=torch.long)] = True
    order = torch.sort(scores, descending=True).indices
    ax_norms.bar(range(len(scores)), scores[order].numpy(), width=1.0,
                 color=["C0" if kept[i] else "C3" for i in order])
    ax_norms.set(title=f"{title}: Σ|W| per filter (red: removed)", xlabel="filter (sorted)", ylabel="Σ|W|")
    if ax_images is None:
        return
    images = weight.mean(1) if weight.dim() == 4 else weight[:, None, :]  # mean over input channels
    grid = int(math.ceil(math.sqrt(len(images))))
    ax_images.axis("off")
    ax_images.set_title("filters (mean over inputs)\ncrossed out: removed", fontsize=9)
    for i, img in enumerate(images):
        sub = ax_images.inset_axes([(i % grid) / grid, 1 - (i // grid + 1) / grid, 0.9 / grid, 0.9 / grid])
        sub.imshow(img.numpy(), cmap="RdBu_r", vmin=-images.abs().max(), vmax=images.abs().max())
        sub.set_xticks([]), sub.set_yticks([])
        if not kept[i]:
            sub.plot([-0.5, img.shape[-1] - 0.5], [-0.5, img.shape[-2] - 0.5], color="C3", lw=2)
            sub.plot([-0.5, img.shape[-1] - 0.5], [img.shape[-2] - 0.5, -0.5], color="C3", lw=2)


def plot_gamma_histograms(before: list[Tensor], after: list[Tensor], names: list[str], bins: int = 40):
    """|γ| per conv block before and after sparsity training (one panel per layer)."""
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.2), squeeze=False)
    top = float(max(torch.cat(before).max(), torch.cat(after).max()))
    edges = torch.linspace(0, top, bins + 1).numpy()
    for ax, name, b, a in zip(axes[0], names, before, after):
        ax.hist(b.abs().numpy(), bins=edges, alpha=0.6, color="C0", label="before")
        ax.hist(a.abs().numpy(), bins=edges, alpha=0.6, color="C3", label="after sparsity training")
        ax.set(title=name.replace("features.", "").replace(".conv", ""), xlabel="|γ|")
    axes[0][0].set_ylabel("channels")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("BatchNorm scale factors |γ| per conv block")
    fig.tight_layout()
    return fig
