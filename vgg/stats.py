"""Paired tests of two nets (or two methods) on the same validation images.

Every comparison the paper makes is between two predictors scored on the same images, so
the test is paired: what matters is the images on which they disagree.

* :func:`mcnemar_exact` -- McNemar's exact test: among the discordant images (one right,
  the other wrong) each side is equally likely under the null (a binomial test, p = 1/2).
* :func:`paired_bootstrap` -- a percentile bootstrap interval of the top-1 error
  difference, resampling images (pairs) with replacement.  The per-image difference of
  the two error indicators takes only the values -1, 0, +1, so a resample's mean is fixed
  by how many of each it draws: one multinomial draw per resample gives exactly the
  distribution of resampling n images, vectorised over all resamples (no n x B index array).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

from .metrics import topk_hits

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


def correct_top1(posteriors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-image top-1 correctness (bool, N) from soft-max posteriors (N, C); a tie between the
    highest posteriors is broken as the tables' top-1 error breaks it (vgg.metrics.topk_hits)."""
    return topk_hits(posteriors, labels, 1).numpy()


def _check_pair(correct_a, correct_b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired tests need two correctness vectors over the same images, got {a.shape} "
                         f"and {b.shape}")
    return a, b


def mcnemar_exact(correct_a, correct_b) -> float:
    """Two-sided exact McNemar p-value for 'a and b have the same error rate'."""
    a, b = _check_pair(correct_a, correct_b)
    only_a = int(np.sum(a & ~b))   # a right, b wrong
    only_b = int(np.sum(~a & b))   # a wrong, b right
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5, alternative="two-sided").pvalue)


def paired_bootstrap(correct_a, correct_b, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                     level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of top-1 error(a) - error(b), in percentage points."""
    a, b = _check_pair(correct_a, correct_b)
    n = len(a)
    d = b.astype(np.int8) - a.astype(np.int8)       # error_a - error_b per image: +1, 0 or -1
    counts = np.array([np.sum(d == 1), np.sum(d == -1), np.sum(d == 0)])
    draws = np.random.default_rng(seed).multinomial(n, counts / n, size=resamples)
    diffs = 100.0 * (draws[:, 0] - draws[:, 1]) / n
    tail = (1 - level) / 2
    lo, hi = np.quantile(diffs, [tail, 1 - tail])
    return float(lo), float(hi)


def unpaired_two_se(correct_a, correct_b) -> float:
    """The old rule's yardstick: two standard errors of a difference of two independent error
    rates, in points (kept only to show how much the pairing gains)."""
    a, b = _check_pair(correct_a, correct_b)
    pa, pb = 1 - a.mean(), 1 - b.mean()
    return float(200 * np.sqrt((pa * (1 - pa) + pb * (1 - pb)) / len(a)))


@dataclass(frozen=True)
class Comparison:
    ours_a: float      # top-1 error of a, %
    ours_b: float      # top-1 error of b, %
    diff: float        # a - b, points (negative: a is better)
    ci_low: float
    ci_high: float
    p_value: float     # McNemar, two-sided
    discordant: int    # images where exactly one of a, b is right


def compare(correct_a, correct_b, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> Comparison:
    a, b = _check_pair(correct_a, correct_b)
    lo, hi = paired_bootstrap(a, b, resamples, seed)
    ea, eb = 100 * (1 - a.mean()), 100 * (1 - b.mean())
    return Comparison(float(ea), float(eb), float(ea - eb), lo, hi, mcnemar_exact(a, b), int(np.sum(a != b)))


#: A tie ("does not improve", "saturates") is reproduced when the whole 95% interval of the
#: difference lies within +-TIE_TOLERANCE points: see README "Findings" for why 2 points.
TIE_TOLERANCE = 2.0


def verdict(claim_type: str, ci_low: float, ci_high: float, tolerance: float = TIE_TOLERANCE) -> str:
    """The verdict on one claim from the 95% interval of error(a) - error(b), in points.

    better:     the paper finds a lower error than b.  reproduced: interval below 0;
                opposite: above 0; else inconclusive.
    no better:  the paper finds a no better than b (e.g. LRN "does not improve" A).
                reproduced: interval above -tolerance (a is not better by more than the
                tolerance); opposite: interval below -tolerance (a is clearly better).
    tie:        the paper finds no difference (e.g. depth "saturates" at 19 layers).
                reproduced: interval inside [-tolerance, +tolerance]; opposite: interval
                wholly outside it; else inconclusive.
    """
    if claim_type == "better":
        return "reproduced" if ci_high < 0 else "opposite" if ci_low > 0 else "inconclusive"
    if claim_type == "no better":
        return "reproduced" if ci_low > -tolerance else "opposite" if ci_high < -tolerance else "inconclusive"
    if claim_type == "tie":
        if -tolerance <= ci_low and ci_high <= tolerance:
            return "reproduced"
        return "opposite" if ci_low > tolerance or ci_high < -tolerance else "inconclusive"
    raise ValueError(f"unknown claim type {claim_type!r}: better, no better or tie")
