"""The paper's initialisation chain: the checkpoints Table 3 needs, built in order.

A(256) and A-LRN(256) from random init; B, C, D, E (256) from net A's first four
conv layers and three FC layers; C, D, E at S=384 fine-tuned from their S=256 net
(lr 1e-3); C, D, E with scale jitter [256, 512] fine-tuned from their S=384 net.
B-5x5 (the shallow control) starts from random init: A's 3x3 layers do not fit it.

Each checkpoint is ``<runs>/<preset>/<config>_S<scale>.pt``; a finished one is reused,
an unfinished one resumed, so an interrupted ``make table3`` continues where it was.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .checkpoint import load_training_checkpoint
from .errors import UserError
from .train import TrainSpec, run_name, train


@dataclass(frozen=True)
class Net:
    config: str
    scale: str
    parent: str | None = None   # run name whose weights start this one

    @property
    def name(self) -> str:
        return run_name(self.config, self.scale)


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
BY_NAME = {n.name: n for n in CHAIN}


def checkpoint_path(runs: str | Path, preset: str, name: str) -> Path:
    return Path(runs) / preset / f"{name}.pt"


def is_complete(path: Path) -> bool:
    return path.exists() and bool(load_training_checkpoint(path).get("complete"))


def needed(only: list[str] | None) -> list[Net]:
    """The nets to build, dependencies first, in chain order."""
    if not only:
        return list(CHAIN)
    unknown = [n for n in only if n not in BY_NAME]
    if unknown:
        raise UserError(f"unknown net {unknown[0]!r}; valid names: {', '.join(BY_NAME)}")
    want: set[str] = set()
    for name in only:
        while name and name not in want:
            want.add(name)
            name = BY_NAME[name].parent
    return [n for n in CHAIN if n.name in want]


def build_chain(preset: str, data: str | None, runs: str | Path = "runs", seed: int = 0,
                only: list[str] | None = None, max_per_class: int | None = None,
                progress: bool = True, log=print) -> list[Path]:
    """Train every missing checkpoint of ``only`` (default: all of Table 3); return their paths."""
    paths = []
    for net in needed(only):
        path = checkpoint_path(runs, preset, net.name)
        if not is_complete(path):
            log(f"training {path}" + (" (resuming)" if path.exists() else ""))
            train(TrainSpec(config=net.config, scale=net.scale, preset=preset, data=data, out=str(path),
                            resume="auto",
                            init_from=str(checkpoint_path(runs, preset, net.parent)) if net.parent else None,
                            seed=seed, max_per_class=max_per_class, progress=progress))
        paths.append(path)
    return paths
