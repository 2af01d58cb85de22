"""`make reproduce` end to end on the tiny_plan preset (the reproduction's protocol at test size: the
fixed schedule, the plan's controls, three seeds): per-seed tables, every row's per-image correctness,
the tables over seeds, checkpoint hashes and the CPU each net trained on, seed-level findings; a
second run resumes and trains nothing."""
import hashlib

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, run_cli

from vgg.chain import BY_NAME, CHAIN, CONTROLS, checkpoint_path
from vgg.checkpoint import load_metadata
from vgg.findings import claims, read_tables, row_id
from vgg.seeds import load_per_image

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def reproduction(small_data, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("reproduce")
    args = [str(ROOT / "experiments" / "reproduce.py"), "--preset", "tiny_plan", "--data", str(small_data),
            "--runs", "runs", "--results", "results", "--figures", "figures"]
    r = run_cli(args, cwd=cwd, env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    return cwd, r, args


def test_every_seed_trains_its_own_chain_and_the_plans_controls(reproduction):
    cwd, r, _ = reproduction
    records = pd.read_csv(cwd / "results" / "tiny_plan" / "checkpoints.csv")
    assert len(records) == len(SEEDS) * (len(CHAIN) + len(CONTROLS))
    for rec in records.itertuples():
        path = checkpoint_path(cwd / "runs", "tiny_plan", rec.net, rec.seed)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == rec.sha256
        published = cwd / "results" / "tiny_plan" / "logs" / f"seed{rec.seed}" / f"{rec.net}.log.csv"
        assert published.read_text() == path.with_suffix(".log.csv").read_text()  # the epoch log, committed
    assert records.trained_on.str.contains("bf16|fp32").all()  # each net records its CPU and precision
    assert (records.epochs == records.net.map(lambda n: 1 if "384" in n or "512" in n else 2)).all()  # fixed schedule
    assert "ETA" in r.stderr and "seed 2 (3/3)" in r.stderr
    # the ETA counts the tables of the seeds still to score once a seed has been scored (before that, nothing
    # here timed evaluation on this CPU), and every seed records how long its tables took
    lines = [line for line in r.stderr.splitlines() if line.startswith("[reproduce ") and "ETA" in line]
    assert "seed 0 (1/3)" in lines[0] and "evaluation not included: no seed scored yet" in lines[0]
    assert "their evaluation as this run's scored seeds took, 2 seed(s) to score" in next(
        line for line in lines if "seed 1 (2/3)" in line)
    for s in SEEDS:
        assert pd.read_csv(cwd / "results" / "tiny_plan" / f"seed{s}" / "scoring_time.csv").scoring_seconds[0] > 0
    # the run's wall time: a row per net trained (its epochs) and per seed scored, and one for the tables over seeds
    wall = pd.read_csv(cwd / "results" / "tiny_plan" / "wall_time.csv", dtype={"seed": str})
    nets = wall[~wall.step.isin(["tables", "over seeds"])].assign(seed=lambda d: d.seed.astype(int))
    trained = nets.merge(records, left_on=["seed", "step"], right_on=["seed", "net"], suffixes=("", "_ckpt"))
    assert len(trained) == len(nets) == len(records) and (trained.epochs == trained.epochs_ckpt).all()
    rest = wall[~wall.index.isin(nets.index)]
    assert list(zip(rest.seed, rest.step)) == [*((str(s), "tables") for s in SEEDS), ("0;1;2", "over seeds")]
    assert wall.invocation.nunique() == 1 and (wall.wall_seconds >= 0).all() and wall.wall_seconds.sum() > 0
    assert wall.cpu.str.contains("threads").all()


def test_tables_over_seeds_are_the_seed_tables_mean_and_sd(reproduction):
    cwd, _, _ = reproduction
    folder = cwd / "results" / "tiny_plan"
    combined = read_tables(folder)
    per_seed = {s: read_tables(folder / f"seed{s}") for s in SEEDS}
    for table, df in combined.items():
        errs = np.stack([per_seed[s][table].ours_top1_err.to_numpy(float) for s in SEEDS])
        assert np.allclose(df.ours_top1_err, errs.mean(0), atol=0.006)
        assert np.allclose(df.ours_top1_err_sd, errs.std(0, ddof=1), atol=0.006)
        for s in SEEDS:
            assert np.allclose(df[f"ours_top1_err_seed{s}"], per_seed[s][table].ours_top1_err)
    t3 = combined["table3"]
    assert ((t3.config == "B") & (t3.method == "center-crop") & (t3.init == "glorot")).sum() == 1  # the control
    t4 = combined["table4"]
    assert set(t4[t4.paper_top1_err.isna()].test_scales) == {"384", "512"}  # the plan's single-scale rows
    assert (combined["table6"].query("nets == 7").d_jitter == "fc only").all()


def test_every_rows_per_image_correctness_is_saved_and_every_claim_is_decided_at_seed_level(reproduction):
    cwd, _, _ = reproduction
    folder = cwd / "results" / "tiny_plan"
    for s in SEEDS:
        saved, classes = load_per_image(folder / f"seed{s}")
        tables = read_tables(folder / f"seed{s}")
        for table, df in tables.items():
            for _, row in df.iterrows():
                if "minus" not in str(row.get("config", "")):
                    c = saved[row_id(table, row)]
                    assert abs(100 * (1 - c.mean()) - row.ours_top1_err) < 0.006  # the row's own error
    f = pd.read_csv(folder / "findings.csv")
    assert len(f) == len(claims()) and (f.verdict != "not tested").all()
    assert f.decided_by.str.startswith("seed level, 3 seeds").all()  # no unpaired and no one-seed verdict
    assert f.plan_version.astype(str).eq("2").all() and f.plan_commit.notna().all()


def test_a_second_run_resumes_and_trains_nothing(reproduction):
    cwd, _, args = reproduction
    before = (cwd / "results" / "tiny_plan" / "findings.csv").read_text()
    r = run_cli(args, cwd=cwd, env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0 and "training runs/" not in r.stderr, r.stderr[-2000:]
    assert (cwd / "results" / "tiny_plan" / "findings.csv").read_text() == before
    wall = pd.read_csv(cwd / "results" / "tiny_plan" / "wall_time.csv")
    second = wall[wall.invocation == wall.invocation.iloc[-1]]
    assert wall.invocation.nunique() == 2 and list(second.step) == ["over seeds"]  # nothing trained or scored
    assert "the run" in r.stderr and "over 2 invocation(s)" in r.stderr


def test_one_seed_reuses_the_nets_and_writes_every_table(reproduction):
    """A run of seed 0 alone into another results folder: the nets are reused, every table and the
    summary are written (one seed: the claims are tested per image, not at seed level)."""
    cwd, _, args = reproduction
    one = [*args[:args.index("--results")], "--results", "results-one", "--figures", "figures-one", "--seeds", "0"]
    r = run_cli(one, cwd=cwd, env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0 and "training runs/" not in r.stderr, r.stderr[-2000:]
    folder = cwd / "results-one" / "tiny_plan"
    assert (folder / "summary.md").exists() and (folder / "table7.csv").exists()
    f = pd.read_csv(folder / "findings.csv")
    assert not f.decided_by.str.startswith("seed level").any()


def test_fixed_schedule_check_scores_as_table3_and_tests_the_pairs_at_seed_level(reproduction):
    """experiments/studies/fixed_schedule_check.py on the reproduction's nets (plus the LRN control,
    trained here): before A-LRN0 is trained, --no-train says so (exit 2); then every net's dense error
    is its seed's Table 3 row, the sd rows are the seeds' sd, each pair's estimate is the mean of the
    per-seed differences of the saved correctness, adjusted p-values are never below the raw ones;
    a second run trains nothing."""
    cwd, _, args = reproduction
    data = args[args.index("--data") + 1]
    study = [str(ROOT / "experiments" / "studies" / "fixed_schedule_check.py"), "--preset", "tiny_plan",
             "--data", data, "--runs", "runs", "--results", "results", "--figures", "figures"]
    r = run_cli([*study, "--nets", "A-LRN0", "--no-train"], cwd=cwd, env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 2 and "no finished net of A-LRN0" in r.stderr, r.stderr[-2000:]
    r = run_cli(study, cwd=cwd, env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "training runs/tiny_plan/A-LRN0_S256.pt" in r.stderr  # only the control is new
    assert r.stderr.count("training runs/") == len(SEEDS)
    folder = cwd / "results" / "tiny_plan"
    nets = pd.read_csv(folder / "fixed_schedule_check.csv", dtype={"seed": str})
    saved = np.load(folder / "fixed_schedule_top1.npz")
    per_seed = nets[nets.seed.isin([str(s) for s in SEEDS])]
    assert len(per_seed) == 7 * len(SEEDS)
    for row in per_seed.itertuples():
        assert abs(100 * (1 - saved[f"{row.config}|{row.seed}|dense"].mean()) - row.dense_top1_err) < 0.006
        if row.config != "A-LRN0":
            t3 = pd.read_csv(folder / f"seed{row.seed}" / "table3.csv", dtype={"train_scale": str})
            own = t3.query(f"config == '{row.config}' and train_scale == '256' and method == 'dense'")
            assert abs(own.ours_top1_err.iloc[0] - row.dense_top1_err) < 0.006
        log = pd.read_csv(checkpoint_path(cwd / "runs", "tiny_plan", f"{row.config}_S256", int(row.seed))
                          .with_suffix(".log.csv"))
        assert abs(100 * log.train_top1_err.iloc[-1] - row.train_top1_err_last_epoch) < 0.006
    sd = nets[nets.seed == "sd"].set_index("config")
    for config, g in per_seed.groupby("config"):
        assert abs(g.dense_top1_err.std(ddof=1) - sd.dense_top1_err[config]) < 0.006
        assert abs(g.train_top1_err_last_epoch.std(ddof=1) - sd.train_top1_err_last_epoch[config]) < 0.006
    pairs = pd.read_csv(folder / "fixed_schedule_pairs.csv")
    assert {"LRN control", "claim"} <= set(pairs.question)
    assert set(pairs.method) == {"dense", "center-crop"}
    for row in pairs.itertuples():
        diffs = [100 * (saved[f"{row.b}|{s}|{row.method}"].mean() - saved[f"{row.a}|{s}|{row.method}"].mean())
                 for s in SEEDS]
        assert abs(np.mean(diffs) - row.estimate) < 0.006
    claimed = pairs[pairs.question == "claim"]
    assert (claimed.p_paper_adj >= claimed.p_paper - 1e-12).all() and claimed.verdict.notna().all()
    assert claimed.paper_diff_scaled.notna().all()
    assert pairs[pairs.a == "A-LRN0"].paper_diff_scaled.isna().all()
    assert (cwd / "figures" / "tiny_plan" / "fixed_schedule_check.png").stat().st_size > 10_000
    assert (pairs.level == "seed").all()
    r = run_cli(study, cwd=cwd, env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0 and "training runs/" not in r.stderr, r.stderr[-2000:]
    # a scored net whose checkpoint is gone (runs/ is not committed): its saved scores and record are
    # used, not trained again, and the results stay as they were; without its saved record the run
    # stops (exit 2, nothing written) rather than drop it
    ckpt = checkpoint_path(cwd / "runs", "tiny_plan", "A-LRN0_S256", 1)
    ckpt.rename(ckpt.with_suffix(".away"))
    table = folder / "fixed_schedule_check.csv"
    try:
        before = table.read_text()
        for flags in ([], ["--no-train"]):
            r = run_cli([*study, *flags], cwd=cwd, env={"OMP_NUM_THREADS": "1"})
            assert r.returncode == 0 and "training runs/" not in r.stderr, r.stderr[-2000:]
            assert "A-LRN0 seed 1: no finished checkpoint" in r.stderr and table.read_text() == before
        table.rename(table.with_suffix(".away"))
        r = run_cli([*study, "--no-train"], cwd=cwd, env={"OMP_NUM_THREADS": "1"})
        assert r.returncode == 2 and "A-LRN0 seed 1" in r.stderr, r.stderr[-2000:]
        assert not table.exists()
    finally:
        ckpt.with_suffix(".away").rename(ckpt)
        if table.with_suffix(".away").exists():
            table.with_suffix(".away").rename(table)
    # one seed: every pair per image on that seed, its estimate the mean per-image difference
    one = [*study[:study.index("--results")], "--results", "results-one", "--figures", "figures-one", "--seeds", "0"]
    r = run_cli(one, cwd=cwd, env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0 and "training runs/" not in r.stderr, r.stderr[-2000:]
    pairs = pd.read_csv(cwd / "results-one" / "tiny_plan" / "fixed_schedule_pairs.csv")
    assert (pairs.level == "image").all() and (pairs.seeds.astype(str) == "0").all()
    for row in pairs.itertuples():
        d = 100 * (saved[f"{row.b}|0|{row.method}"].astype(float) - saved[f"{row.a}|0|{row.method}"])
        assert abs(d.mean() - row.estimate) < 0.006 and abs(d.std(ddof=1) / np.sqrt(len(d)) - row.se) < 0.006
    # the initialisation question's net, asked alone: D from random init (no parent) is the only net
    # trained; every net scored before stays in the results, and D-scratch - D is tested on seed 0
    before = pd.read_csv(folder / "fixed_schedule_check.csv", dtype={"seed": str})
    r = run_cli([*study, "--nets", "D-scratch", "--seeds", "0"], cwd=cwd, env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count("training runs/") == 1 and "training runs/tiny_plan/D_S256-scratch.pt" in r.stderr
    ckpt = checkpoint_path(cwd / "runs", "tiny_plan", "D_S256-scratch", 0)
    assert load_metadata(ckpt)["spec"]["init_from"] is None
    published = folder / "logs" / "seed0" / "D_S256-scratch.log.csv"
    assert published.read_text() == ckpt.with_suffix(".log.csv").read_text()
    after = pd.read_csv(folder / "fixed_schedule_check.csv", dtype={"seed": str})
    key = ["config", "seed", "dense_top1_err", "center-crop_top1_err", "sha256"]
    kept = after[after.config != "D-scratch"]
    pd.testing.assert_frame_equal(before[key].reset_index(drop=True), kept[key].reset_index(drop=True))
    assert after[after.config == "D-scratch"].seed.tolist() == ["0", "mean"]  # one seed: no sd
    saved = np.load(folder / "fixed_schedule_top1.npz")
    init = pd.read_csv(folder / "fixed_schedule_pairs.csv")
    assert {"claim", "LRN control", "initialisation"} == set(init.question)
    init = init[init.question == "initialisation"]
    assert set(init.claim) == {"D-scratch minus D"} and (init.level == "image").all()
    for row in init.itertuples():
        d = 100 * (saved[f"D|0|{row.method}"].astype(float) - saved[f"D-scratch|0|{row.method}"])
        assert abs(d.mean() - row.estimate) < 0.006


def test_the_eta_counts_evaluation_as_eval_rates_timed_it_on_this_cpu(small_data, tmp_path, monkeypatch):
    """Rates under the run's --results or the repository's results/ (a run with its own --results on a
    CPU that `make eval_rates` timed); only those of this CPU; none: evaluation left out, said so."""
    import argparse

    from conftest import load_script

    from vgg.chain import BY_NAME
    from vgg.chain_time import evaluation_passes
    from vgg.protocol import get_preset
    from vgg.results import environment
    mod = load_script("experiments/reproduce.py")
    monkeypatch.setattr(mod, "MACHINE_RATES", tmp_path / "repository" / "eval_rates")
    args = argparse.Namespace(preset="tiny_plan", data=str(small_data), results=str(tmp_path / "results"),
                              runs=str(tmp_path / "runs"))
    seconds, why = mod.evaluation_eta(args, [0, 1])
    assert seconds is None and "no `make eval_rates`" in why
    passes = evaluation_passes(get_preset("tiny_plan"))
    keys = sorted({(BY_NAME[n].config, m, q) for m, p in passes.items() for n, q in p})
    folder = tmp_path / "results" / "eval_rates"
    folder.mkdir(parents=True)
    for name, device, ms in (("here", environment()["device"], 2.0), ("elsewhere", "another CPU", 50.0)):
        pd.DataFrame([{"config": c, "method": m, "test_scale": q, "images_timed": 4, "first_pass_ms": ms + 1.0,
                       "ms_per_image": ms, "device": device} for c, m, q in keys]).to_csv(folder / f"{name}.csv")
    mod.eval_rates_seed_seconds.cache_clear()  # read once per run: this test added files since
    seconds, why = mod.evaluation_eta(args, [0, 1])
    per_seed = (sum(len(p) for p in passes.values()) * 24 * 2.0 + len(keys) * 4 * 1.0) / 1e3  # 24 val images
    assert seconds == pytest.approx(2 * per_seed) and "eval_rates" in why and "2 seed(s)" in why
    mod.MACHINE_RATES.parent.mkdir()
    folder.rename(mod.MACHINE_RATES)  # now only the repository's results/ hold them
    mod.eval_rates_seed_seconds.cache_clear()
    assert mod.evaluation_eta(args, [0])[0] == pytest.approx(per_seed)


def test_wall_time_check_sets_each_step_beside_the_estimate_of_rates_timed_on_its_cpu(reproduction, tmp_path):
    """experiments/studies/wall_time_check.py on this run and a made-up set of rates on its CPU: each net
    predicted as its epochs and validations at its config's rates, each seed's tables as every distinct
    pass at 1 ms per image (plus the first pass's 2 ms extra on the images timed), measured and logged
    seconds as the run recorded them; the tables over seeds measured only."""
    from vgg.chain_time import distinct_passes
    from vgg.protocol import get_preset
    cwd, _, _ = reproduction
    run = cwd / "results" / "tiny_plan"
    wall = pd.read_csv(run / "wall_time.csv", dtype={"seed": str})
    preset = get_preset("tiny_plan")
    assert preset.validate_every == 1  # so every epoch validates: a net's validations are its epochs
    seconds = {"A": 2.0, "A-LRN": 3.0, "B": 4.0, "B-5x5": 1.5, "C": 5.0, "D": 6.0, "E": 7.0}
    rates = tmp_path / "results"
    folder = rates / "tiny_plan" / "epoch_rates" / "L"
    folder.mkdir(parents=True)
    for config, s in seconds.items():
        pd.DataFrame({"epoch": [1, 2], "seconds": [s, s], "val_seconds": [s / 4, s / 4]}).to_csv(
            folder / f"{config}_S256.log.csv", index=False)
    pd.DataFrame({"config": list(seconds), "device": wall.cpu.iloc[0]}).to_csv(folder / "rates.csv", index=False)
    passes = distinct_passes(preset)
    (rates / "eval_rates").mkdir()
    pd.DataFrame([{"config": c, "method": m, "test_scale": q, "ms_per_image": 1.0, "first_pass_ms": 3.0,
                   "images_timed": 10} for c, m, q in passes]).to_csv(rates / "eval_rates" / "L.csv", index=False)
    out = tmp_path / "check.csv"
    r = run_cli([str(ROOT / "experiments" / "studies" / "wall_time_check.py"), "--run", str(run), "--results",
                 str(rates), "--out", str(out)], cwd=cwd)
    assert r.returncode == 0, r.stderr[-2000:]
    check = pd.read_csv(out, dtype={"seed": str})
    nets = check[~check.step.isin(["tables", "over seeds", "total", "all"])]
    val_images = 3 * 8  # small_data: 3 classes x 8 val images
    for row in nets.itertuples():
        s = seconds[BY_NAME[row.step].config]
        assert abs(row.predicted_s - row.epochs * (s + s / 4)) < 0.06
        log = pd.read_csv(run / "logs" / f"seed{row.seed}" / f"{row.step}.log.csv")
        assert abs(row.logged_s - (log.seconds.sum() + log.val_seconds.fillna(0).sum())) < 0.06
    images = {"dense": val_images, "center-crop": val_images,
              "multi-crop": min(preset.multi_crop_images or val_images, val_images)}
    expected = sum(n * images[m] * 1.0 + 10 * 2.0 for (_, m, _), n in passes.items()) / 1e3
    tables = check[check.step == "tables"]
    assert len(tables) == len(SEEDS) and np.allclose(tables.predicted_s, expected, atol=0.06)
    assert check[check.step == "over seeds"].predicted_s.isna().all()
    total, every = check[check.step == "total"].iloc[0], check[check.step == "all"].iloc[0]
    assert abs(total.predicted_s - (nets.predicted_s.sum() + tables.predicted_s.sum())) < 0.5
    assert abs(every.measured_s - wall.wall_seconds.sum()) < 0.5
    bad = run_cli([str(ROOT / "experiments" / "studies" / "wall_time_check.py"), "--run", str(tmp_path)], cwd=cwd)
    assert bad.returncode == 2 and "wall_time.csv" in bad.stderr
