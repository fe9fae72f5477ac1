"""Counts as data (``return_counts``, ``tally``), the one way counts leave a compiled program:
the same exact counts as an eager call records, with no callback in the program, under jit,
grad, vmap and scan; failures raised by ``collect``; ``counted_jit`` for a task's own
programs, and its rule for a solve inside a transformation; bad input refused.  float64
(conftest's jax_x64)."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from odebench.errors import InvalidInputError, MaxStepsError, NonFiniteStateError  # noqa: E402
from odebench.plugins import make_registry  # noqa: E402
from odebench.protocols import BoundOdeint  # noqa: E402
from odebench.specs import SolveStats  # noqa: E402
from odebench_jax import TALLY_FIELDS, SolveCounts, collect, counted_jit, tally  # noqa: E402

REG = make_registry()
NAMES = ["jax-adjoint", "jax-backprop", "jax-adjoint-seminorm"]
TIMES = [0.0, 0.4, 1.0]

pytestmark = pytest.mark.usefixtures("jax_x64")


def field(t, y, p):
    return jnp.tanh(y @ p["W"] + p["b"]) * (1.0 + t)


def params(seed=0):
    rng = np.random.default_rng(seed)
    return {"W": jnp.asarray(rng.normal(size=(3, 3))), "b": jnp.asarray(rng.normal(size=3))}


def initial():
    return jnp.asarray(np.random.default_rng(1).normal(size=(4, 3)))


def _loss(name, **kw):
    backend = REG.backend(name)

    def loss(p, tl, y0=None):
        y0 = initial() if y0 is None else y0
        ys, counts = backend.odeint(field, y0, jnp.asarray(TIMES), p, rtol=1e-7, atol=1e-7, return_counts=True, tally=tl, **kw)
        return jnp.sum(ys ** 2), counts

    return loss


def _eager(name, y0=None, **kw):
    """The counts, value and gradients of the same loss run eagerly (recorded by the call)."""
    stats, backend = SolveStats(), REG.backend(name)
    y0 = initial() if y0 is None else y0

    def loss(p):
        return jnp.sum(backend.odeint(field, y0, jnp.asarray(TIMES), p, rtol=1e-7, atol=1e-7, stats=stats, **kw) ** 2)

    value, grads = jax.value_and_grad(loss)(params())
    return stats, value, grads


@pytest.mark.parametrize("name", NAMES)
def test_returned_counts_equal_the_eager_ones(name):
    """Under jit(value_and_grad): the forward counts as outputs, and the tally's gradient holding
    the forward and backward counts, equal to what an eager call records; no callback in the
    program; the same value and gradients."""
    step = jax.jit(jax.value_and_grad(_loss(name), argnums=(0, 1), has_aux=True))
    assert "callback" not in step.lower(params(), tally()).as_text()
    (value, counts), (grads, tally_grad) = step(params(), tally())
    expected, value_e, grads_e = _eager(name)
    assert collect(None, tally_grad=tally_grad) == expected and expected.nfe_backward > 0, (tally_grad, expected)
    assert collect(None, counts, tally_grad) == expected  # the tally's forward counts, not twice
    forward = collect(None, counts)
    assert (forward.nfe_forward, forward.steps_accepted, forward.nfe_backward) == (
        expected.nfe_forward, expected.steps_accepted, 0)
    assert isinstance(counts, SolveCounts) and int(counts.nfe_forward) == expected.nfe_forward
    assert len(tally_grad) == len(TALLY_FIELDS) and tally_grad[3] == tally_grad[7] == 0  # nothing failed
    np.testing.assert_allclose(float(value), float(value_e), rtol=1e-12)
    for k in grads:
        np.testing.assert_allclose(np.asarray(grads[k]), np.asarray(grads_e[k]), rtol=1e-10, atol=1e-12)


def test_a_tally_shared_by_solves_by_vmap_and_by_scan_sums_their_counts():
    """One tally through two solves, through a vmap (unbatched) or through a scan gets the sum of
    their counts; the forward counts also come back one per vmap element."""
    loss = _loss("jax-adjoint")
    y0s = jnp.stack([initial(), 2.0 * initial()])
    singles = [_eager("jax-adjoint", y0)[0] for y0 in y0s]
    total = SolveStats(**{k: sum(getattr(s, k) for s in singles) for k in singles[0].as_dict()})

    def by_vmap(p, tl):
        values, counts = jax.vmap(loss, in_axes=(None, None, 0))(p, tl, y0s)
        return jnp.sum(values), counts

    def by_scan(p, tl):
        def body(acc, y0):
            value, _ = loss(p, tl, y0)
            return acc + value, None
        return jax.lax.scan(body, 0.0, y0s)[0], ()

    def twice(p, tl):
        (a, ca), (b, cb) = loss(p, tl, y0s[0]), loss(p, tl, y0s[1])
        return a + b, (ca, cb)

    for how in (by_vmap, by_scan, twice):
        (_, counts), (_, tg) = jax.jit(jax.value_and_grad(how, argnums=(0, 1), has_aux=True))(params(), tally())
        assert collect(None, tally_grad=tg) == total, how.__name__
        if how is by_vmap:
            assert np.asarray(counts.nfe_forward).tolist() == [s.nfe_forward for s in singles]
            assert collect(None, counts).nfe_forward == total.nfe_forward


def test_a_solve_the_gradient_does_not_pass_through_sends_no_counts():
    """The tally counts differentiated solves: one under stop_gradient runs, but sends nothing
    (its counts are still returned with return_counts=True)."""
    backend = REG.backend("jax-adjoint")

    def loss(p, tl):
        ys, counts = backend.odeint(field, initial(), jnp.asarray(TIMES), p, rtol=1e-7, atol=1e-7, tally=tl,
                                    return_counts=True)
        return jnp.sum(jax.lax.stop_gradient(ys)) + jnp.sum(p["W"]), counts

    (_, counts), (_, tg) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(params(), tally())
    assert not np.any(np.asarray(tg)) and int(counts.nfe_forward) > 0


def test_a_traced_call_without_counts_counts_nothing():
    """Inside jit a solve given neither return_counts nor a tally leaves nothing behind: its
    stats stay empty, and the program has no callback."""
    stats = SolveStats()
    solve = jax.jit(lambda p: REG.backend("jax-adjoint").odeint(field, initial(), jnp.asarray(TIMES), p, stats=stats))
    assert "callback" not in solve.lower(params()).as_text()
    jax.block_until_ready(solve(params()))
    jax.effects_barrier()
    assert stats == SolveStats()


def test_eager_call_returns_counts_and_records_them():
    stats = SolveStats()
    ys, counts = REG.backend("jax-adjoint").odeint(field, initial(), jnp.asarray(TIMES), params(), rtol=1e-7, atol=1e-7, stats=stats,
                                                   return_counts=True)
    assert ys.shape == (3, 4, 3) and int(counts.nfe_forward) == stats.nfe_forward > 0
    assert int(counts.steps_accepted) == stats.steps_accepted and int(counts.status) == 0


def test_collect_raises_a_forward_failure_with_its_message():
    step = jax.jit(_loss("jax-backprop", options={"max_steps": 2}))
    value, counts = step(params(), tally())
    assert np.isnan(float(value))
    with pytest.raises(MaxStepsError, match="max_steps=2 reached"):
        collect(None, counts)


def test_collect_raises_a_failed_backward():
    """The adjoint's backward solve fails (its max_steps); the gradients are NaN and the tally
    says one backward failed."""
    loss = _loss("jax-adjoint", adjoint_options={"max_steps": 2})
    (_, counts), (grads, tg) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(params(), tally())
    assert np.isnan(np.asarray(grads["W"])).all() and float(tg[7]) == 1.0 and float(tg[3]) == 0.0
    with pytest.raises(NonFiniteStateError, match="1 backward solve"):
        collect(None, counts, tg)


@pytest.mark.parametrize("kw, message", [
    ({"return_counts": "yes"}, "return_counts must be True or False"),
    ({"tally": jnp.zeros(3)}, r"tally must be a float array of shape \(8,\)"),
    ({"tally": jnp.zeros(8, jnp.int32)}, r"tally must be a float array of shape \(8,\)"),
    ({"export_counts": True}, r"unexpected keyword\(s\) export_counts"),
])
def test_bad_count_options_are_refused(kw, message):
    with pytest.raises(InvalidInputError, match=message):
        REG.backend("jax-adjoint").odeint(field, initial(), jnp.asarray(TIMES), params(), **kw)


def test_collect_takes_the_counts_of_several_solves():
    """A loss with two solves returns two SolveCounts; collect adds both, and refuses anything else."""
    loss = _loss("jax-backprop")
    y0s = [initial(), 2.0 * initial()]
    singles = [loss(params(), tally(), y0)[1] for y0 in y0s]
    both = collect(None, singles)
    assert both.nfe_forward == sum(int(c.nfe_forward) for c in singles) > 0
    assert both.steps_accepted == sum(int(c.steps_accepted) for c in singles)
    with pytest.raises(InvalidInputError, match="collect takes SolveCounts"):
        collect(None, [np.zeros(3)])


def _bound(name, stats):
    return BoundOdeint(REG.backend(name), "dopri5", 1e-7, 1e-7, None, stats)


@pytest.mark.parametrize("name", ["jax-adjoint", "diffrax-backsolve"])
def test_counted_jit_counts_a_tasks_own_program(name):
    """counted_jit (what a task compiles its evaluation with) adds each call's forward counts to
    the bound odeint's stats: returned by odebench's backends, by callbacks from a peer's."""
    if name.startswith("diffrax"):
        pytest.importorskip("diffrax")
    stats = SolveStats()
    run = counted_jit(lambda p, y0, odeint: jnp.sum(odeint(field, y0, jnp.asarray(TIMES), p)), _bound(name, stats))
    value = run(params(), initial())
    eager = SolveStats()
    expected = jnp.sum(REG.backend(name).odeint(field, initial(), jnp.asarray(TIMES), params(), rtol=1e-7, atol=1e-7,
                                                stats=eager))
    assert stats.nfe_forward == eager.nfe_forward > 0 and stats.nfe_backward == 0
    np.testing.assert_allclose(float(value), float(expected), rtol=1e-10)
    run(params(), initial())
    assert stats.nfe_forward == 2 * eager.nfe_forward


@pytest.mark.parametrize("wrap", ["vmap", "scan"])
def test_counted_jit_refuses_a_solve_inside_a_transformation_of_its_own(wrap):
    """A solve inside the counted function's own vmap or scan cannot hand its counts out: a
    clear error, not counts silently lost."""
    y0s = jnp.stack([initial(), 2.0 * initial()])

    def fn(p, odeint):
        solve = lambda y0: jnp.sum(odeint(field, y0, jnp.asarray(TIMES), p))  # noqa: E731
        if wrap == "vmap":
            return jnp.sum(jax.vmap(solve)(y0s))
        return jax.lax.scan(lambda acc, y0: (acc + solve(y0), None), 0.0, y0s)[0]

    with pytest.raises(InvalidInputError, match=r"inside a transformation \(vmap, scan, ...\).*top level"):
        counted_jit(fn, _bound("jax-adjoint", SolveStats()))(params())


class _TwoSolves:
    """A made-up task problem whose loss solves two initial values, at its top level or inside a
    vmap of its own (the JAX trainer's problem interface)."""

    framework = "jax"
    optimizer = ("sgd", {"lr": 1e-3})

    def __init__(self, vmapped: bool) -> None:
        self.model, self.vmapped = params(), vmapped

    def batch(self, iteration: int) -> dict:
        return {"y0": jnp.stack([initial(), 2.0 * initial()])}

    def loss_fn(self, p, batch, odeint):
        solve = lambda y0: jnp.sum(odeint(field, y0, jnp.asarray(TIMES), p) ** 2)  # noqa: E731
        if self.vmapped:
            return jnp.sum(jax.vmap(solve)(batch["y0"]))
        return solve(batch["y0"][0]) + solve(batch["y0"][1])

    def evaluate(self, odeint) -> float:
        return 0.0


@pytest.mark.parametrize("name", ["jax-adjoint", "jax-backprop"])
def test_the_trainer_counts_solves_inside_a_loss_of_its_own_transformation(name):
    """The trainer's one path (the tally): a loss that solves inside its own vmap is counted
    exactly as the same solves at the loss's top level, and as eager solves."""
    pytest.importorskip("optax")
    expected = SolveStats()
    for y0 in _TwoSolves(False).batch(0)["y0"]:
        one = _eager(name, y0)[0]
        expected = SolveStats(**{k: getattr(expected, k) + v for k, v in one.as_dict().items()})
    for vmapped in (False, True):
        stats = SolveStats()
        trainer = REG.runtime("jax").trainer(_TwoSolves(vmapped), _bound(name, stats), "cpu")
        result = trainer.step(0)
        assert stats == expected, (vmapped, stats, expected)
        assert np.isfinite(result.loss)
