"""Job-level driver of one intergrad core on any Device backend."""
from __future__ import annotations

import functools

import numpy as np

from . import spec
from .device.base import CoreError, Device, DeviceError, status_bit
from .core import CoreState, Job, JobError, pack_beats, register_writes, unpack_beats

__all__ = ["Accelerator", "CoreError"]

# per-job constants, looked up once (a pass has thousands of jobs of a few kinds)
_CTRL, _STATUS = spec.REG["CTRL"].offset, spec.REG["STATUS"].offset
_START = spec.pack_fields("CTRL", START=1)
_ERROR = status_bit("ERROR")


@functools.lru_cache(maxsize=1024)
def _program(job: Job) -> tuple[tuple[str, int], ...]:
    """register_writes(job), computed once per distinct job."""
    return tuple(register_writes(job))


class Accelerator:
    """Programs jobs into the core and streams their data through the device.

    The hardware build (array size, widths) is read back from the ID and configuration
    registers, so the host never assumes it.
    """

    def __init__(self, device: Device, timeout: float = 30.0):
        self.device = device
        self.timeout = timeout
        magic = device.read(spec.REG["ID"].offset)
        if magic != spec.ID_MAGIC:
            raise DeviceError(f"no intergrad core at this device: ID reads 0x{magic:08X}, "
                              f"expected 0x{spec.ID_MAGIC:08X}")
        self.version = device.read(spec.REG["VERSION"].offset)
        self.cfg = spec.config_from_registers(device.read(spec.REG["CFG_ARRAY"].offset),
                                              device.read(spec.REG["CFG_WIDTH"].offset))
        dcfg = getattr(device, "cfg", None)
        if dcfg is not None and dcfg != self.cfg:
            raise DeviceError(f"device reports build {self.cfg}, backend was opened for {dcfg}")
        self._shadow: dict[str, int] = {}
        self.state = CoreState()
        #: jobs sent in job queues so far (each with a header beat): a pass's share tells
        #: the counter formulas (core.expected_counters(queued=...)) how it ran
        self.queued_jobs = 0  # the core's pending preload / saved accumulators
        #: device accesses made through this accelerator other than counter reads (a job,
        #: a register write, a reset, a status read, a recovery): :meth:`counters` with
        #: ``reuse`` compares it with the count at its last snapshot
        self.touches = 0
        self._snapshot: tuple | None = None   # (touches, device cycle, counters) of the last read
        self.recover()  # whatever a previous user left: the core and the DMA start idle

    # -- registers --------------------------------------------------------------------
    def _wr(self, name: str, value: int, cache: bool = True) -> None:
        if cache and self._shadow.get(name) == value:
            return
        self.touches += 1
        self.device.write(spec.REG[name].offset, value)
        self._shadow[name] = value

    def soft_reset(self) -> None:
        self.touches += 1
        self.device.write(spec.REG["CTRL"].offset, spec.pack_fields("CTRL", SOFT_RESET=1))
        self._forget()

    def recover(self) -> None:
        """The backend's full recovery sequence (soft reset, DMA reset, drain, idle check)."""
        self.touches += 1
        self.device.recover()
        self._forget()

    def _forget(self) -> None:
        self.state.reset()
        self._shadow.clear()  # rewrite every job register after a reset

    def reset_counters(self) -> None:
        self.touches += 1
        self.device.write(spec.REG["CTRL"].offset, spec.pack_fields("CTRL", CNT_RESET=1))

    def counters(self, *, reuse: bool = False) -> dict[str, int]:
        """All performance counters, snapshotted at one instant.

        ``reuse``: when nothing can have changed them since the last snapshot read here, that
        snapshot (no AXI-Lite reads): no device access went through this accelerator since
        (:attr:`touches`) and, on a backend with a cycle count (the simulator), no clock
        cycle passed, so an access made straight to the device is seen too.  Every counter
        but ``cycles`` (which counts on regardless) has the value a read would give: for
        differences of the others, e.g. a pass's counters (the scheduler's ``before``)."""
        snap = self._snapshot
        if reuse and snap is not None and snap[0] == self.touches \
                and snap[1] == getattr(self.device, "cycle", None):
            return dict(snap[2])
        self._snapshot = None   # a read that raises leaves no snapshot
        c = self.device.counters()
        self._snapshot = (self.touches, getattr(self.device, "cycle", None), dict(c))
        return c

    def status(self) -> dict[str, int]:
        self.touches += 1
        return self.device.status()

    # -- jobs ---------------------------------------------------------------------------
    def run_job(self, job: Job, lanes: np.ndarray, timeout: float | None = None) -> np.ndarray:
        """Run one job; ``lanes`` are its input beats as (n, in_lanes) integers.  Returns the
        output beats as (n, out_lanes) int64."""
        cfg = self.cfg
        try:
            self.state.check(cfg, job)
        except JobError as e:
            raise JobError(e.name, f"{job.describe()}: {e}") from None
        lanes = np.asarray(lanes)
        if lanes.shape != (job.in_beats(), cfg.in_lanes):
            raise ValueError(f"job needs {job.in_beats()} input beats of {cfg.in_lanes} lanes, "
                             f"got array of shape {lanes.shape}")
        for name, value in _program(job):
            self._wr(name, value)
        data = pack_beats(lanes, cfg.data_w, cfg.in_axis_bits)
        try:
            raw = self._start(_START, data, job.out_beats(), timeout)
        except DeviceError as e:
            # the backend ran its recovery sequence: the core was soft-reset (preloaded
            # weights and saved accumulators are gone) and is idle
            self._forget()
            what = job.describe()
            if isinstance(e, CoreError):
                raise CoreError(f"{what}: {e}", e.cause) from e
            raise type(e)(f"{what}: {e}") from e
        self.state.apply(job)
        return unpack_beats(raw, cfg.out_lanes, cfg.acc_w, cfg.out_axis_bits)

    def _start(self, ctrl: int, data: bytes | np.ndarray, out_beats: int,
               timeout: float | None) -> bytes:
        """Write CTRL (START or QUEUE), stream ``data`` in and ``out_beats`` out, check STATUS.
        Raises DeviceError (a CoreError for an error the core reported) after the backend's
        recovery sequence."""
        self.touches += 1
        self.device.write(_CTRL, ctrl)
        raw = self.device.transfer(data, out_beats, self.timeout if timeout is None else timeout)
        word = self.device.read(_STATUS)
        if word & _ERROR:  # a backend raises CoreError itself; this is a second line
            self.device.recover()
            cause = spec.error_name(spec.unpack_field("STATUS", "ERR_CAUSE", word))
            raise CoreError(f"core reported {cause}: {spec.ERRORS.get(cause, (0, ''))[1]}",
                            cause)
        return raw

    def run_pass(self, jobs, lanes_list, timeout: float | None = None) -> list[np.ndarray]:
        """Run a whole pass as job queues, one device transfer per queue
        (:func:`intergrad.jobqueue.run_pass`); returns each job's output beats."""
        from .jobqueue import run_pass
        return run_pass(self, jobs, lanes_list, timeout)

    def run_pass_lanes(self, jobs, lanes, timeout: float | None = None) -> np.ndarray:
        """:meth:`run_pass` with all input beats in one array (the jobs' beats back to back);
        returns all output beats in one array (:func:`intergrad.jobqueue.run_pass_lanes`)."""
        from .jobqueue import run_pass_lanes
        return run_pass_lanes(self, jobs, lanes, timeout)

    def run_pass_source(self, jobs, source, in_index, timeout: float | None = None) -> np.ndarray:
        """:meth:`run_pass_lanes` of the lanes ``source[in_index]``, gathered straight into
        the queues' frames (:func:`intergrad.jobqueue.run_pass_source`)."""
        from .jobqueue import run_pass_source
        return run_pass_source(self, jobs, source, in_index, timeout)

    def describe(self) -> dict:
        c = self.cfg
        return {"backend": getattr(self.device, "backend", "?"),
                "id": f"0x{spec.ID_MAGIC:08X}",
                "version": f"{self.version >> 24}.{(self.version >> 16) & 0xFF}.{self.version & 0xFFFF}",
                "array": f"{c.rows}x{c.cols}", "data_w": c.data_w, "acc_w": c.acc_w,
                "dual_mac": c.dual_mac}
