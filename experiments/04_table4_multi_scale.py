"""Table 4: multiple test scales (dense evaluation, posteriors averaged over Q)."""


import pandas as pd

from vgg.experiment import Experiment, main, net_name, scales_of
from vgg.plots import ours_vs_paper
from vgg.results import paper_table, with_errors, write_table


def table4(args) -> None:
    ex = Experiment(args)
    rows = []
    for r in paper_table("table4_multi_scale").itertuples():
        qs = scales_of(r.test_scales)
        e1, e5 = ex.errors(*ex.posteriors(net_name(r.config, r.train_scale), "dense", qs))
        rows.append(with_errors({"config": r.config, "train_scale": r.train_scale, "test_scales": r.test_scales,
                                 "method": "dense", "test_scales_px": ";".join(str(ex.preset.px(q)) for q in qs)},
                                e1, e5, r.top1_val_err, r.top5_val_err)
                    | {"conv5_maps": ";".join(ex.conv5_map(q) for q in qs)})
    if ex.preset.plan_controls:  # the analysis plan's single-scale rows for Sect. 4.2's two claims
        for config, train_scale, q in (("D", "256", 384), ("D", "256", 512), ("D", "256-512", 512)):
            e1, e5 = ex.errors(*ex.posteriors(net_name(config, train_scale), "dense", [q]))
            rows.append(with_errors({"config": config, "train_scale": train_scale, "test_scales": str(q),
                                     "method": "dense", "test_scales_px": str(ex.preset.px(q))}, e1, e5, None, None)
                        | {"conv5_maps": ex.conv5_map(q)})
    df = pd.DataFrame(rows)
    write_table(df, ex.out("results", "table4.csv"), ex.provenance())
    ours_vs_paper(df, [f"{r.config} S={r.train_scale} Q={r.test_scales}" for r in df.itertuples()],
                  ex.out("figures", "table4.png"),
                  f"Table 4, multiple test scales: paper (ImageNet) vs ours ({ex.preset.name}, {ex.root.name})")


if __name__ == "__main__":
    main(table4)
