"""`intergrad profile` / `intergrad sweep`: output, and every bad input through the real CLI
(a subprocess): one line on stderr, exit status 2, no traceback, nothing computed."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from intergrad.cli_model import main

HOST = Path(__file__).resolve().parents[1] / "host"


def _cli(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(HOST))
    return subprocess.run([sys.executable, "-m", "intergrad.cli", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=120)


def test_profile_prints_totals_views_and_savings(tmp_path, capsys):
    out_csv, out_png = tmp_path / "l.csv", tmp_path / "p.png"
    rc = main(["profile", "lenet5", "--array", "8x6", "--batch", "4", "--iso-area",
               "--csv", str(out_csv), "--plot", str(out_png)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "intergrad vs" in text and "ws" in text and "os" in text
    for words in ("equal PE count", "equal multiplier count", "equal area",
                  "from the second multiplier", "stream beats", "buffer accesses",
                  "util/PE", "mapping per pass"):
        assert words in text, words
    rows = list(csv.DictReader(out_csv.open()))
    assert {r["dataflow"] for r in rows} == {"ws", "os", "intergrad"}
    assert {r["pass"] for r in rows} >= {"fwd", "dx", "dw", "ig", "host"}
    assert all(r["mapping"] for r in rows if r["pass"] != "host")
    assert out_png.stat().st_size > 10_000


def test_profile_topology_csv_and_mix(tmp_path, capsys):
    topo = tmp_path / "t.csv"
    topo.write_text("Layer, M, N, K,\nfc1, 16, 100, 200,\nfc2, 16, 10, 100,\n")
    rc = main(["profile", str(topo), "--dataflows", "wsos,fwd=os/dx=ws/dw=os,intergrad1",
               "--energy", "horowitz45", "--bandwidth", "8", "--memory", "stream",
               "--mapping", "rtl", "--layers"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "intergrad1 vs" in text and "pJ" in text and "W^T stationary" in text


def test_profile_buffers_and_dram_bandwidth(capsys):
    assert main(["profile", "lenet5", "--array", "8x8", "--batch", "8", "--buffer-kb", "2",
                 "--dram-bw", "4", "--views", "none"]) == 0
    assert "SRAM 2/2/2 KiB" in capsys.readouterr().out


def test_sweep_csv_and_pareto(tmp_path, capsys):
    out_csv, out_png = tmp_path / "s.csv", tmp_path / "s.png"
    rc = main(["sweep", "digits_cnn", "--arrays", "4x4,8x8", "--batches", "1,16",
               "--jobs", "2", "--csv", str(out_csv), "--plot", str(out_png)])
    assert rc == 0
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 2 * 2 * 3
    assert out_png.stat().st_size > 10_000


BAD = [
    (["profile", "resnet51"], "unknown network"),
    (["sweep", "resnet51"], "unknown network"),
    (["profile", "missing_topology.csv"], "not found"),
    (["profile", "lenet5", "--energy", "no_such_table.json"], "energy table"),
    (["profile", "lenet5", "--energy", "BADJSON"], "invalid JSON"),
    (["profile", "lenet5", "--iso-area", "--area", "no_area.json"], "not found"),
    (["sweep", "lenet5", "--arrays", "0x0"], "out of range"),
    (["sweep", "lenet5", "--arrays", "8x8,axb"], "must look like RxC"),
    (["profile", "lenet5", "--array", "0x8"], "out of range"),
    (["profile", "lenet5", "--array", "8by8"], "must look like RxC"),
    (["profile", "lenet5", "--csv", "no_such_dir/out.csv"], "does not exist"),
    (["profile", "lenet5", "--plot", "no_such_dir/out.png"], "does not exist"),
    (["sweep", "lenet5", "--csv", "no_such_dir/out.csv"], "does not exist"),
    (["sweep", "lenet5", "--plot", "no_such_dir/p.png"], "does not exist"),
    (["profile", "lenet5", "--batch", "0"], "--batch: must be >= 1"),
    (["profile", "lenet5", "--batch", "x"], "--batch: expected an integer"),
    (["sweep", "lenet5", "--batches", "0,8"], "--batches"),
    (["sweep", "lenet5", "--jobs", "0"], "--jobs"),
    (["profile", "lenet5", "--dataflows", "ws,systolic"], "unknown dataflow"),
    (["profile", "lenet5", "--bandwidth", "-1"], "--bandwidth"),
    (["profile", "lenet5", "--dram-bw", "0"], "--dram-bw"),
    (["profile", "lenet5", "--buffer-kb", "0"], "--buffer-kb"),
    (["profile", "lenet5", "--buffer-kb", "1,2"], "--buffer-kb"),
    (["profile", "lenet5", "--views", "iso"], "unknown view"),
    (["profile", "lenet5", "--mapping", "greedy"], "invalid choice"),
    (["profile", "lenet5", "--board", "zcu104"], "invalid choice"),
    (["profile", "lenet5", "--data-w", "0"], "--data-w"),
    (["profile", "BADTOPO"], "must be an integer"),
    (["profile"], "required"),
    (["pipeline", "resnet51"], "unknown network"),
    (["pipeline", "lenet5", "--stages", "0"], "--stages"),
    (["pipeline", "lenet5", "--array", "0x8"], "out of range"),
    (["pipeline", "lenet5", "--batch", "6", "--micro-batches", "4"], "does not divide"),
]


@pytest.mark.parametrize("args,msg", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_one_line_exit_2(tmp_path, args, msg):
    (tmp_path / "BADJSON").write_text("{not json")
    (tmp_path / "BADTOPO").write_text(
        "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
        "Num Filter, Strides,\nc1, 10, 10, 3, 3, x, 4, 1,\n")
    r = _cli(*args, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert msg in lines[0], lines[0]
    assert r.stdout == ""          # checked before any work: nothing printed or computed
    assert {p.name for p in tmp_path.iterdir()} == {"BADJSON", "BADTOPO"}


def test_every_option_has_help_with_default():
    from intergrad.cli import build_parser

    ap = build_parser()
    sub = next(a for a in ap._actions if a.__class__.__name__ == "_SubParsersAction")
    for cmd in ("profile", "sweep", "pipeline"):
        for act in sub.choices[cmd]._actions:
            if act.dest in ("help", "network"):
                continue
            assert act.help and "default" in act.help, (cmd, act.dest)


def test_pipeline_table(capsys):
    assert main(["pipeline", "lenet5", "--array", "8x8", "--batch", "8"]) == 0
    text = capsys.readouterr().out
    assert "async" in text and "sync" in text and "vs K=1" in text


def test_profile_board_prediction(capsys):
    assert main(["profile", "lenet5", "--board", "pynq-z2", "--batch", "8",
                 "--views", "none"]) == 0
    text = capsys.readouterr().out
    assert "pynq-z2 prediction" in text and "s per training step" in text
    assert "8x8" in text and "GOPS" in text and "ASSUMPTION" in text
