"""The mapper: per layer and pass, the best of every operand-to-array assignment the hardware
supports; never worse than any single fixed assignment, and the RTL's assignment by default."""
import random

import numpy as np
import pytest

from intergrad.model import DATAFLOWS, Array, compare, load_energy, profile
from intergrad.model.dataflows import CANDIDATES, candidates, layout
from intergrad.model.profile import OBJECTIVES, _Ctx, _objective
from intergrad.zoo import Layer, Network, get


def _random_net(rng, n=8):
    layers = []
    for i in range(n):
        if rng.random() < 0.4:
            layers.append(Layer(f"fc{i}", "fc", rng.randint(1, 90), 1, 1, rng.randint(1, 90),
                                1, 1))
        else:
            g = rng.choice([1, 1, 2])
            k, s = rng.choice([1, 3]), rng.choice([1, 2])
            ho, wo = rng.randint(1, 12), rng.randint(1, 12)
            layers.append(Layer(f"c{i}", "conv", g * rng.randint(1, 9), (ho - 1) * s + k,
                                (wo - 1) * s + k, g * rng.randint(1, 9), ho, wo, k, k, s, g))
    return Network("rand", layers)


def test_rtl_candidate_is_the_plan_layout():
    for (p, m), cands in CANDIDATES.items():
        assert candidates(p, m, 3, 5, 7)[0][1:] == layout(p, m, 3, 5, 7)


@pytest.mark.parametrize("seed", range(4))
def test_mapper_never_worse_than_any_fixed_mapping(seed):
    rng = random.Random(seed)
    net = _random_net(rng)
    e = load_energy()
    for _ in range(3):
        arr = Array(rng.randint(1, 12), rng.randint(1, 12),
                    bandwidth=rng.choice([None, 16.0]), memory=rng.choice(["buffer", "stream"]))
        batch = rng.choice([1, 4, 32])
        for name in ("ws", "os", "wsos", "intergrad", "intergrad1"):
            df = DATAFLOWS[name]
            ctx = _Ctx(net.arrays(), arr, batch, e, df.dual_mac, df.mults_per_pe)
            for obj in OBJECTIVES:
                best = profile(net, df, arr, batch, e, mapping="best", objective=obj)
                for p, mode in df.passes:
                    got = _objective(best.passes[p], obj)
                    for cand in candidates(p, mode, ctx.Bt, ctx.N, ctx.M):
                        fixed = _objective(ctx._metrics(p, mode, *cand[1:]), obj)
                        assert np.all(got <= fixed + 1e-9), (name, p, obj, cand[0])
                    # and the choice reported is the one whose counts were used
                    idx = best.mapping[p]
                    for i, j in enumerate(idx):
                        c = candidates(p, mode, ctx.Bt, ctx.N, ctx.M)[j]
                        one = ctx._metrics(p, mode, *c[1:])
                        assert one["cycles"][i] == best.passes[p]["cycles"][i]
                    assert len(best.mapping_names(p)) == len(net.gemm_layers)


def test_default_profile_is_the_rtl_mapping_and_compare_best_maps():
    net = get("resnet50")
    rtl = profile(net, DATAFLOWS["ws"], Array(32, 32), 32)
    assert all((v == 0).all() for v in rtl.mapping.values())
    best = compare(net, ["ws"], Array(32, 32), 32)[0]
    assert best.mapping_policy == "best"
    # the WS dW pass gains most from keeping dY^T stationary instead of X^T (issue 13)
    saving = 1 - best.passes["dw"]["cycles"].sum() / rtl.passes["dw"]["cycles"].sum()
    assert 0.15 < saving < 0.25
    assert "dY^T stationary" in " ".join(best.mapping_summary())
    assert rtl.total("cycles") >= best.total("cycles")


def test_bad_mapping_arguments():
    net = get("lenet5")
    with pytest.raises(ValueError, match="mapping must be"):
        profile(net, DATAFLOWS["ws"], Array(), 1, mapping="greedy")
    with pytest.raises(ValueError, match="objective must be"):
        profile(net, DATAFLOWS["ws"], Array(), 1, mapping="best", objective="speed")
