"""Accumulator bounds of the quantized GEMMs: cheap upper bounds tried before the exact one.

A quantization try is accepted when the exact bound E = max(|A|.|B|) of a product's
accumulators is below ``limit`` = 2**(ACC_W-1); when it is not, E itself decides how many
bits to drop (:func:`intergrad.engine.bits_over`).  So a cheap value U >= E with U < limit
accepts exactly the tries the exact bound accepts, and only when every cheap U >= limit is
E computed: :func:`fit_bound` returns E when E >= limit, else some U with E <= U < limit,
and every decision is the one the exact bound alone makes.

Exactness: the operands are integers (|q| < 2**bits) held in float64; every bound here is a
sum of products of them (or of their maxima and sums), all integers at most
K * max|qa| * max|qb| (K the reduction length), so below 2**53 they are exact in any
order (no rounding at all).  A problem whose K * max|qa| * max|qb| reaches 2**53 uses the
exact bound only (:attr:`_Problem.ints_exact`).  :func:`retry_bound` computes in Python
integers, exact too.

``EXACT_ONLY = True`` switches the cascade off (every bound exact): the reference the
tests compare the decisions with.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .conv import col2im

#: every bound computed exactly (the cascade off): for tests and comparisons
EXACT_ONLY = False
#: multiply-adds of a product whose exact bound is as cheap as its matrix-vector bounds
SMALL = 1 << 16


def _absf(q):
    return np.abs(q, dtype=np.float64)


def _top(a) -> float:
    return float(a.max()) if a.size else 0.0


def _mm(P, Q):
    """:func:`intergrad.engine.exact_matmul` (on one BLAS thread)."""
    from .engine import exact_matmul   # engine imports this module
    return exact_matmul(P, Q)


class _Problem:
    """One product's bound, of its two quantized operands a, b (integer arrays): ``K``
    (terms per accumulator), cheap upper bounds (:meth:`tiers`, cheapest first), the exact
    bound (:meth:`exact`: ``exact(a, b)``) and :meth:`l1` for :func:`retry_bound`.
    ``A``, ``B``: |a|, |b| as float64 (given, or made when first asked for)."""

    #: terms of the longest sum a tier or :meth:`l1` takes of products of entries (K
    #: unless a tier sums more, e.g. a whole input channel)
    span: int = 0

    def __init__(self, a, b, K: int, exact, A=None, B=None):
        self.a, self.b, self.K, self._exact = a, b, int(K), exact
        if A is not None:
            self.A = A
        if B is not None:
            self.B = B

    @functools.cached_property
    def A(self):
        return _absf(self.a)

    @functools.cached_property
    def B(self):
        return _absf(self.b)

    @property
    def ints_exact(self) -> bool:
        """Every integer a tier or :meth:`l1` sums is below 2**53 (exact in float64)."""
        return max(self.K, self.span) * int(_top(self.A)) * int(_top(self.B)) < 1 << 53

    def tiers(self):
        return iter(())

    def exact(self) -> float:
        return float(self._exact(self.a, self.b))

    def l1(self) -> tuple[float, float]:
        """(A1, B1): upper bounds of, over the accumulators, the largest sum of the first
        operand's entries in one accumulator's terms, and of the second's."""
        raise NotImplementedError


class MatBound(_Problem):
    """max(P @ Q) of non-negative integer matrices P (m, K), Q (K, n) (float64, their own
    |.|; ``exact(P, Q)``).  Cheap: max(P @ colmax(Q)) and max(rowmax(P) @ Q),
    matrix-vector products (each entry of P @ Q is at most both); none for a product of
    at most :data:`SMALL` multiply-adds (its exact bound costs no more)."""

    def __init__(self, P, Q, exact):
        super().__init__(P, Q, P.shape[1], exact, P, Q)

    def tiers(self):
        P, Q = self.A, self.B
        if P.shape[0] * self.K * Q.shape[1] <= SMALL:
            return
        yield min(_top(_mm(P, Q.max(axis=1)[:, None])), _top(_mm(P.max(axis=0)[None], Q)))

    def l1(self):
        return _top(self.A.sum(axis=1)), _top(self.B.sum(axis=0))


class ConvFwdBound(_Problem):
    """max(|im2col(x)| @ |W|) of a convolution (x (B, C, H, W), w (O, C, kh, kw); ``xa``:
    |x| if the caller has it).  Cheap: an im2col entry of channel c is at most max|x_c|,
    so output o's accumulators are at most sum_{c,di,dj} max|x_c| |w[o, c, di, dj]| (no
    lowering).  (A row bound |im2col(x)| @ max_o|W| costs about what the exact bound does:
    the lowering, one gather, is the cost, not the product.)"""

    def __init__(self, x, w, exact, xa=None):
        super().__init__(x, w, np.prod(w.shape[1:]), exact, xa)

    def tiers(self):
        yield _top(np.einsum("ocij,c->o", self.B, self.A.max(axis=(0, 2, 3))))

    def l1(self):
        kk = self.b.shape[2] * self.b.shape[3]
        return kk * float(self.A.max(axis=(0, 2, 3)).sum()), _top(self.B.sum(axis=(1, 2, 3)))


class ConvDWBound(_Problem):
    """max(|im2col(x)|^T @ |dY|) of a convolution's dW (x (B, C, H, W), dy (B, O, Ho, Wo);
    ``xa``: |x| if the caller has it).  Cheap: an im2col column (c, di, dj) holds every
    x_c entry at most once, so an accumulator is at most
    min(max_c sum|x_c| * max|dy|, max|x| * max_o sum|dy_o|)."""

    def __init__(self, x, dy, exact, xa=None):
        super().__init__(x, dy, dy.shape[0] * dy.shape[2] * dy.shape[3], exact, xa)
        self.span = x.shape[0] * x.shape[2] * x.shape[3]     # sum |x_c| times max|dy|

    def tiers(self):
        A1, B1 = self.l1()
        yield min(A1 * _top(self.B), _top(self.A) * B1)

    def l1(self):
        return _top(self.A.sum(axis=(0, 2, 3))), _top(self.B.sum(axis=(0, 2, 3)))

    # -- over batch shards (intergrad.parallel: each worker holds some rows of x and dy)
    #: how :meth:`shard_parts` are reduced over the shards
    SHARD_OPS = ("sum", "sum", "max", "max")

    def shard_parts(self) -> list:
        """This shard's terms of :meth:`l1` and :attr:`ints_exact`: per input channel the
        sum of |x|, per output channel the sum of |dy|, max|x|, max|dy| (integers in
        float64, exact); reduced as :attr:`SHARD_OPS` say they are the whole batch's."""
        return [self.A.sum(axis=(0, 2, 3)), self.B.sum(axis=(0, 2, 3)), _top(self.A),
                _top(self.B)]

    def shard_l1(self, parts, batch: int) -> tuple[float, float, int] | None:
        """(A1, B1, K) of the whole batch (``batch`` rows, of which this problem is a shard)
        from its reduced :meth:`shard_parts`: :meth:`l1` and K as the whole batch's problem
        has them, or None where its integers might not be exact in float64."""
        S, T, ma, mb = parts
        K = batch * self.b.shape[2] * self.b.shape[3]
        span = batch * self.a.shape[2] * self.a.shape[3]
        if max(K, span) * int(ma) * int(mb) >= 1 << 53:
            return None
        return _top(S), _top(T), K


class ConvDXBound(_Problem):
    """max(col2im(|dY| @ |W|^T)) of a convolution's dX (dy (B, O, Ho, Wo), w (O, C, kh, kw),
    x_shape).  A dX entry (b, c, h, w) is a sum over (o, di, dj) of one |dy| entry (the
    output position whose patch puts tap (di, dj) on (h, w), if any) times |w[o, c, di, dj]|.
    Cheap: (1) |dy| by its largest per output channel: max_c sum_{o,di,dj} max|dy_o| |w|;
    (2) |w| by its largest over the input channels: col2im of one channel (1/C of the
    exact work)."""

    def __init__(self, dy, w, x_shape, stride, pad, exact):
        super().__init__(dy, w, w.shape[0] * w.shape[2] * w.shape[3], exact)
        self.shape, self.s, self.pad = x_shape, stride, pad

    def tiers(self):
        da, wa = self.A, self.B
        yield _top(np.einsum("ocij,o->c", wa, da.max(axis=(0, 2, 3))))
        O, C, kh, kw = wa.shape
        d = _mm(da.transpose(0, 2, 3, 1).reshape(-1, O), wa.max(axis=1).reshape(O, kh * kw))
        B, _, H, W = self.shape
        yield _top(col2im(d, (B, 1, H, W), kh, kw, self.s, self.pad))

    def l1(self):
        kh, kw = self.b.shape[2:]
        return kh * kw * _top(self.A.sum(axis=1)), _top(self.B.sum(axis=(0, 2, 3)))


def fit_bound(prob: _Problem, limit: float, tiers: bool = True) -> float:
    """The exact bound E when E >= limit, else a value U with E <= U < limit: the first
    cheap tier below ``limit`` (none tried without ``tiers``, under :data:`EXACT_ONLY` or
    where the integers might not be exact in float64), else E."""
    if tiers and not EXACT_ONLY and prob.ints_exact:
        for u in prob.tiers():
            if u < limit:
                return u
    return prob.exact()


#: a product whose bound was this many times the limit the last time (at the same layer,
#: pass and bits) skips the cheap tiers (they would not get below it): cost only
HOPELESS = 2.0


def _slack(d: int) -> int:
    """b with |q'| <= 2**-d * (|q| + b) entrywise, q' the operand quantized with d fewer
    magnitude bits than q (the same tensor, so its scale exponent f is d smaller:
    f = bits - 1 - floor(log2 max|x|)).  d = 0: the same array, b = 0.  Else
    |x| * 2**f <= |q| + 1 (to nearest: |q| + 0.5, or below 2**bits = |q| + 1 where the top
    LSB was clipped; stochastic q = floor(v + u), u in [0, 1): |v| < |q| + 1) and
    |q'| <= |x| * 2**(f-d) + 1 (the clip only lowers it), so b = 1 + 2**d."""
    return 0 if d == 0 else 1 + (1 << d)


def retry_bound(prev: _Problem, upper: float, da: int, db: int, limit: float) -> float | None:
    """A bound of a product on a retry that requantized its operands with ``da``, ``db``
    fewer bits, from the previous try's problem ``prev`` and an upper bound ``upper`` of its
    exact bound: with |p'| <= 2**-da (|p| + ba), |q'| <= 2**-db (|q| + bb) (:func:`_slack`),
    an accumulator sum_k p'_k q'_k <= 2**-(da+db) * N, N = E + bb A1 + ba B1 + ba bb K
    (:meth:`_Problem.l1`).  N in Python integers (the bounds are integers), so exact.
    Returns floor(2**-(da+db) * N) (>= the new exact bound, an integer) when it is below
    ``limit``, else None (not usable)."""
    if EXACT_ONLY or da < 0 or db < 0 or not prev.ints_exact or not math.isfinite(upper):
        return None
    return retry_value(upper, *(prev.l1() if da or db else (0.0, 0.0)), prev.K, da, db, limit)


def retry_value(upper: float, A1: float, B1: float, K: int, da: int, db: int,
                limit: float) -> float | None:
    """:func:`retry_bound`'s value from its terms (the previous try's upper bound, its
    :meth:`_Problem.l1` and K; da, db >= 0 and every term exact), also for terms reduced
    over batch shards (:mod:`intergrad.parallel`)."""
    sa, sb = _slack(da), _slack(db)
    n = int(upper) + sb * int(A1) + sa * int(B1) + sa * sb * int(K)
    r = n >> (da + db)
    return float(r) if (n < int(limit) << (da + db)) else None


def product_bound(state: dict, i, make, qa, qb, ba: int, bb: int, limit: float,
                  seen: dict | None = None, key=None) -> float:
    """Product ``i``'s bound on a try with ``ba``, ``bb`` magnitude bits (the one rule of
    DeviceEngine and the data-parallel shards): exact when it reaches ``limit``, else an
    upper bound below it.  On a retry first :func:`retry_bound` from the product's previous
    try (``state[i]``, kept here), then :func:`fit_bound` of ``make(qa, qb)`` (the problem of
    the quantized operands; nothing of it computed until a tier asks).  ``seen``: ``key``
    (layer, pass, product, bits) -> its bound last time; one of :data:`HOPELESS` times the
    limit or more goes straight to the exact bound (a cost choice: the value is the same)."""
    if not (qa.size and qb.size):
        return 0.0
    prob = make(qa, qb)
    bound = None
    if i in state:
        pa, pb, prev, upper = state[i]
        bound = retry_bound(prev, upper, pa - ba, pb - bb, limit)
    if bound is None:
        last = seen.get(key, 0.0) if seen is not None else 0.0
        bound = fit_bound(prob, limit, tiers=last < HOPELESS * limit)
    state[i] = (ba, bb, prob, bound)
    if seen is not None:
        seen[key] = bound
    return bound
