"""A board prediction: seconds per training step on a real board, and where the time goes.

The array part is the model itself (cycles with the board's stream bandwidth: the DMA's HP
port throttles the core's 256-bit beats; DDR bandwidth on top); the host part adds, per job
of the driver, its register and DMA accesses and its Python work, and per byte the packing
and cache maintenance; then the host-side layers (pooling, BN, activations, SGD update).
The driver is synchronous (one job at a time, the host waits), so the parts add up.  Every
constant comes from ``data/board_<name>.json`` with its source; the ones marked ASSUMPTION
were not measured on a board and are the first to replace with a board run, which reports
the same quantities (cycles, busy, stalls, jobs, beats) through the core's counters.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .compare import compare
from .dataflows import parse_dataflow
from .profile import Array

DATA = Path(__file__).resolve().parent / "data"


@dataclasses.dataclass(frozen=True)
class Board:
    name: str
    values: dict      # key -> value
    sources: dict     # key -> source text

    @classmethod
    def load(cls, path: Path) -> "Board":
        d = json.loads(Path(path).read_text())
        vals = {k: v["value"] for k, v in d["values"].items()}
        srcs = {k: v["source"] for k, v in d["values"].items()}
        return cls(d["name"], vals, srcs)

    @property
    def array(self) -> tuple[int, int]:
        r, c = (int(x) for x in str(self.values["array"]).split("x"))
        return r, c

    @property
    def dataflow(self) -> str:
        return "intergrad" if self.values["dual_mac"] else "intergrad1"

    def system(self, arr: Array) -> Array:
        """``arr`` with the board's clock, stream (HP port) and DRAM bandwidth: the array
        streams from DRAM through the DMA (memory='stream')."""
        return dataclasses.replace(arr, bandwidth=float(self.values["hp_bytes_per_cycle"]),
                                   dram_bw=float(self.values["ddr_bytes_per_cycle"]),
                                   memory="stream", buffer_kb=None,
                                   clock_mhz=float(self.values["clock_mhz"]))


BOARDS = {"pynq-z2": Board.load(DATA / "board_pynq_z2.json")}


def predict(net, board: Board, batch: int, arr: Array | None = None, dataflows=None,
            energy=None, **kw) -> dict:
    """Seconds per training step of ``net`` on ``board`` for each design, split by cause."""
    arr = board.system(arr or Array(*board.array))
    dfs = dataflows or [board.dataflow, "wsos"]
    dfs = [d if not isinstance(d, str) else parse_dataflow(d) for d in dfs]
    kw.setdefault("mapping", "rtl")     # what the board's scheduler runs
    res = compare(net, dfs, arr, batch, energy, **kw)
    v = board.values
    f = v["clock_mhz"] * 1e6
    out = {"board": board, "array": arr, "batch": batch, "network": net.name, "designs": []}
    for r in res:
        t = r.totals()
        jobs = t["jobs"]
        busy = t["busy_cycles"] / f
        stall = t["stall_cycles"] / f
        mmio = jobs * (v["core_reg_writes_per_job"] + v["core_reg_reads_per_job"]
                       + v["dma_reg_accesses_per_job"]) * v["mmio_us"] * 1e-6
        py = jobs * v["job_python_us"] * 1e-6
        pack = t["stream_bytes"] * v["pack_ns_per_byte"] * 1e-9
        host = t["host_ops"] * v["host_ns_per_op"] * 1e-9
        parts = {"array busy": busy, "stream/DRAM stalls (HP port)": stall,
                 "register + DMA programming": mmio, "driver Python per job": py,
                 "packing + cache maintenance": pack, "host layers + SGD update": host}
        total = sum(parts.values())
        per_job = ((v["core_reg_writes_per_job"] + v["core_reg_reads_per_job"]
                    + v["dma_reg_accesses_per_job"]) * v["mmio_us"] + v["job_python_us"]) * 1e-6
        passes = {}
        for pn, d in r.passes.items():
            arr_s = float(d["cycles"].sum()) / f
            host_s = (float(d["jobs"].sum()) * per_job
                      + float(d["stream_bytes"].sum()) * v["pack_ns_per_byte"] * 1e-9)
            passes[pn] = {"array": arr_s, "host": host_s, "jobs": float(d["jobs"].sum())}
        out["designs"].append({
            "dataflow": r.dataflow.name, "seconds": total, "parts": parts,
            "passes": passes, "gops": 2 * t["macs"] / total / 1e9, "array_gops": 2 * t["macs"] / (busy + stall)
            / 1e9, "jobs": jobs, "cycles": t["cycles"], "busy_cycles": t["busy_cycles"],
            "stall_cycles": t["stall_cycles"], "in_beats": t["in_beats"],
            "out_beats": t["out_beats"], "macs": t["macs"], "stream_bytes": t["stream_bytes"]})
    return out


def prediction_text(p: dict) -> str:
    b, a = p["board"], p["array"]
    v = b.values
    L = [f"{b.name} prediction: {p['network']}, batch {p['batch']}, {a.size} array at "
         f"{v['clock_mhz']} MHz, stream {v['hp_bytes_per_cycle']} B/cycle per direction "
         f"(HP port), DDR {v['ddr_bytes_per_cycle']} B/cycle, the RTL scheduler's mapping"]
    for d in p["designs"]:
        L.append(f"  {d['dataflow']}: {d['seconds']:.4g} s per training step, "
                 f"{d['gops']:.3g} GOPS overall ({d['array_gops']:.3g} GOPS while the array "
                 f"runs), {d['jobs']:.0f} jobs")
        for k, s in sorted(d["parts"].items(), key=lambda x: -x[1]):
            L.append(f"      {k:32s} {s:10.4g} s  {s / d['seconds']:6.1%}")
        L.append("      per pass: " + "; ".join(
            f"{pn} {x['jobs']:.0f} jobs, array {x['array']:.3g} s + host {x['host']:.3g} s"
            for pn, x in d["passes"].items()))
        L.append(f"      counters to compare with a board run: cycles {d['cycles']:.0f}, busy "
                 f"{d['busy_cycles']:.0f}, stalls {d['stall_cycles']:.0f}, in beats "
                 f"{d['in_beats']:.0f}, out beats {d['out_beats']:.0f}, MACs {d['macs']:.0f}")
    L.append("  assumptions and sources:")
    for k in v:
        L.append(f"    {k} = {v[k]}: {b.sources[k]}")
    return "\n".join(L)
