"""The paper's training transforms (Sect. 3.1) on real images."""
import torch
import torch.nn.functional as F

from vgg.data import ColourStats, IsotropicRescale, draw_scales, load_memory_split, random_crops, rescale, rescaled_size


def test_isotropic_rescale_shortest_side_is_s():
    from PIL import Image
    for (w, h) in ((32, 32), (50, 30), (30, 70)):
        img = Image.new("RGB", (w, h))
        for s in (37, 55, 73):
            out = IsotropicRescale(s)(img)
            assert min(out.size) == s
            assert abs(out.size[0] / out.size[1] - w / h) < 0.05  # aspect kept
        assert min(rescaled_size(h, w, 41)) == 41


def test_jittered_scales_stay_in_range_and_vary():
    g = torch.Generator().manual_seed(0)
    s = draw_scales(2000, 37, 73, g)
    assert s.min() >= 37 and s.max() <= 73 and len(s.unique()) == 37


def test_random_crop_equals_rescale_then_crop(small_data):
    split = load_memory_split(small_data / "train")
    imgs = split.images[:6]
    g = torch.Generator().manual_seed(1)
    out = random_crops(imgs, torch.full((6,), 55), 32, g, flip=False)
    assert out.shape == (6, 3, 32, 32)
    big = F.interpolate(imgs.float() / 255, size=(55, 55), mode="bilinear", align_corners=False)
    # every crop must be a 32x32 window of the 55x55 rescaled image
    for i in range(6):
        windows = big[i].unfold(1, 32, 1).unfold(2, 32, 1)  # (3, 24, 24, 32, 32)
        err = (windows - out[i][:, None, None]).abs().amax(dim=(0, 3, 4))
        assert err.min() < 1e-4


def test_flip_mirrors_and_crop_positions_vary(small_data):
    imgs = load_memory_split(small_data / "train").images[:1].repeat(64, 1, 1, 1)
    g = torch.Generator().manual_seed(2)
    out = random_crops(imgs, torch.full((64,), 32), 32, g, flip=True)  # S = crop: only flips differ
    plain = imgs[0].float() / 255
    flipped = [torch.allclose(o, plain.flip(-1), atol=1e-5) for o in out]
    same = [torch.allclose(o, plain, atol=1e-5) for o in out]
    assert all(a or b for a, b in zip(flipped, same)) and 10 < sum(flipped) < 54
    out2 = random_crops(imgs, torch.full((64,), 55), 32, g, flip=False)
    assert len({o.sum().item() for o in out2}) > 10


def test_pca_shift_changes_colour_not_geometry(small_data):
    split = load_memory_split(small_data / "train")
    stats = ColourStats.from_images(split.images)
    x = split.images[:8].float() / 255
    y = stats.pca_shift(x, 0.1, torch.Generator().manual_seed(0))
    d = y - x
    assert d.abs().max() > 1e-3                                 # colour changed
    assert torch.allclose(d, d[:, :, :1, :1].expand_as(d), atol=1e-6)    # same shift at every pixel: no geometry change
    # eigen-decomposition of the RGB covariance, independently
    px = split.images.permute(1, 0, 2, 3).reshape(3, -1).double() / 255
    val = torch.linalg.eigvalsh(torch.cov(px)).float()
    assert torch.allclose(stats.eigval ** 2, val, rtol=1e-3, atol=1e-7)


def test_mean_subtraction_uses_training_mean(small_data):
    split = load_memory_split(small_data / "train")
    stats = ColourStats.from_images(split.images)
    mean = split.images.double().mean(dim=(0, 2, 3)) / 255
    assert torch.allclose(stats.mean.double(), mean, atol=1e-4)
    x = split.images.float() / 255
    out = stats.normalise(x)
    assert out.mean(dim=(0, 2, 3)).abs().max() < 1e-2   # zero mean on the [0, 255] scale
    assert torch.allclose(out, (x - mean.float()[None, :, None, None]) * 255, atol=1e-3)


def test_test_rescale_square(small_data):
    imgs = load_memory_split(small_data / "val").images[:4]
    assert rescale(imgs, 55).shape == (4, 3, 55, 55)


def test_stream_loader_imagenet_path(small_data, tmp_path):
    """The ImageNet code path (torchvision decoding, PIL rescale) on real files."""
    from vgg.datasets import StreamData
    from vgg.protocol import get_preset
    data = StreamData(small_data, get_preset("tiny", loader="stream", workers=0), cache_dir=tmp_path)
    x, y = next(iter(data.train_batches(0, 0, (37, 73), None)))
    assert x.shape == (32, 3, 32, 32) and 0 <= float(x.min()) and float(x.max()) <= 1
    sizes = {tuple(v.shape[-2:]) for v, _ in data.val_images(55)}
    assert sizes == {(55, 55)}
    assert list(tmp_path.glob("colour-*.json"))  # colour statistics cached under a stable key


def test_stream_colour_stats_cache_follows_the_training_files(small_data, tmp_path):
    """The colour statistics are cached per set of training files: the same files reuse the cache, another
    subset (max_per_class) makes its own with its own statistics."""
    from vgg.datasets import StreamData
    from vgg.protocol import get_preset
    full = StreamData(small_data, get_preset("tiny", loader="stream", workers=0), cache_dir=tmp_path)
    (first,) = tmp_path.glob("colour-*.json")
    again = StreamData(small_data, get_preset("tiny", loader="stream", workers=0), cache_dir=tmp_path)
    assert list(tmp_path.glob("colour-*.json")) == [first]
    assert again.colour.as_dict() == full.colour.as_dict()
    few = StreamData(small_data, get_preset("tiny", loader="stream", workers=0, max_per_class=2), cache_dir=tmp_path)
    assert len(few.train) < len(full.train)
    assert len(list(tmp_path.glob("colour-*.json"))) == 2
    assert few.colour.as_dict() != full.colour.as_dict()


def test_proxy_presets_scale_the_papers_geometry():
    from dataclasses import replace

    from vgg.model import feature_size
    from vgg.protocol import get_preset
    proxy, proxy64 = get_preset("proxy"), get_preset("proxy64")
    assert [proxy.scale_px(s) for s in ("256", "384", "256-512")] == [(37, 37), (55, 55), (37, 73)]
    assert [proxy64.scale_px(s) for s in ("256", "384", "256-512")] == [(73, 73), (110, 110), (73, 146)]
    assert (feature_size(proxy.crop, 4), feature_size(proxy64.crop, 4)) == (2, 4)  # conv5 map in training
    # the diagnostic preset is the proxy at twice the crop and nothing else
    assert replace(proxy64, name="proxy", crop=32, notes=proxy.notes) == proxy


def test_make_imagenette_resizes_an_imagefolder_split_to_224(tmp_path):
    """The conversion `make data DATASET=imagenette` runs after the (MD5-checked) download,
    on a few local files of imagenette2-320's shapes and modes."""
    from conftest import load_script
    from PIL import Image
    mk = load_script("scripts/make_imagenette.py")
    src = tmp_path / "imagenette2-320" / "val"
    for wnid, (w, h), mode in (("n01440764", (480, 320), "RGB"), ("n02102040", (320, 427), "L"),
                               ("n02102040", (320, 320), "CMYK")):
        (src / wnid).mkdir(parents=True, exist_ok=True)
        Image.new(mode, (w, h)).save(src / wnid / f"img_{w}x{h}.JPEG")
    (src / "n01440764" / "notes.txt").write_text("not an image")
    assert mk.convert_split(src, tmp_path / "out" / "val") == 3
    out = sorted((tmp_path / "out" / "val").rglob("*.JPEG"))
    assert [p.parent.name for p in out] == ["n01440764", "n02102040", "n02102040"]
    for p in out:
        with Image.open(p) as im:
            assert im.size == (224, 224) and im.mode in ("RGB", "L")
    assert not (tmp_path / "out" / "val.partial").exists()


def test_batched_validation_crops_are_the_centre_crops_of_the_rescaled_images(small_data, tmp_path):
    """The per-epoch validation's batched crops (made in the workers) hold the pixels of center_crop
    applied to each rescaled image, for each process's slice; Q = 43 puts the centre at a half pixel
    (floor, as center_crop; torchvision's CenterCrop would round up)."""
    from vgg.data import center_crop
    from vgg.datasets import StreamData
    from vgg.protocol import get_preset
    data = StreamData(small_data, get_preset("tiny", loader="stream", workers=0), cache_dir=tmp_path)
    for world in (1, 2):
        for rank in range(world):
            one = [(center_crop(x, data.preset.crop), y) for x, y in data.val_images(43, rank, world)]
            batched = list(data.val_center_crops(43, rank, world, batch=5))
            assert [len(y) for _, y in batched][:1] == [5]
            assert torch.equal(torch.cat([x for x, _ in one]), torch.cat([x for x, _ in batched]))
            assert torch.equal(torch.cat([y for _, y in one]), torch.cat([y for _, y in batched]))
