"""`intergrad profile` / `intergrad sweep` (through intergrad.cli_model.main)."""
import csv

import pytest

from intergrad.cli_model import main


def test_profile_prints_totals_and_savings(tmp_path, capsys):
    out_csv, out_png = tmp_path / "l.csv", tmp_path / "p.png"
    rc = main(["profile", "lenet5", "--array", "8x6", "--batch", "4", "--iso-area",
               "--csv", str(out_csv), "--plot", str(out_png)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "intergrad vs" in text and "ws" in text and "os" in text
    rows = list(csv.DictReader(out_csv.open()))
    assert {r["dataflow"] for r in rows} == {"ws", "os", "intergrad"}
    assert {r["pass"] for r in rows} >= {"fwd", "dx", "dw", "ig", "host"}
    assert out_png.stat().st_size > 10_000


def test_profile_topology_csv_and_mix(tmp_path, capsys):
    topo = tmp_path / "t.csv"
    topo.write_text("Layer, M, N, K,\nfc1, 16, 100, 200,\nfc2, 16, 10, 100,\n")
    rc = main(["profile", str(topo), "--dataflows", "wsos,fwd=os/dx=ws/dw=os,intergrad1",
               "--energy", "horowitz45", "--bandwidth", "8", "--memory", "stream"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "intergrad1 vs" in text and "pJ" in text


def test_profile_errors(capsys):
    assert main(["profile", "resnet51"]) == 2
    err = capsys.readouterr().err
    assert "unknown network" in err and "inception_v4" in err
    assert main(["profile", "lenet5", "--dataflows", "ws,systolic"]) == 2
    assert "unknown dataflow" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["profile", "lenet5", "--array", "8by8"])


def test_sweep_csv_and_pareto(tmp_path, capsys):
    out_csv, out_png = tmp_path / "s.csv", tmp_path / "s.png"
    rc = main(["sweep", "digits_cnn", "--arrays", "4x4,8x8", "--batches", "1,16",
               "--jobs", "2", "--csv", str(out_csv), "--plot", str(out_png)])
    assert rc == 0
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 2 * 2 * 3
    assert out_png.stat().st_size > 10_000
