"""scripts/make_preflight_data.py (`make preflight`'s data): ImageNet photographs at a shorter side
of 320 px, aspect ratio kept, in ten groups that the imagewoof preset reads; a source with too few
images exits 2 with one line and leaves nothing."""
import shutil
from pathlib import Path

import pytest
from conftest import run_cli
from PIL import Image

from vgg.data import list_images

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample" / "val"


def test_photographs_become_ten_groups_at_a_shorter_side_of_320_px(tmp_path):
    if not SAMPLE.is_dir():
        pytest.skip(f"no ImageNet photographs at {SAMPLE}")
    src = tmp_path / "src"
    originals = sorted(SAMPLE.glob("*/*.JPEG"))[:12]
    for f in originals:
        (src / f.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, src / f.parent.name / f.name)
    out = tmp_path / "preflight"
    r = run_cli(["scripts/make_preflight_data.py", "--src", str(src), "--out", str(out)])
    assert r.returncode == 0, r.stderr
    train, val = (list_images(out / s) for s in ("train", "val"))
    assert train[2] == val[2] == [f"group{k}" for k in range(10)]
    assert sorted(Path(p).name for p in train[0]) == sorted(Path(p).name for p in val[0]) == sorted(
        f.name for f in originals)
    assert sorted(train[1]) == sorted(list(range(10)) + [0, 1])  # image i in group i mod 10
    for f in originals:
        w, h = Image.open(f).size
        nw, nh = Image.open(next(out.glob(f"val/*/{f.name}"))).size
        assert min(nw, nh) == 320 and abs(nw / nh - w / h) < 0.01, (f.name, (w, h), (nw, nh))
    assert not out.with_name("preflight.tmp").exists()


def test_too_few_photographs_stop_with_one_line_and_leave_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    r = run_cli(["scripts/make_preflight_data.py", "--src", str(tmp_path / "empty"), "--out", str(tmp_path / "out")])
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "--src" in lines[0], r.stderr
    assert not (tmp_path / "out").exists()
