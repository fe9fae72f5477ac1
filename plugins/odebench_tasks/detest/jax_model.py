"""The ``detest`` task in JAX: one compiled program per problem and solver setting.

Each problem's solve is jitted with the cell's odeint closed over and compiled ahead of time
(``compile_s``), once per backend, solver, tolerances and options: the evaluations that follow
the timed steps (another SolveStats) reuse it, because each program counts into a SolveStats of
its own that is added to the caller's after the run.  odebench's own backends
(``returns_counts``) return the counts as outputs of the program (``return_counts=True``), so
no host callback is timed; a failed solve raises when they are collected.  A backend that
counts by a host callback per evaluation (``callback_counts``: the JAX peers) is timed by a
program without them and counted by a second run off the clock, as the JAX trainer does.
"""

from __future__ import annotations

import functools
import json
import time
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from odebench.specs import SolveStats

from .task import DetestProblem


def _rhs(rhs, t, y, args):
    return rhs(jnp.asarray(t, y.dtype), y, jnp)


class Program(NamedTuple):
    """A problem's compiled solve (``timed``), its counter, and the counting rerun (or None);
    ``returning``: ``timed`` returns (ys, SolveCounts)."""

    timed: Any
    counts: SolveStats
    count: Optional[Any]
    returning: bool = False


class DetestJax(DetestProblem):
    framework = "jax"

    def __init__(self, options, *, device: str, dtype: str) -> None:
        from odebench_jax import JaxRuntime, jax_device

        super().__init__(options)
        dt = JaxRuntime.resolve_dtype(dtype)
        self.device = jax_device(device)
        self.t = jax.device_put(jnp.asarray(self.times, dt), self.device)
        self.y0 = {p.name: jax.device_put(jnp.asarray(p.y0, dt), self.device) for p in self.problems}
        self.f = {p.name: functools.partial(_rhs, p.rhs) for p in self.problems}
        self._programs: dict = {}

    def _compile(self, name: str, odeint) -> Program:
        from odebench_jax import Uncounted

        f, t, counts = self.f[name], self.t, SolveStats()

        def build(bound):
            return jax.jit(lambda y0: bound(f, y0, t)).lower(self.y0[name]).compile()

        if odeint.backend.callback_counts:
            return Program(build(odeint.with_stats(Uncounted())), counts, build(odeint.with_stats(counts)))
        if odeint.backend.returns_counts:
            returning = jax.jit(lambda y0: odeint.with_stats(counts)(f, y0, t, return_counts=True))
            return Program(returning.lower(self.y0[name]).compile(), counts, None, True)
        return Program(build(odeint.with_stats(counts)), counts, None)

    def _programs_for(self, odeint) -> tuple[dict, Optional[float]]:
        """The programs of this solver setting, and the seconds compiling them took (None: cached)."""
        key = (id(odeint.backend), str(odeint.solver), odeint.rtol, odeint.atol,
               json.dumps(odeint.options, sort_keys=True, default=str))
        if key in self._programs:
            return self._programs[key], None
        t0 = time.perf_counter()
        programs = {p.name: self._compile(p.name, odeint) for p in self.problems}
        self._programs[key] = programs
        return programs, time.perf_counter() - t0

    def timed_solve(self, odeint):
        from odebench_jax import collect

        programs, compile_s = self._programs_for(odeint)
        out, nfe, seconds = {}, {}, 0.0
        for p in self.problems:
            program = programs[p.name]
            program.counts.reset()
            t0 = time.perf_counter()
            out[p.name] = jax.block_until_ready(program.timed(self.y0[p.name]))
            seconds += time.perf_counter() - t0
            if program.returning:  # the counts came back with the solution; collect raises a failure
                out[p.name], returned = out[p.name]
                collect(program.counts, returned)
            if program.count is not None:
                jax.block_until_ready(program.count(self.y0[p.name]))
            jax.effects_barrier()  # every count has reached program.counts
            for field, value in program.counts.as_dict().items():
                setattr(odeint.stats, field, getattr(odeint.stats, field) + value)
            nfe[p.name] = program.counts.nfe_forward
        return {k: jax.device_get(v) for k, v in out.items()}, nfe, seconds, compile_s


class JaxDetest:
    """The framework loader's target: ``setup`` builds one cell's problem."""

    @staticmethod
    def setup(options, *, seed: int, device: str, dtype: str) -> DetestJax:
        return DetestJax(options, device=device, dtype=dtype)
