"""The VGG network of Table 1, for every configuration.

Layout follows ``torchvision.models.vgg``: ``features`` (conv + ReLU, max-pool after
each block) and ``classifier`` (FC6, ReLU, dropout, FC7, ReLU, dropout, FC8), so the
state dicts of A/B/D/E load into ``torchvision.models.vgg11/13/16/19`` and back.
Unlike torchvision there is no ``AdaptiveAvgPool2d(7, 7)``: the paper has none, and
dense evaluation needs the score map to grow with the test scale Q.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from . import fused
from .configs import LRN, LRN_PARAMS, Conv, blocks, check_config
from .errors import UserError

FC_UNITS = 4096


def scaled(n: int, width: float) -> int:
    """Channel / unit count after the width multiplier (at least 1)."""
    return max(1, int(round(n * width)))


def feature_size(crop_size: int, num_blocks: int = 5) -> int:
    """Side of the last feature map for a square input (each 2x2 max-pool floors)."""
    side = crop_size
    for _ in range(num_blocks):
        side //= 2
    return side


def channel_band(channels: int, size: int, device=None) -> torch.Tensor:
    """(C, C) 0/1 matrix: entry (i, j) is 1 when channel i lies in channel j's LRN window
    j - size//2 .. j + (size-1)//2 (PyTorch's window; zero-padded at the ends)."""
    i = torch.arange(channels, device=device)
    return ((i[:, None] >= i[None, :] - size // 2) & (i[:, None] <= i[None, :] + (size - 1) // 2)).float()


def inverse_power(d: torch.Tensor, beta: float) -> torch.Tensor:
    """d ** -beta for d > 0 as torch.compile makes it fast on CPU: rsqrt(d) * rsqrt(sqrt(d)) for the
    paper's beta = 0.75, exp(-beta log d) otherwise (inductor's pow with a fractional exponent is a
    scalar loop: measured 2-3x slower for the whole LRN forward and backward)."""
    if beta == 0.75:
        return torch.rsqrt(d) * torch.rsqrt(torch.sqrt(d))
    return torch.exp(torch.log(d) * -beta)


def lrn_nhwc(x: torch.Tensor, band: torch.Tensor, alpha_over_n: float, beta: float, k: float) -> torch.Tensor:
    """b = a / (k + alpha/n * sum_window a^2)^beta with channels last: the window sum is one
    (N*H*W, C) x (C, C) matmul in the input's dtype (bf16 under autocast: half the memory traffic;
    k = 2 dominates the divisor, so its rounding does not reach the output), the rest in float32;
    returned in the input's dtype."""
    xh = x.permute(0, 2, 3, 1)
    d = torch.matmul(xh * xh, band.to(x.dtype)).float() * alpha_over_n + k
    return (xh.float() * inverse_power(d, beta)).to(x.dtype).permute(0, 3, 1, 2)


def lrn_nhwc_inference(x: torch.Tensor, band: torch.Tensor, alpha_over_n: float, beta: float,
                       k: float) -> torch.Tensor:
    """lrn_nhwc without autograd (evaluation), its float32 divisor computed in place in one buffer:
    eager on CPU, first touching each new buffer costs more than the arithmetic on it."""
    xh = x.permute(0, 2, 3, 1)
    d = torch.matmul(xh * xh, band.to(x.dtype)).float()
    return d.mul_(alpha_over_n).add_(k).pow_(-beta).mul_(xh).to(x.dtype).permute(0, 3, 1, 2)


_compiled_lrn = None


def _lrn_for_training():
    """lrn_nhwc fused by torch.compile (forward and backward in a few loops: 3.5x faster per
    step on 2 cores), or the eager function where compile is off (VGG_COMPILE=0) or fails."""
    global _compiled_lrn
    if _compiled_lrn is None:
        _compiled_lrn = lrn_nhwc
        if os.environ.get("VGG_COMPILE", "1") != "0" and hasattr(torch, "compile"):
            try:
                _compiled_lrn = torch.compile(lrn_nhwc, dynamic=False)
            except Exception:  # no inductor backend on this platform
                _compiled_lrn = lrn_nhwc
    return _compiled_lrn


class LocalResponseNorm(nn.LocalResponseNorm):
    """``nn.LocalResponseNorm`` (same parameters, same result within bf16 rounding), fast on CPU.

    PyTorch's version sums squares with ``avg_pool3d`` over a padded 5-D view (no bf16 kernel,
    slow forward and backward on CPU: A-LRN trained 5x slower than A); here the window sum is
    a matmul with a banded 0/1 matrix on channels-last data (see :func:`lrn_nhwc`): compiled for
    training on CPU, in place for evaluation (:func:`lrn_nhwc_inference`).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        band = channel_band(x.shape[1], self.size, x.device)
        fn = lrn_nhwc_inference
        if torch.is_grad_enabled() and x.requires_grad:
            fn = _lrn_for_training() if x.device.type == "cpu" else lrn_nhwc
        with torch.autocast(x.device.type, enabled=False):
            try:
                return fn(x, band, self.alpha / self.size, self.beta, self.k)
            except Exception:
                if fn in (lrn_nhwc, lrn_nhwc_inference):
                    raise
                global _compiled_lrn
                _compiled_lrn = lrn_nhwc  # compile failed at run time (e.g. no C++ compiler): eager
                return lrn_nhwc(x, band, self.alpha / self.size, self.beta, self.k)


def size_runs(sizes: list[tuple[int, int]]) -> list[tuple[int, int, tuple[int, int]]]:
    """[(start, stop, (h, w))]: the runs of consecutive images of one size in a padded batch."""
    runs: list[tuple[int, int, tuple[int, int]]] = []
    for k, hw in enumerate(sizes):
        if runs and runs[-1][2] == hw:
            runs[-1] = (runs[-1][0], k + 1, hw)
        else:
            runs.append((k, k + 1, hw))
    return runs


def zero_padding_(x: torch.Tensor, sizes: list[tuple[int, int]]) -> torch.Tensor:
    """Sets every pixel of image k outside its top-left ``sizes[k]`` region to 0, in place: a padded
    batch's borders then hold what a conv's zero padding reads at each image's own edge."""
    for a, b, (h, w) in size_runs(sizes):
        x[a:b, :, h:, :] = 0
        x[a:b, :, :h, w:] = 0
    return x


class Features(nn.Sequential):
    """The conv part of Table 1 as an ``nn.Sequential`` (torchvision's layout and state-dict keys) whose
    forward applies each ReLU that directly precedes a max-pool after the pool instead. ReLU is monotone,
    so max-pool(ReLU(x)) == ReLU(max-pool(x)), values and gradients alike (ties keep the first maximum
    both ways, and a window whose maximum is <= 0 gets no gradient either way); that ReLU then runs on a
    quarter of its layer's elements, forward and backward. On CPU the pairs run fused (vgg.fused): a
    conv and its ReLU as one oneDNN convolution, a max-pool and the ReLU after it as one pass (a max-pool
    without one, A-LRN's after LRN, as one pass too).

    ``sizes`` (evaluation only): the batch is images of several sizes padded at the bottom and right, image
    k's pixels in its top-left ``sizes[k]``, the rest 0. Before each conv the padding is set to 0 again, so
    every conv reads at an image's edge what its own zero padding gives, and each max-pool's outputs
    inside an image's (floored) region read only that image: there the result is the image's alone."""

    def forward(self, x: torch.Tensor, sizes: list[tuple[int, int]] | None = None) -> torch.Tensor:
        if sizes is not None and torch.is_grad_enabled():
            raise ValueError("padded batches of several sizes are for evaluation (torch.no_grad)")
        layers = list(self)
        i, clean = 0, True
        while i < len(layers):
            layer, after = layers[i], layers[i + 1:i + 3]
            if sizes is not None and isinstance(layer, nn.Conv2d) and not clean:
                x = zero_padding_(x, sizes)
            clean = sizes is None
            if sizes is not None and (isinstance(layer, nn.MaxPool2d) or (
                    isinstance(layer, nn.ReLU) and after and isinstance(after[0], nn.MaxPool2d))):
                sizes = [(pooled(h), pooled(w)) for h, w in sizes]
            if isinstance(layer, nn.ReLU) and after and isinstance(after[0], nn.MaxPool2d):
                x = fused.pool_relu(after[0], layer, x)
                i += 2
            elif (isinstance(layer, nn.Conv2d) and after and isinstance(after[0], nn.ReLU)
                  and not (len(after) > 1 and isinstance(after[1], nn.MaxPool2d))):
                x = fused.conv_relu(layer, after[0], x)
                i += 2
            elif isinstance(layer, nn.MaxPool2d):
                x = fused.max_pool(layer, x)
                i += 1
            elif isinstance(layer, nn.Conv2d):
                x = fused.conv_before_pool(layer, x)
                i += 1
            else:
                x = layer(x)
                i += 1
        return x


@contextmanager
def plain_order():
    """Inside the block every :class:`Features` runs ``nn.Sequential``'s forward: each layer its own module
    in Table 1's order (each ReLU before its max-pool). The same values and gradients, slower; for the
    speed studies' comparisons."""
    saved = Features.forward
    Features.forward = nn.Sequential.forward
    try:
        yield
    finally:
        Features.forward = saved


def pooled(side: int) -> int:
    """A side after one of Table 1's 2x2, stride-2 max-pools (floored, as PyTorch and Caffe's pools here)."""
    return side // 2


def make_features(config: str, width: float = 1.0) -> tuple[Features, int]:
    layers: list[nn.Module] = []
    channels = 3
    for block in blocks(config):
        for layer in block:
            if isinstance(layer, Conv):
                out = scaled(layer.channels, width)
                layers += [nn.Conv2d(channels, out, layer.kernel, padding=layer.padding), nn.ReLU(inplace=True)]
                channels = out
            elif isinstance(layer, LRN):
                # PyTorch divides alpha by size (as Caffe does); the paper's alpha is per sum.
                p = LRN_PARAMS
                alpha = p["alpha"] * p["size"] if layer.sum_term else 0.0
                layers.append(LocalResponseNorm(p["size"], alpha=alpha, beta=p["beta"], k=p["k"]))
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return Features(*layers), channels


class VGG(nn.Module):
    """One VGG for all configurations.

    Args:
        config: a name from :data:`vgg.configs.CONFIGS`.
        num_classes: width of FC8.
        width: multiplier on conv channels and FC units (1.0 = the paper).
        crop_size: training crop; sets FC6's fan-in (7x7x512 at 224).
        dropout: dropout probability on FC6 and FC7 (0.5 in the paper).
    """

    def __init__(self, config: str = "D", num_classes: int = 1000, width: float = 1.0,
                 crop_size: int = 224, dropout: float = 0.5):
        super().__init__()
        self.config = check_config(config)
        self.num_classes = num_classes
        self.width = width
        self.crop_size = crop_size
        self.kernel = feature_size(crop_size)
        if self.kernel < 1:
            raise UserError(f"crop size {crop_size} is too small: five 2x2 max-pools need at least 32 px")
        self.features, channels = make_features(self.config, width)
        units = scaled(FC_UNITS, width)
        self.classifier = nn.Sequential(
            nn.Linear(channels * self.kernel * self.kernel, units), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(units, units), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(units, num_classes),
        )

    def hparams(self) -> dict:
        return {"config": self.config, "num_classes": self.num_classes, "width": self.width,
                "crop_size": self.crop_size}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        if f.shape[-2:] != (self.kernel, self.kernel):
            raise ValueError(f"input {tuple(x.shape[-2:])} gives a {tuple(f.shape[-2:])} feature map, "
                             f"the classifier needs {self.kernel}x{self.kernel}: crop to {self.crop_size} "
                             "or use score_map() for dense evaluation")
        return self.classifier(torch.flatten(f, 1))

    def score_map(self, x: torch.Tensor, sizes: list[tuple[int, int]] | None = None) -> torch.Tensor:
        """Dense evaluation: FC6 as a kxk conv, FC7/FC8 as 1x1 convs, same parameters.

        Returns a (N, num_classes, H', W') class score map; H' = W' = 1 at the crop size. ``sizes``: a
        padded batch of images of several sizes (:class:`Features`); image k's scores are then the
        top-left :meth:`map_sizes` ``[k]`` of its map.
        """
        f = self.features(x) if sizes is None else self.features(x, sizes)
        if min(f.shape[-2:]) < self.kernel:
            raise UserError(f"test image {tuple(x.shape[-2:])} is smaller than the crop {self.crop_size}: "
                            "choose a test scale Q >= the crop size")
        fc6, _, drop6, fc7, _, drop7, fc8 = self.classifier

        def as_conv(fc: nn.Linear, k: int) -> tuple[torch.Tensor, torch.Tensor]:  # weight and bias of a k x k conv
            return (fused.head_param(fc, "weight", (fc.out_features, -1, k, k), f),
                    fused.head_param(fc, "bias", (-1,), f))

        h = F.relu(F.conv2d(f, *as_conv(fc6, self.kernel)))
        h = F.relu(F.conv2d(drop6(h), *as_conv(fc7, 1)))
        return F.conv2d(drop7(h), *as_conv(fc8, 1))

    def map_sizes(self, sizes: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """The class score map's (H', W') of each input size: five floored max-pools, then FC6's kxk window."""
        pools = sum(isinstance(m, nn.MaxPool2d) for m in self.features)
        out = []
        for h, w in sizes:
            for _ in range(pools):
                h, w = pooled(h), pooled(w)
            out.append((h - self.kernel + 1, w - self.kernel + 1))
        return out

    def fully_convolutional(self) -> "FullyConvolutional":
        return FullyConvolutional(self)


class FullyConvolutional(nn.Module):
    """A view of a :class:`VGG` whose forward is :meth:`VGG.score_map` (no weight copy)."""

    def __init__(self, net: VGG):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.score_map(x)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def multiply_adds(model: VGG, size: int | None = None) -> int:
    """Multiply-adds of one forward pass on a size x size image (convs and FCs)."""
    side = size or model.crop_size
    channels, total = 3, 0
    for m in model.features:
        if isinstance(m, nn.Conv2d):
            total += side * side * m.out_channels * channels * m.kernel_size[0] * m.kernel_size[1]
            channels = m.out_channels
        elif isinstance(m, nn.MaxPool2d):
            side //= 2
    return total + sum(m.in_features * m.out_features for m in model.classifier if isinstance(m, nn.Linear))


def dense_multiply_adds(model: VGG, h: int, w: int) -> int:
    """Multiply-adds of dense evaluation of one h x w image (one flip): the convs at h x w (each
    max-pool floors), FC6 as a k x k conv and FC7 / FC8 as 1x1 convs at every score-map position."""
    channels, total = 3, 0
    for m in model.features:
        if isinstance(m, nn.Conv2d):
            total += h * w * m.out_channels * channels * m.kernel_size[0] * m.kernel_size[1]
            channels = m.out_channels
        elif isinstance(m, nn.MaxPool2d):
            h, w = h // 2, w // 2
    positions = max(h - model.kernel + 1, 0) * max(w - model.kernel + 1, 0)
    return total + positions * sum(m.in_features * m.out_features for m in model.classifier
                                   if isinstance(m, nn.Linear))


def notation(model: VGG) -> str:
    """The layer list of ``model`` in the paper's Table 1 notation, read off the modules."""
    parts, block = [], []
    for m in model.features:
        if isinstance(m, nn.Conv2d):
            block.append(f"conv{m.kernel_size[0]}-{round(m.out_channels / model.width)}")
        elif isinstance(m, nn.LocalResponseNorm):
            block.append("LRN")
        elif isinstance(m, nn.MaxPool2d):
            parts += [" ".join(block), "maxpool"]
            block = []
    fcs = [m for m in model.classifier if isinstance(m, nn.Linear)]
    head = " ".join(f"FC-{round(m.out_features / model.width) if m is not fcs[-1] else m.out_features}"
                    for m in fcs)
    return " | ".join(parts + [head + " soft-max"])


def weight_layers(model: nn.Module) -> int:
    return sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
