"""Data-parallel training (intergrad.parallel): N simulated devices in N worker processes give,
after every step, the same weights bit for bit as one device (int16 and int8 builds,
nearest and stochastic rounding, batch and output-feature splits, uneven shards); a
failing or dying worker is one line naming it; the local pool and Ray give the same."""
from __future__ import annotations

import itertools
import os
import signal
import time

import numpy as np
import pytest

from intergrad import layers as L
from intergrad.engine import DeviceEngine
from intergrad.nn import SGD, load_digits_split, softmax_ce
from intergrad.parallel import DataParallel, WorkerError, feature_plan, layer_modes
from intergrad.scheduler import Scheduler
from intergrad.spec import ArrayConfig

CFGS = {16: ArrayConfig(8, 8, 16, 32, 1), 8: ArrayConfig(8, 8, 8, 20, 1)}


@pytest.fixture(scope="module")
def digits():
    return load_digits_split(0)


def _one_device(cfg, stochastic, seed):
    from intergrad.device.sim import SimDevice
    from intergrad.driver import Accelerator
    dev = SimDevice(cfg, verbose=False)
    return dev, DeviceEngine(Scheduler(Accelerator(dev)), "intergrad", stochastic=stochastic,
                              seed=seed)


def _lockstep(net_name, bits, stochastic, workers, split, digits, batches, scales=None,
              in_process=None, started=None):
    """Train one device and ``workers`` devices side by side; compare after every step.
    ``scales``: per batch, a factor per sample (the inputs' scale varies between steps and
    shards); ``started()``: called once the workers run.  Returns the one-device engine
    and the workers' guesses (right, wrong)."""
    cfg = CFGS[bits]
    x, y = digits[0], digits[1]
    ref = L.build(net_name, (1, 8, 8), seed=2, channels=4)
    net = ref.copy()
    dev, be = _one_device(cfg, stochastic, seed=7)
    o1, o2 = SGD(ref.params(), 0.1, 0.9), SGD(net.params(), 0.1, 0.9)
    try:
        with DataParallel(net, cfg, workers=workers, stochastic=stochastic, seed=7,
                          split_features=split, in_process=in_process) as dp:
            assert dp.workers == workers
            assert len(dp.pool.procs) == workers - (in_process is not False)
            if started is not None:
                started()
            for i, (i0, b) in enumerate(batches):
                idx = np.arange(i0, i0 + b)
                xb = x[idx] if scales is None else \
                    (x[idx] * scales[i].reshape(-1, 1, 1, 1)).astype(x.dtype)
                l1, c1 = ref.forward(be, xb)
                l2, c2 = dp.net.forward(dp.engine, xb)
                assert np.array_equal(l1, l2)
                loss1, d1 = softmax_ce(l1, y[idx])
                loss2, d2 = softmax_ce(l2, y[idx])
                assert loss1 == loss2
                g1, g2 = ref.backward(be, c1, d1), dp.net.backward(dp.engine, c2, d2)
                assert len(g1) == len(g2)
                for a, c in zip(g1, g2):
                    assert a.dtype == c.dtype and np.array_equal(a, c)
                o1.step(g1)
                o2.step(g2)
                for a, c in zip(ref.params(), net.params()):
                    assert np.array_equal(a, c)
            assert dp.bits_used() == be.bits_used
            if stochastic:
                assert dp.engine.rng.bit_generator.state == be.rng.bit_generator.state
            rep = dp.report
            # every GEMM layer ran on the devices, in all its passes
            assert {(r.layer, r.pass_) for r in rep} == {(r.layer, r.pass_) for r in be.s.report}
            guesses = dp.query(0, "guesses")
    finally:
        dev.close()
    return be, guesses


@pytest.mark.parametrize("net_name,bits,stochastic,workers,split", [
    ("lenet", 16, False, 2, True),
    ("lenet", 8, True, 2, True),
    ("lenet", 8, False, 3, False),
    ("digits", 16, True, 2, False),
    ("digits", 8, False, 3, True),
], ids=["lenet-int16", "lenet-int8-stochastic", "lenet-int8-3w-batch", "digits-int16-stochastic",
        "digits-int8-3w"])
def test_weights_bit_identical_to_one_device(net_name, bits, stochastic, workers, split, digits):
    # uneven shards (a batch of 31 over 3 workers), and a batch smaller than the workers
    batches = [(0, 32), (32, 31), (63, 32), (95, 2)]
    _lockstep(net_name, bits, stochastic, workers, split, digits, batches)


@pytest.mark.parametrize("bits,stochastic", [(16, True), (8, False)], ids=["int16-stochastic",
                                                                          "int8"])
def test_shards_cheap_bounds_give_the_exact_bounds_run(monkeypatch, bits, stochastic, digits):
    """The bound cascade off (intergrad.bounds.EXACT_ONLY) in this process, the one-device
    run's and worker 0's, after the other workers started with it on: each shard's bound,
    cheap or exact, reduces to the exact bounds' decisions (the same weights bit for bit)."""
    from intergrad import bounds
    batches = [(0, 32), (32, 31), (63, 32)]
    _lockstep("lenet", bits, stochastic, 3, True, digits, batches, in_process=True,
              started=lambda: monkeypatch.setattr(bounds, "EXACT_ONLY", True))


@pytest.mark.parametrize("in_process", [True, False], ids=["worker0-in-driver", "all-processes"])
def test_a_worker_that_sat_out_a_step_catches_up(in_process, digits):
    """A batch of 2 on 3 workers leaves worker 2 out of a step; in the next ones it takes
    worker 0's stochastic-rounding generator and guesses, so the run stays the one-device
    run (before, its generator was a step behind)."""
    _lockstep("lenet", 8, True, 3, True, digits, [(0, 32), (32, 2), (34, 32), (66, 31)],
              in_process=in_process)


def test_every_shard_in_a_worker_process_gives_the_same(digits):
    """in_process=False: shard 0 in a worker process too (as Ray runs every shard)."""
    _lockstep("lenet", 8, True, 2, True, digits, [(0, 32), (32, 31)], in_process=False)


@pytest.mark.parametrize("bits,stochastic", [(8, True), (16, False)],
                         ids=["int8-stochastic", "int16"])
def test_wrong_guesses_give_the_one_device_run(bits, stochastic, digits):
    """A sharded quantization guesses its scales and bound attempts from the step before
    and reduces once (intergrad.parallel.ShardEngine._guess); the inputs here change scale
    between steps and between the shards (one shard 16x the other, then the other way,
    zeros in one shard), so guesses fail, and then the one-device run is still met bit for
    bit; both kinds occur."""
    b = 32
    one = np.ones(b, np.float32)
    half = np.r_[np.ones(b // 2), np.full(b // 2, 16.0)].astype(np.float32)
    zero = np.r_[np.zeros(b // 2), np.ones(b // 2)].astype(np.float32)
    scales = [one, one, half, half[::-1], one / 64, zero, zero[::-1], one * 8]
    batches = [(32 * i, b) for i in range(len(scales))]
    be, (right, wrong) = _lockstep("lenet", bits, stochastic, 2, False, digits, batches, scales)
    assert right > 0 and wrong > 0


@pytest.mark.parametrize("bits", [16, 8], ids=["int16", "int8"])
def test_lenet5_bit_identical(bits):
    """The largest network (conv 5x5 without padding, avg-pools, three FC layers), three
    steps; on the int8 build its long reductions make the accumulator bound drop magnitude
    bits, so the bounds reduced over the workers (sums of the shards' dW bounds) decide
    them, and from the second step on the workers guess those attempts."""
    from intergrad.data import fit_images
    d = load_digits_split(0)
    x = fit_images(d[0][:72], (32, 32))
    cfg = CFGS[bits]
    ref = L.build("lenet5", (1, 32, 32), seed=0)
    net = ref.copy()
    dev, be = _one_device(cfg, bits == 8, 0)
    try:
        with DataParallel(net, cfg, workers=2, stochastic=bits == 8) as dp:
            for s in range(3):
                xs, ys = x[24 * s:24 * (s + 1)], d[1][24 * s:24 * (s + 1)]
                l1, c1 = ref.forward(be, xs)
                l2, c2 = dp.forward(xs)
                assert np.array_equal(l1, l2)
                _, dl = softmax_ce(l1, ys)
                for p, a, c in zip(ref.params(), ref.backward(be, c1, dl), dp.backward(c2, dl)):
                    assert np.array_equal(a, c)
                    p -= 0.05 * a
                dp.master.set_params(ref.params())
            assert dp.bits_used() == be.bits_used
            right, wrong = dp.query(0, "guesses")
            assert right > 0
            # the conv dW bounds: an exact matrix on a quantization's first try, its later
            # tries proven by the retry bound over the shards (before the reduction, or
            # after it for guessed tries) where it holds
            sb = dp.query(0, "sum_bounds")
            assert sb.get("exact", 0) > 0 and sb.get("retry", 0) + sb.get("deferred", 0) > 0, sb
    finally:
        dev.close()
    if bits == 8:
        assert min(min(v.values()) for v in be.bits_used.values()) < bits - 1


def test_feature_split_covers_every_column_once():
    net = L.build("lenet5", (1, 32, 32))
    modes = layer_modes(net)
    fc = {l.name: l.w.shape for l in net.gemm_layers() if modes[l.name] == "features"}
    for cfg, n in itertools.product([CFGS[16], ArrayConfig(4, 6, 16, 32, 0)], (1, 2, 3, 5)):
        align = 12 if cfg.rows == 4 else 8
        plan = feature_plan(net, modes, n, cfg)
        assert plan == feature_plan(net, modes, n, cfg) and set(plan) == set(fc)
        for name, cols in plan.items():
            M = fc[name][1]
            assert len(cols) == n and cols[0][0] == 0 and cols[-1][1] == M
            for (_, a1), (b0, _) in zip(cols, cols[1:]):
                assert a1 == b0                      # contiguous, disjoint, in worker order
            for c0, c1 in cols:                      # whole array blocks (or none)
                assert c0 == c1 or c0 % align == 0
            blocks = [-(-(c1 - c0) // align) for c0, c1 in cols]
            assert max(blocks) - min(blocks) <= 1   # each layer as even as blocks allow
    # 2 workers on 8x8: fc1's extra block on worker 0, fc2's on worker 1 (the totals even)
    plan = feature_plan(net, modes, 2, CFGS[16])
    assert plan == {"fc1": [(0, 64), (64, 120)], "fc2": [(0, 40), (40, 84)],
                    "fc3": [(0, 8), (8, 10)]}
    net = L.build("lenet5", (1, 32, 32))
    assert layer_modes(net) == {"conv1": "batch", "conv2": "batch", "fc1": "features",
                                "fc2": "features", "fc3": "features"}
    assert set(layer_modes(net, split_features=False).values()) == {"batch"}


def test_a_failing_worker_is_one_line_and_the_pool_recovers(digits):
    cfg = CFGS[16]
    net = L.build("digits", (1, 8, 8), seed=0, channels=4)
    x = digits[0][:8]
    with DataParallel(net, cfg, workers=2, timeout=60) as dp:
        good, _ = dp.forward(x)
        # worker 1 gets weights of the wrong shape: it fails while worker 0 waits in a
        # reduction; worker 0's pass is aborted
        params = net.params()
        bad = [np.zeros((3, 3), np.float32)] + params[1:]
        msgs = {0: ("forward", 99, params, x[:4], (0, 4, 8), (0, 2)),
                1: ("forward", 99, bad, x[4:], (4, 8, 8), (1, 2))}
        with pytest.raises(WorkerError) as e:
            dp._run(msgs)
        msg = str(e.value)
        assert msg.startswith("worker 1 (") and "ValueError" in msg and "\n" not in msg
        again, _ = dp.forward(x)                     # both workers serve the next step
        assert np.array_equal(good, again)
        # the same with worker 0 (in this process) failing while worker 1 waits
        msgs = {0: ("forward", 98, bad, x[:4], (0, 4, 8), (0, 2)),
                1: ("forward", 98, params, x[4:], (4, 8, 8), (1, 2))}
        with pytest.raises(WorkerError, match=r"^worker 0 \(.*\(this process\)\): ValueError"):
            dp._run(msgs)
        again, _ = dp.forward(x)
        assert np.array_equal(good, again)
        # a diverged input is the driver's FloatingPointError (the CLI's "diverged" line)
        with pytest.raises(FloatingPointError):
            dp.forward(np.full_like(x, np.nan))
        # a worker that dies: one line naming it, no hang
        pid = dp.pool.procs[-1].pid          # worker 1's (worker 0 runs in this process)
        assert dp.local is not None and len(dp.pool.procs) == 1
        xs = digits[0][:256]                 # large enough for shared memory both ways
        logits, token = dp.forward(xs)
        dp.backward(token, softmax_ce(logits, digits[1][:256])[1])
        segments = [s.name for c in dp.pool.conns for s in (c.shm, c.peer) if s is not None]
        assert len(segments) == 2            # the driver's (the batch) and worker 1's (dys)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerError, match=r"worker 1 \(pid \d+\) died \(signal 9\)"):
            dp.forward(x)
    # no shared memory left behind, the killed worker's included
    assert not [n for n in segments if os.path.exists(f"/dev/shm/{n}")]


@pytest.mark.parametrize("in_process", [True, False], ids=["worker0-in-driver", "all-processes"])
def test_parts_that_do_not_reduce_end_the_pass_at_once(in_process, digits, monkeypatch):
    """A reduction whose parts the driver cannot reduce (workers out of step on a shape)
    ends the pass on every worker, which waits for its answer, with one line naming the
    reduction, at once (not after the timeout: a worker's part was read already), and the
    next pass runs."""
    net = L.build("digits", (1, 8, 8), seed=0, channels=4)
    x = digits[0][:8]
    with DataParallel(net, CFGS[16], workers=2, timeout=60, in_process=in_process) as dp:
        good, _ = dp.forward(x)
        real = DataParallel._reduced

        def broken(rep):
            raise ValueError("all the input array dimensions except for the concatenation "
                             "axis must match exactly")

        monkeypatch.setattr(DataParallel, "_reduced", staticmethod(broken))
        t0 = time.perf_counter()
        with pytest.raises(WorkerError, match=r"^the workers' parts of reduction \S+ do not "
                                              r"reduce: ValueError: all the input") as e:
            dp.forward(x)
        assert "\n" not in str(e.value) and time.perf_counter() - t0 < 20
        monkeypatch.setattr(DataParallel, "_reduced", staticmethod(real))
        again, _ = dp.forward(x)
        assert np.array_equal(good, again)


def test_the_polling_setting(monkeypatch, digits):
    """$INTERGRAD_SPIN sets how long a local wait polls (0: it blocks at once); a bad value
    is one line before anything starts."""
    from intergrad.parallel import SPIN, poll_seconds
    monkeypatch.delenv("INTERGRAD_SPIN", raising=False)
    assert poll_seconds() == SPIN > 0
    for bad in ("fast", "-1", "nan", "inf"):
        monkeypatch.setenv("INTERGRAD_SPIN", bad)
        with pytest.raises(ValueError, match=r"^INTERGRAD_SPIN=.*a number >= 0") as e:
            DataParallel(L.build("digits", (1, 8, 8), seed=0, channels=4), CFGS[16], workers=2)
        assert "\n" not in str(e.value)
    monkeypatch.setenv("INTERGRAD_SPIN", "0")
    with DataParallel(L.build("digits", (1, 8, 8), seed=0, channels=4), CFGS[16],
                      workers=2) as dp:
        assert [c.spin for c in dp.pool.conns] == [0.0]
        logits, token = dp.forward(digits[0][:8])
        dp.backward(token, softmax_ce(logits, digits[1][:8])[1])
        assert dp.spin_seconds() == [0.0, 0.0]


def test_a_wait_polls_first_and_stays_bounded():
    """_ShmConn.poll: the first ``spin`` seconds of a wait poll (an answer then is read
    without blocking), the rest blocks up to the timeout; poll(0) never waits."""
    import multiprocessing
    import threading
    from intergrad.parallel import _ShmConn
    a, b = (_ShmConn(c, spin=0.05) for c in multiprocessing.Pipe())
    t0 = time.perf_counter()
    assert not a.poll(0.01) and time.perf_counter() - t0 < 1.0 and a.spun > 0.0
    spun = a.spun
    assert not a.poll(0.0) and a.spun == spun
    for delay in (0.005, 0.2):     # during the polling, and after it (a blocking wait)
        threading.Timer(delay, b.send, (("part", delay),)).start()
        t0 = time.perf_counter()
        assert a.poll(5.0) and a.recv() == ("part", delay)
        assert time.perf_counter() - t0 < 4.0
    t0 = time.perf_counter()
    assert not a.poll(0.3) and 0.25 < time.perf_counter() - t0 < 3.0   # the whole timeout
    b.send(("late",))
    assert a.poll(None) and a.recv() == ("late",)
    a.close()
    b.close()


def test_cli_train_workers_gives_the_one_device_run(tmp_path, capsys):
    from intergrad.cli import main
    out = {}
    for w in (1, 2):
        ck = tmp_path / f"w{w}.npz"
        assert main(["train", "--backend", "sim", "--net", "lenet", "--channels", "4",
                     "--epochs", "1", "--limit", "96", "--measure-steps", "0", "--no-progress",
                     "--stochastic-rounding", "--workers", str(w), "--save", str(ck)]) == 0
        out[w] = capsys.readouterr().out
    assert "data parallel: 2 workers (processes" in out[2]

    def lines(s, key):
        return [l.split("(")[0] for l in s.splitlines() if l.startswith(key)]
    assert lines(out[1], "epoch") == lines(out[2], "epoch")
    assert lines(out[1], "test accuracy") == lines(out[2], "test accuracy")
    assert (tmp_path / "w1.npz").read_bytes() == (tmp_path / "w2.npz").read_bytes()
    # resumed on 2 workers (the stochastic-rounding state from the checkpoint) = 2 epochs
    # on one device
    args = ["train", "--backend", "sim", "--net", "lenet", "--channels", "4", "--limit", "96",
            "--measure-steps", "0", "--no-progress", "--stochastic-rounding"]
    assert main(args + ["--epochs", "2", "--save", str(tmp_path / "one.npz")]) == 0
    assert main(args + ["--epochs", "2", "--workers", "2", "--load", str(tmp_path / "w2.npz"),
                        "--save", str(tmp_path / "resumed.npz")]) == 0
    assert (tmp_path / "one.npz").read_bytes() == (tmp_path / "resumed.npz").read_bytes()


def test_ray_actors_give_the_same_weights(digits):
    """Ray actors, one simulated device each (a local Ray instance with 2 CPUs)."""
    pytest.importorskip("ray")
    import ray
    cfg = CFGS[8]
    ref = L.build("digits", (1, 8, 8), seed=1, channels=4)
    net = ref.copy()
    dev, be = _one_device(cfg, True, 3)
    x, y = digits[0][:32], digits[1][:32]
    try:
        with DataParallel(net, cfg, workers=2, executor="ray", stochastic=True, seed=3) as dp:
            assert "Ray actors" in dp.describe()
            for _ in range(2):
                l1, c1 = ref.forward(be, x)
                l2, c2 = dp.net.forward(dp.engine, x)
                assert np.array_equal(l1, l2)
                _, dl = softmax_ce(l1, y)
                g1, g2 = ref.backward(be, c1, dl), dp.net.backward(dp.engine, c2, dl)
                for p, a in zip(ref.params(), g1):
                    p -= 0.1 * a
                for p, a in zip(net.params(), g2):
                    p -= 0.1 * a
                assert all(np.array_equal(a, b) for a, b in zip(ref.params(), net.params()))
        assert not ray.is_initialized()     # the instance it started is stopped
    finally:
        dev.close()


def test_cli_ray_missing_is_one_line(monkeypatch, capsys):
    import sys
    from intergrad.cli import main
    monkeypatch.setitem(sys.modules, "ray", None)       # as if not installed
    assert main(["train", "--backend", "sim", "--net", "digits", "--epochs", "1", "--limit", "64",
                 "--measure-steps", "0", "--no-progress", "--workers", "2",
                 "--executor", "ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install" in err and "intergrad[ray]" in err and len(err.splitlines()) == 1


def test_a_worker_that_cannot_start_is_one_line():
    net = L.build("digits", (1, 8, 8), seed=0, channels=4)
    with pytest.raises(WorkerError) as e:
        DataParallel(net, CFGS[16], workers=2, device_kw={"no_such_option": 1})
    msg = str(e.value)
    assert msg.startswith("worker 0 could not start: TypeError") and "\n" not in msg


def test_shm_transport_carries_arrays_exactly_and_cleans_up():
    """The local pool's pipes (intergrad.parallel._ShmConn): large arrays travel in shared
    memory, exactly (dtype, shape, values, non-contiguous views), small ones and the rest of
    the message in the pickle; a larger message replaces the segment; after close() no
    segment of either end is left."""
    import multiprocessing
    from intergrad.parallel import SHM_MIN_BYTES, _ShmConn
    a, b = (_ShmConn(c) for c in multiprocessing.Pipe())
    rng = np.random.default_rng(0)
    big = rng.integers(-2**40, 2**40, (300, 70), dtype=np.int64)
    msg = ("done", (big, {"fc1": 3, "conv1": -2},
                    {"x": (rng.standard_normal((64, 6, 9, 9)).astype(np.float32), True),
                     "y": (None, False)}),
           big[::3, 1::2], np.arange(5, dtype=np.int16), [np.float64(1.5), "text"])
    a.send(msg)
    got = b.recv()
    assert a.shm is not None and b.peer is not None and b.peer.name == a.shm.name
    first = a.shm.name
    assert got[0] == "done" and got[1][1] == msg[1][1] and got[1][2]["y"] == (None, False)
    for x, y in [(got[1][0], big), (got[1][2]["x"][0], msg[1][2]["x"][0]), (got[2], big[::3, 1::2]),
                 (got[3], msg[3])]:
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)
    assert got[4] == msg[4]
    big[...] = 0                                   # the receiver has its own copy
    assert got[1][0].any()
    # the answer the other way, then a message larger than the segment: a new one
    b.send(("resume", [np.ones(SHM_MIN_BYTES, np.uint8)]))
    assert np.array_equal(a.recv()[1][0], np.ones(SHM_MIN_BYTES, np.uint8))
    huge = np.full((1 << 18, 5), 7, np.int64)        # 10 MB > the first 1 MB segment
    a.send(("x", huge))
    assert np.array_equal(b.recv()[1], huge) and a.shm.name != first
    names = [a.shm.name, b.shm.name]
    a.close()
    b.close()
    assert not [n for n in names if os.path.exists(f"/dev/shm/{n}")]
    assert not os.path.exists(f"/dev/shm/{first}")


@pytest.mark.parametrize("in_process", [True, False], ids=["worker0-in-driver", "all-processes"])
def test_phases_line_up_with_the_reductions(in_process, digits):
    """DataParallel.phases(): per worker, the CPU time of each stretch of its passes between
    reductions; every worker has the same stretches (the benchmark's critical path)."""
    net = L.build("lenet", (1, 8, 8), seed=0, channels=4)
    x, y = digits[0][:32], digits[1][:32]
    with DataParallel(net, CFGS[16], workers=2, in_process=in_process) as dp:
        dp.phases()
        r0 = dp.reductions()
        logits, token = dp.forward(x)
        dp.backward(token, softmax_ce(logits, y)[1])
        ph, r1 = dp.phases(), dp.reductions()
        counts = {b[0] - a[0] for a, b in zip(r0, r1)}
        assert len(counts) == 1 and counts.pop() > 0
        assert [len(p) for p in ph] == [r1[0][0] - r0[0][0] + 2] * 2   # + the passes' ends
        assert all(v >= 0 for p in ph for v in p) and sum(ph[1]) > 0
        assert dp.phases() == [[], []]


def test_an_interrupt_in_the_driver_closes_the_workers(digits):
    """Ctrl-C while the training process runs shard 0's pass: KeyboardInterrupt, not a
    WorkerError, and the other workers (mid-pass) are closed, not left out of step."""
    net = L.build("digits", (1, 8, 8), seed=0, channels=4)
    dp = DataParallel(net, CFGS[16], workers=2)
    procs = list(dp.pool.procs)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    dp.local.net.forward = interrupted
    with pytest.raises(KeyboardInterrupt):
        dp.forward(digits[0][:8])
    assert dp.pool.procs == [] and all(not p.is_alive() for p in procs)
    dp.close()


def test_part_quantization_is_the_appended_element_definition():
    """A shard's quantization of its part with the whole tensor's largest magnitude m
    (parallel._quantize_part, engine.quantize's top=) is the quantization of the part with
    one more element of magnitude m, to nearest and stochastically (the same draws), the
    top-LSB clip included; a non-finite m or part raises."""
    from intergrad.engine import quantize
    from intergrad.parallel import _Noise, _quantize_part
    rng = np.random.default_rng(5)
    for trial in range(200):
        x = rng.standard_normal(int(rng.integers(1, 40))) * 10.0 ** rng.integers(-3, 3)
        m = float(np.abs(x).max()) * float(rng.choice([0.0, 0.5, 1.0, 1.0 + 1e-9, 3.0]))
        if trial % 7 == 0:
            x[:] = 0.0
        bits = int(rng.integers(1, 16))
        u = rng.random(x.shape) if trial % 2 else None
        got = _quantize_part(x, m, bits, u)
        ext = quantize(np.append(x, m), bits,
                       None if u is None else _Noise(np.append(u, 0.0)))
        assert np.array_equal(got[0], ext[0][:-1]) and got[1] == ext[1], (trial, m, bits)
    for m, part in ((float("nan"), [1.0]), (float("inf"), [1.0]), (1.0, [float("nan")])):
        with pytest.raises(FloatingPointError):
            _quantize_part(np.array(part), m, 7, None)
