"""Built-in tasks: the paper's experiments as benchmark problems.

``cnf``: continuous normalizing flows on 2-D toy densities (FFJORD's setting).
``mnist``: the image classifier of Table 1, ODE-Net against the ResNet baseline.
``latent-spiral``: the latent ODE on irregularly sampled spirals of Table 2, against an RNN.
``detest``: no training; the DETEST problems with closed forms, for work-precision diagrams.

Registration imports no framework: each task names, per framework, a loader that imports the
model file for that framework only when a cell of that framework runs.
"""

from odebench.hookspecs import hookimpl
from odebench.specs import ModelSpec, TaskSpec, lazy


@hookimpl
def odebench_register_tasks(register):
    from .cnf.options import PAPER_OPTIONS as CNF_PAPER, CNFOptions
    from .mnist.options import PAPER_OPTIONS as MNIST_PAPER, MNISTOptions
    from .mnist.task import prepare as prepare_mnist
    from .latent_spiral.options import PAPER_OPTIONS as SPIRAL_PAPER, LatentSpiralOptions
    from .detest.options import DetestOptions

    register(TaskSpec(
        name="cnf",
        description="continuous normalizing flow (FFJORD-style) on a 2-D toy density; metric: test NLL in nats",
        options=CNFOptions,
        frameworks={"torch": lazy("odebench_tasks.cnf.torch_model:TorchCNF"),
                    "jax": lazy("odebench_tasks.cnf.jax_model:JaxCNF")},
        metric_name="test_nll_nats",
        paper_options=CNF_PAPER,
    ))
    register(TaskSpec(
        name="mnist",
        description="image classifier of Chen et al. 2018 Table 1 (digits offline, or MNIST); metric: test error %",
        options=MNISTOptions,
        frameworks={"torch": lazy("odebench_tasks.mnist.torch_model:TorchMNIST"),
                    "jax": lazy("odebench_tasks.mnist.jax_model:JaxMNIST")},
        metric_name="test_error_pct",
        paper_options=MNIST_PAPER,
        models=(ModelSpec("odenet", ode=True, description="downsampling, one ODE block on t in [0, 1], head"),
                ModelSpec("resnet", ode=False, description="the same with n_blocks residual blocks")),
        default_tol=1e-3,
        eval_tols=(1e-1, 1e-2, 1e-3, 1e-4, 1e-5),
        prepare=prepare_mnist,
    ))
    register(TaskSpec(
        name="latent-spiral",
        description="latent ODE on irregularly sampled 2-D spirals (Chen et al. 2018 Table 2); metric: "
                    "predictive RMSE beyond the observed window",
        options=LatentSpiralOptions,
        frameworks={"torch": lazy("odebench_tasks.latent_spiral.torch_model:TorchLatentSpiral"),
                    "jax": lazy("odebench_tasks.latent_spiral.jax_model:JaxLatentSpiral")},
        metric_name="predictive_rmse",
        paper_options=SPIRAL_PAPER,
        models=(ModelSpec("latent-ode", ode=True, description="RNN encoder -> q(z0), ODE in a 4-d latent space, decoder"),
                ModelSpec("rnn", ode=False, description="an RNN taking the time gaps, predicting forward")),
        default_tol=1e-3,
    ))
    register(TaskSpec(
        name="detest",
        description="no training: DETEST problems with closed forms (A1-A4, B4, D1-D5, E1) solved once per "
                    "step; metric: max |y - y_exact| over problems, output times and components",
        options=DetestOptions,
        frameworks={"torch": lazy("odebench_tasks.detest.torch_model:TorchDetest"),
                    "jax": lazy("odebench_tasks.detest.jax_model:JaxDetest")},
        metric_name="max_abs_error",
        default_tol=1e-6,
        trains=False,
        step_size_option="step_size",
        default_dtype="float64",
    ))
