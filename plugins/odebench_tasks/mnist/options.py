"""Options of the ``mnist`` task (framework-free): a fast offline default and the paper's recipe.

The default trains on scikit-learn's bundled handwritten digits (1,797 images, upsampled to
MNIST's 28 x 28 so the architecture and its parameter counts are the paper's) and finishes
``odebench run --task mnist --backend torch-adjoint`` in under two minutes on a 2-core CPU.
``PAPER_OPTIONS`` is the reference training of Chen et al. (torchdiffeq's
examples/odenet_mnist.py): MNIST, SGD with momentum 0.9, lr 0.1 x batch/128 divided by 10 at
epochs 60, 100 and 140, 160 epochs of batch 128, RandomCrop(28, padding 4), no input
normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._common.options import choice, positive_float, positive_int
from .data import DATASETS

MNIST_TRAIN = 60_000
PAPER_EPOCHS = 160

PAPER_OPTIONS: dict = {
    "dataset": "mnist",
    "batch_size": 128,
    "lr": 0.1,
    "momentum": 0.9,
    "lr_decay_epochs": "60,100,140",
    "lr_decay": 0.1,
    "augment": True,
    "iterations": PAPER_EPOCHS * (MNIST_TRAIN // 128),  # 74,880: 468 full batches an epoch
}


@dataclass
class MNISTOptions:
    """The paper's image classifier (Table 1) on MNIST or on the offline digits.

    dataset: ``digits`` (offline, scikit-learn's 8 x 8 digits upsampled to 28 x 28, a fixed
        train/test split by seed) or ``mnist`` (IDX files from ``data_dir``, or downloaded into
        the cache folder ``$ODEBENCH_DATA/mnist``, ``~/.cache/odebench/mnist`` by default).
    data_dir: a folder holding the four IDX files (gzip or raw; checked for structure, so
        Fashion-MNIST works too); empty: the cache folder.  download: fetch missing files
        into the cache folder (checked against MNIST's md5 sums).
    test_fraction: the digits' test share (per class).
    iterations, batch_size: SGD steps on batches drawn epoch by epoch (a fresh permutation of
        the training set each epoch, the last partial batch dropped).
    lr, momentum: SGD's; lr_decay_epochs: comma-separated epochs where lr is multiplied by
        lr_decay (empty: constant).  augment: RandomCrop(28, padding 4) on training batches.
    width: channels of every conv (64: the paper's parameter counts).  n_blocks: the ResNet's
        residual blocks (6 in the paper).  eval_batch_size: test images per forward pass.
    """

    dataset: str = "digits"
    data_dir: str = ""
    download: bool = True
    test_fraction: float = 0.2
    iterations: int = 300
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    lr_decay_epochs: str = ""
    lr_decay: float = 0.1
    augment: bool = False
    width: int = 64
    n_blocks: int = 6
    eval_batch_size: int = 1000

    def __post_init__(self) -> None:
        self.dataset = choice("dataset", self.dataset, DATASETS)
        for name in ("iterations", "batch_size", "width", "n_blocks", "eval_batch_size"):
            setattr(self, name, positive_int(name, getattr(self, name)))
        for name in ("lr", "lr_decay"):
            setattr(self, name, positive_float(name, getattr(self, name)))
        if not 0.0 < float(self.test_fraction) < 1.0:
            raise ValueError(f"test_fraction must be a number in (0, 1), got {self.test_fraction!r}")
        if not 0.0 <= float(self.momentum) < 1.0:
            raise ValueError(f"momentum must be a number in [0, 1), got {self.momentum!r}")
        self.decay_epochs()  # checks the list

    def decay_epochs(self) -> list[int]:
        """The epochs of ``lr_decay_epochs`` as integers (strictly increasing, >= 1)."""
        text = str(self.lr_decay_epochs).strip()
        if not text:
            return []
        try:
            epochs = [int(x) for x in text.split(",")]
        except ValueError:
            raise ValueError(f"lr_decay_epochs must be comma-separated whole epochs, got {text!r}") from None
        if any(e < 1 for e in epochs) or epochs != sorted(set(epochs)):
            raise ValueError(f"lr_decay_epochs must be increasing epochs >= 1, got {text!r}")
        return epochs
