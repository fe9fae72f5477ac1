"""What one ``latent-spiral`` cell is, apart from its framework: data, batches, times, metrics.

Everything random is drawn in numpy from the cell's seed, so torch and JAX see the same
numbers: weights ``default_rng((seed, 0))`` (params.init_params), batch rows
``default_rng((seed, 1, iteration))``, the reparametrisation noise ``default_rng((seed, 2,
iteration))``, the spirals ``default_rng((seed, 4))`` (data.make_split).

Times are those of the window's grid, relative to its start: the latent ODE is solved at every
grid point of the window in training (each spiral's observations are rows of it; with dense
output the extra output times cost no evaluations) and of window + extrapolation in evaluation.
"""

from __future__ import annotations

import numpy as np

from .data import last_observation_forecast, make_split, rmse, spirals_figure
from .options import LatentSpiralOptions

BATCH_STREAM, EPS_STREAM = 1, 2


class SpiralData:
    """The spirals of one cell, its batches and its metrics."""

    def __init__(self, options: LatentSpiralOptions, seed: int) -> None:
        self.options, self.seed = options, int(seed)
        self.train, self.test = make_split(options.grid(), options.n_train, options.n_test, options.n_obs, self.seed)
        dt = self.train.dt
        self.train_times = np.arange(options.window) * dt  # the rows obs_idx points into
        self.eval_times = np.arange(options.window + options.n_extrap) * dt
        self.recon_rmse = None

    def batch(self, iteration: int) -> dict:
        """Rows of the training set (all of them for a full batch) and the reparametrisation noise."""
        o = self.options
        if o.batch_size == o.n_train:
            rows = np.arange(o.n_train)
        else:
            rows = np.random.default_rng((self.seed, BATCH_STREAM, int(iteration))).choice(
                o.n_train, size=o.batch_size, replace=False)
        eps = np.random.default_rng((self.seed, EPS_STREAM, int(iteration))).standard_normal((len(rows), o.latent_dim))
        return {"x": self.train.x_obs[rows], "t": self.train.obs_times[rows], "idx": self.train.obs_idx[rows],
                "mask": np.ones(self.train.obs_idx[rows].shape), "eps": eps}

    def score(self, recon: np.ndarray, forecast: np.ndarray) -> float:
        """Predictive RMSE on the test spirals' extrapolation window (the metric); ``recon`` are
        predictions at the observation times, scored against the noise-free truth there."""
        test = self.test
        self.recon_rmse = rmse(recon, test.truth_at_obs[:, -recon.shape[1]:])
        self.forecast = forecast
        self.recon = recon
        return rmse(forecast, test.truth[:, test.window:])

    def extras(self) -> dict:
        """The trivial forecast (the last observation held) is the baseline a model must beat."""
        test = self.test
        return {"baseline_metric": rmse(last_observation_forecast(test), test.truth[:, test.window:]),
                "recon_rmse": self.recon_rmse, "n_obs": self.options.n_obs}

    def figure(self, out_dir, stem: str, title: str) -> list:
        """A few test spirals: observations, the model's reconstruction and forecast, the truth."""
        if self.recon_rmse is None:
            return []
        indices = range(min(self.options.n_plot, len(self.test)))
        path = f"{out_dir}/{stem}-spirals.png"
        return [spirals_figure(path, self.test, indices, recon=self.recon, extrap=self.forecast, title=title)]
