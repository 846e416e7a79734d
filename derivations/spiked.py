"""Spiked covariance, one spike, ``m = 1``: the conditional Gaussian-equivalent model as a block
pencil on quadrature atoms (an experiment of issue 17; see ``docs/spiked.md``).

**Model** (MODEL.md "Spiked covariance"; ``shared/notes/spiked-route.md``).  With one spike
``kappa d``, the pre-activation of feature ``i`` on sample ``mu`` is ``h = s + (h - s)`` with
``s = a sqrt(kappa) omega_i c_mu`` (``omega_i, c_mu ~ N(0, 1)``) and ``h - s`` the bulk part of
variance ``v_b = a^2 tau_b + Delta``.  Conditioned on ``s`` the features are Gaussian-equivalent:

    phi = mu0(s) + mu1(s) (h - s) + mu_*(s) xi        (m = 1: mu_s, mu_f combine into mu_*).

**Discretisation.**  ``omega`` on ``Q`` Gauss--Hermite atoms ``omega_a`` (weights ``w_a``: the
features split into groups ``p_a`` of ratio ``psi_p w_a``), ``c`` on ``Q`` atoms ``c_b`` (samples
split into ``n_b``, ratio ``psi_n v_b``).  On the block ``(n_b, p_a)`` the coefficients are the
numbers ``mu1_ab = mu1(a sqrt(kappa) omega_a c_b)`` and ``mu*_ab``, and the feature matrix is the
block matrix (:func:`pencils.blocks.block`)

    F_ba = mu1_ab (a X_b Sigma_b^{1/2} + sqrt(Delta) Z_b) W_a^T + mu*_ab Xi_ba.

The mean part ``mu0(s)`` -- block constant, of rank ``<= Q`` -- is left out: a finite-rank
perturbation drops out of the normalised traces as ``d -> inf`` (measured on the conditional
surrogate: removing it changes the test error by ``-3.2 %``, ``-1.9 %``, ``-0.85 %`` at
``d = 100, 200, 400`` -- an ``O(1/d)`` finite-size effect, ``docs/spiked.md``).

**Test error.**  A fresh sample has its own spike coordinate ``c``; averaging over it with the
same atoms gives ``U_aa' = G_aa' W_a S_t W_a'^T + delta_aa' M_a``, ``G_aa' = sum_b v_b mu1_ab mu1_a'b``,
``M_a = sum_b v_b mu*_ab^2`` and ``V_a = (sum_b v_b mu1_ab) W_a``; the constant
``Delta E_nu_b[1/(a^2 s + Delta)]`` is that of the bulk (the spike's share of ``tr S_t^{-1}/d``
is ``O(1/d)``).

``Q = 1`` (coefficients at ``s = 0``) is the structured-data model of the bulk (checked to
``1e-13``).  The pencil grows like ``Q^2`` (train: 35, 118, 249, 428 blocks at ``Q = 1..4``), and
:func:`pencils.reduce.reduce_systems` refuses ``Q >= 2`` (a diagonal core of 16 blocks, above its
symbolic limit).  :func:`conditional_errors` therefore derives one parameter point with numeric
coefficients and solves the raw system (:mod:`numerics.fixedpoint`): about 10 s at ``Q = 2``,
100 s at ``Q = 3``, several minutes at ``Q = 4`` -- a check of the route, not a curve.  At the
S1 point of ``docs/spiked.md`` it converges to the Monte Carlo's ``d -> inf`` limit (``Q = 4``:
test error within 0.2 %, train error within 1 %).  ``docs/spiked.md`` describes the engine
extension (separable profiles on the ``n``- and ``p``-spaces) that would make ``Q`` free.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import sympy

from pencils.blocks import block, vstack
from pencils.cache import cached
from pencils.expr import S_NU, D, Space, SpectralMean, gaussian, inverse, spectral, trace
from pencils.freeprob import equations

from .dsm import Delta_, a_, lam, psi_n, psi_p

__all__ = ["block_params", "block_system", "block_traces", "conditional_errors"]


def _names(Q: int) -> dict:
    """The per-atom parameter symbols of :func:`block_traces`."""
    r = range(Q)
    return dict(v=[sympy.Symbol(f"v{b}", positive=True) for b in r],
                w=[sympy.Symbol(f"w{a}", positive=True) for a in r],
                mu1=[[sympy.Symbol(f"mu1_{a}_{b}", real=True) for b in r] for a in r],
                mus=[[sympy.Symbol(f"mus_{a}_{b}", nonnegative=True) for b in r] for a in r],
                G=[[sympy.Symbol(f"G_{min(a, c)}_{max(a, c)}", real=True) for c in r] for a in r],
                M=[sympy.Symbol(f"M{a}", nonnegative=True) for a in r],
                V=[sympy.Symbol(f"V{a}", real=True) for a in r])


def block_traces(Q: int, numbers: dict | None = None) -> dict:
    """``{"test": E_test, "train": E_train}`` of the ``Q x Q``-atom conditional model, ``m = 1``
    (module docstring), as normalised traces.

    ``numbers=None``: symbolic per-atom parameters (:func:`block_params` gives their values)
    and a bulk with a spectral measure (``spectral(f)`` on the ``d``-space).  ``numbers``: the
    output of :func:`block_params` with ``psi_n, psi_p, lam`` added, for a *flat* bulk
    (``nu_b = delta_{tau_b}``, key ``tau_b``): every coefficient a number, which the engine
    derives about five times faster (the system of one parameter point, for
    :func:`conditional_errors`)."""
    if numbers is None:
        s = _names(Q)
        pn, pp, lm, a, dl = psi_n, psi_p, lam, a_, Delta_
        root, st, const = spectral(sympy.sqrt(S_NU)), spectral(a_**2 * S_NU + Delta_), \
            Delta_ * SpectralMean(1 / (a_**2 * S_NU + Delta_))
    else:
        def f(x):
            return sympy.Float(float(x), 30)
        s = {k: [[f(numbers[f"{k}_{min(i, j) if k == 'G' else i}_{max(i, j) if k == 'G' else j}"])
                  for j in range(Q)] for i in range(Q)] for k in ("mu1", "mus", "G")}
        s.update({k: [f(numbers[f"{k}{i}"]) for i in range(Q)] for k in ("v", "w", "M", "V")})
        pn, pp, lm, a, dl = (f(numbers[k]) for k in ("psi_n", "psi_p", "lam", "a", "Delta"))
        tau_b = float(numbers["tau_b"])
        root, st = f(math.sqrt(tau_b)), f(float(numbers["a"]) ** 2 * tau_b + float(numbers["Delta"]))
        const = dl / st
    ns = [Space(f"n{b}", pn * s["v"][b]) for b in range(Q)]
    ps = [Space(f"p{a}", pp * s["w"][a]) for a in range(Q)]
    X = [gaussian(f"X{b}", ns[b], D) @ root if numbers is None else root * gaussian(f"X{b}", ns[b], D)
         for b in range(Q)]
    Z = [gaussian(f"Z{b}", ns[b], D) for b in range(Q)]
    W = [gaussian(f"W{i}", ps[i], D) for i in range(Q)]
    sd = sympy.sqrt(dl)
    F = block([[s["mu1"][i][b] * (a * X[b] + sd * Z[b]) @ W[i].T
                + s["mus"][i][b] * gaussian(f"Xi{b}_{i}", ns[b], ps[i]) for i in range(Q)] for b in range(Q)])
    K, C = F.T @ F / pn, F.T @ vstack(Z) / pn

    def lin(i, c):  # the linear part of the test features' second moment, block (i, c)
        return s["G"][i][c] * W[i] @ st @ W[c].T if numbers is None else s["G"][i][c] * st * W[i] @ W[c].T

    U = block([[lin(i, c) + s["M"][i] if i == c else lin(i, c) for c in range(Q)] for i in range(Q)])
    V = vstack([s["V"][i] * W[i] for i in range(Q)])
    Bt = -inverse(K + lm) @ C
    train = 1 + trace(Bt.T @ K @ Bt) + 2 * trace(Bt.T @ C)
    test = const + trace(Bt.T @ U @ Bt) + 2 * sd * trace(Bt.T @ V)
    return {"test": test, "train": train}


def conditional_errors(act, kappa: float, tau_b: float, Q: int, *, psi_n, psi_p, t, lam) -> dict:
    """Test and train error of the ``Q``-atom conditional model (``m = 1``, flat bulk ``tau_b``)
    at one parameter point: the engine derives the system with numeric coefficients
    (:func:`block_traces`), and the raw-system solver (:mod:`numerics.fixedpoint`) solves it.
    Returns ``{"test", "train", "converged"}``.  Slow (``Q = 2``: about two minutes): a check of
    the route, not a curve (``docs/spiked.md``)."""
    from numerics.fixedpoint import compile as compile_raw

    numbers = block_params(act, kappa, tau_b, Q, t)
    numbers.update(psi_n=psi_n, psi_p=psi_p, lam=lam, tau_b=tau_b)
    tr = block_traces(Q, numbers)
    out = {"converged": True}
    for q in ("test", "train"):
        sol = compile_raw(equations(tr[q])).solve({})
        out[q] = float(sol.value)
        out["converged"] = out["converged"] and bool(np.all(sol.converged))
    return out


@lru_cache(maxsize=None)
def block_system(Q: int):
    """The reduced system of both errors (:func:`pencils.reduce.reduce_systems`), disk-cached."""
    def derive():
        from pencils.reduce import reduce_systems

        tr = block_traces(Q)
        return reduce_systems({q: equations(tr[q]) for q in ("test", "train")}, cache=False)

    return cached("spiked-block-reduced", f"spiked:m1:Q={Q}", derive)


def block_params(act, kappa: float, tau_b: float, Q: int, t) -> dict:
    """The per-atom numbers of :func:`block_traces` at diffusion time ``t`` (a scalar): atoms
    ``omega_a, c_b`` of the ``Q``-point Gauss--Hermite rule, coefficients of
    :class:`validation`-side ``rho(s + g)``, ``g ~ N(0, v_b)`` at ``s = a sqrt(kappa) omega_a c_b``."""
    x, wt = np.polynomial.hermite_e.hermegauss(Q)
    wt = wt / math.sqrt(2.0 * math.pi)
    a = math.exp(-t)
    v_b = a * a * tau_b - math.expm1(-2.0 * t)
    sig = math.sqrt(v_b)
    S = a * math.sqrt(kappa) * np.outer(x, x)  # [a, b]: omega_a c_b
    alpha = act.gaussian_moments(S, sig, 1)
    mu0, mu1 = alpha[..., 0], alpha[..., 1] / sig
    star = np.clip(act.gaussian_second_moment(S, sig) - mu0**2 - mu1**2 * v_b, 0.0, None)
    out = {"a": a, "Delta": -math.expm1(-2.0 * t)}
    for i in range(Q):
        out[f"v{i}"] = wt[i]
        out[f"w{i}"] = wt[i]
        out[f"M{i}"] = float(star[i] @ wt)
        out[f"V{i}"] = float(mu1[i] @ wt)
        for j in range(Q):
            out[f"mu1_{i}_{j}"] = mu1[i, j]
            out[f"mus_{i}_{j}"] = math.sqrt(star[i, j])
            if i <= j:
                out[f"G_{i}_{j}"] = float((mu1[i] * mu1[j]) @ wt)
    return out
