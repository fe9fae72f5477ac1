"""The latent-ODE task's networks (Chen et al. 2018, section 5.1): parameter counts, shapes and
initial weights; the ELBO pieces against closed forms, scipy and Monte Carlo; the backwards
encoder and the RNN baseline's feedback forecast; and torch and JAX giving the same encoder
outputs, trajectories, losses and adjoint gradients from the same numpy weights (float64)."""

from __future__ import annotations

import math

import numpy as np
import pytest

jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")
scipy_stats = pytest.importorskip("scipy.stats")
import jax.numpy as jnp  # noqa: E402

import odebench  # noqa: E402
from odebench_tasks.latent_spiral import jax_nets, params as P, torch_nets  # noqa: E402

pytestmark = pytest.mark.usefixtures("jax_x64")  # float64 in jax for this module (conftest)

LATENT_ODE, RNN = 1_679, 777  # at the default sizes, counted by hand
SMALL = {"obs_dim": 3, "latent_dim": 6, "rnn_hidden": 7, "ode_hidden": 5, "dec_hidden": 9}
SMALL_COUNTS = {"latent-ode": 374, "rnn": 108}
BATCH, N_OBS, SIGMA = 3, 6, 0.3
SOLVES = {  # name: (solver keywords, relative tolerance between the frameworks)
    "rk4": ({"solver": "rk4", "options": {"step_size": 0.05}}, 1e-10),
    "dopri5": ({"solver": "dopri5", "rtol": 1e-8, "atol": 1e-8}, 1e-6),
}


class Torch:
    """Adapter: the torch module for numpy weights, numpy <-> tensors, the backend's odeint."""

    nets = torch_nets

    @staticmethod
    def net(model, weights, **sizes):
        module = torch_nets.build(model, **sizes).to(torch.float64)
        torch_nets.load_params(module, weights)
        return module

    arr = staticmethod(torch.as_tensor)

    @staticmethod
    def np(x):
        return x.detach().numpy()

    @staticmethod
    def odeint(method="backprop", **kw):
        backend = odebench.backend(f"torch-{method}")
        return lambda f, y0, t: backend.odeint(f, y0, t, **kw)


class Jax:
    """Adapter: the params dict for numpy weights, numpy <-> arrays, the backend's odeint."""

    nets = jax_nets

    @staticmethod
    def net(model, weights, **sizes):
        return {k: jnp.asarray(v) for k, v in weights.items()}

    arr = staticmethod(jnp.asarray)
    np = staticmethod(np.asarray)

    @staticmethod
    def odeint(method="backprop", **kw):
        backend = odebench.backend(f"jax-{method}")
        return lambda f, y0, t, args=None: backend.odeint(f, y0, t, args, **kw)


FRAMEWORKS = [Torch, Jax]


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _batch(obs_dim=2, latent_dim=4, seed=7):
    """Irregular observations of BATCH samples, each starting at t = 0, with the union grid."""
    rng = np.random.default_rng(seed)
    t_obs = np.concatenate([np.zeros((BATCH, 1)), np.sort(rng.uniform(0.1, 2.0, (BATCH, N_OBS - 1)), 1)], 1)
    times = np.unique(t_obs)
    mask = np.ones((BATCH, N_OBS))
    mask[0, 2] = mask[2, -1] = 0.0
    return {"x_obs": rng.normal(size=(BATCH, N_OBS, obs_dim)), "t_obs": t_obs, "mask": mask, "times": times,
            "gather_idx": np.searchsorted(times, t_obs), "eps": rng.normal(size=(BATCH, latent_dim))}


def _inputs(fw, data):
    return {k: fw.arr(v) for k, v in data.items()}


def _loss_args(fw, data, odeint):
    d = _inputs(fw, data)
    return (d["x_obs"], d["t_obs"], d["mask"], d["times"], d["gather_idx"], d["eps"], SIGMA, odeint)


# --------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("model, sizes, expected", [
    ("latent-ode", {}, LATENT_ODE), ("rnn", {}, RNN),
    ("latent-ode", SMALL, SMALL_COUNTS["latent-ode"]), ("rnn", SMALL, SMALL_COUNTS["rnn"]),
])
def test_parameter_counts_and_names(model, sizes, expected):
    shapes = P.param_shapes(model, **sizes)
    assert P.n_params(model, **sizes) == expected == sum(math.prod(s) for s in shapes.values())
    module = torch_nets.build(model, **sizes)
    assert sum(p.numel() for p in module.parameters()) == expected
    assert list(module.state_dict()) == list(shapes)  # names and drawing order
    assert {k: tuple(v.shape) for k, v in module.state_dict().items()} == shapes
    jax_params = Jax.net(model, P.init_params(model, 0, **sizes))
    assert sum(v.size for v in jax_params.values()) == expected


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_output_shapes_follow_the_sizes(fw):
    data = _batch(SMALL["obs_dim"], SMALL["latent_dim"])
    d = _inputs(fw, data)
    net = fw.net("latent-ode", P.init_params("latent-ode", 0, **SMALL), **SMALL)
    mean, logvar = fw.nets.encode(net, d["x_obs"], d["t_obs"])
    assert mean.shape == logvar.shape == (BATCH, SMALL["latent_dim"])
    z = fw.nets.latent_trajectory(net, mean, d["times"], fw.odeint(**SOLVES["rk4"][0]))
    assert z.shape == (len(data["times"]), BATCH, SMALL["latent_dim"])
    assert fw.nets.decode(net, z).shape == (len(data["times"]), BATCH, SMALL["obs_dim"])
    rnn = fw.net("rnn", P.init_params("rnn", 0, **SMALL), **SMALL)
    one_step, forecast = fw.nets.rnn_predict(rnn, d["x_obs"], d["t_obs"], fw.arr(np.array([2.1, 2.5])))
    assert one_step.shape == (BATCH, N_OBS - 1, SMALL["obs_dim"])
    assert forecast.shape == (BATCH, 2, SMALL["obs_dim"])


@pytest.mark.parametrize("call, word", [
    (lambda: P.param_shapes("gru"), "latent-ode, rnn"), (lambda: P.param_shapes("rnn", rnn_hidden=0), "rnn_hidden"),
    (lambda: P.init_params("latent-ode", 0, latent_dim=-1), "latent_dim"),
    (lambda: P.n_params("latent-ode", ode_hidden=2.5), "ode_hidden"),
    (lambda: P.init_params("rnn", 0, hidden=3), "unknown size"),
])
def test_bad_configuration_is_a_one_line_value_error(call, word):
    with pytest.raises(ValueError, match=word) as info:
        call()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("model", P.MODELS)
def test_initial_values_follow_torch_defaults_and_the_seed(model):
    a, b, c = (P.init_params(model, s, **SMALL) for s in (3, 3, 4))
    for name, value in a.items():
        assert value.dtype == np.float64 and np.array_equal(value, b[name]) and not np.array_equal(value, c[name])
        fan_in = P.param_shapes(model, **SMALL)[name.rsplit(".", 1)[0] + ".weight"][1]
        bound = 1.0 / math.sqrt(fan_in)
        assert np.max(np.abs(value)) <= bound, name
        assert np.max(np.abs(value)) > 0.3 * bound, name  # the bound is not too small


# --------------------------------------------------------------------------- ELBO pieces


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_kl_closed_form_by_hand(fw):
    mean = np.array([[0.0] * 4, [1.0] * 4, [0.0] * 4, [1.0, 0.0, -1.0, 0.0]])
    logvar = np.array([[0.0] * 4, [0.0] * 4, [math.log(2.0)] * 4, [0.0, math.log(2.0), 0.0, 0.0]])
    kl_var2 = 0.5 * (1.0 - math.log(2.0))  # KL(N(0, 2) || N(0, 1))
    expected = [0.0, 4 * 0.5, 4 * kl_var2, 0.5 + kl_var2 + 0.5]
    kl = fw.np(fw.nets.kl_to_standard_normal(fw.arr(mean), fw.arr(logvar)))
    np.testing.assert_allclose(kl, expected, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_kl_matches_monte_carlo(fw):
    mean, logvar = np.array([0.5, -1.0, 0.2, 0.0]), np.array([0.3, -0.7, 0.0, 0.9])
    std = np.exp(0.5 * logvar)
    z = mean + std * np.random.default_rng(0).standard_normal((200_000, 4))
    log_q = scipy_stats.norm.logpdf(z, mean, std).sum(1)
    log_p = scipy_stats.norm.logpdf(z).sum(1)
    estimate = float(np.mean(log_q - log_p))
    kl = float(fw.np(fw.nets.kl_to_standard_normal(fw.arr(mean[None]), fw.arr(logvar[None])))[0])
    assert abs(kl - estimate) <= 0.02 * kl


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_gaussian_loglik_matches_scipy_with_a_mask(fw):
    rng = np.random.default_rng(1)
    x, x_hat = rng.normal(size=(2, 5, 2)), rng.normal(size=(2, 5, 2))
    mask = np.array([[1, 1, 0, 1, 1], [0, 1, 1, 1, 0]], dtype=float)
    expected = (scipy_stats.norm.logpdf(x, x_hat, SIGMA).sum(-1) * mask).sum(-1)
    got = fw.np(fw.nets.gaussian_loglik(fw.arr(x), fw.arr(x_hat), SIGMA, fw.arr(mask)))
    np.testing.assert_allclose(got, expected, rtol=1e-13)


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_latent_ode_loss_is_its_definition(fw):
    """The loss against the negative ELBO assembled by hand (per-point decoder rows, scipy)."""
    data, odeint = _batch(), fw.odeint(**SOLVES["rk4"][0])
    d, net = _inputs(fw, data), fw.net("latent-ode", P.init_params("latent-ode", 0))
    mean, logvar = (fw.np(v) for v in fw.nets.encode(net, d["x_obs"], d["t_obs"]))
    z0 = mean + np.exp(0.5 * logvar) * data["eps"]
    z = fw.np(fw.nets.latent_trajectory(net, fw.arr(z0), d["times"], odeint))
    elbo = []
    for b in range(BATCH):
        x_hat = np.stack([fw.np(fw.nets.decode(net, fw.arr(z[data["gather_idx"][b, i], b]))) for i in range(N_OBS)])
        loglik = scipy_stats.norm.logpdf(data["x_obs"][b], x_hat, SIGMA).sum(-1) @ data["mask"][b]
        kl = 0.5 * np.sum(np.exp(logvar[b]) + mean[b] ** 2 - 1.0 - logvar[b])
        elbo.append(loglik - kl)
    loss = float(fw.np(fw.nets.latent_ode_loss(net, *_loss_args(fw, data, odeint))))
    assert loss == pytest.approx(-np.mean(elbo), rel=1e-12)


# --------------------------------------------------------------------------- recurrences


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_encoder_runs_backwards(fw):
    """With no recurrent weights the state after each step depends on that step's input only,
    so the output is h2o(tanh(W [x_0, t_1 - t_0] + b)): the first observation is read last."""
    weights, data = P.init_params("latent-ode", 0), _batch()
    weights["encoder.i2h.weight"][:, 3:] = 0.0  # columns of h; the input is [x (2), gap (1)]
    net = fw.net("latent-ode", weights)
    first = np.concatenate([data["x_obs"][:, 0], data["t_obs"][:, 1:2] - data["t_obs"][:, :1]], 1)
    h = np.tanh(first @ weights["encoder.i2h.weight"][:, :3].T + weights["encoder.i2h.bias"])
    expected = h @ weights["encoder.h2o.weight"].T + weights["encoder.h2o.bias"]

    def encode(x, t):
        return np.concatenate([fw.np(v) for v in fw.nets.encode(net, fw.arr(x), fw.arr(t))], 1)

    np.testing.assert_allclose(encode(data["x_obs"], data["t_obs"]), expected, rtol=1e-13)
    later_x, later_t = data["x_obs"].copy(), data["t_obs"].copy()
    later_x[:, 1:] += 1.0
    later_t[:, 2:] += 0.5
    np.testing.assert_allclose(encode(later_x, later_t), expected, rtol=1e-13)
    moved_first = data["x_obs"].copy()
    moved_first[:, 0] += 1.0
    assert np.min(np.abs(encode(moved_first, data["t_obs"]) - expected)) > 1e-6


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_rnn_forecast_feeds_back_its_own_predictions(fw):
    data, t_future = _batch(), np.array([2.2, 2.3, 2.7])
    net = fw.net("rnn", P.init_params("rnn", 0))

    def predict(x, t, future):
        return [fw.np(v) for v in fw.nets.rnn_predict(net, fw.arr(x), fw.arr(t), fw.arr(future))]

    one_step, forecast = predict(data["x_obs"], data["t_obs"], t_future)
    assert one_step.shape == (BATCH, N_OBS - 1, 2) and forecast.shape == (BATCH, 3, 2)
    # the forecast is the one-step prediction of the sequence extended by its own predictions
    x_ext = np.concatenate([data["x_obs"], forecast], 1)
    t_ext = np.concatenate([data["t_obs"], np.tile(t_future, (BATCH, 1))], 1)
    ext_one_step, none = predict(x_ext, t_ext, t_future[:0])
    assert none.shape == (BATCH, 0, 2)
    np.testing.assert_allclose(ext_one_step, np.concatenate([one_step, forecast], 1), rtol=1e-13)
    # a per-sample t_future gives the same as a shared one; the last observation moves the forecast only
    np.testing.assert_array_equal(predict(data["x_obs"], data["t_obs"], np.tile(t_future, (BATCH, 1)))[1], forecast)
    moved = data["x_obs"].copy()
    moved[:, -1] += 0.5
    moved_one_step, moved_forecast = predict(moved, data["t_obs"], t_future)
    np.testing.assert_array_equal(moved_one_step, one_step)
    assert np.min(np.abs(moved_forecast - forecast)) > 1e-8


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_rnn_loss_is_the_nll_of_the_one_step_predictions(fw):
    data, net = _batch(), fw.net("rnn", P.init_params("rnn", 0))
    d = _inputs(fw, data)
    one_step = fw.np(fw.nets.rnn_predict(net, d["x_obs"], d["t_obs"], d["t_obs"][:, :0])[0])
    nll = -(scipy_stats.norm.logpdf(data["x_obs"][:, 1:], one_step, SIGMA).sum(-1) * data["mask"][:, 1:]).sum(-1)
    loss = float(fw.np(fw.nets.rnn_loss(net, d["x_obs"], d["t_obs"], d["mask"], SIGMA)))
    assert loss == pytest.approx(np.mean(nll), rel=1e-12)


# --------------------------------------------------------------------------- torch = JAX


def _both(model):
    weights = P.init_params(model, 5)
    return [(fw, fw.net(model, weights)) for fw in FRAMEWORKS]


@pytest.mark.parametrize("solve", list(SOLVES))
def test_torch_and_jax_agree_on_the_latent_ode(solve):
    kw, tol = SOLVES[solve]
    data, results = _batch(), []
    for fw, net in _both("latent-ode"):
        d, odeint = _inputs(fw, data), fw.odeint(**kw)
        with torch.no_grad():
            mean, logvar = fw.nets.encode(net, d["x_obs"], d["t_obs"])
            z = fw.nets.latent_trajectory(net, mean, d["times"], odeint)
            results.append({
                "mean": fw.np(mean), "logvar": fw.np(logvar), "z": fw.np(z), "x_hat": fw.np(fw.nets.decode(net, z)),
                "loss": fw.np(fw.nets.latent_ode_loss(net, *_loss_args(fw, data, odeint))),
                "predict": fw.np(fw.nets.latent_ode_predict(net, d["x_obs"], d["t_obs"], d["times"], odeint)),
            })
    torch_out, jax_out = results
    assert jax_out["z"].dtype == np.float64
    assert max(_rel(jax_out[k], torch_out[k]) for k in ("mean", "logvar")) <= 1e-13
    worst = max((_rel(jax_out[k], torch_out[k]), k) for k in torch_out)
    assert worst[0] <= tol, worst
    np.testing.assert_allclose(torch_out["predict"], np.swapaxes(torch_out["x_hat"], 0, 1), rtol=1e-14)


def test_torch_and_jax_agree_on_the_rnn():
    data, t_future, results = _batch(), np.array([[2.2, 2.6]] * BATCH) + np.arange(BATCH)[:, None], []
    for fw, net in _both("rnn"):
        d = _inputs(fw, data)
        with torch.no_grad():
            one_step, forecast = fw.nets.rnn_predict(net, d["x_obs"], d["t_obs"], fw.arr(t_future))
            loss = fw.nets.rnn_loss(net, d["x_obs"], d["t_obs"], d["mask"], SIGMA)
        results.append([fw.np(one_step), fw.np(forecast), fw.np(loss)])
    for t, j in zip(*results):
        assert _rel(j, t) <= 1e-10


def test_adjoint_gradients_reach_every_parameter_and_agree():
    """Fixed rk4 steps, so both adjoints take the same steps forwards and backwards."""
    kw, data = SOLVES["rk4"][0], _batch()
    (_, module), (_, jax_params) = _both("latent-ode")
    torch_nets.latent_ode_loss(module, *_loss_args(Torch, data, Torch.odeint("adjoint", **kw))).backward()
    grads_t = {k: p.grad.numpy() for k, p in module.named_parameters()}
    assert [k for k, g in grads_t.items() if np.max(np.abs(g)) < 1e-8] == []

    args = _loss_args(Jax, data, Jax.odeint("adjoint", **kw))
    grads_j = jax.grad(lambda p: jax_nets.latent_ode_loss(p, *args))(jax_params)
    assert set(grads_j) == set(grads_t)
    worst = max((_rel(grads_j[k], grads_t[k]), k) for k in grads_t)
    assert worst[0] <= 1e-8, worst
