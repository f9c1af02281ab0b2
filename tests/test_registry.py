"""The registry of backends and schedules, the one device factory, the GEMM-engine protocol
and the scheduler's Report / Comparison (no simulator needed except where a fixture says)."""
from __future__ import annotations

import numpy as np
import pytest

from intergrad import registry
from intergrad.cli import build_parser
from intergrad.conv import conv2d_backward, conv2d_forward
from intergrad.device import BackendUnavailable, board_present, resolve_backend
from intergrad.engine import DeviceEngine, FloatEngine, GemmEngine
from intergrad.plan import SCHEDULES as PLAN_SCHEDULES
from intergrad.scheduler import PassRecord, Report, Scheduler
from intergrad.spec import ArrayConfig, parse_size


def test_registry_schedules_are_the_planners():
    assert list(registry.SCHEDULES) == ["intergrad", "baseline"]
    assert set(registry.SCHEDULES) == set(PLAN_SCHEDULES)
    assert registry.DEFAULT_SCHEDULE in registry.SCHEDULES
    assert registry.DEFAULT_BACKEND in registry.BACKENDS


def test_cli_choices_come_from_the_registry():
    ap = build_parser()
    sub = next(a for a in ap._actions if a.dest == "cmd").choices
    for cmd in ("train", "evaluate", "demo", "info"):
        acts = {a.dest: a for a in sub[cmd]._actions}
        assert list(acts["backend"].choices) == list(registry.BACKENDS)
        assert acts["array"].default == "8x8"
    acts = {a.dest: a for a in sub["train"]._actions}
    assert list(acts["schedule"].choices) == list(registry.SCHEDULES)


def test_resolve_backend():
    assert resolve_backend("sim") == ("sim", None)
    with pytest.raises(ValueError, match="unknown backend 'fpga'"):
        resolve_backend("fpga")
    if not board_present():
        assert resolve_backend("auto") == ("sim", None)
        with pytest.raises(BackendUnavailable, match="no PYNQ board"):
            resolve_backend("pynq")


def test_parse_size():
    assert parse_size(" 8x16 ") == (8, 16)
    assert parse_size("128X128") == (128, 128)   # no RTL range check here
    assert ArrayConfig.parse("4x6", dual_mac=0) == ArrayConfig(4, 6, dual_mac=0)
    with pytest.raises(ValueError, match="must look like RxC"):
        parse_size("8by8")
    with pytest.raises(ValueError, match="out of range"):
        ArrayConfig.parse("65x8")


def test_engines_follow_the_protocol():
    assert isinstance(FloatEngine(), GemmEngine)
    for cls in (DeviceEngine, Scheduler):
        for m in ("name", "acc_w", "fc_forward", "fc_backward", "conv_forward", "conv_backward"):
            assert hasattr(cls, m), (cls, m)


def _direct_conv(x, w, stride, pad):
    B, _, H, W = x.shape
    co, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    Ho, Wo = (H + 2 * pad - k) // stride + 1, (W + 2 * pad - k) // stride + 1
    y = np.zeros((B, co, Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            patch = xp[:, :, i * stride:i * stride + k, j * stride:j * stride + k]
            y[:, :, i, j] = np.einsum("bchw,ochw->bo", patch, w)
    return y


@pytest.mark.parametrize("stride,pad", [(1, 1), (2, 0)])
def test_float_engine_conv_is_the_lowered_conv(stride, pad):
    """FloatEngine's conv goes through intergrad.conv: equal to a direct convolution, and its
    dW / dX satisfy the adjoint identities of the forward pass."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    e = FloatEngine()
    y = e.conv_forward(x, w, "c", stride=stride, pad=pad)
    assert np.allclose(y, _direct_conv(x, w, stride, pad), atol=1e-4)
    assert np.array_equal(y, conv2d_forward(e, x, w, stride, pad, layer="c"))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    r = e.conv_backward(x, w, dy, "c", stride=stride, pad=pad)
    assert r.dW.shape == w.shape and r.dX.shape == x.shape
    xr = rng.standard_normal(x.shape).astype(np.float32)
    wr = rng.standard_normal(w.shape).astype(np.float32)
    assert np.isclose(np.sum(dy * _direct_conv(xr, w, stride, pad)), np.sum(r.dX * xr), rtol=1e-4)
    assert np.isclose(np.sum(dy * _direct_conv(x, wr, stride, pad)), np.sum(r.dW * wr), rtol=1e-4)
    assert conv2d_backward(e, x, w, dy, stride, pad, need_dx=False)[0] is None


def _rec(layer, pass_, cycles, beats_in, beats_out, macs=0, schedule="-"):
    return PassRecord(layer, pass_, schedule, 1, 1, 1, 1,
                      {"busy_cycles": cycles, "in_beats": beats_in, "out_beats": beats_out,
                       "macs": macs})


def test_report_is_a_dataclass_sequence_with_tables():
    base = Report([_rec("fc1", "fwd", 10, 5, 5, 40), _rec("fc1", "dx", 8, 4, 4),
                   _rec("fc1", "dw", 8, 4, 1), _rec("fc1", "fwd", 10, 5, 5, 40)])
    ig = Report([_rec("fc1", "fwd", 10, 5, 5, 40), _rec("fc1", "ig", 8, 4, 5),
                 _rec("fc1", "fwd", 10, 5, 5, 40)])
    assert len(base) == 4 and base[-1].pass_ == "fwd" and list(base)[1].pass_ == "dx"
    assert base.totals(**{"pass": "fwd"}) == {"busy_cycles": 20, "in_beats": 10,
                                              "out_beats": 10, "macs": 80}
    rows = base.by_layer_pass(ArrayConfig(2, 2))
    assert [(r["layer"], r["pass"], r["jobs"]) for r in rows] == \
        [("fc1", "fwd", 2), ("fc1", "dx", 1), ("fc1", "dw", 1)]
    assert rows[0]["beats"] == 20 and rows[0]["MAC util"] == 100.0 * 80 / (4 * 20)
    cmp = base.compare(ig)
    got = {r["scope"]: r for r in cmp.rows()}
    assert list(got) == ["fc1 backward", "all layers, backward", "whole step (fwd+bwd)"]
    assert got["fc1 backward"]["cycles base"] == 16 and got["fc1 backward"]["cycles IG"] == 8
    assert got["fc1 backward"]["cycle ratio"] == 2.0
    assert got["whole step (fwd+bwd)"]["beats base"] == 33
    assert got["whole step (fwd+bwd)"]["beats IG"] == 29
    both = Report()
    both.extend(base)
    both.extend(ig)
    assert len(both) == 7 and both.totals(layer="fc1")["busy_cycles"] == 36 + 28
    base.clear()
    assert len(base) == 0 and base.rows() == []
