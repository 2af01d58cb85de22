"""How long a chain of nets trains on this machine: epochs left x seconds per epoch of each config;
and which evaluation passes one seed's tables then run (:func:`evaluation_passes`).

Rates come from training logs (``<net>.log.csv``, one row per epoch with its ``seconds``): the
median over every epoch of a config. A config no log has measured is scaled from a reference set of
rates by the median ratio of the configs both have measured, so a run that has timed a few nets
predicts the rest on its own CPU. The reference is the imagenette preset's published chain
(``results/imagenette/logs``: the same geometry and batch as the imagewoof and imagenette_fixed
presets, AMD EPYC with AVX512-BF16, 2026-11-24).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .chain import BY_NAME, Net
from .errors import UserError
from .results import paper_table
from .rows import TABLE5_SCALES, members, net_name, scales_of
from .train import validates

PUBLISHED_LOGS = Path(__file__).resolve().parents[1] / "results" / "imagenette" / "logs"
IMAGEWOOF_VAL = 3929  # the reproduction's validation images (fast.ai's Imagewoof 2 list)
IMAGENETTE_TRAIN, IMAGEWOOF_TRAIN = 9469, 9025  # training images (Imagenette 2; fast.ai's Imagewoof 2 list)
IMAGENETTE_VAL = 3925
#: (training, validation) images of the data each preset of the reproduction's geometry trains on
SPLIT_SIZES = {"imagewoof": (IMAGEWOOF_TRAIN, IMAGEWOOF_VAL), "imagenette": (IMAGENETTE_TRAIN, IMAGENETTE_VAL),
               "imagenette_fixed": (IMAGENETTE_TRAIN, IMAGENETTE_VAL)}


def eval_rates_path(results: str | Path, label: str = "") -> Path:
    """Where `make eval_rates LABEL=<label>` writes one CPU's evaluation passes:
    ``<results>/eval_rates/<label>.csv``; without a label, the folder of them."""
    folder = Path(results) / "eval_rates"
    return folder / f"{label}.csv" if label else folder


def label_order(label: str) -> list:
    """Sort key of labels of sets of rates, their numbers compared as numbers: ``...-amx``,
    ``...-amx-2``, ..., ``...-amx-10`` in the order they were timed."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", label)]


def net_of_log(path: Path) -> tuple[str, str]:
    """``results/.../D_S256-512.log.csv`` -> (``D``, ``256-512``); ``B-5x5_S256.log.csv`` -> (``B-5x5``, ``256``)."""
    config, _, scale = Path(path).name.removesuffix(".log.csv").partition("_S")
    return config, scale


#: the rate key of a net whose conv layers are frozen (``train_layers='fc'``): no conv backward, a cheaper epoch
FC_ONLY = "-fc"


def config_of_log(path: Path) -> str:
    """The rate key of a log: ``results/.../D_S256-512.log.csv`` -> ``D``; an FC-only fine-tuning
    (``D_S256-512-fc``, or `make epoch_rates`'s ``D-fc_S256``) -> ``D-fc``."""
    config, scale = net_of_log(path)
    return config + FC_ONLY if scale.endswith(FC_ONLY) else config


def rate_key(net: Net) -> str:
    """The key of ``net``'s seconds per epoch: its config, ``<config>-fc`` when only its FC layers learn."""
    return net.config + FC_ONLY if net.train_layers == "fc" else net.config


def epoch_rate(rates: dict[str, float], net: Net) -> float:
    """Seconds per epoch of ``net``: its :func:`rate_key`'s rate, else its config's (an FC-only epoch
    not timed costs at most a full one)."""
    return rates.get(rate_key(net), rates[net.config])


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


def complete_rates(measured: dict[str, float], reference: dict[str, float],
                   prior: float = 1.0) -> tuple[dict[str, float], float]:
    """Every reference config's seconds per epoch: measured where measured, else the reference rate x
    the median measured / reference ratio (``prior`` when nothing is measured). Returns (rates, ratio)."""
    shared = [measured[c] / reference[c] for c in measured if c in reference]
    ratio = float(np.median(shared)) if shared else prior
    return {c: measured.get(c, r * ratio) for c, r in reference.items()} | measured, ratio


def chain_seconds(todo: Iterable[tuple[Net, int]], preset, rates: dict[str, float]) -> float:
    """Seconds of training the nets of ``todo`` [(net, epochs already done)] still need."""
    return sum(max(net.epochs(preset) - done, 0) * epoch_rate(rates, net) for net, done in todo)


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


def log_rates(logs: Iterable[Path], train_images: int | None = None
              ) -> tuple[dict[str, float], dict[str, float] | None]:
    """(seconds per epoch, seconds per validation) of every config from training logs: measured where
    they time it, else scaled (:func:`complete_rates` from the published rates,
    :func:`complete_validation_rates`); the validations None when no log timed one. Before any epoch
    is timed the published rates are scaled by ``train_images`` / Imagenette's, an epoch's images."""
    logs = list(logs)
    measured = epoch_seconds(logs)
    prior = train_images / IMAGENETTE_TRAIN if train_images else 1.0
    rates, _ = complete_rates(measured, published_epoch_seconds(), prior)
    return rates, complete_validation_rates(validation_seconds(logs), measured, rates)


def validation_chain_seconds(todo: Iterable[tuple[Net, int]], preset, val_rates: dict[str, float]) -> float:
    """Seconds of validation the nets of ``todo`` [(net, epochs already done)] still need."""
    return sum(validations(preset, net.epochs(preset), done) * val_rates[net.config] for net, done in todo)


def evaluation_passes(preset) -> dict[str, set[tuple[str, int]]]:
    """One seed's evaluations by `make reproduce` as (net, Q in paper pixels) per method, each once (the
    posteriors are cached per net, method and Q, so rows that share a pass share its cost): Tables 3-6
    (dense on every val image, multi-crop on the preset's multi-crop images, Table 3's centre crops on
    every val image), and with the preset's ``plan_controls`` the plan's nets: B trained like B-5x5
    (centre crop), D jitter fine-tuned in its FC layers (the 7-net fusion) and the LRN control A-LRN0
    (dense and centre crop at Q = 256, `make fixed_schedule_check`)."""
    out: dict[str, set[tuple[str, int]]] = {"dense": set(), "multi-crop": set(), "center-crop": set()}

    def add(method: str, net: str, qs) -> None:
        for m in ("dense", "multi-crop") if method == "multi-crop & dense" else (method,):
            out[m].update((net, int(q)) for q in qs)

    for r in paper_table("table3_single_scale").itertuples():
        net = net_name(r.config, r.train_scale)
        add("dense", net, [r.test_scale])
        add("center-crop", net, [r.test_scale])
    for net in ("B_S256", "B-5x5_S256"):
        add("center-crop", net, [256])
    for r in paper_table("table4_multi_scale").itertuples():
        add("dense", net_name(r.config, r.train_scale), scales_of(r.test_scales))
    for r in paper_table("table5_eval_methods").itertuples():
        add(r.method, net_name(r.config, "256-512"), TABLE5_SCALES)
    for r in paper_table("table6_fusion").itertuples():
        models = r.models
        if preset.plan_controls and len(members(models)) == 7:  # experiments/06: the submission's FC-only D jitter
            models = models.replace("D/256-512/", "D/256-512-fc/")
        for net, qs in members(models):
            add(r.method, net, qs)
    if preset.plan_controls:
        add("center-crop", "B_S256-scratch", [256])
        add("dense", "A-LRN0_S256", [256])
        add("center-crop", "A-LRN0_S256", [256])
    assert all(net in BY_NAME for passes in out.values() for net, _ in passes)
    return out


def distinct_passes(preset) -> dict[tuple[str, str, int], int]:
    """(config, method, Q in paper pixels) -> how many of one seed's nets run that pass
    (:func:`evaluation_passes`): nets of one config cost the same per image."""
    out: dict[tuple[str, str, int], int] = {}
    for method, passes in evaluation_passes(preset).items():
        for net, q in passes:
            key = (BY_NAME[net].config, method, q)
            out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


def pass_images(preset, val_images: int) -> dict[str, int]:
    """Images per pass by method: dense and centre crops every val image, multi-crop the preset's
    multi-crop images (at most every val image)."""
    crops = min(preset.multi_crop_images or val_images, val_images)
    return {"dense": val_images, "center-crop": val_images, "multi-crop": crops}


def pass_seconds(nets: int, images: int, ms_per_image: float, first_pass_ms: float, images_timed: int) -> float:
    """Seconds one seed spends on a distinct pass: its nets x images x ms per image, plus the extra of
    the first pass (kernels built for new shapes) as timed, once."""
    return (nets * images * ms_per_image + images_timed * max(first_pass_ms - ms_per_image, 0.0)) / 1e3


def evaluation_seconds(rates: pd.DataFrame, preset, val_images: int) -> float:
    """One seed's evaluation from the passes `make eval_rates` timed (an :func:`eval_rates_path` file):
    :func:`pass_seconds` of each of :func:`distinct_passes` at :func:`pass_images`. A pass the rates lack
    stops with the command that times it."""
    rate = {(r.config, r.method, int(r.test_scale)): r for r in rates.itertuples()}
    images = pass_images(preset, val_images)
    seconds = 0.0
    for (config, method, q), nets in distinct_passes(preset).items():
        if (config, method, q) not in rate:
            raise UserError(f"the evaluation rates have no {method} pass of {config} at Q={q}: "
                            "rerun `make eval_rates`")
        r = rate[(config, method, q)]
        seconds += pass_seconds(nets, images[method], float(r.ms_per_image), float(r.first_pass_ms),
                                int(r.images_timed))
    return seconds
