"""The numbers of the spiked theory: conditional coefficients, quadrature atoms of the spike
overlaps, and the separable expansion of the coefficient kernels (issue 17; the matrix model is
:mod:`derivations.conditional`).

**Conditional coefficients** (MODEL.md "Spiked covariance").  Given the spike part ``s`` of a
pre-activation, the features are those of ``rho(s + g)``, ``g ~ N(0, v_b)``,
``v_b = a^2 tau_b + Delta``; two noise draws of one sample share the covariance ``c = a^2 tau_b``:

    mu0 = E rho(s + g),  mu1 = E[g rho(s + g)] / v_b,  mu_*^2 = E rho(s + g)^2 - mu0^2 - mu1^2 v_b,
    mu_s^2 = E_g0[alpha0(s + sqrt(c) g0)^2] - mu0^2 - mu1^2 c,   mu_f^2 = mu_*^2 - mu_s^2,

with ``alpha0(u) = E rho(u + sqrt(Delta) g1)`` (:data:`SHARED_NODES` Gauss--Hermite nodes for
``g0``).  At ``s = 0`` they are the structured-data constants at ``tau_b``.

**Atoms.**  ``omega`` (features) and ``c`` (samples) are ``N(0, I_k)``; each is discretised by
the tensor Gauss--Hermite rule with ``Q`` nodes per spike (``Q^k`` atoms).  On the atoms,
``s_ab = a sum_j sqrt(kappa_j) omega_aj c_bj``.

**Separable expansion.**  A kernel ``K_ab = k(s_ab)`` is expanded by the singular value
decomposition of ``diag(sqrt(w)) K diag(sqrt(v))`` (``w``, ``v`` the weights of the two rules):
``K_ab = sum_r f_r(omega_a) g_r(c_b)`` with ``sum_b v_b g_r g_r' = delta_rr'``, truncated at
rank ``R``.  The discarded singular values bound the error of the truncated kernel in the norm
of ``L^2(w x v)``: :func:`overlap_measures` reports them (``tail``).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from .conditional import FEATURES, SAMPLES, profile_names, profile_traces

__all__ = ["SHARED_NODES", "conditional_coefficients", "hermite_atoms", "OverlapMeasures", "overlap_measures",
           "spiked_errors"]

#: Gauss--Hermite nodes of the shared draw ``g0`` in ``mu_s^2``.
SHARED_NODES = 160


def conditional_coefficients(activation, t: float, tau_b: float, s) -> dict:
    """``mu0, mu1, mu_star_sq, mu_s_sq, mu_f_sq`` at the spike parts ``s`` (module docstring);
    ``t`` the diffusion time, ``tau_b`` the bulk's mean eigenvalue."""
    s = np.asarray(s, dtype=float)
    delta = -math.expm1(-2.0 * t)
    c = math.exp(-2.0 * t) * tau_b
    v = c + delta
    sig = math.sqrt(v)
    alpha = activation.gaussian_moments(s, sig, 1)
    mu0, mu1 = alpha[..., 0], alpha[..., 1] / sig
    star = activation.gaussian_second_moment(s, sig) - mu0**2 - mu1**2 * v
    x, w = np.polynomial.hermite_e.hermegauss(SHARED_NODES)
    w = w / math.sqrt(2.0 * math.pi)
    inner = activation.gaussian_moments(s[..., None] + math.sqrt(c) * x, math.sqrt(delta), 0)[..., 0]
    shared = (inner**2) @ w - mu0**2 - mu1**2 * c
    return dict(mu0=mu0, mu1=mu1, mu_star_sq=np.clip(star, 0.0, None), mu_s_sq=np.clip(shared, 0.0, None),
                mu_f_sq=np.clip(star - shared, 0.0, None))


def hermite_atoms(k: int, Q: int) -> tuple[np.ndarray, np.ndarray]:
    """``(points (Q^k, k), weights (Q^k,))``: the tensor Gauss--Hermite rule of ``N(0, I_k)``."""
    x, w = np.polynomial.hermite_e.hermegauss(Q)
    w = w / math.sqrt(2.0 * math.pi)
    pts = np.array(list(itertools.product(x, repeat=k)), dtype=float).reshape(-1, k)
    wts = np.array([math.prod(c) for c in itertools.product(w, repeat=k)], dtype=float)
    return pts, wts


@dataclass(frozen=True)
class OverlapMeasures:
    """The measures ``"c"`` (samples) and ``"w"`` (features) of the conditional model at one
    diffusion time, as :meth:`spectrum` gives them to the solver, and the truncation ``tail``
    (per kernel, the largest discarded singular value relative to the first)."""

    samples: tuple
    features: tuple
    tail: dict

    def spectrum(self) -> dict:
        return {SAMPLES: self.samples, FEATURES: self.features}


def overlap_measures(activation, kappa, tau_b: float, t: float, kind: str, R: int, Q: int) -> OverlapMeasures:
    """Atoms of both measures with the coordinates of :func:`derivations.conditional.profile_names`
    (``kind``: ``"1"``, ``"finite"`` or ``"inf"``; ``R``: the rank; ``Q``: nodes per spike)."""
    kappa = np.atleast_1d(np.asarray(kappa, dtype=float))
    k = kappa.size
    om, wo = hermite_atoms(k, Q)
    cc, wc = hermite_atoms(k, Q)
    a = math.exp(-t)
    S = a * (om * np.sqrt(kappa)) @ cc.T  # [feature atom, sample atom]
    coef = conditional_coefficients(activation, t, tau_b, S)
    kernels = {"mu1": coef["mu1"], "star": np.sqrt(coef["mu_star_sq"]), "s": np.sqrt(coef["mu_s_sq"]),
               "f": np.sqrt(coef["mu_f_sq"])}
    sw, sv = np.sqrt(wo), np.sqrt(wc)
    names = profile_names(kind, R)
    f_cols, g_cols, tail = {}, {}, {}
    for name in {k_ for k_, _ in names[SAMPLES]}:
        U, sig, Vt = np.linalg.svd(sw[:, None] * kernels[name] * sv[None, :])
        for r in range(R):
            if r < sig.size:
                f_cols[(name, r)] = U[:, r] * sig[r] / sw
                g_cols[(name, r)] = Vt[r] / sv
            else:
                f_cols[(name, r)] = np.zeros(len(wo))
                g_cols[(name, r)] = np.zeros(len(wc))
        tail[name] = float(sig[R] / sig[0]) if sig.size > R and sig[0] > 0 else 0.0
    f_cols[("v", 0)] = coef["mu1"] @ wc
    f_cols[("M", 0)] = coef["mu_star_sq"] @ wc
    f_cols[("Mf", 0)] = coef["mu_f_sq"] @ wc
    samples = np.column_stack([g_cols[key] for key in names[SAMPLES]])
    features = np.column_stack([f_cols[key] for key in names[FEATURES]])
    return OverlapMeasures((samples, wc), (features, wo), tail)


def spiked_errors(activation, kappa, bulk, *, psi_n, psi_p, t: float, lam, m=1, R: int = 2, Q: int = 16) -> dict:
    """DSM test and train error of the spiked model at one diffusion time ``t`` (arrays over the
    broadcast of ``psi_n, psi_p, lam``), derived by the engine from
    :func:`derivations.conditional.profile_traces` (``m = 1`` only, so far).

    ``kappa``: the spikes ``lambda_j / d``; ``bulk``: ``(atoms, weights)`` of the bulk's spectral
    measure; ``R``: the rank of the separable expansion; ``Q``: Gauss--Hermite nodes per spike.
    The quadrature is checked by a second solve at ``Q + Q // 2`` nodes: ``quadrature_error`` is
    the largest relative change; ``tail`` is the truncation of each kernel (the first discarded
    singular value relative to the first).  The derivation is cached (minutes at ``R = 2``)."""
    from .derived import derive
    from .model import parse_m

    if parse_m(m) != 1:
        raise NotImplementedError("the spiked theory is derived for m = 1 so far (docs/spiked.md)")
    atoms, weights = bulk
    atoms, weights = np.asarray(atoms, dtype=float), np.asarray(weights, dtype=float)
    tau_b = float(atoms @ weights)
    model = derive(profile_traces("1", R))
    a, delta = math.exp(-t), -math.expm1(-2.0 * t)
    out = {}
    for q in (Q, Q + Q // 2):
        om = overlap_measures(activation, kappa, tau_b, t, "1", R, q)
        sol = model.solve(psi_n=psi_n, psi_p=psi_p, lam=lam, a=a, Delta=delta,
                          spectrum={"nu": (atoms, weights), **om.spectrum()})
        out[q] = {k: np.asarray(sol[k], dtype=float) for k in ("test", "train")}
    hi = out[Q + Q // 2]
    err = max(float(np.max(np.abs(hi[k] - out[Q][k]) / np.abs(hi[k]))) for k in hi)
    return dict(test=hi["test"], train=hi["train"], quadrature_error=err, tail=om.tail, R=R, Q=Q + Q // 2)

