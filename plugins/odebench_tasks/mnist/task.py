"""What one ``mnist`` cell is, apart from its framework: the data, the batches, the recipe, the metric.

Everything random is drawn in numpy from the cell's seed, so torch and JAX train on the same
images in the same order from the same weights (``.params``):

* weights:       ``default_rng((seed, 0))``            (params.init_params)
* batch order:   ``default_rng((seed, 1, epoch))``     a permutation of the training set per epoch
* crops:         ``default_rng((seed, 2, iteration))`` RandomCrop(28, padding 4) when augmenting
* digits split:  ``default_rng((seed, 3))``            (data.load_digits_28)
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from odebench.errors import InvalidInputError

from .data import check_mnist, load_dataset, random_crop
from .options import MNISTOptions

BATCH_STREAM, CROP_STREAM = 1, 2
CROP_PADDING = 4
CHANCE_ERROR_PCT = 90.0  # ten balanced classes


def prepare(options: MNISTOptions) -> str:
    """Find data problems before any cell runs (missing, corrupt or undownloadable files)."""
    if options.dataset == "mnist":
        return check_mnist(options.data_dir or None, options.download)
    x, *_ = load_dataset(options.dataset, seed=0, test_fraction=options.test_fraction)
    _check_batch(options, len(x))
    return f"digits: {len(x)} train images"


def _check_batch(options: MNISTOptions, n_train: int) -> None:
    if options.batch_size > n_train:
        raise InvalidInputError(f"mnist: batch_size {options.batch_size} exceeds the {n_train} training images "
                                f"of dataset {options.dataset!r}")


class MNISTData:
    """The arrays of one cell, its batches, its optimizer recipe and its test error."""

    def __init__(self, options: MNISTOptions, seed: int) -> None:
        self.options, self.seed = options, int(seed)
        self.train_x, self.train_y, self.test_x, self.test_y = load_dataset(
            options.dataset, seed=self.seed, data_dir=options.data_dir or None, download=options.download,
            test_fraction=options.test_fraction)
        _check_batch(options, len(self.train_x))
        self.steps_per_epoch = len(self.train_x) // options.batch_size
        self.accuracy_pct = None

    def batch(self, iteration: int) -> tuple[np.ndarray, np.ndarray]:
        """Training batch ``iteration``: images [n, 1, 28, 28] float32 and int64 labels."""
        epoch, k = divmod(int(iteration), self.steps_per_epoch)
        order = np.random.default_rng((self.seed, BATCH_STREAM, epoch)).permutation(len(self.train_x))
        rows = order[k * self.options.batch_size:(k + 1) * self.options.batch_size]
        x = self.train_x[rows]
        if self.options.augment:
            x = random_crop(x, CROP_PADDING, np.random.default_rng((self.seed, CROP_STREAM, int(iteration))))
        return np.ascontiguousarray(x[:, None]), self.train_y[rows]

    def optimizer(self) -> tuple:
        """SGD with momentum; lr times lr_decay at each decay epoch (as iterations)."""
        o = self.options
        milestones = [e * self.steps_per_epoch for e in o.decay_epochs()]
        kwargs = {"lr": o.lr, "momentum": o.momentum}
        if milestones:
            kwargs.update(milestones=milestones, gamma=o.lr_decay)
        return ("sgd", kwargs)

    def test_chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        size = self.options.eval_batch_size
        for start in range(0, len(self.test_x), size):
            yield self.test_x[start:start + size, None], self.test_y[start:start + size]

    def error_pct(self, wrong: int) -> float:
        """Test error in percent from the count of wrong predictions (remembers the accuracy)."""
        error = 100.0 * wrong / len(self.test_x)
        self.accuracy_pct = 100.0 - error
        return error

    def extras(self) -> dict:
        return {"baseline_metric": CHANCE_ERROR_PCT, "accuracy_pct": self.accuracy_pct,
                "n_train": len(self.train_x), "n_test": len(self.test_x)}
