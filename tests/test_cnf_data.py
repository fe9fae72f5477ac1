"""FFJORD's 2-D toy densities (odebench_tasks.cnf.data): shape, seeding, spread and structure."""

import sys
from pathlib import Path

import numpy as np
import pytest

try:
    from odebench_tasks.cnf import data as toy
except ImportError:  # editable install made before plugins/odebench_tasks existed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))
    from odebench_tasks.cnf import data as toy

DATASETS = toy.DATASETS
N = 4000


def _draw(name, n=N, seed=0):
    return toy.sample(name, n, np.random.default_rng(seed))


def _polar(x):
    return np.hypot(x[:, 0], x[:, 1]), np.arctan2(x[:, 1], x[:, 0])


def _resultant(phases):
    """Mean resultant length of angles: ~0 for uniform angles, 1 for identical ones."""
    return float(np.abs(np.exp(1j * phases).mean()))


# ------------------------------------------------------------------ generic properties


def test_dataset_names():
    assert DATASETS == (
        "8gaussians", "moons", "circles", "pinwheel", "checkerboard", "2spirals", "swissroll", "rings",
    )


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("n", [1, 2, 3, 7, 257])
def test_shape_dtype_finite(name, n):
    x = _draw(name, n)
    assert isinstance(x, np.ndarray)
    assert x.shape == (n, 2)
    assert x.dtype == np.float64
    assert np.isfinite(x).all()


@pytest.mark.parametrize("name", DATASETS)
def test_deterministic_per_seed(name):
    np.testing.assert_array_equal(_draw(name, 500, seed=3), _draw(name, 500, seed=3))
    assert not np.array_equal(_draw(name, 500, seed=3), _draw(name, 500, seed=4))


@pytest.mark.parametrize("name", DATASETS)
def test_make_split(name):
    train, test = toy.make_split(name, 300, 100, seed=11)
    assert train.shape == (300, 2) and test.shape == (100, 2)
    assert train.dtype == test.dtype == np.float64
    train2, test2 = toy.make_split(name, 300, 100, seed=11)
    np.testing.assert_array_equal(train, train2)
    np.testing.assert_array_equal(test, test2)
    train3, test3 = toy.make_split(name, 300, 100, seed=12)
    assert not np.array_equal(train, train3)
    assert not np.array_equal(test, test3)
    assert not np.array_equal(train[:100], test)


@pytest.mark.parametrize("name", DATASETS)
def test_spread(name):
    x = _draw(name)
    std = x.std(axis=0)
    assert np.all(std > 0.3) and np.all(std < 4.0), std
    inside = (np.abs(x) <= 4.5).all(axis=1).mean()
    assert inside > 0.99
    assert np.abs(x.mean(axis=0)).max() < 1.0


@pytest.mark.parametrize("name", DATASETS)
def test_does_not_touch_global_numpy_state(name):
    np.random.seed(123)
    expected = np.random.rand(3)
    np.random.seed(123)
    _draw(name, 200)
    np.testing.assert_array_equal(np.random.rand(3), expected)


# ------------------------------------------------------------------ structure


def test_8gaussians_clusters_on_eight_centres():
    x = _draw("8gaussians")
    angles = np.arange(8) * np.pi / 4
    centres = 4.0 / 1.414 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    d = np.linalg.norm(x[:, None, :] - centres[None], axis=2)
    nearest = d.argmin(axis=1)
    assert (d.min(axis=1) < 1.2).mean() > 0.98
    counts = np.bincount(nearest, minlength=8) / len(x)
    assert counts.min() > 0.08 and counts.max() < 0.17, counts
    # the angle histogram has 8 peaks at multiples of 45 degrees, with sparse valleys between
    _, theta = _polar(x)
    hist, _ = np.histogram(np.mod(theta + np.pi / 8, 2 * np.pi), bins=32, range=(0, 2 * np.pi))
    peaks, valleys = hist[1::4] + hist[2::4], hist[3::4] + hist[0::4]
    assert peaks.min() > 3 * valleys.max()
    r, _ = _polar(x)
    assert (r < 1.0).mean() < 0.01


def test_circles_two_concentric_rings_radius_ratio_half():
    x = _draw("circles")
    r, theta = _polar(x)
    inner, outer = r[r < 2.25], r[r >= 2.25]
    assert 0.45 < len(inner) / len(r) < 0.55
    assert np.median(inner) / np.median(outer) == pytest.approx(0.5, abs=0.03)
    assert np.median(outer) == pytest.approx(3.0, abs=0.1)
    assert ((r > 2.0) & (r < 2.5)).mean() < 0.03  # a clear gap between the rings
    assert _resultant(theta) < 0.1  # the rings are full circles


def test_rings_radii_on_four_values():
    x = _draw("rings")
    r, _ = _polar(x)
    radii = np.array([3.0, 2.25, 1.5, 0.75])
    d = np.abs(r[:, None] - radii[None])
    assert (d.min(axis=1) < 0.3).mean() > 0.99
    counts = np.bincount(d.argmin(axis=1), minlength=4) / len(r)
    np.testing.assert_allclose(counts, 0.25, atol=0.03)


def test_checkerboard_alternating_squares():
    x = _draw("checkerboard")
    assert np.abs(x).max() <= 4.0
    cells = np.floor(x / 2.0).astype(int)
    assert (cells.sum(axis=1) % 2 == 0).mean() > 0.99  # only the "even" squares
    # and all 8 of them are used, about equally
    occupied, counts = np.unique(cells, axis=0, return_counts=True)
    assert len(occupied) == 8
    assert counts.min() / len(x) > 0.09


def test_moons_two_interleaving_half_circles():
    x = _draw("moons")
    # upper moon: half circle of radius 2 about (-1, -0.2); lower one: about (1, 0.8)
    c_up, c_low = np.array([-1.0, -0.2]), np.array([1.0, 0.8])
    d_up = np.linalg.norm(x - c_up, axis=1)
    d_low = np.linalg.norm(x - c_low, axis=1)
    on_up = (np.abs(d_up - 2.0) < 0.6) & (x[:, 1] > c_up[1] - 0.6)
    on_low = (np.abs(d_low - 2.0) < 0.6) & (x[:, 1] < c_low[1] + 0.6)
    assert (on_up | on_low).mean() > 0.98
    up_only, low_only = (on_up & ~on_low).mean(), (on_low & ~on_up).mean()
    assert 0.3 < up_only < 0.7 and 0.3 < low_only < 0.7
    # interleaved: the upper moon sits up-left of the lower one (means (-1, 1.07) and (1, -0.47))
    m_up, m_low = x[on_up & ~on_low].mean(axis=0), x[on_low & ~on_up].mean(axis=0)
    assert m_up[0] < m_low[0] - 1.0 and m_up[1] > m_low[1] + 1.0


def test_pinwheel_five_spiral_arms():
    x = _draw("pinwheel")
    r, theta = _polar(x)
    # undoing the arm's twist (angle grows by 0.25 * exp(radius / 2)) lines the 5 arms up
    assert _resultant(5 * (theta + 0.25 * np.exp(r / 2.0))) > 0.7
    assert _resultant(5 * (theta - 0.25 * np.exp(r / 2.0))) < 0.4
    assert _resultant(theta) < 0.1  # 5-fold symmetric, not one blob


def test_2spirals_two_mirrored_spirals():
    x = _draw("2spirals")
    r, theta = _polar(x)
    far = r > 1.0
    assert far.mean() > 0.8
    # Archimedean spirals: angle + 3 * radius is constant mod pi along both arms
    assert _resultant(2 * (theta + 3 * r)[far]) > 0.5
    assert _resultant(2 * (theta - 3 * r)[far]) < 0.2
    # point symmetric: the two arms are mirror images through the origin
    assert np.abs(x.mean(axis=0)).max() < 0.15


def test_swissroll_spiral_with_empty_centre():
    x = _draw("swissroll")
    r, theta = _polar(x)
    assert (r < 0.5).mean() < 0.01
    # roll parameter t = 5 * radius equals the angle (mod 2 pi)
    assert _resultant(theta - 5 * r) > 0.45
    assert _resultant(theta + 5 * r) < 0.2


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("bad", ["9gaussians", "", "Moons", None, 3])
def test_unknown_name_lists_allowed_names(bad):
    for call in (
        lambda: toy.sample(bad, 10, np.random.default_rng(0)),
        lambda: toy.make_split(bad, 10, 10, seed=0),
    ):
        with pytest.raises(ValueError) as info:
            call()
        for allowed in DATASETS:
            assert allowed in str(info.value)


@pytest.mark.parametrize("bad_n", [0, -5, 2.5, 10.0, "10", None, True])
def test_bad_n_raises(bad_n):
    with pytest.raises(ValueError, match="positive int"):
        toy.sample("moons", bad_n, np.random.default_rng(0))
    with pytest.raises(ValueError, match="positive int"):
        toy.make_split("moons", bad_n, 10, seed=0)
    with pytest.raises(ValueError, match="positive int"):
        toy.make_split("moons", 10, bad_n, seed=0)


def test_numpy_integer_n_accepted():
    assert toy.sample("rings", np.int64(12), np.random.default_rng(0)).shape == (12, 2)


# ------------------------------------------------------------------ figure


def _std_normal_logpdf(points):
    points = np.asarray(points)
    assert points.ndim == 2 and points.shape[1] == 2
    return -0.5 * (points**2).sum(axis=1) - np.log(2 * np.pi)


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("log_density", [None, _std_normal_logpdf], ids=["data-only", "with-density"])
def test_density_figure_writes_png(tmp_path, log_density):
    x = _draw("8gaussians", 1000)
    out = tmp_path / "figs" / "density.png"
    toy.density_figure(x, log_density, out, title="8gaussians")
    assert out.is_file()
    blob = out.read_bytes()
    assert blob.startswith(PNG_MAGIC) and len(blob) > 1000


def test_density_figure_two_panels_wider_than_one(tmp_path):
    x = _draw("moons", 500)
    one, two = tmp_path / "one.png", tmp_path / "two.png"
    toy.density_figure(x, None, one)
    toy.density_figure(x, _std_normal_logpdf, two)

    def width(p):  # PNG IHDR: width is the big-endian uint32 at byte 16
        return int.from_bytes(p.read_bytes()[16:20], "big")

    assert width(two) > 1.5 * width(one)
