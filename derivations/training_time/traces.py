"""Derivation and solution of the training-time traces ``s1, s2, q``, ``tr R`` and the moments
(see :mod:`derivations.training_time`): the engine derives their fixed-point systems, reduces
them in groups, and solves them at complex spectral parameters; the raw systems re-solve
what the reduced cores flag.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import sympy

from numerics import Solver, compile as compile_system
from numerics.options import SolveOptions
from numerics.reduced import ReducedSolver, solver_layout
from pencils.cache import cached
from pencils.expr import Trace, inverse, trace
from pencils.freeprob import FixedPointSystem, equations

from ..dsm import dsm_matrices

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
    return ReducedSolver(key=f"time:{kind}:{group}", layout=layout, loader=lambda: reduced_time_system(kind, group),
                         options=SolveOptions(continuation="lam"))


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
