"""Index sets of the matrix language (:mod:`pencils.expr`): spaces of size ``ratio * d``,
their direct sums (concatenated dimensions, :mod:`pencils.blocks`), the reference space
:data:`D` and the one-element column :data:`ONE` of a random vector."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sympy

from .outputs import as_scalar

__all__ = ["Space", "SumSpace", "parts", "direct_sum", "D", "ONE"]


def _ratio(c: Any, name: str) -> sympy.Expr:
    """A space's size ratio: a finite scalar (:func:`pencils.outputs.as_scalar`), else a
    ``ValueError`` naming the space."""
    try:
        return as_scalar(c)
    except ValueError:
        raise ValueError(f"size ratio of space {name!r} must be a finite scalar, got {c!r}") from None


@dataclass(frozen=True)
class Space:
    """An index set of size ``ratio * d`` (``ratio`` a positive sympy expression)."""

    name: str
    ratio: sympy.Expr = sympy.Integer(1)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("a Space needs a non-empty name")
        r = _ratio(self.ratio, self.name)
        if r.is_number and not (r.is_real and r > 0):
            raise ValueError(f"size ratio of space {self.name!r} must be positive, got {r}")
        if r.is_positive is False:
            raise ValueError(f"size ratio of space {self.name!r} must be positive, got {r}")
        object.__setattr__(self, "ratio", r)

    def __repr__(self) -> str:
        return f"Space({self.name!r}, {self.ratio})"


@dataclass(frozen=True)
class SumSpace:
    """The direct sum of spaces (a concatenated dimension, :mod:`pencils.blocks`): an index
    set of size ``(ratio_1 + ratio_2 + ...) d``.  Nested sums are flattened."""

    spaces: tuple

    def __post_init__(self) -> None:
        flat: list = []
        for s in self.spaces:
            if isinstance(s, SumSpace):
                flat.extend(s.spaces)
            elif isinstance(s, Space) and s != ONE:
                flat.append(s)
            else:
                raise ValueError(f"a direct sum needs spaces, got {s!r}")
        if len(flat) < 2:
            raise ValueError("a direct sum needs at least two spaces")
        object.__setattr__(self, "spaces", tuple(flat))

    @property
    def name(self) -> str:
        return "(" + "+".join(s.name for s in self.spaces) + ")"

    @property
    def ratio(self) -> sympy.Expr:
        return sympy.Add(*(s.ratio for s in self.spaces))

    def __repr__(self) -> str:
        return "SumSpace" + self.name


def parts(space: "Space | SumSpace") -> tuple:
    """The spaces of a direct sum, in order (``(space,)`` for a plain space)."""
    return space.spaces if isinstance(space, SumSpace) else (space,)


def direct_sum(spaces: list) -> "Space | SumSpace":
    """The direct sum of ``spaces`` (the space itself when there is one)."""
    flat = [p for s in spaces for p in parts(s)]
    return flat[0] if len(flat) == 1 else SumSpace(tuple(flat))




#: The reference space (size ``d``).
D = Space("d", sympy.Integer(1))
#: The one-element index set of a vector's column (:func:`pencils.averages.gaussian_vector`):
#: not a space of size ``ratio * d``; expressions that use it are averaged, never traced.
ONE = Space("1", sympy.Integer(1))
