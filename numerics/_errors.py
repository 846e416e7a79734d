"""The solvers' failure exception, in a module of its own so that importing it loads
nothing heavy (the solvers themselves build on sympy)."""
from __future__ import annotations

__all__ = ["ConvergenceError"]


class ConvergenceError(RuntimeError):
    """Raised when a fixed point is not found to the requested residual."""

    def __init__(self, message: str, solution):
        super().__init__(message)
        self.solution = solution
