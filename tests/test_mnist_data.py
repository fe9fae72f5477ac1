"""MNIST / digits data layer (odebench_tasks.mnist.data, _common.download), all offline.

Every MNIST test writes its own tiny IDX files into tmp_path; downloads use file:// mirrors.
"""

import gzip
import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from odebench.errors import InvalidInputError

try:
    from odebench_tasks.mnist import data as md
except ImportError:  # editable install made before plugins/odebench_tasks existed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))
    from odebench_tasks.mnist import data as md
from odebench_tasks._common import download as dl

N_TRAIN, N_TEST = 5, 3
TRAIN_IMG, TRAIN_LBL, TEST_IMG, TEST_LBL = md.STEMS


# ------------------------------------------------------------------ helpers


def idx_bytes(array, magic=None):
    """An IDX file's bytes for a uint8 array (images [n, r, c] or labels [n])."""
    array = np.asarray(array, dtype=np.uint8)
    magic = magic if magic is not None else (2051 if array.ndim == 3 else 2049)
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def make_set(offset=0):
    """Small train/test arrays with distinct, known pixel values (offset gives 'other content')."""
    rng = np.random.default_rng(offset)
    return {
        TRAIN_IMG: rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        TRAIN_LBL: np.array([0, 9, 3, 3, 7], dtype=np.uint8),
        TEST_IMG: rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        TEST_LBL: np.array([1, 2, 9], dtype=np.uint8),
    }


def write_set(folder, arrays, gz=True, overrides=None):
    """Write the four files (``.gz`` or raw); ``overrides`` maps stem -> raw bytes to write instead."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        content = (overrides or {}).get(stem, idx_bytes(array))
        if gz:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(content))
        else:
            (folder / stem).write_bytes(content)
    return folder


def assert_one_line_error(excinfo, *needles):
    text = str(excinfo.value)
    assert "\n" not in text
    for needle in needles:
        assert needle in text, (needle, text)


def assert_loaded(m, arrays):
    for got, stem in zip(m[:4], md.STEMS):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, arrays[stem])


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A file:// mirror holding gzip files; the module's mirrors, md5 table and cache point at it."""
    arrays = make_set()
    folder = write_set(tmp_path / "mirror", arrays)
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    monkeypatch.setattr(md, "MIRRORS", (folder.as_uri() + "/",))
    monkeypatch.setattr(md, "MD5", md5)
    monkeypatch.setenv("ODEBENCH_DATA", str(tmp_path / "cache"))
    return arrays, tmp_path / "cache" / "mnist"


# ------------------------------------------------------------------ reading IDX files


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, gz):
    arrays = make_set()
    write_set(tmp_path, arrays, gz=gz)
    for stem, array in arrays.items():
        got = md.read_idx(md.find_file(tmp_path, stem))
        assert got.dtype == np.uint8 and got.shape == array.shape
        np.testing.assert_array_equal(got, array)


def test_gzip_detected_by_content_not_name(tmp_path):
    labels = np.array([4, 5, 6], dtype=np.uint8)
    (tmp_path / "labels").write_bytes(gzip.compress(idx_bytes(labels)))
    (tmp_path / "labels.gz").write_bytes(idx_bytes(labels))
    np.testing.assert_array_equal(md.read_idx(tmp_path / "labels"), labels)
    np.testing.assert_array_equal(md.read_idx(tmp_path / "labels.gz"), labels)


def test_load_user_folder_mixed_raw_and_gzip(tmp_path):
    arrays = make_set()
    write_set(tmp_path, {k: v for k, v in arrays.items() if "train" in k}, gz=False)
    write_set(tmp_path, {k: v for k, v in arrays.items() if "t10k" in k}, gz=True)
    m = md.load_mnist(tmp_path, download=False)
    assert_loaded(m, arrays)
    assert m.folder == tmp_path.resolve()
    assert md.check_mnist(tmp_path) == f"MNIST: {N_TRAIN} train, {N_TEST} test images from {tmp_path.resolve()}"


def test_fashion_like_folder_loads_without_checksums(tmp_path, monkeypatch):
    """A user folder is checked for structure only; the download path is never taken."""
    def no_fetch(*args, **kwargs):
        raise AssertionError("a user folder must not trigger a download")

    monkeypatch.setattr(md, "fetch", no_fetch)
    arrays = make_set(offset=7)
    write_set(tmp_path, arrays)
    assert not {dl.md5_of(p) for p in tmp_path.iterdir()} & set(md.MD5.values())
    assert_loaded(md.load_mnist(tmp_path), arrays)


def test_parsed_arrays_are_cached_until_files_change(tmp_path):
    arrays = make_set()
    write_set(tmp_path, arrays, gz=False)
    first, second = md.load_mnist(tmp_path), md.load_mnist(tmp_path)
    assert first.train_images is second.train_images
    assert not first.train_images.flags.writeable  # a cached array must not be edited in place
    path = write_set(tmp_path, {TEST_LBL: np.array([5, 5, 5])}, gz=False) / TEST_LBL
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # same size: only mtime tells
    np.testing.assert_array_equal(md.load_mnist(tmp_path).test_labels, [5, 5, 5])


# ------------------------------------------------------------------ bad files


def _truncated():
    return idx_bytes(make_set()[TRAIN_IMG])[:-10]


BAD_FILES = {
    "truncated": (TRAIN_IMG, _truncated(), [TRAIN_IMG, f"holds {N_TRAIN * 784 - 10} bytes of data",
                                            f"promises {N_TRAIN * 784}"]),
    "too long": (TEST_LBL, idx_bytes(make_set()[TEST_LBL]) + b"\0", [TEST_LBL, "holds 4 bytes of data"]),
    "wrong magic": (TRAIN_LBL, idx_bytes(make_set()[TRAIN_LBL], magic=2050),
                    [TRAIN_LBL, "magic number 2050", "expected 2051 (images) or 2049 (labels)"]),
    "labels file for images": (TEST_IMG, idx_bytes(make_set()[TEST_LBL]), [TEST_IMG, "expected images"]),
    "label 10": (TRAIN_LBL, idx_bytes([0, 10, 3, 3, 7]), [TRAIN_LBL, "label 10", "0..9"]),
    "27x28 images": (TEST_IMG, idx_bytes(np.zeros((N_TEST, 27, 28))), [TEST_IMG, "27x28", "expected 28x28"]),
    "count mismatch": (TEST_LBL, idx_bytes([1, 2]), [TEST_IMG, TEST_LBL, "3 images", "2 labels"]),
    "header only part": (TRAIN_LBL, b"\x00\x00\x08", [TRAIN_LBL, "3 bytes"]),
}


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_is_a_one_line_error(tmp_path, case, gz):
    stem, content, needles = BAD_FILES[case]
    write_set(tmp_path, make_set(), gz=gz, overrides={stem: content})
    with pytest.raises(InvalidInputError) as excinfo:
        md.load_mnist(tmp_path)
    assert_one_line_error(excinfo, *needles, str(tmp_path))


def test_unreadable_gzip(tmp_path):
    write_set(tmp_path, make_set())
    (tmp_path / (TRAIN_IMG + ".gz")).write_bytes(gzip.compress(b"x" * 5000)[:30])
    with pytest.raises(InvalidInputError) as excinfo:
        md.load_mnist(tmp_path)
    assert_one_line_error(excinfo, TRAIN_IMG + ".gz", "not a readable gzip file")


def test_missing_files_in_user_folder(tmp_path):
    arrays = make_set()
    write_set(tmp_path, {k: arrays[k] for k in (TRAIN_IMG, TEST_LBL)})
    with pytest.raises(InvalidInputError) as excinfo:
        md.load_mnist(tmp_path, download=True)
    assert_one_line_error(excinfo, TRAIN_LBL, TEST_IMG, str(tmp_path))
    assert TRAIN_IMG not in str(excinfo.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == [TEST_LBL + ".gz", TRAIN_IMG + ".gz"]


def test_data_dir_that_is_not_a_folder(tmp_path):
    with pytest.raises(InvalidInputError) as excinfo:
        md.load_mnist(tmp_path / "nope")
    assert_one_line_error(excinfo, str(tmp_path / "nope"), "not a folder")


# ------------------------------------------------------------------ downloads


def test_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("ODEBENCH_DATA", str(tmp_path))
    assert dl.data_root() == tmp_path
    monkeypatch.delenv("ODEBENCH_DATA")
    assert dl.data_root() == Path.home() / ".cache" / "odebench"


def test_download_into_cache(mirror):
    arrays, cache = mirror
    m = md.load_mnist(download=True)
    assert sorted(p.name for p in cache.iterdir()) == sorted(s + ".gz" for s in md.STEMS)
    assert_loaded(m, arrays)
    assert m.folder == cache.resolve()
    for p in cache.iterdir():
        assert dl.md5_of(p) == md.MD5[p.name]


def test_download_only_the_missing_files(mirror):
    arrays, cache = mirror
    write_set(cache, {TRAIN_IMG: arrays[TRAIN_IMG]}, gz=False)
    md.load_mnist()
    assert sorted(p.name for p in cache.iterdir()) == sorted([TRAIN_IMG] + [s + ".gz" for s in md.STEMS[1:]])


def test_wrong_md5_leaves_nothing_behind(mirror, monkeypatch):
    _, cache = mirror
    monkeypatch.setitem(md.MD5, TRAIN_IMG + ".gz", "0" * 32)
    with pytest.raises(InvalidInputError) as excinfo:
        md.load_mnist()
    assert_one_line_error(excinfo, "md5", "0" * 32, TRAIN_IMG, str(cache))
    assert list(cache.iterdir()) == []


def test_unreachable_mirror_then_good_one(mirror, monkeypatch):
    arrays, cache = mirror
    monkeypatch.setattr(md, "MIRRORS", ("file:///nonexistent/",) + md.MIRRORS)
    assert_loaded(md.load_mnist(), arrays)


def test_all_mirrors_failing(mirror, monkeypatch, tmp_path):
    _, cache = mirror
    monkeypatch.setattr(md, "MIRRORS", ("file:///nonexistent/", (tmp_path / "empty").as_uri() + "/"))
    with pytest.raises(InvalidInputError) as excinfo:
        md.load_mnist()
    assert_one_line_error(excinfo, *md.STEMS, str(cache), "file:///nonexistent/", "data_dir")
    assert list(cache.iterdir()) == []


def test_download_false_names_missing_files(mirror):
    arrays, cache = mirror
    write_set(cache, {TRAIN_IMG: arrays[TRAIN_IMG]})
    with pytest.raises(InvalidInputError) as excinfo:
        md.load_mnist(download=False)
    assert_one_line_error(excinfo, *md.STEMS[1:], str(cache), md.MIRRORS[0])
    assert TRAIN_IMG not in str(excinfo.value)
    assert [p.name for p in cache.iterdir()] == [TRAIN_IMG + ".gz"]


def test_fetch_error_names_file_folder_and_reasons(tmp_path):
    good = tmp_path / "m"
    good.mkdir()
    (good / "f.bin").write_bytes(b"abc")
    mirrors = ["file:///nonexistent/", good.as_uri() + "/"]
    with pytest.raises(dl.DownloadError) as excinfo:
        dl.fetch("f.bin", mirrors, tmp_path / "dest", md5="1" * 32)
    assert_one_line_error(excinfo, "f.bin", str(tmp_path / "dest"), *mirrors, "md5", "by hand")
    assert [m for m, _ in excinfo.value.failures] == mirrors
    assert list((tmp_path / "dest").iterdir()) == []
    target = dl.fetch("f.bin", mirrors, tmp_path / "dest", md5=hashlib.md5(b"abc").hexdigest())
    assert target == tmp_path / "dest" / "f.bin" and target.read_bytes() == b"abc"


# ------------------------------------------------------------------ float arrays / dataset names


def test_load_dataset_mnist_is_float_in_unit_range(tmp_path):
    arrays = make_set()
    write_set(tmp_path, arrays)
    tx, ty, vx, vy = md.load_dataset("mnist", seed=3, data_dir=tmp_path)
    assert tx.dtype == np.float32 and ty.dtype == np.int64
    np.testing.assert_allclose(tx * 255, arrays[TRAIN_IMG], atol=1e-4)
    np.testing.assert_array_equal(vy, arrays[TEST_LBL])
    again = md.load_dataset("mnist", seed=99, data_dir=tmp_path)
    np.testing.assert_array_equal(again[2], vx)


def test_unknown_dataset_name():
    with pytest.raises(InvalidInputError) as excinfo:
        md.load_dataset("cifar", seed=0)
    assert_one_line_error(excinfo, "cifar", "digits", "mnist")


# ------------------------------------------------------------------ digits


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    return md.load_digits_28(seed=0)


def test_digits_shapes_range_and_stratified_split(digits):
    tx, ty, vx, vy = digits
    assert tx.shape[1:] == vx.shape[1:] == (28, 28)
    assert len(tx) + len(vx) == 1797 and len(tx) == len(ty) and len(vx) == len(vy)
    assert tx.dtype == vx.dtype == np.float32 and ty.dtype == vy.dtype == np.int64
    assert tx.min() == 0.0 and tx.max() <= 1.0 and tx.max() > 0.9
    assert set(np.unique(ty)) == set(np.unique(vy)) == set(range(10))
    counts = np.bincount(np.concatenate([ty, vy]))
    np.testing.assert_array_equal(np.bincount(vy), [round(0.2 * c) for c in counts])


def test_digits_border_is_zero(digits):
    for x in (digits[0], digits[2]):
        assert not x[:, :2].any() and not x[:, -2:].any()
        assert not x[:, :, :2].any() and not x[:, :, -2:].any()
        assert x[:, 2:-2, 2:-2].any(axis=(1, 2)).all()


def test_digits_split_is_seeded_and_disjoint(digits):
    again = md.load_digits_28(seed=0)
    for a, b in zip(digits, again):
        np.testing.assert_array_equal(a, b)
    other = md.load_digits_28(seed=1)
    assert other[2].shape == digits[2].shape and not np.array_equal(other[2], digits[2])
    train_rows = {row.tobytes() for row in digits[0]}
    assert not any(row.tobytes() in train_rows for row in digits[2])
    assert len(train_rows) == len(digits[0])


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 0.001, 0.999, float("nan"), True])
def test_digits_bad_test_fraction(fraction):
    pytest.importorskip("sklearn")
    with pytest.raises(InvalidInputError) as excinfo:
        md.load_digits_28(seed=0, test_fraction=fraction)
    assert_one_line_error(excinfo, "test_fraction")


def test_bilinear_constant_and_ramp():
    const = md.upsample_bilinear(np.full((1, 8, 8), 0.7), 24)
    np.testing.assert_allclose(const, 0.7)
    ramp = md.upsample_bilinear(np.tile(np.arange(8.0), (1, 8, 1)), 24)[0]
    j = np.arange(1, 23)
    np.testing.assert_allclose(ramp[:, 1:23], np.tile((j + 0.5) / 3 - 0.5, (24, 1)), atol=1e-12)
    np.testing.assert_allclose(ramp[:, [0, 23]], [[0.0, 7.0]] * 24)  # clamped at the edges
    np.testing.assert_allclose(md.bilinear_matrix(8, 24).sum(axis=1), 1.0)


# ------------------------------------------------------------------ random crop


def test_random_crop_padding_zero_is_identity():
    x = np.random.default_rng(0).random((6, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(md.random_crop(x, 0, np.random.default_rng(1)), x)


def test_random_crop_takes_windows_of_padded_input():
    x = np.random.default_rng(0).random((12, 28, 28), dtype=np.float32) + 0.5
    out = md.random_crop(x, 4, np.random.default_rng(5))
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = np.pad(x, ((0, 0), (4, 4), (4, 4)))
    offsets = []
    for i in range(len(x)):
        hits = [(dy, dx) for dy in range(9) for dx in range(9)
                if np.array_equal(padded[i, dy:dy + 28, dx:dx + 28], out[i])]
        assert len(hits) == 1
        offsets.append(hits[0])
    assert len(set(offsets)) > 1
    np.testing.assert_array_equal(md.random_crop(x, 4, np.random.default_rng(5)), out)


def test_random_crop_rejects_bad_padding():
    with pytest.raises(InvalidInputError):
        md.random_crop(np.zeros((1, 28, 28)), -1, np.random.default_rng(0))
