"""Conv + ReLU and max-pool (+ ReLU) as single passes over channels-last CPU activations.

Each gives the values and the gradients of the modules applied one after the other, bit for bit
(tests/test_models.py checks every config in float32 and bfloat16); they save passes over the
activation maps, which took over a third of a training step at the imagenette preset's width on 2 CPU
cores (docs/performance.md):

- :func:`conv_relu`: oneDNN's convolution with ReLU as a post-op (``mkldnn::_convolution_pointwise``,
  the op torch.compile's CPU backend emits for inference) and its own backward: ReLU's mask on the
  output, then ``aten::convolution_backward``, what ``nn.Conv2d``'s autograd calls.
- :func:`pool_relu`: ReLU(2x2 max-pool, stride 2) as elementwise maxima of the four window positions;
  :func:`max_pool` the same without the ReLU (A-LRN's pool, after LRN).
  In training, forward and backward are each one loop compiled by torch.compile; the backward sends a
  window's gradient to its first maximum in row-major order, as ``aten::max_pool2d`` does. Without
  autograd (evaluation) eager, at any even map size: dense evaluation's many shapes compile nothing.

Without autograd (evaluation, validation) each weight is cast to the compute dtype and layout once and
kept while it is unchanged (:func:`cast_once`; the convs before a pool and the FC layers of the dense
score map too): at one image per pass the casts were a third of dense evaluation's time.

Compiling costs 1-2 s per map shape and process, so only maps of at least MIN_COMPILED_ELEMENTS (the
imagenette geometry's blocks 1-3) train with compiled loops: the pools above, and ReLU's mask in
:func:`conv_relu`'s backward (aten's ``threshold_backward`` takes twice as long on these maps);
smaller maps train with the modules' pool and aten's mask.

Anything else takes the modules' own path (so their hooks fire): CUDA, dtypes other than float32 and
bfloat16, maps that are not channels-last or have an odd side, convolutions with groups or a padding
mode, modules with hooks, ``VGG_FUSED=0`` in the environment, or :func:`unfused` around the code.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

_state = {"on": os.environ.get("VGG_FUSED", "1") != "0", "conv": True, "compile": None}
MIN_COMPILED_ELEMENTS = 2 ** 22  # N * C * H * W of a map whose pool + ReLU trains compiled


@contextmanager
def unfused():
    """Inside the block every layer runs as its own module (for comparisons and tests)."""
    saved = _state["on"]
    _state["on"] = False
    try:
        yield
    finally:
        _state["on"] = saved


def _plain(*modules: nn.Module) -> bool:
    """True where no hook is registered on these modules or on every module."""
    from torch.nn.modules import module as m
    if m._global_forward_hooks or m._global_forward_pre_hooks or m._global_backward_hooks:
        return False
    return not any(mod._forward_hooks or mod._forward_pre_hooks or mod._backward_hooks
                   or mod._backward_pre_hooks for mod in modules)


def _compute_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The dtype a convolution of ``x`` runs in here (autocast's on CPU), or None if not fused."""
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
    return dtype if dtype in (torch.float32, torch.bfloat16) else None


def _channels_last_cpu(x: torch.Tensor) -> bool:
    return (_state["on"] and x.device.type == "cpu" and x.dim() == 4
            and x.is_contiguous(memory_format=torch.channels_last))


# -- conv + ReLU ---------------------------------------------------------------------------------

def cast_once(owner: nn.Module, name: str, tensor: torch.Tensor, dtype: torch.dtype,
              memory_format: torch.memory_format = torch.preserve_format) -> torch.Tensor:
    """``tensor`` (a parameter of ``owner`` or a view of one) in ``dtype`` and ``memory_format``: cast once
    and kept on ``owner`` while the parameter is unchanged (its storage and version), when no gradient
    is recorded (evaluation: many forward passes with the same weights; at one image per pass the casts
    took a third of dense evaluation's time). With autograd on, cast on every call, inside the graph."""
    def cast() -> torch.Tensor:
        t = tensor.to(dtype)
        return t if memory_format == torch.preserve_format else t.contiguous(memory_format=memory_format)

    if torch.is_grad_enabled() or tensor.dtype == dtype and memory_format == torch.preserve_format:
        return cast()
    key = (dtype, memory_format, tensor.data_ptr(), tensor._version, tuple(tensor.shape), tuple(tensor.stride()))
    cache = owner.__dict__.setdefault("_cast_once", {})
    if cache.get(name, (None,))[0] != key:
        cache[name] = (key, cast())
    return cache[name][1]


def head_param(fc: nn.Linear, name: str, shape: tuple[int, ...], x: torch.Tensor) -> torch.Tensor:
    """``fc``'s weight or bias viewed as ``shape`` for the dense score map of ``x`` (FC layers as convs):
    on channels-last CPU maps in the compute dtype and the map's layout, cast once without autograd
    (:func:`cast_once`); elsewhere (GPU, :func:`unfused`) the plain view, for autocast to cast."""
    t = getattr(fc, name).view(shape)
    dtype = _compute_dtype(x)
    if not (_channels_last_cpu(x) and dtype is not None):
        return t
    return cast_once(fc, f"{name}{tuple(shape)}", t, dtype,
                     torch.channels_last if t.dim() == 4 else torch.preserve_format)


def _pointwise_conv_relu(x, w, b, conv: nn.Conv2d) -> torch.Tensor:
    return torch.ops.mkldnn._convolution_pointwise(x, w, b, list(conv.padding), list(conv.stride),
                                                   list(conv.dilation), 1, "relu", [], "")


class _ConvReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, conv):
        y = _pointwise_conv_relu(x, w, b, conv)
        ctx.save_for_backward(x, w, y)
        ctx.geometry = (list(conv.stride), list(conv.padding), list(conv.dilation))
        ctx.has_bias = b is not None
        return y

    @staticmethod
    def backward(ctx, grad):
        x, w, y = ctx.saved_tensors
        stride, padding, dilation = ctx.geometry
        g = _relu_backward(grad, y)
        gx, gw, gb = torch.ops.aten.convolution_backward(
            g, x, w, [w.shape[0]] if ctx.has_bias else None, stride, padding, dilation, False, [0, 0], 1,
            [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]])
        return gx, gw, gb, None


def _conv_dtype(conv: nn.Conv2d, x: torch.Tensor, *modules: nn.Module) -> torch.dtype | None:
    """The dtype ``conv`` of ``x`` runs in on this module's path, or None where it takes the module's own:
    off the channels-last CPU path, in another dtype, with a padding mode or string padding, or with
    hooks on ``conv`` or ``modules``."""
    dtype = _compute_dtype(x)
    if (_channels_last_cpu(x) and dtype is not None and conv.padding_mode == "zeros"
            and not isinstance(conv.padding, str) and _plain(conv, *modules)):
        return dtype
    return None


def conv_before_pool(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """conv(x) (a conv whose ReLU runs after the max-pool); without autograd, its weights cast once."""
    dtype = _conv_dtype(conv, x)
    if torch.is_grad_enabled() or dtype is None:
        return conv(x)
    w = cast_once(conv, "weight", conv.weight, dtype)
    b = None if conv.bias is None else cast_once(conv, "bias", conv.bias, dtype)
    with torch.autocast("cpu", enabled=False):
        return F.conv2d(x.to(dtype), w, b, conv.stride, conv.padding, conv.dilation, conv.groups)


def conv_relu(conv: nn.Conv2d, relu: nn.ReLU, x: torch.Tensor) -> torch.Tensor:
    """relu(conv(x)), as one oneDNN convolution where it can be (see the module docstring)."""
    dtype = _conv_dtype(conv, x, relu)
    if not (_state["conv"] and dtype is not None and conv.groups == 1):
        return relu(conv(x))
    w = cast_once(conv, "weight", conv.weight, dtype, torch.channels_last)
    b = None if conv.bias is None else cast_once(conv, "bias", conv.bias, dtype)
    x = x.to(dtype)
    try:
        with torch.autocast("cpu", enabled=False):
            if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad or (b is not None and b.requires_grad)):
                return _ConvReLU.apply(x, w, b, conv)
            return _pointwise_conv_relu(x, w, b, conv)
    except RuntimeError:  # no oneDNN kernel for this dtype on this CPU: the modules from now on
        _state["conv"] = False
        return relu(conv(x))


# -- max-pool + ReLU -----------------------------------------------------------------------------

def _windows(y: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) channels-last -> (N, H/2, 2, W/2, 2, C) view: each 2x2 window's four positions."""
    n, c, h, w = y.shape
    return y.permute(0, 2, 3, 1).reshape(n, h // 2, 2, w // 2, 2, c)


def max_pool_forward(y: torch.Tensor, relu: bool = True) -> torch.Tensor:
    """The 2x2 max (ReLU of it if ``relu``) of channels-last ``y`` (N, C, H, W) with even H and W,
    channels-last."""
    n, c, h, w = y.shape
    rows = y.permute(0, 2, 3, 1).reshape(n * h // 2, 2, w * c)  # the two rows of each window, contiguous
    r = torch.maximum(rows[:, 0], rows[:, 1]).reshape(n, h // 2, w // 2, 2, c)
    out = torch.maximum(r[..., 0, :], r[..., 1, :])
    return (out.relu() if relu else out).permute(0, 3, 1, 2)


def max_pool_backward(y: torch.Tensor, out: torch.Tensor, grad: torch.Tensor, relu: bool = True) -> torch.Tensor:
    """The gradient of :func:`max_pool_forward` at ``y`` given its output ``out``: each window's
    gradient goes to its first maximum in the order (0,0), (0,1), (1,0), (1,1) (aten's max_pool2d);
    with ``relu``, none where the output is not positive (ReLU's)."""
    v = _windows(y)
    n, c, h2, w2 = out.shape
    o = out.permute(0, 2, 3, 1)[:, :, None, :, None, :]
    g = grad.permute(0, 2, 3, 1)[:, :, None, :, None, :]
    hit = v == o
    h00, h01, h10 = hit[:, :, :1, :, :1], hit[:, :, :1, :, 1:], hit[:, :, 1:, :, :1]
    first = torch.arange(2, device=y.device) == 0
    top, left = first.reshape(1, 1, 2, 1, 1, 1), first.reshape(1, 1, 1, 1, 2, 1)
    earlier = (~top & (h00 | h01)) | (top & ~left & h00) | (~top & ~left & h10)  # a maximum before it
    keep = hit & ~earlier & (o > 0) if relu else hit & ~earlier
    gi = torch.where(keep, g, torch.zeros((), dtype=g.dtype))
    return gi.reshape(n, 2 * h2, 2 * w2, c).permute(0, 3, 1, 2)


def relu_backward(grad: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """ReLU's gradient given its output ``y``: ``grad`` where y > 0, else 0 (aten's threshold_backward)."""
    return torch.where(y <= 0, torch.zeros((), dtype=grad.dtype), grad)


def _compiled():
    """{name: function compiled by torch.compile (one loop each)} for the max-pool's forward and backward
    and ReLU's backward, or None where compiling is off or fails."""
    if _state["compile"] is None:
        _state["compile"] = False
        if os.environ.get("VGG_COMPILE", "1") != "0" and hasattr(torch, "compile"):
            try:
                _state["compile"] = {f.__name__: torch.compile(f, dynamic=False)
                                     for f in (max_pool_forward, max_pool_backward, relu_backward)}
            except Exception:  # no inductor backend on this platform
                _state["compile"] = False
    return _state["compile"] or None


def _batch_dynamic(*maps: torch.Tensor) -> None:
    """Mark the maps' batch dimension dynamic: one compiled loop per layer for every batch size."""
    for t in maps:
        torch._dynamo.maybe_mark_dynamic(t, 0)


def _compiled_for(*maps: torch.Tensor):
    """The compiled functions if the maps are large enough to pay for compiling (MIN_COMPILED_ELEMENTS), with
    their batch dimension marked dynamic; else None."""
    if maps[0].numel() < MIN_COMPILED_ELEMENTS:
        return None
    fns = _compiled()
    if fns is not None:
        _batch_dynamic(*maps)
    return fns


def _relu_backward(grad: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    fns = _compiled_for(grad, y) if grad.dtype == y.dtype and grad.stride() == y.stride() else None
    if fns is not None:
        try:
            return fns["relu_backward"](grad, y)
        except Exception:  # compiling failed now (e.g. no C++ compiler): aten from now on
            _state["compile"] = False
    return torch.ops.aten.threshold_backward(grad, y, 0)


class _MaxPool2x2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, relu, fns):
        out = fns["max_pool_forward"](y, relu)
        ctx.save_for_backward(y, out)
        ctx.relu, ctx.fns = relu, fns
        return out

    @staticmethod
    def backward(ctx, grad):
        y, out = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last)
        _batch_dynamic(y, out, grad)
        try:
            return ctx.fns["max_pool_backward"](y, out, grad, ctx.relu), None, None
        except Exception:  # compiling failed now (e.g. no C++ compiler): the same function, eager
            _state["compile"] = False
            return max_pool_backward(y, out, grad, ctx.relu), None, None


def _is_2x2(pool: nn.MaxPool2d) -> bool:
    pair = nn.modules.utils._pair
    return (pair(pool.kernel_size) == (2, 2) and pair(pool.stride or pool.kernel_size) == (2, 2)
            and pair(pool.padding) == (0, 0) and pair(pool.dilation) == (1, 1)
            and not pool.ceil_mode and not pool.return_indices)


def _max_pool(pool: nn.MaxPool2d, relu: nn.ReLU | None, x: torch.Tensor) -> torch.Tensor:
    def modules(x):
        return pool(x) if relu is None else relu(pool(x))
    if not (_channels_last_cpu(x) and x.dtype in (torch.float32, torch.bfloat16) and x.shape[-2] % 2 == 0
            and x.shape[-1] % 2 == 0 and _is_2x2(pool) and _plain(pool, *([relu] if relu else []))):
        return modules(x)
    if not (torch.is_grad_enabled() and x.requires_grad):
        return max_pool_forward(x, relu is not None)
    fns = _compiled_for(x)
    if fns is None:
        return modules(x)
    try:
        return _MaxPool2x2.apply(x, relu is not None, fns)
    except Exception:  # compiling failed now: the modules from now on
        _state["compile"] = False
        return modules(x)


def pool_relu(pool: nn.MaxPool2d, relu: nn.ReLU, x: torch.Tensor) -> torch.Tensor:
    """relu(pool(x)) for a 2x2, stride-2 max-pool, in one pass where it can be (module docstring)."""
    return _max_pool(pool, relu, x)


def max_pool(pool: nn.MaxPool2d, x: torch.Tensor) -> torch.Tensor:
    """pool(x) for a 2x2, stride-2 max-pool (one not after a ReLU: A-LRN's after LRN), in one pass where it
    can be (module docstring)."""
    return _max_pool(pool, None, x)
