"""Batched evaluation: validation images grouped by their rescaled shape, several per forward pass.

The posteriors of vgg.evaluate.posteriors (batches of one shape, rare shapes padded onto one canvas
for dense evaluation, centre crops of every shape batched together, rows put back in image order) are
those of the one-image-per-forward path it replaced, on ImageNet photographs of mixed sizes, for the
in-memory loader, the stream loader and the GPU pipeline's decoding (run on CPU tensors), and under
two gloo processes. Tolerance: fp32 forward passes of another batch size sum in another order,
1e-5 on a posterior (measured below 1e-6); the GPU pipeline's rescale keeps floats where PIL rounds
to uint8 (1/255 a pixel), so against the PIL path it is held to the same argmax and 1e-2.
"""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vgg import gpu_data
from vgg.data import ColourStats, header_size, image_sizes, load_rgb, rescaled_size
from vgg.datasets import MemoryData, StreamData
from vgg.evaluate import _method_posteriors, posteriors
from vgg.model import VGG
from vgg.protocol import get_preset
from vgg.shape_groups import count_shapes, padded_batches, shape_groups

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample" / "val"
POSTERIOR_ATOL = 1e-5
QS = (40, 56)  # test scales in px: the net's crop is 32


@pytest.fixture(scope="module")
def photo_root(tmp_path_factory) -> Path:
    """3 classes x 6 ImageNet photographs of mixed sizes (val), the same files as train, one corrupt."""
    if not PHOTOS.is_dir():
        pytest.skip(f"no ImageNet photographs at {PHOTOS}")
    files = sorted(PHOTOS.glob("*/*.JPEG"))[::12][:18]
    root = tmp_path_factory.mktemp("photos")
    for k, f in enumerate(files):
        for split in ("train", "val"):
            d = root / split / f"c{k % 3}"
            d.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, d / f.name)
    (root / "val" / "c1" / "zz_corrupt.JPEG").write_bytes(b"not an image")
    return root


@pytest.fixture(scope="module")
def net() -> VGG:
    torch.manual_seed(0)
    return VGG("A", num_classes=3, width=1 / 16, crop_size=32).eval()


def one_image_posteriors(model, data, colour, method, qs, indices):
    """Today's reference: one image per forward pass (vgg.datasets' val_images one at a time)."""
    per_q = []
    for q in qs:
        ps, ys = [], []
        for i in indices:
            for x, y in data.val_images(q, indices=[int(i)], batch=1):
                ps.append(_method_posteriors(model, colour.normalise(x), method, False))
                ys.append(int(y[0]))
        per_q.append(torch.cat(ps))
    return torch.stack(per_q).mean(0).numpy(), np.array(ys)


def test_shape_groups_cover_every_image_once_in_batches_of_one_shape():
    rng = np.random.default_rng(0)
    sizes = np.stack([rng.choice([375, 333, 500, 281], 500), rng.choice([500, 375, 333], 500)], 1)
    sizes[7] = (-1, -1)  # an unreadable header: a batch of its own
    for q in (256, 384, 512):
        batches = shape_groups(sizes, q, max_pixels=2 ** 21)
        flat = np.concatenate(batches)
        assert sorted(flat.tolist()) == list(range(500))
        for b in batches:
            shapes = {rescaled_size(h, w, q) if h > 0 else None for h, w in sizes[b].tolist()}
            assert len(shapes) == 1
            (shape,) = shapes
            assert shape is None or len(b) == 1 or len(b) * shape[0] * shape[1] <= 2 ** 21
            assert np.all(np.diff(b) > 0)
        independent = {rescaled_size(h, w, q) for h, w in sizes.tolist() if h > 0}
        assert count_shapes(sizes, q) == len(independent) <= 12


def test_header_sizes_are_the_decoded_upright_sizes(photo_root, tmp_path):
    files = sorted(str(p) for p in (photo_root / "val").glob("*/*.JPEG") if "corrupt" not in p.name)
    base = Image.open(files[0]).convert("RGB")
    for o in (1, 6, 8):  # 6 and 8 rotate: height and width swap
        exif = Image.Exif()
        exif[0x0112] = o
        files.append(str(tmp_path / f"o{o}.jpg"))
        base.save(files[-1], "JPEG", exif=exif.tobytes())
    sizes = image_sizes(files, tmp_path / "cache")
    assert [tuple(s) for s in sizes.tolist()] == [load_rgb(f).size[::-1] for f in files]
    assert np.array_equal(image_sizes(files, tmp_path / "cache"), sizes)  # from the cache
    assert header_size(str(photo_root / "val" / "c1" / "zz_corrupt.JPEG")) == (-1, -1)


@pytest.mark.parametrize("loader", ["stream", "memory"])
@pytest.mark.parametrize("method", ["dense", "multi-crop", "center-crop"])
def test_batched_posteriors_are_the_one_image_posteriors(photo_root, net, loader, method):
    preset = get_preset("tiny", crop=32, loader=loader, workers=0, max_per_class=None)
    data = (StreamData if loader == "stream" else MemoryData)(photo_root, preset)
    colour = ColourStats.from_dict(data.colour.as_dict())
    indices = np.arange(len(data.val))[::-1]  # any order: rows come back in this order
    p, y = posteriors(net, data, colour, method, list(QS), amp=False, device=torch.device("cpu"), indices=indices)
    files = data.val_files()[0]  # the stream loader indexes the files, the memory loader what decoded
    readable = [i for i in indices if loader == "memory" or load_rgb(files[i]) is not None]
    ref_p, ref_y = one_image_posteriors(net, data, colour, method, QS, readable)
    assert len(readable) == 18 and np.array_equal(y, ref_y)
    assert np.abs(p - ref_p).max() <= POSTERIOR_ATOL
    sizes = image_sizes(files)
    assert len(shape_groups(sizes, QS[0])) < len(sizes) / 2  # several images per forward pass
    if method == "dense":  # and rare shapes share padded batches: fewer passes still
        padded = list(padded_batches(data.val_batches(QS[0], indices=indices)))
        assert sum(s is not None for *_, s in padded) >= 1 and len(padded) < len(shape_groups(sizes, QS[0]))


def test_the_gpu_pipelines_evaluation_batches_match_the_stream_loaders(photo_root, net, monkeypatch):
    """GPU decoding (libjpeg-turbo on CPU tensors here, nvjpeg on CUDA) and the device rescale give
    the stream loader's images to PIL's uint8 rounding, and the same predictions."""
    preset = get_preset("tiny", crop=32, loader="stream", workers=0, max_per_class=None)
    stream = StreamData(photo_root, preset)
    gpu = gpu_data.GPUStreamData(stream, "cpu", None)
    pil = {int(i): x for x, _, pos in stream.val_batches(QS[1]) for i, x in zip(pos, x)}
    ours = {int(i): x for x, _, pos in gpu.val_batches(QS[1]) for i, x in zip(pos, x)}
    assert pil.keys() == ours.keys() and len(ours) == 18
    assert max((pil[i] - ours[i]).abs().max().item() for i in ours) <= 1 / 255 + 1e-6
    colour = ColourStats.from_dict(stream.colour.as_dict())
    p_pil, y_pil = posteriors(net, stream, colour, "dense", list(QS), amp=False, device=torch.device("cpu"))
    p_gpu, y_gpu = posteriors(net, gpu, colour, "dense", list(QS), amp=False, device=torch.device("cpu"))
    assert np.array_equal(y_pil, y_gpu) and np.abs(p_pil - p_gpu).max() < 1e-2
    assert np.array_equal(p_pil.argmax(1), p_gpu.argmax(1))
    gpu.pipeline = "stream"  # training chose the stream loader: evaluation follows it
    p_stream, _ = posteriors(net, gpu, colour, "dense", list(QS), amp=False, device=torch.device("cpu"))
    assert np.array_equal(p_stream, p_pil)


def test_two_processes_score_their_slices_in_batches_like_one(photo_root, tmp_path):
    """Under two gloo processes each scores its slice in shape-grouped batches; the gathered posteriors
    are, row for row, those of one process (tests/_ddp_train.py photographs())."""
    import _ddp_train
    from test_distributed import run_ranks
    run_ranks(["photos", str(photo_root), str(tmp_path / "runs"), str(tmp_path / "two.pt")], tmp_path / "work")
    two = torch.load(tmp_path / "two.pt", weights_only=False)
    one = _ddp_train.photographs(str(photo_root))
    for method in ("dense", "multi-crop"):
        (p1, y1), (p2, y2) = one[method], two[method]
        assert len(y1) == 18 and np.array_equal(y1, y2)
        assert np.abs(p1 - p2).max() <= POSTERIOR_ATOL


def test_the_input_modules_import_one_way():
    """vgg.data <- vgg.datasets <- vgg.gpu_data <- vgg.loaders: no module imports one after it, not
    even inside a function (the circle datasets <-> gpu_data is gone)."""
    import ast
    order = ["data", "datasets", "gpu_data", "loaders"]
    root = Path(__file__).resolve().parents[1] / "vgg"
    for k, name in enumerate(order):
        tree = ast.parse((root / f"{name}.py").read_text())
        imported = {node.module.lstrip(".").removeprefix("vgg.") for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module}
        assert not imported & set(order[k + 1:]), (name, imported & set(order[k + 1:]))
