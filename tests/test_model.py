"""Analytical model: exact agreement with the RTL's closed-form counters (through the
scheduler's job plan), internal consistency, energy / area tables, iso-area sizing."""
import dataclasses
import json
import random

import numpy as np
import pytest

from intergrad.core import jobs_counters
from intergrad.model import (DATAFLOWS, Array, compare, iso_area_size, load_area, load_energy,
                             parse_dataflow, pass_counters, profile, savings)
from intergrad.model.area import VARIANTS
from intergrad.model.dataflows import layout
from intergrad.plan import plan_pass, plan_training_step
from intergrad.spec import ArrayConfig
from intergrad.zoo import Layer, Network, get

RTL_KEYS = ("steps", "busy_cycles", "macs", "in_beats", "wload_beats", "out_beats", "jobs")
SCHEDULE_OF = {"wsos": "baseline", "intergrad": "intergrad", "intergrad1": "intergrad"}


def _random_layer(rng, i, big_batch_rows=False):
    """A random FC, conv or grouped conv layer."""
    kind = rng.choice(["fc", "conv", "gconv"])
    if kind == "fc":
        return Layer(f"fc{i}", "fc", rng.randint(1, 70), 1, 1, rng.randint(1, 70), 1, 1)
    g = rng.choice([2, 3, 4]) if kind == "gconv" else 1
    cin, cout = g * rng.randint(1, 9), g * rng.randint(1, 9)
    k, s = rng.choice([1, 3, 5]), rng.choice([1, 2])
    ho = rng.randint(40, 70) if big_batch_rows else rng.randint(1, 9)
    wo = rng.randint(40, 70) if big_batch_rows else rng.randint(1, 9)
    return Layer(f"conv{i}", "conv", cin, (ho - 1) * s + k, (wo - 1) * s + k, cout, ho, wo,
                 k, k, s, g)


def _plan_totals(cfg, layer, batch, schedule, double_buffer):
    """Counter totals of one layer's training step from the scheduler's job plan."""
    jobs = plan_training_step(cfg, batch * layer.P, layer.N, layer.M, schedule, double_buffer)
    per_group = jobs_counters(cfg, [tj.job for tj in jobs])
    return {k: layer.groups * per_group[k] for k in RTL_KEYS}


@pytest.mark.parametrize("seed", range(6))
def test_model_equals_rtl_counters_random_layers(seed):
    """The vectorized model reproduces the RTL counters of every job the scheduler plans:
    random FC / conv / grouped conv shapes, square and non-square arrays, DUAL_MAC 0 and 1,
    with and without weight double buffering, batches incl. > 65535 rows (chunking)."""
    rng = random.Random(seed)
    for trial in range(6):
        cfg = ArrayConfig(rng.randint(1, 12), rng.randint(1, 12), dual_mac=rng.randint(0, 1))
        big = trial == 0 and seed % 2 == 0
        layers = [_random_layer(rng, i, big) for i in range(3 if big else 8)]
        batch = rng.randint(20, 40) if big else rng.choice([1, 2, 7, 32])
        db = rng.random() < 0.75
        net = Network("rand", layers)
        arr = Array(cfg.rows, cfg.cols, cfg.data_w, cfg.acc_w, double_buffer=db)
        if big:
            assert max(batch * l.P for l in layers) > 65535
        for name, sched in SCHEDULE_OF.items():
            df = DATAFLOWS[name]
            if df.dual_mac != cfg.dual_mac and name != "wsos":
                df = DATAFLOWS["intergrad" if cfg.dual_mac else "intergrad1"]
            res = profile(net, df, arr, batch)
            for i, layer in enumerate(layers):
                want = _plan_totals(cfg, layer, batch, sched, db)
                got = {k: int(sum(p[k][i] for p in res.passes.values())) for k in RTL_KEYS}
                assert got == want, (name, cfg, layer, batch, db)


def test_pass_counters_equal_plan_each_pass_exhaustive_small():
    """Every pass, every small shape on a 3x2 and a 2x3 array, both double-buffer settings."""
    for R, C in ((3, 2), (2, 3)):
        for dual in (0, 1):
            cfg = ArrayConfig(R, C, dual_mac=dual)
            for N in range(1, 8):
                for M in range(1, 8):
                    for db in (True, False):
                        for p, mode in (("fwd", "WS"), ("dx", "WS"), ("dw", "OS"), ("ig", "IG")):
                            want = jobs_counters(cfg, [t.job for t in
                                                       plan_pass(cfg, p, 3, N, M, db)])
                            r, c, T, wbc = layout(p, mode, 3, N, M)
                            got = pass_counters(R, C, r, c, T, mode, wb_cols=wbc,
                                                dual_mac=dual, double_buffer=db)
                            assert {k: int(got[k]) for k in RTL_KEYS} == \
                                {k: want[k] for k in RTL_KEYS}, (R, C, dual, N, M, db, p)


def test_chunking_boundaries():
    """Streams of exactly 65535 / 65536 / 131071 beats split like the scheduler splits them."""
    cfg = ArrayConfig(4, 3)
    for T in (65534, 65535, 65536, 131070, 131071):
        for p, mode in (("fwd", "WS"), ("dw", "OS"), ("ig", "IG")):
            want = jobs_counters(cfg, [t.job for t in plan_pass(cfg, p, T, 5, 7)])
            r, c, TT, wbc = layout(p, mode, T, 5, 7)
            got = pass_counters(4, 3, r, c, TT, mode, wb_cols=wbc)
            assert {k: int(got[k]) for k in RTL_KEYS} == {k: want[k] for k in RTL_KEYS}


def test_step_decomposition():
    rng = np.random.default_rng(1)
    r, c, T = (rng.integers(1, 300, 40) for _ in range(3))
    for mode in ("WS", "OS", "IG"):
        k = pass_counters(8, 16, r, c, T * 1000, mode, max_batch=MAX_SMALL)
        assert np.array_equal(k["steps"], k["load_steps"] + k["tiles"] * T * 1000
                              + k["fill_drain_steps"])


MAX_SMALL = 70000


def test_vectorized_equals_scalar():
    rng = np.random.default_rng(0)
    r, c, T = (rng.integers(1, 200, 50) for _ in range(3))
    vec = pass_counters(16, 8, r, c, T, "IG", dual_mac=0)
    for i in range(50):
        one = pass_counters(16, 8, int(r[i]), int(c[i]), int(T[i]), "IG", dual_mac=0)
        assert all(int(vec[k][i]) == int(one[k]) for k in vec)


def test_macs_and_conservation():
    """Every design performs the same useful work: forward + 2 backward GEMMs = 3x MACs."""
    net = get("resnet50")
    B = 2
    for name in DATAFLOWS:
        res = profile(net, DATAFLOWS[name], Array(16, 16), B)
        assert res.total("macs") == 3 * B * net.macs
        t = res.totals()
        assert 0 < t["utilization"] <= 1
        assert t["cycles"] >= t["busy_cycles"] >= t["steps"] * (name != "intergrad1")


def test_intergrad_reads_dy_once():
    """Compulsory DRAM traffic of InterGrad's backward is the baseline's minus one dY read."""
    net = get("lenet5")
    B = 4
    base = profile(net, DATAFLOWS["wsos"], Array(8, 8), B)
    ig = profile(net, DATAFLOWS["intergrad"], Array(8, 8), B)
    dy = B * sum(l.out_elems for l in net.gemm_layers)
    assert base.total("dram_reads") - ig.total("dram_reads") == pytest.approx(dy)
    assert base.total("dram_writes") == pytest.approx(ig.total("dram_writes"))


def test_single_multiplier_intergrad_time():
    """IG with one multiplier takes B + F extra cycles per job; with two it takes none."""
    net = get("digits_cnn")
    a = Array(8, 8)
    one = profile(net, DATAFLOWS["intergrad1"], a, 16)
    two = profile(net, DATAFLOWS["intergrad"], a, 16)
    extra = (one.passes["ig"]["busy_cycles"] - two.passes["ig"]["busy_cycles"]).sum()
    k = 0
    for l in net.gemm_layers:
        r, c, T, _ = layout("ig", "IG", 16 * l.P, l.N, l.M)
        k += l.groups * -(-r // 8) * -(-c // 8) * (T + 16)
    assert extra == k


def test_skip_first_dx():
    net = get("resnet50")
    a = Array(16, 16)
    for name in ("wsos", "ws", "intergrad"):
        full = profile(net, DATAFLOWS[name], a, 4)
        skip = profile(net, DATAFLOWS[name], a, 4, first_dx=False)
        if "dx" in full.passes:
            assert skip.total("cycles") == full.total("cycles") - full.passes["dx"]["cycles"][0]
            assert skip.passes["dx"]["macs"][0] == 0
        else:
            ig0 = full.passes["ig"]
            assert skip.passes["ig"]["macs"][0] == 0 and skip.passes["dw"]["macs"][0] > 0
            assert skip.passes["dw"]["macs"][1:].sum() == 0
            assert skip.total("macs") == full.total("macs") - ig0["macs"][0] / 2
        assert skip.total("dram_reads") < full.total("dram_reads")


def test_bandwidth_stalls():
    net = get("lenet5")
    free = profile(net, DATAFLOWS["wsos"], Array(8, 8), 8).totals()
    slow = profile(net, DATAFLOWS["wsos"], Array(8, 8, bandwidth=4.0), 8).totals()
    assert slow["cycles"] > free["cycles"] and slow["stall_cycles"] > 0
    assert free["stall_cycles"] == 0 and slow["busy_cycles"] == free["busy_cycles"]


def test_energy_is_counts_times_table(tmp_path):
    net = get("alexnet")
    res = profile(net, DATAFLOWS["intergrad"], Array(16, 16), 2)
    t, e = res.totals(), res.energy_table
    expect = (t["macs"] * e.mac + (t["reg_reads"] + t["reg_writes"]) * e.reg
              + (t["buffer_reads"] + t["buffer_writes"]) * e.buffer
              + (t["dram_reads"] + t["dram_writes"]) * e.dram + t["host_ops"] * e.host_op)
    assert t["energy"] == pytest.approx(expect)
    # a user table: doubling the DRAM cost adds exactly the DRAM energy once more
    d = json.loads((load_energy.__globals__["ENERGY_TABLES"]["eyeriss"]).read_text())
    d["costs"]["dram"]["value"] *= 2
    p = tmp_path / "mine.json"
    p.write_text(json.dumps(d))
    t2 = profile(net, DATAFLOWS["intergrad"], Array(16, 16), 2, load_energy(p)).totals()
    assert t2["energy"] == pytest.approx(t["energy"] + t["energy_dram"])


def test_energy_tables_have_sources():
    for name in ("eyeriss", "horowitz45"):
        e = load_energy(name)
        assert e.source and e.mac > 0 and e.dram > e.buffer > 0


def test_bad_energy_table(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"costs": {"mac": 1}')
    with pytest.raises(ValueError, match="line"):
        load_energy(p)
    p.write_text('{"costs": {"mac": 1}}')
    with pytest.raises(ValueError, match="missing"):
        load_energy(p)
    with pytest.raises(FileNotFoundError, match="built-in"):
        load_energy("nonexistent_table")


def test_area_table_from_yosys():
    area = load_area()
    assert set(area) == set(VARIANTS)
    # the dual-multiplier InterGrad PE is the largest; WS and OS PEs are smaller than it
    assert area["ig_dual"] > area["ig_single"] > max(area["ws"], area["os"])


def test_iso_area_size():
    assert iso_area_size(16, 16, 1.0, 1.0) == (16, 16)
    r, c = iso_area_size(16, 16, 1.0, 2.0)
    assert r * c * 2.0 <= 256 and r * c >= 120
    r, c = iso_area_size(16, 16, 2.0, 1.0)
    assert r * c <= 512 and r * c >= 480
    res = compare(get("lenet5"), ["ws", "intergrad"], Array(16, 16), 4, iso_area=True)
    area = load_area()
    assert res[0].array.size == "16x16"
    a1 = res[1].array
    assert a1.rows * a1.cols * area["ig_dual"] <= 256 * area["ws"]


def test_parse_dataflow_mix():
    d = parse_dataflow("fwd=os/dx=ws/dw=os")
    assert d.modes == {"fwd": "OS", "dx": "WS", "dw": "OS"}
    d = parse_dataflow("dw=os/fwd=ws/dx=ws")
    assert [p for p, _ in d.passes] == ["fwd", "dx", "dw"]
    assert parse_dataflow("fwd=ws/ig=ig1").dual_mac == 0
    with pytest.raises(ValueError, match="known"):
        parse_dataflow("systolic")
    with pytest.raises(ValueError, match="cannot run"):
        parse_dataflow("fwd=ig/dx=ws/dw=os")
    with pytest.raises(ValueError, match="needs dx and dw"):
        parse_dataflow("fwd=ws/dx=ws")


def test_savings_sign():
    res = compare(get("vgg16"), ["wsos", "intergrad1"], Array(16, 16), 4, mapping="rtl")
    s = savings(res)
    # same multiplier count, same cycles; one dY stream fewer -> fewer buffer reads
    assert s["wsos"]["cycles"] == pytest.approx(0.0, abs=1e-3)
    assert s["wsos"]["buffer_reads"] > 0 and s["wsos"]["energy"] > 0
    # best-mapped, the baseline's passes may take other layouts (InterGrad's cannot)
    best = savings(compare(get("vgg16"), ["wsos", "intergrad1"], Array(16, 16), 4))
    assert best["wsos"]["cycles"] <= s["wsos"]["cycles"] + 1e-12


def test_memory_stream_mode_counts_stream_bytes():
    net = get("lenet5")
    r = profile(net, DATAFLOWS["wsos"], Array(8, 8, memory="stream"), 4)
    t = r.totals()
    assert t["buffer_reads"] == 0
    host = r.host["dram_reads"] + r.host["dram_writes"]
    assert t["dram_reads"] + t["dram_writes"] - host == pytest.approx(t["stream_bytes"] / 2)


def test_bad_inputs():
    with pytest.raises(ValueError, match="batch"):
        profile(get("lenet5"), DATAFLOWS["ws"], Array(4, 4), 0)
    with pytest.raises(ValueError, match="memory"):
        Array(4, 4, memory="cache")
    with pytest.raises(ValueError):
        pass_counters(4, 4, 0, 3, 3, "WS")
    with pytest.raises(ValueError, match="mode"):
        pass_counters(4, 4, 3, 3, 3, "XS")


def test_layer_rows_cover_totals():
    r = profile(get("lenet5"), DATAFLOWS["intergrad"], Array(8, 8), 2)
    rows = list(r.layer_rows())
    assert sum(x["energy"] for x in rows) == pytest.approx(r.totals()["energy"])
    assert len(rows) == 2 * len(r.layers) + 1
    assert all(0 <= x["utilization"] <= 1 for x in rows)
    assert max(x["utilization"] for x in rows) > 0
    assert dataclasses.asdict(r.array)["rows"] == 8
