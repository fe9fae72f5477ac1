"""Options of the ``latent-spiral`` task (framework-free): a fast default and the paper's size.

The defaults train each model in under two minutes on a 2-core CPU.  ``PAPER_OPTIONS`` is
the setting of Chen et al. (section 5.1) as torchdiffeq's example sets it: 1,000 spirals,
full-batch Adam at lr 0.01 for 2,000 iterations, latent dimension 4, an RNN encoder of 25
units, ODE and decoder MLPs of 20 hidden units, likelihood noise 0.3.  The test spirals are
an extra held-out draw (the example has none), and the observed window is 200 grid points so
that n = 100 observations are still irregular (the fast default's window is 100).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .._common.options import positive_float, positive_int
from .data import SpiralGrid

#: window 200: the paper's n = 100 observations must still be an irregular subset of the window.
PAPER_OPTIONS: dict = {"n_train": 1000, "n_test": 200, "batch_size": 1000, "iterations": 2000, "lr": 0.01,
                       "window": 200}


@dataclass
class LatentSpiralOptions:
    """The latent ODE (and its RNN baseline) on 2-D spirals seen at irregular times.

    Data (see ``data.py``): ``n_train`` and ``n_test`` spirals, each observed at ``n_obs``
    random grid points of a ``window`` of grid points (the paper's n = 30, 50, 100), with
    Gaussian ``noise``; the ``n_extrap`` grid points after the window are the forecast targets.
    ``a``, ``b``, ``t_stop``, ``n_grid``: the spirals and their grid.
    Training: ``iterations`` Adam steps at ``lr`` on batches of ``batch_size`` spirals (all of
    them: full batch); ``sigma``: the likelihood's fixed noise std.  Sizes: ``latent_dim``,
    ``rnn_hidden`` (encoder and baseline), ``ode_hidden``, ``dec_hidden``.
    ``n_plot``: test spirals drawn in the figure.
    """

    n_obs: int = 30
    n_train: int = 300
    n_test: int = 100
    window: int = 100
    n_extrap: int = 100
    noise: float = 0.3
    a: float = 0.0
    b: float = 0.3
    t_stop: float = 6.0 * math.pi
    n_grid: int = 1000
    iterations: int = 300
    batch_size: int = 300
    lr: float = 0.01
    sigma: float = 0.3
    latent_dim: int = 4
    rnn_hidden: int = 25
    ode_hidden: int = 20
    dec_hidden: int = 20
    n_plot: int = 4

    def __post_init__(self) -> None:
        for name in ("n_train", "n_test", "iterations", "batch_size", "latent_dim", "rnn_hidden", "ode_hidden",
                     "dec_hidden", "n_plot"):
            setattr(self, name, positive_int(name, getattr(self, name)))
        for name in ("lr", "sigma"):
            setattr(self, name, positive_float(name, getattr(self, name)))
        self.grid()  # checks the data's constants
        if self.n_obs > self.window or self.n_obs < 2:
            raise ValueError(f"n_obs={self.n_obs} must be between 2 and the window's {self.window} grid points")
        if self.batch_size > self.n_train:
            raise ValueError(f"batch_size ({self.batch_size}) must not exceed n_train ({self.n_train})")

    def grid(self) -> SpiralGrid:
        return SpiralGrid(window=self.window, n_extrap=self.n_extrap, noise=self.noise, a=self.a, b=self.b,
                          t_stop=self.t_stop, n_grid=self.n_grid)

    def sizes(self) -> dict:
        return {"latent_dim": self.latent_dim, "rnn_hidden": self.rnn_hidden, "ode_hidden": self.ode_hidden,
                "dec_hidden": self.dec_hidden}
