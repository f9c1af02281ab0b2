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
        self._task = cocotb.start_soon(self._run())

    # ------------------------------------------------------------------ checks
    def _fail(self, msg: str):
        text = f"AXI4-Stream {self.name}, cycle {self.cycle}: {msg}"
        self.errors.append(text)
        raise ProtocolError(text)

    async def _run(self):
        pending = None        # (tdata, tlast) of a beat offered and not accepted
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
                pending = None
                # an open frame is cut by a hard reset; forget it
                self.open_beats = []
                in_reset_prev = True
                continue
            in_reset_prev = False
            if not _known(valid):
                self._fail(f"TVALID is {valid} (X/Z) out of reset")
            if not int(valid):
                if pending is not None:
                    self._fail(f"TVALID dropped without a handshake (beat {self.beats} pending: "
                               f"tdata=0x{pending[0]:x} tlast={pending[1]})")
                continue
            data = self.tdata.value
            last = self.tlast.value if self.tlast is not None else 1
            if not _known(last):
                self._fail(f"TLAST is {last} (X/Z) with TVALID high")
            beat = (_as_int(data), int(last))
            if pending is not None and beat != pending:
                self._fail(f"beat changed while waiting for TREADY: "
                           f"tdata 0x{pending[0]:x}->0x{beat[0]:x}, tlast {pending[1]}->{beat[1]}")
            ready = self.tready.value
            if not _known(ready):
                self._fail(f"TREADY is {ready} (X/Z) with TVALID high")
            if int(ready):
                self.beats += 1
                pending = None
                self.open_beats.append(beat if self.keep_data else (0, beat[1]))
                if beat[1]:
                    self.frames.append(self.open_beats)
                    self.open_beats = []
            else:
                pending = beat

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
