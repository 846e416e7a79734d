"""The :class:`Activation` object: an activation ``rho`` with its Gaussian-equivalence numbers
(``mu0, mu1, E rho^2, mu_*^2``, Hermite coefficients, the kernel ``K(c)``, ``mu_s^2`` and
``mu_f^2``) in float and in mpmath.  The structured-data constants and the Gaussian moments
are its two mixins (:mod:`.equivalence`, :mod:`.gaussian_moments`)."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import mpmath
import numpy as np

from .. import cache as _cache
from .closed_forms import SymbolicForms, symbols as _symbols
from .common import (
    FLOAT_TOL,
    KERNEL_TOL,
    MEHLER_MP_MAX_ORDER,
    RANGE_SLACK,
    QuadratureWarning,
    _check_dps,
    _check_growth,
    _check_order,
    _check_range,
    _sympy_to_mp,
)
from .equivalence import _EquivalenceConstants
from .gaussian_moments import _GaussianMoments
from .mp_quadrature import _mp_gauss_moments, _mp_kernel_trapezoid, _mp_pair_kernel
from .quadrature import _evaluate_shifted, _gauss_hermite, _gl_pair_with_error, _safe_eval, _trapezoid

_CACHE_VERSION = "activation-v1"


@dataclass(frozen=True)
class MpCoefficients:
    """Gaussian-equivalence numbers as mpmath numbers, accurate to about ``dps`` digits."""

    mu0: mpmath.mpf
    mu1: mpmath.mpf
    second_moment: mpmath.mpf
    mu_star_sq: mpmath.mpf
    dps: int


# =========================================================================== the Activation object

class Activation(_EquivalenceConstants, _GaussianMoments):
    """An activation ``rho`` with its Gaussian-equivalence numbers (immutable; build with :func:`activation`).

    Attributes
    ----------
    name : str
        ``"relu"``, ``str(expr)`` or the callable's ``__name__``.
    expr : sympy.Expr or None
        ``rho`` as an expression in the symbol ``x`` (:data:`X`); ``None`` for a callable.
        Built on first access for a named activation (importing sympy).
    symbolic : SymbolicForms
        Exact sympy ``mu0``, ``mu1``, ``second_moment``, ``kernel`` (in ``c``), ``None`` where unknown.
        Built on first access for a named activation, whose numbers come from the same closed
        forms evaluated in numpy and mpmath.
    mu0, mu1, second_moment, mu_star_sq : float
        ``E rho(g)``, ``E[g rho(g)]``, ``E rho(g)^2``, ``E rho(g)^2 - mu0^2 - mu1^2``.
    method : str
        ``"closed-form"``, ``"polynomial"`` or ``"quadrature"`` (how the numbers are computed).
    parity : int or None
        ``+1`` even, ``-1`` odd, ``0`` neither, ``None`` unknown (callables).
    kinks : tuple of float
        Known points of non-smoothness (quadrature breakpoints).
    dps : int
        Decimal digits of the high-precision path.
    accuracy : float
        Estimated absolute error of the high-precision coefficients (0 for closed forms).
    """

    __slots__ = ("name", "_expr", "_symbolic", "method", "parity", "kinks", "dps", "accuracy",
                 "_fn", "_fn_mp", "_mp_exact", "_form", "_poly", "_smooth", "_key", "_scale", "_strip",
                 "_coeffs", "_memo", "_frozen")

    def __init__(self, *, name, expr, symbolic, method, parity, kinks, dps, fn, fn_mp, mp_exact,
                 form=None, poly=None, smooth=True, key=None):
        object.__setattr__(self, "_frozen", False)
        self.name = name
        self._expr = expr  # None with a form: built from the form on first access
        self._symbolic = symbolic
        self.method = method
        self.parity = parity
        self.kinks = tuple(kinks)
        self.dps = dps
        self._fn = fn
        self._fn_mp = fn_mp
        self._mp_exact = mp_exact
        self._form = form
        self._poly = poly
        self._smooth = smooth
        self._key = key
        self._strip = form.strip if form is not None else None
        self._memo = {}
        self._scale = 1.0
        self.accuracy = 0.0
        coeffs = self.coefficients_mp(dps)
        self._coeffs = coeffs
        self._scale = math.sqrt(max(float(coeffs.second_moment), 1e-300))
        object.__setattr__(self, "_frozen", True)

    @property
    def expr(self):
        # documented in the class docstring (a docstring here would describe it twice in the API pages)
        if self._expr is None and self._form is not None:
            return self._form.expr
        return self._expr

    @property
    def symbolic(self) -> SymbolicForms:
        # documented in the class docstring
        if self._symbolic is None and self._form is not None:
            return self._form.symbolic
        return self._symbolic

    @property
    def _from_callable(self) -> bool:
        """A Python callable: no expression, so kinks were located numerically (if at all)."""
        return self._expr is None and self._form is None

    def _exact_mp(self, key: str, dps: int):
        """The exact ``mu0``, ``mu1`` or ``second_moment`` as an mpf at ``dps`` digits, ``None`` if unknown.

        Named activations evaluate their closed forms in mpmath; others evaluate ``symbolic``.
        """
        if self._form is not None:
            f = self._form.exact.get(key)
            if f is None:
                return None
            with mpmath.workdps(dps):
                return f()
        value = getattr(self.symbolic, key)
        return None if value is None else _sympy_to_mp(value, dps)

    def __setattr__(self, key, value):
        if getattr(self, "_frozen", False):
            raise AttributeError(f"Activation is immutable; cannot set {key!r}")
        object.__setattr__(self, key, value)

    def __repr__(self) -> str:
        return (f"Activation({self.name!r}, method={self.method!r}, mu0={self.mu0:.6g}, "
                f"mu1={self.mu1:.6g}, mu_star_sq={self.mu_star_sq:.6g})")

    # ------------------------------------------------------------------ evaluation
    def __call__(self, x):
        """``rho(x)``, numpy-vectorised (scalar in, float out)."""
        arr = np.asarray(x, dtype=float)
        with np.errstate(over="ignore", under="ignore"):
            out = np.asarray(self._fn(arr), dtype=float)
        if out.shape != arr.shape:
            out = np.broadcast_to(out, arr.shape).copy()
        return float(out) if out.ndim == 0 else out

    def fn_mpmath(self, x):
        """``rho(x)`` for an mpmath (or float) scalar, as an mpf."""
        return mpmath.mpf(self._fn_mp(mpmath.mpf(x)))

    # ------------------------------------------------------------------ float coefficients
    @property
    def mu0(self) -> float:
        return float(self._coeffs.mu0)

    @property
    def mu1(self) -> float:
        return float(self._coeffs.mu1)

    @property
    def second_moment(self) -> float:
        return float(self._coeffs.second_moment)

    @property
    def mu_star_sq(self) -> float:
        return float(self._coeffs.mu_star_sq)

    # ------------------------------------------------------------------ high precision
    def coefficients_mp(self, dps: int | None = None) -> MpCoefficients:
        """``mu0, mu1, E rho^2, mu_*^2`` as mpmath numbers at ``dps`` digits (default ``self.dps``).

        Closed forms are evaluated exactly (mpmath for named activations, ``evalf`` for sympy
        ones); otherwise adaptive Gauss--Legendre quadrature (cached on disk for named and
        sympy activations).
        """
        dps = self.dps if dps is None else _check_dps(dps)
        memo_key = ("coeffs", dps)
        if memo_key in self._memo:
            return self._memo[memo_key]
        with mpmath.workdps(dps + 10):
            mu0, mu1, sec = (self._exact_mp(k, dps + 10) for k in ("mu0", "mu1", "second_moment"))
            if sec is None or mu0 is None or mu1 is None:
                n, sec, _ = self._quadrature_moments(1, dps)
                mu0 = n[0] if mu0 is None else mu0
                mu1 = n[1] if mu1 is None else mu1
            result = MpCoefficients(+mu0, +mu1, +sec, sec - mu0**2 - mu1**2, dps)
        self._memo[memo_key] = result
        return result

    def hermite_coefficients_mp(self, order: int, dps: int | None = None) -> list:
        """``a_k = E[rho(g) He_k(g)]``, ``k = 0..order``, as mpmath numbers.

        Closed forms are exact.  Quadrature results are accurate to about
        ``10^-dps sqrt(k!) ||rho||`` (absolute): ``a_k / sqrt(k!)`` is what enters every
        Mehler series, and it is computed to ``dps`` digits absolute.
        """
        order = _check_order(order, limit=None)
        dps = self.dps if dps is None else _check_dps(dps)
        if self._form is not None and self._form.hermite_mp is not None:
            with mpmath.workdps(dps + 10):
                return [+v for v in self._form.hermite_mp(order)]
        if self._poly is not None:
            with mpmath.workdps(dps + 10):
                return [_sympy_to_mp(self._poly[k], dps + 10) if k < len(self._poly) else mpmath.mpf(0)
                        for k in range(order + 1)]
        n, _, _ = self._quadrature_moments(order, dps)
        with mpmath.workdps(dps + 10):
            out = [n[k] * mpmath.sqrt(mpmath.factorial(k)) for k in range(order + 1)]
        if self.parity in (1, -1):  # exact zeros for a known parity
            out = [v if (k % 2 == 0) == (self.parity == 1) else mpmath.mpf(0) for k, v in enumerate(out)]
        return out

    def hermite_coefficients(self, order: int) -> np.ndarray:
        """Float ``a_k = E[rho(g) He_k(g)]`` for ``k = 0..order`` (probabilists' Hermite).

        ``K(c) = sum_k a_k^2 c^k / k!`` and ``sum_k a_k^2 / k! = E rho(g)^2``.

        >>> from pencils import activation
        >>> activation("quadratic").hermite_coefficients(3).tolist()
        [1.0, 0.0, 2.0, 0.0]
        """
        order = _check_order(order)
        key = ("hermite-float", order)
        if key not in self._memo:
            arr = np.array([float(v) for v in self.hermite_coefficients_mp(order)])
            arr.setflags(write=False)
            self._memo[key] = arr
        return self._memo[key].copy()

    def kernel_mp(self, c, dps: int | None = None):
        """``K(c)`` as an mpmath number at ``dps`` digits.

        Closed forms and polynomials are exact; ``c = 0, 1, -1`` reduce to ``mu0^2``,
        ``E rho^2`` and the one-dimensional ``E[rho(g) rho(-g)]``.  Otherwise the Mehler
        series ``sum_k a_k^2 c^k / k!`` with high-precision Hermite coefficients when
        its tail bound ``(E rho^2 - partial sum) |c|^(K+1)`` is below ``10^-dps`` with at
        most :data:`MEHLER_MP_MAX_ORDER` terms (small ``|c|``), else a two-dimensional
        trapezoidal rule (analytic ``rho`` only, seconds at 30 digits; a ValueError
        when it does not converge).  Results are memoised.
        """
        dps = self.dps if dps is None else _check_dps(dps)
        with mpmath.workdps(dps + 10):
            c = mpmath.mpf(c)
            if mpmath.isnan(c):
                raise ValueError("c must not be NaN")
            if abs(c) > 1 + RANGE_SLACK:
                raise ValueError(f"c must lie in [-1, 1], got {mpmath.nstr(c, 17)}")
            c = max(min(c, mpmath.mpf(1)), mpmath.mpf(-1))
            if self._form is not None:
                if self._form.kernel_mp is not None:
                    return +self._form.kernel_mp(c)
            elif self.symbolic.kernel is not None:
                import sympy

                C = _symbols()[1]
                return +_sympy_to_mp(self.symbolic.kernel.subs(C, sympy.Float(c, dps + 10)), dps + 10)
            key = ("kernel_mp", mpmath.nstr(c, dps + 10), dps)
            if key not in self._memo:
                self._memo[key] = self._kernel_mp_quadrature(c, dps)
            return +self._memo[key]

    # ------------------------------------------------------------------ kernel
    def kernel(self, c):
        """``K(c) = E[rho(g) rho(g')]`` for correlation ``c`` in ``[-1, 1]`` (numpy-vectorised).

        >>> from pencils import activation
        >>> round(activation("erf").kernel(0.0), 15), round(activation("linear").kernel(0.3), 15)
        (0.0, 0.3)
        """
        arr, scalar = _check_range(c, -1.0, 1.0, "c")
        if self._form is not None and self._form.kernel is not None:
            out = np.asarray(self._form.kernel(arr), dtype=float)
        elif self._poly is not None:
            n2 = self._normalised_hermite_float(len(self._poly) - 1) ** 2
            out = np.polynomial.polynomial.polyval(arr, n2)
        elif self._gl_kernel_applies():
            out = self._gl_kernel(arr)
        else:
            out = self._kernel_quadrature(arr)
        return float(out) if scalar else out

    def mu_s_sq(self, a_sq):
        """``K(a^2) - mu0^2 - mu1^2 a^2`` for ``a_sq = a_t^2`` in ``[0, 1]`` (vectorised).

        For ``a_sq <= 1/4`` the Mehler tail ``sum_{k>=2} a_k^2 a_sq^k / k!`` is summed
        instead, so small values keep their relative accuracy.
        """
        arr, scalar = _check_range(a_sq, 0.0, 1.0, "a_sq")
        out = np.empty(arr.shape)
        small = arr <= 0.25
        if np.any(~small):
            big = arr[~small]
            out[~small] = self.kernel(big) - self.mu0**2 - self.mu1**2 * big
        if np.any(small):
            order = 48  # 0.25^49 < 1e-29: the truncation is invisible in double precision
            n2 = self._normalised_hermite_float(order) ** 2
            n2[:2] = 0.0
            out[small] = np.polynomial.polynomial.polyval(arr[small], n2)
        out = np.where((out < 0) & (out > -1e-14 * self._scale**2), 0.0, out)
        return float(out) if scalar else out

    def mu_f_sq(self, a_sq):
        """``mu_star_sq - mu_s_sq(a_sq)``: the per-draw (fresh) nonlinear variance."""
        s = self.mu_s_sq(a_sq)
        out = self.mu_star_sq - np.asarray(s)
        out = np.where((out < 0) & (out > -1e-14 * self._scale**2), 0.0, out)
        return float(out) if np.ndim(s) == 0 else out

    def check_variance(self, variance: float) -> None:
        """ValueError naming ``rho`` and ``v`` unless ``E rho(h)^2 < inf`` for ``h ~ N(0, v)``.

        Named activations and polynomials grow polynomially (always finite).  Otherwise the
        tails are tested numerically at ``|x| = 64 sqrt(v)`` and ``128 sqrt(v)``
        (:func:`~pencils.activation.common._check_growth`): ``exp(x^2/5)`` passes at ``v = 1``
        (isotropic data) and fails at ``v = 3``.  Memoised per ``v``.
        """
        v = float(variance)
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"variance must be finite and > 0, got {variance!r}")
        if self._form is not None or self._poly is not None or v == 1.0:
            return  # polynomial growth, or checked when rho was built (v = 1)
        key = ("integrable", v)
        if key not in self._memo:
            _check_growth(self._fn_mp, self.name, v)
            self._memo[key] = True

    # ------------------------------------------------------------------ structured data, Gaussian moments
    # Defined in the mixins (equivalence.py, gaussian_moments.py); named here too because the
    # API reference lists a class's own members only.
    equivalence_constants = _EquivalenceConstants.equivalence_constants
    equivalence_constants_mp = _EquivalenceConstants.equivalence_constants_mp
    gaussian_moments = _GaussianMoments.gaussian_moments
    gaussian_second_moment = _GaussianMoments.gaussian_second_moment

    # ------------------------------------------------------------------ kinked activations
    def _gl_kernel_applies(self) -> bool:
        """The float kernel uses piecewise Gauss--Legendre: quadrature activations with known
        kinks, non-smooth ones, and callables (kinks unknown; the error estimate is honest)."""
        return (self._form is None or self._form.kernel is None) and self._poly is None and (
            bool(self.kinks) or not self._smooth or self._from_callable)

    def _kernel_error_at(self, c: float) -> float:
        key = ("kernel-gl", c)
        if key not in self._memo:
            fine, error = _gl_pair_with_error(self._fn, self.kinks, 1.0, c, robust=self._from_callable)
            self._memo[key] = (float(fine[3]), float(error[3]))
        return self._memo[key][1]

    def kernel_error(self, c):
        """An estimated bound on the absolute error of :meth:`kernel` ``(c)`` (0 for closed forms).

        For activations given as Python callables the kinks are unknown: the estimate
        compares two Gauss--Legendre rules and bounds the true error (tested against mpmath).
        """
        arr, scalar = _check_range(c, -1.0, 1.0, "c")
        if not self._gl_kernel_applies():
            out = np.zeros(arr.shape) if self._form is not None or self._poly is not None else \
                np.full(arr.shape, KERNEL_TOL * self._scale**2)
        else:
            out = np.vectorize(self._kernel_error_at, otypes=[float])(arr)
        return float(out) if scalar else out

    def _gl_kernel(self, c: np.ndarray) -> np.ndarray:
        """Float ``K(c)`` by piecewise Gauss--Legendre split at the kinks, with a warning when
        its error estimate exceeds :data:`KERNEL_TOL` of ``E rho^2``."""
        flat = c.ravel()
        out = np.empty(flat.size)
        worst = 0.0
        for value in np.unique(flat):
            self._kernel_error_at(float(value))
            k, e = self._memo[("kernel-gl", float(value))]
            out[flat == value] = k
            worst = max(worst, e)
        if worst > KERNEL_TOL * max(self._scale**2, 1e-300) * 10:
            warnings.warn(f"kernel: quadrature for {self.name} reached only {worst:.1e} absolute accuracy "
                          "(kinks not known: pass a sympy expression so they can be located)",
                          QuadratureWarning, stacklevel=3)
        return out.reshape(c.shape)

    def _require_mp_exact(self) -> None:
        if not self._mp_exact:
            raise ValueError(
                f"high precision needs rho in arbitrary precision, but {self.name} is a callable that "
                "only evaluates in double precision (its values beyond 16 digits are unknown); pass a "
                "sympy expression, or a callable that maps mpmath numbers to mpmath numbers")

    def _mp_pair_kernel_checked(self, v, c, dps: int, second) -> mpmath.mpf:
        """:func:`_mp_pair_kernel` with ``q = 8 + 0.6 dps`` nodes a panel, checked against ``q - 6``
        nodes (a ValueError when they disagree by more than ``10^-dps``)."""
        q = 8 + int(math.ceil(0.6 * dps))
        fine = _mp_pair_kernel(self._fn_mp, self.kinks, v, c, dps, q)
        coarse = _mp_pair_kernel(self._fn_mp, self.kinks, v, c, dps, q - 6)
        if abs(fine - coarse) > mpmath.mpf(10) ** (-dps) * max(second, mpmath.mpf(10) ** -30):
            raise ValueError(
                f"two-dimensional Gauss-Legendre for {self.name} at covariance {mpmath.nstr(c, 8)} reached "
                f"only {mpmath.nstr(abs(fine - coarse), 3)} (target 1e-{dps}); rho may have kinks that are "
                "not known (pass a sympy expression)")
        return fine

    # ------------------------------------------------------------------ internals
    def _normalised_hermite_float(self, order: int) -> np.ndarray:
        """Float ``a_k / sqrt(k!)``, ``k = 0..order`` (accurate in absolute terms)."""
        key = ("hermite-normalised", order)
        if key not in self._memo:
            if self._form is not None and self._form.hermite_mp is not None or self._poly is not None:
                with mpmath.workdps(self.dps + 10):
                    vals = [float(v / mpmath.sqrt(mpmath.factorial(k)))
                            for k, v in enumerate(self.hermite_coefficients_mp(order))]
            else:
                n, _, _ = self._quadrature_moments(order, self.dps)
                vals = [float(v) for v in n]
                if self.parity in (1, -1):
                    vals = [v if (k % 2 == 0) == (self.parity == 1) else 0.0 for k, v in enumerate(vals)]
            self._memo[key] = np.array(vals)
        return self._memo[key].copy()

    def _quadrature_moments(self, order: int, dps: int):
        """``(n_k, E rho^2, error)`` from :func:`_mp_gauss_moments`, memoised and disk-cached."""
        # one pass serves every order up to 48 (what mu_s_sq needs); beyond, multiples of 8
        order_eff = 1 if order <= 1 else max(48, 8 * math.ceil(order / 8))
        for key, val in self._memo.items():  # the same or a higher order already computed serves
            if isinstance(key, tuple) and key[0] == "quad" and key[1] >= order_eff and key[2] == dps:
                n, sec, err = val
                return n[: order + 1], sec, err
        key = ("quad", order_eff, dps)

        def compute():
            n, sec, err, worst = _mp_gauss_moments(
                self._fn_mp, order_eff, dps, kinks=self.kinks, scale=self._scale_guess(),
                exact=self._mp_exact)
            return tuple(n), sec, err, worst

        if self._key is not None:
            desc = f"{_CACHE_VERSION}|{self._key}|order={order_eff}|dps={dps}|kinks={self.kinks}"
            n, sec, err, worst = _cache.cached("activation-moments", desc, compute, code=("pencils",))
        else:
            n, sec, err, worst = compute()
        scale = self._scale_guess()
        limit = (10.0 ** -(dps - 2) if self._mp_exact else 1e-13) * scale
        if not (mpmath.isfinite(sec) and sec >= 0):
            raise ValueError(f"Gaussian second moment is not finite for {self.name} (quadrature gave {sec})")
        if err > 1e-6 * (scale + math.sqrt(float(sec))):
            raise ValueError(
                f"Gaussian second moment is not finite (or rho is too singular to integrate) for "
                f"{self.name}: quadrature does not converge near x = {mpmath.nstr(worst, 6)}")
        if err > limit:
            warnings.warn(
                f"Gauss-Legendre quadrature for {self.name} reached only {mpmath.nstr(err, 2)} "
                f"(target {limit:.0e}); the worst panel is near x = {mpmath.nstr(worst, 6)} "
                "(a kink or jump that is not at an integer? pass a sympy expression so kinks "
                "can be located)", QuadratureWarning, stacklevel=4)
        object.__setattr__(self, "accuracy", max(self.accuracy, float(err)))
        self._memo[key] = (list(n), sec, err)
        return list(n)[: order + 1], sec, err

    def _kernel_mp_quadrature(self, c, dps: int):
        self._require_mp_exact()
        coeffs = self.coefficients_mp(dps)
        if c == 0:
            return coeffs.mu0 ** 2
        if c == 1:
            return +coeffs.second_moment
        if c == -1:
            fn = self._fn_mp
            n, _, _ = self._mp_moments_of(lambda x: fn(x) * fn(-x), 0, dps)
            return n[0]
        tol = mpmath.mpf(10) ** (-dps) * self._scale**2
        terms = int(math.ceil((dps + 3) * math.log(10) / -math.log(float(abs(c))))) + 1
        if terms <= MEHLER_MP_MAX_ORDER:
            n, sec, _ = self._quadrature_moments(terms, dps)
            partial = mpmath.fsum(v * v for v in n)
            tail = max(sec - partial, mpmath.mpf(0)) * abs(c) ** (len(n))
            if tail <= tol:
                return mpmath.polyval([v * v for v in reversed(n)], c)
        if self.kinks or not self._smooth:
            # piecewise 2-D Gauss--Legendre split at the kinks (the trapezoidal rule needs analytic rho)
            return self._mp_pair_kernel_checked(mpmath.mpf(1), c, dps, coeffs.second_moment)
        return _mp_kernel_trapezoid(self._fn_mp, c, dps, self._scale, self.name, self._strip)

    def _mp_moments_of(self, fn, order, dps):
        """:func:`_mp_gauss_moments` of another function built from ``rho`` (same kinks)."""
        kinks = tuple(sorted(set(self.kinks) | {-k for k in self.kinks}))
        n, sec, err, _ = _mp_gauss_moments(fn, order, dps, kinks=kinks, scale=self._scale_guess() ** 2,
                                           exact=self._mp_exact)
        return n, sec, err

    def _scale_guess(self) -> float:
        """``sqrt(E rho(g)^2)`` from 80-node Gauss--Hermite (only used to scale tolerances)."""
        if "scale" not in self._memo:
            x, w = _gauss_hermite(80)
            v = _safe_eval(self._fn, x, "the scale estimate")
            self._memo["scale"] = max(math.sqrt(float((v * v) @ w)), 1e-300)
        return self._memo["scale"]

    def _trapezoid_moments(self, m, s, order, second=False, tol=FLOAT_TOL):
        strip = None if self._strip is None else self._strip / s  # rho(m + s xi): strip a / s in xi
        return _trapezoid(_evaluate_shifted(self._fn, m, s), m.size, order, scale=self._scale,
                          max_level=7 if self._smooth else 5, second=second, tol=tol, strip=strip)

    def _kernel_quadrature(self, c: np.ndarray) -> np.ndarray:
        """``K(c) = E_u[rho(u) E_w rho(c u + sqrt(1-c^2) w)]`` by nested trapezoidal rules."""
        flat = c.ravel()
        sc = np.sqrt(np.maximum(1.0 - flat * flat, 0.0))
        worst = [0.0]
        fn = self._fn

        def evaluate(idx, u):
            mean = (flat[idx, None] * u).ravel()
            std = np.repeat(sc[idx], u.size)
            inner = np.empty(mean.size)
            zero = std == 0
            if np.any(zero):
                inner[zero] = _safe_eval(fn, mean[zero], "the kernel")
            if not np.all(zero):
                A, _, err = self._trapezoid_moments(mean[~zero], std[~zero], 0, tol=KERNEL_TOL)
                inner[~zero] = A[0]
                worst[0] = max(worst[0], float(np.max(err)))
            return _safe_eval(fn, u, "the kernel")[None, :] * inner.reshape(idx.size, u.size)

        # rho(u) E_w rho(c u + s w) is analytic where rho(u) is (|c| <= 1)
        strip = None if self._strip is None else np.full(flat.size, self._strip)
        A, _, err = _trapezoid(evaluate, flat.size, 0, scale=self._scale**2, tol=KERNEL_TOL,
                               max_level=7 if self._smooth else 5, strip=strip)
        worst[0] = max(worst[0], float(np.max(err)) if err.size else 0.0)
        if worst[0] > KERNEL_TOL:
            warnings.warn(f"kernel: quadrature for {self.name} reached only {worst[0]:.1e} relative "
                          "accuracy; rho may be non-smooth", QuadratureWarning, stacklevel=3)
        return A[0].reshape(c.shape)
