"""The PYNQ-Z2 overlay (overlay/) against the RTL top and the spec, without Vivado.

Vivado is not available here, so the block design cannot be built; instead:

* the RTL top's real parameters and ports are read with pyverilog (``iverilog`` does its
  preprocessing, with ``hls_verilog/`` as include directory), and its AXI interfaces are
  inferred by prefix the way IP Integrator infers them for a module reference;
* ``overlay/intergrad_bd.tcl`` is parsed (regular expressions) into cells, properties and
  nets, and checked against them: every parameter it sets exists in the RTL and takes its
  value from the build parameters (no number written in the Tcl), every pin / interface
  of the core it names exists in the RTL, the DMA's stream widths are the build's, the
  core's reset is driven active-high;
* ``overlay/build.tcl`` is *run* in a real Tcl interpreter (Python's tkinter) with the
  Vivado commands replaced by recorders, with the arguments the Makefile passes: the same
  checks then run on the resolved values (8, 16, 256, ...), which must equal
  ``ArrayConfig``'s;
* mutated copies (a renamed pin, a literal parameter, the wrong reset, a renamed RTL port)
  show that the checks catch drift.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from intergrad import rtl as rtl_mod
from intergrad import spec
from intergrad.spec import ArrayConfig

ROOT = Path(__file__).resolve().parents[1]
OVERLAY = ROOT / "overlay"
HLS = ROOT / "hls_verilog"
BD_TCL = OVERLAY / "intergrad_bd.tcl"
BUILD_TCL = OVERLAY / "build.tcl"

CORE_CELL = "intergrad_0"
DMA_CELL = "axi_dma_0"
CORE_BASE = 0x43C0_0000
DMA_BASE = 0x4040_0000
VIVADO_VERSION = "2022.1"
DMA_LENGTH_BITS = 26

AXIS_SIGNALS = {"tdata": "data", "tvalid": "data", "tready": "resp", "tlast": "data"}
AXIL_SIGNALS = {
    "awaddr": "data", "awprot": "data", "awvalid": "data", "awready": "resp",
    "wdata": "data", "wstrb": "data", "wvalid": "data", "wready": "resp",
    "bresp": "resp", "bvalid": "resp", "bready": "data",
    "araddr": "data", "arprot": "data", "arvalid": "data", "arready": "resp",
    "rdata": "resp", "rresp": "resp", "rvalid": "resp", "rready": "data",
}


def _load_params():
    s = importlib.util.spec_from_file_location("overlay_params", OVERLAY / "params.py")
    mod = importlib.util.module_from_spec(s)
    s.loader.exec_module(mod)
    return mod


params_mod = _load_params()


# =========================================================================== RTL (pyverilog)

@dataclasses.dataclass
class RtlTop:
    name: str
    params: dict[str, int]
    ports: dict[str, str]            # name -> "input" / "output"
    widths: dict[str, object]        # name -> pyverilog Width node (None: 1 bit)
    text: str

    def width(self, port: str, **overrides: int) -> int:
        env = dict(self.params, **overrides)
        w = self.widths[port]
        if w is None:
            return 1
        return _eval(w.msb, env) - _eval(w.lsb, env) + 1

    # AXI interfaces as IP Integrator infers them: <prefix>_<signal>
    def interfaces(self) -> dict[str, str]:
        """{prefix: kind} for the complete AXI4-Stream / AXI4-Lite port groups."""
        found: dict[str, str] = {}
        for pfx in {p.rsplit("_", 1)[0] for p in self.ports if "_" in p}:
            sigs = {p[len(pfx) + 1:] for p in self.ports if p.startswith(pfx + "_")}
            if set(AXIS_SIGNALS) <= sigs:
                found[pfx] = "axis_slave" if self.ports[pfx + "_tdata"] == "input" else "axis_master"
            elif set(AXIL_SIGNALS) <= sigs:
                found[pfx] = "axil_slave" if self.ports[pfx + "_awaddr"] == "input" else "axil_master"
        return found

    def interface_problems(self) -> list[str]:
        """Port groups that look like an AXI interface but are incomplete or mis-directed."""
        problems = []
        for pfx, table in (("s_axis", AXIS_SIGNALS), ("m_axis", AXIS_SIGNALS),
                           ("s_axil", AXIL_SIGNALS)):
            slave = pfx.startswith("s_")
            for sig, role in table.items():
                port = f"{pfx}_{sig}"
                if port not in self.ports:
                    problems.append(f"RTL {self.name} has no {port} (needed for the {pfx} interface)")
                    continue
                want = "input" if (role == "data") == slave else "output"
                if self.ports[port] != want:
                    problems.append(f"RTL {port} is an {self.ports[port]}, expected {want}")
        return problems

    def plain_ports(self) -> set[str]:
        intfs = self.interfaces()
        return {p for p in self.ports if not any(p.startswith(i + "_") for i in intfs)}


def _eval(node, env: dict[str, int]) -> int:
    from pyverilog.vparser import ast as A
    ops = {A.Plus: lambda a, b: a + b, A.Minus: lambda a, b: a - b,
           A.Times: lambda a, b: a * b, A.Divide: lambda a, b: a // b,
           A.GreaterThan: lambda a, b: int(a > b), A.LessThan: lambda a, b: int(a < b),
           A.GreaterEq: lambda a, b: int(a >= b), A.LessEq: lambda a, b: int(a <= b),
           A.Eq: lambda a, b: int(a == b)}
    if isinstance(node, A.IntConst):
        v = node.value.replace("_", "")
        m = re.fullmatch(r"(?:\d*)'([sS]?)([dhbo])(\w+)", v)
        if m:
            return int(m.group(3), {"d": 10, "h": 16, "b": 2, "o": 8}[m.group(2).lower()])
        return int(v)
    if isinstance(node, A.Identifier):
        return env[node.name]
    if isinstance(node, A.Cond):
        return _eval(node.true_value if _eval(node.cond, env) else node.false_value, env)
    for cls, fn in ops.items():
        if type(node) is cls:
            return fn(_eval(node.left, env), _eval(node.right, env))
    raise ValueError(f"cannot evaluate {type(node).__name__} in a port width")


def read_rtl_top(top_file: Path, include_dir: Path, outdir: Path) -> RtlTop:
    if shutil.which("iverilog") is None:
        pytest.skip("iverilog not installed: pyverilog needs it to preprocess the RTL "
                    "(apt-get install iverilog)")
    pytest.importorskip("pyverilog", reason="pyverilog not installed (pip install pyverilog, "
                                            "in the dev extra)")
    from pyverilog.vparser import ast as A
    from pyverilog.vparser.parser import VerilogCodeParser

    outdir.mkdir(parents=True, exist_ok=True)
    parser = VerilogCodeParser([str(top_file)], preprocess_output=str(outdir / "pp.out"),
                               preprocess_include=[str(include_dir)], outputdir=str(outdir),
                               debug=False)
    tree = parser.parse()
    mods = [d for d in tree.description.definitions if isinstance(d, A.ModuleDef)]
    assert mods, f"no module in {top_file}"
    mod = mods[0]
    params = {}
    for decl in mod.paramlist.params:
        for p in decl.list:
            if isinstance(p, A.Parameter):
                params[p.name] = _eval(p.value.var, {})
    ports, widths = {}, {}
    for io in mod.portlist.ports:
        assert isinstance(io, A.Ioport), "the top's ports must be declared ANSI-style"
        d = io.first
        ports[d.name] = {A.Input: "input", A.Output: "output", A.Inout: "inout"}[type(d)]
        widths[d.name] = d.width
    return RtlTop(mod.name, params, ports, widths, top_file.read_text())


@pytest.fixture(scope="module")
def rtl(tmp_path_factory) -> RtlTop:
    return read_rtl_top(HLS / rtl_mod.SOURCES[0], HLS, tmp_path_factory.mktemp("pyverilog"))


# =========================================================================== the design model

@dataclasses.dataclass
class Design:
    cells: dict[str, dict] = dataclasses.field(default_factory=dict)   # name -> options
    props: dict[str, dict] = dataclasses.field(default_factory=dict)   # target -> {key: value}
    intf_nets: list = dataclasses.field(default_factory=list)          # [(pin, pin)]
    nets: list = dataclasses.field(default_factory=list)               # [set of pins]
    addrs: list = dataclasses.field(default_factory=list)              # [(offset, range, seg)]
    automation: list = dataclasses.field(default_factory=list)         # [config dict]

    def cfg(self, target: str) -> dict[str, str]:
        return self.props.get(target, {})

    def net_of(self, pin: str) -> set[str]:
        for n in self.nets:
            if pin in n:
                return n
        return set()


def _unbrace(v: str) -> str:
    v = v.strip()
    return v[1:-1] if v.startswith("{") and v.endswith("}") else v


def _tcl_words(body: str) -> list[str]:
    return [_unbrace(w) for w in re.findall(r"\{[^{}]*\}|[^\s{}]+", body)]


def _cell_options(words: list[str]) -> dict:
    opts = {"name": words[-1]}
    it = iter(words[:-1])
    for w in it:
        if w.startswith("-"):
            opts[w[1:]] = next(it)
    return opts


def parse_bd_tcl(text: str) -> Design:
    """The block design as written in the Tcl: values stay unresolved (``$param(ROWS)``)."""
    d = Design()
    lines = re.sub(r"\\\n", " ", text).splitlines()
    stmts = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    cellvar: dict[str, str] = {}
    pin = r"\[get_bd_(?:intf_)?pins\s+/?([\w/]+)\s*\]"
    for s in stmts:
        m = re.match(r"set\s+(\w+)\s+\[create_bd_cell\s+(.*)\]$", s)
        if m:
            opts = _cell_options(m.group(2).split())
            d.cells[opts["name"]] = opts
            cellvar[m.group(1)] = opts["name"]
            continue
        m = re.match(r"set_property\s+-dict\s+\[list\s+(.*?)\]\s+(\$\w+|" + pin + r")$", s)
        if m:
            target = cellvar.get(m.group(2)[1:], m.group(2)) if m.group(2).startswith("$") \
                else m.group(3)
            words = _tcl_words(m.group(1))
            d.props.setdefault(target, {}).update(zip(words[::2], words[1::2]))
            continue
        m = re.match(r"set_property\s+(CONFIG\.\w+)\s+(\{[^{}]*\}|\S+)\s+(\$\w+|" + pin + r")$", s)
        if m:
            target = cellvar.get(m.group(3)[1:], m.group(3)) if m.group(3).startswith("$") \
                else m.group(4)
            d.props.setdefault(target, {})[m.group(1)] = _unbrace(m.group(2))
            continue
        if s.startswith("connect_bd_intf_net"):
            pins = re.findall(pin, s)
            d.intf_nets.append(tuple(pins))
            continue
        if s.startswith("connect_bd_net"):
            d.nets.append(set(re.findall(pin, s)))
            continue
        m = re.match(r"assign_bd_address\s+-offset\s+(\S+)\s+-range\s+(\S+)\s+(.*)$", s)
        if m:
            d.addrs.append((m.group(1), m.group(2), m.group(3)))
            continue
        if s.startswith("apply_bd_automation"):
            d.automation.append(s)
    return d


# =========================================================================== the checks

def check_design(d: Design, rtl: RtlTop, expect: dict[str, str]) -> list[str]:
    """Problems of the block design ``d`` against the RTL top and the build values ``expect``
    (``{"ROWS": "$param(ROWS)"}`` for the Tcl text, ``{"ROWS": "8"}`` for a run)."""
    p: list[str] = []
    intfs = rtl.interfaces()
    plain = rtl.plain_ports()

    # -- the core cell and its parameters
    core = d.cells.get(CORE_CELL)
    if core is None:
        return [f"no cell named {CORE_CELL} (the Python driver looks it up by that name)"]
    if core.get("type") != "module" or core.get("reference") != rtl.name:
        p.append(f"{CORE_CELL} must be `create_bd_cell -type module -reference {rtl.name}`, "
                 f"is {core}")
    cfg = d.cfg(CORE_CELL)
    for key, val in cfg.items():
        name = key.removeprefix("CONFIG.")
        if name not in rtl.params:
            p.append(f"{CORE_CELL}: sets {key}, but {rtl.name} has no parameter {name} "
                     f"(has {', '.join(rtl.params)})")
        elif re.fullmatch(r"-?\d+", val) and not re.fullmatch(r"-?\d+", expect[name]):
            p.append(f"{CORE_CELL}: {key} is the literal {val}; it must come from the build "
                     f"parameters ({expect[name]})")
        elif val != expect[name]:
            p.append(f"{CORE_CELL}: {key} = {val}, expected {expect[name]}")
    for name in rtl.params:
        if f"CONFIG.{name}" not in cfg:
            p.append(f"{CORE_CELL}: parameter {name} is not set (the RTL default would be "
                     f"used, not the spec's)")

    # -- every pin / interface of the core that the design names exists in the RTL
    for a_b in d.intf_nets:
        for pin in a_b:
            if pin.startswith(CORE_CELL + "/") and pin.split("/", 1)[1] not in intfs:
                p.append(f"interface {pin} is connected, but {rtl.name} has no interface "
                         f"{pin.split('/', 1)[1]} (inferred from its ports: "
                         f"{', '.join(sorted(intfs))})")
    for net in d.nets:
        for pin in net:
            if pin.startswith(CORE_CELL + "/") and pin.split("/", 1)[1] not in plain:
                p.append(f"pin {pin} is connected, but {rtl.name} has no such port outside "
                         f"its AXI interfaces ({', '.join(sorted(plain))})")
    for target in d.props:
        if target.startswith(CORE_CELL + "/"):
            name = target.split("/", 1)[1]
            if name not in plain and name not in intfs:
                p.append(f"properties set on {target}, which {rtl.name} does not have")

    # -- every RTL interface and plain input is connected, the streams to the DMA
    for name in intfs:
        n = sum(f"{CORE_CELL}/{name}" in pair for pair in d.intf_nets)
        if n != 1:
            p.append(f"interface {CORE_CELL}/{name} is connected {n} times, expected once")
    for port in plain:
        if rtl.ports[port] == "input" and not d.net_of(f"{CORE_CELL}/{port}"):
            p.append(f"input {CORE_CELL}/{port} is not driven")
    for want in ((f"{DMA_CELL}/M_AXIS_MM2S", f"{CORE_CELL}/s_axis"),
                 (f"{CORE_CELL}/m_axis", f"{DMA_CELL}/S_AXIS_S2MM")):
        if want not in d.intf_nets and want[::-1] not in d.intf_nets:
            p.append(f"missing stream connection {want[0]} -> {want[1]}")
    if not any(f"{CORE_CELL}/s_axil" in pair and any("axi_periph/M" in x for x in pair)
               for pair in d.intf_nets):
        p.append(f"{CORE_CELL}/s_axil is not on the GP0 interconnect")
    if not any(f"{DMA_CELL}/S_AXI_LITE" in pair for pair in d.intf_nets):
        p.append(f"{DMA_CELL}/S_AXI_LITE is not connected")

    # -- the DMA
    dma = d.cells.get(DMA_CELL)
    if dma is None or "axi_dma" not in dma.get("vlnv", ""):
        p.append(f"no AXI DMA cell named {DMA_CELL}")
    dcfg = d.cfg(DMA_CELL)
    for key, want in (("c_include_sg", "0"), ("c_sg_length_width", str(DMA_LENGTH_BITS)),
                      ("c_include_mm2s", "1"), ("c_include_s2mm", "1"),
                      ("c_m_axis_mm2s_tdata_width", expect["IN_AXIS_BITS"]),
                      ("c_s_axis_s2mm_tdata_width", expect["OUT_AXIS_BITS"]),
                      ("c_m_axi_mm2s_data_width", expect["MM_DATA_W"]),
                      ("c_m_axi_s2mm_data_width", expect["MM_DATA_W"])):
        got = dcfg.get(f"CONFIG.{key}")
        if got != want:
            p.append(f"{DMA_CELL}: CONFIG.{key} = {got}, expected {want}")

    # -- reset: active high, from the reset block's active-high output
    rst_net = d.net_of(f"{CORE_CELL}/rst")
    if not any(x.endswith("/peripheral_reset") for x in rst_net):
        p.append(f"{CORE_CELL}/rst (active high) must be driven by a proc_sys_reset's "
                 f"peripheral_reset; its net is {sorted(rst_net)}")
    if any(x.lower().endswith(("resetn", "reset_n", "_n")) for x in rst_net):
        p.append(f"{CORE_CELL}/rst is on an active-low reset net: {sorted(rst_net)}")
    if d.cfg(f"{CORE_CELL}/rst").get("CONFIG.POLARITY") != "ACTIVE_HIGH":
        p.append(f"{CORE_CELL}/rst: CONFIG.POLARITY must be ACTIVE_HIGH")

    # -- one clock, FCLK_CLK0 at 100 MHz, for the core and the DMA
    clk_net = d.net_of(f"{CORE_CELL}/clk")
    for pin in ("ps7/FCLK_CLK0", f"{DMA_CELL}/s_axi_lite_aclk", f"{DMA_CELL}/m_axi_mm2s_aclk",
                f"{DMA_CELL}/m_axi_s2mm_aclk", "ps7/M_AXI_GP0_ACLK", "ps7/S_AXI_HP0_ACLK"):
        if pin not in clk_net:
            p.append(f"{pin} is not on the core's clock net")
    ccfg = d.cfg(f"{CORE_CELL}/clk")
    busif = set(ccfg.get("CONFIG.ASSOCIATED_BUSIF", "").split(":")) - {""}
    if busif != set(intfs):
        p.append(f"{CORE_CELL}/clk: ASSOCIATED_BUSIF {sorted(busif)} != the RTL's "
                 f"interfaces {sorted(intfs)}")
    if ccfg.get("CONFIG.ASSOCIATED_RESET") != "rst":
        p.append(f"{CORE_CELL}/clk: ASSOCIATED_RESET must be rst")
    ps = d.cfg("ps7")
    for key, want in (("PCW_FPGA0_PERIPHERAL_FREQMHZ", "100"), ("PCW_USE_M_AXI_GP0", "1"),
                      ("PCW_USE_S_AXI_HP0", "1"),
                      ("PCW_S_AXI_HP0_DATA_WIDTH", str(params_mod.HP0_DATA_W))):
        if ps.get(f"CONFIG.{key}") != want:
            p.append(f"ps7: CONFIG.{key} = {ps.get('CONFIG.' + key)}, expected {want}")

    # -- address map
    for what, base in ((f"{CORE_CELL}/s_axil", CORE_BASE), (f"{DMA_CELL}/S_AXI_LITE", DMA_BASE)):
        got = [int(off, 16) for off, _, seg in d.addrs if what in seg]
        if got != [base]:
            p.append(f"{what} at {[hex(g) for g in got]}, expected [{base:#x}]")
    return p


@pytest.fixture(scope="module")
def bd_text() -> str:
    return BD_TCL.read_text()


def symbolic_expect() -> dict[str, str]:
    return {k: f"$param({k})" for k in params_mod.KEYS}


def resolved_expect(cfg: ArrayConfig | None = None) -> dict[str, str]:
    return {k: str(v) for k, v in params_mod.overlay_params(cfg).items()}


# =========================================================================== RTL vs spec

def test_rtl_top_read_by_pyverilog(rtl):
    cfg = ArrayConfig()
    assert rtl.name == rtl_mod.TOP
    assert rtl.params == cfg.params(), "RTL parameter defaults differ from spec.ArrayConfig"
    assert rtl.interface_problems() == []
    assert rtl.interfaces() == {"s_axis": "axis_slave", "m_axis": "axis_master",
                                "s_axil": "axil_slave"}
    assert rtl.plain_ports() == {"clk", "rst"}
    assert "s_axis_tkeep" not in rtl.ports and "m_axis_tkeep" not in rtl.ports
    # the stream widths the DMA gets (from the spec) are the RTL's, for several builds
    for c in (cfg, ArrayConfig(4, 4), ArrayConfig(5, 3, 8, 20), ArrayConfig(16, 16)):
        env = {k: v for k, v in c.params().items()}
        assert rtl.width("s_axis_tdata", **env) == c.in_axis_bits
        assert rtl.width("m_axis_tdata", **env) == c.out_axis_bits
    assert rtl.width("s_axil_awaddr") == rtl.width("s_axil_araddr") == spec.ADDR_W
    assert rtl.width("s_axil_wdata") == 32


def test_rtl_reset_is_synchronous_active_high(rtl):
    assert rtl.ports["rst"] == "input"
    body = re.sub(r"//[^\n]*|/\*.*?\*/", "", rtl.text, flags=re.S)
    assert re.search(r"if\s*\(\s*rst\b", body), "the RTL no longer tests `if (rst ...`"
    assert not re.search(r"[!~]\s*rst\b", body), "the RTL uses rst inverted (active low?)"
    assert not re.search(r"(posedge|negedge)\s+rst\b", body), "rst became asynchronous"


# =========================================================================== Tcl text vs RTL

def test_bd_tcl_matches_rtl(bd_text, rtl):
    d = parse_bd_tcl(bd_text)
    assert d.cells, "the parser found no cells in intergrad_bd.tcl"
    assert check_design(d, rtl, symbolic_expect()) == []


def test_bd_tcl_has_no_build_numbers(bd_text):
    """Core parameters and stream widths come from params.py; nothing else is read."""
    used = set(re.findall(r"\$param\((\w+)\)", bd_text))
    assert used and used <= set(params_mod.KEYS), used - set(params_mod.KEYS)
    core = parse_bd_tcl(bd_text).cfg(CORE_CELL)
    assert core and all(v.startswith("$param(") for v in core.values()), core


def test_build_tcl_takes_what_params_py_gives():
    text = BUILD_TCL.read_text()
    m = re.search(r"set\s+required_keys\s+\{([^}]*)\}", text)
    assert m, "build.tcl: no `set required_keys {...}`"
    keys_py = [a.split("=", 1)[0] for a in params_mod.tcl_args()]
    assert m.group(1).split() == keys_py
    for f in (BUILD_TCL, BD_TCL, OVERLAY / "Makefile"):
        assert f"Vivado {VIVADO_VERSION}" in f.read_text(), f"{f.name}: Vivado version not stated"
    assert re.search(rf"set\s+vivado_version\s+{re.escape(VIVADO_VERSION)}\b", text)
    assert "xc7z020clg400-1" in text and "tul.com.tw:pynq-z2:part0" in text


def test_params_py_is_the_spec():
    cfg = ArrayConfig()
    p = params_mod.overlay_params()
    assert {k: p[k] for k in cfg.params()} == cfg.params()
    assert (p["IN_AXIS_BITS"], p["OUT_AXIS_BITS"]) == (cfg.in_axis_bits, cfg.out_axis_bits)
    assert p["MM_DATA_W"] >= max(p["IN_AXIS_BITS"], p["OUT_AXIS_BITS"], params_mod.HP0_DATA_W)
    args = params_mod.tcl_args()
    assert f"SOURCES={','.join(rtl_mod.SOURCES)}" in args
    assert f"INCLUDES={','.join(rtl_mod.INCLUDES)}" in args
    # a build whose stream width the AXI DMA cannot take is refused with a clear message
    with pytest.raises(ValueError, match="stream width"):
        params_mod.overlay_params(ArrayConfig(4, 6))
    out = subprocess.run([sys.executable, str(OVERLAY / "params.py"), "--rows", "4", "--cols",
                          "6"], capture_output=True, text=True)
    assert out.returncode != 0 and "IN_AXIS_BITS=160" in out.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
@pytest.mark.parametrize("over,cfg", [((), ArrayConfig()),
                                      (("ROWS=4", "COLS=4"), ArrayConfig(4, 4))])
def test_makefile_passes_the_spec_values(tmp_path, over, cfg):
    out = subprocess.run(["make", "-n", "-C", str(OVERLAY), f"PYTHON={sys.executable}",
                          f"BUILD_DIR={tmp_path / 'build'}", *over],
                         capture_output=True, text=True, check=True).stdout
    cmd = " ".join(out.replace("\\\n", " ").split())
    assert "vivado -mode batch" in cmd and "-source build.tcl" in cmd
    assert "-tclargs " + " ".join(params_mod.tcl_args(cfg)) in cmd
    assert "OUT_NAME=intergrad" in cmd


# =========================================================================== drift is caught

MUTATIONS = [
    # (description, old, new, expected fragment of a problem)
    ("renamed stream interface", f"{CORE_CELL}/s_axis]", f"{CORE_CELL}/s_axi_stream]",
     "s_axi_stream"),
    ("renamed clock pin", f"[get_bd_pins {CORE_CELL}/clk]\n", f"[get_bd_pins {CORE_CELL}/aclk]\n",
     "aclk"),
    ("literal parameter", "CONFIG.ROWS $param(ROWS)", "CONFIG.ROWS {8}", "literal"),
    ("unknown parameter", "CONFIG.DUAL_MAC $param(DUAL_MAC)", "CONFIG.DUAL_MACS $param(DUAL_MAC)",
     "no parameter DUAL_MACS"),
    ("swapped DMA widths", "CONFIG.c_m_axis_mm2s_tdata_width $param(IN_AXIS_BITS)",
     "CONFIG.c_m_axis_mm2s_tdata_width $param(OUT_AXIS_BITS)", "c_m_axis_mm2s_tdata_width"),
    ("active-low reset", "rst_ps7_100M/peripheral_reset]", "rst_ps7_100M/peripheral_aresetn]",
     "peripheral_reset"),
    ("reset polarity", "CONFIG.POLARITY {ACTIVE_HIGH}", "CONFIG.POLARITY {ACTIVE_LOW}",
     "POLARITY"),
    ("core address", "-offset 0x43C00000", "-offset 0x43C10000", "s_axil"),
]


@pytest.mark.parametrize("what,old,new,frag", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_mutated_tcl_is_caught(bd_text, rtl, what, old, new, frag):
    assert old in bd_text, f"mutation '{what}': {old!r} not in intergrad_bd.tcl"
    problems = check_design(parse_bd_tcl(bd_text.replace(old, new, 1)), rtl, symbolic_expect())
    assert problems, f"mutation '{what}' went unnoticed"
    assert any(frag in pr for pr in problems), problems


def test_mutated_rtl_is_caught(tmp_path, bd_text, rtl):
    """The other direction: the RTL changes (a port renamed, a parameter renamed) and the
    unchanged Tcl no longer fits."""
    src = rtl.text
    mutated = (src.replace("s_axil_arprot", "s_axil_arprot_x")
                  .replace("m_axis_tlast", "m_axis_last")
                  .replace("DUAL_MAC", "TWO_MACS"))
    assert mutated != src
    top = tmp_path / "intergrad_top.v"
    top.write_text(mutated)
    bad = read_rtl_top(top, HLS, tmp_path / "pv")
    problems = check_design(parse_bd_tcl(bd_text), bad, symbolic_expect())
    joined = "\n".join(problems + bad.interface_problems())
    assert "s_axil_arprot" in joined          # AXI-Lite set incomplete
    assert "m_axis" in joined                 # stream interface gone
    assert "DUAL_MAC" in joined               # parameter the Tcl sets no longer exists


# =========================================================================== running the Tcl

class VivadoStub:
    """The Vivado Tcl commands build.tcl / intergrad_bd.tcl use, as recorders, in a real Tcl
    interpreter: the scripts run as they would in `vivado -mode batch`, minus the tools."""

    COMMANDS = ("version create_project get_board_parts set_property current_project "
                "add_files get_files get_filesets update_compile_order create_bd_design "
                "current_bd_design create_bd_cell apply_bd_automation get_bd_pins "
                "get_bd_intf_pins connect_bd_intf_net connect_bd_net get_bd_addr_spaces "
                "get_bd_addr_segs assign_bd_address validate_bd_design save_bd_design "
                "generate_target make_wrapper launch_runs wait_on_run get_property get_runs "
                "open_run report_utilization report_timing_summary get_pins get_clocks").split()

    def __init__(self, workdir: Path, board: bool = False, wns: str = "0.250",
                 period: str = "10.000", whs: str = "0.020"):
        tkinter = pytest.importorskip("tkinter", reason="Python's tkinter (Tcl) not available")
        self.tcl = tkinter.Tcl()
        self.workdir = workdir
        self.board = board
        self.wns = wns
        self.period = period
        self.whs = whs
        self.calls: list[tuple] = []
        self.design = Design()
        self.rundir = workdir / "impl_1"
        self.rundir.mkdir(parents=True)
        (self.rundir / "intergrad_bd_wrapper.bit").write_bytes(b"bit")
        self.hwh = workdir / "intergrad_bd.hwh"
        self.hwh.write_text("<hwh/>")
        for name in self.COMMANDS:
            self.tcl.createcommand(name, self._make(name))
        self.tcl.createcommand("unknown", self._unknown)

    def _unknown(self, *args):
        raise RuntimeError(f"command not stubbed (not a Vivado command?): {args}")

    def _make(self, name):
        def cmd(*args):
            self.calls.append((name, args))
            return getattr(self, "do_" + name, lambda *a: "")(*args) or ""
        return cmd

    def split(self, s) -> list[str]:
        return list(self.tcl.splitlist(s))

    def do_version(self, *a):
        return VIVADO_VERSION

    def do_get_board_parts(self, *a):
        return "tul.com.tw:pynq-z2:part0:1.0" if self.board else ""

    def do_create_bd_cell(self, *a):
        opts = _cell_options(list(a))
        self.design.cells[opts["name"]] = opts
        return opts["name"]

    def do_get_bd_pins(self, *a):
        return a[-1].lstrip("/")

    do_get_bd_intf_pins = do_get_bd_pins
    do_get_bd_addr_spaces = do_get_bd_pins

    def do_get_bd_addr_segs(self, *a):
        return "segs(" + " ".join(a) + ")"

    def do_set_property(self, *a):
        target = a[-1]
        if a[0] == "-dict":
            words = self.split(a[1])
            self.design.props.setdefault(target, {}).update(zip(words[::2], words[1::2]))
        else:
            self.design.props.setdefault(target, {})[a[0]] = a[1]

    def do_connect_bd_intf_net(self, *a):
        self.design.intf_nets.append(tuple(x for x in a if not x.startswith("-")))

    def do_connect_bd_net(self, *a):
        self.design.nets.append({x for x in a if not x.startswith("-")})

    def do_assign_bd_address(self, *a):
        a = list(a)
        off = a[a.index("-offset") + 1] if "-offset" in a else ""
        rng = a[a.index("-range") + 1] if "-range" in a else ""
        self.design.addrs.append((off, rng, " ".join(a)))

    def do_apply_bd_automation(self, *a):
        cfg = self.split(a[a.index("-config") + 1])
        self.design.automation.append(dict(zip(cfg[::2], cfg[1::2])))

    def do_get_files(self, *a):
        if "-of_objects" in a:
            return str(self.hwh) if a[-1].endswith(".hwh") else ""
        return a[-1]

    def do_get_runs(self, *a):
        return a[-1]

    def do_make_wrapper(self, *a):
        return str(self.workdir / "intergrad_bd_wrapper.v")

    def do_get_property(self, *a):
        a = [x for x in a if x != "-quiet"]
        prop = a[0]
        return {"PROGRESS": "100%", "STATS.WNS": self.wns, "STATS.WHS": self.whs,
                "PERIOD": self.period, "DIRECTORY": str(self.rundir)}.get(prop, "")

    def do_get_pins(self, *a):
        return "intergrad_bd_i/intergrad_0/clk" if "-hierarchical" in a else a[-1].lstrip("/")

    def do_get_clocks(self, *a):
        return "clk_fpga_0"

    def run(self, script: Path, argv: list[str]) -> None:
        self.tcl.call("set", "argv", tuple(argv))
        self.tcl.call("set", "argc", len(argv))
        self.tcl.eval(f"source {{{script}}}")

    def called(self, name: str) -> list[tuple]:
        return [a for n, a in self.calls if n == name]


def _run_build(tmp_path, overlay_dir=OVERLAY, cfg=None, **kw) -> VivadoStub:
    stub = VivadoStub(tmp_path / "vivado", **kw)
    out = tmp_path / "out"
    stub.run(overlay_dir / "build.tcl",
             params_mod.tcl_args(cfg) + [f"BUILD_DIR={tmp_path / 'build'}", f"OUT_DIR={out}",
                                         "OUT_NAME=intergrad", "JOBS=2"])
    return stub


@pytest.mark.parametrize("cfg", [ArrayConfig(), ArrayConfig(4, 4)], ids=["8x8", "4x4"])
def test_build_tcl_runs_and_resolves_to_the_spec(tmp_path, rtl, cfg):
    stub = _run_build(tmp_path, cfg=cfg)
    d = stub.design
    assert check_design(d, rtl, resolved_expect(cfg)) == []
    core = d.cfg(CORE_CELL)
    assert {k.removeprefix("CONFIG."): int(v) for k, v in core.items()} == cfg.params()
    dma = d.cfg(DMA_CELL)
    assert int(dma["CONFIG.c_m_axis_mm2s_tdata_width"]) == cfg.in_axis_bits
    assert int(dma["CONFIG.c_s_axis_s2mm_tdata_width"]) == cfg.out_axis_bits
    # project: the part, the RTL sources and the include directory with the header
    assert any(a[-1] == "xc7z020clg400-1" for a in stub.called("create_project"))
    added = [Path(a[-1]) for a in stub.called("add_files")]
    for f in rtl_mod.all_rtl_files():
        assert f.resolve() in [x.resolve() for x in added], f"{f.name} not added"
    assert d.props[str(HLS / "intergrad_regs.vh")]["file_type"] == "Verilog Header"
    incl = [v for t, props in d.props.items() for k, v in props.items() if k == "include_dirs"]
    assert [Path(x).resolve() for x in incl] == [HLS.resolve()]
    # no board files here: the PS7 preset is applied by the script itself
    assert stub.design.automation[0]["apply_board_preset"] == "0"
    assert d.cfg("ps7")["CONFIG.PCW_UIPARAM_DDR_PARTNO"].startswith("MT41")
    # bitstream and hardware handoff side by side under one name
    out = tmp_path / "out"
    assert (out / "intergrad.bit").read_bytes() == b"bit"
    assert (out / "intergrad.hwh").read_text() == "<hwh/>"
    assert stub.called("launch_runs")[-1][:3] == ("impl_1", "-to_step", "write_bitstream")


def test_build_tcl_uses_board_files_when_installed(tmp_path):
    stub = _run_build(tmp_path, board=True)
    assert ("board_part", "tul.com.tw:pynq-z2:part0:1.0") == stub.called("set_property")[0][:2]
    assert stub.design.automation[0]["apply_board_preset"] == "1"
    assert "CONFIG.PCW_UIPARAM_DDR_PARTNO" not in stub.design.cfg("ps7")


def test_build_tcl_refuses_bad_input(tmp_path):
    stub = VivadoStub(tmp_path / "a")
    import tkinter
    args = [a for a in params_mod.tcl_args() if not a.startswith("ROWS=")]
    with pytest.raises(tkinter.TclError, match="ROWS=... missing"):
        stub.run(BUILD_TCL, args)
    with pytest.raises(tkinter.TclError, match="unknown key 'ROWZ'"):
        VivadoStub(tmp_path / "b").run(BUILD_TCL, params_mod.tcl_args() + ["ROWZ=3"])
    # timing not met: nothing is written unless STRICT_TIMING=0
    bad = VivadoStub(tmp_path / "c", wns="-0.4")
    with pytest.raises(tkinter.TclError, match="timing not met"):
        bad.run(BUILD_TCL, params_mod.tcl_args() + [f"OUT_DIR={tmp_path / 'o'}",
                                                     f"BUILD_DIR={tmp_path / 'bd'}"])
    assert not (tmp_path / "o" / "intergrad.bit").exists()


XDC = OVERLAY / "intergrad.xdc"


def _xdc_commands() -> list[str]:
    lines = [ln.split("#", 1)[0].strip() for ln in XDC.read_text().splitlines()]
    return [ln for ln in lines if ln]


def test_xdc_constrains_the_fabric_clock_of_the_block_design(tmp_path):
    """intergrad.xdc: one create_clock, on the PS7 cell's FCLKCLK[0] of this block design,
    at the period of the FCLK0 frequency intergrad_bd.tcl configures; no timing exception."""
    stub = _run_build(tmp_path)
    mhz = float(stub.design.cfg("ps7")["CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ"])
    assert mhz == 100.0
    cmds = _xdc_commands()
    clocks = [c for c in cmds if c.startswith("create_clock")]
    assert len(clocks) == 1, cmds
    m = re.search(r"-period\s+([\d.]+)", clocks[0])
    assert m and abs(float(m.group(1)) - 1000.0 / mhz) < 1e-6, clocks[0]
    assert "-name clk_fpga_0" in clocks[0]
    # the pin of the PS7 cell of the design build.tcl makes (<design>_i/<cell>/inst/PS7_i)
    design = stub.called("create_bd_design")[0][-1]
    assert f"{{{design}_i/ps7/inst/PS7_i/FCLKCLK[0]}}" in clocks[0]
    assert "ps7" in stub.design.cells
    assert not [c for c in cmds if c.split()[0] in ("set_multicycle_path", "set_false_path",
                                                   "set_max_delay", "set_clock_groups")]


def test_build_tcl_reads_the_xdc_late(tmp_path):
    stub = _run_build(tmp_path)
    added = [a for a in stub.called("add_files") if "constrs_1" in a]
    assert [Path(a[-1]).resolve() for a in added] == [XDC.resolve()]
    props = stub.design.props[str(XDC)]
    assert props["PROCESSING_ORDER"] == "LATE"
    assert "implementation" in props["USED_IN"]
    # the Makefile rebuilds when the constraints change
    assert "intergrad.xdc" in (OVERLAY / "Makefile").read_text().split("$(OUT).bit:")[1].split("\n")[0]


@pytest.mark.parametrize("kw, msg", [
    ({"period": "20.000"}, "not the 10 ns clk_fpga_0"),
    ({"wns": ""}, "no setup slack"),
    ({"wns": "-0.4"}, "setup timing not met"),
    ({"whs": "-0.05"}, "hold timing not met"),
])
def test_strict_timing_refuses_an_untimed_bitstream(tmp_path, kw, msg):
    import tkinter
    args = params_mod.tcl_args() + [f"OUT_DIR={tmp_path / 'o'}", f"BUILD_DIR={tmp_path / 'b'}"]
    with pytest.raises(tkinter.TclError, match=msg):
        VivadoStub(tmp_path / "s", **kw).run(BUILD_TCL, args)
    assert not (tmp_path / "o" / "intergrad.bit").exists()
    # STRICT_TIMING=0: written anyway, with the warning
    VivadoStub(tmp_path / "n", **kw).run(BUILD_TCL, args + ["STRICT_TIMING=0"])
    assert (tmp_path / "o" / "intergrad.bit").exists()


def test_fallback_ps7_preset_has_the_pynq_z2_ddr3l_part(tmp_path):
    """PYNQ-Z2: MT41K256M16 RE-125 (DDR3L, 1.35 V), not the 1.5 V MT41J256M16."""
    ps7 = _run_build(tmp_path).design.cfg("ps7")
    assert ps7["CONFIG.PCW_UIPARAM_DDR_PARTNO"] == "MT41K256M16 RE-125"
    assert ps7["CONFIG.PCW_UIPARAM_DDR_MEMORY_TYPE"] == "DDR 3 (Low Voltage)"
    assert ps7["CONFIG.PCW_UIPARAM_DDR_BUS_WIDTH"] == "16 Bit"


def test_running_a_mutated_tcl_is_caught(tmp_path, rtl, bd_text):
    ov = tmp_path / "overlay"
    ov.mkdir()
    shutil.copy(BUILD_TCL, ov / "build.tcl")
    (ov / "intergrad_bd.tcl").write_text(
        bd_text.replace(f"{CORE_CELL}/m_axis]", f"{CORE_CELL}/m_axis_out]"))
    stub = _run_build(tmp_path, overlay_dir=ov)
    problems = check_design(stub.design, rtl, resolved_expect())
    assert any("m_axis_out" in p for p in problems), problems


# =========================================================================== driver and docs

def test_driver_looks_up_these_cells(bd_text):
    pb = pytest.importorskip("intergrad.device.pynq_backend")
    d = parse_bd_tcl(bd_text)
    assert pb.CORE_CELL == CORE_CELL and pb.DMA_CELL == DMA_CELL
    assert pb.CORE_VLNV == f"xilinx.com:module_ref:{d.cells[CORE_CELL]['reference']}:1.0"
    assert pb.DMA_LENGTH_BITS == int(d.cfg(DMA_CELL)["CONFIG.c_sg_length_width"])


def test_docs_state_the_overlay_facts():
    doc = (ROOT / "docs" / "board.md").read_text()
    for fact in (CORE_CELL, DMA_CELL, "0x43C0_0000", "0x4040_0000", f"Vivado {VIVADO_VERSION}",
                 "intergrad.bit", "intergrad.hwh", "100 MHz", "xc7z020clg400-1"):
        assert fact in doc, f"docs/board.md does not mention {fact}"
