"""Gaussian-equivalence constants for structured data: ``mu0, mu1, mu_*^2, mu_s^2, mu_f^2`` at any
pre-activation variance and covariance (MODEL.md), in float and mpmath; a mixin of
:class:`~pencils.activation.core.Activation`."""
from __future__ import annotations

import math
import warnings

import mpmath
import numpy as np

from .closed_forms import sqrt_factorials
from .common import MEHLER_MP_MAX_ORDER, RANGE_SLACK, QuadratureWarning, _check_dps
from .mp_quadrature import _mp_gauss_moments
from .quadrature import _gl_pair_with_error


class _EquivalenceConstants:
    """The structured-data methods of :class:`~pencils.activation.core.Activation` (no state)."""

    __slots__ = ()

    @property
    def exact_fresh(self) -> bool:
        """Whether :meth:`equivalence_constants` with ``delta=`` gives ``mu_f^2`` to a few ulps at
        any variance (a homogeneous ``rho`` whose kernel has a closed-form gap: relu, abs)."""
        return self._form is not None and bool(self._form.homogeneous) and self._form.kernel_gap is not None

    def equivalence_constants(self, variance, covariance, *, with_error: bool = False, delta=None):
        """MODEL.md's structured-data constants at pre-activation variance ``v`` and covariance ``c``.

        With ``h, h'`` centred Gaussians of variance ``v`` and covariance ``c``:
        ``mu0 = E rho(h)``, ``mu1 = E[h rho(h)] / v``, ``mu_*^2 = E rho(h)^2 - mu0^2 - mu1^2 v``,
        ``mu_s^2 = E[rho(h) rho(h')] - mu0^2 - mu1^2 c``, ``mu_f^2 = mu_*^2 - mu_s^2``
        (structured data: ``v = a_t^2 tau + Delta_t``, ``c = a_t^2 tau``).  Vectorised over
        ``broadcast(variance, covariance)``; returns the five float arrays (and, with
        ``with_error=True``, an estimated absolute error bound of ``mu_s^2`` as a sixth).

        ``delta``: ``v - c`` when the caller knows it exactly (structured data: ``Delta_t``,
        which ``v = a_t^2 tau + Delta_t`` rounds away when ``tau`` is huge).  Where the kernel
        has a closed-form gap (relu, abs) ``mu_f^2 = v^k (K(1) - K(1 - delta/v)) - mu1^2 delta``
        then holds to a few ulps at any ``v``, instead of the difference ``mu_*^2 - mu_s^2`` of
        numbers of size ``v`` (about ``eps v`` off).

        ``v = 1`` gives exactly :attr:`mu0`, :attr:`mu1`, :attr:`mu_star_sq` and
        :meth:`mu_s_sq` ``(c)``.  Otherwise: polynomials exactly (Mehler series, finite);
        positively homogeneous ``rho`` (relu, abs) from ``K_v(c) = v^k K(c/v)``;
        everything else by piecewise Gauss--Legendre in ``(u, w)``, ``h = sqrt(v) u``,
        ``h' = sqrt(v)(r u + sqrt(1 - r^2) w)``, ``r = c / v``, split at the kinks of
        ``rho`` (geometric convergence on every panel), with the 1-D moments from the
        closed forms where they exist (and, for those, the Mehler series in ``r`` when
        ``|r| <= 1/2``); the error estimate compares 12- and 20-node
        rules and a :class:`QuadratureWarning` is raised above ``1e-12`` of ``E rho(h)^2``.

        >>> from pencils import activation
        >>> relu = activation("relu")
        >>> [round(float(q), 12) for q in relu.equivalence_constants(4.0, 1.0)[:3]]
        [0.797884560803, 0.5, 0.363380227632]
        >>> bool(abs(relu.equivalence_constants(1.0, 0.3)[3] - relu.mu_s_sq(0.3)) == 0)
        True
        >>> v = 2.0**47  # v - 0.5 is exact; mu_f^2 = Delta/4 - O(Delta^1.5 / sqrt(v)) for relu
        >>> round(relu.equivalence_constants(v, v - 0.5, delta=0.5)[4], 10)
        0.1249999955
        """
        v, c = np.broadcast_arrays(np.asarray(variance, dtype=float), np.asarray(covariance, dtype=float))
        gap = None if delta is None else np.broadcast_to(np.asarray(delta, dtype=float), v.shape)
        if gap is not None and not (np.all(np.isfinite(gap)) and np.all(gap >= 0)):
            raise ValueError("delta (the fresh variance v - c) must be finite and >= 0")
        if not (np.all(np.isfinite(v)) and np.all(np.isfinite(c))):
            raise ValueError("variance and covariance must be finite (no NaN or inf)")
        if np.any(v <= 0):
            raise ValueError(f"variance must be > 0, got {float(v[v <= 0].ravel()[0])!r}")
        if np.any(np.abs(c) > v * (1 + RANGE_SLACK)):
            raise ValueError("covariance must satisfy |c| <= variance (a correlation in [-1, 1])")
        out = np.empty((6,) + v.shape)
        flat_v, flat_c = v.ravel(), c.ravel()
        flat_d = np.full(flat_v.shape, -1.0) if gap is None else gap.ravel()  # -1: not given
        rows = out.reshape(6, -1)
        unit = (flat_v == 1.0) & (flat_c >= 0.0) & (flat_c <= 1.0)
        if np.any(unit):  # the isotropic numbers themselves (one vectorised call, as mu_s_sq(c) gives them)
            cu = flat_c[unit]
            rows[0, unit], rows[1, unit], rows[2, unit] = self.mu0, self.mu1, self.mu_star_sq
            rows[3, unit] = self.mu_s_sq(cu)
            rows[4, unit] = self.mu_f_sq(cu)
            rows[5, unit] = (np.vectorize(self._kernel_error_at, otypes=[float])(cu)
                             if self._gl_kernel_applies() else 0.0)
        for value in sorted(set(flat_v[~unit].tolist())):
            self.check_variance(value)
        for key in sorted(set(zip(flat_v[~unit].tolist(), flat_c[~unit].tolist(), flat_d[~unit].tolist()))):
            sel = (flat_v == key[0]) & (flat_c == key[1]) & (flat_d == key[2])
            rows[:, sel] = np.array(self._constants_at(key[0], key[1], key[2] if key[2] >= 0 else math.nan))[:, None]
        result = tuple(float(q) if q.ndim == 0 else q for q in out)
        return result if with_error else result[:5]

    def _constants_at(self, v: float, c: float, delta: float = math.nan) -> tuple:
        """``(mu0, mu1, mu_*^2, mu_s^2, mu_f^2, error of mu_s^2)`` at one ``(v, c)`` (memoised);
        ``delta``: the exact ``v - c`` (NaN: unknown)."""
        key = ("constants", v, c) if math.isnan(delta) else ("constants", v, c, delta)
        if key in self._memo:
            return self._memo[key]
        fresh = None
        if v == 1.0:
            mu0, mu1, star = self.mu0, self.mu1, self.mu_star_sq
            if 0.0 <= c <= 1.0:
                shared = float(self.mu_s_sq(c))
            else:
                shared = float(self.kernel(max(-1.0, c))) - mu0**2 - mu1**2 * c
            err = self._kernel_error_at(max(-1.0, min(1.0, c))) if self._gl_kernel_applies() else 0.0
        else:
            sv = math.sqrt(v)
            r = max(-1.0, min(1.0, c / v))
            if self._poly is not None:
                alpha = self.gaussian_moments(0.0, sv, len(self._poly) - 1)
                norm2 = alpha**2 / sqrt_factorials(len(self._poly) - 1) ** 2
                mu0, mu1 = float(alpha[0]), float(alpha[1]) / sv if alpha.size > 1 else 0.0
                second = float(np.sum(norm2))
                kern = float(np.polynomial.polynomial.polyval(r, norm2))
                err = 0.0
            elif self._form is not None and self._form.homogeneous:
                # rho(sqrt(v) y) = v^(k/2) rho(y): E[rho(h) rho(h')] = v^k K(r), exact at any v
                k = self._form.homogeneous
                alpha = self.gaussian_moments(0.0, sv, 1)
                mu0, mu1 = float(alpha[0]), float(alpha[1]) / sv
                second = float(self.gaussian_second_moment(0.0, sv))
                kern = v**k * float(self.kernel(r))
                err = 1e-16 * second
                if not math.isnan(delta) and self._form.kernel_gap is not None:
                    # E rho(h)^2 - E rho(h) rho(h') = v^k (K(1) - K(1 - delta/v)), no cancellation
                    fresh = v**k * float(self._form.kernel_gap(delta / v)) - mu1**2 * delta
            elif self._form is not None and self._form.moments is not None and abs(r) <= 0.5:
                # closed-form Gaussian moments: the Mehler series sum_j r^j alpha_j^2 / j!, its tail
                # after J = 60 terms below |r|^61 (E rho(h)^2 - partial sum) <= 4e-19 E rho(h)^2
                order = 60
                alpha = self.gaussian_moments(0.0, sv, order)
                norm2 = (alpha / sqrt_factorials(order)) ** 2
                second = float(self.gaussian_second_moment(0.0, sv))
                mu0, mu1 = float(alpha[0]), float(alpha[1]) / sv
                kern = float(np.polynomial.polynomial.polyval(r, norm2))
                err = abs(r) ** (order + 1) * max(second - float(np.sum(norm2)), 0.0) + 1e-16 * second
            else:
                fine, error = _gl_pair_with_error(self._fn, self.kinks, v, c, robust=self._from_callable)
                mean, first, second, kern = (float(q) for q in fine)
                err = float(error[3] + 2 * abs(mean) * error[0] + 2 * abs(first) * error[1] * abs(c) / v**2)
                mu0, mu1 = mean, first / v
                if self._form is not None and self._form.moments is not None:
                    alpha = self.gaussian_moments(0.0, sv, 1)
                    mu0, mu1 = float(alpha[0]), float(alpha[1]) / sv
                    second = float(self.gaussian_second_moment(0.0, sv))
            star = second - mu0**2 - mu1**2 * v
            shared = kern - mu0**2 - mu1**2 * c
            if err > 1e-12 * max(second, 1e-300):
                warnings.warn(
                    f"equivalence_constants: quadrature for {self.name} at variance {v:.6g}, covariance "
                    f"{c:.6g} reached only {err:.1e} (absolute, on mu_s^2); rho may have kinks that are "
                    "not known (pass a sympy expression so they can be located)", QuadratureWarning,
                    stacklevel=3)
        fresh = star - shared if fresh is None else fresh
        tiny = 1e-14 * max(self._scale**2, 1e-300)
        shared = 0.0 if -tiny < shared < 0 else shared
        fresh = 0.0 if -tiny < fresh < 0 else fresh
        value = (mu0, mu1, star, shared, fresh, err)
        self._memo[key] = value
        return value

    def equivalence_constants_mp(self, variance, covariance, dps: int | None = None) -> tuple:
        """:meth:`equivalence_constants` at one ``(v, c)`` as mpmath numbers at ``dps`` digits.

        ``v = 1`` uses :meth:`coefficients_mp` and :meth:`kernel_mp`.  Otherwise the 1-D
        moments of ``rho(sqrt(v) x)`` come from the adaptive Gauss--Legendre quadrature
        (split at the kinks ``k / sqrt(v)``) and ``E[rho(h) rho(h')]`` from their Mehler
        series ``sum_k n_k^2 r^k`` when its tail bound is below ``10^-dps``, else from the
        piecewise two-dimensional Gauss--Legendre rule (tens of seconds; two rules
        must agree to ``10^-dps``, else a ValueError).  Callables that only
        evaluate in double precision raise a ValueError (their digits beyond 16 are unknown).
        """
        dps = self.dps if dps is None else _check_dps(dps)
        with mpmath.workdps(dps + 10):
            v, c = mpmath.mpf(variance), mpmath.mpf(covariance)
            if not (mpmath.isfinite(v) and mpmath.isfinite(c)) or v <= 0:
                raise ValueError(f"variance must be finite and > 0 and covariance finite, got {variance!r}, {covariance!r}")
            if abs(c) > v * (1 + RANGE_SLACK):
                raise ValueError("covariance must satisfy |c| <= variance")
            c = max(min(c, v), -v)
            self.check_variance(float(v))
            if v == 1:
                co = self.coefficients_mp(dps)
                mu0, mu1, star = co.mu0, co.mu1, co.mu_star_sq
                kern = self.kernel_mp(c, dps)
            elif self._form is not None and self._form.homogeneous:  # v^k K(c / v), as in float
                k = self._form.homogeneous
                co = self.coefficients_mp(dps)
                mu0, mu1 = co.mu0 * v ** (mpmath.mpf(k) / 2), co.mu1 * v ** (mpmath.mpf(k - 1) / 2)
                star = co.second_moment * v**k - mu0**2 - mu1**2 * v
                kern = v**k * self.kernel_mp(c / v, dps)
            else:
                self._require_mp_exact()
                sv = mpmath.sqrt(v)
                fn = self._fn_mp
                scaled = [mpmath.mpf(k) / sv for k in self.kinks]
                r = c / v
                if abs(r) < mpmath.mpf(10) ** (-dps - 3):
                    order = 1
                elif abs(r) >= 1:
                    order = MEHLER_MP_MAX_ORDER + 1
                else:
                    order = int(math.ceil((dps + 3) * math.log(10) / -math.log(float(abs(r))))) + 1
                n, second, _, _ = _mp_gauss_moments(lambda x: fn(sv * x), min(order, MEHLER_MP_MAX_ORDER),
                                                    dps, kinks=scaled,
                                                    scale=self._scale_guess() * max(1.0, float(sv)))
                mu0, mu1 = n[0], n[1] / sv
                star = second - mu0**2 - mu1**2 * v
                tail = max(second - mpmath.fsum(q * q for q in n), mpmath.mpf(0)) * abs(r) ** len(n)
                if order <= MEHLER_MP_MAX_ORDER and tail <= mpmath.mpf(10) ** (-dps) * second:
                    kern = mpmath.polyval([q * q for q in reversed(n)], r)
                else:
                    kern = self._mp_pair_kernel_checked(v, c, dps, second)
            shared = kern - mu0**2 - mu1**2 * c
            return (+mu0, +mu1, +star, +shared, star - shared)
