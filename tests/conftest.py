import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the package is installed with `pip install -e .`; this keeps a plain checkout importable too
sys.path.insert(0, str(ROOT / "host"))
