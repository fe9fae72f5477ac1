"""The host package has no import cycle, and the graph helper finds the cycles it should."""

from __future__ import annotations

import textwrap

from .conftest import ROOT
from .import_graph import cycles, import_graph


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
