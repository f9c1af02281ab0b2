"""Side by side: SCALE-Sim 3.0.0 and the intergrad model on the same forward layers.

Batch 1, forward pass only (what SCALE-Sim simulates), weight-stationary, the same square
array.  Prints per-layer cycles and SRAM accesses of both tools, the relative differences and
the wall-time ratio; the reasons for each difference are in docs/model.md ("SCALE-Sim").

    pip install scalesim==3.0.0     # needs numpy < 2.4
    python benchmarks/scalesim_compare.py [--array 32] [--layers 12] [--out results/...]
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import csv
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "host"))

from intergrad import zoo                                    # noqa: E402
from intergrad.model.counts import pass_counters             # noqa: E402
from intergrad.model.dataflows import layout                 # noqa: E402
from intergrad.zoo import Network, write_topology            # noqa: E402
from intergrad.model.report import emit  # noqa: E402

CFG = """[general]
run_name = intergrad_compare

[run_presets]
InterfaceBandwidth = CALC
UseRamulatorTrace = False

[architecture_presets]
ArrayHeight = {R}
ArrayWidth = {C}
IfmapSramSzkB = {KB}
FilterSramSzkB = {KB}
OfmapSramSzkB = {KB}
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Dataflow = ws
ReadRequestBuffer = 32
WriteRequestBuffer = 32
Bandwidth = 10

[layout]
IfmapCustomLayout = False
FilterCustomLayout = False
IfmapSRAMBankBandwidth = 10
IfmapSRAMBankNum = 10
IfmapSRAMBankPort = 2
FilterSRAMBankBandwidth = 10
FilterSRAMBankNum = 10
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = false
SparseRep = ellpack_block
OptimizedMapping = false
BlockSize = 8
RandomNumberGeneratorSeed = 40
"""


def pick_layers(n: int, max_cells: int) -> Network:
    """Ungrouped conv and fc layers of the zoo (SCALE-Sim has no groups) whose im2col operand
    (P x N) and weights (N x M) are at most ``max_cells`` elements each: SCALE-Sim builds full operand and trace
    matrices, so a large early layer takes it minutes and gigabytes."""
    picks, seen = [], set()
    for name in ("lenet5", "alexnet", "resnet50", "mobilenet_v2", "inception_v4", "vgg16"):
        for l in zoo.get(name).gemm_layers:
            key = (l.P, l.N, l.M)
            if (l.groups == 1 and l.P * l.N <= max_cells and l.N * l.M <= max_cells
                    and key not in seen):
                seen.add(key)
                picks.append(dataclasses.replace(l, name=f"{name}.{l.name}"))
    step = max(1, len(picks) // n)
    return Network("compare", picks[::step][:n])


def run_scalesim(net: Network, R: int, C: int, tmp: Path, kb: int = 1024):
    from scalesim.scale_sim import scalesim

    topo = write_topology(net, tmp / "topo.csv", "conv")
    lay = tmp / "layout.csv"
    lay.write_text("Layer name," + ",".join(["x"] * 20) + ",\n" + "".join(
        f"{l.name}," + ",".join(["1"] * 20) + ",\n" for l in net.gemm_layers))
    cfg = tmp / "scale.cfg"
    cfg.write_text(CFG.format(R=R, C=C, KB=kb))
    out = tmp / "out"
    out.mkdir()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        s = scalesim(save_disk_space=True, verbose=False, config=str(cfg), topology=str(topo),
                     layout=str(lay), input_type_gemm=False)
        s.run_scale(top_path=str(out))
    wall = time.perf_counter() - t0
    run = next(out.iterdir())
    comp = list(csv.reader((run / "COMPUTE_REPORT.csv").open()))[1:]
    acc = list(csv.reader((run / "DETAILED_ACCESS_REPORT.csv").open()))[1:]
    rows = []
    for c, a in zip(comp, acc):
        rows.append({"cycles": float(c[2]), "cycles_prefetch": float(c[1]),
                     "ifmap_reads": float(a[3]), "filter_reads": float(a[6]),
                     "ofmap_writes": float(a[9]), "dram_ifmap_reads": float(a[12]),
                     "dram_filter_reads": float(a[15]), "dram_ofmap_writes": float(a[18])})
    return rows, wall


def run_model(net: Network, R: int, C: int):
    A = net.arrays()
    t0 = time.perf_counter()
    r, c, T, wbc = layout("fwd", "WS", A["P"], A["N"], A["M"])
    k = pass_counters(R, C, r, c, T, "WS", wb_cols=wbc)
    wall = time.perf_counter() - t0
    return k, wall


def dram_section(n_layers: int, max_cells: int, R: int, sizes_kb) -> list[str]:
    """DRAM reads and writes of SCALE-Sim 3.0.0 and the buffer model at small SRAM sizes."""
    from intergrad.model.buffers import dram_elems

    net = pick_layers(n_layers, max_cells)
    A = net.arrays()
    out = [f"DRAM traffic, forward pass, batch 1, WS, {R}x{R}, 1-byte elements (SCALE-Sim's "
           "word size), each SRAM double buffered (half in use), model with the RTL mapping",
           ""]
    hdr = ("SRAM", "layer", "P x N x M", "SS ifmap rd", "model", "diff", "SS filter rd",
           "model", "diff", "SS ofmap wr", "model wr-thru", "diff", "model psum rd",
           "model wr")
    rows = [hdr]
    for kb in sizes_kb:
        with tempfile.TemporaryDirectory() as tmp:
            ss, _ = run_scalesim(net, R, R, Path(tmp), kb=kb)
        # forward WS as the RTL lays it: S = W^T (M x N), X streams (T = P), unique inputs
        x_unique = np.minimum(1.0, A["in_elems"] / (A["P"] * A["N"]))
        cap = kb * 1024 / 2
        m = dram_elems(R, R, A["M"], A["N"], A["P"], "WS", [cap] * 3, 1, 1,
                       {"top": x_unique})
        for i, (l, s) in enumerate(zip(net.gemm_layers, ss)):
            filt = float(l.N * l.M)
            ifm = float(m["read_data"][i]) - filt
            # SCALE-Sim's OFMAP SRAM is a write buffer: every fold's partial outputs go to
            # DRAM and none come back; the model's write-through equivalent is its stream
            # output elements (nc * P * M)
            wt = float(-(-l.N // R) * l.P * l.M)
            rows.append((f"{kb} KiB", l.name, f"{l.P}x{l.N}x{l.M}",
                         f"{s['dram_ifmap_reads']:.0f}", f"{ifm:.0f}",
                         f"{ifm / s['dram_ifmap_reads'] - 1:+.1%}",
                         f"{s['dram_filter_reads']:.0f}", f"{filt:.0f}",
                         f"{filt / s['dram_filter_reads'] - 1:+.1%}",
                         f"{s['dram_ofmap_writes']:.0f}", f"{wt:.0f}",
                         f"{wt / s['dram_ofmap_writes'] - 1:+.1%}",
                         f"{float(m['read_acc'][i]):.0f}",
                         f"{float(m['write_data'][i] + m['write_acc'][i]):.0f}"))
    w = [max(len(r[j]) for r in rows) for j in range(len(hdr))]
    out += ["  ".join(c.rjust(w[j]) if j > 1 else c.ljust(w[j]) for j, c in enumerate(r))
            for r in rows]
    out += ["",
            "ifmap/filter reads: SCALE-Sim's DRAM IFMAP / Filter Reads vs the model's reads of "
            "the streamed and the resident operand;",
            "ofmap: SCALE-Sim writes every fold's partial outputs to DRAM (never reads them "
            "back): compared with the model's write-through count;",
            "model psum rd / model wr: the buffer model's own partial-sum reads back and its "
            "writes (partials spill only when an output block does not fit)"]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--array", type=int, default=32, help="square array side (default 32)")
    ap.add_argument("--layers", type=int, default=12, help="number of layers (default 12)")
    ap.add_argument("--max-cells", type=int, default=200_000,
                    help="largest im2col operand P*N of a picked layer (default 200000)")
    ap.add_argument("--dram-kb", default="1,16",
                    help="SRAM sizes (KiB, each of IFMAP / filter / OFMAP) of the DRAM "
                         "comparison (default: %(default)s)")
    ap.add_argument("--dram-layers", type=int, default=8,
                    help="layers in the DRAM comparison (default: %(default)s)")
    ap.add_argument("--dram-array", type=int, default=8,
                    help="array side of the DRAM comparison (default: %(default)s)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/scalesim_compare.txt"),
                    help="where --write saves the report (default: %(default)s)")
    ap.add_argument("--write", action="store_true",
                    help="save the report to --out (default: print only)")
    a = ap.parse_args(argv)
    try:
        import scalesim  # noqa: F401
    except ImportError:
        print("SCALE-Sim is not installed: pip install scalesim==3.0.0", file=sys.stderr)
        return 1
    R = C = a.array
    net = pick_layers(a.layers, a.max_cells)
    with tempfile.TemporaryDirectory() as tmp:
        ss, ss_wall = run_scalesim(net, R, C, Path(tmp))
    k, m_wall = run_model(net, R, C)
    lines = [f"SCALE-Sim 3.0.0 vs intergrad model: forward pass, batch 1, WS, {R}x{C} array, "
             f"{len(net.gemm_layers)} layers", ""]
    hdr = ("layer", "P x N x M", "folds", "SS cycles", "model cyc", "diff", "model@SS",
           "SS SRAM rd", "model rd", "diff", "SS SRAM wr", "model wr", "diff")
    rows = [hdr]
    tot = dict.fromkeys(("sc", "mc", "sr", "mr", "sw", "mw", "ms"), 0.0)
    for i, (l, s) in enumerate(zip(net.gemm_layers, ss)):
        mc = float(k["busy_cycles"][i])
        mr = float(k["w_elems"][i] + k["in_data_elems"][i])
        mw = float(k["out_elems"][i])
        sr = s["ifmap_reads"] + s["filter_reads"]
        sw = s["ofmap_writes"]
        folds = int(k["tiles"][i])
        # the model's fold count with SCALE-Sim's per-fold cost T + 2R + C - 2, counted from
        # cycle 0 (hence the final - 1)
        ms = folds * (l.P + 2 * R + C - 2) - 1
        for key, v in zip(tot, (s["cycles"], mc, sr, mr, sw, mw, ms)):
            tot[key] += v
        rows.append((l.name, f"{l.P}x{l.N}x{l.M}", str(folds), f"{s['cycles']:.0f}",
                     f"{mc:.0f}", f"{mc / s['cycles'] - 1:+.1%}", f"{ms:.0f}",
                     f"{sr:.0f}", f"{mr:.0f}",
                     f"{mr / sr - 1:+.1%}", f"{sw:.0f}", f"{mw:.0f}", f"{mw / sw - 1:+.1%}"))
    rows.append(("TOTAL", "", "", f"{tot['sc']:.0f}", f"{tot['mc']:.0f}",
                 f"{tot['mc'] / tot['sc'] - 1:+.1%}", f"{tot['ms']:.0f}",
                 f"{tot['sr']:.0f}", f"{tot['mr']:.0f}",
                 f"{tot['mr'] / tot['sr'] - 1:+.1%}", f"{tot['sw']:.0f}", f"{tot['mw']:.0f}",
                 f"{tot['mw'] / tot['sw'] - 1:+.1%}"))
    w = [max(len(r[j]) for r in rows) for j in range(len(hdr))]
    lines += ["  ".join(c.rjust(w[j]) if j else c.ljust(w[j]) for j, c in enumerate(r))
              for r in rows]
    lines += ["", f"wall time: SCALE-Sim {ss_wall:.2f} s, model {m_wall * 1e3:.3f} ms "
                  f"(ratio {ss_wall / m_wall:.0f}x; per layer SCALE-Sim "
                  f"{ss_wall / len(ss) * 1e3:.0f} ms, model {m_wall / len(ss) * 1e6:.1f} us)",
              "cycles: SCALE-Sim 'Total Cycles' (without prefetch) vs model stall-free busy "
              "cycles; model@SS = the model's folds x SCALE-Sim's per-fold cost "
              "(T + 2R + C - 2) - 1;",
              "reads = IFMAP + filter SRAM reads; writes = OFMAP SRAM writes",
              "(see docs/model.md for why the numbers differ)"]
    lines += [""] + dram_section(a.dram_layers, a.max_cells, a.dram_array,
                                 [int(x) for x in a.dram_kb.split(",")])
    emit(lines, a.out if a.write else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
