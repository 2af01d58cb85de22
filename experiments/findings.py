"""Which of the paper's claims (vgg/paper/findings.csv) the results reproduce: results/<preset>/findings.csv
(one verdict per claim and the interval that decided it) and findings_evidence.csv (every test's numbers).
The rules are vgg.findings'.

The per-image top-1 correctness of each compared row comes from the posteriors the chain cached
(nothing is trained or evaluated again) and is saved beside the tables (per_image_top1.npz), so
`--from-saved` recomputes the verdicts without checkpoints or data; rows whose correctness was never
saved are then tested unpaired, from the tables' error rates.
"""
import sys
from pathlib import Path

import pandas as pd

from vgg.errors import UserError
from vgg.experiment import Experiment, main
from vgg.findings import (
    CLAIM_TABLES,
    MissingRow,
    claims,
    counts,
    evaluate_claims,
    pick,
    read_tables,
    side_key,
    stale_geometry_nets,
)
from vgg.plan import PLAN_VERSION, plan_commit
from vgg.protocol import get_preset
from vgg.results import findings_markdown, write_table
from vgg.seeds import (
    PER_IMAGE_FILE,
    SEEDS_FILE,
    is_seed_row,
    load_correctness,
    load_per_image,
    save_per_image,
    stale_seed_runs,
)
from vgg.stats import TIE_TOLERANCE, correct_top1


def correctness(args, tables, wanted: list[tuple[str, str]], folder: Path) -> tuple[dict, int | None]:
    """Per-image top-1 correctness of each (table, query) row, from the cached posteriors or saved,
    and the number of classes (None from a file saved before it was recorded)."""
    if args.from_saved:
        saved, classes = load_per_image(folder)
        if not saved:
            raise UserError(f"{folder / PER_IMAGE_FILE} is missing: run `make findings PRESET={args.preset}` with "
                            "the checkpoints (or posteriors) present once")
        saved = by_row(saved, tables, wanted)
        missing = list(dict.fromkeys(side_key(*w) for w in wanted if side_key(*w) not in saved))
        if missing:
            print(f"note: {len(missing)} rows have no saved per-image correctness; their claims are tested "
                  f"unpaired (e.g. {missing[0]!r})", file=sys.stderr)
        return saved, classes
    ex = Experiment(args)
    out, classes = {}, None
    for table, query in dict.fromkeys(wanted):
        try:
            row = pick(tables, table, query)
        except MissingRow:  # a row only the plan's protocol makes: its claim is not tested
            continue
        p, y = ex.row_posteriors(table, row)
        c = correct_top1(p, y)
        classes = p.shape[1]
        if abs(100 * (1 - c.mean()) - row.ours_top1_err) > 0.006:
            raise UserError(f"{table} row {query!r} says {row.ours_top1_err}% but its cached posteriors give "
                            f"{100 * (1 - c.mean()):.2f}%: rerun `make {table} PRESET={args.preset}`")
        out[side_key(table, query)] = c
    save_per_image(folder, out, classes)
    return out, classes


def by_row(saved: dict, tables: dict[str, pd.DataFrame], wanted: list[tuple[str, str]]) -> dict:
    """``saved`` with every wanted (table, query) that selects the same row as a saved key's query
    added under its own key: a claim's query reworded (e.g. naming its test scales) still finds the
    correctness saved for its row."""
    rows = {}
    for key, correct in saved.items():
        table, _, query = key.partition(": ")
        try:
            rows[(table, pick(tables, table, query).name)] = correct
        except UserError:
            continue
    out = dict(saved)
    for table, query in wanted:
        key = side_key(table, query)
        if key in out:
            continue
        try:
            row = pick(tables, table, query).name
        except UserError:
            continue
        if (table, row) in rows:
            out[key] = rows[(table, row)]
    return out


def image_counts(correct: dict, tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Images behind each table's rows: a saved row of that table, else the table's val_images."""
    n = {}
    for t in CLAIM_TABLES:
        saved = [len(v) for k, v in correct.items() if k.startswith(f"{t}: ")]
        n[t] = saved[0] if saved else int(tables[t].val_images.iloc[0])
    return n


def findings(args) -> None:
    folder = Path(args.results) / args.preset
    tables = read_tables(folder)
    preset = get_preset(args.preset)
    cs = claims()
    wanted = [(c.table_a, c.row_a) for c in cs.itertuples()] + [(c.table_b, c.row_b) for c in cs.itertuples()]
    correct, classes = correctness(args, tables, wanted, folder)
    by_seed = load_correctness(folder)  # {} unless experiments/studies/seeds.py ran
    seed0_now = {pick(tables, t, q).config: correct[side_key(t, q)] for t, q in wanted
                 if t == "table3" and side_key(t, q) in correct and is_seed_row(pick(tables, t, q))}  # all picked
    stale = stale_seed_runs(by_seed, seed0_now)
    if stale:
        print(f"warning: {folder / SEEDS_FILE} was made from another chain (seed 0 of {', '.join(stale)} is not "
              f"the net Table 3 has now); the seed spread is not used (rerun `make seeds PRESET={args.preset}`)",
              file=sys.stderr)
        by_seed = {}
    geometry_csv = folder / "dense_geometry.csv"  # the measured dense penalty, where made
    geometry = pd.read_csv(geometry_csv) if geometry_csv.exists() else None
    if geometry is not None and not {"tested_in_tables", "dense_minus_crop"} <= set(geometry.columns):
        print(f"warning: {geometry_csv} predates the measured-penalty columns; its penalties are not "
              f"used (rerun `make dense_geometry PRESET={args.preset}`, then `make findings`)", file=sys.stderr)
        geometry = None
    stale_nets = stale_geometry_nets(geometry, tables["table3"]) if geometry is not None else []
    if stale_nets:
        print(f"warning: {geometry_csv} was made from another chain (its dense error of {', '.join(stale_nets)} "
              f"is not Table 3's); its penalties are not used (rerun `make dense_geometry PRESET={args.preset}`, "
              "then `make findings`)", file=sys.stderr)
        geometry = None
    df, evidence = evaluate_claims(cs, tables, correct, image_counts(correct, tables), classes, by_seed, preset,
                                   geometry)
    stamp = {"preset": args.preset, "plan_version": PLAN_VERSION, "plan_commit": plan_commit(),
             "before_plan_tie_tolerance_points": TIE_TOLERANCE}
    write_table(df, folder / "findings.csv", stamp)
    write_table(evidence, folder / "findings_evidence.csv",
                {**stamp, "bootstrap": "paired, 10000 resamples, seed 0, 95% percentile"})
    print(findings_markdown(df, evidence))
    print(counts(df), file=sys.stderr)


def extra(p) -> None:
    p.add_argument("--from-saved", action="store_true",
                   help=f"use results/<preset>/{PER_IMAGE_FILE} instead of the checkpoints' cached posteriors")


if __name__ == "__main__":
    main(findings, needs_data=True, extra=extra)
