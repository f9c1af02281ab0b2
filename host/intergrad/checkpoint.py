"""Training checkpoints: the float master weights, the optimizer state (SGD velocity, step
count, learning rate), the data-order and stochastic-rounding generator states, the epoch
reached, and what they belong to (network name and configuration, input shape, precision).

One ``.npz`` file (numpy's zip of arrays, no pickle): arrays ``param_<i>`` and
``velocity_<i>``, and ``meta``, a JSON string.  :func:`load` refuses, with one line saying
what differs, a file that is not a checkpoint or belongs to another network or precision.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FORMAT = "intergrad-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """Not a checkpoint, or a checkpoint of another network or precision."""


def save(path, net, opt, *, epoch: int, precision: str, rng=None, sr_rng=None,
         extra: dict | None = None) -> None:
    meta = {"format": FORMAT, "version": VERSION, "net": net.name, "config": net.config,
            "input_shape": list(net.input_shape),
            "param_shapes": [list(p.shape) for p in net.params()],
            "precision": precision, "epoch": int(epoch),
            "optimizer": {k: v for k, v in opt.state_dict().items() if k != "velocity"},
            "rng": rng.bit_generator.state if rng is not None else None,
            "sr_rng": sr_rng.bit_generator.state if sr_rng is not None else None,
            "extra": extra or {}}
    arrays = {f"param_{i}": p for i, p in enumerate(net.params())}
    arrays.update({f"velocity_{i}": v for i, v in enumerate(opt.state_dict()["velocity"])})
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
    tmp.replace(path)


def read(path) -> tuple[dict, list[np.ndarray], list[np.ndarray]]:
    """(meta, params, velocity) of a checkpoint file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != FORMAT:
                raise CheckpointError(f"{path} is not an intergrad checkpoint")
            n = len(meta["param_shapes"])
            params = [z[f"param_{i}"] for i in range(n)]
            vel = [z[k] for k in sorted((k for k in z.files if k.startswith("velocity_")),
                                        key=lambda k: int(k.split("_")[1]))]
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is not an intergrad checkpoint ({type(e).__name__})") from None
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {meta.get('version')}, this "
                              f"intergrad reads version {VERSION}")
    return meta, params, vel


def check_compatible(meta: dict, path, *, net=None, precision: str | None = None) -> None:
    """Raise CheckpointError naming the difference."""
    if net is not None:
        want = (net.name, net.config, list(net.input_shape))
        got = (meta["net"], meta["config"], meta["input_shape"])
        if want != got:
            raise CheckpointError(
                f"{path} is a checkpoint of network {got[0]} {got[1]} on {tuple(got[2])} "
                f"inputs, not of {want[0]} {want[1]} on {tuple(want[2])} inputs")
        shapes = [list(p.shape) for p in net.params()]
        if shapes != meta["param_shapes"]:
            raise CheckpointError(f"{path}: parameter shapes {meta['param_shapes']} do not "
                                  f"match the network's {shapes}")
    if precision is not None and meta["precision"] != precision:
        raise CheckpointError(f"{path} was trained at precision {meta['precision']}, not "
                              f"{precision} (use --bits {meta['precision'].lstrip('int')})")


def restore(path, net, opt=None, *, precision: str | None = None, rng=None, sr_rng=None) -> dict:
    """Load a checkpoint into ``net`` (and ``opt``, ``rng``, ``sr_rng``); returns its meta."""
    meta, params, vel = read(path)
    check_compatible(meta, path, net=net, precision=precision)
    net.set_params(params)
    if opt is not None:
        st = dict(meta["optimizer"], velocity=vel)
        opt.load_state_dict(st)
    if rng is not None and meta.get("rng"):
        rng.bit_generator.state = meta["rng"]
    if sr_rng is not None and meta.get("sr_rng"):
        sr_rng.bit_generator.state = meta["sr_rng"]
    return meta
