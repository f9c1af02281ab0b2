"""Closed-form, vectorized counter totals of one GEMM pass tiled onto the array.

A pass is described by the extent of the array-resident operand (``rows_ext`` x ``cols_ext``),
the streamed length ``T`` (data beats per tile) and the job mode (a name of
:data:`intergrad.core.MODES`; its record says what the mode streams and computes).  The tiling
is the one of :mod:`intergrad.plan` (row-major tiles, batch chunks of at most
``core.MAX_BATCH`` beats,
weight preload double buffering), but summed in closed form over whole numpy arrays of
layers instead of job by job.  For the passes that :mod:`intergrad.plan` defines, the totals
equal ``plan_counters`` exactly (``tests/test_model.py`` checks this on random shapes, and
that one-job passes equal :func:`intergrad.core.expected_counters` on random jobs).

Derivation, per tile t (nr x nc tiles, edge tiles r_last x c_last):

* ``steps_t = L_t + T + (nch - 1) F + max(F + D_t, P_t)`` summed over the ``nch`` chunks
  of the tile (only the first chunk loads, only the last preloads and drains);
  ``P_t <= max(R, C) < F = R + C``, so the ``max`` is always ``F + D_t``; with double
  buffering ``D_t = 0`` for every tile but the last (it SAVEs; the next tile's first job
  drains the saved accumulators during its fill, DRAIN_PREV, at no step cost);
* every tile's weights enter exactly once: by LOAD_W in its own first job, or by PRELOAD in
  the previous tile's last job.  A preload is impossible only when the next tile is larger
  than the current one, which in row-major order happens at each row end when the last
  column tile is narrower than C (``nc > 1`` and ``c_last < C``): ``nr - 1`` times;
* a weight beat carries one row of S (``rows_act`` beats) or, with TRANSPOSE, one column
  (``cols_act`` beats); a preload uses the current tile's beat count (zero-padded).
"""
from __future__ import annotations

import numpy as np

from ..core import MAX_BATCH, MODES
#: counter names this module returns, as in intergrad.spec.COUNTERS
COUNTER_KEYS = ("steps", "busy_cycles", "macs", "in_beats", "wload_beats", "out_beats", "jobs")


def _cdiv(a, b):
    return -(-a // b)


def pass_counters(R: int, C: int, rows_ext, cols_ext, T, mode: str, *, wb_cols: bool = False,
                  dual_mac: int = 1, double_buffer: bool = True, max_batch: int = MAX_BATCH,
                  queued: bool = False) -> dict[str, np.ndarray]:
    """Counter totals of one pass (per group), vectorized over layers.

    ``rows_ext``, ``cols_ext``, ``T``: int arrays (or scalars) of the stationary / output
    tile extent on the array rows and columns and the streamed length.  ``wb_cols``: weight
    beats carry columns (TRANSPOSE, beat count = cols_act).  Returns int64 arrays keyed like
    the RTL counters (``busy_cycles`` stall-free) plus element counts used by the memory model:

    ``w_elems`` weights delivered, ``in_data_elems`` data-lane elements streamed in,
    ``out_elems`` result elements streamed out, ``psum_elems`` partial results of WS/IG
    tiles that must be added to an earlier partial (reduction split over column tiles),
    ``tiles`` (folds), ``load_steps`` (weight loading not hidden by a
    preload) and ``fill_drain_steps`` (flushes and drains): ``steps = load_steps + tiles * T +
    fill_drain_steps``.  ``queued``: the pass runs as job queues (CTRL.QUEUE): each job's
    header beat adds one input beat and one busy cycle (no step).
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    r = np.asarray(rows_ext, dtype=np.int64)
    c = np.asarray(cols_ext, dtype=np.int64)
    T = np.asarray(T, dtype=np.int64)
    if np.any(r < 1) or np.any(c < 1) or np.any(T < 1):
        raise ValueError("pass extents and stream length must be >= 1")
    F = R + C
    nr, nc = _cdiv(r, R), _cdiv(c, C)
    r_last, c_last = r - (nr - 1) * R, c - (nc - 1) * C
    tiles = nr * nc
    nch = _cdiv(T, max_batch)
    kind = MODES[mode]
    uses_w, drains = kind.uses_weights, kind.accumulates

    if uses_w:
        # wb_cols may be an array (one flag per layer): both beat directions, selected
        wbc = np.asarray(wb_cols, dtype=bool)
        total_wb = np.where(wbc, nr * c, nc * r)
        wb_first = np.where(wbc, np.minimum(C, c), np.minimum(R, r))
        wb_last_tile = np.where(wbc, c_last, r_last)
        if double_buffer:
            fail = (nc > 1) & (c_last != C)
            nf = np.where(fail, nr - 1, 0)
            # cols: tiles (i, nc-1), i < nr-1 -> tiles (i+1, 0), full width; rows: the
            # full-height rows i < nr-1 -> rows 1..nr-1
            wb_fail_src = np.where(wbc, nf * c_last, nf * R)
            wb_fail_dst = np.where(wbc, nf * C, np.where(nf > 0, r - R, 0))
            L = wb_first + wb_fail_dst
            P = total_wb - wb_last_tile - wb_fail_src
        else:
            L, P = total_wb, np.zeros_like(total_wb)
    else:
        L = P = np.zeros_like(tiles)
    D = nc * r if drains else np.zeros_like(tiles)   # drain beats (all leave on the stream)
    # with double buffering every tile but the last SAVEs its accumulators and the next
    # tile's first job drains them while it loads and fills (DRAIN_PREV): no steps; only
    # the last tile (rows r_last) drains at the end of its own job
    D_steps = (r_last if double_buffer else D) if drains else np.zeros_like(tiles)
    run = tiles * (T + nch * F)           # data beats plus flushes of all jobs
    steps = L + run + D_steps
    # a PE with one multiplier takes macs_per_pe cycles per step of the data and the flush
    slow = (kind.macs_per_pe - 1) * run if not dual_mac else np.zeros_like(run)
    data_out = tiles * T if kind.data_out else np.zeros_like(tiles)
    in_data = nr * T * c                   # top lanes: cols_act per beat
    if kind.left_data:
        in_data = in_data + nc * T * r     # left lanes: rows_act per beat
    out_elems = (nc * T * r if kind.data_out else 0) + (r * c if drains else 0)
    hdr = tiles * nch if queued else 0   # header beats, one per job
    return {
        "steps": steps,
        "busy_cycles": steps + slow + hdr,
        "macs": T * r * c * kind.macs_per_pe,
        "in_beats": L + P + tiles * T + hdr,
        "wload_beats": L + P,
        "out_beats": data_out + D,
        "jobs": tiles * nch,
        "w_elems": r * c if uses_w else np.zeros_like(tiles),
        "in_data_elems": in_data,
        "out_elems": np.asarray(out_elems, dtype=np.int64) + np.zeros_like(tiles),
        "psum_elems": (nc - 1) * T * r if uses_w else np.zeros_like(tiles),
        "tiles": tiles,
        "load_steps": L + np.zeros_like(tiles),   # weight-load steps not hidden by preload
        "fill_drain_steps": run - tiles * T + D_steps,  # fill/flush and exposed drain steps
    }
