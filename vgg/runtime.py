"""Process-wide settings that make the CPU path fast; no effect on results.

glibc's malloc returns every large block (> 32 MB at most, usually far less) to the
kernel when it is freed and maps fresh, zero-filled pages for the next one, so each
activation tensor of a training step pays page faults again.  On 2 cores this was 40%
of the step time at the Imagenette geometry (``make bench``, row "allocator").
:func:`keep_freed_memory` tells malloc to serve every block from its heap and keep
freed memory for reuse (``mallopt``; the same as MALLOC_MMAP_MAX_=0 and a large
MALLOC_TRIM_THRESHOLD_, which only take effect at process start).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4
_done = False


def keep_freed_memory() -> bool:
    """Switch glibc malloc to heap-only allocation that keeps freed memory; True if applied.
    A no-op off Linux/glibc or when VGG_KEEP_FREED_MEMORY=0."""
    global _done
    if _done:
        return True
    if os.environ.get("VGG_KEEP_FREED_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = (libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
              and libc.mallopt(M_TOP_PAD, 2**28) == 1)
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False
    _done = ok
    return ok


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask: a container's or taskset's share)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)
