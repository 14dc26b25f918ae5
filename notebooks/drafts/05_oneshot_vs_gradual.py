# %% [markdown]
# # 05 · One-shot vs step-by-step pruning, at equal budget
#
# *Prune everything at once and fine-tune, or prune a little at a time while training — with the
# same number of training epochs, which schedule keeps more accuracy at 90–98% sparsity?*
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/compression-course/model-compression-course/blob/main/notebooks/05_oneshot_vs_gradual.ipynb)

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
# - Measure how far **one-shot** magnitude pruning goes without any retraining, layer-wise and
#   global, from 10% to 98% sparsity.
# - Compare three schedules that get **the same number of training epochs** within each comparison:
#   1. **one-shot + fine-tune**: prune to the target once, then fine-tune with the masks fixed;
#   2. **step by step (linear)**: prune in equal increments while training, then keep training;
#   3. **AGP** (automated gradual pruning, Zhu & Gupta 2017, *To prune, or not to prune*): the cubic schedule
#
# $$s_t = s_f + (s_i - s_f)\Big(1 - \frac{t}{T}\Big)^3,\qquad 0 \le t \le T,$$
#
#    which prunes fast while there are many redundant weights and slowly near the target $s_f$.
# - Do it at two budgets: a **short** one (every schedule to 90, 95 and 98%) and a **long** one
#   (one-shot vs AGP at 95%), because which schedule wins depends on how long it may train.
# - Follow the sparsity over training, see where each schedule puts its zeros, and save the best
#   very sparse model (masks folded) — dense and in a compact sparse encoding.
#
# **Method.** The masks are those of notebook 03 (`helpers.pruning.unstructured`): magnitude-based
# scores (plain |W| or its layer-adaptive rescaling LAMP, chosen in section 3a on the validation
# split), ranked globally over the Conv2d/Linear layers except the first conv and the output layer
# (kept dense; the target counts all layers' weights). Every schedule uses the same ranking, so the
# schedule itself decides nothing but *when*.
# At each pruning event the smallest weights are removed; after every optimizer step the masks are
# re-applied (`fit`'s `after_step`), so pruned weights stay exactly zero. Because pruned weights
# are zero, they are always the smallest: the masks of one run only ever grow.

# %%
import platform
import time

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch

from helpers import save_model
from helpers.data import Batches, load_splits
from helpers.measure import layer_sparsity
from helpers.paths import output_dirs
from helpers.plots import save_fig, set_style
from helpers.pruning.schedules import PruningSchedule, mask_maker, train_with_schedule
from helpers.pruning.unstructured import sweep
from helpers.results import make_record, write_results
from helpers.storage.sparse import load_sparse_model, save_sparse_model
from helpers.training import accuracy, load_or_train_baseline, pick_device, predict, seed_everything

set_style()
print(f"python {platform.python_version()} · torch {torch.__version__}")

# %% tags=["parameters"]
QUICK = False                 # True: tiny subsets, few points (tests, CI); False: the real experiment
ONESHOT_SPARSITIES = [0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98]
TARGETS = [0.9, 0.95, 0.98]   # short budget: every schedule to every target
SHORT_EPOCHS = 1              # short budget: epochs per run ...
SHORT_IMAGES = 27_500         # ... of this many training images (half the training split)
MAIN_TARGET = 0.95            # long budget: one-shot vs AGP at this sparsity ...
MAIN_EPOCHS = 8               # ... for this many epochs of the whole training split (55,000 images)
PRUNE_STEPS = 12              # pruning events of the gradual schedules (plus the one at step 0)
PRUNE_SHARE = 1 / 3           # gradual schedules prune during this share of a run, then train on
LEARNING_RATE = 1e-3          # peak of the one-cycle schedule, the same for every run
BATCH_SIZE = 128
SEED = 0
DATA_DIR = None               # None: $COURSE_DATA_DIR or <repo>/data

# %%
oneshot_sparsities = [0.5, 0.9, 0.98] if QUICK else ONESHOT_SPARSITIES
targets = [0.9, 0.95] if QUICK else TARGETS
main_epochs = 2 if QUICK else MAIN_EPOCHS
prune_steps = 3 if QUICK else PRUNE_STEPS
outputs = output_dirs(QUICK)
device = pick_device()
seed_everything(SEED)
print(f"QUICK={QUICK} · targets={targets} · long budget {main_epochs} epochs · device={device} · outputs under {outputs.root}")

# %% [markdown]
# ## 1. Data and the baseline
#
# The baseline of notebook 01 (`weights/01_baseline.pt`), or one trained here when it is missing.
# The validation split picks the model to save; the test set only reports.

# %%
splits = load_splits(DATA_DIR, quick=QUICK)
short_batches = Batches(splits.train.head(SHORT_IMAGES), BATCH_SIZE, shuffle=True, augment=True, seed=SEED)
long_batches = Batches(splits.train, BATCH_SIZE, shuffle=True, augment=True, seed=SEED)
val_batches, test_batches = Batches(splits.val, 1000), Batches(splits.test, 1000)
baseline, baseline_path = load_or_train_baseline(outputs, splits, quick=QUICK, device=device)
baseline = baseline.to(device)
baseline_accuracy, baseline_val = accuracy(baseline, test_batches), accuracy(baseline, val_batches)
print(f"baseline ({baseline_path or 'trained here'}): test {baseline_accuracy:.2f}%, validation {baseline_val:.2f}%")

# %% [markdown]
# ## 2. One-shot pruning without fine-tuning, 10% to 98%
#
# **Layer-wise**: every layer loses the same fraction of its weights. **Global**: all weights are
# ranked together, so layers with many small weights (the 1.15M-weight `fc1`) give up more.
# **Global, inner layers**: the same, but the first conv and the 10-way output layer (0.1% of the
# weights) stay dense — notebook 03 showed how much the output layer suffers otherwise.

# %%
ONESHOT = {"one-shot · layer-wise": dict(method="magnitude", group="layer", layers="all"),
           "one-shot · global": dict(method="magnitude", group="global", layers="all"),
           "one-shot · global · inner": dict(method="magnitude", group="global", layers="inner")}
records = []  # one results record per evaluated model

def record_point(model, row):
    records.append(make_record(f"{row['variant']} · {row['target']:.0%}", f"magnitude {row['variant']}, no fine-tuning",
                               model, row["accuracy"], None, outputs, target_sparsity=row["target"], epochs=0))

start = time.perf_counter()
oneshot = pd.DataFrame(sweep(baseline, oneshot_sparsities, ONESHOT, lambda m: accuracy(m, test_batches), on_point=record_point))
print(f"{len(oneshot)} pruned models scored in {time.perf_counter() - start:.0f} s")
oneshot.pivot(index="target", columns="variant", values="accuracy").round(2)

# %%
fig, ax = plt.subplots(figsize=(9, 5))
sns.lineplot(oneshot, x="sparsity", y="accuracy", hue="variant", style="variant", markers=True, dashes=False, ax=ax)
ax.axhline(baseline_accuracy, color="k", ls=":", label="dense baseline")
ax.set(xlabel="sparsity", ylabel="test accuracy (%)", title="One-shot magnitude pruning, no fine-tuning")
ax.legend()
save_fig(fig, "05_oneshot_no_finetune", outputs.figures);

# %% [markdown]
# ## 3. Three schedules, one budget
#
# Every run starts from the baseline and trains with the same optimizer (AdamW, one-cycle learning
# rate) on the same images for the same number of epochs. One-shot prunes before the first step;
# the gradual schedules prune `PRUNE_STEPS` times during the first `PRUNE_SHARE` of the run and then
# train on with the masks fixed. A schedule whose target is outside [0, 1) or whose pruning phase
# runs past its epochs is refused:

# %%
for bad in (dict(kind="agp", target=1.0, epochs=2), dict(kind="agp", target=0.9, epochs=2, prune_epochs=3)):
    try:
        PruningSchedule(**bad)
    except ValueError as err:
        print(f"ValueError: {err}")

# %%
KINDS = {"oneshot": "one-shot + fine-tune", "linear": "step by step (linear)", "agp": "AGP (cubic)"}
masks_for = mask_maker("magnitude", layers="inner", group="global", model_wide=True)  # replaced in 3a

def make_schedule(kind, target, epochs):
    """One-shot prunes once; linear and AGP prune gradually during the first PRUNE_SHARE of the run."""
    if kind == "oneshot":
        return PruningSchedule("oneshot", target, epochs)
    return PruningSchedule(kind, target, epochs, prune_steps=prune_steps, prune_epochs=PRUNE_SHARE * epochs)

print("AGP events (step, sparsity), short budget:",
      [(step, round(s, 3)) for step, s in make_schedule("agp", targets[-1], SHORT_EPOCHS).events(len(short_batches))])

# %%
runs, rows = {}, []

def train_schedule(kind, target, epochs, batches, make_masks):
    """One scheduled run from the baseline (same seed and optimizer for every run)."""
    seed_everything(SEED)
    return train_with_schedule(baseline, make_schedule(kind, target, epochs), batches, lr=LEARNING_RATE,
                               make_masks=make_masks, val_batches=val_batches, device=device)

def run_schedule(kind, target, epochs, batches, budget):
    """Train one schedule with the chosen ranking; keep the run and a row of measured numbers."""
    run = train_schedule(kind, target, epochs, batches, masks_for)
    runs[(budget, kind, target)] = run
    rows.append({"budget": budget, "schedule": KINDS[kind], "kind": kind, "target": target, "epochs": epochs,
                 "images": batches.num_images, "test_accuracy": accuracy(run.model, test_batches),
                 "val_accuracy": run.history["val_accuracy"][-1], "seconds": sum(run.history["seconds"])})
    print(f"{budget:>5}: {KINDS[kind]:>22} to {target:.0%}: test {rows[-1]['test_accuracy']:.2f}% ({rows[-1]['seconds']:.0f} s)")

# %% [markdown]
# ### 3a. Which global ranking?
#
# Plain global magnitude compares raw |W| across layers, and layers differ in scale: a layer of
# many small weights (`fc1`) is emptied first, and the convolutions get whatever is left.
# **LAMP** (Lee et al. 2021, *Layer-adaptive sparsity for the magnitude-based pruning*) rescales
# each weight by the energy of the weights at least as large in its own layer; within a layer the
# order stays that of magnitude, so it is still magnitude pruning, with per-layer sparsities that
# a global ranking can compare fairly. Both rankings get one AGP run to the main target with the
# short budget; the better **validation** accuracy decides the ranking of every run below.

# %%
ranking_val = {}
for score in ("magnitude", "lamp"):
    run = train_schedule("agp", MAIN_TARGET, SHORT_EPOCHS, short_batches,
                         mask_maker(score, layers="inner", group="global", model_wide=True))
    ranking_val[score] = run.history["val_accuracy"][-1]
SCORE = max(ranking_val, key=ranking_val.get)
masks_for = mask_maker(SCORE, layers="inner", group="global", model_wide=True)
print(f"validation accuracy after AGP to {MAIN_TARGET:.0%}, short budget: " +
      ", ".join(f"{k} {v:.2f}%" for k, v in ranking_val.items()) + f" -> every schedule ranks by {SCORE}")

# %% [markdown]
# ### 3b. Short budget: every schedule to every target
#
# Each run: `SHORT_EPOCHS` epoch(s) of `SHORT_IMAGES` training images.

# %%
for target in targets:
    for kind in KINDS:
        run_schedule(kind, target, SHORT_EPOCHS, short_batches, "short")

# %% [markdown]
# ### 3c. Long budget: one-shot vs AGP at the main target
#
# Each run: `MAIN_EPOCHS` epochs of the whole training split — the headline comparison.

# %%
for kind in ("oneshot", "agp"):
    run_schedule(kind, MAIN_TARGET, main_epochs, long_batches, "long")
results = pd.DataFrame(rows)
results.pivot_table(index=["budget", "target"], columns="schedule", values="test_accuracy").round(2)

# %% [markdown]
# ## 4. Accuracy vs sparsity per schedule
#
# Lines: the short budget; large markers: the long budget at the main target; dotted: one-shot
# without fine-tuning. The shaded band is the 0.5-percentage-point margin below the dense baseline.

# %%
short, long_runs = results[results.budget == "short"], results[results.budget == "long"]
fig, ax = plt.subplots(figsize=(9, 5))
for (variant, part), grey in zip(oneshot[oneshot.sparsity >= 0.85].groupby("variant"), ("0.3", "0.55", "0.75")):
    ax.plot(part.sparsity, part.accuracy, ":", marker=".", color=grey, label=f"{variant}, no fine-tuning")
for i, kind in enumerate(KINDS):
    part = short[short.kind == kind]
    ax.plot(part.target, part.test_accuracy, "o-", color=f"C{i}", label=f"{KINDS[kind]}, short budget")
    for _, r in long_runs[long_runs.kind == kind].iterrows():
        ax.plot(r.target, r.test_accuracy, "*", ms=16, color=f"C{i}", mec="k", label=f"{KINDS[kind]}, long budget")
ax.axhline(baseline_accuracy, color="k", ls=":", label="dense baseline")
ax.axhspan(baseline_accuracy - 0.5, baseline_accuracy, color="green", alpha=0.1, label="within 0.5 pp")
ax.set(xlabel="sparsity", ylabel="test accuracy (%)", title="Equal budgets: accuracy vs sparsity per schedule",
       ylim=(max(0, short.test_accuracy.min() - 3), max(baseline_accuracy, results.test_accuracy.max()) + 1))
ax.legend(fontsize=7, ncol=2)
save_fig(fig, "05_accuracy_vs_sparsity", outputs.figures);

# %% [markdown]
# ## 5. The sparsity over training, and where the zeros went
#
# Left: each schedule's formula (lines) and the measured sparsity of the model at every pruning
# event (dots), for the short runs to the main target, over the fraction of the run. Right:
# validation accuracy after each epoch of the long runs.

# %%
fig, (ax_s, ax_v) = plt.subplots(1, 2, figsize=(13, 4.5))
grid = torch.linspace(0, SHORT_EPOCHS, 200).tolist()
for i, kind in enumerate(KINDS):
    schedule, run = make_schedule(kind, MAIN_TARGET, SHORT_EPOCHS), runs.get(("short", kind, MAIN_TARGET))
    ax_s.plot([t / SHORT_EPOCHS for t in grid], [schedule.sparsity_at(t) for t in grid], color=f"C{i}", label=KINDS[kind])
    if run is not None:
        ax_s.plot([e / SHORT_EPOCHS for e, _ in run.trajectory], [s for _, s in run.trajectory], "o", color=f"C{i}", ms=4)
    if ("long", kind, MAIN_TARGET) in runs:
        ax_v.plot(range(1, main_epochs + 1), runs[("long", kind, MAIN_TARGET)].history["val_accuracy"], "o-", color=f"C{i}", label=KINDS[kind])
ax_s.set(xlabel="fraction of the run", ylabel="sparsity", title=f"Sparsity trajectory (target {MAIN_TARGET:.0%})")
ax_v.axhline(baseline_val, color="k", ls=":", label="dense baseline")
ax_v.set(xlabel="epoch", ylabel="validation accuracy (%)", title=f"Long budget: recovery during training")
ax_s.legend(), ax_v.legend()
save_fig(fig, "05_sparsity_trajectory", outputs.figures);

# %%
finals = {f"{KINDS[k]} ({b})": runs[(b, k, t)].model for (b, k, t) in runs if t == MAIN_TARGET}
per_layer = pd.DataFrame({name: layer_sparsity(model) for name, model in finals.items()})
per_layer.index = [".".join(name.split(".")[-2:]) for name in per_layer.index]
ax = per_layer.plot.bar(figsize=(10, 4), rot=0)
ax.set(ylabel="sparsity of the layer", title=f"Per-layer sparsity of the final models (target {MAIN_TARGET:.0%}, global ranking)")
ax.legend(fontsize=8)
save_fig(ax.figure, "05_per_layer_sparsity", outputs.figures)
per_layer.round(4)

# %% [markdown]
# All schedules use the same global ranking and end at the same overall sparsity; how the zeros
# are shared between layers can still differ, because the weights keep training between events.
# The first conv and the output layer stay dense by choice.
#
# ## 6. Save the best very sparse model
#
# Chosen on the **validation** split: the sparsest run within 0.5 pp of the baseline's validation
# accuracy (else the most accurate run at the highest target). Masks are already folded in — the
# weights are plain tensors with zeros — so `save_model` writes an ordinary (dense-sized) checkpoint;
# `save_sparse_model` writes the compact encoding, which must reload to identical outputs.

# %%
ok = results[results.val_accuracy >= baseline_val - 0.5]
pick = (ok.sort_values(["target", "val_accuracy"]).iloc[-1] if len(ok)
        else results[results.target == results.target.max()].sort_values("val_accuracy").iloc[-1])
best_key, best_name = (pick.budget, pick.kind, pick.target), f"{pick.kind}_s{round(100 * pick.target)}_{pick.budget}"
best = runs[best_key].model
meta = {"schedule": pick.kind, "target_sparsity": float(pick.target), "epochs": int(pick.epochs),
        "train_images": int(pick.images), "prune_steps": prune_steps, "prune_share": PRUNE_SHARE}
dense_path = save_model(best, outputs.weights / f"05_{best_name}.pt", meta=meta)
sparse_path = save_sparse_model(best, outputs.weights / f"05_{best_name}.sparse", meta=meta)
assert torch.equal(predict(load_sparse_model(sparse_path, device), test_batches)[0], predict(best, test_batches)[0])
print(f"saved {best_name}: {dense_path.stat().st_size:,} bytes dense, {sparse_path.stat().st_size:,} bytes sparse-encoded")

# %%
best_record = None
for _, row in results.iterrows():
    key, saved = (row.budget, row.kind, row.target), (row.budget, row.kind, row.target) == best_key
    records.append(make_record(
        f"{row.kind}_s{round(100 * row.target)}_{row.budget}", f"{SCORE} (global), {row.schedule}", runs[key].model,
        row.test_accuracy, dense_path if saved else None, outputs, schedule=row.kind, budget=row.budget,
        target_sparsity=row.target, epochs=int(row.epochs), train_images=int(row.images),
        val_accuracy=round(row.val_accuracy, 4), baseline_accuracy=round(baseline_accuracy, 4),
        train_seconds=round(row.seconds, 1), sparse_file=sparse_path.name if saved else None,
        sparse_size_bytes=sparse_path.stat().st_size if saved else None))
    best_record = records[-1] if saved else best_record
write_results("05_schedules", records, outputs)
pd.DataFrame(records[-len(results):])[["name", "test_accuracy", "sparsity", "params_nonzero", "size_bytes", "sparse_size_bytes"]]

# %% [markdown]
# ## 7. Explore: move the target sparsity
#
# The slider picks one of the targets: test accuracy of each schedule at that sparsity with the
# short budget (and the long budget where it was run), and one-shot without fine-tuning (global,
# inner layers) at the nearest measured sparsity, against the baseline.

# %%
from helpers.widgets import slider_over

def show_target(target):
    part, glob = results[results.target == target], oneshot[oneshot.variant == "one-shot · global · inner"]
    nearest = glob.iloc[(glob.target - target).abs().argsort()[:1]]
    bars = [f"{s} ({b})" for s, b in zip(part.schedule, part.budget)] + ["one-shot, no fine-tuning"]
    values = list(part.test_accuracy) + [float(nearest.accuracy.iloc[0])]
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(bars) + 1.5))
    ax.barh(bars, values, color=[f"C{i}" for i in range(len(bars))])
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.2f}%", va="center", fontsize=9)
    ax.axvline(baseline_accuracy, color="k", ls=":")
    ax.set(xlim=(max(0, min(values) - 5), 100), xlabel="test accuracy (%)", title=f"target sparsity {target:.0%}")
    return fig

save_fig(show_target(MAIN_TARGET), "05_schedules_at_target", outputs.figures)
slider_over(targets, lambda t: (show_target(t), plt.show()), description="target")

# %% [markdown]
# ## Summary
#
# Printed from the runs above and the records in `results/05_schedules.json`.

# %%
print(f"baseline: test {baseline_accuracy:.2f}%")
for budget, part in results.groupby("budget", sort=False):
    epochs, images = part.epochs.iloc[0], part.images.iloc[0]
    for target, t_part in part.groupby("target"):
        print(f"{budget} budget ({epochs} epoch(s) of {images:,} images), {target:.0%}: " + ", ".join(
            f"{r.schedule} {r.test_accuracy:.2f}% ({r.test_accuracy - baseline_accuracy:+.2f} pp)" for r in t_part.itertuples()))
glob = oneshot[oneshot.variant == "one-shot · global · inner"]
print("one-shot without fine-tuning (global, inner layers): highest sparsity within 1 pp of the baseline:",
      f"{glob[glob.accuracy >= baseline_accuracy - 1].target.max():.0%}")
print(f"saved {dense_path.name} ({best_record['size_bytes']:,} bytes) and {sparse_path.name} "
      f"({best_record['sparse_size_bytes']:,} bytes): {pick.schedule}, {pick.budget} budget, "
      f"sparsity {best_record['sparsity']:.2%}, test {best_record['test_accuracy']:.2f}%")

# %% [markdown]
# ### Exercises
#
# 1. Give the short budget one more epoch. Which schedule gains most, and does the ranking change?
# 2. Replace the global ranking by a layer-wise one (`mask_maker(SCORE, group="layer")`). Which
#    layer limits the accuracy at 95%?
# 3. Set `PRUNE_SHARE = 1` (no recovery phase after the last pruning step). What happens to AGP?
# 4. AGP was proposed with many small steps over many epochs. Try `PRUNE_STEPS = 3`: is a coarse
#    cubic schedule still better than one-shot?
