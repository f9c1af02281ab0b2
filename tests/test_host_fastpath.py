"""The host's compiled fast paths give the same bits as the plain ones.

* job queues (:mod:`intergrad.jobqueue`): a compiled pass program's frames are byte for
  byte :func:`intergrad.descriptor.pack_queue`'s; the first run (check + compile) and a
  cached run give the outputs, counters and core state of the job-by-job path; a pass the
  host check rejects is never cached and is rejected again with the same message;
* the SimDevice's counters in one C call read what the register-by-register reads do;
* the scheduler reuses the counter snapshot after a pass as the next pass's "before" only
  while nothing touched the device (through the accelerator, or straight, seen by the
  simulator's cycle count): every pass's record holds exactly its own jobs' counters;
* :class:`intergrad.engine.DeviceEngine`'s operand quantization (retries that requantize
  only what changed, bounds in one-thread BLAS blocks, im2col reused for the GEMM) makes
  the decisions of the plain algorithm (every bound one float GEMM, everything requantized
  on every retry), kept below as the reference: the same integer operands, bits and
  generator state;
  the bounds' blocked GEMM (:func:`intergrad.engine.exact_matmul`) is ``P @ Q``;
* im2col by one cached gather is the strided-copy im2col;
* DeviceEngine's quantization memo (the weights and inputs a step quantizes again, and
  their lowerings) is value-checked (arrays changed in place are quantized again) and
  stays within its bounds; GEMMs it bounded exactly issue no headroom warning;
* training with the memo and the counter snapshot reuse equals training without them,
  bit for bit (weights, losses, gradients, every pass's counters).
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from intergrad import jobqueue
from intergrad.core import CoreState, Job, JobError
from intergrad.descriptor import pack_queue
from intergrad.driver import Accelerator
from intergrad.spec import ArrayConfig

BUILDS = [ArrayConfig(8, 8, 16, 32, 1), ArrayConfig(4, 6, 16, 32, 0), ArrayConfig(8, 8, 8, 20, 1),
          ArrayConfig(3, 5, 12, 28, 1)]


@pytest.mark.parametrize("cfg", BUILDS, ids=str)
@pytest.mark.parametrize("limit", [None, 6], ids=["whole", "split"])
def test_program_frames_are_pack_queue(cfg, limit):
    from intergrad.golden.queue import random_queue
    rng = np.random.default_rng(4)
    if not cfg.supports_queue:
        pytest.skip("no job queues on this build")
    ib = cfg.in_axis_bits // 8
    for pre, saved in ((False, 0), (True, 0), (False, 2)):
        jobs, lanes = random_queue(cfg, rng, 12, 20, preloaded=pre, saved_rows=saved)
        state = CoreState(pre, saved > 0, saved)
        max_bytes = None if limit is None else (limit + 1) * max(
            (1 + j.in_beats()) * ib for j in jobs)
        prog = jobqueue._compile(cfg, jobs, state, max_bytes)
        jobqueue._fill(cfg, prog, np.concatenate(lanes))
        assert prog.queues
        for first, end, rows, n_out in prog.queues:
            assert prog.frame[rows].tobytes() == pack_queue(cfg, jobs[first:end],
                                                            lanes[first:end])
            assert n_out == sum(j.out_beats() for j in jobs[first:end])


def _counters(acc):
    c = acc.counters()
    return {k: c[k] for k in ("macs", "in_beats", "out_beats", "wload_beats", "jobs")}


def test_cached_pass_equals_first_run_and_job_by_job(dev):
    """The same passes three ways on one core: job by job, first run_pass (a cache miss:
    checked and compiled), run_pass again (a hit); the list and the one-array entry points."""
    from intergrad.golden.queue import random_queue
    acc = Accelerator(dev)
    rng = np.random.default_rng(8)
    for _ in range(3):
        acc.recover()
        jobs, lanes = random_queue(acc.cfg, rng, 9, 25)
        acc.reset_counters()
        ref = [acc.run_job(j, ln) for j, ln in zip(jobs, lanes)]
        ref_c, ref_state = _counters(acc), (acc.state.preloaded, acc.state.saved)
        for run in range(3):
            acc.recover()
            acc.reset_counters()
            q0 = acc.queued_jobs
            hit = jobqueue.program(acc, jobs)[2]
            assert hit == (run > 0)
            if run < 2:
                got = acc.run_pass(jobs, lanes)
            else:
                flat = acc.run_pass_lanes(jobs, np.concatenate(lanes))
                got = np.split(flat, np.cumsum([j.out_beats() for j in jobs])[:-1])
            assert all(np.array_equal(g, r) for g, r in zip(got, ref))
            c = _counters(acc)
            queued = acc.queued_jobs - q0
            assert c["in_beats"] == ref_c["in_beats"] + queued
            assert {k: v for k, v in c.items() if k != "in_beats"} == \
                {k: v for k, v in ref_c.items() if k != "in_beats"}
            assert (acc.state.preloaded, acc.state.saved) == ref_state


def test_rejected_pass_is_not_cached(dev):
    acc = Accelerator(dev)
    acc.recover()
    R, C = acc.cfg.rows, acc.cfg.cols
    jobs = [Job("WS", 2, R, C, {"LOAD_W"}), Job("WS", 3, R, C, {"SWAP"})]
    lanes = [np.zeros((j.in_beats(), acc.cfg.in_lanes), np.int64) for j in jobs]
    msgs = []
    for _ in range(2):
        with pytest.raises(JobError, match="pass job 1 .*NO_PRELOAD") as ei:
            acc.run_pass(jobs, lanes)
        msgs.append(str(ei.value))
        assert acc.state.preloaded is False and acc.state.saved is False
        assert jobqueue._key(acc, jobs) not in jobqueue._PROGRAMS
        assert jobqueue._key(acc, tuple(jobs)) not in jobqueue._PROGRAMS
    assert msgs[0] == msgs[1]
    # a wrong input shape on a cached pass: the same message as on the first (checked) run
    good = [Job("WS", 2, R, C, {"LOAD_W"}), Job("WS", 3, R, C)]
    glanes = [np.zeros((j.in_beats(), acc.cfg.in_lanes), np.int64) for j in good]
    acc.run_pass(good, glanes)
    acc.recover()
    bad = glanes[:1] + [glanes[1][:-1]]
    assert jobqueue.program(acc, good)[2]
    errs = []
    for check in (jobqueue.check_pass, acc.run_pass):   # what a miss runs; a hit
        with pytest.raises(ValueError, match="pass job 1 needs") as ei:
            check(acc, good, bad) if check is jobqueue.check_pass else check(good, bad)
        errs.append(str(ei.value))
    assert errs[0] == errs[1]


def test_counters_in_one_call_equal_register_reads():
    """SimDevice.counters (one C call) reads what Device.counters' register-by-register
    reads do and takes the same cycles: two devices run the same job, one read each way."""
    from intergrad.device.base import Device
    from intergrad.device.sim import SimDevice
    cfg = ArrayConfig(4, 6, 16, 32, 0)
    devs = [SimDevice(cfg, verbose=False) for _ in range(2)]
    try:
        assert getattr(devs[0]._lib, "ig_read_counters", None) is not None
        rng = np.random.default_rng(3)
        from intergrad.golden.queue import random_queue
        jobs, lanes = random_queue(cfg, rng, 5, 12)
        got = []
        for d, read in zip(devs, (SimDevice.counters, Device.counters)):
            acc = Accelerator(d)
            reads = []
            for j, ln in zip(jobs, lanes):
                acc.run_job(j, ln)
                reads.append(read(d))
            got.append((reads, d.cycle))
        assert got[0] == got[1]
        assert got[0][0][-1]["jobs"] == len(jobs) and got[0][0][-1]["macs"] > 0
    finally:
        for d in devs:
            d.close()


# ------------------------------------------------------------------ quantization decisions

def _im2col_ref(x, kh, kw, stride, pad):
    """conv.im2col as it was written first: one strided copy per kernel offset."""
    from intergrad.conv import conv_out_size
    B, C, H, W = x.shape
    Ho, Wo = conv_out_size(H, kh, stride, pad), conv_out_size(W, kw, stride, pad)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    cols = np.empty((B, Ho, Wo, C, kh, kw), dtype=x.dtype)
    for di in range(kh):
        for dj in range(kw):
            cols[:, :, :, :, di, dj] = xp[:, :, di:di + stride * Ho:stride,
                                          dj:dj + stride * Wo:stride].transpose(0, 2, 3, 1)
    return cols.reshape(B * Ho * Wo, C * kh * kw)


def _ref_quantize(x, bits, rng=None):
    """engine.quantize as it was written first (the reference)."""
    import math
    m = float(np.max(np.abs(x))) if x.size else 0.0
    if m == 0.0:
        return np.zeros(x.shape, dtype=np.int64), 0
    f = bits - 1 - math.floor(math.log2(m))
    s = x.astype(np.float64) * (2.0 ** f)
    q = np.rint(s) if rng is None else np.floor(s + rng.random(s.shape))
    q = q.astype(np.int64)
    lim = (1 << bits) - 1
    np.clip(q, -lim, lim, out=q)
    return q, f


def _ref_decide(eng, tensors, products, grads=("dY",)):
    """DeviceEngine._quantize's first algorithm: every tensor requantized and every bound a
    full float GEMM on every retry.  products: (a, b, exact_fn(|qa|, |qb|))."""
    import math
    absf = lambda q: np.abs(q).astype(np.float64)   # noqa: E731
    bits = {n: eng.max_bits for n in tensors}
    state = eng.rng.bit_generator.state if eng.rng is not None else None
    for _ in range(4 * eng.max_bits + 4):
        if state is not None:
            eng.rng.bit_generator.state = state
        q = {n: _ref_quantize(t, bits[n], eng.rng if n in grads else None)
             for n, t in tensors.items()}
        over = []
        for a, b, fn in products:
            qa, qb = q[a][0], q[b][0]
            bound = float(fn(absf(qa), absf(qb))) if qa.size and qb.size else 0.0
            if bound >= eng.limit:
                over.append((a, b, math.ceil(math.log2(bound / eng.limit) + 1e-9)))
        if not over:
            return q, bits
        cut = {}
        for a, b, need in over:
            need = max(need, 1)
            ba, bb = bits[a] - cut.get(a, 0), bits[b] - cut.get(b, 0)
            for _i in range(need):
                if ba >= bb:
                    ba -= 1
                else:
                    bb -= 1
            cut[a], cut[b] = bits[a] - ba, bits[b] - bb
        for n, c in cut.items():
            bits[n] -= c
        if min(bits.values()) < 1:
            break
    raise OverflowError("reference: cannot fit")


class _Recorder:
    """Stands for the Scheduler under a DeviceEngine: records the integer operands it gets
    (and checks an im2col, where one is given, is the operand's), returns zeros of the
    right shapes."""

    def __init__(self, cfg):
        self.cfg, self.calls = cfg, []

    def fc_forward(self, X, W, layer, *, bounded):
        assert bounded   # the engine's exact bounds rule wrap-around out
        self.calls.append((X, W))
        return np.zeros((X.shape[0], W.shape[1]), np.int64)

    def fc_backward(self, X, W, dY, layer, *, need_dx, schedule, bounded):
        assert bounded
        self.calls.append((X, W, dY))
        return (np.zeros(X.shape, np.int64) if need_dx else None), np.zeros(W.shape, np.int64)

    def _cols(self, x, w, stride, pad, cols):
        if cols is not None:
            assert np.array_equal(cols, _im2col_ref(x, w.shape[2], w.shape[3], stride, pad))

    def conv_forward(self, x, w, layer, *, stride, pad, bounded, cols=None):
        from intergrad.conv import conv_out_size
        assert bounded
        self._cols(x, w, stride, pad, cols)
        self.calls.append((x, w))
        ho, wo = (conv_out_size(n, k, stride, pad) for n, k in zip(x.shape[2:], w.shape[2:]))
        return np.zeros((x.shape[0], w.shape[0], ho, wo), np.int64)

    def conv_backward(self, x, w, dy, layer, *, stride, pad, need_dx, schedule, bounded,
                      cols=None):
        assert bounded
        self._cols(x, w, stride, pad, cols)
        self.calls.append((x, w, dy))
        return (np.zeros(x.shape, np.int64) if need_dx else None), np.zeros(w.shape, np.int64)


def _tensor(rng, shape, kind):
    """Float operands whose bounds land everywhere: dense, flat, sparse, one large outlier (the
    cheap row / column bounds far above the exact one), all zeros."""
    if kind == "zeros":
        return np.zeros(shape, np.float32)
    t = rng.standard_normal(shape).astype(np.float32) * np.float32(10.0 ** rng.uniform(-3, 3))
    if kind == "relu":
        t = np.maximum(t, 0)
    elif kind == "sparse":
        t *= rng.random(shape) < 0.1
    elif kind == "flat":   # near-equal magnitudes: the long reductions overflow
        t = np.sign(t) * rng.uniform(0.7, 1.0, shape).astype(np.float32)
    elif kind == "outlier":
        t.flat[rng.integers(t.size)] *= 50
    return t


@pytest.mark.parametrize("bits,acc,max_bits", [(16, 32, None), (8, 20, None), (12, 24, None),
                                               (12, 24, 8)], ids=str)
@pytest.mark.parametrize("stochastic", [False, True], ids=["nearest", "stochastic"])
def test_quantize_decisions_equal_reference(bits, acc, max_bits, stochastic):
    from intergrad.conv import col2im, conv_weight_matrix, grad_matrix
    im2col = _im2col_ref
    from intergrad.engine import DeviceEngine
    cfg = ArrayConfig(8, 8, bits, acc, 1)
    rng = np.random.default_rng(bits * 7 + acc + (max_bits or 0) + stochastic)
    kinds = ["dense", "flat", "relu", "sparse", "outlier", "zeros"]
    retried = 0
    for case in range(80):
        rec = _Recorder(cfg)
        eng = DeviceEngine(rec, stochastic=stochastic, seed=case, max_bits=max_bits)
        ref = DeviceEngine(_Recorder(cfg), stochastic=stochastic, seed=case, max_bits=max_bits)
        kx, kw, kd = (kinds[i] if case % 3 else "flat" for i in rng.integers(0, 6, 3))
        conv = case % 2 == 1
        need_dx = case % 4 != 3
        if conv:
            B, C, O, H = (int(v) for v in rng.integers(1, [5, 4, 5, 8]))
            H = max(H, 3)
            k, st, pd = int(rng.integers(1, 4)), int(rng.integers(1, 3)), int(rng.integers(0, 2))
            k = min(k, H + 2 * pd)
            x, w = _tensor(rng, (B, C, H, H), kx), _tensor(rng, (O, C, k, k), kw)
            ho = (H + 2 * pd - k) // st + 1
            dy = _tensor(rng, (B, O, ho, ho), kd)
            fwd = [("X", "W", lambda a, b: (im2col(a, k, k, st, pd) @ conv_weight_matrix(b)).max())]
            bwd = [("X", "dY", lambda a, b: (im2col(a, k, k, st, pd).T @ grad_matrix(b)).max())]
            if need_dx:
                bwd.append(("dY", "W", lambda a, b: col2im(grad_matrix(a) @ conv_weight_matrix(b).T,
                                                           x.shape, k, k, st, pd).max()))
            run_f = lambda: eng.conv_forward(x, w, "L", stride=st, pad=pd)   # noqa: E731
            run_b = lambda: eng.conv_backward(x, w, dy, "L", stride=st, pad=pd,  # noqa: E731
                                              need_dx=need_dx)
        else:
            B, N, M = (int(v) for v in rng.integers(1, [80, 300, 40]))
            x, w, dy = _tensor(rng, (B, N), kx), _tensor(rng, (N, M), kw), _tensor(rng, (B, M), kd)
            fwd = [("X", "W", lambda a, b: (a @ b).max())]
            bwd = [("X", "dY", lambda a, b: (a.T @ b).max())]
            if need_dx:
                bwd.append(("dY", "W", lambda a, b: (a @ b.T).max()))
            run_f = lambda: eng.fc_forward(x, w, "L")   # noqa: E731
            run_b = lambda: eng.fc_backward(x, w, dy, "L", need_dx=need_dx)   # noqa: E731
        for pass_, run, tensors, prods in (("fwd", run_f, {"X": x, "W": w}, fwd),
                                           ("bwd", run_b, {"X": x, "W": w, "dY": dy}, bwd)):
            try:
                want, wbits = _ref_decide(ref, tensors, prods)
            except OverflowError:
                with pytest.raises(OverflowError):
                    run()
                continue
            run()
            got = rec.calls[-1]
            for g, n in zip(got, tensors):
                assert np.array_equal(g, want[n][0]), (case, pass_, n)
            assert eng.bits_used[("L", pass_)] == wbits
            retried += min(wbits.values()) < eng.max_bits
            if stochastic:
                assert eng.rng.bit_generator.state == ref.rng.bit_generator.state
    assert retried >= 3   # the retry paths ran


@pytest.mark.parametrize("threshold", [None, 64, 1000], ids=["default", "64", "1000"])
def test_exact_matmul_equals_matmul(monkeypatch, threshold):
    """The bounds' blocked GEMM (rows and long reductions in blocks, for one BLAS thread
    each) gives P @ Q's values: random shapes, blocks forced small, non-contiguous views."""
    from intergrad import engine
    if threshold is not None:
        monkeypatch.setattr(engine, "BLAS_ONE_THREAD", threshold)
    rng = np.random.default_rng(11)
    shapes = [(2048, 9, 8), (9, 2048, 8), (512, 72, 16), (150, 3000, 6), (1, 700, 3),
              (700, 1, 3), (40, 40, 1)] + [tuple(int(v) for v in rng.integers(1, 90, 3))
                                           for _ in range(20)]
    for i, (m, k, n) in enumerate(shapes):
        P = rng.integers(0, 1 << 15, (m, k)).astype(np.float64)
        Q = rng.integers(0, 1 << 15, (k, n)).astype(np.float64)
        if i % 3 == 1:
            P = np.ascontiguousarray(P.T).T
        if i % 4 == 2:
            Q = np.ascontiguousarray(Q.T).T
        got = engine.exact_matmul(P, Q)
        assert got.shape == (m, n) and np.array_equal(got, P @ Q), (m, k, n)


CONV_SHAPES = [((2, 3, 7, 7), 3, 1, 1), ((1, 1, 5, 6), 2, 2, 0), ((3, 2, 6, 5), 3, 2, 1),
               ((2, 4, 4, 4), 1, 1, 0), ((1, 2, 3, 3), 3, 1, 2), ((2, 1, 9, 8), 5, 3, 2),
               ((1, 2, 6, 6), 2, 3, 0)]


@pytest.mark.parametrize("shape,k,stride,pad", CONV_SHAPES)
def test_im2col_gather_equals_strided_copies(shape, k, stride, pad):
    from intergrad.conv import im2col
    rng = np.random.default_rng(2)
    for dt in (np.int64, np.float64, np.float32):
        x = rng.integers(-9, 9, shape).astype(dt)
        for a in (x, x.transpose(0, 1, 3, 2).copy().transpose(0, 1, 3, 2)):  # non-contiguous
            got, want = im2col(a, k, k, stride, pad), _im2col_ref(a, k, k, stride, pad)
            assert got.dtype == want.dtype and got.flags.c_contiguous
            assert np.array_equal(got, want)


@pytest.mark.parametrize("limit", [None, 3], ids=["whole", "split"])
def test_run_pass_source_equals_run_pass_lanes(dev, monkeypatch, limit):
    """A pass whose lanes are gathered straight into the queues' frames (run_pass_source)
    gives run_pass_lanes' outputs, counters and core state, on a miss and on hits, whole
    or split into several queues (the device's transfer limit), jobs after the last with
    output run one by one included."""
    from intergrad.golden.queue import random_queue
    acc = Accelerator(dev)
    ib = acc.cfg.in_axis_bits // 8
    rng = np.random.default_rng(5)
    for rep in range(3):
        jobs, lanes = random_queue(acc.cfg, rng, 10, 16)
        if limit is not None:
            monkeypatch.setattr(dev, "max_transfer",
                                limit * max((1 + j.in_beats()) * ib for j in jobs), raising=False)
        flat = np.concatenate(lanes)
        # a source vector holding the lanes' values scattered, zeros shared
        perm = rng.permutation(flat.size)
        source = np.concatenate([[0], flat.ravel()[perm], rng.integers(-5, 5, 7)])
        index = np.empty(flat.size, np.intp)
        index[perm] = np.arange(1, flat.size + 1)
        index = index.reshape(flat.shape)
        index[flat == 0] = 0
        assert np.array_equal(source[index], flat)
        results = []
        for run in range(4):
            acc.recover()
            acc.reset_counters()
            if run % 2 == 0:
                out = acc.run_pass_lanes(jobs, flat)
            else:
                prog = jobqueue.program(acc, jobs)[0]    # the cached one, from run 0 on
                out = acc.run_pass_source(jobs, source, index)
                # the frames' gather indices are built once per layout: the second source
                # run uses the first one's (a miss would rebuild them: slower, not wrong)
                entry = prog.gathers.get(id(index))
                assert entry is not None and entry[0] is index
                if run == 1:
                    built = entry
                assert entry is built
            results.append((out, _counters(acc), (acc.state.preloaded, acc.state.saved)))
        for r in results[1:]:   # the source runs may return the frame's native lanes
            assert r[0].dtype.kind == "i" and r[0].shape == results[0][0].shape
            assert np.array_equal(r[0], results[0][0]) and r[1:] == results[0][1:], rep
        if limit is not None:
            assert len(jobqueue.program(acc, jobs)[0].queues) > 1
    with pytest.raises(ValueError, match="input beats"):
        acc.run_pass_source(jobs, source, index[:-1])


def test_scheduler_operand_fast_path_equals_check_fits():
    """Scheduler._operand's no-copy path for integer arrays in range: the values and the
    largest magnitude check_fits' conversion gives, and check_fits' errors otherwise."""
    from intergrad.core import check_fits
    from intergrad.scheduler import Scheduler

    class _Acc:
        cfg = ArrayConfig(8, 8, 16, 32, 1)

    s = Scheduler(_Acc())
    rng = np.random.default_rng(1)
    for dt in (np.int8, np.uint8, np.int16, np.int32, np.int64, np.uint64):
        info = np.iinfo(dt)
        lo, hi = max(info.min, -(1 << 15)), min(info.max, (1 << 15) - 1)
        for a in (rng.integers(lo, hi, (5, 7), endpoint=True).astype(dt),
                  np.full((2, 3), hi, dt), np.full((2, 3), lo, dt), np.zeros((0, 4), dt)):
            got, top = s._operand(a, "X", "L")
            want = check_fits(a, 16, "L: X")
            assert got.dtype == np.int64 and np.array_equal(got, want)
            assert top == int(np.abs(want).max(initial=0))
    for bad in (np.array([[1 << 15]]), np.array([[-(1 << 15) - 1]], np.int32),
                np.array([[1.5]]), np.array([[70000]], np.uint32)):
        with pytest.raises((OverflowError, TypeError)) as want:
            check_fits(bad, 16, "L: X")
        with pytest.raises(want.type, match=re.escape(str(want.value))):
            s._operand(bad, "X", "L")
    with pytest.raises(ValueError, match="must be 2-D"):
        s._operand(np.zeros(3, np.int64), "X", "L")


def test_quantize_equals_reference():
    """engine.quantize == the first formulation: random tensors, values that round up to
    2**bits (clipped one LSB), largest magnitudes around the clip thresholds (the clip is
    skipped where nothing can pass lim), negatives at the top, float32 and float64,
    stochastic with the same draws; non-finite values raise."""
    from intergrad.engine import quantize
    rng = np.random.default_rng(6)
    cases = [rng.standard_normal((7, 9)).astype(np.float32), rng.standard_normal(50) * 1e-6,
             np.array([1.0, -1.0, 0.99999, -0.99999, 0.5]), np.array([-(2 ** 0.5)] * 3),
             np.float32([0.0, 0.0]), np.zeros(0), np.array([3.0, -3.0 + 1e-12, 1e-20])]
    for x in cases:
        for bits in (1, 7, 15, 23):
            assert _same_q(quantize(x, bits), _ref_quantize(x, bits)), (x, bits)
            a, b = np.random.default_rng(bits), np.random.default_rng(bits)
            assert _same_q(quantize(x, bits, a), _ref_quantize(x, bits, b)), (x, bits)
            assert a.bit_generator.state == b.bit_generator.state
    # largest magnitudes at and around the clip thresholds (rint(m * 2**f) = lim + 1 to
    # nearest, m * 2**f >= lim stochastic: the clip is skipped below them), either sign,
    # many values near the top (the stochastic draws cross lim)
    for bits in (1, 2, 7, 15, 23):
        lim = (1 << bits) - 1
        for k, t in enumerate((lim - 1, lim - 0.5, lim - 1e-6, lim, lim + 0.25,
                               lim + 0.5 - 1e-6, lim + 0.5, lim + 0.75)):
            for sign in (1, -1):
                top = sign * t / 2.0 ** bits
                x = np.concatenate([[top], -top * rng.uniform(0.9, 1, 60),
                                    top * rng.uniform(0.9, 1, 60)])
                for x in (x, x.astype(np.float32)):
                    assert _same_q(quantize(x, bits), _ref_quantize(x, bits)), (bits, t)
                    a, b = np.random.default_rng(k), np.random.default_rng(k)
                    assert _same_q(quantize(x, bits, a), _ref_quantize(x, bits, b)), (bits, t)
    for bad in (np.array([1.0, np.nan]), np.array([np.inf]), np.array([-np.inf, 1.0])):
        with pytest.raises(FloatingPointError):
            quantize(bad, 7)


def _same_q(a, b):
    return a[1] == b[1] and a[0].dtype == b[0].dtype and np.array_equal(a[0], b[0])


def test_program_key_same_for_lists_tuples_and_copies(dev):
    """The program cache key of a job list: the same for the list, a tuple of it, another
    tuple with equal jobs (a cached pass is found from any of them), different for other
    jobs or another core state."""
    acc = Accelerator(dev)
    acc.recover()
    R, C = acc.cfg.rows, acc.cfg.cols
    jobs = [Job("WS", 2, R, C, {"LOAD_W"}), Job("WS", 3, R, C)]
    t1, t2 = tuple(jobs), tuple(Job("WS", b, R, C, f) for b, f in ((2, {"LOAD_W"}), (3, set())))
    keys = [jobqueue._key(acc, j) for j in (jobs, t1, t2, t1)]
    assert all(k == keys[0] and hash(k) == hash(keys[0]) for k in keys)
    assert jobqueue._key(acc, t1[:1]) != keys[0]
    acc.state.preloaded = True
    assert jobqueue._key(acc, t1) != keys[0]
    acc.recover()
    lanes = [np.zeros((j.in_beats(), acc.cfg.in_lanes), np.int64) for j in jobs]
    acc.run_pass(t1, lanes)
    acc.recover()
    assert jobqueue.program(acc, t2)[2] and jobqueue.program(acc, jobs)[2]


def _ref_maxpool(x, k, dy):
    """MaxPool2d as first written: window copies, argmax, one-hot backward."""
    from intergrad.layers import _unwindows, _windows
    win = _windows(x, k)
    idx = win.argmax(axis=-1)
    y = np.take_along_axis(win, idx[..., None], axis=-1)[..., 0]
    onehot = idx[..., None] == np.arange(k * k)
    return y, idx, _unwindows((onehot * dy[..., None]).astype(np.float32), k)


def _bits(a):
    a = np.ascontiguousarray(a)
    return a.dtype, a.shape, a.view(np.uint8).tobytes()


@pytest.mark.parametrize("k", [2, 3])
def test_maxpool_equals_reference_bitwise(k):
    """MaxPool2d's strided forward / backward == the window-copy reference, bit for bit:
    ties (the first maximum), signed zeros, infinities and NaNs (argmax's first NaN), in
    float32 and float64 inputs, dy with negative values (0 * dy = -0.0) and NaNs."""
    from intergrad.layers import MaxPool2d
    rng = np.random.default_rng(k)
    mp = MaxPool2d(k)
    for case in range(30):
        shape = (int(rng.integers(1, 4)), int(rng.integers(1, 4)), k * int(rng.integers(1, 4)),
                 k * int(rng.integers(1, 4)))
        x = rng.integers(-3, 3, shape).astype(np.float32 if case % 2 else np.float64)
        if case % 3 == 0:   # specials
            flat = x.reshape(-1)
            for v in (np.nan, np.inf, -np.inf, -0.0, 0.0, np.nan):
                flat[rng.integers(flat.size)] = v
        dy_shape = shape[:2] + (shape[2] // k, shape[3] // k)
        dy = rng.standard_normal(dy_shape).astype(np.float32)
        if case % 4 == 0:
            dy.reshape(-1)[rng.integers(dy.size)] = np.nan
        y, idx = mp.forward(None, x)
        dx, _ = mp.backward(None, idx, dy, True)
        ry, ridx, rdx = _ref_maxpool(x, k, dy)
        assert _bits(y) == _bits(ry), case
        assert idx.dtype == ridx.dtype and np.array_equal(idx, ridx), case
        assert _bits(dx) == _bits(rdx), case


# ------------------------------------------------------------ counter snapshots between passes

def _expected_pass_counters(cfg, rec) -> dict:
    """A pass record's counters as the closed-form formulas give them (no stalls)."""
    from intergrad.core import jobs_counters
    from intergrad.plan import plan_pass
    want = jobs_counters(cfg, [t.job for t in plan_pass(cfg, rec.pass_, rec.B, rec.N, rec.M)],
                         queued=rec.queued)
    return {**want, "stall_in": 0, "stall_out": 0}


@pytest.mark.parametrize("clock", [True, False], ids=["sim-clock", "no-clock"])
def test_counter_snapshot_reused_only_while_the_device_is_untouched(dev, monkeypatch, clock):
    """The scheduler's counters before a pass are the snapshot after the previous one only
    while nothing touched the device: passes back to back read the counters once per pass
    (and once before the first); after an access through the accelerator (a counter reset,
    a job, a status read, a recovery, a pass that failed part way) or, on a backend with a
    cycle count, straight to the device (a counter reset, a job queue), the next pass
    reads them again, so every pass's record holds its own jobs' counters exactly (a stale
    snapshot would count the other job, or go negative after a reset)."""
    from intergrad.device.base import DeviceError
    from intergrad.scheduler import Scheduler
    from intergrad import spec
    reads = []
    real = dev.counters
    monkeypatch.setattr(dev, "counters", lambda: reads.append(1) or real())
    if not clock:   # the simulated device without its cycle count, as a board is
        monkeypatch.delattr(type(dev), "cycle")
    acc = Accelerator(dev)
    cfg = acc.cfg
    s = Scheduler(acc)
    rng = np.random.default_rng(7)
    N, M = cfg.rows + 3, cfg.cols + 2
    X, W, dY = (rng.integers(-64, 64, sh) for sh in ((5, N), (N, M), (5, M)))

    def two_passes():   # fwd, then ig
        s.fc_forward(X, W, "L")
        s.fc_backward(X, W, dY, "L")
        for rec in s.report.records[-2:]:
            assert rec.counters == _expected_pass_counters(cfg, rec), rec

    two_passes()
    two_passes()
    assert len(reads) == 4 + 1
    job = Job("WS", 3, cfg.rows, cfg.cols, {"LOAD_W"})
    job_lanes = np.ones((job.in_beats(), cfg.in_lanes), np.int64)
    ctrl = spec.REG["CTRL"].offset

    def failed_pass():   # stopped part way by the cycle limit: the recovery ran
        monkeypatch.setattr(dev, "max_cycles", 40)
        with pytest.raises(DeviceError):
            s.fc_backward(X, W, dY, "L")
        monkeypatch.setattr(dev, "max_cycles", 1 << 40)

    touches = [acc.reset_counters, lambda: acc.run_job(job, job_lanes), acc.status,
               acc.recover, failed_pass]
    if clock:
        touches.append(lambda: dev.write(ctrl, spec.pack_fields("CTRL", CNT_RESET=1)))
        if cfg.supports_queue:
            from intergrad.descriptor import pack_queue

            def queue_straight_to_the_device():
                dev.write(ctrl, spec.pack_fields("CTRL", QUEUE=1))
                dev.transfer(pack_queue(cfg, [job], [job_lanes]), job.out_beats())
            touches.append(queue_straight_to_the_device)
    for touch in touches:
        touch()
        n = len(reads)
        two_passes()
        assert len(reads) - n == 3, touch   # the first pass read its counters before


def test_bounded_gemms_do_not_warn(dev):
    """The engine's GEMMs, whose accumulators it bounded exactly, are called bounded: a
    training step issues no headroom warning although the scheduler's worst-case rule warns
    for the same integer operands called unbounded (every warning recorded, none
    filtered)."""
    import warnings
    from intergrad import layers as L
    from intergrad.engine import DeviceEngine
    from intergrad.nn import gradients
    from intergrad.scheduler import Scheduler
    s = Scheduler(Accelerator(dev))
    eng = DeviceEngine(s)
    net = L.build("digits", (1, 8, 8), seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, 16)
    operands = []
    real = s.fc_forward
    s.fc_forward = lambda X, W, *a, **k: operands.append((X, W)) or real(X, W, *a, **k)
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        gradients(net, eng, x, y)
        assert not [w for w in got if "may exceed" in str(w.message)]
        s.fc_forward = real
        real(*operands[-1], "fc")
    assert [w for w in got if "fc: X W may exceed" in str(w.message)]


# ------------------------------------------------------------------ the quantization memo

def _recorded(cfg, memo_bytes, calls, **kw):
    """The integer operands a DeviceEngine hands its scheduler for ``calls`` (engine method
    name, args, kwargs), each as a tuple of int64 copies."""
    from intergrad.engine import DeviceEngine
    rec = _Recorder(cfg)
    eng = DeviceEngine(rec, memo_bytes=memo_bytes, **kw)
    out = []
    for step in calls:
        if callable(step):   # a change between the calls
            step()
            continue
        name, args, opts = step
        getattr(eng, name)(*args, **opts)
        out.append(tuple(np.array(a) for a in rec.calls[-1]))
    return out, eng


def test_memo_sees_arrays_changed_in_place():
    """Weights and inputs changed in place between passes (an optimizer step, a layer that
    writes into its input) are quantized again: the operands (and the conv lowering, which
    _Recorder checks against the input it is given) equal a memo-less engine's, also
    where the change keeps the largest magnitude (the scale) and touches one element;
    unchanged operands are found in the memo."""
    cfg = ArrayConfig(8, 8, 16, 32, 1)
    rng = np.random.default_rng(12)
    X = rng.standard_normal((6, 20)).astype(np.float32)
    W = rng.standard_normal((20, 7)).astype(np.float32)
    dY = rng.standard_normal((6, 7)).astype(np.float32)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    W0, w0, X0, x0 = W.copy(), w.copy(), X.copy(), x.copy()

    def restore():
        W[...], w[...], X[...], x[...] = W0, w0, X0, x0

    def bump_one():   # one element, below the largest magnitude: the scale stays
        i = np.argmin(np.abs(W))
        W.flat[i] += np.float32(0.25)
        x.flat[np.argmin(np.abs(x))] -= np.float32(0.5)

    fc_f, fc_b = ("fc_forward", (X, W, "fc"), {}), ("fc_backward", (X, W, dY, "fc"), {})
    cv_f = ("conv_forward", (x, w, "cv"), {"stride": 1, "pad": 1})
    cv_b = ("conv_backward", (x, w, dy, "cv"), {"stride": 1, "pad": 1})
    calls = [fc_f, fc_b, cv_f, cv_b,
             lambda: np.multiply(W, np.float32(0.5), out=W), fc_f, fc_b,   # a step's update
             lambda: x.__setitem__((0, 1), x[0, 1] * np.float32(-1)), cv_b, cv_f,
             bump_one, fc_b, fc_f, cv_f, cv_b,
             lambda: X.__setitem__(slice(None), X[::-1]), fc_f,   # same values, permuted
             restore, fc_f, fc_b, cv_f, cv_b]
    for stochastic in (False, True):
        restore()
        want, _ = _recorded(cfg, 0, calls, stochastic=stochastic, seed=2)
        restore()
        got, eng = _recorded(cfg, 1 << 20, calls, stochastic=stochastic, seed=2)
        assert len(got) == len(want) == 17
        for k, (g, r) in enumerate(zip(got, want)):
            assert all(np.array_equal(a, b) for a, b in zip(g, r)), k
        assert eng.memo.hits >= 8   # the backward passes' X and W, the restored operands
    # the arrays the memo hands out again are read-only: nobody downstream can change them
    held = [q for op in eng.memo._ops.values() for q, _ in op.quants.values()]
    assert held and not any(q.flags.writeable for q in held)


def test_memo_stays_within_its_bounds():
    """A memo smaller than a step's operands: never more bytes or operands held than its
    bounds (its byte count equal to what it holds), the same operands as without it."""
    from intergrad import layers as L
    from intergrad.engine import QuantMemo
    cfg = ArrayConfig(8, 8, 16, 32, 1)
    rng = np.random.default_rng(3)
    net = L.build("lenet", (1, 8, 8), seed=1)
    x = rng.random((8, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, 8)
    from intergrad.nn import gradients
    from intergrad.engine import DeviceEngine
    runs = {}
    for max_bytes, max_ops in ((0, 32), (30_000, 32), (200_000, 3), (64 << 20, 32)):
        rec = _Recorder(cfg)
        eng = DeviceEngine(rec)
        eng.memo = QuantMemo(max_bytes, max_ops)
        n = net.copy()
        sizes = []
        real = eng.memo.quantized

        def quantized(*a, memo=eng.memo, **k):
            out = real(*a, **k)
            held = sum(len(op.raw) + sum(q.nbytes for q, _ in op.quants.values())
                       + sum(d.nbytes for d in op.derived.values()) for op in memo._ops.values())
            assert memo.nbytes == held <= max_bytes and len(memo._ops) <= max_ops
            sizes.append(held)
            return out
        eng.memo.quantized = quantized
        for _ in range(3):
            st = gradients(n, eng, x, y)
            for p, g in zip(n.params(), st.grads):
                p -= np.float32(0.1) * g
        runs[max_bytes] = [tuple(np.array(a) for a in c) for c in rec.calls], max(sizes), \
            eng.memo.hits
    ref = runs[0][0]
    for max_bytes, (calls, top, hits) in runs.items():
        assert len(calls) == len(ref)
        assert all(np.array_equal(a, b) for c, r in zip(calls, ref) for a, b in zip(c, r))
        assert (hits > 0) == (max_bytes > 0) and top <= max_bytes
    assert runs[30_000][1] > 20_000   # the small memo was filled, not left empty


@pytest.mark.parametrize("schedule", ["intergrad", "baseline"])
def test_training_bit_identical_with_and_without_fast_paths(dev, monkeypatch, schedule):
    """A few training steps of the digits CNN (a conv layer and a FC layer; stochastic
    rounding, momentum) on the simulated core with stalls, with the memo and the counter
    snapshot reuse and without them (memo_bytes=0, Scheduler.reuse_counters = False):
    the same weights, losses, logits and gradients bit for bit, the same pass records
    (every counter, the stall counts included), bits and generator state; the fast run
    used its memo and read the counters fewer times."""
    from intergrad import layers as L
    from intergrad.engine import DeviceEngine
    from intergrad.nn import SGD, gradients
    from intergrad.scheduler import Scheduler
    reads = []
    real = dev.counters
    monkeypatch.setattr(dev, "counters", lambda: reads.append(1) or real())
    rng = np.random.default_rng(21)
    x = rng.random((40, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, 40)
    net0 = L.build("digits", (1, 8, 8), seed=4)
    runs = {}
    for fast in (True, False):
        dev.set_stalls(0.2, 0.3, seed=9)
        s = Scheduler(Accelerator(dev))
        s.reuse_counters = fast
        eng = DeviceEngine(s, schedule, stochastic=True, seed=5,
                           memo_bytes=64 << 20 if fast else 0)
        net = net0.copy()
        opt = SGD(net.params(), 0.05, momentum=0.9)
        n0 = len(reads)
        out = []
        for k in range(4):
            idx = np.arange(k * 10, k * 10 + 10)
            st = gradients(net, eng, x[idx], y[idx])
            opt.step(st.grads)
            out.append((st.loss, st.logits.tobytes(), [g.tobytes() for g in st.grads]))
        logits, _ = net.forward(eng, x[:16])   # an evaluation batch: the weights again
        runs[fast] = dict(out=out, logits=logits.tobytes(),
                          params=[p.tobytes() for p in net.params()],
                          report=s.report.rows(), bits=eng.bits_used,
                          rng=eng.rng.bit_generator.state, reads=len(reads) - n0,
                          hits=eng.memo.hits)
    fast, slow = runs[True], runs[False]
    for key in ("out", "logits", "params", "report", "bits", "rng"):
        assert fast[key] == slow[key], key
    assert sum(r["stall_in"] + r["stall_out"] for r in fast["report"]) > 0
    assert all(r["macs"] > 0 for r in fast["report"])
    assert slow["hits"] == 0 and fast["hits"] >= 4 * 2
    passes = len(fast["report"])
    assert slow["reads"] == 2 * passes and fast["reads"] == passes + 1


def _ref_unpack_beats(data, lanes, width, axis_bits):
    """core.unpack_beats's bit-by-bit unpacking (every width) as first written."""
    nbytes = axis_bits // 8
    n = len(data) // nbytes
    raw = np.frombuffer(data, dtype=np.uint8).reshape(n, nbytes)
    bits = np.unpackbits(raw, axis=1, bitorder="little")[:, :lanes * width]
    out = bits.reshape(n, lanes, width).astype(np.int64) @ (np.int64(1) << np.arange(width))
    out -= (out >> (width - 1)) << width
    return out


def test_unpack_beats_equals_bitwise_reference():
    """Output beats of lanes that are not whole bytes (e.g. ACC_W 20, 28) unpacked from
    64-bit words: the bit-by-bit unpacking's values for random bytes (padding bits above
    the last lane set too) at every width, lane count and beat padding, no beats included;
    the builds' own widths through pack_beats."""
    from intergrad.core import pack_beats, unpack_beats
    rng = np.random.default_rng(13)
    for width in range(1, 64):
        for lanes in (1, 2, 3, 5, 8, 13):
            for pad in (0, 3, 9, 40):
                bits = -(-(lanes * width + pad) // 8) * 8
                for n in (0, 1, 6):
                    data = rng.integers(0, 256, n * bits // 8, dtype=np.uint8).tobytes()
                    got, want = unpack_beats(data, lanes, width, bits), \
                        _ref_unpack_beats(data, lanes, width, bits)
                    assert got.dtype == np.int64 and got.shape == (n, lanes)
                    assert np.array_equal(got, want), (width, lanes, bits, n)
    for cfg in BUILDS:
        lo = 1 << (cfg.acc_w - 1)
        v = rng.integers(-lo, lo, (50, cfg.out_lanes))
        v[0], v[1] = -lo, lo - 1
        data = pack_beats(v, cfg.acc_w, cfg.out_axis_bits)
        assert np.array_equal(unpack_beats(data, cfg.out_lanes, cfg.acc_w, cfg.out_axis_bits), v)
