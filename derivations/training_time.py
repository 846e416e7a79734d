"""Exact DSM learning curves along gradient flow (``MODEL.md``, section "Training time").

Gradient flow from ``B = 0`` gives ``B^T(T) = -g_T(K) C`` with

    g_T(x) = (1 - e^{-T(x + lam)}) / (x + lam)          (entire in x; g_0 = 0, g_inf = 1/(x + lam)),

``K`` the (engine-normalised) Gram matrix of the training features and ``C`` the
feature-target cross moment: in the notation of :mod:`derivations.dsm`, ``K = F^T F / N``,
``C = F^T Z_e / N`` for finite ``m`` (``N = psi_n m``, Helmert-rotated rows) and
``K = Ubar``, ``C = Vbar`` for ``m = inf``.  With ``U, V`` the test moments of
:mod:`derivations.dsm` (``tr = (1/d) Tr``):

    E_test(T)  = Delta + tr(B U B^T) + 2 sqrt(Delta) tr(B V),
    E_train(T) = 1 + tr(B K B^T) + 2 tr(B C)

(the second is :mod:`derivations.dsm`'s train error rewritten with ``F^T F = N K``,
``G = N C``).  **Contour integrals.**  With the resolvent ``R(z) = (K - z)^{-1}`` and a
counter-clockwise contour ``Gamma`` enclosing the non-zero spectrum of ``K``,
``h(K) C = -(1/2 pi i) oint h(z) R(z) C dz`` for ``h`` analytic inside ``Gamma``, so

    E_test  = Delta + (1/2 pi i)^2 oint oint g(z1) g(z2) q(z1, z2) dz1 dz2 + 2 sqrt(Delta) (1/2 pi i) oint g(z) s1(z) dz,
    E_train = 1 + (1/2 pi i) oint [2 g(z) - z g(z)^2] s2(z) dz,

    s1(z) = tr(C^T R(z) V),   s2(z) = tr(C^T R(z) C),   q(z1, z2) = tr(C^T R(z1) U R(z2) C).

``s1, s2, q`` are rational expressions of the Gaussian matrices: the engine derives their
fixed-point equations (:func:`pencils.freeprob.equations`), reduces them
(:func:`reduced_time_system`: ``s1, s2, tr R`` share one core; ``q``; the moments) and solves
them at complex ``z`` (:class:`numerics.reduced.ReducedSolver`: the compiled kernel's complex
library, or the numpy path without a compiler); nothing here is a
hand-typed fixed-point equation.  The raw systems (:func:`time_system`, ``ENGINE = "raw"``)
remain the reference: they re-solve the points the reduced core flags or whose rounding
estimate is large, and they give the bulk edges (see :func:`_solve_many`, :func:`_bulk_edges`).  The train
error needs one resolvent only (``K`` commutes with ``g(K)``); the test error needs the
two-resolvent trace ``q`` because ``U`` is not a function of ``K``.  The same contour
integrals at ``T = inf`` give the ridge curves (``lam > 0``) or the minimum-norm
interpolator (``lam = 0``); at ``T = 0``, ``B = 0``: ``E_test = Delta``, ``E_train = 1``.
For small ``T``, ``B^T = -T C + O(T^2)``, so

    dE_test/dT(0) = -2 sqrt(Delta) tr(C^T V),     dE_train/dT(0) = -2 tr(C^T C)

(the gradient of the errors at ``B = 0`` along the flow direction ``-C``).

**The atom at 0.**  When ``p > N`` (finite ``m``) ``K`` has an atom at 0, but
``C = F^T Z_e / N`` lies in the range of ``K``, so ``s1, s2, q`` carry no weight at 0:
``Gamma`` only has to enclose the bulk ``[x_-, x_+]`` (``x_- > 0`` away from ``p = N``)
and may cross the real axis in ``(0, x_-)``.  For ``m = inf``, ``K = Ubar >= mu_f^2`` has an
atom at ``mu_f^2`` when ``p > n + d`` (``Ubar - mu_f^2`` has rank ``n + d``), which the
contour must enclose (``x_-`` is taken ``<= mu_f^2``).  A check (:func:`errors_at_time`) verifies that
``-(1/2 pi i) oint tr R(z) dz`` (the enclosed mass) plus the atom at 0
(``lim_{z -> 0-} -z tr R(z)``) equals ``tr I_p = psi_p``: no part of the spectrum is missed.

**Contour and quadrature.**  The bulk spans several decades when ``p`` is close to ``N``,
so the contour is an ellipse in ``w = log z``: with foci ``w_lo = log(x_-/kappa)``,
``w_hi = log(kappa x_+)`` (``x_-, x_+`` the bulk edges read off the density of ``K``, margin
``kappa``), centre ``c``, half focal distance ``f``,

    z(theta) = exp(c + f cos(theta - i rho)),   theta_k = 2 pi k / N_nodes,

and the (spectrally accurate) trapezoid rule in ``theta``.  ``|Im w| <= f sinh(rho) < pi/2`` keeps
``Re z > 0`` on the contour, so ``|e^{-T z}| <= 1`` there and on the strip of analyticity
``|Im theta| < a`` used by the error bound (``f sinh(rho + a) < pi/2``; ``a < rho`` keeps the
shifted contour off the bulk): the trapezoid error is ``O(e^{-a N_nodes})`` *uniformly in
T* (Trefethen and Weideman 2014, "The exponentially convergent trapezoidal rule", SIAM Rev.
56, thm. 2.2; the log map is the standard device for multi-scale spectra, Hale, Higham and
Trefethen 2008, "Computing A^alpha, log(A) and related matrix functions by contour
integrals").  The default ``rho`` balances both conditions (``f sinh(2 rho) = 0.9 pi/2``).
Each value carries a quadrature error estimate: the difference between the rule on
``N_nodes`` and on the nested ``N_nodes/2`` nodes (with geometric convergence the error
of the finer rule is about the square of that, relative, so the estimate is conservative).
One grid of trace values serves every ``T`` and every ``lam``: ``lam`` does not enter ``K``.
Values whose estimate exceeds ``tol`` (or whose traces did not converge, or whose mass
check failed) are NaN and flagged.

**Timescales.**  :func:`generalisation_time` is the ``T`` of minimal ``E_test`` on a log grid
(refined by a parabola in ``log T``); :func:`memorisation_time` is the first ``T`` at which
``E_train`` falls below ``fraction * a_t^2`` (interpolated in ``log T``).

**Gradient-descent steps.**  The objective of ``MODEL.md`` in terms of ``A`` is
``L(A) = (1/d)[(1/N)||Phi B^T + Z||^2 + lam ||B||^2]`` with ``B = sqrt(Delta) A / sqrt(p)``.
Its gradient in ``A`` is ``(sqrt(Delta)/sqrt(p)) dL/dB``, and ``dL/dB^T = (2/d)[(K + lam) B^T + C]``
(``K, C`` here in units of the un-normalised ``Phi``).  Plain gradient descent
``A <- A - eta dL/dA`` therefore moves ``B^T`` by ``-(2 eta Delta / (d p)) [(K + lam) B^T + C]``
per step, i.e. by the flow of ``MODEL.md`` over ``dT = 2 eta Delta / (d p)``: ``k`` steps of
learning rate ``eta`` are ``T = 2 eta Delta k / (d p)`` (for ``eta`` small enough that the
discrete map tracks the flow, ``eta (x_max + lam) 2 Delta / (d p) << 1``); see
:func:`steps_to_time`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import sympy

from numerics import ConvergenceError, Solver, compile as compile_system
from numerics.reduced import ReducedSolver, solver_layout
from pencils.cache import cached
from pencils.expr import Trace, inverse, trace
from pencils.freeprob import FixedPointSystem, equations

from .dsm import dsm_matrices
from .model import check_real_array, m_kind, parse_m

__all__ = ["flow_matrices", "time_traces", "time_system", "reduced_time_system", "TimeErrors", "errors_at_time",
           "Timescale", "generalisation_time", "memorisation_time", "flow_gradient_at_zero", "steps_to_time",
           "time_to_steps", "g_T"]

z1_, z2_ = sympy.symbols("z1 z2")

#: names of the derived traces (see module docstring)
TRACES = ("s1", "s2", "q", "resolvent", "moment_test", "moment_train")
#: the reduced systems: traces at one spectral parameter ``z1`` (one resolvent, one shared
#: core), the two-resolvent trace (``z1``, ``z2``) and the moments (no resolvent)
GROUPS = {"one": ("s1", "s2", "resolvent"), "q": ("q",), "moments": ("moment_test", "moment_train")}
_GROUP_OF = {name: g for g, names in GROUPS.items() for name in names}
#: which engine solves the traces: ``"reduced"`` (the reduced systems of
#: :func:`reduced_time_system`, vectorised numpy path in complex arithmetic) or ``"raw"``
#: (the raw fixed-point systems of :func:`time_system`: the reference the tests compare with)
ENGINE = "reduced"


# -- derivation ---------------------------------------------------------------------------

def flow_matrices(kind: str):
    """``(K, C, U, V)`` of the Gaussian-equivalent model: those of
    :func:`derivations.dsm.dsm_matrices` (the ridge curves' construction), so ``T = inf``
    is the ridge solution by construction (and checked by the tests)."""
    return dsm_matrices(kind)[:4]


def time_traces(K, C, U, V) -> dict[str, Trace]:
    """The traces of the module docstring for given matrices ``K`` (p x p), ``C`` (p x d),
    ``U`` (p x p), ``V`` (p x d), at the spectral parameters ``z1``, ``z2``."""
    R1, R2 = inverse(K - z1_), inverse(K - z2_)
    return {"s1": trace(C.T @ R1 @ V), "s2": trace(C.T @ R1 @ C), "q": trace(C.T @ R1 @ U @ R2 @ C),
            "resolvent": trace(R1), "moment_test": trace(C.T @ V), "moment_train": trace(C.T @ C)}


@lru_cache(maxsize=None)
def time_system(kind: str, name: str) -> FixedPointSystem:
    """The fixed-point system of one trace (disk-cached by :func:`pencils.freeprob.equations`)."""
    if name not in TRACES:
        raise ValueError(f"unknown trace {name!r}; use one of {TRACES}")
    return equations(time_traces(*flow_matrices(kind))[name])


def reduced_time_system(kind: str, group: str):
    """The reduced system (:class:`pencils.reduce.ReducedSystem`) of one group of traces
    (:data:`GROUPS`: ``"one"`` = ``s1, s2, resolvent`` at ``z1``, sharing their core;
    ``"q"``; ``"moments"``), disk-cached under a cheap key (a warm start does not derive
    the raw systems)."""
    if group not in GROUPS:
        raise ValueError(f"unknown group {group!r}; use one of {tuple(GROUPS)}")

    def derive():
        from pencils.reduce import reduce_systems

        return reduce_systems({name: time_system(kind, name) for name in GROUPS[group]}, cache=False)

    return cached("time-reduced", f"{kind}:{group}", derive)


@lru_cache(maxsize=None)
def _reduced_solver(kind: str, group: str) -> ReducedSolver:
    layout = cached("time-layout", f"{kind}:{group}", lambda: solver_layout(reduced_time_system(kind, group)),
                    expected=dict)
    return ReducedSolver(key=f"time:{kind}:{group}", layout=layout, loader=lambda: reduced_time_system(kind, group))


@lru_cache(maxsize=None)
def _solver(kind: str, name: str) -> Solver:
    return compile_system(time_system(kind, name))


@dataclass
class _Traces:
    """Solved trace values on a grid: ``value`` (NaN where not converged), ``converged`` and
    ``core`` (the unknowns a warm start takes, shape ``grid + (K,)``)."""

    value: np.ndarray
    converged: np.ndarray
    core: np.ndarray


#: reduced values whose estimated rounding error exceeds ``REDUCED_RTOL |value| + REDUCED_ATOL``
#: are re-solved by the raw system (small ``|z|`` next to the atom at 0, where the reduced
#: read-outs of ``C^T R C`` cancel; the raw system inverts the linearisation numerically and
#: keeps its digits).  The absolute part: the traces are O(1) and the contour weights O(|z|/N),
#: so 1e-13 per node is far below the quadrature tolerances.
REDUCED_RTOL, REDUCED_ATOL = 1e-11, 1e-13


def _solve_many(kind: str, names, params: dict, init=None, engine: str | None = None, check: bool = True,
                **extra) -> dict:
    """``{name: _Traces}`` for traces of one group at the broadcast grid of ``params``
    (and ``extra``, the spectral parameters).  ``init``: warm start, ``grid + (K,)`` in the
    engine's unknowns (Newton only; points that fail are re-solved from the cold start).
    Reduced points that do not converge are re-solved by the raw system (which may flag them
    too); with ``check``, so are the reduced values whose rounding estimate exceeds
    :data:`REDUCED_RTOL` (and ``REDUCED_ATOL``).  ``core`` is the reduced core (NaN-free only where it converged)."""
    engine = ENGINE if engine is None else engine
    if engine not in ("reduced", "raw"):
        raise ValueError(f"engine must be 'reduced' or 'raw', got {engine!r}")
    allp = dict(params, **extra)
    if engine == "raw":
        out = {}
        for name in names:
            s = _solver(kind, name)
            sol = s.solve({k: v for k, v in allp.items() if k in s.param_names}, throw=False, init=init)
            out[name] = _Traces(sol.value, sol.converged, sol.tau)
        return out
    group = _GROUP_OF[names[0]]
    if any(_GROUP_OF[n] != group for n in names):
        raise ValueError(f"traces {names} are not of one group")
    S = _reduced_solver(kind, group)
    p = {k: v for k, v in allp.items() if k in S.param_names}
    kw = dict(throw=False, estimate_error=check and group != "moments")
    sol = S.solve(p, init=None if init is None else np.moveaxis(np.asarray(init), -1, 0), **kw)
    vals, conv, core = dict(sol.values), sol.converged.copy(), sol.core.copy()
    err = dict(sol.error) if sol.error is not None else None
    if init is not None and not conv.all():  # warm start failed: cold start at those points
        bad = np.nonzero(~conv)
        cold = S.solve({k: np.broadcast_to(v, conv.shape)[bad] for k, v in p.items()}, **kw)
        for name in vals:
            vals[name][bad] = cold.values[name]
            if err is not None:
                err[name][bad] = cold.error[name]
        conv[bad], core[bad] = cold.converged, cold.core
    out = {name: _Traces(vals[name], conv.copy(), core) for name in names}
    for name in names:
        # by the raw system: points the reduced core did not resolve (next to the real axis,
        # or at tiny |z| where Newton stalls just above its tolerance), and points whose digits
        # were lost to cancellation (rounding estimate)
        lost = ~conv
        if err is not None:
            lost = lost | (conv & ~(err[name] <= REDUCED_RTOL * np.abs(vals[name]) + REDUCED_ATOL))
        if lost.any():
            idx = np.nonzero(lost)
            raw = _solve_many(kind, (name,), {k: np.broadcast_to(v, conv.shape)[idx] for k, v in allp.items()},
                              engine="raw")[name]
            out[name].value = out[name].value.copy()
            out[name].value[idx] = raw.value
            out[name].converged[idx] = raw.converged
    return out


def _solve(kind: str, name: str, params: dict, init=None, engine: str | None = None, check: bool = True,
           **extra) -> _Traces:
    """One trace (see :func:`_solve_many`)."""
    return _solve_many(kind, (name,), params, init=init, engine=engine, check=check, **extra)[name]


# -- filters -----------------------------------------------------------------------------

def g_T(x, T, lam):
    """``g_T(x) = (1 - e^{-T(x + lam)})/(x + lam)`` (``-expm1`` form, exact at ``x = -lam``);
    ``T = inf`` gives ``1/(x + lam)``.  ``x`` may be complex.

    >>> float(g_T(0.0, 2.0, 0.0)), float(g_T(1.0, np.inf, 1.0))
    (2.0, 0.5)
    """
    x = np.asarray(x)
    s = x + lam
    if np.isinf(T):
        return 1.0 / s
    u = -T * s
    small = np.abs(u) < 1e-8
    with np.errstate(invalid="ignore", divide="ignore"):
        val = -np.expm1(u) / np.where(small, 1.0, s)
    return np.where(small, T * (1 + u / 2), val)


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


# -- contour ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Contour:
    """Ellipse in ``w = log z`` (module docstring); ``nodes`` z_k, ``weights`` such that
    ``(1/2 pi i) oint h(z) dz ~ sum_k weights_k h(z_k)``."""

    x_lo: float
    x_hi: float
    rho: float
    n_nodes: int
    nodes: np.ndarray
    weights: np.ndarray

    @classmethod
    def log_ellipse(cls, x_lo: float, x_hi: float, n_nodes: int, rho: float | None = None) -> "Contour":
        if not (0 < x_lo < x_hi) or n_nodes % 4:
            raise ValueError("need 0 < x_lo < x_hi and a node count divisible by 4")
        c = 0.5 * (math.log(x_lo) + math.log(x_hi))
        f = 0.5 * (math.log(x_hi) - math.log(x_lo))
        if rho is None:
            rho = 0.5 * math.asinh(0.9 * (math.pi / 2) / f)
        theta = 2 * np.pi * np.arange(n_nodes) / n_nodes
        w = c + f * np.cos(theta - 1j * rho)
        dw = -f * np.sin(theta - 1j * rho)
        z = np.exp(w)
        return cls(x_lo, x_hi, rho, n_nodes, z, z * dw / (1j * n_nodes))


def _column(params: dict) -> dict:
    """Parameters of ``G`` points as ``(G, 1)`` columns (broadcast against node axes)."""
    return {k: (np.asarray(v)[:, None] if np.ndim(v) else v) for k, v in params.items()}


def _edge_indices(mass_per_log, conv, psi):
    """Grid indices ``(lo, hi)`` of the support edges of one point, or ``None`` (no bulk)."""
    inside = np.nonzero(mass_per_log > 1e-5 * psi)[0]
    if not len(inside):
        return None
    lo, hi = inside[0], inside[-1]
    # points where the near-real solve did not converge (next to a square-root edge, or deep
    # in the atom at 0) are unknown: the edges move outwards over unknown neighbours, and
    # any part of the spectrum still missed fails the mass check of the contour
    while lo > 0 and not conv[lo - 1]:
        lo -= 1
    while hi < len(conv) - 1 and not conv[hi + 1]:
        hi += 1
    return lo, hi


def _bulk_edges(kind: str, params: dict, scale: np.ndarray, per_decade: int = 10):
    """Edges of the non-zero spectrum of ``K`` from its density ``Im tr R(x + i0)/pi`` on a log
    grid (the atom at 0 carries ``x rho(x) ~ mass eta / pi``, far below the threshold), for
    ``G`` parameter points at once: arrays ``x_lo, x_hi, ok`` of length ``G``.

    Solved by the raw systems whatever :data:`ENGINE`: next to a square-root edge the near-real
    solves are ill-conditioned, and the reduced core resolves some points that the raw solver
    flags (and the other way round); the edges read these flags, so the contours would move.
    (Re-solving by the raw system only the points next to each detected edge reproduces the
    raw edges but costs as much: the time goes into those same hard points.)"""
    x = scale[:, None] * np.logspace(-7, 4, 11 * per_decade + 1)[None, :]
    sol = _solve(kind, "resolvent", _column(params), engine="raw", z1=x * (1 + 1e-9j))
    mass_per_log = x * np.abs(np.nan_to_num(sol.value.imag)) / np.pi
    G, nx = x.shape
    psi = np.broadcast_to(np.asarray(params["psi_p"], dtype=float), (G,))
    x_lo, x_hi, ok = np.full(G, np.nan), np.full(G, np.nan), np.zeros(G, dtype=bool)
    for g in range(G):
        e = _edge_indices(mass_per_log[g], sol.converged[g], psi[g])
        if e is None:
            continue
        lo, hi = e
        ok[g] = 0 < lo and hi < nx - 1
        x_lo[g], x_hi[g] = x[g, max(lo - 1, 0)], x[g, min(hi + 1, nx - 1)]
    return x_lo, x_hi, ok


@dataclass
class _Level:
    """Trace values of ``G`` parameter points on their contours with ``n_nodes`` nodes each
    (shared by every ``T`` and ``lam``)."""

    n_nodes: int
    nodes: np.ndarray       # (G, N)
    weights: np.ndarray     # (G, N)
    s1: np.ndarray          # (G, N) or None
    s2: np.ndarray          # (G, N)
    q: np.ndarray           # (G, N, N) or None
    ok: np.ndarray          # (G,)
    mass_error: np.ndarray  # (G,)

    def take(self, sel) -> "_Level":
        pick = (lambda a: None if a is None else a[sel])
        return _Level(self.n_nodes, self.nodes[sel], self.weights[sel], pick(self.s1), self.s2[sel],
                      pick(self.q), self.ok[sel], self.mass_error[sel])


def _pair_orbits(n: int):
    """Unique representatives of index pairs ``(i, j)`` under swap ``(j, i)`` and conjugation
    ``(-i, -j)`` (the contour is symmetric about the real axis and ``q`` is symmetric)."""
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    cand = np.stack([np.stack([i, j]), np.stack([j, i]), np.stack([(-i) % n, (-j) % n]),
                     np.stack([(-j) % n, (-i) % n])])          # (4, 2, n, n)
    key = cand[:, 0] * n + cand[:, 1]
    which = np.argmin(key, axis=0)
    rep = np.take_along_axis(key, which[None], 0)[0]
    conj = which >= 2
    uniq, inv = np.unique(rep, return_inverse=True)
    return uniq // n, uniq % n, inv.reshape(n, n), conj


@lru_cache(maxsize=None)
def _q_structure(kind: str, engine: str):
    """Which unknowns of the two-resolvent system (the raw ``tau`` or the reduced core) depend
    on ``z1`` only and which on ``z2`` only (boolean masks), read off three probe solves at
    ``(a, b), (a, c), (c, b)``; ``None`` if the probe fails.  Used only to build warm starts
    (the solver verifies every solution)."""
    probe = dict(psi_n=1.0, psi_p=2.0, m=3.0, a=0.8, Delta=0.36, mu1=0.5, mu_star=0.6, mu_s=0.3, mu_f=0.5)
    a, b, c = 0.3 + 0.2j, 1.1 - 0.4j, 0.7 + 0.9j
    try:
        S = _solver(kind, "q") if engine == "raw" else _reduced_solver(kind, "q")
        sol = _solve(kind, "q", {k: v for k, v in probe.items() if k in S.param_names}, engine=engine,
                     check=False, z1=np.array([a, a, c]), z2=np.array([b, c, b]))
        if not (np.all(sol.converged) and np.all(np.isfinite(sol.core))):
            return None
        t1, t2, t3 = sol.core
    except (AttributeError, ValueError, TypeError):
        return None
    close = (lambda x, y: np.abs(x - y) <= 1e-9 * np.maximum(1.0, np.abs(x)))
    return close(t1, t2) & ~close(t1, t3), close(t1, t3) & ~close(t1, t2)


def _solve_q(kind: str, col: dict, z: np.ndarray, ii: np.ndarray, jj: np.ndarray):
    """The two-resolvent trace at the node pairs ``(z[:, ii], z[:, jj])`` of ``G`` contours.

    Warm start: the unknowns that depend on one spectral parameter only are taken from the
    solves at the diagonal pairs ``(z_i, z_i)``; the solver then runs Newton and verifies the
    residual (points that fail are re-solved from the cold start by the solver itself)."""
    if not len(ii):
        return _solve(kind, "q", col, z1=z[:, :0], z2=z[:, :0])
    structure = _q_structure(kind, ENGINE)
    if structure is None:
        return _solve(kind, "q", col, z1=z[:, ii], z2=z[:, jj])
    _, only2 = structure
    diag = _solve(kind, "q", col, check=False, z1=z, z2=z)
    if not (np.all(diag.converged) and np.all(np.isfinite(diag.core))):
        return _solve(kind, "q", col, z1=z[:, ii], z2=z[:, jj])
    init = np.where(only2, diag.core[:, jj], diag.core[:, ii])
    return _solve(kind, "q", col, z1=z[:, ii], z2=z[:, jj], init=init)


def _level(kind: str, params: dict, x_lo, x_hi, n_nodes: int, prev: "_Level | None", with_q: bool,
           kappa: float = 1.6) -> _Level:
    """Solve the traces on the log-ellipses of ``G`` points (``params`` arrays of length ``G``);
    ``prev`` (the same contours with half the nodes) supplies the values at the even nodes."""
    G = len(x_lo)
    cts = [Contour.log_ellipse(lo / kappa, hi * kappa, n_nodes) for lo, hi in zip(x_lo, x_hi)]
    z = np.array([c.nodes for c in cts]).reshape(G, n_nodes)
    wts = np.array([c.weights for c in cts]).reshape(G, n_nodes)
    col = _column(params)
    names = ("s1", "s2", "resolvent") if with_q else ("s2", "resolvent")
    sols = _solve_many(kind, names, col, z1=z)
    ok = np.all([s.converged for s in sols.values()], axis=(0, 2))
    q = None
    if with_q:
        ii, jj, inv, conj = _pair_orbits(n_nodes)
        rep = np.empty((G, len(ii)), dtype=complex)
        old = ((ii % 2 == 0) & (jj % 2 == 0) if prev is not None and prev.n_nodes * 2 == n_nodes
               else np.zeros(len(ii), bool))
        if old.any():
            rep[:, old] = prev.q[:, ii[old] // 2, jj[old] // 2]
        sq = _solve_q(kind, col, z, ii[~old], jj[~old])
        rep[:, ~old] = sq.value
        ok &= np.all(sq.converged, axis=1)
        q = rep[:, inv]
        q = np.where(conj[None], np.conj(q), q)
    # mass check: enclosed mass + atom at 0 = psi_p;
    # atom: -z tr R(z) = atom + c z + O(z^2) at z = -eps, -2 eps (Richardson)
    enclosed = -np.sum(wts * sols["resolvent"].value, axis=1).real
    eps = 1e-5 * x_lo
    atom = _solve(kind, "resolvent", col, z1=-eps[:, None] * np.array([1.0, 2.0]))
    f = eps[:, None] * np.array([1.0, 2.0]) * atom.value.real
    atom_mass = np.where(np.all(atom.converged, axis=1), 2 * f[:, 0] - f[:, 1], np.nan)
    psi = np.broadcast_to(np.asarray(params["psi_p"], dtype=float), (G,))
    mass_error = np.abs(enclosed + atom_mass - psi)
    return _Level(n_nodes, z, wts, sols["s1"].value if with_q else None, sols["s2"].value, q,
                  ok & np.isfinite(mass_error), np.nan_to_num(mass_error, nan=np.inf))


def _integrate(lv: _Level, g: int, T, lam, Delta: float, step: int):
    """Test (None without ``q``) and train errors of point ``g`` for arrays ``T``, ``lam`` (same
    shape), with every ``step``-th node."""
    z, w = lv.nodes[g, ::step], lv.weights[g, ::step] * step
    T = np.asarray(T, dtype=float).reshape(-1)
    lam = np.asarray(lam, dtype=float).reshape(-1)
    gz = np.stack([g_T(z, Tk, lk) for Tk, lk in zip(T, lam)])        # (k, nodes)
    train = 1 + ((2 * gz - z * gz * gz) * w) @ lv.s2[g, ::step]
    if lv.q is None:
        return None, train
    wg = gz * w
    lin = wg @ lv.s1[g, ::step]
    quad = np.einsum("ki,ij,kj->k", wg, lv.q[g, ::step, ::step], wg)
    return Delta + quad + 2 * math.sqrt(Delta) * lin, train


def flow_gradient_at_zero(theory, psi_n, psi_p, t, m) -> tuple[float, float]:
    """``(dE_test/dT, dE_train/dT)`` at ``T = 0``: ``-2 sqrt(Delta) tr(C^T V)`` and ``-2 tr(C^T C)``
    (module docstring), from the engine-derived traces without resolvent."""
    m = parse_m(m)
    params = theory.solver_params(psi_n, psi_p, t, 1.0, m)
    kind = m_kind(m)
    vals = [_solve(kind, k, params) for k in ("moment_test", "moment_train")]
    if not all(bool(v.converged) for v in vals):
        raise ConvergenceError("the moments at T = 0 did not converge", vals[0])
    Delta = float(params["Delta"])
    return (-2 * math.sqrt(Delta) * float(np.real(vals[0].value)), -2 * float(np.real(vals[1].value)))


# -- public API -------------------------------------------------------------------------------

@dataclass(frozen=True)
class TimeErrors:
    """Learning curves at training times ``T`` (arrays of the broadcast shape).

    ``test``, ``train``, ``dsm_test_loss``: NaN where not resolved; ``test_error``,
    ``train_error``: quadrature error estimates (difference between the rule on all nodes and
    on every other node; the real parts of the complex sums, whose imaginary parts are also
    folded in); ``converged``: traces converged, mass check passed and estimates ``<= tol``;
    ``nodes``: contour nodes used per point; ``mass_error``: the mass check per point.
    """

    test: np.ndarray
    train: np.ndarray
    dsm_test_loss: np.ndarray
    test_error: np.ndarray
    train_error: np.ndarray
    converged: np.ndarray
    nodes: np.ndarray
    mass_error: np.ndarray


def errors_at_time(theory, psi_n, psi_p, t, lam, m, train_time, *, tol: float = 1e-8, nodes: int | None = None,
                   max_nodes: int = 512, quantities=("test", "train")) -> TimeErrors:
    """Test error, train error and DSM test loss of gradient flow stopped at ``train_time``.

    All arguments broadcast; ``train_time`` ``T >= 0`` (``math.inf``: the ridge solution,
    or the minimum-norm interpolator at ``lam = 0``); ``lam >= 0``.  One contour solve per
    distinct ``(psi_n, psi_p, t, m)`` serves every ``T`` and ``lam``.  ``tol``: the absolute
    accuracy a value must have, by its quadrature error estimate, not to be flagged; the
    number of contour nodes doubles from 32 until every requested value meets it (at most
    ``max_nodes``), or is fixed by ``nodes`` (divisible by 4).  ``quantities=("train",)`` skips
    the two-resolvent trace (the test error is then NaN): enough for memorisation times.
    Exactly at ``T = 0`` the values are ``Delta_t`` and 1 (``B = 0``).

    >>> import pencils
    >>> e = errors_at_time(pencils.build("relu"), 2.0, 0.5, 0.5, 1e-3, "inf", [0.0, 10.0, 1000.0])
    >>> bool(e.converged.all()), float(e.test[0]) == -math.expm1(-1.0)
    (True, True)
    """
    arrays = [np.asarray(x, dtype=float) for x in (psi_n, psi_p, t, lam, train_time)]
    for name, x in zip(("psi_n", "psi_p", "t"), arrays[:3]):
        check_real_array(name, x)
    check_real_array("lam", arrays[3], allow_zero=True)
    check_real_array("train_time", arrays[4], allow_zero=True, allow_inf=True)
    if quantities not in (("test", "train"), ("train",)):
        raise ValueError(f"quantities must be ('test', 'train') or ('train',), got {quantities!r}")
    with_test = "test" in quantities
    if nodes is not None and (int(nodes) != nodes or nodes < 8 or nodes % 4):
        raise ValueError(f"nodes must be an integer >= 8 divisible by 4, got {nodes!r}")
    m_arr = np.asarray(m, dtype=object)
    m_vals = np.vectorize(parse_m, otypes=[float])(m_arr) if m_arr.ndim else np.asarray(parse_m(m_arr.item()))
    shape = np.broadcast_shapes(*(x.shape for x in arrays), m_vals.shape)
    pn, pp, tt, ll, TT, mm = (np.broadcast_to(x, shape).reshape(-1) for x in (*arrays, m_vals))
    size = pn.size
    out = {k: np.full(size, np.nan) for k in ("test", "train", "test_error", "train_error", "mass_error")}
    conv = np.zeros(size, dtype=bool)
    used = np.zeros(size, dtype=int)
    keys = np.stack([pn, pp, tt, mm], axis=1)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    kinds = np.array([m_kind(v) for v in uniq[:, 3]])
    for kind in ("1", "finite", "inf"):
        gs = np.nonzero(kinds == kind)[0]
        if not len(gs):
            continue
        U = uniq[gs]
        m_par = U[:, 3] if kind == "finite" else (1 if kind == "1" else math.inf)
        raw = theory.solver_params(U[:, 0], U[:, 1], U[:, 2], 1.0, m_par)
        params = {k: np.broadcast_to(np.asarray(v, dtype=float), (len(gs),)).copy() for k, v in raw.items()}
        Delta = params["Delta"]
        scale = params["mu1"] ** 2 + params["mu_star"] ** 2
        x_lo, x_hi, ok = _bulk_edges(kind, params, scale)
        if kind == "inf":
            # K = Ubar = mu_f^2 + (rank n + d): an atom at mu_f^2 of mass psi_p - psi_n - 1 when
            # p > n + d, which the density scan cannot see; the whole spectrum is >= mu_f^2
            mf2 = params["mu_f"] ** 2
            x_lo = np.where(mf2 > 0, np.minimum(x_lo, mf2), x_lo)
        sels = [np.nonzero(inv == g)[0] for g in gs]
        for k in np.nonzero(~ok)[0]:          # no bulk found: nothing to integrate on
            out["mass_error"][sels[k]] = np.inf
        for k, sel in enumerate(sels):        # T = 0 is exact (B = 0); the rest NaN until resolved
            zero = sel[TT[sel] == 0]
            out["train"][zero], out["train_error"][zero], conv[zero] = 1.0, 0.0, True
            if with_test:
                out["test"][zero], out["test_error"][zero] = Delta[k], 0.0
        active = np.nonzero(ok)[0]
        n_k, prev = (int(nodes) if nodes is not None else 32), None
        while len(active):
            lv = _level(kind, {q: v[active] for q, v in params.items()}, x_lo[active], x_hi[active], n_k,
                        prev, with_test)
            again = []
            for a_idx, k in enumerate(active):
                sel = sels[k]
                sel = sel[TT[sel] != 0]
                if not lv.ok[a_idx]:
                    out["mass_error"][sels[k]] = lv.mass_error[a_idx]
                    used[sels[k]] = n_k
                    continue
                T, L = TT[sel], ll[sel]
                test, train = _integrate(lv, a_idx, T, L, Delta[k], 1)
                test2, train2 = _integrate(lv, a_idx, T, L, Delta[k], 2)
                e_train = np.abs(train - train2) + np.abs(train.imag)
                good = (e_train <= tol) & (lv.mass_error[a_idx] <= max(1e-6, tol) * params["psi_p"][k])
                if with_test:
                    e_test = np.abs(test - test2) + np.abs(test.imag)
                    good &= e_test <= tol
                if nodes is None and not good.all() and 2 * n_k <= max_nodes:
                    again.append(a_idx)
                    continue
                if with_test:
                    out["test"][sel] = np.where(good, test.real, np.nan)
                    out["test_error"][sel] = e_test
                out["train"][sel] = np.where(good, train.real, np.nan)
                out["train_error"][sel] = e_train
                conv[sel] = good
                out["mass_error"][sels[k]] = lv.mass_error[a_idx]
                used[sels[k]] = n_k
            prev = lv.take(np.array(again, dtype=int)) if again else None
            active = active[np.array(again, dtype=int)] if again else active[:0]
            n_k *= 2
    a_sq = np.exp(-2.0 * tt)
    return TimeErrors(test=out["test"].reshape(shape), train=out["train"].reshape(shape),
                      dsm_test_loss=(out["test"] + a_sq).reshape(shape),
                      test_error=out["test_error"].reshape(shape), train_error=out["train_error"].reshape(shape),
                      converged=conv.reshape(shape), nodes=used.reshape(shape),
                      mass_error=out["mass_error"].reshape(shape))


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
