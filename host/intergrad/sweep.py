"""Sweep execution for ``intergrad sweep``: executors, a result cache, and RTL verification.

* **Executors** run independent tasks and yield their results as they finish:
  :class:`LocalExecutor` (a process pool on this machine, or in-process with one job; no
  extra dependency) and :class:`RayExecutor` (Ray tasks on a local instance or a cluster:
  ``pip install "intergrad[ray]"``, see docs/cluster.md).
* **Cache**: every sweep point (network, dataflows, array and its system, batch, tables,
  options) is stored under a hash of its configuration and of the model's version
  (:func:`model_version`: the package version and a hash of the model's sources), one JSON
  file per point, written atomically as soon as the point's result arrives.  A sweep that is
  interrupted (Ctrl-C, a lost node) resumes where it stopped: points already in the cache are
  not recomputed.  Changing the model's code changes the version, hence every key.
* **Verification** (``--verify N``): N of the (point, design) pairs are re-run on the
  simulated hardware (the Verilator-compiled core, driver and scheduler), by the same
  workers, on a small layer drawn from the point's network at the point's array size; the
  hardware counters are compared with the model's counts for the same layer (as
  tests/test_model_rtl.py does) and any disagreement is flagged.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import sys
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Iterator

from . import __version__

#: counters that must equal the model's exactly (busy cycles: plus the measured stalls)
EXACT = ("steps", "macs", "in_beats", "out_beats", "wload_beats", "jobs")
#: the designs the RTL runs: model dataflow name -> (scheduler schedule, DUAL_MAC of the build)
RTL_DESIGNS = {"wsos": ("baseline", 1), "intergrad": ("intergrad", 1),
               "intergrad1": ("intergrad", 0)}
#: largest array side simulated for verification (a Verilator build per size; 16x16 builds
#: in about a minute, larger ones take long and simulate slowly)
VERIFY_MAX_SIDE = 16
#: the small layer a verification runs: at most these sizes
VERIFY_LIMITS = {"batch": 3, "fc_n": 24, "fc_m": 20, "cin": 3, "cout": 5, "hw": 7}

EXECUTORS = ("local", "ray")


# ------------------------------------------------------------------------------ versions


@lru_cache(maxsize=None)
def model_version() -> str:
    """``<package version>+<hash>`` of everything a sweep point's numbers come from: the
    analytical model (intergrad/model, its data tables), the network zoo and this file."""
    here = Path(__file__).resolve().parent
    files = sorted([*(here / "model").rglob("*.py"), *(here / "model" / "data").glob("*"),
                    *(here / "zoo").rglob("*.py"), Path(__file__).resolve()])
    h = hashlib.sha256()
    for f in files:
        if f.is_file() and "__pycache__" not in f.parts:
            h.update(str(f.relative_to(here)).encode())
            h.update(f.read_bytes())
    return f"{__version__}+{h.hexdigest()[:12]}"


@lru_cache(maxsize=None)
def rtl_version() -> str:
    """A hash of the RTL sources (a verification result depends on them too)."""
    from . import rtl
    h = hashlib.sha256()
    for f in rtl.all_rtl_files():
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def canonical(obj):
    """A JSON-able, order-independent form of a configuration (dataclasses, tuples, dicts,
    paths, floats): what :func:`config_key` hashes."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"__type__": type(obj).__name__,
                **{f.name: canonical(getattr(obj, f.name)) for f in dataclasses.fields(obj)}}
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    if isinstance(obj, float):
        return repr(obj)
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__dict__"):
        return {"__type__": type(obj).__name__, **canonical(vars(obj))}
    return repr(obj)


def digest(config) -> str:
    """sha256 of a configuration's canonical form (to put a large shared part, such as
    the network, into many keys at the cost of one)."""
    return hashlib.sha256(json.dumps(canonical(config), sort_keys=True,
                                     separators=(",", ":")).encode()).hexdigest()


def config_key(config: dict, version: str | None = None) -> str:
    """sha256 of the canonical configuration and the model version."""
    blob = json.dumps({"config": canonical(config), "model": version or model_version()},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


# --------------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    """``$INTERGRAD_CACHE/sweep``, else ``$XDG_CACHE_HOME/intergrad/sweep``, else
    ``~/.cache/intergrad/sweep`` (the cache the simulator builds use)."""
    from .rtl import cache_root
    return cache_root() / "sweep"


class ResultCache:
    """One JSON file per result, ``<dir>/<key[:2]>/<key>.json``, written atomically (a
    temporary file renamed into place), so an interruption never leaves half a result."""

    def __init__(self, root: str | os.PathLike | None = None, enabled: bool = True):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.enabled = enabled

    def check_writable(self) -> None:
        """Raise OSError with a readable message if the cache cannot be used."""
        if not self.enabled:
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe"):
                pass
        except OSError as e:
            raise OSError(f"--cache-dir {self.root}: not writable ({e.strerror or e}); "
                          f"give another folder or --no-cache") from None

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str):
        if not self.enabled:
            return None
        p = self._path(key)
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            return None          # absent, or unreadable: recomputed
        return rec.get("result") if rec.get("key") == key else None

    def put(self, key: str, result, meta: dict | None = None) -> None:
        if not self.enabled:
            return
        p = self._path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{key[:8]}", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"key": key, "meta": meta or {}, "result": result}, f)
            os.replace(tmp, p)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("??/*.json")) if self.root.is_dir() else 0


# ----------------------------------------------------------------------------- executors


def _ignore_sigint():
    """Pool workers leave Ctrl-C to the driver (which stops the sweep and says how to
    resume) instead of each printing a KeyboardInterrupt traceback."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def mp_context():
    """The multiprocessing context for worker processes: fork, unless this process already
    runs threads (JAX, Ray, a notebook kernel), which can deadlock a forked child; then
    fresh interpreters (spawn)."""
    import multiprocessing
    import threading
    try:  # native threads too (a JAX backend's threads are invisible to `threading`)
        nthreads = len(os.listdir("/proc/self/task"))
    except OSError:
        nthreads = threading.active_count()
    return multiprocessing.get_context("spawn" if nthreads > 1 else None)


class LocalExecutor:
    """A process pool on this machine (``jobs`` processes), or in-process with one job."""

    name = "local"

    def __init__(self, jobs: int = 1):
        self.jobs = max(1, int(jobs))

    def describe(self) -> str:
        return f"local, {self.jobs} process{'es' if self.jobs > 1 else ''}"

    def run(self, fn: Callable, tasks: list) -> Iterator[tuple[int, object]]:
        """Yield ``(index, fn(tasks[index]))`` as the tasks finish."""
        if self.jobs == 1 or len(tasks) <= 1:
            for i, t in enumerate(tasks):
                yield i, fn(t)
            return
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        ex = ProcessPoolExecutor(max_workers=min(self.jobs, len(tasks)),
                                 initializer=_ignore_sigint, mp_context=mp_context())
        try:
            pending = {ex.submit(fn, t): i for i, t in enumerate(tasks)}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield pending.pop(fut), fut.result()
        except BaseException:
            # an interruption: drop what has not started; the running points finish
            ex.shutdown(wait=True, cancel_futures=True)
            raise
        ex.shutdown(wait=True)

    def close(self) -> None:
        pass


class RayExecutor:
    """Ray tasks.  ``address``: a running cluster (``ray start --head`` on its head node;
    also ``$RAY_ADDRESS``, or ``"auto"`` on a node of it); None: a local instance with
    ``num_cpus`` CPUs, started here and stopped by :meth:`close`."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        try:
            import ray
        except ImportError:
            raise ImportError("--executor ray needs Ray: pip install \"intergrad[ray]\" "
                              "(or pip install ray)") from None
        self.ray = ray
        address = address or os.environ.get("RAY_ADDRESS") or None
        self.address = address
        self._started = False
        if not ray.is_initialized():
            if address is None:
                # a local instance: its workers import this very intergrad (e.g. a checkout
                # that is not installed, or one put first on sys.path by the tests)
                pkg_parent = str(Path(__file__).resolve().parents[1])
                pp = os.pathsep.join(x for x in (pkg_parent, os.environ.get("PYTHONPATH"))
                                     if x)
                kw = dict(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                          logging_level="ERROR",
                          runtime_env={"env_vars": {"PYTHONPATH": pp}})
            else:
                # a cluster (ray start --head), or Ray Client (ray://): its nodes have
                # intergrad installed (run_task checks the model version)
                kw = dict(address=address)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    ray.init(**kw)
                except Exception as e:      # one line for the CLI, not Ray's traceback
                    where = f"the Ray cluster at {address}" if address else "a local Ray"
                    hint = ("; is it running, and RAY_AUTH_MODE=token set with its token "
                            "(docs/cluster.md)?" if address else "")
                    raise ConnectionError(f"cannot start or reach {where}: "
                                          f"{' '.join(str(e).split())[:300]}{hint}") from None
            self._started = True
        self.cpus = int(ray.cluster_resources().get("CPU", 0))

    def describe(self) -> str:
        where = f"cluster {self.address}" if self.address else "local instance"
        return f"ray ({where}, {self.cpus} CPUs)"

    def run(self, fn: Callable, tasks: list) -> Iterator[tuple[int, object]]:
        ray = self.ray
        remote = ray.remote(num_cpus=1, max_retries=2)(fn)
        refs = {remote.remote(t): i for i, t in enumerate(tasks)}
        try:
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1)
                for r in done:
                    yield refs.pop(r), ray.get(r)
        finally:
            for r in refs:             # interrupted: cancel what is left
                try:
                    ray.cancel(r, force=True)
                except Exception:
                    pass

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()
            self._started = False


def make_executor(kind: str, jobs: int = 1, address: str | None = None):
    if kind == "local":
        return LocalExecutor(jobs)
    if kind == "ray":
        return RayExecutor(address, num_cpus=jobs)
    raise ValueError(f"unknown executor {kind!r}; known: {', '.join(EXECUTORS)}")


# --------------------------------------------------------------------------------- tasks


def run_task(task: dict):
    """What a worker runs: one sweep point (``kind="point"``) or one verification
    (``kind="verify"``).  The driver's model version travels with the task: a worker with
    another intergrad (a cluster node not updated) refuses instead of caching wrong
    numbers."""
    mine = model_version()
    if task["model_version"] != mine:
        raise RuntimeError(f"worker {socket.gethostname()} has intergrad model {mine}, the "
                           f"sweep runs {task['model_version']}: install the same intergrad "
                           f"on every node")
    if task["kind"] == "point":
        return sweep_point(**task["args"])
    if task["kind"] == "verify":
        return verify_point(**task["args"])
    raise ValueError(f"unknown task kind {task['kind']!r}")


def sweep_point(net, dataflows, array, batch, energy, iso_area, area, fused_update,
                first_dx, mapping, objective, requested) -> list[dict]:
    """The model at one (array, batch): one row per dataflow."""
    from .model import compare
    res = compare(net, dataflows, array, batch, energy, iso_area, area, fused_update,
                  first_dx, mapping, objective)
    out = []
    for r in res:
        t = r.totals()
        out.append({"network": net.name, "dataflow": r.dataflow.name, "array": r.array.size,
                    "requested_array": requested, "batch": batch,
                    "cycles": t["cycles"], "cycles_per_sample": t["cycles"] / batch,
                    "energy": t["energy"], "energy_per_sample": t["energy"] / batch,
                    "energy_unit": energy.unit, "utilization": t["utilization"],
                    "pe_utilization": t["pe_utilization"],
                    "macs": t["macs"], "mem_accesses": t["mem_accesses"],
                    "dram_accesses": t["dram_reads"] + t["dram_writes"],
                    "buffer_accesses": t["buffer_reads"] + t["buffer_writes"],
                    "reg_accesses": t["reg_reads"] + t["reg_writes"],
                    "stream_bytes": t["stream_bytes"]})
    # numpy scalars -> Python numbers (JSON in the cache, pickled back from workers)
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
            for row in out]


def small_layer(layer, batch: int):
    """A layer of the same kind and stride as ``layer`` (a zoo GEMM layer), shrunk to the
    sizes of :data:`VERIFY_LIMITS` so that its training passes simulate in seconds;
    returns ``(layer, batch)``."""
    from .zoo import Layer
    L = VERIFY_LIMITS
    b = max(1, min(batch, L["batch"]))
    if layer.kind == "fc" or (layer.hout == 1 and layer.wout == 1 and layer.kh == 1):
        n = max(1, min(layer.N, L["fc_n"]))
        m = max(1, min(layer.cout, L["fc_m"]))
        return Layer(f"{layer.name}~fc{n}x{m}", "fc", n, 1, 1, m, 1, 1), b
    k = min(layer.kh, 3)
    s = min(layer.stride, 2)
    hw = max(k, min(layer.hin, L["hw"]))
    o = (hw - k) // s + 1
    cin = max(1, min(layer.cin // layer.groups, L["cin"]))
    cout = max(1, min(layer.cout // layer.groups, L["cout"]))
    return Layer(f"{layer.name}~conv{cin}x{hw}x{hw}k{k}s{s}", "conv", cin, hw, hw, cout, o, o,
                 k, k, s), b


_DEVICES: dict = {}


def _sim_device(cfg):
    """One simulated core per build configuration per worker process (built once, cached
    on disk by intergrad.device.sim)."""
    if cfg not in _DEVICES:
        from .device import open_device
        _DEVICES[cfg] = open_device("sim", cfg, verbose=False)
    return _DEVICES[cfg]


def verify_point(layer, batch, rows, cols, data_w, acc_w, design, seed=0) -> dict:
    """Run ``layer`` (small, see :func:`small_layer`) at ``batch`` through the scheduler
    on the simulated core of this array and design, and compare every pass's hardware
    counters with the model's counts.  Returns ``{"ok", "mismatches", ...}``."""
    import numpy as np

    from .driver import Accelerator
    from .model import DATAFLOWS, Array, profile
    from .conv import conv2d_backward, conv2d_forward
    from .scheduler import Scheduler
    from .spec import ArrayConfig
    from .zoo import Network

    schedule, dual = RTL_DESIGNS[design]
    cfg = ArrayConfig(rows, cols, data_w, acc_w, dual)
    dev = _sim_device(cfg)
    dev.set_stalls(0.0, 0.0)
    rng = np.random.default_rng(seed)
    hi = max(2, min(20, 2 ** (data_w - 1) - 1))
    s = Scheduler(Accelerator(dev))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # accumulator headroom notes: not the point here
        if layer.kind == "fc":
            X = rng.integers(-hi, hi, (batch, layer.cin))
            W = rng.integers(-hi, hi, (layer.cin, layer.cout))
            dY = rng.integers(-hi, hi, (batch, layer.cout))
            s.fc_forward(X, W, schedule=schedule)
            s.fc_backward(X, W, dY, schedule=schedule)
        else:
            x = rng.integers(-hi, hi, (batch, layer.cin, layer.hin, layer.win))
            w = rng.integers(-hi, hi, (layer.cout, layer.cin, layer.kh, layer.kw))
            y = conv2d_forward(s, x, w, layer.stride, 0)
            s.report[0].schedule = schedule
            conv2d_backward(s, x, w, rng.integers(-hi, hi, y.shape), layer.stride, 0,
                            schedule=schedule)
    # the model of the passes as they ran: job queues (a header beat per job) or job by job
    res = {q: profile(Network("verify", [layer]), DATAFLOWS[design],
                      Array(rows, cols, data_w, acc_w, queued=q), batch)
           for q in {rec.queued for rec in s.report}}
    mismatches = []
    passes = []
    for rec in s.report:
        want = {k: int(v[0]) for k, v in res[rec.queued].passes[rec.pass_].items()
                if k in EXACT + ("busy_cycles",)}
        got = rec.counters
        for k in EXACT:
            if int(got[k]) != want[k]:
                mismatches.append(f"{rec.pass_} {k}: rtl {int(got[k])} model {want[k]}")
        busy = want["busy_cycles"] + int(got["stall_in"]) + int(got["stall_out"])
        if int(got["busy_cycles"]) != busy:
            mismatches.append(f"{rec.pass_} busy_cycles: rtl {int(got['busy_cycles'])} "
                              f"model {busy} (incl. stalls)")
        passes.append(rec.pass_)
    return {"ok": not mismatches, "mismatches": mismatches, "passes": passes,
            "layer": layer.name, "batch": batch, "array": f"{rows}x{cols}", "design": design,
            "rtl_cycles": int(sum(int(r.counters["busy_cycles"]) for r in s.report)),
            "worker": socket.gethostname()}


def verify_sample(points: list[dict], dataflows, n: int) -> tuple[list[tuple], list[str]]:
    """Pick ``n`` (point index, design) pairs the RTL can run, spread evenly over the
    sweep (deterministic).  Returns them and notes on what could not be verified."""
    notes = []
    designs = [d.name for d in dataflows if d.name in RTL_DESIGNS]
    if not designs:
        notes.append(f"--verify: none of the designs ({', '.join(d.name for d in dataflows)})"
                     f" is one the RTL runs ({', '.join(RTL_DESIGNS)}): nothing verified")
        return [], notes
    ok = [i for i, p in enumerate(points)
          if max(p["array"].rows, p["array"].cols) <= VERIFY_MAX_SIDE]
    if len(ok) < len(points):
        notes.append(f"--verify: only arrays up to {VERIFY_MAX_SIDE}x{VERIFY_MAX_SIDE} are "
                     f"simulated ({len(points) - len(ok)} of {len(points)} points too large)")
    pairs = [(i, d) for i in ok for d in designs]
    if not pairs:
        return [], notes
    n = min(n, len(pairs))
    step = len(pairs) / n
    return [pairs[int(j * step)] for j in range(n)], notes


def run_cached(executor, tasks: list[dict], keys: list[str], cache: ResultCache,
               on_result: Callable[[int, object, bool], None] | None = None) -> list:
    """Results of ``tasks``: from the cache where present, else computed by ``executor``
    and stored as each arrives.  ``on_result(index, result, cached)`` after each."""
    results: list = [None] * len(tasks)
    todo = []
    for i, k in enumerate(keys):
        r = cache.get(k)
        if r is not None:
            results[i] = r
            if on_result:
                on_result(i, r, True)
        else:
            todo.append(i)
    for j, r in executor.run(run_task, [tasks[i] for i in todo]):
        i = todo[j]
        cache.put(keys[i], r, {"kind": tasks[i]["kind"]})
        results[i] = r
        if on_result:
            on_result(i, r, False)
    return results


__all__ = ["EXECUTORS", "LocalExecutor", "RayExecutor", "ResultCache", "canonical",
           "config_key", "digest", "default_cache_dir", "make_executor", "model_version", "mp_context",
           "run_cached", "run_task", "small_layer", "sweep_point", "verify_point",
           "verify_sample"]
