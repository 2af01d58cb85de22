"""Datasets users bring (ImageFolder trees we do not ship): each case trains and evaluates, or
stops with one clear line and exit 2 with nothing half-written.  Every tree is built with PIL."""
import errno
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vgg.__main__ import main
from vgg.data import load_memory_split, load_rgb, random_crops
from vgg.errors import UserError

rng = np.random.default_rng(0)


def picture(size, mode="RGB") -> Image.Image:
    w, h = size
    a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    im = Image.fromarray(a, "RGB")
    return im.convert(mode) if mode != "RGB" else im


def tree(root: Path, spec: dict) -> Path:
    """spec: {split: {class: [(filename, size, mode), ...]}}."""
    for split, classes in spec.items():
        for cls, files in classes.items():
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for name, size, mode in files:
                picture(size, mode).save(root / split / cls / name)
    return root


def simple(n, size=(40, 36), ext="jpg", mode="RGB"):
    return [(f"{i}.{ext}", size, mode) for i in range(n)]


def run(args, capsys) -> tuple[int, str]:
    try:
        code = main(args)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def train_and_eval(data: Path, tmp_path: Path, capsys, extra=()) -> str:
    out = tmp_path / "net.pt"
    code, err = run(["train", "--config", "A", "--preset", "tiny", "--data", str(data), "--epochs", "1",
                     "--out", str(out), "--no-progress", *extra], capsys)
    assert code == 0, err[-2000:]
    for method in ("dense", "multi-crop"):
        code, err = run(["eval", "--checkpoint", str(out), "--data", str(data), "--method", method,
                         "--scales", "256,512", *extra], capsys)
        assert code == 0, err[-2000:]
    return err


def one_line_exit2(code, err, needle, folder: Path):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and needle in lines[0], (code, err)
    assert not [p for p in folder.rglob("*.pt")] and not [p for p in folder.rglob("*.tmp")]


def test_mixed_sizes_aspect_ratios_and_modes_train_and_evaluate(tmp_path, capsys):
    files = [("wide.jpg", (90, 40), "RGB"), ("tall.jpg", (30, 70), "RGB"), ("grey.jpg", (50, 50), "L"),
             ("cmyk.jpg", (64, 48), "CMYK"), ("palette.png", (45, 60), "P"), ("alpha.png", (52, 40), "RGBA"),
             ("small.jpg", (12, 9), "RGB"), ("upper.JPG", (33, 41), "RGB"), ("upper2.PNG", (40, 40), "RGB")]
    data = tree(tmp_path / "d", {"train": {"cat": files, "dog": files}, "val": {"cat": files, "dog": files}})
    train_and_eval(data, tmp_path, capsys, extra=("--batch", "8"))
    split = load_memory_split(data / "train")
    assert split.sizes is not None and len(split) == 2 * len(files)
    assert split.images.dtype == torch.uint8


def test_a_changed_dataset_replaces_its_decoded_cache_and_keeps_other_subsets(tmp_path):
    """A split whose files changed (one rewritten: another byte count) is decoded again, and its old
    cache -- a whole decoded split, 1.4 GB for Imagenette's train -- is deleted; a cached subset of the
    same folder (another max_per_class) and another folder's cache are kept. A copy of the same files
    (new mtimes only, as a folder mounted anew each session has) keeps its cache."""
    import os
    data = tree(tmp_path / "d", {"train": {"cat": simple(3), "dog": simple(3)}})
    other = tree(tmp_path / "e", {"train": {"cat": simple(2), "dog": simple(2)}})
    cache = tmp_path / "cache"
    load_memory_split(data / "train", cache_dir=cache)
    load_memory_split(data / "train", max_per_class=2, cache_dir=cache)
    load_memory_split(other / "train", cache_dir=cache)
    before = sorted(p.name for p in cache.glob("*.npz"))
    assert len(before) == 3
    load_memory_split(data / "train", cache_dir=cache)  # unchanged: the cache is read, nothing removed
    assert sorted(p.name for p in cache.glob("*.npz")) == before
    for f in (data / "train").rglob("*.jpg"):  # new mtimes, same files: still the same cache
        os.utime(f, (1e9, 1e9))
    stamps = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.npz")}
    load_memory_split(data / "train", cache_dir=cache)
    assert {p.name: p.stat().st_mtime_ns for p in cache.glob("*.npz")} == stamps
    changed = next((data / "train" / "cat").iterdir())
    size = changed.stat().st_size
    picture((44, 36), "RGB").save(changed)
    assert changed.stat().st_size != size
    split = load_memory_split(data / "train", cache_dir=cache)
    after = sorted(p.name for p in cache.glob("*.npz"))
    assert len(split) == 6 and len(after) == 3 and len(set(after) - set(before)) == 1
    assert not [p for p in cache.iterdir() if p.suffix == ".lock" and not p.with_suffix("").exists()]
    # a cache of the same files under the name used before the family (upgrade): replaced too
    new, = set(after) - set(before)
    split_name, _, key, size = new.removesuffix(".npz").split("-")
    legacy = cache / f"{split_name}-{key}-{size}.npz"
    (cache / new).rename(legacy)
    load_memory_split(data / "train", cache_dir=cache)
    assert not legacy.exists() and (cache / new).exists()


@pytest.mark.parametrize("loader", ["memory", "stream"])
def test_the_val_images_identity_ignores_mtimes_and_sees_a_rewritten_file(tmp_path, loader):
    """The val images' part of every cached posterior's key: a copy of the same files (new mtimes only)
    keeps it, so no net is evaluated again; a rewritten file changes it."""
    import os

    from vgg.loaders import load_datasets
    from vgg.protocol import get_preset
    data = tree(tmp_path / "d", {s: {"cat": simple(2), "dog": simple(2)} for s in ("train", "val")})
    preset = get_preset("tiny", loader=loader)
    key = load_datasets(data, preset).identity()
    for f in data.rglob("*.jpg"):
        os.utime(f, (1e9, 1e9))
    assert load_datasets(data, preset).identity() == key
    picture((44, 36), "RGB").save(data / "val" / "dog" / "1.jpg")
    assert load_datasets(data, preset).identity() != key


def test_a_crop_from_the_footprint_equals_the_crop_from_the_whole_image():
    """Images of mixed sizes (a list) sample only their window's footprint; the same draws on the whole
    image (a batch tensor) give the same crops, at every scale, position and flip."""
    g = torch.Generator().manual_seed(0)
    for h, w in ((30, 50), (50, 30), (37, 37)):
        imgs = torch.randint(0, 256, (16, 3, h, w), dtype=torch.uint8, generator=g)
        for s in (30, 41, 64):
            scales = torch.full((16,), s)
            whole = random_crops(imgs, scales, 24, torch.Generator().manual_seed(s))
            cut = random_crops(list(imgs), scales, 24, torch.Generator().manual_seed(s))
            assert torch.allclose(whole, cut, atol=1e-5), (h, w, s, (whole - cut).abs().max())


def test_decoding_normalises_modes_and_exif_orientation(tmp_path):
    im = picture((40, 20))
    exif = im.getexif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees to show
    im.save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    assert load_rgb(str(tmp_path / "rotated.jpg")).size == (20, 40)
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    assert load_rgb(str(tmp_path / "clear.png")).getpixel((0, 0)) == (255, 255, 255)  # transparent -> white
    for mode in ("L", "CMYK", "P", "1"):
        picture((8, 8), mode).save(tmp_path / f"m.{'png' if mode in ('P', '1') else 'jpg'}")
        assert load_rgb(str(tmp_path / f"m.{'png' if mode in ('P', '1') else 'jpg'}")).mode == "RGB"


def test_class_names_with_spaces_and_non_ascii_an_empty_class_and_a_symlinked_class(tmp_path, capsys):
    data = tree(tmp_path / "d", {"train": {"golden retriever": simple(20), "café crème": simple(20)},
                                 "val": {"golden retriever": simple(4), "café crème": simple(4)}})
    (data / "train" / "zz empty").mkdir()
    outside = tree(tmp_path / "elsewhere", {"x": {"linked": simple(20)}})
    (data / "train" / "linked").symlink_to(outside / "x" / "linked", target_is_directory=True)
    train_and_eval(data, tmp_path, capsys)
    ck = torch.load(tmp_path / "net.pt", weights_only=False)
    assert ck["classes"] == ["café crème", "golden retriever", "linked", "zz empty"]
    assert ck["hparams"]["num_classes"] == 4


def test_val_without_some_train_classes_works_and_an_unknown_val_class_stops(tmp_path, capsys):
    data = tree(tmp_path / "d", {"train": {"a": simple(20), "b": simple(20), "c": simple(20)},
                                 "val": {"a": simple(4), "b": simple(4)}})
    train_and_eval(data, tmp_path, capsys)
    bad = tree(tmp_path / "bad", {"train": {"a": simple(20), "b": simple(20)},
                                  "val": {"a": simple(4), "zebra": simple(4)}})
    out = tmp_path / "o"
    out.mkdir()
    code, err = run(["train", "--config", "A", "--preset", "tiny", "--data", str(bad), "--epochs", "1",
                     "--out", str(out / "x.pt"), "--no-progress"], capsys)
    one_line_exit2(code, err, "has class folder 'zebra'", out)


def test_many_classes_with_a_handful_of_images_each(tmp_path, capsys):
    data = tree(tmp_path / "d", {"train": {f"c{i:02d}": simple(3) for i in range(40)},
                                 "val": {f"c{i:02d}": simple(1) for i in range(40)}})
    train_and_eval(data, tmp_path, capsys)


def test_fewer_images_than_a_batch_stops_with_the_fix(tmp_path, capsys):
    data = tree(tmp_path / "d", {"train": {"a": simple(5), "b": simple(5)}, "val": {"a": simple(2)}})
    out = tmp_path / "o"
    out.mkdir()
    code, err = run(["train", "--config", "A", "--preset", "tiny", "--data", str(data), "--epochs", "1",
                     "--out", str(out / "x.pt"), "--no-progress"], capsys)
    one_line_exit2(code, err, "fewer than one batch of 32: pass a smaller --batch", out)
    train_and_eval(data, tmp_path, capsys, extra=("--batch", "4"))


def test_stream_loader_on_mixed_sizes(tmp_path, capsys):
    data = tree(tmp_path / "d", {"train": {"a": simple(20, (50, 40)) + simple(20, (30, 60), "png")},
                                 "val": {"a": simple(3, (70, 35))}})
    train_and_eval(data, tmp_path, capsys, extra=("--loader", "stream", "--workers", "0", "--batch", "8"))


def test_no_dataset_names_make_data_and_vgg_data(tmp_path, monkeypatch):
    from vgg.data import data_root
    monkeypatch.delenv("VGG_DATA", raising=False)
    for path in (None, tmp_path / "data" / "cifar10"):
        with pytest.raises(UserError) as e:
            data_root(path)
        assert "make data" in str(e.value) and "VGG_DATA" in str(e.value)


def test_main_job_without_data_stops_in_one_line(tmp_path):
    """`make table3` on a fresh clone with no dataset: one line naming `make data` and VGG_DATA."""
    root = Path(__file__).resolve().parents[1]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "VGG_DATA": str(tmp_path / "data" / "cifar10")}
    r = subprocess.run(["make", "-s", "-C", str(root), "table3", f"PYTHON={__import__('sys').executable}",
                        f"VGG_DATA={tmp_path / 'nothing'}"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "make data" in errors[0] and "VGG_DATA" in errors[0], r.stderr


def test_workers_never_exceed_the_usable_cpus():
    from vgg.protocol import get_preset
    from vgg.runtime import usable_cpus
    assert get_preset("paper").workers == min(8, usable_cpus())
    assert get_preset("paper", workers=3).workers == 3
    with pytest.raises(UserError):
        get_preset("paper", workers=-1)
    with pytest.raises(UserError):
        get_preset("paper", loader="disk")


@pytest.mark.parametrize("writer", ["torch", "npz", "text"])
def test_disk_full_keeps_the_previous_file_and_says_so(tmp_path, monkeypatch, writer):
    from vgg import io
    path = tmp_path / f"out.{writer}"
    write = {"torch": lambda v: io.atomic_torch_save({"v": v}, path),
             "npz": lambda v: io.atomic_save_npz(path, v=np.array([v])),
             "text": lambda v: io.atomic_write_text(path, str(v))}[writer]
    write(1)
    before = path.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(io.os, "fsync", full)
    with pytest.raises(UserError) as e:
        write(2)
    assert "No space left on device" in str(e.value) and "previous file is kept" in str(e.value)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left
