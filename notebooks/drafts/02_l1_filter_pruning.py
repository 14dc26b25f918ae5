# %% [markdown]
# # 02 · L1-norm filter pruning that really removes filters
#
# *Rank conv filters and hidden units by Σ|W|, cut the weakest out of the network, fine-tune, and
# measure a model that is genuinely smaller and faster.*
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/compression-course/model-compression-course/blob/main/notebooks/02_l1_filter_pruning.ipynb)

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
# - Score every conv filter (and every hidden unit of the fully connected layers) by its **L1 norm**
#   and remove the weakest ones **for real**: the pruned network is rebuilt at its smaller shape, so
#   it has fewer parameters, fewer MACs, a smaller file and a lower latency. Zeroing filters
#   (`torch.nn.utils.prune.ln_structured`) gives none of these.
# - Find out which layers tolerate pruning with a **sensitivity scan** on the validation split, and
#   choose per-layer ratios from it.
# - Compare **step-by-step** pruning (a small fraction per step, re-scored every step) with
#   **one-shot** pruning at the same final ratio and the same fine-tuning budget.
#
# **Method** (Li et al. 2017, *Pruning Filters for Efficient ConvNets*). Filter $j$ of a conv layer
# with weights $W \in \mathbb{R}^{C_\text{out}\times C_\text{in}\times 3\times 3}$ scores
#
# $$s_j = \sum_{c,u,v} |W_{j,c,u,v}|,$$
#
# and the fraction $r$ of filters with the smallest $s_j$ is removed. Removing filter $j$ removes
# output channel $j$: the filter, its BatchNorm entries ($\gamma_j, \beta_j$, running mean and
# variance), input channel $j$ of the next conv, and — after the last conv — the $3\cdot 3 = 9$
# input columns $9j,\dots,9j+8$ of the first fully connected layer. A hidden unit of a fully
# connected layer (a row of $W$, scored by its row sum $\sum_i |W_{j,i}|$) goes with its bias and
# the matching column of the next layer. The 10 output units are never pruned. A pruned layer with
# $C_\text{in}' = (1-r_{k-1})\,C_\text{in}$ inputs and $C_\text{out}' = (1-r_k)\,C_\text{out}$
# outputs costs about $(1-r_{k-1})(1-r_k)$ of its former MACs: pruning two neighbouring layers
# by half quarters the work between them.

# %%
import platform

import matplotlib.pyplot as plt
import torch

from helpers import load_model, save_model
from helpers.data import Batches, load_splits
from helpers.measure import count_macs, count_parameters, measure_latency
from helpers.paths import output_dirs
from helpers.plots import save_fig, set_style
from helpers.pruning import structured as st
from helpers.results import make_record, write_results
from helpers.training import evaluate, fine_tune, load_or_train_baseline, pick_device, seed_everything
from helpers.widgets import slider_over

set_style()
print(f"python {platform.python_version()} · torch {torch.__version__}")

# %% tags=["parameters"]
QUICK = False             # True: tiny subsets, one epoch (tests, CI); False: the real experiment
SCAN_RATIOS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]  # per-layer ratios of the sensitivity scan
MAX_DROP = 2.0            # FC layers: validation points a layer may lose, pruned alone and not fine-tuned
CONV_SCALE = [1.0, 1.0, 0.5]  # conv layer k loses CONV_SCALE[k] * r of its filters (see section 4)
CURVE_RATIOS = [0.3, 0.4, 0.5, 0.6, 0.7]  # conv filter ratio r of the accuracy/size/latency curve
MAX_VAL_LOSS = 1.0       # the saved model: the largest curve ratio within this many validation points
FT_EPOCHS = 2             # fine-tuning epochs per curve point
STEPS = 3                 # step-by-step: pruning steps ...
EPOCHS_PER_STEP = 2       # ... each followed by this many fine-tuning epochs; one-shot: STEPS * EPOCHS_PER_STEP
FT_IMAGES = 55000         # training images used for fine-tuning (the first ones of the training split)
FT_LR = 1e-3              # peak learning rate of fine-tuning (one-cycle)
BATCH_SIZE = 128
SHOW_LAYER = "features.block1.conv"  # the layer whose filters the slider shows
SEED = 0
DATA_DIR = None           # None: $COURSE_DATA_DIR or <repo>/data

# %%
SCAN = [0.3, 0.7] if QUICK else SCAN_RATIOS
CURVE = [0.5] if QUICK else CURVE_RATIOS
FT = 1 if QUICK else FT_EPOCHS
N_STEPS, STEP_EPOCHS = (2, 1) if QUICK else (STEPS, EPOCHS_PER_STEP)
SCHEDULE_EPOCHS = N_STEPS * STEP_EPOCHS   # the fine-tuning budget of both schedules
LATENCY_SECONDS = 0.1 if QUICK else 1.0   # measuring time per latency point
outputs = output_dirs(QUICK)              # QUICK never writes over the committed FULL outputs
device = pick_device()
seed_everything(SEED)
print(f"QUICK={QUICK} · device={device} · outputs under {outputs.root}")

# %% [markdown]
# ## 1. Data and the baseline
#
# The baseline of notebook 01 is loaded from `weights/` (trained here when it is missing). The
# validation split drives every choice below; the test set only reports.

# %%
splits = load_splits(DATA_DIR, quick=QUICK)
ft_batches = Batches(splits.train.head(FT_IMAGES), BATCH_SIZE, shuffle=True, augment=True, seed=SEED)
val_batches, test_batches = Batches(splits.val, 1000), Batches(splits.test, 1000)
print({name: len(getattr(splits, name)) for name in ("train", "val", "test")},
      f"· fine-tuning on {ft_batches.num_images:,} images")

# %%
baseline, baseline_path = load_or_train_baseline(outputs, splits, quick=QUICK, device=device)
print(f"baseline from {baseline_path}")

# %% [markdown]
# The baseline is measured **in this run**, right before the pruned models, so that latencies
# compare like with like (same machine, same load, two threads).

# %%
base_val = evaluate(baseline, val_batches)["accuracy"]
base_test = evaluate(baseline, test_batches)["accuracy"]
def measure_baseline():
    return make_record("baseline (re-measured)", "none (dense float32)", baseline, base_test, baseline_path,
                       outputs, latency=measure_latency(baseline, min_run_time=LATENCY_SECONDS),
                       val_accuracy=round(base_val, 4), conv_channels=list(baseline.config.conv_channels),
                       fc_features=list(baseline.config.fc_features))

base_record = measure_baseline()
print(f"validation {base_val:.2f}% · test {base_test:.2f}% · {base_record['params']:,} params · "
      f"latency b1 {base_record['latency_ms']['batch_1']:.2f} ms, b256 {base_record['latency_ms']['batch_256']:.1f} ms")

# %% [markdown]
# ## 2. Filter scores
#
# Σ|W| of every filter (conv) and every hidden unit (fc1, fc2), sorted. A flat curve means the
# filters look equally important by this measure; a long tail of small norms is what pruning hopes
# for. (With BatchNorm after each conv, the filter's scale is normalised away in the forward pass:
# the L1 norm reflects what weight decay left, a heuristic. Notebook 04 scores channels by the
# BatchNorm scale γ instead.)

# %%
scores = st.l1_scores(baseline)
fig = st.plot_filter_norms(scores)
save_fig(fig, "02_filter_norms", outputs.figures);

# %% [markdown]
# ## 3. Surgery: removing filters for real
#
# `structured.remove_channels` builds `build_model(smaller config)` and copies the kept filters,
# BatchNorm entries, next-layer input channels and fc1 columns into it. Prune half of every conv
# layer's filters and look at the shapes:

# %%
half = st.prune_l1(baseline, conv_ratios=0.5)
for name in ("features.block2.conv", "features.block3.bn", "classifier.fc1"):
    print(f"{name:22s} {tuple(baseline.get_submodule(name).weight.shape)} -> {tuple(half.get_submodule(name).weight.shape)}")
print(f"parameters {count_parameters(baseline):,} -> {count_parameters(half):,} · "
      f"MACs {count_macs(baseline):,} -> {count_macs(half):,}")

# %% [markdown]
# The surgery itself is exact: a unit test zeroes filters (with zero BatchNorm shift), removes
# them, and gets the same outputs (`tests/test_structured_pruning.py`). The *accuracy* loss here
# comes only from the filters that were not zero:

# %%
print(f"validation accuracy: baseline {base_val:.2f}% · half the conv filters removed, "
      f"before fine-tuning {evaluate(half, val_batches)['accuracy']:.2f}%")

# %% [markdown]
# ## 4. Sensitivity scan (validation split)
#
# Prune **one layer at a time** by each ratio and measure validation accuracy without
# fine-tuning. Layers whose curve stays flat can be pruned hard; layers whose curve drops early
# are *sensitive*. A layer's *safe ratio* is the largest ratio whose drop stays within `MAX_DROP`
# points (dotted lines).

# %%
scan = st.sensitivity_scan(baseline, val_batches, SCAN)
safe = st.ratios_from_sensitivity(scan, SCAN, base_val, MAX_DROP)
fig = st.plot_sensitivity(scan, SCAN, base_val, MAX_DROP, safe)
save_fig(fig, "02_sensitivity", outputs.figures)
print(f"most sensitive conv layer: {st.most_sensitive(scan, st.conv_layer_names(baseline))}; safe ratios: {safe}")

# %% [markdown]
# Accuracy is one side of the choice; the other is what a layer's filters **cost**. The same
# one-layer-at-a-time idea, with latency instead of accuracy: each conv layer alone loses half
# of its filters, and we measure batch-256 latency.

# %%
lat_of = lambda m: measure_latency(m, batch_sizes=(256,), min_run_time=LATENCY_SECONDS)["latency_ms_b256"]
lat_scan = st.latency_scan(baseline, 0.5, lat_of)
base_b256 = base_record["latency_ms"]["batch_256"]
for name, ms in lat_scan.items():
    print(f"{name:22s} half its filters removed: {ms:6.1f} ms at batch 256 ({base_b256 / ms:.2f}x faster)")

# %% [markdown]
# **Per-layer ratios, and why.** Li et al. prune sensitive layers less, or not at all. We weigh
# each layer's accuracy cost (first scan) against its speed gain (second scan):
#
# - The **hidden FC layers** hold most of the parameters (`fc1` alone 84%), are cheap in latency
#   and, in the scan, the least sensitive: each loses its *safe ratio* — the largest ratio within
#   `MAX_DROP` points *before* fine-tuning. Two points is generous on purpose: a hidden unit's loss
#   is what fine-tuning repairs best (the remaining units can take over its role), and the
#   parameter count is decided here.
# - **Blocks 1 and 2** buy the most speed per filter (block 1 works on 28×28 maps, so its
#   BatchNorm, ReLU and pooling move the most memory; block 2 holds many MACs and feeds block 3).
#   Skipping them because they are sensitive, as Li et al. do for some VGG layers, would leave most
#   of the latency untouched; they lose the full ratio $r$, and fine-tuning must repair them.
# - **Block 3** buys the least speed and feeds the classifier directly: it loses only half of $r$
#   (`CONV_SCALE`), keeping capacity where filters are cheap.
#
# The scans have no fine-tuning, so they *overstate* the damage; the curve below shows accuracy
# both right after pruning and after fine-tuning.

# %%
def ratios_at(r):
    return st.layer_ratios(baseline, scan, SCAN, base_val, r, MAX_DROP, CONV_SCALE)

print(f"per-layer ratios at r = 0.5: conv {ratios_at(0.5)[0]}, FC {ratios_at(0.5)[1]}")

# %% [markdown]
# ## 5. The curve: prune, fine-tune, measure
#
# For each ratio: L1 pruning with real removal, `FT` epochs of fine-tuning, then test accuracy,
# parameters, MACs, latency (batch 1 and 256) and bytes on disk of the saved file.

# %%
def measure_point(model, name, method, r, **extra):
    path = save_model(model, outputs.weights / f"02_{name}.pt", meta={"ratio": r, **extra})
    return make_record(name, method, model, evaluate(model, test_batches)["accuracy"], path, outputs,
                       latency=measure_latency(model, min_run_time=LATENCY_SECONDS), ratio=r,
                       val_accuracy=round(evaluate(model, val_batches)["accuracy"], 4),
                       conv_channels=list(model.config.conv_channels),
                       fc_features=list(model.config.fc_features), **extra)

# %%
curve = []
for r in CURVE:
    pruned = st.prune_l1(baseline, *ratios_at(r))
    val_pruned = evaluate(pruned, val_batches)["accuracy"]
    fine_tune(pruned, ft_batches, epochs=FT, lr=FT_LR, device=device, desc=f"r={r}")
    curve.append(measure_point(pruned.cpu(), f"l1_r{round(100 * r):02d}", "L1 filter pruning (removed)", r,
                               val_accuracy_pruned=round(val_pruned, 4), fine_tune_epochs=FT,
                               fine_tune_images=ft_batches.num_images))
    print(f"r={r}: test {curve[-1]['test_accuracy']:.2f}% · {curve[-1]['params']:,} params · "
          f"b256 {curve[-1]['latency_ms']['batch_256']:.1f} ms")

# %% [markdown]
# ## 6. One-shot vs step-by-step at the same final ratio
#
# **Which ratio.** The target is read off the curve on the **validation** split: the largest $r$
# whose validation accuracy after the short fine-tune is within `MAX_VAL_LOSS` points of the
# baseline's. The test numbers above play no part in it.

# %%
within = [p["ratio"] for p in curve if p["val_accuracy"] >= base_val - MAX_VAL_LOSS]
TARGET_RATIO = max(within) if within else min(CURVE)
print(f"target ratio r = {TARGET_RATIO} (validation within {MAX_VAL_LOSS} points: {within})")

# %% [markdown]
# Both reach the per-layer ratios of `TARGET_RATIO` and get the same fine-tuning budget,
# `SCHEDULE_EPOCHS` epochs:
#
# - **one-shot**: remove everything at once, then fine-tune for the whole budget;
# - **step-by-step** (as in the course's seed project, with fewer, larger steps to fit the budget):
#   `N_STEPS` steps; each removes another $1/N$ of the final ratio, **re-scoring** the current,
#   already fine-tuned model, then fine-tunes `STEP_EPOCHS` epochs.

# %%
target = ratios_at(TARGET_RATIO)
one_shot = st.prune_one_shot(baseline, *target, after=lambda m: fine_tune(
    m, ft_batches, epochs=SCHEDULE_EPOCHS, lr=FT_LR, device=device, desc="one-shot"))
step_by_step = st.prune_step_by_step(baseline, *target, steps=N_STEPS, between=lambda m, k: fine_tune(
    m, ft_batches, epochs=STEP_EPOCHS, lr=FT_LR, device=device, desc=f"step {k + 1}/{N_STEPS}"))
assert one_shot.config == step_by_step.config

# %%
schedules = [measure_point(m.cpu(), name, f"L1 filter pruning, {label}", TARGET_RATIO,
                           fine_tune_epochs=SCHEDULE_EPOCHS, fine_tune_images=ft_batches.num_images)
             for m, name, label in [(one_shot, "l1_one_shot", "one-shot"),
                                    (step_by_step, "l1_step_by_step", f"{N_STEPS} steps")]]
for rec in schedules:
    print(f"{rec['name']:18s} validation {rec['val_accuracy']:.2f}% · test {rec['test_accuracy']:.2f}%")

# %% [markdown]
# ## 7. The chosen model
#
# Of the two schedules at `TARGET_RATIO`, we keep the one with the better **validation** accuracy
# as `weights/02_l1_pruned.pt`; `load_model` rebuilds it at its smaller shape. The baseline's
# latency is measured once more, right before the chosen model's, so the speed-up compares two
# measurements taken back to back.

# %%
best_name = max(schedules, key=lambda rec: rec["val_accuracy"])["name"]
chosen_model = {"l1_one_shot": one_shot, "l1_step_by_step": step_by_step}[best_name]
base_record = measure_baseline()
chosen = measure_point(chosen_model.cpu(), "l1_pruned", f"L1 filter pruning (chosen: {best_name})",
                       TARGET_RATIO, fine_tune_epochs=SCHEDULE_EPOCHS, fine_tune_images=ft_batches.num_images)
reloaded = load_model(outputs.weights / "02_l1_pruned.pt")
print(reloaded.config)
write_results("02_l1_filter_pruning", [base_record] + curve + schedules + [chosen], outputs);

# %% [markdown]
# Everything measured, side by side (latency in ms, two threads):

# %%
for rec in [base_record] + curve + schedules + [chosen]:
    print(f"{rec['name']:24s} test {rec['test_accuracy']:6.2f}% · params {rec['params']:>9,} · "
          f"MACs {rec['macs']:>10,} · {rec['size_bytes'] / 1e3:7.1f} kB · "
          f"b1 {rec['latency_ms']['batch_1']:5.2f} · b256 {rec['latency_ms']['batch_256']:6.1f}")

# %% [markdown]
# ## 8. Explore: move the pruning ratio
#
# The slider picks a point of the curve: its test accuracy, how many times fewer parameters and
# MACs and how much faster it is than the baseline, and which filters of `SHOW_LAYER` it removed
# (red bars; crossed-out filter images). The same figure for `TARGET_RATIO` is saved statically.

# %%
layer_weight = baseline.get_submodule(SHOW_LAYER).weight.detach()
keeps = {p["ratio"]: st.plan_l1(baseline, *ratios_at(p["ratio"])) for p in curve}
layer_index = st.prunable_structure_names(baseline).index(SHOW_LAYER)

def layer_keep(r):
    plan = keeps[r]
    return (plan.conv + plan.fc)[layer_index]

# %%
def show_point(r):
    fig = st.plot_curve_point(curve, CURVE.index(r), base_record, layer_weight, layer_keep(r), SHOW_LAYER,
                              x_label="conv filter ratio r")
    plt.show()
    return fig

fig = st.plot_curve_point(curve, CURVE.index(TARGET_RATIO), base_record, layer_weight,
                          layer_keep(TARGET_RATIO), SHOW_LAYER, x_label="conv filter ratio r")
save_fig(fig, "02_pruning_point", outputs.figures)
plt.close(fig)
slider_over(CURVE, show_point, description="ratio r")

# %% [markdown]
# ## 9. Accuracy against size and speed
#
# Each point is a real, smaller network. Parameters shrink fastest (fc1 loses rows *and* the
# columns of removed conv3 channels); latency follows the convolutions' MACs.

# %%
fig, (ax_p, ax_l) = plt.subplots(1, 2, figsize=(12, 4.2))
for recs, style, label in [([base_record], "ks", "baseline"), (curve, "o-", "L1 curve"),
                           (schedules[:1], "^", "one-shot"), (schedules[1:], "v", "step-by-step")]:
    ax_p.plot([r["params"] for r in recs], [r["test_accuracy"] for r in recs], style, label=label)
    ax_l.plot([r["latency_ms"]["batch_256"] for r in recs], [r["test_accuracy"] for r in recs], style, label=label)
ax_p.set(xscale="log", xlabel="parameters", ylabel="test accuracy (%)", title="Accuracy vs parameters")
ax_l.set(xlabel="latency, batch 256 (ms, 2 threads)", title="Accuracy vs measured latency")
ax_p.legend(), save_fig(fig, "02_accuracy_vs_size_latency", outputs.figures);

# %% [markdown]
# ## Summary
#
# Printed from the records just written to `results/02_l1_filter_pruning.json`:

# %%
def gain(key, batch=None):
    value = (lambda r: r[key][batch]) if batch else (lambda r: r[key])
    return value(base_record) / value(chosen)

print(f"chosen model ({chosen['method']}): conv channels {chosen['conv_channels']}, FC {chosen['fc_features']}")
print(f"test accuracy {chosen['test_accuracy']:.2f}% vs baseline {base_record['test_accuracy']:.2f}% "
      f"({chosen['test_accuracy'] - base_record['test_accuracy']:+.2f} pp) after {SCHEDULE_EPOCHS} fine-tuning epochs")
print(f"{gain('params'):.1f}x fewer parameters · {gain('macs'):.1f}x fewer MACs · "
      f"{gain('size_bytes'):.1f}x smaller file · {gain('latency_ms', 'batch_256'):.2f}x faster at batch 256 · "
      f"{gain('latency_ms', 'batch_1'):.2f}x at batch 1")
print("one-shot vs step-by-step (test): " + " vs ".join(f"{r['test_accuracy']:.2f}%" for r in schedules))

# %% [markdown]
# ### Exercises
#
# 1. Set `MAX_DROP` to 0.5 and to 5. How do the safe ratios change, and what happens to the
#    accuracy of the curve after fine-tuning?
# 2. Replace the L1 score by a random one (`st.prune_to_counts(..., scores=...)` with random
#    tensors). Is L1 better than chance after fine-tuning? Before?
# 3. Latency at batch 1 improves less than at batch 256. Why? (Hint: what dominates a single small
#    image's forward pass?)
# 4. Make step-by-step use more, smaller steps with the same total budget (e.g. `STEPS = 6`,
#    `EPOCHS_PER_STEP = 1`). Does it close or widen the gap to one-shot?
# 5. Set `CONV_SCALE = [1.0, 1.0, 1.0]` (every conv layer pruned alike). What do the extra block-3
#    filters buy in latency, and cost in accuracy?
