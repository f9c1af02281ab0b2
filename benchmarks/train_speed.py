"""Training on the simulated hardware: accuracy vs the float reference after the same epochs,
wall time per epoch, and the share of wall time spent in Python outside the simulator.

    python benchmarks/train_speed.py [--epochs 8] [--array 8x8] [--schedule intergrad]

All figures are measured in this run on this machine.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from intergrad.device.sim import SimDevice
from intergrad.driver import Accelerator
from intergrad.nn import (DeviceBackend, DigitsCNN, FloatBackend, load_digits_split, softmax_ce,
                          train)
from intergrad.scheduler import Scheduler
from intergrad.spec import ArrayConfig

from _results import add_write_option, results_file  # noqa: E402 (benchmarks/)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--array", default="8x8")
    ap.add_argument("--schedule", default="intergrad", choices=["intergrad", "baseline"])
    ap.add_argument("--seed", type=int, default=0)
    add_write_option(ap, "train_speed")
    a = ap.parse_args(argv)
    with results_file("train_speed", a.write, argv):
        return _run(a)


def _run(a) -> int:
    cfg = ArrayConfig.parse(a.array)
    data = load_digits_split(a.seed)
    dev = SimDevice(cfg)
    sched = Scheduler(Accelerator(dev))
    be = DeviceBackend(sched, a.schedule)
    net0 = DigitsCNN(8, seed=a.seed)

    hist = train(net0.copy(), be, data, epochs=a.epochs, batch=32, lr=0.1, seed=a.seed,
                 progress=False, device_seconds=lambda: dev.sim_seconds)
    t0 = time.perf_counter()
    ref = train(net0.copy(), FloatBackend(), data, epochs=a.epochs, batch=32, lr=0.1,
                seed=a.seed, progress=False)
    ref_s = time.perf_counter() - t0

    # per training step: wall time vs time inside the simulator
    net = net0.copy()
    rng = np.random.default_rng(1)
    step_wall, step_sim, step_cycles = [], [], []
    for _ in range(20):
        idx = rng.choice(len(data[1]), 32, replace=False)
        s0, c0, t0 = dev.sim_seconds, dev.cycle, time.perf_counter()
        logits, cache = net.forward(be, data[0][idx])
        _, dl = softmax_ce(logits, data[1][idx])
        net.backward(be, cache, dl)
        step_wall.append(time.perf_counter() - t0)
        step_sim.append(dev.sim_seconds - s0)
        step_cycles.append(dev.cycle - c0)
    w, s = np.median(step_wall), np.median(step_sim)

    print(f"digits CNN, {a.epochs} epochs, batch 32, {cfg.rows}x{cfg.cols} simulated array, "
          f"schedule {a.schedule}")
    print(f"{'epoch':>5} {'loss':>8} {'test acc (array)':>17} {'test acc (float)':>17} {'wall s':>7}")
    for h, r in zip(hist, ref):
        print(f"{h.epoch:>5} {h.loss:>8.4f} {100 * h.test_acc:>16.1f}% {100 * r.test_acc:>16.1f}% "
              f"{h.seconds:>7.2f}")
    d = 100 * (hist[-1].test_acc - ref[-1].test_acc)
    print(f"final test accuracy: array {100 * hist[-1].test_acc:.1f}%, float "
          f"{100 * ref[-1].test_acc:.1f}% ({d:+.1f} pp); float training took {ref_s:.1f} s")
    print(f"epoch wall time (median): {np.median([h.seconds for h in hist]):.2f} s")
    print(f"training step (median of 20): {1e3 * w:.1f} ms wall, {1e3 * s:.1f} ms in the simulator "
          f"({int(np.median(step_cycles))} cycles), {100 * (1 - s / w):.0f}% of the step in Python "
          f"outside the simulated hardware")
    dev.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
