"""Symbolic layer: activations and their Gaussian-equivalence coefficients,
random-matrix expressions, automatic linear pencils and the operator-valued
free-probability equations they satisfy.

Pipeline: activation -> Gaussian-equivalence numbers (:mod:`pencils.activation`)
-> rational expression of Gaussian matrices (:mod:`pencils.expr`)
-> linear pencil (:mod:`pencils.linearize`) -> fixed-point equations
(:mod:`pencils.freeprob`), compiled and solved in :mod:`numerics`.
"""
from .activation import Activation, activation, KNOWN_ACTIVATIONS

__all__ = ["Activation", "activation", "KNOWN_ACTIVATIONS"]
