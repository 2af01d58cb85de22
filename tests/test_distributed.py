"""Several processes (``torchrun``): collectives on the process's device, every rank taking every
step, train loss and errors over all ranks, sharded evaluation; and the caches a run keeps (posterior
cache keys, the runs folder, checkpoint metadata sidecars).

The two-process runs use gloo on the CPU (tests/_ddp_train.py) and are compared with one process
on the same global batch."""
import ast
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from argparse import Namespace
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ROOT

from vgg import checkpoint as ck
from vgg import evaluate, protocol
from vgg.chain import CHAIN, build_chain, checkpoint_path, plan
from vgg.loaders import load_datasets

sys.path.insert(0, str(ROOT / "tests"))
import _ddp_train  # noqa: E402

COLLECTIVES = {"all_reduce", "all_gather", "all_gather_object", "all_gather_into_tensor", "broadcast",
               "broadcast_object_list", "reduce", "reduce_scatter", "gather", "scatter", "barrier", "all_to_all"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(args: list[str], folder: Path, world: int = 2, timeout: float = 120) -> list[str]:
    """tests/_ddp_train.py in ``world`` gloo processes; their stderr. Fails if one fails or they
    have not finished within ``timeout`` s (a rank waiting on a collective the others never reach)."""
    port, folder = free_port(), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    procs = []
    for rank in range(world):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "RANK": str(rank), "LOCAL_RANK": str(rank),
               "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "OMP_NUM_THREADS": "1",
               # the CPU path on any machine: a one-GPU machine has no cuda:1 for rank 1 (seen on an H200)
               "CUDA_VISIBLE_DEVICES": ""}
        err = open(folder / f"stderr{rank}.txt", "w")
        procs.append((subprocess.Popen([sys.executable, str(ROOT / "tests" / "_ddp_train.py"), *args], cwd=folder,
                                       env=env, stdout=subprocess.DEVNULL, stderr=err), err))
    deadline = time.monotonic() + timeout
    try:
        for p, _ in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        hung = [p for p, _ in procs if p.poll() is None]
        for p in hung:
            p.kill()
        for p, err in procs:
            p.wait()
            err.close()
    stderr = [(folder / f"stderr{r}.txt").read_text() for r in range(world)]
    assert not hung, f"{len(hung)} of {world} processes still running after {timeout} s: " + stderr[0][-1500:]
    for (p, _), text in zip(procs, stderr):
        assert p.returncode == 0, text[-3000:]
    return stderr


# --------------------------------------------------------------------------- collectives on the device

class _Collective(Exception):
    pass


def _recording(seen: list):
    """A stand-in for a torch.distributed collective: records the devices of the tensors it is
    handed (and its ``device`` argument), then stops the caller (meta tensors hold no values)."""
    def collective(*args, **kwargs):
        for a in [*args, *kwargs.values()]:
            for t in (a if isinstance(a, (list, tuple)) else [a]):
                if isinstance(t, torch.Tensor):
                    seen.append(t.device)
                elif isinstance(t, torch.device):
                    seen.append(t)
        raise _Collective
    return collective


@pytest.fixture
def record_collectives(monkeypatch):
    """torch.distributed's collectives recorded (world 2): the devices of what they are handed."""
    seen = []
    for name in COLLECTIVES:
        monkeypatch.setattr(torch.distributed, name, _recording(seen))
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda *a: 2)
    return seen


def test_every_collective_goes_through_vgg_runtime():
    """The rule lives in one place: vgg/runtime.py's helpers take the device and put their tensors on
    it (NCCL, the process group on GPUs, takes no CPU tensors); no other module calls a collective."""
    calls = []
    for path in sorted((ROOT / "vgg").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in COLLECTIVES:
                calls.append((path.name, node.func.attr, node.lineno))
    assert calls and {f for f, _, _ in calls} == {"runtime.py"}, calls


def test_collective_helpers_hand_over_tensors_on_the_given_device(record_collectives):
    """Each helper with device 'meta' (a device no tensor is on by default): every tensor handed to
    the collective is on it."""
    from vgg import runtime
    meta = torch.device("meta")
    calls = [lambda: runtime.all_sum([1, 2.5], meta), lambda: runtime.gather_rows(torch.ones(3, 2), meta),
             lambda: runtime.broadcast_object("plan", meta)]
    for call in calls:
        record_collectives.clear()
        with pytest.raises(_Collective):
            call()
        assert record_collectives and set(record_collectives) == {meta}, record_collectives


def test_validate_reduces_on_the_process_device(record_collectives):
    """train.validate (an empty shard: no forward pass) hands the collective a tensor on the device it
    was given, not a CPU tensor."""
    from vgg.train import validate

    class NoImages:
        def val_center_crops(self, q, rank, world):
            return iter(())

    meta = torch.device("meta")
    with pytest.raises(_Collective):
        validate(torch.nn.Identity(), NoImages(), 32, meta, amp=False, rank=1, world=2)
    assert record_collectives == [meta]


def test_the_step_agreement_reduces_on_the_process_device(record_collectives):
    from vgg.train import step_weight
    meta = torch.device("meta")
    with pytest.raises(_Collective):
        step_weight(torch.zeros(2, 3, 4, 4), torch.zeros(2), 2, meta)
    assert record_collectives == [meta]


# --------------------------------------------------------------------------- one process vs two

@pytest.fixture(scope="module")
def one_process(small_data, tmp_path_factory):
    """tests/_ddp_train.py's scenario in this process (world 1)."""
    runs = tmp_path_factory.mktemp("one") / "runs"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(protocol.PRESETS, "tiny", replace(protocol.PRESETS["tiny"], **_ddp_train.TINY))
        result = _ddp_train.scenario(str(small_data), runs)
    return runs, result


@pytest.fixture(scope="module")
def two_processes(small_data, tmp_path_factory):
    """The same scenario in two gloo processes (global batch 16: 8 images per process)."""
    base = tmp_path_factory.mktemp("two")
    run_ranks(["chain", str(small_data), str(base / "runs"), str(base / "result.pt")], base / "work")
    assert not (base / "work" / "runs").exists()  # the caches went to the runs folder
    return base / "runs", torch.load(base / "result.pt", weights_only=False)


# Tolerances of two processes against one. Weights: the gradient is the mean of two 8-image means
# (gloo's sum / 2) instead of one 16-image mean, and threads split each sum differently, so float32
# rounding differs (~1e-7 relative per operation); over the runs' 9 SGD steps it stays far below 1e-5
# (measured 5e-8), while the 6 steps of net A move its weights by 1e-4 to 1e-2 (another draw of crops
# or colour, or one image's gradient missing, shows). Logged losses: float64 sums of float32 per-shard
# means, 1e-5 relative (rank 0's shard alone is off by ~1e-2). Val errors count whole images: equal
# unless a logit tie flips (within one image). Posteriors: forward passes in batches of another size, 1e-5.
WEIGHT_ATOL, LOSS_RTOL, POSTERIOR_ATOL = 1e-5, 1e-5, 1e-5


def test_two_processes_train_resume_and_chain_like_one(one_process, two_processes):
    """Net A (one epoch, stopped, resumed by the chain for its second) and B_S256 initialised from it:
    final weights and the logged train loss / error and val errors of two processes are one process's."""
    (runs1, _), (runs2, _) = one_process, two_processes
    for net in ("A_S256", "B_S256"):
        a, b = (torch.load(checkpoint_path(r, "tiny", net), weights_only=False) for r in (runs1, runs2))
        assert a["spec"]["world"] == 1 and b["spec"]["world"] == 2 and b["epoch"] == a["epoch"]
        for k, v in a["state_dict"].items():
            w = b["state_dict"][k]
            assert torch.allclose(v, w, atol=WEIGHT_ATOL, rtol=0), (net, k, (v - w).abs().max())
        la, lb = (pd.read_csv(checkpoint_path(r, "tiny", net).with_suffix(".log.csv")) for r in (runs1, runs2))
        assert len(la) == len(lb) == (2 if net == "A_S256" else 1)
        np.testing.assert_allclose(lb.train_loss, la.train_loss, rtol=LOSS_RTOL)  # all ranks' images, not rank 0's
        np.testing.assert_allclose(lb.train_top1_err, la.train_top1_err, atol=1 / 48 + 1e-9)  # 48 images an epoch
        for col in ("val_top1_err", "val_top5_err"):
            np.testing.assert_allclose(lb[col], la[col], atol=1 / 24 + 1e-9)  # 24 val images
    a0 = torch.load(checkpoint_path(runs1, "tiny", "A_S256"), weights_only=False)
    assert not torch.equal(a0["state_dict"]["features.0.weight"],
                           torch.load(checkpoint_path(runs1, "tiny", "B_S256"), weights_only=False)
                           ["state_dict"]["features.0.weight"])  # B was trained on from A's weights


def test_two_processes_evaluate_like_one(one_process, two_processes):
    """Each process scores its slice of the val images; the gathered posteriors (in image order) are
    one process's: the cached dense posteriors of all 24 images and multi-crop on a subset."""
    (_, one), (_, two) = one_process, two_processes
    for name in ("dense", "multi_crop"):
        (p1, y1), (p2, y2) = one[name], two[name]
        assert np.array_equal(y1, y2) and p1.shape == p2.shape
        assert np.allclose(p1, p2, atol=POSTERIOR_ATOL) and np.array_equal(p1.argmax(1), p2.argmax(1))
    assert len(one["multi_crop"][1]) == len(_ddp_train.SUBSET) and len(one["dense"][1]) == 24


def test_augmentation_is_the_same_at_any_number_of_processes(small_data):
    """The in-memory loader draws the whole global batch's scales, crops, flips and colour shifts on
    every rank and each keeps its rows: two ranks' shards are the one-process batch."""
    from vgg.data import fraction_of
    from vgg.protocol import get_preset
    data = load_datasets(small_data, get_preset("tiny", batch=16))

    def batches(rank, world):
        gen = torch.Generator().manual_seed(5)
        part = fraction_of(16, rank, world)
        return [(data.colour_augment(x, gen, part), y) for x, y in data.train_batches(0, 0, (37, 73), gen, rank, world)]

    one, shards = batches(0, 1), [batches(r, 2) for r in range(2)]
    assert len(one) == len(shards[0]) == len(shards[1]) == 3
    for (x, y), (x0, y0), (x1, y1) in zip(one, *shards):
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)


def test_a_rank_with_no_readable_image_takes_the_step_with_the_others(small_data, tmp_path):
    """Stream loader, 2 processes: every image of rank 1's first shard is unreadable. Both ranks skip
    that step together (DDP would wait forever for a rank that skipped alone) and finish the epoch
    having taken the same steps; the log line reads as error rates."""
    from torch.utils.data import DistributedSampler

    from vgg.data import list_images, subsample
    data = tmp_path / "data"
    shutil.copytree(small_data, data)
    paths, labels, _ = list_images(data / "train")
    paths, _ = subsample(paths, labels, protocol.PRESETS["tiny"].max_per_class)
    sampler = DistributedSampler(range(len(paths)), num_replicas=2, rank=1, seed=0, drop_last=True)
    sampler.set_epoch(0)
    for i in list(sampler)[:4]:  # batch 8: 4 images a process
        Path(paths[i]).write_bytes(b"not an image")
    stderr = run_ranks(["steps", str(data), str(tmp_path / "runs"), str(tmp_path)], tmp_path / "work", timeout=90)
    steps = [json.loads((tmp_path / f"steps{r}.json").read_text())["steps"] for r in range(2)]
    assert steps == [len(paths) // 8 - 1] * 2, steps
    assert "val top-1 err " in stderr[0] and " top-5 err " in stderr[0]


# --------------------------------------------------------------------------- evaluation's device and cache

@pytest.fixture(scope="module")
def tiny_a(small_data, tmp_path_factory) -> Path:
    from vgg.train import TrainSpec, train
    out = tmp_path_factory.mktemp("tiny_a") / "A_S256.pt"
    train(TrainSpec(config="A", preset="tiny", data=str(small_data), out=str(out), epochs=1, amp=False,
                    progress=False))
    return out


@pytest.fixture
def net_a(tiny_a, tmp_path):
    """A copy of a tiny net A checkpoint (its own file: tests change it)."""
    path = tmp_path / "A_S256.pt"
    shutil.copy(tiny_a, path)
    return path


@pytest.fixture
def counted_posteriors(monkeypatch):
    """evaluate.posteriors replaced by a stand-in that counts its calls (and records the device)."""
    calls = []

    def fake(model, data, colour, method, scales_px, amp=None, limit=None, device=None, indices=None):
        calls.append(device)
        n = len(data.val) if indices is None else len(indices)
        return np.full((n, model.num_classes), 1 / model.num_classes, np.float32), np.zeros(n, np.int64)

    monkeypatch.setattr(evaluate, "posteriors", fake)
    return calls


def test_cached_posteriors_evaluate_on_the_process_device(net_a, small_data, counted_posteriors, monkeypatch):
    """Tables 3-6 evaluate on the device vgg.runtime.process_device picks (cuda:LOCAL_RANK on a GPU
    machine), not on the CPU whatever the machine."""
    chosen = torch.device("cpu", 7)  # stands for cuda:LOCAL_RANK; no tensor is made on it here
    monkeypatch.setattr(evaluate, "process_device", lambda: chosen)
    data = load_datasets(small_data, protocol.get_preset("tiny"))
    evaluate.cached_posteriors(net_a, "dense", [256], data, amp=False, cache_dir=net_a.parent / "cache")
    assert counted_posteriors == [chosen]


def test_the_posterior_cache_key_covers_what_posteriors_depend_on(net_a, small_data, counted_posteriors,
                                                                   tmp_path, monkeypatch):
    """Each of: precision, dataset root, its val files, the preset's geometry, the subset's indices (same
    size), the method, the scale and the checkpoint's contents misses the cache; the same inputs hit it."""
    preset = protocol.get_preset("tiny")
    data = load_datasets(small_data, preset)
    cache = tmp_path / "posteriors"

    def misses(ckpt=net_a, method="dense", scales=(256,), d=data, amp=False, subset=None) -> int:
        before = len(counted_posteriors)
        evaluate.cached_posteriors(ckpt, method, list(scales), d, amp, cache, subset)
        return len(counted_posteriors) - before

    assert misses() == 1 and misses() == 0
    assert misses(amp=True) == 1 and misses(amp=True) == 0 and misses() == 0  # fp32 and bf16 entries both kept
    assert misses(method="center-crop") == 1 and misses(scales=(384,)) == 1
    other_root = tmp_path / "copy"
    shutil.copytree(small_data, other_root)
    assert misses(d=load_datasets(other_root, preset)) == 1  # another dataset, same files
    victim = next((other_root / "val").rglob("*.png"), None) or next(p for p in (other_root / "val").rglob("*")
                                                                       if p.is_file())
    victim.unlink()
    assert misses(d=load_datasets(other_root, preset)) == 1  # the same root with one val file fewer
    n = len(data.val)
    first, second = np.arange(0, n, 2)[:5], np.arange(1, n, 2)[:5]
    assert misses(method="multi-crop", subset=first) == 1 and misses(method="multi-crop", subset=second) == 1
    assert misses(method="multi-crop", subset=first) == 0
    monkeypatch.setitem(protocol.PRESETS, "tiny", replace(protocol.PRESETS["tiny"], sizes={256: 40}))
    assert misses() == 1  # Q=256 is now 40 px, not 37
    monkeypatch.setitem(protocol.PRESETS, "tiny", preset)
    assert misses() == 0
    torch.save(torch.load(net_a, weights_only=False), net_a)  # the checkpoint rewritten
    assert misses() == 1 and misses() == 0


# --------------------------------------------------------------------------- the runs folder

def test_caches_go_under_the_runs_folder_given(small_data, tmp_path, monkeypatch):
    """A chain, an experiment's data and ``vgg eval`` with runs in tmp_path write no ./runs/cache."""
    from vgg.experiment import Experiment
    work, runs = tmp_path / "work", tmp_path / "runs"
    work.mkdir()
    monkeypatch.chdir(work)
    build_chain("tiny", str(small_data), runs, only=["A_S256"], progress=False, log=lambda m: None, amp=False)
    Experiment(Namespace(preset="tiny", data=str(small_data), runs=str(runs), seed=0)).data
    a = checkpoint_path(runs, "tiny", "A_S256")
    evaluate.eval_command(Namespace(method="center-crop", checkpoint=str(a), weights=None, config=None, preset=None,
                                    loader=None, workers=None, scales=None, data=str(small_data), amp=False,
                                    limit=4))
    assert not (work / "runs").exists()
    assert list((runs / "cache").glob("*.npz"))
    assert ck.runs_folder(runs / "tiny" / "seed1" / "A_S256.pt", "tiny") == runs.resolve()
    assert ck.runs_folder(tmp_path / "x.pt", "tiny") == tmp_path.resolve()


# --------------------------------------------------------------------------- checkpoint metadata sidecars

def _plans(runs: Path) -> dict[str, str]:
    nets = [n for n in CHAIN if n.name in ("A_S256", "B_S256", "C_S256")]
    return {n.name: plan(n, checkpoint_path(runs, "tiny", n.name), "tiny", runs) for n in nets}


def test_plan_reads_the_metadata_sidecars_not_the_checkpoints(one_process, tmp_path, monkeypatch):
    """With sidecars, plan() never loads a checkpoint (weights and momentum: 1.1 GB for net D at full
    width) and answers as it does from the checkpoints, under the preset as trained and changed."""
    from vgg import chain
    trained = [checkpoint_path(one_process[0], "tiny", n) for n in ("A_S256", "B_S256")]
    for p in trained:  # training wrote each checkpoint's sidecar, stamped with the file it describes
        assert json.loads(ck.metadata_path(p).read_text())["checkpoint"] == ck.file_stamp(p)
    runs = tmp_path / "runs"
    (runs / "tiny").mkdir(parents=True)
    for p in trained:  # copies: new files, which their copied sidecars would not describe
        shutil.copy2(p, runs / "tiny" / p.name)
        shutil.copy2(ck.metadata_path(p), ck.metadata_path(runs / "tiny" / p.name))
    full = lambda p: ck.load_training_checkpoint(p)  # noqa: E731  (what plan read before sidecars)
    variants = [{}, {"patience": 3}, {"scratch_epochs": 3}, {"scratch_epochs": 1}, {"from_a_epochs": 2}]
    base, expected = protocol.PRESETS["tiny"], []
    with monkeypatch.context() as m:
        m.setattr(chain, "load_metadata", full)
        for v in variants:
            m.setitem(protocol.PRESETS, "tiny", replace(base, **{**_ddp_train.TINY, **v}))
            expected.append(_plans(runs))
    assert expected[0] == {"A_S256": "reuse", "B_S256": "reuse", "C_S256": "train"}
    assert len({json.dumps(e, sort_keys=True) for e in expected}) > 2  # the variants change the answers
    with monkeypatch.context() as m:  # a copied sidecar does not describe the copy: read in full, renewed
        m.setitem(protocol.PRESETS, "tiny", replace(protocol.PRESETS["tiny"], **_ddp_train.TINY))
        assert _plans(runs) == expected[0]

    def no_full_load(path):
        raise AssertionError(f"plan() loaded checkpoint {path}")

    with monkeypatch.context() as m:
        m.setattr(ck, "load", no_full_load)
        for v, want in zip(variants, expected):
            m.setitem(protocol.PRESETS, "tiny", replace(base, **{**_ddp_train.TINY, **v}))
            assert _plans(runs) == want, v
    # a checkpoint rewritten without its sidecar (its stamp changes): read in full once, sidecar renewed
    a = checkpoint_path(runs, "tiny", "A_S256")
    ckpt = torch.load(a, weights_only=False)
    ckpt["spec"]["seed"] = 4
    torch.save(ckpt, a)
    monkeypatch.setitem(protocol.PRESETS, "tiny", replace(protocol.PRESETS["tiny"], **_ddp_train.TINY))
    assert _plans(runs)["A_S256"] == "stale: trained with seed 4, this run asks 0"
    with monkeypatch.context() as m:
        m.setattr(ck, "load", no_full_load)
        assert _plans(runs)["A_S256"] == "stale: trained with seed 4, this run asks 0"


def test_only_rank_0_writes_tables_and_figures(tmp_path, monkeypatch):
    """Under torchrun every rank holds the gathered results: one file each, written by rank 0."""
    import matplotlib.pyplot as plt
    import pandas as pd

    import vgg.results as results
    import vgg.runtime as runtime
    from vgg.plots import save_figure
    from vgg.results import write_table

    def rank(r):
        for module in (runtime, results):
            monkeypatch.setattr(module, "rank_and_world", lambda: (r, 2))
    rank(1)
    write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.csv")
    save_figure(plt.figure(), tmp_path / "f.png")
    assert list(tmp_path.iterdir()) == []
    rank(0)
    write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.csv")
    save_figure(plt.figure(), tmp_path / "f.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png", "t.csv"]
