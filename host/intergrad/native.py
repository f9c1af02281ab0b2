"""Native kernels of the host data path: the gathers that build a pass's input frames from
its source vector (and im2col's) and that decode its output beats, and col2im's sum.

numpy's fancy indexing (``vec[index]``) reads an 8-byte index per element and goes through
its generic iterator; these loops read 4-byte indices and write the result in place.  They
are compiled on first use with the C++ compiler the simulator needs anyway (``g++``, or
``$CXX``), cached beside the simulator libraries (:func:`intergrad.rtl.cache_root`), and
loaded with ctypes.  Every function here has the numpy result as its definition and falls
back to it when the library cannot be built or ``INTERGRAD_NATIVE=0`` is set
(tests/test_native.py compares both on random inputs).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

__all__ = ["available", "col2im", "index", "take", "take_sum"]

SRC = r"""
#include <stddef.h>
#include <stdint.h>

// out[i] = v[idx[i]] for v of nv > 0 elements.  Every index is checked: one past the end
// reads v[0] instead and the call returns 1 (the caller raises), else 0.
#define IG_TAKE(name, T)                                                              \
    int name(const T* __restrict v, size_t nv, const uint32_t* __restrict idx,       \
             size_t n, T* __restrict out) {                                           \
        uint32_t bad = 0;                                                             \
        for (size_t i = 0; i < n; ++i) {                                              \
            const uint32_t k = idx[i];                                                \
            bad |= k >= nv;                                                           \
            out[i] = v[k < nv ? k : 0];                                               \
        }                                                                             \
        return bad != 0;                                                              \
    }

// out[i] = sum over t < tiles of v[idx[t * n + i]], in int64 (indices checked as above)
#define IG_TAKE_SUM(name, T)                                                          \
    int name(const T* __restrict v, size_t nv, const uint32_t* __restrict idx,       \
             size_t tiles, size_t n, int64_t* __restrict out) {                       \
        uint32_t bad = 0;                                                             \
        for (size_t t = 0; t < tiles; ++t) {                                          \
            const uint32_t* it = idx + t * n;                                         \
            for (size_t i = 0; i < n; ++i) {                                          \
                const uint32_t k = it[i];                                             \
                bad |= k >= nv;                                                       \
                const int64_t x = v[k < nv ? k : 0];                                  \
                out[i] = t ? out[i] + x : x;                                          \
            }                                                                         \
        }                                                                             \
        return bad != 0;                                                              \
    }

// the adjoint of im2col: xp (B, C, Hp, Wp), zeroed, += cols (B*Ho*Wo, C*kh*kw; rows
// (b, i, j), columns (c, di, dj)) at each patch.  The kernel offsets (di, dj) are the outer
// loops, as in conv.col2im's numpy loop: every pixel gets its terms in the same order, so
// float sums are the numpy loop's bit for bit.
#define IG_COL2IM(name, T)                                                            \
    void name(const T* __restrict cols, size_t B, size_t C, size_t Ho, size_t Wo,    \
              size_t kh, size_t kw, size_t stride, size_t Hp, size_t Wp,             \
              T* __restrict xp) {                                                     \
        const size_t K = kh * kw;                                                     \
        for (size_t di = 0; di < kh; ++di)                                            \
            for (size_t dj = 0; dj < kw; ++dj) {                                      \
                const T* p = cols + di * kw + dj;                                     \
                for (size_t b = 0; b < B; ++b)                                        \
                    for (size_t i = 0; i < Ho; ++i)                                   \
                        for (size_t j = 0; j < Wo; ++j) {                             \
                            T* x = xp + (b * C * Hp + i * stride + di) * Wp           \
                                   + j * stride + dj;                                 \
                            for (size_t c = 0; c < C; ++c, p += K) x[c * Hp * Wp] += *p; \
                        }                                                             \
            }                                                                         \
    }

extern "C" {
IG_COL2IM(ig_col2im_i32, int32_t)
IG_COL2IM(ig_col2im_i64, int64_t)
IG_COL2IM(ig_col2im_f32, float)
IG_COL2IM(ig_col2im_f64, double)
IG_TAKE(ig_take_i8, int8_t)
IG_TAKE(ig_take_i16, int16_t)
IG_TAKE(ig_take_i32, int32_t)
IG_TAKE(ig_take_i64, int64_t)
IG_TAKE_SUM(ig_take_sum_i8, int8_t)
IG_TAKE_SUM(ig_take_sum_i16, int16_t)
IG_TAKE_SUM(ig_take_sum_i32, int32_t)
IG_TAKE_SUM(ig_take_sum_i64, int64_t)
}
"""

_TYPES = {np.dtype(np.int8): "i8", np.dtype(np.int16): "i16", np.dtype(np.int32): "i32",
          np.dtype(np.int64): "i64"}
_COL2IM = {np.dtype(np.int32): "i32", np.dtype(np.int64): "i64",
           np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
#: why the library is not used (None while it is, or before the first use)
reason: str | None = None


def _compile(cxx: str, lib: Path) -> None:
    lib.parent.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=lib.parent.parent) as td:
        src = Path(td) / "native.cpp"
        src.write_text(SRC)
        r = subprocess.run([cxx, "-O3", "-shared", "-fPIC", "-o", str(Path(td) / lib.name),
                            str(src)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=120)
        if r.returncode != 0:
            raise OSError(f"{cxx} failed: {r.stdout.strip()[-500:]}")
        lib.parent.mkdir(exist_ok=True)
        try:   # another process may have built it meanwhile: either copy is the same
            os.replace(Path(td) / lib.name, lib)
        except OSError:
            if not lib.exists():
                raise


def _build() -> ctypes.CDLL:
    from .rtl import cache_root
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        raise OSError("no C++ compiler (g++) found")
    # a cache shared between machines (an NFS home on a board and a workstation) keeps one
    # library per architecture
    key = hashlib.sha256((SRC + cxx + platform.machine()).encode()).hexdigest()[:16]
    out_dir = cache_root() / "native" / key
    lib = out_dir / "libintergrad_native.so"
    if not lib.exists():
        _compile(cxx, lib)
    try:
        cdll = ctypes.CDLL(str(lib))
    except OSError:   # a cached file that does not load (damaged): built again, once
        lib.unlink(missing_ok=True)
        _compile(cxx, lib)
        cdll = ctypes.CDLL(str(lib))
    p, sz = ctypes.c_void_p, ctypes.c_size_t
    for t in _TYPES.values():
        f = getattr(cdll, f"ig_take_{t}")
        f.argtypes, f.restype = [p, sz, p, sz, p], ctypes.c_int
        f = getattr(cdll, f"ig_take_sum_{t}")
        f.argtypes, f.restype = [p, sz, p, sz, sz, p], ctypes.c_int
    for t in _COL2IM.values():
        f = getattr(cdll, f"ig_col2im_{t}")
        f.argtypes, f.restype = [p] + [sz] * 9 + [p], None
    return cdll


def _library() -> ctypes.CDLL | None:
    global _lib, _tried, reason
    if _tried:
        return _lib
    with _lock:
        if not _tried:
            if os.environ.get("INTERGRAD_NATIVE", "1") == "0":
                reason = "disabled (INTERGRAD_NATIVE=0)"
            else:
                try:
                    _lib = _build()
                except (OSError, subprocess.SubprocessError) as e:
                    reason = f"not built: {e}"
            _tried = True
    return _lib


def available() -> bool:
    """True when the native kernels are used (else the numpy definitions are)."""
    return _library() is not None


def index(idx: np.ndarray, size: int) -> np.ndarray:
    """``idx`` (non-negative positions into a vector of ``size`` elements) in the form
    :func:`take` reads fastest: uint32, C-contiguous, read-only, when the native kernels
    are used and the vector is small enough, else as it is."""
    if _library() is None or size > 0xFFFFFFFF:
        return idx
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= size):
        raise _out_of_range(size)
    out = np.ascontiguousarray(idx, dtype=np.uint32)
    out.setflags(write=False)
    return out


def _native_ok(vec: np.ndarray, idx: np.ndarray) -> bool:
    return (idx.dtype == np.uint32 and vec.ndim == 1 and vec.size > 0
            and vec.flags.c_contiguous and idx.flags.c_contiguous)


def _out_of_range(size: int) -> IndexError:
    return IndexError(f"index out of range for a vector of {size} elements")


#: take copies elements as integers of their size: any integer, float or bool dtype
_BY_SIZE = {1: "i8", 2: "i16", 4: "i32", 8: "i64"}


def take(vec: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``vec[idx]``: a fresh array of idx's shape and vec's dtype.  ``vec`` 1-D; ``idx``
    uint32 (:func:`index`) for the native path, which checks every index as it reads."""
    lib = _library()
    t = _BY_SIZE.get(vec.dtype.itemsize) if vec.dtype.kind in "biuf" else None
    if lib is None or t is None or not _native_ok(vec, idx):
        return vec[idx]
    out = np.empty(idx.shape, dtype=vec.dtype)
    if getattr(lib, f"ig_take_{t}")(vec.ctypes.data, vec.size, idx.ctypes.data, idx.size,
                                    out.ctypes.data):
        raise _out_of_range(vec.size)
    return out


def take_sum(vec: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``vec[idx].sum(axis=0, dtype=int64)``: idx (tiles, ...) -> int64 of shape
    idx.shape[1:] (tiles 1: ``vec[idx[0]]`` widened to int64)."""
    lib = _library()
    if (lib is None or vec.dtype not in _TYPES or not _native_ok(vec, idx) or idx.ndim < 1
            or idx.shape[0] < 1):
        return vec[idx].sum(axis=0, dtype=np.int64)
    out = np.empty(idx.shape[1:], dtype=np.int64)
    if getattr(lib, f"ig_take_sum_{_TYPES[vec.dtype]}")(vec.ctypes.data, vec.size,
                                                        idx.ctypes.data, idx.shape[0],
                                                        out.size, out.ctypes.data):
        raise _out_of_range(vec.size)
    return out


def col2im(cols: np.ndarray, B: int, C: int, Ho: int, Wo: int, kh: int, kw: int, stride: int,
           Hp: int, Wp: int) -> np.ndarray | None:
    """The zero-padded (B, C, Hp, Wp) sum of :func:`intergrad.conv.col2im` for int32,
    int64, float32 or float64 ``cols`` (B*Ho*Wo, C*kh*kw), each pixel's terms added in the
    numpy loop's order (floats bit-identical); None when the native kernels are not used
    or for another dtype (the caller's numpy loop then)."""
    lib = _library()
    t = _COL2IM.get(cols.dtype)
    if lib is None or t is None or cols.shape != (B * Ho * Wo, C * kh * kw):
        return None
    if min(B, C, Ho, Wo, kh, kw, stride) < 1 or (Ho - 1) * stride + kh > Hp \
            or (Wo - 1) * stride + kw > Wp:   # every patch inside xp, or nothing is written
        raise ValueError(f"col2im: {Ho}x{Wo} patches of {kh}x{kw} at stride {stride} do not "
                         f"fit a {Hp}x{Wp} padded image")
    cols = np.ascontiguousarray(cols)
    xp = np.zeros((B, C, Hp, Wp), dtype=cols.dtype)
    getattr(lib, f"ig_col2im_{t}")(cols.ctypes.data, B, C, Ho, Wo, kh, kw, stride, Hp, Wp,
                                   xp.ctypes.data)
    return xp
