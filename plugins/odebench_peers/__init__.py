"""Built-in plugin: peer libraries as backends (the extra ``peers``), run through the same
harness, counters and checks as odebench's own.

torch: ``torchdiffeq-backprop``, ``torchdiffeq-adjoint``, ``torchdiffeq-adjoint-seminorm``,
``torchode-backprop`` (AutoDiffAdjoint), ``torchode-adjoint`` (BacksolveAdjoint).
JAX: ``diffrax-backsolve``, ``diffrax-recursive-checkpoint``, ``diffrax-direct``,
``jaxode-adjoint`` (``jax.experimental.ode.odeint``).
Registration imports no library: ``odebench list`` shows a peer whose library is missing as
not installed, with the pip extra that installs it.
"""

from odebench.hookspecs import hookimpl
from odebench.specs import BackendSpec, lazy

from .solvers import DIFFRAX, JAX_ODE, TORCHDIFFEQ, TORCHODE

BOTH, FORWARD, NONE = ("forward", "backward"), ("forward",), ()
PEERS = (
    # (library, method, framework, solvers, steps the library reports, description)
    ("torchdiffeq", "backprop", "torch", TORCHDIFFEQ, NONE, "torchdiffeq.odeint: reverse mode through its solver"),
    ("torchdiffeq", "adjoint", "torch", TORCHDIFFEQ, NONE, "torchdiffeq.odeint_adjoint"),
    ("torchdiffeq", "adjoint-seminorm", "torch", TORCHDIFFEQ, NONE, "torchdiffeq.odeint_adjoint with the seminorm"),
    ("torchode", "backprop", "torch", TORCHODE, BOTH, "torchode AutoDiffAdjoint: reverse mode through its loop"),
    ("torchode", "adjoint", "torch", TORCHODE, BOTH, "torchode BacksolveAdjoint"),
    ("diffrax", "backsolve", "jax", DIFFRAX, FORWARD, "diffrax BacksolveAdjoint"),
    ("diffrax", "recursive-checkpoint", "jax", DIFFRAX, BOTH, "diffrax RecursiveCheckpointAdjoint (its default)"),
    ("diffrax", "direct", "jax", DIFFRAX, BOTH, "diffrax DirectAdjoint"),
    ("jaxode", "adjoint", "jax", JAX_ODE, NONE, "jax.experimental.ode.odeint (its adjoint)"),
)
MODULES = {"torch": "odebench_peers.torch_peers:build_backend", "jax": "odebench_peers.jax_peers:build_backend"}
IMPORTS = {"torchdiffeq": ("torch", "torchdiffeq"), "torchode": ("torch", "torchode"),
           "diffrax": ("jax", "diffrax"), "jaxode": ("jax",)}


@hookimpl
def odebench_register_backends(register):
    for library, method, framework, solvers, steps, text in PEERS:
        name = f"{library}-{method}"
        register(BackendSpec(name=name, framework=framework, method=method,
                             load=_loader(MODULES[framework], library, method, name), description=text,
                             requires=IMPORTS[library], extra="peers", solvers=tuple(solvers), steps_counted=steps))


def _loader(target: str, library: str, method: str, name: str):
    import functools

    return functools.partial(lazy(target), library, method, name)
