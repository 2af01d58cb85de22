"""The imagenette preset's geometry is the paper's, checked on real Imagenette files."""
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from vgg.evaluate import dense_eval
from vgg.loaders import load_datasets
from vgg.model import VGG, LocalResponseNorm, channel_band, feature_size, lrn_nhwc, lrn_nhwc_inference
from vgg.protocol import PAPER, get_preset, multi_test_scales, single_test_scale

IMAGENETTE = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenette"
PAPER_SIZES = [224, 256, 288, 352, 384, 416, 512]


@pytest.fixture(scope="module")
def imagenette_small(tmp_path_factory) -> Path:
    """3 classes x 4 train / 2 val real Imagenette photographs (224x224 JPEG)."""
    if not (IMAGENETTE / "train").is_dir():
        pytest.skip(f"no Imagenette at {IMAGENETTE}")
    dst = tmp_path_factory.mktemp("imagenette_small")
    for split, n in (("train", 4), ("val", 2)):
        for cls in sorted(p.name for p in (IMAGENETTE / split).iterdir())[:3]:
            (dst / split / cls).mkdir(parents=True)
            for f in sorted((IMAGENETTE / split / cls).iterdir())[:n]:
                shutil.copy(f, dst / split / cls / f.name)
    return dst


@pytest.mark.parametrize("name,crop,scales", [
    ("imagenette", 128, [(160, 160), (224, 224), (160, 288)]),
    ("imagenette160", 160, [(192, 192), (288, 288), (192, 352)]),  # the crop-160 diagnostic
])
def test_every_size_is_a_multiple_of_32_and_keeps_the_papers_order(name, crop, scales):
    p = get_preset(name)
    assert p.crop == crop and p.px(PAPER["crop"]) == crop
    sizes = [p.px(s) for s in PAPER_SIZES]
    assert all(s % 32 == 0 for s in sizes)
    assert sizes == sorted(sizes)
    assert [p.scale_px(s) for s in ("256", "384", "256-512")] == scales
    # Table 4's three test scales stay three distinct scales, one pool5 cell (32 px) apart
    for s in ("256", "384", "256-512"):
        qs = [p.px(q) for q in multi_test_scales(s)]
        assert len(set(qs)) == 3 and qs == sorted(qs)
    assert p.px(single_test_scale("256-512")) == {128: 224, 160: 288}[crop]


def test_geometry_on_real_imagenette_images(imagenette_small):
    preset = get_preset("imagenette", batch=6)
    data = load_datasets(imagenette_small, preset)
    gen = torch.Generator().manual_seed(0)
    x, _ = next(data.train_batches(0, 0, preset.scale_px("256-512"), gen))
    assert x.shape[-2:] == (128, 128)
    torch.manual_seed(0)
    net = VGG("D", num_classes=len(data.classes), width=preset.width, crop_size=preset.crop).eval()
    f = net.features(data.colour.normalise(x))
    conv5 = net.features[:-1](data.colour.normalise(x))           # before the last max-pool
    assert conv5.shape[-2:] == (8, 8) and f.shape[-2:] == (4, 4)   # conv5 8x8, pool5 4x4 in training
    assert net.classifier[0].in_features == f.shape[1] * 4 * 4      # FC6 = a 4x4 conv in the dense head
    # a k x k class score map where Q gives it: 128 -> 1x1, 160 -> 2x2, 192 -> 3x3, 224 -> 4x4, 288 -> 6x6
    for q_paper, k in ((224, 1), (256, 2), (288, 3), (384, 4), (512, 6)):
        (xq, _), = list(data.val_images(preset.px(q_paper), batch=6))[:1]
        with torch.no_grad():
            assert net.score_map(data.colour.normalise(xq)).shape[-2:] == (k, k)
        assert feature_size(preset.px(q_paper)) * 32 == preset.px(q_paper)  # no pool floors
    # dense evaluation at Q = crop is the crop's own forward pass (flip-averaged)
    (x128, _), = list(data.val_images(128, batch=6))[:1]
    x128 = data.colour.normalise(x128)
    with torch.no_grad():
        crop = (net(x128).softmax(1) + net(x128.flip(-1)).softmax(1)) / 2
        assert torch.allclose(dense_eval(net, x128, amp=False), crop, atol=1e-5)


@pytest.mark.parametrize("beta", [0.75, 0.6])  # the paper's beta (rsqrt path) and any other (exp-log path)
def test_fast_lrn_equals_pytorchs_forward_and_backward(beta):
    torch.manual_seed(0)
    ref = nn.LocalResponseNorm(5, alpha=5e-4, beta=beta, k=2.0)
    ours = LocalResponseNorm(5, alpha=5e-4, beta=beta, k=2.0)
    for c in (7, 16):  # window clipped at both ends
        x = (torch.randn(3, c, 9, 11) * 40).contiguous(memory_format=torch.channels_last)
        g = torch.randn_like(x)
        xr, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
        yr, yo = ref(xr), ours(xo)
        yr.backward(g)
        yo.backward(g)
        assert torch.allclose(yo, yr, rtol=1e-5, atol=1e-6)
        assert torch.allclose(xo.grad, xr.grad, rtol=1e-4, atol=1e-6)
        # bf16 activations (the training path): equal within bf16 rounding
        xb = x.bfloat16().requires_grad_()
        yb = ours(xb)
        assert yb.dtype == torch.bfloat16
        assert (yb.float() - yr).abs().max() <= 0.01 * yr.abs().max()
        yb.float().backward(g)
        assert (xb.grad.float() - xr.grad).abs().max() <= 0.02 * xr.grad.abs().max()


@pytest.mark.parametrize("beta", [0.75, 0.6])
def test_lrn_in_evaluation_runs_in_place_and_equals_pytorchs(beta, monkeypatch):
    """Without autograd (evaluation, validation) the in-place path runs; it gives PyTorch's LRN in
    float32 and within bf16 rounding on bf16 activations, and leaves its input as it was."""
    import vgg.model as vgg_model
    calls = []
    monkeypatch.setattr(vgg_model, "lrn_nhwc_inference",
                        lambda *a: calls.append(a[0].dtype) or lrn_nhwc_inference(*a))
    torch.manual_seed(0)
    ref = nn.LocalResponseNorm(5, alpha=5e-4, beta=beta, k=2.0)
    ours = LocalResponseNorm(5, alpha=5e-4, beta=beta, k=2.0)
    for c in (7, 16):  # window clipped at both ends
        x = (torch.randn(3, c, 9, 11) * 40).contiguous(memory_format=torch.channels_last)
        kept = x.clone()
        with torch.no_grad():
            yr, yo, yb = ref(x), ours(x), ours(x.bfloat16())
        assert torch.equal(x, kept)
        assert torch.allclose(yo, yr, rtol=1e-5, atol=1e-6) and yo.dtype == torch.float32
        assert yb.dtype == torch.bfloat16 and (yb.float() - yr).abs().max() <= 0.01 * yr.abs().max()
    assert calls == [torch.float32, torch.bfloat16] * 2


def test_compiled_lrn_equals_eager():
    torch.manual_seed(0)
    x = (torch.randn(4, 16, 12, 12) * 30).bfloat16().contiguous(memory_format=torch.channels_last)
    band = channel_band(16, 5)
    try:
        compiled = torch.compile(lrn_nhwc, dynamic=False)
        xc = x.clone().requires_grad_()
        yc = compiled(xc, band, 1e-4, 0.75, 2.0)
    except Exception as e:  # no C++ toolchain for inductor: the model falls back to eager
        pytest.skip(f"torch.compile unavailable here: {type(e).__name__}")
    xe = x.clone().requires_grad_()
    ye = lrn_nhwc(xe, band, 1e-4, 0.75, 2.0)
    g = torch.randn_like(ye)
    yc.backward(g)
    ye.backward(g)
    assert (yc.float() - ye.float()).abs().max() <= 0.01 * ye.float().abs().max()
    assert (xc.grad.float() - xe.grad.float()).abs().max() <= 0.02 * xe.grad.float().abs().max()


def test_a_training_step_with_the_compiled_lrn_equals_the_eager_step(monkeypatch):
    """Same weights, batch and dropout seed: the A-LRN step through torch.compile'd LRN gives the
    eager step's loss and gradients within bf16 tolerance (tiny preset's geometry)."""
    import copy

    from vgg import model as vgg_model
    from vgg.init import init_glorot
    from vgg.model import VGG
    from vgg.protocol import get_preset
    from vgg.train import make_optimizer, train_step
    preset = get_preset("tiny")
    torch.manual_seed(0)
    net = init_glorot(VGG("A-LRN", num_classes=10, width=preset.width, crop_size=preset.crop)).train()
    x = (torch.randn(8, 3, preset.crop, preset.crop) * 50).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (8,))
    results = {}
    for mode in ("compiled", "eager"):
        m = copy.deepcopy(net).to(memory_format=torch.channels_last)
        monkeypatch.setattr(vgg_model, "_compiled_lrn", None if mode == "compiled" else vgg_model.lrn_nhwc)
        if mode == "compiled":
            monkeypatch.setenv("VGG_COMPILE", "1")
        torch.manual_seed(1)  # the same dropout masks
        loss, _ = train_step(m, make_optimizer(m, preset, 0.01), x, y)
        results[mode] = (float(loss), {k: p.grad.clone() for k, p in m.named_parameters()})
        if mode == "compiled" and vgg_model._compiled_lrn is vgg_model.lrn_nhwc:
            pytest.skip("torch.compile unavailable here: the model runs the eager LRN")
    (lc, gc), (le, ge) = results["compiled"], results["eager"]
    assert lc == pytest.approx(le, rel=1e-2)
    for k in ge:
        scale = ge[k].abs().max()
        assert (gc[k] - ge[k]).abs().max() <= 0.05 * scale + 1e-6, k
