"""scripts/make_imagenet.py on tiny archives in ILSVRC-2012's official layout (a train tar of one tar
per class, a flat val tar, the devkit's meta.mat and validation ground truth), made from real
ImageNet photographs: the ImageFolder tree and its labels; the mistakes a user can make exit 2 with
one line and leave nothing behind."""
import io
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
from conftest import run_cli

from vgg.data import data_root, list_images

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample" / "train"
# val image k (1-based, sorted by name) belongs to ILSVRC2012_ID VAL_IDS[k - 1]
VAL_IDS = [2, 1, 3, 3, 1]


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_archives(folder: Path) -> list[str]:
    """The three archives with 3 classes (2 train images each) and 5 val images; the class wnids."""
    if not SAMPLE.is_dir():
        pytest.skip(f"no ImageNet photographs at {SAMPLE}")
    wnids = sorted(p.name for p in SAMPLE.iterdir())[:3]
    photo = {w: next((SAMPLE / w).glob("*.JPEG")).read_bytes() for w in wnids}
    folder.mkdir(parents=True)
    with tarfile.open(folder / "ILSVRC2012_img_train.tar", "w") as train:
        for w in wnids:
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as t:
                for k in (1, 2):
                    add_bytes(t, f"{w}_{k}.JPEG", photo[w])
            add_bytes(train, f"{w}.tar", inner.getvalue())
    with tarfile.open(folder / "ILSVRC2012_img_val.tar", "w") as val:
        for k, cid in enumerate(VAL_IDS, 1):
            add_bytes(val, f"ILSVRC2012_val_{k:08d}.JPEG", photo[wnids[cid - 1]])
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "wordnet_height", "num_train_images"]
    synsets = [(i + 1, w, f"class {w}, synonym", "a gloss", 0, 0, 2) for i, w in enumerate(wnids)]
    synsets.append((1001, "n00001740", "entity", "a higher node: not a class", 3, 18, 0))
    meta = io.BytesIO()
    sio.savemat(meta, {"synsets": np.array(synsets, dtype=[(f, "O") for f in fields]).reshape(-1, 1)})
    with tarfile.open(folder / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as devkit:
        add_bytes(devkit, "ILSVRC2012_devkit_t12/data/meta.mat", meta.getvalue())
        add_bytes(devkit, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt",
                  "".join(f"{c}\n" for c in VAL_IDS).encode())
    return wnids


def test_archives_become_the_image_folder_tree_with_the_devkits_labels(tmp_path):
    archives, out = tmp_path / "archives", tmp_path / "data" / "imagenet"
    wnids = make_archives(archives)
    before = {p.name: p.stat().st_size for p in archives.iterdir()}
    r = run_cli(["scripts/make_imagenet.py", "--archives", str(archives), "--out", str(out), "--skip-md5"])
    assert r.returncode == 0, r.stderr
    assert "train: 6 images in 3 classes" in r.stdout and "val: 5 images in 3 classes" in r.stdout
    assert sorted(p.name for p in out.iterdir()) == ["meta.bin", "train", "val"]  # no links, no .partial left
    assert {p.name: p.stat().st_size for p in archives.iterdir()} == before  # the archives are untouched
    root = data_root(out)
    paths, labels, classes = list_images(root / "train")
    assert classes == wnids and sorted(Path(p).name for p in paths) == sorted(f"{w}_{k}.JPEG" for w in wnids
                                                                           for k in (1, 2))
    for p, y in zip(paths, labels):
        assert Path(p).parent.name == wnids[y]
        assert Path(p).read_bytes() == next((SAMPLE / wnids[y]).glob("*.JPEG")).read_bytes()
    paths, labels, _ = list_images(root / "val", classes)
    got = {Path(p).name: wnids[y] for p, y in zip(paths, labels)}
    assert got == {f"ILSVRC2012_val_{k:08d}.JPEG": wnids[c - 1] for k, c in enumerate(VAL_IDS, 1)}
    for name, w in got.items():  # each val file holds the photograph of its ground-truth class
        assert (out / "val" / w / name).read_bytes() == next((SAMPLE / w).glob("*.JPEG")).read_bytes()
    r = run_cli(["scripts/make_imagenet.py", "--archives", str(archives), "--out", str(out)])
    assert r.returncode == 0 and "already prepared" in r.stdout


def one_line_exit_2(r, *words):
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_a_missing_archive_a_wrong_folder_or_a_bad_checksum_exit_2_and_leave_nothing(tmp_path):
    archives, out = tmp_path / "archives", tmp_path / "new" / "imagenet"
    make_archives(archives)
    cmd = ["scripts/make_imagenet.py", "--archives", str(archives), "--out", str(out)]
    one_line_exit_2(run_cli(cmd), "ILSVRC2012_devkit_t12.tar.gz", "MD5", "--skip-md5")  # tiny: not the MD5s
    assert not (tmp_path / "new").exists()
    shutil.move(archives / "ILSVRC2012_img_val.tar", tmp_path / "elsewhere.tar")
    one_line_exit_2(run_cli([*cmd, "--skip-md5"]), "ILSVRC2012_img_val.tar not in", "--archives", "image-net.org")
    one_line_exit_2(run_cli(["scripts/make_imagenet.py", "--archives", str(tmp_path / "nowhere"), "--out", str(out)]),
                    "not found", "--archives")
    one_line_exit_2(run_cli(["scripts/make_imagenet.py", "--archives", str(tmp_path / "elsewhere.tar"), "--out",
                             str(out)]), "is a file")
    (archives / "ILSVRC2012_img_val.tar").write_bytes(b"half a download")
    one_line_exit_2(run_cli([*cmd, "--skip-md5"]), "not a readable tar", "download it again")
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in archives.iterdir()) == sorted(
        ["ILSVRC2012_devkit_t12.tar.gz", "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"])
