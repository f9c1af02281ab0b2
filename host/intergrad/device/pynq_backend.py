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
from .base import (CoreError, Device, DeviceError, DeviceTimeout, describe_status, error_cause,
                   status_bit)

#: VLNV of the core in the block design (a module reference of hls_verilog/intergrad_top.v)
CORE_VLNV = "xilinx.com:module_ref:intergrad_top:1.0"
CORE_CELL = "intergrad_0"
DMA_CELL = "axi_dma_0"
#: AXI DMA buffer-length register width in the overlay (c_sg_length_width)
DMA_LENGTH_BITS = 26
#: AXI DMA registers (PG021, direct register mode): control and status of each channel
MM2S_DMACR, MM2S_DMASR, S2MM_DMACR, S2MM_DMASR = 0x00, 0x04, 0x30, 0x34
DMACR_RS, DMACR_RESET = 0x1, 0x4
DMASR_HALTED, DMASR_IDLE = 0x1, 0x2
#: DMASR internal / slave / decode error
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
        self._drainbuf = None
        # the DMA's buffer-length register (c_sg_length_width of the .hwh, as PYNQ's DMA
        # driver reads it): the largest transfer, where a pass is cut into queues
        self.max_transfer = int(getattr(self.dma, "buffer_max_size", (1 << DMA_LENGTH_BITS) - 1))

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
        for which in ("_inbuf", "_outbuf", "_drainbuf"):
            buf = getattr(self, which, None)
            if buf is not None:
                buf.freebuffer()
                setattr(self, which, None)

    # -- transfers --------------------------------------------------------------------
    #: bounds of the recovery sequence: seconds (and at least this many polls) for the DMA
    #: reset and for each drain, drain attempts
    reset_timeout = 0.5
    min_polls = 200
    drain_attempts = 4
    drain_beats = 64

    def transfer(self, data: bytes | np.ndarray, out_beats: int, timeout: float = 10.0) -> bytes:
        """See :meth:`Device.transfer`.  STATUS and both DMA channels are polled together,
        so a core error is raised as soon as STATUS shows it; PYNQ's ``wait()`` (unbounded)
        is only called on a channel that already reads idle, and ``stop()`` never."""
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
        st_off = spec.REG["STATUS"].offset
        busy_m, err_m = status_bit("BUSY"), status_bit("ERROR")
        failure = None
        try:
            if nout:
                outbuf = self._buffer("_outbuf", nout)
                recv.transfer(outbuf, nbytes=nout)
            send.transfer(inbuf, nbytes=nin)
        except RuntimeError as e:  # PYNQ: "DMA channel not started" / "not idle"
            failure = DeviceError(self._timeout_message(f"AXI DMA refused the transfer: {e}"))
        deadline = time.monotonic() + timeout
        while failure is None:
            word = self.read(st_off)
            if word & err_m:
                cause = error_cause(word)
                failure = CoreError(f"core reported {cause} "
                                    f"({spec.ERRORS.get(cause, (0, ''))[1]}); status: "
                                    f"{describe_status(word)}; DMA: {self._dma_state()}", cause)
                break
            s_sr = self.dma.read(MM2S_DMASR)
            r_sr = self.dma.read(S2MM_DMASR) if nout else DMASR_IDLE
            if (s_sr | r_sr) & DMA_ERROR_MASK:
                name = "MM2S" if s_sr & DMA_ERROR_MASK else "S2MM"
                failure = DeviceError(self._timeout_message(
                    f"AXI DMA {name} error ({self._dma_state()})"))
                break
            if s_sr & r_sr & DMASR_IDLE and not word & busy_m:
                break
            if time.monotonic() > deadline:
                failure = DeviceTimeout(self._timeout_message(
                    f"transfer not finished after {timeout:.1f} s ({self._dma_state()})"))
                break
            if self.poll_interval:
                time.sleep(self.poll_interval)
        if failure is None and nout:
            recv.wait()  # the channel reads idle: returns at once (invalidates, `transferred`)
            if recv.transferred != nout:
                failure = DeviceError(self._timeout_message(
                    f"the output frame ended after {recv.transferred} of {nout} bytes "
                    f"without a core error"))
        if failure is not None:
            try:
                self.recover()
            except DeviceError as e:
                raise DeviceError(f"{failure}\n  and the recovery failed: {e}") from failure
            raise failure
        if not nout:
            return b""
        return outbuf[:nout].tobytes()

    def _dma_state(self) -> str:
        try:
            return (f"MM2S DMASR=0x{self.dma.read(MM2S_DMASR):08X}, "
                    f"S2MM DMASR=0x{self.dma.read(S2MM_DMASR):08X}")
        except Exception as e:  # pragma: no cover
            return f"DMA unreadable: {e}"

    def _poll(self, cond, what: str) -> None:
        """Poll ``cond`` for at most reset_timeout seconds, and at least min_polls times."""
        t_end = time.monotonic() + self.reset_timeout
        n = 0
        while not cond():
            n += 1
            if n >= self.min_polls and time.monotonic() > t_end:
                raise DeviceError(f"recovery: {what} ({self._dma_state()}); reload the "
                                  f"overlay (hard reset)")

    def _reset_dma(self) -> None:
        """DMACR.Reset (resets both channels; self-clearing) with a bounded wait, then both
        channels restarted (RS=1) with a bounded wait; PYNQ's start() is called only once
        the channel runs, so its own unbounded wait returns at once."""
        self.dma.write(MM2S_DMACR, DMACR_RESET)
        self._poll(lambda: not self.dma.read(MM2S_DMACR) & DMACR_RESET,
                   "the AXI DMA reset did not complete")
        for cr in (MM2S_DMACR, S2MM_DMACR):
            self.dma.write(cr, DMACR_RS)
        self._poll(lambda: not (self.dma.read(MM2S_DMASR) | self.dma.read(S2MM_DMASR))
                   & DMASR_HALTED, "the AXI DMA channels did not start after the reset")
        for ch in (self.dma.sendchannel, self.dma.recvchannel):
            ch.start()  # running already: resets the driver's first-transfer state

    def recover(self) -> None:
        """The recovery sequence (docs/board.md): (1) soft-reset the core (its open frame
        ends with the abort beat, which completes a posted S2MM transfer); (2) reset the DMA
        (bounded); (3) while STATUS.OUT_PENDING, post a drain S2MM transfer and discard
        what it receives (bounded); (4) STATUS must read idle."""
        st_off = spec.REG["STATUS"].offset
        self.write(spec.REG["CTRL"].offset, spec.pack_fields("CTRL", SOFT_RESET=1))
        self._reset_dma()
        pend = status_bit("OUT_PENDING")
        ob = self.cfg.out_axis_bits // 8
        self.drained_bytes = 0
        recv = self.dma.recvchannel
        for _ in range(self.drain_attempts if pend else 0):
            if not self.read(st_off) & pend:
                break
            buf = self._buffer("_drainbuf", self.drain_beats * ob)
            recv.transfer(buf, nbytes=self.drain_beats * ob)
            self._poll(lambda: self.dma.read(S2MM_DMASR) & (DMASR_IDLE | DMA_ERROR_MASK),
                       "the drain transfer did not complete")
            if self.dma.read(S2MM_DMASR) & DMA_ERROR_MASK:
                self._reset_dma()  # more than a buffer without TLAST: reset, try again
            else:
                recv.wait()
                self.drained_bytes += recv.transferred
        word = self.read(st_off)
        idle = status_bit("BUSY") | status_bit("COMPUTING") | pend | status_bit("ERROR")
        if word & idle:
            raise DeviceError(f"the core is not idle after the recovery sequence: status "
                              f"{describe_status(word)}; reload the overlay (hard reset)")
