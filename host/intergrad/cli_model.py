"""``intergrad profile`` and ``intergrad sweep``: the analytical model from the command line.

    intergrad profile NETWORK|FILE.csv [--array RxC] [--batch B] [--dataflows ws,os,intergrad]
                      [--iso-area] [--energy TABLE] [--csv OUT] [--plot OUT.png]
    intergrad sweep NETWORK|FILE.csv [--arrays 8x8,16x16,...] [--batches 1,8,32] [--jobs N]
                    [--csv OUT] [--plot OUT.png]

Until it is wired into ``intergrad.cli``: ``python -m intergrad.cli_model profile ...``.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from . import zoo
from .model import Array, compare, load_area, load_energy, parse_dataflow
from .model.report import (plot_pareto, plot_profile, savings_table, totals_table,
                           write_layer_csv)

DEFAULT_DATAFLOWS = "ws,os,intergrad"


def _array_size(text: str) -> tuple[int, int]:
    try:
        r, c = (int(v) for v in text.lower().split("x"))
        if r < 1 or c < 1:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"array size must look like RxC (e.g. 32x32), "
                                         f"got {text!r}") from None
    return r, c


def _positive_ints(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
        if not vals or min(vals) < 1:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, "
                                         f"got {text!r}") from None
    return vals


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("network", help=f"zoo network ({', '.join(zoo.names())}) or a SCALE-Sim "
                                   "topology CSV (conv or GEMM form)")
    p.add_argument("--dataflows", default=DEFAULT_DATAFLOWS,
                   help="comma-separated designs: ws, os, wsos (WS fwd/dX + OS dW), "
                        "intergrad (dual-multiplier PE), intergrad1 (single multiplier), or a "
                        "per-pass mix like fwd=os/dx=ws/dw=os (default: %(default)s)")
    p.add_argument("--iso-area", action="store_true",
                   help="the array size is that of the first dataflow; the others get the "
                        "largest array of their own PE that fits the same area")
    p.add_argument("--energy", default=None,
                   help="energy table: eyeriss (default), horowitz45 or a JSON file")
    p.add_argument("--area", default=None, help="area table JSON (default: yosys figures)")
    p.add_argument("--bandwidth", type=float, default=None,
                   help="stream bandwidth in bytes/cycle per direction (default: one beat "
                        "per cycle, no stalls)")
    p.add_argument("--memory", choices=("buffer", "stream"), default="buffer",
                   help="buffer: DRAM -> SRAM buffer -> array (compulsory DRAM traffic); "
                        "stream: the array streams from DRAM (this project's board)")
    p.add_argument("--data-w", type=int, default=16, help="input element width (bits)")
    p.add_argument("--acc-w", type=int, default=32, help="accumulator width (bits)")
    p.add_argument("--no-double-buffer", action="store_true",
                   help="load every tile's weights in its own job (no preload)")
    p.add_argument("--fused-update", action="store_true",
                   help="InterGrad applies W -= lr*dW in the PEs (beyond the paper; not in "
                        "the RTL)")
    p.add_argument("--skip-first-dx", action="store_true",
                   help="no dX for the first conv/fc layer (nothing needs it; intergrad.nn "
                        "skips it too)")
    p.add_argument("--csv", metavar="OUT", help="write per-layer, per-pass results as CSV")
    p.add_argument("--plot", metavar="OUT.png", help="write a figure")


def add_subcommands(subparsers) -> None:
    p = subparsers.add_parser("profile", help="cycles, memory accesses and energy of one "
                              "training step on WS, OS and InterGrad arrays",
                              description="Analytical model of one training step.")
    _common(p)
    p.add_argument("--array", type=_array_size, default=(32, 32), metavar="RxC",
                   help="array size (default 32x32)")
    p.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    p.set_defaults(func=cmd_profile)

    s = subparsers.add_parser("sweep", help="the model over array sizes and batches, in "
                              "parallel, with a CSV and a Pareto plot (energy vs cycles)",
                              description="Sweep the analytical model over array sizes and "
                                          "batches.")
    _common(s)
    s.add_argument("--arrays", default="8x8,16x16,32x32,64x64,128x128",
                   help="comma-separated RxC sizes (default %(default)s)")
    s.add_argument("--batches", type=_positive_ints, default=[1, 8, 32, 128],
                   help="comma-separated batch sizes (default 1,8,32,128)")
    s.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="worker processes (default: all cores)")
    s.set_defaults(func=cmd_sweep)


def _load_inputs(a):
    net = zoo.load(a.network)
    dfs = [parse_dataflow(d) for d in a.dataflows.split(",") if d.strip()]
    energy = load_energy(a.energy)
    area = load_area(a.area) if a.iso_area else None
    return net, dfs, energy, area


def _array(a, rows, cols) -> Array:
    return Array(rows, cols, a.data_w, a.acc_w, not a.no_double_buffer, a.bandwidth, a.memory)


def cmd_profile(a) -> int:
    if a.batch < 1:
        raise ValueError(f"--batch must be >= 1, got {a.batch}")
    net, dfs, energy, area = _load_inputs(a)
    t0 = time.perf_counter()
    res = compare(net, dfs, _array(a, *a.array), a.batch, energy, a.iso_area, area,
                  a.fused_update, not a.skip_first_dx)
    dt = time.perf_counter() - t0
    print(f"{net.summary()}")
    print(f"batch {a.batch}, memory={a.memory}, energy table {energy.name} ({energy.unit}), "
          f"{'iso-area' if a.iso_area else 'same array size'}; modelled in {dt * 1e3:.1f} ms\n")
    print(totals_table(res))
    print()
    print(savings_table(res))
    if a.csv:
        print(f"\nper-layer results: {write_layer_csv(res, a.csv)}")
    if a.plot:
        print(f"figure: {plot_profile(res, a.plot)}")
    return 0


def _sweep_point(args):
    a, net, dfs, energy, area, (rows, cols), batch = args
    res = compare(net, dfs, _array(a, rows, cols), batch, energy, a.iso_area, area,
                  a.fused_update, not a.skip_first_dx)
    out = []
    for r in res:
        t = r.totals()
        out.append({"network": net.name, "dataflow": r.dataflow.name, "array": r.array.size,
                    "requested_array": f"{rows}x{cols}", "batch": batch,
                    "cycles": t["cycles"], "cycles_per_sample": t["cycles"] / batch,
                    "energy": t["energy"], "energy_per_sample": t["energy"] / batch,
                    "energy_unit": energy.unit, "utilization": t["utilization"],
                    "macs": t["macs"], "mem_accesses": t["mem_accesses"],
                    "dram_accesses": t["dram_reads"] + t["dram_writes"],
                    "buffer_accesses": t["buffer_reads"] + t["buffer_writes"],
                    "reg_accesses": t["reg_reads"] + t["reg_writes"],
                    "stream_bytes": t["stream_bytes"]})
    return out


def cmd_sweep(a) -> int:
    from tqdm import tqdm

    sizes = [_array_size(s) for s in a.arrays.split(",") if s.strip()]
    net, dfs, energy, area = _load_inputs(a)
    points = [(a, net, dfs, energy, area, s, b) for s, b in itertools.product(sizes, a.batches)]
    rows = []
    t0 = time.perf_counter()
    if a.jobs > 1 and len(points) > 1:
        with ProcessPoolExecutor(max_workers=a.jobs) as ex:
            for out in tqdm(ex.map(_sweep_point, points), total=len(points), desc="sweep",
                            file=sys.stderr):
                rows += out
    else:
        for pt in tqdm(points, desc="sweep", file=sys.stderr):
            rows += _sweep_point(pt)
    dt = time.perf_counter() - t0
    print(f"{net.summary()}\n{len(points)} points x {len(dfs)} dataflows in {dt:.2f} s "
          f"({a.jobs} worker{'s' if a.jobs > 1 else ''})\n")
    hdr = ("dataflow", "array", "batch", "cycles/sample", "energy/sample", "util")
    lines = [hdr] + [(r["dataflow"], r["array"], str(r["batch"]),
                      f"{r['cycles_per_sample']:.4g}", f"{r['energy_per_sample']:.4g}",
                      f"{r['utilization']:.1%}") for r in rows]
    w = [max(len(l[i]) for l in lines) for i in range(len(hdr))]
    for l in lines:
        print("  ".join(c.rjust(w[i]) for i, c in enumerate(l)))
    if a.csv:
        with open(a.csv, "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=list(rows[0]))
            wr.writeheader()
            wr.writerows(rows)
        print(f"\nsweep results: {a.csv}")
    if a.plot:
        title = (f"{net.name}: energy vs cycles per training sample "
                 f"({energy.name} energy table{', iso-area' if a.iso_area else ''})")
        print(f"Pareto plot: {plot_pareto(rows, a.plot, title)}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="intergrad", description="intergrad analytical model")
    sub = ap.add_subparsers(dest="command", required=True)
    add_subcommands(sub)
    a = ap.parse_args(argv)
    try:
        return a.func(a)
    except (KeyError, ValueError, FileNotFoundError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
