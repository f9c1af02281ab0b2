"""Read and write SCALE-Sim topology CSV files.

Conv form (SCALE-Sim's ``-i conv``, the default)::

    Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,

GEMM form (``-i gemm``): ``Layer, M, N, K,`` for an (M x K) . (K x N) product.  Rows end with a
trailing comma (SCALE-Sim drops the last field).  SCALE-Sim has no padding: the IFMAP size is
the padded input, and SCALE-Sim computes the output size as ``ceil((IFMAP - Filter + Stride) /
Stride)`` (``scalesim/topology_utils.py``), which this reader uses by default
(``conv_arith="scalesim"``); ``conv_arith="exact"`` gives the convolution's own
``(IFMAP - Filter) // Stride + 1``.  The two differ when the stride does not divide
``IFMAP - Filter`` (SCALE-Sim then counts one more, partial, output row / column).
:func:`write_topology` emits an IFMAP size for which both rules agree.  It has no groups
either: a grouped convolution is written with its per-group channels and filters and the
layer name suffixed ``@gG``; this reader restores the groups from that suffix, while
SCALE-Sim itself simulates one group of it (documented in docs/model.md).  Host-side layers
(pooling, BN, activations) have no row: they are not array work.
"""
from __future__ import annotations

import re
from pathlib import Path

from .network import Layer, Network

CONV_HEADER = ("Layer name", "IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width",
               "Channels", "Num Filter", "Strides")
GEMM_HEADER = ("Layer", "M", "N", "K")
_GROUP = re.compile(r"@g(\d+)$")


class TopologyError(ValueError):
    """A malformed topology file; the message names the file and line."""


def _row(fields) -> str:
    return ", ".join(str(f) for f in fields) + ","


def write_topology(net: Network, path, form: str = "conv") -> Path:
    """Write the network's conv / fc layers as a SCALE-Sim topology (``form`` conv or gemm)."""
    if form not in ("conv", "gemm"):
        raise ValueError(f"form must be 'conv' or 'gemm', got {form!r}")
    path = Path(path)
    lines = [_row(CONV_HEADER if form == "conv" else GEMM_HEADER)]
    for l in net.gemm_layers:
        name = l.name.replace(",", "_") + (f"@g{l.groups}" if l.groups > 1 else "")
        if form == "gemm":
            lines.append(_row((name, l.P, l.M, l.N)))
            continue
        # padded input extent that gives exactly hout x wout with no padding
        hp = (l.hout - 1) * l.stride + l.kh
        wp = (l.wout - 1) * l.stride + l.kw
        lines.append(_row((name, hp, wp, l.kh, l.kw, l.cin // l.groups, l.cout // l.groups,
                           l.stride)))
    path.write_text("\n".join(lines) + "\n")
    return path


def _ints(fields, where, names):
    out = []
    for f, n in zip(fields, names):
        try:
            v = int(f.strip())
        except ValueError:
            raise TopologyError(f"{where}: {n} must be an integer, got {f.strip()!r}") from None
        if v < 1:
            raise TopologyError(f"{where}: {n} must be >= 1, got {v}")
        out.append(v)
    return out


CONV_ARITH = ("scalesim", "exact")


def out_size(i: int, f: int, s: int, conv_arith: str = "scalesim") -> int:
    """Output extent of a convolution of input ``i``, filter ``f``, stride ``s`` (no padding):
    SCALE-Sim's ``ceil((i - f + s) / s)`` or the exact ``(i - f) // s + 1``."""
    if conv_arith == "scalesim":
        return -(-(i - f + s) // s)
    if conv_arith == "exact":
        return (i - f) // s + 1
    raise ValueError(f"conv_arith must be one of {', '.join(CONV_ARITH)}, got {conv_arith!r}")


def read_topology(path, form: str | None = None, name: str | None = None,
                  conv_arith: str = "scalesim") -> Network:
    """Read a SCALE-Sim topology CSV; ``form`` conv / gemm, guessed from the header if None;
    ``conv_arith``: output-size rule of conv rows, ``"scalesim"`` (SCALE-Sim's
    ``ceil((I - F + S) / S)``, default) or ``"exact"`` (``(I - F) // S + 1``)."""
    if conv_arith not in CONV_ARITH:
        raise ValueError(f"conv_arith must be one of {', '.join(CONV_ARITH)}, "
                         f"got {conv_arith!r}")
    path = Path(path)
    text = path.read_text()
    lines = text.splitlines()
    if not lines:
        raise TopologyError(f"{path}: empty file")
    header = [h.strip() for h in lines[0].split(",") if h.strip()]
    if form is None:
        form = "gemm" if [h.upper() for h in header[1:4]] == ["M", "N", "K"] else "conv"
    layers = []
    for i, line in enumerate(lines[1:], start=2):
        if not line.replace(",", "").strip() or line.lstrip().startswith("#"):
            continue      # blank rows, also all-comma ones as in SCALE-Sim's own files
        where = f"{path}:{i}"
        fields = line.rstrip().rstrip(",").split(",")
        lname = fields[0].strip() or f"layer{i - 1}"
        m = _GROUP.search(lname)
        g = int(m.group(1)) if m else 1
        try:
            if form == "gemm":
                if len(fields) < 4:
                    raise TopologyError(f"{where}: expected 'Layer, M, N, K,' "
                                        f"(4 fields), got {len(fields)}: {line.strip()!r}")
                M_, N_, K_ = _ints(fields[1:4], where, ("M", "N", "K"))
                # M rows of a (K -> N) fully-connected product: P = M positions per sample
                layers.append(Layer(lname, "fc", K_ * g, M_, 1, N_ * g, M_, 1, groups=g))
            else:
                if len(fields) < 8:
                    raise TopologyError(f"{where}: expected 8 fields ({', '.join(CONV_HEADER)}),"
                                        f" got {len(fields)}: {line.strip()!r}")
                h, w, fh, fw, c, nf, s = _ints(fields[1:8], where, CONV_HEADER[1:])
                if fh > h or fw > w:
                    raise TopologyError(f"{where}: filter {fh}x{fw} larger than IFMAP {h}x{w}")
                ho, wo = out_size(h, fh, s, conv_arith), out_size(w, fw, s, conv_arith)
                layers.append(Layer(lname, "conv", c * g, h, w, nf * g, ho, wo, fh, fw, s, g))
        except TopologyError:
            raise
        except ValueError as e:
            raise TopologyError(f"{where}: {e}") from None
    if not layers:
        raise TopologyError(f"{path}: no layer rows after the header")
    return Network(name or path.stem, layers, source=f"SCALE-Sim topology {path.name} ({form}"
                   + (f", {conv_arith} output sizes)" if form == "conv" else ")"))
