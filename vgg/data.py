"""Datasets and the paper's training / test transforms (Sect. 3.1).

Two loaders, one set of transforms:

* ``memory`` (proxy preset): the decoded dataset lives in RAM as a uint8 tensor and
  the augmentation runs batched on tensors -- per-image isotropic rescale to S (fixed
  or drawn from [Smin, Smax]), random crop and horizontal flip are one
  ``grid_sample`` with a per-image affine grid -- so the model step, not the loader,
  bounds the speed.
* ``stream`` (ImageNet): torchvision ``ImageFolder`` decoding in worker processes with
  PIL's antialiased resize, the same geometric steps per image.

Both then apply the AlexNet PCA colour shift and the training-set mean-RGB
subtraction batched on the device (:class:`ColourStats`).  Augmentation works on
pixels in [0, 1]; the net sees mean-subtracted pixels on the [0, 255] scale, as in the
paper's Caffe pipeline (measured: with Glorot init net A reaches 47.6% proxy top-1
error after 2 epochs on this scale, 56% when the input stays in [0, 1]).
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from .errors import UserError
from .io import atomic_save_npz, atomic_write_text
from .locks import file_lock, lock_path

LAYOUT = "ROOT/train/<class>/<image>.jpg and ROOT/val/<class>/<image>.jpg (ImageFolder layout)"


GET_DATA = ("run `make data` (CIFAR-10 into data/cifar10; `make data DATASET=imagenette` or `DATASET=imagewoof` for "
            "Imagenette or Imagewoof) "
            "or set VGG_DATA / --data to your own ImageFolder root")


def data_root(path: str | os.PathLike | None) -> Path:
    """The dataset root from --data or $VGG_DATA, checked for the ImageFolder layout."""
    path = path or os.environ.get("VGG_DATA")
    if not path:
        raise UserError(f"no dataset given: {GET_DATA} (layout {LAYOUT})")
    root = Path(path)
    if not root.is_dir():
        raise UserError(f"data directory {root} not found: {GET_DATA} (layout {LAYOUT})")
    for split in ("train", "val"):
        d = root / split
        if not d.is_dir() or not any(p.is_dir() for p in d.iterdir()):
            raise UserError(f"data directory {root} has no class folders in {split}/: expected {LAYOUT}")
    return root


def list_images(split_dir: Path, classes: list[str] | None = None):
    """(paths, labels, classes) of an ImageFolder split; classes of train fix the labels.
    A val folder may lack some of train's classes; a class folder train does not have is an error
    (its images could never be scored)."""
    if classes is None:
        classes, _ = find_classes(str(split_dir))
    else:
        extra = sorted(set(find_classes(str(split_dir))[0]) - set(classes))
        if extra:
            raise UserError(f"{split_dir} has class folder {extra[0]!r} ({len(extra)} in all) that train/ does "
                            "not have: add its training images or remove it")
    index = {c: i for i, c in enumerate(classes)}
    try:
        samples = make_dataset(str(split_dir), index, extensions=IMG_EXTENSIONS, allow_empty=True)
    except FileNotFoundError as e:
        raise UserError(f"{split_dir}: {e}")
    if not samples:
        raise UserError(f"no images found under {split_dir}: expected {LAYOUT} "
                        f"(image files ending in {', '.join(IMG_EXTENSIONS)})")
    return [p for p, _ in samples], [y for _, y in samples], classes


def image_counts(root: Path) -> tuple[int, int]:
    """(training, validation) images of an ImageFolder root (val listed with train's classes)."""
    train, _, classes = list_images(Path(root) / "train")
    return len(train), len(list_images(Path(root) / "val", classes)[0])


def load_rgb(path: str) -> Image.Image | None:
    """Decode an image as RGB; None if it is corrupt, truncated or not an image."""
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)  # a phone photo stored sideways is shown upright
            if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                flat = Image.new("RGBA", im.size, (255, 255, 255, 255))  # transparent -> white
                return Image.alpha_composite(flat, im).convert("RGB")
            return im.convert("RGB")     # greyscale, CMYK, palette
    except Exception:  # PIL raises many types for bad files
        return None


SWAPPING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that rotate by 90 degrees


def header_size(path: str) -> tuple[int, int]:
    """(h, w) of an image file as shown upright, read from its header; (-1, -1) if it is not an image."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)  # as ImageOps.exif_transpose reads it
    except Exception:  # PIL raises many types for bad files
        return -1, -1
    return (w, h) if orientation in SWAPPING_ORIENTATIONS else (h, w)


def image_sizes(paths: list[str], cache_dir: str | Path | None = None) -> np.ndarray:
    """(N, 2) int64 upright (h, w) of every file ((-1, -1): unreadable header), read on a few threads
    and cached in ``cache_dir`` under a key of the files' names and sizes (:func:`file_line`)."""
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"sizes-{_cache_key(paths, None)}.json"
        if cache.exists():
            return np.asarray(json.loads(cache.read_text()), dtype=np.int64).reshape(-1, 2)
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        sizes = np.asarray(list(pool.map(header_size, paths, chunksize=64)), dtype=np.int64).reshape(-1, 2)
    if cache is not None:
        atomic_write_text(cache, json.dumps(sizes.tolist()))
    return sizes


# --------------------------------------------------------------------------- memory

@dataclass
class InMemorySplit:
    """A decoded split.  Images of one size are one (N, 3, H, W) tensor.  Images of several sizes and
    aspect ratios are stored back to back in one flat uint8 tensor (image i, (3, h, w), at
    ``offsets[i]``, its size in ``sizes``), so memory is the images' own pixels; images whose shorter
    side exceeds ``max_side`` are first shrunk to it (aspect kept)."""

    images: torch.Tensor   # (N, 3, H, W) uint8; images of mixed sizes: (total,) uint8
    labels: torch.Tensor   # (N,) int64
    classes: list[str]
    skipped: int = 0       # corrupt / undecodable files left out
    sizes: torch.Tensor | None = None    # (N, 2) int64 (h, w) of each image; None: all H x W
    offsets: torch.Tensor | None = None  # (N,) int64 start of each image in the flat ``images``

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, i: int) -> torch.Tensor:
        """Image i at its own size, (3, h, w) uint8."""
        if self.sizes is None:
            return self.images[i]
        h, w = self.sizes[i].tolist()
        start = int(self.offsets[i])
        return self.images[start:start + 3 * h * w].view(3, h, w)

    def pixel_sample(self, max_pixels: int = 5_000_000, seed: int = 0) -> torch.Tensor:
        """(3, P) uint8: every pixel, or ``max_pixels`` of them drawn uniformly (seeded) -- what
        :meth:`ColourStats.from_pixels` takes."""
        if self.sizes is None:
            px = self.images.permute(1, 0, 2, 3).reshape(3, -1)
            if px.shape[1] > max_pixels:
                g = torch.Generator().manual_seed(seed)
                px = px[:, torch.randint(0, px.shape[1], (max_pixels,), generator=g)]
            return px
        area = self.sizes[:, 0] * self.sizes[:, 1]
        ends = torch.cumsum(area, 0)
        total = int(ends[-1])
        if total > max_pixels:
            pick = torch.randint(0, total, (max_pixels,), generator=torch.Generator().manual_seed(seed))
        else:
            pick = torch.arange(total)
        img = torch.searchsorted(ends, pick, right=True)
        within = pick - (ends[img] - area[img])
        base = self.offsets[img] + within
        return torch.stack([self.images[base + c * area[img]] for c in range(3)])


def file_line(path: str | Path, name: str | None = None) -> bytes:
    """What identifies an image file in every cache key (decoded splits, image sizes, posteriors): its
    name (``name``, else its path) and its size in bytes. Not its mtime: a copy of the same files -- a
    dataset folder mounted anew each session, a copy that does not keep times -- changes every mtime and
    no pixel, and would throw away every decoded split and every net's posteriors. A file changed in
    place to the same byte count goes unnoticed; `make data` writes whole new folders."""
    return f"{path if name is None else name}\0{os.stat(path).st_size}\n".encode()


def _cache_key(paths: list[str], max_per_class: int | None) -> str:
    h = hashlib.sha1(str(max_per_class).encode())
    for p in paths:
        h.update(file_line(p))
    return h.hexdigest()[:16]


def subsample(paths, labels, max_per_class):
    if not max_per_class:
        return paths, labels
    seen: dict[int, int] = {}
    keep = []
    for p, y in zip(paths, labels):
        if seen.get(y, 0) < max_per_class:
            keep.append((p, y))
            seen[y] = seen.get(y, 0) + 1
    return [p for p, _ in keep], [y for _, y in keep]


def load_memory_split(split_dir: Path, classes: list[str] | None = None, max_per_class: int | None = None,
                      cache_dir: Path | None = None, max_side: int | None = None) -> InMemorySplit:
    """Decode a whole split into a uint8 tensor (cached as .npz; corrupt files skipped).
    ``max_side``: shrink images of mixed sizes whose shorter side is larger (the largest scale used)."""
    paths, labels, classes = list_images(split_dir, classes)
    paths, labels = subsample(paths, labels, max_per_class)
    if cache_dir is None:
        return _decode_split(split_dir, paths, labels, classes, None, max_side)
    # <split>-<which folder, subset, size>-<its files' names and sizes>-<size>.npz
    family = f"{split_dir.name}-{_folder_key(split_dir, max_per_class, max_side)}"
    key = _cache_key(paths, max_per_class)
    cache = Path(cache_dir) / f"{family}-{key}-{max_side}.npz"
    with file_lock(cache):  # concurrent runs decode a split once
        if cache.exists():
            z = np.load(cache)
            sizes = torch.from_numpy(z["sizes"]) if "sizes" in z else None
            offsets = torch.from_numpy(z["offsets"]) if "offsets" in z else None
            return InMemorySplit(torch.from_numpy(z["images"]), torch.from_numpy(z["labels"]), classes,
                                 int(z["skipped"]), sizes, offsets)
        split = _decode_split(split_dir, paths, labels, classes, cache, max_side)
    # the same files as cached before caches were named by family: <split>-<key>-<size>.npz
    remove_stale_caches(cache, family, max_side, legacy=cache.with_name(f"{split_dir.name}-{key}-{max_side}.npz"))
    return split


#: Part of a decoded split's cache name: raise it when the stored layout changes (2: images of mixed
#: sizes back to back instead of on one canvas).
MEMORY_LAYOUT = 2


def _folder_key(split_dir: Path, max_per_class: int | None, max_side: int | None) -> str:
    return hashlib.sha1(f"{split_dir.resolve()}\0{max_per_class}\0{max_side}\0{MEMORY_LAYOUT}".encode()).hexdigest()[:8]


def remove_stale_caches(current: Path, family: str, max_side: int | None, legacy: Path | None = None) -> list[Path]:
    """Delete the caches of the same split folder (same subset and size) made before its files
    changed (files added, removed, or rewritten to another size): each is a whole decoded split
    (1.4 GB for Imagenette's train) that no run can read again; and ``legacy``, the same files' cache
    under the name used before caches were named by family. A run that opened one keeps reading it (POSIX unlink)."""
    gone = []
    for old in [*current.parent.glob(f"{family}-*-{max_side}.npz"), *([legacy] if legacy and legacy.exists() else [])]:
        if old != current:
            old.unlink(missing_ok=True)
            lock_path(old).unlink(missing_ok=True)
            gone.append(old)
    return gone


def _shrink(im: Image.Image, max_side: int | None) -> Image.Image:
    w, h = im.size
    nh, nw = stored_size(h, w, max_side)
    return im if (nh, nw) == (h, w) else im.resize((nw, nh), Image.BILINEAR)  # PIL antialiases when shrinking


def _decode_split(split_dir: Path, paths: list[str], labels: list[int], classes: list[str],
                  cache: Path | None, max_side: int | None = None) -> InMemorySplit:
    headers = image_sizes(paths)
    readable = headers[:, 0] > 0
    if not readable.any():
        raise UserError(f"none of the {len(paths)} images under {split_dir} could be decoded")
    uniform = len({tuple(s) for s in headers[readable].tolist()}) == 1
    shrunk = np.asarray([stored_size(h, w, None if uniform else max_side) if ok else (0, 0)
                         for (h, w), ok in zip(headers.tolist(), readable)], dtype=np.int64)
    check_memory(int(3 * (shrunk[:, 0] * shrunk[:, 1]).sum()), split_dir)
    decode = functools.partial(_decoded_array, max_side=None if uniform else max_side)
    arrays: list[np.ndarray | None] = [None] * len(paths)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for k, a in enumerate(pool.map(decode, [p if ok else None for p, ok in zip(paths, readable)], chunksize=64)):
            arrays[k] = a  # (3, h, w) uint8 or None
    ok = [i for i, a in enumerate(arrays) if a is not None]
    if not ok:
        raise UserError(f"none of the {len(paths)} images under {split_dir} could be decoded")
    ys = np.asarray([labels[i] for i in ok], dtype=np.int64)
    skipped = len(paths) - len(ok)
    extra = {}
    if len({arrays[i].shape for i in ok}) == 1:
        images = np.stack([arrays[i] for i in ok])
        sizes = offsets = None
    else:  # mixed sizes: back to back in one flat buffer
        sizes = np.asarray([arrays[i].shape[1:] for i in ok], dtype=np.int64)
        lengths = 3 * sizes[:, 0] * sizes[:, 1]
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        images = np.empty(int(lengths.sum()), dtype=np.uint8)
        for k, i in enumerate(ok):
            images[offsets[k]:offsets[k] + lengths[k]] = arrays[i].reshape(-1)
            arrays[i] = None  # freed as it is copied
        extra = {"sizes": sizes, "offsets": offsets}
    if cache is not None:
        atomic_save_npz(cache, images=images, labels=ys, skipped=np.int64(skipped), **extra)
    return InMemorySplit(torch.from_numpy(images), torch.from_numpy(ys), classes, skipped,
                         None if sizes is None else torch.from_numpy(sizes),
                         None if offsets is None else torch.from_numpy(offsets))


def stored_size(h: int, w: int, max_side: int | None) -> tuple[int, int]:
    """The (h, w) an image is stored at: shrunk so that its shorter side is ``max_side`` where larger."""
    if max_side is None or min(h, w) <= max_side:
        return h, w
    return rescaled_size(h, w, max_side)


def _decoded_array(path: str | None, max_side: int | None) -> np.ndarray | None:
    img = None if path is None else load_rgb(path)
    if img is None:
        return None
    return np.ascontiguousarray(np.asarray(_shrink(img, max_side)).transpose(2, 0, 1))


#: Share of the available memory a decoded split may take (the rest: the other split, the model,
#: a training batch's canvas, the cache file being written).
MEMORY_SHARE = 0.6


def available_memory() -> int:
    """Bytes the kernel says a new allocation can take without swapping (MemAvailable), or the total
    physical memory where /proc/meminfo does not exist."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(needed: int, split_dir: Path) -> None:
    """Stop with one line before decoding a split the memory cannot hold (instead of being killed)."""
    have = available_memory()
    if needed > MEMORY_SHARE * have:
        raise UserError(f"decoding {split_dir} into memory needs {needed / 2**30:.1f} GiB, more than "
                        f"{MEMORY_SHARE:.0%} of the {have / 2**30:.1f} GiB available: use the stream loader "
                        "(--loader stream) or free memory")


def draw_scales(n: int, smin: int, smax: int, gen: torch.Generator) -> torch.Tensor:
    """Per-image training scale S, uniform integer in [smin, smax] (scale jittering)."""
    return torch.randint(smin, smax + 1, (n,), generator=gen)


def rescaled_size(h: int, w: int, s: int) -> tuple[int, int]:
    """Isotropic rescale so that the shortest side is exactly s."""
    if h <= w:
        return s, max(s, int(round(w * s / h)))
    return max(s, int(round(h * s / w))), s


def random_crops(images: torch.Tensor | Sequence[torch.Tensor], scales: torch.Tensor, crop: int,
                 gen: torch.Generator, flip: bool = True) -> torch.Tensor:
    """Rescale each image isotropically to its S, take a random crop x crop window, flip.

    ``images``: (N, 3, H, W) uint8, or N (3, h, w) uint8 images of mixed sizes.  One bilinear
    ``grid_sample`` does all three per image (equal to resize-then-crop with
    ``F.interpolate(..., align_corners=False)``).  Of an image of its own size only the pixels its
    window's bilinear taps read are cut out and converted (:func:`crop_footprints`), so a batch costs
    what its crops cost, not what a canvas of its largest image would.  Returns float in [0, 1].
    """
    same_size = isinstance(images, torch.Tensor)
    n = len(images)
    if same_size:
        h = torch.full((n,), images.shape[-2], dtype=torch.float64)
        w = torch.full((n,), images.shape[-1], dtype=torch.float64)
    else:
        h = torch.tensor([im.shape[-2] for im in images], dtype=torch.float64)
        w = torch.tensor([im.shape[-1] for im in images], dtype=torch.float64)
    s = scales.double()
    short = torch.minimum(h, w)
    hs = torch.where(h <= w, s, (h * s / short).round()).clamp_min(s)
    ws = torch.where(h <= w, (w * s / short).round(), s).clamp_min(s)
    if int(min(hs.min(), ws.min())) < crop:
        raise UserError(f"scale S={int(s.min())} gives an image smaller than the crop {crop}")
    oy = (torch.rand(n, generator=gen, dtype=torch.float64) * (hs - crop + 1)).floor()
    ox = (torch.rand(n, generator=gen, dtype=torch.float64) * (ws - crop + 1)).floor()
    sign = torch.ones(n, dtype=torch.float64)
    if flip:
        sign[torch.rand(n, generator=gen) < 0.5] = -1.0
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = sign * crop / ws
    theta[:, 0, 2] = (2 * ox + crop) / ws - 1
    theta[:, 1, 1] = crop / hs
    theta[:, 1, 2] = (2 * oy + crop) / hs - 1
    if same_size:
        pixels, y0, x0 = images, torch.zeros(n), torch.zeros(n)
    else:
        y0, y1 = crop_footprints(h, hs, oy, crop)
        x0, x1 = crop_footprints(w, ws, ox, crop)
        pixels = _edge_padded_canvas([im[:, int(a):int(b) + 1, int(c):int(d) + 1]
                                      for im, a, b, c, d in zip(images, y0, y1, x0, x1)])
    # image-normalised -> normalised coordinates of the pixels sampled (the image, or its part from
    # (y0, x0) on a canvas of height hc, width wc): u = ((u_image + 1) * w - 2 * x0) / wc - 1
    hc, wc = pixels.shape[-2:]
    theta[:, 0] *= (w / wc)[:, None]
    theta[:, 0, 2] += (w - 2 * x0) / wc - 1
    theta[:, 1] *= (h / hc)[:, None]
    theta[:, 1, 2] += (h - 2 * y0) / hc - 1
    grid = F.affine_grid(theta.float(), (n, 3, crop, crop), align_corners=False)
    return F.grid_sample(pixels.float().div_(255), grid, mode="bilinear", padding_mode="border", align_corners=False)


def crop_footprints(size: torch.Tensor, scaled: torch.Tensor, offset: torch.Tensor, crop: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last pixel (inclusive, float64) along one axis of an image of ``size`` pixels that
    bilinear taps read for the crop window [offset, offset + crop) of the image rescaled to ``scaled``
    (output pixel j samples at (offset + j + 0.5) * size / scaled - 0.5), widened by one pixel on each
    side against rounding and clipped to the image."""
    step = size / scaled
    first = ((offset + 0.5) * step - 0.5).floor() - 1
    last = ((offset + crop - 0.5) * step - 0.5).floor() + 2
    return first.clamp(0, None).minimum(size - 1), last.clamp(0, None).minimum(size - 1)


def _edge_padded_canvas(images: list[torch.Tensor]) -> torch.Tensor:
    """(n, 3, H, W) uint8 of the largest height and width: each image top-left, its last column and
    row repeated into the padding (so a bilinear sample at its edge sees only its own pixels)."""
    hc, wc = max(im.shape[-2] for im in images), max(im.shape[-1] for im in images)
    canvas = torch.empty(len(images), 3, hc, wc, dtype=torch.uint8)
    for k, img in enumerate(images):
        h, w = img.shape[-2:]
        canvas[k, :, :h, :w] = img
        canvas[k, :, :h, w:] = img[:, :, w - 1:w]
        canvas[k, :, h:, :] = canvas[k, :, h - 1:h, :]
    return canvas


def rescale(images: torch.Tensor, q: int) -> torch.Tensor:
    """Test-time isotropic rescale of a batch (same-size images) to shortest side q, float [0, 1]."""
    h, w = images.shape[-2:]
    x = images.float().div_(255) if images.dtype == torch.uint8 else images
    return F.interpolate(x, size=rescaled_size(h, w, q), mode="bilinear", align_corners=False, antialias=True)


def centre_offsets(h: int, w: int, crop: int) -> tuple[int, int]:
    """(top, left) of the crop x crop centre of an h x w image (floor where the margin is odd)."""
    return (h - crop) // 2, (w - crop) // 2


def center_crop(x: torch.Tensor, crop: int) -> torch.Tensor:
    top, left = centre_offsets(*x.shape[-2:], crop)
    return x[..., top:top + crop, left:left + crop]


# --------------------------------------------------------------------------- colour

@dataclass
class ColourStats:
    """Training-set mean RGB and RGB covariance eigen-decomposition (AlexNet PCA)."""

    mean: torch.Tensor      # (3,)
    eigval: torch.Tensor    # (3,) standard deviation along each principal component
    eigvec: torch.Tensor    # (3, 3) columns are components
    std: torch.Tensor = field(default_factory=lambda: torch.full((3,), 1 / 255))  # (3,) divisor:
    # 1/255 = mean subtraction on the [0, 255] scale (the paper); torchvision's weights use their std

    @classmethod
    def from_images(cls, images: torch.Tensor, max_pixels: int = 5_000_000, seed: int = 0) -> "ColourStats":
        """From uint8 (N, 3, H, W) images: pixel mean and covariance over a sample of pixels."""
        px = images.permute(1, 0, 2, 3).reshape(3, -1)
        if px.shape[1] > max_pixels:
            g = torch.Generator().manual_seed(seed)
            px = px[:, torch.randint(0, px.shape[1], (max_pixels,), generator=g)]
        return cls.from_pixels(px)

    @classmethod
    def from_pixels(cls, px: torch.Tensor) -> "ColourStats":
        """From uint8 pixels (3, P): their mean and the eigen-decomposition of their covariance."""
        px = px.double() / 255
        mean = px.mean(1)
        cov = torch.cov(px)
        val, vec = torch.linalg.eigh(cov)
        return cls(mean.float(), val.clamp_min(0).sqrt().float(), vec.float())

    def as_dict(self) -> dict:
        return {k: v.tolist() for k, v in vars(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "ColourStats":
        return cls(**{k: torch.tensor(v) for k, v in d.items()})

    def pca_shift(self, x: torch.Tensor, std: float, gen: torch.Generator) -> torch.Tensor:
        """AlexNet colour augmentation: add sum_i alpha_i * lambda_i * p_i, alpha ~ N(0, std), per image."""
        alpha = torch.randn(x.shape[0], 3, generator=gen) * std
        shift = (alpha * self.eigval) @ self.eigvec.T      # (N, 3)
        return x + shift.to(x)[:, :, None, None]

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x)[None, :, None, None]) / self.std.to(x)[None, :, None, None]


#: torchvision's ImageNet normalisation, for evaluating torchvision's released weights.
TORCHVISION_COLOUR = ColourStats(torch.tensor([0.485, 0.456, 0.406]), torch.zeros(3), torch.eye(3),
                                 torch.tensor([0.229, 0.224, 0.225]))


# --------------------------------------------------------------------------- stream

class IsotropicRescale:
    """PIL transform: shortest side to S, S fixed or drawn per image from [smin, smax]."""

    def __init__(self, smin: int, smax: int | None = None):
        self.smin, self.smax = smin, smax or smin

    def __call__(self, img: Image.Image) -> Image.Image:
        s = random.randint(self.smin, self.smax)
        w, h = img.size
        nh, nw = rescaled_size(h, w, s)
        return img.resize((nw, nh), Image.BILINEAR)


class CentreCrop:
    """PIL transform: the crop x crop centre, at the offsets of :func:`center_crop`."""

    def __init__(self, crop: int):
        self.crop = crop

    def __call__(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        top, left = centre_offsets(h, w, self.crop)
        return img.crop((left, top, left + self.crop, top + self.crop))


class SafeImageFolder(torch.utils.data.Dataset):
    """ImageFolder that returns None for files that do not decode (skipped by the collate)."""

    def __init__(self, split_dir: Path, transform, classes: list[str] | None = None):
        self.paths, self.labels, self.classes = list_images(split_dir, classes)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        img = load_rgb(self.paths[i])
        if img is None:
            return None
        return self.transform(img), self.labels[i]


def collate_skip(batch):
    good = [b for b in batch if b is not None]
    skipped = len(batch) - len(good)
    if not good:
        return None, None, skipped
    return torch.stack([g[0] for g in good]), torch.tensor([g[1] for g in good]), skipped


def stream_train_transform(smin: int, smax: int, crop: int):
    import torchvision.transforms as T
    return T.Compose([IsotropicRescale(smin, smax), T.RandomCrop(crop), T.RandomHorizontalFlip(), T.PILToTensor()])


def seed_worker(worker_id: int) -> None:
    s = torch.initial_seed() % 2**32
    random.seed(s)
    np.random.seed(s)


def fraction_of(n: int, rank: int, world: int) -> slice:
    """Contiguous shard [rank*n/world, (rank+1)*n/world)."""
    return slice(math.floor(rank * n / world), math.floor((rank + 1) * n / world))
