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
