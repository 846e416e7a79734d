"""Tolerances, the error and warning classes, and the argument checks shared by the modules
of :mod:`pencils.activation` (its bottom layer: it imports only :mod:`pencils.activation.closed_forms`)."""
from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

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


def _check_dps(dps) -> int:
    if isinstance(dps, bool) or not isinstance(dps, numbers.Integral) or dps < 15:
        raise ValueError(f"dps must be an integer >= 15, got {dps!r}")
    return int(dps)


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
