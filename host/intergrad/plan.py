"""How a GEMM pass maps onto jobs of the core: the one tiling the scheduler runs.  The
analytical model (:mod:`intergrad.model.counts`) counts the same tiling in closed form; the
tests check both give the same counters.

Fully-connected layer, batch B, N inputs, M outputs; X (B, N), W (N, M), dY (B, M).

=========  ======  ========================  ===============  =========================
pass       mode    stationary S (rows x cols) left lanes        top lanes / output
=========  ======  ========================  ===============  =========================
``fwd``    WS      W^T tile (m x n), loaded   --               X[:, n]   -> Y[:, m] part
                   with TRANSPOSE
``dx``     WS      W tile (n x m)             --               dY[:, m]  -> dX[:, n] part
``dw``     OS      acc (n x m)                X[:, n]          dY[:, m]  -> drain dW tile
``ig``     IG      W tile (n x m)             X[:, n]          dY[:, m]  -> dX part, dW
=========  ======  ========================  ===============  =========================

Partial outputs of WS/IG tiles along the reduction dimension are summed on the host (the
sum of ACC_W-wrapped partials, wrapped again, equals the wrapped exact sum).  A batch longer
than the BATCH register (``core.MAX_BATCH``) is split into chunks; OS/IG chunks of one tile keep
accumulating in the PEs and only the last one drains.  With ``double_buffer`` every job but
the last of a pass carries the next tile's weights (PRELOAD) and the next job SWAPs them in,
so weight loading overlaps the flush of the previous tile; and OS/IG tiles but the last SAVE
their accumulators, which the next tile's first job drains (DRAIN_PREV) while it loads and
fills the array, so a tile's drain costs no array steps either.
"""
from __future__ import annotations

import dataclasses

from .core import MAX_BATCH, MODES, CoreState, Job, jobs_counters
from .spec import ArrayConfig

#: pass -> mode of its jobs
PASS_MODE = {"fwd": "WS", "dx": "WS", "dw": "OS", "ig": "IG"}
PASSES = tuple(PASS_MODE)
SCHEDULES = {
    # backward-pass schedules; the forward pass is the same for both
    "baseline": ("dx", "dw"),
    "intergrad": ("ig",),
}


@dataclasses.dataclass(frozen=True)
class TileJob:
    """One job of a pass: which tile of which operands it touches."""

    pass_: str
    job: Job
    r0: int       # first array row's index in the row operand (m for fwd, n otherwise)
    c0: int       # first array column's index in the column operand (n for fwd, m otherwise)
    b0: int       # first batch row of this chunk
    next_tile: tuple[int, int] | None = None  # (r0, c0) of the preloaded weights, if PRELOAD
    prev_tile: tuple[int, int, int, int] | None = None  # (r0, c0, rows, cols) drained first


def pass_dims(pass_: str, N: int, M: int) -> tuple[int, int]:
    """(rows, cols) extent of the stationary operand of a pass."""
    if pass_ not in PASSES:
        raise ValueError(f"unknown pass {pass_!r}; known: {', '.join(PASSES)}")
    return (M, N) if pass_ == "fwd" else (N, M)


def plan_pass(cfg: ArrayConfig, pass_: str, B: int, N: int, M: int,
              double_buffer: bool = True) -> list[TileJob]:
    """Jobs of one GEMM pass of a B x N x M fully-connected layer, in execution order."""
    for name, v in (("B", B), ("N", N), ("M", M)):
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    rows, cols = pass_dims(pass_, N, M)
    R, C = cfg.rows, cfg.cols
    mode = PASS_MODE[pass_]
    uses_w, accumulates = MODES[mode].uses_weights, MODES[mode].accumulates
    tiles = [(r0, c0) for r0 in range(0, rows, R) for c0 in range(0, cols, C)]
    chunks = [(b0, min(MAX_BATCH, B - b0)) for b0 in range(0, B, MAX_BATCH)]
    out: list[TileJob] = []
    for ti, (r0, c0) in enumerate(tiles):
        ra, ca = min(R, rows - r0), min(C, cols - c0)
        nxt = tiles[ti + 1] if ti + 1 < len(tiles) else None
        for ci, (b0, bl) in enumerate(chunks):
            first, last = ci == 0, ci == len(chunks) - 1
            flags = set()
            if uses_w and first:
                flags.add("SWAP" if (double_buffer and ti > 0) else "LOAD_W")
            if uses_w and last and double_buffer and nxt is not None:
                nra, nca = min(R, rows - nxt[0]), min(C, cols - nxt[1])
                if nra <= ra and nca <= ca:  # the driver zero-pads it to this job's shape
                    flags.add("PRELOAD")
            if accumulates:
                if first:
                    flags.add("ACC_CLEAR")
                if last:
                    flags.add("SAVE" if (double_buffer and nxt is not None) else "DRAIN")
            if pass_ == "fwd" and flags & {"LOAD_W", "PRELOAD"}:
                flags.add("TRANSPOSE")
            out.append(TileJob(pass_, Job(mode, bl, ra, ca, frozenset(flags)), r0, c0, b0,
                               nxt if "PRELOAD" in flags else None))
    # a tile whose predecessor could not preload it (different edge shape) loads itself;
    # a tile that follows a SAVE drains the saved accumulators first
    fixed: list[TileJob] = []
    state = CoreState()
    saved: TileJob | None = None
    for tj in out:
        f = set(tj.job.flags)
        if "SWAP" in f and not state.preloaded:
            f.discard("SWAP")
            f.add("LOAD_W")
            if tj.pass_ == "fwd":
                f.add("TRANSPOSE")
        prev = None
        if state.saved:
            f.add("DRAIN_PREV")
            sj = saved.job
            prev = (saved.r0, saved.c0, sj.rows_act, sj.cols_act)
        j = tj.job
        nj = dataclasses.replace(tj, job=Job(j.mode, j.batch, j.rows_act, j.cols_act,
                                             frozenset(f), prev_rows=state.saved_rows),
                                 prev_tile=prev)
        state.apply(nj.job)
        if state.saved:
            saved = nj
        fixed.append(nj)
    return fixed


def plan_training_step(cfg: ArrayConfig, B: int, N: int, M: int, schedule: str = "intergrad",
                       double_buffer: bool = True, forward: bool = True) -> list[TileJob]:
    """Jobs of forward + backward of one FC layer under a backward schedule."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; known: {', '.join(SCHEDULES)}")
    jobs: list[TileJob] = []
    if forward:
        jobs += plan_pass(cfg, "fwd", B, N, M, double_buffer)
    for p in SCHEDULES[schedule]:
        jobs += plan_pass(cfg, p, B, N, M, double_buffer)
    return jobs


def plan_counters(cfg: ArrayConfig, jobs: list[TileJob], queued: bool = False) -> dict[str, int]:
    """Closed-form counter totals (stall-free busy cycles) of a job list (``queued``: sent as
    job queues, one header beat per job)."""
    return jobs_counters(cfg, (tj.job for tj in jobs), queued)
