"""Benchmarks, each a pair timed interleaved (A B A B ...) after warm-up, median of REPEATS.

1. Training step of D at the proxy geometry: our loop (uint8 in memory, batched tensor
   augmentation, bf16 autocast, channels_last) vs a torchvision-reference-style loop
   (fp32, PIL transforms + DataLoader with 2 workers) on the same images.
2. Loader headroom: our full loop vs the bare model step on synthetic tensors (goal >= 90%),
   and our data pipeline alone.
3. Evaluation: dense (3 Q x 2 flips) vs 150-crop multi-crop per image, net D.
4. Paper geometry (D, width 1, 224 px): training step fp32 vs bf16.
5-8. Imagenette geometry (crop 128, width 1/4, batch 64, synthetic tensors), "new" (this code:
   malloc keeps freed memory, fast LRN, conv + ReLU and max-pool + ReLU fused with each ReLU before a
   pool applied after it (vgg.fused), multi-crop forward in chunks of 500 crops) vs "current" (the
   code before: glibc's default malloc, nn.LocalResponseNorm, every layer its own module in the plain
   order, all crops of a batch in one forward).  malloc's mode is per process, so each repeat runs one
   fresh process per variant, alternating (new, current, new, current, ...); medians over REPEATS.
   5. D train step img/s, new vs current.
   6. D train step's achieved GFLOP/s (6 x forward multiply-adds... x2 per image) over a 4096x4096
      bf16 matmul's GFLOP/s (best of 3) measured in the same process: the fraction of the machine's rate.
   7. A-LRN step time / A step time (new; current in the baseline column).
   8. multi-crop evaluation (150 crops per image over Q = 160, 224, 288 px), net D, img/s, after one
      untimed pass over the same images.
"""
import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import pandas as pd
import torch
import torchvision.transforms as T
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from vgg.data import data_root
from vgg.datasets import MemoryData
from vgg.evaluate import dense_eval, multi_crop
from vgg.experiment import main
from vgg.init import init_glorot
from vgg.model import VGG
from vgg.protocol import get_preset
from vgg.results import matmul_gflops, write_table
from vgg.runtime import resolve_amp
from vgg.timing import interleaved_rates
from vgg.train import make_optimizer, train_step

REPEATS = 5
REPEATS_PROCESS = 3  # rows 5-8: fresh processes per variant, alternating
STEPS = 8


def interleaved(fns: dict, repeats: int = REPEATS) -> dict:
    """fns: name -> callable returning images processed; returns name -> median img/s (the names in one
    fixed order every repeat, as the published rows were measured)."""
    return interleaved_rates(fns, repeats, alternate=False)


def proxy_rows(args, preset) -> list[dict]:
    root = data_root(args.data)
    data = MemoryData(root, preset, cache_dir=Path("runs/cache"))
    smin, smax = preset.scale_px("256")
    torch.manual_seed(0)
    ours = init_glorot(VGG("D", num_classes=10, width=preset.width, crop_size=preset.crop))
    ours.to(memory_format=torch.channels_last).train()
    ref = init_glorot(VGG("D", num_classes=10, width=preset.width, crop_size=preset.crop)).train()
    opt_ours, opt_ref = make_optimizer(ours, preset, 0.01), make_optimizer(ref, preset, 0.01)
    gen = torch.Generator().manual_seed(0)
    it = {}

    def ours_batches():
        while True:
            yield from data.train_batches(0, 0, (smin, smax), gen)

    it["ours"] = ours_batches()

    def ours_loop():
        for _ in range(STEPS):
            x, y = next(it["ours"])
            x = data.colour_augment(x, gen).contiguous(memory_format=torch.channels_last)
            train_step(ours, opt_ours, x, y)  # precision auto (bf16 where native)
        return STEPS * preset.batch

    mean = data.colour.mean.tolist()
    tf = T.Compose([T.Resize(smin), T.RandomCrop(preset.crop), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(mean, [1 / 255] * 3)])
    loader = DataLoader(ImageFolder(str(root / "train"), tf), batch_size=preset.batch, shuffle=True,
                        num_workers=2, persistent_workers=True, drop_last=True)

    def ref_batches():
        while True:
            yield from loader

    it["ref"] = ref_batches()

    def ref_loop():
        for _ in range(STEPS):
            x, y = next(it["ref"])
            train_step(ref, opt_ref, x, y, amp=False)
        return STEPS * preset.batch

    xs = torch.randn(preset.batch, 3, preset.crop, preset.crop).contiguous(memory_format=torch.channels_last)
    ys = torch.randint(0, 10, (preset.batch,))

    def bare_step():
        for _ in range(STEPS):
            train_step(ours, opt_ours, xs, ys)
        return STEPS * preset.batch

    def pipeline_only():
        for _ in range(STEPS):
            x, _ = next(it["ours"])
            data.colour_augment(x, gen)
        return STEPS * preset.batch

    r1 = interleaved({"ours": ours_loop, "ref": ref_loop})
    r2 = interleaved({"full": ours_loop, "bare": bare_step, "pipeline": pipeline_only})

    net = ours.eval()
    qs = [preset.px(q) for q in (256, 384, 512)]
    imgs = {q: torch.randn(32, 3, q, q) for q in qs}
    r3 = interleaved({"dense": lambda: [dense_eval(net, imgs[q]) for q in qs] and 32,
                      "multi-crop": lambda: [multi_crop(net, imgs[q]) for q in qs] and 32})
    return [
        {"what": "1. train step D, proxy (ours: memory+batched aug+auto precision+channels_last vs "
                 "reference: PIL+DataLoader(2 workers)+fp32)", "ours_img_s": r1["ours"], "baseline_img_s": r1["ref"]},
        {"what": "2a. loader headroom: our full loop vs bare model step (synthetic tensors)",
         "ours_img_s": r2["full"], "baseline_img_s": r2["bare"]},
        {"what": "2b. our data pipeline alone (crop+flip+colour) vs bare model step",
         "ours_img_s": r2["pipeline"], "baseline_img_s": r2["bare"]},
        {"what": "3. eval D proxy: dense (3 Q x 2 flips) vs multi-crop (150 crops), images/s",
         "ours_img_s": r3["dense"], "baseline_img_s": r3["multi-crop"]},
    ]


def paper_row() -> dict:
    torch.manual_seed(0)
    net = VGG("D").train().to(memory_format=torch.channels_last)
    opt = make_optimizer(net, get_preset("paper"), 0.01)
    x = torch.randn(8, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (8,))

    def step(amp):
        return lambda: (train_step(net, opt, x, y, amp=amp), 8)[1]

    r = interleaved({"bf16": step(True), "fp32": step(False)})
    return {"what": "4. train step D, paper geometry (width 1, 224 px, batch 8): bf16 vs fp32",
            "ours_img_s": r["bf16"], "baseline_img_s": r["fp32"]}


def imagenette_measure(variant: str) -> dict:
    """One process's measurements at the imagenette geometry (see the module docstring, 5-8)."""
    from vgg.model import plain_order
    from vgg.runtime import keep_freed_memory
    if variant == "new":
        keep_freed_memory()
    with nullcontext() if variant == "new" else plain_order():  # the code before: every layer its own module
        return imagenette_rates(variant)


def imagenette_rates(variant: str) -> dict:
    from torch import nn

    from vgg import evaluate
    from vgg.model import LocalResponseNorm, multiply_adds
    preset = get_preset("imagenette")
    torch.manual_seed(0)
    x = torch.randn(preset.batch, 3, preset.crop, preset.crop).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (preset.batch,))

    def net(config):
        m = init_glorot(VGG(config, num_classes=10, width=preset.width, crop_size=preset.crop))
        if variant == "current":
            for i, layer in enumerate(m.features):
                if isinstance(layer, LocalResponseNorm):
                    m.features[i] = nn.LocalResponseNorm(layer.size, layer.alpha, layer.beta, layer.k)
        return m.train().to(memory_format=torch.channels_last)

    def step_rate(config, steps=4):
        m = net(config)
        opt = make_optimizer(m, preset, 0.01)
        for _ in range(2):
            train_step(m, opt, x, y)
        t0 = time.perf_counter()
        for _ in range(steps):
            train_step(m, opt, x, y)
        return steps * preset.batch / (time.perf_counter() - t0), m

    out = {}
    out["D_img_s"], d = step_rate("D")
    out["D_gflop_s"] = out["D_img_s"] * 6 * multiply_adds(d) / 1e9  # fwd 2 FLOP/MAC, bwd twice fwd
    # in the precision train_step runs in here: bf16 on a CPU without native bf16 times an emulation
    out["matmul_gflop_s"] = matmul_gflops("cpu", resolve_amp(None, "cpu"), n=4096)
    out["A_img_s"], _ = step_rate("A")
    out["A-LRN_img_s"], _ = step_rate("A-LRN")
    if variant == "current":
        evaluate.MULTI_CROP_CHUNK = 10 ** 9  # all crops of a batch in one forward, as before
    d.eval()
    imgs = {q: torch.randn(10, 3, q, q) for q in (160, 224, 288)}
    for q in imgs:  # warm-up at the timed shapes: oneDNN builds its kernels per batch shape
        evaluate.multi_crop(d, imgs[q])
    t0 = time.perf_counter()
    for q in imgs:
        evaluate.multi_crop(d, imgs[q])
    out["multi_crop_img_s"] = 10 / (time.perf_counter() - t0)
    return out


def imagenette_rows() -> list[dict]:
    runs = {"new": [], "current": []}
    for _ in range(REPEATS_PROCESS):
        for variant in runs:
            r = subprocess.run([sys.executable, __file__, "--measure", variant], capture_output=True,
                               text=True, timeout=1200)
            if r.returncode:
                raise RuntimeError(f"bench worker failed: {r.stderr[-2000:]}")
            runs[variant].append(json.loads(r.stdout.strip().splitlines()[-1]))
    med = {v: {k: statistics.median(m[k] for m in ms) for k in ms[0]} for v, ms in runs.items()}
    new, cur = med["new"], med["current"]
    return [
        {"what": "5. train step D, imagenette geometry (crop 128, width 1/4, batch 64): new vs current code, img/s",
         "ours_img_s": new["D_img_s"], "baseline_img_s": cur["D_img_s"]},
        {"what": "6. train step D (new), achieved GFLOP/s vs a 4096x4096 bf16 matmul's GFLOP/s, same process",
         "ours_img_s": new["D_gflop_s"], "baseline_img_s": new["matmul_gflop_s"]},
        {"what": "7. A-LRN step time / A step time, imagenette geometry (new; baseline column: current code)",
         "ours_img_s": new["A_img_s"] / new["A-LRN_img_s"], "baseline_img_s": cur["A_img_s"] / cur["A-LRN_img_s"]},
        {"what": "8. multi-crop eval D (150 crops, Q = 160/224/288 px): new vs current code, img/s",
         "ours_img_s": new["multi_crop_img_s"], "baseline_img_s": cur["multi_crop_img_s"]},
    ]


def bench(args) -> None:
    preset = get_preset(args.preset)
    rows = proxy_rows(args, preset) + [paper_row()] + imagenette_rows()
    df = pd.DataFrame(rows)
    df["ratio"] = (df.ours_img_s / df.baseline_img_s).round(3)
    # row 7 holds step-time ratios (about 1-7), the others rates: keep 3 significant figures or 1 decimal
    for col in ("ours_img_s", "baseline_img_s"):
        df[col] = df[col].map(lambda v: round(v, 2) if v < 100 else round(v, 1))
    df["date"] = datetime.date.today().isoformat()
    write_table(df, Path(args.results) / f"{args.name}.csv", {"preset": preset.name, "repeats_median_of": REPEATS})
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vgg.plots import save_figure
    fig, ax = plt.subplots(figsize=(9, 4))
    labels = [w.split(":")[0].split(" (")[0] for w in df.what]
    ax.barh(labels, df.ratio, color="#d9822b")
    ax.axvline(1, color="k", lw=0.8)
    for i, v in enumerate(df.ratio):
        ax.text(v, i, f" {v:.2f}x", va="center", fontsize=8)
    ax.set_xlabel("ratio ours / baseline (img/s)")
    ax.invert_yaxis()
    ax.set_title(f"Benchmarks (see results/{args.name}.csv for what each pair is)", fontsize=10)
    save_figure(fig, Path(args.figures) / f"{args.name}.png")


def file_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise argparse.ArgumentTypeError(f"{text!r}: use letters, digits, '_' and '-' only (e.g. bench_intel_amx)")
    return text


def extra(p) -> None:
    p.add_argument("--name", type=file_name, default="bench",
                   help="writes results/NAME.csv and figures/NAME.png (default bench; one name per machine, "
                   "e.g. bench_intel_amx)")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--measure":  # a worker process of rows 5-8
        torch.set_num_threads(min(torch.get_num_threads(), os.cpu_count() or 1))
        print(json.dumps(imagenette_measure(sys.argv[2])))
    else:
        main(bench, extra=extra)
