"""An odebench task plugin: recover the rate k of y' = -k y from noisy samples of y(t).

The task is tiny on purpose (one parameter, closed-form solution), which makes it a good
first example and a fast task for testing a harness.  Registration imports no framework;
the torch implementation is loaded only when a torch backend runs it.
"""

from dataclasses import dataclass

from odebench.hookspecs import hookimpl
from odebench.specs import TaskSpec


@dataclass
class DecayOptions:
    k_true: float = 0.7  # the rate to recover
    n_times: int = 20  # samples of y(t) on (0, t_end]
    t_end: float = 3.0
    noise: float = 0.01
    batch_size: int = 16  # trajectories per batch (different y0)
    iterations: int = 50
    lr: float = 0.05

    def __post_init__(self):
        if self.n_times < 1 or self.batch_size < 1 or self.iterations < 1:
            raise ValueError("n_times, batch_size and iterations must be at least 1")
        if not self.t_end > 0:
            raise ValueError(f"t_end must be > 0, got {self.t_end}")


def _torch_impl():
    from .torch_impl import TorchDecay

    return TorchDecay()


@hookimpl
def odebench_register_tasks(register):
    register(TaskSpec(
        name="decay",
        description="fit k in y' = -k y from noisy samples (metric: |k - k_true|)",
        options=DecayOptions,
        frameworks={"torch": _torch_impl},
        metric_name="abs_rate_error",
        metric_higher_is_better=False,
    ))
