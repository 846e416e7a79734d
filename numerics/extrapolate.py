"""Extrapolation of finite-``d`` averages to ``d -> inf``: the fit ``y_d = c0 + c1 / d``.

Finite-size corrections of averaged random-matrix quantities (normalised traces and the
learning curves made of them) are ``O(1/d)``, so the seed means ``y_d`` at several ``d``
are fitted by weighted least squares with weights ``1 / se_d^2``.  ``c0`` estimates the
limit and its standard error is read off the fit covariance.  When the fit is worse than
its error bars (reduced chi^2 > 1) the covariance is inflated by the reduced chi^2 (the
Birge ratio), so a poor fit widens, never narrows, the uncertainty.

Used by the Monte Carlo of the DSM model (:mod:`validation.simulation.extrapolate`) and of
any derived model (:meth:`derivations.derived.DerivedModel.simulate`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["LinearFit", "fit_inverse_d"]


@dataclass(frozen=True)
class LinearFit:
    """Fit ``y = c0 + c1 / d`` of one quantity."""

    c0: float
    c0_se: float
    c1: float
    c1_se: float
    chi2: float
    dof: int



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
