"""A small symbolic language for rational expressions of rectangular Gaussian matrices.

Conventions
-----------
There is one *reference size* ``d`` (the data dimension of MODEL.md).  Every index
set is a :class:`Space` whose size is a ratio to it, ``n_s = alpha_s * d`` (e.g.
``Space("n", psi_n)``); :data:`D` is the reference space itself (ratio 1).

A Gaussian matrix ``gaussian("X", rows, cols, variance=v)`` has i.i.d. entries
``N(0, v / d)``: **the language normalises Gaussians by the reference size**.  A
data matrix ``X`` with ``N(0, 1)`` entries is therefore written ``sqrt(d) * X_e``
with ``X_e = gaussian("X", n, D)``; for instance ``XᵀX / n = (d / n) X_eᵀX_e =
X_e.T @ X_e / psi_n``.  Variances and ratios are sympy expressions (symbols are
parameters of the derived equations).

Expressions are immutable and canonical: sums and products are flattened, scalars
are collected in front, transposes are pushed down to the Gaussian atoms
(``(AB)ᵀ = BᵀAᵀ``, ``(A⁻¹)ᵀ = (Aᵀ)⁻¹``), equal terms of a sum are merged.  Two
structurally equal expressions compare equal and hash equally, which is what lets
:func:`pencils.linearize.linearize` memoise shared sub-expressions.

Operators: ``A + B``, ``A - B``, ``A @ B`` (also ``A * B`` between matrices),
``c * A`` with ``c`` a number or sympy expression, ``A + c`` for square ``A``
(meaning ``A + c I``), ``A.T``, ``A.inv()`` / ``inverse(A)``, ``A ** -1``.

Extensions, in their own modules: concatenation and block matrices over direct sums of
spaces (:mod:`pencils.blocks`, :class:`SumSpace`), random vectors averaged into traces and
replicas of named Gaussians (:mod:`pencils.averages`), outputs that are rational functions
of several traces (:mod:`pencils.outputs`: ``Trace * Trace``, ``1 / Trace``, ...).

:func:`trace` gives the normalised trace ``(1/d) Tr(A)`` of a square expression
(normalised by the reference size for every space, so ``trace(identity(n)) =
psi_n``); traces form linear combinations with scalar coefficients.

>>> import sympy
>>> psi = sympy.Symbol("psi", positive=True)
>>> n = Space("n", psi)
>>> X = gaussian("X", n, D)
>>> R = inverse(X.T @ X / psi + sympy.Symbol("lam", positive=True))
>>> R.rows.name, R.cols.name
('d', 'd')
>>> (X.T @ X).T == X.T @ X
True
>>> trace(identity(n)).constant
psi
"""
from __future__ import annotations

from typing import Any

import sympy

from .measures import S_NU, SpectralMean, coordinate, has_coordinates, mean_of, measure_of, measures
from .outputs import TraceExpr
from .spaces import ONE, D, Space, SumSpace, direct_sum, parts

__all__ = [
    "Space", "SumSpace", "parts", "direct_sum", "D", "ONE", "MatExpr", "Trace", "gaussian", "identity", "zeros", "inverse",
    "transpose", "trace", "as_scalar", "S_NU", "SpectralMean", "spectral", "has_vectors",
    "coordinate", "measure_of", "measures", "has_coordinates", "profile", "mean_of",
]

def as_scalar(c: Any) -> sympy.Expr:
    """Sympify a scalar coefficient, rejecting matrices and non-finite numbers."""
    if isinstance(c, (MatExpr, Trace)) or _defers(c):  # noqa: F821 - defined below
        raise ValueError("expected a scalar, got a matrix expression or trace")
    try:
        e = sympy.sympify(c)
    except (sympy.SympifyError, TypeError) as exc:
        raise ValueError(f"cannot interpret {c!r} as a scalar") from exc
    if not isinstance(e, sympy.Expr) or isinstance(e, sympy.MatrixBase):
        raise ValueError(f"cannot interpret {c!r} as a scalar")
    if e.has(sympy.zoo, sympy.oo, -sympy.oo, sympy.nan):
        raise ValueError(f"scalar {c!r} is not finite")
    return e


def _defers(obj: Any) -> bool:
    """Objects that take over an operator with a trace: the rational outputs of
    :mod:`pencils.outputs`."""
    return getattr(obj, "_pencils_defer", False)


def has_vectors(e: "MatExpr") -> bool:
    """Whether ``e`` contains a random vector (:func:`pencils.averages.gaussian_vector`)."""
    stack = [e]
    while stack:
        x = stack.pop()
        if x.op in ("vec", "vecT") or ONE in (x.rows, x.cols):
            return True
        for a in x.args:
            if isinstance(a, MatExpr):
                stack.append(a)
            elif isinstance(a, tuple) and len(a) == 2 and isinstance(a[1], MatExpr):
                stack.append(a[1])
    return False


def _key_of(obj: Any) -> Any:
    return obj.key if isinstance(obj, MatExpr) else obj


class MatExpr:
    """An immutable, canonical matrix expression (build it with the module functions).

    ``op`` is one of ``gauss`` (args ``(name, variance)``), ``gaussT`` (its transpose,
    args ``(gauss,)``), ``vec`` / ``vecT`` (a random vector, a ``space x ONE`` column, and
    its transpose: :mod:`pencils.averages`), ``eye`` (args ``(c,)``: ``c`` times the identity), ``add``
    (args: tuple of ``(coefficient, term)``, empty for the zero matrix), ``mul``
    (args: factors, none of them scalar), ``scale`` (args ``(c, expr)``), ``inv``, ``block``
    (args ``(k, m, *blocks)``: a ``k x m`` grid, row by row, over direct sums of spaces,
    :mod:`pencils.blocks`) and
    ``spec`` (args ``(f,)``: a deterministic diagonal profile on ``rows``, ``f(Sigma)`` on the ``d``
    space, :func:`spectral`, :func:`profile`).
    """

    __slots__ = ("op", "args", "rows", "cols", "key", "_hash")

    def __init__(self, op: str, args: tuple, rows: Space, cols: Space):
        self.op, self.args, self.rows, self.cols = op, args, rows, cols
        self.key = (op, rows, cols, tuple(
            (a[0], _key_of(a[1])) if isinstance(a, tuple) else _key_of(a) for a in args))
        self._hash = hash(self.key)

    def __reduce__(self) -> tuple:
        # str hashes are salted per process: rebuild (and rehash) on unpickling
        return (MatExpr, (self.op, self.args, self.rows, self.cols))

    # -- identity ----------------------------------------------------------
    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MatExpr) and self.key == other.key

    @property
    def is_square(self) -> bool:
        return self.rows == self.cols

    @property
    def shape(self) -> tuple[Space, Space]:
        return (self.rows, self.cols)

    def gaussians(self) -> dict[str, "MatExpr"]:
        """All Gaussian atoms in the expression, by name (checks consistency)."""
        found: dict[str, MatExpr] = {}
        stack = [self]
        while stack:
            e = stack.pop()
            if e.op == "gauss":
                prev = found.setdefault(e.args[0], e)
                if prev != e:
                    raise ValueError(f"Gaussian {e.args[0]!r} is used with two different "
                                     "shapes or variances")
            for a in e.args:
                if isinstance(a, MatExpr):
                    stack.append(a)
                elif isinstance(a, tuple) and len(a) == 2 and isinstance(a[1], MatExpr):
                    stack.append(a[1])
        return found

    def free_symbols(self) -> set[sympy.Symbol]:
        syms: set = set(self.rows.ratio.free_symbols) | set(self.cols.ratio.free_symbols)
        stack = [self]
        while stack:
            e = stack.pop()
            syms |= e.rows.ratio.free_symbols | e.cols.ratio.free_symbols
            for a in e.args:
                if isinstance(a, MatExpr):
                    stack.append(a)
                elif isinstance(a, tuple) and len(a) == 2 and isinstance(a[1], MatExpr):
                    syms |= sympy.sympify(a[0]).free_symbols
                    stack.append(a[1])
                elif isinstance(a, sympy.Basic):
                    syms |= a.free_symbols
        return syms

    # -- algebra -----------------------------------------------------------
    def __add__(self, other: Any) -> "MatExpr":
        if not isinstance(other, MatExpr):
            if not self.is_square:
                raise ValueError("adding a scalar needs a square expression")
            other = identity(self.rows, other)
        return _add([(sympy.Integer(1), self), (sympy.Integer(1), other)])

    def __radd__(self, other: Any) -> "MatExpr":
        return self.__add__(other)

    def __neg__(self) -> "MatExpr":
        return _scale(sympy.Integer(-1), self)

    def __sub__(self, other: Any) -> "MatExpr":
        if not isinstance(other, MatExpr):
            return self + (-as_scalar(other))
        return self + (-other)

    def __rsub__(self, other: Any) -> "MatExpr":
        return (-self) + other

    def __matmul__(self, other: "MatExpr") -> "MatExpr":
        if not isinstance(other, MatExpr):
            raise ValueError("@ needs two matrix expressions; use * for scalars")
        return _mul([self, other])

    def __mul__(self, other: Any) -> "MatExpr":
        if isinstance(other, MatExpr):
            return _mul([self, other])
        return _scale(as_scalar(other), self)

    def __rmul__(self, other: Any) -> "MatExpr":
        return _scale(as_scalar(other), self)

    def __truediv__(self, other: Any) -> "MatExpr":
        c = as_scalar(other)
        if c == 0:
            raise ValueError("division of a matrix expression by zero")
        return _scale(1 / c, self)

    def __pow__(self, k: int) -> "MatExpr":
        if not isinstance(k, int):
            raise ValueError("matrix powers must be integers")
        if not self.is_square:
            raise ValueError("powers need a square expression")
        if k < 0:
            return inverse(self) ** (-k)
        if k == 0:
            return identity(self.rows)
        return _mul([self] * k)

    @property
    def T(self) -> "MatExpr":
        return transpose(self)

    def inv(self) -> "MatExpr":
        return inverse(self)

    # -- display -----------------------------------------------------------
    def __repr__(self) -> str:
        return self._str()

    def _str(self) -> str:
        op, a = self.op, self.args
        if op == "gauss":
            return a[0]
        if op == "gaussT":
            return f"{a[0].args[0]}.T"
        if op == "vec":
            return f"{a[0]}"
        if op == "vecT":
            return f"{a[0].args[0]}.T"
        if op == "eye":
            return f"{a[0]}*I_{self.rows.name}"
        if op == "add":
            if not a:
                return f"0_{self.rows.name}x{self.cols.name}"
            return "(" + " + ".join(t._str() if c == 1 else f"{c}*{t._str()}" for c, t in a) + ")"
        if op == "mul":
            return " @ ".join(f._str() for f in a)
        if op == "scale":
            return f"{a[0]}*({a[1]._str()})"
        if op == "inv":
            return f"inv({a[0]._str()})"
        if op == "spec":
            return f"f[{a[0]}](Sigma)"
        if op == "block":
            k, m, bl = a[0], a[1], a[2:]
            return "block[" + "; ".join(", ".join(b._str() for b in bl[i * m:(i + 1) * m])
                                        for i in range(k)) + "]"
        raise AssertionError(op)


# ---------------------------------------------------------------------------
# constructors


def gaussian(name: str, rows: Space, cols: Space, variance: Any = 1) -> MatExpr:
    """A ``rows x cols`` Gaussian matrix with i.i.d. ``N(0, variance / d)`` entries."""
    if not isinstance(rows, Space) or not isinstance(cols, Space):
        raise ValueError("gaussian needs Space objects for rows and cols")
    if not isinstance(name, str) or not name:
        raise ValueError("a Gaussian needs a non-empty name")
    v = as_scalar(variance)
    if v.is_number and not (v.is_real and v > 0):
        raise ValueError(f"variance of {name!r} must be positive, got {v}")
    if v.is_negative or v.is_zero:
        raise ValueError(f"variance of {name!r} must be positive, got {v}")
    return MatExpr("gauss", (name, v), rows, cols)


def identity(space: Space, c: Any = 1) -> MatExpr:
    """``c`` times the identity of ``space`` (a :class:`Space` or a :class:`SumSpace`)."""
    if not isinstance(space, (Space, SumSpace)):
        raise ValueError("identity needs a Space")
    c = as_scalar(c)
    if c == 0:
        return zeros(space, space)
    return MatExpr("eye", (c,), space, space)


def spectral(f: Any) -> MatExpr:
    """The deterministic ``d x d`` matrix ``f(Sigma)``, a function of the data covariance.

    ``f`` is a sympy expression in :data:`S_NU` (e.g. ``sympy.sqrt(S_NU)`` for
    ``Sigma^{1/2}``).  All such matrices commute; in the equations they act through the
    eigenvalues ``s`` of ``Sigma``, and normalised traces over the ``d`` space become
    averages over its spectral measure (:class:`SpectralMean`).
    """
    f = as_scalar(f)
    if measures(f) - {"nu"}:
        raise ValueError("spectral(f) is a function of S_NU only; use profile(f, space) for other measures")
    return profile(f, D)


def profile(f: Any, space: Space) -> MatExpr:
    """A deterministic diagonal matrix on ``space`` whose entries follow a measure: entry ``i``
    is ``f`` at the coordinates of atom ``i`` (:func:`coordinate`).  Profiles on one space
    commute; a normalised trace over the space becomes the mean over the measure, as
    ``f(Sigma)`` does on the ``d`` space with :data:`S_NU` (:func:`spectral`).

    This is how a hidden variable attached to each sample or feature enters a pencil: e.g. the
    spike overlap ``c_mu`` of each sample makes the row scaling ``diag(g(c_mu))`` of the data.
    The deterministic-equivalent rules hold because the profile is independent of the Gaussian
    blocks (the operator-valued semicircle over the diagonal algebra of the space)."""
    if not isinstance(space, Space):
        raise ValueError("a profile lives on one Space")
    f = as_scalar(f)
    found = measures(f)
    if not found:
        return identity(space, f)
    if len(found) > 1:
        raise ValueError(f"a profile follows one measure, got coordinates of {sorted(found)}")
    return MatExpr("spec", (f,), space, space)


def zeros(rows: Space, cols: Space) -> MatExpr:
    """The zero matrix of the given shape."""
    return MatExpr("add", (), rows, cols)


def transpose(e: MatExpr) -> MatExpr:
    """``eᵀ``, pushed down to the atoms."""
    op, a = e.op, e.args
    if op in ("gauss", "vec"):
        return MatExpr(op + "T", (e,), e.cols, e.rows)
    if op in ("gaussT", "vecT"):
        return a[0]
    if op in ("eye", "spec"):
        return e
    if op == "add":
        return _add([(c, transpose(t)) for c, t in a], e.cols, e.rows)
    if op == "mul":
        return _mul([transpose(f) for f in reversed(a)])
    if op == "scale":
        return _scale(a[0], transpose(a[1]))
    if op == "inv":
        return inverse(transpose(a[0]))
    if op == "block":
        k, m, bl = a[0], a[1], a[2:]
        return MatExpr("block", (m, k, *(transpose(bl[i * m + j]) for j in range(m) for i in range(k))),
                       e.cols, e.rows)
    raise AssertionError(op)


def inverse(e: MatExpr) -> MatExpr:
    """``e⁻¹`` of a square expression (``ValueError`` for rectangular or zero ``e``).

    An expression containing a random vector is refused (it would not be a quadratic form
    any more)."""
    if not isinstance(e, MatExpr):
        raise ValueError("inverse needs a matrix expression")
    if not e.is_square:
        raise ValueError(f"cannot invert a rectangular {e.rows.name}x{e.cols.name} expression")
    if e.op == "add" and not e.args:
        raise ValueError("cannot invert the zero matrix")
    if has_vectors(e):
        raise ValueError("cannot invert an expression of random vectors: only quadratic forms "
                         "in them are averaged (pencils.averages.average)")
    if e.op == "inv":
        return e.args[0]
    if e.op == "eye":
        return identity(e.rows, 1 / e.args[0])
    if e.op == "spec":
        return profile(1 / e.args[0], e.rows)
    if e.op == "scale":
        return _scale(1 / e.args[0], inverse(e.args[1]))
    if e.op in ("gauss", "gaussT"):
        # A square Gaussian is invertible but its inverse is not a rational function
        # of a *self-adjoint* pencil in the usual sense; the rules still apply.
        pass
    return MatExpr("inv", (e,), e.rows, e.rows)


def _scale(c: sympy.Expr, e: MatExpr) -> MatExpr:
    if c == 0 or (e.op == "add" and not e.args):
        return zeros(e.rows, e.cols)
    if c == 1:
        return e
    if e.op == "scale":
        return _scale(c * e.args[0], e.args[1])
    if e.op == "eye":
        return identity(e.rows, c * e.args[0])
    if e.op == "add":
        return _add([(c * ci, t) for ci, t in e.args], e.rows, e.cols)
    return MatExpr("scale", (c, e), e.rows, e.cols)


def _split(e: MatExpr) -> tuple[sympy.Expr, MatExpr]:
    """Write ``e = c * t`` with ``t`` not a ``scale`` node."""
    if e.op == "scale":
        return e.args[0], e.args[1]
    if e.op == "eye":
        return e.args[0], MatExpr("eye", (sympy.Integer(1),), e.rows, e.cols)
    return sympy.Integer(1), e


def _add(terms: list[tuple[Any, MatExpr]], rows: Space | None = None,
         cols: Space | None = None) -> MatExpr:
    if rows is None:
        rows, cols = terms[0][1].rows, terms[0][1].cols
    coeff: dict[MatExpr, sympy.Expr] = {}
    order: list[MatExpr] = []

    def push(c: sympy.Expr, t: MatExpr) -> None:
        if t.shape != (rows, cols):
            raise ValueError(f"shape mismatch in sum: {rows.name}x{cols.name} vs "
                             f"{t.rows.name}x{t.cols.name}")
        if t.op == "add":
            for ci, ti in t.args:
                push(c * ci, ti)
            return
        c2, t2 = _split(t)
        if t2 not in coeff:
            coeff[t2] = sympy.Integer(0)
            order.append(t2)
        coeff[t2] = coeff[t2] + c * c2

    for c, t in terms:
        push(sympy.sympify(c), t)
    kept = [(sympy.expand(coeff[t]), t) for t in order]
    kept = [(c, t) for c, t in kept if c != 0]
    kept.sort(key=lambda ct: repr(ct[1].key))  # canonical order: A + B == B + A
    if not kept:
        return zeros(rows, cols)
    if len(kept) == 1:
        c, t = kept[0]
        return _scale(c, t) if t.op != "eye" else identity(rows, c)
    return MatExpr("add", tuple(kept), rows, cols)


def _mul(factors: list[MatExpr]) -> MatExpr:
    c = sympy.Integer(1)
    flat: list[MatExpr] = []
    for f in factors:
        if flat and flat[-1].cols != f.rows:
            raise ValueError(f"shape mismatch in product: {flat[-1].rows.name}x"
                             f"{flat[-1].cols.name} @ {f.rows.name}x{f.cols.name}")
        cf, tf = _split(f)
        c = c * cf
        if tf.op == "add" and not tf.args:
            return zeros(factors[0].rows, factors[-1].cols)
        if tf.op == "eye":
            continue
        flat.extend(tf.args if tf.op == "mul" else [tf])
    for a, b in zip(factors, factors[1:]):
        if a.cols != b.rows:
            raise ValueError(f"shape mismatch in product: {a.rows.name}x{a.cols.name} @ "
                             f"{b.rows.name}x{b.cols.name}")
    rows, cols = factors[0].rows, factors[-1].cols
    if not flat:
        return identity(rows, c)
    for i in range(len(flat) - 1):  # a block row times a block column: sum_k A_k B_k
        lf, rf = flat[i], flat[i + 1]
        if lf.op == rf.op == "block" and lf.args[0] == 1 and rf.args[1] == 1 and lf.args[1] == rf.args[0] \
                and all(x.cols == y.rows for x, y in zip(lf.args[2:], rf.args[2:])):
            inner = _add([(sympy.Integer(1), _mul([x, y])) for x, y in zip(lf.args[2:], rf.args[2:])],
                         lf.rows, rf.cols)
            return _scale(c, _mul(flat[:i] + [inner] + flat[i + 2:]))
    body = flat[0] if len(flat) == 1 else MatExpr("mul", tuple(flat), rows, cols)
    return _scale(c, body)


# ---------------------------------------------------------------------------
# traces


class Trace:
    """A linear combination ``constant + sum_k c_k (1/d) Tr(A_k)`` of normalised traces.

    Every ``A_k`` is square; the trace is normalised by the reference size ``d``
    whatever the space of ``A_k``.
    """

    __slots__ = ("terms", "constant", "key")
    _pencils_trace = True  # how pencils.outputs recognises a trace (it does not import this module)

    def __init__(self, terms: tuple[tuple[sympy.Expr, MatExpr], ...], constant: Any = 0):
        self.terms = terms
        self.constant = sympy.sympify(constant)
        self.key = ("trace", tuple((c, t.key) for c, t in terms), self.constant)

    def __reduce__(self) -> tuple:
        return (Trace, (self.terms, self.constant))

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Trace) and self.key == other.key

    def _combine(self, other: Any, sign: int) -> "Trace":
        if _defers(other):
            return NotImplemented
        if isinstance(other, Trace):
            return _trace_sum(list(self.terms) + [(sign * c, t) for c, t in other.terms],
                              self.constant + sign * other.constant)
        return _trace_sum(list(self.terms), self.constant + sign * as_scalar(other))

    def __add__(self, other: Any) -> "Trace":
        return self._combine(other, 1)

    __radd__ = __add__

    def __sub__(self, other: Any) -> "Trace":
        return self._combine(other, -1)

    def __rsub__(self, other: Any) -> "Trace":
        return (-self) + other

    def __neg__(self) -> "Trace":
        return self * -1

    def __mul__(self, other: Any) -> "Trace":
        if isinstance(other, Trace) or _defers(other):  # a rational output, not a linear trace
            return TraceExpr.of(self) * other
        c = as_scalar(other)
        return _trace_sum([(c * ci, t) for ci, t in self.terms], c * self.constant)

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> "Trace":
        if isinstance(other, Trace) or _defers(other):
            return TraceExpr.of(self) / other
        c = as_scalar(other)
        if c == 0:
            raise ValueError("division of a trace by zero")
        return self * (1 / c)

    def __rtruediv__(self, other: Any) -> Any:
        return other / TraceExpr.of(self)

    def __pow__(self, k: Any) -> Any:
        return TraceExpr.of(self) ** k

    def free_symbols(self) -> set:
        s = set(self.constant.free_symbols)
        for c, t in self.terms:
            s |= sympy.sympify(c).free_symbols | t.free_symbols()
        return s

    def __repr__(self) -> str:
        parts = [f"{c}*tr({t!r})" for c, t in self.terms]
        if self.constant != 0 or not parts:
            parts.append(str(self.constant))
        return " + ".join(parts)




def _split_blocks(terms: list) -> list:
    """The trace over a direct sum is the sum of the diagonal blocks' traces: replace each
    square block matrix (scaled, or inside a sum) by its diagonal blocks."""
    out = []
    for c, t in terms:
        if t.op == "block" and t.args[0] == t.args[1] and all(
                t.args[2 + i * (t.args[0] + 1)].is_square for i in range(t.args[0])):
            k = t.args[0]
            out.extend(_split_blocks([(c, t.args[2 + i * (k + 1)]) for i in range(k)]))
        elif t.op == "scale" and t.args[1].op == "block":
            out.extend(_split_blocks([(c * t.args[0], t.args[1])]))
        elif t.op == "add" and any(_split(x)[1].op == "block" for _, x in t.args):
            out.extend(_split_blocks([(c * ci, ti) for ci, ti in t.args]))
        else:
            out.append((c, t))
    return out


def _trace_sum(terms: list[tuple[Any, MatExpr]], constant: Any) -> Trace:
    if any(isinstance(t.rows, SumSpace) for _, t in terms):
        terms = _split_blocks(terms)
    by_space: dict[Space, list] = {}
    const = sympy.sympify(constant)
    for c, t in terms:
        c = sympy.sympify(c)
        if t.op == "eye":  # (1/d) Tr(c I_s) = c * ratio_s
            const += c * t.args[0] * t.rows.ratio
            continue
        if t.op == "add" and not t.args:
            continue
        by_space.setdefault(t.rows, []).append((c, t))
    out = []
    for space, ts in by_space.items():
        s = _add(ts, space, space)
        # constants inside the merged sum move to the constant term
        if s.op == "eye":
            const += s.args[0] * space.ratio
        elif not (s.op == "add" and not s.args):
            out.append((sympy.Integer(1), s))
    out.sort(key=lambda ct: repr(ct[1].key))
    return Trace(tuple(out), sympy.expand(const))


def trace(e: MatExpr) -> Trace:
    """The normalised trace ``(1/d) Tr(e)`` of a square expression.

    >>> trace(identity(Space("p", 3))).constant
    3
    """
    if not isinstance(e, MatExpr):
        raise ValueError("trace needs a matrix expression")
    if not e.is_square:
        raise ValueError(f"trace of a rectangular {e.rows.name}x{e.cols.name} expression")
    if has_vectors(e):
        raise ValueError("trace of an expression of random vectors: average the quadratic form "
                         "instead (pencils.averages.average)")
    return _trace_sum([(sympy.Integer(1), e)], 0)
