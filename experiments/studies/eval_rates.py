"""One seed's evaluation in the Imagewoof reproduction, timed pass by pass on photographs of mixed sizes:
the evaluation hours `make reproduce_time` charges the epoch rates of the same label.

The passes are vgg.chain_time.evaluation_passes(preset): each (net, method, Q) that Tables 3-6 and the
analysis plan's controls evaluate for one seed, once (posteriors are cached). Each distinct (config,
method, Q) among them runs as the tables run it (vgg.evaluate.posteriors on the memory loader: images of
one rescaled shape batched, on the process's threads) with a net of that config at the preset's width
(Glorot init: the weights do not change the work), on ``--images`` (default
../shared/data/imagenet-sample: 250 ILSVRC-2012 photographs at their own sizes, stored as the preset
stores Imagewoof's): dense and centre crop on every val image, multi-crop on the first ``--crop-images``.

Columns, per distinct pass: ``first_pass_ms`` per image (its config's first pass over these shapes:
oneDNN builds kernels for each new shape, and the process touches newly allocated memory, for a large
batch into the second pass) and ``ms_per_image``, the median of ``--repeats`` passes after it;
``nets``, how many of one seed's nets run it; ``images``, the Imagewoof images each runs it on (3,929 val
images; multi-crop: the preset's multi-crop images); ``seed_minutes`` = nets x images x ms_per_image,
plus the first pass's extra time once. Every ms is a real pass; the weights, not the
images, are what the study replaces.

Writes results/eval_rates/<label>.csv.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import pandas as pd
import torch

from vgg.chain_time import IMAGEWOOF_VAL, distinct_passes, eval_rates_path, pass_images, pass_seconds
from vgg.data import data_root
from vgg.datasets import MemoryData
from vgg.evaluate import posteriors
from vgg.experiment import main
from vgg.init import init_glorot
from vgg.model import VGG
from vgg.protocol import get_preset
from vgg.results import write_table

ROOT = Path(__file__).resolve().parents[2]


def time_pass(net: VGG, data: MemoryData, method: str, px: int, limit: int | None, repeats: int):
    """(first pass, median of ``repeats`` more) in ms per image, and the images a pass scored."""
    times, n = [], 0
    for _ in range(1 + repeats):
        t0 = time.perf_counter()
        n = len(posteriors(net, data, data.colour, method, [px], limit=limit)[1])
        times.append((time.perf_counter() - t0) / n * 1e3)
    return times[0], statistics.median(times[1:]), n


def eval_rates(args) -> None:
    preset = get_preset(args.preset, loader="memory")
    data = MemoryData(data_root(args.images), preset)
    images = pass_images(preset, IMAGEWOOF_VAL)
    rows, nets = [], {}
    for (config, method, q), count in distinct_passes(preset).items():
        if config not in nets:
            torch.manual_seed(0)
            nets[config] = init_glorot(VGG(config, num_classes=len(data.classes), width=preset.width,
                                           crop_size=preset.crop))
        limit = args.crop_images if method == "multi-crop" else None
        first, ms, n = time_pass(nets[config], data, method, preset.px(q), limit, args.repeats)
        minutes = pass_seconds(count, images[method], ms, first, n) / 60
        rows.append({"config": config, "method": method, "test_scale": q, "test_scale_px": preset.px(q),
                     "images_timed": n, "first_pass_ms": round(first, 3), "ms_per_image": round(ms, 3),
                     "nets": count, "images": images[method], "seed_minutes": round(minutes, 3)})
        print(f"{config:6s} {method:11s} Q={q} ({preset.px(q)} px): {ms:.2f} ms per image (first pass {first:.2f}), "
              f"{count} net(s): {minutes:.1f} min a seed", flush=True)
    df = pd.DataFrame(rows)
    write_table(df, eval_rates_path(args.results, args.label),
                {"preset": preset.name, "dataset": Path(args.images).name, "repeats_median_of": args.repeats,
                 "threads": torch.get_num_threads()})
    print(f"one seed's evaluation: {df.seed_minutes.sum():.1f} min")


def extra(p) -> None:
    p.add_argument("--images", default=str(ROOT.parent / "shared" / "data" / "imagenet-sample"),
                   help="photographs at their own sizes (default ../shared/data/imagenet-sample)")
    p.add_argument("--crop-images", type=int, default=24, help="val images multi-crop is timed on (default 24)")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed passes after the first; the median is kept (default 3: a second pass can still "
                        "be touching newly allocated memory)")
    p.add_argument("--label", required=True, help="the epoch_rates label these rates go with (results/eval_rates/)")


if __name__ == "__main__":
    main(eval_rates, needs_data=False, extra=extra)
