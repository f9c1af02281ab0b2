"""A short LeNet-class training on the simulated array lowers the loss in both precisions
(int16 on the 16/32-bit build, int8 on the 8/20-bit build), InterGrad in every conv layer
but the first, and stays close to its float twin."""
from __future__ import annotations

import numpy as np
import pytest

from intergrad import layers as L
from intergrad.engine import DeviceEngine, FloatEngine
from intergrad.nn import SGD, load_digits_split, softmax_ce, train
from intergrad.scheduler import Scheduler
from intergrad.spec import ArrayConfig


@pytest.mark.parametrize("bits,acc_w,stochastic", [(16, 32, False), (8, 20, False), (8, 20, True)],
                         ids=["int16", "int8", "int8-stochastic"])
def test_short_lenet_training_lowers_the_loss(bits, acc_w, stochastic):
    from intergrad.device.sim import SimDevice
    from intergrad.driver import Accelerator

    d = load_digits_split(0)
    sub = (d[0][:192], d[1][:192], d[2][:64], d[3][:64])
    dev = SimDevice(ArrayConfig(8, 8, bits, acc_w, 1), verbose=False)
    try:
        sched = Scheduler(Accelerator(dev))
        be = DeviceEngine(sched, "intergrad", stochastic=stochastic, seed=3)
        net = L.build("lenet", (1, 8, 8), seed=1, channels=4)
        ref = net.copy()
        x, y = sub[0][:64], sub[1][:64]
        loss0, _ = softmax_ce(net.forward(FloatEngine(), x)[0], y)
        hist = train(net, be, sub, epochs=3, batch=32, lr=0.1, progress=False,
                     opt=SGD(net.params(), 0.1, 0.9))
        loss1, _ = softmax_ce(net.forward(FloatEngine(), x)[0], y)
        assert loss1 < loss0 - 0.3, (loss0, loss1)
        assert hist[-1].loss < hist[0].loss
        href = train(ref, FloatEngine(), sub, epochs=3, batch=32, lr=0.1, progress=False,
                     opt=SGD(ref.params(), 0.1, 0.9))
        assert abs(href[-1].loss - hist[-1].loss) < (0.02 if bits == 16 else 0.15)
        kinds = {(r.layer, r.pass_) for r in sched.report}
        assert {("conv1", "dw"), ("conv2", "ig"), ("fc1", "ig"), ("fc2", "ig")} <= kinds
        assert ("conv1", "ig") not in kinds
    finally:
        dev.close()


def test_lenet5_matches_the_zoo():
    """--net lenet5 has the zoo's layer shapes (convs and FCs) at its 32x32 input."""
    from intergrad import zoo

    net = L.build("lenet5", (1, 32, 32))
    ours = []
    for i, layer in enumerate(net.layers):
        if layer.kind in ("conv", "fc"):
            ours.append((layer.kind, int(np.prod(net.shapes[i])), int(np.prod(net.shapes[i + 1]))))
    theirs = [(l.kind, l.cin * l.hin * l.win, l.cout * l.hout * l.wout)
              for l in zoo.get("lenet5").layers if l.kind in ("conv", "fc")]
    assert ours == theirs
