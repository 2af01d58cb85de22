"""Reading, writing and checking checkpoints and plain state dicts.

Beside each training checkpoint ``<name>.pt`` lies ``<name>.meta.json``: everything in it but
the weights and the optimiser and scheduler state (a few kB against 1.1 GB for net D at full
width), with the identity of the checkpoint file it describes.  Whoever needs only the metadata
(the init chain's plan, the posterior cache) reads that; a sidecar that does not describe the
checkpoint as it is now (none yet, or the file was rewritten since) is not used.
"""
from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import torch

from .configs import TORCHVISION_NAMES, check_config
from .errors import UserError
from .io import atomic_torch_save, atomic_write_text
from .model import VGG

FORMAT = "vgg-repro/1"
# What the sidecar leaves out: the tensors and the optimiser and scheduler state.
HEAVY = ("state_dict", "optimizer", "scheduler")


def load(path: str | Path) -> dict:
    """Load a checkpoint or state-dict file; one clear error for missing / corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError) as e:
        raise UserError(f"checkpoint {path} is truncated or not a PyTorch file ({type(e).__name__}); "
                        "delete it and rerun to rebuild it")


def load_training_checkpoint(path: str | Path, config: str | None = None) -> dict:
    """A checkpoint written by ``vgg train``; checks its config when one is expected."""
    return _checked(load(path), path, config)


def _checked(ckpt, path, config: str | None) -> dict:
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path} is not a vgg-repro training checkpoint (use --weights for a plain state dict)")
    if config is not None and ckpt["hparams"]["config"] != check_config(config):
        raise UserError(f"checkpoint {path} is of config {ckpt['hparams']['config']}, not {check_config(config)}")
    return ckpt


def runs_folder(out: Path, preset: str) -> Path:
    """The runs folder of a checkpoint path: the folder holding ``<preset>/`` in
    ``<runs>/<preset>/[<sub>/]<net>.pt`` (the init chain's, seeds' and studies' paths), else the
    checkpoint's own folder."""
    for folder in out.resolve().parents[:2]:
        if folder.name == preset:
            return folder.parent
    return out.resolve().parent


def metadata_path(path: str | Path) -> Path:
    """``<name>.meta.json`` beside checkpoint ``<name>.pt``."""
    path = Path(path)
    return path.with_name(path.stem + ".meta.json")


def file_stamp(path: str | Path) -> dict:
    """What identifies a file's version: inode (every atomic write makes a new one), size, mtime."""
    st = os.stat(path)
    return {"inode": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_metadata(meta: dict, path: Path, stamp: dict) -> None:
    text = json.dumps({"checkpoint": stamp, "metadata": meta})
    atomic_write_text(metadata_path(path), text)


def save_training_checkpoint(state: dict, path: str | Path) -> None:
    """Write a training checkpoint, then its metadata sidecar, each atomically."""
    atomic_torch_save(state, path)
    try:
        _write_metadata({k: v for k, v in state.items() if k not in HEAVY}, Path(path), file_stamp(path))
    except (TypeError, ValueError):  # metadata JSON cannot hold: readers load the checkpoint itself
        metadata_path(path).unlink(missing_ok=True)


def load_metadata(path: str | Path, config: str | None = None) -> dict:
    """A training checkpoint without its weights and optimiser state: from its sidecar when that
    describes the file as it is now, else from the checkpoint itself (and the sidecar is written
    for next time, where the folder is writable).  JSON: dict keys come back as strings (the
    preset's ``sizes`` table)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found")
    stamp = file_stamp(path)
    try:
        side = json.loads(metadata_path(path).read_text())
        if side["checkpoint"] == stamp:
            return _checked(side["metadata"], path, config)
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no sidecar, or a torn / foreign one: read the checkpoint
    meta = {k: v for k, v in load_training_checkpoint(path, config).items() if k not in HEAVY}
    try:
        _write_metadata(meta, path, stamp)  # the stamp taken before loading: a file replaced since mismatches
    except (UserError, TypeError, ValueError):
        pass  # a read-only runs folder, or metadata JSON cannot hold: the full load stays the way
    return meta


def trained_on(spec: dict) -> str:
    """Where a net trained, from its checkpoint's spec: every session (machine, precision, ...; vgg.train),
    '; '-separated; a checkpoint older than the session list gives its one device and precision."""
    if spec.get("devices"):
        return "; ".join(spec["devices"])
    return f"{spec['device']}, {spec.get('precision', '?')}" if spec.get("device") else "not recorded"


def checkpoint_record(path: str | Path) -> dict:
    """What a results file records of a training checkpoint: epochs, whether training finished,
    seconds of logged epochs, every CPU/GPU and precision it trained on, its last epoch's training loss
    and training error (augmented batches, dropout on) and validation error, its SHA-256 and size."""
    import hashlib

    import pandas as pd
    path = Path(path)
    meta = load_metadata(path)
    log = pd.read_csv(path.with_suffix(".log.csv"))
    return {"epochs": meta["epoch"], "complete": meta.get("complete"),
            "train_seconds": round(float(log.seconds.sum()), 1),
            "trained_on": trained_on(meta["spec"]),
            "train_precision": meta["spec"].get("precision"),
            "train_loss_last_epoch": round(float(log.train_loss.iloc[-1]), 4),
            "train_top1_err_last_epoch": round(100 * float(log.train_top1_err.iloc[-1]), 2),
            "val_top1_err_last_epoch": round(100 * float(log.val_top1_err.iloc[-1]), 2),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "bytes": path.stat().st_size}


def publish_log(path: str | Path, folder: str | Path, seed: int) -> Path:
    """Copy a net's epoch log (``<checkpoint>.log.csv``: epochs, learning rates, errors, seconds) from
    runs/, which is not committed, to ``<folder>/seed<k>/``, beside the results that cite it."""
    src = Path(path).with_suffix(".log.csv")
    dest = Path(folder) / f"seed{seed}" / src.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(dest, src.read_text())
    return dest


def model_from_checkpoint(ckpt: dict, dropout: float = 0.5) -> VGG:
    model = VGG(dropout=dropout, **ckpt["hparams"])
    model.load_state_dict(ckpt["state_dict"])
    return model


def load_state_dict_into(model: VGG, state: dict, source: str) -> VGG:
    """Strict load of a plain state dict (e.g. torchvision's vgg16) with a one-line error."""
    if isinstance(state, dict) and "state_dict" in state and "format" in state:
        state = state["state_dict"]
    ours = model.state_dict()
    missing = sorted(set(ours) - set(state))
    extra = sorted(set(state) - set(ours))
    bad = [k for k in ours if k in state and tuple(state[k].shape) != tuple(ours[k].shape)]
    if missing or extra or bad:
        hint = ""
        tv = TORCHVISION_NAMES.get(model.config)
        if tv:
            hint = f" (config {model.config} matches torchvision.models.{tv} at width 1, crop 224)"
        first = (missing or extra or bad)[0]
        raise UserError(f"weights {source} do not fit config {model.config}: "
                        f"{len(missing)} missing, {len(extra)} unexpected, {len(bad)} mis-shaped keys "
                        f"(first: {first}){hint}")
    model.load_state_dict(state, strict=True)
    return model


def export_state_dict(ckpt: dict) -> dict:
    """A plain torchvision-compatible state dict (fp32 tensors, torchvision key names)."""
    return {k: v.detach().float().clone() for k, v in ckpt["state_dict"].items()}
