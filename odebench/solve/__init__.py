"""The framework-free front end of every solve.

Input checks and their messages (``.checks``), solver options (``.options``), the
setup a backend fixes before it runs (``.setup``), a tableau's stage plan (``.plan``),
the error norms' layout (``.norms``) and how a solve ends (``.status``).  The torch and
JAX integrators keep only their framework's arithmetic.
"""

from .checks import check_outputs, check_state, check_times, check_tolerance, parse_bool
from .norms import adjoint_norm_slices, dop853_combination, slices_of
from .options import WARM, resolve_adjoint_options, resolve_options
from .plan import StagePlan, stage_plan
from .setup import GradientBackend, SolveSetup
from .status import Status, error_for

__all__ = [
    "check_outputs", "check_state", "check_times", "check_tolerance", "parse_bool",
    "adjoint_norm_slices", "dop853_combination", "slices_of",
    "WARM", "resolve_adjoint_options", "resolve_options",
    "StagePlan", "stage_plan", "GradientBackend", "SolveSetup", "Status", "error_for",
]
