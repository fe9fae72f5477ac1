"""The ``mnist`` task in torch: the ODE-Net or the ResNet of ``.torch_nets`` on one cell's data."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .params import init_params
from .task import MNISTData
from .torch_nets import build, load_params

DTYPES = {"float32": torch.float32, "float64": torch.float64}


class MNISTProblem:
    """One cell (the TaskProblem protocol of odebench.protocols)."""

    def __init__(self, options, *, seed: int, device: str, dtype: str, model: str) -> None:
        self.data = MNISTData(options, seed)
        self.device, self.dtype = torch.device(device), DTYPES[dtype]
        self.model = build(model, options.width, options.n_blocks).to(device=self.device, dtype=self.dtype)
        load_params(self.model, init_params(model, seed, options.width, options.n_blocks))  # after .to: exact
        self.optimizer = self.data.optimizer()

    def _tensor(self, array, dtype=None):
        return torch.as_tensor(array, dtype=dtype or self.dtype, device=self.device)

    def batch(self, iteration: int):
        x, y = self.data.batch(iteration)
        return self._tensor(x), self._tensor(y, torch.long)

    def loss(self, batch, odeint):
        x, y = batch
        return F.cross_entropy(self.model(x, odeint), y)

    def evaluate(self, odeint) -> float:
        """Test error in percent (the trainer calls it without grad)."""
        wrong = 0
        for x, y in self.data.test_chunks():
            logits = self.model(self._tensor(x), odeint)
            wrong += int((logits.argmax(dim=1).cpu() != torch.as_tensor(y)).sum())
        return self.data.error_pct(wrong)

    def extras(self) -> dict:
        return self.data.extras()

    def artifacts(self, odeint, out_dir, stem: str) -> list:
        return []


class TorchMNIST:
    def setup(self, options, *, seed: int, device: str = "cpu", dtype: str = "float32",
              model: str = "odenet") -> MNISTProblem:
        return MNISTProblem(options, seed=seed, device=device, dtype=dtype, model=model)
