"""Built-in tasks: benchmark problems for odebench (``cnf``: continuous normalizing flows on 2-D toy densities).

Registration imports no framework: each task names, per framework, a loader that imports
the model file for that framework only when a cell of that framework runs.
"""

from odebench.hookspecs import hookimpl
from odebench.specs import TaskSpec


def _torch_cnf():
    from .cnf.torch_model import TorchCNF

    return TorchCNF()


def _jax_cnf():
    from .cnf.jax_model import JaxCNF

    return JaxCNF()


@hookimpl
def odebench_register_tasks(register):
    from .cnf.options import PAPER_OPTIONS, CNFOptions

    register(TaskSpec(
        name="cnf",
        description="continuous normalizing flow (FFJORD-style) on a 2-D toy density; metric: test NLL in nats",
        options=CNFOptions,
        frameworks={"torch": _torch_cnf, "jax": _jax_cnf},
        metric_name="test_nll_nats",
        metric_higher_is_better=False,
        paper_options=PAPER_OPTIONS,
    ))
