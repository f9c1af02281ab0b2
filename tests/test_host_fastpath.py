"""The host's compiled fast paths give the same bits as the plain ones.

* job queues (:mod:`intergrad.jobqueue`): a compiled pass program's frames are byte for
  byte :func:`intergrad.descriptor.pack_queue`'s; the first run (check + compile) and a
  cached run give the outputs, counters and core state of the job-by-job path; a pass the
  host check rejects is never cached and is rejected again with the same message;
"""
from __future__ import annotations

import numpy as np
import pytest

from intergrad import jobqueue
from intergrad.core import CoreState, Job, JobError
from intergrad.descriptor import pack_queue
from intergrad.driver import Accelerator
from intergrad.spec import ArrayConfig

BUILDS = [ArrayConfig(8, 8, 16, 32, 1), ArrayConfig(4, 6, 16, 32, 0), ArrayConfig(8, 8, 8, 20, 1),
          ArrayConfig(3, 5, 12, 28, 1)]


@pytest.mark.parametrize("cfg", BUILDS, ids=str)
@pytest.mark.parametrize("limit", [None, 6], ids=["whole", "split"])
def test_program_frames_are_pack_queue(cfg, limit):
    from intergrad.golden.queue import random_queue
    rng = np.random.default_rng(4)
    if not cfg.supports_queue:
        pytest.skip("no job queues on this build")
    ib = cfg.in_axis_bits // 8
    for pre, saved in ((False, 0), (True, 0), (False, 2)):
        jobs, lanes = random_queue(cfg, rng, 12, 20, preloaded=pre, saved_rows=saved)
        state = CoreState(pre, saved > 0, saved)
        max_bytes = None if limit is None else (limit + 1) * max(
            (1 + j.in_beats()) * ib for j in jobs)
        prog = jobqueue._compile(cfg, jobs, state, max_bytes)
        jobqueue._fill(cfg, prog, np.concatenate(lanes))
        assert prog.queues
        for first, end, rows, n_out in prog.queues:
            assert prog.frame[rows].tobytes() == pack_queue(cfg, jobs[first:end],
                                                            lanes[first:end])
            assert n_out == sum(j.out_beats() for j in jobs[first:end])


def _counters(acc):
    c = acc.counters()
    return {k: c[k] for k in ("macs", "in_beats", "out_beats", "wload_beats", "jobs")}


def test_cached_pass_equals_first_run_and_job_by_job(dev):
    """The same passes three ways on one core: job by job, first run_pass (a cache miss:
    checked and compiled), run_pass again (a hit); the list and the one-array entry points."""
    from intergrad.golden.queue import random_queue
    acc = Accelerator(dev)
    rng = np.random.default_rng(8)
    for _ in range(3):
        acc.recover()
        jobs, lanes = random_queue(acc.cfg, rng, 9, 25)
        acc.reset_counters()
        ref = [acc.run_job(j, ln) for j, ln in zip(jobs, lanes)]
        ref_c, ref_state = _counters(acc), (acc.state.preloaded, acc.state.saved)
        for run in range(3):
            acc.recover()
            acc.reset_counters()
            q0 = acc.queued_jobs
            hit = jobqueue.program(acc, jobs)[2]
            assert hit == (run > 0)
            if run < 2:
                got = acc.run_pass(jobs, lanes)
            else:
                flat = acc.run_pass_lanes(jobs, np.concatenate(lanes))
                got = np.split(flat, np.cumsum([j.out_beats() for j in jobs])[:-1])
            assert all(np.array_equal(g, r) for g, r in zip(got, ref))
            c = _counters(acc)
            queued = acc.queued_jobs - q0
            assert c["in_beats"] == ref_c["in_beats"] + queued
            assert {k: v for k, v in c.items() if k != "in_beats"} == \
                {k: v for k, v in ref_c.items() if k != "in_beats"}
            assert (acc.state.preloaded, acc.state.saved) == ref_state


def test_rejected_pass_is_not_cached(dev):
    acc = Accelerator(dev)
    acc.recover()
    R, C = acc.cfg.rows, acc.cfg.cols
    jobs = [Job("WS", 2, R, C, {"LOAD_W"}), Job("WS", 3, R, C, {"SWAP"})]
    lanes = [np.zeros((j.in_beats(), acc.cfg.in_lanes), np.int64) for j in jobs]
    msgs = []
    for _ in range(2):
        with pytest.raises(JobError, match="pass job 1 .*NO_PRELOAD") as ei:
            acc.run_pass(jobs, lanes)
        msgs.append(str(ei.value))
        key = (acc.cfg, tuple(jobs), (False, False, 0), getattr(dev, "max_transfer", None))
        assert key not in jobqueue._PROGRAMS
    assert msgs[0] == msgs[1]
    # a wrong input shape on a cached pass: the same message as on the first (checked) run
    good = [Job("WS", 2, R, C, {"LOAD_W"}), Job("WS", 3, R, C)]
    glanes = [np.zeros((j.in_beats(), acc.cfg.in_lanes), np.int64) for j in good]
    acc.run_pass(good, glanes)
    acc.recover()
    bad = glanes[:1] + [glanes[1][:-1]]
    assert jobqueue.program(acc, good)[2]
    errs = []
    for check in (jobqueue.check_pass, acc.run_pass):   # what a miss runs; a hit
        with pytest.raises(ValueError, match="pass job 1 needs") as ei:
            check(acc, good, bad) if check is jobqueue.check_pass else check(good, bad)
        errs.append(str(ei.value))
    assert errs[0] == errs[1]


def test_counters_in_one_call_equal_register_reads():
    """SimDevice.counters (one C call) reads what Device.counters' register-by-register
    reads do and takes the same cycles: two devices run the same job, one read each way."""
    from intergrad.device.base import Device
    from intergrad.device.sim import SimDevice
    cfg = ArrayConfig(4, 6, 16, 32, 0)
    devs = [SimDevice(cfg, verbose=False) for _ in range(2)]
    try:
        assert getattr(devs[0]._lib, "ig_read_counters", None) is not None
        rng = np.random.default_rng(3)
        from intergrad.golden.queue import random_queue
        jobs, lanes = random_queue(cfg, rng, 5, 12)
        got = []
        for d, read in zip(devs, (SimDevice.counters, Device.counters)):
            acc = Accelerator(d)
            reads = []
            for j, ln in zip(jobs, lanes):
                acc.run_job(j, ln)
                reads.append(read(d))
            got.append((reads, d.cycle))
        assert got[0] == got[1]
        assert got[0][0][-1]["jobs"] == len(jobs) and got[0][0][-1]["macs"] > 0
    finally:
        for d in devs:
            d.close()
