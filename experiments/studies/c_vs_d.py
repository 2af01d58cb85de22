"""Why does C beat D on the proxy (Table 3: "D (3x3) beats C (1x1 convs)")?  No net is trained.

Two explanations other than the architecture can each make D look worse than C, and both are
measured already:

- *dense penalty*: Table 3 scores nets densely; dense_geometry.csv scored the same nets on the same
  images with a centre crop too. D and E lose points to dense evaluation above the training map, C does
  not. The D - C gap under centre crops takes that term out.
- *plateau rule*: first_drop_effect.csv fitted how much a net's error falls per epoch its first lr
  drop comes later (within nets, over the seed runs). The gap adjusted by slope x (D's first drop -
  C's first drop) takes the schedule's luck out.

For every stage of the chain (S=256 for each seed, S=384 and jitter for seed 0) this writes the dense
gap, the centre-crop gap with its unpaired 95% interval (per-image centre-crop correctness was not
saved), and at S=256 both first-drop epochs and the adjusted gap: results/<preset>/c_vs_d.csv.
"""
from pathlib import Path

import pandas as pd

from vgg.errors import UserError
from vgg.experiment import main, net_name
from vgg.findings import unpaired_interval
from vgg.plateau import drop_epochs
from vgg.results import write_table

STAGES = [("256", 256), ("384", 384), ("256-512", 384)]  # training scale, Table 3's Q


def first_drop(folder: Path, net: str) -> int | None:
    path = folder / f"{net}.log.csv"
    if not path.exists():
        return None
    drops = drop_epochs(pd.read_csv(path).lr.tolist())
    return drops[0] if drops else None


def c_vs_d(args) -> None:
    folder = Path(args.results) / args.preset
    need = {name: folder / name for name in ("dense_geometry.csv", "first_drop_effect.csv", "seeds.csv", "table3.csv")}
    for name, path in need.items():
        if not path.exists():
            raise UserError(f"{path} is missing: make {Path(name).stem} PRESET={args.preset} first")
    geometry = pd.read_csv(need["dense_geometry.csv"])
    geometry = geometry[geometry.tested_in_tables]
    fit = pd.read_csv(need["first_drop_effect.csv"])
    slope = float(fit.slope_points_per_epoch.dropna().iloc[0])
    seeds = pd.read_csv(need["seeds.csv"], dtype={"seed": str})
    n = int(pd.read_csv(need["table3.csv"]).val_images.iloc[0])
    rows = []
    for scale, q in STAGES:
        for seed in ([0, 1, 2] if scale == "256" else [0]):
            logs = folder / "logs" / ("" if seed == 0 else f"seed{seed}")
            err, crop, drop = {}, {}, {}
            for c in ("C", "D"):
                net = net_name(c, scale)
                if scale == "256":
                    s = seeds[(seeds.config == c) & (seeds.seed == str(seed))]
                    err[c] = float(s.ours_top1_err.iloc[0]) if len(s) else None
                else:
                    err[c] = None
                g = geometry[(geometry.net == net) & (geometry.test_scale == q)]
                if seed == 0 and len(g):
                    err[c] = float(g["dense_top1_err"].iloc[0]) if err[c] is None else err[c]
                    crop[c] = float(g["center-crop_top1_err"].iloc[0])
                drop[c] = first_drop(logs, net)
            if err["C"] is None or err["D"] is None:
                continue
            row = {"stage": f"S={scale}", "seed": seed, "dense_C": err["C"], "dense_D": err["D"],
                   "dense_gap_D_minus_C": round(err["D"] - err["C"], 2)}
            if crop:
                lo, hi = unpaired_interval(crop["D"], n, crop["C"], n)
                row.update({"crop_C": crop["C"], "crop_D": crop["D"],
                            "crop_gap_D_minus_C": round(crop["D"] - crop["C"], 2),
                            "crop_gap_ci_low": round(lo, 2), "crop_gap_ci_high": round(hi, 2)})
            if drop["C"] and drop["D"] and scale == "256":  # the fit is over the S=256 seed runs
                # D's error had its first drop come when C's did: err_D + slope * (drop_C - drop_D)
                adjusted = err["D"] + slope * (drop["C"] - drop["D"]) - err["C"]
                row.update({"first_drop_C": drop["C"], "first_drop_D": drop["D"],
                            "dense_gap_adjusted_for_first_drop": round(adjusted, 2)})
            rows.append(row)
    write_table(pd.DataFrame(rows), folder / "c_vs_d.csv",
                {"preset": args.preset, "first_drop_slope_points_per_epoch": slope, "images": n})


if __name__ == "__main__":
    main(c_vs_d, needs_data=False)
