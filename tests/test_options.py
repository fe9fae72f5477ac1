"""Solver options, shared by both frameworks (odebench.solve.options): defaults, the adjoint's own
first-step default ("warm"), and one-line errors naming what is allowed.  No framework needed."""

from __future__ import annotations

import pytest

from odebench.errors import InvalidInputError
from odebench.solve.options import WARM, resolve_adjoint_options, resolve_options
from odebench.plugins import make_registry

REG = make_registry()
DOPRI5 = REG.solver("dopri5")
RK4 = REG.solver("rk4")


def test_forward_defaults_and_numbers_become_floats():
    opts = resolve_options(DOPRI5, {"first_step": 1, "safety": 1})
    assert opts == {"first_step": 1.0, "safety": 1.0, "ifactor": 10.0, "dfactor": 0.2, "max_steps": 10_000,
                    "step_to_outputs": False}  # dopri5 interpolates between step ends by default
    assert resolve_options(REG.solver("dopri8"), None)["step_to_outputs"] is True  # a cubic would spoil it
    assert resolve_options(DOPRI5, {"step_to_outputs": "true"})["step_to_outputs"] is True
    with pytest.raises(InvalidInputError, match="option step_to_outputs must be true or false, got 'maybe'"):
        resolve_options(DOPRI5, {"step_to_outputs": "maybe"})
    assert resolve_options(DOPRI5, None)["first_step"] is None
    assert resolve_options(DOPRI5, None, max_steps_default=4096)["max_steps"] == 4096


def test_warm_is_an_adjoint_option_only():
    with pytest.raises(InvalidInputError, match=r"first_step must be None or a positive number, got 'warm'"):
        resolve_options(DOPRI5, {"first_step": WARM})
    assert resolve_options(DOPRI5, {"first_step": WARM}, adjoint=True)["first_step"] == WARM


def test_adjoint_options_default_to_the_forward_ones_with_a_warm_first_step():
    forward = resolve_options(DOPRI5, {"first_step": 0.25, "safety": 0.8, "max_steps": 50})
    backward = resolve_adjoint_options(DOPRI5, forward, None)
    assert backward == {**forward, "first_step": WARM}


@pytest.mark.parametrize("given, expected", [({}, WARM), ({"first_step": None}, None), ({"first_step": 0.1}, 0.1),
                                             ({"first_step": "warm"}, WARM)])
def test_adjoint_first_step_values(given, expected):
    forward = resolve_options(DOPRI5, None)
    assert resolve_adjoint_options(DOPRI5, forward, given)["first_step"] == expected


@pytest.mark.parametrize("bad", ["cold", -1.0, 0.0, float("nan"), [0.1]])
def test_bad_adjoint_first_step_says_what_is_allowed(bad):
    forward = resolve_options(DOPRI5, None)
    with pytest.raises(InvalidInputError, match=r"first_step must be None, 'warm' or a positive number, got"):
        resolve_adjoint_options(DOPRI5, forward, {"first_step": bad})


def test_fixed_step_solvers_have_no_first_step():
    forward = resolve_options(RK4, {"step_size": 0.1})
    assert resolve_adjoint_options(RK4, forward, None) == {"step_size": 0.1, "max_steps": 1_000_000}
    with pytest.raises(InvalidInputError, match=r"unknown option\(s\) first_step for fixed-step solver 'rk4'; allowed"):
        resolve_adjoint_options(RK4, forward, {"step_size": 0.1, "first_step": WARM})


@pytest.mark.parametrize("bad", [0, -3, True, 2.5, "10"])
def test_max_steps_must_be_a_positive_integer(bad):
    with pytest.raises(InvalidInputError, match="max_steps must be a positive integer"):
        resolve_options(DOPRI5, {"max_steps": bad})
