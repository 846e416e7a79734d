"""The filter ``g_T``, the log-ellipse contours around the bulk of ``K`` and the nested trapezoid
rule on them (see :mod:`derivations.training_time`, "Contour and quadrature").
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .traces import _solve, _solve_many, _solve_q


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
