#!/usr/bin/env python3
"""Build parameters of the PYNQ-Z2 overlay, from the single source of truth.

The Makefile runs this to obtain the core's Verilog parameters (defaults from
``host/intergrad/spec.py``: ``ArrayConfig``), the AXI DMA stream widths derived from them
(``ArrayConfig.in_axis_bits`` / ``out_axis_bits``) and the RTL file list
(``intergrad.rtl``), and passes them to Vivado as ``-tclargs KEY=VALUE ...``;
``build.tcl`` and ``intergrad_bd.tcl`` take the build's values from nothing else.

    python3 params.py                      # KEY=VALUE per line (default build)
    python3 params.py --rows 4 --cols 4    # another build
    python3 params.py --tclargs            # one line, as the Makefile passes it
    python3 params.py --deps               # RTL files, for make's dependencies

Only the standard library is needed (``intergrad.spec`` imports nothing else), so this
runs on a Vivado workstation from a plain checkout, without installing the package.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HOST = Path(__file__).resolve().parents[1] / "host"
if str(HOST) not in sys.path:
    sys.path.insert(0, str(HOST))

from intergrad import rtl  # noqa: E402
from intergrad.spec import ArrayConfig  # noqa: E402

#: tdata widths the AXI DMA (PG021) offers for its streams
DMA_STREAM_WIDTHS = (8, 16, 32, 64, 128, 256, 512, 1024)
#: data width of the Zynq-7000 HP0 port as configured in the block design
HP0_DATA_W = 64
#: order of the keys on the Vivado command line
KEYS = ("ROWS", "COLS", "DATA_W", "ACC_W", "DUAL_MAC", "IN_AXIS_BITS", "OUT_AXIS_BITS",
        "MM_DATA_W")


def overlay_params(cfg: ArrayConfig | None = None) -> dict[str, int]:
    """Everything the block design needs for the build ``cfg`` (default: spec's defaults).

    ``MM_DATA_W`` is the AXI DMA's memory-map data width: PG021 requires it to be at least
    the stream width, so it is the wider of the two streams (and at least HP0's 64 bits);
    the AXI interconnect in front of HP0 converts it down to HP0's 64 bits.
    """
    cfg = cfg or ArrayConfig()
    p = dict(cfg.params())
    p["IN_AXIS_BITS"] = cfg.in_axis_bits
    p["OUT_AXIS_BITS"] = cfg.out_axis_bits
    for key in ("IN_AXIS_BITS", "OUT_AXIS_BITS"):
        if p[key] not in DMA_STREAM_WIDTHS:
            raise ValueError(
                f"{key}={p[key]} for a {cfg.rows}x{cfg.cols} array with DATA_W={cfg.data_w}, "
                f"ACC_W={cfg.acc_w}: the AXI DMA's stream width must be one of "
                f"{', '.join(map(str, DMA_STREAM_WIDTHS))}; choose a build whose "
                f"(ROWS+COLS)*DATA_W and max(ROWS,COLS)*ACC_W are such widths")
    p["MM_DATA_W"] = max(HP0_DATA_W, p["IN_AXIS_BITS"], p["OUT_AXIS_BITS"])
    assert tuple(p) == KEYS
    return p


def tcl_args(cfg: ArrayConfig | None = None) -> list[str]:
    """``KEY=VALUE`` arguments for ``vivado -tclargs``: the parameters, the RTL sources and
    the include file (``intergrad.rtl``, relative to ``hls_verilog/``)."""
    pairs = [f"{k}={v}" for k, v in overlay_params(cfg).items()]
    pairs.append("SOURCES=" + ",".join(rtl.SOURCES))
    pairs.append("INCLUDES=" + ",".join(rtl.INCLUDES))
    return pairs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = ArrayConfig()
    ap.add_argument("--rows", type=int, default=d.rows)
    ap.add_argument("--cols", type=int, default=d.cols)
    ap.add_argument("--data-w", type=int, default=d.data_w)
    ap.add_argument("--acc-w", type=int, default=d.acc_w)
    ap.add_argument("--dual-mac", type=int, default=d.dual_mac)
    ap.add_argument("--tclargs", action="store_true",
                    help="print KEY=VALUE pairs on one line (for vivado -tclargs)")
    ap.add_argument("--deps", action="store_true",
                    help="print the RTL files the bitstream depends on (for make)")
    a = ap.parse_args(argv)
    if a.deps:
        print(" ".join(str(f) for f in rtl.all_rtl_files()))
        return 0
    try:
        pairs = tcl_args(ArrayConfig(a.rows, a.cols, a.data_w, a.acc_w, a.dual_mac))
    except ValueError as e:
        print(f"params.py: {e}", file=sys.stderr)
        return 2
    print(" ".join(pairs) if a.tclargs else "\n".join(pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
