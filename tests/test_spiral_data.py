"""Irregularly observed 2-D spirals (odebench_tasks.latent_spiral.data): layout, seeding, geometry."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest

try:
    from odebench_tasks.latent_spiral import data as sp
except ImportError:  # editable install made before plugins/odebench_tasks/latent_spiral existed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))
    from odebench_tasks.latent_spiral import data as sp

GRID = sp.SpiralGrid()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _split(n_obs=30, seed=0, n_train=64, n_test=32, grid=GRID):
    return sp.make_split(grid, n_train, n_test, n_obs, seed)


# ------------------------------------------------------------------ layout and seeding


@pytest.mark.parametrize("n_obs", [30, 50, 100])
def test_shapes_and_dtypes(n_obs):
    train, test = _split(n_obs)
    for s, n in ((train, 64), (test, 32)):
        assert len(s) == n
        assert s.x_obs.shape == (n, n_obs, 2) and s.x_obs.dtype == np.float64
        assert s.obs_idx.shape == (n, n_obs) and s.obs_idx.dtype == np.int64
        assert s.truth.shape == (n, 200, 2) and s.truth.dtype == np.float64
        assert s.clockwise.shape == (n,) and s.clockwise.dtype == bool
        assert s.start.shape == (n,) and s.start.dtype == np.int64
        assert s.truth_at_obs.shape == (n, n_obs, 2)
        assert s.obs_times.shape == (n, n_obs)
        assert np.isfinite(s.x_obs).all() and np.isfinite(s.truth).all()
    assert train.dt == pytest.approx(6 * math.pi / 999)
    np.testing.assert_allclose(train.extrap_times, np.arange(100, 200) * train.dt)
    np.testing.assert_allclose(train.obs_times, train.obs_idx * train.dt)


def test_same_seed_same_arrays_other_seed_differs():
    a, b, c = _split(seed=5), _split(seed=5), _split(seed=6)
    for name in ("x_obs", "obs_idx", "truth", "clockwise", "start"):
        for i in range(2):
            np.testing.assert_array_equal(getattr(a[i], name), getattr(b[i], name))
    assert not np.array_equal(a[0].x_obs, c[0].x_obs)
    assert not np.array_equal(a[1].x_obs, c[1].x_obs)


def test_train_and_test_are_separate_draws():
    train, test = _split(n_train=32, n_test=32)
    assert not np.array_equal(train.x_obs, test.x_obs)
    assert not np.array_equal(train.start, test.start)


def test_observation_offsets_are_irregular_sorted_and_per_spiral():
    train, _ = _split(n_obs=30, n_train=200)
    idx = train.obs_idx
    assert (np.diff(idx, axis=1) > 0).all()
    assert idx.min() >= 0 and idx.max() < GRID.window
    gaps = np.diff(idx, axis=1)
    assert (gaps.min(axis=1) != gaps.max(axis=1)).all()  # no spiral is sampled regularly
    assert len({tuple(row) for row in idx}) > 190
    assert np.unique(idx).size == GRID.window  # every offset of the window gets used


def test_full_window_observes_every_grid_point():
    train, _ = _split(n_obs=100, n_train=8)
    np.testing.assert_array_equal(train.obs_idx, np.tile(np.arange(100), (8, 1)))


def test_direction_split_is_fair():
    train, _ = _split(n_train=2000, n_test=1)
    assert 0.45 <= train.clockwise.mean() <= 0.55


def test_noise_level():
    train, _ = _split(n_obs=50, n_train=1000)
    resid = train.x_obs - train.truth_at_obs
    assert abs(resid.std() - 0.3) < 0.05 * 0.3
    assert abs(resid.mean()) < 0.01


def test_zero_noise_gives_exact_truth():
    train, _ = _split(grid=sp.SpiralGrid(noise=0.0))
    np.testing.assert_array_equal(train.x_obs, train.truth_at_obs)


# ------------------------------------------------------------------ geometry


def test_truth_lies_on_the_right_spiral():
    train, _ = _split(n_train=200)
    b, t_stop = GRID.b, GRID.t_stop
    assert 0 < train.clockwise.sum() < 200
    for i in range(200):
        offsets = np.array([0, 17, 99, 100, 199])  # observed window and forecast
        z = (train.start[i] + offsets) * train.dt
        x, y = train.truth[i, offsets].T
        if train.clockwise[i]:
            np.testing.assert_allclose(np.hypot(x + 5, y), 50 * b / (t_stop + 1 - z), rtol=1e-12)
        else:
            np.testing.assert_allclose(np.hypot(x - 5, y), b * z, rtol=1e-12)


def test_truth_at_obs_matches_the_dense_curve():
    train, _ = _split(grid=sp.SpiralGrid(noise=0.0), n_train=20)
    cw, cc = GRID.curves()
    for i in range(20):
        curve = cw if train.clockwise[i] else cc
        rows = train.start[i] + train.obs_idx[i]
        np.testing.assert_array_equal(train.x_obs[i], curve[rows])


def test_start_range_and_extrapolation_follows_window():
    grid = sp.SpiralGrid(window=20, n_extrap=30, n_grid=100)
    train, _ = sp.make_split(grid, 3000, 1, 5, seed=1)
    assert train.start.min() == 20 and train.start.max() == 100 - 20 - 30
    cw, cc = grid.curves()
    for i in range(50):
        curve = cw if train.clockwise[i] else cc
        s = train.start[i]
        np.testing.assert_array_equal(train.truth[i, :20], curve[s:s + 20])
        np.testing.assert_array_equal(train.truth[i, 20:], curve[s + 20:s + 50])


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("kwargs, word", [
    ({"noise": -0.1}, "noise"),
    ({"noise": float("nan")}, "noise"),
    ({"noise": float("inf")}, "noise"),
    ({"window": 1}, "window"),
    ({"window": 10.0}, "window"),
    ({"n_extrap": 0}, "n_extrap"),
    ({"n_extrap": "5"}, "n_extrap"),
    ({"window": 301}, "n_grid=1000"),
    ({"t_stop": 0.0}, "t_stop"),
    ({"t_stop": -1}, "t_stop"),
    ({"n_grid": 9, "window": 2, "n_extrap": 1}, "n_grid"),
    ({"n_grid": 1000.5}, "n_grid"),
    ({"b": 0.0}, "b must"),
])
def test_grid_validation(kwargs, word):
    with pytest.raises(ValueError) as err:
        sp.SpiralGrid(**kwargs)
    message = str(err.value)
    assert word in message and "\n" not in message


def test_room_error_says_the_numbers():
    with pytest.raises(ValueError, match=r"window=300 and n_extrap=100 need .* = 1000 .*n_grid=900"):
        sp.SpiralGrid(window=300, n_extrap=100, n_grid=900)
    sp.SpiralGrid(window=300, n_extrap=100, n_grid=1000)  # exactly enough room
    with pytest.raises(ValueError, match="need 3 \\* window \\+ n_extrap = 1001"):
        sp.SpiralGrid(window=300, n_extrap=101, n_grid=1000)


@pytest.mark.parametrize("kwargs, word", [
    ({"n_obs": 120}, "n_obs=120 exceeds the window's 100 grid points"),
    ({"n_obs": 1}, "n_obs"),
    ({"n_obs": 30.0}, "n_obs"),
    ({"n_train": 0}, "n_train"),
    ({"n_test": 0}, "n_test"),
    ({"n_train": True}, "n_train"),
    ({"n_test": 2.5}, "n_test"),
    ({"seed": -1}, "seed"),
])
def test_split_validation(kwargs, word):
    args = {"n_train": 4, "n_test": 4, "n_obs": 30, "seed": 0, **kwargs}
    with pytest.raises(ValueError) as err:
        sp.make_split(GRID, **args)
    message = str(err.value)
    assert word in message and "\n" not in message


# ------------------------------------------------------------------ baseline and metric


def test_last_observation_forecast():
    train, _ = _split(n_train=5)
    pred = sp.last_observation_forecast(train)
    assert pred.shape == (5, 100, 2)
    for i in range(5):
        np.testing.assert_array_equal(pred[i], np.tile(train.x_obs[i, -1], (100, 1)))
    assert sp.rmse(pred, train.truth[:, 100:]) > 0.5  # a poor forecast of a moving curve


def test_rmse():
    assert sp.rmse(np.zeros((2, 3, 2)), np.full((2, 3, 2), 2.0)) == pytest.approx(2.0)
    pred = np.array([[[0.0, 0.0], [3.0, 4.0]]])
    assert sp.rmse(pred, np.zeros_like(pred)) == pytest.approx(math.sqrt(25 / 4))
    with pytest.raises(ValueError, match="shape"):
        sp.rmse(np.zeros((1, 2, 2)), np.zeros((1, 3, 2)))


# ------------------------------------------------------------------ figure


def _width(path):  # PNG IHDR: width is the big-endian uint32 at byte 16
    return int.from_bytes(path.read_bytes()[16:20], "big")


def test_figure_writes_png(tmp_path):
    train, _ = _split(n_train=6)
    recon = train.truth[:, :100] + 0.1
    extrap = sp.last_observation_forecast(train)
    out = sp.spirals_figure(tmp_path / "figs" / "spirals.png", train, [0, 1, 2],
                            recon=recon, extrap=extrap, title="latent ODE")
    blob = Path(out).read_bytes()
    assert blob.startswith(PNG_MAGIC) and 5_000 < len(blob) < 2_000_000
    one = sp.spirals_figure(tmp_path / "one.png", train, [4])
    assert _width(Path(out)) > 2 * _width(one)


def test_figure_rejects_bad_inputs(tmp_path):
    train, _ = _split(n_train=4)
    with pytest.raises(ValueError, match="indices"):
        sp.spirals_figure(tmp_path / "x.png", train, [4])
    with pytest.raises(ValueError, match="extrap"):
        sp.spirals_figure(tmp_path / "x.png", train, [0], extrap=np.zeros((3, 100, 2)))
