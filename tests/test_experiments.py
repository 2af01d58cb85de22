"""The numbered experiment scripts end to end on the tiny preset: Table 3 trains the chain from
scratch and writes its CSV and figure; Tables 4-7 then train nothing; reruns are byte-identical."""
import sys

import pandas as pd
import pytest
from conftest import ROOT, run_cli

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
    assert (head["diff_top1"] - (head["ours_top1_err"] - head["paper_top1_err"])).abs().max() < 0.011
    assert {"preset", "dataset", "seed", "commit", "command"} <= set(ours.columns)
    assert (ours["preset"] == "tiny").all()


def test_table3_has_the_b5x5_control(tables):
    cwd, _ = tables
    t3 = pd.read_csv(cwd / "results" / "tiny" / "table3.csv")
    crop = t3[t3.method == "center-crop"].set_index("config")
    assert {"B", "B-5x5", "B-5x5 minus B"} <= set(crop.index)
    assert crop.loc["B-5x5 minus B", "paper_top1_err"] == 7.0
    assert crop.loc["B-5x5 minus B", "ours_top1_err"] == pytest.approx(
        crop.loc["B-5x5", "ours_top1_err"] - crop.loc["B", "ours_top1_err"], abs=0.011)


def test_table7_copies_the_literature_rows_and_adds_ours(tables):
    cwd, _ = tables
    t7 = pd.read_csv(cwd / "results" / "tiny" / "table7.csv")
    paper = paper_table("table7_state_of_the_art")
    assert t7["source"].str.startswith("ours").sum() == 2
    copied = t7[t7["source"].str.startswith("paper")]
    assert copied["method"].tolist() == paper["method"].tolist()
    assert copied["ours_top1_err"].isna().all()


def test_findings_checks_every_claim_on_the_tables(tables):
    cwd, _ = tables
    r = run_cli([str(ROOT / "experiments" / "findings.py"), "--preset", "tiny", "--results", "results"], cwd=cwd)
    assert r.returncode == 0, r.stderr[-2000:]
    f = pd.read_csv(cwd / "results" / "tiny" / "findings.csv")
    assert len(f) == 21 and f["verdict"].isin(["reproduced", "not reproduced", "within noise"]).all()
    lrn = f.set_index("finding").loc["LRN does not help"]
    assert (lrn.paper_a, lrn.paper_b) == (29.7, 29.6)
    assert lrn.ours_gain == pytest.approx(lrn.ours_b - lrn.ours_a, abs=0.011)
    assert r.stdout.count("\n| ") >= 22  # the Markdown table for the README


def test_finding_verdicts_against_two_standard_errors():
    import importlib.util
    spec = importlib.util.spec_from_file_location("findings", ROOT / "experiments" / "findings.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.verdict("lower", 2.0, 1.2) == "reproduced"
    assert mod.verdict("lower", 1.0, 1.2) == "within noise"
    assert mod.verdict("lower", -1.5, 1.2) == "not reproduced"
    assert mod.verdict("not_lower", 1.0, 1.2) == "reproduced"   # a is not better beyond noise
    assert mod.verdict("not_lower", 1.5, 1.2) == "not reproduced"
    row = pd.Series({"method": "dense", "conv5_maps": "2x2;3x3;4x4"})
    assert mod.dense_off_geometry(row, "2x2")
    assert not mod.dense_off_geometry(pd.Series({"method": "multi-crop", "conv5_maps": "3x3"}), "2x2")
    assert not mod.dense_off_geometry(pd.Series({"method": "dense", "conv5_maps": "2x2"}), "2x2")


def test_combined_method_from_cache_equals_running_both_methods(tables, small_data):
    import numpy as np

    from vgg import checkpoint as ck
    from vgg.data import ColourStats
    from vgg.datasets import load_datasets
    from vgg.evaluate import cached_posteriors, posteriors, scales_px
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
    r = run_cli([str(ROOT / "experiments" / "schedule_study.py"), "--preset", "tiny", "--data", str(small_data),
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
    chain = load_training_checkpoint(cwd / "runs" / "tiny" / "D_S256.pt")
    longer = load_training_checkpoint(cwd / "runs" / "tiny" / "schedule_study" / "D_S256_2ep.pt")
    assert longer["log"][0] == chain["log"][0] and longer["epoch"] == 2  # continued, not restarted
    assert (cwd / "figures" / "tiny" / "schedule_study.png").stat().st_size > 10_000


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
