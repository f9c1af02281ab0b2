"""Where the simulator's instructions go: a callgrind line profile of the Verilated model
and the harness, per simulated cycle, grouped by the RTL they come from.

    python benchmarks/sim_profile.py [--array 8x8] [--mode IG|WS|OS] [--top 25] [--keep DIR]

Builds the simulator library as intergrad.device.sim does for ``INTERGRAD_SIM_ARCH=portable``
(same Verilator and compiler flags, the compiler's default target: valgrind does not run
the AVX-512 code of the default ``-march=native`` build) plus ``-g``, runs one long job of two lengths under callgrind (``valgrind``, Debian
package), and divides the difference of every source line's instruction count by the
difference in cycles, so set-up and Python cancel out.  A generated C++ statement is
charged to the RTL name it assigns (PE partial sums, accumulators, data links, the MAC
counter's diagonal counts and group sums, skew, AXI-Lite, counters, output register, the
top's control) or to Verilator's evaluation scaffolding; ``--keep`` leaves the annotated
sources (``*.ann``) for reading line by line.  A profiling aid: benchmarks/sim_instructions.py
is the figure to quote.
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from intergrad import rtl
from intergrad.device import sim as S
from intergrad.spec import ArrayConfig

from sim_instructions import CHILD  # noqa: E402 (benchmarks/): the same job


# (group, pattern on the statement's first line), first match wins
GROUPS = [
    ("PE partial sum", r"g_col__BRA__\d+__KET____DOT__p_o"),
    ("PE accumulator", r"u_pe__DOT__acc\b|__DOT__acc_sum|u_pe__DOT__acc "),
    ("PE weights", r"u_pe__DOT__w[01]\b|u_pe__DOT__w_op"),
    ("PE data links", r"g_col__BRA__\d+__KET____DOT__[vh]_o"),
    ("MAC counter", r"g_diag|g_grp|groups_sum|diag_pop|mac_total|mac_[pa]\b|__DOT__vd\b"),
    ("skew / de-skew", r"g_skew|g_deskew"),
    ("AXI-Lite", r"u_regs|s_axil"),
    ("counters", r"__DOT__cnt\b|__DOT__cnt\[|inc_q|Vlvbound|snap_flat"),
    ("output register", r"m_axis_tdata|drain_beat|pd_out\)"),
    ("array input register", r"in_left_reg|in_top_reg|left_mask|top_mask"),
    ("array, other", r"u_array"),
    ("evaluation scaffolding", r"Vintergrad_top___024root___|__V\w*Triggered|__Vtrig|#endif"),
]


def build(cfg: ArrayConfig, work: Path) -> Path:
    obj = work / "obj"
    obj.mkdir(parents=True)
    shutil.copy(S.FAST_H, obj / S.FAST_H.name)
    vbin, env = rtl.verilator_bin(), rtl.verilator_env()
    cmd = S.verilator_cmd(vbin, obj, cflags="-g")
    cmd += [f"-G{k}={v}" for k, v in cfg.params().items()] + [str(p) for p in rtl.sources()]
    subprocess.run(cmd, env=env, cwd=work, check=True, stdout=subprocess.DEVNULL)
    vroot = Path(env.get("VERILATOR_ROOT", vbin.parent.parent))
    subprocess.run(["g++", "-std=c++17", "-fPIC", "-O3", "-g", "-DVM_TRACE=0", "-I" + str(obj),
                    "-I" + str(vroot / "include"), "-I" + str(vroot / "include" / "vltstd"),
                    "-c", str(S.HARNESS), "-o", str(work / "harness.o")], check=True, env=env)
    lib = work / "libintergrad_sim.so"
    subprocess.run(["g++", "-shared", "-o", str(lib), str(work / "harness.o"),
                    "-Wl,--whole-archive", str(obj / "Vintergrad_top__ALL.a"),
                    "-Wl,--no-whole-archive", str(obj / "libverilated.a"), "-pthread",
                    "-latomic"], check=True, env=env)
    return lib


def profile(array: str, B: int, lib: Path, mode: str, out: Path) -> tuple[int, dict]:
    """(cycles, {source file: [(instructions, text) per line]})."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    r = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                        sys.executable, "-c", CHILD, array, str(B), mode, str(lib)],
                       capture_output=True, text=True, env=env)
    if r.returncode != 0 or "CYCLES" not in r.stdout:
        raise SystemExit(r.stderr[-2000:])
    cycles = int(re.search(r"CYCLES (\d+)", r.stdout).group(1))
    ann = subprocess.run(["callgrind_annotate", "--auto=yes", "--context=100000000",
                          "--threshold=100", str(out)], capture_output=True, text=True).stdout
    files: dict[str, list[int]] = {}
    cur = None
    for line in ann.splitlines():
        m = re.match(r"-- Auto-annotated source: (.*)", line)
        if m:
            cur = m.group(1).strip()
            files[cur] = []
            continue
        if cur is None or line.startswith("--"):
            continue
        m = re.match(r"\s*([\d,]+|\.)\s(.*)$", line)
        if m and "=>" not in m.group(2):   # call lines carry inclusive costs: skipped
            files[cur].append(0 if m.group(1) == "." else int(m.group(1).replace(",", "")))
    return cycles, files


def statements(src: list[str], cost: list[float]):
    """(first line number, first line text, instructions) per top-level statement."""
    out, cur = [], None
    for i, (text, c) in enumerate(zip(src, cost), 1):
        ind = len(text) - len(text.lstrip(" "))
        st = text.strip()
        if ind <= 8 and st and not st.startswith(("}", "=", "+", "&", "|", ">", "<", ":", "?",
                                                  ")", "(", "-", "//")):
            cur = [i, st, 0.0]
            out.append(cur)
        if cur is not None:
            cur[2] += c
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--array", default="8x8")
    ap.add_argument("--mode", default="IG", choices=["IG", "WS", "OS"])
    ap.add_argument("--top", type=int, default=25, help="statements to list")
    ap.add_argument("--keep", type=Path, help="keep the build and annotated sources here")
    a = ap.parse_args(argv)
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind not found: apt-get install valgrind")
    cfg = ArrayConfig.parse(a.array)
    work = a.keep or Path(tempfile.mkdtemp(prefix="intergrad_prof_"))
    if a.keep:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
    try:
        print(f"building a -g simulator library in {work} ...", file=sys.stderr)
        lib = build(cfg, work)
        c1, f1 = profile(a.array, 1000, lib, a.mode, work / "cg1.out")
        c2, f2 = profile(a.array, 5000, lib, a.mode, work / "cg2.out")
        groups = collections.Counter()
        stmts = []
        total = 0.0
        for name, lines2 in f2.items():
            if "obj/" not in name and "harness" not in name and "verilated_fast" not in name:
                continue
            lines1 = f1.get(name, [0] * len(lines2))
            if len(lines1) != len(lines2):
                continue
            per = [(y - x) / (c2 - c1) for x, y in zip(lines1, lines2)]
            total += sum(per)
            if "harness" in name:
                groups["harness"] += sum(per)
                continue
            if "verilated_fast" in name:
                groups["PE multiplies (signed extend and multiply)"] += sum(per)
                continue
            src = Path(name).read_text().splitlines()
            if a.keep:
                Path(str(work / Path(name).name) + ".ann").write_text(
                    "".join(f"{v:8.1f} {t}\n" if abs(v) >= 0.05 else f"         {t}\n"
                            for v, t in zip(per, src)))
            for ln, text, c in statements(src, per):
                g = next((g for g, p in GROUPS if re.search(p, text)), "top control")
                groups[g] += c
                stmts.append((c, f"{Path(name).name}:{ln}", text[:110]))
        print(f"{a.array} array, {a.mode} job: {total:.0f} instructions per simulated cycle "
              f"(callgrind line profile; {c1} and {c2} cycles)")
        for g, v in groups.most_common():
            print(f"  {v:8.0f}  {g}")
        print(f"the {a.top} costliest statements:")
        for c, where, text in sorted(stmts, reverse=True)[:a.top]:
            print(f"  {c:8.1f}  {where}  {text}")
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
