"""Bit-exact numpy reference model of the intergrad core (tests compare the RTL with it).

Arithmetic (the same in RTL): inputs are signed DATA_W-bit two's complement; products are
exact; every sum wraps modulo 2**ACC_W.  Because wrapping is a ring homomorphism, the
wrapped result of an exact int64 (or Python-int) sum equals the RTL's step-by-step
wrapped accumulation, so ``wrap(exact_sum)`` is bit-exact.

:class:`ArrayModel` mirrors the core's state across jobs (two weight banks, the active bank,
accumulators, the drain buffer and the :class:`~intergrad.core.CoreState` flags) and turns a
job's input beats into its output beats.  The job contract itself (Job, the Mode records,
stream packing, counter formulas) is :mod:`intergrad.core`; this package is the reference
model only and nothing on the production path imports it.
"""
from __future__ import annotations

import numpy as np

from ..core import CoreState, Job, job_lanes, wrap
from ..spec import ArrayConfig

__all__ = ["ws", "os_accumulate", "intergrad", "ArrayModel", "junk_outside_tile"]


# --------------------------------------------------------------------------- arithmetic

def _matmul_exact(a: np.ndarray, b: np.ndarray, acc_w: int) -> np.ndarray:
    """Exact integer matmul then wrap.  int64 is exact while |sum| < 2**63: guard it."""
    a = a.astype(np.int64)
    b = b.astype(np.int64)
    k = a.shape[-1]
    bound = int(np.abs(a).max(initial=0)) * int(np.abs(b).max(initial=0)) * max(k, 1)
    if bound < (1 << 62):
        return wrap(a @ b, acc_w)
    return wrap(a.astype(object) @ b.astype(object), acc_w)


def ws(S: np.ndarray, V: np.ndarray, acc_w: int) -> np.ndarray:
    """WS mode: out[t][i] = sum_j S[i][j] * V[t][j] (wrapped)."""
    return _matmul_exact(np.asarray(V), np.asarray(S).T, acc_w)


def os_accumulate(acc: np.ndarray, A: np.ndarray, Bm: np.ndarray, acc_w: int) -> np.ndarray:
    """OS mode: acc[i][j] + sum_t A[t][i] * B[t][j] (wrapped)."""
    return wrap(np.asarray(acc, dtype=np.int64) + _matmul_exact(np.asarray(A).T, np.asarray(Bm), acc_w), acc_w)


def intergrad(W: np.ndarray, X: np.ndarray, dY: np.ndarray, acc_w: int,
              acc: np.ndarray | None = None):
    """InterGrad: (dX = dY W^T, dW = acc + X^T dY), both wrapped to acc_w."""
    if acc is None:
        acc = np.zeros((W.shape[0], W.shape[1]), dtype=np.int64)
    return ws(W, dY, acc_w), os_accumulate(acc, X, dY, acc_w)


# --------------------------------------------------------------------------- the core

class ArrayModel:
    """State and job semantics of one intergrad core, beat for beat."""

    def __init__(self, cfg: ArrayConfig | None = None):
        self.cfg = cfg or ArrayConfig()
        R, C = self.cfg.rows, self.cfg.cols
        self.banks = np.zeros((2, R, C), dtype=np.int64)
        self.wsel = 0
        self.acc = np.zeros((R, C), dtype=np.int64)
        self.saved_acc = np.zeros((R, C), dtype=np.int64)  # drain buffer (SAVE)
        self.saved_cols = 0
        self.state = CoreState()

    @property
    def preloaded(self) -> bool:
        return self.state.preloaded

    @preloaded.setter
    def preloaded(self, value: bool) -> None:
        self.state.preloaded = bool(value)

    @property
    def saved(self) -> bool:
        return self.state.saved

    def job_input(self, job: Job, **operands) -> np.ndarray:
        """All input beats of a job (:func:`intergrad.core.job_lanes` for this build)."""
        return job_lanes(self.cfg, job, **operands)

    # -- execution -----------------------------------------------------------------------
    def run(self, job: Job, beats: np.ndarray) -> np.ndarray:
        """Apply one job to the state; return its output beats as (n, out_lanes) int64."""
        cfg = self.cfg
        self.state.check(cfg, job)
        beats = np.asarray(beats, dtype=np.int64)
        if beats.shape != (job.in_beats(), cfg.in_lanes):
            raise ValueError(f"job expects {job.in_beats()} beats of {cfg.in_lanes} lanes, "
                             f"got {beats.shape}")
        R, ra, ca = cfg.rows, job.rows_act, job.cols_act
        kind = job.kind
        outs = []
        if job.has("DRAIN_PREV"):
            sr, sc = self.state.saved_rows, self.saved_cols
            d = np.zeros((sr, cfg.out_lanes), dtype=np.int64)
            d[:, :sc] = self.saved_acc[:sr, :sc]
            outs.append(d)
        if job.has("ACC_CLEAR"):
            self.acc[:] = 0
        if job.has("SWAP"):
            self.wsel ^= 1
        pos = 0
        if job.has("LOAD_W"):
            L = job.load_beats()
            self._write_bank(job, 1 - self.wsel, beats[:L])
            self.wsel ^= 1
            pos = L
        data = beats[pos:pos + job.batch]
        pos += job.batch
        left = data[:, :ra]
        top = data[:, R:R + ca]
        S = self.banks[self.wsel][:ra, :ca]
        if kind.data_out:
            out = np.zeros((job.batch, cfg.out_lanes), dtype=np.int64)
            out[:, :ra] = ws(S, top, cfg.acc_w)
            outs.append(out)
        if kind.accumulates:
            self.acc[:ra, :ca] = os_accumulate(self.acc[:ra, :ca], left, top, cfg.acc_w)
        if job.has("DRAIN"):
            d = np.zeros((ra, cfg.out_lanes), dtype=np.int64)
            d[:, :ca] = self.acc[:ra, :ca]
            outs.append(d)
        if job.has("SAVE"):
            self.saved_acc = self.acc.copy()
            self.saved_cols = ca
        if job.has("PRELOAD"):
            self._write_bank(job, 1 - self.wsel, beats[pos:pos + job.preload_beats()])
        self.state.apply(job)
        if not outs:
            return np.zeros((0, cfg.out_lanes), dtype=np.int64)
        return np.concatenate(outs, axis=0)

    def _write_bank(self, job: Job, bank: int, wbeats: np.ndarray) -> None:
        R = self.cfg.rows
        if job.has("TRANSPOSE"):
            for m, lane in enumerate(wbeats):
                self.banks[bank][:job.rows_act, m] = lane[:job.rows_act]
        else:
            for n, lane in enumerate(wbeats):
                self.banks[bank][n, :job.cols_act] = lane[R:R + job.cols_act]

    @property
    def active_weights(self) -> np.ndarray:
        return self.banks[self.wsel].copy()


# --------------------------------------------------------------------------- test stimulus

def junk_outside_tile(cfg: ArrayConfig, job: Job, lanes: np.ndarray,
                      rng: np.random.Generator) -> np.ndarray:
    """``lanes`` (a job's input beats) with nonzero junk in every lane the job does not use,
    which the core must ignore: in a weight beat every lane but the tile's row (top lanes
    0..COLS_ACT-1) or, with TRANSPOSE, column (left lanes 0..ROWS_ACT-1); in a data beat the
    left and top lanes beyond the active shape."""
    R, ra, ca = cfg.rows, job.rows_act, job.cols_act
    wl = np.zeros(cfg.in_lanes, dtype=bool)
    if job.has("TRANSPOSE"):
        wl[:ra] = True
    else:
        wl[R:R + ca] = True
    dl = np.zeros(cfg.in_lanes, dtype=bool)
    dl[:ra] = dl[R:R + ca] = True
    L, B = job.load_beats(), job.batch
    used = np.zeros(np.shape(lanes), dtype=bool)
    used[:L], used[L:L + B], used[L + B:] = wl, dl, wl     # [weights] data [preload]
    lim = 1 << (cfg.data_w - 1)
    junk = rng.integers(1, lim, used.shape) * rng.choice([-1, 1], used.shape)
    return np.where(used, lanes, junk)
