#!/usr/bin/env python3
"""Mutation check of the RTL: does the test suite kill each named mutant?

Every mutant is one textual edit of one RTL file, written as (file, exact original snippet,
replacement).  For each mutant the script copies the source tree's ``host/``,
``hls_verilog/`` and ``tests/`` into a temporary directory (the worktree's files are never
touched), applies the edit there (failing loudly if the snippet is not found exactly once,
so an RTL change cannot silently turn a mutant into a no-op), and runs the mutant's test
suites against the copy in a fresh Python process whose ``intergrad`` package (and so
``intergrad.rtl.rtl_dir()``) is the copy's.  A mutant is

* ``killed``   when a suite's cocotb tests ran and at least one failed (or timed out),
* ``survived`` when every suite passed,
* ``invalid``  when the mutant did not build or no test ran (an error of the mutant, not a
  kill: the script exits non-zero).

Usage::

    python tests/mutation/run_mutants.py                 # every mutant, unmutated baseline first
    python tests/mutation/run_mutants.py --fast          # the fast subset (also run by pytest)
    python tests/mutation/run_mutants.py pe_acc_sub ...  # named mutants
    python tests/mutation/run_mutants.py --list
    python tests/mutation/run_mutants.py --markdown docs/verification_table.md

INTERGRAD_SEED (default 1 here, for reproducible tables) seeds the testbenches.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------ suites
# name -> (kind, parameters, testcases or None, extra environment)
SUITES: dict[str, tuple] = {
    # module testbenches (tests/cocotb/test_pe.py, test_array.py)
    "pe_dual": ("module", "intergrad_pe", dict(DATA_W=8, ACC_W=20, DUAL_MAC=1, ROW=1, COL=2),
                None, {"PE_CYCLES": "1500"}),
    "pe_single": ("module", "intergrad_pe", dict(DATA_W=8, ACC_W=20, DUAL_MAC=0, ROW=2, COL=1),
                  None, {"PE_CYCLES": "1500"}),
    "array_dual": ("module", "intergrad_array",
                   dict(ROWS=3, COLS=5, DATA_W=8, ACC_W=20, DUAL_MAC=1), None,
                   {"ARRAY_CYCLES": "1500"}),
    "array_single": ("module", "intergrad_array",
                     dict(ROWS=4, COLS=2, DATA_W=8, ACC_W=20, DUAL_MAC=0), None,
                     {"ARRAY_CYCLES": "1500"}),
    # the top-level testbench (tests/cocotb/test_intergrad_top.py) on a small array
    "top_regs": ("top", (3, 4, 16, 32, 1),
                 ["test_id_and_config", "test_register_byte_strobes"], {"IG_MAX_B": "40"}),
    "top_jobs": ("top", (3, 4, 16, 32, 1),
                 ["test_ws_random", "test_os_random", "test_intergrad_random",
                  "test_back_to_back_preload", "test_small_tile_load_keeps_outer_weights",
                  "test_saved_accumulators_drain_during_next_job"],
                 {"IG_MAX_B": "40"}),
    "top_errors": ("top", (3, 4, 16, 32, 1),
                   ["test_soft_reset_mid_job", "test_errors_never_hang"], {"IG_MAX_B": "40"}),
    "top_frames": ("top", (3, 4, 16, 32, 1),
                   ["test_soft_reset_keeps_pending_beat", "test_done_after_last_beat_delivered",
                    "test_aborted_frames_are_terminated", "test_axil_order_skew_and_holds"],
                   {"IG_MAX_B": "40"}),
    "top_counters": ("top", (3, 4, 16, 32, 1),
                     ["test_counter_reset_and_stalls", "test_intergrad_vs_separate_passes"],
                     {"IG_MAX_B": "40"}),
    # the protocol testbench (tests/cocotb/test_protocol.py): raw AXI-Lite master, frames
    "protocol": ("top", (3, 4, 16, 32, 1), None, {}, "test_protocol"),
    "protocol_axil": ("top", (3, 4, 16, 32, 1),
                      ["test_axil_write_orders_and_skews", "test_axil_response_backpressure",
                       "test_axil_ctrl_write_is_one_start"],
                      {}, "test_protocol"),
    # job queues (tests/cocotb/test_queue.py)
    "queue": ("top", (3, 4, 16, 32, 1), None, {"IG_MAX_B": "40"}, "test_queue"),
}


@dataclass
class Mutant:
    name: str
    file: str          # under hls_verilog/
    orig: str          # exact snippet (must occur exactly once)
    repl: str
    suites: list[str]
    what: str
    fast: bool = False
    extra: list = field(default_factory=list)   # further (orig, repl) edits, same file


PE, ARR, TOP = "intergrad_pe.v", "intergrad_array.v", "intergrad_top.v"

MUTANTS: list[Mutant] = [
    # ---------------------------------------------------------------- PE datapath
    Mutant("pe_sign_ext", PE,
           "assign psum_term = {{(ACC_W-PROD_W){prod_p[PROD_W-1]}}, prod_p};",
           "assign psum_term = {{(ACC_W-PROD_W){1'b0}}, prod_p};",
           ["pe_dual", "array_dual", "top_jobs"],
           "partial-sum product zero-extended instead of sign-extended to ACC_W", fast=True),
    Mutant("pe_acc_sub", PE, "assign acc_sum = acc + acc_term;", "assign acc_sum = acc - acc_term;",
           ["pe_dual", "top_jobs"], "accumulate subtracts instead of adding"),
    Mutant("pe_psum_gate", PE, "w_op <= (psum_on && w_row_en) ? w_act : {DATA_W{1'b0}};",
           "w_op <= w_row_en ? w_act : {DATA_W{1'b0}};", ["pe_dual", "top_jobs"],
           "dual MAC: the psum weight operand ignores psum_on (OS steps add weight products)"),
    Mutant("pe_row_gate", PE, "w_op <= (psum_on && w_row_en) ? w_act : {DATA_W{1'b0}};",
           "w_op <= psum_on ? w_act : {DATA_W{1'b0}};", ["pe_dual", "array_dual", "top_jobs"],
           "dual MAC: rows outside the tile keep their weight operand (their partial sums, "
           "no longer masked at the output, reach it)"),
    Mutant("pe_psum_always_single", PE, "p_out <= psum_on ? p_in + psum_term : p_in;",
           "p_out <= p_in + psum_term;", ["pe_single", "top_jobs"],
           "single MAC: partial sum ignores psum_on"),
    Mutant("pe_bank_swap", PE, "wire [DATA_W-1:0] w_act = wsel ? w1 : w0;",
           "wire [DATA_W-1:0] w_act = wsel ? w0 : w1;", ["pe_dual", "top_jobs"],
           "active weight bank inverted"),
    Mutant("pe_transpose_lane", PE, "(w_idx == COL[7:0])", "(w_idx == ROW[7:0])",
           ["pe_dual", "top_jobs"], "transposed weight load takes the row's beat"),
    Mutant("pe_single_operand", PE, "wire [DATA_W-1:0] op_a = mul_h ? h_in : w_act;",
           "wire [DATA_W-1:0] op_a = w_act;", ["pe_single", "top_jobs"],
           "time-shared multiplier never takes h (DUAL_MAC=0 accumulates W*v)"),
    Mutant("pe_clear_links", PE, "        v_out <= {DATA_W{1'b0}};\n        h_out <= {DATA_W{1'b0}};",
           "        v_out <= v_out;\n        h_out <= {DATA_W{1'b0}};", ["pe_dual", "array_dual"],
           "clear leaves the vertical data link (stale data after an abort)"),
    # ---------------------------------------------------------------- array
    Mutant("array_left_skew", ARR, "intergrad_delay #(.WIDTH(DATA_W), .DEPTH(n)) u_d (",
           "intergrad_delay #(.WIDTH(DATA_W), .DEPTH(n + 1)) u_d (",
           ["array_dual", "top_jobs"], "left lanes skewed one step late (wrong skew)"),
    Mutant("array_deskew", ARR, "intergrad_delay #(.WIDTH(ACC_W), .DEPTH(ROWS-1-n)) u_d (",
           "intergrad_delay #(.WIDTH(ACC_W), .DEPTH(ROWS-n)) u_d (",
           ["array_dual", "top_jobs"], "output de-skew one step too long"),
    Mutant("array_psum_mask", ARR,
           "assign out_row[n*ACC_W +: ACC_W] = row_en[n] ? q : {ACC_W{1'b0}};",
           "assign out_row[n*ACC_W +: ACC_W] = q;", ["array_single"],
           "single MAC: partial sums of rows outside the tile not masked"),
    Mutant("array_lane_mask", ARR, "in_left_reg <= in_valid ? (in_left & left_mask)",
           "in_left_reg <= in_valid ? (in_left)", ["array_dual", "top_jobs"],
           "left lanes outside the tile not zero-gated"),
    Mutant("array_bubble", ARR,
           "in_top_reg <= in_valid ? (in_top & top_mask) : {COLS*DATA_W{1'b0}};",
           "in_top_reg <= in_top & top_mask;", ["array_dual", "top_jobs"],
           "bubble (no valid input) not zeroed on the top lanes"),
    Mutant("array_diag_count", ARR,
           "diag_bits[r - ((d >= COLS) ? d - COLS + 1 : 0)] = re[r] & ce[d - r];",
           "diag_bits[r - ((d >= COLS) ? d - COLS + 1 : 0)] = re[r];", ["array_dual", "top_counters"],
           "MAC counter: PEs per diagonal counted in every column, not just the tile's"),
    Mutant("array_diag_load_off", ARR, "    shape_q <= shape_ld;\n", "    shape_q <= 1'b0;\n",
           ["array_dual", "top_counters"],
           "MAC counter: the per-diagonal PE counts never load (the first job's shape is used)"),
    Mutant("array_diag_load_early", ARR,
           "            if (shape_q) begin\n                k <= diag_pop(",
           "            if (shape_ld) begin\n                k <= diag_pop(",
           ["array_dual", "top_counters"],
           "MAC counter: the per-diagonal PE counts load with the shape latch (the previous job's tile)"),
    Mutant("array_wload_tile", ARR,
           ".w_row_en(row_en[n]), .w_col_en(col_en[m]),",
           ".w_row_en(1'b1), .w_col_en(1'b1),", ["array_dual", "top_jobs"],
           "weight load writes the whole row/column, beyond the active tile"),
    Mutant("pe_op_unregistered", PE, "assign prod_p = $signed(w_op) * $signed(v_in);",
           "assign prod_p = $signed(psum_on ? w_act : {DATA_W{1'b0}}) * $signed(v_in);",
           ["pe_dual"], "psum operand taken from the bank directly, not from the w_op register"),
    Mutant("pe_tile_col", PE, "if (w_row_en && w_col_en && (w_transpose",
           "if (w_row_en && (w_transpose", ["pe_dual", "top_jobs"],
           "PE takes a weight beat when its row is in the tile, whatever its column"),
    Mutant("array_mac_acc", ARR, "    mac_a <= acc_go;\n", "    mac_a <= 1'b0;\n",
           ["array_dual", "top_counters"], "MAC counter misses the accumulate MACs"),
    Mutant("array_kall_early", ARR, "    if (shape_qqq) begin\n        k_all <=",
           "    if (shape_qq) begin\n        k_all <=", ["array_dual", "top_counters"],
           "MAC counter: the tile's whole count loads with its terms (the previous job's)"),
    Mutant("array_kall_terms", ARR, "                ka <= k01 + k23;",
           "                ka <= k01;", ["array_dual", "top_counters"],
           "MAC counter: the tile's whole count misses two diagonals of every group"),
    Mutant("array_full_one_diag", ARR, "wire vd_full = &vd;", "wire vd_full = vd[0];",
           ["array_dual", "top_counters"],
           "MAC counter: the tile's whole count taken once the first diagonal is valid"),
]

AXL = "intergrad_axil_regs.v"

# top level and AXI-Lite slave: the protocol bugs the old testbench could not see, and the
# sequencer's bookkeeping
TOP_MUTANTS: list[Mutant] = [
    Mutant("axil_ignores_wvalid", AXL,
           "wr_en_next = awvalid_next && wvalid_next && !bvalid_next;",
           "wr_en_next = awvalid_next && !bvalid_next;", ["protocol_axil", "top_regs"],
           "AXI-Lite write applied on AW alone, without waiting for WVALID", fast=True),
    Mutant("axil_bvalid_drop", AXL, "bvalid_next = bvalid_reg && !s_axil_bready;",
           "bvalid_next = 1'b0;", ["protocol_axil", "top_regs"],
           "BVALID dropped after one cycle without BREADY"),
    Mutant("axil_rvalid_drop", AXL, "rvalid_next = rvalid_reg && !s_axil_rready;",
           "rvalid_next = 1'b0;", ["protocol_axil", "top_regs"],
           "RVALID dropped after one cycle without RREADY"),
    Mutant("axil_rdata_live", AXL,
           "        if (rd_en_reg) begin\n            s_axil_rdata <= read_word(araddr_reg);",
           "        if (1'b1) begin\n            s_axil_rdata <= read_word(araddr_reg);",
           ["protocol_axil", "top_regs"],
           "RDATA not held: follows the register while RVALID waits for RREADY"),
    Mutant("axil_ctrl_strobe_early", AXL,
           "wr_ctrl_next = wr_en_next && (awaddr_next & 8'hFC) == IG_REG_CTRL",
           "wr_ctrl_next = (awaddr_next & 8'hFC) == IG_REG_CTRL", ["protocol_axil", "top_regs"],
           "CTRL strobes high while the CTRL address is held, before the write is applied "
           "(and again in the BVALID cycle)"),
    Mutant("axil_idle_drops_w", AXL,
           "if (awvalid_reg || wvalid_reg || bvalid_reg || s_axil_awvalid || s_axil_wvalid) begin",
           "if (awvalid_reg || wvalid_reg || bvalid_reg || s_axil_awvalid) begin",
           ["protocol_axil", "top_regs"],
           "idle write channel skips a cycle with WVALID alone (W before AW is accepted, lost)"),
    Mutant("axil_idle_drops_ar", AXL,
           "if (arvalid_reg || rvalid_reg || s_axil_arvalid) begin",
           "if (arvalid_reg || rvalid_reg) begin", ["protocol_axil", "top_regs"],
           "idle read channel never takes a new address (reads hang)"),
    Mutant("cfg_check_stale", AXL, "    fields_upd <= wr_en_reg || rst;",
           "    fields_upd <= rst;", ["top_errors", "protocol"],
           "configuration checks not redone after a register write (a bad job is started)"),
    Mutant("axil_wstrb_ignored", AXL,
           "if (wstrb_reg[IG_BATCH_BATCH_LSB/8 + wb]) begin", "if (1'b1) begin",
           ["top_regs"], "BATCH write ignores the byte strobes"),
    Mutant("soft_reset_drops_tvalid", TOP,
           "    if (rst) begin\n        m_axis_tvalid <= 1'b0;",
           "    if (rst || soft_req) begin\n        m_axis_tvalid <= 1'b0;",
           ["protocol", "top_errors"],
           "soft reset clears m_axis_tvalid without a handshake (the old behaviour)"),
    Mutant("soft_reset_no_abort_beat", TOP,
           "            term_pend <= 1'b1;\n            term_code <= IG_ERR_SOFT_RESET;",
           "            term_pend <= 1'b0;\n            term_code <= IG_ERR_SOFT_RESET;",
           ["protocol", "top_errors"], "soft reset leaves the running job's frame unterminated"),
    Mutant("abort_no_beat", TOP,
           "            term_pend <= 1'b1;\n            term_code <= abort_cause;",
           "            term_pend <= 1'b0;\n            term_code <= abort_cause;",
           ["protocol", "top_errors"],
           "EARLY/MISSING_TLAST abort leaves the frame without TLAST (the old behaviour)"),
    Mutant("abort_beat_no_tlast", TOP,
           "        m_axis_tdata <= abort_word;\n        m_axis_tlast <= 1'b1;",
           "        m_axis_tdata <= abort_word;\n        m_axis_tlast <= 1'b0;",
           ["protocol", "top_errors"], "abort beat sent without TLAST"),
    Mutant("done_before_delivery", TOP,
           "assign st_busy = st_computing || st_out_pending || start_req || soft_req;",
           "assign st_busy = st_computing || term_pend || start_req || soft_req;",
           ["protocol", "top_errors"],
           "BUSY=0 and DONE=1 while the last output beat waits (the old behaviour)"),
    Mutant("done_while_busy", TOP, "assign st_done = done_flag && !st_busy;",
           "assign st_done = done_flag;", ["protocol", "top_jobs"],
           "DONE reported while BUSY (before the frame is delivered)"),
    Mutant("w_upd_no_load", TOP, "    w_upd <= start_ok || (st_load && go && ld_one);",
           "    w_upd <= start_ok;", ["top_jobs"],
           "the PEs keep the old psum operand after LOAD_W (the loaded bank is never used)"),
    Mutant("w_upd_no_start", TOP, "    w_upd <= start_ok || (st_load && go && ld_one);",
           "    w_upd <= st_load && go && ld_one;", ["top_jobs"],
           "the PEs keep the old psum operand after a SWAP or a change of mode"),
    Mutant("swap_no_toggle", TOP,
           "(st_load && go && ld_one) || (start_ok && flags_reg[IG_FLAG_SWAP])",
           "(st_load && go && ld_one)", ["top_jobs"],
           "SWAP does not make the preloaded shadow bank active"),
    Mutant("preload_index_stuck", TOP,
           "ld_idx <= (st_load && ld_one) ? 8'd0 : ld_idx + 8'd1;",
           "ld_idx <= (st_load && ld_one) ? 8'd0 : ld_idx + {7'd0, st_load};", ["top_jobs"],
           "the weight beat index does not advance on preload beats (all land in one row)"),
    Mutant("batch_off_by_one", TOP, "        b_cnt <= batch_reg;\n",
           "        b_cnt <= batch_reg + 16'd1;\n", ["top_jobs"],
           "job takes one data beat more than BATCH"),
    Mutant("abort_cause_wrong", TOP,
           "abort_cause = early_tlast ? IG_ERR_EARLY_TLAST : IG_ERR_MISSING_TLAST;",
           "abort_cause = IG_ERR_EARLY_TLAST;", ["protocol", "top_errors"],
           "MISSING_TLAST reported (and carried by the abort beat) as EARLY_TLAST"),
    Mutant("top_expect_last_guard", TOP, "    if (b_one || pre_one) begin\n        expect_last",
           "    if (b_one) begin\n        expect_last", ["top_errors", "top_jobs"],
           "TLAST expected on the stream's last beat but not on a preload tail's last beat"),
]


# job queues (in-band job descriptors)
QUEUE_MUTANTS: list[Mutant] = [
    Mutant("queue_tlast_every_job", TOP, "beat_last = job_last && (",
           "beat_last = 1'b1 && (", ["queue"],
           "every queue job's last output beat carries TLAST (one frame per job)"),
    Mutant("queue_start_ungated", TOP, "wire start_any = start_req || st_qstart;",
           "wire start_any = start_req;", ["queue"],
           "a queue job's start is gated by the START strobe alone (S_QSTART never starts it)"),
    Mutant("queue_first_busy", TOP, "q_first = q_req && !soft_req && can_start;",
           "q_first = q_req && !soft_req;", ["queue"],
           "a QUEUE strobe takes a header while a job or queue is still running"),
    Mutant("queue_no_tag_check", TOP,
           "(hdr_word[IG_HDR_TAG_LSB +: IG_HDR_TAG_W] != IG_HDR_TAG) ? IG_ERR_BAD_HEADER :",
           "1'b0 ? IG_ERR_BAD_HEADER :", ["queue"], "a header beat without the tag is taken"),
    Mutant("queue_job_index_frozen", TOP, "            q_job <= q_job + 16'd1;",
           "            q_job <= q_job;", ["queue"],
           "QUEUE.JOB does not count the completed jobs (the failing job is misnamed)"),
    Mutant("queue_reject_no_discard", TOP,
           "state <= hdr_early ? ST_IDLE : ST_DISCARD;",
           "state <= ST_IDLE;", ["queue"],
           "a rejected queue header leaves the rest of the input frame undiscarded"),
    Mutant("queue_soft_reset_no_abort", TOP,
           "if ((stepping || st_hdr || st_qstart) && frame_open)",
           "if (stepping && frame_open)", ["queue"],
           "a soft reset while a queue waits for a header leaves its frame unterminated"),
]


def all_mutants() -> list[Mutant]:
    return MUTANTS + TOP_MUTANTS + QUEUE_MUTANTS


# ------------------------------------------------------------------------------ driver

def make_copy(dest: Path, src_root: Path = ROOT) -> Path:
    ign = shutil.ignore_patterns("__pycache__", "sim_build", "*.pyc", ".pytest_cache")
    for d in ("host", "hls_verilog", "tests"):
        shutil.copytree(src_root / d, dest / d, ignore=ign)
    return dest


def apply_mutant(copy_root: Path, m: Mutant) -> None:
    f = copy_root / "hls_verilog" / m.file
    text = f.read_text()
    for orig, repl in [(m.orig, m.repl)] + list(m.extra):
        n = text.count(orig)
        if n != 1:
            raise SystemExit(f"mutant {m.name}: snippet found {n} times in {m.file} "
                             f"(expected exactly once; the RTL changed?):\n{orig}")
        text = text.replace(orig, repl)
    f.write_text(text)


_EVIDENCE = re.compile(r"(?:AssertionError|ProtocolError): (.+)")
_FAILED = re.compile(r"\*\* \w+\.(\w+)\s+FAIL\b")


def evidence(text: str) -> str:
    """How a suite caught the mutant: the first failing test and the first assertion /
    protocol-error message (or the timeout) in its output."""
    failed = _FAILED.findall(text)
    msg = ""
    for line in text.splitlines():
        m = _EVIDENCE.search(line)
        if m:
            msg = m.group(1).strip()
            break
    if not msg and "SimTimeoutError" in text:
        msg = "timed out waiting (no frame end / response)"
    return (f"{failed[0]}: " if failed else "") + msg


def run_suite(copy_root: Path, suite: str, seed: str, timeout: float, log) -> str:
    """Run one suite against the copy in a fresh process: 'pass', 'fail', 'invalid'."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy_root / "host") + os.pathsep + env.get("PYTHONPATH", "")
    env["INTERGRAD_SEED"] = seed
    env["IG_SEED"] = seed
    # outside pytest the runner returns its results instead of exiting on failures
    env.pop("PYTEST_CURRENT_TEST", None)
    # the copy's own script runs the worker (edits to the tree meanwhile do not matter)
    script = copy_root / "tests" / "mutation" / Path(__file__).name
    cmd = [sys.executable, str(script), "--worker", str(copy_root), suite]
    # its own process group: on a timeout the simulator the worker started goes too (killing
    # the worker alone left the simulator running, a core busy long after the run)
    p = subprocess.Popen(cmd, env=env, cwd=copy_root, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        log.write(f"--- suite {suite}: TIMEOUT after {timeout} s\n{out[-20000:]}\n")
        return "fail"
    log.write(f"--- suite {suite}: exit {p.returncode}\n{out[-20000:]}\n{err[-20000:]}\n")
    return {0: "pass", 1: "fail"}.get(p.returncode, "invalid")


def worker(copy_root: Path, suite: str) -> int:
    """Runs inside the fresh process: 0 all passed, 1 tests failed, 2 nothing ran, 3 build."""
    sys.path.insert(0, str(copy_root / "host"))
    sys.path.insert(0, str(copy_root / "tests"))
    from intergrad import rtl
    from intergrad.spec import ArrayConfig

    d = rtl.rtl_dir().resolve()
    if copy_root.resolve() not in d.parents:
        print(f"worker: intergrad.rtl found the RTL in {d}, not in the copy {copy_root}")
        return 2
    kind = SUITES[suite][0]
    build = copy_root / "sim_build" / suite
    try:
        if kind == "module":
            _, top, params, testcase, extra = SUITES[suite]
            import test_rtl_modules as trm
            bdir = copy_root / "sim_build" / (top + "_" + "_".join(f"{k}{v}" for k, v in
                                                                    sorted(params.items())))
            try:
                total, failed = trm.run_module("verilator", top, params, bdir, top.replace(
                    "intergrad_", "test_"), testcase=testcase, extra_env=extra, rtl_dir=d)
            except SystemExit:
                total, failed = _results(bdir)
        else:
            _, cfgt, testcase, extra, *mod = SUITES[suite]
            cfg = ArrayConfig(*cfgt)
            bdir = copy_root / "sim_build" / ("top_" + "_".join(map(str, cfgt)))
            env = {"IG_SEED": os.environ.get("IG_SEED", "1")}
            env.update(extra)
            try:
                total, failed = rtl.run_cocotb("verilator", cfg, bdir,
                                               mod[0] if mod else "test_intergrad_top",
                                               copy_root / "tests" / "cocotb", testcase=testcase,
                                               extra_env=env)
            except SystemExit:
                total, failed = _results(bdir)
    except Exception as e:  # the build failed
        print(f"worker: build or run error: {type(e).__name__}: {e}")
        return 3
    print(f"worker: suite {suite}: {total} tests, {failed} failed ({build})")
    if total == 0:
        return 2
    return 1 if failed else 0


def _results(bdir: Path) -> tuple[int, int]:
    """(run, failed) from the results file when the runner exited on failures."""
    from cocotb_tools.runner import get_results
    try:
        return get_results(bdir / "results.xml")
    except Exception:
        return 0, 0


def run(mutants: list[Mutant], seed: str, baseline: bool, timeout: float, logdir: Path,
        keep: bool = False, quiet: bool = False) -> list[dict]:
    logdir.mkdir(parents=True, exist_ok=True)
    rows = []
    todo = ([None] if baseline else []) + mutants
    # one pristine snapshot of the tree at the start: edits made meanwhile do not leak in
    pristine = make_copy(Path(tempfile.mkdtemp(prefix="igmut_src_")))
    try:
        for m in todo:
            rows.append(_run_one(m, mutants, pristine, seed, timeout, logdir, keep, quiet))
    finally:
        shutil.rmtree(pristine, ignore_errors=True)
    return rows


def _run_one(m, mutants, pristine, seed, timeout, logdir, keep, quiet) -> dict:
    name = "baseline" if m is None else m.name
    suites = (sorted({s for mm in mutants for s in mm.suites}) if m is None else m.suites)
    tmp = Path(tempfile.mkdtemp(prefix=f"igmut_{name}_"))
    t0 = time.time()
    with open(logdir / f"{name}.log", "w") as log:
        try:
            make_copy(tmp, pristine)
            if m is not None:
                apply_mutant(tmp, m)
            verdict, by = "survived", ""
            for s in suites:
                r = run_suite(tmp, s, seed, timeout, log)
                if r == "invalid":
                    verdict, by = "invalid", s
                    break
                if r == "fail":
                    verdict, by = "killed", s
                    if m is not None:
                        break
            if m is None:
                verdict = "passed" if verdict == "survived" else f"FAILED ({by})"
        finally:
            if not keep:
                shutil.rmtree(tmp, ignore_errors=True)
    ev = ""
    if verdict == "killed":
        text = (logdir / f"{name}.log").read_text(errors="replace")
        part = text.split(f"--- suite {by}:", 1)[-1]
        ev = evidence(part)
    row = dict(name=name, verdict=verdict, by=by, seconds=round(time.time() - t0),
               evidence=ev,
               what="unmutated RTL, every suite used below" if m is None else m.what,
               file="" if m is None else m.file)
    if not quiet:
        print(f"{name:24s} {verdict:9s} {by:14s} {row['seconds']:4d} s  {row['what']}",
              flush=True)
    return row


def markdown(rows: list[dict], seed: str) -> str:
    out = ["| mutant | file | mutation | verdict | killed by | first failure it caused | s |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        ev = r.get("evidence", "").replace("|", "/")
        ev = (ev[:110] + "...") if len(ev) > 110 else ev
        out.append(f"| `{r['name']}` | {r['file']} | {r['what']} | {r['verdict']} | "
                   f"{r['by']} | {ev} | {r['seconds']} |")
    out.append("")
    out.append(f"INTERGRAD_SEED={seed}; 'killed by' is the first suite that failed.")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*", help="mutants to run (default: all)")
    ap.add_argument("--fast", action="store_true", help="only the fast subset")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per suite")
    ap.add_argument("--markdown", type=Path, help="write the result table here")
    ap.add_argument("--json", type=Path, help="write the results as JSON here")
    ap.add_argument("--logdir", type=Path, default=ROOT / "sim_build" / "mutation")
    ap.add_argument("--keep", action="store_true", help="keep the mutated copies")
    ap.add_argument("--suites", help="comma-separated suites to run instead of each "
                    "mutant's own (e.g. to show which testbench kills it)")
    ap.add_argument("--worker", nargs=2, metavar=("COPY", "SUITE"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        return worker(Path(a.worker[0]), a.worker[1])
    ms = all_mutants()
    if a.list:
        for m in ms:
            print(f"{m.name:24s} {m.file:22s} {'fast ' if m.fast else '     '}{m.what}")
        return 0
    if a.names:
        known = {m.name: m for m in ms}
        bad = [n for n in a.names if n not in known]
        if bad:
            raise SystemExit(f"unknown mutants {bad}; --list shows them")
        ms = [known[n] for n in a.names]
    elif a.fast:
        ms = [m for m in ms if m.fast]
    if a.suites:
        sl = a.suites.split(",")
        bad = [x for x in sl if x not in SUITES]
        if bad:
            raise SystemExit(f"unknown suites {bad}; known: {sorted(SUITES)}")
        ms = [dataclasses.replace(m, suites=sl) for m in ms]
    # every snippet must apply to the current RTL before anything runs
    for m in ms:
        with tempfile.TemporaryDirectory() as t:
            (Path(t) / "hls_verilog").mkdir()
            shutil.copy(ROOT / "hls_verilog" / m.file, Path(t) / "hls_verilog" / m.file)
            apply_mutant(Path(t), m)
    seed = os.environ.get("INTERGRAD_SEED", "1")
    print(f"INTERGRAD_SEED={seed}; {len(ms)} mutants; logs in {a.logdir}", flush=True)
    rows = run(ms, seed, baseline=not a.no_baseline and not a.fast, timeout=a.timeout,
               logdir=a.logdir, keep=a.keep)
    if a.markdown:
        a.markdown.write_text(markdown(rows, seed))
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    bad = [r for r in rows if r["verdict"] not in ("killed", "passed")]
    if bad:
        print("NOT KILLED / INVALID / BASELINE FAILED: " + ", ".join(
            f"{r['name']} ({r['verdict']})" for r in bad))
        return 1
    print(f"all {len(ms)} mutants killed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
