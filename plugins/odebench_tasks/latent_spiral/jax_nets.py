"""The latent-ODE experiment's networks (Chen et al. 2018, section 5.1) as pure JAX functions.

``params`` has the keys of ``odebench_tasks.latent_spiral.params`` (= the torch modules'
state_dict keys) with Linear weights in torch's (out, in) layout, so the numpy weights of
``params.init_params`` go in unchanged and give torch's numbers.  Sizes are read from the
arrays' shapes.  The functions mirror ``.torch_nets`` with ``params`` in place of the module.

The ODE function is the module-level ``odefunc`` with the backend's signature
``func(t, z, args)``: a single stable callable, so a jit cache keyed on the function's identity
is reused across calls.  Its ``args`` are the ``"odefunc."`` parameters with that prefix
removed (``"fc1.weight"``, ...; see ``odefunc_args``).  ``odeint(func, y0, t, args=None)``
is the backend's with solver and tolerances bound.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = [
    "linear", "odefunc", "odefunc_args", "time_gaps", "encode", "latent_trajectory", "decode",
    "gaussian_loglik", "kl_to_standard_normal", "latent_ode_loss", "latent_ode_predict",
    "rnn_predict", "rnn_loss",
]

ODEFUNC_PREFIX = "odefunc."


def linear(params: dict, prefix: str, x):
    """torch's Linear: x @ weight.T + bias, with ``prefix + "weight"`` / ``"bias"``."""
    return x @ params[prefix + "weight"].T + params[prefix + "bias"]


def _rnn_step(params: dict, prefix: str, inp, h):
    """h' = tanh(i2h([input, h])) (the encoder's and the baseline's cell)."""
    return jnp.tanh(linear(params, prefix + "i2h.", jnp.concatenate([inp, h], axis=-1)))


def _initial_state(params: dict, prefix: str, like):
    return jnp.zeros((like.shape[0], params[prefix + "i2h.bias"].shape[0]), like.dtype)


def odefunc(t, z, args):
    """dz/dt = fc3(elu(fc2(elu(fc1(z))))); autonomous, t is ignored (``args``: see module doc)."""
    return linear(args, "fc3.", jax.nn.elu(linear(args, "fc2.", jax.nn.elu(linear(args, "fc1.", z)))))


def odefunc_args(params: dict) -> dict:
    """The ODE function's parameters from the full dict, keys without the ``"odefunc."`` prefix."""
    n = len(ODEFUNC_PREFIX)
    return {k[n:]: v for k, v in params.items() if k.startswith(ODEFUNC_PREFIX)}


# --------------------------------------------------------------------------- latent ODE


def time_gaps(t):
    """[B, n] -> [B, n]: t_{i+1} - t_i, and 0 for the last observation (the RNN's time input)."""
    return jnp.concatenate([t[:, 1:] - t[:, :-1], jnp.zeros_like(t[:, :1])], axis=1)


def encode(params: dict, x_obs, t_obs):
    """(mean, logvar) of q(z0), each [B, latent]: the RNN reads [x_i, gap_i] from the last
    observation to the first, so its final state summarises the sequence as seen from t_0."""
    inputs = jnp.concatenate([x_obs, time_gaps(t_obs)[..., None]], axis=-1)

    def step(h, inp):
        return _rnn_step(params, "encoder.", inp, h), None

    h, _ = jax.lax.scan(step, _initial_state(params, "encoder.", x_obs), jnp.swapaxes(inputs, 0, 1)[::-1])
    out = linear(params, "encoder.h2o.", h)
    latent = out.shape[-1] // 2
    return out[:, :latent], out[:, latent:]


def latent_trajectory(params: dict, z0, times, odeint):
    """z at every time in ``times`` (1-D, increasing, from 0): [T, B, latent]."""
    return odeint(odefunc, z0, times, args=odefunc_args(params))


def decode(params: dict, z):
    """Observations from latent states, over any leading dimensions."""
    return linear(params, "decoder.fc2.", jax.nn.relu(linear(params, "decoder.fc1.", z)))


def gaussian_loglik(x, x_hat, sigma: float, mask):
    """log N(x; x_hat, sigma^2 I) summed over the points with mask 1 and all coordinates: [B].
    ``x``, ``x_hat`` [B, n, obs]; ``mask`` [B, n]."""
    per_coord = ((x - x_hat) / sigma) ** 2 + 2.0 * math.log(sigma) + math.log(2.0 * math.pi)
    return -0.5 * jnp.sum(jnp.sum(per_coord, axis=-1) * mask, axis=-1)


def kl_to_standard_normal(mean, logvar):
    """KL(N(mean, exp(logvar)) || N(0, I)) per sample, in closed form: [B]."""
    return 0.5 * jnp.sum(jnp.exp(logvar) + mean ** 2 - 1.0 - logvar, axis=-1)


def _at_observations(z, gather_idx):
    """[T, B, latent] -> [B, n, latent]: row gather_idx[b, i] of sample b."""
    return z[gather_idx, jnp.arange(z.shape[1])[:, None]]


def latent_ode_loss(params: dict, x_obs, t_obs, mask, times, gather_idx, eps, sigma: float, odeint):
    """The negative ELBO, -(log-likelihood - KL), averaged over the batch; z0 is reparametrised
    with the caller's ``eps`` [B, latent] so both frameworks see the same sample."""
    mean, logvar = encode(params, x_obs, t_obs)
    z0 = mean + jnp.exp(0.5 * logvar) * eps
    x_hat = decode(params, _at_observations(latent_trajectory(params, z0, times, odeint), gather_idx))
    return -jnp.mean(gaussian_loglik(x_obs, x_hat, sigma, mask) - kl_to_standard_normal(mean, logvar))


def latent_ode_predict(params: dict, x_obs, t_obs, times, odeint):
    """The decoded trajectory at ``times`` from the posterior mean (eps = 0): [B, T, obs]."""
    mean, _ = encode(params, x_obs, t_obs)
    return jnp.swapaxes(decode(params, latent_trajectory(params, mean, times, odeint)), 0, 1)


# --------------------------------------------------------------------------- RNN baseline


def rnn_predict(params: dict, x_obs, t_obs, t_future):
    """(one_step [B, n-1, obs], forecast [B, m, obs]).  Each step reads [value, gap to the
    target time] and predicts the value there: teacher-forced on the observations, then fed its
    own prediction at the future times ``t_future`` ([B, m], or [m] shared)."""
    batch, n = x_obs.shape[:2]
    t_future = jnp.broadcast_to(t_future, (batch, jnp.shape(t_future)[-1]))
    m = t_future.shape[1]
    times = jnp.concatenate([t_obs, t_future], axis=1)
    gaps = (times[:, 1:] - times[:, :-1]).T[..., None]  # [n + m - 1, B, 1]
    x_in = jnp.swapaxes(jnp.pad(x_obs, ((0, 0), (0, m), (0, 0)))[:, :-1], 0, 1)  # x_k; 0 past the data
    observed = jnp.arange(n + m - 1) < n  # else the step reads its own last prediction

    def step(carry, xs):
        h, prev = carry
        x, gap, is_observed = xs
        h = _rnn_step(params, "rnn.", jnp.concatenate([jnp.where(is_observed, x, prev), gap], axis=-1), h)
        pred = linear(params, "rnn.h2o.", h)
        return (h, pred), pred

    init = (_initial_state(params, "rnn.", x_obs), jnp.zeros_like(x_obs[:, 0]))
    _, preds = jax.lax.scan(step, init, (x_in, gaps, observed))
    out = jnp.swapaxes(preds, 0, 1)
    return out[:, :n - 1], out[:, n - 1:]


def rnn_loss(params: dict, x_obs, t_obs, mask, sigma: float):
    """Gaussian NLL (same sigma as the latent ODE) of the one-step predictions of x_1..x_{n-1},
    averaged over the batch, so the two models' losses are on one scale."""
    one_step, _ = rnn_predict(params, x_obs, t_obs, t_obs[:, :0])
    return -jnp.mean(gaussian_loglik(x_obs[:, 1:], one_step, sigma, mask[:, 1:]))
