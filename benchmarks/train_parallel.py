"""Data-parallel training speedup: training steps of one network on one simulated device in
this process against the same steps on N devices in N worker processes
(intergrad.parallel.DataParallel), measured side by side in one run, rounds interleaved so
that both see the same machine load; the weights after the steps are checked bit-identical.
Then the same steps once more, one process and N workers alternating in blocks of
:data:`PAIRED_BLOCK` steps (the ratio of each adjacent pair of blocks, a block's first step
not counted): a pairing that the VM's speed swings of seconds disturb less.

    python benchmarks/train_parallel.py [--net lenet5] [--bits 16] [--workers 2]
        [--steps 12] [--rounds 3] [--batch 32] [--ref REV] [--write]

The one-process run is timed twice per round, with numpy's BLAS at its default threads (as
``intergrad train`` runs) and at one thread (as each worker runs); the speedup is given
against the faster of the two.  Printed: the median step time of each, the speedup, the
share of a worker's step spent inside its simulator, the CPU time per step of each process,
the reductions per step and the wall time a worker spends in them (waiting for the other
workers and the driver), and the load average of the machine (shared with other jobs)
before and after.  First it probes the machine: one long simulated job in one process
alone, then in N processes at once (``machine_scaling``): their summed rate over the one
alone is the most N workers can gain on the simulated part of a step here.

``--ref REV``: an earlier version of intergrad.parallel (``git archive`` of REV into a
temporary directory, its own package and RTL) runs the same steps on as many workers in a
child process in every round, beside this checkout's, from the same weights and batches;
its weights after the steps are checked bit-identical too.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from intergrad import layers as L
from intergrad.data import fit_images
from intergrad.device.sim import SimDevice
from intergrad.driver import Accelerator
from intergrad.engine import DeviceEngine
from intergrad.nn import SGD, load_digits_split, softmax_ce
from intergrad.parallel import DataParallel, poll_seconds
from intergrad.scheduler import Scheduler
from intergrad.spec import ArrayConfig

from _results import add_write_option, results_file  # noqa: E402 (benchmarks/)

ACC_W = {16: 32, 8: 20}

# The --ref version's data-parallel steps (its own package on PYTHONPATH): the same weights,
# batches and optimizer as the parent's runs; prints one line of JSON.
CHILD = r'''
import hashlib, json, sys, time
import numpy as np
from intergrad import layers as L
from intergrad.nn import SGD, softmax_ce
from intergrad.parallel import DataParallel
from intergrad.spec import ArrayConfig
d = np.load(sys.argv[1])
x, y, batches = d["x"], d["y"], d["batches"]
net = L.build(str(d["net"]), x.shape[1:], seed=0)
params = [d[f"p{i}"] for i in range(len(net.params()))]
net.set_params(params)

def steps(dp, idxs):
    opt = SGD(dp.master.params(), 0.05, 0.9)
    times = []
    for idx in idxs:
        t0 = time.perf_counter()
        logits, cache = dp.net.forward(dp.engine, x[idx])
        _, dl = softmax_ce(logits, y[idx])
        opt.step(dp.net.backward(dp.engine, cache, dl))
        times.append(time.perf_counter() - t0)
    return times

with DataParallel(net, ArrayConfig(*[int(v) for v in d["cfg"]]), workers=int(d["workers"])) as dp:
    steps(dp, batches[:1])
    dp.master.set_params(params)
    red = getattr(dp, "reductions", None)
    spin = getattr(dp, "spin_seconds", lambda: [0.0] * dp.workers)
    r0, c0, d0, p0 = red() if red else None, dp.cpu_seconds(), time.process_time(), spin()
    times = steps(dp, batches)
    n = len(batches)
    p1 = spin()
    out = {"times": times, "workers": [(b - a - (q - p)) / n for a, b, p, q
                                       in zip(c0, dp.cpu_seconds(), p0, p1)],
           "driver": (time.process_time() - d0) / n,
           "digest": hashlib.sha1(b"".join(p.tobytes() for p in dp.master.params())).hexdigest()}
    if red:
        out["reductions"] = [((b[0] - a[0]) / n, (b[1] - a[1]) / n) for a, b in zip(r0, red())]
print("TRAIN_PARALLEL_JSON " + json.dumps(out))
'''


# One long simulated job, repeated for about ``sys.argv[2]`` seconds: prints the simulated
# cycles per second (the machine-scaling probe below runs it alone and N at once).
RATE_CHILD = r'''
import sys, time
from intergrad.device.sim import SimDevice
from intergrad.driver import Accelerator
from intergrad.spec import ArrayConfig
from sim_speed import long_job
cfg = ArrayConfig.parse(sys.argv[1]); secs = float(sys.argv[2])
dev = SimDevice(cfg, verbose=False); acc = Accelerator(dev)
job, lanes = long_job(cfg, 20000)
acc.run_job(job, lanes)
sys.stdout.write("READY\n"); sys.stdout.flush(); sys.stdin.readline()   # start together
t0 = time.perf_counter(); c0 = dev.cycle
while time.perf_counter() - t0 < secs:
    acc.run_job(job, lanes)
print("RATE", (dev.cycle - c0) / (time.perf_counter() - t0))
'''


def machine_scaling(array: str, n: int, secs: float = 3.0) -> tuple[float, list[float]]:
    """Simulated cycles/s of one simulator process alone, and of each of ``n`` running at
    once (started together): how far this machine's cores scale on simulated work."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))

    def run(k):
        ps = [subprocess.Popen([sys.executable, "-c", RATE_CHILD, array, str(secs)], env=env,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
              for _ in range(k)]
        for p in ps:   # bounded: a child builds the simulator at most once (cached)
            ready = select.select([p.stdout], [], [], 900)[0]
            if not ready or p.stdout.readline().strip() != "READY":
                for q in ps:
                    q.kill()
                raise SystemExit("train_parallel: the machine-scaling probe did not start "
                                 "within 900 s")
        for p in ps:
            p.stdin.write("go\n")
            p.stdin.flush()
        rates = []
        for p in ps:
            out, _ = p.communicate(timeout=secs * 10 + 120)
            if p.returncode != 0 or "RATE" not in out:
                raise SystemExit("train_parallel: the machine-scaling probe failed")
            rates.append(float(out.split("RATE")[1]))
        return rates

    alone = run(1)[0]
    return alone, run(n)


#: steps per block of the paired measurement (its first step is not counted)
PAIRED_BLOCK = 4


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
    ap.add_argument("--ref", help="also time this earlier version's data-parallel steps (a git "
                                  "revision), beside this checkout's")
    add_write_option(ap, "train_parallel")
    a = ap.parse_args(argv)
    with results_file("train_parallel", a.write, argv):
        if not a.ref:
            return _run(a, None)
        from epoch_speed import _export
        with tempfile.TemporaryDirectory(prefix="train_parallel_") as td:
            tree = Path(td) / "ref"
            tree.mkdir()
            print(f"earlier version (--ref): {_export(a.ref, tree)}")
            return _run(a, tree)


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


def _digest(params) -> str:
    return hashlib.sha1(b"".join(np.ascontiguousarray(p).tobytes() for p in params)).hexdigest()


def _ref_steps(tree: Path, data: Path) -> dict:
    """The --ref version's timed steps (a child process with its package)."""
    env = dict(os.environ, PYTHONPATH=str(tree / "host"))
    r = subprocess.run([sys.executable, "-c", CHILD, str(data)], env=env, cwd=tree,
                       capture_output=True, text=True, timeout=3600)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("TRAIN_PARALLEL_JSON ")),
                None)
    if r.returncode != 0 or line is None:
        raise SystemExit(f"train_parallel: the --ref version failed (exit {r.returncode}):\n"
                         f"{(r.stdout + r.stderr)[-2000:]}")
    return json.loads(line.split(" ", 1)[1])


def _per_step(r0, r1, steps) -> list[tuple[float, float]]:
    """(reductions, wall seconds in them) per step of each worker, from two readings."""
    return [((b[0] - a[0]) / steps, (b[1] - a[1]) / steps) for a, b in zip(r0, r1)]


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} (1 min), {five:.1f} (5 min)"


def _run(a, tree: Path | None) -> int:
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
    data = None
    if tree is not None:         # what the --ref child needs: the same weights and batches
        data = tree / "train_parallel_data.npz"
        np.savez(data, x=x, y=y, batches=np.array(batches), net=a.net, workers=a.workers,
                 cfg=np.array([cfg.rows, cfg.cols, cfg.data_w, cfg.acc_w, cfg.dual_mac]),
                 **{f"p{i}": p for i, p in enumerate(net0.params())})

    alone, together = machine_scaling(a.array, a.workers)
    agg = sum(together) / alone
    print(f"  this machine: one simulator process alone {alone / 1e6:.2f} M cycles/s; "
          f"{a.workers} at once {', '.join(f'{r / 1e6:.2f}' for r in together)} M cycles/s "
          f"each, {agg:.2f}x in all: the ceiling of a {a.workers}-worker speedup on simulated "
          f"work here")
    dev = SimDevice(cfg, verbose=False)
    be = DeviceEngine(Scheduler(Accelerator(dev)), "intergrad")
    one, one1, par, ref = [], [], [], []
    sim_share, cpu1, cpu11, cpu_w, cpu_d, reds, guesses = [], [], [], [], [], [], [0, 0]
    crit = []      # per round: (critical-path CPU of the passes, the driver's own) per step
    spins = []     # per round: each worker's polling in waits per step (not in cpu_w, cpu_d)
    ref_w, ref_d, ref_reds = [], [], []
    with DataParallel(net0.copy(), cfg, workers=a.workers) as dp:
        print(f"  data parallel: {dp.describe()}")
        in_process = getattr(dp, "local", None) is not None
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
            rnote = ""
            if tree is not None:
                o = _ref_steps(tree, data)
                ref += o["times"]
                ref_w.append(o["workers"])
                ref_d.append(o["driver"])
                if "reductions" in o:
                    ref_reds.append(o["reductions"])
                same_ref = o["digest"] == _digest(n1.params())
                rnote = (f"; --ref {a.workers} workers {1e3 * np.median(o['times']):.0f} ms "
                         f"({'bit-identical' if same_ref else 'DIFFERENT'})")
                if not same_ref:
                    print("ERROR: the --ref version's data-parallel weights differ from the "
                          "one-device run")
                    return 1
            dp.master.set_params(net0.params())
            g0 = [dp.query(k, "guesses") for k in range(a.workers)]
            dp.phases()
            s0, c0, d0, r0 = dp.sim_seconds(), dp.cpu_seconds(), time.process_time(), \
                dp.reductions()
            p0 = dp.spin_seconds()
            t, opt2 = _steps(dp.net, dp.engine, x, y, batches)
            # CPU time less the polling in waits (parallel.SPIN: a wait's first moments)
            spun = [(q - p) / a.steps for p, q in zip(p0, dp.spin_seconds())]
            spins.append(spun)
            cpu_d.append((time.process_time() - d0) / a.steps - (spun[0] if in_process else 0.0))
            ph = dp.phases()
            if len({len(p) for p in ph}) == 1:
                own = cpu_d[-1] - (sum(ph[0]) / a.steps if in_process else 0.0)
                crit.append((sum(map(max, zip(*ph))) / a.steps, own))
            sim_share.append((dp.sim_seconds() - s0) / sum(t))
            cpu_w.append([(c1 - c) / a.steps - sp for c, c1, sp in
                          zip(c0, dp.cpu_seconds(), spun)])
            reds.append(_per_step(r0, dp.reductions(), a.steps))
            g1 = dp.query(0, "guesses")
            guesses = [guesses[0] + g1[0] - g0[0][0], guesses[1] + g1[1] - g0[0][1]]
            par += t
            same = all(np.array_equal(p, q) for p, q in zip(n1.params(), dp.master.params()))
            print(f"  round {r + 1}: median step one process {1e3 * np.median(one[-a.steps:]):.0f} ms "
                  f"(BLAS default threads), {1e3 * np.median(one1[-a.steps:]):.0f} ms (1 thread); "
                  f"{a.workers} workers {1e3 * np.median(par[-a.steps:]):.0f} ms; weights after "
                  f"the steps {'bit-identical' if same else 'DIFFERENT'}{rnote}; load {_load()}",
                  flush=True)
            if not same:
                print("ERROR: the data-parallel weights differ from the one-device run")
                return 1
        # paired: short blocks of steps alternately, one process (its faster BLAS setting)
        # then the workers, on the same batches: each pair of blocks sees the same machine;
        # a block's first step, which starts after the other side's block (caches, idle
        # cores), is not counted
        m1, m11 = float(np.median(one)), float(np.median(one1))
        n1 = net0.copy()
        dp.master.set_params(net0.params())
        opt_a, opt_b = SGD(n1.params(), 0.05, 0.9), SGD(dp.master.params(), 0.05, 0.9)
        pairs = []
        for r in range(a.rounds):
            for i in range(0, len(batches) - PAIRED_BLOCK + 1, PAIRED_BLOCK):
                block = batches[i:i + PAIRED_BLOCK]
                with threadpool_limits(1 if m11 <= m1 else None):
                    ta, _ = _steps(n1, be, x, y, block, opt=opt_a)
                tb, _ = _steps(dp.net, dp.engine, x, y, block, opt=opt_b)
                pairs.append((float(np.mean(ta[1:])), float(np.mean(tb[1:]))))
        same = all(np.array_equal(p, q) for p, q in zip(n1.params(), dp.master.params()))
        if not same:
            print("ERROR: the data-parallel weights differ from the one-device run (paired)")
            return 1
    dev.close()
    m1, m11, mp = (float(np.median(v)) for v in (one, one1, par))
    best = min(m1, m11)
    print(f"\nmedian training step over {len(par)} steps: one process {1e3 * m1:.0f} ms "
          f"(default BLAS threads) / {1e3 * m11:.0f} ms (1 thread), {a.workers} workers "
          f"{1e3 * mp:.0f} ms" + (f"; --ref {a.workers} workers {1e3 * float(np.median(ref)):.0f} ms"
                                  if ref else ""))
    print(f"data-parallel speedup on {a.workers} workers: {best / mp:.2f}x (against the faster "
          f"one-process run; {m1 / mp:.2f}x against default threads)" +
          (f"; --ref: {best / float(np.median(ref)):.2f}x" if ref else ""))
    ratios = [ta / tb for ta, tb in pairs]
    q1, q3 = np.percentile(ratios, [25, 75])
    ma, mb = (1e3 * float(np.median([p[k] for p in pairs])) for k in (0, 1))
    print(f"paired: {len(pairs)} blocks of {PAIRED_BLOCK} steps of each alternately (one process "
          f"at {'1 BLAS thread' if m11 <= m1 else 'default BLAS threads'}, then {a.workers} "
          f"workers, the same batches; a block's first step not counted; weights "
          f"bit-identical): a block's mean step {ma:.0f} / {mb:.0f} ms (medians); median ratio "
          f"of a pair of blocks {float(np.median(ratios)):.2f}x (quartiles {q1:.2f}x-{q3:.2f}x)")
    print(f"a worker's step: {100 * float(np.mean(sim_share)):.0f}% inside its simulator")
    # CPU time is not shared out by the load: what each process itself spent per step
    c1 = min(float(np.median(cpu1)), float(np.median(cpu11)))
    print(f"CPU time per step: one process {1e3 * float(np.median(cpu1)):.0f} ms (default BLAS "
          f"threads) / {1e3 * float(np.median(cpu11)):.0f} ms (1 thread); the workers' figures "
          f"below leave out their polling in waits (a wait's first {1e3 * poll_seconds():g} ms): "
          f"{', '.join(f'{1e3 * v:.1f}' for v in np.median(np.array(spins), axis=0))} ms per step")
    for label, w, d, inproc in [("this checkout", cpu_w, cpu_d, in_process)] + \
            ([("--ref", ref_w, ref_d, False)] if ref else []):
        cw, cd = np.median(np.array(w), axis=0), float(np.median(d))
        if inproc:    # worker 0 is the driver's process: its CPU time is the driver's too
            cd = 0.0
        print(f"  {label}: workers {', '.join(f'{1e3 * v:.0f}' for v in cw)} ms"
              f"{' (worker 0 in the driver process, with the driver)' if inproc else ''}, "
              f"driver {'included' if inproc else f'{1e3 * cd:.0f} ms'} "
              f"(total {1e3 * (cw.sum() + cd):.0f} ms, "
              f"{100 * (cw.sum() + cd) / c1 - 100:+.0f}% against the smaller one-process figure); "
              f"idle-machine bound (not a measurement, and optimistic: a worker also waits for "
              f"the others at each reduction): one process / (slowest worker + driver) = "
              f"{c1 / (cw.max() + cd):.2f}x")
    if crit:
        cp, own = (float(np.median(v)) for v in zip(*crit))
        print(f"  this checkout, the step's critical path in CPU time (an estimate for an idle "
              f"machine, one core per worker, without wake-up latency; not a measurement): "
              f"the slowest worker's CPU between each two reductions, summed, {1e3 * cp:.0f} ms, "
              f"+ the driver's own work {1e3 * own:.0f} ms = {1e3 * (cp + own):.0f} ms: one process "
              f"/ that = {c1 / (cp + own):.2f}x")
    for label, rr in [("this checkout", reds)] + ([("--ref", ref_reds)] if ref_reds else []):
        rr = np.median(np.array(rr), axis=0)
        print(f"  {label}: {rr[0][0]:.1f} reductions per step; a worker waits in them "
              f"{', '.join(f'{1e3 * v:.0f}' for v in rr[:, 1])} ms per step (the other workers, "
              f"the driver, the machine's other jobs)")
    print(f"  sharded quantizations with one reduction (guessed scales and bound attempts): "
          f"{guesses[0]} of {sum(guesses)}")
    print(f"load average at the end: {_load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
