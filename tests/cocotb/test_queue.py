"""cocotb testbench of job queues (CTRL.QUEUE, in-band job descriptors) against the golden
model (intergrad.golden.queue): queues of random jobs in every mode with random stalls on
both streams, the AXI4-Stream / AXI4-Lite protocol monitors on every test, errors in the
middle of a queue (each header check, a job aborted by an early or a missing TLAST, a soft
reset), the recovery after each, and the counters of a queue against the formula.

Run through pytest (tests/test_queue_cocotb.py); reuses the TB of test_intergrad_top.py.
"""
from __future__ import annotations

import numpy as np
import cocotb
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout
from cocotbext.axi import AxiStreamFrame

from intergrad import spec
from intergrad.descriptor import header_word, pack_queue
from intergrad.core import Job, unpack_beats
from intergrad.golden import ArrayModel
from intergrad.golden.queue import queue_counters, random_queue, run_queue
from test_intergrad_top import CFG, MAX_B, TB, assert_equal, counters_delta

IB, OB = CFG.in_axis_bits // 8, CFG.out_axis_bits // 8


def np_rng(tb):
    return np.random.default_rng(tb.rng.getrandbits(32))


def next_queue(tb, n, max_b=None, modes=("WS", "OS", "IG")):
    m = tb.model
    return random_queue(CFG, np_rng(tb), n, max_b or min(MAX_B, 40), modes,
                        preloaded=m.preloaded, saved_rows=m.state.saved_rows)


async def start_queue(tb):
    await tb.wr("CTRL", spec.pack_fields("CTRL", QUEUE=1))


async def queue_job_reg(tb):
    return spec.unpack_field("QUEUE", "JOB", await tb.rd("QUEUE"))


def frame_lanes(frame) -> np.ndarray:
    return unpack_beats(bytes(frame.tdata), CFG.out_lanes, CFG.acc_w, CFG.out_axis_bits)


def frame_timeout_us(jobs, slow: float = 0.9) -> int:
    """A bound on the wait for a queue's output frame: its jobs' busy cycles and beats (the
    queue formula, without stalls) as if every one waited for a stream side idle ``slow`` of
    the cycles, four times over, plus 2,000 cycles (10 ns clock).  A core that never starts
    or never ends the queue fails in this bound, not in the suite's timeout."""
    q = queue_counters(CFG, jobs)
    cycles = 4 * (q["busy_cycles"] + q["in_beats"] + q["out_beats"]) / (1.0 - slow) + 2000
    return int(cycles * 10 // 1000) + 1


async def run_queue_ok(tb, jobs, lanes, what=""):
    """One queue: one input frame, one output frame equal to the golden model's, DONE,
    QUEUE.JOB = the number of jobs, the counters' increments equal the queue formula."""
    exp = run_queue(tb.model, jobs, lanes)
    assert exp.error is None, exp.error
    c0 = await tb.counters()
    mark = tb.mon_out.mark()
    await start_queue(tb)
    tb.source.send_nowait(AxiStreamFrame(pack_queue(CFG, jobs, lanes)))
    frame = await with_timeout(tb.sink.recv(), frame_timeout_us(jobs), "us")
    st = await tb.wait_idle()
    assert st["ERROR"] == 0 and st["DONE"] == 1, f"{what}: {st}"
    tb.mon_out.expect_frames(1, mark, what)
    tb.assert_no_frame(what)
    assert_equal(frame_lanes(frame), exp.frame, f"{what}: output frame")
    assert await queue_job_reg(tb) == len(jobs)
    d = counters_delta(await tb.counters(), c0)
    q = queue_counters(CFG, jobs)
    for k in ("steps", "macs", "in_beats", "wload_beats", "out_beats", "jobs"):
        assert d[k] == q[k], f"{what}: counter {k}: RTL {d[k]} != queue formula {q[k]}"
    assert d["busy_cycles"] == q["busy_cycles"] + d["stall_in"] + d["stall_out"], (what, d, q)
    tb.check_protocol()
    return d


@cocotb.test()
async def test_queue_random_jobs_every_mode(dut):
    """Queues of random jobs (every mode, every flag: loads, preloads and swaps, transposed
    weights, accumulate / clear / drain / save and drain-previous) under random stalls on both
    streams; state carries over from queue to queue."""
    tb = TB(dut)
    await tb.reset()
    for i in range(6):
        jobs, lanes = next_queue(tb, tb.rng.randint(1, 12))
        await run_queue_ok(tb, jobs, lanes, f"queue {i}")
    for mode in ("WS", "OS", "IG"):
        jobs, lanes = next_queue(tb, 5, modes=(mode,))
        await run_queue_ok(tb, jobs, lanes, f"{mode}-only queue")


@cocotb.test()
async def test_queue_stall_patterns(dut):
    """No stalls, a slow source, a slow sink, both very slow: same frames and counters."""
    tb = TB(dut)
    await tb.reset()
    for p_in, p_out in ((0.0, 0.0), (0.8, 0.0), (0.0, 0.8), (0.6, 0.6)):
        tb.set_stalls(p_in, p_out)
        jobs, lanes = next_queue(tb, 6, max_b=12)
        d = await run_queue_ok(tb, jobs, lanes, f"stalls {p_in}/{p_out}")
        if p_in == p_out == 0.0:
            assert d["stall_in"] <= len(jobs) + 2  # only the first header can wait (DMA start)


@cocotb.test()
async def test_queue_mixed_with_programmed_jobs(dut):
    """A programmed job after a queue SWAPs in the weights the queue's last job preloaded;
    a queue after programmed jobs drains their saved accumulators (DRAIN_PREV)."""
    tb = TB(dut)
    await tb.reset()
    R, C = CFG.rows, CFG.cols
    pre = Job("WS", 4, R, C, {"LOAD_W", "PRELOAD"})
    d = tb.random_job_data(pre)
    await run_queue_ok(tb, [pre], [tb.model.job_input(pre, **d)], "preloading queue")
    swap = Job("WS", 5, R, C, {"SWAP"})
    await tb.run_job(swap, **tb.random_job_data(swap))
    save = Job("OS", 6, R, C, {"ACC_CLEAR", "SAVE"})
    await tb.run_job(save, **tb.random_job_data(save))
    dp = Job("WS", 3, R, C, {"LOAD_W", "DRAIN_PREV"}, prev_rows=R)
    await run_queue_ok(tb, [dp], [tb.model.job_input(dp, **tb.random_job_data(dp))],
                       "DRAIN_PREV queue")


def corrupt_header(data: bytes, jobs, k: int, **fields) -> bytes:
    """The queue's input with job k's header fields replaced (TLAST=1 also allowed, as a
    separate marker the caller applies by cutting the frame)."""
    off = sum(1 + j.in_beats() for j in jobs[:k]) * IB
    w = int.from_bytes(data[off:off + IB], "little")
    for name, v in fields.items():
        lsb, width = spec.header_field(name)
        w = (w & ~(((1 << width) - 1) << lsb)) | (v << lsb)
    return data[:off] + w.to_bytes(IB, "little") + data[off + IB:]


async def expect_queue_error(tb, data: bytes, jobs, lanes, k: int, cause: str, what: str,
                             aborted_job: bool = False):
    """Send a faulty queue: the output frame is the earlier jobs' beats (then, for a job
    aborted while streaming, a prefix of its own), then the abort beat (none if the frame had
    already ended); ERROR/ERR_CAUSE and QUEUE.JOB = k; the input frame is taken whole
    (discarded up to TLAST); the host's recovery (soft reset) leaves the core idle and the
    next queue exact."""
    model = tb.model
    done = run_queue(model, jobs[:k], lanes[:k], complete=False)
    assert done.error is None
    mark = tb.mon_out.mark()
    await start_queue(tb)
    tb.source.send_nowait(AxiStreamFrame(data))
    frame = await with_timeout(tb.sink.recv(), frame_timeout_us(jobs), "us")
    st = await tb.wait_idle()
    assert st["ERROR"] == 1 and st["ERR_CAUSE"] == spec.ERRORS[cause][0], (what, st)
    assert await queue_job_reg(tb) == k, what
    fr = tb.mon_out.expect_frames(1, mark, what)[0]
    raw = bytes(frame.tdata)
    # the frame may have ended before the error, and then no abort beat is added
    # (docs/registers.md): the LAST job an OS whose only output is the saved drain
    # (DRAIN_PREV, no DRAIN), one beat per input beat, its last on step prev_rows - 1, and
    # a MISSING_TLAST on its last input beat (step BATCH - 1)
    jk = jobs[k]
    ended = (aborted_job and cause == "MISSING_TLAST" and k == len(jobs) - 1
             and not jk.kind.data_out and jk.has("DRAIN_PREV") and not jk.has("DRAIN")
             and jk.prev_rows <= jk.batch)
    if not ended:
        assert raw[-OB:] == spec.abort_beat(CFG, cause), what
        raw = raw[:-OB]
    got = unpack_beats(raw, CFG.out_lanes, CFG.acc_w, CFG.out_axis_bits)
    n = done.frame.shape[0]
    assert_equal(got[:n], done.frame, f"{what}: beats of the jobs before {k}")
    if aborted_job:
        exp_k = model.run(jobs[k], lanes[k])
        assert got.shape[0] - n <= exp_k.shape[0], what
        assert not ended or got.shape[0] - n == exp_k.shape[0], what
        assert_equal(got[n:], exp_k[:got.shape[0] - n], f"{what}: prefix of job {k}")
    else:
        assert got.shape[0] == n, f"{what}: the rejected job {k} produced beats"
    assert len(fr) == got.shape[0] + (0 if ended else 1)
    assert tb.source.empty() and tb.source.idle(), f"{what}: input not discarded to TLAST"
    # the host's recovery: soft reset (the frame has ended: no abort beat is added)
    await tb.wr("CTRL", spec.pack_fields("CTRL", SOFT_RESET=1))
    st = await tb.wait_idle()
    assert st["ERROR"] == 0 and st["BUSY"] == 0 and await queue_job_reg(tb) == k, (what, st)
    await ClockCycles(tb.dut.clk, 20)
    tb.assert_no_frame(f"after the recovery from {what}")
    tb.model = ArrayModel(CFG)
    jobs2, lanes2 = next_queue(tb, 4, max_b=10)
    await run_queue_ok(tb, jobs2, lanes2, f"queue after {what}")


@cocotb.test()
async def test_queue_header_errors_mid_queue(dut):
    """Each header check fails in the middle of a queue: no tag, unknown mode, zero batch,
    a tile larger than the array, LOAD_W with SWAP, SWAP with nothing preloaded, DRAIN_PREV
    with nothing saved, a LAST job without output, a header carrying TLAST."""
    tb = TB(dut)
    await tb.reset()
    L, S, D, DP = (spec.flags_word(f) for f in ("LOAD_W", "SWAP", "DRAIN", "DRAIN_PREV"))
    cases = [
        ("no tag", dict(TAG=0x5A), "BAD_HEADER"),
        ("mode 3", dict(MODE=3), "BAD_MODE"),
        ("batch 0", dict(BATCH=0), "BAD_SHAPE"),
        ("rows > ROWS", dict(ROWS_ACT=CFG.rows + 1), "BAD_SHAPE"),
        ("cols 0", dict(COLS_ACT=0), "BAD_SHAPE"),
        ("LOAD_W+SWAP", dict(FLAGS=L | S), "BAD_FLAGS"),
        ("SWAP, none preloaded", dict(FLAGS=S, MODE=0), "NO_PRELOAD"),
        ("DRAIN_PREV, none saved", dict(FLAGS=L | DP, MODE=0), "NO_SAVED"),
        ("LAST without output", dict(MODE=1, FLAGS=0, LAST=1), "BAD_HEADER"),
    ]
    for what, fields, cause in cases:
        # jobs before k: no preload and no save pending when job k's header is checked (the
        # soft reset clears what the previous case's last queue left)
        await tb.wr("CTRL", spec.pack_fields("CTRL", SOFT_RESET=1))
        await tb.wait_idle()
        tb.model = ArrayModel(CFG)
        jobs = [Job("WS", tb.rng.randint(1, 10), tb.rng.randint(1, CFG.rows),
                    tb.rng.randint(1, CFG.cols), {"LOAD_W"}) for _ in range(5)]
        lanes = [tb.model.job_input(j, **tb.random_job_data(j)) for j in jobs]
        k = tb.rng.randint(1, 3)
        data = corrupt_header(pack_queue(CFG, jobs, lanes), jobs, k, **fields)
        await expect_queue_error(tb, data, jobs, lanes, k, cause, what)
    # a header with TLAST: the input frame ends there
    tb.model = ArrayModel(CFG)
    jobs, lanes = next_queue(tb, 5, max_b=10)
    k = 2
    data = pack_queue(CFG, jobs, lanes)
    cut = (sum(1 + j.in_beats() for j in jobs[:k]) + 1) * IB
    await expect_queue_error(tb, data[:cut], jobs, lanes, k, "EARLY_TLAST", "header with TLAST")


@cocotb.test()
async def test_queue_job_aborted_mid_stream(dut):
    """A job of the queue aborted while streaming: TLAST early inside job k (the input frame
    cut short), or no TLAST on the LAST job's last beat (a longer frame: discarded to its
    TLAST); under stalls."""
    tb = TB(dut)
    await tb.reset()
    for fault in ("early", "missing", "early", "missing"):
        tb.model = ArrayModel(CFG)
        jobs, lanes = next_queue(tb, 5, max_b=16)
        data = pack_queue(CFG, jobs, lanes)
        if fault == "early":
            # TLAST on any beat of a job that is not the LAST is early
            k = tb.rng.randint(0, len(jobs) - 2)
            start = sum(1 + j.in_beats() for j in jobs[:k]) + 1
            cut = start + tb.rng.randint(0, jobs[k].in_beats() - 1)
            data, cause = data[:(cut + 1) * IB], "EARLY_TLAST"
        else:
            k = len(jobs) - 1
            data, cause = data + bytes(tb.rng.randint(1, 6) * IB), "MISSING_TLAST"
        await expect_queue_error(tb, data, jobs, lanes, k, cause, f"{fault} TLAST in job {k}",
                                 aborted_job=True)


@cocotb.test()
async def test_queue_soft_reset_mid_queue(dut):
    """A soft reset while a queue runs (its input stops in the middle, or while it waits for
    a header): the frame ends with the SOFT_RESET abort beat after the beats produced, the
    core is idle, QUEUE.JOB says how far it got, the next queue is exact."""
    tb = TB(dut)
    await tb.reset()
    for where in ("header", "stream"):
        tb.model = ArrayModel(CFG)
        jobs, lanes = next_queue(tb, 4, max_b=12)
        jobs[2] = Job("OS", 8, CFG.rows, CFG.cols, {"ACC_CLEAR", "DRAIN"})
        lanes[2] = tb.model.job_input(jobs[2], **tb.random_job_data(jobs[2]))
        if jobs[3].has("DRAIN_PREV") or jobs[3].has("SWAP"):   # state job 2 no longer leaves
            jobs[3] = Job("WS", 4, CFG.rows, CFG.cols, {"LOAD_W"})
            lanes[3] = tb.model.job_input(jobs[3], **tb.random_job_data(jobs[3]))
        data = pack_queue(CFG, jobs, lanes)
        k = 2
        off = sum(1 + j.in_beats() for j in jobs[:k]) + (0 if where == "header" else 2)
        assert jobs[k].in_beats() > 3
        done = run_queue(tb.model, jobs[:k], lanes[:k], complete=False)
        mark = tb.mon_out.mark()
        await start_queue(tb)
        b0 = tb.mon_in.beats
        tb.source.clear_pause_generator()
        tb.source.pause = False
        tb.source.send_nowait(AxiStreamFrame(data))
        # hold the source (between beats: the frame has no TLAST yet) once `off` beats went
        # (one more may pass: job k's header, or a third beat of job k)
        for _ in range(200000):
            await RisingEdge(tb.dut.clk)
            if tb.mon_in.beats - b0 >= off:
                tb.source.pause = True
                break
        await ClockCycles(tb.dut.clk, 200)
        assert await queue_job_reg(tb) == k, where
        st = await tb.status()
        assert st["COMPUTING"] == 1 and st["ERROR"] == 0, (where, st)
        await tb.wr("CTRL", spec.pack_fields("CTRL", SOFT_RESET=1))
        got = await tb.recv_aborted("SOFT_RESET")
        assert got.shape[0] >= done.frame.shape[0]
        assert_equal(got[:done.frame.shape[0]], done.frame, f"soft reset at {where}")
        st = await tb.wait_idle()
        assert st["BUSY"] == 0 and st["ERROR"] == 0 and await queue_job_reg(tb) == k
        tb.mon_out.expect_frames(1, mark, f"soft reset at {where}")
        tb.reset_source()
        tb.model = ArrayModel(CFG)
        jobs2, lanes2 = next_queue(tb, 3, max_b=10)
        await run_queue_ok(tb, jobs2, lanes2, f"queue after soft reset at {where}")


@cocotb.test()
async def test_queue_start_while_busy(dut):
    """START or QUEUE written while a queue runs: START_BUSY, the queue goes on and its
    frame is exact (the error stays in STATUS, DONE is not set)."""
    tb = TB(dut)
    await tb.reset()
    tb.set_stalls(0.9, 0.0)       # a slow source keeps the queue running
    jobs, lanes = next_queue(tb, 3, max_b=20)
    exp = run_queue(tb.model, jobs, lanes)
    await start_queue(tb)
    tb.source.send_nowait(AxiStreamFrame(pack_queue(CFG, jobs, lanes)))
    await ClockCycles(tb.dut.clk, 30)
    await tb.wr("CTRL", spec.pack_fields("CTRL", QUEUE=1))
    await tb.start()
    frame = await with_timeout(tb.sink.recv(), frame_timeout_us(jobs), "us")
    st = await tb.wait_idle()
    assert st["ERROR"] == 1 and st["ERR_CAUSE"] == spec.ERRORS["START_BUSY"][0], st
    assert_equal(frame_lanes(frame), exp.frame, "queue with START_BUSY")
    assert header_word(jobs[0], False) & 0xFF == spec.HEADER_TAG
    tb.check_protocol()
