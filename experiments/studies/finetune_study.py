"""Fine-tuning study: is dense evaluation's penalty above the training scale, and Table 5's gap
between dense and multi-crop, a matter of how briefly the nets trained at the larger scales?

The paper trains every net for about 74 epochs, at S=384 and with scale jitter too; the
imagenette preset gave each fine-tuning stage 2 epochs when this study was published (it now
trains them under the plateau stop rule, as the other stages). Here the chain's S=384 and jittered
nets of D and E are continued from their chain checkpoints to ``--factor`` times the preset's
fine-tuning epochs (same seed, the same plateau rule, lr state from the checkpoint; the jittered
nets keep the chain's S=384 net as their init, so each longer run is the one a preset with
longer fine-tuning stages would give from there). Each net, at both lengths, is scored as
dense_geometry.py scores it (dense vs a centre crop of the same rescaled image at every Q that
Tables 3-4 test it at) and the jittered nets as Table 5 scores them (dense, multi-crop and both
at Q = 256, 384, 512, on the preset's multi-crop subset).

Writes results/<preset>/finetune_study.csv and figures/<preset>/finetune_study.png; the longer
runs go to runs/<preset>/finetune_study/ and resume.
"""


import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from vgg.checkpoint import load_training_checkpoint
from vgg.errors import UserError
from vgg.experiment import DENSE_GAP_LIMIT, Experiment, dense_tested_scales, main, schedule_taken
from vgg.plots import dense_penalty_figure
from vgg.results import write_table

NETS = ["D_S384", "D_S256-512", "E_S384", "E_S256-512"]


def finetune_study(args) -> None:
    if args.factor < 2:
        raise UserError(f"--factor must be 2 or more (the preset's fine-tuning epochs times it), got {args.factor}")
    ex = Experiment(args)
    tested = dense_tested_scales()
    rows = []
    for net in NETS:
        chain = ex.checkpoint(net)
        base = load_training_checkpoint(chain)["epoch"]
        extended = ex.continued(net, chain, args.factor * base, "finetune_study")
        for schedule, path in (("preset", chain), (f"{args.factor}x preset", extended)):
            common = {"net": net, "schedule": schedule, **schedule_taken(load_training_checkpoint(path))}
            rows += [{**common, **r} for r in ex.dense_vs_crop_rows(path, tested[net])]
            if net.endswith("256-512"):
                rows += [{**common, **r} for r in ex.table5_rows(path)]
    df = pd.DataFrame(rows)
    write_table(df, ex.out("results", "finetune_study.csv"), {**ex.provenance(), "factor": args.factor})

    schedules = list(dict.fromkeys(df.schedule))
    geo = df[df.evaluation == "dense vs centre crop"]
    for sched in schedules:
        g = geo[geo.schedule == sched]
        above = int((g.dense_minus_crop > DENSE_GAP_LIMIT).sum())
        print(f"{sched}: dense minus centre crop above {DENSE_GAP_LIMIT:g} points at {above} of {len(g)} (net, Q); "
              f"max {g.dense_minus_crop.max():+.2f}")
    for net in NETS[1::2]:
        for sched in schedules:
            t5 = df[(df.net == net) & (df.schedule == sched) & df.evaluation.str.startswith("Table 5")]
            if len(t5):
                v = dict(zip(t5.evaluation.str.removeprefix("Table 5 "), t5.ours_top1_err))
                print(f"{net} {sched}: Table 5 dense {v['dense']:.2f} / multi-crop {v['multi-crop']:.2f} / both "
                      f"{v['multi-crop & dense']:.2f} (dense minus multi-crop {v['dense'] - v['multi-crop']:+.2f})")

    fig, axes = plt.subplots(1, len(NETS), figsize=(13, 4), sharey=True)
    for ax, net in zip(axes, NETS):
        for sched, marker in zip(schedules, "os"):
            g = geo[(geo.net == net) & (geo.schedule == sched)]
            g = g.assign(px=g.test_scales_px.astype(int)).sort_values("px")
            ax.plot(g.px, g.dense_minus_crop, marker=marker, label=f"{g.epochs.iloc[0]} epochs")
    dense_penalty_figure(fig, axes, NETS, "test scale Q (px)", DENSE_GAP_LIMIT,
                         f"Longer fine-tuning stages and the dense penalty ({ex.preset.name}, {ex.root.name})",
                         ex.out("figures", "finetune_study.png"))


def extra(p) -> None:
    p.add_argument("--factor", type=int, default=3, help="fine-tuning epochs x this (default 3)")


if __name__ == "__main__":
    main(finetune_study, extra=extra)
