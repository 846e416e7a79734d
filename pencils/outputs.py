"""Outputs that are rational functions of several normalised traces.

A :class:`~pencils.expr.Trace` is *linear*: a constant plus a combination of normalised
traces, which one pencil reads out.  Quantities such as ``tr(R)² / tr(R²)``, a ratio of two
risks, or ``1 / tr(R)`` are not: each trace is a separate limit, and the output is a
fixed rational function of those limits.  Since the normalised traces concentrate
(their variance is ``O(1/d²)`` for the resolvent-type expressions of this language; e.g.
Bai and Silverstein, 2010, *Spectral Analysis of Large Dimensional Random Matrices*, ch. 9),
the limit of a continuous function of finitely many traces is that function of their
limits, wherever it is finite.

:class:`TraceExpr` holds such an output: a sympy expression whose symbols are parameters
and placeholders, one per distinct :class:`~pencils.expr.Trace`.  It comes out of
``Trace * Trace``, ``Trace / Trace``, ``1 / Trace``, ``Trace ** k`` and any ``+ - * /``
with numbers, parameters and other outputs.

:func:`split_output` is the plumbing of the ``derive`` step: it returns the traces to
derive, by name, and the sympy expression that combines their values.

>>> import sympy
>>> from pencils.expr import D, Space, gaussian, inverse, trace
>>> lam = sympy.Symbol("lam", positive=True)
>>> X = gaussian("X", Space("n", 2), D)
>>> R = inverse(X.T @ X + lam)
>>> traces, combine = split_output(trace(R) ** 2 / trace(R @ R))
>>> sorted(traces), combine
(['T0', 'T1'], T0**2/T1)
>>> traces["T0"] == trace(R)
True
"""
from __future__ import annotations

from typing import Any

import sympy

_Trace = Any  # pencils.expr.Trace; not imported: pencils.expr builds its outputs with this module


def _is_trace(x: Any) -> bool:
    return getattr(x, "_pencils_trace", False)


def as_scalar(c: Any) -> sympy.Expr:
    """A finite scalar (number or sympy expression), else ``ValueError``."""
    if _is_trace(c) or isinstance(c, TraceExpr) or hasattr(c, "op"):
        raise ValueError("expected a scalar")
    try:
        e = sympy.sympify(c)
    except (sympy.SympifyError, TypeError) as exc:
        raise ValueError(f"cannot interpret {c!r} as a scalar") from exc
    if not isinstance(e, sympy.Expr) or e.has(sympy.zoo, sympy.oo, -sympy.oo, sympy.nan):
        raise ValueError(f"cannot interpret {c!r} as a finite scalar")
    return e

__all__ = ["TraceExpr", "split_output", "evaluate_output"]

#: One placeholder per distinct trace (process-wide, so outputs built apart combine).
_PLACEHOLDERS: dict = {}


def _placeholder(t: _Trace) -> sympy.Dummy:
    if t not in _PLACEHOLDERS:
        _PLACEHOLDERS[t] = sympy.Dummy(f"trace{len(_PLACEHOLDERS)}")
    return _PLACEHOLDERS[t]


class TraceExpr:
    """A rational function of normalised traces, numbers and parameters (module docstring).

    ``expr`` is a sympy expression; ``traces`` maps its placeholder symbols to the
    :class:`~pencils.expr.Trace` each stands for.
    """

    _pencils_defer = True  # Trace operators hand over to this class
    __slots__ = ("expr", "traces")

    def __init__(self, expr: sympy.Expr, traces: dict):
        self.expr = sympy.sympify(expr)
        self.traces = {s: t for s, t in traces.items() if s in self.expr.free_symbols}

    @classmethod
    def of(cls, x: Any) -> "TraceExpr":
        """``x`` (a trace, an output or a scalar) as an output."""
        if isinstance(x, TraceExpr):
            return x
        if _is_trace(x):
            if not x.terms:
                return cls(x.constant, {})
            c, t = x.terms[0]
            if t.op == "scale":
                c, t = c * t.args[0], t.args[1]
            if len(x.terms) == 1 and x.constant == 0 and c != 1:
                # c tr(A): the placeholder stands for tr(A), so that c tr(A) and tr(A) share it
                return cls.of(type(x)(((sympy.Integer(1), t),), 0)) * c  # = trace(t)
            s = _placeholder(x)
            return cls(s, {s: x})
        return cls(as_scalar(x), {})

    def _op(self, other: Any, f) -> "TraceExpr":
        o = TraceExpr.of(other)
        return TraceExpr(f(self.expr, o.expr), {**self.traces, **o.traces})

    def __add__(self, other: Any) -> "TraceExpr":
        return self._op(other, lambda a, b: a + b)

    __radd__ = __add__

    def __sub__(self, other: Any) -> "TraceExpr":
        return self._op(other, lambda a, b: a - b)

    def __rsub__(self, other: Any) -> "TraceExpr":
        return self._op(other, lambda a, b: b - a)

    def __mul__(self, other: Any) -> "TraceExpr":
        return self._op(other, lambda a, b: a * b)

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> "TraceExpr":
        o = TraceExpr.of(other)
        if o.expr == 0:
            raise ValueError("division of an output by zero")
        return self._op(o, lambda a, b: a / b)

    def __rtruediv__(self, other: Any) -> "TraceExpr":
        if self.expr == 0:
            raise ValueError("division by a zero output")
        return self._op(other, lambda a, b: b / a)

    def __neg__(self) -> "TraceExpr":
        return self * -1

    def __pow__(self, k: Any) -> "TraceExpr":
        k = as_scalar(k)
        if not (k.is_integer and k.is_number):
            raise ValueError("powers of an output must be integers (a rational function of traces)")
        if k < 0 and self.expr == 0:
            raise ValueError("negative power of a zero output")
        return TraceExpr(self.expr ** k, dict(self.traces))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TraceExpr) and sympy.simplify(self.expr - other.expr) == 0 \
            and self.traces == other.traces

    __hash__ = None  # equality is symbolic

    def free_symbols(self) -> set:
        """The parameters: of the combining expression and of every trace."""
        syms = {s for s in self.expr.free_symbols if s not in self.traces}
        for t in self.traces.values():
            syms |= t.free_symbols()
        return syms

    def __repr__(self) -> str:
        names, combine = split_output(self)
        return f"TraceExpr({combine}; " + ", ".join(f"{k} = {t!r}" for k, t in names.items()) + ")"


def split_output(output: Any, prefix: str = "T") -> tuple[dict[str, _Trace], sympy.Expr]:
    """``(traces, combine)``: the normalised traces an output needs and how to combine them.

    ``output`` is a :class:`~pencils.expr.Trace`, a :class:`TraceExpr` or a scalar.
    ``traces`` maps names ``T0, T1, ...`` (in a canonical order; a name that is already a
    parameter of the output gets more underscores) to :class:`~pencils.expr.Trace` objects
    with at least one matrix term; ``combine`` is a sympy expression in ``sympy.Symbol(name)``
    of those names and in the output's parameters.  A linear trace gives one name and
    ``combine = T0``; a constant gives ``{}`` and the constant.

    The derive step derives each trace (``pencils.freeprob.equations``, reduced together by
    ``pencils.reduce.reduce_systems``), solves them, and evaluates ``combine``
    (:func:`evaluate_output`).
    """
    out = TraceExpr.of(output)
    taken = {s.name for s in out.free_symbols()}
    while any(n.startswith(prefix) for n in taken if n[len(prefix):].isdigit()):
        prefix += "_"
    order = sorted(out.traces, key=lambda s: repr(out.traces[s].key))
    names = {s: sympy.Symbol(f"{prefix}{i}") for i, s in enumerate(order)}
    return ({names[s].name: out.traces[s] for s in order}, out.expr.xreplace(names))


def evaluate_output(combine: sympy.Expr, values: dict) -> Any:
    """``combine`` (from :func:`split_output`) at numbers: ``values`` maps each trace name and
    each parameter name to a number or a numpy array (broadcast together)."""
    syms = sorted(combine.free_symbols, key=lambda s: s.name)
    missing = [s.name for s in syms if s.name not in values]
    if missing:
        raise ValueError(f"evaluate_output: no values for {missing}")
    f = sympy.lambdify(syms, combine, modules="numpy")
    return f(*(values[s.name] for s in syms))
