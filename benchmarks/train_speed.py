"""Training on the simulated hardware: per network, test accuracy of int16 and int8 runs
against their float twin (same epochs, seed and batches), epoch wall time, the share of a
training step spent in Python outside the simulator, and InterGrad vs baseline measured on
the hardware for every layer's backward pass.

    python benchmarks/train_speed.py [--nets digits,lenet,lenet5] [--bits 16,8] [--write]

All figures are measured in this run on this machine (shared: the load average is printed).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from intergrad import layers as L
from intergrad.data import fit_images
from intergrad.device import open_accelerator
from intergrad.engine import DeviceEngine, FloatEngine
from intergrad.nn import SGD, gradients, load_digits_split, measure_schedules, train
from intergrad.scheduler import Scheduler
from intergrad.spec import ArrayConfig

from _results import add_write_option, results_file  # noqa: E402 (benchmarks/)

#: net -> (epochs, lr, momentum, decay): the settings the README quotes
SETTINGS = {"digits": (8, 0.1, 0.0, "none"), "lenet": (10, 0.1, 0.9, "cosine"),
            "lenet5": (2, 0.05, 0.9, "cosine")}
ACC_W = {16: 32, 8: 20}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default="digits,lenet,lenet5")
    ap.add_argument("--bits", default="16,8")
    ap.add_argument("--epochs", type=int, default=None, help="override every net's epochs")
    ap.add_argument("--array", default="8x8")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--measure-steps", type=int, default=3)
    add_write_option(ap, "train_speed")
    a = ap.parse_args(argv)
    with results_file("train_speed", a.write, argv):
        return _run(a)


def _step_profile(net, be, dev, data, batch, n=10, seed=1):
    rng = np.random.default_rng(seed)
    wall, sim = [], []
    for _ in range(n):
        idx = rng.choice(len(data[1]), batch, replace=False)
        s0, t0 = dev.sim_seconds, time.perf_counter()
        gradients(net, be, data[0][idx], data[1][idx])
        wall.append(time.perf_counter() - t0)
        sim.append(dev.sim_seconds - s0)
    return float(np.median(wall)), float(np.median(sim))


def _run(a) -> int:
    base = ArrayConfig.parse(a.array)
    digits = load_digits_split(a.seed)
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          f"(machine shared with other jobs)")
    for name in a.nets.split(","):
        ep, lr, mom, decay = SETTINGS[name]
        ep = a.epochs or ep
        data = digits
        if name == "lenet5":
            data = (fit_images(digits[0], (32, 32)), digits[1], fit_images(digits[2], (32, 32)),
                    digits[3])
        net0 = L.build(name, data[0].shape[1:], seed=a.seed)
        print(f"\n== {name}: {net0.describe()}")
        print(f"   {sum(p.size for p in net0.params())} parameters, {ep} epochs, batch 32, lr {lr}, "
              f"momentum {mom}, decay {decay}, seed {a.seed}, {base.rows}x{base.cols} array")

        def run(be, dev=None):
            net = net0.copy()
            h = train(net, be, data, epochs=ep, batch=32, lr=lr, seed=a.seed, progress=False,
                      opt=SGD(net.params(), lr, mom), decay=decay,
                      device_seconds=(lambda: dev.sim_seconds) if dev else None)
            return net, h

        t0 = time.perf_counter()
        _, ref = run(FloatEngine())
        print(f"   float twin: test acc {100 * ref[-1].test_acc:.1f}% ({time.perf_counter() - t0:.1f} s)")
        for bits in [int(b) for b in a.bits.split(",")]:
            cfg = ArrayConfig(base.rows, base.cols, bits, ACC_W[bits], base.dual_mac)
            accel = open_accelerator("sim", cfg, verbose=False)
            dev = accel.device
            sched = Scheduler(accel)
            be = DeviceEngine(sched, "intergrad")
            net, hist = run(be, dev)
            accs = " ".join(f"{100 * h.test_acc:.1f}" for h in hist)
            d = 100 * (hist[-1].test_acc - ref[-1].test_acc)
            print(f"   int{bits} (ACC_W {cfg.acc_w}): test acc per epoch {accs}; final "
                  f"{100 * hist[-1].test_acc:.1f}% vs float {100 * ref[-1].test_acc:.1f}% "
                  f"({d:+.1f} pp); epoch wall {np.median([h.seconds for h in hist]):.1f} s "
                  f"(median), {100 * (1 - sum(h.device_seconds for h in hist) / sum(h.seconds for h in hist)):.0f}% "
                  f"of it outside the simulator")
            w, s = _step_profile(net, be, dev, data, 32)
            print(f"   int{bits} training step (median of 10): {1e3 * w:.0f} ms wall, "
                  f"{1e3 * s:.0f} ms in the simulator, {100 * (1 - s / w):.0f}% Python")
            mb = min(min(v.values()) for v in be.bits_used.values())
            print(f"   int{bits} magnitude bits used: min {mb} of {bits - 1} over all layers/passes")
            if bits == 16 and a.measure_steps:
                _savings(net, cfg, data, a.measure_steps, a.seed)
            dev.close()
    return 0


def _savings(net, cfg, data, steps, seed):
    accel = open_accelerator("sim", cfg, verbose=False)
    cmp = measure_schedules(net, accel, data[0], data[1], steps=steps, batch=32, seed=seed + 1)
    accel.device.close()
    reps = {"baseline": cmp.baseline, "intergrad": cmp.intergrad}
    print(f"   InterGrad vs baseline on the hardware, {steps} steps, backward pass per layer:")
    print(f"   {'layer':>6} {'passes (base / IG)':>20} {'cycles base':>12} {'cycles IG':>10} "
          f"{'ratio':>6} {'beats base':>11} {'beats IG':>9} {'ratio':>6} {'MAC util IG':>11}")
    R = cfg.rows * cfg.cols
    for layer in net.gemm_layers():
        def tot(rep):
            rs = [r for r in rep if r.layer == layer.name and r.pass_ != "fwd"]
            c = sum(r.counters["busy_cycles"] for r in rs)
            b = sum(r.counters["in_beats"] + r.counters["out_beats"] for r in rs)
            m = sum(r.counters["macs"] for r in rs)
            return c, b, m, "+".join(sorted({r.pass_ for r in rs}))
        cb, bb, _, pb = tot(reps["baseline"])
        ci, bi, mi, pi = tot(reps["intergrad"])
        peak = R * ci * (2 if (cfg.dual_mac and pi == "ig") else 1)
        print(f"   {layer.name:>6} {pb + ' / ' + pi:>20} {cb:>12} {ci:>10} {cb / max(ci, 1):>5.2f}x "
              f"{bb:>11} {bi:>9} {bb / max(bi, 1):>5.2f}x {100 * mi / max(peak, 1):>10.0f}%")


if __name__ == "__main__":
    raise SystemExit(main())
