"""GEMM engines: the one interface every GEMM of a network goes through, and its implementations.

:class:`GemmEngine` (a ``typing.Protocol``) is what :mod:`intergrad.layers` calls: the
fully-connected and convolution passes with one signature shape, the operands first, the
layer name, then keyword-only options::

    fc_forward(X, W, layer)                              -> Y
    fc_backward(X, W, dY, layer, *, need_dx=True)        -> BackwardResult(dX, dW)
    conv_forward(x, w, layer, *, stride=1, pad=0)        -> y
    conv_backward(x, w, dy, layer, *, stride=1, pad=0, need_dx=True) -> BackwardResult(dx, dw)

Implementations (convolutions are lowered by :mod:`intergrad.conv` in all of them):

* :class:`DeviceEngine`: the array, through a :class:`~intergrad.scheduler.Scheduler`
  (itself the integer engine: integer operands, ACC_W-wrapped results).  Forward passes run
  weight-stationary; backward passes run as one InterGrad pass per layer (or the baseline's
  separate dX and dW passes).
* :class:`FloatEngine`: the same GEMMs in float32 numpy: the reference ("float twin").

Fixed point (:class:`DeviceEngine`): the precision is the array build's DATA_W (16 or 8
bits) with its ACC_W accumulator (32 or 20 bits).  Before every GEMM each operand is
quantized to signed integers with its own power-of-two scale (per tensor, from its largest
magnitude) and up to DATA_W-1 magnitude bits; gradients (dY) may be rounded
stochastically (seeded, reproducible).  Overflow is impossible by construction: the host
computes, on the quantized operands, the exact bound max(|A|.|B|) of every accumulator
(including the col2im sums of a conv dX) and drops a magnitude bit of the wider operand
until the bound is below 2**(ACC_W-1), so nothing saturates or wraps (so the scheduler's
GEMMs are called ``bounded=True``: no worst-case headroom warning; the bounds' GEMMs
run in blocks BLAS keeps on one thread, :func:`exact_matmul`; a retry requantizes and
re-bounds only what its dropped bits changed).  Cheaper proven upper bounds of that exact
bound decide first (:mod:`intergrad.bounds`: matrix-vector and per-channel bounds, and on a
retry one from the previous try's bound): one below the limit accepts the try, as the
exact bound would; the exact bound is computed only where they reach it (it decides the
bits to drop), so every decision is the exact bound's.  The magnitude bits used per
layer and pass are kept in ``DeviceEngine.bits_used``.  Results (ACC_W integers) are
scaled back to float32 on the host.  The quantizations of a step's weights and inputs,
which its backward passes (and an evaluation's batches) quantize again, are kept in a
bounded, value-checked memo (:class:`QuantMemo`) with their lowerings.
"""
from __future__ import annotations

import collections
import math
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

import numpy as np

from .bounds import ConvDWBound, ConvDXBound, ConvFwdBound, MatBound, product_bound
from .conv import (check_conv, col2im, conv2d_backward, conv2d_forward, conv_weight_matrix,
                   grad_matrix, im2col)

if TYPE_CHECKING:
    from .scheduler import Scheduler


class BackwardResult(NamedTuple):
    """A backward pass's gradients: dX (None when not asked for) and dW."""

    dX: np.ndarray | None
    dW: np.ndarray


@runtime_checkable
class GemmEngine(Protocol):
    """Runs a layer's GEMMs.  ``acc_w``: results are integers wrapped to this many bits
    (an integer engine) or None (results are floats)."""

    name: str
    acc_w: int | None

    def fc_forward(self, X, W, layer: str = "fc") -> np.ndarray: ...

    def fc_backward(self, X, W, dY, layer: str = "fc", *,
                    need_dx: bool = True) -> BackwardResult: ...

    def conv_forward(self, x, w, layer: str = "conv", *, stride: int = 1,
                     pad: int = 0) -> np.ndarray: ...

    def conv_backward(self, x, w, dy, layer: str = "conv", *, stride: int = 1, pad: int = 0,
                      need_dx: bool = True) -> BackwardResult: ...


# ------------------------------------------------------------------------------ quantization

def absmax(t: np.ndarray) -> float:
    """max |t| (NaN if t holds one), without the temporary |t|; 0 for an empty t."""
    if not t.size:
        return 0.0
    return float(max(t.max(), -t.min())) + 0.0   # + 0.0: a -0 maximum is 0


def quantize(x: np.ndarray, bits: int, rng: np.random.Generator | None = None, *,
             top: float = 0.0) -> tuple[np.ndarray, int]:
    """x ~= q * 2**-f with |q| < 2**bits (``bits`` magnitude bits); returns (q int64, f).
    Round to nearest, or stochastically (unbiased: floor(x*2**f + u), u ~ U[0, 1)) with
    ``rng``.  ``top``: the scale comes from max(max|x|, top) (a part of a larger tensor
    quantized with the whole tensor's scale: :mod:`intergrad.parallel`)."""
    x = np.asarray(x)
    m = absmax(x)
    if top:   # a non-finite top (or m) fails the check below
        m = max(m, top) if math.isfinite(top) else top
    if not math.isfinite(m):
        raise FloatingPointError("non-finite value in a tensor to quantize (training diverged?)")
    if m == 0.0:
        return np.zeros(x.shape, dtype=np.int64), 0
    f = bits - 1 - math.floor(math.log2(m))  # m * 2**f < 2**bits
    s = np.multiply(x, 2.0 ** f, dtype=np.float64)
    if rng is None:
        np.rint(s, out=s)
    else:
        s += rng.random(s.shape)
        np.floor(s, out=s)
    lim = (1 << bits) - 1
    # rounding at the top can reach 2**bits: clip one LSB (on the integral floats, exactly
    # as on their int64 values).  |x| * 2**f is at most m * 2**f (a power-of-two scaling is
    # monotone), so nothing can pass lim when rint(m * 2**f) <= lim (to nearest) or
    # m * 2**f < lim (stochastic: floor(v + u) <= floor(v) + 1 for u < 1): no clip then
    top = m * 2.0 ** f
    if (float(np.rint(top)) > lim) if rng is None else top >= lim:
        np.maximum(s, -lim, out=s)
        np.minimum(s, lim, out=s)
    return s.astype(np.int64), f


#: multiply-adds of a GEMM OpenBLAS runs on one thread (its SMP threshold, 65536 times
#: GEMM_MULTITHREAD_THRESHOLD = 4); a bigger one it splits over threads, which on a loaded
#: machine (the simulator and other processes on the cores) costs 100x a small GEMM's time
BLAS_ONE_THREAD = 1 << 18


def exact_matmul(P: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """P @ Q for float64 matrices of integers whose products' sums stay below 2**53 (so
    every sum is exact, in any order): the same values as ``P @ Q``, computed in blocks of
    at most :data:`BLAS_ONE_THREAD` multiply-adds (each on one BLAS thread); rows in blocks
    and, for a long reduction, the reduction in blocks too (partial products added)."""
    m, k = P.shape
    n = Q.shape[1]
    if m * k * n <= BLAS_ONE_THREAD or n >= BLAS_ONE_THREAD:
        return P @ Q
    bk = k if k * n * min(m, 32) <= BLAS_ONE_THREAD else max(1, BLAS_ONE_THREAD // (32 * n))
    bm = max(1, BLAS_ONE_THREAD // (bk * n))
    out = np.empty((m, n), dtype=np.result_type(P, Q))
    for i in range(0, m, bm):
        acc = out[i:i + bm]
        np.matmul(P[i:i + bm, :bk], Q[:bk], out=acc)
        for j in range(bk, k, bk):
            acc += P[i:i + bm, j:j + bk] @ Q[j:j + bk]
    return out


class FloatEngine:
    """float32 numpy GEMMs: the reference model (the same conv lowering as the device)."""

    name = "float"
    acc_w = None

    def fc_forward(self, X, W, layer="fc"):
        return X.astype(np.float32) @ W.astype(np.float32)

    def fc_backward(self, X, W, dY, layer="fc", *, need_dx=True):
        dW = X.T.astype(np.float32) @ dY
        dX = dY @ W.T if need_dx else None
        return BackwardResult(dX, dW)

    def conv_forward(self, x, w, layer="conv", *, stride=1, pad=0):
        return conv2d_forward(self, x.astype(np.float32), w, stride, pad, layer=layer)

    def conv_backward(self, x, w, dy, layer="conv", *, stride=1, pad=0, need_dx=True):
        return BackwardResult(*conv2d_backward(self, x.astype(np.float32), w,
                                               dy.astype(np.float32), stride, pad,
                                               layer=layer, need_dx=need_dx))


def _absf(q):
    return np.abs(q, dtype=np.float64)


def _bound_max(P, Q) -> float:
    """The largest accumulator of P @ Q (non-negative integer matrices as float64)."""
    return float(exact_matmul(P, Q).max())


class _Operand:
    """One operand the memo holds: its bytes, shape and dtype when its entries were made,
    its quantizations (bits -> (q, f)) and what was derived from them ((id(q), key) -> array)."""

    __slots__ = ("key", "shape", "dtype", "raw", "quants", "derived")

    def __init__(self, x: np.ndarray, raw: bytes):
        self.key, self.shape, self.dtype, self.raw = id(x), x.shape, x.dtype, raw
        self.quants: dict[int, tuple[np.ndarray, int]] = {}
        self.derived: dict[tuple, np.ndarray] = {}


class QuantMemo:
    """Quantizations of the operands a training step quantizes again (a layer's weights and
    input: in its forward and in its backward pass; the weights in every batch of an
    evaluation), with what is derived from them (|q| as float64, im2col of q and of |q|).

    Value-checked: an operand is found by its id, but its entries are used only while its
    bytes, shape and dtype are those they were made from; an array changed in place (the
    weights after an optimizer step) or a new array at a reused id starts afresh.  Bounded:
    at most ``max_operands`` operands and ``max_bytes`` bytes held (the operands' copies,
    the quantized and the derived arrays), the least recently used operands dropped first;
    what does not fit is computed and not kept.  The arrays it keeps are made read-only (they
    are handed out again).  Only deterministic quantizations belong here (no random draws)."""

    def __init__(self, max_bytes: int = 64 << 20, max_operands: int = 32):
        self.max_bytes, self.max_operands = max_bytes, max_operands
        self._ops: collections.OrderedDict[int, _Operand] = collections.OrderedDict()
        self._of_q: dict[int, _Operand] = {}   # id(q) -> its operand, for every q held
        self.nbytes = 0
        self.hits = 0   # quantizations found

    def operand(self, x: np.ndarray) -> _Operand | None:
        """The entry of ``x`` as it is now (an empty one if it changed or is new), or None
        when it cannot be kept."""
        if not isinstance(x, np.ndarray) or 2 * x.nbytes > self.max_bytes:
            return None
        raw = x.tobytes()
        op = self._ops.get(id(x))
        if op is not None:
            if op.raw == raw and op.shape == x.shape and op.dtype == x.dtype:
                self._ops.move_to_end(id(x))
                return op
            self._drop(id(x))
        if not self._room(len(raw), None):
            return None
        op = self._ops[id(x)] = _Operand(x, raw)
        self.nbytes += len(raw)
        while len(self._ops) > self.max_operands:
            self._drop(next(iter(self._ops)))
        return op

    def quantized(self, op: _Operand | None, bits: int, make) -> tuple[np.ndarray, int]:
        """``op``'s quantization to ``bits`` magnitude bits: the one held, else ``make()``
        (kept if it fits)."""
        if op is None:
            return make()
        hit = op.quants.get(bits)
        if hit is not None:
            self.hits += 1
            return hit
        q, f = make()
        if self._owner(op) and self._room(q.nbytes, op):
            q.setflags(write=False)
            op.quants[bits] = (q, f)
            self._of_q[id(q)] = op
            self.nbytes += q.nbytes
        return q, f

    def derived(self, q: np.ndarray, key, make) -> np.ndarray:
        """``make()``, a function of the quantized array ``q`` alone: the one held for
        (q, key) when q is held here, else computed (and kept, if it fits)."""
        op = self._of_q.get(id(q))
        if op is None:
            return make()
        k = (id(q), key)
        a = op.derived.get(k)
        if a is None:
            a = make()
            if self._room(a.nbytes, op):
                a.setflags(write=False)
                op.derived[k] = a
                self.nbytes += a.nbytes
        return a

    def _owner(self, op: _Operand) -> bool:
        """``op`` is still held (another operand's entry may have pushed it out)."""
        return self._ops.get(op.key) is op

    def _room(self, n: int, keep: _Operand | None) -> bool:
        """Drop the least recently used operands (not ``keep``) until n more bytes fit."""
        if self.nbytes + n <= self.max_bytes:
            return True
        for k in [k for k, v in self._ops.items() if v is not keep]:
            if self.nbytes + n <= self.max_bytes:
                break
            self._drop(k)
        return self.nbytes + n <= self.max_bytes

    def _drop(self, key: int) -> None:
        op = self._ops.pop(key)
        self.nbytes -= len(op.raw) + sum(q.nbytes for q, _ in op.quants.values()) + \
            sum(a.nbytes for a in op.derived.values())
        for q, _ in op.quants.values():
            del self._of_q[id(q)]


class _Lowered:
    """|im2col(q)| as float64 of the quantized inputs a convolution's bounds use
    (``abs_cols(q)``: im2col of |q|, the magnitudes of the input, not of its kh*kw times
    larger lowering), computed once per quantized array (an operand requantized with other
    bits is another array).  Kept in ``memo`` for the arrays it holds (the forward pass's
    serves the backward pass), here for the others.  (The GEMM reads the lowering of q
    unbuilt: :class:`intergrad.conv.Im2col`.)"""

    def __init__(self, kh, kw, stride, pad, memo: QuantMemo):
        self.args = (kh, kw, stride, pad)
        self.memo = memo
        self._cols: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def abs_cols(self, q: np.ndarray) -> np.ndarray:
        hit = self._cols.get(id(q))
        if hit is None or hit[0] is not q:
            a = self.memo.derived(q, ("im2col", True, self.args),
                                  lambda: im2col(_absf(q), *self.args))
            hit = self._cols[id(q)] = (q, a)
        return hit[1]


def bits_over(bound: float, limit: float) -> int:
    """The operand bits a product must drop when its accumulator bound reaches ``limit``."""
    return math.ceil(math.log2(bound / limit) + 1e-9)


def drop_bits(bits: dict, over: list) -> None:
    """The quantization retry rule (one place: DeviceEngine and the data-parallel shards):
    for every product (a, b, need) over the bound, drop the bits it needs from the wider
    operand first, alternately."""
    cut: dict = {}
    for a, b, need in over:
        ba, bb = bits[a] - cut.get(a, 0), bits[b] - cut.get(b, 0)
        for _ in range(max(need, 1)):
            if ba >= bb:
                ba -= 1
            else:
                bb -= 1
        cut[a], cut[b] = bits[a] - ba, bits[b] - bb
    for n, c in cut.items():
        bits[n] -= c


class DeviceEngine:
    """GEMMs on the array through a :class:`Scheduler` (fixed point, host requantization).

    ``stochastic``: round the gradients (dY) stochastically from a generator seeded with
    ``seed`` (its state is ``self.rng``; a checkpoint keeps it).  ``max_bits``: fewer
    magnitude bits than DATA_W-1 (for experiments).  ``memo_bytes``: the size of
    :attr:`memo`, the quantizations of the weights and inputs (and their lowerings) kept
    for the passes that quantize the same values again (0: none kept)."""

    name = "device"
    acc_w = None      # results are scaled back to float32

    def __init__(self, scheduler: Scheduler, schedule: str = "intergrad", *,
                 stochastic: bool = False, seed: int = 0, max_bits: int | None = None,
                 memo_bytes: int = 64 << 20):
        self.s = scheduler
        self.cfg = scheduler.cfg
        self.schedule = schedule
        self.max_bits = min(max_bits or self.cfg.data_w - 1, self.cfg.data_w - 1)
        self.stochastic = stochastic
        self.rng = np.random.default_rng(seed) if stochastic else None
        self.limit = float(1 << (self.cfg.acc_w - 1))
        #: (layer, pass) -> smallest magnitude bits used per operand so far
        self.bits_used: dict[tuple[str, str], dict[str, int]] = {}
        self.memo = QuantMemo(memo_bytes)
        self._seen: dict = {}   # product_bound's last bounds (which tries skip cheap bounds)

    # -- operand quantization with an exact accumulator bound ---------------------------
    def _quantize(self, layer, pass_, tensors: dict, products: list, grads=("dY",)):
        """tensors: name -> float array; products: (a, b, make(qa, qb)) with qa, qb the
        quantized (int64) operands and ``make`` the product's bound problem
        (:mod:`intergrad.bounds`), whose exact bound is max(|A|.|B|) of its accumulators
        (:func:`exact_matmul`).  Returns name -> (q, f) with every bound < 2**(ACC_W-1).
        Cheap upper bounds decide a try first; the exact one only where they reach the
        limit (the same decisions: :mod:`intergrad.bounds`).

        A retry requantizes only the operands whose bits changed and re-bounds only the
        products of those (the others are the same arrays and values); the random draws of
        a gradient are the same on every retry (its draws do not depend on its bits), so a
        requantized gradient starts from the generator state it had on the first try and
        the generator ends in the state one try leaves."""
        bits = {n: self.max_bits for n in tensors}
        rng = self.rng if any(n in grads for n in tensors) else None
        held = {n: self.memo.operand(t) for n, t in tensors.items() if n not in grads}
        quant: dict = {}    # (name, bits) -> (q, f)
        bounds: dict = {}   # (a, bits[a], b, bits[b]) -> bound
        last: dict = {}     # product_bound's state: each product's last try
        before: dict = {}   # gradient name -> generator state before its draws
        end = None          # the generator state after one try
        for _ in range(4 * self.max_bits + 4):
            q = {}
            for n, t in tensors.items():
                key = (n, bits[n])
                if key not in quant:
                    g = rng if n in grads else None
                    if g is not None:
                        if n in before:
                            g.bit_generator.state = before[n]
                        else:
                            before[n] = g.bit_generator.state
                        quant[key] = quantize(t, bits[n], g)
                    else:   # deterministic: the memo's, if it holds it
                        quant[key] = self.memo.quantized(held.get(n), bits[n],
                                                         lambda: quantize(t, bits[n]))
                q[n] = quant[key]
            if rng is not None:
                if end is None:
                    end = rng.bit_generator.state
                else:
                    rng.bit_generator.state = end
            over = []
            for i, (a, b, make) in enumerate(products):
                key = (a, bits[a], b, bits[b])
                bound = bounds.get(key)
                if bound is None:
                    bound = bounds[key] = product_bound(
                        last, i, make, q[a][0], q[b][0], bits[a], bits[b], self.limit,
                        self._seen, (layer, pass_) + key)
                if bound >= self.limit:
                    over.append((a, b, bits_over(bound, self.limit)))
            if not over:
                rec = self.bits_used.setdefault((layer, pass_), dict(bits))
                for n, v in bits.items():
                    rec[n] = min(rec.get(n, v), v)
                return q
            drop_bits(bits, over)
            if min(bits.values()) < 1:
                break
        raise OverflowError(f"{layer}: {pass_} cannot fit the {self.cfg.acc_w}-bit accumulator "
                            f"even with 1-bit operands (reduction too long)")

    def _abs(self, q: np.ndarray) -> np.ndarray:
        """|q| as float64 (the memo's, for a quantization it holds)."""
        return self.memo.derived(q, "abs", lambda: _absf(q))

    def _abs_weights(self, q: np.ndarray) -> np.ndarray:
        """|conv_weight_matrix(q)| as float64 (the memo's, for a quantization it holds)."""
        return self.memo.derived(q, "abs_weights", lambda: _absf(conv_weight_matrix(q)))

    # -- fully connected -------------------------------------------------------------------
    def fc_forward(self, X, W, layer="fc"):
        q = self._quantize(layer, "fwd", {"X": X, "W": W},
                           [("X", "W", lambda a, b: MatBound(self._abs(a), self._abs(b),
                                                             _bound_max))])
        (qx, fx), (qw, fw) = q["X"], q["W"]
        Y = self.s.fc_forward(qx, qw, layer, bounded=True)
        return (Y * 2.0 ** -(fx + fw)).astype(np.float32)

    def fc_backward(self, X, W, dY, layer="fc", *, need_dx=True):
        prods = [("X", "dY", lambda a, b: MatBound(self._abs(a).T, _absf(b), _bound_max))]
        if need_dx:
            prods.append(("dY", "W", lambda a, b: MatBound(_absf(a), self._abs(b).T,
                                                           _bound_max)))
        q = self._quantize(layer, "bwd", {"X": X, "W": W, "dY": dY}, prods)
        dX, dW = self.s.fc_backward(q["X"][0], q["W"][0], q["dY"][0], layer, need_dx=need_dx,
                                    schedule=self.schedule, bounded=True)
        return self._unscale_backward(q, dX, dW)

    # -- convolution (lowered by intergrad.conv; the bounds are on the lowered operands) ---
    def conv_forward(self, x, w, layer="conv", *, stride=1, pad=0):
        check_conv(layer, np.shape(x), np.shape(w), stride, pad)
        cols = _Lowered(w.shape[2], w.shape[3], stride, pad, self.memo)

        def exact(a, b):
            return _bound_max(cols.abs_cols(a), self._abs_weights(b))

        def bound(a, b):
            return ConvFwdBound(a, b, exact, self._abs(a))

        q = self._quantize(layer, "fwd", {"X": x, "W": w}, [("X", "W", bound)])
        (qx, fx), (qw, fw) = q["X"], q["W"]
        y = self.s.conv_forward(qx, qw, layer, stride=stride, pad=pad, bounded=True)
        return (y * 2.0 ** -(fx + fw)).astype(np.float32)

    def conv_backward(self, x, w, dy, layer="conv", *, stride=1, pad=0, need_dx=True):
        check_conv(layer, np.shape(x), np.shape(w), stride, pad)
        kh, kw = w.shape[2:]
        cols = _Lowered(kh, kw, stride, pad, self.memo)

        def dw_exact(a, b):
            return _bound_max(cols.abs_cols(a).T, grad_matrix(_absf(b)))

        def dx_exact(a, b):   # dX = col2im(dY W^T): the col2im sums must fit too
            d = exact_matmul(grad_matrix(_absf(a)), self._abs_weights(b).T)
            return col2im(d, x.shape, kh, kw, stride, pad).max()

        def dw_bound(a, b):
            return ConvDWBound(a, b, dw_exact, self._abs(a))

        def dx_bound(a, b):
            return ConvDXBound(a, b, x.shape, stride, pad, dx_exact)

        prods = [("X", "dY", dw_bound)] + ([("dY", "W", dx_bound)] if need_dx else [])
        q = self._quantize(layer, "bwd", {"X": x, "W": w, "dY": dy}, prods)
        dx, dw = self.s.conv_backward(q["X"][0], q["W"][0], q["dY"][0], layer, stride=stride,
                                      pad=pad, need_dx=need_dx, schedule=self.schedule,
                                      bounded=True)
        return self._unscale_backward(q, dx, dw)

    @staticmethod
    def _unscale_backward(q, dX, dW) -> BackwardResult:
        (_, fx), (_, fw), (_, fd) = q["X"], q["W"], q["dY"]
        dW = (dW * 2.0 ** -(fx + fd)).astype(np.float32)
        if dX is not None:
            dX = (dX * 2.0 ** -(fd + fw)).astype(np.float32)
        return BackwardResult(dX, dW)
