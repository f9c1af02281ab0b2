"""Data-parallel training speedup: training steps of one network on one simulated device in
this process against the same steps on N devices in N worker processes
(intergrad.parallel.DataParallel), measured side by side in one run, rounds interleaved so
that both see the same machine load; the weights after the steps are checked bit-identical.

    python benchmarks/train_parallel.py [--net lenet5] [--bits 16] [--workers 2]
        [--steps 12] [--rounds 3] [--batch 32] [--write]

The one-process run is timed twice per round, with numpy's BLAS at its default threads (as
``intergrad train`` runs) and at one thread (as each worker runs); the speedup is given
against the faster of the two.  Printed: the median step time of each, the speedup, the
share of a worker's step spent inside its simulator, and the load average of the machine
(shared with other jobs) before and after.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from intergrad import layers as L
from intergrad.data import fit_images
from intergrad.device.sim import SimDevice
from intergrad.driver import Accelerator
from intergrad.engine import DeviceEngine
from intergrad.nn import SGD, load_digits_split, softmax_ce
from intergrad.parallel import DataParallel
from intergrad.scheduler import Scheduler
from intergrad.spec import ArrayConfig

from _results import add_write_option, results_file  # noqa: E402 (benchmarks/)

ACC_W = {16: 32, 8: 20}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default="lenet5", choices=list(L.NETWORKS))
    ap.add_argument("--bits", type=int, default=16, choices=sorted(ACC_W))
    ap.add_argument("--array", default="8x8")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=12, help="training steps per timed run")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (one-process, N)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    add_write_option(ap, "train_parallel")
    a = ap.parse_args(argv)
    with results_file("train_parallel", a.write, argv):
        return _run(a)


def _data(name, seed):
    d = load_digits_split(seed)
    x, y = d[0], d[1]
    if L.NETWORKS[name][1] is not None:
        x = fit_images(x, L.NETWORKS[name][1])
    return x, y


def _steps(net, be, x, y, batches, lr=0.05, momentum=0.9, opt=None):
    """Training steps over ``batches``; returns (per-step seconds, optimizer)."""
    opt = opt or SGD(net.params(), lr, momentum)
    times = []
    for idx in batches:
        t0 = time.perf_counter()
        logits, cache = net.forward(be, x[idx])
        _, dl = softmax_ce(logits, y[idx])
        opt.step(net.backward(be, cache, dl))
        times.append(time.perf_counter() - t0)
    return times, opt


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} (1 min), {five:.1f} (5 min)"


def _run(a) -> int:
    from threadpoolctl import threadpool_limits

    base = ArrayConfig.parse(a.array)
    cfg = ArrayConfig(base.rows, base.cols, a.bits, ACC_W[a.bits], base.dual_mac)
    x, y = _data(a.net, a.seed)
    net0 = L.build(a.net, x.shape[1:], seed=a.seed)
    rng = np.random.default_rng(a.seed)
    batches = [rng.choice(len(y), a.batch, replace=False) for _ in range(a.steps)]
    print(f"{a.net}: {net0.describe()}")
    print(f"  {sum(p.size for p in net0.params())} parameters; {a.steps} training steps of batch "
          f"{a.batch} per run, {a.rounds} rounds; int{a.bits} on a simulated {cfg.rows}x{cfg.cols} "
          f"array; {os.cpu_count()} cores")
    print(f"load average at start: {_load()} (the machine is shared with other jobs)")

    dev = SimDevice(cfg, verbose=False)
    be = DeviceEngine(Scheduler(Accelerator(dev)), "intergrad")
    one, one1, par = [], [], []
    sim_share, cpu1, cpu11, cpu_w, cpu_d = [], [], [], [], []
    with DataParallel(net0.copy(), cfg, workers=a.workers) as dp:
        print(f"  data parallel: {dp.describe()}")
        # warm-up: one step each (imports, first-call costs), not timed
        _steps(net0.copy(), be, x, y, batches[:1])
        _steps(dp.net, dp.engine, x, y, batches[:1])
        for r in range(a.rounds):
            n1 = net0.copy()
            c = time.process_time()
            t, opt1 = _steps(n1, be, x, y, batches)
            cpu1.append((time.process_time() - c) / a.steps)
            one += t
            c = time.process_time()
            with threadpool_limits(1):
                t, _ = _steps(net0.copy(), be, x, y, batches)
            cpu11.append((time.process_time() - c) / a.steps)
            one1 += t
            dp.master.set_params(net0.params())
            s0, c0, d0 = dp.sim_seconds(), dp.cpu_seconds(), time.process_time()
            t, opt2 = _steps(dp.net, dp.engine, x, y, batches)
            sim_share.append((dp.sim_seconds() - s0) / sum(t))
            cpu_w.append([(c1 - c) / a.steps for c, c1 in zip(c0, dp.cpu_seconds())])
            cpu_d.append((time.process_time() - d0) / a.steps)
            par += t
            same = all(np.array_equal(p, q) for p, q in zip(n1.params(), dp.master.params()))
            print(f"  round {r + 1}: median step one process {1e3 * np.median(one[-a.steps:]):.0f} ms "
                  f"(BLAS default threads), {1e3 * np.median(one1[-a.steps:]):.0f} ms (1 thread); "
                  f"{a.workers} workers {1e3 * np.median(par[-a.steps:]):.0f} ms; weights after "
                  f"the steps {'bit-identical' if same else 'DIFFERENT'}; load {_load()}",
                  flush=True)
            if not same:
                print("ERROR: the data-parallel weights differ from the one-device run")
                return 1
    dev.close()
    m1, m11, mp = (float(np.median(v)) for v in (one, one1, par))
    best = min(m1, m11)
    print(f"\nmedian training step over {len(par)} steps: one process {1e3 * m1:.0f} ms "
          f"(default BLAS threads) / {1e3 * m11:.0f} ms (1 thread), {a.workers} workers "
          f"{1e3 * mp:.0f} ms")
    print(f"data-parallel speedup on {a.workers} workers: {best / mp:.2f}x (against the faster "
          f"one-process run; {m1 / mp:.2f}x against default threads)")
    print(f"a worker's step: {100 * float(np.mean(sim_share)):.0f}% inside its simulator")
    # CPU time is not shared out by the load: what each process itself spent per step
    cw = np.median(np.array(cpu_w), axis=0)
    cd = float(np.median(cpu_d))
    c1 = min(float(np.median(cpu1)), float(np.median(cpu11)))
    print(f"CPU time per step: one process {1e3 * float(np.median(cpu1)):.0f} ms (default BLAS "
          f"threads) / {1e3 * float(np.median(cpu11)):.0f} ms (1 thread); workers "
          f"{', '.join(f'{1e3 * v:.0f}' for v in cw)} ms, driver {1e3 * cd:.0f} ms "
          f"(total {1e3 * (cw.sum() + cd):.0f} ms, {100 * (cw.sum() + cd) / c1 - 100:+.0f}% against "
          f"the smaller one-process figure)")
    print(f"  idle-machine bound from CPU time (not a measurement, and optimistic: a worker also "
          f"waits for the other at each reduction): one process / (slowest worker + driver) = "
          f"{c1 / (cw.max() + cd):.2f}x")
    print(f"load average at the end: {_load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
