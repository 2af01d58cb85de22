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
