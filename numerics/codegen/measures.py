"""The measures a reduced system averages over (:mod:`numerics.measures` carries their atoms)."""
from __future__ import annotations

from typing import Iterable

import sympy

from pencils.expr import S_NU, SpectralMean, measure_of

from ..measures import NU_COORDINATE

__all__ = ["layout", "system_layout"]

assert S_NU.name == NU_COORDINATE


def layout(exprs: Iterable) -> tuple:
    """``((measure, (coordinate names...)), ...)`` of the spectral means in ``exprs``, sorted by
    measure and coordinate name (the order of :func:`numerics.measures.pack`)."""
    found: dict = {}
    for e in exprs:
        for mean in sympy.sympify(e).atoms(SpectralMean):
            for s in mean.coordinates:
                found.setdefault(measure_of(s), set()).add(s.name)
    return tuple((m, tuple(sorted(found[m]))) for m in sorted(found))


def system_layout(reduced) -> tuple:
    """:func:`layout` of every expression of a :class:`~pencils.reduce.ReducedSystem`."""
    exprs = [e for kind, body in reduced.segments for e in
             ([x for _, x in body] if kind == "let" else [x for _, x in body.program] + list(body.maps))]
    return layout(exprs + list(reduced.outputs.values()))
