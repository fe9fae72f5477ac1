"""The conformance kit's adapter for JAX backends (odebench.testing): the kit's cases in JAX
arrays, with evaluations counted independently in the dynamics by ``jax.debug.callback``.
Peers of the JAX framework (diffrax, jax.experimental.ode) are checked through it too."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from odebench.specs import SolveStats

from .dtypes import enable_float64

T01 = np.array([0.0, 1.0])


def _b4(t, y, args):
    y1, y2, y3 = y[0], y[1], y[2]
    r = jnp.sqrt(y1 * y1 + y2 * y2)
    return jnp.stack([-y2 - y1 * y3 / r, y1 - y2 * y3 / r, y1 / r])


def mlp(t, y, p):
    tt = jnp.broadcast_to(jnp.asarray(t, y.dtype), y.shape[:-1] + (1,))
    return jnp.tanh(jnp.concatenate([y, tt], axis=-1) @ p["W1"].T + p["b1"]) @ p["W2"].T + p["b2"]


class Counter:
    """Evaluations of traced dynamics, counted on the host as the programs run.  One instance,
    and module-level dynamics, so compiled programs are reused across the kit's many solves;
    a solve's count is the difference of two readings."""

    def __init__(self) -> None:
        self.calls = 0

    def tick(self) -> None:
        jax.debug.callback(self._add)

    def _add(self) -> None:
        self.calls += 1

    def read(self) -> int:
        jax.effects_barrier()
        return self.calls


COUNTER = Counter()


def _counted(rhs):
    def f(t, y, args):
        COUNTER.tick()
        return rhs(t, y, args)

    return f


RHS = {name: _counted(rhs) for name, rhs in
       {"A1": lambda t, y, args: -y, "A3": lambda t, y, args: y * jnp.cos(t), "B4": _b4}.items()}
COUNTED_MLP = _counted(mlp)


def counted_pair(t, state, p):
    """(y, l) with l' = -sum(f * y) per row: a tuple state through the counted MLP."""
    dy = COUNTED_MLP(t, state[0], p)
    return dy, -jnp.sum(dy * state[0], axis=-1, keepdims=True)


class JaxConformance:
    framework = "jax"
    reference = "jax-backprop"
    memory_note = "JAX on CPU has no dynamic memory figure (xla_temp_bytes is a static program size)"
    closure_note = ""
    backward_count_note = ("a callback under jax.vjp of a scanned step runs once per scan, not once per "
                           "evaluation: a differentiated loop's backward evaluations cannot be counted independently")

    def __init__(self, registry) -> None:
        self.registry = registry
        enable_float64()

    def backend(self, name: str):
        return self.registry.backend(name)

    def supports(self, backend, solver: str) -> bool:
        supported = getattr(backend, "supported_solvers", None)
        return solver in (supported if supported is not None else self.registry.names("solver"))

    def is_fixed_step(self, solver: str) -> bool:
        return not self.registry.solver(solver).adaptive

    def solve(self, backend, problem, times, solver, tol, dtype, options=None):
        before, stats = COUNTER.read(), SolveStats()
        ys = backend.odeint(RHS[problem.name], jnp.asarray(problem.y0, dtype), jnp.asarray(times, dtype),
                            solver=solver, rtol=tol, atol=tol, options=options, stats=stats)
        ys = np.asarray(ys, np.float64)
        return ys, stats, COUNTER.read() - before

    @staticmethod
    def _loss_fn(backend, case, solver, tol, dtype, options, stats):
        times, w = jnp.asarray(case.times, dtype), jnp.asarray(case.loss_weights, dtype)

        def loss(y0, params):
            kwargs = dict(solver=solver, rtol=tol, atol=tol, options=options, stats=stats)
            if not case.tuple_state:
                return jnp.sum(backend.odeint(COUNTED_MLP, y0, times, params, **kwargs) * w)
            ys, ls = backend.odeint(counted_pair, (y0, jnp.zeros((y0.shape[0], 1), dtype)), times, params, **kwargs)
            return jnp.sum(ys * w) + jnp.sum(ls * jnp.asarray(case.l_weights, dtype))

        return loss

    def _inputs(self, case, dtype):
        return jnp.asarray(case.y0, dtype), {k: jnp.asarray(v, dtype) for k, v in case.weights.items()}

    def gradients(self, backend, case, solver, tol, dtype, options=None):
        y0, params = self._inputs(case, dtype)
        start = COUNTER.read()
        self._loss_fn(backend, case, solver, tol, dtype, options, SolveStats())(y0, params)
        forward = COUNTER.read() - start
        stats = SolveStats()
        loss = self._loss_fn(backend, case, solver, tol, dtype, options, stats)
        value, (gy, gp) = jax.value_and_grad(loss, argnums=(0, 1))(y0, params)
        total = COUNTER.read() - start - forward
        if not backend.separate_counts:  # a peer: it saw every evaluation as forward
            stats.nfe_backward, stats.nfe_forward = stats.nfe_forward - forward, forward
        grads = {"y0": np.asarray(gy, np.float64), **{k: np.asarray(v, np.float64) for k, v in gp.items()}}
        backward = None if backend.method in ("backprop", "recursive-checkpoint", "direct") else total - forward
        return float(value), grads, stats, (forward, backward)

    def loss(self, backend, case, solver, tol, dtype, options=None) -> float:
        y0, params = self._inputs(case, dtype)
        return float(self._loss_fn(backend, case, solver, tol, dtype, options, SolveStats())(y0, params))

    def closure_gradients(self, backend, case, solver, tol):
        """d loss / d parameters with the parameters closed over, and passed through args."""
        y0, params = self._inputs(case, "float64")
        times, w = jnp.asarray(case.times), jnp.asarray(case.loss_weights)

        def closed(p):
            return jnp.sum(backend.odeint(lambda t, y, args: mlp(t, y, p), y0, times, solver=solver, rtol=tol,
                                          atol=tol) * w)

        def through_args(p):
            return jnp.sum(backend.odeint(mlp, y0, times, p, solver=solver, rtol=tol, atol=tol) * w)

        as_numpy = lambda g: {k: np.asarray(v) for k, v in g.items()}  # noqa: E731
        return as_numpy(jax.grad(closed)(params)), as_numpy(jax.grad(through_args)(params))

    def memory(self, backend, case, tol):
        return None

    def bad_input(self, backend, case: str) -> None:
        one = jnp.ones(2, jnp.float64)
        a1 = RHS["A1"]  # counted: harmless
        calls = {
            "unknown solver": lambda: backend.odeint(a1, one, T01, solver="rk45"),
            "rtol = 0": lambda: backend.odeint(a1, one, T01, rtol=0.0, atol=1e-3),
            "rtol < 0": lambda: backend.odeint(a1, one, T01, rtol=-1e-3, atol=1e-3),
            "rtol not a number": lambda: backend.odeint(a1, one, T01, rtol="abc", atol=1e-3),
            "atol = nan": lambda: backend.odeint(a1, one, T01, rtol=1e-3, atol=math.nan),
            "atol = inf": lambda: backend.odeint(a1, one, T01, rtol=1e-3, atol=math.inf),
            "repeated time": lambda: backend.odeint(a1, one, np.array([0.0, 1.0, 1.0])),
            "time not monotonic": lambda: backend.odeint(a1, one, np.array([0.0, 2.0, 1.0])),
            "nan time": lambda: backend.odeint(a1, one, np.array([0.0, math.nan])),
            "output shape": lambda: backend.odeint(lambda t, y, a: jnp.zeros(3, y.dtype), one, T01),
            "output dtype": lambda: backend.odeint(lambda t, y, a: -y.astype(jnp.float32), one, T01),
            "tuple length": lambda: backend.odeint(lambda t, s, a: (s[0],), (one, one[:1]), T01),
            "integer y0": lambda: backend.odeint(a1, jnp.ones(2, jnp.int32), T01),
            "unknown option": lambda: backend.odeint(a1, one, T01, solver="rk4", options={"step_szie": 0.1}),
            "fixed step without step_size": lambda: backend.odeint(a1, one, T01, solver="rk4"),
            "max_steps = 0": lambda: backend.odeint(a1, one, T01, options={"max_steps": 0}),
            "nan in y0": lambda: backend.odeint(a1, jnp.asarray([1.0, np.nan]), T01),
            "nan appearing in the state": lambda: backend.odeint(
                lambda t, y, a: jnp.where(t > 0.5, jnp.full_like(y, jnp.nan), -y), one, T01),
            "max_steps reached": lambda: backend.odeint(lambda t, y, a: jnp.cos(20 * t) * y, one[:1],
                                                        np.array([0.0, 10.0]), rtol=1e-10, atol=1e-10,
                                                        options={"max_steps": 20}),
        }
        calls[case]()
