"""Built-in torch plugin: the torch runtime and torch-backprop, torch-adjoint, torch-adjoint-seminorm.

Registration imports no torch; backends and runtime are built on first use, so odebench lists
them (and explains what is missing) even where torch is not installed.
"""

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
