"""Three classic problems derived by the engine (expression -> pencil -> fixed point ->
compiled solver), with their public, numpy-broadcast APIs.

Engine convention (see :mod:`pencils.expr`): Gaussians have ``N(0, v/d)`` entries, so
a data matrix ``X`` with ``N(0, 1)`` entries is ``sqrt(d) X_e``.

* :func:`marchenko_pastur_stieltjes`: ``(1/d) tr (XᵀX/n - z)^{-1} = (1/d) tr (gamma
  X_eᵀX_e - z)^{-1}`` with ``n = d/gamma``; the engine reduces it to a 2-block pencil.
* :func:`ridge_risk`: ``beta_hat - beta = -lam R beta + R Xᵀ eps / n`` with ``R =
  (XᵀX/n + lam)^{-1}``; averaging over isotropic ``beta`` (``E beta betaᵀ = r2/d I``)
  and the noise gives ``r2 lam^2 (1/d) tr R^2 + sigma2 gamma (1/d) tr(R S R)``,
  ``S = XᵀX/n = gamma X_eᵀX_e``.
* :func:`random_features_risk`: Gaussian-equivalent features ``Phi = mu1 X Wᵀ/sqrt(d)
  + mu_* Xi`` (``n x p``; ``X``, ``W``, ``Xi`` with ``N(0,1)`` entries), teacher ``y =
  X beta + eps``, ridge ``a = (PhiᵀPhi/n + lam)^{-1} Phiᵀ y / n``, test error
  ``E_x (xᵀbeta - phi(x)ᵀ a)^2`` (no fresh noise) with ``E[x phiᵀ] = mu1 Wᵀ/sqrt(d)``,
  ``E[phi phiᵀ] = Sigma = mu1^2 W Wᵀ/d + mu_*^2 I``.  Averaging over ``beta`` and
  ``eps`` and rotating the traces into the feature space:

      E = r2 + (1/d) tr( P [ -2 r2 mu1/psi_n F_eᵀ X_e W_eᵀ
                              + Sigma_e P F_eᵀ (r2 X_e X_eᵀ + sigma2) F_e / psi_n^2 ] ),

  ``F_e = mu1 X_e W_eᵀ + mu_* Xi_e``, ``P = (F_eᵀF_e/psi_n + lam)^{-1}``, ``Sigma_e =
  mu1^2 W_e W_eᵀ + mu_*^2``.  Relation to Mei and Montanari (2019): ``psi_1 = psi_p``,
  ``psi_2 = psi_n``, ``lam_MM = lam / psi_p`` (their penalty is ``(N lam/d)|a|^2``),
  ``F_1^2 = r2``, ``tau^2 = sigma2``, ``F_*^2 = 0`` (the constant ``mu0`` is dropped:
  a rank-one term that does not change the limit); their sphere-uniform inputs and
  weights are replaced by Gaussians, which has the same limit.

Each problem is a derived model (:func:`derivations.derived.derive`, :func:`model`): cached
on disk, compiled once per process, and solved with the precision ladder (rounding checks
on, refinement where double precision cannot resolve a point). :func:`system` and
:func:`solver` are the raw fixed-point system and its solver, the reference the tests
compare with.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import sympy

from numerics import Solver, compile as compile_system
from pencils.expr import D, Space, Trace, gaussian, inverse, trace
from pencils.freeprob import FixedPointSystem, equations

from .derived import DerivedModel, derive
from .model import complex_array, real_array

__all__ = ["mp_trace", "ridge_trace", "random_features_trace", "model", "system", "solver",
           "marchenko_pastur_stieltjes", "ridge_risk", "random_features_risk"]

gamma_, z_ = sympy.Symbol("gamma", positive=True), sympy.Symbol("z")
lam_ = sympy.Symbol("lam", positive=True)
r2_, sigma2_ = sympy.Symbol("r2", nonnegative=True), sympy.Symbol("sigma2", nonnegative=True)
psi_p_, psi_n_ = sympy.Symbol("psi_p", positive=True), sympy.Symbol("psi_n", positive=True)
mu1_, mustar_ = sympy.Symbol("mu1", real=True), sympy.Symbol("mustar", positive=True)


def mp_trace() -> Trace:
    """``(1/d) tr (gamma X_eᵀX_e - z)^{-1}``, ``X_e`` of size ``(d/gamma) x d``."""
    X = gaussian("X", Space("n", 1 / gamma_), D)
    return trace(inverse(gamma_ * X.T @ X - z_))


def ridge_trace() -> Trace:
    """``E|beta_hat - beta|^2`` as a normalised trace (see module docstring)."""
    X = gaussian("X", Space("n", 1 / gamma_), D)
    S = gamma_ * X.T @ X
    R = inverse(S + lam_)
    return trace(r2_ * lam_ ** 2 * R @ R + sigma2_ * gamma_ * R @ S @ R)


def random_features_trace() -> Trace:
    """Random-features test error as a normalised trace (see module docstring)."""
    n, p = Space("n", psi_n_), Space("p", psi_p_)
    X, W, Xi = gaussian("X", n, D), gaussian("W", p, D), gaussian("Xi", n, p)
    F = mu1_ * X @ W.T + mustar_ * Xi
    P = inverse(F.T @ F / psi_n_ + lam_)
    Sigma = mu1_ ** 2 * W @ W.T + mustar_ ** 2
    K = r2_ * X @ X.T + sigma2_
    inner = -2 * r2_ * mu1_ / psi_n_ * F.T @ X @ W.T + Sigma @ P @ F.T @ K @ F / psi_n_ ** 2
    return r2_ + trace(P @ inner)


_TRACES = {"marchenko_pastur": mp_trace, "ridge": ridge_trace, "random_features": random_features_trace}


#: The continuation parameter of each problem (the Stieltjes transform has none: ``z`` is complex).
_CONTINUATION = {"marchenko_pastur": None, "ridge": "lam", "random_features": "lam"}


@lru_cache(maxsize=None)
def model(name: str) -> DerivedModel:
    """The derived model of a named classic problem (one per process)."""
    if name not in _TRACES:
        raise ValueError(f"unknown problem {name!r}; known: {sorted(_TRACES)}")
    return derive(_TRACES[name](), continuation=_CONTINUATION[name])


@lru_cache(maxsize=None)
def system(name: str) -> FixedPointSystem:
    """The (disk-cached) fixed-point system of a named classic problem."""
    if name not in _TRACES:
        raise ValueError(f"unknown problem {name!r}; known: {sorted(_TRACES)}")
    return equations(_TRACES[name]())


@lru_cache(maxsize=None)
def solver(name: str) -> Solver:
    """The raw compiled solver of a named classic problem (the reference; the public functions
    use :func:`model`)."""
    return compile_system(system(name))


#: The largest ridge of :func:`ridge_risk`: ``lam^2`` (a coefficient of the trace) stays a double.
_LAM_MAX = 1e150


def _out(v: np.ndarray):
    return v[()] if v.ndim == 0 else v


def marchenko_pastur_stieltjes(gamma, z, **solve_options):
    """``lim (1/d) tr (XᵀX/n - z)^{-1}``, ``X`` of size ``n x d`` with i.i.d. ``N(0,1)``
    entries, ``gamma = d/n``; numpy-broadcast over ``gamma`` and ``z``.

    ``z`` is complex off the support, or real outside ``[a, b] = [(1 - sqrt(gamma))^2,
    (1 + sqrt(gamma))^2]`` (and ``z != 0`` when ``gamma >= 1``, where ``0`` is an atom);
    a real ``z`` on the support raises ``ValueError``.  The result is complex when ``z``
    is, real otherwise.

    >>> from derivations.closed_forms import mp_stieltjes_closed
    >>> s = marchenko_pastur_stieltjes(0.5, [-1.0, 1 + 1j])
    >>> bool(abs(s - mp_stieltjes_closed(0.5, [-1.0, 1 + 1j])).max() < 1e-12)
    True
    """
    g = real_array("gamma", gamma)
    zz = complex_array("z", z)
    g, zz = np.broadcast_arrays(g, zz)
    a, b = (1 - np.sqrt(g)) ** 2, (1 + np.sqrt(g)) ** 2
    real = np.imag(zz) == 0
    zr = np.real(zz)
    on = real & (((zr >= a) & (zr <= b)) | ((zr == 0) & (g >= 1)))
    if np.any(on):
        k = tuple(np.argwhere(on)[0])
        raise ValueError(f"z = {zz[k]} is on the support [{a[k]:.6g}, {b[k]:.6g}] of the "
                         f"Marchenko-Pastur law (gamma = {g[k]:.6g}): the Stieltjes transform "
                         "is singular there; use a complex z")
    return _out(model("marchenko_pastur").solve(gamma=g, z=zz, **solve_options).value)


def ridge_risk(gamma, lam, r2, sigma2, **solve_options):
    """``lim E|beta_hat - beta|^2`` for ridge regression ``beta_hat = (XᵀX/n + lam)^{-1}
    Xᵀy/n`` with rows of ``X`` i.i.d. ``N(0, I_d)``, ``y = X beta + eps``,
    ``|beta|^2 = r2`` (isotropic), ``Var eps = sigma2``, ``gamma = d/n``, ``0 < lam <= 1e150``
    (``lam^2`` must stay a double; the risk is ``r2 (1 - 2/lam + O(lam^-2))`` beyond).

    >>> from derivations.closed_forms import ridge_risk_closed
    >>> bool(abs(ridge_risk(0.5, 1.0, 1.0, 0.5) - ridge_risk_closed(0.5, 1.0, 1.0, 0.5)) < 1e-12)
    True
    """
    g, l = real_array("gamma", gamma), real_array("lam", lam)
    r, s = real_array("r2", r2, allow_zero=True), real_array("sigma2", sigma2, allow_zero=True)
    if np.any(l > _LAM_MAX):
        raise ValueError(f"lam must be a real number in (0, {_LAM_MAX:.3g}], got {float(l.max())!r}: the "
                         "risk carries lam^2, which overflows a double beyond; it tends to r2 as lam -> inf")
    return _out(model("ridge").solve(gamma=g, lam=l, r2=r, sigma2=s, **solve_options).value)


def random_features_risk(psi_p, psi_n, lam, mu1, mustar, r2=1.0, sigma2=0.0, **solve_options):
    """Random-features ridge test error (excess risk, no fresh noise), see module docstring.

    ``psi_p = p/d``, ``psi_n = n/d``, ``lam > 0``, ``mu1`` real, ``mustar > 0``, ``r2 = |beta|^2``,
    ``sigma2`` label-noise variance.
    """
    pp, pn = real_array("psi_p", psi_p), real_array("psi_n", psi_n)
    l, ms = real_array("lam", lam), real_array("mustar", mustar)
    m1 = real_array("mu1", mu1, allow_negative=True)
    r, s = real_array("r2", r2, allow_zero=True), real_array("sigma2", sigma2, allow_zero=True)
    return _out(model("random_features").solve(psi_p=pp, psi_n=pn, lam=l, mu1=m1, mustar=ms, r2=r, sigma2=s,
                                               **solve_options).value)
