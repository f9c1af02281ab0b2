"""Network description used by the analytical model: a flat list of layers.

GEMM layers (``conv``, ``fc``) run on the array; ``pool``, ``bn``, ``act``, ``add`` are
elementwise / window operations counted on the host side.  A convolution is a GEMM after
im2col: per sample ``P = H_out * W_out`` rows, ``N = C_in / groups * k_h * k_w`` reduction,
``M = C_out / groups`` outputs, ``groups`` independent GEMMs.
"""
from __future__ import annotations

import dataclasses

import numpy as np

GEMM_KINDS = ("conv", "fc")
HOST_KINDS = ("pool", "avgpool", "bn", "act", "add")
KINDS = GEMM_KINDS + HOST_KINDS

#: host-side operations per output element (forward, backward) of each host layer kind.
#: bn: training batch norm (mean, variance, normalise, scale+shift forward; the usual
#: three reductions and elementwise terms backward); act: ReLU / ReLU6 compare-select;
#: pool: one compare (max) or add (avg) per window element forward, one scatter per output
#: element (max) or per window element (avg) backward; add: residual sum / gradient copy.
HOST_OPS_PER_ELEM = {"bn": (5, 8), "act": (1, 1), "add": (1, 1)}


@dataclasses.dataclass(frozen=True)
class Layer:
    name: str
    kind: str
    cin: int
    hin: int
    win: int
    cout: int
    hout: int
    wout: int
    kh: int = 1
    kw: int = 1
    stride: int = 1
    groups: int = 1
    bias: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"layer {self.name!r}: unknown kind {self.kind!r}; known: "
                             f"{', '.join(KINDS)}")
        for f in ("cin", "hin", "win", "cout", "hout", "wout", "kh", "kw", "stride", "groups"):
            v = getattr(self, f)
            if int(v) != v or v < 1:
                raise ValueError(f"layer {self.name!r}: {f} must be a positive integer, got {v!r}")
        if self.kind in GEMM_KINDS and (self.cin % self.groups or self.cout % self.groups):
            raise ValueError(f"layer {self.name!r}: channels {self.cin}->{self.cout} not "
                             f"divisible by groups={self.groups}")

    @property
    def is_gemm(self) -> bool:
        return self.kind in GEMM_KINDS

    @property
    def P(self) -> int:
        return self.hout * self.wout

    @property
    def N(self) -> int:
        return self.cin // self.groups * self.kh * self.kw

    @property
    def M(self) -> int:
        return self.cout // self.groups

    @property
    def in_elems(self) -> int:
        return self.cin * self.hin * self.win

    @property
    def out_elems(self) -> int:
        return self.cout * self.hout * self.wout

    @property
    def weights(self) -> int:
        return self.groups * self.N * self.M if self.is_gemm else 0

    @property
    def params(self) -> int:
        if self.is_gemm:
            return self.weights + (self.cout if self.bias else 0)
        if self.kind == "bn":
            return 2 * self.cout
        return 0

    @property
    def macs(self) -> int:
        """Forward multiply-accumulates per sample."""
        return self.P * self.groups * self.N * self.M if self.is_gemm else 0

    def host_ops(self) -> tuple[int, int]:
        """(forward, backward) host operations per sample."""
        if self.kind in ("pool", "avgpool"):
            win = self.kh * self.kw
            return self.out_elems * win, self.out_elems * (win if self.kind == "avgpool" else 1)
        f, b = HOST_OPS_PER_ELEM.get(self.kind, (0, 0))
        return self.out_elems * f, self.out_elems * b


@dataclasses.dataclass
class Network:
    name: str
    layers: list[Layer]
    input_shape: tuple[int, int, int] = (0, 0, 0)
    source: str = ""

    def __post_init__(self):
        if not any(l.is_gemm for l in self.layers):
            raise ValueError(f"network {self.name!r} has no conv/fc layer")
        self._arrays = None
        self._host = None
        self._gemm = None

    @property
    def gemm_layers(self) -> list[Layer]:
        if self._gemm is None or len(self._gemm[0]) != len(self.layers):
            self._gemm = (list(self.layers), [l for l in self.layers if l.is_gemm])
        return list(self._gemm[1])

    @property
    def params(self) -> int:
        return sum(l.params for l in self.layers)

    @property
    def macs(self) -> int:
        return sum(l.macs for l in self.layers)

    def arrays(self) -> dict[str, np.ndarray]:
        """Per-GEMM-layer int64 arrays: P, N, M, G, in_elems, out_elems, weights."""
        if self._arrays is None:
            g = self.gemm_layers
            col = lambda f: np.fromiter((f(l) for l in g), dtype=np.int64, count=len(g))
            self._arrays = {
                "P": col(lambda l: l.P), "N": col(lambda l: l.N), "M": col(lambda l: l.M),
                "G": col(lambda l: l.groups), "in_elems": col(lambda l: l.in_elems),
                "out_elems": col(lambda l: l.out_elems), "weights": col(lambda l: l.weights),
                "bias": col(lambda l: l.cout if l.bias else 0),
            }
        return self._arrays

    def host_totals(self) -> dict[str, int]:
        """Per-sample host-side work: ops and elements read / written, forward and backward
        (computed once per network)."""
        if self._host is None:
            self._host = self._host_totals()
        return dict(self._host)

    def _host_totals(self) -> dict[str, int]:
        fo = bo = rd = wr = 0
        for l in self.layers:
            if l.is_gemm:
                continue
            f, b = l.host_ops()
            fo += f
            bo += b
            n_in = l.in_elems * (2 if l.kind == "add" else 1)
            # forward: read inputs, write outputs; backward: read dY (+ saved input), write dX
            rd += n_in + l.out_elems + n_in
            wr += l.out_elems + l.in_elems * (2 if l.kind == "add" else 1)
        return {"fwd_ops": fo, "bwd_ops": bo, "reads": rd, "writes": wr}

    def summary(self) -> str:
        return (f"{self.name}: {len(self.layers)} layers ({len(self.gemm_layers)} conv/fc), "
                f"{self.params / 1e6:.3f} M params, {self.macs / 1e9:.4f} GMAC/sample")
