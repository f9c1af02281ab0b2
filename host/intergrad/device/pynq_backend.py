"""The board backend: the intergrad overlay on a PYNQ-Z2, through PYNQ's documented API.

* :func:`core_driver_class` builds a ``pynq.DefaultIP`` subclass bound to the core's VLNV,
  with a named register table taken from :mod:`intergrad.spec`;
* :class:`PynqDevice` owns the overlay, the core and its AXI DMA; it allocates one input
  and one output buffer with ``pynq.allocate`` (grown only when a larger transfer comes),
  flushes the input before the DMA reads it and invalidates the output after the DMA wrote
  it, and turns DMA errors and timeouts into :class:`DeviceError` / :class:`DeviceTimeout`
  carrying the core's status and counters.

``pynq`` is imported lazily (it is installed only on the board).  Without a board the same
code runs against :mod:`intergrad.device.pynq_emu`, which offers the parts of the PYNQ API
used here on top of the simulated hardware; docs/board.md lists what has only run that way.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .. import spec
from .base import Device, DeviceError, DeviceTimeout

#: VLNV of the core in the block design (a module reference of hls_verilog/intergrad_top.v)
CORE_VLNV = "xilinx.com:module_ref:intergrad_top:1.0"
CORE_CELL = "intergrad_0"
DMA_CELL = "axi_dma_0"
#: AXI DMA buffer-length register width in the overlay (c_sg_length_width)
DMA_LENGTH_BITS = 26
#: AXI DMA status register bits (PG021): halted, idle, internal / slave / decode error
DMA_ERROR_MASK = 0x70

_DRIVER_CACHE: dict[int, type] = {}


def default_bitfile() -> Path:
    """overlay/intergrad.bit next to the source tree (where ``make`` in overlay/ puts it)."""
    return Path(__file__).resolve().parents[3] / "overlay" / "intergrad.bit"


def core_driver_class(pynq_mod) -> type:
    """The DefaultIP subclass for the core, created once per pynq module (creating a
    subclass with ``bindto`` registers it with PYNQ's driver lookup)."""
    key = id(pynq_mod)
    if key in _DRIVER_CACHE:
        return _DRIVER_CACHE[key]

    class IntergradCore(pynq_mod.DefaultIP):
        """intergrad_top: WS / OS / InterGrad systolic array core."""

        bindto = [CORE_VLNV]
        #: named register table (byte offsets), from intergrad.spec
        REGISTERS = {r.name: r.offset for r in spec.REGISTERS}
        COUNTERS = {name: spec.COUNTER_BASE + 8 * i for i, (name, _) in enumerate(spec.COUNTERS)}

        def __init__(self, description):
            super().__init__(description=description)

        def read_reg(self, name: str) -> int:
            return self.read(self.REGISTERS[name])

        def write_reg(self, name: str, value: int) -> None:
            self.write(self.REGISTERS[name], value)

    _DRIVER_CACHE[key] = IntergradCore
    return IntergradCore


def _import_pynq():
    try:
        import pynq  # type: ignore
    except ImportError as e:
        raise DeviceError("the pynq backend needs the pynq package, which is installed on "
                          "PYNQ board images (pip install -e '.[board]' on the board); with no "
                          "board use --backend sim") from e
    return pynq


class PynqDevice(Device):
    """The core and its DMA in a PYNQ overlay, behind the Device API."""

    backend = "pynq"

    def __init__(self, bitfile: str | Path | None = None, download: bool = True,
                 pynq_module=None, poll_interval: float = 0.0):
        pq = pynq_module if pynq_module is not None else _import_pynq()
        self._pynq = pq
        core_driver_class(pq)  # register the driver before the overlay binds its IPs
        bitfile = Path(bitfile) if bitfile is not None else default_bitfile()
        if pynq_module is None and not bitfile.is_file():
            raise DeviceError(f"overlay bitstream {bitfile} not found: build it with `make` in "
                              f"overlay/ (Vivado) and copy intergrad.bit and intergrad.hwh there, "
                              f"or pass bitfile=")
        self.overlay = pq.Overlay(str(bitfile), download=download)
        names = set(self.overlay.ip_dict)
        for cell in (CORE_CELL, DMA_CELL):
            if cell not in names:
                raise DeviceError(f"overlay {bitfile.name} has no '{cell}' (has: "
                                  f"{', '.join(sorted(names))})")
        self.core = getattr(self.overlay, CORE_CELL)
        self.dma = getattr(self.overlay, DMA_CELL)
        if self.core.read_reg("ID") != spec.ID_MAGIC:
            raise DeviceError(f"'{CORE_CELL}' does not read back the intergrad ID")
        self.cfg = spec.config_from_registers(self.core.read_reg("CFG_ARRAY"),
                                              self.core.read_reg("CFG_WIDTH"))
        self.poll_interval = poll_interval
        self._inbuf = None
        self._outbuf = None
        self.max_transfer = (1 << DMA_LENGTH_BITS) - 1

    # -- registers ------------------------------------------------------------------
    def read(self, offset: int) -> int:
        return int(self.core.read(offset))

    def write(self, offset: int, value: int) -> None:
        self.core.write(offset, int(value) & 0xFFFFFFFF)

    # -- buffers ----------------------------------------------------------------------
    def _buffer(self, which: str, nbytes: int):
        buf = getattr(self, which)
        if buf is None or buf.shape[0] < nbytes:
            if buf is not None:
                buf.freebuffer()
            size = max(nbytes, 1 << 16)
            buf = self._pynq.allocate(shape=(size,), dtype=np.uint8)
            setattr(self, which, buf)
        return buf

    def close(self) -> None:
        for which in ("_inbuf", "_outbuf"):
            buf = getattr(self, which, None)
            if buf is not None:
                buf.freebuffer()
                setattr(self, which, None)

    # -- transfers --------------------------------------------------------------------
    def transfer(self, data: bytes | np.ndarray, out_beats: int, timeout: float = 10.0) -> bytes:
        cfg = self.cfg
        ib, ob = cfg.in_axis_bits // 8, cfg.out_axis_bits // 8
        src = np.frombuffer(bytes(data) if not isinstance(data, bytes) else data, dtype=np.uint8)
        nin, nout = src.size, out_beats * ob
        if nin % ib or nin == 0:
            raise ValueError(f"input of {nin} bytes is not a positive whole number of "
                             f"{ib}-byte beats")
        for what, n in (("input", nin), ("output", nout)):
            if n > self.max_transfer:
                raise ValueError(f"{what} transfer of {n} bytes exceeds the DMA's "
                                 f"{DMA_LENGTH_BITS}-bit length register; split the job")
        inbuf = self._buffer("_inbuf", nin)
        inbuf[:nin] = src
        inbuf.flush()
        send, recv = self.dma.sendchannel, self.dma.recvchannel
        if nout:
            outbuf = self._buffer("_outbuf", nout)
            recv.transfer(outbuf, nbytes=nout)
        send.transfer(inbuf, nbytes=nin)
        deadline = time.monotonic() + timeout
        channels = [("MM2S", send)] + ([("S2MM", recv)] if nout else [])
        for name, ch in channels:
            while not ch.idle:
                if ch.error:
                    self._reset_dma()
                    raise DeviceError(self._timeout_message(f"AXI DMA {name} error"))
                if time.monotonic() > deadline:
                    self._reset_dma()
                    raise DeviceTimeout(self._timeout_message(
                        f"AXI DMA {name} not finished after {timeout:.1f} s"))
                if self.poll_interval:
                    time.sleep(self.poll_interval)
        while self.read(spec.REG["STATUS"].offset) & 1:
            if time.monotonic() > deadline:
                raise DeviceTimeout(self._timeout_message(
                    f"core still busy {timeout:.1f} s after its streams finished"))
        if not nout:
            return b""
        outbuf.invalidate()
        return outbuf[:nout].tobytes()

    def _reset_dma(self) -> None:
        """Stop both channels (a DMA halted mid-transfer needs a reset before reuse)."""
        for ch in (self.dma.sendchannel, self.dma.recvchannel):
            try:
                ch.stop()
                ch.start()
            except Exception:  # pragma: no cover - best effort on a wedged DMA
                pass
