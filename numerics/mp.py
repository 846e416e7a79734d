"""Reference for the tests: a raw :class:`~pencils.freeprob.FixedPointSystem` solved at
arbitrary precision (mpmath).  The learning curves never run it: their mpmath stage is
:meth:`numerics.reduced.ReducedSolver.solve_mp`, the shared algorithm of
:mod:`numerics.stages` on the reduced system.  This one works on the operator-valued
equations themselves (block inverses, complex arguments), an independent check of the
reduction at high precision.

The coefficient functions are generated with sympy's ``MpmathPrinter`` (exact
rationals, see :mod:`numerics.codegen`).  A double-precision solution from the
numpy solver is the starting point (it selects the branch); Newton's method is then
run in mpmath at ``dps`` digits with the exact Jacobian, and the answer is
*verified*: if the relative residual does not fall below ``10**(-dps + 5)`` a
:class:`~numerics.fixedpoint.ConvergenceError` is raised (as mpmath's
``findroot(verify=True)`` does).  Precision is a context (``mpmath.workdps``): the
global ``mp.dps`` is restored on return.

>>> import sympy, mpmath
>>> from pencils.expr import Space, D, gaussian, inverse, trace
>>> from pencils.freeprob import equations
>>> g, z = sympy.symbols("gamma z", positive=True)
>>> X = gaussian("X", Space("n", 1 / g), D)
>>> sol = solve_mp(equations(trace(inverse(g * X.T @ X + z))), {"gamma": "0.5", "z": 1}, dps=30)
>>> sol.residual < mpmath.mpf(10) ** -25
True
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np

from pencils.activation.common import check_digits
from pencils.freeprob import FixedPointSystem

from .codegen.python import build_function, layout
from .fixedpoint import ConvergenceError, Solver

__all__ = ["solve_mp", "MPSolution"]

_FUNCS: dict = {}


@dataclass(frozen=True)
class MPSolution:
    """``value`` (read-out), ``tau`` (list of mpc/mpf), ``residual``, ``iterations``."""

    value: Any
    tau: list
    residual: Any
    iterations: int
    converged: bool


def _mp_value(name: str, v: Any) -> Any:
    """Parameter ``name`` as an mpmath number: a real or complex number, a numeric string (parsed
    at the working precision) or an mpmath number, finite (``TypeError`` / ``ValueError`` naming
    the parameter otherwise)."""
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v.item()
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (str, numbers.Number, mpmath.mpf, mpmath.mpc)):
        raise TypeError(f"parameter {name!r} must be a number (int, float, complex, numeric string or mpmath), "
                        f"got {type(v).__name__}")
    try:
        x = v if isinstance(v, (mpmath.mpf, mpmath.mpc)) else mpmath.mpmathify(v)
    except (TypeError, ValueError):
        raise ValueError(f"parameter {name!r} must be a number, got {v!r}") from None
    if not mpmath.isfinite(x):
        raise ValueError(f"parameter {name!r} must be finite, got {v!r}")
    return x


def solve_mp(system: FixedPointSystem, params: dict, dps: int = 40, init: list | None = None,
             newton_maxiter: int = 60) -> MPSolution:
    """Solve ``system`` at one parameter point with ``dps`` decimal digits.

    ``params`` maps parameter names to numbers, strings (parsed at ``dps``) or mpmath
    numbers.  Raises :class:`ConvergenceError` if the residual is not verified, or where a
    matrix of the system is numerically singular at these parameters (an extreme value, e.g.
    ``gamma=1e300``).
    """
    try:
        return _solve(system, params, dps, init, newton_maxiter)
    except ZeroDivisionError:
        shown = {k: (mpmath.nstr(v, 6) if isinstance(v, (mpmath.mpf, mpmath.mpc)) else v) for k, v in params.items()}
        raise ConvergenceError(f"mpmath Newton at dps={dps}: a matrix of the system is numerically singular at "
                               f"the parameters {shown}", None) from None


def _solve(system: FixedPointSystem, params: dict, dps, init, newton_maxiter: int) -> MPSolution:
    dps = check_digits(dps, "dps")
    key = id(system)
    if key not in _FUNCS:
        _FUNCS[key] = (system, build_function(system, "mpmath"), Solver(system))
    _, f, dsolver = _FUNCS[key]
    lay, _ = layout(system)
    names = [p.name for p in system.params]
    missing = [n for n in names if n not in params]
    unknown = [n for n in params if n not in names]
    if missing or unknown:
        raise ValueError(f"parameters: missing {missing}, unknown {unknown}; need {names}")
    N, Q = system.size, system.n_unknowns
    with mpmath.workdps(dps):
        pv = [_mp_value(n, params[n]) for n in names]
        for n, v in zip(names, pv):
            if n in system.positive and (isinstance(v, mpmath.mpc) or v <= 0):
                raise ValueError(f"parameter {n!r} must be real and positive")
        is_complex = any(isinstance(v, mpmath.mpc) for v in pv)
        if init is None:
            dparams = {n: (complex(v) if isinstance(v, mpmath.mpc) else float(v)) for n, v in zip(names, pv)}
            dsol = dsolver.solve(dparams, complex=is_complex)
            init = [mpmath.mpmathify(complex(t) if is_complex else float(t)) for t in dsol.tau.reshape(-1)]
        tau = [mpmath.mpmathify(t) for t in init]
        vals = f(*pv)
        k = 0
        L0 = mpmath.zeros(N, N)
        for (i, j) in lay.L0:
            L0[i, j] = vals[k]; k += 1
        Pent = []
        for (q, i, j) in lay.P:
            Pent.append((q, i, j, vals[k])); k += 1
        Went = []
        for (q, i, j) in lay.W:
            Went.append((q, i, j, vals[k])); k += 1
        Rent = []
        for (i, j) in lay.R:
            Rent.append((i, j, vals[k])); k += 1
        c0 = vals[k] if lay.has_constant else None

        def block_inverse(S):
            """``t -> (L0 - eta(t))^{-1}`` restricted to the principal block ``S`` (local indices)."""
            loc = {b: k for k, b in enumerate(S)}
            P_S = [(q, loc[i], loc[j], c) for (q, i, j, c) in Pent if i in loc and j in loc]
            L0_S = mpmath.matrix([[L0[a, b] for b in S] for a in S])

            def G_S(t):
                M = L0_S.copy()
                for (q, i, j, c) in P_S:
                    M[i, j] -= c * t[q]
                return mpmath.inverse(M)

            return G_S

        G_of = block_inverse(range(N))

        def F_of(t, G):
            out = list(t)
            for (q, i, j, w) in Went:
                out[q] -= w * G[i, j]
            return out

        def rel(F, t):
            return max([abs(x) for x in F] + [0]) / max([mpmath.mpf(1)] + [abs(x) for x in t])

        target = mpmath.mpf(10) ** (-dps + 5)
        floor = mpmath.mpf(10) ** (-dps + 2)
        it = 0

        reach = system.reach

        def restricted(comp):
            """The component's view of the system: only the principal block ``S`` of ``M``
            that it reads is inverted, ``S`` = blocks reachable from a row ``j`` and reaching
            a column ``m`` of an entry ``G_jm`` read by ``comp`` (``M`` is block-triangular
            with respect to ``S``).  Returns ``(G_S(tau), F_comp(tau, G_S), W_c, P_c)`` in
            local block indices."""
            cset = set(comp)
            reads = [(j, m) for (q, j, m, _) in Went if q in cset]
            S = [b for b in range(N) if any(reach[j][b] for j, _ in reads) and any(reach[b][m] for _, m in reads)]
            loc = {b: k for k, b in enumerate(S)}
            W_c = [(q, loc[j], loc[m], w) for (q, j, m, w) in Went if q in cset]
            P_c = [(q, loc[i], loc[j], c) for (q, i, j, c) in Pent if q in cset and i in loc and j in loc]
            G_S = block_inverse(S)

            def F_c(t, G):
                out = {q: t[q] for q in comp}
                for (q, i, j, w) in W_c:
                    out[q] -= w * G[i, j]
                return out

            return G_S, F_c, W_c, P_c

        def newton(tau, comp, limit):
            """Newton on the unknowns ``comp`` (the others fixed), with backtracking."""
            nonlocal it
            G_S, F_c, W_c, P_c = restricted(comp)
            pos = {q: k for k, q in enumerate(comp)}
            G = G_S(tau)
            F = F_c(tau, G)
            res = rel(list(F.values()), [tau[q] for q in comp])
            for _ in range(limit):
                if res <= floor:
                    break
                J = mpmath.eye(len(comp))
                for (q, j, m, w) in W_c:
                    for (p, a, b, c) in P_c:
                        J[pos[q], pos[p]] -= w * c * G[j, a] * G[b, m]
                try:
                    delta = mpmath.lu_solve(J, mpmath.matrix([-F[q] for q in comp]))
                except ZeroDivisionError:
                    raise ConvergenceError(f"mpmath Newton: singular Jacobian at dps={dps} "
                                           f"(residual {mpmath.nstr(res, 5)})", None) from None
                it += 1
                # Backtracking: halve the step until the residual decreases.
                step = mpmath.mpf(1)
                for _half in range(40):
                    new = list(tau)
                    for k, q in enumerate(comp):
                        new[q] = tau[q] + step * delta[k]
                    try:
                        Gn = G_S(new)
                    except ZeroDivisionError:
                        step /= 2
                        continue
                    Fn = F_c(new, Gn)
                    rn = rel(list(Fn.values()), [new[q] for q in comp])
                    if rn < res:
                        break
                    step /= 2
                else:
                    break  # no decrease: at the precision floor, or stuck (verified below)
                tau, G, F, res = new, Gn, Fn, rn
            return tau

        def damped(tau, comp, limit=20000, damping=mpmath.mpf(1) / 2, stop=mpmath.mpf("1e-6")):
            """Damped fixed-point iteration on ``comp``: slow but it stays on the physical
            branch (the attracting fixed point) from far away, where Newton may stall."""
            nonlocal it
            G_S, F_c, _, _ = restricted(comp)
            for _ in range(limit):
                F = F_c(tau, G_S(tau))  # tau - ell(G)
                it += 1
                if rel(list(F.values()), [tau[q] for q in comp]) < stop:
                    break
                tau = list(tau)
                for q in comp:
                    tau[q] = tau[q] - damping * F[q]
            return tau

        # Component by component, in dependency order (as the numpy solver does): the
        # nonlinear resolvent cores first, then the affine read-outs.
        for comp, lin in zip(system.components, system.linear):
            tau = newton(tau, list(comp), newton_maxiter)
            if not lin:
                G = G_of(tau)
                F = F_of(tau, G)
                if rel([F[q] for q in comp], [tau[q] for q in comp]) > target:
                    tau = newton(damped(tau, list(comp)), list(comp), newton_maxiter)
        G = G_of(tau)
        F = F_of(tau, G)
        res = rel(F, tau)
        if res > target:  # a final pass on the whole system
            tau = newton(tau, list(range(Q)), newton_maxiter)
            G = G_of(tau)
            F = F_of(tau, G)
            res = rel(F, tau)
        if not (res <= target):
            raise ConvergenceError(f"mpmath Newton did not verify: residual {mpmath.nstr(res, 5)} "
                                   f"> {mpmath.nstr(target, 3)} at dps={dps}", None)
        value = None
        if c0 is not None:
            value = c0 + mpmath.fsum(c * G[i, j] for (i, j, c) in Rent)
            if not is_complex and isinstance(value, mpmath.mpc):
                value = value.real
        return MPSolution(value, tau, res, it, True)
