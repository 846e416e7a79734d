"""Compiled solvers for the block fixed-point equations of :mod:`pencils.freeprob`.

* :func:`compile` -> :class:`Solver` (vectorised numpy, broadcast over parameter
  grids, damping / Anderson / Newton / warm starts, per-point diagnostics);
* :func:`solve_mp` (mpmath at a chosen precision, verified residual);
* :func:`build_function` / :func:`generate_source` (the cached code generation).

Every submodule here builds on sympy (about 0.35 s to import), so the public names are
imported on first access (PEP 562): ``import numerics`` alone loads nothing heavy.
"""
from pencils._lazy import lazy_names

#: public name -> submodule that defines it
_LAZY = {
    "compile": "fixedpoint", "Solver": "fixedpoint", "Solution": "fixedpoint",
    "ConvergenceError": "_errors",
    "solve_mp": "mp", "MPSolution": "mp",
    "build_function": "codegen", "generate_source": "codegen",
}

__all__ = ["compile", "Solver", "Solution", "ConvergenceError", "solve_mp", "MPSolution",
           "build_function", "generate_source"]


lazy_names(__name__, _LAZY)
