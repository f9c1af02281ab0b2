"""Module testbench of intergrad_array: functional GEMMs checked with numpy, and random
cycles checked against a cycle-level Python reference of the array.

Run through pytest (tests/test_rtl_modules.py), which builds intergrad_array with the
parameters in MOD_PARAMS (JSON: ROWS, COLS, DATA_W, ACC_W, DUAL_MAC).

Functional tests (numpy reference, independent of any cycle model): a tile shape is latched,
weights loaded (plain or transposed, either bank), B samples streamed with bubbles (cycles
without a step, steps without a valid sample), then the array is flushed:

* WS:  out_row after the step that registers sample t plus ROWS+COLS-1 steps is S . v[t]
       (rows outside the tile zero);
* OS:  accumulators = A^T . V over the samples (one accumulate per step);
* IG:  both at once; with DUAL_MAC=0 one accumulate cycle (mul_h) precedes each step;
* the MACs reported on mac_total add up to B * rows_act * cols_act per product kind.

Random-cycle test: every control drawn at random every cycle (steps, accumulates, clears,
saves, weight writes, bank selects, tile shapes), outputs compared every cycle with the
reference: sample t registered on a step (zeroed for a bubble and outside the tile) sits on
anti-diagonal d = n + m of the array d steps later, where PE(n, m) sees top lane m and left
lane n of it; p(n, m) <= p(n, m-1) + w_op * v on a step, where (DUAL_MAC=1) w_upd loads
the PEs' registered operand w_op <= psum_on * row_en[n] * a (DUAL_MAC=0: psum_on * a
directly); acc += b * v on acc_go; row n's partial sum reaches out_row ROWS-1-n steps after
leaving the last column, masked by row_en[n] only with DUAL_MAC=0; a weight
write (plain or transposed) changes only the PEs inside the latched tile.  The MAC
count of a cycle (active PEs on the valid diagonals, once per psum step and once per
accumulate) appears on the registered mac_total MAC_LAT cycles later; the per-diagonal PE
counts follow a new tile shape DIAG_LAT cycle(s) after shape_ld (registered for timing).
"""
from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, Timer

P = json.loads(os.environ.get("MOD_PARAMS", "{}"))
ROWS = int(P.get("ROWS", 4))
COLS = int(P.get("COLS", 4))
DATA_W = int(P.get("DATA_W", 16))
ACC_W = int(P.get("ACC_W", 32))
DUAL_MAC = int(P.get("DUAL_MAC", 1))
SEED = int(os.environ.get("INTERGRAD_SEED", "1"))
CYCLES = int(os.environ.get("ARRAY_CYCLES", "2500"))
ND = ROWS + COLS - 1
MAC_LAT = 2     # mac_total is registered two cycles after the cycle it counts
DIAG_LAT = 1    # diag_k is a registered popcount of the latched tile shape
DMASK = (1 << DATA_W) - 1
AMASK = (1 << ACC_W) - 1


def sx(v, w):
    v = int(v) & ((1 << w) - 1)
    return v - (1 << w) if v >> (w - 1) else v


def wrap(v):
    return sx(v, ACC_W)


def pack(vals, w):
    out = 0
    for i, v in enumerate(vals):
        out |= (int(v) & ((1 << w) - 1)) << (i * w)
    return out


def unpack(x, n, w, signed=True):
    """Lanes of a bus value; a lane holding X/Z bits (a register never written, as Icarus
    shows it) is None."""
    bits = str(x)          # MSB first
    assert len(bits) == n * w, (len(bits), n, w)
    vals = []
    for i in range(n):
        lane = bits[len(bits) - (i + 1) * w: len(bits) - i * w]
        if set(lane) - {"0", "1"}:
            vals.append(None)
            continue
        v = int(lane, 2)
        vals.append(sx(v, w) if signed else v)
    return vals


CTRL = ["rst", "adv", "acc_go", "psum_on", "mul_h", "acc_clear", "acc_save", "pipe_clear",
        "wsel", "w_upd", "shape_ld", "rows_act", "cols_act", "w_we", "w_bank", "w_transpose", "w_idx",
        "w_left", "w_top", "in_left", "in_top", "in_valid"]


def idle_inputs(**kw):
    i = {k: 0 for k in CTRL}
    i["w_left"] = [0] * ROWS
    i["w_top"] = [0] * COLS
    i["in_left"] = [0] * ROWS
    i["in_top"] = [0] * COLS
    i.update(kw)
    return i


class Dut:
    """Drives the array's ports from a dict of (signed, per-lane) inputs."""

    def __init__(self, dut):
        self.dut = dut
        self.cycle = 0

    def drive(self, i):
        d = self.dut
        for k in CTRL:
            v = i[k]
            if k in ("w_left", "in_left"):
                v = pack(v, DATA_W)
            elif k in ("w_top", "in_top"):
                v = pack(v, DATA_W)
            getattr(d, k).value = int(v)

    def mac(self):
        return int(self.dut.mac_total.value)

    def out_row(self):
        return unpack(self.dut.out_row.value, ROWS, ACC_W)

    def acc(self):
        return np.array(unpack(self.dut.acc_flat.value, ROWS * COLS, ACC_W),
                        dtype=object).reshape(ROWS, COLS)

    def saved(self):
        return np.array(unpack(self.dut.saved_flat.value, ROWS * COLS, ACC_W),
                        dtype=object).reshape(ROWS, COLS)

    async def cycle_with(self, i):
        """Apply inputs for one cycle; returns mac_total seen with these inputs."""
        self.drive(i)
        await Timer(1, unit="ns")
        m = self.mac()
        await FallingEdge(self.dut.clk)
        self.cycle += 1
        return m


async def start(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    d = Dut(dut)
    d.drive(idle_inputs(rst=1))
    await FallingEdge(dut.clk)
    await d.cycle_with(idle_inputs(rst=1))
    return d


# --------------------------------------------------------------- functional (numpy) tests

async def gemm_job(d: Dut, rng: random.Random, mode: str, ra: int, ca: int, B: int,
                   transpose: bool, bank: int, p_bubble=0.25, p_idle=0.25):
    """One tile job; returns (outputs per sample, accumulators, MACs seen)."""
    nrng = np.random.default_rng(rng.getrandbits(32))
    lo, hi = -(1 << (DATA_W - 1)), 1 << (DATA_W - 1)
    S = nrng.integers(lo, hi, (ROWS, COLS))        # full array of weights: lanes outside
    A = nrng.integers(lo, hi, (B, ROWS))           # the tile must not matter
    V = nrng.integers(lo, hi, (B, COLS))
    macs = 0
    # latch the tile shape, clear accumulators
    macs += await d.cycle_with(idle_inputs(shape_ld=1, rows_act=ra, cols_act=ca,
                                           acc_clear=1, pipe_clear=1))
    # load the bank: ROWS beats of rows (w_top) or COLS beats of columns (w_left)
    for k in range(COLS if transpose else ROWS):
        if transpose:
            i = idle_inputs(w_we=1, w_bank=bank, w_transpose=1, w_idx=k,
                            w_left=list(S[:, k]), w_top=[rng.randrange(lo, hi)] * COLS)
        else:
            i = idle_inputs(w_we=1, w_bank=bank, w_idx=k, w_top=list(S[k, :]),
                            w_left=[rng.randrange(lo, hi)] * ROWS)
        macs += await d.cycle_with(i)
    psum_on = int(mode in ("WS", "IG"))
    acc_on = mode in ("OS", "IG")
    # the PEs load their psum weight operand from the bank (as the top does after a load)
    macs += await d.cycle_with(idle_inputs(w_upd=1, wsel=bank, psum_on=psum_on))
    step = 0
    sample_step = {}       # sample t -> step that registered it
    outs = {}              # step -> out_row after it
    t = 0
    flush = 0
    while t < B or flush < ND + 1:
        if rng.random() < p_idle:
            # a cycle without a step: the array holds
            junk = idle_inputs(wsel=bank, psum_on=psum_on, mul_h=int(acc_on and not psum_on),
                               in_left=[rng.randrange(lo, hi)] * ROWS,
                               in_top=[rng.randrange(lo, hi)] * COLS,
                               in_valid=rng.getrandbits(1))
            macs += await d.cycle_with(junk)
            continue
        if not DUAL_MAC and mode == "IG":
            # the accumulate cycle of the time-shared multiplier precedes the step
            macs += await d.cycle_with(idle_inputs(wsel=bank, psum_on=1, acc_go=1, mul_h=1))
        valid = t < B and rng.random() >= p_bubble
        i = idle_inputs(adv=1, wsel=bank, psum_on=psum_on,
                        acc_go=int(acc_on and (DUAL_MAC or mode == "OS")),
                        mul_h=int(mode == "OS"), in_valid=int(valid))
        if valid:
            i["in_left"] = list(A[t])
            i["in_top"] = list(V[t])
        else:
            i["in_left"] = [rng.randrange(lo, hi)] * ROWS   # bubble: data lanes ignored
            i["in_top"] = [rng.randrange(lo, hi)] * COLS
        macs += await d.cycle_with(i)
        step += 1
        outs[step] = d.out_row()
        if valid:
            sample_step[t] = step
            t += 1
        elif t >= B:
            flush += 1
    for _ in range(MAC_LAT + 2):   # the registered MAC count lags MAC_LAT cycles
        macs += await d.cycle_with(idle_inputs(wsel=bank))
    Sa = S[:ra, :ca]
    exp_out = [[wrap(x) for x in (Sa @ V[b, :ca]).tolist()] + [0] * (ROWS - ra)
               for b in range(B)]
    got_out = [outs.get(sample_step[b] + ROWS + COLS - 1) for b in range(B)]
    exp_acc = (A[:, :ra].T @ V[:, :ca])
    return got_out, exp_out, d.acc(), exp_acc, macs


@cocotb.test()
async def test_array_gemm_modes(dut):
    """WS, OS and InterGrad tiles of random shape vs numpy, both banks, plain/transposed."""
    d = await start(dut)
    rng = random.Random(SEED * 7919 + 1)
    dut._log.info("intergrad_array %dx%d DATA_W=%d ACC_W=%d DUAL_MAC=%d seed %d",
                  ROWS, COLS, DATA_W, ACC_W, DUAL_MAC, SEED)
    jobs = [("WS", ROWS, COLS), ("OS", ROWS, COLS), ("IG", ROWS, COLS)]
    for _ in range(6):
        jobs.append((rng.choice(["WS", "OS", "IG"]), rng.randint(1, ROWS), rng.randint(1, COLS)))
    for n, (mode, ra, ca) in enumerate(jobs):
        B = rng.randint(1, 3 * (ROWS + COLS))
        tr, bank = bool(n % 2), (n // 2) % 2
        got_out, exp_out, acc, exp_acc, macs = await gemm_job(d, rng, mode, ra, ca, B, tr, bank)
        what = f"job {n} {mode} {ra}x{ca} B={B} transpose={tr} bank={bank}"
        if mode in ("WS", "IG"):
            for b in range(B):
                assert got_out[b] == exp_out[b], (
                    f"{what}: out_row of sample {b} = {got_out[b]}, numpy {exp_out[b]}")
        if mode in ("OS", "IG"):
            for r in range(ROWS):
                for c in range(COLS):
                    e = wrap(exp_acc[r, c]) if (r < ra and c < ca) else 0
                    assert acc[r, c] == e, f"{what}: acc[{r}][{c}] = {acc[r, c]}, numpy {e}"
        kinds = (mode in ("WS", "IG")) + (mode in ("OS", "IG"))
        assert macs == kinds * B * ra * ca, (
            f"{what}: mac_total summed to {macs}, expected {kinds} x {B} x {ra} x {ca}")
        # save the accumulators; the saved copy must equal them while acc moves on
        await d.cycle_with(idle_inputs(acc_save=1))
        snap = d.acc()
        await d.cycle_with(idle_inputs(acc_clear=1))
        assert (d.saved() == snap).all(), f"{what}: saved accumulators differ from acc"


# ------------------------------------------------------------- cycle-level reference model

class ArrayRef:
    def __init__(self):
        self.w = [[[None] * COLS for _ in range(ROWS)] for _ in range(2)]
        self.w_op = [[None] * COLS for _ in range(ROWS)]
        self.acc = [[None] * COLS for _ in range(ROWS)]
        self.saved = [[None] * COLS for _ in range(ROWS)]
        self.p = [[None] * COLS for _ in range(ROWS)]
        self.R = [None] * ND          # sample on diagonal d: (left lanes, top lanes) or None
        self.vd = [None] * ND
        self.deskew = [[None] * (ROWS - 1 - n) for n in range(ROWS)]  # newest first
        self.row_en = None
        self.lmask = None
        self.tmask = None
        self.diag_k = None
        self.shape = None
        self.mac_pipe = [None] * MAC_LAT   # mac_pipe[-1] is on mac_total

    def _vh(self, n, m):
        s = self.R[n + m]
        if s is None:
            return None, None
        return s[1][m], s[0][n]

    def mac(self, i):
        if self.diag_k is None or any(v is None for v in self.vd):
            return None
        nf = sum(k for v, k in zip(self.vd, self.diag_k) if v)
        return (nf if (i["adv"] and i["psum_on"]) else 0) + (nf if i["acc_go"] else 0)

    def out_row(self):
        if self.row_en is None and not DUAL_MAC:
            return None
        out = []
        for n in range(ROWS):
            q = self.deskew[n][-1] if self.deskew[n] else self.p[n][COLS - 1]
            out.append(q if DUAL_MAC or self.row_en[n] else 0)
        return out

    def step(self, i):
        rst, clr = i["rst"], i["rst"] or i["pipe_clear"]
        m_now = self.mac(i)
        self.mac_pipe = [0 if rst else m_now] + [0 if rst else v for v in self.mac_pipe[:-1]]
        # products with the pre-edge state
        new_p = [row[:] for row in self.p]
        new_acc = [row[:] for row in self.acc]
        new_op = [row[:] for row in self.w_op]
        for n in range(ROWS):
            for m in range(COLS):
                v, h = self._vh(n, m)
                wa = self.w[i["wsel"]][n][m]
                if i["w_upd"]:
                    # the PE's row enable is the latched tile's (unknown before a shape)
                    ren = None if self.row_en is None else self.row_en[n]
                    new_op[n][m] = (0 if not i["psum_on"] or ren == 0 else
                                    None if ren is None else wa)
                if DUAL_MAC:
                    op_p, op_a = self.w_op[n][m], h
                else:
                    op_p = h if i["mul_h"] else wa
                    op_a = op_p
                if i["adv"]:
                    p_in = 0 if m == 0 else self.p[n][m - 1]
                    if DUAL_MAC or i["psum_on"]:
                        new_p[n][m] = (None if None in (p_in, op_p, v)
                                       else wrap(p_in + op_p * v))
                    else:
                        new_p[n][m] = p_in
                if i["acc_clear"]:
                    new_acc[n][m] = 0
                elif i["acc_go"]:
                    a = self.acc[n][m]
                    new_acc[n][m] = None if None in (a, op_a, v) else wrap(a + op_a * v)
        if i["acc_save"]:
            self.saved = [row[:] for row in self.acc]
        # weights
        if i["w_we"]:
            for n in range(ROWS):
                for m in range(COLS):
                    if not (self.lmask and self.lmask[n] and self.tmask[m]):
                        continue        # outside the latched tile: the PE keeps its weight
                    if i["w_transpose"] and i["w_idx"] == m:
                        self.w[i["w_bank"]][n][m] = sx(i["w_left"][n], DATA_W)
                    elif not i["w_transpose"] and i["w_idx"] == n:
                        self.w[i["w_bank"]][n][m] = sx(i["w_top"][m], DATA_W)
        self.w_op = new_op
        if rst:
            self.w = [[[0] * COLS for _ in range(ROWS)] for _ in range(2)]
            self.w_op = [[0] * COLS for _ in range(ROWS)]
        # de-skew (shifts on adv, never cleared) takes the last column's old p
        if i["adv"]:
            for n in range(ROWS):
                if self.deskew[n]:
                    self.deskew[n] = [self.p[n][COLS - 1]] + self.deskew[n][:-1]
        self.p, self.acc = new_p, new_acc
        # data links and valid bits
        if clr:
            self.R = [([0] * ROWS, [0] * COLS)] * ND
            self.vd = [0] * ND
        elif i["adv"]:
            if self.lmask is None:
                reg = None
            elif i["in_valid"]:
                reg = ([sx(x, DATA_W) if self.lmask[n] else 0 for n, x in enumerate(i["in_left"])],
                       [sx(x, DATA_W) if self.tmask[m] else 0 for m, x in enumerate(i["in_top"])])
            else:
                reg = ([0] * ROWS, [0] * COLS)
            self.R = [reg] + self.R[:-1]
            self.vd = [i["in_valid"]] + self.vd[:-1]
        # tile shape; the diagonal counts follow the latched shape one cycle later
        if self.shape is not None:
            ra, ca = self.shape
            # active PEs on diagonal dd: real PEs (n < ROWS, m < COLS) inside the tile
            self.diag_k = [sum(1 for r in range(ROWS)
                               if r < ra and 0 <= dd - r < min(ca, COLS)) for dd in range(ND)]
        if i["shape_ld"]:
            ra, ca = i["rows_act"], i["cols_act"]
            self.shape = (ra, ca)
            self.row_en = [n < ra for n in range(ROWS)]
            self.lmask = [n < ra for n in range(ROWS)]
            self.tmask = [m < ca for m in range(COLS)]


def random_inputs(rng: random.Random, state: dict) -> dict:
    lo, hi = -(1 << (DATA_W - 1)), 1 << (DATA_W - 1)

    def dat():
        r = rng.random()
        return lo if r < 0.08 else hi - 1 if r < 0.16 else rng.randrange(lo, hi)
    if rng.random() < 0.02:
        state["phase"] = rng.choice(["WS", "OS", "IG", "RANDOM"])
    if rng.random() < 0.03:
        state["wsel"] ^= 1
    ph = state["phase"]
    adv = int(rng.random() < 0.7)
    i = idle_inputs(adv=adv, wsel=state["wsel"], in_valid=int(rng.random() < 0.8),
                    in_left=[dat() for _ in range(ROWS)], in_top=[dat() for _ in range(COLS)],
                    w_left=[dat() for _ in range(ROWS)], w_top=[dat() for _ in range(COLS)])
    if ph == "WS":
        i.update(psum_on=1)
    elif ph == "OS":
        i.update(acc_go=adv, mul_h=1)
    elif ph == "IG":
        if DUAL_MAC:
            i.update(psum_on=1, acc_go=adv)
        else:
            a = rng.getrandbits(1)
            i.update(psum_on=1, acc_go=a, mul_h=a, adv=0 if a else adv)
    else:
        for k in ("adv", "acc_go", "psum_on", "mul_h"):
            i[k] = rng.getrandbits(1)
    i["w_we"] = int(rng.random() < 0.1)
    i["w_upd"] = int(rng.random() < 0.2)
    i["w_bank"] = rng.getrandbits(1)
    i["w_transpose"] = rng.getrandbits(1)
    i["w_idx"] = rng.randrange(max(ROWS, COLS) + 1)
    i["acc_save"] = int(rng.random() < 0.05)
    i["acc_clear"] = int(rng.random() < 0.01)
    i["pipe_clear"] = int(rng.random() < 0.01)
    i["rst"] = int(rng.random() < 0.003)
    if rng.random() < 0.02:
        i["shape_ld"] = 1
        # shapes the top accepts (1..ROWS x 1..COLS; it rejects others), and an empty tile
        i["rows_act"] = rng.choice([rng.randint(1, ROWS), rng.randint(1, ROWS), 0])
        i["cols_act"] = rng.choice([rng.randint(1, COLS), rng.randint(1, COLS), 0])
    return i


@cocotb.test()
async def test_array_random_cycles(dut):
    """Random controls every cycle vs the cycle-level reference; every output each cycle."""
    d = await start(dut)
    rng = random.Random(SEED * 7919 + 2)
    ref = ArrayRef()
    ref.step(idle_inputs(rst=1))
    first = idle_inputs(shape_ld=1, rows_act=ROWS, cols_act=COLS, acc_clear=1, pipe_clear=1)
    state = {"phase": "IG", "wsel": 0}
    for cyc in range(CYCLES):
        i = first if cyc == 0 else random_inputs(rng, state)
        d.drive(i)
        await FallingEdge(dut.clk)
        ref.step(i)
        em = ref.mac_pipe[-1]
        if em is not None:
            assert d.mac() == em, (f"cycle {cyc}: mac_total {d.mac()}, reference {em} (the "
                                   f"count of cycle {cyc - MAC_LAT + 1})")
        eo = ref.out_row()
        if eo is not None:
            go = d.out_row()
            for n in range(ROWS):
                if eo[n] is not None:
                    assert go[n] == eo[n], (f"cycle {cyc}: out_row[{n}] = {go[n]}, reference "
                                            f"{eo[n]} (inputs {i})")
        ga, gs = d.acc(), d.saved()
        for n in range(ROWS):
            for m in range(COLS):
                if ref.acc[n][m] is not None:
                    assert ga[n, m] == ref.acc[n][m], (
                        f"cycle {cyc}: acc[{n}][{m}] = {ga[n, m]}, reference {ref.acc[n][m]}")
                if ref.saved[n][m] is not None:
                    assert gs[n, m] == ref.saved[n][m], (
                        f"cycle {cyc}: saved[{n}][{m}] = {gs[n, m]}, reference "
                        f"{ref.saved[n][m]}")
