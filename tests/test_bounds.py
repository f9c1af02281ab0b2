"""The accumulator bound cascade (:mod:`intergrad.bounds`) makes the exact bound's decisions.

* every cheap bound of every product kind (FC, conv forward, dW, dX) is at least the exact
  bound, on random and adversarial integer operands (all equal at the int8 / int16
  limits, one huge entry, zeros, sparse, negative, strided and padded convolutions);
  :func:`~intergrad.bounds.fit_bound` returns the exact bound whenever it reaches the limit;
* :func:`~intergrad.bounds.retry_bound` from a try's exact (or cheap) bound is at least the
  exact bound of the operands requantized with fewer bits, to nearest and stochastically
  (the same draws), the top-LSB clip included;
* DeviceEngine's decisions (integer operands, bits, generator state) with the cascade equal
  those with it off (``bounds.EXACT_ONLY``) on random layers of every kind, the cascade
  deciding many tries; and a few training steps (stochastic rounding, momentum) of digits
  and lenet (int16, int8) and lenet5 (int16) on the simulated core give bit-identical
  weights, losses, bits and generator state.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from intergrad import bounds
from intergrad.conv import col2im, conv_out_size, conv_weight_matrix, grad_matrix
from intergrad.engine import quantize
from intergrad.spec import ArrayConfig
from test_host_fastpath import _im2col_ref, _Recorder, _tensor

KINDS = ["dense", "equal", "huge", "zeros", "sparse", "negative", "small"]


def _ints(rng, shape, kind, bits):
    """Integer operands |q| < 2**bits of one kind."""
    top = (1 << bits) - 1
    if kind == "equal":
        return np.full(shape, top * (1 if rng.random() < 0.5 else -1), np.int64)
    if kind == "zeros":
        return np.zeros(shape, np.int64)
    q = rng.integers(-top, top + 1, shape)
    if kind == "huge":
        q = rng.integers(-1, 2, shape)
        q.flat[rng.integers(q.size)] = top
    elif kind == "sparse":
        q *= rng.random(shape) < 0.1
    elif kind == "negative":
        q = -np.abs(q)
    elif kind == "small":
        q //= 1 << max(bits - 3, 0)
    return q.astype(np.int64)


def _conv_case(rng):
    B, C, O, H = (int(v) for v in rng.integers(1, [4, 4, 5, 9]))
    H = max(H, 3)
    k, st, pd = int(rng.integers(1, 4)), int(rng.integers(1, 3)), int(rng.integers(0, 2))
    k = min(k, H + 2 * pd)
    return B, C, O, H, k, st, pd


def _abs(q):
    return np.abs(q).astype(np.float64)


def _conv_exacts(x_shape, k, st, pd):
    """The plain exact bounds (forward, dW, dX) of a convolution's integer operands."""
    def fwd(a, b):
        return (_im2col_ref(_abs(a), k, k, st, pd) @ _abs(conv_weight_matrix(b))).max()

    def dw(a, b):
        return (_im2col_ref(_abs(a), k, k, st, pd).T @ grad_matrix(_abs(b))).max()

    def dx(a, b):
        return col2im(grad_matrix(_abs(a)) @ _abs(conv_weight_matrix(b)).T,
                      x_shape, k, k, st, pd).max()
    return fwd, dw, dx


def _problems(rng, bits, kinds):
    """(problem, its exact bound by the plain formula) of every kind, for operands of the
    given kinds (the exact functions the problems get are the plain ones too)."""
    ka, kb = kinds
    N, K, M = (int(v) for v in rng.integers(1, [40, 300, 30]))
    P, Q = _ints(rng, (N, K), ka, bits), _ints(rng, (K, M), kb, bits)
    mat = lambda p, q: (p @ q).max()   # noqa: E731
    yield bounds.MatBound(_abs(P), _abs(Q), mat), (_abs(P) @ _abs(Q)).max()
    B, C, O, H, k, st, pd = _conv_case(rng)
    ho = conv_out_size(H, k, st, pd)
    x, w = _ints(rng, (B, C, H, H), ka, bits), _ints(rng, (O, C, k, k), kb, bits)
    dy = _ints(rng, (B, O, ho, ho), kb, bits)
    fwd, dw, dx = _conv_exacts(x.shape, k, st, pd)
    yield bounds.ConvFwdBound(x, w, fwd), fwd(x, w)
    yield bounds.ConvDWBound(x, dy, dw), dw(x, dy)
    dy2 = _ints(rng, (B, O, ho, ho), ka, bits)
    yield bounds.ConvDXBound(dy2, w, x.shape, st, pd, dx), dx(dy2, w)


@pytest.mark.parametrize("bits", [15, 7, 11], ids=lambda b: f"{b}bit")
def test_cheap_bounds_are_upper_bounds(bits):
    rng = np.random.default_rng(bits)
    n = 0
    for kinds in itertools.product(KINDS, KINDS):
        for _ in range(3):
            for prob, exact in _problems(rng, bits, kinds):
                assert prob.ints_exact
                tiers = list(prob.tiers())
                assert all(t >= exact for t in tiers), (type(prob).__name__, kinds, tiers, exact)
                assert all(float(t).is_integer() for t in tiers)
                assert prob.exact() == exact
                for limit in (1.0, float(1 << 19), float(1 << 31), max(exact, 1.0),
                              exact + 1.0, float(1 << 60)):
                    got = bounds.fit_bound(prob, limit)
                    if exact >= limit:
                        assert got == exact
                    else:
                        assert exact <= got < limit
                n += 1
    assert n == 4 * 3 * len(KINDS) ** 2


def test_bounds_not_exact_in_float64_use_the_exact_one():
    """A product whose integers may reach 2**53 tries no cheap bound and no retry bound."""
    P = np.full((2, 1 << 20), float((1 << 20) - 1))
    prob = bounds.MatBound(P, P.T.copy(), lambda p, q: -1.0)
    assert not prob.ints_exact
    assert bounds.fit_bound(prob, 2.0 ** 70) == -1.0
    assert bounds.retry_bound(prob, 0.0, 1, 1, 2.0 ** 70) is None


def _float_problems(rng, kinds):
    """(make(qa, qb) -> problem, exact(qa, qb), float operands a, b) of every kind."""
    ka, kb = kinds
    N, K, M = (int(v) for v in rng.integers(1, [30, 200, 20]))
    mat = lambda p, q: (p @ q).max()   # noqa: E731
    yield (lambda a, b: bounds.MatBound(_abs(a), _abs(b), mat), lambda a, b: mat(_abs(a), _abs(b)),
           _tensor(rng, (N, K), ka), _tensor(rng, (K, M), kb))
    B, C, O, H, k, st, pd = _conv_case(rng)
    ho = conv_out_size(H, k, st, pd)
    x, w = _tensor(rng, (B, C, H, H), ka), _tensor(rng, (O, C, k, k), kb)
    dy = _tensor(rng, (B, O, ho, ho), kb)
    fwd, dw, dx = _conv_exacts(x.shape, k, st, pd)
    yield lambda a, b: bounds.ConvFwdBound(a, b, fwd), fwd, x, w
    yield lambda a, b: bounds.ConvDWBound(a, b, dw), dw, x, dy
    yield (lambda a, b: bounds.ConvDXBound(a, b, x.shape, st, pd, dx), dx,
           _tensor(rng, (B, O, ho, ho), ka), w)


@pytest.mark.parametrize("bits", [15, 7], ids=lambda b: f"{b}bit")
@pytest.mark.parametrize("stochastic", [False, True], ids=["nearest", "stochastic"])
def test_retry_bound_covers_the_requantized_operands(bits, stochastic):
    rng = np.random.default_rng(bits + 2 * stochastic)
    kinds = ["dense", "flat", "relu", "sparse", "outlier", "zeros"]
    big = float(1 << 62)
    checked = 0
    for case in range(60):
        ka, kb = (kinds[i] for i in rng.integers(0, 6, 2))
        for make, exact, a, b in _float_problems(rng, (ka, kb)):
            if case % 5 == 0:   # the largest magnitude rounds up to the clip
                a = a.copy()
                a.flat[0] = np.float32(2.0 ** 3 * (1 - 2.0 ** -(bits + 1)))
            g = np.random.default_rng(case)
            state = g.bit_generator.state

            def q(t, n, rand):
                if rand and stochastic:
                    g.bit_generator.state = state
                    return quantize(t, n, g)[0]
                return quantize(t, n)[0]

            qa, qb = q(a, bits, False), q(b, bits, True)
            if not (qa.size and qb.size):
                continue
            prev = make(qa, qb)
            E = exact(qa, qb)
            uppers = [E] + [t for t in prev.tiers() if t < big]
            for da, db in [(1, 0), (0, 1), (1, 1), (2, 0), (0, 3), (3, 2)]:
                if min(bits - da, bits - db) < 1:
                    continue
                E2 = exact(q(a, bits - da, False), q(b, bits - db, True))
                for up in uppers:
                    r = bounds.retry_bound(prev, up, da, db, big)
                    assert r is not None and r >= E2, (type(prev).__name__, da, db, r, E2)
                    checked += 1
                # below the limit only when the new exact bound is (a usable value)
                r = bounds.retry_bound(prev, E, da, db, E2 + 1.0)
                assert r is None or E2 <= r < E2 + 1.0
            assert bounds.retry_bound(prev, E, 0, 0, E + 1.0) == E   # the same operands
    assert checked > 1000


# ----------------------------------------------------------------------------- decisions

def _counting(monkeypatch):
    """Counts of how product_bound's tries were decided: by retry_bound, a cheap tier, or
    the exact bound."""
    counts = {"retry": 0, "tier": 0, "exact": 0}
    retry, fit = bounds.retry_bound, bounds.fit_bound

    def retry_bound(*a):
        r = retry(*a)
        counts["retry"] += r is not None
        return r

    def fit_bound(prob, limit, **kw):
        exact = prob.exact
        hit = []
        prob.exact = lambda: hit.append(1) or exact()
        v = fit(prob, limit, **kw)
        counts["exact" if hit else "tier"] += 1
        return v

    monkeypatch.setattr(bounds, "retry_bound", retry_bound)
    monkeypatch.setattr(bounds, "fit_bound", fit_bound)
    return counts


@pytest.mark.parametrize("bits,acc,max_bits", [(16, 32, None), (8, 20, None), (12, 24, 8)],
                         ids=str)
@pytest.mark.parametrize("stochastic", [False, True], ids=["nearest", "stochastic"])
def test_decisions_with_and_without_the_cascade(monkeypatch, bits, acc, max_bits, stochastic):
    from intergrad.engine import DeviceEngine
    cfg = ArrayConfig(8, 8, bits, acc, 1)
    counts = _counting(monkeypatch)
    rng = np.random.default_rng(bits + acc + stochastic)
    kinds = ["dense", "flat", "relu", "sparse", "outlier", "zeros"]
    for case in range(60):
        kx, kw, kd = (kinds[i] if case % 3 else "flat" for i in rng.integers(0, 6, 3))
        need_dx = case % 4 != 3
        if case % 2:
            B, C, O, H, k, st, pd = _conv_case(rng)
            ho = conv_out_size(H, k, st, pd)
            x, w = _tensor(rng, (B, C, H, H), kx), _tensor(rng, (O, C, k, k), kw)
            dy = _tensor(rng, (B, O, ho, ho), kd)
            runs = [lambda e: e.conv_forward(x, w, "L", stride=st, pad=pd),
                    lambda e: e.conv_backward(x, w, dy, "L", stride=st, pad=pd, need_dx=need_dx)]
        else:
            B, N, M = (int(v) for v in rng.integers(1, [80, 300, 40]))
            x, w, dy = _tensor(rng, (B, N), kx), _tensor(rng, (N, M), kw), _tensor(rng, (B, M), kd)
            runs = [lambda e: e.fc_forward(x, w, "L"),
                    lambda e: e.fc_backward(x, w, dy, "L", need_dx=need_dx)]
        out = {}
        for exact_only in (False, True):
            monkeypatch.setattr(bounds, "EXACT_ONLY", exact_only)
            rec = _Recorder(cfg)
            eng = DeviceEngine(rec, stochastic=stochastic, seed=case, max_bits=max_bits)
            res = []
            for run in runs + runs:   # again: the bounds seen the first time skip tiers
                try:
                    run(eng)
                    res.append([a.tobytes() for a in rec.calls[-1]])
                except OverflowError as e:
                    res.append(str(e))
            out[exact_only] = (res, eng.bits_used, eng.rng and eng.rng.bit_generator.state)
        assert out[False] == out[True], case
    # the cascade decided tries both ways, and the exact bound still decided the rest
    assert counts["tier"] > 10 and counts["exact"] > 10, counts
    assert counts["retry"] > (0 if max_bits else 10), counts   # 8 of 23 bits: few retries


def _train(name, cfg, steps, exact_only, monkeypatch):
    from intergrad import layers as L
    from intergrad.device import open_accelerator
    from intergrad.engine import DeviceEngine
    from intergrad.nn import SGD, gradients, load_digits_split
    from intergrad.scheduler import Scheduler
    monkeypatch.setattr(bounds, "EXACT_ONLY", exact_only)
    x, y, _, _ = load_digits_split(0)
    if name == "lenet5":
        from intergrad.data import fit_images
        x = fit_images(x, (32, 32))
    net = L.build(name, x.shape[1:], seed=0)
    accel = open_accelerator("sim", cfg, verbose=False)
    try:
        eng = DeviceEngine(Scheduler(accel), stochastic=True, seed=3)
        opt = SGD(net.params(), 0.1, momentum=0.9)
        rng = np.random.default_rng(5)
        losses = []
        for _ in range(steps):
            idx = rng.choice(len(y), 32, replace=False)
            st = gradients(net, eng, x[idx], y[idx])
            opt.step(st.grads)
            losses.append(st.loss)
    finally:
        accel.device.close()
    return [p.tobytes() for p in net.params()], losses, eng.bits_used, eng.rng.bit_generator.state


@pytest.mark.parametrize("name,cfg", [("digits", ArrayConfig(8, 8, 16, 32, 1)),
                                      ("digits", ArrayConfig(8, 8, 8, 20, 1)),
                                      ("lenet", ArrayConfig(8, 8, 16, 32, 1)),
                                      ("lenet", ArrayConfig(8, 8, 8, 20, 1)),
                                      ("lenet5", ArrayConfig(8, 8, 16, 32, 1))],
                         ids=["digits-int16", "digits-int8", "lenet-int16", "lenet-int8",
                              "lenet5-int16"])
def test_training_bit_identical_with_and_without_the_cascade(monkeypatch, name, cfg):
    counts = _counting(monkeypatch)
    fast = _train(name, cfg, 4, False, monkeypatch)
    decided = dict(counts)
    slow = _train(name, cfg, 4, True, monkeypatch)
    assert fast == slow
    assert decided["retry"] + decided["tier"] > 0, decided
    assert counts["retry"] == decided["retry"] and counts["tier"] == decided["tier"]


@pytest.mark.parametrize("bits", [15, 7], ids=lambda b: f"{b}bit")
def test_shard_retry_bound_is_the_whole_batch_retry_bound(bits):
    """A data-parallel shard's retry bound of a conv dW product (intergrad.parallel:
    ShardEngine._retry, from the previous try's reduced exact bound and its ConvDWBound
    shard terms reduced over the shards) is bounds.retry_bound of the whole batch's
    problem, value for value, None where that is None: the shards prove a retry exactly
    when one device does."""
    from intergrad.parallel import ShardEngine, _reduce
    rng = np.random.default_rng(200 + bits)
    eng = ShardEngine.__new__(ShardEngine)       # only its limit and batch size are read
    n = held = 0
    for kinds in itertools.product(KINDS, KINDS):
        B, C, O, H, k, st, pd = _conv_case(rng)
        B += 1
        ho = conv_out_size(H, k, st, pd)
        x, dy = _ints(rng, (B, C, H, H), kinds[0], bits), _ints(rng, (B, O, ho, ho), kinds[1], bits)
        _, dw, _ = _conv_exacts(x.shape, k, st, pd)
        whole = bounds.ConvDWBound(x, dy, dw)
        E = whole.exact()
        cuts = sorted(set([0, B] + [int(c) for c in rng.integers(1, B, 2)]))
        shards = [bounds.ConvDWBound(x[a:b], dy[a:b], dw) for a, b in zip(cuts, cuts[1:])]
        parts = [s.shard_parts() for s in shards]
        red = [_reduce(op, [p[i] for p in parts]) for i, op in enumerate(whole.SHARD_OPS)]
        eng.rows = (0, B, B)
        for da, db in ((0, 0), (1, 0), (0, 2), (1, 1), (3, 2)):
            for limit in (max(E, 1.0) / 2 ** (da + db) * f for f in (0.5, 1.0, 1.5, 4.0, 64.0)):
                eng.limit = float(limit)
                want = bounds.retry_bound(whole, E, da, db, eng.limit)
                for s in shards:
                    state = (bits, bits, E, s.shard_l1(red, B))
                    assert eng._retry(state, bits - da, bits - db) == want, (kinds, da, db)
                n += 1
                held += want is not None
    assert n == len(KINDS) ** 2 * 25 and 0 < held < n
