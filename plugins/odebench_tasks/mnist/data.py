"""MNIST and scikit-learn's 8x8 digits as numpy arrays, with every data problem reported clearly.

MNIST comes as four IDX files (gzip or raw).  Files downloaded into the cache are
checked against MNIST's md5 sums; a folder the user supplies is only checked for
structure, so Fashion-MNIST (same names, same format) can be dropped in.  The digits
set ships with scikit-learn, needs no download, and is upsampled and padded to 28x28
so the MNIST model (and its parameter count) runs on it unchanged.
"""

from __future__ import annotations

import functools
import gzip
import numbers
import os
import zlib
from pathlib import Path
from typing import NamedTuple, Optional, Union

import numpy as np

from odebench.errors import InvalidInputError, MissingDependencyError

from .._common.download import DownloadError, data_root, describe_failures, fetch

MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

#: md5 sums of the gzip files as published (checked on download only).
MD5: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

#: The four files, without ``.gz``, in the order of the ``MNIST`` fields.
STEMS: tuple[str, ...] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

DATASETS: tuple[str, ...] = ("digits", "mnist")

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
SIDE = 28
_GZIP_MAGIC = b"\x1f\x8b"

PathLike = Union[str, os.PathLike]


class MNIST(NamedTuple):
    """The official split as read from disk (uint8, read-only because it is cached)."""

    train_images: np.ndarray  # [N, 28, 28]
    train_labels: np.ndarray  # [N]
    test_images: np.ndarray
    test_labels: np.ndarray
    folder: Path


# ------------------------------------------------------------------------ IDX files


def _read_bytes(path: Path) -> bytes:
    """A file's content, gunzipped when it starts with the gzip magic (names can lie)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path.name} in {path.parent}: {exc.strerror or exc}") from exc
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise InvalidInputError(
            f"{path.name} in {path.parent} is not a readable gzip file ({exc}); "
            "replace it with an intact copy (gzip or uncompressed IDX)"
        ) from exc


def read_idx(path: PathLike) -> np.ndarray:
    """An IDX images ([n, rows, cols]) or labels ([n]) file as uint8, gzip or raw.

    The length must match the header exactly, so truncated or concatenated files fail
    here instead of silently training on part of the data.
    """
    path = Path(path)
    data = _read_bytes(path)
    where = f"{path.name} in {path.parent}"
    if len(data) < 8:
        raise InvalidInputError(f"{where} holds {len(data)} bytes, too short for an IDX header; replace it")
    magic = int.from_bytes(data[:4], "big")
    if magic not in (IMAGES_MAGIC, LABELS_MAGIC):
        raise InvalidInputError(
            f"{where} has magic number {magic}, expected {IMAGES_MAGIC} (images) or {LABELS_MAGIC} (labels); "
            "it is not an MNIST-style IDX file"
        )
    ndim = 3 if magic == IMAGES_MAGIC else 1
    header = 4 + 4 * ndim
    if len(data) < header:
        raise InvalidInputError(f"{where} holds {len(data)} bytes, shorter than its {header}-byte header; replace it")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    promised = int(np.prod(shape))
    if len(data) - header != promised:
        raise InvalidInputError(
            f"{where} holds {len(data) - header} bytes of data, its header promises {promised} "
            f"(shape {shape}); the file is truncated or corrupt, replace it"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def find_file(folder: PathLike, stem: str) -> Optional[Path]:
    """``folder/stem`` (raw, as torchvision unpacks it) or else ``folder/stem.gz``; None if neither."""
    for name in (stem, stem + ".gz"):
        path = Path(folder) / name
        if path.is_file():
            return path
    return None


def _check_pair(images: np.ndarray, labels: np.ndarray, img_path: Path, lbl_path: Path) -> None:
    """Structure checks that hold for MNIST and Fashion-MNIST alike."""
    if images.ndim != 3:
        raise InvalidInputError(f"{img_path.name} in {img_path.parent} holds labels, expected images (magic 2051)")
    if labels.ndim != 1:
        raise InvalidInputError(f"{lbl_path.name} in {lbl_path.parent} holds images, expected labels (magic 2049)")
    if images.shape[1:] != (SIDE, SIDE):
        raise InvalidInputError(
            f"{img_path.name} in {img_path.parent} holds {images.shape[1]}x{images.shape[2]} images, "
            f"expected {SIDE}x{SIDE}"
        )
    if len(images) != len(labels):
        raise InvalidInputError(
            f"{img_path.name} holds {len(images)} images but {lbl_path.name} holds {len(labels)} labels "
            f"(in {img_path.parent}); the counts must match"
        )
    if len(labels) and labels.max() > 9:
        raise InvalidInputError(
            f"{lbl_path.name} in {lbl_path.parent} holds label {int(labels.max())}, allowed labels are 0..9"
        )


@functools.lru_cache(maxsize=4)
def _read_set(key: tuple[tuple[str, int, int], ...]) -> tuple[np.ndarray, ...]:
    """Parse and check the four files; cached on (path, mtime, size) so reloading per cell is free."""
    paths = [Path(p) for p, _, _ in key]
    arrays = [read_idx(p) for p in paths]
    _check_pair(arrays[0], arrays[1], paths[0], paths[1])
    _check_pair(arrays[2], arrays[3], paths[2], paths[3])
    for a in arrays:
        a.setflags(write=False)
    return tuple(arrays)


# ------------------------------------------------------------------------ MNIST


def _download_missing(folder: Path, missing: list[str]) -> None:
    """Fetch the missing files into the cache; on failure name all files still missing."""
    for i, stem in enumerate(missing):
        name = stem + ".gz"
        try:
            fetch(name, MIRRORS, folder, MD5[name])
        except DownloadError as exc:
            raise InvalidInputError(
                f"MNIST files missing from {folder}: {', '.join(missing[i:])}; downloading {name} failed "
                f"({describe_failures(exc.failures)}); download them from {MIRRORS[0]} into that folder, "
                "or pass --opt data_dir=FOLDER"
            ) from exc


def _locate(data_dir: Optional[PathLike], download: bool) -> list[Path]:
    """Paths of the four files: a user folder is taken as is, the cache is filled by download."""
    folder = Path(data_dir).expanduser() if data_dir is not None else data_root() / "mnist"
    if data_dir is not None and not folder.is_dir():
        raise InvalidInputError(f"MNIST data_dir {folder} is not a folder; pass a folder holding the four IDX files")
    missing = [stem for stem in STEMS if find_file(folder, stem) is None]
    if missing and data_dir is not None:
        raise InvalidInputError(
            f"MNIST folder {folder} lacks {', '.join(missing)} (each may be raw or .gz); "
            f"put them there (e.g. from {MIRRORS[0]}) or omit data_dir to download into the cache"
        )
    if missing and not download:
        raise InvalidInputError(
            f"MNIST files missing from {folder}: {', '.join(missing)}; download them from {MIRRORS[0]} "
            "into that folder, allow the download, or pass --opt data_dir=FOLDER"
        )
    if missing:
        _download_missing(folder, missing)
    return [find_file(folder, stem) for stem in STEMS]


def load_mnist(data_dir: Optional[PathLike] = None, download: bool = True) -> MNIST:
    """MNIST's official split as uint8 arrays, from ``data_dir`` or the (downloading) cache."""
    paths = [p.resolve() for p in _locate(data_dir, download)]
    stats = [p.stat() for p in paths]
    key = tuple((str(p), st.st_mtime_ns, st.st_size) for p, st in zip(paths, stats))
    return MNIST(*_read_set(key), folder=paths[0].parent)


def check_mnist(data_dir: Optional[PathLike] = None, download: bool = True) -> str:
    """Load MNIST once so a task fails before any cell runs; returns a one-line summary."""
    m = load_mnist(data_dir, download)
    return f"MNIST: {len(m.train_images)} train, {len(m.test_images)} test images from {m.folder}"


def mnist_arrays(data_dir: Optional[PathLike] = None, download: bool = True):
    """MNIST as float32 images in [0, 1] and int64 labels, the form every task model takes."""
    m = load_mnist(data_dir, download)
    return (m.train_images.astype(np.float32) / 255.0, m.train_labels.astype(np.int64),
            m.test_images.astype(np.float32) / 255.0, m.test_labels.astype(np.int64))


# ------------------------------------------------------------------------ digits


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] weights of 1-D linear interpolation with pixel centres aligned.

    Same convention as ``torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False)``: output pixel j samples input coordinate
    ``(j + 0.5) * n_in / n_out - 0.5``, clamped to the edge pixels.
    """
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    weights = np.zeros((n_out, n_in))
    np.add.at(weights, (np.arange(n_out), lo), 1.0 - frac)
    np.add.at(weights, (np.arange(n_out), hi), frac)
    return weights


def upsample_bilinear(images: np.ndarray, size: int) -> np.ndarray:
    """Resize [n, h, w] images to [n, size, size]; separable, so two small matrix products."""
    rows = bilinear_matrix(images.shape[1], size)
    cols = bilinear_matrix(images.shape[2], size)
    return rows @ images @ cols.T


@functools.lru_cache(maxsize=1)
def _digits_28() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as 28x28 float32 in [0, 1]: 8x8 -> 24x24, then a 2-pixel zero border
    (MNIST digits also sit in a 20x20 box centred in 28x28)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise MissingDependencyError(
            "the digits data set needs scikit-learn; install it with 'pip install scikit-learn' "
            "or use the mnist data set"
        ) from exc
    digits = load_digits()
    big = upsample_bilinear(digits.images / 16.0, 24)
    x = np.pad(big, ((0, 0), (2, 2), (2, 2))).astype(np.float32)
    y = digits.target.astype(np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _stratified_split(labels: np.ndarray, seed: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices: per class, a seeded shuffle puts round(fraction * count) in test.

    Indices come back sorted, so neither split is grouped by class.
    """
    rng = np.random.default_rng((seed, 3))
    train, test = [], []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        k = round(test_fraction * len(idx))
        if not 0 < k < len(idx):
            raise InvalidInputError(
                f"test_fraction={test_fraction} puts {k} of the {len(idx)} images of digit {cls} in test; "
                "choose a fraction that leaves every class at least one train and one test image"
            )
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _check_seed(seed) -> int:
    """Seeds must be non-negative integers (numpy's SeedSequence rejects the rest less clearly)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def load_digits_28(seed: int, test_fraction: float = 0.2):
    """scikit-learn's digits as MNIST-shaped (train_x, train_y, test_x, test_y), split by ``seed``.

    An offline stand-in for MNIST: float32 images [n, 28, 28] in [0, 1], int64 labels.
    """
    seed = _check_seed(seed)
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real) \
            or not 0.0 < test_fraction < 1.0:
        raise InvalidInputError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
    x, y = _digits_28()
    train, test = _stratified_split(y, seed, float(test_fraction))
    return x[train], y[train], x[test], y[test]


def load_dataset(name: str, *, seed: int, data_dir: Optional[PathLike] = None, download: bool = True,
                 test_fraction: float = 0.2):
    """(train_x, train_y, test_x, test_y) for ``name`` in ``DATASETS``, all in one form.

    For ``mnist`` the official split is used, so ``seed`` and ``test_fraction`` do not apply.
    """
    if name == "digits":
        return load_digits_28(seed, test_fraction)
    if name == "mnist":
        return mnist_arrays(data_dir, download)
    raise InvalidInputError(f"unknown dataset {name!r}; allowed datasets: {', '.join(DATASETS)}")


def random_crop(images: np.ndarray, padding: int, rng: np.random.Generator) -> np.ndarray:
    """torchvision's ``RandomCrop(size, padding)`` for a batch [n, h, w]: zero-pad, then crop
    an h x w window at an offset drawn uniformly from [0, 2 * padding] per image and axis."""
    if isinstance(padding, bool) or not isinstance(padding, numbers.Integral) or padding < 0:
        raise InvalidInputError(f"padding must be a non-negative integer, got {padding!r}")
    images = np.asarray(images)
    if images.ndim != 3:
        raise InvalidInputError(f"random_crop takes images of shape [n, h, w], got shape {images.shape}")
    n, h, w = images.shape
    padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(1, 2))
    dy, dx = rng.integers(0, 2 * padding + 1, size=(2, n))
    return windows[np.arange(n), dy, dx]
