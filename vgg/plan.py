"""The analysis plan's rules (docs/analysis_plan.md, version PLAN_VERSION): one test per claim, the
equivalence margin, Holm's correction over the family of claims, and the verdict.

A claim compares error(a) - error(b) (``diff``, points) at one level of evidence:

* ``seed``: three or more seeds of both nets, each scored on the same images: the mean of the
  seeds' differences, its variance the seeds' variance / n plus the image-sampling variance of the
  seed-averaged per-image difference (vgg.seeds.SeedCheck), Student's t with Welch-Satterthwaite's
  degrees of freedom (the image part counted as known; version 1: n - 1);
* ``image``: one run of each, per-image correctness known: the mean per-image difference, its
  standard error from the images (normal);
* ``unpaired``: only the two error rates known: two independent proportions (normal).

Hypotheses, with m the claim's equivalence margin (:func:`margin`: 1.61% of net b's error, midway
between the largest difference the paper calls a tie and the smallest it calls an improvement):

* *better* (a beats b): for the paper, diff < 0 (one-sided); against it, diff > 0;
* *no better* (a does not improve on b): for the paper, diff > -m (non-inferiority of b); against,
  diff < -m (a is better by more than the margin);
* *tie*: for the paper, |diff| < m (two one-sided tests, TOST: the larger p); against, |diff| > m
  (the smaller one-sided p, doubled).

Both sides' p-values of every claim a preset tests form one family, adjusted by the
Benjamini-Hochberg procedure (version 1: Holm over each side). Verdict: *reproduced* where the
paper's side is significant after adjustment (ALPHA),
*opposite* where the other side is, *inconclusive* otherwise. Raw p-values, the unadjusted
verdict and the adjusted one are all reported.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import stats

PLAN_VERSION = "2"
PLAN_DATE = "2026-12-04"
#: What each version of the plan decided differently (docs/analysis_plan.md, "Versions"): version 1
#: took the seed level's degrees of freedom from the seeds alone (n - 1) and Holm's correction over
#: each side's p-values; version 2 takes Welch-Satterthwaite's degrees of freedom (the image part of
#: the variance is estimated from thousands of images) and the Benjamini-Hochberg correction over
#: both sides' p-values of every claim as one family.
VERSIONS = {"1": {"df": "seeds", "correction": "holm"}, "2": {"df": "satterthwaite", "correction": "bh"}}
ALPHA = 0.05
LEVELS = ("seed", "image", "unpaired")


#: The paper's own usage bounds a tie: the smallest difference it reports as an improvement among
#: its Table 3-4 claims (C over B at S=256, Table 3: 28.7 -> 28.1, 2.09% of B's error) and the largest
#: it calls no difference (E vs D at S=256, Table 4: 26.9 vs 26.6, 1.13% of D's).
SMALLEST_IMPROVEMENT = ("table3_single_scale", ("B", "256"), ("C", "256"))
LARGEST_TIE = ("table4_multi_scale", ("D", "256"), ("E", "256"))


def relative_gap(pair) -> float:
    """|error(a) - error(b)| / error(reference) of a pair of rows of one of the paper's tables."""
    from .results import paper_table
    name, ref, other = pair
    t = paper_table(name)
    col = "top1_val_err"
    t = t.set_index(["config", "train_scale"])[col]
    r, o = float(t.loc[ref]), float(t.loc[other])
    return abs(r - o) / r


@functools.lru_cache(maxsize=1)
def margin_fraction() -> float:
    """The relative equivalence margin: midway between the largest difference the paper calls a tie
    and the smallest it calls an improvement (1.61%)."""
    return (relative_gap(SMALLEST_IMPROVEMENT) + relative_gap(LARGEST_TIE)) / 2


def margin(reference_error: float, fraction: float | None = None) -> float:
    """The equivalence margin, in points, of a *tie* or *no better* claim: margin_fraction() of the
    reference net's error (``reference_error``, %, net b's). Relative, because a proxy's errors lie
    on another scale than ImageNet's; midway, because a difference the paper itself calls a tie must
    count as one and a difference it calls an improvement must not."""
    return (margin_fraction() if fraction is None else fraction) * reference_error


@dataclass(frozen=True)
class Test:
    level: str        # seed | image | unpaired
    estimate: float   # diff, points
    se: float         # its standard error, points
    df: float         # degrees of freedom (inf: normal)
    n: int            # seeds (seed level) or images

    def cdf(self, x: float) -> float:
        """P(T <= x) of the standardised statistic's distribution."""
        return float(stats.norm.cdf(x) if np.isinf(self.df) else stats.t.cdf(x, self.df))

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        q = stats.norm.ppf(0.5 + level / 2) if np.isinf(self.df) else stats.t.ppf(0.5 + level / 2, self.df)
        return self.estimate - q * self.se, self.estimate + q * self.se


def seed_test(diffs: list[float], image_var: float, version: str = PLAN_VERSION) -> Test:
    """The seeds' mean difference; variance seeds' / n + image part; df n - 1 (version 1) or
    Welch-Satterthwaite's, counting the image part as known (version 2)."""
    n = len(diffs)
    seeds_part = float(np.var(diffs, ddof=1)) / n
    var = seeds_part + image_var
    df = n - 1 if VERSIONS[version]["df"] == "seeds" or seeds_part == 0 and image_var == 0 else \
        (np.inf if seeds_part == 0 else var ** 2 / (seeds_part ** 2 / (n - 1)))
    return Test("seed", float(np.mean(diffs)), float(np.sqrt(var)), float(df), n)


def image_test(correct_a: np.ndarray, correct_b: np.ndarray) -> Test:
    d = 100.0 * (np.asarray(correct_b, float) - np.asarray(correct_a, float))  # error(a) - error(b) per image
    return Test("image", float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))), np.inf, len(d))


def unpaired_test(err_a: float, n_a: int, err_b: float, n_b: int) -> Test:
    pa, pb = err_a / 100, err_b / 100
    se = 100 * float(np.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b))
    return Test("unpaired", err_a - err_b, se, np.inf, min(n_a, n_b))


def p_values(claim_type: str, t: Test, m: float) -> tuple[float, float]:
    """(p for the paper's side, p against it), one-sided as in the module docstring."""
    se = max(t.se, 1e-12)
    if claim_type == "better":
        z = t.estimate / se
        return t.cdf(z), 1 - t.cdf(z)
    if claim_type == "no better":
        z = (t.estimate + m) / se
        return 1 - t.cdf(z), t.cdf(z)
    if claim_type == "tie":
        above = 1 - t.cdf((t.estimate + m) / se)   # H0: diff <= -m
        below = t.cdf((t.estimate - m) / se)       # H0: diff >= +m
        far_low = t.cdf((t.estimate + m) / se)     # evidence diff < -m
        far_high = 1 - t.cdf((t.estimate - m) / se)  # evidence diff > +m
        return max(above, below), min(1.0, 2 * min(far_low, far_high))
    raise ValueError(f"unknown claim type {claim_type!r}: better, no better or tie")


def holm(p: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error at the adjusted level)."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p)
    k = len(p)
    adjusted = np.empty(k)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (k - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def benjamini_hochberg(p: list[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (step-up; the false discovery rate at the adjusted level)."""
    p = np.asarray(p, dtype=float)
    k = len(p)
    if k == 0:
        return []
    order = np.argsort(p)
    ranked = p[order] * k / np.arange(1, k + 1)
    adjusted_sorted = np.minimum.accumulate(ranked[::-1])[::-1].clip(max=1.0)
    adjusted = np.empty(k)
    adjusted[order] = adjusted_sorted
    return adjusted.tolist()


def verdict(p_paper: float, p_against: float, alpha: float = ALPHA) -> str:
    if p_paper < alpha:
        return "reproduced"
    if p_against < alpha:
        return "opposite"
    return "inconclusive"


def decide_family(rows: list[dict], version: str = PLAN_VERSION) -> list[dict]:
    """``rows``: per claim {'p_paper', 'p_against', ...} (None where untested). Adds the adjusted
    p-values ('p_paper_adj', 'p_against_adj') and the raw and adjusted verdicts: version 1 adjusts
    each side's p-values by Holm, version 2 both sides' together by Benjamini-Hochberg."""
    tested = [i for i, r in enumerate(rows) if r.get("p_paper") is not None]
    paper = [rows[i]["p_paper"] for i in tested]
    against = [rows[i]["p_against"] for i in tested]
    if VERSIONS[version]["correction"] == "holm":
        adj_paper, adj_against = holm(paper), holm(against)
    else:
        both = benjamini_hochberg(paper + against)
        adj_paper, adj_against = both[:len(paper)], both[len(paper):]
    out = [dict(r) for r in rows]
    for k, i in enumerate(tested):
        out[i]["p_paper_adj"] = adj_paper[k]
        out[i]["p_against_adj"] = adj_against[k]
        out[i]["verdict_raw"] = verdict(rows[i]["p_paper"], rows[i]["p_against"])
        out[i]["verdict"] = verdict(adj_paper[k], adj_against[k])
    return out


def plan_commit(root=None) -> str:
    """The commit that last changed the plan (docs/analysis_plan.md, this module, the claims), or
    'unknown' outside a git checkout."""
    import subprocess
    from pathlib import Path
    root = Path(root or Path(__file__).resolve().parents[1])
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%h", "--", "docs/analysis_plan.md", "vgg/plan.py",
                              "vgg/paper/findings.csv"], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"
