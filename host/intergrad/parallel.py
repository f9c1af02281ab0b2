"""Data-parallel training: each minibatch sharded across N devices, one per worker process.

:class:`DataParallel` starts N workers (a local process pool by default, one per core; or
Ray actors, on this machine or a cluster, see docs/cluster.md).  Each worker holds its own
device (a simulated core, or a board), driver, scheduler and a copy of the network, and runs
the whole forward and backward pass of its shard of every minibatch: the host-side layers,
the quantization of every GEMM operand and the GEMMs.  The process that trains (the
"driver") keeps the float master weights and the optimizer: per step it sends the weights
and the shards, computes the loss on the gathered logits, and receives each worker's
integer dW partials, which it sums as integers.  The weights after every step are
bit-identical to a one-device run (:class:`intergrad.engine.DeviceEngine`), because nothing
that a one-device run computes over the whole batch is computed over a shard:

* **quantization scales**: each operand's power-of-two scale comes from its largest
  magnitude over the whole batch (a max-reduction of the shards' maxima), and the
  accumulator bound that picks the magnitude bits is reduced too: per-sample bounds (the
  forward pass's and dX's accumulators) by max, the dW accumulators (sums over the batch)
  by summing the shards' bound matrices, exactly (integers below 2**53 in float64); a
  bound reduced by max is each shard's cheap bound where that is below the limit, else
  its exact one (:meth:`ShardEngine._bounds`): the same decisions;
* **stochastic rounding**: every worker draws the random numbers of the whole tensor from
  the same generator state and uses its own rows, so the draws and the generator state
  after them are those of the one-device run;
* **wrap at ACC_W**: dW partials are exact integers (the bound keeps every accumulator,
  hence every partial sum, below 2**(ACC_W-1)); their sum is wrapped to ACC_W on the host,
  which equals the wrapped whole sum in any case;
* **float reductions over the batch** (the loss, the bias gradients) run on the driver
  over the gathered logits and upstream gradients, with the layers' own code.

Sharding level.  Convolution layers (and any layer before the last convolution) are split
by **batch** (data parallel): each worker's GEMM has 1/N of the rows, hence about 1/N of
the simulated cycles and of the host work.  Fully-connected layers after the last
convolution are split by **output features** (``split_features=True``, the default): their
GEMMs have few rows (the batch) and many weight tiles, so a batch split would leave every
worker with all the per-tile jobs; instead each worker gathers the layer input (B x N, a few
kB) and runs the tiles of its share of the output columns (whole array blocks, dealt by
job count: :func:`feature_plan`); the outputs are gathered (the network's last layer's,
the logits, by the driver alone, from each worker's columns) and the dX partials summed as
integers.  Every worker then holds the whole batch of the FC stack; its quantization is
computed locally (identically everywhere).
``split_features=False`` splits every layer by batch.

Protocol: whenever a worker's pass needs a reduction (a scale, a bound, a gather) it sends
its part and waits; the driver waits for every worker's message (bounded by ``timeout``),
reduces, and answers all.  With the local executor (``in_process``, the default there) the
driver is worker 0 itself: it runs shard 0's pass in its own thread, and each of that
pass's reductions receives the other workers' parts, reduces and answers them (N devices
in N processes, not N + 1; no pipe for shard 0).  A local worker process runs its pass in
its one thread and talks on its pipe directly, large arrays (weights, batches,
activations, dW) in shared memory (:class:`_ShmConn`); a Ray actor runs the pass in a
thread and answers each call with the pass's next message.  A backward pass returns the
worker's integer dW partials of all layers as one flat integer array (int32 for ACC_W <= 32):
the driver's reduction is one integer sum per step.  A worker's exception ends the step on
every worker and is raised in the driver as one line naming the worker; a worker that dies
or does not answer in time is a :class:`WorkerError`.
"""
from __future__ import annotations

import collections
import io
import math
import os
import pickle
import queue
import socket
import threading
import time
import weakref

import numpy as np

from .device.base import DeviceError
from .conv import col2im, conv_weight_matrix, grad_matrix, im2col
from .core import wrap
from .bounds import ConvDWBound, ConvDXBound, ConvFwdBound, MatBound, product_bound, retry_value
from .engine import BackwardResult, _absf, absmax, bits_over, drop_bits
from .scheduler import Report, Scheduler
from .spec import ArrayConfig

EXECUTORS = ("local", "ray")
#: seconds a driver waits for any one message of a worker (a GEMM of a layer, at most)
DEFAULT_TIMEOUT = 600.0
#: seconds a worker may take to start (import, open its device)
START_TIMEOUT = 300.0
#: seconds a local wait (a reduction's answer, a worker's part) polls before it blocks,
#: where every worker has a core of its own (:meth:`_ShmConn.poll`); ``$INTERGRAD_SPIN``
#: overrides it (0: block at once)
SPIN = 0.002


def poll_seconds() -> float:
    """:data:`SPIN`, or ``$INTERGRAD_SPIN`` (seconds, at least 0) when set."""
    v = os.environ.get("INTERGRAD_SPIN", "")
    if not v:
        return SPIN
    try:
        spin = float(v)
    except ValueError:
        spin = -1.0
    if not (0.0 <= spin < float("inf")):
        raise ValueError(f"INTERGRAD_SPIN={v!r}: give the seconds a wait polls before it "
                         f"blocks, a number >= 0 (0: no polling)")
    return spin


class WorkerError(DeviceError):
    """A worker failed, died or did not answer in time (the message names it)."""


class _Aborted(Exception):
    """The driver ended the step (another worker failed)."""


class _Closed(Exception):
    """The driver closed the pool while this worker's pass waited in a reduction."""


_ABORT = ("abort",)


def _one_line(e: BaseException | str) -> str:
    return " ".join(str(e).split())[:500]


# ------------------------------------------------------------------------------ reductions

def _reduce(op: str, parts: list):
    if op == "max":
        r = np.maximum.reduce([np.asarray(p) for p in parts])
        # a scalar as a Python one: the answer is pickled to every worker, and a numpy
        # scalar pickles about 20 times slower (the same value: .item() is exact)
        return r.item() if isinstance(r, np.generic) else r
    if op == "sum":
        return sum(parts[1:], parts[0])
    if op in ("cat0", "cat1"):
        return np.concatenate(parts, axis=int(op[-1]))
    raise ValueError(f"unknown reduction {op!r}")


def feature_plan(net, modes: dict, n: int, cfg: ArrayConfig) -> dict[str, list[tuple[int, int]]]:
    """Output columns [c0, c1) of each worker, per FC layer split by features: whole blocks
    of lcm(rows, cols) columns (no extra partial tiles), contiguous in worker order.  Every
    layer ends in a reduction that waits for all workers, so each layer's blocks are split
    as evenly as possible (shares differ by one block at most); the larger shares go to the
    workers with the fewest jobs so far over the FC layers (a block costs its forward and
    backward tiles; ties to the lower index, so every worker computes the same plan)."""
    R, C = cfg.rows, cfg.cols
    align = math.lcm(R, C)
    load = [0] * n
    plan = {}
    for l in net.gemm_layers():
        if modes.get(l.name) != "features":
            continue
        N, M = l.w.shape
        cost = -(-align // R) * -(-N // C) + -(-N // R) * -(-align // C)
        per, extra = divmod(-(-M // align), n)
        larger = set(sorted(range(n), key=lambda j: (load[j], j))[:extra])
        count = [per + (k in larger) for k in range(n)]
        for k in range(n):
            load[k] += count[k] * cost
        edges = np.cumsum([0] + count) * align
        plan[l.name] = [(min(M, int(edges[k])), min(M, int(edges[k + 1]))) for k in range(n)]
    return plan


def layer_modes(net, split_features: bool = True) -> dict[str, str]:
    """GEMM layer name -> "batch" (split by batch) or "features" (FC layers after the last
    convolution, split by output features)."""
    gemm = net.gemm_layers()
    last_conv = max((i for i, l in enumerate(gemm) if l.kind != "fc"), default=-1)
    return {l.name: "features" if (split_features and l.kind == "fc" and i > last_conv)
            else "batch" for i, l in enumerate(gemm)}


# ------------------------------------------------------------------------------ worker engine

class _Noise:
    """Stands in for the generator of :func:`intergrad.nn.quantize`: its one draw."""

    def __init__(self, u: np.ndarray):
        self.u = u

    def random(self, shape):
        return self.u.reshape(shape)


def _quantize_part(x: np.ndarray, m: float, bits: int, u: np.ndarray | None):
    """:func:`intergrad.nn.quantize` of a part ``x`` of a tensor whose largest magnitude is
    ``m``: with the scale of max(max|x|, m), the whole tensor's (the one quantization
    formula, applied to the part, as if it held one more element of magnitude ``m``;
    ``u``: the part's uniform draws)."""
    from .engine import quantize
    return quantize(x, bits, None if u is None else _Noise(u), top=m)



#: the exponent code of a zero maximum in a guess (below every float64 exponent)
_ZERO = -4096.0


def _exponent(m: float) -> int | None:
    """floor(log2(m)) of a positive finite maximum (what its quantization scale depends
    on), None for zero."""
    return math.floor(math.log2(m)) if m > 0.0 and math.isfinite(m) else None


def _finite(x: np.ndarray) -> np.ndarray:
    """``x`` with its non-finite entries zeroed (a guess of a part that the check after
    the reduction rejects anyway: the quantization then raises, on every worker)."""
    return np.where(np.isfinite(x), x, 0.0)


def _top(v) -> float:
    return float(np.max(v)) if np.size(v) else 0.0


class ShardEngine:
    """The GEMM engine of one worker (the layers call it as they call
    :class:`intergrad.engine.DeviceEngine`): the same fixed point, with every quantization
    decision reduced over the workers through ``comm`` and the dW results kept as integer
    partials (:attr:`partials`) with the upstream gradients (:attr:`dys`) for the driver."""

    name = "device"
    acc_w = None      # results are scaled back to float32

    def __init__(self, scheduler: Scheduler, comm, schedule: str = "intergrad", *,
                 stochastic: bool = False, seed: int = 0, max_bits: int | None = None,
                 modes: dict | None = None, net=None):
        self.s = scheduler
        self.net = net            # its layer shapes plan the feature split
        self.cfg = scheduler.cfg
        self.comm = comm
        self.schedule = schedule
        self.max_bits = min(max_bits or self.cfg.data_w - 1, self.cfg.data_w - 1)
        self.rng = np.random.default_rng(seed) if stochastic else None
        self.limit = float(1 << (self.cfg.acc_w - 1))
        self.modes = dict(modes or {})
        self._plans: dict[int, dict] = {}     # workers -> feature_plan
        self.bits_used: dict[tuple[str, str], dict[str, int]] = {}
        #: (layer, pass) -> (scale exponent per tensor, bit widths of the bound attempts)
        #: of the last sharded quantization: the next one's guess
        self._last: dict[tuple[str, str], tuple[dict, list]] = {}
        #: (layer, pass) -> the whole tensors' largest magnitudes of the last quantization
        self.maxima: dict[tuple[str, str], dict[str, float]] = {}
        self.guesses = {True: 0, False: 0}    # sharded quantizations guessed right, wrong
        #: reduced "sum" bounds with shard terms by how they were found (:meth:`_reduced`)
        self.sum_bounds: collections.Counter = collections.Counter()
        self._inputs: dict[str, tuple[np.ndarray, float]] = {}   # layer -> (input, its max)
        self._seen: dict = {}   # product_bound's last bounds (which tries skip cheap bounds)
        #: |im2col(q)| of recent quantized conv inputs, by value (:meth:`_abs_cols`)
        self._lowered: collections.OrderedDict = collections.OrderedDict()
        #: this thread's CPU seconds of each stretch of a pass between reductions (every
        #: worker's stretches line up: the same reductions in the same order)
        self.phases: collections.deque = collections.deque(maxlen=1 << 14)
        self._mark = time.thread_time()
        self.begin((0, 1, 1), (0, 1))

    def begin(self, rows: tuple[int, int, int], part: tuple[int, int]) -> None:
        """A new pass over rows [b0, b1) of a batch of B, as worker k of n."""
        self.rows, self.part = rows, part
        self.gathered: tuple[str, np.ndarray] | None = None  # (layer, its gathered input)
        #: output columns [c0, c1) of the network's output this worker computed (its last
        #: layer split by features: the driver assembles the logits), or None: all
        self.out_cols: tuple[int, int] | None = None
        #: layer -> (integer dW partial, its scale exponent, first column or None: whole)
        self.partials: dict[str, tuple[np.ndarray, int, int | None]] = {}
        self.dys: dict[str, tuple[np.ndarray, bool]] = {}

    # -- reductions over the workers ----------------------------------------------------
    def _allreduce(self, tag: str, values: list, ops: list) -> list:
        if self.part[1] == 1:
            return [np.asarray(v) if op == "max" else v for v, op in zip(values, ops)]
        self.phases.append(time.thread_time() - self._mark)
        try:
            return self.comm.allreduce(tag, values, ops)
        finally:
            self._mark = time.thread_time()

    def _noise(self, t: np.ndarray, sharded: bool) -> np.ndarray:
        """The uniform draws of the one-device run for the part ``t`` of a tensor."""
        b0, b1, B = self.rows
        if not sharded:
            return self.rng.random(t.shape)
        return self.rng.random((B,) + t.shape[1:])[b0:b1]

    def _quantize(self, layer, pass_, tensors: dict, products: list, sharded=(),
                  grads=("dY",), known=None):
        """As DeviceEngine._quantize, over the whole batch: ``sharded`` names the tensors
        of which this worker has its rows; products: (a, b, fn(qa, qb), kind, make) with
        kind "max" (fn's largest entry is a per-row bound) or "sum" (fn's entries are sums
        over the rows, to be summed over the workers before their largest is taken) and
        ``make(qa, qb)`` the product's bound problem (:mod:`intergrad.bounds`, exact bound
        fn's largest entry; the cheap bounds of a "max" product, or of any product
        not reduced, :meth:`_bounds`); ``known``:
        name -> the whole tensor's largest magnitude where already reduced (a conv's input
        in its backward pass, from the forward).

        A sharded call takes one reduction when its guess holds (:meth:`_guess`), else one
        per bound attempt after it, the first such reduction carrying the tensors'
        maxima (as many as the unguessed protocol: one for the maxima, one per attempt)."""
        names = list(tensors)
        local = [absmax(tensors[n]) for n in names]
        if not sharded or self.part[1] == 1:
            m = dict(zip(names, local))
            return self._fit(layer, pass_, tensors, products, m, self._draws(tensors, m, sharded,
                             grads), {n: self.max_bits for n in names}, False)
        return self._guess(layer, pass_, tensors, products, sharded, grads, dict(zip(names, local)),
                           known or {})

    def _guess(self, layer, pass_, tensors, products, sharded, grads, local, known):
        """The scale and bound reductions of a sharded quantization in one: every worker
        guesses each tensor's scale exponent (``known`` maxima exactly; the unsharded ones
        from its own copy; a sharded one as the larger of its rows' and the whole tensor's
        at this layer and pass the step before) and the bit widths the bound attempts
        tried the step before, quantizes its part that way and sends the attempts' bounds
        with its maxima and guesses.  If every worker guessed every exponent right, the
        quantized parts are exactly those of the one-device run and the attempts' bounds
        its bounds: the decision replays the attempts (bits dropped as the one-device
        rule drops them) while they are the ones guessed, then goes on one reduction per
        attempt.  A wrong guess costs nothing but the guessed bounds' host work: the
        draws of stochastic rounding are made again as the true maxima decide, and the
        attempts run from the first with the maxima reduced."""
        names = list(tensors)
        key = (layer, pass_)
        prev_e, seq = self._last.get(key, ({}, [{n: self.max_bits for n in names}]))
        guess, parts = {}, dict(tensors)
        for n in names:
            if not np.isfinite(local[n]):     # the check below fails: raised on every worker
                parts[n], guess[n] = _finite(tensors[n]), 0.0
            elif n in known:
                guess[n] = known[n]
            elif n not in sharded:
                guess[n] = local[n]           # every worker's copy is the whole tensor
            else:
                e = [v for v in (_exponent(local[n]), prev_e.get(n)) if v is not None]
                guess[n] = 2.0 ** max(e) if e else 0.0
        codes = [float(_exponent(guess[n]) if _exponent(guess[n]) is not None else _ZERO)
                 for n in names]
        state = self.rng.bit_generator.state if self.rng is not None else None
        noise = self._draws(tensors, guess, sharded, grads)
        attempts, vals, ops, tries, sums = [], [], [], {}, {}
        for j, bits in enumerate(seq):
            q = {n: _quantize_part(parts[n], guess[n], bits[n], noise.get(n)) for n in names}
            v, o, posts = self._bounds(q, bits, products, True, tries, key, sums, defer=j > 0)
            attempts.append((bits, q, posts, len(vals)))
            vals += v
            ops += o
        k = len(names)
        red = self._allreduce(f"{layer}/{pass_}/guess", [local[n] for n in names] + codes +
                              [-c for c in codes] + vals, ["max"] * (3 * k) + ops)
        m = {n: float(red[i]) for i, n in enumerate(names)}
        hit = all(np.isfinite(m[n]) and float(red[k + i]) == -float(red[2 * k + i]) ==
                  (_exponent(m[n]) if _exponent(m[n]) is not None else _ZERO)
                  for i, n in enumerate(names))
        self.guesses[hit] += 1
        tried: list[dict] = []
        bits = {n: self.max_bits for n in names}
        attempt = 0
        if hit:
            for b, q, posts, at in attempts:
                if b != bits:
                    break
                found = self._reduced(posts, red[3 * k + at:], b, products, sums)
                if None in found:   # a deferred retry bound did not hold: this try exactly
                    break
                tried.append(dict(bits))
                over = _overflows(products, found, self.limit)
                if not over:
                    self._done(key, bits, m, tried)
                    return q
                drop_bits(bits, over)
                if min(bits.values()) < 1:
                    self._raise_overflow(layer, pass_)
                attempt += 1
        else:
            if state is not None:     # the draws as the true maxima decide them
                self.rng.bit_generator.state = state
            noise = self._draws(tensors, m, sharded, grads)
            sums = {}
        return self._fit(layer, pass_, tensors, products, m, noise, bits, True, attempt, tried,
                         sums)

    def _draws(self, tensors, m, sharded, grads) -> dict:
        """The stochastic rounding draws of the tensors to quantize (made once: every retry
        uses the same), as the one-device run makes them: of the nonzero gradients."""
        noise = {}
        if self.rng is not None:
            for n in tensors:
                if n in grads and np.isfinite(m[n]) and m[n] != 0.0:
                    noise[n] = self._noise(tensors[n], n in sharded)
        return noise

    def _bounds(self, q, bits, products, red, tries: dict, where, sums: dict | None = None,
                defer: bool = False) -> tuple[list, list, list]:
        """This worker's part of every product's bound on a try with ``bits``: a "sum"
        product's part when reduced (``red``), else a value reduced by max (or not at all):
        :func:`intergrad.bounds.product_bound` of its part, the exact bound when it reaches
        the limit, else an upper bound below it.  So the largest over the workers is below
        the limit exactly when every part's exact bound is, and else is the largest exact
        part (the parts below the limit are smaller): the value the exact parts give.
        ``tries``: product_bound's state over this sequence of tries (the same maxima and
        draws); ``where``: (layer, pass).

        A reduced "sum" product whose problem has ``shard_parts`` (a conv's dW,
        :class:`~intergrad.bounds.ConvDWBound`) sends those terms with its exact bound
        matrix, and on a later try, as one device does (:func:`product_bound`), first the
        retry bound from the previous try (``sums[i]``: its reduced bound and terms, the
        same on every worker): when it is below the limit the matrix is not computed.
        ``defer``: the previous try's reduction is not done yet (a guessed sequence): send
        the terms only, the retry bound is taken after the reduction (:meth:`_reduced`;
        where it does not hold, the try is made again with its matrix).  Returns (values,
        their reductions, posts: how :meth:`_reduced` reads the reduced values)."""
        vals, ops, posts = [], [], []
        for i, (a, b, fn, kind, make) in enumerate(products):
            qa, qb = q[a][0], q[b][0]
            if kind == "sum" and red:
                prob = make(qa, qb) if qa.size and qb.size else None
                if prob is not None and hasattr(prob, "shard_parts") and sums is not None:
                    parts = prob.shard_parts()
                    if defer:
                        post = ("deferred", prob)
                    else:
                        u = self._retry(sums.get(i), bits[a], bits[b])
                        post = ("retry", prob, u) if u is not None else ("exact", prob)
                    if post[0] == "exact":
                        vals.append(np.asarray(fn(qa, qb), dtype=np.float64))
                        ops.append("sum")
                    vals += parts
                    ops += prob.SHARD_OPS
                    posts.append(post)
                    continue
                vals.append(np.asarray(fn(qa, qb), dtype=np.float64))
                ops.append("sum")
                posts.append(("sum",))
            else:
                vals.append(product_bound(tries, i, make, qa, qb, bits[a], bits[b], self.limit,
                                          self._seen, where + (i, bits[a], bits[b])))
                ops.append("max")
                posts.append(("max",))
        return vals, ops, posts

    def _retry(self, prev, ba: int, bb: int) -> float | None:
        """The retry bound (:func:`intergrad.bounds.retry_value`) of a try with ``ba``,
        ``bb`` bits from the previous try's reduced state ``prev`` (its bits, upper bound
        and whole-batch terms), when it is below the limit; else None."""
        if prev is None:
            return None
        pa, pb, upper, terms = prev
        if terms is None or pa < ba or pb < bb or not math.isfinite(upper):
            return None
        return retry_value(upper, *terms[:2], terms[2], pa - ba, pb - bb, self.limit)

    def _reduced(self, posts, red, bits, products, sums) -> list:
        """Every product's bound from the reduced values ``red`` (from the products' first
        value on), as :meth:`_bounds` posted them, updating ``sums`` (the reduced state of a
        "sum" product's try, for the next try's retry bound); None for a deferred retry
        bound that is not below the limit."""
        out, at = [], 0
        for i, post in enumerate(posts):
            if post[0] in ("max", "sum"):
                out.append(_top(red[at]))
                at += 1
                continue
            prob = post[1]
            if post[0] == "exact":
                bound = _top(red[at])
                at += 1
            n = len(prob.SHARD_OPS)
            terms = prob.shard_l1(red[at:at + n], self.rows[2])
            at += n
            a, b = products[i][0], products[i][1]
            if post[0] == "retry":
                bound = post[2]
            elif post[0] == "deferred":
                bound = self._retry(sums.get(i), bits[a], bits[b])
                if bound is None:
                    self.sum_bounds["deferred, not held"] += 1
                    out.append(None)
                    continue
            self.sum_bounds[post[0]] += 1
            sums[i] = (bits[a], bits[b], bound, terms)
            out.append(bound)
        return out

    def _fit(self, layer, pass_, tensors, products, m, noise, bits, red, attempt=0, tried=None,
             sums=None):
        """The bound attempts from ``attempt`` on, one reduction each (``red``); ``sums``:
        the reduced state of the "sum" products' previous try (:meth:`_bounds`)."""
        names = list(tensors)
        tried = [] if tried is None else tried
        tries: dict = {}
        sums = {} if sums is None else sums
        while attempt < 4 * self.max_bits + 4:
            q = {n: _quantize_part(tensors[n], m[n], bits[n], noise.get(n)) for n in names}
            vals, ops, posts = self._bounds(q, bits, products, red, tries, (layer, pass_), sums)
            if red:
                vals = self._allreduce(f"{layer}/{pass_}/bound{attempt}", vals, ops)
            found = self._reduced(posts, vals, bits, products, sums)
            tried.append(dict(bits))
            over = _overflows(products, found, self.limit)
            if not over:
                self._done((layer, pass_), bits, m, tried)
                return q
            drop_bits(bits, over)
            if min(bits.values()) < 1:
                break
            attempt += 1
        self._raise_overflow(layer, pass_)

    def _raise_overflow(self, layer, pass_):
        raise OverflowError(f"{layer}: {pass_} cannot fit the {self.cfg.acc_w}-bit accumulator "
                            f"even with 1-bit operands (reduction too long)")

    def _done(self, key, bits, m, tried) -> None:
        used = self.bits_used.setdefault(key, dict(bits))
        used.update({n: min(used.get(n, b), b) for n, b in bits.items()})
        self._last[key] = ({n: _exponent(v) for n, v in m.items()}, tried)
        self.maxima[key] = m

    def _keep(self, layer, dW_int, e, dy, sharded, c0=None) -> None:
        self.partials[layer] = (np.asarray(dW_int, dtype=np.int64), int(e), c0)
        self.dys[layer] = (dy, sharded)

    # -- fully connected -------------------------------------------------------------------
    def fc_forward(self, X, W, layer="fc"):
        if self.modes.get(layer) == "features":
            return self._fc_forward_features(X, W, layer)
        q = self._quantize(layer, "fwd", {"X": X, "W": W}, _fc_fwd_products(), sharded=("X",))
        self._remember_input(layer, X)
        (qx, fx), (qw, fw) = q["X"], q["W"]
        Y = self.s.fc_forward(qx, qw, layer, bounded=True)
        return (Y * 2.0 ** -(fx + fw)).astype(np.float32)

    def fc_backward(self, X, W, dY, layer="fc", *, need_dx=True):
        if self.modes.get(layer) == "features":
            return self._fc_backward_features(X, W, dY, layer, need_dx)
        q = self._quantize(layer, "bwd", {"X": X, "W": W, "dY": dY}, _fc_bwd_products(need_dx),
                           sharded=("X", "dY"), known=self._known_input(layer, X))
        (qx, fx), (qw, fw), (qd, fd) = q["X"], q["W"], q["dY"]
        dX, dW = self.s.fc_backward(qx, qw, qd, layer, schedule=self.schedule, need_dx=need_dx,
                                    bounded=True)
        self._keep(layer, dW, fx + fd, dY, True)
        if dX is not None:
            dX = (dX * 2.0 ** -(fd + fw)).astype(np.float32)
        return BackwardResult(dX, np.zeros(W.shape, np.float32))

    def _remember_input(self, layer, x) -> None:
        self._inputs[layer] = (x, self.maxima[(layer, "fwd")]["X"])

    def _known_input(self, layer, x) -> dict:
        """The whole input's largest magnitude, reduced in the forward pass (the backward
        pass quantizes the same tensor)."""
        seen = self._inputs.get(layer)
        return {"X": seen[1]} if seen is not None and seen[0] is x else {}

    def _cols(self, layer, M):
        k, n = self.part
        if n not in self._plans:
            self._plans[n] = feature_plan(self.net, self.modes, n, self.cfg)
        return self._plans[n][layer][k]

    def _fc_forward_features(self, X, W, layer):
        b0, b1, B = self.rows
        if X.shape[0] != B:                  # the first layer split by features
            X = self._allreduce(f"{layer}/fwd/gather", [X], ["cat0"])[0]
            self.gathered = (layer, X)
        q = self._quantize(layer, "fwd", {"X": X, "W": W}, _fc_fwd_products())
        (qx, fx), (qw, fw) = q["X"], q["W"]
        c0, c1 = self._cols(layer, W.shape[1])
        Y = np.zeros((X.shape[0], W.shape[1]), np.int64)
        if c1 > c0:
            Y[:, c0:c1] = self.s.fc_forward(qx, qw[:, c0:c1], layer, bounded=True)
        if self.net is not None and layer == self.net.layers[-1].name:
            self.out_cols = (c0, c1)   # the logits: only the driver needs them whole
        else:
            Y = self._allreduce(f"{layer}/fwd/out", [Y], ["sum"])[0]   # disjoint columns
        return (Y * 2.0 ** -(fx + fw)).astype(np.float32)

    def _fc_backward_features(self, X, W, dY, layer, need_dx):
        first = self.gathered is not None and self.gathered[0] == layer
        if first:                            # its input, as gathered in the forward pass
            X = self.gathered[1]
        q = self._quantize(layer, "bwd", {"X": X, "W": W, "dY": dY}, _fc_bwd_products(need_dx))
        (qx, fx), (qw, fw), (qd, fd) = q["X"], q["W"], q["dY"]
        N, M = W.shape
        c0, c1 = self._cols(layer, M)
        dXk, dWk = None, np.zeros((N, 0), np.int64)
        if c1 > c0:
            dXk, dWk = self.s.fc_backward(qx, qw[:, c0:c1], qd[:, c0:c1], layer,
                                          schedule=self.schedule, need_dx=need_dx, bounded=True)
        self._keep(layer, dWk, fx + fd, dY, False, c0)     # its columns c0:c1 of dW
        dX = None
        if need_dx:
            dXk = dXk if dXk is not None else np.zeros((X.shape[0], N), np.int64)
            dX = wrap(self._allreduce(f"{layer}/bwd/dx", [dXk], ["sum"])[0], self.cfg.acc_w)
            dX = (dX * 2.0 ** -(fd + fw)).astype(np.float32)
            if first:                         # back to this worker's rows
                b0, b1, _ = self.rows
                dX = dX[b0:b1]
        return BackwardResult(dX, np.zeros(W.shape, np.float32))

    # -- convolution (split by batch) ------------------------------------------------------
    #: quantized conv inputs whose |im2col| :meth:`_abs_cols` keeps
    LOWERED = 8

    def _abs_cols(self, q: np.ndarray, kh, kw, stride, pad) -> np.ndarray:
        """|im2col(q)| as float64 for a bound: the one kept for an equal ``q`` (a layer's
        forward and backward passes quantize its input alike, attempt by attempt), else
        computed and kept (the :data:`LOWERED` most recent)."""
        for key, (q0, args, a) in reversed(self._lowered.items()):
            if args == (kh, kw, stride, pad) and q0.shape == q.shape and np.array_equal(q0, q):
                self._lowered.move_to_end(key)
                return a
        a = im2col(_absf(q), kh, kw, stride, pad)
        a.setflags(write=False)
        self._lowered[object()] = (q.copy(), (kh, kw, stride, pad), a)
        while len(self._lowered) > self.LOWERED:
            self._lowered.popitem(last=False)
        return a

    def conv_forward(self, x, w, layer="conv", *, stride=1, pad=0):
        kh, kw = w.shape[2:]

        def fn(a, b):
            return self._abs_cols(a, kh, kw, stride, pad) @ _absf(conv_weight_matrix(b))

        q = self._quantize(layer, "fwd", {"X": x, "W": w}, [
            ("X", "W", fn, "max", lambda a, b: ConvFwdBound(a, b, _exact(fn)))], sharded=("X",))
        self._remember_input(layer, x)
        (qx, fx), (qw, fw) = q["X"], q["W"]
        y = self.s.conv_forward(qx, qw, layer, stride=stride, pad=pad, bounded=True)
        return (y * 2.0 ** -(fx + fw)).astype(np.float32)

    def conv_backward(self, x, w, dy, layer="conv", *, stride=1, pad=0, need_dx=True):
        kh, kw = w.shape[2:]

        def dw(a, b):
            return self._abs_cols(a, kh, kw, stride, pad).T @ grad_matrix(_absf(b))

        def dx(a, b):
            return col2im(grad_matrix(_absf(a)) @ _absf(conv_weight_matrix(b)).T, x.shape,
                          kh, kw, stride, pad)

        prods = [("X", "dY", dw, "sum", lambda a, b: ConvDWBound(a, b, _exact(dw)))]
        if need_dx:
            prods.append(("dY", "W", dx, "max",
                          lambda a, b: ConvDXBound(a, b, x.shape, stride, pad, _exact(dx))))
        q = self._quantize(layer, "bwd", {"X": x, "W": w, "dY": dy}, prods,
                           sharded=("X", "dY"), known=self._known_input(layer, x))
        (qx, fx), (qw, fw), (qd, fd) = q["X"], q["W"], q["dY"]
        dx, dw = self.s.conv_backward(qx, qw, qd, layer, stride=stride, pad=pad,
                                      schedule=self.schedule, need_dx=need_dx, bounded=True)
        self._keep(layer, dw, fx + fd, dy, True)
        if dx is not None:
            dx = (dx * 2.0 ** -(fd + fw)).astype(np.float32)
        return BackwardResult(dx, np.zeros(w.shape, np.float32))


def _exact(fn):
    """The exact bound of integer operands a, b: the largest entry of fn(a, b) (a product's
    fn takes the quantized integers and multiplies their magnitudes)."""
    return lambda a, b: _top(fn(a, b))


def _mat(ta=False, tb=False):
    """A FC product's bound problem: |a| (.T if ta) @ |b| (.T if tb)."""
    def make(a, b):
        P, Q = _absf(a), _absf(b)
        return MatBound(P.T if ta else P, Q.T if tb else Q, lambda p, q: _top(p @ q))
    return make


def _fc_fwd_products():
    return [("X", "W", lambda a, b: _absf(a) @ _absf(b), "max", _mat())]


def _fc_bwd_products(need_dx):
    prods = [("X", "dY", lambda a, b: _absf(a).T @ _absf(b), "sum", _mat(ta=True))]
    if need_dx:
        prods.append(("dY", "W", lambda a, b: _absf(a) @ _absf(b).T, "max", _mat(tb=True)))
    return prods


def _overflows(products, bounds, limit) -> list:
    """(a, b, bits to drop) of every product whose accumulator bound reaches ``limit``."""
    return [(p[0], p[1], bits_over(v, limit)) for p, v in zip(products, bounds) if v >= limit]


# ------------------------------------------------------------------------------ worker

class _Comm:
    """A worker's side of the reductions: its pass thread posts its part and waits."""

    def __init__(self, outq: queue.Queue, inq: queue.Queue, timeout: float):
        self.outq, self.inq, self.timeout = outq, inq, timeout
        self.count, self.wait = 0, 0.0     # reductions, wall seconds from send to answer

    def allreduce(self, tag, values, ops):
        t = time.perf_counter()
        self.outq.put(("allreduce", tag, values, ops))
        try:
            r = self.inq.get(timeout=self.timeout)
        except queue.Empty:
            raise TimeoutError(f"no answer from the driver within {self.timeout:.0f} s "
                               f"({tag})") from None
        self.count += 1
        self.wait += time.perf_counter() - t
        if r is _ABORT:
            raise _Aborted()
        return r


class _PipeComm:
    """A local worker's side of the reductions: its pass (in the process's one thread)
    sends its part on the pipe and reads the driver's answer from it."""

    def __init__(self, conn, timeout: float):
        self.conn, self.timeout = conn, timeout
        self.count, self.wait = 0, 0.0     # reductions, wall seconds from send to answer

    def allreduce(self, tag, values, ops):
        t = time.perf_counter()
        self.conn.send(("allreduce", tag, values, ops))
        if not self.conn.poll(self.timeout):
            raise TimeoutError(f"no answer from the driver within {self.timeout:.0f} s ({tag})")
        r = self.conn.recv()
        self.count += 1
        self.wait += time.perf_counter() - t
        if r[0] == "abort":
            raise _Aborted()
        if r[0] == "close":
            raise _Closed()
        if r[0] != "resume":
            raise RuntimeError(f"message {r[0]!r} from the driver inside a reduction ({tag})")
        return r[1]


# ------------------------------------------------------------------------------ transport

#: arrays of at least this many bytes travel in shared memory, smaller ones in the pickle
SHM_MIN_BYTES = 1 << 14
_SHM_KINDS = frozenset("biufc")


class _ShmConn:
    """One end of a local worker's pipe whose messages carry their large numpy arrays in
    shared memory (:data:`SHM_MIN_BYTES` and up), the rest pickled as before: one
    ``send_bytes`` per message (the segment's name, then the pickle, in which each large
    array is an (offset, dtype, shape) reference).  Each end owns the one segment its sent
    arrays go into (replaced by a larger one when a message needs more); the receiver copies
    them out as it unpickles, and a pipe carries one message at a time each way (the
    driver and a worker alternate), so the segment is free again when the next message is
    written.  Saves pickling every array into the pipe and the many small pipe writes of
    a large message (weights, activations, dW partials: MBs per step)."""

    def __init__(self, conn, spin: float = 0.0):
        self.conn = conn
        self.spin = spin                      # seconds a wait polls before it blocks
        self.spun = 0.0                       # seconds spent polling so far
        self.shm = None                       # the segment this end sends in
        self.peer = None                      # the other end's, as attached here

    def poll(self, timeout: float | None = 0.0) -> bool:
        """A message is waiting (within ``timeout`` seconds; None: no limit).  The first
        :attr:`spin` seconds of the wait poll without blocking: an answer that comes
        within them is read without the sleep and wake-up of a blocking wait (on a VM a
        halted vCPU's wake-up, tens of microseconds to milliseconds, per reduction)."""
        if self.spin > 0.0 and timeout != 0.0:
            t0 = time.perf_counter()
            end = t0 + (self.spin if timeout is None else min(self.spin, timeout))
            while True:
                if self.conn.poll(0.0):
                    self.spun += time.perf_counter() - t0
                    return True
                if time.perf_counter() >= end:
                    break
            self.spun += time.perf_counter() - t0
            if timeout is not None:
                timeout = max(0.0, timeout - self.spin)
        return self.conn.poll(timeout)

    def send(self, msg) -> None:
        arrays, size = [], 0

        def ref(obj):
            nonlocal size
            if type(obj) is np.ndarray and obj.nbytes >= SHM_MIN_BYTES \
                    and obj.dtype.kind in _SHM_KINDS:
                off = size
                arrays.append((off, obj))
                size += -(-obj.nbytes // 64) * 64
                return (off, obj.dtype.str, obj.shape)
            return None

        buf = io.BytesIO()
        pk = pickle.Pickler(buf, pickle.HIGHEST_PROTOCOL)
        pk.persistent_id = ref
        pk.dump(msg)
        name = b""
        if arrays:
            shm = self._segment(size)
            for off, a in arrays:
                np.ndarray(a.shape, a.dtype, buffer=shm.buf, offset=off)[...] = a
            name = shm.name.encode()
        self.conn.send_bytes(name + b"\0" + buf.getbuffer())

    def recv(self):
        data = self.conn.recv_bytes()
        i = data.index(b"\0")
        up = pickle.Unpickler(io.BytesIO(memoryview(data)[i + 1:]))
        if i:
            shm = self._attach(data[:i].decode())

            def load(r):
                off, dt, shape = r
                return np.ndarray(shape, np.dtype(dt), buffer=shm.buf, offset=off).copy()

            up.persistent_load = load
        return up.load()

    def _segment(self, size: int):
        from multiprocessing import shared_memory
        if self.shm is None or self.shm.size < size:
            self._drop_own()
            self.shm = shared_memory.SharedMemory(create=True,
                                                  size=1 << max(20, (size - 1).bit_length()))
        return self.shm

    def _attach(self, name: str):
        from multiprocessing import shared_memory
        if self.peer is None or self.peer.name != name:
            if self.peer is not None:
                self.peer.close()
            self.peer = shared_memory.SharedMemory(name=name)
        return self.peer

    def _drop_own(self) -> None:
        if self.shm is not None:
            self.shm.close()
            try:
                self.shm.unlink()
            except FileNotFoundError:
                pass
            self.shm = None

    def unlink_peer(self) -> None:
        """Remove the other end's segment (a worker that was killed could not)."""
        if self.peer is not None:
            try:
                self.peer.unlink()
            except FileNotFoundError:
                pass

    def close(self) -> None:
        self._drop_own()
        if self.peer is not None:
            self.peer.close()
            self.peer = None
        self.conn.close()


class ShardWorker:
    """What a worker process (or Ray actor) holds: its device, driver, scheduler, engine and
    network copy.  :meth:`handle` takes one message from the driver and returns the next
    message for it."""

    def __init__(self, net, cfg: ArrayConfig, *, schedule="intergrad", stochastic=False, seed=0,
                 max_bits=None, modes=None, rng_state=None, backend="sim", device_kw=None,
                 library=None, timeout=DEFAULT_TIMEOUT, index=0):
        from .driver import Accelerator
        if backend == "sim":
            from .device.sim import SimDevice
            self.dev = SimDevice(cfg, verbose=False, library=library, **(device_kw or {}))
        else:
            from .device import open_device
            self.dev = open_device(backend, **(device_kw or {}))
        self.acc = Accelerator(self.dev)
        self.sched = Scheduler(self.acc)
        self.net = net.copy()      # its own, writable (Ray hands read-only arrays)
        self.index, self.timeout = index, timeout
        self.outq: queue.Queue = queue.Queue()
        self.inq: queue.Queue = queue.Queue()
        self.engine = ShardEngine(self.sched, _Comm(self.outq, self.inq, timeout), schedule,
                                  stochastic=stochastic, seed=seed, max_bits=max_bits,
                                  modes=modes, net=self.net)
        if rng_state is not None and self.engine.rng is not None:
            self.engine.rng.bit_generator.state = rng_state
        #: layer -> (offset, shape) of its dW in the flat integer partials of a backward pass
        self.layout: dict[str, tuple[int, tuple]] = {}
        off = 0
        for layer in self.net.layers:
            if layer.params():
                self.layout[layer.name] = (off, layer.w.shape)
                off += layer.w.size
        self.flat_size = off
        self.cache = None
        self.thread: threading.Thread | None = None

    def describe(self) -> str:
        d = self.acc.describe()
        return f"{socket.gethostname()}:{os.getpid()} {d['backend']} {d['array']} int{d['data_w']}"

    def handle(self, msg):
        kind = msg[0]
        if kind in ("forward", "backward"):
            if self.thread is not None and self.thread.is_alive():
                return ("error", "RuntimeError", "a pass is still running")
            self.thread = threading.Thread(target=self._pass, args=(msg,), daemon=True)
            self.thread.start()
            return self._next()
        if kind == "resume":
            self.inq.put(msg[1])
            return self._next()
        if kind == "abort":
            if self.thread is None or not self.thread.is_alive():
                return ("aborted",)
            self.inq.put(_ABORT)
            return self._next()
        if kind == "query":
            return ("done", self._query(msg[1]))
        return ("error", "ValueError", f"unknown message {kind!r}")

    def _next(self):
        try:
            return self.outq.get(timeout=self.timeout)
        except queue.Empty:
            return ("error", "TimeoutError", f"no progress within {self.timeout:.0f} s")

    def serve(self, conn) -> None:
        """A local worker: the passes run in this thread, their reductions on ``conn``."""
        self.engine.comm = _PipeComm(conn, self.timeout)
        self.conn = conn
        while True:
            try:
                conn.poll(None)
                msg = conn.recv()
            except (EOFError, OSError):
                break
            kind = msg[0]
            if kind == "close":
                break
            if kind in ("forward", "backward"):
                try:
                    out = self._step(msg)
                except _Closed:
                    break
            elif kind == "abort":          # no pass waiting in a reduction: nothing to end
                out = ("aborted",)
            elif kind == "query":
                try:
                    out = ("done", self._query(msg[1]))
                except Exception as e:     # noqa: BLE001 - reported to the driver
                    out = ("error", type(e).__name__, _one_line(e))
            else:
                out = ("error", "ValueError", f"unknown message {kind!r} outside a pass")
            try:
                conn.send(out)
            except (EOFError, OSError):
                break

    def _pass(self, msg) -> None:
        self.outq.put(self._step(msg))

    def _step(self, msg):
        """One pass; its last message for the driver: ("done", result), ("aborted",) or
        ("error", type, text).  A forward pass's result: the logits of its rows, or, where
        the last layer is split by features, (its columns of the logits, (c0, c1)) for the
        driver to assemble.  A backward pass's result: (dW, exps, dys): ``dW`` every
        layer's integer dW partial in one flat integer array (int32 for ACC_W <= 32;
        :attr:`layout`; a layer split by output features has zeros outside this worker's
        columns), ``exps`` layer -> its scale exponent, ``dys`` layer -> (upstream
        gradient, sharded); one that every worker holds whole (the FC stack split by
        features) comes from worker 0 only."""
        self.engine._mark = time.thread_time()
        try:
            return self._pass_result(msg)
        finally:
            self.engine.phases.append(time.thread_time() - self.engine._mark)

    def _pass_result(self, msg):
        try:
            if msg[0] == "forward":
                _, token, params, x, rows, part = msg[:6]
                if len(msg) > 6 and msg[6] is not None:
                    self._set_state(msg[6])
                self.net.set_params(params)
                self.engine.begin(rows, part)
                logits, cache = self.net.forward(self.engine, x)
                self.cache = (token, cache, self.engine.gathered)
                cols = self.engine.out_cols
                return ("done", logits if cols is None else (logits[:, cols[0]:cols[1]], cols))
            _, token, dlogits = msg
            if self.cache is None or self.cache[0] != token:
                raise RuntimeError("backward pass of another forward pass than the last")
            eng = self.engine
            eng.begin(eng.rows, eng.part)
            eng.gathered = self.cache[2]
            self.net.backward(eng, self.cache[1], dlogits)
            # every partial is below 2**(ACC_W-1) in magnitude (the bound holds for the
            # whole batch's sums, so for any part of them): int32 carries it for ACC_W <= 32
            flat = np.zeros(self.flat_size, np.int32 if self.acc.cfg.acc_w <= 32 else np.int64)
            exps = {}
            for name, (p, e, c0) in eng.partials.items():
                off, shape = self.layout[name]
                dst = flat[off:off + int(np.prod(shape))].reshape(shape)
                if c0 is None:
                    dst[...] = p
                else:                          # this worker's columns
                    dst[:, c0:c0 + p.shape[1]] = p
                exps[name] = e
            first = eng.part[0] == 0
            dys = {name: (dy if sharded or first else None, sharded)
                   for name, (dy, sharded) in eng.dys.items()}
            return ("done", (flat, exps, dys))
        except _Aborted:
            return ("aborted",)
        except (_Closed, KeyboardInterrupt):
            raise                        # (an interrupt: the in-process shard's, Ctrl-C)
        except BaseException as e:       # noqa: BLE001 - reported to the driver
            return ("error", type(e).__name__, _one_line(e))

    def _set_state(self, state) -> None:
        rng, last = state
        if self.engine.rng is not None and rng is not None:
            self.engine.rng.bit_generator.state = rng
        self.engine._last = {k: (dict(e), [dict(b) for b in seq]) for k, (e, seq) in last.items()}

    def _query(self, what):
        if what == "describe":
            return self.describe()
        if what == "bits_used":
            return self.engine.bits_used
        if what == "report":
            return list(self.sched.report)
        if what == "rng":
            return None if self.engine.rng is None else self.engine.rng.bit_generator.state
        if what == "sim_seconds":
            return float(getattr(self.dev, "sim_seconds", 0.0))
        if what == "cpu_seconds":       # this process's CPU time, all its threads
            return time.process_time()
        if what == "spin_seconds":      # of it, polling for the driver (_ShmConn.poll)
            return float(getattr(getattr(self, "conn", None), "spun", 0.0))
        if what == "reductions":        # (reductions so far, wall seconds spent in them)
            c = self.engine.comm
            return (c.count, c.wait)
        if what == "guesses":           # sharded quantizations guessed (right, wrong)
            return (self.engine.guesses[True], self.engine.guesses[False])
        if what == "sum_bounds":        # reduced "sum" bounds: exact, retry, deferred, failed
            return dict(self.engine.sum_bounds)
        if what == "state":             # what another worker takes over (_set_state)
            return (None if self.engine.rng is None else self.engine.rng.bit_generator.state,
                    self.engine._last)
        if what == "phases":            # the CPU seconds between reductions since the last call
            out = list(self.engine.phases)
            self.engine.phases.clear()
            return out
        raise ValueError(f"unknown query {what!r}")

    def close(self) -> None:
        self.dev.close()


def _limit_threads() -> None:
    """One BLAS thread per worker: N workers share N cores."""
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:
        pass


def _worker_main(conn, init: dict) -> None:
    """A local worker process: serve the driver's messages until it closes the pipe."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C is the driver's
    _limit_threads()
    conn = _ShmConn(conn, init.pop("spin", 0.0))
    try:
        w = ShardWorker(**init)
        conn.send(("ready", w.describe()))
    except BaseException as e:   # noqa: BLE001
        conn.send(("error", type(e).__name__, _one_line(e)))
        return
    try:
        w.serve(conn)
    finally:
        w.close()
        conn.close()


# ------------------------------------------------------------------------------ pools

class _LocalPool:
    """Worker processes on this machine, one pipe each: shards ``first`` on (the driver
    runs the ones before in its own process); ``send`` / ``recv`` take the shard index."""

    kind = "local"

    def __init__(self, inits: list[dict], timeout: float, first: int = 0, spin: float = 0.0):
        from .sweep import mp_context
        ctx = mp_context()
        self.timeout, self.first = timeout, first
        self.procs, self.conns = [], []
        for init in inits:
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_worker_main, args=(child, dict(init, spin=spin)), daemon=True,
                            name=f"intergrad-worker-{init['index']}")
            p.start()
            child.close()
            self.procs.append(p)
            self.conns.append(_ShmConn(parent, spin))
        self.names = []
        try:
            for k in range(first, first + len(inits)):
                r = self.recv(k, max(timeout, START_TIMEOUT))
                if r[0] != "ready":
                    raise WorkerError(f"worker {k} could not start: {r[1]}: {r[2]}")
                self.names.append(r[1])
        except BaseException:
            self.close()      # the others too
            raise

    def send(self, k, msg) -> None:
        try:
            self.conns[k - self.first].send(msg)
        except (OSError, ValueError):
            raise WorkerError(self._dead(k)) from None

    def _dead(self, k) -> str:
        p = self.procs[k - self.first]
        p.join(1.0)
        code = p.exitcode
        how = f"exit status {code}" if code is None or code >= 0 else f"signal {-code}"
        return f"worker {k} (pid {p.pid}) died ({how})"

    def recv(self, k, timeout):
        # a worker that dies closes its end of the pipe: poll() is then true and recv()
        # raises EOFError (only the worker holds that end)
        conn, p = self.conns[k - self.first], self.procs[k - self.first]
        try:
            if not conn.poll(timeout):
                raise WorkerError(f"worker {k} (pid {p.pid}) sent nothing for {timeout:.0f} s")
            return conn.recv()
        except (EOFError, OSError):
            raise WorkerError(self._dead(k)) from None

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send(("close",))
            except (OSError, ValueError):
                pass
        for p in self.procs:
            p.join(10.0)
            if p.is_alive():
                p.terminate()
                p.join(5.0)
        for p, conn in zip(self.procs, self.conns):
            if p.exitcode is not None and p.exitcode < 0:   # killed: its segment is left
                conn.unlink_peer()
            conn.close()
        self.procs, self.conns = [], []


class _RayWorker:
    """The Ray actor around a :class:`ShardWorker` (construction errors are kept and
    reported by :meth:`ready`, not as an actor death with a traceback)."""

    def __init__(self, init: dict):
        _limit_threads()
        try:
            self.w, self.err = ShardWorker(**init), None
        except BaseException as e:   # noqa: BLE001
            self.w, self.err = None, ("error", type(e).__name__, _one_line(e))

    def ready(self):
        return self.err or ("ready", self.w.describe())

    def handle(self, msg):
        return self.w.handle(msg)


class _RayPool:
    """Ray actors, one device each: a local Ray instance (``address`` None) or a cluster.
    ``resources``: extra Ray resources per actor (``{"pynq_board": 1}`` puts each actor on
    a board that advertises one, docs/cluster.md)."""

    kind = "ray"

    def __init__(self, inits: list[dict], timeout: float, address=None, resources=None):
        from .sweep import RayExecutor
        self.ex = RayExecutor(address, num_cpus=len(inits) if address is None else None)
        ray = self.ex.ray
        self.ray, self.timeout = ray, timeout
        actor = ray.remote(num_cpus=1, max_restarts=0, resources=resources or None)(_RayWorker)
        self.actors = [actor.remote(init) for init in inits]
        self.refs: dict = {}
        self.names = []
        try:
            for k, a in enumerate(self.actors):
                self.refs[k] = a.ready.remote()
                r = self.recv(k, max(timeout, START_TIMEOUT))
                if r[0] != "ready":
                    raise WorkerError(f"worker {k} could not start: {r[1]}: {r[2]}")
                self.names.append(r[1])
        except BaseException:
            self.close()
            raise

    def send(self, k, msg) -> None:
        self.refs[k] = self.actors[k].handle.remote(msg)

    def recv(self, k, timeout):
        ray = self.ray
        try:
            return ray.get(self.refs.pop(k), timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            raise WorkerError(f"worker {k} (Ray actor) sent nothing for {timeout:.0f} s") from None
        except ray.exceptions.RayError as e:
            raise WorkerError(f"worker {k} (Ray actor) died: "
                              f"{_one_line(e).split(' Traceback')[0][:300]}") from None

    def close(self) -> None:
        for a in getattr(self, "actors", []):
            try:
                self.ray.kill(a)
            except Exception:   # noqa: BLE001 - already gone
                pass
        self.actors = []
        self.ex.close()


def _close_pool(pool, local=None) -> None:
    for c in (pool, local):
        try:
            if c is not None:
                c.close()
        except Exception:   # noqa: BLE001 - at exit: best effort
            pass


def _one_blas_thread():
    """A context in which numpy's BLAS runs one thread (the in-process shard shares the
    cores with the workers), or nothing without threadpoolctl."""
    global _BLAS
    if _BLAS is None:
        try:
            from threadpoolctl import ThreadpoolController
            _BLAS = ThreadpoolController()
        except ImportError:
            _BLAS = False
    import contextlib
    return _BLAS.limit(limits=1) if _BLAS else contextlib.nullcontext()


_BLAS = None


class _DriverComm:
    """The in-process shard's side of the reductions: the driver's own (it receives the
    other workers' parts, reduces and answers them, in the thread that runs the pass)."""

    def __init__(self, dp: "DataParallel"):
        self.dp = weakref.ref(dp)
        self.count, self.wait = 0, 0.0

    def allreduce(self, tag, values, ops):
        t = time.perf_counter()
        r = self.dp()._local_allreduce(tag, values, ops)
        self.count += 1
        self.wait += time.perf_counter() - t
        return r


# ------------------------------------------------------------------------------ driver

class _Replay:
    """The engine the driver hands a layer's backward to turn the summed dW into the
    layer's gradients (its bias gradient from the gathered upstream gradient)."""

    def __init__(self, dW):
        self.dW = dW

    def fc_backward(self, *args, **kw):
        return BackwardResult(None, self.dW)

    conv_backward = fc_backward


class ParallelNet:
    """The network as :func:`intergrad.nn.train` and :func:`~intergrad.nn.evaluate` see
    it: forward and backward run on the workers (the engine argument is ignored); the
    parameters, ``copy()``, ``describe()`` and the rest are the driver's network's."""

    def __init__(self, dp: "DataParallel"):
        self._dp = dp

    def forward(self, engine, x):
        return self._dp.forward(x)

    def backward(self, engine, cache, dlogits):
        return self._dp.backward(cache, dlogits)

    def __getattr__(self, name):
        return getattr(self._dp.master, name)


class _EngineView:
    """Stands for the engine in the training loop: ``name``, ``bits_used``, ``rng``."""

    def __init__(self, dp: "DataParallel"):
        self._dp = dp
        self.name = f"{dp.backend} x{dp.workers}"

    @property
    def bits_used(self):
        return self._dp.bits_used()

    @property
    def rng(self):
        st = self._dp.query(0, "rng")
        if st is None:
            return None
        g = np.random.default_rng()
        g.bit_generator.state = st
        return g


class DataParallel:
    """Data-parallel training of ``net`` on ``workers`` devices (None: one per core).

    ``executor``: "local" (processes on this machine) or "ray" (actors: a local Ray
    instance, or the cluster at ``address`` / ``$RAY_ADDRESS``).  ``backend``: "sim" (each
    worker simulates ``cfg``) or "pynq" (each worker opens the board it runs on: Ray
    actors with ``resources={"pynq_board": 1}``, docs/cluster.md).  ``schedule``,
    ``stochastic``, ``seed``, ``max_bits`` as for :class:`intergrad.engine.DeviceEngine`;
    ``rng_state``: the stochastic-rounding generator's state to start from (a checkpoint).
    ``in_process``: shard 0 runs in this process (its device opened here, its reductions
    served by the pass itself, numpy's BLAS at one thread during it); default: with the
    local executor and the sim backend.

    ``net`` stays the master copy: its parameters are the weights the optimizer updates.
    Train with ``nn.train(dp.net, dp.engine, ...)``; :attr:`report` is every worker's
    hardware counters.  Use as a context manager or call :meth:`close`."""

    def __init__(self, net, cfg: ArrayConfig | None = None, *, workers: int | None = None,
                 executor: str = "local", schedule: str = "intergrad", stochastic: bool = False,
                 seed: int = 0, max_bits: int | None = None, split_features: bool = True,
                 rng_state=None, backend: str = "sim", device_kw: dict | None = None,
                 address: str | None = None, resources: dict | None = None,
                 timeout: float = DEFAULT_TIMEOUT, in_process: bool | None = None):
        if executor not in EXECUTORS:
            raise ValueError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
        n = int(workers) if workers else (os.cpu_count() or 1)
        if n < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if backend != "sim" and executor == "local" and n > 1:
            raise ValueError(f"{n} workers on the {backend} backend need one board each: use "
                             f"executor ray with one board per actor (docs/cluster.md)")
        spin = poll_seconds() if n <= (os.cpu_count() or 1) else 0.0    # a core each: poll
        self.master = net
        self.cfg = cfg or ArrayConfig()
        self.workers, self.executor, self.backend = n, executor, backend
        self.timeout = timeout
        self.modes = layer_modes(net, split_features)
        library = None
        if backend == "sim" and executor == "local":
            from .device.sim import build_library     # once, before N workers look for it
            library = str(build_library(self.cfg))
        inits = [dict(net=net, cfg=self.cfg, schedule=schedule, stochastic=stochastic, seed=seed,
                      max_bits=max_bits, modes=self.modes, rng_state=rng_state, backend=backend,
                      device_kw=device_kw, library=library, timeout=timeout, index=k)
                 for k in range(n)]
        if in_process is None:
            in_process = executor == "local" and backend == "sim"
        #: shard 0's worker in this process (``in_process``), its reductions this thread's
        self.local: ShardWorker | None = None
        if in_process:
            try:
                self.local = ShardWorker(**inits[0])
            except Exception as e:   # noqa: BLE001 - as a worker process reports it
                raise WorkerError(f"worker 0 could not start: {type(e).__name__}: "
                                  f"{_one_line(e)}") from None
            self.local.engine.comm = _DriverComm(self)
        first = 1 if in_process else 0
        try:
            self.pool = _LocalPool(inits[first:], timeout, first, spin) \
                if executor == "local" else _RayPool(inits, timeout, address, resources)
        except BaseException:
            if self.local is not None:
                self.local.close()
            raise
        self._finalizer = weakref.finalize(self, _close_pool, self.pool, self.local)
        self.names = ([f"{self.local.describe()} (this process)"] if self.local else []) + \
            list(self.pool.names)
        self._failed = None
        self._stale: set[int] = set()    # workers whose state is to be worker 0's
        self.net = ParallelNet(self)
        self.engine = _EngineView(self)
        self._token = 0
        self._last = None

    # -- the step -----------------------------------------------------------------------
    def forward(self, x):
        """Logits of ``x`` (the whole batch) and a token for :meth:`backward`."""
        x = np.asarray(x)
        B = len(x)
        n = min(self.workers, B)
        cuts = [int(c) for c in np.linspace(0, B, n + 1).round()]
        params = self.master.params()
        self._token += 1
        # a worker that sat out a pass (a batch smaller than the workers) or was in a failed
        # one takes worker 0's state (in every pass, so the one-device history): the
        # generator's, and the guesses' (they must be the same on every worker)
        sync = self.query(0, "state") if self._stale & set(range(1, n)) else None
        msgs = {k: ("forward", self._token, params, x[cuts[k]:cuts[k + 1]],
                    (cuts[k], cuts[k + 1], B), (k, n), sync if k in self._stale else None)
                for k in range(n)}
        self._stale -= set(range(n))
        self._stale |= set(range(n, self.workers))
        outs = self._run_marking(msgs)
        if isinstance(outs[0], tuple):   # the last layer split by features: its columns
            first = outs[0][0]
            logits = np.empty((first.shape[0], max(c1 for _, (_, c1) in outs)), first.dtype)
            for part, (c0, c1) in outs:
                logits[:, c0:c1] = part
            full = True
        else:
            full = outs[0].shape[0] == B
            logits = outs[0] if full else np.concatenate(outs)
        self._last = (self._token, cuts, full)
        return logits, self._token

    def backward(self, token, dlogits):
        """Gradients of the last forward pass (aligned with ``net.params()``)."""
        if self._last is None or self._last[0] != token:
            raise RuntimeError("backward() of another forward pass than the last one")
        _, cuts, full = self._last
        n = len(cuts) - 1
        dlogits = np.asarray(dlogits)
        outs = self._run_marking({k: ("backward", token, dlogits if full else
                                      dlogits[cuts[k]:cuts[k + 1]]) for k in range(n)})
        exps = outs[0][1]
        for k, o in enumerate(outs[1:], 1):
            if o[1] != exps:
                bad = sorted(l for l in exps if o[1].get(l) != exps[l])
                raise RuntimeError(f"{', '.join(bad)}: the workers scaled dW differently "
                                   f"(worker 0: {[exps[l] for l in bad]}, worker {k}: "
                                   f"{[o[1].get(l) for l in bad]})")
        total = outs[0][0].astype(np.int64)             # exact integers
        for o in outs[1:]:
            total += o[0]
        grads, off = [], 0
        for layer in self.master.layers:
            if not layer.params():
                continue
            size = layer.w.size
            dW = wrap(total[off:off + size].reshape(layer.w.shape), self.cfg.acc_w) \
                * 2.0 ** -exps[layer.name]
            off += size
            dys = [o[2][layer.name] for o in outs]
            dy = np.concatenate([d for d, _ in dys]) if dys[0][1] else dys[0][0]
            grads += layer.backward(_Replay(dW.astype(np.float32)), None, dy, False)[1]
        return grads

    def _run_marking(self, msgs: dict) -> list:
        try:
            return self._run(msgs)
        except BaseException:
            self._stale |= set(range(1, self.workers))   # a failed pass: resync from worker 0
            raise

    def _run(self, msgs: dict) -> list:
        """Send each worker its message, serve the reductions, return the results (the
        in-process shard's pass runs here, its reductions serving the others')."""
        ks = sorted(msgs)
        local = self.local is not None and 0 in msgs
        remote = [k for k in ks if not (local and k == 0)]
        for k in remote:
            self.pool.send(k, msgs[k])
        if local:
            self._failed, self._remote = None, remote
            try:
                with _one_blas_thread():
                    r0 = self.local._step(msgs[0])
            except KeyboardInterrupt:    # the other workers are mid-pass: end them
                self.close()
                raise
            if self._failed is not None:        # a reduction found another worker failing
                failed, self._failed = self._failed, None
                if isinstance(failed, BaseException):
                    raise failed
                self._fail(failed)
            rep = {k: self.pool.recv(k, self.timeout) for k in remote}
            rep[0] = r0
            if {r[0] for r in rep.values()} == {"done"}:
                return [rep[k][1] for k in ks]
            self._fail(rep)
        while True:
            rep = {k: self.pool.recv(k, self.timeout) for k in ks}
            if {r[0] for r in rep.values()} == {"done"}:
                return [rep[k][1] for k in ks]
            if not self._reducible(rep):
                self._fail(rep)
            try:
                red = self._reduced(rep)
            except Exception as e:   # noqa: BLE001 - every worker waits for its answer
                raise self._unreduced(rep, e) from None
            for k in ks:
                self.pool.send(k, ("resume", red))

    def _reducible(self, rep: dict) -> bool:
        return {r[0] for r in rep.values()} == {"allreduce"} and \
            len({r[1] for r in rep.values()}) == 1

    @staticmethod
    def _reduced(rep: dict) -> list:
        ks = sorted(rep)
        return [_reduce(op, [rep[k][2][i] for k in ks]) for i, op in enumerate(rep[ks[0]][3])]

    def _local_allreduce(self, tag, values, ops) -> list:
        """A reduction of the in-process shard's pass: the other workers' parts, reduced
        with its own, answered; when another worker failed, the pass ends (_Aborted) and
        :meth:`_run` reports it."""
        try:
            rep = {k: self.pool.recv(k, self.timeout) for k in self._remote}
        except WorkerError as e:
            self._failed = e
            raise _Aborted() from None
        rep[0] = ("allreduce", tag, values, ops)
        if not self._reducible(rep):
            self._failed = rep
            raise _Aborted()
        try:
            red = self._reduced(rep)
        except Exception as e:   # noqa: BLE001 - the others wait for its answer: end them
            self._failed = self._unreduced(rep, e)
            raise _Aborted() from None
        for k in self._remote:
            self.pool.send(k, ("resume", red))
        return red

    def _unreduced(self, rep: dict, e: Exception) -> WorkerError:
        """A reduction whose parts do not reduce (the workers disagree on a shape): end the
        pass on the workers waiting for its answer; the error to raise."""
        self._abort(rep)
        tag = next(iter(rep.values()))[1]
        return WorkerError(f"the workers' parts of reduction {tag} do not reduce: "
                           f"{type(e).__name__}: {_one_line(e)}")

    def _fail(self, rep: dict):
        """End the pass on the workers still waiting in a reduction; raise the failure."""
        self._abort(rep)
        bad = [(k, r) for k, r in sorted(rep.items()) if r[0] == "error"]
        if not bad:
            tags = sorted({str(r[1]) if r[0] == "allreduce" else r[0] for r in rep.values()})
            raise WorkerError(f"workers out of step: {tags}")
        k, (_, tname, text) = bad[0]
        where = self.names[k] if k < len(self.names) else ""
        if tname in ("FloatingPointError", "OverflowError"):
            raise {"FloatingPointError": FloatingPointError,
                   "OverflowError": OverflowError}[tname](text)
        raise WorkerError(f"worker {k} ({where}): {tname}: {text}")

    def _abort(self, rep: dict) -> None:
        """End the pass on the workers still waiting in a reduction (not this process's:
        its pass has ended)."""
        for k, r in rep.items():
            if r[0] == "allreduce" and not (self.local is not None and k == 0):
                self.pool.send(k, _ABORT)
                self.pool.recv(k, self.timeout)

    # -- what the workers know ---------------------------------------------------------
    def query(self, k: int, what: str):
        if k == 0 and self.local is not None:
            return self.local._query(what)
        self.pool.send(k, ("query", what))
        r = self.pool.recv(k, self.timeout)
        if r[0] != "done":
            raise WorkerError(f"worker {k}: {r[1]}: {r[2]}")
        return r[1]

    def bits_used(self) -> dict:
        """As DeviceEngine.bits_used (the workers' decisions are the same)."""
        return self.query(0, "bits_used")

    @property
    def report(self) -> Report:
        """Every worker's pass records (counters of its device), worker by worker."""
        r = Report()
        for k in range(self.workers):
            r.extend(self.query(k, "report"))
        return r

    def sim_seconds(self) -> float:
        """Wall time inside the simulators, averaged over the workers."""
        return sum(self.query(k, "sim_seconds") for k in range(self.workers)) / self.workers

    def cpu_seconds(self) -> list[float]:
        """Each worker process's CPU time so far."""
        return [self.query(k, "cpu_seconds") for k in range(self.workers)]

    def spin_seconds(self) -> list[float]:
        """Of each worker process's CPU time, the seconds it polled in waits for messages
        (:data:`SPIN`; the driver's process: its waits for the workers' parts)."""
        own = sum(c.spun for c in getattr(self.pool, "conns", ()))
        return [own if k == 0 and self.local is not None else self.query(k, "spin_seconds")
                for k in range(self.workers)]

    def phases(self) -> list[list[float]]:
        """Each worker's CPU seconds (its pass's thread) of every stretch between two
        reductions (and from a pass's start / to its end) since the last call: the same
        stretches on every worker, so sum(max over the workers) is the CPU time on the
        step's critical path (an idle machine, one core per worker, no wake-up latency)."""
        return [self.query(k, "phases") for k in range(self.workers)]

    def reductions(self) -> list[tuple[int, float]]:
        """Each worker's reductions so far and the wall seconds it spent in them (from
        sending its part to the answer: waiting for the other workers and the driver)."""
        return [tuple(self.query(k, "reductions")) for k in range(self.workers)]

    def describe(self) -> str:
        split = [n for n, m in self.modes.items() if m == "features"]
        how = "every layer split by batch" if not split else \
            f"split by batch, {', '.join(split)} by output features"
        where = "processes" if self.executor == "local" else "Ray actors"
        return f"{self.workers} workers ({where}: {'; '.join(self.names)}), {how}"

    def close(self) -> None:
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


__all__ = ["DataParallel", "ParallelNet", "ShardEngine", "ShardWorker", "WorkerError",
           "EXECUTORS", "feature_plan", "layer_modes"]
