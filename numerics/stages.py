"""The algorithm of the reduced solver, written once for numpy batches and mpmath points.

A core stage ``u = f(u)`` is solved at every point of a batch, each point on its own (the
iteration of one point never looks at another, so a point's value and flag do not depend on
which other points share the call):

1. cold start ``u = f(0)`` (the large-argument / large-ridge limit of the traces), or a
   warm start;
2. damped fixed-point steps ``u <- u + w (f(u) - u)`` until the residual is below
   ``fp_tol``: the map is a contraction towards the physical (Stieltjes) branch;
3. Newton ``u <- u - s (I - f')^{-1} (u - f(u))``, the step ``s`` halved (up to 8 times)
   until the residual drops; a point where no halving lowers it has stagnated and stops;
4. (numpy) the root must attract the damped map (spectral radius of ``(I + f')/2`` below
   1); points unconverged or repelling are re-solved by continuation in the parameter
   ``SolveOptions.continuation`` (:func:`continuation`).

The batch is ``(K, n)``: float or complex arrays for :data:`NUMPY`, object arrays of mpmath
numbers with ``n = 1`` for :data:`MPMATH` (mpmath-style contexts: the same code, a small
namespace of operations per number type).  The compiled kernel runs the same algorithm in
C++ (``numerics/codegen/stage.hpp``).
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from .linalg import safe_solve

__all__ = ["NUMPY", "MPMATH", "iterate", "run_program", "attracting", "continuation", "take", "stack", "dtype_of"]


def take(E: dict, idx) -> dict:
    """The points ``idx`` of a batch (the spectral measure ``nu_*`` is shared by all, and so is
    an entry of length 1: a let-value of point-independent inputs, broadcast)."""
    return {k: (v[idx] if isinstance(v, np.ndarray) and v.ndim and v.shape[0] != 1 and not k.startswith("nu_")
                else v)
            for k, v in E.items()}


def stack(values, rows: int, size: int, dtype=float) -> np.ndarray:
    """Generated functions return scalars where an entry is constant: broadcast them."""
    return np.array([np.broadcast_to(np.asarray(v, dtype=dtype), (size,)) for v in values],
                    dtype=dtype).reshape(rows, size)


def dtype_of(flat: dict):
    """``complex`` when any parameter of the batch is complex, else ``float``."""
    return complex if any(np.iscomplexobj(v) for k, v in flat.items() if not k.startswith("nu_")) else float


# -- the two contexts ---------------------------------------------------------------------


def _np_residual(uu, ff):
    """``max|u - f| / max(1, max|u|)`` per point, ``inf`` where not finite."""
    scale = np.maximum(1.0, np.max(np.abs(uu), axis=0))
    r = np.max(np.abs(uu - ff), axis=0) / scale
    return np.where(np.isfinite(r), r, np.inf)


def _np_jac(fjac, E, u):
    K, n = u.shape
    out = stack(fjac(E, u), K + K * K, n, u.dtype)
    return out[:K], out[K:].reshape(K, K, n).transpose(2, 0, 1)


NUMPY = SimpleNamespace(
    name="numpy",
    take=take,
    map=lambda fmap, E, u: stack(fmap(E, u), u.shape[0], u.shape[1], u.dtype),
    jac=_np_jac,
    residual=_np_residual,
    solve=lambda A, rhs: safe_solve(A, rhs.T).T,  # A: (n, K, K), rhs: (K, n)
    eye=lambda K: np.eye(K)[None],
)


def _mp_residual(uu, ff):
    import mpmath

    r = [max(abs(uu[i, j] - ff[i, j]) for i in range(uu.shape[0]))
         / max(mpmath.mpf(1), max(abs(uu[i, j]) for i in range(uu.shape[0]))) for j in range(uu.shape[1])]
    return np.array(r, dtype=object)


def _mp_column(values) -> np.ndarray:
    out = np.empty((len(values), 1), dtype=object)
    out[:, 0] = list(values)
    return out


def _mp_jac(fjac, E, u):
    K = u.shape[0]
    out = list(fjac(E, list(u[:, 0])))
    J = np.empty((1, K, K), dtype=object)
    J[0] = np.array(out[K:], dtype=object).reshape(K, K)
    return _mp_column(out[:K]), J


def _mp_solve(A, rhs):
    import mpmath

    K = rhs.shape[0]
    step = mpmath.lu_solve(mpmath.matrix([[A[0, i, j] for j in range(K)] for i in range(K)]),
                           mpmath.matrix(list(rhs[:, 0])))
    return _mp_column([step[i] for i in range(K)])


MPMATH = SimpleNamespace(
    name="mpmath",
    take=lambda E, idx: E,  # one point
    map=lambda fmap, E, u: _mp_column(fmap(E, list(u[:, 0]))),
    jac=_mp_jac,
    residual=_mp_residual,
    solve=_mp_solve,
    eye=lambda K: np.eye(K, dtype=int)[None],  # exact 1 - J_ii, as mpmath does it
)


# -- one stage ------------------------------------------------------------------------------


def iterate(ctx, fmap, fjac, E, u, opts, its, target, halving: bool = True):
    """Damped fixed point, then Newton to the residual ``target``, at every point of the
    batch ``E`` from ``u`` (``(K, n)``, updated in place); ``its`` counts the steps per
    point.  Returns ``u, res``.

    ``halving``: each Newton step is halved until the residual drops, and a point where
    none does stops (numpy, and the kernel).  Without it (the mpmath stage, started from
    a double-precision root) every step is taken whole and the residual of the Jacobian's
    own ``f`` decides, so the returned residual is that of the returned ``u`` as the last
    Newton step saw it."""
    K, size = u.shape
    f = ctx.map(fmap, E, u)
    res = ctx.residual(u, f)
    # damped fixed point: selects the physical branch
    active = res > opts.fp_tol
    w = opts.damping
    for _ in range(opts.fp_maxiter):
        if not active.any():
            break
        idx = np.nonzero(active)[0]
        Ea = ctx.take(E, idx)
        ua = u[:, idx] + w * (f[:, idx] - u[:, idx])
        fa = ctx.map(fmap, Ea, ua)
        u[:, idx], f[:, idx] = ua, fa
        res[idx] = ctx.residual(ua, fa)
        its[idx] += 1
        active[idx] = res[idx] > opts.fp_tol
    # Newton, per point
    active = res > target if halving else np.ones(size, dtype=bool)
    for _ in range(opts.newton_maxiter):
        if not active.any():
            break
        idx = np.nonzero(active)[0]
        Ea = ctx.take(E, idx)
        fa, J = ctx.jac(fjac, Ea, u[:, idx])
        r0 = ctx.residual(u[:, idx], fa)
        if not halving:  # whole steps: stop where the Jacobian's residual meets the target
            res[idx] = r0
            keep = np.asarray(r0 > target, dtype=bool)
            active[idx] = keep
            if not keep.any():
                break
            idx, fa, J = idx[keep], fa[:, keep], J[keep]
            u[:, idx] = u[:, idx] - ctx.solve(ctx.eye(K) - J, u[:, idx] - fa)
            its[idx] += 1
            continue
        step = ctx.solve(ctx.eye(K) - J, u[:, idx] - fa)
        s = np.ones(len(idx))
        best_u, best_f, best_r = u[:, idx].copy(), fa.copy(), r0.copy()
        for _h in range(8):  # halve the step where the residual does not drop
            cand = u[:, idx] - s * step
            fc = ctx.map(fmap, Ea, cand)
            rc = ctx.residual(cand, fc)
            better = rc < best_r
            best_u[:, better], best_f[:, better], best_r[better] = cand[:, better], fc[:, better], rc[better]
            done = better | (rc <= r0)
            if done.all():
                break
            s = np.where(done, s, s / 2)
        stuck = best_r >= r0
        u[:, idx], f[:, idx], res[idx] = best_u, best_f, best_r
        its[idx] += 1
        active[idx] = (best_r > target) & ~stuck
    return u, res


def attracting(fns, k, E, u, K) -> np.ndarray:
    """Whether ``u`` attracts the damped map ``u + (f(u) - u)/2`` (spectral radius of
    ``(I + f')/2`` below 1): the physical (Stieltjes) root does; other roots of the
    same equations that Newton can reach from a poor start need not."""
    size = u.shape[1]
    with np.errstate(all="ignore"):
        J = stack(fns[f"jac_{k}"](E, u), K + K * K, size, u.dtype)[K:].reshape(K, K, size).transpose(2, 0, 1)
        A = 0.5 * (np.eye(K)[None] + J)
        ok = np.all(np.isfinite(A), axis=(1, 2))
        rho = np.full(size, np.inf)
        if ok.any():
            rho[ok] = np.max(np.abs(np.linalg.eigvals(A[ok])), axis=1)
    return rho < 1.0


def continuation(fns, segments, k, E, K, opts, its, idx):
    """Walk the parameter ``opts.continuation`` down from ``max(p, 1)`` to the target ``p``
    (per point, geometric steps: ``ceil(per_decade * log10(start / target))`` of them, so a
    point's path does not depend on the other points of the batch), cold at the start and
    Newton from the previous step after; the ``let`` runs before stage ``k`` are re-evaluated
    at each step."""
    name = opts.continuation
    target = np.real(E[name]).copy()  # a real parameter (a complex batch stores it as complex)
    start = np.maximum(target, 1.0)
    steps = np.maximum(1, np.ceil(opts.per_decade * np.log10(start / target)).astype(int))
    local = dict(E)
    its_local = np.zeros(len(target), dtype=int)
    u = None
    res = np.full(len(target), np.inf)
    polish = min(opts.tol, 1e-15)
    fmap, fjac = fns[f"map_{k}"], fns[f"jac_{k}"]
    for j in range(int(steps.max(initial=0)) + 1):
        local[name] = start * (target / start) ** (np.minimum(j, steps) / steps)
        for seg_k, (kind, *_) in enumerate(segments[:k]):
            if kind == "let":
                with np.errstate(all="ignore"):
                    fns[f"seg_{seg_k}"](local)
        with np.errstate(all="ignore"):
            if u is None:
                u = stack(fmap(local, np.zeros((K, len(target)))), K, len(target), dtype_of(local))
                u, res = iterate(NUMPY, fmap, fjac, local, u, opts, its_local, polish)
            else:  # only the points still walking: the others have reached their target
                walk = np.nonzero(j <= steps)[0]
                its_walk = its_local[walk]
                u_w, res_w = iterate(NUMPY, fmap, fjac, take(local, walk), u[:, walk].copy(),
                                     opts.replace(fp_maxiter=0), its_walk, polish)
                u[:, walk], res[walk], its_local[walk] = u_w, res_w, its_walk
    its[idx] += its_local
    return u, res


# -- the program ---------------------------------------------------------------------------


def run_program(fns, segments, E: dict, size: int, init, opts, *, attract: bool = True) -> tuple:
    """The whole program on the numpy batch ``E`` (parameters, spectral measure): every
    ``let`` run, every core stage (solved, checked for attractivity when ``attract``,
    re-solved by continuation where that fails), the outputs.  ``segments``: the layout's
    ``("let",)`` / ``("core", unknowns, eliminated, linear)``; a linear stage (affine,
    ``pencils.reduce.LINEAR_STAGE_MIN``) takes Newton steps from ``f(0)`` only: the first is the
    exact solve, and there is no branch to select.  Returns ``values, core, res, its``."""
    dtype = dtype_of(E)
    cores, res_all = [], np.zeros(size)
    its = np.zeros(size, dtype=int)
    offset = 0
    polish = min(opts.tol, 1e-15)  # beyond tol: a residual at tol leaves cond * tol in the values
    name = opts.continuation
    for k, (kind, *names) in enumerate(segments):
        if kind == "let":
            with np.errstate(all="ignore"):
                fns[f"seg_{k}"](E)
            continue
        unknowns, eliminated, linear = names
        K = len(unknowns)
        with np.errstate(all="ignore"):
            if init is not None:
                u = np.array(init[offset:offset + K], dtype=dtype).reshape(K, size)
            else:
                u = stack(fns[f"map_{k}"](E, np.zeros((K, size))), K, size, dtype)
            u, res = iterate(NUMPY, fns[f"map_{k}"], fns[f"jac_{k}"], E, u,
                             opts.replace(fp_maxiter=0) if linear else opts, its, polish)
        stable = attracting(fns, k, E, u, K) if attract and not linear else np.ones(size, bool)
        bad = ~(res <= opts.tol) | ~stable
        if bad.any() and not linear and name is not None and name in E and not np.any(np.imag(E[name])):
            idx = np.nonzero(bad)[0]
            Ei = take(E, idx)
            u_c, res_c = continuation(fns, segments, k, Ei, K, opts, its, idx)
            stable_c = attracting(fns, k, Ei, u_c, K)
            fix = stable_c & ((res_c < res[idx]) | ~stable[idx])
            u[:, idx[fix]], res[idx[fix]] = u_c[:, fix], res_c[fix]
            stable[idx[fix]] = True
        res = np.where(stable, res, np.inf)  # a repelling root is not the physical one
        for j, s in enumerate(unknowns):
            E[s] = u[j]
        if eliminated:
            with np.errstate(all="ignore"):
                filled = stack(fns[f"fill_{k}"](E, u), len(eliminated), size, dtype)
            for j, s in enumerate(eliminated):
                E[s] = filled[j]
        cores.append(u)
        res_all = np.maximum(res_all, res)
        offset += K
    with np.errstate(all="ignore"):
        vals = [np.broadcast_to(np.asarray(v, dtype=dtype), (size,)).copy() for v in fns["outputs"](E)]
    core = np.concatenate(cores, axis=0) if cores else np.zeros((0, size))
    return vals, core, res_all, its


#: The extended type of :func:`readout_rounding` (x86: 64-bit significand, 2048 times finer
#: than double; where ``long double`` is double, the check is skipped).
LONG = np.longdouble
LONG_HELPS = np.finfo(np.longdouble).eps < np.finfo(float).eps
#: Relative move of each core unknown in the sensitivity part of :func:`readout_rounding`.
CORE_STEP = 2.0 ** -24


def _readouts(fns, segments, L: dict, core, size: int, ctype):
    """Every ``let`` step and the outputs from a given core (no solve)."""
    offset = 0
    for k, (kind, *names) in enumerate(segments):
        if kind == "let":
            fns[f"seg_{k}"](L)
            continue
        unknowns, eliminated, _linear = names
        K = len(unknowns)
        u = np.asarray(core[offset:offset + K]).astype(ctype).reshape(K, size)
        for j, s in enumerate(unknowns):
            L[s] = u[j]
        if eliminated:
            filled = fns[f"fill_{k}"](L, u)
            for j, s in enumerate(eliminated):
                L[s] = np.broadcast_to(np.asarray(filled[j], dtype=ctype), (size,))
        offset += K
    return [np.broadcast_to(np.asarray(o, dtype=ctype), (size,)) for o in fns["outputs"](L)]


def readout_rounding(fns, segments, E: dict, core, values: dict, sensitivity: bool = False) -> dict | None:
    """The deterministic part of the rounding check on the numpy path (the compiled kernel
    re-solves in long double instead, ``driver.hpp``).

    The warm re-solves of the rounding estimate move the parameters by a few ulps; they
    measure the conditioning of the core, but miss a cancellation inside the explicit
    read-outs whenever the moved inputs happen to round the same way (a ridge risk past the
    interpolation threshold, ``gamma = 3, lam = 1e-5``: a read-out that is a difference of O(1)
    terms equal to ``2.5e-11``, 4e-7 relative error, unseen by three moved solves).  Here the
    read-outs are re-evaluated in ``long double`` from the same core, ``|v_double - v_long|``;
    with ``sensitivity``, plus ``sum_j |d v / d log u_j| eps``: the read-outs' amplification of
    the core's own rounding error (finite differences in long double, one per core unknown).
    Beyond the long double's reach both evaluations can be equally wrong: the ladder's
    consistency test of the next rung (:mod:`derivations.ladder`) catches that.
    ``None`` where ``long double`` is no finer than double or the program cannot run in it."""
    if not LONG_HELPS:
        return None
    ctype = np.clongdouble if any(np.iscomplexobj(v) for v in values.values()) else LONG
    size = next(iter(values.values())).shape[0]
    base = {k: np.asarray(v).astype(ctype) for k, v in E.items()}
    try:
        with np.errstate(all="ignore"):
            outs = _readouts(fns, segments, dict(base), core, size, ctype)
            err = [np.abs(o - v).astype(float) for o, v in zip(outs, values.values())]
            core = np.asarray(core)
            for j in range(core.shape[0] if sensitivity else 0):
                moved = core.astype(ctype)
                moved[j] = moved[j] * (1 + CORE_STEP)
                for i, o in enumerate(_readouts(fns, segments, dict(base), moved, size, ctype)):
                    err[i] = err[i] + np.abs(o - outs[i]).astype(float) / CORE_STEP * np.finfo(float).eps
    except (TypeError, ValueError):  # a function without a long double loop
        return None
    return {name: e for name, e in zip(values, err)}
