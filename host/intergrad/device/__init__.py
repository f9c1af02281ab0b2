"""Device backends behind one interface, ``sim`` (Verilator) and ``pynq`` (board), and the
one factory that opens them by name (:data:`intergrad.registry.BACKENDS`)."""
from __future__ import annotations

from pathlib import Path

from ..registry import BACKENDS, DEFAULT_BACKEND
from ..spec import ArrayConfig
from .base import CoreError, Device, DeviceError, DeviceTimeout


class BackendUnavailable(ValueError):
    """The backend asked for cannot run here (no board, no overlay): found before opening."""


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


def resolve_backend(backend: str = DEFAULT_BACKEND, bitfile=None) -> tuple[str, Path | None]:
    """(backend, overlay .bit or None) that :func:`open_device` would open; ``auto`` resolved.
    :class:`BackendUnavailable` when it cannot run here: checked before anything is loaded."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        backend = "pynq" if board_present() else "sim"
    elif backend == "pynq" and not board_present():
        raise BackendUnavailable("--backend pynq: no PYNQ board here (no FPGA manager or no "
                                 "pynq package); use --backend sim for the simulated hardware")
    if backend == "sim":
        return backend, None
    from ..overlays import OverlayNotFound, find_overlay
    try:
        return backend, find_overlay(bitfile)
    except OverlayNotFound as e:
        raise BackendUnavailable(str(e)) from None


def open_device(backend: str = DEFAULT_BACKEND, cfg: ArrayConfig | None = None, *,
                bitfile=None, **kw) -> Device:
    """Open a device: the board when one is there (``auto``), else the simulated hardware of
    build ``cfg`` (the board reports its own).  ``kw`` go to the backend's class."""
    if backend == "pynq" and "pynq_module" in kw:     # an emulated pynq: no board to look for
        from .pynq_backend import PynqDevice
        return PynqDevice(bitfile, **kw)
    backend, overlay = resolve_backend(backend, bitfile)
    if backend == "pynq":
        from .pynq_backend import PynqDevice
        return PynqDevice(overlay, **kw)
    from .sim import SimDevice
    return SimDevice(cfg, **kw)


def open_accelerator(backend: str = DEFAULT_BACKEND, cfg: ArrayConfig | None = None, **kw):
    """:func:`open_device` wrapped in the register-level driver (``accel.device`` is the
    device; close it when done)."""
    from ..driver import Accelerator
    return Accelerator(open_device(backend, cfg, **kw))


__all__ = ["BACKENDS", "BackendUnavailable", "CoreError", "Device", "DeviceError",
           "DeviceTimeout", "board_present", "open_accelerator", "open_device",
           "resolve_backend"]
