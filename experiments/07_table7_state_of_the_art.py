"""Table 7: the paper's VGG rows with ours beside each (the same net and method, from our Tables 5
and 6), our best single net and best fusion beside the paper's value for the same net and method,
and the literature rows copied from the paper. Reads results/<preset>/table5.csv and table6.csv:
nothing is evaluated again."""
from pathlib import Path

import pandas as pd

from vgg.errors import UserError
from vgg.experiment import main
from vgg.plots import ours_vs_paper
from vgg.results import paper_table, write_table

#: The paper's VGG rows of Table 7 and the row of our Table 5 / 6 with the same nets and method.
SAME_AS = {"VGG (1 net, multi-crop & dense eval.)": ("table5", "config == 'E' and method == 'multi-crop & dense'"),
           "VGG (2 nets, multi-crop & dense eval.)": ("table6", "nets == 2 and method == 'multi-crop & dense'"),
           "VGG (ILSVRC submission, 7 nets, dense eval.)": ("table6", "nets == 7 and method == 'dense'")}
#: Columns that say how a table was made: carried from Table 5 (write_table adds environment and commit).
MADE_BY = ["preset", "dataset", "crop_px", "width", "epochs_scratch/from_A/finetune", "seed", "val_images"]


def label(table: str, row: pd.Series) -> str:
    if table == "table5":
        return f"{row.config} S=256-512, {row.method}, Q={row.test_scales.replace(';', ',')}"
    return f"{row.nets}-net fusion, {row.method}" + (" (D + E jitter)" if row.nets == 2 else "")


def row(paper_row: str, ours: str, r: pd.Series) -> dict:
    return {"paper_row": paper_row, "ours": ours, "ours_top1_err": r.ours_top1_err, "paper_top1_err": r.paper_top1_err,
            "ours_top5_err": r.ours_top5_err,
            "paper_top5_err": r.paper_top5_err}


def table7(args) -> None:
    folder = Path(args.results) / args.preset
    t = {}
    for name in ("table5", "table6"):
        path = folder / f"{name}.csv"
        if not path.exists():
            raise UserError(f"{path} is missing: run `make {name} PRESET={args.preset}` first")
        t[name] = pd.read_csv(path, dtype={"test_scales": str})
    best1 = t["table5"].loc[t["table5"].ours_top1_err.idxmin()]
    bestf = t["table6"].loc[t["table6"].ours_top1_err.idxmin()]
    rows = [row(f"{label('table5', best1)} (Table 5)", f"our best single net: {label('table5', best1)}", best1),
            row(f"{label('table6', bestf)} (Table 6)", f"our best fusion: {label('table6', bestf)}", bestf)]
    paper = paper_table("table7_state_of_the_art")
    for p in paper.itertuples():
        if p.method in SAME_AS:
            table, query = SAME_AS[p.method]
            r = t[table].query(query).iloc[0]
            rows.append({**row(p.method, f"ours, same nets and method: {label(table, r)}", r),
                         "paper_top1_err": p.top1_val_err, "paper_top5_err": p.top5_val_err,
                         "paper_top5_test_err": p.top5_test_err})
        else:
            rows.append({"paper_row": p.method, "ours": "", "paper_top1_err": p.top1_val_err,
                         "paper_top5_err": p.top5_val_err, "paper_top5_test_err": p.top5_test_err})
    df = pd.DataFrame(rows)
    made_by = {k: t["table5"][k].iloc[0] for k in MADE_BY if k in t["table5"]}
    write_table(df, folder / "table7.csv", {**made_by, "source": "ours: results tables 5 and 6 (the same images); "
                                            "paper: Tables 5-7 (ImageNet; top-5 over 1000 classes)"})
    ours_vs_paper(df.iloc[:2], [f"best single net:\n{label('table5', best1)}",
                                f"best fusion:\n{label('table6', bestf)}"],
                  Path(args.figures) / args.preset / "table7.png",
                  f"Table 7: our best single net and fusion ({args.preset}) beside the paper's same rows")


if __name__ == "__main__":
    main(table7)  # accepts the common flags (--data, --runs) and needs neither
