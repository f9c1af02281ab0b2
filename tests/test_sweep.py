"""`intergrad sweep` execution: the result cache (keyed by configuration and model version),
resuming an interrupted sweep, the RTL verification sample and the Ray executor (a local
Ray instance with 2 CPUs; skipped when Ray is not installed: pip install "intergrad[ray]")."""
from __future__ import annotations

import csv
import dataclasses

import pytest

from intergrad import sweep as sw
from intergrad.cli_model import main
from intergrad.model import Array, load_energy, parse_dataflow
from intergrad import zoo

SMALL = ["sweep", "lenet5", "--arrays", "4x4,8x8", "--batches", "1,8", "--dataflows",
         "wsos,intergrad"]


def _cfg(**kw):
    base = dict(net=zoo.load("lenet5"), dataflows=[parse_dataflow("intergrad")],
                array=Array(8, 8), batch=8, energy=load_energy("eyeriss"))
    base.update(kw)
    return base


def test_key_follows_configuration_and_model_version():
    k = sw.config_key(_cfg(), "1")
    assert k == sw.config_key(_cfg(), "1")                      # stable
    assert k != sw.config_key(_cfg(batch=16), "1")
    assert k != sw.config_key(_cfg(array=Array(8, 8, buffer_kb=(2.0, 2.0, 2.0))), "1")
    assert k != sw.config_key(_cfg(), "2")                      # another model version
    net = zoo.load("lenet5")
    edited = dataclasses.replace(net, layers=[dataclasses.replace(net.layers[0], cout=7)]
                                 + list(net.layers[1:]))
    assert k != sw.config_key(_cfg(net=edited), "1")            # same name, other layers
    assert sw.model_version().startswith("0.") and "+" in sw.model_version()


def test_cache_is_atomic_and_ignores_foreign_files(tmp_path):
    c = sw.ResultCache(tmp_path)
    c.put("ab" * 32, [{"x": 1}])
    assert c.get("ab" * 32) == [{"x": 1}] and len(c) == 1
    (tmp_path / "cd").mkdir()
    (tmp_path / "cd" / ("cd" * 32 + ".json")).write_text("{half a fil")   # torn write
    assert c.get("cd" * 32) is None
    assert not list(tmp_path.rglob("*.tmp"))
    assert sw.ResultCache(tmp_path, enabled=False).get("ab" * 32) is None


def _rows(path):
    return [{k: v for k, v in r.items()} for r in csv.DictReader(path.open())]


def test_interrupted_sweep_resumes_without_recomputing(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    calls = []
    real = sw.sweep_point

    def interrupted(**kw):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(kw["requested"])
        return real(**kw)

    monkeypatch.setattr(sw, "sweep_point", interrupted)
    args = SMALL + ["--jobs", "1", "--cache-dir", str(cache)]
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "resume" in err and "Traceback" not in err
    assert len(sw.ResultCache(cache)) == 2          # the two completed points, nothing torn

    calls.clear()
    monkeypatch.setattr(sw, "sweep_point", lambda **kw: (calls.append(kw["requested"]),
                                                         real(**kw))[1])
    out_csv = tmp_path / "resumed.csv"
    assert main(args + ["--csv", str(out_csv)]) == 0
    assert len(calls) == 2                          # only the two missing points
    assert "2 of 4 from the cache" in capsys.readouterr().out

    # a third run computes nothing; the numbers equal a run without any cache
    calls.clear()
    assert main(args) == 0 and calls == []
    monkeypatch.setattr(sw, "sweep_point", real)
    fresh = tmp_path / "fresh.csv"
    assert main(SMALL + ["--jobs", "2", "--no-cache", "--csv", str(fresh)]) == 0
    assert _rows(out_csv) == _rows(fresh)


def test_model_version_change_recomputes(tmp_path, monkeypatch, capsys):
    args = SMALL + ["--jobs", "1", "--cache-dir", str(tmp_path)]
    assert main(args) == 0
    capsys.readouterr()
    sw.model_version.cache_clear()
    monkeypatch.setattr(sw, "__version__", "999")
    try:
        assert main(args) == 0
        assert "0 of 4 from the cache" in capsys.readouterr().out
    finally:
        sw.model_version.cache_clear()


def test_verify_runs_sampled_points_on_the_simulated_rtl(tmp_path, capsys):
    out_csv = tmp_path / "v.csv"
    rc = main(["sweep", "lenet5", "--arrays", "8x8,64x64", "--batches", "4",
               "--dataflows", "ws,wsos,intergrad", "--jobs", "1", "--verify", "2",
               "--cache-dir", str(tmp_path / "c"), "--csv", str(out_csv)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert out.count("  ok  ") == 2 and "MISMATCH" not in out
    assert "only arrays up to 16x16" in out
    checked = {(r["dataflow"], r["array"]) for r in _rows(out_csv) if r["rtl_check"] == "ok"}
    assert checked == {("wsos", "8x8"), ("intergrad", "8x8")}


def test_verify_flags_a_disagreement(tmp_path, monkeypatch, capsys):
    import intergrad.model as model
    real = model.profile

    def off_by_one(*a, **kw):          # a model that miscounts the MACs
        res = real(*a, **kw)
        for p in res.passes.values():
            p["macs"] = p["macs"] + 1
        return res

    monkeypatch.setattr(model, "profile", off_by_one)
    rc = main(["sweep", "lenet5", "--arrays", "8x8", "--batches", "2", "--dataflows",
               "intergrad", "--jobs", "1", "--verify", "1", "--no-cache"])
    cap = capsys.readouterr()
    assert rc == 1
    assert "MISMATCH" in cap.out and "macs: rtl" in cap.out
    assert "1 of 1 RTL checks disagree" in cap.err


def test_bad_sweep_execution_options(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    for argv, msg in ((["--verify", "-1"], "--verify"),
                      (["--verify", "x"], "--verify"),
                      (["--executor", "dask"], "invalid choice"),
                      (["--cache-dir", str(blocker / "sub")], "--cache-dir")):
        with pytest.raises(SystemExit) if "dask" in argv else _nothing():
            rc = main(["sweep", "lenet5"] + argv)
            assert rc == 2
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_sweep_on_ray(tmp_path, capsys):
    """A local Ray instance (2 CPUs, no dashboard): the same numbers as the local pool,
    the RTL check on a Ray worker, and the cache shared between executors."""
    pytest.importorskip("ray")
    cache = tmp_path / "c"
    ray_csv, local_csv = tmp_path / "ray.csv", tmp_path / "local.csv"
    rc = main(SMALL + ["--executor", "ray", "--jobs", "2", "--verify", "1",
                       "--cache-dir", str(cache), "--csv", str(ray_csv)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "on ray (local instance, 2 CPUs)" in out and "0 of 5 from the cache" in out
    assert out.count("  ok  ") == 1
    import ray
    assert not ray.is_initialized()                 # the instance it started is stopped
    assert main(SMALL + ["--jobs", "1", "--verify", "1", "--cache-dir", str(cache),
                         "--csv", str(local_csv)]) == 0
    assert "5 of 5 from the cache" in capsys.readouterr().out
    assert main(SMALL + ["--jobs", "2", "--no-cache", "--csv", str(tmp_path / "n.csv")]) == 0
    strip = lambda rows: [{k: v for k, v in r.items() if k != "rtl_check"} for r in rows]
    assert strip(_rows(ray_csv)) == strip(_rows(tmp_path / "n.csv"))


def test_ray_missing_is_one_line(monkeypatch, capsys):
    import sys
    monkeypatch.setitem(sys.modules, "ray", None)       # as if not installed
    assert main(["sweep", "lenet5", "--executor", "ray"]) == 2
    err = capsys.readouterr().err
    assert "pip install" in err and "intergrad[ray]" in err and len(err.splitlines()) == 1
