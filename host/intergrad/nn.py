"""Training a CNN whose every GEMM runs on a GEMM engine, everything else on the host.

The networks are :class:`intergrad.layers.Sequential` stacks (``digits``, ``lenet``,
``lenet5``, see :data:`intergrad.layers.NETWORKS`); their GEMMs go through an engine of
:mod:`intergrad.engine` (:class:`~intergrad.engine.DeviceEngine`, the array in fixed point,
or :class:`~intergrad.engine.FloatEngine`, float32 numpy).  Weights, biases, the optimizer
state and all non-GEMM layers stay in float32 on the host ("float master weights").

Here: the loss (:func:`softmax_ce`), the optimizer (:class:`SGD`), one training step
(:func:`train_step`), the epoch loop (:func:`train`), :func:`evaluate`, and the schedule
comparison (:func:`measure_schedules`: the same batches through the baseline and InterGrad
schedules on one accelerator, a :class:`~intergrad.scheduler.Comparison`).
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from . import layers as L


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


def _sklearn_digits_file():
    """scikit-learn's bundled digits CSV, found without importing scikit-learn (its
    ``sklearn.datasets`` import takes seconds: scipy and more); None if not there."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        f = Path(loc) / "datasets" / "data" / "digits.csv.gz"
        if f.is_file():
            return f
    return None


def load_digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 8x8 digits (pixel values 0..16, float64) and their labels, as
    ``sklearn.datasets.load_digits`` returns them: read from its CSV directly, or through
    scikit-learn where the file is not where it keeps it."""
    f = _sklearn_digits_file()
    if f is None:
        from sklearn.datasets import load_digits

        d = load_digits()
        return d.images, d.target
    data = np.loadtxt(f, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)


def load_digits_split(seed: int = 0, test_fraction: float = 0.2):
    """scikit-learn's bundled digits (no download), scaled to [0, 1], shuffled split."""
    images, target = load_digits_raw()
    x = (images.astype(np.float32) / 16.0)[:, None, :, :]
    y = target.astype(np.int64)
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


class Step(NamedTuple):
    """One training step's forward and backward pass."""

    loss: float
    logits: np.ndarray
    grads: list[np.ndarray]   # aligned with net.params()


def gradients(net, engine, x, y) -> Step:
    """Forward, softmax cross-entropy and backward of one minibatch on ``engine``."""
    logits, cache = net.forward(engine, x)
    loss, dlogits = softmax_ce(logits, y)
    return Step(loss, logits, net.backward(engine, cache, dlogits))


def measure_schedules(net, accel, x, y, *, steps: int, batch: int, seed: int = 0):
    """The counters of ``steps`` training steps (gradients only, the weights stay) from
    ``net``'s weights under the baseline and under the InterGrad schedule, on the same random
    minibatches (drawn from ``np.random.default_rng(seed)``) on the accelerator ``accel``:
    a :class:`~intergrad.scheduler.Comparison` (``rows()``, ``to_frame()``)."""
    from .engine import DeviceEngine
    from .scheduler import Scheduler

    reports = {}
    for schedule in ("baseline", "intergrad"):
        sched = Scheduler(accel)
        engine = DeviceEngine(sched, schedule)
        n = net.copy()
        rng = np.random.default_rng(seed)
        for _ in range(steps):
            idx = rng.choice(len(y), batch, replace=False)
            gradients(n, engine, x[idx], y[idx])
        reports[schedule] = sched.report
    return reports["baseline"].compare(reports["intergrad"], [l.name for l in net.gemm_layers()])


@dataclasses.dataclass
class EpochStats:
    epoch: int
    loss: float
    train_acc: float
    test_acc: float
    seconds: float
    device_seconds: float


def evaluate(net, engine, x, y, batch: int = 128) -> float:
    correct = 0
    for i in range(0, len(y), batch):
        logits, _ = net.forward(engine, x[i:i + batch])
        correct += int((logits.argmax(axis=1) == y[i:i + batch]).sum())
    return correct / max(len(y), 1)


def train(net, engine, data, epochs: int = 5, batch: int = 32, lr: float = 0.1,
          seed: int = 0, progress: bool = True, on_epoch: Callable | None = None,
          device_seconds: Callable[[], float] | None = None, eval_engine=None, *,
          opt: SGD | None = None, rng: np.random.Generator | None = None,
          start_epoch: int = 1, decay: str = "none") -> list[EpochStats]:
    """SGD training of epochs ``start_epoch..epochs``; returns per-epoch stats.
    ``decay``: "none" (constant ``lr``) or "cosine" (epoch e of E uses
    lr * (1 + cos(pi * (e-1) / E)) / 2).
    ``eval_engine`` runs the test-set forward pass (defaults to ``engine``); ``opt`` and
    ``rng`` (data order) may be given to resume from a checkpoint."""
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
        bar = tqdm(steps, desc=f"epoch {ep}/{epochs} [{engine.name}]",
                   disable=None if progress else True, leave=False, unit="step")
        for i in bar:
            idx = order[i:i + batch]
            step = gradients(net, engine, xtr[idx], ytr[idx])
            opt.step(step.grads)
            losses.append(step.loss)
            correct += int((step.logits.argmax(axis=1) == ytr[idx]).sum())
            bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}")
        bar.close()
        test_acc = evaluate(net, eval_engine or engine, xte, yte)
        st = EpochStats(ep, float(np.mean(losses)), correct / len(ytr), test_acc,
                        time.perf_counter() - t0,
                        (device_seconds() - d0) if device_seconds else 0.0)
        hist.append(st)
        if on_epoch:
            on_epoch(st)
    return hist
