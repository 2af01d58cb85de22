"""Weight initialisation of Sect. 3.1.

* :func:`init_normal` -- the paper's random init.  The text says weights are drawn
  from "the normal distribution with the zero mean and 10^-2 variance" and biases
  are zero.  Variance 1e-2 would be std 0.1; the authors' Caffe/MatConvNet code and
  most reproductions use **std 0.01**, which is our default (``std`` switches it,
  ``--init-std`` on the command line).
* :func:`init_glorot` -- Glorot & Bengio (2010) uniform, biases zero; the paper's
  post-submission note says it trains the deep nets without pre-training.
* :func:`init_from` -- the paper's chain: a deeper net takes "the first four
  convolutional layers and the last three fully-connected layers" of a trained net A;
  the rest keeps its random init.
"""
from __future__ import annotations

import torch
from torch import nn

from .errors import UserError

PAPER_STD = 0.01


def _weighted(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@torch.no_grad()
def init_normal(model: nn.Module, std: float = PAPER_STD) -> nn.Module:
    for m in _weighted(model):
        nn.init.normal_(m.weight, 0.0, std)
        nn.init.zeros_(m.bias)
    return model


@torch.no_grad()
def init_glorot(model: nn.Module) -> nn.Module:
    for m in _weighted(model):
        nn.init.xavier_uniform_(m.weight)
        nn.init.zeros_(m.bias)
    return model


def conv_positions(model: nn.Module) -> list[tuple[int, int, nn.Conv2d]]:
    """(block, position in block, conv) for every conv of ``model.features``."""
    out, block, pos = [], 0, 0
    for m in model.features:
        if isinstance(m, nn.Conv2d):
            out.append((block, pos, m))
            pos += 1
        elif isinstance(m, nn.MaxPool2d):
            block, pos = block + 1, 0
    return out


@torch.no_grad()
def init_from(model: nn.Module, net_a: nn.Module, num_conv: int = 4) -> list[str]:
    """Copy net A's first ``num_conv`` conv layers and its three FC layers into ``model``.

    A's conv layers are matched to the deeper net's layer at the same (block, position
    in block): A's first four convs are conv1_1, conv2_1, conv3_1 and conv3_2, and
    those are the layers with the same shapes in B, C, D and E (index-wise matching
    would pair A's 64->128 conv with D's 64->64 one).  Returns the parameter names
    copied; raises :class:`UserError` when a shape differs.
    """
    theirs = {(b, p): m for b, p, m in conv_positions(net_a)[:num_conv]}
    ours = {(b, p): m for b, p, m in conv_positions(model)}
    pairs: list[tuple[str, nn.Module, nn.Module]] = []
    for key, src in theirs.items():
        if key not in ours:
            raise UserError(f"cannot initialise from net A: target has no conv at block {key[0] + 1} "
                            f"position {key[1] + 1}")
        pairs.append((f"conv{key[0] + 1}_{key[1] + 1}", ours[key], src))
    fc_ours = [m for m in model.classifier if isinstance(m, nn.Linear)]
    fc_theirs = [m for m in net_a.classifier if isinstance(m, nn.Linear)]
    pairs += [(f"fc{6 + i}", o, t) for i, (o, t) in enumerate(zip(fc_ours, fc_theirs))]
    for name, dst, src in pairs:
        if dst.weight.shape != src.weight.shape:
            raise UserError(f"cannot initialise from net A: layer {name} has shape {tuple(dst.weight.shape)} "
                            f"here but {tuple(src.weight.shape)} in the source checkpoint "
                            "(same width, crop size and classes needed)")
    copied = []
    names = {m: n for n, m in model.named_modules()}
    for _, dst, src in pairs:
        dst.weight.copy_(src.weight)
        dst.bias.copy_(src.bias)
        copied += [f"{names[dst]}.weight", f"{names[dst]}.bias"]
    return copied


def initialise(model: nn.Module, method: str, std: float = PAPER_STD) -> nn.Module:
    if method == "normal":
        return init_normal(model, std)
    if method == "glorot":
        return init_glorot(model)
    raise UserError(f"unknown init {method!r}; valid: normal, glorot (or --init-from CHECKPOINT)")
