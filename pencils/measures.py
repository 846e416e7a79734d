"""Measures of the matrix language: coordinates, and means over atoms.

A deterministic diagonal matrix on a space (:func:`pencils.expr.spectral`,
:func:`pencils.expr.profile`) is a function of the coordinates of one measure: :data:`S_NU`, an
eigenvalue of ``Sigma`` (the measure ``"nu"``), or :func:`coordinate` of any other measure (a
hidden variable attached to each sample or feature).  A normalised trace over the space is then a
mean over the measure (:class:`SpectralMean`), evaluated numerically on its atoms
(:mod:`numerics.measures`).
"""
from __future__ import annotations

import re
from typing import Any

import sympy

__all__ = ["S_NU", "coordinate", "measure_of", "measures", "has_coordinates", "SpectralMean", "mean_of", "partial",
           "replace_exact"]

#: The spectral variable: an eigenvalue ``s`` of the data covariance ``Sigma`` (see :func:`spectral`).
#: It is the one coordinate of the measure ``"nu"``, the spectral measure of ``Sigma``.
S_NU = sympy.Symbol("s_nu", nonnegative=True)

_COORDINATE = re.compile(r"^s_([a-z]+)_([0-9]+)$")


def coordinate(measure: str, index: int) -> sympy.Symbol:
    """Coordinate ``index`` of the measure ``measure``: a deterministic profile on a space
    (:func:`profile`) is a function of the coordinates of one measure, and a normalised trace
    over that space averages over the measure (:class:`SpectralMean`).

    A measure is a list of atoms, each a value of every coordinate, with weights; the numbers
    are given at solve time (:meth:`derivations.derived.DerivedModel.solve`, ``measures=``).
    ``"nu"`` is reserved for the spectral measure of ``Sigma`` (its coordinate is :data:`S_NU`).
    Several spaces may share a measure (the same hidden variable indexes both)."""
    if not (isinstance(measure, str) and re.fullmatch(r"[a-z]+", measure)) or measure == "nu":
        raise ValueError(f"a measure name is lower-case letters other than 'nu', got {measure!r}")
    if not (isinstance(index, int) and not isinstance(index, bool) and index >= 0):
        raise ValueError(f"a coordinate index is an integer >= 0, got {index!r}")
    return sympy.Symbol(f"s_{measure}_{index}", real=True)


def measure_of(sym: Any) -> str | None:
    """The measure whose coordinate ``sym`` is (``"nu"`` for :data:`S_NU`), else ``None``."""
    if not isinstance(sym, sympy.Symbol):
        return None
    if sym.name == S_NU.name:
        return "nu"
    m = _COORDINATE.match(sym.name)
    return m.group(1) if m else None


def measures(expr: Any) -> set[str]:
    """The measures whose coordinates occur in ``expr``."""
    syms = getattr(sympy.sympify(expr), "free_symbols", set())
    return {m for m in map(measure_of, syms) if m is not None}


def has_coordinates(expr: Any) -> bool:
    """Whether ``expr`` depends on a coordinate of some measure (:func:`coordinate`, :data:`S_NU`)."""
    return any(measure_of(s) is not None for s in getattr(sympy.sympify(expr), "free_symbols", ()))


#: ``SpectralMean -> (coordinates, free symbols)`` (immutable objects; cleared when full).
_SYMBOLS: dict = {}
#: ``(SpectralMean, x) -> d/dx`` (same lifetime).
_DERIVATIVES: dict = {}
#: ``id(expression) -> (expression, free symbols)`` (sympy recomputes them on every call).  Keyed
#: by identity: a lookup by equality compares a rebuilt expression with its stored twin node by
#: node, every time (half of a derivation's time).
_FREE: dict = {}
#: ``(expression, x) -> d expression / dx``: forward differentiation through a program needs the
#: partial derivatives of each step by each symbol it reads, once for all the unknowns; looked up
#: by identity first (``_PARTIALS_BY_ID``: ``(id(expression), x) -> (expression, derivative)``),
#: then by equality (once per object).
_PARTIALS: dict = {}
_PARTIALS_BY_ID: dict = {}
#: ``expression -> itself``: every node :func:`replace_exact` has rebuilt, so that the same node
#: rebuilt again (a definition substituted anew in each component of a reduction) is the same
#: object.  sympy compares equal objects node by node wherever it meets them (its construction
#: cache, ``Add`` and ``Mul`` collecting terms, the memos here); two twins made of the same children
#: compare in one step, two independent rebuilds through their whole depth.
_REBUILT: dict = {}
_SYMBOLS_MAX = 200_000
_REBUILT_MAX = 2_000_000


def partial(e, x) -> sympy.Expr:
    """``d e / d x`` for a symbol ``x``, memoised per node (0 at once when ``x`` is not free).

    The same result as ``sympy.diff(e, x)`` (the same rules, Leibniz for products and
    ``Pow._eval_derivative`` for powers, build the same canonical expression), without its
    per-call overhead: ``sympy.diff`` recomputes the free symbols of every sub-expression it
    enters and walks the whole result once more (``Derivative.__new__``), which made the
    derivatives of large per-atom programs the slowest step of the spiked derivations.  Other
    node types (functions) go to ``sympy.diff``."""
    if x not in _free(e):
        return sympy.Integer(0)
    hit = _PARTIALS_BY_ID.get((id(e), x))
    if hit is not None and hit[0] is e:
        return hit[1]
    out = _PARTIALS.get((e, x))
    if out is None:
        if len(_PARTIALS) >= _SYMBOLS_MAX:
            _PARTIALS.clear()
        out = _PARTIALS[(e, x)] = _derivative_of(e, x)
    if len(_PARTIALS_BY_ID) >= _SYMBOLS_MAX:
        _PARTIALS_BY_ID.clear()
    _PARTIALS_BY_ID[(id(e), x)] = (e, out)
    return out


def _derivative_of(e, x) -> sympy.Expr:
    if e is x or e == x:
        return sympy.Integer(1)
    if isinstance(e, sympy.Add):
        return sympy.Add(*[partial(a, x) for a in e.args])
    if isinstance(e, sympy.Mul):  # Leibniz's rule, as Mul._eval_derivative_n_times
        args = e.args
        terms = []
        for i, a in enumerate(args):
            d = partial(a, x)
            if d != 0:
                terms.append(sympy.Mul(*(args[:i] + (d,) + args[i + 1:])))
        return sympy.Add(*terms)
    if isinstance(e, sympy.Pow):  # as Pow._eval_derivative
        dbase, dexp = partial(e.base, x), partial(e.exp, x)
        inner = dbase * e.exp / e.base
        if dexp != 0:
            inner = dexp * sympy.log(e.base) + inner
        return e * inner
    if isinstance(e, SpectralMean):
        return e._eval_derivative(x)
    return sympy.diff(e, x)


#: Node types whose free symbols are the union of their arguments' (the others ask sympy).
_UNION_TYPES = (sympy.Add, sympy.Mul, sympy.Pow, sympy.Tuple)


def _free(e) -> frozenset:
    """``e.free_symbols``, memoised per node (same lifetime as :data:`_SYMBOLS`): sympy recomputes
    them through the whole tree on every call."""
    hit = _FREE.get(id(e))
    if hit is not None and hit[0] is e:
        return hit[1]
    if isinstance(e, _UNION_TYPES):
        out = frozenset().union(*(_free(a) for a in e.args))
    else:
        out = frozenset(e.free_symbols)
    if len(_FREE) >= _SYMBOLS_MAX:
        _FREE.clear()
    _FREE[id(e)] = (e, out)
    return out


def replace_exact(e, rule: dict) -> sympy.Expr:
    """``e.xreplace(rule)``, the same expression, faster, for keys that are symbols or expressions
    (not coordinates, not symbols a mean binds, not expressions in them): a sub-expression is
    entered only if it may hold a key (a symbol key among its free symbols, memoised, or all the
    free symbols of an expression key), and each distinct sub-expression is rebuilt once.  sympy
    walks every node of every per-atom program, each time: most of a large reduction's time."""
    if not rule:
        return e
    memo: dict = {}
    symbols = frozenset(k for k in rule if isinstance(k, sympy.Symbol))
    others = [_free(k) for k in rule if not isinstance(k, sympy.Symbol)]

    def walk(node):  # (the memo by identity: the tree holds its nodes while we walk)
        hit = memo.get(id(node))
        if hit is not None:
            return hit
        if node in rule:
            out = rule[node]
        elif not node.args or not ((_free(node) & symbols) or any(f <= _free(node) for f in others)):
            out = node
        else:
            args = tuple(walk(a) for a in node.args)
            if any(a is not b for a, b in zip(args, node.args)):
                out = node.func(*args)
                if len(_REBUILT) >= _REBUILT_MAX:
                    _REBUILT.clear()
                out = _REBUILT.setdefault(out, out)
            else:
                out = node
        memo[id(node)] = out
        return out

    return walk(sympy.sympify(e))


class SpectralMean(sympy.Function):
    """``E_mu[f]``: the average of an expression in the coordinates of one measure ``mu``
    (:data:`S_NU` for the spectral measure ``nu`` of ``Sigma``; :func:`coordinate` for the
    others), evaluated numerically as a weighted sum over its atoms.

    ``SpectralMean(f, lets)``: ``lets`` is a tuple of bindings ``(symbol, expression)``
    evaluated in order at each atom before ``f`` -- a straight-line program per atom.  It keeps
    a large per-atom computation (the inverse of a block of the pencil whose entries follow the
    measure) a program, where an expanded expression would grow exponentially.

    It is linear, so ``d/dx E_mu[f] = E_mu[df/dx]`` (through the bindings by forward-mode
    differentiation); an argument free of coordinates is its own mean.  The mean binds its
    coordinates and its let symbols: they are not among its ``free_symbols``.  An argument in
    the coordinates of two measures is refused: a trace runs over one space, whose profiles
    follow one measure.
    """

    nargs = (1, 2)

    @classmethod
    def eval(cls, arg, lets=None):
        found = _let_measures(arg, () if lets is None else lets)
        if len(found) > 1:
            raise ValueError(f"a spectral mean over one measure, got coordinates of {sorted(found)}")
        if found:
            return None
        if lets is None:
            return arg
        for sym, e in reversed(tuple(lets)):  # a let-program free of coordinates: inline it
            arg = arg.xreplace({sym: e})
        return arg

    @property
    def lets(self) -> tuple:
        return tuple(self.args[1]) if len(self.args) > 1 else ()

    def _symbols(self) -> tuple:
        """``(coordinates, free symbols)``, memoised: a reduction asks for them once per unknown
        and dependency (half of a rank-2 derivation's time went to recomputing them)."""
        out = _SYMBOLS.get(self)
        if out is None:
            syms = set(_free(self.args[0])).union(*(_free(e) for _, e in self.lets))
            bound = {x for x, _ in self.lets}
            out = (frozenset(x for x in syms if measure_of(x) is not None),
                   frozenset(x for x in syms if x not in bound and measure_of(x) is None))
            if len(_SYMBOLS) >= _SYMBOLS_MAX:
                _SYMBOLS.clear()
            _SYMBOLS[self] = out
        return out

    @property
    def coordinates(self) -> set:
        """The coordinates the mean averages over (in its argument or its bindings)."""
        return set(self._symbols()[0])

    @property
    def free_symbols(self) -> set:
        return set(self._symbols()[1])

    @property
    def measure(self) -> str:
        (m,) = {measure_of(x) for x in self.coordinates}
        return m

    def _eval_derivative(self, x):
        key = (self, x)
        if key not in _DERIVATIVES:  # the reduction differentiates one mean many times by one unknown
            if len(_DERIVATIVES) >= _SYMBOLS_MAX:
                _DERIVATIVES.clear()
            _DERIVATIVES[key] = self._derivative(x)
        return _DERIVATIVES[key]

    def _derivative(self, x):
        if not self.lets:
            return SpectralMean(partial(self.args[0], x))
        d: dict = {}  # bound symbol -> the symbol of its derivative
        new = []
        for sym, e in self.lets:
            de = sympy.Add(partial(e, x), *(partial(e, b) * d[b] for b in _free(e) if b in d))
            if de != 0:
                d[sym] = sympy.Symbol(f"{sym.name}_d_{x.name}")
                new.append((d[sym], de))
        body = self.args[0]
        out = sympy.Add(partial(body, x), *(partial(body, b) * d[b] for b in _free(body) if b in d))
        return mean_of(out, self.lets + tuple(new))

    def _latex(self, printer):
        inner = printer._print(self.args[0])
        if self.lets:
            inner += r",\ " + ",\\ ".join(printer._print(x) + " = " + printer._print(e) for x, e in self.lets)
        return r"\mathbb{E}_{" + (r"\nu" if self.measure == "nu" else self.measure) + r"}\left[" + inner + r"\right]"


def _let_measures(arg, lets) -> set:
    syms = set(_free(arg)).union(*(_free(e) for _, e in lets))
    return {m for m in map(measure_of, syms) if m is not None}


def mean_of(body, lets=()) -> sympy.Expr:
    """``E[body]`` with the bindings ``lets`` (:class:`SpectralMean`), keeping only the
    bindings ``body`` needs."""
    body = sympy.sympify(body)
    if body == 0:
        return sympy.Integer(0)
    need = set(_free(body))
    keep = []
    for sym, e in reversed(tuple(lets)):
        if sym in need:
            keep.append((sym, e))
            need |= _free(e)
    if not keep:
        return SpectralMean(body)
    return SpectralMean(body, sympy.Tuple(*(sympy.Tuple(s, e) for s, e in reversed(keep))))
