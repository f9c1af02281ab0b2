"""A small CNN trained with its GEMMs on the systolic array, the rest on the host.

Network (digits, 1x8x8 images): conv 3x3 (1 -> C channels, padding 1) -> ReLU ->
max-pool 2x2 -> fully connected (C*4*4 -> 10) -> softmax cross-entropy; plain SGD.

Fixed point: before every GEMM the host quantizes each operand to signed DATA_W-bit
integers with its own power-of-two scale (per tensor, from its largest magnitude), using at
most ``q_bits`` magnitude bits, where q_bits is chosen so that a product sum of K terms
can never overflow the ACC_W accumulator: 2*q_bits + ceil(log2 K) <= ACC_W - 1 (and
q_bits <= DATA_W - 1).  Values therefore never saturate and results never wrap; the GEMM
result (ACC_W integers) is scaled back to float on the host.  Weights, biases, the
optimizer and all non-GEMM layers stay in float32 on the host.

:class:`FloatBackend` runs the same network with float numpy GEMMs: the reference.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import numpy as np

from .scheduler import Scheduler, check_conv, im2col


# ------------------------------------------------------------------------------ GEMM backends

class FloatBackend:
    """float32 numpy GEMMs: the reference model."""

    name = "float"

    def matmul(self, a, b, layer, pass_):
        return a.astype(np.float32) @ b.astype(np.float32)

    def fc_forward(self, X, W, layer):
        return self.matmul(X, W, layer, "fwd")

    def fc_backward(self, X, W, dY, layer, need_dx=True):
        dW = X.T.astype(np.float32) @ dY
        dX = dY @ W.T if need_dx else None
        return dX, dW


def _qbits(cfg, k: int) -> int:
    return max(1, min(cfg.data_w - 1, (cfg.acc_w - 1 - math.ceil(math.log2(max(k, 1)))) // 2))


def quantize(x: np.ndarray, bits: int) -> tuple[np.ndarray, int]:
    """x ~= q * 2**-f with |q| < 2**bits; returns (q int64, f)."""
    m = float(np.max(np.abs(x))) if x.size else 0.0
    if m == 0.0 or not np.isfinite(m):
        if not np.isfinite(m):
            raise FloatingPointError("non-finite value in a tensor to quantize (training diverged?)")
        return np.zeros(x.shape, dtype=np.int64), 0
    f = bits - 1 - math.floor(math.log2(m))  # m * 2**f < 2**bits
    q = np.rint(x.astype(np.float64) * (2.0 ** f)).astype(np.int64)
    lim = (1 << bits) - 1
    np.clip(q, -lim, lim, out=q)  # rounding at the top can reach 2**bits: clip one LSB
    return q, f


class DeviceBackend:
    """GEMMs on the array through a :class:`Scheduler` (fixed point, host requantization)."""

    name = "device"

    def __init__(self, scheduler: Scheduler, schedule: str = "intergrad"):
        self.s = scheduler
        self.cfg = scheduler.cfg
        self.schedule = schedule

    def fc_forward(self, X, W, layer):
        b = _qbits(self.cfg, X.shape[1])
        qx, fx = quantize(X, b)
        qw, fw = quantize(W, b)
        return (self.s.fc_forward(qx, qw, layer=layer) * 2.0 ** -(fx + fw)).astype(np.float32)

    def fc_backward(self, X, W, dY, layer, need_dx=True):
        b = _qbits(self.cfg, max(X.shape[0], W.shape[1]))
        qx, fx = quantize(X, b)
        qw, fw = quantize(W, b)
        qd, fd = quantize(dY, b)
        dX, dW = self.s.fc_backward(qx, qw, qd, schedule=self.schedule, layer=layer,
                                    need_dx=need_dx)
        dW = (dW * 2.0 ** -(fx + fd)).astype(np.float32)
        if dX is not None:
            dX = (dX * 2.0 ** -(fd + fw)).astype(np.float32)
        return dX, dW


# ------------------------------------------------------------------------------ network

@dataclasses.dataclass
class DigitsCNN:
    """conv3x3(1->C) -> ReLU -> maxpool2 -> FC(C*16 -> 10), float32 parameters."""

    channels: int = 8
    seed: int = 0

    def __post_init__(self):
        rng = np.random.default_rng(self.seed)
        C = self.channels
        self.wc = (rng.standard_normal((C, 1, 3, 3)) * math.sqrt(2.0 / 9)).astype(np.float32)
        self.bc = np.zeros(C, dtype=np.float32)
        self.wf = (rng.standard_normal((C * 16, 10)) * math.sqrt(1.0 / (C * 16))).astype(np.float32)
        self.bf = np.zeros(10, dtype=np.float32)

    def params(self):
        return [self.wc, self.bc, self.wf, self.bf]

    def copy(self) -> "DigitsCNN":
        other = DigitsCNN.__new__(DigitsCNN)
        other.channels, other.seed = self.channels, self.seed
        other.wc, other.bc, other.wf, other.bf = (p.copy() for p in self.params())
        return other

    # forward / backward with the GEMMs on `be`
    def forward(self, be, x):
        B = x.shape[0]
        C = self.channels
        check_conv("conv1", x.shape, self.wc.shape, 1, 1)
        cols = im2col(x, 3, 3, 1, 1)                                  # (B*64, 9)
        wmat = self.wc.reshape(C, -1).T                               # (9, C)
        z = be.fc_forward(cols, wmat, "conv1") + self.bc              # (B*64, C)
        a = np.maximum(z, 0).reshape(B, 8, 8, C)
        p = a.reshape(B, 4, 2, 4, 2, C).max(axis=(2, 4))              # (B, 4, 4, C)
        flat = p.reshape(B, -1)                                       # (B, 16*C)
        logits = be.fc_forward(flat, self.wf, "fc1") + self.bf
        cache = (x, cols, wmat, z, a, p, flat)
        return logits, cache

    def backward(self, be, cache, dlogits):
        x, cols, wmat, z, a, p, flat = cache
        B, C = x.shape[0], self.channels
        dflat, dwf = be.fc_backward(flat, self.wf, dlogits, "fc1", need_dx=True)
        dbf = dlogits.sum(axis=0)
        dp = dflat.reshape(B, 4, 4, C)
        # max-pool backward: route to the (first) max of each window
        a6 = a.reshape(B, 4, 2, 4, 2, C)
        mask = (a6 == p[:, :, None, :, None, :])
        first = mask & (np.cumsum(np.cumsum(mask, axis=2), axis=4) == 1)
        da = (first * dp[:, :, None, :, None, :]).reshape(B * 64, C)
        dz = da * (z > 0)
        _, dwmat = be.fc_backward(cols, wmat, dz.astype(np.float32), "conv1", need_dx=False)
        dbc = dz.sum(axis=0)
        dwc = dwmat.T.reshape(self.wc.shape)
        return [dwc, dbc, dwf, dbf]


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


@dataclasses.dataclass
class EpochStats:
    epoch: int
    loss: float
    train_acc: float
    test_acc: float
    seconds: float
    device_seconds: float


def evaluate(net: DigitsCNN, be, x, y, batch: int = 128) -> float:
    correct = 0
    for i in range(0, len(y), batch):
        logits, _ = net.forward(be, x[i:i + batch])
        correct += int((logits.argmax(axis=1) == y[i:i + batch]).sum())
    return correct / max(len(y), 1)


def train(net: DigitsCNN, be, data, epochs: int = 5, batch: int = 32, lr: float = 0.1,
          seed: int = 0, progress: bool = True, on_epoch: Callable | None = None,
          device_seconds: Callable[[], float] | None = None, eval_backend=None) -> list[EpochStats]:
    """SGD training; returns per-epoch stats.  ``eval_backend`` runs the test-set forward
    pass (defaults to ``be``)."""
    from tqdm.auto import tqdm

    xtr, ytr, xte, yte = data
    rng = np.random.default_rng(seed)
    hist = []
    for ep in range(1, epochs + 1):
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
            for p, g in zip(net.params(), grads):
                p -= lr * g
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
