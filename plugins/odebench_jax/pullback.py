"""How a vector-Jacobian product is pulled back: plainly, or as a batch of one -- measured.

The adjoint's backward evaluation and jax-backprop's recomputed step pull a cotangent back
through the user's dynamics.  Pulled back as a batch of one (``jax.vmap`` of the pullback over
a leading axis of size 1) the values are identical, but XLA emits different kernels: on CPU the
parameter gradients of a dense layer, contractions over the data batch (``a^T h``, contracting
dimension 0 of both operands), become batched dots about twice as fast as the plain ones (an
MLP's backward evaluation: 343 -> 213 us; diffrax's AdjointTerm gets the same effect from
``jax.jacfwd`` over its control), while dynamics that differentiate inside themselves (the CNF's
exact trace) get three times slower.  No rule predicts which, so each evaluation program is
compiled both ways once, on zeros of its shapes, timed, and the faster kept (cached per
program and shapes for the process).  Programs under ``MIN_FLOPS`` by XLA's estimate (not
compiled at all) or under ``MIN_PROBE_S`` per evaluation, and backends other than CPU (not
measured yet), keep the plain pullback.
"""

from __future__ import annotations

import time
from typing import Callable

import jax
import numpy as np

MODE = "auto"  # "auto" (measure), "plain" or "batched": the benchmarks' switch
MIN_FLOPS = 1e6  # a pullback estimated below this (XLA's cost analysis) is not measured: plain
MIN_PROBE_S = 100e-6  # below this per plain evaluation the choice is not worth its compile time
_CHOICES: dict = {}


def pull_back(vjp: Callable, cotangent, batched: bool):
    """``vjp(cotangent)``, computed as a batch of one when ``batched``."""
    if not batched:
        return vjp(cotangent)
    out = jax.vmap(vjp)(jax.tree_util.tree_map(lambda x: x[None], cotangent))
    return jax.tree_util.tree_map(lambda x: x[0], out)


def choose(key, evaluate: Callable, *operands) -> bool:
    """Whether ``evaluate(batched, *operands)`` (one pullback program) runs faster batched.

    Called while tracing: only the operands' shapes and dtypes are used.  The answer is cached
    under ``key`` and those shapes."""
    if MODE != "auto":
        return MODE == "batched"
    if jax.default_backend() != "cpu":
        return False
    leaves, treedef = jax.tree_util.tree_flatten(operands)
    specs = tuple((tuple(np.shape(x)), str(jax.numpy.result_type(x))) for x in leaves)
    cache_key = (key, treedef, specs)
    if cache_key not in _CHOICES:
        _CHOICES[cache_key] = _measure(evaluate, treedef, specs)
    return _CHOICES[cache_key]


def _flops(lowered) -> float:
    try:
        analysis = lowered.cost_analysis()
        analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
        return float(analysis.get("flops", float("inf")))
    except Exception:  # no estimate: measure
        return float("inf")


def _measure(evaluate: Callable, treedef, specs) -> bool:
    with jax.ensure_compile_time_eval():
        zeros = treedef.unflatten([np.zeros(shape, dtype) for shape, dtype in specs])
        programs = {}
        for batched in (False, True):
            lowered = jax.jit(lambda ops, b=batched: evaluate(b, *ops)).lower(zeros)
            if not batched and _flops(lowered) < MIN_FLOPS:  # too small to matter: not worth a compile
                return False
            programs[batched] = lowered.compile()
            if not batched and _best_of({False: programs[False]}, zeros, 2)[False] < MIN_PROBE_S:
                return False
        seconds = _best_of(programs, zeros, 7)
    return seconds[True] < 0.9 * seconds[False]


def _best_of(programs: dict, operands, rounds: int) -> dict:
    """Each program's best time over ``rounds`` rounds, the programs taking turns within a
    round: a slow spell of the machine (seconds long on a shared VM) then slows both, where
    timing one program after the other once picked the plain pullback for an MLP in a
    benchmark run (its backward 1.5 times slower)."""
    for program in programs.values():
        jax.block_until_ready(program(operands))
    best = dict.fromkeys(programs, float("inf"))
    for _ in range(rounds):
        for key, program in programs.items():
            start = time.perf_counter()
            jax.block_until_ready(program(operands))
            best[key] = min(best[key], time.perf_counter() - start)
    return best
