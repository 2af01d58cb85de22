"""One source of truth: the README's verdict and GPU blocks and docs/findings.md are what the committed
CSVs generate; no document states a verdict count of its own; every relative link resolves; the
citation file claims no ImageNet result."""
import re

import pandas as pd
import pytest
from conftest import ROOT, load_script

from vgg.results import read_results, replace_block

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "results").glob("*/README.md"))]


def summary_module():
    return load_script("experiments/summary.py")


def test_the_readme_blocks_and_the_findings_page_are_what_the_csvs_generate():
    mod = summary_module()
    readme = (ROOT / "README.md").read_text()
    results = ROOT / "results"
    assert replace_block(readme, "verdict", mod.verdict_block(results)) == readme
    assert replace_block(readme, "gpu", mod.gpu_block(results)) == readme
    found = {label: read_results(results / p / "findings.csv") for p, label in
             (*mod.README_PRESETS.items(), ("imagewoof", "Imagewoof")) if (results / p / "findings.csv").exists()}
    assert (ROOT / "docs" / "findings.md").read_text() == mod.findings_page(found)
    fd = found["Imagenette"]
    counts = fd.verdict.str.split(" (", regex=False).str[0].value_counts()
    assert f"**{counts['reproduced']} reproduced, {counts['opposite']} opposite" in readme


def test_no_document_states_a_verdict_count_the_csvs_do_not_make():
    """Counts of verdicts live only in the generated blocks (README's verdict, docs/findings.md, summary.md)."""
    for doc in DOCS:
        text = doc.read_text()
        if doc.name == "README.md" and doc.parent == ROOT:
            text = re.sub(r"<!-- (\w+):begin -->.*?<!-- \1:end -->", "", text, flags=re.S)
        if doc.name == "findings.md":
            continue
        hits = re.findall(r"\b\d+ (?:reproduced|opposite)\b|\d+ / \d+ / \d+ of \d+", text)
        assert not hits, (doc, hits)


def test_every_relative_link_resolves():
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            assert dest.exists(), (doc, target)
            if anchor and dest.suffix == ".md":
                heads = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                         for h in re.findall(r"^#+ (.+)$", dest.read_text(), flags=re.M)}
                assert anchor in heads, (doc, target)


def test_the_citation_claims_no_imagenet_result():
    text = (ROOT / "CITATION.cff").read_text()
    assert "no ImageNet training has been run" in text and "are not ImageNet results" in text


@pytest.mark.parametrize("table", ["table3", "table4", "table5", "table6", "table7"])
def test_no_table_subtracts_a_ten_class_error_from_a_thousand_class_one(table):
    for preset in ("imagenette", "proxy"):
        assert "diff_top1" not in pd.read_csv(ROOT / "results" / preset / f"{table}.csv").columns


def test_a_commit_that_looks_like_a_number_is_shown_as_it_is(tmp_path):
    """A commit such as 0e53793 (about one in sixteen short hashes is all digits or digits around one
    'e') reaches the README and docs/findings.md as written, not as 0.0, inf or without a leading 0."""
    import shutil
    mod = summary_module()
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results", results)
    found = sorted(results.glob("*/findings.csv"))
    assert found
    for f in found:  # every preset's findings made under a plan whose commit looks like a number
        fd = read_results(f)
        fd["plan_commit"] = "0e53793"
        fd.to_csv(f, index=False)
    (tmp_path / "docs").mkdir()
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    mod.update_readme(results, tmp_path / "README.md")
    assert "commit 0e53793" in (tmp_path / "README.md").read_text()
    assert "commit 0e53793" in (tmp_path / "docs" / "findings.md").read_text()


def test_the_fixed_schedule_line_gives_each_claims_verdict_interval_and_level(tmp_path):
    mod = summary_module()
    pd.DataFrame({"config": ["A", "A", "A", "A", "A", "D-scratch", "D-scratch"],
                  "seed": ["0", "1", "2", "mean", "sd", "0", "mean"],
                  "dense_top1_err": [20.0, 22.0, 24.0, 22.0, 2.0, 19.0, 19.0],
                  "plateau_rule_sd": [None] * 4 + [0.8] * 3,
                  "meets_sd_goal": [None] * 4 + [False] + [None] * 2}
                 ).to_csv(tmp_path / "fixed_schedule_check.csv", index=False)
    rows = [("claim", "B beats A", m, "seed", "0;1;2", v, e, -4.5, -1.9) for m, v, e in
            (("dense", "reproduced", -3.25), ("center-crop", "inconclusive", -2.97))]
    rows += [("initialisation", "D-scratch minus D", m, "image", "0", None, e, e - 1, e + 1) for m, e in
             (("dense", -4.0), ("center-crop", -3.0))]
    rows.append(("claim", "E ties D", "dense", "image", "0", "opposite", 3.18, 2.09, 4.28))
    pd.DataFrame(rows, columns=["question", "claim", "method", "level", "seeds", "verdict", "estimate", "ci_low",
                                "ci_high"]).to_csv(tmp_path / "fixed_schedule_pairs.csv", index=False)
    line = mod.fixed_schedule_line(tmp_path)
    assert "A 22.00 (sd 2.00 over 3 seeds; plateau rule 0.80); the plan's goal: sd <= 1.5 points, met for none, " \
           "missed for A." in line
    assert "4 of its 9 x 3 nets scored" in line
    assert "D-scratch" not in line.split("\n")[1]  # not a Table 3 net: on the initialisation line only
    assert (">   - Initialisation, D and E from random init (-scratch) instead of net A (dense top-1 error D-scratch "
            "19.00 (seed 0)), dense, error difference in points [95% interval]: D-scratch minus D -4.00 [-5.00, "
            "-3.00] (seed 0, per image).\n") in line
    assert (">     - *B beats A* reproduced -3.25 [-4.50, -1.90] / inconclusive -2.97 [-4.50, -1.90] (seed level)\n"
            in line)
    assert line.endswith(">     - *E ties D* opposite +3.18 [+2.09, +4.28] (seed 0, per image)")


def test_the_reproduction_estimate_is_given_per_cpu_newest_first_with_its_range(tmp_path):
    mod = summary_module()
    path = tmp_path / "reproduce_time.csv"
    pd.DataFrame({"measured": ["d1", "d2", "d3"], "cpu": ["X (AMX, 2 threads)", "Y (AVX512-BF16, 2 threads)",
                                                          "X (AMX, 2 threads)"],
                  "bf16_matmul_gflop_s": ["2000", "400-450", "2100"], "code": ["aaa1111", "before", "0e53793"],
                  "train_h_per_seed": [3.0, 6.0, 2.8], "input_h_per_seed": [0.1, float("nan"), 0.1],
                  "val_h_per_seed": [float("nan"), float("nan"), 0.2], "eval_h_per_seed": [0.5, 1.0, 0.4],
                  "eval_mixed_sizes_factor": [1.3, float("nan"), 1.3],
                  "eval_mixed_sizes_bound": [1.5, float("nan"), 1.5],
                  "total_h": [10.9, 21.0, 10.5],
                  "missing": ["validation (not timed)", "input of mixed sizes, validation (not timed)", ""],
                  "goal_h": [10.0] * 3, "meets_goal": [False, False, True],
                  "eval_from": ["published 34 min x ...", "published 34 min x ...", "results/eval_rates/d3.csv"]}
                 ).to_csv(path, index=False)
    text = mod.reproduce_time_text(path)
    assert ("X (AMX): 10.5 h with its newest rates (d3, 2100 GFLOP/s bf16 matmul, code 0e53793: 2.8 h training + "
            "0.2 h validation + 0.4 h evaluation a seed; images of mixed sizes: +0.10 h of input, evaluation x 1.30 "
            "(at most x 1.50); evaluation: one seed's passes timed on photographs of mixed sizes "
            "(`results/eval_rates/d3.csv`))") in text
    assert ("(d2, 400-450 GFLOP/s bf16 matmul, code before: 6.0 h training + 1.0 h evaluation a seed; leaves out "
            "input of mixed sizes, validation (not timed))") in text
    assert "10.5-10.9 h over its 2 sets of rates" in text
    assert "Y (AVX512-BF16): 21.0 h with its newest rates (d2, 400-450 GFLOP/s" in text and "its only set" in text
    assert text.index("X (AMX)") < text.index("Y (AVX512-BF16)")  # in the CSV's order
    assert text.count("passes timed") == 1  # the scaled published minutes name no file
    assert text.endswith("within the goal of 10 h (the issue's, on 2 AVX512-BF16 cores): 1 of the 2 sets of X (AMX), "
                         "0 of the 1 sets of Y (AVX512-BF16).") and "not measured" in text
    assert mod.reproduce_time_text(tmp_path / "missing.csv") == ""


def test_the_measured_wall_time_sums_every_invocations_steps_and_names_its_cpus(tmp_path):
    """A run that spans sessions: the README line sums the rows of all invocations (experiments/reproduce.py
    writes them), counts nets apart from scoring, and names each CPU once, in order."""
    mod = summary_module()
    path = tmp_path / "imagewoof" / "wall_time.csv"
    path.parent.mkdir()
    pd.DataFrame({"invocation": ["t1", "t1", "t2", "t2", "t2"], "seed": ["0", "0", "0", "0", "0"],
                  "step": ["A_S256", "B_S256", "B_S256", "tables", "over seeds"], "epochs": [40, 12, 28, 0, 0],
                  "wall_seconds": [3600.0, 1800.0, 3240.0, 1080.0, 36.0],
                  "cpu": ["X (AMX, 2 threads)", "X (AMX, 2 threads)", "Y (AVX512-BF16, 2 threads)",
                          "Y (AVX512-BF16, 2 threads)", "Y (AVX512-BF16, 2 threads)"]}).to_csv(path, index=False)
    text = mod.wall_time_text(path)
    assert text == (" Wall time measured so far: 2.7 h over 2 invocation(s), 3 nets trained (80 epochs), 1 seed(s) "
                    "scored, on X (AMX), Y (AVX512-BF16) (`results/imagewoof/wall_time.csv`).")
    assert mod.wall_time_text(tmp_path / "missing.csv") == ""


def test_the_estimates_check_on_a_measured_run_reads_its_totals_and_the_nets_start_up(tmp_path):
    """wall_time_check.csv (experiments/studies/wall_time_check.py) as the README's line: the measured
    hours in all and in the steps estimated, the range of the estimates over the sets of rates (in all,
    for the nets and for the tables), and what the nets took beyond their epoch logs."""
    mod = summary_module()
    rows = []
    for label, predicted in (("L1", 1.0), ("L2", 1.25)):
        rows += [{"rates": label, "seed": "0", "step": "A_S256", "epochs": 40, "measured_s": 3000.0,
                  "logged_s": 2700.0, "predicted_s": 2700.0 * predicted},
                 {"rates": label, "seed": "0", "step": "B_S256", "epochs": 40, "measured_s": 3600.0,
                  "logged_s": 3420.0, "predicted_s": 3600.0 * predicted},
                 {"rates": label, "seed": "0", "step": "tables", "epochs": 0, "measured_s": 1200.0,
                  "predicted_s": 900.0 * predicted},
                 {"rates": label, "seed": "0", "step": "over seeds", "epochs": 0, "measured_s": 360.0},
                 {"rates": label, "step": "total", "epochs": 80, "measured_s": 7800.0, "logged_s": 6120.0,
                  "predicted_s": 7200.0 * predicted, "measured_over_predicted": round(7800 / 7200 / predicted, 3)},
                 {"rates": label, "step": "all", "epochs": 80, "measured_s": 8160.0}]
    path = tmp_path / mod.REHEARSAL_CHECK
    path.parent.mkdir(parents=True)
    pd.DataFrame(rows).assign(run_preset="imagenette_fixed", run_data="Imagenette", run_cpu="X (AMX, 2 threads)",
                              run_code="abc1234").to_csv(path, index=False)
    assert mod.wall_time_check_text(tmp_path) == (
        "Estimate checked on a measured run at its protocol (`make wall_time_check`: "
        "`results/imagenette_fixed/rehearsal/wall_time_check.csv`): imagenette_fixed on Imagenette, 2 nets and the "
        "tables of 1 seed(s) on X (AMX), code abc1234: 2.27 h; in the steps the estimate covers 2.17 h against "
        "2.00-2.50 h from the 2 sets of rates of that CPU (measured / estimated 0.87-1.08; the nets 1.83 h against "
        "1.75-2.19 h; the tables 0.33 h against 0.25-0.31 h); the nets' time beyond their epoch logs (start-up, "
        "compiling, checkpoints) 0.13 h.")
    assert mod.wall_time_check_text(tmp_path / "none") == ""
