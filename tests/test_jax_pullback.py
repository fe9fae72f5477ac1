"""The pullback chooser (odebench_jax.pullback): both forms give the same gradients; the choice
is measured once per program and shapes, and small programs are not measured at all."""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy

import odebench  # noqa: E402
from odebench.specs import SolveStats  # noqa: E402
from odebench_jax import collect, pullback, tally  # noqa: E402


def _mlp(batch: int, hidden: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    params = (jnp.asarray(rng.normal(0, 0.5, (hidden, 2)), jnp.float32), jnp.asarray(rng.normal(0, 0.5, hidden), jnp.float32),
              jnp.asarray(rng.normal(0, 0.5, (2, hidden)), jnp.float32))
    y0 = jnp.asarray(rng.normal(0, 1, (batch, 2)), jnp.float32)

    def field(t, y, p):
        w1, b1, w2 = p
        return jnp.tanh(y @ w1.T + b1) @ w2.T

    return field, y0, params


def _grads(name: str, mode: str, monkeypatch):
    monkeypatch.setattr(pullback, "MODE", mode)
    jax.clear_caches()
    field, y0, params = _mlp(64, 32)
    t = jnp.asarray([0.0, 0.5, 1.0], jnp.float32)

    def loss(p, y, tl):
        ys = odebench.backend(name).odeint(field, y, t, p, solver="dopri5", rtol=1e-5, atol=1e-5, tally=tl)
        return jnp.sum(ys[-1] ** 2) + jnp.sum(ys[1])

    value, (*grads, tally_grad) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(params, y0, tally())
    stats = collect(SolveStats(), tally_grad=tally_grad)
    return float(value), jax.tree_util.tree_leaves(grads), (stats.nfe_forward, stats.nfe_backward)


@pytest.mark.parametrize("name", ["jax-adjoint", "jax-backprop"])
def test_batched_pullback_gives_the_same_gradients_and_counts(name, monkeypatch):
    value_p, grads_p, counts_p = _grads(name, "plain", monkeypatch)
    value_b, grads_b, counts_b = _grads(name, "batched", monkeypatch)
    assert value_b == value_p and counts_b == counts_p and counts_p[1] > 0
    for a, b in zip(grads_p, grads_b):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)


def test_choice_is_measured_once_and_small_programs_are_not(monkeypatch):
    monkeypatch.setattr(pullback, "MODE", "auto")
    monkeypatch.setattr(pullback, "_CHOICES", {})
    compiled = []
    real_measure = pullback._measure

    def spy(*args):
        compiled.append(args)
        return real_measure(*args)

    monkeypatch.setattr(pullback, "_measure", spy)
    _, y0, params = _mlp(4, 3)

    def evaluate(batched, y, p, a):
        _, vjp = jax.vjp(lambda y, p: jnp.tanh(y @ p[0].T + p[1]) @ p[2].T, y, p)
        return pullback.pull_back(vjp, a, batched)

    assert pullback.choose("small", evaluate, y0, params, y0) is False  # a few hundred flops: plain
    assert pullback.choose("small", evaluate, y0, params, y0) is False
    assert len(compiled) == 1  # cached per key and shapes
    pullback.choose("small", evaluate, y0[:2], params, y0[:2])  # other shapes: measured again
    assert len(compiled) == 2
    monkeypatch.setattr(pullback, "MODE", "batched")
    assert pullback.choose("small", evaluate, y0, params, y0) is True
