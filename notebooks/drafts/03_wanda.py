# %% [markdown]
# # 03 · Wanda for CNNs: unstructured and N:M pruning, measured against magnitude
#
# *Which weights can go without retraining? Weight size alone, or weight size times the size of
# the input it multiplies — on a CNN, compared on the same model.*
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/compression-course/model-compression-course/blob/main/notebooks/03_wanda.ipynb)

# %%
# Colab only: fetch the course and install its helpers (Colab's own torch is kept).
import os, subprocess, sys
if "google.colab" in sys.modules and not os.path.isdir("/content/model-compression-course"):
    subprocess.run(["git", "clone", "--depth=1", "https://github.com/compression-course/model-compression-course",
                    "/content/model-compression-course"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", "/content/model-compression-course"], check=True)
if "google.colab" in sys.modules:
    os.chdir("/content/model-compression-course")  # so `import helpers` finds the package

# %% [markdown]
# ## Goals
#
# - Port **Wanda** (Sun et al., 2023, *A Simple and Effective Pruning Approach for Large Language
#   Models*) from the Linear layers of an LLM to a CNN, including its convolutions.
# - Compare it honestly with **magnitude pruning** on the same trained model, with the same
#   comparison groups, from 10% to 95% sparsity — first without any retraining, then with a short
#   fine-tune that keeps the masks fixed.
# - See what the choice of comparison group (per output row, per layer, global) and of pruned layers
#   does, and try **N:M semi-structured** sparsity (2:4 and 4:8), the pattern sparse tensor cores run.
# - Measure what a pruned model costs on disk: dense float32 (no smaller!) and a compact sparse encoding.
#
# **Method.** Magnitude pruning removes the weights with the smallest $|W_{ij}|$. Wanda scores each
# weight by the size of its contribution to the layer's output,
#
# $$S_{ij} = |W_{ij}|\cdot\lVert X_j\rVert_2,\qquad \lVert X_j\rVert_2 = \sqrt{\tfrac{1}{N}\textstyle\sum_{n=1}^{N}\lVert x_{n,j}\rVert_2^2},$$
#
# where $x_{n,j}$ is input feature $j$ of the layer on calibration image $n$, and removes in each
# **output row** exactly $\lfloor s\cdot \text{fan\_in}\rfloor$ weights with the lowest scores — no
# retraining, no weight update. For a convolution the weight is viewed as a matrix
# $(C_\text{out}, C_\text{in}k^2)$ and the input is unfolded into patches (im2col); then $x_{n,j}$
# holds input $j$ of the patch at every position of image $n$, so each of the $C_\text{in}k^2$ weights
# of a filter gets its own input norm.

# %%
import platform
import time

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch

from helpers import save_model
from helpers.data import Batches, calibration_batch, load_splits
from helpers.measure import layer_sparsity, sparsity
from helpers.paths import output_dirs
from helpers.plots import save_fig, set_style
from helpers.pruning.unstructured import (input_norms, masked_fine_tune, prune_model, select_layers,
                                          sweep, wanda_scores)
from helpers.results import make_record, write_results
from helpers.storage.sparse import load_sparse_model, save_sparse_model
from helpers.training import accuracy, load_or_train_baseline, pick_device, predict, seed_everything

set_style()
print(f"python {platform.python_version()} · torch {torch.__version__}")

# %% tags=["parameters"]
QUICK = False                 # True: tiny subsets, few points (tests, CI); False: the real experiment
SPARSITIES = [0.1, 0.5, 0.7, 0.8, 0.9, 0.95]   # one-shot points, no fine-tuning
CALIBRATION_IMAGES = 512      # training-split images for Wanda's input norms
FINE_TUNE_EPOCHS = 3          # per fine-tuned model, masks fixed
FINE_TUNE_LR = 1e-3
FINE_TUNE_IMAGES = None       # None: the whole training split (55,000 images)
FINE_TUNE_ROW_AT = [0.9]      # Wanda and magnitude, per row, inner layers: fine-tuned at these
FINE_TUNE_GLOBAL_AT = [0.9]   # global magnitude and LAMP, inner layers: fine-tuned at these
BATCH_SIZE = 128
SEED = 0
DATA_DIR = None               # None: $COURSE_DATA_DIR or <repo>/data

# %%
sparsities = [0.5, 0.9] if QUICK else SPARSITIES
calibration_images = 64 if QUICK else CALIBRATION_IMAGES
fine_tune_epochs = 1 if QUICK else FINE_TUNE_EPOCHS
row_at, global_at = ([0.9], [0.9]) if QUICK else (FINE_TUNE_ROW_AT, FINE_TUNE_GLOBAL_AT)
outputs = output_dirs(QUICK)
device = pick_device()
seed_everything(SEED)
print(f"QUICK={QUICK} · sparsities={sparsities} · device={device} · outputs under {outputs.root}")

# %% [markdown]
# ## 1. Data and the baseline
#
# The baseline of notebook 01 is loaded from `weights/01_baseline.pt`; when it is missing, a
# baseline is trained here (one epoch in QUICK mode). Test accuracy is only *reported*: every
# choice below (calibration, which models to fine-tune) is fixed before looking at it.

# %%
splits = load_splits(DATA_DIR, quick=QUICK)
train_batches = Batches(splits.train.head(FINE_TUNE_IMAGES), BATCH_SIZE, shuffle=True, augment=True, seed=SEED)
val_batches, test_batches = Batches(splits.val, 1000), Batches(splits.test, 1000)
baseline, baseline_path = load_or_train_baseline(outputs, splits, quick=QUICK, device=device)
baseline = baseline.to(device)
baseline_accuracy = accuracy(baseline, test_batches)
print(f"baseline ({baseline_path or 'trained here'}): test accuracy {baseline_accuracy:.2f}%")

# %% [markdown]
# ## 2. Wanda's input norms on a CNN
#
# Forward hooks on every Conv2d and Linear layer collect, over the calibration images (drawn from
# the **training** split, never the test set), the squared inputs of each weight column. For a
# convolution, `torch.nn.functional.unfold` turns the input into patches of shape
# $(N, C_\text{in}k^2, L)$ with $L$ patch positions; the norm sums over images and positions. The
# unit tests check these norms against a brute-force loop over patches.

# %%
calibration = calibration_batch(splits.train, calibration_images, seed=SEED)
all_layers = select_layers(baseline, "all")
norms = input_norms(baseline, all_layers, calibration)
{name: tuple(n.shape) for name, n in norms.items()}

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 3.6))
sns.heatmap(norms["features.block2.conv"].reshape(32, 9).T.cpu(), ax=axes[0], cmap="viridis")
axes[0].set(title="block2.conv: ‖X_j‖ per (kernel position, input channel)", xlabel="input channel", ylabel="kernel position")
axes[1].plot(norms["classifier.fc1"].cpu(), lw=0.6)
axes[1].set(title="fc1: ‖X_j‖ per input feature (flattened 128×3×3 map)", xlabel="input feature j")
save_fig(fig, "03_input_norms", outputs.figures);

# %% [markdown]
# The input norms differ by an order of magnitude between input channels (whole columns of the
# heat map), and border positions of the kernel see zero padding more often. A small weight on a
# loud input can matter more than a large weight on a quiet one — that is what Wanda exploits.
#
# **Layer-by-layer order.** The official code prunes one transformer block after the other and
# feeds each block the output of the *already-pruned* earlier blocks. We do the same per layer
# (`sequential=True`): layer $l$'s input norms are measured through the pruned layers before it, so
# its scores see the inputs it will really get. This costs one calibration pass per layer (a second
# or so here). The cell below measures what the order changes, on the validation split.

# %%
order_rows = []
for s in sparsities[-3:]:
    for sequential in (True, False):
        pruned, _ = prune_model(baseline, "wanda", s, calibration=calibration, sequential=sequential)
        order_rows.append({"sparsity": s, "sequential": sequential, "val_accuracy": accuracy(pruned, val_batches)})
pd.DataFrame(order_rows).pivot(index="sparsity", columns="sequential", values="val_accuracy").round(2)

# %% [markdown]
# ## 3. One-shot pruning without fine-tuning, 10% to 95%
#
# Every variant prunes a copy of the baseline and is scored on the test set as is. Variants:
#
# - **comparison group**: per output row (Wanda's rule, exactly $\lfloor s\cdot\text{fan\_in}\rfloor$
#   zeros per row), layer-wide (the $\lfloor s\cdot n\rfloor$ lowest of the layer), or global
#   (all layers ranked together) — by plain magnitude, or by **LAMP** (Lee et al. 2021), magnitude
#   rescaled within each layer, $w_u^2 / \sum_{v \ge u} w_v^2$ over the layer's weights sorted by size,
#   so that a layer of small weights is not emptied first;
# - **pruned layers**: `all` Conv2d/Linear layers, or `inner` — the first conv (9 weights per
#   filter) and the classifier's output layer kept dense (1,498 weights, 0.1% of the model);
# - **BN re-estimated**: after pruning, the BatchNorm running statistics are recomputed on the
#   calibration images. No weight changes — but the stored statistics belong to the dense model,
#   and pruning shifts what the convolutions output.

# %%
VARIANTS = {
    "Wanda · row · all": dict(method="wanda", group="row", layers="all"),
    "Wanda · row · inner": dict(method="wanda", group="row", layers="inner"),
    "Wanda · row · inner · BN re-estimated": dict(method="wanda", group="row", layers="inner", recalibrate_bn=True),
    "Wanda · layer · inner": dict(method="wanda", group="layer", layers="inner"),
    "magnitude · row · all": dict(method="magnitude", group="row", layers="all"),
    "magnitude · row · inner": dict(method="magnitude", group="row", layers="inner"),
    "magnitude · row · inner · BN re-estimated": dict(method="magnitude", group="row", layers="inner", recalibrate_bn=True),
    "magnitude · layer · inner": dict(method="magnitude", group="layer", layers="inner"),
    "magnitude · global · all": dict(method="magnitude", group="global", layers="all"),
    "magnitude · global · inner": dict(method="magnitude", group="global", layers="inner"),
    "LAMP · global · inner": dict(method="lamp", group="global", layers="inner"),
}
one_shot_records = []  # one results record per pruned model (not saved: no weights file)

def record_point(model, row):
    one_shot_records.append(make_record(f"{row['variant']} · {row['target']:.0%}", f"{row['variant']}, no fine-tuning",
                                        model, row["accuracy"], None, outputs, target_sparsity=row["target"], fine_tune_epochs=0))

start = time.perf_counter()
rows = sweep(baseline, sparsities, VARIANTS, lambda m: accuracy(m, test_batches), calibration,
             keep_masks_of="features.block2.conv", on_point=record_point)
print(f"{len(rows)} pruned models scored in {time.perf_counter() - start:.0f} s")

# %%
curves = pd.DataFrame([{k: v for k, v in r.items() if k != "mask"} for r in rows])
table = curves.pivot(index="target", columns="variant", values="accuracy").round(2)
table

# %%
fig, ax = plt.subplots(figsize=(10, 5.5))
sns.lineplot(curves, x="sparsity", y="accuracy", hue="variant", style="variant", markers=True, dashes=False, ax=ax)
ax.axhline(baseline_accuracy, color="k", ls=":", label="dense baseline")
ax.set(xlabel="sparsity (fraction of zero weights, all Conv2d/Linear layers)", ylabel="test accuracy (%)",
       title="One-shot pruning, no fine-tuning", ylim=(max(0, curves.accuracy.min() - 5), 100))
ax.legend(fontsize=8, ncol=2)
save_fig(fig, "03_pareto_no_finetune", outputs.figures);

# %% [markdown]
# ### The gap between Wanda and magnitude, without fine-tuning
#
# The same comparison group (per output row) and the same layers, so the only difference is the
# score. Positive numbers: Wanda keeps more test accuracy. Reported as measured, whatever the sign.

# %%
gap = pd.DataFrame({f"Wanda − magnitude (pp), {v}": table[f"Wanda · row · {v}"] - table[f"magnitude · row · {v}"]
                    for v in ("all", "inner", "inner · BN re-estimated")}).round(2)
gap.loc[[s for s in (0.5, 0.7, 0.8, 0.9) if s in gap.index]]

# %% [markdown]
# **Where does the gap come from?** Prune one layer at a time (all others dense) to 90% with each
# score and measure validation accuracy: the layers where the two scores differ most are where
# the choice matters.

# %%
single = {}
for name in select_layers(baseline, "inner"):
    single[name] = {method: accuracy(prune_model(baseline, method, 0.9, layers=[name], calibration=calibration)[0], val_batches)
                    for method in ("wanda", "magnitude")}
pd.DataFrame(single).T.assign(difference=lambda d: d.wanda - d.magnitude).round(2)

# %% [markdown]
# How to read it: where the difference concentrates in a *convolution*, a likely reason is that
# the nine inputs of one channel in a 3×3 patch are strongly correlated (neighbouring pixels).
# Wanda scores every input on its own — a diagonal approximation of the layer's output error — so
# within a row it keeps the weights of loud input channels and drops quiet channels altogether
# (the column stripes in the mask images of section 7), whereas magnitude pruning keeps a few taps
# of many channels; with correlated taps, a few of them carry most of what a channel says. The
# inputs of an LLM's Linear layers, for which Wanda was designed, are far less redundant.

# %% [markdown]
# ### Which layers to prune
#
# With the uniform per-row rule and all layers pruned, each 9-weight filter of the first conv keeps
# only $9-\lfloor 9s\rfloor$ weights (one at 90%), and each of the 10 output rows of the classifier
# loses as many weights as any row of `fc2`. Per-layer sparsity of the two choices at 90%:

# %%
at = max(s for s in sparsities if s <= 0.9)
per_layer = {layers: layer_sparsity(prune_model(baseline, "wanda", at, layers=layers, calibration=calibration)[0])
             for layers in ("all", "inner")}
pd.DataFrame(per_layer).round(3)

# %%
conv1 = prune_model(baseline, "wanda", at, calibration=calibration)[0].features.block1.conv.weight.detach().cpu()
fig, axes = plt.subplots(2, 16, figsize=(12, 1.8))
for ax, kernel in zip(axes.flat, conv1[:, 0]):
    ax.imshow(kernel, cmap="RdBu", vmin=-conv1.abs().max(), vmax=conv1.abs().max())
    ax.axis("off")
fig.suptitle(f"first-layer filters after Wanda at {at:.0%}, all layers pruned (white = zero)")
save_fig(fig, "03_first_layer_filters", outputs.figures);

# %% [markdown]
# ## 4. N:M semi-structured sparsity (2:4 and 4:8)
#
# N:M keeps at most N of every M consecutive weights along the input dimension: exactly 50% zeros
# in a pattern that NVIDIA's sparse tensor cores execute at up to twice the speed. For a convolution
# the groups run over M consecutive **input channels** at the same kernel position (the layout of
# NVIDIA's ASP). The first conv has one input channel and stays dense; so does nothing else.

# %%
nm_layers = [name for name in all_layers if name != "features.block1.conv"]
nm_rows = []
for n, m in [(2, 4), (4, 8)]:
    for method in ("wanda", "magnitude"):
        pruned, _ = prune_model(baseline, method, nm=(n, m), layers=nm_layers, calibration=calibration)
        nm_rows.append({"pattern": f"{n}:{m}", "method": method, "sparsity": sparsity(pruned),
                        "test_accuracy": accuracy(pruned, test_batches)})
        record_point(pruned, {"variant": f"{method} {n}:{m}", "target": 1 - n / m, "accuracy": nm_rows[-1]["test_accuracy"]})
nm_table = pd.DataFrame(nm_rows).round(4)
nm_table

# %% [markdown]
# Compare with the 50% rows of the table above: N:M constrains *where* the zeros go, so at the
# same sparsity it can only do as well as unconstrained per-row pruning, or worse.
#
# ## 5. Fine-tuning with the masks fixed
#
# A short fine-tune (AdamW, one-cycle schedule, the rate and epochs in the parameters cell) with
# the masks re-applied after every optimizer step, so pruned weights stay exactly zero. Fine-tuned
# (fixed in the parameters cell): Wanda and magnitude per row at `FINE_TUNE_ROW_AT`, global
# magnitude and global LAMP at `FINE_TUNE_GLOBAL_AT` (inner layers; the target counts *all* weights,
# the dense first conv and output layer included, so 90% means 90% of the model), and Wanda 2:4.

# %%
FINE_TUNED = {f"{method}_row_s{round(100 * s)}": dict(method=method, sparsity=s, group="row", layers="inner")
              for s in row_at for method in ("wanda", "magnitude")}
FINE_TUNED.update({f"{method}_global_s{round(100 * s)}": dict(method=method, sparsity=s, group="global", layers="inner",
                                                              model_wide=True)
                   for s in global_at for method in ("magnitude", "lamp")})
FINE_TUNED["wanda_2of4"] = dict(method="wanda", nm=(2, 4), layers=nm_layers)
tuned, before_ft, ft_seconds = {}, {}, {}
for name, spec in FINE_TUNED.items():
    model, masks = prune_model(baseline, calibration=calibration, **spec)
    before_ft[name] = accuracy(model, test_batches)
    history = masked_fine_tune(model, masks, train_batches, epochs=fine_tune_epochs, lr=FINE_TUNE_LR, device=device)
    tuned[name], ft_seconds[name] = (model, masks), sum(history.seconds)
    print(f"{name}: {before_ft[name]:.2f}% -> {accuracy(model, test_batches):.2f}% ({ft_seconds[name]:.0f} s)")

# %%
for name, (model, masks) in tuned.items():
    for layer, mask in masks.items():
        assert (dict(model.named_modules())[layer].weight[~mask.to(device)] == 0).all(), f"{name}: {layer} regrew"
print("every pruned weight is still exactly zero after fine-tuning")

# %% [markdown]
# ## 6. Saving: dense float32 vs a compact sparse encoding
#
# Masks are folded in (the weights are plain tensors with zeros), so `save_model` writes an
# ordinary checkpoint — exactly as large as the dense one. The sparse encoding of
# `helpers.storage.sparse` stores per layer either a bitmap or 8-bit relative indices (whichever is
# smaller) plus the float32 non-zero values; `load_sparse_model` restores the model exactly.

# %%
def save_both(name, model, meta):
    """weights/03_<name>.pt (dense) and .sparse; checks the sparse file reloads to identical outputs."""
    dense_path = save_model(model, outputs.weights / f"03_{name}.pt", meta=meta)
    sparse_path = save_sparse_model(model, outputs.weights / f"03_{name}.sparse", meta=meta)
    reloaded = load_sparse_model(sparse_path, device)
    assert torch.equal(predict(reloaded, val_batches)[0], predict(model, val_batches)[0])
    return dense_path, sparse_path

# %%
def describe(spec):
    """Method label and metadata of one fine-tuned variant (for the record and the saved files)."""
    pattern = f"{spec['nm'][0]}:{spec['nm'][1]}" if "nm" in spec else f"per-{spec['group']}"
    meta = {"score": spec["method"], "pattern": pattern, "target_sparsity": spec.get("sparsity"),
            "layers": spec["layers"], "fine_tune_epochs": fine_tune_epochs, "calibration_images": calibration_images}
    return f"{spec['method']} {pattern} + masked fine-tune", meta

# %%
records = []
for name, (model, masks) in tuned.items():
    method, meta = describe(FINE_TUNED[name])
    dense_path, sparse_path = save_both(name, model, meta)
    records.append(make_record(
        name, method, model, accuracy(model, test_batches), dense_path, outputs, **meta,
        accuracy_before_fine_tune=round(before_ft[name], 4), baseline_accuracy=round(baseline_accuracy, 4),
        fine_tune_seconds=round(ft_seconds[name], 1), sparse_file=sparse_path.name,
        sparse_size_bytes=sparse_path.stat().st_size))
write_results("03_wanda", one_shot_records + records, outputs)
summary = pd.DataFrame(records)[["name", "test_accuracy", "accuracy_before_fine_tune", "sparsity",
                                 "params_nonzero", "size_bytes", "sparse_size_bytes"]]
summary.assign(loss_pp=baseline_accuracy - summary.test_accuracy).round(4)

# %%
fig, ax = plt.subplots(figsize=(9, 5))
for method, marker in (("Wanda", "o"), ("magnitude", "s")):
    part = curves[curves.variant == f"{method} · row · inner"]
    ax.plot(part.sparsity, part.accuracy, marker=marker, alpha=0.5, label=f"{method} · row · inner, no fine-tuning")
ft = summary.assign(method=[FINE_TUNED[n]["method"] for n in summary.name])
sns.scatterplot(ft, x="sparsity", y="test_accuracy", hue="method", style="method", s=120, ax=ax, legend=False)
for _, r in ft.iterrows():
    ax.annotate(f"{r['name']} (fine-tuned)", (r.sparsity, r.test_accuracy), fontsize=7, xytext=(4, -10), textcoords="offset points")
ax.axhline(baseline_accuracy, color="k", ls=":", label="dense baseline")
ax.axhspan(baseline_accuracy - 0.5, baseline_accuracy, color="green", alpha=0.1, label="within 0.5 pp")
ax.set(xlabel="sparsity", ylabel="test accuracy (%)", title="Sparsity vs accuracy: one-shot and fine-tuned",
       ylim=(max(0, ft.test_accuracy.min() - 8), 100))
ax.legend(fontsize=8)
save_fig(fig, "03_pareto", outputs.figures);

# %% [markdown]
# ## 7. Explore: move the sparsity
#
# The slider picks one of the precomputed sparsities: on the left the test accuracy of Wanda and
# magnitude (per row, inner layers, no fine-tuning) with the chosen point marked, on the right the
# masks both methods give `block2.conv`, viewed as a $64\times 288$ matrix (black = pruned; each
# block of 9 columns is one input channel). Wanda tends to prune whole columns of quiet inputs;
# magnitude scatters its zeros.

# %%
from helpers.widgets import slider_over

masks_at = {(r["method"], r["target"]): r["mask"] for r in rows if r["variant"].endswith("row · inner")}

def show_point(s):
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), gridspec_kw={"width_ratios": [1.2, 1, 1]})
    for method, label in (("wanda", "Wanda"), ("magnitude", "magnitude")):
        part = curves[curves.variant == f"{label} · row · inner"]
        point = part[part.target == s].iloc[0]
        axes[0].plot(part.target, part.accuracy, "o-", label=f"{label}: {point.accuracy:.2f}% at {s:.0%}")
        axes[1 if method == "wanda" else 2].imshow(masks_at[(method, s)].reshape(64, -1).cpu(), cmap="gray", aspect="auto")
        axes[1 if method == "wanda" else 2].set(title=f"{label} mask of block2.conv at {s:.0%}", xticks=[], yticks=[])
    axes[0].axvline(s, color="gray", ls="--")
    axes[0].set(xlabel="target sparsity", ylabel="test accuracy (%)", title="no fine-tuning")
    axes[0].legend(fontsize=8)
    return fig

save_fig(show_point(0.9 if 0.9 in sparsities else sparsities[-1]), "03_masks_block2", outputs.figures)
slider_over(sparsities, lambda s: (show_point(s), plt.show()), description="sparsity")

# %% [markdown]
# ## Summary
#
# Printed from the measurements above and the records written to `results/03_wanda.json` (one per
# evaluated model: the one-shot points without a weights file, the fine-tuned models with theirs).

# %%
for s in [s for s in (0.5, 0.7, 0.8, 0.9) if s in table.index]:
    print(f"no fine-tuning, {s:.0%}: Wanda {table.loc[s, 'Wanda · row · all']:.2f}% vs magnitude "
          f"{table.loc[s, 'magnitude · row · all']:.2f}% (all layers); Wanda {table.loc[s, 'Wanda · row · inner']:.2f}% "
          f"vs magnitude {table.loc[s, 'magnitude · row · inner']:.2f}% (inner layers)")
print(f"baseline {baseline_accuracy:.2f}%")
for r in records:
    print(f"{r['name']}: sparsity {r['sparsity']:.1%}, test {r['test_accuracy']:.2f}% "
          f"({r['test_accuracy'] - baseline_accuracy:+.2f} pp) after {r['fine_tune_epochs']} fine-tuning epoch(s); "
          f"{r['size_bytes']:,} bytes dense, {r['sparse_size_bytes']:,} bytes sparse-encoded")
best = max((r for r in records if r["test_accuracy"] >= baseline_accuracy - 0.5), key=lambda r: r["sparsity"], default=None)
print("sparsest model within 0.5 pp of the baseline:",
      f"{best['name']} at {best['sparsity']:.1%}" if best else "none")

# %% [markdown]
# ### Exercises
#
# 1. Set `sequential=False` everywhere. Where does pruning each layer with inputs from the *dense*
#    earlier layers hurt, and why does it matter more at high sparsity?
# 2. Halve and double `CALIBRATION_IMAGES`. How many images does Wanda need before its masks stop
#    changing? (Compare masks with `(m1 == m2).float().mean()`.)
# 3. Implement global Wanda (`group="global"`). Why are the scores of different layers not on the
#    same scale, and what would you normalise by?
# 4. The sparse file is much smaller than the dense one, but is the pruned model any *faster* on a
#    CPU? Measure it with `helpers.measure.measure_latency` and explain.
