"""odebench: a plugin-based benchmark suite for Neural ODE solvers and gradient methods.

The host package imports neither torch nor jax; frameworks live in plugins.  The lookups
below use a default registry built on first use (built-ins, entry points, ODEBENCH_PLUGINS).
"""

from __future__ import annotations

from .version import __version__
from .errors import (  # noqa: E402
    DuplicateNameError,
    InvalidInputError,
    MaxStepsError,
    MissingDependencyError,
    NonFiniteStateError,
    OdebenchError,
    PluginLoadError,
    UnknownNameError,
)
from .specs import BackendSpec, ModelSpec, RuntimeSpec, SolverSpec, SolveStats, Tableau, TaskSpec  # noqa: E402

_default = None


def registry(refresh: bool = False):
    """The default Registry (built once; ``refresh=True`` rebuilds it)."""
    global _default
    if _default is None or refresh:
        from .plugins import make_registry

        _default = make_registry()
    return _default


def solver(name: str):
    """The Tableau (or SolverSpec) registered as ``name``; UnknownNameError lists the known ones."""
    return registry().solver(name)


def backend(name: str):
    """The backend object registered as ``name``, e.g. ``backend("torch-adjoint").odeint(...)``."""
    return registry().backend(name)


def task(name: str):
    """The TaskSpec registered as ``name``."""
    return registry().task(name)


__all__ = [
    "__version__", "registry", "solver", "backend", "task",
    "Tableau", "SolverSpec", "BackendSpec", "TaskSpec", "ModelSpec", "RuntimeSpec", "SolveStats",
    "OdebenchError", "UnknownNameError", "DuplicateNameError", "PluginLoadError",
    "InvalidInputError", "NonFiniteStateError", "MaxStepsError", "MissingDependencyError",
]
