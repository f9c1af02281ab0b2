"""The pynq backend with the real ``pynq`` package's DMA driver over the DMA model (see
tests/real_pynq_check.py).  ``pynq`` pins numpy < 2, so it runs in its own environment,
named by INTERGRAD_PYNQ_PYTHON; skipped without it (the main test run does not need it)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PY = os.environ.get("INTERGRAD_PYNQ_PYTHON")


@pytest.mark.skipif(not PY, reason="set INTERGRAD_PYNQ_PYTHON to a python with pynq installed")
def test_real_pynq_dma_driver_over_the_model():
    from intergrad.device.sim import build_library
    from intergrad.spec import ArrayConfig
    cfg = ArrayConfig()
    lib = build_library(cfg)
    script = Path(__file__).with_name("real_pynq_check.py")
    r = subprocess.run([PY, str(script), str(lib), str(cfg.rows), str(cfg.cols), str(cfg.data_w),
                        str(cfg.acc_w), str(cfg.dual_mac)], capture_output=True, text=True,
                       timeout=300)
    sys.stdout.write(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "5 passed, 0 failed" in r.stdout
