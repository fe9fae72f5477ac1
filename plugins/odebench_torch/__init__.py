"""Built-in torch plugin: registers torch-backprop, torch-adjoint and torch-adjoint-seminorm.

Registration imports no torch; the backends are built on first use, so odebench lists
them (and explains what is missing) even where torch is not installed.
"""

from odebench.hookspecs import hookimpl
from odebench.specs import BackendSpec


def _loader(kind: str, name: str):
    def load():
        from . import backends

        if kind == "backprop":
            return backends.BackpropBackend(name)
        return backends.AdjointBackend(name, seminorm=(kind == "adjoint-seminorm"))

    return load


_DESCRIPTIONS = {
    "backprop": "reverse mode through the solver's operations (exact for the discretisation; memory grows with NFE)",
    "adjoint": "continuous adjoint (Chen et al. 2018): backward solve of [y, a, dL/dθ]; memory flat in NFE",
    "adjoint-seminorm": "adjoint whose backward error norm ignores the parameter cotangents (Kidger et al. 2021)",
}


@hookimpl
def odebench_register_backends(register):
    for kind, text in _DESCRIPTIONS.items():
        name = f"torch-{kind}"
        register(BackendSpec(name=name, framework="torch", method=kind, load=_loader(kind, name),
                             description=text, requires=("torch",)))
