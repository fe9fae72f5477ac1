"""The host package has no import cycle, and the graph helper finds the cycles it should."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from .conftest import ROOT
from .import_graph import cycles, foreign_imports, import_graph


def test_host_package_has_no_import_cycle():
    assert cycles(ROOT / "odebench", "odebench") == []


def test_the_executor_seam_imports_the_harness_and_not_back():
    graph = import_graph(ROOT / "odebench", "odebench")
    assert "odebench.harness" in graph["odebench.execution"]
    assert "odebench.execution" in graph["odebench.runner"]
    assert "odebench.execution" not in graph["odebench.harness"]


def _package(root, files: dict):
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root / "pkg"


def test_a_lazy_import_inside_a_function_still_makes_a_cycle(tmp_path):
    pkg = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "from .b import g\n",
        "b.py": "def g():\n    from .a import f\n    return f\n",
        "c.py": "import pkg.a\n",
    })
    assert cycles(pkg, "pkg") == [["pkg.a", "pkg.b"]]


def test_subpackages_parent_imports_and_type_checking(tmp_path):
    pkg = _package(tmp_path, {
        "__init__.py": "def registry():\n    from . import plugins\n",
        "plugins.py": "from .sub import leaf\n",
        "sub/__init__.py": "",
        "sub/leaf.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..plugins import x\n"
                       "from .. import version\n",
        "version.py": "",
    })
    graph = import_graph(pkg, "pkg")
    assert graph["pkg.plugins"] == {"pkg.sub.leaf"}
    assert graph["pkg.sub.leaf"] == {"pkg.version"}  # the TYPE_CHECKING import never runs
    assert cycles(pkg, "pkg") == []
    (pkg / "sub" / "leaf.py").write_text("from .. import registry\n")  # leaf -> pkg -> plugins -> leaf
    assert cycles(pkg, "pkg") == [["pkg", "pkg.plugins", "pkg.sub.leaf"]]


def test_other_plugins_use_only_the_public_names_of_odebench_torch():
    """odebench_torch's public names are its package's (odebench_torch/__init__.py); the
    modules behind them may change.  (tests/import_graph.foreign_imports lists every plugin
    reaching into another; this pins the torch plugin's side.)"""
    reaching = [pair for pair in foreign_imports(ROOT / "plugins") if pair[1].startswith("odebench_torch.")]
    assert reaching == []


def test_foreign_imports_finds_a_plugin_reaching_into_another(tmp_path):
    for package, text in (("alpha", ""), ("beta", "from alpha.inner import x\nimport alpha\n")):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(text)
    assert foreign_imports(tmp_path) == [("beta", "alpha.inner")]


def test_torch_public_names_load_on_first_use_and_registration_imports_no_torch():
    code = ("import sys\nfrom odebench.plugins import make_registry\nmake_registry().entries('backend')\n"
            "assert 'torch' not in sys.modules, 'registration imported torch'\n"
            "import odebench_torch\nfrom odebench_torch.state import FlatState\n"
            "assert odebench_torch.FlatState is FlatState and odebench_torch.TorchRuntime.__name__ == 'TorchRuntime'\n")
    pytest.importorskip("torch")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
