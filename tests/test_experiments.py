"""The numbered experiment scripts end to end on the tiny preset: Table 3 trains the chain from
scratch and writes its CSV and figure; Tables 4-7 then train nothing; reruns are byte-identical."""
import sys

import pandas as pd
import pytest
from conftest import ROOT, load_script, run_cli

from vgg.results import paper_table

SCRIPTS = {3: "03_table3_single_scale.py", 4: "04_table4_multi_scale.py", 5: "05_table5_eval_methods.py",
           6: "06_table6_fusion.py", 7: "07_table7_state_of_the_art.py"}
PAPER = {3: "table3_single_scale", 4: "table4_multi_scale", 5: "table5_eval_methods", 6: "table6_fusion"}


def run_table(n, data, cwd):
    r = run_cli([str(ROOT / "experiments" / SCRIPTS[n]), "--preset", "tiny", "--data", str(data),
                 "--runs", "runs", "--results", "results", "--figures", "figures"], cwd=cwd)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


@pytest.fixture(scope="module")
def tables(small_data, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("tables")
    logs = {n: run_table(n, small_data, cwd).stderr for n in SCRIPTS}
    return cwd, logs


def test_table3_trains_the_chain_from_scratch_and_writes_csv_and_figures(tables):
    cwd, logs = tables
    assert logs[3].count("training runs/tiny/") == 13  # the whole init chain, nothing was there
    for name in ("table3.png", "training_curves.png"):
        assert (cwd / "figures" / "tiny" / name).stat().st_size > 10_000


@pytest.mark.parametrize("n", [4, 5, 6, 7])
def test_later_tables_train_nothing(tables, n):
    cwd, logs = tables
    assert "training" not in logs[n]
    assert (cwd / "figures" / "tiny" / f"table{n}.png").stat().st_size > 10_000


@pytest.mark.parametrize("n", [3, 4, 5, 6])
def test_every_paper_row_has_our_value_beside_the_paper(tables, n):
    cwd, _ = tables
    ours = pd.read_csv(cwd / "results" / "tiny" / f"table{n}.csv")
    paper = paper_table(PAPER[n])
    head = ours.iloc[:len(paper)]
    assert head["paper_top1_err"].tolist() == paper["top1_val_err"].tolist()
    assert head["ours_top1_err"].between(0, 100).all()
    assert "diff_top1" not in ours.columns  # a 10-class error minus a 1000-class one measures nothing
    assert {"preset", "dataset", "seed", "commit", "command"} <= set(ours.columns)
    assert (ours["preset"] == "tiny").all()
    assert "diff_top5" not in ours.columns  # top-5 over a proxy's classes is not the paper's 1000-class top-5


def test_table3_has_the_b5x5_control(tables):
    cwd, _ = tables
    t3 = pd.read_csv(cwd / "results" / "tiny" / "table3.csv")
    crop = t3[t3.method == "center-crop"].set_index("config")
    assert {"B", "B-5x5", "B-5x5 minus B"} <= set(crop.index)
    assert crop.loc["B-5x5 minus B", "paper_top1_err"] == 7.0
    assert crop.loc["B-5x5 minus B", "ours_top1_err"] == pytest.approx(
        crop.loc["B-5x5", "ours_top1_err"] - crop.loc["B", "ours_top1_err"], abs=0.011)


def test_table7_pairs_ours_with_the_papers_same_net_and_method(tables):
    """Our best single net and fusion beside the paper's value for the same net and method (Tables 5-6);
    the paper's VGG rows with ours for the same nets and method; the literature copied, ours empty."""
    cwd, _ = tables
    t7 = pd.read_csv(cwd / "results" / "tiny" / "table7.csv")
    t5 = pd.read_csv(cwd / "results" / "tiny" / "table5.csv")
    t6 = pd.read_csv(cwd / "results" / "tiny" / "table6.csv")
    best1, bestf = t5.loc[t5.ours_top1_err.idxmin()], t6.loc[t6.ours_top1_err.idxmin()]
    assert (t7.ours_top1_err.iloc[0], t7.paper_top1_err.iloc[0]) == (best1.ours_top1_err, best1.paper_top1_err)
    assert (t7.ours_top1_err.iloc[1], t7.paper_top1_err.iloc[1]) == (bestf.ours_top1_err, bestf.paper_top1_err)
    paper = paper_table("table7_state_of_the_art")
    copied = t7.iloc[2:].reset_index(drop=True)
    assert copied.paper_row.tolist() == paper.method.tolist()
    assert copied.paper_top5_test_err.fillna(-1).tolist() == paper.top5_test_err.fillna(-1).tolist()
    vgg = copied.paper_row.str.startswith("VGG")
    assert copied.ours_top1_err[vgg].notna().all() and copied.ours_top1_err[~vgg].isna().all()
    e = t5.set_index(["config", "method"]).loc[("E", "multi-crop & dense")]
    assert copied.set_index("paper_row").loc["VGG (1 net, multi-crop & dense eval.)", "ours_top1_err"] == \
        e.ours_top1_err
    assert "diff_top5" not in t7.columns  # top-5 over 10 classes is not comparable with 1000 classes


def test_findings_tests_every_claim_paired_on_the_cached_posteriors(tables, small_data):
    cwd, _ = tables
    args = ["--preset", "tiny", "--data", str(small_data), "--runs", "runs", "--results", "results"]
    r = run_cli([str(ROOT / "experiments" / "findings.py"), *args], cwd=cwd)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "training" not in r.stderr  # the chain's nets and posteriors are reused
    f = pd.read_csv(cwd / "results" / "tiny" / "findings.csv")
    ev = pd.read_csv(cwd / "results" / "tiny" / "findings_evidence.csv")
    from vgg.findings import VERDICT_COLUMNS, claims
    from vgg.plan import benjamini_hochberg, image_test, margin, p_values
    assert len(f) == len(ev) == len(claims()) and f.claim.tolist() == ev.claim.tolist()
    assert f.columns.tolist()[:len(VERDICT_COLUMNS)] == VERDICT_COLUMNS  # one verdict column; the rest is evidence
    untested = f.verdict == "not tested"  # rows only the analysis plan's protocol makes (tiny has no controls)
    assert untested.sum() == 5 and (ev.test[untested] == "not tested").all()
    f, ev = f[~untested].reset_index(drop=True), ev[~untested].reset_index(drop=True)
    assert (ev.test == "paired").all() and f.decided_by.str.startswith("paired per image, one seed").all()
    # a comparison with a net at chance (within 2 points of 1 - 1/classes) tests nothing: inconclusive
    classes = len(list((small_data / "val").iterdir()))
    chance = f[["ours_a", "ours_b"]].max(axis=1) >= 100 * (1 - 1 / classes) - 2
    assert (f.verdict[chance] == "inconclusive (a net at chance)").all()
    assert f.caveat[chance].str.contains("at chance").all()
    assert f.verdict[~chance].isin(["reproduced", "opposite", "inconclusive"]).all()
    # the plan's verdicts, recomputed: per-image tests, Benjamini-Hochberg over both sides of every claim
    from vgg.findings import pick, read_tables, side_key
    from vgg.seeds import load_per_image
    saved, _ = load_per_image(cwd / "results" / "tiny")
    tabs = read_tables(cwd / "results" / "tiny")
    p_paper, p_against = [], []
    for c in claims().set_index("claim").loc[f.claim[~chance]].reset_index().itertuples():
        t = image_test(saved[side_key(c.table_a, c.row_a)], saved[side_key(c.table_b, c.row_b)])
        b_err = 100 * (1 - saved[side_key(c.table_b, c.row_b)].mean())
        pp, pa = p_values(c.claim_type, t, margin(b_err) if c.claim_type != "better" else 0.0)
        p_paper.append(pp)
        p_against.append(pa)
        assert pick(tabs, c.table_a, c.row_a) is not None
    adj = benjamini_hochberg(p_paper + p_against)
    k = len(p_paper)
    expect = ["reproduced" if adj[i] < 0.05 else "opposite" if adj[k + i] < 0.05 else "inconclusive" for i in range(k)]
    assert f.verdict[~chance].tolist() == expect
    assert set(f["claim_type"]) == {"better", "no better", "tie"}
    assert (f.ci_low <= f.estimate + 1e-9).all() and (f.estimate <= f.ci_high + 1e-9).all()
    assert (f.estimate - f["diff"]).abs().max() <= 0.011
    assert ev.mcnemar_p.between(0, 1).all()
    lrn = f.set_index("claim").loc["LRN does not improve net A"]
    assert (lrn.paper_a, lrn.paper_b, lrn.claim_type) == (29.7, 29.6, "no better")
    assert lrn["diff"] == pytest.approx(lrn.ours_a - lrn.ours_b, abs=0.011)
    t3 = pd.read_csv(cwd / "results" / "tiny" / "table3.csv", dtype={"train_scale": str}).set_index("config")
    assert lrn.ours_a == pytest.approx(t3.loc["A-LRN", "ours_top1_err"], abs=0.006)  # same numbers as the table
    assert r.stdout.count("\n| ") >= len(f) + 1  # the Markdown table for the README
    # the saved per-image correctness gives the same verdicts without checkpoints or data
    (cwd / "runs").rename(cwd / "runs-moved")
    try:
        r2 = run_cli([str(ROOT / "experiments" / "findings.py"), "--preset", "tiny", "--results", "results",
                      "--from-saved"], cwd=cwd)
    finally:
        (cwd / "runs-moved").rename(cwd / "runs")
    assert r2.returncode == 0, r2.stderr[-2000:]
    again = pd.read_csv(cwd / "results" / "tiny" / "findings.csv")
    again = again[again.verdict != "not tested"].reset_index(drop=True)
    pd.testing.assert_frame_equal(again.drop(columns=["command"]), f.drop(columns=["command"]))
    # rows whose per-image correctness was never saved are tested unpaired, from the tables' error rates
    from vgg.seeds import load_per_image, save_per_image
    folder = cwd / "results" / "tiny"
    saved, classes = load_per_image(folder)
    dropped = "table4: config == 'C' and train_scale == '384' and test_scales == '352;384;416'"
    save_per_image(folder, {k: v for k, v in saved.items() if k != dropped}, classes)
    try:
        r3 = run_cli([str(ROOT / "experiments" / "findings.py"), "--preset", "tiny", "--results", "results",
                      "--from-saved"], cwd=cwd)
        assert r3.returncode == 0 and "tested unpaired" in r3.stderr, r3.stderr[-2000:]
        f3 = pd.read_csv(folder / "findings.csv").set_index("claim")
        hit = [c.claim for c in claims().itertuples() if dropped.endswith(c.row_a) and c.table_a == "table4"
               or dropped.endswith(c.row_b) and c.table_b == "table4"]
        assert hit and f3.loc[hit].decided_by.str.startswith("unpaired").all()
        rest = f3.drop(index=hit)
        assert rest.decided_by[rest.verdict != "not tested"].str.startswith("paired per image").all()
    finally:
        save_per_image(folder, saved, classes)


def test_dense_geometry_flags_only_what_is_not_the_papers_geometry():
    import vgg.findings as mod
    from vgg.protocol import get_preset
    proxy, nette, paper = get_preset("proxy"), get_preset("imagenette"), get_preset("paper")
    assert mod.dense_off_geometry(proxy, "dense", [256, 384, 512])    # conv5 2x2 in training
    assert not mod.dense_off_geometry(proxy, "dense", [256])          # Q=37 px: conv5 2x2 as in training
    assert not mod.dense_off_geometry(proxy, "multi-crop", [384])
    for preset in (nette, paper):
        assert not mod.dense_off_geometry(preset, "dense", [224, 256, 288, 352, 384, 416, 512])
    assert mod.two_se_verdict("better", -2.0, 1.2) == "reproduced"
    assert mod.two_se_verdict("better", 1.5, 1.2) == "not reproduced"
    assert mod.two_se_verdict("tie", 15.0, 1.4) == "not reproduced"  # E 15 points behind D is no tie
    assert mod.two_se_verdict("tie", -1.0, 1.4) == "reproduced"
    # the measured penalty: a dense row is flagged where dense_geometry.csv found dense > 3 points worse
    geometry = pd.DataFrame({"net": ["D_S256-512"] * 3 + ["E_S256-512"] * 3, "test_scale": [256, 384, 512] * 2,
                             "tested_in_tables": True, "dense_minus_crop": [-2.2, -3.5, 7.2, 0.9, 3.4, 16.6]})
    t5 = pd.Series({"config": "D", "method": "dense", "test_scales": "256;384;512"})
    assert mod.measured_dense_penalty(geometry, "table5", t5) == ["D_S256-512 Q=512 +7.2"]
    assert mod.measured_dense_penalty(geometry, "table5", t5.replace("dense", "multi-crop")) == []
    t6 = pd.Series({"models": "D/256-512/256;384;512 + E/256-512/256;384;512", "method": "dense"})
    assert mod.measured_dense_penalty(geometry, "table6", t6) == [
        "D_S256-512 Q=512 +7.2", "E_S256-512 Q=384 +3.4", "E_S256-512 Q=512 +16.6"]
    t3 = pd.Series({"config": "D", "train_scale": "256-512", "test_scale": "384", "method": "dense"})
    assert mod.caveat(nette, geometry, [("table3", t3)], "8x8") == ""
    assert "D_S256-512 Q=512 +7.2" in mod.caveat(nette, geometry, [("table3", t3), ("table5", t5)], "8x8")
    assert mod.caveat(nette, None, [("table5", t5)], "8x8") == ""
    assert mod.at_chance(90.9, 10) and mod.at_chance(88.5, 10) and not mod.at_chance(80.0, 10)
    assert not mod.at_chance(90.9, None)  # correctness saved before the class count was recorded
    # a dense_geometry.csv made from another chain (its Q = S error is not Table 3's) is found stale
    geometry["dense_top1_err"] = [44.0, 43.95, 50.1, 60.0, 57.61, 70.2]
    table3 = pd.DataFrame({"config": ["D", "E", "B"], "train_scale": ["256-512"] * 2 + ["256"],
                           "test_scale": ["384"] * 2 + ["256"], "method": "dense",
                           "ours_top1_err": [43.95, 57.61, 42.93]})
    assert mod.stale_geometry_nets(geometry, table3) == []  # B is not in this dense_geometry: nothing to compare
    table3.loc[1, "ours_top1_err"] = 41.2  # E retrained
    assert mod.stale_geometry_nets(geometry, table3) == ["E_S256-512"]
    assert mod.stale_geometry_nets(geometry, table3.assign(method="center-crop")) == []


def test_combined_method_from_cache_equals_running_both_methods(tables, small_data):
    import numpy as np

    from vgg import checkpoint as ck
    from vgg.data import ColourStats
    from vgg.evaluate import cached_posteriors, posteriors, scales_px
    from vgg.loaders import load_datasets
    from vgg.protocol import get_preset
    cwd, _ = tables
    path = cwd / "runs" / "tiny" / "D_S256-512.pt"
    preset = get_preset("tiny")
    data = load_datasets(small_data, preset)
    cached, y = cached_posteriors(path, "multi-crop & dense", [256, 384, 512], data)
    ckpt = ck.load_training_checkpoint(path)
    direct, y2 = posteriors(ck.model_from_checkpoint(ckpt), data, ColourStats.from_dict(ckpt["colour"]),
                            "multi-crop & dense", scales_px(preset, [256, 384, 512]))
    assert (y == y2).all()
    assert np.abs(cached - direct).max() < 1e-5


def test_rerun_with_checkpoints_present_is_byte_identical(tables, small_data):
    cwd, _ = tables
    before = (cwd / "results" / "tiny" / "table3.csv").read_bytes()
    (cwd / "runs" / "tiny" / "posteriors").rename(cwd / "posteriors-moved")  # re-evaluate, not re-read
    r = run_table(3, small_data, cwd)
    assert "training" not in r.stderr
    assert (cwd / "results" / "tiny" / "table3.csv").read_bytes() == before


def test_schedule_study_continues_the_chain_nets_and_agrees_with_table3(tables, small_data):
    from vgg.checkpoint import load_training_checkpoint
    cwd, _ = tables
    r = run_cli([str(ROOT / "experiments/studies/schedule_study.py"), "--preset", "tiny", "--data", str(small_data),
                 "--runs", "runs", "--results", "results", "--figures", "figures"], cwd=cwd)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "training runs/tiny/" not in r.stderr  # the chain's nets are reused, not retrained
    s = pd.read_csv(cwd / "results" / "tiny" / "schedule_study.csv")
    assert len(s) == 10 and s.groupby("schedule").epochs.unique().map(list).to_dict() == {"preset": [1],
                                                                                        "2x preset": [2]}
    assert s.set_index("config").loc[["A", "D", "E"], "layers"].unique().tolist() == [11, 16, 19]
    t3 = pd.read_csv(cwd / "results" / "tiny" / "table3.csv", dtype={"train_scale": str})
    t3 = t3[(t3.method == "dense") & (t3.train_scale == "256")].set_index("config").ours_top1_err
    preset_rows = s[s.schedule == "preset"].set_index("config").ours_top1_err
    assert (preset_rows - t3.loc[preset_rows.index]).abs().max() < 0.011
    # the dense penalty at Q = S is the two error columns' difference; S-32 and S+32 are measured too
    assert ((s.ours_top1_err - s.ours_top1_err_center_crop) - s.dense_minus_crop_Q256).abs().max() < 0.011
    assert s[["dense_minus_crop_Q224", "dense_minus_crop_Q288"]].notna().all().all()
    chain = load_training_checkpoint(cwd / "runs" / "tiny" / "D_S256.pt")
    longer = load_training_checkpoint(cwd / "runs" / "tiny" / "schedule_study" / "D_S256_2ep.pt")
    assert longer["log"][0] == chain["log"][0] and longer["epoch"] == 2  # continued, not restarted
    assert (cwd / "figures" / "tiny" / "schedule_study.png").stat().st_size > 10_000
    claims = pd.read_csv(cwd / "results" / "tiny" / "schedule_study_claims.csv")
    assert len(claims) == 8 and set(claims.verdict) <= {"reproduced", "opposite", "inconclusive"}
    by = s.set_index(["config", "schedule"]).ours_top1_err
    for r in claims.itertuples():  # the paired rows are the study's own errors, a - b
        a, b = r.claim.split()[0], r.claim.split()[-1]
        assert abs(r.ours_a - by[a, r.schedule]) < 0.011 and abs(r.ours_b - by[b, r.schedule]) < 0.011
        assert r.ci_low <= r.diff <= r.ci_high


def test_finetune_study_continues_the_finetuned_nets_and_agrees_with_the_tables(tables, small_data):
    from vgg.checkpoint import load_training_checkpoint
    cwd, _ = tables
    args = [str(ROOT / "experiments/studies/finetune_study.py"), "--preset", "tiny", "--data", str(small_data),
            "--runs", "runs", "--results", "results", "--figures", "figures"]
    bad = run_cli(args + ["--factor", "1"], cwd=cwd)
    assert bad.returncode == 2 and "--factor must be 2 or more" in bad.stderr
    r = run_cli(args + ["--factor", "2"], cwd=cwd)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "training runs/tiny/" not in r.stderr  # the chain's nets are reused, not retrained
    s = pd.read_csv(cwd / "results" / "tiny" / "finetune_study.csv", dtype={"test_scales": str})
    assert s.groupby("schedule").epochs.unique().map(list).to_dict() == {"preset": [1], "2x preset": [2]}
    geo = s[s.evaluation == "dense vs centre crop"]
    assert len(geo) == 2 * 4 * 3  # 2 schedules x 4 nets x the 3 Q Tables 3-4 test each at
    assert (geo.dense_minus_crop - (geo.ours_top1_err - geo.center_crop_top1_err)).abs().max() < 0.011
    # the preset rows are the tables' own numbers: Table 5 for the jittered nets, dense_geometry's Q
    t5 = pd.read_csv(cwd / "results" / "tiny" / "table5.csv").set_index(["config", "method"]).ours_top1_err
    mine = s[(s.schedule == "preset") & s.evaluation.str.startswith("Table 5")]
    assert len(mine) == 6
    for row in mine.itertuples():
        assert abs(row.ours_top1_err - t5[(row.net[0], row.evaluation.removeprefix("Table 5 "))]) < 0.011
    t3 = pd.read_csv(cwd / "results" / "tiny" / "table3.csv", dtype={"train_scale": str, "test_scale": str})
    d384 = t3[(t3.config == "D") & (t3.train_scale == "384") & (t3.method == "dense")].ours_top1_err.iloc[0]
    assert abs(geo[(geo.schedule == "preset") & (geo.net == "D_S384") & (geo.test_scales == "384")]
               .ours_top1_err.iloc[0] - d384) < 0.011
    chain = load_training_checkpoint(cwd / "runs" / "tiny" / "D_S256-512.pt")
    longer = load_training_checkpoint(cwd / "runs" / "tiny" / "finetune_study" / "D_S256-512_2ep.pt")
    assert longer["log"][0] == chain["log"][0] and longer["epoch"] == 2  # continued, not restarted
    assert longer["optimizer"]["param_groups"][0]["lr"] <= 1e-3  # the fine-tuning lr, not a fresh 1e-2
    assert (cwd / "figures" / "tiny" / "finetune_study.png").stat().st_size > 10_000


def test_crop_study_scores_the_d_line_as_the_tables_do(tables, small_data):
    cwd, _ = tables
    args = [str(ROOT / "experiments/studies/crop_study.py"), "--preset", "tiny", "--data", str(small_data),
            "--runs", "runs", "--results", "results", "--figures", "figures"]
    bad = run_cli(args + ["--against", "tiny99"], cwd=cwd)
    assert bad.returncode == 2 and "unknown preset 'tiny99'" in bad.stderr
    r = run_cli(args + ["--against", "tiny"], cwd=cwd)  # the same preset twice: two equal halves
    assert r.returncode == 0, r.stderr[-2000:]
    assert "training runs/tiny/" not in r.stderr  # the chain's nets are reused
    s = pd.read_csv(cwd / "results" / "tiny" / "crop_study.csv", dtype={"test_scales": str})
    geo = s[s.evaluation == "dense vs centre crop"]
    assert len(geo) == 2 * 3 * 3  # 2 presets x 3 nets x the 3 Q Tables 3-4 test each at
    assert (geo.dense_minus_crop - (geo.ours_top1_err - geo.center_crop_top1_err)).abs().max() < 0.011
    half = len(s) // 2
    cols = ["net", "evaluation", "test_scales", "ours_top1_err"]
    assert s[cols].iloc[:half].reset_index(drop=True).equals(s[cols].iloc[half:].reset_index(drop=True))
    t5 = pd.read_csv(cwd / "results" / "tiny" / "table5.csv").set_index(["config", "method"]).ours_top1_err
    mine = s.iloc[:half][s.iloc[:half].evaluation.str.startswith("Table 5")]
    assert len(mine) == 3
    for row in mine.itertuples():
        assert abs(row.ours_top1_err - t5[("D", row.evaluation.removeprefix("Table 5 "))]) < 0.011
    t3 = pd.read_csv(cwd / "results" / "tiny" / "table3.csv", dtype={"train_scale": str, "test_scale": str})
    d256 = t3[(t3.config == "D") & (t3.train_scale == "256") & (t3.method == "dense")].ours_top1_err.iloc[0]
    assert abs(geo[(geo.net == "D_S256") & (geo.test_scales == "256")].ours_top1_err.iloc[0] - d256) < 0.011
    assert (cwd / "figures" / "tiny" / "crop_study.png").stat().st_size > 10_000


def test_dense_geometry_covers_every_tested_scale_of_every_net(tables, small_data):
    cwd, _ = tables
    r = run_cli([str(ROOT / "experiments/studies/dense_geometry.py"), "--preset", "tiny", "--data", str(small_data),
                 "--runs", "runs", "--results", "results", "--figures", "figures", "--unrounded"], cwd=cwd)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "training" not in r.stderr
    g = pd.read_csv(cwd / "results" / "tiny" / "dense_geometry.csv")
    tested = g[g.tested_in_tables]
    # Table 3 + 4: 13 nets... every (net, Q) pair: A/A-LRN 1 Q, B/C/D/E S=256 3 Q, S=384 and jitter 3 Q each
    assert len(tested) == 2 * 1 + 4 * 3 + 3 * 3 + 3 * 3
    assert (g.dense_minus_crop - (g.dense_top1_err - g["center-crop_top1_err"])).abs().max() < 0.011
    assert set(g[~g.tested_in_tables].net) <= {"D_S256", "D_S256-512"}
    assert "dense minus centre crop at the Q the tables test: max" in r.stdout
    assert (cwd / "figures" / "tiny" / "dense_geometry.png").stat().st_size > 10_000


def test_init_study_with_fewer_epochs_takes_the_chain_nets_first_epochs(tables, small_data):
    cwd, _ = tables
    r = run_cli([str(ROOT / "experiments/studies/init_study.py"), "--preset", "tiny", "--data", str(small_data),
                 "--runs", "runs", "--results", "results", "--figures", "figures", "--epochs", "1"], cwd=cwd)
    assert r.returncode == 0, r.stderr[-2000:]
    s = pd.read_csv(cwd / "results" / "tiny" / "init_study.csv")
    assert len(s) == 5 and (s.epoch == 1).all() and (s.study_epochs == 1).all()
    assert set(s.init) == {"N(0, 1e-2)", "Glorot", "from trained A"}
    # without --epochs: the preset's schedule, so the chain's A and D are two of the runs
    r = run_cli([str(ROOT / "experiments/studies/init_study.py"), "--preset", "tiny", "--data", str(small_data),
                 "--runs", "runs", "--results", "results", "--figures", "figures"], cwd=cwd)
    assert r.returncode == 0, r.stderr[-2000:]
    s = pd.read_csv(cwd / "results" / "tiny" / "init_study.csv")
    chain_a = pd.read_csv(cwd / "runs" / "tiny" / "A_S256.log.csv")
    glorot_a = s[(s.config == "A") & (s.init == "Glorot")]
    assert glorot_a.val_top1_err.tolist() == chain_a.val_top1_err.round(4).tolist()
    assert sorted(p.name for p in (cwd / "runs" / "tiny" / "init_study").glob("*.pt")) == [
        "A_normal_1ep.pt", "D_glorot_1ep.pt", "D_normal_1ep.pt"]


def test_summary_has_every_table_and_the_findings(tables, small_data):
    cwd, _ = tables
    for script, args in (("02_table2_params.py", ["--results", "results/tiny", "--figures", "figures/tiny"]),
                         ("findings.py", ["--data", str(small_data), "--runs", "runs", "--results", "results"]),
                         ("summary.py", ["--results", "results"])):
        r = run_cli([str(ROOT / "experiments" / script), "--preset", "tiny", *args], cwd=cwd)
        assert r.returncode == 0, r.stderr[-2000:]
    md = (cwd / "results" / "tiny" / "summary.md").read_text()
    for head in ("Table 2", "Table 3", "Table 4", "Table 5", "Table 6", "Table 7", "Findings"):
        assert f"## {head}" in md
    assert md.count("\n| ") >= 26 + 6 * 3


def test_concurrent_table_scripts_train_each_net_once_and_agree_with_a_serial_run(tables, small_data, tmp_path):
    """`make -j2 table3 table4`: two processes share one chain; each net is trained exactly once
    (the other waits on its lock and reuses it) and the tables equal the serial run's."""
    import os
    import subprocess
    serial, _ = tables
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, str(ROOT / "experiments" / SCRIPTS[n]), "--preset", "tiny",
                               "--data", str(small_data), "--runs", "runs", "--results", "results",
                               "--figures", "figures"], cwd=tmp_path, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for n in (3, 4)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-1500:] + outs[1][1][-1500:]
    said = outs[0][1] + outs[1][1]
    trained = [line for line in said.splitlines() if line.startswith("training runs/tiny/")]
    assert len(trained) == 13 and len(set(trained)) == 13, trained
    for n in (3, 4):
        ours = pd.read_csv(tmp_path / "results" / "tiny" / f"table{n}.csv").drop(columns=["command"])
        ref = pd.read_csv(serial / "results" / "tiny" / f"table{n}.csv").drop(columns=["command"])
        pd.testing.assert_frame_equal(ours, ref)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


def test_seeds_train_their_own_chains_and_feed_table3_and_findings(tables, small_data):
    import shutil

    import numpy as np

    from vgg.checkpoint import load_training_checkpoint
    cwd, _ = tables
    out = cwd / "results-seeds" / "tiny"  # its own folder: the other tests read results/ without seeds
    out.mkdir(parents=True)
    for n in (3, 4, 5, 6):
        shutil.copy(cwd / "results" / "tiny" / f"table{n}.csv", out)
    common = ["--preset", "tiny", "--data", str(small_data), "--runs", "runs", "--results", "results-seeds",
              "--figures", "figures-seeds"]
    r = run_cli([str(ROOT / "experiments/studies/seeds.py"), *common, "--seeds", "0,1", "--nets", "A,B"], cwd=cwd)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr.count("training runs/tiny/seed1/") == 2  # A and B of seed 1, each from its own A
    assert "training runs/tiny/A_S256" not in r.stderr  # seed 0 is the main chain's
    a0, a1 = (load_training_checkpoint(cwd / "runs" / "tiny" / p) for p in ("A_S256.pt", "seed1/A_S256.pt"))
    b1 = load_training_checkpoint(cwd / "runs" / "tiny" / "seed1" / "B_S256.pt")
    assert (a0["spec"]["seed"], a1["spec"]["seed"]) == (0, 1)
    assert "seed1/A_S256.pt" in b1["spec"]["init_from"]
    assert not all(np.array_equal(v, a1["state_dict"][k]) for k, v in a0["state_dict"].items())
    s = pd.read_csv(out / "seeds.csv", dtype={"seed": str})
    assert s.seed.tolist() == ["0", "0", "1", "1", "mean", "sd", "mean", "sd"]
    per = s[s.seed.isin(["0", "1"])].set_index(["config", "seed"]).ours_top1_err
    t3 = pd.read_csv(out / "table3.csv", dtype={"train_scale": str})
    t3 = t3[(t3.method == "dense") & (t3.train_scale == "256")].set_index("config").ours_top1_err
    assert per.loc[("A", "0")] == t3.loc["A"] and per.loc[("B", "0")] == t3.loc["B"]
    stat = s[s.seed.isin(["mean", "sd"])].set_index(["config", "seed"]).ours_top1_err
    for c in ("A", "B"):
        v = np.array([per.loc[(c, "0")], per.loc[(c, "1")]])
        assert stat.loc[(c, "mean")] == pytest.approx(v.mean(), abs=0.006)
        assert stat.loc[(c, "sd")] == pytest.approx(v.std(ddof=1), abs=0.006)
    assert (cwd / "figures-seeds" / "tiny" / "seeds.png").stat().st_size > 10_000
    # Table 3 again: mean and sd beside seed 0's S=256 rows of the seeded configs only
    r = run_cli([str(ROOT / "experiments" / SCRIPTS[3]), *common], cwd=cwd)
    assert r.returncode == 0 and "training" not in r.stderr, r.stderr[-2000:]
    t3 = pd.read_csv(out / "table3.csv", dtype={"train_scale": str, "seeds": str})
    seeded = t3[t3.seeds.fillna("") != ""]
    assert sorted(seeded.config) == ["A", "B"] and (seeded.seeds == "0;1").all()
    assert seeded.set_index("config").ours_top1_err_seed_mean.to_dict() == {
        c: stat.loc[(c, "mean")] for c in ("A", "B")}
    assert (cwd / "figures-seeds" / "tiny" / "table3.png").stat().st_size > 10_000  # with error bars
    # findings: the depth claim B vs A lists both seeds' differences; its verdict follows the rule
    r = run_cli([str(ROOT / "experiments" / "findings.py"), *common[:-2]], cwd=cwd)
    assert r.returncode == 0, r.stderr[-2000:]
    f = pd.read_csv(out / "findings.csv").set_index("claim")
    ev = pd.read_csv(out / "findings_evidence.csv", dtype={"seeds": str}).set_index("claim")
    f = f.join(ev.drop(columns=[c for c in ev.columns if c in f.columns]))  # both carry the provenance
    ba = f.loc["error decreases with depth: B (13 layers) beats A (11)"]
    diffs = [float(d) for d in ba.seed_diffs.split(";")]
    assert ba.seeds == "0;1"
    assert diffs == pytest.approx([per.loc[("B", s_)] - per.loc[("A", s_)] for s_ in ("0", "1")], abs=0.011)
    flips = (diffs[0] < 0) != (diffs[1] < 0)
    chance = 100 * (1 - 1 / len(list((small_data / "val").iterdir()))) - 2
    assert ba.verdict == ("inconclusive (a net at chance)" if max(ba.ours_a, ba.ours_b) >= chance else
                          "inconclusive (flips between seeds)" if flips and ba.paired_verdict != "inconclusive"
                          else ba.paired_verdict)
    assert (f.seeds.fillna("") != "").sum() == 1  # the only claim between two seeded S=256 rows
    assert f.loc["error decreases with depth: D (16 layers) beats B (13)"].seeds != "0;1"  # D has one seed
    # A fresh clone (no checkpoints: runs-fresh is empty) asked for one more seed: seed 0 comes from
    # the published chain (per_image_top1.npz), seed 1 from seeds_top1.npz; only seed 2 is trained.
    fresh = [*common[:4], "--runs", "runs-fresh", *common[6:]]
    # (NETS in another order than Table 3's: the table still lists A before B)
    r = run_cli([str(ROOT / "experiments/studies/seeds.py"), *fresh, "--seeds", "0,1,2", "--nets", "B,A"], cwd=cwd)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr.count("training runs-fresh/tiny/seed2/") == 2, r.stderr[-2000:]
    assert r.stderr.count("training ") == 2  # nothing of seeds 0 and 1
    s3 = pd.read_csv(out / "seeds.csv", dtype={"seed": str})
    assert s3.seed.tolist() == ["0", "0", "1", "1", "2", "2", "mean", "sd", "mean", "sd"]
    assert s3.config.tolist() == ["A", "B"] * 3 + ["A", "A", "B", "B"]
    again = s3[s3.seed.isin(["0", "1"])].set_index(["config", "seed"]).ours_top1_err
    pd.testing.assert_series_equal(again, per)
    assert s3.trained_with.iloc[:6].str.contains(", ").all()  # machine and precision of every seed's net
    r = run_cli([str(ROOT / "experiments" / SCRIPTS[3]), *fresh, "--seed-spread-only"], cwd=cwd)
    assert r.returncode == 0 and "training" not in r.stderr, r.stderr[-2000:]
    t3b = pd.read_csv(out / "table3.csv", dtype={"train_scale": str, "seeds": str})
    assert (t3b[t3b.seeds.fillna("") != ""].seeds == "0;1;2").all()
    assert list(t3b.columns) == list(t3.columns) and (t3b.commit == t3.commit).all()  # the table's own provenance
    pd.testing.assert_series_equal(t3b.ours_top1_err, t3.ours_top1_err)


def test_compare_presets_puts_each_presets_row_beside_the_papers(tables):
    import shutil
    cwd, _ = tables
    shutil.copytree(cwd / "results" / "tiny", cwd / "results-compare" / "twin")  # a second preset, same rows
    shutil.copytree(cwd / "results" / "tiny", cwd / "results-compare" / "tiny")
    r = run_cli([str(ROOT / "experiments/studies/compare_presets.py"), "--presets", "tiny,twin",
                 "--results", "results-compare"], cwd=cwd)
    assert r.returncode == 0, r.stderr[-2000:]
    md = (cwd / "results-compare" / "presets_side_by_side.md").read_text()
    t3 = pd.read_csv(cwd / "results" / "tiny" / "table3.csv", dtype=str).set_index(["config", "train_scale", "method"])
    d = t3.loc[("D", "256", "dense")]
    assert f"| D S=256 Q=256 dense | {d.paper_top1_err} | {d.ours_top1_err} | {d.ours_top1_err} |" in md
    rows = sum(len(pd.read_csv(cwd / "results" / "tiny" / f"table{n}.csv")) for n in (3, 4, 5, 6))
    assert md.count("\n| ") == rows + 4 * 2  # every row once (matched, not duplicated) + 2 header lines a table
    assert "not ImageNet numbers" in md


def test_fused_layers_study_checks_equality_and_times_every_variant(tmp_path):
    sample = ROOT / "vgg" / "samples" / "cifar10-sample"
    r = run_cli([str(ROOT / "experiments/studies/fused_layers.py"), "--preset", "tiny", "--configs", "A,D",
                 "--repeats", "1", "--steps", "1", "--images", "1", "--data", str(sample), "--epochs", "2",
                 "--epoch-config", "A", "--runs", "runs", "--results", "results", "--figures", "figures"],
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    df = pd.read_csv(tmp_path / "results" / "tiny" / "fused_layers.csv")
    # A's step; D's step, dense and multi-crop evaluation; A's training epochs on the sample's images
    assert df.config.tolist() == ["A", "D", "D", "D", "A"]
    assert df.bitwise_equal.all()  # the last row: six trainings, two per variant, end with the same weights
    speeds = df[["fused_img_s", "relu_after_pool_img_s", "relu_before_pool_img_s"]]
    assert (speeds > 0).all().all()
    pairs = {"fused_vs_before": ("fused", "relu_before_pool"), "fused_vs_after": ("fused", "relu_after_pool"),
             "after_vs_before": ("relu_after_pool", "relu_before_pool")}
    for ratio, (a, b) in pairs.items():
        # within the ratio's rounding to 3 decimals (a tiny ratio: one noisy timing) and the rates' own
        assert ((df[ratio] - df[f"{a}_img_s"] / df[f"{b}_img_s"]).abs() <= 0.02 * df[ratio] + 5e-4).all()


def test_epoch_rates_keeps_real_epoch_logs_that_reproduce_time_reads(tmp_path):
    sample = ROOT / "vgg" / "samples" / "cifar10-sample"
    r = run_cli([str(ROOT / "experiments/studies/epoch_rates.py"), "--preset", "tiny", "--data", str(sample),
                 "--configs", "A,B-5x5,D-fc", "--epochs", "2", "--label", "today", "--runs", "runs",
                 "--results", "results", "--figures", "figures"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    folder = tmp_path / "results" / "tiny" / "epoch_rates" / "today"
    rates = pd.read_csv(folder / "rates.csv")
    assert rates.config.tolist() == ["A", "B-5x5", "D-fc"] and rates.epochs.eq(2).all()
    for row in rates.itertuples():
        log = pd.read_csv(folder / f"{row.config}_S256.log.csv")
        assert len(log) == 2 and row.median_epoch_s == pytest.approx(log.seconds.median())
    mod = load_script("experiments/studies/reproduce_time.py")
    source = mod.sources(tmp_path)["tiny/epoch_rates/today"]
    assert source["logs"] == "results/tiny/epoch_rates/today/*_S256.log.csv" and source["cpu"] == rates.device[0]
    as_written = pd.read_csv(folder / "rates.csv", dtype=str).iloc[0]
    assert source["code"] == as_written.commit and source["bf16_matmul_gflop_s"] == as_written.bf16_matmul_gflop_s
    row = mod.estimate("today", source, root=tmp_path)
    assert row["configs_timed"] == "A B-5x5 D-fc" and row["epochs_timed"] == 6
    bad = run_cli([str(ROOT / "experiments/studies/epoch_rates.py"), "--preset", "tiny", "--data", str(sample),
                   "--configs", "A,Z-fc", "--label", "typo", "--results", "results"], cwd=tmp_path)
    assert bad.returncode == 2 and "unknown config 'Z'" in bad.stderr
    assert not (tmp_path / "results" / "tiny" / "epoch_rates" / "typo").exists()  # nothing trained, nothing left


def test_profile_step_names_where_the_time_goes(tmp_path):
    r = run_cli([str(ROOT / "experiments/studies/profile_step.py"), "--preset", "tiny", "--images", "1", "--top", "5",
                 "--results", "results", "--figures", "figures"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    prof = pd.read_csv(tmp_path / "results" / "tiny" / "profile.csv")
    assert prof.phase.nunique() == 2 and (prof.groupby("phase").share.sum() <= 1.0001).all()
    layers = pd.read_csv(tmp_path / "results" / "tiny" / "conv_layers.csv")
    assert len(layers) == 13  # D's conv layers, each timed alone
    assert layers["map"].tolist() == ["32x32"] * 2 + ["16x16"] * 2 + ["8x8"] * 3 + ["4x4"] * 3 + ["2x2"] * 3
    # times are measured, so only their presence is checked (a loaded machine reorders them)
    assert (layers[["forward_ms", "forward_backward_ms", "matmul_gflop_s"]] > 0).all().all()
    assert (layers.in_channels.iloc[1:].values == layers.out_channels.iloc[:-1].values).all()  # consecutive


def test_table3_leaves_out_a_seed_spread_made_from_another_chain(tmp_path):
    mod = load_script("experiments/03_table3_single_scale.py")
    seeds = pd.DataFrame({"config": ["A", "A", "A", "A"], "seed": ["0", "1", "mean", "sd"],
                          "ours_top1_err": [23.69, 25.01, 24.35, 0.93]})
    seeds.to_csv(tmp_path / "seeds.csv", index=False)
    df = pd.DataFrame({"config": ["A", "A"], "train_scale": ["256", "384"], "test_scale": [256, 384],
                       "method": "dense", "ours_top1_err": [23.69, 30.0]})
    spread = mod.with_seed_spread(df, tmp_path / "seeds.csv")
    assert spread.seeds.tolist() == ["0;1", ""] and spread.ours_top1_err_seed_mean[0] == 24.35
    retrained = mod.with_seed_spread(df.assign(ours_top1_err=[60.0, 30.0]), tmp_path / "seeds.csv")
    assert "seeds" not in retrained.columns  # seed 0 there is not this table's net: no spread




@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """48 ImageNet photographs at their own sizes in 4 classes (8 of them val)."""
    import shutil
    photos = sorted((ROOT.parent / "shared" / "data" / "imagenet-sample").glob("*/*/*.JPEG"))
    if len(photos) < 48:
        pytest.skip("no ImageNet photographs in ../shared/data/imagenet-sample")
    mixed = tmp_path_factory.mktemp("mixed")
    for k, f in enumerate(photos[:48]):
        split = "val" if k % 6 == 5 else "train"
        (mixed / split / f"c{k % 4}").mkdir(parents=True, exist_ok=True)
        shutil.copy(f, mixed / split / f"c{k % 4}" / f.name)
    return mixed


def test_mixed_sizes_cost_times_one_size_against_mixed_sizes_per_stage_and_test_scale(mixed, tmp_path):
    r = run_cli([str(ROOT / "experiments/studies/mixed_sizes_cost.py"), "--preset", "tiny", "--same-size",
                 str(ROOT / "vgg" / "samples" / "cifar10-sample"), "--mixed", str(mixed), "--per-class", "4",
                 "--crop-images", "2", "--repeats", "1", "--results", "results"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    df = pd.read_csv(tmp_path / "results" / "mixed_sizes_cost.csv")
    assert len(df) == 24 and set(df.work) == {"train", "val", "dense", "multi-crop"}
    assert set(df[df.work == "train"].stage) == {"S=256", "S=384", "S=256-512"}
    assert set(df[df.work == "dense"].stage) == {"Q=256", "Q=384", "Q=512"}
    one, many = df[df.images == "one size"], df[df.images == "mixed sizes"]
    assert set(one.median_hw) == {"32x32"} and many.median_hw.nunique() == 1 and many.median_hw.iloc[0] != "32x32"
    # a training pass is the epoch's whole batches (batch 32: one of the 40 images), validation and dense every
    # val image, multi-crop the first --crop-images
    timed = {w: (one[one.work == w].images_timed, many[many.work == w].images_timed) for w in set(df.work)}
    assert timed["train"][0].eq(32).all() and timed["train"][1].eq(32).all()
    assert timed["val"][0].eq(20).all() and timed["val"][1].eq(8).all()
    assert timed["dense"][0].eq(20).all() and timed["dense"][1].eq(8).all()
    assert timed["multi-crop"][0].eq(2).all() and timed["multi-crop"][1].eq(2).all()
    by = ["stage", "work"]
    a, b = many.set_index(by), one.set_index(by)
    assert ((a.mixed_minus_one_size_ms - (a.ms_per_image - b.ms_per_image)).abs() < 2e-3).all()
    rounding = 5e-4 + 5e-4 * (1 + a.mixed_over_one_size) / b.ms_per_image  # of the ratio and of the two ms
    assert ((a.mixed_over_one_size - a.ms_per_image / b.ms_per_image).abs() <= rounding).all()
    assert (df.ms_per_image > 0).all()
    bad = run_cli([str(ROOT / "experiments/studies/mixed_sizes_cost.py"), "--preset", "tiny", "--mixed",
                   str(tmp_path / "nowhere"), "--results", "results2"], cwd=tmp_path)
    assert bad.returncode == 2 and "nowhere" in bad.stderr and not (tmp_path / "results2").exists()


def test_eval_rates_times_each_distinct_pass_of_a_seed_once_and_counts_its_nets(mixed, tmp_path):
    from vgg.chain import BY_NAME
    from vgg.chain_time import evaluation_passes
    from vgg.protocol import get_preset
    r = run_cli([str(ROOT / "experiments/studies/eval_rates.py"), "--preset", "tiny_plan", "--images", str(mixed),
                 "--crop-images", "2", "--label", "lab", "--results", "results"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    df = pd.read_csv(tmp_path / "results" / "eval_rates" / "lab.csv")
    passes = evaluation_passes(get_preset("tiny_plan"))
    count = {}
    for method, p in passes.items():
        for net, q in p:
            count[(BY_NAME[net].config, method, q)] = count.get((BY_NAME[net].config, method, q), 0) + 1
    assert {(r.config, r.method, r.test_scale): r.nets for r in df.itertuples()} == count
    assert df[df.config == "D"].nets.sum() == sum(1 for p in passes.values() for n, _ in p if n.startswith("D_"))
    timed = df.set_index("method").images_timed
    assert timed["multi-crop"].eq(2).all() and timed.drop("multi-crop").eq(8).all()  # every val image, else 2
    assert (df.ms_per_image > 0).all() and (df.first_pass_ms > 0).all()
    extra = df.images_timed * (df.first_pass_ms - df.ms_per_image).clip(lower=0)
    minutes = (df.nets * df.images * df.ms_per_image + extra) / 6e4
    assert ((df.seed_minutes - minutes).abs() <= 1e-3 + 1e-3 * minutes).all()  # rounded ms and minutes
    bad = run_cli([str(ROOT / "experiments/studies/eval_rates.py"), "--preset", "tiny", "--images",
                   str(tmp_path / "nowhere"), "--label", "x", "--results", "results2"], cwd=tmp_path)
    assert bad.returncode == 2 and "nowhere" in bad.stderr and not (tmp_path / "results2").exists()
