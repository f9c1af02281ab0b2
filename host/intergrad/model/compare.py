"""Several designs on one network: iso-area sizing, totals and InterGrad's savings."""
from __future__ import annotations

import dataclasses

from .dataflows import Dataflow, parse_dataflow
from .profile import Array, Result, profile
from .tables import EnergyTable, iso_area_size, load_area, load_energy

SAVING_METRICS = ("cycles", "mem_accesses", "dram_reads", "buffer_reads", "energy")


def compare(net, dataflows, array: Array, batch: int, energy: EnergyTable | None = None,
            iso_area: bool = False, area: dict | None = None,
            fused_update: bool = False, first_dx: bool = True, mapping: str = "best",
            objective: str = "cycles") -> list[Result]:
    """Profile ``net`` on each dataflow.  With ``iso_area`` the given array size belongs to
    the first dataflow; every other one gets the largest array (same aspect ratio) of its
    own PE variant that fits in the same area (:func:`iso_area_size`).  ``mapping="best"``
    (default): every design, baselines included, uses the best operand-to-array assignment
    per layer and pass (see :func:`profile`); ``"rtl"``: the RTL scheduler's."""
    dfs = [d if isinstance(d, Dataflow) else parse_dataflow(d) for d in dataflows]
    if not dfs:
        raise ValueError("no dataflow given")
    e = energy or load_energy()
    if iso_area:
        area = area or load_area()
        for d in dfs:
            if d.pe not in area:
                raise KeyError(f"area table has no PE variant {d.pe!r} (for dataflow "
                               f"{d.name}); has: {', '.join(area)}")
    out = []
    for d in dfs:
        a = array
        if iso_area:
            r, c = iso_area_size(array.rows, array.cols, area[dfs[0].pe], area[d.pe])
            a = dataclasses.replace(array, rows=r, cols=c)
        out.append(profile(net, d, a, batch, e, fused_update=fused_update, first_dx=first_dx,
                           mapping=mapping, objective=objective))
    return out


def savings(results: list[Result], target: str | None = None) -> dict[str, dict[str, float]]:
    """Fractional saving of the target design (default: the first InterGrad one) versus each
    other design: ``1 - target / baseline`` per metric (positive = target is better)."""
    names = [r.dataflow.name for r in results]
    if target is None:
        target = next((n for n in names if "ig" in dict(
            results[names.index(n)].dataflow.passes)), None)
    if target is None or target not in names:
        return {}
    t = results[names.index(target)].totals()
    out = {}
    for r in results:
        if r.dataflow.name == target:
            continue
        b = r.totals()
        out[r.dataflow.name] = {m: (1.0 - t[m] / b[m]) if b[m] else 0.0
                                for m in SAVING_METRICS}
    return out


#: comparison views: which resource the designs share
VIEWS = {"pes": "equal PE count", "mults": "equal multiplier count", "area": "equal area"}


@dataclasses.dataclass
class ViewSet:
    """InterGrad against each baseline under each view (see :func:`views`)."""

    target: str                  # the InterGrad design the savings are of
    results: dict                # view -> [Result] (target first)
    helper: Result | None        # the single-multiplier InterGrad on the target's array

    def savings(self, view: str) -> dict[str, dict[str, float]]:
        return savings(self.results[view], self.target)

    def explain(self, view: str) -> list[str]:
        """Words: what each saving of the target in this view comes from."""
        res = self.results[view]
        tgt = res[0]
        t = tgt.totals()
        out = []
        for b in res[1:]:
            bt = b.totals()
            f = bt["cycles"] / t["cycles"]
            words = [f"vs {b.dataflow.name} {b.array.size} ({int(bt['multipliers'])} "
                     f"multipliers): speed-up {f:.2f}x"]
            other = " and the array size" if b.array != tgt.array else ""
            if self.helper is not None and b.dataflow.name == self.helper.dataflow.name:
                h = self.helper.total("cycles")
                words.append(f" = {h / t['cycles']:.2f}x from the second multiplier"
                             + (f" x {bt['cycles'] / h:.2f}x from the array size"
                                if b.array != tgt.array else ""))
            elif self.helper is not None and tgt.dataflow.mults_per_pe == 2:
                h = self.helper.total("cycles")
                fm, fr = h / t["cycles"], bt["cycles"] / h
                words.append(f" = {fm:.2f}x from the second multiplier "
                             f"({self.helper.dataflow.name} -> {tgt.dataflow.name}, same array)"
                             f" x {fr:.2f}x from the interleaved pass{other} "
                             f"({self.helper.dataflow.name} vs {b.dataflow.name})")
            else:
                words.append(f", all from the interleaved pass{other}")
            words.append("; " + ", ".join(
                _pct(1 - t[k] / bt[k] if bt[k] else 0.0, what) for k, what in (
                    ("stream_beats", "stream beats"),
                    ("buffer_accesses", "buffer accesses"), ("dram_words", "DRAM words"),
                    ("energy", "energy"))))
            out.append("".join(words))
        return out


def _pct(saving: float, noun: str) -> str:
    less = "less" if noun == "energy" else "fewer"
    return f"{saving:.1%} {less} {noun}" if saving >= 0 else f"{-saving:.1%} more {noun}"


def view_arrays(dfs, array: Array, view: str, area: dict | None = None) -> list[Array]:
    """Array of each design under a view: the first design has ``array``; the others get the
    same PE count, the largest array (aspect ratio kept) with at most its multipliers, or at
    most its area."""
    out = []
    ref = dfs[0]
    for d in dfs:
        if view == "pes" or d is ref:
            out.append(array)
            continue
        if view == "mults":
            r, c = iso_area_size(array.rows, array.cols, ref.mults_per_pe, d.mults_per_pe)
        elif view == "area":
            area = area or load_area()
            for x in (ref, d):
                if x.pe not in area:
                    raise KeyError(f"area table has no PE variant {x.pe!r} (for dataflow "
                                   f"{x.name}); has: {', '.join(area)}")
            r, c = iso_area_size(array.rows, array.cols, area[ref.pe], area[d.pe])
        else:
            raise ValueError(f"unknown view {view!r}; known: {', '.join(VIEWS)}")
        out.append(dataclasses.replace(array, rows=r, cols=c))
    return out


def views(net, dataflows, array: Array, batch: int, energy: EnergyTable | None = None,
          area: dict | None = None, which=tuple(VIEWS), **kw) -> ViewSet:
    """The first InterGrad design (the target, on ``array``) against every other design at
    equal PE count, equal multiplier count and equal area.  ``kw`` go to :func:`profile`
    (``mapping`` defaults to ``"best"``: baselines best-mapped)."""
    dfs = [d if isinstance(d, Dataflow) else parse_dataflow(d) for d in dataflows]
    tgt = next((d for d in dfs if "ig" in d.modes), None)
    if tgt is None:
        raise ValueError("views need an InterGrad design among the dataflows")
    dfs = [tgt] + [d for d in dfs if d is not tgt]
    e = energy or load_energy()
    kw.setdefault("mapping", "best")
    results = {}
    cache = {}
    for v in which:
        rs = []
        for d, a in zip(dfs, view_arrays(dfs, array, v, area)):
            key = (d.name, a.rows, a.cols)
            if key not in cache:
                cache[key] = profile(net, d, a, batch, e, **kw)
            rs.append(cache[key])
        results[v] = rs
    helper = None
    if tgt.mults_per_pe == 2:
        single = dataclasses.replace(tgt, name=tgt.name + "1" if tgt.name == "intergrad"
                                     else tgt.name + "/1mult", dual_mac=0, mults_per_pe=1,
                                     pe="ig_single")
        helper = profile(net, single, array, batch, e, **kw)
    return ViewSet(tgt.name, results, helper)
