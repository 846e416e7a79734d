"""Extrapolation of finite-``d`` Monte Carlo results to ``d -> inf``.

Finite-size corrections of averaged random-matrix quantities are ``O(1/d)``, so the
seed means ``y_d`` at several ``d`` are fitted by weighted least squares to
``y_d = c0 + c1 / d`` with weights ``1 / se_d^2``.  ``c0`` estimates the limit and
its standard error is read off the fit covariance.  When the fit is worse than its
error bars (reduced chi^2 > 1) the covariance is inflated by the reduced chi^2
(the Birge ratio), so a poor fit widens, never narrows, the uncertainty.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class LinearFit:
    """Fit ``y = c0 + c1 / d`` of one quantity."""

    c0: float
    c0_se: float
    c1: float
    c1_se: float
    chi2: float
    dof: int


@dataclass(frozen=True)
class Extrapolation:
    """``d -> inf`` estimates with the same attribute names as a simulation result."""

    d_values: tuple[int, ...]
    fits: dict[str, LinearFit]
    a_sq: float | None  # a_t^2, None when the inputs did not say which t they were at

    @property
    def test(self) -> float:
        return self.fits["test"].c0

    @property
    def test_se(self) -> float:
        return self.fits["test"].c0_se

    @property
    def train(self) -> float:
        return self.fits["train"].c0

    @property
    def train_se(self) -> float:
        return self.fits["train"].c0_se

    @property
    def dsm_test_loss(self) -> float:
        if self.a_sq is None:
            raise ValueError("the extrapolated results carry no diffusion time t")
        return self.test + self.a_sq

    @property
    def dsm_test_loss_se(self) -> float:
        return self.test_se


def fit_inverse_d(d: Sequence[float], y: Sequence[float], se: Sequence[float]) -> LinearFit:
    """Weighted least-squares fit of ``y = c0 + c1/d``; needs two distinct ``d`` and finite ``se > 0``."""
    d = np.asarray(d, dtype=float)
    y = np.asarray(y, dtype=float)
    se = np.asarray(se, dtype=float)
    if not (d.shape == y.shape == se.shape) or d.ndim != 1:
        raise ValueError("d, y and se must be 1-d sequences of equal length")
    if len(np.unique(d)) < 2:
        raise ValueError(f"extrapolation needs results at two or more distinct d, got {sorted(set(d.tolist()))}")
    if not np.all(np.isfinite(y)):
        raise ValueError("non-finite value among the results")
    if not np.all(np.isfinite(se) & (se > 0)):
        raise ValueError("every result needs a finite positive standard error (run two or more seeds)")
    A = np.column_stack([np.ones_like(d), 1.0 / d])
    w = 1.0 / se**2
    normal = A.T @ (w[:, None] * A)
    cov = np.linalg.inv(normal)
    coef = cov @ (A.T @ (w * y))
    resid = y - A @ coef
    chi2 = float(np.sum(w * resid**2))
    dof = len(d) - 2
    if dof > 0 and chi2 / dof > 1.0:
        cov = cov * (chi2 / dof)
    return LinearFit(c0=float(coef[0]), c0_se=float(math.sqrt(cov[0, 0])), c1=float(coef[1]),
                     c1_se=float(math.sqrt(cov[1, 1])), chi2=chi2, dof=dof)


def extrapolate(results_by_d: Mapping[int, object] | Sequence[object]) -> Extrapolation:
    """``d -> inf`` estimate from simulation results at several ``d``.

    ``results_by_d`` maps ``d`` to a result of :func:`validation.simulate` (or is a
    sequence of such results, whose ``.d`` is used).  All results must describe the
    same ``psi_n, psi_p, m, t, lam``, and a result's own ``d`` must equal its key
    (``ValueError`` otherwise: a result filed under the wrong ``d`` would bias the fit).  Returns an :class:`Extrapolation` with ``.test``,
    ``.train``, ``.dsm_test_loss`` (the fitted ``c0``), their ``*_se`` and the fits.

    Examples
    --------
    >>> from types import SimpleNamespace as R
    >>> rs = {d: R(test=0.3 + 2 / d, test_se=1e-3, train=0.1 - 1 / d, train_se=1e-3) for d in (50, 100, 200)}
    >>> e = extrapolate(rs)
    >>> round(e.test, 9), round(e.train, 9)
    (0.3, 0.1)
    >>> extrapolate({100: R(d=50, test=0.3, test_se=1e-3, train=0.1, train_se=1e-3), 200: rs[200]})
    Traceback (most recent call last):
    ...
    ValueError: the result under key d=100 was simulated at d=50
    """
    if isinstance(results_by_d, Mapping):
        items = []
        for k, v in results_by_d.items():
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
                raise ValueError(f"the keys of results_by_d are dimensions d (integers >= 1), got {k!r}")
            own = _own_d(v)
            if own is not None and own != int(k):
                raise ValueError(f"the result under key d={int(k)} was simulated at d={own}")
            items.append((int(k), v))
    else:
        items = []
        for r in results_by_d:
            own = _own_d(r)
            if own is None:
                raise ValueError("a sequence of results needs results that carry their d (.d); "
                                 "pass a mapping {d: result} otherwise")
            items.append((own, r))
        ds = [d for d, _ in items]
        if len(set(ds)) != len(ds):
            raise ValueError(f"two results at the same d: {sorted(ds)}")
    if not items:
        raise ValueError("no results to extrapolate")
    problems = {_signature(r) for _, r in items} - {None}
    if len(problems) > 1:
        raise ValueError(f"results describe different parameter points: {sorted(problems)}")
    items.sort(key=lambda kv: kv[0])
    ds = [k for k, _ in items]
    fits = {name: fit_inverse_d(ds, [getattr(r, name) for _, r in items],
                                [getattr(r, name + "_se") for _, r in items])
            for name in ("test", "train")}
    first = items[0][1]
    a_sq = first.problem.a ** 2 if hasattr(first, "problem") else None
    return Extrapolation(d_values=tuple(ds), fits=fits, a_sq=a_sq)


def _own_d(result) -> int | None:
    """The dimension a result was simulated at (``.problem.d`` or ``.d``), ``None`` if it does not say."""
    pr = getattr(result, "problem", None)
    d = getattr(pr, "d", None) if pr is not None else getattr(result, "d", None)
    return None if d is None else int(d)


def _signature(result):
    pr = getattr(result, "problem", None)
    if pr is None:
        return None
    return (pr.psi_n, pr.psi_p, pr.m, pr.t, pr.lam, getattr(result, "surrogate", None),
            getattr(result, "activation", None))
