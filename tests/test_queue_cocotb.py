"""Job queues (in-band job descriptors) in cocotb: tests/cocotb/test_queue.py on Verilator,
built per configuration as tests/test_rtl_cocotb.py does (the same build directories)."""
from __future__ import annotations

import pytest

from intergrad import rtl

from test_rtl_cocotb import BUILD, CONFIGS, HERE, run_seed


@pytest.mark.parametrize("name,cfg,max_b", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_queue_verilator(name, cfg, max_b):
    seed = run_seed()
    total, failed = rtl.run_cocotb(
        "verilator", cfg, BUILD / f"verilator_{name}", "test_queue", HERE / "cocotb",
        extra_env={"IG_MAX_B": str(max_b), "INTERGRAD_SEED": seed, "IG_SEED": seed})
    assert total > 0, "no cocotb test ran"
    assert failed == 0, f"{failed} of {total} cocotb tests failed (see the log above)"
