"""Gradients of the torch backends checked against each other and finite differences (memory: test_torch_memory)."""

import pytest

torch = pytest.importorskip("torch")

import odebench  # noqa: E402

BACKENDS = ("torch-backprop", "torch-adjoint", "torch-adjoint-seminorm")


class MLPDynamics(torch.nn.Module):
    """f(t, y) = W2 tanh(W1 [y, t] + b1) + b2: time-dependent, every parameter used."""

    def __init__(self, dim=3, hidden=16, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.l1 = torch.nn.Linear(dim + 1, hidden).double()
        self.l2 = torch.nn.Linear(hidden, dim).double()
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)

    def forward(self, t, y):
        tt = t.expand(*y.shape[:-1], 1)
        return self.l2(torch.tanh(self.l1(torch.cat([y, tt], dim=-1))))


def _loss_and_grads(name, func, y0, t, tol, **kw):
    backend = odebench.backend(name)
    y0 = y0.clone().requires_grad_(True)
    ys = backend.odeint(func, y0, t, solver="dopri5", rtol=tol, atol=tol, **kw)
    weights = torch.linspace(0.5, 1.5, ys.numel(), dtype=ys.dtype).view_as(ys)
    loss = (weights * ys).sum() + (ys[-1] ** 2).sum()  # every output time contributes
    grads = torch.autograd.grad(loss, (y0, *func.parameters()))
    return loss.detach(), grads, backend.last_stats


def _rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


@pytest.mark.parametrize("name", ["torch-adjoint", "torch-adjoint-seminorm"])
def test_adjoint_matches_backprop(name):
    func = MLPDynamics()
    y0 = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.0, 0.3, 0.7, 1.2, 2.0], dtype=torch.float64)
    loss_b, grads_b, _ = _loss_and_grads("torch-backprop", func, y0, t, 1e-10)
    loss_a, grads_a, stats = _loss_and_grads(name, func, y0, t, 1e-10)
    assert torch.allclose(loss_a, loss_b, rtol=1e-12)
    assert stats.nfe_backward > 0
    names = ["y0"] + [n for n, _ in func.named_parameters()]
    for label, ga, gb in zip(names, grads_a, grads_b):
        assert _rel(ga, gb) <= 1e-6, (label, _rel(ga, gb))


def test_gradients_match_finite_differences():
    func = MLPDynamics(dim=2, hidden=8, seed=3)
    y0 = torch.tensor([[0.4, -0.7]], dtype=torch.float64)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    weight = func.l1.weight

    def loss_at(w_value):
        with torch.no_grad():
            old = weight.clone()
            weight.copy_(w_value)
        try:
            return _loss_and_grads("torch-backprop", func, y0, t, 1e-12)[0].item()
        finally:
            with torch.no_grad():
                weight.copy_(old)

    _, grads, _ = _loss_and_grads("torch-adjoint", func, y0, t, 1e-12)
    g_weight = grads[1]
    eps = 1e-6
    for idx in [(0, 0), (3, 1), (7, 2)]:
        plus, minus = weight.detach().clone(), weight.detach().clone()
        plus[idx] += eps
        minus[idx] -= eps
        fd = (loss_at(plus) - loss_at(minus)) / (2 * eps)
        assert abs(fd - g_weight[idx].item()) <= 1e-6 * max(1.0, abs(fd)), (idx, fd, g_weight[idx].item())


def test_tuple_state_gradients_agree():
    """A (z, logp)-like tuple state: both components' gradients flow through all backends."""
    func_net = MLPDynamics(dim=2, hidden=8, seed=5)

    class Pair(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = func_net

        def forward(self, t, state):
            z, logp = state
            dz = self.net(t, z)
            return dz, -(dz * z).sum(-1, keepdim=True)

    func = Pair()
    z0 = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    l0 = torch.zeros(5, 1, dtype=torch.float64)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    results = {}
    for name in BACKENDS:
        z = z0.clone().requires_grad_(True)
        zs, ls = odebench.backend(name).odeint(func, (z, l0), t, rtol=1e-10, atol=1e-10)
        assert zs.shape == (3, 5, 2) and ls.shape == (3, 5, 1)
        loss = (zs[-1] ** 2).sum() + ls[-1].sum()
        results[name] = torch.autograd.grad(loss, (z, *func.parameters()))
    for name in BACKENDS[1:]:
        for ga, gb in zip(results[name], results["torch-backprop"]):
            assert _rel(ga, gb) <= 1e-6


def test_seminorm_saves_backward_evaluations():
    """Kidger, Chen & Lyons (2021): ignoring the parameter channels in the backward norm."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 48), torch.nn.Tanh(), torch.nn.Linear(48, 48),
                              torch.nn.Tanh(), torch.nn.Linear(48, 2)).double()
    with torch.no_grad():  # larger weights and a longer span: a problem with real work to do
        for p in net.parameters():
            p.mul_(1.5)

    class F(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, t, y):
            return self.net(y)

    func = F()
    assert sum(p.numel() for p in func.parameters()) >= 1000
    y0 = torch.randn(64, 2, dtype=torch.float64)
    t = torch.tensor([0.0, 3.0], dtype=torch.float64)
    _, g_bp, _ = _loss_and_grads("torch-backprop", func, y0, t, 1e-6)
    _, g_adj, s_adj = _loss_and_grads("torch-adjoint", func, y0, t, 1e-6)
    _, g_semi, s_semi = _loss_and_grads("torch-adjoint-seminorm", func, y0, t, 1e-6)
    assert s_semi.nfe_forward == s_adj.nfe_forward
    assert s_semi.nfe_backward < s_adj.nfe_backward, (s_semi.nfe_backward, s_adj.nfe_backward)
    for ga, gb in zip(g_semi, g_bp):
        assert _rel(ga, gb) <= 1e-4


def test_adjoint_tolerances_can_be_set():
    func = MLPDynamics()
    y0 = torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    _, _, loose = _loss_and_grads("torch-adjoint", func, y0, t, 1e-8, adjoint_rtol=1e-3, adjoint_atol=1e-3)
    _, _, tight = _loss_and_grads("torch-adjoint", func, y0, t, 1e-8)
    assert loose.nfe_forward == tight.nfe_forward
    assert loose.nfe_backward < tight.nfe_backward


def test_warm_backward_start_saves_evaluations_at_the_same_accuracy():
    """Nine output times: the default backward continues the controller from segment to
    segment; adjoint_options={"first_step": None} restarts the automatic first step on every
    segment (torchdiffeq).  Both meet the tolerance against backprop; warm costs less."""
    func = MLPDynamics(seed=2)
    y0 = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    t = torch.linspace(0.0, 2.0, 9, dtype=torch.float64)
    _, g_bp, _ = _loss_and_grads("torch-backprop", func, y0, t, 1e-10)
    _, g_warm, warm = _loss_and_grads("torch-adjoint", func, y0, t, 1e-10)
    _, g_restart, restart = _loss_and_grads("torch-adjoint", func, y0, t, 1e-10, adjoint_options={"first_step": None})
    assert warm.nfe_forward == restart.nfe_forward
    assert warm.nfe_backward < restart.nfe_backward, (warm, restart)
    for gw, gr, gb in zip(g_warm, g_restart, g_bp):
        assert _rel(gw, gb) <= 1e-6 and _rel(gr, gb) <= 1e-6
