"""Evaluation (Sect. 3.2): dense, multi-crop, flips, top-k, fusion."""
import numpy as np
import pytest
import torch

from vgg.evaluate import crop_grid, dense_eval, fuse, multi_crop
from vgg.metrics import topk_error, two_standard_errors
from vgg.model import VGG


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return VGG("A", num_classes=10, width=0.125, crop_size=32).eval()


def test_dense_at_crop_size_equals_crop_forward(net):
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expect = (net(x).softmax(1) + net(x.flip(-1)).softmax(1)) / 2
    assert torch.allclose(dense_eval(net, x, amp=False), expect, atol=1e-6)


def test_flip_averaging_is_symmetric(net):
    x = torch.randn(3, 3, 55, 55)
    assert torch.allclose(dense_eval(net, x, amp=False), dense_eval(net, x.flip(-1), amp=False), atol=1e-6)


def test_multi_crop_makes_150_crops_over_3_scales_inside_image(net):
    seen = []
    hook = net.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    total = 0
    for q in (37, 55, 73):
        corners = crop_grid(q, q, 32)
        assert len(corners) == 25 and len(set(corners)) == 25
        assert all(0 <= t <= q - 32 and 0 <= s <= q - 32 for t, s in corners)
        assert (0, 0) in corners and (q - 32, q - 32) in corners
        p = multi_crop(net, torch.randn(1, 3, q, q), amp=False)
        assert torch.allclose(p.sum(1), torch.ones(1))
        total += seen[-1][0]
    hook.remove()
    assert total == 150


def test_topk_error_by_hand():
    scores = np.array([[0.1, 0.5, 0.2, 0.15, 0.05, 0.0],   # label 1: top-1 hit
                       [0.3, 0.1, 0.2, 0.25, 0.1, 0.05],   # label 2: 3rd -> top-5 hit only
                       [0.5, 0.2, 0.1, 0.1, 0.06, 0.04]])  # label 5: last -> miss both
    labels = np.array([1, 2, 5])
    assert topk_error(scores, labels, 1) == pytest.approx(2 / 3)
    assert topk_error(scores, labels, 5) == pytest.approx(1 / 3)


def test_two_standard_errors_by_hand():
    # 25% error on 10,000 images: SE = sqrt(0.25 * 0.75 / 10000) = 0.00433 -> 2 SE = 0.866 points
    assert two_standard_errors(10_000, 0.25) == pytest.approx(0.8660, abs=1e-4)
    # a difference of two independent rates: the variances add
    assert two_standard_errors(10_000, 0.25, 0.30) == pytest.approx(200 * (0.1875e-4 + 0.21e-4) ** 0.5)


def test_fusion_of_a_net_with_itself_is_the_net(net):
    p = dense_eval(net, torch.randn(5, 3, 37, 37), amp=False).numpy()
    assert np.allclose(fuse([p, p]), p)
    q = np.roll(p, 1, axis=1)
    assert np.allclose(fuse([p, q]), (p + q) / 2)


def test_a_batch_and_its_flips_in_one_pass_equal_two_passes(net, monkeypatch):
    """dense_eval sends a small batch and its mirror images through the net together; a batch too large
    for that goes in two passes: the same posteriors."""
    from vgg import evaluate
    x = torch.randn(3, 3, 40, 56)
    together = dense_eval(net, x, amp=False)
    monkeypatch.setattr(evaluate, "EVAL_PIXELS", 0)
    apart = dense_eval(net, x, amp=False)
    assert torch.allclose(together, apart, atol=1e-6) and not torch.equal(together[0], together[1])


@pytest.mark.parametrize("config", ["A-LRN", "D"])
def test_a_padded_batch_of_several_sizes_gives_each_image_its_own_posteriors(config, monkeypatch):
    """Images of several sizes on one zero canvas (vgg.shape_groups.padded_batches: sharing their height, or
    their width) score as each image alone: odd sides (floored pools), FC6 as a 2x2 conv (crop 64), LRN,
    the flips in one pass and in two. Biases are drawn so that a padding not re-zeroed would show."""
    from vgg import evaluate
    from vgg.model import zero_padding_
    from vgg.shape_groups import padded_batches
    torch.manual_seed(0)
    model = VGG(config, num_classes=10, width=0.125, crop_size=64).eval()
    with torch.no_grad():
        for m in model.modules():
            if getattr(m, "bias", None) is not None:
                m.bias.normal_(0, 0.1)
    shapes = [(70, 70), (70, 75), (70, 77), (70, 97), (83, 70), (99, 70)]
    images = [torch.randn(2, 3, h, w) for h, w in shapes]
    alone = torch.cat([dense_eval(model, x, amp=False) for x in images])
    batches = [(x, torch.arange(2) + 2 * k, torch.arange(2) + 2 * k) for k, x in enumerate(images)]
    for pixels in (None, 0):  # flips with their images in one pass; in two
        if pixels is not None:
            monkeypatch.setattr(evaluate, "EVAL_PIXELS", pixels)
        out, at = [], []
        for x, _, pos, sizes in padded_batches(batches, max_pixels=10 ** 6, max_padding=2.0):
            out.append(dense_eval(model, x if sizes is None else zero_padding_(x.clone(), sizes), amp=False,
                                  sizes=sizes))
            at.append(pos)
            assert sizes is None or len(set(sizes)) > 1
        assert len(out) == 2  # the landscape images on one canvas, the portrait ones on another
        assert torch.allclose(torch.cat(out)[torch.argsort(torch.cat(at))], alone, atol=1e-6)
    assert (alone.max(1).values - alone.min(1).values).min() > 1e-3  # the posteriors differ between classes


def test_padded_batches_join_consecutive_small_batches_that_share_a_side():
    from vgg.shape_groups import padded_batches

    def batch(n, h, w, first):
        return torch.ones(n, 3, h, w), torch.arange(first, first + n), torch.arange(first, first + n)

    seq = [batch(2, 10, 10, 0), batch(1, 10, 11, 2), batch(3, 10, 30, 3), batch(1, 12, 10, 6), batch(50, 10, 10, 7)]
    out = list(padded_batches(seq, max_pixels=2000, max_padding=1.1))
    # 10x10 and 10x11 share their height (3 x 10 x 11 = 330 <= 1.1 x 310); 10x30 would pad too much;
    # 12x10 shares no side with it; the 50 images of 5,000 pixels exceed max_pixels: each comes as it came
    assert [tuple(x.shape) for x, *_ in out] == [(3, 3, 10, 11), (3, 3, 10, 30), (1, 3, 12, 10), (50, 3, 10, 10)]
    x, y, pos, sizes = out[0]
    assert sizes == [(10, 10), (10, 10), (10, 11)] and y.tolist() == pos.tolist() == [0, 1, 2]
    assert x[:2, :, :, 10].abs().sum() == 0 and x[2].min() == 1  # padding zero, the image whole
    assert all(o[3] is None for o in out[1:]) and out[1][0] is seq[2][0]
    assert torch.cat([o[1] for o in out]).tolist() == list(range(57))  # every image once, in order
