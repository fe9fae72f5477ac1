"""Counts returned as data (``return_counts``, ``tally``): the same exact counts as the host
callback's, with no callback in the program, under jit, grad and vmap; failures raised by
``collect``; bad input refused.  float64 (conftest's jax_x64)."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from odebench.errors import InvalidInputError, MaxStepsError, NonFiniteStateError  # noqa: E402
from odebench.plugins import make_registry  # noqa: E402
from odebench.specs import SolveStats  # noqa: E402
from odebench_jax.counts import SolveCounts, collect, tally  # noqa: E402

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


def _callback_counts(name, **kw):
    """The counts and gradients the default path (host callback) reports for the same loss."""
    stats, backend = SolveStats(), REG.backend(name)

    def loss(p):
        return jnp.sum(backend.odeint(field, initial(), jnp.asarray(TIMES), p, rtol=1e-7, atol=1e-7, stats=stats, **kw) ** 2)

    value, grads = jax.jit(jax.value_and_grad(loss))(params())
    jax.effects_barrier()
    return stats, value, grads


@pytest.mark.parametrize("name", NAMES)
def test_returned_counts_equal_the_callbacks(name):
    """Under jit(value_and_grad): the forward counts as outputs, the backward ones as the tally's
    gradient, equal to the host callback's; no callback in the program; same value and gradients."""
    step = jax.jit(jax.value_and_grad(_loss(name), argnums=(0, 1), has_aux=True))
    assert "callback" not in step.lower(params(), tally()).as_text()
    (value, counts), (grads, tally_grad) = step(params(), tally())
    stats = collect(None, counts, tally_grad)
    expected, value_cb, grads_cb = _callback_counts(name)
    assert stats == expected and stats.nfe_forward > 0 and stats.nfe_backward > 0, (stats, expected)
    assert isinstance(counts, SolveCounts) and int(counts.nfe_forward) == expected.nfe_forward
    assert float(value) == float(value_cb)
    for k in grads:
        assert np.array_equal(np.asarray(grads[k]), np.asarray(grads_cb[k])), k


def test_a_tally_shared_by_solves_and_by_vmap_sums_their_counts():
    """One tally through two solves, or through a vmap (unbatched), gets the sum of the backward
    counts; the forward counts come back one per vmap element."""
    loss = _loss("jax-adjoint")
    y0s = jnp.stack([initial(), 2.0 * initial()])
    single = []
    for y0 in y0s:
        (_, counts), (_, tg) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params(), tally(), y0)
        single.append((int(counts.nfe_forward), np.asarray(tg)))

    def both(p, tl):
        values, counts = jax.vmap(loss, in_axes=(None, None, 0))(p, tl, y0s)
        return jnp.sum(values), counts

    (_, counts), (_, tg) = jax.jit(jax.value_and_grad(both, argnums=(0, 1), has_aux=True))(params(), tally())
    assert np.asarray(counts.nfe_forward).tolist() == [n for n, _ in single]
    assert np.array_equal(np.asarray(tg), single[0][1] + single[1][1])

    def twice(p, tl):
        (a, ca), (b, cb) = loss(p, tl, y0s[0]), loss(p, tl, y0s[1])
        return a + b, (ca, cb)

    _, (_, tg2) = jax.jit(jax.value_and_grad(twice, argnums=(0, 1), has_aux=True))(params(), tally())
    assert np.array_equal(np.asarray(tg2), np.asarray(tg))
    assert collect(None, counts, tg).nfe_forward == sum(n for n, _ in single)


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
    assert np.isnan(np.asarray(grads["W"])).all() and float(tg[3]) == 1.0
    with pytest.raises(NonFiniteStateError, match="1 backward solve"):
        collect(None, counts, tg)


@pytest.mark.parametrize("kw, message", [
    ({"return_counts": "yes"}, "return_counts must be True or False"),
    ({"tally": jnp.zeros(3)}, r"tally must be a float array of shape \(4,\)"),
    ({"tally": jnp.zeros(4, jnp.int32)}, r"tally must be a float array of shape \(4,\)"),
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
