"""Table 1 of the paper as data.

Each configuration is written in the paper's own notation: blocks separated by
``|`` (a max-pool follows every block), layers by spaces.  ``conv3-64`` is a 3x3
convolution with 64 output channels (stride 1, padding 1, followed by ReLU),
``conv1-256`` a 1x1 convolution (padding 0), ``conv5-64`` a 5x5 convolution
(padding 2) and ``LRN`` AlexNet's local response normalisation.

``B-5x5`` is the paper's shallow control (Sect. 4.1): net B with each pair of 3x3
convolutions replaced by a single 5x5 convolution of the same receptive field.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import UserError

CONFIGS: dict[str, str] = {
    "A": "conv3-64 | conv3-128 | conv3-256 conv3-256 | conv3-512 conv3-512 | conv3-512 conv3-512",
    "A-LRN": "conv3-64 LRN | conv3-128 | conv3-256 conv3-256 | conv3-512 conv3-512 | conv3-512 conv3-512",
    "B": "conv3-64 conv3-64 | conv3-128 conv3-128 | conv3-256 conv3-256 | conv3-512 conv3-512 | conv3-512 conv3-512",
    "B-5x5": "conv5-64 | conv5-128 | conv5-256 | conv5-512 | conv5-512",
    "C": "conv3-64 conv3-64 | conv3-128 conv3-128 | conv3-256 conv3-256 conv1-256"
    " | conv3-512 conv3-512 conv1-512 | conv3-512 conv3-512 conv1-512",
    "D": "conv3-64 conv3-64 | conv3-128 conv3-128 | conv3-256 conv3-256 conv3-256"
    " | conv3-512 conv3-512 conv3-512 | conv3-512 conv3-512 conv3-512",
    "E": "conv3-64 conv3-64 | conv3-128 conv3-128 | conv3-256 conv3-256 conv3-256 conv3-256"
    " | conv3-512 conv3-512 conv3-512 conv3-512 | conv3-512 conv3-512 conv3-512 conv3-512",
}

#: Controls that are not in the paper, used by studies only (never in Tables 1-7).
#: ``A-LRN0`` is A-LRN with the sum term of LRN removed (alpha = 0): conv1's output divided by the
#: constant k^beta = 2^0.75 = 1.68. It tells a gain from normalisation apart from a gain from rescaling.
CONTROLS: dict[str, str] = {
    "A-LRN0": "conv3-64 LRN0 | conv3-128 | conv3-256 conv3-256 | conv3-512 conv3-512 | conv3-512 conv3-512",
}

#: The configurations of the paper's Table 1 (B-5x5 is only named in the text).
TABLE1 = ["A", "A-LRN", "B", "C", "D", "E"]

#: torchvision builders whose state dicts share our keys.
TORCHVISION_NAMES = {"A": "vgg11", "B": "vgg13", "D": "vgg16", "E": "vgg19"}

#: AlexNet's LRN as the paper uses it: b = a / (k + alpha * sum a^2)^beta over n channels.
LRN_PARAMS = {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}


@dataclass(frozen=True)
class Conv:
    kernel: int
    channels: int

    @property
    def padding(self) -> int:
        return self.kernel // 2


@dataclass(frozen=True)
class LRN:
    sum_term: bool = True  # False: alpha = 0, a division by the constant k^beta (the A-LRN0 control)


def check_config(name: str) -> str:
    """Return the canonical config name or raise a UserError listing the valid ones."""
    for key in (*CONFIGS, *CONTROLS):
        if key.lower() == str(name).lower():
            return key
    raise UserError(f"unknown config {name!r}; valid configs: {', '.join(CONFIGS)}")


def blocks(name: str) -> list[list[Conv | LRN]]:
    """Parse a configuration into blocks of layers (a max-pool ends each block)."""
    out = []
    name = check_config(name)
    for block in CONFIGS.get(name, CONTROLS.get(name, "")).split("|"):
        layers: list[Conv | LRN] = []
        for token in block.split():
            if token in ("LRN", "LRN0"):
                layers.append(LRN(sum_term=token == "LRN"))
            else:
                kind, channels = token.split("-")
                layers.append(Conv(int(kind.removeprefix("conv")), int(channels)))
        out.append(layers)
    return out
