"""vgg.gpu_data (the GPU input pipeline) run on CPU tensors against the PIL stream loader: the same
pixels for the same random parameters, the same distributions of S, crop position, flip and colour
under many seeded draws; EXIF orientation, files nvjpeg cannot read, determinism, the choice."""
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats

from vgg import gpu_data
from vgg.data import load_rgb, rescaled_size, stream_train_transform
from vgg.datasets import StreamData
from vgg.errors import UserError
from vgg.protocol import get_preset

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample" / "train"
GREY = "n04008634"  # imagenet-sample's greyscale JPEGs: n04008634, n04090263, n04372370, n04532670


@pytest.fixture
def one_thread():
    """Tensor resampling on one thread: two threads on a busy 2-core machine were 6x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def photos(k: int) -> list[str]:
    if not SAMPLE.is_dir():
        pytest.skip(f"no ImageNet photographs at {SAMPLE}")
    files = sorted(str(f) for f in SAMPLE.glob("*/*.JPEG"))
    return files[:: max(1, len(files) // k)][:k]


def pil_path(path: str, s: int, top: int, left: int, flip: bool, crop: int) -> torch.Tensor:
    """The stream loader's ops (vgg.data.IsotropicRescale, RandomCrop, flip) with given parameters."""
    img = load_rgb(path)
    w, h = img.size
    nh, nw = rescaled_size(h, w, s)
    img = img.resize((nw, nh), Image.BILINEAR).crop((left, top, left + crop, top + crop))
    if flip:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255


@pytest.mark.parametrize("scale", [(256, 256), (256, 512)])
def test_same_parameters_give_the_stream_loaders_pixels(scale, one_thread):
    """Tolerance: PIL rounds to uint8 after each resampling pass, the tensor path keeps floats, so a
    pixel may differ by 1/255 (measured max 1.0/255, mean 0.29/255 on these photographs)."""
    files = photos(6) + [str(next((SAMPLE / GREY).glob("*.JPEG")))]
    images = gpu_data.decode(gpu_data.encode_files(files), "cpu")
    params = gpu_data.draw_params([tuple(x.shape[-2:]) for x in images], *scale, 224,
                                  torch.Generator().manual_seed(1))
    params.flips[::2] = True  # both branches
    ours = gpu_data.augment(images, params, 224)
    for k, f in enumerate(files):
        ref = pil_path(f, int(params.scales[k]), int(params.tops[k]), int(params.lefts[k]), bool(params.flips[k]), 224)
        diff = (ours[k] - ref).abs()
        assert diff.max() <= 1.5 / 255, f
        assert diff.mean() <= 0.4 / 255, f


def test_decoding_equals_pils_for_every_exif_orientation(tmp_path):
    """Each EXIF orientation (1-8) applied on the tensor as PIL's exif_transpose does; and a
    greyscale JPEG comes out as 3 equal channels, as load_rgb's convert('RGB')."""
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8))
    files = []
    for o in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        files.append(tmp_path / f"o{o}.jpg")
        base.save(files[-1], "JPEG", quality=95, exif=exif.tobytes())
    files.append(tmp_path / "grey.jpg")
    base.convert("L").save(files[-1], "JPEG", quality=95)
    got = gpu_data.decode(gpu_data.encode_files([str(f) for f in files]), "cpu")
    for f, x in zip(files, got):
        ref = torch.from_numpy(np.array(load_rgb(str(f)))).permute(2, 0, 1)
        assert x.shape == ref.shape and torch.equal(x, ref), f.name


def test_files_nvjpeg_cannot_read_are_decoded_by_pil_and_broken_ones_skipped(tmp_path):
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    rgb.convert("CMYK").save(tmp_path / "cmyk.JPEG", "JPEG", quality=95)
    rgb.save(tmp_path / "png.JPEG", "PNG")  # ILSVRC-2012 has a PNG named .JPEG
    (tmp_path / "broken.JPEG").write_bytes(b"not an image")
    names = ["cmyk.JPEG", "png.JPEG", "broken.JPEG"]
    encoded = [gpu_data.read_encoded(str(tmp_path / n)) for n in names]
    assert encoded[0].pixels and encoded[1].pixels and encoded[2] is None
    batch, labels, skipped = gpu_data.collate_encoded([None if e is None else (e, i) for i, e in enumerate(encoded)])
    assert skipped == 1 and labels.tolist() == [0, 1]
    for x, n in zip(gpu_data.decode(batch, "cpu"), names):
        assert torch.equal(x, torch.from_numpy(np.array(load_rgb(str(tmp_path / n)))).permute(2, 0, 1))


def ramp_image(path: Path, w: int = 200, h: int = 150) -> None:
    """R rises left to right, G top to bottom: a crop's R and G tell where it came from, its
    R slope the scale and its sign the flip."""
    x = np.linspace(0, 255, w)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h)[:, None].repeat(w, 1)
    rgb = np.stack([x, y, np.full_like(x, 128)], -1).round().astype(np.uint8)
    Image.fromarray(rgb).save(path, "JPEG", quality=100, subsampling=0)


def read_crop(x: torch.Tensor, w: int = 200, h: int = 150) -> tuple[float, float, float, bool]:
    """(S, crop centre x, crop centre y in source pixels, flipped) recovered from a ramp crop."""
    c = x.shape[-1]
    mid = slice(c // 4, 3 * c // 4)  # away from the image's border, where the filter clamps
    cols = x[0, :, mid].mean(0).double() * 255
    slope = float(np.polyfit(np.arange(len(cols)), cols.numpy(), 1)[0])  # R levels per output pixel
    s = 255 * h / ((w - 1) * abs(slope))        # the shorter side (h) became S
    cx = float(x[0].mean()) * (w - 1)
    cy = float(x[1].mean()) * (h - 1)
    return s, cx, cy, slope < 0


def test_scale_crop_and_flip_are_distributed_as_the_stream_loaders(tmp_path, one_thread):
    """2,000 seeded draws per path on a ramp image (crop 64, S in [72, 144]): S, the crop's centre
    and the flip read back from each crop. Tolerance: the paths' means differ by less than 4
    standard errors of the difference (flip rate: 0.063), two-sample KS p > 0.001; S is uniform on
    [72, 144] (mean 108, sd 21.1) and the flip rate 1/2 within 4 standard errors (S's sd within 15%).
    Measured to catch a flip rate of 0.4, S drawn from [72, 132] or crop positions drawn as u^1.3."""
    ramp_image(tmp_path / "ramp.jpg")
    n, crop, smin, smax = 2000, 64, 72, 144
    random.seed(0)
    torch.manual_seed(0)
    tf = stream_train_transform(smin, smax, crop)
    img = load_rgb(str(tmp_path / "ramp.jpg"))
    stream = [read_crop(tf(img).float() / 255) for _ in range(n)]
    decoded = gpu_data.decode(gpu_data.encode_files([str(tmp_path / "ramp.jpg")]), "cpu")[0]
    params = gpu_data.draw_params([tuple(decoded.shape[-2:])] * n, smin, smax, crop, torch.Generator().manual_seed(0))
    ours_x = gpu_data.augment([decoded] * n, params, crop)
    ours = [read_crop(x) for x in ours_x]
    assert np.allclose([o[0] for o in ours], params.scales.numpy(), atol=2)  # the read-back is exact enough
    assert [o[3] for o in ours] == params.flips.tolist()
    for i, name in enumerate(["S", "centre x", "centre y", "flip"]):
        a = np.array([r[i] for r in stream], dtype=float)
        b = np.array([r[i] for r in ours], dtype=float)
        se = np.sqrt(a.var(ddof=1) / n + b.var(ddof=1) / n)
        assert abs(a.mean() - b.mean()) < 4 * se, name
        if name != "flip":
            assert stats.ks_2samp(a, b).pvalue > 1e-3, name
    for path in (stream, ours):
        sample = np.array([r[0] for r in path])
        sd = np.sqrt(((smax - smin + 1) ** 2 - 1) / 12)
        assert abs(sample.mean() - (smin + smax) / 2) < 4 * sd / np.sqrt(n)
        assert abs(sample.std() - sd) < 0.15 * sd
        assert abs(np.mean([r[3] for r in path]) - 0.5) < 4 * 0.5 / np.sqrt(n)


def test_colour_statistics_of_crops_match_the_stream_loaders(one_thread):
    """200 seeded draws per path on one photograph at the paper's geometry (crop 224, S in
    [256, 512]): each crop's per-channel mean. Tolerance as above (4 standard errors, KS p > 0.001)."""
    path = photos(1)[0]
    n = 200
    random.seed(0)
    torch.manual_seed(0)
    tf = stream_train_transform(256, 512, 224)
    img = load_rgb(path)
    stream = torch.stack([tf(img).float().mean((1, 2)) / 255 for _ in range(n)])
    decoded = gpu_data.decode(gpu_data.encode_files([path]), "cpu")[0]
    ours = torch.cat([gpu_data.augment([decoded] * 50, gpu_data.draw_params(
        [tuple(decoded.shape[-2:])] * 50, 256, 512, 224, torch.Generator().manual_seed(k)), 224).mean((2, 3))
        for k in range(n // 50)])
    for c in range(3):
        a, b = stream[:, c].numpy(), ours[:, c].numpy()
        se = np.sqrt(a.var(ddof=1) / n + b.var(ddof=1) / n)
        assert abs(a.mean() - b.mean()) < 4 * se, c
        assert stats.ks_2samp(a, b).pvalue > 1e-3, c


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory) -> Path:
    """12 photographs of 3 classes (4 each, the same files in train/ and val/), one greyscale."""
    src = photos(250)
    root = tmp_path_factory.mktemp("photos")
    classes = [Path(src[0]).parent.name, Path(src[1]).parent.name, GREY]
    for split in ("train", "val"):
        for cls in classes:
            (root / split / cls).mkdir(parents=True)
    files = [str(next((SAMPLE / GREY).glob("*.JPEG")))] + src[2:13]
    for k, f in enumerate(files):
        for split in ("train", "val"):
            shutil.copy(f, root / split / classes[k % 3] / f"{k}.JPEG")
    return root


def test_gpu_stream_data_batches_are_seeded_by_the_epoch_generator_not_the_workers(sample_root, one_thread):
    batches = {}
    for workers in (0, 1):
        data = StreamData(sample_root, get_preset("paper", batch=4, workers=workers))
        gpu = gpu_data.GPUStreamData(data, "cpu", "gpu")
        out = list(gpu.train_batches(0, 0, (256, 512), torch.Generator().manual_seed(3)))
        batches[workers] = out
    assert len(batches[0]) == 3
    for (x0, y0), (x1, y1) in zip(batches[0], batches[1]):
        assert x0.shape == (4, 3, 224, 224) and x0.dtype == torch.float32
        assert torch.equal(x0, x1) and torch.equal(y0, y1)
        assert 0 <= float(x0.min()) and float(x0.max()) <= 1
    data = StreamData(sample_root, get_preset("paper", batch=4, workers=0))
    stream = gpu_data.GPUStreamData(data, "cpu", "stream")  # the stream loader's batches, as they were
    shapes = [tuple(x.shape) for x, _ in stream.train_batches(0, 0, (256, 256), torch.Generator())]
    assert shapes == [(4, 3, 224, 224)] * 3


def test_choose_pipeline():
    assert gpu_data.choose_pipeline("cuda", cpu_rate=1000, step_rate=3000) == "gpu"
    assert gpu_data.choose_pipeline(torch.device("cuda", 0), cpu_rate=4000, step_rate=3000) == "stream"
    assert gpu_data.choose_pipeline("cpu", cpu_rate=10, step_rate=3000) == "stream"


def test_the_hook_leaves_cpu_runs_and_the_memory_loader_alone(sample_root, monkeypatch):
    data = StreamData(sample_root, get_preset("paper", batch=4, workers=0))
    monkeypatch.delenv("VGG_PIPELINE", raising=False)
    if not torch.cuda.is_available():
        assert gpu_data.with_gpu_decoding(data) is data
    assert gpu_data.with_gpu_decoding(data, "cpu") is data
    assert gpu_data.with_gpu_decoding("memory data", "cuda") == "memory data"
    auto = gpu_data.with_gpu_decoding(data, "cuda")
    assert isinstance(auto, gpu_data.GPUStreamData) and auto.pipeline is None  # decided at the first epoch
    monkeypatch.setenv("VGG_PIPELINE", "gpu")
    assert gpu_data.with_gpu_decoding(data, "cpu").pipeline == "gpu"
    monkeypatch.setenv("VGG_PIPELINE", "stream")
    assert gpu_data.with_gpu_decoding(data, "cuda") is data
    monkeypatch.setenv("VGG_PIPELINE", "fast")
    with pytest.raises(UserError, match="VGG_PIPELINE"):
        gpu_data.with_gpu_decoding(data, "cuda")


def test_load_datasets_hands_the_stream_loader_to_the_hook(sample_root, monkeypatch):
    """train() gets its data from load_datasets with the process's device: the GPU pipeline is
    offered there (forced here on the CPU), never to the memory loader or a plain CPU run."""
    from vgg.datasets import MemoryData
    from vgg.loaders import load_datasets
    monkeypatch.delenv("VGG_PIPELINE", raising=False)
    stream = get_preset("tiny", loader="stream", workers=0)
    assert type(load_datasets(sample_root, stream, device=torch.device("cpu"))) is StreamData
    monkeypatch.setenv("VGG_PIPELINE", "gpu")
    hooked = load_datasets(sample_root, stream, device=torch.device("cpu"))
    assert isinstance(hooked, gpu_data.GPUStreamData) and hooked.pipeline == "gpu"
    assert isinstance(load_datasets(sample_root, get_preset("tiny", loader="memory"), device="cpu"), MemoryData)


def test_the_step_estimate_rests_on_the_nets_flops():
    from vgg.model import VGG, multiply_adds
    assert gpu_data.step_flops_per_image("D", 1.0, 224) == 6 * multiply_adds(VGG("D"))
    assert gpu_data.matmul_flops("cpu", size=128, seconds=0.01) > 0


def test_each_process_takes_its_rows_of_the_global_batchs_draws():
    """Under torchrun every process draws the whole global batch's parameters from the same-seeded
    generator and keeps its rows: together the shards are one process's draw, no two share numbers."""
    shapes = [(300, 400)] * 8
    whole = gpu_data.draw_params(shapes, 256, 512, 224, torch.Generator().manual_seed(5))
    shards = [gpu_data.draw_params(shapes[:4], 256, 512, 224, torch.Generator().manual_seed(5), rows=8, part=part)
              for part in (slice(0, 4), slice(4, 8))]
    for field in ("scales", "tops", "lefts", "flips"):
        assert torch.equal(torch.cat([getattr(s, field) for s in shards]), getattr(whole, field)), field
    short = gpu_data.draw_params(shapes[:3], 256, 512, 224, torch.Generator().manual_seed(5), rows=8,
                                 part=slice(4, 8))  # an unreadable file: the first 3 of the rows
    assert torch.equal(short.scales, whole.scales[4:7])


def test_the_pipeline_is_chosen_once_at_the_first_epoch_from_both_rates(sample_root, monkeypatch, one_thread):
    data = StreamData(sample_root, get_preset("paper", batch=4, workers=2))
    seen, logs = [], []
    monkeypatch.setattr(gpu_data, "estimated_step_rate", lambda preset, device, config="A": 5000.0)

    def choose(device, cpu_rate, step_rate):
        seen.append((str(device), cpu_rate, step_rate))
        return "gpu"
    monkeypatch.setattr(gpu_data, "choose_pipeline", choose)
    g = gpu_data.GPUStreamData(data, "cpu", None, log=logs.append)
    for epoch in (0, 1):
        shapes = [tuple(x.shape) for x, _ in g.train_batches(epoch, 0, (256, 256), torch.Generator())]
        assert shapes == [(4, 3, 224, 224)] * 3
    assert g.pipeline == "gpu" and len(seen) == 1 and len(logs) == 1 and "input pipeline: gpu" in logs[0]
    device, cpu_rate, step_rate = seen[0]
    assert device == "cpu" and step_rate == 5000.0 and cpu_rate > 0  # per-core rate x 2 workers


def test_the_training_loop_trains_and_resumes_on_the_gpu_pipelines_batches(sample_root, tmp_path, monkeypatch,
                                                                            one_thread):
    """What the load_datasets hook gives a CUDA run, here on CPU tensors: train() takes the GPU
    pipeline's batches (colour, validation, checkpoint), and a resumed run continues the same epochs."""
    import vgg.train as tr
    made = []

    def hooked(*args, **kwargs):
        made.append(gpu_data.GPUStreamData(original(*args, **kwargs), "cpu", "gpu"))
        return made[-1]
    original = tr.load_datasets
    monkeypatch.setattr(tr, "load_datasets", hooked)
    spec = dict(config="A", preset="tiny", data=str(sample_root), loader="stream", workers=0, batch=4, epochs=2,
                progress=False, out=str(tmp_path / "a.pt"))
    tr.train(tr.TrainSpec(**spec, stop_after=1))
    tr.train(tr.TrainSpec(**spec, resume="auto"))
    state = torch.load(tmp_path / "a.pt", map_location="cpu", weights_only=False)
    assert [r["epoch"] for r in state["log"]] == [1, 2] and state["complete"]
    assert all(np.isfinite(r["train_loss"]) for r in state["log"])
    assert len(made) == 2 and all(d.pipeline == "gpu" for d in made)
