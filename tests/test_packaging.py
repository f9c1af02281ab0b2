"""Packaging: the metadata an installed intergrad carries (version, PYNQ's notebooks and
overlays entry points, the notebooks extra), the notebooks in a built package, and where
the board's overlay is looked up (intergrad.overlays)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib.metadata import Distribution
from pathlib import Path

import pytest

import intergrad
from intergrad import notebooks as nb_pkg
from intergrad import overlays

ROOT = Path(__file__).resolve().parents[1]
SOURCE_NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))


def _source_copy(src: Path) -> Path:
    """The files a release is built from, copied to ``src``."""
    src.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md", "MANIFEST.in"):
        shutil.copy(ROOT / name, src / name)
    for d in ("host", "hls_verilog", "notebooks"):
        shutil.copytree(ROOT / d, src / d, ignore=shutil.ignore_patterns(
            "__pycache__", "*.egg-info"))
    return src


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A copy of the source tree, its package metadata (setuptools' egg_info, what an
    install records) and its built package (build_py, what a wheel holds), made with the
    setuptools already installed: no network, nothing written into the checkout."""
    t = tmp_path_factory.mktemp("pkg")
    src = _source_copy(t / "src")
    (t / "meta").mkdir()
    for cmd in (["egg_info", "--egg-base", str(t / "meta")],
                ["build_py", "--build-lib", str(t / "lib")]):
        r = subprocess.run([sys.executable, "setup.py", "-q", *cmd], cwd=src,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    return {"meta": Distribution.at(t / "meta" / "intergrad.egg-info"), "lib": t / "lib"}


def test_metadata_version_and_pynq_entry_points(built):
    dist = built["meta"]
    assert dist.version == intergrad.__version__
    eps = {(e.group, e.name): e.value for e in dist.entry_points}
    assert eps[("console_scripts", "intergrad")] == "intergrad.cli:main"
    assert eps[("pynq.notebooks", "intergrad")] == "intergrad.notebooks"
    assert eps[("pynq.overlays", "intergrad")] == "intergrad.overlays"
    assert "notebooks" in dist.metadata.get_all("Provides-Extra")
    assert any(r.startswith("jupyterlab") and 'extra == "notebooks"' in r
               for r in dist.requires), dist.requires


def test_built_package_carries_the_notebooks(built):
    lib = built["lib"]
    assert sorted(p.name for p in (lib / "intergrad" / "notebooks").glob("*.ipynb")) \
        == SOURCE_NOTEBOOKS
    # the entry point's module, imported from the built package alone (-S: no site-packages,
    # so not the editable install), finds them in its own folder
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import intergrad.notebooks as m; "
            "print(m.notebooks_dir()); print(len(m.notebooks()))")
    r = subprocess.run([sys.executable, "-S", "-c", code, str(lib)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    where, n = r.stdout.split()
    assert Path(where) == lib / "intergrad" / "notebooks" and int(n) == len(SOURCE_NOTEBOOKS)


def test_sdist_builds_a_package_with_the_rtl(tmp_path):
    """An sdist (what `pip install` builds a wheel from when there is no wheel) carries the
    RTL, the notebooks and the harness, so the package built from it has them all."""
    src = _source_copy(tmp_path / "src")
    r = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path / "d")],
                       cwd=src, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (tarball,) = (tmp_path / "d").glob("intergrad-*.tar.gz")
    shutil.unpack_archive(tarball, tmp_path / "x")
    (unpacked,) = (tmp_path / "x").iterdir()
    r = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib",
                        str(tmp_path / "lib")], cwd=unpacked, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    pkg = tmp_path / "lib" / "intergrad"
    rtl = sorted(p.name for p in (ROOT / "hls_verilog").iterdir() if p.suffix in (".v", ".vh"))
    assert sorted(p.name for p in (pkg / "_rtl").iterdir()) == rtl
    assert sorted(p.name for p in (pkg / "notebooks").glob("*.ipynb")) == SOURCE_NOTEBOOKS
    for f in ("device/harness.cpp", "device/verilated_fast.h"):
        assert (pkg / f).is_file(), f


def test_notebooks_of_a_source_install():
    assert nb_pkg.notebooks_dir() == ROOT / "notebooks"
    assert [p.name for p in nb_pkg.notebooks()] == SOURCE_NOTEBOOKS


# ---------------------------------------------------------------- overlay lookup

@pytest.fixture
def no_overlay(tmp_path, monkeypatch):
    """Lookup with empty package and source-tree folders."""
    monkeypatch.setattr(overlays, "HERE", tmp_path / "pkg")
    monkeypatch.setattr(overlays, "SOURCE_OVERLAY", tmp_path / "src")
    monkeypatch.delenv("INTERGRAD_OVERLAY", raising=False)
    for d in ("pkg", "src"):
        (tmp_path / d).mkdir()
    return tmp_path


def _pair(folder: Path, name="intergrad"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.bit").write_bytes(b"bit")
    (folder / f"{name}.hwh").write_text("<hwh/>")
    return folder / f"{name}.bit"


def test_overlay_lookup_order(no_overlay, monkeypatch):
    t = no_overlay
    with pytest.raises(overlays.OverlayNotFound, match="installed package.*source tree"):
        overlays.find_overlay()
    src = _pair(t / "src")
    assert overlays.find_overlay() == src
    pkg = _pair(t / "pkg")
    assert overlays.find_overlay() == pkg                      # installed before source tree
    env = _pair(t / "env")
    monkeypatch.setenv("INTERGRAD_OVERLAY", str(t / "env"))    # a folder
    assert overlays.find_overlay() == env
    given = _pair(t / "given", "mine")
    assert overlays.find_overlay(given) == given               # a .bit file
    assert overlays.find_overlay(t / "given" / "mine.bit") == given


def test_overlay_given_path_must_be_complete(no_overlay):
    t = no_overlay
    _pair(t / "src")
    (t / "half").mkdir()
    (t / "half" / "intergrad.bit").write_bytes(b"bit")
    with pytest.raises(overlays.OverlayNotFound, match=r"intergrad\.hwh not found"):
        overlays.find_overlay(t / "half")                      # not silently the source tree's


def test_overlay_unresolved_link_says_what_to_run(no_overlay):
    t = no_overlay
    url = "https://example.org/intergrad-0.1.0/intergrad.bit"
    (t / "pkg" / "intergrad.bit.link").write_text(json.dumps({"url": url, "md5sum": "0" * 32}))
    (t / "pkg" / "intergrad.hwh.link").write_text(json.dumps({"url": url[:-3] + "hwh",
                                                              "md5sum": "0" * 32}))
    with pytest.raises(overlays.OverlayNotFound) as e:
        overlays.find_overlay()
    assert "intergrad.bit.link" in str(e.value) and url in str(e.value)
    assert "pynq get-notebooks" in str(e.value)
    _pair(t / "pkg")                                           # resolved: the files are there
    assert overlays.find_overlay() == t / "pkg" / "intergrad.bit"
