"""Tables 3-6 of several presets side by side (top-1 error): the paper's value, then each preset's,
row by row (rows matched on config, scales, method or fused models). Writes
results/presets_side_by_side.md, the source of the README's Results tables.
Proxy numbers are not ImageNet numbers: the columns share rows, not tasks."""
from pathlib import Path

import pandas as pd

from vgg.errors import UserError
from vgg.experiment import main
from vgg.io import atomic_write_text

KEYS = {3: ["config", "train_scale", "test_scale", "method"], 4: ["config", "train_scale", "test_scales"],
        5: ["config", "train_scale", "method", "test_scales"], 6: ["models", "method"]}
TITLES = {3: "Table 3: single test scale", 4: "Table 4: multiple test scales (dense)",
          5: "Table 5: dense vs multi-crop (S=256-512)", 6: "Table 6: fusion"}


def label(n: int, r) -> str:
    if n == 3:
        return f"{r.config} S={r.train_scale} Q={r.test_scale} {r.method}"
    if n == 4:
        return f"{r.config} S={r.train_scale} Q={r.test_scales}"
    if n == 5:
        return f"{r.config} {r.method} Q={r.test_scales}"
    return f"{r.models} ({r.method})"


def side_by_side(results: Path, presets: list[str], n: int) -> pd.DataFrame:
    frames = []
    for p in presets:
        path = results / p / f"table{n}.csv"
        if not path.exists():
            raise UserError(f"{path} is missing: run `make table{n} PRESET={p}`")
        t = pd.read_csv(path, dtype=str)
        frames.append(t[KEYS[n] + ["paper_top1_err", "ours_top1_err"]].rename(columns={"ours_top1_err": p}))
    out = frames[0]
    for f in frames[1:]:
        out = out.merge(f.drop(columns="paper_top1_err"), on=KEYS[n], how="outer", sort=False)
    out.insert(0, "row", [label(n, r) for r in out.itertuples()])
    return out[["row", "paper_top1_err", *presets]].rename(columns={"paper_top1_err": "paper"}).fillna("")


def compare_presets(args) -> None:
    presets = args.presets.split(",")
    parts = ["# Tables 3-6 side by side (top-1 error, %)\n",
             f"Presets: {', '.join(presets)}. **Proxy numbers are not ImageNet numbers**: every column but "
             "the paper's is a small proxy task; compare orderings, not values. Made by "
             "`experiments/studies/compare_presets.py` from results/<preset>/tableN.csv.\n"]
    for n in (3, 4, 5, 6):
        df = side_by_side(Path(args.results), presets, n)
        head = "| " + " | ".join(df.columns) + " |\n|" + " --- |" * len(df.columns) + "\n"
        rows = "".join("| " + " | ".join(map(str, r)) + " |\n" for r in df.itertuples(index=False))
        parts.append(f"## {TITLES[n]}\n\n{head}{rows}")
    atomic_write_text(Path(args.results) / "presets_side_by_side.md", "\n".join(parts))
    print("\n".join(parts))


def extra(p) -> None:
    p.add_argument("--presets", default="imagenette,proxy", help="comma-separated (default imagenette,proxy)")


if __name__ == "__main__":
    main(compare_presets, needs_data=False, extra=extra)
