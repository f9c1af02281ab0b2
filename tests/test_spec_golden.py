"""Single source of truth and the golden model, without a simulator."""
from __future__ import annotations

import numpy as np
import pytest

from intergrad import spec
from intergrad.core import (Job, JobError, check_fits, expected_counters, pack_beats,
                            unpack_beats, wrap)
from intergrad.golden import ArrayModel, intergrad, os_accumulate, ws
from intergrad.spec import ArrayConfig


def test_generated_files_are_current():
    for rel, gen in spec.GENERATED.items():
        path = spec.repo_root() / rel
        assert path.read_text() == gen(), f"{rel} is stale: run python -m intergrad.spec --write"


def test_register_map_is_consistent():
    offs = [r.offset for r in spec.REGISTERS]
    assert len(set(offs)) == len(offs) and all(o % 4 == 0 for o in offs)
    assert max(offs) < spec.COUNTER_BASE
    for r in spec.REGISTERS:
        used = 0
        for fname, lsb, w, _ in r.fields:
            mask = ((1 << w) - 1) << lsb
            assert not used & mask, f"{r.name}: overlapping fields"
            assert lsb + w <= 32
            used |= mask
            if r.access in ("RW", "WO"):
                # the RTL applies write strobes per byte: a writable field lies within one
                # byte, or starts on a byte and spans whole bytes
                assert lsb // 8 == (lsb + w - 1) // 8 or (lsb % 8 == 0 and w % 8 == 0), \
                    f"{r.name}.{fname}: field straddles a byte boundary"
    assert spec.pack_fields("SHAPE", ROWS_ACT=3, COLS_ACT=5) == 3 | (5 << 16)
    with pytest.raises(ValueError):
        spec.pack_fields("SHAPE", ROWS_ACT=256)
    with pytest.raises(ValueError, match="unknown flag"):
        spec.flags_word("FAST")


def test_wrap_twos_complement():
    assert wrap(2**31, 32) == -2**31
    assert wrap(-2**31 - 1, 32) == 2**31 - 1
    assert wrap(np.array([5, -5]), 4).tolist() == [5, -5]
    assert wrap(np.array([8, 15, 16]), 4).tolist() == [-8, -1, 0]
    big = np.array([2**70 + 3], dtype=object)
    assert wrap(big, 32).tolist() == [3]


def test_wrap_is_stepwise_accumulation():
    """Wrapping the exact sum equals wrapping after every addition, as the RTL does."""
    rng = np.random.default_rng(0)
    a = rng.integers(-2**15, 2**15, 500)
    b = rng.integers(-2**15, 2**15, 500)
    acc = 0
    for x, y in zip(a.tolist(), b.tolist()):
        acc = int(wrap(acc + x * y, 20))
    assert acc == int(wrap(int(np.dot(a, b)), 20))


def test_check_fits_names_the_element():
    with pytest.raises(OverflowError, match=r"X does not fit in 8-bit signed: element \(1,\) = 128"):
        check_fits([1, 128], 8, "X")
    assert check_fits([-128, 127], 8).tolist() == [-128, 127]


@pytest.mark.parametrize("width,lanes,bits", [(16, 16, 256), (8, 8, 64), (5, 3, 16), (20, 5, 104)])
def test_pack_unpack_roundtrip(width, lanes, bits):
    rng = np.random.default_rng(width)
    v = rng.integers(-(1 << (width - 1)), 1 << (width - 1), (7, lanes))
    data = pack_beats(v, width, bits)
    assert len(data) == 7 * bits // 8
    assert np.array_equal(unpack_beats(data, lanes, width, bits), v)


def test_modes_against_float_reference():
    rng = np.random.default_rng(1)
    W = rng.integers(-100, 100, (4, 3))
    X = rng.integers(-100, 100, (9, 4))
    dY = rng.integers(-100, 100, (9, 3))
    dX, dW = intergrad(W, X, dY, 32)
    assert np.array_equal(dX, (dY.astype(float) @ W.T).astype(np.int64))
    assert np.array_equal(dW, (X.T.astype(float) @ dY).astype(np.int64))
    assert np.array_equal(ws(W, dY, 32), dX)
    assert np.array_equal(os_accumulate(np.zeros((4, 3)), X, dY, 32), dW)


def test_array_model_jobs_and_state():
    cfg = ArrayConfig(4, 3, 16, 32, 1)
    m = ArrayModel(cfg)
    rng = np.random.default_rng(2)
    W = rng.integers(-50, 50, (4, 3))
    W2 = rng.integers(-50, 50, (4, 3))
    X = rng.integers(-50, 50, (6, 4))
    dY = rng.integers(-50, 50, (6, 3))
    job = Job("IG", 6, 4, 3, {"LOAD_W", "ACC_CLEAR", "DRAIN", "PRELOAD"})
    out = m.run(job, m.job_input(job, weights=W, left=X, top=dY, preload=W2))
    assert out.shape == (6 + 4, cfg.out_lanes)
    assert np.array_equal(out[:6, :4], dY @ W.T)
    assert np.array_equal(out[6:, :3], X.T @ dY)
    assert m.preloaded
    # swapping in the preloaded weights; transposed loads store S^T
    j2 = Job("WS", 6, 4, 3, {"SWAP"})
    out2 = m.run(j2, m.job_input(j2, top=dY))
    assert np.array_equal(out2[:, :4], dY @ W2.T)
    j3 = Job("WS", 2, 4, 3, {"LOAD_W", "TRANSPOSE"})
    m.run(j3, m.job_input(j3, weights=W, top=dY[:2]))
    assert np.array_equal(m.active_weights, W)
    with pytest.raises(JobError, match="NO_PRELOAD"):
        m.run(j2, m.job_input(j2, top=dY))
    with pytest.raises(JobError, match="BAD_SHAPE"):
        Job("WS", 1, 5, 3).validate(cfg)
    with pytest.raises(JobError, match="BAD_MODE"):
        Job("XS", 1, 1, 1)


def test_expected_counters_formula():
    cfg = ArrayConfig(8, 8, 16, 32, 1)
    j = Job("IG", 100, 8, 8, {"LOAD_W", "DRAIN"})
    c = expected_counters(cfg, j)
    assert c["steps"] == 8 + 100 + 16 + 8
    assert c["macs"] == 2 * 100 * 64
    assert c["in_beats"] == 108 and c["out_beats"] == 108 and c["wload_beats"] == 8
    single = expected_counters(ArrayConfig(8, 8, 16, 32, 0), j)
    assert single["busy_cycles"] == c["steps"] + 100 + 16
    # preload longer than the tail extends the job
    jp = Job("WS", 1, 8, 8, {"PRELOAD"})
    assert expected_counters(ArrayConfig(2, 8, 16, 32, 1), Job("WS", 1, 2, 8, {"PRELOAD"}))["steps"] == 1 + 10
    assert expected_counters(cfg, jp)["steps"] == 1 + 16
