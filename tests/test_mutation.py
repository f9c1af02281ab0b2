"""Mutation check, fast part: every named RTL mutant still applies to the current RTL (its
snippet occurs exactly once), and a small subset of mutants is killed by the testbenches.
The full run (every mutant, with an unmutated baseline) is
``python tests/mutation/run_mutants.py``; its table is in docs/verification.md.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "mutation" / "run_mutants.py"


def _load():
    spec = importlib.util.spec_from_file_location("run_mutants", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["run_mutants"] = mod
    spec.loader.exec_module(mod)
    return mod


rm = _load()


def test_mutants_apply_to_current_rtl(tmp_path):
    ms = rm.all_mutants()
    assert len(ms) >= 12
    assert len({m.name for m in ms}) == len(ms)
    (tmp_path / "hls_verilog").mkdir()
    for m in ms:
        assert all(s in rm.SUITES for s in m.suites), m.name
        shutil.copy(rm.ROOT / "hls_verilog" / m.file, tmp_path / "hls_verilog" / m.file)
        before = (tmp_path / "hls_verilog" / m.file).read_text()
        rm.apply_mutant(tmp_path, m)     # raises if the snippet is not found exactly once
        assert (tmp_path / "hls_verilog" / m.file).read_text() != before, m.name
    # the worktree's RTL is untouched
    for m in ms:
        assert m.orig in (rm.ROOT / "hls_verilog" / m.file).read_text()


def test_missing_snippet_fails_loudly(tmp_path):
    (tmp_path / "hls_verilog").mkdir()
    (tmp_path / "hls_verilog" / "x.v").write_text("module x; endmodule\n")
    m = rm.Mutant("nope", "x.v", "not in the file", "", [], "")
    with pytest.raises(SystemExit, match="snippet found 0 times"):
        rm.apply_mutant(tmp_path, m)


@pytest.mark.slow
def test_fast_mutants_killed(tmp_path):
    fast = [m for m in rm.all_mutants() if m.fast]
    assert fast
    seed = os.environ.get("INTERGRAD_SEED", "1")
    rows = rm.run(fast, seed, baseline=False, timeout=600, logdir=tmp_path, quiet=True)
    bad = [r for r in rows if r["verdict"] != "killed"]
    assert not bad, f"mutants not killed: {bad} (logs in {tmp_path})"
