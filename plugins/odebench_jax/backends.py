"""The JAX gradient methods: backprop through the solver, the adjoint, the seminorm adjoint.

All three share one call, modelled on torchdiffeq / the torch backends::

    ys = backend.odeint(func, y0, t, args, solver="dopri5", rtol=1e-7, atol=1e-9, options=None, stats=None)

``func(t, y, args) -> dy``; ``y0`` an array or a tuple of arrays; ``args`` a pytree of arrays
(the parameters).  Gradients flow to ``y0`` and to every inexact leaf of ``args`` (not to t).
It works eagerly and under ``jax.jit`` / ``jax.grad`` / ``jax.value_and_grad``.  The result is
y at every time of ``t`` stacked on axis 0 (a tuple of such arrays for a tuple ``y0``).

Counts.  The counters are computed inside the compiled loop.  When the call runs eagerly they
are added to ``backend.last_stats`` (a SolveStats; ``stats=`` supplies your own, which then
accumulates) before odeint returns; the adjoint's backward counts when its backward runs.
Under a transformation (jit, or a grad inside jit) they leave the compiled program through a
host callback (``report.py``) whose (zero) result the solution and the gradients depend on:
the forward counts (nfe_forward, steps_accepted, steps_rejected) every
time the forward solve executes, the backward counts (nfe_backward, steps_*_backward) every
time the adjoint's backward executes, added to the SolveStats that was current when the
function was traced (pass ``stats=`` and reset it between iterations to read per-iteration
counts; ``backend.last_stats`` is set to that object by each callback).

``export_counts=False`` leaves that callback out: a traced solve then records no counts and
reports no failure (its solution is NaN all the same); an eager one still records them.  The
export costs about 0.23 ms per solve on CPU -- the callback and the Python dispatch path a
program with a host callback takes (README, "cost per evaluation").

Counts as data, the way diffrax returns its statistics (``counts.py``):
``return_counts=True`` returns ``(ys, SolveCounts)``, the forward counts and status as arrays
of the program, and ``tally=counts.tally()`` makes the backward counts that input's cotangent
(differentiate with respect to it too); each replaces its half of the callback.
``counts.collect(stats, counts, tally_grad)`` adds them to a SolveStats on the host.

Errors.  Bad input (solver name, tolerances, times, y0, func's output shape/dtype, options)
raises before anything is traced, with the torch backends' messages.  Failures found while
integrating (max_steps exceeded, nan/inf in the state, step-size underflow) raise the same
odebench errors (MaxStepsError, NonFiniteStateError) when the call runs eagerly -- also inside
an eager jax.grad.  Inside jit nothing can raise: the solution (and the adjoint's gradients) is
returned as NaN, the error is stored in ``backend.last_error`` by the stats callback and a
RuntimeWarning names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from odebench.errors import InvalidInputError, NonFiniteStateError
from odebench.solve import WARM, GradientBackend, SolveSetup, adjoint_norm_slices, error_for
from odebench.solve.options import FIXED_DEFAULTS
from odebench.specs import SolveStats

from .integrate import (
    OK,
    SolveConfig,
    control_dtype,
    fixed_step_count,
    integrate,
    integrate_jit,
    backprop_backward,
    make_config,
    numbers,
)
from .counts import (BACKWARD_FIELDS, FORWARD_FIELDS, SolveCounts, check_tally, tally_cotangent,
                     warn_traced_failure)
from .pullback import choose, pull_back
from .report import report
from .state import (FlatFunc, TwoArgs, check_function, hoist_closure, is_tracer, make_state, reject_traced,
                    takes_two_arguments, times_of)

BACKPROP_MAX_STEPS = 4096  # diffrax's default; jax-backprop's memory is proportional to it


class _Problem:
    """One odeint call, checked: the setup (tableau, tolerances, options), times, state layout, function."""

    def __init__(self, setup: SolveSetup, func, y0, t, args) -> None:
        self.setup = setup
        self.tableau, self.options = setup.tableau, setup.options
        self.cdt = control_dtype()
        self.times, self.times_list = times_of(t, self.cdt)
        self.layout, parts = make_state(y0)
        if not callable(func):
            raise InvalidInputError(f"func must be callable as func(t, y, args), got {type(func).__name__}")
        if args is None and takes_two_arguments(func):
            func = TwoArgs(func)
        check_function(func, self.layout, args)
        func, args = hoist_closure(func, jnp.zeros((), parts[0].dtype), tuple(parts) if self.layout.is_tuple
                                   else parts[0], args)
        self.y0_flat = self.layout.flatten(parts)
        if not is_tracer(self.y0_flat) and not bool(np.all(np.isfinite(np.asarray(self.y0_flat)))):
            raise NonFiniteStateError("non-finite value (nan/inf) in y0")
        self.func = func
        self.args = args
        self.f = FlatFunc(func, self.layout)

    def config(self, driver="while", length=0, options=None, slices="state") -> SolveConfig:
        return make_config(self.tableau, self.options if options is None else options,
                           self.layout.slices if slices == "state" else slices, driver, length)

    @property
    def nums(self):
        return numbers(self.setup.rtol, self.setup.atol, self.options, self.cdt)


def _concrete(x) -> Optional[np.ndarray]:
    """x's value when it is known now (eager, or an eager grad's primal), else None (traced)."""
    if not is_tracer(x):
        return np.asarray(x)
    try:
        flat = jnp.reshape(lax.stop_gradient(x), (-1,))  # a float output's tangent hides its value
        return np.asarray([float(flat[i]) for i in range(flat.shape[0])]).reshape(x.shape)
    except Exception:  # a jit/vmap tracer: its value exists only when the program runs
        return None


def _report(backend, stats: SolveStats, fields, counts, status, info, max_steps: int, export: bool = True):
    """Add counts to stats; raise (eager) or record and warn (traced) a failed status.  With
    ``export`` False a traced solve reports nothing (no host callback in the program).

    Traced, the counts leave the program through a host callback, once per solve, and the
    return value is a zero (0-d, or one per vmap element) the caller adds to a result of the
    solve, so the callback runs when, and only when, the solve does.  (None when eager.)"""

    def record(rows):
        """rows: one [3 counts, status, 3 info] list per vmap element, summed into stats."""
        for j, name in enumerate(fields):
            setattr(stats, name, getattr(stats, name) + sum(round(r[j]) for r in rows))
        backend.last_stats = stats
        for r in rows:
            if round(r[3]) != OK:
                return error_for(round(r[3]), *r[4:], max_steps=max_steps)
        return None

    def concrete_rows(counts, status, info):
        return np.concatenate([np.reshape(counts, (-1, 3)), np.reshape(status, (-1, 1)),
                               np.reshape(info, (-1, 3))], axis=1).astype(float).tolist()

    values = [_concrete(x) for x in (counts, status, info)]
    if all(v is not None for v in values):
        err = record(concrete_rows(*values))
        if err is not None:
            backend.last_error = err
            raise err
        return None
    if not export:
        return None

    def callback(packed):
        # Called on the host buffer with the program waiting: plain Python on a few numbers
        # (numpy's per-call overheads were most of the 50 us this took).
        err = record(packed.reshape(-1, 7).tolist())  # one row per vmap element
        if err is not None:
            warn_traced_failure(backend, err)
        return np.zeros(packed.shape[:-1], packed.dtype)

    # One array instead of three: each argument of a host callback costs a transfer.  Counts
    # and status codes are small integers, exact in floats.  A callback whose (zero) result the
    # solve's output depends on is cheaper than jax.debug.callback, and report's primitive
    # cheaper than jax.pure_callback (report.py).
    info = jnp.asarray(info)
    packed = lax.stop_gradient(jnp.concatenate([jnp.asarray(counts).astype(info.dtype),
                                                jnp.asarray(status).astype(info.dtype)[..., None], info], axis=-1))
    return report(callback, packed)


def _after(token, value, scale: bool = False):
    """``value`` made to depend on a report's token (a zero), so the count callback runs with it:
    ``value + token``, or with ``scale`` ``value * (1 + token)`` (exactly ``value``), which a
    gradient of ``value`` needs too -- so a forward solve's counts arrive under ``jax.grad``,
    where the solution's value itself is dead code."""
    if token is None:
        return value
    token = jnp.reshape(token, jnp.shape(token) + (1,) * (jnp.ndim(value) - jnp.ndim(token))).astype(value.dtype)
    return value * (1 + token) if scale else value + token


def _count_options(kwargs: dict):
    """(export_counts, return_counts, tally) popped from an odeint call's keywords, checked."""
    export = kwargs.pop("export_counts", True)
    returned = kwargs.pop("return_counts", False)
    tally = kwargs.pop("tally", None)
    for name, value in (("export_counts", export), ("return_counts", returned)):
        if not isinstance(value, bool):
            raise InvalidInputError(f"{name} must be True or False, got {value!r}")
    if tally is not None:
        check_tally(tally)
    return export, returned, tally


@dataclass(frozen=True)
class _Outlet:
    """Where a solve's backward counts go: the host callback (``export``), and the cotangent of
    ``tally`` (the caller's, or a zero nobody reads) -- see ``counts.py``."""

    export: bool
    tally: object = None

    def tally_input(self):
        return self.tally if self.tally is not None else jnp.zeros(4, jnp.float32)


class JaxBackend(GradientBackend):
    """Base: the shared call (solver lookup and the checks are odebench.solve's)."""

    framework = "jax"
    returns_counts = True  # odeint(..., return_counts=True, tally=...): the trainer's programs use it

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.last_error: Optional[Exception] = None

    def setup(self, solver, rtol, atol, options) -> SolveSetup:
        reject_traced("rtol", rtol)
        reject_traced("atol", atol)
        return super().setup(solver, rtol, atol, options)

    def _odeint(self, func, y0, t, args, setup: SolveSetup, stats: SolveStats, **method_kwargs):
        problem = _Problem(setup, func, y0, t, args)
        export, returned, tally = _count_options(method_kwargs)
        self._check_method_kwargs(method_kwargs)
        ys, counts, status, info = self._run(problem, stats, _Outlet(export and tally is None, tally),
                                             **method_kwargs)
        max_steps = problem.options["max_steps"]
        token = _report(self, stats, FORWARD_FIELDS, counts, status, info, max_steps, export and not returned)
        ys = problem.layout.unflatten_trajectory(_after(token, ys, scale=True))
        return (ys, SolveCounts.of(counts, status, info, max_steps)) if returned else ys

    def _check_method_kwargs(self, kwargs) -> None:
        if kwargs:
            raise InvalidInputError(f"{self.name}.odeint got unexpected keyword(s) {', '.join(sorted(kwargs))}")

    def _run(self, problem: _Problem, stats: SolveStats, outlet: _Outlet, **kwargs):
        """(ys, counts, status, info) of the forward solve, its backward's counts sent to ``outlet``."""
        raise NotImplementedError


class BackpropBackend(JaxBackend):
    """Reverse mode through the solver's steps: the exact gradient of the discretisation.

    A ``jax.custom_vjp``.  Without a derivative the solve is the plain ``lax.while_loop``.
    Differentiated, the same loop also records a tape of the accepted steps -- the state before
    each step, its t and h, its end and the outputs it produced -- in buffers of
    min(max_steps, 256) rows (``integrate.SEGMENT_ROWS``); a longer solve is taped in segments
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

    def _run(self, problem: _Problem, stats: SolveStats, outlet: _Outlet):
        f = problem.f
        cfg = problem.config("while")
        length, options = _tape_length(problem)
        cfg_rec = problem.config("record", length, options=options)
        leaves, treedef = jax.tree_util.tree_flatten(problem.args)
        diff = tuple(i for i, leaf in enumerate(leaves) if _is_inexact(leaf))
        backend = self

        @jax.custom_vjp
        def solve(y0, args, times, nums, tally):
            return integrate_jit(f, cfg, y0, args, times, nums)

        def solve_fwd(y0, args, times, nums, tally):
            ys, counts, status, info, taped = integrate_jit(f, cfg_rec, y0, args, times, nums)
            return (ys, counts, status, info), (taped, counts[1], status, args, times, nums, tally)

        def solve_bwd(res, cts):
            taped, n_steps, status, args, times, nums, tally = res
            arg_leaves = treedef.flatten_up_to(args)
            grad_y0, grad_params, nfe = _backprop_backward_jit(f, cfg_rec, treedef, diff, taped, n_steps, cts[0],
                                                               list(arg_leaves), times, nums)
            failed = status != OK  # the forward returned NaN; so do the gradients
            grad_y0 = jnp.where(failed, jnp.nan, grad_y0)
            grad_params = [jnp.where(failed, jnp.nan, g) for g in grad_params]
            counts = jnp.stack([nfe, jnp.zeros_like(n_steps), jnp.zeros_like(n_steps)])
            ok = jnp.asarray(OK, jnp.int32)
            token = _report(backend, stats, BACKWARD_FIELDS, counts, ok, jnp.zeros(3, problem.cdt),
                            cfg_rec.opts["max_steps"], outlet.export)
            grad_params = [_after(token, g) for g in grad_params]  # whichever gradient is used, the count arrives
            return (_after(token, grad_y0), _args_cotangent(treedef, arg_leaves, diff, grad_params),
                    jnp.zeros_like(times), jnp.zeros_like(nums), tally_cotangent(counts, ok, tally))

        solve.defvjp(solve_fwd, solve_bwd)
        return solve(problem.y0_flat, problem.args, problem.times, problem.nums, outlet.tally_input())


def _tape_length(problem: _Problem):
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


def _args_cotangent(treedef, arg_leaves, diff, grads):
    """The cotangent of args: the gradients on the inexact leaves, float0 zeros elsewhere."""
    out, it = [], iter(grads)
    for i, leaf in enumerate(arg_leaves):
        if i in diff:
            out.append(jnp.reshape(next(it), jnp.shape(leaf)).astype(jnp.result_type(leaf)))
        else:
            out.append(np.zeros(jnp.shape(leaf), dtype=jax.dtypes.float0))
    return treedef.unflatten(out)


_backprop_backward_jit = jax.jit(backprop_backward, static_argnums=(0, 1, 2, 3))


# ---------------------------------------------------------------------------------------
# adjoint
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class _Augmented:
    """The adjoint system s = [y, a, g]:  y' = f,  a' = -a^T df/dy,  g' = -a^T df/dargs.

    Only the inexact leaves of args (``diff``) get a cotangent channel.  Hashable (it is a
    static argument of the jitted backward solve).
    """

    f: FlatFunc
    n: int
    treedef: object
    diff: tuple  # indices of the inexact leaves of args

    def __call__(self, t, s, args):
        batched = choose(self, self._evaluate, t, s, args)  # see odebench_jax.pullback
        return self._evaluate(batched, t, s, args)

    def _evaluate(self, batched, t, s, args):
        n = self.n
        y, a = s[:n], s[n:2 * n]
        leaves = self.treedef.flatten_up_to(args)
        params = [leaves[i] for i in self.diff]

        def f(y, params):
            full = list(leaves)
            for i, p in zip(self.diff, params):
                full[i] = p
            return self.f(t, y, self.treedef.unflatten(full))

        dy, vjp = jax.vjp(f, y, params)
        gy, gp = pull_back(vjp, -a, batched)
        return jnp.concatenate([dy, gy] + [jnp.reshape(g, (-1,)).astype(s.dtype) for g in gp])

    def __hash__(self):
        return hash((self.f, self.n, self.treedef, self.diff))

    def __eq__(self, other):
        return (isinstance(other, _Augmented) and self.f == other.f and self.n == other.n
                and self.treedef == other.treedef and self.diff == other.diff)


def _adjoint_backward(aug: _Augmented, cfg: SolveConfig, ys, ct_ys, args, times, nums, h_forward):
    """Integrate [y, a, g] backwards between consecutive output times, restarting y from the
    stored forward value and adding the output cotangent at each time.

    With first_step "warm" the first segment starts with ``h_forward`` (the step the forward
    solve's controller proposed last) and every later one with the step the previous segment
    proposed last.  Returns (dL/dy0, dL/dargs as one flat vector, counts, status, info).
    """
    T, n = ys.shape
    dtype = ys.dtype
    cdt = control_dtype()
    times = jnp.asarray(times, cdt)
    warm = cfg.opts.get("first_step") == WARM
    leaves = aug.treedef.flatten_up_to(args)
    n_params = sum(int(np.size(leaves[i])) for i in aug.diff)
    a = ct_ys[-1]
    g = jnp.zeros((n_params,), dtype)
    counts = jnp.zeros(3, jnp.int32)
    status = jnp.asarray(OK, jnp.int32)
    info = jnp.zeros(3, cdt)
    h = jnp.asarray(h_forward, cdt)
    if T == 1:
        return a, g, counts, status, info

    def interval(carry, i):
        a, g, h, counts, status, info = carry

        def run(_):
            s0 = jnp.concatenate([ys[i], a, g])
            seg_nums = nums.at[3].set(h) if warm else nums
            seg, c, st, inf = integrate(aug, cfg, s0, args, jnp.stack([times[i], times[i - 1]]), seg_nums)
            s1 = seg[-1]
            return s1[n:2 * n] + ct_ys[i - 1], s1[2 * n:], inf[2], counts + c, st, inf

        def skip(_):
            return a, g, h, counts, status, info

        return lax.cond(status == OK, run, skip, None), None

    (a, g, h, counts, status, info), _ = lax.scan(interval, (a, g, h, counts, status, info),
                                                   jnp.arange(T - 1, 0, -1, dtype=jnp.int32))
    return a, g, counts, status, info


_adjoint_backward_jit = jax.jit(_adjoint_backward, static_argnums=(0, 1))


def _is_inexact(x) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


class AdjointBackend(JaxBackend):
    """Chen et al. (2018) adjoint as a ``jax.custom_vjp``.

    The forward solve (a while_loop) keeps only y at the output times.  The backward solves
    [y, a, g] backwards between consecutive output times with the same integrator, restarting
    y from the stored forward value and adding the output cotangent at each time; vector-
    Jacobian products of func come from ``jax.vjp`` w.r.t. (y, args).  The backward error norm
    is a mixed norm: the max of the RMS of y, of a, and of each args leaf's cotangent (as torch);
    ``seminorm=True`` drops the args channels (Kidger, Chen & Lyons 2021).  ``adjoint_rtol``
    and ``adjoint_atol`` default to the forward ones, ``adjoint_options`` to the forward options
    with the first step of each backward segment "warm" (the step the controller proposed last;
    ``adjoint_options={"first_step": None}`` gives torchdiffeq's fresh automatic step on every
    segment: see ``odebench.solve.options``).  Memory held for the backward pass does not grow with
    the number of steps.  Gradients w.r.t. t are zero.
    """

    method = "adjoint"

    def __init__(self, name: str, seminorm: bool = False) -> None:
        super().__init__(name)
        self.seminorm = seminorm

    def _check_method_kwargs(self, kwargs) -> None:
        super()._check_method_kwargs({k: v for k, v in kwargs.items()
                                      if k not in ("adjoint_rtol", "adjoint_atol", "adjoint_options")})

    def _run(self, problem: _Problem, stats: SolveStats, outlet: _Outlet, adjoint_rtol=None, adjoint_atol=None,
             adjoint_options=None):
        adj = problem.setup.adjoint(adjoint_rtol, adjoint_atol, adjoint_options)
        f = problem.f
        cfg = problem.config("while")
        n = problem.layout.size
        leaves, treedef = jax.tree_util.tree_flatten(problem.args)
        diff = tuple(i for i, leaf in enumerate(leaves) if _is_inexact(leaf))
        slices = adjoint_norm_slices(n, [int(np.size(leaves[i])) for i in diff], self.seminorm)
        aug = _Augmented(f, n, treedef, diff)
        cfg_adj = problem.config("while", options=adj.options, slices=slices)
        a_nums = numbers(adj.rtol, adj.atol, adj.options, problem.cdt)
        backend = self

        @jax.custom_vjp
        def solve(y0, args, times, nums, a_nums, tally):
            return integrate_jit(f, cfg, y0, args, times, nums)

        def solve_fwd(y0, args, times, nums, a_nums, tally):
            out = integrate_jit(f, cfg, y0, args, times, nums)
            return out, (out[0], out[3][2], args, times, nums, a_nums, tally)

        def solve_bwd(res, cts):
            ys, h_forward, args, times, nums, a_nums, tally = res
            ct_ys = cts[0]
            grad_y0, g, counts, status, info = _adjoint_backward_jit(aug, cfg_adj, ys, ct_ys, args, times, a_nums,
                                                                     h_forward)
            token = _report(backend, stats, BACKWARD_FIELDS, counts, status, info, adj.options["max_steps"],
                            outlet.export)
            grad_y0, g = _after(token, grad_y0), _after(token, g)  # whichever gradient is used, the count arrives
            arg_leaves = treedef.flatten_up_to(args)
            grads, offset = [], 0
            for i in diff:
                size = int(np.size(arg_leaves[i]))
                grads.append(g[offset:offset + size])
                offset += size
            return (grad_y0, _args_cotangent(treedef, arg_leaves, diff, grads), jnp.zeros_like(times),
                    jnp.zeros_like(nums), jnp.zeros_like(a_nums), tally_cotangent(counts, status, tally))

        solve.defvjp(solve_fwd, solve_bwd)
        return solve(problem.y0_flat, problem.args, problem.times, problem.nums, a_nums, outlet.tally_input())


def build_backend(method: str, name: str) -> JaxBackend:
    """The backend of one gradient method (see the plugin's registration)."""
    if method == "backprop":
        return BackpropBackend(name)
    return AdjointBackend(name, seminorm=(method == "adjoint-seminorm"))
