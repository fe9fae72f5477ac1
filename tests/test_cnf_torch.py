"""The cnf task in torch: the change-of-variables sign, trace estimators, seeding, training, gradients."""

import dataclasses
import math
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

try:
    from odebench_tasks.cnf import init as cnf_init
except ImportError:  # editable install made before plugins/odebench_tasks existed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))
    from odebench_tasks.cnf import init as cnf_init

import odebench  # noqa: E402
from odebench_tasks.cnf.options import PAPER_OPTIONS, CNFOptions  # noqa: E402
from odebench_tasks.cnf.torch_model import (  # noqa: E402
    CNFDynamics,
    ConcatSquashLinear,
    DivergenceODE,
    TorchCNF,
    exact_trace,
    hutchinson_trace,
    standard_normal_logprob,
)

# Small settings so every test stays cheap.
TINY = dict(n_train=256, n_test=256, batch_size=64, hidden=16, layers=2, iterations=15, lr=1e-2)


def _odeint(name, tol=1e-5):
    return partial(odebench.backend(name).odeint, solver="dopri5", rtol=tol, atol=tol)


def _problem(seed=0, dtype="float32", **kw):
    return TorchCNF().setup(CNFOptions(**{**TINY, **kw}), seed=seed, device="cpu", dtype=dtype)


class LinearDynamics(DivergenceODE):
    """f(t, z) = A z: the divergence is tr(A) everywhere, the flow is z(t) = expm(A t) z(0)."""

    def __init__(self, A, trace="exact"):
        super().__init__(trace)
        self.A = torch.nn.Parameter(torch.as_tensor(A, dtype=torch.float64))

    def velocity(self, t, z):
        return z @ self.A.T


A = np.array([[0.3, -1.1], [0.7, -0.5]])


# --------------------------------------------------------------------------- known answers


@pytest.mark.parametrize("backend", ["torch-backprop", "torch-adjoint"])
def test_linear_flow_delta_logp_and_log_likelihood(backend):
    """Δlogp over [0, t] is -t tr(A), and log p(x) = log N(expm(A T) x) + T tr(A)."""
    rng = np.random.default_rng(3)
    x = torch.as_tensor(rng.standard_normal((5, 2)))
    f = LinearDynamics(A)
    times = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    odeint = _odeint(backend, 1e-11)
    zs, logps = odeint(f, (x, torch.zeros(5, 1, dtype=torch.float64)), times)
    for k, t in enumerate(times.tolist()):
        expected = -t * np.trace(A)
        assert np.allclose(logps[k].detach().numpy(), expected, atol=1e-8, rtol=0)
        z_exact = x @ torch.linalg.matrix_exp(torch.as_tensor(A) * t).T
        assert torch.allclose(zs[k].detach(), z_exact, atol=1e-8, rtol=0)

    # The task's own log-density (sign of the change of variables included).
    problem = _problem(dtype="float64", T=0.5)
    problem.model = f
    logp = problem.log_density(x, odeint).detach()
    T = 0.5
    z_T = x @ torch.linalg.matrix_exp(torch.as_tensor(A) * T).T
    analytic = standard_normal_logprob(z_T) + T * np.trace(A)
    assert torch.allclose(logp, analytic, atol=1e-8, rtol=0)
    # and by hand: log N(z) = -log(2 pi) - |z|^2 / 2 in 2-D
    by_hand = -math.log(2 * math.pi) - 0.5 * (z_T**2).sum(1) + T * np.trace(A)
    assert torch.allclose(logp, by_hand, atol=1e-8, rtol=0)

    # The gradient w.r.t. A, including the trace's -T I, against autograd through expm.
    (grad_ode,) = torch.autograd.grad(-problem.log_density(x, odeint).mean(), (f.A,))
    A_ = torch.as_tensor(A).requires_grad_(True)
    z_T_ = x @ torch.linalg.matrix_exp(A_ * T).T
    (grad_exact,) = torch.autograd.grad(-(standard_normal_logprob(z_T_) + T * torch.trace(A_)).mean(), (A_,))
    assert torch.allclose(grad_ode, grad_exact, atol=1e-7, rtol=0), (grad_ode, grad_exact)

    # Under no_grad (evaluation) the same numbers come out, with no graph attached.
    with torch.no_grad():
        logp_ng = problem.log_density(x, odeint)
    assert not logp_ng.requires_grad
    assert torch.allclose(logp_ng, analytic, atol=1e-8, rtol=0)


def test_hutchinson_on_linear_field_is_eps_A_eps():
    rng = np.random.default_rng(0)
    z = torch.as_tensor(rng.standard_normal((7, 2)), dtype=torch.float64).requires_grad_(True)
    eps = torch.as_tensor(rng.standard_normal((7, 2)), dtype=torch.float64)
    f = LinearDynamics(A)
    dz = f.velocity(None, z)
    est = hutchinson_trace(dz, z, eps, create_graph=False)
    assert torch.allclose(est, torch.einsum("ni,ij,nj->n", eps, torch.as_tensor(A), eps), atol=1e-12)
    assert torch.allclose(exact_trace(dz, z, create_graph=False), torch.full((7,), np.trace(A), dtype=torch.float64))


@pytest.mark.parametrize("noise", ["gaussian", "rademacher"])
def test_hutchinson_is_unbiased_for_mlp_jacobian(noise):
    torch.manual_seed(0)
    f = CNFDynamics([2, 32, 32, 2], "tanh").double()
    with torch.no_grad():
        for p in f.parameters():
            p.mul_(2.0)  # a Jacobian far from symmetric/diagonal
    n_points, draws = 4, 20_000
    points = torch.as_tensor(np.random.default_rng(1).standard_normal((n_points, 2)))
    z = points.repeat_interleave(draws, dim=0).requires_grad_(True)
    t = torch.tensor(0.3, dtype=torch.float64)
    dz = f.velocity(t, z)
    exact = exact_trace(dz, z, create_graph=False).view(n_points, draws)[:, 0]
    eps = torch.as_tensor(cnf_init.hutchinson_noise(0, 0, tuple(z.shape), noise))
    est = hutchinson_trace(dz, z, eps, create_graph=False).view(n_points, draws).detach()
    mean, sem = est.mean(1), est.std(1) / math.sqrt(draws)
    assert (est.std(1) > 1e-3).all()  # the estimator really is random here
    # 5 standard errors: a false alarm has probability ~6e-7 per point.
    assert ((mean - exact).abs() < 5 * sem).all(), (mean, exact, sem)


def test_dynamics_state_and_no_grad():
    problem = _problem(dtype="float64")
    f = problem.model
    x = problem.test[:10]
    state = (x, torch.zeros(10, 1, dtype=x.dtype))
    t = torch.tensor(0.1, dtype=x.dtype)
    with torch.no_grad():
        dz, dlogp = f(t, state)
    assert dz.shape == (10, 2) and dlogp.shape == (10, 1)
    assert not dz.requires_grad and not dlogp.requires_grad
    dz2, dlogp2 = f(t, state)
    assert dlogp2.requires_grad  # the trace keeps its graph for the loss
    assert torch.allclose(dz, dz2) and torch.allclose(dlogp, dlogp2)


def test_no_grad_trace_of_a_state_that_requires_grad():
    """An adjoint's gradient-free forward solve may hand the dynamics a view, made under
    no_grad, of a y0 that requires grad: the trace must still be the trace, not 0 (it was
    0 once, and torchdiffeq's adjoint took 20 evaluations where it takes 14)."""
    problem = _problem(dtype="float64")
    x = problem.test[:10].clone().requires_grad_(True)
    t = torch.tensor(0.1, dtype=x.dtype)
    expected = problem.model(t, (x.detach(), torch.zeros(10, 1, dtype=x.dtype)))[1]
    flat = torch.cat([x.reshape(-1), torch.zeros(10, dtype=x.dtype)])  # as torchdiffeq flattens a tuple
    with torch.no_grad():
        z = flat[:20].view(10, 2)
        assert z.requires_grad and z.grad_fn is None  # requires grad, but no graph
        _, dlogp = problem.model(t, (z, flat[20:].view(10, 1)))
    assert float(expected.detach().abs().min()) > 0
    assert torch.allclose(dlogp, expected.detach(), rtol=1e-12, atol=0)


def test_concatsquash_layer():
    layer = ConcatSquashLinear(3, 5).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor(0.7, dtype=torch.float64)
    gate = torch.sigmoid(layer.hyper_gate.weight[:, 0] * 0.7 + layer.hyper_gate.bias)
    expected = (x @ layer.layer.weight.T + layer.layer.bias) * gate + layer.hyper_bias.weight[:, 0] * 0.7
    assert torch.allclose(layer(t, x), expected)
    assert layer.hyper_bias.bias is None


# --------------------------------------------------------------------------- seeding


def test_initial_weights_come_from_numpy_and_the_seed():
    options = CNFOptions(**TINY)
    a, b, c = cnf_init.init_params(options, 0), cnf_init.init_params(options, 0), cnf_init.init_params(options, 1)
    assert a.keys() == b.keys() == c.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert all(not np.array_equal(a[k], c[k]) for k in a)
    p64 = _problem(seed=0, dtype="float64")
    p32 = _problem(seed=0, dtype="float32")
    state64, state32 = p64.model.state_dict(), p32.model.state_dict()
    assert set(state64) == set(a)
    for k, v in a.items():
        assert np.array_equal(state64[k].numpy(), v)
        assert np.array_equal(state32[k].numpy(), v.astype(np.float32))
        assert state32[k].dtype == torch.float32
    # torch's nn.Linear bound 1/sqrt(fan_in)
    assert np.abs(a["layers.1.layer.weight"]).max() <= 1 / math.sqrt(16)
    n_layers = TINY["layers"] + 1
    assert len(p64.model.layers) == n_layers and len(a) == 5 * n_layers


def test_batches_and_data_are_deterministic():
    p, q, r = _problem(seed=0), _problem(seed=0), _problem(seed=1)
    assert torch.equal(p.train, q.train) and torch.equal(p.test, q.test)
    assert not torch.equal(p.train, r.train)
    assert torch.equal(p.batch(3), q.batch(3))
    assert not torch.equal(p.batch(3), p.batch(4))
    assert not torch.equal(p.batch(3), r.batch(3))
    idx = cnf_init.batch_indices(0, 3, 256, 64)
    assert len(set(idx.tolist())) == 64
    assert torch.equal(p.batch(3), p.train[torch.as_tensor(idx)])
    e1 = cnf_init.hutchinson_noise(0, 5, (4, 2), "rademacher")
    assert np.array_equal(e1, cnf_init.hutchinson_noise(0, 5, (4, 2), "rademacher"))
    assert set(np.unique(e1)) <= {-1.0, 1.0}


# --------------------------------------------------------------------------- options


def test_options_validation_and_paper_setting():
    with pytest.raises(ValueError, match="activation must be one of tanh, softplus, relu, elu"):
        CNFOptions(activation="sigmoid")
    with pytest.raises(ValueError, match="trace must be one of exact, hutchinson"):
        CNFOptions(trace="approx")
    with pytest.raises(ValueError, match="noise must be one of gaussian, rademacher"):
        CNFOptions(noise="uniform")
    with pytest.raises(ValueError, match="dataset"):
        CNFOptions(dataset="mnist")
    for bad in ({"T": 0}, {"lr": -1.0}, {"hidden": 0}, {"iterations": 1.5}, {"batch_size": 10_000}):
        with pytest.raises(ValueError):
            CNFOptions(**bad)
    paper = CNFOptions(**PAPER_OPTIONS)
    assert (paper.hidden, paper.layers, paper.T, paper.trace, paper.batch_size, paper.iterations) == (
        64, 3, 0.5, "exact", 100, 10000)
    assert dataclasses.asdict(CNFOptions())["T"] == 0.5
    with pytest.raises(ValueError, match="dtype"):
        TorchCNF().setup(CNFOptions(**TINY), seed=0, device="cpu", dtype="float16")


# --------------------------------------------------------------------------- training and gradients


def _train(problem, odeint, iterations):
    opt = torch.optim.Adam(problem.model.parameters(), lr=problem.optimizer[1]["lr"])
    losses = []
    for i in range(iterations):
        opt.zero_grad()
        loss = problem.loss(problem.batch(i), odeint)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_short_training_reduces_loss_and_beats_the_base_density():
    problem = _problem(seed=0)
    odeint = _odeint("torch-adjoint")
    fixed = problem.batch(0)
    before = problem.loss(fixed, odeint).item()
    nll_before = problem.evaluate(odeint)
    losses = _train(problem, odeint, TINY["iterations"])
    after = problem.loss(fixed, odeint).item()
    assert after < before - 0.5, (before, after, losses)
    nll = problem.evaluate(odeint)
    baseline = problem.extras()["baseline_metric"]
    assert nll < nll_before and nll < baseline - 0.5, (nll, nll_before, baseline)


def test_hutchinson_training_step_and_exact_evaluation():
    exact = _problem(seed=0, trace="exact")
    hutch = _problem(seed=0, trace="hutchinson", noise="rademacher")
    odeint = _odeint("torch-adjoint")
    # Same weights: evaluation ignores the training trace.
    assert exact.evaluate(odeint) == pytest.approx(hutch.evaluate(odeint), rel=1e-6)
    b = hutch.batch(0)
    l1, l2 = hutch.loss(b, odeint), hutch.loss(b, odeint)
    assert l1.item() == l2.item()  # noise is fixed by (seed, iteration)
    l1.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in hutch.model.parameters())
    assert hutch.model.trace == "hutchinson"  # evaluation restored the training trace


@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_adjoint_gradient_matches_backprop(trace):
    """The adjoint differentiates the trace a second time; it must agree with backprop."""
    grads, losses = {}, {}
    for name in ("torch-backprop", "torch-adjoint"):
        problem = _problem(seed=2, dtype="float64", trace=trace, hidden=16, batch_size=16)
        loss = problem.loss(problem.batch(0), _odeint(name, 1e-8))
        grads[name] = torch.autograd.grad(loss, tuple(problem.model.parameters()))
        losses[name] = loss.item()
    assert losses["torch-backprop"] == pytest.approx(losses["torch-adjoint"], rel=1e-10)
    flat = {k: torch.cat([g.reshape(-1) for g in v]) for k, v in grads.items()}
    rel = (flat["torch-adjoint"] - flat["torch-backprop"]).norm() / flat["torch-backprop"].norm()
    assert rel < 1e-4, rel
    for ga, gb in zip(grads["torch-adjoint"], grads["torch-backprop"]):
        assert torch.allclose(ga, gb, rtol=1e-3, atol=1e-6 * flat["torch-backprop"].abs().max())

    # ... and both agree with a central finite difference along a random direction.
    problem = _problem(seed=2, dtype="float64", trace=trace, hidden=16, batch_size=16)
    params = tuple(problem.model.parameters())
    direction = [torch.as_tensor(np.random.default_rng(i).standard_normal(tuple(p.shape))) for i, p in enumerate(params)]
    odeint = _odeint("torch-backprop", 1e-11)

    def loss_at(h):
        with torch.no_grad():
            for p, d, p0 in zip(params, direction, base):
                p.copy_(p0 + h * d)
            return problem.loss(problem.batch(0), odeint).item()

    base = [p.detach().clone() for p in params]
    h = 1e-5
    fd = (loss_at(h) - loss_at(-h)) / (2 * h)
    analytic = sum((g * d).sum() for g, d in zip(grads["torch-adjoint"], direction)).item()
    assert analytic == pytest.approx(fd, rel=1e-4), (analytic, fd)


def test_problem_protocol_and_artifacts(tmp_path):
    problem = _problem(seed=0)
    assert problem.optimizer == ("adam", {"lr": TINY["lr"]})
    extras = problem.extras()
    x = problem.test_np
    assert extras["baseline_metric"] == pytest.approx(np.mean(np.log(2 * np.pi) + 0.5 * (x**2).sum(1)))
    paths = problem.artifacts(_odeint("torch-adjoint"), tmp_path, "cell")
    assert [p.name for p in paths] == ["cell-density.png"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
