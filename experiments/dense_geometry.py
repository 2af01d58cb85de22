"""Why dense evaluation behaves differently at a small proxy geometry: top-1 error of dense
evaluation vs a centre crop at every test scale Q of the paper, for nets D (S=256) and
D (S=256-512), beside the size of the conv5 feature map at that Q.

At 224 px the paper's conv5 layers see 14x14 maps, most positions away from the zero
padding, so running them on a larger image (dense evaluation) changes little. A 32-px
proxy crop gives 2x2 conv5 maps where every position touches the padding; a larger Q
puts positions in the interior the net never saw in training. This script measures it.
Writes results/<preset>/dense_geometry.csv and figures/<preset>/dense_geometry.png.
`--preset proxy64` repeats it at twice the crop (conv5 4x4 in training), which shows how
the penalty changes as the conv5 map grows.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from vgg.experiment import Experiment, main  # noqa: E402
from vgg.model import feature_size  # noqa: E402
from vgg.plots import save_figure  # noqa: E402
from vgg.protocol import PAPER  # noqa: E402
from vgg.results import write_table  # noqa: E402

PAPER_Q = [224, 256, 288, 352, 384, 416, 512]
NETS = ["D_S256", "D_S256-512"]


def dense_geometry(args) -> None:
    ex = Experiment(args)
    rows = []
    for net in NETS:
        for q in PAPER_Q:
            px = ex.preset.px(q)
            row = {"net": net, "test_scale": q, "test_scale_px": px,
                   "conv5_map": ex.conv5_map(q), "train_conv5_map": ex.conv5_map(PAPER["crop"]),
                   "score_map": f"{feature_size(px) - feature_size(ex.preset.crop) + 1}"
                                f"x{feature_size(px) - feature_size(ex.preset.crop) + 1}"}
            for method in ("dense", "center-crop"):
                e1, _ = ex.errors(*ex.posteriors(net, method, [q]))
                row[f"{method}_top1_err"] = round(100 * e1, 2)
            rows.append(row)
    df = pd.DataFrame(rows)
    write_table(df, ex.out("results", "dense_geometry.csv"), ex.provenance())

    fig, axes = plt.subplots(1, len(NETS), figsize=(11, 4.5), sharey=True)
    for ax, (net, g) in zip(axes, df.groupby("net", sort=False)):
        ax.plot(g.test_scale_px, g["dense_top1_err"], marker="o", label="dense (whole image)")
        ax.plot(g.test_scale_px, g["center-crop_top1_err"], marker="s", label="centre crop")
        for r in g.itertuples():
            ax.annotate(f"conv5 {r.conv5_map}", (r.test_scale_px, r.dense_top1_err), fontsize=7,
                        textcoords="offset points", xytext=(0, 6), ha="center")
        ax.axhline(90, color="grey", ls=":", lw=1)
        ax.set_title(net, fontsize=10)
        ax.set_xlabel(f"test scale Q (px; crop {ex.preset.crop}, conv5 {df.train_conv5_map[0]} in training)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation top-1 error (%)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Dense evaluation vs centre crop across test scales ({ex.preset.name}, {ex.root.name})",
                 fontsize=10)
    save_figure(fig, ex.out("figures", "dense_geometry.png"))


if __name__ == "__main__":
    main(dense_geometry)
