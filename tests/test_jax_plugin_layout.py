"""The JAX plugin's shape: no import cycle among its modules, only public JAX APIs (no
``jax.interpreters``, ``jax.extend``, ``jax._src``, custom primitives), no host callback in
odebench's own backends' programs, a public surface that other plugins use (the JAX peers
import nothing else of it), and registration that loads no jax."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from .conftest import ROOT
from .import_graph import cycles, foreign_imports

PACKAGE = ROOT / "plugins" / "odebench_jax"
PEERS = ROOT / "plugins" / "odebench_peers" / "jax_peers.py"


def test_no_import_cycle_in_the_jax_plugin():
    assert cycles(PACKAGE, "odebench_jax") == []


def _attribute_chains(tree: ast.AST):
    """Every dotted name the source spells (``jax.interpreters.mlir`` ...) and every import."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            parts, inner = [node.attr], node.value
            while isinstance(inner, ast.Attribute):
                parts.append(inner.attr)
                inner = inner.value
            if isinstance(inner, ast.Name):
                yield ".".join([inner.id, *reversed(parts)])
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


PRIVATE = ("jax.interpreters", "jax.extend", "jax._src", "jax.core.Primitive", "jaxlib")
CALLBACKS = ("jax.pure_callback", "jax.debug.callback", "jax.experimental.io_callback")


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")) + [PEERS], ids=lambda p: p.name)
def test_public_jax_apis_only(path):
    names = set(_attribute_chains(ast.parse(path.read_text())))
    assert not [n for n in names if n.startswith(PRIVATE)], path.name
    # counts leave odebench's own programs as data; only the conformance kit (which counts the
    # dynamics on its own, to check the backends' counters) and the peers call back to the host
    if path.name != "conformance.py" and path != PEERS:
        assert not [n for n in names if n.startswith(CALLBACKS)], path.name


def test_the_peers_use_the_jax_plugins_public_names_only():
    import odebench_jax

    used = []
    for node in ast.walk(ast.parse(PEERS.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("odebench_jax"):
            assert node.module == "odebench_jax", f"jax_peers imports {node.module}: use odebench_jax's public names"
            used += [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            assert not [a.name for a in node.names if a.name.startswith("odebench_jax.")]
    assert used and set(used) <= set(odebench_jax.__all__), used


def test_no_plugin_reaches_into_the_jax_plugins_modules():
    """Other plugins (tasks, peers) import odebench_jax's public names from the package itself."""
    reaching = [pair for pair in foreign_imports(ROOT / "plugins") if pair[1].startswith("odebench_jax.")]
    assert reaching == []


def test_public_names_resolve_lazily():
    """Every public name loads (with jax) on first use; importing the plugin and registering it
    loads no jax."""
    pytest.importorskip("jax")
    import odebench_jax

    for name in odebench_jax.__all__:
        assert getattr(odebench_jax, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'integrate'"):
        odebench_jax.integrate  # noqa: B018
    code = ("import sys, odebench_jax\n"
            "from odebench.plugins import make_registry\n"
            "make_registry().names('backend')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'jaxlib')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
