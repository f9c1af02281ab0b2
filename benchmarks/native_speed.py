"""The host data path's native kernels (intergrad.native) against numpy, side by side: the
training step of each network (int16, batch 32, 8x8 simulated array) in child processes
with and without ``INTERGRAD_NATIVE=0``, alternating, the same batches from the same
weights; the step's wall time, its time in the simulator, the rest (Python and the host's
numpy / native work), and whether both variants computed the same gradients.

    python benchmarks/native_speed.py [--nets digits,lenet5] [--rounds 3] [--steps 10]
                                      [--write]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys

from _results import add_write_option, results_file  # noqa: E402 (benchmarks/)

# argv: net, steps; prints one JSON line: per-step wall and simulator seconds, the native
# flag, and a digest of every step's gradients
CHILD = r'''
import hashlib, json, sys, time
import numpy as np
from intergrad import layers as L, native
from intergrad.data import fit_images
from intergrad.device import open_accelerator
from intergrad.engine import DeviceEngine
from intergrad.nn import gradients, load_digits_split
from intergrad.scheduler import Scheduler
from intergrad.spec import ArrayConfig
name, steps = sys.argv[1], int(sys.argv[2])
d = load_digits_split(0)
X = fit_images(d[0], (32, 32)) if name == "lenet5" else d[0]
y = d[1]
net = L.build(name, X.shape[1:], seed=0)
accel = open_accelerator("sim", ArrayConfig(8, 8, 16, 32, 1), verbose=False)
dev = accel.device
be = DeviceEngine(Scheduler(accel), "intergrad")
rng = np.random.default_rng(1)
h = hashlib.sha256()
wall, sim = [], []
for k in range(steps + 3):          # 3 warm-up steps (builds, caches, memo)
    idx = rng.choice(len(y), 32, replace=False)
    s0, t0 = dev.sim_seconds, time.perf_counter()
    g = gradients(net, be, X[idx], y[idx])
    if k >= 3:
        wall.append(time.perf_counter() - t0)
        sim.append(dev.sim_seconds - s0)
    h.update(np.float64(g.loss).tobytes())
    for v in [g.logits] + list(g.grads):
        h.update(np.ascontiguousarray(v).tobytes())
print(json.dumps({"wall": wall, "sim": sim, "native": native.available(),
                  "digest": h.hexdigest()}))
'''


def run_child(net: str, steps: int, use_native: bool) -> dict:
    env = dict(os.environ, INTERGRAD_NATIVE="1" if use_native else "0",
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    r = subprocess.run([sys.executable, "-c", CHILD, net, str(steps)], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=1800)
    if r.returncode != 0:
        raise SystemExit(f"{net} (native={use_native}) failed:\n{r.stderr[-2000:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    if out["native"] != use_native:
        raise SystemExit(f"{net}: asked native={use_native}, the child ran native="
                         f"{out['native']}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default="digits,lenet5")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10, help="measured steps per run")
    add_write_option(ap, "native_speed")
    a = ap.parse_args(argv)
    with results_file("native_speed", a.write, argv):
        return _run(a)


def _run(a) -> int:
    load = os.getloadavg()
    print(f"{os.cpu_count()} cores; load average at start {load[0]:.1f} {load[1]:.1f} "
          f"{load[2]:.1f} (1, 5, 15 min)")
    print(f"training step, int16, batch 32, 8x8 simulated array; {a.rounds} rounds of "
          f"{a.steps} steps per variant, alternating")
    for net in a.nets.split(","):
        res = {True: [], False: []}
        digests = {True: set(), False: set()}
        for r in range(a.rounds):
            for use in (True, False):
                out = run_child(net, a.steps, use)
                res[use].append(out)
                digests[use].add(out["digest"])
                w, s = statistics.median(out["wall"]), statistics.median(out["sim"])
                print(f"  {net} round {r + 1} {'native' if use else 'numpy ':>6}: step "
                      f"{1e3 * w:6.1f} ms, simulator {1e3 * s:6.1f} ms, rest "
                      f"{1e3 * (w - s):5.1f} ms; load {os.getloadavg()[0]:.1f}")
        rows = {}
        for use in (True, False):
            wall = [x for o in res[use] for x in o["wall"]]
            rest = [w - s for o in res[use] for w, s in zip(o["wall"], o["sim"])]
            rows[use] = (statistics.median(wall), statistics.median(rest))
        (wn, rn), (wp, rp) = rows[True], rows[False]
        same = len(digests[True] | digests[False]) == 1
        print(f"{net}: median step native {1e3 * wn:.1f} ms (outside the simulator "
              f"{1e3 * rn:.1f} ms, {100 * rn / wn:.0f} %), numpy {1e3 * wp:.1f} ms "
              f"({1e3 * rp:.1f} ms, {100 * rp / wp:.0f} %): outside the simulator "
              f"{rp / rn:.2f}x less with the native kernels; gradients "
              f"{'identical' if same else 'DIFFERENT'} in every run")
        if not same:
            return 1
    load = os.getloadavg()
    print(f"load average at end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
