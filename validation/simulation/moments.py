"""Exact Gaussian moments of random features, for a fixed finite weight matrix.

The test error of a trained score ``B`` is a quadratic form in two feature moments
(MODEL.md, ``y ~ N(0, I_d)``, ``h = W y / sqrt(d)``):

    U = E[phi(y) phi(y)^T]  (p x p),     V = E[phi(y) y^T]  (p x d),
    E_test = (1/d) [ tr(B U B^T) + 2 sqrt(Delta) tr(B V) + Delta d ].

For ``m = inf`` the training objective needs the same moments conditionally on
each data point, averaged over the ``n`` points:

    Ubar = (1/n) sum_i E_z[phi(y_i) phi(y_i)^T],   Vbar = (1/n) sum_i E_z[phi(y_i) z^T],
    y_i = a x_i + sqrt(Delta) z.

Both are computed without sampling:

* off-diagonal entries by the Mehler expansion of a bivariate normal
  (Mehler 1866; see O'Donnell, *Analysis of Boolean Functions*, ch. 11):
  for ``u = mu_k + s_k xi``, ``v = mu_l + s_l eta`` with ``corr(xi, eta) = r``,
  ``E[rho(u) rho(v)] = sum_j r^j / j! alpha_j(mu_k, s_k) alpha_j(mu_l, s_l)``,
  ``alpha_j(mu, s) = E[rho(mu + s xi) He_j(xi)]``.  Here ``r_kl = C_kl / sqrt(C_kk C_ll)``
  with ``C = W W^T / d``; off the diagonal ``|r| = O(1/sqrt(d))``, so the series
  converges geometrically and is truncated with an explicit bound;
* diagonal entries by the exact one-dimensional second moment;
* ``V`` and ``Vbar`` by Stein's lemma, ``E[rho(h_k) y] = E[rho'(h_k)] W_k / sqrt(d)``
  with ``E[rho'(mu + s xi)] = alpha_1(mu, s) / s``.

Structured data (``y ~ N(0, S)``, MODEL.md): pass ``C = W S W^T / d``, the covariance of
the pre-activations (its diagonal entries now differ from feature to feature; each feature
gets its own ``sigma_k = sqrt(C_kk)`` and the Mehler series runs in the correlations
``C_kl / sqrt(C_kk C_ll)``).  Stein's lemma then gives ``E[phi_k(y) y^T] S^{-1} =
E[rho'(h_k)] W_k / sqrt(d)`` -- the same ``V`` as for ``S = I`` -- which is what the test
error ``(1/d) E||B phi(y) + sqrt(Delta) S^{-1} y||^2`` needs.

For the Gaussian-equivalent surrogate the moments are closed-form
(``U = mu0^2 11^T + mu1^2 C + mu_*^2 I``, see :func:`surrogate_test_moments`).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

#: Relative accuracy asked of the truncated Mehler series.
MEHLER_TOL = 1e-12
#: Largest Mehler order used; beyond it the truncation bound is reported and a warning raised.
MEHLER_MAX_ORDER = 80


@dataclass(frozen=True)
class Moments:
    """Second moments of the features and their cross-moment with the target direction.

    ``U`` is ``p x p``; ``V`` is ``p x d``; ``truncation_bound`` bounds the absolute
    error of every off-diagonal entry of ``U`` (0 for closed forms).
    """

    U: np.ndarray
    V: np.ndarray
    mehler_order: int = 0
    truncation_bound: float = 0.0


def mehler_order(r_max: float, tol: float = MEHLER_TOL) -> int:
    """Smallest order ``J`` with ``r_max^(J+1) <= tol`` (capped at :data:`MEHLER_MAX_ORDER`).

    With ``T_k = sum_{j>J} alpha_j(k)^2 / j! <= E rho(h_k)^2`` (Parseval), Cauchy-Schwarz
    bounds the truncation error of ``U_kl`` by ``r_max^(J+1) sqrt(T_k T_l)``.
    """
    if r_max <= 0.0:
        return 1
    if r_max >= 1.0:
        return MEHLER_MAX_ORDER
    order = math.ceil(math.log(tol) / math.log(r_max)) - 1
    return int(min(max(order, 2), MEHLER_MAX_ORDER))


def mehler_sum(scaled: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``sum_j r^j o (b_j b_j^T)`` with ``b_j = scaled[:, j]``: Mehler's series of ``E[f_k g_l]``
    truncated at ``scaled.shape[1] - 1``, by Horner's rule in ``r`` in place
    (``U = b_0 b_0^T + r o (b_1 b_1^T + r o (...))``)."""
    U = np.zeros_like(r, dtype=float)
    for j in range(scaled.shape[1] - 1, -1, -1):
        U *= r
        U += np.outer(scaled[:, j], scaled[:, j])
    return U


def _correlations(C: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    sigma = np.sqrt(np.diag(C))
    r = C / np.outer(sigma, sigma)
    np.fill_diagonal(r, 0.0)  # diagonal handled exactly, keep it out of the series
    r_max = float(np.max(np.abs(r))) if r.size > 1 else 0.0
    return sigma, r, r_max


def _bound(r_max: float, order: int, tails: np.ndarray) -> float:
    tail = float(np.max(np.clip(tails, 0.0, None))) if tails.size else 0.0
    return r_max ** (order + 1) * tail


def _warn_if_loose(bound: float, scale: float, order: int) -> None:
    if bound > 1e-8 * max(scale, 1e-300):
        warnings.warn(
            f"Mehler series truncated at order {order} with error bound {bound:.2e} "
            f"(relative {bound / max(scale, 1e-300):.1e}); d is too small for an exact "
            "moment computation, expect a bias of this size",
            RuntimeWarning,
            stacklevel=3,
        )


def true_test_moments(act, W: np.ndarray, C: np.ndarray | None = None) -> Moments:
    """``U = E[phi phi^T]`` and ``V = E[phi y^T] S^{-1}`` for ``y ~ N(0, S)``, true activation.

    ``h = W y / sqrt(d)`` is Gaussian with covariance ``C = W S W^T / d`` (default
    ``W W^T / d``, ``S = I``); ``V = E[rho'(h_k)] W_k / sqrt(d)`` by Stein's lemma.
    """
    p, d = W.shape
    if C is None:
        C = W @ W.T / d
    sigma, r, r_max = _correlations(C)
    order = mehler_order(r_max)
    alpha = act.gaussian_moments(np.zeros(p), sigma, order)  # (p, order+1)
    scaled = alpha / np.sqrt(_factorials(order))
    U = mehler_sum(scaled, r)
    second = act.gaussian_second_moment(np.zeros(p), sigma)
    U[np.diag_indices(p)] = second
    tails = second - np.sum(scaled**2, axis=1)
    bound = _bound(r_max, order, tails)
    _warn_if_loose(bound, float(np.max(second)), order)
    V = (alpha[:, 1] / sigma)[:, None] * W / math.sqrt(d)
    return Moments(U=U, V=V, mehler_order=order, truncation_bound=bound)


def true_train_moments_inf(
    act, W: np.ndarray, X: np.ndarray, a: float, delta: float, C: np.ndarray | None = None,
    chunk: int = 256,
) -> Moments:
    """Noise-averaged training moments for ``m = inf`` (exact up to a bounded truncation).

    Returns ``U = Ubar`` and ``V = Vbar`` (p x d): conditionally on ``x_i`` the
    pre-activations are ``N(mu_i, Delta C)`` with ``mu_i = a W x_i / sqrt(d)``.
    The data points are processed in chunks so memory stays ``O(p^2 + chunk p J)``.
    """
    p, d = W.shape
    n = X.shape[0]
    if C is None:
        C = W @ W.T / d
    sigma, r, r_max = _correlations(C)
    s = math.sqrt(delta) * sigma
    order = mehler_order(r_max)
    norm = np.sqrt(_factorials(order))
    U = np.zeros((p, p))
    diag = np.zeros(p)
    alpha1 = np.zeros(p)
    sq_sum = np.zeros(p)
    for start in range(0, n, chunk):
        means = a * (X[start:start + chunk] @ W.T) / math.sqrt(d)  # (b, p)
        alpha = act.gaussian_moments(means, s[None, :], order) / norm  # (b, p, J+1)
        block = np.zeros((p, p))
        for j in range(order, -1, -1):  # Horner in r, as in true_test_moments
            block *= r
            A = np.ascontiguousarray(alpha[:, :, j])
            block += A.T @ A
        U += block
        diag += act.gaussian_second_moment(means, s[None, :]).sum(axis=0)
        alpha1 += alpha[:, :, 1].sum(axis=0)  # norm[1] == 1
        sq_sum += np.sum(alpha**2, axis=(0, 2))
    U /= n
    diag /= n
    U[np.diag_indices(p)] = diag
    tails = diag - sq_sum / n
    bound = _bound(r_max, order, tails)
    _warn_if_loose(bound, float(np.max(diag)), order)
    # Stein in z: E_z[rho(h_k) z] = sqrt(Delta) E_z[rho'(h_k)] W_k / sqrt(d), E rho' = alpha_1 / s.
    V = (math.sqrt(delta) * (alpha1 / n) / s)[:, None] * W / math.sqrt(d)
    return Moments(U=U, V=V, mehler_order=order, truncation_bound=bound)


def surrogate_test_moments(coef, W: np.ndarray, C: np.ndarray | None = None) -> Moments:
    """Closed-form moments of the Gaussian-equivalent test features
    ``phi = mu0 1 + mu1 W y / sqrt(d) + mu_* xi``."""
    p, d = W.shape
    if C is None:
        C = W @ W.T / d
    U = coef.mu0**2 * np.ones((p, p)) + coef.mu1**2 * C
    U[np.diag_indices(p)] += coef.mu_star_sq
    V = coef.mu1 * W / math.sqrt(d)
    return Moments(U=U, V=V)


def surrogate_train_moments_inf(
    coef, W: np.ndarray, X: np.ndarray, Xi: np.ndarray, a: float, delta: float,
    C: np.ndarray | None = None,
) -> Moments:
    """Exact ``m = inf`` moments of the surrogate training features.

    Given ``x_i`` and the shared part ``xi_i``, ``E_z phi = mu0 + mu1 a W x_i/sqrt(d) + mu_s xi_i``
    and ``Cov_z phi = mu1^2 Delta C + mu_f^2 I``; ``Vbar = mu1 sqrt(Delta) W / sqrt(d)``.
    """
    p, d = W.shape
    n = X.shape[0]
    if C is None:
        C = W @ W.T / d
    mean = coef.mu0 + coef.mu1 * a * (X @ W.T) / math.sqrt(d) + coef.mu_s * Xi
    U = mean.T @ mean / n + coef.mu1**2 * delta * C
    U[np.diag_indices(p)] += coef.mu_f_sq
    V = coef.mu1 * math.sqrt(delta) * W / math.sqrt(d)
    return Moments(U=U, V=V)


def _factorials(order: int) -> np.ndarray:
    return np.array([math.factorial(j) for j in range(order + 1)], dtype=float)
