"""Table 3: single test scale (dense evaluation at Q = S, or Q = 0.5(Smin+Smax) for jitter),
plus the shallow B-5x5 control (the paper: +7% top-1 over B, centre crop).

--seed-spread-only: refresh only the seed columns (mean, sd over seeds.csv's seeds) of the
table3.csv already written, and its figure; evaluates nothing, so it needs no checkpoints (`make
seeds` after a fresh clone). The table's own provenance (commit, command) is kept: its numbers
are still that run's; seeds.csv carries the seeds' provenance."""
import sys
from pathlib import Path

import pandas as pd

from vgg.errors import UserError
from vgg.experiment import Experiment, main, net_name
from vgg.io import atomic_write_text
from vgg.plots import ours_vs_paper, training_curves
from vgg.results import paper_table, with_errors, write_table
from vgg.seeds import is_seed_row
from vgg.train import is_epoch_log


def with_seed_spread(df: pd.DataFrame, seeds_csv: Path) -> pd.DataFrame:
    """Beside seed 0's S=256 rows, the mean and sd of top-1 error over the seeds of seeds.csv
    (experiments/studies/seeds.py; `make seeds`), when it has been made."""
    if not seeds_csv.exists():
        return df
    s = pd.read_csv(seeds_csv, dtype={"seed": str})
    seed0 = {r.config: r.ours_top1_err for r in s[s.seed == "0"].itertuples()}
    stale = sorted(r.config for r in df.itertuples()
                   if is_seed_row(r) and r.config in seed0 and abs(seed0[r.config] - r.ours_top1_err) > 0.005)
    if stale:  # the chain was retrained after the seed study ran: its seeds 1, 2 belong to another protocol
        print(f"warning: {seeds_csv} was made from another chain (seed 0 of {', '.join(stale)} is not this table's); "
              "its seed spread is left out (rerun `make seeds`)", file=sys.stderr)
        return df
    stat = {(r.config, r.seed): r.ours_top1_err for r in s.itertuples() if r.seed in ("mean", "sd")}
    n = s[~s.seed.isin(["mean", "sd"])].groupby("config").seed.apply(lambda v: ";".join(v))
    df = df.copy()
    mask = [is_seed_row(r) and r.config in n.index for r in df.itertuples()]
    df["seeds"] = [n[r.config] if m else "" for r, m in zip(df.itertuples(), mask)]
    for k in ("mean", "sd"):
        df[f"ours_top1_err_seed_{k}"] = [stat[(r.config, k)] if m else None for r, m in zip(df.itertuples(), mask)]
    return df


SEED_COLUMNS = ["seeds", "ours_top1_err_seed_mean", "ours_top1_err_seed_sd"]


def labels_of(df: pd.DataFrame) -> list[str]:
    return [f"{r.config} S={r.train_scale} Q={r.test_scale}" + (" crop" if r.method == "center-crop" else "")
            for r in df.itertuples()]


def plot(df: pd.DataFrame, path: Path, preset: str, dataset: str) -> None:
    ours_vs_paper(df, labels_of(df), path,
                  f"Table 3, single test scale: paper (ImageNet) vs ours ({preset}, {dataset})",
                  "proxy errors are not ImageNet errors: compare the ordering, not the values")


def seed_spread_only(args) -> None:
    path = Path(args.results) / args.preset / "table3.csv"
    if not path.exists():
        raise UserError(f"{path} is missing: run `make table3 PRESET={args.preset}` first")
    df = pd.read_csv(path, dtype={"train_scale": str, "seeds": str}).drop(columns=SEED_COLUMNS, errors="ignore")
    first = list(df.columns).index("preset")  # provenance columns start here (Experiment.provenance)
    body, provenance = df.iloc[:, :first], df.iloc[:, first:]
    df = pd.concat([with_seed_spread(body, path.with_name("seeds.csv")), provenance], axis=1)
    atomic_write_text(path, df.to_csv(index=False, lineterminator="\n"))
    print(f"wrote {path} (seed columns only)")
    plot(df, Path(args.figures) / args.preset / "table3.png", args.preset, df.dataset.iloc[0])


def table3(args) -> None:
    if args.seed_spread_only:
        return seed_spread_only(args)
    ex = Experiment(args)
    rows = []
    for r in paper_table("table3_single_scale").itertuples():
        q = int(r.test_scale)
        net = net_name(r.config, r.train_scale)
        e1, e5 = ex.errors(*ex.posteriors(net, "dense", [q]))
        row = with_errors({"config": r.config, "train_scale": r.train_scale, "test_scale": q,
                           "method": "dense", "train_scale_px": "-".join(map(str, sorted(set(
                               ex.preset.scale_px(r.train_scale))))), "test_scale_px": ex.preset.px(q),
                           "note": ""}, e1, e5, r.top1_val_err, r.top5_val_err)
        # Diagnostics beside the paper's measure: the conv5 map dense evaluation runs on (training
        # crops give a crop/16 map) and a centre crop's error at the same Q.
        row["conv5_maps"] = ex.conv5_map(q)
        row["ours_top1_err_center_crop"] = round(100 * ex.errors(*ex.posteriors(net, "center-crop", [q]))[0], 2)
        rows.append(row)
    centre = {c: ex.errors(*ex.posteriors(net_name(c, "256"), "center-crop", [256])) for c in ("B", "B-5x5")}
    if ex.preset.plan_controls:  # the analysis plan's pair: B trained like B-5x5
        centre["B-scratch"] = ex.errors(*ex.posteriors("B_S256-scratch", "center-crop", [256]))
    for c in centre:
        row = with_errors({"config": c.removesuffix("-scratch"), "train_scale": "256", "test_scale": 256,
                           "method": "center-crop", "train_scale_px": str(ex.preset.px(256)),
                           "test_scale_px": ex.preset.px(256),
                           "note": "control: paper gives only the B-5x5 minus B difference"}, *centre[c], None, None)
        if ex.preset.plan_controls:  # 'glorot' for B-5x5 and the B trained like it (the plan's pair)
            row["init"] = ex.preset.scratch_init if c != "B" else "from A"
        rows.append(row)
    delta = centre["B-5x5"][0] - centre["B"][0]
    rows.append(with_errors({"config": "B-5x5 minus B", "train_scale": "256", "test_scale": 256,
                             "method": "center-crop", "train_scale_px": str(ex.preset.px(256)),
                             "test_scale_px": ex.preset.px(256),
                             "note": "top-1 difference (paper Sect. 4.1: 7% higher for B-5x5)"},
                            delta, None, 7.0, None))
    df = with_seed_spread(pd.DataFrame(rows), ex.out("results", "seeds.csv"))
    write_table(df, ex.out("results", "table3.csv"), ex.provenance())
    plot(df, ex.out("figures", "table3.png"), ex.preset.name, ex.root.name)
    logs = {}
    for path in sorted(Path(args.runs, ex.preset.name).glob("*.log.csv")):
        log = pd.read_csv(path)
        if is_epoch_log(log.columns):
            logs[path.name.removesuffix(".log.csv")] = log
    training_curves(logs, ex.out("figures", "training_curves.png"),
                    f"Training curves of Table 3's nets ({ex.preset.name}; "
                    "validation: centre crop of the image rescaled to Q)")


def extra(p) -> None:
    p.add_argument("--seed-spread-only", action="store_true",
                   help="refresh the seed columns of the written table3.csv from seeds.csv; evaluate nothing")


if __name__ == "__main__":
    main(table3, extra=extra)
