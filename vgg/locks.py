"""Advisory file locks, so that concurrent runs (``make -j``, two shells) share work.

Each checkpoint and each posterior-cache entry has a lock file beside it; a process takes
the lock before it decides whether to build the file, so a second process that needs the
same net waits for the first to finish it and then reuses it instead of training it again.
Locks are ``flock``s: the kernel drops them when a process dies, so a killed run never
leaves a lock behind (the empty lock file stays; it is harmless).
"""
from __future__ import annotations

import fcntl
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError


def lock_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".lock")


@contextmanager
def file_lock(path: str | os.PathLike, log=None):
    """Hold an exclusive lock on ``<path>.lock`` for the block; wait if another process has it."""
    lp = lock_path(path)
    try:
        lp.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lp, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise UserError(f"cannot create lock file {lp}: {e.strerror}; choose a writable --runs folder")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            (log or (lambda m: print(m, file=sys.stderr)))(
                f"waiting for {Path(path).name}: another process is building it")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
