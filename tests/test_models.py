"""Table 1 / Table 2: configurations, parameter counts, dense view, torchvision layout, init."""
import pandas as pd
import pytest
import torch
import torchvision
from torch import nn

from vgg import fused
from vgg.configs import CONFIGS, TORCHVISION_NAMES
from vgg.init import init_from, init_glorot, init_normal
from vgg.model import VGG, count_parameters, notation, plain_order
from vgg.results import paper_table

TORCHVISION_COUNTS = {"A": 132_863_336, "B": 133_047_848, "D": 138_357_544, "E": 143_667_240}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_param_counts_round_to_paper(config):
    with torch.device("meta"):
        n = count_parameters(VGG(config))
    paper = paper_table("table2_params").set_index("config")["params_millions"]
    if config in paper.index:
        assert round(n / 1e6) == paper[config]
    if config in TORCHVISION_COUNTS:
        assert n == TORCHVISION_COUNTS[config]
        with torch.device("meta"):
            assert n == count_parameters(getattr(torchvision.models, TORCHVISION_NAMES[config])())


@pytest.mark.parametrize("config", ["A", "A-LRN", "B", "C", "D", "E"])
def test_notation_read_off_modules_equals_table1(config):
    with torch.device("meta"):
        net = VGG(config)
    assert notation(net) == paper_table("table1_configs").set_index("config").loc[config, "layers"]


def test_forward_224_gives_1000_scores():
    torch.manual_seed(0)
    net = VGG("A").eval()
    assert net(torch.randn(2, 3, 224, 224)).shape == (2, 1000)


def test_dense_view_equals_forward_at_crop_and_grows_at_384():
    torch.manual_seed(0)
    net = VGG("D", width=0.125).eval()  # channels x1/8, FC 512; FC6 still a 7x7 kernel
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        dense = net.fully_convolutional()(x)
        assert dense.shape == (2, 1000, 1, 1)
        assert (dense[:, :, 0, 0] - net(x)).abs().max() < 1e-5
        assert net.score_map(torch.randn(2, 3, 384, 384)).shape == (2, 1000, 6, 6)
    # the view shares parameters, it copies nothing
    assert {id(p) for p in net.fully_convolutional().parameters()} == {id(p) for p in net.parameters()}


def autograd_nodes(t: torch.Tensor) -> set[str]:
    """Names of the backward nodes that produced ``t``."""
    seen, todo = {}, [t.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and id(node) not in seen:
            seen[id(node)] = type(node).__name__
            todo += [n for n, _ in node.next_functions]
    return set(seen.values())


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("amp", [False, True])
def test_features_forward_equals_the_plain_order_bitwise(config, amp, monkeypatch):
    """Features applies a ReLU that precedes a max-pool after the pool, and on channels-last CPU maps fuses
    conv + ReLU and max-pool + ReLU (vgg.fused): the logits and every gradient equal those of the plain
    order (nn.Sequential's forward over the same modules), bit for bit, fused or not; so does a dense
    score map in evaluation, where a map with an odd side takes the modules' pool."""
    monkeypatch.setattr(fused, "MIN_COMPILED_ELEMENTS", 0)  # these small maps train compiled too
    torch.manual_seed(0)
    net = init_glorot(VGG(config, num_classes=10, width=1 / 16, crop_size=32)).eval()
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    runs = []
    for forward, fmt in ((type(net.features).forward, torch.channels_last),  # fused
                         (nn.Sequential.forward, torch.channels_last),
                         (type(net.features).forward, torch.contiguous_format),  # ReLU after the pool, modules
                         (nn.Sequential.forward, torch.contiguous_format)):
        net.zero_grad(set_to_none=True)
        net.to(memory_format=fmt)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            logits = net.classifier(torch.flatten(forward(net.features, x.contiguous(memory_format=fmt)), 1))
        runs.append([logits.detach(), autograd_nodes(logits)])
        nn.functional.cross_entropy(logits.float(), y).backward()
        runs[-1] += [p.grad for p in net.parameters()]
    layers = list(net.features)
    inner = [i for i, m in enumerate(layers)
             if isinstance(m, nn.Conv2d) and not isinstance(layers[i + 2], nn.MaxPool2d)]  # conv, ReLU, conv
    assert "_MaxPool2x2Backward" in runs[0][1] and ("_ConvReLUBackward" in runs[0][1]) == bool(inner)  # fused
    assert not {"_ConvReLUBackward", "_MaxPool2x2Backward"} & set().union(*(r[1] for r in runs[1:]))
    for a, b in ((runs[0], runs[1]), (runs[2], runs[3])):  # each memory format has its own conv kernels
        assert torch.equal(a[0], b[0]) and all(torch.equal(u, v) for u, v in zip(a[2:], b[2:]))
    with torch.no_grad():
        f = net.features(x)
    assert (f == 0).any() and (f > 0).any()  # the last ReLU after the pool cuts some maxima, not all
    image = torch.randn(2, 3, 64, 96)  # pool5 sees 4x6 maps; at 32x48 (below) 2x3: an odd side
    net.to(memory_format=torch.channels_last)
    for size in ((64, 96), (32, 48)):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            im = image[..., :size[0], :size[1]].contiguous(memory_format=torch.channels_last)
            dense = net.score_map(im)
            with fused.unfused():
                assert torch.equal(dense, net.score_map(im))


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_pool_breaks_ties_as_max_pool(dtype, relu, monkeypatch):
    """ReLU(2x2 max-pool), and the max-pool alone, on maps full of ties (values from {-1, 0, 1, 2}): values
    and gradients equal (relu of) max_pool2d bit for bit (the first maximum of a window in row-major order
    gets its gradient), at two batch sizes (one compiled loop serves both), and without autograd."""
    monkeypatch.setattr(fused, "MIN_COMPILED_ELEMENTS", 0)
    gen = torch.Generator().manual_seed(0)

    def ours(x):
        return fused.pool_relu(nn.MaxPool2d(2, 2), nn.ReLU(), x) if relu else fused.max_pool(nn.MaxPool2d(2, 2), x)

    def reference(x):
        out = nn.functional.max_pool2d(x, 2, 2)
        return torch.relu(out) if relu else out

    for n in (3, 1):
        x = (torch.randint(-1, 3, (n, 5, 8, 6), generator=gen).to(dtype)).contiguous(memory_format=torch.channels_last)
        grad = torch.randn(n, 5, 4, 3, generator=gen).to(dtype)
        outs = []
        for fn in (ours, reference):
            xi = x.clone().requires_grad_()
            out = fn(xi)
            assert ("_MaxPool2x2Backward" in autograd_nodes(out)) == (fn is ours)
            out.backward(grad)
            outs.append((out.detach(), xi.grad))
        assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
        assert outs[0][1].is_contiguous(memory_format=torch.channels_last)
        assert (outs[1][1] != 0).sum() < (x > 0).sum()  # ties: not every maximum gets the gradient
        assert ((outs[1][1] != 0) & (x <= 0)).any() != relu  # without ReLU non-positive maxima get gradients
        with torch.no_grad():
            assert torch.equal(ours(x), outs[1][0])


def test_fused_relu_backward_equals_threshold_backward(monkeypatch):
    """ReLU's mask in conv + ReLU's backward, compiled on large maps, equals aten's threshold_backward bit for
    bit, zeros and negative zeros in the output included, and keeps the channels-last layout."""
    monkeypatch.setattr(fused, "MIN_COMPILED_ELEMENTS", 0)
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        y = torch.randn(2, 4, 6, 6, generator=gen).relu().to(dtype).contiguous(memory_format=torch.channels_last)
        y[0, 0, 0, :2] = torch.tensor([0.0, -0.0], dtype=dtype)
        grad = torch.randn(2, 4, 6, 6, generator=gen).to(dtype).contiguous(memory_format=torch.channels_last)
        out = fused._relu_backward(grad, y)
        assert torch.equal(out, torch.ops.aten.threshold_backward(grad, y, 0))
        assert out.is_contiguous(memory_format=torch.channels_last) and (out == 0).any() and (out != 0).any()
    assert fused._state["compile"]  # the compiled loop ran (a failure to compile falls back to aten)


def test_plain_order_runs_every_layer_as_a_module_inside_its_block():
    """vgg.model.plain_order (the speed studies' baseline): inside the block no fused node is in the graph,
    after it the fused path is back."""
    net = VGG("A", num_classes=10, width=1 / 16, crop_size=32).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with plain_order():
        assert not {"_ConvReLUBackward", "_MaxPool2x2Backward"} & autograd_nodes(net(x))
    assert "_ConvReLUBackward" in autograd_nodes(net(x))


def test_fused_conv_relu_trains_the_parameters_that_require_grad():
    """A conv with its weight frozen still learns its bias through the fused path, as through the modules."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1).to(memory_format=torch.channels_last)
    conv.weight.requires_grad_(False)
    x = torch.randn(2, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    out = fused.conv_relu(conv, nn.ReLU(), x)
    assert "_ConvReLUBackward" in autograd_nodes(out)
    out.sum().backward()
    fused_grad, conv.bias.grad = conv.bias.grad, None
    torch.relu(conv(x)).sum().backward()
    assert torch.equal(fused_grad, conv.bias.grad) and conv.weight.grad is None


def test_fused_layers_leave_hooked_modules_and_small_maps_to_the_modules():
    """A hook on a conv or a pool still fires on channels-last CPU input (that pair runs as modules); maps
    below MIN_COMPILED_ELEMENTS train with the modules' max-pool (no compile), conv + ReLU still fused."""
    net = VGG("A", num_classes=10, width=1 / 16, crop_size=32).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    b = VGG("B", num_classes=10, width=1 / 16, crop_size=32).to(memory_format=torch.channels_last)
    nodes = autograd_nodes(b(x))
    assert "_ConvReLUBackward" in nodes and "_MaxPool2x2Backward" not in nodes
    assert "MaxPool2DWithIndicesBackward0" in nodes
    seen = []
    net.features[0].register_forward_hook(lambda m, i, o: seen.append("conv"))
    net.features[2].register_forward_hook(lambda m, i, o: seen.append("pool"))
    net(x)
    assert seen == ["conv", "pool"]


def test_state_dict_round_trips_with_torchvision_vgg16():
    torch.manual_seed(0)
    tv = torchvision.models.vgg16().eval()
    ours = VGG("D").eval()
    ours.load_state_dict(tv.state_dict(), strict=True)
    back = torchvision.models.vgg16().eval()
    back.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(ours(x), tv(x), atol=1e-5)
        assert torch.equal(back(x), tv(x))


def test_lrn_only_in_a_lrn_with_paper_parameters():
    with torch.device("meta"):
        for c in CONFIGS:
            has = any(isinstance(m, nn.LocalResponseNorm) for m in VGG(c).modules())
            assert has == (c == "A-LRN")
    lrn = [m for m in VGG("A-LRN", width=0.125, crop_size=32).modules() if isinstance(m, nn.LocalResponseNorm)][0]
    a = torch.randn(1, 8, 3, 3) * 10
    # AlexNet: b_i = a_i / (k + alpha * sum_{j in window of 5} a_j^2)^beta, k=2, alpha=1e-4, beta=0.75
    sq = torch.nn.functional.pad(a ** 2, (0, 0, 0, 0, 2, 2))
    window = sum(sq[:, j:j + 8] for j in range(5))
    assert torch.allclose(lrn(a), a / (2 + 1e-4 * window) ** 0.75, atol=1e-6)


def test_b5x5_has_5x5_layers_and_c_has_unpadded_1x1():
    with torch.device("meta"):
        b5 = [m for m in VGG("B-5x5").modules() if isinstance(m, nn.Conv2d)]
        c = [m for m in VGG("C").modules() if isinstance(m, nn.Conv2d)]
    assert [m.kernel_size for m in b5] == [(5, 5)] * 5 and all(m.padding == (2, 2) for m in b5)
    ones = [m for m in c if m.kernel_size == (1, 1)]
    assert len(ones) == 3 and all(m.padding == (0, 0) for m in ones)


def test_init_from_copies_exactly_first_four_convs_and_three_fcs():
    torch.manual_seed(0)
    a = init_glorot(VGG("A", num_classes=10, width=0.125, crop_size=32))
    d = init_normal(VGG("D", num_classes=10, width=0.125, crop_size=32))
    copied = init_from(d, a)
    # A's convs 1..4 are conv1_1, conv2_1, conv3_1, conv3_2 -> the same (block, position) in D
    expect = {0: 0, 3: 5, 6: 10, 8: 12}  # A features index -> D features index
    for ia, idd in expect.items():
        assert torch.equal(d.features[idd].weight, a.features[ia].weight)
    for i in (0, 3, 6):
        assert torch.equal(d.classifier[i].weight, a.classifier[i].weight)
    assert len(copied) == 2 * (4 + 3)
    others = [m for i, m in enumerate(d.features) if isinstance(m, nn.Conv2d) and i not in expect.values()]
    assert others and all(m.weight.shape != a.features[0].weight.shape or
                          not torch.equal(m.weight, a.features[0].weight) for m in others)
    assert all(m.weight.std() < 0.02 for m in others)  # still N(0, 0.01)


def test_init_from_refuses_mismatched_shapes():
    from vgg.errors import UserError
    a = VGG("A", num_classes=10, width=0.125, crop_size=32)
    with pytest.raises(UserError, match="shape"):
        init_from(VGG("D", num_classes=10, width=0.25, crop_size=32), a)
    with pytest.raises(UserError, match="cannot initialise from net A"):
        init_from(VGG("B-5x5", num_classes=10, width=0.125, crop_size=32), a)


def test_paper_numbers_copy_matches_shared():
    from pathlib import Path
    shared = Path(__file__).resolve().parents[2] / "shared" / "paper"
    if not shared.is_dir():
        pytest.skip("../shared/paper not present")
    for f in shared.glob("*.csv"):
        pd.testing.assert_frame_equal(paper_table(f.stem), pd.read_csv(f, dtype={"train_scale": str,
                                      "test_scale": str, "test_scales": str}))


@pytest.mark.parametrize("amp", [False, True])
def test_evaluation_casts_weights_once_and_follows_every_change_of_them(amp):
    """Without autograd the weights are cast (and laid out) once per value (vgg.fused.cast_once): an
    in-place update, a loaded state dict and a moved parameter each give the new weights' score map,
    equal to a net built with them; with autograd, gradients still reach every parameter."""
    def d_net():
        return init_glorot(VGG("D", num_classes=10, width=1 / 16, crop_size=32)).eval().to(
            memory_format=torch.channels_last)

    torch.manual_seed(0)
    net, other = d_net(), d_net()
    x = torch.randn(2, 3, 64, 96).contiguous(memory_format=torch.channels_last)

    def scores(model):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            return model.score_map(x)

    first = scores(net)
    assert torch.equal(first, scores(net)) and net.features[0].__dict__.get("_cast_once")  # cached, same values
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(1.5)  # in place, as an optimiser step
    fresh = d_net()
    fresh.load_state_dict(net.state_dict())
    assert not torch.equal(scores(net), first) and torch.equal(scores(net), scores(fresh))
    net.load_state_dict(other.state_dict())
    assert torch.equal(scores(net), scores(other))
    net.to(memory_format=torch.contiguous_format).to(memory_format=torch.channels_last)
    assert torch.equal(scores(net), scores(other))
    net.train()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        net(torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)).float().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
