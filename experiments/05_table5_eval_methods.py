"""Table 5: dense vs multi-crop (5x5 grid x 2 flips x 3 scales = 150 crops) vs both,
for the jittered D and E nets at Q in {256, 384, 512}.  On the preset's multi-crop subset of the
validation images where it has one (imagenette: 1,000 of 3,925); val_images says how many."""


import pandas as pd

from vgg.experiment import TABLE5_SCALES, Experiment, main
from vgg.plots import ours_vs_paper
from vgg.results import paper_table, with_errors, write_table


def table5(args) -> None:
    ex = Experiment(args)
    rows = []
    for r in paper_table("table5_eval_methods").itertuples():
        e1, e5 = ex.errors(*ex.posteriors(f"{r.config}_S256-512", r.method, TABLE5_SCALES, multi_crop_subset=True))
        rows.append(with_errors({"config": r.config, "train_scale": "256-512", "method": r.method,
                                 "test_scales": ";".join(map(str, TABLE5_SCALES)),
                                 "test_scales_px": ";".join(str(ex.preset.px(q)) for q in TABLE5_SCALES)},
                                e1, e5, r.top1_val_err, r.top5_val_err)
                    | {"conv5_maps": ";".join(ex.conv5_map(q) for q in TABLE5_SCALES)})
    df = pd.DataFrame(rows)
    write_table(df, ex.out("results", "table5.csv"), ex.provenance_multi_crop())
    ours_vs_paper(df, [f"{r.config} {r.method}" for r in df.itertuples()], ex.out("figures", "table5.png"),
                  f"Table 5, evaluation methods: paper (ImageNet) vs ours ({ex.preset.name}, {ex.root.name})")


if __name__ == "__main__":
    main(table5)
