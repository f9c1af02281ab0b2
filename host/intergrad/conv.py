"""Convolution lowering: a 2-D convolution as the fully-connected GEMMs the array runs.

A convolution of ``x`` (B, C_in, H, W) with ``w`` (C_out, C_in, kh, kw) is the product of
``im2col(x)`` (B*Ho*Wo, C_in*kh*kw) with :func:`conv_weight_matrix` ``(w)``
(C_in*kh*kw, C_out); its dW is the product's dW reshaped back, its dX the product's dX summed
back into the image by :func:`col2im` (the adjoint of im2col).  This module is the one place
that lowering is written: :func:`conv2d_forward` / :func:`conv2d_backward` run it through any
GEMM engine's ``fc_forward`` / ``fc_backward`` (the scheduler's integer GEMMs on the array,
:class:`intergrad.engine.FloatEngine`), and :class:`intergrad.engine.DeviceEngine` uses
:func:`lower` / :func:`grad_matrix` to bound its quantized operands.
"""
from __future__ import annotations

import functools

import numpy as np

from . import native
from .core import wrap


def conv_out_size(h: int, k: int, stride: int, pad: int) -> int:
    return (h + 2 * pad - k) // stride + 1


@functools.lru_cache(maxsize=32)   # a network's conv layers; lenet5's largest is 6.5 MB
def _im2col_index(shape: tuple, kh: int, kw: int, stride: int, pad: int) -> np.ndarray:
    """(B*Ho*Wo, C*kh*kw): the position in the padded input (flattened) of every element
    of :func:`im2col`'s result."""
    B, C, H, W = shape
    Ho, Wo = conv_out_size(H, kh, stride, pad), conv_out_size(W, kw, stride, pad)
    Hp, Wp = H + 2 * pad, W + 2 * pad
    b, i, j, c, di, dj = np.ix_(np.arange(B), np.arange(Ho), np.arange(Wo), np.arange(C),
                                np.arange(kh), np.arange(kw))
    idx = ((b * C + c) * Hp + i * stride + di) * Wp + j * stride + dj
    idx = np.ascontiguousarray(idx.reshape(B * Ho * Wo, C * kh * kw), dtype=np.intp)
    idx = native.index(idx, B * C * Hp * Wp)   # uint32 for the native gather, when used
    idx.setflags(write=False)
    return idx


def im2col(x: np.ndarray, kh: int, kw: int, stride: int, pad: int) -> np.ndarray:
    """x (B, C, H, W) -> (B*Ho*Wo, C*kh*kw), rows in (b, i, j) order (columns (c, di, dj)):
    one gather from the zero-padded input, its indices computed once per shape."""
    x = np.asarray(x)
    B, C, H, W = x.shape
    if pad:
        xp = np.zeros((B, C, H + 2 * pad, W + 2 * pad), dtype=x.dtype)
        xp[:, :, pad:pad + H, pad:pad + W] = x
    else:
        xp = np.ascontiguousarray(x)
    return native.take(xp.reshape(-1), _im2col_index(x.shape, kh, kw, stride, pad))


class Im2col:
    """``im2col(x, kh, kw, stride, pad)`` as a GEMM operand that is not built: an integer
    engine whose passes gather their input lanes from a source vector (the scheduler's,
    :mod:`intergrad.stream`) has it :meth:`write` its entries straight there, in the
    vector's dtype, from the zero-padded ``x`` (no lowered int64 matrix, 25 times the
    image's entries for a 5x5 kernel, made and copied per pass).  ``np.asarray`` of it is
    the lowered matrix (built once).  ``x`` is kept by reference: it must not change while
    the operand is in use."""

    ndim = 2

    def __init__(self, x: np.ndarray, kh: int, kw: int, stride: int, pad: int):
        x = np.asarray(x)
        B, C, H, W = x.shape
        Ho, Wo = conv_out_size(H, kh, stride, pad), conv_out_size(W, kw, stride, pad)
        self.x, self.args = x, (kh, kw, stride, pad)
        self.shape = (B * Ho * Wo, C * kh * kw)
        self.size = self.shape[0] * self.shape[1]
        self.dtype = x.dtype
        self._array = None

    def __array__(self, dtype=None, copy=None):
        if self._array is None:
            self._array = im2col(self.x, *self.args)
        a = self._array if dtype is None else self._array.astype(dtype, copy=False)
        return a.copy() if copy and a is self._array else a

    def read(self) -> np.ndarray:
        """The entries of ``x`` the lowering reads (every one at stride 1): the lowered
        matrix's entries are these and, with padding, zeros."""
        kh, kw, s, p = self.args
        if s == 1:
            return self.x
        B, C, H, W = self.x.shape
        Ho, Wo = conv_out_size(H, kh, s, p), conv_out_size(W, kw, s, p)
        rows = np.unique((np.arange(Ho)[:, None] * s + np.arange(kh) - p).ravel())
        cols = np.unique((np.arange(Wo)[:, None] * s + np.arange(kw) - p).ravel())
        rows, cols = rows[(rows >= 0) & (rows < H)], cols[(cols >= 0) & (cols < W)]
        return self.x[:, :, rows][:, :, :, cols]

    def write(self, dst: np.ndarray) -> None:
        """The lowered matrix's entries, row-major, into ``dst`` (1-D, :attr:`size`
        elements, C-contiguous, of any integer dtype; each entry converted as an
        assignment converts it, e.g. the low bits into a narrower integer)."""
        if dst.shape != (self.size,) or not dst.flags.c_contiguous:
            raise ValueError(f"im2col: a C-contiguous vector of {self.size} entries needed, "
                             f"got shape {dst.shape}")
        kh, kw, s, p = self.args
        B, C, H, W = self.x.shape
        if p:
            xp = np.zeros((B, C, H + 2 * p, W + 2 * p), dtype=dst.dtype)
            xp[:, :, p:p + H, p:p + W] = self.x
        else:
            xp = np.ascontiguousarray(self.x, dtype=dst.dtype)
        native.take(xp.reshape(-1), _im2col_index(self.x.shape, kh, kw, s, p),
                    out=dst.reshape(self.shape))


def col2im(cols: np.ndarray, x_shape: tuple, kh: int, kw: int, stride: int, pad: int) -> np.ndarray:
    """Adjoint of :func:`im2col` (sums overlapping patches)."""
    B, C, H, W = x_shape
    Ho, Wo = conv_out_size(H, kh, stride, pad), conv_out_size(W, kw, stride, pad)
    xp = native.col2im(cols, B, C, Ho, Wo, kh, kw, stride, H + 2 * pad, W + 2 * pad)
    if xp is not None:   # the native loop: the same sums, in the same order
        return xp[:, :, pad:pad + H, pad:pad + W]
    c = cols.reshape(B, Ho, Wo, C, kh, kw)
    xp = np.zeros((B, C, H + 2 * pad, W + 2 * pad), dtype=cols.dtype)
    for di in range(kh):
        for dj in range(kw):
            xp[:, :, di:di + stride * Ho:stride, dj:dj + stride * Wo:stride] += \
                c[:, :, :, :, di, dj].transpose(0, 3, 1, 2)
    return xp[:, :, pad:pad + H, pad:pad + W]


def check_conv(layer: str, x_shape: tuple, w_shape: tuple, stride: int, pad: int) -> tuple[int, int]:
    """(Ho, Wo) of a convolution; ValueError naming the layer for shapes that do not fit."""
    if len(x_shape) != 4:
        raise ValueError(f"{layer}: input must be (B, C, H, W), got shape {x_shape}")
    if len(w_shape) != 4:
        raise ValueError(f"{layer}: weights must be (C_out, C_in, kh, kw), got shape {w_shape}")
    if x_shape[1] != w_shape[1]:
        raise ValueError(f"{layer}: input has {x_shape[1]} channels, weights expect {w_shape[1]}")
    if stride < 1 or pad < 0:
        raise ValueError(f"{layer}: stride must be >= 1 and padding >= 0 (got {stride}, {pad})")
    Ho = conv_out_size(x_shape[2], w_shape[2], stride, pad)
    Wo = conv_out_size(x_shape[3], w_shape[3], stride, pad)
    if Ho < 1 or Wo < 1:
        raise ValueError(f"{layer}: kernel {w_shape[2]}x{w_shape[3]} with padding {pad} does not "
                         f"fit the {x_shape[2]}x{x_shape[3]} input")
    return Ho, Wo


def conv_weight_matrix(w: np.ndarray) -> np.ndarray:
    """(C_out, C_in, kh, kw) -> (C_in*kh*kw, C_out), matching :func:`im2col` columns."""
    return w.reshape(w.shape[0], -1).T


def lower(x: np.ndarray, w: np.ndarray, stride: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """The GEMM operands (X, W) of a convolution: im2col(x) and the weight matrix."""
    return im2col(x, w.shape[2], w.shape[3], stride, pad), conv_weight_matrix(w)


def grad_matrix(dy: np.ndarray) -> np.ndarray:
    """dy (B, C_out, Ho, Wo) -> the GEMM's dY (B*Ho*Wo, C_out), rows as :func:`im2col`'s."""
    return dy.transpose(0, 2, 3, 1).reshape(-1, dy.shape[1])


def _lowered(engine, x, w, stride, pad, cols):
    """(im2col(x), weight matrix), ``cols`` standing for im2col(x) if given (the caller
    computed it already; only its shape is checked); for an engine that reads lowered
    operands unbuilt (``engine.reads_im2col``, the scheduler's integer passes) an
    :class:`Im2col` of an integer x."""
    if cols is None:
        if getattr(engine, "reads_im2col", False) and x.dtype.kind in "iu":
            return Im2col(x, w.shape[2], w.shape[3], stride, pad), conv_weight_matrix(w)
        return lower(x, w, stride, pad)
    ho = conv_out_size(x.shape[2], w.shape[2], stride, pad)
    wo = conv_out_size(x.shape[3], w.shape[3], stride, pad)
    want = (x.shape[0] * ho * wo, int(np.prod(w.shape[1:])))
    if np.shape(cols) != want:
        raise ValueError(f"im2col of shape {np.shape(cols)} given, expected {want}")
    return cols, conv_weight_matrix(w)


def conv2d_forward(engine, x, w, stride: int = 1, pad: int = 0, *, layer: str = "conv",
                   cols=None, **options):
    """y (B, C_out, Ho, Wo) = conv(x, w) through ``engine.fc_forward`` (via im2col;
    ``options``, e.g. ``bounded``, go to it; ``cols``: im2col(x) if the caller has it)."""
    x, w = np.asarray(x), np.asarray(w)
    Ho, Wo = check_conv(layer, x.shape, w.shape, stride, pad)
    Y = engine.fc_forward(*_lowered(engine, x, w, stride, pad, cols), layer, **options)
    return Y.reshape(x.shape[0], Ho, Wo, w.shape[0]).transpose(0, 3, 1, 2)


def conv2d_backward(engine, x, w, dy, stride: int = 1, pad: int = 0, *, layer: str = "conv",
                    need_dx: bool = True, cols=None, **options):
    """(dx, dw) of a convolution given dy (B, C_out, Ho, Wo), through ``engine.fc_backward``
    (``options``, e.g. ``schedule``, go to it; ``cols``: im2col(x) if the caller has it).
    An integer engine (``engine.acc_w`` set) gets its col2im sums wrapped to ACC_W bits, as
    its GEMM results are."""
    x, w, dy = np.asarray(x), np.asarray(w), np.asarray(dy)
    Ho, Wo = check_conv(layer, x.shape, w.shape, stride, pad)
    want = (x.shape[0], w.shape[0], Ho, Wo)
    if dy.shape != want:
        raise ValueError(f"{layer}: dy has shape {dy.shape}, expected {want}")
    dcols, dW = engine.fc_backward(*_lowered(engine, x, w, stride, pad, cols), grad_matrix(dy),
                                   layer, need_dx=need_dx, **options)
    dw = dW.T.reshape(w.shape)
    dx = None
    if dcols is not None:
        dx = col2im(dcols, x.shape, w.shape[2], w.shape[3], stride, pad)
        if getattr(engine, "acc_w", None):
            dx = wrap(dx, engine.acc_w)
    return dx, dw
