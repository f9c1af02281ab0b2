"""The names a user picks, in one place: device backends and backward-pass schedules.

Importing this module costs nothing (no numpy, no device code), so the command lines build
their ``--backend`` / ``--schedule`` choices and help from it.  The one device factory that
takes these names is :func:`intergrad.device.open_device`; the passes each schedule runs are
:data:`intergrad.plan.SCHEDULES` (a test keeps both lists of schedules the same).
"""
from __future__ import annotations

#: device backend -> what it is (``auto``: the board when one is there, else ``sim``)
BACKENDS: dict[str, str] = {
    "auto": "the PYNQ board if present, else the simulated RTL",
    "sim": "the simulated RTL (Verilator)",
    "pynq": "the PYNQ board (its overlay: --bitfile, $INTERGRAD_OVERLAY, the package's, "
            "then overlay/ of the source tree)",
}

#: backward-pass schedule -> what it runs per layer (the forward pass is the same for both)
SCHEDULES: dict[str, str] = {
    "intergrad": "one interleaved InterGrad pass (dX and dW from one dY stream)",
    "baseline": "separate dX (weight-stationary) and dW (output-stationary) passes",
}

DEFAULT_BACKEND = "auto"
DEFAULT_SCHEDULE = "intergrad"


def help_text(table: dict[str, str]) -> str:
    """``name: description; ...`` for a command line's help."""
    return "; ".join(f"{k}: {v}" for k, v in table.items())
