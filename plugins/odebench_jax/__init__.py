"""Built-in JAX plugin: registers jax-backprop, jax-adjoint and jax-adjoint-seminorm.

Registration imports no jax; the backends are built on first use, so odebench lists them
(and explains what is missing) even where jax is not installed.
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
    "backprop": "reverse mode through the jitted solver (checkpointed scan; memory ~ max_steps x state)",
    "adjoint": "continuous adjoint as jax.custom_vjp: backward solve of [y, a, dL/dargs]; memory flat in NFE",
    "adjoint-seminorm": "adjoint whose backward error norm ignores the args cotangents (Kidger et al. 2021)",
}


@hookimpl
def odebench_register_backends(register):
    for kind, text in _DESCRIPTIONS.items():
        name = f"jax-{kind}"
        register(BackendSpec(name=name, framework="jax", method=kind, load=_loader(kind, name),
                             description=text, requires=("jax",)))
