"""A whole GEMM pass's stream, built and decoded with a few numpy gathers.

:meth:`intergrad.scheduler.Scheduler._run` used to walk a pass's jobs in Python: per job it
cut operand tiles, wrote lane arrays, ran the job and scattered its outputs.  Here the same
stream is described once per pass shape by a :class:`PassLayout` (cached: a training run
repeats the same shapes every step):

* ``in_index`` (n_in_beats, in_lanes): for every lane of every input beat of the pass, the
  position of its value in the flat source vector ``[0, X.ravel(), W.ravel(), dY.ravel()]``
  (0: a zero lane: unused lanes, edge-tile padding, the zero-padded part of a PRELOAD of a
  smaller next tile);
* ``res_index`` (col_tiles, B, rows): where each column tile's partial of the result
  (fwd: Y, dx/ig: dX) sits in the flat output beats; the partials are summed over the column
  tiles and wrapped to ACC_W, as the scheduler does;
* ``dw_index`` (rows, cols): where each dW element is drained (DRAIN of the tile's last job,
  or DRAIN_PREV of the next tile's first job after a SAVE).

Building a pass's lanes is then ``source[in_index]`` and decoding it ``out.ravel()[index]``;
the jobs (:func:`intergrad.plan.plan_pass`, unchanged) still go to the core one by one
(:meth:`Accelerator.run_job`) unless the driver has ``run_pass`` (job queues: a whole pass
in one transfer per queue; with ``run_pass_lanes`` the pass's beats go in and come back
as one array each way; with ``run_pass_source`` the driver gathers ``source[in_index]``
itself, straight into its queues' frames, and :func:`build_pass`'s lanes are never built).
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from . import native
from .conv import Im2col
from .core import MODES
from .plan import PASS_MODE, TileJob, pass_dims, plan_pass
from .spec import ArrayConfig

__all__ = ["PassLayout", "Source", "layout", "build_pass", "fill_source", "decode_pass",
           "run_jobs", "run_pass"]


@dataclasses.dataclass(frozen=True)
class PassLayout:
    """Where every input lane comes from and every output lane goes, for one pass shape."""

    pass_: str
    B: int
    N: int
    M: int
    jobs: tuple[TileJob, ...]
    in_offsets: np.ndarray    # (jobs + 1,) first input beat of each job
    out_offsets: np.ndarray   # (jobs + 1,) first output beat of each job
    in_index: np.ndarray      # (in_beats, in_lanes) into [0, X, W, dY] (flattened); uint32
    #                           where the source fits (else int64)
    res_index: np.ndarray | None  # (col_tiles, B, rows) into the flat output lanes
    dw_index: np.ndarray | None   # (rows, cols) into the flat output lanes
    #: the flat source vector, allocated once and refilled by every build_pass (a fresh
    #: array of this size per pass costs ten times the gather: new pages); one pass at a
    #: time per process
    source: np.ndarray
    reads: frozenset      # the operands ("X", "W", "dY") the pass's lanes come from
    job_list: tuple = ()  # the jobs' Job records (tj.job for tj in jobs)
    #: res_index / dw_index as rectangles of output beats (:func:`intergrad.native.blocks`:
    #: the native decode reads them without the index), or None
    res_blocks: np.ndarray | None = None
    dw_blocks: np.ndarray | None = None
    out_lanes: int = 0

    @property
    def in_beats(self) -> int:
        return int(self.in_offsets[-1])

    @property
    def out_beats(self) -> int:
        return int(self.out_offsets[-1])


def _grid3(base: int, width: int, r: np.ndarray, c: np.ndarray, h: int, w: int,
           dtype=np.int64) -> np.ndarray:
    """Flat positions ``base + r*width + c`` of a (h, w) row-major operand at the rows ``r``
    and columns ``c`` (arrays broadcast together, e.g. (jobs, beats, 1) and (jobs, 1,
    lanes)), as ``dtype``; positions outside it are 0 (a zero lane).  The full-size result
    is written once and masked in place (the row and column terms and masks stay small)."""
    shape = np.broadcast_shapes(np.shape(r), np.shape(c))
    out = np.empty(shape, dtype=dtype)
    np.add(base + r * width, c, out=out, casting="unsafe")   # below 2**32 (layout checks)
    np.multiply(out, r < h, out=out)
    np.multiply(out, c < w, out=out)
    return out


#: input beats a layout fills at once (a group of alike jobs is cut into chunks of this)
_CHUNK_BEATS = 1 << 14


def _chunks(jobs: list, beats: int):
    """``jobs`` (each ``beats`` input beats) in runs of about :data:`_CHUNK_BEATS` beats."""
    step = max(1, _CHUNK_BEATS // beats)
    return (jobs[i:i + step] for i in range(0, len(jobs), step))


@functools.lru_cache(maxsize=64)  # a network's passes; a big conv pass's indices are MBs
def layout(cfg: ArrayConfig, pass_: str, B: int, N: int, M: int,
           double_buffer: bool = True) -> PassLayout:
    """The :class:`PassLayout` of the jobs :func:`plan_pass` issues for this pass."""
    jobs = tuple(plan_pass(cfg, pass_, B, N, M, double_buffer))
    kind = MODES[PASS_MODE[pass_]]
    rows, cols = pass_dims(pass_, N, M)
    R, C, OL = cfg.rows, cfg.cols, cfg.out_lanes
    # flat source vector [0, X (B x N), W (N x M), dY (B x M)]
    x0, w0 = 1, 1 + B * N
    y0 = w0 + N * M
    lr, lc = np.arange(R), np.arange(C)

    def stationary(r0, c0, transpose, beats):
        """Weight beats of the stationary tiles at (r0[k], c0[k]) (vectors over jobs):
        (jobs, beats, lanes) and the lanes they fill; plain, beat n = row n in the top
        lanes; TRANSPOSE, beat m = column m in the left lanes."""
        n = np.arange(beats)[None, :, None]        # the beat, over axis 1
        r0, c0 = r0[:, None, None], c0[:, None, None]
        if pass_ == "fwd":  # S = W^T: S[i, j] = W[c0 + j, r0 + i]
            if transpose:
                return _grid3(w0, M, c0 + n, r0 + lr, N, M, pos_t), slice(0, R)
            return _grid3(w0, M, c0 + lc, r0 + n, N, M, pos_t), slice(R, R + C)
        if transpose:
            return _grid3(w0, M, r0 + lr, c0 + n, N, M, pos_t), slice(0, R)
        return _grid3(w0, M, r0 + n, c0 + lc, N, M, pos_t), slice(R, R + C)

    n_jobs = len(jobs)
    in_off = np.zeros(n_jobs + 1, dtype=np.int64)
    out_off = np.zeros(n_jobs + 1, dtype=np.int64)
    for k, tj in enumerate(jobs):
        in_off[k + 1] = in_off[k] + tj.job.in_beats()
        out_off[k + 1] = out_off[k] + tj.job.out_beats()
    # positions into the source vector (y0 + B*M entries): uint32 where they fit (half the
    # memory of int64, and what the native gathers read)
    pos_t = np.uint32 if y0 + B * M <= 0xFFFFFFFF else np.int64
    idx = np.zeros((int(in_off[-1]), cfg.in_lanes), dtype=pos_t)
    n_rt, n_ct = -(-rows // R), -(-cols // C)
    res_beat = np.full((n_rt, n_ct, B), -1, dtype=np.int64) if kind.data_out else None
    drain_beat = np.full((n_rt, n_ct), -1, dtype=np.int64) if kind.accumulates else None
    top, top_w = (x0, N) if pass_ == "fwd" else (y0, M)
    # the input beats of every job, filled group by group (jobs whose beats have the same
    # shape: one broadcast per group, not numpy calls per job): (first beat, r0, c0, b0)
    # per job of each weight group (transpose, beats) and data group (batch rows)
    weights: dict[tuple[bool, int], list] = {}
    data: dict[int, list] = {}
    for k, tj in enumerate(jobs):
        j = tj.job
        pos, bl = int(in_off[k]), j.batch
        tr = j.has("TRANSPOSE")
        if j.has("LOAD_W"):
            wb = j.weight_beats()
            weights.setdefault((tr, wb), []).append((pos, tj.r0, tj.c0))
            pos += wb
        data.setdefault(bl, []).append((pos, tj.r0, tj.c0, tj.b0))
        pos += bl
        if j.has("PRELOAD"):  # the next tile, zero-padded to this job's shape
            weights.setdefault((tr, j.weight_beats()), []).append((pos, *tj.next_tile))
    # in chunks of about _CHUNK_BEATS beats: the temporaries stay small (memory the process
    # reuses: fresh pages cost more than the work, on a VM much more)
    for (tr, wb), g in weights.items():
        for part in _chunks(g, wb):
            pos, r0, c0 = (np.array(v, dtype=np.int64) for v in zip(*part))
            block, lanes = stationary(r0, c0, tr, wb)
            idx[(pos[:, None] + np.arange(wb)).ravel(), lanes] = \
                block.reshape(-1, block.shape[2])
    for bl, g in data.items():
        for part in _chunks(g, bl):
            pos, r0, c0, b0 = (np.array(v, dtype=np.int64)[:, None, None] for v in zip(*part))
            b = b0 + np.arange(bl)[None, :, None]
            if len(pos) == 1:   # one job: its rows are one slice
                at = slice(int(pos[0, 0, 0]), int(pos[0, 0, 0]) + bl)
            else:
                at = (pos[:, :, 0] + np.arange(bl)).ravel()
            idx[at, R:R + C] = _grid3(top, top_w, b, c0 + lc, B, cols, pos_t).reshape(-1, C)
            if kind.left_data:  # X[:, r0:r0 + ra] in the left lanes
                idx[at, :R] = _grid3(x0, N, b, r0 + lr, B, rows, pos_t).reshape(-1, R)
    for k, tj in enumerate(jobs):
        j = tj.job
        r0, c0, b0, bl = tj.r0, tj.c0, tj.b0, j.batch
        ob = int(out_off[k])
        if tj.prev_tile is not None:  # the previous tile's saved accumulators come first
            drain_beat[tj.prev_tile[0] // R, tj.prev_tile[1] // C] = ob
            ob += j.prev_rows
        if kind.data_out:
            res_beat[r0 // R, c0 // C, b0:b0 + bl] = ob + np.arange(bl)
            ob += bl
        if j.has("DRAIN"):
            drain_beat[r0 // R, c0 // C] = ob
    res_index = dw_index = None
    r = np.arange(rows)
    if res_beat is not None:
        assert (res_beat >= 0).all(), "a result partial no job delivers"
        # [ct, b, r] -> beat res_beat[r // R, ct, b], lane r % R
        res_index = res_beat[r // R].transpose(1, 2, 0) * OL + r % R
    if drain_beat is not None:
        assert (drain_beat >= 0).all(), "a dW tile no job drains"
        c = np.arange(cols)
        dw_index = (drain_beat[r // R][:, c // C] + (r % R)[:, None]) * OL + c % C
    # C order: a gather's result takes its index's memory order, and the results must have
    # the per-job loop's (float reductions downstream, e.g. a bias gradient, depend on it)
    # as the native gathers read them (uint32, intergrad.native) when those are used
    n_out = int(out_off[-1]) * OL
    res_index, dw_index = (None if a is None else native.index(np.ascontiguousarray(a), n_out)
                           for a in (res_index, dw_index))
    for a in (in_off, out_off, idx, res_index, dw_index):
        if a is not None:
            a.setflags(write=False)
    res_blocks = native.blocks(res_index, OL) if res_index is not None and \
        res_index.dtype == np.uint32 else None
    dw_blocks = native.blocks(dw_index[None], OL) if dw_index is not None and \
        dw_index.dtype == np.uint32 else None
    return PassLayout(pass_, B, N, M, jobs, in_off, out_off, idx, res_index, dw_index,
                      np.zeros(y0 + B * M, dtype=np.int64),
                      frozenset({"X" if pass_ == "fwd" else "dY"}
                                | ({"W"} if kind.uses_weights else set())
                                | ({"X"} if kind.left_data else set())),
                      tuple(tj.job for tj in jobs), res_blocks, dw_blocks, OL)


def build_pass(lay: PassLayout, X=None, W=None, dY=None) -> np.ndarray:
    """All input beats of the pass, (lay.in_beats, in_lanes) int64, in job order.  Operands
    the pass does not read may be None (X (B, N), W (N, M), dY (B, M) otherwise)."""
    return fill_source(lay, X, W, dY)[lay.in_index]


def _operands(lay: PassLayout, X, W, dY) -> list:
    """(position in the source vector, operand) of the operands given, checked: every one
    the pass reads is there, each of its shape."""
    B, N, M = lay.B, lay.N, lay.M
    out, pos = [], 1
    for name, a, shape in (("X", X, (B, N)), ("W", W, (N, M)), ("dY", dY, (B, M))):
        if a is None and name in lay.reads:
            raise ValueError(f"the {lay.pass_} pass reads {name}, got None")
        if a is not None:  # an operand the pass does not read is never indexed
            if not isinstance(a, Im2col):   # one written where it goes (_fill)
                a = np.asarray(a)
            if a.shape != shape:
                raise ValueError(f"operand of shape {a.shape}, the pass expects {shape}")
            out.append((pos, a))
        pos += shape[0] * shape[1]
    return out


def _fill(dst: np.ndarray, operands) -> np.ndarray:
    dst[0] = 0
    for pos, a in operands:
        if isinstance(a, Im2col):
            a.write(dst[pos:pos + a.size])
        else:
            dst[pos:pos + a.size] = a.ravel()   # into narrower integers: the low bits (a wrap)
    return dst


def fill_source(lay: PassLayout, X=None, W=None, dY=None) -> np.ndarray:
    """The layout's source vector [0, X, W, dY] filled with the operands (as
    :func:`build_pass` takes them); the pass's lanes are ``source[lay.in_index]``."""
    return _fill(lay.source, _operands(lay, X, W, dY))


class Source:
    """A pass's source vector [0, X, W, dY], checked but not yet built: :meth:`fill` writes
    it into a vector of any integer dtype (a driver's frame lanes: one pass over the
    operands instead of the int64 vector and a cast of it), :meth:`array` is
    :func:`fill_source`'s int64 vector (built once)."""

    def __init__(self, lay: PassLayout, X=None, W=None, dY=None):
        self.lay, self._ops, self._array = lay, _operands(lay, X, W, dY), None

    def __len__(self) -> int:
        return len(self.lay.source)

    def fill(self, dst: np.ndarray) -> np.ndarray:
        if len(dst) != len(self):
            raise ValueError(f"a source vector of {len(self)} elements, got {len(dst)}")
        return _fill(dst, self._ops)

    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = _fill(self.lay.source, self._ops)
        return self._array


def decode_pass(lay: PassLayout, out: np.ndarray, acc_w: int):
    """(result, dW) of the pass from all its output beats (lay.out_beats, out_lanes): the
    result (B, rows) summed over column tiles and wrapped to ACC_W, or None; dW (rows, cols)
    as drained, or None -- what :meth:`Scheduler._run` returns."""
    flat = np.asarray(out)
    if not np.issubdtype(flat.dtype, np.integer):
        flat = flat.astype(np.int64)
    flat = flat.ravel()   # integers of any width (a driver's native lanes): int64 gathered
    res = None
    if lay.res_index is not None:
        ri = lay.res_index
        # the rectangles of beats summed natively, where the layout has them
        res = native.sum_blocks(flat, lay.res_blocks, ri.shape[1:], lay.out_lanes)
        if res is None and ri.dtype == np.uint32:   # the native gather-and-sum
            res = native.take_sum(flat, ri)
        elif res is None and len(ri) <= 3:   # a few column tiles' partials: added in place
            res = flat[ri[0]].astype(np.int64, copy=False)
            for t in range(1, len(ri)):
                res += flat[ri[t]]
        elif res is None:
            res = flat[ri].sum(axis=0, dtype=np.int64)
        if acc_w < 64:   # core.wrap's two's-complement wrap, in place on this fresh array
            h = np.int64(1) << np.int64(acc_w - 1)
            res += h
            res &= (h << np.int64(1)) - np.int64(1)
            res -= h
    dW = None
    if lay.dw_index is not None:
        dW = native.sum_blocks(flat, lay.dw_blocks, lay.dw_index.shape, lay.out_lanes)
        if dW is None:
            dW = (native.take_sum(flat, lay.dw_index[None]) if lay.dw_index.dtype == np.uint32
                  else flat[lay.dw_index].astype(np.int64, copy=False))
    return res, dW


def run_jobs(accel, lay: PassLayout, lanes: np.ndarray) -> np.ndarray:
    """Send the pass's jobs and return all output beats (out_beats, out_lanes).

    A driver with ``run_pass(jobs, lanes_list) -> list of outputs`` (job queues: the whole
    pass in one transfer per queue, :mod:`intergrad.jobqueue`, in-band job descriptors)
    gets the pass in one call, each job's input a view of ``lanes``; otherwise one
    :meth:`Accelerator.run_job` per job on slices of ``lanes``."""
    jobs = lay.job_list
    whole = getattr(accel, "run_pass", None)
    lanes_fn = getattr(accel, "run_pass_lanes", None) if whole is not None else None
    if lanes_fn is not None:   # the same, the beats in one array each way
        return _checked_out(lay, accel, lanes_fn(jobs, lanes), "run_pass_lanes")
    io, oo = lay.in_offsets.tolist(), lay.out_offsets.tolist()
    views = [lanes[io[k]:io[k + 1]] for k in range(len(jobs))]
    if whole is not None:
        outs = whole(jobs, views)
        if len(outs) != len(jobs):
            raise ValueError(f"run_pass returned {len(outs)} outputs for {len(jobs)} jobs")
        return np.concatenate(outs) if outs else np.zeros((0, accel.cfg.out_lanes), np.int64)
    out = np.empty((lay.out_beats, accel.cfg.out_lanes), dtype=np.int64)
    for k, (j, v) in enumerate(zip(jobs, views)):
        out[oo[k]:oo[k + 1]] = accel.run_job(j, v)
    return out


def _checked_out(lay: PassLayout, accel, out: np.ndarray, what: str) -> np.ndarray:
    if out.shape != (lay.out_beats, accel.cfg.out_lanes):
        raise ValueError(f"{what} returned {out.shape[0]} output beats, the pass "
                         f"has {lay.out_beats}")
    return out


def run_pass(accel, pass_: str, B: int, N: int, M: int, X=None, W=None, dY=None,
             double_buffer: bool = True):
    """One GEMM pass on ``accel``: (result, dW, layout), as :meth:`Scheduler._run` computes
    them.  Operands must already be checked (integers fitting DATA_W).  A driver with job
    queues and ``run_pass_source(jobs, source, in_index)`` gathers the lanes itself (straight
    into its frames); otherwise they are built here (:func:`build_pass`, :func:`run_jobs`)."""
    lay = layout(accel.cfg, pass_, B, N, M, double_buffer)
    src = Source(lay, X, W, dY)
    gather = getattr(accel, "run_pass_source", None) \
        if getattr(accel, "run_pass", None) is not None else None
    if gather is not None:   # the driver fills the source into its frames' lanes itself
        out = _checked_out(lay, accel, gather(lay.job_list, src, lay.in_index), "run_pass_source")
    else:
        out = run_jobs(accel, lay, src.array()[lay.in_index])
    res, dW = decode_pass(lay, out, accel.cfg.acc_w)
    return res, dW, lay
