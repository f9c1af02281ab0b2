"""AXI4-Stream protocol monitor (ARM IHI 0051) for cocotb testbenches.

Watches one stream interface (``<prefix>_tvalid``, ``_tready``, ``_tdata``, ``_tlast``) on
every rising clock edge and checks, whoever drives it:

* TVALID is never X/Z out of reset (and TREADY, TDATA, TLAST are known while TVALID is high);
* once TVALID is high it stays high, with TDATA and TLAST unchanged, until the cycle in
  which TREADY is high (the handshake): a master may not withdraw a beat or change it;
* TVALID is low while reset is held (from the second reset cycle on: the reset is
  synchronous, so the first reset edge is where the master clears it).

A violation raises :class:`ProtocolError` from the monitor's task, which fails the running
cocotb test at the cycle it happens (and is also kept in ``errors``).

Frame accounting: every handshaken beat is counted; a beat with TLAST closes a frame.
``frames`` lists the closed frames (each a list of (tdata, tlast) beats as ints),
``open_beats`` the beats of the frame still open.  :meth:`expect_frames` asserts that
exactly ``n`` frames were closed since a mark and that none is left open: the per-job
check that every job produced exactly one frame ending with TLAST.
"""
from __future__ import annotations

import cocotb
from cocotb.triggers import RisingEdge


class ProtocolError(AssertionError):
    """A bus protocol rule was broken (the message names the rule, bus and cycle)."""


def _known(v) -> bool:
    try:
        return v.is_resolvable
    except AttributeError:  # plain int / bool
        return True


def _as_int(v) -> int:
    return int(v) if _known(v) else -1


class AxisMonitor:
    """Protocol monitor of one AXI4-Stream interface; starts itself."""

    def __init__(self, dut, prefix: str, clk, rst=None, name: str | None = None,
                 keep_data: bool = True):
        self.name = name or prefix
        self.clk = clk
        self.rst = rst
        self.tvalid = getattr(dut, f"{prefix}_tvalid")
        self.tready = getattr(dut, f"{prefix}_tready")
        self.tdata = getattr(dut, f"{prefix}_tdata")
        self.tlast = getattr(dut, f"{prefix}_tlast", None)
        self.keep_data = keep_data
        self.errors: list[str] = []
        self.frames: list[list[tuple[int, int]]] = []
        self.open_beats: list[tuple[int, int]] = []
        self.beats = 0
        self.cycle = 0
        self.resets = 0            # reset cycles seen
        self.master_resets = 0
        self._pending = None
        self._task = cocotb.start_soon(self._run())

    # ------------------------------------------------------------------ checks
    def _fail(self, msg: str):
        text = f"AXI4-Stream {self.name}, cycle {self.cycle}: {msg}"
        self.errors.append(text)
        raise ProtocolError(text)

    def master_reset(self):
        """The master resets its side (a DMA channel reset), withdrawing a beat it offered:
        the one exemption from the hold rule outside the core's reset, made explicit by the
        test that does it.  Counted in ``master_resets``; an open frame is forgotten."""
        self.master_resets += 1
        self._pending = None
        self.open_beats = []

    async def _run(self):
        self._pending = None        # (tdata, tlast) of a beat offered and not accepted
        in_reset_prev = False
        while True:
            await RisingEdge(self.clk)
            self.cycle += 1
            rst = self.rst is not None and _known(self.rst.value) and int(self.rst.value) == 1
            valid = self.tvalid.value
            if rst:
                self.resets += 1
                # a synchronous reset clears TVALID at its first edge: from the second on
                # it must be low
                if in_reset_prev and (not _known(valid) or int(valid)):
                    self._fail("TVALID not low during reset")
                self._pending = None
                # an open frame is cut by a hard reset; forget it
                self.open_beats = []
                in_reset_prev = True
                continue
            in_reset_prev = False
            if not _known(valid):
                self._fail(f"TVALID is {valid} (X/Z) out of reset")
            if not int(valid):
                if self._pending is not None:
                    self._fail(f"TVALID dropped without a handshake (beat {self.beats} pending: "
                               f"tdata=0x{self._pending[0]:x} tlast={self._pending[1]})")
                continue
            data = self.tdata.value
            last = self.tlast.value if self.tlast is not None else 1
            if not _known(last):
                self._fail(f"TLAST is {last} (X/Z) with TVALID high")
            beat = (_as_int(data), int(last))
            if self._pending is not None and beat != self._pending:
                self._fail(f"beat changed while waiting for TREADY: tdata "
                           f"0x{self._pending[0]:x}->0x{beat[0]:x}, "
                           f"tlast {self._pending[1]}->{beat[1]}")
            ready = self.tready.value
            if not _known(ready):
                self._fail(f"TREADY is {ready} (X/Z) with TVALID high")
            if int(ready):
                self.beats += 1
                self._pending = None
                self.open_beats.append(beat if self.keep_data else (0, beat[1]))
                if beat[1]:
                    self.frames.append(self.open_beats)
                    self.open_beats = []
            else:
                self._pending = beat

    # ----------------------------------------------------------- frame accounting
    def mark(self) -> int:
        """A mark for :meth:`expect_frames` (the number of frames closed so far)."""
        return len(self.frames)

    def frames_since(self, mark: int) -> list[list[tuple[int, int]]]:
        return self.frames[mark:]

    def expect_frames(self, n: int, mark: int = 0, what: str = "") -> list:
        """Exactly ``n`` frames closed since ``mark``, and no frame left open."""
        got = self.frames[mark:]
        assert len(got) == n, (
            f"AXI4-Stream {self.name}: {what} expected {n} frame(s) ending with TLAST, "
            f"got {len(got)} (lengths {[len(f) for f in got]}), {len(self.open_beats)} "
            f"beat(s) of an unterminated frame")
        assert not self.open_beats, (
            f"AXI4-Stream {self.name}: {what} {len(self.open_beats)} beat(s) without TLAST "
            f"after the last frame")
        return got

    def check(self):
        """Raise if any violation was seen (the monitor's task also raises at once)."""
        if self.errors:
            raise ProtocolError("; ".join(self.errors))

    def stop(self):
        self._task.cancel()


def random_skew(rng, p_start: float, max_run: int):
    """Pause generator for cocotbext-axi channels: with probability ``p_start`` per cycle a
    pause of 1..max_run cycles starts, and every pause is followed by at least one free
    cycle, so no transfer waits more than ``max_run`` cycles (tests that count cycles around
    register accesses stay within their bounds).  Set on AW and W separately, it makes AW
    and W come in either order with random skew; on B/R (sinks) it holds BREADY/RREADY low."""
    while True:
        if rng.random() < p_start:
            for _ in range(rng.randint(1, max_run)):
                yield 1
        yield 0


def start_monitors(dut, clk=None, rst=None):
    """Start the protocol monitors of intergrad_top: (s_axis, m_axis, s_axil)."""
    from axil_monitor import AxilMonitor
    clk = dut.clk if clk is None else clk
    rst = dut.rst if rst is None else rst
    return (AxisMonitor(dut, "s_axis", clk, rst), AxisMonitor(dut, "m_axis", clk, rst),
            AxilMonitor(dut, "s_axil", clk, rst))
