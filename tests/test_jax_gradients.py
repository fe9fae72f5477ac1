"""Gradients of the jax backends checked against each other and finite differences; the
seminorm's saving; counts leaving jit as data (returned, and through a tally).  float64
throughout."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from odebench.errors import InvalidInputError, NonFiniteStateError  # noqa: E402
from odebench.plugins import make_registry  # noqa: E402
from odebench.specs import SolveStats  # noqa: E402
from odebench_jax import collect, tally  # noqa: E402

REG = make_registry()


pytestmark = pytest.mark.usefixtures("jax_x64")  # float64 in jax for this module (conftest)


def mlp(t, y, p):
    """f(t, y) = W2 tanh(W1 [y, t] + b1) + b2: time-dependent, every parameter used."""
    tt = jnp.broadcast_to(t, y.shape[:-1] + (1,))
    h = jnp.tanh(jnp.concatenate([y, tt], axis=-1) @ p["W1"].T + p["b1"])
    return h @ p["W2"].T + p["b2"]


def mlp_params(dim=3, hidden=16, seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    shapes = {"W1": (hidden, dim + 1), "b1": (hidden,), "W2": (dim, hidden), "b2": (dim,)}
    return {k: jnp.asarray(rng.normal(size=s) * scale) for k, s in shapes.items()}


def _loss_fn(name, t, tol, stats=None, **kw):
    backend = REG.backend(name)

    def loss(y0, params, tl=None):
        ys = backend.odeint(mlp, y0, t, params, solver="dopri5", rtol=tol, atol=tol, stats=stats, tally=tl, **kw)
        weights = jnp.linspace(0.5, 1.5, ys.size, dtype=ys.dtype).reshape(ys.shape)
        return jnp.sum(weights * ys) + jnp.sum(ys[-1] ** 2)  # every output time contributes

    return loss


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def _grads(name, y0, params, t, tol, **kw):
    stats = SolveStats()
    loss, grads = jax.value_and_grad(_loss_fn(name, t, tol, stats=stats, **kw), argnums=(0, 1))(y0, params)
    return float(loss), grads, stats


@pytest.fixture(scope="module")
def backprop_reference():
    params = mlp_params()
    y0 = jnp.asarray(np.random.default_rng(1).normal(size=(4, 3)))
    t = jnp.asarray([0.0, 0.3, 0.7, 1.2, 2.0])
    return y0, params, t, _grads("jax-backprop", y0, params, t, 1e-10)


@pytest.mark.parametrize("name", ["jax-adjoint", "jax-adjoint-seminorm"])
def test_adjoint_matches_backprop(name, backprop_reference):
    y0, params, t, (loss_b, (gy_b, gp_b), stats_b) = backprop_reference
    loss_a, (gy_a, gp_a), stats = _grads(name, y0, params, t, 1e-10)
    assert loss_a == pytest.approx(loss_b, rel=1e-12)
    assert stats.nfe_backward > 0 and stats.steps_accepted_backward > 0
    # backprop recomputes each accepted step: dopri5's 7 stages (6 pulled back: f(t, y) is the
    # previous step's last, FSAL), and pulls the first step's f(t0, y0) back once more
    assert stats_b.nfe_backward == 7 * stats_b.steps_accepted + 1 and stats_b.steps_accepted_backward == 0
    assert stats.nfe_forward == stats_b.nfe_forward and stats.steps_accepted == stats_b.steps_accepted
    assert _rel(gy_a, gy_b) <= 1e-6, ("y0", _rel(gy_a, gy_b))
    for key in params:
        assert _rel(gp_a[key], gp_b[key]) <= 1e-6, (key, _rel(gp_a[key], gp_b[key]))


def test_gradients_match_finite_differences():
    params = mlp_params(dim=2, hidden=8, seed=3)
    y0 = jnp.asarray([[0.4, -0.7]])
    t = jnp.asarray([0.0, 0.5, 1.0])
    loss = _loss_fn("jax-adjoint", t, 1e-12)
    _, (_, g) = jax.value_and_grad(loss, argnums=(0, 1))(y0, params)
    w = np.asarray(params["W1"])
    eps = 1e-6
    for idx in [(0, 0), (3, 1), (7, 2)]:
        plus, minus = w.copy(), w.copy()
        plus[idx] += eps
        minus[idx] -= eps
        fd = (float(loss(y0, {**params, "W1": jnp.asarray(plus)}))
              - float(loss(y0, {**params, "W1": jnp.asarray(minus)}))) / (2 * eps)
        assert abs(fd - float(g["W1"][idx])) <= 1e-6 * max(1.0, abs(fd)), (idx, fd, float(g["W1"][idx]))


def test_tuple_state_gradients_agree():
    """A (z, logp)-like tuple state: gradients flow through both components on all backends."""
    params = mlp_params(dim=2, hidden=8, seed=5)

    def pair(t, state, p):
        z, logp = state
        dz = mlp(t, z, p)
        return dz, -jnp.sum(dz * z, axis=-1, keepdims=True)

    z0 = jnp.asarray(np.random.default_rng(2).normal(size=(5, 2)))
    l0 = jnp.zeros((5, 1))
    t = jnp.asarray([0.0, 0.5, 1.0])
    results = {}
    for name in ("jax-backprop", "jax-adjoint", "jax-adjoint-seminorm"):
        backend = REG.backend(name)

        def loss(z, p):
            zs, ls = backend.odeint(pair, (z, l0), t, p, rtol=1e-10, atol=1e-10)
            assert zs.shape == (3, 5, 2) and ls.shape == (3, 5, 1)
            return jnp.sum(zs[-1] ** 2) + jnp.sum(ls[-1])

        results[name] = jax.grad(loss, argnums=(0, 1))(z0, params)
    ref_z, ref_p = results["jax-backprop"]
    for name in ("jax-adjoint", "jax-adjoint-seminorm"):
        gz, gp = results[name]
        assert _rel(gz, ref_z) <= 1e-6
        for key in params:
            assert _rel(gp[key], ref_p[key]) <= 1e-6, (name, key)


def test_seminorm_saves_backward_evaluations():
    """Kidger, Chen & Lyons (2021): ignoring the parameter channels in the backward norm."""
    rng = np.random.default_rng(0)
    sizes = [(2, 48), (48, 48), (48, 2)]
    params = []
    for fan_in, fan_out in sizes:  # torch.nn.Linear's init, then x1.5: a problem with real work to do
        bound = 1.0 / np.sqrt(fan_in)
        params.append((jnp.asarray(rng.uniform(-bound, bound, (fan_in, fan_out)) * 1.5),
                       jnp.asarray(rng.uniform(-bound, bound, fan_out) * 1.5)))
    assert sum(w.size + b.size for w, b in params) >= 1000

    def net(t, y, p):
        for i, (w, b) in enumerate(p):
            y = y @ w + b
            if i < len(p) - 1:
                y = jnp.tanh(y)
        return y

    y0 = jnp.asarray(rng.normal(size=(64, 2)))
    t = jnp.asarray([0.0, 3.0])
    out = {}
    for name in ("jax-backprop", "jax-adjoint", "jax-adjoint-seminorm"):
        stats = SolveStats()
        backend = REG.backend(name)

        def loss(y, p):
            ys = backend.odeint(net, y, t, p, rtol=1e-6, atol=1e-6, stats=stats)
            return jnp.sum(ys[-1] ** 2)

        out[name] = (jax.grad(loss, argnums=(0, 1))(y0, params), stats)
    (g_semi, s_semi), (_, s_adj), (g_bp, _) = (out["jax-adjoint-seminorm"], out["jax-adjoint"],
                                                    out["jax-backprop"])
    assert s_semi.nfe_forward == s_adj.nfe_forward
    assert s_semi.nfe_backward < s_adj.nfe_backward, (s_semi.nfe_backward, s_adj.nfe_backward)
    for ga, gb in zip(jax.tree_util.tree_leaves(g_semi), jax.tree_util.tree_leaves(g_bp)):
        assert _rel(ga, gb) <= 1e-4


def test_adjoint_tolerances_can_be_set():
    params = mlp_params()
    y0 = jnp.asarray(np.random.default_rng(4).normal(size=(4, 3)))
    t = jnp.asarray([0.0, 1.0])
    _, _, loose = _grads("jax-adjoint", y0, params, t, 1e-8, adjoint_rtol=1e-3, adjoint_atol=1e-3)
    _, _, tight = _grads("jax-adjoint", y0, params, t, 1e-8)
    assert loose.nfe_forward == tight.nfe_forward
    assert loose.nfe_backward < tight.nfe_backward


@pytest.mark.parametrize("argnums", [(1,), (0,)])  # whichever other gradient is taken (both: everywhere else)
@pytest.mark.parametrize("name", ["jax-backprop", "jax-adjoint"])
def test_counts_leave_jit_through_the_tally(name, argnums):
    """Under jit, the tally's gradient holds the solve's counts, forward and backward, the same
    as an eager call records, at every execution; nothing else leaves the program: the
    ``stats`` it was traced with stay empty, and it has no host callback."""
    params = mlp_params(dim=2, hidden=8, seed=7)
    y0 = jnp.asarray([[0.3, -0.2], [0.1, 0.5]])
    t = jnp.asarray([0.0, 0.5, 1.0])
    eager = SolveStats()
    loss_e, _ = jax.value_and_grad(_loss_fn(name, t, 1e-8, stats=eager), argnums=(0, 1))(y0, params)
    assert eager.nfe_forward > 0 and eager.steps_accepted > 0

    traced_with = SolveStats()
    step = jax.jit(jax.value_and_grad(_loss_fn(name, t, 1e-8, stats=traced_with), argnums=argnums + (2,)))
    assert "callback" not in step.lower(y0, params, tally()).as_text()
    stats = SolveStats()
    for i in range(1, 3):  # each execution returns one forward and one backward solve's counts
        loss, grads = step(y0, params, tally())
        collect(stats, tally_grad=grads[-1])
        assert float(loss) == pytest.approx(float(loss_e), rel=1e-12)
        assert stats.as_dict() == {k: i * v for k, v in eager.as_dict().items()}, (stats, eager)
    if name == "jax-backprop":
        assert eager.nfe_backward == 7 * eager.steps_accepted + 1 > 1 and stats.steps_accepted_backward == 0
    else:
        assert stats.nfe_backward > 0 and stats.steps_accepted_backward > 0
    assert traced_with == SolveStats()


def _backprop_temp_bytes(y0, params, max_steps):
    backend = REG.backend("jax-backprop")
    t = jnp.asarray([0.0, 1.0])

    def loss(y):
        return jnp.sum(backend.odeint(mlp, y, t, params, rtol=1e-6, atol=1e-6, options={"max_steps": max_steps})[-1])

    analysis = jax.jit(jax.grad(loss)).lower(y0).compile().memory_analysis()
    if analysis is None:
        pytest.skip("no memory analysis on this backend")
    return analysis.temp_size_in_bytes


def test_backprop_memory_is_one_segment_of_the_tape():
    """jax-backprop's residuals are a tape of min(max_steps, SEGMENT_ROWS) steps and one carry
    per segment: the compiled program's temp memory grows with max_steps up to a segment, and
    beyond it by the segments' first carries only, not by a tape row per step."""
    from odebench_jax.tape import SEGMENT_ROWS

    params = mlp_params(dim=2, hidden=8, seed=9)
    y0 = jnp.asarray(np.random.default_rng(3).normal(size=(16, 2)))
    state_bytes = y0.size * 8
    few, one, many = (_backprop_temp_bytes(y0, params, m) for m in (16, SEGMENT_ROWS, 16 * SEGMENT_ROWS))
    assert one - few > (SEGMENT_ROWS - 16) * state_bytes  # a tape row per step, up to a segment
    assert many - one < 16 * 4 * state_bytes  # 15 more segments: a carry (two states and scalars) each
    assert many < 2 * SEGMENT_ROWS * state_bytes * 4


def _segment_run(monkeypatch, rows, solver, tol, t, **options):
    """Gradients and counts of jax-backprop with the tape's segments of ``rows`` steps."""
    import odebench_jax.tape as tape

    monkeypatch.setattr(tape, "SEGMENT_ROWS", rows)
    jax.clear_caches()  # the compiled programs depend on the segment length
    backend = REG.backend("jax-backprop")
    params = mlp_params(seed=4)
    y0 = jnp.asarray(np.random.default_rng(5).normal(size=(4, 3)))

    def loss(y0, params, tl):
        ys = backend.odeint(mlp, y0, t, params, solver=solver, rtol=tol, atol=tol, tally=tl, options=options or None)
        return jnp.sum(ys ** 2)

    *grads, tally_grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(y0, params, tally())
    return grads, collect(None, tally_grad=tally_grad)


@pytest.mark.parametrize("wrap", ["adaptive", "fixed"])
def test_backprop_segments_give_the_same_gradient(monkeypatch, wrap):
    """A solve longer than a segment: the backward tapes the earlier segments again from their
    first carries.  Same gradients as one segment; the extra evaluations are those retaped:
    for rk4 at a fixed step (10 steps per output interval, none interpolating), 4 per step of
    every segment but the last."""
    t = jnp.linspace(0.0, 2.0, 7)  # outputs inside segments and at their ends
    if wrap == "adaptive":
        run = lambda rows: _segment_run(monkeypatch, rows, "dopri5", 1e-8, t)  # noqa: E731
    else:
        run = lambda rows: _segment_run(monkeypatch, rows, "rk4", 1e-6, t, step_size=1 / 30)  # noqa: E731
    (g_one, p_one), one = run(4096)
    (g_seg, p_seg), seg = run(5)
    steps = one.steps_accepted
    assert steps > 15 and seg.steps_accepted == steps and seg.nfe_forward == one.nfe_forward
    assert _rel(g_seg, g_one) <= 1e-12
    for k in p_one:
        assert _rel(p_seg[k], p_one[k]) <= 1e-12, k
    retaped = seg.nfe_backward - one.nfe_backward
    if wrap == "fixed":
        assert steps == 60 and retaped == 4 * 5 * ((steps - 1) // 5) - 1  # f(t0, y0) is in the first carry
    else:
        assert 6 * 5 * ((steps - 1) // 5) <= retaped < one.nfe_forward


def test_warm_backward_start_saves_evaluations_at_the_same_accuracy():
    """Nine output times: the default backward continues the controller from segment to
    segment; adjoint_options={"first_step": None} restarts the automatic first step on every
    segment (torchdiffeq).  Both meet the tolerance against backprop; warm costs less."""
    params = mlp_params(seed=2)
    y0 = jnp.asarray(np.random.default_rng(3).normal(size=(4, 3)))
    t = jnp.linspace(0.0, 2.0, 9)
    _, g_bp, _ = _grads("jax-backprop", y0, params, t, 1e-10)
    _, g_warm, warm = _grads("jax-adjoint", y0, params, t, 1e-10)
    _, g_restart, restart = _grads("jax-adjoint", y0, params, t, 1e-10, adjoint_options={"first_step": None})
    assert warm.nfe_forward == restart.nfe_forward
    assert warm.nfe_backward < restart.nfe_backward, (warm, restart)
    for gw, gr, gb in zip(jax.tree_util.tree_leaves(g_warm), jax.tree_util.tree_leaves(g_restart),
                          jax.tree_util.tree_leaves(g_bp)):
        assert _rel(gw, gb) <= 1e-6 and _rel(gr, gb) <= 1e-6


def test_warm_backward_starts_with_the_forward_controllers_last_proposal():
    """One segment: the warm backward solve is the one whose first step is the step the
    forward solve's controller proposed after its last step (returned in info[2])."""
    from odebench_jax.base import Problem
    from odebench_jax.config import OK
    from odebench_jax.loop import integrate_jit

    params = mlp_params(seed=4)
    y0 = jnp.asarray(np.random.default_rng(5).normal(size=(4, 3)))
    t = jnp.asarray([0.0, 1.5])
    backend = REG.backend("jax-adjoint")
    problem = Problem(backend.setup("dopri5", 1e-6, 1e-6, None), mlp, y0, t, params)
    _, counts, status, info = integrate_jit(problem.f, problem.config("while"), problem.y0_flat, params,
                                            problem.times, problem.nums)
    assert int(status) == OK and float(info[0]) == 1.5 and float(info[1]) == 1.5
    proposal = float(info[2])
    assert proposal > 0
    _, g_warm, warm = _grads("jax-adjoint", y0, params, t, 1e-6)
    _, g_fixed, fixed = _grads("jax-adjoint", y0, params, t, 1e-6, adjoint_options={"first_step": proposal})
    _, _, restart = _grads("jax-adjoint", y0, params, t, 1e-6, adjoint_options={"first_step": None})
    counted = ("nfe_backward", "steps_accepted_backward", "steps_rejected_backward")
    assert [getattr(warm, k) for k in counted] == [getattr(fixed, k) for k in counted]
    assert [getattr(warm, k) for k in counted] != [getattr(restart, k) for k in counted]
    for a, b in zip(jax.tree_util.tree_leaves(g_warm), jax.tree_util.tree_leaves(g_fixed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_counts_under_vmap_are_the_sum_of_the_single_solves():
    """A vmapped solve returns every element's own counts (a leading axis)."""
    params = mlp_params(dim=2, hidden=8, seed=9)
    y0s = jnp.asarray(np.random.default_rng(6).normal(size=(3, 1, 2)) * np.array([0.1, 1.0, 3.0])[:, None, None])
    t = jnp.asarray([0.0, 1.0])
    backend = REG.backend("jax-adjoint")
    singles = []
    for y0 in y0s:
        stats = SolveStats()
        backend.odeint(mlp, y0, t, params, rtol=1e-8, atol=1e-8, stats=stats)
        singles.append(stats.nfe_forward)
    assert len(set(singles)) > 1  # the elements really take different numbers of steps
    solve = jax.jit(jax.vmap(lambda y: backend.odeint(mlp, y, t, params, rtol=1e-8, atol=1e-8, return_counts=True)))
    _, counts = solve(y0s)
    assert np.asarray(counts.nfe_forward).tolist() == singles
    assert collect(None, counts).nfe_forward == sum(singles)


@pytest.mark.parametrize("name", ["jax-adjoint", "jax-backprop", "jax-adjoint-seminorm"])
def test_gradients_reach_closed_over_arrays(name):
    """A dynamics that closes over the parameters (traced by the outer grad) gets the same
    gradient as one that receives them through args (closure conversion), under jit (eagerly:
    the conformance kit's "gradients through a closure", tests/test_conformance.py)."""
    backend = REG.backend(name)
    W = jnp.asarray(np.random.default_rng(0).normal(size=(3, 3)) * 0.5)
    y0 = jnp.asarray(np.random.default_rng(1).normal(size=(4, 3)))
    t = jnp.linspace(0.0, 1.0, 3)

    def closure(W):
        ys = backend.odeint(lambda t, y, args: jnp.tanh(y @ W) * jnp.cos(t), y0, t, rtol=1e-9, atol=1e-9)
        return jnp.sum(ys[-1] ** 2)

    def through_args(W):
        ys = backend.odeint(lambda t, y, W: jnp.tanh(y @ W) * jnp.cos(t), y0, t, W, rtol=1e-9, atol=1e-9)
        return jnp.sum(ys[-1] ** 2)

    np.testing.assert_allclose(np.asarray(jax.jit(jax.grad(closure))(W)), np.asarray(jax.grad(through_args)(W)),
                               rtol=1e-9, atol=1e-12)


def test_two_argument_dynamics_when_args_is_none():
    backend = REG.backend("jax-adjoint")
    ys = backend.odeint(lambda t, y: -y, jnp.ones(2), jnp.asarray([0.0, 1.0]), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.asarray(ys[-1]), np.exp(-1.0) * np.ones(2), rtol=1e-8)
    with pytest.raises(InvalidInputError, match=r"^func must be callable as func\(t, y, args\), or func\(t, y\) "
                                                 r"when args is None; calling it raised TypeError"):
        backend.odeint(lambda t, y: -y, jnp.ones(2), jnp.asarray([0.0, 1.0]), {"k": jnp.ones(1)})


@pytest.mark.parametrize("name", ["jax-backprop", "jax-adjoint"])
def test_forward_counts_arrive_under_grad_alone(name):
    """Under jit(grad), the loss's value is dead code; the forward solve's counts still arrive,
    through the tally, with the backward's."""
    params = mlp_params(dim=2, hidden=8, seed=7)
    y0 = jnp.asarray([[0.3, -0.2], [0.1, 0.5]])
    t = jnp.asarray([0.0, 0.5, 1.0])
    eager = SolveStats()
    jax.value_and_grad(_loss_fn(name, t, 1e-8, stats=eager), argnums=1)(y0, params)
    _, tally_grad = jax.jit(jax.grad(_loss_fn(name, t, 1e-8), argnums=(1, 2)))(y0, params, tally())
    stats = collect(None, tally_grad=tally_grad)
    assert stats.nfe_forward == eager.nfe_forward > 0 and stats.nfe_backward == eager.nfe_backward > 0


def _fixed_step_loss(options):
    backend = REG.backend("jax-backprop")

    def loss(params, tl=None):  # the times are built inside jit: traced, their step count unknown when tracing
        t = jnp.asarray([0.0, 0.5, 1.0])
        ys = backend.odeint(mlp, jnp.ones((2, 3)), t, params, solver="rk4", options=options, tally=tl)
        return jnp.sum(ys[-1] ** 2)

    return loss


def test_backprop_fixed_step_with_traced_times_keeps_a_bounded_tape():
    """A fixed-step solve's default max_steps is 10^6: with traced times jax-backprop's tape
    would be 10^6 rows.  It gets 4096 (and max_steps 4096), with the same gradient."""
    params = mlp_params()
    eager = jax.grad(lambda p: _fixed_step_loss({"step_size": 0.01})(p))(params)  # concrete times inside
    program = jax.jit(jax.grad(_fixed_step_loss({"step_size": 0.01}))).lower(params).compile()
    jitted = program(params)
    for k in params:
        assert _rel(jitted[k], eager[k]) <= 1e-12, k
    temp = program.memory_analysis().temp_size_in_bytes
    assert temp < 4096 * 6 * 8 * 4, temp  # a few 4096-row buffers, not 10^6 rows (48 MB)


def test_backprop_fixed_step_with_traced_times_beyond_4096_steps():
    """Beyond 4096 steps the solve fails as max_steps exceeded (NaN inside jit; the tally says a
    forward solve failed), and options={"max_steps": N} gives it the rows it needs."""
    params = mlp_params()
    g, tally_grad = jax.jit(jax.grad(_fixed_step_loss({"step_size": 1e-4}), argnums=(0, 1)))(params, tally())
    assert np.isnan(np.asarray(g["W1"])).all()
    with pytest.raises(NonFiniteStateError, match="1 forward solve"):
        collect(None, tally_grad=tally_grad)
    g = jax.jit(jax.grad(_fixed_step_loss({"step_size": 1e-4, "max_steps": 20_000})))(params)
    ref = jax.grad(_fixed_step_loss({"step_size": 1e-4}))(params)
    assert _rel(g["W1"], ref["W1"]) <= 1e-10


def test_the_callback_export_is_gone():
    """Counts leave a program only as data: the keyword of the removed host-callback export is
    refused like any unknown one."""
    with pytest.raises(InvalidInputError, match="unexpected keyword.*export_counts"):
        REG.backend("jax-adjoint").odeint(mlp, jnp.ones((1, 3)), jnp.asarray([0.0, 1.0]), mlp_params(),
                                          export_counts=False)
