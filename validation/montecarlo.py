"""Monte Carlo ground truth: train finite-``d`` random-features scores by DSM.

Everything follows ``MODEL.md``: data ``x_i ~ N(0, I_d)``, noisy inputs
``y_ij = a_t x_i + sqrt(Delta_t) z_ij`` with ``a_t = e^{-t}``, ``Delta_t = 1 - e^{-2t}``,
features ``phi(y) = rho(W y / sqrt(d))`` and the ridge-regularised DSM minimiser

    B^T = -(Phi^T Phi / N + lam I_p)^{-1} Phi^T Z / N,        N = n m,

with errors

    E_train = ||Phi B^T + Z||_F^2 / (N d),
    E_test  = (1/d) E_y ||B phi(y) + sqrt(Delta) y||^2,    DSM test loss = E_test + a_t^2.

Choices made here (documented for users):

* ``m`` finite: the ``N x p`` feature matrix is streamed in chunks of data points.
  When ``p <= N`` the primal normal equations (``p x p``) are accumulated, so memory
  is ``O(p^2 + chunk p)``; otherwise the dual (``N x N`` kernel) form is used,
  ``B^T = -Phi^T (Phi Phi^T + lam N I)^{-1} Z`` and ``Phi B^T + Z = lam N (Phi Phi^T + lam N)^{-1} Z``.
* ``m = inf``: the noise average is computed exactly, not sampled: the surrogate in
  closed form, the true activation with the Mehler expansion of
  :mod:`validation.moments` (truncation error bounded and reported).
* The test error is computed exactly given ``(W, B)`` (no test samples): see
  :mod:`validation.moments`.
* The Gaussian-equivalent surrogate (``surrogate=True``) uses MODEL.md's features
  ``phi_ij = mu0 + mu1 W y_ij / sqrt(d) + mu_s xi_i + mu_f xi_ij`` for training and
  ``mu0 + mu1 W y / sqrt(d) + mu_* xi`` for testing.
* Seeds: seed ``s`` drives ``numpy.random.default_rng(SeedSequence([s, d, n, p]))``;
  draws are independent of the chunk size, so a result is reproducible from
  ``(activation, d, psi_n, psi_p, t, lam, m, seed, surrogate)``.
* Given data: :func:`fit_on_data` trains on an ``(n, d)`` array (real data); :func:`fit_score`
  draws ``x ~ N(0, Sigma)`` and calls it, then adds the exact test error.
* Structured data (``covariance=``): ``x = Sigma^{1/2} g``; the test moments use the
  pre-activation covariance ``W S_t W^T / d``, ``S_t = a_t^2 Sigma + Delta_t I``, and
  ``E[phi y^T] S_t^{-1} = E rho'(h_k) W_k / sqrt(d)`` (Stein), so
  ``E_test = (1/d)[tr(B U B^T) + 2 sqrt(Delta) tr(B V)] + Delta tr(S_t^{-1}) / d``.
* Training time (``train_time=T``): ``B^T(T) = -g_T(K) Phi^T Z / N`` with
  ``g_T(x) = (1 - e^{-T(x + lam)})/(x + lam)`` from the eigendecomposition of the primal
  ``K = Phi^T Phi / N`` (or, for ``p > N``, of ``Phi Phi^T / N`` with the push-through
  identity ``g_T(Phi^T Phi/N) Phi^T = Phi^T g_T(Phi Phi^T/N)``).
"""
from __future__ import annotations

import math
import numbers
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import scipy.linalg

from derivations.model import Coefficients as TheoryCoefficients
from derivations.model import parse_m

from . import moments as _moments

#: Rows of the feature matrix materialised at once when streaming (times ``p`` floats).
CHUNK_ROWS = 4096
#: Runs longer than this (seconds) print progress lines when ``progress`` is ``None``.
PROGRESS_AFTER = 3.0


@dataclass(frozen=True)
class Coefficients:
    """Gaussian-equivalence numbers of an activation at diffusion time ``t`` (MODEL.md)."""

    mu0: float
    mu1: float
    mu_star_sq: float
    mu_s_sq: float
    mu_f_sq: float

    @property
    def mu_s(self) -> float:
        return math.sqrt(max(self.mu_s_sq, 0.0))

    @property
    def mu_f(self) -> float:
        return math.sqrt(self.mu_f_sq)

    @property
    def mu_star(self) -> float:
        return math.sqrt(max(self.mu_star_sq, 0.0))

    @classmethod
    def of(cls, act, t: float) -> "Coefficients":
        """The numbers at time ``t``, from the theory's own :class:`derivations.theory.Coefficients`."""
        c = TheoryCoefficients(act)
        return cls(c.mu0, c.mu1, c.mu_star_sq, float(c.mu_s_sq(t)), float(c.mu_f_sq(t)))

    @classmethod
    def at(cls, act, t: float, tau: float = 1.0) -> "Coefficients":
        """The structured-data numbers (MODEL.md) for ``tau = tr Sigma / d``: taken at
        pre-activation variance ``v_t = a_t^2 tau + Delta_t`` and shared covariance ``a_t^2 tau``.

        ``tau = 1`` is :meth:`of` (the isotropic numbers, bit for bit).
        """
        if tau == 1.0:
            return cls.of(act, t)
        if not (math.isfinite(tau) and tau > 0):
            raise ValueError(f"tau = tr Sigma / d must be finite and > 0, got {tau!r}")
        a_sq = math.exp(-2.0 * t)
        v = a_sq * tau - math.expm1(-2.0 * t)
        mu0, mu1, star, shared, fresh = act.equivalence_constants(v, a_sq * tau)
        return cls(float(mu0), float(mu1), float(star), float(shared), float(fresh))


@dataclass(frozen=True)
class Problem:
    """One validated parameter point of the finite-``d`` model."""

    d: int
    n: int
    p: int
    m: float  # int >= 1 or math.inf
    t: float
    lam: float
    psi_n: float
    psi_p: float

    @property
    def a(self) -> float:
        return math.exp(-self.t)

    @property
    def delta(self) -> float:
        return -math.expm1(-2.0 * self.t)

    @property
    def rows(self) -> float:
        return self.n * self.m


def make_problem(*, d, psi_n, psi_p, t, lam, m) -> Problem:
    """Check the parameters and round ``n = psi_n d``, ``p = psi_p d`` to integers."""
    _check_real(d=d, psi_n=psi_n, psi_p=psi_p, t=t, lam=lam)
    if float(d) != int(d) or int(d) < 1:
        raise ValueError(f"d must be an integer >= 1, got {d!r}")
    if psi_n <= 0:
        raise ValueError(f"psi_n must be > 0, got {psi_n!r}")
    if psi_p <= 0:
        raise ValueError(f"psi_p must be > 0, got {psi_p!r}")
    if t <= 0:
        raise ValueError(f"diffusion time t must be > 0, got {t!r}")
    if lam < 0:
        raise ValueError(f"ridge lam must be >= 0, got {lam!r}")
    d = int(d)
    n = max(1, int(round(psi_n * d)))
    p = max(1, int(round(psi_p * d)))
    return Problem(d=d, n=n, p=p, m=parse_m(m), t=float(t), lam=float(lam),
                   psi_n=float(psi_n), psi_p=float(psi_p))


# ----------------------------------------------------------------------------------
# Data covariance (MODEL.md "Structured data")


@dataclass(frozen=True, eq=False)
class Covariance:
    """The data covariance ``Sigma`` of ``x ~ N(0, Sigma)``, checked, with what the Monte Carlo needs.

    Build with :meth:`Covariance.of` from ``None`` (``Sigma = I``), a 1-D array of ``d``
    eigenvalues (``Sigma`` diagonal in the standard basis: ``W`` is rotation invariant,
    so this is no loss of generality) or a symmetric PSD ``d x d`` matrix.
    """

    eigenvalues: np.ndarray
    root: np.ndarray | None = None  # Sigma^{1/2} (symmetric) for a full matrix
    matrix: np.ndarray | None = None
    isotropic: bool = False

    @property
    def d(self) -> int:
        return int(self.eigenvalues.size)

    @property
    def tau(self) -> float:
        """``tr Sigma / d``."""
        return float(np.mean(self.eigenvalues))

    @classmethod
    def of(cls, spec, d: int) -> "Covariance":
        if isinstance(spec, Covariance):
            if spec.d != d:
                raise ValueError(f"covariance has dimension {spec.d}, expected d = {d}")
            return spec
        if spec is None:
            return cls(eigenvalues=np.ones(d), isotropic=True)
        try:
            arr = np.array(spec, dtype=float)
        except (TypeError, ValueError):
            raise ValueError("covariance must be None, a 1-D array of eigenvalues or a d x d matrix, "
                             f"got {type(spec).__name__}") from None
        if arr.ndim == 1:
            if arr.size != d:
                raise ValueError(f"covariance has {arr.size} eigenvalues, expected d = {d}")
            if not np.all(np.isfinite(arr)):
                raise ValueError("covariance eigenvalues must be finite (no NaN or inf)")
            if np.any(arr < 0):
                raise ValueError(f"covariance eigenvalues must be >= 0, got {float(arr.min())!r}")
            if not np.any(arr > 0):
                raise ValueError("covariance spectrum is all zero (the data would be constant)")
            arr.setflags(write=False)
            return cls(eigenvalues=arr)
        if arr.ndim == 2:
            if arr.shape != (d, d):
                raise ValueError(f"covariance matrix must be {d} x {d}, got {arr.shape[0]} x {arr.shape[1]}")
            if not np.all(np.isfinite(arr)):
                raise ValueError("covariance matrix must be finite (no NaN or inf)")
            scale = float(np.max(np.abs(arr)))
            if scale == 0:
                raise ValueError("covariance matrix is zero (the data would be constant)")
            asym = float(np.max(np.abs(arr - arr.T)))
            if asym > 1e-12 * scale:
                raise ValueError(f"covariance matrix is not symmetric (max |Sigma - Sigma^T| = {asym:.3g})")
            arr = 0.5 * (arr + arr.T)
            w, Q = np.linalg.eigh(arr)
            if w.min() < -1e-10 * scale * d:
                raise ValueError(f"covariance matrix is not positive semi-definite (eigenvalue {w.min():.3g})")
            w = np.maximum(w, 0.0)
            root = (Q * np.sqrt(w)) @ Q.T
            for a in (w, root, arr):
                a.setflags(write=False)
            return cls(eigenvalues=w, root=root, matrix=arr)
        raise ValueError(f"covariance must be 1-D (eigenvalues) or 2-D (a matrix), got {arr.ndim}-D")

    def sample(self, G: np.ndarray) -> np.ndarray:
        """``x = Sigma^{1/2} g`` for the rows ``g`` of ``G`` (standard normal)."""
        if self.isotropic:
            return G
        if self.root is None:
            return G * np.sqrt(self.eigenvalues)
        return G @ self.root

    def feature_covariance(self, W: np.ndarray, a: float, delta: float) -> np.ndarray:
        """``W S_t W^T / d`` with ``S_t = a^2 Sigma + Delta I``: covariance of ``W y / sqrt(d)``, ``y ~ p_t``."""
        d = W.shape[1]
        if self.isotropic:
            return W @ W.T / d
        if self.root is None:
            return (W * (a * a * self.eigenvalues + delta)) @ W.T / d
        return (a * a * (W @ self.matrix) + delta * W) @ W.T / d

    def inverse_trace(self, a: float, delta: float) -> float:
        """``tr(S_t^{-1}) / d`` (1 for isotropic data)."""
        if self.isotropic:
            return 1.0
        return float(np.mean(1.0 / (a * a * self.eigenvalues + delta)))


# ----------------------------------------------------------------------------------
# Memory and progress


def memory_estimate(pr: Problem) -> int:
    """Peak bytes of the largest arrays one instance allocates (float64), a slight over-estimate.

    Primal (``p <= nm``): ``p x p`` normal matrix and its factor, the test moments
    (``p x p``: ``W W^T``, correlations, ``U``), a streamed chunk of features;
    dual: the ``nm x p`` features, ``nm x d`` noise, the ``nm x nm`` kernel and its
    eigenvectors; ``m = inf``: the ``p x p`` moments and a chunk of Mehler coefficients.
    """
    n, p, d = pr.n, pr.p, pr.d
    base = 6 * p * p + 4 * p * d + 2 * n * d + 2 * n * p  # moments, W, Bt, X (and surrogate xi)
    if math.isinf(pr.m):
        work = 256 * p * (_moments.MEHLER_MAX_ORDER + 2)
    else:
        m = int(pr.m)
        N = n * m
        rows = min(N, max(1, CHUNK_ROWS // m) * m)
        if p <= N:
            work = 4 * rows * (p + d)
        else:
            work = 2 * N * (p + d) + 3 * N * N
    return int(8 * (base + work))


def available_memory() -> int | None:
    """Bytes of memory available now (``MemAvailable`` of /proc/meminfo, else ``os.sysconf``)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _check_memory(estimate: int, max_memory, pr: Problem) -> None:
    if max_memory is None:
        limit = available_memory()
        source = "available memory"
        if limit is None:
            return
    else:
        try:
            limit = float(max_memory)
        except (TypeError, ValueError):
            raise ValueError(f"max_memory must be a number of bytes, got {max_memory!r}") from None
        if not limit > 0:
            raise ValueError(f"max_memory must be > 0 bytes, got {max_memory!r}")
        source = "max_memory"
    if estimate > limit:
        raise ValueError(
            f"simulate needs about {estimate / 2**30:.2f} GiB for d={pr.d} n={pr.n} p={pr.p} m={pr.m} "
            f"but the {source} is {limit / 2**30:.2f} GiB; lower d, psi_n, psi_p or m, or pass "
            "max_memory=<bytes> to override")


def _progress_bar(progress, total: int, desc: str):
    """A tqdm bar on stderr: always for ``progress=True``, never for ``False``, after
    :data:`PROGRESS_AFTER` seconds for ``None``; ``None`` when there is nothing to show."""
    if progress is False or total <= 1:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False,
                delay=0.0 if progress else PROGRESS_AFTER, dynamic_ncols=True)


# ----------------------------------------------------------------------------------
# One trained score


@dataclass
class FittedScore:
    """A trained random-features score ``s(y) = B phi(y) / sqrt(Delta)`` and its errors.

    ``W`` is the frozen ``p x d`` first layer, ``Bt`` is ``B^T`` (``p x d``).
    ``test_error`` is exact given ``(W, B)`` when the data distribution is known
    (:func:`fit_score`); it is ``None`` for a fit on given data (:func:`fit_on_data`),
    whose held-out loss is measured with :meth:`dsm_loss`.  :meth:`sampled_dsm_loss`
    and :meth:`sampled_test_error` estimate the isotropic quantities from fresh samples
    (used to check the exact formulas).
    """

    problem: Problem
    activation: object
    surrogate: bool
    coefficients: Coefficients | None
    W: np.ndarray
    Bt: np.ndarray
    train_error: float
    test_error: float | None
    form: str  # "primal", "dual" or "noise-averaged"
    mehler_order: int = 0
    truncation_bound: float = 0.0
    train_time: float | None = None
    #: ``1 - Delta tr(S_t^{-1}) / d``: DSM test loss minus test error (``a_t^2`` for isotropic data).
    dsm_offset: float | None = None

    @property
    def dsm_test_loss(self) -> float | None:
        """``E_test + 1 - Delta tr(S_t^{-1})/d`` (``E_test + a_t^2`` for isotropic data)."""
        if self.test_error is None:
            return None
        offset = self.problem.a**2 if self.dsm_offset is None else self.dsm_offset
        return self.test_error + offset

    def features(self, Y: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Test features ``phi(y) = rho(W y / sqrt(d))`` of the rows of ``Y`` (``k x d`` -> ``k x p``).

        The surrogate draws fresh ``xi``: ``mu0 + mu1 W y / sqrt(d) + mu_* xi`` (needs ``rng``).
        """
        Y = _as_rows(Y, self.problem.d, "Y")
        H = Y @ self.W.T / math.sqrt(self.problem.d)
        if not self.surrogate:
            return self.activation(H)
        if rng is None:
            raise ValueError("surrogate test features need an rng for their fresh noise xi")
        c = self.coefficients
        return c.mu0 + c.mu1 * H + c.mu_star * rng.standard_normal(H.shape)

    def score(self, Y: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """The learned score ``s_A(y) = B phi(y) / sqrt(Delta_t)`` at the rows of ``Y`` (``k x d``).

        It estimates ``grad log p_t(y)``; a sampler uses it at the time ``t`` it was trained for.
        """
        return self.features(Y, rng) @ self.Bt / math.sqrt(self.problem.delta)

    def dsm_loss(self, X: np.ndarray, rng: np.random.Generator, draws: int = 1) -> tuple[float, float]:
        """DSM loss on held-out data: mean and standard error of ``||B phi(y) + z||^2 / d``.

        ``y = a_t x + sqrt(Delta_t) z`` with ``draws`` fresh noise vectors ``z ~ N(0, I_d)``
        per row ``x`` of ``X``; the standard error treats the rows as independent (the
        draws of one row are averaged first).  For ``x ~ N(0, Sigma)`` its mean is
        :attr:`dsm_test_loss`.
        """
        pr = self.problem
        X = _as_rows(X, pr.d, "X")
        if isinstance(draws, bool) or not isinstance(draws, numbers.Integral) or draws < 1:
            raise ValueError(f"draws must be an integer >= 1, got {draws!r}")
        per = np.zeros(X.shape[0])
        batch = max(1, CHUNK_ROWS // max(1, pr.p // pr.d + 1))
        for start in range(0, X.shape[0], batch):
            Xb = X[start:start + batch]
            for _ in range(int(draws)):
                Z = rng.standard_normal(Xb.shape)
                Y = pr.a * Xb + math.sqrt(pr.delta) * Z
                per[start:start + len(Xb)] += np.sum((self.features(Y, rng) @ self.Bt + Z) ** 2, axis=1)
        per /= pr.d * draws
        se = float(per.std(ddof=1) / math.sqrt(len(per))) if len(per) > 1 else math.inf
        return float(per.mean()), se

    def sampled_dsm_loss(self, samples: int, rng: np.random.Generator) -> tuple[float, float]:
        """DSM loss on fresh ``x ~ N(0, I_d)``: mean and standard error of ``||B phi(y) + z||^2 / d``."""
        X = rng.standard_normal((samples, self.problem.d))
        return self.dsm_loss(X, rng)

    def sampled_test_error(self, samples: int, rng: np.random.Generator) -> tuple[float, float]:
        """Test error from fresh ``y ~ N(0, I)``: mean and standard error."""
        pr = self.problem
        Y = rng.standard_normal((samples, pr.d))
        per = np.sum((self.features(Y, rng) @ self.Bt + math.sqrt(pr.delta) * Y) ** 2, axis=1) / pr.d
        return float(per.mean()), float(per.std(ddof=1) / math.sqrt(samples))


def _as_rows(Y, d: int, name: str) -> np.ndarray:
    Y = np.asarray(Y, dtype=float)
    if Y.ndim == 1:
        Y = Y[None, :]
    if Y.ndim != 2 or Y.shape[1] != d:
        raise ValueError(f"{name} must have shape (k, {d}), got {Y.shape}")
    return Y


def _spd_solve(S: np.ndarray, rhs: np.ndarray, lam: float) -> np.ndarray:
    """Solve ``(S + lam I) X = rhs`` for symmetric PSD ``S``; minimum-norm when singular."""
    A = S + lam * np.eye(S.shape[0]) if lam > 0 else S
    if lam > 0:
        try:
            return scipy.linalg.cho_solve(scipy.linalg.cho_factor(A, check_finite=False), rhs,
                                          check_finite=False)
        except np.linalg.LinAlgError:
            pass  # numerically indefinite: fall back to the eigen-decomposition
    w, Q = np.linalg.eigh(A)
    cutoff = max(w.max(), 0.0) * A.shape[0] * np.finfo(float).eps
    inv = np.where(w > cutoff, 1.0 / np.where(w > cutoff, w, 1.0), 0.0)
    return Q @ (inv[:, None] * (Q.T @ rhs))


def flow_filter(x, lam: float, T: float) -> np.ndarray:
    """``g_T(x) = (1 - exp(-T (x + lam))) / (x + lam)``, the gradient-flow filter (MODEL.md).

    Evaluated with ``expm1`` (no cancellation for small ``T (x + lam)``); its limit ``T``
    at ``x + lam = 0``.  ``T -> inf`` gives the ridge filter ``1 / (x + lam)``.

    >>> float(flow_filter(0.0, 0.0, 3.0)), round(float(flow_filter(1.0, 1.0, 50.0)), 12)
    (3.0, 0.5)
    """
    s = np.asarray(x, dtype=float) + lam
    u = T * s
    with np.errstate(divide="ignore", invalid="ignore"):
        out = -np.expm1(-u) / s
    tiny = np.abs(u) < 1e-12
    return np.where(tiny, T * (1.0 - 0.5 * u), out)


def _flow_solve(S: np.ndarray, rhs: np.ndarray, lam: float, T: float | None) -> np.ndarray:
    """``g_T(S) rhs`` for symmetric PSD ``S`` (``T = None``: ``(S + lam)^{-1} rhs``, the ridge)."""
    if T is None:
        return _spd_solve(S, rhs, lam)
    w, Q = np.linalg.eigh(S)
    g = flow_filter(np.maximum(w, 0.0), lam, T)  # clip rounding-negative eigenvalues of a Gram matrix
    return Q @ (g[:, None] * (Q.T @ rhs))


def _quadratic_error(Bt: np.ndarray, U: np.ndarray, V: np.ndarray, scale: float, d: int,
                     const: float | None = None) -> float:
    """``(1/d)[tr(B U B^T) + 2 scale tr(B V)] + const`` -- the mean of ``||B phi + scale S^{-1} y||^2 / d``.

    ``const`` is ``scale^2 tr(S^{-1}) / d`` (``scale^2`` by default, isotropic data).
    """
    const = scale**2 if const is None else const
    value = (np.sum(Bt * (U @ Bt)) + 2.0 * scale * np.sum(Bt * V)) / d + const
    return float(value)


def _seed_streams(seed: int, d: int, n: int, p: int) -> list[np.random.Generator]:
    """Independent streams ``(W, X, Z, xi, xi')`` of one instance; chunking never changes a draw."""
    streams = np.random.SeedSequence([int(seed), int(d), int(n), int(p)]).spawn(5)
    return [np.random.default_rng(s) for s in streams]


def _check_train_time(train_time) -> float | None:
    if train_time is None:
        return None
    if isinstance(train_time, bool):
        raise ValueError(f"train_time must be a number >= 0 or None, got {train_time!r}")
    try:
        T = float(train_time)
    except (TypeError, ValueError):
        raise ValueError(f"train_time must be a number >= 0 or None, got {train_time!r}") from None
    if math.isnan(T) or T < 0:
        raise ValueError(f"train_time must be >= 0 (or None for T = inf), got {train_time!r}")
    return None if math.isinf(T) else T


def _check_surrogate(surrogate) -> bool:
    if not isinstance(surrogate, (bool, np.bool_)):
        raise ValueError(f"surrogate must be True or False, got {surrogate!r}")
    return bool(surrogate)


def fit_on_data(act, X, *, p, t, lam, m, seed, surrogate=False, train_time=None,
                coefficients: Coefficients | None = None, tau: float | None = None,
                max_memory: float | None = None) -> FittedScore:
    """Train the DSM random-features score on given data ``X`` (``n x d``), one draw of ``W`` and noise.

    Signature: ``fit_on_data(act, X, *, p, t, lam, m, seed, surrogate=False, train_time=None)``
    returns a :class:`FittedScore` with ``W`` (``p x d``), ``Bt = B^T`` (``p x d``),
    ``train_error`` and ``test_error = None``; evaluate it on new points with
    :meth:`FittedScore.features`, :meth:`FittedScore.score` (``B phi(y)/sqrt(Delta)``) and
    :meth:`FittedScore.dsm_loss` (held-out DSM loss with fresh noise).

    Parameters
    ----------
    act : activation (name, sympy expression, callable or :class:`pencils.Activation`).
    X : ``(n, d)`` float array of training points (already preprocessed; rows are data points).
    p : number of random features.
    t, lam : diffusion time (``> 0``) and ridge (``>= 0``).
    m : noise draws per point, an integer ``>= 1``, or ``math.inf`` for the exact noise
        average given each point (Mehler expansion, :mod:`validation.moments`).
    seed : integer; ``W``, the noise ``z_ij`` and the surrogate's ``xi`` come from
        ``SeedSequence([seed, d, n, p])`` (the same streams as :func:`fit_score`).
    surrogate : train the Gaussian-equivalent surrogate features of MODEL.md instead of ``rho``.
    train_time : ``None`` (``T = inf``: the ridge / minimum-norm solution) or ``T >= 0``,
        gradient flow ``B^T(T) = -g_T(K) Phi^T Z / (nm)``, ``g_T(x) = (1 - e^{-T(x+lam)})/(x+lam)``
        (MODEL.md "Training time"), by eigendecomposition of the Gram matrix.
    coefficients : the surrogate's Gaussian-equivalence numbers (default: at pre-activation
        variance ``a_t^2 tau + Delta_t`` and shared covariance ``a_t^2 tau``).
    tau : ``tr Sigma / d`` for those numbers (default: ``||X||_F^2 / (n d)``, the data's).
    max_memory : bytes allowed for the largest arrays (default: the available memory);
        a ValueError quoting the estimate is raised before allocating more.

    Training (MODEL.md): ``y_ij = a_t x_i + sqrt(Delta_t) z_ij``, ``K = Phi^T Phi / (nm)``,
    ``B^T = -(K + lam)^{-1} Phi^T Z / (nm)``; primal ``p x p`` normal equations when
    ``p <= nm`` (streamed), else the dual ``nm x nm`` kernel.

    >>> X = np.random.default_rng(0).standard_normal((40, 20))
    >>> f = fit_on_data("relu", X, p=30, t=0.5, lam=0.1, m=2, seed=0)
    >>> f.W.shape, f.Bt.shape, f.test_error is None, 0 < f.train_error < 1
    ((30, 20), (30, 20), True, True)
    >>> loss, se = f.dsm_loss(np.random.default_rng(1).standard_normal((500, 20)), np.random.default_rng(2))
    >>> bool(0 < loss < 1.5)
    True
    """
    import pencils  # local: validation depends on pencils, not the reverse

    act = pencils.activation(act)
    surrogate = _check_surrogate(surrogate)
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"X must be a non-empty (n, d) array, got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or inf")
    n, d = X.shape
    if isinstance(p, bool) or not isinstance(p, (numbers.Integral, float)) or p != int(p) or int(p) < 1:
        raise ValueError(f"p must be an integer >= 1, got {p!r}")
    p = int(p)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    _check_real(t=t, lam=lam)
    if t <= 0:
        raise ValueError(f"diffusion time t must be > 0, got {t!r}")
    if lam < 0:
        raise ValueError(f"ridge lam must be >= 0, got {lam!r}")
    pr = Problem(d=d, n=n, p=p, m=parse_m(m), t=float(t), lam=float(lam), psi_n=n / d, psi_p=p / d)
    T = _check_train_time(train_time)
    estimate = memory_estimate(pr)
    _check_memory(estimate, max_memory, pr)
    if surrogate and coefficients is None:
        tau_value = float(np.sum(X * X) / (n * d)) if tau is None else float(tau)
        coefficients = Coefficients.at(act, pr.t, tau_value)
    return _train(act, pr, X, _seed_streams(seed, d, n, p), surrogate, coefficients, T)


def _check_real(**values) -> None:
    for name, value in values.items():
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a real number, got {value!r}") from None
        if math.isnan(v):
            raise ValueError(f"{name} is NaN")
        if math.isinf(v):
            raise ValueError(f"{name} must be finite, got {value!r}")


def _train(act, pr: Problem, X: np.ndarray, rngs, surrogate: bool, coef, T: float | None,
           progress=None) -> FittedScore:
    """Draw ``W`` (and the noise) from ``rngs`` and train ``B`` on ``X``; no test error."""
    rng_w, _, rng_z, rng_xi, rng_xi2 = rngs
    W = rng_w.standard_normal((pr.p, pr.d))
    C = W @ W.T / pr.d
    Xi = rng_xi.standard_normal((pr.n, pr.p)) if surrogate else None
    order, bound = 0, 0.0

    if math.isinf(pr.m):
        if surrogate:
            train = _moments.surrogate_train_moments_inf(coef, W, X, Xi, pr.a, pr.delta, C)
        else:
            train = _moments.true_train_moments_inf(act, W, X, pr.a, pr.delta, C)
            order, bound = train.mehler_order, train.truncation_bound
        Bt = -_flow_solve(train.U, train.V, pr.lam, T)
        train_error = _quadratic_error(Bt, train.U, train.V, 1.0, pr.d)
        form = "noise-averaged"
    else:
        m = int(pr.m)
        N = pr.n * m
        per = max(1, CHUNK_ROWS // m)
        chunks = range(0, pr.n, per)
        bar = _progress_bar(progress, len(chunks), f"simulate m={m}")

        def feature_chunks():
            """Yield (Phi, Z) for consecutive blocks of data points (rows i*m + j)."""
            for start in chunks:
                stop = min(pr.n, start + per)
                Z = rng_z.standard_normal(((stop - start) * m, pr.d))
                Y = pr.a * np.repeat(X[start:stop], m, axis=0) + math.sqrt(pr.delta) * Z
                H = Y @ W.T / math.sqrt(pr.d)
                if surrogate:
                    fresh = rng_xi2.standard_normal(H.shape)
                    Phi = (coef.mu0 + coef.mu1 * H + coef.mu_s * np.repeat(Xi[start:stop], m, axis=0)
                           + coef.mu_f * fresh)
                else:
                    Phi = act(H)
                yield Phi, Z
                if bar is not None:
                    bar.update(1)

        try:
            if pr.p <= N:
                S = np.zeros((pr.p, pr.p))
                TZ = np.zeros((pr.p, pr.d))
                zz = 0.0
                for Phi, Z in feature_chunks():
                    S += Phi.T @ Phi
                    TZ += Phi.T @ Z
                    zz += float(np.sum(Z * Z))
                Bt = -_flow_solve(S / N, TZ / N, pr.lam, T)
                train_error = float((np.sum(Bt * (S @ Bt)) + 2.0 * np.sum(Bt * TZ) + zz) / (N * pr.d))
                form = "primal"
            else:
                parts = list(feature_chunks())
                Phi = np.vstack([q[0] for q in parts])
                Z = np.vstack([q[1] for q in parts])
                del parts
                K = Phi @ Phi.T
                if T is None:
                    alpha = _spd_solve(K, Z, pr.lam * N)  # (K + lam N)^{-1} Z
                    Bt = -Phi.T @ alpha
                    residual = pr.lam * N * alpha if pr.lam > 0 else Z - K @ alpha
                else:
                    # push-through: g_T(Phi^T Phi/N) Phi^T = Phi^T g_T(Phi Phi^T/N)
                    w, Q = np.linalg.eigh(K / N)
                    w = np.maximum(w, 0.0)
                    g = flow_filter(w, pr.lam, T)
                    QZ = Q.T @ Z
                    Bt = -Phi.T @ (Q @ (g[:, None] * QZ)) / N
                    residual = Q @ ((1.0 - w * g)[:, None] * QZ)  # (I - G g_T(G)) Z, G = Phi Phi^T / N
                train_error = float(np.sum(residual**2) / (N * pr.d))
                form = "dual"
        finally:
            if bar is not None:
                bar.close()

    if not math.isfinite(train_error):
        raise FloatingPointError(f"non-finite train error {train_error} at {pr}")
    return FittedScore(problem=pr, activation=act, surrogate=surrogate, coefficients=coef, W=W,
                       Bt=Bt, train_error=train_error, test_error=None, form=form,
                       mehler_order=order, truncation_bound=bound, train_time=T)


def fit_score(act, problem: Problem, seed: int, *, surrogate: bool = False, covariance=None,
              train_time=None, progress=None) -> FittedScore:
    """Draw one instance (``W``, data, noise) from ``seed``, train the score and compute its exact test error.

    The data ``x_i ~ N(0, Sigma)`` (``covariance``: ``None`` for ``Sigma = I``, a
    :class:`Covariance`, a 1-D array of eigenvalues or a ``d x d`` matrix) are drawn from
    the ``X`` stream as ``G Sigma^{1/2}``; training is :func:`fit_on_data`'s.
    """
    import pencils

    act = pencils.activation(act)
    surrogate = _check_surrogate(surrogate)
    pr = problem
    cov = Covariance.of(covariance, pr.d)
    T = _check_train_time(train_time)
    rngs = _seed_streams(seed, pr.d, pr.n, pr.p)
    X = cov.sample(rngs[1].standard_normal((pr.n, pr.d)))
    coef = Coefficients.at(act, pr.t, cov.tau)
    fitted = _train(act, pr, X, rngs, surrogate, coef, T, progress=progress)
    fitted.problem = pr
    W, Bt = fitted.W, fitted.Bt
    Ct = cov.feature_covariance(W, pr.a, pr.delta)  # Cov(W y / sqrt d), y ~ p_t = N(0, S_t)
    order, bound = fitted.mehler_order, fitted.truncation_bound
    if surrogate:
        test = _moments.surrogate_test_moments(coef, W, Ct)
    else:
        test = _moments.true_test_moments(act, W, Ct)
        order, bound = max(order, test.mehler_order), max(bound, test.truncation_bound)
    trace = cov.inverse_trace(pr.a, pr.delta)  # tr(S_t^{-1}) / d
    # E[phi y^T] S_t^{-1} = E rho'(h_k) W_k / sqrt(d) (Stein), what the moments' V holds.
    test_error = _quadratic_error(Bt, test.U, test.V, math.sqrt(pr.delta), pr.d, pr.delta * trace)
    if not math.isfinite(test_error):
        raise FloatingPointError(f"non-finite test error {test_error} at {pr} seed {seed}")
    fitted.test_error = test_error
    fitted.dsm_offset = pr.a**2 if cov.isotropic else 1.0 - pr.delta * trace
    fitted.mehler_order, fitted.truncation_bound = order, bound
    return fitted


# ----------------------------------------------------------------------------------
# Averages over seeds


@dataclass(frozen=True)
class SimulationResult:
    """Seed averages of one parameter point (``.test``, ``.train``, ``.dsm_test_loss``)
    with standard errors of the mean (``inf`` when a single seed was run)."""

    problem: Problem
    activation: str
    surrogate: bool
    seeds: tuple[int, ...]
    test_values: np.ndarray = field(repr=False)
    train_values: np.ndarray = field(repr=False)
    form: str = ""
    mehler_order: int = 0
    truncation_bound: float = 0.0
    seconds: float = 0.0
    #: ``1 - Delta tr(S_t^{-1}) / d`` (``a_t^2`` for isotropic data): DSM test loss minus test error.
    dsm_offset: float | None = None
    train_time: float | None = None
    #: ``tr Sigma / d`` of the data covariance (1 for isotropic data).
    tau: float = 1.0
    isotropic: bool = True

    @property
    def d(self) -> int:
        return self.problem.d

    @property
    def test(self) -> float:
        return float(np.mean(self.test_values))

    @property
    def train(self) -> float:
        return float(np.mean(self.train_values))

    @property
    def dsm_test_loss(self) -> float:
        offset = self.problem.a**2 if self.dsm_offset is None else self.dsm_offset
        return self.test + offset

    @property
    def test_se(self) -> float:
        return _standard_error(self.test_values)

    @property
    def train_se(self) -> float:
        return _standard_error(self.train_values)

    @property
    def dsm_test_loss_se(self) -> float:
        return self.test_se

    def __str__(self) -> str:
        pr = self.problem
        kind = "surrogate" if self.surrogate else self.activation
        extra = "" if self.train_time is None else f" T={self.train_time:g}"
        extra += "" if self.isotropic else f" tau={self.tau:.4g} (structured)"
        return (f"{kind} d={pr.d} n={pr.n} p={pr.p} m={pr.m} t={pr.t} lam={pr.lam}{extra}: "
                f"test={self.test:.6g}±{self.test_se:.2g} train={self.train:.6g}±{self.train_se:.2g}")


def _standard_error(values: np.ndarray) -> float:
    if len(values) < 2:
        return math.inf
    return float(np.std(values, ddof=1) / math.sqrt(len(values)))


def _seed_list(seeds) -> tuple[int, ...]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1 (a count) or a list of ints, got {seeds!r}")
        return tuple(range(int(seeds)))
    out = tuple(int(s) for s in seeds)
    if not out:
        raise ValueError("seeds is empty")
    if len(set(out)) != len(out):
        raise ValueError(f"seeds repeat: {out}")
    return out


def simulate(activation, *, d, psi_n, psi_p, t, lam, m, seeds: int | Iterable[int] = 4,
             surrogate: bool = False, covariance=None, train_time=None,
             progress: bool | None = None, max_memory: float | None = None) -> SimulationResult:
    """Monte Carlo test and train errors of the DSM random-features model.

    Parameters
    ----------
    activation : name, sympy expression, callable or :class:`pencils.Activation`.
    d, psi_n, psi_p : dimension and ratios ``n = round(psi_n d)``, ``p = round(psi_p d)``.
    t, lam : diffusion time (> 0) and ridge (>= 0; 0 is the minimum-norm interpolator).
    m : noise draws per data point, an integer >= 1 or ``math.inf`` / ``"inf"``.
    seeds : a count (seeds ``0..k-1``) or explicit integer seeds; one instance each.
    surrogate : ``True`` or ``False``: train and test the Gaussian-equivalent surrogate
        instead of ``rho``.
    covariance : ``None`` (``x ~ N(0, I)``), a 1-D array of the ``d`` eigenvalues of ``Sigma``
        or a symmetric PSD ``d x d`` matrix: data ``x ~ N(0, Sigma)`` (MODEL.md "Structured
        data").  The test error is then ``(1/d) E ||B phi(y) + sqrt(Delta) S_t^{-1} y||^2`` on
        ``p_t = N(0, S_t)``, ``S_t = a_t^2 Sigma + Delta_t I``, and the DSM test loss is
        ``E_test + 1 - Delta_t tr(S_t^{-1})/d``; the surrogate's constants are taken at
        ``v_t = a_t^2 tau + Delta_t``, covariance ``a_t^2 tau``, ``tau = tr Sigma / d``.
    train_time : ``None`` (``T = inf``, the ridge solution) or ``T >= 0``: ``B(T)`` of gradient
        flow from ``B = 0`` (MODEL.md "Training time"), by eigendecomposition of the Gram matrix.
    progress : a tqdm bar on stderr over seeds (and over feature chunks of long finite-``m``
        runs): ``True`` always, ``False`` never, ``None`` once a run takes over 3 s.
    max_memory : bytes one instance may use (default: the available memory, /proc/meminfo);
        a larger :func:`memory_estimate` raises a ValueError before anything is allocated.

    Examples
    --------
    >>> r = simulate("relu", d=40, psi_n=1, psi_p=0.5, t=0.5, lam=0.1, m=1, seeds=2)
    >>> 0 < r.train < 1 and 0 < r.test and abs(r.dsm_test_loss - r.test - math.exp(-1)) < 1e-12
    True
    """
    import pencils  # local: validation depends on pencils, not the reverse

    surrogate = _check_surrogate(surrogate)
    if progress is not None and not isinstance(progress, (bool, np.bool_)):
        raise ValueError(f"progress must be True, False or None, got {progress!r}")
    problem = make_problem(d=d, psi_n=psi_n, psi_p=psi_p, t=t, lam=lam, m=m)
    cov = Covariance.of(covariance, problem.d)
    T = _check_train_time(train_time)
    seed_list = _seed_list(seeds)
    _check_memory(memory_estimate(problem), max_memory, problem)
    act = pencils.activation(activation)
    tests, trains = [], []
    form, order, bound, offset = "", 0, 0.0, None
    start = time.perf_counter()
    label = "surrogate" if surrogate else act.name
    bar = _progress_bar(progress, len(seed_list), f"simulate {label} d={problem.d} m={problem.m}")
    try:
        for seed in seed_list:
            fitted = fit_score(act, problem, seed, surrogate=surrogate, covariance=cov, train_time=T,
                               progress=progress)
            tests.append(fitted.test_error)
            trains.append(fitted.train_error)
            form, offset = fitted.form, fitted.dsm_offset
            order, bound = max(order, fitted.mehler_order), max(bound, fitted.truncation_bound)
            if bar is not None:
                bar.set_postfix_str(f"test={fitted.test_error:.5g} train={fitted.train_error:.5g}",
                                    refresh=False)
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return SimulationResult(problem=problem, activation=act.name, surrogate=surrogate,
                            seeds=seed_list, test_values=np.array(tests),
                            train_values=np.array(trains), form=form, mehler_order=order,
                            truncation_bound=bound, seconds=time.perf_counter() - start,
                            dsm_offset=offset, train_time=T, tau=cov.tau, isotropic=cov.isotropic)
