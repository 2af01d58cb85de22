"""Paired tests of findings: McNemar, the paired bootstrap, claim verdicts."""
import numpy as np
import pytest
from scipy.stats import binom

from vgg.stats import compare, mcnemar_exact, paired_bootstrap, unpaired_two_se, verdict


def test_mcnemar_matches_a_hand_computed_2x2_table():
    # 10 images: both right on 4, a only on 5, b only on 1, both wrong on 0 -> discordant 5 vs 1.
    a = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 0], bool)
    b = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 1], bool)
    # exact two-sided p: 2 * P(X <= 1), X ~ Bin(6, 1/2) = 2 * (1 + 6) / 64 = 0.21875
    assert mcnemar_exact(a, b) == pytest.approx(0.21875)
    assert mcnemar_exact(b, a) == pytest.approx(0.21875)
    assert mcnemar_exact(a, a) == 1.0
    # 20 discordant all one way: p = 2 / 2^20
    x = np.ones(30, bool)
    y = x.copy()
    y[:20] = False
    assert mcnemar_exact(x, y) == pytest.approx(2 * binom.pmf(0, 20, 0.5))


def _pair(n, err_a, err_b, discord, rng):
    """Correctness vectors with given error rates and a given share of discordant images."""
    both_wrong = (err_a + err_b - discord) / 2
    kinds = rng.choice(4, size=n, p=[1 - err_a - err_b + both_wrong, err_b - both_wrong,
                                     err_a - both_wrong, both_wrong])
    return kinds < 2, kinds % 2 == 0   # a right for kinds 0, 1; b right for kinds 0, 2


def test_bootstrap_interval_covers_the_true_difference():
    rng = np.random.default_rng(1)
    covered = 0
    for trial in range(100):
        a, b = _pair(4000, 0.30, 0.33, 0.15, rng)          # true difference -3 points
        lo, hi = paired_bootstrap(a, b, resamples=2000, seed=trial)
        covered += lo <= -3.0 <= hi
    assert 88 <= covered <= 100  # nominal 95%


def test_bootstrap_is_seeded_and_centred_on_the_observed_difference():
    rng = np.random.default_rng(2)
    a, b = _pair(3000, 0.25, 0.28, 0.10, rng)
    assert paired_bootstrap(a, b, seed=5) == paired_bootstrap(a, b, seed=5)
    lo, hi = paired_bootstrap(a, b)
    observed = 100 * ((1 - a.mean()) - (1 - b.mean()))
    assert lo < observed < hi
    assert abs((lo + hi) / 2 - observed) < 0.2


def test_paired_interval_is_narrower_than_the_unpaired_rule_for_correlated_nets():
    rng = np.random.default_rng(3)
    a, b = _pair(4000, 0.30, 0.31, 0.08, rng)  # two nets that mostly agree
    lo, hi = paired_bootstrap(a, b)
    assert (hi - lo) / 2 < 0.6 * unpaired_two_se(a, b)


def test_verdicts_follow_the_interval():
    assert verdict("better", -3.0, -0.5) == "reproduced"
    assert verdict("better", -1.0, 0.5) == "inconclusive"
    assert verdict("better", 0.2, 2.0) == "opposite"
    assert verdict("no better", -1.5, 3.0) == "reproduced"
    assert verdict("no better", -5.0, -2.5) == "opposite"
    assert verdict("no better", -3.0, 1.0) == "inconclusive"


def test_tie_verdict_flips_when_the_interval_leaves_the_tolerance():
    assert verdict("tie", -1.9, 1.9, tolerance=2.0) == "reproduced"
    assert verdict("tie", -1.9, 2.1, tolerance=2.0) == "inconclusive"
    assert verdict("tie", 2.1, 4.0, tolerance=2.0) == "opposite"
    rng = np.random.default_rng(4)
    a, b = _pair(4000, 0.30, 0.30, 0.10, rng)
    c = compare(a, b)
    assert verdict("tie", c.ci_low, c.ci_high) == "reproduced"
    assert verdict("tie", c.ci_low, c.ci_high, tolerance=0.1) == "inconclusive"
    with pytest.raises(ValueError):
        verdict("beats", 0, 1)


def test_compare_needs_the_same_images():
    with pytest.raises(ValueError):
        compare(np.ones(5, bool), np.ones(6, bool))


def test_two_seeds_that_disagree_make_a_finding_inconclusive_and_three_are_judged_by_their_interval():
    from dataclasses import replace

    from vgg.seeds import SeedCheck, seed_check, seeded_verdict
    rng = np.random.default_rng(0)

    def correct(err):  # exactly err % wrong of 1,000 images
        c = np.ones(1000, bool)
        c[rng.choice(1000, round(10 * err), replace=False)] = False
        return c

    agree = {("B", 0): correct(30), ("A", 0): correct(33), ("B", 1): correct(31), ("A", 1): correct(32)}
    chk = seed_check(agree, "B", "A", "better", 2.0)
    assert chk.diffs == [-3.0, -1.0] and chk.consistent and chk.sd == pytest.approx(np.std([-3, -1], ddof=1), abs=0.01)
    assert seeded_verdict("reproduced", chk) == "reproduced"  # two agreeing seeds: seed 0's verdict
    flip = {**agree, ("B", 2): correct(34), ("A", 2): correct(32)}
    chk = seed_check(flip, "B", "A", "better", 2.0)
    assert chk.seeds == [0, 1, 2] and chk.diffs[2] == 2.0 and not chk.consistent
    # the images' share, by a loop: per image, error(B) - error(A) in points averaged over the seeds
    per_image = [sum(100 * (int(flip[("A", s)][i]) - int(flip[("B", s)][i])) for s in range(3)) / 3
                 for i in range(1000)]
    assert chk.image_var == pytest.approx(np.var(per_image, ddof=1) / 1000)
    # the interval by hand: training variance s^2 / n plus the images' variance, t with n - 1 = 2 df
    half = 4.3027 * np.sqrt(np.var([-3, -1, 2], ddof=1) / 3 + chk.image_var)
    assert chk.interval() == pytest.approx((-2 / 3, -2 / 3 - half, -2 / 3 + half), abs=0.01)
    # without the images' share it is the plain t-interval: t(0.975, 1 df) = 12.7062, 2 df 4.3027
    assert SeedCheck([0, 1], [-3.0, -1.0], 1.41, [True, True], "better", 2.0).interval() == pytest.approx(
        (-2.0, -2 - 12.7062, -2 + 12.7062), abs=0.01)
    half = 4.3027 * np.std([-3, -1, 2], ddof=1) / np.sqrt(3)
    three = SeedCheck([0, 1, 2], [-3.0, -1.0, 2.0], 2.52, [True, True, False], "better", 2.0)
    assert three.interval() == pytest.approx((-2 / 3, -2 / 3 - half, -2 / 3 + half), abs=0.01)
    # nets that do not change from seed to seed: only the images' noise, whose standard error the
    # paired bootstrap of one seed measures independently (its 95% interval is +-1.96 of them)
    a, b = correct(33), correct(30)
    same = seed_check({("B", s): b for s in range(3)} | {("A", s): a for s in range(3)}, "B", "A", "better", 2.0)
    boot = compare(b, a)
    mean, low, high = same.interval()
    assert mean == pytest.approx(boot.diff, abs=0.01)
    assert (high - low) / (2 * 4.3027) == pytest.approx((boot.ci_high - boot.ci_low) / (2 * 1.96), rel=0.05)
    # three seeds: the seed-level interval decides, whatever seed 0's paired verdict said
    assert seeded_verdict("reproduced", chk) == "inconclusive (seed level)"
    assert seeded_verdict("opposite", chk) == "inconclusive (seed level)"
    assert seeded_verdict("reproduced", same) == verdict("better", boot.ci_low, boot.ci_high) + " (seed level)"
    # all three seeds on the paper's side, but spread: -2 +- 4.3027 / sqrt(3) = [-4.48, +0.48]
    spread = SeedCheck([0, 1, 2], [-3.0, -1.0, -2.0], 1.0, [True] * 3, "better", 2.0)
    assert spread.consistent and seeded_verdict("reproduced", spread) == "inconclusive (seed level)"
    # s^2 / n = 0.02111, + 0.005 = 0.02611, sqrt 0.1616, x 4.3027: -2.77 +- 0.70
    close = SeedCheck([0, 1, 2], [-3.0, -2.5, -2.8], 0.25, [True] * 3, "better", 2.0, image_var=0.005)
    assert close.interval() == pytest.approx((-2.77, -3.46, -2.07), abs=0.02)
    assert seeded_verdict("inconclusive", close) == "reproduced (seed level)"
    no_better, tie4 = replace(close, claim_type="no better"), replace(close, claim_type="tie", tolerance=4.0)
    assert seeded_verdict("reproduced", no_better) == "opposite (seed level)"  # all below -2
    assert seeded_verdict("reproduced", tie4) == "reproduced (seed level)"  # all within +-4
    # two seeds that flip: no single run decides
    two_flip = seed_check({k: v for k, v in flip.items() if k[1] != 1}, "B", "A", "better", 2.0)
    assert two_flip.diffs == [-3.0, 2.0]
    assert seeded_verdict("reproduced", two_flip) == "inconclusive (flips between seeds)"
    assert seeded_verdict("inconclusive", two_flip) == "inconclusive"
    # a tie holds while every seed's difference is inside the tolerance, and flips once one leaves it
    assert seed_check(agree, "B", "A", "tie", 3.0).consistent
    assert not seed_check(agree, "B", "A", "tie", 2.0).consistent
    assert seed_check({("B", 0): correct(30), ("A", 0): correct(33)}, "B", "A", "better", 2.0) is None


def test_seed_runs_from_another_chain_are_found_stale():
    from vgg.seeds import stale_seed_runs
    rng = np.random.default_rng(1)
    a0, b0, b1 = (rng.random(500) < 0.6 for _ in range(3))
    saved = {("A", 0): a0, ("B", 0): b0, ("B", 1): b1}
    assert stale_seed_runs(saved, {"A": a0.copy(), "B": b0.copy()}) == []
    retrained = b0.copy()
    retrained[7] = ~retrained[7]  # one image judged differently: another net
    assert stale_seed_runs(saved, {"A": a0, "B": retrained}) == ["B"]
    assert stale_seed_runs(saved, {"A": a0[:400]}) == ["A"]  # another validation set
    assert stale_seed_runs({}, {"A": a0}) == []  # no seed runs: nothing stale


def test_saved_seed_runs_are_reused_only_under_the_same_protocol(tmp_path):
    """A seed's net saved in one session is reused in the next only if the protocol that trained it
    (preset's training fields, dataset, val images) is the preset's now."""
    import dataclasses

    from vgg.protocol import get_preset
    from vgg.seeds import SEEDS_FILE, load_reusable, protocol_fingerprint, save_correctness
    preset = get_preset("imagenette")
    fp = protocol_fingerprint(preset, "imagenette", 500)
    # how images are read and by how many workers does not change what a net learns
    assert protocol_fingerprint(dataclasses.replace(preset, loader="stream", workers=1), "imagenette", 500) == fp
    for changed in (dataclasses.replace(preset, lr=preset.lr / 2), dataclasses.replace(preset, finetune_epochs=40),
                    dataclasses.replace(preset, lr_by_config={})):
        assert protocol_fingerprint(changed, "imagenette", 500) != fp
    assert protocol_fingerprint(preset, "my-photos", 500) != fp
    assert protocol_fingerprint(preset, "imagenette", 499) != fp
    # a rule field added later (LATER_FIELDS) counts only where a preset sets it
    assert protocol_fingerprint(dataclasses.replace(preset, plateau_ema=0.5), "imagenette", 500) != fp
    rng = np.random.default_rng(3)
    a1, b1 = rng.random(500) < 0.7, rng.random(500) < 0.6
    save_correctness(tmp_path, {("A", 1): a1, ("B", 1): b1}, {("A", 1): 9.5, ("B", 1): 8.25}, fp,
                     {("A", 1): "cpu, fp32", ("B", 1): "cpu, fp32"})
    got = load_reusable(tmp_path, fp, 500)
    assert sorted(got) == [("A", 1), ("B", 1)]
    assert np.array_equal(got[("B", 1)][0], b1) and got[("B", 1)][1:] == (8.25, "cpu, fp32")
    assert load_reusable(tmp_path, protocol_fingerprint(preset, "imagenette", 499), 500) == {}
    assert load_reusable(tmp_path, fp, 400) == {}
    save_correctness(tmp_path, {("A", 1): a1})  # as files were written before fingerprints: never reused
    assert load_reusable(tmp_path, fp, 500) == {} and load_reusable(tmp_path / "none", fp, 500) == {}
    assert (tmp_path / SEEDS_FILE).exists()


def test_published_seed0_is_table3s_seed_row_and_only_while_table3_agrees(tmp_path):
    """Seed 0 without checkpoints: findings.py's saved correctness of the row Table 3 runs the seeds
    at (S=256, dense, Q=256), kept only while it gives table3.csv's error to the hundredth."""
    import pandas as pd

    from vgg.seeds import PER_IMAGE_FILE, published_seed0
    rng = np.random.default_rng(4)
    a, b, b384 = (rng.random(400) < p_ for p_ in (0.7, 0.75, 0.8))
    err = lambda c: round(100 * (1 - c.mean()), 2)  # noqa: E731
    t3 = pd.DataFrame({"config": ["A", "B", "B", "B"], "train_scale": ["256", "256", "256", "384"],
                       "test_scale": [256, 256, 256, 384], "method": ["dense", "dense", "center-crop", "dense"],
                       "ours_top1_err": [err(a), err(b), 30.0, err(b384)], "ours_top5_err": [4.0, 3.5, 3.0, 2.0],
                       "device": "AMD EPYC (2 threads)", "precision": "bf16 autocast"})
    t3.to_csv(tmp_path / "table3.csv", index=False)
    keys = ["table3: config == 'A'", "table3: config == 'B' and method == 'dense' and train_scale == '256'",
            "table3: config == 'B' and train_scale == '384'", "table4: config == 'A'"]
    np.savez(tmp_path / PER_IMAGE_FILE, keys=np.array(keys), n=np.array([400] * 4),
             bits=np.stack([np.packbits(c) for c in (a, b, b384, a)]), classes=np.int64(10))
    got = published_seed0(tmp_path)
    assert sorted(got) == ["A", "B"]  # B at S=384 and table4's row are not the seed row
    assert np.array_equal(got["B"][0], b) and got["B"][1:] == (3.5, "AMD EPYC (2 threads), bf16 autocast")
    t3.loc[0, "ours_top1_err"] += 0.03  # table3.csv remade after findings.py saved: A no longer agrees
    t3.to_csv(tmp_path / "table3.csv", index=False)
    assert sorted(published_seed0(tmp_path)) == ["B"]
    assert published_seed0(tmp_path / "none") == {}


def test_per_image_file_keeps_rows_of_different_lengths_and_reads_old_files(tmp_path):
    """findings.py's per-image file: rows of Tables 5-6 cover the multi-crop subset only, so each row
    keeps its own n through the padded bits; a file from before n per row and classes were recorded
    (one scalar n, no classes) still reads; a missing file reads as nothing."""
    from vgg.seeds import PER_IMAGE_FILE, load_per_image, save_per_image
    rng = np.random.default_rng(5)
    rows = {"table3: config == 'A'": rng.random(403) < 0.7, "table5: config == 'D'": rng.random(37) < 0.6}
    save_per_image(tmp_path, rows, classes=10)
    got, classes = load_per_image(tmp_path)
    assert classes == 10 and list(got) == list(rows)
    assert all(np.array_equal(got[k], rows[k]) for k in rows)
    old = {"table3: config == 'A'": rows["table3: config == 'A'"], "table3: config == 'B'": rng.random(403) < 0.5}
    np.savez(tmp_path / PER_IMAGE_FILE, keys=np.array(list(old)), n=np.int64(403),
             bits=np.stack([np.packbits(v) for v in old.values()]))
    got, classes = load_per_image(tmp_path)
    assert classes is None and all(np.array_equal(got[k], old[k]) for k in old)
    assert load_per_image(tmp_path / "none") == ({}, None)


@pytest.mark.parametrize("patience,threshold", [(0, 0.0), (1, 0.0), (2, 0.0), (1, 0.005)])
def test_plateau_replay_lowers_the_lr_when_torchs_scheduler_does(patience, threshold):
    import torch

    from vgg.plateau import first_drop, first_drops
    rng = np.random.default_rng(patience)
    curves = np.cumsum(rng.normal(0.01, 0.01, (200, 10)), axis=1)  # rising accuracy with noise
    for acc in curves:
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.1, patience=patience,
                                                           threshold=threshold, threshold_mode="abs")
        torch_drop = None
        for epoch, a in enumerate(acc, 1):
            sched.step(float(a))
            if torch_drop is None and opt.param_groups[0]["lr"] < 1.0:
                torch_drop = epoch
        assert first_drop(acc, patience, threshold) == torch_drop
    vec = first_drops(curves, patience, threshold)
    assert vec.tolist() == [first_drop(a, patience, threshold) or 11 for a in curves]


def test_plateau_study_on_the_published_proxy_logs_finds_patience_0_noise_driven(tmp_path):
    from conftest import ROOT, run_cli
    r = run_cli([str(ROOT / "experiments/studies/plateau_study.py"), "--preset", "proxy", "--logs",
                 str(ROOT / "results" / "proxy" / "logs"), "--results", str(tmp_path), "--figures",
                 str(tmp_path), "--sims", "500"])
    assert r.returncode == 0, r.stderr[-2000:]
    import pandas as pd
    s = pd.read_csv(tmp_path / "proxy" / "plateau_study.csv")
    mean = s[s.net == "mean over runs"].set_index(["patience", "threshold_points"]).p_premature
    assert mean[(0, 0.0)] > mean[(1, 0.0)] > mean[(2, 0.0)]  # more patience, fewer noise-decided drops
    a = s[(s.net == "A_S256") & (s.patience == 0) & (s.threshold_points == 0)].iloc[0]
    assert a.logged_first_drop == 7  # the published run: lr / 10 after epoch 7, its one worse epoch (34.33 -> 34.99)
    # how far the fitted curve fell over the epochs the rule waited (patience 0: epoch 6 -> 7), computed here
    from vgg.plateau import smooth_curve
    log = pd.read_csv(ROOT / "results" / "proxy" / "logs" / "A_S256.log.csv")
    fit = smooth_curve(log[log.lr == log.lr.iloc[0]].val_top1_err.to_numpy(dtype=float))
    assert a.fitted_fall_points == pytest.approx(100 * (fit[5] - fit[6]), abs=0.006)
    assert s[s.logged_first_drop.isna()].fitted_fall_points.isna().all()  # no drop, no window


def test_paired_correctness_breaks_ties_as_the_tables_error_does():
    import torch

    from vgg.metrics import topk_error
    from vgg.stats import correct_top1
    g = torch.Generator().manual_seed(0)
    p = torch.rand(4000, 10, generator=g).to(torch.bfloat16).float()  # bf16 rounding makes ties
    y = torch.randint(0, 10, (4000,), generator=g)
    top = p.max(1, keepdim=True).values
    tied = (p == top).sum(1) > 1
    assert tied.sum() > 10 and (p.topk(1, 1).indices.ravel().numpy() != p.numpy().argmax(1)).any()
    assert (1 - correct_top1(p.numpy(), y.numpy())).sum() == round(topk_error(p, y, 1) * 4000)


def test_findings_markdown_shows_the_deciding_interval_and_every_seeds_difference():
    import pandas as pd

    from vgg.results import findings_markdown
    base = {"claim_type": "better", "paper_section": "4.1", "paper_a": 28.7, "paper_b": 29.6, "ours_a": 22.39,
            "ours_b": 23.69, "diff": -1.3, "estimate": -1.3, "ci_low": -2.32, "ci_high": -0.28, "caveat": ""}
    df = pd.DataFrame([{**base, "claim": "B beats A", "verdict": "inconclusive (flips between seeds)",
                        "decided_by": "paired 95% bootstrap, seed 0 (2 seeds checked for a flip)"},
                       {**base, "claim": "D beats B", "verdict": "opposite", "decided_by": "unpaired 95% (...)"},
                       {**base, "claim": "LRN", "verdict": "opposite (seed level)", "estimate": -5.55,
                        "ci_low": -7.93, "ci_high": -3.16, "decided_by": "seed level, 3 seeds, 95% t"}])
    ev = pd.DataFrame([{"claim": "B beats A", "seeds": "0;1", "seed_diffs": "-1.30;+0.52"},
                       {"claim": "D beats B", "seeds": None, "seed_diffs": None},
                       {"claim": "LRN", "seeds": "0;1;2", "seed_diffs": "-6.22;-4.76;-5.66"}])
    lines = findings_markdown(df, ev).splitlines()
    assert lines[2].endswith("| -1.30 [-2.32, -0.28] (paired) | inconclusive (flips between seeds) "
                             "(seeds 0, 1: -1.30, +0.52) |")
    assert lines[3].endswith("(unpaired) | opposite |")
    assert lines[4].endswith("| -5.55 [-7.93, -3.16] (seed level) | opposite (seed level) "
                             "(seeds 0, 1, 2: -6.22, -4.76, -5.66) |")
    assert findings_markdown(df).splitlines()[4].endswith("| opposite (seed level) |")  # without the evidence


def test_decide_takes_the_first_rule_that_applies():
    from vgg.findings import decide, unpaired_interval
    from vgg.seeds import SeedCheck
    lo, hi = unpaired_interval(20.0, 1000, 25.0, 1000)
    half = 100 * 1.959964 * np.sqrt(0.2 * 0.8 / 1000 + 0.25 * 0.75 / 1000)  # by hand
    assert (lo, hi) == pytest.approx((-5 - half, -5 + half))
    d = decide("better", None, (-5.0, lo, hi), None)
    assert d.rule.startswith("unpaired") and d.verdict == "reproduced"
    assert decide("better", (-1.0, -2.0, 0.5), (-1.0, -4.0, 2.0), None).verdict == "inconclusive"
    three = SeedCheck([0, 1, 2], [-6.0, -5.0, -5.5], 0.5, [True] * 3, "better", 2.0)
    d = decide("better", (-6.0, -7.0, -5.0), (-6.0, -8.0, -4.0), three)
    assert d.rule.startswith("seed level") and d.verdict == "reproduced (seed level)"
    assert d.estimate == pytest.approx(-5.5)


def test_summary_counts_seed_flipped_verdicts_as_inconclusive(tmp_path):
    """summary.md's count line: 'inconclusive (flips between seeds)' is an inconclusive verdict."""
    import re
    import shutil

    import pandas as pd
    from conftest import ROOT, run_cli
    shutil.copytree(ROOT / "results" / "imagenette", tmp_path / "imagenette")
    fd = pd.read_csv(tmp_path / "imagenette" / "findings.csv")
    fd.loc[0, "verdict"] = "inconclusive (flips between seeds)"  # the case this test is about
    fd.to_csv(tmp_path / "imagenette" / "findings.csv", index=False)
    readme = (ROOT / "README.md").read_text()
    r = run_cli([str(ROOT / "experiments" / "summary.py"), "--preset", "imagenette", "--results", str(tmp_path)])
    assert r.returncode == 0, r.stderr[-2000:]
    assert (ROOT / "README.md").read_text() == readme  # a scratch results folder leaves the README alone
    line = re.search(r"(\d+) claims: (\d+) reproduced, (\d+) inconclusive, (\d+) opposite, (\d+) not tested",
                     (tmp_path / "imagenette" / "summary.md").read_text())
    n, rep, inc, opp, untested = map(int, line.groups())
    assert (n, rep, inc, opp, untested) == (len(fd), int((fd.verdict == "reproduced").sum()),
                                            int(fd.verdict.str.startswith("inconclusive").sum()),
                                            int(fd.verdict.str.startswith("opposite").sum()),
                                            int((fd.verdict == "not tested").sum()))
    assert rep + inc + opp + untested == n


def test_summary_has_the_seed_spread_of_seeds_csv(tmp_path):
    """summary.md's seed table: one row per net of seeds.csv, each seed's error, and a mean and sd
    equal to those of the per-seed rows (computed here independently)."""
    import re
    import shutil

    import pandas as pd
    from conftest import ROOT, run_cli
    shutil.copytree(ROOT / "results" / "imagenette", tmp_path / "imagenette")
    r = run_cli([str(ROOT / "experiments" / "summary.py"), "--preset", "imagenette", "--results", str(tmp_path)])
    assert r.returncode == 0, r.stderr[-2000:]
    md = (tmp_path / "imagenette" / "summary.md").read_text()
    sd = pd.read_csv(tmp_path / "imagenette" / "seeds.csv", dtype={"seed": str})
    runs = sd[sd.seed.str.isdigit()]
    assert "## Seed spread" in md
    for config, g in runs.groupby("config"):
        row = re.search(rf"^\| {re.escape(config)} \| (.*) \|$", md.split("## Seed spread")[1], re.M)
        cells = row.group(1).split(" | ")
        errs = g.sort_values("seed", key=lambda s: s.astype(int)).ours_top1_err.to_numpy()
        assert [float(c) for c in cells[:len(errs)]] == list(errs)
        mean, spread = map(float, cells[len(errs)].split(" +- "))
        assert abs(mean - errs.mean()) <= 0.006 and abs(spread - errs.std(ddof=1)) <= 0.006
        assert float(cells[-1]) == g.paper_top1_err.iloc[0]


def test_ema_and_ar1_noise_match_their_definitions():
    from conftest import load_script

    from vgg.plateau import ema
    rules = load_script("experiments/studies/plateau_rules.py")
    ar1_noise, sampling_sd = rules.ar1_noise, rules.sampling_sd
    a = np.array([[0.0, 1.0, 1.0, 0.0], [0.2, 0.2, 0.2, 0.2]])
    assert np.allclose(ema(a, 0.5), [[0.0, 0.5, 0.75, 0.375], [0.2, 0.2, 0.2, 0.2]])  # by hand
    assert np.array_equal(ema(a, 0.0), a)
    x = ar1_noise(np.random.default_rng(0), (400, 200), 0.02, 0.6)
    assert np.std(x) == pytest.approx(0.02, rel=0.03)
    lag1 = np.sum(x[:, 1:] * x[:, :-1]) / np.sum(x[:, :-1] ** 2)
    assert lag1 == pytest.approx(0.6, abs=0.02)
    assert sampling_sd(0.25, 3925) == pytest.approx(0.006911, abs=1e-6)  # sqrt(.25 * .75 / 3925)


def test_plateau_rules_on_the_published_imagenette_logs(tmp_path):
    """The noise split (sampling + training) and the rules' order, on the committed Imagenette logs:
    more patience or smoothing lowers the lr later and forgoes less of the fitted curve."""
    import pandas as pd
    from conftest import ROOT, run_cli
    logs = ROOT / "results" / "imagenette" / "logs"
    r = run_cli([str(ROOT / "experiments/studies/plateau_rules.py"), "--preset", "imagenette", "--logs", str(logs),
                 "--results", str(tmp_path), "--figures", str(tmp_path), "--sims", "300", "--val-images", "3925"])
    assert r.returncode == 0, r.stderr[-2000:]
    s = pd.read_csv(tmp_path / "imagenette" / "plateau_rules.csv")
    # the binomial sampling sd at the logs' mean first-lr error, computed here from the logs
    first = [log[log.lr == log.lr.iloc[0]].val_top1_err for log in map(pd.read_csv, logs.glob("*.log.csv"))]
    first = [f for f in first if len(f) >= 4]
    assert s.runs.iloc[0] == len(first) == 13
    p = float(np.mean(np.concatenate(first)))
    assert s.sampling_noise_points.iloc[0] == pytest.approx(100 * np.sqrt(p * (1 - p) / 3925), abs=0.006)
    assert s.training_noise_points.iloc[0] ** 2 + s.sampling_noise_points.iloc[0] ** 2 == pytest.approx(
        s.epoch_noise_points.iloc[0] ** 2, abs=0.05)
    mean = s[s.net == "mean over S=256 runs"].set_index(["patience", "ema_alpha"])
    raw = mean.xs(0.0, level="ema_alpha")
    assert raw.mean_first_drop.is_monotonic_increasing and raw.forgone_points.is_monotonic_decreasing
    assert mean.loc[(2, 0.5)].mean_first_drop > mean.loc[(2, 0.0)].mean_first_drop
    assert mean.loc[(2, 0.5)].forgone_points < mean.loc[(2, 0.0)].forgone_points
    assert set(s.net) - {"mean over S=256 runs"} == {f.name.removesuffix(".log.csv") for f in logs.glob("*.log.csv")}


def test_the_published_seed_entries_still_match_the_imagenette_preset():
    """Adding a preset field must not orphan the saved seed runs (hours of training each): the
    fingerprint stored with every published entry is the one the imagenette preset gives now."""
    from conftest import ROOT

    from vgg.protocol import get_preset
    from vgg.seeds import SEEDS_FILE, protocol_fingerprint
    with np.load(ROOT / "results" / "imagenette" / SEEDS_FILE) as z:
        saved, n = set(z["protocol"].tolist()), int(z["n"])
    assert n == 3925 and saved == {protocol_fingerprint(get_preset("imagenette"), "imagenette", n)}


def test_plateau_rules_names_the_fix_when_logs_or_val_images_are_missing(tmp_path):
    from conftest import ROOT, run_cli
    script = str(ROOT / "experiments/studies/plateau_rules.py")
    r = run_cli([script, "--preset", "imagenette", "--logs", str(tmp_path), "--results", str(tmp_path)])
    assert r.returncode == 2 and "no training logs" in r.stderr and "--logs" in r.stderr, r.stderr[-800:]
    r = run_cli([script, "--preset", "imagenette", "--logs", str(ROOT / "results" / "imagenette" / "logs"),
                 "--results", str(tmp_path), "--figures", str(tmp_path), "--sims", "10"])
    assert r.returncode == 2 and "--val-images" in r.stderr, r.stderr[-800:]
    assert not (tmp_path / "imagenette" / "plateau_rules.csv").exists()


def test_first_drop_effect_recovers_a_planted_slope_within_nets(tmp_path):
    """Errors made as net offset - 0.3 x first-drop epoch (+ noise): the within-net fit finds -0.3 whatever
    the nets' offsets; without the noise r = -1. A missing log exits 2 naming where to copy it from."""
    import pandas as pd
    from conftest import ROOT, run_cli
    script = str(ROOT / "experiments/studies/first_drop_effect.py")
    rng = np.random.default_rng(3)
    folder = tmp_path / "imagenette"
    rows = []
    for seed in range(3):
        logs = folder / "logs" / ("" if seed == 0 else f"seed{seed}")
        logs.mkdir(parents=True, exist_ok=True)
        for net, offset in (("A", 30.0), ("B", 20.0), ("D", 40.0)):
            drop = int(rng.integers(10, 30))
            lr = [0.01] * drop + [0.001] * 5 + [0.0001] * 3
            pd.DataFrame({"epoch": range(1, len(lr) + 1), "lr": lr}).to_csv(logs / f"{net}_S256.log.csv", index=False)
            rows.append({"config": net, "seed": str(seed), "ours_top1_err": offset - 0.3 * drop, "first": drop})
    seeds = pd.DataFrame(rows)
    extra = pd.DataFrame([{"config": "A", "seed": "mean", "ours_top1_err": 0.0}])  # summary rows are skipped
    pd.concat([seeds.drop(columns="first"), extra]).to_csv(folder / "seeds.csv", index=False)
    r = run_cli([script, "--preset", "imagenette", "--results", str(tmp_path), "--figures", str(tmp_path)])
    assert r.returncode == 0, r.stderr[-800:]
    out = pd.read_csv(folder / "first_drop_effect.csv")
    fit = out[out.net == "within-net fit"].iloc[0]
    assert fit.slope_points_per_epoch == pytest.approx(-0.3, abs=1e-3) and fit.r == pytest.approx(-1, abs=1e-3)
    assert fit.dof == 9 - 3 - 1
    runs = out[out.net != "within-net fit"]
    assert runs.first_drop.tolist() == seeds["first"].tolist()  # the epoch after which the lr first fell
    noisy = seeds.ours_top1_err + rng.normal(0, 1.0, len(seeds))
    pd.concat([seeds.drop(columns="first").assign(ours_top1_err=noisy), extra]).to_csv(folder / "seeds.csv",
                                                                                    index=False)
    assert run_cli([script, "--preset", "imagenette", "--results", str(tmp_path)]).returncode == 0
    fit = pd.read_csv(folder / "first_drop_effect.csv").query("net == 'within-net fit'").iloc[0]
    # independently: least squares on per-net centred values, by numpy
    d = seeds.assign(e=noisy)
    x = d["first"] - d.groupby("config")["first"].transform("mean")
    y = d.e - d.groupby("config").e.transform("mean")
    assert fit.slope_points_per_epoch == pytest.approx(np.polyfit(x, y, 1)[0], abs=1e-3)
    (folder / "logs" / "seed2" / "B_S256.log.csv").unlink()
    r = run_cli([script, "--preset", "imagenette", "--results", str(tmp_path)])
    assert r.returncode == 2 and "runs/imagenette/seed2/B_S256.log.csv" in r.stderr, r.stderr[-800:]
