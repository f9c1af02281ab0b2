"""The intergrad notebooks, for PYNQ's ``pynq get-notebooks`` (entry point group
``pynq.notebooks``) and for anyone else: :func:`notebooks_dir`.

An installed wheel carries the notebooks in this package's folder; an editable install
(``pip install -e .``) finds them in ``notebooks/`` of the source tree.  PYNQ delivers the
files of the folder :func:`deliver_notebooks` is handed, so both work on a board.
"""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE_NOTEBOOKS = HERE.parents[2] / "notebooks"


def notebooks_dir() -> Path:
    if any(HERE.glob("*.ipynb")):
        return HERE
    if any(SOURCE_NOTEBOOKS.glob("*.ipynb")):
        return SOURCE_NOTEBOOKS
    raise FileNotFoundError(f"no notebooks in {HERE} nor in {SOURCE_NOTEBOOKS}")


def notebooks() -> list[Path]:
    return sorted(notebooks_dir().glob("*.ipynb"))


def deliver_notebooks(device, src_path, dst_path, name, folder=False, overlays_lookup=True):
    """Called by ``pynq get-notebooks`` instead of its own copy (the PYNQ plugin hook):
    the same delivery, from :func:`notebooks_dir` (the source tree's for an editable
    install)."""
    import importlib

    _deliver = None
    for mod in ("pynq.utils", "pynqutils.setup_utils.deliver_notebooks", "pynqutils.setup_utils"):
        try:
            _deliver = getattr(importlib.import_module(mod), "deliver_notebooks", None)
        except ImportError:
            continue
        if callable(_deliver):
            break
    if not callable(_deliver):
        raise ImportError("pynq get-notebooks: neither pynq.utils nor pynqutils provides "
                          "deliver_notebooks")
    return _deliver(device, str(notebooks_dir()), dst_path, name, folder=folder,
                    overlays_lookup=overlays_lookup)
