"""Interpolation peaks of the test error along ``psi_p`` and the ridgeless limit ``lam -> 0+``.

With ``N = n m`` training rows, the ridge problem becomes singular where the number of
features crosses a rank of the feature matrix; for ``m = 1`` that is ``p = n``, for finite
``m > 1`` the test error can peak more than once (near ``p = n``, where the ``n`` signal
directions are interpolated, and near ``p = n m``, where all rows are).  :func:`find_peaks`
scans ``E_test`` on a log grid of ``psi_p``, brackets every local maximum and refines it
with a bounded scalar maximisation, and reports every stretch of the scan the precision
ladder could not resolve; :func:`peak_heights` follows the peaks as ``lam -> 0``;
:func:`ridgeless` extrapolates both errors to ``lam = 0`` (Neville's polynomial
extrapolation in ``lam``, with an error estimate it checks).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import scipy.optimize

from numerics._errors import ConvergenceError

from .model import parse_m, real_array

__all__ = ["Peak", "find_peaks", "peak_heights", "Ridgeless", "ridgeless"]


@dataclass(frozen=True)
class Peak:
    """A local maximum of ``E_test`` along ``psi_p``.

    ``resolved=False``: a stretch of the scan where the errors could not be resolved (the
    ladder's budget ran out, typically at a peak with a tiny ``lam``); a peak may hide in
    ``bracket`` (the ``psi_p`` interval between the resolved neighbours), ``psi_p`` is its
    geometric middle and ``height`` the largest resolved value next to it (a lower bound of
    the peak if one is there)."""

    psi_p: float
    height: float
    lam: float
    resolved: bool = True
    bracket: tuple | None = None


def _test_error(theory, psi_n, psi_p, t, lam, m, refine: bool = True):
    e = theory.errors(psi_n=psi_n, psi_p=psi_p, t=t, lam=lam, m=m, throw=False, refine=refine)
    return np.where(e.converged, e.test, np.nan)


def _scalar(name: str, x, allow_zero: bool = False) -> float:
    arr = real_array(name, x, allow_zero=allow_zero)
    if arr.ndim:
        raise ValueError(f"{name} must be a single number, got shape {arr.shape}")
    return float(arr)


def _whole(name: str, x, least: int) -> int:
    if isinstance(x, bool) or not isinstance(x, numbers.Integral) or x < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {x!r}")
    return int(x)


def find_peaks(theory, psi_n: float, t: float, m, lam: float, psi_p_range=None, points: int = 240,
               xtol: float = 1e-9, resolve: int = 24) -> list[Peak]:
    """Every local maximum of ``E_test(psi_p)`` in ``psi_p_range`` (log grid of ``points >= 3``).

    ``psi_p_range`` defaults to ``[psi_n / 20, 4 psi_n m]`` (``[psi_n/20, 20 psi_n]`` for
    ``m = inf``).  Each bracketed maximum is refined to relative precision ``xtol`` (in
    ``(0, 0.1]``) in ``psi_p``.  Grid points the precision ladder leaves unresolved (NaN) are
    never skipped silently: each run of them is returned as a :class:`Peak` with
    ``resolved=False`` and its ``bracket``; so is a maximum whose refinement hit unresolved
    points.  Bounded work: the grid is solved in double precision with the rounding check
    (``refine=False``); of each run of points it leaves unresolved, at most ``resolve``
    (spread evenly over the run) go up the rest of the precision ladder (double-double,
    mpmath; each bounded by :data:`derivations.ladder.CONTINUATION_STEPS`), the rest stay
    unresolved; then one bounded maximisation per peak.
    """
    m = parse_m(m)
    psi_n, t, lam = _scalar("psi_n", psi_n), _scalar("t", t), _scalar("lam", lam)
    points = _whole("points", points, 3)
    resolve = _whole("resolve", resolve, 0)
    xtol = _scalar("xtol", xtol)
    if xtol > 0.1:
        raise ValueError(f"xtol is a relative precision in psi_p, in (0, 0.1], got {xtol!r}")
    if psi_p_range is None:
        top = 20 * psi_n if math.isinf(m) else 4 * psi_n * m
        psi_p_range = (psi_n / 20, top)
    if isinstance(psi_p_range, (str, bytes)) or np.ndim(psi_p_range) != 1 or len(psi_p_range) != 2:
        raise ValueError(f"psi_p_range must be a pair (lo, hi), got {psi_p_range!r}")
    lo, hi = (_scalar("psi_p_range", v) for v in psi_p_range)
    if not lo < hi:
        raise ValueError(f"psi_p_range must satisfy 0 < lo < hi, got {psi_p_range}")
    grid = np.geomspace(lo, hi, points)
    y = _resolved_scan(theory, psi_n, grid, t, lam, m, resolve)
    peaks = []
    seen = np.flatnonzero(~np.isinf(y))  # the points evaluated (inf: skipped by the budget)
    x, v = grid[seen], y[seen]
    i = 0
    while i < len(v):  # each run of points left unresolved, between its resolved neighbours
        if np.isfinite(v[i]):
            i += 1
            continue
        j = i
        while j + 1 < len(v) and not np.isfinite(v[j + 1]):
            j += 1
        a, b = x[max(i - 1, 0)], x[min(j + 1, len(v) - 1)]
        near = [v[k] for k in (i - 1, j + 1) if 0 <= k < len(v) and np.isfinite(v[k])]
        peaks.append(Peak(psi_p=math.sqrt(a) * math.sqrt(b), height=max(near) if near else math.nan, lam=lam,
                          resolved=False, bracket=(float(a), float(b))))
        i = j + 1
    for i in range(1, len(v) - 1):
        if np.isfinite(v[i - 1:i + 2]).all() and v[i] > v[i - 1] and v[i] >= v[i + 1]:
            f = lambda u: -float(_test_error(theory, psi_n, math.exp(u), t, lam, m))  # noqa: E731
            res = scipy.optimize.minimize_scalar(f, bounds=(math.log(x[i - 1]), math.log(x[i + 1])),
                                                 method="bounded", options=dict(xatol=xtol))
            if np.isfinite(res.fun) and -res.fun >= v[i]:
                peaks.append(Peak(psi_p=math.exp(res.x), height=-res.fun, lam=lam))
            else:  # the maximiser met unresolved points (NaN misleads it: it once returned a point
                # below the grid's own maximum, 9.8 < 12.4): keep the grid's bracket, flagged
                peaks.append(Peak(psi_p=float(x[i]), height=float(v[i]), lam=lam, resolved=False,
                                  bracket=(float(x[i - 1]), float(x[i + 1]))))
    return sorted(peaks, key=lambda pk: pk.psi_p)


def _resolved_scan(theory, psi_n, grid, t, lam, m, resolve: int) -> np.ndarray:
    """``E_test`` on ``grid``: double and double-double everywhere, the mpmath rung on at most
    ``resolve`` points of each run left unresolved; NaN where unresolved, ``inf`` where not
    evaluated (the budget)."""
    y = _test_error(theory, psi_n, grid, t, lam, m, refine="dd")
    bad = np.flatnonzero(np.isnan(y))
    runs = np.split(bad, np.flatnonzero(np.diff(bad) > 1) + 1) if len(bad) else []
    for run in runs:
        if not resolve:  # no budget: the run stays unresolved (reported)
            continue
        keep = run[np.unique(np.linspace(0, len(run) - 1, resolve).round().astype(int))]
        y[np.setdiff1d(run, keep)] = np.inf  # covered by the resolved samples around them
        y[keep] = _test_error(theory, psi_n, grid[keep], t, lam, m)
    return y


def peak_heights(theory, psi_n: float, t: float, m, lams, **kw) -> dict[float, list[Peak]]:
    """:func:`find_peaks` at each ``lam`` of ``lams`` (e.g. decreasing to 0)."""
    return {float(lam): find_peaks(theory, psi_n, t, m, lam, **kw) for lam in lams}


@dataclass(frozen=True)
class Ridgeless:
    """``lam -> 0+`` limits with error bounds (:func:`ridgeless`): ``|test - E_test(0+)| <=
    test_err`` (likewise ``train``) where the expansion in ``lam`` holds on ``lams``."""

    test: float
    train: float
    test_err: float
    train_err: float
    lams: tuple


def ridgeless(theory, psi_n: float, psi_p: float, t: float, m, lam0: float = 1e-2, levels: int = 7,
              ratio: float = 0.5, rtol: float = 1e-3, atol: float = 1e-6) -> Ridgeless:
    r"""The limits ``lam -> 0+`` of ``E_test`` and ``E_train`` with error bounds.

    Away from an interpolation peak both errors are analytic in ``lam`` at 0,
    ``E(lam) = E_0 + E_1 lam + E_2 lam^2 + ...``, for ``|lam|`` below the distance ``R`` to
    the nearest singularity (the lower edge of the spectrum of ``Phi^T Phi / (n m)`` mirrored
    to ``-lam``; small near ``p = n`` and ``p = n m``).  From ``lam_k = lam0 ratio^k``
    (``k < levels``) Neville's tableau gives ``T[i][j]``, the value at 0 of the polynomial of
    degree ``j`` through ``lam_{i-j} .. lam_i``; its error is ``~ E_{j+1} lam_{i-j} ... lam_i``.

    Error bound of the estimate ``T[L-1][j]`` (``L = levels``): the larger of the change of
    order, ``|T[L-1][j] - T[L-1][j-1]|``, and the change of subsequence,
    ``|T[L-1][j] - T[L-2][j]|`` (the same degree one point further from 0), plus the input
    errors carried through the extrapolation, ``sum_k |w_k| delta_k`` (``w_k`` the Lagrange
    weights at 0, ``delta_k`` each value's rounding estimate, at least 4 ulps).  In the
    asymptotic regime (``lam0 << R``) each neighbour is worse than the estimate by a factor
    ``~ratio^-1``, so either difference bounds its error; outside it (``lam0 >~ R``) the two
    differences disagree with each other and grow.  The degree ``j`` with the smallest bound
    is returned; it must be ``<= rtol |value| + atol`` (both errors live on the scale 1, and the
    train error's limit is 0 where the rows are interpolated) or ``ValueError`` is raised, saying
    whether the values grow as ``lam -> 0`` (the limit diverges: an interpolation peak) or
    the sequence has not reached its asymptotic regime (lower ``lam0``).

    ``levels >= 3``, ``0 < ratio < 1``, ``lam0 > 0``.  :class:`ConvergenceError` when the
    errors at some ``lam_k`` are unresolved.
    """
    m = parse_m(m)
    psi_n, psi_p, t = _scalar("psi_n", psi_n), _scalar("psi_p", psi_p), _scalar("t", t)
    lam0, ratio, rtol = _scalar("lam0", lam0), _scalar("ratio", ratio), _scalar("rtol", rtol)
    atol = _scalar("atol", atol, allow_zero=True)
    levels = _whole("levels", levels, 3)
    if not ratio < 1:
        raise ValueError(f"ratio must be in (0, 1) (lam_k = lam0 ratio^k decreases to 0), got {ratio!r}")
    lams = lam0 * ratio ** np.arange(levels)
    e = theory.errors(psi_n=psi_n, psi_p=psi_p, t=t, lam=lams, m=m, throw=False)
    if not e.converged.all():
        raise ConvergenceError(f"ridgeless: the errors at lam={lams[~e.converged].tolist()} are unresolved "
                               f"(psi_n={psi_n}, psi_p={psi_p}, m={m}); a larger lam0 may help", e)
    out = {}
    for q in ("test", "train"):
        y = np.asarray(getattr(e, q), dtype=float)
        delta = np.maximum(np.asarray(e.rounding_error, dtype=float), 4 * np.finfo(float).eps * np.abs(y))
        value, err = _extrapolate(lams, y, delta)
        if not (np.isfinite(value) and err <= rtol * abs(value) + atol):
            grows = np.all(np.diff(np.abs(y)) > 0) and abs(y[-1]) > 1.5 * abs(y[0])
            why = (f"|E_{q}| grows from {abs(y[0]):.4g} to {abs(y[-1]):.4g} as lam falls from {lams[0]:.3g} to "
                   f"{lams[-1]:.3g}: the limit diverges (an interpolation peak, p = n or p = n m)" if grows else
                   f"the extrapolation from lam0={lam0:.3g} (ratio {ratio}, {levels} levels) has not reached "
                   "the regime where the expansion in lam holds: lower lam0 (the radius of convergence shrinks "
                   "near p = n and p = n m) or add levels")
            raise ValueError(f"the ridgeless limit of E_{q} does not settle at psi_n={psi_n}, psi_p={psi_p}, "
                             f"m={m} (estimate {value:.6g} ± {err:.2g}, above rtol={rtol:g}, atol={atol:g}): {why}")
        out[q] = (value, err)
    return Ridgeless(test=out["test"][0], train=out["train"][0], test_err=out["test"][1],
                     train_err=out["train"][1], lams=tuple(lams))


def _extrapolate(x: np.ndarray, y: np.ndarray, delta: np.ndarray) -> tuple[float, float]:
    """The value at 0 and its error bound (:func:`ridgeless`): Neville's tableau at 0,
    ``T[i][j] = (x_i T[i-1][j-1] - x_{i-j} T[i][j-1]) / (x_i - x_{i-j})``, and the weights
    ``W[i][j]`` (same recurrence, on unit vectors) that carry the input errors ``delta``."""
    L = len(x)
    T = [[float(v)] for v in y]
    W = [[np.eye(L)[i]] for i in range(L)]
    for i in range(1, L):
        for j in range(1, i + 1):
            a, b = x[i], x[i - j]
            T[i].append((a * T[i - 1][j - 1] - b * T[i][j - 1]) / (a - b))
            W[i].append((a * W[i - 1][j - 1] - b * W[i][j - 1]) / (a - b))
    best = (math.nan, math.inf)
    for j in range(1, L - 1):
        v = T[L - 1][j]
        err = max(abs(v - T[L - 1][j - 1]), abs(v - T[L - 2][j])) + float(np.abs(W[L - 1][j]) @ delta)
        if err < best[1]:
            best = (v, err)
    return best
