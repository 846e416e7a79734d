"""Real image data: IDX reader, the MODEL.md preprocessing and the pool's covariance spectrum.

IDX format (LeCun et al., *The MNIST database*): a big-endian header ``0x00 0x00 T D``
(``T`` the element type, ``0x08`` = unsigned byte; ``D`` the number of dimensions), then
``D`` big-endian ``int32`` sizes, then the elements in C order.  Files may be gzip-compressed
(``.gz``).

Preprocessing (MODEL.md, "Real data"), applied to the *pool* of images that is loaded:

1. flatten each ``rows x cols`` image to ``d = rows * cols`` pixels and divide by 255;
2. subtract the pool's mean image ``x̄``;
3. divide by one global scale ``c`` so that ``tr Σ̂ / d = 1`` with
   ``Σ̂ = (1/N) Σ_i (x_i - x̄)(x_i - x̄)^T`` (the ``1/N`` convention, so that the
   returned array ``X`` satisfies ``‖X‖_F² / (N d) = 1`` exactly).

A folder is read as *one* dataset in the usual layout (``train-images-idx3-ubyte[.gz]``,
``t10k-images-idx3-ubyte[.gz]``): ``split="all"`` (default) pools every images split found
in the folder (train + test), ``split="train"`` / ``"test"`` picks one.  The MNIST test split
and Fashion-MNIST (Debian package ``dataset-fashion-mnist``, installed at
``/usr/share/datasets/fashion-mnist``) have this layout.

Examples
--------
>>> import numpy as np, tempfile, pathlib
>>> raw = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
>>> f = pathlib.Path(tempfile.mkdtemp()) / "toy-images-idx3-ubyte"
>>> write_idx(f, raw)
>>> X = load_images(f)
>>> X.shape, bool(abs((X ** 2).sum() / X.size - 1) < 1e-12), bool(abs(X.mean(0)).max() < 1e-12)
((2, 6), True, True)
"""
from __future__ import annotations

import gzip
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from validation.simulation.problem import check_data, check_reals

#: IDX element types: code -> numpy big-endian dtype.
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

SPLITS = ("all", "train", "test")


class DataFileError(ValueError):
    """A data file or folder that cannot be read as an image dataset (the message names it)."""


class MissingDataError(DataFileError, FileNotFoundError):
    """The path does not exist (also a :class:`FileNotFoundError`)."""


# ----------------------------------------------------------------------------------
# IDX files


def _read_bytes(path: Path, count: int = -1) -> bytes:
    """The bytes of ``path`` (the first ``count`` only, if given), decompressed for ``.gz``."""
    if not path.exists():
        raise MissingDataError(f"data file not found: {path}")
    if not path.is_file():
        raise DataFileError(f"not a regular file: {path}")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read(count)
        with path.open("rb") as fh:
            return fh.read(count)
    except (EOFError, gzip.BadGzipFile, OSError) as exc:
        raise DataFileError(f"{path}: cannot decompress/read ({exc}); the file is truncated or "
                            f"not gzip data") from exc


def read_idx(path) -> np.ndarray:
    """Read one IDX file (plain or ``.gz``) into an array of its declared shape and type.

    Raises :class:`MissingDataError` for a missing file and :class:`DataFileError`
    (a ``ValueError`` naming the file) for a wrong magic number, an unknown element
    type, or a body shorter or longer than the header declares.
    """
    path = Path(path)
    buf = _read_bytes(path)
    if len(buf) < 4:
        raise DataFileError(f"{path}: truncated IDX file ({len(buf)} bytes, no complete header)")
    if buf[0] != 0 or buf[1] != 0 or buf[2] not in IDX_TYPES or buf[3] == 0:
        raise DataFileError(f"{path}: wrong magic number 0x{buf[:4].hex()} (an IDX file starts "
                            f"with 00 00, a type byte in {{{', '.join(f'{k:#04x}' for k in IDX_TYPES)}}} "
                            f"and the number of dimensions)")
    dtype = np.dtype(IDX_TYPES[buf[2]])
    ndim = buf[3]
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise DataFileError(f"{path}: truncated IDX header ({len(buf)} bytes, {header} needed "
                            f"for {ndim} dimensions)")
    shape = tuple(int(s) for s in np.frombuffer(buf, dtype=">i4", count=ndim, offset=4))
    if any(s < 0 for s in shape):
        raise DataFileError(f"{path}: negative dimension in IDX header {shape}")
    expected = math.prod(shape) * dtype.itemsize
    body = len(buf) - header
    if body < expected:
        raise DataFileError(f"{path}: truncated IDX file: header declares shape {shape} "
                            f"({expected} data bytes) but only {body} bytes follow")
    if body > expected:
        raise DataFileError(f"{path}: {body - expected} unexpected bytes after the {expected} data "
                            f"bytes declared by the IDX header (shape {shape})")
    return np.frombuffer(buf, dtype=dtype, count=math.prod(shape), offset=header).reshape(shape)


def image_shape_of(path) -> tuple[int, int, int]:
    """``(N, rows, cols)`` declared by the IDX images file ``path``, from its header only.

    The cheap check of a data path before any work: the magic number, unsigned-byte elements,
    three dimensions and (for a plain file) the file size the header implies; the full check
    is :func:`read_idx`'s.  :class:`DataFileError` (a ``ValueError`` naming the file) otherwise.
    """
    path = Path(path)
    buf = _read_bytes(path, 16)
    if len(buf) < 4:
        raise DataFileError(f"{path}: not an IDX file ({len(buf)} bytes, shorter than an IDX header)")
    if buf[0] != 0 or buf[1] != 0 or buf[2] not in IDX_TYPES or buf[3] == 0:
        raise DataFileError(f"{path}: not an IDX file (it starts with 0x{buf[:4].hex()}; an IDX file "
                            f"starts with 00 00, a type byte and the number of dimensions)")
    if buf[2] != 0x08 or buf[3] != 3 or len(buf) < 16:
        raise DataFileError(f"{path}: expected unsigned-byte images of shape (N, rows, cols), got IDX "
                            f"type {buf[2]:#04x} with {buf[3]} dimensions (a labels file?)")
    shape = tuple(int(v) for v in np.frombuffer(buf, dtype=">i4", count=3, offset=4))
    if min(shape) < 1:
        raise DataFileError(f"{path}: IDX header declares an empty image array {shape}")
    if path.suffix != ".gz" and path.stat().st_size != 16 + math.prod(shape):
        raise DataFileError(f"{path}: {path.stat().st_size} bytes, but the IDX header declares shape "
                            f"{shape} ({16 + math.prod(shape)} bytes)")
    return shape


def check_data_path(path, *, split: str = "all", downsample: int = 1) -> tuple[int, int]:
    """Check, from the file headers only, that ``path`` holds images :func:`load_dataset` can
    read with ``downsample``; return the image size ``(rows, cols)``.

    ``downsample`` must be an integer from 1 to the shorter image side (``k x k`` blocks of a
    larger ``k`` would leave no pixel).  ``ValueError`` (:class:`DataFileError`,
    :class:`MissingDataError`) naming the path or the argument otherwise.
    """
    k = check_reals(downsample=downsample, integers=("downsample",))["downsample"]
    path = Path(os.fspath(path))
    if not path.exists():
        raise MissingDataError(f"data path not found: {path}")
    files = image_files(path, split) if path.is_dir() else [path]
    shapes = {image_shape_of(f)[1:] for f in files}
    if len(shapes) != 1:
        raise DataFileError(f"image sizes differ between {[str(f) for f in files]}: {shapes}")
    rows, cols = shapes.pop()
    if k > min(rows, cols):
        raise ValueError(f"downsample must be an integer from 1 to {min(rows, cols)} (the image side of "
                         f"{path}, {rows} x {cols}), got {k}")
    return rows, cols


def write_idx(path, array) -> None:
    """Write ``array`` as an IDX file (gzip-compressed when ``path`` ends in ``.gz``)."""
    array = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in IDX_TYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"dtype {array.dtype} has no IDX type code")
    head = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    data = head + np.ascontiguousarray(array, dtype=IDX_TYPES[code]).tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


# ----------------------------------------------------------------------------------
# Folders holding one dataset

_IMAGES = re.compile(r"^(?P<split>.*?)[-_.]?images?[-_.]idx3[-_.]ubyte(?P<gz>\.gz)?$", re.IGNORECASE)


def _split_of(prefix: str) -> str | None:
    prefix = prefix.lower()
    if prefix.startswith("train"):
        return "train"
    if prefix.startswith(("t10k", "test")):
        return "test"
    return None


def image_files(folder, split: str = "all") -> list[Path]:
    """The IDX images file(s) of the one dataset in ``folder`` for ``split``.

    Recognised names: ``train-images-idx3-ubyte`` (split ``train``) and
    ``t10k-images-idx3-ubyte`` / ``test-images-idx3-ubyte`` (split ``test``), each plain or
    ``.gz`` (the plain file is preferred when both exist).  ``split="all"`` returns every
    split found (train first).  A folder with no images file, with images files of an
    unknown split, or with two different files for one split is rejected with a message
    listing what was found.
    """
    folder = Path(folder)
    if not isinstance(split, str) or split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not folder.exists():
        raise MissingDataError(f"data folder not found: {folder}")
    found: dict[str, dict[str, Path]] = {}
    unknown = []
    for entry in sorted(folder.iterdir()):
        match = _IMAGES.match(entry.name)
        if not match or not entry.is_file():
            continue
        which = _split_of(match.group("split"))
        if which is None:
            unknown.append(entry.name)
            continue
        stem = entry.name[:-3] if match.group("gz") else entry.name
        found.setdefault(which, {}).setdefault(stem, entry)
        if not match.group("gz"):
            found[which][stem] = entry  # the plain file wins over its .gz
    if unknown:
        raise DataFileError(f"{folder}: images file(s) of unknown split {unknown}; expected names "
                            f"like train-images-idx3-ubyte[.gz] or t10k-images-idx3-ubyte[.gz]")
    for which, stems in found.items():
        if len(stems) > 1:
            raise DataFileError(f"{folder}: ambiguous dataset, several {which} images files: "
                                f"{sorted(p.name for p in stems.values())}")
    if not found:
        subdirs = sorted(e.name for e in folder.iterdir() if e.is_dir())
        hint = f"; it has sub-folders {subdirs} (pass one of them)" if subdirs else ""
        raise DataFileError(f"{folder}: no IDX images file (*-images-idx3-ubyte[.gz]) in this "
                            f"folder{hint}")
    wanted = ("train", "test") if split == "all" else (split,)
    files = [next(iter(found[w].values())) for w in wanted if w in found]
    if not files:
        raise DataFileError(f"{folder}: no {split} images file (found splits {sorted(found)})")
    return files


# ----------------------------------------------------------------------------------
# Preprocessed images


@dataclass(frozen=True)
class ImageData:
    """A preprocessed pool of images (MODEL.md, "Real data").

    ``X`` (``N x d``, float64) is ``(pixels/255 - mean) / scale``; :meth:`to_pixels`
    inverts it (for showing generated samples).  ``files`` are the IDX files read.
    """

    X: np.ndarray = field(repr=False)
    mean: np.ndarray = field(repr=False)
    scale: float
    image_shape: tuple[int, int]
    files: tuple[Path, ...]

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def d(self) -> int:
        return self.X.shape[1]

    def to_pixels(self, Y: np.ndarray) -> np.ndarray:
        """Map preprocessed rows back to images in ``[0, 1]`` (clipped), shape ``(k, rows, cols)``."""
        Y = np.atleast_2d(Y)
        return np.clip(Y * self.scale + self.mean, 0.0, 1.0).reshape((-1,) + self.image_shape)


def _downsample(raw: np.ndarray, k: int) -> np.ndarray:
    """Mean-pool ``k x k`` blocks of ``(N, rows, cols)`` images (rows, cols cropped to multiples of k)."""
    N, r, c = raw.shape
    r, c = (r // k) * k, (c // k) * k
    return raw[:, :r, :c].reshape(N, r // k, k, c // k, k).mean(axis=(2, 4))


def preprocess(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """MODEL.md preprocessing of ``(N, ...)`` pixel values in ``0..255``: returns ``(X, mean, scale)``.

    ``X = (images/255 - mean) / scale`` flattened to ``(N, d)``, with ``mean`` the pool's
    mean image and ``scale = sqrt(tr Σ̂ / d)`` (``Σ̂`` with the ``1/N`` convention).
    """
    images = np.asarray(images)
    if images.ndim < 2 or images.shape[0] < 2:
        raise ValueError(f"need at least 2 images, got an array of shape {images.shape}")
    X = images.reshape(images.shape[0], -1).astype(np.float64) / 255.0
    if not np.all(np.isfinite(X)):
        raise ValueError("images contain non-finite values")
    mean = X.mean(axis=0)
    X -= mean
    tr_over_d = float(np.einsum("ij,ij->", X, X)) / X.size
    if not tr_over_d > 0:
        raise ValueError("all images are identical: the pool covariance is zero, cannot rescale")
    scale = math.sqrt(tr_over_d)
    X /= scale
    return X, mean, scale


def load_dataset(path, *, split: str = "all", downsample: int = 1) -> ImageData:
    """Read and preprocess images from an IDX file or a folder holding one dataset.

    Parameters
    ----------
    path : an IDX images file (``(N, rows, cols)`` unsigned bytes, plain or ``.gz``) or a
        folder (see :func:`image_files`).
    split : for a folder, ``"all"`` (every split found, pooled: train + test), ``"train"``
        or ``"test"``; ignored for a file.
    downsample : an integer ``1 <= k <= min(rows, cols)``; mean-pool ``k x k`` pixel blocks
        *before* the preprocessing (``d = (rows//k)(cols//k)``), a documented speed option of
        the experiments.  ``1`` (default) is MODEL.md exactly.
    """
    path = Path(os.fspath(path))
    downsample = check_reals(downsample=downsample, integers=("downsample",))["downsample"]
    if not path.exists():
        raise MissingDataError(f"data path not found: {path}")
    files = image_files(path, split) if path.is_dir() else [path]
    arrays = []
    for f in files:
        raw = read_idx(f)
        if raw.ndim != 3 or raw.dtype != np.dtype(">u1"):
            raise DataFileError(f"{f}: expected unsigned-byte images of shape (N, rows, cols), got "
                                f"{raw.dtype} array of shape {raw.shape} (a labels file?)")
        arrays.append(raw)
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) != 1:
        raise DataFileError(f"image sizes differ between {[str(f) for f in files]}: {shapes}")
    raw = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
    if downsample > min(raw.shape[1:]):
        raise ValueError(f"downsample must be an integer from 1 to {min(raw.shape[1:])} (the image side, "
                         f"{raw.shape[1]} x {raw.shape[2]}), got {downsample}")
    if downsample > 1:
        raw = _downsample(raw.astype(np.float64), int(downsample))
    X, mean, scale = preprocess(raw)
    return ImageData(X=X, mean=mean, scale=scale, image_shape=tuple(raw.shape[1:]), files=tuple(files))


def load_images(path, *, split: str = "all", downsample: int = 1) -> np.ndarray:
    """Preprocessed images, float64 ``(N, d)``: pixels/255, pool mean removed, ``tr Σ̂/d = 1``.

    ``path`` is an IDX file (plain or ``.gz``) or a folder holding one dataset; a folder's
    splits are pooled (``split="all"``) unless ``split="train"``/``"test"`` is given.
    See :func:`load_dataset` (which also returns the mean and scale) for the details.
    """
    return load_dataset(path, split=split, downsample=downsample).X


def spectrum(X: np.ndarray) -> np.ndarray:
    """Eigenvalues (length ``d``, descending) of ``Σ̂ = X^T X / N`` for centred data ``X``.

    This is the spectral measure ``ν`` of MODEL.md's structured-data theory for a
    preprocessed pool (each eigenvalue has weight ``1/d``; their mean is ``tr Σ̂/d``).
    Round-off below ``d · eps · λ_max`` in absolute value is set to 0 (constant pixels give
    exact zero eigenvalues); a clearly negative eigenvalue raises.
    """
    X = check_data("X", X)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"X must be an (N >= 2, d) array, got shape {X.shape}")
    eig = np.linalg.eigvalsh(X.T @ X / X.shape[0])[::-1]
    tol = X.shape[1] * np.finfo(float).eps * max(abs(eig[0]), 1e-300) * 10
    if eig[-1] < -tol:
        raise FloatingPointError(f"covariance has a negative eigenvalue {eig[-1]:.3g} beyond round-off")
    return np.where(np.abs(eig) <= tol, 0.0, eig)


def covariance_sqrt(X: np.ndarray) -> np.ndarray:
    """A ``d x d`` matrix ``R`` with ``R R^T = Σ̂ = X^T X / N`` (symmetric square root).

    ``G @ R.T`` with ``G`` standard normal rows is Gaussian data with the pool's covariance
    (hence the same spectrum), used to separate finite-``d`` effects from non-Gaussianity.
    """
    X = np.asarray(X, dtype=np.float64)
    w, Q = np.linalg.eigh(X.T @ X / X.shape[0])
    return (Q * np.sqrt(np.clip(w, 0.0, None))) @ Q.T


def gaussian_like(X: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws of ``N(0, Σ̂)`` with ``Σ̂`` the covariance of the (centred) pool ``X``."""
    R = covariance_sqrt(X)
    return rng.standard_normal((int(n), R.shape[0])) @ R.T
