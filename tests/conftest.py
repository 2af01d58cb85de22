import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data" / "cifar10"
torch.set_num_threads(2)


def real_data_root() -> Path:
    """$VGG_DATA if it holds a dataset, else ../shared/data/cifar10 (CI has it)."""
    for root in (Path(os.environ.get("VGG_DATA", SHARED)), SHARED):
        if (root / "train").is_dir():
            return root
    pytest.skip(f"no real dataset at $VGG_DATA or {SHARED}")


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """A small ImageFolder tree of real CIFAR-10 files: 3 classes x 24 train, 3 x 8 val."""
    src = real_data_root()
    dst = tmp_path_factory.mktemp("cifar_small")
    for split, n in (("train", 24), ("val", 8)):
        for cls in sorted(p.name for p in (src / split).iterdir())[:3]:
            (dst / split / cls).mkdir(parents=True)
            for f in sorted((src / split / cls).iterdir())[:n]:
                shutil.copy(f, dst / split / cls / f.name)
    return dst


def load_script(relative: str):
    """A script of the repository (``experiments/summary.py``, ``scripts/make_imagenette.py``) as a
    module, loaded anew on each call."""
    import importlib.util
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_cli(args, cwd=ROOT, env=None):
    import subprocess
    e = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=e, capture_output=True, text=True, timeout=300)
