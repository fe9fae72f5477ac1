"""The mathematics of every built-in Butcher tableau (numpy only, no framework).

For each tableau in ``odebench_solvers.tableaus.ALL_TABLEAUS`` this checks

* the row-sum condition c_i = sum_j a_ij;
* every Butcher order condition  b . Phi(t) = 1 / gamma(t)  over all rooted trees t with
  |t| <= order (up to 115 trees of order 8, 200 in all), from a generic rooted-tree
  generator, and that the method is not of order ``order + 1`` (the declared order is exact);
* the same for the embedded solution b_hat = b - b_err up to ``error_order``; for a tableau
  with two error estimates (``b_err_low``, Hairer's DOP853) for both embedded solutions
  b - b_err and b - b_err_low up to their orders (5 and 3 for DOP853);
* the FSAL flag against the tableau's structure;
* for dense output: b_j(1) = b_j and the continuous order conditions
  sum_j b_j(theta) Phi_j(t) = theta^|t| / gamma(t) for |t| <= the dense order (4 for dopri5);
* numerically, by a tiny RK loop: the observed convergence slope of the propagated and the
  embedded solutions on y' = y and on nonlinear (and non-autonomous) scalar problems, the
  local order of each error estimate (and of DOP853's combined error norm, O(h^8)), and the
  local accuracy of the dense output over one step;
* that the checker is sensitive: perturbing any single coefficient makes it fail.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from decimal import Decimal, localcontext
from functools import lru_cache

import numpy as np
import pytest

from odebench.errors import InvalidTableauError
from odebench.specs import Tableau
from odebench_solvers.tableaus import ALL_TABLEAUS

TABLEAUS = {tab.name: tab for tab in ALL_TABLEAUS}
ADAPTIVE = [tab for tab in ALL_TABLEAUS if tab.adaptive]
DENSE = [tab for tab in ALL_TABLEAUS if tab.dense is not None]
EPS = np.finfo(float).eps

# the order of the dense output of each tableau that has one
DENSE_ORDER = {"dopri5": 4, "tsit5": 4}

# Tableaus with a second error estimate (b_err_low): the orders of the two embedded solutions
# b - b_err and b - b_err_low.  Their error norm e^2 / sqrt(e^2 + 0.01 e_low^2) behaves like
# 10 e^2 / e_low for small steps, O(h^(2 (p + 1) - (p_low + 1))), which is what error_order
# (the controller's exponent 1 / (error_order + 1)) describes: 2 * 6 - 4 = 8 for DOP853.
EMBEDDED_ORDERS = {"dopri8": (5, 3)}


def embedded_solutions(tab) -> list:
    """(label, weights, order) of each embedded solution of an adaptive tableau."""
    b = np.asarray(tab.b, dtype=float)
    if tab.b_err_low is None:
        return [("b_hat", b - np.asarray(tab.b_err, dtype=float), tab.error_order)]
    order, order_low = EMBEDDED_ORDERS[tab.name]
    return [
        ("b_hat", b - np.asarray(tab.b_err, dtype=float), order),
        ("b_hat_low", b - np.asarray(tab.b_err_low, dtype=float), order_low),
    ]


def error_weights(tab) -> list:
    """(label, weights, order of the estimate's leading term minus one) of each error estimate."""
    if tab.b_err_low is None:
        return [("b_err", tab.b_err, tab.error_order)]
    order, order_low = EMBEDDED_ORDERS[tab.name]
    return [("b_err", tab.b_err, order), ("b_err_low", tab.b_err_low, order_low)]


# ---------------------------------------------------------------------------------------
# Rooted trees and order conditions
# ---------------------------------------------------------------------------------------
# A rooted tree is the sorted tuple of its children's trees; the single node is ().


def _canonical(children):
    return tuple(sorted(children))


def _graft(tree):
    """Every tree obtained from ``tree`` by attaching one new leaf to one of its nodes."""
    yield _canonical(tree + ((),))
    for i, child in enumerate(tree):
        for grown in _graft(child):
            yield _canonical(tree[:i] + (grown,) + tree[i + 1 :])


@lru_cache(maxsize=None)
def trees_of_order(n: int) -> tuple:
    """All rooted trees with n nodes (1, 1, 2, 4, 9, 20, 48, 115, 286, ... of them)."""
    if n == 1:
        return ((),)
    return tuple(sorted({grown for tree in trees_of_order(n - 1) for grown in _graft(tree)}))


@lru_cache(maxsize=None)
def tree_order(tree) -> int:
    return 1 + sum(tree_order(child) for child in tree)


@lru_cache(maxsize=None)
def density(tree) -> int:
    """gamma(t) = |t| * prod over the children of gamma(child)."""
    return tree_order(tree) * math.prod(density(child) for child in tree)


def trees_up_to(order: int):
    for n in range(1, order + 1):
        yield from trees_of_order(n)


def matrix(tab) -> np.ndarray:
    s = tab.stages
    A = np.zeros((s, s))
    for i in range(s):
        A[i, :i] = tab.row(i)
    return A


class StageWeights:
    """Psi(t), the stage vector of a tree: Psi(leaf) = 1, Psi([t1..tm]) = prod_k A Psi(t_k),
    so that the elementary weight of t for weights w is w . Psi(t)."""

    def __init__(self, A: np.ndarray):
        self.A = A
        self.memo = {}

    def __call__(self, tree) -> np.ndarray:
        v = self.memo.get(tree)
        if v is None:
            v = np.ones(self.A.shape[0])
            for child in tree:
                v = v * (self.A @ self(child))
            self.memo[tree] = v
        return v


def _tolerance(w: np.ndarray, psi: np.ndarray) -> float:
    # generous multiple of the roundoff of w . psi (tsit5's large coefficients cancel)
    return 1e-14 + 64 * EPS * float(np.abs(w) @ np.abs(psi))


def order_condition_failures(psi: StageWeights, w, order: int, theta: float = 1.0) -> list:
    """The trees with |t| <= order whose condition w . Psi(t) = theta^|t| / gamma(t) fails."""
    w = np.asarray(w, dtype=float)
    failures = []
    for tree in trees_up_to(order):
        p = psi(tree)
        residual = float(w @ p) - theta ** tree_order(tree) / density(tree)
        if abs(residual) > _tolerance(w, p):
            failures.append((tree, residual))
    return failures


def dense_weights(tab, theta: float) -> np.ndarray:
    """b_j(theta) of the dense output."""
    return np.array([sum(coef * theta ** (k + 1) for k, coef in enumerate(row)) for row in tab.dense])


def b_hat(tab) -> np.ndarray:
    return np.asarray(tab.b, dtype=float) - np.asarray(tab.b_err, dtype=float)


def fsal_structure(tab) -> bool:
    """Whether the last stage is f(t + h, y_new): c_s = 1, row s of A = b, b_s = 0."""
    return (
        tab.stages > 1
        and tab.c[-1] == 1.0
        and tuple(float(x) for x in tab.row(tab.stages - 1)) == tuple(float(x) for x in tab.b[:-1])
        and tab.b[-1] == 0.0
    )


def tableau_defects(tab, check_dense_theta=(0.1, 0.3, 0.5, 0.7, 0.9, 1.0)) -> list:
    """Every way in which ``tab`` fails its mathematics (empty list: it is consistent)."""
    defects = []
    A = matrix(tab)
    c = np.asarray(tab.c, dtype=float)
    scale = 1.0 + np.abs(A).sum(axis=1)
    bad = np.nonzero(np.abs(A.sum(axis=1) - c) > 8 * EPS * scale)[0]
    defects += [f"row sum: c[{i}] != sum_j a[{i}][j]" for i in bad]
    if c[0] != 0.0:
        defects.append("c[0] != 0 (explicit method)")
    psi = StageWeights(A)
    defects += [f"b: order condition {t} off by {r:.3g}" for t, r in order_condition_failures(psi, tab.b, tab.order)]
    if tab.adaptive:
        for label, weights, order in embedded_solutions(tab):
            defects += [
                f"{label}: order condition {t} off by {r:.3g}"
                for t, r in order_condition_failures(psi, weights, order)
            ]
    if tab.fsal != fsal_structure(tab):
        defects.append(f"fsal={tab.fsal} but the tableau structure says {fsal_structure(tab)}")
    if tab.dense is not None:
        d_order = DENSE_ORDER[tab.name]
        if np.max(np.abs(dense_weights(tab, 1.0) - np.asarray(tab.b, dtype=float))) > 64 * EPS * (
            1 + np.abs(np.asarray(tab.dense, dtype=float)).sum()
        ):
            defects.append("dense: b_j(1) != b_j")
        for theta in check_dense_theta:
            defects += [
                f"dense: order condition {t} at theta={theta} off by {r:.3g}"
                for t, r in order_condition_failures(psi, dense_weights(tab, theta), d_order, theta)
            ]
    return defects


# ---------------------------------------------------------------------------------------
# The tree machinery itself
# ---------------------------------------------------------------------------------------


def test_tree_counts_and_densities():
    # OEIS A000081
    assert [len(trees_of_order(n)) for n in range(1, 10)] == [1, 1, 2, 4, 9, 20, 48, 115, 286]
    assert sum(len(trees_of_order(n)) for n in range(1, 9)) == 200
    assert density(()) == 1
    assert density(((),)) == 2  # f'f
    assert density(((), ())) == 3  # f''(f, f)
    assert density((((),),)) == 6  # f'f'f
    assert density((((), ()),)) == 12  # f'f''(f,f)
    # the bushy tree of order n has gamma = n, the tall tree gamma = n!
    for n in range(1, 9):
        bushy = tuple(() for _ in range(n - 1))
        tall = ()
        for _ in range(n - 1):
            tall = (tall,)
        assert density(bushy) == n and density(tall) == math.factorial(n)


def test_exact_runge_kutta_matrix_satisfies_all_conditions():
    # the (implicit) 2-stage Gauss method has order 4, an independent check of the machinery:
    # its conditions hold for all trees of order <= 4 and fail at order 5
    r = math.sqrt(3) / 6
    A = np.array([[1 / 4, 1 / 4 - r], [1 / 4 + r, 1 / 4]])
    psi = StageWeights(A)
    assert order_condition_failures(psi, [0.5, 0.5], 4) == []
    assert order_condition_failures(psi, [0.5, 0.5], 5) != []


# ---------------------------------------------------------------------------------------
# Every tableau
# ---------------------------------------------------------------------------------------


def test_expected_tableaus_are_present():
    assert len(TABLEAUS) == len(ALL_TABLEAUS)  # unique names
    expected = {
        "euler": (1, None, False),
        "midpoint": (2, None, False),
        "rk4": (4, None, False),
        "adaptive_heun": (2, 1, False),
        "bosh3": (3, 2, True),
        "dopri5": (5, 4, True),
        "tsit5": (5, 4, True),
        "dopri8": (8, 7, True),  # DOP853: error_order 7 is its combined error norm's (see EMBEDDED_ORDERS)
        "rk8_13m": (8, 7, False),
    }
    assert set(expected) <= set(TABLEAUS)
    for name, (order, error_order, fsal) in expected.items():
        tab = TABLEAUS[name]
        assert (tab.order, tab.error_order, tab.fsal) == (order, error_order, fsal), name
        assert tab.adaptive == (error_order is not None)
        assert tab.description and tab.reference
    assert TABLEAUS["dopri8"].stages == 13 and TABLEAUS["rk8_13m"].stages == 13
    assert TABLEAUS["dopri5"].dense is not None
    # only DOP853 has a second error estimate
    assert [tab.name for tab in ALL_TABLEAUS if tab.b_err_low is not None] == ["dopri8"]
    # the torchdiffeq name of RK8(7)13M is said where users look for it
    assert "torchdiffeq calls this method dopri8" in TABLEAUS["rk8_13m"].description
    assert "rk8_13m" in TABLEAUS["dopri8"].description


def test_dop853_error_orders_are_consistent():
    """DOP853: estimates O(h^6) and O(h^4), combined O(h^8), hence error_order 7."""
    for name, (order, order_low) in EMBEDDED_ORDERS.items():
        tab = TABLEAUS[name]
        assert order > order_low
        assert 2 * (order + 1) - (order_low + 1) == tab.error_order + 1
        assert tab.b_err_low is not None


@pytest.mark.parametrize("tab", ALL_TABLEAUS, ids=lambda t: t.name)
def test_coefficients_are_floats(tab):
    values = [*tab.c, *tab.b, *(x for row in tab.A for x in row)]
    values += list(tab.b_err or ()) + list(tab.b_err_low or ()) + [x for row in (tab.dense or ()) for x in row]
    assert all(type(x) is float for x in values)
    assert all(math.isfinite(x) for x in values)


@pytest.mark.parametrize("tab", ALL_TABLEAUS, ids=lambda t: t.name)
def test_tableau_mathematics(tab):
    assert tableau_defects(tab) == []


@pytest.mark.parametrize("tab", ALL_TABLEAUS, ids=lambda t: t.name)
def test_declared_orders_are_exact(tab):
    """The method is not of one order higher than declared (nor is the embedded one)."""
    psi = StageWeights(matrix(tab))
    assert order_condition_failures(psi, tab.b, tab.order + 1) != []
    if tab.adaptive:
        for label, weights, order in embedded_solutions(tab):
            assert order_condition_failures(psi, weights, order + 1) != [], label
        for label, weights, _ in error_weights(tab):
            assert abs(sum(weights)) < 1e-14, label  # the estimate vanishes on y' = const


# One entry of each published b_hat, written out independently of the module.  The order
# conditions fix b_hat only up to the family b - t * b_err (any t gives an embedded solution of
# the same order), so they cannot see a scaled or sign-flipped b_err; this pins it down.
PUBLISHED_B_HAT = {
    "adaptive_heun": {0: 1.0, 1: 0.0},  # Euler
    "bosh3": {0: 7 / 24, 3: 1 / 8},
    "dopri5": {0: 5179 / 57600, 6: 1 / 40},
    "tsit5": {1: 0.009183565540343254, 6: 1 / 66},
    "rk8_13m": {0: 13451932 / 455176623, 11: 2 / 45, 12: 0.0},
}
# DOP853 publishes its error weights "er" (b_err) and the third-order "bhh" (b - b_err_low)
PUBLISHED_DOP853 = {
    "dopri8": {
        "b_err": {0: 0.1312004499419488073250102996e-1, 5: -0.1225156446376204440720569753e1, 12: 0.0},
        "b_hat_low": {
            0: 0.244094488188976377952755905512,
            8: 0.733846688281611857341361741547,
            11: 0.220588235294117647058823529412e-1,
            12: 0.0,
        },
    }
}


def matches_published_embedded_weight(tab) -> bool:
    if tab.b_err_low is None:
        bh = b_hat(tab)
        return all(abs(bh[j] - value) <= 1e-15 for j, value in PUBLISHED_B_HAT[tab.name].items())
    published = PUBLISHED_DOP853[tab.name]
    low = np.asarray(tab.b, dtype=float) - np.asarray(tab.b_err_low, dtype=float)
    return all(abs(tab.b_err[j] - v) <= 1e-15 for j, v in published["b_err"].items()) and all(
        abs(low[j] - v) <= 1e-15 for j, v in published["b_hat_low"].items()
    )


@pytest.mark.parametrize("tab", ADAPTIVE, ids=lambda t: t.name)
def test_embedded_weights_are_the_published_ones(tab):
    assert matches_published_embedded_weight(tab)


@pytest.mark.parametrize("tab", ADAPTIVE, ids=lambda t: t.name)
def test_error_weights_are_nonzero_where_they_matter(tab):
    # an embedded pair whose b_err is zero everywhere would never reject a step
    for label, weights, _ in error_weights(tab):
        assert max(abs(x) for x in weights) > 1e-4, label


# ---------------------------------------------------------------------------------------
# Numerics: observed orders with a tiny RK loop
# ---------------------------------------------------------------------------------------

# Scalar test problems (f(t, y), y0, t_end, exact y(t_end) or None), with polynomial right-hand
# sides so that they can be integrated in 40-digit decimal arithmetic: y' = y, the logistic
# equation (nonlinear, autonomous) and y' = t - y^3 (nonlinear, non-autonomous).
PROBLEMS = {
    "linear": (lambda t, y: y, Decimal(1), Decimal(1), math.e),
    "logistic": (lambda t, y: y * (1 - y), Decimal("0.5"), Decimal(2), 1.0 / (1.0 + math.exp(-2.0))),
    "cubic": (lambda t, y: t - y * y * y, Decimal(1), Decimal(1), None),
}

# Differences |y_N - y_2N| (N steps over the interval) are used below this level only: the
# double-precision coefficients satisfy the order conditions to ~1e-17, which puts a floor of
# about 1e-18 under these differences (a constant error term cancels in them).
SMALLEST_DIFFERENCE = 1e-16
DECIMAL_DIGITS = 40


def rk_solve(tab, weights, f, y0, t_end, n):
    """n fixed steps of the explicit RK method (A, c, weights) in decimal arithmetic."""
    c = [Decimal(x) for x in tab.c]
    rows = [[(j, Decimal(a)) for j, a in enumerate(tab.row(i)) if a] for i in range(tab.stages)]
    w = [(j, Decimal(float(x))) for j, x in enumerate(weights) if x]
    h = Decimal(t_end) / n
    y = Decimal(y0)
    for step in range(n):
        t = step * h
        ks = []
        for i in range(tab.stages):
            ks.append(f(t + c[i] * h, y + h * sum((a * ks[j] for j, a in rows[i]), Decimal(0))))
        y = y + h * sum((a * ks[j] for j, a in w), Decimal(0))
    return y


def observed_order(tab, weights, problem, max_steps=1024):
    """log2(d(N) / d(2N)) with d(N) = |y_N - y_2N|, at the finest N with d(2N) above the floor.

    Returns (slope, differences, finest solution).
    """
    f, y0, t_end, _ = PROBLEMS[problem]
    with localcontext() as ctx:
        ctx.prec = DECIMAL_DIGITS
        ys = {1: rk_solve(tab, weights, f, y0, t_end, 1)}
        diffs = {}
        n = 1
        while n <= max_steps:
            ys[2 * n] = rk_solve(tab, weights, f, y0, t_end, 2 * n)
            diffs[n] = float(abs(ys[n] - ys[2 * n]))
            if diffs[n] < SMALLEST_DIFFERENCE:
                break
            n *= 2
    steps = sorted(diffs)
    pairs = [(a, b) for a, b in zip(steps, steps[1:]) if diffs[b] >= SMALLEST_DIFFERENCE]
    assert pairs, f"{tab.name}/{problem}: differences {diffs}"
    a, b = pairs[-1]
    return math.log2(diffs[a] / diffs[b]), diffs, float(ys[max(ys)])


# Documented exceptions to "observed slope within +-0.3 of the order": (tableau, order of
# the solution checked, problem) -> the slope's upper bound above the order.  The order
# conditions themselves are checked exactly above; these are problems on which a method's
# leading error term happens to be tiny, so a higher-order term dominates down to the floor.
SLOPE_EXCEPTIONS = {
    # On y' = y only the tall trees matter (the stability function R(z)); RK8(7)13M's
    # coefficient of z^9 in R(z) equals 1/9! to 0.13%, so its error on y' = y is dominated by
    # the z^10 term down to differences of ~1e-19: the slope lies between 8 and 9.
    ("rk8_13m", 8, "linear"): 1.3,
    # DOP853 (error constants small by design) on the logistic equation: its local error there
    # falls like h^10 for h = 1/4 .. 1/16, so the global differences fall like h^10.5 .. h^9.2
    # (with the 30-digit published coefficients in 60-digit arithmetic the slope stays above 9
    # down to 1e-22): between 8 and 9.5.
    ("dopri8", 8, "logistic"): 1.5,
    # ... and its fifth-order embedded solution b - b_err there: slopes 5.6 .. 5.9 (its local
    # error is O(h^6) as it should be, checked below; the global h^5 term nearly cancels).
    ("dopri8", 5, "logistic"): 1.0,
}


def expected_slope_range(tab, order, problem):
    """Observed order within +-0.3 of the order, with the documented SLOPE_EXCEPTIONS."""
    return order - 0.3, order + SLOPE_EXCEPTIONS.get((tab.name, order, problem), 0.3)


def _check_observed_order(tab, weights, order, problem):
    slope, diffs, y = observed_order(tab, weights, problem)
    lo, hi = expected_slope_range(tab, order, problem)
    assert lo <= slope <= hi, (slope, diffs)
    exact = PROBLEMS[problem][3]
    if exact is not None:  # converging to the right solution: the finest error ~ the last difference
        assert abs(y - exact) <= 2 * min(diffs.values()) + 1e-13, (y, exact)


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("tab", ALL_TABLEAUS, ids=lambda t: t.name)
def test_observed_order_of_solution(tab, problem):
    _check_observed_order(tab, tab.b, tab.order, problem)


EMBEDDED = [
    pytest.param(tab, k, id=f"{tab.name}-{label}")
    for tab in ADAPTIVE
    for k, (label, _, _) in enumerate(embedded_solutions(tab))
]


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("tab,k", EMBEDDED)
def test_observed_order_of_embedded_solution(tab, k, problem):
    _, weights, order = embedded_solutions(tab)[k]
    _check_observed_order(tab, weights, order, problem)


# Exact solutions through (0, y0) of the decimal problems, where there is one in closed form.
DECIMAL_SOLUTIONS = {
    "linear": lambda t: t.exp(),
    "logistic": lambda t: 1 / (1 + (-t).exp()),
}


def rk_one_step(tab, f, t, y, h):
    """The stages of one step from (t, y) in decimal arithmetic."""
    ks = []
    for i in range(tab.stages):
        row = tab.row(i)
        incr = sum((Decimal(row[j]) * ks[j] for j in range(i) if row[j]), Decimal(0))
        ks.append(f(t + Decimal(tab.c[i]) * h, y + h * incr))
    return ks


def _slope_at_finest(est: dict, floor: float = 1e-16) -> float:
    """log2 of the ratio of the last two estimates (h halving) that are above the floor."""
    pairs = [(a, a + 1) for a in range(len(est) - 1) if abs(est[a + 1]) >= floor]
    a, b = pairs[-1]
    return math.log2(abs(est[a] / est[b]))


def local_estimates(tab, problem, steps=12):
    """One step of each size h = 2^-k from t0 = 1/2 in decimal arithmetic: per error estimate,
    {k: h * sum_j w_j k_j}, and per embedded solution {k: its actual local error} (when the
    problem has a closed-form solution)."""
    f, y0, _, _ = PROBLEMS[problem]
    exact = DECIMAL_SOLUTIONS.get(problem)
    estimates = [(label, [Decimal(x) for x in w]) for label, w, _ in error_weights(tab)]
    embedded = [[Decimal(float(x)) for x in w] for _, w, _ in embedded_solutions(tab)]
    est = {label: {} for label, _ in estimates}
    actual = {label: {} for label, _ in estimates}
    with localcontext() as ctx:
        ctx.prec = DECIMAL_DIGITS
        # start off the initial point (y = 1/2 is a degenerate point of the logistic equation)
        t0 = Decimal("0.5")
        y = exact(t0) if exact is not None else y0
        for k in range(steps):
            h = Decimal(1) / 2**k
            ks = rk_one_step(tab, f, t0, y, h)
            for (label, w), bh in zip(estimates, embedded):
                est[label][k] = float(h * sum(e * kj for e, kj in zip(w, ks)))
                if exact is not None:
                    actual[label][k] = float(exact(t0 + h) - (y + h * sum(x * kj for x, kj in zip(bh, ks))))
            if abs(est["b_err"][k]) < 1e-16:
                break
    return est, actual


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("tab", ADAPTIVE, ids=lambda t: t.name)
def test_local_error_estimate_scales_like_embedded_order(tab, problem):
    """Each estimate h * sum w_j k_j over one step is O(h^(q + 1)) with q the order of its
    embedded solution, and it is that solution's local error to leading order (w = b - b_hat,
    y_new is the more accurate one).  For DOP853 (b_err, b_err_low: q = 5 and 3) the combined
    error norm e^2 / sqrt(e^2 + 0.01 e_low^2) is O(h^(error_order + 1)) = O(h^8)."""
    est, actual = local_estimates(tab, problem)
    for label, _, order in error_weights(tab):
        if actual[label]:
            finest = max(k for k in est[label] if abs(est[label][k]) >= 1e-13)
            assert est[label][finest] == pytest.approx(actual[label][finest], rel=0.1), (label, est, actual)
        slope = _slope_at_finest(est[label])
        assert abs(slope - (order + 1)) <= 0.3, (label, slope, est[label])
    if tab.b_err_low is not None:
        # scalar problem: the RMS norms are absolute values (scale 1)
        combined = {
            k: e * e / math.sqrt(e * e + 0.01 * est["b_err_low"][k] ** 2) for k, e in est["b_err"].items()
        }
        slope = _slope_at_finest({k: v for k, v in combined.items() if abs(est["b_err"][k]) >= 1e-16}, floor=0.0)
        assert abs(slope - (tab.error_order + 1)) <= 0.3, (slope, combined)
        # the combination is below the fifth-order estimate, and approaches 10 e^2 / e_low
        k = max(combined)
        assert combined[k] <= abs(est["b_err"][k])
        assert combined[k] == pytest.approx(10 * est["b_err"][k] ** 2 / abs(est["b_err_low"][k]), rel=1e-3)


def rk_stages(tab, f, t, y, h):
    """The stages k_i of one step, in floating point."""
    ks = []
    for i in range(tab.stages):
        row = tab.row(i)
        ks.append(f(t + tab.c[i] * h, y + h * sum(row[j] * ks[j] for j in range(i))))
    return ks


# One-step problems in floating point: (f(t, y), exact solution y(t)).
SOLUTIONS = {
    "linear": (lambda t, y: y, math.exp),
    "logistic": (lambda t, y: y * (1.0 - y), lambda t: 1.0 / (1.0 + math.exp(-t))),
    "riccati": (lambda t, y: 1.0 + y * y, math.tan),
    "sine": (lambda t, y: y * math.cos(t), lambda t: math.exp(math.sin(t))),
}


# ---------------------------------------------------------------------------------------
# Dense output
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("tab", DENSE, ids=lambda t: t.name)
def test_dense_output_matches_endpoints(tab):
    np.testing.assert_allclose(dense_weights(tab, 1.0), tab.b, rtol=0, atol=1e-14)
    np.testing.assert_allclose(dense_weights(tab, 0.0), 0.0, atol=0)
    # the derivative at theta = 0 is k1: the interpolant is C1 across steps
    assert [row[0] for row in tab.dense] == [1.0] + [0.0] * (tab.stages - 1)
    assert [sum(row) for row in tab.dense] == pytest.approx(list(tab.b), abs=1e-14)


@pytest.mark.parametrize("tab", DENSE, ids=lambda t: t.name)
def test_dense_output_is_exact_for_polynomials(tab):
    """y' = p(t) with deg p <= dense order - 1 is interpolated exactly over a step."""
    d_order = DENSE_ORDER[tab.name]
    rng = np.random.default_rng(0)
    coef = rng.normal(size=d_order)  # p of degree d_order - 1
    t0, h = 0.3, 0.7

    def interpolation_errors(p):
        y_exact = p.integ()
        ks = np.array(rk_stages(tab, lambda t, y: p(t), t0, y_exact(t0), h))
        return [
            abs(y_exact(t0) + h * float(dense_weights(tab, th) @ ks) - y_exact(t0 + th * h))
            for th in np.linspace(0.0, 1.0, 11)
        ]

    assert max(interpolation_errors(np.polynomial.Polynomial(coef))) < 1e-13
    # one degree more is not exact: the dense order is not understated
    assert max(interpolation_errors(np.polynomial.Polynomial(np.r_[coef, 1.0]))) > 1e-6


@pytest.mark.parametrize("problem", sorted(SOLUTIONS))
@pytest.mark.parametrize("tab", DENSE, ids=lambda t: t.name)
def test_dense_output_local_order(tab, problem):
    """Over one step from the exact solution, the interpolant's error is O(h^(p+1)) (p = 4 for
    dopri5's continuous extension), at interior points of the step."""
    d_order = DENSE_ORDER[tab.name]
    f, exact = SOLUTIONS[problem]
    t0 = 0.3
    hs = [0.2 / 2**k for k in range(5)]
    errs = []
    for h in hs:
        ks = np.array(rk_stages(tab, f, t0, exact(t0), h))
        errs.append(
            max(
                abs(exact(t0) + h * float(dense_weights(tab, th) @ ks) - exact(t0 + th * h))
                for th in (0.25, 0.5, 0.75)
            )
        )
    slope = math.log2(errs[-2] / errs[-1])
    assert abs(slope - (d_order + 1)) <= 0.3, (slope, errs)


@pytest.mark.parametrize("tab", DENSE, ids=lambda t: t.name)
def test_dense_output_global_accuracy(tab):
    """Interpolating a whole fixed-step solution of y' = y(1-y): the dense error is of the
    size of the step error, and shrinks like h^(p+1) with the dense order p."""
    f, exact = SOLUTIONS["logistic"]
    errs = []
    for n in (8, 16):
        h, y, worst = 1.0 / n, exact(0.0), 0.0
        for step in range(n):
            t = step * h
            ks = np.array(rk_stages(tab, f, t, y, h))
            for th in (0.2, 0.5, 0.8):
                worst = max(worst, abs(y + h * float(dense_weights(tab, th) @ ks) - exact(t + th * h)))
            y = y + h * float(np.asarray(tab.b) @ ks)
        errs.append(worst)
    assert errs[1] < 1e-7
    assert abs(math.log2(errs[0] / errs[1]) - (DENSE_ORDER[tab.name] + 1)) <= 0.3, errs


# ---------------------------------------------------------------------------------------
# The checker catches wrong coefficients
# ---------------------------------------------------------------------------------------


def _replace_entry(tab, field: str, index, value: float):
    """A copy of the (frozen) ``tab`` with one coefficient replaced."""
    if field in ("c", "b", "b_err", "b_err_low"):
        seq = list(getattr(tab, field))
        seq[index] = value
        return dataclasses.replace(tab, **{field: tuple(seq)})
    i, j = index
    rows = [list(r) for r in getattr(tab, field)]
    if field == "A":
        rows[i] = list(tab.row(i))
    rows[i][j] = value
    return dataclasses.replace(tab, **{field: tuple(tuple(r) for r in rows)})


def _positions(tab):
    for k in range(tab.stages):
        yield "c", k
        yield "b", k
        if tab.adaptive:
            yield "b_err", k
        if tab.b_err_low is not None:
            yield "b_err_low", k
    for i in range(tab.stages):
        for j in range(i):
            yield "A", (i, j)
    if tab.dense is not None:
        for i, row in enumerate(tab.dense):
            for j in range(len(row)):
                yield "dense", (i, j)


def _value(tab, field, index):
    if field == "A":
        return tab.row(index[0])[index[1]]
    if field == "dense":
        return tab.dense[index[0]][index[1]]
    return getattr(tab, field)[index]


# a small relative error, such as a mistyped 9th significant digit
PERTURBATION = 1e-8


def defects_of(make, **kwargs) -> list:
    """tableau_defects of the tableau ``make()`` builds, or ["refused: ..."] when Tableau itself
    refuses it (its construction checks: row sums, sum b = 1, error weights, dense, FSAL)."""
    try:
        tab = make()
    except InvalidTableauError as exc:
        return [f"refused: {exc}"]
    return tableau_defects(tab, **kwargs)


@pytest.mark.parametrize("tab", ALL_TABLEAUS, ids=lambda t: t.name)
def test_any_single_wrong_coefficient_is_detected(tab):
    """By the construction checks or, where those cannot see it, by the order conditions."""
    missed = []
    for field, index in _positions(tab):
        x = float(_value(tab, field, index))
        make = functools.partial(_replace_entry, tab, field, index, x + PERTURBATION * max(1.0, abs(x)))
        if not defects_of(make, check_dense_theta=(0.3, 0.7)):
            missed.append((field, index))
    assert missed == []


@pytest.mark.parametrize("tab", ALL_TABLEAUS, ids=lambda t: t.name)
def test_wrong_stage_coefficient_is_caught_by_order_conditions(tab):
    """Changing a_ij together with c_i (so the row sum still holds) must still fail: through an
    order condition, the embedded order conditions, or the FSAL structure."""
    missed = []
    for i in range(1, tab.stages):
        for j in range(i):
            x = tab.row(i)[j]
            delta = PERTURBATION * max(1.0, abs(x))
            rows = [list(tab.row(k)) for k in range(tab.stages)]
            rows[i][j] = x + delta
            c = list(tab.c)
            c[i] = c[i] + delta
            make = functools.partial(dataclasses.replace, tab, A=tuple(map(tuple, rows)), c=tuple(c))
            defects = defects_of(make, check_dense_theta=(0.3, 0.7))
            if not defects or any(d.startswith("row sum") or "of A sums to" in d for d in defects):
                missed.append(((i, j), defects[:1]))
    assert missed == []


def test_checker_flags_a_known_wrong_tableau():
    dopri5 = TABLEAUS["dopri5"]
    # a classic typo: 500/1113 -> 500/1131 in b: refused when built (sum b != 1)
    with pytest.raises(InvalidTableauError, match=r"tableau 'dopri5': the weights b sum to 0\.9928.*not 1"):
        _replace_entry(dopri5, "b", 2, 500 / 1131)
    # flipping the sign convention of b_err (b_hat - b instead of b - b_hat): 2 b - b_hat is
    # another fourth-order solution, so only the published b_hat tells the two apart
    flipped = dataclasses.replace(dopri5, b_err=tuple(-x for x in dopri5.b_err))
    assert tableau_defects(flipped) == []
    assert not matches_published_embedded_weight(flipped)
    # claiming a fixed-step method is FSAL: refused when built
    with pytest.raises(InvalidTableauError, match="declared fsal=True, but its coefficients say False"):
        dataclasses.replace(TABLEAUS["rk4"], fsal=True)
    # claiming one order too many
    assert tableau_defects(dataclasses.replace(TABLEAUS["dopri8"], order=9))
    assert tableau_defects(dataclasses.replace(TABLEAUS["rk8_13m"], order=9))


def test_checker_flags_wrong_dop853_error_weights():
    dop853 = TABLEAUS["dopri8"]
    assert tableau_defects(dop853) == [] and matches_published_embedded_weight(dop853)
    # the two estimates swapped: b - b_err is then only third order
    swapped = dataclasses.replace(dop853, b_err=dop853.b_err_low, b_err_low=dop853.b_err)
    assert any(d.startswith("b_hat: order condition") for d in tableau_defects(swapped))
    # without b_err_low, b - b_err would have to be of order error_order = 7: it is of order 5
    assert tableau_defects(dataclasses.replace(dop853, b_err_low=None)) != []
    # sign flips keep the order conditions (b + E is as good an embedded solution as b - E):
    # only the published weights tell them apart
    for field in ("b_err", "b_err_low"):
        flipped = dataclasses.replace(dop853, **{field: tuple(-x for x in getattr(dop853, field))})
        assert tableau_defects(flipped) == []
        assert not matches_published_embedded_weight(flipped)


def test_tableau_validates_b_err_low():
    dop853 = TABLEAUS["dopri8"]
    with pytest.raises(ValueError, match="b_err_low needs 13 entries"):
        dataclasses.replace(dop853, b_err_low=dop853.b_err_low[:-1])
    with pytest.raises(ValueError, match="b_err_low needs b_err"):
        dataclasses.replace(dop853, b_err=None, b_err_low=dop853.b_err_low)
    with pytest.raises(ValueError, match="non-finite"):
        dataclasses.replace(dop853, b_err_low=(float("nan"),) + dop853.b_err_low[1:])


HEUN = dict(name="heun", c=(0.0, 1.0), A=((), (1.0,)), b=(0.5, 0.5), order=2, b_err=(-0.5, 0.5), error_order=1)


@pytest.mark.parametrize("change,needle", [
    ({"c": (0.0, 0.9)}, "row 1 of A sums to 1.0, not c[1] = 0.9"),
    ({"b": (0.5, 0.49)}, "the weights b sum to 0.99"),
    ({"b_err": (-0.5, 0.51)}, "the error weights b_err sum to"),
    ({"A": ((), (1.0, 0.5))}, "row 1 of A is not strictly lower triangular"),
    ({"b": (0.5, float("nan"))}, "non-finite coefficient"),
    ({"dense": ((1.0, -0.5), (0.0, 0.6))}, "dense row 1 gives b_1(1) = 0.6, not b[1] = 0.5"),
    ({"fsal": True}, "declared fsal=True, but its coefficients say False"),
])
def test_tableau_refuses_inconsistent_coefficients(change, needle):
    """Each construction check, on Heun's method with one thing wrong; the message names the
    tableau and what is wrong, on one line."""
    with pytest.raises(InvalidTableauError) as exc:
        Tableau(**{**HEUN, **change})
    assert str(exc.value).startswith("tableau 'heun': ") and needle in str(exc.value)
    assert "\n" not in str(exc.value)


def test_fsal_and_stage_count_are_derived():
    heun = Tableau(**HEUN)
    assert heun.stages == 2 and heun.fsal is False
    # Heun-Euler with a third stage f(t + h, y_new): FSAL follows from the coefficients
    fsal = Tableau(name="heun3", c=(0.0, 1.0, 1.0), A=((), (1.0,), (0.5, 0.5)), b=(0.5, 0.5, 0.0), order=2,
                   b_err=(-0.5, 0.5, 0.0), error_order=1)
    assert fsal.stages == 3 and fsal.fsal is True
    assert Tableau(**{**HEUN, "fsal": False}).fsal is False  # a declaration that agrees is accepted
    assert {t.name for t in ALL_TABLEAUS if t.fsal} == {"bosh3", "dopri5", "tsit5", "dopri8"}
