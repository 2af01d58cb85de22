"""One prepared GPU check (`make gpu_check`): the paper preset's whole path on one GPU in at most
8 minutes, with the rates that size an ImageNet run; results/gpu/*.csv.

Before shipping the repository to a GPU machine (which reaches nothing outside itself), make the
real-image subset here, from the shared Imagenette copy and ImageNet photographs:

    python scripts/gpu_check.py --make-subset data/gpu_subset     # <= 40 MiB, git-ignored (data/)

On the GPU machine (torch >= 2.4, torchvision >= 0.19; nothing to install):

    python scripts/gpu_check.py                                    # --data data/gpu_subset --out results/gpu

Stages, each within its share of --budget (default 450 s on a GPU), each writing its CSV when done
(atomically; every row with the device, CPU, versions, commit and command), progress printed with
timestamps so a run cut short still tells what it measured:

1. step.csv: nets D and A's training step (bf16 autocast where the device runs it, channels_last)
   on synthetic tensors at the preset's batch: img/s, the step's FLOP/s (vgg.model.multiply_adds x
   6: fwd + bwd) as a fraction of a bf16 matmul's measured in the same process (8192^3 on a GPU),
   peak memory; then D fed by real JPEGs through the GPU pipeline (vgg.gpu_data) and through the
   CPU stream loader (vgg.datasets.StreamData).
2. decode.csv: the GPU's decoded pixels against PIL's and the same random crops against the CPU's
   (nvjpeg is not libjpeg-turbo: a few levels apart), and the batched decode's img/s.
   loader.csv: the input pipelines alone, img/s: the stream loader (PIL in DataLoader workers, one
   per usable CPU) and the GPU pipeline (bytes read by the same workers, nvjpeg decode and tensor
   augmentation on the GPU), at S = 256 and S in [256, 512], on the Imagenette subset (224x224
   files) and on ImageNet photographs at their original sizes.
3. train.csv: net A trained through `torchrun --standalone --nproc_per_node 1` for a few hundred
   steps (`python -m vgg train`; the process group joined explicitly, NCCL on a GPU, and one
   DistributedDataParallel step checked against the plain step), validated and checkpointed every
   epoch, stopped, then resumed by a second torchrun to the last epoch.
4. eval.csv: `python -m vgg eval` (multi-crop & dense) on that checkpoint, and Table 5's evaluation
   rate in this process: net D, dense and 150-crop multi-crop over Q = 256, 384, 512, images batched
   by rescaled shape, decoded on the GPU (nvjpeg) and by the stream loader, on the photographs
   repeated to 1,000 files; then each evaluation loader alone and each method on the device alone.
5. compile.csv: D's training step eager, under torch.compile and with CUDA graphs
   (mode='reduce-overhead'): img/s, and the weights after 3 steps against eager's.

On a CPU the same stages run on the `tiny` preset (gloo instead of NCCL) in about a minute, which is
how tests/test_gpu_check.py runs it (--out elsewhere, so results/gpu is only written by real runs).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import io
import itertools
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

ROOT = Path(__file__).resolve().parents[1]
# The GPU machine has a copy of the repository and nothing installed (no `make install`): vgg from here,
# and the same for the torchrun / `python -m vgg` processes this starts (PYTHONPATH in Check.subprocess).
sys.path.insert(0, str(ROOT))

from vgg.errors import UserError  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
SUBSET_MANIFEST = "SUBSET.json"
JPEG = (".jpeg", ".jpg")
STAGES = ("step", "decode", "loader", "train", "eval", "compile")
EVAL_IMAGES = 1000  # Table 5's rates on a GPU: the subset's photographs repeated to this many files
COMPILE_STEPS = 3


# --------------------------------------------------------------------------- the subset (run here)

def make_subset(dst: Path, source: Path, photos: Path | None, max_mib: float, photos_mib: float) -> dict:
    """Copy at most ``max_mib`` MiB of real JPEGs into ``dst``: ImageNet photographs at their original
    sizes (``photos_mib`` of it) into dst/photos/ and Imagenette into dst/{train,val}/<wnid>/ (4 train
    files per val file, the classes in turn)."""
    for split in ("train", "val"):
        if not (source / split).is_dir():
            raise UserError(f"no Imagenette at {source} ({split}/ missing): pass --source with an ImageFolder "
                            "root of Imagenette (`make data DATASET=imagenette` writes one to data/imagenette)")
    if dst.exists() and any(dst.iterdir()) and not (dst / SUBSET_MANIFEST).exists():
        raise UserError(f"{dst} exists and is not a subset this script made: choose another folder")
    budget = int(max_mib * 2**20)
    tmp = dst.with_name(dst.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    used, counts = 0, {"photos": 0, "train": 0, "val": 0}
    if photos is not None and photos_mib > 0:
        if not photos.is_dir():
            raise UserError(f"no ImageNet photographs at {photos}: pass --photos <folder of <wnid>/*.JPEG> "
                            "or --photos-mib 0")
        files = sorted(f for f in photos.glob("*/*") if f.suffix.lower() in JPEG)
        share = min(int(photos_mib * 2**20), budget)
        # the smallest photograph first: it stands in val/ too (StreamData needs one; the loader stages
        # read train/ only), and its second copy is reserved in the share from the start
        smallest = min(files, key=lambda f: f.stat().st_size) if files else None
        reserve = smallest.stat().st_size if smallest else 0
        chosen = []
        for f in ([smallest] + [f for f in files if f != smallest]) if files else []:
            if used + f.stat().st_size + reserve > share:
                break
            _copy(f, tmp / "photos" / "train" / f.parent.name / f.name)
            used += f.stat().st_size
            chosen.append(f)
        if chosen:
            _copy(smallest, tmp / "photos" / "val" / smallest.parent.name / smallest.name)
            used += reserve
        counts["photos"] = len(chosen)
        if counts["photos"] == 0:
            shutil.rmtree(tmp / "photos", ignore_errors=True)
    classes = sorted(p.name for p in (source / "train").iterdir() if p.is_dir())
    lists = {(s, c): sorted(f for f in (source / s / c).iterdir() if f.suffix.lower() in JPEG) if
             (source / s / c).is_dir() else [] for s in ("train", "val") for c in classes}
    full = False
    for k in range(max(len(v) for v in lists.values())):
        for c in classes:
            picks = [("train", lists["train", c][k] if k < len(lists["train", c]) else None)]
            if k % 4 == 3:
                j = k // 4
                picks.append(("val", lists["val", c][j] if j < len(lists["val", c]) else None))
            for split, f in picks:
                if f is None:
                    continue
                if used + f.stat().st_size > budget:
                    full = True
                    break
                _copy(f, tmp / split / c / f.name)
                used += f.stat().st_size
                counts[split] += 1
            if full:
                break
        if full:
            break
    if counts["train"] < len(classes) or counts["val"] < len(classes):
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"--max-mib {max_mib} holds too few images for one train and one val image per class: "
                        "give more")
    manifest = {"source": str(source), "photos_source": str(photos) if counts["photos"] else None, "bytes": used,
                "max_mib": max_mib, **counts, "classes": len(classes),
                "made": datetime.datetime.now().isoformat(timespec="seconds")}
    (tmp / SUBSET_MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    return manifest


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


# --------------------------------------------------------------------------- helpers

class StageFailure(Exception):
    """A stage of the check raised: the others ran; exit 1."""


class Clock:
    """The run's time budget and timestamped progress lines."""

    def __init__(self, budget: float):
        self.t0, self.budget = time.perf_counter(), budget

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.budget - self.elapsed()

    def log(self, msg: str) -> None:
        print(f"[{datetime.datetime.now():%H:%M:%S} +{self.elapsed():5.0f} s] {msg}", flush=True)


def cpu_name() -> str:
    from vgg.results import cpu_model
    from vgg.runtime import usable_cpus
    return f"{cpu_model()} ({usable_cpus()} usable CPUs)"


def sync(device: torch.device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gib(device: torch.device) -> float:
    """Peak GPU memory allocated since the last reset, or this process's peak RSS on a CPU."""
    import torch
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def reset_peak(device: torch.device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def timed_loop(step, device, seconds: float, warmup: int = 2, max_iters: int = 10**9) -> tuple[float, int]:
    """Run ``step()`` (returns images) ``warmup`` times, then until ``seconds`` pass; (img/s, iters)."""
    for _ in range(warmup):
        step()
    sync(device)
    n = iters = 0
    t0 = time.perf_counter()
    while iters < max_iters:
        n += step()
        iters += 1
        if time.perf_counter() - t0 >= seconds:
            break
    sync(device)
    return n / (time.perf_counter() - t0), iters


def write(rows: list[dict], path: Path, clock: Clock, extra: dict) -> None:
    import pandas as pd

    from vgg.results import write_table
    if not rows:
        return
    df = pd.DataFrame(rows)
    for c in df.columns:
        if df[c].dtype.kind == "f":  # 1 decimal for rates, 4 for fractions and differences
            df[c] = df[c].map(lambda v: round(v, 1) if abs(v) >= 100 else round(v, 4) if abs(v) >= 1e-3 else v)
    with contextlib.redirect_stdout(io.StringIO()):  # write_table prints the table: the log stays readable
        write_table(df, path, {"cpu": cpu_name(), **extra})
    clock.log(f"wrote {path} ({len(df)} rows)")


# --------------------------------------------------------------------------- stages

class Check:
    def __init__(self, args):
        import torch

        from vgg.protocol import get_preset
        from vgg.runtime import keep_freed_memory, resolve_amp, usable_cpus
        keep_freed_memory()  # as training and evaluation do
        self.args = args
        self.device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
        self.gpu = self.device.type == "cuda"
        if self.gpu:
            torch.cuda.set_device(self.device)
        self.preset_name = args.preset or ("paper" if self.gpu else "tiny")
        self.preset = get_preset(self.preset_name, loader="stream", workers=args.workers or usable_cpus())
        self.amp = resolve_amp(None, self.device.type)
        self.clock = Clock(args.budget or (450 if self.gpu else 300))
        self.data_dir = Path(args.data)
        self.out = Path(args.out)
        self.runs = Path(args.runs)
        self.extra = {"preset": self.preset.name, "subset": self.data_dir.name,
                      "budget_s": self.clock.budget}
        self.gen = torch.Generator().manual_seed(0)
        self.d_rate = float("nan")  # D's synthetic step, img/s (the step stage)
        # seconds per measurement (a GPU's rates settle in a few seconds; the CPU run is a smoke test)
        self.window = 6.0 if self.gpu else 0.5
        self.scales = ("256", "256-512") if self.gpu else ("256-512",)
        self.stages = parse_stages(args.stages)

    def data(self, root: Path, batch: int | None = None, workers: int | None = None):
        from dataclasses import replace

        from vgg.datasets import StreamData
        preset = replace(self.preset, batch=batch or self.preset.batch,
                         workers=self.preset.workers if workers is None else workers)
        return StreamData(root, preset, cache_dir=self.runs / "cache")

    # ---------------------------------------------------------------- 1. the training step
    def step_stage(self) -> None:
        import torch

        from vgg.gpu_data import GPUStreamData, matmul_flops
        from vgg.model import multiply_adds
        from vgg.train import train_step
        dev, p = self.device, self.preset
        dtype = torch.bfloat16 if self.amp else torch.float32
        matmul = matmul_flops(dev, dtype=dtype, seconds=1.0 if self.gpu else 0.2)
        size = 8192 if self.gpu else 1024
        self.clock.log(f"{size}^3 {str(dtype)[6:]} matmul: {matmul / 1e12:.1f} TFLOP/s")
        rows = []
        for config in ("A", "D"):  # D last: it stays for the real-data steps (A's memory freed before D's peak)
            net, opt, row = self.synthetic_step(config, matmul)
            rows.append(row)
            if config == "D":
                d_net, d_opt, self.d_rate = net, opt, row["img_s"]
            net = opt = None
            if self.gpu:
                torch.cuda.empty_cache()
        self.write_step(rows)
        # D fed by real JPEGs: the GPU pipeline vs the CPU stream loader
        data = self.data(self.data_dir)
        data.train.paths, data.train.labels = _repeat(data.train.paths, data.train.labels, p.batch * 200)
        for name, source in (("gpu pipeline", GPUStreamData(data, dev, "gpu")), ("stream loader", data)):
            if self.clock.left() < self.reserve("step"):
                self.clock.log(f"skipped D on real data ({name}): out of time")
                break
            it = self.batches(source, (p.px(256), p.px(512)))

            def step():
                x, y = next(it)
                x = source.colour_augment(x.to(dev, non_blocking=True), self.gen)
                train_step(d_net, d_opt, x.contiguous(memory_format=torch.channels_last), y.to(dev), self.amp)
                return len(y)
            reset_peak(dev)
            rate, iters = timed_loop(step, dev, 2 * self.window, warmup=2)
            it.close()
            flops = 6 * multiply_adds(d_net) * rate
            rows.append({"config": "D", "input": f"{name}, S 256-512, {self.data_dir.name} JPEGs", "batch": p.batch,
                         "crop": p.crop, "width": p.width, "amp_bf16": self.amp, "channels_last": True, "steps": iters,
                         "img_s": rate, "step_tflop_s": flops / 1e12, "matmul_tflop_s": matmul / 1e12,
                         "fraction_of_matmul": flops / matmul, "peak_mem_gib": peak_memory_gib(dev),
                         "workers": source.preset.workers})
            self.clock.log(f"D step fed by the {name} ({source.preset.workers} workers): {rate:.0f} img/s")
            self.write_step(rows)
        d_net = d_opt = None  # noqa: F841 (frees D before the next stages)
        if self.gpu:
            torch.cuda.empty_cache()

    def synthetic_step(self, config: str, matmul: float):
        """(net, optimiser, row): ``config``'s training step on random tensors at the preset's batch."""
        import torch

        from vgg.init import init_glorot
        from vgg.model import VGG, multiply_adds
        from vgg.train import make_optimizer, train_step
        dev, p, classes = self.device, self.preset, 1000
        torch.manual_seed(0)
        net = init_glorot(VGG(config, num_classes=classes, width=p.width, crop_size=p.crop))
        net = net.to(dev, memory_format=torch.channels_last).train()
        opt = make_optimizer(net, p, 0.01)
        x = torch.randn(p.batch, 3, p.crop, p.crop, device=dev).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, classes, (p.batch,), device=dev)
        reset_peak(dev)
        rate, iters = timed_loop(lambda: (train_step(net, opt, x, y, self.amp), p.batch)[1], dev, self.window,
                                 warmup=3 if self.gpu else 1)
        flops = 6 * multiply_adds(net) * rate
        row = {"config": config, "input": "synthetic tensors", "batch": p.batch, "crop": p.crop, "width": p.width,
               "amp_bf16": self.amp, "channels_last": True, "steps": iters, "img_s": rate,
               "step_tflop_s": flops / 1e12, "matmul_tflop_s": matmul / 1e12, "fraction_of_matmul": flops / matmul,
               "peak_mem_gib": peak_memory_gib(dev), "workers": 0}
        self.clock.log(f"{config} step, synthetic, batch {p.batch}: {rate:.0f} img/s, {flops / 1e12:.1f} TFLOP/s "
                       f"= {flops / matmul:.2f} of the matmul; peak memory {row['peak_mem_gib']:.1f} GiB")
        return net, opt, row

    def write_step(self, rows):
        write(rows, self.out / "step.csv", self.clock, self.extra)

    def batches(self, data, scale):
        """Endless training batches (epoch after epoch), skipping empty ones."""
        def gen():
            epoch = 0
            while True:
                for x, y in data.train_batches(epoch, 0, scale, self.gen):
                    if x is not None:
                        yield x, y
                epoch += 1
        return gen()

    # ---------------------------------------------------------------- 2. the loaders
    def loader_stage(self) -> None:
        from vgg.gpu_data import GPUStreamData, choose_pipeline
        from vgg.protocol import parse_scale
        rows = []
        for root, label in self.image_sets():
            data = self.data(root)
            n_files = len(data.train)
            data.train.paths, data.train.labels = _repeat(data.train.paths, data.train.labels, self.preset.batch * 200)
            for scale in self.scales:
                px = tuple(self.preset.px(s) for s in parse_scale(scale))
                for name, source in (("stream loader (PIL)", data), ("gpu pipeline (nvjpeg)" if self.gpu else
                                     "gpu pipeline code on the CPU", GPUStreamData(data, self.device, "gpu"))):
                    if self.clock.left() < self.reserve("loader"):
                        self.clock.log("skipped the remaining loader rates: out of time")
                        return self.write_loader(rows)
                    rate, images = self.loader_rate(source, px)
                    w = source.preset.workers
                    stream = source is data
                    rows.append({"pipeline": name, "data": label, "files": n_files, "scale": scale, "scale_px": str(px),
                                 "crop": self.preset.crop, "batch": self.preset.batch, "workers": w, "images": images,
                                 "img_s": rate, "img_s_per_worker": rate / max(w, 1),
                                 # what the D step measured above needs, and what choose_pipeline makes of it
                                 "d_step_img_s": self.d_rate,
                                 "workers_for_d_step": self.d_rate / (rate / max(w, 1)) if stream else float("nan"),
                                 "choose_pipeline": choose_pipeline(self.device, rate, self.d_rate) if stream else ""})
                    self.clock.log(f"{name}, {label}, S={scale}: {rate:.0f} img/s ({w} workers)")
                    self.write_loader(rows)

    def image_sets(self) -> list[tuple[Path, str]]:
        sets = [(self.data_dir, f"{self.data_dir.name} (Imagenette, 224x224)")]
        if (self.data_dir / "photos" / "train").is_dir():
            sets.insert(0, (self.data_dir / "photos", "ImageNet photographs, original sizes"))
        return sets

    def decode_stage(self) -> None:
        """The device's pixels against the CPU's: decode.csv. nvjpeg's decoder (IDCT, chroma upsampling)
        is not libjpeg-turbo's, so its pixels may differ by a few levels; the same random parameters
        then give crops that differ by as much (the tensor augmentation itself is the same code)."""
        import numpy as np
        import torch

        from vgg import gpu_data
        from vgg.data import load_rgb
        rows = []
        for root, label in self.image_sets():
            files = sorted(str(f) for f in (root / "train").glob("*/*") if f.suffix.lower() in JPEG)
            files = files[:64 if self.gpu else 12]
            batch = gpu_data.encode_files(files)
            gpu_data.decode(batch, self.device)  # warm-up (nvjpeg handles, kernels)
            self.sync()
            t0 = time.perf_counter()
            on_device = gpu_data.decode(batch, self.device)
            self.sync()
            seconds = time.perf_counter() - t0
            pil = [torch.from_numpy(np.array(load_rgb(f))).permute(2, 0, 1) for f in files]
            same = [k for k, (a, b) in enumerate(zip(on_device, pil)) if tuple(a.shape) == tuple(b.shape)]
            diff = [(on_device[k].cpu().int() - pil[k].int()).abs() for k in same]
            px = (self.preset.px(256), self.preset.px(512))
            params = gpu_data.draw_params([tuple(x.shape[-2:]) for x in on_device], *px, self.preset.crop,
                                          torch.Generator().manual_seed(0))
            crops = gpu_data.augment(on_device, params, self.preset.crop).cpu()
            ref = gpu_data.augment([x.cpu() for x in gpu_data.decode(batch, "cpu")], params, self.preset.crop)
            crop_diff = (crops - ref).abs() * 255
            rows.append({"data": label, "images": len(files), "decode_img_s": len(files) / seconds,
                         "shapes_equal": len(same) == len(files),
                         "decode_max_abs_diff": max(float(d.max()) for d in diff),
                         "decode_mean_abs_diff": float(np.mean([float(d.float().mean()) for d in diff])),
                         "crop_max_abs_diff": float(crop_diff.max()), "crop_mean_abs_diff": float(crop_diff.mean()),
                         "levels": "0-255 (pixel values); crops: S 256-512, the same parameters on both"})
            r = rows[-1]
            self.clock.log(f"{label}: decode on {self.device} {r['decode_img_s']:.0f} img/s; pixels vs PIL max "
                           f"{r['decode_max_abs_diff']:.0f}, mean {r['decode_mean_abs_diff']:.2f} levels; the same "
                           f"crops max {r['crop_max_abs_diff']:.1f}, mean {r['crop_mean_abs_diff']:.2f}")
            write(rows, self.out / "decode.csv", self.clock, self.extra)

    def sync(self) -> None:
        sync(self.device)

    def write_loader(self, rows):
        write(rows, self.out / "loader.csv", self.clock, self.extra)

    def loader_rate(self, data, scale) -> tuple[float, int]:
        """Batches (colour step included) per second after the first batch, for the window."""
        it = self.batches(data, scale)
        x, _ = next(it)
        sync(self.device)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 1.5 * self.window:
            x, y = next(it)
            data.colour_augment(x.to(self.device, non_blocking=True), self.gen)
            n += len(y)
        sync(self.device)
        rate = n / (time.perf_counter() - t0)
        it.close()
        return rate, n

    # ---------------------------------------------------------------- 3. training through torchrun
    def train_stage(self) -> Path | None:
        import torch
        ck = _fresh(self.runs / f"A_S256_{self.preset.name}.pt")
        # the real training loop on the GPU pipeline's batches too (VGG_PIPELINE=gpu; auto picks by the rates)
        gpu_ck = _fresh(self.runs / f"A_S256_{self.preset.name}_gpu_pipeline.pt")
        epochs, first, gpu_epochs = (5, 3, 2) if self.gpu else (2, 1, 1)
        batch = 32

        def train_args(out: Path, n: int) -> list[str]:
            return ["train", "--config", "A", "--scale", "256", "--preset", self.preset.name, "--data",
                    str(self.data_dir), "--out", str(out), "--epochs", str(n), "--batch", str(batch), "--loader",
                    "stream", "--workers", str(self.preset.workers if self.gpu else 1), "--no-progress"]
        probe_out = self.runs / "ddp_probe.json"
        probe_out.unlink(missing_ok=True)
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
        vgg = [*torchrun, "-m", "vgg"]
        stop = ["--stop-after", str(first)]
        # (run, command, its checkpoint, epochs there before it, epochs there after it, environment)
        plain_first = ("first, without the probe", [*vgg, *train_args(ck, epochs), *stop], ck, 0, first, {})
        runs = [("first", [*torchrun, str(Path(__file__).resolve()), "--ddp-probe", str(probe_out), "--preset",
                           self.preset.name, "--", *train_args(ck, epochs), *stop], ck, 0, first, {}),
                ("resumed", [*vgg, *train_args(ck, epochs), "--resume"], ck, first, epochs, {}),
                ("gpu pipeline", [*vgg, *train_args(gpu_ck, gpu_epochs)], gpu_ck, 0, gpu_epochs,
                 {"VGG_PIPELINE": "gpu"})]
        steps_per_epoch = _count_images(self.data_dir / "train", self.preset.max_per_class) // batch
        rows = []
        while runs:
            run, cmd, this, before, expected, env = runs.pop(0)
            if self.clock.left() < self.reserve("train"):
                self.clock.log(f"skipped the {run} training run: out of time")
                break
            if before and not this.exists():
                self.clock.log(f"skipped the {run} run: no checkpoint to resume")
                continue
            self.clock.log(f"training ({run}): {' '.join(cmd[1:])}")
            t0 = time.perf_counter()
            r = self.subprocess(cmd, timeout=self.clock.left() - self.reserve("after train"), env=env)
            seconds = time.perf_counter() - t0
            state = torch.load(this, map_location="cpu", weights_only=False, mmap=True) if this.exists() else None
            log = state["log"] if state else []
            probe = json.loads(probe_out.read_text()) if probe_out.exists() else {}
            done = len(log) - before
            pipe = re.search(r"input pipeline: (\w+)", r.stderr)
            rows.append({
                "run": run, "ok": r.returncode == 0 and len(log) == expected,
                "returncode": r.returncode, "backend": probe.get("backend", ""), "world": probe.get("world", 1),
                "ddp_step_max_abs_diff": probe.get("ddp_max_abs_diff", float("nan")),
                "allreduce_ok": probe.get("allreduce_ok", False), "config": "A", "batch": batch,
                "epochs_done": done, "epochs_in_checkpoint": len(log), "steps": done * steps_per_epoch,
                "train_img_s": _rate(done * steps_per_epoch * batch, [row["seconds"] for row in log[len(log) - done:]]),
                "train_loss": log[-1]["train_loss"] if log else float("nan"),
                "val_top1_err": log[-1]["val_top1_err"] if log else float("nan"),
                "wall_s": seconds,
                "pipeline": "gpu (VGG_PIPELINE=gpu)" if env else pipe.group(1) if pipe else "stream (no choice logged)",
                "complete": bool(state and state.get("complete"))})
            self.clock.log(f"training ({run}) rc {r.returncode} in {seconds:.0f} s: {len(log)} epochs in the "
                           "checkpoint")
            if r.returncode:
                print(r.stderr[-3000:], file=sys.stderr)
            write(rows, self.out / "train.csv", self.clock, self.extra)
            if run == "first" and not ck.exists():  # the probe (NCCL?) or the training failed: train without it
                runs.insert(0, plain_first)
        return ck if ck.exists() else None

    def subprocess(self, cmd, timeout: float, env: dict | None = None):
        env = {**os.environ, **(env or {}),
               "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        try:
            r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(timeout, 5))
        except subprocess.TimeoutExpired as e:
            r = subprocess.CompletedProcess(cmd, 124, e.stdout or "", (e.stderr or "") + "\ntimed out")
            if isinstance(r.stderr, bytes):
                r.stderr = r.stderr.decode(errors="replace")
        for line in (r.stderr or "").splitlines()[-6:]:
            print(f"    | {line}", flush=True)
        return r

    # ---------------------------------------------------------------- 4. evaluation
    def eval_stage(self, ck: Path | None) -> None:
        import numpy as np
        import torch

        from vgg.evaluate import posteriors
        from vgg.init import init_glorot
        from vgg.model import VGG
        rows = []
        if ck is not None and self.clock.left() > self.reserve("eval"):
            limit = 200 if self.gpu else 8
            cmd = [sys.executable, "-m", "vgg", "eval", "--checkpoint", str(ck), "--method", "multi-crop & dense",
                   "--data", str(self.data_dir), "--limit", str(limit), "--workers", str(self.preset.workers)]
            self.clock.log(f"evaluating: {' '.join(cmd[1:])}")
            t0 = time.perf_counter()
            r = self.subprocess(cmd, timeout=self.clock.left() - self.reserve("table5"))
            seconds = time.perf_counter() - t0
            m = re.search(r"top-1 error ([\d.]+)%.*top-5 error ([\d.]+)%\s+\((\d+) images\)", r.stdout)
            rows.append({"what": "python -m vgg eval: multi-crop & dense, Q = 256 (net A from the training stage)",
                         "ok": r.returncode == 0 and m is not None, "images": int(m.group(3)) if m else 0,
                         "seconds": seconds, "img_s": (int(m.group(3)) / seconds) if m else float("nan"),
                         "crops_s": (int(m.group(3)) * 50 / seconds) if m else float("nan"),
                         "top1_err": float(m.group(1)) if m else float("nan")})
            self.clock.log(f"eval rc {r.returncode} in {seconds:.0f} s: {r.stdout.strip()[-200:]}")
            write(rows, self.out / "eval.csv", self.clock, self.extra)
        if self.clock.left() < self.reserve("table5"):
            self.clock.log("skipped Table 5's evaluation rate: out of time")
            return
        # Table 5's images are ImageNet's validation photographs: the subset's photographs stand in
        # (their original sizes set the dense pass's cost), repeated to EVAL_IMAGES files on a GPU (the label
        # says so); Imagenette's 224x224 files where there are none
        from vgg.gpu_data import GPUStreamData
        # on a CPU (the smoke run) the loaders work in this process: a worker start per pass is most of its time
        workers = None if self.gpu else 0
        data, label = self.data(self.data_dir, workers=workers), f"{self.data_dir.name} val (Imagenette, 224x224)"
        if (self.data_dir / "photos" / "train").is_dir():
            data = self.data(self.data_dir / "photos", workers=workers)
            files = len(data.train.paths)
            data.val.paths, data.val.labels = _repeat(list(data.train.paths), [0] * files,
                                                      EVAL_IMAGES if self.gpu else files)
            label = (f"ImageNet photographs, original sizes ({files} files"
                     + (f" repeated to {len(data.val.paths)})" if len(data.val.paths) > files else ")"))
        torch.manual_seed(0)
        net = init_glorot(VGG("D", num_classes=1000, width=self.preset.width, crop_size=self.preset.crop))
        qs = [self.preset.px(q) for q in (256, 384, 512)]
        # two runs of different lengths: their difference is the rate without the loaders' start
        # (workers spawned per scale), which a 50,000-image run amortises
        small, large = (len(data.val) // 4, len(data.val)) if self.gpu else (1, min(len(data.val), 3))
        pipelines = (("gpu decoding", GPUStreamData(data, self.device, None)), ("stream loader", data))
        for (pipeline, source), (method, crops) in itertools.product(pipelines, (("dense", 0), ("multi-crop", 150))):
            if self.clock.left() < 10:
                break
            posteriors(net, source, data.colour, method, qs[:1], self.amp, limit=2, device=self.device)  # warm-up
            timed = {}
            for n in (small, large):
                sync(self.device)
                t0 = time.perf_counter()
                p, y = posteriors(net, source, data.colour, method, qs, self.amp, limit=n, device=self.device)
                sync(self.device)
                timed[n] = (time.perf_counter() - t0, len(y), bool(np.isfinite(p).all()))
            seconds, images, finite = timed[large]
            extra = timed[large][0] - timed[small][0]
            steady = (large - small) / extra if extra > 0 and large > small else float("nan")
            rows.append({"what": f"Table 5 rate: net D {method} (batched by shape, {pipeline}), Q = 256, 384, 512 "
                                 f"paper px ({qs} px), random weights, {label}",
                         "ok": bool(images == large and finite), "images": images, "seconds": seconds,
                         "img_s": images / seconds, "steady_img_s": steady,
                         "crops_s": steady * crops if crops else float("nan"), "top1_err": float("nan")})
            self.clock.log(f"Table 5 {method} ({pipeline}): {images / seconds:.1f} img/s over {images} images, "
                           f"{steady:.1f} img/s past the loaders' start"
                           + (f" = {steady * crops:.0f} crops/s" if crops else ""))
            write(rows, self.out / "eval.csv", self.clock, self.extra)
        if self.clock.left() > 15:
            rows += self.eval_parts(net, pipelines, qs, large, label)
            write(rows, self.out / "eval.csv", self.clock, self.extra)

    def eval_parts(self, net, pipelines, qs: list[int], n: int, label: str) -> list[dict]:
        """Where Table 5's time goes: each evaluation loader alone (the n images at the three scales
        onto the device in shape-grouped batches, past a first pass) and the device alone (each method
        on those batches in memory)."""
        import torch

        from vgg.evaluate import _method_posteriors
        rows = []
        for pipeline, data in pipelines:
            sum(len(x) for q in qs for x, *_ in data.val_batches(q, indices=range(n)))  # start-up, header sizes
            sync(self.device)
            t0 = time.perf_counter()
            batches = [x.to(self.device, non_blocking=True)
                       for q in qs for x, *_ in data.val_batches(q, indices=range(n))]
            sync(self.device)
            load_s = time.perf_counter() - t0
            loaded = sum(len(x) for x in batches)
            rows.append({"what": f"Table 5 part: the evaluation loader alone ({pipeline}), Q = {qs} px, {label} "
                                 f"({data.preset.workers} workers, 3 loader starts)", "ok": loaded == n * len(qs),
                         "images": n, "seconds": load_s, "img_s": n / load_s, "steady_img_s": float("nan"),
                         "crops_s": float("nan"), "top1_err": float("nan")})
            self.clock.log(f"Table 5 part, {pipeline} alone: {n / load_s:.1f} img/s (3 scales)")
        for method, crops in (("dense", 0), ("multi-crop", 150)):
            with torch.no_grad():
                _method_posteriors(net, data.colour.normalise(batches[0]), method, self.amp)  # warm-up
                sync(self.device)
                t0 = time.perf_counter()
                for x in batches:
                    _method_posteriors(net, data.colour.normalise(x), method, self.amp)
                sync(self.device)
            seconds = time.perf_counter() - t0
            rows.append({"what": f"Table 5 part: net D {method} on the device alone, batched by shape, images in "
                                 f"memory, Q = {qs} px ({len(batches)} batches)",
                         "ok": True, "images": n, "seconds": seconds, "img_s": n / seconds,
                         "steady_img_s": n / seconds, "crops_s": n * crops / seconds if crops else float("nan"),
                         "top1_err": float("nan")})
            self.clock.log(f"Table 5 part, {method} on the device alone: {n / seconds:.1f} img/s"
                           + (f" = {n * crops / seconds:.0f} crops/s" if crops else ""))
        return rows

    # ---------------------------------------------------------------- 5. torch.compile
    def compile_stage(self) -> None:
        """D's training step eager, under torch.compile, and under torch.compile with CUDA graphs
        ('reduce-overhead', GPU only): img/s on synthetic tensors, and the weights after COMPILE_STEPS
        steps from the same start against eager's (largest difference relative to the largest weight
        change): a mode is worth keeping only where faster and within the step's float tolerance."""
        import torch

        from vgg.init import init_glorot
        from vgg.model import VGG
        from vgg.train import make_optimizer, train_step
        names = {"default": "torch.compile", "reduce-overhead": "torch.compile + CUDA graphs"}
        wanted = [m for m in self.args.compile_modes.split(",") if m in names]
        if not self.gpu:
            wanted = [m for m in wanted if m != "reduce-overhead"]  # CUDA graphs: GPU only
        modes = [("eager", None)] + [(names[m], m) for m in wanted]
        rows, eager_after, start = [], None, None
        for name, mode in modes:
            if self.clock.left() < self.reserve("step"):
                self.clock.log(f"skipped {name}: out of time")
                break
            torch.manual_seed(0)  # the same net and a fresh optimiser in every mode; no dropout (compiled code
            # draws its masks from another generator, so only a step without random draws can match eager's)
            net = init_glorot(VGG("D", num_classes=1000, width=self.preset.width, crop_size=self.preset.crop,
                                  dropout=0.0))
            net = net.to(self.device, memory_format=torch.channels_last).train()
            opt = make_optimizer(net, self.preset, 0.01)
            start = start or {k: v.detach().float().clone() for k, v in net.state_dict().items()}
            step = train_step if mode is None else torch.compile(train_step, mode=mode)
            p = self.preset
            gen = torch.Generator(device=self.device).manual_seed(1)
            xs = [torch.randn(p.batch, 3, p.crop, p.crop, device=self.device, generator=gen)
                  .contiguous(memory_format=torch.channels_last) for _ in range(COMPILE_STEPS)]
            ys = [torch.randint(0, 1000, (p.batch,), device=self.device, generator=gen) for _ in range(COMPILE_STEPS)]
            t0 = time.perf_counter()
            for x, y in zip(xs, ys):
                step(net, opt, x, y, self.amp)
            sync(self.device)
            first_s = time.perf_counter() - t0
            after = {k: v.detach().float().clone() for k, v in net.state_dict().items()}
            if mode is None:
                eager_after = after
            change = max((eager_after[k] - start[k]).abs().max().item() for k in start)
            diff = max((after[k] - eager_after[k]).abs().max().item() for k in start)
            rate, iters = timed_loop(lambda: (step(net, opt, xs[0], ys[0], self.amp), p.batch)[1], self.device,
                                     self.window, warmup=1)
            rows.append({"mode": name, "config": "D", "batch": p.batch, "crop": p.crop, "img_s": rate, "steps": iters,
                         "first_steps_s": first_s, "weights_diff_vs_eager": diff, "weight_change": change,
                         "relative_diff": diff / change if change else float("nan")})
            self.clock.log(f"{name}: {rate:.0f} img/s; {COMPILE_STEPS} steps (compile included) {first_s:.1f} s; "
                           f"weights vs eager {diff:.2e} (change {change:.2e})")
            write(rows, self.out / "compile.csv", self.clock, self.extra)
            net = opt = None
            if self.gpu:
                torch.cuda.empty_cache()

    # ---------------------------------------------------------------- the plan
    def reserve(self, stage: str) -> float:
        """Seconds a stage needs left to start (GPU / CPU)."""
        gpu = {"step": 60, "loader": 40, "train": 60, "after train": 60, "eval": 45, "table5": 20}
        cpu = {"step": 5, "loader": 5, "train": 15, "after train": 10, "eval": 10, "table5": 5}
        return (gpu if self.gpu else cpu)[stage]

    def run(self) -> None:
        import torch
        import torchvision
        c = self.clock
        c.log(f"gpu_check on {self.device} ({torch.cuda.get_device_name(0) if self.gpu else cpu_name()}), preset "
              f"{self.preset.name}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
              f"{'bf16 autocast' if self.amp else 'fp32'}, {self.preset.workers} workers, budget {c.budget:.0f} s")
        self.runs.mkdir(parents=True, exist_ok=True)
        failed = []
        # a stage that fails is reported and the next one still runs: one run on a lent GPU tells all it can
        ck = None
        for name, stage in (("step", self.step_stage), ("decode", self.decode_stage), ("loader", self.loader_stage),
                            ("train", self.train_stage), ("eval", lambda: self.eval_stage(ck)),
                            ("compile", self.compile_stage)):
            if name not in self.stages:
                continue
            c.log(f"stage: {name}")
            try:
                result = stage()
            except Exception:  # noqa: BLE001 (reported below, and the exit status says so)
                failed.append(name)
                c.log(f"stage {name} FAILED:\n{traceback.format_exc()}")
                if self.gpu:
                    torch.cuda.empty_cache()
                continue
            if name == "train":
                ck = result
        c.log(f"done in {c.elapsed():.0f} s; CSVs in {self.out}" + (f"; failed: {', '.join(failed)}" if failed else ""))
        if failed:
            raise StageFailure(f"gpu_check: stage(s) {', '.join(failed)} failed (tracebacks above)")


def parse_stages(text: str) -> list[str]:
    stages = [s.strip() for s in text.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown or not stages:
        raise UserError(f"--stages {text!r}: name some of {','.join(STAGES)}")
    return stages


def _fresh(ck: Path) -> Path:
    """``ck`` with no checkpoint, log or metadata sidecar left from an earlier check."""
    for f in (ck, ck.with_suffix(".log.csv"), ck.with_name(ck.stem + ".meta.json")):
        f.unlink(missing_ok=True)
    return ck


def _repeat(paths: list[str], labels: list[int], at_least: int):
    """The file list repeated to at least ``at_least`` entries (rates past the workers' start)."""
    k = max(1, -(-at_least // max(len(paths), 1)))
    return paths * k, labels * k


def _rate(images: int, seconds: list[float]) -> float:
    return images / sum(seconds) if images > 0 and sum(seconds) > 0 else float("nan")


def _count_images(split: Path, max_per_class: int | None) -> int:
    n = 0
    for c in split.iterdir():
        if c.is_dir():
            k = sum(1 for f in c.iterdir() if f.suffix.lower() in JPEG)
            n += min(k, max_per_class) if max_per_class else k
    return n


# --------------------------------------------------------------------------- torchrun's process

def ddp_probe(out: Path, preset_name: str, train_argv: list[str]) -> int:
    """Inside torchrun: join the process group (NCCL on a GPU, gloo on a CPU) explicitly -- the
    training code joins one only for more than one process --, check an all-reduce and that a
    DistributedDataParallel step equals the plain step, then train (``python -m vgg`` argv)."""
    import torch
    import torch.distributed as dist

    from vgg.__main__ import main as vgg_main
    from vgg.init import init_glorot
    from vgg.model import VGG
    from vgg.protocol import get_preset
    from vgg.runtime import resolve_amp
    from vgg.train import make_optimizer, train_step
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    t0 = time.perf_counter()
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    t = torch.full((4,), float(rank + 1), device=device)
    dist.all_reduce(t)
    allreduce_ok = bool((t == world * (world + 1) / 2).all())
    preset = get_preset(preset_name)
    torch.manual_seed(0)
    net = init_glorot(VGG("A", num_classes=10, width=preset.width, crop_size=preset.crop))
    net = net.to(device, memory_format=torch.channels_last).eval()  # eval: no dropout, same function twice
    ref = copy.deepcopy(net)
    ddp = torch.nn.parallel.DistributedDataParallel(net, device_ids=[local] if device.type == "cuda" else None)
    amp = resolve_amp(None, device.type)
    opt, opt_ref = make_optimizer(net, preset, 0.01), make_optimizer(ref, preset, 0.01)
    x = torch.randn(8, 3, preset.crop, preset.crop, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (8,), device=device)
    for _ in range(2):
        train_step(ddp, opt, x, y, amp)
        train_step(ref, opt_ref, x, y, amp)
    diff = max(float((a - b).detach().abs().max()) for a, b in zip(net.parameters(), ref.parameters()))
    result = {"backend": backend, "world": world, "allreduce_ok": allreduce_ok, "ddp_max_abs_diff": diff,
              "seconds": time.perf_counter() - t0, "device": str(device)}
    print(f"ddp probe: {result}", file=sys.stderr, flush=True)
    del ddp, net, ref, opt, opt_ref
    if rank == 0:
        out.write_text(json.dumps(result))
    try:
        return vgg_main(train_argv)
    finally:
        dist.destroy_process_group()


# --------------------------------------------------------------------------- main

def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--make-subset", metavar="DIR", help="copy the real-image subset into DIR and exit (run it "
                                                       "where ../shared/data is, before shipping the repository)")
    p.add_argument("--source", default=str(SHARED / "imagenette"), help="Imagenette ImageFolder root for "
                                                                        "--make-subset (default %(default)s)")
    p.add_argument("--photos", default=str(SHARED / "imagenet-sample" / "train"),
                   help="ImageNet photographs (<wnid>/*.JPEG) for --make-subset (default %(default)s)")
    p.add_argument("--max-mib", type=float, default=40, help="the subset's size cap in MiB (default 40)")
    p.add_argument("--photos-mib", type=float, default=10, help="of which photographs (default 10)")
    p.add_argument("--data", default=str(ROOT / "data" / "gpu_subset"), help="the subset (default data/gpu_subset)")
    p.add_argument("--out", default=str(ROOT / "results" / "gpu"), help="CSV folder (default results/gpu)")
    p.add_argument("--runs", default=str(ROOT / "runs" / "gpu_check"), help="checkpoints and caches "
                                                                           "(default runs/gpu_check)")
    p.add_argument("--preset", help="default: paper on a GPU, tiny on a CPU")
    p.add_argument("--workers", type=int, help="DataLoader workers (default: the usable CPUs)")
    p.add_argument("--budget", type=float, help="seconds for the whole check (default 450 on a GPU, 300 on a CPU)")
    p.add_argument("--compile-modes", default="default,reduce-overhead",
                   help="torch.compile modes the compile stage measures beside eager (none: eager only)")
    p.add_argument("--stages", default=",".join(STAGES), help="the stages to run, in their order "
                                                               "(default %(default)s)")
    p.add_argument("--ddp-probe", metavar="JSON", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    rest = []
    if "--" in argv:
        argv, rest = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    a = parse(argv)
    try:
        if a.ddp_probe:
            return ddp_probe(Path(a.ddp_probe), a.preset or "tiny", rest)
        if a.make_subset:
            m = make_subset(Path(a.make_subset), Path(a.source), Path(a.photos) if a.photos else None,
                            a.max_mib, a.photos_mib)
            print(f"{a.make_subset}: {m['train']} train + {m['val']} val Imagenette images ({m['classes']} classes), "
                  f"{m['photos']} ImageNet photographs; {m['bytes'] / 2**20:.1f} MiB")
            return 0
        if not (Path(a.data) / "train").is_dir():
            raise UserError(f"no subset at {a.data}: run `python scripts/gpu_check.py --make-subset {a.data}` where "
                            "../shared/data is (before shipping the repository), or pass --data")
        Check(a).run()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except StageFailure as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
