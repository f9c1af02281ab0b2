"""Sequential CNN layers whose every GEMM runs on a GEMM engine (the array or float numpy).

Activations are NCHW float32 arrays on the host.  A layer's GEMMs go through the engine
given to :meth:`Sequential.forward` / :meth:`Sequential.backward` (an
:class:`intergrad.engine.GemmEngine`: :class:`~intergrad.engine.DeviceEngine` or
:class:`~intergrad.engine.FloatEngine`):

* :class:`Conv2d` (stride, padding): forward ``conv_forward`` (WS on the array, lowered by
  :mod:`intergrad.conv`'s im2col), backward ``conv_backward``: one InterGrad pass (or
  baseline dX + dW passes) whose dX goes back through col2im.  The first layer with
  parameters computes no dX (nothing needs it): its backward is the dW (OS) pass alone, so
  InterGrad runs in every conv layer but the first.
* :class:`Linear`: ``fc_forward`` / ``fc_backward`` the same way.
* :class:`ReLU`, :class:`MaxPool2d`, :class:`AvgPool2d` (non-overlapping windows,
  stride = kernel), :class:`Flatten`: on the host.  Max-pool backward routes each window's
  gradient to exactly one element, the first maximum in row-major window order, also when
  several elements tie.

Parameters are float32 "master" copies on the host; biases are added on the host.
Networks by name: :data:`NETWORKS` (``digits``, ``lenet``, ``lenet5``), built by
:func:`build`.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from . import native
from .conv import check_conv

Shape = tuple  # (C, H, W) or (N,)


class Layer:
    """A layer: ``forward(engine, x) -> (y, cache)``, ``backward(engine, cache, dy, need_dx)
    -> (dx or None, [grads of params()])``, ``out_shape(in_shape)``."""

    name = "layer"
    kind = "layer"

    def params(self) -> list[np.ndarray]:
        return []

    def out_shape(self, s: Shape) -> Shape:
        return s

    def describe(self) -> str:
        return self.kind


class Conv2d(Layer):
    kind = "conv"

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, pad: int = 0,
                 rng: np.random.Generator | None = None, name: str = "conv"):
        rng = rng or np.random.default_rng(0)
        self.name, self.stride, self.pad, self.k = name, stride, pad, k
        fan_in = cin * k * k
        self.w = (rng.standard_normal((cout, cin, k, k)) * math.sqrt(2.0 / fan_in)).astype(np.float32)
        self.b = np.zeros(cout, dtype=np.float32)

    def params(self):
        return [self.w, self.b]

    def out_shape(self, s):
        c, h, w = s
        Ho, Wo = check_conv(self.name, (1, c, h, w), self.w.shape, self.stride, self.pad)
        return (self.w.shape[0], Ho, Wo)

    def describe(self):
        co, ci, k, _ = self.w.shape
        return f"conv{k}x{k}({ci}->{co}" + (f", s{self.stride}" if self.stride > 1 else "") + \
            (f", p{self.pad}" if self.pad else "") + ")"

    def forward(self, eng, x):
        y = eng.conv_forward(x, self.w, self.name, stride=self.stride, pad=self.pad)
        return y + self.b[None, :, None, None], x

    def backward(self, eng, x, dy, need_dx):
        dx, dw = eng.conv_backward(x, self.w, dy, self.name, stride=self.stride, pad=self.pad,
                                   need_dx=need_dx)
        return dx, [dw.astype(np.float32), dy.sum(axis=(0, 2, 3)).astype(np.float32)]


class Linear(Layer):
    kind = "fc"

    def __init__(self, nin: int, nout: int, rng: np.random.Generator | None = None,
                 name: str = "fc", gain: float = 2.0):
        rng = rng or np.random.default_rng(0)
        self.name = name
        self.w = (rng.standard_normal((nin, nout)) * math.sqrt(gain / nin)).astype(np.float32)
        self.b = np.zeros(nout, dtype=np.float32)

    def params(self):
        return [self.w, self.b]

    def out_shape(self, s):
        n = int(np.prod(s))
        if len(s) != 1 or n != self.w.shape[0]:
            raise ValueError(f"{self.name}: input of shape {s}, expected ({self.w.shape[0]},) "
                             f"(put a Flatten before it)")
        return (self.w.shape[1],)

    def describe(self):
        return f"fc({self.w.shape[0]}->{self.w.shape[1]})"

    def forward(self, eng, x):
        return eng.fc_forward(x, self.w, self.name) + self.b, x

    def backward(self, eng, x, dy, need_dx):
        dx, dw = eng.fc_backward(x, self.w, dy, self.name, need_dx=need_dx)
        return dx, [dw.astype(np.float32), dy.sum(axis=0).astype(np.float32)]


class ReLU(Layer):
    kind = "relu"

    def __init__(self, name: str = "relu"):
        self.name = name

    def forward(self, eng, x):
        return np.maximum(x, 0), x > 0

    def backward(self, eng, mask, dy, need_dx):
        return (dy * mask).astype(np.float32), []


def _windows(x: np.ndarray, k: int) -> np.ndarray:
    """(B, C, H, W) -> (B, C, H/k, W/k, k*k), windows in row-major order."""
    B, C, H, W = x.shape
    return (x.reshape(B, C, H // k, k, W // k, k).transpose(0, 1, 2, 4, 3, 5)
            .reshape(B, C, H // k, W // k, k * k))


def _unwindows(w: np.ndarray, k: int) -> np.ndarray:
    B, C, Ho, Wo, _ = w.shape
    return (w.reshape(B, C, Ho, Wo, k, k).transpose(0, 1, 2, 4, 3, 5)
            .reshape(B, C, Ho * k, Wo * k))


class MaxPool2d(Layer):
    """k x k max-pool, stride k; the gradient goes to the first maximum of each window."""

    kind = "maxpool"

    def __init__(self, k: int = 2, name: str = "pool"):
        self.k, self.name = k, name

    def out_shape(self, s):
        c, h, w = s
        if h % self.k or w % self.k:
            raise ValueError(f"{self.name}: {h}x{w} input is not a multiple of the {self.k}x"
                             f"{self.k} window")
        return (c, h // self.k, w // self.k)

    def describe(self):
        return f"{self.kind}{self.k}"

    def forward(self, eng, x):
        k = self.k
        x = np.asarray(x)
        fast = native.maxpool_forward(x, k)   # the same loop in C++ (not for NaNs)
        if fast is not None:
            return fast
        if np.isnan(x).any():   # argmax's rule (the first NaN is the maximum) on window copies
            win = _windows(x, k)
            idx = win.argmax(axis=-1)                 # first maximum: exactly one per window
            return np.take_along_axis(win, idx[..., None], axis=-1)[..., 0], idx
        # the first maximum of each window: the windows' positions p = di*k + dj as k*k
        # contiguous planes (one copy), a later position taken only where strictly larger
        B, C, H, W = x.shape
        planes = np.ascontiguousarray(
            x.reshape(B, C, H // k, k, W // k, k).transpose(3, 5, 0, 1, 2, 4)
        ).reshape(k * k, B, C, H // k, W // k)
        y = planes[0].copy()
        idx = np.zeros(y.shape, dtype=np.intp)
        for p in range(1, k * k):
            take = planes[p] > y
            np.copyto(y, planes[p], where=take)
            np.copyto(idx, p, where=take)
        return y, idx

    def backward(self, eng, idx, dy, need_dx):
        # dx at window position p is dy * (idx == p): the product the one-hot mask gave
        # (0 * dy keeps dy's sign and NaN), written straight into the strided positions
        k = self.k
        fast = native.maxpool_backward(idx, dy, k)   # the same products in C++
        if fast is not None:
            return fast, []
        B, C, Ho, Wo = idx.shape
        dx = np.empty((B, C, Ho * k, Wo * k), dtype=np.float32)
        for p in range(k * k):
            dx[:, :, p // k::k, p % k::k] = ((idx == p) * dy).astype(np.float32)
        return dx, []


class AvgPool2d(MaxPool2d):
    kind = "avgpool"

    def forward(self, eng, x):
        fast = native.avgpool_forward(np.asarray(x), self.k)   # the same sums in C++
        if fast is not None:
            return fast, None
        return _windows(x, self.k).mean(axis=-1), None

    def backward(self, eng, _, dy, need_dx):
        fast = native.avgpool_backward(dy, self.k)
        if fast is not None:
            return fast, []
        g = np.repeat(dy[..., None] / (self.k * self.k), self.k * self.k, axis=-1)
        return _unwindows(g.astype(np.float32), self.k), []


class Flatten(Layer):
    kind = "flatten"

    def __init__(self, name: str = "flatten"):
        self.name = name

    def out_shape(self, s):
        return (int(np.prod(s)),)

    def forward(self, eng, x):
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, eng, shape, dy, need_dx):
        return dy.reshape(shape), []


class Sequential:
    """Layers in order; ``forward(engine, x) -> (logits, cache)`` and
    ``backward(engine, cache, dlogits) -> grads`` (aligned with :meth:`params`)."""

    def __init__(self, layers: list[Layer], input_shape: Shape, name: str = "net",
                 config: dict | None = None):
        self.layers, self.input_shape, self.name = layers, tuple(input_shape), name
        self.config = dict(config or {})
        names = [l.name for l in layers]
        if len(set(names)) != len(names):
            raise ValueError(f"layer names must be unique, got {names}")
        s = self.input_shape
        self.shapes = [s]
        for l in layers:
            s = l.out_shape(s)
            self.shapes.append(s)
        first = [i for i, l in enumerate(layers) if l.params()]
        self._first_param = first[0] if first else len(layers)

    def params(self) -> list[np.ndarray]:
        return [p for l in self.layers for p in l.params()]

    def set_params(self, values) -> None:
        for p, v in zip(self.params(), values, strict=True):
            if p.shape != np.shape(v):
                raise ValueError(f"parameter shape {np.shape(v)} does not match {p.shape}")
            p[...] = v

    def copy(self) -> "Sequential":
        import copy
        return copy.deepcopy(self)

    def gemm_layers(self) -> list[Layer]:
        return [l for l in self.layers if l.kind in ("conv", "fc")]

    def describe(self) -> str:
        return " -> ".join(l.describe() for l in self.layers)

    def forward(self, eng, x):
        caches = []
        for l in self.layers:
            x, c = l.forward(eng, x)
            caches.append(c)
        return x, caches

    def backward(self, eng, caches, dlogits):
        grads: list[list[np.ndarray]] = []
        d = dlogits
        for i in range(len(self.layers) - 1, -1, -1):
            l = self.layers[i]
            need_dx = i > self._first_param      # nothing before the first weighted layer
            d, g = l.backward(eng, caches[i], d, need_dx)
            grads.append(g)
            if not need_dx:
                break
        return [p for g in reversed(grads) for p in g]


# ------------------------------------------------------------------------------ networks

def digits_cnn(input_shape=(1, 8, 8), classes: int = 10, seed: int = 0, channels: int = 8):
    """conv3x3(1->C, pad 1) -> ReLU -> maxpool2 -> FC(10): the original digits CNN."""
    rng = np.random.default_rng(seed)
    c, h, w = input_shape
    L = [Conv2d(c, channels, 3, pad=1, rng=rng, name="conv1"), ReLU("relu1"),
         MaxPool2d(2, "pool1"), Flatten()]
    L.append(Linear(channels * (h // 2) * (w // 2), classes, rng, "fc1", gain=1.0))
    return Sequential(L, input_shape, "digits", {"channels": channels, "classes": classes})


def lenet_digits(input_shape=(1, 8, 8), classes: int = 10, seed: int = 0, channels: int = 8):
    """LeNet-class net for 8x8 digits: conv3x3(1->C) -> ReLU -> maxpool2 -> conv3x3(C->2C)
    -> ReLU -> maxpool2 -> FC(64) -> ReLU -> FC(10), 3x3 convs padded by 1."""
    rng = np.random.default_rng(seed)
    c, h, w = input_shape
    C = channels
    L = [Conv2d(c, C, 3, pad=1, rng=rng, name="conv1"), ReLU("relu1"), MaxPool2d(2, "pool1"),
         Conv2d(C, 2 * C, 3, pad=1, rng=rng, name="conv2"), ReLU("relu2"), MaxPool2d(2, "pool2"),
         Flatten(), Linear(2 * C * (h // 4) * (w // 4), 64, rng, "fc1"), ReLU("relu3"),
         Linear(64, classes, rng, "fc2", gain=1.0)]
    return Sequential(L, input_shape, "lenet", {"channels": channels, "classes": classes})


def lenet5(input_shape=(1, 32, 32), classes: int = 10, seed: int = 0, channels: int = 6):
    """The zoo's LeNet-5 (``intergrad.zoo.get('lenet5')``) at its 32x32 input: conv5x5(->6)
    -> pool2 -> conv5x5(->16) -> pool2 -> FC 120 -> FC 84 -> FC 10, ReLU activations,
    average pooling as in the zoo."""
    rng = np.random.default_rng(seed)
    c, h, w = input_shape
    if (h, w) != (32, 32):
        raise ValueError(f"lenet5 takes 32x32 images, got {h}x{w} (see intergrad.data.fit_images)")
    L = [Conv2d(c, 6, 5, rng=rng, name="conv1"), ReLU("relu1"), AvgPool2d(2, "pool1"),
         Conv2d(6, 16, 5, rng=rng, name="conv2"), ReLU("relu2"), AvgPool2d(2, "pool2"),
         Flatten(), Linear(400, 120, rng, "fc1"), ReLU("relu3"),
         Linear(120, 84, rng, "fc2"), ReLU("relu4"), Linear(84, classes, rng, "fc3", gain=1.0)]
    return Sequential(L, input_shape, "lenet5", {"channels": 6, "classes": classes})


#: name -> (builder, input (H, W) the net wants or None for "any", one-line description)
NETWORKS: dict[str, tuple[Callable, tuple | None, str]] = {
    "digits": (digits_cnn, None, "conv3x3(8) -> ReLU -> maxpool2 -> FC(10) (1 conv, 1 FC)"),
    "lenet": (lenet_digits, None, "LeNet-class: 2 conv3x3 (8, 16) with max-pools, FC 64, FC 10"),
    "lenet5": (lenet5, (32, 32), "the zoo's LeNet-5 at 32x32: 2 conv5x5, avg-pools, 3 FC"),
}


def build(name: str, input_shape, classes: int = 10, seed: int = 0, **kw) -> Sequential:
    """A network by name for inputs of ``input_shape`` (C, H, W)."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; choose one of {', '.join(NETWORKS)}")
    kw = {k: v for k, v in kw.items() if v is not None}
    return NETWORKS[name][0](tuple(input_shape), classes, seed, **kw)

