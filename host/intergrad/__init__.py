"""intergrad: InterGrad training on a configurable systolic array.

Layers: :mod:`intergrad.spec` (single source of truth of the hardware interface),
:mod:`intergrad.golden` (bit-exact numpy model), :mod:`intergrad.rtl` (RTL sources and
toolchain discovery).
"""
__version__ = "0.1.0"
__all__ = ["ArrayConfig", "__version__"]


def __getattr__(name):
    # ArrayConfig is imported on first use, not with the package: `python -m intergrad.spec`
    # then runs spec.py without runpy's "found in sys.modules" RuntimeWarning
    if name == "ArrayConfig":
        from .spec import ArrayConfig
        return ArrayConfig
    raise AttributeError(f"module 'intergrad' has no attribute {name!r}")
