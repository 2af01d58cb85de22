"""Training: synchronous data parallelism, exact resume, a real run that learns."""
import sys

import pandas as pd
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
    la = pd.read_csv(full.with_suffix(".log.csv")).drop(columns="seconds")
    lb = pd.read_csv(part.with_suffix(".log.csv")).drop(columns="seconds")
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
    assert protocol.get_preset("imagenette").lr_by_config == {"B-5x5": 5e-3}  # it diverges at 1e-2 there
    monkeypatch.setitem(protocol.PRESETS, "tiny", replace(protocol.PRESETS["tiny"], lr_by_config={"B-5x5": 3e-3}))
    for config, lr in (("B-5x5", 3e-3), ("A", 1e-2)):
        out = tmp_path / f"{config}.pt"
        train(TrainSpec(config=config, preset="tiny", data=str(small_data), out=str(out), epochs=1, progress=False))
        ck = load_training_checkpoint(out)
        assert ck["spec"]["lr"] == lr and ck["log"][0]["lr"] == lr
