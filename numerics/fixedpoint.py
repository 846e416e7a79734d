"""The raw-system solver, the reference and fallback (the learning curves run on
:mod:`numerics.reduced`; this one serves the classic derivations, the training-time bulk
edges and the tests): vectorised numpy for the block fixed-point systems of
:mod:`pencils.freeprob`:

    tau = ell(G(tau)),   G(tau) = (L0 - sum_q tau_q P_q)^{-1},

broadcast over any grid of parameters.  Per grid point the ``N x N`` matrix is
inverted numerically (batched ``numpy.linalg.inv``); nothing symbolic is inverted.

Algorithm (per strongly connected component of the unknowns, in dependency order):

* start: ``tau = ell(L0^{-1})`` (the large-spectral-argument / large-ridge limit),
  or a user warm start ``init``;
* components whose sub-systems are identical (same sympy sub-matrix of ``L0 -
  eta(tau)`` on their blocks and same forms ``ell``, unknowns matched in order;
  typical of pencils holding several copies of one resolvent) are solved once and
  the solution is copied (``dedupe=False`` solves every copy);
* each component works on its own blocks only (``L0`` restricted, already solved
  unknowns folded in), and only the columns of ``G`` it reads are computed;
* damped fixed-point iteration ``tau <- tau + damping * (ell(G(tau)) - tau)``,
  optionally with Anderson acceleration (``anderson=m`` keeps ``m`` past
  residuals; off by default; refused for complex problems, where it was seen to
  converge to the non-physical branch of the Marchenko-Pastur equation), until the
  relative residual is below the loose ``fp_tol`` (default ``1e-2``): the
  fixed-point map selects the physical branch, which Newton then keeps;
* Newton with the exact Jacobian ``d ell_q / d tau_p = sum W_q ⊙ (G P_p G)``
  (from ``dG = G dEta G``) and step halving;
* a point that is unconverged, or whose fixed point is not attracting for the
  damped map (a non-physical root), is re-solved by the plain damped iteration
  to ``1e-4`` + Newton from the cold start;
* components whose unknowns enter affinely (read-outs of block-triangular pencils)
  skip the fixed-point stage: one Newton step solves them;
* every equation is re-evaluated at the final ``tau`` (block-wise, which is exact
  by block-triangularity); points above ``tol`` get one more warm pass with
  per-component Newton polish before being flagged;
* warm starts: ``init=`` (Newton directly; points that fail are re-solved
  cold) and ``continuation_axis=axis`` (sweep one grid axis, each slice starting
  from the previous one).

Every point gets a relative residual ``max|tau - ell(G(tau))| / max(1, max|tau|)``,
an iteration count and a ``converged`` flag (residual ``<= tol`` and finite).
With ``throw=True`` (default) any unconverged point raises
:class:`ConvergenceError`; with ``throw=False`` the values of unconverged points
are NaN and flagged.  Nothing unconverged is returned silently.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy

from pencils.freeprob import FixedPointSystem

from ._errors import ConvergenceError
from .codegen.python import build_function, layout
from .linalg import safe_cols, safe_inv, safe_solve

__all__ = ["Solver", "Solution", "ConvergenceError", "compile"]

_METHODS = ("newton", "fixed_point")


@dataclass(frozen=True)
class Solution:
    """Solution on a grid (arrays of the broadcast parameter shape).

    ``value``: the read-out (normalised trace), NaN where not converged;
    ``tau``: unknowns, shape ``grid + (Q,)``; ``residual``, ``iterations``,
    ``converged``: per-point diagnostics; ``relative_error``: estimated relative rounding
    error of ``value`` when requested (a small residual does not bound it: near a
    singular point the equations are ill-conditioned).
    """

    value: np.ndarray | None
    tau: np.ndarray
    residual: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray
    #: estimated *relative* rounding error of ``value`` (``solve(..., estimate_error=True)``), else None
    relative_error: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        return bool(np.all(self.converged))


class _Batch:
    """Coefficient arrays of a flat batch of parameter points."""

    def __init__(self, L0, Pv, Wv, Rv, c0):
        self.L0, self.Pv, self.Wv, self.Rv, self.c0 = L0, Pv, Wv, Rv, c0

    def take(self, idx) -> "_Batch":
        return _Batch(self.L0[idx], self.Pv[idx], self.Wv[idx],
                      None if self.Rv is None else self.Rv[idx],
                      None if self.c0 is None else self.c0[idx])

    @property
    def size(self) -> int:
        return self.L0.shape[0]


class _Part:
    """One component's coefficients restricted to its blocks ``S``: ``M0`` (``L0`` minus
    the terms of already solved unknowns), its own ``P`` entries and its ``W`` entries."""

    __slots__ = ("M0", "Pv", "Wv")

    def __init__(self, M0, Pv, Wv):
        self.M0, self.Pv, self.Wv = M0, Pv, Wv

    def take(self, idx) -> "_Part":
        return _Part(self.M0[idx], self.Pv[idx], self.Wv[idx])

    @property
    def size(self) -> int:
        return self.M0.shape[0]


class Solver:
    """Compiled, vectorised solver of one :class:`FixedPointSystem` (see module doc).

    >>> import sympy
    >>> from pencils.expr import Space, D, gaussian, inverse, trace
    >>> from pencils.freeprob import equations
    >>> g, z = sympy.symbols("gamma z", positive=True)
    >>> X = gaussian("X", Space("n", 1 / g), D)
    >>> solver = compile(equations(trace(inverse(g * X.T @ X + z))))
    >>> sol = solver.solve(gamma=0.5, z=[1.0, 2.0])
    >>> bool(sol.converged.all()), sol.value.shape
    (True, (2,))
    """

    def __init__(self, system: FixedPointSystem):
        if not isinstance(system, FixedPointSystem):
            raise ValueError("compile needs a FixedPointSystem (see pencils.freeprob.equations)")
        self.system = system
        self.layout, _ = layout(system)
        self._f = build_function(system, "numpy")
        self.param_names = tuple(p.name for p in system.params)
        self.positive = set(system.positive)
        lay = self.layout
        self.N, self.Q = system.size, system.n_unknowns
        self._Pq = np.array([q for q, _, _ in lay.P], dtype=int)
        self._Pi = np.array([i for _, i, _ in lay.P], dtype=int)
        self._Pj = np.array([j for _, _, j in lay.P], dtype=int)
        self._Wq = np.array([q for q, _, _ in lay.W], dtype=int)
        self._Wi = np.array([i for _, i, _ in lay.W], dtype=int)
        self._Wj = np.array([j for _, _, j in lay.W], dtype=int)
        self._SW = np.zeros((len(lay.W), self.Q))
        self._SW[np.arange(len(lay.W)), self._Wq] = 1.0
        self._Ri = np.array([i for i, _ in lay.R], dtype=int)
        self._Rj = np.array([j for _, j in lay.R], dtype=int)
        self._infos: dict = {}
        self._dups = self._find_duplicates()

    # -- parameters ---------------------------------------------------------
    def _params(self, params: dict, force_complex: bool) -> tuple[list, tuple, bool]:
        missing = [n for n in self.param_names if n not in params]
        unknown = [n for n in params if n not in self.param_names]
        if missing:
            raise ValueError(f"missing parameter(s) {missing}; the system needs {list(self.param_names)}")
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; the system needs {list(self.param_names)}")
        arrays = []
        is_complex = force_complex
        for name in self.param_names:
            a = np.asarray(params[name])
            if a.dtype == object or not np.issubdtype(a.dtype, np.number):
                raise ValueError(f"parameter {name!r} must be numeric")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"parameter {name!r} must be finite")
            if np.iscomplexobj(a):
                is_complex = True
            if name in self.positive:
                if np.iscomplexobj(a) and np.any(a.imag != 0):
                    raise ValueError(f"parameter {name!r} must be real and positive")
                if np.any(np.real(a) <= 0):
                    raise ValueError(f"parameter {name!r} must be positive")
                a = np.real(a)
            arrays.append(a)
        shape = np.broadcast_shapes(*(a.shape for a in arrays)) if arrays else ()
        dtype = complex if is_complex else float
        flat = [np.broadcast_to(a, shape).reshape(-1).astype(dtype) for a in arrays]
        return flat, shape, is_complex

    def _batch(self, flat: list, size: int, dtype) -> _Batch:
        vals = self._f(*flat)
        lay = self.layout
        N = self.N
        k = 0

        def col(v):
            return np.broadcast_to(np.asarray(v, dtype=dtype), (size,))

        L0 = np.zeros((size, N, N), dtype=dtype)
        for (i, j) in lay.L0:
            L0[:, i, j] = col(vals[k]); k += 1
        Pv = np.empty((size, len(lay.P)), dtype=dtype)
        for m in range(len(lay.P)):
            Pv[:, m] = col(vals[k]); k += 1
        Wv = np.empty((size, len(lay.W)), dtype=dtype)
        for m in range(len(lay.W)):
            Wv[:, m] = col(vals[k]); k += 1
        Rv = c0 = None
        if lay.has_constant:
            Rv = np.empty((size, len(lay.R)), dtype=dtype)
            for m in range(len(lay.R)):
                Rv[:, m] = col(vals[k]); k += 1
            c0 = col(vals[k]).copy()
        return _Batch(L0, Pv, Wv, Rv, c0)

    # -- the map --------------------------------------------------------------
    def _M(self, b: _Batch, tau: np.ndarray) -> np.ndarray:
        M = b.L0.copy()
        if len(self._Pq):
            M[:, self._Pi, self._Pj] -= b.Pv * tau[:, self._Pq]
        return M

    def _ell(self, b: _Batch, G: np.ndarray) -> np.ndarray:
        if not len(self._Wq):
            return np.zeros((G.shape[0], self.Q), dtype=G.dtype)
        return (b.Wv * G[:, self._Wi, self._Wj]) @ self._SW

    def _info(self, comp) -> dict:
        """Index bookkeeping for one component, restricted to the blocks that matter.

        ``G_jm`` for the entries ``(j, m)`` read by the component equals the ``(j, m)``
        entry of the inverse of the principal sub-matrix of ``M`` on ``S`` = blocks
        reachable from some ``j`` that reach some ``m`` (``M`` is block-triangular
        with respect to ``S``), so only an ``|S| x |S|`` matrix is inverted.  Terms of
        unknowns outside the component (already solved) are folded into the constant
        part ``M0`` (see :class:`_Part`).  When the equations and the Jacobian read
        few columns of ``G``, only those columns are computed (a linear solve).
        """
        key = tuple(comp)
        if key in self._infos:
            return self._infos[key]
        R = np.array(self.system.reach, dtype=bool)
        cset = set(comp)
        kW = np.array([m for m, q in enumerate(self._Wq) if q in cset], dtype=int)
        js, ms = self._Wi[kW], self._Wj[kW]
        S = np.nonzero(R[js].any(axis=0) & R[:, ms].any(axis=1))[0]
        loc = -np.ones(self.N, dtype=int)
        loc[S] = np.arange(len(S))
        kP = np.array([m for m in range(len(self._Pq)) if loc[self._Pi[m]] >= 0 and loc[self._Pj[m]] >= 0],
                      dtype=int)
        kPc = np.array([m for m in kP if self._Pq[m] in cset], dtype=int)
        kPe = np.array([m for m in kP if self._Pq[m] not in cset], dtype=int)
        pos = {q: k for k, q in enumerate(comp)}
        SW = np.zeros((len(kW), len(comp)))
        SW[np.arange(len(kW)), [pos[q] for q in self._Wq[kW]]] = 1
        SP = np.zeros((len(kPc), len(comp)))
        SP[np.arange(len(kPc)), [pos[q] for q in self._Pq[kPc]]] = 1
        Wi, Wj, Pci, Pcj = loc[js], loc[ms], loc[self._Pi[kPc]], loc[self._Pj[kPc]]
        cols = np.unique(np.concatenate([Wj, Pci])).astype(int)
        if len(cols) > 0.6 * len(S):
            cols = None  # a full inverse is as cheap
        colpos = np.arange(len(S)) if cols is None else np.full(len(S), -1)
        if cols is not None:
            colpos[cols] = np.arange(len(cols))
        info = dict(S=S, comp=np.array(comp, dtype=int), kW=kW, Wi=Wi, Wj=Wj, Wjc=colpos[Wj], SW=SW,
                    SWT=SW.T.copy(), kPc=kPc, Pci=Pci, Pcic=colpos[Pci], Pcj=Pcj,
                    Pcpos=np.array([pos[q] for q in self._Pq[kPc]], dtype=int), SP=SP,
                    kPe=kPe, Pei=loc[self._Pi[kPe]], Pej=loc[self._Pj[kPe]], Peq=self._Pq[kPe],
                    cols=cols)
        self._infos[key] = info
        return info

    def _readout_info(self) -> dict:
        """Blocks and columns of ``G`` the read-out needs (same restriction as :meth:`_info`)."""
        if "readout" not in self._infos:
            R = np.array(self.system.reach, dtype=bool)
            S = np.nonzero(R[self._Ri].any(axis=0) & R[:, self._Rj].any(axis=1))[0]
            loc = -np.ones(self.N, dtype=int)
            loc[S] = np.arange(len(S))
            kP = np.array([m for m in range(len(self._Pq)) if loc[self._Pi[m]] >= 0 and loc[self._Pj[m]] >= 0],
                          dtype=int)
            Rj = loc[self._Rj]
            cols = np.unique(Rj).astype(int)
            colpos = np.full(len(S), -1)
            colpos[cols] = np.arange(len(cols))
            self._infos["readout"] = dict(S=S, Ri=loc[self._Ri], Rjc=colpos[Rj], cols=cols, kPe=kP,
                                          Pei=loc[self._Pi[kP]], Pej=loc[self._Pj[kP]], Peq=self._Pq[kP],
                                          kPc=np.zeros(0, dtype=int), kW=np.zeros(0, dtype=int))
        return self._infos["readout"]

    def _find_duplicates(self) -> list:
        """Per component, ``None`` or an earlier component it duplicates.

        Two components are duplicates when, with their blocks and unknowns matched in
        increasing order, the sub-matrices ``L0 - eta(tau)`` on their blocks ``S`` and
        the forms ``ell`` are the same sympy expressions, unknowns of earlier
        components (already solved) being identified when they are themselves copies.
        Identical coefficient expressions evaluate to identical numbers, so the
        duplicate has exactly the solution of the original (copied, then verified
        with the whole system's residual).
        """
        sys_ = self.system
        rep = list(range(self.Q))
        seen: dict = {}
        out = []
        # the positions of each P_q's non-zero entries, so that a component only extracts the P_q
        # that touch its blocks (testing every entry of every P_q was quadratic in the pencil)
        support = [[k for k, v in Pq.todok().items() if v != 0] for Pq in sys_.P]
        for comp, lin in zip(sys_.components, sys_.linear):
            info = self._info(comp)
            S = [int(s) for s in info["S"]]
            inside = set(S)
            own = {q: sympy.Symbol(f"u_{k}") for k, q in enumerate(comp)}
            sub = {t: own.get(q, sympy.Symbol(f"v_{rep[q]}")) for q, t in enumerate(sys_.taus)}
            M = sympy.Matrix(sys_.L0).extract(S, S)
            for q, Pq in enumerate(sys_.P):
                if any(i in inside and j in inside for i, j in support[q]):
                    M -= sub[sys_.taus[q]] * Pq.extract(S, S)
            Ws = tuple(sys_.W[q].extract(S, S) for q in comp)
            key = (bool(lin), len(S), sympy.ImmutableMatrix(M), Ws)
            try:
                src = seen.get(key)
            except TypeError:  # unhashable expression: do not deduplicate
                src = None
            if src is None:
                seen[key] = tuple(comp)
                out.append(None)
            else:
                for k, q in enumerate(comp):
                    rep[q] = rep[src[k]]
                out.append(src)
        return out

    @staticmethod
    def _scaled(F: np.ndarray, t: np.ndarray, ok: np.ndarray) -> np.ndarray:
        scale = np.maximum(1.0, np.max(np.abs(t), axis=1)) if t.shape[1] else np.ones(len(t))
        res = np.max(np.abs(F), axis=1) / scale if F.shape[1] else np.zeros(len(F))
        return np.where(ok & np.all(np.isfinite(F), axis=1), res, np.inf)

    def _part(self, b: _Batch, info: dict, tau: np.ndarray) -> "_Part":
        S = info["S"]
        M0 = b.L0[:, S[:, None], S[None, :]]
        if len(info["kPe"]):
            M0[:, info["Pei"], info["Pej"]] -= b.Pv[:, info["kPe"]] * tau[:, info["Peq"]]
        return _Part(M0, b.Pv[:, info["kPc"]], b.Wv[:, info["kW"]])

    def _cold(self, b: _Batch, info: dict) -> np.ndarray:
        """The component's part of the cold start ``ell(L0^{-1})``."""
        S = info["S"]
        G, ok = safe_cols(b.L0[:, S[:, None], S[None, :]], info["cols"])
        t = (b.Wv[:, info["kW"]] * G[:, info["Wi"], info["Wjc"]]) @ info["SW"]
        return np.where(ok[:, None] & np.isfinite(t), t, 0)

    def _presidual(self, info: dict, part: "_Part", t: np.ndarray):
        """``F = t - ell(G(t))``, ``G`` (restricted to the needed columns), scaled residual."""
        M = part.M0.copy()
        if len(info["kPc"]):
            M[:, info["Pci"], info["Pcj"]] -= part.Pv * t[:, info["Pcpos"]]
        G, ok = safe_cols(M, info["cols"])
        F = t - (part.Wv * G[:, info["Wi"], info["Wjc"]]) @ info["SW"]
        return F, G, self._scaled(F, t, ok)

    def _jacobian(self, info: dict, part: "_Part", G: np.ndarray) -> np.ndarray:
        """``I - d ell / d tau`` of the component, from ``d G_jm / d tau_p = (G P_p G)_jm``."""
        c = info["SW"].shape[1]
        J = np.broadcast_to(np.eye(c, dtype=G.dtype), (G.shape[0], c, c)).copy()
        if len(info["kW"]) and len(info["kPc"]):
            Wi, Wjc, Pcic, Pcj = info["Wi"], info["Wjc"], info["Pcic"], info["Pcj"]
            # sum_(a,b) P_ab G_ja G_bm, per (read entry w, P entry p)
            T = (part.Wv[:, :, None] * part.Pv[:, None, :]
                 * G[:, Wi[:, None], Pcic[None, :]] * G[:, Pcj[None, :], Wjc[:, None]])
            J -= info["SWT"] @ T @ info["SP"]
        return J

    def _unstable(self, info: dict, part: "_Part", G: np.ndarray, res: np.ndarray) -> np.ndarray:
        """Points where the fixed point is not attracting for the damped iteration
        (an eigenvalue ``mu`` of ``d ell / d tau`` with ``|1 + damping (mu - 1)| >= 1``):
        a non-physical branch.

        The physical solution is the attracting fixed point selected by the damped
        iteration (Helton, Far and Speicher 2007); Newton from a cold or warm start
        (or Anderson extrapolation) can land on another root, which this detects.
        """
        J = self._jacobian(info, part, G)
        finite = np.all(np.isfinite(J), axis=(1, 2))
        J = np.where(finite[:, None, None], J, np.eye(J.shape[1]))  # one bad point must not poison the batch
        try:
            ev = 1 - np.linalg.eigvals(J)
        except np.linalg.LinAlgError:
            return np.ones(part.size, dtype=bool)
        ev = np.where(finite[:, None], ev, np.inf)
        w = self._damping
        return ~(np.max(np.abs(1 + w * (ev - 1)), axis=1) < 1 - 1e-12) | ~np.isfinite(res)

    # -- stages (on one component's restricted coefficients) ------------------
    def _fixed_point(self, info, part, t, opts, its):
        damping, m, fp_tol, fp_maxiter = opts["damping"], opts["anderson"], opts["fp_tol"], opts["fp_maxiter"]
        t = t.copy()
        active = np.arange(part.size)
        hist_x: list = []
        hist_f: list = []
        for _ in range(fp_maxiter):
            if not len(active):
                break
            sub = part if len(active) == part.size else part.take(active)
            F, _, res = self._presidual(info, sub, t[active])
            keep = ~((res <= fp_tol) | ~np.isfinite(res))
            if not keep.all():
                if hist_x:
                    hist_x = [h[keep] for h in hist_x]
                    hist_f = [h[keep] for h in hist_f]
                active, F = active[keep], F[keep]
            if not len(active):
                break
            x = t[active]
            g = -F  # ell(G) - tau
            step = x + damping * g
            if m > 0:
                hist_x.append(x.copy()); hist_f.append(g.copy())
                if len(hist_x) > m + 1:
                    hist_x.pop(0); hist_f.pop(0)
                if len(hist_x) >= 2:
                    dX = np.stack([hist_x[k + 1] - hist_x[k] for k in range(len(hist_x) - 1)], axis=2)
                    dF = np.stack([hist_f[k + 1] - hist_f[k] for k in range(len(hist_f) - 1)], axis=2)
                    A = np.conj(np.swapaxes(dF, 1, 2)) @ dF
                    reg = 1e-10 * np.trace(np.abs(A), axis1=1, axis2=2)[:, None, None] + 1e-300
                    A = A + reg * np.eye(A.shape[1])
                    gam = safe_solve(A, (np.conj(np.swapaxes(dF, 1, 2)) @ g[:, :, None])[:, :, 0])
                    acc = step - ((dX + damping * dF) @ gam[:, :, None])[:, :, 0]
                    good = np.all(np.isfinite(acc), axis=1)
                    step = np.where(good[:, None], acc, step)
            t[active] = step
            its[active] += 1
        return t

    def _newton(self, info, part, t, its, newton_maxiter, tol_polish):
        """Newton with the exact Jacobian and step halving (a step is taken only if it
        lowers the residual; points where none does have stagnated and stop).
        Returns ``t, F, G, res`` at the last accepted point."""
        t = t.copy()
        F, G, res = self._presidual(info, part, t)
        active = np.nonzero((res > tol_polish) & np.isfinite(res))[0]
        for _ in range(newton_maxiter):
            if not len(active):
                break
            sub = part if len(active) == part.size else part.take(active)
            ra = res[active]
            delta = safe_solve(self._jacobian(info, sub, G[active]), -F[active])
            x0 = t[active]
            moved = np.zeros(len(active), dtype=bool)
            pend = np.arange(len(active))
            step = 1.0
            for _half in range(6):
                s2 = sub if len(pend) == len(active) else sub.take(pend)
                trial = x0[pend] + step * delta[pend]
                Ft, Gt, rt = self._presidual(info, s2, trial)
                better = rt < ra[pend]
                gi = active[pend[better]]
                t[gi], F[gi], G[gi], res[gi] = trial[better], Ft[better], Gt[better], rt[better]
                moved[pend[better]] = True
                pend = pend[~better]
                if not len(pend):
                    break
                step *= 0.5
            its[active] += 1
            active = active[moved]
            active = active[res[active] > tol_polish]
        return t, F, G, res

    def _solve_component(self, info, part, t, opts, its, warm):
        """Solve one non-linear component from ``t``; returns ``t, G, res``."""
        tol_polish = 1e-3 * opts["tol"]
        method = "newton" if warm else opts["method"]
        if method == "fixed_point":
            t = self._fixed_point(info, part, t, dict(opts, fp_tol=tol_polish), its)
            F, G, res = self._presidual(info, part, t)
            return t, G, res
        if method == "newton":
            t = self._fixed_point(info, part, t, opts, its)
        t, _, G, res = self._newton(info, part, t, its, opts["newton_maxiter"], tol_polish)
        return t, G, res

    def _solve_batch(self, b: _Batch, init, opts, careful: bool = False) -> tuple:
        """Solve the components in order; the residual of every equation is then
        re-evaluated at the final ``tau`` (component by component, on the sub-blocks
        where ``G`` is exact, see :meth:`_info`), so a point is flagged converged only
        if the whole system holds to ``tol``."""
        self._damping = opts["damping"]
        its = np.zeros(b.size, dtype=int)
        warm = init is not None
        tau = init.copy() if warm else np.zeros((b.size, self.Q), dtype=b.L0.dtype)
        bad = np.zeros(b.size, dtype=bool)
        res = np.zeros(b.size)
        tol_polish = 1e-3 * opts["tol"]
        dups = self._dups if opts["dedupe"] else [None] * len(self.system.components)
        for comp, lin, src in zip(self.system.components, self.system.linear, dups):
            comp = list(comp)
            info = self._info(comp)
            part = self._part(b, info, tau)
            if src is not None:  # identical sub-system: same solution, verified below
                t = tau[:, list(src)]
                _, _, r = self._presidual(info, part, t)
            elif lin:
                # ell is affine in the component's unknowns: one Newton step is exact
                t0 = tau[:, comp] if warm else np.zeros((b.size, len(comp)), dtype=tau.dtype)
                F, G, _ = self._presidual(info, part, t0)
                t = t0 + safe_solve(self._jacobian(info, part, G), -F)
                its += 1
                if careful:
                    t, _, _, r = self._newton(info, part, t, its, 3, tol_polish)
                else:
                    _, _, r = self._presidual(info, part, t)
            else:
                t0 = tau[:, comp] if warm else self._cold(b, info)
                t, G, r = self._solve_component(info, part, t0, opts, its, warm)
                redo = ~(r <= opts["tol"]) | self._unstable(info, part, G, r)
                if redo.any():  # unconverged or non-physical: plain damped iteration from the cold start
                    idx = np.nonzero(redo)[0]
                    sub = part.take(idx)
                    it2 = np.zeros(len(idx), dtype=int)
                    fb = dict(opts, anderson=0, method="newton", fp_tol=max(min(opts["fp_tol"], 1e-4), opts["tol"]))
                    t2, G2, r2 = self._solve_component(info, sub, self._cold(b.take(idx), info), fb, it2, False)
                    t[idx], r[idx] = t2, r2
                    its[idx] += it2
                    bad[idx] |= self._unstable(info, sub, G2, r2)
            tau[:, comp] = t
            res = np.maximum(res, r)
        conv = (res <= opts["tol"]) & ~bad
        if not careful and not conv.all():
            # re-solve the failing points with per-component Newton polish (warm from here)
            idx = np.nonzero(~conv & ~bad)[0]
            if len(idx):
                t2, r2, i2, c2, _ = self._solve_batch(b.take(idx), tau[idx], opts, careful=True)
                better = c2 | (r2 < res[idx])
                k = idx[better]
                tau[k], res[k], conv[k] = t2[better], r2[better], c2[better]
                its[idx] += i2
        value = self._readout(b, tau)
        if value is not None:
            value = np.where(conv, value, np.nan)
        return tau, res, its, conv, value

    def _readout(self, b: _Batch, tau: np.ndarray):
        """``constant + sum readout_ij G_ij`` (``None`` without a read-out)."""
        if b.c0 is None:
            return None
        info = self._readout_info()
        part = self._part(b, info, tau)
        G, _ = safe_cols(part.M0, info["cols"])
        return b.c0 + np.sum(b.Rv * G[:, info["Ri"], info["Rjc"]], axis=1)

    def _check(self, b: _Batch, tau: np.ndarray):
        """Relative residual of the whole system at ``tau`` with the full inverse of
        ``L0 - eta(tau)`` (no block restriction) and the read-out: the reference the
        block-wise evaluation of :meth:`_solve_batch` is tested against."""
        G, ok = safe_inv(self._M(b, tau))
        res = self._scaled(tau - self._ell(b, G), tau, ok)
        value = None if b.c0 is None else b.c0 + np.sum(b.Rv * G[:, self._Ri, self._Rj], axis=1)
        return res, value

    # -- public -------------------------------------------------------------
    def solve(self, params: dict | None = None, /, *, method: str = "newton", damping: float = 0.5,
              anderson: int = 0, tol: float = 1e-12, fp_tol: float = 1e-2, fp_maxiter: int = 5000,
              newton_maxiter: int = 40, init: Any = None, continuation_axis: int | None = None,
              throw: bool = True, chunk: int = 4096, complex: bool = False, dedupe: bool = True,
              estimate_error: bool = False, **kw) -> Solution:
        """Solve on the broadcast grid of the parameters (keywords or a dict).

        ``method``: ``"newton"`` (damped fixed point to the loose ``fp_tol``, then
        Newton to ``tol``) or ``"fixed_point"`` (damped fixed point only).  Whatever the method, a point that
        does not converge or lands on a non-attracting root is re-solved by the damped
        fixed point (+ Newton) from the cold start.  ``damping`` in ``(0, 1]``;
        ``anderson``: Anderson memory (0 = off).  ``init``: warm start, array of
        shape ``grid + (Q,)`` (broadcastable).  ``continuation_axis``: a grid axis to
        sweep with warm starts.  ``fp_maxiter`` / ``newton_maxiter``: fixed-point / Newton
        steps at most (the names of :class:`numerics.options.SolveOptions`).  ``complex``: solve in complex arithmetic even for real
        parameters.  ``dedupe``: solve identical components once (copy the solution).
        ``estimate_error``: also estimate the rounding error of the read-out by
        perturbation (stochastic-arithmetic style, cf. Vignes' CESTAC method): the
        system is solved a second time, from the cold start, with every parameter
        moved by a few ulps (which changes the exact answer by a few ulps times its
        condition number) and ``relative_error = |value' - value| / |value|``.  This doubles the cost.
        """
        params = dict(params or {}, **kw)
        if method not in _METHODS:
            raise ValueError(f"unknown method {method!r} (use one of {_METHODS})")
        if not (0 < damping <= 1):
            raise ValueError(f"damping must be in (0, 1], got {damping}")
        if anderson < 0 or int(anderson) != anderson:
            raise ValueError(f"anderson must be a non-negative integer, got {anderson}")
        if not (tol > 0 and fp_tol > 0):
            raise ValueError("tolerances must be positive")
        opts = dict(method=method, damping=float(damping), anderson=int(anderson), tol=float(tol),
                    fp_tol=max(float(fp_tol), float(tol)), fp_maxiter=int(fp_maxiter),
                    newton_maxiter=int(newton_maxiter), dedupe=bool(dedupe))
        flat, shape, is_complex = self._params(params, complex)
        if anderson and is_complex:
            raise ValueError("anderson acceleration is only available for real problems: with a complex "
                             "spectral argument it can converge to a non-physical branch")
        dtype = np.complex128 if is_complex else np.float64
        size = int(np.prod(shape)) if shape else 1
        if init is not None:
            init = np.asarray(init)
            if np.iscomplexobj(init) and not is_complex:
                if np.any(init.imag != 0):
                    raise ValueError("complex init for a real problem; pass complex=True")
                init = init.real
            try:
                init = np.broadcast_to(init, shape + (self.Q,)).reshape(size, self.Q).astype(dtype)
            except ValueError as exc:
                raise ValueError(f"init must broadcast to {shape + (self.Q,)}") from exc
        tau, res, its, conv, value = self._solve_flat(flat, shape, size, dtype, init, opts, continuation_axis, chunk)
        error = None
        if estimate_error and value is not None:
            eps = np.finfo(float).eps
            moved = [f * (1 + (3 + 2 * k) * eps) for k, f in enumerate(flat)]
            _, _, _, conv2, value2 = self._solve_flat(moved, shape, size, dtype, None, opts, continuation_axis, chunk)
            scale = np.maximum(np.abs(value), np.finfo(float).tiny)
            error = np.where(conv & conv2, np.abs(value2 - value) / scale, np.inf).reshape(shape)
        sol = Solution(None if value is None else value.reshape(shape), tau.reshape(shape + (self.Q,)),
                       res.reshape(shape), its.reshape(shape), conv.reshape(shape), error)
        if throw and not sol.ok:
            bad = np.argwhere(~sol.converged.reshape(shape) if shape else ~sol.converged[None])
            first = tuple(bad[0]) if len(bad) else ()
            where = {n: np.broadcast_to(np.asarray(params[n]), shape)[first] if shape else params[n]
                     for n in self.param_names}
            raise ConvergenceError(
                f"{int(np.sum(~sol.converged))} of {size} points did not converge to residual "
                f"{tol:g}; first at {where} (residual {float(sol.residual.reshape(-1)[np.ravel_multi_index(first, shape) if shape else 0]):.3g}). "
                "Pass throw=False to get flagged results.", sol)
        return sol

    def _solve_flat(self, flat, shape, size, dtype, init, opts, continuation_axis, chunk):
        if continuation_axis is not None:
            return self._continuation(flat, shape, dtype, init, opts, continuation_axis, chunk)
        if size == 0:  # an empty grid: empty results (a batch of none would have no parts to join)
            return (np.empty((0, self.Q), dtype=dtype), np.empty(0), np.empty(0, dtype=int), np.empty(0, dtype=bool),
                    np.empty(0, dtype=dtype) if self.layout.has_constant else None)
        parts = []
        for s in range(0, size, chunk):
            sl = slice(s, min(s + chunk, size))
            b = self._batch([f[sl] for f in flat], sl.stop - sl.start, dtype)
            parts.append(self._solve_batch(b, None if init is None else init[sl], opts))
        return tuple(None if parts[0][k] is None else np.concatenate([p[k] for p in parts])
                     for k in range(5))

    def _continuation(self, flat, shape, dtype, init, opts, axis, chunk):
        if not shape:
            raise ValueError("continuation_axis needs a grid with at least one axis")
        axis = axis % len(shape)
        idx = np.arange(int(np.prod(shape))).reshape(shape)
        idx = np.moveaxis(idx, axis, 0)
        size = idx.size
        tau = np.empty((size, self.Q), dtype=dtype)
        res = np.empty(size)
        its = np.empty(size, dtype=int)
        conv = np.empty(size, dtype=bool)
        value = np.empty(size, dtype=dtype) if self.layout.has_constant else None
        prev = prev2 = None
        for k in range(idx.shape[0]):
            sel = idx[k].reshape(-1)
            b = self._batch([f[sel] for f in flat], len(sel), dtype)
            if prev is None:
                start = None if init is None else init[sel]
            elif prev2 is None:
                start = prev
            else:
                start = 2 * prev - prev2  # linear predictor
            t, r, i, c, v = self._solve_batch(b, start, opts)
            tau[sel], res[sel], its[sel], conv[sel] = t, r, i, c
            if value is not None:
                value[sel] = v
            prev2, prev = prev, np.where(c[:, None], t, prev if prev is not None else t)
        return tau, res, its, conv, value


def compile(system: FixedPointSystem) -> Solver:  # noqa: A001 - the public name of the step
    """Compile a fixed-point system into a vectorised numpy :class:`Solver`."""
    return Solver(system)
