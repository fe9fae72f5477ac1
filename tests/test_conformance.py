"""The conformance kit (odebench.testing, ``odebench check``): every built-in backend passes it,
and a backend whose gradients are a few percent off is caught, by name of the check."""

import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from odebench.cli import main  # noqa: E402
from odebench.plugins import make_registry  # noqa: E402
from odebench.testing import assert_conforms, check_backend  # noqa: E402
from odebench.testing.cases import BAD_INPUTS  # noqa: E402

TORCH = ("torch-backprop", "torch-adjoint", "torch-adjoint-seminorm")
JAX = ("jax-backprop", "jax-adjoint", "jax-adjoint-seminorm")


@pytest.mark.parametrize("name", TORCH + JAX)
def test_every_builtin_backend_conforms(name):
    if name.startswith("jax"):
        pytest.importorskip("jax")
    results = assert_conforms(name, registry=make_registry())
    by_name = {r.name: r for r in results}
    assert all(f"bad input: {case}" in by_name for case, _, _ in BAD_INPUTS)
    assert by_name["accuracy[dopri5]"].status == "pass" and by_name["NFE forward = evaluations counted"].status == "pass"
    assert by_name["gradients vs finite differences"].status == "pass"
    if "adjoint" in name and name.startswith("torch"):
        assert by_name["memory flat in NFE"].status == "pass"
    if name.startswith("jax"):
        assert by_name["gradients through a closure"].status == "pass"


WRONG = '''
import torch
from odebench.hookspecs import hookimpl
from odebench.specs import BackendSpec


class _Off(torch.autograd.Function):
    """Identity forward; the gradient 3 % too large."""

    @staticmethod
    def forward(ctx, y):
        return y.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * 1.03


class Wrong:
    framework, method = "torch", "backprop"

    def __init__(self):
        import odebench
        self.inner = odebench.backend("torch-backprop")

    def odeint(self, func, y0, t, args=None, **kwargs):
        ys = self.inner.odeint(func, y0, t, args, **kwargs)
        self.last_stats = self.inner.last_stats
        return tuple(_Off.apply(y) for y in ys) if isinstance(ys, tuple) else _Off.apply(ys)


@hookimpl
def odebench_register_backends(register):
    register(BackendSpec(name="torch-wrong", framework="torch", method="backprop", load=Wrong,
                         description="correct values, gradients 3 % off"))
'''


@pytest.fixture
def wrong_plugin(tmp_path, monkeypatch):
    (tmp_path / "wrong_backend_plugin.py").write_text(WRONG)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "wrong_backend_plugin"


def test_a_backend_with_wrong_gradients_is_caught(wrong_plugin):
    result = CliRunner().invoke(main, ["check", "torch-wrong", "-p", wrong_plugin, "--solver", "dopri5,rk4"])
    assert result.exit_code == 1, result.output
    for line in ("FAIL  gradients vs finite differences", "FAIL  gradients vs torch-backprop[float64, 4 output times]",
                 "PASS  accuracy[dopri5]", "PASS  bad input: output shape"):  # the values are right
        assert line in result.output, result.output
    assert "relative error 3.0e-02" in result.output  # the figure that decided it
    assert "torch-wrong: 23 passed, 5 failed, 2 skipped" in result.output
    with pytest.raises(AssertionError, match="gradients vs finite differences"):
        assert_conforms("torch-wrong", plugins=[wrong_plugin], solvers=["rk4"])


def test_check_reports_and_exit_codes():
    ok = CliRunner().invoke(main, ["check", "torch-backprop", "--solver", "rk4"])
    assert ok.exit_code == 0, ok.output
    assert "PASS  accuracy[rk4]" in ok.output and "torch-backprop: " in ok.output
    for args, needle in ((["check", "torch-nope"], "unknown backend 'torch-nope'"),
                         (["check", "torch-backprop", "--solver", "rk45"], "unknown solver 'rk45'")):
        bad = CliRunner().invoke(main, args)
        assert bad.exit_code == 2 and needle in bad.output and len(bad.output.strip().splitlines()) == 1


def test_a_check_that_raises_fails_with_the_exception():
    results = check_backend("torch-backprop", registry=make_registry(), solvers=["dopri5"])
    assert all(r.status in ("pass", "skip") for r in results)
    assert len({r.name for r in results}) == len(results)  # one line per check
