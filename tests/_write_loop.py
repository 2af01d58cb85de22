"""Worker for the torn-write test: rewrite one checkpoint file atomically, forever."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vgg.io import atomic_torch_save  # noqa: E402

i = int(sys.argv[2])  # each writer process starts at its own offset
while True:
    atomic_torch_save({"i": i, "payload": torch.full((250_000,), float(i))}, sys.argv[1])
    i += 1
