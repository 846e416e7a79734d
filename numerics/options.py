"""The vocabulary of the reduced solver, shared by its backends (numpy stages, compiled
kernel, double-double refinement, mpmath): :class:`SolveOptions` (what to do),
:class:`ReducedSolution` (what came out) and :class:`Result` (one code per point).

Errors are absolute everywhere: ``ReducedSolution.error[name]`` bounds ``|value - exact|``.
The residual of a point is the scaled one, ``max|u - f(u)| / max(1, max|u|)`` over its
core unknowns, and ``tol`` / ``fp_tol`` are thresholds on it.
"""
from __future__ import annotations

import dataclasses
import enum
import functools
from dataclasses import dataclass

import numpy as np

__all__ = ["SolveOptions", "Result", "ReducedSolution", "KERNEL_CFG", "DD_EPS", "READOUT_SAFETY", "rounding_signs"]


#: The factor on the measured long-double difference in the rounding estimate (the kernel's
#: warm long-double re-solve, numpy's :func:`numerics.stages.readout_rounding`): the check
#: measures the double error itself, to 1/2048; the factor covers the long double's own.
READOUT_SAFETY = 2.0

@dataclass(frozen=True)
class SolveOptions:
    """How a core stage is solved (every backend reads the same fields).

    ``tol``: the residual a point must reach to be converged; ``fp_tol``: the residual at
    which the damped fixed point ``u <- u + damping (f(u) - u)`` hands over to Newton;
    ``fp_maxiter``: fixed-point steps at most; ``newton_maxiter``: Newton steps at most (each
    with up to 8 step halvings); ``continuation``: the parameter (by name) in which a point
    that fails, or lands on a repelling root, is re-solved by continuation -- from
    ``max(p, 1)`` down to ``p`` in ``ceil(per_decade * log10(max(p, 1) / p))`` geometric
    steps -- declared by the caller (``"lam"`` for the ridge of the DSM systems), ``None``:
    off; ``per_decade``: steps per decade of that walk.
    """

    tol: float = 1e-12
    fp_tol: float = 1e-3
    damping: float = 0.5
    fp_maxiter: int = 300
    newton_maxiter: int = 60
    continuation: str | None = None
    per_decade: int = 4

    def replace(self, **changes) -> "SolveOptions":
        """A copy with ``changes`` (unknown names raise ``TypeError``)."""
        return dataclasses.replace(self, **changes)


class Result(enum.IntEnum):
    """What happened at one point (``ReducedSolution.result``)."""

    #: residual at most ``tol``, values finite (double precision or complex)
    OK = 0
    #: converged in double-double arithmetic (:meth:`ReducedSolver.refine_dd`)
    REFINED_DD = 1
    #: converged at mpmath precision, residual verified (:meth:`ReducedSolver.solve_mp`)
    REFINED_MP = 2
    #: the step limits ran out with a finite residual above ``tol``
    MAX_STEPS = 3
    #: no attracting root: the root found repels the damped map (not the physical branch),
    #: or the residual or a value is not finite (the kernel does not tell these apart)
    REPELLING = 4
    #: converged, but the rounding estimate exceeds the caller's acceptance (set by callers)
    ROUNDING = 5


#: the codes of a converged point (the lowest: ``converged`` is ``result <= REFINED_MP``)
CONVERGED = (Result.OK, Result.REFINED_DD, Result.REFINED_MP)
assert max(CONVERGED) < min(set(Result) - set(CONVERGED))


@dataclass(frozen=True)
class ReducedSolution:
    """Per-point results on the broadcast grid (for :meth:`ReducedSolver.solve_mp`: one
    point, mpmath scalars): ``values[name]`` (NaN where not converged), ``core`` (the core
    unknowns, ``grid + (K,)``), ``residual``, ``iterations``, ``result`` (a :class:`Result`
    code per point) and, when requested, ``error[name]`` (estimated absolute rounding error)."""

    values: dict
    core: np.ndarray
    residual: np.ndarray
    iterations: np.ndarray
    result: np.ndarray
    error: dict | None = None

    @functools.cached_property
    def converged(self) -> np.ndarray:
        """Whether each point converged (``result`` in OK, REFINED_DD, REFINED_MP: the lowest
        codes, so one comparison; computed once, as callers index it point by point)."""
        return np.asarray(self.result) <= Result.REFINED_MP


def result_codes(res: np.ndarray, finite: np.ndarray, tol: float, ok: Result = Result.OK) -> np.ndarray:
    """The code of each point from its residual and whether its values are finite."""
    code = np.where(np.isfinite(res) & finite, Result.MAX_STEPS, Result.REPELLING).astype(np.int8)
    code[(res <= tol) & finite] = ok
    return code


#: Slots of the ``cfg`` array passed to the kernel (``continuation``: 1 on, 0 off -- the
#: parameter is compiled into the kernel; ``polish``: Newton's target residual; ``attract``:
#: test the root's attractivity).
KERNEL_CFG = ("tol", "fp_tol", "damping", "fp_maxiter", "newton_maxiter", "continuation", "per_decade",
              "polish", "attract")
#: Unit roundoff of double-double arithmetic: the accurate sum, product, quotient and square
#: root of the runtime err by a few units of 2^-106 (Hida, Li & Bailey 2001), so 2^-104 scales
#: the moves and the floor of its rounding check.
DD_EPS = 2.0 ** -104


def rounding_signs(n_params: int) -> np.ndarray:
    """Signs of the three parameter moves of the rounding check, shared by the kernel and
    the numpy solver: row ``p`` moves parameter ``j`` by ``+eps`` or ``-eps`` relative (three
    patterns: a change one of them misses, another sees)."""
    return np.array([[1.0 if (j * p + p // 2) % 3 else -1.0 for j in range(n_params)] for p in (1, 2, 3)])
