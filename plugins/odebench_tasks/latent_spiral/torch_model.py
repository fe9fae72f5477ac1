"""The ``latent-spiral`` task in torch: the latent ODE or the RNN baseline of ``.torch_nets``."""

from __future__ import annotations

import numpy as np
import torch

from . import torch_nets as nets
from .params import init_params
from .task import SpiralData

DTYPES = {"float32": torch.float32, "float64": torch.float64}


class SpiralProblem:
    """One cell (the TaskProblem protocol of odebench.protocols)."""

    def __init__(self, options, *, seed: int, device: str, dtype: str, model: str) -> None:
        self.options, self.name = options, model
        self.data = SpiralData(options, seed)
        self.device, self.dtype = torch.device(device), DTYPES[dtype]
        self.model = nets.build(model, **options.sizes()).to(device=self.device, dtype=self.dtype)
        nets.load_params(self.model, init_params(model, seed, **options.sizes()))  # after .to: exact
        self.optimizer = ("adam", {"lr": options.lr})
        self.train_times = self._tensor(self.data.train_times)
        self.eval_times = self._tensor(self.data.eval_times)

    def _tensor(self, array, dtype=None):
        return torch.as_tensor(np.asarray(array), dtype=dtype or self.dtype, device=self.device)

    def batch(self, iteration: int) -> dict:
        b = self.data.batch(iteration)
        return {k: self._tensor(v, torch.long if k == "idx" else None) for k, v in b.items()}

    def loss(self, batch: dict, odeint):
        o = self.options
        if self.name == "rnn":
            return nets.rnn_loss(self.model, batch["x"], batch["t"], batch["mask"], o.sigma)
        return nets.latent_ode_loss(self.model, batch["x"], batch["t"], batch["mask"], self.train_times, batch["idx"],
                                    batch["eps"], o.sigma, odeint)

    def evaluate(self, odeint) -> float:
        """Predictive RMSE on the test spirals' extrapolation window (the trainer calls it without grad)."""
        test = self.data.test
        x, t = self._tensor(test.x_obs), self._tensor(test.obs_times)
        if self.name == "rnn":
            one_step, forecast = nets.rnn_predict(self.model, x, t, self._tensor(test.extrap_times))
            return self.data.score(one_step.cpu().numpy(), forecast.cpu().numpy())
        pred = nets.latent_ode_predict(self.model, x, t, self.eval_times, odeint).cpu().numpy()
        recon = np.take_along_axis(pred, test.obs_idx[:, :, None], axis=1)
        return self.data.score(recon, pred[:, test.window:])

    def extras(self) -> dict:
        return self.data.extras()

    def artifacts(self, odeint, out_dir, stem: str) -> list:
        return self.data.figure(out_dir, stem, f"latent-spiral {self.name}, n_obs={self.options.n_obs}")


class TorchLatentSpiral:
    def setup(self, options, *, seed: int, device: str = "cpu", dtype: str = "float32",
              model: str = "latent-ode") -> SpiralProblem:
        return SpiralProblem(options, seed=seed, device=device, dtype=dtype, model=model)
