"""Tolerances, the error and warning classes, and the argument checks shared by the modules
of :mod:`pencils.activation` (its bottom layer: it imports only :mod:`pencils.activation.closed_forms`)."""
from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Callable

import mpmath
import numpy as np

if TYPE_CHECKING:  # annotations only
    import sympy

from .closed_forms import MAX_ORDER

#: Accepted (conservatively estimated) error of the float Gaussian moments, relative to the
#: scale of ``rho`` (see :meth:`Activation.gaussian_moments`); tests check 1e-12 against mpmath.
FLOAT_TOL = 1e-13
#: Tolerance of the nested trapezoidal rules behind :meth:`Activation.kernel` (one number per ``c``).
KERNEL_TOL = 1e-15
#: Budget of the adaptive mpmath quadrature of the Hermite moments (bisections of a panel, two
#: evaluations of the 24-point rule each): for a ``rho`` known in double precision only, and per
#: digit for one known to any precision.  Smooth activations need 60-80 bisections at 30 digits
#: and about 270 at 60; a noisy callable (float32) would need millions.  Past the budget the
#: quadrature stops and reports the accuracy it reached (a QuadratureWarning, ``Activation.accuracy``).
QUADRATURE_BISECTIONS_DOUBLE = 200
QUADRATURE_BISECTIONS_PER_DIGIT = 100
#: Largest Hermite order used by the Mehler series of :meth:`Activation.kernel_mp`.
MEHLER_MP_MAX_ORDER = 128
#: Slack allowed on ``c`` in ``[-1, 1]`` and ``a_sq`` in ``[0, 1]`` before a ValueError.
RANGE_SLACK = 1e-12


class ActivationSpecError(ValueError, TypeError):
    """An activation specification of the wrong type (both a ValueError and a TypeError)."""


class QuadratureWarning(UserWarning):
    """A numerical quadrature did not reach its target accuracy; the message says how far it got."""


def _sympy_to_mp(value: sympy.Expr, dps: int):
    """A real sympy number as an mpf with ``dps`` correct digits."""
    import sympy

    re, im = sympy.N(value, dps).as_real_imag()
    if im != 0:
        raise ValueError(f"rho must be real-valued; a coefficient evaluated to {value} = {re} + {im} I")
    return mpmath.mpf(sympy.Float(re, dps)._mpf_) if re != 0 else mpmath.mpf(0)


def _check_growth(fn_mp: Callable, name: str, variance: float = 1.0) -> None:
    """Reject ``rho`` whose ``rho(x)^2 phi_v(x)`` does not decay fast at large ``|x|`` (``phi_v``
    the centred Gaussian density of variance ``v``).

    ``E rho(h)^2 < inf``, ``h ~ N(0, v)``, needs ``2 log|rho(sqrt(v) u)| - u^2/2 -> -inf`` faster
    than ``-log|u|``; we ask for ``2 log|rho(sqrt(v) u)| - u^2/2 + 2 log|u| < -200`` at
    ``|u| = 64`` and ``128`` (at ``v = 1``: ``exp(x^2/4)`` is exactly borderline and fails,
    ``exp(x^2/5)`` passes; at ``v = 3`` ``exp(x^2/5)`` fails: ``E exp(2 h^2/5) = inf`` for ``v >= 5/4``).
    The pre-activation variance is ``v = a_t^2 tau + Delta_t`` for data with ``tr Sigma / d = tau``
    (MODEL.md): a heavy-tailed ``rho`` can be fine on isotropic data and not on structured data.
    """
    sv = mpmath.sqrt(mpmath.mpf(variance))
    at = "" if variance == 1 else f" at pre-activation variance v = {float(variance):.6g}"
    for u in (64, -64, 128, -128):
        with mpmath.workdps(30):
            x = sv * u
            try:
                r = fn_mp(x)
            except OverflowError:
                r = mpmath.inf
            except (ArithmeticError, ValueError, TypeError) as exc:
                raise ValueError(
                    f"rho = {name} could not be evaluated at x = {mpmath.nstr(x, 6)}: {exc!r}. rho must be "
                    "real-valued and finite on the whole real line (otherwise the Gaussian second "
                    "moment is not finite)") from None
            r = abs(mpmath.mpmathify(r))
            if mpmath.isnan(r):
                raise ValueError(f"rho must be real-valued and finite: {name} is NaN at x = {mpmath.nstr(x, 6)}")
            if r == 0:
                continue
            if mpmath.isinf(r) or 2 * mpmath.log(r) - u * u / 2 + 2 * math.log(abs(u)) > -200:
                raise ValueError(
                    f"Gaussian second moment E[rho(h)^2]{at} is not finite (or rho is too heavy-tailed to "
                    f"integrate accurately) for {name}: rho(x)^2 phi_v(x) does not decay at x = "
                    f"{mpmath.nstr(x, 6)}")


#: Most decimal digits a precision argument (``dps=``, ``precision=``) may ask for: hours of
#: mpmath work beyond, and no use (an integer like ``10**300`` would never return).
MAX_DPS = 1000


def check_digits(value, name: str = "dps") -> int:
    """A number of decimal digits: a whole number from 15 to :data:`MAX_DPS` (``ValueError``
    naming ``name`` and that range otherwise).  The one check of every precision argument
    (activations, :func:`numerics.solve_mp`, the theory's ``precision=``).

    >>> check_digits(30)
    30
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) \
            or not 15 <= value <= MAX_DPS:
        raise ValueError(f"{name} is a whole number of decimal digits from 15 to {MAX_DPS}, got {value!r:.60}")
    return int(value)


def _check_dps(dps) -> int:
    return check_digits(dps, "dps")


def _check_order(order, limit: int | None = MAX_ORDER) -> int:
    if isinstance(order, bool) or not isinstance(order, numbers.Integral) or order < 0:
        raise ValueError(f"order must be a non-negative integer, got {order!r}")
    if limit is not None and order > limit:
        raise ValueError(f"order must be <= {limit} (sqrt(order!) must be a finite float), got {order}")
    return int(order)


def _check_range(value, lo: float, hi: float, name: str):
    arr = np.asarray(value, dtype=float)
    if np.any(np.isnan(arr)):
        raise ValueError(f"{name} must not be NaN")
    if np.any(arr < lo - RANGE_SLACK) or np.any(arr > hi + RANGE_SLACK):
        bad = arr[(arr < lo - RANGE_SLACK) | (arr > hi + RANGE_SLACK)].ravel()[0]
        raise ValueError(f"{name} must lie in [{lo:g}, {hi:g}], got {bad!r}")
    return np.clip(arr, lo, hi), arr.ndim == 0


def _check_mean_std(mean, std):
    try:
        m, s = np.broadcast_arrays(np.asarray(mean, dtype=float), np.asarray(std, dtype=float))
    except ValueError as exc:
        raise ValueError(f"mean and std must broadcast together: {exc}") from None
    if not np.all(np.isfinite(m)):
        raise ValueError("mean must be finite (no NaN or inf)")
    if not np.all(np.isfinite(s)):
        raise ValueError("std must be finite (no NaN or inf)")
    if np.any(s < 0):
        raise ValueError("std must be >= 0")
    return m.ravel().copy(), s.ravel().copy(), m.shape
