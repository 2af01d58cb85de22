"""Table 6: fusion of several nets (soft-max posteriors averaged), on the images of Table 5."""


import pandas as pd

from vgg.experiment import Experiment, main, members
from vgg.plots import ours_vs_paper
from vgg.results import paper_table, with_errors, write_table


def fused_errors(ex: Experiment, models: str, method: str) -> tuple[float, float]:
    return ex.errors(*ex.fused_posteriors(models, method))


def table6(args) -> None:
    ex = Experiment(args)
    rows = []
    for r in paper_table("table6_fusion").itertuples():
        models, d_jitter = r.models, "all layers"
        if ex.preset.plan_controls and len(members(models)) == 7:  # the submission's D jitter: FC layers only
            models, d_jitter = models.replace("D/256-512/", "D/256-512-fc/"), "fc only"
        e1, e5 = fused_errors(ex, models, r.method)
        scales = sorted({q for _, qs in members(models) for q in qs})
        rows.append(with_errors({"models": models, "method": r.method, "nets": len(members(models))},
                                e1, e5, r.top1_val_err, r.top5_val_err)
                    | {"conv5_maps": ";".join(dict.fromkeys(ex.conv5_map(q) for q in scales)),
                       "d_jitter": d_jitter if "D/256-512" in models else ""})
    df = pd.DataFrame(rows)
    df["paper_top5_test_err"] = paper_table("table6_fusion")["top5_test_err"]
    write_table(df, ex.out("results", "table6.csv"), ex.provenance_multi_crop())
    labels = ["7 nets (ILSVRC)", "D+E jitter dense", "D+E jitter multi-crop", "D+E jitter mc & dense"]
    ours_vs_paper(df, labels, ex.out("figures", "table6.png"),
                  f"Table 6, ConvNet fusion: paper (ImageNet) vs ours ({ex.preset.name}, {ex.root.name})")


if __name__ == "__main__":
    main(table6)
