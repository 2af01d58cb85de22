"""Worker for tests/test_distributed.py: the real training and evaluation code in one of several
gloo processes (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT in the environment).

    _ddp_train.py chain DATA RUNS OUT   -- scenario() below; rank 0 saves its posteriors to OUT
    _ddp_train.py steps DATA RUNS OUT   -- one stream-loader epoch; each rank writes OUT/steps<rank>.json
    _ddp_train.py photos DATA RUNS OUT  -- photographs(): batched dense and multi-crop posteriors to OUT
"""
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

# The preset both the one-process and the two-process run use: tiny, two epochs for net A, and no
# dropout (its masks are drawn per process, so they cannot match one process's; every other random
# draw is the same at any number of processes).
TINY = {"dropout": 0.0, "scratch_epochs": 2}
BATCH = 16  # the global batch: 3 steps per epoch on the 60 training images of the tiny preset
SUBSET = [1, 4, 6, 11, 17, 23]  # validation images scored by multi-crop


def scenario(data: str, runs: Path) -> dict:
    """Net A trained one epoch and stopped, then the chain builds B_S256 (which resumes A for its
    second epoch and trains B from it); B's posteriors by the cache and by multi-crop on a subset."""
    from vgg import checkpoint as ck
    from vgg.chain import build_chain, checkpoint_path
    from vgg.data import ColourStats
    from vgg.evaluate import cached_posteriors, posteriors
    from vgg.loaders import load_datasets
    from vgg.protocol import get_preset
    from vgg.train import TrainSpec, train
    common = {"batch": BATCH, "amp": False, "progress": False}
    train(TrainSpec(config="A", preset="tiny", data=data, out=str(checkpoint_path(runs, "tiny", "A_S256")),
                    resume="auto", stop_after=1, **common))  # its runs folder: the one its path is in
    build_chain("tiny", data, runs, only=["B_S256"], log=lambda m: None, **common)
    b = checkpoint_path(runs, "tiny", "B_S256")
    preset = get_preset("tiny", batch=BATCH)
    val = load_datasets(Path(data), preset, cache_dir=runs / "cache")
    ckpt = ck.load_training_checkpoint(b)
    dense = cached_posteriors(b, "dense", [256], val, amp=False)
    crops = posteriors(ck.model_from_checkpoint(ckpt), val, ColourStats.from_dict(ckpt["colour"]), "multi-crop",
                       [preset.px(256)], amp=False, indices=SUBSET)
    return {"dense": dense, "multi_crop": crops}


def photographs(data: str) -> dict:
    """A fixed random net A (1/16 width, crop 32, seed 0) scored on photographs of mixed sizes by the
    stream loader's shape-grouped batches: dense and multi-crop at Q = 40 and 56 px."""
    from vgg.datasets import StreamData
    from vgg.evaluate import posteriors
    from vgg.model import VGG
    from vgg.protocol import get_preset
    torch.manual_seed(0)
    net = VGG("A", num_classes=3, width=1 / 16, crop_size=32).eval()
    preset = get_preset("tiny", crop=32, loader="stream", workers=0, max_per_class=None)
    data = StreamData(Path(data), preset)
    return {m: posteriors(net, data, data.colour, m, [40, 56], amp=False, device=torch.device("cpu"))
            for m in ("dense", "multi-crop")}


def stream_epoch(data: str, runs: Path, out: Path) -> None:
    """One epoch of the stream loader; counts the training steps this process takes."""
    from vgg import train as train_module
    steps = []
    real_step = train_module.train_step

    def counted(*a, **k):
        steps.append(1)
        return real_step(*a, **k)

    train_module.train_step = counted
    train_module.train(train_module.TrainSpec(config="A", preset="tiny", data=data, out=str(runs / "s.pt"),
                                              loader="stream", workers=0, batch=8, epochs=1, amp=False,
                                              progress=False))
    rank = int(os.environ["RANK"])
    (out / f"steps{rank}.json").write_text(json.dumps({"steps": len(steps)}))


if __name__ == "__main__":
    torch.set_num_threads(1)
    from vgg import protocol
    from vgg.train import setup_distributed
    protocol.PRESETS["tiny"] = replace(protocol.PRESETS["tiny"], **TINY)
    mode, data, runs, out = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
    rank, world, _ = setup_distributed()
    if mode in ("chain", "photos"):
        result = scenario(data, runs) if mode == "chain" else photographs(data)
        if rank == 0:
            torch.save(result, out)
    else:
        stream_epoch(data, runs, out)
    torch.distributed.destroy_process_group()
