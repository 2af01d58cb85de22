"""Training as Sect. 3.1: SGD + momentum, weight decay, dropout, plateau lr schedule.

One loop for both presets and for one or several processes (``torchrun`` ->
DistributedDataParallel; the global batch is split across processes, so a step is
the same as one device's step on the whole batch, as in the paper).  Every process takes
every step; the logged train loss and error and the val errors are those of all processes.

Each epoch's randomness (data order, scales, crops, flips, colour) is drawn from generators
seeded by (seed, epoch), the same on every process, dropout by (seed, epoch, rank); a
checkpoint is written atomically at the end of every epoch, so ``--resume`` continues
exactly where a run stopped.
"""
from __future__ import annotations

import csv
import io
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import checkpoint as ck
from .configs import check_config
from .data import data_root, fraction_of
from .datasets import cache_folder
from .errors import Divergence, UserError
from .init import init_from, initialise
from .io import atomic_write_text
from .loaders import load_datasets
from .metrics import topk_correct
from .model import VGG
from .plateau import drops_taken, ema, rule_firings
from .protocol import get_preset, single_test_scale
from .results import device_name, git_commit, matmul_gflops
from .runtime import all_sum, barrier, keep_freed_memory, precision_name, resolve_amp, setup_distributed

#: an epoch log's columns: ``seconds`` the epoch's training, ``val_seconds`` its validation (empty when the
#: epoch did not validate; logs written before it was recorded lack the column)
LOG_COLUMNS = ["epoch", "lr", "train_loss", "train_top1_err", "val_top1_err", "val_top5_err", "seconds",
               "val_seconds"]


def is_epoch_log(columns) -> bool:
    """Whether a CSV with these columns is an epoch log of vgg.train (of any version)."""
    return list(columns) in (LOG_COLUMNS, LOG_COLUMNS[:-1])


def validates(preset, epoch: int, epochs: int) -> bool:
    """Whether training validates after ``epoch`` (1-based) of a stage of ``epochs``: under a fixed
    schedule (which needs no validation to go on) every ``validate_every``-th epoch and the last; under
    the plateau rule every epoch."""
    every = preset.validate_every if preset.fixed_schedule else 1
    return epoch % every == 0 or epoch == epochs


MAX_LOSS = 100.0  # a cross-entropy above this has exploded (ln 1000 = 6.9 at init)


def run_name(config: str, scale: str) -> str:
    return f"{check_config(config)}_S{scale}"


@dataclass
class TrainSpec:
    config: str
    scale: str = "256"
    preset: str = "proxy"
    data: str | None = None
    out: str | None = None
    runs: str | None = None        # the runs folder (its cache/ holds decoded data); default: from out
    resume: str | None = None      # a checkpoint to continue ('auto' = --out)
    init: str | None = None        # 'normal' | 'glorot'; default: the preset's
    init_std: float = 0.01
    init_from: str | None = None   # net A (partial init) or the same config (fine-tuning)
    lr: float | None = None
    epochs: int | None = None
    batch: int | None = None
    width: float | None = None
    max_per_class: int | None = None
    loader: str | None = None      # 'memory' | 'stream'; default: the preset's
    workers: int | None = None     # DataLoader workers (stream); default: the preset's, capped at the CPUs
    seed: int = 0
    amp: bool | None = None
    progress: bool = True
    stop_after: int | None = None  # stop after this many epochs in this call (tests, time budgets)
    train_layers: str = "all"      # 'all', or 'fc': only the fully-connected layers learn (conv layers frozen)


def _positive(name: str, value, kind=float):
    if value is not None and not (isinstance(value, (int, float)) and value > 0):
        raise UserError(f"--{name} must be a positive {kind.__name__}, got {value!r}")


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    return (seed * 1_000_003 + epoch * 1_009 + rank) % 2**63


def train_step(model, optimizer, x: torch.Tensor, y: torch.Tensor, amp: bool | None = None,
               weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step on a batch; returns the (detached) mean cross-entropy and the logits.
    ``weight`` scales the loss the gradient comes from (a shard's share of the global batch)."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=resolve_amp(amp, x.device.type)):
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    (loss if weight == 1.0 else loss * weight).backward()
    optimizer.step()
    return loss.detach(), logits.detach()


def make_optimizer(model, preset, lr: float, train_layers: str = "all"):
    """SGD with momentum; weight decay on all trained parameters, biases included (as the paper's
    Caffe setup reads). ``train_layers='fc'``: the conv layers are frozen, only the classifier learns
    (the paper's multi-scale D of the ILSVRC submission was fine-tuned so)."""
    params = model.parameters()
    if train_layers == "fc":
        for p in model.features.parameters():
            p.requires_grad_(False)
        params = model.classifier.parameters()
    elif train_layers != "all":
        raise UserError(f"train_layers {train_layers!r}: all or fc")
    return torch.optim.SGD(params, lr=lr, momentum=preset.momentum, weight_decay=preset.weight_decay)


def make_scheduler(optimizer, preset, lr: float, fixed: tuple[int, ...] | None = None):
    """lr /= 10 when validation accuracy stops improving, at most ``lr_drops`` times.  The floor sits
    0.1% under lr / 10^lr_drops (float rounding); eps (torch's smallest applied change) at 1% of it,
    so firing at the floor leaves the lr as it is instead of trimming it by that 0.1%.
    ``fixed`` (epochs at lr, lr / 10, ...): lr /= 10 after each segment instead, whatever validation says."""
    if fixed:
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones(fixed), gamma=0.1)
    floor = lr * 0.1 ** preset.lr_drops
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=0.1, patience=preset.patience, threshold=preset.plateau_threshold,
        threshold_mode="abs", min_lr=floor * 0.999, eps=floor * 0.01)


def rule_input(accuracies: list[float], alpha: float) -> list[float]:
    """The accuracies the plateau rule sees: as measured (alpha 0), or smoothed by an exponential
    moving average with weight ``alpha`` (vgg.plateau.ema; recomputed from the log on resume)."""
    if not alpha:
        return list(accuracies)
    return [float(v) for v in ema(accuracies, alpha)]


def log_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, LOG_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def source_stamp(source: dict | None) -> dict | None:
    """What identifies the weights a run started from: the source's epoch count and its last log row.
    The init chain compares it with the source as it is now to tell a stale child."""
    if source is None:
        return None
    return {"epoch": source["epoch"], "last_log_row": source["log"][-1] if source["log"] else None}


def default_epochs(preset, config: str, source: dict | None) -> int:
    """The preset's epochs for this stage: from scratch, from net A, or fine-tuning (with a fixed
    schedule: the sum of its segments)."""
    fixed = fixed_segments(preset, config, source)
    if fixed:
        return sum(fixed)
    if source is None:
        return preset.scratch_epochs
    return preset.finetune_epochs if source["hparams"]["config"] == config else preset.from_a_epochs


def fixed_segments(preset, config: str, source: dict | None) -> tuple[int, ...] | None:
    """The preset's fixed schedule for this stage (epochs at lr, lr / 10, ...), or None (plateau rule)."""
    if not preset.fixed_schedule:
        return None
    finetuning = source is not None and source["hparams"]["config"] == config
    return tuple(preset.fixed_schedule["fine-tuning" if finetuning else "S=256"])


def milestones(fixed: tuple[int, ...]) -> list[int]:
    """The epochs after which a fixed schedule divides the lr by 10."""
    return [int(e) for e in np.cumsum(fixed)[:-1]]


def stage_lr(preset, config: str, finetuning: bool) -> float:
    """The learning rate a stage starts at: the fine-tuning lr, or the preset's lr for this config."""
    return preset.finetune_lr if finetuning else preset.lr_by_config.get(config, preset.lr)


def initial_weights(model: VGG, spec: TrainSpec, preset, src: dict | None) -> str:
    """Random init, or weights from --init-from; returns a description for the log."""
    initialise(model, spec.init or preset.scratch_init, spec.init_std)
    if src is None:
        return spec.init or preset.scratch_init
    src_cfg = src["hparams"]["config"]
    if src_cfg == model.config:
        if src["hparams"] != model.hparams():
            raise UserError(f"--init-from {spec.init_from}: {src['hparams']} differs from this run's "
                            f"{model.hparams()}")
        model.load_state_dict(src["state_dict"])
        return f"fine-tuned from {spec.init_from}"
    if src_cfg == "A" and model.config not in ("A", "A-LRN"):
        init_from(model, ck.model_from_checkpoint(src))
        return f"first 4 conv + 3 FC from {spec.init_from}"
    raise UserError(f"--init-from {spec.init_from} is a checkpoint of config {src_cfg}: config {model.config} "
                    f"starts from a net A checkpoint (partial init) or a {model.config} one (fine-tuning)")


def train(spec: TrainSpec) -> Path:
    keep_freed_memory()
    preset = get_preset(spec.preset, batch=spec.batch, width=spec.width, max_per_class=spec.max_per_class,
                        loader=spec.loader, workers=spec.workers)
    config = check_config(spec.config)
    for name, value in (("epochs", spec.epochs), ("batch", spec.batch), ("lr", spec.lr), ("width", spec.width)):
        _positive(name, value)
    smin, smax = preset.scale_px(spec.scale)
    if smin < preset.crop:
        raise UserError(f"scale {spec.scale} is {smin} px in preset {preset.name}, smaller than the crop "
                        f"{preset.crop}: S must be at least the crop size")
    q_val = preset.px(single_test_scale(spec.scale))
    root = data_root(spec.data)
    out = Path(spec.out or f"runs/{preset.name}/{run_name(config, spec.scale)}.pt")
    source = ck.load_training_checkpoint(spec.init_from) if spec.init_from else None
    epochs = spec.epochs or default_epochs(preset, config, source)
    finetuning = source is not None and source["hparams"]["config"] == config
    # the preset's stop rule, for every stage (from scratch, from net A, fine-tuning at S=384 and with
    # jitter: the paper lowers the lr the same way in each); an explicit --epochs means exactly that many
    fixed = fixed_segments(preset, config, source)
    stop_drops = preset.stop_after_drops if spec.epochs is None and not fixed else None
    lr = spec.lr or stage_lr(preset, config, finetuning)

    resume_from = None
    if spec.resume:
        resume_from = out if spec.resume == "auto" else Path(spec.resume)
        if spec.resume == "auto" and not out.exists():
            resume_from = None  # nothing to resume yet: a fresh run
        elif resume_from is not None:
            resume_from = ck.load_training_checkpoint(resume_from, config)
    elif out.exists():
        raise UserError(f"{out} exists: pass --resume to continue it, or choose another --out")
    if resume_from is not None and stop_drops is not None and resume_from.get("stopped_after_drops") == stop_drops:
        print(f"[{out.stem}] stopped by the plateau rule at epoch {resume_from['epoch']}: nothing to train",
              file=sys.stderr)
        return out
    rank, world, device = setup_distributed()
    if preset.batch % world:
        raise UserError(f"batch {preset.batch} does not split evenly over {world} processes")
    runs = Path(spec.runs) if spec.runs else ck.runs_folder(out, preset.name)
    data = load_datasets(root, preset, cache_dir=cache_folder(runs), rank=rank, device=device)
    if data.steps_per_epoch(world) == 0:
        raise UserError(f"{root}/train has {len(data.train)} images, fewer than one batch of {preset.batch}: "
                        "pass a smaller --batch")
    model = VGG(config, num_classes=len(data.classes), width=preset.width, crop_size=preset.crop,
                dropout=preset.dropout)
    torch.manual_seed(spec.seed)
    if resume_from is not None:
        if resume_from["hparams"] != model.hparams():
            raise UserError(f"--resume checkpoint has {resume_from['hparams']}, this run {model.hparams()}")
        model.load_state_dict(resume_from["state_dict"])
        how = resume_from["spec"]["how"]
    else:
        how = initial_weights(model, spec, preset, source)
    amp = resolve_amp(spec.amp, device.type)  # bf16 autocast where the hardware has bf16, else fp32
    model.to(device, memory_format=torch.channels_last)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    optimizer = make_optimizer(model, preset, lr, spec.train_layers)
    scheduler = make_scheduler(optimizer, preset, lr, fixed)
    rows, start = [], 0
    if resume_from is not None:
        optimizer.load_state_dict(resume_from["optimizer"])
        scheduler.load_state_dict(resume_from["scheduler"])
        rows, start = resume_from["log"], resume_from["epoch"]
    # this session of the net: machine, precision, measured speed, code and first epoch (a net
    # resumed elsewhere or at another commit lists each session)
    device_label, precision = device_name(), precision_name(amp)
    session = (f"{device_label}, {precision}, {matmul_gflops(device.type, amp):.0f} GFLOP/s matmul, "
               f"commit {git_commit()}, from epoch {start + 1}")
    meta = {"spec": {**asdict(spec), "how": how, "lr": lr, "epochs": epochs, "scale_px": [smin, smax],
                     "init_source": source_stamp(source),
                     "q_val_px": q_val, "world": world, "weight_decay_on_biases": True,
                     "amp": amp, "precision": precision, "device": device_label,
                     # every machine the net trained on, across resumes (a reproduction spans sessions)
                     "devices": list(dict.fromkeys([*(resume_from or {}).get("spec", {}).get("devices", []),
                                                    session]))},
            "preset": preset.as_dict(), "classes": data.classes, "colour": data.colour.as_dict(),
            "skipped_images": data.skipped}
    if rank == 0 and start == 0:
        print(f"[{out.stem}] {config} S={spec.scale} ({smin}-{smax} px) init: {how}; {len(data.train)} train / "
              f"{len(data.val)} val images ({data.skipped} unreadable skipped); "
              + (f"{epochs} epochs (lr / 10 after epochs {milestones(fixed)})" if fixed else
                 f"{epochs} epochs" if stop_drops is None else
                 f"until the plateau rule fires after {stop_drops} lr drops (at most {epochs} epochs)")
              + f", lr {lr}, {precision}",
              file=sys.stderr)
    stop = epochs if spec.stop_after is None else min(epochs, start + spec.stop_after)
    part = fraction_of(preset.batch, rank, world)  # this process's rows of each global batch
    for epoch in range(start, stop):
        torch.manual_seed(epoch_seed(spec.seed, epoch, rank))  # dropout
        gen = torch.Generator().manual_seed(epoch_seed(spec.seed, epoch) + 1)  # augmentation: alike on all ranks
        model.train()
        t0 = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        batches = data.train_batches(epoch, spec.seed, (smin, smax), gen, rank, world)
        bar = tqdm(batches, total=data.steps_per_epoch(world), desc=f"{out.stem} ep {epoch + 1}/{epochs}",
                   disable=not spec.progress or rank != 0, leave=False, file=sys.stderr)
        for step, (x, y) in enumerate(bar):
            weight = step_weight(x, y, world, device)
            if weight is None:
                continue
            x = data.colour_augment(x.to(device), gen, part).contiguous(memory_format=torch.channels_last)
            y = y.to(device)
            loss, logits = train_step(net, optimizer, x, y, amp, weight)
            value = float(loss)
            if not math.isfinite(value) or value > MAX_LOSS:
                raise Divergence(
                    f"training diverged: loss {value:.4g} at epoch {epoch + 1} step {step + 1} of {out.stem} "
                    f"(lr {optimizer.param_groups[0]['lr']:g}); the paper's remedies: initialise from a "
                    "trained net A (--init-from), Glorot init (--init glorot), or a lower --lr")
            loss_sum += value * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
        train_seconds = time.perf_counter() - t0
        if world > 1:  # the epoch's train loss and error over every process's images
            loss_sum, correct, seen = all_sum([loss_sum, correct, seen], device)
        t0 = time.perf_counter()
        if validates(preset, epoch + 1, epochs):
            val1, val5 = validate(model, data, q_val, device, amp, rank, world)
            val_seconds = round(time.perf_counter() - t0, 3)
        else:
            val1 = val5 = val_seconds = float("nan")
        epoch_lr = optimizer.param_groups[0]["lr"]
        # what the rule sees: this stage's val accuracies, smoothed by the preset's EMA (if any); does
        # it fire after this epoch? (vgg.plateau replays torch's ReduceLROnPlateau on the log)
        seen_acc = rule_input([1 - r["val_top1_err"] for r in rows] + [1.0 - val1], preset.plateau_ema)
        fires = epoch + 1 in rule_firings(seen_acc, preset.patience, preset.plateau_threshold)
        drops = drops_taken([r["lr"] for r in rows] + [epoch_lr])
        stopped = stop_drops is not None and fires and drops >= stop_drops
        scheduler.step() if fixed else scheduler.step(seen_acc[-1])
        rows.append({"epoch": epoch + 1, "lr": epoch_lr,
                     "train_loss": float(loss_sum) / max(seen, 1), "train_top1_err": 1 - correct / max(seen, 1),
                     "val_top1_err": val1, "val_top5_err": val5, "seconds": round(train_seconds, 3),
                     "val_seconds": val_seconds})
        if rank == 0:
            state = {"format": ck.FORMAT, "hparams": model.hparams(), "state_dict": model.state_dict(),
                     "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "epoch": epoch + 1, "complete": stopped or epoch + 1 >= epochs, "log": rows, **meta}
            if stopped:
                state["stopped_after_drops"] = stop_drops
            ck.save_training_checkpoint(state, out)
            atomic_write_text(out.with_suffix(".log.csv"), log_csv(rows))
            print(f"[{out.stem}] epoch {epoch + 1}/{epochs} lr {rows[-1]['lr']:g} loss {rows[-1]['train_loss']:.4f} "
                  + (f"val top-1 err {val1:.4f} top-5 err {val5:.4f}" if val1 == val1 else "(no validation)")
                  + f" ({train_seconds:.0f} s)", file=sys.stderr)
            if stopped:
                print(f"[{out.stem}] stopped: the lr was lowered {drops} times and validation accuracy "
                      f"stalled again", file=sys.stderr)
            elif stop_drops is not None and epoch + 1 == epochs:
                print(f"[{out.stem}] warning: reached the cap of {epochs} epochs after {drops} of the "
                      f"{stop_drops} lr drops the preset asks for", file=sys.stderr)
        if stopped:
            break
    if world > 1:
        barrier(device)
    return out


def step_weight(x, y, world: int, device) -> float | None:
    """None: no process takes this step (one of them has no readable image in its shard, and every
    process must take the same steps); else the weight of this shard's mean loss that makes the
    processes' averaged gradient the mean over the global batch (1 when the shards are equal)."""
    if world == 1:
        return None if x is None else 1.0
    empty, total = all_sum([x is None, 0 if y is None else len(y)], device)
    if empty:
        return None
    return len(y) * world / total


@torch.no_grad()
def validate(model, data, q: int, device, amp: bool | None, rank: int = 0, world: int = 1) -> tuple[float, float]:
    """Per-epoch validation: centre crop of the image rescaled to Q (fast; for the lr schedule)."""
    model.eval()
    c1 = c5 = n = 0
    for x, y in data.val_center_crops(q, rank, world):
        x = data.colour.normalise(x.to(device)).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=resolve_amp(amp, device.type)):
            logits = model(x).float()
        k1, k5 = topk_correct(logits.cpu(), y, (1, 5))
        c1, c5, n = c1 + k1, c5 + k5, n + len(y)
    if world > 1:
        c1, c5, n = all_sum([c1, c5, n], device)
    return 1 - c1 / n, 1 - c5 / n
