"""Built-in torch plugin: the torch runtime and torch-backprop, torch-adjoint, torch-adjoint-seminorm.

Registration imports no torch; backends and runtime are built on first use, so odebench lists
them (and explains what is missing) even where torch is not installed.

Public names for other plugins (a peer library wrapped as a backend, a task's torch model),
imported from here and loaded on first use, so importing this package still imports no torch:

- ``FlatState``: a tensor or tuple of tensors as one flat tensor and back (checks y0);
- ``times_of(t)``: the output times as floats, checked (1-D, finite, strictly monotonic);
- ``check_finite(y)``: NonFiniteStateError when y0 holds nan or inf;
- ``TorchRuntime``: the torch runtime (devices, dtypes, synchronised clock, memory).

Everything else in the package's modules may change without notice.
"""

import importlib

from odebench.hookspecs import hookimpl
from odebench.specs import RuntimeSpec, gradient_method_specs, lazy

_DESCRIPTIONS = {
    "backprop": "reverse mode through the solver's operations (exact for the discretisation; memory grows with NFE)",
    "adjoint": "continuous adjoint (Chen et al. 2018): backward solve of [y, a, dL/dθ]; memory flat in NFE",
    "adjoint-seminorm": "adjoint whose backward error norm ignores the parameter cotangents (Kidger et al. 2021)",
}


@hookimpl
def odebench_register_backends(register):
    for spec in gradient_method_specs("torch", _DESCRIPTIONS, lazy("odebench_torch.backends:build_backend")):
        register(spec)


@hookimpl
def odebench_register_runtimes(register):
    register(RuntimeSpec("torch", load=lazy("odebench_torch.runtime:TorchRuntime"), requires=("torch",),
                         description="eager PyTorch: devices, synchronised clock, allocator memory, train step"))


# public name -> the module that defines it, imported on first use (see the module docstring).  No
# __dir__ lists them: pluggy reads every name dir() gives when it registers the plugin, and that
# would import torch.
PUBLIC = {"FlatState": "state", "times_of": "state", "check_finite": "state", "TorchRuntime": "runtime"}
__all__ = sorted(PUBLIC)


def __getattr__(name: str):
    if name not in PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{PUBLIC[name]}"), name)
