"""The simulator harness's direct cycle and its region-by-region cycle (model_eval/model_edge
in host/intergrad/device/harness.cpp) against the generated eval() they shorten: the same random
passes (every mode and flag combination, preloads and saved tiles carried over), with and
without stalls, give the same output beats, counters, status and cycle count on both
paths."""
from __future__ import annotations

import json
import os
import subprocess
import sys

CHILD = r'''
import hashlib, json, sys
import numpy as np
from intergrad.device.sim import SimDevice
from intergrad.driver import Accelerator
from intergrad.golden import ArrayModel
from intergrad.golden.queue import random_queue
from intergrad.spec import ArrayConfig
cfg = ArrayConfig.parse(sys.argv[1])
dev = SimDevice(cfg, verbose=False)
acc = Accelerator(dev)
h = hashlib.sha256()
rng = np.random.default_rng(5)
model = ArrayModel(cfg)
for k, stalls in enumerate([(0.0, 0.0), (0.3, 0.4), (0.0, 0.7)]):
    dev.set_stalls(*stalls, seed=11 + k)
    for _ in range(3):
        jobs, lanes = random_queue(cfg, rng, 8, 20, preloaded=model.preloaded,
                                   saved_rows=model.state.saved_rows)
        from intergrad.golden.queue import run_queue
        run_queue(model, jobs, lanes)
        acc.reset_counters()
        for o in acc.run_pass(jobs, lanes):
            h.update(np.ascontiguousarray(o, dtype=np.int64).tobytes())
        h.update(json.dumps(acc.counters(), sort_keys=True).encode())
        h.update(json.dumps(acc.status(), sort_keys=True).encode())
from intergrad.device.sim import _Lib
print(json.dumps({"path": int(dev._lib.ig_eval_path()), "cycle": dev.cycle,
                  "digest": h.hexdigest(), "libs": sorted(_Lib._cache)}))
'''


def _run(array: str, path: str, arch: str | None = None) -> dict:
    env = dict(os.environ)
    if arch is not None:
        env["INTERGRAD_SIM_ARCH"] = arch
    env.pop("INTERGRAD_SIM_FULL_EVAL", None)
    env.pop("INTERGRAD_SIM_REGIONS", None)
    if path == "full":
        env["INTERGRAD_SIM_FULL_EVAL"] = "1"
    elif path == "regions":
        env["INTERGRAD_SIM_REGIONS"] = "1"
    r = subprocess.run([sys.executable, "-c", CHILD, array], env=env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_direct_and_region_cycles_equal_generated_eval():
    for array in ("8x8", "3x5"):
        direct, regions, full = _run(array, "direct"), _run(array, "regions"), _run(array, "full")
        assert direct["path"] == 2, "the direct cycle is not in use (its probe failed?)"
        assert regions["path"] == 1, "INTERGRAD_SIM_REGIONS did not select the region cycle"
        assert full["path"] == 0, "INTERGRAD_SIM_FULL_EVAL did not select eval()"
        for fast in (direct, regions):
            assert fast["cycle"] == full["cycle"], (array, fast, full)
            assert fast["digest"] == full["digest"], (array, fast, full)


def test_native_and_portable_builds_agree():
    """The default build (-march=native) and the portable one are two libraries (two cache
    keys) that run the same random passes to the same beats, counters, status and cycles."""
    from intergrad.device.sim import build_key, sim_arch
    from intergrad.spec import ArrayConfig
    import pytest
    native, portable = _run("8x8", "direct", "native"), _run("8x8", "direct", "portable")
    assert native["libs"] != portable["libs"]
    assert (native["cycle"], native["digest"]) == (portable["cycle"], portable["digest"])
    cfg = ArrayConfig.parse("8x8")
    assert sim_arch("portable") == ("", "portable")
    if sim_arch("native")[0]:   # g++ takes -march=native here: the key names its target
        assert build_key(cfg, False, "native") != build_key(cfg, False, "portable")
    with pytest.raises(ValueError, match="INTERGRAD_SIM_ARCH"):
        sim_arch("fastest")


ORDER_CHILD = r'''
import numpy as np
from intergrad.device.sim import SimDevice
from intergrad.driver import Accelerator
from intergrad.golden import ArrayModel, Job
from intergrad.spec import ArrayConfig
cfg = ArrayConfig.parse("8x8")
a = SimDevice(cfg, verbose=False)
b = SimDevice(cfg, verbose=False)
c = SimDevice(ArrayConfig.parse("3x5"), verbose=False)
b.close(); c.close()
acc, m = Accelerator(a), ArrayModel(cfg)
job = Job("IG", 5, 8, 8, {"LOAD_W", "ACC_CLEAR", "DRAIN"})
rng = np.random.default_rng(1)
lanes = m.job_input(job, weights=rng.integers(-9, 9, (8, 8)), left=rng.integers(-9, 9, (5, 8)),
                    top=rng.integers(-9, 9, (5, 8)))
assert np.array_equal(acc.run_job(job, lanes), m.run(job, lanes))
a.close()
print("OK")
'''


def test_devices_closed_in_any_order():
    """Devices created and closed in any order in one thread (another device's context
    deleted first) neither hang nor crash: the model's scopes use the thread's current
    Verilated context, which the harness sets to the device's own."""
    r = subprocess.run([sys.executable, "-c", ORDER_CHILD], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]
