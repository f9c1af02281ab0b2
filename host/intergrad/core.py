"""The job contract of one intergrad core: everything the host must know about a job.

A job is one START of the core (:class:`Job`: mode, batch, active shape, flags).  This module
holds what follows from the register map in :mod:`intergrad.spec` and is needed on the
production path (driver, planner, scheduler, analytical model) and by the tests alike:

* :class:`Mode` records: what each mode streams, uses and computes (no ``mode == "IG"``
  string tests elsewhere);
* :data:`MAX_BATCH`, derived from the width of the BATCH register field;
* operand checks (:func:`check_fits`) and the two's-complement :func:`wrap`;
* the stream format: :func:`pack_beats` / :func:`unpack_beats` and the lane builders
  (:func:`weight_lanes`, :func:`data_lanes`, :func:`job_lanes`);
* the per-job counter formulas (:func:`expected_counters`);
* the register writes that program a job (:func:`register_writes`);
* the state the core keeps between jobs that the host must track (:class:`CoreState`).

The bit-exact arithmetic of the PEs is not here: :mod:`intergrad.golden` is the reference
model (it imports this module; nothing on the production path imports it).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Iterable

import numpy as np

from . import spec
from .spec import ArrayConfig, ERRORS, FLAGS

__all__ = [
    "Mode", "MODES", "MAX_BATCH", "JobError", "Job", "CoreState", "wrap", "check_fits",
    "pack_beats", "unpack_beats", "put_weights", "put_data", "weight_lanes", "data_lanes", "job_lanes",
    "expected_counters", "jobs_counters", "register_writes",
]


# --------------------------------------------------------------------------- modes

@dataclasses.dataclass(frozen=True)
class Mode:
    """What one job mode of the core streams and computes (the code comes from spec.MODES).

    ``uses_weights``: the PEs multiply by the active weight bank (LOAD_W, PRELOAD, SWAP and
    TRANSPOSE apply).  ``data_out``: one output beat per data beat (the psums of the
    stationary weights).  ``accumulates``: the PE accumulators add the products (ACC_CLEAR,
    DRAIN and SAVE apply).  ``left_data``: data beats carry the left lanes too (else the top
    lanes only).  ``macs_per_pe``: multiply-accumulates per active PE per data beat; a PE
    with one multiplier (DUAL_MAC = 0) takes that many cycles per array step.
    """

    name: str
    uses_weights: bool
    data_out: bool
    accumulates: bool
    left_data: bool
    macs_per_pe: int

    @property
    def code(self) -> int:
        return spec.MODES[self.name]


MODES: dict[str, Mode] = {m.name: m for m in (
    Mode("WS", uses_weights=True, data_out=True, accumulates=False, left_data=False,
         macs_per_pe=1),
    Mode("OS", uses_weights=False, data_out=False, accumulates=True, left_data=True,
         macs_per_pe=1),
    Mode("IG", uses_weights=True, data_out=True, accumulates=True, left_data=True,
         macs_per_pe=2),
)}
assert list(MODES) == list(spec.MODES), "every mode of spec.MODES needs a Mode record here"

#: Longest data stream of one job: the largest value of the BATCH register field.
MAX_BATCH = (1 << spec.field("BATCH", "BATCH")[1]) - 1


# --------------------------------------------------------------------------- jobs

class JobError(ValueError):
    """A job the hardware would refuse; ``code`` is the STATUS.ERR_CAUSE it would show."""

    def __init__(self, name: str, msg: str):
        super().__init__(f"{name}: {msg}")
        self.name = name
        self.code = ERRORS[name][0]


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

    @property
    def kind(self) -> Mode:
        """The :class:`Mode` record of this job's mode."""
        return MODES[self.mode]

    def has(self, flag: str) -> bool:
        return flag in self.flags

    def validate(self, cfg: ArrayConfig, preloaded: bool | None = None) -> None:
        """Raise :class:`JobError` as the core would reject this job at START."""
        if not (1 <= self.batch <= MAX_BATCH):
            raise JobError("BAD_SHAPE", f"batch {self.batch} not in 1..{MAX_BATCH}")
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
        return self.batch if self.kind.data_out else 0

    def in_beats(self) -> int:
        return self.load_beats() + self.batch + self.preload_beats()

    def out_beats(self) -> int:
        return self.prev_rows + self.data_out_beats() + self.drain_beats()

    def describe(self) -> str:
        return (f"job {self.mode} B={self.batch} {self.rows_act}x{self.cols_act} "
                f"flags={sorted(self.flags)}")


@dataclasses.dataclass
class CoreState:
    """What the core keeps between jobs and the host must track (STATUS.PRELOADED and
    STATUS.SAVED): preloaded weights pending in the shadow bank, saved accumulators pending
    in the drain buffer and the saved job's ROWS_ACT.  A soft reset clears it all."""

    preloaded: bool = False
    saved: bool = False
    saved_rows: int = 0

    def check(self, cfg: ArrayConfig, job: Job) -> None:
        """Raise as the core would reject ``job`` at START in this state."""
        job.validate(cfg, self.preloaded)
        if job.has("DRAIN_PREV"):
            if not self.saved:
                raise JobError("NO_SAVED", "DRAIN_PREV with no saved accumulators pending")
            if job.prev_rows != self.saved_rows:
                raise ValueError(f"prev_rows={job.prev_rows} but the saved tile has "
                                 f"{self.saved_rows} rows")

    def apply(self, job: Job) -> None:
        """The state after ``job`` completed (in the core's order: DRAIN_PREV and SWAP/LOAD_W
        act at the start, SAVE and PRELOAD at the end)."""
        if job.has("DRAIN_PREV"):
            self.saved, self.saved_rows = False, 0
        if job.has("SWAP") or job.has("LOAD_W"):
            self.preloaded = False
        if job.has("SAVE"):
            self.saved, self.saved_rows = True, job.rows_act
        if job.has("PRELOAD"):
            self.preloaded = True

    def reset(self) -> None:
        self.preloaded, self.saved, self.saved_rows = False, False, 0


def register_writes(job: Job) -> list[tuple[str, int]]:
    """The (register name, value) writes that program ``job``, in order; CTRL.START follows."""
    return [
        ("MODE", spec.pack_fields("MODE", MODE=job.kind.code, FLAGS=spec.flags_word(*job.flags))),
        ("BATCH", spec.pack_fields("BATCH", BATCH=job.batch)),
        ("SHAPE", spec.pack_fields("SHAPE", ROWS_ACT=job.rows_act, COLS_ACT=job.cols_act)),
    ]


def expected_counters(cfg: ArrayConfig, job: Job, queued: bool = False) -> dict[str, int]:
    """Closed-form counter increments of one error-free job, stalls excluded.

    ``busy_cycles`` here is the stall-free figure: the RTL's busy_cycles equals it plus the
    measured stall_in and stall_out.  A DRAIN_PREV drain adds output beats but no steps.
    ``queued``: the job came from a job queue (CTRL.QUEUE): its header beat is one more
    input beat and one more busy cycle (the cycle that takes it), no step.
    """
    F = cfg.flush_steps
    L, P, D, B = job.load_beats(), job.preload_beats(), job.drain_beats(), job.batch
    steps = L + B + max(F + D, P)
    k = job.kind.macs_per_pe
    slow_extra = (k - 1) * (B + F) if not cfg.dual_mac else 0
    return {
        "busy_cycles": steps + slow_extra + queued,
        "steps": steps,
        "macs": B * job.rows_act * job.cols_act * k,
        "in_beats": job.in_beats() + queued,
        "wload_beats": L + P,
        "out_beats": job.out_beats(),
        "jobs": 1,
    }


def jobs_counters(cfg: ArrayConfig, jobs: Iterable[Job], queued: bool = False) -> dict[str, int]:
    """Sum of :func:`expected_counters` over several jobs (``queued``: one job queue)."""
    tot: dict[str, int] = {}
    for j in jobs:
        for k, v in expected_counters(cfg, j, queued).items():
            tot[k] = tot.get(k, 0) + v
    return tot


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


# --------------------------------------------------------------------------- beats

_NATIVE = {8: "<i1", 16: "<i2", 32: "<i4", 64: "<i8"}


def pack_beats(lanes: np.ndarray, width: int, axis_bits: int) -> bytes:
    """(n, k) signed lane values -> n little-endian beats of axis_bits bits, lane 0 lowest."""
    lanes = np.asarray(lanes, dtype=np.int64)
    n, k = lanes.shape
    nbytes = axis_bits // 8
    if width in _NATIVE and k * width == axis_bits:
        # int64 -> narrower signed integers keeps the low bits: the two's-complement wrap
        return lanes.astype(_NATIVE[width]).tobytes()
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
    if width in _NATIVE and lanes * width == axis_bits:
        return np.frombuffer(data, dtype=_NATIVE[width]).reshape(n, lanes).astype(np.int64)
    if width <= 57:
        # lane i is bits [i*width, (i+1)*width) of its beat: the 64-bit little-endian word
        # at the byte its first bit is in (read unaligned, the data padded by a word),
        # shifted by that bit's place in the byte and masked
        byte, shift, mask = _lane_words(lanes, width)
        buf = np.zeros(len(data) + 8, dtype=np.uint8)
        buf[:len(data)] = np.frombuffer(data, dtype=np.uint8)
        words = np.ndarray((n, nbytes), dtype="<u8", buffer=buf, strides=(nbytes, 1))
        out = words[:, byte]
        out >>= shift
        out &= mask
        out = out.astype(np.int64)
    else:   # unpack the bits of every beat at once
        raw = np.frombuffer(data, dtype=np.uint8).reshape(n, nbytes)
        bits = np.unpackbits(raw, axis=1, bitorder="little")[:, :lanes * width]
        weights = (np.int64(1) << np.arange(width, dtype=np.int64))
        out = bits.reshape(n, lanes, width).astype(np.int64) @ weights
    out -= (out >> (width - 1)) << width  # two's complement: subtract 2**width when negative
    return out


@functools.lru_cache(maxsize=64)
def _lane_words(lanes: int, width: int) -> tuple[np.ndarray, np.ndarray, np.uint64]:
    """unpack_beats' word of each lane: its first byte, the shift of its first bit in
    that byte (as uint64) and the lane mask."""
    first = np.arange(lanes) * width
    byte, shift = first // 8, (first % 8).astype(np.uint64)
    byte.setflags(write=False)
    shift.setflags(write=False)
    return byte, shift, np.uint64((1 << width) - 1)


# --------------------------------------------------------------------------- lanes

def put_weights(cfg: ArrayConfig, dst: np.ndarray, S: np.ndarray, transpose: bool) -> None:
    """Write the weight beats of S (rows x cols of the stationary tile) into ``dst`` (rows
    of input lanes): beat n carries row n of S in the top lanes, or with TRANSPOSE beat m
    carries column m in the left lanes."""
    ra, ca = S.shape
    if transpose:
        dst[:, :ra] = S.T
    else:
        dst[:, cfg.rows:cfg.rows + ca] = S


def put_data(cfg: ArrayConfig, dst: np.ndarray, left: np.ndarray | None,
             top: np.ndarray | None) -> None:
    """Write data beats into ``dst`` (rows of input lanes): ``left`` (beats x rows_act) in
    the left lanes 0.., ``top`` (beats x cols_act) in the top lanes ROWS..; None: zeros."""
    if left is not None:
        dst[:, :left.shape[1]] = left
    if top is not None:
        dst[:, cfg.rows:cfg.rows + top.shape[1]] = top


def weight_lanes(cfg: ArrayConfig, job: Job, S: np.ndarray) -> np.ndarray:
    """Input-lane rows that load S (rows_act x cols_act) for this job's TRANSPOSE flag."""
    S = check_fits(S, cfg.data_w, "weights")
    if S.shape != (job.rows_act, job.cols_act):
        raise ValueError(f"weights shape {S.shape} != active tile "
                         f"({job.rows_act}, {job.cols_act})")
    lanes = np.zeros((job.weight_beats(), cfg.in_lanes), dtype=np.int64)
    put_weights(cfg, lanes, S, job.has("TRANSPOSE"))
    return lanes


def data_lanes(cfg: ArrayConfig, job: Job, left: np.ndarray | None,
               top: np.ndarray | None) -> np.ndarray:
    """The job's data beats: ``left`` (batch x rows_act) in the left lanes, ``top``
    (batch x cols_act) in the top lanes; either may be None (zeros)."""
    if left is not None:
        left = check_fits(left, cfg.data_w, "left-stream data")
        if left.shape != (job.batch, job.rows_act):
            raise ValueError(f"left data shape {left.shape} != ({job.batch}, {job.rows_act})")
    if top is not None:
        top = check_fits(top, cfg.data_w, "top-stream data")
        if top.shape != (job.batch, job.cols_act):
            raise ValueError(f"top data shape {top.shape} != ({job.batch}, {job.cols_act})")
    lanes = np.zeros((job.batch, cfg.in_lanes), dtype=np.int64)
    put_data(cfg, lanes, left, top)
    return lanes


def job_lanes(cfg: ArrayConfig, job: Job, *, weights=None, left=None, top=None,
              preload=None) -> np.ndarray:
    """All input beats of a job as lane values, in stream order: [weights] data [preload]."""
    parts = []
    if job.has("LOAD_W"):
        if weights is None:
            raise ValueError("LOAD_W job needs weights")
        parts.append(weight_lanes(cfg, job, weights))
    parts.append(data_lanes(cfg, job, left, top))
    if job.has("PRELOAD"):
        if preload is None:
            raise ValueError("PRELOAD job needs the next weights")
        parts.append(weight_lanes(cfg, job, preload))
    return np.concatenate(parts, axis=0)
