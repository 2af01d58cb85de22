"""A measured `make reproduce` run against what its estimate would have said before it ran.

The run's ``wall_time.csv`` (experiments/reproduce.py: a row per net trained, per seed scored and for
the tables over seeds) is set beside the prediction of each set of rates `make epoch_rates` timed on
the run's CPU (results/<preset>/epoch_rates/<label>/ and results/eval_rates/<label>.csv), made the way
`make reproduce_time` makes it (vgg.chain_time):
* a net: the epochs it trained x its config's seconds per epoch, plus its validations x the seconds
  per validation, each scaled by the run's training (validation) images over those of the data the
  rates were timed on (the run's: counted in ``--run-data`` where that is its data folder, else the
  preset's in vgg.chain_time.SPLIT_SIZES, e.g. Imagewoof's 9,025 against Imagenette's 9,469; the
  input cost of Imagewoof's mixed sizes, `make mixed_sizes_cost`, is left out); its measured wall
  time is split into what its epoch log holds (``logged_s``: the epochs and validations) and the rest
  (loading the data, building the net, compiling, checkpoints);
* a seed's tables: one seed's evaluation passes at the rates' ms per image, on as many val images as
  the run scored (its per-image file); the tables' other work is in the measured time only;
* the tables over seeds: measured only (the estimate leaves them out).
The rates describe the preset's geometry on the machine they were timed on: a run on other data
(Imagenette's 224 px copies in place of Imagewoof's photographs of mixed sizes) is an estimate's check
only for what the two share, and the CSV names the run's preset and data.

Writes ``--out`` (default <run>/wall_time_check.csv): a row per (rates, step), and per rates a
``total`` row (the steps predicted) and an ``all`` row (every step measured).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vgg.chain import BY_NAME
from vgg.chain_time import (
    SPLIT_SIZES,
    epoch_rate,
    eval_rates_path,
    evaluation_seconds,
    label_order,
    log_rates,
    validations,
)
from vgg.data import image_counts
from vgg.errors import UserError
from vgg.experiment import comma_list, main
from vgg.protocol import get_preset
from vgg.results import read_results, write_table
from vgg.seeds import load_per_image
from vgg.wall_time import EVERY, OVER_SEEDS, SCORING_STEPS, TABLES, TOTAL, WALL_TIME, read_wall_time

ROOT = Path(__file__).resolve().parents[2]


def rate_labels(results: Path, cpu: str) -> list[str]:
    """The epoch_rates labels timed on ``cpu`` that also have their evaluation rates."""
    return sorted((t.parent.name for t in results.glob("*/epoch_rates/*/rates.csv")
                   if pd.read_csv(t, dtype=str).device.iloc[0] == cpu
                   and eval_rates_path(results, t.parent.name).exists()), key=label_order)


def run_split(run_data: str) -> tuple[int, int] | None:
    """(training, validation) images of ``--run-data`` when it is an ImageFolder root, else None."""
    root = Path(run_data) if run_data else None
    if root is None or not (root / "train").is_dir() or not (root / "val").is_dir():
        return None
    return image_counts(root)


def predictor(results: Path, label: str, preset, split: tuple[int, int] | None = None):
    """step row -> predicted seconds (None for the tables over seeds) from one set of rates; ``split``:
    the run's (training, validation) images (default: its preset's, vgg.chain_time.SPLIT_SIZES)."""
    logs = sorted(results.glob(f"*/epoch_rates/{label}/*_S256.log.csv"))
    timed_on = logs[0].parents[2].name  # results/<preset>/epoch_rates/<label>/
    run = split or SPLIT_SIZES.get(preset.name)
    train, val = ((a / b for a, b in zip(run, SPLIT_SIZES[timed_on]))
                  if run and timed_on in SPLIT_SIZES else (1.0, 1.0))  # else: the same data
    rates, val_rates = log_rates(logs)
    val_rates = val_rates or {}
    eval_rates = read_results(eval_rates_path(results, label))

    def predict(row, start: int, val_images: int) -> float | None:
        """``start``: the epochs the net had before the step (it trained epochs start+1 ... start+epochs)."""
        if row.step == OVER_SEEDS:
            return None
        if row.step == TABLES:
            return evaluation_seconds(eval_rates, preset, val_images)
        net = BY_NAME[row.step]
        total = net.epochs(preset)
        vals = validations(preset, total, start) - validations(preset, total, start + int(row.epochs))
        return int(row.epochs) * epoch_rate(rates, net) * train + vals * val_rates.get(net.config, 0.0) * val
    return predict


def first_epochs(wall: pd.DataFrame, preset) -> list[int]:
    """Per row, the epochs its net had before the step: the epochs of the net's earlier rows (a run
    resumed across invocations), back to 0 where they would pass the net's epochs (a stale net retrained)."""
    done, out = {}, []
    for r in wall.itertuples():
        key = (r.seed, r.step)
        start = done.get(key, 0)
        if r.step not in SCORING_STEPS and start + int(r.epochs) > BY_NAME[r.step].epochs(preset):
            start = 0
        out.append(start)
        done[key] = start + int(r.epochs)
    return out


def logged_seconds(run: Path, row, start: int) -> float | None:
    """The seconds a net's epoch log holds for the epochs the step trained."""
    if row.step in SCORING_STEPS:
        return None
    log = pd.read_csv(run / "logs" / f"seed{row.seed}" / f"{row.step}.log.csv").iloc[start:start + int(row.epochs)]
    return float(log.seconds.sum() + (log.val_seconds.fillna(0).sum() if "val_seconds" in log else 0.0))


def scored_images(run: Path, seed: str) -> int:
    """Val images a seed's tables scored: the longest row of its per-image file."""
    saved, _ = load_per_image(run / f"seed{seed}")
    return max(len(v) for v in saved.values())


def wall_time_check(args) -> None:
    run, results = Path(args.run), Path(args.results)
    path = run / WALL_TIME
    if not path.exists():
        raise UserError(f"{path} not found: give --run the results/<preset> folder of a `make reproduce` run")
    wall = read_wall_time(path)
    preset = get_preset(wall.preset.iloc[0])
    cpu = wall.cpu.mode().iloc[0]
    labels = args.rates or rate_labels(results, cpu)
    if not labels:
        raise UserError(f"no rates timed on {cpu} under {results}: run `make epoch_rates LABEL=<date>-<cpu>`")
    # what the run measured, once: each step's epochs before it, its epoch log's seconds, its val images
    starts = first_epochs(wall, preset)
    measured = pd.DataFrame([{"seed": r.seed, "step": r.step, "epochs": int(r.epochs),
                              "measured_s": float(r.wall_seconds), "logged_s": logged_seconds(run, r, start),
                              "val_images": scored_images(run, r.seed) if r.step == TABLES else None}
                             for r, start in zip(wall.itertuples(), starts)])
    split = run_split(args.run_data)
    rows = []
    for label in labels:
        predict = predictor(results, label, preset, split)
        df = measured.assign(rates=label, predicted_s=[predict(r, start, r.val_images or 0) for r, start in
                                                       zip(measured.itertuples(), starts)])
        df = df[["rates", *measured.columns.drop("val_images"), "predicted_s", "val_images"]]
        known = df.predicted_s.notna()
        totals = [{"rates": label, "step": TOTAL, "epochs": int(df.epochs[known].sum()),
                   "measured_s": df.measured_s[known].sum(), "logged_s": df.logged_s[known].sum(),
                   "predicted_s": df.predicted_s[known].sum()},
                  {"rates": label, "step": EVERY, "epochs": int(df.epochs.sum()), "measured_s": df.measured_s.sum()}]
        rows.append(pd.concat([df, pd.DataFrame(totals)], ignore_index=True))
    out = pd.concat(rows, ignore_index=True)
    out["measured_over_predicted"] = (out.measured_s / out.predicted_s).round(3)
    for c in ("measured_s", "logged_s", "predicted_s"):
        out[c] = out[c].astype(float).round(1)
    write_table(out, args.out or run / "wall_time_check.csv",
                {"run": str(run), "run_preset": preset.name, "run_cpu": cpu, "run_code": ";".join(
                    dict.fromkeys(wall.code)), "run_data": args.run_data or "",
                 "run_images": "/".join(map(str, split or SPLIT_SIZES.get(preset.name, ()))) or "as the rates'"})
    total = out[out.step == TOTAL]
    print("measured / predicted per set of rates:", ", ".join(
        f"{r.rates} {r.measured_s / 3600:.2f} / {r.predicted_s / 3600:.2f} h" for r in total.itertuples()),
        f"(median {np.median(total.measured_over_predicted):.3f})")


def extra(p) -> None:
    p.add_argument("--run", required=True, help="the results/<preset> folder of a `make reproduce` run")
    p.add_argument("--rates", type=comma_list(), default=None, help="epoch_rates labels (default: every one "
                   "timed on the run's CPU that has its eval_rates)")
    p.add_argument("--run-data", default="", help="what the run trained on, recorded in the CSV; its "
                   "training and validation images scale the nets' predictions where it is the data folder")
    p.add_argument("--out", default="", help="CSV to write (default <run>/wall_time_check.csv)")


if __name__ == "__main__":
    main(wall_time_check, needs_data=False, extra=extra)
