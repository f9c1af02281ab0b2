"""intergrad: InterGrad training on a configurable systolic array.

From the hardware up: :mod:`intergrad.spec` (single source of truth of the hardware
interface), :mod:`intergrad.core` (the job contract), :mod:`intergrad.device` (backends and
the one device factory), :mod:`intergrad.driver`, :mod:`intergrad.plan` (tiling),
:mod:`intergrad.scheduler` (the integer GEMM engine on the array), :mod:`intergrad.conv`
(convolution lowering), :mod:`intergrad.engine` (the GEMM-engine protocol, float and device
engines), :mod:`intergrad.layers` / :mod:`intergrad.nn` (training), :mod:`intergrad.model`
(analytical model), :mod:`intergrad.cli` (command line).  :mod:`intergrad.golden` is the
bit-exact reference model the tests compare against; the README's layout section has the
full list.
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
