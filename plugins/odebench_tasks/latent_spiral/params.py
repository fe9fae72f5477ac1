"""Names, shapes and initial values of the latent-ODE experiment's networks, in numpy only.

The networks are those of Chen et al. 2018, section 5.1 / Table 2 (torchdiffeq's
``examples/latent_ode.py``), with the time gap to the next observation as an extra RNN input:

``"latent-ode"``: a recognition RNN run backwards over the observations -> q(z0) = N(mean,
exp(logvar)); latent dynamics dz/dt = odefunc(z); a decoder z -> x.
``"rnn"``: the paper's baseline, a tanh RNN on [x_i, gap_i] predicting x_{i+1}.

The weights are drawn here, not by a framework, so torch and JAX start from identical numbers.
Names are exactly the torch modules' ``state_dict`` keys (``.torch_nets``); every layer is
a Linear with ``weight`` (out, in) and ``bias`` (out,), float64.  With o = obs_dim,
l = latent_dim, r = rnn_hidden, f = ode_hidden, d = dec_hidden:

====================================  =============================================
``encoder.i2h``                       (o + 1 + r) -> r: [x_i, gap_i, h] -> h (tanh)
``encoder.h2o``                       r -> 2 l: the mean, then the log-variance of z0
``odefunc.fc1`` / ``fc2`` / ``fc3``   l -> f -> f -> l (ELU between)
``decoder.fc1`` / ``fc2``             l -> d -> o (ReLU between)
``rnn.i2h`` / ``rnn.h2o``             (o + 1 + r) -> r, r -> o (the baseline)
====================================  =============================================

Initial values follow torch's Linear default: weight and bias U(-1/sqrt(in), +1/sqrt(in)),
drawn from ``np.random.default_rng((seed, 0))`` in the order of ``param_shapes``.
"""

from __future__ import annotations

import math

import numpy as np

from .._common.options import positive_int

MODELS = ("latent-ode", "rnn")
DEFAULT_SIZES = {"obs_dim": 2, "latent_dim": 4, "rnn_hidden": 25, "ode_hidden": 20, "dec_hidden": 20}
WEIGHT_STREAM = 0


def validate(model: str, **sizes) -> dict[str, int]:
    """All five sizes as ints (defaults filled in), or a one-line ValueError."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}; got {model!r}")
    unknown = sorted(set(sizes) - set(DEFAULT_SIZES))
    if unknown:
        raise ValueError(f"unknown size(s) {', '.join(unknown)}; known: {', '.join(DEFAULT_SIZES)}")
    return {name: positive_int(name, sizes.get(name, default)) for name, default in DEFAULT_SIZES.items()}


def _linear(name: str, n_in: int, n_out: int):
    bound = 1.0 / math.sqrt(n_in)
    yield f"{name}.weight", (n_out, n_in), bound
    yield f"{name}.bias", (n_out,), bound


def _layout(model: str, s: dict[str, int]):
    """(name, shape, uniform bound) in drawing order (= the torch module's state_dict order)."""
    obs, latent, hidden = s["obs_dim"], s["latent_dim"], s["rnn_hidden"]
    rnn = "rnn" if model == "rnn" else "encoder"
    yield from _linear(f"{rnn}.i2h", obs + 1 + hidden, hidden)
    yield from _linear(f"{rnn}.h2o", hidden, obs if model == "rnn" else 2 * latent)
    if model == "latent-ode":
        yield from _linear("odefunc.fc1", latent, s["ode_hidden"])
        yield from _linear("odefunc.fc2", s["ode_hidden"], s["ode_hidden"])
        yield from _linear("odefunc.fc3", s["ode_hidden"], latent)
        yield from _linear("decoder.fc1", latent, s["dec_hidden"])
        yield from _linear("decoder.fc2", s["dec_hidden"], obs)


def param_shapes(model: str, obs_dim: int = 2, latent_dim: int = 4, rnn_hidden: int = 25,
                 ode_hidden: int = 20, dec_hidden: int = 20) -> dict[str, tuple]:
    """Every parameter's shape, in drawing order (= the torch module's state_dict order)."""
    s = validate(model, obs_dim=obs_dim, latent_dim=latent_dim, rnn_hidden=rnn_hidden,
                 ode_hidden=ode_hidden, dec_hidden=dec_hidden)
    return {name: shape for name, shape, _ in _layout(model, s)}


def init_params(model: str, seed: int, **sizes) -> dict[str, np.ndarray]:
    """The initial weights as float64 numpy arrays (see the module doc for the scheme)."""
    s = validate(model, **sizes)
    rng = np.random.default_rng((int(seed), WEIGHT_STREAM))
    return {name: rng.uniform(-bound, bound, size=shape) for name, shape, bound in _layout(model, s)}


def n_params(model: str, **sizes) -> int:
    """The number of scalar parameters (1,679 for the latent ODE, 777 for the RNN at the defaults)."""
    return sum(math.prod(shape) for _, shape, _ in _layout(model, validate(model, **sizes)))
