"""Interpolation peaks of the test error along ``psi_p`` and the ridgeless limit ``lam -> 0+``.

With ``N = n m`` training rows, the ridge problem becomes singular where the number of
features crosses a rank of the feature matrix; for ``m = 1`` that is ``p = n``, for finite
``m > 1`` the test error can peak more than once (near ``p = n``, where the ``n`` signal
directions are interpolated, and near ``p = n m``, where all rows are).  :func:`find_peaks`
scans ``E_test`` on a log grid of ``psi_p``, brackets every local maximum and refines it
with a bounded scalar maximisation; :func:`peak_heights` follows the peaks as
``lam -> 0``; :func:`ridgeless` extrapolates both errors to ``lam = 0`` by Richardson
extrapolation in ``lam`` (the errors are analytic in ``lam`` at 0 away from a peak).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.optimize

from .model import parse_m

__all__ = ["Peak", "find_peaks", "peak_heights", "Ridgeless", "ridgeless"]


@dataclass(frozen=True)
class Peak:
    """A local maximum of ``E_test`` along ``psi_p``."""

    psi_p: float
    height: float
    lam: float


def _test_error(theory, psi_n, psi_p, t, lam, m):
    e = theory.errors(psi_n=psi_n, psi_p=psi_p, t=t, lam=lam, m=m, throw=False)
    return np.where(e.converged, e.test, np.nan)


def find_peaks(theory, psi_n: float, t: float, m, lam: float, psi_p_range=None, points: int = 240,
               xtol: float = 1e-9) -> list[Peak]:
    """Every local maximum of ``E_test(psi_p)`` in ``psi_p_range`` (log grid of ``points``).

    ``psi_p_range`` defaults to ``[psi_n / 20, 4 psi_n m]`` (``[psi_n/20, 20 psi_n]`` for
    ``m = inf``).  Each bracketed maximum is refined to relative precision ``xtol`` in
    ``psi_p``.  Points where the solver did not converge are skipped (never used as peaks).
    """
    m = parse_m(m)
    if psi_p_range is None:
        top = 20 * psi_n if math.isinf(m) else 4 * psi_n * m
        psi_p_range = (psi_n / 20, top)
    lo, hi = map(float, psi_p_range)
    if not (0 < lo < hi):
        raise ValueError(f"psi_p_range must satisfy 0 < lo < hi, got {psi_p_range}")
    grid = np.geomspace(lo, hi, points)
    y = _test_error(theory, psi_n, grid, t, lam, m)
    peaks = []
    for i in range(1, points - 1):
        if np.isfinite(y[i - 1:i + 2]).all() and y[i] > y[i - 1] and y[i] >= y[i + 1]:
            f = lambda u: -float(_test_error(theory, psi_n, math.exp(u), t, lam, m))  # noqa: E731
            res = scipy.optimize.minimize_scalar(f, bounds=(math.log(grid[i - 1]), math.log(grid[i + 1])),
                                                 method="bounded", options=dict(xatol=xtol))
            if np.isfinite(res.fun):
                peaks.append(Peak(psi_p=math.exp(res.x), height=-res.fun, lam=lam))
    return peaks


def peak_heights(theory, psi_n: float, t: float, m, lams, **kw) -> dict[float, list[Peak]]:
    """:func:`find_peaks` at each ``lam`` of ``lams`` (e.g. decreasing to 0)."""
    return {float(lam): find_peaks(theory, psi_n, t, m, lam, **kw) for lam in lams}


@dataclass(frozen=True)
class Ridgeless:
    """``lam -> 0+`` limits with error estimates (difference of the last two Richardson orders)."""

    test: float
    train: float
    test_err: float
    train_err: float
    lams: tuple


def ridgeless(theory, psi_n: float, psi_p: float, t: float, m, lam0: float = 1e-2, levels: int = 7,
              ratio: float = 0.5) -> Ridgeless:
    """Richardson extrapolation of ``E_test`` and ``E_train`` to ``lam = 0`` from
    ``lam_k = lam0 ratio^k``, ``k < levels`` (Neville's polynomial extrapolation).

    Raises ``ValueError`` when the sequence does not settle (the limit diverges, as at
    an interpolation peak): the error estimate then exceeds the value itself.
    """
    lams = lam0 * ratio ** np.arange(levels)
    e = theory.errors(psi_n=psi_n, psi_p=psi_p, t=t, lam=lams, m=m)
    out = {}
    for q in ("test", "train"):
        value, err = _neville_at_zero(lams, np.asarray(getattr(e, q), dtype=float))
        if not (np.isfinite(value) and err <= 1e-3 * max(abs(value), 1e-12) + 1e-9):
            raise ValueError(f"the ridgeless limit of E_{q} does not settle at psi_n={psi_n}, psi_p={psi_p}, "
                             f"m={m} (estimate {value:.6g} ± {err:.2g}); near an interpolation peak it "
                             "diverges")
        out[q] = (value, err)
    return Ridgeless(test=out["test"][0], train=out["train"][0], test_err=out["test"][1],
                     train_err=out["train"][1], lams=tuple(lams))


def _neville_at_zero(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Value at 0 of the interpolating polynomial through ``(x, y)`` and the change
    between the last two orders (an error estimate)."""
    p = list(y.astype(float))
    prev = p[-1]
    best = p[-1]
    for k in range(1, len(x)):
        p = [(x[i + k] * p[i] - x[i] * p[i + 1]) / (x[i + k] - x[i]) for i in range(len(p) - 1)]
        prev, best = best, p[-1]
    return float(best), float(abs(best - prev))
