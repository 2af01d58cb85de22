"""How fast the CPU turns ImageNet JPEGs into training batches, per core, at the paper's geometry
(crop 224; S = 256 and S in [256, 512]); results/loader_rate.csv.

Pipelines, each over every file of --data's train split (default $VGG_DATA; `make loader_rate` uses
../shared/data/imagenet-sample: 250 ILSVRC-2012 photographs at their original sizes):

* ``stream``: the project's stream loader (vgg.datasets.StreamData: PIL decode + EXIF + RGB in
  DataLoader workers, PIL's antialiased bilinear rescale to S, random crop, flip), with 0 workers
  (all in this process) and 1 worker;
* ``torchvision.io``: vgg.gpu_data on the CPU (libjpeg-turbo decode through torchvision, rescale /
  crop / flip as tensor ops): what the GPU pipeline does, run on a CPU core (0 workers).

Work: ``decode`` (the image decoded, nothing else) or ``decode+rescale+crop+flip+colour`` (the whole
training input: the colour shift and mean subtraction are batched in the main process).

Per core: images per CPU-second of the processes that decode (this process with 0 workers, the
worker with 1), one torch thread each; wall-clock rates are given too but depend on what else runs
(load_avg column: the 1-minute load average when the row was measured). Each rate is the median of
--repeats passes over the files (from the page cache: a real ImageNet run may also wait on the disk).

The GPU comparison is an ESTIMATE until scripts/gpu_check.py has measured the step on a GPU
(results/gpu/step.csv): --gpu-step-rate (default: an H200-class GPU's 989 TFLOP/s dense bf16 peak x
the assumed fraction vgg.gpu_data.STEP_FRACTION_ESTIMATE / VGG-16's training FLOPs per image);
cores_for_gpu_step = that rate / the per-core rate.
"""
from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import DataLoader

from vgg.data import SafeImageFolder, collate_skip, data_root
from vgg.datasets import StreamData
from vgg.errors import UserError
from vgg.experiment import main
from vgg.gpu_data import (
    STEP_FRACTION_ESTIMATE,
    EncodedFiles,
    GPUStreamData,
    collate_encoded,
    decode,
    step_flops_per_image,
)
from vgg.protocol import get_preset, parse_scale
from vgg.results import write_table

H200_BF16_PEAK = 989e12  # FLOP/s, dense bf16 tensor cores (NVIDIA's H100/H200 SXM spec sheet)
SCALES = ["256", "256-512"]
FULL = "decode+rescale+crop+flip+colour"


def gpu_step_estimate(config: str = "D") -> tuple[float, str]:
    """VGG-16's training img/s on an H200-class GPU: an estimate, with what it rests on."""
    flops = step_flops_per_image(config, 1.0, 224)
    rate = H200_BF16_PEAK * STEP_FRACTION_ESTIMATE / flops
    return rate, (f"ESTIMATE (not measured): {H200_BF16_PEAK / 1e12:.0f} TFLOP/s bf16 peak x "
                  f"{STEP_FRACTION_ESTIMATE} assumed fraction / {flops / 1e9:.1f} GFLOP per image ({config}, "
                  "fwd+bwd); replace with results/gpu/step.csv")


def size_only(img):
    """Decode-only transform: the decoded image's size (so a batch collates)."""
    return torch.tensor(img.size)


class Meter:
    """Wall time, this process's CPU time and its reaped children's (DataLoader workers)."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        self.children = _children_cpu()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        self.children = _children_cpu() - self.children


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def stream_pass(data: StreamData, scale, work: str, gen) -> int:
    """One pass of the stream loader over the train split; the images it delivered."""
    n = 0
    if work == "decode":
        ds = SafeImageFolder(data.root / "train", size_only)
        ds.paths, ds.labels = data.train.paths, data.train.labels
        loader = DataLoader(ds, batch_size=data.preset.batch, num_workers=data.preset.workers, collate_fn=collate_skip)
        for x, _, _ in loader:
            n += 0 if x is None else len(x)
        return n
    for x, _ in data.train_batches(0, 0, parse_scale(scale), gen):
        if x is not None:  # a batch of unreadable files only
            data.colour_augment(x, gen)
            n += len(x)
    return n


def tvio_pass(data: StreamData, scale, work: str, gen) -> int:
    """One pass of vgg.gpu_data's pipeline on the CPU (0 workers)."""
    n = 0
    if work == "decode":
        files = EncodedFiles(data.train.paths, data.train.labels)
        for batch, _, _ in DataLoader(files, batch_size=data.preset.batch, collate_fn=collate_encoded):
            n += len(decode(batch, "cpu"))
        return n
    for x, _ in GPUStreamData(data, "cpu", "gpu").train_batches(0, 0, parse_scale(scale), gen):
        if x is not None:  # a batch of unreadable files only
            data.colour_augment(x, gen)
            n += len(x)
    return n


def measure(fn, data, scale, work, repeats: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    runs = []
    for _ in range(repeats):
        with Meter() as m:
            n = fn(data, scale, work, gen)
        decode_cpu = m.cpu if data.preset.workers == 0 else m.children
        runs.append({"images": n, "wall_s": m.wall, "img_s_wall": n / m.wall, "img_per_cpu_s": n / decode_cpu,
                     "main_cpu_ms_per_img": 1000 * m.cpu / n})
    best = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    best["images"] = int(runs[0]["images"])
    return best


def loader_rate(args) -> None:
    torch.set_num_threads(1)  # per core: one thread in this process too (workers use one)
    root = data_root(args.data)
    step_rate, basis = (args.gpu_step_rate, "given by --gpu-step-rate") if args.gpu_step_rate else gpu_step_estimate()
    base = get_preset("paper", batch=args.batch, workers=0)
    data = StreamData(root, base, cache_dir=Path("runs/cache"))
    if len(data.train) < args.batch:
        raise UserError(f"{root}/train has {len(data.train)} images, fewer than --batch {args.batch}: pass a "
                        "smaller --batch")
    sizes = []
    from PIL import Image
    for p in data.train.paths:
        with Image.open(p) as im:
            sizes.append(im.size[0] * im.size[1])
    rows = []
    plan = [("stream", stream_pass, w) for w in (0, 1)] + [("torchvision.io", tvio_pass, 0)]
    for pipeline, fn, workers in plan:
        data.preset = get_preset("paper", batch=args.batch, workers=workers)
        for work, scale in [("decode", "-")] + [(FULL, s) for s in SCALES]:
            r = measure(fn, data, scale, work, args.repeats)
            rows.append({"pipeline": pipeline, "work": work, "scale": scale, "workers": workers, **r,
                         "load_avg": round(os.getloadavg()[0], 2)})
            print(f"{pipeline:15s} {work:32s} S={scale:8s} workers={workers}: {r['img_per_cpu_s']:.0f} img per "
                  f"CPU-s, {r['img_s_wall']:.0f} img/s wall", file=sys.stderr, flush=True)
    df = pd.DataFrame(rows)
    for col in ("wall_s", "img_s_wall", "img_per_cpu_s", "main_cpu_ms_per_img"):
        df[col] = df[col].round(2 if col in ("wall_s", "main_cpu_ms_per_img") else 1)
    df["gpu_step_img_s"] = round(step_rate)
    df["cores_for_gpu_step"] = (step_rate / df.img_per_cpu_s).round(1)
    df["gpu_step_basis"] = basis
    mpx = statistics.median(sizes) / 1e6
    write_table(df, Path(args.results) / "loader_rate.csv",
                {"dataset": root.name, "files": len(data.train), "median_megapixels": round(mpx, 3),
                 "preset": "paper", "crop": 224, "batch": args.batch, "repeats_median_of": args.repeats})


def extra(p) -> None:
    p.add_argument("--batch", type=int, default=25, help="batch size of the loaders (default 25)")
    p.add_argument("--repeats", type=int, default=3, help="passes per row; the median is kept (default 3)")
    p.add_argument("--gpu-step-rate", type=float,
                   help="the GPU's training img/s to compare with (default: an H200-class estimate)")


if __name__ == "__main__":
    main(loader_rate, extra=extra)
