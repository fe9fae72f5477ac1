"""The latent-ODE experiment's data: 2-D spirals observed at irregular times, in numpy.

Chen et al. 2018 (section 5.1, Table 2) fit a latent ODE to noisy points of Archimedean
spirals and report the RMSE of its forecast beyond the observed points.  The spirals follow
``generate_spiral2d`` of torchdiffeq's ``examples/latent_ode.py``: on the dense grid
``ts = linspace(0, t_stop, n_grid)``, with ``a = 0`` and ``b = 0.3``,

* clockwise: ``z = t_stop + 1 - ts``, ``r = a + 50 b / z``, point ``(r cos z - 5, r sin z)``;
* counter-clockwise: ``z = ts``, ``r = a + b z``, point ``(r cos z + 5, r sin z)``.

Differences from torchdiffeq, all deliberate:

* each spiral is observed at ``n_obs`` distinct, sorted, random grid points of a window of
  ``window`` grid points (the paper's irregular sampling; torchdiffeq takes a regular run);
* the ``n_extrap`` grid points right after the window are kept, noise-free, as the
  forecast targets, and the truth is never noised (torchdiffeq only keeps whole curves);
* all randomness comes from ``np.random.default_rng((seed, 4))``, so splits are reproducible.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .._common.options import integer


def _real(name: str, value: object, *, positive: bool = False, non_negative: bool = False) -> float:
    allowed = "positive finite" if positive else "non-negative finite" if non_negative else "finite"
    x = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan
    if not math.isfinite(x) or (positive and x <= 0) or (non_negative and x < 0):
        raise ValueError(f"{name} must be a {allowed} number, got {value!r}")
    return x


@dataclass(frozen=True)
class SpiralGrid:
    """The constants shared by every spiral of a task: curve, grid, windows and noise.

    ``dt = t_stop / (n_grid - 1)`` is the grid spacing, the model's unit of time.  A spiral's
    start index is uniform on ``[window, n_grid - window - n_extrap]``; requiring
    ``3 * window + n_extrap <= n_grid`` keeps that range at least ``window + 1`` wide, so the
    spirals really differ in phase.
    """

    window: int = 100
    n_extrap: int = 100
    noise: float = 0.3
    a: float = 0.0
    b: float = 0.3
    t_stop: float = 6.0 * math.pi
    n_grid: int = 1000

    def __post_init__(self):
        for name, low in (("window", 2), ("n_extrap", 1), ("n_grid", 10)):
            object.__setattr__(self, name, integer(name, getattr(self, name), low))
        object.__setattr__(self, "noise", _real("noise", self.noise, non_negative=True))
        object.__setattr__(self, "a", _real("a", self.a))
        object.__setattr__(self, "b", _real("b", self.b, positive=True))
        object.__setattr__(self, "t_stop", _real("t_stop", self.t_stop, positive=True))
        need = 3 * self.window + self.n_extrap
        if need > self.n_grid:
            raise ValueError(
                f"window={self.window} and n_extrap={self.n_extrap} need 3 * window + n_extrap = {need} "
                f"grid points, n_grid={self.n_grid} has only {self.n_grid}; lower them or raise n_grid"
            )

    @property
    def dt(self) -> float:
        return self.t_stop / (self.n_grid - 1)

    def curves(self) -> tuple[np.ndarray, np.ndarray]:
        """The clockwise and counter-clockwise spirals on the whole grid, each [n_grid, 2]."""
        ts = np.linspace(0.0, self.t_stop, self.n_grid)
        z_cw = self.t_stop + 1.0 - ts  # the + 1 keeps 50 b / z finite at ts = t_stop
        r_cw = self.a + 50.0 * self.b / z_cw
        r_cc = self.a + self.b * ts
        cw = np.stack([r_cw * np.cos(z_cw) - 5.0, r_cw * np.sin(z_cw)], axis=1)
        cc = np.stack([r_cc * np.cos(ts) + 5.0, r_cc * np.sin(ts)], axis=1)
        return cw, cc


@dataclass(frozen=True, eq=False)
class Spirals:
    """One split: N spirals, each seen at n_obs irregular times and forecast n_extrap steps on.

    Times are relative to the window's start (grid point ``start``), in the units of ``dt``.
    """

    x_obs: np.ndarray      # float64 [N, n_obs, 2]: truth at obs_idx plus N(0, noise^2)
    obs_idx: np.ndarray    # int64 [N, n_obs]: sorted distinct offsets in [0, window)
    truth: np.ndarray      # float64 [N, window + n_extrap, 2]: noise-free, window then forecast
    clockwise: np.ndarray  # bool [N]
    start: np.ndarray      # int64 [N]: grid index of the window's first point
    dt: float
    window: int
    n_extrap: int

    def __len__(self) -> int:
        return len(self.x_obs)

    @property
    def obs_times(self) -> np.ndarray:
        """[N, n_obs] observation times, the inputs of the latent ODE's encoder."""
        return self.obs_idx * self.dt

    @property
    def extrap_times(self) -> np.ndarray:
        """[n_extrap] times of the forecast targets ``truth[:, window:]``."""
        return (self.window + np.arange(self.n_extrap)) * self.dt

    @property
    def truth_at_obs(self) -> np.ndarray:
        """[N, n_obs, 2] noise-free points at the observation times (reconstruction targets)."""
        return np.take_along_axis(self.truth, self.obs_idx[:, :, None], axis=1)


def sample_spirals(grid: SpiralGrid, n: int, n_obs: int, rng: np.random.Generator) -> Spirals:
    """Draw ``n`` spirals, each observed at ``n_obs`` random grid points of its window.

    Draw order from ``rng`` (part of the reproducibility contract): directions ``random(n)``,
    starts ``integers(n)``, offsets ``random((n, window))`` (argsort picks a uniform subset),
    noise ``standard_normal((n, n_obs, 2))``.
    """
    n = integer("n_spirals", n, 1)
    n_obs = integer("n_obs", n_obs, 2)
    if n_obs > grid.window:
        raise ValueError(f"n_obs={n_obs} exceeds the window's {grid.window} grid points")
    clockwise = rng.random(n) < 0.5
    start = rng.integers(grid.window, grid.n_grid - grid.window - grid.n_extrap + 1, size=n)
    obs_idx = np.sort(np.argsort(rng.random((n, grid.window)), axis=1)[:, :n_obs], axis=1)
    cw, cc = grid.curves()
    rows = start[:, None] + np.arange(grid.window + grid.n_extrap)
    truth = np.where(clockwise[:, None, None], cw[rows], cc[rows])
    x_obs = np.take_along_axis(truth, obs_idx[:, :, None], axis=1)
    x_obs = x_obs + grid.noise * rng.standard_normal((n, n_obs, 2))
    return Spirals(x_obs=x_obs, obs_idx=obs_idx.astype(np.int64), truth=truth, clockwise=clockwise,
                   start=start.astype(np.int64), dt=grid.dt, window=grid.window, n_extrap=grid.n_extrap)


def make_split(grid: SpiralGrid, n_train: int, n_test: int, n_obs: int, seed: int) -> tuple[Spirals, Spirals]:
    """Deterministic ``(train, test)``: one ``np.random.default_rng((seed, 4))`` draws all train
    spirals, then all test spirals, so the two are independent and a seed fixes both."""
    n_train = integer("n_train", n_train, 1)
    n_test = integer("n_test", n_test, 1)
    seed = integer("seed", seed, 0)
    rng = np.random.default_rng((seed, 4))
    return sample_spirals(grid, n_train, n_obs, rng), sample_spirals(grid, n_test, n_obs, rng)


def last_observation_forecast(spirals: Spirals) -> np.ndarray:
    """[N, n_extrap, 2]: the last observation held constant, the floor any model must beat."""
    return np.repeat(spirals.x_obs[:, -1:, :], spirals.n_extrap, axis=1)


def rmse(pred: np.ndarray, target: np.ndarray) -> float:
    """Root of the mean squared error over all points and both coordinates (the paper's metric)."""
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"pred has shape {pred.shape}, target {target.shape}; they must match")
    return float(np.sqrt(np.mean((pred - target) ** 2)))


def _check_curves(name: str, curves: Optional[np.ndarray], n: int) -> Optional[np.ndarray]:
    if curves is None:
        return None
    curves = np.asarray(curves, dtype=np.float64)
    if curves.ndim != 3 or curves.shape[0] != n or curves.shape[2] != 2:
        raise ValueError(f"{name} must have shape ({n}, k, 2), got {curves.shape}")
    return curves


def spirals_figure(path, spirals: Spirals, indices: Sequence[int], *, recon=None, extrap=None,
                   title: str = "") -> Path:
    """Write a PNG with one panel per spiral in ``indices``: observations, truth, model curves.

    ``recon`` ([N, k, 2], on the observed window) and ``extrap`` ([N, n_extrap, 2]) are a
    model's curves for all N spirals.  Uses matplotlib's Agg canvas directly (no pyplot
    state is touched).  Returns the path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(spirals)
    indices = [int(i) for i in indices]
    if not indices or any(not 0 <= i < n for i in indices):
        raise ValueError(f"indices must be a non-empty list of spirals in [0, {n}), got {indices}")
    recon, extrap = _check_curves("recon", recon, n), _check_curves("extrap", extrap, n)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    fig = Figure(figsize=(3.2 * len(indices), 3.6 if title else 3.2))
    FigureCanvasAgg(fig)
    for k, i in enumerate(indices):
        ax = fig.add_subplot(1, len(indices), k + 1)
        ax.plot(*spirals.truth[i].T, color="0.6", lw=0.8, label="truth")
        ax.scatter(*spirals.x_obs[i].T, s=6, color="C0", label="observations")
        if recon is not None:
            ax.plot(*recon[i].T, color="C1", lw=1.5, label="reconstruction")
        if extrap is not None:
            ax.plot(*extrap[i].T, color="C2", lw=1.5, label="extrapolation")
        ax.set_title(f"spiral {i} ({'cw' if spirals.clockwise[i] else 'ccw'})", fontsize=9)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.axes[0].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    return path
