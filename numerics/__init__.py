"""Compiled solvers of the fixed-point equations derived by :mod:`pencils`.

* the reduced solver, the one the learning curves use: :func:`compile_reduced` ->
  :class:`ReducedSolver` (compiled per-point kernel or numpy, double-double refinement,
  mpmath), with one vocabulary -- :class:`SolveOptions`, :class:`ReducedSolution` and a
  :class:`Result` code per point (:mod:`numerics.options`);
* the raw-system solver, the reference and fallback: :func:`compile` -> :class:`Solver`
  (vectorised numpy on the operator-valued systems of :mod:`pencils.freeprob`) and
  :func:`solve_mp` (its mpmath reference);
* code generation (:mod:`numerics.codegen`): :func:`build_function`, :func:`generate_source`,
  :func:`kernel_source`.

The public names are imported on first access (PEP 562): ``import numerics`` alone loads
nothing heavy, and a warm start of the reduced solver (cached layout and kernel) no sympy.
"""
from pencils._lazy import lazy_names

#: public name -> submodule that defines it
_LAZY = {
    "ReducedSolver": "reduced", "compile_reduced": "reduced",
    "SolveOptions": "options", "ReducedSolution": "options", "Result": "options",
    "ConvergenceError": "_errors",
    "compile": "fixedpoint", "Solver": "fixedpoint", "Solution": "fixedpoint",
    "solve_mp": "mp", "MPSolution": "mp",
    "build_function": "codegen", "generate_source": "codegen", "kernel_source": "codegen",
}

__all__ = ["ReducedSolver", "compile_reduced", "SolveOptions", "ReducedSolution", "Result", "ConvergenceError",
           "compile", "Solver", "Solution", "solve_mp", "MPSolution",
           "build_function", "generate_source", "kernel_source"]


lazy_names(__name__, _LAZY)
