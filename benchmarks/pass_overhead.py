"""Host Python outside the simulator, per pass and per training step: the scheduler's
per-job loop (``Scheduler.per_job = True``) against whole-pass streams built and decoded by
numpy gathers (:mod:`intergrad.stream`), side by side in one run on one simulated device.

    python benchmarks/pass_overhead.py [--nets digits,lenet] [--bits 16,8] [--steps 10] [--write]

Both paths run the same batches in alternation (old, new, old, new, ...), so the machine's
load affects them alike; the load average is printed.  "Python" is wall time minus the time
spent inside the simulator (SimDevice.sim_seconds).  The gradients of both paths are checked
bit-identical on every step.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from intergrad import layers as L
from intergrad.device.sim import SimDevice
from intergrad.driver import Accelerator
from intergrad.engine import DeviceEngine
from intergrad.nn import gradients, load_digits_split
from intergrad.scheduler import Scheduler
from intergrad.spec import ArrayConfig

from _results import add_write_option, results_file  # noqa: E402 (benchmarks/)

ACC_W = {16: 32, 8: 20}
PATHS = ("per-job", "whole-pass")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default="digits,lenet", help="nets on 8x8 inputs")
    ap.add_argument("--bits", default="16,8")
    ap.add_argument("--steps", type=int, default=10, help="training steps per path (median)")
    ap.add_argument("--array", default="8x8")
    ap.add_argument("--seed", type=int, default=0)
    add_write_option(ap, "pass_overhead")
    a = ap.parse_args(argv)
    with results_file("pass_overhead", a.write, argv):
        return _run(a)


class _Timed:
    """Wraps Scheduler._run: per (layer, pass) wall and simulator seconds of every call."""

    def __init__(self, sched: Scheduler, dev: SimDevice):
        self.calls: dict[tuple[str, str], list[tuple[float, float]]] = {}
        run = sched._run

        def timed(layer, pass_, *args, **kw):
            s0, t0 = dev.sim_seconds, time.perf_counter()
            out = run(layer, pass_, *args, **kw)
            self.calls.setdefault((layer, pass_), []).append(
                (time.perf_counter() - t0, dev.sim_seconds - s0))
            return out

        sched._run = timed


def _step(net, be, x, y):
    st = gradients(net, be, x, y)
    return st.logits, st.grads


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))
    if a is None or b is None:
        return a is b
    return np.array_equal(np.asarray(a), np.asarray(b))


def _load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg()) + " (1, 5, 15 min)"


def _run(a) -> int:
    print(f"load average at start: {_load()} on {os.cpu_count()} cores, shared with other jobs")
    data = load_digits_split(a.seed)  # 8x8 digits (lenet5 needs them resized: train_speed.py)
    base = ArrayConfig.parse(a.array)
    for name in a.nets.split(","):
        net = L.build(name, data[0].shape[1:], seed=a.seed)
        print(f"\n== {name}: {net.describe()}, batch 32, {base.rows}x{base.cols} array")
        for bits in [int(b) for b in a.bits.split(",")]:
            cfg = ArrayConfig(base.rows, base.cols, bits, ACC_W[bits], base.dual_mac)
            dev = SimDevice(cfg, verbose=False)
            acc = Accelerator(dev)
            scheds, timers, bes = {}, {}, {}
            for p in PATHS:
                s = Scheduler(acc, record=True)
                s.per_job = p == "per-job"
                scheds[p], timers[p] = s, _Timed(s, dev)
                bes[p] = DeviceEngine(s, "intergrad")
            rng = np.random.default_rng(a.seed)
            wall = {p: [] for p in PATHS}
            sim = {p: [] for p in PATHS}
            for p in PATHS:  # warm-up (layout caches, first allocations): not measured
                _step(net, bes[p], data[0][:32], data[1][:32])
            for _ in range(a.steps):
                idx = rng.choice(len(data[1]), 32, replace=False)
                got = {}
                for p in PATHS:
                    s0, t0 = dev.sim_seconds, time.perf_counter()
                    got[p] = _step(net, bes[p], data[0][idx], data[1][idx])
                    wall[p].append(time.perf_counter() - t0)
                    sim[p].append(dev.sim_seconds - s0)
                if not _same(got["per-job"], got["whole-pass"]):
                    print("   MISMATCH: the two paths' logits or gradients differ")
                    return 1
            print(f"   int{bits} (ACC_W {cfg.acc_w}), {a.steps} steps per path, gradients "
                  f"bit-identical on every step; medians:")
            print(f"   {'training step':>24} {'wall ms':>9} {'sim ms':>8} {'Python ms':>10} "
                  f"{'Python %':>9}")
            py = {}
            for p in PATHS:
                w, s = np.median(wall[p]), np.median(sim[p])
                py[p] = np.median(np.subtract(wall[p], sim[p]))
                print(f"   {p:>24} {1e3 * w:9.1f} {1e3 * s:8.1f} {1e3 * py[p]:10.1f} "
                      f"{100 * py[p] / w:8.0f}%")
            print(f"   Python outside the simulator per step: {py['per-job'] / py['whole-pass']:.2f}x "
                  f"less with whole passes")
            jobs = {(r.layer, r.pass_): r.jobs for r in scheds["whole-pass"].report}
            print(f"   {'pass (jobs)':>24} {'per-job Python us':>18} {'whole-pass Python us':>21} "
                  f"{'ratio':>6} {'sim us':>8}")
            for key in timers["per-job"].calls:
                med = {}
                for p in PATHS:
                    c = np.array(timers[p].calls[key][1:])  # the warm-up call excluded
                    med[p] = (np.median(c[:, 0] - c[:, 1]), np.median(c[:, 1]))
                label = f"{key[0]} {key[1]} ({jobs[key]})"
                print(f"   {label:>24} {1e6 * med['per-job'][0]:18.0f} "
                      f"{1e6 * med['whole-pass'][0]:21.0f} "
                      f"{med['per-job'][0] / med['whole-pass'][0]:5.1f}x "
                      f"{1e6 * med['whole-pass'][1]:8.0f}")
            dev.close()
    print(f"\nload average at end: {_load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
