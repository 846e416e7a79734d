"""Generalisation and memorisation times read off the training-time curves, and the
conversion between gradient-descent steps and flow time (see :mod:`derivations.training_time`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .curves import errors_at_time


def steps_to_time(steps, learning_rate, Delta, d, p):
    """Flow time ``T = 2 eta Delta k / (d p)`` reached by ``k`` steps of plain gradient
    descent on ``A`` with learning rate ``eta`` (module docstring).

    >>> float(steps_to_time(1000, 0.5, 0.5, 100, 200))
    0.025
    """
    return 2.0 * learning_rate * Delta * np.asarray(steps, dtype=float) / (d * p)


def time_to_steps(T, learning_rate, Delta, d, p):
    """Inverse of :func:`steps_to_time`."""
    return np.asarray(T, dtype=float) * d * p / (2.0 * learning_rate * Delta)


# -- timescales ---------------------------------------------------------------------------------

#: default grid of training times for the timescale helpers
DEFAULT_TIMES = np.logspace(-2, 5, 141)


@dataclass(frozen=True)
class Timescale:
    """A timescale per point (arrays of the broadcast shape of the inputs).

    ``time``: the timescale (``inf`` when never reached on the grid, NaN where not resolved);
    ``value``: the error there; ``interior``: the time lies strictly inside the grid;
    ``converged``: every error on the grid was resolved.
    """

    time: np.ndarray
    value: np.ndarray
    interior: np.ndarray
    converged: np.ndarray


def _curves(theory, psi_n, psi_p, t, lam, m, times, quantity, **kw):
    """``base, times, y, conv``: the error ``quantity`` along ``times`` for every broadcast
    point of the inputs (``y`` one row per point) and whether the whole row was resolved."""
    times = np.asarray(times, dtype=float)
    if times.ndim != 1 or len(times) < 3 or np.any(np.diff(times) <= 0) or times[0] <= 0:
        raise ValueError("times must be an increasing 1-D grid of at least 3 positive times")
    m_arr = np.asarray(m, dtype=object)
    base = np.broadcast_shapes(*(np.shape(x) for x in (psi_n, psi_p, t, lam)), m_arr.shape)
    ex = [np.broadcast_to(np.asarray(x, dtype=float), base)[..., None] for x in (psi_n, psi_p, t, lam)]
    m_b = np.broadcast_to(m_arr, base)[..., None]
    quantities = ("test", "train") if quantity == "test" else ("train",)
    e = errors_at_time(theory, *ex, m_b, times, quantities=quantities, **kw)
    y = getattr(e, quantity).reshape(-1, len(times))
    return base, times, y, e.converged.reshape(-1, len(times)).all(axis=1)


def _timescale(base, y, conv, locate) -> Timescale:
    """``locate(k, row) -> (time, value, interior)`` on every resolved row of ``y``; the
    rows with an unresolved error stay NaN."""
    out_t = np.full(len(y), np.nan)
    out_v = np.full(len(y), np.nan)
    interior = np.zeros(len(y), dtype=bool)
    for k in np.nonzero(conv)[0]:
        out_t[k], out_v[k], interior[k] = locate(k, y[k])
    return Timescale(out_t.reshape(base), out_v.reshape(base), interior.reshape(base), conv.reshape(base))


def generalisation_time(theory, psi_n, psi_p, t, lam, m, *, times=DEFAULT_TIMES, **kw) -> Timescale:
    """Training time of minimal test error (``argmin_T E_test(T)``), broadcast over the inputs.

    The minimum over the grid ``times`` is refined by the vertex of the parabola through it
    and its two neighbours in ``log T`` (``value`` is the grid minimum).  A minimum at the
    last grid time (test error still decreasing: early stopping does not help) gives
    ``time = inf`` and ``interior = False``; at the first grid time, that time and
    ``interior = False``.
    """
    base, times, y, conv = _curves(theory, psi_n, psi_p, t, lam, m, times, "test", **kw)
    lt = np.log(times)

    def locate(k, row):
        i = int(np.argmin(row))
        if i == len(times) - 1:
            return math.inf, row[i], False
        if i == 0:
            return times[0], row[i], False
        x0, x1, x2 = lt[i - 1:i + 2]
        f0, f1, f2 = row[i - 1:i + 2]
        den = (x0 - x1) * (x0 - x2) * (x1 - x2)
        A = (x2 * (f1 - f0) + x1 * (f0 - f2) + x0 * (f2 - f1)) / den
        Bc = (x2**2 * (f0 - f1) + x1**2 * (f2 - f0) + x0**2 * (f1 - f2)) / den
        xv = -Bc / (2 * A) if A > 0 else x1
        return math.exp(min(max(xv, x0), x2)), row[i], True

    return _timescale(base, y, conv, locate)


def memorisation_time(theory, psi_n, psi_p, t, lam, m, *, fraction: float = 0.5, times=DEFAULT_TIMES,
                      **kw) -> Timescale:
    """First training time at which ``E_train`` falls below ``fraction * a_t^2`` (the train
    error of the exact score is ``a_t^2``), interpolated linearly in ``log T`` between grid
    times; ``inf`` (``interior = False``) when it never does on the grid.  Needs the train
    error only (one resolvent), so it is cheap.
    """
    if not (0 < fraction < 1):
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    base, times, y, conv = _curves(theory, psi_n, psi_p, t, lam, m, times, "train", **kw)
    level = fraction * np.exp(-2.0 * np.broadcast_to(np.asarray(t, dtype=float), base).reshape(-1))
    lt = np.log(times)

    def locate(k, row):
        below = np.nonzero(row < level[k])[0]
        if not len(below):
            return math.inf, math.nan, False
        i = int(below[0])
        if i == 0:
            return times[0], level[k], False
        f0, f1 = row[i - 1] - level[k], row[i] - level[k]
        return math.exp(lt[i - 1] + (lt[i] - lt[i - 1]) * f0 / (f0 - f1)), level[k], True

    return _timescale(base, y, conv, locate)
