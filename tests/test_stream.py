"""Whole-pass streams (intergrad.stream) on the simulated core: the same results (numpy's
exact products wrapped to ACC_W), the same lanes and the same hardware counters as the
scheduler's per-job loop, in every pass, with and without double buffering, on edge tiles
and on batches split into several chunks."""
from __future__ import annotations

import numpy as np
import pytest

from intergrad import plan, stream
from intergrad.driver import Accelerator
from intergrad.stream import build_pass, decode_pass, layout, run_jobs
from intergrad.plan import PASSES
from intergrad.scheduler import Scheduler, gemm_reference

pytestmark = pytest.mark.filterwarnings("ignore:.*may exceed the.*accumulator")


def operands(rng, cfg, B, N, M):
    lim = 1 << (cfg.data_w - 1)
    return (rng.integers(-lim, lim, (B, N)), rng.integers(-lim, lim, (N, M)),
            rng.integers(-lim, lim, (B, M)))


def reference(cfg, pass_, X, W, dY):
    """(result, dW) of a pass by numpy."""
    a = cfg.acc_w
    return {"fwd": (gemm_reference(X, W, a), None),
            "dx": (gemm_reference(dY, W.T, a), None),
            "dw": (None, gemm_reference(X.T, dY, a)),
            "ig": (gemm_reference(dY, W.T, a), gemm_reference(X.T, dY, a))}[pass_]


def same(a, b):
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))


class _NoQueue:
    """The accelerator without run_pass (job queues, when the driver has them): the whole
    pass's stream goes job by job, so its counters must equal the per-job loop's exactly."""

    def __init__(self, acc):
        self._acc = acc

    def __getattr__(self, name):
        if name == "run_pass":
            raise AttributeError(name)
        return getattr(self._acc, name)


def compare_paths(dev, shapes, seed, double_buffer):
    acc = Accelerator(dev)
    old, new = Scheduler(acc, double_buffer), Scheduler(_NoQueue(acc), double_buffer)
    old.per_job = True
    rng = np.random.default_rng(seed)
    for B, N, M in shapes:
        X, W, dY = operands(rng, acc.cfg, B, N, M)
        for p in PASSES:
            want = reference(acc.cfg, p, X, W, dY)
            got_old = old._run("L", p, "-", B, N, M, X=X, W=W, dY=dY)
            got_new = new._run("L", p, "-", B, N, M, X=X, W=W, dY=dY)
            for w, o, n, what in zip(want, got_old, got_new, ("result", "dW")):
                assert same(o, w), f"per-job {p} {B}x{N}x{M} {what} != numpy"
                assert same(n, w), f"whole-pass {p} {B}x{N}x{M} {what} != numpy"
                # the same memory order too (float reductions of the results depend on it)
                assert n is None or n.flags.c_contiguous == o.flags.c_contiguous, what
    assert len(old.report) == len(new.report) == len(shapes) * len(PASSES)
    for ro, rn in zip(old.report, new.report):
        assert ro.row() == rn.row(), (ro.row(), rn.row())
        assert ro.counters["jobs"] == rn.jobs > 0


def random_shapes(cfg, rng, n):
    R, C = cfg.rows, cfg.cols
    fixed = [(1, 1, 1), (3, R, C), (5, 2 * R + 1, C + 3), (4, R - 1 or 1, 2 * C + 1)]
    return fixed + [tuple(int(v) for v in rng.integers(1, 3 * max(R, C), 3)) for _ in range(n)]


@pytest.mark.parametrize("double_buffer", [True, False], ids=["dbuf", "single"])
def test_whole_pass_equals_per_job_and_numpy(dev, double_buffer):
    shapes = random_shapes(dev.cfg, np.random.default_rng(7), 4)
    compare_paths(dev, shapes, 1 + double_buffer, double_buffer)


@pytest.mark.parametrize("double_buffer", [True, False], ids=["dbuf", "single"])
def test_batch_chunks(dev, monkeypatch, double_buffer):
    """Batches longer than the BATCH register split into chunks (MAX_BATCH made small):
    OS/IG chunks of one tile keep accumulating, WS chunks each deliver their rows."""
    monkeypatch.setattr(plan, "MAX_BATCH", 4)
    layout.cache_clear()
    try:
        cfg = dev.cfg
        shapes = [(9, 2 * cfg.rows + 1, cfg.cols + 2), (4, cfg.rows, 1), (13, 1, 2 * cfg.cols)]
        lay = layout(cfg, "ig", *shapes[0], double_buffer)
        assert max(tj.job.batch for tj in lay.jobs) == 4 and len(lay.jobs) > 3
        compare_paths(dev, shapes, 3, double_buffer)
    finally:
        layout.cache_clear()


def test_lanes_equal_the_per_job_lanes(dev):
    """The whole pass's input beats are the per-job loop's lanes, job after job (recorded
    from Accelerator.run_job calls), and the outputs decode from one array."""
    acc = Accelerator(dev)
    seen = []
    run_job = acc.run_job

    def spy(job, lanes, timeout=None):
        seen.append(np.array(lanes))
        return run_job(job, lanes, timeout)

    acc.run_job = spy
    s = Scheduler(acc)
    s.per_job = True
    rng = np.random.default_rng(4)
    B, N, M = 7, 2 * acc.cfg.rows + 3, acc.cfg.cols + 1
    X, W, dY = operands(rng, acc.cfg, B, N, M)
    for p in PASSES:
        seen.clear()
        s._run("L", p, "-", B, N, M, X=X, W=W, dY=dY)
        lay = layout(acc.cfg, p, B, N, M)
        lanes = build_pass(lay, X, W, dY)
        assert lanes.shape == (lay.in_beats, acc.cfg.in_lanes)
        assert np.array_equal(lanes, np.concatenate(seen)), p


class _Queue:
    """A driver with run_pass(jobs, lanes_list) -> list of each job's output beats (the
    signature of the in-band queue's Accelerator.run_pass), here made of run_job calls so
    the result can be checked on any build."""

    def __init__(self, acc):
        self.acc, self.cfg, self.calls = acc, acc.cfg, 0

    def run_pass(self, jobs, lanes_list):
        self.calls += 1
        assert len(jobs) == len(lanes_list)
        return [self.acc.run_job(j, l) for j, l in zip(jobs, lanes_list)]


def test_run_pass_uses_the_drivers_queue(dev):
    acc = Accelerator(dev)
    q = _Queue(acc)
    rng = np.random.default_rng(9)
    B, N, M = 6, acc.cfg.rows + 2, 2 * acc.cfg.cols + 1
    X, W, dY = operands(rng, acc.cfg, B, N, M)
    for k, p in enumerate(PASSES, 1):
        res, dW, lay = stream.run_pass(q, p, B, N, M, X, W, dY)
        want = reference(acc.cfg, p, X, W, dY)
        assert same(res, want[0]) and same(dW, want[1]), p
        assert q.calls == k
        # the per-job fallback on the same stream decodes to the same
        out = run_jobs(acc, lay, build_pass(lay, X, W, dY))
        r2, d2 = decode_pass(lay, out, acc.cfg.acc_w)
        assert same(r2, res) and same(d2, dW), p


def test_narrow_widths(monkeypatch):
    """An 8-bit data, 20-bit accumulator build (non-native lane widths on both streams)."""
    from intergrad.device.sim import SimDevice
    from intergrad.spec import ArrayConfig
    d = SimDevice(ArrayConfig(8, 8, 8, 20, 1), verbose=False)
    try:
        cfg = d.cfg
        compare_paths(d, [(5, 9, 17), (3, 8, 8), (11, 1, 3)], 12, True)
    finally:
        d.close()
    assert cfg.acc_w == 20


def test_operand_shape_checked(dev):
    lay = layout(dev.cfg, "fwd", 2, 3, 4)
    with pytest.raises(ValueError, match="expects"):
        build_pass(lay, X=np.zeros((3, 2), dtype=np.int64), W=np.zeros((3, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="reads W"):  # not the previous pass's W
        build_pass(lay, X=np.zeros((2, 3), dtype=np.int64))
    assert {p: layout(dev.cfg, p, 2, 3, 4).reads for p in PASSES} == {
        "fwd": {"X", "W"}, "dx": {"W", "dY"}, "dw": {"X", "dY"}, "ig": {"X", "W", "dY"}}


def test_source_buffer_reuse(dev):
    """A layout's source vector is refilled per pass: earlier lanes stay as built, later
    ones come from the new operands only."""
    rng = np.random.default_rng(21)
    B, N, M = 5, dev.cfg.rows + 3, dev.cfg.cols + 2
    ops = [operands(rng, dev.cfg, B, N, M) for _ in range(2)]
    lay = layout(dev.cfg, "ig", B, N, M)
    first = build_pass(lay, *ops[0])
    keep = first.copy()
    second = build_pass(lay, *ops[1])
    assert np.array_equal(first, keep)
    layout.cache_clear()
    try:
        assert np.array_equal(second, build_pass(layout(dev.cfg, "ig", B, N, M), *ops[1]))
        assert not np.array_equal(first, second)
    finally:
        layout.cache_clear()


def test_queued_pass_when_the_driver_has_queues(dev):
    """With a driver that runs passes as job queues (Accelerator.run_pass), the scheduler's
    results stay exact and the work counted is the same jobs' (header beats aside)."""
    acc = Accelerator(dev)
    if not hasattr(acc, "run_pass"):
        pytest.skip("this driver has no run_pass (job queues)")
    old, new = Scheduler(_NoQueue(acc)), Scheduler(acc)
    rng = np.random.default_rng(17)
    B, N, M = 9, 2 * acc.cfg.rows + 1, acc.cfg.cols + 3
    X, W, dY = operands(rng, acc.cfg, B, N, M)
    for p in PASSES:
        want = reference(acc.cfg, p, X, W, dY)
        got = new._run("L", p, "-", B, N, M, X=X, W=W, dY=dY)
        old._run("L", p, "-", B, N, M, X=X, W=W, dY=dY)
        assert same(got[0], want[0]) and same(got[1], want[1]), p
    for ro, rn in zip(old.report, new.report):
        for k in ("macs", "out_beats", "wload_beats", "jobs"):
            assert ro.counters[k] == rn.counters[k], (ro.pass_, k)
        assert ro.counters["in_beats"] <= rn.counters["in_beats"] <= \
            ro.counters["in_beats"] + ro.jobs


def test_source_filled_into_the_frames_and_jobs_run_one_by_one(dev, monkeypatch):
    """The driver fills a pass's stream.Source straight into its frames' lanes; a program
    whose jobs run one by one (no queue fits: split_pass gives none) takes the int64 source
    (Source.array()) instead: both give numpy's results, on every pass."""
    from intergrad import jobqueue
    acc = Accelerator(dev)
    if not hasattr(acc, "run_pass_source"):
        pytest.skip("this driver has no run_pass_source")
    rng = np.random.default_rng(23)
    B, N, M = 7, 2 * acc.cfg.rows + 3, acc.cfg.cols + 5
    X, W, dY = operands(rng, acc.cfg, B, N, M)
    filled = []
    orig = stream.Source.fill
    monkeypatch.setattr(stream.Source, "fill", lambda self, dst: filled.append(dst.dtype)
                        or orig(self, dst))
    for p in PASSES:
        res, dW, _ = stream.run_pass(acc, p, B, N, M, X, W, dY)
        want = reference(acc.cfg, p, X, W, dY)
        assert same(res, want[0]) and same(dW, want[1]), p
    assert len(filled) == len(PASSES) and all(d.itemsize < 8 for d in filled)
    jobqueue._PROGRAMS.clear()
    monkeypatch.setattr(jobqueue, "split_pass", lambda cfg, jobs, limit: ([], 0))
    built = []
    orig_array = stream.Source.array
    monkeypatch.setattr(stream.Source, "array", lambda self: built.append(1) or orig_array(self))
    try:
        for p in PASSES:
            res, dW, _ = stream.run_pass(acc, p, B, N, M, X, W, dY)
            want = reference(acc.cfg, p, X, W, dY)
            assert same(res, want[0]) and same(dW, want[1]), p
        assert len(built) == len(PASSES)
    finally:
        jobqueue._PROGRAMS.clear()
    with pytest.raises(ValueError, match="elements"):
        stream.Source(layout(acc.cfg, "fwd", B, N, M), X, W).fill(np.zeros(3, np.int16))


# ------------------------------------------------------------- convolutions lowered unbuilt

def _conv_cases(rng, n):
    """Random convolution shapes: kernels 1-5, stride 1-3 (some skipping pixels), padding
    0-2, one to three channels."""
    for _ in range(n):
        k, s, p = int(rng.integers(1, 6)), int(rng.integers(1, 4)), int(rng.integers(0, 3))
        H, W = (int(v) for v in rng.integers(max(1, k - 2 * p), 12, 2))
        yield (int(rng.integers(1, 4)), int(rng.integers(1, 4)), H, W), k, s, p


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64])
def test_im2col_operand_writes_the_lowering(dtype):
    """conv.Im2col: write() puts im2col's entries, row-major, into a vector of any integer
    dtype (narrower: the low bits, as an assignment converts), np.asarray() is im2col, and
    read() holds exactly the entries of x the lowering reads (strides that skip pixels
    included): their range is the lowering's, the padding's zeros aside."""
    from intergrad.conv import Im2col, im2col
    rng = np.random.default_rng(31 + np.dtype(dtype).itemsize)
    skipped = 0
    for shape, k, s, p in _conv_cases(rng, 60):
        x = rng.integers(-40000, 40000, shape)
        op = Im2col(x, k, k, s, p)
        want = im2col(x, k, k, s, p)
        assert op.shape == want.shape and op.size == want.size and op.ndim == 2
        dst = np.full(op.size + 3, 99, dtype=dtype)
        op.write(dst[1:1 + op.size])
        assert np.array_equal(dst[1:1 + op.size], want.ravel().astype(dtype))
        assert dst[0] == 99 and (dst[1 + op.size:] == 99).all()   # nothing outside it
        assert np.array_equal(np.asarray(op), want)
        seen = set(np.unique(op.read()).tolist())
        lowered = set(np.unique(want).tolist())
        assert seen <= lowered and lowered <= seen | {0}
        skipped += op.read().size < x.size
    assert skipped > 5   # strides that leave pixels out were among the cases
    with pytest.raises(ValueError, match="vector of"):
        Im2col(np.zeros((1, 1, 4, 4), np.int64), 3, 3, 1, 0).write(np.zeros(5, np.int16))


def test_native_take_into_out():
    """native.take(..., out=): the same entries as a fresh take, in the array given; an
    out of another shape or dtype is refused."""
    from intergrad import native
    rng = np.random.default_rng(5)
    vec = rng.integers(-999, 999, 200).astype(np.int16)
    idx = native.index(rng.integers(0, 200, (30, 7)), vec.size)
    out = np.empty((30, 7), np.int16)
    assert native.take(vec, idx, out=out) is out
    assert np.array_equal(out, vec[idx])
    for bad in (np.empty((7, 30), np.int16), np.empty((30, 7), np.int32),
                np.empty((30, 14), np.int16)[:, ::2]):
        with pytest.raises(ValueError, match="out must be"):
            native.take(vec, idx, out=bad)


@pytest.mark.parametrize("per_job", [False, True], ids=["whole", "per-job"])
def test_conv_passes_equal_with_the_lowering_built(dev, per_job, monkeypatch):
    """The scheduler's convolutions with the lowering unbuilt (conv.Im2col, its lanes
    gathered from the image) and built (reads_im2col off): the same results, the same
    hardware counters, and the same accumulator-headroom warnings, forward and backward,
    on random shapes, strides and padding (whole passes and the per-job loop)."""
    import warnings
    from intergrad.conv import Im2col
    used = []   # the unbuilt lowering's writes (whole passes) or builds (the per-job loop)
    for name in ("write", "__array__"):
        orig = getattr(Im2col, name)
        monkeypatch.setattr(Im2col, name, lambda self, *a, _o=orig, _n=name, **k:
                            used.append(_n) or _o(self, *a, **k))
    acc = Accelerator(dev)
    new, old = Scheduler(acc), Scheduler(acc)
    old.reads_im2col = False
    new.per_job = old.per_job = per_job
    rng = np.random.default_rng(41 + per_job)
    lim = 1 << (dev.cfg.data_w - 1)
    warned = 0
    for shape, k, s, p in _conv_cases(rng, 6 if per_job else 12):
        B, C, H, W = shape
        O = int(rng.integers(1, 2 * dev.cfg.cols + 2))
        scale = int(rng.choice([lim, 64]))   # some overflow ACC_W: headroom warnings
        x = rng.integers(-scale, scale, shape)
        w = rng.integers(-scale, scale, (O, C, k, k))
        results = []
        for sch in (new, old):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                y = sch.conv_forward(x, w, "c", stride=s, pad=p)
                dy = rng.integers(-scale, scale, y.shape) if sch is new else results[0][3]
                dx, dw = sch.conv_backward(x, w, dy, "c", stride=s, pad=p)
            results.append((y, dx, dw, dy, sorted(str(m.message) for m in caught)))
        (y1, dx1, dw1, _, w1), (y0, dx0, dw0, _, w0) = results
        assert np.array_equal(y1, y0) and np.array_equal(dx1, dx0) and np.array_equal(dw1, dw0)
        assert w1 == w0
        warned += bool(w1)
    assert warned > 0   # the headroom check was exercised
    # the new scheduler took the unbuilt path (the built one never makes an Im2col)
    assert used and set(used) == ({"__array__"} if per_job else {"write"})
    for rn, ro in zip(new.report, old.report):
        assert rn.counters == ro.counters, (rn.layer, rn.pass_)
    assert len(new.report) == len(old.report) > 0


def test_conv_operand_out_of_range_is_refused_alike(dev):
    """An input beyond DATA_W is the same one-line error with the lowering unbuilt (the
    check reads x) as with it built."""
    acc = Accelerator(dev)
    new, old = Scheduler(acc), Scheduler(acc)
    old.reads_im2col = False
    lim = 1 << (dev.cfg.data_w - 1)
    x = np.zeros((1, 1, 5, 5), np.int64)
    x[0, 0, 2, 3] = lim
    w = np.ones((2, 1, 3, 3), np.int64)
    msgs = []
    for sch in (new, old):
        with pytest.raises(OverflowError) as e:
            sch.conv_forward(x, w, "c", stride=1, pad=1)
        msgs.append(str(e.value))
    assert msgs[0] == msgs[1] and "c: X" in msgs[0]


# ------------------------------------------------------------- the decode's rectangles

@pytest.mark.parametrize("double_buffer", [True, False], ids=["dbuf", "single"])
def test_decode_rectangles_equal_the_index_gather(double_buffer):
    """Every layout's result and dW decode as rectangles of output beats
    (native.blocks / sum_blocks) gives exactly the index gather-and-sum (take_sum) on
    random output beats of every integer width, for random pass shapes on two arrays; the
    rectangles are found for the layouts the passes have (a result of one or two rows in
    short rectangles is left to the index gather)."""
    from intergrad import native
    from intergrad.spec import ArrayConfig
    if not native.available():
        pytest.skip("native kernels not built")
    rng = np.random.default_rng(51 + double_buffer)
    found = fallback = 0
    for cfg in (ArrayConfig(8, 8, 16, 32, 1), ArrayConfig(4, 6, 16, 32, 0)):
        for _ in range(12):
            B, N, M = (int(v) for v in rng.integers(1, [70, 30, 30]))
            for p in PASSES:
                lay = layout(cfg, p, B, N, M, double_buffer)
                for idx, blk in ((lay.res_index, lay.res_blocks),
                                 (None if lay.dw_index is None else lay.dw_index[None],
                                  lay.dw_blocks)):
                    if idx is None:
                        continue
                    if blk is None:   # rectangles of a row or two (B = 1): the index
                        assert idx.shape[1] <= 2 or idx.size < 64, (cfg, p, B, N, M)
                        fallback += 1
                        continue
                    found += 1
                    for dt in (np.int8, np.int16, np.int32, np.int64):
                        info = np.iinfo(dt)
                        v = rng.integers(info.min, info.max, lay.out_beats * cfg.out_lanes,
                                         dtype=dt, endpoint=True)
                        got = native.sum_blocks(v, blk, idx.shape[1:], cfg.out_lanes)
                        assert np.array_equal(got, v[idx].sum(axis=0, dtype=np.int64))
    assert found > 50 and fallback < found // 4


def test_decode_rectangles_refuse_what_is_not_one():
    """native.blocks: an index with one position moved is cut into more rectangles that
    still sum exactly what it gathers; a permutation (rectangles of one entry) is left to
    the index; no rectangle crosses a beat's lanes; sum_blocks refuses a rectangle reaching
    outside the vector."""
    from intergrad import native
    if not native.available():
        pytest.skip("native kernels not built")
    beats, lanes = 40, 8
    pos = (np.arange(beats)[:, None] * lanes + np.arange(6)).astype(np.uint32)   # (40, 6)
    blk = native.blocks(pos[None], lanes)
    assert blk is not None and len(blk) == 1
    v = np.arange(beats * lanes, dtype=np.int32) * 7 - 100
    moved = pos.copy()
    moved[17, 3] += 1          # one position off the rectangle
    mb = native.blocks(moved[None], lanes)
    assert mb is not None and len(mb) > 1
    assert np.array_equal(native.sum_blocks(v, mb, pos.shape, lanes), v[moved])
    rng = np.random.default_rng(3)
    assert native.blocks(rng.permutation(pos.ravel()).reshape(pos.shape)[None], lanes) is None
    run = np.arange(15, dtype=np.uint32).reshape(1, 1, 15)   # two beats' lanes in a row
    two = native.blocks(run, lanes)            # cut where the second beat starts
    assert two is not None and sorted(two[:, 3].tolist()) == [7, 8]
    assert np.array_equal(native.sum_blocks(v, two, (1, 15), lanes), v[run[0]])
    bad = np.array([[0, (beats - 5) * lanes, 6, 6]], dtype=np.uint32)   # 6 beats from 35
    with pytest.raises(IndexError):
        native.sum_blocks(v, bad, (6, 6), lanes)
    ok = np.array([[0, 0, 2, 6]], dtype=np.uint32)
    assert np.array_equal(native.sum_blocks(v, ok, (2, 6), lanes), v.reshape(-1, lanes)[:2, :6])
