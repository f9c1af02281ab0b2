"""A short LeNet-class training on the simulated array lowers the loss in both precisions
(int16 on the 16/32-bit build, int8 on the 8/20-bit build), InterGrad in every conv layer
but the first, and stays close to its float twin."""
from __future__ import annotations

import numpy as np
import pytest

from intergrad import layers as L
from intergrad.nn import SGD, DeviceBackend, FloatBackend, load_digits_split, softmax_ce, train
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
        be = DeviceBackend(sched, "intergrad", stochastic=stochastic, seed=3)
        net = L.build("lenet", (1, 8, 8), seed=1, channels=4)
        ref = net.copy()
        x, y = sub[0][:64], sub[1][:64]
        loss0, _ = softmax_ce(net.forward(FloatBackend(), x)[0], y)
        hist = train(net, be, sub, epochs=3, batch=32, lr=0.1, progress=False,
                     opt=SGD(net.params(), 0.1, 0.9))
        loss1, _ = softmax_ce(net.forward(FloatBackend(), x)[0], y)
        assert loss1 < loss0 - 0.3, (loss0, loss1)
        assert hist[-1].loss < hist[0].loss
        href = train(ref, FloatBackend(), sub, epochs=3, batch=32, lr=0.1, progress=False,
                     opt=SGD(ref.params(), 0.1, 0.9))
        assert abs(href[-1].loss - hist[-1].loss) < (0.02 if bits == 16 else 0.15)
        kinds = {(r.layer, r.pass_) for r in sched.report}
        assert {("conv1", "dw"), ("conv2", "ig"), ("fc1", "ig"), ("fc2", "ig")} <= kinds
        assert ("conv1", "ig") not in kinds
    finally:
        dev.close()
