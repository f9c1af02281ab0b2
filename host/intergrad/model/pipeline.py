"""Pipelined multi-array training (beyond any anchor; the LayerPipe idea of the seed's related
work): the conv / fc layers of a network partitioned into K contiguous stages, one array per
stage, each running its layers' forward and backward passes on micro-batches as a pipeline.

Each stage has an array of about 1/K of the PEs of the single array it is compared with
(:func:`stage_array`; the same PE variant).  Per stage k, ``F_k`` and ``B_k`` are the cycles of
its layers' forward and backward passes on one micro-batch (the model's cycles on the stage's
array).  Two schedules, in closed form and checked against a discrete-event simulation
(:func:`simulate`, tests/test_model_pipeline.py):

* ``sync`` (GPipe-like, one weight version, a flush per step): every stage runs the forwards
  of all ``m`` micro-batches, then their backwards in reverse stage order.  Identical jobs in
  a flow shop finish at ``sum(t) + (m - 1) * max(t)``, so one step takes
  ``sum(F) + (m - 1) max(F) + sum(B) + (m - 1) max(B)`` cycles.
* ``async`` (PipeDream / LayerPipe-style 1F1B with weight stashing): after a warm-up, each
  stage alternates one forward and one backward; the steady state delivers one micro-batch
  every ``max_k (F_k + B_k)`` cycles, no bubbles; stage k (1-based) keeps ``K - k`` extra
  weight versions and the inputs of ``K - k + 1`` micro-batches in flight.

Bubbles = the fraction of stage-cycles left idle.  The partition minimizes the bottleneck
stage ``max_k (F_k + B_k)`` over contiguous splits (exact, by binary search over the
achievable bottlenecks with a greedy feasibility test).
"""
from __future__ import annotations

import dataclasses
import numpy as np

from .dataflows import Dataflow, parse_dataflow
from .profile import Array, profile
from .tables import iso_area_size

SCHEDULES = ("sync", "async")


def stage_array(array: Array, K: int) -> Array:
    """The array of one of K stages: the most PEs with at most 1/K of ``array``'s, each side
    at most the original one and an aspect ratio within 2:1 (32x32 -> 32x16, 17x20, 16x16);
    ties go to the squarest."""
    if K == 1:
        return array
    budget = array.rows * array.cols // K
    best = iso_area_size(array.rows, array.cols, 1.0, float(K))
    for r in range(1, array.rows + 1):
        c = min(array.cols, budget // r)
        if c < 1 or max(r, c) > 2 * min(r, c):
            continue
        if (r * c, -abs(r - c)) > (best[0] * best[1], -abs(best[0] - best[1])):
            best = (r, c)
    return dataclasses.replace(array, rows=best[0], cols=best[1])


def partition(cost: np.ndarray, K: int) -> list[int]:
    """Stage boundaries (start index of each stage) of a contiguous split of ``cost`` into at
    most K non-empty parts minimizing the largest part sum."""
    cost = np.asarray(cost, dtype=float)
    n = len(cost)
    K = min(K, n)
    pre = np.concatenate([[0.0], np.cumsum(cost)])

    def greedy(limit):
        starts, s = [0], 0.0
        for i, c in enumerate(cost):
            if s + c > limit + 1e-9 and i > starts[-1]:
                starts.append(i)
                s = 0.0
            s += c
        return starts

    # every achievable bottleneck is a sum of a contiguous run: search them in sorted order
    lo, hi = float(cost.max()), float(pre[-1])
    cands = np.unique([pre[j] - pre[i] for i in range(n) for j in range(i + 1, n + 1)
                       if lo - 1e-9 <= pre[j] - pre[i] <= hi + 1e-9]) if n <= 400 else None
    if cands is not None:
        a, b = 0, len(cands) - 1
        while a < b:
            mid = (a + b) // 2
            if len(greedy(cands[mid])) <= K:
                b = mid
            else:
                a = mid + 1
        best = greedy(cands[a])
    else:   # long networks: bisection on the value
        for _ in range(60):
            mid = (lo + hi) / 2
            if len(greedy(mid)) <= K:
                hi = mid
            else:
                lo = mid
        best = greedy(hi)
    # use all K arrays when there are enough layers: split the largest stage further
    while len(best) < K:
        ends = best[1:] + [n]
        sizes = [e - s for s, e in zip(best, ends)]
        i = int(np.argmax(sizes))
        if sizes[i] < 2:
            break
        sums = [pre[e] - pre[s] for s, e in zip(best, ends)]
        i = int(np.argmax([sm if sz > 1 else -1 for sm, sz in zip(sums, sizes)]))
        s, e = best[i], ends[i]
        half = pre[s] + (pre[e] - pre[s]) / 2
        cut = int(np.clip(np.searchsorted(pre, half), s + 1, e - 1))
        best = sorted(best + [cut])
    return best


@dataclasses.dataclass
class PipelineResult:
    K: int
    schedule: str
    array: Array             # of each stage
    micro_batches: int
    micro_batch: int
    starts: list             # first layer index of each stage
    F: np.ndarray            # forward cycles per stage and micro-batch
    B: np.ndarray            # backward cycles per stage and micro-batch
    step_cycles: float       # cycles per training step (all micro-batches)
    bubble: float            # idle fraction of stage-cycles
    extra_weight_copies: list    # per stage: extra weight versions (async)
    inflight: list           # per stage: micro-batches whose activations are held
    weights: list            # weights per stage (elements)
    act_elems: list          # stashed input activations per stage (elements)

    @property
    def throughput(self) -> float:
        """Samples per cycle."""
        return self.micro_batches * self.micro_batch / self.step_cycles


def closed_form(F, B, m: int, schedule: str) -> tuple[float, float]:
    """(cycles per step of m micro-batches, bubble fraction) of a schedule."""
    F, B = np.asarray(F, float), np.asarray(B, float)
    K = len(F)
    if schedule == "sync":
        step = F.sum() + (m - 1) * F.max() + B.sum() + (m - 1) * B.max()
    elif schedule == "async":
        step = m * float((F + B).max())
    else:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    work = m * float((F + B).sum())
    return float(step), 1.0 - work / (K * step)


def pipeline(net, dataflow: Dataflow | str, array: Array, batch: int, K: int,
             schedule: str = "async", micro_batches: int | None = None, **kw
             ) -> PipelineResult:
    """K stages of ``array``'s PEs / K each, the network split to balance them; ``kw`` go to
    :func:`profile` (mapping, energy, ...)."""
    if int(K) != K or K < 1:
        raise ValueError(f"stages must be a positive integer, got {K!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    df = parse_dataflow(dataflow) if isinstance(dataflow, str) else dataflow
    # default: the largest divisor of the batch up to 4K micro-batches (1 for one array)
    m = micro_batches or (1 if K == 1 else max(d for d in range(1, min(batch, 4 * K) + 1)
                                               if batch % d == 0))
    if m < 1 or batch % m:
        raise ValueError(f"micro-batches must divide the batch {batch}, got {m}")
    mb = batch // m
    arr = stage_array(array, K)
    res = profile(net, df, arr, mb, **kw)
    f = res.passes["fwd"]["cycles"].astype(float)
    b = sum(p["cycles"].astype(float) for k, p in res.passes.items() if k != "fwd")
    starts = partition(f + b, K)
    ends = starts[1:] + [len(f)]
    F = np.array([f[s:e].sum() for s, e in zip(starts, ends)])
    B = np.array([b[s:e].sum() for s, e in zip(starts, ends)])
    step, bubble = closed_form(F, B, m, schedule)
    A = net.arrays()
    Ks = len(starts)
    weights = [int(A["weights"][s:e].sum()) for s, e in zip(starts, ends)]
    ins = [int(A["in_elems"][s] * mb) for s in starts]
    if schedule == "async":
        extra = [Ks - 1 - k for k in range(Ks)]
        inflight = [Ks - k for k in range(Ks)]
    else:
        extra = [0] * Ks
        inflight = [m] * Ks
    acts = [int(sum(A["in_elems"][s:e].sum() * mb * n for _ in [0]))
            for (s, e), n in zip(zip(starts, ends), inflight)]
    return PipelineResult(Ks, schedule, arr, m, mb, starts, F, B, step, bubble, extra,
                          inflight, weights, acts)


def simulate(F, B, m: int, schedule: str, steps: int = 1) -> dict:
    """Discrete-event simulation of the schedule: each stage runs its task list in order, a
    task starts when its stage is free and its inputs are ready.  Returns the finish time of
    each step's last backward and the per-stage busy time."""
    K = len(F)
    # task lists per stage: ("f"|"b", micro-batch index)
    n = m * steps
    order = []
    for k in range(K):
        if schedule == "sync":
            seq = []
            for s in range(steps):
                seq += [("f", s * m + i) for i in range(m)]
                seq += [("b", s * m + i) for i in range(m)]
        else:   # 1F1B: K - k warm-up forwards, then alternate backward / forward
            warm = min(K - k, n)
            seq = [("f", i) for i in range(warm)]
            nf = warm
            for i in range(n):
                seq.append(("b", i))
                if nf < n:
                    seq.append(("f", nf))
                    nf += 1
        order.append(seq)
    done = {}
    ptr = [0] * K
    free = [0.0] * K
    busy = [0.0] * K
    # start every task whose stage is free and whose inputs are done, in each stage's order
    pending = True
    while pending:
        pending = False
        progressed = False
        for k in range(K):
            if ptr[k] >= len(order[k]):
                continue
            pending = True
            kind, i = order[k][ptr[k]]
            if kind == "f":
                dep = [("f", k - 1, i)] if k > 0 else []
                if schedule == "sync" and k == 0 and i % m == 0 and i >= m:
                    dep = [("b", 0, i - 1)]          # the next step waits for the flush
                dur = F[k]
            else:
                dep = [("b", k + 1, i)] if k < K - 1 else [("f", k, i)]
                dur = B[k]
            if all(d in done for d in dep):
                start = max([free[k]] + [done[d] for d in dep])
                end = start + dur
                done[(kind, k, i)] = end
                free[k] = end
                busy[k] += dur
                ptr[k] += 1
                progressed = True
        if pending and not progressed:
            raise RuntimeError("pipeline schedule deadlocked")
    ends = [done[("b", 0, (s + 1) * m - 1)] for s in range(steps)]
    return {"step_ends": ends, "busy": busy, "makespan": max(done.values())}
