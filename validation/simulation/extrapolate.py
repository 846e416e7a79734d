"""Extrapolation of finite-``d`` Monte Carlo results to ``d -> inf``.

Finite-size corrections of averaged random-matrix quantities are ``O(1/d)``, so the
seed means ``y_d`` at several ``d`` are fitted by weighted least squares to
``y_d = c0 + c1 / d`` with weights ``1 / se_d^2``.  ``c0`` estimates the limit and
its standard error is read off the fit covariance.  When the fit is worse than its
error bars (reduced chi^2 > 1) the covariance is inflated by the reduced chi^2
(the Birge ratio), so a poor fit widens, never narrows, the uncertainty.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from numerics.extrapolate import LinearFit, fit_inverse_d


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


def extrapolate(results_by_d: Mapping[int, object] | Sequence[object]) -> Extrapolation:
    """``d -> inf`` estimate from simulation results at several ``d``.

    ``results_by_d`` maps ``d`` to a result of :func:`validation.simulate` (or is a
    sequence of such results, whose ``.d`` is used).  The results must be one model at
    different ``d`` (:func:`_check_same_model`: the same ``psi_n, psi_p, m, t, lam``, activation,
    surrogate, training time and data covariance), and a result's own ``d`` must equal its key
    (``ValueError`` naming what differs otherwise: mixing models or filing a result under the
    wrong ``d`` would bias the fit silently).  Returns an :class:`Extrapolation` with ``.test``,
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
        if isinstance(results_by_d, (str, bytes)) or not isinstance(results_by_d, Iterable):
            raise TypeError("results_by_d must be a mapping {d: result} or a sequence of results of "
                            f"validation.simulate, got {type(results_by_d).__name__}")
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
    items.sort(key=lambda kv: kv[0])
    _check_same_model(items)
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


#: what one model keeps at every ``d``: attributes of ``result.problem``, then of ``result``
MODEL_PARAMETERS = ("psi_n", "psi_p", "m", "t", "lam")
RUN_PARAMETERS = ("activation", "surrogate", "train_time")


def spectrum_tolerance(d_min: int) -> float:
    """Largest Lévy distance between the spectra of runs of one model (:func:`levy_distance`).

    The same spectral measure read at two dimensions by quantiles, bin means or rounded
    weights (:mod:`validation.simulation.spectra`) is within ``1/d_min``; one or two spikes of
    weight ``1/d`` (MODEL.md "Spiked covariance") within ``2/d_min``; ``0.01`` absorbs
    round-off and normalisation.  Distinct spectra of the structured table are ``>= 0.2`` apart.
    """
    return 0.01 + 2.0 / d_min


def levy_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Lévy distance between the empirical distributions of the values ``a`` and ``b``.

    The smallest ``eps`` with ``F_a(x - eps) - eps <= F_b(x) <= F_a(x + eps) + eps`` for all
    ``x``: a shift of ``eps`` in value and in mass at once, so a spectrum read at two ``d``
    (weights ``1/d``) or normalised with round-off is close, while moving mass is not.
    Found by bisection (to ``1e-9``); the suprema are attained at the jump points.

    >>> levy_distance(np.ones(10), np.ones(20)), levy_distance(np.zeros(4), np.full(4, 0.5))
    (0.0, 0.5)
    """
    a, b = np.sort(np.asarray(a, dtype=float)), np.sort(np.asarray(b, dtype=float))

    def ok(eps):
        def one_side(u, v):  # F_u(x - eps) - eps <= F_v(x) at x = u_i + eps
            Fu = np.arange(1, len(u) + 1) / len(u)
            Fv = np.searchsorted(v, u + eps, side="right") / len(v)
            return bool(np.all(Fu - eps <= Fv + 1e-12))
        return one_side(a, b) and one_side(b, a)

    lo, hi = 0.0, 1.0
    if ok(0.0):
        return 0.0
    while hi - lo > 1e-9:
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return round(hi, 8)


def _check_same_model(items) -> None:
    """``ValueError`` naming the first parameter on which the runs ``(d, result)`` differ.

    Compared exactly: ``psi_n, psi_p, m, t, lam`` (of ``result.problem``), the activation,
    ``surrogate`` and ``train_time``.  The covariance: the spectra, in one unit (the mean of
    the two ``tau``), must be within :func:`spectrum_tolerance` in Lévy distance (not equal: a
    model at another ``d`` has other eigenvalues); without recorded spectra, ``tau`` and
    isotropy must agree.  Results that carry
    no ``problem`` (plain records of means and errors) are not compared.
    """
    runs = [(d, r) for d, r in items if getattr(r, "problem", None) is not None]
    if len(runs) < 2:
        return
    (d0, r0), rest = runs[0], runs[1:]

    def differs(name, a, b, d):
        return ValueError(f"results describe different parameter points (not one model at different d): "
                          f"{name} is {a!r} at d={d0} but {b!r} at d={d}")

    for d, r in rest:
        for name in MODEL_PARAMETERS:
            a, b = getattr(r0.problem, name, None), getattr(r.problem, name, None)
            if a != b:
                raise differs(name, a, b, d)
        for name in RUN_PARAMETERS:
            a, b = getattr(r0, name, None), getattr(r, name, None)
            if a != b:
                raise differs(name, a, b, d)
        e0, e = getattr(r0, "eigenvalues", None), getattr(r, "eigenvalues", None)
        tau0, tau = getattr(r0, "tau", 1.0), getattr(r, "tau", 1.0)
        if e0 is not None and e is not None:
            tol = spectrum_tolerance(min(d0, d))
            unit = 0.5 * (tau0 + tau)  # one unit for both: a rescaled spectrum is another model
            gap = levy_distance(e0 / unit, e / unit)
            if gap > tol:
                raise ValueError(f"results describe different parameter points (not one model at different d): "
                                 f"the covariance spectra at "
                                 f"d={d0} and d={d} differ (Lévy distance {gap:.3g} of the eigenvalues in units "
                                 f"of tau, more than {tol:.3g})")
        elif (getattr(r0, "isotropic", True), tau0) != (getattr(r, "isotropic", True), tau):
            raise differs("the covariance (isotropic, tau)", (getattr(r0, "isotropic", True), tau0),
                          (getattr(r, "isotropic", True), tau), d)
