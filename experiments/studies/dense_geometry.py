"""Does dense evaluation behave as in the paper at this preset's geometry?  Top-1 error of dense
evaluation vs a centre crop of the same rescaled image, for every net at every test scale Q
Tables 3 and 4 evaluate it at, beside the conv5 map and class-score map sizes; plus a sweep of
all the paper's Q for D (S=256) and D (S=256-512).

At 224 px the paper's conv5 maps are 14x14 and every Q (224 ... 512) is a multiple of 32, so no
max-pool floors and dense evaluation averages a score map over the whole image.  A 32-px proxy
crop gives 2x2 conv5 maps where every position touches the zero padding, and dense evaluation at
a larger Q runs the nets on maps they never saw (the CIFAR-10 proxy: up to +30 points).  With
``--unrounded`` (presets with a ``sizes`` table) the D nets are also evaluated at the sizes plain
scaling would give (e.g. 146, 165, 219, 293 px at crop 128), where pools floor: the lever the
rounding to multiples of 32 removes.

Writes results/<preset>/dense_geometry.csv and figures/<preset>/dense_geometry.png.
"""


import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from vgg import checkpoint as ck
from vgg.data import ColourStats
from vgg.evaluate import posteriors
from vgg.experiment import DENSE_GAP_LIMIT, Experiment, dense_tested_scales, main
from vgg.model import feature_size
from vgg.plots import save_figure
from vgg.protocol import PAPER
from vgg.results import write_table

PAPER_Q = [224, 256, 288, 352, 384, 416, 512]
SWEEP = ["D_S256", "D_S256-512"]


def score_map(px: int, crop: int) -> str:
    k = feature_size(px) - feature_size(crop) + 1
    return f"{k}x{k}"


def dense_geometry(args) -> None:
    ex = Experiment(args)
    tested = dense_tested_scales()
    rows = []
    for net in dict.fromkeys([*tested, *SWEEP]):
        qs = sorted(tested.get(net, set()) | (set(PAPER_Q) if net in SWEEP else set()))
        for q in qs:
            px = ex.preset.px(q)
            row = {"net": net, "test_scale": q, "test_scale_px": px, "tested_in_tables": q in tested.get(net, ()),
                   "conv5_map": ex.conv5_map(q), "train_conv5_map": ex.conv5_map(PAPER["crop"]),
                   "score_map": score_map(px, ex.preset.crop)}
            for method in ("dense", "center-crop"):
                row[f"{method}_top1_err"] = round(100 * ex.errors(*ex.posteriors(net, method, [q]))[0], 2)
            rows.append(row)
    if args.unrounded and ex.preset.sizes:
        for net in SWEEP:
            path = ex.checkpoint(net)
            ckpt = ck.load_training_checkpoint(path)
            model, colour = ck.model_from_checkpoint(ckpt), ColourStats.from_dict(ckpt["colour"])
            for q in PAPER_Q:
                px = int(round(q * ex.preset.factor))
                if px == ex.preset.px(q) or px < ex.preset.crop:
                    continue
                row = {"net": net, "test_scale": q, "test_scale_px": px, "tested_in_tables": False,
                       "conv5_map": f"{feature_size(px, 4)}x{feature_size(px, 4)}",
                       "train_conv5_map": ex.conv5_map(PAPER["crop"]), "score_map": score_map(px, ex.preset.crop),
                       "note": "unrounded size (plain scaling): pools floor"}
                for method in ("dense", "center-crop"):
                    p, y = posteriors(model, ex.data, colour, method, [px])
                    row[f"{method}_top1_err"] = round(100 * ex.errors(p, y)[0], 2)
                rows.append(row)
    df = pd.DataFrame(rows)
    if "note" not in df:
        df["note"] = ""
    df["note"] = df["note"].fillna("")
    df["dense_minus_crop"] = (df["dense_top1_err"] - df["center-crop_top1_err"]).round(2)
    write_table(df, ex.out("results", "dense_geometry.csv"), ex.provenance())
    t = df[df.tested_in_tables]
    worst = t.loc[t.dense_minus_crop.idxmax()]
    print(f"dense minus centre crop at the Q the tables test: max {worst.dense_minus_crop:+.2f} points "
          f"({worst.net}, Q={worst.test_scale} = {worst.test_scale_px} px); "
          f"{int((t.dense_minus_crop > DENSE_GAP_LIMIT).sum())} of {len(t)} above {DENSE_GAP_LIMIT:g}")

    fig, axes = plt.subplots(1, len(SWEEP), figsize=(11, 4.5), sharey=True)
    for ax, net in zip(axes, SWEEP):
        g = df[(df.net == net) & (df.note == "")].sort_values("test_scale_px")
        ax.plot(g.test_scale_px, g["dense_top1_err"], marker="o", label="dense (whole image)")
        ax.plot(g.test_scale_px, g["center-crop_top1_err"], marker="s", label="centre crop")
        u = df[(df.net == net) & (df.note != "")].sort_values("test_scale_px")
        if len(u):
            ax.plot(u.test_scale_px, u["dense_top1_err"], marker="x", ls="--", color="C3",
                    label="dense at unrounded sizes (pools floor)")
        for r in g.itertuples():
            ax.annotate(f"conv5 {r.conv5_map}", (r.test_scale_px, r.dense_top1_err), fontsize=7,
                        textcoords="offset points", xytext=(0, 6), ha="center")
        ax.set_title(net, fontsize=10)
        ax.set_xlabel(f"test scale Q (px; crop {ex.preset.crop}, conv5 {df.train_conv5_map[0]} in training)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation top-1 error (%)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Dense evaluation vs centre crop across test scales ({ex.preset.name}, {ex.root.name}; "
                 "not ImageNet numbers)", fontsize=10)
    save_figure(fig, ex.out("figures", "dense_geometry.png"))


def extra(p) -> None:
    p.add_argument("--unrounded", action="store_true",
                   help="also evaluate the D nets at the sizes plain scaling gives (presets with a sizes table)")


if __name__ == "__main__":
    main(dense_geometry, extra=extra)
