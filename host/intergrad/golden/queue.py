"""Bit-exact reference of a job queue (CTRL.QUEUE, docs/registers.md "Job queues").

A queue runs its jobs one after the other on one :class:`~intergrad.golden.ArrayModel`
(weights, accumulators, preload and saved state carry over), exactly as the same jobs
programmed one by one; its output frame is their output beats back to back.  A header the
core rejects ends the queue: the frame is the earlier jobs' beats, then the abort beat.
The counters of a queue are the jobs' plus, per job, its header beat (one input beat and one
busy cycle, no array step).
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

import numpy as np

from ..spec import ArrayConfig
from ..core import Job, JobError, jobs_counters
from . import ArrayModel

__all__ = ["QueueResult", "run_queue", "queue_counters", "header_error", "random_queue"]


@dataclasses.dataclass
class QueueResult:
    """``outputs``: each completed job's output beats; ``error``: (job index, cause name) of
    the job the core rejects, or None.  ``frame`` is every output beat before the abort beat
    (the whole frame when there is no error)."""

    outputs: list
    error: tuple[int, str] | None
    out_lanes: int

    @property
    def frame(self) -> np.ndarray:
        if not self.outputs:
            return np.zeros((0, self.out_lanes), dtype=np.int64)
        return np.concatenate(self.outputs, axis=0)


def header_error(cfg: ArrayConfig, job: Job, last: bool) -> str | None:
    """The queue-only check of a header: a LAST job must have output beats."""
    if last and job.out_beats() == 0:
        return "BAD_HEADER"
    return None


def run_queue(model: ArrayModel, jobs: Sequence[Job], lanes_list: Sequence[np.ndarray],
              complete: bool = True) -> QueueResult:
    """Run a queue on ``model`` (its state changes as the core's does).  ``complete=False``:
    the jobs are the first ones of a longer queue (the last is not LAST)."""
    outs = []
    for i, (job, lanes) in enumerate(zip(jobs, lanes_list)):
        bad = header_error(model.cfg, job, complete and i == len(jobs) - 1)
        try:
            if bad:
                job.validate(model.cfg)   # the register checks come first (pending state after)
                raise JobError(bad, "LAST queue job without output beats")
            outs.append(model.run(job, lanes))
        except JobError as e:
            return QueueResult(outs, (i, e.name), model.cfg.out_lanes)
    return QueueResult(outs, None, model.cfg.out_lanes)


def queue_counters(cfg: ArrayConfig, jobs: Iterable[Job]) -> dict[str, int]:
    """Counter increments of an error-free queue (stalls excluded, as expected_counters)."""
    return jobs_counters(cfg, jobs, queued=True)


def random_queue(cfg: ArrayConfig, rng: np.random.Generator, n_jobs: int, max_b: int = 40,
                 modes: Sequence[str] = ("WS", "OS", "IG"), preloaded: bool = False,
                 saved_rows: int = 0) -> tuple[list[Job], list[np.ndarray]]:
    """A random valid pass of ``n_jobs`` jobs on random shapes: every mode in ``modes``, every
    flag (LOAD_W, SWAP after a PRELOAD, TRANSPOSE, ACC_CLEAR, DRAIN, SAVE then DRAIN_PREV),
    the last job with output beats; a job that uses weights without loading them (no LOAD_W;
    or SWAP) takes any shape within the weights this queue wrote into that bank (the loads
    of smaller tiles leave the weights outside them: the shape need not be the last load's),
    the first that accumulates clears the accumulators, so the outputs do not depend on the
    core's earlier contents.  ``preloaded`` / ``saved_rows``: the core's state before
    (``saved_rows`` = ROWS_ACT of the pending saved tile, 0 for none).  Returns the jobs and
    their input lanes (random full-range values)."""
    helper = ArrayModel(cfg)
    lo, hi = -(1 << (cfg.data_w - 1)), 1 << (cfg.data_w - 1)
    pre, sav = preloaded, saved_rows
    # the weights this queue wrote into the active bank (known[0]) and the other (known[1])
    # and the shape each was last loaded with: a job that uses a bank without loading it
    # takes that shape or any other within the written weights (an origin-anchored union of
    # tiles: a load writes its tile only)
    known = [np.zeros((cfg.rows, cfg.cols), dtype=bool) for _ in range(2)]
    last = [None, None]

    def covered(b):
        """A shape within bank b's written weights: half the time its last load's."""
        if rng.random() < 0.5:
            return last[b]
        ra = int(rng.integers(1, int(known[b][:, 0].sum()) + 1))
        return ra, int(rng.integers(1, int(known[b][ra - 1].sum()) + 1))

    def write(b, ra, ca):
        known[b][:ra, :ca] = True
        last[b] = (ra, ca)

    accumulated = False   # the first accumulating job clears (the core's are unknown)
    jobs, lanes = [], []
    for i in range(n_jobs):
        mode = str(rng.choice(list(modes)))
        ra, ca = int(rng.integers(1, cfg.rows + 1)), int(rng.integers(1, cfg.cols + 1))
        f = set()
        if mode in ("WS", "IG"):
            w = rng.integers(0, 3)
            if w == 0 and pre and last[1]:
                f.add("SWAP")
                known.reverse()
                last.reverse()
                ra, ca = covered(0)
            elif w == 1 and last[0]:
                ra, ca = covered(0)
            else:
                f.add("LOAD_W")
                known.reverse()
                last.reverse()
                write(0, ra, ca)
            if rng.random() < 0.4:
                f.add("PRELOAD")
                write(1, ra, ca)
        if rng.random() < 0.5:
            f.add("TRANSPOSE")
        if mode in ("OS", "IG"):
            if rng.random() < 0.5 or not accumulated:
                f.add("ACC_CLEAR")
            accumulated = True
            f |= {str(rng.choice(["DRAIN", "SAVE", "NONE"]))} - {"NONE"}
        if sav and rng.random() < 0.5:
            f.add("DRAIN_PREV")
        if i == n_jobs - 1 and mode == "OS" and not f & {"DRAIN", "DRAIN_PREV"}:
            f = (f - {"SAVE"}) | {"DRAIN"}
        job = Job(mode, int(rng.integers(1, max_b + 1)), ra, ca, frozenset(f),
                  prev_rows=sav if "DRAIN_PREV" in f else 0)
        d = {"top": rng.integers(lo, hi, (job.batch, ca))}
        if mode != "WS":
            d["left"] = rng.integers(lo, hi, (job.batch, ra))
        if job.has("LOAD_W"):
            d["weights"] = rng.integers(lo, hi, (ra, ca))
        if job.has("PRELOAD"):
            d["preload"] = rng.integers(lo, hi, (ra, ca))
        jobs.append(job)
        lanes.append(helper.job_input(job, **d))
        if job.has("SWAP") or job.has("LOAD_W"):
            pre = False
        if job.has("PRELOAD"):
            pre = True
        if job.has("DRAIN_PREV"):
            sav = 0
        if job.has("SAVE"):
            sav = ra
    return jobs, lanes
