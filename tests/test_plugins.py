"""The plugin host: isolation from frameworks, third-party plugins, duplicates, failures, lookups."""

import json
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

import odebench
from odebench.cli import main
from odebench.errors import DuplicateNameError, MissingDependencyError, PluginLoadError, UnknownNameError
from odebench.plugins import make_registry

RALSTON_PLUGIN = '''
from odebench.hookspecs import hookimpl
from odebench.specs import Tableau

RALSTON = Tableau(name="{name}", c=(0.0, 2 / 3), A=((), (2 / 3,)), b=(0.25, 0.75), order=2,
                  description="Ralston's second-order method")

@hookimpl
def odebench_register_solvers(register):
    register(RALSTON)
'''


def _make_package(root, module, source, dist=None, version="0.1"):
    """A throwaway package in ``root``; with ``dist`` also an installed-distribution record
    whose entry point in the ``odebench`` group points at it (what pip install would write)."""
    (root / module).mkdir(parents=True)
    (root / module / "__init__.py").write_text(textwrap.dedent(source))
    if dist:
        info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[odebench]\n{dist} = {module}\n")
        (info / "top_level.txt").write_text(module + "\n")


def test_host_imports_no_framework():
    code = (
        "import sys\n"
        "import odebench\n"
        "from odebench.plugins import make_registry\n"
        "reg = make_registry()\n"
        "assert 'dopri5' in reg.names('solver') and 'torch-adjoint' in reg.names('backend')\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('torch', 'jax', 'jaxlib')]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_host_works_without_torch_installed():
    """With torch made unimportable, odebench imports, lists, and explains the missing framework."""
    code = (
        "import sys\n"
        "sys.modules['torch'] = None; sys.modules['jax'] = None\n"
        "import odebench\n"
        "reg = odebench.registry()\n"
        "assert not reg.available('torch-adjoint')\n"
        "try:\n"
        "    odebench.backend('torch-adjoint')\n"
        "except odebench.MissingDependencyError as exc:\n"
        "    assert 'odebench[torch]' in str(exc), exc\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
        "print(odebench.solver('dopri5').order)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "5"


def test_lookup_errors_list_known_names():
    with pytest.raises(UnknownNameError) as exc:
        odebench.solver("dopri6")
    assert "dopri5" in str(exc.value) and "rk4" in str(exc.value)
    with pytest.raises(UnknownNameError) as exc:
        odebench.backend("torch-magic")
    assert "torch-adjoint" in str(exc.value) and "torch-backprop" in str(exc.value)


def test_entry_point_plugin_registers_solver_running_on_every_torch_backend(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    _make_package(tmp_path, "odebench_ralston", RALSTON_PLUGIN.format(name="ralston"), dist="odebench-ralston", version="0.3")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = make_registry()
    item = reg.get("solver", "ralston")
    assert item.plugin == "odebench-ralston" and item.version == "0.3"
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    for name in ("torch-backprop", "torch-adjoint", "torch-adjoint-seminorm"):
        backend = reg.backend(name)
        errors = []
        for h in (0.1, 0.05):
            y0 = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
            y = backend.odeint(lambda t, y: -y, y0, t, solver="ralston", options={"step_size": h})[-1]
            (grad,) = torch.autograd.grad(y.sum(), y0)
            errors.append(abs(y.item() - torch.exp(torch.tensor(-1.0)).item()))
            assert abs(grad.item() - y.item()) < 1e-12  # linear problem: dy(1)/dy0 = y(1)/y0
        assert 3.5 < errors[0] / errors[1] < 4.5, (name, errors)  # second order: halving h quarters the error


def test_dash_p_plugin_via_cli(tmp_path, monkeypatch):
    _make_package(tmp_path, "my_p_plugin", RALSTON_PLUGIN.format(name="ralston_p"))
    monkeypatch.syspath_prepend(str(tmp_path))
    result = CliRunner().invoke(main, ["list", "--json", "-p", "my_p_plugin"])
    assert result.exit_code == 0, result.output
    items = json.loads(result.output)["items"]
    (row,) = [r for r in items if r["name"] == "ralston_p"]
    assert row["plugin"] == "my_p_plugin" and row["kind"] == "solver"
    # and it runs without any change to odebench
    torch = pytest.importorskip("torch")
    reg = make_registry(["my_p_plugin"])
    y = reg.backend("torch-backprop").odeint(lambda t, y: -y, torch.ones(1), torch.tensor([0.0, 1.0]),
                                             solver="ralston_p", options={"step_size": 0.01})
    assert abs(y[-1].item() - 0.36787944) < 1e-4


def test_env_plugins_and_disable(tmp_path, monkeypatch):
    _make_package(tmp_path, "my_env_plugin", RALSTON_PLUGIN.format(name="ralston_env"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("ODEBENCH_PLUGINS", "my_env_plugin")
    assert "ralston_env" in make_registry().names("solver")
    monkeypatch.setenv("ODEBENCH_DISABLE_PLUGINS", "my_env_plugin,odebench_torch")
    reg = make_registry()
    assert "ralston_env" not in reg.names("solver")
    assert reg.names("backend") == [n for n in reg.names("backend") if not n.startswith("torch-")]
    assert "dopri5" in reg.names("solver")


def test_duplicate_name_names_both_plugins(tmp_path, monkeypatch):
    _make_package(tmp_path, "dup_plugin", RALSTON_PLUGIN.format(name="dopri5"))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(DuplicateNameError) as exc:
        make_registry(["dup_plugin"])
    assert "odebench_solvers" in str(exc.value) and "dup_plugin" in str(exc.value)


def test_broken_entry_point_is_reported_and_others_load(tmp_path, monkeypatch):
    _make_package(tmp_path, "broken_plugin", "raise RuntimeError('boom at import')\n", dist="odebench-broken")
    _make_package(tmp_path, "fine_plugin", RALSTON_PLUGIN.format(name="ralston_ok"), dist="odebench-fine")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(RuntimeWarning, match="odebench-broken"):
        reg = make_registry()
    assert [name for name, _ in reg.load_errors] == ["odebench-broken"]
    assert "boom at import" in reg.load_errors[0][1]
    assert "ralston_ok" in reg.names("solver") and "dopri5" in reg.names("solver")


def test_plugin_raising_in_hook_is_reported(tmp_path, monkeypatch):
    source = (
        "from odebench.hookspecs import hookimpl\n"
        "@hookimpl\n"
        "def odebench_register_solvers(register):\n"
        "    raise ValueError('bad tableau data')\n"
    )
    _make_package(tmp_path, "raising_plugin", source)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(RuntimeWarning, match="bad tableau data"):
        reg = make_registry(["raising_plugin"])
    assert reg.load_errors[0][0] == "raising_plugin" and "dopri5" in reg.names("solver")


def test_missing_dash_p_module_is_a_clear_error():
    with pytest.raises(PluginLoadError, match="no_such_plugin_xyz"):
        make_registry(["no_such_plugin_xyz"])
    result = CliRunner().invoke(main, ["list", "-p", "no_such_plugin_xyz"])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "no_such_plugin_xyz" in result.output


def test_backend_whose_framework_is_missing(tmp_path, monkeypatch):
    source = (
        "from odebench.hookspecs import hookimpl\n"
        "from odebench.specs import BackendSpec\n"
        "def _load():\n"
        "    import not_a_real_framework_xyz\n"
        "@hookimpl\n"
        "def odebench_register_backends(register):\n"
        "    register(BackendSpec(name='nrf-adjoint', framework='nrf', method='adjoint', load=_load,\n"
        "                         requires=('not_a_real_framework_xyz',)))\n"
    )
    _make_package(tmp_path, "nrf_plugin", source)
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = make_registry(["nrf_plugin"])
    assert not reg.available("nrf-adjoint")
    with pytest.raises(MissingDependencyError, match="odebench\\[nrf\\]"):
        reg.backend("nrf-adjoint")


def test_list_shows_every_builtin_with_its_plugin():
    result = CliRunner().invoke(main, ["list"])
    assert result.exit_code == 0
    for name in ("euler", "midpoint", "rk4", "adaptive_heun", "bosh3", "dopri5", "tsit5", "dopri8",
                 "torch-backprop", "torch-adjoint", "torch-adjoint-seminorm"):
        assert name in result.output
    assert "odebench_solvers" in result.output and "odebench_torch" in result.output


def test_wrong_tableau_from_a_plugin_is_refused_with_a_clear_error(tmp_path, monkeypatch):
    """Ralston's method with a typo in b (0.75 -> 0.57): refused when the plugin builds it.
    Named with -p, the run stops with one line naming the plugin and the defect (exit 2);
    through an entry point it is reported and the other plugins still load."""
    source = RALSTON_PLUGIN.format(name="ralston_typo").replace("b=(0.25, 0.75)", "b=(0.25, 0.57)")
    _make_package(tmp_path, "typo_plugin", source)
    _make_package(tmp_path, "typo_ep_plugin", source, dist="odebench-typo")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = CliRunner().invoke(main, ["list", "-p", "typo_plugin"])
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line and "'typo_plugin'" in line, line
    assert "tableau 'ralston_typo': the weights b sum to 0.82" in line and "not 1" in line
    with pytest.warns(RuntimeWarning, match="odebench-typo"):
        reg = make_registry()
    assert "ralston_typo" not in reg.names("solver") and "dopri5" in reg.names("solver")
    assert "InvalidTableauError" in dict(reg.load_errors)["odebench-typo"]
