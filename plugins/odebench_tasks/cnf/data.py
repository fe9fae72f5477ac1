"""FFJORD's 2-D toy densities, in plain numpy and fully seeded.

The generators follow ``lib/toy_data.py`` of FFJORD (Grathwohl et al., 2019,
arXiv:1810.01367), including its rescaling so every data set lives roughly in
``[-4, 4]^2``.  Differences from the original, all deliberate:

* every draw comes from the caller's ``numpy.random.Generator`` (FFJORD mixes a
  ``RandomState`` with the global ``np.random`` state), so results are reproducible;
* ``sklearn.datasets.make_moons`` / ``make_circles`` / ``make_swiss_roll`` are
  re-implemented here (same constructions) so no scikit-learn is needed;
* ``circles`` uses ``noise=0.06, factor=0.5`` as in torchdiffeq's ``examples/cnf.py``
  (FFJORD uses ``noise=0.08``), then FFJORD's ``* 3`` rescaling (radii 3 and 1.5);
* exactly ``n`` points are returned for every ``n`` (FFJORD's ``pinwheel`` and
  ``2spirals`` drop the remainder of ``n / 5`` and ``n / 2``), and the structured
  sets are shuffled so any prefix is a fair sample;
* output is float64.
"""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Callable

import numpy as np

DATASETS: tuple[str, ...] = (
    "8gaussians",
    "moons",
    "circles",
    "pinwheel",
    "checkerboard",
    "2spirals",
    "swissroll",
    "rings",
)

#: Square shown by ``density_figure`` (and covered by every data set).
PLOT_LIMIT = 4.0


# --------------------------------------------------------------------------- generators


def _eight_gaussians(n: int, rng: np.random.Generator) -> np.ndarray:
    s = 1.0 / np.sqrt(2.0)
    centers = 4.0 * np.array(
        [(1, 0), (-1, 0), (0, 1), (0, -1), (s, s), (s, -s), (-s, s), (-s, -s)], dtype=np.float64
    )
    idx = rng.integers(0, 8, size=n)
    x = rng.standard_normal((n, 2)) * 0.5 + centers[idx]
    return x / 1.414


def _moons(n: int, rng: np.random.Generator) -> np.ndarray:
    # sklearn.datasets.make_moons(noise=0.1), then FFJORD's "* 2 + [-1, -0.2]".
    n_out = n // 2
    n_in = n - n_out
    t_out = np.linspace(0.0, np.pi, n_out)
    t_in = np.linspace(0.0, np.pi, n_in)
    outer = np.stack([np.cos(t_out), np.sin(t_out)], axis=1)
    inner = np.stack([1.0 - np.cos(t_in), 1.0 - np.sin(t_in) - 0.5], axis=1)
    x = np.concatenate([outer, inner])[rng.permutation(n)]
    x = x + rng.normal(scale=0.1, size=x.shape)
    return x * 2.0 + np.array([-1.0, -0.2])


def _circles(n: int, rng: np.random.Generator) -> np.ndarray:
    # sklearn.datasets.make_circles(noise=0.06, factor=0.5) as in torchdiffeq's
    # examples/cnf.py, then FFJORD's "* 3".
    factor, noise = 0.5, 0.06
    n_out = n // 2
    n_in = n - n_out
    t_out = np.linspace(0.0, 2.0 * np.pi, n_out, endpoint=False)
    t_in = np.linspace(0.0, 2.0 * np.pi, n_in, endpoint=False)
    outer = np.stack([np.cos(t_out), np.sin(t_out)], axis=1)
    inner = factor * np.stack([np.cos(t_in), np.sin(t_in)], axis=1)
    x = np.concatenate([outer, inner])[rng.permutation(n)]
    x = x + rng.normal(scale=noise, size=x.shape)
    return x * 3.0


def _pinwheel(n: int, rng: np.random.Generator) -> np.ndarray:
    radial_std, tangential_std, num_classes, rate = 0.3, 0.1, 5, 0.25
    rads = np.linspace(0.0, 2.0 * np.pi, num_classes, endpoint=False)
    features = rng.standard_normal((n, 2)) * np.array([radial_std, tangential_std])
    features[:, 0] += 1.0
    labels = np.arange(n) % num_classes
    angles = rads[labels] + rate * np.exp(features[:, 0])
    c, s = np.cos(angles), np.sin(angles)
    rotations = np.stack([c, -s, s, c]).T.reshape(-1, 2, 2)
    x = np.einsum("ti,tij->tj", features, rotations)
    return 2.0 * x[rng.permutation(n)]


def _two_spirals(n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.sqrt(rng.random(n)) * 540.0 * (2.0 * np.pi) / 360.0
    dx = -np.cos(t) * t + rng.random(n) * 0.5
    dy = np.sin(t) * t + rng.random(n) * 0.5
    x = np.stack([dx, dy], axis=1)
    # FFJORD's second spiral is the first one mirrored through the origin.
    sign = np.where(np.arange(n) < n - n // 2, 1.0, -1.0)[rng.permutation(n)]
    x = x * sign[:, None] / 3.0
    return x + rng.standard_normal(x.shape) * 0.1


def _checkerboard(n: int, rng: np.random.Generator) -> np.ndarray:
    x1 = rng.random(n) * 4.0 - 2.0
    x2_ = rng.random(n) - rng.integers(0, 2, size=n) * 2.0
    x2 = x2_ + (np.floor(x1) % 2)
    return np.stack([x1, x2], axis=1) * 2.0


def _swissroll(n: int, rng: np.random.Generator) -> np.ndarray:
    # sklearn.datasets.make_swiss_roll(noise=1.0), keeping coordinates (x, z), then "/ 5".
    t = 1.5 * np.pi * (1.0 + 2.0 * rng.random(n))
    x = np.stack([t * np.cos(t), t * np.sin(t)], axis=1)
    x = x + rng.standard_normal(x.shape) * 1.0
    return x / 5.0


def _rings(n: int, rng: np.random.Generator) -> np.ndarray:
    n4 = n3 = n2 = n // 4
    n1 = n - n4 - n3 - n2
    parts = []
    for count, radius in ((n4, 1.0), (n3, 0.75), (n2, 0.5), (n1, 0.25)):
        t = np.linspace(0.0, 2.0 * np.pi, count, endpoint=False)
        parts.append(radius * np.stack([np.cos(t), np.sin(t)], axis=1))
    x = np.concatenate(parts) * 3.0
    x = x[rng.permutation(n)]
    return x + rng.normal(scale=0.08, size=x.shape)


_GENERATORS: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "8gaussians": _eight_gaussians,
    "moons": _moons,
    "circles": _circles,
    "pinwheel": _pinwheel,
    "checkerboard": _checkerboard,
    "2spirals": _two_spirals,
    "swissroll": _swissroll,
    "rings": _rings,
}
assert tuple(_GENERATORS) == DATASETS


# --------------------------------------------------------------------------- public API


def _check_name(name: object) -> str:
    if not isinstance(name, str) or name not in _GENERATORS:
        raise ValueError(
            f"unknown 2-D toy data set {name!r}; allowed names: {', '.join(DATASETS)}"
        )
    return name


def _check_count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return int(value)


def sample(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` points of the toy density ``name`` as an ``(n, 2)`` float64 array.

    ``name`` must be one of ``DATASETS``; all randomness comes from ``rng``.
    """
    name = _check_name(name)
    n = _check_count(n, "n")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    x = np.ascontiguousarray(_GENERATORS[name](n, rng), dtype=np.float64)
    assert x.shape == (n, 2)
    return x


def make_split(name: str, n_train: int, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic ``(train, test)`` split: both drawn from ``np.random.default_rng(seed)``.

    The two sets are independent draws (train first, then test) from the same generator,
    so each is a full, balanced sample of the density and the same seed always gives the
    same arrays.
    """
    name = _check_name(name)
    n_train = _check_count(n_train, "n_train")
    n_test = _check_count(n_test, "n_test")
    rng = np.random.default_rng(seed)
    train = sample(name, n_train, rng)
    test = sample(name, n_test, rng)
    return train, test


def density_figure(
    data: np.ndarray,
    log_density: Callable[[np.ndarray], np.ndarray] | None,
    path: str | Path,
    title: str = "",
    *,
    grid_size: int = 200,
) -> Path:
    """Write a PNG comparing ``data`` (2-D histogram) with ``exp(log_density)`` on ``[-4, 4]^2``.

    ``log_density`` maps an ``(m, 2)`` array of points to ``(m,)`` log-densities; with
    ``None`` only the data panel is drawn.  Uses matplotlib's Agg canvas directly (no
    pyplot state is touched).  Returns the path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != 2:
        raise ValueError(f"data must have shape (n, 2), got {data.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    lim = PLOT_LIMIT
    n_panels = 1 if log_density is None else 2
    fig = Figure(figsize=(4.0 * n_panels, 4.3 if title else 4.0))
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, n_panels, i + 1) for i in range(n_panels)]

    ax = axes[0]
    ax.hist2d(data[:, 0], data[:, 1], bins=100, range=[[-lim, lim], [-lim, lim]], cmap="viridis")
    ax.set_title("data")

    if log_density is not None:
        side = np.linspace(-lim, lim, grid_size)
        xx, yy = np.meshgrid(side, side)
        points = np.stack([xx.ravel(), yy.ravel()], axis=1)
        logp = np.asarray(log_density(points), dtype=np.float64).reshape(-1)
        if logp.shape != (points.shape[0],):
            raise ValueError(
                f"log_density must return shape ({points.shape[0]},), got {logp.shape}"
            )
        dens = np.exp(np.where(np.isfinite(logp), logp, -np.inf)).reshape(xx.shape)
        ax = axes[1]
        ax.pcolormesh(xx, yy, dens, cmap="viridis", shading="auto")
        ax.set_title("model density")

    for ax in axes:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    return path
