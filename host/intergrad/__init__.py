"""intergrad: InterGrad training on a configurable systolic array.

Layers: :mod:`intergrad.spec` (single source of truth of the hardware interface),
:mod:`intergrad.golden` (bit-exact numpy model), :mod:`intergrad.rtl` (RTL sources and
toolchain discovery).
"""
from .spec import ArrayConfig

__version__ = "0.1.0"
__all__ = ["ArrayConfig", "__version__"]
