"""The backend conformance kit: one contract for every backend, from ``odebench check BACKEND``
or from a plugin author's own tests:

    from odebench.testing import assert_conforms

    def test_my_backend_conforms():
        assert_conforms("my-backend", plugins=["my_plugin"])

Checks (each prints the figure that decided it): accuracy on closed-form problems for the
solvers the backend runs; gradients against finite differences and against the reference
backend of its framework (y0, parameters, tuple states, several output times, float32 and
float64); exact NFE against an independent count in the dynamics; the errors odebench promises
for bad input; gradients through closures (JAX); the memory claim of an adjoint (flat in NFE).
"""

from __future__ import annotations

from typing import Iterable, Optional

from .checks import (
    CheckResult,
    _guarded,
    check_accuracy,
    check_bad_inputs,
    check_closures,
    check_gradients_fd,
    check_gradients_reference,
    check_memory,
    check_nfe,
)

DEFAULT_SOLVERS = ("dopri5", "tsit5", "bosh3", "rk4")

__all__ = ["CheckResult", "check_backend", "assert_conforms", "DEFAULT_SOLVERS"]


def check_backend(name: str, *, registry=None, plugins: Iterable[str] = (),
                  solvers: Optional[Iterable[str]] = None) -> list[CheckResult]:
    """Run every check against the backend ``name``; returns one CheckResult per check."""
    if registry is None:
        from ..plugins import make_registry

        registry = make_registry(plugins)
    spec = registry.get("backend", name).spec
    backend = registry.backend(name)
    adapter = registry.runtime(spec.framework).conformance(registry)
    runs = [s for s in (solvers or DEFAULT_SOLVERS) if adapter.supports(backend, s)]
    checks = [
        ("accuracy", lambda: check_accuracy(adapter, backend, runs)),
        ("gradients vs finite differences", lambda: check_gradients_fd(adapter, backend, runs)),
        ("gradients vs reference", lambda: check_gradients_reference(adapter, backend, name)),
        ("NFE", lambda: check_nfe(adapter, backend)),
        ("bad input", lambda: check_bad_inputs(adapter, backend)),
        ("gradients through a closure", lambda: check_closures(adapter, backend)),
        ("memory flat in NFE", lambda: check_memory(adapter, backend, spec.method)),
    ]
    return [result for label, run in checks for result in _guarded(label, run)]


def assert_conforms(name: str, **kwargs) -> list[CheckResult]:
    """check_backend, raising AssertionError that lists every failed check (for pytest)."""
    results = check_backend(name, **kwargs)
    failed = [r for r in results if r.status == "fail"]
    if failed:
        raise AssertionError(f"backend {name!r} fails {len(failed)} check(s):\n" + "\n".join(r.line() for r in failed))
    return results
