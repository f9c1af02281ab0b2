"""The analytical model against the simulated RTL: the scheduler runs FC and conv layers'
training passes on the Verilated core, and every pass's hardware counters must equal the
model's counts (busy cycles: plus the measured stalls)."""
from __future__ import annotations

import numpy as np
import pytest

from intergrad.conv import conv2d_backward, conv2d_forward
from intergrad.driver import Accelerator
from intergrad.model import DATAFLOWS, Array, profile
from intergrad.scheduler import Scheduler
from intergrad.zoo import Layer, Network

EXACT = ("steps", "macs", "in_beats", "out_beats", "wload_beats", "jobs")


def _model_pass(cfg, layer, batch, schedule, pass_, first_dx=True, queued=False):
    name = {"baseline": "wsos"}.get(schedule, "intergrad" if cfg.dual_mac else "intergrad1")
    res = profile(Network("one", [layer]), DATAFLOWS[name],
                  Array(cfg.rows, cfg.cols, cfg.data_w, cfg.acc_w, queued=queued), batch,
                  first_dx=first_dx)
    return {k: int(v[0]) for k, v in res.passes[pass_].items() if k in EXACT + ("busy_cycles",)}


def _check(cfg, report, layer, batch, first_dx=True):
    assert len(report)
    for rec in report:
        want = _model_pass(cfg, layer, batch, rec.schedule, rec.pass_, first_dx, rec.queued)
        got = rec.counters
        for k in EXACT:
            assert got[k] == want[k], (rec.layer, rec.pass_, rec.schedule, k, got[k], want[k])
        assert got["busy_cycles"] == want["busy_cycles"] + got["stall_in"] + got["stall_out"]


@pytest.mark.parametrize("stalls", [(0.0, 0.0), (0.25, 0.25)], ids=["nostall", "stalls"])
def test_model_equals_simulated_rtl_fc(dev, stalls):
    dev.set_stalls(*stalls, seed=3)
    cfg = dev.cfg
    rng = np.random.default_rng(7)
    for B, N, M in ((3, 5, 7), (13, 17, 9), (1, 20, 30)):
        s = Scheduler(Accelerator(dev))
        X = rng.integers(-50, 50, (B, N))
        W = rng.integers(-50, 50, (N, M))
        dY = rng.integers(-50, 50, (B, M))
        s.fc_forward(X, W, schedule="baseline")
        for sched in ("baseline", "intergrad"):
            s.fc_backward(X, W, dY, schedule=sched)
        # the forward record is checked against either design (the same WS pass)
        _check(cfg, s.report, Layer("fc", "fc", N, 1, 1, M, 1, 1), B)
        # a first layer: no dX, the dW pass alone (OS) in both schedules
        s = Scheduler(Accelerator(dev))
        for sched in ("baseline", "intergrad"):
            s.fc_backward(X, W, dY, schedule=sched, need_dx=False)
        assert {r.pass_ for r in s.report} == {"dw"}
        _check(cfg, s.report, Layer("fc", "fc", N, 1, 1, M, 1, 1), B, first_dx=False)
    dev.set_stalls(0.0, 0.0)


@pytest.mark.parametrize("shape", [(2, 3, 7, 7, 5, 3, 1, 1), (3, 2, 9, 8, 4, 3, 2, 0)],
                         ids=["3x3s1p1", "3x3s2p0"])
def test_model_equals_simulated_rtl_conv(dev, shape):
    B, cin, H, Wd, cout, k, stride, pad = shape
    cfg = dev.cfg
    rng = np.random.default_rng(1)
    x = rng.integers(-20, 20, (B, cin, H, Wd))
    w = rng.integers(-20, 20, (cout, cin, k, k))
    ho, wo = (H + 2 * pad - k) // stride + 1, (Wd + 2 * pad - k) // stride + 1
    layer = Layer("conv", "conv", cin, H + 2 * pad, Wd + 2 * pad, cout, ho, wo, k, k, stride)
    for sched in ("baseline", "intergrad"):
        s = Scheduler(Accelerator(dev))
        y = conv2d_forward(s, x, w, stride, pad)
        s.report[0].schedule = sched
        conv2d_backward(s, x, w, rng.integers(-20, 20, y.shape), stride, pad, schedule=sched)
        _check(cfg, s.report, layer, B)


@pytest.mark.parametrize("stalls", [(0.0, 0.0), (0.25, 0.25)], ids=["nostall", "stalls"])
def test_model_equals_simulated_rtl_queued_passes(dev, stalls):
    """Every pass of the plan run as job queues (Accelerator.run_pass): the RTL counters equal
    the analytical model's counts with ``queued=True`` (one header beat and one busy cycle per
    job on top of the same steps), bit for bit."""
    from intergrad.golden import ArrayModel
    from intergrad.model.counts import pass_counters
    from intergrad.model.dataflows import layout
    from intergrad.plan import plan_pass
    dev.set_stalls(*stalls, seed=4)
    cfg = dev.cfg
    acc = Accelerator(dev)
    rng = np.random.default_rng(9)
    lim = 1 << (cfg.data_w - 1)
    for B, N, M in ((3, 5, 7), (13, 17, 9), (1, 20, 30)):
        for p, mode in (("fwd", "WS"), ("dx", "WS"), ("dw", "OS"), ("ig", "IG")):
            jobs = [t.job for t in plan_pass(cfg, p, B, N, M)]
            lanes = [rng.integers(-lim, lim, (j.in_beats(), cfg.in_lanes)) for j in jobs]
            m = ArrayModel(cfg)
            expect = [m.run(j, ln) for j, ln in zip(jobs, lanes)]
            acc.reset_counters()
            outs = acc.run_pass(jobs, lanes)
            got = acc.counters()
            assert all(np.array_equal(o, e) for o, e in zip(outs, expect))
            r, c, T, wbc = layout(p, mode, B, N, M)
            want = pass_counters(cfg.rows, cfg.cols, r, c, T, mode, wb_cols=wbc,
                                 dual_mac=cfg.dual_mac, queued=True)
            for k in EXACT:
                assert got[k] == int(want[k]), (p, B, N, M, k, got[k], int(want[k]))
            assert got["busy_cycles"] == int(want["busy_cycles"]) + got["stall_in"] + \
                got["stall_out"]
    dev.set_stalls(0.0, 0.0)
