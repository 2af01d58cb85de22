"""The GPU input pipeline for ImageNet-size JPEGs: where the CPU cannot decode fast enough.

The stream loader (:class:`vgg.datasets.StreamData`) decodes and rescales every image with PIL in
DataLoader workers; on real ILSVRC-2012 photographs that is about 100 images per second per core at
the paper's geometry (``make loader_rate``: results/loader_rate.csv), while one H200-class GPU trains
VGG-16 at thousands of images per second (results/gpu/step.csv). Here the workers only read each
file's bytes (and its header: size, EXIF orientation, colour mode), the main process decodes the
batch on the GPU (``torchvision.io.decode_jpeg(list_of_bytes, device='cuda')``, nvjpeg), and the
paper's training transforms run as tensor ops on the device:

* isotropic rescale so that the shorter side is S, S fixed or drawn per image from [Smin, Smax]
  (:func:`vgg.data.draw_scales`, :func:`vgg.data.rescaled_size`), bilinear with antialiasing
  (``F.interpolate(..., antialias=True)``: the filter PIL's ``resize(BILINEAR)`` uses; measured
  on real photographs the two differ by at most 1/255, PIL's uint8 rounding);
* a random crop x crop window, uniform over every position (as ``T.RandomCrop``);
* a horizontal flip with probability 1/2;

then :class:`GPUStreamData` hands the float [0, 1] batch to the same batched colour step as every
loader (PCA colour shift, mean-RGB subtraction: ``StreamData.colour_augment``).  The random
parameters come from the epoch's torch Generator, so a run is reproducible whatever the number of
workers (the stream loader draws in each worker).  The same functions run on CPU tensors
(``device='cpu'``, libjpeg-turbo: the same pixels as PIL's decoder), which is how
tests/test_gpu_data.py shows both paths equal in distribution and, for the same parameters, in
pixels.  Files nvjpeg cannot decode (CMYK JPEGs, a PNG named .JPEG: ILSVRC-2012's train set has a
few dozen) are decoded by PIL in the worker (:func:`vgg.data.load_rgb`), as the stream loader does.

:func:`choose_pipeline` decides: the GPU path where the device is CUDA and the CPU loader's rate is
below the training step's; :func:`with_gpu_decoding` applies it to a StreamData lazily (at the
first epoch, when the scale is known), so evaluation never pays for the measurement. Evaluation
(:meth:`GPUStreamData.val_batches`) decodes on the device unless training chose the stream loader.
"""
from __future__ import annotations

import io
import os
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .data import draw_scales, fraction_of, load_rgb, rescale, rescaled_size, seed_worker, stream_train_transform
from .datasets import Positions, StreamData
from .shape_groups import EVAL_PIXELS, shape_groups, stack_by_shape

#: Fraction of a bf16 matmul's FLOP rate a VGG training step reaches on a GPU, used to *estimate*
#: the step rate when choosing the pipeline. An estimate, not a measurement: public VGG-16 numbers on
#: V100/A100 are near 30% of tensor-core peak; scripts/gpu_check.py measures it (results/gpu/step.csv,
#: column fraction_of_matmul) and this constant should be replaced by that value.
STEP_FRACTION_ESTIMATE = 0.3

#: EXIF orientation (tag 0x0112) -> the tensor ops PIL's ImageOps.exif_transpose applies (C, H, W).
_ORIENT = {
    2: lambda x: x.flip(-1),
    3: lambda x: x.flip(-1, -2),
    4: lambda x: x.flip(-2),
    5: lambda x: x.transpose(-1, -2),
    6: lambda x: torch.rot90(x, -1, (-2, -1)),
    7: lambda x: x.transpose(-1, -2).flip(-1, -2),
    8: lambda x: torch.rot90(x, 1, (-2, -1)),
}


def _decode_jpeg(data, device):
    """torchvision.io.decode_jpeg in RGB, without its deprecation warning (torchvision >= 0.29)."""
    from torchvision.io import ImageReadMode, decode_jpeg
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


# --------------------------------------------------------------------------- worker side

@dataclass
class Encoded:
    """One file as a worker hands it over: JPEG bytes to decode on the device, or (for what nvjpeg
    cannot read) the pixels PIL decoded."""

    data: torch.Tensor        # (bytes,) uint8, or (3, h, w) uint8 pixels when ``pixels``
    orientation: int = 1      # EXIF orientation to apply after decoding (JPEG only)
    pixels: bool = False


def read_encoded(path: str) -> Encoded | None:
    """The file's bytes and what decoding needs from its header; None if it is not an image."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        with Image.open(io.BytesIO(raw)) as im:  # reads the header only
            fmt, mode = im.format, im.mode
            orientation = im.getexif().get(0x0112, 1) if fmt in ("JPEG", "MPO") else 1
    except Exception:  # PIL raises many types for bad files
        return None
    if fmt in ("JPEG", "MPO") and mode in ("RGB", "L"):  # an orientation outside 2-8: none (as PIL)
        data = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
        return Encoded(data, orientation if orientation in _ORIENT else 1)
    img = load_rgb(path)  # CMYK, PNG named .JPEG, ...: PIL, as the stream loader
    if img is None:
        return None
    return Encoded(torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous(), 1, pixels=True)


class EncodedFiles(Dataset):
    """ImageFolder files as :class:`Encoded` items with their labels (None: unreadable, skipped)."""

    def __init__(self, paths: list[str], labels: list[int]):
        self.paths, self.labels = paths, labels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        enc = read_encoded(self.paths[i])
        return None if enc is None else (enc, self.labels[i])


@dataclass
class EncodedBatch:
    """A batch's JPEG bytes as one tensor (one shared-memory transfer from a worker, not one per
    file) with each file's span, plus the pixels of the files PIL decoded."""

    blob: torch.Tensor                       # all JPEG bytes, concatenated
    spans: list[tuple[int, int] | None]      # per image: its bytes in blob, or None (pixels)
    orientations: list[int]
    pixels: dict[int, torch.Tensor]          # image index -> (3, h, w) uint8

    def __len__(self) -> int:
        return len(self.spans)


def collate_encoded(batch):
    """(EncodedBatch, labels, skipped), unreadable files skipped as by vgg.data.collate_skip."""
    good = [b for b in batch if b is not None]
    skipped = len(batch) - len(good)
    if not good:
        return None, None, skipped
    spans, pixels, jpeg, at = [], {}, [], 0
    for k, (e, _) in enumerate(good):
        if e.pixels:
            spans.append(None)
            pixels[k] = e.data
        else:
            spans.append((at, at + len(e.data)))
            jpeg.append(e.data)
            at += len(e.data)
    blob = torch.cat(jpeg) if jpeg else torch.empty(0, dtype=torch.uint8)
    return (EncodedBatch(blob, spans, [e.orientation for e, _ in good], pixels),
            torch.tensor([y for _, y in good]), skipped)


def encode_files(paths: list[str]) -> EncodedBatch:
    """Files read and collated in this process (tests, measurements)."""
    items = [read_encoded(p) for p in paths]
    return collate_encoded([None if e is None else (e, 0) for e in items])[0]


# --------------------------------------------------------------------------- device side

def orient(x: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply an EXIF orientation to a (C, H, W) image, as PIL's ImageOps.exif_transpose."""
    op = _ORIENT.get(int(orientation))
    return x if op is None else op(x).contiguous()


def decode(batch: EncodedBatch, device) -> list[torch.Tensor]:
    """Decode a batch to (3, h, w) uint8 images on ``device``, upright.  On CUDA one batched nvjpeg
    call; a batch it refuses is decoded image by image, and an image nvjpeg cannot decode is decoded
    on the CPU (libjpeg-turbo) and copied over."""
    device = torch.device(device)
    jpeg = [batch.blob[s[0]:s[1]] for s in batch.spans if s is not None]
    decoded: list[torch.Tensor] = []
    if jpeg:
        if device.type == "cuda":
            try:
                decoded = list(_decode_jpeg(jpeg, device))
            except RuntimeError:
                decoded = [_decode_one(d, device) for d in jpeg]
        else:
            decoded = [_decode_jpeg(d, "cpu") for d in jpeg]
    out, k = [], 0
    for i, span in enumerate(batch.spans):
        if span is None:
            out.append(batch.pixels[i].to(device, non_blocking=True))
            continue
        x = decoded[k]
        k += 1
        if x.shape[0] != 3:  # a decoder that left a greyscale image single-channel
            x = x.expand(3, -1, -1)
        out.append(orient(x, batch.orientations[i]))
    return out


def _decode_one(data: torch.Tensor, device) -> torch.Tensor:
    try:
        return _decode_jpeg([data], device)[0]
    except RuntimeError:
        return _decode_jpeg(data, "cpu").to(device)


@dataclass
class CropParams:
    """Per-image random parameters of the training transform."""

    scales: torch.Tensor   # (N,) S, shorter side after the rescale
    sizes: list[tuple[int, int]]  # rescaled (h, w)
    tops: torch.Tensor     # (N,) crop's top row in the rescaled image
    lefts: torch.Tensor    # (N,) crop's left column
    flips: torch.Tensor    # (N,) bool


def draw_params(shapes: list[tuple[int, int]], smin: int, smax: int, crop: int, gen: torch.Generator,
                flip: bool = True, rows: int | None = None, part: slice | None = None) -> CropParams:
    """S uniform in [smin, smax] per image, the crop uniform over every position of the rescaled
    image (as T.RandomCrop), a flip with probability 1/2 (as T.RandomHorizontalFlip).
    ``rows``, ``part``: the images are these rows of a global batch of ``rows`` (this process's shard;
    the first len(shapes) of them where unreadable files left fewer): the draws of the whole global
    batch are made, as on every process (``gen`` is seeded alike on all), and these rows kept, so no
    two processes' images share their random numbers."""
    n = len(shapes)
    total = n if part is None else rows
    scales = draw_scales(total, smin, smax, gen)
    u = torch.rand(total, 3, generator=gen, dtype=torch.float64)
    if part is not None:
        scales, u = scales[part][:n], u[part][:n]
    sizes = [rescaled_size(h, w, int(s)) for (h, w), s in zip(shapes, scales.tolist())]
    hs = torch.tensor([s[0] for s in sizes], dtype=torch.float64)
    ws = torch.tensor([s[1] for s in sizes], dtype=torch.float64)
    if n and int(min(hs.min(), ws.min())) < crop:
        raise ValueError(f"scale S={int(scales.min())} gives an image smaller than the crop {crop}")
    tops = (u[:, 0] * (hs - crop + 1)).floor().long()
    lefts = (u[:, 1] * (ws - crop + 1)).floor().long()
    flips = (u[:, 2] < 0.5) if flip else torch.zeros(n, dtype=torch.bool)
    return CropParams(scales, sizes, tops, lefts, flips)


def augment(images: list[torch.Tensor], params: CropParams, crop: int) -> torch.Tensor:
    """Rescale each (3, h, w) uint8 image to its S (bilinear, antialiased), crop, flip: a float
    (N, 3, crop, crop) batch in [0, 1] on the images' device."""
    device = images[0].device if images else torch.device("cpu")
    out = torch.empty(len(images), 3, crop, crop, device=device)
    for k, img in enumerate(images):
        h, w = params.sizes[k]
        x = F.interpolate(img[None].float(), size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        t, left = int(params.tops[k]), int(params.lefts[k])
        x = x[0, :, t:t + crop, left:left + crop]
        out[k] = x.flip(-1) if params.flips[k] else x
    return out.div_(255).clamp_(0, 1)  # float rounding of the filter weights: <= 1 + 1e-7


def train_transform(batch: EncodedBatch, scale: tuple[int, int], crop: int, gen: torch.Generator, device,
                    rows: int | None = None, part: slice | None = None) -> torch.Tensor:
    """A collated batch of files -> the augmented float batch on ``device`` (before colour);
    ``rows``, ``part`` as in :func:`draw_params`."""
    images = decode(batch, device)
    params = draw_params([tuple(x.shape[-2:]) for x in images], scale[0], scale[1], crop, gen, rows=rows, part=part)
    return augment(images, params, crop)


# --------------------------------------------------------------------------- choosing

def choose_pipeline(device, cpu_rate: float, step_rate: float) -> str:
    """'gpu' where ``device`` is CUDA and the CPU stream loader (``cpu_rate`` img/s with all its
    workers) is slower than the training step (``step_rate`` img/s); else 'stream'."""
    return "gpu" if torch.device(device).type == "cuda" and cpu_rate < step_rate else "stream"


def cpu_rate_per_core(paths: list[str], scale: tuple[int, int], crop: int, n: int = 24) -> float:
    """Images per CPU-second of the stream loader's per-image work (PIL decode, rescale, crop, flip)
    on ``n`` files spread over ``paths``: what one DataLoader worker does."""
    tf = stream_train_transform(scale[0], scale[1], crop)
    picks = [paths[int(i)] for i in torch.linspace(0, len(paths) - 1, min(n, len(paths))).round().long()]
    t0, done = time.process_time(), 0
    for p in picks:
        img = load_rgb(p)
        if img is not None:
            tf(img)
            done += 1
    return done / max(time.process_time() - t0, 1e-6)


def matmul_flops(device, size: int | None = None, dtype=torch.bfloat16, seconds: float = 0.3) -> float:
    """FLOP/s of a size^3 matmul on ``device`` (bf16 by default; size 8192 on a GPU, 1024 on a
    CPU), timed for about ``seconds``."""
    device = torch.device(device)
    size = size or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *a: None)
    a @ b
    sync(device)
    reps, t0 = 0, time.perf_counter()
    while True:
        a @ b
        reps += 1
        sync(device)
        if time.perf_counter() - t0 >= seconds:
            break
    return reps * 2 * size ** 3 / (time.perf_counter() - t0)


def step_flops_per_image(config: str, width: float, crop: int) -> float:
    """FLOPs of one training step per image: 2 per multiply-add, backward twice the forward."""
    from .model import VGG, multiply_adds
    with torch.device("meta"):  # the layer list only, no weights
        net = VGG(config, num_classes=1000, width=width, crop_size=crop)
    return 6.0 * multiply_adds(net)


def estimated_step_rate(preset, device, config: str = "A") -> float:
    """An *estimate* of the training step's img/s on ``device``: its bf16 matmul rate (measured)
    x STEP_FRACTION_ESTIMATE / the step's FLOPs per image.  Net A by default: the cheapest net of
    Table 3, so the most demanding on the loader."""
    return matmul_flops(device) * STEP_FRACTION_ESTIMATE / step_flops_per_image(config, preset.width, preset.crop)


# --------------------------------------------------------------------------- the data object

class GPUStreamData(StreamData):
    """StreamData whose training batches come from the GPU pipeline (``pipeline='gpu'``), the stream
    loader (``'stream'``) or, with ``pipeline=None``, whichever :func:`choose_pipeline` picks at the
    first epoch.  Validation images come from the stream loader either way."""

    def __init__(self, base: StreamData, device, pipeline: str | None = None, log=None):
        self.__dict__.update(base.__dict__)
        self.device = torch.device(device)
        self.pipeline = pipeline
        self.log = log or (lambda m: print(m, file=sys.stderr))

    def decide(self, scale: tuple[int, int]) -> str:
        workers = max(1, self.preset.workers)
        cpu = cpu_rate_per_core(self.train.paths, scale, self.preset.crop) * workers
        step = estimated_step_rate(self.preset, self.device)
        choice = choose_pipeline(self.device, cpu, step)
        from .runtime import broadcast_object, rank_and_world
        rank, world = rank_and_world()
        if world > 1:  # one choice for all processes: rank 0's (the measurements differ a little)
            choice = broadcast_object(choice, self.device)
        if rank == 0:
            self.log(f"input pipeline: {choice} (stream loader ~{cpu:.0f} img/s on {workers} workers; training "
                     f"step estimated at {step:.0f} img/s on {self.device})")
        return choice

    def train_batches(self, epoch: int, seed: int, scale: tuple[int, int], gen: torch.Generator,
                      rank: int = 0, world: int = 1):
        if self.pipeline is None:
            self.pipeline = self.decide(scale)
        if self.pipeline != "gpu":
            yield from super().train_batches(epoch, seed, scale, gen, rank, world)
            return
        files = EncodedFiles(self.train.paths, self.train.labels)
        sampler = DistributedSampler(files, num_replicas=world, rank=rank, seed=seed, drop_last=True)
        sampler.set_epoch(epoch)
        loader = DataLoader(files, batch_size=self.preset.batch // world, sampler=sampler, drop_last=True,
                            num_workers=self.preset.workers, collate_fn=collate_encoded,
                            worker_init_fn=seed_worker, generator=torch.Generator().manual_seed(seed * 7919 + epoch),
                            persistent_workers=False)
        part = fraction_of(self.preset.batch, rank, world) if world > 1 else None
        # every rank yields every step, (None, None) where no file of its shard was readable (as StreamData)
        for batch, y, skipped in loader:
            self.skipped += skipped
            if batch is None:
                yield None, None
                continue
            yield train_transform(batch, scale, self.preset.crop, gen, self.device, self.preset.batch, part), y

    def val_batches(self, q: int, indices=None, rank: int = 0, world: int = 1, max_pixels: int = EVAL_PIXELS):
        """As :meth:`StreamData.val_batches`, decoded (nvjpeg) and rescaled on the device: the workers
        only read the files. The stream loader's instead where training chose it (``pipeline='stream'``)."""
        if self.pipeline == "stream":
            yield from super().val_batches(q, indices, rank, world, max_pixels)
            return
        idx = self.val_slice(indices, rank, world)
        files = EncodedFiles([self.val.paths[i] for i in idx], [self.val.labels[i] for i in idx])
        loader = DataLoader(Positions(files), batch_sampler=shape_groups(self.val_sizes()[idx], q, max_pixels),
                            num_workers=self.preset.workers, collate_fn=collate_encoded_positions)
        for batch, labels, positions, skipped in loader:
            self.skipped += skipped
            if batch is not None:
                images = [rescale(x[None], q)[0] for x in decode(batch, self.device)]  # the memory loader's rescale
                yield from stack_by_shape(images, labels, positions)


def collate_encoded_positions(batch):
    """(EncodedBatch, labels, positions, skipped) of :class:`vgg.datasets.Positions` items."""
    good = [b for b in batch if b is not None]
    encoded, labels, skipped = collate_encoded([(e, y) for e, y, _ in good])
    return encoded, labels, torch.tensor([p for *_, p in good], dtype=torch.int64), skipped + len(batch) - len(good)


def gpu_decoding_setting() -> str:
    """VGG_PIPELINE: 'auto' (default: choose_pipeline), 'gpu' or 'stream'."""
    value = os.environ.get("VGG_PIPELINE", "auto").strip().lower() or "auto"
    if value not in ("auto", "gpu", "stream"):
        from .errors import UserError
        raise UserError(f"VGG_PIPELINE={value!r}: use auto, gpu or stream")
    return value


def with_gpu_decoding(data, device=None):
    """The hook for vgg.datasets.load_datasets: a StreamData on a CUDA machine becomes a
    GPUStreamData that chooses its pipeline at the first epoch (VGG_PIPELINE=gpu|stream forces
    one); anything else (CPU, the memory loader) is returned as it is."""
    setting = gpu_decoding_setting()
    if not isinstance(data, StreamData) or setting == "stream":
        return data
    if device is None:
        if not torch.cuda.is_available():
            return data
        device = torch.device("cuda", torch.cuda.current_device())
    if torch.device(device).type != "cuda" and setting != "gpu":
        return data
    return GPUStreamData(data, device, None if setting == "auto" else setting)

