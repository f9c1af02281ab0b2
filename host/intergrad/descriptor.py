"""In-band job descriptors: a queue of jobs packed into one input transfer.

A queue (``CTRL.QUEUE``, docs/registers.md "Job queues") is one input frame: for every job a
header beat (mode, flags, batch, active shape, LAST; :data:`intergrad.spec.HEADER_FIELDS`)
followed by the job's input beats, TLAST on the last beat of the LAST job only; and one
output frame: the jobs' output beats back to back, TLAST on the LAST job's last beat.

:func:`split_pass` cuts a pass (a list of jobs) into queues that a DMA can move in one
transfer each (PG021's MM2S ends every transfer with TLAST, its S2MM ends one at TLAST) and
whose last job has output beats, as the core requires.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from . import spec
from .spec import ArrayConfig
from .core import Job, pack_beats

__all__ = ["header_word", "header_beat", "unpack_header", "pack_queue", "queue_out_beats",
           "queue_in_beats", "split_pass"]


def header_word(job: Job, last: bool) -> int:
    """The header beat of ``job`` as an integer (bits above HEADER_BITS are 0)."""
    vals = {"TAG": spec.HEADER_TAG, "MODE": spec.MODES[job.mode], "LAST": int(bool(last)),
            "FLAGS": spec.flags_word(*job.flags), "ROWS_ACT": job.rows_act,
            "COLS_ACT": job.cols_act, "BATCH": job.batch}
    w = 0
    for name, v in vals.items():
        lsb, width = spec.header_field(name)
        if not 0 <= v < (1 << width):
            raise ValueError(f"header field {name}={v} does not fit in {width} bits")
        w |= v << lsb
    return w


def header_beat(cfg: ArrayConfig, job: Job, last: bool) -> bytes:
    """The header beat's bytes on ``cfg``'s input stream."""
    if not cfg.supports_queue:
        raise ValueError(f"a {cfg.in_axis_bits}-bit input beat cannot carry a "
                         f"{spec.HEADER_BITS}-bit queue header")
    return header_word(job, last).to_bytes(cfg.in_axis_bits // 8, "little")


def unpack_header(beat: bytes) -> dict[str, int]:
    """Header fields of one input beat's bytes (no check of their values)."""
    v = int.from_bytes(beat, "little")
    return {name: (v >> lsb) & ((1 << w) - 1) for name, lsb, w, _ in spec.HEADER_FIELDS}


def queue_in_beats(jobs: Sequence[Job]) -> int:
    return sum(1 + j.in_beats() for j in jobs)


def queue_out_beats(jobs: Sequence[Job]) -> int:
    return sum(j.out_beats() for j in jobs)


def pack_queue(cfg: ArrayConfig, jobs: Sequence[Job], lanes_list: Sequence[np.ndarray]) -> bytes:
    """One queue's input frame: header beat + input beats of every job; the last job is LAST."""
    if len(jobs) != len(lanes_list) or not jobs:
        raise ValueError(f"{len(jobs)} jobs and {len(lanes_list)} input arrays: need as many, "
                         f"at least one")
    parts = []
    for i, (job, lanes) in enumerate(zip(jobs, lanes_list)):
        lanes = np.asarray(lanes)
        if lanes.shape != (job.in_beats(), cfg.in_lanes):
            raise ValueError(f"queue job {i} needs {job.in_beats()} input beats of "
                             f"{cfg.in_lanes} lanes, got array of shape {lanes.shape}")
        parts.append(header_beat(cfg, job, i == len(jobs) - 1))
        parts.append(pack_beats(lanes, cfg.data_w, cfg.in_axis_bits))
    return b"".join(parts)


def split_pass(cfg: ArrayConfig, jobs: Sequence[Job], max_bytes: int | None = None
               ) -> tuple[list[tuple[int, int]], int]:
    """Cut a pass into queues: ([(first, end), ...], tail).

    Each queue ``jobs[first:end]`` ends with a job that has output beats, and its input and
    output frames are at most ``max_bytes`` (a DMA transfer's limit; None: no limit).  The
    ``tail`` jobs ``jobs[tail:]`` after the last job with output cannot end a queue: the
    caller runs them as programmed jobs.  A single job too large for one transfer raises.
    """
    ib, ob = cfg.in_axis_bits // 8, cfg.out_axis_bits // 8
    lim = float("inf") if max_bytes is None else max_bytes
    queues: list[tuple[int, int]] = []
    first, nin, nout, cut = 0, 0, 0, None   # cut: end of the longest prefix that may end
    i = 0
    while i < len(jobs):
        j = jobs[i]
        jin, jout = (1 + j.in_beats()) * ib, j.out_beats() * ob
        if jin > lim or jout > lim:
            raise ValueError(f"job {i} ({jin} input / {jout} output bytes) exceeds the "
                             f"{max_bytes}-byte transfer limit on its own")
        if nin + jin > lim or nout + jout > lim:
            if cut is None:
                raise ValueError(f"jobs {first}..{i} have no output beats within the "
                                 f"{max_bytes}-byte transfer limit: no queue can end there")
            queues.append((first, cut))
            first, nin, nout, cut = cut, 0, 0, None
            i = first
            continue
        nin, nout = nin + jin, nout + jout
        i += 1
        if j.out_beats():
            cut = i
    if cut is not None:
        queues.append((first, cut))
        first = cut
    return queues, first
