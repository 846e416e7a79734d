"""The spiked-covariance DSM model as matrix expressions with profiles (issue 17, MODEL.md
"Spiked covariance"): conditional Gaussian equivalence, with the conditional coefficients
expanded in separable terms, so that the engine derives the curves once per expansion rank.

**Conditional Gaussian equivalence** (``shared/notes/spiked-route.md``, ``docs/spiked.md``).
With ``k`` spikes ``kappa_j d``, feature ``i`` has spike overlaps ``omega_i ~ N(0, I_k)`` and
sample ``mu`` has spike coordinates ``c_mu ~ N(0, I_k)``; the pre-activation keeps the order-one
part ``s = a sum_j sqrt(kappa_j) omega_ij c_muj``.  Given ``s`` the features are
Gaussian-equivalent at the bulk variance ``v_b = a^2 tau_b + Delta``:

    phi_ij = mu0(s) + mu1(s) (h_ij - s) + mu_s(s) xi_i + mu_f(s) xi_ij,

every coefficient a function of ``s``, i.e. a kernel ``K(omega_i, c_mu)``.  ``mu0(s)`` is left
out: a finite-rank perturbation that the ridge solution suppresses (measured ``O(1/d)``).

**Separable expansion.**  On the product measure of ``(omega, c)`` each kernel is expanded by
its weighted singular value decomposition, ``K(omega, c) = sum_r f_r(omega) g_r(c)``, with
``g_r`` orthonormal in ``L^2(c)`` (:mod:`derivations.spiked_numbers`).  A Hadamard product with
a separable term is a product with diagonal profiles: ``(f g^T) o A = D_g A D_f``.  So the
feature matrix is a sum of ``R`` profile-sandwiched copies of the bulk model, e.g. at ``m = 1``

    F = sum_r D_{g_r} (a X Sigma_b^{1/2} + sqrt(Delta) Z) W^T D_{f_r} + sum_r D_{g*_r} Xi D_{f*_r},

with the profiles on the sample space following the measure ``"c"`` and those on the feature
space the measure ``"w"`` (:func:`pencils.expr.profile`).  The engine derives the equations
for each rank ``R``; the numbers (quadrature atoms, kernel values, truncation) are supplied at
solve time, so refining the quadrature costs no derivation.

**Test error.**  A fresh sample has its own ``c``: averaging over it,
``E_c[mu1(s_i) mu1(s_i')] = sum_r f_r(omega_i) f_r(omega_i')`` (orthonormal ``g_r``), so
``U = sum_r D_{f_r} W S_t W^T D_{f_r} + D_M`` with ``M(omega) = E_c[mu_*^2]`` and
``V = D_v W``, ``v(omega) = E_c[mu1]``; the constant ``Delta E_nu_b[1/(a^2 s + Delta)]`` is the
bulk's (the spikes' share of ``tr S_t^{-1}/d`` is ``O(1/d)``).

**Noise draws** (MODEL.md): the Helmert rotation of :mod:`derivations.dsm` carries over, because
a sample's ``m`` rows share ``c`` and the rotation commutes with a row profile constant on each
sample's block.  ``m = inf`` averages the noise: ``E_c[mu1 mu1'] Delta W W^T`` and
``E_c[mu_f^2]`` enter as for the test moments.
"""
from __future__ import annotations

import sympy

from pencils.expr import S_NU, D, Space, SpectralMean, coordinate, gaussian, inverse, profile, spectral, trace

from .dsm import Delta_, a_, lam, m_, psi_n, psi_p

__all__ = ["profile_names", "profile_traces", "SAMPLES", "FEATURES"]

#: The measures of the sample and feature profiles.
SAMPLES, FEATURES = "c", "w"


def kernel_names(kind: str) -> list:
    """The coefficient kernels of one kind of ``m``: ``mu1`` (the linear part), ``star``
    (``m = 1``: the whole noise), ``s`` and ``f`` (finite ``m``: shared and fresh feature noise;
    ``m = inf``: ``s`` only)."""
    return ["mu1"] + {"1": ["star"], "finite": ["s", "f"], "inf": ["s"]}[kind]


def ranks_of(kind: str, R) -> dict:
    """``{kernel: rank}``: ``R`` an integer (every kernel) or a dict naming every kernel of
    :func:`kernel_names` (each rank an integer ``>= 1``)."""
    names = kernel_names(kind)
    ranks = dict.fromkeys(names, R) if not isinstance(R, dict) else dict(R)
    if set(ranks) != set(names) or not all(isinstance(r, int) and not isinstance(r, bool) and r >= 1
                                            for r in ranks.values()):
        raise ValueError(f"the expansion rank must be an integer >= 1 or a dict of them over the kernels "
                         f"{names} (m kind {kind!r}), got {R!r}")
    return {k: ranks[k] for k in names}


def profile_names(kind: str, R) -> dict:
    """Which coordinate holds which profile, for rank ``R`` (an integer: every kernel gets ``R``
    terms; a dict: each kernel its own, :func:`ranks_of`): ``{"c": [(kernel, r), ...], "w": [...]}``
    in coordinate order.  Kernels: :func:`kernel_names`; on the features also ``v = E_c[mu1]``
    and ``M`` (``E_c[mu_*^2]``; ``m = inf`` adds ``Mf = E_c[mu_f^2]``)."""
    c = [(k, r) for k, rank in ranks_of(kind, R).items() for r in range(rank)]
    w = c + [("v", 0), ("M", 0)] + ([("Mf", 0)] if kind == "inf" else [])
    return {SAMPLES: c, FEATURES: w}


def _coords(kind: str, R: int) -> dict:
    names = profile_names(kind, R)
    return {m: {key: coordinate(m, j) for j, key in enumerate(keys)} for m, keys in names.items()}


def profile_traces(kind: str, R) -> dict:
    """``{"test": E_test, "train": E_train}`` of the conditional model with rank-``R`` profiles
    (module docstring), as normalised traces; ``kind`` is ``"1"``, ``"finite"`` or ``"inf"``;
    ``R``: the rank of every kernel, or a dict of ranks per kernel (:func:`ranks_of`).
    The bulk has a spectral measure (``f(Sigma_b)``, :data:`S_NU`)."""
    if kind not in ("1", "finite", "inf"):
        raise ValueError(f"unknown m kind {kind!r}; use '1', 'finite' or 'inf'")
    ranks = ranks_of(kind, R)
    cs = _coords(kind, ranks)
    n, p = Space("n", psi_n), Space("p", psi_p)

    def gs(k, r, space=n):
        return profile(cs[SAMPLES][(k, r)], space)

    def fs(k, r):
        return profile(cs[FEATURES][(k, r)], p)

    X, W = gaussian("X", n, D) @ spectral(sympy.sqrt(S_NU)), gaussian("W", p, D)
    sd = sympy.sqrt(Delta_)
    St = spectral(a_**2 * S_NU + Delta_)
    U = sum((fs("mu1", r) @ W @ St @ W.T @ fs("mu1", r) for r in range(1, ranks["mu1"])),
            fs("mu1", 0) @ W @ St @ W.T @ fs("mu1", 0)) + profile(cs[FEATURES][("M", 0)], p)
    V = profile(cs[FEATURES][("v", 0)], p) @ W
    constant = Delta_ * SpectralMean(1 / (a_**2 * S_NU + Delta_))

    def lin(A, space=n):  # sum_r D_g A W^T D_f: the linear part on the rows of `space`
        return sum((gs("mu1", r, space) @ A @ W.T @ fs("mu1", r) for r in range(1, ranks["mu1"])),
                   gs("mu1", 0, space) @ A @ W.T @ fs("mu1", 0))

    def noise(k, Xi, space=n, scale=1):
        return sum((scale * gs(k, r, space) @ Xi @ fs(k, r) for r in range(1, ranks[k])),
                   scale * gs(k, 0, space) @ Xi @ fs(k, 0))

    if kind == "inf":
        Fbar = lin(a_ * X) + noise("s", gaussian("Xi", n, p))
        K = Fbar.T @ Fbar / psi_n + Delta_ * sum((fs("mu1", r) @ W @ W.T @ fs("mu1", r) for r in range(1, ranks["mu1"])),
                                                 fs("mu1", 0) @ W @ W.T @ fs("mu1", 0)) \
            + profile(cs[FEATURES][("Mf", 0)], p)
        C = sd * V
    else:
        m = sympy.Integer(1) if kind == "1" else m_
        Z0 = gaussian("Z0", n, D)
        if kind == "1":
            F = lin(a_ * X + sd * Z0) + noise("star", gaussian("Xi", n, p))
        else:
            F = lin(sympy.sqrt(m) * a_ * X + sd * Z0) + noise("s", gaussian("Xi", n, p), scale=sympy.sqrt(m)) \
                + noise("f", gaussian("Xi0", n, p))
        FtF, G = F.T @ F, F.T @ Z0
        if kind == "finite":
            r_ = Space("r", psi_n * (m_ - 1))
            Z1 = gaussian("Z1", r_, D)
            Fr = lin(sd * Z1, r_) + noise("f", gaussian("Xi1", r_, p), r_)
            FtF, G = FtF + Fr.T @ Fr, G + Fr.T @ Z1
        N = psi_n * m
        K, C = FtF / N, G / N
    Bt = -inverse(K + lam) @ C
    train = 1 + trace(Bt.T @ K @ Bt) + 2 * trace(Bt.T @ C)
    test = constant + trace(Bt.T @ U @ Bt) + 2 * sd * trace(Bt.T @ V)
    return {"test": test, "train": train}
