"""The registration hooks of odebench.

Each hook receives a ``register`` callback, so one plugin can register many things and the
host records which plugin registered what.
"""

import pluggy

PROJECT = "odebench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def odebench_register_solvers(register):
    """Register solvers: call ``register(Tableau(...))`` or ``register(SolverSpec(...))``."""


@hookspec
def odebench_register_backends(register):
    """Register gradient methods: call ``register(BackendSpec(...))``."""


@hookspec
def odebench_register_tasks(register):
    """Register tasks: call ``register(TaskSpec(...))``."""


@hookspec
def odebench_register_runtimes(register):
    """Register framework runtimes: call ``register(RuntimeSpec(...))``, one per framework."""


@hookspec
def odebench_register_executors(register):
    """Register ways to run a grid's cells: call ``register(ExecutorSpec(...))``."""
