"""Runs fully-connected and convolution layers' training passes on the core: the integer GEMM
engine (convolutions lowered by :mod:`intergrad.conv`).

GEMMs are tiled by :mod:`intergrad.plan` (the same job list the analytical model counts),
padded to the array and trimmed back; partial sums along the reduction dimension are added
on the host.  Every pass's hardware counters are read before and after it and kept as a
:class:`PassRecord` in a :class:`Report` (the reading before a pass is the one after the
previous pass when nothing touched the device in between).

Fixed point: inputs must be integers that fit DATA_W bits (OverflowError otherwise, naming
the operand); results are the exact products' sums wrapped to ACC_W bits, as the hardware
computes them (see :func:`intergrad.core.wrap`).
"""
from __future__ import annotations

import csv
import dataclasses
import io
import warnings

import numpy as np

from . import spec
from .conv import Im2col, conv2d_backward, conv2d_forward
from .core import MODES, check_fits, put_data, put_weights, wrap
from .driver import Accelerator
from .engine import BackwardResult
from .plan import PASS_MODE, SCHEDULES, pass_dims, plan_pass
from .stream import run_pass


@dataclasses.dataclass
class PassRecord:
    """Hardware counters of one pass of one layer."""

    layer: str
    pass_: str
    schedule: str
    jobs: int
    B: int
    N: int
    M: int
    counters: dict
    #: the pass ran as job queues (one header beat per job, counted in in_beats/busy_cycles)
    queued: bool = False

    def row(self) -> dict:
        d = {"layer": self.layer, "pass": self.pass_, "schedule": self.schedule,
             "jobs": self.jobs, "B": self.B, "N": self.N, "M": self.M}
        d.update(self.counters)
        return d


@dataclasses.dataclass
class Report:
    """The :class:`PassRecord` of every pass a scheduler ran, in order; a sequence (``len``,
    iteration, indexing) that converts to rows, CSV or a pandas DataFrame."""

    records: list[PassRecord] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    def __getitem__(self, i):
        return self.records[i]

    def append(self, rec: PassRecord) -> None:
        self.records.append(rec)

    def extend(self, recs) -> None:
        """Append records (another Report's, e.g. one per device of a parallel run)."""
        self.records.extend(recs)

    def clear(self) -> None:
        self.records.clear()

    def rows(self) -> list[dict]:
        return [r.row() for r in self]

    def to_csv(self, path=None) -> str:
        rows = self.rows()
        buf = io.StringIO()
        if rows:
            w = csv.DictWriter(buf, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        text = buf.getvalue()
        if path is not None:
            with open(path, "w", newline="") as f:
                f.write(text)
        return text

    def to_frame(self):
        """A pandas DataFrame, one row per pass."""
        import pandas as pd
        return pd.DataFrame(self.rows())

    to_pandas = to_frame

    def select(self, **match) -> "Report":
        """The records whose fields equal ``match`` (``pass`` names the pass field)."""
        return Report([r for r in self
                       if all(getattr(r, k if k != "pass" else "pass_") == v
                              for k, v in match.items())])

    def totals(self, **match) -> dict:
        """Counter sums over the records matching ``match`` (see :meth:`select`)."""
        tot: dict = {}
        for r in self.select(**match):
            for k, v in r.counters.items():
                tot[k] = tot.get(k, 0) + v
        return tot

    def by_layer_pass(self, cfg=None) -> list[dict]:
        """One row per (layer, pass) in order of first appearance: jobs and counter sums;
        with the array build ``cfg`` also the stream beats and the MAC utilization (% of the
        array's peak MACs over the busy cycles)."""
        agg: dict = {}
        for r in self:
            d = agg.setdefault((r.layer, r.pass_), {"layer": r.layer, "pass": r.pass_, "jobs": 0})
            d["jobs"] += r.jobs
            for k, v in r.counters.items():
                d[k] = d.get(k, 0) + v
        rows = list(agg.values())
        if cfg is not None:
            for d in rows:
                dual = 2 if cfg.dual_mac and d["pass"] == "ig" else 1
                d["beats"] = d["in_beats"] + d["out_beats"]
                d["MAC util"] = 100.0 * d["macs"] / max(cfg.rows * cfg.cols * d["busy_cycles"] * dual, 1)
        return rows

    def compare(self, intergrad: "Report", layers=None) -> "Comparison":
        """This report as the baseline against ``intergrad`` (the same work)."""
        return Comparison(self, intergrad, list(layers or sorted({r.layer for r in self})))


@dataclasses.dataclass
class Comparison:
    """Counters of the same work under the baseline and the InterGrad schedule."""

    baseline: Report
    intergrad: Report
    layers: list[str]

    def rows(self) -> list[dict]:
        """Busy cycles and stream beats (in + out) of both schedules and their ratio, per
        layer's backward pass, for all backward passes and for the whole step."""
        scopes = [(f"{l} backward", {"layer": l, "backward": True}) for l in self.layers] + \
                 [("all layers, backward", {"backward": True}), ("whole step (fwd+bwd)", {})]
        rows = []
        for scope, kw in scopes:
            b, i = _sums(self.baseline, **kw), _sums(self.intergrad, **kw)
            rows.append({"scope": scope,
                         "cycles base": b["busy_cycles"], "cycles IG": i["busy_cycles"],
                         "cycle ratio": b["busy_cycles"] / max(i["busy_cycles"], 1),
                         "beats base": b["beats"], "beats IG": i["beats"],
                         "beat ratio": b["beats"] / max(i["beats"], 1)})
        return rows

    def to_frame(self):
        import pandas as pd
        return pd.DataFrame(self.rows())


def _sums(rep: Report, layer=None, backward=None) -> dict:
    t = {"busy_cycles": 0, "beats": 0}
    for r in rep:
        if layer is not None and r.layer != layer:
            continue
        if backward is not None and (r.pass_ != "fwd") != backward:
            continue
        t["busy_cycles"] += r.counters["busy_cycles"]
        t["beats"] += r.counters["in_beats"] + r.counters["out_beats"]
    return t


_COUNTED = [n for n, _ in spec.COUNTERS if n != "cycles"]


class Scheduler:
    """Executes GEMM passes on an :class:`Accelerator` and records their counters: the
    integer :class:`~intergrad.engine.GemmEngine` (integer operands, ACC_W-wrapped results)."""

    name = "array"

    def __init__(self, accel: Accelerator, double_buffer: bool = True, record: bool = True):
        self.accel = accel
        self.cfg = accel.cfg
        self.double_buffer = double_buffer
        self.record = record
        self.report = Report()

    # -- checks ----------------------------------------------------------------------
    def _operand(self, a, name: str, layer: str, shape: tuple | None = None
                 ) -> tuple[np.ndarray, int]:
        """``a`` as int64, checked to fit DATA_W bits, 2-D and of ``shape`` (None: any), and
        its largest magnitude (for :meth:`_headroom`).  An integer array in range is used
        as it is (no copy); anything else gets :func:`~intergrad.core.check_fits`'s
        conversion and errors."""
        if isinstance(a, Im2col):   # unbuilt: the range of the entries it reads of x
            seen = a.read()
            if seen.dtype.kind in "iu" and seen.size:
                lo, hi = int(seen.min()), int(seen.max())
                if -(1 << (self.cfg.data_w - 1)) <= lo and hi < (1 << (self.cfg.data_w - 1)):
                    top = max(-lo, hi, 0)
                    if shape is not None and any(w is not None and g != w
                                                 for g, w in zip(a.shape, shape)):
                        a = np.asarray(a)    # the shape error below
                    else:
                        return a, top
        arr, top = np.asarray(a), None
        if arr.dtype.kind in "iu" and arr.size:
            lo, hi = int(arr.min()), int(arr.max())
            if -(1 << (self.cfg.data_w - 1)) <= lo and hi < (1 << (self.cfg.data_w - 1)):
                arr, top = arr.astype(np.int64, copy=False), max(-lo, hi)
        if top is None:
            try:
                arr = check_fits(a, self.cfg.data_w, f"{layer}: {name}")
            except (OverflowError, TypeError) as e:
                raise type(e)(str(e)) from None
            top = int(np.abs(arr).max(initial=0))
        if arr.ndim != 2:
            raise ValueError(f"{layer}: {name} must be 2-D, got shape {arr.shape}")
        if shape is not None:
            for i, (got, want) in enumerate(zip(arr.shape, shape)):
                if want is not None and got != want:
                    raise ValueError(f"{layer}: {name} has shape {arr.shape}, expected "
                                     f"{tuple('?' if s is None else s for s in shape)}")
        return arr, top

    def _headroom(self, a_top: int, b_top: int, k: int, layer: str, what: str) -> None:
        """Warn when |a|max*|b|max*K (the operands' largest magnitudes) may not fit ACC_W
        (a GEMM call with ``bounded=True`` skips this: its caller's exact bound rules
        wrap-around out, e.g. :class:`~intergrad.engine.DeviceEngine`'s)."""
        bound = a_top * b_top * k
        if bound >= (1 << (self.cfg.acc_w - 1)):
            warnings.warn(f"{layer}: {what} may exceed the {self.cfg.acc_w}-bit accumulator "
                          f"(|a|max*|b|max*K = {bound}); results wrap around", RuntimeWarning,
                          stacklevel=3)

    # -- passes --------------------------------------------------------------------------
    #: convolutions lowered as :class:`~intergrad.conv.Im2col` operands (their input lanes
    #: gathered from the image, :mod:`intergrad.stream`), not as built im2col matrices
    reads_im2col = True

    #: False: a pass's input beats are built and its output beats decoded whole, by numpy
    #: gathers (:mod:`intergrad.stream`); True: the per-job loop of :meth:`_run` (the same
    #: jobs and results; kept for comparison)
    per_job = False

    #: True: the counters before a pass are the snapshot after the previous pass when
    #: nothing ran on the device since (:meth:`Accelerator.counters` with ``reuse``;
    #: ``cycles`` is not among the counters a record keeps); False: always read
    reuse_counters = True

    def _counters_before(self) -> dict:
        return self.accel.counters(reuse=self.reuse_counters)

    def _run_whole(self, layer, pass_, schedule, B, N, M, X, W, dY):
        before = self._counters_before() if self.record else None
        q0 = getattr(self.accel, "queued_jobs", 0)
        res, dW, lay = run_pass(self.accel, pass_, B, N, M, X, W, dY, self.double_buffer)
        if self.record:
            after = self.accel.counters()
            delta = {k: after[k] - before[k] for k in _COUNTED}
            queued = getattr(self.accel, "queued_jobs", 0) - q0
            if queued not in (0, len(lay.jobs)):   # a plan pass ends with output: all or none
                raise RuntimeError(f"{layer} {pass_}: {queued} of {len(lay.jobs)} jobs queued")
            self.report.append(PassRecord(layer, pass_, schedule, len(lay.jobs), B, N, M, delta,
                                          queued=queued > 0))
        return res, dW

    def _run(self, layer: str, pass_: str, schedule: str, B: int, N: int, M: int,
             X=None, W=None, dY=None):
        """Run one pass; returns (out_rows_result, dW) as available."""
        if not self.per_job:
            return self._run_whole(layer, pass_, schedule, B, N, M, X, W, dY)
        cfg = self.cfg
        R = cfg.rows
        if isinstance(X, Im2col):   # this loop slices it
            X = np.asarray(X)
        jobs = plan_pass(cfg, pass_, B, N, M, self.double_buffer)
        before = self._counters_before() if self.record else None
        kind = MODES[PASS_MODE[pass_]]
        rows, cols = pass_dims(pass_, N, M)
        res = np.zeros((B, rows), dtype=np.int64) if kind.data_out else None
        dW = np.zeros((rows, cols), dtype=np.int64) if kind.accumulates else None
        for tj in jobs:
            j = tj.job
            ra, ca, bl, b0 = j.rows_act, j.cols_act, j.batch, tj.b0
            r0, c0 = tj.r0, tj.c0
            lanes = np.zeros((j.in_beats(), cfg.in_lanes), dtype=np.int64)
            pos = 0
            if j.has("LOAD_W"):
                S = self._stationary(pass_, W, r0, c0, ra, ca)
                L = j.load_beats()
                put_weights(cfg, lanes[pos:pos + L], S, j.has("TRANSPOSE"))
                pos += L
            top = (X if pass_ == "fwd" else dY)[b0:b0 + bl, c0:c0 + ca]
            left = X[b0:b0 + bl, r0:r0 + ra] if kind.left_data else None
            put_data(cfg, lanes[pos:pos + bl], left, top)
            pos += bl
            if j.has("PRELOAD"):
                nr0, nc0 = tj.next_tile
                nra, nca = min(R, rows - nr0), min(cfg.cols, cols - nc0)
                S = np.zeros((ra, ca), dtype=np.int64)
                S[:nra, :nca] = self._stationary(pass_, W, nr0, nc0, nra, nca)
                put_weights(cfg, lanes[pos:pos + j.preload_beats()], S, j.has("TRANSPOSE"))
            out = self.accel.run_job(j, lanes)
            if tj.prev_tile is not None:  # the previous tile's saved dW comes first
                pr0, pc0, pra, pca = tj.prev_tile
                dW[pr0:pr0 + pra, pc0:pc0 + pca] = out[:pra, :pca]
                out = out[pra:]
            if kind.data_out:
                res[b0:b0 + bl, r0:r0 + ra] += out[:bl, :ra]
            if j.has("DRAIN"):
                dW[r0:r0 + ra, c0:c0 + ca] = out[out.shape[0] - ra:, :ca]
        if res is not None:
            res = wrap(res, cfg.acc_w)
        if self.record:
            after = self.accel.counters()
            delta = {k: after[k] - before[k] for k in _COUNTED}
            self.report.append(PassRecord(layer, pass_, schedule, len(jobs), B, N, M, delta))
        return res, dW

    def _stationary(self, pass_, W, r0, c0, ra, ca) -> np.ndarray:
        if pass_ == "fwd":  # S = W^T: rows index M, cols index N
            return W[c0:c0 + ca, r0:r0 + ra].T
        return W[r0:r0 + ra, c0:c0 + ca]

    # -- public GEMM API (the GEMM-engine protocol, intergrad.engine.GemmEngine) ----------
    @property
    def acc_w(self) -> int:
        """Results are integers wrapped to this many bits (the hardware's ACC_W)."""
        return self.cfg.acc_w

    def fc_forward(self, X, W, layer: str = "fc", *, schedule: str = "-",
                   bounded: bool = False) -> np.ndarray:
        """Y = X W on the array (WS, weights loaded transposed).  X (B, N), W (N, M).
        ``bounded``: the caller bounded every accumulator exactly (no headroom warning)."""
        W, wt = self._operand(W, "W", layer)
        X, xt = self._operand(X, "X", layer, (None, W.shape[0]))
        if not bounded:
            self._headroom(xt, wt, W.shape[0], layer, "X W")
        B, N = X.shape
        M = W.shape[1]
        Y, _ = self._run(layer, "fwd", schedule, B, N, M, X=X, W=W)
        return Y

    def fc_backward(self, X, W, dY, layer: str = "fc", *, need_dx: bool = True,
                    schedule: str = "intergrad", bounded: bool = False) -> BackwardResult:
        """(dX, dW) of Y = X W given dY, as separate WS + OS passes ('baseline') or one
        InterGrad pass ('intergrad').  With ``need_dx=False`` (a first layer) both schedules
        run the OS pass alone and dX is None.  ``bounded``: as for :meth:`fc_forward`."""
        if schedule not in SCHEDULES:
            raise ValueError(f"{layer}: unknown schedule {schedule!r}; choose one of "
                             f"{', '.join(SCHEDULES)}")
        W, wt = self._operand(W, "W", layer)
        N, M = W.shape
        X, xt = self._operand(X, "X", layer, (None, N))
        B = X.shape[0]
        dY, dt = self._operand(dY, "dY", layer, (B, M))
        if not bounded:
            self._headroom(xt, dt, B, layer, "X^T dY")
            if need_dx:
                self._headroom(dt, wt, M, layer, "dY W^T")
        dX = None
        if not need_dx:  # only dW: one OS pass in either schedule
            _, dW = self._run(layer, "dw", schedule, B, N, M, X=X, dY=dY)
        elif schedule == "intergrad":
            dX, dW = self._run(layer, "ig", schedule, B, N, M, X=X, W=W, dY=dY)
        else:
            dX, _ = self._run(layer, "dx", schedule, B, N, M, W=W, dY=dY)
            _, dW = self._run(layer, "dw", schedule, B, N, M, X=X, dY=dY)
        return BackwardResult(dX, dW)

    def conv_forward(self, x, w, layer: str = "conv", *, stride: int = 1,
                     pad: int = 0, cols=None, bounded: bool = False) -> np.ndarray:
        """y = conv(x, w) on the array, lowered by :func:`intergrad.conv.conv2d_forward`
        (``cols``: im2col(x), if the caller computed it; ``bounded``: as for
        :meth:`fc_forward`)."""
        return conv2d_forward(self, x, w, stride, pad, layer=layer, cols=cols, bounded=bounded)

    def conv_backward(self, x, w, dy, layer: str = "conv", *, stride: int = 1, pad: int = 0,
                      need_dx: bool = True, schedule: str = "intergrad",
                      cols=None, bounded: bool = False) -> BackwardResult:
        """(dx, dw) of a convolution, lowered by :func:`intergrad.conv.conv2d_backward`
        (``cols``: im2col(x), if the caller computed it; ``bounded``: as for
        :meth:`fc_forward`)."""
        return BackwardResult(*conv2d_backward(self, x, w, dy, stride, pad, layer=layer,
                                               need_dx=need_dx, schedule=schedule, cols=cols,
                                               bounded=bounded))


def gemm_reference(a: np.ndarray, b: np.ndarray, acc_w: int) -> np.ndarray:
    """Golden result of any GEMM the scheduler runs: exact product, wrapped to ACC_W."""
    return wrap(np.asarray(a, dtype=np.int64) @ np.asarray(b, dtype=np.int64), acc_w)

