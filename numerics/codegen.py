"""Code generation: the coefficient matrices of a :class:`~pencils.freeprob.FixedPointSystem`
as one plain Python function per backend (numpy or mpmath).

The function takes the parameters positionally (in ``system.params`` order) and
returns the list of the non-zero entries of ``L0``, of every ``P_q``, of every
``W_q`` and of the read-out, in the order described by :class:`Layout`.  Common
sub-expressions are shared (``sympy.cse``).  The generated source is cached on disk
(keyed by the system and the backend), so a second run neither re-derives nor
re-generates; it is exec'd into a fresh namespace.

Printing goes through sympy's ``NumPyPrinter`` / ``MpmathPrinter``, so rationals
stay exact in the mpmath backend (``mpf(p)/mpf(q)``, never a double literal).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import sympy
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.pycode import MpmathPrinter

from pencils.cache import cached
from pencils.freeprob import FixedPointSystem
from pencils.linearize import describe

__all__ = ["Layout", "layout", "generate_source", "build_function"]


@dataclass(frozen=True)
class Layout:
    """Positions of the generated entries: lists of ``(i, j)`` / ``(q, i, j)``."""

    L0: tuple
    P: tuple
    W: tuple
    R: tuple
    has_constant: bool

    @property
    def count(self) -> int:
        return len(self.L0) + len(self.P) + len(self.W) + len(self.R) + int(self.has_constant)


def layout(system: FixedPointSystem) -> tuple[Layout, list]:
    n = system.size
    exprs: list = []
    L0 = tuple((i, j) for i in range(n) for j in range(n) if system.L0[i, j] != 0)
    exprs += [system.L0[i, j] for i, j in L0]
    P = tuple((q, i, j) for q, Pq in enumerate(system.P) for i in range(n) for j in range(n) if Pq[i, j] != 0)
    exprs += [system.P[q][i, j] for q, i, j in P]
    W = tuple((q, i, j) for q, Wq in enumerate(system.W) for i in range(n) for j in range(n) if Wq[i, j] != 0)
    exprs += [system.W[q][i, j] for q, i, j in W]
    R: tuple = ()
    has_c = system.readout is not None
    if has_c:
        R = tuple((i, j) for i in range(n) for j in range(n) if system.readout[i, j] != 0)
        exprs += [system.readout[i, j] for i, j in R]
        exprs.append(system.constant)
    return Layout(L0, P, W, R, has_c), exprs


def _source(system: FixedPointSystem, backend: str) -> str:
    _, exprs = layout(system)
    args = [sympy.Symbol(f"p_{k}") for k in range(len(system.params))]
    subs = dict(zip(system.params, args))
    exprs = [sympy.sympify(e).xreplace(subs) for e in exprs]
    repl, reduced = sympy.cse(exprs, symbols=sympy.numbered_symbols("c_"))
    if backend == "numpy":
        printer = NumPyPrinter({"fully_qualified_modules": True})
    elif backend == "mpmath":
        printer = MpmathPrinter({"fully_qualified_modules": True})
    else:
        raise ValueError(f"unknown backend {backend!r} (use 'numpy' or 'mpmath')")
    lines = [f"def coefficients({', '.join(a.name for a in args)}):"]
    for s, e in repl:
        lines.append(f"    {s.name} = {printer.doprint(e)}")
    lines.append("    return [" + ", ".join(printer.doprint(e) for e in reduced) + "]")
    return "\n".join(lines) + "\n"


def generate_source(system: FixedPointSystem, backend: str = "numpy") -> str:
    """Python source of ``coefficients(*params)`` for ``backend``, cached on disk."""
    return cached(f"codegen-{backend}", describe((system.L0, system.P, system.W, system.readout,
                                                  system.constant, system.params)),
                  lambda: _source(system, backend))


def build_function(system: FixedPointSystem, backend: str = "numpy") -> Callable:
    """Compile the generated source into a callable."""
    import mpmath
    import numpy

    namespace: dict = {"numpy": numpy, "mpmath": mpmath}  # the modules the generated code names
    exec(compile(generate_source(system, backend), f"<pencil-{backend}>", "exec"), namespace)
    return namespace["coefficients"]
