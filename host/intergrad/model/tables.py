"""Energy and area tables (JSON data files users can swap) and iso-area array sizing."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
ENERGY_TABLES = {"eyeriss": DATA / "energy_eyeriss.json",
                 "horowitz45": DATA / "energy_horowitz45.json"}
DEFAULT_ENERGY = "eyeriss"
AREA_FILE = DATA / "area_yosys.json"
ENERGY_KEYS = ("mac", "reg", "buffer", "dram", "host_op")


@dataclasses.dataclass(frozen=True)
class EnergyTable:
    name: str
    unit: str
    word_bits: int
    mac: float
    reg: float
    buffer: float
    dram: float
    host_op: float
    source: str = ""


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} file {path} not found") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} file {path}: invalid JSON at line {e.lineno}: {e.msg}") from None


def load_energy(spec: str | Path | None = None) -> EnergyTable:
    """A built-in table name (``eyeriss``, ``horowitz45``) or a path to a JSON file shaped like
    ``data/energy_eyeriss.json`` (``costs.<key>.value`` for mac, reg, buffer, dram, host_op;
    costs per access of one ``word_bits`` word)."""
    spec = spec or DEFAULT_ENERGY
    path = ENERGY_TABLES.get(str(spec).lower(), Path(spec))
    if not Path(path).is_file():
        raise FileNotFoundError(f"energy table {spec!r} is neither a built-in "
                                f"({', '.join(ENERGY_TABLES)}) nor an existing file")
    d = _read_json(path, "energy table")
    costs = d.get("costs", {})
    missing = [k for k in ENERGY_KEYS if k not in costs]
    if missing:
        raise ValueError(f"energy table {path}: missing costs {missing} "
                         f"(need {', '.join(ENERGY_KEYS)})")
    vals = {}
    for k in ENERGY_KEYS:
        v = costs[k]["value"] if isinstance(costs[k], dict) else costs[k]
        if not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"energy table {path}: costs.{k} must be a number >= 0, got {v!r}")
        vals[k] = float(v)
    return EnergyTable(d.get("name", Path(path).stem), d.get("unit", "?"),
                       int(d.get("word_bits", 16)), source=d.get("source", ""), **vals)


def load_area(path: str | Path | None = None) -> dict[str, float]:
    """PE variant -> area (``pe.<variant>.area``) from ``data/area_yosys.json`` or a user file."""
    d = _read_json(path or AREA_FILE, "area table")
    try:
        return {k: float(v["area"]) for k, v in d["pe"].items()}
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"area table {path or AREA_FILE}: expected "
                         "{'pe': {'<variant>': {'area': number}}}") from None


def iso_area_size(rows: int, cols: int, ref_area: float, pe_area: float) -> tuple[int, int]:
    """Array size of PEs of area ``pe_area`` that fits the area of a rows x cols array of PEs of
    area ``ref_area``, keeping the aspect ratio as close as possible (never larger)."""
    n = rows * cols * ref_area / pe_area
    scale = math.sqrt(n / (rows * cols))
    best = (1, 1)
    for r in {max(1, math.floor(rows * scale)), max(1, math.ceil(rows * scale))}:
        c = max(1, math.floor(n / r + 1e-9))
        if r * c * pe_area <= rows * cols * ref_area * (1 + 1e-9) and r * c > best[0] * best[1]:
            best = (r, c)
    return best
