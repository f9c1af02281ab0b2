"""Where the board's overlay (``intergrad.bit`` + ``intergrad.hwh``) is found.

PYNQ loads an overlay from a ``.bit`` file with its ``.hwh`` (hardware handoff) of the same
name beside it.  :func:`find_overlay` looks, in this order, at:

1. the path given (``--bitfile``, ``open_device("pynq", bitfile=...)``): a ``.bit`` file, or a
   folder holding ``intergrad.bit``;
2. ``$INTERGRAD_OVERLAY`` (same forms);
3. this package's folder (``intergrad/overlays/`` of the installed package: a release ships
   the two files here as package data, or ``.link`` files that resolve to them);
4. ``overlay/`` of the source tree (where ``make`` in ``overlay/`` writes them).

**The ``.link`` convention (releases).**  A release does not put the bitstream in the wheel;
it ships ``intergrad.bit.link`` and ``intergrad.hwh.link`` in ``intergrad/overlays/``: JSON,
either one entry for every board, ``{"url": "https://.../intergrad.bit", "md5sum": "..."}``,
or one per PYNQ device name, ``{"<device>": {"url": ..., "md5sum": ...}, ...}``.  On the
board, PYNQ's tools resolve them (``pynq get-notebooks intergrad`` for the notebooks, or
``pynqutils``' ``download_overlays`` on this folder), which writes ``intergrad.bit`` /
``intergrad.hwh`` next to the links; until then :func:`find_overlay` names the link and what
to run.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

NAME = "intergrad"
HERE = Path(__file__).resolve().parent
SOURCE_OVERLAY = HERE.parents[2] / "overlay"


class OverlayNotFound(FileNotFoundError):
    """No usable intergrad.bit + intergrad.hwh; the message says where it looked."""


def _candidate(path: Path) -> Path:
    return path / f"{NAME}.bit" if path.is_dir() or not path.suffix else path


def search_path(bitfile: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """(where, .bit path) in lookup order."""
    out = []
    if bitfile is not None:
        out.append(("given path", _candidate(Path(bitfile))))
    env = os.environ.get("INTERGRAD_OVERLAY")
    if env:
        out.append(("$INTERGRAD_OVERLAY", _candidate(Path(env))))
    out.append(("installed package", HERE / f"{NAME}.bit"))
    out.append(("source tree", SOURCE_OVERLAY / f"{NAME}.bit"))
    return out


def link_target(link: Path) -> str:
    """The URL a ``.link`` file points to (the global form, or the first device's)."""
    d = json.loads(link.read_text())
    if "url" in d:
        return d["url"]
    return ", ".join(f"{dev}: {v.get('url')}" for dev, v in d.items())


def find_overlay(bitfile: str | os.PathLike | None = None) -> Path:
    """The ``.bit`` to load (its ``.hwh`` is beside it), or :class:`OverlayNotFound`.

    A path given explicitly (or in ``$INTERGRAD_OVERLAY``) must be usable: it is not
    silently skipped for a later location."""
    looked = []
    for where, bit in search_path(bitfile):
        hwh = bit.with_suffix(".hwh")
        if bit.is_file() and hwh.is_file():
            return bit
        links = [p for p in (bit.with_name(bit.name + ".link"), hwh.with_name(hwh.name + ".link"))
                 if p.is_file() and not p.with_suffix("").is_file()]
        if links:
            raise OverlayNotFound(
                f"{links[0]} is not resolved yet ({link_target(links[0])}): on the board run "
                f"'pynq get-notebooks intergrad' or pynqutils' download_overlays on "
                f"{links[0].parent}, or download the file there")
        missing = bit if not bit.is_file() else hwh
        if where in ("given path", "$INTERGRAD_OVERLAY"):
            raise OverlayNotFound(f"overlay from the {where}: {missing} not found (a .bit "
                                  f"needs its .hwh of the same name beside it)")
        looked.append(f"{where} {bit.parent}")
    raise OverlayNotFound(
        f"no {NAME}.bit + {NAME}.hwh found (looked in: {'; '.join(looked)}); build them with "
        f"'make' in overlay/ (Vivado), or pass --bitfile / set INTERGRAD_OVERLAY")
