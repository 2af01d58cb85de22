"""``load_datasets``: the loader a preset asks for, on the process's device.

The input code imports one way: :mod:`vgg.data` (transforms) <- :mod:`vgg.datasets` (the memory and
stream loaders) <- :mod:`vgg.gpu_data` (the GPU pipeline, a StreamData) <- this module, which picks
between them.
"""
from __future__ import annotations

from pathlib import Path

from .datasets import MemoryData, StreamData
from .gpu_data import with_gpu_decoding


def load_datasets(root: Path, preset, cache_dir: Path | None = None, rank: int = 0, device=None):
    """The preset's loader. On a CUDA device the stream loader's batches may come from the GPU
    pipeline instead (vgg.gpu_data: training chooses at the first epoch, evaluation decodes on the
    device; VGG_PIPELINE=gpu|stream forces one)."""
    if preset.loader == "memory":
        return MemoryData(root, preset, cache_dir)
    return with_gpu_decoding(StreamData(root, preset, cache_dir, rank), device)
