"""Published closed forms (and one published fixed point) that the engine's derivations
are checked against.  Each function works on numpy arrays (broadcast) or, with
``mp=True``, on mpmath numbers at the current ``mpmath.mp.dps``.

* Marchenko-Pastur (Marchenko and Pastur 1967; Bai and Silverstein 2010, "Spectral
  Analysis of Large Dimensional Random Matrices", eq. (3.1.2)): ``s(z) = lim (1/d)
  tr (XᵀX/n - z)^{-1}`` solves ``gamma z s^2 + (z - 1 + gamma) s + 1 = 0``;
  ``s = (1 - gamma - z + sqrt(z - a) sqrt(z - b)) / (2 gamma z)``,
  ``a, b = (1 ∓ sqrt(gamma))^2`` — the product of two principal square roots, not
  ``sqrt((z-a)(z-b))``, so that ``s ~ -1/z`` and ``Im s > 0`` on ``Im z > 0``.
* Ridge regression on isotropic data (Dobriban and Wager 2018, "High-dimensional
  asymptotics of prediction: ridge regression and classification", Thm 2.1; Hastie,
  Montanari, Rosset and Tibshirani 2022, "Surprises in high-dimensional ridgeless least
  squares interpolation", Thm 5): with ``m = s(-lam)`` and ``m' = s'(-lam)``,
  ``E|beta_hat - beta|^2 = r2 lam^2 m' + sigma2 gamma (m - lam m')``.
* Random-features ridge regression (Mei and Montanari 2019/2022, "The generalization
  error of random features regression: precise asymptotics and the double descent
  curve", CPAM 75, Definition 1 and Theorem 1): ``nu_1, nu_2`` solve
  ``nu_1 = psi_1 (-xi - nu_2 - zeta^2 nu_2 / (1 - zeta^2 nu_1 nu_2))^{-1}`` (and 1<->2)
  at ``xi = i sqrt(psi_1 psi_2 lam_bar)``; ``chi = nu_1 nu_2``; the risk is
  ``F_1^2 B + tau^2 V`` with ``B = E_1/E_0``, ``V = E_2/E_0`` (polynomials in
  ``chi, zeta, psi_1, psi_2``).  See :func:`mei_montanari_risk` for the mapping to
  this project's normalisation.
"""
from __future__ import annotations

import mpmath
import numpy as np

__all__ = ["mp_stieltjes_closed", "mp_stieltjes_derivative_closed", "ridge_risk_closed",
           "mei_montanari_nu", "mei_montanari_risk"]


def mp_stieltjes_closed(gamma, z, mp: bool = False):
    """Closed-form Marchenko-Pastur Stieltjes transform (see module docstring).

    >>> bool(abs(mp_stieltjes_closed(0.5, 1j * 1e6) - (-1 / (1j * 1e6))) < 1e-11)
    True
    """
    if mp:
        gamma, z = mpmath.mpmathify(gamma), mpmath.mpmathify(z)
        a, b = (1 - mpmath.sqrt(gamma)) ** 2, (1 + mpmath.sqrt(gamma)) ** 2
        return (1 - gamma - z + mpmath.sqrt(z - a) * mpmath.sqrt(z - b)) / (2 * gamma * z)
    gamma = np.asarray(gamma, dtype=float)
    z = np.asarray(z, dtype=complex)
    a, b = (1 - np.sqrt(gamma)) ** 2, (1 + np.sqrt(gamma)) ** 2
    return (1 - gamma - z + np.sqrt(z - a) * np.sqrt(z - b)) / (2 * gamma * z)


def mp_stieltjes_derivative_closed(gamma, z, mp: bool = False):
    """``s'(z)`` by implicit differentiation of ``gamma z s^2 + (z - 1 + gamma) s + 1 = 0``."""
    s = mp_stieltjes_closed(gamma, z, mp)
    return -(gamma * s ** 2 + s) / (2 * gamma * z * s + z - 1 + gamma)


def ridge_risk_closed(gamma, lam, r2, sigma2, mp: bool = False):
    """Dobriban-Wager / Hastie et al. ridge risk ``E|beta_hat - beta|^2`` (real)."""
    if mp:
        gamma, lam, r2, sigma2 = (mpmath.mpmathify(x) for x in (gamma, lam, r2, sigma2))
    m = mp_stieltjes_closed(gamma, -lam, mp)
    mprime = mp_stieltjes_derivative_closed(gamma, -lam, mp)
    out = r2 * lam ** 2 * mprime + sigma2 * gamma * (m - lam * mprime)
    return mpmath.re(out) if mp else np.real(out)


def mei_montanari_nu(psi1, psi2, lam_bar, zeta, mp: bool = False, tol: float = 1e-15):
    """``(nu_1, nu_2)`` of Mei-Montanari at ``xi = i sqrt(psi1 psi2 lam_bar)``.

    On the imaginary axis ``nu_k = i a_k`` with ``a_k > 0`` solving the real system
    ``a_1 = psi1 / (s + a_2 + zeta^2 a_2 / (1 + zeta^2 a_1 a_2))`` (and 1<->2),
    ``s = sqrt(psi1 psi2 lam_bar)``; solved by fixed-point iteration (a contraction
    for ``s > 0``), then refined by ``mpmath.findroot`` when ``mp``.
    """
    if mp:
        psi1, psi2, lam_bar, zeta = (mpmath.mpmathify(x) for x in (psi1, psi2, lam_bar, zeta))
        a1d, a2d = mei_montanari_nu(float(psi1), float(psi2), float(lam_bar), float(zeta))
        s = mpmath.sqrt(psi1 * psi2 * lam_bar)
        z2 = zeta ** 2

        def eqs(a1, a2):
            return [a1 * (s + a2 + z2 * a2 / (1 + z2 * a1 * a2)) - psi1,
                    a2 * (s + a1 + z2 * a1 / (1 + z2 * a1 * a2)) - psi2]

        a1, a2 = mpmath.findroot(eqs, (mpmath.mpf(float(np.imag(a1d))), mpmath.mpf(float(np.imag(a2d)))),
                                 verify=True)
        return 1j * a1, 1j * a2
    psi1, psi2, lam_bar, zeta = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in
                                                      (psi1, psi2, lam_bar, zeta)))
    s = np.sqrt(psi1 * psi2 * lam_bar)
    z2 = zeta ** 2
    a1, a2 = np.sqrt(psi1), np.sqrt(psi2)
    for _ in range(100000):
        n1 = psi1 / (s + a2 + z2 * a2 / (1 + z2 * a1 * a2))
        n2 = psi2 / (s + n1 + z2 * n1 / (1 + z2 * n1 * a2))
        err = np.max(np.abs(n1 - a1) + np.abs(n2 - a2), initial=0)
        a1, a2 = n1, n2
        if err < tol:
            break
    else:
        raise RuntimeError("Mei-Montanari fixed point did not converge")
    return 1j * a1, 1j * a2


def mei_montanari_risk(psi_p, psi_n, lam, mu1, mustar, r2=1.0, sigma2=0.0, mp: bool = False):
    """Mei-Montanari random-features risk, in this project's normalisation.

    Project normalisation (see :func:`derivations.random_features_risk`): ridge
    ``min_a (1/n)|y - Phi a|^2 + lam |a|^2`` on features ``Phi`` (``n x p``), linear
    teacher with ``|beta|^2 = r2``, noise variance ``sigma2``, excess risk without the
    fresh-noise term.  Mei-Montanari use ``(N lam_MM / d)|a|^2``, so ``lam_MM = lam /
    psi_p``, ``lam_bar = lam_MM / mu_*^2``, ``zeta = mu_1 / mu_*``, ``psi_1 = psi_p``,
    ``psi_2 = psi_n``, ``F_1^2 = r2``, ``tau^2 = sigma2`` (and ``F_*^2 = 0``).
    """
    if mp:
        psi_p, psi_n, lam, mu1, mustar, r2, sigma2 = (mpmath.mpmathify(x) for x in
                                                       (psi_p, psi_n, lam, mu1, mustar, r2, sigma2))
    zeta = mu1 / mustar
    lam_bar = lam / psi_p / mustar ** 2
    nu1, nu2 = mei_montanari_nu(psi_p, psi_n, lam_bar, zeta, mp)
    chi = nu1 * nu2
    if mp:
        chi = mpmath.re(chi)
    else:
        chi = np.real(chi)
    p1, p2, z = psi_p, psi_n, zeta
    E0 = (-chi ** 5 * z ** 6 + 3 * chi ** 4 * z ** 4 + (p1 * p2 - p2 - p1 + 1) * chi ** 3 * z ** 6
          - 2 * chi ** 3 * z ** 4 - 3 * chi ** 3 * z ** 2 + (p1 + p2 - 3 * p1 * p2 + 1) * chi ** 2 * z ** 4
          + 2 * chi ** 2 * z ** 2 + chi ** 2 + 3 * p1 * p2 * chi * z ** 2 - p1 * p2)
    E1 = p2 * chi ** 3 * z ** 4 - p2 * chi ** 2 * z ** 2 + p1 * p2 * chi * z ** 2 - p1 * p2
    E2 = (chi ** 5 * z ** 6 - 3 * chi ** 4 * z ** 4 + (p1 - 1) * chi ** 3 * z ** 6 + 2 * chi ** 3 * z ** 4
          + 3 * chi ** 3 * z ** 2 + (-p1 - 1) * chi ** 2 * z ** 4 - 2 * chi ** 2 * z ** 2 - chi ** 2)
    return r2 * E1 / E0 + sigma2 * E2 / E0
