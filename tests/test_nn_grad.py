"""Every layer's forward and backward against an independent autograd implementation (JAX on
CPU), for the float path and for the device path (the simulated array, within the
quantization error); max-pool ties included."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
jax = pytest.importorskip("jax")
jnp = jax.numpy
jax.config.update("jax_enable_x64", True)

from intergrad import layers as L  # noqa: E402
from intergrad.engine import DeviceEngine, FloatEngine  # noqa: E402
from intergrad.nn import softmax_ce  # noqa: E402
from intergrad.scheduler import Scheduler  # noqa: E402
from intergrad.spec import ArrayConfig  # noqa: E402


# ------------------------------------------------------------------------------ JAX reference

def j_conv(x, w, b, stride, pad):
    y = jax.lax.conv_general_dilated(x, w, (stride, stride), [(pad, pad), (pad, pad)],
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return y + b[None, :, None, None]


def j_maxpool(x, k):
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, k, k), (1, 1, k, k), "VALID")


def j_avgpool(x, k):
    return jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 1, k, k), (1, 1, k, k), "VALID") / (k * k)


def j_layer(layer, params, x):
    if isinstance(layer, L.Conv2d):
        return j_conv(x, params[0], params[1], layer.stride, layer.pad)
    if isinstance(layer, L.Linear):
        return x @ params[0] + params[1]
    if isinstance(layer, L.ReLU):
        return jax.nn.relu(x)     # gradient 0 at 0, like ours (jnp.maximum splits it)
    if isinstance(layer, L.AvgPool2d):
        return j_avgpool(x, layer.k)
    if isinstance(layer, L.MaxPool2d):
        return j_maxpool(x, layer.k)
    if isinstance(layer, L.Flatten):
        return x.reshape(x.shape[0], -1)
    raise TypeError(layer)


def j_net(net, params, x):
    i = 0
    for layer in net.layers:
        n = len(layer.params())
        x = j_layer(layer, params[i:i + n], x)
        i += n
    return x


def j_loss(net, params, x, y):
    logits = j_net(net, params, x)
    logp = jax.nn.log_softmax(logits, axis=1)
    return -jnp.mean(logp[jnp.arange(len(y)), y])


def reference_grads(net, x, y):
    params = [jnp.asarray(p, dtype=jnp.float64) for p in net.params()]
    xj = jnp.asarray(x, dtype=jnp.float64)
    logits = j_net(net, params, xj)
    g = jax.grad(lambda ps: j_loss(net, ps, xj, jnp.asarray(y)))(params)
    return np.asarray(logits), [np.asarray(a) for a in g]


def ours(net, be, x, y):
    logits, cache = net.forward(be, x)
    _, dl = softmax_ce(logits.copy(), y)
    return logits, net.backward(be, cache, dl)


def rel_err(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def rel_l2(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


# ------------------------------------------------------------------------------ nets under test

def tiny_nets():
    """Every layer type, conv with stride and padding, small enough for the simulator."""
    rng = np.random.default_rng(3)
    conv_stride = L.Sequential([
        L.Conv2d(2, 3, 3, stride=2, pad=1, rng=rng, name="c1"), L.ReLU("r1"),
        L.Conv2d(3, 4, 3, stride=1, pad=1, rng=rng, name="c2"), L.ReLU("r2"),
        L.MaxPool2d(2, "p1"), L.Flatten(), L.Linear(16, 5, rng, "f1"), L.ReLU("r3"),
        L.Linear(5, 3, rng, "f2")], (2, 8, 8), "t1")
    avg = L.Sequential([
        L.Conv2d(1, 2, 2, rng=rng, name="c1"), L.AvgPool2d(2, "p1"),
        L.Conv2d(2, 3, 3, pad=2, rng=rng, name="c2"), L.ReLU("r1"), L.Flatten(),
        L.Linear(3 * 6 * 6, 4, rng, "f1")], (1, 9, 9), "t2")
    return [conv_stride, avg]


@pytest.mark.parametrize("which", [0, 1])
def test_float_path_matches_jax(which):
    net = tiny_nets()[which]
    rng = np.random.default_rng(which)
    x = rng.standard_normal((5,) + net.input_shape).astype(np.float32)
    y = rng.integers(0, net.shapes[-1][0], 5)
    ref_logits, ref_g = reference_grads(net, x, y)
    logits, g = ours(net, FloatEngine(), x, y)
    assert rel_err(logits, ref_logits) < 1e-5
    assert len(g) == len(ref_g)
    for a, b, p in zip(g, ref_g, net.params()):
        assert a.shape == p.shape
        assert rel_err(a, b) < 1e-4, (a, b)


@pytest.mark.parametrize("name,shape", [("digits", (1, 8, 8)), ("lenet", (1, 8, 8)),
                                        ("lenet5", (1, 32, 32))])
def test_named_networks_float_path_matches_jax(name, shape):
    net = L.build(name, shape, seed=1)
    rng = np.random.default_rng(1)
    x = rng.random((4,) + shape).astype(np.float32)
    y = np.array([0, 3, 7, 9])
    ref_logits, ref_g = reference_grads(net, x, y)
    logits, g = ours(net, FloatEngine(), x, y)
    assert rel_err(logits, ref_logits) < 1e-5
    for a, b in zip(g, ref_g):
        assert rel_err(a, b) < 1e-4


def test_maxpool_ties_route_to_exactly_one_element():
    # every window tied: constant windows, and ties on the anti-diagonal (the old bug)
    x = np.zeros((1, 2, 4, 4), np.float32)
    x[0, 0] = 1.0
    x[0, 1] = np.tile(np.array([[0, 2], [2, 0]], np.float32), (2, 2))
    pool = L.MaxPool2d(2)
    y, idx = pool.forward(None, x)
    dy = np.arange(1, 9, dtype=np.float32).reshape(1, 2, 2, 2)
    dx, _ = pool.backward(None, idx, dy, True)
    # each window's gradient lands on exactly one element and sums to dy
    w = L._windows(dx, 2)
    assert ((w != 0).sum(axis=-1) == 1).all()
    assert np.array_equal(w.sum(axis=-1), dy)
    ref = jax.grad(lambda v: (j_maxpool(v, 2) * dy).sum())(jnp.asarray(x, jnp.float64))
    assert np.array_equal(dx, np.asarray(ref))


def test_conv_bias_gradient_with_tied_pool_windows():
    """The issue's case: a ReLU before the pool produces exact ties (zeros, and plateaus
    on a constant image); the conv bias gradient must match the autograd reference."""
    net = L.build("digits", (1, 8, 8), seed=0, channels=4)
    x = np.zeros((3, 1, 8, 8), np.float32)
    x[0, 0, 2:6, 2:6] = 1.0                 # plateaus: tied maxima everywhere inside
    x[1, 0, ::2, 1::2] = x[1, 0, 1::2, ::2] = 0.5   # anti-diagonal ties
    x[2] = np.random.default_rng(0).random((1, 8, 8))
    y = np.array([1, 2, 3])
    _, ref_g = reference_grads(net, x, y)
    _, g = ours(net, FloatEngine(), x, y)
    for a, b in zip(g, ref_g):
        assert rel_err(a, b) < 1e-4


# ------------------------------------------------------------------------------ device path

@pytest.fixture(scope="module", params=[(16, 32), (8, 20)], ids=["int16", "int8"])
def device(request):
    from intergrad.device.sim import SimDevice
    from intergrad.driver import Accelerator
    d, a = request.param
    dev = SimDevice(ArrayConfig(8, 8, d, a, 1), verbose=False)
    yield Scheduler(Accelerator(dev))
    dev.close()


@pytest.mark.parametrize("schedule", ["intergrad", "baseline"])
def test_device_path_matches_jax_within_quantization(device, schedule):
    # whole networks: int16 max error relative to the largest magnitude; int8 (7 magnitude
    # bits per operand, errors compounding through 4-5 requantized layers and flipping ReLU
    # masks on 4 samples) a loose relative L2 error: each layer alone is checked tightly below
    err, tol = (rel_err, 2e-3) if device.cfg.data_w == 16 else (rel_l2, 0.5)
    for net in tiny_nets():
        rng = np.random.default_rng(7)
        x = rng.standard_normal((4,) + net.input_shape).astype(np.float32)
        y = rng.integers(0, net.shapes[-1][0], 4)
        ref_logits, ref_g = reference_grads(net, x, y)
        be = DeviceEngine(device, schedule)
        logits, g = ours(net, be, x, y)
        assert err(logits, ref_logits) < tol
        for a, b in zip(g, ref_g):
            assert err(a, b) < tol, (net.name, a.shape, err(a, b))
        # every conv layer but the first ran InterGrad (or baseline dx + dw) on the array
        passes = {(r.layer, r.pass_) for r in device.report}
        want = "ig" if schedule == "intergrad" else "dx"
        assert (("c2", want) in passes) and ("c1", "dw") in passes
        assert ("c1", want) not in passes
        device.report.clear()
    assert be.bits_used  # the magnitude bits used are recorded


@pytest.mark.parametrize("schedule", ["intergrad", "baseline"])
def test_each_device_layer_matches_jax_within_quantization(device, schedule):
    """Each GEMM layer alone (forward, dX, dW) from the same float inputs vs JAX's vjp."""
    tol = 1e-3 if device.cfg.data_w == 16 else 0.03
    rng = np.random.default_rng(11)
    be = DeviceEngine(device, schedule)
    for net in tiny_nets():
        for i, layer in enumerate(net.layers):
            if not layer.params():
                continue
            x = rng.standard_normal((4,) + net.shapes[i]).astype(np.float32)
            y, cache = layer.forward(be, x)
            dy = rng.standard_normal(y.shape).astype(np.float32)
            dx, (dw, db) = layer.backward(be, cache, dy, True)
            ps = [jnp.asarray(p, jnp.float64) for p in layer.params()]
            ry, vjp = jax.vjp(lambda v, *q: j_layer(layer, q, v), jnp.asarray(x, jnp.float64), *ps)
            rdx, rdw, rdb = vjp(jnp.asarray(dy, jnp.float64))
            for got, want in ((y, ry), (dx, rdx), (dw, rdw), (db, rdb)):
                assert rel_l2(got, np.asarray(want)) < tol, (net.name, layer.name)


def test_stochastic_rounding_is_seeded_and_unbiased(device):
    net = tiny_nets()[0]
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4,) + net.input_shape).astype(np.float32)
    y = rng.integers(0, 3, 4)
    a = ours(net, DeviceEngine(device, stochastic=True, seed=5), x, y)[1]
    b = ours(net, DeviceEngine(device, stochastic=True, seed=5), x, y)[1]
    for u, v in zip(a, b):
        assert np.array_equal(u, v)
    from intergrad.engine import quantize
    v = np.full(20000, 0.3)
    v[0] = 1.0
    q, f = quantize(v, 3, np.random.default_rng(0))
    assert abs((q[1:] * 2.0 ** -f).mean() - 0.3) < 0.01   # unbiased
    assert f == 2 and set(np.unique(q[1:])) == {1, 2}      # 0.3 * 4 = 1.2 -> 1 or 2


def test_device_never_overflows_the_accumulator(device):
    """Long reductions with large values: the exact bound drops magnitude bits instead of
    letting the accumulator wrap (the result stays close to float)."""
    be = DeviceEngine(device)
    rng = np.random.default_rng(0)
    X = rng.uniform(0.5, 1, (300, 40)).astype(np.float32)
    W = rng.uniform(0.5, 1, (40, 6)).astype(np.float32)
    dY = rng.uniform(0.5, 1, (300, 6)).astype(np.float32)
    tol = 1e-3 if device.cfg.data_w == 16 else 0.08
    assert rel_err(be.fc_forward(X, W, "big"), X @ W) < tol
    dX, dW = be.fc_backward(X, W, dY, "big")
    assert rel_err(dW, X.T @ dY) < tol and rel_err(dX, dY @ W.T) < tol
    bits = be.bits_used[("big", "bwd")]
    assert min(bits.values()) < device.cfg.data_w - 1   # bits were dropped to fit
