"""Where the time goes at the imagenette geometry: torch.profiler over (1) net D's training step
(crop 128, width 1/4, the preset's batch, bf16 autocast, channels_last, synthetic tensors) and
(2) D's 150-crop multi-crop evaluation of a few images (Q = 160 / 224 / 288 px), this code as the
chain runs it (malloc keeps freed memory). Writes results/<preset>/profile.csv: per phase, the
operators by self CPU time (top ``--top``) with their share of the phase, and the phase's step time.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import time  # noqa: E402

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from vgg import evaluate  # noqa: E402
from vgg.experiment import main  # noqa: E402
from vgg.init import init_glorot  # noqa: E402
from vgg.model import VGG  # noqa: E402
from vgg.protocol import get_preset  # noqa: E402
from vgg.results import write_table  # noqa: E402
from vgg.runtime import keep_freed_memory  # noqa: E402
from vgg.train import make_optimizer, train_step  # noqa: E402

STEPS = 4


def top_ops(prof, phase: str, seconds: float, top: int) -> list[dict]:
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [{"phase": phase, "op": e.key, "calls": e.count, "self_cpu_ms": round(e.self_cpu_time_total / 1e3, 1),
             "share": round(e.self_cpu_time_total / total, 3), "phase_seconds_per_step": round(seconds, 3)}
            for e in events[:top]]


def profile_step(args) -> None:
    keep_freed_memory()
    preset = get_preset(args.preset)
    torch.manual_seed(0)
    model = init_glorot(VGG(args.config, num_classes=10, width=preset.width, crop_size=preset.crop))
    model.train().to(memory_format=torch.channels_last)
    opt = make_optimizer(model, preset, 0.01)
    x = torch.randn(preset.batch, 3, preset.crop, preset.crop).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (preset.batch,))
    for _ in range(2):
        train_step(model, opt, x, y)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(STEPS):
            train_step(model, opt, x, y)
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


def extra(p) -> None:
    p.add_argument("--config", default="D")
    p.add_argument("--top", type=int, default=15, help="operators kept per phase (default 15)")
    p.add_argument("--images", type=int, default=4, help="images in the multi-crop phase (default 4)")


if __name__ == "__main__":
    main(profile_step, needs_data=False, extra=extra)
