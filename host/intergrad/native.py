"""Native kernels of the host data path: the gathers that build a pass's input frames from
its source vector (from the index, or from its runs where a frame is mostly contiguous
operand rows: :func:`runs`) and im2col's (also into a given array: the unbuilt lowering's
writes), the ones that decode its output beats (by rectangles of beats where a layout's
decode is made of them, :func:`blocks`, else by the index) and unpack output lanes that
are not whole native integers (:func:`unpack_into`), col2im's sum, and the max-pool and
average-pool layers' two passes.

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
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

__all__ = ["Runs", "available", "avgpool_backward", "avgpool_forward", "blocks", "col2im",
           "index", "maxpool_backward", "maxpool_forward", "runs", "sum_blocks", "take",
           "take_sum", "unpack_into"]

SRC = r"""
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

// the same gather from its runs (runs(idx)): n_runs rows (d, s, L): out[d + i] = v[s + i]
// for i < L, or, for s = 0xFFFFFFFF (a run of index 0), v[0].  Every run is checked (one
// outside v or out is skipped and the call returns 1), else 0.
template <typename T>
static int take_runs(const T* __restrict v, size_t nv, const uint32_t* __restrict runs,
                     size_t n_runs, T* __restrict out, size_t n_out) {
    uint32_t bad = 0;
    const T first = v[0];
    for (size_t r = 0; r < n_runs; ++r) {
        const uint32_t d = runs[3 * r], s = runs[3 * r + 1], L = runs[3 * r + 2];
        const bool fill = s == 0xFFFFFFFFu;
        const bool ok = (size_t)d + L <= n_out && (fill || (size_t)s + L <= nv);
        bad |= !ok;
        if (!ok) continue;
        T* o = out + d;
        if (fill) {
            for (uint32_t i = 0; i < L; ++i) o[i] = first;
        } else if (L == 8) {
            memcpy(o, v + s, 8 * sizeof(T));
        } else {
            for (uint32_t i = 0; i < L; ++i) o[i] = v[s + i];
        }
    }
    return bad != 0;
}
// the runs of idx (n entries): rows (d, s, L) as take_runs reads them, maximal (a run of
// index 0 has s = 0xFFFFFFFF); at most max_runs rows written: returns their number, or
// max_runs + 1 when there are more
extern "C" size_t ig_runs(const uint32_t* __restrict idx, size_t n,
                          uint32_t* __restrict out, size_t max_runs) {
    size_t r = 0;
    size_t i = 0;
    while (i < n) {
        const uint32_t s = idx[i];
        size_t j = i + 1;
        if (s == 0) {
            while (j < n && idx[j] == 0) ++j;
        } else {
            while (j < n && idx[j] != 0 && idx[j] == idx[j - 1] + 1) ++j;
        }
        if (r == max_runs) return max_runs + 1;
        out[3 * r] = (uint32_t)i;
        out[3 * r + 1] = s == 0 ? 0xFFFFFFFFu : s;
        out[3 * r + 2] = (uint32_t)(j - i);
        ++r;
        i = j;
    }
    return r;
}

// the runs (as ig_runs gives them) of the index g of n_rows x lanes entries with, for
// frame row r, g[r][l] = src[rows[r] * lanes + l] where rows[r] < n_in (a row of the
// layout's index src, n_in x lanes) and hdr0 + (rows[r] - n_in) * lanes + l otherwise (a
// header beat's lanes), without building g: out = NULL counts them; else at most max_runs
// rows are written (returns their number, or max_runs + 1 when there are more).  Every
// row of rows must be below n_in or give positions below 2**32 (the caller checks).
extern "C" size_t ig_runs_rows(const uint32_t* __restrict src, size_t n_in,
                               const int64_t* __restrict rows, size_t n_rows, size_t lanes,
                               uint64_t hdr0, uint32_t* __restrict out, size_t max_runs) {
    size_t r_count = 0;
    uint32_t s = 0, prev = 0;
    size_t start = 0;
    bool open = false;
    // the open run, ending before entry `end`: written (out) or counted; false when full
    auto close = [&](size_t end) {
        if (out) {
            if (r_count == max_runs) return false;
            out[3 * r_count] = (uint32_t)start;
            out[3 * r_count + 1] = s == 0 ? 0xFFFFFFFFu : s;
            out[3 * r_count + 2] = (uint32_t)(end - start);
        }
        ++r_count;
        return true;
    };
    size_t i = 0;
    for (size_t fr = 0; fr < n_rows; ++fr) {
        const int64_t row = rows[fr];
        const bool data = (uint64_t)row < n_in;
        const uint32_t* lane_src = data ? src + (size_t)row * lanes : nullptr;
        const uint32_t h0 = data ? 0 : (uint32_t)(hdr0 + (uint64_t)(row - (int64_t)n_in)
                                                  * lanes);
        for (size_t l = 0; l < lanes; ++l, ++i) {
            const uint32_t v = data ? lane_src[l] : h0 + (uint32_t)l;
            if (open && (s == 0 ? v == 0 : (v != 0 && v == prev + 1))) {
                prev = v;
                continue;
            }
            if (open && !close(i)) return max_runs + 1;
            open = true;
            start = i;
            s = prev = v;
        }
    }
    if (open && !close(i)) return max_runs + 1;
    return r_count;
}

#define IG_TAKE_RUNS(name, T)                                                         \
    int name(const T* v, size_t nv, const uint32_t* runs, size_t n_runs, T* out,     \
             size_t n_out) {                                                          \
        return take_runs<T>(v, nv, runs, n_runs, out, n_out);                         \
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

// out (n_out int64) += rectangles of v: n_blocks rows (d, s, L, W): for i < L, l < W,
// out[d + i * out_stride + l] += v[s + i * v_stride + l] (a pass's result partials, each a
// column tile's run of output beats, summed: intergrad.stream's blocks).  Every block is
// checked first (one reaching outside v or out: nothing is added and the call returns 1).
#define IG_SUM_BLOCKS(name, T)                                                        \
    int name(const T* __restrict v, size_t nv, const uint32_t* __restrict blk,       \
             size_t n_blocks, size_t v_stride, size_t out_stride,                    \
             int64_t* __restrict out, size_t n_out) {                                 \
        for (size_t b = 0; b < n_blocks; ++b) {                                       \
            const uint64_t d = blk[4 * b], s = blk[4 * b + 1], L = blk[4 * b + 2],    \
                           W = blk[4 * b + 3];                                        \
            if (L == 0 || W == 0) continue;                                           \
            if (W > v_stride || W > out_stride || s + (L - 1) * v_stride + W > nv ||  \
                d + (L - 1) * out_stride + W > n_out)                                 \
                return 1;                                                             \
        }                                                                             \
        for (size_t b = 0; b < n_blocks; ++b) {                                       \
            const size_t d = blk[4 * b], s = blk[4 * b + 1], L = blk[4 * b + 2],      \
                         W = blk[4 * b + 3];                                          \
            for (size_t i = 0; i < L; ++i) {                                          \
                const T* __restrict a = v + s + i * v_stride;                         \
                int64_t* __restrict o = out + d + i * out_stride;                     \
                for (size_t l = 0; l < W; ++l) o[l] += a[l];                          \
            }                                                                         \
        }                                                                             \
        return 0;                                                                     \
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

// k x k max-pool, stride k, of x (B*C planes of H x W; H, W multiples of k): y the
// largest of each window, idx its window position di*k + dj, the first one on ties (a
// later position only where strictly larger, as MaxPool2d's numpy loop).  Returns 1 when
// a NaN was read (the caller then uses numpy's rule for NaNs), else 0.  K > 0: k known
// at compile time (the 2x2 pool), K = 0: any k.
template <typename T, size_t K>
static int maxpool_fwd(const T* __restrict x, size_t planes, size_t H, size_t W, size_t k_,
                       T* __restrict y, int64_t* __restrict idx) {
    const size_t k = K ? K : k_;
    const size_t Ho = H / k, Wo = W / k;
    int nan = 0;
    for (size_t pl = 0; pl < planes; ++pl) {
        const T* xp = x + pl * H * W;
        for (size_t i = 0; i < Ho; ++i)
            for (size_t j = 0; j < Wo; ++j) {
                const T* w = xp + i * k * W + j * k;
                T best = w[0];
                int64_t at = 0;
                nan |= best != best;
                for (size_t di = 0; di < k; ++di)
                    for (size_t dj = 0; dj < k; ++dj) {
                        const T v = w[di * W + dj];
                        nan |= v != v;
                        if (v > best) { best = v; at = (int64_t)(di * k + dj); }
                    }
                *y++ = best;
                *idx++ = at;
            }
    }
    return nan;
}

// the max-pool's dx (float32, B*C planes of Ho*k x Wo*k): at window position p of output
// (i, j), (idx == p) * dy as a product (0 * dy keeps dy's sign and NaN), then float32
template <typename T, size_t K>
static void maxpool_bwd(const int64_t* __restrict idx, const T* __restrict dy, size_t planes,
                        size_t Ho, size_t Wo, size_t k_, float* __restrict dx) {
    const size_t k = K ? K : k_;
    const size_t W = Wo * k;
    for (size_t pl = 0; pl < planes; ++pl)
        for (size_t i = 0; i < Ho; ++i)
            for (size_t j = 0; j < Wo; ++j, ++idx, ++dy) {
                float* w = dx + (pl * Ho * k + i * k) * W + j * k;
                for (size_t di = 0; di < k; ++di)
                    for (size_t dj = 0; dj < k; ++dj) {
                        const T m = (*idx == (int64_t)(di * k + dj)) ? (T)1 : (T)0;
                        w[di * W + dj] = (float)(m * *dy);
                    }
            }
}

#define IG_MAXPOOL_FWD(name, T)                                                       \
    int name(const T* x, size_t planes, size_t H, size_t W, size_t k, T* y,          \
             int64_t* idx) {                                                          \
        return k == 2 ? maxpool_fwd<T, 2>(x, planes, H, W, k, y, idx)                 \
                      : maxpool_fwd<T, 0>(x, planes, H, W, k, y, idx);                \
    }
#define IG_MAXPOOL_BWD(name, T)                                                       \
    void name(const int64_t* idx, const T* dy, size_t planes, size_t Ho, size_t Wo,  \
              size_t k, float* dx) {                                                  \
        if (k == 2) maxpool_bwd<T, 2>(idx, dy, planes, Ho, Wo, k, dx);                \
        else maxpool_bwd<T, 0>(idx, dy, planes, Ho, Wo, k, dx);                       \
    }

// unpack_beats of lanes that are not whole native integers: n beats of nbytes bytes, lane i
// bits [i*width, (i+1)*width) of its beat (little-endian, lane 0 lowest), sign-extended to
// int64 in out (n, lanes); width 1..64, lanes*width <= 8*nbytes.  A lane is read as the
// 8 bytes from its first one (and a 9th where it reaches past them): in place where the
// data go on for 9 bytes past the beat, else from a zero-padded copy of the beat.
static inline void unpack_lanes(const uint8_t* beat, size_t lanes, size_t width,
                                uint64_t mask, uint64_t sign, int64_t* __restrict out) {
    for (size_t i = 0; i < lanes; ++i) {
        const size_t bit = i * width;
        const unsigned sh = (unsigned)(bit & 7);
        const uint8_t* p = beat + (bit >> 3);
        uint64_t lo;
        memcpy(&lo, p, 8);
        uint64_t v = lo >> sh;
        if (sh + width > 64) v |= (uint64_t)p[8] << (64 - sh);
        v &= mask;
        out[i] = (int64_t)((v ^ sign) - sign);
    }
}

template <size_t W, size_t L>
static inline void unpack_fixed(const uint8_t* beat, int64_t* __restrict out) {
    unpack_lanes(beat, L, W, ((uint64_t)1 << W) - 1, (uint64_t)1 << (W - 1), out);
}

extern "C" void ig_unpack(const uint8_t* __restrict data, size_t n, size_t nbytes,
                          size_t lanes, size_t width, int64_t* __restrict out) {
    const uint64_t mask = width == 64 ? ~(uint64_t)0 : (((uint64_t)1 << width) - 1);
    const uint64_t sign = (uint64_t)1 << (width - 1);
    const size_t total = n * nbytes;
    uint8_t pad[512 + 16];
    const bool fixed = width == 20 && lanes == 8 && nbytes >= 20;   // int8's accumulators
    for (size_t b = 0; b < n; ++b, out += lanes) {
        const uint8_t* beat = data + b * nbytes;
        if (b * nbytes + nbytes + 9 > total) {   // the last beats: a padded copy
            memset(pad, 0, sizeof pad);
            memcpy(pad, beat, nbytes);
            beat = pad;
        }
        if (fixed) unpack_fixed<20, 8>(beat, out);
        else unpack_lanes(beat, lanes, width, mask, sign, out);
    }
}

// the 2x2 average pool, stride 2, of float32 x (planes of H x W, H and W even): each
// window's (((0 + x00) + x01) + x10) + x11 in float32, / 4 (numpy's mean of the window in
// row-major order: a sequential sum from +0 below 8 elements; a window of -0 gives +0)
extern "C" void ig_avgpool2_fwd_f32(const float* __restrict x, size_t planes, size_t H,
                                    size_t W, float* __restrict y) {
    const size_t Ho = H / 2, Wo = W / 2;
    for (size_t pl = 0; pl < planes; ++pl) {
        const float* xp = x + pl * H * W;
        for (size_t i = 0; i < Ho; ++i) {
            const float* r0 = xp + 2 * i * W;
            const float* r1 = r0 + W;
            for (size_t j = 0; j < Wo; ++j) {
                float s = 0.0f + r0[2 * j];   // not folded: -0 + 0 is +0
                s = s + r0[2 * j + 1];
                s = s + r1[2 * j];
                s = s + r1[2 * j + 1];
                *y++ = s / 4.0f;
            }
        }
    }
}

// the k x k average pool's dx (float32, planes of Ho*k x Wo*k): dy / (k*k) in float32 at
// every position of its window
extern "C" void ig_avgpool_bwd_f32(const float* __restrict dy, size_t planes, size_t Ho,
                                   size_t Wo, size_t k, float* __restrict dx) {
    const float n = (float)(k * k);
    const size_t W = Wo * k;
    for (size_t pl = 0; pl < planes; ++pl)
        for (size_t i = 0; i < Ho; ++i)
            for (size_t j = 0; j < Wo; ++j) {
                const float g = *dy++ / n;
                float* w = dx + (pl * Ho * k + i * k) * W + j * k;
                for (size_t di = 0; di < k; ++di)
                    for (size_t dj = 0; dj < k; ++dj) w[di * W + dj] = g;
            }
}

extern "C" {
IG_MAXPOOL_FWD(ig_maxpool_fwd_f32, float)
IG_MAXPOOL_FWD(ig_maxpool_fwd_f64, double)
IG_MAXPOOL_BWD(ig_maxpool_bwd_f32, float)
IG_MAXPOOL_BWD(ig_maxpool_bwd_f64, double)
IG_COL2IM(ig_col2im_i32, int32_t)
IG_COL2IM(ig_col2im_i64, int64_t)
IG_COL2IM(ig_col2im_f32, float)
IG_COL2IM(ig_col2im_f64, double)
IG_TAKE_RUNS(ig_take_runs_i8, int8_t)
IG_TAKE_RUNS(ig_take_runs_i16, int16_t)
IG_TAKE_RUNS(ig_take_runs_i32, int32_t)
IG_TAKE_RUNS(ig_take_runs_i64, int64_t)
IG_TAKE(ig_take_i8, int8_t)
IG_TAKE(ig_take_i16, int16_t)
IG_TAKE(ig_take_i32, int32_t)
IG_TAKE(ig_take_i64, int64_t)
IG_TAKE_SUM(ig_take_sum_i8, int8_t)
IG_TAKE_SUM(ig_take_sum_i16, int16_t)
IG_TAKE_SUM(ig_take_sum_i32, int32_t)
IG_TAKE_SUM(ig_take_sum_i64, int64_t)
IG_SUM_BLOCKS(ig_sum_blocks_i8, int8_t)
IG_SUM_BLOCKS(ig_sum_blocks_i16, int16_t)
IG_SUM_BLOCKS(ig_sum_blocks_i32, int32_t)
IG_SUM_BLOCKS(ig_sum_blocks_i64, int64_t)
}
"""

_TYPES = {np.dtype(np.int8): "i8", np.dtype(np.int16): "i16", np.dtype(np.int32): "i32",
          np.dtype(np.int64): "i64"}
_COL2IM = {np.dtype(np.int32): "i32", np.dtype(np.int64): "i64",
           np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
_POOL = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
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
        f = getattr(cdll, f"ig_sum_blocks_{t}")
        f.argtypes, f.restype = [p, sz, p, sz, sz, sz, p, sz], ctypes.c_int
        f = getattr(cdll, f"ig_take_runs_{t}")
        f.argtypes, f.restype = [p, sz, p, sz, p, sz], ctypes.c_int
    for t in _COL2IM.values():
        f = getattr(cdll, f"ig_col2im_{t}")
        f.argtypes, f.restype = [p] + [sz] * 9 + [p], None
    cdll.ig_runs.argtypes, cdll.ig_runs.restype = [p, sz, p, sz], sz
    cdll.ig_unpack.argtypes, cdll.ig_unpack.restype = [p, sz, sz, sz, sz, p], None
    cdll.ig_avgpool2_fwd_f32.argtypes = [p, sz, sz, sz, p]
    cdll.ig_avgpool2_fwd_f32.restype = None
    cdll.ig_avgpool_bwd_f32.argtypes = [p, sz, sz, sz, sz, p]
    cdll.ig_avgpool_bwd_f32.restype = None
    cdll.ig_runs_rows.argtypes = [p, sz, p, sz, sz, ctypes.c_uint64, p, sz]
    cdll.ig_runs_rows.restype = sz
    for t in _POOL.values():
        f = getattr(cdll, f"ig_maxpool_fwd_{t}")
        f.argtypes, f.restype = [p, sz, sz, sz, sz, p, p], ctypes.c_int
        f = getattr(cdll, f"ig_maxpool_bwd_{t}")
        f.argtypes, f.restype = [p, p, sz, sz, sz, sz, p], None
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


class Runs:
    """An index array (:func:`index`) as its runs (:func:`runs`): what :func:`take` reads
    instead of the index itself where a gather is mostly contiguous runs (a pass's
    frames: a beat's lanes are one row of an operand, its unused lanes index 0).
    ``index``: the array, or a function that builds it (:func:`runs_rows`: only built
    where a gather cannot read the runs)."""

    __slots__ = ("runs", "shape", "_index")

    def __init__(self, runs: np.ndarray, index, shape: tuple | None = None):
        self.runs, self._index = runs, index
        self.shape = tuple(shape) if shape is not None else index.shape

    @property
    def index(self) -> np.ndarray:
        if callable(self._index):
            self._index = self._index()
        return self._index


def runs(idx: np.ndarray) -> Runs | None:
    """``idx`` (uint32, as :func:`index` gives it) as runs: rows (d, s, L) with
    idx.flat[d + i] = s + i for i < L (s = 0xFFFFFFFF: a run of index 0), maximal; None
    when the native kernels are not used or the runs are not at least 4 times fewer than
    the entries (then the index itself is as cheap to read)."""
    lib = _library()
    if lib is None or idx.dtype != np.uint32 or idx.size < 2 or idx.size >= 1 << 32:
        return None
    flat = np.ascontiguousarray(idx).reshape(-1)
    most = flat.size // 4
    out = np.empty((most, 3), dtype=np.uint32)
    n = lib.ig_runs(flat.ctypes.data, flat.size, out.ctypes.data, most)
    if n > most:
        return None
    out = out[:n].copy()
    out.setflags(write=False)
    return Runs(out, idx)


def runs_rows(src: np.ndarray, rows: np.ndarray, n_in: int, hdr0: int) -> Runs | None:
    """The :class:`Runs` of ``g`` (len(rows), lanes) with ``g[r] = src[rows[r]]`` where
    ``rows[r] < n_in`` and ``hdr0 + (rows[r] - n_in) * lanes + arange(lanes)`` otherwise (a
    queue's frame index from a layout's index ``src``, n_in x lanes uint32, and its header
    beats), read without building ``g`` (its index is built only if a gather asks); None
    where :func:`runs` of ``g`` would be None (the native kernels not used, or runs not at
    least 4 times fewer than the entries)."""
    lib = _library()
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    lanes = src.shape[1] if src.ndim == 2 else 0
    n = len(rows) * lanes
    if (lib is None or src.dtype != np.uint32 or not src.flags.c_contiguous or n < 2
            or n >= 1 << 32 or src.shape[0] != n_in or rows.size and int(rows.min()) < 0):
        return None
    top = int(rows.max()) if rows.size else 0
    if top >= n_in and hdr0 + (top - n_in + 1) * lanes > 0xFFFFFFFF:
        return None
    args = (src.ctypes.data, n_in, rows.ctypes.data, len(rows), lanes, hdr0)
    count = lib.ig_runs_rows(*args, None, 0)
    if count > n // 4:
        return None
    out = np.empty((count, 3), dtype=np.uint32)
    lib.ig_runs_rows(*args, out.ctypes.data, count)
    out.setflags(write=False)
    return Runs(out, lambda: frame_index(src, rows, n_in, hdr0), (len(rows), lanes))


def frame_index(src: np.ndarray, rows: np.ndarray, n_in: int, hdr0: int) -> np.ndarray:
    """The index :func:`runs_rows` reads without building it: ``g[r] = src[rows[r]]`` where
    ``rows[r] < n_in``, ``hdr0 + (rows[r] - n_in) * lanes + arange(lanes)`` otherwise (one
    row gather, then the header rows' own lanes); read-only, of ``src``'s dtype."""
    is_hdr = rows >= n_in
    g = np.take(src, np.where(is_hdr, 0, rows), axis=0)
    h = np.flatnonzero(is_hdr)
    g[h] = hdr0 + (rows[h] - n_in)[:, None] * src.shape[1] + np.arange(src.shape[1])
    g.setflags(write=False)
    return g


def take(vec: np.ndarray, idx: np.ndarray | Runs, out: np.ndarray | None = None) -> np.ndarray:
    """``vec[idx]``: a fresh array of idx's shape and vec's dtype, or written into ``out``
    (an array of idx's shape and vec's dtype, C-contiguous, writeable; returned).  ``vec``
    1-D; ``idx`` uint32 (:func:`index`) or its :class:`Runs` for the native path, which
    checks every index (every run) as it reads."""
    if out is not None and (out.shape != idx.shape or out.dtype != vec.dtype
                            or not out.flags.c_contiguous or not out.flags.writeable):
        raise ValueError(f"take: out must be a writeable C-contiguous {vec.dtype} array of "
                         f"shape {idx.shape}, got {out.dtype} {out.shape}")
    lib = _library()
    t = _BY_SIZE.get(vec.dtype.itemsize) if vec.dtype.kind in "biuf" else None
    if isinstance(idx, Runs):
        if lib is None or t is None or not (vec.ndim == 1 and vec.size > 0
                                            and vec.flags.c_contiguous):
            return take(vec, idx.index, out)
        out = np.empty(idx.shape, dtype=vec.dtype) if out is None else out
        if getattr(lib, f"ig_take_runs_{t}")(vec.ctypes.data, vec.size, idx.runs.ctypes.data,
                                             len(idx.runs), out.ctypes.data, out.size):
            raise _out_of_range(vec.size)
        return out
    if lib is None or t is None or not _native_ok(vec, idx):
        if out is None:
            return vec[idx]
        out[...] = vec[idx]
        return out
    out = np.empty(idx.shape, dtype=vec.dtype) if out is None else out
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


def blocks(idx: np.ndarray, v_stride: int) -> np.ndarray | None:
    """``idx`` (tiles, rows, cols: positions into a vector whose consecutive rows of
    ``v_stride`` entries are a pass's output beats) as rectangles for :func:`sum_blocks`:
    rows (d, s, L, W) uint32, each L rows of W consecutive positions from s, ``v_stride``
    apart, that land at d, d + cols, ... of the (rows, cols) result; None when the native
    kernels are not used or the rectangles would be short (then :func:`take_sum`).  Exact
    by construction: within a column segment every row's positions step by 1 (and stay in
    one beat: a segment is cut where a row reaches a beat's first lane), and within a run
    of rows the segment's first positions step by ``v_stride``, so every position of the
    run's rectangle is its first plus i * v_stride + l."""
    if _library() is None or idx.ndim != 3 or idx.size == 0 or v_stride < 1:
        return None
    T, R, C = idx.shape
    if R * C >= 1 << 32 or int(idx.max()) >= 1 << 32:
        return None
    a = idx.astype(np.int64)
    # column segments where every row's positions run on by 1 within one beat's lanes
    cut = ~(np.diff(a, axis=2) == 1).all(axis=1) | (a[:, :, 1:] % v_stride == 0).any(axis=1)
    rects = []
    for t in range(T):
        starts = np.concatenate([[0], np.flatnonzero(cut[t]) + 1]).tolist()
        for c0, c1 in zip(starts, starts[1:] + [C]):
            col = a[t, :, c0]                                    # each row's first position
            brk = (np.flatnonzero(np.diff(col) != v_stride) + 1).tolist()
            for r0, r1 in zip([0] + brk, brk + [R]):             # runs of beats
                rects.append((r0 * C + c0, int(col[r0]), r1 - r0, c1 - c0))
    if len(rects) * 4 > idx.size:
        return None   # short rectangles: the index reads as fast
    blk = np.array(rects, dtype=np.uint32).reshape(-1, 4)
    blk.setflags(write=False)
    return blk


def sum_blocks(vec: np.ndarray, blk: np.ndarray | None, shape: tuple,
               v_stride: int) -> np.ndarray | None:
    """The (rows, cols) int64 sum over the tiles of :func:`blocks`' rectangles of ``vec``
    (1-D, C-contiguous, an integer dtype): ``vec[idx].sum(axis=0, dtype=int64)`` for the
    index the rectangles describe; None where it is not used (no rectangles, no native
    kernels, another vector: the caller's :func:`take_sum` then)."""
    lib = _library()
    t = _TYPES.get(vec.dtype)
    if blk is None or lib is None or t is None or vec.ndim != 1 or not vec.flags.c_contiguous:
        return None
    out = np.zeros(shape, dtype=np.int64)
    if getattr(lib, f"ig_sum_blocks_{t}")(vec.ctypes.data, vec.size, blk.ctypes.data,
                                          len(blk), v_stride, shape[1], out.ctypes.data,
                                          out.size):
        raise _out_of_range(vec.size)
    return out


def unpack_into(data, out: np.ndarray, width: int, axis_bits: int) -> bool:
    """:func:`intergrad.core.unpack_beats` of ``data`` (output beats of ``axis_bits`` bits,
    lanes of ``width`` bits) written into ``out`` (beats, lanes) int64, C-contiguous:
    True, or False where the native kernels are not used (the caller unpacks with
    numpy).  The lengths are checked here: a mismatch is a ValueError, as unpack_beats
    raises for a partial beat."""
    lib = _library()
    if lib is None or sys.byteorder != "little" or out.dtype != np.int64 \
            or not out.flags.c_contiguous or not out.flags.writeable or out.ndim != 2 \
            or axis_bits % 8 or axis_bits > 4096 or not 1 <= width <= 64 \
            or out.shape[1] * width > axis_bits:
        return False
    raw = np.frombuffer(data, dtype=np.uint8)
    nbytes = axis_bits // 8
    if raw.size != out.shape[0] * nbytes:
        raise ValueError(f"{raw.size} bytes are not {out.shape[0]} beats of {nbytes} bytes")
    if raw.size:
        lib.ig_unpack(raw.ctypes.data, out.shape[0], nbytes, out.shape[1], width,
                      out.ctypes.data)
    return True


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


def maxpool_forward(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(y, idx) of :class:`intergrad.layers.MaxPool2d`'s forward pass for a float32 or
    float64 ``x`` (B, C, H, W), H and W multiples of ``k``: y (B, C, H/k, W/k) of x's dtype,
    idx (intp) the first largest entry's window position; None when the native kernels are
    not used, for another dtype, or when x holds a NaN (the layer's numpy rule then)."""
    lib = _library()
    t = _POOL.get(x.dtype)
    if lib is None or t is None or x.ndim != 4 or k < 1 or x.shape[2] % k or x.shape[3] % k:
        return None
    B, C, H, W = x.shape
    x = np.ascontiguousarray(x)
    y = np.empty((B, C, H // k, W // k), dtype=x.dtype)
    idx = np.empty(y.shape, dtype=np.int64)
    if getattr(lib, f"ig_maxpool_fwd_{t}")(x.ctypes.data, B * C, H, W, k, y.ctypes.data,
                                           idx.ctypes.data):
        return None
    return y, idx.astype(np.intp, copy=False)


def maxpool_backward(idx: np.ndarray, dy: np.ndarray, k: int) -> np.ndarray | None:
    """The max-pool's dx (B, C, Ho*k, Wo*k) float32 from its window positions ``idx`` and a
    float32 or float64 ``dy`` (B, C, Ho, Wo), as the layer's numpy loop computes it; None
    when the native kernels are not used or for other dtypes or shapes."""
    lib = _library()
    t = _POOL.get(np.asarray(dy).dtype)
    if lib is None or t is None or idx.ndim != 4 or idx.shape != np.shape(dy) \
            or idx.dtype != np.int64 or k < 1:
        return None
    B, C, Ho, Wo = idx.shape
    idx, dy = np.ascontiguousarray(idx), np.ascontiguousarray(dy)
    dx = np.empty((B, C, Ho * k, Wo * k), dtype=np.float32)
    getattr(lib, f"ig_maxpool_bwd_{t}")(idx.ctypes.data, dy.ctypes.data, B * C, Ho, Wo, k,
                                        dx.ctypes.data)
    return dx


def avgpool_forward(x: np.ndarray, k: int) -> np.ndarray | None:
    """:class:`intergrad.layers.AvgPool2d`'s forward pass (each window's mean, as numpy's
    ``mean`` of the window in row-major order gives it) for a float32 ``x`` (B, C, H, W)
    and the 2x2 window, H and W even; None when the native kernels are not used or for
    anything else (the layer's numpy rule then)."""
    lib = _library()
    if lib is None or k != 2 or x.dtype != np.float32 or x.ndim != 4 or x.shape[2] % 2 \
            or x.shape[3] % 2:
        return None
    B, C, H, W = x.shape
    x = np.ascontiguousarray(x)
    y = np.empty((B, C, H // 2, W // 2), dtype=np.float32)
    lib.ig_avgpool2_fwd_f32(x.ctypes.data, B * C, H, W, y.ctypes.data)
    return y


def avgpool_backward(dy: np.ndarray, k: int) -> np.ndarray | None:
    """The average pool's dx (B, C, Ho*k, Wo*k) float32: dy / (k*k) in float32 over each
    window, for a float32 ``dy`` (B, C, Ho, Wo); None when the native kernels are not used
    or for anything else."""
    lib = _library()
    dy = np.asarray(dy)
    if lib is None or dy.dtype != np.float32 or dy.ndim != 4 or k < 1:
        return None
    B, C, Ho, Wo = dy.shape
    dy = np.ascontiguousarray(dy)
    dx = np.empty((B, C, Ho * k, Wo * k), dtype=np.float32)
    lib.ig_avgpool_bwd_f32(dy.ctypes.data, B * C, Ho, Wo, k, dx.ctypes.data)
    return dx
