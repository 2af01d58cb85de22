"""Training: synchronous data parallelism, exact resume, a real run that learns."""
import sys

import pandas as pd
import pytest
import torch
from conftest import ROOT, run_cli

from vgg.protocol import get_preset
from vgg.train import TrainSpec, make_optimizer, train, train_step


def test_ddp_step_equals_single_process_step(tmp_path):
    sys.path.insert(0, str(ROOT / "tests"))
    from _ddp_step import fixed_batch, fresh_model
    out = tmp_path / "ddp.pt"
    r = run_cli(["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
                 str(ROOT / "tests" / "_ddp_step.py"), str(out)])
    assert r.returncode == 0, r.stderr[-2000:]
    ddp = torch.load(out)
    model = fresh_model()
    opt = make_optimizer(model, get_preset("proxy"), 0.01)
    x, y = fixed_batch()
    train_step(model, opt, x, y, amp=False)
    for k, v in model.state_dict().items():
        assert torch.allclose(v, ddp[k], atol=1e-5), k
    assert not torch.equal(fresh_model().state_dict()["features.0.weight"], ddp["features.0.weight"])


def _spec(data, out, **kw):
    return TrainSpec(config="A", preset="tiny", data=str(data), out=str(out), epochs=3, progress=False, **kw)


def test_resume_continues_exactly(small_data, tmp_path):
    full = train(_spec(small_data, tmp_path / "full.pt"))
    part = tmp_path / "part.pt"
    train(_spec(small_data, part, stop_after=1))
    assert torch.load(part, weights_only=False)["epoch"] == 1
    train(_spec(small_data, part, resume="auto"))
    a, b = torch.load(full, weights_only=False), torch.load(part, weights_only=False)
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    la = pd.read_csv(full.with_suffix(".log.csv")).drop(columns=["seconds", "val_seconds"])
    lb = pd.read_csv(part.with_suffix(".log.csv")).drop(columns=["seconds", "val_seconds"])
    pd.testing.assert_frame_equal(la, lb)
    assert len(la) == 3


def test_real_proxy_run_learns(tmp_path):
    """Net A, proxy geometry, 3 epochs on 5,000 real CIFAR-10 images: above chance."""
    from conftest import real_data_root
    root = real_data_root()
    out = tmp_path / "a.pt"
    train(TrainSpec(config="A", preset="proxy", data=str(root), out=str(out), epochs=3, max_per_class=500,
                    progress=False))
    log = pd.read_csv(out.with_suffix(".log.csv"))
    assert log["val_top1_err"].iloc[-1] < 0.80  # chance is 0.90
    assert log["train_loss"].iloc[-1] < log["train_loss"].iloc[0]


def test_a_config_the_preset_gives_its_own_lr_trains_at_it(small_data, tmp_path, monkeypatch):
    from dataclasses import replace

    from vgg import protocol
    from vgg.checkpoint import load_training_checkpoint
    assert protocol.get_preset("imagenette").lr_by_config == {"B-5x5": 2.5e-3}  # 1e-2 diverges, 5e-3 collapses
    monkeypatch.setitem(protocol.PRESETS, "tiny", replace(protocol.PRESETS["tiny"], lr_by_config={"B-5x5": 3e-3}))
    for config, lr in (("B-5x5", 3e-3), ("A", 1e-2)):
        out = tmp_path / f"{config}.pt"
        train(TrainSpec(config=config, preset="tiny", data=str(small_data), out=str(out), epochs=1, progress=False))
        ck = load_training_checkpoint(out)
        assert ck["spec"]["lr"] == lr and ck["log"][0]["lr"] == lr


def test_plateau_stop_replays_torchs_rule():
    from vgg.plateau import first_drop, plateau_stop, rule_firings
    acc = [0.1, 0.2, 0.2, 0.3, 0.3, 0.3, 0.25]
    assert rule_firings(acc, patience=0) == [3, 5, 6, 7] and first_drop(acc, 0) == 3
    assert plateau_stop(acc, 0, 0.0, drops=1) == 5
    assert rule_firings(acc, patience=1) == [6]  # bad epochs 3; 5, 6 (fires, restarts); 7
    assert plateau_stop(acc, 1, 0.0, drops=0) == 6 and plateau_stop(acc, 1, 0.0, drops=1) is None
    assert rule_firings([0.1, 0.15, 0.3], patience=0, threshold=0.1) == [2]  # +0.05 is no gain


def test_a_net_stops_when_the_plateau_rule_fires_after_its_last_drop(small_data, tmp_path, monkeypatch):
    """stop_after_drops: the run ends at the epoch where the rule fires again after k lr drops (an
    independent replay of the logged accuracies says which), the chain then reuses it, and an explicit
    --epochs trains on past the stop."""
    from dataclasses import replace

    from vgg import protocol
    from vgg.chain import build_chain, checkpoint_path
    from vgg.experiment import schedule_taken
    from vgg.plateau import plateau_stop
    monkeypatch.setitem(protocol.PRESETS, "tiny", replace(protocol.PRESETS["tiny"], scratch_epochs=12, patience=0,
                                                          lr_drops=1, stop_after_drops=1))
    said = []
    build_chain("tiny", str(small_data), tmp_path, only=["A_S256"], progress=False, log=said.append)
    a = checkpoint_path(tmp_path, "tiny", "A_S256")
    ckpt = torch.load(a, weights_only=False)
    acc = [1 - r["val_top1_err"] for r in ckpt["log"]]
    expected = plateau_stop(acc, patience=0, threshold=0.0, drops=1)
    assert expected is not None and expected < 12, acc  # it stopped before the cap
    assert ckpt["epoch"] == expected and ckpt["complete"] and ckpt["stopped_after_drops"] == 1
    assert schedule_taken(ckpt)["lr_drops"] == 1
    said.clear()
    build_chain("tiny", str(small_data), tmp_path, only=["A_S256"], progress=False, log=said.append)
    assert said == []  # a stopped net is finished
    train(TrainSpec(config="A", preset="tiny", data=str(small_data), out=str(a), resume="auto",
                    epochs=expected + 1, progress=False))
    on = torch.load(a, weights_only=False)
    assert on["epoch"] == expected + 1  # explicit epochs: trained on
    assert on["log"][-1]["lr"] == on["log"][-2]["lr"]  # at the floor the rule leaves the lr alone


def test_a_fine_tuning_stage_stops_under_the_same_plateau_rule(small_data, tmp_path, monkeypatch):
    """S=384 from S=256 starts at the fine-tuning lr and ends where the rule fires after its last drop,
    as the stages before it do (finetune_epochs is then a cap, not a length)."""
    from dataclasses import replace

    from vgg import protocol
    from vgg.plateau import plateau_stop
    monkeypatch.setitem(protocol.PRESETS, "tiny", replace(protocol.PRESETS["tiny"], finetune_epochs=12, patience=0,
                                                          lr_drops=1, stop_after_drops=1))
    parent = tmp_path / "A_S256.pt"
    train(TrainSpec(config="A", preset="tiny", data=str(small_data), out=str(parent), epochs=1, progress=False))
    child = tmp_path / "A_S384.pt"
    train(TrainSpec(config="A", scale="384", preset="tiny", data=str(small_data), out=str(child),
                    init_from=str(parent), progress=False))
    ckpt = torch.load(child, weights_only=False)
    acc = [1 - r["val_top1_err"] for r in ckpt["log"]]
    expected = plateau_stop(acc, patience=0, threshold=0.0, drops=1)
    assert expected is not None and expected < 12, acc
    assert ckpt["epoch"] == expected and ckpt["stopped_after_drops"] == 1
    assert ckpt["log"][0]["lr"] == protocol.PRESETS["tiny"].finetune_lr
    assert ckpt["log"][-1]["lr"] == pytest.approx(protocol.PRESETS["tiny"].finetune_lr / 10)


def test_the_lr_floor_is_exact_after_the_last_drop():
    from vgg.train import make_scheduler
    w = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.01)
    sched = make_scheduler(opt, get_preset("tiny", patience=0, lr_drops=2), 0.01)
    lrs = []
    for _ in range(6):  # accuracy never improves after the first epoch: the rule fires every epoch
        sched.step(0.5)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[:3] == [0.01, 0.001, pytest.approx(1e-4)] and lrs[3:] == [lrs[2]] * 3


def test_a_net_trained_under_another_lr_rule_is_stale(small_data, tmp_path, monkeypatch):
    """Resuming would keep the checkpoint's scheduler (its patience, floor) under the new preset's
    stop rule: a changed lr rule retrains the net."""
    from dataclasses import replace

    from vgg import protocol
    from vgg.chain import build_chain, checkpoint_path
    build_chain("tiny", str(small_data), tmp_path, only=["A_S256"], progress=False, log=lambda m: None)
    monkeypatch.setitem(protocol.PRESETS, "tiny", replace(protocol.PRESETS["tiny"], patience=2))
    said = []
    build_chain("tiny", str(small_data), tmp_path, only=["A_S256"], progress=False, log=said.append)
    a = checkpoint_path(tmp_path, "tiny", "A_S256")
    assert said == [f"retraining {a} (stale: trained under another lr rule (patience 0 -> 2))"]
    assert torch.load(a, weights_only=False)["preset"]["patience"] == 2


def test_a_smoothed_plateau_rule_drops_and_stops_where_its_replay_says(small_data, tmp_path, monkeypatch):
    """plateau_ema: the rule sees val accuracy smoothed by an EMA. On a scripted validation curve
    (the tiny nets sit at chance) the lr drop and the stop fall where a replay on the EMA computed
    by hand puts them, not where the raw curve would. A checkpoint trained before the field existed
    (no plateau_ema in its preset) counts as raw: stale under a smoothed preset only."""
    from dataclasses import replace

    from vgg import protocol
    from vgg import train as train_module
    from vgg.chain import build_chain, checkpoint_path
    from vgg.plateau import first_drop, plateau_stop
    acc = [0.30, 0.40, 0.38, 0.45, 0.44, 0.43, 0.42, 0.41, 0.40, 0.39, 0.38, 0.37]
    script = iter(acc)
    monkeypatch.setattr(train_module, "validate", lambda *a, **k: (1 - next(script), 0.1))
    tiny = replace(protocol.PRESETS["tiny"], scratch_epochs=12, patience=0, lr_drops=1, stop_after_drops=1)
    monkeypatch.setitem(protocol.PRESETS, "tiny", replace(tiny, plateau_ema=0.5))
    build_chain("tiny", str(small_data), tmp_path, only=["A_S256"], progress=False, log=lambda m: None)
    a = checkpoint_path(tmp_path, "tiny", "A_S256")
    ckpt = torch.load(a, weights_only=False)
    smooth = [acc[0]]
    for v in acc[1:]:  # the EMA by hand: .30 .35 .365 .4075 .42375 .426875 .4234375 ...
        smooth.append(0.5 * smooth[-1] + 0.5 * v)
    drop, stop = first_drop(smooth, 0), plateau_stop(smooth, patience=0, threshold=0.0, drops=1)
    assert (drop, stop) == (7, 8) and (first_drop(acc, 0), plateau_stop(acc, 0, 0.0, 1)) == (3, 5)
    assert ckpt["epoch"] == stop and ckpt["stopped_after_drops"] == 1
    lrs = [r["lr"] for r in ckpt["log"]]
    assert lrs[:drop] == [tiny.lr] * drop and lrs[drop] == pytest.approx(tiny.lr / 10)
    # the same checkpoint as if written before plateau_ema existed: raw, so stale under the EMA preset
    del ckpt["preset"]["plateau_ema"]
    torch.save(ckpt, a)
    said = []
    script = iter(acc)
    build_chain("tiny", str(small_data), tmp_path, only=["A_S256"], progress=False, log=said.append)
    assert said == [f"retraining {a} (stale: trained under another lr rule (plateau_ema 0.0 -> 0.5))"]
    monkeypatch.setitem(protocol.PRESETS, "tiny", tiny)
    torch.save(ckpt, a)
    said.clear()
    build_chain("tiny", str(small_data), tmp_path, only=["A_S256"], progress=False, log=said.append)
    assert said == []  # raw preset, raw checkpoint stopped by the rule: reused


def test_a_changed_lr_for_one_config_retrains_that_net_only(small_data, tmp_path, monkeypatch):
    """lr_by_config is not part of the shared lr rule: changing B-5x5's lr makes B-5x5 stale and
    leaves net A (and everything trained from it) as it is."""
    from dataclasses import replace

    from vgg import protocol
    from vgg.chain import build_chain, checkpoint_path
    only = ["A_S256", "B-5x5_S256"]
    build_chain("tiny", str(small_data), tmp_path, only=only, progress=False, log=lambda m: None)
    monkeypatch.setitem(protocol.PRESETS, "tiny", replace(protocol.PRESETS["tiny"], lr_by_config={"B-5x5": 3e-3}))
    said = []
    build_chain("tiny", str(small_data), tmp_path, only=only, progress=False, log=said.append)
    b5 = checkpoint_path(tmp_path, "tiny", "B-5x5_S256")
    assert said == [f"retraining {b5} (stale: started at lr 0.01, the preset starts B-5x5_S256 at 0.003)"]
    assert torch.load(b5, weights_only=False)["log"][0]["lr"] == 3e-3
