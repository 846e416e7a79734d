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
of ``L^2(w x v)``: :func:`overlap_measures` reports them (``tail``).  The functions are read on
the atoms through the kernel (Nystrom): ``f_r = K (sqrt(v) v_r)``, ``g_r = K^T (sqrt(w) u_r) /
sigma_r``, not as ``u_r / sqrt(w)``: the singular vectors carry an absolute rounding of about
``1e-16``, which the division turns into ``1e-16 / sqrt(w_a)`` at the outermost atoms (weights
down to ``1e-36`` with 48 nodes per spike: profiles of ``1e2``--``1e10`` where they are ``O(1)``,
and wrong or NaN solves from 30 nodes per spike with two spikes, 54 with one).

**Noise kernels at rank one** (``mu_*``, ``mu_s``, ``mu_f``; the default).  A noise term
``g(c) Xi f(omega)`` of the matrix model has the entry variance ``g^2 f^2``, and its deterministic
equivalent depends on the noise only through that variance profile.  So at rank one the profile
is read from the best rank-one approximation of the *variance* kernel ``k(s)^2``,
``sigma_1 u(omega) v(c)`` (its Perron vectors: non-negative), with ``f = sqrt(sigma_1 u)`` and
``g = sqrt(v)`` (``noise="variance"``), not from the first singular pair of ``k(s)`` itself
(``noise="std"``, used before; its ``g^2 f^2`` misses the variance where ``k`` is far from
separable).  Measured against the conditional surrogate with its full kernels (same draws,
``docs/spiked.md`` section 15): at S1, ``m = 4``, ``p > nm`` the std reading puts the train error
0.40 % high, the variance reading 0.01 %; at eleven settings (relu, tanh, erf; ``m = 1, 4, inf``)
the variance reading moves the errors by at most 0.26 % (train) and 0.10 % (test), at most 0.53
of ``tail^2`` (the largest over the noise kernels), which :func:`spiked_errors` reports as
``noise_error``.  At rank two or more the noise profiles are the
singular pairs of ``k(s)`` (the variance of ``sum_r g_r Xi f_r`` is ``(sum_r g_r f_r)^2``).
"""
from __future__ import annotations

import itertools
import math
import sys
from dataclasses import dataclass

import numpy as np

from numerics.quadrature import gauss_rule

from .conditional import FEATURES, SAMPLES, kernel_names, profile_names, profile_traces, ranks_of

__all__ = ["SHARED_NODES", "conditional_coefficients", "hermite_atoms", "OverlapMeasures", "overlap_measures",
           "DEFAULT_NODES", "default_ranks", "first_call_cost", "spiked_model", "spiked_errors", "constant_profiles"]

#: Gauss--Hermite nodes of the shared draw ``g0`` in ``mu_s^2``.
SHARED_NODES = 160
#: Entries (spike parts x nodes) per block of that quadrature: a few tens of MB per temporary.
SHARED_BLOCK = 1 << 21
#: Singular values below this share of the first are rounding, not terms of the expansion: their
#: functions are zero (:func:`overlap_measures`).
NEGLIGIBLE_SINGULAR = 1e-13


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
    # E_g0[alpha0(s + sqrt(c) g0)^2] in blocks of s: three spikes have (Q^3)^2 = 3e6 pairs, whose
    # full (pairs x nodes) array would take gigabytes per temporary
    flat, second = s.reshape(-1), np.empty(s.size)
    step = max(1, SHARED_BLOCK // SHARED_NODES)
    for lo in range(0, flat.size, step):
        inner = activation.gaussian_moments(flat[lo:lo + step, None] + math.sqrt(c) * x, math.sqrt(delta), 0)[..., 0]
        second[lo:lo + step] = (inner**2) @ w
    shared = second.reshape(s.shape) - mu0**2 - mu1**2 * c
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
    diffusion time, as :meth:`spectrum` gives them to the solver, the truncation ``tail``
    (per kernel, the largest discarded singular value relative to the first) and the leading
    ``singular`` values of each kernel relative to the first (through the first discarded one)."""

    samples: tuple
    features: tuple
    tail: dict
    singular: dict

    def spectrum(self) -> dict:
        return {SAMPLES: self.samples, FEATURES: self.features}


def _variance_profile(V: np.ndarray, sw: np.ndarray, sv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(f, g)`` on the feature and sample atoms with ``g_b^2 f_a^2`` the best rank-one
    approximation of the variance kernel ``V_ab >= 0`` in ``L^2(w x v)`` (``sw``, ``sv``: the
    square roots of the weights): ``f = sqrt(sigma_1 u)``, ``g = sqrt(v)``."""
    U, sig, Vt = np.linalg.svd(sw[:, None] * V * sv[None, :])
    if sig[0] <= 0.0:
        return np.zeros(len(sw)), np.zeros(len(sv))
    su, sv0 = _nystrom(V, sw, sv, U[:, 0], sig[0], Vt[0])
    if su.sum() < 0:  # the Perron pair of a non-negative kernel: one sign, fixed here
        su, sv0 = -su, -sv0
    # round-off leaves entries like -1e-17 where the kernel vanishes
    return np.sqrt(np.clip(su, 0.0, None)), np.sqrt(np.clip(sv0, 0.0, None))


def _nystrom(K: np.ndarray, sw: np.ndarray, sv: np.ndarray, u: np.ndarray, sigma: float,
             v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sigma u / sw, v / sv)`` of a singular triple ``(u, sigma, v)`` of
    ``diag(sw) K diag(sv)``, read through ``K``: ``K (sv v)`` and ``K^T (sw u) / sigma`` (module
    docstring).  Both are sums over the atoms of smooth functions: their rounding is about
    ``1e-16`` of the kernel's scale at every atom, where dividing the vectors by ``sw`` or ``sv``
    costs ``1e-16 / sw`` at atoms of tiny weight."""
    return K @ (sv * v), (sw * u) @ K / sigma


def overlap_measures(activation, kappa, tau_b: float, t: float, kind: str, R, Q: int,
                     noise: str = "variance") -> OverlapMeasures:
    """Atoms of both measures with the coordinates of :func:`derivations.conditional.profile_names`
    (``kind``: ``"1"``, ``"finite"`` or ``"inf"``; ``R``: the rank, an integer or a dict per kernel
    (:func:`derivations.conditional.ranks_of`); ``Q``: nodes per spike; ``noise``: how a noise
    kernel of rank one is read, ``"variance"`` or ``"std"`` (module docstring)).  ``tail`` and
    ``singular`` are those of the kernels ``k(s)`` themselves, whichever the reading."""
    if noise not in ("variance", "std"):
        raise ValueError(f"noise must be 'variance' or 'std', got {noise!r}")
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
    ranks = ranks_of(kind, R)
    f_cols, g_cols, tail, singular = {}, {}, {}, {}
    for name, rank in ranks.items():
        U, sig, Vt = np.linalg.svd(sw[:, None] * kernels[name] * sv[None, :])
        if name != "mu1" and rank == 1 and noise == "variance":
            f_cols[(name, 0)], g_cols[(name, 0)] = _variance_profile(kernels[name] ** 2, sw, sv)
        else:
            for r in range(rank):
                # a singular value at rounding level is no term (its g_r would be rounding / sigma_r)
                if r < sig.size and sig[r] > NEGLIGIBLE_SINGULAR * sig[0]:
                    f_cols[(name, r)], g_cols[(name, r)] = _nystrom(kernels[name], sw, sv, U[:, r], sig[r], Vt[r])
                else:
                    f_cols[(name, r)] = np.zeros(len(wo))
                    g_cols[(name, r)] = np.zeros(len(wc))
        tail[name] = float(sig[rank] / sig[0]) if sig.size > rank and sig[0] > 0 else 0.0
        singular[name] = sig[:rank + 1] / sig[0] if sig[0] > 0 else np.zeros(min(rank + 1, sig.size))
    f_cols[("v", 0)] = coef["mu1"] @ wc
    f_cols[("M", 0)] = coef["mu_star_sq"] @ wc
    f_cols[("Mf", 0)] = coef["mu_f_sq"] @ wc
    samples = np.column_stack([g_cols[key] for key in names[SAMPLES]])
    features = np.column_stack([f_cols[key] for key in names[FEATURES]])
    return OverlapMeasures((samples, wc), (features, wo), tail, singular)


def spiked_model(kind: str, R):
    """The derived conditional model of one kind of ``m`` at ranks ``R`` (an integer or a dict,
    :func:`derivations.conditional.ranks_of`)
    (:func:`derivations.derived.derive` of :func:`derivations.conditional.profile_traces`).
    Its first derivation and the first compilation of its kernel take minutes to an hour (then
    cached on disk): a line on standard error says how long (:func:`first_call_cost`)."""
    from pencils.cache import is_cached

    from .derived import DERIVING_CODE, derive

    key = (kind, tuple(sorted(ranks_of(kind, R).items())))
    if key in _MODELS:  # building the traces and their key costs 90 ms; a one-spike curve, 0.5 s
        return _MODELS[key]
    model = derive(profile_traces(kind, R))
    if not is_cached("derived-reduced", model.key, code=DERIVING_CODE):
        print(f"deriving the spiked-covariance system (m kind {kind!r}, ranks {ranks_of(kind, R)}): "
              f"{first_call_cost(kind, R)}; cached after", file=sys.stderr, flush=True)
    _MODELS[key] = model
    return model


#: The models :func:`spiked_model` built in this process, by (kind, ranks).
_MODELS: dict = {}


def first_call_cost(kind: str, R) -> str:
    """What the first use of a system costs, from the derivations and compilations measured on
    one core (``docs/spiked.md`` sections 9-14): one spike's ranks (``mu1`` at 2, noise at 1)
    take a few minutes in all; ``mu1`` at rank 3 or more (two or three spikes) or a noise
    kernel above rank 1 take 2-11 minutes to derive and 15-60 minutes to compile."""
    ranks = ranks_of(kind, R)
    if ranks["mu1"] <= 2 and all(r == 1 for name, r in ranks.items() if name != "mu1"):
        return "a few minutes to derive and to compile its kernel"
    return ("2-11 minutes to derive and 15-60 minutes to compile its kernel (measured on one core: two spikes at "
            "finite m, 8 + 55 minutes)")


#: Gauss--Hermite nodes per spike by default, by number of spikes (``Q^k`` atoms per measure).
DEFAULT_NODES = {1: 24, 2: 12, 3: 8}
#: Nodes of the Gauss rule of the bulk's spectral measure by default (:func:`numerics.quadrature.gauss_rule`;
#: a bulk with fewer atoms is used as it is).
DEFAULT_BULK_NODES = 32


def default_ranks(kind: str, k: int) -> dict:
    """The expansion ranks of ``k`` spikes: ``k + 1`` terms for the linear kernel ``mu1`` (its
    constant and the ``k`` linear terms ``omega_j c_j`` of ``s``, plus the higher ones the SVD
    mixes in) and one for each noise kernel, which enters only through its variance profile
    (read at rank one from the variance kernel, :func:`overlap_measures`; its error is
    ``noise_error`` of :func:`spiked_errors`)."""
    return {name: (k + 1 if name == "mu1" else 1) for name in kernel_names(kind)}


def spiked_errors(activation, kappa, bulk, *, psi_n, psi_p, t: float, lam, m=1, R=None, Q: int | None = None,
                  bulk_nodes: int | None = DEFAULT_BULK_NODES, truncation: bool = True, throw: bool = True,
                  tau_inf: float = 0.0, noise: str = "variance", **solve_options) -> dict:
    """DSM test and train error of the spiked model at one diffusion time ``t`` (arrays over the
    broadcast of ``psi_n, psi_p, lam``; ``m``: one value, ``1``, an integer ``>= 2`` or ``inf``),
    derived by the engine from :func:`derivations.conditional.profile_traces`.

    ``kappa``: the spikes ``lambda_j / d``; ``bulk``: ``(atoms, weights)`` of the bulk's spectral
    measure; ``R``: the ranks of the separable expansion (``None``: :func:`default_ranks`; an
    integer for every kernel; or a dict per kernel); ``Q``: Gauss--Hermite nodes per spike
    (default :data:`DEFAULT_NODES`); ``bulk_nodes``: the bulk measure is replaced by its Gauss
    rule with that many nodes (``None``: its atoms; a bulk of few atoms is kept as it is);
    ``tau_inf``: variance at infinity (:attr:`derivations.spikes.SpikeSplit.tau_inf`), added to the
    bulk's mean in the conditional coefficients only; ``noise``: the reading of rank-one noise
    kernels (:func:`overlap_measures`).  Three error estimates, relative, per point:

    * ``quadrature_error``: the change from ``(Q, bulk_nodes)`` to ``(Q + Q // 2, bulk_nodes +
      bulk_nodes // 2)`` nodes (spikes, bulk; the values returned are those of the larger rules);
    * ``truncation_error``: of the linear kernel's rank ``R1``, by the geometric decay of its
      singular values ``sigma_r``: the change ``delta`` from rank ``R1 - 1`` to ``R1`` (also
      returned, ``truncation_change``) times ``rho / (1 - rho)``, ``rho = sigma_R1 / sigma_{R1-1}``
      (the terms left out shrink like the singular values).  NaN with ``R1 = 1`` or
      ``truncation=False``.  Checked against Monte Carlo in ``docs/spiked.md`` section 7; the
      noise kernels' truncation is ``noise_error`` below.
    * ``noise_error``: of the noise kernels' ranks, the largest ``tail^2`` over them (the share
      of a kernel's ``L^2`` norm its expansion leaves out): a scale, not a bound; the variance
      reading at rank one was within 0.53 of it at every setting measured (module docstring).

    ``tail`` is the truncation of each kernel (first discarded singular value over the first);
    ``residual`` the largest core residual of the solves, ``rounding_error`` and ``iterations``
    those of the values returned; ``converged`` is per point (``throw``: raise on an unresolved point; ``solve_options``:
    ``check_rounding``, ``refine``, ``rtol``, ``atol`` of
    :meth:`derivations.derived.DerivedModel.solve`).  The values' solve climbs that precision
    ladder at every point; the solves behind the two estimates check their rounding only at
    the points where it climbed above double precision (elsewhere the point is as well
    conditioned on the coarser rule, and a check that passes returns the double values: the
    estimates are those of solves checked everywhere, bit for bit at every point measured; the
    check is most of a solve's cost).  The derivations are cached (minutes)."""
    from .model import m_kind, parse_m

    m_val = parse_m(m)
    kind = m_kind(m_val)
    kappa = np.atleast_1d(np.asarray(kappa, dtype=float))
    ranks = ranks_of(kind, default_ranks(kind, kappa.size) if R is None else R)
    if Q is None:
        Q = DEFAULT_NODES.get(kappa.size, 6)
    atoms, weights = bulk
    atoms, weights = np.asarray(atoms, dtype=float), np.asarray(weights, dtype=float)
    tau_b = float(atoms @ weights) + float(tau_inf)
    a, delta = math.exp(-t), -math.expm1(-2.0 * t)
    extra = {"m": m_val} if kind == "finite" else {}
    rules = {}

    def bulk_rule(n):  # (gauss_rule gives the atoms themselves when n is not below their number)
        if n is None:
            return atoms, weights
        if n not in rules:
            rules[n] = gauss_rule(atoms, weights, n)
        return rules[n]

    shape = np.broadcast_shapes(np.shape(psi_n), np.shape(psi_p), np.shape(lam))
    grid = [np.broadcast_to(np.asarray(x), shape).reshape(-1) for x in (psi_n, psi_p, lam)]

    def solve(rank, q, n, sel=None, **options):
        om = overlap_measures(activation, kappa, tau_b, t, kind, rank, q, noise)
        pn, pp, lm = grid if sel is None else (g[sel] for g in grid)
        sol = spiked_model(kind, rank).solve(
            psi_n=pn, psi_p=pp, lam=lm, a=a, Delta=delta,
            spectrum={"nu": bulk_rule(n), **om.spectrum()}, **extra, **{"throw": throw, **solve_options, **options})
        values = {k: np.asarray(sol[k], dtype=float) for k in ("test", "train")}
        return dict(values, converged=np.asarray(sol.converged), residual=np.asarray(sol.residual, dtype=float),
                    rounding_error=np.asarray(sol.rounding_error, dtype=float),
                    iterations=np.asarray(sol.iterations), refined=np.asarray(sol.refined)), om

    q_hi = Q + Q // 2
    n_hi = None if bulk_nodes is None else bulk_nodes + bulk_nodes // 2
    hi, om = solve(ranks, q_hi, n_hi)
    ladder = solve_options.get("check_rounding", True) and solve_options.get("precision") is None

    def estimate(rank, q, n):
        """A solve behind an estimate: rounding checked where the values' solve was refined (the
        same point on a coarser rule is as well conditioned; the check costs 1.7 ms against the
        solve's 0.36 ms per point with one spike)."""
        if not ladder:
            return solve(rank, q, n)[0]
        est = solve(rank, q, n, check_rounding=False, throw=False)[0]
        redo = np.nonzero(hi["refined"] | ~est["converged"])[0]
        if redo.size:
            fix = solve(rank, q, n, sel=redo)[0]
            for key, v in est.items():
                v[redo] = fix[key]
        return est

    lo = estimate(ranks, Q, bulk_nodes)

    def change(a_, b_):
        return np.fmax(*(np.abs(a_[k] - b_[k]) / np.abs(a_[k]) for k in ("test", "train")))

    quad = change(hi, lo)
    converged = hi["converged"] & lo["converged"]
    residual = np.fmax(hi["residual"], lo["residual"])
    step = np.full(quad.shape, np.nan)
    trunc = np.full(quad.shape, np.nan)
    r1 = ranks["mu1"]
    if truncation and r1 >= 2:
        low_rank = estimate(dict(ranks, mu1=r1 - 1), q_hi, n_hi)
        step = change(hi, low_rank)
        sig = om.singular["mu1"]
        rho = min(float(sig[r1] / sig[r1 - 1]), 0.9) if sig.size > r1 and sig[r1 - 1] > 0 else 0.0
        trunc = step * rho / (1.0 - rho)
        converged = converged & low_rank["converged"]
        residual = np.fmax(residual, low_rank["residual"])
    constant = delta * float(weights @ (1.0 / (a * a * atoms + delta)))
    noise_err = np.full(quad.shape, max(om.tail[name] ** 2 for name in ranks if name != "mu1"))
    per_point = dict(test=hi["test"], train=hi["train"], dsm_test_loss=hi["test"] + 1.0 - constant,
                     quadrature_error=quad, truncation_error=trunc, truncation_change=step, noise_error=noise_err,
                     converged=converged, residual=residual, rounding_error=hi["rounding_error"],
                     iterations=hi["iterations"])
    return dict({name: v.reshape(shape) for name, v in per_point.items()},
                tail=om.tail, ranks=ranks, Q=q_hi, bulk_nodes=len(bulk_rule(n_hi)[0]))


def constant_profiles(theory, kind: str, psi_n, psi_p, t: float, lam, m) -> tuple[dict, dict]:
    """The ``k = 0`` limit: the parameters and measures that make the rank-1 conditional model
    of ``kind`` (:func:`derivations.conditional.profile_traces`) today's structured model
    ``theory`` (``pencils.build(act, covariance=eigs)``): every profile the constant
    coefficient of ``theory`` at ``(psi_n, psi_p, t, lam, m)``.  Returns ``(params, spectrum)``
    for :meth:`derivations.derived.DerivedModel.solve`; the check that both give the same
    curves is ``tests/test_profiles.py``."""
    P = theory.solver_params(psi_n, psi_p, t, lam, m)
    value = dict(mu1=float(P["mu1"]), star=P["mu_star"], s=P["mu_s"], f=P["mu_f"], v=float(P["mu1"]),
                 M=P["mu_star"] ** 2, Mf=P["mu_f"] ** 2)
    names = profile_names(kind, 1)
    spectrum = {"nu": theory.spectrum, "c": (np.ones((1, len(names["c"]))), [1.0]),
                "w": (np.array([[value[key] for key, _ in names["w"]]]), [1.0])}
    params = dict(psi_n=psi_n, psi_p=psi_p, lam=lam, a=P["a"], Delta=P["Delta"], **({"m": m} if kind == "finite" else {}))
    return params, spectrum

