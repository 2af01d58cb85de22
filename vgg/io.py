"""Atomic file writes: a temp file in the same folder, fsync, then rename.

A kill at any moment leaves the old file or the new one, never a torn one.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from .errors import UserError


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temp path beside ``path``; rename it over ``path`` when the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror}; choose a writable output directory")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:  # disk full, quota, read-only file system: the previous file is untouched
        raise UserError(f"cannot write {path}: {e.strerror or e}; "
                        f"{'the previous file is kept' if path.exists() else 'nothing was written'} "
                        "(free some space or choose another output directory)") from e
    except RuntimeError as e:  # torch.save reports a failed write as RuntimeError
        if "write" not in str(e).lower() and "space" not in str(e).lower():
            raise
        raise UserError(f"cannot write {path}: {str(e).splitlines()[0]}; "
                        f"{'the previous file is kept' if path.exists() else 'nothing was written'} "
                        "(free some space or choose another output directory)") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_torch_save(obj, path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def atomic_save_npz(path, **arrays) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def atomic_write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def atomic_savefig(fig, path, **kwargs) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", **kwargs)
