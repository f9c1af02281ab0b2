"""Training on the simulated hardware and the command line."""
from __future__ import annotations

import numpy as np
import pytest

from intergrad import cli
from intergrad.engine import DeviceEngine, FloatEngine, quantize
from intergrad.nn import DigitsCNN, load_digits_split, softmax_ce, train
from intergrad.scheduler import Scheduler


@pytest.fixture(scope="module")
def sched():
    from intergrad.device.sim import SimDevice
    from intergrad.driver import Accelerator
    dev = SimDevice(verbose=False)
    yield Scheduler(Accelerator(dev))
    dev.close()


def test_quantize_scale_and_range():
    x = np.array([0.5, -0.25, 0.1])
    q, f = quantize(x, 10)
    assert np.abs(q).max() < 2**10 and np.abs(q).max() >= 2**9
    assert np.allclose(q * 2.0**-f, x, atol=2.0**-f)
    assert quantize(np.zeros(3), 8)[0].tolist() == [0, 0, 0]
    with pytest.raises(FloatingPointError):
        quantize(np.array([np.nan]), 8)


def test_short_training_on_the_array_lowers_the_loss(sched):
    data = load_digits_split(0)
    sub = (data[0][:320], data[1][:320], data[2][:100], data[3][:100])
    net = DigitsCNN(4, seed=1)
    x, y = sub[0][:64], sub[1][:64]
    be = DeviceEngine(sched, "intergrad")
    loss0, _ = softmax_ce(net.forward(be, x)[0], y)
    hist = train(net, be, sub, epochs=2, batch=32, lr=0.2, progress=False)
    loss1, _ = softmax_ce(net.forward(be, x)[0], y)
    assert loss1 < loss0 - 0.2, (loss0, loss1)
    assert hist[-1].loss < hist[0].loss
    # the fixed-point gradients track the float reference closely
    ref = DigitsCNN(4, seed=1)
    href = train(ref, FloatEngine(), sub, epochs=2, batch=32, lr=0.2, progress=False)
    assert abs(href[-1].loss - hist[-1].loss) < 0.05
    kinds = {(r.layer, r.pass_) for r in sched.report}
    assert {("conv1", "fwd"), ("conv1", "dw"), ("fc1", "fwd"), ("fc1", "ig")} <= kinds


def test_schedules_give_the_same_gradients(sched):
    data = load_digits_split(0)
    x, y = data[0][:32], data[1][:32]
    grads = {}
    for name in ("baseline", "intergrad"):
        net = DigitsCNN(4, seed=2)
        be = DeviceEngine(sched, name)
        logits, cache = net.forward(be, x)
        _, dl = softmax_ce(logits, y)
        grads[name] = net.backward(be, cache, dl)
    for a, b in zip(grads["baseline"], grads["intergrad"]):
        assert np.array_equal(a, b)


def test_cli_demo_and_info(capsys):
    assert cli.main(["demo", "--backend", "sim", "--batch", "20"]) == 0
    out = capsys.readouterr().out
    assert "bit-exactly: True" in out
    assert cli.main(["info", "--backend", "sim"]) == 0
    out = capsys.readouterr().out
    assert "0x49475244" in out and "array: 8x8" in out


def test_cli_bad_array_is_a_clear_error(capsys):
    assert cli.main(["demo", "--backend", "sim", "--array", "8by8"]) == 2
    assert "RxC" in capsys.readouterr().err


def test_cli_train_progress_bar_names_the_backend(monkeypatch, capsys):
    """The progress bar's label is the backend's name (``[sim]``), not ``[device]``."""
    import intergrad.nn as nn

    seen = []

    def fake_train(net, be, data, epochs, **kw):
        seen.append(be.name)
        hist = [nn.EpochStats(e, 0.5, 0.9, 0.9, 0.1, 0.0) for e in range(1, epochs + 1)]
        for st in hist:
            if kw.get("on_epoch"):
                kw["on_epoch"](st)
        return hist

    monkeypatch.setattr(nn, "train", fake_train)
    assert cli.main(["train", "--backend", "sim", "--epochs", "1", "--measure-steps", "0"]) == 0
    assert seen[0] == "sim", seen
    assert "epoch   1" in capsys.readouterr().out
