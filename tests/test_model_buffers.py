"""Finite on-chip buffers: the closed-form DRAM counts equal a brute-force walk of the tile
order with LRU buffers; more buffer never means more DRAM traffic; DRAM bandwidth stalls."""
import random

import numpy as np
import pytest

from intergrad.model import DATAFLOWS, Array, profile
from intergrad.model.buffers import dram_elems, simulate
from intergrad.zoo import Layer, Network, get


@pytest.mark.parametrize("seed", range(5))
def test_buffer_dram_counts_equal_brute_force(seed):
    rng = random.Random(seed)
    for _ in range(60):
        R, C = rng.randint(1, 6), rng.randint(1, 6)
        r, c, T = rng.randint(1, 20), rng.randint(1, 20), rng.randint(1, 12)
        mode = rng.choice(["WS", "OS", "IG"])
        db, ab = rng.choice([(1, 4), (2, 4), (2, 2)])
        # sizes around the block sizes, so every fit / no-fit case occurs
        caps = [rng.choice([0, T * R * ab, T * C * db, T * c * db, T * c * db - 1,
                            T * r * ab, 10 ** 9]) for _ in range(3)]
        want = simulate(R, C, r, c, T, mode, caps, db, ab)
        got = {k: int(v) for k, v in dram_elems(R, C, r, c, T, mode, caps, db, ab).items()}
        assert got == want, (R, C, r, c, T, mode, caps, db, ab)


def test_unbounded_buffer_reads_each_matrix_once_and_tiny_buffer_refetches():
    R = C = 4
    r, c, T = 10, 9, 7
    big = dram_elems(R, C, r, c, T, "OS", [1e12] * 3, 2, 4)
    assert int(big["read_data"]) == T * r + T * c
    tiny = dram_elems(R, C, r, c, T, "OS", [0, 0, 0], 2, 4)
    assert int(tiny["read_data"]) == T * r * 3 + T * c * 3   # nc = 3, nr = 3


def test_more_buffer_never_more_dram_and_bandwidth_stalls():
    net = get("lenet5")
    prev = None
    for kb in (0.25, 1, 4, 16, 64, 1024):
        r = profile(net, DATAFLOWS["ws"], Array(8, 8, buffer_kb=(kb,)), 8)
        t = r.total("dram_reads") + r.total("dram_writes")
        if prev is not None:
            assert t <= prev
        prev = t
    free = profile(net, DATAFLOWS["intergrad"], Array(8, 8, buffer_kb=(4,)), 8)
    slow = profile(net, DATAFLOWS["intergrad"], Array(8, 8, buffer_kb=(4,), dram_bw=0.5), 8)
    assert slow.total("cycles") > free.total("cycles")
    assert slow.total("stall_cycles") == slow.total("cycles") - slow.total("busy_cycles")
    for p in slow.passes.values():   # a pass takes at least its DRAM bytes / bandwidth
        need = np.ceil((p["dram_reads"] + p["dram_writes"]) * 16 / 8 / 0.5)
        assert np.all(p["cycles"] >= need)


def test_buffer_sizes_validated():
    with pytest.raises(ValueError, match="buffer_kb"):
        Array(8, 8, buffer_kb=(1, 2))
    with pytest.raises(ValueError, match="DRAM bandwidth"):
        Array(8, 8, dram_bw=0)


@pytest.mark.parametrize("name", ["lenet5", "resnet50", "mobilenet_v2"])
def test_huge_buffers_give_the_compulsory_traffic(name):
    """With buffers that hold everything, the tile-order model reads each tensor once (im2col
    operands as their unique elements): the compulsory counts of the default model."""
    net = get(name)
    A = net.arrays()
    # a strided 1x1 conv reads only the sampled inputs: fewer than the whole input tensor
    sparse = A["in_elems"] > A["G"] * A["P"] * A["N"]
    for df in ("ws", "os", "wsos", "intergrad"):
        a = profile(net, DATAFLOWS[df], Array(16, 16), 2)
        b = profile(net, DATAFLOWS[df], Array(16, 16, buffer_kb=(1e9,)), 2)
        for p in a.passes:
            for k in ("dram_reads", "dram_writes"):
                x, y = a.passes[p][k], b.passes[p][k]
                assert np.allclose(x[~sparse], y[~sparse]), (df, p, k)
                assert np.all(y[sparse] <= x[sparse]), (df, p, k)
