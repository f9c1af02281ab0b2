"""Fault injection on both backends: the sim backend (the compliant stream master and sink
of the C++ harness) and the pynq backend driven over the register-level AXI DMA model
(intergrad.device.axi_dma_model) with PYNQ's DMA driver code (intergrad.device.pynq_emu).

Every test ends within a wall-clock bound (asserted, and enforced by a SIGALRM timer that
interrupts any Python loop that would spin), raises an error naming the cause, leaves the
device idle, and the next job is bit-exact against the golden model.  PYNQ's unbounded
``stop()`` is replaced by one that fails the test: the backend must never call it.
"""
from __future__ import annotations

import contextlib
import signal
import time

import numpy as np
import pytest

from intergrad import spec
from intergrad.device import CoreError, DeviceError, DeviceTimeout
from intergrad.device.axi_dma_model import EmulatedHang
from intergrad.device.pynq_backend import PynqDevice
from intergrad.device.pynq_emu import EmuSDMAChannel, make_pynq_module
from intergrad.driver import Accelerator
from intergrad.core import Job, pack_beats
from intergrad.golden import ArrayModel

#: wall-clock bound of one fault scenario, seconds (the slowest here take well under 2 s)
BOUND = 8.0


class Hang(Exception):
    pass


@contextlib.contextmanager
def bounded(seconds: float = BOUND):
    """Fail (instead of hanging) if the block runs longer than ``seconds``."""
    def on_alarm(signum, frame):
        raise Hang(f"did not finish within {seconds} s")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    t0 = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert time.monotonic() - t0 < seconds


@pytest.fixture(params=["sim", "pynq"])
def rig(request, dev, monkeypatch):
    """(device, backend name) with PYNQ's stop() forbidden; afterwards, the stream monitor
    of the harness must have seen no AXI4-Stream rule broken on either stream during the
    test (the RTL before the frame contract dropped TVALID in a soft reset: caught here)."""
    def forbidden_stop(self):
        raise AssertionError("the backend called PYNQ's DMA stop(), which can spin forever")
    monkeypatch.setattr(EmuSDMAChannel, "stop", forbidden_stop)
    v0 = dev.violations()
    if request.param == "sim":
        yield dev, "sim"
    else:
        board = PynqDevice("intergrad.bit", pynq_module=make_pynq_module(dev))
        yield board, "pynq"
        board.close()
    dev.set_stalls(0.0, 0.0)
    v1 = dev.violations()
    assert v1["s_axis"] == v0["s_axis"], v1  # the harness's own master
    assert v1["m_axis"] == v0["m_axis"], v1


def ws_job(cfg, B=12, seed=0):
    rng = np.random.default_rng(seed)
    job = Job("WS", B, cfg.rows, cfg.cols, {"LOAD_W"})
    lanes = ArrayModel(cfg).job_input(job, weights=rng.integers(-99, 99, (cfg.rows, cfg.cols)),
                                      top=rng.integers(-99, 99, (B, cfg.cols)))
    return job, lanes


def program(d, job, rows_act=None):
    """Write a job's registers and START, bypassing the driver's own validation."""
    d.write(spec.REG["MODE"].offset, spec.pack_fields(
        "MODE", MODE=spec.MODES[job.mode], FLAGS=spec.flags_word(*job.flags)))
    d.write(spec.REG["BATCH"].offset, job.batch)
    d.write(spec.REG["SHAPE"].offset, spec.pack_fields(
        "SHAPE", ROWS_ACT=job.rows_act if rows_act is None else rows_act, COLS_ACT=job.cols_act))
    d.write(spec.REG["CTRL"].offset, spec.pack_fields("CTRL", START=1))


def assert_idle(d):
    st = d.status()
    assert st["BUSY"] == 0 and st["ERROR"] == 0, st
    for f in ("COMPUTING", "OUT_PENDING"):
        assert st.get(f, 0) == 0, st


def assert_next_job_exact(acc, seed=1):
    """An InterGrad job (weights loaded, accumulators cleared and drained) equals the
    golden model bit for bit, with the streams stalling."""
    cfg = acc.cfg
    acc._shadow.clear()
    rng = np.random.default_rng(seed)
    B = 9
    job = Job("IG", B, cfg.rows, cfg.cols, {"LOAD_W", "ACC_CLEAR", "DRAIN"})
    m = ArrayModel(cfg)
    lanes = m.job_input(job, weights=rng.integers(-500, 500, (cfg.rows, cfg.cols)),
                        left=rng.integers(-500, 500, (B, cfg.rows)),
                        top=rng.integers(-500, 500, (B, cfg.cols)))
    out = acc.run_job(job, lanes, timeout=5)
    assert np.array_equal(out, m.run(job, lanes))
    assert_idle(acc.device)


def sim_of(d):
    return d if d.backend == "sim" else d.overlay.system.sim


# ------------------------------------------------------------------------- error mid-job
def test_early_tlast_mid_job(rig):
    d, kind = rig
    acc = Accelerator(d)
    cfg = acc.cfg
    job, lanes = ws_job(cfg, B=30)
    sim_of(d).set_stalls(0.3, 0.4, seed=3)
    with bounded():
        program(d, job)
        # the stream ends two beats early (the DMA puts TLAST on its last beat)
        with pytest.raises(CoreError, match="EARLY_TLAST") as ei:
            d.transfer(pack_beats(lanes[:-2], cfg.data_w, cfg.in_axis_bits), job.out_beats(),
                       timeout=5)
        assert ei.value.cause == "EARLY_TLAST"
        assert_idle(d)
    if kind == "sim":
        # the frame the sink saw: the beats produced before the error, then the abort beat
        ob = cfg.out_axis_bits // 8
        fr = d.last_frame
        assert d.last_frame_tlast and 0 < len(fr) // ob < job.out_beats()
        assert fr[-ob:] == spec.abort_beat(cfg, "EARLY_TLAST")
        # the beats before it are the job's first results, as the golden model has them
        from intergrad.core import unpack_beats
        n = len(fr) // ob - 1
        got = unpack_beats(fr[:n * ob], cfg.out_lanes, cfg.acc_w, cfg.out_axis_bits)
        assert np.array_equal(got, ArrayModel(cfg).run(job, lanes)[:n])
    with bounded():
        assert_next_job_exact(acc)


def test_missing_tlast_mid_job(rig):
    """The job's last beat without TLAST: on the board, a longer buffer than the job takes
    (the core discards up to the DMA's TLAST); in sim also a stream with no TLAST at all."""
    d, kind = rig
    acc = Accelerator(d)
    cfg = acc.cfg
    job, lanes = ws_job(cfg, B=10)
    extra = np.concatenate([lanes, lanes[:3]])
    with bounded():
        program(d, job)
        with pytest.raises(CoreError, match="MISSING_TLAST"):
            d.transfer(pack_beats(extra, cfg.data_w, cfg.in_axis_bits), job.out_beats(),
                       timeout=5)
        assert_idle(d)
        if kind == "sim":
            program(d, job)
            with pytest.raises(CoreError, match="MISSING_TLAST"):
                d.transfer(pack_beats(lanes, cfg.data_w, cfg.in_axis_bits), job.out_beats(),
                           timeout=5, tlast=False)
            assert_idle(d)
    with bounded():
        assert_next_job_exact(acc, seed=2)


# ----------------------------------------------------------------- starving output side
def test_no_receive_posted(rig):
    """A job with output but no S2MM transfer: the core stalls; a timeout with status and
    counters, then the recovery drains the pending beat (and the abort beat)."""
    d, kind = rig
    acc = Accelerator(d)
    cfg = acc.cfg
    job, lanes = ws_job(cfg, B=12)
    with bounded():
        program(d, job)
        with pytest.raises(DeviceTimeout, match=r"(?s)not finished.*BUSY=1.*counters:.*stall_out="):
            d.transfer(pack_beats(lanes, cfg.data_w, cfg.in_axis_bits), 0, timeout=0.3)
        assert_idle(d)
        ob = cfg.out_axis_bits // 8
        drained = d.drained_beats if kind == "sim" else d.drained_bytes // ob
        assert drained >= 2  # at least the held beat and the abort beat
    with bounded():
        assert_next_job_exact(acc, seed=3)


def test_sink_never_ready(rig):
    """The S2MM side never accepts (TREADY stuck low): a timeout; the recovery cannot
    drain a sink that never takes a beat, so it says so within its bound; once the sink
    works again, recovery completes and the next job is exact."""
    d, kind = rig
    acc = Accelerator(d)
    cfg = acc.cfg
    job, lanes = ws_job(cfg, B=12)
    sim = sim_of(d)
    sim.set_stalls(0.0, 1.0)
    with bounded():
        program(d, job)
        with pytest.raises(DeviceError, match=r"(?s)not finished.*stall_out=") as ei:
            d.transfer(pack_beats(lanes, cfg.data_w, cfg.in_axis_bits), job.out_beats(),
                       timeout=0.3)
        # the held beat cannot go anywhere: the recovery says so
        assert "recovery failed" in str(ei.value) and "OUT_PENDING=1" in str(ei.value)
    sim.set_stalls(0.0, 0.0)
    with bounded():
        d.recover()
        assert_idle(d)
        assert_next_job_exact(acc, seed=4)


# --------------------------------------------------------------------- timeout (input side)
def test_input_never_arrives(rig):
    """The MM2S side never presents a beat (TVALID stuck low): a timeout naming the
    status and counters; the soft reset's abort beat ends the posted receive."""
    d, kind = rig
    acc = Accelerator(d)
    cfg = acc.cfg
    job, lanes = ws_job(cfg, B=12)
    sim = sim_of(d)
    sim.set_stalls(1.0, 0.0)
    try:
        with bounded():
            program(d, job)
            with pytest.raises(DeviceTimeout, match=r"(?s)not finished.*BUSY=1.*stall_in="):
                d.transfer(pack_beats(lanes, cfg.data_w, cfg.in_axis_bits), job.out_beats(),
                           timeout=0.3)
            assert_idle(d)
            if kind == "sim":
                # the abort beat ended the posted receive, or (if the DMA reset came first)
                # the drain took it
                assert (d.last_frame or d.last_drain) == spec.abort_beat(cfg, "SOFT_RESET")
    finally:
        sim.set_stalls(0.0, 0.0)
    with bounded():
        assert_next_job_exact(acc, seed=5)


# ------------------------------------------------ soft reset with a beat pending, backpressure
def test_soft_reset_with_pending_beat(rig):
    d, kind = rig
    acc = Accelerator(d)
    cfg = acc.cfg
    job, lanes = ws_job(cfg, B=6)
    m = ArrayModel(cfg)
    expect = m.run(job, lanes)
    sim = sim_of(d)
    ob = cfg.out_axis_bits // 8
    data = np.frombuffer(pack_beats(lanes, cfg.data_w, cfg.in_axis_bits), dtype=np.uint8).copy()
    with bounded():
        program(d, job)
        # stream the input with no receive: the first result beat waits in the core
        sim.src_post(data, job.in_beats())
        sim.run(2000)
        ss = sim.stream_state()
        assert ss["out_valid"] == 1 and d.status()["BUSY"] == 1  # stalled on the output
        assert d.status()["OUT_PENDING"] == 1
        d.write(spec.REG["CTRL"].offset, spec.pack_fields("CTRL", SOFT_RESET=1))
        sim.src_abort()  # the DMA reset of the recovery sequence
        assert sim.stream_state()["out_valid"] == 1  # the soft reset did not withdraw it
        if kind == "sim":
            # receive under random backpressure: the held beat, then the abort beat
            sim.set_stalls(0.0, 0.7, seed=9)
            buf = np.zeros(16 * ob, dtype=np.uint8)
            sim.snk_post(buf, 16)
            ev = sim.run(5000, stop=2)
            n = sim.stream_state()["snk_beats"]
            assert ev & 2 and n == 2
            first = np.frombuffer(buf[:ob].tobytes(), dtype=np.uint8)
            from intergrad.core import unpack_beats
            got = unpack_beats(first.tobytes(), cfg.out_lanes, cfg.acc_w, cfg.out_axis_bits)
            assert np.array_equal(got[0], expect[0])
            assert buf[ob:2 * ob].tobytes() == spec.abort_beat(cfg, "SOFT_RESET")
            sim.set_stalls(0.0, 0.0)
        else:
            sim.set_stalls(0.0, 0.7, seed=9)
            d.recover()  # soft reset again, DMA reset, drain through a posted S2MM transfer
            sim.set_stalls(0.0, 0.0)
            assert d.drained_bytes == 2 * ob
        d.recover()
        assert_idle(d)
    with bounded():
        assert_next_job_exact(acc, seed=6)


def test_aborted_job_without_output(rig):
    """An OS job that saves its accumulators has no output frame, so no receive is posted;
    aborted (its input ends early), it still sends the abort beat, which waits in the core
    (OUT_PENDING) until the recovery drains it."""
    d, kind = rig
    acc = Accelerator(d)
    cfg = acc.cfg
    rng = np.random.default_rng(4)
    job = Job("OS", 8, cfg.rows, cfg.cols, {"ACC_CLEAR", "SAVE"})
    lanes = ArrayModel(cfg).job_input(job, left=rng.integers(-9, 9, (8, cfg.rows)),
                                      top=rng.integers(-9, 9, (8, cfg.cols)))
    assert job.out_beats() == 0
    with bounded():
        program(d, job)
        with pytest.raises(CoreError, match="EARLY_TLAST"):
            d.transfer(pack_beats(lanes[:-3], cfg.data_w, cfg.in_axis_bits), 0, timeout=5)
        assert_idle(d)
        if kind == "sim":
            assert d.last_drain == spec.abort_beat(cfg, "EARLY_TLAST")
        else:
            assert d.drained_bytes == cfg.out_axis_bits // 8
        # and the same job, whole, completes with no frame at all
        acc._shadow.clear()
        assert acc.run_job(job, lanes).shape[0] == 0
        assert d.status()["SAVED"] == 1
        assert_next_job_exact(acc, seed=10)


# ------------------------------------------------------------------------- rejected START
def test_rejected_start_bad_shape(rig):
    d, kind = rig
    acc = Accelerator(d)
    cfg = acc.cfg
    job, lanes = ws_job(cfg, B=5)
    with bounded():
        program(d, job, rows_act=0)
        with pytest.raises(CoreError, match="BAD_SHAPE") as ei:
            d.transfer(pack_beats(lanes, cfg.data_w, cfg.in_axis_bits), job.out_beats(),
                       timeout=5)
        assert ei.value.cause == "BAD_SHAPE"
        assert_idle(d)
        if kind == "sim":
            assert d.last_frame == spec.abort_beat(cfg, "BAD_SHAPE")  # the abort beat alone
    with bounded():
        assert_next_job_exact(acc, seed=7)


def test_driver_reports_core_error_with_job_and_recovers(rig):
    """The host believes accumulators are saved, the core has none: the core rejects the
    DRAIN_PREV job (NO_SAVED); the driver names the job and cause, forgets its state, and
    its next job is exact."""
    d, kind = rig
    acc = Accelerator(d)
    cfg = acc.cfg
    acc.state.saved, acc.state.saved_rows = True, cfg.rows
    job = Job("WS", 3, cfg.rows, cfg.cols, {"LOAD_W", "DRAIN_PREV"}, prev_rows=cfg.rows)
    lanes = ArrayModel(cfg).job_input(job, weights=np.ones((cfg.rows, cfg.cols), int),
                                      top=np.ones((3, cfg.cols), int))
    with bounded():
        with pytest.raises(CoreError, match=r"job WS B=3.*NO_SAVED") as ei:
            acc.run_job(job, lanes, timeout=5)
        assert ei.value.cause == "NO_SAVED" and not acc.state.saved
        assert_idle(d)
        assert_next_job_exact(acc, seed=8)


# ------------------------------------------------------ PYNQ's stop() on a starving S2MM
def test_pynq_stop_spins_on_a_starving_s2mm(dev):
    """What the backend avoids: PYNQ's stop() on an S2MM transfer whose TLAST never comes
    does not return (the channel halts only when its transfer completes)."""
    board = PynqDevice("intergrad.bit", pynq_module=make_pynq_module(dev))
    try:
        model = board.dma.mmio.model
        buf = board._buffer("_outbuf", 4096)
        board.dma.recvchannel.transfer(buf, nbytes=4096)  # nothing will ever be sent
        model.spin_limit = model.accesses + 3000
        with bounded(), pytest.raises(EmulatedHang):
            board.dma.recvchannel.stop()
        model.spin_limit = None
        assert board.dma.read(0x34) & 0x1 == 0  # still running: RS=0 waits for the transfer
        with bounded():
            board.recover()
            assert_idle(board)
            assert_next_job_exact(Accelerator(board), seed=9)
    finally:
        board.close()


# ------------------------------------------------------------------ errors inside a queue
def _queue(acc, n=6, seed=0):
    from intergrad.golden.queue import random_queue
    return random_queue(acc.cfg, np.random.default_rng(seed), n, 12)


def _start_queue(d):
    d.write(spec.REG["CTRL"].offset, spec.pack_fields("CTRL", QUEUE=1))


def _queue_job(d):
    return spec.unpack_field("QUEUE", "JOB", d.read(spec.REG["QUEUE"].offset))


def assert_next_pass_exact(acc, seed):
    from intergrad.golden.queue import run_queue
    jobs, lanes = _queue(acc, 5, seed)
    exp = run_queue(ArrayModel(acc.cfg), jobs, lanes)
    for o, e in zip(acc.run_pass(jobs, lanes, timeout=5), exp.outputs):
        assert np.array_equal(o, e)
    assert_idle(acc.device)


@pytest.mark.parametrize("fault", ["early_tlast", "missing_tlast"])
def test_tlast_fault_inside_a_queue(rig, fault):
    """The input frame of a queue cut short inside job k (the DMA's TLAST comes early), or
    longer than the queue (the LAST job's last beat has no TLAST): the core reports the cause
    and QUEUE.JOB = the job, ends the output frame with the abort beat (after the earlier
    jobs' beats), discards the rest of the input; after the recovery the next pass is exact."""
    from intergrad.descriptor import pack_queue, queue_out_beats
    from intergrad.golden.queue import run_queue
    d, kind = rig
    acc = Accelerator(d)
    cfg = acc.cfg
    jobs, lanes = _queue(acc, 6, seed=3)
    data = pack_queue(cfg, jobs, lanes)
    ib = cfg.in_axis_bits // 8
    if fault == "early_tlast":
        k = 3
        cut = sum(1 + j.in_beats() for j in jobs[:k]) + 1 + jobs[k].in_beats() // 2
        data, cause = data[:cut * ib], "EARLY_TLAST"
    else:
        k = len(jobs) - 1
        data, cause = data + bytes(5 * ib), "MISSING_TLAST"
    sim_of(d).set_stalls(0.2, 0.2, seed=9)
    with bounded():
        _start_queue(d)
        with pytest.raises(CoreError, match=cause) as ei:
            d.transfer(data, queue_out_beats(jobs), timeout=5)
        assert ei.value.cause == cause
        assert _queue_job(d) == k
        assert_idle(d)
        if kind == "sim":
            ob = cfg.out_axis_bits // 8
            assert d.last_frame_tlast and d.last_frame[-ob:] == spec.abort_beat(cfg, cause)
            done = run_queue(ArrayModel(cfg), jobs[:k], lanes[:k], complete=False).frame
            from intergrad.core import unpack_beats
            got = unpack_beats(d.last_frame[:-ob], cfg.out_lanes, cfg.acc_w, cfg.out_axis_bits)
            assert np.array_equal(got[:len(done)], done)   # then a prefix of job k's beats
            assert len(got) - len(done) <= jobs[k].out_beats()
    with bounded():
        assert_next_pass_exact(acc, seed=4)


def test_driver_reports_queue_job_and_recovers(rig):
    """The host believes weights are preloaded, the core has none: the core rejects the SWAP
    job k of the pass (NO_PRELOAD; the jobs before it use no weights); run_pass names job k
    and the cause, forgets its state, and the next pass is exact."""
    d, kind = rig
    acc = Accelerator(d)
    cfg = acc.cfg
    m = ArrayModel(cfg)
    rng = np.random.default_rng(5)
    R, C = cfg.rows, cfg.cols
    jobs = [Job("OS", 4, R, C, {"ACC_CLEAR", "DRAIN"}), Job("OS", 3, R, C, {"DRAIN"}),
            Job("WS", 3, R, C, {"SWAP"}), Job("WS", 2, R, C, {"LOAD_W"})]
    k = 2
    lanes = [m.job_input(j, weights=rng.integers(-9, 9, (R, C)) if j.has("LOAD_W") else None,
                         left=rng.integers(-9, 9, (j.batch, R)) if j.mode == "OS" else None,
                         top=rng.integers(-9, 9, (j.batch, C))) for j in jobs]
    acc.state.preloaded = True
    with bounded():
        with pytest.raises(CoreError, match=rf"pass job {k} .*NO_PRELOAD") as ei:
            acc.run_pass(jobs, lanes, timeout=5)
        assert ei.value.cause == "NO_PRELOAD" and ei.value.job == k
        assert not acc.state.preloaded
        assert_idle(d)
        assert_next_pass_exact(acc, seed=6)
