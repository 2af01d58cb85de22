"""Crash safety, resumable chains, divergence, torchvision interop."""
import os
import random
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
import torchvision
from conftest import ROOT, run_cli

from vgg.chain import build_chain, checkpoint_path
from vgg.configs import TORCHVISION_NAMES
from vgg.model import VGG

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def train_cmd(data, out, epochs):
    return [sys.executable, "-m", "vgg", "train", "--config", "A", "--preset", "tiny", "--data", str(data),
            "--epochs", str(epochs), "--out", str(out), "--no-progress", "--resume"]


def test_sigkill_after_checkpoint_then_resume_equals_uninterrupted(small_data, tmp_path):
    epochs = 40
    full = tmp_path / "full.pt"
    assert subprocess.run(train_cmd(small_data, full, epochs), env=ENV, capture_output=True).returncode == 0
    killed = tmp_path / "killed.pt"
    p = subprocess.Popen(train_cmd(small_data, killed, epochs), env=ENV, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not killed.exists() and time.time() < deadline:
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    done = torch.load(killed, weights_only=False)["epoch"]
    assert 1 <= done < epochs, "the kill must land mid-run"
    assert subprocess.run(train_cmd(small_data, killed, epochs), env=ENV, capture_output=True).returncode == 0
    a, b = torch.load(full, weights_only=False), torch.load(killed, weights_only=False)
    assert b["epoch"] == epochs and b["complete"]
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    la = pd.read_csv(full.with_suffix(".log.csv")).drop(columns=["seconds", "val_seconds"])
    lb = pd.read_csv(killed.with_suffix(".log.csv")).drop(columns=["seconds", "val_seconds"])
    pd.testing.assert_frame_equal(la, lb)


def test_kill_during_atomic_writes_never_leaves_a_torn_file(tmp_path):
    path = tmp_path / "ck.pt"
    rng = random.Random(0)
    seen = set()
    for k in range(8):
        before = path.stat().st_mtime_ns if path.exists() else None
        p = subprocess.Popen([sys.executable, str(ROOT / "tests" / "_write_loop.py"), str(path),
                              str(k * 1_000_000)], env=ENV)
        start = time.time()  # wait for this writer's first write, then kill it at a random moment
        while (not path.exists() or path.stat().st_mtime_ns == before) and time.time() - start < 60:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.2))
        p.send_signal(signal.SIGKILL)
        p.wait()
        obj = torch.load(path, weights_only=False)  # must always load
        assert torch.all(obj["payload"] == obj["i"])
        seen.add(obj["i"] // 1_000_000)
    assert len(seen) == 8  # every writer was killed after it had written


def test_interrupted_chain_reruns_without_training_twice(small_data, tmp_path):
    only = ["B_S256"]  # needs A_S256 first
    build_chain("tiny", str(small_data), tmp_path, only=["A_S256"], progress=False, log=lambda m: None)
    a = checkpoint_path(tmp_path, "tiny", "A_S256")
    stamp = a.stat().st_mtime_ns
    trained = []
    build_chain("tiny", str(small_data), tmp_path, only=only, progress=False, log=trained.append)
    assert a.stat().st_mtime_ns == stamp
    assert trained == [f"training {checkpoint_path(tmp_path, 'tiny', 'B_S256')}"]
    trained.clear()
    build_chain("tiny", str(small_data), tmp_path, only=only, progress=False, log=trained.append)
    assert trained == []


def test_chain_extends_a_short_schedule_and_retrains_stale_children(small_data, tmp_path, monkeypatch):
    from dataclasses import replace

    from vgg import protocol
    build_chain("tiny", str(small_data), tmp_path, only=["B_S256"], progress=False, log=lambda m: None)
    a, b = (checkpoint_path(tmp_path, "tiny", n) for n in ("A_S256", "B_S256"))
    first_epoch = torch.load(a, weights_only=False)["log"][0]
    # The preset now asks net A for 2 epochs: A is trained on (not from scratch), and B, which
    # started from the 1-epoch A, is stale and trained again from the new A.
    monkeypatch.setitem(protocol.PRESETS, "tiny", replace(protocol.PRESETS["tiny"], scratch_epochs=2))
    said = []
    build_chain("tiny", str(small_data), tmp_path, only=["B_S256"], progress=False, log=said.append)
    assert said[0] == f"training {a} (resuming)"
    assert said[1].startswith(f"retraining {b} (stale: A_S256 has changed")
    ckpt_a = torch.load(a, weights_only=False)
    assert ckpt_a["epoch"] == 2 and ckpt_a["log"][0] == first_epoch
    assert torch.load(b, weights_only=False)["spec"]["init_source"]["epoch"] == 2
    said.clear()
    build_chain("tiny", str(small_data), tmp_path, only=["B_S256"], progress=False, log=said.append)
    assert said == []
    said.clear()
    stamp = a.stat().st_mtime_ns
    build_chain("tiny", str(small_data), tmp_path, only=["A_S256"], seed=1, progress=False, log=said.append)
    a1 = checkpoint_path(tmp_path, "tiny", "A_S256", seed=1)
    assert said == [f"training {a1}"] and a1.parent.name == "seed1"  # seeds keep their own chains
    assert a.stat().st_mtime_ns == stamp and torch.load(a1, weights_only=False)["spec"]["seed"] == 1


def test_divergence_stops_with_a_clear_message(small_data, tmp_path):
    r = run_cli(["-m", "vgg", "train", "--config", "A", "--preset", "tiny", "--data", str(small_data),
                 "--lr", "1e6", "--epochs", "2", "--out", str(tmp_path / "x.pt"), "--no-progress"])
    assert r.returncode == 3, r.stderr[-1500:]
    last = r.stderr.strip().splitlines()[-1]
    assert re.search(r"training diverged: loss \S+ at epoch \d+ step \d+", last), last
    assert "--init-from" in last and "--init glorot" in last and "--lr" in last


@pytest.mark.parametrize("config", ["A", "B", "E"])  # D: tests/test_models.py
def test_torchvision_state_dicts_load_strictly_with_identical_outputs(config):
    torch.manual_seed(0)
    tv = getattr(torchvision.models, TORCHVISION_NAMES[config])().eval()
    ours = VGG(config).eval()
    ours.load_state_dict(tv.state_dict(), strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(ours(x), tv(x), atol=1e-5)


def test_export_gives_a_plain_state_dict(small_data, tmp_path):
    ck = tmp_path / "a.pt"
    assert run_cli(["-m", "vgg", "train", "--config", "A", "--preset", "tiny", "--data", str(small_data),
                    "--epochs", "1", "--out", str(ck), "--no-progress"]).returncode == 0
    out = tmp_path / "a_plain.pth"
    assert run_cli(["-m", "vgg", "export", str(ck), str(out)]).returncode == 0
    sd = torch.load(out)
    src = torch.load(ck, weights_only=False)
    net = VGG(**src["hparams"]).eval()
    net.load_state_dict(sd, strict=True)
    assert all(torch.equal(sd[k], src["state_dict"][k]) for k in sd)


def test_results_record_a_dirty_commit_when_the_code_differs_from_it(tmp_path):
    from vgg.results import git_commit
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    (tmp_path / "vgg").mkdir()
    (tmp_path / "vgg" / "protocol.py").write_text("patience = 0\n")
    (tmp_path / "results.csv").write_text("a\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "."], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "x"], cwd=tmp_path, check=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tmp_path, capture_output=True,
                          text=True).stdout.strip()
    (tmp_path / "results.csv").write_text("b\n")  # results change during a run: still clean
    assert git_commit(tmp_path) == head
    (tmp_path / "vgg" / "protocol.py").write_text("patience = 1\n")  # the code does not match HEAD
    assert git_commit(tmp_path) == head + "-dirty"
    (tmp_path.parent / "not_a_repo").mkdir(exist_ok=True)
    assert git_commit(tmp_path.parent / "not_a_repo") == "unknown"


def test_write_table_refuses_a_provenance_column_that_would_replace_the_tables_own(tmp_path):
    from vgg.results import write_table
    df = pd.DataFrame({"net": ["D"], "val_images": [1000]})  # e.g. a multi-crop subset's row
    with pytest.raises(ValueError, match="val_images"):
        write_table(df, tmp_path / "t.csv", {"val_images": 3925})
    assert not (tmp_path / "t.csv").exists()
    write_table(df.rename(columns={"val_images": "images"}), tmp_path / "t.csv", {"val_images": 3925})
    assert pd.read_csv(tmp_path / "t.csv")[["images", "val_images"]].iloc[0].tolist() == [1000, 3925]


def test_remaking_an_unchanged_table_keeps_the_commit_that_made_it(tmp_path, monkeypatch):
    """Tables 1-2 come out the same on every `make tables`: the file (and its commit) stays; a table
    whose rows or environment changed is written with the new commit."""
    import vgg.results as results
    path = tmp_path / "table2.csv"
    df = pd.DataFrame({"config": ["A", "E"], "params": [132863336, 143667240], "note": ["", "19 layers"]})
    monkeypatch.setattr(results, "git_commit", lambda *a: "aaaaaaa")
    results.write_table(df, path, {"preset": "paper"})
    before = path.read_bytes()
    monkeypatch.setattr(results, "git_commit", lambda *a: "bbbbbbb")
    results.write_table(df, path, {"preset": "paper"})
    assert path.read_bytes() == before  # same rows: commit aaaaaaa kept
    results.write_table(df.assign(params=[132863336, 143667241]), path, {"preset": "paper"})
    assert pd.read_csv(path).commit.tolist() == ["bbbbbbb"] * 2
    results.write_table(df.assign(params=[132863336, 143667241]), path, {"preset": "proxy"})
    assert pd.read_csv(path).preset.tolist() == ["proxy"] * 2  # a provenance column changed: rewritten
    # made by uncommitted code, remade the same once it is committed: the clean commit replaces the dirty one
    monkeypatch.setattr(results, "git_commit", lambda *a: "ccccccc-dirty")
    results.write_table(df, path, {"preset": "paper"})
    monkeypatch.setattr(results, "git_commit", lambda *a: "ccccccc")
    results.write_table(df, path, {"preset": "paper"})
    assert pd.read_csv(path).commit.tolist() == ["ccccccc"] * 2
    monkeypatch.setattr(results, "git_commit", lambda *a: "ddddddd-dirty")
    results.write_table(df, path, {"preset": "paper"})
    assert pd.read_csv(path).commit.tolist() == ["ccccccc"] * 2  # a dirty remake does not replace a clean one
