"""Epoch wall time of the default training run (`intergrad train`: the digits CNN, int16, batch
32, schedule intergrad) for an earlier version of this code against this checkout, side by
side in one run: one process each, and this checkout with ``--workers N`` data parallel.

    python benchmarks/epoch_speed.py [--ref f69a190] [--epochs 8] [--rounds 3] [--workers 2]
                                     [--write]

The earlier version (default f69a190: the code at the time the whole-pass issue was filed)
is taken from git (``git archive``) into a temporary directory and runs with its own package
and RTL (its simulator is built once, in the shared cache).  Each round runs every variant
once, in turn, so the machine's load affects them alike (the load average is printed).
Figures (``nn.train``'s own per-epoch timer: the training steps and the test-set
evaluation): the mean epoch of a run (its epochs' total over their number, the median of
that over the rounds; the first epoch of a process, which builds the pass layouts and
programs, included), the median epoch over all rounds and epochs, the first epoch's median
alone, the share of an epoch outside the simulator, and whether the variants' losses and
test accuracies per epoch are identical.  ``--epochs`` defaults to the default training
run's 8.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from _results import add_write_option, results_file  # noqa: E402 (benchmarks/)

ROOT = Path(__file__).resolve().parents[1]

# Runs `intergrad train` of the package on PYTHONPATH and prints the device run's epochs:
# nn.train is wrapped before the CLI calls it (both versions call intergrad.nn.train).
CHILD = r'''
import json, sys, time
import intergrad.nn as nn
runs = []
orig = nn.train
def train(net, engine, *a, **k):
    hist = orig(net, engine, *a, **k)
    runs.append((getattr(engine, "name", type(engine).__name__),
                 [(s.seconds, s.device_seconds, s.loss, s.test_acc) for s in hist]))
    return hist
nn.train = train
from intergrad.cli import main
t0 = time.perf_counter()
rc = main(sys.argv[1:])
dev = [h for name, h in runs if "float" not in name.lower()]
print("EPOCHS_JSON " + json.dumps({"rc": rc, "wall": time.perf_counter() - t0,
                                   "epochs": dev[0] if dev else None}))
'''


def _load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def _export(ref: str, dest: Path) -> str:
    """The tree of ``ref`` into dest (no .git); returns the commit's one-line description."""
    desc = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s", ref],
                          check=True, capture_output=True, text=True).stdout.strip()
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref],
                         check=True, capture_output=True).stdout
    with tempfile.TemporaryFile() as f:
        f.write(tar)
        f.seek(0)
        with tarfile.open(fileobj=f) as t:
            t.extractall(dest, filter="data") if hasattr(tarfile, "data_filter") else t.extractall(dest)
    return desc


def _run(tree: Path, argv: list[str], timeout: float) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree / "host"))
    env.pop("INTERGRAD_DEBUG", None)
    try:
        r = subprocess.run([sys.executable, "-c", CHILD, *argv], env=env, cwd=tree,
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"epoch_speed: `intergrad {' '.join(argv)}` in {tree} did not finish "
                         f"within {timeout:.0f} s")
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("EPOCHS_JSON ")), None)
    if r.returncode != 0 or line is None:
        raise SystemExit(f"epoch_speed: `intergrad {' '.join(argv)}` in {tree} failed "
                         f"(exit {r.returncode}):\n{(r.stdout + r.stderr)[-2000:]}")
    out = json.loads(line.split(" ", 1)[1])
    if out["rc"] != 0 or not out["epochs"]:
        raise SystemExit(f"epoch_speed: `intergrad {' '.join(argv)}` exit status {out['rc']}, "
                         f"no device epochs:\n{r.stdout[-2000:]}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default="f69a190", help="the earlier version (a git revision)")
    ap.add_argument("--epochs", type=int, default=8, help="epochs per run (the default run's 8)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2, help="data-parallel workers (0: skip)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per training run")
    add_write_option(ap, "epoch_speed")
    a = ap.parse_args(argv)
    if a.epochs < 1 or a.rounds < 1:
        ap.error("--epochs and --rounds must be at least 1")
    with results_file("epoch_speed", a.write, argv):
        return _bench(a)


def _bench(a) -> int:
    train = ["train", "--epochs", str(a.epochs)]
    with tempfile.TemporaryDirectory(prefix="epoch_speed_") as td:
        old = Path(td) / "old"
        old.mkdir()
        desc = _export(a.ref, old)
        head = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"],
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "host",
                                "hls_verilog"], capture_output=True, text=True).stdout.strip()
        variants = [(f"{a.ref} (one process)", old, train),
                    ("this checkout (one process)", ROOT, train)]
        if a.workers > 1:
            variants.append((f"this checkout (--workers {a.workers})", ROOT,
                             train + ["--workers", str(a.workers)]))
        print(f"default training run: intergrad {' '.join(train)} (digits CNN, int16, batch 32)")
        print(f"  earlier: {desc}")
        print(f"  this checkout: {head}{' (with uncommitted changes)' if dirty else ''}")
        print(f"  {os.cpu_count()} cores; load average at start {_load()} (1, 5, 15 min)")
        # warm-up: builds each version's simulator library once (not measured)
        for label, tree, _ in variants[:2]:
            t0 = time.perf_counter()
            _run(tree, ["train", "--epochs", "1"], a.timeout)
            print(f"  warm-up {label}: {time.perf_counter() - t0:.0f} s")
        res = {label: [] for label, _, _ in variants}
        for k in range(a.rounds):
            for label, tree, args in variants:
                out = _run(tree, args, a.timeout)
                res[label].append(out)
                ep = [e[0] for e in out["epochs"]]
                print(f"  round {k + 1} {label:>34}: epochs {' '.join(f'{s:.2f}' for s in ep)} s"
                      f"; command {out['wall']:.1f} s; load {_load()}")
        print()
        print(f"  {'variant':>34} {'mean epoch s':>13} {'vs earlier':>11} {'median epoch s':>15} "
              f"{'vs earlier':>11} {'first epoch s':>14} {'in Python':>10}")
        base = None
        for label, _, _ in variants:
            eps = [e for out in res[label] for e in out["epochs"]]
            mean = statistics.median(sum(e[0] for e in out["epochs"]) / len(out["epochs"])
                                     for out in res[label])
            m = statistics.median(e[0] for e in eps)
            first = statistics.median(out["epochs"][0][0] for out in res[label])
            py = statistics.median(1 - e[1] / e[0] for e in eps if e[0] > 0)
            base = base or (mean, m)
            print(f"  {label:>34} {mean:13.3f} {base[0] / mean:10.2f}x {m:15.3f} "
                  f"{base[1] / m:10.2f}x {first:14.3f} {100 * py:9.0f}%")
        curves = {label: [(round(e[2], 6), round(e[3], 6)) for e in res[label][0]["epochs"]]
                  for label, _, _ in variants}
        ref_curve = curves[variants[0][0]]
        for label, _, _ in variants[1:]:
            same = curves[label] == ref_curve
            print(f"  losses and test accuracies per epoch, {label} vs {a.ref}: "
                  f"{'identical' if same else 'DIFFERENT'}")
        print(f"  load average at end {_load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
