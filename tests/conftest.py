import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the package is installed with `pip install -e .`; this keeps a plain checkout importable too
sys.path.insert(0, str(ROOT / "host"))

import pytest  # noqa: E402

from intergrad.spec import ArrayConfig  # noqa: E402

#: simulated builds shared by the driver, board-backend and model-vs-RTL tests
SIM_CFGS = [ArrayConfig(8, 8, 16, 32, 1), ArrayConfig(4, 6, 16, 32, 0)]


@pytest.fixture(scope="session", params=SIM_CFGS, ids=lambda c: f"{c.rows}x{c.cols}m{c.dual_mac}")
def _sim_device(request):
    from intergrad.device.sim import SimDevice
    d = SimDevice(request.param, verbose=False)
    yield d
    d.close()


@pytest.fixture
def dev(_sim_device):
    """The Verilator-compiled core (built once per configuration, cached on disk), with
    any stall injection a test set undone afterwards."""
    yield _sim_device
    _sim_device.set_stalls(0.0, 0.0)
