"""Options of the ``cnf`` task (framework-free): the fast default and FFJORD's toy setting.

The defaults are tuned so that ``odebench run --task cnf --backend torch-adjoint`` trains and
evaluates in well under a minute on a 2-core CPU at dopri5, rtol = atol = 1e-5, and still ends
with a test NLL clearly below that of the base N(0, I) on the same data.  ``PAPER_OPTIONS`` is
the configuration of FFJORD's toy experiments (pass them with ``--opt key=value``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .._common.options import choice as _choice
from .._common.options import positive_float as _positive_float
from .._common.options import positive_int as _positive_int
from .data import DATASETS

ACTIVATIONS = ("tanh", "softplus", "relu", "elu")
TRACES = ("exact", "hutchinson")
NOISES = ("gaussian", "rademacher")

#: FFJORD's toy-density setting: Grathwohl et al., "FFJORD: Free-form Continuous Dynamics for
#: Scalable Reversible Generative Models", ICLR 2019, arXiv:1810.01367 -- ``train_toy.py``:
#: dims 64-64-64 with ``concatsquash`` layers, tanh, time_length (T) 0.5, exact divergence
#: ("brute_force"), batch 100, Adam lr 1e-3, 10000 iterations, dopri5 at atol = rtol = 1e-5.
PAPER_OPTIONS: dict = {
    "dataset": "8gaussians",
    "hidden": 64,
    "layers": 3,
    "activation": "tanh",
    "T": 0.5,
    "trace": "exact",
    "batch_size": 100,
    "lr": 1e-3,
    "iterations": 10000,
}


@dataclass
class CNFOptions:
    """A continuous normalizing flow (FFJORD) on a 2-D toy density.

    dataset: one of ``odebench_tasks.cnf.data.DATASETS``.
    n_train, n_test: sizes of the fixed train/test split drawn from the cell's seed.
    iterations, batch_size, lr: Adam steps on mini-batches of the training set.
    hidden, layers, activation: ``layers`` hidden concatsquash layers of width ``hidden``
        (2 -> hidden x layers -> 2), the activation between them.
    T: the flow integrates data x at t = 0 to the base variable z at t = T.
    trace: the divergence used in training, ``exact`` or ``hutchinson`` (Hutchinson's
        estimator with one ``noise`` vector per solve); evaluation always uses the exact trace.
    noise: distribution of Hutchinson's vector, ``gaussian`` or ``rademacher``.
    eval_batch_size: test points per solve in evaluation (each chunk is one adaptive solve).
    """

    dataset: str = "8gaussians"
    n_train: int = 2048
    n_test: int = 1024
    iterations: int = 100
    batch_size: int = 256
    lr: float = 1e-2
    hidden: int = 64
    layers: int = 3
    activation: str = "tanh"
    T: float = 0.5
    trace: str = "exact"
    noise: str = "gaussian"
    eval_batch_size: int = 1024

    def __post_init__(self) -> None:
        self.dataset = _choice("dataset", self.dataset, DATASETS)
        for name in ("n_train", "n_test", "iterations", "batch_size", "hidden", "layers", "eval_batch_size"):
            setattr(self, name, _positive_int(name, getattr(self, name)))
        self.lr = _positive_float("lr", self.lr)
        self.T = _positive_float("T", self.T)
        self.activation = _choice("activation", self.activation, ACTIVATIONS)
        self.trace = _choice("trace", self.trace, TRACES)
        self.noise = _choice("noise", self.noise, NOISES)
        if self.batch_size > self.n_train:
            raise ValueError(
                f"batch_size ({self.batch_size}) must not exceed n_train ({self.n_train}): "
                "batches are drawn without replacement"
            )
