"""Reading and checking checkpoints and plain state dicts."""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from .configs import TORCHVISION_NAMES, check_config
from .errors import UserError
from .model import VGG

FORMAT = "vgg-repro/1"


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
    ckpt = load(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path} is not a vgg-repro training checkpoint (use --weights for a plain state dict)")
    if config is not None and ckpt["hparams"]["config"] != check_config(config):
        raise UserError(f"checkpoint {path} is of config {ckpt['hparams']['config']}, not {check_config(config)}")
    return ckpt


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
