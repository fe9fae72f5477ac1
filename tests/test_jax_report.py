"""The counts' host callback primitive (odebench_jax/report.py): it runs when the program does,
hands the callback numpy, returns a zero, and keeps working under jit, vmap, grad and jvp."""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy

from odebench_jax.report import report  # noqa: E402


class Recorder:
    def __init__(self):
        self.seen = []

    def __call__(self, packed):
        self.seen.append(packed)
        return np.zeros(packed.shape[:-1], packed.dtype)


def _solve_like(rec):
    """A stand-in for a solve: its result depends on the report's token, as odeint's does."""

    def f(x):
        packed = jax.lax.stop_gradient(jnp.stack([jnp.sum(x), 3.0 * jnp.ones_like(x[0])]))
        token = report(rec, packed)
        return jnp.sin(x) * (1 + token)

    return f


def test_runs_with_the_program_and_hands_over_numpy():
    rec = Recorder()
    f = jax.jit(_solve_like(rec))
    x = jnp.asarray([0.5, 1.5], jnp.float32)
    for _ in range(3):
        np.testing.assert_array_equal(f(x), np.sin(np.asarray(x)))
    jax.effects_barrier()
    assert len(rec.seen) == 3
    assert all(type(p) is np.ndarray for p in rec.seen)  # not a jax Array: no device_put
    np.testing.assert_allclose(rec.seen[0], [2.0, 3.0])


def test_eager_call_runs_the_callback_at_once():
    rec = Recorder()
    token = report(rec, jnp.asarray([1.0, 2.0]))
    assert token.shape == () and float(token) == 0.0 and len(rec.seen) == 1


def test_vmap_hands_every_element_at_once():
    rec = Recorder()
    xs = jnp.asarray([[0.5, 1.5], [1.0, 2.0], [0.0, 0.25]], jnp.float32)
    out = jax.jit(jax.vmap(_solve_like(rec)))(xs)
    jax.effects_barrier()
    np.testing.assert_allclose(out, np.sin(np.asarray(xs)), rtol=1e-6)
    assert len(rec.seen) == 1 and rec.seen[0].shape == (3, 2)
    np.testing.assert_allclose(rec.seen[0][:, 0], [2.0, 3.0, 0.25])


def test_vmap_over_a_trailing_batch_axis():
    rec = Recorder()
    xs = jnp.asarray([[0.5, 1.0], [1.5, 2.0]], jnp.float32)  # elements are columns
    jax.jit(jax.vmap(_solve_like(rec), in_axes=1))(xs)
    jax.effects_barrier()
    np.testing.assert_allclose(rec.seen[0][:, 0], [2.0, 3.0])


def test_gradients_pass_through_and_the_callback_runs_under_grad():
    rec = Recorder()
    f = _solve_like(rec)
    x = jnp.asarray([0.5, 1.5], jnp.float32)
    g = jax.jit(jax.grad(lambda x: jnp.sum(f(x))))(x)
    jax.effects_barrier()
    np.testing.assert_allclose(g, np.cos(np.asarray(x)), rtol=1e-6)
    assert len(rec.seen) == 1
    _, tangent = jax.jvp(f, (x,), (jnp.ones_like(x),))
    np.testing.assert_allclose(tangent, np.cos(np.asarray(x)), rtol=1e-6)


def test_an_unused_report_is_dead_code():
    """No effects: a result nobody uses is removed, as a pure_callback's is (hence the token)."""
    rec = Recorder()

    def f(x):
        report(rec, jnp.stack([jnp.sum(x), jnp.sum(x)]))
        return x * 2

    jax.jit(f)(jnp.ones(2))
    jax.effects_barrier()
    assert rec.seen == []
