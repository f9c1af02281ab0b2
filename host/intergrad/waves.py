"""Read a VCD waveform (as dumped by the simulated hardware with ``trace=``) and plot signals.

Small on purpose: scalar and vector signals, hierarchical names joined with '.', values as
Python ints (x/z read as 0, counted in ``Waves.unknown``).
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np


@dataclasses.dataclass
class Signal:
    name: str
    width: int
    times: list
    values: list

    def at(self, t: int) -> int:
        """Value at time t (the last change at or before t)."""
        i = np.searchsorted(np.asarray(self.times), t, side="right") - 1
        return int(self.values[i]) if i >= 0 else 0


class Waves(dict):
    """name -> Signal; ``timescale`` in seconds per VCD time unit."""

    timescale: float = 1e-12
    end: int = 0
    unknown: int = 0

    def find(self, pattern: str) -> list[str]:
        rx = re.compile(pattern)
        return sorted(n for n in self if rx.search(n))

    def clock_edges(self, clk: str = "top.clk") -> np.ndarray:
        s = self[clk]
        t = np.asarray(s.times)
        v = np.asarray(s.values)
        return t[v == 1]

    def sample(self, name: str, times) -> np.ndarray:
        s = self[name]
        idx = np.searchsorted(np.asarray(s.times), np.asarray(times), side="right") - 1
        vals = np.asarray(s.values, dtype=object)
        out = np.zeros(len(idx), dtype=object)
        ok = idx >= 0
        out[ok] = vals[idx[ok]]
        return out


_UNITS = {"s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9, "ps": 1e-12, "fs": 1e-15}


def read_vcd(path: str | Path, signals: list[str] | None = None) -> Waves:
    """Parse a VCD file; keep only ``signals`` (full names or regexes) if given."""
    waves = Waves()
    ids: dict[str, list[Signal]] = {}
    scope: list[str] = []
    keep = [re.compile(s) for s in signals] if signals else None
    t = 0
    with open(path) as f:
        text = f.read()
    tokens = iter(text.split())
    for tok in tokens:
        if tok == "$timescale":
            spec = []
            for x in tokens:
                if x == "$end":
                    break
                spec.append(x)
            m = re.match(r"(\d+)\s*(\w+)", "".join(spec))
            if m:
                waves.timescale = int(m.group(1)) * _UNITS[m.group(2)]
        elif tok == "$scope":
            next(tokens)
            scope.append(next(tokens))
            next(tokens)
        elif tok == "$upscope":
            scope.pop()
            next(tokens)
        elif tok == "$var":
            next(tokens)  # var kind (wire, reg, ...)
            width, code, name = int(next(tokens)), next(tokens), next(tokens)
            for x in tokens:
                if x == "$end":
                    break
            full = ".".join(scope + [name])
            if keep is None or any(k.fullmatch(full) or k.search(full) for k in keep):
                sig = Signal(full, width, [], [])
                waves[full] = sig
                ids.setdefault(code, []).append(sig)
        elif tok.startswith("$"):
            if tok in ("$dumpvars", "$dumpall", "$dumpon", "$dumpoff", "$end"):
                continue
            for x in tokens:
                if x == "$end":
                    break
        elif tok[0] == "#":
            t = int(tok[1:])
            waves.end = t
        elif tok[0] in "01xzXZ":
            _set(waves, ids.get(tok[1:]), t, tok[0])
        elif tok[0] in "bB":
            code = next(tokens)
            _set(waves, ids.get(code), t, tok[1:])
    return waves


def _set(waves: Waves, sigs, t: int, bits: str) -> None:
    if not sigs:
        return
    if any(c in "xzXZ" for c in bits):
        waves.unknown += 1
        bits = re.sub("[xzXZ]", "0", bits)
    v = int(bits, 2)
    for s in sigs:
        if s.times and s.times[-1] == t:
            s.values[-1] = v
        else:
            s.times.append(t)
            s.values.append(v)


def plot(waves: Waves, names: list[str], t0: int | None = None, t1: int | None = None,
         labels: dict | None = None, ax=None, cycle: int | None = None, signed: bool = True):
    """Stacked digital waveform of ``names`` between t0 and t1 (VCD time units).
    Vectors are drawn as buses with their values written in (two's-complement decimal when
    ``signed``, else hex)."""
    import matplotlib.pyplot as plt

    t0 = 0 if t0 is None else t0
    t1 = waves.end if t1 is None else t1
    if ax is None:
        _, ax = plt.subplots(figsize=(12, 0.5 * len(names) + 1))
    unit = cycle or 1
    for row, name in enumerate(names):
        s = waves[name]
        y = len(names) - 1 - row
        ts = [t0] + [t for t in s.times if t0 < t < t1] + [t1]
        vs = [s.at(t0)] + [v for t, v in zip(s.times, s.values) if t0 < t < t1]
        if s.width == 1:
            xs, ys = [], []
            for a, b, v in zip(ts[:-1], ts[1:], vs):
                xs += [a / unit, b / unit]
                ys += [y + 0.8 * v, y + 0.8 * v]
            ax.plot(xs, ys, color="tab:blue", lw=1.2)
        else:
            for a, b, v in zip(ts[:-1], ts[1:], vs):
                ax.fill_between([a / unit, b / unit], y + 0.1, y + 0.7, color="tab:green",
                                alpha=0.15, lw=0)
                ax.plot([a / unit, b / unit], [y + 0.1, y + 0.1], color="tab:green", lw=0.8)
                ax.plot([a / unit, b / unit], [y + 0.7, y + 0.7], color="tab:green", lw=0.8)
                if (b - a) / max(t1 - t0, 1) > 0.025:
                    sv = v - (1 << s.width) if signed and v >> (s.width - 1) else v
                    ax.text((a + b) / 2 / unit, y + 0.4, f"{sv}" if signed else f"{v:x}",
                            ha="center", va="center", fontsize=7)
        lab = (labels or {}).get(name, name.split(".")[-1])
        ax.text(t0 / unit, y + 0.4, lab + "  ", ha="right", va="center", fontsize=8)
    ax.set_yticks([])
    ax.set_xlim(t0 / unit, t1 / unit)
    ax.set_xlabel("clock cycles" if cycle else "time")
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    return ax
