"""The Python printer: sympy expressions as plain numpy or mpmath function bodies, the one
implementation behind the coefficient functions of the raw systems (:func:`generate_source`,
used by :mod:`numerics.fixedpoint`) and the program functions of the reduced systems
(:func:`reduced_source`, used by :mod:`numerics.reduced`).

Expressions go through sympy's ``NumPyPrinter`` / ``MpmathPrinter`` (rationals stay exact in
the mpmath backend: ``mpf(p)/mpf(q)``, never a double literal), with common sub-expressions
shared by ``sympy.cse``.  Spectral means ``E_mu[g(coordinates)]`` become nested functions of
the measure's coordinates, averaged by ``spectral_mean(E, g, weights key, atom keys)`` (a name
the caller puts in the namespace; the keys are those of :mod:`numerics.codegen.measures`).
Sources are cached on disk.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import sympy
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.pycode import MpmathPrinter

from pencils.cache import cached
from pencils.expr import measure_of
from pencils.freeprob import FixedPointSystem
from pencils.linearize import describe

from ..measures import atoms_key, weights_key
from .measures import means_in

__all__ = ["Layout", "layout", "generate_source", "build_function", "reduced_source", "FunctionWriter",
           "printer", "reads"]

BACKENDS = ("numpy", "mpmath")


def printer(backend: str):
    """sympy's printer of ``backend`` (module names written out: the code is exec'd)."""
    cls = {"numpy": NumPyPrinter, "mpmath": MpmathPrinter}.get(backend)
    if cls is None:
        raise ValueError(f"unknown backend {backend!r} (use 'numpy' or 'mpmath')")
    return cls({"fully_qualified_modules": True, "allow_unknown_functions": False})


class FunctionWriter:
    """One Python function: ``def name(args):``, then statements added in order."""

    def __init__(self, name: str, args: str, backend: str):
        self.pr = printer(backend)
        self.lines = [f"def {name}({args}):"]
        self.names = sympy.numbered_symbols("c_")  # cse temporaries, unique in the function
        self.means = sympy.numbered_symbols("mean_")

    def bind(self, name: str, source: str) -> None:
        self.lines.append(f"    {name} = {source}")

    def _cse(self, exprs: list, order: str) -> list:
        repl, reduced = sympy.cse(exprs, symbols=self.names, order=order)
        self.lines += [f"    {c.name} = {self.pr.doprint(x)}" for c, x in repl]
        return reduced

    def _hoist(self, exprs: list) -> list:
        """Spectral means become nested functions of their measure's coordinates, averaged by
        ``spectral_mean``."""
        out = []
        for e in exprs:
            rep = {}
            # (means_in, not atoms: atoms walks every mean's per-atom program, the whole of a large
            # program's code generation, and hoists means nested there that nothing reads)
            for m in sorted(means_in(e), key=sympy.default_sort_key):
                sym = next(self.means)
                coords = sorted(c.name for c in m.coordinates)
                self.lines.append(f"    def _f_{sym.name}({', '.join(coords)}):")
                for x, bx in m.lets:  # the per-atom program, one binding at a time
                    repl, (red,) = sympy.cse([bx], symbols=self.names, order="none")
                    self.lines.extend(f"        {c.name} = {self.pr.doprint(v)}" for c, v in repl)
                    self.lines.append(f"        {x.name} = {self.pr.doprint(red)}")
                repl, (red,) = sympy.cse([m.args[0]], symbols=self.names, order="none")
                self.lines.extend(f"        {c.name} = {self.pr.doprint(x)}" for c, x in repl)
                self.lines.append(f"        return {self.pr.doprint(red)}")
                keys = tuple(atoms_key(c) for c in coords)
                self.lines.append(f"    {sym.name} = spectral_mean(E, _f_{sym.name}, {weights_key(m.measure)!r}, "
                                  f"{keys!r})")
                rep[m] = sym
            out.append(sympy.sympify(e).xreplace(rep))
        return out

    def assign(self, sym, expr, store: bool) -> None:
        """``sym = expr`` (its own cse: a step reads the ones before); ``store``: also ``E[sym]``."""
        (red,) = self._cse(self._hoist([expr]), "none")
        self.lines.append(f"    {sym.name} = {self.pr.doprint(red)}")
        if store:
            self.lines.append(f"    E[{sym.name!r}] = {sym.name}")

    def returns(self, exprs: list, order: str = "none") -> None:
        """``return [...]``, the expressions sharing their sub-expressions."""
        reduced = self._cse(self._hoist(list(exprs)), order)
        self.lines.append("    return [" + ", ".join(self.pr.doprint(e) for e in reduced) + "]")

    def source(self) -> str:
        return "\n".join(self.lines) + "\n"


def reads(exprs, defined: set) -> list:
    """The free symbols of ``exprs`` not in ``defined`` (nor coordinates of a measure), sorted
    by name."""
    syms = set().union(*(sympy.sympify(e).free_symbols for e in exprs)) if exprs else set()
    return sorted((s for s in syms - set(defined) if measure_of(s) is None), key=lambda s: s.name)


# -- raw systems: the coefficient matrices -------------------------------------------------


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


def _entries(M) -> tuple:
    """Positions ``(i, j)`` of the non-zero entries of a sympy matrix, row by row (from its
    non-zero entries: reading all ``n^2`` one by one dominated large pencils)."""
    return tuple(sorted(k for k, v in M.todok().items() if v != 0))


def layout(system: FixedPointSystem) -> tuple[Layout, list]:
    """The non-zero entries of ``L0``, every ``P_q``, every ``W_q`` and the read-out (with
    its constant), in this order: their positions and their expressions."""
    exprs: list = []
    L0 = _entries(system.L0)
    exprs += [system.L0[i, j] for i, j in L0]
    P = tuple((q, i, j) for q, Pq in enumerate(system.P) for i, j in _entries(Pq))
    exprs += [system.P[q][i, j] for q, i, j in P]
    W = tuple((q, i, j) for q, Wq in enumerate(system.W) for i, j in _entries(Wq))
    exprs += [system.W[q][i, j] for q, i, j in W]
    R: tuple = ()
    has_c = system.readout is not None
    if has_c:
        R = _entries(system.readout)
        exprs += [system.readout[i, j] for i, j in R]
        exprs.append(system.constant)
    return Layout(L0, P, W, R, has_c), exprs


def _coefficients(system: FixedPointSystem, backend: str) -> str:
    _, exprs = layout(system)
    args = [sympy.Symbol(f"p_{k}") for k in range(len(system.params))]
    subs = dict(zip(system.params, args))
    w = FunctionWriter("coefficients", ", ".join(a.name for a in args), backend)
    w.returns([sympy.sympify(e).xreplace(subs) for e in exprs], order="canonical")
    return w.source()


def generate_source(system: FixedPointSystem, backend: str = "numpy") -> str:
    """Python source of ``coefficients(*params)`` (the entries of :func:`layout`, parameters
    positional in ``system.params`` order) for ``backend``, cached on disk."""
    printer(backend)  # an unknown backend fails before the cache is asked
    lay, exprs = layout(system)  # the key from the non-zero entries (srepr of n x n matrices is slow)
    return cached(f"codegen-{backend}", describe((repr(lay), tuple(exprs), system.params)),
                  lambda: _coefficients(system, backend))


def build_function(system: FixedPointSystem, backend: str = "numpy") -> Callable:
    """Compile the generated source into a callable."""
    import mpmath
    import numpy

    namespace: dict = {"numpy": numpy, "mpmath": mpmath}  # the modules the generated code names
    exec(compile(generate_source(system, backend), f"<pencil-{backend}>", "exec"), namespace)
    return namespace["coefficients"]


# -- reduced systems: the program ----------------------------------------------------------


def _function(name, reads_, assigns, returns, backend, unknowns=(), store=True) -> str:
    """``def name(E, u=None)``: reads from the environment ``E`` (the unknowns from ``u[j]``),
    computes ``assigns`` in order (stored back into ``E`` when ``store``), returns ``returns``."""
    w = FunctionWriter(name, "E, u=None", backend)
    for s in reads_:
        w.bind(s.name, f"E[{s.name!r}]")
    for j, s in enumerate(unknowns):
        w.bind(s.name, f"u[{j}]")
    for s, e in assigns:
        w.assign(s, e, store)
    if returns is not None:
        w.returns(returns)
    return w.source()


def reduced_source(R, backend: str) -> str:
    """The program of a :class:`~pencils.reduce.ReducedSystem` as Python functions: per run
    of ``let`` steps ``seg_k(E)``; per core stage ``map_k(E, u)`` (``f(u)``), ``jac_k(E, u)``
    (``f`` then ``df/du`` row-major) and ``fill_k(E, u)`` (the eliminated unknowns); and
    ``outputs(E)``."""
    parts = []
    for k, (kind, body) in enumerate(R.segments):
        if kind == "let":
            parts.append(_function(f"seg_{k}", reads([e for _, e in body], {s for s, _ in body}), body,
                                   None, backend))
            continue
        st = body
        prog, jprog = list(st.program), list(st.jac_program)
        local = set(st.unknowns) | {s for s, _ in prog + jprog}
        need = reads([e for _, e in prog + jprog] + list(st.maps) + list(st.jacobian), local)
        parts.append(_function(f"map_{k}", need, prog, list(st.maps), backend, st.unknowns, store=False))
        parts.append(_function(f"jac_{k}", need, prog + jprog, list(st.maps) + list(st.jacobian), backend,
                               st.unknowns, store=False))
        parts.append(_function(f"fill_{k}", need, prog, list(st.eliminated), backend, st.unknowns, store=False))
    outs = list(R.outputs.values())
    parts.append(_function("outputs", reads(outs, set()), [], outs, backend))
    return "\n".join(parts)
