"""Built-in plugin: the executors that run a grid's cells (see odebench.execution).

``serial``: in the coordinating process, one cell after another (the default for one cell).
``process``: each cell in a fresh Python process, ``--workers N`` at a time (the default for a
grid): a crash or ``--timeout`` ends that cell only.  ``dask``: on a ``dask.distributed``
cluster, a LocalCluster it starts or an existing one (``--scheduler``); the extra
``distributed``.  Registration imports none of them.
"""

from odebench.hookspecs import hookimpl
from odebench.specs import ExecutorSpec


def _serial():
    from .serial import SerialExecutor

    return SerialExecutor


def _process():
    from .process import ProcessExecutor

    return ProcessExecutor


def _dask():
    from .dask_executor import DaskExecutor

    return DaskExecutor


EXECUTORS = (
    ExecutorSpec("serial", _serial, "in this process, one cell after another", isolates=False),
    ExecutorSpec("process", _process, "each cell in a fresh process, --workers N at a time; crashes and "
                                      "--timeout end one cell"),
    ExecutorSpec("dask", _dask, "a dask.distributed cluster: a LocalCluster of --workers N, or --scheduler ADDRESS",
                 requires=("distributed",), extra="distributed"),
)


@hookimpl
def odebench_register_executors(register):
    for spec in EXECUTORS:
        register(spec)
