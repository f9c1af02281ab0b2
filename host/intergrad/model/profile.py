"""Whole training step (forward, backward, weight update) of a network on one design:
cycles, accesses per memory level, MACs, utilization and energy, per layer and pass.

Everything is vectorized over the network's conv / fc layers (numpy int64 arrays), so a
whole zoo network profiles in milliseconds.  Levels (see docs/model.md):

* **stream**: the array's AXI-Stream beats and bytes (weights, data lanes, results), exactly
  as the RTL counts them;
* **buffer**: an on-chip SRAM buffer that feeds the array: every element entering the array
  is a read, every result leaving it a write, and partial sums of a reduction split over
  column tiles are read back once to be added;
* **dram**: off-chip traffic.  ``memory="buffer"`` (default): compulsory traffic, each
  operand tensor of a pass read once and each result written once (the buffer holds the
  reuse);  ``memory="stream"``: no buffer, the array streams from DRAM (this project's board,
  where the DMA reads DRAM directly): DRAM words = stream bytes;
* **reg**: PE register reads / writes per MAC (table ``REG_PER_MAC``), weight-bank writes and
  accumulator drain reads.

Energy = counts x an :class:`~intergrad.model.tables.EnergyTable`.  Words are ``word_bits``
wide: an ACC_W-bit partial sum costs ``acc_w / word_bits`` word accesses.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .buffers import dram_elems
from ..core import MAX_BATCH, MODES
from .counts import pass_counters
from .dataflows import CANDIDATES, MAPPINGS, Dataflow, candidates
from .tables import EnergyTable, load_energy

#: PE register (reads, writes) per MAC: WS reads S, v, p_in and writes p_out, v_out; OS reads
#: h, v, acc and writes acc, h_out, v_out; one InterGrad step (two MACs) reads S, v, h, p_in,
#: acc and writes p_out, acc, v_out, h_out: the shared dY operand is read and forwarded once.
REG_PER_MAC = {"WS": (3.0, 2.0), "OS": (3.0, 3.0), "IG": (2.5, 2.0)}
#: what the mapper minimizes per layer and pass (``mem_accesses``: buffer + DRAM words)
OBJECTIVES = ("cycles", "energy", "mem_accesses", "dram", "stream_bytes")
METRICS = ("cycles", "busy_cycles", "stall_cycles", "steps", "folds", "load_steps",
           "fill_drain_steps", "macs", "in_beats", "out_beats",
           "wload_beats", "jobs", "stream_bytes", "stream_elems", "buffer_reads",
           "buffer_writes", "dram_reads", "dram_writes", "reg_reads", "reg_writes",
           "host_ops", "energy_mac", "energy_reg", "energy_buffer", "energy_dram",
           "energy_host", "energy", "mult_slots", "pe_slots")


@dataclasses.dataclass(frozen=True)
class Array:
    """An array and its system: size, widths, double buffering, stream bandwidth, memory."""

    rows: int = 8
    cols: int = 8
    data_w: int = 16
    acc_w: int = 32
    double_buffer: bool = True
    bandwidth: float | None = None   # bytes/cycle per stream direction; None: one beat/cycle
    memory: str = "buffer"           # "buffer" or "stream" (see module doc)
    max_batch: int = MAX_BATCH
    #: the host sends each pass as job queues (CTRL.QUEUE, as intergrad.scheduler does where the
    #: build supports it): one header beat and one busy cycle per job on top
    queued: bool = False
    #: on-chip SRAM per operand in KiB (stationary / output, left stream, top stream);
    #: None: unbounded (compulsory DRAM traffic).  See intergrad.model.buffers.
    buffer_kb: tuple | None = None
    sram_double_buffer: bool = True  # half of each SRAM holds the data in use
    dram_bw: float | None = None     # DRAM bytes per array cycle (reads + writes); None: any
    clock_mhz: float = 100.0         # for seconds and GOPS only

    def __post_init__(self):
        if self.rows < 1 or self.cols < 1:
            raise ValueError(f"array size must be >= 1x1, got {self.rows}x{self.cols}")
        if self.memory not in ("buffer", "stream"):
            raise ValueError(f"memory must be 'buffer' or 'stream', got {self.memory!r}")
        if self.bandwidth is not None and self.bandwidth <= 0:
            raise ValueError("bandwidth must be > 0 bytes/cycle")
        if self.dram_bw is not None and self.dram_bw <= 0:
            raise ValueError("DRAM bandwidth must be > 0 bytes/cycle")
        if self.buffer_kb is not None:
            kb = tuple(self.buffer_kb)
            if len(kb) == 1:
                kb = kb * 3
            if len(kb) != 3 or min(kb) <= 0:
                raise ValueError(f"buffer_kb must be one or three sizes > 0 KiB, got "
                                 f"{self.buffer_kb!r}")
            object.__setattr__(self, "buffer_kb", kb)

    @property
    def in_beat_bytes(self) -> int:
        return ((self.rows + self.cols) * self.data_w + 7) // 8

    @property
    def out_beat_bytes(self) -> int:
        return (max(self.rows, self.cols) * self.acc_w + 7) // 8

    @property
    def size(self) -> str:
        return f"{self.rows}x{self.cols}"


@dataclasses.dataclass
class Result:
    """Profile of one network on one design: per-layer, per-pass metric arrays and totals."""

    network: str
    dataflow: Dataflow
    array: Array
    batch: int
    energy_table: EnergyTable
    layers: list           # GEMM layer names
    passes: dict           # pass -> {metric: int/float array over layers}
    host: dict             # host-side totals (pooling, BN, activations, SGD update)
    modes: dict = dataclasses.field(default_factory=dict)     # pass -> array mode
    mapping: dict = dataclasses.field(default_factory=dict)   # pass -> candidate index array
    mapping_policy: str = "rtl"
    objective: str = "cycles"

    def mapping_names(self, pass_: str) -> list[str]:
        """The operand-to-array assignment chosen for each layer in a pass."""
        from .dataflows import CANDIDATES
        names = [c[0] for c in CANDIDATES[(pass_, self.modes[pass_])]]
        return [names[i] for i in self.mapping[pass_]]

    def mapping_summary(self) -> list[str]:
        """One line per pass: how many layers use each assignment."""
        out = []
        for p in self.passes:
            counts = {}
            for n in self.mapping_names(p):
                counts[n] = counts.get(n, 0) + 1
            out.append(f"{p} ({self.modes[p]}): " + ", ".join(
                f"{n} x{k}" for n, k in sorted(counts.items(), key=lambda x: -x[1])))
        return out

    def total(self, metric: str) -> float:
        t = sum(float(p[metric].sum()) for p in self.passes.values())
        return t + float(self.host.get(metric, 0))

    def totals(self) -> dict[str, float]:
        t = {m: self.total(m) for m in METRICS}
        a = self.array
        t["pes"] = a.rows * a.cols
        t["multipliers"] = a.rows * a.cols * self.dataflow.mults_per_pe
        # per multiplier: MACs / (cycles x multipliers): a dual-multiplier PE outside an
        # InterGrad pass uses one of its two multipliers, so its forward pass shows <= 50 %;
        # per PE: MACs / (cycles x PEs x MACs a PE can do per cycle in the pass's mode)
        t["utilization"] = t["macs"] / max(1.0, t["mult_slots"])
        t["pe_utilization"] = t["macs"] / max(1.0, t["pe_slots"])
        t["mem_accesses"] = (t["buffer_reads"] + t["buffer_writes"] + t["dram_reads"]
                             + t["dram_writes"])
        t["stream_beats"] = t["in_beats"] + t["out_beats"]
        t["buffer_accesses"] = t["buffer_reads"] + t["buffer_writes"]
        t["dram_words"] = t["dram_reads"] + t["dram_writes"]
        return t

    def layer_rows(self):
        """Per-layer, per-pass rows (dicts) for CSV output."""
        for p, d in self.passes.items():
            for i, name in enumerate(self.layers):
                row = {"dataflow": self.dataflow.name, "array": self.array.size,
                       "batch": self.batch, "layer": name, "pass": p}
                row.update({m: d[m][i].item() for m in METRICS})
                row["mapping"] = self.mapping_names(p)[i] if p in self.mapping else ""
                row["utilization"] = (row["macs"] / row["mult_slots"] if row["mult_slots"]
                                      else 0.0)
                row["pe_utilization"] = (row["macs"] / row["pe_slots"] if row["pe_slots"]
                                         else 0.0)
                yield row
        row = {"dataflow": self.dataflow.name, "array": self.array.size, "batch": self.batch,
               "layer": "(host: pool/bn/act/add, SGD update)", "pass": "host"}
        row.update({m: self.host.get(m, 0) for m in METRICS})
        row["mapping"] = ""
        row["utilization"] = row["pe_utilization"] = 0.0
        yield row


def _dram_pass(pass_: str, X, Y, W) -> tuple:
    """Compulsory (reads, writes) in elements of one pass: X, Y activations, W weights."""
    return {"fwd": (X + W, Y), "dx": (Y + W, X), "dw": (X + Y, W),
            "ig": (X + Y + W, X + W)}[pass_]


def profile(net, dataflow: Dataflow, array: Array, batch: int,
            energy: EnergyTable | None = None, fused_update: bool = False,
            first_dx: bool = True, mapping: str = "rtl", objective: str = "cycles") -> Result:
    """Profile one training step of ``net`` (a :class:`intergrad.zoo.Network`) at ``batch``.

    ``first_dx=False`` skips dX of the first conv / fc layer (nothing consumes it), as
    ``intergrad.nn`` does: that layer's backward is its dW pass alone, which an InterGrad
    design runs in OS mode (as the scheduler does with ``need_dx=False``).

    ``mapping="rtl"``: every pass uses the operand-to-array assignment of the RTL scheduler
    (:mod:`intergrad.plan`); the counts then equal the hardware's.  ``mapping="best"``: per
    layer and pass, every assignment the hardware supports
    (:data:`~intergrad.model.dataflows.CANDIDATES`) is evaluated and the one with the lowest
    ``objective`` (one of :data:`OBJECTIVES`; ties go to the RTL's) is used;
    ``Result.mapping_names(pass)`` reports the choice."""
    if int(batch) != batch or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    if mapping not in MAPPINGS:
        raise ValueError(f"mapping must be one of {', '.join(MAPPINGS)}, got {mapping!r}")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, "
                         f"got {objective!r}")
    e = energy or load_energy()
    ctx = _Ctx(net.arrays(), array, batch, e, dataflow.dual_mac, dataflow.mults_per_pe)
    passes, maps, modes = {}, {}, {}
    for p, mode in dataflow.passes:
        passes[p], maps[p] = ctx.pass_metrics(p, mode, mapping, objective)
        modes[p] = mode
    if not first_dx:
        first = np.arange(len(ctx.G)) == 0
        for p in ("dx", "ig"):
            if p in passes:
                passes[p] = {k: np.where(first, 0, v) for k, v in passes[p].items()}
        if "ig" in passes:
            dw, dmap = ctx.pass_metrics("dw", "OS", mapping, objective)
            passes["dw"] = {k: np.where(first, v, 0) for k, v in dw.items()}
            maps["dw"], modes["dw"] = dmap, "OS"
    host = _host(net, batch, ctx.W.sum(), e, ctx.fd, fused_update and "ig" in dataflow.modes)
    names = [l.name for l in net.gemm_layers]
    return Result(net.name, dataflow, array, batch, e, names, passes, host, modes, maps,
                  mapping, objective)


def _objective(d: dict, objective: str) -> np.ndarray:
    if objective == "mem_accesses":
        return d["buffer_reads"] + d["buffer_writes"] + d["dram_reads"] + d["dram_writes"]
    if objective == "dram":
        return d["dram_reads"] + d["dram_writes"]
    return d[objective]


class _Ctx:
    """Per-network arrays shared by the passes of one profile."""

    def __init__(self, A: dict, array: Array, batch: int, e: EnergyTable, dual_mac: int,
                 mults: int = 1):
        self.G, self.N, self.M = A["G"], A["N"], A["M"]
        self.Bt = batch * A["P"]
        self.array, self.e, self.dual_mac, self.mults = array, e, dual_mac, mults
        self.fd = array.data_w / e.word_bits     # words per data element
        self.fa = array.acc_w / e.word_bits      # words per accumulator element
        self.X, self.Y, self.W = batch * A["in_elems"], batch * A["out_elems"], A["weights"]
        # unique input elements per im2col element (<= 1; 1 for fc and 1x1 stride-1 convs)
        self.x_unique = np.minimum(1.0, self.X / (self.G * self.Bt * self.N))

    def _scales(self, dims, k: int = 1) -> dict:
        """Per buffer role, unique tensor elements per matrix element of its operand: the
        X / dX operand (dims Bt and N) is an im2col matrix, the others are not."""
        if dims is None:
            return {}
        if isinstance(dims[0], str):
            dims = [dims]
        one = np.ones(len(self.G))
        out = {}
        for role in ("top", "left", "resident", "out", "drain"):
            parts = []
            for rn, cn, tn in dims:
                pair = {"top": {tn, cn}, "left": {tn, rn}, "resident": {rn, cn},
                        "out": {tn, rn}, "drain": {rn, cn}}[role]
                parts.append(self.x_unique if pair == {"Bt", "N"} else one)
            out[role] = np.concatenate(parts)
        return out

    def pass_metrics(self, p: str, mode: str, mapping: str = "rtl",
                     objective: str = "cycles") -> tuple[dict, np.ndarray]:
        """Counts of one pass of every layer (metric -> array over layers) and the index of
        the assignment used per layer (into ``candidates(p, mode)``).  All candidate layouts
        are evaluated in one vectorized call (layers x candidates)."""
        cands = candidates(p, mode, self.Bt, self.N, self.M)
        names = CANDIDATES[(p, mode)]
        if mapping == "rtl":
            cands = cands[:1]
        k, n = len(cands), len(self.G)
        cat = lambda j: np.concatenate([np.broadcast_to(np.asarray(x[j]), (n,)) for x in cands])
        wbc = np.concatenate([np.full(n, bool(x[4])) for x in cands])
        d = self._metrics(p, mode, cat(1), cat(2), cat(3), wbc,
                          [names[i][1:4] for i in range(k)], k)
        if k == 1:
            return d, np.zeros(n, dtype=np.int64)
        obj = _objective(d, objective).reshape(k, n)
        idx = np.argmin(obj, axis=0)          # first minimum: ties go to the RTL's layout
        sel = idx * n + np.arange(n)
        return {key: v[sel] for key, v in d.items()}, idx

    def _metrics(self, p: str, mode: str, r, c, T, wbc, dims=None, nk: int = 1) -> dict:
        """Counts of one pass of every layer in one layout, or in ``k`` layouts at once
        (``nk``: arrays of nk x layers, candidate-major); ``dims``: per layout the names (Bt / N / M)
        of rows, cols and stream, for the operand of each buffer role."""
        array, e, fd, fa = self.array, self.e, self.fd, self.fa
        G = np.tile(self.G, nk)
        n = len(G)
        k = pass_counters(array.rows, array.cols, r, c, T, mode, wb_cols=wbc,
                          dual_mac=self.dual_mac, double_buffer=array.double_buffer,
                          max_batch=array.max_batch, queued=array.queued)
        d = {key: G * k[key] for key in ("steps", "busy_cycles", "macs", "in_beats",
                                         "out_beats", "wload_beats", "jobs", "load_steps",
                                         "fill_drain_steps")}
        d["folds"] = G * k["tiles"]
        in_bytes = d["in_beats"] * array.in_beat_bytes
        out_bytes = d["out_beats"] * array.out_beat_bytes
        if array.bandwidth:
            bound = np.maximum(np.ceil(in_bytes / array.bandwidth),
                               np.ceil(out_bytes / array.bandwidth)).astype(np.int64)
            d["cycles"] = np.maximum(d["busy_cycles"], bound)
        else:
            d["cycles"] = d["busy_cycles"].copy()
        d["stall_cycles"] = d["cycles"] - d["busy_cycles"]
        d["stream_bytes"] = in_bytes + out_bytes
        in_el = G * (k["w_elems"] + k["in_data_elems"])
        out_el = G * k["out_elems"]
        psum = G * k["psum_elems"]
        d["stream_elems"] = in_el + out_el
        if array.memory == "buffer":
            d["buffer_reads"] = in_el * fd + psum * fa
            d["buffer_writes"] = out_el * fa
            if array.buffer_kb is None:
                rd, wr = _dram_pass(p, *(np.tile(v, nk) for v in (self.X, self.Y, self.W)))
                d["dram_reads"], d["dram_writes"] = rd * fd, wr * fd
            else:
                share = 0.5 if array.sram_double_buffer else 1.0
                dm = dram_elems(array.rows, array.cols, r, c, T, mode,
                                [kb * 1024 * share for kb in array.buffer_kb],
                                array.data_w / 8, array.acc_w / 8, self._scales(dims))
                d["dram_reads"] = G * (dm["read_data"] * fd + dm["read_acc"] * fa)
                d["dram_writes"] = G * (dm["write_data"] * fd + dm["write_acc"] * fa)
        else:
            d["buffer_reads"] = np.zeros(n)
            d["buffer_writes"] = np.zeros(n)
            d["dram_reads"] = in_bytes * 8 / e.word_bits
            d["dram_writes"] = out_bytes * 8 / e.word_bits
        if array.dram_bw:
            dram_bytes = (d["dram_reads"] + d["dram_writes"]) * e.word_bits / 8
            d["cycles"] = np.maximum(d["cycles"],
                                     np.ceil(dram_bytes / array.dram_bw).astype(np.int64))
            d["stall_cycles"] = d["cycles"] - d["busy_cycles"]
        rr, rw = REG_PER_MAC[mode]
        drain = G * r * c if MODES[mode].accumulates else 0
        d["reg_reads"] = d["macs"] * rr + drain * fa
        d["reg_writes"] = d["macs"] * rw + G * k["w_elems"]
        d["host_ops"] = np.zeros(n)
        pes = array.rows * array.cols
        d["mult_slots"] = d["cycles"] * pes * self.mults
        d["pe_slots"] = d["cycles"] * pes * (MODES[mode].macs_per_pe if self.dual_mac else 1)
        d["energy_mac"] = d["macs"] * e.mac
        d["energy_reg"] = (d["reg_reads"] + d["reg_writes"]) * e.reg
        d["energy_buffer"] = (d["buffer_reads"] + d["buffer_writes"]) * e.buffer
        d["energy_dram"] = (d["dram_reads"] + d["dram_writes"]) * e.dram
        d["energy_host"] = np.zeros(n)
        d["energy"] = d["energy_mac"] + d["energy_reg"] + d["energy_buffer"] + d["energy_dram"]
        return {key: np.broadcast_to(v, (n,)) if np.ndim(v) == 0 else v
                for key, v in d.items()}


def _host(net, batch, weights, e: EnergyTable, fd: float, fused: bool) -> dict:
    """Host-side work: pooling, BN, activations, residual adds (forward and backward) and the
    SGD update ``W -= lr * dW`` (reads W and dW, writes W; 2 ops per weight).  With a fused
    update (beyond the paper, not in the RTL) the PEs update W in place after an InterGrad
    pass: no host SGD traffic."""
    h = net.host_totals()
    ops = batch * (h["fwd_ops"] + h["bwd_ops"])
    reads, writes = batch * h["reads"], batch * h["writes"]
    if not fused:
        ops += 2 * weights
        reads += 2 * weights
        writes += weights
    out = {"host_ops": float(ops), "dram_reads": reads * fd, "dram_writes": writes * fd}
    out["energy_host"] = ops * e.host_op
    out["energy_dram"] = (out["dram_reads"] + out["dram_writes"]) * e.dram
    out["energy"] = out["energy_host"] + out["energy_dram"]
    return out
