"""The fixed schedule of the imagewoof preset: derived from the published plateau-rule logs, and
followed by training (every net of a stage the same epochs at each lr, across a resume)."""
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import load_script

from vgg import protocol
from vgg.chain import Net, checkpoint_path, plan
from vgg.train import TrainSpec, train

ROOT = Path(__file__).resolve().parents[1]


def study():
    return load_script("experiments/studies/fixed_schedule.py")


def check():
    return load_script("experiments/studies/fixed_schedule_check.py")


def test_the_presets_schedule_is_the_median_of_the_published_firings():
    mod = study()
    schedule, table = mod.derive(ROOT / "results" / "imagenette" / "logs")
    assert schedule == protocol.FIXED_SCHEDULE == protocol.get_preset("imagewoof").fixed_schedule
    s256 = table[table.stage == "S=256"]
    assert s256.runs.iloc[0] == 19  # seeds 0-2 of A, A-LRN, B, C, D, E and seed 0 of B-5x5
    first = [int(v) for v in s256.epochs_each_run.iloc[0].split()]
    assert sorted(first)[len(first) // 2] == 24  # the median first drop, by hand


def test_segments_censor_runs_that_reached_their_cap():
    import pandas as pd
    mod = study()
    log = pd.DataFrame({"lr": [1e-3] * 5 + [1e-4] * 7 + [1e-5] * 8})  # 20 epochs = the cap: last one open
    assert mod.segments(log, 20) == [5, 7, None]
    assert mod.segments(pd.DataFrame({"lr": [1e-3] * 20}), 20) == [None, None, None]
    assert mod.segments(pd.DataFrame({"lr": [1e-2] * 4 + [1e-3] * 3 + [1e-4] * 2}), 50) == [4, 3, 2]


@pytest.fixture
def fixed_tiny(monkeypatch):
    monkeypatch.setitem(protocol.PRESETS, "tiny", replace(protocol.PRESETS["tiny"],
                        fixed_schedule={"S=256": (2, 1, 1), "fine-tuning": (1, 1, 1)}))


def test_training_follows_the_fixed_schedule_across_a_resume(small_data, tmp_path, fixed_tiny):
    out = tmp_path / "A.pt"
    spec = dict(config="A", preset="tiny", data=str(small_data), out=str(out), progress=False, batch=16, amp=False)
    train(TrainSpec(**spec, stop_after=3, resume="auto"))
    train(TrainSpec(**spec, resume="auto"))
    ckpt = torch.load(out, weights_only=False)
    assert [r["lr"] for r in ckpt["log"]] == pytest.approx([1e-2, 1e-2, 1e-3, 1e-4])
    assert ckpt["epoch"] == 4 and ckpt["complete"] and ckpt["spec"]["epochs"] == 4
    # each session of the net: the machine, its precision, its measured speed, the code, its first epoch
    sessions = ckpt["spec"]["devices"]
    assert [s.rsplit(", ", 1)[1] for s in sessions] == ["from epoch 1", "from epoch 4"]
    assert all(", fp32, " in s and float(s.split(" GFLOP/s")[0].rsplit(", ", 1)[1]) > 0 and ", commit " in s
               for s in sessions)


def test_a_fixed_schedule_validates_every_few_epochs_and_at_the_last(small_data, tmp_path, monkeypatch):
    import math
    monkeypatch.setitem(protocol.PRESETS, "tiny", replace(protocol.PRESETS["tiny"], validate_every=3,
                        fixed_schedule={"S=256": (2, 2), "fine-tuning": (1,)}))
    out = tmp_path / "A.pt"
    train(TrainSpec(config="A", preset="tiny", data=str(small_data), out=str(out), progress=False, batch=16,
                    amp=False))
    log = torch.load(out, weights_only=False)["log"]
    assert [not math.isnan(r["val_top1_err"]) for r in log] == [False, False, True, True]  # epoch 3, and 4: the last
    # the validation's own time is logged where it ran (the reproduction's estimate adds it to training's)
    on_disk = pd.read_csv(out.with_suffix(".log.csv"))
    assert on_disk.val_seconds.isna().tolist() == [True, True, False, False] and (on_disk.val_seconds[2:] > 0).all()


def test_a_net_trained_under_the_plateau_rule_is_stale_under_the_fixed_schedule(small_data, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    path = checkpoint_path(runs, "tiny", "A_S256")
    train(TrainSpec(config="A", preset="tiny", data=str(small_data), out=str(path), progress=False, batch=16,
                    amp=False))
    assert plan(Net("A", "256"), path, "tiny", runs) == "reuse"
    monkeypatch.setitem(protocol.PRESETS, "tiny", replace(protocol.PRESETS["tiny"], fixed_schedule={
        "S=256": (1,), "fine-tuning": (1,)}))
    assert plan(Net("A", "256"), path, "tiny", runs).startswith("stale: trained under another lr rule (fixed_schedule")


def test_imagenette_fixed_is_the_imagewoof_protocol_on_imagenette():
    """The fixed-schedule check means something for the reproduction only if its preset trains as the
    imagewoof preset does: every field but the name, the notes and the plan's extra nets is the same."""
    from dataclasses import asdict

    from vgg.protocol import PRESETS
    woof, nette = asdict(PRESETS["imagewoof"]), asdict(PRESETS["imagenette_fixed"])
    differ = {k for k in woof if woof[k] != nette[k]}
    assert differ == {"name", "notes", "plan_controls"}


def test_the_sd_goal_is_judged_over_three_seeds_only():
    """fixed_schedule_check's spread: mean and sd (ddof 1) per net; met or missed with three seeds, empty
    with two (an sd of two seeds does not answer the plan's question)."""
    import pandas as pd
    mod = check()
    records = pd.DataFrame({"config": ["B", "B", "B", "C", "C", *["D-scratch"] * 3], "seed": [0, 1, 2, 0, 1, 0, 1, 2],
                            "dense_top1_err": [20.0, 21.0, 24.0, 20.0, 20.5, 20.0, 21.0, 24.0],
                            "center-crop_top1_err": [21.0, 21.0, 21.0, 22.0, 22.0, 21.0, 21.0, 21.0]})
    out = mod.spread(records, None).set_index(["config", "seed"])
    assert out.loc[("B", "mean"), "dense_top1_err"] == 21.67
    assert out.loc[("B", "sd"), "dense_top1_err"] == 2.08
    assert out.loc[("B", "sd"), "meets_sd_goal"] is False
    assert out.loc[("C", "sd"), "dense_top1_err"] == 0.35 and pd.isna(out.loc[("C", "sd"), "meets_sd_goal"])
    assert out.loc[("C", "sd"), "seeds_scored"] == 2
    # the initialisation question's nets have an sd, but the goal is Table 3's
    assert out.loc[("D-scratch", "sd"), "dense_top1_err"] == 2.08
    assert pd.isna(out.loc[("D-scratch", "sd"), "meets_sd_goal"])


def test_the_initialisation_nets_start_from_random_init_and_the_readme_counts_every_net():
    """fixed_schedule_check's INIT_NETS are chain nets with no parent, of D and E, trained like D and E (the
    same stage, epochs and lr); experiments/summary.py counts NETS and INIT_NETS."""
    from vgg.chain import BY_NAME
    from vgg.train import stage_lr
    mod = check()
    preset = protocol.get_preset("imagenette_fixed")
    for label, name in mod.INIT_NETS.items():
        net, like = BY_NAME[name], BY_NAME[f"{label.split('-')[0]}_S256"]
        assert net.parent is None and like.parent == "A_S256" and net.config == like.config
        assert net.epochs(preset) == like.epochs(preset) == 40
        assert stage_lr(preset, net.lr_as or net.config, net.finetuning) == stage_lr(preset, like.config, False)
    summary = load_script("experiments/summary.py")
    assert summary.FIXED_CHECK_NETS == len(mod.NETS) + len(mod.INIT_NETS)


def test_each_pair_carries_the_papers_difference_on_our_error_scale():
    """fixed_schedule_check's paper_diff_scaled: the paper's S=256 difference as a fraction of its error(b),
    times ours (Table 3: B 28.7, A 29.6; E 27.3, D 27.0); none for the control A-LRN0, which the paper lacks."""
    mod = check()
    assert mod.paper_diff_scaled("B", "A", 29.6) == pytest.approx(-0.9)
    assert mod.paper_diff_scaled("E", "D", 20.0) == pytest.approx(0.3 / 27.0 * 20.0, abs=0.005)
    assert mod.paper_diff_scaled("A-LRN0", "A", 20.0) is None
