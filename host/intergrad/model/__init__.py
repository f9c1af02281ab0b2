"""Analytical model of CNN training on WS, OS and InterGrad systolic arrays.

``counts``: closed-form job counters of a tiled GEMM pass (equal to the RTL's);
``dataflows``: which mode runs each pass; ``profile``: cycles / accesses / energy of a whole
training step; ``tables``: energy and area tables and iso-area sizing; ``compare``: several
designs side by side with savings.  See docs/model.md.
"""
from __future__ import annotations

from .compare import compare, savings
from .counts import pass_counters
from .dataflows import BUILTIN as DATAFLOWS, Dataflow, parse_dataflow
from .profile import METRICS, Array, Result, profile
from .tables import EnergyTable, iso_area_size, load_area, load_energy

__all__ = ["pass_counters", "Dataflow", "DATAFLOWS", "parse_dataflow", "Array", "Result",
           "profile", "METRICS", "EnergyTable", "load_energy", "load_area", "iso_area_size",
           "compare", "savings"]
