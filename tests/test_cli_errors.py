"""Bad command-line input: one line on stderr, exit status 2, no traceback, no work done.

Every case runs the real CLI (``python -m intergrad.cli``) in a subprocess, so what is
checked is what a user sees: argparse's usage errors, the checks made before any data is
loaded or device opened, and the last-resort handler in ``intergrad.cli.main``.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "host") + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("INTERGRAD_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "intergrad.cli", *args], capture_output=True,
                          text=True, env=env, cwd=cwd or ROOT, timeout=timeout)


def _err_lines(r: subprocess.CompletedProcess) -> list[str]:
    # the one-time "building the simulated hardware" notes are progress, not the error
    return [ln for ln in r.stderr.splitlines()
            if ln.strip() and not ln.startswith("intergrad: buil")]


# (args, fragment expected in the one error line)
BAD = [
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--epochs", "-1"], "--epochs"),
    (["train", "--epochs", "many"], "--epochs"),
    (["train", "--lr", "-5"], "--lr"),
    (["train", "--lr", "0"], "--lr"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--lr", "inf"], "--lr"),
    (["train", "--batch", "0"], "--batch"),
    (["train", "--batch", "100000"], "larger than the training set"),
    (["train", "--channels", "0"], "--channels"),
    (["train", "--measure-steps", "-1"], "--measure-steps"),
    (["train", "--seed", "-1"], "--seed"),
    (["train", "--schedule", "fast"], "--schedule"),
    (["train", "--array", "0x8"], "out of range"),
    (["train", "--array", "8x0"], "out of range"),
    (["train", "--array", "65x8"], "out of range"),
    (["train", "--array", "8by8"], "RxC"),
    (["train", "--dual-mac", "2"], "--dual-mac"),
    (["train", "--backend", "fpga"], "--backend"),
    (["train", "--backend", "pynq"], "no PYNQ board"),
    (["train", "--bitfile", "missing/intergrad.bit"], "not found"),
    (["train", "--csv", "no/such/folder/out.csv"], "does not exist"),
    (["train", "--csv", "tests"], "is a folder"),
    (["train", "--csv", "README.md/out.csv"], "not a folder"),
    (["train", "--no-such-option"], "unrecognized"),
    (["demo", "--batch", "0"], "--batch"),
    (["demo", "--n", "0"], "--n"),
    (["demo", "--m", "-3"], "--m"),
    (["demo", "--m", "1000000"], "--m"),
    (["demo", "--array", "0x8"], "out of range"),
    (["demo", "--backend", "pynq"], "no PYNQ board"),
    (["info", "--array", "0x0"], "out of range"),
    (["info", "--backend", "board"], "--backend"),
    (["info", "--seed", "x"], "--seed"),
    (["no-such-command"], "invalid choice"),
    # profile / sweep (cli_model): the last-resort handler of main keeps them to one line
    (["profile", "no_such_network"], "unknown network"),
    (["profile", "no/such/topology.csv"], "not found"),
    (["sweep", "lenet5", "--arrays", "0x0", "--batches", "1"], "0x0"),
    ([], "required"),
]


@pytest.fixture(scope="module")
def bad_runs() -> dict[tuple, subprocess.CompletedProcess]:
    """All the bad-input runs, a few at a time (each is a fresh interpreter)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as ex:
        runs = list(ex.map(lambda a: run_cli(*a), [a for a, _ in BAD]))
    return {tuple(a): r for (a, _), r in zip(BAD, runs)}


@pytest.mark.parametrize("args,frag", BAD, ids=[" ".join(a) or "(none)" for a, _ in BAD])
def test_bad_input_is_one_line_and_status_2(bad_runs, args, frag):
    r = bad_runs[tuple(args)]
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = _err_lines(r)
    assert len(lines) == 1, r.stderr
    assert frag in lines[0], lines[0]
    assert lines[0].startswith("intergrad"), lines[0]
    assert r.stdout == "", "work started before the input was checked:\n" + r.stdout


def test_diverging_training_stops_with_one_line(tmp_path):
    r = run_cli("train", "--backend", "sim", "--lr", "1000", "--epochs", "3",
                "--measure-steps", "0", "--no-progress", timeout=600)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = _err_lines(r)
    assert len(lines) == 1 and "diverged" in lines[0] and "--lr" in lines[0], r.stderr
    assert "epoch   3" not in r.stdout          # stopped at the first bad epoch


def test_version():
    from intergrad import __version__
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"intergrad {__version__}"


def test_top_level_help_is_plain_text():
    r = run_cli("--help")
    assert r.returncode == 0
    assert "`" not in r.stdout, r.stdout
    for cmd in ("train", "demo", "info", "--version"):
        assert cmd in r.stdout


@pytest.mark.parametrize("cmd", ["train", "demo", "info"])
def test_every_option_has_help_and_its_default(cmd):
    from intergrad.cli import build_parser

    ap = build_parser()
    sub = next(a for a in ap._actions if a.dest == "cmd").choices[cmd]
    for action in sub._actions:
        if action.dest == "help":
            continue
        assert action.help, f"{cmd} {action.option_strings}: no help text"
    text = run_cli(cmd, "--help").stdout.split("options:", 1)[1]
    for action in sub._actions:
        if action.default not in (None, False) and action.dest != "help":
            flag = action.option_strings[0]
            block = text.split(flag, 1)[1]
            assert f"(default: {action.default})" in " ".join(block.split()[:60]), \
                f"{cmd} {flag}: default {action.default} not shown"


def test_spec_module_runs_without_runpy_warning():
    env = dict(os.environ, PYTHONPATH=str(ROOT / "host"))
    r = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "intergrad.spec"],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0 and "RuntimeWarning" not in r.stderr, r.stderr
