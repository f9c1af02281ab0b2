"""Speed and memory of the analytical model.

* one full Inception-v4 training step (forward, dX, dW, update) on WS, OS and InterGrad at
  batch 32 (target: under 1 s);
* the whole zoo on five designs (ws, os, wsos, intergrad, intergrad1), best-mapped (every
  supported operand-to-array assignment evaluated per layer and pass), and the same under
  every comparison view (equal PEs, equal multipliers, equal area) for intergrad and
  intergrad1 (target: under 1 s);
* peak memory: Python-heap peak (tracemalloc) of building and profiling the whole zoo, and the
  process's maximum resident set size (target: under 200 MB).

    python benchmarks/model_speed.py [--write]
"""
from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "host"))

from intergrad import zoo                       # noqa: E402
from intergrad.model import Array, compare      # noqa: E402
from intergrad.model.compare import views       # noqa: E402
from intergrad.model.report import emit  # noqa: E402


def timed(fn, repeat=7):
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/model_speed.txt"),
                    help="where --write saves the report (default: %(default)s)")
    ap.add_argument("--write", action="store_true",
                    help="save the report to --out (default: print only)")
    a = ap.parse_args(argv)
    lines = [f"machine: {platform.processor() or platform.machine()}, Python "
             f"{platform.python_version()}, {platform.system()}"]

    t0 = time.perf_counter()
    nets = {n: zoo.get(n) for n in zoo.names()}
    for n in nets.values():
        n.arrays()
    build = time.perf_counter() - t0
    lines.append(f"build the whole zoo ({len(nets)} networks, "
                 f"{sum(len(n.layers) for n in nets.values())} layers): {build * 1e3:.1f} ms")

    inc = nets["inception_v4"]
    arr = Array(32, 32)
    med, best = timed(lambda: compare(inc, ["ws", "os", "intergrad"], arr, 32))
    lines.append(f"Inception-v4 training step, batch 32, ws+os+intergrad, 32x32: "
                 f"median {med * 1e3:.2f} ms, best {best * 1e3:.2f} ms (target < 1000 ms)")
    med, best = timed(lambda: compare(inc, ["ws", "os", "intergrad"], arr, 32, iso_area=True))
    lines.append(f"  same with --iso-area: median {med * 1e3:.2f} ms")
    designs = ["ws", "os", "wsos", "intergrad", "intergrad1"]
    med, best = timed(lambda: [compare(n, designs, arr, 32) for n in nets.values()], 3)
    lines.append(f"whole zoo x {len(designs)} designs, batch 32, best-mapped: median "
                 f"{med * 1e3:.1f} ms")
    med, best = timed(lambda: [compare(n, designs, arr, 32, mapping="rtl")
                               for n in nets.values()], 3)
    lines.append(f"  same with the RTL's mapping only: median {med * 1e3:.1f} ms")

    def every_view():
        for n in nets.values():
            for tgt in ("intergrad", "intergrad1"):
                views(n, [tgt, "ws", "os", "wsos"], arr, 32)
    med, best = timed(every_view, 3)
    lines.append(f"whole zoo, every view (equal PEs / multipliers / area) for intergrad and "
                 f"intergrad1 vs ws, os, wsos, best-mapped: median {med * 1e3:.1f} ms "
                 f"(target < 1000 ms)")
    # memory: a separate traced run (tracing slows Python down, so it is not timed)
    tracemalloc.start()
    nets = {n: zoo.get(n) for n in zoo.names()}
    _ = [compare(n, designs, arr, 32, iso_area=True) for n in nets.values()]
    every_view()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB -> MB on Linux
    lines.append(f"peak Python heap (tracemalloc) building + profiling the zoo: "
                 f"{peak / 2**20:.1f} MB")
    lines.append(f"max resident set size of this process (numpy and interpreter included): "
                 f"{rss:.0f} MB (target < 200 MB)")
    emit(lines, a.out if a.write else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
