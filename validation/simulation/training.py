"""Training one random-features score by DSM on given data, and the memory it needs.

:func:`fit_on_data` trains ``B`` on an ``(n, d)`` array (``W`` and the noise drawn from
:func:`validation.simulation.problem.instance_streams`) and returns a :class:`FittedScore`;
the primal (``p <= nm``, streamed in chunks of :data:`CHUNK_ROWS` rows), dual (``p > nm``)
and noise-averaged (``m = inf``, :mod:`validation.simulation.moments`) forms, ridge or
gradient flow (:func:`flow_filter`); :func:`memory_estimate` and the progress bar of long runs.
"""
from __future__ import annotations

import math
import numbers
import os
import sys
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from . import moments as _moments
from .problem import (
    Coefficients,
    Problem,
    check_data,
    check_reals,
    instance_streams,
    parse_m,
)

#: Rows of the feature matrix materialised at once when streaming (times ``p`` floats).
CHUNK_ROWS = 4096
#: Runs longer than this (seconds) print progress lines when ``progress`` is ``None``.
PROGRESS_AFTER = 3.0


# ----------------------------------------------------------------------------------
# Memory and progress


def memory_estimate(pr: Problem, covariance=None) -> int:
    """Peak bytes of the largest arrays one instance allocates (float64), a slight over-estimate.

    Primal (``p <= nm``): ``p x p`` normal matrix and its factor, the test moments
    (``p x p``: ``W W^T``, correlations, ``U``), a streamed chunk of features;
    dual: the ``nm x p`` features, ``nm x d`` noise, the ``nm x nm`` kernel and its
    eigenvectors; ``m = inf``: the ``p x p`` moments and a chunk of Mehler coefficients.
    ``covariance`` (as given to :func:`validation.simulate`): a ``d x d`` matrix adds its
    checked copy, eigenvectors and square root (``5 d^2``); otherwise ``d`` eigenvalues.
    Only the shapes are read, so the estimate itself allocates nothing proportional to ``d``.
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
    try:
        matrix = getattr(covariance, "matrix", None) is not None or np.ndim(covariance) == 2
    except ValueError:  # ragged nested lists: Covariance.of reports them
        matrix = False
    base += 5 * d * d if matrix else d
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


def check_memory(estimate: int, max_memory, who: str, what: str, advice: str) -> None:
    """``ValueError`` before any large allocation when ``estimate`` bytes exceed ``max_memory``
    (default: the available memory).  ``who`` needs them ``what`` for (``"simulate"``, ``"for
    d=... n=..."``), ``advice`` says which arguments to lower; the message names all three.  ``estimate`` may be any
    integer (``d = 1e300`` gives one far beyond a double)."""
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
        size = f"{estimate / 2**30:.3g}" if estimate < 2**1000 else "more than 1e290"
        raise ValueError(f"{who} needs about {size} GiB {what} but the {source} is {limit / 2**30:.3g} GiB; "
                         f"{advice}, or pass max_memory=<bytes> to override")


def _check_memory(estimate: int, max_memory, pr: Problem) -> None:
    check_memory(estimate, max_memory, "simulate", f"for d={pr.d} n={pr.n} p={pr.p} m={pr.m}",
                 "lower d, psi_n, psi_p or m")


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
        average given each point (Mehler expansion, :mod:`validation.simulation.moments`).
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
    X = check_data("X", X)
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"X must be a non-empty (n, d) array, got shape {X.shape}")
    n, d = X.shape
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    v = check_reals(p=p, t=t, lam=lam, allow_zero=("lam",), integers=("p",))
    p = v["p"]
    pr = Problem(d=d, n=n, p=p, m=parse_m(m), t=v["t"], lam=v["lam"], psi_n=n / d, psi_p=p / d)
    T = _check_train_time(train_time)
    estimate = memory_estimate(pr)
    _check_memory(estimate, max_memory, pr)
    if surrogate and coefficients is None:
        tau_value = float(np.sum(X * X) / (n * d)) if tau is None else float(tau)
        coefficients = Coefficients.at(act, pr.t, tau_value)
    return _train(act, pr, X, instance_streams(seed, d, n, p), surrogate, coefficients, T)



def _train(act, pr: Problem, X: np.ndarray, rngs, surrogate: bool, coef, T: float | None,
           progress=None, model=None) -> FittedScore:
    """Draw ``W`` (and the noise) from ``rngs`` and train ``B`` on ``X``; no test error.

    ``model``: other features, an object with ``features(H, X_rows, W, Xi_rows, fresh, m)`` and
    ``moments_inf(W, X, Xi, delta)`` (the conditional surrogate and the centred true features of
    :mod:`validation.simulation.spiked`); ``Xi_rows`` and ``fresh`` are ``None`` unless ``surrogate``."""
    rng_w, _, rng_z, rng_xi, rng_xi2 = rngs
    W = rng_w.standard_normal((pr.p, pr.d))
    C = W @ W.T / pr.d
    Xi = rng_xi.standard_normal((pr.n, pr.p)) if surrogate else None
    order, bound = 0, 0.0

    if math.isinf(pr.m):
        if model is not None:
            train = model.moments_inf(W, X, Xi, pr.delta)
        elif surrogate:
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
                if model is not None:
                    Phi = model.features(H, X[start:stop], W, None if Xi is None else Xi[start:stop],
                                         rng_xi2.standard_normal(H.shape) if surrogate else None, m)
                elif surrogate:
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

