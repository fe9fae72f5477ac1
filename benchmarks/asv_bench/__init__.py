"""The asv suite (``asv.conf.json``'s ``benchmark_dir``): odebench's figures tracked over commits.

A folder of its own so that asv, which imports every module under its benchmark folder, runs
only this suite and never the peers' comparison scripts beside it.  The suite shares the
problems of ``benchmarks/problems.py`` with those scripts and the micro-benchmarks, so a figure
here can be set beside one there.

asv imports this folder as a top-level package named ``asv_bench`` (asv_runner's importer
finds that one name, and the repository is not on ``sys.path``, deliberately: the odebench
under test is the one installed in asv's environment).  So ``benchmarks``, which holds the
shared problems, is loaded here from its file, by name, and nothing else from the checkout.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_SHARED = Path(__file__).resolve().parent.parent


def _load_shared_package() -> None:
    """Make ``import benchmarks`` the checkout's benchmarks/ (whose modules import only odebench
    and the frameworks).  Under pytest or ``python -m`` it already is."""
    loaded = sys.modules.get("benchmarks")
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve().parent == _SHARED:
        return
    spec = importlib.util.spec_from_file_location("benchmarks", _SHARED / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["benchmarks"] = module
    spec.loader.exec_module(module)


_load_shared_package()


def tracked(value, why: str):
    """``value`` for an asv ``track_*``; a figure a backend does not have (None: JAX keeps no
    autograd graph to measure) is reported by asv as skipped, not failed."""
    if value is None:
        try:
            from asv_runner.benchmarks.mark import SkipNotImplemented
        except ImportError:  # asv before asv_runner: NotImplementedError is its skip
            SkipNotImplemented = NotImplementedError
        raise SkipNotImplemented(why)
    return value
