"""Plugin manager factory and the registry of solvers, backends and tasks.

Nothing happens at import time: ``make_registry()`` builds a fresh plugin manager each call,
so tests stay isolated and ``-p``/environment settings apply per run.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Optional

import pluggy

from . import hookspecs
from .errors import DuplicateNameError, MissingDependencyError, PluginLoadError, UnknownNameError
from .specs import BackendSpec, ExecutorSpec, RuntimeSpec, SolverSpec, TaskSpec, Tableau

ENTRY_POINT_GROUP = "odebench"
BUILTIN_PLUGINS = ("odebench_solvers", "odebench_torch", "odebench_jax", "odebench_tasks", "odebench_peers",
                   "odebench_executors")
PLUGINS_ENV = "ODEBENCH_PLUGINS"
DISABLE_ENV = "ODEBENCH_DISABLE_PLUGINS"
KINDS = ("solver", "backend", "task", "runtime", "executor")


@dataclass(frozen=True)
class Registered:
    """One registered item and where it came from."""

    kind: str
    name: str
    spec: Any
    plugin: str
    version: str


def _split_env(name: str) -> list[str]:
    return [p.strip() for p in os.environ.get(name, "").split(",") if p.strip()]


def _ensure_builtin_path() -> None:
    """Let a source checkout (not pip-installed) find the built-in plugins in ./plugins."""
    folder = Path(__file__).resolve().parent.parent / "plugins"
    if folder.is_dir() and str(folder) not in sys.path:
        try:
            importlib.import_module(BUILTIN_PLUGINS[0])
        except ImportError:
            sys.path.append(str(folder))


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: sys.modules[module] is None (blocked)
        return False


@functools.lru_cache(maxsize=1)
def _packages_distributions() -> dict:
    """Top-level module -> distributions; scanning every installed package's metadata takes
    about 0.3 s, so once per process (a cell's fresh process builds a registry too)."""
    return metadata.packages_distributions()


def _distribution_version(module_name: str) -> str:
    top = module_name.split(".")[0]
    from .version import __version__

    if top in BUILTIN_PLUGINS or top == "odebench":
        return __version__
    try:
        dists = _packages_distributions().get(top, [])
        if dists:
            return metadata.version(dists[0])
    except Exception:  # metadata is best effort
        pass
    return "unknown"


class Registry:
    """Solvers, backends and tasks registered by the loaded plugins, by kind and name."""

    def __init__(self, pm: pluggy.PluginManager, load_errors: list[tuple[str, str]]) -> None:
        self.plugin_manager = pm
        self.load_errors = load_errors  # (plugin name, error text) for plugins that failed
        self.recipe: Optional[tuple] = None  # (plugins, make_plugin_manager kwargs), set by make_registry
        self._items: dict[str, dict[str, Registered]] = {kind: {} for kind in KINDS}
        self._loaded: dict[tuple[str, str], Any] = {}  # (kind, name) -> loaded backend or runtime
        for kind, hook in (
            ("solver", pm.hook.odebench_register_solvers),
            ("backend", pm.hook.odebench_register_backends),
            ("task", pm.hook.odebench_register_tasks),
            ("runtime", pm.hook.odebench_register_runtimes),
            ("executor", pm.hook.odebench_register_executors),
        ):
            for impl in hook.get_hookimpls():
                register = self._register_callback(kind, impl.plugin_name, impl.plugin)
                try:
                    impl.function(register=register)
                except DuplicateNameError:
                    raise
                except Exception as exc:  # a broken plugin must not take the others down
                    self._record_failure(impl.plugin_name, f"{kind} registration failed: {exc!r}")

    def _record_failure(self, plugin: str, text: str) -> None:
        self.load_errors.append((plugin, text))
        warnings.warn(f"odebench plugin {plugin!r}: {text}", RuntimeWarning, stacklevel=3)

    def _register_callback(self, kind: str, plugin_name: str, plugin: Any):
        expected = {"solver": (Tableau, SolverSpec), "backend": (BackendSpec,), "task": (TaskSpec,),
                    "runtime": (RuntimeSpec,), "executor": (ExecutorSpec,)}[kind]
        version = getattr(self.plugin_manager, "odebench_versions", {}).get(plugin_name)
        if version is None:
            version = _distribution_version(getattr(plugin, "__name__", plugin_name))

        def register(spec: Any) -> None:
            if not isinstance(spec, expected):
                allowed = " or ".join(t.__name__ for t in expected)
                raise TypeError(f"plugin {plugin_name!r} registered a {type(spec).__name__} as a {kind}; expected {allowed}")
            existing = self._items[kind].get(spec.name)
            if existing is not None:
                raise DuplicateNameError(
                    f"{kind} {spec.name!r} is registered by two plugins: {existing.plugin!r} and {plugin_name!r}; "
                    f"disable one with {DISABLE_ENV}=<plugin>"
                )
            self._items[kind][spec.name] = Registered(kind, spec.name, spec, plugin_name, version)

        return register

    # -- lookup -------------------------------------------------------------------------
    def entries(self, kind: str) -> dict[str, Registered]:
        return dict(self._items[kind])

    def names(self, kind: str) -> list[str]:
        return sorted(self._items[kind])

    def get(self, kind: str, name: str) -> Registered:
        try:
            return self._items[kind][name]
        except KeyError:
            raise UnknownNameError(kind, name, self._items[kind]) from None

    def solver(self, name: str):
        """The registered Tableau or SolverSpec called ``name``."""
        return self.get("solver", name).spec

    def task(self, name: str) -> TaskSpec:
        return self.get("task", name).spec

    def available(self, name: str, kind: str = "backend") -> bool:
        """Whether the modules a backend (or runtime) requires can be found, without importing them."""
        return not self.missing(name, kind)

    def missing(self, name: str, kind: str = "backend") -> list:
        """The modules a backend (or runtime) requires that cannot be found."""
        return [m for m in self.get(kind, name).spec.requires if not _importable(m)]

    def backend(self, name: str):
        """The backend object (framework code) for ``name``, loaded once per registry."""
        return self._load("backend", name)

    def runtime(self, framework: str):
        """The Runtime of ``framework`` (see odebench.protocols), loaded once per registry."""
        return self._load("runtime", framework)

    def executor(self, name: str):
        """The executor class called ``name`` (see odebench.execution), loaded once per registry."""
        return self._load("executor", name)

    def _load(self, kind: str, name: str):
        key = (kind, name)
        if key not in self._loaded:
            spec = self.get(kind, name).spec
            try:
                loaded = spec.load()
            except ImportError as exc:
                extra = getattr(spec, "extra", "") or getattr(spec, "framework", name)
                raise MissingDependencyError(
                    f"{kind} {name!r} cannot be loaded: {exc} (install it with pip install 'odebench[{extra}]')"
                ) from exc
            if hasattr(loaded, "bind"):
                loaded.bind(self)
            self._loaded[key] = loaded
        return self._loaded[key]


def make_plugin_manager(
    plugins: Iterable[str] = (),
    *,
    entry_points: bool = True,
    builtins: bool = True,
    disable: Optional[Iterable[str]] = None,
) -> tuple[pluggy.PluginManager, list[tuple[str, str]]]:
    """A fresh plugin manager with built-ins, entry points, ``plugins`` (-p) and ODEBENCH_PLUGINS.

    Returns the manager and a list of (plugin, error) for plugins that failed to import:
    a failing plugin is reported and the others still load.  Plugins named explicitly
    (``plugins`` or the environment) that fail raise PluginLoadError instead, since the user
    asked for them by name.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    blocked = set(_split_env(DISABLE_ENV)) | set(disable or ())
    for name in blocked:
        pm.set_blocked(name)
    errors: list[tuple[str, str]] = []
    versions: dict[str, str] = {}
    pm.odebench_versions = versions  # plugin name -> distribution version, for `odebench list`

    if builtins:
        _ensure_builtin_path()
        for name in BUILTIN_PLUGINS:
            if name in blocked:
                continue
            try:
                pm.register(importlib.import_module(name), name=name)
            except Exception as exc:
                errors.append((name, f"{type(exc).__name__}: {exc}"))

    if entry_points:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in blocked or pm.is_registered(ep.name) or pm.has_plugin(ep.name):
                continue
            try:
                pm.register(ep.load(), name=ep.name)
                versions[ep.name] = ep.dist.version if ep.dist is not None else "unknown"
            except Exception as exc:
                errors.append((ep.name, f"{type(exc).__name__}: {exc}"))

    for name in [*plugins, *_split_env(PLUGINS_ENV)]:
        if name in blocked or pm.has_plugin(name):
            continue
        try:
            module = importlib.import_module(name)
        except Exception as exc:
            raise PluginLoadError(f"cannot import plugin {name!r}: {type(exc).__name__}: {exc}") from exc
        if not pm.is_registered(module):  # already loaded through its entry point
            pm.register(module, name=name)

    for name, text in errors:
        warnings.warn(f"odebench plugin {name!r} failed to load: {text}", RuntimeWarning, stacklevel=2)
    return pm, errors


def make_registry(plugins: Iterable[str] = (), **kwargs: Any) -> Registry:
    """Build a plugin manager (see make_plugin_manager) and collect what its plugins register."""
    plugins = tuple(plugins)
    pm, errors = make_plugin_manager(plugins, **kwargs)
    registry = Registry(pm, errors)
    registry.recipe = (plugins, dict(kwargs))  # how another process rebuilds the same registry
    return registry
