"""Table 7: our best single net and best fusion beside the paper's comparison rows
(the literature rows are copied from the paper and marked as such)."""
import importlib.util
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from vgg.experiment import TABLE5_SCALES, Experiment, main, members  # noqa: E402
from vgg.plots import ours_vs_paper  # noqa: E402
from vgg.results import paper_table, with_errors, write_table  # noqa: E402

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("table6", HERE / "06_table6_fusion.py")
table6 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(table6)


def table7(args) -> None:
    ex = Experiment(args)
    paper = paper_table("table7_state_of_the_art")
    singles = {(c, m): ex.errors(*ex.posteriors(f"{c}_S256-512", m, TABLE5_SCALES, multi_crop_subset=True))
               for c in ("D", "E") for m in ("dense", "multi-crop", "multi-crop & dense")}
    (cfg, method), best1 = min(singles.items(), key=lambda kv: kv[1][0])
    fusions = {(r.models, r.method): table6.fused_errors(ex, r.models, r.method)
               for r in paper_table("table6_fusion").itertuples()}
    (models, fmethod), bestf = min(fusions.items(), key=lambda kv: kv[1][0])
    ours = [("VGG (1 net, multi-crop & dense eval.)", f"ours: best single net {cfg}/256-512, {method}", best1),
            ("VGG (2 nets, multi-crop & dense eval.)",
             f"ours: best fusion {models} ({fmethod}, {len(members(models))} nets)", bestf)]
    rows = []
    for paper_method, label, (e1, e5) in ours:
        p = paper.set_index("method").loc[paper_method]
        rows.append(with_errors({"method": label, "source": f"ours ({ex.preset.name}, {ex.root.name}) "
                                 f"vs paper row '{paper_method}'"}, e1, e5, p.top1_val_err, p.top5_val_err))
    for r in paper.itertuples():
        rows.append({"method": r.method, "source": "paper (copied from Table 7; ImageNet)",
                     "ours_top1_err": None, "paper_top1_err": r.top1_val_err, "diff_top1": None,
                     "ours_top5_err": None, "paper_top5_err": r.top5_val_err, "diff_top5": None,
                     "paper_top5_test_err": r.top5_test_err})
    df = pd.DataFrame(rows)
    write_table(df, ex.out("results", "table7.csv"), ex.provenance_multi_crop())
    labels = [f"best single net:\n{cfg} S=256-512, {method}",
              f"best fusion:\n{len(members(models))} nets, {fmethod}"]
    ours_vs_paper(df.iloc[:2], labels, ex.out("figures", "table7.png"),
                  f"Table 7: our best single net and fusion ({ex.preset.name}) beside the paper's VGG rows")


if __name__ == "__main__":
    main(table7)
