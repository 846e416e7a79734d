"""Finite-``m`` DSM learning curves from a two-scalar deterministic equivalent, derived by
hand: an independent reference for the engine's curves (:mod:`derivations.dsm`).

Source.  The issue asks for a check against Urfin, Bonnaire, Biroli and Mézard's
two-scalar equations (arXiv 2609.26392, Theorem 2.1 / Prop. C.2).  That text was not
available to us, so the equations below are **our own derivation** (no formula of theirs
is used or claimed); they share its shape -- two scalars, one per kind of training row.
It uses nothing of the engine: no pencil, no free probability, no compiled solver.

Model and notation: ``MODEL.md`` (``a = a_t``, ``Delta = Delta_t``, ``mu1``, ``mu_s``,
``mu_f``, ``mu_*``; ``psi_n = n/d``, ``psi_p = p/d``, ``tr = (1/d) Tr``).  In a paper's
notation ``alpha = n/d`` is ``psi_n`` and ``p/d`` is ``psi_p``; the time enters only through
``a^2 = e^{-2t}`` and ``Delta = 1 - e^{-2t}`` (a variance-exploding parametrisation with
noise level ``sigma^2`` maps to ``a^2 = 1/(1 + sigma^2)``, ``Delta = sigma^2/(1 + sigma^2)``).

**Step 1: rows given W.**  After the Helmert rotation (:mod:`derivations.dsm`) the
training set is ``n`` signal rows and ``n(m - 1)`` noise rows, each a feature ``f in R^p``
with its target ``z in R^d``.  Given ``W`` (write ``K = W W^T / d``, ``p x p``), every row
``u = (f, z)`` is a centred Gaussian vector, independent of the others, with covariance

    S_k = [[Sigma_k, C], [C^T, I_d]],   C = mu1 sqrt(Delta) W / sqrt(d),   C C^T = mu1^2 Delta K,
    Sigma_s = mu1^2 (m a^2 + Delta) K + (m mu_s^2 + mu_f^2) I,   Sigma_r = mu1^2 Delta K + mu_f^2 I.

The test point has features of covariance ``U = mu1^2 K + mu_*^2 I`` and covariance ``C``
with ``sqrt(Delta) y``.  With ``N = n m``, ``M = [Phi, Z]^T [Phi, Z] / N`` and
``R = (M_ff + lam)^{-1}``, the ridge map ``Theta = -B^T = R M_fz`` gives

    E_test  = Delta + tr(Theta^T U Theta) - 2 tr(Theta^T C),
    E_train = L - lam dL/dlam,   L = tr(M_zz - M_zf R M_fz)

(``L`` is the minimised objective; by the envelope theorem ``dL/dlam = tr(Theta^T Theta)``).

**Step 2: one resolvent.**  Put ``Q = (M + diag(lam I_p, eta I_d))^{-1}``.  With
``eps = 1/eta``, ``Q_ff = R + eps R M_fz M_zf R + O(eps^2)`` and
``tr Q_zz = eps - eps^2 tr(M_zz - M_zf R M_fz) + O(eps^3)``, so every quantity above is a
Taylor coefficient of ``tr(U Q_ff)``, ``tr(C^T Q_fz)`` and ``tr Q_zz`` at ``eps = 0``.  For
rows in two groups of independent Gaussians the anisotropic deterministic equivalent
(Couillet and Liao 2022, *Random Matrix Methods for Machine Learning*, Thm 2.6; Louart and
Couillet 2018) is

    Q ~ (sum_k w_k S_k / (1 + delta_k) + Lambda)^{-1},   delta_k = Tr(S_k Qbar) / N,
    w_s = 1/m,  w_r = (m - 1)/m.

At ``eps = 0`` it reduces to ``R ~ Rbar = (c_s Sigma_s + c_r Sigma_r + lam)^{-1}``,
``c_k = w_k / (1 + delta_k)``, and the **two scalars** solve

    delta_k = tr(Sigma_k Rbar) / (psi_n m),   k = s, r.                           (FP)

With ``c = c_s + c_r`` and ``J_kj = tr(Sigma_k Rbar Sigma_j Rbar) c_j / ((1 + delta_j) psi_n m)``
(the Jacobian of (FP)), the Taylor coefficients give

    tr(Theta^T C)       = c tr(C C^T Rbar),
    tr(Theta^T U Theta) = c^2 tr(U Rbar C C^T Rbar) + sum_j c_j e_j / (1 + delta_j) tr(U Rbar Sigma_j Rbar),
    (I - J) e = b,   b_k = [c^2 tr(Sigma_k Rbar C C^T Rbar) - 2 c tr(C C^T Rbar) + 1] / (psi_n m),
    L = c - c^2 tr(C C^T Rbar),

and ``dL/dlam`` by differentiating (FP) in ``lam`` (the same matrix ``I - J``, right-hand side
``-tr(Sigma_k Rbar^2) / (psi_n m)``).

**Step 3: traces over W.**  Every matrix above is ``x K + y I``, so every trace is a
moment of the spectral law of ``K``: with ``z = -beta/alpha`` for ``Rbar = (alpha K + beta)^{-1}``,
``g(z) = lim tr (K - z)^{-1}`` solves (Marchenko and Pastur 1967, for ``W W^T/d`` of size
``p x p``) ``z g^2 + (z + psi_p - 1) g + psi_p = 0`` (the root with ``g > 0`` for ``z < 0``), and

    T_0 = g,  T_j = tr K^{j-1} + z T_{j-1}          (T_j = tr K^j (K - z)^{-1}),
    S_0 = g', S_j = T_{j-1} + z S_{j-1}              (S_j = tr K^j (K - z)^{-2}),
    tr I = tr K = psi_p.

The DSM test loss is ``E_test + a^2``.  ``m = 1`` is the same formula with no noise rows.
``mu0`` drops out (a rank-one perturbation), as in :mod:`derivations.dsm`.  ``mu1 = 0`` is
not handled (``Rbar`` would not depend on ``K``; a ``ValueError``).
"""
from __future__ import annotations

import mpmath

__all__ = ["finite_m_errors"]


def _mp_moments(psi_p, z):
    """``(T_0, T_1), (S_0, S_1, S_2)`` of the spectral law of ``K = W W^T/d`` at real ``z < 0``."""
    b = z + psi_p - 1
    g = (-b - mpmath.sqrt(b * b - 4 * z * psi_p)) / (2 * z)  # the root g > 0
    dg = -(g * g + g) / (2 * z * g + b)
    T = [g, psi_p + z * g]
    S = [dg, T[0] + z * dg]
    S.append(T[1] + z * S[1])
    return T, S


def _poly_mul(p, q):
    """Product of two polynomials of degree <= 1 in ``K``, given as ``(x, y)`` for ``x K + y``;
    returned as coefficients ``[K^0, K^1, K^2]``."""
    return [p[1] * q[1], p[0] * q[1] + p[1] * q[0], p[0] * q[0]]


class _Traces:
    """Traces against ``Rbar = (alpha K + beta)^{-1}`` of matrices ``x K + y`` (pairs ``(x, y)``)."""

    def __init__(self, psi_p, alpha, beta):
        self.alpha = alpha
        self.T, self.S = _mp_moments(psi_p, -beta / alpha)

    def one(self, p):
        """``tr(P Rbar)``."""
        return (p[0] * self.T[1] + p[1] * self.T[0]) / self.alpha

    def two(self, p, q):
        """``tr(P Rbar Q Rbar)``."""
        return mpmath.fsum(c * s for c, s in zip(_poly_mul(p, q), self.S)) / self.alpha ** 2


def _solve2(a, b):
    """Solve the 2 x 2 system ``a x = b`` (Cramer)."""
    det = a[0][0] * a[1][1] - a[0][1] * a[1][0]
    return [(b[0] * a[1][1] - a[0][1] * b[1]) / det, (a[0][0] * b[1] - b[0] * a[1][0]) / det]


def finite_m_errors(psi_n, psi_p, t, lam, m, mu1, mu_s_sq, mu_f_sq, mu_star_sq, dps: int = 40,
                    max_steps: int = 200) -> dict:
    """``E_test``, ``E_train``, the DSM test loss and the two scalars ``delta_s, delta_r``
    (module docstring) at ``dps`` digits, as mpmath numbers.

    ``m``: an integer ``>= 1``.  ``mu_s_sq = K(a^2) - mu0^2 - mu1^2 a^2``,
    ``mu_f_sq = mu_*^2 - mu_s^2`` (MODEL.md).  The scalars are found by the fixed-point
    iteration of (FP) from ``delta = 0`` (monotone increasing towards the physical root),
    then Newton with the analytic Jacobian and step halving; where that stalls (near the
    interpolation peak at small ``lam``), by continuation in ``lam`` from ``max(lam, 1)``
    with warm starts.  A ``RuntimeError`` if the residual does not
    fall below ``10^(5 - dps)`` or the root is not attracting (spectral radius of ``J``
    below 1).

    >>> e = finite_m_errors(1, 2, 0.5, 0.1, 4, 0.5, 0.0246, 0.0662, 0.0908, dps=20)
    >>> 0 < e["test"] < 1 - mpmath.exp(-1)
    True
    """
    if m != int(m) or m < 1:
        raise ValueError(f"m must be an integer >= 1, got {m}")
    m = int(m)
    with mpmath.workdps(dps + 10):
        psi_n, psi_p, t, lam = (mpmath.mpf(x) for x in (psi_n, psi_p, t, lam))
        mu1, mu_s_sq, mu_f_sq, mu_star_sq = (mpmath.mpf(x) for x in (mu1, mu_s_sq, mu_f_sq, mu_star_sq))
        if mu1 == 0:
            raise ValueError("mu1 = 0 is not handled by this reference (Rbar does not depend on K)")
        a_sq, delta = mpmath.exp(-2 * t), -mpmath.expm1(-2 * t)
        mu1_sq = mu1 ** 2
        sigma = [(mu1_sq * (m * a_sq + delta), m * mu_s_sq + mu_f_sq), (mu1_sq * delta, mu_f_sq)]
        w = [mpmath.mpf(1) / m, mpmath.mpf(m - 1) / m]
        cct = (mu1_sq * delta, mpmath.mpf(0))
        u = (mu1_sq, mu_star_sq)
        scale = psi_n * m  # N / d

        def state(dl, lam_=lam):
            c = [w[k] / (1 + dl[k]) for k in range(2)]
            alpha = c[0] * sigma[0][0] + c[1] * sigma[1][0]
            beta = c[0] * sigma[0][1] + c[1] * sigma[1][1] + lam_
            tr = _Traces(psi_p, alpha, beta)
            f = [tr.one(sigma[k]) / scale for k in range(2)]
            jac = [[tr.two(sigma[k], sigma[j]) * c[j] / ((1 + dl[j]) * scale) for j in range(2)]
                   for k in range(2)]
            return c, tr, f, jac

        def newton(dl, lam_):
            """Newton on ``delta - F(delta) = 0`` with step halving (residual must fall,
            ``delta >= 0``); ``None`` if it stalls."""
            def norm(d):
                f = state(d, lam_)[2]
                return max(abs(d[k] - f[k]) / (1 + abs(d[k])) for k in range(2))

            for _ in range(max_steps):
                _, _, f, jac = state(dl, lam_)
                res = [dl[k] - f[k] for k in range(2)]
                r0 = max(abs(r) / (1 + abs(d)) for r, d in zip(res, dl))
                if r0 < mpmath.mpf(10) ** (-dps - 7):
                    return dl
                dx = _solve2([[(1 if k == j else 0) - jac[k][j] for j in range(2)] for k in range(2)], res)
                step = mpmath.mpf(1)
                while step > 1e-8:
                    new = [dl[k] - step * dx[k] for k in range(2)]
                    if min(new) >= 0 and norm(new) < r0:
                        break
                    step /= 2
                else:
                    return None
                dl = new
            return None

        dl = [mpmath.mpf(0), mpmath.mpf(0)]
        for _ in range(max_steps):  # fixed point from 0: monotone towards the physical root
            f = state(dl)[2]
            step = max(abs(f[k] - dl[k]) / (1 + abs(f[k])) for k in range(2))
            dl = f
            if step < 1e-3:
                break
        solved = newton(dl, lam)
        if solved is None:  # continuation in lam from lam0 = max(lam, 1), warm starts
            lam_now, ratio = max(lam, mpmath.mpf(1)), mpmath.mpf(1) / 4
            solved = newton([mpmath.mpf(0), mpmath.mpf(0)], lam_now)
            while solved is not None and lam_now > lam:
                nxt = max(lam_now * ratio, lam)
                trial = newton(solved, nxt)
                if trial is None:
                    ratio = mpmath.sqrt(ratio)  # a smaller step in lam
                    if ratio > mpmath.mpf(0.999):
                        break
                    continue
                solved, lam_now, ratio = trial, nxt, max(ratio ** 2, mpmath.mpf(1) / 4)
            if solved is None or lam_now > lam:
                solved = None
        tol = mpmath.mpf(10) ** (5 - dps)
        if solved is not None:
            dl = solved
        c, tr, f, jac = state(dl)
        resid = max(abs(dl[k] - f[k]) / (1 + abs(dl[k])) for k in range(2))
        rho = _spectral_radius(jac)
        if solved is None or not resid < tol or not rho < 1 or min(dl) < 0:
            raise RuntimeError(f"two-scalar fixed point unresolved: residual {mpmath.nstr(resid, 3)}, "
                               f"spectral radius of J {mpmath.nstr(rho, 5)}, delta {[mpmath.nstr(x, 5) for x in dl]}")
        ij = [[(1 if k == j else 0) - jac[k][j] for j in range(2)] for k in range(2)]
        c0 = c[0] + c[1]
        cross = c0 * tr.one(cct)
        # test error: the first-order coefficient in eps = 1/eta
        b = [(c0 ** 2 * tr.two(sigma[k], cct) - 2 * cross + 1) / scale for k in range(2)]
        e = _solve2(ij, b)
        quad = c0 ** 2 * tr.two(u, cct) + mpmath.fsum(c[j] * e[j] / (1 + dl[j]) * tr.two(u, sigma[j])
                                                      for j in range(2))
        test = delta + quad - 2 * cross
        # train error: L - lam dL/dlam
        one = (mpmath.mpf(0), mpmath.mpf(1))
        dd = _solve2(ij, [-tr.two(sigma[k], one) / scale for k in range(2)])
        dc = [-c[j] * dd[j] / (1 + dl[j]) for j in range(2)]
        dc0 = dc[0] + dc[1]
        a_lam = (dc[0] * sigma[0][0] + dc[1] * sigma[1][0], dc[0] * sigma[0][1] + dc[1] * sigma[1][1] + 1)
        k_rbar = tr.one(cct)
        loss = c0 - c0 ** 2 * k_rbar
        dloss = dc0 - 2 * c0 * dc0 * k_rbar + c0 ** 2 * tr.two(cct, a_lam)
        train = loss - lam * dloss
        out = {"test": test, "train": train, "dsm_test_loss": test + a_sq, "delta_s": dl[0], "delta_r": dl[1],
               "residual": resid}
    with mpmath.workdps(dps):
        return {k: +v for k, v in out.items()}  # rounded to dps digits


def _spectral_radius(jac):
    """Largest |eigenvalue| of a real 2 x 2 matrix."""
    tr_ = jac[0][0] + jac[1][1]
    det = jac[0][0] * jac[1][1] - jac[0][1] * jac[1][0]
    disc = tr_ ** 2 - 4 * det
    if disc >= 0:
        r = mpmath.sqrt(disc)
        return max(abs((tr_ + r) / 2), abs((tr_ - r) / 2))
    return mpmath.sqrt(det)
