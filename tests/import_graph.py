"""The import graph of a package, read from its source (nothing is imported), and its cycles.

Every ``import`` statement counts, at module level or inside a function: a lazy import only
hides a cycle from the interpreter at load time, it does not remove the two modules' dependence
on each other.  Imports under ``if TYPE_CHECKING:`` are left out, because they never run.

Used by tests/test_import_graph.py for the host package and meant for any plugin package too::

    from tests.import_graph import cycles
    assert cycles(ROOT / "plugins" / "odebench_jax", "odebench_jax") == []
"""

from __future__ import annotations

import ast
from pathlib import Path


def module_names(package_dir: Path, package_name: str) -> dict[str, Path]:
    """{dotted module name: file} for every ``.py`` file under ``package_dir``; a package's
    ``__init__.py`` is named after the package itself."""
    package_dir = Path(package_dir)
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join([package_name, *parts])] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Every Import / ImportFrom node, skipping the bodies of ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _resolve_from(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module named by ``from <node.module> import ...`` inside ``module``."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]  # a module's siblings live in its package
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _known(name: str, nodes) -> str | None:
    """``name`` or its longest prefix that is a module of the package; None for outside ones."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in nodes:
            return candidate
    return None


def import_graph(package_dir: Path, package_name: str) -> dict[str, set[str]]:
    """{module: the package's modules it imports} (edges to modules outside the package dropped)."""
    files = module_names(package_dir, package_name)
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        for node in _import_nodes(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                source = _resolve_from(name, is_package, node)
                # ``from pkg import sub`` imports the submodule; ``from mod import name`` the module
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in files else source for a in node.names]
            for target in targets:
                known = _known(target, files)
                if known is not None and known != name:
                    graph[name].add(known)
    return graph


def cycles(package_dir: Path, package_name: str) -> list[list[str]]:
    """The import cycles of a package: each strongly connected group of two or more modules
    (sorted), as a sorted list of lists; [] when the graph has none."""
    graph = import_graph(package_dir, package_name)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:  # Tarjan's algorithm; the graphs are small, recursion is fine
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def foreign_imports(plugins_dir: Path) -> list[tuple[str, str]]:
    """(importing module, imported module) for every import by one package under ``plugins_dir``
    of a submodule of another package there, e.g. ``odebench_peers.torch_peers`` importing
    ``odebench_torch.state``: a plugin reaching past another's public names (its package)."""
    plugins_dir = Path(plugins_dir)
    packages = {p.name for p in plugins_dir.iterdir() if (p / "__init__.py").is_file()}
    found = []
    for package in sorted(packages):
        for name, path in module_names(plugins_dir / package, package).items():
            is_package = path.name == "__init__.py"
            for node in _import_nodes(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    targets = [alias.name for alias in node.names]
                else:
                    targets = [_resolve_from(name, is_package, node)]
                for target in targets:
                    top = target.split(".")[0]
                    if top in packages and top != package and "." in target:
                        found.append((name, target))
    return sorted(set(found))
