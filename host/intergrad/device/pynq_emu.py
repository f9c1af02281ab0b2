"""The parts of the PYNQ API that :mod:`intergrad.device.pynq_backend` uses, on top of the
simulated hardware, so that the board backend's own logic (driver binding, register
sequences, buffer allocation, cache flush/invalidate, DMA start/poll/error/timeout handling,
the recovery sequence) runs and is tested with no board.

It is not PYNQ: it models only what the backend touches.  What it checks on the way:

* buffers have a CPU view (the numpy array) and a device view; ``flush()`` copies CPU ->
  device and ``invalidate()`` device -> CPU, so a missing flush sends stale data and a
  missing invalidate reads stale results, as on the board's non-coherent HP path; the
  device views are the DMA's physical memory (:class:`axi_dma_model.Memory`);
* the DMA is :class:`axi_dma_model.AxiDmaModel`, a register-level model of the AXI DMA in
  direct register mode (PG021) over the simulated core's streams, and its driver
  (:class:`EmuDMA`, :class:`EmuSDMAChannel`) is PYNQ's ``pynq.lib.dma.DMA`` /
  ``_SDMAChannel`` code, reproduced statement by statement on the model's registers:
  ``transfer``, ``wait``, ``start``, ``stop`` (which spins with no timeout, so a backend that
  called it on a starving S2MM channel would hang here as on the board), ``running``,
  ``idle``, ``error``, ``transferred``;
* every register access lets simulated time pass (``access_cycles``), so polling loops see
  the streams progress.
"""
from __future__ import annotations

import types

import numpy as np

from .axi_dma_model import AxiDmaModel, Memory
from .sim import SimDevice

CORE_CELL = "intergrad_0"
DMA_CELL = "axi_dma_0"
CORE_ADDR = 0x43C0_0000
DMA_ADDR = 0x4040_0000


class EmuBuffer(np.ndarray):
    """A pynq.allocate buffer: numpy array (CPU view) plus a separate device view, which is
    what the DMA model reads and writes at the buffer's physical address."""

    _next_phys = 0x1600_0000

    def __new__(cls, shape, dtype=np.uint8, memory: Memory | None = None):
        obj = np.zeros(shape, dtype=dtype).view(cls)
        obj.dev_mem = np.zeros(shape, dtype=dtype)
        obj.physical_address = EmuBuffer._next_phys
        # 4 KiB aligned, like CMA allocations (so aligned to any stream width)
        EmuBuffer._next_phys += (obj.nbytes + 2 * 4096 - 1) // 4096 * 4096
        obj.freed = False
        obj.flushes = 0
        obj.invalidates = 0
        obj._memory = memory
        if memory is not None:
            memory.add(obj.physical_address, obj.dev_mem)
        return obj

    def __array_finalize__(self, obj):
        if obj is None:
            return
        self.dev_mem = getattr(obj, "dev_mem", None)
        self.physical_address = getattr(obj, "physical_address", 0)
        self.freed = getattr(obj, "freed", False)
        self.flushes = getattr(obj, "flushes", 0)
        self.invalidates = getattr(obj, "invalidates", 0)
        self._memory = getattr(obj, "_memory", None)

    def flush(self):
        self.dev_mem[...] = np.asarray(self)
        self.flushes += 1

    def invalidate(self):
        np.asarray(self)[...] = self.dev_mem
        self.invalidates += 1

    def freebuffer(self):
        self.freed = True
        if self._memory is not None:
            self._memory.remove(self.physical_address)


class EmuSDMAChannel:
    """pynq.lib.dma._SDMAChannel (PYNQ 3.x, BSD-3-Clause, Copyright (c) 2017 Xilinx, Inc.),
    the same statements on the model's registers; only comments differ."""

    def __init__(self, mmio, max_size, width, tx_rx, dre, interrupt=None):
        self._mmio = mmio
        self._interrupt = interrupt
        self._max_size = max_size
        self._active_buffer = None
        self._first_transfer = True
        self._align = width
        self._tx_rx = tx_rx
        self._dre = dre
        if tx_rx == DMA_TYPE_RX:
            self._offset = 0x30
            self._flush_before = False
        else:
            self._offset = 0
            self._flush_before = True
        self.transferred = 0
        self.start()

    @property
    def running(self):
        return self._mmio.read(self._offset + 4) & 0x01 == 0x00

    @property
    def idle(self):
        return self._mmio.read(self._offset + 4) & 0x02 == 0x02

    @property
    def error(self):
        return self._mmio.read(self._offset + 4) & 0x70 != 0x0

    def start(self):
        if self._interrupt:
            self._mmio.write(self._offset, 0x1001)
        else:
            self._mmio.write(self._offset, 0x0001)
        while not self.running:
            pass
        self._first_transfer = True

    def stop(self):
        # PYNQ: no timeout; on an S2MM transfer whose TLAST never comes this never returns
        self._mmio.write(self._offset, 0x0000)
        while self.running:
            pass

    def _clear_interrupt(self):
        self._mmio.write(self._offset + 4, 0x1000)

    def transfer(self, array, start=0, nbytes=0):
        if not self.running:
            raise RuntimeError("DMA channel not started")
        if not self.idle and not self._first_transfer:
            raise RuntimeError("DMA channel not idle")
        if nbytes == 0:
            nbytes = array.nbytes - start
        if nbytes > self._max_size:
            raise ValueError(
                "Transfer size is {} bytes, which exceeds "
                "the maximum DMA buffer size {}.".format(nbytes, self._max_size)
            )
        if not self._dre and ((array.physical_address + start) % self._align) != 0:
            raise RuntimeError(
                "DMA does not support unaligned transfers; "
                "Starting address must be aligned to "
                "{} bytes.".format(self._align)
            )
        if self._flush_before:
            array.flush()
        self.transferred = 0
        self._mmio.write(self._offset + 0x18, (array.physical_address + start) & 0xFFFFFFFF)
        self._mmio.write(self._offset + 0x1C, ((array.physical_address + start) >> 32) & 0xFFFFFFFF)
        self._mmio.write(self._offset + 0x28, nbytes)
        self._active_buffer = array
        self._first_transfer = False

    def wait(self):
        if not self.running:
            raise RuntimeError("DMA channel not started")
        while True:
            error = self._mmio.read(self._offset + 4)
            if self.error:
                if error & 0x10:
                    raise RuntimeError("DMA Internal Error (transfer length 0?)")
                if error & 0x20:
                    raise RuntimeError("DMA Slave Error (cannot access memory map interface)")
                if error & 0x40:
                    raise RuntimeError("DMA Decode Error (invalid address)")
            if self.idle:
                break
        if not self._flush_before:
            self._active_buffer.invalidate()
        self.transferred = self._mmio.read(self._offset + 0x28)
        self._active_buffer = None


DMA_TYPE_TX, DMA_TYPE_RX = 1, 0


class EmuDefaultIP:
    """pynq.DefaultIP: register access at the IP's base address (``description["device"]``
    is the simulated system: its DMA model keeps the clock)."""

    _drivers: dict[str, type] = {}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        for vlnv in getattr(cls, "bindto", []):
            EmuDefaultIP._drivers[vlnv] = cls

    def __init__(self, description):
        self.description = description
        self._system: "EmuSystem" = description["device"]
        self._sim: SimDevice = self._system.sim
        self.accesses = 0

    def read(self, offset=0):
        self.accesses += 1
        v = self._sim.read(offset)
        self._system.dma_model.advance()
        return v

    def write(self, offset, value):
        self.accesses += 1
        if not isinstance(value, (int, np.integer)):
            raise ValueError("register writes take integers")
        self._sim.write(offset, int(value))
        self._system.dma_model.advance()


class _ModelMMIO:
    """pynq.MMIO of the DMA: its reads and writes go to the register model."""

    def __init__(self, model: AxiDmaModel):
        self.model = model

    def read(self, offset=0, length=4):
        return self.model.read(offset)

    def write(self, offset, data):
        self.model.write(offset, int(data))


class EmuDMA:
    """pynq.lib.dma.DMA in simple mode (its __init__ / set_up_*_channel logic for
    c_include_sg=0, no interrupts): ``sendchannel`` and ``recvchannel`` are
    :class:`EmuSDMAChannel` on the model's registers."""

    def __init__(self, description):
        self.description = description
        if "device" in description:
            self.device = description["device"]
        else:
            raise RuntimeError("Device not specified in description")
        par = description["parameters"]
        self._sg = bool(int(par.get("c_include_sg", 0)))
        if self._sg or bool(int(par.get("c_micro_dma", 0))):
            raise RuntimeError("the emulation models simple mode only")
        self.buffer_max_size = (1 << int(par.get("c_sg_length_width", 26))) - 1
        self.mmio = _ModelMMIO(self.device.dma_model)
        self.sendchannel = EmuSDMAChannel(self.mmio, self.buffer_max_size,
                                          int(par["c_m_axi_mm2s_data_width"]) >> 3,
                                          DMA_TYPE_TX, bool(int(par.get("c_include_mm2s_dre", 0))))
        self.recvchannel = EmuSDMAChannel(self.mmio, self.buffer_max_size,
                                          int(par["c_m_axi_s2mm_data_width"]) >> 3,
                                          DMA_TYPE_RX, bool(int(par.get("c_include_s2mm_dre", 0))))

    # DefaultIP register access (the backend resets the DMA through these)
    def read(self, offset=0):
        return self.mmio.read(offset)

    def write(self, offset, value):
        self.mmio.write(offset, value)


class EmuSystem:
    """The simulated PL: the core and the DMA model sharing one clock and one memory."""

    def __init__(self, sim: SimDevice | None = None, access_cycles: int = 32):
        self.sim = sim or SimDevice(verbose=False)
        # a new system is a freshly configured PL: no stream of an earlier DMA goes on
        self.sim.src_abort()
        self.sim.snk_abort()
        self.memory = Memory()
        self.dma_model = AxiDmaModel(self.sim, self.memory, access_cycles=access_cycles)


def emu_ip_dict(system: EmuSystem, vlnv: str) -> dict:
    """The overlay's ip_dict entries, as PYNQ builds them from the .hwh (the parts used)."""
    cfg = system.sim.cfg
    # the DMA's memory-map side as wide as the wider stream, as overlay/ builds it
    # (a power of two, 32..1024 bits, as the AXI DMA offers; overlay/params.py refuses
    # builds whose stream widths the DMA cannot take, the emulation still runs them)
    mm_w = 32
    while mm_w < max(cfg.in_axis_bits, cfg.out_axis_bits):
        mm_w *= 2
    return {
        CORE_CELL: {"type": vlnv, "phys_addr": CORE_ADDR, "addr_range": 0x10000,
                    "device": system},
        DMA_CELL: {"type": "xilinx.com:ip:axi_dma:7.1", "phys_addr": DMA_ADDR,
                   "addr_range": 0x10000, "device": system, "interrupts": {},
                   "parameters": {"c_include_sg": "0", "c_sg_length_width": "26",
                                  "c_include_mm2s": "1", "c_include_s2mm": "1",
                                  "c_m_axi_mm2s_data_width": str(mm_w),
                                  "c_m_axi_s2mm_data_width": str(mm_w),
                                  "c_m_axis_mm2s_tdata_width": str(cfg.in_axis_bits),
                                  "c_s_axis_s2mm_tdata_width": str(cfg.out_axis_bits)}},
    }


class EmuOverlay:
    def __init__(self, bitfile, download=True, system: EmuSystem | None = None, core_vlnv=None):
        from .pynq_backend import CORE_VLNV
        self.bitfile_name = bitfile
        self.system = system or EmuSystem()
        self._sim = self.system.sim
        vlnv = core_vlnv or CORE_VLNV
        self.ip_dict = emu_ip_dict(self.system, vlnv)
        drv = EmuDefaultIP._drivers.get(vlnv)
        if drv is None:
            raise RuntimeError(f"no driver bound to {vlnv}")
        self._core = drv(self.ip_dict[CORE_CELL])
        self._dma = EmuDMA(self.ip_dict[DMA_CELL])

    def __getattr__(self, name):
        if name == CORE_CELL:
            return self._core
        if name == DMA_CELL:
            return self._dma
        raise AttributeError(name)


def make_pynq_module(sim: SimDevice | None = None, access_cycles: int = 32) -> types.SimpleNamespace:
    """A stand-in ``pynq`` module over the simulated hardware (one shared SimDevice; the
    overlay, its DMA model and the buffers share one simulated system)."""
    holder: dict[str, EmuSystem] = {}

    def system() -> EmuSystem:
        if "s" not in holder:
            holder["s"] = EmuSystem(sim, access_cycles=access_cycles)
        return holder["s"]

    def overlay(bitfile, download=True):
        return EmuOverlay(bitfile, download, system=system())

    def allocate(shape, dtype=np.uint8, **kw):
        return EmuBuffer(shape, dtype, memory=system().memory)

    return types.SimpleNamespace(DefaultIP=EmuDefaultIP, Overlay=overlay, allocate=allocate,
                                 system=system, __name__="intergrad.device.pynq_emu")
