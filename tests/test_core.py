"""The job contract (intergrad.core): one place for each fact about a job, the reference model
kept off the production path, and the analytical model tied to the per-job formulas."""
from __future__ import annotations

import ast
import random
from pathlib import Path

import numpy as np
import pytest

from intergrad import core, spec
from intergrad.core import (MAX_BATCH, MODES, CoreState, Job, JobError, expected_counters,
                            register_writes)
from intergrad.golden import ArrayModel
from intergrad.model.counts import COUNTER_KEYS, pass_counters
from intergrad.spec import ArrayConfig

PKG = Path(core.__file__).resolve().parent


# ----------------------------------------------------------------------- import ban

def golden_imports(source: str, module: str) -> list[str]:
    """Imports of intergrad.golden (absolute, relative, lazy inside functions) in the source
    of ``module`` (dotted name, e.g. 'intergrad.device.sim')."""
    package = module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [target] + [f"{target}.{a.name}" for a in node.names]
        else:
            continue
        hits = [n for n in names if n == "intergrad.golden" or n.startswith("intergrad.golden.")]
        if hits:
            found.append(f"line {node.lineno}: {hits[0]}")
    return found


def _modules():
    """(path, dotted name, name that relative imports resolve against) of every module."""
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":  # a package: its relative imports resolve inside it
            yield path, ".".join(parts[:-1]), ".".join(parts)
        else:
            yield path, ".".join(parts), ".".join(parts)


def test_golden_import_detector_sees_every_form():
    flagged = [golden_imports(src, "intergrad.device.x") for src in (
        "from ..golden import ArrayModel",
        "from .. import golden",
        "import intergrad.golden",
        "from intergrad.golden import ws",
        "def f():\n    from ..golden import intergrad\n")]
    assert all(flagged), flagged
    assert not golden_imports("from ..core import Job\nfrom . import sim", "intergrad.device.x")
    assert not golden_imports("from .golden import x", "intergrad.device.x")  # device.golden


def test_production_path_does_not_import_the_golden_model():
    """Only the golden package itself may import intergrad.golden; tests, benchmarks and
    notebooks (outside host/intergrad) use it as the reference."""
    offenders = {}
    n = 0
    for path, name, anchor in _modules():
        if name == "intergrad.golden" or name.startswith("intergrad.golden."):
            continue
        n += 1
        hits = golden_imports(path.read_text(), anchor)
        if hits:
            offenders[str(path.relative_to(PKG.parent))] = hits
    assert n > 30, f"walked only {n} modules under {PKG}"
    assert not offenders, f"production modules import the golden model: {offenders}"


def test_no_mode_string_tests_outside_the_contract():
    """Mode semantics come from core.MODES records: no comparison with a mode name (``mode ==
    "IG"``, ``mode in ("WS", "IG")``) outside spec.py, core.py and golden/."""
    names = set(spec.MODES)
    allowed = {"intergrad.spec", "intergrad.core", "intergrad.golden"}

    def is_mode_literal(e) -> bool:
        if isinstance(e, ast.Constant):
            return e.value in names
        if isinstance(e, (ast.Tuple, ast.List, ast.Set)):
            return any(is_mode_literal(x) for x in e.elts)
        return False

    bad = []
    for path, name, _ in _modules():
        if name in allowed or name.startswith("intergrad.golden."):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and any(
                    is_mode_literal(e) for e in [node.left, *node.comparators]):
                bad.append(f"{path.relative_to(PKG.parent)}:{node.lineno}")
    assert not bad, f"mode-name comparisons (use core.MODES[...] attributes): {bad}"


# ----------------------------------------------------------------------- the contract

def test_modes_and_batch_limit_come_from_spec():
    assert list(MODES) == list(spec.MODES)
    assert all(MODES[n].code == c for n, c in spec.MODES.items())
    lsb, width = spec.field("BATCH", "BATCH")
    assert MAX_BATCH == (1 << width) - 1 == (1 << spec.BATCH_W) - 1
    cfg = ArrayConfig()
    Job("WS", MAX_BATCH, 1, 1).validate(cfg)
    with pytest.raises(JobError, match="BAD_SHAPE"):
        Job("WS", MAX_BATCH + 1, 1, 1).validate(cfg)


def _random_job(rng: random.Random, cfg: ArrayConfig, mode: str | None = None) -> Job:
    mode = mode or rng.choice(list(MODES))
    kind = MODES[mode]
    flags = set()
    if kind.uses_weights:
        flags.add("LOAD_W")
        if rng.random() < 0.5:
            flags.add("TRANSPOSE")
        if rng.random() < 0.4:
            flags.add("PRELOAD")
    if kind.accumulates:
        flags.add("ACC_CLEAR")
        flags.add(rng.choice(["DRAIN", "SAVE", "DRAIN"]))
    return Job(mode, rng.randint(1, 40), rng.randint(1, cfg.rows), rng.randint(1, cfg.cols),
               frozenset(flags))


def test_register_writes_decode_to_the_job():
    rng = random.Random(3)
    cfg = ArrayConfig(8, 8)
    for _ in range(50):
        job = _random_job(rng, cfg)
        w = dict(register_writes(job))
        assert [n for n, _ in register_writes(job)] == ["MODE", "BATCH", "SHAPE"]
        assert spec.unpack_field("MODE", "MODE", w["MODE"]) == spec.MODES[job.mode]
        flags = spec.unpack_field("MODE", "FLAGS", w["MODE"])
        assert {f for f, (bit, _) in spec.FLAGS.items() if flags >> bit & 1} == set(job.flags)
        assert spec.unpack_field("BATCH", "BATCH", w["BATCH"]) == job.batch
        assert spec.unpack_field("SHAPE", "ROWS_ACT", w["SHAPE"]) == job.rows_act
        assert spec.unpack_field("SHAPE", "COLS_ACT", w["SHAPE"]) == job.cols_act


@pytest.mark.parametrize("mode", list(MODES))
def test_mode_records_match_the_reference_model(mode):
    """What a Mode record claims (data out, accumulation, left lanes, weights) is what the
    bit-exact reference model does with a random job of that mode."""
    kind = MODES[mode]
    rng = np.random.default_rng(5)
    cfg = ArrayConfig(5, 4)
    for trial in range(6):
        job = _random_job(random.Random(trial), cfg, mode)
        ops = dict(left=rng.integers(-99, 99, (job.batch, job.rows_act)),
                   top=rng.integers(-99, 99, (job.batch, job.cols_act)))
        if job.has("LOAD_W"):
            ops["weights"] = rng.integers(-99, 99, (job.rows_act, job.cols_act))
        if job.has("PRELOAD"):
            ops["preload"] = rng.integers(-99, 99, (job.rows_act, job.cols_act))
        m = ArrayModel(cfg)
        out = m.run(job, m.job_input(job, **ops))
        assert out.shape[0] == job.out_beats()
        assert (job.data_out_beats() == job.batch) == kind.data_out
        # the left lanes matter exactly when the mode streams them
        m2 = ArrayModel(cfg)
        other = dict(ops, left=ops["left"] + 1)
        out2 = m2.run(job, m2.job_input(job, **other))
        changed = not np.array_equal(out, out2) or not np.array_equal(m.acc, m2.acc)
        assert changed == kind.left_data
        assert (np.any(m.acc != 0)) == kind.accumulates
        # the weights matter exactly when the mode uses them
        if kind.uses_weights:
            m3 = ArrayModel(cfg)
            out3 = m3.run(job, m3.job_input(job, **dict(ops, weights=ops["weights"] + 1)))
            assert not np.array_equal(out3[:job.batch], out[:job.batch])


def test_core_state_follows_the_reference_model():
    """CoreState.apply/check as a host tracks them equal the reference model's state (which
    holds one) and reject what the core rejects."""
    rng = random.Random(11)
    cfg = ArrayConfig(4, 4)
    host = CoreState()
    model = ArrayModel(cfg)
    npr = np.random.default_rng(0)
    done = 0
    for _ in range(200):
        job = _random_job(rng, cfg)
        f = set(job.flags)
        if MODES[job.mode].uses_weights and host.preloaded and rng.random() < 0.5:
            f = (f - {"LOAD_W"}) | {"SWAP"}
        if host.saved and rng.random() < 0.7:
            f.add("DRAIN_PREV")
        job = Job(job.mode, job.batch, job.rows_act, job.cols_act, frozenset(f),
                  prev_rows=host.saved_rows if "DRAIN_PREV" in f else 0)
        host.check(cfg, job)
        ops = dict(top=npr.integers(-9, 9, (job.batch, job.cols_act)),
                   left=npr.integers(-9, 9, (job.batch, job.rows_act)),
                   weights=npr.integers(-9, 9, (job.rows_act, job.cols_act)),
                   preload=npr.integers(-9, 9, (job.rows_act, job.cols_act)))
        model.run(job, model.job_input(job, **ops))
        host.apply(job)
        assert host == model.state
        done += 1
    assert done == 200
    with pytest.raises(JobError, match="NO_PRELOAD"):
        CoreState().check(cfg, Job("WS", 1, 1, 1, {"SWAP"}))
    with pytest.raises(JobError, match="NO_SAVED"):
        CoreState().check(cfg, Job("WS", 1, 1, 1, {"LOAD_W", "DRAIN_PREV"}, prev_rows=1))
    with pytest.raises(ValueError, match="saved tile has 2 rows"):
        CoreState(saved=True, saved_rows=2).check(cfg, Job("OS", 1, 1, 1, {"DRAIN_PREV"},
                                                           prev_rows=3))


# ----------------------------------------------------------------------- model vs jobs

@pytest.mark.parametrize("seed", range(4))
def test_model_counts_equal_per_job_formulas_on_random_jobs(seed):
    """A pass that fits one job (one tile, one chunk) counts, in the analytical model's
    closed form, exactly what core.expected_counters gives for that job: every mode, both
    weight-beat directions, DUAL_MAC 0 and 1, random shapes."""
    rng = random.Random(seed)
    for _ in range(40):
        R, C = rng.randint(1, 16), rng.randint(1, 16)
        cfg = ArrayConfig(R, C, dual_mac=rng.randint(0, 1))
        mode = rng.choice(list(MODES))
        kind = MODES[mode]
        r, c, T = rng.randint(1, R), rng.randint(1, C), rng.randint(1, 3000)
        wb_cols = kind.uses_weights and rng.random() < 0.5
        flags = set()
        if kind.uses_weights:
            flags |= {"LOAD_W"} | ({"TRANSPOSE"} if wb_cols else set())
        if kind.accumulates:
            flags |= {"ACC_CLEAR", "DRAIN"}
        want = expected_counters(cfg, Job(mode, T, r, c, frozenset(flags)))
        got = pass_counters(R, C, r, c, T, mode, wb_cols=wb_cols, dual_mac=cfg.dual_mac,
                            double_buffer=rng.random() < 0.5)
        assert {k: int(got[k]) for k in COUNTER_KEYS} == want, (R, C, mode, r, c, T, flags)
