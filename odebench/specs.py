"""Plain, framework-free descriptions of what plugins register.

The host only ever handles these dataclasses; the objects that do numerical work (a torch
or jax backend, a task's model) are produced by the ``load`` callables they carry, so that
importing odebench never imports a framework.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .tableau import Tableau  # noqa: F401  (a spec like the others; its checks live there)


@dataclass(frozen=True)
class SolverSpec:
    """A solver that is not a tableau: one implementation per framework, loaded lazily."""

    name: str
    implementations: dict  # framework -> zero-argument loader returning the implementation
    adaptive: bool = True
    order: Optional[int] = None
    description: str = ""


@dataclass(frozen=True)
class BackendSpec:
    """A gradient method in one framework, named ``<framework>-<method>`` (a peer library's
    ``<library>-<method>``).

    ``load()`` returns the backend object (it may import the framework).  ``requires`` names
    the imports that must succeed for it to work, so a missing framework gives a clear error
    instead of a traceback; ``extra`` is the pip extra that installs them (default: the
    framework's).  ``solvers``: the odebench solvers it runs (None: every tableau), checked
    when a grid is planned.  ``steps_counted``: the passes ("forward", "backward") whose accepted
    and rejected steps it reports (a peer library may not expose them; its rows then leave
    those columns empty).
    """

    name: str
    framework: str
    method: str
    load: Callable[[], Any]
    description: str = ""
    requires: tuple = ()
    extra: str = ""
    solvers: Optional[tuple] = None
    steps_counted: tuple = ("forward", "backward")


def lazy(target: str) -> Callable[..., Any]:
    """A callable that imports ``"module:attribute"`` only when called, then calls it.

    Registration must not import a framework; the loaders of specs are these (picklable, so a
    cell's plugins can travel to another process).
    """
    return functools.partial(_call_target, target)


def _call_target(target: str, *args: Any) -> Any:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)(*args)


def gradient_method_specs(framework: str, descriptions: dict, build: Callable[[str, str], Any]) -> list:
    """One BackendSpec per method, named ``<framework>-<method>``, each requiring the framework;
    ``build(method, name)`` makes the backend when it is first used (it may import the framework)."""
    return [BackendSpec(name=f"{framework}-{method}", framework=framework, method=method,
                        load=functools.partial(build, method, f"{framework}-{method}"), description=text,
                        requires=(framework,))
            for method, text in descriptions.items()]


@dataclass(frozen=True)
class RuntimeSpec:
    """A framework's runtime (devices, seeding, clock, memory, trainer; see odebench.protocols).

    One per framework, reachable without a backend: ``load()`` returns the Runtime and may
    import the framework; ``requires`` names the imports that must succeed.
    """

    framework: str
    load: Callable[[], Any]
    requires: tuple = ()
    description: str = ""

    @property
    def name(self) -> str:
        return self.framework


@dataclass(frozen=True)
class ExecutorSpec:
    """A way to run a grid's cells (odebench.execution): in this process, in processes of their
    own, on a Dask cluster.  ``load()`` returns the executor's class, called with the run's
    ``ExecutorSettings``; ``requires`` / ``extra`` as for a backend.  ``isolates``: each cell
    runs in a process the coordinator can stop, so a crash or ``--timeout`` ends that cell only."""

    name: str
    load: Callable[[], Any]
    description: str = ""
    requires: tuple = ()
    extra: str = ""
    isolates: bool = True


@dataclass(frozen=True)
class ModelSpec:
    """One row of a task's table: a model the task trains.  ``ode=False`` (a ResNet, an RNN
    baseline) runs once per framework and seed, with no solver, tolerance or gradient method."""

    name: str
    ode: bool = True
    description: str = ""


@dataclass(frozen=True)
class TaskSpec:
    """A benchmark task: its options dataclass, its models and, per framework, a loader of its
    implementation.

    ``models``: the rows of the paper's table (ModelSpec); empty means one ODE model named after
    the task, and then ``setup`` is called without ``model=`` (tasks written before models).
    ``default_tol``: rtol = atol of a run that gives no tolerance.  ``eval_tols``: tolerances a
    trained ODE model is also evaluated at (the test-time speed/accuracy dial; none by default).
    ``prepare(options)``: framework-free, run once before any cell: checks (and may fetch) what
    the cells need, raising InvalidInputError on a problem, so bad data stops the run up front.
    ``trains``: False for a task that trains nothing (``detest``: solver accuracy on closed
    forms); the harness then uses the problem's own ``trainer(odeint)`` (odebench.protocols'
    Trainer: each step one timed solve without gradients) instead of the runtime's.
    ``step_size_option``: the task option holding the step of fixed-step solvers when
    --solver-opt gives none, so one run can mix fixed-step and adaptive solvers.
    ``default_dtype``: the cells' floating-point type when --dtype is not given (detest's
    errors reach 1e-9, below float32's resolution).
    """

    name: str
    description: str
    options: type
    frameworks: dict  # framework -> zero-argument loader returning the task implementation
    metric_name: str = "metric"
    metric_higher_is_better: bool = False
    paper_options: dict = field(default_factory=dict)
    models: tuple = ()
    default_tol: float = 1e-5
    eval_tols: tuple = ()
    prepare: Optional[Callable[[Any], Any]] = None
    trains: bool = True
    step_size_option: Optional[str] = None
    default_dtype: str = "float32"

    @property
    def model_specs(self) -> tuple:
        return tuple(self.models) or (ModelSpec(self.name, ode=True, description=self.description),)

    @property
    def default_model(self) -> ModelSpec:
        """The task's first ODE model (the one a run without --model trains)."""
        return next((m for m in self.model_specs if m.ode), self.model_specs[0])

    def build(self, framework: str, options: Any, *, model: str, seed: int, device: str, dtype: str):
        """The framework implementation's problem for one cell (see odebench.protocols.TaskProblem)."""
        impl = self.frameworks[framework]()
        extra = {"model": model} if self.models else {}
        return impl.setup(options, seed=seed, device=device, dtype=dtype, **extra)


@dataclass
class SolveStats:
    """Exact counts of one or more solves, read after the call (backward ones after backward)."""

    nfe_forward: int = 0
    nfe_backward: int = 0
    steps_accepted: int = 0
    steps_rejected: int = 0
    steps_accepted_backward: int = 0
    steps_rejected_backward: int = 0

    def reset(self) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, 0)

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

