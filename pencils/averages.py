"""Random vectors averaged into traces, and replicas (independent redraws of Gaussians).

Random vectors
--------------
``gaussian_vector("beta", space, variance=v)`` is a column ``beta`` of ``space`` (an
expression of shape ``space x ONE``, :data:`pencils.expr.ONE`) with ``E[beta] = 0`` and
``E[beta betaᵀ] = (v / d) I``, independent of every Gaussian matrix and of the other
vectors.  The normalisation is the language's (:mod:`pencils.expr`): a teacher with
``|beta|² ≈ r2`` is ``gaussian_vector("beta", D, r2)``; label noise ``eps`` with
``N(0, sigma²)`` entries enters ridge regression as ``eps / sqrt(d)``, which is
``gaussian_vector("eps", n, sigma2)``.  Vectors combine with matrices by ``@``, ``+``,
scalars and ``.T`` like any expression (and inside :mod:`pencils.blocks`), so a
prediction ``M @ beta + N @ eps`` is a column and ``u.T @ A @ w`` a ``1 x 1`` scalar.

:func:`average` takes a scalar that is a quadratic form in the vectors,
``q = c + sum_{k,l} u_kᵀ A_kl u_l`` (the matrices ``A_kl`` free of vectors), and returns
its expectation over the vectors, conditional on the matrices, as a
:class:`~pencils.expr.Trace`:

    E[u_kᵀ A u_l] = delta_kl (v_k / d) Tr(A) = delta_kl v_k tr(A),

the trace of ``A`` against the covariance ``E[u_l u_kᵀ]`` (e.g. Mathai and Provost, 1992,
*Quadratic Forms in Random Variables*, Th. 3.2b.1: ``E[xᵀAx] = Tr(A Σ) + μᵀAμ``; for
independent zero-mean ``u_k, u_l`` the cross moment vanishes).  The identity holds at every
size, for any distribution with these two moments, so only the matrices are left for the
pencil.  A form of odd degree (a single vector: mean zero, almost surely not zero), of
degree four or more, a vector inside an inverse, or a vector–matrix shape that is not a
scalar are refused with ``ValueError``.

Replicas
--------
:func:`replica` redraws named Gaussians (and vectors): every atom ``W`` in ``redraw`` is
replaced by an independent copy ``W'`` of the same shape and variance.  Distinct names are
independent atoms of the pencil, so a trace mixing an expression and its replica, e.g.
``tr(R(W) A R(W'))``, linearises with ``W'`` as one more Gaussian (operator-valued
semicircular element free from ``W``; Mingo and Speicher, 2017, *Free Probability and
Random Matrices*, ch. 9, asymptotic freeness of independent Gaussian matrices).  This is
what bias–variance decompositions need: ``E_W[f_W²] − E_{W,W'}[f_W f_{W'}]`` is the
variance over ``W``.

>>> import sympy
>>> from pencils.expr import D, Space, gaussian, inverse, trace
>>> r2 = sympy.Symbol("r2", positive=True)
>>> X = gaussian("X", Space("n", 2), D)
>>> beta = gaussian_vector("beta", D, r2)
>>> R = inverse(X.T @ X + 1)
>>> average(beta.T @ R @ beta) == r2 * trace(R)
True
>>> average((beta - R @ beta).T @ (beta - R @ beta)) == r2 * trace((1 - R) @ (1 - R))
True
>>> replica(R, redraw={"X"}) == inverse(gaussian("X'", Space("n", 2), D).T @ gaussian("X'", Space("n", 2), D) + 1)
True
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import sympy

from .expr import (ONE, MatExpr, Space, Trace, _add, _mul, _scale, as_scalar, gaussian, has_vectors,
                   identity, inverse, trace, transpose, zeros)

__all__ = ["gaussian_vector", "average", "replica"]


def gaussian_vector(name: str, space: Space, variance: Any = 1) -> MatExpr:
    """A random column of ``space`` with ``E[u uᵀ] = (variance / d) I`` (module docstring)."""
    if not isinstance(space, Space) or space == ONE:
        raise ValueError("gaussian_vector needs a Space (not ONE)")
    if not isinstance(name, str) or not name:
        raise ValueError("a random vector needs a non-empty name")
    v = as_scalar(variance)
    if (v.is_number and not (v.is_real and v >= 0)) or v.is_negative:
        raise ValueError(f"variance of {name!r} must be non-negative, got {v}")
    return MatExpr("vec", (name, v), space, ONE)


def vectors(e: MatExpr) -> dict[str, MatExpr]:
    """The random vectors of ``e``, by name (a name used twice must be the same vector)."""
    out: dict[str, MatExpr] = {}
    stack = [e]
    while stack:
        x = stack.pop()
        if x.op == "vec" and out.setdefault(x.args[0], x) != x:
            raise ValueError(f"random vector {x.args[0]!r} is used with two spaces or variances")
        for a in x.args:
            if isinstance(a, MatExpr):
                stack.append(a)
            elif isinstance(a, tuple) and len(a) == 2 and isinstance(a[1], MatExpr):
                stack.append(a[1])
    return out


# -- a column linear in the vectors: {name: coefficient matrix} -------------------------

def _linear(e: MatExpr) -> dict[str, MatExpr]:
    """``e = sum_k C_k u_k`` for a column ``e`` (``cols == ONE``): ``{name_k: C_k}``."""
    op, a = e.op, e.args
    if op == "vec":
        return {a[0]: identity(e.rows)}
    if op == "add":
        out: dict = {}
        for c, t in a:
            for k, C in _linear(t).items():
                out[k] = out[k] + c * C if k in out else c * C
        return out
    if op == "scale":
        return {k: a[0] * C for k, C in _linear(a[1]).items()}
    if op == "block":  # a block column: the coefficient of u_k is the block column of its parts
        from .blocks import grid, vstack
        parts_ = [_linear(r[0]) for r in grid(e)]
        out = {}
        for k in {k for p in parts_ for k in p}:
            space = next(p[k].cols for p in parts_ if k in p)
            out[k] = vstack([p[k] if k in p else zeros(r[0].rows, space)
                             for p, r in zip(parts_, grid(e))])
        return out
    if op == "mul":
        *mats, last = a
        for m in mats:
            if has_vectors(m):
                raise _degree_error()
        left = mats[0] if len(mats) == 1 else _mul(list(mats))
        return {k: left @ C for k, C in _linear(last).items()}
    raise ValueError(f"cannot read {e!r} as a linear combination of random vectors")


def _degree_error() -> ValueError:
    return ValueError("only quadratic forms in random vectors are averaged: this expression has "
                      "degree 3 or more in them (a product of two scalars uᵀAv, or a vector inside "
                      "a vector product)")


def _quadratic(e: MatExpr) -> tuple[sympy.Expr, dict]:
    """``e = c + sum_{k,l} u_kᵀ A_kl u_l`` for a ``ONE x ONE`` expression: ``(c, {(k, l): A_kl})``."""
    op, a = e.op, e.args
    if op == "eye":
        return a[0], {}
    if op == "add":
        const, out = sympy.Integer(0), {}
        for c, t in a:
            c0, q = _quadratic(t)
            const += c * c0
            for k, A in q.items():
                out[k] = out[k] + c * A if k in out else c * A
        return const, out
    if op == "scale":
        c0, q = _quadratic(a[1])
        return a[0] * c0, {k: a[0] * A for k, A in q.items()}
    if op == "mul":
        if a[0].rows == ONE and a[0].cols == ONE:
            raise _degree_error()
        # a[0] is a row (ONE x s); split where the chain comes back to a column
        first, rest = a[0], list(a[1:])
        if any(f.rows == ONE or f.cols == ONE for f in rest[:-1]):
            raise _degree_error()
        row = _linear(transpose(first))  # first = sum_k u_kᵀ Ck^T
        mid = rest[:-1]
        col = _linear(rest[-1])
        for m in mid:
            if has_vectors(m):
                raise _degree_error()
        out = {}
        for k, Ck in row.items():
            for l, Cl in col.items():
                A = _mul([transpose(Ck), *mid, Cl])
                out[(k, l)] = out[(k, l)] + A if (k, l) in out else A
        return sympy.Integer(0), out
    if op in ("vec", "vecT"):
        raise ValueError("the average of a single random vector (degree 1) is zero; "
                         "only scalar quadratic forms are averaged")
    raise ValueError(f"cannot read {e!r} as a quadratic form in random vectors")


def average(q: Any) -> Trace:
    """``E[q]`` over the random vectors of a scalar quadratic form ``q`` (module docstring).

    ``q`` is a ``1 x 1`` expression (``u.T @ A @ w``, sums and scalar multiples of such), or
    a :class:`~pencils.expr.Trace` / number, returned as it is.
    """
    if isinstance(q, Trace):
        return q
    if not isinstance(q, MatExpr):
        return Trace((), as_scalar(q))
    if (q.rows, q.cols) != (ONE, ONE):
        if ONE in (q.rows, q.cols):
            raise ValueError(f"average needs a scalar (1 x 1) quadratic form; {q.rows.name}x"
                             f"{q.cols.name} is linear in the random vectors (degree 1), whose "
                             "mean is zero")
        raise ValueError("average needs a scalar quadratic form in random vectors; for a matrix "
                         "use pencils.expr.trace")
    vecs = vectors(q)
    const, forms = _quadratic(q)
    out = Trace((), const)
    for (k, l), A in forms.items():
        if k != l:
            continue  # independent zero-mean vectors: E[u_kᵀ A u_l] = 0
        out = out + vecs[k].args[1] * trace(A)
    return out


# -- replicas ---------------------------------------------------------------------------

def _rename(e: MatExpr, names: Mapping[str, str], memo: dict) -> MatExpr:
    if e in memo:
        return memo[e]
    op, a = e.op, e.args
    if op == "gauss":
        out = gaussian(names.get(a[0], a[0]), e.rows, e.cols, a[1]) if a[0] in names else e
    elif op == "vec":
        out = MatExpr("vec", (names[a[0]], a[1]), e.rows, e.cols) if a[0] in names else e
    elif op in ("gaussT", "vecT"):
        out = transpose(_rename(a[0], names, memo))
    elif op in ("eye", "spec"):
        out = e
    elif op == "add":
        out = _add([(c, _rename(t, names, memo)) for c, t in a], e.rows, e.cols) if a else e
    elif op == "mul":
        out = _mul([_rename(f, names, memo) for f in a])
    elif op == "scale":
        out = _scale(a[0], _rename(a[1], names, memo))
    elif op == "inv":
        out = inverse(_rename(a[0], names, memo))
    elif op == "block":
        out = MatExpr("block", (a[0], a[1], *(_rename(b, names, memo) for b in a[2:])), e.rows, e.cols)
    else:  # pragma: no cover
        raise AssertionError(op)
    memo[e] = out
    return out


def _atoms(obj: Any) -> set:
    if isinstance(obj, MatExpr):
        return set(obj.gaussians()) | set(vectors(obj))
    if isinstance(obj, Trace):
        return set().union(*(_atoms(t) for _, t in obj.terms)) if obj.terms else set()
    if hasattr(obj, "traces"):
        return set().union(*(_atoms(t) for t in obj.traces.values())) if obj.traces else set()
    raise ValueError(f"replica needs an expression, block matrix, trace or output, got {obj!r}")


def replica(obj: Any, redraw: Iterable[str] | Mapping[str, str], suffix: str = "'") -> Any:
    """``obj`` with the Gaussians (matrices or vectors) named in ``redraw`` replaced by
    independent copies: ``W`` becomes ``W + suffix`` (or ``redraw[W]`` when ``redraw`` is a
    mapping).  Works on expressions (block matrices included), traces and rational outputs.

    A name that ``obj`` does not contain, or a new name it already uses, is a
    ``ValueError`` (the copy would silently not be independent).
    """
    names = dict(redraw) if isinstance(redraw, Mapping) else {k: k + suffix for k in redraw}
    if not names:
        raise ValueError("replica needs at least one Gaussian to redraw")
    present = _atoms(obj)
    missing = sorted(set(names) - present)
    if missing:
        raise ValueError(f"replica: {missing} not in the expression (it has {sorted(present)})")
    clash = sorted(set(names.values()) & (present | set(names)))
    if clash or len(set(names.values())) != len(names):
        raise ValueError(f"replica: the new names {sorted(names.values())} must be new and distinct")
    memo: dict = {}
    return _apply(obj, names, memo)


def _apply(obj: Any, names: Mapping[str, str], memo: dict) -> Any:
    if isinstance(obj, MatExpr):
        return _rename(obj, names, memo)
    if isinstance(obj, Trace):
        out = Trace((), obj.constant)
        for c, t in obj.terms:
            out = out + c * trace(_rename(t, names, memo))
        return out
    from .outputs import TraceExpr
    return TraceExpr(obj.expr, {s: _apply(t, names, memo) for s, t in obj.traces.items()})
