"""jax-backprop: reverse mode through the solver's accepted steps, recorded on a tape."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import lax

from odebench.solve import StagePlan, stage_plan
from odebench.solve.options import FIXED_DEFAULTS
from odebench.specs import SolveStats

from .base import JaxBackend, Problem, args_cotangent, is_inexact
from .carry import pack, unpack, zero_carry
from .config import OK, SolveConfig
from .controller import fixed_step_count, make_attempt
from .counts import BACKWARD_FIELDS, record_concrete, tally_cotangent
from .dtypes import control_dtype
from .loop import integrate_jit, make_advance
from .pullback import choose, pull_back
from .state import FlatFunc
from .step import rk_step
from .tape import Tape, read_checkpoint, write_tape

BACKPROP_MAX_STEPS = 4096  # diffrax's default; jax-backprop's memory is proportional to it


def _retape(f, cfg: SolveConfig, checkpoints, segment, last, tape: Tape, args, times, nums):
    """Tape segment ``segment`` again, from its first carry (nothing when it is the ``last``,
    which the forward left on the tape): (the tape, the evaluations it took)."""
    plan = stage_plan(cfg.tableau)
    cdt = control_dtype()
    rows = tape.t.shape[0]
    direction = jnp.where(times[-1] > times[0], 1.0, -1.0).astype(cdt)
    advance = make_advance(f, plan, times, direction, args, make_attempt(f, plan, cfg, times, args, nums, cdt))
    p0 = read_checkpoint(checkpoints, segment, zero_carry(tape.y[0], cdt))
    end = (segment + 1) * rows

    def body(state):
        p, ys, tape = state
        c = unpack(p)
        c2, ys, row = advance(c, ys)
        return pack(c2), ys, write_tape(tape, c.acc % rows, *row)

    scratch = jnp.zeros((times.shape[0],) + p0[0].shape, p0[0].dtype)  # the outputs, not needed
    p, _, tape = lax.while_loop(lambda s: (segment < last) & (s[0][4][2] < end), body, (p0, scratch, tape))
    return tape, p[4][1] - p0[4][1]


def backprop_backward(f: Callable, cfg: SolveConfig, treedef, diff: tuple, taped, n_steps, ct_ys, arg_leaves,
                      times, nums):
    """Reverse mode through the recorded steps, last to first.  A step's outputs are y_new (at
    its end) or the interpolant alpha y + gamma y_new + h (sum_j beta_j k_j + delta f_new),
    linear in (y, y_new, the stages, f_new): their cotangents are gathered into one cotangent
    for each (``_output_cotangents``), then (a, dparams) <- vjp of the recomputed step.

    With an FSAL tableau a step's first stage f(t, y) is the previous step's last stage: it is
    evaluated again, but not differentiated, and its cotangent goes to the previous step's last
    stage, as in the forward graph.  So a step costs s evaluations and s - 1 pullbacks (a
    pullback costs two to four evaluations), as diffrax's checkpointed steps; only the first
    step's f(t0, y0) is pulled back on its own, once (one evaluation more).  Keeping f(t, y) on
    the tape instead would save its evaluation but double the tape, allocated and zero-filled on
    every solve: measured slower with a tape of max_steps rows (glibc maps buffers of 32 MB and
    more afresh, so their page faults are paid on every call).  Other tableaus recompute and
    pull back every stage.

    ``taped`` is the forward's (tape, checkpoints).  The segments are walked from the last to
    the first; each but the last (left on the tape by the forward) is taped again from its
    first carry, and those evaluations are counted too.

    func's args are ``treedef.unflatten(arg_leaves)``; the leaves at the indices ``diff`` are
    differentiated.  Step sizes are constants (step-size control is not differentiated, as in
    torch).  Returns (dL/dy0, [dL/d leaf for each index in diff], the evaluations recomputed).
    """
    tape, checkpoints = taped
    plan = stage_plan(cfg.tableau)
    params = [arg_leaves[i] for i in diff]
    evaluation = partial(_evaluation_pullback, f, treedef, diff, ct_ys.dtype)
    batched = choose(("evaluation", f, treedef, diff), evaluation, tape.y[0], params, list(arg_leaves),
                     tape.t[0], ct_ys[0])
    n = jnp.asarray(n_steps, jnp.int32)
    reverse = _Reverse(f, cfg, plan, treedef, diff, arg_leaves, params, jnp.asarray(times, tape.t.dtype), nums,
                       ct_ys, batched, checkpoints, n, jnp.maximum(n - 1, 0) // tape.t.shape[0])
    zeros = jnp.zeros_like(ct_ys[0])
    g0 = jax.tree_util.tree_map(jnp.zeros_like, params)
    start = (reverse.last, tape, zeros, g0, jnp.asarray(0, jnp.int32), zeros)
    _, tape, a, g, nfe, ct_first = lax.while_loop(lambda c: c[0] >= 0, reverse.segment_back, start)
    if plan.fsal:  # the first step's f(t0, y0), once (its row sliced outside the cond, which would copy the tape)
        took = n > 0
        y_first, t_first = tape.y[0], tape.t[0]
        da, dp = lax.cond(took, lambda: evaluation(batched, y_first, params, arg_leaves, t_first, ct_first),
                          lambda: (zeros, g0))
        a, g, nfe = a + da, jax.tree_util.tree_map(jnp.add, g, dp), nfe + took.astype(jnp.int32)
    return a + ct_ys[0], g, nfe


def _args_with(treedef, diff: tuple, leaves, p):
    """func's args from all its leaves, the differentiated ones (at ``diff``) replaced by ``p``."""
    full = list(leaves)
    for i, leaf in zip(diff, p):
        full[i] = leaf
    return treedef.unflatten(full)


def _evaluation_pullback(f, treedef, diff: tuple, dtype, batched, y, p, leaves, t, cotangent):
    """One evaluation's pullback (dL/dy, dL/dparams): it also decides how the steps' are
    computed.  (Everything it uses is an operand: ``choose`` compiles it on its own.)"""
    _, vjp = jax.vjp(lambda y, p: f(t.astype(dtype), y, _args_with(treedef, diff, leaves, p)), y, p)
    return pull_back(vjp, cotangent, batched)


@dataclass(frozen=True, eq=False)
class _Reverse:
    """What every step of one reverse pass shares, fixed while ``backprop_backward`` traces:
    the dynamics, the stage plan, func's args (``params``: the differentiated leaves), the
    output times and their cotangents, how pullbacks are computed (``batched``), the tape's
    segment checkpoints, the number of accepted steps ``n`` and the ``last`` segment."""

    f: Callable
    cfg: SolveConfig
    plan: StagePlan
    treedef: Any
    diff: tuple
    arg_leaves: Any
    params: list
    times: Any
    nums: Any
    ct_ys: Any
    batched: bool
    checkpoints: Any
    n: Any
    last: Any

    def segment_back(self, c):
        """One segment, its last step to its first (taped again first unless it is the last)."""
        segment, tape, a, g, nfe, ct_last = c
        args = self.treedef.unflatten(list(self.arg_leaves))
        tape, retaped = _retape(self.f, self.cfg, self.checkpoints, segment, self.last, tape, args, self.times,
                                self.nums)
        rows = tape.times.shape[0]  # (not tape.t: a slice, traced into the loop for nothing)
        first = segment * rows
        inner = (jnp.minimum(self.n, first + rows) - 1, a, g, nfe + retaped, ct_last)
        _, a, g, nfe, ct_last = lax.while_loop(lambda c: c[0] >= first, partial(self.step_back, tape, first), inner)
        return segment - 1, tape, a, g, nfe, ct_last

    def step_back(self, tape, first, c):
        """Step i (tape row i - first): its outputs' cotangents gathered, then pulled back."""
        plan = self.plan
        i, a, g, nfe, ct_last = c
        r = i - first
        ct_y, ct_new, ct_ks, ct_f = _output_cotangents(plan, tape, r, self.times, self.ct_ys, tape.h[r])
        cotangents = (a + ct_new, ct_ks.at[-1].add(ct_last), ct_f)  # FSAL: the next step's f(t, y)
        if plan.needs_end_slope:  # f(t + h, y_new) only where the step interpolated
            slope = jnp.any(ct_f != 0)
            da, df0, dp = lax.cond(slope, lambda: self.step_pullback(tape, r, cotangents, True),
                                   lambda: self.step_pullback(tape, r, cotangents, False))
            nfe = nfe + slope.astype(jnp.int32)
        else:
            da, df0, dp = self.step_pullback(tape, r, cotangents, False)
        return i - 1, da + ct_y, jax.tree_util.tree_map(jnp.add, g, dp), nfe + len(plan.c), df0

    def step_pullback(self, tape, i, cotangents, with_end_slope):
        """(dL/dy, dL/df(t, y) (zero unless FSAL), dL/dparams) of the step on tape row i."""
        plan, dtype, params = self.plan, self.ct_ys.dtype, self.params
        g, to_state, to_flat = _step_function(self.f)
        t, h = tape.t[i], tape.h[i]

        def step(y, f0, p):
            args = _args_with(self.treedef, self.diff, self.arg_leaves, p)
            f0 = g(t.astype(dtype), y, args) if f0 is None else f0
            y_new, ks = rk_step(g, plan, t, y, f0, h, args, unroll=True)
            f_new = g((t + h).astype(dtype), y_new, args) if with_end_slope else jax.tree_util.tree_map(
                jnp.zeros_like, y_new)
            return y_new, tuple(ks), f_new

        a, ct_ks, ct_f = cotangents
        cotangents = (to_state(a), tuple(to_state(ct_ks[j]) for j in range(len(plan.c))), to_state(ct_f))
        y = to_state(tape.y[i])
        if plan.fsal:  # f(t, y) evaluated, not differentiated: its cotangent is returned
            f0 = g(t.astype(dtype), y, _args_with(self.treedef, self.diff, self.arg_leaves, params))
            _, vjp = jax.vjp(step, y, f0, params)
            da, df0, dp = pull_back(vjp, cotangents, self.batched)
            return to_flat(da), to_flat(df0), dp
        _, vjp = jax.vjp(lambda y, p: step(y, None, p), y, params)
        da, dp = pull_back(vjp, cotangents, self.batched)
        return to_flat(da), jnp.zeros_like(tape.y[i]), dp


def _step_function(f):
    """(g, flat -> g's state, g's state -> flat) for differentiating a recomputed step.

    A tuple state (the CNF's (z, log p)) is stepped as the tuple: the flat vector's slicing
    and concatenation around every evaluation cost a fifth of a CNF step's pullback (20.7 ->
    16.9 ms for one dopri5 step on benchmarks/jax_cost.py's CNF)."""
    if isinstance(f, FlatFunc) and f.layout.is_tuple:
        layout = f.layout
        return (lambda t, y, args: f._outputs(f.func(t, y, args))), layout.unflatten, layout.flatten
    return f, (lambda v: v), (lambda v: v)


def _output_cotangents(plan: StagePlan, tape: Tape, i, times, ct_ys, h):
    """The cotangents of step i's outputs gathered onto (y, y_new, the stages, f_new): an output
    at the step's end goes to y_new, one inside through the interpolation weights."""
    n = ct_ys.shape[1]
    s = len(plan.c)
    dtype = ct_ys.dtype

    def add(m, acc):
        ct_y, ct_new, ct_ks, ct_f = acc
        ct = ct_ys[m]
        end = times[m] == tape.t_end[i]
        alpha, betas, gamma, delta = plan.interpolation_weights((times[m] - tape.t[i]) / h)
        w = lambda x: jnp.where(end, 0.0, jnp.asarray(x)).astype(dtype)  # noqa: E731
        betas = jnp.stack([w(b) for b in betas])
        return (ct_y + w(alpha) * ct, ct_new + jnp.where(end, 1.0, w(gamma)).astype(dtype) * ct,
                ct_ks + (h.astype(dtype) * betas)[:, None] * ct[None, :], ct_f + (h * w(delta)).astype(dtype) * ct)

    zeros = jnp.zeros(n, dtype)
    return lax.fori_loop(tape.k_lo[i], tape.k_hi[i], add, (zeros, zeros, jnp.zeros((s, n), dtype), zeros))


class BackpropBackend(JaxBackend):
    """Reverse mode through the solver's steps: the exact gradient of the discretisation.

    A ``jax.custom_vjp``.  Without a derivative the solve is the plain ``lax.while_loop``.
    Differentiated, the same loop also records a tape of the accepted steps -- the state before
    each step, its t and h, its end and the outputs it produced -- in buffers of
    min(max_steps, 256) rows (``tape.SEGMENT_ROWS``); a longer solve is taped in segments
    of 256 steps, with the loop's carry kept at the start of each.  The backward pass walks the
    tape from the last step to the first in a ``lax.while_loop``, recomputing each step's
    stages under ``jax.vjp`` (a checkpoint per step): it costs one step's evaluations (every
    stage, f(t, y) included) per accepted step, counted as ``nfe_backward``, and does work only
    for the steps taken.  Before each segment but the last it tapes that segment again from its
    first carry (a forward pass over it, counted too).  Memory: one segment of the tape plus a
    carry (two states) per 256 of max_steps, and one step's activations.  max_steps defaults to
    4096 here (diffrax's default) instead of 10,000 (and a fixed-step solve whose times are
    traced, so that its step count is unknown when the tape is built, gets 4096 instead of its
    default 10^6: see ``_tape_length``).  Step-size control is not differentiated (as in torch:
    the accepted steps are constants of the backward pass).
    Reverse mode only (``jax.grad``, ``jax.vjp``); forward mode (``jax.jvp``) is not defined.
    """

    method = "backprop"
    max_steps_default = BACKPROP_MAX_STEPS

    def _run(self, problem: Problem, stats: SolveStats, tally):
        f = problem.f
        cfg = problem.config("while")
        length, options = _tape_length(problem)
        cfg_rec = problem.config("record", length, options=options)
        leaves, treedef = jax.tree_util.tree_flatten(problem.args)
        diff = tuple(i for i, leaf in enumerate(leaves) if is_inexact(leaf))
        backend = self

        @jax.custom_vjp
        def solve(y0, args, times, nums, tally):
            return integrate_jit(f, cfg, y0, args, times, nums)

        def solve_fwd(y0, args, times, nums, tally):
            ys, counts, status, info, taped = integrate_jit(f, cfg_rec, y0, args, times, nums)
            return (ys, counts, status, info), (taped, counts, status, args, times, nums, tally)

        def solve_bwd(res, cts):
            taped, forward, status, args, times, nums, tally = res
            arg_leaves = treedef.flatten_up_to(args)
            grad_y0, grad_params, nfe = _backprop_backward_jit(f, cfg_rec, treedef, diff, taped, forward[1], cts[0],
                                                               list(arg_leaves), times, nums)
            failed = status != OK  # the forward returned NaN; so do the gradients
            grad_y0 = jnp.where(failed, jnp.nan, grad_y0)
            grad_params = [jnp.where(failed, jnp.nan, g) for g in grad_params]
            counts = jnp.stack([nfe, jnp.zeros_like(nfe), jnp.zeros_like(nfe)])
            ok = jnp.asarray(OK, jnp.int32)
            record_concrete(backend, stats, BACKWARD_FIELDS, counts, ok, jnp.zeros(3, problem.cdt),
                            cfg_rec.opts["max_steps"])
            return (grad_y0, args_cotangent(treedef, arg_leaves, diff, grad_params), jnp.zeros_like(times),
                    jnp.zeros_like(nums), tally_cotangent((forward, status), (counts, ok), tally))

        solve.defvjp(solve_fwd, solve_bwd)
        return solve(problem.y0_flat, problem.args, problem.times, problem.nums, tally)


def _tape_length(problem: Problem):
    """The tape's rows, and the options of the recording solve (its max_steps may be lowered).

    Adaptive: max_steps (4096 by default).  Fixed step with concrete times: the steps it will
    take.  Fixed step with traced times (built inside jit) and the default max_steps (10^6,
    which would be a tape of 10^6 x n): 4096 rows, and max_steps lowered to match, so a longer
    solve fails as max_steps exceeded (options={"max_steps": N} raises it)."""
    options, length = problem.options, problem.options["max_steps"]
    if problem.tableau.adaptive:
        return length, options
    if problem.times_list is not None:  # the tape needs no more rows
        steps = fixed_step_count(problem.times_list, options["step_size"], problem.cdt)
        return min(length, steps + len(problem.times_list)), options
    if length == FIXED_DEFAULTS["max_steps"] > BACKPROP_MAX_STEPS:
        return BACKPROP_MAX_STEPS, {**options, "max_steps": BACKPROP_MAX_STEPS}
    return length, options


_backprop_backward_jit = jax.jit(backprop_backward, static_argnums=(0, 1, 2, 3))
