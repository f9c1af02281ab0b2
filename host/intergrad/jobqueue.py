"""A whole pass as one device call: the jobs stream as queues (in-band job descriptors).

:func:`run_pass` validates the pass on the host (the core's preload / saved state followed
job by job), cuts it into queues a DMA moves in one transfer each
(:func:`intergrad.descriptor.split_pass`, at the device's ``max_transfer`` bytes: the AXI
DMA's buffer-length register), and per queue writes CTRL.QUEUE once and makes one
``Device.transfer`` (one MM2S and one S2MM on the board; one C++ call in simulation).
Jobs after the pass's last job with output beats cannot end a queue and run as programmed
jobs (``Accelerator.run_job``).  On a build whose input beat is narrower than a header
every job runs that way.

An error inside a queue is raised after the backend's recovery sequence, with ``.job`` =
the index in the pass of the job that failed (from the core's QUEUE.JOB register, which the
soft reset keeps).

The host-side work that does not depend on the data -- the check, the split into queues,
the header beats and where every beat of a queue's frame comes from -- is compiled once
per (build, job list, core state before, transfer limit) into a :class:`PassProgram`
(:func:`program`; a training run repeats the same passes every step).  A program enters
the cache only after the pass it describes passed the host check and ran without error,
so a cache hit is only possible for a pass that was checked; a hit leaves the input
shapes to check.  A pass is then one cast of its lanes into the program's frame buffer,
one gather per queue (header beats at fixed positions) and one cast of the output beats;
with :func:`run_pass_source` (the lanes given as a source vector and an index into it, as
:mod:`intergrad.stream` describes a pass) one gather per queue from the source straight
into the frame, whose indices the program keeps.
"""
from __future__ import annotations

import collections
import dataclasses
import threading
from typing import Sequence

import numpy as np

from . import descriptor, native, spec
from .descriptor import split_pass
from .device.base import CoreError, DeviceError
from .stream import Source
from .core import _NATIVE, CoreState, Job, JobError, pack_beats, unpack_beats

__all__ = ["run_pass", "run_pass_lanes", "run_pass_source", "check_pass", "PassProgram",
           "program"]

_QUEUE = spec.pack_fields("CTRL", QUEUE=1)


def _check_jobs(cfg, state: CoreState, jobs: Sequence[Job], lanes_list=None) -> CoreState:
    """check_pass's loop on a copy of ``state``: each job, then (with ``lanes_list``) its
    input's shape; returns the state after the pass."""
    state = dataclasses.replace(state)
    for i, job in enumerate(jobs):
        try:
            state.check(cfg, job)
        except JobError as e:
            raise JobError(e.name, f"pass job {i} ({job.mode} B={job.batch} "
                                   f"{job.rows_act}x{job.cols_act}): {e}") from None
        if lanes_list is not None:
            _check_lanes(cfg, i, job.in_beats(), lanes_list[i])
        state.apply(job)
    return state


def _check_lanes(cfg, i: int, beats: int, lanes) -> None:
    """Job ``i``'s input must be ``beats`` beats of in_lanes lanes."""
    shape = np.shape(lanes)
    if shape != (beats, cfg.in_lanes):
        raise ValueError(f"pass job {i} needs {beats} input beats of {cfg.in_lanes} lanes, "
                         f"got array of shape {shape}")


def check_pass(accel, jobs: Sequence[Job], lanes_list: Sequence[np.ndarray]) -> CoreState:
    """Validate every job as the core will see it, following the core's preload / saved
    state (:class:`~intergrad.core.CoreState`); returns the state after the pass.  Raises
    JobError naming the job's index."""
    if len(jobs) != len(lanes_list):
        raise ValueError(f"{len(jobs)} jobs but {len(lanes_list)} input arrays")
    return _check_jobs(accel.cfg, accel.state, jobs, lanes_list)


def _state_key(state: CoreState) -> tuple:
    return (state.preloaded, state.saved, state.saved_rows)


@dataclasses.dataclass(frozen=True)
class PassProgram:
    """Everything about a checked pass that does not depend on its data.

    ``in_offsets`` / ``out_offsets`` (jobs + 1): each job's first input / output beat in the
    pass's lanes; ``queues``: (first, end, frame rows, output beats) per queue, the frame
    rows indexing :attr:`frame` (the pass's packed input beats, then the queued jobs' header
    beats, whose values the program wrote once); ``tail``: the jobs from there on run as
    programmed jobs; ``tail_state``: the core state (preloaded, saved, saved_rows) after
    ``jobs[:tail]``."""

    in_offsets: tuple
    out_offsets: tuple
    queues: tuple
    tail: int
    tail_state: tuple
    #: (in_beats + queued jobs,) one element per beat (numpy void of a beat's bytes);
    #: refilled by every run: one pass at a time per process
    frame: np.ndarray
    native: str | None   # the lanes' dtype when they are whole bytes of the beat (else None)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, compare=False)
    #: id(in_index) -> (in_index, vector buffer, per-queue gather indices) of
    #: :func:`run_pass_source` (a stream layout's index array: one per pass shape)
    gathers: dict = dataclasses.field(default_factory=dict, compare=False)

    @property
    def in_beats(self) -> int:
        return self.in_offsets[-1]

    @property
    def out_beats(self) -> int:
        return self.out_offsets[-1]


def _compile(cfg, jobs: Sequence[Job], state: CoreState, max_transfer) -> PassProgram:
    """The program of a pass that passed the host check in ``state``."""
    n = len(jobs)
    in_off = np.zeros(n + 1, dtype=np.int64)
    out_off = np.zeros(n + 1, dtype=np.int64)
    in_off[1:] = np.cumsum([j.in_beats() for j in jobs])
    out_off[1:] = np.cumsum([j.out_beats() for j in jobs])
    n_in = int(in_off[-1])
    ib = cfg.in_axis_bits // 8
    beat = np.dtype((np.void, ib))
    queues, tail = ([], n) if not cfg.supports_queue else split_pass(cfg, jobs, max_transfer)
    if not cfg.supports_queue:
        tail = 0
    n_hdr = sum(end - first for first, end in queues)
    frame = np.zeros(n_in + n_hdr, dtype=beat)
    progs, h = [], n_in
    for first, end in queues:
        rows = []
        for i in range(first, end):  # the header beat, then the job's input beats
            frame[h] = np.frombuffer(descriptor.header_beat(cfg, jobs[i], i == end - 1),
                                     dtype=beat)[0]
            rows.append(np.array([h], dtype=np.int64))
            rows.append(np.arange(in_off[i], in_off[i + 1], dtype=np.int64))
            h += 1
        idx = np.concatenate(rows)
        idx.setflags(write=False)
        progs.append((first, end, idx, int(out_off[end] - out_off[first])))
    st = dataclasses.replace(state)
    for j in jobs[:tail]:
        st.apply(j)
    native = _NATIVE.get(cfg.data_w) if cfg.data_w * cfg.in_lanes == cfg.in_axis_bits else None
    return PassProgram(tuple(in_off.tolist()), tuple(out_off.tolist()), tuple(progs), tail,
                       _state_key(st), frame, native)


#: (cfg, jobs, state before, transfer limit) -> PassProgram of passes that ran
_PROGRAMS: "collections.OrderedDict[tuple, PassProgram]" = collections.OrderedDict()
_PROGRAMS_MAX = 128   # a network's passes, a few builds


class _JobsKey:
    """A job list in a cache key, its hash computed once (a pass has thousands of jobs)."""

    __slots__ = ("jobs", "h")

    def __init__(self, jobs: tuple):
        self.jobs, self.h = jobs, hash(jobs)

    def __hash__(self) -> int:
        return self.h

    def __eq__(self, other) -> bool:
        return isinstance(other, _JobsKey) and (self.jobs is other.jobs or self.jobs == other.jobs)


#: id(job tuple) -> its _JobsKey (holding the tuple, so the id stays its own); a stream
#: layout's job tuple is the same object on every pass of its shape
_JOB_KEYS: "collections.OrderedDict[int, _JobsKey]" = collections.OrderedDict()


def _key(accel, jobs: Sequence[Job]) -> tuple:
    """The program cache key of ``jobs`` on ``accel`` in its current core state."""
    k = _JOB_KEYS.get(id(jobs)) if isinstance(jobs, tuple) else None
    if k is None or k.jobs is not jobs:
        k = _JobsKey(tuple(jobs))
        if isinstance(jobs, tuple):
            _JOB_KEYS[id(jobs)] = k
            while len(_JOB_KEYS) > _PROGRAMS_MAX:
                _JOB_KEYS.popitem(last=False)
    return (accel.cfg, k, _state_key(accel.state), getattr(accel.device, "max_transfer", None))


def program(accel, jobs: Sequence[Job], lanes_list=None) -> tuple[PassProgram, tuple, bool]:
    """(program, cache key, hit) of ``jobs`` on ``accel`` in its current core state.  A miss
    checks the pass (as :func:`check_pass`, with ``lanes_list`` if given) and compiles it;
    the caller stores it (:func:`_remember`) once the pass ran."""
    cfg = accel.cfg
    key = _key(accel, jobs)
    prog = _PROGRAMS.get(key)
    if prog is not None:
        _PROGRAMS.move_to_end(key)
        return prog, key, True
    _check_jobs(cfg, accel.state, jobs, lanes_list)
    return _compile(cfg, jobs, accel.state, key[3]), key, False


def _remember(key: tuple, prog: PassProgram) -> None:
    _PROGRAMS[key] = prog
    while len(_PROGRAMS) > _PROGRAMS_MAX:
        _PROGRAMS.popitem(last=False)


def _fill(cfg, prog: PassProgram, lanes: np.ndarray) -> None:
    """The pass's input beats into ``prog.frame[:in_beats]`` (as pack_beats packs them)."""
    n = prog.in_beats
    if not np.issubdtype(lanes.dtype, np.integer):
        lanes = np.asarray(lanes, dtype=np.int64)   # as pack_beats converts them
    if prog.native is not None:
        dst = prog.frame[:n].view(np.dtype(prog.native)).reshape(n, cfg.in_lanes)
        dst[...] = lanes   # int64 -> narrower signed integers keeps the low bits (the wrap)
    else:
        prog.frame[:n] = np.frombuffer(pack_beats(lanes, cfg.data_w, cfg.in_axis_bits),
                                       dtype=prog.frame.dtype)


def _gathers(cfg, prog: PassProgram, in_index: np.ndarray, n_src: int):
    """(vector, per-queue indices) of a pass whose lanes are ``source[in_index]``: each
    queue's frame, as lanes of the native dtype, is ``vector[index]`` once the vector is
    [source (n_src), the queued jobs' header beats as lanes] (the header part is written
    here, once)."""
    hit = prog.gathers.get(id(in_index))
    if hit is not None and hit[0] is in_index and len(hit[1]) - hit[3] == n_src:
        return hit[1], hit[2]
    n_in = prog.in_beats
    hdr = prog.frame[n_in:].view(np.dtype(prog.native))
    vec = np.empty(n_src + hdr.size, dtype=prog.native)
    vec[n_src:] = hdr
    # the layout's positions as the native gather reads them (uint32 where the vector is
    # small enough: the header positions below fit too), range-checked once
    src = native.index(in_index if vec.size <= 0xFFFFFFFF else in_index.astype(np.int64),
                       vec.size)
    idx = []
    for _, _, rows, _ in prog.queues:
        # the runs straight from the layout's rows (no copy of the index: memory a big
        # pass's first run would touch fresh), where the native kernels read them
        r = native.runs_rows(src, rows, n_in, n_src)
        if r is None:   # the index itself (header positions below vec.size), or its runs
            g = native.frame_index(src, rows, n_in, n_src)
            r = native.runs(g) or g
        idx.append(r)
    prog.gathers.clear()   # one layout per pass shape: keep the last
    prog.gathers[id(in_index)] = (in_index, vec, tuple(idx), hdr.size)
    return vec, tuple(idx)


def _execute(accel, jobs: Sequence[Job], prog: PassProgram, lanes: np.ndarray | None,
             timeout, source: np.ndarray | None = None,
             in_index: np.ndarray | None = None, view: bool = False) -> np.ndarray:
    """Run a compiled pass: the output beats of all its jobs, (out_beats, out_lanes) int64.
    The input lanes are ``lanes``, or ``source[in_index]`` (see :func:`run_pass_source`).
    ``view``: a pass that is one queue of native output lanes returns them as a read-only
    view of the received frame (the lanes' integer dtype, no conversion)."""
    cfg, dev = accel.cfg, accel.device
    ol = cfg.out_lanes
    out_native = _NATIVE.get(cfg.acc_w) if cfg.acc_w * ol == cfg.out_axis_bits else None
    view = view and out_native is not None and len(prog.queues) == 1 and prog.tail == len(jobs)
    out = None if view else np.empty((prog.out_beats, ol), dtype=np.int64)
    frames = []
    if prog.queues:
        with prog.lock:   # the frame buffer is the program's: fill and gather it at once
            if lanes is not None:
                _fill(cfg, prog, lanes)
                frames = [prog.frame[rows].tobytes() for _, _, rows, _ in prog.queues]
            else:
                vec, idx = _gathers(cfg, prog, in_index, len(source))
                if isinstance(source, Source):   # straight into the lanes
                    source.fill(vec[:len(source)])
                else:   # int64 -> the lanes' dtype keeps the low bits
                    vec[:len(source)] = source
                # fresh arrays: the device reads them
                frames = [native.take(vec, g) for g in idx]
    oo = prog.out_offsets
    for (first, end, _, n_out), data in zip(prog.queues, frames):
        try:
            raw = accel._start(_QUEUE, data, n_out, timeout)
        except DeviceError as e:
            accel._forget()   # the recovery soft-reset the core
            try:
                k = first + spec.unpack_field("QUEUE", "JOB", dev.read(spec.REG["QUEUE"].offset))
            except DeviceError:
                k = None
            j = jobs[k] if k is not None and k < len(jobs) else None
            what = (f"pass job {k} of {len(jobs)} ({j.describe()})" if j
                    else f"pass jobs {first}..{end - 1}")
            err = CoreError(f"{what}: {e}", e.cause) if isinstance(e, CoreError) \
                else type(e)(f"{what}: {e}")
            err.job = k
            raise err from e
        accel.queued_jobs += end - first    # header beats sent (the counters count them)
        if view:
            out = np.frombuffer(raw, dtype=out_native).reshape(n_out, ol)
            continue
        dst = out[oo[first]:oo[end]]
        if out_native is not None:
            dst[...] = np.frombuffer(raw, dtype=out_native).reshape(n_out, ol)
        elif not native.unpack_into(raw, dst, cfg.acc_w, cfg.out_axis_bits):
            dst[...] = unpack_beats(raw, ol, cfg.acc_w, cfg.out_axis_bits)
    st = accel.state
    st.preloaded, st.saved, st.saved_rows = prog.tail_state
    io = prog.in_offsets
    if lanes is None and prog.tail < len(jobs) and isinstance(source, Source):
        source = source.array()
    for i in range(prog.tail, len(jobs)):
        job_lanes = lanes[io[i]:io[i + 1]] if lanes is not None else \
            source[in_index[io[i]:io[i + 1]]]
        out[oo[i]:oo[i + 1]] = accel.run_job(jobs[i], job_lanes, timeout)
    return out


def run_pass_lanes(accel, jobs: Sequence[Job], lanes: np.ndarray,
                   timeout: float | None = None) -> np.ndarray:
    """:func:`run_pass` with the pass's input beats as one array (in_beats, in_lanes), the
    jobs' beats back to back; returns all output beats (out_beats, out_lanes) int64."""
    prog, key, hit = program(accel, jobs)
    lanes = np.asarray(lanes)
    if lanes.shape != (prog.in_beats, accel.cfg.in_lanes):
        raise ValueError(f"the pass needs {prog.in_beats} input beats of {accel.cfg.in_lanes} "
                         f"lanes, got array of shape {lanes.shape}")
    out = _execute(accel, jobs, prog, lanes, timeout)
    if not hit:
        _remember(key, prog)
    return out


def run_pass_source(accel, jobs: Sequence[Job], source: np.ndarray, in_index: np.ndarray,
                    timeout: float | None = None) -> np.ndarray:
    """:func:`run_pass_lanes` of the lanes ``source[in_index]`` without building them:
    ``source`` a flat int64 vector, ``in_index`` (in_beats, in_lanes) positions in it (a
    stream layout's, :mod:`intergrad.stream`; or a :class:`intergrad.stream.Source`, which
    is filled straight into the frames' lanes).  On a build whose lanes are whole bytes of
    the input beat each queue's frame is one gather from the source (cast to the lanes'
    dtype) and the header beats; jobs run one by one get their lanes gathered alone.
    Returns all output beats (out_beats, out_lanes): int64, or, for a pass that is one
    queue of output lanes whole bytes of the beat, a read-only view of the received frame
    in the lanes' integer dtype (the same values)."""
    prog, key, hit = program(accel, jobs)
    if in_index.shape != (prog.in_beats, accel.cfg.in_lanes):
        raise ValueError(f"the pass needs {prog.in_beats} input beats of {accel.cfg.in_lanes} "
                         f"lanes, got an index of shape {in_index.shape}")
    if not isinstance(source, Source):
        source = np.asarray(source)
        if source.ndim != 1 or not np.issubdtype(source.dtype, np.integer):
            raise ValueError(f"the source must be a flat integer vector, got {source.dtype} "
                             f"of shape {source.shape}")
    if prog.native is None:   # lanes packed by pack_beats: build them
        if isinstance(source, Source):
            source = source.array()
        out = _execute(accel, jobs, prog, source[in_index], timeout, view=True)
    else:
        out = _execute(accel, jobs, prog, None, timeout, source, in_index, view=True)
    if not hit:
        _remember(key, prog)
    return out


def run_pass(accel, jobs: Sequence[Job], lanes_list: Sequence[np.ndarray],
             timeout: float | None = None) -> list[np.ndarray]:
    """Run ``jobs`` (inputs ``lanes_list``, as for ``run_job``) on ``accel``; returns each job's
    output beats as (n, out_lanes) int64, bit-exact with running them one by one."""
    cfg = accel.cfg
    jobs = list(jobs)
    if len(jobs) != len(lanes_list):
        raise ValueError(f"{len(jobs)} jobs but {len(lanes_list)} input arrays")
    prog, key, hit = program(accel, jobs, lanes_list)
    if hit:   # checked when compiled: the input shapes remain
        io = prog.in_offsets
        for i, l in enumerate(lanes_list):
            _check_lanes(cfg, i, io[i + 1] - io[i], l)
    lanes = (np.concatenate([np.asarray(l) for l in lanes_list]) if lanes_list
             else np.zeros((0, cfg.in_lanes), dtype=np.int64))
    out = _execute(accel, jobs, prog, lanes, timeout)
    if not hit:
        _remember(key, prog)
    oo = prog.out_offsets
    return [out[oo[i]:oo[i + 1]] for i in range(len(jobs))]
