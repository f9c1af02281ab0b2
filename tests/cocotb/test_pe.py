"""Module testbench of intergrad_pe against a Python reference of one PE.

Run through pytest (tests/test_rtl_modules.py), which builds intergrad_pe with the
parameters in MOD_PARAMS (JSON: DATA_W, ACC_W, DUAL_MAC, ROW, COL).  Every cycle the
inputs are drawn at random (per phase: WS, OS, InterGrad, time-shared single MAC, fully
random controls), and every registered output is compared with the reference after the
clock edge.  The reference is written from the PE's documented behaviour:

    on adv:     p_out <= p_in + w_op * v_in (DUAL_MAC=1), p_in + (psum_on ? a * v_in : 0)
                (DUAL_MAC=0); v_out <= v_in, h_out <= h_in
    on w_upd:   w_op <= (psum_on && w_row_en) ? a : 0 (DUAL_MAC=1: the psum multiplier's
                registered weight operand, zero in a row outside the tile; w_clr clears it)
    on acc_go:  acc <= acc + b * v_in       (acc_clear wins)
    on acc_save: acc_saved <= acc
    weights:    w_we with w_row_en and w_col_en (the PE's row and column are in the active
                tile) and the PE's lane index loads
                bank w_bank from w_top (or, transposed, from w_left when w_idx is the PE's
                column); w_clr clears both banks
    clr:        clears v_out and h_out (wins over adv)

with a = the active weight bank (wsel) and b = h_in for DUAL_MAC=1; for DUAL_MAC=0 one
multiplier takes (mul_h ? h_in : weight) for both terms.  Products are signed DATA_W x
DATA_W, sign-extended to ACC_W, sums wrap modulo 2^ACC_W.
"""
from __future__ import annotations

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

P = json.loads(os.environ.get("MOD_PARAMS", "{}"))
DATA_W = int(P.get("DATA_W", 16))
ACC_W = int(P.get("ACC_W", 32))
DUAL_MAC = int(P.get("DUAL_MAC", 1))
ROW = int(P.get("ROW", 0))
COL = int(P.get("COL", 0))
SEED = int(os.environ.get("INTERGRAD_SEED", "1"))
CYCLES = int(os.environ.get("PE_CYCLES", "3000"))

DMASK = (1 << DATA_W) - 1
AMASK = (1 << ACC_W) - 1


def sx(v: int, w: int) -> int:
    v &= (1 << w) - 1
    return v - (1 << w) if v >> (w - 1) else v


class PeModel:
    """Reference of one PE; None marks a register that was never written (undefined)."""

    def __init__(self):
        self.w = [None, None]
        self.w_op = None
        self.acc = None
        self.saved = None
        self.p = None
        self.v = None
        self.h = None

    def step(self, i: dict):
        """Apply one clock edge with inputs ``i`` (all ints)."""
        w_act = self.w[i["wsel"]]
        v_in, h_in = sx(i["v_in"], DATA_W), sx(i["h_in"], DATA_W)
        if DUAL_MAC:
            op_p, op_a = self.w_op, h_in
        else:
            op_p = h_in if i["mul_h"] else w_act
            op_a = op_p
        prod_p = None if op_p is None else sx(op_p, DATA_W) * v_in
        prod_a = None if op_a is None else sx(op_a, DATA_W) * v_in
        nxt = {}
        # weights
        w = list(self.w)
        if i["w_we"] and i["w_row_en"] and i["w_col_en"]:
            mine = (i["w_idx"] == COL) if i["w_transpose"] else (i["w_idx"] == ROW)
            if mine:
                w[i["w_bank"]] = (i["w_left"] if i["w_transpose"] else i["w_top"]) & DMASK
        if i["w_clr"]:
            w = [0, 0]
        nxt["w"] = w
        w_op = self.w_op
        if i["w_upd"]:
            w_op = (w_act if i["psum_on"] and i["w_row_en"] else 0)
        if i["w_clr"]:
            w_op = 0
        nxt["w_op"] = w_op
        # accumulator
        acc = self.acc
        if i["acc_clear"]:
            acc = 0
        elif i["acc_go"]:
            acc = None if (acc is None or prod_a is None) else (acc + prod_a) & AMASK
        nxt["acc"] = acc
        nxt["saved"] = self.acc if i["acc_save"] else self.saved
        # partial sum
        p = self.p
        if i["adv"]:
            if DUAL_MAC or i["psum_on"]:
                p = None if prod_p is None else (i["p_in"] + prod_p) & AMASK
            else:
                p = i["p_in"] & AMASK
        nxt["p"] = p
        # data links
        v, h = self.v, self.h
        if i["clr"]:
            v, h = 0, 0
        elif i["adv"]:
            v, h = i["v_in"] & DMASK, i["h_in"] & DMASK
        nxt["v"], nxt["h"] = v, h
        self.w, self.acc, self.saved, self.p, self.v, self.h = (
            nxt["w"], nxt["acc"], nxt["saved"], nxt["p"], nxt["v"], nxt["h"])
        self.w_op = nxt["w_op"]


INPUTS = ["clr", "w_clr", "adv", "acc_go", "psum_on", "mul_h", "acc_clear", "acc_save",
          "wsel", "w_upd", "w_we", "w_row_en", "w_col_en", "w_bank", "w_transpose", "w_idx", "w_left", "w_top", "v_in", "h_in",
          "p_in"]


def rand_data(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.1:
        return 1 << (DATA_W - 1)          # most negative
    if r < 0.2:
        return DMASK >> 1                 # most positive
    if r < 0.25:
        return 0
    return rng.getrandbits(DATA_W)


def phase_inputs(rng: random.Random, phase: str) -> dict:
    """Inputs of one cycle; the phase fixes the shape of the controls."""
    i = {k: 0 for k in INPUTS}
    i["v_in"], i["h_in"] = rand_data(rng), rand_data(rng)
    i["p_in"] = rng.getrandbits(ACC_W)
    i["w_left"], i["w_top"] = rand_data(rng), rand_data(rng)
    i["w_idx"] = rng.choice([ROW, COL, rng.randrange(256)])
    i["w_bank"] = rng.getrandbits(1)
    i["w_transpose"] = rng.getrandbits(1)
    i["w_we"] = int(rng.random() < 0.15)
    i["w_row_en"] = int(rng.random() < 0.9)
    i["w_col_en"] = int(rng.random() < 0.9)
    i["wsel"] = rng.getrandbits(1)
    i["w_upd"] = int(rng.random() < 0.3)
    i["acc_save"] = int(rng.random() < 0.1)
    i["acc_clear"] = int(rng.random() < 0.03)
    i["clr"] = int(rng.random() < 0.02)
    adv = int(rng.random() < 0.7)
    if phase == "WS":
        i.update(adv=adv, psum_on=1, acc_go=0, mul_h=0)
    elif phase == "OS":
        i.update(adv=adv, psum_on=0, acc_go=adv, mul_h=1)
    elif phase == "IG":
        i.update(adv=adv, psum_on=1, acc_go=adv, mul_h=0)
    elif phase == "IG_SHARED":
        # the single-MAC schedule: an accumulate cycle (mul_h, no step) then a step
        acc_cycle = rng.getrandbits(1)
        i.update(adv=0 if acc_cycle else adv, psum_on=1, acc_go=acc_cycle, mul_h=acc_cycle)
    else:  # fully random controls
        for k in ("adv", "acc_go", "psum_on", "mul_h"):
            i[k] = rng.getrandbits(1)
        i["w_clr"] = int(rng.random() < 0.02)
    return i


OUTPUTS = [("v_out", "v", DATA_W), ("h_out", "h", DATA_W), ("p_out", "p", ACC_W),
           ("acc_out", "acc", ACC_W), ("acc_saved", "saved", ACC_W)]


def compare(dut, model: PeModel, cyc: int, last: dict):
    for port, attr, _w in OUTPUTS:
        exp = getattr(model, attr)
        if exp is None:
            continue
        val = getattr(dut, port).value
        assert val.is_resolvable, f"cycle {cyc}: {port} is {val}, expected {exp:#x}"
        got = int(val)
        assert got == exp, (f"cycle {cyc}: {port} = {got:#x}, reference {exp:#x} "
                            f"(inputs of the edge: {last})")


async def run_phases(dut, phases, seed_offset=0):
    rng = random.Random(SEED * 1000 + seed_offset)
    dut._log.info("intergrad_pe DATA_W=%d ACC_W=%d DUAL_MAC=%d ROW=%d COL=%d seed %d",
                  DATA_W, ACC_W, DUAL_MAC, ROW, COL, SEED)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    model = PeModel()
    # reset-like start: clear everything that has a clear
    first = {k: 0 for k in INPUTS}
    first.update(clr=1, w_clr=1, acc_clear=1, w_upd=1)
    await FallingEdge(dut.clk)
    cyc = 0
    for phase, n in phases:
        for _ in range(n):
            i = first if cyc == 0 else phase_inputs(rng, phase)
            for k, v in i.items():
                getattr(dut, k).value = v
            await FallingEdge(dut.clk)
            model.step(i)
            compare(dut, model, cyc, i)
            cyc += 1
    assert model.acc is not None and model.p is not None


@cocotb.test()
async def test_pe_modes(dut):
    """WS, OS, InterGrad (and the time-shared schedule for DUAL_MAC=0) in turn."""
    n = CYCLES // 6
    phases = [("WS", n), ("OS", n), ("IG", n), ("IG_SHARED", n), ("WS", n // 2),
              ("IG", n // 2)]
    await run_phases(dut, phases, 1)


@cocotb.test()
async def test_pe_random_controls(dut):
    """Every control drawn at random each cycle, weight clears included."""
    await run_phases(dut, [("WS", 20), ("RANDOM", CYCLES)], 2)
