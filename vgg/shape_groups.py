"""Validation images grouped by their shape after the test-time rescale, for batched evaluation.

Dense evaluation (and multi-crop) rescales every image isotropically to shortest side Q, so the
images of one batch must share the rescaled (h, w). Photographs come in few aspect ratios (most of
ILSVRC-2012 is 4:3 or 3:4 at 500 px), so grouping the validation images by
:func:`vgg.data.rescaled_size` at Q gives a few large groups and a tail of small ones. A group is
cut into batches of at most ``max_pixels`` rescaled pixels (at least one image), so a batch's
memory does not depend on Q.

Sizes come from the file headers (:func:`vgg.data.image_sizes`: no decoding, upright as
:func:`vgg.data.load_rgb` shows the image, cached per file list).

The tail of rare shapes still gives batches of one or two images, and a forward pass has a cost of its
own: :func:`padded_batches` lays consecutive small batches that share their height (or their width) on
one canvas, each image at the top left, for dense evaluation's padded path
(:class:`vgg.model.Features`).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from .data import rescaled_size

#: Rescaled pixels per evaluation batch: 24 ILSVRC-2012 photographs (4:3) at Q = 512, 328 images at
#: 160 x 160 (the imagenette preset's Q = 256).
EVAL_PIXELS = 2 ** 23
#: A canvas holds at most this many times its images' own pixels (the rest is padding, computed and thrown away).
MAX_PADDING = 1.1


def shape_groups(sizes: np.ndarray, q: int, max_pixels: int = EVAL_PIXELS) -> list[np.ndarray]:
    """Positions (into ``sizes``) in batches whose images share their size after rescaling to
    shortest side ``q``: groups in order of shape, positions ascending within a group, each group cut
    into batches of at most ``max_pixels`` rescaled pixels (one image at least). Unreadable sizes
    (negative) form their own one-image batches, so the loader still reports them."""
    sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
    groups: dict[tuple[int, int], list[int]] = {}
    batches: list[np.ndarray] = []
    for i, (h, w) in enumerate(sizes.tolist()):
        if h <= 0 or w <= 0:
            batches.append(np.array([i], dtype=np.int64))
            continue
        groups.setdefault(rescaled_size(h, w, q), []).append(i)
    for (h, w), members in sorted(groups.items()):
        per_batch = max(1, max_pixels // (h * w))
        batches += [np.asarray(members[k:k + per_batch], dtype=np.int64) for k in range(0, len(members), per_batch)]
    return batches


def stack_by_shape(images: list[torch.Tensor], labels: torch.Tensor, positions: torch.Tensor):
    """[(x, labels, positions)]: the images stacked by shape, in order of first appearance (a header
    that misstated a size costs a smaller batch, not a wrong one)."""
    shapes: dict[tuple, list[int]] = {}
    for k, x in enumerate(images):
        shapes.setdefault(tuple(x.shape), []).append(k)
    return [(torch.stack([images[k] for k in ks]), labels[ks], positions[ks]) for ks in shapes.values()]


def count_shapes(sizes: np.ndarray, q: int) -> int:
    """How many distinct rescaled shapes the readable images have at ``q``."""
    return len({rescaled_size(h, w, q) for h, w in np.asarray(sizes).reshape(-1, 2).tolist() if h > 0 and w > 0})


def padded_batches(batches: Iterable[tuple], max_pixels: int = EVAL_PIXELS // 2,
                   max_padding: float = MAX_PADDING) -> Iterator[tuple]:
    """(x, labels, positions, sizes) from batches (x, labels, positions) of one shape each, in the order
    given: consecutive batches that share their height or their width are laid on one zero canvas of their
    largest size, each image at the top left (``sizes``: each image's (h, w)), while the canvas stays within
    ``max_pixels`` (by default half an evaluation batch: a batch and its flips in one pass) and within
    ``max_padding`` x its images' pixels. Batches of one shape need no padding: they come out joined (one
    batch: as it came in) with ``sizes`` None."""
    group: list[tuple] = []
    heights: set[int] = set()
    widths: set[int] = set()
    n = own = 0

    def flush():
        if len(group) == 1:
            x, y, pos = group[0]
            return x, y, pos, None
        labels = torch.cat([torch.as_tensor(g[1]) for g in group])
        positions = torch.cat([torch.as_tensor(g[2]) for g in group])
        if len(heights) == len(widths) == 1:
            return torch.cat([g[0] for g in group]), labels, positions, None
        first = group[0][0]
        x = first.new_zeros((n, first.shape[1], max(heights), max(widths)))
        sizes, k = [], 0
        for xb, _, _ in group:
            x[k:k + len(xb), :, :xb.shape[-2], :xb.shape[-1]] = xb
            sizes += [tuple(xb.shape[-2:])] * len(xb)
            k += len(xb)
        return x, labels, positions, sizes

    for batch in batches:
        x = batch[0]
        h, w = x.shape[-2:]
        if group:
            canvas = (n + len(x)) * max(heights | {h}) * max(widths | {w})
            shares = heights == {h} or widths == {w}
            if shares and canvas <= max_pixels and canvas <= max_padding * (own + len(x) * h * w):
                group.append(batch)
                heights.add(h)
                widths.add(w)
                n, own = n + len(x), own + len(x) * h * w
                continue
            yield flush()
        group, heights, widths, n, own = [batch], {h}, {w}, len(x), len(x) * h * w
    if group:
        yield flush()
