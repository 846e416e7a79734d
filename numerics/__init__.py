"""Compiled solvers for the block fixed-point equations of :mod:`pencils.freeprob`.

* :func:`compile` -> :class:`Solver` (vectorised numpy, broadcast over parameter
  grids, damping / Anderson / Newton / warm starts, per-point diagnostics);
* :func:`solve_mp` (mpmath at a chosen precision, verified residual);
* :func:`build_function` / :func:`generate_source` (the cached code generation).
"""
from .codegen import build_function, generate_source
from .fixedpoint import ConvergenceError, Solution, Solver, compile
from .mp import MPSolution, solve_mp

__all__ = ["compile", "Solver", "Solution", "ConvergenceError", "solve_mp", "MPSolution",
           "build_function", "generate_source"]
