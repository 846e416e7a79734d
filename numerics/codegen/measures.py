"""The measures a reduced system averages over (:mod:`numerics.measures` carries their atoms)."""
from __future__ import annotations

from typing import Iterable

import sympy

from pencils.expr import S_NU, SpectralMean, measure_of

from ..measures import NU_COORDINATE

__all__ = ["layout", "system_layout", "means_in"]

assert S_NU.name == NU_COORDINATE


def means_in(expr) -> set:
    """The spectral means in ``expr``, without walking into their arguments (``atoms`` walks the
    per-atom programs too: most of a large kernel's code generation went there)."""
    out, seen, stack = set(), set(), [sympy.sympify(expr)]
    while stack:
        e = stack.pop()
        if isinstance(e, SpectralMean):
            out.add(e)
            continue
        for a in e.args:
            if a not in seen:
                seen.add(a)
                stack.append(a)
    return out


def layout(exprs: Iterable) -> tuple:
    """``((measure, (coordinate names...)), ...)`` of the spectral means in ``exprs``, sorted by
    measure and coordinate name (the order of :func:`numerics.measures.pack`)."""
    found: dict = {}
    for e in exprs:
        for mean in means_in(e):
            for s in mean.coordinates:
                found.setdefault(measure_of(s), set()).add(s.name)
    return tuple((m, tuple(sorted(found[m]))) for m in sorted(found))


def system_layout(reduced) -> tuple:
    """:func:`layout` of every expression of a :class:`~pencils.reduce.ReducedSystem`."""
    exprs = [e for kind, body in reduced.segments for e in
             ([x for _, x in body] if kind == "let" else [x for _, x in body.program] + list(body.maps))]
    return layout(exprs + list(reduced.outputs.values()))
