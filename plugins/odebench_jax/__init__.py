"""Built-in JAX plugin: the JAX runtime and jax-backprop, jax-adjoint, jax-adjoint-seminorm.

Registration imports no jax; backends and runtime are built on first use, so odebench lists
them (and explains what is missing) even where jax is not installed.

The names other code may use (tasks, peers, benchmarks, users) are these, imported from the
package itself (``from odebench_jax import tally``); each is loaded, with jax, on first use.
The modules behind them are the plugin's own business.

Counts as data (``counts.py``, ``counting.py``):
    ``tally``, ``collect``, ``SolveCounts``, ``TALLY_FIELDS``: a compiled program's counts as
    its outputs, added to a SolveStats on the host; ``counted_jit``: a task's own program
    (an evaluation) with its solves counted; ``Uncounted``: stats a callback-counting backend
    leaves unfilled (the trainer's timed programs).
A JAX solve's front door (``state.py``, ``dtypes.py``), for backends that wrap another library:
    ``check_inputs``, ``is_tracer``, ``control_dtype``, ``enable_float64``.
The runtime (``runtime.py``):
    ``JaxRuntime``, ``jax_device``, ``make_optimizer``, ``learning_rate``.
"""

from importlib import import_module

from odebench.hookspecs import hookimpl
from odebench.specs import RuntimeSpec, gradient_method_specs, lazy

_DESCRIPTIONS = {
    "backprop": "reverse mode through the jitted solver (a tape of 256-step segments; memory ~ 256 steps x state)",
    "adjoint": "continuous adjoint as jax.custom_vjp: backward solve of [y, a, dL/dargs]; memory flat in NFE",
    "adjoint-seminorm": "adjoint whose backward error norm ignores the args cotangents (Kidger et al. 2021)",
}

_PUBLIC = {
    "tally": "counts", "collect": "counts", "SolveCounts": "counts", "TALLY_FIELDS": "counts",
    "Uncounted": "counts", "counted_jit": "counting",
    "check_inputs": "state", "is_tracer": "state", "control_dtype": "dtypes", "enable_float64": "dtypes",
    "JaxRuntime": "runtime", "jax_device": "runtime", "make_optimizer": "runtime", "learning_rate": "runtime",
}
__all__ = sorted(_PUBLIC)  # not in dir(): pluggy reads every name dir() lists, which would load jax


def __getattr__(name: str):
    """A public name, loaded from its module on first use (so that registration imports no jax)."""
    if name in _PUBLIC:
        return getattr(import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def odebench_register_backends(register):
    for spec in gradient_method_specs("jax", _DESCRIPTIONS, lazy("odebench_jax.backends:build_backend")):
        register(spec)


@hookimpl
def odebench_register_runtimes(register):
    register(RuntimeSpec("jax", load=lazy("odebench_jax.runtime:JaxRuntime"), requires=("jax", "optax"),
                         description="jitted JAX: devices, block_until_ready clock, XLA memory, optax train step"))
