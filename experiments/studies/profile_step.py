"""Where the time goes at the imagenette geometry: torch.profiler over (1) net D's training step
(crop 128, width 1/4, the preset's batch, channels_last, synthetic tensors, in the precision the
chain uses here: bf16 autocast where the CPU has fast bf16, else fp32) and
(2) D's 150-crop multi-crop evaluation of a few images (Q = 160 / 224 / 288 px), this code as the
chain runs it (malloc keeps freed memory). Writes results/<preset>/profile.csv: per phase, the
operators by self CPU time (top ``--top``) with their share of the phase, and the phase's step time;
and results/<preset>/conv_layers.csv: each conv layer of the step timed alone (forward, forward +
backward) with its achieved GFLOP/s beside a 4096x4096 matmul's in the same precision, so the limit
has a number. (Timing bf16 on a CPU without native bf16 would measure an emulation the chain never
runs, and takes minutes.)
"""
import time
from pathlib import Path

import pandas as pd
import torch
from torch.profiler import ProfilerActivity, profile

from vgg import evaluate
from vgg.experiment import main
from vgg.init import init_glorot
from vgg.model import VGG
from vgg.protocol import get_preset
from vgg.results import matmul_gflops, write_table
from vgg.runtime import keep_freed_memory, resolve_amp
from vgg.timing import seconds_per_call
from vgg.train import make_optimizer, train_step

STEPS = 4


def top_ops(prof, phase: str, seconds: float, top: int) -> list[dict]:
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [{"phase": phase, "op": e.key, "calls": e.count, "self_cpu_ms": round(e.self_cpu_time_total / 1e3, 1),
             "share": round(e.self_cpu_time_total / total, 3), "phase_seconds_per_step": round(seconds, 3)}
            for e in events[:top]]


def conv_layer_rates(model: VGG, batch: int, crop: int, amp: bool) -> list[dict]:
    """Each conv layer of the training step alone (bf16 autocast if ``amp``, channels_last, the step's batch):
    forward and forward+backward time and achieved GFLOP/s (backward: weight and, but for the first
    layer, input gradient, each as costly as the forward) beside the matmul's GFLOP/s."""
    peak = matmul_gflops("cpu", amp, n=4096)
    rows, side, i = [], crop, 0
    for layer in model.features:
        if isinstance(layer, torch.nn.MaxPool2d):
            side //= 2
        if not isinstance(layer, torch.nn.Conv2d):
            continue
        i += 1
        conv = torch.nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, padding=layer.padding)
        conv = conv.to(memory_format=torch.channels_last)
        x = torch.randn(batch, layer.in_channels, side, side).contiguous(memory_format=torch.channels_last)
        x.requires_grad_(i > 1)
        macs = batch * side * side * layer.in_channels * layer.out_channels * layer.kernel_size[0] ** 2

        def fwd():
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                conv(x)

        def fwd_bwd():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                out = conv(x)
            out.backward(torch.ones_like(out))

        t_f, t_fb = seconds_per_call(fwd), seconds_per_call(fwd_bwd)
        passes = 3 if i > 1 else 2  # forward, weight gradient, input gradient
        rows.append({"layer": f"conv{i}", "in_channels": layer.in_channels, "out_channels": layer.out_channels,
                     "map": f"{side}x{side}", "forward_ms": round(1e3 * t_f, 2),
                     "forward_backward_ms": round(1e3 * t_fb, 2), "forward_gflop_s": round(2 * macs / t_f / 1e9),
                     "forward_backward_gflop_s": round(2 * passes * macs / t_fb / 1e9),
                     "matmul_gflop_s": round(peak)})
    return rows


def profile_step(args) -> None:
    keep_freed_memory()
    amp = resolve_amp(None, "cpu")  # as the chain trains here (VGG_AMP / --precision can force either)
    preset = get_preset(args.preset)
    torch.manual_seed(0)
    model = init_glorot(VGG(args.config, num_classes=10, width=preset.width, crop_size=preset.crop))
    model.train().to(memory_format=torch.channels_last)
    opt = make_optimizer(model, preset, 0.01)
    x = torch.randn(preset.batch, 3, preset.crop, preset.crop).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (preset.batch,))
    for _ in range(2):
        train_step(model, opt, x, y, amp)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(STEPS):
            train_step(model, opt, x, y, amp)
        step = (time.perf_counter() - t0) / STEPS
    rows = top_ops(prof, f"train step {args.config} (batch {preset.batch}, crop {preset.crop})", step, args.top)
    model.eval()
    imgs = {preset.px(q): torch.randn(args.images, 3, preset.px(q), preset.px(q)) for q in (256, 384, 512)}
    evaluate.multi_crop(model, imgs[min(imgs)][:1])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for im in imgs.values():
            evaluate.multi_crop(model, im)
        per_image = (time.perf_counter() - t0) / args.images
    rows += top_ops(prof, f"multi-crop eval {args.config} (150 crops per image, Q = "
                          f"{'/'.join(map(str, imgs))} px)", per_image, args.top)
    df = pd.DataFrame(rows)
    write_table(df, Path(args.results) / preset.name / "profile.csv",
                {"preset": preset.name, "threads": torch.get_num_threads()})
    for phase, g in df.groupby("phase", sort=False):
        print(f"{phase}: {g.phase_seconds_per_step.iloc[0]:.3f} s per step/image")
        print(g[["op", "calls", "self_cpu_ms", "share"]].to_string(index=False))
    layers = pd.DataFrame(conv_layer_rates(model, preset.batch, preset.crop, amp))
    write_table(layers, Path(args.results) / preset.name / "conv_layers.csv",
                {"preset": preset.name, "threads": torch.get_num_threads()})
    print(layers.to_string(index=False))
    print(f"sum of the conv layers' forward+backward: {layers.forward_backward_ms.sum():.1f} ms "
          f"of a {1e3 * step:.1f} ms step")


def extra(p) -> None:
    p.add_argument("--config", default="D")
    p.add_argument("--top", type=int, default=15, help="operators kept per phase (default 15)")
    p.add_argument("--images", type=int, default=4, help="images in the multi-crop phase (default 4)")


if __name__ == "__main__":
    main(profile_step, needs_data=False, extra=extra)
