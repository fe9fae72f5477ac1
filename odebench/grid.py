"""The grid of a run: its configuration, its cells, and the checks that find bad input before
anything runs.

A cell is one row of the result file.  For a task's ODE model it is (task, model, backend,
solver, rtol, atol, seed); a fixed-step solver has no tolerance (one cell, rtol and atol
empty, whatever --tol says); a model without an ODE (the paper's ResNet and RNN baselines) has
no solver or tolerance to vary, so it runs once per framework and seed, its ``backend`` being
the framework's name (``torch``, ``jax``).  Everything a cell needs is validated here: names,
tolerances, options, the task's data (``TaskSpec.prepare``), a framework implementation for
every cell.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Optional

from .errors import InvalidInputError, MissingDependencyError
from .plugins import Registry
from .solve import check_tolerance, parse_bool, resolve_options
from .specs import ModelSpec, TaskSpec


@dataclass(frozen=True)
class Cell:
    task: str
    model: str
    backend: str  # a backend's name, or a framework's for a model without an ODE
    solver: Optional[str]
    rtol: Optional[float]
    atol: Optional[float]
    seed: int

    @property
    def ode(self) -> bool:
        return self.solver is not None

    @property
    def adaptive(self) -> bool:
        return self.rtol is not None

    def label(self) -> str:
        head = f"{self.task} {self.model} {self.backend}"
        if not self.ode:
            return f"{head} seed={self.seed}"
        tol = f" rtol={self.rtol:g} atol={self.atol:g}" if self.adaptive else ""
        return f"{head} {self.solver}{tol} seed={self.seed}"

    def stem(self, run_id: str) -> str:
        """The file-name stem of the cell's artifacts (a task's only model, named after it, unnamed)."""
        head = f"{run_id}-{self.task}" + ("" if self.model == self.task else f"-{self.model}") + f"-{self.backend}"
        if not self.ode:
            return f"{head}-s{self.seed}"
        tol = f"-r{self.rtol:g}-a{self.atol:g}" if self.adaptive else ""
        return f"{head}-{self.solver}{tol}-s{self.seed}"


@dataclass
class RunConfig:
    tasks: list
    backends: list
    solvers: list = field(default_factory=lambda: ["dopri5"])
    tolerances: Optional[list] = None  # (rtol, atol) pairs; None: each task's default tolerance
    seeds: list = field(default_factory=lambda: [0])
    models: Optional[list] = None  # None: each task's default model
    steps: Optional[int] = None  # training iterations; None keeps the task's default
    batch_size: Optional[int] = None
    device: str = "auto"
    dtype: Optional[str] = None  # None: each task's default_dtype
    task_options: dict = field(default_factory=dict)  # raw "key": "value" strings or values
    solver_options: dict = field(default_factory=dict)
    eval_tolerances: Optional[list] = None  # (rtol, atol) pairs of the test-time sweep; None: the task's
    out_dir: str = "results"
    csv: bool = False
    run_id: Optional[str] = None


def _coerce(field_: dataclasses.Field, raw):
    """A task option given as text (from --opt) turned into the dataclass field's type."""
    if not isinstance(raw, str):
        return raw
    kind = field_.type if isinstance(field_.type, str) else getattr(field_.type, "__name__", str(field_.type))
    kind = kind.replace("Optional[", "").rstrip("]")
    if kind == "bool":
        return parse_bool(f"task option {field_.name}", raw)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise InvalidInputError(f"task option {field_.name}={raw!r} is not a valid {kind}") from None
    return raw


def build_task_options(spec: TaskSpec, raw: dict, steps: Optional[int] = None, batch_size: Optional[int] = None):
    """The task's options dataclass from its defaults, --opt pairs, --steps and --batch-size."""
    fields = {f.name: f for f in dataclasses.fields(spec.options)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise InvalidInputError(
            f"unknown option(s) {', '.join(unknown)} for task {spec.name!r}; allowed: {', '.join(sorted(fields))}"
        )
    values = {k: _coerce(fields[k], v) for k, v in raw.items()}
    for flag, key, value in (("--steps", "iterations", steps), ("--batch-size", "batch_size", batch_size)):
        if value is not None:
            if key not in fields:
                raise InvalidInputError(f"task {spec.name!r} has no option {key!r}, so {flag} does not apply")
            values[key] = value
    try:
        return spec.options(**values)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"task {spec.name!r}: {exc}") from None


def task_models(spec: TaskSpec, names: Optional[list]) -> list[ModelSpec]:
    """The models of a task to run: ``names`` (checked against the task's), or its default."""
    if names is None:
        return [spec.default_model]
    known = {m.name: m for m in spec.model_specs}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InvalidInputError(f"unknown model(s) {', '.join(unknown)} for task {spec.name!r}; "
                                f"its models: {', '.join(known)}")
    return [known[n] for n in dict.fromkeys(names)]


def _tolerances(pairs) -> list[tuple[float, float]]:
    return [(check_tolerance("rtol", r), check_tolerance("atol", a)) for r, a in pairs]


def task_tolerances(config: RunConfig, spec: TaskSpec) -> list[tuple[float, float]]:
    """--tol / --rtol / --atol, or the task's default tolerance (rtol = atol)."""
    if config.tolerances is None:
        return [(spec.default_tol, spec.default_tol)]
    return _tolerances(config.tolerances)


def eval_tolerances(config: RunConfig, spec: TaskSpec) -> list[tuple[float, float]]:
    """The tolerances a trained ODE model is also evaluated at: --eval-tol, or the task's."""
    if config.eval_tolerances is None:
        return [(t, t) for t in spec.eval_tols]
    return _tolerances(config.eval_tolerances)


def _frameworks(config: RunConfig, registry: Registry) -> list[str]:
    """The frameworks of the backends asked for, in order of first appearance."""
    return list(dict.fromkeys(registry.get("backend", name).spec.framework for name in config.backends))


def _check_grid(config: RunConfig, registry: Registry) -> None:
    if not config.tasks or not config.backends or not config.solvers or not config.seeds:
        raise InvalidInputError("the grid is empty: give at least one task, backend, solver, tolerance and seed")
    if config.tolerances is not None and not config.tolerances:
        raise InvalidInputError("the grid is empty: give at least one tolerance")
    for name in config.solvers:
        registry.get("solver", name)
    for name in config.backends:
        spec = registry.get("backend", name).spec
        missing = registry.missing(name)
        if missing:
            raise MissingDependencyError(f"backend {name!r} needs {', '.join(missing)}, which is not installed "
                                         f"(install it with pip install 'odebench[{spec.extra or spec.framework}]')")
        lacking = [s for s in config.solvers if spec.solvers is not None and s not in spec.solvers]
        if lacking:
            raise InvalidInputError(f"backend {name!r} does not run solver(s) {', '.join(lacking)}; "
                                    f"it runs: {', '.join(spec.solvers)}")
    if config.steps is not None and config.steps < 1:
        raise InvalidInputError(f"--steps must be at least 1, got {config.steps}")
    if config.batch_size is not None and config.batch_size < 1:
        raise InvalidInputError(f"--batch-size must be at least 1, got {config.batch_size}")


def solver_options(config: RunConfig, registry: Registry, spec: TaskSpec, solver: str, task_options) -> dict:
    """The integrator options of a cell: --solver-opt, and for a fixed-step solver it gives no
    ``step_size`` the task's step (the option ``TaskSpec.step_size_option`` names), if it has one."""
    options = dict(config.solver_options)
    key = spec.step_size_option
    if key and "step_size" not in options and not getattr(registry.solver(solver), "adaptive", True):
        options["step_size"] = getattr(task_options, key)
    return options


def _task_cells(config: RunConfig, registry: Registry, spec: TaskSpec) -> list[Cell]:
    options = build_task_options(spec, config.task_options, config.steps, config.batch_size)
    for solver in config.solvers:  # options the integrators would refuse in every cell
        tableau = registry.solver(solver)
        if hasattr(tableau, "stages"):
            resolve_options(tableau, solver_options(config, registry, spec, solver, options) or None)
    if spec.prepare is not None:
        spec.prepare(options)
    tolerances = task_tolerances(config, spec)
    eval_tolerances(config, spec)
    cells = []
    for model in task_models(spec, config.models):
        if model.ode:
            for backend, solver, seed in itertools.product(config.backends, config.solvers, config.seeds):
                tols = tolerances if registry.solver(solver).adaptive else [(None, None)]
                cells += [Cell(spec.name, model.name, backend, solver, r, a, seed) for r, a in tols]
        else:
            cells += [Cell(spec.name, model.name, fw, None, None, None, seed) for fw, seed in
                      itertools.product(_frameworks(config, registry), config.seeds)]
    for cell in cells:
        framework = registry.get("backend", cell.backend).spec.framework if cell.ode else cell.backend
        if framework not in spec.frameworks:
            raise InvalidInputError(f"task {spec.name!r} has no {framework} implementation "
                                    f"(cell {cell.label()}); it supports: {', '.join(sorted(spec.frameworks))}")
    return cells


def plan(config: RunConfig, registry: Registry) -> list[Cell]:
    """Validate every name, value and data set up front, then expand the grid (nothing has run yet)."""
    _check_grid(config, registry)
    cells = [cell for name in dict.fromkeys(config.tasks) for cell in _task_cells(config, registry, registry.task(name))]
    return list(dict.fromkeys(cells))  # a cell named twice (--seed 0,0) runs once: a run has one row per cell
