"""asv: odebench's backends on the benchmark MLP (``mlp`` of benchmarks/problems.py), one forward+backward.

``time_*`` times one forward solve and backward pass; ``track_*`` record the exact NFE and
the memory figures, so a change in step control or in what the backward keeps shows up as a
regression too.  Figures come from one untimed run per cell in ``setup_cache``.
"""

from benchmarks.problems import jax_mlp, jax_mlp_params, torch_mlp

from . import tracked

BACKENDS = ["torch-adjoint", "torch-adjoint-seminorm", "torch-backprop", "jax-adjoint", "jax-adjoint-seminorm",
            "jax-backprop"]
SOLVERS = ["dopri5", "bosh3"]
TOLS = [1e-3, 1e-5, 1e-7]
PARAMS = (BACKENDS, SOLVERS, TOLS)
NAMES = ["backend", "solver", "tol"]


def _torch_mlp_step(backend: str, solver: str, tol: float):
    import odebench

    func, y0, t = torch_mlp()
    solver_backend = odebench.backend(backend)

    def step():
        start = y0.clone().requires_grad_(True)
        ys = solver_backend.odeint(func, start, t, solver=solver, rtol=tol, atol=tol)
        (ys[-1] ** 2).sum().backward()
        return solver_backend.last_stats

    return step


def _jax_mlp_program(backend: str, solver: str, tol: float, stats):
    import jax

    import odebench

    params, y0 = jax_mlp_params()
    solver_backend = odebench.backend(backend)
    t = jax.numpy.asarray([0.0, 1.0], y0.dtype)

    def loss(p, y):
        ys = solver_backend.odeint(lambda s, x, a: jax_mlp(a, x), y, t, p, solver=solver, rtol=tol, atol=tol,
                                   stats=stats)
        return (ys[-1] ** 2).sum()

    program = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(params, y0).compile()
    return program, params, y0


def mlp_step(backend: str, solver: str, tol: float):
    """A callable doing one forward solve and backward pass of the MLP with ``backend``."""
    import odebench

    if odebench.backend(backend).framework == "torch":
        return _torch_mlp_step(backend, solver, tol)
    import jax
    from odebench.specs import SolveStats

    program, params, y0 = _jax_mlp_program(backend, solver, tol, SolveStats())
    return lambda: jax.block_until_ready(program(params, y0))


def mlp_cell_figures(backend: str, solver: str, tol: float) -> dict:
    """Exact NFE and the memory figures of one MLP forward+backward (torch: the allocator's peak
    and the bytes the graph holds; JAX: the program's planned scratch memory, nothing held)."""
    import odebench
    from odebench.specs import SolveStats

    if odebench.backend(backend).framework == "torch":
        from odebench_torch.memory import PeakAllocated, held_for_backward

        func, y0, t = torch_mlp()
        solver_backend = odebench.backend(backend)
        with PeakAllocated("cpu") as peak:
            ys = solver_backend.odeint(func, y0.clone().requires_grad_(True), t, solver=solver, rtol=tol, atol=tol)
            loss = (ys[-1] ** 2).sum()
            held = held_for_backward(loss)
            loss.backward()
        stats = solver_backend.last_stats
        return {"nfe_forward": stats.nfe_forward, "nfe_backward": stats.nfe_backward,
                "peak_memory_bytes": peak.bytes, "held_for_backward_bytes": held}
    import jax

    stats = SolveStats()
    program, params, y0 = _jax_mlp_program(backend, solver, tol, stats)
    jax.block_until_ready(program(params, y0))
    jax.effects_barrier()
    analysis = program.memory_analysis()
    return {"nfe_forward": stats.nfe_forward, "nfe_backward": stats.nfe_backward,
            "peak_memory_bytes": int(analysis.temp_size_in_bytes) if analysis is not None else None,
            "held_for_backward_bytes": None}


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
