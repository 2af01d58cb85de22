"""Cost per image of dense evaluation vs 150-crop multi-crop (3 scales), net D at the preset's geometry."""
import time
from pathlib import Path

import pandas as pd
import torch

from vgg.evaluate import dense_eval, multi_crop
from vgg.experiment import TABLE5_SCALES, main
from vgg.init import init_glorot
from vgg.model import VGG
from vgg.protocol import get_preset
from vgg.results import write_table

IMAGES = 64
REPEATS = 5


def eval_cost(args) -> None:
    preset = get_preset(args.preset)
    torch.manual_seed(0)
    net = init_glorot(VGG("D", num_classes=10, width=preset.width, crop_size=preset.crop)).eval()
    net.to(memory_format=torch.channels_last)
    qs = [preset.px(q) for q in TABLE5_SCALES]
    images = {q: torch.randn(IMAGES, 3, q, q) for q in qs}
    methods = {"dense (3 scales x 2 flips)": lambda x: dense_eval(net, x),
               "multi-crop (3 scales x 25 crops x 2 flips = 150)": lambda x: multi_crop(net, x)}
    times = {m: [] for m in methods}
    for m, f in methods.items():  # warm-up
        f(images[qs[0]][:8])
    for _ in range(REPEATS):  # interleaved A B A B
        for m, f in methods.items():
            t0 = time.perf_counter()
            for q in qs:
                f(images[q])
            times[m].append((time.perf_counter() - t0) / IMAGES)
    med = {m: sorted(t)[len(t) // 2] for m, t in times.items()}
    dense_ms = med["dense (3 scales x 2 flips)"] * 1e3
    rows = [{"method": m, "ms_per_image": round(s * 1e3, 3), "relative_to_dense": round(s * 1e3 / dense_ms, 2)}
            for m, s in med.items()]
    write_table(pd.DataFrame(rows), Path(args.results) / preset.name / "eval_cost.csv",
                {"preset": preset.name, "net": "D", "test_scales_paper": ";".join(map(str, TABLE5_SCALES)),
                 "test_scales_px": ";".join(map(str, qs)), "images": IMAGES,
                 "repeats_median_of": REPEATS, "threads": torch.get_num_threads(), "torch": torch.__version__})


if __name__ == "__main__":
    main(eval_cost, needs_data=False)
