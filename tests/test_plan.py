"""The tiling plan shared by the scheduler and the model."""
import numpy as np
import pytest

from intergrad.golden import ArrayModel
from intergrad.plan import plan_counters, plan_pass, plan_training_step
from intergrad.spec import ArrayConfig


@pytest.mark.parametrize("cfg", [ArrayConfig(8, 8), ArrayConfig(3, 5, 16, 32, 0)])
def test_plan_is_valid_and_covers_every_tile(cfg):
    rng = np.random.default_rng(0)
    for _ in range(20):
        B, N, M = (int(v) for v in rng.integers(1, 40, 3))
        for p in ("fwd", "dx", "dw", "ig"):
            for db in (True, False):
                jobs = plan_pass(cfg, p, B, N, M, db)
                model = ArrayModel(cfg)
                rows, cols = (M, N) if p == "fwd" else (N, M)
                covered = np.zeros((rows, cols), int)
                for tj in jobs:
                    tj.job.validate(cfg, model.preloaded)
                    model.preloaded = ("PRELOAD" in tj.job.flags) or (
                        model.preloaded and not tj.job.flags & {"SWAP", "LOAD_W"})
                    covered[tj.r0:tj.r0 + tj.job.rows_act, tj.c0:tj.c0 + tj.job.cols_act] += 1
                assert (covered == 1).all()
                if not db:
                    assert not any("PRELOAD" in tj.job.flags for tj in jobs)


def test_intergrad_saves_data_beats_and_steps():
    cfg = ArrayConfig(8, 8)
    b = plan_counters(cfg, plan_training_step(cfg, 256, 64, 64, "baseline", forward=False))
    i = plan_counters(cfg, plan_training_step(cfg, 256, 64, 64, "intergrad", forward=False))
    assert (b["in_beats"] - b["wload_beats"]) == 2 * (i["in_beats"] - i["wload_beats"])
    assert i["steps"] < b["steps"] and i["macs"] == b["macs"]


def test_double_buffering_hides_weight_loads():
    cfg = ArrayConfig(8, 8)
    on = plan_counters(cfg, plan_pass(cfg, "ig", 64, 64, 64, True))
    off = plan_counters(cfg, plan_pass(cfg, "ig", 64, 64, 64, False))
    assert on["steps"] < off["steps"]
    assert on["wload_beats"] == off["wload_beats"]


def test_bad_dims():
    with pytest.raises(ValueError, match="B must be a positive integer"):
        plan_pass(ArrayConfig(), "ig", 0, 3, 3)
    with pytest.raises(ValueError, match="unknown pass"):
        plan_pass(ArrayConfig(), "bwd", 1, 3, 3)
