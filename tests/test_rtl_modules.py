"""Module testbenches of the PE and the array (one cocotb testbench per RTL module, as
verilog-axis has), each built with cocotb_tools.runner for several parameter sets.

The RTL is the one intergrad.rtl finds (the worktree's hls_verilog/); the seed comes from
INTERGRAD_SEED (random per run when unset, printed, so a failure can be rerun).
"""
from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

import pytest

from intergrad import rtl

HERE = Path(__file__).resolve().parent
BUILD = HERE.parent / "sim_build"
COCOTB_DIR = HERE / "cocotb"


def run_seed() -> int:
    """The run's seed: INTERGRAD_SEED if set, else a random one (printed)."""
    s = os.environ.get("INTERGRAD_SEED") or os.environ.get("IG_SEED")
    if s is None:
        s = str(random.SystemRandom().randrange(1, 1 << 31))
    os.environ["INTERGRAD_SEED"] = s
    print(f"\nINTERGRAD_SEED={s} (set it to rerun with the same stimulus)")
    return int(s)


def run_module(sim: str, toplevel: str, params: dict, build_dir: Path, test_module: str,
               testcase=None, extra_env: dict | None = None, rtl_dir: Path | None = None
               ) -> tuple[int, int]:
    """Build one RTL module as the toplevel and run a cocotb module on it; (run, failed)."""
    from cocotb_tools.runner import get_results, get_runner

    d = Path(rtl_dir) if rtl_dir is not None else rtl.rtl_dir()
    srcs = [d / s for s in rtl.SOURCES if s != "intergrad_top.v"]
    if sim == "verilator":
        rtl.check_build_tools()
        rtl.ensure_verilator_on_path()
        build_args = ["-Wall", "-Wno-fatal", "--x-assign", "unique", "--x-initial", "unique"]
    else:
        build_args = []
    if str(COCOTB_DIR) not in sys.path:
        sys.path.insert(0, str(COCOTB_DIR))
    runner = get_runner(sim)
    rtl.cocotb_build(runner, sim, srcs, [d], build_dir, hdl_toplevel=toplevel,
                     parameters=params, build_args=build_args, timescale=("1ns", "1ps"))
    env = {"MOD_PARAMS": json.dumps(params),
           "INTERGRAD_SEED": os.environ.get("INTERGRAD_SEED", "1")}
    env.update(extra_env or {})
    results = runner.test(hdl_toplevel=toplevel, test_module=test_module, testcase=testcase,
                          build_dir=build_dir, test_dir=build_dir, extra_env=env)
    return get_results(results)


def _check(total, failed):
    assert total > 0, "no cocotb test ran"
    assert failed == 0, f"{failed} of {total} cocotb tests failed (see the log above)"


# (id, parameters): both PE variants, a narrow and a wide accumulator, PE positions that
# take different weight lanes
PE_CONFIGS = [
    ("d16a32_dual_r0c0", dict(DATA_W=16, ACC_W=32, DUAL_MAC=1, ROW=0, COL=0)),
    ("d16a32_single_r2c5", dict(DATA_W=16, ACC_W=32, DUAL_MAC=0, ROW=2, COL=5)),
    ("d8a16_dual_r3c1", dict(DATA_W=8, ACC_W=16, DUAL_MAC=1, ROW=3, COL=1)),
    ("d8a20_single_r1c2", dict(DATA_W=8, ACC_W=20, DUAL_MAC=0, ROW=1, COL=2)),
]

# square and non-square arrays, both PE variants, narrow widths
ARRAY_CONFIGS = [
    ("3x5_dual", dict(ROWS=3, COLS=5, DATA_W=16, ACC_W=32, DUAL_MAC=1)),
    ("4x2_single", dict(ROWS=4, COLS=2, DATA_W=16, ACC_W=32, DUAL_MAC=0)),
    ("4x4_d8a20_dual", dict(ROWS=4, COLS=4, DATA_W=8, ACC_W=20, DUAL_MAC=1)),
    ("1x3_single", dict(ROWS=1, COLS=3, DATA_W=8, ACC_W=16, DUAL_MAC=0)),
]


@pytest.mark.parametrize("name,params", PE_CONFIGS, ids=[c[0] for c in PE_CONFIGS])
def test_pe_module(name, params):
    run_seed()
    _check(*run_module("verilator", "intergrad_pe", params, BUILD / f"pe_{name}", "test_pe"))


@pytest.mark.parametrize("name,params", ARRAY_CONFIGS, ids=[c[0] for c in ARRAY_CONFIGS])
def test_array_module(name, params):
    run_seed()
    _check(*run_module("verilator", "intergrad_array", params, BUILD / f"array_{name}",
                       "test_array"))


@pytest.mark.icarus
@pytest.mark.skipif(rtl.iverilog_bin() is None, reason="iverilog not installed (optional)")
def test_modules_icarus():
    run_seed()
    _check(*run_module("icarus", "intergrad_pe", PE_CONFIGS[1][1], BUILD / "icarus_pe",
                       "test_pe", extra_env={"PE_CYCLES": "1500"}))
    _check(*run_module("icarus", "intergrad_array", ARRAY_CONFIGS[0][1],
                       BUILD / "icarus_array", "test_array", extra_env={"ARRAY_CYCLES": "800"}))


# the top-level protocol testbench (tests/cocotb/test_protocol.py): raw AXI-Lite master at
# chosen skews and backpressure, aborted frames and soft reset checked at the sink
PROTOCOL_CONFIGS = [
    ("3x4_dual", (3, 4, 16, 32, 1)),
    ("4x6_single", (4, 6, 16, 32, 0)),
]


@pytest.mark.parametrize("name,cfgt", PROTOCOL_CONFIGS, ids=[c[0] for c in PROTOCOL_CONFIGS])
def test_protocol_top(name, cfgt):
    from intergrad.spec import ArrayConfig
    seed = run_seed()
    _check(*rtl.run_cocotb("verilator", ArrayConfig(*cfgt), BUILD / f"protocol_{name}",
                           "test_protocol", COCOTB_DIR,
                           extra_env={"INTERGRAD_SEED": str(seed), "IG_SEED": str(seed)}))


@pytest.mark.icarus
@pytest.mark.skipif(rtl.iverilog_bin() is None, reason="iverilog not installed (optional)")
def test_protocol_top_icarus():
    """The protocol testbench on Icarus too: 4-state, so the monitors' X/Z checks bite."""
    from intergrad.spec import ArrayConfig
    seed = run_seed()
    _check(*rtl.run_cocotb("icarus", ArrayConfig(3, 4, 16, 32, 1), BUILD / "icarus_protocol",
                           "test_protocol", COCOTB_DIR,
                           extra_env={"INTERGRAD_SEED": str(seed), "IG_SEED": str(seed)}))


def test_build_dir_from_another_venv_is_rebuilt(tmp_path):
    """A cocotb build directory in the shared cache that another checkout's venv made (its
    Makefile and dependency files name that venv's cocotb ``verilator.cpp``, which is gone)
    is emptied and rebuilt, not handed to make ("No rule to make target ... verilator.cpp",
    the CI failure of 2026-12-03); a directory this toolchain built is kept."""
    from cocotb_tools.runner import get_runner

    rtl.check_build_tools()
    rtl.ensure_verilator_on_path()
    d = rtl.rtl_dir()
    srcs = [d / "intergrad_delay.v"]
    build = tmp_path / "delay"
    kw = dict(hdl_toplevel="intergrad_delay", parameters={"WIDTH": 4, "DEPTH": 2},
              build_args=["-Wno-fatal"], timescale=("1ns", "1ps"))
    runner = get_runner("verilator")
    rtl.cocotb_build(runner, "verilator", srcs, [d], build, **kw)
    stamp = rtl.build_toolchain_stamp("verilator", srcs, [d])
    assert json.loads((build / rtl.BUILD_STAMP).read_text()) == stamp
    marker = build / "kept.marker"
    marker.write_text("x")
    rtl.cocotb_build(runner, "verilator", srcs, [d], build, **kw)
    assert marker.exists(), "a build directory of this toolchain was emptied"

    # make the directory look as another venv left it: every path to this cocotb install
    # in make's inputs points at one that does not exist, and the stamp says so too
    real = stamp["cocotb"]
    gone = str(tmp_path / "gone-venv" / "cocotb")
    n = 0
    for f in build.rglob("*"):
        if f.is_file() and f.suffix in (".d", ".mk", ".dat"):
            t = f.read_text(errors="replace")
            if real in t:
                f.write_text(t.replace(real, gone))
                n += 1
    assert n, "no make input names cocotb's install: the reproduction does not reproduce"
    (build / rtl.BUILD_STAMP).write_text(json.dumps(dict(stamp, cocotb=gone)))
    with pytest.raises(RuntimeError):   # what an unguarded build does with this directory
        runner.build(sources=srcs, includes=[d], build_dir=build, always=False, **kw)
    rtl.cocotb_build(runner, "verilator", srcs, [d], build, **kw)
    assert not marker.exists()
    assert json.loads((build / rtl.BUILD_STAMP).read_text()) == stamp
    assert rtl.prepare_build_dir(build, stamp) is False


def test_prepare_build_dir_rules(tmp_path):
    st = {"sim": "verilator", "cocotb": "/a"}
    empty = tmp_path / "empty"
    empty.mkdir()
    assert rtl.prepare_build_dir(empty, st) is False and empty.exists()
    assert rtl.prepare_build_dir(tmp_path / "missing", st) is False
    unstamped = tmp_path / "unstamped"
    unstamped.mkdir()
    (unstamped / "Vtop.mk").write_text("x")
    assert rtl.prepare_build_dir(unstamped, st) is True and not unstamped.exists()
    other = tmp_path / "other"
    rtl.write_build_stamp(other, dict(st, cocotb="/b"))
    assert rtl.prepare_build_dir(other, st) is True and not other.exists()
    same = tmp_path / "same"
    rtl.write_build_stamp(same, st)
    assert rtl.prepare_build_dir(same, st) is False and (same / rtl.BUILD_STAMP).exists()
