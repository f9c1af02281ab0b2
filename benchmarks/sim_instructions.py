"""Instructions per simulated cycle of the sim backend, counted by valgrind's callgrind.

Wall-clock speed on a shared VM varies a lot from run to run; the instruction count of the
C++ harness and the Verilated model is repeatable, so it is the figure to compare RTL or
harness changes by.  Runs two jobs (InterGrad unless --mode says otherwise) of different
lengths under callgrind, sums the instructions spent inside the simulator library (the
harness loop and the Verilated model), and reports the difference per extra cycle.  Needs ``valgrind`` (Debian package).
The simulator counted is the portable build (``INTERGRAD_SIM_ARCH=portable``: the
compiler's default target), not the ``-march=native`` build the package uses by default:
valgrind does not execute AVX-512; ``benchmarks/sim_speed.py`` times both.

    python benchmarks/sim_instructions.py [--array 8x8] [--mode IG|WS|OS]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _results import add_write_option, results_file  # noqa: E402 (benchmarks/)

# argv: array, batch, mode[, a prebuilt simulator library (benchmarks/sim_profile.py)]
CHILD = r'''
import sys, numpy as np
from intergrad.device.sim import SimDevice
from intergrad.driver import Accelerator
from intergrad.golden import ArrayModel, Job
from intergrad.spec import ArrayConfig
cfg = ArrayConfig.parse(sys.argv[1]); B = int(sys.argv[2]); mode = sys.argv[3]
dev = SimDevice(cfg, verbose=False, library=sys.argv[4] if len(sys.argv) > 4 else None)
acc = Accelerator(dev); m = ArrayModel(cfg)
flags = {"LOAD_W"} if mode == "WS" else {"LOAD_W", "ACC_CLEAR", "DRAIN"}
job = Job(mode, B, cfg.rows, cfg.cols, flags)
rng = np.random.default_rng(0)
lanes = m.job_input(job, weights=rng.integers(-99, 99, (cfg.rows, cfg.cols)),
                    left=rng.integers(-99, 99, (B, cfg.rows)), top=rng.integers(-99, 99, (B, cfg.cols)))
c0 = dev.cycle; acc.run_job(job, lanes); print("CYCLES", dev.cycle - c0)
'''


def count(array: str, B: int, mode: str = "IG") -> tuple[int, int]:
    with tempfile.TemporaryDirectory() as td:
        out = Path(td) / "cg.out"
        # under valgrind the interpreter does not see the venv: hand it this sys.path; the
        # portable build (valgrind does not run AVX-512 code)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p),
                   INTERGRAD_SIM_ARCH="portable")
        r = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                            sys.executable, "-c", CHILD,
                            array, str(B), mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env=env)
        if r.returncode != 0 or "CYCLES" not in r.stdout:
            raise SystemExit(r.stderr[-2000:])
        cycles = int(re.search(r"CYCLES (\d+)", r.stdout).group(1))
        ann = subprocess.run(["callgrind_annotate", "--threshold=100", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
        ir = 0
        for line in ann.splitlines():
            m = re.match(r"\s*([\d,]+)\s.*\[(.*)\]\s*$", line)
            if m and "libintergrad_sim" in m.group(2):
                ir += int(m.group(1).replace(",", ""))
    return cycles, ir


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--array", default="8x8")
    ap.add_argument("--mode", default="IG", choices=["IG", "WS", "OS"],
                    help="the job's mode (default InterGrad: both multipliers every step)")
    add_write_option(ap, "sim_instructions")
    a = ap.parse_args(argv)
    with results_file("sim_instructions", a.write, argv):
        return _run(a)


def _run(a) -> int:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind not found: apt-get install valgrind")
    c1, i1 = count(a.array, 1000, a.mode)
    c2, i2 = count(a.array, 5000, a.mode)
    name = {"IG": "InterGrad", "WS": "WS", "OS": "OS"}[a.mode]
    print(f"{a.array} array, {name} job: {(i2 - i1) / (c2 - c1):.0f} instructions per simulated "
          f"cycle in the simulator library (callgrind; {c1} and {c2} cycles)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
