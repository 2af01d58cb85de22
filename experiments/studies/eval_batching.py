"""Batched evaluation against one image per forward pass, on ImageNet photographs of mixed sizes.

Net D (Glorot init, fixed seed) at the preset's width and crop, Table 5's test scales (paper
256 / 384 / 512 px, in the preset's pixels), through vgg.evaluate.posteriors:

* dense and multi-crop, validation images grouped by rescaled shape (this code) vs one image per
  forward pass (the path before it), interleaved, median of REPEATS; the largest posterior
  difference between the two;
* the evaluation loaders alone, past start-up (a pass over the files first): the stream loader
  (PIL in the workers) and the GPU pipeline's decoding run on CPU tensors (libjpeg-turbo; nvjpeg on
  a CUDA device), images rescaled to Q per second;
* how many distinct rescaled shapes the photographs have at each Q (paper geometry).

Writes results/eval_batching.csv. On a CPU: the GPU figures are not measured here (results/gpu/).
"""
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from vgg.data import data_root
from vgg.datasets import StreamData
from vgg.evaluate import _method_posteriors, posteriors
from vgg.experiment import TABLE5_SCALES, main
from vgg.gpu_data import GPUStreamData
from vgg.init import init_glorot
from vgg.model import VGG
from vgg.protocol import get_preset
from vgg.results import write_table
from vgg.runtime import precision_name
from vgg.shape_groups import count_shapes

REPEATS = 3


def one_image(model, data, method, qs, amp):
    """The path before batching: one image per forward pass, in image order."""
    per_q = []
    for q in qs:
        per_q.append(torch.cat([_method_posteriors(model, data.colour.normalise(x), method, amp)
                                for x, _ in data.val_images(q, batch=1)]))
    return torch.stack(per_q).mean(0).numpy()


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def eval_batching(args) -> None:
    preset = get_preset(args.preset, loader="stream")
    data = StreamData(data_root(args.data), preset)
    n = len(data.val)
    torch.manual_seed(0)
    net = init_glorot(VGG("D", num_classes=len(data.classes), width=preset.width, crop_size=preset.crop)).eval()
    net.to(memory_format=torch.channels_last)
    qs = [preset.px(q) for q in TABLE5_SCALES]
    amp = None  # the machine's precision (bf16 where the CPU runs it natively)
    rows = []
    for method in ("dense", "multi-crop"):
        batched = lambda: posteriors(net, data, data.colour, method, qs, amp,  # noqa: E731
                                     device=torch.device("cpu"))[0]
        single = lambda: one_image(net, data, method, qs, amp)  # noqa: E731
        times = {"batched": [], "one image": []}
        outs = {}
        for _ in range(REPEATS):
            for name, fn in (("batched", batched), ("one image", single)):
                t, outs[name] = timed(fn)
                times[name].append(t)
        med = {k: float(np.median(v)) for k, v in times.items()}
        rows.append({"what": f"{method} evaluation, net D, {len(qs)} scales, img/s",
                     "ours": round(n / med["batched"], 2),
                     "one_image_per_forward": round(n / med["one image"], 2),
                     "ratio": round(med["one image"] / med["batched"], 3),
                     "max_posterior_diff": float(np.abs(outs["batched"] - outs["one image"]).max())})
    gpu = GPUStreamData(data, "cpu", "gpu")
    for q in (preset.px(256), preset.px(512)):
        rates = {}
        for name, d in (("stream loader (PIL in workers)", data), ("GPU pipeline decoding on CPU tensors", gpu)):
            sum(len(x) for x, *_ in d.val_batches(q))  # start-up and the header sizes, not timed
            ts = [timed(lambda: sum(len(x) for x, *_ in d.val_batches(q)))[0] for _ in range(REPEATS)]
            rates[name] = n / float(np.median(ts))
        (a, ra), (b, rb) = rates.items()
        rows.append({"what": f"evaluation loader at Q={q} px, img/s ({preset.workers} workers; ours: {a}, "
                             f"other: {b})", "ours": round(ra, 1), "one_image_per_forward": None,
                     "ratio": round(ra / rb, 3), "max_posterior_diff": None, "other_loader": round(rb, 1)})
    sizes = data.val_sizes()
    for q in TABLE5_SCALES:
        rows.append({"what": f"distinct rescaled shapes at Q={q} (paper px) over {n} photographs",
                     "ours": count_shapes(sizes, q)})
    write_table(pd.DataFrame(rows), Path(args.results) / "eval_batching.csv",
                {"preset": preset.name, "images": n, "test_scales_px": ";".join(map(str, qs)),
                 "repeats_median_of": REPEATS, "eval_precision": precision_name(amp, "cpu")})


if __name__ == "__main__":
    main(eval_batching)
