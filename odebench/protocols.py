"""The framework contract, written once: what the harness asks of a framework plugin.

The harness owns the grid, the clock's bookkeeping and the rows; a framework plugin owns
everything that touches its arrays.  They meet here:

* a ``Runtime`` per framework (registered with ``odebench_register_runtimes``, reachable
  without any backend, so a model with no ODE -- a ResNet -- trains through it too);
* a ``Trainer`` the runtime builds for one cell, which runs one training step at a time
  and returns a ``StepResult``;
* a ``TaskProblem``, what a task's framework loader builds for one cell;
* a ``BoundOdeint``, the backend's ``odeint`` with solver, tolerances, options and
  counters bound, which a task calls without choosing its gradient method.

Nothing here imports a framework.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, Protocol

from .specs import SolveStats


@dataclass
class StepResult:
    """One training step as a framework measured it.

    ``time_forward_s`` / ``time_backward_s``: the step's forward (loss) and backward times,
    clocks read after the device is synchronised, compilation excluded.
    ``compile_s``: seconds spent compiling programs during this step (None: nothing compiled,
    e.g. eager torch).  ``probed``: a memory probe ran inside the timed region, so the times are
    perturbed and the harness leaves them out of its medians.
    ``peak_memory_bytes`` / ``held_for_backward_bytes``: the memory figures of this step when it
    was probed (None otherwise, or where the framework cannot measure them); their meaning is
    the runtime's ``memory_kind``.
    """

    loss: float
    time_forward_s: float
    time_backward_s: float
    peak_memory_bytes: Optional[int] = None
    held_for_backward_bytes: Optional[int] = None
    compile_s: Optional[float] = None
    probed: bool = False


class Trainer(Protocol):
    """Trains one cell's problem: built by ``Runtime.trainer(problem, odeint, device)``."""

    def n_params(self) -> int: ...

    def step(self, iteration: int, probe_memory: bool = False) -> StepResult: ...

    def evaluate(self, odeint: Optional["BoundOdeint"]) -> float: ...


class Runtime(Protocol):
    """A framework's devices, seeding, synchronised clock, memory kinds and trainer."""

    framework: str

    def resolve_device(self, device: str) -> str: ...

    def seed(self, seed: int) -> None: ...

    def gpu_name(self, device: str) -> Optional[str]: ...

    def memory_kind(self, device: str) -> str: ...

    def synchronize(self, device: str) -> None: ...

    def trainer(self, problem: "TaskProblem", odeint: Optional["BoundOdeint"], device: str) -> Trainer: ...


class TaskProblem(Protocol):
    """What a task's framework loader builds for one cell (``impl.setup(options, seed=, device=, dtype=)``).

    ``model`` holds the trainable parameters (an nn.Module in torch, a pytree in JAX).
    ``loss(batch, odeint)`` and ``evaluate(odeint)`` receive a ``BoundOdeint`` (None for a
    model without an ODE), so a task never chooses its gradient method.
    """

    model: Any
    optimizer: tuple  # (name, kwargs), e.g. ("adam", {"lr": 1e-3})

    def batch(self, iteration: int) -> Any: ...

    def loss(self, batch: Any, odeint: Optional["BoundOdeint"]) -> Any: ...

    def evaluate(self, odeint: Optional["BoundOdeint"]) -> float: ...

    def extras(self) -> dict: ...

    def artifacts(self, odeint: Optional["BoundOdeint"], out_dir: Any, stem: str) -> list: ...


@dataclass(frozen=True, eq=False)
class BoundOdeint:
    """``backend.odeint`` with solver, tolerances, options and counters bound.

    Called as ``odeint(func, y0, t, *args, **kwargs)``.  ``with_stats(other)`` gives the same
    solve counting into another SolveStats (a trainer's untimed or timing-only runs must not
    add to the cell's counts).  ``backend`` is an ``odebench.solve.GradientBackend``: how its
    counts reach ``stats`` from a compiled program is what it declares there
    (``returns_counts``, ``callback_counts``, ``separate_counts``), which a trainer or a task
    reads instead of probing for it.
    """

    backend: Any
    solver: Any
    rtol: float
    atol: float
    options: Optional[dict]
    stats: SolveStats

    def __call__(self, func: Callable, y0: Any, t: Any, *args: Any, **kwargs: Any) -> Any:
        return self.backend.odeint(func, y0, t, *args, solver=self.solver, rtol=self.rtol, atol=self.atol,
                                   options=self.options, stats=self.stats, **kwargs)

    def with_stats(self, stats: SolveStats) -> "BoundOdeint":
        return replace(self, stats=stats)
