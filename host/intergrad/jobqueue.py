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
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from . import spec
from .descriptor import pack_queue, queue_out_beats, split_pass
from .device.base import CoreError, DeviceError
from .core import CoreState, Job, JobError, unpack_beats

__all__ = ["run_pass", "check_pass"]

_QUEUE = spec.pack_fields("CTRL", QUEUE=1)


def check_pass(accel, jobs: Sequence[Job], lanes_list: Sequence[np.ndarray]) -> CoreState:
    """Validate every job as the core will see it, following the core's preload / saved
    state (:class:`~intergrad.core.CoreState`); returns the state after the pass.  Raises
    JobError naming the job's index."""
    cfg = accel.cfg
    if len(jobs) != len(lanes_list):
        raise ValueError(f"{len(jobs)} jobs but {len(lanes_list)} input arrays")
    state = dataclasses.replace(accel.state)
    for i, (job, lanes) in enumerate(zip(jobs, lanes_list)):
        try:
            state.check(cfg, job)
        except JobError as e:
            raise JobError(e.name, f"pass job {i} ({job.mode} B={job.batch} "
                                   f"{job.rows_act}x{job.cols_act}): {e}") from None
        shape = np.shape(lanes)
        if shape != (job.in_beats(), cfg.in_lanes):
            raise ValueError(f"pass job {i} needs {job.in_beats()} input beats of "
                             f"{cfg.in_lanes} lanes, got array of shape {shape}")
        state.apply(job)
    return state


def run_pass(accel, jobs: Sequence[Job], lanes_list: Sequence[np.ndarray],
             timeout: float | None = None) -> list[np.ndarray]:
    """Run ``jobs`` (inputs ``lanes_list``, as for ``run_job``) on ``accel``; returns each job's
    output beats as (n, out_lanes) int64, bit-exact with running them one by one."""
    cfg, dev = accel.cfg, accel.device
    jobs = list(jobs)
    check_pass(accel, jobs, lanes_list)
    if not cfg.supports_queue:
        return [accel.run_job(j, l, timeout) for j, l in zip(jobs, lanes_list)]
    queues, tail = split_pass(cfg, jobs, getattr(dev, "max_transfer", None))
    outs: list[np.ndarray] = []
    for first, end in queues:
        qjobs = jobs[first:end]
        data = pack_queue(cfg, qjobs, lanes_list[first:end])
        try:
            raw = accel._start(_QUEUE, data, queue_out_beats(qjobs), timeout)
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
        beats = unpack_beats(raw, cfg.out_lanes, cfg.acc_w, cfg.out_axis_bits)
        pos = 0
        for j in qjobs:
            outs.append(beats[pos:pos + j.out_beats()])
            pos += j.out_beats()
    for j in jobs[:tail]:
        accel.state.apply(j)
    for j, l in zip(jobs[tail:], lanes_list[tail:]):
        outs.append(accel.run_job(j, l, timeout))
    return outs

