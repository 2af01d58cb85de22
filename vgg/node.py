"""The chain over a node: independent nets trained at the same time on disjoint device groups.

The chain is a graph (A -> B, C, D, E at S=256 -> S=384 -> jitter; A-LRN and B-5x5 on their own).
``python -m vgg chain --gpus-per-net K`` splits the node's devices into groups of K and gives each
group one net at a time: a net starts when its parent is finished and a group is free, the net
with the longest remaining path (the critical path) first. Each net is a ``python -m vgg chain
--only NET`` process (under ``torchrun --standalone --nproc_per_node K`` when K > 1) on its group's
devices, so the make-like plan, the locks and resume are the chain's own: a killed run started
again reuses what finished and resumes what had begun.

Before it starts, the launcher prints every net's plan and estimated time, the critical path and
the ETA of the whole graph on the groups (list scheduling of the estimates); while it runs, a
progress line at every start and finish. Estimates are the preset's epoch cap for the stage x the
training images / the step rate of the net's config on its group (:func:`estimated_rates`: a bf16
matmul measured on the device x a step fraction, or rates given), so a plateau-stopped stage
finishes earlier than estimated.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .chain import Net, checkpoint_path, needed, plan
from .errors import UserError
from .protocol import get_preset


@dataclass(frozen=True)
class Slot:
    """One net's share of the node: CUDA device ids, or CPU processes (``ids`` empty)."""

    ids: tuple[str, ...]
    processes: int

    def __str__(self) -> str:
        return f"cuda {','.join(self.ids)}" if self.ids else f"cpu x{self.processes}"


def device_groups(devices: str | None, per_net: int) -> list[Slot]:
    """``devices``: '0,1,2,3' (CUDA ids), 'cpu:N' (N CPU processes), or None (every visible GPU, else
    the CPU as one process per net) split into groups of ``per_net``."""
    if per_net < 1:
        raise UserError(f"--gpus-per-net must be 1 or more, got {per_net}")
    if devices is None:
        import torch
        devices = ",".join(map(str, range(torch.cuda.device_count()))) or f"cpu:{per_net}"
    if devices.startswith("cpu"):
        try:
            n = int(devices.partition(":")[2] or per_net)
        except ValueError:
            raise UserError(f"--devices {devices!r}: give GPU ids (0,1,2,3) or cpu:N")
        if n < per_net:
            raise UserError(f"--devices {devices}: {n} CPU processes is fewer than --gpus-per-net {per_net}")
        return [Slot((), per_net) for _ in range(n // per_net)]
    ids = [d.strip() for d in devices.split(",") if d.strip()]
    if not ids or not all(d.isdigit() for d in ids):
        raise UserError(f"--devices {devices!r}: give GPU ids (0,1,2,3) or cpu:N")
    if len(ids) < per_net:
        raise UserError(f"--devices {devices}: {len(ids)} GPUs is fewer than --gpus-per-net {per_net}")
    return [Slot(tuple(ids[k:k + per_net]), per_net) for k in range(0, len(ids) - per_net + 1, per_net)]


def estimated_rates(preset, device, per_net: int) -> dict[str, float]:
    """Training img/s of each config on a group of ``per_net`` devices: the bf16 matmul rate measured
    on ``device`` x vgg.gpu_data.STEP_FRACTION_ESTIMATE / the step's FLOPs, x ``per_net`` (ideal
    scaling: the all-reduce is not counted). An estimate, not a measurement of the step."""
    from .configs import CONFIGS
    from .gpu_data import STEP_FRACTION_ESTIMATE, matmul_flops, step_flops_per_image
    flops = matmul_flops(device) * STEP_FRACTION_ESTIMATE * per_net
    return {c: flops / step_flops_per_image(c, preset.width, preset.crop) for c in CONFIGS}


def net_seconds(net: Net, preset, train_images: int, rates: dict[str, float]) -> float:
    """The stage's epoch cap x the training images at the config's rate."""
    return net.epochs(preset) * train_images / rates[net.config]


def remaining_paths(nets: list[Net], seconds: dict[str, float]) -> dict[str, float]:
    """Each net's own time plus the longest chain of nets that wait on it (its critical path)."""
    names = {n.name for n in nets}
    out: dict[str, float] = {}
    for n in reversed(nets):  # chain order: children after parents
        kids = [m.name for m in nets if m.parent == n.name and m.name in names]
        out[n.name] = seconds[n.name] + max((out[k] for k in kids), default=0.0)
    return out


def critical_path(nets: list[Net], seconds: dict[str, float]) -> list[str]:
    paths = remaining_paths(nets, seconds)
    names = {n.name for n in nets}
    roots = [n for n in nets if n.parent not in names]
    path, node = [], max(roots, key=lambda n: paths[n.name]) if roots else None
    while node is not None:
        path.append(node.name)
        kids = [m for m in nets if m.parent == node.name]
        node = max(kids, key=lambda m: paths[m.name]) if kids else None
    return path


def simulate(nets: list[Net], seconds: dict[str, float], groups: int, busy: dict[str, float] | None = None
             ) -> tuple[float, list[tuple[str, float, float, int]]]:
    """List scheduling of ``nets`` (parents first; a parent outside ``nets`` is done) on ``groups``
    groups, longest remaining path first; ``busy``: nets already running with their seconds left.
    (makespan, [(net, start, end, group)])."""
    busy = dict(busy or {})
    names = {n.name for n in nets} | set(busy)
    paths = remaining_paths(nets, seconds)
    free_at = [0.0] * groups
    end: dict[str, float] = {}
    schedule = []
    for g, (name, left) in enumerate(sorted(busy.items(), key=lambda kv: kv[1])[:groups]):
        free_at[g] = end[name] = left
        schedule.append((name, 0.0, left, g))
    todo = [n for n in nets if n.name not in busy]
    while todo:
        ready = [n for n in todo if n.parent not in names or n.parent in end]
        g = min(range(groups), key=lambda k: free_at[k])
        net = max(ready, key=lambda n: paths[n.name])
        start = max(free_at[g], end.get(net.parent, 0.0))
        end[net.name] = free_at[g] = start + seconds[net.name]
        schedule.append((net.name, start, end[net.name], g))
        todo.remove(net)
    return max(end.values(), default=0.0), schedule


def hours(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"


def launch_command(net: Net, slot: Slot, chain_args: list[str]) -> list[str]:
    vgg = ["-m", "vgg", "chain", "--only", net.name, "--no-progress", *chain_args]
    if slot.processes == 1:
        return [sys.executable, *vgg]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={slot.processes}", *vgg]


def launch_env(slot: Slot, total_processes: int) -> dict[str, str]:
    env = dict(os.environ)
    env["CUDA_VISIBLE_DEVICES"] = ",".join(slot.ids)
    if not slot.ids:  # CPU processes share the cores
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // total_processes))
    return env


def run_on_node(preset_name: str, runs: str | Path, seed: int, only: list[str] | None, per_net: int,
                devices: str | None, chain_args: list[str], train_images: int | None = None,
                rates: dict[str, float] | None = None, max_per_class: int | None = None, log=print,
                poll: float = 0.5) -> list[Path]:
    """Train the chain's missing nets on the node's device groups, as many at a time as there are
    groups; returns the checkpoints. ``chain_args``: flags every net's ``python -m vgg chain`` gets
    (--preset, --runs, --seed, --data, ...)."""
    preset = get_preset(preset_name, max_per_class=max_per_class)
    slots = device_groups(devices, per_net)
    nets = needed(only, preset.plan_controls)
    paths = {n.name: checkpoint_path(runs, preset_name, n.name, seed) for n in nets}
    actions = {n.name: plan(n, paths[n.name], preset_name, runs, seed, max_per_class) for n in nets}
    todo = [n for n in nets if actions[n.name] != "reuse"]
    if not todo:
        log(f"chain on the node: every net of {', '.join(paths)} is trained; nothing to do")
        return list(paths.values())
    if rates is None:
        rates = estimated_rates(preset, "cuda" if slots[0].ids else "cpu", per_net)
        if not slots[0].ids:
            rates = {c: r / per_net for c, r in rates.items()}  # CPU processes share the same cores
    images = train_images or 1_281_167
    seconds = {n.name: net_seconds(n, preset, images, rates) for n in todo}
    makespan, schedule = simulate(todo, seconds, len(slots))
    log(f"chain on the node: {len(todo)} nets to train on {len(slots)} groups of {per_net} "
        f"({', '.join(map(str, slots))}); estimates: epoch caps x {images:,} images at estimated rates")
    for name, start, end, g in sorted(schedule, key=lambda s: s[1]):
        log(f"  {name:14s} {actions[name]:8s} est. {hours(end - start):>9s}  starts ~{hours(start)}  group {g}")
    log(f"critical path: {' -> '.join(critical_path(todo, seconds))} "
        f"({hours(remaining_paths(todo, seconds)[critical_path(todo, seconds)[0]])}); ETA {hours(makespan)}")
    return _run(todo, paths, slots, seconds, chain_args, log, poll)


def _run(todo: list[Net], paths: dict[str, Path], slots: list[Slot], seconds: dict[str, float],
         chain_args: list[str], log, poll: float) -> list[Path]:
    names = {n.name for n in todo}
    priority = remaining_paths(todo, seconds)
    waiting, done = list(todo), set()
    running: dict[str, tuple[subprocess.Popen, int, float, object]] = {}
    free = list(range(len(slots)))
    t0, failed = time.time(), None
    total = sum(s.processes for s in slots)

    def progress(event: str) -> None:
        busy = {n: max(seconds[n] - (time.time() - started), 0.0) for n, (_, _, started, _) in running.items()}
        eta = simulate([n for n in waiting], seconds, len(slots), busy)[0]
        run_text = ", ".join(f"{n} ({slots[g]})" for n, (_, g, _, _) in running.items()) or "none"
        log(f"[{hours(time.time() - t0)}] {event}; {len(done)}/{len(todo)} done; running: {run_text}; "
            f"ETA {hours(eta)}")

    try:
        while waiting or running:
            if failed is None:
                ready = sorted((n for n in waiting if n.parent not in names or n.parent in done),
                               key=lambda n: -priority[n.name])
                for net in ready:
                    if not free:
                        break
                    g = free.pop(0)
                    out = _open_log(paths[net.name])
                    proc = subprocess.Popen(launch_command(net, slots[g], chain_args), env=launch_env(slots[g], total),
                                            stdout=out, stderr=subprocess.STDOUT)
                    running[net.name] = (proc, g, time.time(), out)
                    waiting.remove(net)
                    progress(f"start {net.name} on {slots[g]}")
            time.sleep(poll)
            for name, (proc, g, started, out) in list(running.items()):
                if proc.poll() is None:
                    continue
                out.close()
                del running[name]
                free.append(g)
                if proc.returncode == 0:
                    done.add(name)
                    progress(f"done {name} in {hours(time.time() - started)}")
                else:
                    failed = failed or (name, proc.returncode)
                    progress(f"FAILED {name} (exit {proc.returncode})")
            if failed and not running:
                break
    finally:
        for proc, *_ in running.values():  # interrupted: the nets resume at the next run
            proc.terminate()
    if failed:
        name, code = failed
        raise UserError(f"{name} failed (exit {code}): see {paths[name].with_suffix('.node.log')}; nets that "
                        "finished are kept and the next run resumes the rest")
    return [paths[n.name] for n in todo]


def _open_log(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path.with_suffix(".node.log"), "w")
