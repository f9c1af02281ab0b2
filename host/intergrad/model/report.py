"""Text tables, CSV files and figures of model results (used by the CLI and benchmarks)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .compare import savings
from .profile import Result

ENERGY_PARTS = ("energy_mac", "energy_reg", "energy_buffer", "energy_dram", "energy_host")


def _eng(v: float) -> str:
    for unit, f in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= f:
            return f"{v / f:.3g}{unit}"
    return f"{v:.3g}"


def totals_table(results: list[Result]) -> str:
    """Fixed-width table of the totals of each design."""
    e = results[0].energy_table
    head = ("dataflow", "array", "mults", "cycles", "util/mult", "util/PE", "MACs", "DRAM acc",
            "buffer acc", "reg acc", "stream B", f"energy [{e.unit}]")
    rows = [head]
    for r in results:
        t = r.totals()
        rows.append((r.dataflow.name, r.array.size, str(int(t["multipliers"])),
                     _eng(t["cycles"]), f"{t['utilization']:.1%}",
                     f"{t['pe_utilization']:.1%}", _eng(t["macs"]),
                     _eng(t["dram_reads"] + t["dram_writes"]),
                     _eng(t["buffer_reads"] + t["buffer_writes"]),
                     _eng(t["reg_reads"] + t["reg_writes"]), _eng(t["stream_bytes"]),
                     _eng(t["energy"])))
    return _fmt(rows) + "\n" + UTIL_NOTE


UTIL_NOTE = ("(util/mult = MACs / (cycles x multipliers); util/PE = MACs / (cycles x PEs x the "
             "MACs a PE can do per cycle in each pass's mode): a dual-multiplier PE uses one "
             "multiplier outside InterGrad passes, so its forward pass is <= 50 % per "
             "multiplier but up to 100 % per PE)")


def savings_table(results: list[Result]) -> str:
    s = savings(results)
    if not s:
        if any("ig" in r.dataflow.modes for r in results):
            return "(no baseline design among the dataflows: no savings to show)"
        return "(no InterGrad design among the dataflows: no savings to show)"
    tgt = next(r.dataflow.name for r in results if "ig" in r.dataflow.modes)
    rows = [(f"{tgt} vs", "cycles", "mem accesses", "DRAM reads", "buffer reads", "energy")]
    for base, v in s.items():
        rows.append((base,) + tuple(f"{v[m]:+.1%}" for m in
                                    ("cycles", "mem_accesses", "dram_reads", "buffer_reads",
                                     "energy")))
    return _fmt(rows) + "\n(saving = 1 - InterGrad / baseline; positive: InterGrad is better)"


def _fmt(rows) -> str:
    w = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).rjust(w[i]) if i else str(c).ljust(w[i]) for i, c in enumerate(r))
             for r in rows]
    lines.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(lines)


def write_layer_csv(results: list[Result], path) -> Path:
    path = Path(path)
    rows = [row for r in results for row in r.layer_rows()]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def plot_profile(results: list[Result], path, title: str = "") -> Path:
    """Four panels: normalized totals, energy breakdown, cycles per pass, per-layer cycles."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"{r.dataflow.name}\n{r.array.size}" for r in results]
    tots = [r.totals() for r in results]
    fig, ax = plt.subplots(2, 2, figsize=(13, 9))
    # (a) totals normalized to the first design
    keys = (("cycles", "cycles"), ("mem_accesses", "memory accesses\n(DRAM + buffer)"),
            ("energy", "energy"))
    x = np.arange(len(keys))
    wd = 0.8 / len(results)
    for i, (r, t) in enumerate(zip(results, tots)):
        vals = [t[k] / tots[0][k] for k, _ in keys]
        bars = ax[0, 0].bar(x + i * wd, vals, wd, label=names[i].replace("\n", " "))
        ax[0, 0].bar_label(bars, fmt="%.2f", fontsize=7)
    ax[0, 0].set_xticks(x + wd * (len(results) - 1) / 2, [k[1] for k in keys])
    ax[0, 0].axhline(1.0, color="k", lw=0.5)
    ax[0, 0].set_ylabel(f"relative to {results[0].dataflow.name} (lower is better)")
    ax[0, 0].set_title("(a) training-step totals")
    ax[0, 0].legend(fontsize=8)
    # (b) energy breakdown
    bottom = np.zeros(len(results))
    unit = results[0].energy_table.unit
    for part in ENERGY_PARTS:
        v = np.array([t[part] for t in tots])
        ax[0, 1].bar(names, v, bottom=bottom, label=part.replace("energy_", ""))
        bottom += v
    ax[0, 1].set_ylabel(f"energy [{unit}]")
    ax[0, 1].set_title(f"(b) energy by component ({results[0].energy_table.name} table)")
    ax[0, 1].legend(fontsize=8)
    # (c) cycles per pass
    bottom = np.zeros(len(results))
    for p in ("fwd", "dx", "dw", "ig"):
        v = np.array([r.passes[p]["cycles"].sum() if p in r.passes else 0 for r in results],
                     dtype=float)
        if v.any():
            ax[1, 0].bar(names, v, bottom=bottom, label={"fwd": "forward", "dx": "dX",
                                                         "dw": "dW", "ig": "dX+dW (InterGrad)"}[p])
            bottom += v
    ax[1, 0].set_ylabel("array cycles")
    ax[1, 0].set_title("(c) cycles per training pass")
    ax[1, 0].legend(fontsize=8)
    # (d) per-layer backward cycles relative to the first design
    base = sum(p["cycles"] for k, p in results[0].passes.items() if k != "fwd")
    for i, r in enumerate(results[1:], 1):
        bw = sum(p["cycles"] for k, p in r.passes.items() if k != "fwd")
        ax[1, 1].plot(bw / np.maximum(base, 1), ".", ms=3, label=names[i].replace("\n", " "))
    ax[1, 1].axhline(1.0, color="k", lw=0.5)
    ax[1, 1].set_yscale("log")
    ax[1, 1].set_xlabel("conv / fc layer index")
    ax[1, 1].set_ylabel(f"backward cycles / {results[0].dataflow.name}")
    ax[1, 1].set_title("(d) per-layer backward cycles")
    if len(results) > 1:
        ax[1, 1].legend(fontsize=8)
    r0 = results[0]
    fig.suptitle(title or f"{r0.network}: one training step, batch {r0.batch} "
                 f"(forward, dX, dW, SGD update)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def pareto_front(cycles: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """Boolean mask of points no other point beats in both cycles and energy."""
    c, e = np.asarray(cycles, float), np.asarray(energy, float)
    keep = np.ones(len(c), bool)
    for i in range(len(c)):
        dom = (c <= c[i]) & (e <= e[i]) & ((c < c[i]) | (e < e[i]))
        keep[i] = not dom.any()
    return keep


def plot_pareto(rows: list[dict], path, title: str) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6.5))
    c = np.array([r["cycles_per_sample"] for r in rows], float)
    e = np.array([r["energy_per_sample"] for r in rows], float)
    front = pareto_front(c, e)
    for df in dict.fromkeys(r["dataflow"] for r in rows):
        m = np.array([r["dataflow"] == df for r in rows])
        ax.scatter(c[m], e[m], s=18, label=df)
    order = np.argsort(c[front])
    ax.plot(c[front][order], e[front][order], "k--", lw=1, label="Pareto front")
    for r, f in zip(rows, front):
        if f:
            ax.annotate(f"{r['dataflow']} {r['array']} b{r['batch']}",
                        (r["cycles_per_sample"], r["energy_per_sample"]),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("cycles per training sample (training-step cycles / batch)")
    ax.set_ylabel(f"energy per training sample [{rows[0].get('energy_unit', '')}]")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def emit(lines, out) -> str:
    """Print a report and, if ``out`` is given (benchmark scripts: only with --write), save
    the same text there (benchmarks/results/...)."""
    text = "\n".join(lines)
    print(text)
    if out is None:
        return text
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text + "\n")
    return text


def views_table(vs) -> str:
    """InterGrad against each baseline under each view, side by side, then in words."""
    from .compare import VIEWS

    vnames = list(vs.results)
    tgt = vs.results[vnames[0]][0]
    head = [""]
    sub = ["baseline"]
    for v in vnames:
        head += [VIEWS[v], "", "", ""]
        sub += ["array", "cycles", "mem acc", "energy"]
    rows = [tuple(sub)]
    bases = [r.dataflow.name for r in vs.results[vnames[0]][1:]]
    for i, b in enumerate(bases):
        row = [b]
        for v in vnames:
            res = vs.results[v]
            s = vs.savings(v)[b]
            row += [res[i + 1].array.size, f"{s['cycles']:+.1%}", f"{s['mem_accesses']:+.1%}",
                    f"{s['energy']:+.1%}"]
        rows.append(tuple(row))
    w = [max(len(str(r[j])) for r in rows) for j in range(len(sub))]
    hl = ["".ljust(w[0])]
    for k, v in enumerate(vnames):
        span = sum(w[1 + 4 * k: 5 + 4 * k]) + 6
        if len(VIEWS[v]) + 2 > span:
            w[1 + 4 * k] += len(VIEWS[v]) + 2 - span
            span = len(VIEWS[v]) + 2
        hl.append(f" {VIEWS[v]} ".center(span, "-"))
    lines = [f"{vs.target} {tgt.array.size} against each baseline under each view "
             f"(saving = 1 - {vs.target} / baseline; positive: InterGrad is better; "
             f"mapping {tgt.mapping_policy})",
             "  ".join(hl)]
    lines += ["  ".join(str(c).rjust(w[j]) if j else str(c).ljust(w[j])
                        for j, c in enumerate(r)) for r in rows]
    lines.insert(3, "  ".join("-" * x for x in w))
    lines.append("")
    lines.append("where the differences come from (second multiplier: the dual PE does a step's "
                 "dX and dW MACs in one cycle; interleaved pass: X and dY stream once for both "
                 "gradients, so fewer stream beats, fills and buffer reads than separate dX "
                 "and dW passes; array size: the equal-multiplier and equal-area baselines "
                 "have more PEs; an OS array keeps its outputs in the PEs and streams fewer "
                 "result beats):")
    for v in vnames:
        lines.append(f"  {VIEWS[v]}:")
        lines += [f"    {s}" for s in vs.explain(v)]
    return "\n".join(lines)
