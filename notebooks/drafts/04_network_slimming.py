# %% [markdown]
# # 04 · Network Slimming with real channel removal
#
# *Push BatchNorm scale factors γ toward zero during training, remove the channels whose γ is
# smallest, fine-tune, and measure how far the channel count of our CNN really goes down.*
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/compression-course/model-compression-course/blob/main/notebooks/04_network_slimming.ipynb)

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
# - **Sparsity training**: add an L1 penalty on the BatchNorm scale factors γ, and watch it push
#   many of them toward zero (histograms before and after).
# - **Global threshold**: rank the |γ| of *all* conv blocks together and remove the channels below a
#   percentile, keeping a minimum number per layer — the network decides which layers shrink.
# - Remove those channels **for real** with the surgery of notebook 02, fine-tune, and measure
#   accuracy, parameters, MACs, latency and bytes for several ratios.
# - Compare with L1 filter pruning (notebook 02) **at the same parameter count**.
#
# **Method** (Liu et al. 2017, *Learning Efficient Convolutional Networks through Network
# Slimming*). Each conv channel $c$ is followed by BatchNorm, $y_c = \gamma_c\,\hat{x}_c + \beta_c$, so
# $\gamma_c$ scales the channel's whole contribution. Training minimises
#
# $$\mathcal{L} = \frac{1}{|B|}\sum_{(x, y) \in B} \ell\big(f(x), y\big) + s \sum_{c} |\gamma_c|,$$
#
# whose subgradient adds $s\,\operatorname{sign}(\gamma_c)$ to each $\gamma_c$'s gradient (a hook on
# the γ tensors does this inside the ordinary training loop). A channel with $\gamma_c \approx 0$
# carries no information — it outputs the constant $\mathrm{ReLU}(\beta_c)$ — so removing it
# changes little, and fine-tuning absorbs the rest (`ABSORB = True` folds that constant into the
# next layer first).

# %%
import json
import platform

import matplotlib.pyplot as plt
import torch

from helpers import load_model, save_model
from helpers.data import Batches, load_splits
from helpers.measure import measure_latency
from helpers.paths import output_dirs
from helpers.plots import save_fig, set_style
from helpers.pruning import slimming as sl
from helpers.pruning import structured as st
from helpers.results import make_record, write_results
from helpers.training import evaluate, fine_tune, fit, load_or_train_baseline, pick_device, seed_everything
from helpers.widgets import slider_over

set_style()
print(f"python {platform.python_version()} · torch {torch.__version__}")

# %% tags=["parameters"]
QUICK = False            # True: tiny subsets, one epoch (tests, CI); False: the real experiment
PENALTY = 1e-2           # s, the strength of the L1 penalty on γ (see section 2)
SPARSITY_EPOCHS = 4      # epochs of sparsity training, starting from the baseline's weights
SPARSITY_LR = 3e-3       # peak learning rate of sparsity training (one-cycle), the baseline's own
RATIOS = [0.3, 0.4, 0.5, 0.6, 0.7]  # fractions of all conv channels to remove
TARGET_RATIO = 0.5       # the ratio of the saved model and of the comparison with L1 pruning
MIN_CHANNELS = 4         # every conv layer keeps at least this many channels
ABSORB = False           # fold a removed channel's constant output ReLU(β) into the next layer
FT_EPOCHS = 3            # fine-tuning epochs after removal
FT_IMAGES = 55000        # training images used for fine-tuning (the first ones of the training split)
FT_LR = 1e-3             # peak learning rate of fine-tuning
BATCH_SIZE = 128
SEED = 0
DATA_DIR = None          # None: $COURSE_DATA_DIR or <repo>/data

# %%
EPOCHS_SPARSE = 1 if QUICK else SPARSITY_EPOCHS
CURVE = [0.3, TARGET_RATIO] if QUICK else RATIOS
FT = 1 if QUICK else FT_EPOCHS
LATENCY_SECONDS = 0.1 if QUICK else 1.0   # measuring time per latency point
outputs = output_dirs(QUICK)              # QUICK never writes over the committed FULL outputs
device = pick_device()
seed_everything(SEED)
print(f"QUICK={QUICK} · device={device} · outputs under {outputs.root}")

# %% [markdown]
# ## 1. Data and the baseline

# %%
splits = load_splits(DATA_DIR, quick=QUICK)
train_batches = Batches(splits.train, BATCH_SIZE, shuffle=True, augment=True, seed=SEED)
ft_batches = Batches(splits.train.head(FT_IMAGES), BATCH_SIZE, shuffle=True, augment=True, seed=SEED + 1)
val_batches, test_batches = Batches(splits.val, 1000), Batches(splits.test, 1000)
print({name: len(getattr(splits, name)) for name in ("train", "val", "test")})

# %%
baseline, baseline_path = load_or_train_baseline(outputs, splits, quick=QUICK, device=device)
print(f"baseline from {baseline_path}")

# %% [markdown]
# Measured in this run, so latencies compare like with like:

# %%
base_test = evaluate(baseline, test_batches)["accuracy"]
def measure_baseline():
    return make_record("baseline (re-measured)", "none (dense float32)", baseline, base_test, baseline_path,
                       outputs, latency=measure_latency(baseline, min_run_time=LATENCY_SECONDS),
                       val_accuracy=round(evaluate(baseline, val_batches)["accuracy"], 4),
                       conv_channels=list(baseline.config.conv_channels))

base_record = measure_baseline()
print(f"test {base_test:.2f}% · {base_record['params']:,} params · "
      f"latency b1 {base_record['latency_ms']['batch_1']:.2f} ms, b256 {base_record['latency_ms']['batch_256']:.1f} ms")

# %% [markdown]
# ## 2. Sparsity training
#
# **From the baseline's weights, not from scratch.** The paper trains from scratch with the
# penalty for its whole schedule; we start from the trained baseline and train `SPARSITY_EPOCHS`
# more epochs with it (a new one-cycle schedule at the baseline's learning rate). This costs a
# fraction of a full training run — the whole notebook must fit in minutes — and the features the
# baseline learnt are kept while the penalty decides which channels they need.
#
# **Choosing s.** The paper uses $s = 10^{-4}$ with SGD over 160 epochs. We have a few epochs and
# AdamW, which divides every gradient by its running RMS. What decides whether a γ moves is then
# $s$ *relative to the noise of the loss gradient on γ*: far below it, γ barely moves in a few
# epochs; above it, every γ the loss does not defend moves toward 0 by about one learning rate per
# step, and only channels whose loss gradient can balance $s$ — the ones the network needs — keep
# their γ. The stationary points are those of $\mathcal{L}$ either way; AdamW only changes the
# speed. We therefore pick $s$ large enough that a clear group of γ reaches ≈ 0 within the budget:
# check the histograms for a tall bar at 0, separate from the survivors.

# %%
gammas_before = st.bn_gamma_abs(baseline)
sparse = load_model(baseline_path).to(device)
with sl.gamma_l1_penalty(sparse, PENALTY):
    history = fit(sparse, train_batches, val_batches, epochs=EPOCHS_SPARSE, lr=SPARSITY_LR,
                  device=device, desc="sparsity training")
gammas_after = st.bn_gamma_abs(sparse)
print(f"Σ|γ| {sum(g.sum() for g in gammas_before):.1f} -> {sum(g.sum() for g in gammas_after):.1f} · "
      f"validation accuracy after sparsity training {history.val_accuracy[-1]:.2f}%")

# %%
names = st.conv_layer_names(baseline)
fig = sl.plot_gamma_histograms(gammas_before, gammas_after, names)
save_fig(fig, "04_gamma_histograms", outputs.figures);

# %% [markdown]
# After sparsity training, a large group of channels sits near |γ| = 0 while the others keep
# their scale: the gap between them is where a threshold separates what to keep.
#
# ## 3. Thresholds, removal, fine-tuning — for several ratios
#
# For each ratio $r$: the threshold is the $r$-quantile of all |γ|; every layer keeps at least
# `MIN_CHANNELS`; the channels are removed, the model is evaluated right away on the validation
# split, then fine-tuned for `FT` epochs.

# %%
def measure_point(model, name, method, r, **extra):
    path = save_model(model, outputs.weights / f"04_{name}.pt", meta={"ratio": r, **extra})
    return make_record(name, method, model, evaluate(model, test_batches)["accuracy"], path, outputs,
                       latency=measure_latency(model, min_run_time=LATENCY_SECONDS), ratio=r,
                       val_accuracy=round(evaluate(model, val_batches)["accuracy"], 4),
                       conv_channels=list(model.config.conv_channels),
                       conv_channels_removed=round(1 - sum(model.config.conv_channels) / sum(baseline.config.conv_channels), 4), **extra)

# %%
plans, curve, slim_models = {}, [], {}
for r in CURVE:
    plans[r] = sl.slimming_plan(sparse, r, MIN_CHANNELS)
    slim = sl.slim(sparse, r, MIN_CHANNELS, absorb=ABSORB)
    val_pruned = evaluate(slim, val_batches)["accuracy"]
    fine_tune(slim, ft_batches, epochs=FT, lr=FT_LR, device=device, desc=f"r={r}")
    slim_models[r] = slim
    curve.append(measure_point(slim.cpu(), f"slim_r{round(100 * r):02d}", "network slimming (removed)", r,
                               val_accuracy_pruned=round(val_pruned, 4), threshold=plans[r].threshold,
                               fine_tune_epochs=FT, fine_tune_images=ft_batches.num_images,
                               sparsity_epochs=EPOCHS_SPARSE, penalty=PENALTY))
    print(f"r={r}: channels {plans[r].conv_channels} · val right after removal {val_pruned:.2f}% · "
          f"test after fine-tuning {curve[-1]['test_accuracy']:.2f}%")

# %% [markdown]
# ## 4. Explore: move the ratio
#
# The threshold on the histogram of all |γ| (log scale), the channels each layer keeps, and the
# accuracy right after removal (validation) and after fine-tuning (test). The same figure for
# `TARGET_RATIO` is saved statically.

# %%
def show_ratio(r):
    fig = sl.plot_slimming_point(gammas_after, plans[r], curve, CURVE.index(r), base_record, names)
    plt.show()
    return fig

fig = sl.plot_slimming_point(gammas_after, plans[TARGET_RATIO], curve, CURVE.index(TARGET_RATIO), base_record, names)
save_fig(fig, "04_threshold_channels_accuracy", outputs.figures)
plt.close(fig)
slider_over(CURVE, show_ratio, description="ratio")

# %% [markdown]
# ## 5. Against L1 filter pruning at the same parameter count
#
# The fairest comparison gives L1 filter pruning **exactly the same architecture**: the baseline
# (without sparsity training) is pruned by Σ|W| to the slimmed model's channel counts per layer,
# then fine-tuned with the same epochs. Same parameters, MACs and latency; only *which* channels
# survive, and the sparsity training, differ.

# %%
target_slim = slim_models[TARGET_RATIO]
l1_same = st.prune_to_counts(baseline, target_slim.config.conv_channels)
assert l1_same.config == target_slim.config
fine_tune(l1_same, ft_batches, epochs=FT, lr=FT_LR, device=device, desc="L1, same shape")
l1_record = measure_point(l1_same.cpu(), "l1_same_shape", "L1 filter pruning, slimming's shape", TARGET_RATIO,
                          fine_tune_epochs=FT, fine_tune_images=ft_batches.num_images)
target_record = curve[CURVE.index(TARGET_RATIO)]
print(f"{target_record['params']:,} params each: slimming {target_record['test_accuracy']:.2f}% · "
      f"L1 filter pruning {l1_record['test_accuracy']:.2f}% (test)")

# %% [markdown]
# Notebook 02's own curve (its per-layer ratios, FC units pruned too) is drawn as well when its
# results are there:

# %%
nb02 = outputs.results / "02_l1_filter_pruning.json"   # notebook 02's records of the same mode (FULL/QUICK)
l1_curve = [r for r in json.loads(nb02.read_text()) if r["name"].startswith("l1_r")] if nb02.is_file() else []
fig, ax = plt.subplots(figsize=(7, 4.2))
ax.plot([r["params"] for r in curve], [r["test_accuracy"] for r in curve], "o-", label="network slimming (this notebook)")
ax.plot(l1_record["params"], l1_record["test_accuracy"], "D", ms=9, label="L1 pruning, slimming's shape")
if l1_curve:
    ax.plot([r["params"] for r in l1_curve], [r["test_accuracy"] for r in l1_curve], "s--", label="L1 curve of notebook 02")
ax.plot(base_record["params"], base_record["test_accuracy"], "k*", ms=12, label="baseline")
ax.set(xscale="log", xlabel="parameters", ylabel="test accuracy (%)", title="Accuracy vs parameters")
ax.legend(fontsize=8), save_fig(fig, "04_vs_l1_pruning", outputs.figures);

# %% [markdown]
# ## 6. The chosen model and the records
#
# The model at `TARGET_RATIO` is saved as `weights/04_slimmed.pt`; `load_model` rebuilds it at its
# pruned shape. The baseline's latency is measured once more, right before the chosen model's, so
# the speed-up compares two measurements taken back to back.

# %%
base_record = measure_baseline()
chosen = measure_point(target_slim.cpu(), "slimmed", "network slimming (chosen)", TARGET_RATIO,
                       fine_tune_epochs=FT, sparsity_epochs=EPOCHS_SPARSE, penalty=PENALTY)
print(load_model(outputs.weights / "04_slimmed.pt").config)
write_results("04_network_slimming", [base_record] + curve + [l1_record, chosen], outputs);

# %%
for rec in [base_record] + curve + [l1_record]:
    print(f"{rec['name']:24s} test {rec['test_accuracy']:6.2f}% · channels {rec['conv_channels']} · "
          f"params {rec['params']:>9,} · {rec['size_bytes'] / 1e3:7.1f} kB · "
          f"b1 {rec['latency_ms']['batch_1']:5.2f} ms · b256 {rec['latency_ms']['batch_256']:6.1f} ms")

# %% [markdown]
# ## Summary
#
# Printed from the records just written to `results/04_network_slimming.json`:

# %%
speedup = base_record["latency_ms"]["batch_256"] / chosen["latency_ms"]["batch_256"]
print(f"sparsity training: {EPOCHS_SPARSE} epochs from the baseline with s = {PENALTY}; fine-tuning {FT} epochs")
print(f"chosen: {chosen['conv_channels_removed']:.0%} of the conv channels removed {chosen['conv_channels']}, "
      f"test {chosen['test_accuracy']:.2f}% vs baseline {base_record['test_accuracy']:.2f}% "
      f"({chosen['test_accuracy'] - base_record['test_accuracy']:+.2f} pp)")
print(f"{base_record['params'] / chosen['params']:.1f}x fewer parameters · {speedup:.2f}x faster at batch 256 · "
      f"{base_record['latency_ms']['batch_1'] / chosen['latency_ms']['batch_1']:.2f}x at batch 1")
print(f"same shape, L1 filter pruning: {l1_record['test_accuracy']:.2f}%")

# %% [markdown]
# ### Exercises
#
# 1. Set `PENALTY = 0` (plain fine-tuning). Does the γ histogram still separate? What happens to
#    the accuracy right after removal at the larger ratios?
# 2. Set `ABSORB = True`: each removed channel's constant ReLU(β) is folded into the next layer.
#    At which ratios does that help the accuracy *right after removal*, and where does it hurt?
#    (Hint: it assumes γ = 0 exactly; how small is the γ of the channels removed at large ratios?)
# 3. Which layer loses most channels under the global threshold? Compare with notebook 02's
#    sensitivity scan: do the two methods agree on which layers are redundant?
# 4. Slimming only touches conv channels. Add notebook 02's FC unit pruning to the slimmed model:
#    how many parameters does that remove, and at what accuracy?
