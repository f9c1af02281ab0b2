"""cocotb testbench of intergrad_top against the bit-exact golden model.

Run through pytest (tests/test_rtl_cocotb.py), which builds one simulator per array
configuration with cocotb_tools.runner and passes the configuration in the environment.
Every stream test runs with random idle cycles on the input and random backpressure on
the output; outputs are compared with the reference model intergrad.golden, counters with
the job formulas of intergrad.core; jobs are programmed with core.register_writes, as the
driver programs them.
"""
from __future__ import annotations

import copy
import itertools
import logging
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, with_timeout
from cocotbext.axi import (AxiLiteBus, AxiLiteMaster, AxiStreamBus, AxiStreamFrame,
                           AxiStreamSink, AxiStreamSource)

from axis_monitor import random_skew, start_monitors  # H4: protocol monitors (tests/cocotb/)
from intergrad import spec
from intergrad.core import Job, jobs_counters, pack_beats, register_writes, unpack_beats
from intergrad.golden import ArrayModel, junk_outside_tile

CFG = spec.ArrayConfig(
    rows=int(os.environ.get("IG_ROWS", spec.DEFAULT_ROWS)),
    cols=int(os.environ.get("IG_COLS", spec.DEFAULT_COLS)),
    data_w=int(os.environ.get("IG_DATA_W", spec.DEFAULT_DATA_W)),
    acc_w=int(os.environ.get("IG_ACC_W", spec.DEFAULT_ACC_W)),
    dual_mac=int(os.environ.get("IG_DUAL_MAC", spec.DEFAULT_DUAL_MAC)),
)
# --- H4: seed, reproducible from INTERGRAD_SEED (tests/test_rtl_cocotb.py draws a random one
# per run and prints it); IG_SEED is the older name
SEED = int(os.environ.get("INTERGRAD_SEED", os.environ.get("IG_SEED", "1")))
# --- end H4
MAX_B = int(os.environ.get("IG_MAX_B", "300"))


def random_pause(rng: random.Random, p_idle: float):
    while True:
        yield 1 if rng.random() < p_idle else 0


async def m_axis_hold_monitor(dut, errors: list):
    """AXI4-Stream rule on the core's output: once TVALID is high it stays high, with TDATA
    and TLAST stable, until TREADY (soft reset and errors included; only rst may drop it)."""
    pending = None
    while True:
        await RisingEdge(dut.clk)
        await ReadOnly()
        if int(dut.rst.value):
            pending = None
            continue
        valid = int(dut.m_axis_tvalid.value)
        if pending is not None:
            now = (valid, int(dut.m_axis_tdata.value), int(dut.m_axis_tlast.value))
            if now != pending:
                errors.append(f"m_axis beat withdrawn or changed before TREADY: held "
                              f"{pending[0]}/tlast {pending[2]}, now valid {now[0]} tlast {now[2]}")
        pending = None
        if valid and not int(dut.m_axis_tready.value):
            pending = (1, int(dut.m_axis_tdata.value), int(dut.m_axis_tlast.value))


class TB:
    def __init__(self, dut, p_in_idle=0.3, p_out_busy=0.3, seed=SEED):
        self.dut = dut
        self.rng = random.Random(seed)
        self.model = ArrayModel(CFG)
        # cocotbext-axi logs every frame at INFO: keep failures readable
        logging.getLogger(f"cocotb.{dut._name}").setLevel(logging.WARNING)
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        self.set_stalls(p_in_idle, p_out_busy)
        self.protocol_errors: list[str] = []
        cocotb.start_soon(m_axis_hold_monitor(dut, self.protocol_errors))
        # --- H4: AXI4-Stream monitors on s_axis and m_axis, AXI4-Lite monitor (they fail the
        # test at the violating cycle); AXI-Lite master with AW and W held back independently
        # (either order, random skew) and B/R backpressure
        dut._log.info("INTERGRAD_SEED=%d", seed)
        self.mon_in, self.mon_out, self.mon_axil = start_monitors(dut)
        arng = random.Random(seed * 7 + 3)
        wr_if, rd_if = self.axil.write_if, self.axil.read_if
        wr_if.aw_channel.set_pause_generator(random_skew(arng, 0.25, 4))
        wr_if.w_channel.set_pause_generator(random_skew(arng, 0.25, 4))
        wr_if.b_channel.set_pause_generator(random_skew(arng, 0.25, 3))
        rd_if.ar_channel.set_pause_generator(random_skew(arng, 0.2, 2))
        rd_if.r_channel.set_pause_generator(random_skew(arng, 0.25, 3))
        # --- end H4

    def check_protocol(self):
        assert not self.protocol_errors, "\n".join(self.protocol_errors[:5])
        for m in (self.mon_in, self.mon_out, self.mon_axil):  # H4
            m.check()
        assert not self.mon_out.open_beats, (  # H4: no output frame left without TLAST
            f"m_axis: {len(self.mon_out.open_beats)} beat(s) of a frame without TLAST")

    def set_stalls(self, p_in_idle, p_out_busy):
        """Random idle cycles on the input stream / backpressure on the output, as
        probabilities per cycle; 0 stops them (cocotbext-axi's clear_pause_generator leaves
        the side in its last paused state, so it is unpaused here)."""
        if p_in_idle:
            self.source.set_pause_generator(random_pause(self.rng, p_in_idle))
        else:
            self.source.clear_pause_generator()
            self.source.pause = False
        if p_out_busy:
            self.sink.set_pause_generator(random_pause(self.rng, p_out_busy))
        else:
            self.sink.clear_pause_generator()
            self.sink.pause = False

    def reset_source(self):
        """What the host does to its DMA's MM2S channel after an error: drop the input beats
        still in flight.  The output side is not reset: the aborted frame is checked."""
        self.source.clear()
        self.mon_in.master_reset()   # H4: the DMA's reset withdraws its beat (named exemption)
        self.source._handle_reset(True)
        self.source._handle_reset(False)
        self.source.pause = False

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)

    async def wr(self, name, value):
        await self.axil.write_dword(spec.REG[name].offset, value)

    async def rd(self, name):
        return await self.axil.read_dword(spec.REG[name].offset)

    async def status(self):
        w = await self.rd("STATUS")
        return {f[0]: spec.unpack_field("STATUS", f[0], w) for f in spec.REG["STATUS"].fields}

    async def counters(self):
        await self.wr("CTRL", spec.pack_fields("CTRL", CNT_SNAPSHOT=1))
        out = {}
        for i, (name, _) in enumerate(spec.COUNTERS):
            out[name] = await self.axil.read_qword(spec.COUNTER_BASE + 8 * i)
        return out

    async def program(self, job: Job):
        for name, value in register_writes(job):
            await self.wr(name, value)

    async def start(self):
        await self.wr("CTRL", spec.pack_fields("CTRL", START=1))

    def send(self, lanes: np.ndarray, tlast_at: int | None = None):
        """Send beats as one frame (tlast on the last beat)."""
        data = pack_beats(lanes, CFG.data_w, CFG.in_axis_bits)
        self.source.send_nowait(AxiStreamFrame(data))

    async def recv(self, n_beats: int, timeout_us=2000) -> np.ndarray:
        if n_beats == 0:
            return np.zeros((0, CFG.out_lanes), dtype=np.int64)
        frame = await with_timeout(self.sink.recv(), timeout_us, "us")
        got = unpack_beats(bytes(frame.tdata), CFG.out_lanes, CFG.acc_w, CFG.out_axis_bits)
        assert got.shape[0] == n_beats, f"expected {n_beats} output beats in one frame, got {got.shape[0]}"
        return got

    async def recv_aborted(self, cause: str, expect: np.ndarray | None = None,
                           timeout_us=2000) -> np.ndarray:
        """Receive the frame of an aborted or rejected job: the beats it produced (a prefix
        of ``expect``, the golden outputs of the whole job), then one abort beat carrying
        ``cause``; the sink splits frames at TLAST, so the frame has exactly one."""
        frame = await with_timeout(self.sink.recv(), timeout_us, "us")
        data = bytes(frame.tdata)
        nb = CFG.out_axis_bits // 8
        assert len(data) >= nb and len(data) % nb == 0, f"frame of {len(data)} bytes"
        last = data[-nb:]
        assert last == spec.abort_beat(CFG, cause), (
            f"frame's TLAST beat is not the {cause} abort beat: cause field "
            f"{spec.abort_cause(last)} ({spec.error_name(spec.abort_cause(last) or 0)})")
        got = unpack_beats(data[:-nb], CFG.out_lanes, CFG.acc_w, CFG.out_axis_bits)
        if expect is not None:
            assert got.shape[0] < max(expect.shape[0], 1) + 1, (
                f"aborted frame has {got.shape[0]} result beats, the job only {expect.shape[0]}")
            assert_equal(got, expect[:got.shape[0]], f"beats before the {cause} abort beat")
        return got

    def assert_no_frame(self, what=""):
        assert self.sink.empty(), f"{what}: unexpected output frame {self.sink.recv_nowait()}"

    async def wait_idle(self, timeout_cycles=200000):
        for _ in range(timeout_cycles // 16):
            st = await self.status()
            if not st["BUSY"]:
                return st
            await ClockCycles(self.dut.clk, 16)
        raise AssertionError(f"core still busy after {timeout_cycles} cycles: {st}")

    async def run_job(self, job: Job, check=True, lanes=None, **data):
        """Program, start, stream a job; compare outputs with the golden model.  ``lanes``:
        the job's input beats as given (else packed from ``data``)."""
        if lanes is None:
            lanes = self.model.job_input(job, **data)
        expect = self.model.run(job, lanes)
        mark = self.mon_out.mark()  # H4: frame accounting
        await self.program(job)
        await self.start()
        self.send(lanes)
        got = await self.recv(job.out_beats())
        st = await self.wait_idle()
        self.mon_out.expect_frames(1 if job.out_beats() else 0, mark, f"job {job}")  # H4
        assert st["ERROR"] == 0, f"job {job} ended with error {spec.error_name(st['ERR_CAUSE'])}"
        assert st["DONE"] == 1
        self.assert_no_frame(f"after {job}")
        self.check_protocol()
        if check:
            assert_equal(got, expect, f"outputs of {job}")
        return got, expect

    def random_job_data(self, job: Job, S=None):
        rng = np.random.default_rng(self.rng.getrandbits(32))
        lo, hi = -(1 << (CFG.data_w - 1)), (1 << (CFG.data_w - 1))
        d = {}
        if job.has("LOAD_W"):
            d["weights"] = rng.integers(lo, hi, (job.rows_act, job.cols_act)) if S is None else S
        if job.has("PRELOAD"):
            d["preload"] = rng.integers(lo, hi, (job.rows_act, job.cols_act))
        if job.kind.left_data:
            d["left"] = rng.integers(lo, hi, (job.batch, job.rows_act))
        d["top"] = rng.integers(lo, hi, (job.batch, job.cols_act))
        return d


def assert_equal(got: np.ndarray, expect: np.ndarray, what: str):
    if got.shape != expect.shape or not np.array_equal(got, expect):
        if got.shape != expect.shape:
            raise AssertionError(f"{what}: shape {got.shape} != expected {expect.shape}")
        bad = np.argwhere(got != expect)
        rows = [f"  beat {b} lane {l}: got {got[b, l]} expected {expect[b, l]}" for b, l in bad[:10]]
        raise AssertionError(f"{what}: {len(bad)} mismatching values\n" + "\n".join(rows))


def counters_delta(after, before):
    return {k: after[k] - before[k] for k in after}


def check_counters(delta, jobs, what=""):
    exp = jobs_counters(CFG, jobs)
    for k in ("steps", "macs", "in_beats", "wload_beats", "out_beats", "jobs"):
        assert delta[k] == exp[k], f"{what} counter {k}: RTL {delta[k]} != formula {exp[k]}"
    assert delta["busy_cycles"] == exp["busy_cycles"] + delta["stall_in"] + delta["stall_out"], (
        f"{what} busy_cycles {delta['busy_cycles']} != formula {exp['busy_cycles']} + stalls "
        f"{delta['stall_in']} + {delta['stall_out']}")


def rand_job(rng: random.Random, mode: str, max_b: int, flags=()):
    return Job(mode, batch=rng.randint(1, max_b), rows_act=rng.randint(1, CFG.rows),
               cols_act=rng.randint(1, CFG.cols), flags=frozenset(flags))


# ------------------------------------------------------------------------------ tests

@cocotb.test()
async def test_id_and_config(dut):
    tb = TB(dut)
    await tb.reset()
    assert await tb.rd("ID") == spec.ID_MAGIC
    assert await tb.rd("VERSION") == spec.VERSION
    a = await tb.rd("CFG_ARRAY")
    w = await tb.rd("CFG_WIDTH")
    assert spec.unpack_field("CFG_ARRAY", "ROWS", a) == CFG.rows
    assert spec.unpack_field("CFG_ARRAY", "COLS", a) == CFG.cols
    assert spec.unpack_field("CFG_ARRAY", "DUAL_MAC", a) == CFG.dual_mac
    assert spec.unpack_field("CFG_WIDTH", "DATA_W", w) == CFG.data_w
    assert spec.unpack_field("CFG_WIDTH", "ACC_W", w) == CFG.acc_w
    st = await tb.status()
    assert st == {"BUSY": 0, "DONE": 0, "ERROR": 0, "PRELOADED": 0, "SAVED": 0,
                  "COMPUTING": 0, "OUT_PENDING": 0, "ERR_CAUSE": 0}


@cocotb.test()
async def test_register_byte_strobes(dut):
    """A write changes only the bytes its strobes enable (narrow AXI-Lite writes)."""
    tb = TB(dut)
    await tb.reset()
    mode = spec.pack_fields("MODE", MODE=1, FLAGS=spec.flags_word("LOAD_W", "DRAIN"))
    await tb.wr("MODE", mode)
    await tb.wr("BATCH", 0x1234)
    await tb.wr("SHAPE", spec.pack_fields("SHAPE", ROWS_ACT=2, COLS_ACT=3))
    # one byte at a time (wstrb with a single bit set)
    await tb.axil.write(spec.REG["MODE"].offset + 1, bytes([spec.flags_word("ACC_CLEAR")]))
    await tb.axil.write(spec.REG["BATCH"].offset, bytes([0x78]))
    await tb.axil.write(spec.REG["SHAPE"].offset + 2, bytes([1]))
    assert await tb.rd("MODE") == spec.pack_fields("MODE", MODE=1,
                                                   FLAGS=spec.flags_word("ACC_CLEAR"))
    assert await tb.rd("BATCH") == 0x1278
    assert await tb.rd("SHAPE") == spec.pack_fields("SHAPE", ROWS_ACT=2, COLS_ACT=1)
    await tb.axil.write(spec.REG["BATCH"].offset + 1, bytes([0x9A]))
    await tb.axil.write(spec.REG["MODE"].offset, bytes([2]))
    await tb.axil.write(spec.REG["SHAPE"].offset, bytes([4]))
    assert await tb.rd("BATCH") == 0x9A78
    assert await tb.rd("MODE") == spec.pack_fields("MODE", MODE=2,
                                                   FLAGS=spec.flags_word("ACC_CLEAR"))
    assert await tb.rd("SHAPE") == spec.pack_fields("SHAPE", ROWS_ACT=4, COLS_ACT=1)


@cocotb.test()
async def test_ws_random(dut):
    """WS (forward and dX) on random shapes, plain and transposed weight loads."""
    tb = TB(dut)
    await tb.reset()
    for i in range(8):
        flags = {"LOAD_W"} | ({"TRANSPOSE"} if i % 2 else set())
        job = rand_job(tb.rng, "WS", MAX_B if i < 2 else 24, flags)
        c0 = await tb.counters()
        await tb.run_job(job, **tb.random_job_data(job))
        check_counters(counters_delta(await tb.counters(), c0), [job], f"WS job {i}")


@cocotb.test()
async def test_os_random(dut):
    """OS (dW) on random shapes, accumulating over two jobs before draining."""
    tb = TB(dut)
    await tb.reset()
    for i in range(5):
        ra, ca = tb.rng.randint(1, CFG.rows), tb.rng.randint(1, CFG.cols)
        j1 = Job("OS", tb.rng.randint(1, MAX_B if i == 0 else 30), ra, ca, {"ACC_CLEAR"})
        j2 = Job("OS", tb.rng.randint(1, 30), ra, ca, {"DRAIN"})
        c0 = await tb.counters()
        await tb.run_job(j1, **tb.random_job_data(j1))
        await tb.run_job(j2, **tb.random_job_data(j2))
        check_counters(counters_delta(await tb.counters(), c0), [j1, j2], f"OS pair {i}")


@cocotb.test()
async def test_intergrad_random(dut):
    """InterGrad: dX and dW of a random layer tile at once, dY streamed once."""
    tb = TB(dut)
    await tb.reset()
    for i in range(6):
        job = rand_job(tb.rng, "IG", MAX_B if i == 0 else 40, {"LOAD_W", "ACC_CLEAR", "DRAIN"})
        c0 = await tb.counters()
        await tb.run_job(job, **tb.random_job_data(job))
        check_counters(counters_delta(await tb.counters(), c0), [job], f"IG job {i}")


@cocotb.test()
async def test_intergrad_vs_separate_passes(dut):
    """Same layer as WS(dX) + OS(dW) and as one InterGrad pass: equal results; dY beats
    entering the array: 2B for the separate passes, B for InterGrad."""
    tb = TB(dut)
    await tb.reset()
    R, C = CFG.rows, CFG.cols
    B = 37
    rng = np.random.default_rng(SEED)
    lim = 1 << (CFG.data_w - 1)
    W = rng.integers(-lim, lim, (R, C))
    X = rng.integers(-lim, lim, (B, R))
    dY = rng.integers(-lim, lim, (B, C))

    c0 = await tb.counters()
    ws_job = Job("WS", B, R, C, {"LOAD_W"})
    dx_sep, _ = await tb.run_job(ws_job, weights=W, top=dY)
    os_job = Job("OS", B, R, C, {"ACC_CLEAR", "DRAIN"})
    dw_sep, _ = await tb.run_job(os_job, left=X, top=dY)
    c1 = await tb.counters()
    ig_job = Job("IG", B, R, C, {"LOAD_W", "ACC_CLEAR", "DRAIN"})
    out_ig, _ = await tb.run_job(ig_job, weights=W, left=X, top=dY)
    c2 = await tb.counters()

    from intergrad.golden import intergrad as ig_ref
    dx_ref, dw_ref = ig_ref(W, X, dY, CFG.acc_w)
    assert_equal(dx_sep[:, :R], dx_ref, "dX (separate WS pass)")
    assert_equal(dw_sep[:, :C], dw_ref, "dW (separate OS pass)")
    assert_equal(out_ig[:B, :R], dx_ref, "dX (InterGrad)")
    assert_equal(out_ig[B:, :C], dw_ref, "dW (InterGrad)")

    sep, ig = counters_delta(c1, c0), counters_delta(c2, c1)
    check_counters(sep, [ws_job, os_job], "separate")
    check_counters(ig, [ig_job], "InterGrad")
    dy_sep = sep["in_beats"] - sep["wload_beats"]
    dy_ig = ig["in_beats"] - ig["wload_beats"]
    assert dy_sep == 2 * B and dy_ig == B, (dy_sep, dy_ig)
    dut._log.info("dY beats: separate %d, InterGrad %d; steps: separate %d, InterGrad %d",
                  dy_sep, dy_ig, sep["steps"], ig["steps"])


@cocotb.test()
async def test_overflow_wraps(dut):
    """Extreme values: every product at its maximum magnitude; sums wrap at ACC_W."""
    tb = TB(dut, p_in_idle=0.2, p_out_busy=0.2)
    await tb.reset()
    R, C = CFG.rows, CFG.cols
    lo = -(1 << (CFG.data_w - 1))
    hi = (1 << (CFG.data_w - 1)) - 1
    B = min(MAX_B, 260)
    for S_val, v_val in ((lo, lo), (hi, lo), (hi, hi)):
        job = Job("IG", B, R, C, {"LOAD_W", "ACC_CLEAR", "DRAIN"})
        W = np.full((R, C), S_val)
        X = np.full((B, R), S_val)
        dY = np.full((B, C), v_val)
        got, expect = await tb.run_job(job, weights=W, left=X, top=dY)
        exact = int(B) * S_val * v_val
        if abs(exact) >= (1 << (CFG.acc_w - 1)):
            assert got[B, 0] != exact, "a value beyond ACC_W must have wrapped"
        assert got[B, 0] == ((exact + (1 << (CFG.acc_w - 1))) % (1 << CFG.acc_w)) - (1 << (CFG.acc_w - 1))


@cocotb.test()
async def test_back_to_back_preload(dut):
    """Back-to-back tiles: each job's stream preloads the next tile's weights into the
    shadow bank while it flushes/drains; the next job SWAPs and starts at once."""
    tb = TB(dut)
    await tb.reset()
    rng = tb.rng
    ra, ca = rng.randint(1, CFG.rows), rng.randint(1, CFG.cols)
    lim = 1 << (CFG.data_w - 1)
    nrng = np.random.default_rng(SEED + 7)
    jobs = []
    mode_cycle = itertools.cycle(["IG", "WS", "IG"])
    c0 = await tb.counters()
    next_w = nrng.integers(-lim, lim, (ra, ca))
    for i in range(5):
        mode = next(mode_cycle)
        flags = {"DRAIN", "ACC_CLEAR"} if mode == "IG" else set()
        flags |= {"LOAD_W"} if i == 0 else {"SWAP"}
        if i < 4:
            flags |= {"PRELOAD"}
        tr = {"TRANSPOSE"} if i % 2 else set()
        job = Job(mode, rng.randint(1, 30), ra, ca, flags | tr)
        d = tb.random_job_data(job)
        if "LOAD_W" in flags:
            d["weights"] = next_w
        if "PRELOAD" in flags:
            next_w = d["preload"]
        await tb.run_job(job, **d)
        st = await tb.status()
        assert st["PRELOADED"] == (1 if "PRELOAD" in flags else 0)
        jobs.append(job)
    check_counters(counters_delta(await tb.counters(), c0), jobs, "preload chain")


@cocotb.test()
async def test_small_tile_load_keeps_outer_weights(dut):
    """A weight load (LOAD_W or PRELOAD, plain or TRANSPOSE) for a tile smaller than the
    array writes only that tile: its beats carry junk in every lane they do not use, and the
    next jobs on the whole array, which load nothing (or SWAP the small preload in), see the
    older weights outside the tile, as the golden model does."""
    tb = TB(dut)
    await tb.reset()
    R, C = CFG.rows, CFG.cols
    nrng = np.random.default_rng(SEED + 11)

    async def run(mode, ra, ca, *flags):
        job = Job(mode, tb.rng.randint(1, 12), ra, ca, frozenset(flags))
        lanes = tb.model.job_input(job, **tb.random_job_data(job))
        await tb.run_job(job, lanes=junk_outside_tile(CFG, job, lanes, nrng))

    for t in ((), ("TRANSPOSE",)):
        await run("WS", R, C, "LOAD_W", *t)       # both banks: full random weights
        await run("WS", R, C, "LOAD_W", *t)
        for _ in range(3):
            ra, ca = tb.rng.randint(1, R), tb.rng.randint(1, C)
            if (ra, ca) == (R, C):          # a tile smaller than the array
                if R > 1:
                    ra = R - 1
                else:
                    ca = max(1, C - 1)
            await run("WS", ra, ca, "LOAD_W", *t)
            await run("WS", R, C, *t)
            await run("IG", R, C, "ACC_CLEAR", "DRAIN", *t)
        await run("WS", max(1, R - 1), max(1, C - 1), "PRELOAD", *t)
        await run("WS", R, C, "SWAP", *t)


@cocotb.test()
async def test_saved_accumulators_drain_during_next_job(dut):
    """Double-buffered accumulators: a job SAVEs its accumulators instead of draining them;
    the next job (any mode) streams them out first, while it loads and fills the array, at
    no extra array steps; chains of tiles with preloaded weights as the scheduler runs them."""
    tb = TB(dut)
    await tb.reset()
    rng = tb.rng
    c0 = await tb.counters()
    jobs = []
    prev_rows = 0
    modes = ["IG", "OS", "IG", "WS", "IG", "OS"]
    for i, mode in enumerate(modes):
        ra, ca = rng.randint(1, CFG.rows), rng.randint(1, CFG.cols)
        flags = set()
        if mode in ("IG", "WS"):
            flags.add("LOAD_W")
        if mode in ("IG", "OS"):
            flags |= {"ACC_CLEAR", "SAVE" if i < len(modes) - 1 else "DRAIN"}
        if prev_rows:
            flags.add("DRAIN_PREV")
        job = Job(mode, rng.randint(1, 25), ra, ca, frozenset(flags), prev_rows=prev_rows)
        await tb.run_job(job, **tb.random_job_data(job))
        st = await tb.status()
        assert st["SAVED"] == (1 if "SAVE" in flags else 0), st
        prev_rows = ra if "SAVE" in flags else 0
        jobs.append(job)
    d = counters_delta(await tb.counters(), c0)
    check_counters(d, jobs, "save/drain-prev chain")
    drained = sum(j.prev_rows for j in jobs)
    assert drained > 0 and d["out_beats"] == sum(j.out_beats() for j in jobs)


@cocotb.test()
async def test_soft_reset_mid_job(dut):
    """Soft reset in the middle of a job: its frame (the beats produced so far) ends with the
    SOFT_RESET abort beat; then a correct job."""
    tb = TB(dut, p_in_idle=0.0, p_out_busy=0.0)
    await tb.reset()
    job = Job("IG", 50, CFG.rows, CFG.cols, {"LOAD_W", "ACC_CLEAR", "DRAIN"})
    d = tb.random_job_data(job)
    lanes = tb.model.job_input(job, **d)
    expect = copy.deepcopy(tb.model).run(job, lanes)
    await tb.program(job)
    await tb.start()
    tb.send(lanes)
    # let part of the job run, then freeze the stream as a DMA halt would, and reset
    await ClockCycles(dut.clk, job.load_beats() + 20)
    tb.source.pause = True
    await ClockCycles(dut.clk, 3)
    st = await tb.status()
    assert st["BUSY"] == 1 and st["COMPUTING"] == 1, st
    await tb.wr("CTRL", spec.pack_fields("CTRL", SOFT_RESET=1))
    await tb.recv_aborted("SOFT_RESET", expect)
    tb.reset_source()
    st = await tb.wait_idle(2000)
    assert st["ERROR"] == 0 and st["DONE"] == 0 and st["OUT_PENDING"] == 0, st
    tb.assert_no_frame("after the soft reset")
    # the model: the aborted job's LOAD_W was completed (weights loaded, bank swapped)
    tb.model = ArrayModel(CFG)
    job2 = Job("IG", 33, CFG.rows, CFG.cols, {"LOAD_W", "ACC_CLEAR", "DRAIN"})
    tb.set_stalls(0.3, 0.3)
    await tb.run_job(job2, **tb.random_job_data(job2))


@cocotb.test()
async def test_soft_reset_keeps_pending_beat(dut):
    """Soft reset while an output beat waits under backpressure: the beat stays valid with
    TDATA/TLAST stable (monitor) until accepted, then the SOFT_RESET abort beat ends the
    frame; STATUS shows OUT_PENDING (BUSY) until both are delivered."""
    tb = TB(dut, p_in_idle=0.0, p_out_busy=0.0)
    await tb.reset()
    job = Job("WS", 12, CFG.rows, CFG.cols, {"LOAD_W"})
    lanes = tb.model.job_input(job, **tb.random_job_data(job))
    expect = copy.deepcopy(tb.model).run(job, lanes)
    tb.sink.pause = True
    await tb.program(job)
    await tb.start()
    tb.send(lanes)
    for _ in range(2000):
        await RisingEdge(dut.clk)
        if int(dut.m_axis_tvalid.value):
            break
    await ClockCycles(dut.clk, 5)
    st = await tb.status()
    assert st["COMPUTING"] == 1 and st["OUT_PENDING"] == 1 and st["BUSY"] == 1, st
    await tb.wr("CTRL", spec.pack_fields("CTRL", SOFT_RESET=1))
    await ClockCycles(dut.clk, 20)
    assert int(dut.m_axis_tvalid.value) == 1, "soft reset withdrew a pending beat"
    st = await tb.status()
    assert (st["COMPUTING"], st["OUT_PENDING"], st["BUSY"], st["DONE"], st["ERROR"]) == \
        (0, 1, 1, 0, 0), st
    tb.sink.pause = False
    got = await tb.recv_aborted("SOFT_RESET", expect)
    assert got.shape[0] == 1, f"only the pending beat precedes the abort beat, got {got.shape[0]}"
    tb.reset_source()
    st = await tb.wait_idle(2000)
    assert st["OUT_PENDING"] == 0 and st["DONE"] == 0, st
    tb.check_protocol()
    tb.model = ArrayModel(CFG)
    job2 = Job("WS", 7, CFG.rows, CFG.cols, {"LOAD_W"})
    await tb.run_job(job2, **tb.random_job_data(job2))


@cocotb.test()
async def test_done_after_last_beat_delivered(dut):
    """DONE never reads 1 while the last beat (with TLAST) still waits in the output
    register: COMPUTING falls first, OUT_PENDING keeps BUSY up until the beat is taken."""
    tb = TB(dut, p_in_idle=0.0, p_out_busy=0.0)
    await tb.reset()
    # jobs whose frame is one beat (a longer frame stalls the job itself on the sink)
    for job in (Job("WS", 1, CFG.rows, CFG.cols, {"LOAD_W"}),
                Job("OS", 3, 1, CFG.cols, {"ACC_CLEAR", "DRAIN"})):
        lanes = tb.model.job_input(job, **tb.random_job_data(job))
        expect = tb.model.run(job, lanes)
        c0 = await tb.counters()
        tb.sink.pause = True
        await tb.program(job)
        await tb.start()
        tb.send(lanes)
        for _ in range(200):
            st = await tb.status()
            assert not (st["DONE"] and st["OUT_PENDING"]), st
            if not st["COMPUTING"]:
                break
        else:
            raise AssertionError(f"job never stopped computing: {st}")
        assert (st["BUSY"], st["DONE"], st["OUT_PENDING"], st["ERROR"]) == (1, 0, 1, 0), st
        await ClockCycles(dut.clk, 10)
        st = await tb.status()
        assert (st["BUSY"], st["DONE"], st["OUT_PENDING"]) == (1, 0, 1), st
        tb.sink.pause = False
        got = await tb.recv(job.out_beats())
        st = await tb.wait_idle(2000)
        assert (st["DONE"], st["ERROR"], st["OUT_PENDING"]) == (1, 0, 0), st
        assert_equal(got, expect, f"outputs of {job}")
        check_counters(counters_delta(await tb.counters(), c0), [job], f"{job.mode} held output")
    tb.check_protocol()


@cocotb.test()
async def test_aborted_frames_are_terminated(dut):
    """EARLY_TLAST and MISSING_TLAST late in a job, with results already leaving: the frame
    carries the results produced so far (checked against the golden model), then one abort
    beat with the cause; the surplus input after MISSING_TLAST is discarded up to its TLAST
    and not counted; the counters follow their documented definitions."""
    tb = TB(dut, p_in_idle=0.2, p_out_busy=0.3)
    await tb.reset()
    R, C = CFG.rows, CFG.cols
    F = CFG.flush_steps
    # early TLAST on data beat B_cut-1 of a WS job, after some results have left
    B = F + 20
    job = Job("WS", B, R, C, {"LOAD_W"})
    lanes = tb.model.job_input(job, **tb.random_job_data(job))
    expect = copy.deepcopy(tb.model).run(job, lanes)
    cut = job.load_beats() + F + 8
    c0 = await tb.counters()
    await tb.program(job)
    await tb.start()
    tb.send(lanes[:cut])
    got = await tb.recv_aborted("EARLY_TLAST", expect)
    assert got.shape[0] > 0, "some results were produced before the abort"
    st = await tb.wait_idle(5000)
    assert (st["ERROR"], st["ERR_CAUSE"], st["DONE"]) == (1, spec.ERRORS["EARLY_TLAST"][0], 0), st
    d = counters_delta(await tb.counters(), c0)
    assert d["in_beats"] == cut and d["steps"] == cut, d
    assert d["out_beats"] == got.shape[0] + 1 and d["jobs"] == 0, d
    assert d["busy_cycles"] == d["steps"] + d["stall_in"] + d["stall_out"], d
    tb.assert_no_frame("after EARLY_TLAST")

    # missing TLAST on the last preload beat of a WS job; 3 surplus beats are discarded
    tb.model = ArrayModel(CFG)
    job = Job("WS", 20, R, C, {"LOAD_W", "PRELOAD"})
    lanes = tb.model.job_input(job, **tb.random_job_data(job))
    expect = copy.deepcopy(tb.model).run(job, lanes)
    c0 = await tb.counters()
    await tb.program(job)
    await tb.start()
    tb.send(np.concatenate([lanes, lanes[:3]]))
    got = await tb.recv_aborted("MISSING_TLAST", expect)
    await tb.source.wait()
    st = await tb.wait_idle(5000)
    assert (st["ERROR"], st["ERR_CAUSE"], st["PRELOADED"]) == \
        (1, spec.ERRORS["MISSING_TLAST"][0], 0), st
    assert tb.source.empty()
    d = counters_delta(await tb.counters(), c0)
    assert d["in_beats"] == job.in_beats() and d["wload_beats"] == job.load_beats() + \
        job.preload_beats(), d
    assert d["out_beats"] == got.shape[0] + 1 and d["jobs"] == 0, d
    assert d["busy_cycles"] == d["steps"] + d["stall_in"] + d["stall_out"], d
    tb.assert_no_frame("after MISSING_TLAST")

    # an accumulate-only job (no output beats) aborted: its frame is the abort beat alone
    job = Job("OS", 6, R, C, {"ACC_CLEAR"})
    lanes = tb.model.job_input(job, **tb.random_job_data(job))
    await tb.program(job)
    await tb.start()
    tb.send(lanes[:4])
    got = await tb.recv_aborted("EARLY_TLAST")
    assert got.shape[0] == 0
    await tb.wait_idle(5000)
    tb.check_protocol()
    tb.model = ArrayModel(CFG)
    job = Job("IG", 9, R, C, {"LOAD_W", "ACC_CLEAR", "DRAIN"})
    await tb.run_job(job, **tb.random_job_data(job))


@cocotb.test()
async def test_errors_never_hang(dut):
    """Malformed jobs give an error cause and a terminated frame, never a hang; a good job
    works after each."""
    tb = TB(dut, p_in_idle=0.2, p_out_busy=0.2)
    await tb.reset()
    R, C = CFG.rows, CFG.cols

    async def expect_error(name, frame=True):
        if frame:
            # a rejected START's frame is its abort beat alone
            got = await tb.recv_aborted(name)
            assert got.shape[0] == 0
        st = await tb.wait_idle(5000)
        assert st["ERROR"] == 1 and st["ERR_CAUSE"] == spec.ERRORS[name][0], (
            f"expected {name}, status {st}")
        assert st["DONE"] == 0
        tb.assert_no_frame(name)

    async def good_job(running=False):
        await tb.wr("CTRL", spec.pack_fields("CTRL", SOFT_RESET=1))
        if running:
            await tb.recv_aborted("SOFT_RESET")
            tb.reset_source()
        tb.model = ArrayModel(CFG)
        job = Job("IG", 9, R, C, {"LOAD_W", "ACC_CLEAR", "DRAIN"})
        await tb.run_job(job, **tb.random_job_data(job))

    # unknown mode
    await tb.wr("MODE", 3)
    await tb.wr("BATCH", 4)
    await tb.start()
    await expect_error("BAD_MODE")
    await good_job()
    # zero batch, too-large shape
    await tb.program(Job("WS", 1, R, C))
    await tb.wr("BATCH", 0)
    await tb.start()
    await expect_error("BAD_SHAPE")
    await tb.wr("BATCH", 1)
    await tb.wr("SHAPE", spec.pack_fields("SHAPE", ROWS_ACT=R + 1, COLS_ACT=C))
    await tb.start()
    await expect_error("BAD_SHAPE")
    # SWAP with nothing preloaded; LOAD_W with SWAP
    await tb.program(Job("WS", 2, R, C, {"SWAP"}))
    await tb.start()
    await expect_error("NO_PRELOAD")
    await tb.wr("MODE", spec.pack_fields("MODE", MODE=0, FLAGS=spec.flags_word("LOAD_W", "SWAP")))
    await tb.start()
    await expect_error("BAD_FLAGS")
    await tb.wr("MODE", spec.pack_fields("MODE", MODE=1, FLAGS=spec.flags_word("SAVE", "DRAIN")))
    await tb.start()
    await expect_error("BAD_FLAGS")
    await tb.wr("MODE", spec.pack_fields("MODE", MODE=1, FLAGS=spec.flags_word("DRAIN_PREV")))
    await tb.start()
    await expect_error("NO_SAVED")
    await good_job()

    # early tlast: the frame ends two beats before the job's end
    job = Job("WS", 10, R, C, {"LOAD_W"})
    d = tb.random_job_data(job)
    lanes = tb.model.job_input(job, **d)
    expect = copy.deepcopy(tb.model).run(job, lanes)
    await tb.program(job)
    await tb.start()
    tb.send(lanes[:-2])
    await tb.source.wait()
    await tb.recv_aborted("EARLY_TLAST", expect)
    await expect_error("EARLY_TLAST", frame=False)
    await ClockCycles(dut.clk, 40)
    tb.reset_source()
    await good_job()

    # missing tlast: the frame runs three beats past the job's end; they are discarded
    job = Job("OS", 6, R, C, {"ACC_CLEAR", "DRAIN"})
    d = tb.random_job_data(job)
    lanes = tb.model.job_input(job, **d)
    await tb.program(job)
    await tb.start()
    tb.send(np.concatenate([lanes, lanes[:3]]))
    await tb.source.wait()
    await expect_error("MISSING_TLAST")
    assert tb.source.empty()
    tb.reset_source()
    await good_job()

    # start while busy: error cause recorded, the running job completes correctly
    job = Job("IG", 60, R, C, {"LOAD_W", "ACC_CLEAR", "DRAIN"})
    d = tb.random_job_data(job)
    lanes = tb.model.job_input(job, **d)
    expect = tb.model.run(job, lanes)
    await tb.program(job)
    await tb.start()
    await tb.start()
    tb.send(lanes)
    got = await tb.recv(job.out_beats())
    st = await tb.wait_idle()
    assert st["DONE"] == 1 and st["ERROR"] == 1
    assert st["ERR_CAUSE"] == spec.ERRORS["START_BUSY"][0]
    assert_equal(got, expect, "job that survived a second START")
    tb.assert_no_frame("START_BUSY")

    # a start with no data never completes by itself, but is visible and resettable
    await tb.program(Job("WS", 3, R, C))
    await tb.start()
    await ClockCycles(dut.clk, 50)
    st = await tb.status()
    assert st["BUSY"] == 1 and st["COMPUTING"] == 1
    c = await tb.counters()
    await ClockCycles(dut.clk, 10)
    c2 = await tb.counters()
    assert c2["stall_in"] - c["stall_in"] > 0, "a starved job must count input stalls"
    await good_job(running=True)
    tb.check_protocol()


class AxilPins:
    """AXI4-Lite master driven pin by pin: AW and W with any skew, either order, and
    delayed BREADY / RREADY, checking that BVALID/RVALID (and RDATA) hold until taken."""

    def __init__(self, dut):
        self.dut = dut
        for n in ("awvalid", "wvalid", "bready", "arvalid", "rready", "awaddr", "wdata",
                  "araddr", "awprot", "arprot"):
            getattr(dut, f"s_axil_{n}").value = 0
        dut.s_axil_wstrb.value = 0xF

    async def write(self, addr, data, aw_delay=0, w_delay=0, b_delay=0, after_hs=None):
        """Write; ``after_hs`` (a coroutine function) is started in the cycle right after
        the later of the AW and W handshakes."""
        dut = self.dut
        aw_done = w_done = False
        t = 0
        while not (aw_done and w_done):
            if not aw_done:
                dut.s_axil_awvalid.value = 1 if t >= aw_delay else 0
                dut.s_axil_awaddr.value = addr
            if not w_done:
                dut.s_axil_wvalid.value = 1 if t >= w_delay else 0
                dut.s_axil_wdata.value = data
            await RisingEdge(dut.clk)
            if not aw_done and int(dut.s_axil_awvalid.value) and int(dut.s_axil_awready.value):
                aw_done = True
                dut.s_axil_awvalid.value = 0
            if not w_done and int(dut.s_axil_wvalid.value) and int(dut.s_axil_wready.value):
                w_done = True
                dut.s_axil_wvalid.value = 0
            t += 1
            assert t < 200, "AXI-Lite write address/data never accepted"
        if after_hs is not None:
            cocotb.start_soon(after_hs())
        seen = False
        for i in range(200):
            dut.s_axil_bready.value = 1 if i >= b_delay else 0
            await RisingEdge(dut.clk)
            bv = int(dut.s_axil_bvalid.value)
            if seen:
                assert bv, "BVALID dropped before BREADY"
            seen = seen or bv
            if bv and int(dut.s_axil_bready.value):
                dut.s_axil_bready.value = 0
                return
        raise AssertionError("no write response")

    async def read(self, addr, r_delay=0):
        dut = self.dut
        dut.s_axil_araddr.value = addr
        dut.s_axil_arvalid.value = 1
        for _ in range(200):
            await RisingEdge(dut.clk)
            if int(dut.s_axil_arready.value):
                break
        dut.s_axil_arvalid.value = 0
        held = None
        for i in range(200):
            dut.s_axil_rready.value = 1 if i >= r_delay else 0
            await RisingEdge(dut.clk)
            rv = int(dut.s_axil_rvalid.value)
            if held is not None:
                assert rv and int(dut.s_axil_rdata.value) == held, "RVALID/RDATA not held"
            if rv:
                held = int(dut.s_axil_rdata.value)
                if int(dut.s_axil_rready.value):
                    dut.s_axil_rready.value = 0
                    return held
        raise AssertionError("no read response")


@cocotb.test()
async def test_axil_order_skew_and_holds(dut):
    """AW and W in either order at any skew; BVALID/RVALID held until BREADY/RREADY; a read
    whose address comes in the cycle right after a CNT_SNAPSHOT write sees the new snapshot."""
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.s_axis_tvalid.value = 0
    dut.m_axis_tready.value = 0
    pins = AxilPins(dut)
    mons = start_monitors(dut)  # H4: protocol monitors in every test
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    rng = random.Random(SEED)
    off = spec.REG["BATCH"].offset
    for i, (aw, w) in enumerate([(0, 0), (0, 3), (3, 0), (0, 1), (1, 0), (7, 2), (2, 7)] +
                                [(rng.randint(0, 9), rng.randint(0, 9)) for _ in range(6)]):
        val = 1 + i * 37
        await pins.write(off, val, aw_delay=aw, w_delay=w, b_delay=rng.randint(0, 4))
        got = await pins.read(off, r_delay=rng.randint(0, 4))
        assert got == val, f"AW delay {aw}, W delay {w}: BATCH reads {got}, wrote {val}"
    # snapshot ordering: old snapshot, wait, snapshot write with AR in the next cycle
    lo = spec.COUNTER_BASE + 8 * [name for name, _ in spec.COUNTERS].index("cycles")
    ctrl = spec.REG["CTRL"].offset
    await pins.write(ctrl, spec.pack_fields("CTRL", CNT_SNAPSHOT=1))
    old = await pins.read(lo)
    await ClockCycles(dut.clk, 100)
    result = {}

    async def read_now():
        result["v"] = await pins.read(lo)

    await pins.write(ctrl, spec.pack_fields("CTRL", CNT_SNAPSHOT=1), b_delay=3,
                     after_hs=read_now)
    for _ in range(50):
        if "v" in result:
            break
        await RisingEdge(dut.clk)
    assert result["v"] >= old + 100, f"read after CNT_SNAPSHOT returned the old snapshot " \
                                     f"({result['v']} vs {old})"
    for m in mons:  # H4
        m.check()


@cocotb.test()
async def test_counter_reset_and_stalls(dut):
    """Counters reset to zero; with no idle/backpressure stalls are 0 and busy equals the
    formula; with heavy backpressure stall_out grows and busy still adds up."""
    tb = TB(dut, p_in_idle=0.0, p_out_busy=0.0)
    await tb.reset()
    await tb.wr("CTRL", spec.pack_fields("CTRL", CNT_RESET=1))
    c = await tb.counters()
    assert c["cycles"] < 20 and all(c[k] == 0 for k in c if k != "cycles"), c
    job = Job("IG", 64, CFG.rows, CFG.cols, {"LOAD_W", "ACC_CLEAR", "DRAIN"})
    lanes = tb.model.job_input(job, **tb.random_job_data(job))
    expect = tb.model.run(job, lanes)
    await tb.program(job)
    # queue the data first so the core never waits for input
    tb.send(lanes)
    await ClockCycles(dut.clk, 5)
    c0 = await tb.counters()
    await tb.start()
    got = await tb.recv(job.out_beats())
    await tb.wait_idle()
    assert_equal(got, expect, "no-stall job")
    d = counters_delta(await tb.counters(), c0)
    assert d["stall_out"] == 0 and d["stall_in"] == 0, d
    check_counters(d, [job], "no-stall")

    tb.set_stalls(0.0, 0.8)
    c0 = await tb.counters()
    await tb.run_job(job.__class__("IG", 64, CFG.rows, CFG.cols, job.flags),
                     **tb.random_job_data(job))
    d = counters_delta(await tb.counters(), c0)
    assert d["stall_out"] > 0
    check_counters(d, [job], "backpressure")
