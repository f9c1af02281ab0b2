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
        output beats; wait until the core is idle.  Raises DeviceTimeout."""

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
            st = self.status()
            c = self.counters()
            st_s = ", ".join(f"{k}={v}" for k, v in st.items())
            if st.get("ERROR"):
                st_s += f" ({spec.error_name(st['ERR_CAUSE'])})"
            c_s = ", ".join(f"{k}={v}" for k, v in c.items())
            return f"{what}\n  status: {st_s}\n  counters: {c_s}"
        except Exception as e:  # the device may be wedged too
            return f"{what}\n  (status unreadable: {e})"
