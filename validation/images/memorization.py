"""Memorised fraction of generated samples (nearest-neighbour ratio test).

A sample ``y`` is *memorised* when its nearest training point is much closer than the
second nearest (Yoon et al., NeurIPS 2023 workshop "Diffusion probabilistic models
generalize when they fail to memorize"; Gu et al. 2023, "On memorization in diffusion
models"; used by George, Veiga, Macris 2025):

    ‖y - x_(1)‖ < ratio · ‖y - x_(2)‖,        ratio = 1/3 by default,

with ``x_(1), x_(2)`` the nearest and second-nearest training points (Euclidean distance in
the preprocessed space).  The memorised fraction is the mean of this indicator over the
samples; its standard error is a bootstrap over the samples.  (A sample equidistant from
two identical training points is *not* counted: the test compares the two nearest points.)

Candidates are found in chunks with ``‖a‖² + ‖b‖² - 2 a·b`` (clipped at 0 against
round-off) on *centred and rescaled* copies of both sets: the training set's mean is
subtracted and both are divided by a power of two close to their largest centred entry.  The
result is then invariant to a translation and a positive rescaling of the data: without the
centring, a common offset ``c`` makes the three terms ``O(|c|²)`` and their difference loses
the distances (an offset of ``1e8`` on unit-scale data left nothing); without the rescaling,
data of size ``1e200`` overflow and ``1e-200`` underflow.  The two nearest candidates of each
sample are then re-measured directly as ``‖a - b‖`` (the difference of the original rows,
scaled by the same power of two, which is exact) so the reported distances carry no
cancellation error.  Memory is ``O(chunk_samples × chunk_train)``, so 10,000 samples against
60,000 training images fit easily.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from validation.simulation.problem import check_data, check_reals

#: Default block sizes (samples × training points) of one distance block (8 M floats = 64 MB).
CHUNK_SAMPLES = 1024
CHUNK_TRAIN = 8192


@dataclass(frozen=True)
class Memorization:
    """Result of :func:`memorized_fraction`.

    ``fraction`` and its bootstrap standard error ``se``; per sample: ``memorized``
    (bool), ``nearest`` (index of the nearest training point), ``d1``/``d2`` (distances to
    the nearest and second-nearest).  Unpacks as ``fraction, se = result``.
    """

    fraction: float
    se: float
    ratio: float
    memorized: np.ndarray = field(repr=False)
    nearest: np.ndarray = field(repr=False)
    d1: np.ndarray = field(repr=False)
    d2: np.ndarray = field(repr=False)

    def __iter__(self):
        return iter((self.fraction, self.se))

    def __float__(self) -> float:
        return self.fraction


def _frame(S: np.ndarray, T: np.ndarray, chunk: int) -> tuple[np.ndarray, float]:
    """The centre ``c`` (training mean) and scale ``s`` (a power of two) of the candidate search.

    ``s`` is the power of two just above the largest absolute centred entry of either set, so
    the rescaled entries are below 1 and squared norms stay far from overflow and underflow; a
    power of two keeps every division exact.  (Only the size matters, not robustness to
    outliers: the round-off of the Gram trick is relative to the norms whatever ``s`` is.)
    Read in chunks of ``chunk`` rows: no copy of either set.
    """
    centre = T.mean(axis=0)
    big = 0.0
    for A in (S, T):
        for i in range(0, A.shape[0], chunk):
            big = max(big, float(np.max(np.abs(A[i:i + chunk] - centre))))
    if not math.isfinite(big):
        raise ValueError("samples and train differ by more than the float range (about 1e308)")
    return centre, (2.0 ** math.frexp(big)[1] if big > 0 else 1.0)


def two_nearest(samples: np.ndarray, train: np.ndarray, *, chunk_samples: int = CHUNK_SAMPLES,
                chunk_train: int = CHUNK_TRAIN) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices ``(i1, i2)`` of each sample's two nearest training points and the distances ``(d1, d2)``.

    Returns ``idx`` (``k x 2``), ``d1``, ``d2`` (length ``k``); ``d1 <= d2``.
    """
    S, T = check_data("samples", samples), check_data("train", train)
    if S.ndim != 2 or T.ndim != 2:
        raise ValueError(f"samples and train must be 2-d arrays, got shapes {S.shape}, {T.shape}")
    if S.shape[1] != T.shape[1]:
        raise ValueError(f"samples have dimension {S.shape[1]} but train has {T.shape[1]}")
    if T.shape[0] < 2:
        raise ValueError(f"need at least 2 training points, got {T.shape[0]}")
    if S.shape[0] < 1:
        raise ValueError("no samples")
    if chunk_samples < 1 or chunk_train < 2:
        raise ValueError("chunk_samples must be >= 1 and chunk_train >= 2")
    k = S.shape[0]
    centre, scale = _frame(S, T, chunk_train)

    def framed(A):  # rows of A centred and rescaled (a copy of one chunk)
        return (A - centre) / scale

    tn = np.concatenate([np.einsum("ij,ij->i", B, B) for B in
                         (framed(T[i:i + chunk_train]) for i in range(0, T.shape[0], chunk_train))])
    best = np.full((k, 2), np.inf)
    idx = np.zeros((k, 2), dtype=np.int64)
    for s0 in range(0, k, chunk_samples):
        Sb = framed(S[s0:s0 + chunk_samples])
        sn = np.einsum("ij,ij->i", Sb, Sb)
        bd, bi = best[s0:s0 + len(Sb)], idx[s0:s0 + len(Sb)]
        for t0 in range(0, T.shape[0], chunk_train):
            Tb = framed(T[t0:t0 + chunk_train])
            D2 = sn[:, None] + tn[None, t0:t0 + len(Tb)] - 2.0 * (Sb @ Tb.T)
            np.maximum(D2, 0.0, out=D2)  # round-off can make tiny distances negative
            # two smallest of this block, then merge with the running two smallest
            j = np.argpartition(D2, 1, axis=1)[:, :2] if D2.shape[1] > 1 else np.zeros((len(Sb), 1), int)
            cand_d = np.concatenate([bd, np.take_along_axis(D2, j, axis=1)], axis=1)
            cand_i = np.concatenate([bi, j + t0], axis=1)
            order = np.argsort(cand_d, axis=1, kind="stable")[:, :2]
            bd[:] = np.take_along_axis(cand_d, order, axis=1)
            bi[:] = np.take_along_axis(cand_i, order, axis=1)
    # exact distances of the two candidates: differences of the original rows (no cancellation),
    # scaled by a power of two (exact) so that their squares neither overflow nor underflow
    d = np.stack([np.linalg.norm((S - T[idx[:, c]]) / scale, axis=1) * scale for c in (0, 1)], axis=1)
    swap = d[:, 1] < d[:, 0]
    d[swap] = d[swap][:, ::-1]
    idx[swap] = idx[swap][:, ::-1]
    return idx, d[:, 0], d[:, 1]


def memorized_fraction(samples, train, ratio: float = 1 / 3, *, bootstrap: int = 1000,
                       seed: int = 0, chunk_samples: int = CHUNK_SAMPLES,
                       chunk_train: int = CHUNK_TRAIN) -> Memorization:
    """Fraction of ``samples`` whose nearest ``train`` point is closer than ``ratio`` × the second nearest.

    Parameters
    ----------
    samples : ``(k, d)`` generated samples; train : ``(n, d)`` training points (``n >= 2``),
        both in the same (preprocessed) space.
    ratio : threshold in ``(0, 1]`` on ``d1 / d2``.
    bootstrap : number of bootstrap resamples of the samples for the standard error
        (with one sample ``se`` is ``inf``).  For an indicator the bootstrap mean is
        exactly ``Binomial(k, fraction)/k``, so the resamples are drawn in that form;
        ``se`` is close to ``sqrt(f(1-f)/k)``.
    seed : seed of the bootstrap resampling.

    The result does not change under a translation and a positive rescaling of both sets
    (see the module notes); every argument is checked (``ValueError`` naming it).

    Examples
    --------
    >>> import numpy as np
    >>> train = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    >>> r = memorized_fraction(np.array([[0.1, 0.0], [5.0, 5.0]]), train)
    >>> r.fraction, r.memorized.tolist()
    (0.5, [True, False])
    """
    v = check_reals(ratio=ratio, bootstrap=bootstrap, seed=seed, chunk_samples=chunk_samples,
                    chunk_train=chunk_train, allow_zero=("seed",),
                    integers=("bootstrap", "seed", "chunk_samples", "chunk_train"))
    ratio = v["ratio"]
    if not ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio!r}")
    if v["bootstrap"] < 2:
        raise ValueError(f"bootstrap must be an integer >= 2, got {bootstrap!r}")
    idx, d1, d2 = two_nearest(samples, train, chunk_samples=chunk_samples, chunk_train=chunk_train)
    mem = d1 < ratio * d2
    k = len(mem)
    fraction = float(mem.mean())
    if k < 2:
        se = math.inf
    else:
        # Resampling k indicators with replacement from a set with a fraction f of ones
        # gives Binomial(k, f) ones: that is the bootstrap distribution, drawn directly.
        rng = np.random.default_rng(seed)
        boots = rng.binomial(k, fraction, size=int(bootstrap)) / k
        se = float(np.std(boots, ddof=1))
    return Memorization(fraction=fraction, se=se, ratio=float(ratio), memorized=mem,
                        nearest=idx[:, 0], d1=d1, d2=d2)
