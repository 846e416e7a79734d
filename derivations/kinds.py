"""The names that select a derived DSM system, without the symbolic machinery (so that a
warm start loads no sympy): the quantities and the kinds of ``m``."""
from __future__ import annotations

import math

__all__ = ["QUANTITIES", "m_kind"]

#: The errors every DSM system computes (one shared reduced system per kind of ``m``).
QUANTITIES = ("test", "train")


def m_kind(m) -> str:
    """``"1"``, ``"finite"`` (any integer ``m >= 2``, one symbolic system) or ``"inf"``."""
    if isinstance(m, str) and m in ("1", "finite", "inf"):
        return m
    if math.isinf(m):
        return "inf"
    return "1" if m == 1 else "finite"
