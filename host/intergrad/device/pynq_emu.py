"""The parts of the PYNQ API that :mod:`intergrad.device.pynq_backend` uses, on top of the
simulated hardware, so that the board backend's own logic (driver binding, register
sequences, buffer allocation, cache flush/invalidate, DMA start/poll/error/timeout handling)
runs and is tested with no board.

It is not PYNQ: it models only what the backend touches.  What it checks on the way:

* buffers have a CPU view (the numpy array) and a device view; ``flush()`` copies CPU ->
  device and ``invalidate()`` device -> CPU, so a missing flush sends stale data and a
  missing invalidate reads stale results, as on the board's non-coherent ACP/HP path;
* the S2MM channel must be armed before MM2S starts, or the core's output backpressure
  hangs the send channel (reported as a timeout);
* DMA status registers follow PG021 (bit 1 idle, bits 4-6 errors); lengths beyond the
  length register set an error.
"""
from __future__ import annotations

import types

import numpy as np

from .base import DeviceError
from .sim import SimDevice

CORE_CELL = "intergrad_0"
DMA_CELL = "axi_dma_0"
CORE_ADDR = 0x43C0_0000
DMA_ADDR = 0x4040_0000


class EmuBuffer(np.ndarray):
    """A pynq.allocate buffer: numpy array (CPU view) plus a separate device view."""

    _next_phys = 0x1600_0000

    def __new__(cls, shape, dtype=np.uint8):
        obj = np.zeros(shape, dtype=dtype).view(cls)
        obj.dev_mem = np.zeros(shape, dtype=dtype)
        obj.physical_address = EmuBuffer._next_phys
        EmuBuffer._next_phys += obj.nbytes + 4096
        obj.freed = False
        obj.flushes = 0
        obj.invalidates = 0
        return obj

    def __array_finalize__(self, obj):
        if obj is None:
            return
        self.dev_mem = getattr(obj, "dev_mem", None)
        self.physical_address = getattr(obj, "physical_address", 0)
        self.freed = getattr(obj, "freed", False)
        self.flushes = getattr(obj, "flushes", 0)
        self.invalidates = getattr(obj, "invalidates", 0)

    def flush(self):
        self.dev_mem[...] = np.asarray(self)
        self.flushes += 1

    def invalidate(self):
        np.asarray(self)[...] = self.dev_mem
        self.invalidates += 1

    def freebuffer(self):
        self.freed = True


class _Channel:
    def __init__(self, dma: "EmuDMA", name: str):
        self.dma = dma
        self.name = name
        self.status = 0x1  # halted until started
        self.armed = None
        self.transfers = 0
        self.start()

    # PG021 status bits
    @property
    def running(self):
        return (self.status & 0x1) == 0 and not self.idle

    @property
    def idle(self):
        return (self.status & 0x2) == 0x2

    @property
    def error(self):
        return (self.status & 0x70) != 0

    def start(self):
        self.status = 0x2  # running, idle

    def stop(self):
        self.status = 0x1 | 0x2
        self.armed = None

    def transfer(self, array, start=0, nbytes=0):
        if self.status & 0x1:
            raise RuntimeError(f"DMA {self.name} channel is not started")
        if getattr(array, "freed", False):
            raise RuntimeError("transfer from a freed buffer")
        nbytes = nbytes or array.nbytes
        if start + nbytes > array.nbytes or nbytes > self.dma.max_size:
            self.status |= 0x10  # DMAIntErr: length beyond buffer/register
            return
        self.status &= ~0x2  # busy
        self.armed = (array, start, nbytes)
        self.transfers += 1
        if self.name == "MM2S":
            self.dma._run()

    def wait(self):
        if self.error:
            raise RuntimeError(f"DMA {self.name} error 0x{self.status:02X}")
        if not self.idle:
            raise RuntimeError(f"DMA {self.name} would wait forever (emulated hang)")


class EmuDMA:
    """An AXI DMA (simple mode) whose streams are the simulated core's."""

    def __init__(self, sim: SimDevice, max_size: int = (1 << 26) - 1):
        self.sim = sim
        self.max_size = max_size
        self.sendchannel = _Channel(self, "MM2S")
        self.recvchannel = _Channel(self, "S2MM")

    def _run(self):
        s, r = self.sendchannel, self.recvchannel
        arr, start, nbytes = s.armed
        data = arr.dev_mem[start:start + nbytes].tobytes()
        ob = self.sim.cfg.out_axis_bits // 8
        out_beats = 0
        if r.armed is not None:
            out_beats = r.armed[2] // ob
        try:
            out = self.sim.transfer(data, out_beats, timeout=0.5)
        except DeviceError:
            # the stream did not complete (output nobody reads, or the core hung): both
            # channels stay busy, as a real DMA would
            return
        s.status |= 0x2
        s.armed = None
        if r.armed is not None:
            rarr, rstart, _ = r.armed
            rarr.dev_mem[rstart:rstart + len(out)] = np.frombuffer(out, dtype=np.uint8)
            r.status |= 0x2
            r.armed = None


class EmuDefaultIP:
    """pynq.DefaultIP: register access at the IP's base address."""

    _drivers: dict[str, type] = {}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        for vlnv in getattr(cls, "bindto", []):
            EmuDefaultIP._drivers[vlnv] = cls

    def __init__(self, description):
        self.description = description
        self._sim: SimDevice = description["_sim"]
        self.accesses = 0

    def read(self, offset=0):
        self.accesses += 1
        return self._sim.read(offset)

    def write(self, offset, value):
        self.accesses += 1
        if not isinstance(value, (int, np.integer)):
            raise ValueError("register writes take integers")
        self._sim.write(offset, int(value))


class EmuOverlay:
    def __init__(self, bitfile, download=True, sim: SimDevice | None = None, core_vlnv=None):
        from .pynq_backend import CORE_VLNV
        self.bitfile_name = bitfile
        self._sim = sim or SimDevice(verbose=False)
        vlnv = core_vlnv or CORE_VLNV
        self.ip_dict = {
            CORE_CELL: {"type": vlnv, "phys_addr": CORE_ADDR, "addr_range": 0x10000,
                        "_sim": self._sim},
            DMA_CELL: {"type": "xilinx.com:ip:axi_dma:7.1", "phys_addr": DMA_ADDR,
                       "addr_range": 0x10000},
        }
        drv = EmuDefaultIP._drivers.get(vlnv)
        if drv is None:
            raise RuntimeError(f"no driver bound to {vlnv}")
        self._core = drv(self.ip_dict[CORE_CELL])
        self._dma = EmuDMA(self._sim)

    def __getattr__(self, name):
        if name == CORE_CELL:
            return self._core
        if name == DMA_CELL:
            return self._dma
        raise AttributeError(name)


def make_pynq_module(sim: SimDevice | None = None) -> types.SimpleNamespace:
    """A stand-in ``pynq`` module over the simulated hardware (one shared SimDevice)."""
    shared = sim

    def overlay(bitfile, download=True):
        return EmuOverlay(bitfile, download, sim=shared)

    def allocate(shape, dtype=np.uint8, **kw):
        return EmuBuffer(shape, dtype)

    return types.SimpleNamespace(DefaultIP=EmuDefaultIP, Overlay=overlay, allocate=allocate,
                                 __name__="intergrad.device.pynq_emu")
