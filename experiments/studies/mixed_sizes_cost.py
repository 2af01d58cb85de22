"""What images of mixed sizes (Imagewoof's) cost beyond images of one size (the Imagenette copy the
reproduction's epoch rates are timed on), per image at a preset's geometry (default imagewoof); `make
reproduce_time` adds the difference to its estimate.

* ``--same-size`` (default ../shared/data/imagenette): Imagenette's copy, every image 224x224;
* ``--mixed`` (default ../shared/data/imagenet-sample): 250 ILSVRC-2012 photographs at their own sizes,
  stored as the preset stores Imagewoof's (shorter side at most its largest size, aspect kept).

Rows, each in ms per image (the median of ``--repeats`` passes after an untimed one, the two kinds of
images alternating, at torch's thread count as in training):

* ``train``, ``val``, per training scale of the chain (S = 256, 384, [256, 512] in paper pixels): the
  in-memory loader's training input (vgg.datasets.MemoryData.train_batches: isotropic rescale to S,
  random crop, flip; then the colour shift and mean subtraction) and the per-epoch validation's input
  at that stage's Q (val_center_crops: rescale to Q, centre crop);
* ``dense``, ``multi-crop``, per test scale of Table 5 (Q = 256, 384, 512): evaluation of a net D of the
  preset (Glorot init: the weights do not change the work) as the tables run it (vgg.evaluate.posteriors:
  images of one rescaled shape batched), dense on every val image, multi-crop on ``--crop-images``.
  A dense pass grows with the rescaled image's area (a 3:4 photograph at Q has a third more pixels than a
  square one); the 150 crops of multi-crop do not.

Writes results/mixed_sizes_cost.csv.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path

import pandas as pd
import torch

from vgg.data import data_root
from vgg.datasets import MemoryData
from vgg.evaluate import posteriors
from vgg.experiment import TABLE5_SCALES, main
from vgg.init import init_glorot
from vgg.model import VGG
from vgg.protocol import get_preset, parse_scale, single_test_scale
from vgg.results import write_table

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("256", "384", "256-512")  # the chain's training scales, paper pixels


def ms_per_image(runs: list, repeats: int) -> list[tuple[float, int]]:
    """Per run: (median ms per image over ``repeats`` timed passes, images per pass). The runs alternate
    (A B A B ...) after one untimed pass each, so a drift of the machine's speed reaches them alike."""
    for run in runs:
        run()
    times, n = [[] for _ in runs], [0] * len(runs)
    for _ in range(repeats):
        for k, run in enumerate(runs):
            t0 = time.perf_counter()
            n[k] = run()
            times[k].append((time.perf_counter() - t0) / n[k] * 1e3)
    return [(statistics.median(t), m) for t, m in zip(times, n)]


def passes(data: MemoryData, preset, stage: str) -> dict:
    """The stage's training pass and validation pass, each returning the images it delivered."""
    scale = tuple(preset.px(s) for s in parse_scale(stage))
    q = preset.px(single_test_scale(stage))

    def train() -> int:
        gen, n = torch.Generator().manual_seed(0), 0
        for x, _ in data.train_batches(0, 0, scale, gen):
            n += len(data.colour_augment(x, gen))
        return n

    def val() -> int:
        n = 0
        for x, _ in data.val_center_crops(q):
            n += len(data.colour.normalise(x))
        return n

    return {("train", f"{scale[0]}" if scale[0] == scale[1] else f"{scale[0]}-{scale[1]}"): train,
            ("val", f"{q}"): val}


def evaluations(data: MemoryData, preset, crop_images: int) -> dict:
    """Dense (every val image) and multi-crop (the first ``crop_images``) at each of Table 5's Q."""
    torch.manual_seed(0)
    net = init_glorot(VGG("D", num_classes=len(data.classes), width=preset.width, crop_size=preset.crop))
    out = {}
    for q in TABLE5_SCALES:
        for method, limit in (("dense", None), ("multi-crop", crop_images)):
            def run(method=method, limit=limit, q=q) -> int:
                return len(posteriors(net, data, data.colour, method, [preset.px(q)], limit=limit)[1])
            out[(f"Q={q}", method, f"{preset.px(q)}")] = run
    return out


def mixed_sizes_cost(args) -> None:
    preset = get_preset(args.preset, loader="memory")
    rows, work = [], {}
    sets = [("one size", data_root(args.same_size), args.per_class), ("mixed sizes", data_root(args.mixed), None)]
    for kind, root, per_class in sets:  # both roots checked before anything is decoded
        data = MemoryData(root, dataclasses.replace(preset, max_per_class=per_class))
        sizes = data.train.sizes
        hw = data.train.images.shape[-2:] if sizes is None else sizes.double().median(0).values
        what = {"images": kind, "dataset": root.name, "median_hw": "x".join(str(int(v)) for v in hw)}
        runs = {(f"S={stage}", *key): run for stage in STAGES for key, run in passes(data, preset, stage).items()}
        runs.update(evaluations(data, preset, args.crop_images))
        for key, run in runs.items():
            work.setdefault(key, []).append((what, run))
    for (stage, task, px), both in work.items():  # each task on both kinds of images, interleaved
        for (what, _), (ms, n) in zip(both, ms_per_image([run for _, run in both], args.repeats)):
            rows.append({"stage": stage, "work": task, "px": px, **what, "images_timed": n,
                         "ms_per_image": round(ms, 3)})
            print(f"{what['images']:11s} {stage:11s} {task:10s} ({px} px): {ms:.2f} ms per image", flush=True)
    df = pd.DataFrame(rows)
    by = ["stage", "work"]
    mixed, one = df[df.images == "mixed sizes"].set_index(by).ms_per_image, df[df.images == "one size"].set_index(by)
    df = df.join((mixed - one.ms_per_image).round(3).rename("mixed_minus_one_size_ms"), on=by)
    df = df.join((mixed / one.ms_per_image).round(3).rename("mixed_over_one_size"), on=by)
    write_table(df, Path(args.results) / "mixed_sizes_cost.csv",
                {"preset": preset.name, "crop": preset.crop, "batch": preset.batch, "repeats_median_of": args.repeats,
                 "threads": torch.get_num_threads()})


def extra(p) -> None:
    p.add_argument("--same-size", default=str(ROOT.parent / "shared" / "data" / "imagenette"),
                   help="a dataset of one image size (default ../shared/data/imagenette)")
    p.add_argument("--mixed", default=str(ROOT.parent / "shared" / "data" / "imagenet-sample"),
                   help="a dataset of photographs at their own sizes (default ../shared/data/imagenet-sample)")
    p.add_argument("--per-class", type=int, default=50,
                   help="training images per class of --same-size (default 50; its val: half that)")
    p.add_argument("--crop-images", type=int, default=24, help="val images multi-crop is timed on (default 24)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes per row; the median is kept (default 3)")


if __name__ == "__main__":
    main(mixed_sizes_cost, needs_data=False, extra=extra)
