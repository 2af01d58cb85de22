"""How sensitive is the plateau rule to one noisy epoch?  The paper lowers the lr "when the
validation set accuracy stopped improving" and gives no patience or threshold.

For every logged training run of a preset (results/<preset>/logs/*.log.csv), the epochs at the
first learning rate are fitted with a falling curve (floor + span * exp(-epoch / tau)); the
residuals give the epoch-to-epoch noise of validation error (pooled over the runs). Each rule
(patience 0 / 1 / 2 epochs, threshold 0 or 0.5 points, torch's ReduceLROnPlateau replayed by
vgg.plateau.first_drop) is then applied to the logged curve itself and to 4,000 simulated curves
(the fitted curve plus Gaussian noise of that size). *Premature*: the rule lowers the lr earlier
than it would on the noiseless curve, i.e. noise, not a plateau, decided it. On a long segment
whose fitted curve is still falling at its end the noiseless rule never fires, so every drop
counts as premature; ``fitted_fall_points`` says how much that matters: how far the fitted curve
fell over the patience + 1 epochs up to the logged drop (a fall well below the epoch noise: the
curve was flat for the rule's purpose; above it: the lr was lowered on a net still learning).
No net is trained.

Writes results/<preset>/plateau_study.csv and figures/<preset>/plateau_study.png.
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from vgg.errors import UserError
from vgg.experiment import main
from vgg.plateau import MIN_EPOCHS, epoch_noise, first_drop, first_drops, segments, smooth_curve
from vgg.plots import save_figure
from vgg.results import write_table

RULES = [(0, 0.0), (1, 0.0), (2, 0.0), (0, 0.5), (1, 0.5)]  # (patience epochs, threshold in points)
SEED = 0


def fitted_fall(smooth: np.ndarray, drop: int | None, patience: int) -> float | None:
    """How far (points) the fitted error curve fell over the patience + 1 epochs up to ``drop``
    (1-based), the epochs the rule found no new best in; None where the rule does not fire."""
    if drop is None:
        return None
    start = max(drop - patience - 2, 0)  # the epoch before the window: the best the rule kept
    return round(100 * float(smooth[start] - smooth[drop - 1]), 2)


def plateau_study(args) -> None:
    folder = Path(args.logs or Path(args.results) / args.preset / "logs")
    curves = segments(folder) if folder.is_dir() else {}
    if not curves:
        raise UserError(f"no training logs of {MIN_EPOCHS}+ epochs in {folder}: train the chain "
                        f"(`make table3 PRESET={args.preset}`) and copy runs/{args.preset}/*.log.csv there, "
                        "or pass --logs")
    smooth = {k: smooth_curve(v) for k, v in curves.items()}
    noise = epoch_noise(curves, smooth)[0]  # sd of one epoch's val error around the trend
    rng = np.random.default_rng(SEED)
    rows = []
    for name, err in curves.items():
        sims = smooth[name] + rng.normal(0.0, noise, (args.sims, len(err)))
        for patience, points in RULES:
            thr = points / 100
            clean = first_drop(1 - smooth[name], patience, thr)
            logged = first_drop(1 - err, patience, thr)
            horizon = clean or len(err) + 1
            drops = first_drops(1 - sims, patience, thr)
            rows.append({"net": name, "epochs": len(err), "patience": patience, "threshold_points": points,
                         "logged_first_drop": logged,
                         "noiseless_first_drop": clean,
                         "fitted_fall_points": fitted_fall(smooth[name], logged, patience),
                         "p_premature": round(float(np.mean(drops < horizon)), 3)})
    df = pd.DataFrame(rows)
    mean = (df.groupby(["patience", "threshold_points"], sort=False)
            .agg(p_premature=("p_premature", "mean"),
                 logged_drops=("logged_first_drop", lambda v: int(v.notna().sum())))
            .reset_index())
    summary = pd.DataFrame({"net": "mean over runs", "epochs": None, "patience": mean.patience,
                            "threshold_points": mean.threshold_points, "logged_first_drop": mean.logged_drops,
                            "noiseless_first_drop": None, "fitted_fall_points": None,
                            "p_premature": mean.p_premature.round(3)})
    out = pd.concat([df, summary], ignore_index=True)
    write_table(out, Path(args.results) / args.preset / "plateau_study.csv",
                {"preset": args.preset, "runs": len(curves), "epoch_noise_points": round(100 * noise, 2),
                 "simulations": args.sims, "seed": SEED})
    plot(mean, noise, len(curves), Path(args.figures) / args.preset / "plateau_study.png", args.preset)
    print(f"{len(curves)} runs, epoch-to-epoch noise of val top-1 error {100 * noise:.2f} points (sd)")
    print("summary rows: logged_first_drop = how many logged runs the rule would have cut (of "
          f"{len(curves)})")
    print(summary.drop(columns=["epochs", "noiseless_first_drop", "fitted_fall_points"]).to_string(index=False))


def plot(mean: pd.DataFrame, noise: float, runs: int, path: Path, preset: str) -> Path:
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    labels = [f"patience {int(r.patience)}\nthreshold {r.threshold_points:g} pt" for r in mean.itertuples()]
    ax.bar(range(len(mean)), 100 * mean.p_premature, color="#d9822b")
    for i, v in enumerate(100 * mean.p_premature):
        ax.text(i, v, f"{v:.0f}%", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(mean)), labels, fontsize=8)
    ax.set_ylabel("runs whose first lr drop noise decides (%)")
    ax.set_title(f"Plateau rule vs one noisy epoch ({preset}: {runs} logged runs, "
                 f"epoch noise sd {100 * noise:.2f} pt)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def extra(p) -> None:
    p.add_argument("--logs", help="folder of *.log.csv (default results/<preset>/logs)")
    p.add_argument("--sims", type=int, default=4000, help="simulated curves per run and rule (default 4000)")


if __name__ == "__main__":
    main(plateau_study, needs_data=False, extra=extra)
