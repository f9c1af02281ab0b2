"""FINN-style ``throughput_test()``: measured figures of one intergrad core on any Device.

FINN's generated driver splits ``execute()`` (results) from ``throughput_test()`` (a dict of
measured figures); here :meth:`intergrad.driver.Accelerator.run_job` is the execute side and
:func:`throughput_test` runs a fixed workload through it and measures:

* the workload: ``repeats`` WS jobs on the full array (weights loaded, then ``batch`` data
  beats), random operands; an *image* is one row of the batch (one input vector through the
  array's layer tile), so ``images = repeats * batch``;
* host side (wall clock, what a user of this backend sees): ``runtime[ms]``,
  ``throughput[images/s]``, ``DRAM_in_bandwidth[MB/s]`` / ``DRAM_out_bandwidth[MB/s]`` (the
  bytes of the input and output streams, whole beats, over the runtime);
* core side (its counters, reset before the run): ``counters`` (every counter of
  :data:`intergrad.spec.COUNTERS`, the run's increments), ``fclk[mhz]`` (the clock the
  counted cycles are converted with: the board's FCLK0, 100 MHz, from the board table, or
  what the caller gives), ``core_runtime[ms]`` = cycles / fclk and
  ``core_throughput[images/s]``: what the core does at that clock with this run's stalls;
* on the simulated hardware: ``sim_cycles_per_s``, simulated cycles per wall second.

Every job's output is checked against its exact product (a WS job's output beat t is
``wrap(W @ X[t])``, the job contract's arithmetic, :mod:`intergrad.core`) unless ``check=False``, so the figures are those of correct runs.

``python -m intergrad.throughput [--array 8x8] [--batch 256] [--repeats 4]`` prints them for
the simulated hardware (or the board, with ``--backend pynq``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from .driver import Accelerator
from .core import MAX_BATCH, Job, job_lanes, wrap

__all__ = ["throughput_test", "format_report"]


def _board_fclk_mhz() -> float:
    from .model.board import BOARDS
    return float(BOARDS["pynq-z2"].values["clock_mhz"])


def throughput_test(accel: Accelerator, *, batch: int = 256, repeats: int = 4,
                    fclk_mhz: float | None = None, seed: int = 0, check: bool = True) -> dict:
    """Run the workload above on ``accel`` and return the measured figures (see module)."""
    cfg = accel.cfg
    if not 1 <= batch <= MAX_BATCH:
        raise ValueError(f"batch {batch} not in 1..{MAX_BATCH}")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    fclk = _board_fclk_mhz() if fclk_mhz is None else float(fclk_mhz)
    if fclk <= 0:
        raise ValueError(f"fclk_mhz must be positive, got {fclk_mhz}")
    job = Job("WS", batch, cfg.rows, cfg.cols, frozenset({"LOAD_W"}))
    rng = np.random.default_rng(seed)
    lim = 1 << (cfg.data_w - 1)
    streams, expected = [], []
    for _ in range(repeats):
        W = rng.integers(-lim, lim, (cfg.rows, cfg.cols))
        X = rng.integers(-lim, lim, (batch, cfg.cols))
        streams.append(job_lanes(cfg, job, weights=W, top=X))
        if check:
            want = np.zeros((batch, cfg.out_lanes), dtype=np.int64)
            want[:, :cfg.rows] = wrap(X @ W.T, cfg.acc_w)
            expected.append(want)

    accel.reset_counters()
    before = accel.counters()
    outs = []
    t0 = time.perf_counter()
    for s in streams:
        outs.append(accel.run_job(job, s))
    wall = time.perf_counter() - t0
    after = accel.counters()
    counters = {k: after[k] - before[k] for k in after}
    if check:
        for i, (got, want) in enumerate(zip(outs, expected)):
            if not np.array_equal(got, want):
                bad = int(np.argwhere(got != want)[0][0])
                raise AssertionError(f"throughput_test: job {i} output beat {bad} differs from "
                                     f"the reference: {got[bad].tolist()} vs {want[bad].tolist()}")

    images = repeats * batch
    bytes_in = repeats * job.in_beats() * (cfg.in_axis_bits // 8)
    bytes_out = repeats * job.out_beats() * (cfg.out_axis_bits // 8)
    cycles = counters["cycles"]
    core_s = cycles / (fclk * 1e6)
    backend = accel.describe()["backend"]
    res = {
        "backend": backend,
        "array": f"{cfg.rows}x{cfg.cols}",
        "batch_size": batch,
        "repeats": repeats,
        "images": images,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "runtime[ms]": wall * 1e3,
        "throughput[images/s]": images / wall,
        "DRAM_in_bandwidth[MB/s]": bytes_in / wall / 1e6,
        "DRAM_out_bandwidth[MB/s]": bytes_out / wall / 1e6,
        "fclk[mhz]": fclk,
        "core_runtime[ms]": core_s * 1e3,
        "core_throughput[images/s]": images / core_s if core_s else float("nan"),
        "counters": counters,
        "checked": check,
    }
    if backend == "sim":
        res["sim_cycles_per_s"] = cycles / wall
    return res


def format_report(res: dict) -> str:
    lines = [f"throughput_test on {res['backend']} ({res['array']}): {res['repeats']} WS jobs "
             f"x batch {res['batch_size']} = {res['images']} images"
             + (", outputs checked against the reference" if res["checked"] else "")]
    for k in ("runtime[ms]", "throughput[images/s]", "DRAM_in_bandwidth[MB/s]",
              "DRAM_out_bandwidth[MB/s]", "fclk[mhz]", "core_runtime[ms]",
              "core_throughput[images/s]", "sim_cycles_per_s"):
        if k in res:
            lines.append(f"  {k:<28} {res[k]:>14,.3f}")
    lines.append("  counters: " + ", ".join(f"{k}={v}" for k, v in res["counters"].items()))
    return "\n".join(lines)


def main(argv=None) -> int:
    from .device import BACKENDS, open_device
    from .spec import ArrayConfig
    ap = argparse.ArgumentParser(description="FINN-style throughput test of the intergrad core")
    ap.add_argument("--backend", choices=BACKENDS, default="auto",
                    help="auto (default): the board when present, else the simulated hardware")
    ap.add_argument("--array", default="8x8", help="ROWSxCOLS of the simulated build (default 8x8)")
    ap.add_argument("--batch", type=int, default=256, help="images per job (default 256)")
    ap.add_argument("--repeats", type=int, default=4, help="jobs (default 4)")
    ap.add_argument("--json", help="write the figures to this JSON file")
    a = ap.parse_args(argv)
    try:
        cfg = ArrayConfig.parse(a.array)
        if not 1 <= a.batch <= MAX_BATCH or a.repeats < 1:
            raise ValueError(f"--batch must be in 1..{MAX_BATCH} and --repeats at least 1")
        with open_device(a.backend, cfg) as dev:
            res = throughput_test(Accelerator(dev), batch=a.batch, repeats=a.repeats)
    except ValueError as e:
        print(f"intergrad.throughput: {e}", file=sys.stderr)
        return 2
    print(format_report(res))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
