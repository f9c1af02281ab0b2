"""Dataflows (designs): which array mode runs each training pass, and how a pass's GEMM is laid
onto the array in that mode.

A layer (per group) is a fully-connected product with ``Bt`` rows (batch x output positions),
``N`` inputs and ``M`` outputs: X (Bt x N), W (N x M), dY (Bt x M).  Passes:

=====  ================  ==================================  =====================================
pass   product            WS layout (rows x cols, stream T)    OS layout (rows x cols, stream T)
=====  ================  ==================================  =====================================
fwd    Y  = X W           S = W^T: M x N, T = Bt (TRANSPOSE)   acc Y: Bt x M, T = N
dx     dX = dY W^T        S = W:   N x M, T = Bt               acc dX: Bt x N, T = M
dw     dW = X^T dY        S = X^T: N x Bt, T = M (TRANSPOSE)   acc dW: N x M, T = Bt
ig     dX and dW          IG: S = W and acc dW: N x M, T = Bt (X left, dY top, once)
=====  ================  ==================================  =====================================

The WS/fwd, WS/dx, OS/dw and IG/ig layouts are exactly those of :mod:`intergrad.plan` (the
RTL scheduler).  WS reduces along the array columns: when the reduction is longer than C,
partial outputs of several column tiles are added off-array.
"""
from __future__ import annotations

import dataclasses

from ..core import MODES

PASS_ORDER = ("fwd", "dx", "dw", "ig")
MODE_NAMES = {"ws": "WS", "os": "OS", "ig": "IG"}


# (pass, mode) -> which of (Bt, N, M) are rows, cols, stream; weight beats carry columns
_LAYOUTS = {
    ("fwd", "WS"): ("M", "N", "Bt", True),
    ("fwd", "OS"): ("Bt", "M", "N", False),
    ("dx", "WS"): ("N", "M", "Bt", False),
    ("dx", "OS"): ("Bt", "N", "M", False),
    ("dw", "OS"): ("N", "M", "Bt", False),
    ("dw", "WS"): ("N", "Bt", "M", True),
    ("ig", "IG"): ("N", "M", "Bt", False),
}


# Every operand-to-array assignment the hardware supports, per (pass, mode): (name, rows,
# cols, stream, weight beats carry columns).  WS: the stationary operand's rows are the
# outputs and its columns the reduction, the other operand streams; either input of the
# product can be the stationary one, and its tiles load by rows or (TRANSPOSE) by columns.
# OS: the output (or its transpose) stays in the PEs, the reduction streams.  IG: W and dW
# stationary, N x M (the dX partial sums must flow along the rows), loaded either way.
# The first entry of each list is the layout of intergrad.plan (the RTL scheduler's).
CANDIDATES = {
    ("fwd", "WS"): (("W^T stationary", "M", "N", "Bt", True),
                    ("W^T stationary, row beats", "M", "N", "Bt", False),
                    ("X stationary", "Bt", "N", "M", False),
                    ("X stationary, column beats", "Bt", "N", "M", True)),
    ("dx", "WS"): (("W stationary", "N", "M", "Bt", False),
                   ("W stationary, column beats", "N", "M", "Bt", True),
                   ("dY stationary", "Bt", "M", "N", False),
                   ("dY stationary, column beats", "Bt", "M", "N", True)),
    ("dw", "WS"): (("X^T stationary", "N", "Bt", "M", True),
                   ("X^T stationary, row beats", "N", "Bt", "M", False),
                   ("dY^T stationary", "M", "Bt", "N", True),
                   ("dY^T stationary, row beats", "M", "Bt", "N", False)),
    ("fwd", "OS"): (("Y in PEs", "Bt", "M", "N", False), ("Y^T in PEs", "M", "Bt", "N", False)),
    ("dx", "OS"): (("dX in PEs", "Bt", "N", "M", False),
                   ("dX^T in PEs", "N", "Bt", "M", False)),
    ("dw", "OS"): (("dW in PEs", "N", "M", "Bt", False),
                   ("dW^T in PEs", "M", "N", "Bt", False)),
    ("ig", "IG"): (("W, dW in PEs", "N", "M", "Bt", False),
                   ("W, dW in PEs, column beats", "N", "M", "Bt", True)),
}
MAPPINGS = ("rtl", "best")


def candidates(pass_: str, mode: str, Bt, N, M):
    """[(name, rows_ext, cols_ext, T, wb_cols)] of every supported assignment of a pass in a
    mode; the first one is the RTL scheduler's (:func:`layout`)."""
    if (pass_, mode) not in CANDIDATES:
        layout(pass_, mode, Bt, N, M)  # raises the usual error
    dims = {"Bt": Bt, "N": N, "M": M}
    return [(n, dims[r], dims[c], dims[t], w) for n, r, c, t, w in CANDIDATES[(pass_, mode)]]


def layout(pass_: str, mode: str, Bt, N, M):
    """(rows_ext, cols_ext, T, wb_cols) of a pass in a mode (vectorized over arrays)."""
    try:
        r, c, t, wbc = _LAYOUTS[(pass_, mode)]
    except KeyError:
        raise ValueError(f"pass {pass_!r} cannot run in mode {mode!r} "
                         "(fwd/dx/dw: WS or OS; ig: IG)") from None
    dims = {"Bt": Bt, "N": N, "M": M}
    return dims[r], dims[c], dims[t], wbc


@dataclasses.dataclass(frozen=True)
class Dataflow:
    """A design: a mode per pass, the PE variant it needs (area table key) and its PE."""

    name: str
    passes: tuple  # ((pass, mode), ...) in execution order
    pe: str        # key in the area table
    dual_mac: int = 1
    mults_per_pe: int = 1
    description: str = ""

    def __post_init__(self):
        ps = [p for p, _ in self.passes]
        if "fwd" not in ps:
            raise ValueError(f"dataflow {self.name}: no forward pass")
        has_ig = "ig" in ps
        if has_ig and ({"dx", "dw"} & set(ps)):
            raise ValueError(f"dataflow {self.name}: ig replaces dx and dw")
        if not has_ig and not {"dx", "dw"} <= set(ps):
            raise ValueError(f"dataflow {self.name}: needs dx and dw passes, or ig")
        for p, m in self.passes:
            layout(p, m, 1, 1, 1)  # raises on an impossible pair

    @property
    def modes(self) -> dict[str, str]:
        return dict(self.passes)


BUILTIN = {
    "ws": Dataflow("ws", (("fwd", "WS"), ("dx", "WS"), ("dw", "WS")), "ws",
                   description="weight-stationary array for all passes (dW with X^T stationary)"),
    "os": Dataflow("os", (("fwd", "OS"), ("dx", "OS"), ("dw", "OS")), "os",
                   description="output-stationary array for all passes"),
    "wsos": Dataflow("wsos", (("fwd", "WS"), ("dx", "WS"), ("dw", "OS")), "ig_single",
                     description="configurable WS/OS array, each pass in its natural dataflow, "
                                 "not interleaved (the RTL 'baseline' schedule)"),
    "intergrad": Dataflow("intergrad", (("fwd", "WS"), ("ig", "IG")), "ig_dual", 1, 2,
                          "InterGrad, dual-multiplier PE (the RTL 'intergrad' schedule, "
                          "DUAL_MAC=1)"),
    "intergrad1": Dataflow("intergrad1", (("fwd", "WS"), ("ig", "IG")), "ig_single", 0, 1,
                           "InterGrad, one time-shared multiplier per PE (DUAL_MAC=0)"),
}
ALIASES = {"ig": "intergrad", "ig_dual": "intergrad", "intergrad-dual": "intergrad",
           "ig1": "intergrad1", "ig_single": "intergrad1", "intergrad-single": "intergrad1",
           "baseline": "wsos", "ws+os": "wsos"}


def parse_dataflow(text: str) -> Dataflow:
    """A built-in name, or a per-pass mix such as ``fwd=os/dx=ws/dw=os`` or
    ``fwd=ws/ig=ig1`` (``ig`` = dual-multiplier InterGrad, ``ig1`` = single)."""
    t = text.strip().lower()
    t = ALIASES.get(t, t)
    if t in BUILTIN:
        return BUILTIN[t]
    if "=" not in t:
        raise ValueError(f"unknown dataflow {text!r}; known: {', '.join(BUILTIN)} or a mix "
                         f"like fwd=os/dx=ws/dw=os")
    passes, dual = [], 1
    for part in t.split("/"):
        p, _, m = part.partition("=")
        p, m = p.strip(), m.strip()
        if p not in PASS_ORDER:
            raise ValueError(f"dataflow {text!r}: unknown pass {p!r}; passes: fwd, dx, dw, ig")
        if m == "ig1":
            m, dual = "ig", 0
        if m not in MODE_NAMES:
            raise ValueError(f"dataflow {text!r}: unknown mode {m!r}; modes: ws, os, ig, ig1")
        passes.append((p, MODE_NAMES[m]))
    passes.sort(key=lambda pm: PASS_ORDER.index(pm[0]))
    kinds = [MODES[m] for _, m in passes]
    if any(k.macs_per_pe > 1 for k in kinds):          # two MACs per step: the InterGrad PE
        pe, mults = ("ig_dual", 2) if dual else ("ig_single", 1)
    elif not any(k.accumulates for k in kinds):        # weight-stationary modes only
        pe, mults = "ws", 1
    elif not any(k.uses_weights for k in kinds):       # output-stationary modes only
        pe, mults = "os", 1
    else:                                              # both kinds: the single-MAC IG PE
        pe, mults = "ig_single", 1
    return Dataflow(t, tuple(passes), pe, dual, mults, f"per-pass mix {t}")
