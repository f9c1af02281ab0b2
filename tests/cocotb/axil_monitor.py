"""AXI4-Lite protocol monitor (ARM IHI 0022, AXI4-Lite subset) for cocotb testbenches.

Watches the five channels of one AXI4-Lite interface (``<prefix>_aw*``, ``_w*``, ``_b*``,
``_ar*``, ``_r*``) on every rising clock edge and checks:

Master side (our own master's sanity): AWVALID, WVALID, ARVALID stay high, with AWADDR /
WDATA+WSTRB / ARADDR unchanged, until their READY.

Slave side: BVALID and RVALID stay high, with BRESP / RDATA+RRESP unchanged, until BREADY /
RREADY; no write response before both the address and the data of that write were
accepted, no read data before its address was accepted (no response without a request);
at most ``max_outstanding`` accepted-but-unanswered requests per channel (default 2:
intergrad_axil_regs holds one further address/data while the previous response waits for
its READY, and no more); VALID and READY outputs are never X/Z out of reset, and VALIDs are low while reset is
held (from the second reset cycle on).

A violation raises :class:`ProtocolError` from the monitor's task, failing the running test
at that cycle; ``errors`` keeps the messages.  ``writes`` / ``reads`` count completed
transactions, and ``aw_first`` / ``w_first`` / ``aw_w_same`` count in which order AW and W
were accepted (so a test can assert both orders were exercised).
"""
from __future__ import annotations

import cocotb
from cocotb.triggers import RisingEdge

from axis_monitor import ProtocolError, _as_int, _known


class _Chan:
    """VALID/READY handshake of one channel with the payload that must stay stable."""

    def __init__(self, mon, dut, prefix, ch, payload, side):
        self.mon = mon
        self.ch = ch.upper()
        self.side = side
        self.valid = getattr(dut, f"{prefix}_{ch}valid")
        self.ready = getattr(dut, f"{prefix}_{ch}ready")
        self.payload = [(p, getattr(dut, f"{prefix}_{p}")) for p in payload
                        if hasattr(dut, f"{prefix}_{p}")]
        self.pending = None
        self.count = 0

    def sample(self) -> bool:
        """Check this edge; True if a handshake happened at it."""
        v = self.valid.value
        r = self.ready.value
        if not _known(v):
            self.mon._fail(f"{self.ch}VALID is {v} (X/Z) out of reset")
        if not _known(r):
            self.mon._fail(f"{self.ch}READY is {r} (X/Z) out of reset")
        if not int(v):
            if self.pending is not None:
                self.mon._fail(f"{self.ch}VALID ({self.side}) dropped without {self.ch}READY "
                               f"(payload {self._fmt(self.pending)})")
            return False
        pl = tuple(_as_int(h.value) for _, h in self.payload)
        if self.side == "slave" and any(x < 0 for x in pl):
            self.mon._fail(f"{self.ch} payload has X/Z with {self.ch}VALID high: {self._fmt(pl)}")
        if self.pending is not None and pl != self.pending:
            self.mon._fail(f"{self.ch} payload changed while {self.ch}VALID waits for "
                           f"{self.ch}READY: {self._fmt(self.pending)} -> {self._fmt(pl)}")
        if int(r):
            self.pending = None
            self.count += 1
            return True
        self.pending = pl
        return False

    def _fmt(self, pl):
        return ", ".join(f"{n}=0x{x:x}" if x >= 0 else f"{n}=X" for (n, _), x in
                         zip(self.payload, pl))

    def reset(self):
        self.pending = None


class AxilMonitor:
    """Protocol monitor of one AXI4-Lite slave interface; starts itself."""

    def __init__(self, dut, prefix: str, clk, rst=None, name: str | None = None,
                 max_outstanding: int = 2):
        self.name = name or prefix
        self.clk = clk
        self.rst = rst
        self.max_outstanding = max_outstanding
        self.aw = _Chan(self, dut, prefix, "aw", ["awaddr", "awprot"], "master")
        self.w = _Chan(self, dut, prefix, "w", ["wdata", "wstrb"], "master")
        self.b = _Chan(self, dut, prefix, "b", ["bresp"], "slave")
        self.ar = _Chan(self, dut, prefix, "ar", ["araddr", "arprot"], "master")
        self.r = _Chan(self, dut, prefix, "r", ["rdata", "rresp"], "slave")
        self.errors: list[str] = []
        self.cycle = 0
        self.aw_first = 0       # writes whose AW was accepted before their W
        self.w_first = 0        # writes whose W was accepted before their AW
        self.aw_w_same = 0      # both in the same cycle
        self._task = cocotb.start_soon(self._run())

    @property
    def writes(self) -> int:
        return self.b.count

    @property
    def reads(self) -> int:
        return self.r.count

    def _fail(self, msg: str):
        text = f"AXI4-Lite {self.name}, cycle {self.cycle}: {msg}"
        self.errors.append(text)
        raise ProtocolError(text)

    async def _run(self):
        in_reset_prev = False
        chans = (self.aw, self.w, self.b, self.ar, self.r)
        while True:
            await RisingEdge(self.clk)
            self.cycle += 1
            rst = self.rst is not None and _known(self.rst.value) and int(self.rst.value) == 1
            if rst:
                if in_reset_prev:
                    for c in (self.b, self.r):
                        v = c.valid.value
                        if not _known(v) or int(v):
                            self._fail(f"{c.ch}VALID not low during reset")
                for c in chans:
                    c.reset()
                # a hard reset drops every transaction in flight on both sides
                n = max(self.aw.count, self.w.count)
                self.aw.count = self.w.count = self.b.count = n
                self.ar.count = self.r.count = self.ar.count
                in_reset_prev = True
                continue
            in_reset_prev = False
            # responses are checked against the requests accepted at earlier edges
            b_now = self.b.valid.value
            if _known(b_now) and int(b_now):
                if self.aw.count <= self.b.count or self.w.count <= self.b.count:
                    self._fail(f"BVALID without an accepted write (AW {self.aw.count}, "
                               f"W {self.w.count}, B {self.b.count} handshakes)")
            r_now = self.r.valid.value
            if _known(r_now) and int(r_now) and self.ar.count <= self.r.count:
                self._fail(f"RVALID without an accepted read (AR {self.ar.count}, "
                           f"R {self.r.count} handshakes)")
            aw_before, w_before = self.aw.count, self.w.count
            hs = [c.sample() for c in chans]
            if hs[0] or hs[1]:
                # order of AW and W of the write being assembled
                if hs[0] and hs[1] and aw_before == w_before:
                    self.aw_w_same += 1
                elif hs[0] and aw_before == w_before:
                    self.aw_first += 1
                elif hs[1] and aw_before == w_before:
                    self.w_first += 1
            for c, req in ((self.aw, self.b), (self.w, self.b), (self.ar, self.r)):
                if c.count - req.count > self.max_outstanding:
                    self._fail(f"{c.ch}: {c.count - req.count} requests accepted without "
                               f"a response (the slave allows {self.max_outstanding})")

    def check(self):
        if self.errors:
            raise ProtocolError("; ".join(self.errors))

    def stop(self):
        self._task.cancel()
