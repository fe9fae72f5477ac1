"""Memory figures that mean what they say (torch): the allocator's peak during a step and the
bytes the autograd graph holds for backward, checked against the paper's claim (the adjoint's
memory is flat in NFE, backprop's grows), against an independent count, and on the CNF, whose
dynamics build and free a graph inside every evaluation."""

import pytest

torch = pytest.importorskip("torch")

from torch.multiprocessing.reductions import StorageWeakRef  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import odebench  # noqa: E402
from odebench.plugins import make_registry  # noqa: E402
from odebench.protocols import BoundOdeint  # noqa: E402
from odebench.specs import SolveStats  # noqa: E402
from odebench_tasks.cnf.options import CNFOptions  # noqa: E402
from odebench_tasks.cnf.torch_model import TorchCNF  # noqa: E402
from odebench_torch.memory import PeakAllocated, held_for_backward  # noqa: E402

TOLS = (1e-3, 1e-7)


class LiveStorages(TorchDispatchMode):
    """An independent count: every storage an aten operation returns is alive from that operation
    until its last reference dies (a weak reference to the storage says when)."""

    def __init__(self):
        super().__init__()
        self.live, self.current, self.peak = {}, 0, 0

    def _sweep(self):
        for key in [k for k, (ref, _) in self.live.items() if ref.expired()]:
            self.current -= self.live.pop(key)[1]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self._sweep()
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage()._cdata not in self.live:
                storage = t.untyped_storage()
                self.live[storage._cdata] = (StorageWeakRef(storage), storage.nbytes())
                self.current += storage.nbytes()
                self.peak = max(self.peak, self.current)
        return out


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.Tanh(), torch.nn.Linear(64, 2)).double()
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))

    def forward(self, t, y):
        return self.net(y)


Y0 = torch.randn(256, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
T = torch.tensor([0.0, 2.0], dtype=torch.float64)


def _mlp_step(name, tol, func):
    backend = odebench.backend(name)
    ys = backend.odeint(func, Y0.clone().requires_grad_(True), T, rtol=tol, atol=tol)
    loss = (ys[-1] ** 2).sum()
    return loss, backend.last_stats


def _mlp_memory(name, tol):
    func = MLP()
    with PeakAllocated("cpu") as peak:
        loss, stats = _mlp_step(name, tol, func)
        held_bytes = held_for_backward(loss)
        loss.backward()
    return peak.bytes, held_bytes, stats.nfe_forward


def test_mlp_adjoint_flat_backprop_grows():
    bp = {tol: _mlp_memory("torch-backprop", tol) for tol in TOLS}
    adj = {tol: _mlp_memory("torch-adjoint", tol) for tol in TOLS}
    lo, hi = TOLS
    assert bp[hi][2] > 2 * bp[lo][2] and adj[hi][2] == bp[hi][2]  # NFE more than doubles
    for k in (0, 1):  # peak, held
        assert bp[hi][k] > 1.5 * bp[lo][k], (k, bp)
        assert max(adj[lo][k], adj[hi][k]) <= 1.15 * min(adj[lo][k], adj[hi][k]), (k, adj)
        assert adj[hi][k] < bp[hi][k] / 4
    # the adjoint holds y at the output times, the MLP's parameters, the loss's input
    assert adj[hi][1] <= 3 * Y0.numel() * 8 + sum(p.numel() for p in MLP().parameters()) * 8


@pytest.mark.parametrize("name", ["torch-backprop", "torch-adjoint"])
def test_cpu_peak_agrees_with_an_independent_count(name):
    """The profiler's allocation records and a dispatch-level count of live storages agree."""
    func = MLP()
    with PeakAllocated("cpu") as peak:
        loss, _ = _mlp_step(name, 1e-5, func)
        loss.backward()
    func.zero_grad(set_to_none=True)
    with LiveStorages() as live:
        loss, _ = _mlp_step(name, 1e-5, func)
        loss.backward()
    assert peak.bytes > 100_000
    assert abs(live.peak - peak.bytes) <= 0.05 * peak.bytes, (live.peak, peak.bytes)


def test_peak_of_a_known_sequence():
    """Exact bytes: 4000 + 8000 allocated, 4000 freed, 2000 and 8000 (+12 for the scalar 2)."""
    keep = []
    with PeakAllocated("cpu") as peak:
        a = torch.ones(1000)
        b = torch.ones(2000)
        del a
        keep += [torch.ones(500), b * 2]
        del b
    assert peak.bytes == 4000 + 8000 - 4000 + 2000 + 8 + 4 + 8000  # the scalar 2: a double, then a float
    with PeakAllocated("cpu") as nothing:
        pass
    assert nothing.bytes == 0


def test_held_bytes_are_deduplicated_by_storage():
    x = torch.randn(1000, dtype=torch.float64, requires_grad=True)
    y = x * x  # saves x twice (one storage)
    assert held_for_backward(y) == 8000
    z = (y.tanh() * 2).sum()  # + tanh's output (its own storage) + the scalar 2 (a 0-d double)
    assert held_for_backward(z) == 8000 + 8000 + 8
    assert held_for_backward(x.detach() * 2) == 0  # no graph


def _cnf_memory(name, tol):
    """One probed training step of a small CNF through the torch runtime's trainer."""
    options = CNFOptions(n_train=256, n_test=64, batch_size=128, hidden=32, layers=2, iterations=1)
    problem = TorchCNF().setup(options, seed=0, device="cpu", dtype="float32")
    stats = SolveStats()
    odeint = BoundOdeint(odebench.backend(name), "dopri5", tol, tol, None, stats)
    trainer = make_registry().runtime("torch").trainer(problem, odeint, "cpu")
    result = trainer.step(0, probe_memory=True)
    assert result.probed
    return result.peak_memory_bytes, result.held_for_backward_bytes, stats.nfe_forward


def test_cnf_adjoint_flat_backprop_grows():
    """The main job's defect: the CNF's trace builds and frees a graph in every evaluation;
    counting those made the adjoint's figure grow like backprop's.  Now it is flat."""
    bp = {tol: _cnf_memory("torch-backprop", tol) for tol in TOLS}
    adj = {tol: _cnf_memory("torch-adjoint", tol) for tol in TOLS}
    lo, hi = TOLS
    growth = adj[hi][2] / adj[lo][2]
    assert growth > 1.3 and bp[hi][2] == adj[hi][2], adj  # NFE grows (14 -> 20 here)
    for k in (0, 1):
        assert bp[hi][k] > 0.8 * growth * bp[lo][k], (k, bp)  # backprop's grows with NFE
        assert max(adj[lo][k], adj[hi][k]) <= 1.15 * min(adj[lo][k], adj[hi][k]), (k, adj)
        assert adj[hi][k] < bp[hi][k] / 3
