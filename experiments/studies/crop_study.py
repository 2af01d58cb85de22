"""Crop study: does a larger training crop shrink dense evaluation's penalty?

At crop 128 (the imagenette preset) conv5 maps are 8x8 in training and FC6 becomes a 4x4 conv;
dense evaluation still lost more than 3 points to a centre crop at half the (net, Q) pairs the
tables test. The issue's other lever is crop 160 (conv5 10x10, FC6 a 5x5 conv): here the D line
of the chain (D at S=256 from net A, S=384 from it, jitter from S=384; the preset's schedule and
seed) is built at both crops (``--preset`` and ``--against``, by default imagenette and the
imagenette160 diagnostic) and scored as dense_geometry.py scores it: dense vs a centre crop of the
same rescaled image at every Q Tables 3-4 test each net at, plus Table 5 (dense, multi-crop and
both at Q = 256, 384, 512, on the preset's multi-crop subset) for the jittered net.

Writes results/<preset>/crop_study.csv and figures/<preset>/crop_study.png (both crops' checkpoints
stay under runs/<preset>/ and runs/<against>/).
"""
import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from vgg.experiment import DENSE_GAP_LIMIT, Experiment, dense_tested_scales, main
from vgg.plots import dense_penalty_figure
from vgg.protocol import PAPER
from vgg.results import write_table

NETS = ["D_S256", "D_S384", "D_S256-512"]


def scored(ex: Experiment, tested: dict) -> list[dict]:
    """Every (net, Q) of NETS as dense_geometry scores it, and Table 5 for the jittered net."""
    rows = []
    for net in NETS:
        path = ex.checkpoint(net)
        common = {"trained_preset": ex.preset.name, "trained_crop_px": ex.preset.crop,
                  "train_conv5_map": ex.conv5_map(PAPER["crop"]), "net": net}
        rows += [{**common, **r} for r in ex.dense_vs_crop_rows(path, tested[net])]
        if net.endswith("256-512"):
            rows += [{**common, **r} for r in ex.table5_rows(path)]
    return rows


def crop_study(args) -> None:
    tested = dense_tested_scales()
    base = Experiment(args)
    other = Experiment(argparse.Namespace(**{**vars(args), "preset": args.against}))
    df = pd.DataFrame(scored(base, tested) + scored(other, tested))
    write_table(df, base.out("results", "crop_study.csv"), {**base.provenance(), "against": args.against})

    geo = df[df.evaluation == "dense vs centre crop"]
    for preset, g in geo.groupby("trained_preset", sort=False):
        above = int((g.dense_minus_crop > DENSE_GAP_LIMIT).sum())
        t5 = df[(df.trained_preset == preset) & df.evaluation.str.startswith("Table 5")]
        v = dict(zip(t5.evaluation.str.removeprefix("Table 5 "), t5.ours_top1_err))
        print(f"{preset} (crop {g.trained_crop_px.iloc[0]}): dense minus centre crop above {DENSE_GAP_LIMIT:g} "
              f"points at {above} of {len(g)} (net, Q), max {g.dense_minus_crop.max():+.2f}; Table 5 D jitter dense "
              f"{v['dense']:.2f} / multi-crop {v['multi-crop']:.2f} (gap {v['dense'] - v['multi-crop']:+.2f})")

    fig, axes = plt.subplots(1, len(NETS), figsize=(12, 4), sharey=True)
    for ax, net in zip(axes, NETS):
        for (preset, g), marker in zip(geo[geo.net == net].groupby("trained_preset", sort=False), "os"):
            g = g.assign(px=g.test_scales_px.astype(int))
            # x: the test scale relative to the crop, so both crops share an axis
            ax.plot(g.px / g.trained_crop_px, g.dense_minus_crop, marker=marker,
                    label=f"crop {g.trained_crop_px.iloc[0]} (conv5 {g.train_conv5_map.iloc[0]} in training)")
    dense_penalty_figure(fig, axes, NETS, "test scale Q / crop", DENSE_GAP_LIMIT,
                         f"Training crop and the dense penalty ({base.preset.name} vs {args.against}, "
                         f"{base.root.name})", base.out("figures", "crop_study.png"))


def extra(p) -> None:
    p.add_argument("--against", default="imagenette160",
                   help="the preset with the other crop (default imagenette160: crop 160)")


if __name__ == "__main__":
    main(crop_study, extra=extra)
