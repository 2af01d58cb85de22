"""Which of the paper's findings the results reproduce, tested paired on the same images.

Each claim of vgg/paper/findings.csv (quoted with its section; type *better*, *no better* or
*tie*) compares two rows of results/<preset>/tableN.csv: two nets or two methods scored on
the same validation images.  From the posteriors the chain cached (nothing is evaluated
again) we take each image's top-1 correctness under a and b, and report McNemar's exact
test on the discordant images and a 95% paired bootstrap interval of error(a) - error(b)
(10,000 resamples, seed 0).  Verdict (vgg.stats.verdict): *reproduced* when the interval
lies on the paper's side, *opposite* when on the other side, *inconclusive* otherwise; a tie
is reproduced when the whole interval lies within +-2 points.

The per-image correctness of every compared row is saved beside the table
(per_image_top1.npz), so `--from-saved` recomputes the verdicts without checkpoints or data.
The old rule (a gap beyond two unpaired standard errors) is kept as a column, two_se_verdict,
to show what the pairing changes.

Caveat: a comparison is marked where either row rests on dense evaluation off the training
geometry (conv5 maps unlike training's, or sizes where pools floor: the CIFAR-10 proxy) or where
results/<preset>/dense_geometry.csv measured dense evaluation more than 3 points worse than a
centre crop for a net at a Q the row uses (a weakly trained net off its training scale).

Seed variance: where experiments/seeds.py has trained both nets of a Table 3 depth claim with
several seeds (seeds_top1.npz), the difference in every seed is listed (seed_diffs, seed_sd_diff),
with the seeds' mean difference and its 95% interval (seed_mean_diff / seed_ci_low / seed_ci_high:
training noise over the seeds plus the images' sampling noise, vgg.seeds.SeedCheck.interval) and
what that interval alone says (seed_level_verdict).
The verdict (vgg.seeds.seeded_verdict): with two seeds, seed 0's paired verdict unless the seeds
fall on both sides of the claim (*inconclusive (flips between seeds)*: the t multiplier is 12.7 and
the interval decides almost nothing); with three or more, the seed-level verdict, tagged
*(seed level)*. seed0_verdict keeps the single-run paired verdict.
"""
import sys
from importlib import resources
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from vgg.errors import UserError  # noqa: E402
from vgg.experiment import DENSE_GAP_LIMIT, Experiment, main, members, net_name, scales_of  # noqa: E402
from vgg.model import feature_size  # noqa: E402
from vgg.protocol import get_preset  # noqa: E402
from vgg.results import findings_markdown, write_table  # noqa: E402
from vgg.seeds import (  # noqa: E402
    PER_IMAGE_FILE,
    SEEDS_FILE,
    is_seed_row,
    load_correctness,
    load_per_image,
    save_per_image,
    seed_check,
    seeded_verdict,
    stale_seed_runs,
)
from vgg.stats import TIE_TOLERANCE, compare, correct_top1, unpaired_two_se, verdict  # noqa: E402

SAVED = PER_IMAGE_FILE


def claims() -> pd.DataFrame:
    with resources.files("vgg.paper").joinpath("findings.csv").open() as f:
        return pd.read_csv(f)


def pick(tables: dict[str, pd.DataFrame], table: str, query: str) -> pd.Series:
    rows = tables[table].query(query)
    if len(rows) != 1:
        raise UserError(f"findings.csv: {table} rows where {query!r}: {len(rows)}, expected exactly one")
    return rows.iloc[0]


def row_posteriors(ex: Experiment, table: str, row: pd.Series):
    """The cached posteriors behind one table row: (posteriors, labels)."""
    if table not in ("table3", "table4", "table5", "table6"):
        raise UserError(f"findings.csv names {table}: claims compare rows of tables 3-6")
    if table == "table6":
        return ex.fused_posteriors(row.models, row.method)
    (net, scales), = row_nets(table, row)
    return ex.posteriors(net, row.method, scales, multi_crop_subset=table == "table5")


def row_scales(table: str, row: pd.Series) -> list[int]:
    """The test scales Q (paper pixels) behind one table row."""
    if table == "table3":
        return [int(row.test_scale)]
    if table == "table6":
        return sorted({q for _, qs in members(row.models) for q in qs})
    return scales_of(row.test_scales)


def dense_off_geometry(preset, method: str, scales_paper: list[int]) -> bool:
    """Dense evaluation on conv5 maps unlike training's where that is not the paper's situation:
    training maps of under 4x4 (every position touches the zero padding: the CIFAR-10 proxy), or
    a test size that is not a multiple of 32 px (a max-pool floors, so the dense window is off-centre).
    The paper (conv5 14x14, every Q a multiple of 32) and the imagenette preset are never flagged."""
    if "dense" not in method:
        return False
    train_side = feature_size(preset.crop, 4)
    for q in scales_paper:
        px = preset.px(q)
        if feature_size(px, 4) != train_side and (train_side < 4 or px % 32):
            return True
    return False


CHANCE_MARGIN = 2.0  # points


def row_nets(table: str, row: pd.Series) -> list[tuple[str, list[int]]]:
    """The nets behind one table row and the test scales Q (paper pixels) each is evaluated at."""
    if table == "table6":
        return members(row.models)
    train_scale = "256-512" if table == "table5" else row.train_scale
    return [(net_name(row.config, train_scale), row_scales(table, row))]


def measured_dense_penalty(geometry: pd.DataFrame | None, table: str, row: pd.Series) -> list[str]:
    """Where dense_geometry.csv measured dense evaluation more than DENSE_GAP_LIMIT points worse
    than a centre crop for a net and Q this row's dense posteriors use: 'D_S256 Q=512 +11.8'."""
    if geometry is None or "dense" not in row.method:
        return []
    out = []
    for net, qs in row_nets(table, row):
        for q in qs:
            g = geometry[(geometry.net == net) & (geometry.test_scale == q) & geometry.tested_in_tables]
            if len(g) and g.dense_minus_crop.iloc[0] > DENSE_GAP_LIMIT:
                out.append(f"{net} Q={q} {g.dense_minus_crop.iloc[0]:+.1f}")
    return out


def stale_geometry_nets(geometry: pd.DataFrame, table3: pd.DataFrame) -> list[str]:
    """Nets whose dense error at Q = S in dense_geometry.csv is not Table 3's dense error for the
    same net and Q: the chain was retrained after dense_geometry.py ran (another schedule or
    machine), so its measured penalties belong to other nets and must not annotate these."""
    stale = []
    for row in table3[table3.method == "dense"].itertuples():
        net = net_name(row.config, row.train_scale)
        g = geometry[(geometry.net == net) & (geometry.test_scale.astype(str) == str(row.test_scale))
                     & geometry.tested_in_tables]
        if len(g) and abs(g.dense_top1_err.iloc[0] - row.ours_top1_err) > 0.005:
            stale.append(net)
    return sorted(set(stale))


def at_chance(top1_err: float, classes: int | None) -> bool:
    """A net within CHANCE_MARGIN points of chance (1 - 1/classes) did not train: a comparison with
    it tests nothing the paper claims, whichever way it comes out."""
    return classes is not None and top1_err >= 100 * (1 - 1 / classes) - CHANCE_MARGIN


def caveat(preset, geometry, sides, train_map: str) -> str:
    """Why a comparison may not test the paper's effect: dense evaluation off the training
    geometry (conv5 maps unlike training's, or pools that floor), or a dense penalty
    dense_geometry.csv measured at the Q it uses."""
    notes = []
    if any(dense_off_geometry(preset, row.method, row_scales(t, row)) for t, row in sides):
        notes.append(f"dense evaluation off the training geometry (conv5 {train_map})")
    penalty = [x for t, row in sides for x in measured_dense_penalty(geometry, t, row)]
    if penalty:
        notes.append(f"dense worse than centre crop by over {DENSE_GAP_LIMIT:g} points at "
                     f"{', '.join(dict.fromkeys(penalty))}")
    return "; ".join(notes) + (" (dense_geometry.csv)" if notes else "")


def two_se_verdict(claim_type: str, diff: float, two_se: float) -> str:
    """The rule this replaces: a gap counts beyond two unpaired standard errors."""
    gain = -diff
    if claim_type == "tie":
        return "reproduced" if abs(diff) <= two_se else "not reproduced"
    if claim_type == "no better":
        return "reproduced" if gain <= two_se else "not reproduced"
    return "reproduced" if gain > two_se else "not reproduced" if gain < -two_se else "within noise"


def side_key(table: str, query: str) -> str:
    return f"{table}: {query}"


def correctness(args, tables, wanted: list[tuple[str, str]], folder: Path) -> tuple[dict[str, np.ndarray], int | None]:
    """Per-image top-1 correctness of each (table, query) row, from the cached posteriors or saved,
    and the number of classes (None from a file saved before it was recorded)."""
    if args.from_saved:
        saved, classes = load_per_image(folder)
        if not saved:
            raise UserError(f"{folder / SAVED} is missing: run `make findings PRESET={args.preset}` with the "
                            "checkpoints (or posteriors) present once")
        missing = [side_key(*w) for w in wanted if side_key(*w) not in saved]
        if missing:
            raise UserError(f"{folder / SAVED} lacks {missing[0]!r}: rerun `make findings PRESET={args.preset}`")
        return saved, classes
    ex = Experiment(args)
    out = {}
    for table, query in dict.fromkeys(wanted):
        row = pick(tables, table, query)
        p, y = row_posteriors(ex, table, row)
        c = correct_top1(p, y)
        classes = p.shape[1]
        if abs(100 * (1 - c.mean()) - row.ours_top1_err) > 0.006:
            raise UserError(f"{table} row {query!r} says {row.ours_top1_err}% but its cached posteriors give "
                            f"{100 * (1 - c.mean()):.2f}%: rerun `make {table} PRESET={args.preset}`")
        out[side_key(table, query)] = c
    save_per_image(folder, out, classes)
    return out, classes


def findings(args) -> None:
    folder = Path(args.results) / args.preset
    tables = {}
    for n in (3, 4, 5, 6):
        path = folder / f"table{n}.csv"
        if not path.exists():
            raise UserError(f"{path} is missing: run `make table{n} PRESET={args.preset}` first")
        tables[f"table{n}"] = pd.read_csv(path, dtype={"train_scale": str, "test_scale": str,
                                                       "test_scales": str})
    preset = get_preset(args.preset)
    side = feature_size(preset.crop, 4)
    train_map = f"{side}x{side}"
    cs = claims()
    wanted = [(c.table_a, c.row_a) for c in cs.itertuples()] + [(c.table_b, c.row_b) for c in cs.itertuples()]
    correct, classes = correctness(args, tables, wanted, folder)
    by_seed = load_correctness(folder)  # {} unless experiments/seeds.py ran
    seed0_now = {pick(tables, t, q).config: correct[side_key(t, q)] for t, q in wanted
                 if t == "table3" and is_seed_row(pick(tables, t, q))}
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
    rows = []
    for c in cs.itertuples():
        a, b = pick(tables, c.table_a, c.row_a), pick(tables, c.table_b, c.row_b)
        ca, cb = correct[side_key(c.table_a, c.row_a)], correct[side_key(c.table_b, c.row_b)]
        r = compare(ca, cb)
        two_se = unpaired_two_se(ca, cb)
        paper_diff = (round(a.paper_top1_err - b.paper_top1_err, 2) if pd.notna(a.paper_top1_err)
                      and pd.notna(b.paper_top1_err) else None)
        paired = verdict(c.claim_type, r.ci_low, r.ci_high)
        untrained = [f"{getattr(row, 'config', 'fusion')} at chance ({err:.2f}%): it did not train"
                     for row, err in ((a, r.ours_a), (b, r.ours_b)) if at_chance(err, classes)]
        seeds = (seed_check(by_seed, a.config, b.config, c.claim_type, TIE_TOLERANCE)
                 if c.table_a == c.table_b == "table3" and is_seed_row(a) and is_seed_row(b) else None)
        rows.append({"claim": c.claim, "claim_type": c.claim_type, "paper_section": c.paper_section,
                     "paper_a": a.paper_top1_err, "paper_b": b.paper_top1_err, "paper_diff": paper_diff,
                     "ours_a": round(r.ours_a, 2), "ours_b": round(r.ours_b, 2), "diff": round(r.diff, 2),
                     "ci_low": round(r.ci_low, 2), "ci_high": round(r.ci_high, 2),
                     "p_value": float(f"{r.p_value:.3g}"), "discordant": r.discordant, "images": len(ca),
                     "verdict": ("inconclusive (a net at chance)" if untrained
                                 else seeded_verdict(paired, seeds)),
                     "seed0_verdict": paired,
                     "seeds": "" if seeds is None else ";".join(map(str, seeds.seeds)),
                     "seed_diffs": "" if seeds is None else seeds.text,
                     "seed_sd_diff": None if seeds is None else seeds.sd,
                     **seed_level(seeds),
                     "two_se": round(two_se, 2), "two_se_verdict": two_se_verdict(c.claim_type, r.diff, two_se),
                     "caveat": "; ".join(filter(None, untrained + [
                         caveat(preset, geometry, ((c.table_a, a), (c.table_b, b)), train_map)])),
                     "quote": c.quote})
    df = pd.DataFrame(rows)
    write_table(df, folder / "findings.csv", {"preset": args.preset,
                                              "tie_tolerance_points": TIE_TOLERANCE,
                                              "bootstrap": "paired, 10000 resamples, seed 0, 95% percentile"})
    print(findings_markdown(df))


def seed_level(seeds) -> dict:
    """The seed-level evidence where the seed runs trained both nets: the mean difference over
    the seeds, its 95% interval (training and image noise) and the verdict that interval gives
    (the finding's verdict from three seeds on: see the module's docstring)."""
    if seeds is None:
        return {"seed_mean_diff": None, "seed_ci_low": None, "seed_ci_high": None, "seed_level_verdict": ""}
    mean, low, high = seeds.interval()
    return {"seed_mean_diff": mean, "seed_ci_low": low, "seed_ci_high": high,
            "seed_level_verdict": seeds.level_verdict}


def extra(p) -> None:
    p.add_argument("--from-saved", action="store_true",
                   help=f"use results/<preset>/{SAVED} instead of the checkpoints' cached posteriors")


if __name__ == "__main__":
    main(findings, needs_data=True, extra=extra)
