"""Device backends behind one interface: ``sim`` (Verilator) and ``pynq`` (board)."""
from __future__ import annotations

from ..spec import ArrayConfig
from .base import CoreError, Device, DeviceError, DeviceTimeout

BACKENDS = ("auto", "sim", "pynq")


def board_present() -> bool:
    """True on a PYNQ board (pynq importable and an FPGA manager present)."""
    import os
    if not (os.path.exists("/dev/xdevcfg") or os.path.exists("/sys/class/fpga_manager/fpga0")):
        return False
    try:
        import pynq  # noqa: F401  # type: ignore
    except ImportError:
        return False
    return True


def open_device(backend: str = "auto", cfg: ArrayConfig | None = None, **kw) -> Device:
    """Open a device: the board when one is there (``auto``), else the simulated hardware."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        backend = "pynq" if board_present() else "sim"
    if backend == "pynq":
        from .pynq_backend import PynqDevice
        return PynqDevice(**kw)
    from .sim import SimDevice
    return SimDevice(cfg, **kw)


__all__ = ["CoreError", "Device", "DeviceError", "DeviceTimeout", "open_device", "BACKENDS", "board_present"]
