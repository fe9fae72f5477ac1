"""The MNIST task's networks (Chen et al. 2018, Table 1): parameter counts, shapes, initial
weights, and torch and JAX giving the same logits, loss and gradients from the same numpy
weights with the project's own solvers.  float64; numeric checks at width 8 to stay fast
(the gradient check at width 64, see there)."""

from __future__ import annotations

import math

import numpy as np
import pytest

jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")
import jax.numpy as jnp  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import odebench  # noqa: E402
from odebench_tasks.mnist import jax_nets, params as P, torch_nets  # noqa: E402

ODENET, RESNET = 208_266, 576_778
STEM, HEAD, BLOCK = 132_096, 778, 73_984
WIDTH, BATCH = 8, 3

TB, TA = odebench.backend("torch-backprop"), odebench.backend("torch-adjoint")
JB, JA = odebench.backend("jax-backprop"), odebench.backend("jax-adjoint")
SOLVES = {  # name: (solver keywords, relative tolerance on the logits)
    "rk4": ({"solver": "rk4", "options": {"step_size": 0.25}}, 1e-10),
    "dopri5": ({"solver": "dopri5", "rtol": 1e-6, "atol": 1e-6}, 1e-6),
}


pytestmark = pytest.mark.usefixtures("jax_x64")  # float64 in jax for this module (conftest)


def _torch_odeint(backend, **kw):
    return lambda f, y0, t: backend.odeint(f, y0, t, **kw)


def _jax_odeint(backend, **kw):
    return lambda f, y0, t, args=None: backend.odeint(f, y0, t, args, **kw)


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _nets(model, width=WIDTH, n_blocks=2, seed=0):
    """(torch module in float64 with the numpy weights, the same weights for JAX, images, labels)."""
    weights = P.init_params(model, seed, width, n_blocks)
    module = torch_nets.build(model, width, n_blocks).to(torch.float64)
    torch_nets.load_params(module, weights)
    rng = np.random.default_rng(123)
    x = rng.uniform(0.0, 1.0, size=(BATCH, 1, 28, 28))
    labels = rng.integers(0, 10, size=BATCH)
    return module, {k: jnp.asarray(v) for k, v in weights.items()}, x, labels


def _jax_cross_entropy(logits, labels):
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


# --------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("model, expected", [("odenet", ODENET), ("resnet", RESNET)])
def test_parameter_counts_at_width_64(model, expected):
    assert P.n_params(model) == expected
    module = torch_nets.build(model, 64, 6)
    assert sum(p.numel() for p in module.parameters()) == expected
    jax_params = {k: jnp.asarray(v) for k, v in P.init_params(model, 0).items()}
    assert sum(v.size for v in jax_params.values()) == expected
    assert list(module.state_dict()) == list(P.param_shapes(model))  # names and order
    assert {k: tuple(v.shape) for k, v in module.state_dict().items()} == P.param_shapes(model)


@pytest.mark.parametrize("n_blocks", [2, 12])
def test_resnet_counts_grow_by_one_block_each(n_blocks):
    expected = STEM + HEAD + n_blocks * BLOCK
    assert P.n_params("resnet", 64, n_blocks) == expected
    assert sum(p.numel() for p in torch_nets.ResNet(64, n_blocks).parameters()) == expected


@pytest.mark.parametrize("kwargs, word", [
    ({"model": "convnet"}, "odenet, resnet"), ({"model": "odenet", "width": 0}, "width"),
    ({"model": "resnet", "n_blocks": 0}, "n_blocks"), ({"model": "odenet", "width": 40}, "multiple of 32"),
])
def test_bad_configuration_is_a_one_line_value_error(kwargs, word):
    with pytest.raises(ValueError, match=word) as info:
        P.param_shapes(**kwargs)
    assert "\n" not in str(info.value)


def _layers(model, names):
    """The torch layer owning each parameter name (a Conv2d, Linear or GroupNorm)."""
    modules = dict(torch_nets.build(model, WIDTH, 2).named_modules())
    return {name: modules[name.rsplit(".", 1)[0]] for name in names}


def test_same_seed_same_weights_other_seed_other_weights():
    a, b, c = (P.init_params("odenet", s, WIDTH) for s in (0, 0, 1))
    assert all(np.array_equal(a[k], b[k]) and a[k].dtype == np.float64 for k in a)
    drawn = [k for k, layer in _layers("odenet", a).items() if not isinstance(layer, torch.nn.GroupNorm)]
    assert len(drawn) == 12 and all(not np.array_equal(a[k], c[k]) for k in drawn)


@pytest.mark.parametrize("model", ["odenet", "resnet"])
def test_initial_values_follow_torch_defaults(model):
    weights = P.init_params(model, 3, WIDTH, 2)
    for name, layer in _layers(model, weights).items():
        value, kind = weights[name], name.rsplit(".", 1)[1]
        if isinstance(layer, torch.nn.GroupNorm):
            assert np.all(value == (1.0 if kind == "weight" else 0.0)), name
        else:
            bound = 1.0 / math.sqrt(layer.weight[0].numel())  # in_channels * kh * kw, or in_features
            assert np.all(np.abs(value) <= bound), name
            assert kind == "bias" or np.max(np.abs(value)) > 0.5 * bound, name  # the bound is not too small


# --------------------------------------------------------------------------- forward


@pytest.mark.parametrize("model", ["odenet", "resnet"])
def test_shapes(model):
    module, jax_params, x, _ = _nets(model)
    xt = torch.as_tensor(x)
    assert tuple(module.downsample(xt).shape) == (BATCH, WIDTH, 6, 6)
    with torch.no_grad():
        assert tuple(module(xt, _torch_odeint(TB, **SOLVES["rk4"][0])).shape) == (BATCH, 10)
    logits = jax_nets.apply(model, jax_params, jnp.asarray(x), _jax_odeint(JB, **SOLVES["rk4"][0]))
    assert logits.shape == (BATCH, 10)


@pytest.mark.parametrize("model, solve", [("odenet", "rk4"), ("odenet", "dopri5"), ("resnet", "rk4")])
def test_torch_and_jax_give_the_same_logits_and_loss(model, solve):
    kw, tol = SOLVES[solve]
    module, jax_params, x, labels = _nets(model)
    with torch.no_grad():
        logits_t = module(torch.as_tensor(x), _torch_odeint(TB, **kw))
        loss_t = F.cross_entropy(logits_t, torch.as_tensor(labels)).item()
    logits_j = jax_nets.apply(model, jax_params, jnp.asarray(x), _jax_odeint(JB, **kw))
    loss_j = float(_jax_cross_entropy(logits_j, jnp.asarray(labels)))
    assert logits_j.dtype == jnp.float64
    assert _rel(logits_j, logits_t.numpy()) <= tol
    assert abs(loss_j - loss_t) <= tol * abs(loss_t)


# --------------------------------------------------------------------------- gradients


def test_adjoint_gradients_reach_every_parameter_and_agree():
    """Width 64: at width <= 32 GroupNorm has one channel per group, which cancels the bias of
    the conv before it, so those biases truly get no gradient.  Fixed rk4 steps: both adjoints
    then take the same steps.  (With dopri5 the two step sequences differ by a few accepts and
    rejects near ReLU kinks, and the gradient of this piecewise-smooth flow moves by ~1e-3
    between such sequences even at rtol = atol = 1e-8.)"""
    kw = SOLVES["rk4"][0]
    module, jax_params, x, labels = _nets("odenet", width=64)
    F.cross_entropy(module(torch.as_tensor(x), _torch_odeint(TA, **kw)), torch.as_tensor(labels)).backward()
    grads_t = {k: p.grad.numpy() for k, p in module.named_parameters()}
    assert [k for k, g in grads_t.items() if np.max(np.abs(g)) < 1e-6] == []

    def loss(params):
        logits = jax_nets.odenet_apply(params, jnp.asarray(x), _jax_odeint(JA, **kw))
        return _jax_cross_entropy(logits, jnp.asarray(labels))

    grads_j = jax.grad(loss)(jax_params)
    assert set(grads_j) == set(grads_t)
    worst = max((_rel(grads_j[k], grads_t[k]), k) for k in grads_t)
    assert worst[0] <= 1e-10, worst
