"""Protocol testbench of intergrad_top: AXI4-Lite handshakes at chosen skews and
backpressure, and the output-frame contract (every frame ends with TLAST; aborted jobs end
with the abort beat; a soft reset never withdraws a beat; DONE only after delivery).

Run through pytest (tests/test_rtl_modules.py::test_protocol_top).  AXI-Lite is driven by
a raw pin-level master written here (not cocotbext-axi's), so each test chooses exactly
when AWVALID, WVALID, BREADY and RREADY rise: AW and W in either order at skews of 0..15
cycles, WDATA poisoned until WVALID rises, B and R held back for up to 12 cycles.  The
protocol monitors (axis_monitor, axil_monitor) watch both streams and AXI-Lite throughout.
"""
from __future__ import annotations

import logging
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from axil_monitor import AxilMonitor
from axis_monitor import AxisMonitor
from intergrad import spec
from intergrad.core import Job, pack_beats, register_writes, unpack_beats
from intergrad.golden import ArrayModel

CFG = spec.ArrayConfig(
    rows=int(os.environ.get("IG_ROWS", spec.DEFAULT_ROWS)),
    cols=int(os.environ.get("IG_COLS", spec.DEFAULT_COLS)),
    data_w=int(os.environ.get("IG_DATA_W", spec.DEFAULT_DATA_W)),
    acc_w=int(os.environ.get("IG_ACC_W", spec.DEFAULT_ACC_W)),
    dual_mac=int(os.environ.get("IG_DUAL_MAC", spec.DEFAULT_DUAL_MAC)),
)
SEED = int(os.environ.get("INTERGRAD_SEED", os.environ.get("IG_SEED", "1")))
BEAT_BYTES = CFG.out_axis_bits // 8


def rw_mask(name: str) -> int:
    m = 0
    for _, lsb, w, _ in spec.REG[name].fields:
        m |= ((1 << w) - 1) << lsb
    return m


class RawAxil:
    """Pin-level AXI4-Lite master with explicit per-channel delays."""

    def __init__(self, dut, rng: random.Random):
        self.dut = dut
        self.clk = dut.clk
        self.rng = rng
        for s in ("awvalid", "wvalid", "bready", "arvalid", "rready", "awaddr", "awprot",
                  "wdata", "wstrb", "araddr", "arprot"):
            getattr(dut, f"s_axil_{s}").value = 0

    def _sig(self, n):
        return getattr(self.dut, f"s_axil_{n}")

    async def _cycles(self, n):
        for _ in range(n):
            await RisingEdge(self.clk)

    async def _handshake(self, ch, timeout=200):
        """Wait for the edge at which <ch>VALID && <ch>READY (VALID already driven 1)."""
        for _ in range(timeout):
            await RisingEdge(self.clk)
            if int(self._sig(f"{ch}ready").value):
                return
        raise AssertionError(f"AXI-Lite {ch.upper()}READY never came ({timeout} cycles)")

    async def _aw(self, addr, delay):
        await self._cycles(delay)
        self._sig("awaddr").value = addr
        self._sig("awvalid").value = 1
        await self._handshake("aw")
        self._sig("awvalid").value = 0
        self._sig("awaddr").value = self.rng.getrandbits(8)   # not valid any more

    async def _w(self, data, strb, delay, poison):
        # until WVALID rises, WDATA carries a value that must never be written
        self._sig("wdata").value = poison
        self._sig("wstrb").value = 0xF
        await self._cycles(delay)
        self._sig("wdata").value = data
        self._sig("wstrb").value = strb
        self._sig("wvalid").value = 1
        await self._handshake("w")
        self._sig("wvalid").value = 0
        self._sig("wdata").value = poison

    async def _resp(self, ch, delay, early):
        """Wait for <ch>VALID, keep <ch>READY low for ``delay`` cycles, then accept.
        With ``early`` READY is already high before VALID (also legal)."""
        valid, ready = self._sig(f"{ch}valid"), self._sig(f"{ch}ready")
        if early:
            ready.value = 1
        for _ in range(400):
            await RisingEdge(self.clk)
            if int(valid.value):
                break
        else:
            raise AssertionError(f"AXI-Lite {ch.upper()}VALID never came")
        if early and int(ready.value):
            ready.value = 0
            return
        await self._cycles(delay)       # VALID must stay high meanwhile (monitor)
        ready.value = 1
        while True:
            await RisingEdge(self.clk)
            if int(valid.value):
                break
        ready.value = 0

    async def write(self, addr, data, strb=0xF, aw_delay=None, w_delay=None, b_delay=None):
        rng = self.rng
        aw_delay = rng.choice([0, 0, 1, 2, 5]) if aw_delay is None else aw_delay
        w_delay = rng.choice([0, 0, 1, 2, 5]) if w_delay is None else w_delay
        b_delay = rng.choice([0, 0, 1, 3]) if b_delay is None else b_delay
        poison = (~data) & 0xFFFFFFFF
        b = cocotb.start_soon(self._resp("b", b_delay, early=b_delay == 0 and rng.random() < 0.5))
        aw = cocotb.start_soon(self._aw(addr, aw_delay))
        w = cocotb.start_soon(self._w(data, strb, w_delay, poison))
        await aw
        await w
        await b

    async def read(self, addr, ar_delay=0, r_delay=None):
        r_delay = self.rng.choice([0, 0, 1, 3]) if r_delay is None else r_delay
        await self._cycles(ar_delay)
        self._sig("araddr").value = addr
        self._sig("arvalid").value = 1
        self._sig("rready").value = 0
        await self._handshake("ar")
        self._sig("arvalid").value = 0
        data = None
        for _ in range(400):
            await RisingEdge(self.clk)
            if int(self._sig("rvalid").value):
                data = int(self._sig("rdata").value)
                break
        else:
            raise AssertionError("AXI-Lite RVALID never came")
        await self._cycles(r_delay)
        self._sig("rready").value = 1
        while True:
            await RisingEdge(self.clk)
            if int(self._sig("rvalid").value):
                break
        self._sig("rready").value = 0
        return data


class PTB:
    def __init__(self, dut, seed_offset=0):
        self.dut = dut
        self.rng = random.Random(SEED * 31 + seed_offset)
        dut._log.info("test_protocol seed %d (INTERGRAD_SEED)", SEED)
        logging.getLogger(f"cocotb.{dut._name}").setLevel(logging.WARNING)
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)
        self.axil = RawAxil(dut, self.rng)
        self.mon_in = AxisMonitor(dut, "s_axis", dut.clk, dut.rst)
        self.mon_out = AxisMonitor(dut, "m_axis", dut.clk, dut.rst)
        self.mon_axil = AxilMonitor(dut, "s_axil", dut.clk, dut.rst)
        self.model = ArrayModel(CFG)

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)

    async def wr(self, name, value, **kw):
        await self.axil.write(spec.REG[name].offset, value, **kw)

    async def rd(self, name, **kw):
        return await self.axil.read(spec.REG[name].offset, **kw)

    async def status(self):
        w = await self.rd("STATUS")
        return {f[0]: spec.unpack_field("STATUS", f[0], w) for f in spec.REG["STATUS"].fields}

    async def program(self, job: Job):
        for name, value in register_writes(job):
            await self.wr(name, value)

    async def start(self):
        await self.wr("CTRL", spec.pack_fields("CTRL", START=1))

    async def soft_reset(self):
        await self.wr("CTRL", spec.pack_fields("CTRL", SOFT_RESET=1))

    async def wait_idle(self, cycles=20000):
        for _ in range(cycles // 8):
            st = await self.status()
            if not st["BUSY"]:
                return st
            await ClockCycles(self.dut.clk, 8)
        raise AssertionError(f"core still busy after {cycles} cycles: {st}")

    async def finish_job(self, lanes, expect, mark, what, timeout_us=200):
        """Send a started job's input frame; its output frame must be ``expect`` (the golden
        model's), the only frame since ``mark``, and the core idle with DONE, no ERROR."""
        self.source.send_nowait(AxiStreamFrame(pack_beats(lanes, CFG.data_w, CFG.in_axis_bits)))
        frame = await with_timeout(self.sink.recv(), timeout_us, "us")
        st = await self.wait_idle()
        assert st["DONE"] == 1 and st["ERROR"] == 0, f"{what}: at the end: {st}"
        got = unpack_beats(bytes(frame.tdata), CFG.out_lanes, CFG.acc_w, CFG.out_axis_bits)
        assert np.array_equal(got, expect), f"{what}: output differs from the golden model"
        self.mon_out.expect_frames(1, mark, what)

    def job_data(self, job: Job):
        rng = np.random.default_rng(self.rng.getrandbits(32))
        lim = 1 << (CFG.data_w - 1)
        d = {}
        if job.has("LOAD_W"):
            d["weights"] = rng.integers(-lim, lim, (job.rows_act, job.cols_act))
        if job.kind.left_data:
            d["left"] = rng.integers(-lim, lim, (job.batch, job.rows_act))
        d["top"] = rng.integers(-lim, lim, (job.batch, job.cols_act))
        return d

    def beat_ints(self, lanes: np.ndarray) -> list[int]:
        data = pack_beats(lanes, CFG.acc_w, CFG.out_axis_bits)
        return [int.from_bytes(data[i:i + BEAT_BYTES], "little")
                for i in range(0, len(data), BEAT_BYTES)]

    def check_aborted_frame(self, frame, cause: str, expect_prefix: np.ndarray, what: str):
        """frame: the monitor's beats [(tdata, tlast)]: data beats (a prefix of the job's
        expected output) then the abort beat with the cause code."""
        assert frame, f"{what}: empty frame"
        assert all(t == 0 for _, t in frame[:-1]) and frame[-1][1] == 1, (
            f"{what}: TLAST must be on the last beat only: {[t for _, t in frame]}")
        code = spec.ERRORS[cause][0]
        assert frame[-1][0] == code << spec.ABORT_CAUSE_LSB, (
            f"{what}: abort beat TDATA 0x{frame[-1][0]:x}, expected cause {cause} ({code})")
        data = [d for d, _ in frame[:-1]]
        exp = self.beat_ints(expect_prefix)
        assert len(data) <= len(exp), f"{what}: {len(data)} data beats, job has {len(exp)}"
        assert data == exp[:len(data)], f"{what}: data beats before the abort beat differ"

    def finish(self):
        self.mon_in.check()
        self.mon_out.check()
        self.mon_axil.check()


# ------------------------------------------------------------------------------ AXI-Lite

@cocotb.test()
async def test_axil_write_orders_and_skews(dut):
    """AW first, W first, together, at skews of 0..15 cycles, with B backpressure; WDATA is
    poisoned until WVALID: each write lands exactly, the poison never does."""
    tb = PTB(dut, 1)
    await tb.reset()
    mask = rw_mask("BATCH")
    cases = [(0, 0), (0, 1), (1, 0), (0, 5), (5, 0), (0, 15), (15, 0), (3, 3)]
    cases += [(tb.rng.randint(0, 8), tb.rng.randint(0, 8)) for _ in range(12)]
    last = await tb.rd("BATCH")
    for k, (dw_aw, dw_w) in enumerate(cases):
        v = tb.rng.getrandbits(16) & mask
        await tb.wr("BATCH", v, aw_delay=dw_aw, w_delay=dw_w, b_delay=tb.rng.choice([0, 2, 12]))
        got = await tb.rd("BATCH", r_delay=tb.rng.choice([0, 1, 7]))
        assert got == v, (f"write {k} (AW after {dw_aw}, W after {dw_w} cycles): read back "
                          f"0x{got:x}, wrote 0x{v:x} (before 0x{last:x}, poison "
                          f"0x{(~v) & mask:x})")
        last = v
    # a write whose data has not come yet has not happened: read while AW waits for W
    v = 0x1357 & mask
    wtask = cocotb.start_soon(tb.axil.write(spec.REG["BATCH"].offset, v, aw_delay=0,
                                            w_delay=40, b_delay=0))
    await ClockCycles(dut.clk, 4)
    mid = await tb.axil.read(spec.REG["BATCH"].offset, r_delay=0)
    assert mid == last, (f"BATCH read 0x{mid:x} while the write's W was not yet sent "
                         f"(expected the old 0x{last:x}): the write did not wait for WVALID")
    await wtask
    assert await tb.rd("BATCH") == v
    # and the other way round: W waiting for AW
    v2 = 0x2468 & mask
    wtask = cocotb.start_soon(tb.axil.write(spec.REG["BATCH"].offset, v2, aw_delay=40,
                                            w_delay=0, b_delay=0))
    await ClockCycles(dut.clk, 4)
    assert await tb.axil.read(spec.REG["BATCH"].offset, r_delay=0) == v
    await wtask
    assert await tb.rd("BATCH") == v2
    assert tb.mon_axil.writes >= len(cases) + 2
    tb.finish()


@cocotb.test()
async def test_axil_response_backpressure(dut):
    """BREADY and RREADY held low for up to 12 cycles: BVALID/RVALID stay high with BRESP,
    RDATA, RRESP stable (the monitor checks every cycle), and RDATA is the value at the
    time of the read even if the register is written while RVALID waits."""
    tb = PTB(dut, 2)
    await tb.reset()
    mask = rw_mask("BATCH")
    v = 0
    for k in range(10):
        v = tb.rng.getrandbits(16) & mask
        await tb.wr("BATCH", v, b_delay=tb.rng.randint(1, 12))
        # a read held back by RREADY while a write changes the register: RDATA stays the
        # value read
        rtask = cocotb.start_soon(tb.axil.read(spec.REG["BATCH"].offset,
                                               r_delay=tb.rng.randint(6, 12)))
        for _ in range(50):
            await RisingEdge(dut.clk)
            if int(dut.s_axil_rvalid.value):
                break
        v2 = tb.rng.getrandbits(16) & mask
        wtask = cocotb.start_soon(tb.axil.write(spec.REG["BATCH"].offset, v2, b_delay=0))
        got = await rtask
        await wtask
        assert got == v, f"read {k}: RDATA 0x{got:x}, register held 0x{v:x} at the read"
        assert await tb.rd("BATCH") == v2
    assert await tb.rd("ID", r_delay=12) == spec.ID_MAGIC
    tb.finish()


@cocotb.test()
async def test_axil_ctrl_write_is_one_start(dut):
    """CTRL.START written with AW and W in either order at skews and with B backpressure:
    nothing starts while one half waits, the write starts exactly one job (a second START
    strobe would be START_BUSY), and the job's frame is the golden model's."""
    tb = PTB(dut, 4)
    await tb.reset()
    start = spec.pack_fields("CTRL", START=1)
    cases = [(0, 0), (0, 6), (6, 0), (tb.rng.randint(1, 9), tb.rng.randint(1, 9))]
    for k, (dw_aw, dw_w) in enumerate(cases):
        what = f"START {k} (AW after {dw_aw}, W after {dw_w} cycles)"
        job = Job("WS", tb.rng.randint(1, 4), CFG.rows, CFG.cols, {"LOAD_W"})
        lanes = tb.model.job_input(job, **tb.job_data(job))
        expect = tb.model.run(job, lanes)
        mark = tb.mon_out.mark()
        await tb.program(job)
        wtask = cocotb.start_soon(tb.axil.write(spec.REG["CTRL"].offset, start, aw_delay=dw_aw,
                                                w_delay=dw_w, b_delay=tb.rng.choice([0, 3])))
        if max(dw_aw, dw_w) >= 4:
            await ClockCycles(dut.clk, 2)
            st = await tb.status()
            assert st["BUSY"] == 0 and st["ERROR"] == 0, f"{what}: started early: {st}"
        await wtask
        st = await tb.status()
        assert st["BUSY"] == 1 and st["ERROR"] == 0, f"{what}: after the write: {st}"
        await tb.finish_job(lanes, expect, mark, what, timeout_us=100)
    tb.finish()


# ------------------------------------------------------------------------ output frames

@cocotb.test()
async def test_done_only_after_delivery(dut):
    """B=1 with a sink that is not ready: the job's computation ends but its last beat waits
    in the output register: DONE=0, BUSY=1, OUT_PENDING=1; accepted: DONE=1, BUSY=0."""
    tb = PTB(dut, 3)
    await tb.reset()
    tb.sink.pause = True
    job = Job("WS", 1, CFG.rows, CFG.cols, {"LOAD_W"})
    lanes = tb.model.job_input(job, **tb.job_data(job))
    expect = tb.model.run(job, lanes)
    mark = tb.mon_out.mark()
    await tb.program(job)
    await tb.start()
    tb.source.send_nowait(AxiStreamFrame(pack_beats(lanes, CFG.data_w, CFG.in_axis_bits)))
    for _ in range(200):
        st = await tb.status()
        if not st["COMPUTING"]:
            break
    assert int(dut.m_axis_tvalid.value) == 1, "the last beat should wait on m_axis"
    for _ in range(5):
        st = await tb.status()
        assert st["DONE"] == 0, f"DONE with the last beat still pending: {st}"
        assert st["BUSY"] == 1 and st["OUT_PENDING"] == 1, st
    tb.sink.pause = False
    frame = await with_timeout(tb.sink.recv(), 50, "us")
    st = await tb.wait_idle()
    assert st["DONE"] == 1 and st["ERROR"] == 0 and st["OUT_PENDING"] == 0, st
    got = unpack_beats(bytes(frame.tdata), CFG.out_lanes, CFG.acc_w, CFG.out_axis_bits)
    assert np.array_equal(got, expect)
    tb.mon_out.expect_frames(1, mark, "B=1 job")
    tb.finish()


@cocotb.test()
async def test_soft_reset_holds_pending_beat(dut):
    """Soft reset while an output beat waits under backpressure: TVALID/TDATA/TLAST stay
    until accepted (the monitor checks), then the abort beat (cause SOFT_RESET) ends the
    frame; the core is idle after delivery and the next job is exact."""
    tb = PTB(dut, 4)
    await tb.reset()
    for k, B in enumerate([6, 30]):
        job = Job("WS", B, CFG.rows, CFG.cols, {"LOAD_W"})
        lanes = tb.model.job_input(job, **tb.job_data(job))
        expect = tb.model.run(job, lanes)
        mark = tb.mon_out.mark()
        tb.sink.pause = True
        await tb.program(job)
        await tb.start()
        tb.source.send_nowait(AxiStreamFrame(pack_beats(lanes, CFG.data_w, CFG.in_axis_bits)))
        # wait for a pending output beat (the sink is not ready)
        for _ in range(2000):
            await RisingEdge(dut.clk)
            if int(dut.m_axis_tvalid.value):
                break
        await ClockCycles(dut.clk, 3)
        assert int(dut.m_axis_tvalid.value) == 1
        await tb.soft_reset()
        await ClockCycles(dut.clk, 10)
        assert int(dut.m_axis_tvalid.value) == 1, "soft reset withdrew the pending beat"
        tb.source.pause = True        # a halted DMA: no more input
        tb.sink.pause = False
        frame = await with_timeout(tb.sink.recv(), 100, "us")
        st = await tb.wait_idle()
        assert st["BUSY"] == 0 and st["DONE"] == 0, st
        fr = tb.mon_out.expect_frames(1, mark, f"soft-reset job {k}")[0]
        assert len(frame.tdata) == len(fr) * BEAT_BYTES
        tb.check_aborted_frame(fr, "SOFT_RESET", expect, f"soft-reset job {k}")
        if k == 0:
            # B below the pipeline depth: every input beat was taken before the first
            # output, so nothing is left on s_axis and the next round starts clean
            assert tb.source.empty() and int(dut.s_axis_tvalid.value) == 0
            tb.source.pause = False
    tb.finish()


@cocotb.test()
async def test_aborted_frames_end_with_abort_beat(dut):
    """Rejected STARTs and aborted jobs (EARLY_TLAST, MISSING_TLAST) end their frame with
    one abort beat carrying the cause, checked at the sink (no stream reset), with random
    backpressure; the next job's frame is its own and exact."""
    tb = PTB(dut, 5)
    await tb.reset()
    R, C = CFG.rows, CFG.cols

    def pause_gen(p):
        while True:
            yield 1 if tb.rng.random() < p else 0
    tb.sink.set_pause_generator(pause_gen(0.4))
    tb.source.set_pause_generator(pause_gen(0.3))

    async def good_job(what):
        job = Job("IG", 5, R, C, {"LOAD_W", "ACC_CLEAR", "DRAIN"})
        lanes = tb.model.job_input(job, **tb.job_data(job))
        expect = tb.model.run(job, lanes)
        mark = tb.mon_out.mark()
        await tb.program(job)
        await tb.start()
        await tb.finish_job(lanes, expect, mark, what)

    await good_job("first job")
    # rejected START: the frame is the abort beat alone
    mark = tb.mon_out.mark()
    await tb.wr("MODE", 3)
    await tb.wr("BATCH", 4)
    await tb.start()
    await with_timeout(tb.sink.recv(), 50, "us")
    st = await tb.wait_idle()
    assert st["ERROR"] == 1 and st["ERR_CAUSE"] == spec.ERRORS["BAD_MODE"][0], st
    fr = tb.mon_out.expect_frames(1, mark, "BAD_MODE")[0]
    assert len(fr) == 1
    tb.check_aborted_frame(fr, "BAD_MODE", np.zeros((0, CFG.out_lanes), np.int64), "BAD_MODE")
    await good_job("after BAD_MODE")

    # early TLAST: the input ends two beats early
    job = Job("WS", 10, R, C, {"LOAD_W"})
    lanes = tb.model.job_input(job, **tb.job_data(job))
    expect = tb.model.run(job, lanes)
    tb.model = ArrayModel(CFG)
    mark = tb.mon_out.mark()
    await tb.program(job)
    await tb.start()
    tb.source.send_nowait(AxiStreamFrame(pack_beats(lanes[:-2], CFG.data_w, CFG.in_axis_bits)))
    await with_timeout(tb.sink.recv(), 200, "us")
    st = await tb.wait_idle()
    assert st["ERROR"] == 1 and st["ERR_CAUSE"] == spec.ERRORS["EARLY_TLAST"][0], st
    fr = tb.mon_out.expect_frames(1, mark, "EARLY_TLAST")[0]
    tb.check_aborted_frame(fr, "EARLY_TLAST", expect, "EARLY_TLAST")
    await good_job("after EARLY_TLAST")

    # missing TLAST: three beats past the end, discarded
    job = Job("OS", 6, R, C, {"ACC_CLEAR", "DRAIN"})
    lanes = tb.model.job_input(job, **tb.job_data(job))
    expect = tb.model.run(job, lanes)
    tb.model = ArrayModel(CFG)
    mark = tb.mon_out.mark()
    await tb.program(job)
    await tb.start()
    tb.source.send_nowait(AxiStreamFrame(pack_beats(np.concatenate([lanes, lanes[:3]]),
                                                    CFG.data_w, CFG.in_axis_bits)))
    await with_timeout(tb.sink.recv(), 200, "us")
    await tb.source.wait()
    st = await tb.wait_idle()
    assert st["ERROR"] == 1 and st["ERR_CAUSE"] == spec.ERRORS["MISSING_TLAST"][0], st
    fr = tb.mon_out.expect_frames(1, mark, "MISSING_TLAST")[0]
    tb.check_aborted_frame(fr, "MISSING_TLAST", expect, "MISSING_TLAST")
    await good_job("after MISSING_TLAST")
    tb.finish()
