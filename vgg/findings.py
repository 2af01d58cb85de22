"""Which of the paper's claims the results reproduce: the rows each claim compares and its verdict.

A claim of ``vgg/paper/findings.csv`` (quoted with its section; type *better*, *no better* or *tie*)
compares two rows of ``results/<preset>/tableN.csv``: two nets or two methods scored on the same
validation images. Its verdict follows the analysis plan (``vgg.plan``, docs/analysis_plan.md): one
test at the highest level of evidence there is -- three seeds of both rows (the seeds' mean
difference, training and image noise), else per image on one seed, else unpaired from the two
error rates -- against the plan's equivalence margin, then the Benjamini-Hochberg correction over
the preset's claims. A claim whose rows a preset lacks is *not tested*; a net at chance makes its
claims *inconclusive (a net at chance)*.

``findings.csv`` holds one verdict per claim with its test's numbers, plan version 1's verdict and
the rule before the plan (``verdict_before_plan``: the first of seed-level t-interval, paired
bootstrap, unpaired interval, with a 2-point tie band); ``findings_evidence.csv`` every other
test's numbers (McNemar p, the paired bootstrap, the seeds' differences).
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import UserError
from .model import feature_size
from .plan import PLAN_VERSION, decide_family, image_test, margin, p_values, seed_test, unpaired_test
from .results import SCALE_COLUMNS, read_results
from .rows import DENSE_GAP_LIMIT, members, net_name, scales_of
from .seeds import SeedCheck, is_seed_row, seed_check, seeded_verdict
from .stats import TIE_TOLERANCE, compare, unpaired_two_se, verdict

#: A net within this many points of chance (1 - 1/classes) did not train.
CHANCE_MARGIN = 2.0
#: Tables whose rows a claim may compare.
CLAIM_TABLES = ("table3", "table4", "table5", "table6")

VERDICT_COLUMNS = ["claim", "claim_type", "paper_section", "paper_a", "paper_b", "paper_diff", "ours_a", "ours_b",
                   "diff", "decided_by", "estimate", "se", "df", "ci_low", "ci_high", "margin", "p_paper",
                   "p_paper_adj", "p_against", "p_against_adj", "verdict_raw", "verdict", "verdict_plan_v1",
                   "verdict_before_plan",
                   "caveat", "quote"]


def claims() -> pd.DataFrame:
    """The paper's claims that Tables 3-6 can test (vgg/paper/findings.csv)."""
    with resources.files("vgg.paper").joinpath("findings.csv").open() as f:
        return pd.read_csv(f)


def read_tables(folder) -> dict[str, pd.DataFrame]:
    tables = {}
    for name in CLAIM_TABLES:
        path = Path(folder) / f"{name}.csv"
        if not path.exists():
            raise UserError(f"{path} is missing: run `make {name} PRESET={Path(folder).name}` first")
        tables[name] = read_results(path, dtype=SCALE_COLUMNS)
    return tables


class MissingRow(UserError):
    """A claim's row is not in these tables: a row only the reproduction's protocol makes (a net or
    a test scale the published presets never had)."""


def pick(tables: dict[str, pd.DataFrame], table: str, query: str) -> pd.Series:
    """The one row of ``table`` that ``query`` selects (MissingRow where none, or where the query
    names a column the table does not have)."""
    if table not in CLAIM_TABLES:
        raise UserError(f"findings.csv names {table}: claims compare rows of tables 3-6")
    try:
        rows = tables[table].query(query)
    except pd.errors.UndefinedVariableError as e:
        raise MissingRow(f"{table} has no column for {query!r} ({e})")
    if len(rows) == 0:
        raise MissingRow(f"{table} has no row where {query!r}")
    if len(rows) != 1:
        raise UserError(f"findings.csv: {table} rows where {query!r}: {len(rows)}, expected exactly one")
    return rows.iloc[0]


def side_key(table: str, query: str) -> str:
    return f"{table}: {query}"


#: The columns that name a row of each table (what it evaluates), in the order row_id writes them.
ROW_IDENTITY = {"table3": ("config", "train_scale", "test_scale", "method", "init"),
                "table4": ("config", "train_scale", "test_scales", "method"),
                "table5": ("config", "train_scale", "method"),
                "table6": ("nets", "method", "d_jitter")}


def row_id(table: str, row: pd.Series) -> str:
    """'table3|config=A|train_scale=256|...': a row's identity, the same in every seed's table and in
    the table over seeds (columns it lacks or leaves empty are left out)."""
    parts = [table]
    for col in ROW_IDENTITY[table]:
        v = row.get(col)
        if v is None or (isinstance(v, float) and np.isnan(v)) or v == "":
            continue
        v = str(v)
        parts.append(f"{col}={v[:-2] if v.endswith('.0') else v}")
    return "|".join(parts)


def row_scales(table: str, row: pd.Series) -> list[int]:
    """The test scales Q (paper pixels) behind one table row."""
    if table == "table3":
        return [int(row.test_scale)]
    if table == "table6":
        return sorted({q for _, qs in members(row.models) for q in qs})
    return scales_of(row.test_scales)


def row_nets(table: str, row: pd.Series) -> list[tuple[str, list[int]]]:
    """The nets behind one table row and the test scales Q (paper pixels) each is evaluated at."""
    if table == "table6":
        return members(row.models)
    if table == "table3" and row.config == "B" and isinstance(row.get("init"), str) and row.init != "from A":
        return [(net_name("B", "256") + "-scratch", [256])]  # the analysis plan's B trained like B-5x5
    train_scale = "256-512" if table == "table5" else row.train_scale
    return [(net_name(row.config, train_scale), row_scales(table, row))]


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
    """Nets whose dense error at Q = S in dense_geometry.csv is not Table 3's for the same net and Q:
    the chain was retrained after dense_geometry.py ran, so its penalties belong to other nets."""
    stale = []
    for row in table3[table3.method == "dense"].itertuples():
        net = net_name(row.config, row.train_scale)
        g = geometry[(geometry.net == net) & (geometry.test_scale.astype(str) == str(row.test_scale))
                     & geometry.tested_in_tables]
        if len(g) and abs(g.dense_top1_err.iloc[0] - row.ours_top1_err) > 0.005:
            stale.append(net)
    return sorted(set(stale))


def at_chance(top1_err: float, classes: int | None) -> bool:
    """A net within CHANCE_MARGIN points of chance did not train: a comparison with it tests
    nothing the paper claims, whichever way it comes out."""
    return classes is not None and top1_err >= 100 * (1 - 1 / classes) - CHANCE_MARGIN


def caveat(preset, geometry, sides, train_map: str) -> str:
    """Why a comparison may not test the paper's effect: dense evaluation off the training geometry,
    or a dense penalty dense_geometry.csv measured at the Q it uses."""
    notes = []
    if any(dense_off_geometry(preset, row.method, row_scales(t, row)) for t, row in sides):
        notes.append(f"dense evaluation off the training geometry (conv5 {train_map})")
    penalty = [x for t, row in sides for x in measured_dense_penalty(geometry, t, row)]
    if penalty:
        notes.append(f"dense worse than centre crop by over {DENSE_GAP_LIMIT:g} points at "
                     f"{', '.join(dict.fromkeys(penalty))}")
    return "; ".join(notes) + (" (dense_geometry.csv)" if notes else "")


def two_se_verdict(claim_type: str, diff: float, two_se: float) -> str:
    """The first rule this project used: a gap counts beyond two unpaired standard errors."""
    gain = -diff
    if claim_type == "tie":
        return "reproduced" if abs(diff) <= two_se else "not reproduced"
    if claim_type == "no better":
        return "reproduced" if gain <= two_se else "not reproduced"
    return "reproduced" if gain > two_se else "not reproduced" if gain < -two_se else "within noise"


def unpaired_interval(err_a: float, n_a: int, err_b: float, n_b: int, z: float = 1.959964) -> tuple[float, float]:
    """95% normal interval of err_a - err_b (points) for two independent error rates (in %)."""
    pa, pb = err_a / 100, err_b / 100
    half = 100 * z * np.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b)
    return float(err_a - err_b - half), float(err_a - err_b + half)


@dataclass(frozen=True)
class Decision:
    rule: str          # 'seed level (3 seeds)', 'paired', 'unpaired', ...
    estimate: float    # the difference the rule's interval is centred on, points
    ci_low: float
    ci_high: float
    verdict: str


def decide(claim_type: str, paired: tuple[float, float, float] | None, unpaired: tuple[float, float, float],
           seeds: SeedCheck | None) -> Decision:
    """One claim's verdict by the first rule that applies (module docstring). ``paired`` and
    ``unpaired`` are (difference, ci_low, ci_high) in points; ``paired`` is None where per-image
    correctness is not known."""
    if paired is None:
        d, lo, hi = unpaired
        return Decision("unpaired 95% (per-image correctness not saved)", d, lo, hi, verdict(claim_type, lo, hi))
    d, lo, hi = paired
    single = verdict(claim_type, lo, hi)
    final = seeded_verdict(single, seeds)
    if seeds is not None and final.endswith("(seed level)"):
        mean, slo, shi = seeds.interval()
        return Decision(f"seed level, {len(seeds.seeds)} seeds, 95% t", mean, slo, shi, final)
    if seeds is not None:
        return Decision(f"paired 95% bootstrap, seed 0 ({len(seeds.seeds)} seeds checked for a flip)",
                        d, lo, hi, final)
    return Decision("paired 95% bootstrap", d, lo, hi, final)


def evaluate_claims(cs: pd.DataFrame, tables: dict[str, pd.DataFrame], correct: dict[str, np.ndarray],
                    images: dict[str, int], classes: int | None, by_seed: dict, preset,
                    geometry: pd.DataFrame | None, row_seeds: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(findings, evidence): one row per claim. ``correct`` maps side_key -> per-image top-1
    correctness where known; ``images`` maps a table name -> its rows' image count (for the
    unpaired rule); ``by_seed`` maps (config, seed) -> Table 3 seed-row correctness; ``row_seeds``
    maps (side_key, seed) -> correctness of any row in that seed (the reproduction's, every table)."""
    side = feature_size(preset.crop, 4)
    train_map = f"{side}x{side}"
    rows, evidence = [], []
    for c in cs.itertuples():
        try:
            a, b = pick(tables, c.table_a, c.row_a), pick(tables, c.table_b, c.row_b)
        except MissingRow as e:
            rows.append({"claim": c.claim, "claim_type": c.claim_type, "paper_section": c.paper_section,
                         "decided_by": "not tested", "verdict": "not tested", "caveat": f"not in these results: {e}",
                         "quote": c.quote})
            evidence.append({"claim": c.claim, "test": "not tested"})
            continue
        ka, kb = side_key(c.table_a, c.row_a), side_key(c.table_b, c.row_b)
        ours_a, ours_b = float(a.ours_top1_err), float(b.ours_top1_err)
        ul, uh = unpaired_interval(ours_a, images[c.table_a], ours_b, images[c.table_b])
        paired, ev = None, {}
        if ka in correct and kb in correct:
            r = compare(correct[ka], correct[kb])
            ours_a, ours_b = r.ours_a, r.ours_b
            paired = (r.diff, r.ci_low, r.ci_high)
            two_se = unpaired_two_se(correct[ka], correct[kb])
            ev = {"paired_ci_low": round(r.ci_low, 2), "paired_ci_high": round(r.ci_high, 2),
                  "paired_verdict": verdict(c.claim_type, r.ci_low, r.ci_high),
                  "mcnemar_p": float(f"{r.p_value:.3g}"), "discordant": r.discordant, "images": len(correct[ka]),
                  "two_se": round(two_se, 2), "two_se_verdict": two_se_verdict(c.claim_type, r.diff, two_se)}
        if row_seeds:
            seeds = seed_check(row_seeds, ka, kb, c.claim_type, TIE_TOLERANCE)
        else:
            seeds = (seed_check(by_seed, a.config, b.config, c.claim_type, TIE_TOLERANCE)
                     if paired is not None and c.table_a == c.table_b == "table3" and is_seed_row(a)
                     and is_seed_row(b) else None)
        d = decide(c.claim_type, paired, (ours_a - ours_b, ul, uh), seeds)
        untrained = [f"{getattr(row, 'config', 'fusion')} at chance ({err:.2f}%): it did not train"
                     for row, err in ((a, ours_a), (b, ours_b)) if at_chance(err, classes)]
        evidence_ab = (seeds, *((correct[ka], correct[kb]) if paired is not None else (None, None)),
                       (ours_a, images[c.table_a]), (ours_b, images[c.table_b]))
        test, test_v1 = (plan_test(*evidence_ab, version=v) for v in (PLAN_VERSION, "1"))
        m = margin(ours_b) if c.claim_type != "better" else 0.0
        p_paper, p_against = (None, None) if untrained else p_values(c.claim_type, test, m)
        p_v1 = (None, None) if untrained else p_values(c.claim_type, test_v1, m)
        lo, hi = test.interval()
        paper_diff = (round(a.paper_top1_err - b.paper_top1_err, 2) if pd.notna(a.paper_top1_err)
                      and pd.notna(b.paper_top1_err) else None)
        rows.append({"claim": c.claim, "claim_type": c.claim_type, "paper_section": c.paper_section,
                     "paper_a": a.paper_top1_err, "paper_b": b.paper_top1_err, "paper_diff": paper_diff,
                     "ours_a": round(ours_a, 2), "ours_b": round(ours_b, 2), "diff": round(ours_a - ours_b, 2),
                     "decided_by": level_text(test), "estimate": round(test.estimate, 2), "se": round(test.se, 3),
                     "df": None if np.isinf(test.df) else int(test.df), "ci_low": round(lo, 2), "ci_high": round(hi, 2),
                     "margin": round(m, 3), "p_paper": p_paper, "p_against": p_against,
                     "p_v1": p_v1,
                     "verdict": "inconclusive (a net at chance)" if untrained else None,
                     "verdict_before_plan": "inconclusive (a net at chance)" if untrained else d.verdict,
                     "caveat": "; ".join(filter(None, untrained + [
                         caveat(preset, geometry, ((c.table_a, a), (c.table_b, b)), train_map)])),
                     "quote": c.quote})
        mean, slo, shi = seeds.interval() if seeds is not None else (None, None, None)
        evidence.append({"claim": c.claim, "test": "paired" if paired is not None else "unpaired",
                         "unpaired_ci_low": round(ul, 2), "unpaired_ci_high": round(uh, 2),
                         "unpaired_verdict": verdict(c.claim_type, ul, uh),
                         **{k: ev.get(k) for k in ("paired_ci_low", "paired_ci_high", "paired_verdict", "mcnemar_p",
                                                   "discordant", "images", "two_se", "two_se_verdict")},
                         "seeds": "" if seeds is None else ";".join(map(str, seeds.seeds)),
                         "seed_diffs": "" if seeds is None else seeds.text,
                         "seed_sd_diff": None if seeds is None else seeds.sd,
                         "seed_mean_diff": mean, "seed_ci_low": slo, "seed_ci_high": shi,
                         "seed_level_verdict": "" if seeds is None else seeds.level_verdict})
    decided = decide_family(rows)
    v1 = decide_family([{"p_paper": r.get("p_v1", (None, None))[0], "p_against": r.get("p_v1", (None, None))[1],
                         "verdict": r.get("verdict")} for r in rows], version="1")
    for r, old in zip(decided, v1):
        r["verdict_plan_v1"] = old.get("verdict")
        for k in ("p_paper", "p_paper_adj", "p_against", "p_against_adj"):
            r[k] = None if r.get(k) is None else float(f"{r[k]:.3g}")
    return pd.DataFrame(decided, columns=VERDICT_COLUMNS), pd.DataFrame(evidence)


def plan_test(seeds: SeedCheck | None, correct_a, correct_b, a: tuple[float, int], b: tuple[float, int],
              version: str = PLAN_VERSION):
    """The analysis plan's test of one claim: seed level where three or more seeds trained both nets,
    else per image where both rows' correctness is known, else unpaired (vgg.plan)."""
    from .seeds import SEED_LEVEL_MIN
    if seeds is not None and len(seeds.seeds) >= SEED_LEVEL_MIN:
        return seed_test(seeds.diffs, seeds.image_var, version)
    if correct_a is not None and correct_b is not None:
        return image_test(correct_a, correct_b)
    return unpaired_test(a[0], a[1], b[0], b[1])


def level_text(test) -> str:
    return {"seed": f"seed level, {test.n} seeds, t({test.df:.1f})",
            "image": f"paired per image, one seed, {test.n} images",
            "unpaired": "unpaired (per-image correctness not saved)"}[test.level]


def counts(findings: pd.DataFrame) -> dict[str, int]:
    """reproduced / opposite / inconclusive / not tested, whatever tag a verdict carries."""
    base = findings.verdict.str.replace("not tested", "not-tested").str.split(" ").str[0]
    return {k: int((base == k.replace(" ", "-")).sum())
            for k in ("reproduced", "opposite", "inconclusive", "not tested")}
