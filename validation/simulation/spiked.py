"""Monte Carlo of the spiked-covariance family (MODEL.md, "Spiked covariance").

**The family.**  At dimension ``d``, ``Sigma`` is diagonal (``W`` is rotation invariant) with
``k`` spike eigenvalues ``kappa_j d`` on the first ``k`` coordinates and ``d - k`` bulk
eigenvalues read from the bounded measure ``nu_b`` by midpoint quantiles
(:func:`spiked_eigenvalues`).  The true-activation and plain-surrogate runs are
:func:`validation.simulate` with ``covariance=spiked_eigenvalues(...)``.

**The conditional surrogate** (``shared/notes/spiked-route.md``) is Gaussian equivalence
conditioned on the spike part of each pre-activation.  For a training row, with
``s = a sum_{j <= k} W_kj x_j / sqrt(d)`` (``= a_t sum_j sqrt(kappa_j) omega_j c_j``) and
``h - s`` the rest of ``h = W y / sqrt(d)`` (bulk data and all noise, variance ``-> v_b``):

    phi = mu0(s) + mu1(s) (h - s) + mu_s(s) xi_i + mu_f(s) xi_ij,

with the constants of ``rho(s + g)``, ``g ~ N(0, v_b)``, ``v_b = a_t^2 tau_b + Delta_t``
(:class:`ConditionalCoefficients`); two noisy copies of one point share ``a_t^2 tau_b`` of
``g``'s variance.  ``m = inf`` averages the noise exactly.  A test point ``y = a_t x + sqrt(Delta_t) z``
gets ``mu0(s) + mu1(s)(h - s) + mu_*(s) xi``, ``s`` again the spike part of ``a_t x``; its test
error is exact given ``(W, B)``: the moments are averaged over ``x``'s spike coordinates by
tensor Gauss--Hermite quadrature (:func:`conditional_test_moments`), and
``E[phi y^T] S_t^{-1} = E[mu1(s)] W / sqrt(d)`` (Stein's lemma in ``x`` and ``z``, with
``mu0' = mu1``).

**Centred true features** (``features="centred"``): ``phi = rho(h) - mu0_i(s)``,
the true features minus their conditional mean given the spike part ``s`` of the pre-activation,
``mu0_i(s) = E[rho(s + sqrt(v_i) g)]`` with ``v_i`` the variance of ``h - s`` given ``W``.  The
theory leaves ``mu0`` out (:mod:`derivations.conditional`): it is a function of ``k`` spike
coordinates, so its effective rank is finite and it drops out as ``d -> inf``, but with many
directions of order ``d`` that rank is a sizable fraction of ``d`` (products of Hermite
polynomials in ``k`` variables), and the true features converge slowly in ``d``.  Removing it
changes nothing in the limit; at ``m = 1`` it removes most of the finite-size effect, at
``m = inf`` not always (it also removes the linear part of the spike signal; ``docs/spiked.md``
section 13).  The test moments stay exact (:func:`centred_test_moments`).

Use :func:`simulate_spiked` (``features="true"``, ``"plain"``, ``"conditional"`` or ``"centred"``);
the results extrapolate in ``d`` like :func:`validation.simulate`'s (same :class:`SimulationResult`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline

from derivations.overlaps import conditional_coefficients

from . import moments as _moments
from .driver import SimulationResult, _seed_list
from .problem import Covariance, Problem, instance_streams, make_problem
from .training import _check_memory, _check_train_time, _quadratic_error, _train, memory_estimate

__all__ = ["FEATURES", "ConditionalCoefficients", "ConditionalModel", "centred_test_moments", "conditional_instance",
           "conditional_test_moments", "simulate_spiked", "spiked_eigenvalues"]

#: feature models of :func:`simulate_spiked`
FEATURES = ("true", "plain", "conditional", "centred")
#: Gauss--Hermite nodes of ``E[mu0(s)^2]`` in :func:`centred_test_moments`
CENTRED_NODES = 96
#: interpolation points of the coefficient functions over ``[-s_max, s_max]``
GRID_POINTS = 2001


def spiked_eigenvalues(kappa, bulk, d: int) -> np.ndarray:
    """The ``d`` eigenvalues of the spiked family at dimension ``d``: ``kappa_j d`` first, then
    ``d - k`` midpoint quantiles of ``nu_b``.

    ``bulk``: a number (a flat bulk), or the atoms of ``nu_b`` with equal weights (a 1-D array;
    read by its quantile function at ``(i + 1/2)/(d - k)``).

    >>> spiked_eigenvalues([0.2], 1.0, 5).tolist()
    [1.0, 1.0, 1.0, 1.0, 1.0]
    >>> spiked_eigenvalues([0.3, 0.1], [0.5, 1.5], 10).tolist()
    [3.0, 1.0, 0.5, 0.5, 0.5, 0.5, 1.5, 1.5, 1.5, 1.5]
    """
    kappa = np.atleast_1d(np.asarray(kappa, dtype=float))
    d = int(d)
    k = kappa.size
    if kappa.ndim != 1 or not np.all(np.isfinite(kappa)) or np.any(kappa <= 0):
        raise ValueError(f"kappa must be positive finite spike shares, got {kappa.tolist()}")
    if d <= k:
        raise ValueError(f"d = {d} must exceed the number of spikes {k}")
    b = np.asarray(bulk, dtype=float)
    if b.ndim == 0:
        values = np.full(d - k, float(b))
    else:
        u = (np.arange(d - k) + 0.5) / (d - k)
        values = np.quantile(np.sort(b.reshape(-1)), u, method="inverted_cdf")
    if not np.all(np.isfinite(values)) or np.any(values < 0) or not np.any(values > 0):
        raise ValueError("the bulk must be finite, >= 0 and not all zero")
    return np.r_[kappa * d, values]


@dataclass(frozen=True)
class ConditionalCoefficients:
    """``mu0(s), mu1(s), mu_*^2(s), mu_s^2(s), mu_f^2(s)``: the Gaussian-equivalence constants of
    ``rho(s + g)``, ``g ~ N(0, v_b)``, for two copies sharing covariance ``c = a_t^2 tau_b``:

        mu0 = E rho(s + g),  mu1 = E[g rho(s + g)] / v_b,  mu_*^2 = E rho(s + g)^2 - mu0^2 - mu1^2 v_b,
        mu_s^2 = E_g0[ alpha0(s + sqrt(c) g0)^2 ] - mu0^2 - mu1^2 c,   mu_f^2 = mu_*^2 - mu_s^2,

    computed by :func:`derivations.overlaps.conditional_coefficients` (the theory's numbers),
    with ``alpha0(u) = E rho(u + sqrt(Delta) g1)`` (the shared part written as an average over the
    common draw ``g0``: a :data:`derivations.overlaps.SHARED_NODES`-point Gauss--Hermite rule, exact to ``~1e-10`` for
    kinked activations at ``Delta >= 0.05``).  At ``s = 0`` they are the structured-data numbers
    at ``tau_b`` (``Activation.equivalence_constants``; tested).  :meth:`table` evaluates them on a
    grid and returns cubic splines (error ``O(h^4)``, ``h = 2 s_max / GRID_POINTS``).
    """

    activation: object
    t: float
    tau_b: float

    @property
    def variance(self) -> float:
        """``v_b = a_t^2 tau_b + Delta_t``."""
        return math.exp(-2.0 * self.t) * self.tau_b - math.expm1(-2.0 * self.t)

    def at(self, s) -> dict:
        return conditional_coefficients(self.activation, self.t, self.tau_b, s)

    def table(self, s_max: float) -> dict:
        """Cubic splines of the five functions (and ``mu_*, mu_s, mu_f``) on ``[-s_max, s_max]``."""
        s_max = max(float(s_max), 1e-8)
        grid = np.linspace(-s_max, s_max, GRID_POINTS)
        vals = self.at(grid)
        for name in ("mu_star", "mu_s", "mu_f"):
            vals[name] = np.sqrt(vals[name + "_sq"])
        return {name: CubicSpline(grid, v) for name, v in vals.items()}


def _off_spike_variances(eig: np.ndarray, k: int, a: float, delta: float) -> np.ndarray:
    """Per coordinate, the variance of ``y = a x + sqrt(Delta) z`` outside the spike part ``a x_sp``:
    ``Delta`` on the ``k`` spike coordinates, ``a^2 lambda_j + Delta`` on the bulk."""
    return np.r_[np.full(k, delta), a * a * eig[k:] + delta]


def _spike_part(X, W, k: int, a: float) -> np.ndarray:
    """``s = a X_sp W_sp^T / sqrt(d)``: the spike part of the pre-activations of the rows of ``X``."""
    return a * (X[:, :k] @ W[:, :k].T) / math.sqrt(W.shape[1])


class ConditionalModel:
    """The conditional surrogate's training features for :func:`validation.simulation.training._train`
    (``fn``: the splines of :meth:`ConditionalCoefficients.table`).  :meth:`noise` gives the two
    noise scales and :meth:`linear` the linear coefficient; a subclass may read them otherwise
    (``benchmarks/spiked_noise_rank.py`` puts the theory's rank-one noise readings there,
    ``benchmarks/spiked_mu1_rank.py`` its truncated expansions of ``mu1``)."""

    def __init__(self, fn: dict, k: int, a: float):
        self.fn, self.k, self.a = fn, k, a

    def linear(self, S, X_sp, W_sp):
        """``mu1`` of the pairs (rows of ``X_sp`` x rows of ``W_sp``: their spike coordinates;
        ``S`` their spike parts): ``mu1(s)``.  Used by the training features and by the test
        moments (:func:`conditional_test_moments`)."""
        return self.fn["mu1"](S)

    def noise(self, S, X, W) -> tuple:
        """``(mu_s, mu_f)`` of the pairs ``(x_i, w_j)`` (``n x p``; ``S`` their spike parts)."""
        return self.fn["mu_s"](S), self.fn["mu_f"](S)

    def fresh_variance(self, S, X, W):
        """``mu_f^2`` of those pairs (its own spline: ``m = inf`` averages the fresh part)."""
        return self.fn["mu_f_sq"](S)

    def features(self, H, X_rows, W, Xi_rows, fresh, m):
        """``mu0(s) + mu1(s)(h - s) + mu_s(s) xi_i + mu_f(s) xi_ij`` for rows ``i*m + j``."""
        S = _spike_part(X_rows, W, self.k, self.a)
        mu_s, mu_f = (np.repeat(v, m, axis=0) for v in self.noise(S, X_rows, W))
        M1 = np.repeat(self.linear(S, X_rows[:, :self.k], W[:, :self.k]), m, axis=0)
        S = np.repeat(S, m, axis=0)
        return self.fn["mu0"](S) + M1 * (H - S) + mu_s * np.repeat(Xi_rows, m, axis=0) + mu_f * fresh

    def moments_inf(self, W, X, Xi, delta):
        """Exact noise average (``m = inf``): given ``x_i``, ``h - s = a h_b(x_i) + sqrt(Delta) W z / sqrt(d)``."""
        p, d = W.shape
        S = _spike_part(X, W, self.k, self.a)
        f = self.fn
        M1 = self.linear(S, X[:, :self.k], W[:, :self.k])
        mean = f["mu0"](S) + M1 * (self.a * (X[:, self.k:] @ W[:, self.k:].T) / math.sqrt(d)) \
            + self.noise(S, X, W)[0] * Xi
        n = X.shape[0]
        U = mean.T @ mean / n + (M1.T @ M1 / n) * (delta * (W @ W.T) / d)
        U[np.diag_indices(p)] += np.mean(self.fresh_variance(S, X, W), axis=0)
        V = math.sqrt(delta) * np.mean(M1, axis=0)[:, None] * W / math.sqrt(d)
        return _moments.Moments(U=U, V=V)


def conditional_test_moments(fn: dict, W: np.ndarray, eig: np.ndarray, k: int, a: float, delta: float,
                             nodes: int, linear=None) -> _moments.Moments:
    """``U = E[phi phi^T]``, ``V = E[phi y^T] S_t^{-1}`` of the conditional test features, ``y ~ N(0, S_t)``.

    Given the spike coordinates ``x_sp`` of the data (``Var x_j = eig_j``), ``s = a W_sp x_sp / sqrt(d)``
    and ``h - s ~ N(0, C_r)``, ``C_r = W D W^T / d`` with ``D = a^2 eig + Delta`` on the bulk and
    ``Delta`` on the spike coordinates: ``U = E[mu0 mu0^T + (mu1 mu1^T) o C_r + diag(mu_*^2)]`` and
    ``V = E[mu1(s)] W / sqrt(d)``, the average over ``x_sp`` by a ``nodes^k`` tensor Gauss--Hermite rule.
    ``linear``: ``mu1`` of the pairs, :meth:`ConditionalModel.linear` (default ``fn["mu1"](s)``).
    """
    p, d = W.shape
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / math.sqrt(2.0 * math.pi)
    grids = np.meshgrid(*([x] * k), indexing="ij")
    Z = np.stack([g.reshape(-1) for g in grids], axis=1)  # (nodes^k, k)
    wt = np.prod(np.meshgrid(*([w] * k), indexing="ij"), axis=0).reshape(-1)
    S = (Z * (a * np.sqrt(eig[:k]))) @ W[:, :k].T / math.sqrt(d)  # (nodes^k, p)
    M0, Mstar = fn["mu0"](S), fn["mu_star_sq"](S)
    M1 = fn["mu1"](S) if linear is None else linear(S, Z * np.sqrt(eig[:k]), W[:, :k])
    Cr = (W * _off_spike_variances(eig, k, a, delta)) @ W.T / d
    U = (M0.T * wt) @ M0 + ((M1.T * wt) @ M1) * Cr
    U[np.diag_indices(p)] += wt @ Mstar
    V = (wt @ M1)[:, None] * W / math.sqrt(d)
    return _moments.Moments(U=U, V=V)


class _CentredModel:
    """``rho(h) - mu0_i(s)``, the training features of ``features="centred"`` (module docstring);
    ``sd[i] = sqrt(v_i)``."""

    def __init__(self, act, k: int, a: float, sd: np.ndarray):
        self.act, self.k, self.a, self.sd = act, k, a, sd

    def features(self, H, X_rows, W, Xi_rows, fresh, m):
        S = np.repeat(_spike_part(X_rows, W, self.k, self.a), m, axis=0)
        return self.act(H) - self.act.gaussian_moments(S, self.sd[None, :], 0)[..., 0]

    def moments_inf(self, W, X, Xi, delta):
        """Exact noise average (``m = inf``): ``mu0(s)`` does not depend on the noise, so
        ``Ubar = Ubar_rho - (A^T M0 + M0^T A) / n + M0^T M0 / n`` with ``A = E_z rho(h)``,
        ``M0 = mu0(s)``, and ``Vbar`` is the true features' (``E_z[mu0 z] = 0``)."""
        d = W.shape[1]
        C = W @ W.T / d
        true = _moments.true_train_moments_inf(self.act, W, X, self.a, delta, C)
        A = self.act.gaussian_moments(self.a * (X @ W.T) / math.sqrt(d), math.sqrt(delta) * np.sqrt(np.diag(C))[None, :],
                                      0)[..., 0]
        M0 = self.act.gaussian_moments(_spike_part(X, W, self.k, self.a), self.sd[None, :], 0)[..., 0]
        n = X.shape[0]
        cross = A.T @ M0
        U = true.U - (cross + cross.T) / n + M0.T @ M0 / n
        return _moments.Moments(U=U, V=true.V, mehler_order=true.mehler_order, truncation_bound=true.truncation_bound)


def centred_test_moments(act, W: np.ndarray, eig: np.ndarray, k: int, a: float, delta: float,
                         nodes: int = CENTRED_NODES) -> _moments.Moments:
    """``U = E[phi phi^T]``, ``V = E[phi y^T] S_t^{-1}`` of the centred test features
    ``phi_i = rho(h_i) - mu0_i(s_i)``, ``y ~ N(0, S_t)``, exactly (up to a bounded Mehler truncation).

    With ``C = W S_t W^T / d`` (covariance of ``h``), ``C_s`` that of ``s`` (also
    ``Cov(h_i, s_l)``), ``sigma_i^2 = C_ii`` and ``v_i = C_ii - (C_s)_ii``, the Hermite
    coefficients of ``mu0_i`` at the scale of ``s_i`` are those of ``rho`` at ``sigma_i`` times
    ``(sd(s_i)/sigma_i)^j``, so every term of Mehler's expansion carries the same
    ``b_ij = alpha_j(sigma_i) / sqrt(j!)``:

        U_il = sum_j b_ij b_lj (R^j - R_s^j),  R = C / (sigma sigma^T),  R_s = C_s / (sigma sigma^T)  (i != l),
        U_ii = E rho(h_i)^2 - E mu0_i(s_i)^2   (the second term by a ``nodes``-point Gauss--Hermite rule),
        V_i  = E[rho'(h_i)] (W_i o c) / sqrt(d),  c_j = Delta / (a^2 lambda_j + Delta) on the spikes, 1 elsewhere

    (Stein's lemma; ``E mu0_i'(s_i) = E rho'(h_i)``)."""
    p, d = W.shape
    C = (W * (a * a * eig + delta)) @ W.T / d
    Ws = W[:, :k] * (a * np.sqrt(eig[:k]))
    Cs = Ws @ Ws.T / d
    sigma = np.sqrt(np.diag(C))
    tau = np.sqrt(np.diag(Cs))
    v_sd = np.sqrt(np.diag(C) - tau**2)
    norm = np.outer(sigma, sigma)
    R, Rs = C / norm, Cs / norm
    del C, Cs, norm
    np.fill_diagonal(R, 0.0)
    np.fill_diagonal(Rs, 0.0)
    r_max = float(max(np.max(np.abs(R)), np.max(np.abs(Rs)))) if p > 1 else 0.0
    order = _moments.mehler_order(r_max)
    alpha = act.gaussian_moments(np.zeros(p), sigma, order)
    scaled = alpha / np.sqrt(_moments._factorials(order))
    U = _moments.mehler_sum(scaled, R)
    del R
    U -= _moments.mehler_sum(scaled, Rs)
    del Rs
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    mu0 = act.gaussian_moments(tau[:, None] * x[None, :], v_sd[:, None], 0)[..., 0]  # (p, nodes)
    second = act.gaussian_second_moment(np.zeros(p), sigma)
    U[np.diag_indices(p)] = second - (mu0 * mu0) @ (w / math.sqrt(2.0 * math.pi))
    bound = 2.0 * _moments._bound(r_max, order, second - np.sum(scaled**2, axis=1))
    _moments._warn_if_loose(bound, float(np.max(second)), order)
    c = np.ones(d)
    c[:k] = delta / (a * a * eig[:k] + delta)
    V = (alpha[:, 1] / sigma)[:, None] * (W * c) / math.sqrt(d)
    return _moments.Moments(U=U, V=V, mehler_order=order, truncation_bound=bound)


def _instance_draws(pr: Problem, cov: Covariance, seed: int):
    """The streams of one instance, its data ``X`` and the ``W`` that :func:`_train` will draw from them
    (known before training: the models need it)."""
    rngs = instance_streams(seed, pr.d, pr.n, pr.p)
    X = cov.sample(rngs[1].standard_normal((pr.n, pr.d)))
    return rngs, X, instance_streams(seed, pr.d, pr.n, pr.p)[0].standard_normal((pr.p, pr.d))


def centred_instance(act, pr: Problem, cov: Covariance, k: int, seed: int, T):
    """One centred-features instance (same ``W``, data and noise as ``features="true"``):
    the fitted score with its exact test error and DSM offset."""
    rngs, X, W = _instance_draws(pr, cov, seed)
    eig = cov.eigenvalues
    sd = np.sqrt((W * W) @ _off_spike_variances(eig, k, pr.a, pr.delta) / pr.d)  # sqrt Var(h_i - s_i | W)
    fitted = _train(act, pr, X, rngs, False, None, T, model=_CentredModel(act, k, pr.a, sd))
    test = centred_test_moments(act, fitted.W, eig, k, pr.a, pr.delta)
    trace = cov.inverse_trace(pr.a, pr.delta)
    fitted.test_error = _quadratic_error(fitted.Bt, test.U, test.V, math.sqrt(pr.delta), pr.d, pr.delta * trace)
    fitted.dsm_offset = 1.0 - pr.delta * trace
    fitted.mehler_order, fitted.truncation_bound = test.mehler_order, test.truncation_bound
    return fitted


def conditional_instance(act, pr: Problem, cov: Covariance, k: int, tau_b: float, seed: int, T, nodes: int,
                         model=ConditionalModel):
    """One conditional-surrogate instance: ``(fitted score, splines, test error, DSM offset)``;
    ``model(fn, k, a)``: the training features (:class:`ConditionalModel` or a subclass)."""
    rngs, X, W = _instance_draws(pr, cov, seed)
    eig = cov.eigenvalues
    # the spike parts s met in training and at the test quadrature's outermost nodes
    s_train = float(np.max(np.abs(pr.a * X[:, :k] @ W[:, :k].T))) / math.sqrt(pr.d)
    reach = abs(np.polynomial.hermite_e.hermegauss(nodes)[0][0])
    s_test = reach * pr.a * float(np.max(np.abs(W[:, :k]) @ np.sqrt(eig[:k]))) / math.sqrt(pr.d)
    fn = ConditionalCoefficients(act, pr.t, tau_b).table(1.01 * max(s_train, s_test))
    features = model(fn, k, pr.a)
    fitted = _train(act, pr, X, rngs, True, None, T, model=features)
    test = conditional_test_moments(fn, fitted.W, eig, k, pr.a, pr.delta, nodes, linear=features.linear)
    trace = cov.inverse_trace(pr.a, pr.delta)
    err = _quadratic_error(fitted.Bt, test.U, test.V, math.sqrt(pr.delta), pr.d, pr.delta * trace)
    return fitted, fn, err, 1.0 - pr.delta * trace


def simulate_spiked(activation, *, kappa, bulk, d, psi_n, psi_p, t, lam, m, seeds=4, features="true",
                    train_time=None, nodes: int | None = None, max_memory=None, progress=None) -> SimulationResult:
    """Monte Carlo errors of the spiked family at dimension ``d`` (module docstring).

    ``kappa``: spike shares (``k`` of them); ``bulk``: ``nu_b`` as in :func:`spiked_eigenvalues`.
    ``features``: ``"true"`` (``rho``), ``"plain"`` (today's surrogate, constants at
    ``v_t = a_t^2 tau + Delta_t``), ``"conditional"`` (the conditional surrogate) or
    ``"centred"`` (``rho`` minus its conditional mean given the spike part).
    ``nodes``: Gauss--Hermite nodes per spike of the conditional test moments (default
    ``48, 24, 12`` for ``k = 1, 2, >= 3``).  The result is a :class:`SimulationResult`
    (``surrogate`` is ``True`` for both surrogates; ``form`` says which).

    >>> r = simulate_spiked("relu", kappa=[0.2], bulk=0.8, d=40, psi_n=1, psi_p=1, t=0.3, lam=0.1, m=1,
    ...                     seeds=2, features="conditional")
    >>> r.form, bool(0 < r.test < 1 and 0 < r.train < 1)
    ('conditional', True)
    """
    import pencils

    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
    eig = spiked_eigenvalues(kappa, bulk, d)
    k = np.atleast_1d(kappa).size
    if features not in ("conditional", "centred"):
        from .driver import simulate

        r = simulate(activation, d=d, psi_n=psi_n, psi_p=psi_p, t=t, lam=lam, m=m, seeds=seeds,
                     surrogate=features == "plain", covariance=eig, train_time=train_time,
                     max_memory=max_memory, progress=progress)
        object.__setattr__(r, "form", features)
        return r
    pr = make_problem(d=d, psi_n=psi_n, psi_p=psi_p, t=t, lam=lam, m=m)
    T = _check_train_time(train_time)
    seed_list = _seed_list(seeds)
    _check_memory(memory_estimate(pr, eig), max_memory, pr)
    cov = Covariance.of(eig, pr.d)
    act = pencils.activation(activation)
    # Var(h - s) = (a^2 sum_{i>k} lambda_i w_i^2 + Delta |w|^2) / d: tau_b is the bulk's trace over d
    # (its mean over d - k in the limit, MODEL.md; the O(k/d) difference is kept honest at finite d)
    tau_b = float(np.sum(eig[k:])) / eig.size
    nodes = int(nodes) if nodes is not None else {1: 48, 2: 24}.get(k, 12)
    start = time.perf_counter()
    tests, trains, offset = [], [], None
    for seed in seed_list:
        if features == "centred":
            fitted = centred_instance(act, pr, cov, k, seed, T)
            te, offset = fitted.test_error, fitted.dsm_offset
        else:
            fitted, _, te, offset = conditional_instance(act, pr, cov, k, tau_b, seed, T, nodes)
        tests.append(te)
        trains.append(fitted.train_error)
    return SimulationResult(problem=pr, activation=act.name, surrogate=features == "conditional", seeds=seed_list,
                            test_values=np.array(tests), train_values=np.array(trains), form=features,
                            seconds=time.perf_counter() - start, dsm_offset=offset, train_time=T, tau=cov.tau,
                            isotropic=False, spectrum=cov.eigenvalues)
