"""Runs fully-connected and convolution layers' training passes on the core.

GEMMs are tiled by :mod:`intergrad.plan` (the same job list the analytical model counts),
padded to the array and trimmed back; partial sums along the reduction dimension are added
on the host.  Every pass's hardware counters are read before and after it and kept as a
:class:`PassRecord` in a :class:`Report`.

Fixed point: inputs must be integers that fit DATA_W bits (OverflowError otherwise, naming
the operand); results are the exact products' sums wrapped to ACC_W bits, as the hardware
computes them (see :func:`intergrad.core.wrap`).
"""
from __future__ import annotations

import csv
import dataclasses
import io
import warnings
from typing import Iterable

import numpy as np

from . import spec
from .core import MODES, check_fits, put_data, put_weights, wrap
from .driver import Accelerator
from .plan import PASS_MODE, SCHEDULES, pass_dims, plan_pass
from .stream import run_pass


@dataclasses.dataclass
class PassRecord:
    """Hardware counters of one pass of one layer."""

    layer: str
    pass_: str
    schedule: str
    jobs: int
    B: int
    N: int
    M: int
    counters: dict

    def row(self) -> dict:
        d = {"layer": self.layer, "pass": self.pass_, "schedule": self.schedule,
             "jobs": self.jobs, "B": self.B, "N": self.N, "M": self.M}
        d.update(self.counters)
        return d


class Report(list):
    """A list of PassRecord that converts to CSV or a pandas DataFrame."""

    def rows(self) -> list[dict]:
        return [r.row() for r in self]

    def to_csv(self, path=None) -> str:
        rows = self.rows()
        buf = io.StringIO()
        if rows:
            w = csv.DictWriter(buf, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        text = buf.getvalue()
        if path is not None:
            with open(path, "w", newline="") as f:
                f.write(text)
        return text

    def to_pandas(self):
        import pandas as pd
        return pd.DataFrame(self.rows())

    def totals(self, **match) -> dict:
        tot: dict = {}
        for r in self:
            if all(getattr(r, k if k != "pass" else "pass_") == v for k, v in match.items()):
                for k, v in r.counters.items():
                    tot[k] = tot.get(k, 0) + v
        return tot


_COUNTED = [n for n, _ in spec.COUNTERS if n != "cycles"]


class Scheduler:
    """Executes GEMM passes on an :class:`Accelerator` and records their counters."""

    def __init__(self, accel: Accelerator, double_buffer: bool = True, record: bool = True):
        self.accel = accel
        self.cfg = accel.cfg
        self.double_buffer = double_buffer
        self.record = record
        self.report = Report()

    # -- checks ----------------------------------------------------------------------
    def _operand(self, a, name: str, layer: str, shape: tuple | None = None) -> np.ndarray:
        try:
            arr = check_fits(a, self.cfg.data_w, f"{layer}: {name}")
        except (OverflowError, TypeError) as e:
            raise type(e)(str(e)) from None
        if arr.ndim != 2:
            raise ValueError(f"{layer}: {name} must be 2-D, got shape {arr.shape}")
        if shape is not None:
            for i, (got, want) in enumerate(zip(arr.shape, shape)):
                if want is not None and got != want:
                    raise ValueError(f"{layer}: {name} has shape {arr.shape}, expected "
                                     f"{tuple('?' if s is None else s for s in shape)}")
        return arr

    def _headroom(self, a: np.ndarray, b: np.ndarray, k: int, layer: str, what: str) -> None:
        bound = int(np.abs(a).max(initial=0)) * int(np.abs(b).max(initial=0)) * k
        if bound >= (1 << (self.cfg.acc_w - 1)):
            warnings.warn(f"{layer}: {what} may exceed the {self.cfg.acc_w}-bit accumulator "
                          f"(|a|max*|b|max*K = {bound}); results wrap around", RuntimeWarning,
                          stacklevel=3)

    # -- passes --------------------------------------------------------------------------
    #: False: a pass's input beats are built and its output beats decoded whole, by numpy
    #: gathers (:mod:`intergrad.stream`); True: the per-job loop of :meth:`_run` (the same
    #: jobs and results; kept for comparison)
    per_job = False

    def _run_whole(self, layer, pass_, schedule, B, N, M, X, W, dY):
        before = self.accel.counters() if self.record else None
        res, dW, lay = run_pass(self.accel, pass_, B, N, M, X, W, dY, self.double_buffer)
        if self.record:
            after = self.accel.counters()
            delta = {k: after[k] - before[k] for k in _COUNTED}
            self.report.append(PassRecord(layer, pass_, schedule, len(lay.jobs), B, N, M, delta))
        return res, dW

    def _run(self, layer: str, pass_: str, schedule: str, B: int, N: int, M: int,
             X=None, W=None, dY=None):
        """Run one pass; returns (out_rows_result, dW) as available."""
        if not self.per_job:
            return self._run_whole(layer, pass_, schedule, B, N, M, X, W, dY)
        cfg = self.cfg
        R = cfg.rows
        jobs = plan_pass(cfg, pass_, B, N, M, self.double_buffer)
        before = self.accel.counters() if self.record else None
        kind = MODES[PASS_MODE[pass_]]
        rows, cols = pass_dims(pass_, N, M)
        res = np.zeros((B, rows), dtype=np.int64) if kind.data_out else None
        dW = np.zeros((rows, cols), dtype=np.int64) if kind.accumulates else None
        for tj in jobs:
            j = tj.job
            ra, ca, bl, b0 = j.rows_act, j.cols_act, j.batch, tj.b0
            r0, c0 = tj.r0, tj.c0
            lanes = np.zeros((j.in_beats(), cfg.in_lanes), dtype=np.int64)
            pos = 0
            if j.has("LOAD_W"):
                S = self._stationary(pass_, W, r0, c0, ra, ca)
                L = j.load_beats()
                put_weights(cfg, lanes[pos:pos + L], S, j.has("TRANSPOSE"))
                pos += L
            top = (X if pass_ == "fwd" else dY)[b0:b0 + bl, c0:c0 + ca]
            left = X[b0:b0 + bl, r0:r0 + ra] if kind.left_data else None
            put_data(cfg, lanes[pos:pos + bl], left, top)
            pos += bl
            if j.has("PRELOAD"):
                nr0, nc0 = tj.next_tile
                nra, nca = min(R, rows - nr0), min(cfg.cols, cols - nc0)
                S = np.zeros((ra, ca), dtype=np.int64)
                S[:nra, :nca] = self._stationary(pass_, W, nr0, nc0, nra, nca)
                put_weights(cfg, lanes[pos:pos + j.preload_beats()], S, j.has("TRANSPOSE"))
            out = self.accel.run_job(j, lanes)
            if tj.prev_tile is not None:  # the previous tile's saved dW comes first
                pr0, pc0, pra, pca = tj.prev_tile
                dW[pr0:pr0 + pra, pc0:pc0 + pca] = out[:pra, :pca]
                out = out[pra:]
            if kind.data_out:
                res[b0:b0 + bl, r0:r0 + ra] += out[:bl, :ra]
            if j.has("DRAIN"):
                dW[r0:r0 + ra, c0:c0 + ca] = out[out.shape[0] - ra:, :ca]
        if res is not None:
            res = wrap(res, cfg.acc_w)
        if self.record:
            after = self.accel.counters()
            delta = {k: after[k] - before[k] for k in _COUNTED}
            self.report.append(PassRecord(layer, pass_, schedule, len(jobs), B, N, M, delta))
        return res, dW

    def _stationary(self, pass_, W, r0, c0, ra, ca) -> np.ndarray:
        if pass_ == "fwd":  # S = W^T: rows index M, cols index N
            return W[c0:c0 + ca, r0:r0 + ra].T
        return W[r0:r0 + ra, c0:c0 + ca]

    # -- public GEMM API -----------------------------------------------------------------
    def fc_forward(self, X, W, layer: str = "fc", schedule: str = "-") -> np.ndarray:
        """Y = X W on the array (WS, weights loaded transposed).  X (B, N), W (N, M)."""
        W = self._operand(W, "W", layer)
        X = self._operand(X, "X", layer, (None, W.shape[0]))
        self._headroom(X, W, W.shape[0], layer, "X W")
        B, N = X.shape
        M = W.shape[1]
        Y, _ = self._run(layer, "fwd", schedule, B, N, M, X=X, W=W)
        return Y

    def fc_backward(self, X, W, dY, schedule: str = "intergrad", layer: str = "fc",
                    need_dx: bool = True):
        """(dX, dW) of Y = X W given dY, as separate WS + OS passes ('baseline') or one
        InterGrad pass ('intergrad').  With ``need_dx=False`` (a first layer) both schedules
        run the OS pass alone and dX is None."""
        if schedule not in SCHEDULES:
            raise ValueError(f"{layer}: unknown schedule {schedule!r}; choose one of "
                             f"{', '.join(SCHEDULES)}")
        W = self._operand(W, "W", layer)
        N, M = W.shape
        X = self._operand(X, "X", layer, (None, N))
        B = X.shape[0]
        dY = self._operand(dY, "dY", layer, (B, M))
        self._headroom(X, dY, B, layer, "X^T dY")
        if need_dx:
            self._headroom(dY, W, M, layer, "dY W^T")
        dX = None
        if not need_dx:  # only dW: one OS pass in either schedule
            _, dW = self._run(layer, "dw", schedule, B, N, M, X=X, dY=dY)
        elif schedule == "intergrad":
            dX, dW = self._run(layer, "ig", schedule, B, N, M, X=X, W=W, dY=dY)
        else:
            if need_dx:
                dX, _ = self._run(layer, "dx", schedule, B, N, M, W=W, dY=dY)
            _, dW = self._run(layer, "dw", schedule, B, N, M, X=X, dY=dY)
        return dX, dW


# ------------------------------------------------------------------------------ conv

def conv_out_size(h: int, k: int, stride: int, pad: int) -> int:
    return (h + 2 * pad - k) // stride + 1


def im2col(x: np.ndarray, kh: int, kw: int, stride: int, pad: int) -> np.ndarray:
    """x (B, C, H, W) -> (B*Ho*Wo, C*kh*kw), rows in (b, i, j) order."""
    B, C, H, W = x.shape
    Ho, Wo = conv_out_size(H, kh, stride, pad), conv_out_size(W, kw, stride, pad)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    cols = np.empty((B, Ho, Wo, C, kh, kw), dtype=x.dtype)
    for di in range(kh):
        for dj in range(kw):
            cols[:, :, :, :, di, dj] = xp[:, :, di:di + stride * Ho:stride,
                                          dj:dj + stride * Wo:stride].transpose(0, 2, 3, 1)
    return cols.reshape(B * Ho * Wo, C * kh * kw)


def col2im(cols: np.ndarray, x_shape: tuple, kh: int, kw: int, stride: int, pad: int) -> np.ndarray:
    """Adjoint of :func:`im2col` (sums overlapping patches)."""
    B, C, H, W = x_shape
    Ho, Wo = conv_out_size(H, kh, stride, pad), conv_out_size(W, kw, stride, pad)
    c = cols.reshape(B, Ho, Wo, C, kh, kw)
    xp = np.zeros((B, C, H + 2 * pad, W + 2 * pad), dtype=cols.dtype)
    for di in range(kh):
        for dj in range(kw):
            xp[:, :, di:di + stride * Ho:stride, dj:dj + stride * Wo:stride] += \
                c[:, :, :, :, di, dj].transpose(0, 3, 1, 2)
    return xp[:, :, pad:pad + H, pad:pad + W]


def check_conv(layer: str, x_shape: tuple, w_shape: tuple, stride: int, pad: int) -> tuple[int, int]:
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


def conv2d_forward(s: Scheduler, x, w, stride: int = 1, pad: int = 0, layer: str = "conv"):
    """y (B, C_out, Ho, Wo) = conv(x, w) on the array via im2col."""
    x, w = np.asarray(x), np.asarray(w)
    Ho, Wo = check_conv(layer, x.shape, w.shape, stride, pad)
    cols = im2col(x, w.shape[2], w.shape[3], stride, pad)
    Y = s.fc_forward(cols, conv_weight_matrix(w), layer=layer)
    return Y.reshape(x.shape[0], Ho, Wo, w.shape[0]).transpose(0, 3, 1, 2)


def conv2d_backward(s: Scheduler, x, w, dy, stride: int = 1, pad: int = 0,
                    schedule: str = "intergrad", layer: str = "conv", need_dx: bool = True):
    """(dx, dw) of a convolution given dy (B, C_out, Ho, Wo)."""
    x, w, dy = np.asarray(x), np.asarray(w), np.asarray(dy)
    Ho, Wo = check_conv(layer, x.shape, w.shape, stride, pad)
    want = (x.shape[0], w.shape[0], Ho, Wo)
    if dy.shape != want:
        raise ValueError(f"{layer}: dy has shape {dy.shape}, expected {want}")
    cols = im2col(x, w.shape[2], w.shape[3], stride, pad)
    dY = dy.transpose(0, 2, 3, 1).reshape(-1, w.shape[0])
    dcols, dW = s.fc_backward(cols, conv_weight_matrix(w), dY, schedule=schedule, layer=layer,
                              need_dx=need_dx)
    dw = dW.T.reshape(w.shape)
    dx = None
    if dcols is not None:
        dx = wrap(col2im(dcols, x.shape, w.shape[2], w.shape[3], stride, pad), s.cfg.acc_w)
    return dx, dw


def gemm_reference(a: np.ndarray, b: np.ndarray, acc_w: int) -> np.ndarray:
    """Golden result of any GEMM the scheduler runs: exact product, wrapped to ACC_W."""
    return wrap(np.asarray(a, dtype=np.int64) @ np.asarray(b, dtype=np.int64), acc_w)


def all_records(reports: Iterable[Report]) -> Report:
    r = Report()
    for rep in reports:
        r.extend(rep)
    return r
