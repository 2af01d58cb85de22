"""The reproduction's time estimate: medians of logged epoch times, unmeasured configs scaled by the
median measured / reference ratio, epochs left x rate; and the committed estimate is what the
committed logs give."""
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, load_script

from vgg.chain import BY_NAME, needed
from vgg.chain_time import (
    IMAGENETTE_TRAIN,
    chain_seconds,
    complete_rates,
    complete_validation_rates,
    config_of_log,
    epoch_seconds,
    evaluation_passes,
    log_rates,
    net_of_log,
    published_epoch_seconds,
    validation_chain_seconds,
    validation_seconds,
    validations,
)
from vgg.protocol import get_preset
from vgg.results import read_results


def write_log(path, seconds):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"epoch": range(1, len(seconds) + 1), "seconds": seconds}).to_csv(path, index=False)
    return path


def test_rates_are_per_config_medians_over_every_log_of_that_config(tmp_path):
    logs = [write_log(tmp_path / "seed0" / "D_S256.log.csv", [10, 30, 11]),
            write_log(tmp_path / "seed1" / "D_S256.log.csv", [12, 500]),   # a slowed epoch: the median ignores it
            write_log(tmp_path / "B-5x5_S256.log.csv", [7, 9])]
    assert config_of_log(logs[2]) == "B-5x5"
    assert net_of_log(logs[2]) == ("B-5x5", "256")
    assert net_of_log(Path("results/x/D_S256-512.log.csv")) == ("D", "256-512")
    assert epoch_seconds(logs) == {"D": 12.0, "B-5x5": 8.0}


def test_unmeasured_configs_scale_by_the_median_ratio_of_the_measured_ones():
    reference = {"A": 10.0, "B": 20.0, "C": 30.0, "E": 40.0}
    rates, ratio = complete_rates({"A": 20.0, "B": 30.0, "C": 90.0}, reference)   # ratios 2, 1.5, 3
    assert ratio == 2.0
    assert rates == {"A": 20.0, "B": 30.0, "C": 90.0, "E": 80.0}
    assert complete_rates({}, reference) == (reference, 1.0)
    assert complete_rates({}, reference, prior=0.5) == ({c: r / 2 for c, r in reference.items()}, 0.5)
    assert complete_rates({"A": 20.0}, reference, prior=0.5)[1] == 2.0  # a measured epoch overrides the prior


def test_before_any_epoch_is_timed_the_published_rates_scale_by_the_runs_training_images():
    published = published_epoch_seconds()
    rates, _ = log_rates([], train_images=IMAGENETTE_TRAIN // 4)
    assert rates["D"] == pytest.approx(published["D"] * (IMAGENETTE_TRAIN // 4) / IMAGENETTE_TRAIN)
    assert log_rates([])[0] == published  # no image count: the published rates as they are


def test_chain_seconds_is_the_epochs_left_times_each_configs_rate():
    preset = get_preset("imagewoof")
    a, d_jitter = BY_NAME["A_S256"], BY_NAME["D_S256-512"]
    rates = {"A": 2.0, "D": 5.0}
    # the fixed schedule: 24 + 10 + 6 epochs from scratch, 8 + 7 + 3 fine-tuning
    assert (a.epochs(preset), d_jitter.epochs(preset)) == (40, 18)
    assert chain_seconds([(a, 0), (d_jitter, 0)], preset, rates) == 40 * 2 + 18 * 5
    assert chain_seconds([(a, 30), (d_jitter, 18)], preset, rates) == 10 * 2
    assert chain_seconds([(a, 45)], preset, rates) == 0   # ran past the schedule: nothing left


def test_an_fc_only_net_has_its_own_rate_and_falls_back_to_its_configs():
    """D_S256-512-fc trains with frozen conv layers: its logs (and `make epoch_rates`'s D-fc) time the
    key D-fc; a set of rates without it prices the net as a full D epoch."""
    assert config_of_log(Path("x/D_S256-512-fc.log.csv")) == config_of_log(Path("x/D-fc_S256.log.csv")) == "D-fc"
    assert config_of_log(Path("x/B_S256-scratch.log.csv")) == "B"  # from scratch: the same work as B
    preset = get_preset("imagewoof")
    fc, d = BY_NAME["D_S256-512-fc"], BY_NAME["D_S256-512"]
    assert chain_seconds([(fc, 0), (d, 0)], preset, {"D": 10.0, "D-fc": 4.0}) == 18 * 4.0 + 18 * 10.0
    assert chain_seconds([(fc, 0)], preset, {"D": 10.0}) == 18 * 10.0


def test_sets_of_rates_come_in_the_order_they_were_timed(tmp_path):
    """The README calls a CPU's last set its newest: label -10 comes after -9, not before -2."""
    for label in ("L-10", "L-9", "L", "L-2"):
        (tmp_path / "results" / "x" / "epoch_rates" / label).mkdir(parents=True)
        pd.DataFrame({"device": ["X"], "bf16_matmul_gflop_s": ["1"], "commit": ["abc1234"]}).to_csv(
            tmp_path / "results" / "x" / "epoch_rates" / label / "rates.csv", index=False)
    names = [n for n in load_script("experiments/studies/reproduce_time.py").sources(tmp_path) if n.startswith("x/")]
    assert names == [f"x/epoch_rates/{label}" for label in ("L", "L-2", "L-9", "L-10")]


def test_the_published_rates_are_the_seed_0_chain_logs():
    rates = published_epoch_seconds()
    assert set(rates) == {"A", "A-LRN", "B", "B-5x5", "C", "D", "E"}
    a = pd.read_csv(ROOT / "results" / "imagenette" / "logs" / "A_S256.log.csv").seconds.median()
    assert rates["A"] == pytest.approx(a)


def test_the_committed_estimate_is_what_the_committed_logs_give():
    mod = load_script("experiments/studies/reproduce_time.py")
    committed = read_results(ROOT / "results" / "reproduce_time.csv", dtype={"missing": str}).fillna({"missing": ""})
    committed = committed.set_index("rates_from")
    assert set(committed.index) == set(mod.sources())  # every set of rates, epoch_rates folders included
    for name, source in mod.sources().items():
        row = mod.estimate(name, source)
        for col, value in source.items():
            assert str(committed.loc[name, col]) == value, (name, col)
        for col in ("seconds_per_epoch", "train_h_per_seed", "input_h_per_seed", "val_h_per_seed", "eval_h_per_seed",
                    "total_h", "missing", "meets_goal"):
            assert committed.loc[name, col] == row[col] or (row[col] != row[col] and committed.loc[name, col]
                                                           != committed.loc[name, col]), (name, col)
    # independently: the imagewoof run trains each seed's chain, the plan's controls and A-LRN0
    preset = get_preset("imagewoof")
    nets = needed(None, preset.plan_controls)
    assert committed.nets_per_seed.eq(len(nets) + 1).all()
    assert committed.epochs_per_seed.eq(sum(n.epochs(preset) for n in nets) + 40).all()


def test_validation_is_timed_where_the_logs_timed_it_and_counted_every_few_epochs_and_at_the_last(tmp_path):
    mod = load_script("experiments/studies/reproduce_time.py")
    assert [mod.validations(get_preset('imagewoof'), e) for e in (24, 25, 3, 1)] == [5, 5, 1, 1]
    nan = float("nan")
    old = write_log(tmp_path / "old" / "D_S256.log.csv", [20.0, 20.0])  # before val_seconds was logged
    new = tmp_path / "new" / "D_S256.log.csv"
    new.parent.mkdir()
    pd.DataFrame({"epoch": [1, 2, 3], "seconds": [20.0, 20.0, 20.0], "val_seconds": [nan, nan, 4.0]}).to_csv(new)
    assert validation_seconds([old]) == {} and validation_seconds([old, new]) == {"D": 4.0}
    source = {"logs": "new/*_S256.log.csv", "measured": "d", "cpu": "X", "bf16_matmul_gflop_s": "1", "code": "c"}
    woof = get_preset("imagewoof")
    nets = needed(None, woof.plan_controls) + [BY_NAME["A-LRN0_S256"]]
    row = mod.estimate("new", source, root=tmp_path)
    # every net validates at D's validation / epoch ratio (4 / 20) x its config's rate, x 3,929 / 3,925 images
    rates, _ = complete_rates({"D": 20.0}, published_epoch_seconds())
    rates.setdefault("A-LRN0", rates["A-LRN"])
    expect = sum(mod.validations(woof, n.epochs(woof))
                 * (4.0 if n.config == "D" else 0.2 * rates[n.config]) for n in nets) * 3929 / 3925 / 3600
    assert row["val_h_per_seed"] == pytest.approx(expect, abs=0.006) and row["val_h_per_seed"] > 0
    assert row["validations_per_seed"] == sum(mod.validations(woof, n.epochs(woof)) for n in nets)
    assert "validation" not in row["missing"]  # and no loader rates in tmp_path: the mixed sizes' input is missing
    assert row["missing"] == "input of mixed sizes, evaluation of mixed sizes (not timed)"
    before = mod.estimate("old", {**source, "logs": "old/*_S256.log.csv"}, root=tmp_path)
    assert before["val_h_per_seed"] != before["val_h_per_seed"] and "validation" in before["missing"]
    parts = ("train_h_per_seed", "val_h_per_seed", "eval_h_per_seed")
    assert row["total_h"] == pytest.approx(3 * sum(row[k] for k in parts), abs=0.1)


def test_images_of_mixed_sizes_add_their_measured_input_and_scale_evaluation_by_its_dense_share(tmp_path):
    mod = load_script("experiments/studies/reproduce_time.py")
    write_log(tmp_path / "r" / "D_S256.log.csv", [20.0, 20.0])
    source = {"logs": "r/*_S256.log.csv", "measured": "d", "cpu": "X", "bf16_matmul_gflop_s": "1", "code": "c"}
    without = mod.estimate("r", source, root=tmp_path)
    (tmp_path / "results").mkdir()
    c, m = 1e-4, 30.0  # one size: dense c x px^2 ms per image (so every Q is exact), multi-crop m ms
    rows = [("S=256", "train", 160, 0.1, 0.5, 1.0), ("S=384", "train", 224, 0.0, 0.5, 1.0),
            ("S=256-512", "train", 224, 0.0, 0.5, 1.0), ("S=256", "val", 160, 0.5, 0.5, 1.0),
            ("S=384", "val", 224, 0.0, 0.5, 1.0), ("S=256-512", "val", 224, 0.0, 0.5, 1.0)]
    rows += [(f"Q={q}", "dense", px, 0.0, c * px * px, 2.0) for q, px in ((256, 160), (384, 224), (512, 288))]
    rows += [(f"Q={q}", "multi-crop", px, 0.0, m, 1.0) for q, px in ((256, 160), (384, 224), (512, 288))]
    pd.DataFrame([{"stage": st, "work": w, "px": px, "images": kind, "mixed_minus_one_size_ms": gap,
                   "ms_per_image": ms * (r if kind == "mixed sizes" else 1.0), "mixed_over_one_size": r}
                  for st, w, px, gap, ms, r in rows for kind in ("one size", "mixed sizes")]
                 ).to_csv(tmp_path / mod.MIXED_SIZES)
    row = mod.estimate("r", source, root=tmp_path)
    woof = get_preset("imagewoof")
    nets = [n for n in needed(None, woof.plan_controls) + [BY_NAME["A-LRN0_S256"]] if n.scale == "256"]
    expect = sum(n.epochs(woof) * 9025 * 0.1e-3 + validations(woof, n.epochs(woof)) * 3929 * 0.5e-3 for n in nets)
    assert row["input_h_per_seed"] == pytest.approx(expect / 3600, abs=0.006)
    # one seed's evaluations: Tables 5-6's multi-crop is the jittered D and E at 3 Q on 1,000 images, dense
    # every (net, Q) of Tables 3-6 on 3,929; dense costs twice as much on mixed sizes, multi-crop the same
    passes = evaluation_passes(woof)
    dense = sum(3929 * c * woof.px(q) ** 2 for _, q in passes["dense"])
    crops = 1000 * m * len(passes["multi-crop"])
    factor = (2 * dense + crops) / (dense + crops)
    assert row["eval_mixed_sizes_factor"] == pytest.approx(factor, abs=1e-3) and 1 < factor < 2
    assert row["eval_mixed_sizes_bound"] == pytest.approx(2.0)  # dense's own ratio bounds it
    assert row["eval_h_per_seed"] == pytest.approx(without["eval_h_per_seed"] * factor, abs=0.015)  # 2 decimals
    assert "mixed" not in row["missing"] and row["missing"] == "validation (not timed)"


def test_validations_left_are_every_few_epochs_and_the_last_after_those_done():
    woof, nette = get_preset("imagewoof"), get_preset("imagenette")
    assert woof.validate_every == 5 and woof.fixed_schedule and not nette.fixed_schedule
    assert [validations(woof, e) for e in (24, 25, 3, 1)] == [5, 5, 1, 1]
    assert validations(woof, 24, done=10) == 3 and validations(woof, 24, done=24) == 0  # epochs 15, 20, 24
    assert validations(nette, 7, done=2) == 5  # the plateau rule validates every epoch
    assert complete_validation_rates({}, {"D": 20.0}, {"D": 20.0}) is None
    val = complete_validation_rates({"D": 4.0}, {"D": 20.0}, {"A": 10.0, "D": 20.0})
    assert val == {"A": 2.0, "D": 4.0}  # A at D's validation / epoch ratio
    d = BY_NAME["D_S256"]
    assert validation_chain_seconds([(d, 10)], woof, val) == validations(woof, d.epochs(woof), 10) * 4.0


def test_one_seeds_evaluation_passes_are_the_tables_and_the_plans_each_once():
    woof, nette = get_preset("imagewoof"), get_preset("imagenette")
    passes, plain = evaluation_passes(woof), evaluation_passes(nette)
    # Table 5's jittered D and E by multi-crop at 3 Q (Table 6's D+E fusions reuse them)
    assert sorted(passes["multi-crop"]) == [(f"{x}_S256-512", q) for x in "DE" for q in (256, 384, 512)]
    # dense: Tables 3 and 4 (A, A-LRN at 256; B, C, D, E at 3 Q per training scale; the jittered nets' 384
    # shared by Tables 3, 4 and 5), and the 7-net fusion's FC-only D jitter net where the plan has it
    s256 = {("A_S256", 256), ("A-LRN_S256", 256)} | {(f"{x}_S256", q) for x in "BCDE" for q in (224, 256, 288)}
    rest = {(f"{x}_S{s}", q) for x in "CDE" for s, qs in (("384", (352, 384, 416)), ("256-512", (256, 384, 512)))
            for q in qs}
    assert plain["dense"] == s256 | rest
    fc = {("D_S256-512-fc", q) for q in (256, 384, 512)}
    assert passes["dense"] == plain["dense"] | fc | {("A-LRN0_S256", 256)}
    # centre crops: Table 3's rows at their Q, B and B-5x5 at 256, and the plan's B-scratch and A-LRN0
    table3 = {("A_S256", 256), ("A-LRN_S256", 256), ("B_S256", 256), ("B-5x5_S256", 256)} | {
        (f"{x}_S{s}", q) for x in "CDE" for s, q in (("256", 256), ("384", 384), ("256-512", 384))}
    assert plain["center-crop"] == table3
    assert passes["center-crop"] == table3 | {("B_S256-scratch", 256), ("A-LRN0_S256", 256)}


def test_measured_evaluation_passes_replace_the_scaled_published_minutes(tmp_path):
    mod = load_script("experiments/studies/reproduce_time.py")
    write_log(tmp_path / "results" / "x" / "epoch_rates" / "lab" / "D_S256.log.csv", [20.0, 20.0])
    source = {"logs": "results/x/epoch_rates/lab/*_S256.log.csv", "measured": "lab", "cpu": "X",
              "bf16_matmul_gflop_s": "1", "code": "c"}
    scaled = mod.estimate("lab", source, root=tmp_path)
    assert scaled["eval_from"].startswith("published")
    woof = get_preset("imagewoof")
    # a config's pass costs (1 + config's index) x (method's ms) per image; first passes 1 ms more per image
    configs = sorted({BY_NAME[n].config for p in evaluation_passes(woof).values() for n, _ in p})
    per = {"dense": 2.0, "center-crop": 0.5, "multi-crop": 30.0}
    keys = {(BY_NAME[n].config, m, q) for m, p in evaluation_passes(woof).items() for n, q in p}
    rates = pd.DataFrame([{"config": c, "method": m, "test_scale": q, "images_timed": 10,
                           "ms_per_image": (1 + configs.index(c)) * per[m],
                           "first_pass_ms": (1 + configs.index(c)) * per[m] + 1.0} for c, m, q in sorted(keys)])
    (tmp_path / "results" / "eval_rates").mkdir(parents=True)
    rates.to_csv(tmp_path / "results" / "eval_rates" / "lab.csv", index=False)
    row = mod.estimate("lab", source, root=tmp_path)
    images = {"dense": 3929, "center-crop": 3929, "multi-crop": 1000}
    ms = sum(images[m] * (1 + configs.index(BY_NAME[n].config)) * per[m]
             for m, p in evaluation_passes(woof).items() for n, _ in p) + 10 * 1.0 * len(keys)
    assert row["eval_h_per_seed"] == pytest.approx(ms / 3.6e6, abs=0.006)
    assert row["eval_from"] == "results/eval_rates/lab.csv" and row["eval_mixed_sizes_factor"] != row[
        "eval_mixed_sizes_factor"]  # NaN: no factor applies to measured passes
    assert row["train_h_per_seed"] == scaled["train_h_per_seed"]
    rates.iloc[1:].to_csv(tmp_path / "results" / "eval_rates" / "lab.csv", index=False)  # a pass missing
    with pytest.raises(Exception, match="rerun `make eval_rates`"):
        mod.estimate("lab", source, root=tmp_path)
