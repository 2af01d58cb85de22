"""Process-wide settings: the CPU path's speed (malloc; the precision, which changes results
only within bf16 rounding), and the process's device and its collectives under ``torchrun``.

glibc's malloc returns every large block (> 32 MB at most, usually far less) to the
kernel when it is freed and maps fresh, zero-filled pages for the next one, so each
activation tensor of a training step pays page faults again.  On 2 cores this was 40%
of the step time at the Imagenette geometry (``make bench``, row "allocator").
:func:`keep_freed_memory` tells malloc to serve every block from its heap and keep
freed memory for reuse (``mallopt``; the same as MALLOC_MMAP_MAX_=0 and a large
MALLOC_TRIM_THRESHOLD_, which only take effect at process start).
"""
from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import functools
import os
import sys

from .errors import UserError

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


AMP_CHOICES = ("auto", "bf16", "fp32")


#: the CPU instruction sets that run bf16 matmuls and convolutions natively, fastest first
BF16_ISAS = ("AMX", "AVX512-BF16")


@functools.lru_cache(maxsize=None)
def cpu_isa() -> str:
    """The CPU's fastest instruction set for training: 'AMX', 'AVX512-BF16', else the vector width
    PyTorch dispatches to ('AVX512', 'AVX2', 'DEFAULT', ...).  Machines of one model name differ here
    (an Intel Xeon with or without AMX), so every result's device names it."""
    import torch
    cpu = getattr(torch, "cpu", None)
    for isa, check in zip(BF16_ISAS, ("_is_amx_tile_supported", "_is_avx512_bf16_supported")):
        try:
            if hasattr(cpu, check) and getattr(cpu, check)():
                return isa
        except RuntimeError:
            pass
    try:
        return torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        return "unknown"


@functools.lru_cache(maxsize=None)
def bf16_is_fast(device_type: str = "cpu") -> bool:
    """Whether bf16 autocast runs at hardware speed here: a CUDA GPU with bf16, or a CPU with
    AVX512-BF16 or AMX.  Elsewhere (AVX2-only x86, most laptops) PyTorch emulates bf16 and a
    training step is an order of magnitude slower than in fp32 (docs/performance.md)."""
    import torch
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return cpu_isa() in BF16_ISAS


def _checked(value: str, where: str) -> str:
    if value not in AMP_CHOICES:
        raise UserError(f"{where}={value!r}: use one of {', '.join(AMP_CHOICES)}")
    return value


def amp_setting() -> str:
    """VGG_AMP: 'auto' (default), 'bf16' or 'fp32'."""
    return _checked(os.environ.get("VGG_AMP", "auto").strip().lower() or "auto", "VGG_AMP")


def resolve_amp(amp: bool | str | None, device_type: str = "cpu") -> bool:
    """True for bf16 autocast.  ``amp``: True/False, 'bf16'/'fp32'/'auto', or None (VGG_AMP);
    'auto' is bf16 exactly where :func:`bf16_is_fast`."""
    if isinstance(amp, bool):
        return amp
    choice = amp_setting() if amp is None else _checked(amp, "--precision")
    return bf16_is_fast(device_type) if choice == "auto" else choice == "bf16"


def precision_name(amp: bool | str | None = None, device_type: str = "cpu") -> str:
    return "bf16 autocast" if resolve_amp(amp, device_type) else "fp32"


# --------------------------------------------------------------------------- processes and devices
# Rule: every tensor handed to a collective lives on the process's device (NCCL, the process group
# on GPUs, takes no CPU tensors), so every collective of the package goes through these functions.


def process_device():
    """The device this process computes on: cuda:LOCAL_RANK where CUDA is available (``torchrun``
    sets LOCAL_RANK; 0 without it), else the CPU.  Training and evaluation both use it."""
    import torch
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes: (0, 1) without a process group."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def setup_distributed():
    """(rank, world, device): joins the process group ``torchrun`` describes (WORLD_SIZE > 1;
    NCCL on GPUs, gloo on CPUs) once per process."""
    import torch
    import torch.distributed as dist
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        atexit.register(leave_process_group)
    device = process_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return (*rank_and_world(), device)


def leave_process_group() -> None:
    """Destroy the process group before the interpreter tears down: left to the end, gloo's threads
    can abort a finished process ("terminate called without an active exception", exit -6)."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values, device) -> list[float]:
    """``values`` (numbers) summed over the processes, as float64 on ``device``."""
    import torch
    import torch.distributed as dist
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def gather_rows(t, device):
    """Every process's rows of ``t`` (their numbers may differ), concatenated in rank order, on
    every process (on the CPU)."""
    import torch
    import torch.distributed as dist
    world = dist.get_world_size()
    t = t.to(device)
    n = torch.tensor([len(t)], dtype=torch.int64, device=device)
    counts = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(counts, n)
    counts = [int(c) for c in counts]
    if max(counts) == 0:
        return t.cpu()
    padded = t.new_zeros((max(counts), *t.shape[1:]))  # all_gather takes tensors of one shape
    padded[:len(t)] = t
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:c] for p, c in zip(parts, counts)]).cpu()


def broadcast_object(obj, device):
    """Rank 0's ``obj`` (picklable) on every process."""
    import torch.distributed as dist
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=device)
    return box[0]


def barrier(device) -> None:
    """Wait for every process (on a GPU, NCCL's barrier on this process's device)."""
    import torch.distributed as dist
    dist.barrier(device_ids=[device.index or 0] if device.type == "cuda" else None)
