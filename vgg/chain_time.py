"""How long a chain of nets trains on this machine: epochs left x seconds per epoch of each config.

Rates come from training logs (``<net>.log.csv``, one row per epoch with its ``seconds``): the
median over every epoch of a config. A config no log has measured is scaled from a reference set of
rates by the median ratio of the configs both have measured, so a run that has timed a few nets
predicts the rest on its own CPU. The reference is the imagenette preset's published chain
(``results/imagenette/logs``: the same geometry and batch as the imagewoof and imagenette_fixed
presets, AMD EPYC with AVX512-BF16, 2026-11-24).
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .chain import Net
from .train import validates

PUBLISHED_LOGS = Path(__file__).resolve().parents[1] / "results" / "imagenette" / "logs"


def net_of_log(path: Path) -> tuple[str, str]:
    """``results/.../D_S256-512.log.csv`` -> (``D``, ``256-512``); ``B-5x5_S256.log.csv`` -> (``B-5x5``, ``256``)."""
    config, _, scale = Path(path).name.removesuffix(".log.csv").partition("_S")
    return config, scale


def config_of_log(path: Path) -> str:
    """``results/.../D_S256-512.log.csv`` -> ``D``."""
    return net_of_log(path)[0]


def _medians(logs: Iterable[Path], column: str) -> dict[str, float]:
    """config -> median of ``column`` over every row of the logs that has it."""
    per: dict[str, list[float]] = {}
    for log in logs:
        df = pd.read_csv(log)
        values = df[column].dropna().tolist() if column in df else []
        if values:
            per.setdefault(config_of_log(Path(log)), []).extend(values)
    return {config: float(np.median(v)) for config, v in per.items()}


def epoch_seconds(logs: Iterable[Path]) -> dict[str, float]:
    """config -> median seconds per epoch over the logs."""
    return _medians(logs, "seconds")


def validation_seconds(logs: Iterable[Path]) -> dict[str, float]:
    """config -> median seconds of one validation over the logs that timed it (``val_seconds``: logs
    written from ab87d6d on)."""
    return _medians(logs, "val_seconds")


def published_epoch_seconds() -> dict[str, float]:
    """The reference rates: the imagenette preset's S=256 nets of seed 0, one per config (2026-11-24)."""
    return epoch_seconds(sorted(PUBLISHED_LOGS.glob("*_S256.log.csv")))


def complete_rates(measured: dict[str, float], reference: dict[str, float]) -> tuple[dict[str, float], float]:
    """Every reference config's seconds per epoch: measured where measured, else the reference rate x
    the median measured / reference ratio (1 when nothing is measured). Returns (rates, ratio)."""
    shared = [measured[c] / reference[c] for c in measured if c in reference]
    ratio = float(np.median(shared)) if shared else 1.0
    return {c: measured.get(c, r * ratio) for c, r in reference.items()} | measured, ratio


def chain_seconds(todo: Iterable[tuple[Net, int]], preset, rates: dict[str, float]) -> float:
    """Seconds of training the nets of ``todo`` [(net, epochs already done)] still need."""
    return sum(max(net.epochs(preset) - done, 0) * rates[net.config] for net, done in todo)


def validations(preset, epochs: int, done: int = 0) -> int:
    """Validations of a stage of ``epochs`` epochs after its first ``done`` (vgg.train.validates)."""
    return sum(validates(preset, e, epochs) for e in range(done + 1, epochs + 1))


def complete_validation_rates(timed: dict[str, float], measured: dict[str, float],
                              rates: dict[str, float]) -> dict[str, float] | None:
    """Every config's seconds per validation: timed where timed, else its epoch rate x the median timed
    validation / epoch ratio of the configs timed both ways; None when no validation is timed."""
    shared = [timed[c] / measured[c] for c in timed if c in measured]
    if not shared:
        return None
    ratio = float(np.median(shared))
    return {c: timed.get(c, r * ratio) for c, r in rates.items()}


def validation_chain_seconds(todo: Iterable[tuple[Net, int]], preset, val_rates: dict[str, float]) -> float:
    """Seconds of validation the nets of ``todo`` [(net, epochs already done)] still need."""
    return sum(validations(preset, net.epochs(preset), done) * val_rates[net.config] for net, done in todo)
