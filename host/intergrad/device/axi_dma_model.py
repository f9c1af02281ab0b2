"""A register-level model of the Xilinx AXI DMA (PG021 v7.1) in direct register (simple)
mode, whose two streams are the simulated core's (:class:`intergrad.device.sim.SimDevice`).

It models what a driver sees through the registers, as PG021 describes them:

==========  ======  ==================================================================
offset      name    modelled
==========  ======  ==================================================================
0x00/0x30   DMACR   RS (bit 0), reserved bit 1 reads 1, Reset (bit 2, self-clearing,
                    resets *both* channels), IOC_IrqEn (12), Err_IrqEn (14); IRQThreshold
                    reads its reset value 1 (bits 23:16)
0x04/0x34   DMASR   Halted (0), Idle (1), DMAIntErr (4), DMASlvErr (5), DMADecErr (6),
                    IOC_Irq (12, R/WC), Err_Irq (14, R/WC)
0x18/0x48   SA/DA   source / destination address, low word (0x1C/0x4C the high word)
0x28/0x58   LENGTH  writing a non-zero value starts the transfer; S2MM_LENGTH then reads
                    the bytes actually received when the transfer has completed
==========  ======  ==================================================================

Behaviour (PG021 "Direct Register Mode" and the register tables):

* RS=1 starts the channel: Halted=0; Idle stays 0 until a first transfer completes
  ("This bit is also 0 prior to initial transfer when AXI DMA configured for Direct Register
  Mode").  Writing LENGTH while halted has no effect.
* RS=0 stops the channel "when current (if any) DMA operations are complete": a transfer in
  flight keeps going, Halted only rises when it completes.  An S2MM transfer whose TLAST
  never comes therefore never halts (what makes PYNQ's ``stop()`` spin forever).  Idle reads
  0 while halted.
* MM2S sends LENGTH bytes as whole stream beats, TLAST on the last; it completes when the
  core has accepted the last beat (Idle=1, IOC_Irq=1).
* S2MM completes at TLAST: the received bytes are in memory, LENGTH reads their number,
  Idle=1, IOC_Irq=1.  A packet larger than the buffer (the buffer fills before TLAST;
  PG021 calls this undefined, the IP reports it as an internal error) sets DMAIntErr and
  Err_Irq, clears RS and halts the channel; the bytes received so far are in memory.
* An address outside every allocated buffer sets DMADecErr (decode error) and halts.
* DMACR.Reset on either channel resets the whole DMA: the streams are abandoned (TVALID
  dropped, as a master may in reset; TREADY low), then after ``reset_cycles`` all registers
  return to their reset values and the bit reads 0 again.

Time: every register access (the DMA's and, through :mod:`pynq_emu`, the core's) lets
``access_cycles`` clock cycles pass, during which the streams flow cycle by cycle in the
C++ harness; a driver that polls therefore sees transfers progress as on the board (one
MMIO access from Python on the Zynq's ARM takes some hundreds of 100 MHz cycles; the
default is shorter, to keep the tests fast).

Not modelled: scatter-gather, micro mode, DRE (unaligned addresses are the driver's
check), TKEEP (lengths that are not whole beats are padded with zeros on MM2S), interrupts
(the overlay wires none), AXI slave errors (no memory errors), the delay timer, keyhole and
cyclic bits, multichannel.
"""
from __future__ import annotations

import dataclasses

import numpy as np

# register offsets (PG021 Table "Direct Register Mode Register Address Map")
MM2S_DMACR, MM2S_DMASR, MM2S_SA, MM2S_SA_MSB, MM2S_LENGTH = 0x00, 0x04, 0x18, 0x1C, 0x28
S2MM_DMACR, S2MM_DMASR, S2MM_DA, S2MM_DA_MSB, S2MM_LENGTH = 0x30, 0x34, 0x48, 0x4C, 0x58

# DMACR bits
CR_RS, CR_RESET, CR_IOC_IRQEN, CR_ERR_IRQEN = 1 << 0, 1 << 2, 1 << 12, 1 << 14
CR_RESERVED_ONE = 1 << 1
CR_IRQTHRESHOLD_RESET = 1 << 16
# DMASR bits
SR_HALTED, SR_IDLE = 1 << 0, 1 << 1
SR_INTERR, SR_SLVERR, SR_DECERR = 1 << 4, 1 << 5, 1 << 6
SR_IOC_IRQ, SR_DLY_IRQ, SR_ERR_IRQ = 1 << 12, 1 << 13, 1 << 14
SR_ERRORS = SR_INTERR | SR_SLVERR | SR_DECERR


class EmulatedHang(RuntimeError):
    """A driver spun on the model for longer than its ``spin_limit`` accesses allow (on the
    board it would spin forever)."""


class Memory:
    """The physical address space the DMA sees: allocated buffers by physical address."""

    def __init__(self):
        self._bufs: list[tuple[int, np.ndarray]] = []

    def add(self, phys: int, dev_mem: np.ndarray) -> None:
        self._bufs.append((phys, dev_mem.reshape(-1).view(np.uint8)))

    def remove(self, phys: int) -> None:
        self._bufs = [(p, b) for p, b in self._bufs if p != phys]

    def find(self, addr: int, nbytes: int):
        """(buffer bytes, offset) holding [addr, addr+nbytes), or None (decode error)."""
        for phys, b in self._bufs:
            if phys <= addr and addr + nbytes <= phys + b.size:
                return b, addr - phys
        return None


@dataclasses.dataclass
class _Chan:
    name: str
    cr: int = CR_RESERVED_ONE | CR_IRQTHRESHOLD_RESET
    sr: int = SR_HALTED
    addr_lo: int = 0
    addr_hi: int = 0
    length: int = 0
    busy: bool = False          # a transfer is in flight
    stage: np.ndarray | None = None
    dest: tuple | None = None   # (memory bytes, offset) of the S2MM buffer
    transfers: int = 0

    @property
    def addr(self) -> int:
        return (self.addr_hi << 32) | self.addr_lo


class AxiDmaModel:
    """See the module docstring.  ``read``/``write`` take byte offsets like an MMIO."""

    def __init__(self, sim, memory: Memory | None = None, length_bits: int = 26,
                 access_cycles: int = 32, reset_cycles: int = 100):
        self.sim = sim
        self.mem = memory or Memory()
        self.length_mask = (1 << length_bits) - 1
        self.access_cycles = access_cycles
        self.reset_cycles = reset_cycles
        self.ib = sim.cfg.in_axis_bits // 8
        self.ob = sim.cfg.out_axis_bits // 8
        self.mm2s = _Chan("MM2S")
        self.s2mm = _Chan("S2MM")
        self._reset_until = None   # sim cycle at which a soft reset completes
        self.accesses = 0
        self.spin_limit: int | None = None  # raise EmulatedHang after this many accesses
        self.log: list[str] = []   # notable events (errors, ignored writes), for tests
        self.resets = 0

    # -- time -------------------------------------------------------------------------------
    def advance(self, cycles: int | None = None) -> None:
        """Let clock cycles pass (the streams flow), then update the register state."""
        self.accesses += 1
        if self.spin_limit is not None and self.accesses > self.spin_limit:
            raise EmulatedHang(f"more than {self.spin_limit} register accesses: a driver is "
                               f"spinning on the DMA (on the board: forever)")
        n = self.access_cycles if cycles is None else cycles
        if n:
            self.sim.run(n, stop=0)
        self._sync()

    def _sync(self) -> None:
        if self._reset_until is not None:
            if self.sim.cycle >= self._reset_until:
                self._reset_until = None
                self.mm2s = _Chan("MM2S", transfers=self.mm2s.transfers)
                self.s2mm = _Chan("S2MM", transfers=self.s2mm.transfers)
            return
        st = self.sim.stream_state()
        m = self.mm2s
        if m.busy and not st["src_active"]:
            self._complete(m)
        s = self.s2mm
        if s.busy:
            if st["snk_tlast"] and not st["snk_active"]:
                nbytes = st["snk_beats"] * self.ob
                self._store(s, nbytes)
                s.length = nbytes
                self._complete(s)
            elif st["snk_overflow"]:
                self._store(s, st["snk_beats"] * self.ob)
                self.sim.snk_abort()
                self._error(s, SR_INTERR, "buffer full before TLAST")

    def _store(self, ch: _Chan, nbytes: int) -> None:
        mem, off = ch.dest
        mem[off:off + nbytes] = ch.stage[:nbytes]

    def _complete(self, ch: _Chan) -> None:
        ch.busy = False
        ch.stage = None if ch is self.mm2s else ch.stage
        ch.sr |= SR_IOC_IRQ
        if ch.cr & CR_RS:
            ch.sr |= SR_IDLE
        else:  # a stop was pending: the channel halts now that its transfer completed
            ch.sr = (ch.sr | SR_HALTED) & ~SR_IDLE

    def _error(self, ch: _Chan, bit: int, why: str) -> None:
        ch.busy = False
        ch.sr = (ch.sr | bit | SR_ERR_IRQ | SR_HALTED) & ~SR_IDLE
        ch.cr &= ~CR_RS
        self.log.append(f"{ch.name}: {why}")

    # -- registers ----------------------------------------------------------------------------
    def _chan(self, offset: int) -> tuple[_Chan, int]:
        return (self.mm2s, offset) if offset < 0x30 else (self.s2mm, offset - 0x30)

    def read(self, offset: int) -> int:
        self.advance()
        ch, reg = self._chan(offset)
        if reg == 0x00:
            return ch.cr | (CR_RESET if self._reset_until is not None else 0)
        if reg == 0x04:
            return ch.sr
        if reg == 0x18:
            return ch.addr_lo
        if reg == 0x1C:
            return ch.addr_hi
        if reg == 0x28:
            return ch.length
        return 0

    def write(self, offset: int, value: int) -> None:
        self.advance()
        value = int(value) & 0xFFFFFFFF
        if self._reset_until is not None:
            self.log.append(f"write 0x{offset:02X} during reset ignored")
            return
        ch, reg = self._chan(offset)
        if reg == 0x00:
            if value & CR_RESET:
                self._soft_reset()
                return
            self._write_cr(ch, value)
        elif reg == 0x04:
            ch.sr &= ~(value & (SR_IOC_IRQ | SR_DLY_IRQ | SR_ERR_IRQ))  # R/WC
        elif reg == 0x18:
            ch.addr_lo = value
        elif reg == 0x1C:
            ch.addr_hi = value
        elif reg == 0x28:
            self._write_length(ch, value & self.length_mask)

    def _write_cr(self, ch: _Chan, value: int) -> None:
        keep = CR_RS | CR_IOC_IRQEN | CR_ERR_IRQEN
        ch.cr = (ch.cr & ~keep) | (value & keep)
        if value & CR_RS:
            if ch.sr & SR_HALTED and not ch.sr & SR_ERRORS:
                ch.sr &= ~SR_HALTED  # running; Idle stays as it was (0 before a transfer)
        elif not ch.busy:
            ch.sr = (ch.sr | SR_HALTED) & ~SR_IDLE
        # else: halts when the transfer in flight completes (see _complete)

    def _write_length(self, ch: _Chan, length: int) -> None:
        if ch.sr & SR_HALTED:
            self.log.append(f"{ch.name}: LENGTH written while halted: no effect")
            return
        if ch.busy:
            self.log.append(f"{ch.name}: LENGTH written during a transfer: ignored")
            return
        if length == 0:
            return
        ch.length = length
        where = self.mem.find(ch.addr, length)
        if where is None:
            self._error(ch, SR_DECERR, f"address 0x{ch.addr:X}+{length} not mapped")
            return
        mem, off = where
        ch.busy = True
        ch.sr &= ~SR_IDLE
        ch.transfers += 1
        if ch is self.mm2s:
            beats = -(-length // self.ib)
            stage = np.zeros(beats * self.ib, dtype=np.uint8)
            stage[:length] = mem[off:off + length]
            ch.stage = stage
            self.sim.src_post(stage, beats, tlast=True)
        else:
            beats = length // self.ob
            ch.stage = np.zeros(max(beats, 1) * self.ob, dtype=np.uint8)
            ch.dest = where
            self.sim.snk_post(ch.stage, beats)

    def _soft_reset(self) -> None:
        """DMACR.Reset: both channels; the streams are abandoned at once, the registers
        return to their reset values ``reset_cycles`` later (the bit reads 1 meanwhile)."""
        self.resets += 1
        self.sim.src_abort()
        self.sim.snk_abort()
        self.mm2s.busy = self.s2mm.busy = False
        self._reset_until = self.sim.cycle + self.reset_cycles
        self.log.append("soft reset")
