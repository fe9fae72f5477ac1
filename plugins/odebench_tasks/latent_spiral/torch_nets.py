"""The latent-ODE experiment's networks (Chen et al. 2018, section 5.1) as torch modules.

``LatentODE``: recognition RNN (backwards over [x_i, gap_i]) -> q(z0) -> dz/dt = odefunc(z)
-> decoder.  ``RNNBaseline``: a tanh RNN on [x_i, gap_i] predicting x_{i+1}.
Parameter names (state_dict keys), shapes and initial values are those of
``odebench_tasks.latent_spiral.params``; copy them in with ``load_params``.

The functions below take the module first and torch tensors (the caller converts numpy data,
``eps`` included; ``gather_idx`` as int64), mirroring ``.jax_nets``, which takes a
params dict in the same place.  ``odeint(func, y0, t)`` is the backend's with solver and
tolerances bound; ``func`` is the ``odefunc`` module, so an adjoint backend finds its
parameters.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from odebench_tasks._common.torch_weights import load_params
from .params import validate

__all__ = [
    "TanhRNN", "ODEFunc", "Decoder", "LatentODE", "RNNBaseline", "build", "load_params",
    "time_gaps", "encode", "latent_trajectory", "decode", "gaussian_loglik", "kl_to_standard_normal",
    "latent_ode_loss", "latent_ode_predict", "rnn_predict", "rnn_loss",
]


class TanhRNN(nn.Module):
    """h' = tanh(i2h([input, h])), output h2o(h): the encoder's and the baseline's cell."""

    def __init__(self, n_in: int, hidden: int, n_out: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.i2h = nn.Linear(n_in + hidden, hidden)
        self.h2o = nn.Linear(hidden, n_out)

    def step(self, inp: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.i2h(torch.cat([inp, h], dim=-1)))

    def initial_state(self, like: torch.Tensor) -> torch.Tensor:
        return like.new_zeros((like.shape[0], self.hidden))


class ODEFunc(nn.Module):
    """dz/dt = fc3(elu(fc2(elu(fc1(z))))); autonomous, t is ignored."""

    def __init__(self, latent_dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(latent_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, latent_dim)

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.fc3(nn.functional.elu(self.fc2(nn.functional.elu(self.fc1(z)))))


class Decoder(nn.Module):
    """x = fc2(relu(fc1(z))), over any leading dimensions."""

    def __init__(self, latent_dim: int, hidden: int, obs_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(latent_dim, hidden)
        self.fc2 = nn.Linear(hidden, obs_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(z)))


class LatentODE(nn.Module):
    """The three parts as submodules ``encoder``, ``odefunc``, ``decoder`` (use the functions below)."""

    def __init__(self, obs_dim: int = 2, latent_dim: int = 4, rnn_hidden: int = 25,
                 ode_hidden: int = 20, dec_hidden: int = 20) -> None:
        super().__init__()
        self.encoder = TanhRNN(obs_dim + 1, rnn_hidden, 2 * latent_dim)
        self.odefunc = ODEFunc(latent_dim, ode_hidden)
        self.decoder = Decoder(latent_dim, dec_hidden, obs_dim)


class RNNBaseline(nn.Module):
    """The baseline's single ``rnn`` cell (see ``rnn_predict``)."""

    def __init__(self, obs_dim: int = 2, rnn_hidden: int = 25) -> None:
        super().__init__()
        self.rnn = TanhRNN(obs_dim + 1, rnn_hidden, obs_dim)


def build(model: str, **sizes) -> nn.Module:
    """``LatentODE`` or ``RNNBaseline`` at the given sizes (torch's own init; see load_params)."""
    s = validate(model, **sizes)
    return LatentODE(**s) if model == "latent-ode" else RNNBaseline(s["obs_dim"], s["rnn_hidden"])


# --------------------------------------------------------------------------- latent ODE


def time_gaps(t: torch.Tensor) -> torch.Tensor:
    """[B, n] -> [B, n]: t_{i+1} - t_i, and 0 for the last observation (the RNN's time input)."""
    return torch.cat([t[:, 1:] - t[:, :-1], torch.zeros_like(t[:, :1])], dim=1)


def encode(net: LatentODE, x_obs: torch.Tensor, t_obs: torch.Tensor):
    """(mean, logvar) of q(z0), each [B, latent]: the RNN reads [x_i, gap_i] from the last
    observation to the first, so its final state summarises the sequence as seen from t_0."""
    inputs = torch.cat([x_obs, time_gaps(t_obs)[..., None]], dim=-1)
    h = net.encoder.initial_state(x_obs)
    for i in reversed(range(inputs.shape[1])):
        h = net.encoder.step(inputs[:, i], h)
    return net.encoder.h2o(h).chunk(2, dim=-1)


def latent_trajectory(net: LatentODE, z0: torch.Tensor, times: torch.Tensor, odeint) -> torch.Tensor:
    """z at every time in ``times`` (1-D, increasing, from 0): [T, B, latent]."""
    return odeint(net.odefunc, z0, times)


def decode(net: LatentODE, z: torch.Tensor) -> torch.Tensor:
    """Observations from latent states, over any leading dimensions."""
    return net.decoder(z)


def gaussian_loglik(x: torch.Tensor, x_hat: torch.Tensor, sigma: float, mask: torch.Tensor) -> torch.Tensor:
    """log N(x; x_hat, sigma^2 I) summed over the points with mask 1 and all coordinates: [B].
    ``x``, ``x_hat`` [B, n, obs]; ``mask`` [B, n]."""
    per_coord = ((x - x_hat) / sigma) ** 2 + 2.0 * math.log(sigma) + math.log(2.0 * math.pi)
    return -0.5 * (per_coord.sum(dim=-1) * mask).sum(dim=-1)


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per sample, in closed form: [B]."""
    return 0.5 * (logvar.exp() + mean ** 2 - 1.0 - logvar).sum(dim=-1)


def _at_observations(z: torch.Tensor, gather_idx: torch.Tensor) -> torch.Tensor:
    """[T, B, latent] -> [B, n, latent]: row gather_idx[b, i] of sample b."""
    return z[gather_idx, torch.arange(z.shape[1], device=z.device)[:, None]]


def latent_ode_loss(net: LatentODE, x_obs, t_obs, mask, times, gather_idx, eps, sigma: float, odeint):
    """The negative ELBO, -(log-likelihood - KL), averaged over the batch; z0 is reparametrised
    with the caller's ``eps`` [B, latent] so both frameworks see the same sample."""
    mean, logvar = encode(net, x_obs, t_obs)
    z0 = mean + torch.exp(0.5 * logvar) * eps
    x_hat = decode(net, _at_observations(latent_trajectory(net, z0, times, odeint), gather_idx))
    return -(gaussian_loglik(x_obs, x_hat, sigma, mask) - kl_to_standard_normal(mean, logvar)).mean()


def latent_ode_predict(net: LatentODE, x_obs, t_obs, times, odeint) -> torch.Tensor:
    """The decoded trajectory at ``times`` from the posterior mean (eps = 0): [B, T, obs]."""
    mean, _ = encode(net, x_obs, t_obs)
    return decode(net, latent_trajectory(net, mean, times, odeint)).transpose(0, 1)


# --------------------------------------------------------------------------- RNN baseline


def rnn_predict(net: RNNBaseline, x_obs: torch.Tensor, t_obs: torch.Tensor, t_future: torch.Tensor):
    """(one_step [B, n-1, obs], forecast [B, m, obs]).  Each step reads [value, gap to the
    target time] and predicts the value there: teacher-forced on the observations, then fed its
    own prediction at the future times ``t_future`` ([B, m], or [m] shared)."""
    n = x_obs.shape[1]
    t_future = torch.broadcast_to(t_future, (x_obs.shape[0], t_future.shape[-1]))
    times = torch.cat([t_obs, t_future], dim=1)
    gaps = times[:, 1:] - times[:, :-1]
    h, x, preds = net.rnn.initial_state(x_obs), x_obs[:, 0], []
    for k in range(gaps.shape[1]):
        h = net.rnn.step(torch.cat([x, gaps[:, k:k + 1]], dim=-1), h)
        preds.append(net.rnn.h2o(h))
        x = x_obs[:, k + 1] if k + 1 < n else preds[-1]
    out = torch.stack(preds, dim=1) if preds else x_obs[:, :0]
    return out[:, :n - 1], out[:, n - 1:]


def rnn_loss(net: RNNBaseline, x_obs, t_obs, mask, sigma: float) -> torch.Tensor:
    """Gaussian NLL (same sigma as the latent ODE) of the one-step predictions of x_1..x_{n-1},
    averaged over the batch, so the two models' losses are on one scale."""
    one_step, _ = rnn_predict(net, x_obs, t_obs, t_obs[:, :0])
    return -gaussian_loglik(x_obs[:, 1:], one_step, sigma, mask[:, 1:]).mean()
