"""Gaussian moments ``alpha_j(m, s) = E[rho(m + s xi) He_j(xi)]`` and ``E rho(m + s xi)^2`` at
any mean and standard deviation (the Mehler expansion of the Monte Carlo code, the
structured-data constants); a mixin of :class:`~pencils.activation.core.Activation`."""
from __future__ import annotations

import math
import warnings

import numpy as np

from .closed_forms import hermite_functions, sqrt_factorials
from .common import FLOAT_TOL, QuadratureWarning, _check_mean_std, _check_order
from .quadrature import _gauss_hermite, _gl_shifted_moments, _safe_eval


class _GaussianMoments:
    """The Gaussian-moment methods of :class:`~pencils.activation.core.Activation` (no state)."""

    __slots__ = ()

    def gaussian_moments(self, mean, std, order: int) -> np.ndarray:
        """``alpha_j = E[rho(mean + std xi) He_j(xi)]``, ``xi ~ N(0, 1)``, ``j = 0..order``.

        Shape ``broadcast(mean, std).shape + (order + 1,)``; the order axis is the
        slowest in memory, so ``alpha[..., j]`` is contiguous.  With these,
        ``E[rho(u) rho(v)] = sum_j r^j / j! alpha_j(u) alpha_j(v)`` for a bivariate normal
        with means, standard deviations and correlation ``r`` (Mehler).  ``std = 0``
        gives ``(rho(mean), 0, ..., 0)``.

        Closed forms for relu, abs, erf and gelu, exact Gauss--Hermite quadrature for
        polynomials, else the nested trapezoidal rule with per-input error control:
        ``|alpha_j - exact| <= 1e-13 sqrt(j!) (||rho|| + |alpha_0|)`` with
        ``||rho|| = sqrt(E rho(g)^2)``, or a :class:`QuadratureWarning`.

        >>> from pencils import activation
        >>> a = activation("relu").gaussian_moments(0.0, 1.0, 3)
        >>> bool(np.allclose(a, activation("relu").hermite_coefficients(3)))
        True
        """
        order = _check_order(order)
        m, s, shape = _check_mean_std(mean, std)
        out = np.zeros((order + 1, m.size))
        zero = s == 0
        if np.any(zero):
            out[0, zero] = _safe_eval(self._fn, m[zero], "std = 0")
        pos = ~zero
        if np.any(pos):
            m_, s_ = (m, s) if pos.all() else (m[pos], s[pos])
            if self._form is not None and self._form.moments is not None:
                with np.errstate(under="ignore"):
                    block = self._form.moments(m_, s_, order)
            elif self._poly is not None:
                block = self._polynomial_moments(m_, s_, order)
            elif self.kinks:
                self.check_variance(float(np.max(s_)) ** 2)
                block = self._kinked_moments(m_, s_, order)[0][:order + 1]
                block *= sqrt_factorials(order)[:, None]
            else:
                self.check_variance(float(np.max(s_)) ** 2)
                A, _, err = self._trapezoid_moments(m_, s_, order)
                self._warn_accuracy(err, s_, "gaussian_moments")
                block = A[:order + 1]
                block *= sqrt_factorials(order)[:, None]
            if pos.all():
                out = block
            else:
                out[:, pos] = block
        return out.T.reshape(shape + (order + 1,))

    def gaussian_second_moment(self, mean, std) -> np.ndarray:
        """``E[rho(mean + std xi)^2]``, vectorised (closed form for relu, abs, erf and polynomials).

        >>> from pencils import activation
        >>> float(activation("abs").gaussian_second_moment(1.0, 2.0))
        5.0
        """
        m, s, shape = _check_mean_std(mean, std)
        out = np.empty(m.size)
        zero = s == 0
        if np.any(zero):
            out[zero] = _safe_eval(self._fn, m[zero], "std = 0") ** 2
        pos = ~zero
        if np.any(pos):
            m_, s_ = m[pos], s[pos]
            if self._form is not None and self._form.second_moment is not None:
                with np.errstate(under="ignore"):
                    # cancellation far in a tail can leave -1e-300: the moment is >= 0
                    out[pos] = np.maximum(self._form.second_moment(m_, s_), 0.0)
            elif self._poly is not None:
                deg = len(self._poly) - 1
                x, w = _gauss_hermite(deg + 1)
                vals = _safe_eval(self._fn, m_[:, None] + s_[:, None] * x, "a polynomial")
                out[pos] = (vals * vals) @ w
            elif self.kinks:
                self.check_variance(float(np.max(s_)) ** 2)
                out[pos] = self._kinked_moments(m_, s_, 0)[1]
            else:
                self.check_variance(float(np.max(s_)) ** 2)
                _, S, err = self._trapezoid_moments(m_, s_, 0, second=True)
                self._warn_accuracy(err, s_, "gaussian_second_moment")
                out[pos] = S
        return out.reshape(shape)

    def _warn_accuracy(self, err, s, where):
        bad = err > FLOAT_TOL
        if np.any(bad):
            warnings.warn(
                f"{where}: quadrature for {self.name} reached only {float(np.max(err)):.1e} "
                f"(relative to the scale of rho; target {FLOAT_TOL:.0e}) on {int(np.sum(bad))} of "
                f"{err.size} inputs (std up to {float(np.max(s[bad])):.3g}); rho may be non-smooth "
                "or the std too large", QuadratureWarning, stacklevel=3)

    def _kinked_moments(self, m, s, order):
        """Piecewise Gauss--Legendre moments split at the known kinks (:func:`_gl_shifted_moments`),
        ``q = 20 + 2 (order - 16)/3`` nodes a panel (every panel integrand is smooth and resolved);
        for callables, whose kinks were located numerically, a :class:`QuadratureWarning` when the
        rule with 6 nodes fewer disagrees by more than :data:`FLOAT_TOL` of the scale."""
        q = 20 + 2 * max(0, order - 16) // 3  # He_k phi has ~sqrt(k) oscillations per unit of xi
        A, S = _gl_shifted_moments(self._fn, self.kinks, m, s, order, q)
        if not np.all(np.isfinite(A)) or not np.all(np.isfinite(S)):
            raise ValueError("rho(mean + std*xi) is not finite: the Gaussian moments are not finite "
                             "(or rho overflows in double precision)")
        if self._from_callable:  # kinks located numerically: check against a coarser rule
            Ac, Sc = _gl_shifted_moments(self._fn, self.kinks, m, s, order, q - 6)
            norm = self._scale + np.abs(A[0]) + np.sqrt(np.maximum(S, 0.0))
            err = np.maximum(np.max(np.abs(A - Ac), axis=0), np.abs(S - Sc) / norm) / norm
            self._warn_accuracy(err, s, "gaussian_moments")
        return A, S

    def _polynomial_moments(self, m, s, order):
        """Gauss--Hermite with ``(deg + order) // 2 + 1`` nodes: exact for ``p(m + s xi) He_j(xi)``."""
        deg = len(self._poly) - 1
        x, w = _gauss_hermite((deg + order) // 2 + 1)
        # w_q He_j(x_q) = w_q psi_j(x_q) sqrt(j!) sqrt(2 pi) exp(x_q^2 / 2)
        weighted = hermite_functions(x, order) * (sqrt_factorials(order)[:, None]
                                                  * (w * math.sqrt(2 * math.pi) * np.exp(0.5 * x * x)))
        vals = _safe_eval(self._fn, m[:, None] + s[:, None] * x, "a polynomial")
        return weighted @ vals.T
