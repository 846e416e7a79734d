"""Automatic linearization: a rational expression of Gaussian matrices as a block of the
inverse of a *linear pencil*.

Every expression ``r`` built with :mod:`pencils.expr` is written as a realization

    r = D I + U L^{-1} V,

where ``L`` is an ``N x N`` block matrix whose every block is ``0``, ``c I``, ``c X``
or ``c Xᵀ`` (or a sum of such terms, ``c`` scalars), ``U`` a block row and ``V`` a
block column of scalar identities, and ``D`` a scalar (non-zero only for square
``r``).  The rules are the classical realization rules of Schützenberger and Cohn,
in the form used for free probability by Helton, Mai and Speicher (2018,
"Applications of realizations (aka linearizations) to free probability", J. Funct.
Anal. 274, sections 3-4):

* atom ``A``: ``L = [[I, -A], [0, I]]``, ``U = [I, 0]``, ``V = [0; I]``;
* sum: ``L = diag(L1, L2)``, ``U = [U1, U2]``, ``V = [V1; V2]``, ``D = D1 + D2``;
* product: ``L = [[L1, -V1 U2], [0, L2]]``, ``U = [U1, D1 U2]``, ``V = [V1 D2; V2]``,
  ``D = D1 D2`` (the upper-right block of ``L^{-1}`` is ``L1^{-1} V1 U2 L2^{-1}``);
* inverse: ``L' = [[L, V], [U, -D]]``, ``U' = [0, -I]``, ``V' = [0; I]``, ``D' = 0``
  (Schur complement: the last diagonal block of ``L'^{-1}`` is ``-r^{-1}``);
* scalars scale ``V`` and ``D``; transposes never reach the pencil because
  :mod:`pencils.expr` pushes them down to the atoms;
* block matrix ``[[r_11, ..., r_1m], ...]`` over direct sums of spaces
  (:mod:`pencils.blocks`): ``L = diag(L_IJ)``, and ``U``, ``V``, ``D`` become block
  matrices with one block row (column) per component of the row (column) space: block
  ``(I, J)`` puts ``U_IJ`` in the rows of component ``I``, ``V_IJ`` in the columns of
  component ``J`` and ``D_IJ`` at ``(I, J)``.  The rules above then hold with ``U``, ``V``,
  ``D`` block-valued (a product contracts the shared components, an inverse adds one
  pencil block per component); this is the block form of the realization of a matrix of
  rational functions (Helton, Mai and Speicher 2018, section 3; Mingo and Speicher 2017,
  ch. 10, on linearizations of matrices over an algebra).  The normalised trace over a
  direct sum is the sum over its components.

Keeping pencils small.  Sub-expressions are linearised once (memoised on their
canonical form).  Afterwards two exact reductions are applied:

1. *pruning*: a block that is not reachable from the support of ``U`` or cannot
   reach the support of ``V`` in the graph of ``L`` does not influence
   ``U L^{-1} V`` (the pencil is block-triangular with respect to it) and is dropped;
2. *Schur elimination*: a block ``k`` with ``L_kk = c I`` (``c`` a non-zero *number*)
   is eliminated, ``L <- L_{-k,-k} - L_{-k,k} c^{-1} L_{k,-k}``, whenever the
   result stays linear (no product of two Gaussian blocks) and ``U``, ``V`` stay
   deterministic; ``D`` absorbs ``U_k c^{-1} V_k``.

The pivot ``c`` is never a parameter (nor the spectral variable): eliminating a block
whose diagonal is, say, ``mu`` would write ``1/mu`` into the pencil, and a parameter may be
``0`` at the points the equations are solved (a layer with ``mu1 = 0``, a ridge ``lam = 0``
limit), where the pencil itself is still fine.  So the pencil is polynomial in the
parameters wherever the expression is (only the user's own divisions and inverses of
scalars appear in denominators), and its equations have the limit of a small parameter as
their value at ``0``.

Block matrices (:mod:`pencils.blocks`) are reduced to their blocks before they get here;
random vectors (:mod:`pencils.averages`) must be averaged into traces first.

For example ``(XᵀX/psi + lam)^{-1}`` needs the 2-block pencil
``[[I_n, Xᵀ...]]`` instead of the 5 blocks of the raw rules; a chain of ``k``
atoms needs ``k + 1`` blocks.

>>> import sympy
>>> from pencils.expr import Space, D, gaussian, inverse, trace
>>> psi, lam = sympy.symbols("psi lam", positive=True)
>>> X = gaussian("X", Space("n", psi), D)
>>> P = linearize(inverse(X.T @ X / psi + lam))
>>> P.size, [s.name for s in P.spaces]
(2, ['n', 'd'])
>>> linearize(trace(inverse(X.T @ X / psi + lam))).size
2
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import sympy

from .cache import cached
from .expr import MatExpr, Space, SumSpace, Trace, has_coordinates, has_vectors, parts

__all__ = ["Pencil", "linearize", "describe"]

Basis = Any  # None (identity) or (name, transposed: bool)


def describe(obj: Any) -> str:
    """A canonical, complete text description of expressions (for cache keys)."""
    if isinstance(obj, sympy.Basic):
        return sympy.srepr(obj)
    if isinstance(obj, Space):
        return f"Space({obj.name!r},{sympy.srepr(obj.ratio)})"
    if isinstance(obj, SumSpace):
        return "SumSpace" + describe(obj.spaces)
    if isinstance(obj, MatExpr):
        return describe(obj.key)
    if isinstance(obj, Trace):
        return describe(obj.key)
    if isinstance(obj, (tuple, list)):
        return "(" + ",".join(describe(o) for o in obj) + ")"
    return repr(obj)


# ---------------------------------------------------------------------------
# linear combinations of the basis {I, X_k, X_kᵀ} inside one block


def _lc_scale(a: dict, c: sympy.Expr) -> dict:
    return {k: v * c for k, v in a.items()}


def _lc_is_det(a: dict) -> bool:
    return all(k is None for k in a)


def _lc_mul(a: dict, b: dict) -> dict:
    if _lc_is_det(a):
        return _lc_scale(b, a.get(None, 0))
    if _lc_is_det(b):
        return _lc_scale(a, b.get(None, 0))
    raise AssertionError("product of two Gaussian blocks is not linear")


def _lc_add_into(target: dict, a: dict) -> None:
    for k, v in a.items():
        target[k] = target.get(k, 0) + v


def _simp(c: Any) -> sympy.Expr:
    c = sympy.sympify(c)
    return c if c.is_number else sympy.cancel(c)


@dataclass
class _Real:
    """Mutable realization ``D + U L^{-1} V`` used while building.

    Rows and columns of the expression may be direct sums of spaces (:mod:`pencils.blocks`):
    ``U`` is then a block matrix with one block row per *component* of ``rows``, ``V`` one
    block column per component of ``cols`` and ``D`` a matrix of scalars between components
    (for a plain space there is one component, ``0``)."""

    spaces: list
    L: dict  # (i, j) -> {basis: coefficient}
    U: dict  # (row component, block i) -> coefficient
    V: dict  # (block j, column component) -> coefficient
    D: dict  # (row component, column component) -> coefficient
    rows: Any
    cols: Any

    @property
    def n(self) -> int:
        return len(self.spaces)

    def ublocks(self) -> set:
        return {i for _, i in self.U}

    def vblocks(self) -> set:
        return {j for j, _ in self.V}

    def shifted(self, off: int) -> "_Real":
        return _Real(list(self.spaces), {(i + off, j + off): dict(v) for (i, j), v in self.L.items()},
                     {(a, i + off): c for (a, i), c in self.U.items()},
                     {(j + off, b): c for (j, b), c in self.V.items()},
                     dict(self.D), self.rows, self.cols)


def _scalar(c: Any, rows: Any, cols: Any) -> _Real:
    """``c I`` (no pencil blocks): ``D`` is ``c`` on every component."""
    c = sympy.sympify(c)
    D = {} if c == 0 else {(a, a): c for a in range(len(parts(rows)))}
    return _Real([], {}, {}, {}, D, rows, cols)


def _atom(e: MatExpr) -> _Real:
    basis = (e.args[0], False) if e.op == "gauss" else (e.args[0].args[0], True)
    one = sympy.Integer(1)
    return _Real([e.rows, e.cols], {(0, 0): {None: one}, (1, 1): {None: one}, (0, 1): {basis: -one}},
                 {(0, 0): one}, {(1, 0): one}, {}, e.rows, e.cols)


def _direct_sum(a: _Real, b: _Real) -> tuple[_Real, _Real, int]:
    b2 = b.shifted(a.n)
    L = {k: dict(v) for k, v in a.L.items()}
    L.update(b2.L)
    return _Real(a.spaces + b2.spaces, L, {}, {}, {}, a.rows, b.cols), b2, a.n


def _add_into(target: dict, key: Any, value: Any) -> None:
    target[key] = target.get(key, 0) + value


def _sum(terms: list[tuple[sympy.Expr, _Real]]) -> _Real:
    c0, r = terms[0]
    out = _Real(list(r.spaces), {k: dict(v) for k, v in r.L.items()}, dict(r.U),
                {j: c0 * v for j, v in r.V.items()}, {k: c0 * v for k, v in r.D.items()}, r.rows, r.cols)
    for c, r in terms[1:]:
        new, r2, _ = _direct_sum(out, r)
        new.U = {**out.U, **r2.U}
        new.V = {**out.V, **{j: c * v for j, v in r2.V.items()}}
        new.D = dict(out.D)
        for k, v in r.D.items():
            _add_into(new.D, k, c * v)
        new.rows, new.cols = out.rows, out.cols
        out = new
    return out


def _block(grid: list[list[_Real]], rows: Any, cols: Any) -> _Real:
    """A block matrix: the direct sum of its blocks' realizations, each block's ``U`` rows,
    ``V`` columns and ``D`` placed at its components' offsets."""
    roff = [0]
    for row in grid:
        roff.append(roff[-1] + len(parts(row[0].rows)))
    coff = [0]
    for r in grid[0]:
        coff.append(coff[-1] + len(parts(r.cols)))
    out = _Real([], {}, {}, {}, {}, rows, cols)
    for I, row in enumerate(grid):
        for J, r in enumerate(row):
            new, r2, _ = _direct_sum(out, r)
            new.U = {**out.U, **{(a + roff[I], i): u for (a, i), u in r2.U.items()}}
            new.V = {**out.V, **{(j, b + coff[J]): v for (j, b), v in r2.V.items()}}
            new.D = dict(out.D)
            for (a, b), v in r.D.items():
                _add_into(new.D, (a + roff[I], b + coff[J]), v)
            new.rows, new.cols = rows, cols
            out = new
    return out


def _product(a: _Real, b: _Real) -> _Real:
    new, b2, off = _direct_sum(a, b)
    for (i, c), vi in a.V.items():
        for (c2, j), uj in b2.U.items():
            if c == c2:
                new.L.setdefault((i, j), {})
                _lc_add_into(new.L[(i, j)], {None: -vi * uj})
    new.U = dict(a.U)
    for (r, c), dv in a.D.items():
        for (c2, j), uj in b2.U.items():
            if c == c2:
                _add_into(new.U, (r, j), dv * uj)
    new.V = dict(b2.V)
    for (c, s), dv in b.D.items():
        for (i, c2), vi in a.V.items():
            if c == c2:
                _add_into(new.V, (i, s), vi * dv)
    new.D = {}
    for (r, c), x in a.D.items():
        for (c2, s), y in b.D.items():
            if c == c2:
                _add_into(new.D, (r, s), x * y)
    new.rows, new.cols = a.rows, b.cols
    return new


def _inverse(a: _Real) -> _Real:
    """Schur complement with one new block per component of ``rows`` (module docstring)."""
    n = a.n
    comps = parts(a.rows)
    L = {k: dict(v) for k, v in a.L.items()}
    for (i, c), vi in a.V.items():
        L[(i, n + c)] = {None: vi}
    for (c, j), uj in a.U.items():
        L[(n + c, j)] = {None: uj}
    for (c, c2), dv in a.D.items():
        L[(n + c, n + c2)] = {None: -dv}
    m = len(comps)
    return _Real(a.spaces + list(comps), L, {(c, n + c): sympy.Integer(-1) for c in range(m)},
                 {(n + c, c): sympy.Integer(1) for c in range(m)}, {}, a.rows, a.rows)


# ---------------------------------------------------------------------------
# reductions


def _clean(r: _Real) -> None:
    for k in list(r.L):
        lc = {b: _simp(c) for b, c in r.L[k].items()}
        lc = {b: c for b, c in lc.items() if c != 0}
        if lc:
            r.L[k] = lc
        else:
            del r.L[k]
    r.U = {i: _simp(c) for i, c in r.U.items() if _simp(c) != 0}
    r.V = {j: _simp(c) for j, c in r.V.items() if _simp(c) != 0}
    r.D = {k: _simp(c) for k, c in r.D.items() if _simp(c) != 0}


def _reach(n: int, edges: dict[int, set], start: Iterable[int]) -> set:
    seen, stack = set(start), list(start)
    while stack:
        i = stack.pop()
        for j in edges.get(i, ()):
            if j not in seen:
                seen.add(j)
                stack.append(j)
    return seen


def _prune(r: _Real) -> _Real:
    fwd: dict[int, set] = {}
    bwd: dict[int, set] = {}
    for (i, j) in r.L:
        fwd.setdefault(i, set()).add(j)
        bwd.setdefault(j, set()).add(i)
    keep = _reach(r.n, fwd, r.ublocks()) & _reach(r.n, bwd, r.vblocks())
    return _restrict(r, sorted(keep))


def _restrict(r: _Real, keep: list[int]) -> _Real:
    idx = {old: new for new, old in enumerate(keep)}
    return _Real([r.spaces[k] for k in keep],
                 {(idx[i], idx[j]): v for (i, j), v in r.L.items() if i in idx and j in idx},
                 {(a, idx[i]): c for (a, i), c in r.U.items() if i in idx},
                 {(idx[j], b): c for (j, b), c in r.V.items() if j in idx}, r.D, r.rows, r.cols)


def _nonzero(c: sympy.Expr) -> bool:
    """A pivot must be a non-zero number: a parameter may be 0 where the system is solved."""
    c = sympy.sympify(c)
    return bool(c.is_number and c != 0)


def _eliminable(r: _Real, k: int) -> int | None:
    """Fill-in cost of eliminating block ``k``, or ``None`` when it is not allowed."""
    diag = r.L.get((k, k))
    if not diag or not _lc_is_det(diag) or not _nonzero(diag.get(None, 0)):
        return None
    col = {i: v for (i, j), v in r.L.items() if j == k and i != k}
    row = {j: v for (i, j), v in r.L.items() if i == k and j != k}
    if k in r.ublocks() and not all(_lc_is_det(v) for v in row.values()):
        return None
    if k in r.vblocks() and not all(_lc_is_det(v) for v in col.values()):
        return None
    fill = 0
    for i, a in col.items():
        for j, b in row.items():
            if not (_lc_is_det(a) or _lc_is_det(b)):
                return None
            # a Gaussian coefficient must stay free of the coordinates of a measure (profiles)
            if not (_lc_is_det(a) and _lc_is_det(b)) and (
                    has_coordinates(diag[None]) or any(has_coordinates(c) for c in (*a.values(), *b.values()))):
                return None
            fill += (i, j) not in r.L
    return fill


def _eliminate(r: _Real, k: int) -> _Real:
    c = r.L[(k, k)][None]
    col = {i: v for (i, j), v in r.L.items() if j == k and i != k}
    row = {j: v for (i, j), v in r.L.items() if i == k and j != k}
    L = {key: dict(v) for key, v in r.L.items() if k not in key}
    for i, a in col.items():
        for j, b in row.items():
            L.setdefault((i, j), {})
            _lc_add_into(L[(i, j)], _lc_scale(_lc_mul(a, b), -1 / c))
    U = {(p, i): u for (p, i), u in r.U.items() if i != k}
    V = {(j, q): v for (j, q), v in r.V.items() if j != k}
    Dn = dict(r.D)
    uk = {p: u for (p, i), u in r.U.items() if i == k}
    vk = {q: v for (j, q), v in r.V.items() if j == k}
    for p, u in uk.items():
        for j, b in row.items():
            U[(p, j)] = U.get((p, j), 0) - u * b[None] / c
    for q, v in vk.items():
        for i, a in col.items():
            V[(i, q)] = V.get((i, q), 0) - a[None] * v / c
    for p, u in uk.items():
        for q, v in vk.items():
            Dn[(p, q)] = Dn.get((p, q), 0) + u * v / c
    out = _Real(list(r.spaces), L, U, V, Dn, r.rows, r.cols)
    _clean(out)
    return _restrict(out, [i for i in range(r.n) if i != k])


def _reduce(r: _Real) -> _Real:
    _clean(r)
    r = _prune(r)
    while True:
        costs = [(c, k) for k in range(r.n) if (c := _eliminable(r, k)) is not None]
        if not costs:
            return r
        _, k = min(costs)
        r = _prune(_eliminate(r, k))


# ---------------------------------------------------------------------------
# recursion over the expression


def _finish(r: _Real, reduce: bool) -> _Real:
    """Shrink a realization (pruning and elimination), or only tidy it (``reduce=False``:
    the raw realization rules, kept for checks)."""
    if reduce:
        return _reduce(r)
    _clean(r)
    return r


def _lin(e: MatExpr, memo: dict, reduce: bool = True) -> _Real:
    if e in memo:
        return memo[e]
    op, a = e.op, e.args
    if op in ("gauss", "gaussT"):
        r = _atom(e)
    elif op in ("eye", "spec"):
        # profiles on one space commute: each acts as the scalar f at an atom of its measure
        # (f(Sigma): f(s) per eigenvalue), so it is realised like c I with c = f(coordinates).
        r = _scalar(a[0], e.rows, e.cols)
    elif op == "add":
        if not a:
            r = _Real([], {}, {}, {}, {}, e.rows, e.cols)
        else:
            r = _sum([(c, _lin(t, memo, reduce)) for c, t in a])
    elif op == "scale":
        r = _sum([(a[0], _lin(a[1], memo, reduce))])
    elif op == "mul":
        r = _lin(a[0], memo, reduce)
        for f in a[1:]:
            r = _product(r, _lin(f, memo, reduce))
            if reduce:
                r = _reduce(r)
    elif op == "inv":
        r = _inverse(_lin(a[0], memo, reduce))
    elif op == "block":
        k, m, bl = a[0], a[1], a[2:]
        r = _block([[_lin(bl[i * m + j], memo, reduce) for j in range(m)] for i in range(k)],
                   e.rows, e.cols)
    else:  # pragma: no cover
        raise AssertionError(op)
    r = _finish(r, reduce)
    memo[e] = r
    return r


# ---------------------------------------------------------------------------
# the public pencil


@dataclass(frozen=True)
class Pencil:
    """A block linear pencil ``L = L0 ⊗ I + sum_k (E_k ⊗ X_k + F_k ⊗ X_kᵀ)``.

    Attributes
    ----------
    spaces : the space of each of the ``N`` blocks.
    L0 : ``N x N`` sympy matrix, coefficient of the identity in each block
        (non-zero only between blocks of the same space).
    gaussians : ``{name: (atom, E, F)}``; ``E[i, j]`` is the coefficient of ``X`` in
        block ``(i, j)`` (``i`` in the row space of ``X``, ``j`` in its column
        space), ``F[i, j]`` that of ``Xᵀ``.
    U, V, D : realization of the expression, ``r = D I + U L^{-1} V`` (``None``
        for a pencil made from a :class:`~pencils.expr.Trace`): ``U`` is ``1 x N``, ``V``
        ``N x 1`` and ``D`` a scalar; for rows or columns that are direct sums
        (:class:`~pencils.expr.SumSpace`) ``U`` has one row per row component, ``V`` one
        column per column component and ``D`` is their matrix.
    readout, constant : the normalised trace is ``constant + sum_ij readout[i, j]
        g_ij`` with ``g_ij = (1/n_i) Tr (L^{-1})_ij``; for a rectangular
        expression both are ``None``.
    """

    spaces: tuple
    L0: sympy.ImmutableMatrix
    gaussians: dict
    U: sympy.ImmutableMatrix | None
    V: sympy.ImmutableMatrix | None
    D: sympy.Expr | None
    readout: sympy.ImmutableMatrix | None
    constant: sympy.Expr | None
    rows: Space | None = None
    cols: Space | None = None
    source: str = field(default="", compare=False)

    @property
    def size(self) -> int:
        """Number of blocks ``N``."""
        return len(self.spaces)

    def sizes_by_space(self) -> dict[str, int]:
        """Number of blocks in each space."""
        out: dict[str, int] = {}
        for s in self.spaces:
            out[s.name] = out.get(s.name, 0) + 1
        return out

    def free_symbols(self) -> set:
        syms = set(self.L0.free_symbols)
        for atom, E, F in self.gaussians.values():
            syms |= E.free_symbols | F.free_symbols | atom.free_symbols()
        for s in self.spaces:
            syms |= s.ratio.free_symbols
        for m in (self.readout, self.U, self.V):
            if m is not None:
                syms |= m.free_symbols
        for c in (self.D, self.constant):
            if c is not None:
                syms |= sympy.sympify(c).free_symbols
        return syms

    def block(self, i: int, j: int) -> sympy.Expr:
        """Block ``(i, j)`` as a scalar sympy expression in noncommutative symbols."""
        out = self.L0[i, j] * sympy.Symbol("I", commutative=False)
        for name, (_, E, F) in self.gaussians.items():
            out += E[i, j] * sympy.Symbol(name, commutative=False)
            out += F[i, j] * sympy.Symbol(name + "^T", commutative=False)
        return out

    def matrix(self) -> sympy.Matrix:
        """``L`` as an ``N x N`` sympy matrix of (noncommutative) block symbols."""
        return sympy.Matrix(self.size, self.size, lambda i, j: self.block(i, j))

    def latex(self) -> str:
        """LaTeX of ``L`` with the space of each block row."""
        body = sympy.latex(self.matrix())
        spaces = ", ".join(f"{s.name}" for s in self.spaces)
        return f"L = {body} \\quad \\text{{(block spaces: {spaces})}}"

    def permuted(self, perm: list[int]) -> "Pencil":
        """The same pencil with blocks reordered: new block ``a`` is old block ``perm[a]``."""
        perm = list(perm)
        if sorted(perm) != list(range(self.size)):
            raise ValueError(f"{perm} is not a permutation of range({self.size})")

        def pm(M: sympy.ImmutableMatrix | None, rows: bool = True, cols: bool = True) -> Any:
            if M is None:
                return None
            return sympy.ImmutableMatrix(M.shape[0], M.shape[1], lambda a, b: M[perm[a] if rows else a,
                                                                               perm[b] if cols else b])

        return Pencil(tuple(self.spaces[p] for p in perm), pm(self.L0),
                      {k: (a, pm(E), pm(F)) for k, (a, E, F) in self.gaussians.items()},
                      pm(self.U, rows=False), pm(self.V, cols=False), self.D, pm(self.readout), self.constant,
                      self.rows, self.cols, self.source)

    def __repr__(self) -> str:
        return (f"Pencil(size={self.size}, spaces={self.sizes_by_space()}, "
                f"gaussians={sorted(self.gaussians)})")


def _to_pencil(r: _Real, atoms: dict, readout: dict | None, constant: Any, source: str,
               keep_uv: bool) -> Pencil:
    n = r.n
    L0 = sympy.zeros(n, n)
    gs = {name: (atom, sympy.zeros(n, n), sympy.zeros(n, n)) for name, atom in atoms.items()}
    for (i, j), lc in r.L.items():
        for b, c in lc.items():
            if b is None:
                if r.spaces[i] != r.spaces[j]:  # pragma: no cover - guarded by construction
                    raise AssertionError("identity between different spaces")
                L0[i, j] = c
            else:
                name, tr = b
                if has_coordinates(c):  # pragma: no cover - guarded by _eliminable
                    raise AssertionError("a Gaussian block with a spectral coefficient")
                atom = atoms[name]
                want = (atom.cols, atom.rows) if tr else (atom.rows, atom.cols)
                if (r.spaces[i], r.spaces[j]) != want:  # pragma: no cover
                    raise AssertionError("Gaussian block in the wrong spaces")
                gs[name][2 if tr else 1][i, j] = c
    gs = {k: (a, sympy.ImmutableMatrix(E), sympy.ImmutableMatrix(F)) for k, (a, E, F) in gs.items()
          if any(E) or any(F)}
    ro = None
    if readout is not None:
        ro = sympy.ImmutableMatrix(n, n, lambda i, j: readout.get((i, j), 0))
    U = V = Dv = None
    if keep_uv:
        k, m = len(parts(r.rows)), len(parts(r.cols))
        U = sympy.ImmutableMatrix(k, n, lambda a, j: r.U.get((a, j), 0))
        V = sympy.ImmutableMatrix(n, m, lambda i, b: r.V.get((i, b), 0))
        Dv = r.D.get((0, 0), sympy.Integer(0)) if (k, m) == (1, 1) else \
            sympy.ImmutableMatrix(k, m, lambda a, b: r.D.get((a, b), 0))
    return Pencil(tuple(r.spaces), sympy.ImmutableMatrix(L0), gs, U, V, Dv, ro,
                  None if constant is None else sympy.sympify(constant),
                  r.rows if keep_uv else None, r.cols if keep_uv else None, source)


def _linearize_uncached(obj: MatExpr | Trace, reduce: bool = True) -> Pencil:
    memo: dict = {}
    if isinstance(obj, MatExpr):
        atoms = obj.gaussians()
        r = _lin(obj, memo, reduce)
        readout = constant = None
        if obj.is_square:
            readout, constant = {}, sympy.Integer(0)
            for c, sp in enumerate(parts(obj.rows)):
                for (ci, i), ui in r.U.items():
                    for (j, cj), vj in r.V.items():
                        if ci == c == cj:
                            readout[(i, j)] = readout.get((i, j), 0) + sp.ratio * ui * vj
                constant = constant + sp.ratio * r.D.get((c, c), 0)
            readout = {k: _simp(v) for k, v in readout.items()}
            constant = _simp(constant)
        return _to_pencil(r, atoms, readout, constant, repr(obj), keep_uv=True)
    if isinstance(obj, Trace):
        atoms: dict = {}
        for _, t in obj.terms:
            for k, v in t.gaussians().items():
                if atoms.setdefault(k, v) != v:
                    raise ValueError(f"Gaussian {k!r} is used with two different shapes or variances")
        total: _Real | None = None
        readout: dict = {}
        constant = obj.constant
        for c, t in obj.terms:
            r = _lin(t, memo, reduce)
            off = 0 if total is None else total.n
            for comp, sp in enumerate(parts(t.rows)):
                a = sp.ratio
                for (ci, i), ui in r.U.items():
                    for (j, cj), vj in r.V.items():
                        if ci == comp == cj:
                            key = (i + off, j + off)
                            readout[key] = _simp(readout.get(key, 0) + c * a * ui * vj)
                constant = constant + c * a * r.D.get((comp, comp), 0)
            total = r.shifted(0) if total is None else _direct_sum(total, r)[0]
        if total is None:
            total = _Real([], {}, {}, {}, {}, None, None)
        readout = {k: v for k, v in readout.items() if v != 0}
        return _to_pencil(total, atoms, readout, _simp(constant), repr(obj), keep_uv=False)
    raise ValueError("linearize needs a matrix expression or a trace")


def linearize(obj: MatExpr | Trace, cache: bool = True, reduce: bool = True) -> Pencil:
    """The linear pencil of an expression or of a normalised trace.

    ``reduce=False`` keeps the raw realization rules (no pruning, no elimination):
    larger, but useful to check the reductions.  The result is cached on disk under
    the canonical description of ``obj``.
    """
    if not isinstance(obj, (MatExpr, Trace)):
        raise ValueError("linearize needs a matrix expression (pencils.expr) or a trace")
    if any(has_vectors(t) for t in ([obj] if isinstance(obj, MatExpr) else [t for _, t in obj.terms])):
        raise ValueError("the expression contains random vectors: average it first "
                         "(pencils.averages.average)")
    if not cache:
        return _linearize_uncached(obj, reduce)
    return cached("pencil", describe(obj) + ("" if reduce else "|raw"),
                  lambda: _linearize_uncached(obj, reduce), code=("pencils",))
