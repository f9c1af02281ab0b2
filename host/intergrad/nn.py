"""CNN training with every GEMM on the systolic array, everything else on the host.

The networks are :class:`intergrad.layers.Sequential` stacks (``digits``, ``lenet``,
``lenet5``, see :data:`intergrad.layers.NETWORKS`); their GEMMs go through an engine:

* :class:`DeviceBackend`: the array, through a :class:`~intergrad.scheduler.Scheduler`.
  Forward passes run weight-stationary; backward passes run as one InterGrad pass per layer
  (or the baseline's separate dX and dW passes); convolutions are lowered by the
  scheduler's ``conv2d_forward`` / ``conv2d_backward`` (im2col, and col2im for dX).
* :class:`FloatBackend`: the same GEMMs in float32 numpy: the reference ("float twin").

Fixed point (:class:`DeviceBackend`): the precision is the array build's DATA_W (16 or 8
bits) with its ACC_W accumulator (32 or 20 bits).  Before every GEMM each operand is
quantized to signed integers with its own power-of-two scale (per tensor, from its largest
magnitude) and up to DATA_W-1 magnitude bits; gradients (dY) may be rounded
stochastically (seeded, reproducible).  Overflow is impossible by construction: the host
computes, on the quantized operands, the exact bound max(|A|.|B|) of every accumulator
(including the col2im sums of a conv dX) and drops a magnitude bit of the wider operand
until the bound is below 2**(ACC_W-1), so nothing saturates or wraps; the magnitude bits
used per layer and pass are kept in ``DeviceBackend.bits_used``.  Results (ACC_W integers)
are scaled back to float32 on the host.  Weights, biases, the optimizer state and all
non-GEMM layers stay in float32 on the host ("float master weights").
"""
from __future__ import annotations

import dataclasses
import math
import time
import warnings
from typing import Callable

import numpy as np

from . import layers as L
from .scheduler import (Scheduler, col2im, conv2d_backward, conv2d_forward, conv_weight_matrix,
                        im2col)


# ------------------------------------------------------------------------------ quantization

def quantize(x: np.ndarray, bits: int, rng: np.random.Generator | None = None
             ) -> tuple[np.ndarray, int]:
    """x ~= q * 2**-f with |q| < 2**bits (``bits`` magnitude bits); returns (q int64, f).
    Round to nearest, or stochastically (unbiased: floor(x*2**f + u), u ~ U[0, 1)) with
    ``rng``."""
    m = float(np.max(np.abs(x))) if x.size else 0.0
    if not np.isfinite(m):
        raise FloatingPointError("non-finite value in a tensor to quantize (training diverged?)")
    if m == 0.0:
        return np.zeros(x.shape, dtype=np.int64), 0
    f = bits - 1 - math.floor(math.log2(m))  # m * 2**f < 2**bits
    s = x.astype(np.float64) * (2.0 ** f)
    if rng is None:
        q = np.rint(s)
    else:
        q = np.floor(s + rng.random(s.shape))
    q = q.astype(np.int64)
    lim = (1 << bits) - 1
    np.clip(q, -lim, lim, out=q)  # rounding at the top can reach 2**bits: clip one LSB
    return q, f


class FloatBackend:
    """float32 numpy GEMMs: the reference model (same lowering as the device)."""

    name = "float"

    def fc_forward(self, X, W, layer):
        return X.astype(np.float32) @ W.astype(np.float32)

    def fc_backward(self, X, W, dY, layer, need_dx=True):
        dW = X.T.astype(np.float32) @ dY
        dX = dY @ W.T if need_dx else None
        return dX, dW

    def conv_forward(self, x, w, stride, pad, layer):
        B = x.shape[0]
        Ho, Wo = L.check_conv(layer, x.shape, w.shape, stride, pad)
        cols = im2col(x.astype(np.float32), w.shape[2], w.shape[3], stride, pad)
        y = cols @ conv_weight_matrix(w)
        return y.reshape(B, Ho, Wo, w.shape[0]).transpose(0, 3, 1, 2)

    def conv_backward(self, x, w, dy, stride, pad, layer, need_dx=True):
        cols = im2col(x.astype(np.float32), w.shape[2], w.shape[3], stride, pad)
        dY = dy.transpose(0, 2, 3, 1).reshape(-1, w.shape[0]).astype(np.float32)
        dw = (cols.T @ dY).T.reshape(w.shape)
        dx = None
        if need_dx:
            dx = col2im(dY @ conv_weight_matrix(w).T, x.shape, w.shape[2], w.shape[3], stride, pad)
        return dx, dw


def _absf(q):
    return np.abs(q).astype(np.float64)


class DeviceBackend:
    """GEMMs on the array through a :class:`Scheduler` (fixed point, host requantization).

    ``stochastic``: round the gradients (dY) stochastically from a generator seeded with
    ``seed`` (its state is ``self.rng``; a checkpoint keeps it).  ``max_bits``: fewer
    magnitude bits than DATA_W-1 (for experiments)."""

    name = "device"

    def __init__(self, scheduler: Scheduler, schedule: str = "intergrad", *,
                 stochastic: bool = False, seed: int = 0, max_bits: int | None = None):
        self.s = scheduler
        self.cfg = scheduler.cfg
        self.schedule = schedule
        self.max_bits = min(max_bits or self.cfg.data_w - 1, self.cfg.data_w - 1)
        self.stochastic = stochastic
        self.rng = np.random.default_rng(seed) if stochastic else None
        self.limit = float(1 << (self.cfg.acc_w - 1))
        #: (layer, pass) -> smallest magnitude bits used per operand so far
        self.bits_used: dict[tuple[str, str], dict[str, int]] = {}

    # -- operand quantization with an exact accumulator bound ---------------------------
    def _quantize(self, layer, pass_, tensors: dict, products: list, grads=("dY",)):
        """tensors: name -> float array; products: (a, b, bound_fn(|qa|, |qb|)).  Returns
        name -> (q, f) with every bound < 2**(ACC_W-1)."""
        bits = {n: self.max_bits for n in tensors}
        state = self.rng.bit_generator.state if self.rng is not None else None
        for _ in range(4 * self.max_bits + 4):
            if state is not None:      # the same random draws on every retry: reproducible
                self.rng.bit_generator.state = state
            q = {n: quantize(t, bits[n], self.rng if n in grads else None)
                 for n, t in tensors.items()}
            over = []
            for a, b, fn in products:
                bound = float(fn(_absf(q[a][0]), _absf(q[b][0]))) if q[a][0].size and q[b][0].size else 0.0
                if bound >= self.limit:
                    over.append((a, b, math.ceil(math.log2(bound / self.limit) + 1e-9)))
            if not over:
                rec = self.bits_used.setdefault((layer, pass_), dict(bits))
                for n, v in bits.items():
                    rec[n] = min(rec.get(n, v), v)
                return q
            cut = {}
            for a, b, need in over:     # drop bits from the wider operand first, alternately
                need = max(need, 1)
                ba, bb = bits[a] - cut.get(a, 0), bits[b] - cut.get(b, 0)
                for i in range(need):
                    if ba >= bb:
                        ba -= 1
                    else:
                        bb -= 1
                cut[a] = bits[a] - ba
                cut[b] = bits[b] - bb
            for n, c in cut.items():
                bits[n] -= c
            if min(bits.values()) < 1:
                break
        raise OverflowError(f"{layer}: {pass_} cannot fit the {self.cfg.acc_w}-bit accumulator "
                            f"even with 1-bit operands (reduction too long)")

    def _gemm(self, fn, *args, **kw):
        # the scheduler warns from the worst case |a|max*|b|max*K; the exact bound above
        # already guarantees no wrap-around
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*may exceed the", category=RuntimeWarning)
            return fn(*args, **kw)

    # -- fully connected -------------------------------------------------------------------
    def fc_forward(self, X, W, layer):
        q = self._quantize(layer, "fwd", {"X": X, "W": W}, [("X", "W", lambda a, b: (a @ b).max())])
        (qx, fx), (qw, fw) = q["X"], q["W"]
        Y = self._gemm(self.s.fc_forward, qx, qw, layer=layer)
        return (Y * 2.0 ** -(fx + fw)).astype(np.float32)

    def fc_backward(self, X, W, dY, layer, need_dx=True):
        prods = [("X", "dY", lambda a, b: (a.T @ b).max())]
        if need_dx:
            prods.append(("dY", "W", lambda a, b: (a @ b.T).max()))
        q = self._quantize(layer, "bwd", {"X": X, "W": W, "dY": dY}, prods)
        (qx, fx), (qw, fw), (qd, fd) = q["X"], q["W"], q["dY"]
        dX, dW = self._gemm(self.s.fc_backward, qx, qw, qd, schedule=self.schedule, layer=layer,
                            need_dx=need_dx)
        dW = (dW * 2.0 ** -(fx + fd)).astype(np.float32)
        if dX is not None:
            dX = (dX * 2.0 ** -(fd + fw)).astype(np.float32)
        return dX, dW

    # -- convolution (the scheduler's im2col / col2im lowering) ------------------------
    def conv_forward(self, x, w, stride, pad, layer):
        kh, kw = w.shape[2:]
        q = self._quantize(layer, "fwd", {"X": x, "W": w}, [
            ("X", "W", lambda a, b: (im2col(a, kh, kw, stride, pad) @ conv_weight_matrix(b)).max())])
        (qx, fx), (qw, fw) = q["X"], q["W"]
        y = self._gemm(conv2d_forward, self.s, qx, qw, stride, pad, layer=layer)
        return (y * 2.0 ** -(fx + fw)).astype(np.float32)

    def conv_backward(self, x, w, dy, stride, pad, layer, need_dx=True):
        kh, kw = w.shape[2:]
        co = w.shape[0]

        def dmat(d):
            return d.transpose(0, 2, 3, 1).reshape(-1, co)

        prods = [("X", "dY", lambda a, b: (im2col(a, kh, kw, stride, pad).T @ dmat(b)).max())]
        if need_dx:       # dX = col2im(dY W^T): the col2im sums must fit too
            prods.append(("dY", "W", lambda a, b: col2im(dmat(a) @ conv_weight_matrix(b).T,
                                                         x.shape, kh, kw, stride, pad).max()))
        q = self._quantize(layer, "bwd", {"X": x, "W": w, "dY": dy}, prods)
        (qx, fx), (qw, fw), (qd, fd) = q["X"], q["W"], q["dY"]
        dx, dw = self._gemm(conv2d_backward, self.s, qx, qw, qd, stride, pad,
                            schedule=self.schedule, layer=layer, need_dx=need_dx)
        dw = (dw * 2.0 ** -(fx + fd)).astype(np.float32)
        if dx is not None:
            dx = (dx * 2.0 ** -(fd + fw)).astype(np.float32)
        return dx, dw


# ------------------------------------------------------------------------------ network

def DigitsCNN(channels: int = 8, seed: int = 0) -> L.Sequential:
    """The original digits CNN: conv3x3(1->C, pad 1) -> ReLU -> maxpool2 -> FC(C*16 -> 10)."""
    return L.digits_cnn((1, 8, 8), 10, seed, channels=channels)


def softmax_ce(logits: np.ndarray, y: np.ndarray):
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    prob = e / e.sum(axis=1, keepdims=True)
    B = logits.shape[0]
    loss = float(-np.log(prob[np.arange(B), y] + 1e-12).mean())
    d = prob
    d[np.arange(B), y] -= 1.0
    return loss, (d / B).astype(np.float32)


def load_digits_split(seed: int = 0, test_fraction: float = 0.2):
    """scikit-learn's bundled digits (no download), scaled to [0, 1], shuffled split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(y))
    n_test = int(round(len(y) * test_fraction))
    te, tr = idx[:n_test], idx[n_test:]
    return x[tr], y[tr], x[te], y[te]


class SGD:
    """SGD with optional momentum on the float master weights; ``state_dict`` /
    ``load_state_dict`` for checkpoints."""

    def __init__(self, params: list[np.ndarray], lr: float, momentum: float = 0.0):
        self.params, self.lr, self.momentum = params, lr, momentum
        self.lr0 = lr   # the base rate (a decay schedule sets lr per epoch)
        self.velocity = [np.zeros_like(p) for p in params] if momentum else []
        self.steps = 0

    def step(self, grads) -> None:
        for i, (p, g) in enumerate(zip(self.params, grads, strict=True)):
            if not np.all(np.isfinite(g)):
                raise FloatingPointError("non-finite gradient (training diverged?)")
            if self.momentum:
                v = self.velocity[i]
                v *= self.momentum
                v += g
                g = v
            p -= self.lr * g
        self.steps += 1

    def state_dict(self) -> dict:
        return {"lr": self.lr, "lr0": self.lr0, "momentum": self.momentum, "steps": self.steps,
                "velocity": [v.copy() for v in self.velocity]}

    def load_state_dict(self, st: dict) -> None:
        self.lr, self.momentum, self.steps = float(st["lr"]), float(st["momentum"]), int(st["steps"])
        self.lr0 = float(st.get("lr0", self.lr))
        self.velocity = [np.array(v, dtype=np.float32) for v in st["velocity"]]
        if self.momentum and len(self.velocity) != len(self.params):
            raise ValueError("optimizer state does not match the network's parameters")


@dataclasses.dataclass
class EpochStats:
    epoch: int
    loss: float
    train_acc: float
    test_acc: float
    seconds: float
    device_seconds: float


def evaluate(net, be, x, y, batch: int = 128) -> float:
    correct = 0
    for i in range(0, len(y), batch):
        logits, _ = net.forward(be, x[i:i + batch])
        correct += int((logits.argmax(axis=1) == y[i:i + batch]).sum())
    return correct / max(len(y), 1)


def train(net, be, data, epochs: int = 5, batch: int = 32, lr: float = 0.1,
          seed: int = 0, progress: bool = True, on_epoch: Callable | None = None,
          device_seconds: Callable[[], float] | None = None, eval_backend=None, *,
          opt: SGD | None = None, rng: np.random.Generator | None = None,
          start_epoch: int = 1, decay: str = "none") -> list[EpochStats]:
    """SGD training of epochs ``start_epoch..epochs``; returns per-epoch stats.
    ``decay``: "none" (constant ``lr``) or "cosine" (epoch e of E uses
    lr * (1 + cos(pi * (e-1) / E)) / 2).
    ``eval_backend`` runs the test-set forward pass (defaults to ``be``); ``opt`` and ``rng``
    (data order) may be given to resume from a checkpoint."""
    from tqdm.auto import tqdm

    xtr, ytr, xte, yte = data
    rng = rng if rng is not None else np.random.default_rng(seed)
    opt = opt if opt is not None else SGD(net.params(), lr)
    if decay not in ("none", "cosine"):
        raise ValueError(f"unknown learning-rate decay {decay!r}; choose none or cosine")
    base_lr = opt.lr0
    hist = []
    for ep in range(start_epoch, epochs + 1):
        opt.lr = base_lr if decay == "none" else \
            base_lr * 0.5 * (1 + math.cos(math.pi * (ep - 1) / epochs))
        t0 = time.perf_counter()
        d0 = device_seconds() if device_seconds else 0.0
        order = rng.permutation(len(ytr))
        losses, correct = [], 0
        steps = range(0, len(ytr), batch)
        # disable=None: the bar shows on a terminal only, not in logs
        bar = tqdm(steps, desc=f"epoch {ep}/{epochs} [{be.name}]",
                   disable=None if progress else True, leave=False, unit="step")
        for i in bar:
            idx = order[i:i + batch]
            logits, cache = net.forward(be, xtr[idx])
            loss, dlogits = softmax_ce(logits, ytr[idx])
            grads = net.backward(be, cache, dlogits)
            opt.step(grads)
            losses.append(loss)
            correct += int((logits.argmax(axis=1) == ytr[idx]).sum())
            bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}")
        bar.close()
        test_acc = evaluate(net, eval_backend or be, xte, yte)
        st = EpochStats(ep, float(np.mean(losses)), correct / len(ytr), test_acc,
                        time.perf_counter() - t0,
                        (device_seconds() - d0) if device_seconds else 0.0)
        hist.append(st)
        if on_epoch:
            on_epoch(st)
    return hist
