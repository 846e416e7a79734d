"""Vectorised numpy solver for the reduced block fixed-point systems of
:mod:`pencils.freeprob`:

    tau = ell(G(tau)),   G(tau) = (L0 - sum_q tau_q P_q)^{-1},

broadcast over any grid of parameters.  Per grid point the ``N x N`` matrix is
inverted numerically (batched ``numpy.linalg.inv``); nothing symbolic is inverted.

Algorithm (per strongly connected component of the unknowns, in dependency order):

* start: ``tau = ell(L0^{-1})`` (the large-spectral-argument / large-ridge limit),
  or a user warm start ``init``;
* damped fixed-point iteration ``tau <- tau + damping * (ell(G(tau)) - tau)``,
  optionally with Anderson acceleration (``anderson=m`` keeps ``m`` past
  residuals; off by default; refused for complex problems, where it was seen to
  converge to the non-physical branch of the Marchenko-Pastur equation), until the relative residual is below ``fp_tol``;
  the fixed-point map selects the physical branch, which Newton then keeps;
* Newton polish with the exact Jacobian ``d ell_q / d tau_p = sum W_q ⊙
  (G P_p G)`` (from ``dG = G dEta G``) and step halving;
* a converged point whose fixed point is not attracting for the damped map
  (a non-physical root reached by Newton from a warm start) is re-solved cold;
* components whose unknowns enter affinely (read-outs of block-triangular pencils)
  skip the fixed-point stage: one Newton step solves them;
* warm starts: ``init=`` (Newton directly; points that fail are re-solved
  cold) and ``continuation=axis`` (sweep one grid axis, each slice starting
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

from pencils.freeprob import FixedPointSystem

from .codegen import build_function, layout

__all__ = ["Solver", "Solution", "ConvergenceError", "compile"]

_OPTIONS = {"method", "damping", "anderson", "tol", "fp_tol", "maxiter", "newton_maxiter",
            "init", "continuation", "throw", "chunk", "complex"}


class ConvergenceError(RuntimeError):
    """Raised when a fixed point is not found to the requested residual."""

    def __init__(self, message: str, solution: "Solution"):
        super().__init__(message)
        self.solution = solution


@dataclass(frozen=True)
class Solution:
    """Solution on a grid (arrays of the broadcast parameter shape).

    ``value``: the read-out (normalised trace), NaN where not converged;
    ``tau``: unknowns, shape ``grid + (Q,)``; ``residual``, ``iterations``,
    ``converged``: per-point diagnostics.
    """

    value: np.ndarray | None
    tau: np.ndarray
    residual: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray

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


def _safe_inv(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched inverse; singular points get NaN (and ``ok=False``) instead of an exception."""
    try:
        G = np.linalg.inv(M)
        ok = np.all(np.isfinite(G), axis=(-2, -1))
        return G, ok
    except np.linalg.LinAlgError:
        G = np.full_like(M, np.nan)
        ok = np.zeros(M.shape[0], dtype=bool)
        for k in range(M.shape[0]):
            try:
                G[k] = np.linalg.inv(M[k])
                ok[k] = bool(np.all(np.isfinite(G[k])))
            except np.linalg.LinAlgError:
                pass
        return G, ok


def _safe_solve(J: np.ndarray, b: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(J, b[..., None])[..., 0]
    except np.linalg.LinAlgError:
        out = np.full_like(b, np.nan)
        for k in range(J.shape[0]):
            try:
                out[k] = np.linalg.solve(J[k], b[k])
            except np.linalg.LinAlgError:
                pass
        return out


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

    def _info(self, comp: list) -> dict:
        """Index bookkeeping for one component, restricted to the blocks that matter.

        ``G_jm`` for the entries ``(j, m)`` read by the component equals the ``(j, m)``
        entry of the inverse of the principal sub-matrix of ``M`` on ``S`` = blocks
        reachable from some ``j`` that reach some ``m`` (``M`` is block-triangular
        with respect to ``S``), so only an ``|S| x |S|`` matrix is inverted.
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
        pos = {q: k for k, q in enumerate(comp)}
        SW = np.zeros((len(kW), len(comp)))
        SW[np.arange(len(kW)), [pos[q] for q in self._Wq[kW]]] = 1
        SP = np.zeros((len(kPc), len(comp)))
        SP[np.arange(len(kPc)), [pos[q] for q in self._Pq[kPc]]] = 1
        info = dict(S=S, kW=kW, Wi=loc[js], Wj=loc[ms], SW=SW, kP=kP, Pi=loc[self._Pi[kP]],
                    Pj=loc[self._Pj[kP]], Pq=self._Pq[kP], kPc=kPc, Pci=loc[self._Pi[kPc]],
                    Pcj=loc[self._Pj[kPc]], SP=SP)
        self._infos[key] = info
        return info

    @staticmethod
    def _scaled(F: np.ndarray, t: np.ndarray, ok: np.ndarray) -> np.ndarray:
        scale = np.maximum(1.0, np.max(np.abs(t), axis=1)) if t.shape[1] else np.ones(len(t))
        res = np.max(np.abs(F), axis=1) / scale if F.shape[1] else np.zeros(len(F))
        return np.where(ok & np.all(np.isfinite(F), axis=1), res, np.inf)

    def _residual(self, b: _Batch, tau: np.ndarray, comp=None):
        if comp is None:
            G, ok = _safe_inv(self._M(b, tau))
            F = tau - self._ell(b, G)
            return F, G, self._scaled(F, tau, ok)
        info = self._info(comp)
        S = info["S"]
        M = b.L0[:, S[:, None], S[None, :]].copy()
        if len(info["kP"]):
            M[:, info["Pi"], info["Pj"]] -= b.Pv[:, info["kP"]] * tau[:, info["Pq"]]
        G, ok = _safe_inv(M)
        ell = (b.Wv[:, info["kW"]] * G[:, info["Wi"], info["Wj"]]) @ info["SW"]
        t = tau[:, comp]
        F = t - ell
        return F, G, self._scaled(F, t, ok)

    def _jacobian(self, b: _Batch, G: np.ndarray, comp: list) -> np.ndarray:
        """``I - d ell_c / d tau_c`` on the component's sub-block (``G`` restricted to it)."""
        info = self._info(comp)
        B, c = G.shape[0], len(comp)
        J = np.broadcast_to(np.eye(c, dtype=G.dtype), (B, c, c)).copy()
        kW, kPc = info["kW"], info["kPc"]
        if len(kW) and len(kPc):
            jW, mW, aP, bP = info["Wi"], info["Wj"], info["Pci"], info["Pcj"]
            # d G_jm / d tau_p = (G P_p G)_jm = sum_(a,b) P_ab G_ja G_bm
            T = (b.Wv[:, kW][:, :, None] * b.Pv[:, kPc][:, None, :]
                 * G[:, jW[:, None], aP[None, :]] * G[:, bP[None, :], mW[:, None]])
            J -= np.einsum("bwp,wq,pr->bqr", T, info["SW"], info["SP"])
        return J

    def _unstable(self, b: _Batch, tau: np.ndarray, comp: list) -> np.ndarray:
        """Points where the fixed point is not attracting for the damped iteration
        (an eigenvalue ``mu`` of ``d ell / d tau`` with ``|1 + damping (mu - 1)| >= 1``):
        a non-physical branch.

        The physical solution is the attracting fixed point selected by the damped
        iteration (Helton, Far and Speicher 2007); Anderson extrapolation or a warm
        start far away can land Newton on another root, which this detects.
        """
        _, G, res = self._residual(b, tau, comp)
        J = self._jacobian(b, G, comp)
        finite = np.all(np.isfinite(J), axis=(1, 2))
        J = np.where(finite[:, None, None], J, np.eye(J.shape[1]))  # one bad point must not poison the batch
        try:
            ev = 1 - np.linalg.eigvals(J)
        except np.linalg.LinAlgError:
            return np.ones(b.size, dtype=bool)
        ev = np.where(finite[:, None], ev, np.inf)
        w = self._damping
        return ~(np.max(np.abs(1 + w * (ev - 1)), axis=1) < 1 - 1e-12) | ~np.isfinite(res)

    # -- stages -------------------------------------------------------------
    def _fixed_point(self, b, tau, comp, opts, its):
        damping, m, fp_tol, maxiter = opts["damping"], opts["anderson"], opts["fp_tol"], opts["maxiter"]
        active = np.arange(b.size)
        hist_x: list = []
        hist_f: list = []
        for _ in range(maxiter):
            if not len(active):
                break
            sub = b.take(active)
            F, _, res = self._residual(sub, tau[active], comp)
            done = res <= fp_tol
            bad = ~np.isfinite(res)
            keep = ~(done | bad)
            if hist_x:
                hist_x = [h[keep] for h in hist_x]
                hist_f = [h[keep] for h in hist_f]
            active, F = active[keep], F[keep]
            if not len(active):
                break
            x = tau[active][:, comp]
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
                    gam = _safe_solve(A, (np.conj(np.swapaxes(dF, 1, 2)) @ g[:, :, None])[:, :, 0])
                    acc = step - ((dX + damping * dF) @ gam[:, :, None])[:, :, 0]
                    good = np.all(np.isfinite(acc), axis=1)
                    step = np.where(good[:, None], acc, step)
            tau[np.ix_(active, comp)] = step
            its[active] += 1
        return tau

    def _newton(self, b, tau, comp, opts, its, maxiter):
        tol_polish = 1e-3 * opts["tol"]
        active = np.arange(b.size)
        sub = b
        F, G, res = self._residual(sub, tau, comp)
        for _ in range(maxiter):
            need = (res > tol_polish) & np.isfinite(res)
            active, F, G, res = active[need], F[need], G[need], res[need]
            if not len(active):
                break
            sub = b.take(active)
            J = self._jacobian(sub, G, comp)
            delta = _safe_solve(J, -F)
            x0 = tau[active].copy()
            accepted = np.zeros(len(active), dtype=bool)
            newF, newG, newres = F.copy(), G.copy(), res.copy()
            t = 1.0
            for _half in range(6):
                trial = x0.copy()
                trial[:, comp] = x0[:, comp] + t * delta
                Ft, Gt, rt = self._residual(sub, trial, comp)
                better = (~accepted) & (rt < res)
                tau[active[better]] = trial[better]
                newF[better], newG[better], newres[better] = Ft[better], Gt[better], rt[better]
                accepted |= better
                if accepted.all():
                    break
                t *= 0.5
            its[active] += 1
            # points where no step reduced the residual have stagnated: stop them
            F, G, res = newF[accepted], newG[accepted], newres[accepted]
            active = active[accepted]
        return tau

    def _cold_start(self, b: _Batch) -> np.ndarray:
        G, ok = _safe_inv(b.L0)
        tau = self._ell(b, np.where(ok[:, None, None], G, 0))
        return np.where(np.isfinite(tau), tau, 0)

    def _solve_component(self, b, tau, comp, opts, its, warm):
        if warm:
            tau = self._newton(b, tau, comp, opts, its, opts["newton_maxiter"])
        elif opts["method"] == "fixed_point":
            tau = self._fixed_point(b, tau, comp, dict(opts, fp_tol=1e-3 * opts["tol"]), its)
        else:
            tau = self._fixed_point(b, tau, comp, opts, its)
            tau = self._newton(b, tau, comp, opts, its, opts["newton_maxiter"])
        return tau

    def _solve_batch(self, b: _Batch, init, opts) -> tuple:
        self._damping = opts["damping"]
        its = np.zeros(b.size, dtype=int)
        warm = init is not None
        tau = init.copy() if warm else self._cold_start(b)
        cold = None
        bad = np.zeros(b.size, dtype=bool)
        for comp, lin in zip(self.system.components, self.system.linear):
            comp = list(comp)
            if lin:
                tau = self._newton(b, tau, comp, opts, its, 3)
                continue
            tau = self._solve_component(b, tau, comp, opts, its, warm)
            _, _, res = self._residual(b, tau, comp)
            redo = ~(res <= opts["tol"]) | self._unstable(b, tau, comp)
            if redo.any():  # unconverged or non-physical: plain damped iteration from the cold start
                if cold is None:
                    cold = self._cold_start(b)
                idx = np.nonzero(redo)[0]
                sub = b.take(idx)
                t2 = tau[idx].copy()
                t2[:, comp] = cold[idx][:, comp]
                it2 = np.zeros(len(idx), dtype=int)
                t2 = self._solve_component(sub, t2, comp, dict(opts, anderson=0), it2, False)
                tau[idx] = t2
                its[idx] += it2
                bad[idx] |= self._unstable(sub, t2, comp)
        _, G, res = self._residual(b, tau)
        conv = (res <= opts["tol"]) & ~bad
        value = None
        if b.c0 is not None:
            value = b.c0 + np.sum(b.Rv * G[:, self._Ri, self._Rj], axis=1)
            value = np.where(conv, value, np.nan)
        return tau, res, its, conv, value

    # -- public -------------------------------------------------------------
    def solve(self, params: dict | None = None, /, *, method: str = "newton", damping: float = 0.5,
              anderson: int = 0, tol: float = 1e-12, fp_tol: float = 1e-4, maxiter: int = 5000,
              newton_maxiter: int = 40, init: Any = None, continuation: int | None = None,
              throw: bool = True, chunk: int = 4096, complex: bool = False,
              **kw) -> Solution:
        """Solve on the broadcast grid of the parameters (keywords or a dict).

        ``method``: ``"newton"`` (fixed point to ``fp_tol``, then Newton to ``tol``) or
        ``"fixed_point"`` (fixed point only).  ``damping`` in ``(0, 1]``;
        ``anderson``: Anderson memory (0 = off).  ``init``: warm start, array of
        shape ``grid + (Q,)`` (broadcastable).  ``continuation``: a grid axis to sweep
        with warm starts.  ``complex``: solve in complex arithmetic even for real
        parameters.
        """
        params = dict(params or {}, **kw)
        if method not in ("newton", "fixed_point"):
            raise ValueError(f"unknown method {method!r} (use 'newton' or 'fixed_point')")
        if not (0 < damping <= 1):
            raise ValueError(f"damping must be in (0, 1], got {damping}")
        if anderson < 0 or int(anderson) != anderson:
            raise ValueError(f"anderson must be a non-negative integer, got {anderson}")
        if not (tol > 0 and fp_tol > 0):
            raise ValueError("tolerances must be positive")
        opts = dict(method=method, damping=float(damping), anderson=int(anderson), tol=float(tol),
                    fp_tol=max(float(fp_tol), float(tol)), maxiter=int(maxiter),
                    newton_maxiter=int(newton_maxiter))
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
        if continuation is not None:
            out = self._continuation(flat, shape, dtype, init, opts, continuation, chunk)
        else:
            parts = []
            for s in range(0, size, chunk):
                sl = slice(s, min(s + chunk, size))
                b = self._batch([f[sl] for f in flat], sl.stop - sl.start, dtype)
                parts.append(self._solve_batch(b, None if init is None else init[sl], opts))
            out = tuple(None if parts[0][k] is None else np.concatenate([p[k] for p in parts])
                        for k in range(5))
        tau, res, its, conv, value = out
        sol = Solution(None if value is None else value.reshape(shape), tau.reshape(shape + (self.Q,)),
                       res.reshape(shape), its.reshape(shape), conv.reshape(shape))
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

    def _continuation(self, flat, shape, dtype, init, opts, axis, chunk):
        if not shape:
            raise ValueError("continuation needs a grid with at least one axis")
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
