"""scripts/make_imagewoof.py on a tiny archive in the official imagewoof2-320 layout (real ImageNet
photographs under Imagewoof's ten wnids, and the archive's own noisy_imagewoof.csv): the tree, the
files untouched, SOURCE.json; offline, a missing archive or a file list that does not match exit 2
with one line and leave no folder behind."""
import io
import tarfile
from pathlib import Path

import pytest
from conftest import run_cli

from vgg.data import data_root, list_images

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample" / "train"
WNIDS = ("n02086240", "n02087394", "n02088364", "n02089973", "n02093754", "n02096294", "n02099601",
         "n02105641", "n02111889", "n02115641")


def add(tar, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def archive(path: Path, drop_one: bool = False) -> dict[str, bytes]:
    """imagewoof2-320/{train,val}/<wnid>/*.JPEG + noisy_imagewoof.csv: 2 train and 1 val file a class."""
    if not SAMPLE.is_dir():
        pytest.skip(f"no ImageNet photographs at {SAMPLE}")
    photos = [f.read_bytes() for f in sorted(SAMPLE.glob("*/*.JPEG"))[:30]]
    files = {}
    for k, w in enumerate(WNIDS):
        for split, n in (("train", 2), ("val", 1)):
            for j in range(n):
                files[f"{split}/{w}/{w}_{j}.JPEG"] = photos[(3 * k + j + (2 if split == "val" else 0)) % 30]
    rows = ["path,noisy_labels_0,noisy_labels_1,noisy_labels_5,noisy_labels_25,noisy_labels_50,is_valid"]
    rows += [f"{p},{p.split('/')[1]},,,,,{p.startswith('val')}" for p in files]
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        add(tar, "imagewoof2-320/noisy_imagewoof.csv", "\n".join(rows).encode())
        for name, data in list(files.items())[1 if drop_one else 0:]:
            add(tar, f"imagewoof2-320/{name}", data)
    return files


def test_the_archive_becomes_the_image_folder_tree_untouched(tmp_path):
    files = archive(tmp_path / "imagewoof2-320.tgz")
    out = tmp_path / "data" / "imagewoof"
    r = run_cli(["scripts/make_imagewoof.py", "--archive", str(tmp_path / "imagewoof2-320.tgz"), "--out", str(out)])
    assert r.returncode == 0, r.stderr
    assert "train: 20 images, val: 10 images" in r.stdout
    root = data_root(out)
    paths, labels, classes = list_images(root / "val")
    assert classes == list(WNIDS) and len(paths) == 10
    for name, data in files.items():
        assert (out / name).read_bytes() == data  # no resize, no re-encode
    assert '"sha256": "' in (out / "SOURCE.json").read_text()
    assert not list(tmp_path.glob("data/*.partial"))
    again = run_cli(["scripts/make_imagewoof.py", "--archive", str(tmp_path / "none.tgz"), "--out", str(out)])
    assert again.returncode == 0 and "already made" in again.stdout


@pytest.mark.parametrize("case", ["offline", "missing archive", "a listed file missing"])
def test_failures_say_one_line_exit_2_and_leave_nothing(tmp_path, case):
    out = tmp_path / "data" / "imagewoof"
    args = ["scripts/make_imagewoof.py", "--out", str(out), "--download-dir", str(tmp_path / "data" / "dl")]
    env = None
    if case == "offline":  # no route to the download: a proxy on a closed local port
        env = {"https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    elif case == "missing archive":
        args += ["--archive", str(tmp_path / "imagewoof2-320.tgz")]
    else:
        archive(tmp_path / "imagewoof2-320.tgz", drop_one=True)
        args += ["--archive", str(tmp_path / "imagewoof2-320.tgz")]
    r = run_cli(args, env=env)
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "--archive" in lines[0], r.stderr
    assert not (tmp_path / "data").exists()
