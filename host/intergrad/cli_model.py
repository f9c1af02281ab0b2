"""``intergrad profile`` and ``intergrad sweep``: the analytical model from the command line.

    intergrad profile NETWORK|FILE.csv [--array RxC] [--batch B] [--dataflows ws,os,intergrad]
                      [--views pes,mults,area] [--mapping best|rtl] [--energy TABLE]
                      [--buffer-kb KB] [--dram-bw B/cycle] [--board pynq-z2]
                      [--csv OUT] [--plot OUT.png]
    intergrad sweep NETWORK|FILE.csv [--arrays 8x8,16x16,...] [--batches 1,8,32] [--jobs N]
                    [--executor local|ray] [--address RAY] [--verify N]
                    [--cache-dir DIR | --no-cache] [--csv OUT] [--plot OUT.png]

Every input is checked before any work starts; a bad one gives one line on stderr and exit
status 2.  Also ``python -m intergrad.cli_model profile ...``.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import os
import sys
import time
import types
from pathlib import Path

from . import spec, zoo
from .model import Array, compare, load_area, load_energy, parse_dataflow
from .model.compare import VIEWS, views
from .model.profile import OBJECTIVES
from .model.report import (plot_pareto, plot_profile, savings_table, totals_table,
                           views_table, write_layer_csv)
from .spec import parse_size
from .sweep import EXECUTORS, VERIFY_MAX_SIDE

DEFAULT_DATAFLOWS = "ws,os,intergrad"
MAX_SIDE = 4096


class UsageError(ValueError):
    """A bad command-line value (reported as one line, exit status 2)."""


def _one_line_error(self, message):
    """argparse's error, on one line: ``intergrad profile: error: ...``."""
    print(f"{self.prog}: error: {message}", file=sys.stderr)
    sys.exit(2)


def _array_size(text: str, what: str = "--array") -> tuple[int, int]:
    try:
        r, c = parse_size(text)
    except ValueError as e:
        raise UsageError(f"{what}: {e}") from None
    if not (1 <= r <= MAX_SIDE and 1 <= c <= MAX_SIDE):
        raise UsageError(f"{what}: array size {text} out of range: rows and columns must be "
                         f"1..{MAX_SIDE}")
    return r, c


def _positive_ints(text: str, what: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{what}: expected positive integers separated by commas, "
                         f"got {text!r}") from None
    if not vals or min(vals) < 1:
        raise UsageError(f"{what}: values must be >= 1, got {text!r}")
    return vals


def _positive(text: str, what: str, kind=int, low=1):
    try:
        v = kind(text)
    except ValueError:
        raise UsageError(f"{what}: expected {'an integer' if kind is int else 'a number'}, "
                         f"got {text!r}") from None
    if not v >= low or v != v:
        raise UsageError(f"{what}: must be >= {low}, got {text}")
    return v


def _out_path(path: str | None, what: str) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise UsageError(f"{what} {path}: is a folder, give a file name")
    if not parent.is_dir():
        raise UsageError(f"{what} {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{what} {path}: folder {parent} is not writable")
    return p


def _common(p: argparse.ArgumentParser) -> None:
    p.error = types.MethodType(_one_line_error, p)
    p.add_argument("network", help=f"zoo network ({', '.join(zoo.names())}) or a SCALE-Sim "
                                   "topology CSV (conv or GEMM form)")
    p.add_argument("--dataflows", default=DEFAULT_DATAFLOWS,
                   help="comma-separated designs: ws, os, wsos (WS fwd/dX + OS dW), "
                        "intergrad (dual-multiplier PE), intergrad1 (single multiplier), or a "
                        "per-pass mix like fwd=os/dx=ws/dw=os (default: %(default)s)")
    p.add_argument("--mapping", choices=("best", "rtl"), default="best",
                   help="best: every design, baselines included, uses the best "
                        "operand-to-array assignment per layer and pass; rtl: the RTL "
                        "scheduler's (what the hardware runs) (default: %(default)s)")
    p.add_argument("--objective", choices=OBJECTIVES, default="cycles",
                   help="what --mapping best minimizes (default: %(default)s)")
    p.add_argument("--iso-area", action="store_true",
                   help="the array size is that of the first dataflow; the others get the "
                        "largest array of their own PE that fits the same area "
                        "(default: off, same array size)")
    p.add_argument("--energy", default="eyeriss",
                   help="energy table: eyeriss, horowitz45 or a JSON file "
                        "(default: %(default)s)")
    p.add_argument("--area", default=None,
                   help="area table JSON (default: the yosys figures in "
                        "intergrad/model/data/area_yosys.json)")
    p.add_argument("--bandwidth", default=None, metavar="B/CYCLE",
                   help="stream bandwidth in bytes/cycle per direction (default: one beat "
                        "per cycle, no stalls)")
    p.add_argument("--memory", choices=("buffer", "stream"), default="buffer",
                   help="buffer: DRAM -> SRAM buffer -> array; stream: the array streams "
                        "from DRAM (this project's board) (default: %(default)s)")
    p.add_argument("--buffer-kb", default=None, metavar="KB",
                   help="on-chip SRAMs in KiB, one value for all or three: top,left,out "
                        "(top: the stream entering the columns, left: the one entering the "
                        "rows, out: partial sums); DRAM traffic then follows the tile "
                        "order's reuse (default: unbounded, compulsory traffic only)")
    p.add_argument("--no-sram-double-buffer", action="store_true",
                   help="the SRAM buffers are not double buffered (default: double "
                        "buffered, half of each buffer holds data in use)")
    p.add_argument("--dram-bw", default=None, metavar="B/CYCLE",
                   help="DRAM bandwidth in bytes per array cycle, reads and writes together: "
                        "traffic beyond it becomes stall cycles (default: unlimited)")
    p.add_argument("--conv-arith", choices=("scalesim", "exact"), default="scalesim",
                   help="output size of conv rows in a topology CSV: SCALE-Sim's "
                        "ceil((I-F+S)/S) or exact (I-F)//S+1 (default: %(default)s)")
    p.add_argument("--data-w", default=str(spec.DEFAULT_DATA_W),
                   help="input element width in bits (default: %(default)s)")
    p.add_argument("--acc-w", default=str(spec.DEFAULT_ACC_W),
                   help="accumulator width in bits (default: %(default)s)")
    p.add_argument("--no-double-buffer", action="store_true",
                   help="load every tile's weights in its own job, no preload "
                        "(default: preload, as the RTL)")
    p.add_argument("--fused-update", action="store_true",
                   help="InterGrad applies W -= lr*dW in the PEs (beyond the paper; not in "
                        "the RTL) (default: off)")
    p.add_argument("--skip-first-dx", action="store_true",
                   help="no dX for the first conv/fc layer (nothing needs it; intergrad.nn "
                        "skips it too) (default: off)")
    p.add_argument("--csv", metavar="OUT", help="write per-layer, per-pass results as CSV "
                                                "(default: none)")
    p.add_argument("--plot", metavar="OUT.png", help="write a figure (default: none)")


def add_subcommands(subparsers) -> None:
    p = subparsers.add_parser("profile", help="cycles, memory accesses and energy of one "
                              "training step on WS, OS and InterGrad arrays",
                              description="Analytical model of one training step.")
    _common(p)
    p.add_argument("--array", default=None, metavar="RxC",
                   help="array size (default: 32x32; with --board, the array that fits it)")
    p.add_argument("--batch", default="32", help="batch size (default: %(default)s)")
    p.add_argument("--views", default="pes,mults,area",
                   help="comparison views shown side by side, comma-separated: pes (equal "
                        "PE count), mults (equal multiplier count), area (equal area), or "
                        "none (default: %(default)s)")
    p.add_argument("--layers", action="store_true",
                   help="print the mapping chosen for every layer and pass (default: a "
                        "summary per pass)")
    p.add_argument("--board", choices=("pynq-z2",), default=None,
                   help="predict a training step on a board: its clock, array, port "
                        "bandwidth and host overheads (default: none)")
    p.set_defaults(func=cmd_profile)

    s = subparsers.add_parser("sweep", help="the model over array sizes and batches, in "
                              "parallel, with a CSV and a Pareto plot (energy vs cycles)",
                              description="Sweep the analytical model over array sizes and "
                                          "batches.")
    _common(s)
    s.add_argument("--arrays", default="8x8,16x16,32x32,64x64,128x128",
                   help="comma-separated RxC sizes (default: %(default)s)")
    s.add_argument("--batches", default="1,8,32,128",
                   help="comma-separated batch sizes (default: %(default)s)")
    s.add_argument("--jobs", default=None,
                   help="local: worker processes; ray: CPUs of the local instance it starts "
                        f"(ignored on a cluster) (default: all cores, {os.cpu_count() or 1} "
                        "here)")
    s.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: a process pool on this machine; ray: Ray tasks on a local "
                        "instance or a cluster (--address; pip install \"intergrad[ray]\"; "
                        "docs/cluster.md) (default: %(default)s)")
    s.add_argument("--address", default=None,
                   help="Ray cluster to run on, e.g. ray://head:10001 or head:6379 "
                        "(default: $RAY_ADDRESS, else a local instance)")
    s.add_argument("--verify", default="0", metavar="N",
                   help="re-run N of the (point, design) pairs on the simulated RTL by the "
                        "same workers (small layers of the network, arrays up to "
                        f"{VERIFY_MAX_SIDE}x{VERIFY_MAX_SIDE}, designs wsos/intergrad/"
                        "intergrad1) and flag any disagreement with the model "
                        "(exit status 1) (default: %(default)s)")
    s.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="results cached by a hash of the configuration and the model "
                        "version; an interrupted sweep resumes from it (default: "
                        "$INTERGRAD_CACHE/sweep, else ~/.cache/intergrad/sweep)")
    s.add_argument("--no-cache", action="store_true",
                   help="compute every point, read and write no cache (default: cached)")
    s.set_defaults(func=cmd_sweep)

    q = subparsers.add_parser("pipeline", help="pipelined multi-array training: the layers "
                              "split over K arrays (LayerPipe-like), K=1..4 against one "
                              "array of the same total PEs",
                              description="Pipelined multi-array training (model).")
    q.error = types.MethodType(_one_line_error, q)
    q.add_argument("network", help=f"zoo network ({', '.join(zoo.names())}) or a SCALE-Sim "
                                   "topology CSV")
    q.add_argument("--array", default="32x32", metavar="RxC",
                   help="the single array whose PEs the K arrays share (default: %(default)s)")
    q.add_argument("--batch", default="32", help="batch size (default: %(default)s)")
    q.add_argument("--stages", default="1,2,3,4",
                   help="numbers of arrays K, comma-separated (default: %(default)s)")
    q.add_argument("--dataflow", default="intergrad",
                   help="design of every array (default: %(default)s)")
    q.add_argument("--micro-batches", default=None,
                   help="micro-batches per step, must divide the batch (default: the largest "
                        "divisor of the batch up to 4K)")
    q.add_argument("--mapping", choices=("best", "rtl"), default="best",
                   help="operand-to-array assignment (default: %(default)s)")
    q.add_argument("--conv-arith", choices=("scalesim", "exact"), default="scalesim",
                   help="output sizes of conv rows in a topology CSV (default: %(default)s)")
    q.set_defaults(func=cmd_pipeline)


def _check(a, cmd: str) -> dict:
    """Every input of ``profile`` / ``sweep`` checked and parsed before any work starts."""
    v = {}
    v["csv"] = _out_path(a.csv, "--csv")
    v["plot"] = _out_path(a.plot, "--plot")
    if v["plot"] is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError("--plot needs matplotlib (pip install matplotlib)") from None
    v["data_w"] = _positive(a.data_w, "--data-w", low=2)
    v["acc_w"] = _positive(a.acc_w, "--acc-w", low=2)
    v["bandwidth"] = None if a.bandwidth is None else _positive(a.bandwidth, "--bandwidth",
                                                                float, 1e-9)
    v["dram_bw"] = None if a.dram_bw is None else _positive(a.dram_bw, "--dram-bw", float,
                                                            1e-9)
    v["buffer_kb"] = None
    if a.buffer_kb is not None:
        try:
            kb = [float(x) for x in a.buffer_kb.split(",")]
        except ValueError:
            raise UsageError(f"--buffer-kb: expected one or three numbers, got "
                             f"{a.buffer_kb!r}") from None
        if len(kb) not in (1, 3) or min(kb) <= 0:
            raise UsageError(f"--buffer-kb: expected one or three sizes > 0 KiB, got "
                             f"{a.buffer_kb!r}")
        v["buffer_kb"] = tuple(kb * 3 if len(kb) == 1 else kb)
    if cmd == "profile":
        v["batch"] = _positive(a.batch, "--batch")
        v["array"] = _array_size(a.array) if a.array else None
        vw = [x.strip() for x in a.views.split(",") if x.strip()]
        if vw == ["none"]:
            vw = []
        bad = [x for x in vw if x not in VIEWS]
        if bad:
            raise UsageError(f"--views: unknown view {bad[0]!r}; known: "
                             f"{', '.join(VIEWS)} or none")
        v["views"] = vw
    else:
        v["sizes"] = [_array_size(s, "--arrays") for s in a.arrays.split(",") if s.strip()]
        if not v["sizes"]:
            raise UsageError(f"--arrays: no array size in {a.arrays!r}")
        v["batches"] = _positive_ints(a.batches, "--batches")
        a.jobs_default = a.jobs is None
        v["jobs"] = (os.cpu_count() or 1) if a.jobs is None else _positive(a.jobs, "--jobs")
        if a.executor == "ray":
            try:
                import ray  # noqa: F401
            except ImportError:
                raise UsageError("--executor ray needs Ray: pip install \"intergrad[ray]\" "
                                 "(or pip install ray)") from None
    try:
        v["net"] = zoo.load(a.network, conv_arith=a.conv_arith)
        v["dfs"] = [parse_dataflow(d) for d in a.dataflows.split(",") if d.strip()]
        if not v["dfs"]:
            raise UsageError(f"--dataflows: no design in {a.dataflows!r}")
        v["energy"] = load_energy(a.energy)
        needs_area = a.iso_area or (cmd == "profile" and "area" in v["views"])
        v["area"] = load_area(a.area) if (needs_area or a.area) else None
    except KeyError as e:
        raise UsageError(e.args[0] if e.args else str(e)) from None
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise UsageError(str(e)) from None
    if v["area"] is not None and needs_area:
        for d in v["dfs"]:
            if d.pe not in v["area"]:
                raise UsageError(f"area table has no PE variant {d.pe!r} (for dataflow "
                                 f"{d.name}); has: {', '.join(v['area'])}")
    if cmd == "profile" and v["views"] and not any("ig" in d.modes for d in v["dfs"]):
        v["views"] = []   # nothing to compare InterGrad with: the totals table alone
    return v


def _array(a, v, rows, cols) -> Array:
    return Array(rows, cols, v["data_w"], v["acc_w"], not a.no_double_buffer, v["bandwidth"],
                 a.memory, buffer_kb=v["buffer_kb"],
                 sram_double_buffer=not a.no_sram_double_buffer, dram_bw=v["dram_bw"])


def _guard(cmd: str, fn, a) -> int:
    """Run a subcommand; any bad input is one line on stderr and exit status 2."""
    try:
        return fn(a)
    except BrokenPipeError:        # output piped into head & co.: stop quietly
        sys.stdout = open(os.devnull, "w")
        return 0
    except (UsageError, ValueError, KeyError, FileNotFoundError, OSError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"intergrad {cmd}: error: {' '.join(str(msg).split())}", file=sys.stderr)
        return 2


def cmd_pipeline(a) -> int:
    return _guard("pipeline", _pipeline, a)


def _pipeline(a) -> int:
    from .model.pipeline import SCHEDULES, pipeline

    size = _array_size(a.array)
    batch = _positive(a.batch, "--batch")
    Ks = _positive_ints(a.stages, "--stages")
    if max(Ks) > 64:
        raise UsageError(f"--stages: at most 64 arrays, got {max(Ks)}")
    mbs = None if a.micro_batches is None else _positive(a.micro_batches, "--micro-batches")
    if mbs is not None and batch % mbs:
        raise UsageError(f"--micro-batches: {mbs} does not divide the batch {batch}")
    try:
        net = zoo.load(a.network, conv_arith=a.conv_arith)
        df = parse_dataflow(a.dataflow)
    except KeyError as e:
        raise UsageError(e.args[0] if e.args else str(e)) from None
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise UsageError(str(e)) from None
    arr = Array(*size)
    print(f"{net.summary()}")
    print(f"{df.name}, batch {batch}, {arr.size} PEs shared by K arrays; mapping {a.mapping}")
    print("sync: GPipe-like, all forwards then all backwards, one weight version; async: "
          "1F1B steady state with weight stashing (PipeDream / LayerPipe style)\n")
    rows = [("K", "array each", "micro-b.", "schedule", "cycles/step", "vs K=1", "bubbles",
             "stage split (first layers)", "extra W copies", "act. stash [elems]")]
    base = None
    for K in Ks:
        for sched in SCHEDULES:
            p = pipeline(net, df, arr, batch, K, sched, mbs if K > 1 else None,
                         mapping=a.mapping)
            if base is None:
                base = p.step_cycles
            extra = sum(c * w for c, w in zip(p.extra_weight_copies, p.weights))
            rows.append((str(p.K), p.array.size, f"{p.micro_batches}x{p.micro_batch}", sched,
                         f"{p.step_cycles:.4g}", f"{base / p.step_cycles:.2f}x",
                         f"{p.bubble:.1%}", ",".join(net.gemm_layers[s].name
                                                     for s in p.starts)[:48],
                         f"{extra:.3g}", f"{sum(p.act_elems):.3g}"))
            if K == 1:
                break
    w = [max(len(r[j]) for r in rows) for j in range(len(rows[0]))]
    for i, r in enumerate(rows):
        print("  ".join(c.rjust(w[j]) if j not in (7,) else c.ljust(w[j])
                        for j, c in enumerate(r)))
        if i == 0:
            print("  ".join("-" * x for x in w))
    print("\n(vs K=1: speed-up over one array of all the PEs; cycles/step: one training "
          "step of the whole batch, steady state for async)")
    return 0


def cmd_profile(a) -> int:
    return _guard("profile", _profile, a)


def cmd_sweep(a) -> int:
    return _guard("sweep", _sweep, a)


def _profile(a) -> int:
    v = _check(a, "profile")
    board = None
    if a.board:
        from .model.board import BOARDS
        board = BOARDS[a.board]
    size = v["array"] or (board.array if board else (32, 32))
    arr = _array(a, v, *size)
    if board:
        arr = board.system(arr)
    net = v["net"]
    kw = dict(fused_update=a.fused_update, first_dx=not a.skip_first_dx, mapping=a.mapping,
              objective=a.objective)
    t0 = time.perf_counter()
    res = compare(net, v["dfs"], arr, v["batch"], v["energy"], a.iso_area, v["area"], **kw)
    vs = views(net, v["dfs"], arr, v["batch"], v["energy"], v["area"], v["views"], **kw) \
        if v["views"] else None
    dt = time.perf_counter() - t0
    print(f"{net.summary()}")
    print(f"batch {v['batch']}, memory={a.memory}"
          f"{', SRAM ' + '/'.join(f'{x:g}' for x in v['buffer_kb']) + ' KiB' if v['buffer_kb'] else ''}"
          f", energy table {v['energy'].name} ({v['energy'].unit}), "
          f"{'iso-area' if a.iso_area else 'same array size'}, mapping {a.mapping}"
          f"{' (' + a.objective + ')' if a.mapping == 'best' else ''}; modelled in "
          f"{dt * 1e3:.1f} ms\n")
    print(totals_table(res))
    print()
    print(savings_table(res))
    print("\nmapping per pass (layers using each operand-to-array assignment):")
    for r in res:
        for line in r.mapping_summary():
            print(f"  {r.dataflow.name:10s} {line}")
    if a.layers:
        print()
        for r in res:
            for p in r.passes:
                for name, m in zip(r.layers, r.mapping_names(p)):
                    print(f"  {r.dataflow.name:10s} {p:3s} {name:40s} {m}")
    if vs is not None:
        print()
        print(views_table(vs))
    if board:
        from .model.board import predict, prediction_text
        print()
        # what the board runs: its build's InterGrad schedule and the WS+OS baseline, with
        # the RTL scheduler's mapping
        print(prediction_text(predict(net, board, v["batch"], arr, None, v["energy"],
                                      fused_update=a.fused_update,
                                      first_dx=not a.skip_first_dx)))
    if v["csv"]:
        print(f"\nper-layer results: {write_layer_csv(res, v['csv'])}")
    if v["plot"]:
        print(f"figure: {plot_profile(res, v['plot'])}")
    return 0


def _sweep(a) -> int:
    from tqdm import tqdm

    from . import sweep as sw

    v = _check(a, "sweep")
    net, jobs = v["net"], v["jobs"]
    verify_n = _positive(a.verify, "--verify", low=0)
    cache = sw.ResultCache(a.cache_dir, enabled=not a.no_cache)
    cache.check_writable()
    kw = dict(energy=v["energy"], iso_area=a.iso_area, area=v["area"],
              fused_update=a.fused_update, first_dx=not a.skip_first_dx, mapping=a.mapping,
              objective=a.objective)
    version = sw.model_version()
    points = [dict(net=net, dataflows=v["dfs"], array=_array(a, v, r, c), batch=b,
                   requested=f"{r}x{c}", **kw)
              for (r, c), b in itertools.product(v["sizes"], v["batches"])]
    tasks = [{"kind": "point", "model_version": version, "args": p} for p in points]
    # the key covers the whole configuration; what all points share (the network's layers
    # above all) is digested once
    common = sw.digest({"net": net, "dataflows": v["dfs"], **kw})
    keys = [sw.config_key({"common": common, "array": p["array"], "batch": p["batch"],
                           "requested": p["requested"]}, version) for p in points]
    # the verification sample: small layers of the network on the simulated RTL, by the
    # same workers, in the same task list
    pairs, notes = sw.verify_sample(points, v["dfs"], verify_n) if verify_n else ([], [])
    gemm = [L for L in net.layers if L.is_gemm]
    if not gemm:
        pairs, notes = [], notes + ["--verify: the network has no conv/fc layer to run"]
    for j, (i, design) in enumerate(pairs):
        p = points[i]
        layer, b = sw.small_layer(gemm[(j * 7 + i) % len(gemm)], p["batch"])
        args = dict(layer=layer, batch=b, rows=p["array"].rows, cols=p["array"].cols,
                    data_w=p["array"].data_w, acc_w=p["array"].acc_w, design=design, seed=j)
        tasks.append({"kind": "verify", "model_version": version, "args": args})
        keys.append(sw.config_key({"verify": args, "rtl": sw.rtl_version()}, version))
    if a.executor == "ray" and a.jobs_default:
        jobs = None                         # a local Ray instance: all cores
    ex = sw.make_executor(a.executor, jobs, a.address)
    t0 = time.perf_counter()
    n_cached = 0
    bar = tqdm(total=len(tasks), desc="sweep", file=sys.stderr)

    def progress(i, r, cached):
        nonlocal n_cached
        n_cached += cached
        bar.update(1)

    try:
        results = sw.run_cached(ex, tasks, keys, cache, progress)
    except KeyboardInterrupt:
        bar.close()
        if cache.enabled:
            print(f"intergrad sweep: interrupted; completed points are cached in "
                  f"{cache.root} ({len(cache)} results there): run the same command again "
                  f"to resume", file=sys.stderr)
        else:
            print("intergrad sweep: interrupted (--no-cache: nothing kept)", file=sys.stderr)
        return 130
    finally:
        bar.close()
        ex.close()
    dt = time.perf_counter() - t0
    rows = [row for r in results[:len(points)] for row in r]
    checks = results[len(points):]
    print(f"{net.summary()}\n{len(points)} points x {len(v['dfs'])} dataflows"
          f"{f' + {len(checks)} RTL checks' if checks else ''} in {dt:.2f} s on "
          f"{ex.describe()}; {n_cached} of {len(tasks)} from the cache"
          f"{' (' + str(cache.root) + ')' if cache.enabled else ' (disabled)'}, model "
          f"{version}\n")
    hdr = ("dataflow", "array", "batch", "cycles/sample", "energy/sample", "util/mult",
           "util/PE")
    lines = [hdr] + [(r["dataflow"], r["array"], str(r["batch"]),
                      f"{r['cycles_per_sample']:.4g}", f"{r['energy_per_sample']:.4g}",
                      f"{r['utilization']:.1%}", f"{r['pe_utilization']:.1%}") for r in rows]
    w = [max(len(l[i]) for l in lines) for i in range(len(hdr))]
    for l in lines:
        print("  ".join(c.rjust(w[i]) for i, c in enumerate(l)))
    bad = 0
    if verify_n:
        print("\nRTL verification (small layers of the network on the simulated core, "
              "hardware counters vs the model):")
        for note in notes:
            print(f"  {note}")
        for (i, design), t, c in zip(pairs, tasks[len(points):], checks):
            p = points[i]
            what = (f"{design:10s} {p['requested']:>9s} batch {p['batch']:<4d} layer "
                    f"{c['layer']} batch {c['batch']}")
            if c["ok"]:
                print(f"  ok        {what}: {len(c['passes'])} passes agree "
                      f"({c['rtl_cycles']} busy cycles)")
            else:
                bad += 1
                print(f"  MISMATCH  {what}: " + "; ".join(c["mismatches"]))
        tags = {(points[i]["requested"], points[i]["batch"], d): c["ok"]
                for (i, d), c in zip(pairs, checks)}
        for row in rows:
            tag = tags.get((row["requested_array"], row["batch"], row["dataflow"]))
            row["rtl_check"] = "" if tag is None else ("ok" if tag else "MISMATCH")
    if v["csv"]:
        with open(v["csv"], "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=list(rows[0]))
            wr.writeheader()
            wr.writerows(rows)
        print(f"\nsweep results: {v['csv']}")
    if v["plot"]:
        title = (f"{net.name}: energy vs cycles per training sample "
                 f"({v['energy'].name} energy table{', iso-area' if a.iso_area else ''})")
        print(f"Pareto plot: {plot_pareto(rows, v['plot'], title)}")
    if bad:
        print(f"intergrad sweep: {bad} of {len(checks)} RTL checks disagree with the model",
              file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="intergrad", description="intergrad analytical model")
    ap.error = types.MethodType(_one_line_error, ap)
    sub = ap.add_subparsers(dest="cmd", required=True)
    add_subcommands(sub)
    a = ap.parse_args(argv)
    return a.func(a)


if __name__ == "__main__":
    sys.exit(main())
