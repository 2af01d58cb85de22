"""Exit 0 if this interpreter has torch and torchvision at the versions constraints.txt pins
(so `make install` can reuse it instead of building a 5 GB virtualenv), else 1."""
import re
import sys
from pathlib import Path

pins = dict(re.findall(r"^(torch|torchvision)==(\S+)$", (Path(__file__).parents[1] / "constraints.txt").read_text(),
                       re.M))
try:
    import torch
    import torchvision
except ImportError:
    sys.exit(1)
have = {"torch": torch.__version__.split("+")[0], "torchvision": torchvision.__version__.split("+")[0]}
sys.exit(0 if all(have[k] == v for k, v in pins.items()) else 1)
