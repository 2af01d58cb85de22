"""Seed variance: Table 3's S=256 nets (A, A-LRN, B, C, D, E by default) trained with several seeds,
each seed its own chain (runs/<preset>/seed<k>/; seed 0 is the main chain), and scored as Table 3
scores them (dense evaluation at Q=256, cached posteriors).

Writes results/<preset>/seeds.csv (config, seed, top-1/top-5 error; then one row per config with
the mean and sample sd over the seeds), the per-image correctness behind it (seeds_top1.npz, which
findings.py reads to mark a finding that flips between seeds inconclusive, and table3.py to add
the mean and sd beside seed 0) and figures/<preset>/seeds.png. Resumable: every checkpoint and
posterior is built once.

Across sessions and fresh clones (checkpoints are not published): an entry of seeds_top1.npz made
under the preset's current protocol (same fingerprint: lr, schedule, stop rule, sizes, dataset) is
reused, not trained again, and seed 0 is taken from the published chain (per_image_top1.npz, which
findings.py wrote, where it matches table3.csv). So `--seeds 0,1` in one session and `--seeds 0,1,2`
in the next trains seed 2 only. Delete seeds_top1.npz to train every seed again.
"""
import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from vgg.checkpoint import load_metadata, trained_on
from vgg.errors import UserError
from vgg.experiment import Experiment, comma_list, main, net_name
from vgg.plots import save_figure
from vgg.results import paper_table, write_table
from vgg.seeds import SEED_ROW, load_reusable, protocol_fingerprint, published_seed0, save_correctness
from vgg.stats import correct_top1


def seeds(args) -> None:
    seed_list, configs = args.seeds, args.nets
    if len(seed_list) < 2 or len(set(seed_list)) != len(seed_list):
        raise UserError(f"--seeds {','.join(map(str, seed_list))}: give at least two different seeds, "
                        "e.g. --seeds 0,1,2")
    paper = paper_table("table3_single_scale").query(
        f"train_scale == '{SEED_ROW['train_scale']}' and test_scale == '{SEED_ROW['test_scale']}'")
    unknown = sorted(set(configs) - set(paper.config))
    if unknown:
        raise UserError(f"--nets: {', '.join(unknown)} has no S=256 row in Table 3; choose from "
                        f"{', '.join(paper.config)}")
    paper = paper.set_index("config")
    folder = Path(args.results) / args.preset
    first = ex = Experiment(argparse.Namespace(**{**vars(args), "seed": seed_list[0]}))
    protocol = protocol_fingerprint(ex.preset, ex.root.name, len(ex.data.val))
    known = load_reusable(folder, protocol, len(ex.data.val))  # (config, seed) -> (correct, top-5 %)
    known.update({(c, 0): v for c, v in published_seed0(folder).items()})  # the chain's own seed 0
    # what the store will hold: the requested nets already known, then each net as it is made (saved
    # at once, so a run cut short keeps what it made and loses nothing it had)
    correct = {k: known[k][0] for k in ((c, s) for s in seed_list for c in configs) if k in known}
    top5 = {k: round(known[k][1], 2) for k in correct}
    trained_with = {k: known[k][2] for k in correct}
    rows = []
    for seed in seed_list:  # seed-major: a later seed never delays an earlier seed's results
        # the first seed's Experiment has loaded the data already (to fingerprint it): reuse it
        ex = first if seed == seed_list[0] else Experiment(argparse.Namespace(**{**vars(args), "seed": seed}))
        for config in configs:
            if (config, seed) in known:
                e1, e5 = 1 - correct[(config, seed)].mean(), top5[(config, seed)]
                print(f"{config} seed {seed}: saved ({folder}), not trained again", file=sys.stderr)
            else:
                net = net_name(config, SEED_ROW["train_scale"])
                p, y = ex.posteriors(net, SEED_ROW["method"], [SEED_ROW["test_scale"]])
                e1, e5 = ex.errors(p, y)
                e5 *= 100
                correct[(config, seed)] = correct_top1(p, y)
                top5[(config, seed)] = round(e5, 2)
                # where the net trained (each session of it), not where it is scored
                trained_with[(config, seed)] = trained_on(load_metadata(ex.checkpoint(net))["spec"])
                save_correctness(folder, correct, top5, protocol, trained_with)
            rows.append({"config": config, "seed": str(seed), "ours_top1_err": round(100 * e1, 2),
                         "ours_top5_err": round(e5, 2), "paper_top1_err": paper.loc[config, "top1_val_err"],
                         "paper_top5_err": paper.loc[config, "top5_val_err"],
                         "trained_with": trained_with[(config, seed)]})
    save_correctness(folder, correct, top5, protocol, trained_with)  # every entry under this fingerprint
    # the table and figure list the nets in Table 3's order, whatever order NETS trained them in
    configs = [c for c in paper.index if c in configs]
    per_seed = pd.DataFrame(sorted(rows, key=lambda r: (seed_list.index(int(r["seed"])), configs.index(r["config"]))))
    summary = []
    for config in configs:
        r = per_seed[per_seed.config == config]
        summary.append({"config": config, "seed": "mean", "ours_top1_err": round(r.ours_top1_err.mean(), 2),
                        "ours_top5_err": round(r.ours_top5_err.mean(), 2),
                        "paper_top1_err": r.paper_top1_err.iloc[0], "paper_top5_err": r.paper_top5_err.iloc[0]})
        summary.append({"config": config, "seed": "sd", "ours_top1_err": round(r.ours_top1_err.std(ddof=1), 2),
                         "ours_top5_err": round(r.ours_top5_err.std(ddof=1), 2),
                         "paper_top1_err": None, "paper_top5_err": None})
    df = pd.concat([per_seed, pd.DataFrame(summary)], ignore_index=True)
    df.insert(1, "train_scale", SEED_ROW["train_scale"])
    df.insert(2, "test_scale", SEED_ROW["test_scale"])
    df.insert(3, "method", SEED_ROW["method"])
    provenance = {k: v for k, v in ex.provenance().items() if k != "seed"}  # the seed is a column here
    write_table(df, folder / "seeds.csv", {**provenance, "seeds": ";".join(map(str, seed_list))})
    plot(per_seed, configs, ex.out("figures", "seeds.png"), ex.preset.name)
    print(df.to_string(index=False))


def plot(per_seed: pd.DataFrame, configs: list[str], path: Path, preset: str) -> Path:
    """Mean top-1 error per config with +-1 sd error bars, each seed as a dot."""
    fig, ax = plt.subplots(figsize=(1.3 * len(configs) + 2.5, 4))
    x = np.arange(len(configs))
    for i, config in enumerate(configs):
        v = per_seed[per_seed.config == config].ours_top1_err.to_numpy(dtype=float)
        ax.bar(i, v.mean(), 0.6, yerr=v.std(ddof=1), capsize=6, color="#d9822b", alpha=0.6)
        ax.scatter(np.full(len(v), i) + np.linspace(-0.12, 0.12, len(v)), v, color="black", s=14, zorder=3)
    low = per_seed.ours_top1_err.min()
    ax.set_ylim(max(0, low - 8), per_seed.ours_top1_err.max() + 4)
    ax.set_xticks(x, [f"{c}\nS=256" for c in configs])
    ax.set_ylabel("top-1 error (%), dense Q=256-equiv")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"Seed spread of Table 3's S=256 nets ({preset}, seeds "
                 f"{', '.join(sorted(per_seed.seed.unique()))}; bars: mean +- sd)\n"
                 "proxy errors are not ImageNet errors", fontsize=9)
    return save_figure(fig, path)


def extra(p) -> None:
    p.add_argument("--seeds", type=comma_list(int), default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--nets", type=comma_list(), default="A,A-LRN,B,C,D,E",
                   help="configs at S=256 (default A,A-LRN,B,C,D,E: every net of a Table 3 claim at S=256)")


if __name__ == "__main__":
    main(seeds, extra=extra)
