"""The in-memory loader on photographs of mixed sizes (Imagewoof's case): the images are stored back
to back (memory = their own pixels, not a canvas of the largest), each exactly as decoded and shrunk,
a crop of an image of its own size is a window of that image rescaled alone, the colour statistics are those of every
pixel, and a split the memory cannot hold stops with one line before anything is decoded."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vgg import data as vdata
from vgg.data import ColourStats, load_memory_split, load_rgb, random_crops, stored_size
from vgg.errors import UserError

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample" / "val"
MAX_SIDE = 96


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    if not PHOTOS.is_dir():
        pytest.skip(f"no ImageNet photographs at {PHOTOS}")
    root = tmp_path_factory.mktemp("mixed") / "train"
    for k, f in enumerate(sorted(PHOTOS.glob("*/*.JPEG"))[::10][:20]):
        (root / f"c{k % 2}").mkdir(parents=True, exist_ok=True)
        shutil.copy(f, root / f"c{k % 2}" / f.name)
    return root


def expected(path) -> torch.Tensor:
    img = load_rgb(str(path))
    h, w = stored_size(img.height, img.width, MAX_SIDE)
    if (h, w) != (img.height, img.width):
        img = img.resize((w, h), Image.BILINEAR)
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)


def test_mixed_sizes_are_stored_back_to_back_as_decoded(photos, tmp_path):
    split = load_memory_split(photos, max_side=MAX_SIDE, cache_dir=tmp_path / "cache")
    files = sorted(photos.glob("*/*.JPEG"))
    assert len(split) == 20 and split.images.dim() == 1
    sizes = split.sizes.tolist()
    assert len({tuple(s) for s in sizes}) > 3 and min(min(s) for s in sizes) == MAX_SIDE
    assert split.images.numel() == sum(3 * h * w for h, w in sizes)  # no canvas
    canvas = len(files) * 3 * max(h for h, _ in sizes) * max(w for _, w in sizes)
    assert split.images.numel() < canvas
    for i, f in enumerate(files):
        assert torch.equal(split.image(i), expected(f)), f.name
    cached = load_memory_split(photos, max_side=MAX_SIDE, cache_dir=tmp_path / "cache")
    assert torch.equal(cached.images, split.images) and torch.equal(cached.offsets, split.offsets)


def test_crops_of_mixed_sizes_are_windows_of_each_image_rescaled_alone(photos):
    """Each crop of a batch of mixed sizes (only its window's footprint cut out and converted) is, within
    float rounding, a crop x crop window of its image rescaled on its own to shorter side S (bilinear,
    float64), mirrored where flipped; and the cut footprint holds every pixel a bilinear tap reads."""
    split = load_memory_split(photos, max_side=MAX_SIDE)
    idx = [3, 0, 7, 11, 15, 19]
    images = [split.image(i) for i in idx]
    assert len({tuple(im.shape) for im in images}) > 2
    scales = torch.tensor([64, 80, 96, 70, 64, 90])
    x = random_crops(images, scales, 64, torch.Generator().manual_seed(0))
    assert x.shape == (6, 3, 64, 64) and 0 <= x.min() and x.max() <= 1
    for k, (img, s) in enumerate(zip(images, scales.tolist())):
        big = torch.nn.functional.interpolate(img[None].double() / 255, size=vdata.rescaled_size(*img.shape[-2:], s),
                                              mode="bilinear", align_corners=False)[0]
        windows = big.unfold(1, 64, 1).unfold(2, 64, 1)  # (3, oy, ox, 64, 64)
        err = torch.minimum((windows - x[k][:, None, None].double()).abs().amax(dim=(0, 3, 4)),
                            (windows - x[k].flip(-1)[:, None, None].double()).abs().amax(dim=(0, 3, 4)))
        assert err.min() < 1e-4, (k, err.min())
    # the footprint: every tap floor(p), floor(p) + 1 of every window position lies inside it
    size, scaled = torch.full((50,), 100.0, dtype=torch.float64), torch.full((50,), 57.0, dtype=torch.float64)
    offset = torch.arange(50, dtype=torch.float64) % (57 - 24 + 1)
    first, last = vdata.crop_footprints(size, scaled, offset, 24)
    for f, la, o in zip(first.tolist(), last.tolist(), offset.tolist()):
        p = (o + torch.arange(24, dtype=torch.float64) + 0.5) * 100 / 57 - 0.5
        taps = torch.cat([p.floor(), p.floor() + 1]).clamp(0, 99)
        assert f <= taps.min() and taps.max() <= la <= 99 and la - f <= 24 * 100 / 57 + 4


def test_colour_statistics_are_those_of_every_pixel(photos):
    split = load_memory_split(photos, max_side=MAX_SIDE)
    every = torch.cat([split.image(i).reshape(3, -1) for i in range(len(split))], 1)
    sample = split.pixel_sample(max_pixels=10**9)
    assert torch.equal(sample.sort(1).values, every.sort(1).values)
    drawn = ColourStats.from_pixels(split.pixel_sample(max_pixels=200_000))
    exact = ColourStats.from_pixels(every)
    assert torch.allclose(drawn.mean, exact.mean, atol=2e-3)


def test_a_split_larger_than_the_memory_stops_before_decoding(photos, monkeypatch):
    monkeypatch.setattr(vdata, "available_memory", lambda: 10_000)
    monkeypatch.setattr(vdata, "load_rgb", lambda path: pytest.fail("decoded before the memory check"))
    with pytest.raises(UserError, match="--loader stream") as e:
        load_memory_split(photos, max_side=MAX_SIDE)
    assert len(str(e.value).splitlines()) == 1 and "GiB" in str(e.value)
