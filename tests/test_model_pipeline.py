"""Pipelined multi-array training: the closed forms equal a discrete-event simulation of the
same schedules; the partition is the best contiguous split; the arrays share the PEs."""
import itertools
import random

import numpy as np
import pytest

from intergrad.model import DATAFLOWS, Array, profile
from intergrad.model.pipeline import closed_form, partition, pipeline, simulate, stage_array
from intergrad.zoo import get


@pytest.mark.parametrize("seed", range(3))
def test_closed_forms_equal_discrete_event_simulation(seed):
    rng = random.Random(seed)
    for _ in range(100):
        K, m = rng.randint(1, 4), rng.randint(1, 8)
        F = [rng.randint(1, 30) for _ in range(K)]
        B = [rng.randint(1, 60) for _ in range(K)]
        # sync: one step, flushed; two steps back to back take exactly twice as long
        step, bubble = closed_form(F, B, m, "sync")
        sim = simulate(F, B, m, "sync", steps=2)
        assert sim["step_ends"][0] == pytest.approx(step)
        assert sim["step_ends"][1] == pytest.approx(2 * step)
        work = m * sum(f + b for f, b in zip(F, B))
        assert bubble == pytest.approx(1 - work / (K * step))
        assert sum(sim["busy"]) == pytest.approx(2 * work)
        # async (1F1B): the steady-state period of a step, away from warm-up and drain
        step, _ = closed_form(F, B, m, "async")
        sim = simulate(F, B, m, "async", steps=40)
        e = sim["step_ends"]
        assert (e[30] - e[10]) / 20 == pytest.approx(step)


def test_partition_is_the_best_contiguous_split():
    rng = random.Random(5)
    for _ in range(40):
        n, K = rng.randint(1, 9), rng.randint(1, 4)
        cost = np.array([rng.randint(1, 50) for _ in range(n)], float)
        starts = partition(cost, K)
        assert starts[0] == 0 and len(starts) == min(K, n)
        got = max(cost[s:e].sum() for s, e in zip(starts, starts[1:] + [n]))
        best = min(max(cost[s:e].sum() for s, e in zip((0,) + c, c + (n,)))
                   for k in range(1, min(K, n) + 1)
                   for c in itertools.combinations(range(1, n), k - 1))
        assert got == pytest.approx(best)


def test_pipeline_on_a_network():
    net = get("resnet50")
    arr = Array(32, 32)
    one = profile(net, DATAFLOWS["intergrad"], arr, 32).total("cycles")
    for K in (1, 2, 3, 4):
        sa = stage_array(arr, K)
        assert sa.rows * sa.cols * K <= 32 * 32
        for sched in ("sync", "async"):
            p = pipeline(net, "intergrad", arr, 32, K, sched)
            assert p.K == K and p.step_cycles > 0
            assert 0 <= p.bubble < 1
            assert len(p.weights) == K and sum(p.weights) == net.arrays()["weights"].sum()
            if K == 1:
                assert p.step_cycles == pytest.approx(one)
    with pytest.raises(ValueError, match="divide the batch"):
        pipeline(net, "intergrad", arr, 32, 2, micro_batches=5)
