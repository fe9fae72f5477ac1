"""asv regression suite: the torch backends on the benchmark MLP dynamics.

``asv run -E existing --quick`` times these in the current environment; ``track_*`` record
exact NFE so a change in step-size control shows up as a regression too.
"""

import odebench

BACKENDS = ["torch-backprop", "torch-adjoint", "torch-adjoint-seminorm"]
TOLS = [1e-3, 1e-5, 1e-7]


def _problem(seed=0):
    import torch

    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64),
                              torch.nn.Tanh(), torch.nn.Linear(64, 2))

    class Dynamics(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, t, y):
            return self.net(y)

    return Dynamics(), torch.randn(512, 2), torch.tensor([0.0, 1.0])


class TorchBackends:
    params = (BACKENDS, TOLS)
    param_names = ["backend", "tol"]

    def setup(self, backend, tol):
        self.func, self.y0, self.t = _problem()
        self.backend = odebench.backend(backend)

    def _fwd_bwd(self, tol):
        y0 = self.y0.clone().requires_grad_(True)
        ys = self.backend.odeint(self.func, y0, self.t, solver="dopri5", rtol=tol, atol=tol)
        (ys[-1] ** 2).sum().backward()

    def time_forward_backward(self, backend, tol):
        self._fwd_bwd(tol)

    def track_nfe_forward(self, backend, tol):
        self._fwd_bwd(tol)
        return self.backend.last_stats.nfe_forward

    def track_nfe_backward(self, backend, tol):
        self._fwd_bwd(tol)
        return self.backend.last_stats.nfe_backward

    def track_held_for_backward_bytes(self, backend, tol):
        from odebench_torch.memory import held_for_backward

        y0 = self.y0.clone().requires_grad_(True)
        ys = self.backend.odeint(self.func, y0, self.t, solver="dopri5", rtol=tol, atol=tol)
        loss = (ys[-1] ** 2).sum()
        held = held_for_backward(loss)
        loss.backward()
        return held

    track_held_for_backward_bytes.unit = "bytes"

    def track_peak_allocated_bytes(self, backend, tol):
        from odebench_torch.memory import PeakAllocated

        y0 = self.y0.clone().requires_grad_(True)
        with PeakAllocated("cpu") as peak:
            ys = self.backend.odeint(self.func, y0, self.t, solver="dopri5", rtol=tol, atol=tol)
            (ys[-1] ** 2).sum().backward()
        return peak.bytes

    track_peak_allocated_bytes.unit = "bytes"
