"""How long `make reproduce PRESET=imagewoof` takes on 2 CPU cores, estimated before it runs from
measured epoch times at its geometry (no training).

The imagewoof preset trains every net of its chain and the plan's controls for each of three seeds
on a fixed schedule, so its training time is a sum of epochs x seconds per epoch (vgg.chain_time).
The seconds come from sets of real runs at the same geometry, batch and width:

* ``imagenette``: the imagenette preset's published chain (results/imagenette/logs, S=256 nets,
  2026-11-24; a CPU whose 4096 bf16 matmul ran at 841 GFLOP/s, results/bench.csv);
* ``imagenette_fixed``: the fixed-schedule check (results/imagenette_fixed/logs, 2026-12-04/05; the
  same CPU name at 396-434 GFLOP/s, results/imagenette_fixed/README.md);
* ``imagenette_fixed_amx``: that check's seed-2 D and E from random init (2026-12-05; an Intel Xeon
  with AMX at 2.1 TFLOP/s, trained by the code with the ReLU after the max-pool, vgg.model.Features).
  Init does not change an epoch's work, so they time D and E; the other configs are scaled;
* every ``<preset>/epoch_rates/<label>`` that `make epoch_rates` wrote under results/: three real
  epochs of each S=256 config on the CPU its rates.csv names, with the code of its commit.

Configs a set has not timed (B-5x5 in the check) are scaled from the published ones by the set's
median ratio; D's FC-only fine-tuning is charged at D's full rate (an upper bound: its conv layers
do not learn). An Imagewoof epoch is taken as an Imagenette epoch x 9,025 / 9,469 training images,
plus what its images of mixed sizes cost the loader beyond Imagenette's of one size, per image and
training scale (``input``: results/mixed_sizes_cost.csv, `make mixed_sizes_cost`).

Validation: the fixed schedule validates every ``validate_every`` epochs and at a stage's last, on
3,929 images; each costs the median ``val_seconds`` of the set's logs (their config's, else scaled
by the set's median validation / epoch ratio) x 3,929 / 3,925, plus the mixed sizes' extra input at
the stage's Q. Logs written before val_seconds was recorded (ab87d6d) leave it out: ``missing`` says so.
Evaluation (one seed's passes, vgg.chain_time.evaluation_passes: Tables 3-6 and the plan's controls;
dense and centre crops on 3,929 images, 150-crop multi-crop on 1,000, fusions reuse them):
* measured, where `make eval_rates` timed the set's label (results/eval_rates/<label>.csv: every pass
  on photographs of mixed sizes with the code of its commit): each pass's ms per image x its images,
  plus each distinct pass's first-pass extra once (``eval_from``); the table scripts' other work
  (loading the cached data and checkpoints, the statistics) is not timed;
* else the published chain's 34 minutes (results/imagenette/README.md) x the training ratio x the mixed
  / one-size cost of one seed's evaluations (results/mixed_sizes_cost.csv; each (net, Q) weighted by net
  D's time per image there: ``eval_mixed_sizes_factor``), bounded from above by the larger of dense's
  and multi-crop's own ratio (``eval_mixed_sizes_bound``).

Writes results/reproduce_time.csv: per set of rates, hours per seed of training, of the mixed sizes'
extra input, of validation and of evaluation, the total over the seeds, what it leaves out, and the
issue's goal (<= 10 h for three seeds).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from vgg.chain import BY_NAME, needed
from vgg.chain_time import (
    IMAGENETTE_TRAIN,
    IMAGENETTE_VAL,
    IMAGEWOOF_TRAIN,
    IMAGEWOOF_VAL,
    chain_seconds,
    complete_rates,
    complete_validation_rates,
    epoch_seconds,
    eval_rates_path,
    evaluation_passes,
    evaluation_seconds,
    label_order,
    pass_images,
    published_epoch_seconds,
    validation_chain_seconds,
    validation_seconds,
    validations,
)
from vgg.protocol import get_preset
from vgg.results import read_results, write_table

ROOT = Path(__file__).resolve().parents[2]

SEEDS = 3
GOAL_HOURS = 10.0
MIXED_SIZES = "results/mixed_sizes_cost.csv"
PUBLISHED_EVAL_MINUTES_PER_SEED = 34  # results/imagenette/README.md: 14 min (S=256 tables) + 20 min (fine-tuned)
#: name -> the S=256 logs whose epochs are timed, and where and with what code they ran
RATE_SOURCES = {
    "imagenette": {"logs": "results/imagenette/logs/*_S256.log.csv", "measured": "2026-11-24",
                   "cpu": "AMD EPYC (AVX512-BF16, 2 threads)", "bf16_matmul_gflop_s": "841",
                   "code": "before vgg/fused.py"},
    "imagenette_fixed": {"logs": "results/imagenette_fixed/logs/seed*/*_S256.log.csv", "measured": "2026-12-04/05",
                         "cpu": "AMD EPYC (AVX512-BF16, 2 threads)", "bf16_matmul_gflop_s": "396-434",
                         "code": "before vgg/fused.py"},
    "imagenette_fixed_amx": {"logs": "results/imagenette_fixed/logs/seed2/*_S256-scratch.log.csv",
                             "measured": "2026-12-05", "cpu": "Intel(R) Xeon(R) Processor (AMX, 2 threads)",
                             "bf16_matmul_gflop_s": "2113", "code": "before vgg/fused.py (ReLU after the max-pool)"},
}


def sources(root: Path = ROOT) -> dict[str, dict]:
    """RATE_SOURCES and every epoch_rates folder under ``root``/results (its rates.csv names the CPU,
    the matmul rate and the commit): name -> logs, measured, cpu, bf16_matmul_gflop_s, code."""
    out = dict(RATE_SOURCES)
    # in the order they were timed, so that the last set of a CPU is its newest
    for table in sorted(root.glob("results/*/epoch_rates/*/rates.csv"),
                        key=lambda t: (t.parts[-4], label_order(t.parent.name))):
        folder = table.parent.relative_to(root)
        first = pd.read_csv(table, dtype=str).iloc[0]  # a commit may look like a number (7648811)
        out[f"{folder.parts[1]}/epoch_rates/{folder.name}"] = {
            "logs": f"{folder.as_posix()}/*_S256.log.csv", "measured": folder.name, "cpu": first.device,
            "bf16_matmul_gflop_s": first.bf16_matmul_gflop_s, "code": first.commit}
    return out


def mixed_sizes(root: Path = ROOT) -> pd.DataFrame | None:
    """results/mixed_sizes_cost.csv's rows of images of mixed sizes, or None before `make mixed_sizes_cost`."""
    path = root / MIXED_SIZES
    if not path.exists():
        return None
    t = read_results(path)
    return t[t.images == "mixed sizes"]


def mixed_size_input_ms(t: pd.DataFrame | None) -> dict[tuple[str, str], float]:
    """(stage 'S=256', 'train' | 'val') -> ms per image that images of mixed sizes cost the in-memory
    loader beyond images of one size, from :func:`mixed_sizes` ({} when not measured)."""
    if t is None:
        return {}
    t = t[t.work.isin(["train", "val"])]
    return {(r.stage, r.work): float(r.mixed_minus_one_size_ms) for r in t.itertuples()}


def mixed_size_eval_ratio(t: pd.DataFrame | None) -> float | None:
    """The larger of dense's and multi-crop's mean (over Q) cost per image, mixed sizes / one size
    (:func:`mixed_sizes`): an upper bound of evaluation's factor."""
    if t is None:
        return None
    t = t[t.work.isin(["dense", "multi-crop"])]
    return float(t.groupby("work").mixed_over_one_size.mean().max()) if len(t) else None


def mixed_size_eval_factor(t: pd.DataFrame | None, preset) -> float | None:
    """Evaluation's mixed / one-size cost over one seed's evaluations (:func:`evaluation_passes`), each
    weighted by net D's one-size time per image at its Q (:func:`mixed_sizes`; a Q it did not time:
    dense at the nearest Q timed x the area ratio, multi-crop as it is) and its image count."""
    if t is None:
        return None
    timed = {w: {int(r.px): (float(r.ms_per_image) / float(r.mixed_over_one_size), float(r.mixed_over_one_size))
                 for r in t[t.work == w].itertuples()} for w in ("dense", "multi-crop")}
    if not all(timed.values()):
        return None
    images = pass_images(preset, IMAGEWOOF_VAL)
    one = mixed = 0.0
    for method, passes in evaluation_passes(preset).items():
        if method not in timed:  # centre crops: one crop per image, not timed by mixed_sizes_cost
            continue
        for _, q in passes:
            px = preset.px(q)
            near = min(timed[method], key=lambda p: abs(p - px))
            ms, ratio = timed[method][near]
            ms *= (px / near) ** 2 if method == "dense" else 1.0
            one += images[method] * ms
            mixed += images[method] * ms * ratio
    return mixed / one


def eval_rates_file(source: dict, root: Path = ROOT) -> Path:
    """results/eval_rates/<label>.csv of an epoch_rates set (`make eval_rates LABEL=<its label>`)."""
    return eval_rates_path(root / "results", source["measured"])


def estimate(name: str, source: dict, root: Path = ROOT, preset_name: str = "imagewoof") -> dict:
    """One set of rates' estimate of the whole run: the chain and the plan's controls for each seed,
    and the LRN control A-LRN0 (`make fixed_schedule_check PRESET=imagewoof`; at A-LRN's rate where
    the set has not timed it: the same layers, LRN without its sum term)."""
    preset = get_preset(preset_name)
    logs = sorted(root.glob(source["logs"]))
    measured = epoch_seconds(logs)
    rates, ratio = complete_rates(measured, published_epoch_seconds())
    rates.setdefault("A-LRN0", rates["A-LRN"])
    nets = needed(None, preset.plan_controls) + [BY_NAME["A-LRN0_S256"]]
    train_h = chain_seconds([(n, 0) for n in nets], preset, rates) * IMAGEWOOF_TRAIN / IMAGENETTE_TRAIN / 3600
    mixed = mixed_sizes(root)
    extra = mixed_size_input_ms(mixed)
    times = {n.name: validations(preset, n.epochs(preset)) for n in nets}
    input_s = sum(n.epochs(preset) * IMAGEWOOF_TRAIN * extra.get((f"S={n.scale}", "train"), 0)
                  + times[n.name] * IMAGEWOOF_VAL * extra.get((f"S={n.scale}", "val"), 0) for n in nets) / 1e3
    input_h = input_s / 3600 if extra else float("nan")
    val_rates = complete_validation_rates(validation_seconds(logs), measured, rates)
    val_h = (float("nan") if val_rates is None else validation_chain_seconds([(n, 0) for n in nets], preset, val_rates)
             * IMAGEWOOF_VAL / IMAGENETTE_VAL / 3600)
    timed_eval = eval_rates_file(source, root)
    if timed_eval.exists():
        eval_from = timed_eval.relative_to(root).as_posix()
        eval_ratio = eval_bound = None
        eval_h = evaluation_seconds(read_results(timed_eval), preset, IMAGEWOOF_VAL) / 3600
    else:
        eval_from = f"published {PUBLISHED_EVAL_MINUTES_PER_SEED} min x training ratio x mixed sizes' factor"
        eval_ratio, eval_bound = mixed_size_eval_factor(mixed, preset), mixed_size_eval_ratio(mixed)
        eval_h = PUBLISHED_EVAL_MINUTES_PER_SEED * ratio * (eval_ratio or 1.0) / 60
    parts = {"train": train_h, "input of mixed sizes": input_h, "validation": val_h, "eval": eval_h}
    total = SEEDS * sum(v for v in parts.values() if v == v)
    # evaluation is timed on images of one size unless eval_rates or mixed_sizes_cost timed mixed sizes
    missing = ", ".join([k for k, v in parts.items() if v != v]
                        + ([] if eval_ratio or timed_eval.exists() else ["evaluation of mixed sizes"]))
    return {"rates_from": name, **source, "epochs_timed": sum(len(pd.read_csv(f)) for f in logs),
            "configs_timed": " ".join(sorted(measured)),
            "seconds_per_epoch": " ".join(f"{c} {rates[c]:.1f}" for c in sorted(rates)),
            "ratio_to_published": round(ratio, 3), "nets_per_seed": len(nets),
            "epochs_per_seed": sum(n.epochs(preset) for n in nets),
            "validations_per_seed": sum(times.values()),
            "train_h_per_seed": round(train_h, 2), "input_h_per_seed": round(input_h, 2),
            "val_h_per_seed": round(val_h, 2), "eval_h_per_seed": round(eval_h, 2), "eval_from": eval_from,
            "eval_mixed_sizes_factor": round(eval_ratio, 3) if eval_ratio else float("nan"),
            "eval_mixed_sizes_bound": round(eval_bound, 3) if eval_bound else float("nan"),
            "seeds": SEEDS, "total_h": round(total, 1),
            "missing": f"{missing} (not timed)" if missing else "",
            "goal_h": GOAL_HOURS, "meets_goal": total <= GOAL_HOURS}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default="results", help="results folder (default results/)")
    a = p.parse_args(argv)
    rows = [estimate(name, source) for name, source in sources().items() if any(ROOT.glob(source["logs"]))]
    write_table(pd.DataFrame(rows), Path(a.results) / "reproduce_time.csv")


if __name__ == "__main__":
    main()
