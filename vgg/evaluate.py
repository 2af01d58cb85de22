"""Testing as Sect. 3.2 and 4.

* :func:`dense_eval` -- the fully-convolutional net on the whole image rescaled to Q;
  the class score map is spatially averaged, soft-max posteriors are averaged with
  those of the horizontally flipped image.
* :func:`multi_crop` -- a 5x5 regular grid of crop-size crops x 2 flips = 50 crops per
  scale (150 over 3 scales), soft-max posteriors averaged.
* multi-scale -- posteriors averaged over the test scales Q.
* ``multi-crop & dense`` -- the average of both methods' posteriors.
* :func:`fuse` -- the average of several nets' posteriors.

Evaluation runs on the process's device (:func:`vgg.runtime.process_device`).  Under
``torchrun`` each process scores its slice of the validation images and the posteriors are
gathered in order, so every process holds the one-process result.

Images are scored in batches of one rescaled shape (vgg.shape_groups); for dense evaluation the rare
shapes' small batches share a zero-padded canvas, each image's region computed as if alone
(vgg.model.Features), and centre crops of every shape share batches.

Posteriors are cached per (net, method, scale) as .npz so tables recombine them; an entry is
named by everything they depend on (:func:`cache_key`) and holds the stamp of the checkpoint
it was computed from.
"""
from __future__ import annotations

import hashlib
import json
import os
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from . import checkpoint as ck
from .configs import check_config
from .data import TORCHVISION_COLOUR, ColourStats, center_crop, data_root
from .datasets import cache_folder
from .errors import UserError
from .io import atomic_save_npz
from .loaders import load_datasets
from .locks import file_lock
from .metrics import topk_error
from .model import VGG, size_runs, zero_padding_
from .protocol import get_preset, parse_scale, single_test_scale
from .runtime import (
    all_sum,
    gather_rows,
    keep_freed_memory,
    precision_name,
    process_device,
    rank_and_world,
    resolve_amp,
    setup_distributed,
)
from .shape_groups import EVAL_PIXELS, padded_batches

METHODS = ("dense", "multi-crop", "multi-crop & dense", "center-crop")
MULTI_CROP_CHUNK = 500  # crops per forward pass
# Part of every posterior-cache key: raise it when a change to this module changes posteriors.
EVAL_VERSION = 4


def check_method(method: str) -> str:
    if method not in METHODS:
        raise UserError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    return method


def _forward(model: VGG, x: torch.Tensor, amp: bool, dense: bool, sizes=None) -> torch.Tensor:
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=resolve_amp(amp, x.device.type)):
        return (model.score_map(x, sizes) if dense else model(x)).float()


def _mean_scores(model: VGG, x: torch.Tensor, amp: bool, sizes) -> torch.Tensor:
    """(N, C): each image's class score map averaged over its own positions."""
    scores = _forward(model, x, amp, dense=True, sizes=sizes)
    if sizes is None:
        return scores.mean(dim=(2, 3))
    return torch.cat([scores[a:b, :, :h, :w].mean(dim=(2, 3))
                      for a, b, (h, w) in size_runs(model.map_sizes(sizes))])


def flip_images(x: torch.Tensor, sizes=None) -> torch.Tensor:
    """The horizontal mirror images; of a padded batch (``sizes``), each image mirrored in its own region."""
    if sizes is None:
        return x.flip(-1)
    out = torch.zeros_like(x)
    for a, b, (h, w) in size_runs(sizes):
        out[a:b, :, :h, :w] = x[a:b, :, :h, :w].flip(-1)
    return out


@torch.no_grad()
def dense_eval(model: VGG, x: torch.Tensor, amp: bool | None = None, sizes=None) -> torch.Tensor:
    """Posteriors (N, C): spatially averaged class score map, soft-max, flip-averaged.  A batch and its
    flips go through the net as one batch while they fit in an evaluation batch's pixels (EVAL_PIXELS):
    images of a rare size come one or two per batch, and a forward pass has a cost of its own.
    ``sizes``: ``x`` is a padded batch of images of several sizes (vgg.shape_groups.padded_batches)."""
    n = len(x)
    flipped = flip_images(x, sizes)
    if 2 * n * x.shape[-2] * x.shape[-1] <= EVAL_PIXELS:
        passes = [(torch.cat([x, flipped]), None if sizes is None else sizes + sizes)]
    else:
        passes = [(x, sizes), (flipped, sizes)]
    p = torch.cat([_mean_scores(model, b, amp, s).softmax(1) for b, s in passes])
    return (p[:n] + p[n:]) / 2


def crop_grid(h: int, w: int, crop: int, grid: int = 5) -> list[tuple[int, int]]:
    """Top-left corners of a grid x grid regular grid of crops covering an h x w image."""
    if h < crop or w < crop:
        raise UserError(f"test image {h}x{w} is smaller than the crop {crop}: choose Q >= the crop size")
    tops = np.linspace(0, h - crop, grid).round().astype(int)
    lefts = np.linspace(0, w - crop, grid).round().astype(int)
    return [(int(t), int(left)) for t in tops for left in lefts]


@torch.no_grad()
def multi_crop(model: VGG, x: torch.Tensor, amp: bool | None = None, grid: int = 5) -> torch.Tensor:
    """Posteriors (N, C) averaged over a grid x grid crops and their flips (50 per scale)."""
    crop = model.crop_size
    corners = crop_grid(x.shape[-2], x.shape[-1], crop, grid)
    crops = torch.stack([x[..., t:t + crop, s:s + crop] for t, s in corners], 1)  # (N, G, 3, c, c)
    crops = torch.cat([crops, crops.flip(-1)], 1)
    n, g = crops.shape[:2]
    p = crop_scores(model, crops.reshape(n * g, *crops.shape[2:]), amp).softmax(1)
    return p.reshape(n, g, -1).mean(1)


def crop_scores(model: VGG, crops: torch.Tensor, amp: bool | None) -> torch.Tensor:
    """Class scores (N, C) of N crops, forwarded MULTI_CROP_CHUNK at a time: all crops of a 250-image
    batch at once would need ~10 GB at crop 128."""
    return torch.cat([_forward(model, crops[i:i + MULTI_CROP_CHUNK], amp, dense=False)
                      for i in range(0, len(crops), MULTI_CROP_CHUNK)])


@torch.no_grad()
def center_crop_eval(model: VGG, x: torch.Tensor, amp: bool | None = None) -> torch.Tensor:
    return _forward(model, center_crop(x, model.crop_size), amp, dense=False).softmax(1)


def fuse(posteriors: list[np.ndarray]) -> np.ndarray:
    """Fusion of several nets: the mean of their soft-max posteriors."""
    return np.mean(np.stack(posteriors), axis=0)


def _method_posteriors(model: VGG, x: torch.Tensor, method: str, amp: bool | None, sizes=None) -> torch.Tensor:
    if method == "dense":
        return dense_eval(model, x, amp, sizes)
    if method == "multi-crop":
        return multi_crop(model, x, amp)
    if method == "center-crop":
        return center_crop_eval(model, x, amp)
    return (dense_eval(model, x, amp) + multi_crop(model, x, amp)) / 2


@torch.no_grad()
def posteriors(model: VGG, data, colour: ColourStats, method: str, scales_px: list[int],
               amp: bool | None = None, limit: int | None = None, device=None, indices=None):
    """(posteriors (N, C), labels (N,)) of ``method`` averaged over the test scales (in px), on all
    validation images, on ``indices``, or on the first ``limit`` of them (unreadable ones left out),
    on ``device`` (default: the process's).  With several processes each scores its slice."""
    check_method(method)
    keep_freed_memory()
    device = device or process_device()
    rank, world = rank_and_world()
    model.eval().to(device, memory_format=torch.channels_last)
    idx = np.arange(len(data.val)) if indices is None else np.asarray(indices, dtype=np.int64)
    idx = idx[:limit]  # val_batches takes this process's slice of them
    per_scale, labels = [], torch.zeros(0, dtype=torch.int64)
    for q in scales_px:
        # batches of one rescaled shape, in order of shape: the rows are put back in image order at the end.
        # Posteriors stay on the device until the scale is done: no wait for the device per batch, so the
        # next batch is read and sent while the device computes (the loader pins its batches on CUDA)
        ps, ys, at = ([torch.zeros(0, model.num_classes, device=device)], [torch.zeros(0, dtype=torch.int64)],
                      [torch.zeros(0, dtype=torch.int64)])
        batches = data.val_batches(q, indices=idx, rank=rank, world=world)
        if method == "center-crop":  # crops of every shape are one size: they share batches
            batches = ((center_crop(x, model.crop_size), y, pos) for x, y, pos in batches)
        if method in ("dense", "center-crop"):  # rare shapes share a padded batch (each image's result its own)
            batches = padded_batches(batches)
        else:
            batches = ((*b, None) for b in batches)
        for x, y, positions, sizes in batches:
            x = colour.normalise(x.to(device, non_blocking=True))
            if sizes is not None:  # the padding holds 0 after the mean subtraction, as a conv's own padding
                zero_padding_(x, sizes)
            ps.append(_method_posteriors(model, x, method, amp, sizes))
            ys.append(torch.as_tensor(y, dtype=torch.int64))
            at.append(torch.as_tensor(positions, dtype=torch.int64))
        order = torch.argsort(torch.cat(at))
        per_scale.append(torch.cat(ps).cpu()[order])
        labels = torch.cat(ys)[order]
    p = torch.stack(per_scale).mean(0)
    if world > 1:  # the slices in rank order: all images in order
        p, labels = gather_rows(p, device), gather_rows(labels, device)
    return p.numpy(), labels.numpy()


def scales_px(preset, scales_paper: list[int]) -> list[int]:
    return [preset.px(q) for q in scales_paper]


def cache_key(checkpoint: Path, method: str, scales_paper: list[int], data, amp: bool | None, device,
              subset: np.ndarray | None) -> dict:
    """Everything a cached posterior depends on but the checkpoint's contents (whose stamp the entry
    holds): which checkpoint, the method, the test scales (paper and preset pixels, from the
    checkpoint's preset), the precision, the val images (:meth:`identity` of ``data``), the subset's
    indices, and this module's version."""
    preset = get_preset(ck.load_metadata(checkpoint)["preset"]["name"])
    return {"version": EVAL_VERSION, "checkpoint": str(checkpoint.resolve()), "method": method,
            "scales_paper": [int(q) for q in scales_paper], "scales_px": scales_px(preset, scales_paper),
            "precision": precision_name(amp, device.type), "data": data.identity(),
            "subset": None if subset is None else hashlib.sha1(np.asarray(subset, np.int64).tobytes()).hexdigest()}


def cached_posteriors(checkpoint: Path, method: str, scales_paper: list[int], data, amp: bool | None = None,
                      cache_dir: Path | None = None, subset: np.ndarray | None = None,
                      device=None) -> tuple[np.ndarray, np.ndarray]:
    """Posteriors of a training checkpoint, from the cache when nothing they depend on has changed.
    'multi-crop & dense' is the mean of the two cached methods and several Q the mean of the cached
    single-Q posteriors (averaging is linear), so no image goes through a net twice.
    ``subset`` (validation indices): only those images; multi-crop is then computed on them alone,
    other methods are taken from their all-image posteriors.  On the process's device by default."""
    checkpoint, device = Path(checkpoint), device or process_device()

    def again(m: str, qs: list[int], sub):
        return cached_posteriors(checkpoint, m, qs, data, amp, cache_dir, sub, device)

    if method == "multi-crop & dense":
        (pd_, y), (pm, _) = (again(m, scales_paper, subset) for m in ("dense", "multi-crop"))
        return ((pd_ + pm) / 2).astype(np.float32), y
    if len(scales_paper) > 1:  # multi-scale = the mean over Q: each scale is cached once, for every table
        parts = [again(method, [q], subset) for q in scales_paper]
        return np.mean(np.stack([p for p, _ in parts]), axis=0).astype(np.float32), parts[0][1]
    if subset is not None and method != "multi-crop":
        p, y = again(method, scales_paper, None)
        return p[subset], y[subset]
    cache_dir = Path(cache_dir or checkpoint.parent / "posteriors")
    key = cache_key(checkpoint, method, scales_paper, data, amp, device, subset)
    text = json.dumps(key, sort_keys=True)
    slug = method.replace(" & ", "+")
    cache = cache_dir / (f"{checkpoint.stem}__{slug}__Q{'-'.join(map(str, scales_paper))}__"
                         f"{hashlib.sha1(text.encode()).hexdigest()[:16]}.npz")
    rank, world = rank_and_world()
    # one lock holder: rank 0 (a concurrent table script waits for this entry instead of computing it too)
    with file_lock(cache) if rank == 0 else nullcontext():
        stamp = json.dumps(ck.file_stamp(checkpoint), sort_keys=True)
        hit = _read_entry(cache, text, stamp)
        if world > 1 and all_sum([hit is None], device)[0]:
            hit = None  # every process computes its slice when any of them missed
        if hit is not None:
            return hit
        ckpt = ck.load_training_checkpoint(checkpoint)
        p, y = posteriors(ck.model_from_checkpoint(ckpt), data, ColourStats.from_dict(ckpt["colour"]), method,
                          key["scales_px"], amp, device=device, indices=subset)
        if rank == 0:
            atomic_save_npz(cache, posteriors=p.astype(np.float32), labels=y, key=np.array(text),
                            checkpoint_stamp=np.array(stamp))
    return p.astype(np.float32), y


def _read_entry(cache: Path, key: str, stamp: str) -> tuple[np.ndarray, np.ndarray] | None:
    if not cache.exists():
        return None
    z = np.load(cache)
    if "key" not in z.files or str(z["key"]) != key or str(z["checkpoint_stamp"]) != stamp:
        return None
    return z["posteriors"], z["labels"]


def eval_command(a) -> None:
    """``python -m vgg eval``: a checkpoint, or plain weights (--weights + --config)."""
    check_method(a.method)
    if bool(a.checkpoint) == bool(a.weights):
        raise UserError("give exactly one of --checkpoint (a vgg-repro checkpoint) or --weights (a state dict)")
    if a.checkpoint:
        ckpt = ck.load_training_checkpoint(a.checkpoint, a.config)
        model = ck.model_from_checkpoint(ckpt)
        preset = get_preset(a.preset or ckpt["preset"]["name"], loader=a.loader, workers=a.workers)
        colour = ColourStats.from_dict(ckpt["colour"])
        train_scale = ckpt["spec"]["scale"]
    else:
        if not a.config:
            raise UserError("--weights needs --config (A, B, D or E for torchvision's vgg11/13/16/19)")
        preset = get_preset(a.preset or "paper", loader=a.loader, workers=a.workers)  # torchvision's: 224 px
        model = VGG(check_config(a.config), num_classes=1000, width=preset.width, crop_size=preset.crop)
        ck.load_state_dict_into(model, ck.load(a.weights), a.weights)
        colour, train_scale = TORCHVISION_COLOUR, "256"
    scales = [int(s) for s in a.scales.split(",")] if a.scales else [single_test_scale(train_scale)]
    for s in scales:
        parse_scale(s)
        if preset.px(s) < preset.crop:
            raise UserError(f"test scale Q={s} is smaller than the crop ({preset.crop} px in preset {preset.name})")
    runs = ck.runs_folder(Path(a.checkpoint), ckpt["preset"]["name"]) if a.checkpoint else default_runs()
    data = load_datasets(data_root(a.data), preset, cache_dir=cache_folder(runs))
    if len(data.classes) != model.num_classes:
        raise UserError(f"the net has {model.num_classes} classes but {a.data or os.environ.get('VGG_DATA')} "
                        f"has {len(data.classes)}")
    rank, _, device = setup_distributed()
    p, y = posteriors(model, data, colour, a.method, scales_px(preset, scales), a.amp, a.limit, device)
    if rank == 0:
            print(f"{a.method} Q={scales}: top-1 error {100 * topk_error(p, y, 1):.2f}%  "
              f"top-5 error {100 * topk_error(p, y, 5):.2f}%  ({len(y)} images)")


def default_runs() -> Path:
    """The runs folder where no checkpoint names one: $VGG_RUNS, else runs/."""
    return Path(os.environ.get("VGG_RUNS") or "runs")
