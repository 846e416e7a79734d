"""Symbolic layer: activations and their Gaussian-equivalence coefficients,
random-matrix expressions, automatic linear pencils and the operator-valued
free-probability equations they satisfy.

Pipeline: activation -> Gaussian-equivalence numbers (:mod:`pencils.activation`)
-> rational expression of Gaussian matrices (:mod:`pencils.expr`)
-> linear pencil (:mod:`pencils.linearize`) -> fixed-point equations
(:mod:`pencils.freeprob`), compiled and solved in :mod:`numerics`.

:func:`pencils.build` is an alias of :func:`derivations.theory.build`, the DSM learning curves;
:func:`pencils.derive` of :func:`derivations.derived.derive`, any model's curves from its traces.

The linear-pencil engine builds on sympy (about 0.35 s to import): its names are
imported on first access (PEP 562), so ``import pencils; pencils.build("relu")``
with a warm cache never loads it.
"""
from ._lazy import lazy_names
from .activation import Activation, activation, KNOWN_ACTIVATIONS

#: Linear-pencil engine (expressions -> pencils -> fixed-point equations): name -> submodule.
_LAZY = {
    **dict.fromkeys(["D", "MatExpr", "Space", "Trace", "gaussian", "identity", "inverse", "trace",
                     "transpose"], "expr"),
    **dict.fromkeys(["SumSpace"], "expr"),
    **dict.fromkeys(["hstack", "vstack", "block"], "blocks"),
    **dict.fromkeys(["gaussian_vector", "average", "replica"], "averages"),
    **dict.fromkeys(["TraceExpr", "split_output"], "outputs"),
    **dict.fromkeys(["Pencil", "linearize"], "linearize"),
    **dict.fromkeys(["FixedPointSystem", "equations"], "freeprob"),
    # The public entry point.  It lives on the derivations floor, which builds on this one:
    # an alias resolved on first use, so this floor imports nothing from above.
    "build": "derivations.theory",
    "derive": "derivations.derived",
}

__all__ = ["Activation", "activation", "KNOWN_ACTIVATIONS", *_LAZY]


lazy_names(__name__, _LAZY)
