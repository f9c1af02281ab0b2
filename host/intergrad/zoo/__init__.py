"""Network zoo (layer-exact CNN definitions) and SCALE-Sim topology CSV read / write."""
from __future__ import annotations

from pathlib import Path

from .network import GEMM_KINDS, HOST_KINDS, Layer, Network
from .nets import NETWORKS, Builder
from .scalesim_csv import CONV_ARITH, out_size, read_topology, write_topology

__all__ = ["Layer", "Network", "Builder", "NETWORKS", "get", "load", "names",
           "read_topology", "write_topology", "GEMM_KINDS", "HOST_KINDS"]

_ALIASES = {"inceptionv4": "inception_v4", "inception-v4": "inception_v4",
            "densenet-264": "densenet264", "densenet_264": "densenet264",
            "resnet-50": "resnet50", "resnet_50": "resnet50", "vgg-16": "vgg16",
            "vgg_16": "vgg16", "mobilenetv2": "mobilenet_v2", "mobilenet-v2": "mobilenet_v2",
            "lenet": "lenet5", "lenet-5": "lenet5", "digits": "digits_cnn"}


def names() -> list[str]:
    return list(NETWORKS)


def get(name: str) -> Network:
    """A zoo network by name (case-insensitive; a few spellings accepted)."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in NETWORKS:
        raise KeyError(f"unknown network {name!r}; known: {', '.join(NETWORKS)} "
                       f"(or a SCALE-Sim topology .csv file)")
    return NETWORKS[key]()


def load(spec: str, conv_arith: str = "scalesim") -> Network:
    """A zoo name, or a path to a SCALE-Sim topology CSV (conv or GEMM form; ``conv_arith``:
    see :func:`read_topology`)."""
    p = Path(spec)
    if spec.lower().endswith(".csv") or p.is_file():
        if not p.is_file():
            raise FileNotFoundError(f"topology file {spec} not found")
        return read_topology(p, conv_arith=conv_arith)
    return get(spec)
