"""asv: odebench's backends on the benchmark MLP (benchmarks/problems.py), one forward+backward.

``time_*`` times one forward solve and backward pass; ``track_*`` record the exact NFE and
the memory figures, so a change in step control or in what the backward keeps shows up as a
regression too.  Figures come from one untimed run per cell in ``setup_cache``.
"""

from benchmarks.problems import mlp_cell_figures, mlp_step, tracked

BACKENDS = ["torch-adjoint", "torch-adjoint-seminorm", "torch-backprop", "jax-adjoint", "jax-adjoint-seminorm",
            "jax-backprop"]
SOLVERS = ["dopri5", "bosh3"]
TOLS = [1e-3, 1e-5, 1e-7]
PARAMS = (BACKENDS, SOLVERS, TOLS)
NAMES = ["backend", "solver", "tol"]


class MLPTime:
    params, param_names = PARAMS, NAMES
    timeout = 300

    def setup(self, backend, solver, tol):
        self.step = mlp_step(backend, solver, tol)
        self.step()  # JAX compiles here, outside the clock

    def time_forward_backward(self, backend, solver, tol):
        self.step()


class MLPFigures:
    params, param_names = PARAMS, NAMES
    timeout = 900

    def setup_cache(self):
        return {(b, s, t): mlp_cell_figures(b, s, t) for b in BACKENDS for s in SOLVERS for t in TOLS}

    def track_nfe_forward(self, figures, backend, solver, tol):
        return figures[backend, solver, tol]["nfe_forward"]

    def track_nfe_backward(self, figures, backend, solver, tol):
        return figures[backend, solver, tol]["nfe_backward"]

    def track_peak_memory(self, figures, backend, solver, tol):
        return tracked(figures[backend, solver, tol]["peak_memory_bytes"], "not measured")

    def track_held_for_backward(self, figures, backend, solver, tol):
        return tracked(figures[backend, solver, tol]["held_for_backward_bytes"], "no autograd graph in JAX")

    track_nfe_forward.unit = track_nfe_backward.unit = "evaluations"
    track_peak_memory.unit = track_held_for_backward.unit = "bytes"
