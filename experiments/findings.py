"""Which of the paper's findings the results reproduce: each claim of vgg/paper/findings.csv
(net/method a has lower top-1 error than b, or 'not_lower': a is no better than b) checked on
results/<preset>/tableN.csv against the noise of the validation set.

A gap counts when it exceeds two standard errors of the difference of two error rates on
the N validation images (binomial, treated as independent: conservative for paired runs).
Writes results/<preset>/findings.csv and prints it as a Markdown table (for the README).
"""
import sys
from importlib import resources
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from vgg.errors import UserError  # noqa: E402
from vgg.experiment import main  # noqa: E402
from vgg.metrics import two_standard_errors  # noqa: E402
from vgg.model import feature_size  # noqa: E402
from vgg.protocol import get_preset  # noqa: E402
from vgg.results import write_table  # noqa: E402


def claims() -> pd.DataFrame:
    with resources.files("vgg.paper").joinpath("findings.csv").open() as f:
        return pd.read_csv(f)


def pick(tables: dict[str, pd.DataFrame], table: str, query: str) -> pd.Series:
    rows = tables[table].query(query)
    if len(rows) != 1:
        raise UserError(f"findings.csv: {table} rows where {query!r}: {len(rows)}, expected exactly one")
    return rows.iloc[0]


def dense_off_geometry(row: pd.Series, train_map: str) -> bool:
    """Dense evaluation on a conv5 map unlike the one training crops give (see dense_geometry.py)."""
    return "dense" in row["method"] and any(m != train_map for m in str(row["conv5_maps"]).split(";"))


def verdict(claim: str, gain: float, two_se: float) -> str:
    """gain = b's error minus a's (positive: a is better)."""
    if claim == "not_lower":
        return "reproduced" if gain <= two_se else "not reproduced"
    if gain > two_se:
        return "reproduced"
    return "not reproduced" if gain < -two_se else "within noise"


def findings(args) -> None:
    folder = Path(args.results) / args.preset
    tables = {}
    for n in (3, 4, 5, 6):
        path = folder / f"table{n}.csv"
        if not path.exists():
            raise UserError(f"{path} is missing: run `make table{n} PRESET={args.preset}` first")
        tables[f"table{n}"] = pd.read_csv(path, dtype={"train_scale": str, "test_scale": str})
    side = feature_size(get_preset(args.preset).crop, 4)
    train_map = f"{side}x{side}"
    rows = []
    for c in claims().itertuples():
        a, b = pick(tables, c.table_a, c.row_a), pick(tables, c.table_b, c.row_b)
        n_val = int(a["val_images"])
        p1, p2 = a.ours_top1_err / 100, b.ours_top1_err / 100
        two_se = round(two_standard_errors(n_val, p1, p2), 2)
        gain = round(b.ours_top1_err - a.ours_top1_err, 2)
        rows.append({"finding": c.finding, "paper_a": a.paper_top1_err, "paper_b": b.paper_top1_err,
                     "paper_gain": round(b.paper_top1_err - a.paper_top1_err, 2) if pd.notna(a.paper_top1_err)
                     and pd.notna(b.paper_top1_err) else None,
                     "ours_a": a.ours_top1_err, "ours_b": b.ours_top1_err, "ours_gain": gain,
                     "two_se": two_se, "verdict": verdict(c.claim, gain, two_se),
                     "caveat": "dense evaluation on conv5 maps unlike training's "
                               f"{train_map} (dense_geometry.csv)" if dense_off_geometry(a, train_map)
                     or dense_off_geometry(b, train_map) else ""})
    df = pd.DataFrame(rows)
    write_table(df, folder / "findings.csv", {"preset": args.preset, "val_images": n_val})
    print("\n| finding | paper top-1 a / b | ours a / b | ours gain (2 SE) | verdict |")
    print("| --- | --- | --- | --- | --- |")
    for r in df.itertuples():
        paper = "- / -" if pd.isna(r.paper_a) else f"{r.paper_a:g} / {r.paper_b:g}"
        if pd.isna(r.paper_a) and r.finding.startswith("B-5x5"):
            paper = "+7 (difference only)"
        print(f"| {r.finding} | {paper} | {r.ours_a:.2f} / {r.ours_b:.2f} | {r.ours_gain:+.2f} ({r.two_se:.2f}) "
              f"| {r.verdict}{' (dense geometry)' if r.caveat else ''} |")


if __name__ == "__main__":
    main(findings, needs_data=False)
