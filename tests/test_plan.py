"""The analysis plan's rules (vgg/plan.py, docs/analysis_plan.md) against independent computations."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from vgg import plan
from vgg.protocol import FIXED_SCHEDULE
from vgg.seeds import SeedCheck

ROOT = Path(__file__).resolve().parents[1]


def test_holm_by_hand():
    p = [0.01, 0.04, 0.03, 0.005, 0.5]
    # sorted 0.005, 0.01, 0.03, 0.04, 0.5 times 5, 4, 3, 2, 1, then the running maximum
    by_hand = {3: 0.025, 0: 0.04, 2: 0.09, 1: 0.09, 4: 0.5}
    assert plan.holm(p) == pytest.approx([by_hand[i] for i in range(5)])
    assert plan.holm([0.9, 0.4]) == pytest.approx([0.9, 0.8])  # 0.4 x 2; then max(0.8, 0.9 x 1)


def test_the_margin_lies_midway_between_the_papers_largest_tie_and_smallest_improvement():
    assert plan.margin_fraction() == pytest.approx((0.6 / 28.7 + 0.3 / 26.6) / 2)
    assert plan.margin(25.0) == pytest.approx(25.0 * plan.margin_fraction())
    text = (ROOT / "docs" / "analysis_plan.md").read_text()
    assert f"m = {100 * plan.margin_fraction():.2f}% of net b's error" in text
    for stage, segments in FIXED_SCHEDULE.items():
        assert " + ".join(map(str, segments)) in text, stage
    assert f"{len(plan_claims())} claims of Sect. 4" in text
    assert f"Version {plan.PLAN_VERSION}, {plan.PLAN_DATE}" in text


def plan_claims():
    from vgg.findings import claims
    return claims()


def test_one_sided_p_values():
    t = plan.Test("image", -1.0, 0.5, np.inf, 3929)
    p_paper, p_against = plan.p_values("better", t, 0.0)
    assert p_paper == pytest.approx(stats.norm.cdf(-2.0)) and p_paper + p_against == pytest.approx(1)
    m = 0.4
    p_paper, p_against = plan.p_values("no better", t, m)  # a better than b by 1 point, beyond the margin
    assert p_paper == pytest.approx(1 - stats.norm.cdf((-1 + m) / 0.5))
    assert p_against == pytest.approx(stats.norm.cdf((-1 + m) / 0.5))
    tie = plan.Test("seed", 0.1, 0.1, 2, 3)
    p_paper, p_against = plan.p_values("tie", tie, m)
    tost = max(1 - stats.t.cdf((0.1 + m) / 0.1, 2), stats.t.cdf((0.1 - m) / 0.1, 2))
    assert p_paper == pytest.approx(tost)
    assert p_against == pytest.approx(min(1, 2 * min(stats.t.cdf((0.1 + m) / 0.1, 2),
                                                     1 - stats.t.cdf((0.1 - m) / 0.1, 2))))


def test_the_image_and_seed_levels_are_the_paired_and_seed_statistics():
    rng = np.random.default_rng(0)
    a, b = rng.random(2000) < 0.7, rng.random(2000) < 0.75
    t = plan.image_test(a, b)
    d = 100.0 * (b.astype(float) - a)
    assert t.estimate == pytest.approx(100 * ((1 - a.mean()) - (1 - b.mean())))
    assert t.se == pytest.approx(d.std(ddof=1) / np.sqrt(len(d)))
    check = SeedCheck([0, 1, 2], [-1.3, 0.28, -4.69], 0.0, [True] * 3, "better", 0.4, image_var=0.12)
    st = plan.seed_test(check.diffs, check.image_var, version="1")  # version 1: t(n - 1), as SeedCheck
    mean, lo, hi = check.interval()
    assert (round(st.estimate, 2), round(st.interval()[0], 2), round(st.interval()[1], 2)) == (mean, lo, hi)
    v2 = plan.seed_test(check.diffs, check.image_var, version="2")
    seeds_part = np.var(check.diffs, ddof=1) / 3
    assert v2.se == pytest.approx(st.se)
    assert v2.df == pytest.approx((seeds_part + 0.12) ** 2 / (seeds_part ** 2 / 2)) and v2.df > 2


def test_benjamini_hochberg_by_hand():
    p = [0.01, 0.04, 0.03, 0.005, 0.5]
    # sorted 0.005, 0.01, 0.03, 0.04, 0.5 times 5/1, 5/2, 5/3, 5/4, 5/5, then the minimum from the top
    by_hand = {3: 0.025, 0: 0.025, 2: 0.05, 1: 0.05, 4: 0.5}
    assert plan.benjamini_hochberg(p) == pytest.approx([by_hand[i] for i in range(5)])


def test_version_2_decides_both_sides_as_one_family():
    rows = [{"p_paper": 0.02, "p_against": 0.98}, {"p_paper": 0.01, "p_against": 0.99},
            {"p_paper": 0.97, "p_against": 0.03}]
    out = plan.decide_family(rows, version="2")
    # six p-values: 0.01, 0.02, 0.03 ranked 1-3 of 6 -> 0.06, 0.06, 0.06: none below 0.05
    assert [r["verdict"] for r in out] == ["inconclusive"] * 3
    out = plan.decide_family(rows[:2], version="2")  # 0.01 x 4 / 1, 0.02 x 4 / 2 -> 0.04, 0.04
    assert [r["verdict"] for r in out] == ["reproduced", "reproduced"]


def test_holm_decides_the_family_and_the_raw_verdict_is_kept():
    rows = [{"p_paper": 0.02, "p_against": 0.98}, {"p_paper": 0.01, "p_against": 0.99},
            {"p_paper": None, "p_against": None, "verdict": "not tested"}, {"p_paper": 0.97, "p_against": 0.03}]
    out = plan.decide_family(rows, version="1")
    assert [r.get("verdict_raw") for r in out] == ["reproduced", "reproduced", None, "opposite"]
    # Holm over 3: 0.01 x 3 = 0.03, 0.02 x 2 = 0.04; against: 0.03 x 3 = 0.09
    assert [r["verdict"] for r in out] == ["reproduced", "reproduced", "not tested", "inconclusive"]


def test_the_findings_library_does_not_import_the_experiment_harness():
    code = ("import sys, vgg.findings, vgg.plan; "
            "print(sorted(m for m in ('vgg.experiment', 'vgg.train', 'vgg.chain', 'vgg.evaluate', 'vgg.datasets') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
