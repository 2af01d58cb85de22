"""Which plateau rule would make the first lr drop a property of the net rather than of one noisy
epoch?  A protocol study for the next chain; no net is trained.

plateau_study.py showed that at patience 2 the first lr drop of a logged run can still come from
noise, and the seed runs showed what that costs: seed 0's D lowered its lr after epoch 15, seed 1's
after epoch 24, and their S=256 errors differ by 6.3 points. This script asks what would have been
less sensitive, and what it would cost in epochs:

1. The noise. Every logged run's first-lr validation error is fitted with a falling curve
   (vgg.plateau.decay); the pooled residuals give the epoch-to-epoch noise (sd) and its lag-1
   autocorrelation. Part of that noise is the sampling of the validation images (binomial, from the
   number of validation images the tables were scored on); the rest is the net moving from epoch to
   epoch. A larger validation split only shrinks the first part.
2. The rules. Each rule (patience p, validation accuracy smoothed by an exponential moving average
   with weight alpha before torch's ReduceLROnPlateau sees it: vgg.plateau.ema) is applied to 4,000
   noisy copies of each run's fitted curve, extended to the preset's epoch cap (the fit's
   extrapolation, an assumption stated in the CSV), with noise of the measured sd and
   autocorrelation. Per run and rule: when the first drop comes (mean, sd), the sd of the fitted
   error at that epoch (how far apart two seeds' nets are when their lr first drops, from the rule
   alone), and how much the fitted curve still had to fall by the cap (learning forgone). The
   summary rows average the S=256 runs (lr 1e-2, from scratch or from A).

Writes results/<preset>/plateau_rules.csv and figures/<preset>/plateau_rules.png.
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from vgg.errors import UserError
from vgg.experiment import main
from vgg.plateau import MIN_EPOCHS, decay, ema, epoch_noise, first_drops, fit_decay, segments
from vgg.plots import save_figure
from vgg.protocol import get_preset
from vgg.results import write_table

RULES = [(1, 0.0), (2, 0.0), (3, 0.0), (4, 0.0), (1, 0.5), (2, 0.5), (2, 0.7)]  # (patience, EMA weight alpha)
SEED = 0


def log_folders(args) -> list[Path]:
    """--logs, or results/<preset>/logs and its seed<N>/ subfolders (other seeds' runs)."""
    if args.logs:
        return [Path(p) for p in args.logs]
    base = Path(args.results) / args.preset / "logs"
    return [base] + sorted(p for p in base.glob("seed[0-9]*") if p.is_dir())


def ar1_noise(rng, shape: tuple[int, int], sd: float, rho: float) -> np.ndarray:
    """Stationary AR(1) noise of sd ``sd`` and lag-1 autocorrelation ``rho`` along the last axis."""
    z = rng.normal(0.0, sd, shape)
    out = z.copy()
    for t in range(1, shape[1]):
        out[:, t] = rho * out[:, t - 1] + np.sqrt(1 - rho ** 2) * z[:, t]
    return out


def sampling_sd(error: float, images: int) -> float:
    """Binomial sd of a top-1 error measured on ``images`` independent validation images."""
    return float(np.sqrt(error * (1 - error) / images))


def val_images_of(args) -> int:
    if args.val_images:
        return args.val_images
    table = Path(args.results) / args.preset / "table3.csv"
    if table.exists():
        df = pd.read_csv(table)
        if "val_images" in df and df.val_images.notna().any():
            return int(df.val_images.dropna().iloc[0])
    raise UserError(f"no val_images in {table}: make table3 PRESET={args.preset} first, or pass --val-images N")


def rule_outcomes(curve: np.ndarray, sims: np.ndarray, patience: int, alpha: float) -> dict:
    """The first drop of the rule on each simulated accuracy curve (rows of ``sims``), and the fitted
    error ``curve`` at that epoch (the cap where the rule never fires)."""
    cap = sims.shape[1]
    drop = first_drops(ema(sims, alpha), patience, 0.0)  # cap + 1 where the rule never fires
    epoch = np.minimum(drop, cap)
    level = curve[epoch - 1]
    return {"mean_first_drop": round(float(np.mean(epoch)), 2),
            "sd_first_drop": round(float(np.std(epoch)), 2),
            "p_no_drop": round(float(np.mean(drop > cap)), 3),
            "level_sd_points": round(100 * float(np.std(level)), 2),
            "forgone_points": round(100 * float(np.mean(level - curve[-1])), 2)}


def plateau_rules(args) -> None:
    preset = get_preset(args.preset)
    cap = max(preset.scratch_epochs, preset.from_a_epochs)
    curves, fits = {}, {}
    folders = log_folders(args)
    for folder in folders:
        tag = "" if folder == folders[0] else f"{folder.name}/"
        for name, err in segments(folder).items():  # none from a missing folder
            p = fit_decay(err)
            if p is not None and len(err) <= cap:
                curves[tag + name], fits[tag + name] = err, p
    if not curves:
        raise UserError(f"no training logs of {MIN_EPOCHS}+ epochs in {', '.join(map(str, folders))}: "
                        f"train the chain (`make table3 PRESET={args.preset}`) and copy its logs there, or pass --logs")
    images = val_images_of(args)
    noise, rho = epoch_noise(curves, {k: decay(np.arange(1, len(v) + 1), *fits[k]) for k, v in curves.items()})
    rho_sim = min(max(rho, 0.0), 0.95)  # negative autocorrelation would favour smoothing: not assumed
    mean_err = float(np.mean(np.concatenate(list(curves.values()))))
    sampling = sampling_sd(mean_err, images)
    rng = np.random.default_rng(SEED)
    rows = []
    for name, err in curves.items():
        curve = decay(np.arange(1, cap + 1), *fits[name])
        sims = 1 - (curve + ar1_noise(rng, (args.sims, cap), noise, rho_sim))
        for patience, alpha in RULES:
            rows.append({"net": name, "logged_epochs": len(err), "patience": patience, "ema_alpha": alpha,
                         **rule_outcomes(curve, sims, patience, alpha)})
    df = pd.DataFrame(rows)
    stats = ["mean_first_drop", "sd_first_drop", "p_no_drop", "level_sd_points", "forgone_points"]
    # the summary: the stages trained at lr 1e-2 (from scratch or from A) at S=256, whose first drop
    # the seed runs repeat; a fine-tuning stage starts at lr 1e-3 on a curve that is nearly flat
    first = df[df.net.str.endswith("_S256")]
    mean = first.groupby(["patience", "ema_alpha"], sort=False)[stats].mean().round(3).reset_index()
    out = pd.concat([df, mean.assign(net="mean over S=256 runs")], ignore_index=True)
    write_table(out, Path(args.results) / args.preset / "plateau_rules.csv",
                {"preset": args.preset, "runs": len(curves), "epoch_cap": cap,
                 "epoch_noise_points": round(100 * noise, 2), "noise_lag1_autocorrelation": round(rho, 3),
                 "val_images": images, "sampling_noise_points": round(100 * sampling, 2),
                 "training_noise_points": round(100 * float(np.sqrt(max(noise ** 2 - sampling ** 2, 0))), 2),
                 "simulations": args.sims, "seed": SEED,
                 "assumption": "fitted floor + span*exp(-epoch/tau) extrapolated to the cap; AR(1) noise"})
    plot(mean, Path(args.figures) / args.preset / "plateau_rules.png", args.preset, len(first.net.unique()),
         noise, sampling)
    print(f"{len(curves)} runs; epoch-to-epoch noise {100 * noise:.2f} points (sd), lag-1 autocorrelation "
          f"{rho:.2f}; of which sampling {100 * sampling:.2f} points ({images} val images at "
          f"{100 * mean_err:.1f}% error)")
    print(mean.to_string(index=False))


def plot(mean: pd.DataFrame, path: Path, preset: str, runs: int, noise: float, sampling: float) -> Path:
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    for r in mean.itertuples():
        smooth = r.ema_alpha > 0
        ax.scatter(r.mean_first_drop, r.level_sd_points, s=40, marker="s" if smooth else "o",
                   color="#2b7bd9" if smooth else "#d9822b")
        ax.annotate(f"p{int(r.patience)}" + (f" ema{r.ema_alpha:g}" if smooth else ""),
                    (r.mean_first_drop, r.level_sd_points), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel("epochs to the first lr drop (mean over S=256 runs)")
    ax.set_ylabel("sd of the error at the first drop (points)")
    ax.set_title(f"Plateau rules on simulated curves ({preset}: {runs} S=256 runs; noise {100 * noise:.2f} pt, "
                 f"sampling {100 * sampling:.2f} pt)", fontsize=9)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def extra(p) -> None:
    p.add_argument("--logs", nargs="+", help="folders of *.log.csv (default results/<preset>/logs and its seed<N>/)")
    p.add_argument("--sims", type=int, default=4000, help="simulated curves per run (default 4000)")
    p.add_argument("--val-images", type=int, help="validation images the rule sees (default: table3.csv's)")


if __name__ == "__main__":
    main(plateau_rules, needs_data=False, extra=extra)
