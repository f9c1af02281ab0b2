"""Simulated-hardware speed: the Verilator C++ backend vs the same job driven cycle by cycle
through cocotb, measured side by side in one run on this machine.

    python benchmarks/sim_speed.py [--array 8x8] [--b-cpp 60000] [--b-cocotb 20000]

Prints simulated cycles per second for each and their ratio.  The job is an InterGrad job
(weights, B beats of X and dY, B dX beats, drain) on the default array, no stalls.  The C++
backend's rate is given twice: for the whole job through the driver (``Accelerator.run_job``:
register writes, packing the beats in numpy, the transfer, the status read, unpacking) and
for the transfer alone (the time spent inside the simulator library), for the default
``-march=native`` build and the portable one (``INTERGRAD_SIM_ARCH=portable``), their runs
alternating.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from intergrad import rtl
from intergrad.device.sim import SimDevice, sim_arch, cache_root
from intergrad.driver import Accelerator
from intergrad.golden import ArrayModel, Job
from intergrad.spec import ArrayConfig

from _results import add_write_option, results_file  # noqa: E402 (benchmarks/)

HERE = Path(__file__).resolve().parent


def long_job(cfg: ArrayConfig, B: int) -> tuple[Job, np.ndarray]:
    """The benchmark's InterGrad job of B samples on the whole array, and its input lanes
    (also benchmarks/train_parallel.py's machine-scaling probe)."""
    job = Job("IG", B, cfg.rows, cfg.cols, {"LOAD_W", "ACC_CLEAR", "DRAIN"})
    rng = np.random.default_rng(0)
    lanes = ArrayModel(cfg).job_input(job, weights=rng.integers(-99, 99, (cfg.rows, cfg.cols)),
                                      left=rng.integers(-99, 99, (B, cfg.rows)),
                                      top=rng.integers(-99, 99, (B, cfg.cols)))
    return job, lanes


def cpp_rates(cfg: ArrayConfig, B: int, reps: int = 9,
              arches: tuple[str, ...] = ("native", "portable")) -> dict:
    """arch -> the C++ backend's rates on the long job, the builds' runs alternating (the
    machine's speed drifts: only runs side by side compare)."""
    devs = {a: SimDevice(cfg, verbose=True, arch=a) for a in arches}
    accs = {a: Accelerator(d) for a, d in devs.items()}
    m = ArrayModel(cfg)
    job, lanes = long_job(cfg, B)
    expect = m.run(job, lanes)
    res = {a: ([], [], []) for a in arches}
    n = 0
    for _ in range(reps):
        for a in arches:
            dev, acc = devs[a], accs[a]
            c0, t0, p0, s0 = dev.cycle, time.perf_counter(), time.process_time(), dev.sim_seconds
            out = acc.run_job(job, lanes)
            n = dev.cycle - c0
            rates, cpu_rates, sim_rates = res[a]
            rates.append(n / (time.perf_counter() - t0))
            cpu_rates.append(n / (time.process_time() - p0))
            sim_rates.append(n / (dev.sim_seconds - s0))
            if not np.array_equal(out, expect):
                raise SystemExit(f"the {a} build's output differs from the golden model")
    for d in devs.values():
        d.close()
    return {a: {"cycles": n, "rate": statistics.median(r), "cpu_rate": statistics.median(c),
                "sim_rate": statistics.median(si), "min": min(r), "max": max(r), "reps": reps,
                "target": sim_arch(a)[1]}
            for a, (r, c, si) in res.items()}


def cocotb_rate(cfg: ArrayConfig, B: int) -> dict:
    # under the cache ($INTERGRAD_CACHE or ~/.cache/intergrad), not in the checkout
    build = cache_root() / "cocotb" / f"bench_verilator_{cfg.rows}x{cfg.cols}"
    with tempfile.TemporaryDirectory() as td:
        out = Path(td) / "res.json"
        total, failed = rtl.run_cocotb("verilator", cfg, build, "bench_cocotb_speed",
                                       HERE / "cocotb",
                                       extra_env={"IG_BENCH_B": str(B), "IG_BENCH_OUT": str(out)})
        if failed or not out.exists():
            raise SystemExit("cocotb benchmark failed")
        r = json.loads(out.read_text())
    return {"cycles": r["cycles"], "rate": r["cycles"] / r["wall"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--array", default="8x8")
    ap.add_argument("--b-cpp", type=int, default=60000)
    ap.add_argument("--b-cocotb", type=int, default=20000)
    add_write_option(ap, "sim_speed")
    a = ap.parse_args(argv)
    with results_file("sim_speed", a.write, argv):
        return _run(a)


def _run(a) -> int:
    cfg = ArrayConfig.parse(a.array)
    cb = cocotb_rate(cfg, a.b_cocotb)
    cps = cpp_rates(cfg, a.b_cpp)
    cp = cps["native"]
    print(f"\nsimulated-hardware speed, {cfg.rows}x{cfg.cols} array, InterGrad job, no stalls:")
    for arch, r in cps.items():
        name = {"native": "-march=native build (the default)",
                "portable": "portable build (INTERGRAD_SIM_ARCH=portable)"}[arch]
        print(f"  C++ harness (intergrad sim backend), {name}:\n"
              f"    {r['cycles']:>8} cycles/job, "
              f"{r['rate'] / 1e6:6.2f} M cycles/s wall (median of {r['reps']}; "
              f"min {r['min'] / 1e6:.2f}, max {r['max'] / 1e6:.2f}), {r['cpu_rate'] / 1e6:.2f} M/s CPU; "
              f"{r['sim_rate'] / 1e6:6.2f} M cycles/s inside the simulator (median)")
        print(f"    target: {r['target'][:160]}{' ...' if len(r['target']) > 160 else ''}")
    print(f"  the native build runs {cp['rate'] / cps['portable']['rate']:.2f}x the portable "
          f"build's cycles/s (alternating runs)")
    print(f"  cocotb, cycle by cycle from Python : {cb['cycles']:>8} cycles/job, "
          f"{cb['rate'] / 1e6:6.3f} M cycles/s wall")
    print(f"  ratio: the C++ backend (native build) is {cp['rate'] / cb['rate']:.0f}x faster")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
