"""Host overhead per pass on the board path: AXI-Lite accesses and DMA set-ups, job by job
(``Accelerator.run_job``) against one queue per pass (``Accelerator.run_pass``).

    python benchmarks/host_overhead.py [--array 8x8] [--write]

Counted, not estimated: the pynq backend (host/intergrad/device/pynq_backend.py) runs
unchanged against intergrad.device.pynq_emu (PYNQ's DMA driver code on the register-level
AXI DMA model of PG021) over the simulated core, and every register access it makes is
counted: the core's (AXI-Lite, through DefaultIP.read/write) and the DMA's (its control and
status registers: also AXI-Lite on GP0), and the DMA transfers started (MM2S + S2MM).  The
passes are the plan's (intergrad.plan) for the shapes listed.  Polls (reads of STATUS and
both DMASR while a transfer runs) depend on how long a transfer takes per access: the run
is made twice, with the model letting 32 clock cycles pass per register access (the tests'
setting) and 500 (5 us at 100 MHz, the slow end of an MMIO access from Python on the
Zynq's ARM: fewer polls per transfer).
"""
from __future__ import annotations

import argparse
import collections

import numpy as np

from intergrad.device.pynq_backend import PynqDevice
from intergrad.device.pynq_emu import make_pynq_module
from intergrad.device.sim import SimDevice
from intergrad.driver import Accelerator
from intergrad.plan import plan_pass
from intergrad.spec import ArrayConfig

from _results import add_write_option, results_file  # noqa: E402 (benchmarks/)

#: (pass, B, N, M): FC layers of the training code's size class and a conv layer's GEMM
#: (B*H*W rows after im2col)
PASSES = [("fwd", 32, 64, 10), ("ig", 32, 64, 10), ("fwd", 32, 784, 64), ("ig", 32, 784, 64),
          ("dw", 2048, 72, 16), ("ig", 2048, 72, 16)]


class Counting:
    """Wraps a register interface and counts accesses by (side, r/w, offset)."""

    def __init__(self, obj, side, counts):
        self._o, self._side, self._c = obj, side, counts

    def read(self, off=0, *a):
        self._c[(self._side, "r", off)] += 1
        return self._o.read(off, *a)

    def write(self, off, v):
        self._c[(self._side, "w", off)] += 1
        return self._o.write(off, v)


def measure(board, acc, jobs, lanes, path):
    counts = collections.Counter()
    core, dma = board.core, board.dma
    mmio = dma.mmio
    board.core = Counting(core, "core", counts)
    dma.mmio = dma.sendchannel._mmio = dma.recvchannel._mmio = Counting(mmio, "dma", counts)
    model = mmio.model
    t0 = model.mm2s.transfers + model.s2mm.transfers
    try:
        if path == "job":
            for j, ln in zip(jobs, lanes):
                acc.run_job(j, ln)
        else:
            acc.run_pass(jobs, lanes)
    finally:
        board.core = core
        dma.mmio = dma.sendchannel._mmio = dma.recvchannel._mmio = mmio
    return {"axil": sum(counts.values()), "dma_setups": model.mm2s.transfers +
            model.s2mm.transfers - t0,
            "core": sum(v for k, v in counts.items() if k[0] == "core"),
            "dma": sum(v for k, v in counts.items() if k[0] == "dma")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--array", default="8x8")
    add_write_option(ap, "host_overhead")
    a = ap.parse_args(argv)
    cfg = ArrayConfig.parse(a.array)
    sim = SimDevice(cfg, verbose=True)
    rng = np.random.default_rng(0)
    lim = 1 << (cfg.data_w - 1)
    work = []
    for p, B, N, M in PASSES:
        jobs = [t.job for t in plan_pass(cfg, p, B, N, M)]
        work.append((p, B, N, M, jobs,
                     [rng.integers(-lim, lim, (j.in_beats(), cfg.in_lanes)) for j in jobs]))
    with results_file("host_overhead", a.write, argv):
        for cycles in (32, 500):
            board = PynqDevice("intergrad.bit",
                               pynq_module=make_pynq_module(sim, access_cycles=cycles))
            acc = Accelerator(board)
            print(f"\n{cfg.rows}x{cfg.cols} array, pynq backend over the AXI DMA model, "
                  f"{cycles} clock cycles per register access")
            print(f"{'pass':>4} {'B':>5} {'N':>4} {'M':>3} {'jobs':>5} | {'path':>4} "
                  f"{'core':>6} {'DMA':>6} {'AXI-Lite':>8} {'per job':>7} {'DMA set-ups':>11}")
            for p, B, N, M, jobs, lanes in work:
                for path in ("job", "pass"):
                    acc.recover()
                    r = measure(board, acc, jobs, lanes, path)
                    print(f"{p:>4} {B:>5} {N:>4} {M:>3} {len(jobs):>5} | {path:>4} "
                          f"{r['core']:>6} {r['dma']:>6} {r['axil']:>8} "
                          f"{r['axil'] / len(jobs):>7.1f} {r['dma_setups']:>11}")
            board.close()
    sim.close()


if __name__ == "__main__":
    main()
