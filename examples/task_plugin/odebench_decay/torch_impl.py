"""The decay task in torch: the object odebench's harness drives (see odebench.specs.TaskProblem)."""

import numpy as np
import torch


class Rate(torch.nn.Module):
    """f(t, y) = -k y with k = exp(log_k) > 0."""

    def __init__(self, k0: float, dtype) -> None:
        super().__init__()
        self.log_k = torch.nn.Parameter(torch.tensor(np.log(k0), dtype=dtype))

    def forward(self, t, y):
        return -torch.exp(self.log_k) * y


class DecayProblem:
    def __init__(self, options, seed: int, device: str, dtype) -> None:
        rng = np.random.default_rng(seed)  # data and initial weight from numpy: identical in any framework
        self.options = options
        self.times = torch.tensor(np.linspace(0.0, options.t_end, options.n_times + 1), dtype=dtype, device=device)
        self.seed, self.device, self.dtype = seed, device, dtype
        self.model = Rate(float(rng.uniform(0.2, 2.0)), dtype).to(device)
        self.optimizer = ("adam", {"lr": options.lr})

    def batch(self, iteration: int):
        rng = np.random.default_rng([self.seed, iteration])
        y0 = rng.uniform(0.5, 2.0, size=(self.options.batch_size, 1))
        t = self.times.cpu().numpy()
        clean = y0[None] * np.exp(-self.options.k_true * t)[:, None, None]
        noisy = clean + self.options.noise * rng.standard_normal(clean.shape)
        to = lambda a: torch.tensor(a, dtype=self.dtype, device=self.device)  # noqa: E731
        return to(y0), to(noisy)

    def loss(self, batch, odeint):
        y0, target = batch
        ys = odeint(self.model, y0, self.times)
        return ((ys - target) ** 2).mean()

    def evaluate(self, odeint) -> float:
        return abs(float(torch.exp(self.model.log_k.detach())) - self.options.k_true)

    def extras(self) -> dict:
        return {}

    def artifacts(self, odeint, out_dir, stem) -> list:
        return []


class TorchDecay:
    def setup(self, options, *, seed: int, device: str, dtype: str) -> DecayProblem:
        return DecayProblem(options, seed, device, {"float32": torch.float32, "float64": torch.float64}[dtype])
