"""Real-data loader (validation.images.data): IDX parsing, bad inputs, MODEL.md preprocessing."""
import gzip
from pathlib import Path

import numpy as np
import pytest

import validation
from validation.images import data

# The MNIST test split of shared/ (beside the checkout, as CI lays it; else the workplace's copy).
MNIST = next((c for c in (Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist",
                          Path("/work/shared/data/mnist")) if c.exists()), Path("/work/shared/data/mnist"))
needs_mnist = pytest.mark.skipif(not (MNIST / "t10k-images-idx3-ubyte.gz").exists(),
                                 reason="MNIST test split not available")


def _images(rng, N=5, r=4, c=3):
    return rng.integers(0, 256, size=(N, r, c), dtype=np.uint8)


# ---------------------------------------------------------------- good files

@pytest.mark.parametrize("name", ["toy-images-idx3-ubyte", "toy-images-idx3-ubyte.gz"])
def test_roundtrip_plain_and_gzip(tmp_path, name):
    raw = _images(np.random.default_rng(0))
    data.write_idx(tmp_path / name, raw)
    np.testing.assert_array_equal(data.read_idx(tmp_path / name), raw)


def test_preprocessing_identities_on_small_file(tmp_path):
    raw = _images(np.random.default_rng(1), N=7)
    data.write_idx(tmp_path / "x-images-idx3-ubyte", raw)
    ds = data.load_dataset(tmp_path / "x-images-idx3-ubyte")
    X = ds.X
    assert X.dtype == np.float64 and X.shape == (7, 12)
    # pixels/255, pool mean removed, one global scale: X * scale + mean == raw / 255
    np.testing.assert_allclose(X * ds.scale + ds.mean, raw.reshape(7, -1) / 255.0, atol=1e-13)
    np.testing.assert_allclose(ds.mean, raw.reshape(7, -1).mean(0) / 255.0, atol=1e-15)
    assert np.trace(X.T @ X / 7) / 12 == pytest.approx(1.0, rel=1e-13)
    np.testing.assert_allclose(ds.to_pixels(X), raw / 255.0, atol=1e-13)


def test_folder_splits(tmp_path):
    rng = np.random.default_rng(2)
    tr, te = _images(rng, N=6), _images(rng, N=4)
    data.write_idx(tmp_path / "train-images-idx3-ubyte.gz", tr)
    data.write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", te)
    data.write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(6, np.uint8))
    assert validation.load_images(tmp_path).shape == (10, 12)
    assert validation.load_images(tmp_path, split="train").shape == (6, 12)
    assert validation.load_images(tmp_path, split="test").shape == (4, 12)
    pooled = np.concatenate([tr, te]).reshape(10, -1) / 255.0
    ds = data.load_dataset(tmp_path)
    np.testing.assert_allclose(ds.X * ds.scale + ds.mean, pooled, atol=1e-13)


# ---------------------------------------------------------------- bad inputs

def test_missing_file_names_it(tmp_path):
    missing = tmp_path / "nope-images-idx3-ubyte.gz"
    with pytest.raises(FileNotFoundError, match="nope-images"):
        validation.load_images(missing)
    with pytest.raises(ValueError, match="nope-images"):  # also a ValueError
        validation.load_images(missing)


@pytest.mark.parametrize("gz", [False, True])
def test_wrong_magic_number(tmp_path, gz):
    f = tmp_path / ("bad-images-idx3-ubyte" + (".gz" if gz else ""))
    body = b"\x12\x34\x08\x03" + np.array([1, 2, 2], ">i4").tobytes() + bytes(4)
    if gz:
        f.write_bytes(gzip.compress(body))
    else:
        f.write_bytes(body)
    with pytest.raises(ValueError, match=r"bad-images.*wrong magic number"):
        validation.load_images(f)


@pytest.mark.parametrize("cut", [2, 10, 4 + 12 + 7])
def test_truncated_file(tmp_path, cut):
    f = tmp_path / "cut-images-idx3-ubyte"
    data.write_idx(f, _images(np.random.default_rng(3), N=2, r=2, c=2))
    f.write_bytes(f.read_bytes()[:cut])
    with pytest.raises(ValueError, match=r"cut-images.*truncated"):
        validation.load_images(f)


def test_truncated_gzip_stream(tmp_path):
    f = tmp_path / "cut-images-idx3-ubyte.gz"
    data.write_idx(f, _images(np.random.default_rng(4), N=50, r=8, c=8))
    f.write_bytes(f.read_bytes()[:-40])
    with pytest.raises(ValueError, match=r"cut-images.*truncated"):
        validation.load_images(f)


def test_trailing_bytes_rejected(tmp_path):
    f = tmp_path / "long-images-idx3-ubyte"
    data.write_idx(f, _images(np.random.default_rng(5)))
    f.write_bytes(f.read_bytes() + b"\x00\x00")
    with pytest.raises(ValueError, match=r"long-images.*unexpected bytes"):
        validation.load_images(f)


def test_labels_file_is_not_images(tmp_path):
    f = tmp_path / "train-labels-idx1-ubyte"
    data.write_idx(f, np.arange(5, dtype=np.uint8))
    with pytest.raises(ValueError, match="train-labels.*expected unsigned-byte images"):
        validation.load_images(f)


def test_folder_without_dataset(tmp_path):
    (tmp_path / "fashion").mkdir()
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(ValueError, match=r"no IDX images file.*fashion"):
        validation.load_images(tmp_path)


def test_folder_with_ambiguous_dataset(tmp_path):
    rng = np.random.default_rng(6)
    data.write_idx(tmp_path / "train-images-idx3-ubyte.gz", _images(rng))
    data.write_idx(tmp_path / "train_images_idx3_ubyte", _images(rng))
    with pytest.raises(ValueError, match=r"ambiguous dataset.*train"):
        validation.load_images(tmp_path)


def test_folder_with_unknown_split(tmp_path):
    data.write_idx(tmp_path / "extra-images-idx3-ubyte", _images(np.random.default_rng(7)))
    with pytest.raises(ValueError, match="unknown split"):
        validation.load_images(tmp_path)


def test_bad_split_and_downsample(tmp_path):
    data.write_idx(tmp_path / "t10k-images-idx3-ubyte", _images(np.random.default_rng(8)))
    with pytest.raises(ValueError, match="split must be"):
        validation.load_images(tmp_path, split="validation")
    with pytest.raises(ValueError, match="no train images"):
        validation.load_images(tmp_path, split="train")
    with pytest.raises(ValueError, match="downsample"):
        validation.load_images(tmp_path, downsample=0)


def test_constant_images_rejected(tmp_path):
    data.write_idx(tmp_path / "c-images-idx3-ubyte", np.full((3, 2, 2), 7, np.uint8))
    with pytest.raises(ValueError, match="identical"):
        validation.load_images(tmp_path / "c-images-idx3-ubyte")


# ---------------------------------------------------------------- the real MNIST test split

@needs_mnist
def test_mnist_test_split_preprocessing():
    ds = data.load_dataset(MNIST)
    X = ds.X
    assert X.shape == (10_000, 784) and X.dtype == np.float64
    assert np.abs(X.mean(axis=0)).max() < 1e-12
    assert np.einsum("ij,ij->", X, X) / X.size == pytest.approx(1.0, rel=1e-12)
    raw = data.read_idx(MNIST / "t10k-images-idx3-ubyte.gz")
    np.testing.assert_allclose(X[:50] * ds.scale + ds.mean, raw[:50].reshape(50, -1) / 255.0, atol=1e-12)
    eig = data.spectrum(X)
    assert eig.shape == (784,) and np.all(eig >= 0) and np.all(np.diff(eig) <= 1e-9)
    assert eig.mean() == pytest.approx(1.0, rel=1e-10)      # tr Σ̂/d = 1
    assert eig[0] > 20 * eig.mean()                          # strongly anisotropic
    # pixels constant over the split (the borders) give exact zero eigenvalues
    n_const = int(np.sum(raw.reshape(len(raw), -1).std(axis=0) == 0))
    assert n_const > 0 and np.sum(eig == 0) >= n_const


def test_gaussian_like_has_the_pool_covariance():
    rng = np.random.default_rng(9)
    X = rng.standard_normal((400, 5)) @ np.diag([3.0, 1.0, 0.5, 0.3, 0.2])
    X -= X.mean(0)
    G = data.gaussian_like(X, 200_000, np.random.default_rng(10))
    np.testing.assert_allclose(np.sort(data.spectrum(G)), np.sort(data.spectrum(X)), rtol=0.03)
