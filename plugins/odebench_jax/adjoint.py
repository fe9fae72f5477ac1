"""jax-adjoint and jax-adjoint-seminorm: the continuous adjoint (Chen et al. 2018) as a jax.custom_vjp."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from odebench.solve import WARM, adjoint_norm_slices
from odebench.specs import SolveStats

from .base import JaxBackend, Problem, args_cotangent, is_inexact
from .config import OK, SolveConfig, numbers
from .counts import BACKWARD_FIELDS, record_concrete, tally_cotangent
from .dtypes import control_dtype
from .loop import integrate, integrate_jit
from .pullback import choose, pull_back
from .state import FlatFunc


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

    def _run(self, problem: Problem, stats: SolveStats, tally, adjoint_rtol=None, adjoint_atol=None,
             adjoint_options=None):
        adj = problem.setup.adjoint(adjoint_rtol, adjoint_atol, adjoint_options)
        f = problem.f
        cfg = problem.config("while")
        n = problem.layout.size
        leaves, treedef = jax.tree_util.tree_flatten(problem.args)
        diff = tuple(i for i, leaf in enumerate(leaves) if is_inexact(leaf))
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
            return out, (out[0], out[3][2], (out[1], out[2]), args, times, nums, a_nums, tally)

        def solve_bwd(res, cts):
            ys, h_forward, forward, args, times, nums, a_nums, tally = res
            ct_ys = cts[0]
            grad_y0, g, counts, status, info = _adjoint_backward_jit(aug, cfg_adj, ys, ct_ys, args, times, a_nums,
                                                                     h_forward)
            record_concrete(backend, stats, BACKWARD_FIELDS, counts, status, info, adj.options["max_steps"])
            arg_leaves = treedef.flatten_up_to(args)
            grads, offset = [], 0
            for i in diff:
                size = int(np.size(arg_leaves[i]))
                grads.append(g[offset:offset + size])
                offset += size
            return (grad_y0, args_cotangent(treedef, arg_leaves, diff, grads), jnp.zeros_like(times),
                    jnp.zeros_like(nums), jnp.zeros_like(a_nums), tally_cotangent(forward, (counts, status), tally))

        solve.defvjp(solve_fwd, solve_bwd)
        return solve(problem.y0_flat, problem.args, problem.times, problem.nums, a_nums, tally)
