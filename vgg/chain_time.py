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

PUBLISHED_LOGS = Path(__file__).resolve().parents[1] / "results" / "imagenette" / "logs"


def net_of_log(path: Path) -> tuple[str, str]:
    """``results/.../D_S256-512.log.csv`` -> (``D``, ``256-512``); ``B-5x5_S256.log.csv`` -> (``B-5x5``, ``256``)."""
    config, _, scale = Path(path).name.removesuffix(".log.csv").partition("_S")
    return config, scale


def config_of_log(path: Path) -> str:
    """``results/.../D_S256-512.log.csv`` -> ``D``."""
    return net_of_log(path)[0]


def epoch_seconds(logs: Iterable[Path]) -> dict[str, float]:
    """config -> median seconds per epoch over the logs."""
    per: dict[str, list[float]] = {}
    for log in logs:
        seconds = pd.read_csv(log)["seconds"].dropna().tolist()
        if seconds:
            per.setdefault(config_of_log(Path(log)), []).extend(seconds)
    return {config: float(np.median(v)) for config, v in per.items()}


def validation_seconds(logs: Iterable[Path]) -> dict[str, float]:
    """config -> median seconds of one validation over the logs that timed it (``val_seconds``: logs
    written from ab87d6d on)."""
    per: dict[str, list[float]] = {}
    for log in logs:
        df = pd.read_csv(log)
        seconds = df["val_seconds"].dropna().tolist() if "val_seconds" in df else []
        if seconds:
            per.setdefault(config_of_log(Path(log)), []).extend(seconds)
    return {config: float(np.median(v)) for config, v in per.items()}


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


def validations(epochs: int, every: int, done: int = 0) -> int:
    """Validations of a stage of ``epochs`` epochs after its first ``done``: every ``every``-th epoch
    and the last (vgg.train; ``every`` = 1 under the plateau rule)."""
    return sum(1 for e in range(done + 1, epochs + 1) if e % every == 0 or e == epochs)


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
    return sum(validations(net.epochs(preset), preset.validate_every, done) * val_rates[net.config]
               for net, done in todo)
