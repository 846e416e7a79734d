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
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import scipy.linalg

from derivations.theory import Coefficients as TheoryCoefficients
from derivations.theory import parse_m

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
    values = {"d": d, "psi_n": psi_n, "psi_p": psi_p, "t": t, "lam": lam}
    for name, value in values.items():
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a real number, got {value!r}") from None
        if math.isnan(v):
            raise ValueError(f"{name} is NaN")
        if math.isinf(v):
            raise ValueError(f"{name} must be finite, got {value!r}")
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
# One trained score


@dataclass
class FittedScore:
    """A trained random-features score ``s(y) = B phi(y) / sqrt(Delta)`` and its errors.

    ``Bt`` is ``B^T`` (``p x d``).  ``test_error`` is exact given ``(W, B)``;
    :meth:`sampled_dsm_loss` and :meth:`sampled_test_error` estimate the same
    quantities from fresh samples (used to check the exact formulas).
    """

    problem: Problem
    activation: object
    surrogate: bool
    coefficients: Coefficients
    W: np.ndarray
    Bt: np.ndarray
    train_error: float
    test_error: float
    form: str  # "primal", "dual" or "noise-averaged"
    mehler_order: int = 0
    truncation_bound: float = 0.0

    @property
    def dsm_test_loss(self) -> float:
        return self.test_error + self.problem.a**2

    def features(self, Y: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Test features of fresh inputs ``Y`` (rows); the surrogate draws fresh ``xi``."""
        d = self.problem.d
        H = Y @ self.W.T / math.sqrt(d)
        if not self.surrogate:
            return self.activation(H)
        if rng is None:
            raise ValueError("surrogate test features need an rng for their fresh noise xi")
        c = self.coefficients
        return c.mu0 + c.mu1 * H + c.mu_star * rng.standard_normal(H.shape)

    def sampled_dsm_loss(self, samples: int, rng: np.random.Generator) -> tuple[float, float]:
        """DSM loss on fresh ``(x, z)``: mean and standard error of ``||B phi(y) + z||^2 / d``."""
        pr = self.problem
        X = rng.standard_normal((samples, pr.d))
        Z = rng.standard_normal((samples, pr.d))
        Y = pr.a * X + math.sqrt(pr.delta) * Z
        per = np.sum((self.features(Y, rng) @ self.Bt + Z) ** 2, axis=1) / pr.d
        return float(per.mean()), float(per.std(ddof=1) / math.sqrt(samples))

    def sampled_test_error(self, samples: int, rng: np.random.Generator) -> tuple[float, float]:
        """Test error from fresh ``y ~ N(0, I)``: mean and standard error."""
        pr = self.problem
        Y = rng.standard_normal((samples, pr.d))
        per = np.sum((self.features(Y, rng) @ self.Bt + math.sqrt(pr.delta) * Y) ** 2, axis=1) / pr.d
        return float(per.mean()), float(per.std(ddof=1) / math.sqrt(samples))


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


def _quadratic_error(Bt: np.ndarray, U: np.ndarray, V: np.ndarray, scale: float, d: int) -> float:
    """``(1/d)[tr(B U B^T) + 2 scale tr(B V) + scale^2 d]`` -- the mean of ``||B phi + scale y||^2 / d``."""
    value = (np.sum(Bt * (U @ Bt)) + 2.0 * scale * np.sum(Bt * V)) / d + scale**2
    return float(value)


def fit_score(act, problem: Problem, seed: int, *, surrogate: bool = False) -> FittedScore:
    """Draw one instance (``W``, data, noise) from ``seed`` and train the score."""
    pr = problem
    coef = Coefficients.of(act, pr.t)
    # Independent streams: the draws do not depend on how the computation is chunked.
    streams = np.random.SeedSequence([int(seed), pr.d, pr.n, pr.p]).spawn(5)
    rng_w, rng_x, rng_z, rng_xi, rng_xi2 = [np.random.default_rng(s) for s in streams]
    W = rng_w.standard_normal((pr.p, pr.d))
    X = rng_x.standard_normal((pr.n, pr.d))
    C = W @ W.T / pr.d
    Xi = rng_xi.standard_normal((pr.n, pr.p)) if surrogate else None
    order, bound = 0, 0.0

    if math.isinf(pr.m):
        if surrogate:
            train = _moments.surrogate_train_moments_inf(coef, W, X, Xi, pr.a, pr.delta, C)
        else:
            train = _moments.true_train_moments_inf(act, W, X, pr.a, pr.delta, C)
            order, bound = train.mehler_order, train.truncation_bound
        Bt = -_spd_solve(train.U, train.V, pr.lam)
        train_error = _quadratic_error(Bt, train.U, train.V, 1.0, pr.d)
        form = "noise-averaged"
    else:
        m = int(pr.m)
        N = pr.n * m

        def feature_chunks():
            """Yield (Phi, Z) for consecutive blocks of data points (rows i*m + j)."""
            per = max(1, CHUNK_ROWS // m)
            for start in range(0, pr.n, per):
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

        if pr.p <= N:
            S = np.zeros((pr.p, pr.p))
            T = np.zeros((pr.p, pr.d))
            zz = 0.0
            for Phi, Z in feature_chunks():
                S += Phi.T @ Phi
                T += Phi.T @ Z
                zz += float(np.sum(Z * Z))
            Bt = -_spd_solve(S / N, T / N, pr.lam)
            train_error = float((np.sum(Bt * (S @ Bt)) + 2.0 * np.sum(Bt * T) + zz) / (N * pr.d))
            form = "primal"
        else:
            parts = list(feature_chunks())
            Phi = np.vstack([q[0] for q in parts])
            Z = np.vstack([q[1] for q in parts])
            K = Phi @ Phi.T
            alpha = _spd_solve(K, Z, pr.lam * N)  # (K + lam N)^{-1} Z
            Bt = -Phi.T @ alpha
            residual = pr.lam * N * alpha if pr.lam > 0 else Z - K @ alpha
            train_error = float(np.sum(residual**2) / (N * pr.d))
            form = "dual"

    if surrogate:
        test = _moments.surrogate_test_moments(coef, W, C)
    else:
        test = _moments.true_test_moments(act, W, C)
        order, bound = max(order, test.mehler_order), max(bound, test.truncation_bound)
    test_error = _quadratic_error(Bt, test.U, test.V, math.sqrt(pr.delta), pr.d)
    for name, value in (("train", train_error), ("test", test_error)):
        if not math.isfinite(value):
            raise FloatingPointError(f"non-finite {name} error {value} at {pr} seed {seed}")
    return FittedScore(problem=pr, activation=act, surrogate=surrogate, coefficients=coef, W=W,
                       Bt=Bt, train_error=train_error, test_error=test_error, form=form,
                       mehler_order=order, truncation_bound=bound)


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
        return self.test + self.problem.a**2

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
        return (f"{kind} d={pr.d} n={pr.n} p={pr.p} m={pr.m} t={pr.t} lam={pr.lam}: "
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
             surrogate: bool = False, progress: bool | None = None) -> SimulationResult:
    """Monte Carlo test and train errors of the DSM random-features model.

    Parameters
    ----------
    activation : name, sympy expression, callable or :class:`pencils.Activation`.
    d, psi_n, psi_p : dimension and ratios ``n = round(psi_n d)``, ``p = round(psi_p d)``.
    t, lam : diffusion time (> 0) and ridge (>= 0).
    m : noise draws per data point, an integer >= 1 or ``math.inf`` / ``"inf"``.
    seeds : a count (seeds ``0..k-1``) or explicit integer seeds; one instance each.
    surrogate : train and test the Gaussian-equivalent surrogate instead of ``rho``.
    progress : print one line per seed to stderr (``None``: only once a run is slow).

    Examples
    --------
    >>> r = simulate("relu", d=40, psi_n=1, psi_p=0.5, t=0.5, lam=0.1, m=1, seeds=2)
    >>> 0 < r.train < 1 and 0 < r.test and abs(r.dsm_test_loss - r.test - math.exp(-1)) < 1e-12
    True
    """
    import pencils  # local: validation depends on pencils, not the reverse

    problem = make_problem(d=d, psi_n=psi_n, psi_p=psi_p, t=t, lam=lam, m=m)
    act = pencils.activation(activation)
    seed_list = _seed_list(seeds)
    tests, trains = [], []
    form, order, bound = "", 0, 0.0
    start = time.perf_counter()
    for k, seed in enumerate(seed_list):
        fitted = fit_score(act, problem, seed, surrogate=surrogate)
        tests.append(fitted.test_error)
        trains.append(fitted.train_error)
        form = fitted.form
        order, bound = max(order, fitted.mehler_order), max(bound, fitted.truncation_bound)
        elapsed = time.perf_counter() - start
        if progress or (progress is None and elapsed > PROGRESS_AFTER):
            print(f"[simulate] {'surrogate' if surrogate else act.name} d={problem.d} n={problem.n} "
                  f"p={problem.p} m={problem.m}: seed {k + 1}/{len(seed_list)} "
                  f"test={fitted.test_error:.5g} train={fitted.train_error:.5g} ({elapsed:.1f} s)",
                  file=sys.stderr, flush=True)
    return SimulationResult(problem=problem, activation=act.name, surrogate=surrogate,
                            seeds=seed_list, test_values=np.array(tests),
                            train_values=np.array(trains), form=form, mehler_order=order,
                            truncation_bound=bound, seconds=time.perf_counter() - start)
