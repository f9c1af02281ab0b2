"""The native gathers (intergrad.native) against their numpy definitions, and a pass decoded
with and without them."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from intergrad import native
from intergrad.core import pack_beats, unpack_beats
from intergrad.spec import ArrayConfig
from intergrad.stream import decode_pass, layout

# skipped only where the kernels are switched off or no compiler exists: a library that
# does not build with the compiler present fails (test_library_builds_with_the_compiler)
pytestmark = pytest.mark.skipif(
    not native.available() and any(w in (native.reason or "")
                                   for w in ("INTERGRAD_NATIVE=0", "no C++ compiler")),
    reason=f"native kernels not used: {native.reason}")


def test_library_builds_with_the_compiler():
    assert native.available(), f"the native kernels did not build: {native.reason}"

DTYPES = [np.int8, np.int16, np.int32, np.int64]


@pytest.mark.parametrize("dt", DTYPES)
def test_take_equals_numpy(dt):
    rng = np.random.default_rng(1)
    info = np.iinfo(dt)
    for size, shape in [(1, (5,)), (37, (3, 7)), (5000, (1200, 16)), (300, (0, 4))]:
        vec = rng.integers(info.min, info.max, size, endpoint=True).astype(dt)
        idx = rng.integers(0, size, shape)
        u = native.index(idx, size)
        assert u.dtype == np.uint32 and not u.flags.writeable
        got = native.take(vec, u)
        assert got.dtype == vec.dtype and got.shape == idx.shape
        assert np.array_equal(got, vec[idx])


@pytest.mark.parametrize("dt", DTYPES)
def test_take_sum_equals_numpy(dt):
    rng = np.random.default_rng(2)
    info = np.iinfo(dt)
    for tiles, shape in [(1, (4, 3)), (2, (32, 8)), (5, (7, 9)), (3, (0, 2))]:
        vec = rng.integers(info.min, info.max, 400, endpoint=True).astype(dt)
        idx = rng.integers(0, 400, (tiles,) + shape)
        got = native.take_sum(vec, native.index(idx, 400))
        assert got.dtype == np.int64
        assert np.array_equal(got, vec[idx].sum(axis=0, dtype=np.int64))


def test_index_range_checked():
    with pytest.raises(IndexError, match="out of range"):
        native.index(np.array([0, 10]), 10)
    with pytest.raises(IndexError, match="out of range"):
        native.index(np.array([-1, 2]), 10)


@pytest.mark.parametrize("dt", [np.float32, np.float64, np.uint16, np.bool_])
def test_take_any_numeric_dtype(dt):
    rng = np.random.default_rng(3)
    vec = (rng.standard_normal(333) * 100).astype(dt)
    idx = rng.integers(0, 333, (40, 9))
    got = native.take(vec, native.index(idx, 333))
    assert got.dtype == vec.dtype and np.array_equal(got, vec[idx])


def test_im2col_uses_and_equals_the_numpy_gather():
    from intergrad.conv import _im2col_index, im2col
    rng = np.random.default_rng(4)
    for x in (rng.integers(-500, 500, (2, 3, 7, 6)), rng.standard_normal((3, 2, 5, 5))):
        for kh, kw, stride, pad in [(3, 3, 1, 1), (5, 5, 1, 0), (2, 3, 2, 1)]:
            idx = _im2col_index(x.shape, kh, kw, stride, pad)
            assert idx.dtype == np.uint32
            xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
            assert np.array_equal(im2col(x, kh, kw, stride, pad),
                                  xp.reshape(-1)[idx.astype(np.intp)])


def _col2im_ref(cols, x_shape, kh, kw, stride, pad):
    """The adjoint of im2col by its definition: every cols element added at its pixel."""
    from intergrad.conv import conv_out_size
    B, C, H, W = x_shape
    Ho, Wo = conv_out_size(H, kh, stride, pad), conv_out_size(W, kw, stride, pad)
    xp = np.zeros((B, C, H + 2 * pad, W + 2 * pad), dtype=np.int64)
    c6 = cols.reshape(B, Ho, Wo, C, kh, kw)
    for b, i, j, c, di, dj in np.ndindex(*c6.shape):
        xp[b, c, i * stride + di, j * stride + dj] += c6[b, i, j, c, di, dj]
    return xp[:, :, pad:pad + H, pad:pad + W]


@pytest.mark.parametrize("dt", [np.int32, np.int64])
def test_col2im_native_equals_definition(dt):
    from intergrad.conv import col2im, conv_out_size
    rng = np.random.default_rng(5)
    for x_shape, kh, kw, stride, pad in [((2, 3, 7, 6), 3, 3, 1, 1), ((1, 2, 9, 9), 5, 5, 1, 0),
                                         ((3, 1, 6, 7), 2, 3, 2, 1), ((2, 2, 5, 5), 3, 3, 2, 2)]:
        B, C, H, W = x_shape
        Ho, Wo = conv_out_size(H, kh, stride, pad), conv_out_size(W, kw, stride, pad)
        cols = rng.integers(-10**6, 10**6, (B * Ho * Wo, C * kh * kw)).astype(dt)
        got = col2im(cols, x_shape, kh, kw, stride, pad)
        assert got.dtype == cols.dtype and got.shape == x_shape
        assert np.array_equal(got, _col2im_ref(cols, x_shape, kh, kw, stride, pad))


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_col2im_native_floats_bit_identical_to_numpy_loop(dt):
    """Float sums depend on their order: the kernel adds each pixel's terms in the numpy
    loop's order, so the results are the same bits."""
    from intergrad.conv import col2im, conv_out_size
    rng = np.random.default_rng(6)
    for x_shape, kh, kw, stride, pad in [((2, 3, 7, 6), 3, 3, 1, 1), ((4, 6, 14, 14), 5, 5, 1, 0),
                                         ((3, 2, 6, 7), 2, 3, 2, 1)]:
        B, C, H, W = x_shape
        Ho, Wo = conv_out_size(H, kh, stride, pad), conv_out_size(W, kw, stride, pad)
        scale = 10.0 ** rng.integers(-3, 4, C * kh * kw)   # terms of mixed magnitudes
        cols = (rng.standard_normal((B * Ho * Wo, C * kh * kw)) * scale).astype(dt)
        got = col2im(cols, x_shape, kh, kw, stride, pad)
        c = cols.reshape(B, Ho, Wo, C, kh, kw)
        xp = np.zeros((B, C, H + 2 * pad, W + 2 * pad), dtype=dt)
        for di in range(kh):
            for dj in range(kw):
                xp[:, :, di:di + stride * Ho:stride, dj:dj + stride * Wo:stride] += \
                    c[:, :, :, :, di, dj].transpose(0, 3, 1, 2)
        ref = xp[:, :, pad:pad + H, pad:pad + W]
        assert got.dtype == ref.dtype and got.tobytes() == np.ascontiguousarray(ref).tobytes()
    assert native.col2im(np.zeros((4, 9), dtype=np.int16), 1, 1, 2, 2, 3, 3, 1, 4, 4) is None


def test_kernels_check_every_index():
    """A uint32 index that did not come through index() is still checked, as it is read."""
    vec = np.arange(10, dtype=np.int16)
    for bad in ([3, 10], [2 ** 32 - 1]):
        idx = np.array(bad, dtype=np.uint32)
        with pytest.raises(IndexError, match="out of range"):
            native.take(vec, idx)
        with pytest.raises(IndexError, match="out of range"):
            native.take_sum(vec, idx[None])
    assert np.array_equal(native.take(vec, np.array([9, 0], dtype=np.uint32)), [9, 0])


def test_col2im_rejects_patches_outside_the_image():
    with pytest.raises(ValueError, match="do not fit"):
        native.col2im(np.zeros((9, 9), dtype=np.int64), 1, 1, 3, 3, 3, 3, 1, 4, 4)


def test_non_native_inputs_fall_back():
    vec = np.arange(20, dtype=np.int16)
    idx = np.array([[3, 19], [0, 7]])          # int64 indices: the numpy path
    assert np.array_equal(native.take(vec, idx), vec[idx])
    f = np.arange(20, dtype=np.float32)        # a dtype the kernels do not take
    u = native.index(idx, 20)
    assert np.array_equal(native.take(f, u), f[idx])


def _decoded(cfg, pass_, B, N, M, seed):
    lay = layout(cfg, pass_, B, N, M)
    rng = np.random.default_rng(seed)
    out = rng.integers(-2**31, 2**31, (lay.out_beats, cfg.out_lanes)).astype(np.int32)
    return lay, out, decode_pass(lay, out, cfg.acc_w)


CHILD = r"""
import sys, numpy as np
from intergrad import native
from intergrad.spec import ArrayConfig
from intergrad.stream import decode_pass, layout
assert not native.available(), native.reason
cfg = ArrayConfig(4, 3, 16, 32, 1)
for k, (p, B, N, M) in enumerate([("fwd", 5, 7, 11), ("dx", 6, 9, 5), ("dw", 4, 6, 7), ("ig", 3, 10, 8)]):
    lay = layout(cfg, p, B, N, M)
    assert all(a is None or a.dtype != np.uint32 for a in (lay.res_index, lay.dw_index))
    rng = np.random.default_rng(k)
    out = rng.integers(-2**31, 2**31, (lay.out_beats, cfg.out_lanes)).astype(np.int32)
    res, dW = decode_pass(lay, out, cfg.acc_w)
    np.save(sys.argv[1] + f"/{k}_res.npy", res if res is not None else np.zeros(0))
    np.save(sys.argv[1] + f"/{k}_dw.npy", dW if dW is not None else np.zeros(0))
"""


def test_decode_same_without_native(tmp_path):
    """decode_pass with the native kernels equals a process that runs without them."""
    env = dict(os.environ, INTERGRAD_NATIVE="0")
    r = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:]
    cfg = ArrayConfig(4, 3, 16, 32, 1)
    for k, (p, B, N, M) in enumerate([("fwd", 5, 7, 11), ("dx", 6, 9, 5), ("dw", 4, 6, 7), ("ig", 3, 10, 8)]):
        lay, _, (res, dW) = _decoded(cfg, p, B, N, M, k)
        assert all(a is None or a.dtype == np.uint32 for a in (lay.res_index, lay.dw_index))
        for name, got in (("res", res), ("dw", dW)):
            ref = np.load(tmp_path / f"{k}_{name}.npy")
            assert np.array_equal(got if got is not None else np.zeros(0), ref), (p, name)


BUILD_CHILD = r"""
import numpy as np
from intergrad import native
v = np.arange(10, dtype=np.int16)
print("AVAILABLE", native.available(), native.reason)
assert np.array_equal(native.take(v, native.index(np.array([3, 9]), 10)), [3, 9])
"""


def _child(env_extra, cache):
    env = dict(os.environ, INTERGRAD_CACHE=str(cache), **env_extra)
    env.pop("INTERGRAD_NATIVE", None)
    r = subprocess.run([sys.executable, "-c", BUILD_CHILD], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:]
    return r.stdout


def test_damaged_cached_library_is_rebuilt(tmp_path):
    assert "AVAILABLE True None" in _child({}, tmp_path)
    (lib,) = (tmp_path / "native").glob("*/libintergrad_native.so")
    lib.write_bytes(b"not a shared object")
    assert "AVAILABLE True None" in _child({}, tmp_path)
    assert lib.read_bytes()[:4] == b"\x7fELF"


def test_no_compiler_falls_back_to_numpy(tmp_path):
    out = _child({"CXX": str(tmp_path / "no-such-compiler")}, tmp_path)
    assert "AVAILABLE False not built:" in out, out


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_maxpool_native_bit_identical_to_numpy_loop(dt, k, monkeypatch):
    """MaxPool2d with the native kernels against its numpy loop (the kernels switched off):
    the same maxima, first-maximum positions on ties, and dx bit for bit (signed zeros,
    infinities, NaN in dy); an x holding a NaN goes to numpy's rule."""
    from intergrad import layers as L
    assert native.available(), native.reason
    rng = np.random.default_rng(k)
    pool = L.MaxPool2d(k)
    for trial in range(6):
        B, C, Ho, Wo = (int(v) for v in rng.integers(1, [4, 5, 6, 6]))
        x = rng.integers(-3, 4, (B, C, Ho * k, Wo * k)).astype(dt)   # many ties
        if trial % 2:
            x *= rng.standard_normal(x.shape).astype(dt)
        x.flat[rng.integers(x.size, size=3)] = [-0.0, np.inf, -np.inf]
        dy = rng.standard_normal((B, C, Ho, Wo)).astype(dt)
        dy.flat[rng.integers(dy.size, size=2)] = [np.nan, -np.inf]
        fast = native.maxpool_forward(x, k)
        assert fast is not None
        dx_fast = native.maxpool_backward(fast[1], dy, k)
        assert dx_fast is not None
        with monkeypatch.context() as m:
            m.setattr(native, "maxpool_forward", lambda *a: None)
            m.setattr(native, "maxpool_backward", lambda *a: None)
            y, idx = pool.forward(None, x)
            dx, _ = pool.backward(None, idx, dy, True)
        assert fast[0].dtype == y.dtype and fast[1].dtype == idx.dtype
        assert np.array_equal(fast[0].view(f"u{y.itemsize}"), y.view(f"u{y.itemsize}"))
        assert np.array_equal(fast[1], idx)
        assert dx_fast.dtype == dx.dtype == np.float32
        assert np.array_equal(dx_fast.view(np.uint32), dx.view(np.uint32))
        # the layer itself takes the native path and gives the same
        y2, idx2 = pool.forward(None, x)
        assert np.array_equal(y2.view(f"u{y.itemsize}"), y.view(f"u{y.itemsize}"))
        x[0, 0, 0, 0] = np.nan   # numpy's rule for NaNs: the native kernel declines
        assert native.maxpool_forward(x, k) is None
        y3, idx3 = pool.forward(None, x)
        assert np.isnan(y3[0, 0, 0, 0]) and idx3[0, 0, 0, 0] == 0
    assert native.maxpool_forward(np.zeros((1, 1, 3, 3), np.float32), 2) is None   # not k | H
    assert native.maxpool_forward(np.zeros((1, 1, 2, 2), np.int32), 2) is None


def _runs_reference(idx):
    """The maximal runs of an index, by numpy: rows (start, first index or 0xFFFFFFFF for a
    run of index 0, length)."""
    flat = idx.ravel().astype(np.int64)
    z = flat == 0
    cont = np.zeros(flat.size, dtype=bool)
    cont[1:] = ((flat[1:] == flat[:-1] + 1) & ~z[1:] & ~z[:-1]) | (z[1:] & z[:-1])
    start = np.flatnonzero(~cont)
    length = np.diff(np.append(start, flat.size))
    return np.stack([start, np.where(z[start], 0xFFFFFFFF, flat[start]), length],
                    axis=1).astype(np.uint32)


@pytest.mark.parametrize("dt", [np.int8, np.int16, np.int32, np.int64, np.float32])
def test_take_runs_equals_numpy(dt):
    """take from an index's runs (a frame's lanes: rows of an operand, zero lanes index 0)
    is vec[idx] for any vec (index 0 repeats vec[0], whatever it holds); an index without
    long runs keeps the plain gather; a run outside the vector is an IndexError."""
    assert native.available(), native.reason
    rng = np.random.default_rng(3)
    vec = rng.integers(-100, 100, 5000).astype(dt)
    vec[0] = 7                                   # not a zero: the fill reads it
    rows = []
    for b in range(300):                         # beats: [zeros | a row of 8 | a short tail]
        s = int(rng.integers(1, 4900))
        rows.append(np.r_[np.zeros(int(rng.integers(0, 9)), np.int64), np.arange(s, s + 8),
                          np.arange(s + 20, s + 20 + int(rng.integers(0, 5)))])
    flat = np.concatenate(rows)
    idx = native.index(flat[: flat.size // 16 * 16].reshape(-1, 16), vec.size)
    r = native.runs(idx)
    assert isinstance(r, native.Runs) and r.shape == idx.shape
    assert 4 * len(r.runs) <= idx.size
    assert np.array_equal(r.runs, _runs_reference(idx))
    out = native.take(vec, r)
    assert out.dtype == vec.dtype and out.shape == idx.shape
    assert np.array_equal(out, vec[idx])
    one = native.index(np.arange(1, 41).reshape(5, 8), vec.size)   # one run
    assert len(native.runs(one).runs) == 1 and np.array_equal(native.take(vec, native.runs(one)),
                                                             vec[one])
    scattered = native.index(rng.integers(0, vec.size, (64, 16)), vec.size)
    assert native.runs(scattered) is None
    # the largest indices, then index 0 (its run is separate: no wrap-around), a repeat
    edge = np.r_[0xFFFFFFFE, 0xFFFFFFFF, np.zeros(30), np.arange(1, 17), 16,
                 np.arange(17, 32)].astype(np.uint32)
    got = native.runs(edge)
    assert got is not None and np.array_equal(got.runs, _runs_reference(edge))
    assert got.runs.tolist() == [[0, 0xFFFFFFFE, 2], [2, 0xFFFFFFFF, 30], [32, 1, 16],
                                 [48, 16, 16]]
    bad = native.Runs(np.array([[0, vec.size - 4, 8]], np.uint32), np.zeros(8, np.uint32))
    with pytest.raises(IndexError):
        native.take(vec, bad)
    bad = native.Runs(np.array([[4, 1, 8]], np.uint32), np.zeros(8, np.uint32))   # past out
    with pytest.raises(IndexError):
        native.take(vec, bad)


def test_runs_from_layout_rows_equal_the_built_index():
    """native.runs_rows: the runs of a queue's frame index (layout rows by the frame's row
    order, header rows as their own lanes) without building it are runs() of the built
    index, exactly, and the index it builds on demand is that index; too few runs or too
    large header positions: None."""
    assert native.available(), native.reason
    rng = np.random.default_rng(4)
    lanes, n_in = 16, 500
    lay = np.zeros((n_in, lanes), np.int64)
    for r in range(n_in):                        # [left lanes | a run of 8 | zeros]
        s = int(rng.integers(1, 9000))
        k = int(rng.integers(0, 9))
        lay[r, :k] = np.arange(s + 100, s + 100 + k) if rng.random() < 0.5 else 0
        lay[r, 8:16] = np.arange(s, s + 8) if rng.random() < 0.8 else 0
    src = native.index(lay, 20000)
    n_src = 10000
    seen = 0
    for trial in range(20):
        n_hdr = int(rng.integers(0, 30))
        order = rng.permutation(n_in)[: int(rng.integers(1, n_in))] if trial % 2 else \
            np.arange(n_in)
        rows = np.insert(order, rng.integers(0, len(order) + 1, n_hdr),
                         n_in + np.arange(n_hdr)).astype(np.int64)
        g = np.take(src, np.where(rows >= n_in, 0, rows), axis=0)
        h = np.flatnonzero(rows >= n_in)
        g[h] = n_src + (rows[h] - n_in)[:, None] * lanes + np.arange(lanes)
        want = native.runs(g)
        got = native.runs_rows(src, rows, n_in, n_src)
        if want is None:
            assert got is None
            continue
        seen += 1
        assert got is not None and got.shape == g.shape
        assert np.array_equal(got.runs, want.runs), trial
        assert np.array_equal(got.index, g)
        vec = rng.integers(-50, 50, n_src + n_hdr * lanes).astype(np.int16)
        assert np.array_equal(native.take(vec, got), vec[g])
    assert seen >= 10
    scattered = native.index(rng.integers(1, 20000, (64, lanes)), 20000)
    assert native.runs_rows(scattered, np.arange(64), 64, 20000) is None
    assert native.runs_rows(src, np.array([n_in + 10]), n_in, 0xFFFFFFFF - 40) is None
    assert native.runs_rows(lay, np.arange(n_in), n_in, n_src) is None   # not uint32
    # the uint32 edge: a run ending at 0xFFFFFFFF, then index 0 (zero lanes: a run of its
    # own, no wrap-around), then a header row
    edge = np.zeros((4, 8), np.uint32)
    edge[0] = np.arange(0xFFFFFFF8, 0x100000000, dtype=np.uint64)
    edge[1, 4:] = np.arange(1, 5)
    edge[2] = np.arange(5, 13)
    rows = np.array([0, 1, 4, 2, 0], np.int64)
    got = native.runs_rows(edge, rows, 4, 100)
    g = native.frame_index(edge, rows, 4, 100)
    assert got is not None and np.array_equal(got.runs, _runs_reference(g))
    assert got.runs.tolist() == [[0, 0xFFFFFFF8, 8], [8, 0xFFFFFFFF, 4], [12, 1, 4],
                                 [16, 100, 8], [24, 5, 8], [32, 0xFFFFFFF8, 8]]


@pytest.mark.parametrize("width", [1, 7, 12, 20, 24, 31, 33, 40, 57, 58, 63, 64])
def test_unpack_equals_unpack_beats(width):
    """native.unpack_into is core.unpack_beats, bit for bit, for any lane width (lanes
    across byte and 64-bit word edges, the sign bit of every lane, a beat's padding bits
    ignored) and packed by pack_beats; a partial beat is a ValueError, and an output it
    cannot write is left to numpy (False)."""
    assert native.available(), native.reason
    rng = np.random.default_rng(width)
    for lanes in (1, 3, 8, 16):
        axis_bits = -(-lanes * width // 32) * 32          # whole 32-bit words, as spec pads
        lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
        vals = rng.integers(lo, hi, (50, lanes), endpoint=True, dtype=np.int64)
        vals[0], vals[1] = lo, hi
        vals[2] = -1
        data = bytearray(pack_beats(vals, width, axis_bits))
        if lanes * width < axis_bits:                     # padding bits set: not read
            nb = axis_bits // 8
            for b in range(50):
                data[b * nb + nb - 1] |= 0x80
        want = unpack_beats(bytes(data), lanes, width, axis_bits)
        out = np.full((50, lanes), 12345, np.int64)
        assert native.unpack_into(bytes(data), out, width, axis_bits)
        assert np.array_equal(out, want) and np.array_equal(out, vals), (width, lanes)
    with pytest.raises(ValueError):
        native.unpack_into(bytes(data)[:-1], np.empty((50, lanes), np.int64), width, axis_bits)
    assert not native.unpack_into(bytes(data), np.empty((50, lanes), np.int32), width,
                                  axis_bits)
    assert not native.unpack_into(bytes(data), np.empty((lanes, 50), np.int64).T, width,
                                  axis_bits)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_avgpool_native_bit_identical_to_numpy(k, monkeypatch):
    """AvgPool2d with the native kernels against its numpy definition (the kernels
    switched off), bit for bit: window sums of magnitudes far apart (the order of the
    additions shows), signed zeros, infinities, NaNs, subnormals, in x and in dy; float64
    and other windows than 2x2 forward go to numpy."""
    from intergrad import layers as L
    assert native.available(), native.reason
    rng = np.random.default_rng(10 + k)
    pool = L.AvgPool2d(k)
    for trial in range(8):
        B, C, Ho, Wo = (int(v) for v in rng.integers(1, [4, 5, 7, 7]))
        x = (rng.standard_normal((B, C, Ho * k, Wo * k))
             * 10.0 ** rng.integers(-6, 7, (B, C, Ho * k, Wo * k))).astype(np.float32)
        x.flat[rng.integers(x.size, size=5)] = [-0.0, 0.0, np.inf, -np.inf, 1e-42]
        if trial % 2:
            x.flat[rng.integers(x.size)] = np.nan
            x[0, 0, :k, :k] = -0.0                    # a window of negative zeros
        dy = (rng.standard_normal((B, C, Ho, Wo)) * 10.0 ** rng.integers(-40, 30, (B, C, Ho, Wo))
              ).astype(np.float32)
        dy.flat[rng.integers(dy.size, size=3)] = [np.nan, -0.0, 3e-45]
        with monkeypatch.context() as m:
            m.setattr(native, "avgpool_forward", lambda *a: None)
            m.setattr(native, "avgpool_backward", lambda *a: None)
            y, _ = pool.forward(None, x)
            dx, _ = pool.backward(None, None, dy, True)
        fast = native.avgpool_forward(x, k)
        if k == 2:
            assert fast is not None and fast.dtype == y.dtype == np.float32
            assert np.array_equal(fast.view(np.uint32), y.view(np.uint32)), trial
        else:
            assert fast is None
        dx_fast = native.avgpool_backward(dy, k)
        assert dx_fast is not None and dx_fast.dtype == dx.dtype == np.float32
        assert np.array_equal(dx_fast.view(np.uint32), dx.view(np.uint32)), trial
        y2, _ = pool.forward(None, x)                  # the layer takes the native path
        assert np.array_equal(y2.view(np.uint32), y.view(np.uint32))
    assert native.avgpool_forward(np.zeros((1, 1, 4, 4)), 2) is None        # float64
    assert native.avgpool_backward(np.zeros((1, 1, 2, 2)), 2) is None
