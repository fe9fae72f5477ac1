"""Built-in JAX plugin: the JAX runtime and jax-backprop, jax-adjoint, jax-adjoint-seminorm.

Registration imports no jax; backends and runtime are built on first use, so odebench lists
them (and explains what is missing) even where jax is not installed.
"""

from odebench.hookspecs import hookimpl
from odebench.specs import RuntimeSpec, gradient_method_specs, lazy

_DESCRIPTIONS = {
    "backprop": "reverse mode through the jitted solver (a tape of 256-step segments; memory ~ 256 steps x state)",
    "adjoint": "continuous adjoint as jax.custom_vjp: backward solve of [y, a, dL/dargs]; memory flat in NFE",
    "adjoint-seminorm": "adjoint whose backward error norm ignores the args cotangents (Kidger et al. 2021)",
}


@hookimpl
def odebench_register_backends(register):
    for spec in gradient_method_specs("jax", _DESCRIPTIONS, lazy("odebench_jax.backends:build_backend")):
        register(spec)


@hookimpl
def odebench_register_runtimes(register):
    register(RuntimeSpec("jax", load=lazy("odebench_jax.runtime:JaxRuntime"), requires=("jax", "optax"),
                         description="jitted JAX: devices, block_until_ready clock, XLA memory, optax train step"))
