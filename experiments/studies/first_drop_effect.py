"""How much of a net's seed-to-seed spread is the epoch of its first lr drop?  No net is trained.

The seed runs (experiments/studies/seeds.py) train Table 3's S=256 nets with several seeds under the
same plateau rule. For every (net, seed) this reads the epoch after which the rule first lowered the lr
(the training log: results/<preset>/logs/ for seed 0, logs/seed<k>/ for seed k) and the net's
Table 3 error (seeds.csv), and regresses the error on the first-drop epoch *within* nets: both
centred on the net's mean over its seeds, so the depth differences between nets do not enter (a
fixed-effects regression; its residual degrees of freedom are runs - nets - 1).

A clearly negative slope says that a seed's net is worse largely because the noisy rule lowered
its lr early, the case plateau_study.py and plateau_rules.py make from the curves alone; r^2 is
the share of the within-net variance the first-drop epoch accounts for.

Writes results/<preset>/first_drop_effect.csv (one row per run, then the fit).
"""
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from vgg.errors import UserError
from vgg.experiment import main
from vgg.plateau import drop_epochs
from vgg.results import write_table


def within_net_fit(runs: pd.DataFrame) -> dict:
    """Slope, r, r^2 and two-sided p of error on first-drop epoch, both centred per net."""
    x = runs.first_drop - runs.groupby("net").first_drop.transform("mean")
    y = runs.ours_top1_err - runs.groupby("net").ours_top1_err.transform("mean")
    slope = float((x * y).sum() / (x * x).sum())
    resid = y - slope * x
    dof = len(runs) - runs.net.nunique() - 1
    se = float(np.sqrt((resid ** 2).sum() / dof / (x * x).sum()))
    r = float(np.corrcoef(x, y)[0, 1])
    return {"slope_points_per_epoch": round(slope, 3), "slope_se": round(se, 3),
            "p_value": float(f"{2 * stats.t.sf(abs(slope / se), dof):.3g}"), "r": round(r, 3),
            "r2": round(r * r, 3), "dof": dof}


def first_drop_effect(args) -> None:
    folder = Path(args.results) / args.preset
    seeds_csv = folder / "seeds.csv"
    if not seeds_csv.exists():
        raise UserError(f"{seeds_csv} is missing: run `make seeds PRESET={args.preset}` first")
    seeds = pd.read_csv(seeds_csv, dtype={"seed": str})
    seeds = seeds[seeds.seed.str.isdigit()]
    rows = []
    for r in seeds.itertuples():
        log_path = folder / "logs" / ("" if r.seed == "0" else f"seed{r.seed}") / f"{r.config}_S256.log.csv"
        if not log_path.exists():
            raise UserError(f"{log_path} is missing: copy runs/{args.preset}/seed{r.seed}/{r.config}_S256.log.csv "
                            f"(seed 0: runs/{args.preset}/) there")
        log = pd.read_csv(log_path)
        drops = drop_epochs(log.lr.tolist())
        if drops:
            rows.append({"net": r.config, "seed": r.seed, "first_drop": drops[0], "epochs": len(log),
                         "ours_top1_err": r.ours_top1_err})
    runs = pd.DataFrame(rows)
    if runs.empty or len(runs) - runs.net.nunique() - 1 < 1:
        raise UserError(f"too few seed runs in {seeds_csv} to fit within nets: train more seeds "
                        f"(`make seeds PRESET={args.preset} SEEDS=0,1,2`)")
    fit = within_net_fit(runs)
    out = pd.concat([runs, pd.DataFrame([{"net": "within-net fit", **fit}])], ignore_index=True)
    write_table(out, folder / "first_drop_effect.csv", {"preset": args.preset, "runs": len(runs)})
    print(out.to_string(index=False))


if __name__ == "__main__":
    main(first_drop_effect, needs_data=False)
