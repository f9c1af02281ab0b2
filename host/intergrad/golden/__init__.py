"""Bit-exact numpy golden model of the intergrad core.

Arithmetic (the same in RTL): inputs are signed DATA_W-bit two's complement; products are
exact; every sum wraps modulo 2**ACC_W.  Because wrapping is a ring homomorphism, the
wrapped result of an exact int64 (or Python-int) sum equals the RTL's step-by-step
wrapped accumulation, so ``wrap(exact_sum)`` is bit-exact.

:class:`ArrayModel` mirrors the core's state across jobs (two weight banks, the active bank,
accumulators, the pending-preload flag) and turns a job's input beats into its output
beats.  :func:`expected_counters` gives the closed-form performance-counter values of a
job; the RTL must hit them exactly (stall counters are measured, not predicted).
"""
from __future__ import annotations

import dataclasses
from typing import Iterable

import numpy as np

from ..spec import ArrayConfig, ERRORS, FLAGS, MODES

__all__ = [
    "wrap", "check_fits", "ws", "os_accumulate", "intergrad", "Job", "ArrayModel",
    "expected_counters", "pack_beats", "unpack_beats", "JobError",
]


class JobError(ValueError):
    """A job the hardware would refuse; ``code`` is the STATUS.ERR_CAUSE it would show."""

    def __init__(self, name: str, msg: str):
        super().__init__(f"{name}: {msg}")
        self.name = name
        self.code = ERRORS[name][0]


# --------------------------------------------------------------------------- arithmetic

def wrap(x, bits: int) -> np.ndarray:
    """Two's-complement wrap of integers to ``bits`` bits (int64 result)."""
    a = np.asarray(x)
    if a.dtype == object:
        m = 1 << bits
        h = 1 << (bits - 1)
        return np.vectorize(lambda v: ((int(v) + h) % m) - h, otypes=[np.int64])(a)
    a = a.astype(np.int64)
    if bits >= 64:
        return a
    m = np.int64(1) << np.int64(bits)
    h = np.int64(1) << np.int64(bits - 1)
    return ((a + h) & (m - 1)) - h


def check_fits(a, bits: int, what: str = "value") -> np.ndarray:
    """Return ``a`` as int64, raising if any element is outside signed ``bits`` bits."""
    arr = np.asarray(a)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{what} must be integers (got dtype {arr.dtype}); quantize first")
    arr = arr.astype(np.int64)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if arr.size and (arr.min() < lo or arr.max() > hi):
        bad = tuple(int(i) for i in np.argwhere((arr < lo) | (arr > hi))[0])
        raise OverflowError(
            f"{what} does not fit in {bits}-bit signed: element {bad} = "
            f"{arr[bad]} (range {lo}..{hi})")
    return arr


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


# --------------------------------------------------------------------------- jobs

@dataclasses.dataclass(frozen=True)
class Job:
    """One START of the core: what the MODE/BATCH/SHAPE registers hold."""

    mode: str
    batch: int
    rows_act: int
    cols_act: int
    flags: frozenset = frozenset()
    #: with DRAIN_PREV: ROWS_ACT of the job that SAVEd (the core latched it; the host knows it)
    prev_rows: int = 0

    def __post_init__(self):
        object.__setattr__(self, "flags", frozenset(self.flags))
        if self.mode not in MODES:
            raise JobError("BAD_MODE", f"unknown mode {self.mode!r}; known: {', '.join(MODES)}")
        unknown = set(self.flags) - set(FLAGS)
        if unknown:
            raise ValueError(f"unknown flags {sorted(unknown)}; known: {', '.join(FLAGS)}")

    def has(self, flag: str) -> bool:
        return flag in self.flags

    def validate(self, cfg: ArrayConfig, preloaded: bool | None = None) -> None:
        if not (1 <= self.batch <= 0xFFFF):
            raise JobError("BAD_SHAPE", f"batch {self.batch} not in 1..65535")
        if not (1 <= self.rows_act <= cfg.rows and 1 <= self.cols_act <= cfg.cols):
            raise JobError("BAD_SHAPE", f"active tile {self.rows_act}x{self.cols_act} does not "
                                        f"fit the {cfg.rows}x{cfg.cols} array")
        if self.has("LOAD_W") and self.has("SWAP"):
            raise JobError("BAD_FLAGS", "LOAD_W and SWAP together")
        if self.has("SAVE") and self.has("DRAIN"):
            raise JobError("BAD_FLAGS", "SAVE and DRAIN together")
        if self.has("DRAIN_PREV") != (self.prev_rows > 0) or not 0 <= self.prev_rows <= cfg.rows:
            raise ValueError(f"prev_rows={self.prev_rows} must be the saved tile's rows (1.."
                             f"{cfg.rows}) exactly when DRAIN_PREV is set")
        if preloaded is not None and self.has("SWAP") and not preloaded:
            raise JobError("NO_PRELOAD", "SWAP with no preloaded weights pending")

    def weight_beats(self) -> int:
        return self.cols_act if self.has("TRANSPOSE") else self.rows_act

    def load_beats(self) -> int:
        return self.weight_beats() if self.has("LOAD_W") else 0

    def preload_beats(self) -> int:
        return self.weight_beats() if self.has("PRELOAD") else 0

    def drain_beats(self) -> int:
        return self.rows_act if self.has("DRAIN") else 0

    def data_out_beats(self) -> int:
        return 0 if self.mode == "OS" else self.batch

    def in_beats(self) -> int:
        return self.load_beats() + self.batch + self.preload_beats()

    def out_beats(self) -> int:
        return self.prev_rows + self.data_out_beats() + self.drain_beats()


def expected_counters(cfg: ArrayConfig, job: Job) -> dict[str, int]:
    """Closed-form counter increments of one error-free job, stalls excluded.

    ``busy_cycles`` here is the stall-free figure: the RTL's busy_cycles equals it plus the
    measured stall_in and stall_out.  A DRAIN_PREV drain adds output beats but no steps.
    """
    F = cfg.flush_steps
    L, P, D, B = job.load_beats(), job.preload_beats(), job.drain_beats(), job.batch
    steps = L + B + max(F + D, P)
    slow_extra = (B + F) if (job.mode == "IG" and not cfg.dual_mac) else 0
    macs = B * job.rows_act * job.cols_act * (2 if job.mode == "IG" else 1)
    return {
        "busy_cycles": steps + slow_extra,
        "steps": steps,
        "macs": macs,
        "in_beats": job.in_beats(),
        "wload_beats": L + P,
        "out_beats": job.out_beats(),
        "jobs": 1,
    }


# --------------------------------------------------------------------------- beats

def pack_beats(lanes: np.ndarray, width: int, axis_bits: int) -> bytes:
    """(n, k) signed lane values -> n little-endian beats of axis_bits bits, lane 0 lowest."""
    lanes = np.asarray(lanes, dtype=np.int64)
    n, k = lanes.shape
    nbytes = axis_bits // 8
    if width in (8, 16, 32, 64) and k * width == axis_bits:
        # int64 -> narrower signed integers keeps the low bits: the two's-complement wrap
        dt = {8: "<i1", 16: "<i2", 32: "<i4", 64: "<i8"}[width]
        return lanes.astype(dt).tobytes()
    mask = (1 << width) - 1
    out = bytearray()
    for row in lanes.tolist():
        v = 0
        for i, x in enumerate(row):
            v |= (int(x) & mask) << (i * width)
        out += v.to_bytes(nbytes, "little")
    return bytes(out)


def unpack_beats(data: bytes, lanes: int, width: int, axis_bits: int) -> np.ndarray:
    """Inverse of :func:`pack_beats`: bytes -> (n, lanes) signed int64."""
    nbytes = axis_bits // 8
    if len(data) % nbytes:
        raise ValueError(f"{len(data)} bytes is not a whole number of {nbytes}-byte beats")
    n = len(data) // nbytes
    if width in (8, 16, 32, 64) and lanes * width == axis_bits:
        dt = {8: "<i1", 16: "<i2", 32: "<i4", 64: "<i8"}[width]
        return np.frombuffer(data, dtype=dt).reshape(n, lanes).astype(np.int64)
    # any other width: unpack the bits of every beat at once (no per-element Python loop)
    raw = np.frombuffer(data, dtype=np.uint8).reshape(n, nbytes)
    bits = np.unpackbits(raw, axis=1, bitorder="little")[:, :lanes * width]
    weights = (np.int64(1) << np.arange(width, dtype=np.int64))
    out = bits.reshape(n, lanes, width).astype(np.int64) @ weights
    out -= (out >> (width - 1)) << width  # two's complement: subtract 2**width when negative
    return out


# --------------------------------------------------------------------------- the core

class ArrayModel:
    """State and job semantics of one intergrad core, beat for beat."""

    def __init__(self, cfg: ArrayConfig | None = None):
        self.cfg = cfg or ArrayConfig()
        R, C = self.cfg.rows, self.cfg.cols
        self.banks = np.zeros((2, R, C), dtype=np.int64)
        self.wsel = 0
        self.acc = np.zeros((R, C), dtype=np.int64)
        self.preloaded = False
        self.saved_acc = np.zeros((R, C), dtype=np.int64)  # drain buffer (SAVE)
        self.saved = False
        self.saved_shape = (0, 0)

    # -- stream assembly (host side) --------------------------------------------------
    def weight_lanes(self, job: Job, S: np.ndarray) -> np.ndarray:
        """Input-lane rows that load S (rows_act x cols_act) for this job's TRANSPOSE flag."""
        cfg = self.cfg
        S = check_fits(S, cfg.data_w, "weights")
        if S.shape != (job.rows_act, job.cols_act):
            raise ValueError(f"weights shape {S.shape} != active tile "
                             f"({job.rows_act}, {job.cols_act})")
        if job.has("TRANSPOSE"):
            lanes = np.zeros((job.cols_act, cfg.in_lanes), dtype=np.int64)
            lanes[:, :job.rows_act] = S.T
        else:
            lanes = np.zeros((job.rows_act, cfg.in_lanes), dtype=np.int64)
            lanes[:, cfg.rows:cfg.rows + job.cols_act] = S
        return lanes

    def data_lanes(self, job: Job, left: np.ndarray | None, top: np.ndarray | None) -> np.ndarray:
        cfg = self.cfg
        lanes = np.zeros((job.batch, cfg.in_lanes), dtype=np.int64)
        if left is not None:
            left = check_fits(left, cfg.data_w, "left-stream data")
            if left.shape != (job.batch, job.rows_act):
                raise ValueError(f"left data shape {left.shape} != ({job.batch}, {job.rows_act})")
            lanes[:, :job.rows_act] = left
        if top is not None:
            top = check_fits(top, cfg.data_w, "top-stream data")
            if top.shape != (job.batch, job.cols_act):
                raise ValueError(f"top data shape {top.shape} != ({job.batch}, {job.cols_act})")
            lanes[:, cfg.rows:cfg.rows + job.cols_act] = top
        return lanes

    def job_input(self, job: Job, *, weights=None, left=None, top=None, preload=None) -> np.ndarray:
        """All input beats of a job as lane values, in stream order."""
        parts = []
        if job.has("LOAD_W"):
            if weights is None:
                raise ValueError("LOAD_W job needs weights")
            parts.append(self.weight_lanes(job, weights))
        parts.append(self.data_lanes(job, left, top))
        if job.has("PRELOAD"):
            if preload is None:
                raise ValueError("PRELOAD job needs the next weights")
            parts.append(self.weight_lanes(job, preload))
        return np.concatenate(parts, axis=0)

    # -- execution -----------------------------------------------------------------------
    def run(self, job: Job, beats: np.ndarray) -> np.ndarray:
        """Apply one job to the state; return its output beats as (n, out_lanes) int64."""
        cfg = self.cfg
        job.validate(cfg, self.preloaded)
        if job.has("DRAIN_PREV"):
            if not self.saved:
                raise JobError("NO_SAVED", "DRAIN_PREV with no saved accumulators pending")
            if job.prev_rows != self.saved_shape[0]:
                raise ValueError(f"prev_rows={job.prev_rows} but the saved tile has "
                                 f"{self.saved_shape[0]} rows")
        beats = np.asarray(beats, dtype=np.int64)
        if beats.shape != (job.in_beats(), cfg.in_lanes):
            raise ValueError(f"job expects {job.in_beats()} beats of {cfg.in_lanes} lanes, "
                             f"got {beats.shape}")
        R, ra, ca = cfg.rows, job.rows_act, job.cols_act
        outs = []
        if job.has("DRAIN_PREV"):
            sr, sc = self.saved_shape
            d = np.zeros((sr, cfg.out_lanes), dtype=np.int64)
            d[:, :sc] = self.saved_acc[:sr, :sc]
            outs.append(d)
            self.saved = False
        if job.has("ACC_CLEAR"):
            self.acc[:] = 0
        if job.has("SWAP"):
            self.wsel ^= 1
            self.preloaded = False
        pos = 0
        if job.has("LOAD_W"):
            L = job.load_beats()
            self._write_bank(job, 1 - self.wsel, beats[:L])
            self.wsel ^= 1
            self.preloaded = False
            pos = L
        data = beats[pos:pos + job.batch]
        pos += job.batch
        left = data[:, :ra]
        top = data[:, R:R + ca]
        S = self.banks[self.wsel][:ra, :ca]
        if job.mode in ("WS", "IG"):
            out = np.zeros((job.batch, cfg.out_lanes), dtype=np.int64)
            out[:, :ra] = ws(S, top, cfg.acc_w)
            outs.append(out)
        if job.mode in ("OS", "IG"):
            self.acc[:ra, :ca] = os_accumulate(self.acc[:ra, :ca], left, top, cfg.acc_w)
        if job.has("DRAIN"):
            d = np.zeros((ra, cfg.out_lanes), dtype=np.int64)
            d[:, :ca] = self.acc[:ra, :ca]
            outs.append(d)
        if job.has("SAVE"):
            self.saved_acc = self.acc.copy()
            self.saved = True
            self.saved_shape = (ra, ca)
        if job.has("PRELOAD"):
            self._write_bank(job, 1 - self.wsel, beats[pos:pos + job.preload_beats()])
            self.preloaded = True
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


def jobs_counters(cfg: ArrayConfig, jobs: Iterable[Job]) -> dict[str, int]:
    """Sum of :func:`expected_counters` over several jobs."""
    tot: dict[str, int] = {}
    for j in jobs:
        for k, v in expected_counters(cfg, j).items():
            tot[k] = tot.get(k, 0) + v
    return tot
