"""The device interface every backend implements (simulated hardware, PYNQ board).

It is the shape of a PYNQ overlay with one AXI-Lite core and one AXI DMA: 32-bit register
reads and writes at byte offsets, and a transfer that sends one input buffer (DMA MM2S)
while receiving a known number of output beats (DMA S2MM), with a timeout.
"""
from __future__ import annotations

import abc

import numpy as np

from .. import spec
from ..spec import ArrayConfig


class DeviceError(RuntimeError):
    """The device reported or caused an error."""


class DeviceTimeout(DeviceError, TimeoutError):
    """The device did not finish in time; the message carries its status and counters."""


class CoreError(DeviceError):
    """The core ended a job with its STATUS.ERROR bit set; ``cause`` is the error's name in
    :data:`intergrad.spec.ERRORS` (e.g. ``EARLY_TLAST``).  Raised after the backend's
    recovery sequence, so the device is idle and the next job can run."""

    def __init__(self, msg: str, cause: str):
        super().__init__(msg)
        self.cause = cause


def status_bit(name: str) -> int:
    """Mask of a one-bit STATUS field, 0 when this spec has no such field (an older core)."""
    for f in spec.REG["STATUS"].fields:
        if f[0] == name:
            return ((1 << f[2]) - 1) << f[1]
    return 0


def error_cause(status_word: int) -> str:
    return spec.error_name(spec.unpack_field("STATUS", "ERR_CAUSE", status_word))


def describe_status(status_word: int) -> str:
    parts = [f"{f[0]}={spec.unpack_field('STATUS', f[0], status_word)}"
             for f in spec.REG["STATUS"].fields]
    s = ", ".join(parts)
    if status_word & status_bit("ERROR"):
        s += f" ({error_cause(status_word)})"
    return s


class Device(abc.ABC):
    cfg: ArrayConfig
    backend: str = "?"

    @abc.abstractmethod
    def read(self, offset: int) -> int:
        """32-bit AXI-Lite read."""

    @abc.abstractmethod
    def write(self, offset: int, value: int) -> None:
        """32-bit AXI-Lite write."""

    @abc.abstractmethod
    def transfer(self, data: bytes | np.ndarray, out_beats: int, timeout: float = 10.0) -> bytes:
        """Send ``data`` (whole input beats, tlast on the last) and return ``out_beats``
        output beats; wait until the core is idle.

        The receive ends at the output frame's TLAST, as a DMA S2MM transfer does.  STATUS
        is polled while the streams run: a core error raises :class:`CoreError` (naming the
        cause) as soon as it shows, a timeout :class:`DeviceTimeout` (with status and
        counters); both after :meth:`recover` (docs/board.md), so the next job works.  The
        frame of an aborted job (its beats, then the abort beat) is discarded.  Any other
        inconsistency (a short frame without an error, more beats than expected) raises
        :class:`DeviceError`, also after recovery."""

    @abc.abstractmethod
    def recover(self) -> None:
        """The recovery sequence of docs/board.md: soft-reset the core (its open frame ends
        with the abort beat), reset the DMA (bounded), drain an output beat still pending
        (bounded), check that STATUS reads idle.  Raises DeviceError if it does not."""

    def close(self) -> None:  # pragma: no cover - trivial
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- helpers shared by backends ------------------------------------------------------
    def status(self) -> dict[str, int]:
        w = self.read(spec.REG["STATUS"].offset)
        return {f[0]: spec.unpack_field("STATUS", f[0], w) for f in spec.REG["STATUS"].fields}

    def counters(self) -> dict[str, int]:
        """All performance counters, snapshotted at one instant."""
        self.write(spec.REG["CTRL"].offset, spec.pack_fields("CTRL", CNT_SNAPSHOT=1))
        out = {}
        for i, (name, _) in enumerate(spec.COUNTERS):
            lo = self.read(spec.COUNTER_BASE + 8 * i)
            hi = self.read(spec.COUNTER_BASE + 8 * i + 4)
            out[name] = (hi << 32) | lo
        return out

    def _timeout_message(self, what: str) -> str:
        try:
            c = self.counters()
            st_s = describe_status(self.read(spec.REG["STATUS"].offset))
            c_s = ", ".join(f"{k}={v}" for k, v in c.items())
            return f"{what}\n  status: {st_s}\n  counters: {c_s}"
        except Exception as e:  # the device may be wedged too
            return f"{what}\n  (status unreadable: {e})"
