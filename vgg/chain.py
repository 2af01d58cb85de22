"""The paper's initialisation chain: the checkpoints Table 3 needs, built in order.

A(256) and A-LRN(256) from random init; B, C, D, E (256) from net A's first four
conv layers and three FC layers; C, D, E at S=384 fine-tuned from their S=256 net
(lr 1e-3); C, D, E with scale jitter [256, 512] fine-tuned from their S=384 net.
B-5x5 (the shallow control) starts from random init: A's 3x3 layers do not fit it.

Each checkpoint is ``<runs>/<preset>/<config>_S<scale>.pt``; a finished one is reused,
an unfinished one resumed, so an interrupted ``make table3`` continues where it was.
A checkpoint trained for fewer epochs than the preset now asks is trained on (the schedule
is extended); one whose parent has changed since it started (or that ran longer than
asked) is stale and trained again, like make's out-of-date targets; so is one trained under another
learning-rate rule (patience, threshold, number of drops, stop rule, learning rates) or started
at another learning rate than the preset now gives its config.

Planning reads each checkpoint's metadata sidecar, not the checkpoint (see vgg.checkpoint).
Under ``torchrun`` rank 0 takes the locks and plans, and every process trains what it decided.
"""
from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from .checkpoint import load_metadata, metadata_path
from .errors import UserError
from .locks import file_lock
from .protocol import LATER_FIELDS, get_preset
from .runtime import broadcast_object, setup_distributed
from .train import TrainSpec, default_epochs, run_name, source_stamp, stage_lr, train

# The preset fields that make the learning-rate rule; a checkpoint trained under other values is stale.
LR_RULE = ("patience", "plateau_threshold", "plateau_ema", "lr_drops", "stop_after_drops", "lr", "finetune_lr",
           "fixed_schedule")


@dataclass(frozen=True)
class Net:
    config: str
    scale: str
    parent: str | None = None   # run name whose weights start this one
    variant: str = ""           # a control's suffix: 'scratch', 'fc'
    lr_as: str | None = None    # start at the lr the preset gives this config instead of its own
    train_layers: str = "all"   # 'fc': only the fully-connected layers learn

    @property
    def name(self) -> str:
        return run_name(self.config, self.scale) + (f"-{self.variant}" if self.variant else "")

    def epochs(self, preset) -> int:
        """The epochs the preset gives this net's stage (vgg.train.default_epochs)."""
        parent = None if self.parent is None else {"hparams": {"config": BY_NAME[self.parent].config}}
        return default_epochs(preset, self.config, parent)

    @property
    def finetuning(self) -> bool:
        """Fine-tuned from a net of its own config (S=384 from S=256, jitter from S=384)."""
        return self.parent is not None and BY_NAME[self.parent].config == self.config


CHAIN: list[Net] = [
    Net("A", "256"),
    Net("A-LRN", "256"),
    Net("B", "256", "A_S256"),
    Net("B-5x5", "256"),
    Net("C", "256", "A_S256"),
    Net("D", "256", "A_S256"),
    Net("E", "256", "A_S256"),
    Net("C", "384", "C_S256"),
    Net("D", "384", "D_S256"),
    Net("E", "384", "E_S256"),
    Net("C", "256-512", "C_S384"),
    Net("D", "256-512", "D_S384"),
    Net("E", "256-512", "E_S384"),
]
# The analysis plan's controls (docs/analysis_plan.md; presets with ``plan_controls``): B trained like
# B-5x5 (from scratch, its lr), and D with jitter fine-tuned from D S=384 in its FC layers only (the
# paper's ILSVRC-submission net).
CONTROLS: list[Net] = [
    Net("B", "256", None, variant="scratch", lr_as="B-5x5"),
    Net("D", "256-512", "D_S384", variant="fc", train_layers="fc"),
]
# Nets of the explanation experiments, built only when named (``--only``): A-LRN with LRN's sum term
# removed (conv1 divided by the constant k^beta), trained like A-LRN (the plan's Sect. 6); D and E from the
# preset's random init instead of net A (the paper's Sect. 3.1 alternative), trained like D and E.
EXPLANATIONS: list[Net] = [Net("A-LRN0", "256"), Net("D", "256", None, variant="scratch"),
                           Net("E", "256", None, variant="scratch")]
BY_NAME = {n.name: n for n in CHAIN + CONTROLS + EXPLANATIONS}
#: The configs of the chain's S=256 stage, in chain order: A, A-LRN, B, B-5x5, C, D, E.
S256_CONFIGS = list(dict.fromkeys(n.config for n in CHAIN if n.scale == "256"))


def checkpoint_path(runs: str | Path, preset: str, name: str, seed: int = 0) -> Path:
    """``<runs>/<preset>/<name>.pt`` for seed 0, ``<runs>/<preset>/seed<k>/<name>.pt`` for seed k:
    every seed has its own chain, so no seed starts from (or reuses) another seed's net."""
    folder = Path(runs) / preset
    return (folder if seed == 0 else folder / f"seed{seed}") / f"{name}.pt"


def plan(net: Net, path: Path, preset: str, runs: str | Path, seed: int = 0,
         max_per_class: int | None = None) -> str:
    """'reuse', 'train', 'resume' or 'stale: <why>' for one net of the chain."""
    if not path.exists():
        return "train"
    ckpt = load_metadata(path)
    if ckpt["spec"]["seed"] != seed:
        return f"stale: trained with seed {ckpt['spec']['seed']}, this run asks {seed}"
    p = get_preset(preset, max_per_class=max_per_class)
    # a checkpoint from before a rule field existed was trained with that field's old value
    trained_under = {**{k: v for k, v in LATER_FIELDS.items() if k in LR_RULE}, **ckpt.get("preset", {})}
    changed = [k for k in LR_RULE if k in trained_under and as_json(trained_under[k]) != as_json(getattr(p, k))]
    if changed:  # the scheduler in the checkpoint keeps its old rule: resuming would mix two rules
        return "stale: trained under another lr rule (" + ", ".join(
            f"{k} {trained_under[k]} -> {getattr(p, k)}" for k in changed) + ")"
    start_lr = stage_lr(p, net.lr_as or net.config, net.finetuning)
    if ckpt["spec"]["lr"] != start_lr:  # e.g. the preset's lr_by_config changed for this config
        return f"stale: started at lr {ckpt['spec']['lr']:g}, the preset starts {net.name} at {start_lr:g}"
    parent = None
    if net.parent:
        parent_path = checkpoint_path(runs, preset, net.parent, seed)
        parent = load_metadata(parent_path)
        recorded = ckpt["spec"].get("init_source", "unrecorded")
        if recorded == "unrecorded":  # checkpoints from before init_source was stored: compare times
            if parent_path.stat().st_mtime_ns > path.stat().st_mtime_ns:
                return f"stale: {net.parent} is newer"
        elif recorded != source_stamp(parent):
            return f"stale: {net.parent} has changed since this net started from it"
    want = default_epochs(p, net.config, parent)
    if ckpt.get("stopped_after_drops") is not None and ckpt["epoch"] <= want:
        return "reuse"  # stopped by the preset's plateau rule (the same rule: LR_RULE above) before its cap
    if ckpt["epoch"] > want:
        return f"stale: trained {ckpt['epoch']} epochs, the preset asks {want}"
    if ckpt["epoch"] < want or not ckpt.get("complete"):
        return "resume"
    return "reuse"


def as_json(value):
    """A value as its metadata sidecar stores it (tuples become lists), for comparison."""
    return json.loads(json.dumps(value))


def needed(only: list[str] | None, controls: bool = False) -> list[Net]:
    """The nets to build, dependencies first, in chain order (the plan's controls last, where asked)."""
    if not only:
        return list(CHAIN) + (list(CONTROLS) if controls else [])
    unknown = [n for n in only if n not in BY_NAME]
    if unknown:
        raise UserError(f"unknown net {unknown[0]!r}; valid names: {', '.join(BY_NAME)}")
    want: set[str] = set()
    for name in only:
        while name and name not in want:
            want.add(name)
            name = BY_NAME[name].parent
    return [n for n in CHAIN + CONTROLS + EXPLANATIONS if n.name in want]


def build_chain(preset: str, data: str | None, runs: str | Path = "runs", seed: int = 0,
                only: list[str] | None = None, max_per_class: int | None = None,
                progress: bool = True, log=print, batch: int | None = None, width: float | None = None,
                amp: bool | None = None, loader: str | None = None, workers: int | None = None) -> list[Path]:
    """Train every missing checkpoint of ``only`` (default: all of Table 3); return their paths.
    Each net is planned and built under its lock, so concurrent chains build each net once; under
    ``torchrun`` rank 0 holds the lock and plans, and all processes train."""
    rank, world, device = setup_distributed()
    p = get_preset(preset)
    paths = []
    for net in needed(only, p.plan_controls):
        path = checkpoint_path(runs, preset, net.name, seed)
        with file_lock(path, log) if rank == 0 else nullcontext():
            action = None
            if rank == 0:
                try:
                    action = plan_and_clear(net, path, preset, runs, seed, max_per_class, log)
                except UserError as e:  # every process stops with it (the others wait on rank 0's plan)
                    action = e
            if world > 1:
                action = broadcast_object(action, device)
            if isinstance(action, UserError):
                raise action
            if action != "reuse":
                parent = str(checkpoint_path(runs, preset, net.parent, seed)) if net.parent else None
                lr = stage_lr(p, net.lr_as, False) if net.lr_as else None
                train(TrainSpec(config=net.config, scale=net.scale, preset=preset, data=data, out=str(path),
                                runs=str(runs), resume="auto", init_from=parent, seed=seed, lr=lr,
                                train_layers=net.train_layers,
                                max_per_class=max_per_class, progress=progress, batch=batch, width=width, amp=amp,
                                loader=loader, workers=workers))
        paths.append(path)
    return paths


def plan_and_clear(net: Net, path: Path, preset: str, runs: str | Path, seed: int, max_per_class: int | None,
                   log) -> str:
    """plan(), saying what it will do; a stale checkpoint is deleted (with its log and metadata)."""
    action = plan(net, path, preset, runs, seed, max_per_class)
    if action.startswith("stale"):
        log(f"retraining {path} ({action})")
        for p in (path, path.with_suffix(".log.csv"), metadata_path(path)):
            p.unlink(missing_ok=True)
    elif action != "reuse":
        log(f"training {path}" + (" (resuming)" if action == "resume" else ""))
    return action
