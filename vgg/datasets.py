"""The train/val data a run needs, behind one interface for both loaders.

``MemoryData`` (proxy): uint8 tensors in RAM, batched tensor augmentation.
``StreamData`` (ImageNet): torchvision decoding in DataLoader workers.
Both yield float [0, 1] NCHW batches; colour shift and mean subtraction follow
batched on the device (:meth:`colour_augment`), so both paths share that code.

Under ``torchrun`` every process takes every step of an epoch, each on its shard of the
global batch.  The in-memory loader draws the augmentation of the whole global batch on
every process and keeps its shard (a few ms against a model step), so a step is the same
at any number of processes; so is the colour shift of both loaders.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset

from .data import (
    ColourStats,
    SafeImageFolder,
    center_crop,
    collate_skip,
    draw_scales,
    file_line,
    fraction_of,
    image_sizes,
    list_images,
    load_memory_split,
    load_rgb,
    random_crops,
    rescale,
    seed_worker,
    stream_train_transform,
    subsample,
)
from .io import atomic_write_text
from .shape_groups import EVAL_PIXELS, shape_groups, stack_by_shape

EVAL_BATCH = 250
VAL_CROP_BATCH = 64  # centre crops per batch from the stream loader (pinned float batches in flight)


def cache_folder(runs: str | Path) -> Path:
    """Where decoded splits and colour statistics are cached: ``<runs>/cache``."""
    return Path(runs) / "cache"


class _Data:
    """What both loaders share: the colour augmentation and the identity of the val images."""

    def colour_augment(self, x: torch.Tensor, gen: torch.Generator, part: slice | None = None) -> torch.Tensor:
        """PCA colour shift and mean subtraction.  ``part``: x is these rows of the global batch
        (this process's shard); the shifts of the whole global batch are drawn and its rows applied
        (the first len(x) of them where unreadable images left fewer)."""
        rows = len(x) if part is None else self.preset.batch
        shift = self.colour.pca_shift(torch.zeros(rows, 3, 1, 1), self.preset.pca_std, gen)
        if part is not None:
            shift = shift[part][:len(x)]
        return self.colour.normalise(x + shift.to(x))

    def val_slice(self, indices, rank: int, world: int) -> np.ndarray:
        """This process's contiguous slice of the validation indices (all, or ``indices``)."""
        idx = np.arange(len(self.val)) if indices is None else np.asarray(indices, dtype=np.int64)
        return idx[fraction_of(len(idx), rank, world)]

    def identity(self) -> dict:
        """What the validation images a net is scored on depend on: the loader (and the side the
        in-memory loader shrinks images to), the dataset root, and its val files (names, labels and
        sizes: :func:`vgg.data.file_line`)."""
        if getattr(self, "_identity", None) is None:
            h = hashlib.sha1()
            for p, y in zip(*self.val_files()):
                h.update(f"{y}\0".encode() + file_line(p, os.path.relpath(p, self.root)))
            self._identity = {"loader": self.preset.loader, "root": str(Path(self.root).resolve()),
                              "max_side": largest_side(self.preset) if self.preset.loader == "memory" else None,
                              "val_files": h.hexdigest()}
        return self._identity


class MemoryData(_Data):
    def __init__(self, root: Path, preset, cache_dir: Path | None = None):
        self.preset, self.root = preset, root
        side = largest_side(preset)
        self.train = load_memory_split(root / "train", max_per_class=preset.max_per_class, cache_dir=cache_dir,
                                       max_side=side)
        self.classes = self.train.classes
        self.val = load_memory_split(root / "val", self.classes, self._val_per_class(), cache_dir=cache_dir,
                                     max_side=side)
        self.skipped = self.train.skipped + self.val.skipped
        self.colour = ColourStats.from_pixels(self.train.pixel_sample())

    def steps_per_epoch(self, world: int = 1) -> int:
        return len(self.train) // self.preset.batch

    def val_files(self) -> tuple[list[str], list[int]]:
        paths, labels, _ = list_images(self.root / "val", self.classes)
        return subsample(paths, labels, self._val_per_class())

    def _val_per_class(self) -> int | None:
        return self.preset.max_per_class and self.preset.max_per_class // 2 or None

    def train_batches(self, epoch: int, seed: int, scale: tuple[int, int], gen: torch.Generator,
                      rank: int = 0, world: int = 1):
        """Global batches of ``preset.batch`` in a per-epoch order, augmented whole (scales, crops and
        flips drawn from ``gen``, which every rank seeds alike); this rank's share of each."""
        order = torch.randperm(len(self.train), generator=torch.Generator().manual_seed(seed * 7919 + epoch))
        batch = self.preset.batch
        part = fraction_of(batch, rank, world)
        for b in range(self.steps_per_epoch()):
            idx = order[b * batch:(b + 1) * batch]
            scales = draw_scales(len(idx), scale[0], scale[1], gen)
            images = self.train.images[idx] if self.train.sizes is None else [self.train.image(i) for i in idx.tolist()]
            x = random_crops(images, scales, self.preset.crop, gen)
            yield x[part], self.train.labels[idx][part]

    def val_images(self, q: int, rank: int = 0, world: int = 1, batch: int = EVAL_BATCH, indices=None):
        """Validation images (all, or ``indices``) rescaled to shortest side Q (float [0, 1]) with labels."""
        idx = torch.arange(len(self.val)) if indices is None else torch.as_tensor(indices)
        idx = idx[fraction_of(len(idx), rank, world)]
        if self.val.sizes is not None:  # images of several sizes: one at a time
            for i in idx.tolist():
                yield rescale(self.val.image(i)[None], q), self.val.labels[i:i + 1]
            return
        for i in range(0, len(idx), batch):
            j = idx[i:i + batch]
            yield rescale(self.val.images[j], q), self.val.labels[j]

    def val_center_crops(self, q: int, rank: int = 0, world: int = 1, batch: int = EVAL_BATCH):
        """Centre crops of the validation images rescaled to Q, in batches (the per-epoch validation)."""
        idx = torch.arange(len(self.val))[fraction_of(len(self.val), rank, world)]
        for i in range(0, len(idx), batch):
            j = idx[i:i + batch]
            if self.val.sizes is None:
                x = center_crop(rescale(self.val.images[j], q), self.preset.crop)
            else:  # each image rescaled at its own size, the crops batched
                x = torch.cat([center_crop(rescale(self.val.image(k)[None], q), self.preset.crop) for k in j.tolist()])
            yield x, self.val.labels[j]

    def val_batches(self, q: int, indices=None, rank: int = 0, world: int = 1, max_pixels: int = EVAL_PIXELS):
        """This process's slice of the validation images (all, or ``indices``) rescaled to shortest side
        Q in batches of one rescaled shape (:func:`vgg.shape_groups.shape_groups`): (x, labels,
        positions in the slice), the batches in order of shape."""
        idx = self.val_slice(indices, rank, world)
        if self.val.sizes is None:
            sizes = np.tile(np.asarray(self.val.images.shape[-2:], dtype=np.int64), (len(idx), 1))
        else:
            sizes = self.val.sizes.numpy()[idx]
        for pos in shape_groups(sizes, q, max_pixels):
            j = torch.from_numpy(idx[pos])
            if self.val.sizes is None:  # one size: the batch rescaled at once
                x = rescale(self.val.images[j], q)
            else:
                x = torch.cat([rescale(self.val.image(int(i))[None], q) for i in j])
            yield x, self.val.labels[j], torch.from_numpy(pos)


class StreamData(_Data):
    """ImageNet-scale data: decoded per epoch by DataLoader workers (PIL, antialiased)."""

    def __init__(self, root: Path, preset, cache_dir: Path | None = None, rank: int = 0):
        self.preset, self.root, self.cache_dir = preset, root, cache_dir
        self.train = SafeImageFolder(root / "train", None)
        self.classes = self.train.classes
        self.val = SafeImageFolder(root / "val", None, self.classes)
        if preset.max_per_class:
            for ds, k in ((self.train, preset.max_per_class), (self.val, preset.max_per_class // 2 or 1)):
                ds.paths, ds.labels = subsample(ds.paths, ds.labels, k)
        self.skipped = 0
        self.colour = self._colour_stats(cache_dir)

    def val_files(self) -> tuple[list[str], list[int]]:
        return self.val.paths, self.val.labels

    def _colour_stats(self, cache_dir: Path | None, sample: int = 2000) -> ColourStats:
        # keyed on the training files drawn from (names under the root and labels, after any subsampling)
        # and the sample size: another subset, or files added to or removed from the folder, is another
        # cache. Every path starts with the root as given (list_images joins onto it): slicing, not
        # os.path.relpath, which takes seconds over ImageNet's 1.28 M files in every process
        h = hashlib.sha1(f"{self.root.resolve()}\0{sample}\n".encode())
        skip = len(str(self.root))
        h.update("".join(f"{p[skip:]}\0{y}\n" for p, y in zip(self.train.paths, self.train.labels)).encode())
        cache = Path(cache_dir) / f"colour-{h.hexdigest()[:12]}.json" if cache_dir else None
        if cache and cache.exists():
            return ColourStats.from_dict(json.loads(cache.read_text()))
        rng = np.random.default_rng(0)
        picks = rng.choice(len(self.train.paths), size=min(sample, len(self.train.paths)), replace=False)
        pixels = []
        for i in picks:
            im = load_rgb(self.train.paths[i])
            if im is not None:
                im.thumbnail((64, 64))
                pixels.append(torch.from_numpy(np.array(im)).permute(2, 0, 1).reshape(3, 1, -1))
        stats = ColourStats.from_images(torch.cat(pixels, dim=2).unsqueeze(0))  # (1, 3, 1, pixels)
        if cache:
            atomic_write_text(cache, json.dumps(stats.as_dict()))
        return stats

    def steps_per_epoch(self, world: int = 1) -> int:
        return len(self.train) // self.preset.batch

    def train_batches(self, epoch: int, seed: int, scale: tuple[int, int], gen: torch.Generator,
                      rank: int = 0, world: int = 1):
        self.train.transform = stream_train_transform(scale[0], scale[1], self.preset.crop)
        sampler = DistributedSampler(self.train, num_replicas=world, rank=rank, seed=seed, drop_last=True)
        sampler.set_epoch(epoch)
        loader = DataLoader(self.train, batch_size=self.preset.batch // world, sampler=sampler, drop_last=True,
                            num_workers=self.preset.workers, collate_fn=collate_skip, worker_init_fn=seed_worker,
                            generator=torch.Generator().manual_seed(seed * 7919 + epoch),
                            pin_memory=torch.cuda.is_available(),
                            persistent_workers=False)
        # every rank yields every step: (None, None) where no image of its shard decodes (the training
        # loop then skips that step on all ranks together; DDP waits forever for a rank that skips alone)
        for x, y, skipped in loader:
            self.skipped += skipped
            yield (None, None) if x is None else (x.float().div_(255), y)

    def val_images(self, q: int, rank: int = 0, world: int = 1, batch: int = 1, indices=None):
        """One image at a time (sizes differ), rescaled to shortest side Q."""
        from .data import IsotropicRescale
        yield from self._val_batches([IsotropicRescale(q)], indices, rank, world, batch=1)

    def val_center_crops(self, q: int, rank: int = 0, world: int = 1, batch: int = VAL_CROP_BATCH):
        """Centre crops of the images rescaled to Q, made in the workers and batched (one size): the
        per-epoch validation, the same pixels as center_crop of :meth:`val_images`."""
        from .data import CentreCrop, IsotropicRescale
        yield from self._val_batches([IsotropicRescale(q), CentreCrop(self.preset.crop)], None, rank, world, batch)

    def val_batches(self, q: int, indices=None, rank: int = 0, world: int = 1, max_pixels: int = EVAL_PIXELS):
        """As :meth:`MemoryData.val_batches`: batches of one rescaled shape, decoded and rescaled (PIL) in
        the workers, grouped by the sizes in the files' headers; files that do not decode are skipped
        and counted."""
        import torchvision.transforms as T

        from .data import IsotropicRescale
        idx = self.val_slice(indices, rank, world)
        self.val.transform = T.Compose([IsotropicRescale(q), T.PILToTensor(), T.ConvertImageDtype(torch.float32)])
        sizes = self.val_sizes()[idx]
        loader = DataLoader(Positions(Subset(self.val, idx.tolist())), batch_sampler=shape_groups(sizes, q, max_pixels),
                            num_workers=self.preset.workers, collate_fn=collate_by_shape,
                            pin_memory=torch.cuda.is_available())
        for parts, skipped in loader:
            self.skipped += skipped
            yield from parts

    def val_sizes(self) -> np.ndarray:
        """(N, 2) upright (h, w) of the validation files, from their headers (cached)."""
        if getattr(self, "_val_sizes", None) is None:
            self._val_sizes = image_sizes(self.val.paths, self.cache_dir)
        return self._val_sizes

    def _val_batches(self, transforms: list, indices, rank: int, world: int, batch: int):
        """This process's slice of the validation images (all, or ``indices``) through the PIL
        ``transforms`` and to float [0, 1] in the workers, so the loader pins the float batches for a
        CUDA device; files that do not decode are skipped and counted."""
        import torchvision.transforms as T
        self.val.transform = T.Compose([*transforms, T.PILToTensor(), T.ConvertImageDtype(torch.float32)])
        idx = list(range(len(self.val))) if indices is None else [int(i) for i in indices]
        shard = Subset(self.val, idx[fraction_of(len(idx), rank, world)])
        loader = DataLoader(shard, batch_size=batch, num_workers=self.preset.workers, collate_fn=collate_skip,
                            pin_memory=torch.cuda.is_available())
        for x, y, skipped in loader:
            self.skipped += skipped
            if x is not None:
                yield x, y


def largest_side(preset) -> int:
    """The largest image side a preset ever rescales to (S or Q = 512 paper pixels, or the crop)."""
    return max(preset.crop, preset.px(512))


def val_subset(n: int, k: int | None) -> np.ndarray | None:
    """k validation images spread evenly over the n (ImageFolder lists them class by class, so the
    subset is stratified by class); None for all."""
    if not k or k >= n:
        return None
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


class Positions(torch.utils.data.Dataset):
    """A dataset's items with their position: (item, position), None where the item is None."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        item = self.dataset[i]
        return None if item is None else (*item, i)


def collate_by_shape(batch):
    """([(x, labels, positions) per image shape], skipped): unreadable items (None) skipped and
    counted, the rest stacked by shape (vgg.shape_groups.stack_by_shape)."""
    good = [b for b in batch if b is not None]
    parts = stack_by_shape([g[0] for g in good], torch.tensor([g[1] for g in good]),
                           torch.tensor([g[-1] for g in good]))
    return parts, len(batch) - len(good)
