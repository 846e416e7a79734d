"""Block matrices and concatenation: ``hstack``, ``vstack``, ``block``.

A concatenated dimension is the direct sum of the blocks' index sets: ``hstack([A, B])``
with ``A`` of shape ``n x p1`` and ``B`` of shape ``n x p2`` is ``n x (p1 ⊕ p2)``, a
:class:`~pencils.expr.SumSpace` of size ``(ratio_p1 + ratio_p2) d``.  A block matrix is an
ordinary :class:`~pencils.expr.MatExpr` (op ``block``, a grid of blocks) whose rows or
columns are direct sums, so it enters sums, products, transposes, inverses and traces like
any expression:

* the normalised trace over a direct sum is the sum of the diagonal blocks' traces,
  ``(1/d) Tr M = sum_i (1/d) Tr M_ii`` (both normalised by the reference size ``d``);
* :func:`pencils.linearize.linearize` realises a block matrix directly as pencil block
  structure: the direct sum of its blocks' pencils, with the realization's ``U`` / ``V``
  / ``D`` split by component (the block form of the realization rules, Helton, Mai and
  Speicher 2018, J. Funct. Anal. 274, section 3).  An inverse of a block matrix, such as
  ``(FᵀF/n + lam)⁻¹`` for concatenated features ``F = [F1 | F2]``, costs one pencil
  block per component, with no Schur-complement expansion into nested inverses; so the
  pencil grows linearly with the expression.
* a block row times a block column (inner partitions equal) is contracted,
  ``sum_k A_k B_k``: ``hstack([X1, X2]) @ hstack([X1, X2]).T`` is ``X1 @ X1.T + X2 @ X2.T``.
  Other products of block matrices stay products: multiplying ``FᵀF`` out into its four
  blocks would realise ``F1`` and ``F2`` twice each, a larger pencil with a larger
  nonlinear core than the product of the two block pencils.  (The contraction is done by
  :mod:`pencils.expr` when the product is formed.)

A zero block is ``0`` (or ``None``) in :func:`block`; Gaussians live in plain spaces (a
Gaussian on a direct sum is a block of independent Gaussians: build it with
:func:`block`).

>>> import sympy
>>> from pencils.expr import D, Space, gaussian, inverse, trace
>>> n, p1, p2 = Space("n", 2), Space("p1", 1), Space("p2", sympy.Rational(1, 2))
>>> X1, X2 = gaussian("X1", n, p1), gaussian("X2", n, p2)
>>> F = hstack([X1, X2])
>>> F.rows.name, F.cols.name, F.cols.ratio
('n', '(p1+p2)', 3/2)
>>> F.T == vstack([X1.T, X2.T])
True
>>> F @ F.T == X1 @ X1.T + X2 @ X2.T
True
>>> R = inverse(F.T @ F + 1)
>>> R.rows == F.cols
True
>>> trace(block([[X1.T @ X1, 0], [0, X2.T @ X2]])) == trace(X1.T @ X1) + trace(X2.T @ X2)
True
"""
from __future__ import annotations

from typing import Any, Sequence

from .expr import MatExpr, as_scalar, direct_sum, transpose, zeros

__all__ = ["hstack", "vstack", "block", "grid"]


def grid(e: MatExpr) -> list[list[MatExpr]]:
    """The blocks of a block matrix as a nested list (``[[e]]`` for any other expression)."""
    if e.op != "block":
        return [[e]]
    k, m, bl = e.args[0], e.args[1], e.args[2:]
    return [list(bl[i * m:(i + 1) * m]) for i in range(k)]


def _from_grid(g: list[list[MatExpr]]) -> MatExpr:
    k, m = len(g), len(g[0])
    if k == 1 and m == 1:
        return g[0][0]
    rows = [r[0].rows for r in g]
    cols = [b.cols for b in g[0]]
    for i, r in enumerate(g):
        for j, b in enumerate(r):
            if not isinstance(b, MatExpr):
                raise ValueError(f"block ({i}, {j}) must be a matrix expression, got {b!r}")
            if (b.rows, b.cols) != (rows[i], cols[j]):
                raise ValueError(f"block ({i}, {j}) is {b.rows.name}x{b.cols.name}; its block row "
                                 f"and column need {rows[i].name}x{cols[j].name}")
    return MatExpr("block", (k, m, *(b for r in g for b in r)), direct_sum(rows), direct_sum(cols))


def _check(items: Sequence[Any], what: str) -> list[MatExpr]:
    items = list(items)
    if not items:
        raise ValueError(f"{what} needs at least one block")
    for x in items:
        if not isinstance(x, MatExpr):
            raise ValueError(f"{what}: blocks must be matrix expressions, got {x!r}")
    return items


def hstack(items: Sequence[MatExpr]) -> MatExpr:
    """``[A | B | ...]``: blocks side by side; their rows must agree.  A block matrix
    among the items contributes its block columns (its block rows must match)."""
    grids = [grid(x) for x in _check(items, "hstack")]
    if any(len(g) != len(grids[0]) for g in grids):
        raise ValueError("hstack: the items have different block rows")
    for g in grids:
        for i, r in enumerate(g):
            if r[0].rows != grids[0][i][0].rows:
                raise ValueError(f"hstack: rows differ ({r[0].rows.name} vs {grids[0][i][0].rows.name})")
    return _from_grid([[b for g in grids for b in g[i]] for i in range(len(grids[0]))])


def vstack(items: Sequence[MatExpr]) -> MatExpr:
    """``[A; B; ...]``: blocks on top of each other; their columns must agree."""
    return transpose(hstack([transpose(x) for x in _check(items, "vstack")]))


def block(rows: Sequence[Sequence[Any]]) -> MatExpr:
    """A block matrix from a nested list; ``0`` (or ``None``) is a zero block whose shape
    is read from the other blocks of its block row and column.

    >>> from pencils.expr import D, Space, gaussian
    >>> X, Y = gaussian("X", Space("n", 2), D), gaussian("Y", D, D)
    >>> M = block([[Y, X.T], [X, 0]])
    >>> M.rows.name, grid(M)[1][1]
    ('(d+n)', 0_nxn)
    """
    rows = [list(r) for r in rows]
    if not rows or not rows[0] or any(len(r) != len(rows[0]) for r in rows):
        raise ValueError("block needs a non-empty rectangular nested list")

    def zero(x: Any) -> bool:
        return x is None or (not isinstance(x, MatExpr) and as_scalar(x) == 0)

    k, m = len(rows), len(rows[0])
    rs: list = [None] * k
    cs: list = [None] * m
    for i in range(k):
        for j in range(m):
            x = rows[i][j]
            if zero(x):
                continue
            if not isinstance(x, MatExpr):
                raise ValueError(f"block: entry ({i}, {j}) must be a matrix expression or 0, got {x!r}")
            rs[i], cs[j] = rs[i] or x.rows, cs[j] or x.cols
    if None in rs or None in cs:
        raise ValueError("block: a block row or column of zeros has no known space")
    return _from_grid([[zeros(rs[i], cs[j]) if zero(rows[i][j]) else rows[i][j] for j in range(m)]
                       for i in range(k)])
