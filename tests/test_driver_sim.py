"""The full driver on the real simulated hardware (Verilator build of hls_verilog/).

Random GEMM and convolution shapes through the scheduler must equal the golden model
bit-exactly in every schedule, and the counters read back through the driver must equal the
closed-form formulas of the jobs the plan issued.
"""
from __future__ import annotations

import numpy as np
import pytest

from intergrad import spec
from intergrad.conv import conv2d_backward, conv2d_forward, im2col
from intergrad.device import CoreError, DeviceTimeout
from intergrad.driver import Accelerator
from intergrad.core import Job, JobError
from intergrad.golden import ArrayModel, junk_outside_tile
from intergrad.plan import plan_counters, plan_pass
from intergrad.scheduler import Scheduler, gemm_reference

EXACT = ("steps", "macs", "in_beats", "out_beats", "wload_beats", "jobs")


def check_record(cfg, rec):
    exp = plan_counters(cfg, plan_pass(cfg, rec.pass_, rec.B, rec.N, rec.M), rec.queued)
    for k in EXACT:
        assert rec.counters[k] == exp[k], f"{rec.pass_} {rec.B}x{rec.N}x{rec.M}: {k} " \
                                          f"{rec.counters[k]} != formula {exp[k]}"
    c = rec.counters
    assert c["busy_cycles"] == exp["busy_cycles"] + c["stall_in"] + c["stall_out"]


# full-range operands overflow the accumulator on purpose (warned): results must still wrap
# exactly as the golden model says
@pytest.mark.filterwarnings("ignore:.*may exceed the.*accumulator")
@pytest.mark.parametrize("stalls", [(0.0, 0.0), (0.3, 0.4)], ids=["nostall", "stalls"])
def test_random_fc_all_schedules(dev, stalls):
    random_fc_all_schedules(dev, stalls)


@pytest.mark.filterwarnings("ignore:.*may exceed the.*accumulator")
def test_narrow_widths_built_in_cache_path_with_space(tmp_path, monkeypatch):
    """8-bit data and 20-bit accumulators (the sim build's native sign extension of 8-bit
    operands), built in a cache directory whose path has a space (Verilator's makefiles
    cannot build there; the library is built elsewhere and cached there)."""
    from intergrad.device.sim import SimDevice
    from intergrad.spec import ArrayConfig
    monkeypatch.setenv("INTERGRAD_CACHE", str(tmp_path / "sim cache"))
    d = SimDevice(ArrayConfig(3, 5, 8, 20, 1), verbose=False)
    try:
        random_fc_all_schedules(d, (0.2, 0.2))
    finally:
        d.close()
    assert list((tmp_path / "sim cache" / "sim").glob("3x5_d8a20m1_*/libintergrad_sim.so"))


def random_fc_all_schedules(dev, stalls):
    """With stalls: the harness's master idles only between beats (TVALID held until the
    handshake, as a DMA's MM2S does) and the sink's TREADY toggles at random; its stream
    monitor must see no AXI4-Stream rule broken on either stream."""
    v0 = dev.violations()
    dev.set_stalls(*stalls, seed=11)
    acc = Accelerator(dev)
    s = Scheduler(acc)
    rng = np.random.default_rng(5)
    lim = 1 << (acc.cfg.data_w - 1)
    for _ in range(5):
        B, N, M = (int(v) for v in rng.integers(1, 40, 3))
        X = rng.integers(-lim, lim, (B, N))
        W = rng.integers(-lim, lim, (N, M))
        dY = rng.integers(-lim, lim, (B, M))
        Y = s.fc_forward(X, W)
        assert np.array_equal(Y, gemm_reference(X, W, acc.cfg.acc_w))
        for sched in ("baseline", "intergrad"):
            dX, dW = s.fc_backward(X, W, dY, schedule=sched)
            assert np.array_equal(dX, gemm_reference(dY, W.T, acc.cfg.acc_w)), sched
            assert np.array_equal(dW, gemm_reference(X.T, dY, acc.cfg.acc_w)), sched
    for rec in s.report:
        check_record(acc.cfg, rec)
    if stalls != (0.0, 0.0):
        assert sum(r.counters["stall_in"] for r in s.report) > 0
        assert sum(r.counters["stall_out"] for r in s.report) > 0
    dev.set_stalls(0.0, 0.0)
    v1 = dev.violations()
    assert (v1["m_axis"], v1["s_axis"]) == (v0["m_axis"], v0["s_axis"]), v1


def test_intergrad_streams_dy_once(dev):
    acc = Accelerator(dev)
    s = Scheduler(acc)
    rng = np.random.default_rng(2)
    B, N, M = 50, 2 * acc.cfg.rows + 1, acc.cfg.cols + 3
    X, W, dY = (rng.integers(-50, 50, sh) for sh in ((B, N), (N, M), (B, M)))
    s.fc_backward(X, W, dY, schedule="baseline")
    s.fc_backward(X, W, dY, schedule="intergrad")
    base = s.report.totals(schedule="baseline")
    ig = s.report.totals(schedule="intergrad")
    # data beats: neither weights nor a queued job's header beat
    hdr = {sch: sum(r.counters["jobs"] for r in s.report if r.schedule == sch and r.queued)
           for sch in ("baseline", "intergrad")}
    data_base = base["in_beats"] - base["wload_beats"] - hdr["baseline"]
    data_ig = ig["in_beats"] - ig["wload_beats"] - hdr["intergrad"]
    tiles = -(-N // acc.cfg.rows) * -(-M // acc.cfg.cols)
    assert data_base == 2 * B * tiles and data_ig == B * tiles
    if acc.cfg.dual_mac:
        assert ig["busy_cycles"] < base["busy_cycles"]
    else:  # one time-shared multiplier: two cycles per step, so no cycle saving, only beats
        assert ig["busy_cycles"] <= base["busy_cycles"]
        assert ig["steps"] < base["steps"]


def test_batch_chunking_beyond_batch_register(dev):
    """B > 65535 splits into chunks that keep accumulating dW in the PEs."""
    acc = Accelerator(dev)
    s = Scheduler(acc)
    rng = np.random.default_rng(3)
    B, N, M = 65535 + 77, 3, 2
    X, W, dY = (rng.integers(-9, 9, sh) for sh in ((B, N), (N, M), (B, M)))
    dX, dW = s.fc_backward(X, W, dY, schedule="intergrad")
    assert np.array_equal(dW, gemm_reference(X.T, dY, acc.cfg.acc_w))
    assert np.array_equal(dX, gemm_reference(dY, W.T, acc.cfg.acc_w))
    assert s.report[-1].jobs == 2
    check_record(acc.cfg, s.report[-1])


@pytest.mark.parametrize("shape", [
    # B, C_in, H, W, C_out, k, stride, pad
    (2, 1, 8, 8, 8, 3, 1, 1),
    (3, 3, 7, 6, 5, 3, 2, 0),
    (1, 2, 5, 5, 11, 2, 1, 1),
])
def test_conv2d_matches_golden(dev, shape):
    B, Ci, H, Wd, Co, k, st, pd = shape
    acc = Accelerator(dev)
    s = Scheduler(acc)
    rng = np.random.default_rng(sum(shape))
    x = rng.integers(-200, 200, (B, Ci, H, Wd))
    w = rng.integers(-200, 200, (Co, Ci, k, k))
    y = conv2d_forward(s, x, w, st, pd)
    # reference by direct convolution
    Ho, Wo = y.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (pd, pd), (pd, pd)))
    ref = np.zeros_like(y)
    for i in range(Ho):
        for j in range(Wo):
            patch = xp[:, :, i * st:i * st + k, j * st:j * st + k]
            ref[:, :, i, j] = np.einsum("bchw,ochw->bo", patch, w)
    assert np.array_equal(y, ref)
    dy = rng.integers(-100, 100, y.shape)
    for sched in ("baseline", "intergrad"):
        dx, dw = conv2d_backward(s, x, w, dy, st, pd, schedule=sched)
        cols = im2col(x, k, k, st, pd)
        dY = dy.transpose(0, 2, 3, 1).reshape(-1, Co)
        assert np.array_equal(dw, (cols.T @ dY).T.reshape(w.shape)), sched
        # dx: adjoint check <dy, conv(x', w)> == <dx, x'> for a random x'
        xr = rng.integers(-5, 5, x.shape)
        lhs = int(np.sum(dy * conv2d_forward(s, xr, w, st, pd)))
        assert lhs == int(np.sum(dx * xr)), sched


def test_headroom_warning(dev):
    s = Scheduler(Accelerator(dev))
    big = (1 << (dev.cfg.data_w - 1)) - 1
    with pytest.warns(RuntimeWarning, match="fc9: X W may exceed"):
        s.fc_forward(np.full((2, 4), big), np.full((4, 3), big), layer="fc9")


def test_bad_shapes_and_values_raise(dev):
    acc = Accelerator(dev)
    s = Scheduler(acc)
    with pytest.raises(ValueError, match="fc1: X has shape"):
        s.fc_forward(np.zeros((4, 3), int), np.zeros((5, 2), int), layer="fc1")
    with pytest.raises(ValueError, match="conv7: input has 3 channels"):
        conv2d_forward(s, np.zeros((1, 3, 5, 5), int), np.zeros((2, 4, 3, 3), int), layer="conv7")
    with pytest.raises(ValueError, match="does not fit"):
        conv2d_forward(s, np.zeros((1, 1, 2, 2), int), np.zeros((2, 1, 5, 5), int))
    big = 1 << (acc.cfg.data_w - 1)
    with pytest.raises(OverflowError, match=f"fc2: W does not fit in {acc.cfg.data_w}-bit"):
        s.fc_forward(np.zeros((2, 2), int), np.array([[big, 0], [0, 0]]), layer="fc2")
    with pytest.raises(TypeError, match="quantize first"):
        s.fc_forward(np.zeros((2, 2)), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="unknown schedule"):
        s.fc_backward(np.zeros((2, 2), int), np.zeros((2, 2), int), np.zeros((2, 2), int),
                      schedule="fast")
    with pytest.raises(JobError, match="NO_PRELOAD"):
        acc.run_job(Job("WS", 1, 1, 1, {"SWAP"}), np.zeros((1, acc.cfg.in_lanes), int))


def test_core_error_and_timeout_are_reported(dev):
    """A core error is raised by the transfer itself (STATUS is polled while the streams
    run), naming its cause; a timeout names the status and counters; both leave the device
    recovered (idle), and the next job is exact."""
    from intergrad.device import CoreError
    from intergrad.core import pack_beats
    acc = Accelerator(dev)
    cfg = acc.cfg
    model = ArrayModel(cfg)
    job = Job("WS", 4, cfg.rows, cfg.cols, {"LOAD_W"})
    lanes = model.job_input(job, weights=np.ones((cfg.rows, cfg.cols), int),
                            top=np.ones((4, cfg.cols), int))
    # a stream two beats short ends with tlast too early: the core's error comes back
    acc._wr("MODE", spec.pack_fields("MODE", MODE=0, FLAGS=spec.flags_word("LOAD_W")), cache=False)
    acc._wr("BATCH", 4, cache=False)
    acc._wr("SHAPE", spec.pack_fields("SHAPE", ROWS_ACT=cfg.rows, COLS_ACT=cfg.cols), cache=False)
    dev.write(spec.REG["CTRL"].offset, 1)
    with pytest.raises(CoreError, match="EARLY_TLAST") as ei:
        dev.transfer(pack_beats(lanes[:-2], cfg.data_w, cfg.in_axis_bits), 0, timeout=5)
    assert ei.value.cause == "EARLY_TLAST"
    assert dev.status()["BUSY"] == 0 and dev.status()["ERROR"] == 0
    # a job whose data never comes: a timeout naming the status and counters, no hang
    acc._shadow.clear()
    acc._wr("BATCH", 1000)
    dev.write(spec.REG["CTRL"].offset, 1)
    with pytest.raises(DeviceTimeout, match=r"(?s)BUSY=1.*stall_in="):
        dev.transfer(b"", 5, timeout=0.2)
    assert dev.status()["BUSY"] == 0
    # and the next job is correct
    acc._shadow.clear()
    out = acc.run_job(job, lanes)
    assert np.array_equal(out, model.run(job, lanes))


def test_driver_reads_build_config(dev):
    acc = Accelerator(dev)
    assert acc.cfg == dev.cfg
    d = acc.describe()
    assert d["array"] == f"{dev.cfg.rows}x{dev.cfg.cols}" and d["backend"] == "sim"


@pytest.mark.parametrize("stalls", [(0.0, 0.0), (0.3, 0.4)], ids=["nostall", "stalls"])
def test_every_active_shape_small_batches(dev, stalls):
    """Every ROWS_ACT (and the narrowest and widest COLS_ACT), short batches, each mode with
    its weight load / drain, bit-exact: the short weight loads and pipelines of small tiles
    (the scheduler's edge tiles) are where timing assumptions of the array bite."""
    dev.set_stalls(*stalls, seed=5)
    acc = Accelerator(dev)
    cfg = acc.cfg
    rng = np.random.default_rng(12)
    bad = []
    for mode, flags in (("WS", {"LOAD_W"}), ("WS", {"LOAD_W", "TRANSPOSE"}),
                        ("OS", {"ACC_CLEAR", "DRAIN"}), ("IG", {"LOAD_W", "ACC_CLEAR", "DRAIN"})):
        for ra in range(1, cfg.rows + 1):
            for ca in sorted({1, cfg.cols}):
                for B in (1, 3):
                    job = Job(mode, B, ra, ca, flags)
                    m = ArrayModel(cfg)
                    kw = {"weights": rng.integers(-99, 99, (ra, ca))} if "LOAD_W" in flags else {}
                    if mode != "WS":
                        kw["left"] = rng.integers(-99, 99, (B, ra))
                    lanes = m.job_input(job, top=rng.integers(-99, 99, (B, ca)), **kw)
                    if not np.array_equal(acc.run_job(job, lanes), m.run(job, lanes)):
                        bad.append(f"{mode} {sorted(flags)} B={B} {ra}x{ca}")
    assert not bad, f"{len(bad)} jobs differ from the golden model: {bad[:8]}"


def _small_tile_load_then_larger_use(cfg, rng):
    """Jobs (and their lanes, junk outside the tiles) that load weights, plain and
    transposed, with LOAD_W and with PRELOAD, for tiles smaller than the array, then use
    them without a load on the whole array: the weights outside the small tile must be the
    earlier ones (a load ignores the lanes beyond the active shape)."""
    R, C = cfg.rows, cfg.cols
    lim = 1 << (cfg.data_w - 1)
    m = ArrayModel(cfg)
    jobs, lanes = [], []

    def add(mode, B, ra, ca, *flags):
        job = Job(mode, B, ra, ca, frozenset(flags))
        kw = {"top": rng.integers(-lim, lim, (B, ca))}
        if mode != "WS":
            kw["left"] = rng.integers(-lim, lim, (B, ra))
        for f in ("weights", "preload"):
            if job.has("LOAD_W" if f == "weights" else "PRELOAD"):
                kw[f] = rng.integers(-lim, lim, (ra, ca))
        jobs.append(job)
        lanes.append(junk_outside_tile(cfg, job, m.job_input(job, **kw), rng))

    for t in ((), ("TRANSPOSE",)):
        # both banks full, then a small load and jobs on the whole array that use it
        add("WS", 2, R, C, "LOAD_W", *t)
        add("WS", 2, R, C, "LOAD_W", *t)
        for ra, ca in sorted({(max(1, R // 2), max(1, C // 2)), (1, C), (R, 1)}):
            add("WS", 3, ra, ca, "LOAD_W", *t)
            add("WS", 3, R, C, *t)
            add("IG", 3, R, C, "ACC_CLEAR", "DRAIN", *t)
        # a small preload swapped in by a job on the whole array
        add("WS", 2, R, C, "LOAD_W", *t)
        add("WS", 2, R - 1 or 1, C - 1 or 1, "PRELOAD", *t)
        add("WS", 3, R, C, "SWAP", *t)
    return jobs, lanes


@pytest.mark.filterwarnings("ignore:.*may exceed the.*accumulator")
@pytest.mark.parametrize("path", ["job", "pass"])
def test_small_tile_load_keeps_weights_outside_the_tile(dev, path):
    """A LOAD_W / PRELOAD for a tile smaller than the array writes that tile's weights only
    (plain and TRANSPOSE): a later job on a larger shape that loads nothing sees the older
    weights outside the tile, in the RTL as in the golden model, job by job and as a queue."""
    from intergrad.golden.queue import run_queue
    acc = Accelerator(dev)
    acc.recover()
    jobs, lanes = _small_tile_load_then_larger_use(acc.cfg, np.random.default_rng(31))
    if path == "job":
        m = ArrayModel(acc.cfg)
        exp = [m.run(j, ln) for j, ln in zip(jobs, lanes)]
        got = [acc.run_job(j, ln) for j, ln in zip(jobs, lanes)]
    else:
        exp = run_queue(ArrayModel(acc.cfg), jobs, lanes).outputs
        got = acc.run_pass(jobs, lanes)
    bad = [f"job {i} {j.describe()}" for i, (j, g, e) in enumerate(zip(jobs, got, exp))
           if not np.array_equal(g, e)]
    assert not bad, f"{len(bad)} jobs differ from the golden model: {bad[:8]}"


# ------------------------------------------------------------------ whole passes (queues)
def _random_passes(acc, rng, n_passes, n_jobs, max_b=30):
    """Random passes continuing the core's state (preloads and saved tiles carry over), with
    the golden model alongside: yields (jobs, lanes, expected QueueResult)."""
    from intergrad.golden.queue import random_queue, run_queue
    model = ArrayModel(acc.cfg)
    for _ in range(n_passes):
        jobs, lanes = random_queue(acc.cfg, rng, n_jobs, max_b, preloaded=model.preloaded,
                                   saved_rows=model.state.saved_rows)
        exp = run_queue(model, jobs, lanes)
        assert exp.error is None
        yield jobs, lanes, exp


@pytest.mark.parametrize("stalls", [(0.0, 0.0), (0.3, 0.4)], ids=["nostall", "stalls"])
def test_run_pass_is_one_transfer_bit_exact_and_counted(dev, stalls, monkeypatch):
    """A pass of random jobs in every mode and flag combination is one device transfer, its
    outputs equal the golden model's and the counters equal the queue formula (jobs plus one
    header beat and busy cycle each), with the stream monitor clean."""
    from intergrad.golden.queue import queue_counters
    v0 = dev.violations()
    dev.set_stalls(*stalls, seed=21)
    acc = Accelerator(dev)
    calls = []
    orig = dev.transfer
    monkeypatch.setattr(dev, "transfer", lambda *a, **k: calls.append(1) or orig(*a, **k))
    rng = np.random.default_rng(17)
    for jobs, lanes, exp in _random_passes(acc, rng, 4, 10):
        acc.reset_counters()
        n0 = len(calls)
        outs = acc.run_pass(jobs, lanes)
        assert len(calls) - n0 == 1
        for i, (o, e) in enumerate(zip(outs, exp.outputs)):
            assert np.array_equal(o, e), f"job {i} {jobs[i]}"
        c, q = acc.counters(), queue_counters(acc.cfg, jobs)
        for k in EXACT:
            assert c[k] == q[k], f"{k}: RTL {c[k]} != queue formula {q[k]}"
        assert c["busy_cycles"] == q["busy_cycles"] + c["stall_in"] + c["stall_out"]
        assert acc.status()["DONE"] == 1
    assert dev.violations()["m_axis"] == v0["m_axis"]


def test_run_pass_equals_job_by_job(dev):
    """The same pass through run_job one by one and through run_pass: the same outputs, the
    same counters but for the header beats."""
    from intergrad.golden.queue import random_queue
    acc = Accelerator(dev)
    jobs, lanes = random_queue(acc.cfg, np.random.default_rng(4), 14, 20)
    res = {}
    for path in ("job", "pass"):
        acc.recover()
        acc.reset_counters()
        outs = [acc.run_job(j, l) for j, l in zip(jobs, lanes)] if path == "job" \
            else acc.run_pass(jobs, lanes)
        res[path] = (outs, acc.counters())
    for a, b in zip(res["job"][0], res["pass"][0]):
        assert np.array_equal(a, b)
    cj, cp = res["job"][1], res["pass"][1]
    for k in ("steps", "macs", "wload_beats", "out_beats", "jobs"):
        assert cj[k] == cp[k], k
    assert cp["in_beats"] == cj["in_beats"] + len(jobs)


def test_run_pass_split_at_the_transfer_limit_and_trailing_jobs(dev, monkeypatch):
    """With a transfer limit the pass runs as several queues (each within the limit, each
    ending with a job that has output); jobs after the last output run as programmed jobs."""
    from intergrad.descriptor import split_pass
    from intergrad.golden.queue import random_queue
    acc = Accelerator(dev)
    cfg = acc.cfg
    jobs, lanes = random_queue(cfg, np.random.default_rng(8), 12, 25)
    tail_job = Job("OS", 5, cfg.rows, cfg.cols, {"ACC_CLEAR"})
    m = ArrayModel(cfg)
    jobs.append(tail_job)
    lanes.append(m.job_input(tail_job, left=np.ones((5, cfg.rows), int),
                             top=np.ones((5, cfg.cols), int)))
    ib, ob = cfg.in_axis_bits // 8, cfg.out_axis_bits // 8
    # the smallest limit (in 10-beat steps) this pass can be cut at: a run of jobs without
    # output must fit in one transfer with the job that ends it
    for limit in range(10 * ib, 10 ** 6, 10 * ib):
        try:
            queues, tail = split_pass(cfg, jobs, limit)
            break
        except ValueError:
            pass
    assert len(queues) > 2 and tail == len(jobs) - 1
    for a, b in queues:
        assert sum((1 + j.in_beats()) * ib for j in jobs[a:b]) <= limit
        assert sum(j.out_beats() * ob for j in jobs[a:b]) <= limit
        assert jobs[b - 1].out_beats() > 0
    expect = [m.run(j, l) for j, l in zip(jobs, lanes)]
    calls = []
    orig = dev.transfer
    monkeypatch.setattr(dev, "transfer", lambda *a, **k: calls.append(1) or orig(*a, **k))
    monkeypatch.setattr(dev, "max_transfer", limit, raising=False)
    outs = acc.run_pass(jobs, lanes)
    assert len(calls) == len(queues) + 1
    for o, e in zip(outs, expect):
        assert np.array_equal(o, e)
    with pytest.raises(ValueError, match="exceeds|no output"):
        split_pass(cfg, jobs, limit - 10 * ib)


@pytest.mark.parametrize("bad", ["tag", "shape"])
def test_run_pass_error_mid_queue_names_the_job_and_recovers(dev, monkeypatch, bad):
    """A header the core rejects in the middle of a queue: CoreError naming the job (from
    QUEUE.JOB) and cause after recovery; the frame held the earlier jobs' beats, then the
    abort beat; the next pass is exact."""
    from intergrad import descriptor
    from intergrad.golden.queue import random_queue, run_queue
    acc = Accelerator(dev)
    cfg = acc.cfg
    jobs, lanes = random_queue(cfg, np.random.default_rng(12), 9, 15)
    k = 5
    good = descriptor.header_word

    def corrupt(job, last):
        w = good(job, last)
        if job is jobs[k]:
            lsb, width = spec.header_field("TAG" if bad == "tag" else "ROWS_ACT")
            w = (w & ~(((1 << width) - 1) << lsb)) | ((0 if bad == "tag" else cfg.rows + 1) << lsb)
        return w
    monkeypatch.setattr(descriptor, "header_word", corrupt)
    cause = "BAD_HEADER" if bad == "tag" else "BAD_SHAPE"
    dev.set_stalls(0.2, 0.2, seed=5)
    with pytest.raises(CoreError, match=rf"pass job {k} .*{cause}") as ei:
        acc.run_pass(jobs, lanes)
    assert ei.value.job == k and ei.value.cause == cause
    exp = run_queue(ArrayModel(cfg), jobs[:k], lanes[:k], complete=False).frame
    ob = cfg.out_axis_bits // 8
    assert dev.last_frame[-ob:] == spec.abort_beat(cfg, cause)
    got = np.frombuffer(dev.last_frame[:-ob], np.uint8)
    from intergrad.core import unpack_beats
    assert np.array_equal(unpack_beats(got.tobytes(), cfg.out_lanes, cfg.acc_w,
                                       cfg.out_axis_bits), exp)
    st = acc.status()
    assert st["BUSY"] == 0 and st["ERROR"] == 0
    monkeypatch.setattr(descriptor, "header_word", good)
    for jobs2, lanes2, exp2 in _random_passes(acc, np.random.default_rng(3), 1, 6):
        for o, e in zip(acc.run_pass(jobs2, lanes2), exp2.outputs):
            assert np.array_equal(o, e)
