"""The precision ladder: how every derived model (:func:`derivations.derived.derive`, and the
DSM theory built on it, :meth:`derivations.theory.DSMTheory.errors`) resolves every point.

1. **Double precision**, all points at once (:class:`numerics.reduced.ReducedSolver`: the
   compiled kernel, or vectorised numpy), with a rounding-error estimate per value (warm
   re-solves with the parameters moved by a few ulps, and the point re-solved in long double
   from the double root: it sees cancellations inside the read-outs).
2. **Double-double** (about 32 digits, compiled, :meth:`ReducedSolver.refine_dd`) for the
   points whose estimate exceeds ``rtol |value| + atol``: near the interpolation peak and deep
   in the memorisation regime, where the errors are small differences of large traces.  Its
   value is accepted only where its own estimate and the double estimate scaled to its unit
   roundoff meet the tolerance, and the double value lies within its estimate of it.
3. **mpmath** at :data:`REFINE_DPS` digits for what is left, started from the double core or,
   where that failed, by continuation in ``lam`` (:func:`continue_in_lam`), and verified at
   more digits (:func:`_verified`).

``precision=dps`` skips the first two rungs: every point is solved in mpmath at ``dps`` digits.

A point left unresolved carries its cause (:data:`CAUSES`, ``Ledger.cause``): what failed in
double precision and, where it was tried, in mpmath, so that the error message can say it.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import mpmath
import numpy as np

from numerics._errors import ConvergenceError
from numerics.options import DD_EPS, Result

__all__ = ["REFINE_DPS", "CONTINUATION_STEPS", "CONTINUATION_NEWTON", "GUARD_DECADES", "VERIFY_MAX_DPS", "CAUSES",
           "CONTINUATION_PER_DECADE", "Ledger", "NoStartError", "NonPhysicalError", "UnstableError", "Problem", "climb", "mp_point", "continue_in_lam"]

#: Digits of the automatic mpmath refinement of points double precision cannot resolve.
REFINE_DPS = 30
#: Steps a decade of the continuation in ``lam`` (:func:`continue_in_lam`): with the geometric
#: predictor 4 give the same values as 8 near ``p = n`` at ``lam = 1e-12``, in half the time;
#: where they fail, :func:`_mp_point_guarded` walks once more at twice the steps.
CONTINUATION_PER_DECADE = 4
#: The work budget of one point's mpmath rung: at most this many continuation steps in
#: ``lam`` (:func:`continue_in_lam` thins its ``per_decade`` to fit: 20 decades at 8 a decade) ...
CONTINUATION_STEPS = 160
#: ... each with at most this many Newton steps (from a geometric prediction Newton
#: converges in a handful or not at all); with the final solve's 100 steps a point costs at
#: most ``160 * 30 + 100`` mpmath Newton steps, a few seconds at 30 digits, then is flagged.
CONTINUATION_NEWTON = 30
#: The guarded retry of :func:`_mp_point_guarded` runs for ``lam >= 10^-GUARD_DECADES`` only
#: (at most ``3 * 30`` extra digits); smaller ridges that the first attempt misses are flagged.
GUARD_DECADES = 30
#: A double-precision core that stopped at its step limit (``Result.MAX_STEPS``: the residual
#: floor ``~ eps / lam`` near the peak) with a relative residual below this is a Newton start
#: for mpmath: within ``1e-6`` of the root its own iteration approached, inside Newton's basin.
START_RESIDUAL = 1e-6

#: The mpmath rung verifies its values (:func:`_verified`): re-solved with half as many digits
#: again (at least 10 more), they must agree to ``dps - 5`` digits, else the digits grow again,
#: up to this many (or twice the requested digits).
VERIFY_MAX_DPS = 400

#: Why a point is unresolved (``Ledger.cause`` holds a "+"-joined chain of these keys).
CAUSES = {
    "non-finite": "the equations gave NaN or inf in double precision (a parameter outside the "
                  "equations' domain, or an overflow)",
    "residual": "Newton did not reach the residual tolerance in double precision",
    "rounding": "the estimated rounding error exceeds rtol |value| + atol (near the interpolation "
                "peak or deep in memorisation, where the errors are small differences of large traces)",
    "no-start": "the mpmath refinement found no accurate double-precision start for its continuation in lam",
    "mpmath": "mpmath Newton did not converge",
    "non-physical": "mpmath converged to a root with a negative error (an output that cannot be "
                    "negative: off the physical branch)",
    "unstable": f"the mpmath values kept changing as the digits grew (up to {VERIFY_MAX_DPS}): the "
                "read-outs cancel beyond that precision",
}


class NoStartError(ConvergenceError):
    """:func:`continue_in_lam` found no accurate double-precision start."""


class NonPhysicalError(ConvergenceError):
    """mpmath converged to a root where an output known to be non-negative is negative."""


class UnstableError(ConvergenceError):
    """:func:`_verified`: the mpmath values kept changing with the precision."""


@dataclass(frozen=True)
class Problem:
    """What the ladder needs of one derived system.

    ``params(raw)`` maps the flat arrays ``raw`` (one per user parameter, in the caller's
    order) to the solver's parameters in double precision; ``mp_params(point, dps)`` maps
    one point (a list of Python numbers, same order) to them at ``dps`` digits, computed
    there (not rounded from doubles: the DSM theory evaluates its Gaussian-equivalence
    numbers at ``dps`` digits).  ``continuation``: the index in ``raw`` of a ridge-like
    parameter (positive, the equations degenerate as it goes to 0) for the continuation of
    :func:`continue_in_lam`, or ``None``.  ``spectrum``: the spectral measure, if any.
    ``nonnegative``: outputs that cannot be negative (means of squares, such as the DSM errors):
    an mpmath root where one is negative is off the physical branch and refused.
    """

    solver: object
    quantities: tuple
    params: Callable
    mp_params: Callable
    spectrum: object = None
    continuation: int | None = None
    nonnegative: tuple = ()


@dataclass
class Ledger:
    """Per-point results on the flat grid, filled rung by rung (``values`` hold ``mpmath.mpf``
    with ``precision=``)."""

    values: dict
    converged: np.ndarray
    residual: np.ndarray
    iterations: np.ndarray
    rounding: np.ndarray
    refined: np.ndarray
    refined_mpmath: np.ndarray
    #: per point, "" when resolved, else a "+"-joined chain of :data:`CAUSES` keys
    cause: np.ndarray | None = None

    @classmethod
    def empty(cls, size: int, exact: bool, quantities: tuple, complex_: bool = False) -> "Ledger":
        dtype = object if exact else (complex if complex_ else float)
        return cls(values={q: np.full(size, np.nan, dtype=dtype) for q in quantities},
                   converged=np.zeros(size, dtype=bool), residual=np.zeros(size),
                   iterations=np.zeros(size, dtype=int), rounding=np.zeros(size),
                   refined=np.zeros(size, dtype=bool), refined_mpmath=np.zeros(size, dtype=bool),
                   cause=np.full(size, "", dtype=object))


def climb(problem: Problem, sel: np.ndarray, raw: list, led: Ledger, *, precision, check_rounding: bool,
          refine, rtol: float, atol: float, solve_options: dict) -> None:
    """Resolve the points ``sel`` of one system (``raw``: their parameters, flat arrays in
    the order of ``problem``) into ``led``: double precision with a rounding check, then
    double-double, then mpmath (module docstring); ``precision`` set: mpmath at that many
    digits for every point; ``refine="dd"``: no mpmath rung."""
    exact = precision is not None
    out, conv, resid, iters = led.values, led.converged, led.residual, led.iterations
    rounding, refined, refined_mp = led.rounding, led.refined, led.refined_mpmath
    solver, quantities = problem.solver, problem.quantities
    params = problem.params(raw)
    checked = check_rounding and not exact
    sol = solver.solve(params, spectrum=problem.spectrum, throw=False, estimate_error=checked,
                       **solve_options)
    resid[sel] = sol.residual
    iters[sel] = sol.iterations
    good = sol.converged.copy()
    if checked:
        for q in quantities:
            err = np.where(good, sol.error[q], np.inf)
            good &= err <= rtol * np.abs(sol.values[q]) + atol
            rounding[sel] = np.maximum(rounding[sel], np.where(np.isfinite(err), err, 0.0))
    # the solver flags a point whose residual exceeds tol or whose values are not finite
    tol = solve_options.get("tol", 1e-12)
    finite_res = np.isfinite(sol.residual) & (sol.residual > tol)
    led.cause[sel] = np.where(sol.converged, np.where(good, "", "rounding"),
                              np.where(finite_res, "residual", "non-finite"))
    if exact:
        todo = range(len(sel))
    elif refine:
        todo = np.nonzero(~good)[0]
    else:
        todo = ()
    for q in quantities:
        out[q][sel] = np.where(good, sol.values[q], np.nan) if not exact else out[q][sel]
    if len(todo) and not exact:
        todo = _refine_dd(problem, params, sol, todo, sel, rtol, atol, good, out, rounding, resid, refined)
        if refine == "dd":  # the cheap rungs only (a scan: derivations.peaks)
            todo = ()
    near = (np.asarray(sol.result) == Result.MAX_STEPS) & (np.asarray(sol.residual) <= START_RESIDUAL)
    for k in todo:
        point = [r[k].item() for r in raw]
        init = list(sol.core[k]) if sol.converged[k] or near[k] else None
        dps = int(precision) if exact else REFINE_DPS
        try:
            res = _verified(problem, point, dps, _mp_point_guarded(problem, point, dps, init), atol)
        except (ConvergenceError, ArithmeticError) as exc:  # mpmath: a singular Jacobian is a ZeroDivisionError
            tried = ("no-start" if isinstance(exc, NoStartError) else
                     "non-physical" if isinstance(exc, NonPhysicalError) else
                     "unstable" if isinstance(exc, UnstableError) else "mpmath")
            led.cause[sel[k]] = "+".join(c for c in (led.cause[sel[k]], tried) if c)
            continue
        for q in quantities:
            v = res.values[q]
            out[q][sel[k]] = v if exact else _double(v)
        good[k] = True
        led.cause[sel[k]] = ""
        refined[sel[k]] = not exact
        refined_mp[sel[k]] = not exact
        rounding[sel[k]] = 0.0 if exact else float(
            np.finfo(float).eps * max(abs(_double(res.values[q])) for q in quantities))
        resid[sel[k]] = float(res.residual)
    conv[sel] = good
    led.cause[sel[good]] = ""


def _verified(problem: Problem, point, dps: int, res, atol: float):
    """The mpmath rung's values, verified: a converged core is not enough, since read-outs
    that cancel (terms of size ``lam^-k`` summing to O(1): the ridge risk past the
    interpolation threshold at ``lam = 1e-9`` cancels terms of size ``1e27``) can lose every
    digit of ``dps``. Re-solve from the core at ``dps + max(10, dps/2)`` digits (Newton from
    an accurate start: one or two steps; with guard digits at a small ridge, as the first
    solve); accept when every output agrees to
    ``10^(5-dps) max(|value|, atol)``, returning the more precise values, else grow the digits
    again (up to :data:`VERIFY_MAX_DPS`) and finally raise :class:`UnstableError`."""
    cur, cur_dps = res, dps
    limit = max(VERIFY_MAX_DPS, 2 * dps)
    while cur_dps < limit:
        nxt_dps = min(limit, cur_dps + max(10, cur_dps // 2))
        nxt = _mp_point_guarded(problem, point, nxt_dps, list(cur.core))
        with mpmath.workdps(nxt_dps):
            tol = mpmath.mpf(10) ** (5 - dps)
            if all(abs(nxt.values[q] - cur.values[q]) <= tol * max(abs(nxt.values[q]), mpmath.mpf(atol))
                   for q in problem.quantities):
                return nxt
        cur, cur_dps = nxt, nxt_dps
    raise UnstableError(f"the mpmath values at {point} still change at {cur_dps} digits", None)


def _double(v):
    """An mpmath number in double precision (complex where it is complex)."""
    return complex(v) if isinstance(v, mpmath.mpc) else float(v)


def _refine_dd(problem, params, sol, todo, sel, rtol, atol, good, out, rounding, resid, refined):
    """Re-solve the points ``todo`` (converged in double precision, rounding estimate too
    large) in double-double arithmetic (compiled kernel, :meth:`ReducedSolver.refine_dd`);
    accept those whose double-double estimate meets ``rtol |value| + atol``.  Returns the
    points left for mpmath."""
    cand = np.asarray([k for k in todo if sol.converged[k]], dtype=int)
    if not len(cand) or any(np.iscomplexobj(v) for v in params.values()):  # double-double is real-only
        return todo
    n = len(sel)
    sub = {k: (np.broadcast_to(np.asarray(v, dtype=float), (n,))[cand] if np.ndim(v) else v)
           for k, v in params.items()}
    rd = problem.solver.refine_dd(sub, sol.core[cand], spectrum=problem.spectrum)
    if rd is None:  # no compiled kernel: mpmath does it all
        return todo
    ok = rd.converged.copy()
    # The double-double estimate moves the parameters by dd ulps, which misses read-outs that
    # cancel (the double pass measured them in long double); first order, the error of a
    # computation scales with the unit roundoff, so the double estimate scaled by
    # DD_EPS / eps bounds that part in double-double.
    scale = DD_EPS / np.finfo(float).eps
    err = {q: np.maximum(rd.error[q], scale * np.asarray(sol.error[q])[cand]) for q in problem.quantities}
    for q in problem.quantities:
        ok &= err[q] <= rtol * np.abs(rd.values[q]) + atol
        # consistency: the double value must lie within its own estimate of the double-double
        # one; where it does not, the estimates are not to be trusted (a read-out so
        # ill-conditioned that double and long double fail alike) and mpmath decides
        ok &= np.abs(rd.values[q] - np.asarray(sol.values[q])[cand]) <= np.asarray(sol.error[q])[cand]
    idx = cand[ok]
    for q in problem.quantities:
        out[q][sel[idx]] = rd.values[q][ok]
    good[idx] = True
    refined[sel[idx]] = True
    rounding[sel[idx]] = np.max([err[q][ok] for q in problem.quantities], axis=0)
    resid[sel[idx]] = rd.residual[ok]
    return np.setdiff1d(np.asarray(todo, dtype=int), idx)


def _mp_point_guarded(problem: Problem, point, dps, init):
    """:func:`mp_point` with guard digits at a small ridge, cheapest attempt first.

    Where the unknowns grow like ``1/lam`` (``p > n``, all rows interpolated) the map's own
    rounding leaves a residual ``~ 10^-dps / lam`` (above ``10^(5-dps)`` at every ``dps``) and
    the outputs, O(1) differences of the unknowns, move by ``~ residual / lam^2``; so the
    guarded attempt works at ``dps + 3 g`` digits (``g = log10(1/lam)``, for ``lam < 1e-4``) to
    the residual ``10^(5-dps-2g)``, which also makes the outputs right to ``10^(5-dps)``.
    ``lam`` is the continuation parameter (``problem.continuation``; none: no guard, no walk).

    Order (measured on the DSM errors at ``lam = 1e-12`` near ``p = n``): Newton from the
    double-precision ``init``, guarded first (at ``dps`` digits it stalls at that floor after
    its whole budget): a few hundredths of a second; then the continuation in ``lam`` at
    :data:`CONTINUATION_PER_DECADE` steps a decade, guarded first (about 1 s); last the finer
    walk (``2x`` the steps) at ``dps``.  A root where an output of ``problem.nonnegative`` is
    negative is off the physical branch (:class:`NonPhysicalError`): the next attempt runs."""
    c = problem.continuation
    lam = point[c] if c is not None else 1.0
    guard = int(math.ceil(math.log10(1.0 / lam))) if lam < 1e-4 else 0
    tiers = [(dps, None)]
    if 0 < guard <= GUARD_DECADES:
        # the target 10^(5-dps) lam^2 on the outputs, with the map's rounding (~ 10^-digits / lam)
        # below it: 3 guard digits a decade
        tiers.insert(0, (dps + 3 * guard, 10.0 ** (5 - dps - 2 * guard)))
    attempts = [(digits, tol, init, 0) for digits, tol in tiers] if init is not None else []
    if c is not None:
        attempts += [(digits, tol, None, CONTINUATION_PER_DECADE) for digits, tol in tiers]
        if CONTINUATION_PER_DECADE * math.log10(max(lam, 1e-2) / lam) < CONTINUATION_STEPS:  # else the same walk
            attempts.append((dps, None, None, 2 * CONTINUATION_PER_DECADE))
    elif init is None:
        attempts.append((dps, None, None, 0))  # the cold start of mp_point
    failure = None
    for digits, tol, start, per_decade in attempts:
        try:
            res = mp_point(problem, point, digits, start, tol=tol, per_decade=per_decade)
        except (ConvergenceError, ArithmeticError) as exc:
            failure = exc
            continue
        if not problem.nonnegative:
            return res
        # a value below minus its accuracy (~ 10^(5-dps), and ~ 10^(5-dps) / lam^2 unguarded)
        slack = 10.0 ** (5 - dps) * (1.0 if tol is not None else max(1.0, 1.0 / max(lam, 1e-150) ** 2))
        low = min(float(res.values[q]) for q in problem.nonnegative)
        if low >= -slack:
            return res
        failure = NonPhysicalError(f"mpmath converged to a root with a value {low:.3g} < 0 at {point}", None)
    raise failure


def mp_point(problem: Problem, point, dps, init=None, tol=None, per_decade: int = CONTINUATION_PER_DECADE) -> dict:
    """Every output at one point (``point``: the parameters in ``problem``'s order) at
    ``dps`` digits (reduced system, verified residual ``<= tol``, default ``10^(5-dps)``);
    started from ``init`` (double-precision core) or, without one, by continuation in the
    ridge-like parameter (``problem.continuation``) at ``per_decade`` steps a decade
    (:func:`continue_in_lam`); ``per_decade=0``: no continuation (a failing ``init`` is an
    error; no ``init``: the cold start of the fixed-point map)."""
    solver = problem.solver
    mp_p = problem.mp_params(point, dps)
    walk = per_decade and problem.continuation is not None
    if init is not None:
        try:
            return solver.solve_mp(mp_p, dps, init=init, spectrum=problem.spectrum, tol=tol)
        except ConvergenceError:
            if not walk:
                raise
    elif not walk:
        return solver.solve_mp(mp_p, dps, spectrum=problem.spectrum, tol=tol)
    return solver.solve_mp(mp_p, dps, init=continue_in_lam(problem, point, dps, per_decade=per_decade, tol=tol),
                           spectrum=problem.spectrum, tol=tol)


def continue_in_lam(problem: Problem, point, dps, per_decade: int = CONTINUATION_PER_DECADE,
                    max_steps: int = CONTINUATION_STEPS, tol=None) -> list:
    """Starting point for mpmath Newton where double precision failed.

    Walk the ridge ``lam = point[problem.continuation]`` down from ``max(lam, 1e-2)`` to the
    target geometrically (``per_decade`` steps a decade): double precision while it is
    accurate (one vectorised solve with rounding-error estimates), then mpmath Newton from
    each step to the next, predicting each start by geometric extrapolation (the unknowns
    grow like powers of ``lam`` near a peak).  Bounded work: at most ``max_steps`` steps
    (fewer a decade below ``1e-2 / 10^(max_steps / per_decade)``), each with at most
    :data:`CONTINUATION_NEWTON` Newton steps; a failing step raises :class:`ConvergenceError`.
    """
    c = problem.continuation
    lam = point[c]
    start = max(lam, 1e-2)
    steps = max(1, min(max_steps, int(math.ceil(per_decade * math.log10(start / lam)))))
    lams = start * (lam / start) ** (np.arange(steps + 1) / steps)
    solver = problem.solver
    raw = [np.full(len(lams), x) for x in point]
    raw[c] = lams
    dsol = solver.solve(problem.params(raw), spectrum=problem.spectrum, throw=False, estimate_error=True)
    # A start for Newton must be accurate, not just converged: keep well-resolved points.
    acc = dsol.converged & np.all([dsol.error[q] <= 1e-7 * np.maximum(1, np.abs(dsol.values[q]))
                                   for q in problem.quantities], axis=0)
    ok = np.cumprod(acc).astype(bool)
    if not ok[0]:
        raise NoStartError(f"no double-precision start at {c}-th parameter {start} for {point}", None)
    last = int(np.nonzero(ok)[0][-1])

    def solve_at(lam_k, init):
        moved = list(point)
        moved[c] = float(lam_k)
        return list(solver.solve_mp(problem.mp_params(moved, dps), dps, init=init, spectrum=problem.spectrum,
                                    tol=tol, newton_maxiter=CONTINUATION_NEWTON).core)

    prev, core = None, solve_at(lams[last], list(dsol.core[last]))
    for lam_k in lams[last + 1:-1]:
        guess = core if prev is None else [_geometric_step(a, b) for a, b in zip(prev, core)]
        prev, core = core, solve_at(lam_k, guess)
    if prev is not None:
        core = [_geometric_step(a, b) for a, b in zip(prev, core)]
    return core


def _geometric_step(a, b):
    """Predict the next term of a sequence ``a, b, ?`` on a geometric grid of ``lam``:
    ``b^2 / a`` when ``a, b`` are real with the same sign, else the linear ``2b - a``."""
    if not isinstance(a, mpmath.mpc) and not isinstance(b, mpmath.mpc) and a != 0 and (a > 0) == (b > 0):
        return b * b / a
    return 2 * b - a
