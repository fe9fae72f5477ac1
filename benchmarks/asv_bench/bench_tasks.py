"""asv: one small cell of each paper task (cnf, mnist, latent-spiral) as ``odebench run`` runs it.

``time_training_step``: one training step (forward and backward) of the task's trainer, after
a first step that compiles (JAX).  ``track_*``: the row the harness writes for a 3-iteration
cell (NFE per iteration, the memory figures, the task's metric), from one run per cell in
``setup_cache``.  Sizes: ``benchmarks.problems.SMALL_TASK_OPTIONS``.
"""

from benchmarks.problems import TrainingStep, task_config

from . import tracked

TASKS = ["cnf", "mnist", "latent-spiral"]
BACKENDS = ["torch-adjoint", "torch-backprop", "jax-adjoint", "jax-backprop"]
SOLVERS = ["dopri5", "bosh3"]
TOLS = [1e-3, 1e-5]
PARAMS = (TASKS, BACKENDS, SOLVERS, TOLS)
NAMES = ["task", "backend", "solver", "tol"]


def task_cell_row(task: str, backend: str, solver: str, tol: float, steps: int = 3) -> dict:
    """The harness's row for one small cell, run as ``odebench run`` runs it (not written)."""
    from odebench.grid import plan
    from odebench.harness import run_cell
    from odebench.plugins import make_registry

    reg = make_registry()
    config = task_config(task, backend, solver, tol, steps)
    (cell,) = plan(config, reg)
    row = run_cell(cell, config, reg, "asv")
    if row["status"] != "ok":
        raise RuntimeError(f"{cell.label()}: {row['status']}: {row['error']}")
    return row


class TaskTime:
    params, param_names = PARAMS, NAMES
    timeout = 300

    def setup(self, task, backend, solver, tol):
        self.step = TrainingStep(task, backend, solver, tol)
        self.step()

    def time_training_step(self, task, backend, solver, tol):
        self.step()


class TaskFigures:
    params, param_names = PARAMS, NAMES
    timeout = 3600

    def setup_cache(self):
        return {(k, b, s, t): task_cell_row(k, b, s, t) for k in TASKS for b in BACKENDS for s in SOLVERS for t in TOLS}

    def track_nfe_forward(self, rows, task, backend, solver, tol):
        return rows[task, backend, solver, tol]["nfe_forward"]

    def track_nfe_backward(self, rows, task, backend, solver, tol):
        return rows[task, backend, solver, tol]["nfe_backward"]

    def track_peak_memory(self, rows, task, backend, solver, tol):
        return tracked(rows[task, backend, solver, tol]["peak_memory_bytes"], "not measured")

    def track_held_for_backward(self, rows, task, backend, solver, tol):
        return tracked(rows[task, backend, solver, tol]["held_for_backward_bytes"], "no autograd graph in JAX")

    def track_metric(self, rows, task, backend, solver, tol):
        return rows[task, backend, solver, tol]["metric"]

    track_nfe_forward.unit = track_nfe_backward.unit = "evaluations"
    track_peak_memory.unit = track_held_for_backward.unit = "bytes"
    track_metric.unit = "metric (cnf: test NLL nats; mnist: test error %; latent-spiral: RMSE)"
