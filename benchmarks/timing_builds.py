"""Logic depth and resources of several builds, one (cached) yosys synth_xilinx run each.

    python benchmarks/timing_builds.py [--builds 8x8m1,12x12m0] [--max-levels 6]

For each build: the resource estimate (intergrad.synth, share of the xc7z020) and the
logic-depth check (intergrad.timing: worst LUT levels, worst estimated delay, the worst
paths by name).  The default list is the default build and the largest build that fits
the xc7z020 within 70 % of its LUTs, FFs and DSPs: 12x12 with one time-shared multiplier
per PE (144 DSP48E1 = 65 %; a dual-multiplier 12x12 would need 288).  Prints the report;
with ``--write`` also writes benchmarks/results/timing_builds.txt.  Each uncached build takes minutes (the 12x12 about
three times the 8x8's).  Exit status 1 when a build exceeds the bound or does not fit.
"""
from __future__ import annotations

import argparse
import sys

from intergrad import synth, timing
from intergrad.spec import ArrayConfig

from _results import add_write_option, results_file  # noqa: E402 (benchmarks/)

DEFAULT_BUILDS = "8x8m1,12x12m0"


def parse_build(text: str) -> ArrayConfig:
    size, _, m = text.partition("m")
    return ArrayConfig.parse(size, dual_mac=int(m or 1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--builds", default=DEFAULT_BUILDS)
    ap.add_argument("--max-levels", type=int, default=timing.MAX_LEVELS)
    ap.add_argument("--paths", type=int, default=8)
    add_write_option(ap, "timing_builds")
    a = ap.parse_args(argv)
    with results_file("timing_builds", a.write, argv):
        return run(a)


def run(a) -> int:
    out: list[str] = []
    ok = True
    rows = []
    for b in a.builds.split(","):
        cfg = parse_build(b)
        rep = timing.check(cfg)
        est = synth.synthesize(cfg, progress=False)
        fit = synth.fits(est)
        bad = timing.violations(rep, a.max_levels)
        ok = ok and fit and not bad
        s = rep["summary"]
        u = est["utilization"]
        rows.append(f"| {cfg.rows}x{cfg.cols} DUAL_MAC={cfg.dual_mac} | {est['resources']['LUT']} "
                    f"({100 * u['LUT']:.1f} %) | {est['resources']['FF']} ({100 * u['FF']:.1f} %) | "
                    f"{est['resources']['DSP']} ({100 * u['DSP']:.1f} %) | {s['max_levels']} | "
                    f"{s['max_delay_ns']} ns | {len(bad)} |")
        out.append(synth.report(est))
        out.append(timing.report(rep, a.paths, a.max_levels))
        for p in bad[:20]:
            out.append("  OVER: " + timing.format_path(p))
        out.append("")
    table = ["| build | LUT | FF | DSP48E1 | worst LUT levels | worst est. delay | pairs over bound |",
             "|---|---|---|---|---|---|---|"] + rows
    print("\n".join(table + [""] + out))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
