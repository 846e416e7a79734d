"""Operator-valued free probability for Gaussian linear pencils: the block fixed-point
equations satisfied by the normalised block traces of ``L^{-1}``.

Setting.  A pencil (:class:`pencils.linearize.Pencil`) is ``L = L0 ⊗ I + Y`` with
``Y = sum_k (E_k ⊗ X_k + F_k ⊗ X_kᵀ)``, ``X_k`` of shape ``n_{r_k} x n_{c_k}`` with
i.i.d. ``N(0, v_k/d)`` entries and ``n_s = alpha_s d``.  Let ``g_ij = (1/n_i) Tr
(L^{-1})_ij`` for blocks ``i, j`` of the same space (blocks of different spaces have
no trace; their deterministic equivalent is 0).  Gaussian integration by parts
(the Schwinger-Dyson equation ``E[Y L^{-1}] ≈ -eta(G) E[L^{-1}]``) gives, to
leading order in ``d``, the operator-valued semicircular equation

    G = (L0 - eta(G))^{-1},
    eta(G) = sum_k v_k [ alpha_{c_k} E_k G F_k + alpha_{r_k} F_k G E_k ],

from ``E[X A Xᵀ] = (v/d) Tr(A) I`` and ``E[Xᵀ A X] = (v/d) Tr(A) I`` (``E[X A X]``
is ``O(1/d)``).  See Far, Oraby, Bryc and Speicher (2006, "Spectra of large block
matrices", eq. (2)); Mingo and Speicher (2017, "Free Probability and Random
Matrices", ch. 9-10); Helton, Far and Speicher (2007) for the fixed-point iteration;
Adlam and Pennington (2020, "The neural tangent kernel in high dimensions", app. B)
and Bodin and Macris (2021) for the same device with rectangular blocks.

Reduction.  ``eta`` depends on ``G`` only through a few linear functionals.  Each
non-zero entry of ``eta`` is a linear form in the ``g_ij``; forms that are equal up to
a factor are merged and become the unknowns ``tau_q = ell_q(G)``, so that
``eta = sum_q tau_q P_q`` and the system is

    tau = ell( (L0 - sum_q tau_q P_q)^{-1} ).

``g_ij`` that vanish structurally (``j`` not reachable from ``i`` in the graph of
the pencil, or different spaces) are dropped first.  The dependency graph of the
``tau`` (``tau_q`` depends on ``tau_p`` when ``ell_q`` reads an entry of ``G`` that
a change of ``P_p`` can reach) is split into strongly connected components,
solved in topological order; a component in which its own unknowns enter
affinely (the read-out part of block-triangular product pencils) is flagged
``linear`` and needs one Newton step.

>>> import sympy
>>> from pencils.expr import Space, D, gaussian, inverse, trace
>>> g, z = sympy.symbols("gamma z", positive=True)
>>> X = gaussian("X", Space("n", 1 / g), D)
>>> S = equations(trace(inverse(g * X.T @ X - z)))
>>> S.n_unknowns, S.components
(2, ((0, 1),))
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sympy

from .cache import cached
from .expr import MatExpr, Trace, has_coordinates
from .linearize import Pencil, describe, linearize

__all__ = ["FixedPointSystem", "equations"]


@dataclass(frozen=True)
class FixedPointSystem:
    """The reduced block fixed-point system of a pencil.

    Attributes
    ----------
    pencil : the pencil it comes from.
    params : parameters (sympy symbols, sorted by name).
    L0 : ``N x N`` deterministic part.
    taus : unknowns ``tau_q``.
    P : ``P[q]`` is the ``N x N`` coefficient of ``tau_q`` in ``eta``.
    W : ``W[q]`` is the ``N x N`` coefficient matrix of ``ell_q``:
        ``tau_q = sum_ij W[q][i, j] g_ij``.
    readout, constant : the requested normalised trace is ``constant + sum_ij
        readout[i, j] g_ij`` (``None`` when the pencil has no trace read-out).
    components : tuples of unknown indices, in the order they are solved.
    linear : per component, whether its own unknowns enter affinely.
    reach : ``N x N`` booleans, structural support of ``G``.
    """

    pencil: Pencil
    params: tuple
    L0: sympy.ImmutableMatrix
    taus: tuple
    P: tuple
    W: tuple
    readout: sympy.ImmutableMatrix | None
    constant: sympy.Expr | None
    components: tuple
    linear: tuple
    reach: tuple
    positive: tuple = field(default=())

    @property
    def size(self) -> int:
        return self.L0.shape[0]

    @property
    def n_unknowns(self) -> int:
        return len(self.taus)

    def g_symbol(self, i: int, j: int) -> sympy.Symbol:
        return sympy.Symbol(f"g_{{{i}{j}}}" if max(i, j) < 10 else f"g_{{{i},{j}}}")

    def eta(self) -> sympy.Matrix:
        """``eta`` as a matrix in the unknowns ``tau``."""
        out = sympy.zeros(self.size, self.size)
        for t, Pq in zip(self.taus, self.P):
            out += t * Pq
        return out

    def M(self) -> sympy.Matrix:
        """``L0 - eta(tau)``, whose inverse is ``G``."""
        return sympy.Matrix(self.L0) - self.eta()

    def ell(self, q: int) -> sympy.Expr:
        """The linear form ``ell_q`` in the symbols ``g_ij``."""
        return sum((w * self.g_symbol(i, j) for (i, j), w in nonzero_entries(self.W[q]).items()),
                   sympy.Integer(0))

    def readout_expr(self) -> sympy.Expr | None:
        if self.readout is None:
            return None
        return self.constant + sum((r * self.g_symbol(i, j) for (i, j), r in nonzero_entries(self.readout).items()),
                                   sympy.Integer(0))

    def explicit(self) -> list[sympy.Eq]:
        """Scalar equations ``tau_q = ell_q((L0 - eta(tau))^{-1})`` by symbolic inversion.

        Only for small pencils (``N <= 4``); larger ones are solved numerically.
        """
        if self.size > 4:
            raise ValueError(f"explicit scalar equations are only produced for N <= 4 (N = {self.size})")
        G = self.M().inv()
        subs = {self.g_symbol(i, j): G[i, j] for i in range(self.size) for j in range(self.size)}
        return [sympy.Eq(t, sympy.simplify(self.ell(q).subs(subs))) for q, t in enumerate(self.taus)]

    def latex(self) -> str:
        """The system in LaTeX: unknowns, ``L0 - eta(tau)``, the read-out."""
        lines = [r"G = \left(L_0 - \eta(\tau)\right)^{-1},\qquad L_0 - \eta(\tau) = "
                 + sympy.latex(self.M())]
        for q, t in enumerate(self.taus):
            lines.append(f"{sympy.latex(t)} = {sympy.latex(self.ell(q))}")
        ro = self.readout_expr()
        if ro is not None:
            lines.append(r"\frac{1}{d}\operatorname{Tr}(\cdot) = " + sympy.latex(ro))
        if self.size <= 3:
            try:
                for eq in self.explicit():
                    lines.append(sympy.latex(eq))
            except Exception:  # symbolic inversion is only a convenience here
                pass
        return " \\\\\n".join(lines)

    def __repr__(self) -> str:
        return (f"FixedPointSystem(N={self.size}, unknowns={self.n_unknowns}, "
                f"components={[len(c) for c in self.components]}, params={[str(p) for p in self.params]})")


def _closure(n: int, edges: set) -> list[list[bool]]:
    """Reflexive-transitive closure of the block graph (Warshall, one numpy row update per ``k``)."""
    import numpy as np

    R = np.eye(n, dtype=bool)
    for (i, j) in edges:
        R[i, j] = True
    for k in range(n):
        R |= np.outer(R[:, k], R[k, :])
    return R.tolist()


def _tarjan(n: int, deps: dict[int, set]) -> list[list[int]]:
    """Strongly connected components; a component comes after those it depends on."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v: int) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(deps.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in range(n):
        if v not in index:
            visit(v)
    return out


def _simp(c: Any) -> sympy.Expr:
    c = sympy.sympify(c)
    return c if c.is_number else sympy.cancel(c)


def _primitive(form: dict) -> tuple:
    """``(content, primitive part)`` of a linear form ``{key: coefficient}``.

    The coefficients are rational functions of the parameters; with ``n_k / d_k`` their
    reduced fractions, the content is ``gcd_k(n_k) / lcm_k(d_k)`` (polynomial gcd over the
    integers, half-integer powers of a symbol ``b`` read as powers of a new variable ``r``
    with ``b = r^2``) without its factors in the spectral variable ``s`` (those stay inside the
    spectral mean), and with the sign that makes the primitive coefficient of the first key
    canonically positive.  The primitive part ``form / content`` then has polynomial
    numerators: no parameter is ever divided by, so a parameter may vanish (``mu1 = 0``: an
    even activation).  Two forms are proportional exactly when their primitive parts are
    equal (Gauss's lemma: the primitive part is unique up to a unit, here ``+-1``).

    The content also takes the factors of the first primitive coefficient that are provably
    non-zero (numbers, positive parameters such as ``psi_n``, ``Delta + a^2``), so the unknown
    keeps the scale of the classical normalisation by the leading coefficient wherever that
    divides by nothing that can vanish (the traces then keep the size, and the conditioning,
    they had)."""
    keys = sorted(form)
    coefs = [sympy.sympify(form[k]) for k in keys]
    roots = {}
    for c in coefs:
        for e in c.atoms(sympy.Pow):
            if e.exp.is_Rational and e.exp.q == 2 and e.base.is_Symbol and e.base not in roots:
                roots[e.base] = sympy.Dummy(f"r_{e.base.name}", positive=True)
    to_r = {b: r**2 for b, r in roots.items()}
    back = {r: sympy.sqrt(b) for b, r in roots.items()}
    polys = [sympy.cancel(c.subs(to_r)) for c in coefs]  # sqrt(b) -> r since r > 0
    nums, dens = zip(*(sympy.fraction(c) for c in polys))
    content = sympy.cancel(sympy.gcd_list(list(nums)) / sympy.lcm_list(list(dens)))
    num, den = sympy.fraction(content)
    if has_coordinates(num):  # keep only the factors free of coordinates in the content
        k, factors = sympy.factor_list(num)
        num = k * sympy.Mul(*(b**e for b, e in factors if not has_coordinates(b)))
    if has_coordinates(den):
        k, factors = sympy.factor_list(den)
        den = k * sympy.Mul(*(b**e for b, e in factors if not has_coordinates(b)))
    content = num / den
    # scale the unknown as the leading coefficient does, except for the factors that may vanish
    # (a parameter such as mu1, or one only known to be >= 0): those stay in the unknown
    k, factors = sympy.factor_list(sympy.cancel(polys[0] / content))
    safe = k * sympy.Mul(*(b**e for b, e in factors if b.is_nonzero and not has_coordinates(b)))
    content = content * safe
    prim = [sympy.cancel(c / content) for c in polys]
    if prim[0].could_extract_minus_sign():
        content, prim = -content, [-c for c in prim]
    content = _simp(content.xreplace(back))
    return content, {k: _simp(c.xreplace(back)) for k, c in zip(keys, prim)}


def nonzero_entries(A) -> dict:
    """``{(i, j): entry}`` of the non-zero entries of a sympy matrix, in row-major order (from its
    sparse representation: indexing all ``N^2`` entries of a pencil of a few hundred blocks was
    most of the reduction's time)."""
    dok = A.todok()
    return {k: dok[k] for k in sorted(dok) if dok[k] != 0}


def _sparse_matrix(n: int, entries: dict) -> sympy.ImmutableMatrix:
    """The ``n x n`` immutable matrix with the given entries (zeros elsewhere), built by setting
    the few entries of a zero matrix: ``ImmutableMatrix(n, n, f)`` sympifies all ``n^2`` (for a
    pencil of a few hundred blocks that was most of the derivation's time)."""
    M = sympy.zeros(n, n)
    for (i, j), v in entries.items():
        M[i, j] = v
    return M.as_immutable()


def _equations_uncached(pencil: Pencil) -> FixedPointSystem:
    n = pencil.size
    spaces = pencil.spaces
    # structural support of L^{-1}: transitive closure of the block graph
    # (the non-zero entries by .todok(): entry-by-entry access to a sympy matrix costs O(n^2) calls)
    edges = set(nonzero_entries(pencil.L0))
    for _, E, F in pencil.gaussians.values():
        edges |= set(nonzero_entries(E)) | set(nonzero_entries(F))
    reachL = _closure(n, edges)
    allowed = {(i, j) for i in range(n) for j in range(n) if spaces[i] == spaces[j] and reachL[i][j]}

    # eta entries as linear forms in g: {(i, l): {(j, m): coef}}
    forms: dict[tuple, dict] = {}
    for atom, E, F in pencil.gaussians.values():
        v = atom.args[1]
        a_r, a_c = atom.rows.ratio, atom.cols.ratio
        for (A, B, alpha) in ((E, F, a_c), (F, E, a_r)):
            Anz = [(i, j, a) for (i, j), a in sorted(nonzero_entries(A).items())]
            Bnz = [(m, l, b) for (m, l), b in sorted(nonzero_entries(B).items())]
            for i, j, a in Anz:
                for m, l, b in Bnz:
                    if (j, m) not in allowed:
                        continue
                    f = forms.setdefault((i, l), {})
                    f[(j, m)] = f.get((j, m), 0) + v * alpha * a * b
    # normalise and merge proportional forms: each form is its content (a multiplier of
    # tau in eta) times its primitive part (the unknown), so nothing is divided by a parameter
    taus_def: list[dict] = []
    keys: dict[tuple, int] = {}
    Pent: dict[int, dict] = {}
    for (i, l) in sorted(forms):
        f = {k: _simp(c) for k, c in forms[(i, l)].items()}
        f = {k: c for k, c in f.items() if c != 0}
        if not f:
            continue
        lead, prim = _primitive(f)
        norm = tuple(sorted(prim.items()))
        if norm not in keys:
            keys[norm] = len(taus_def)
            taus_def.append(dict(norm))
        Pent.setdefault(keys[norm], {})[(i, l)] = lead
    Q = len(taus_def)
    taus = tuple(sympy.Symbol(f"tau_{q}") for q in range(Q))
    P = tuple(_sparse_matrix(n, Pent[q]) for q in range(Q))
    W = tuple(_sparse_matrix(n, taus_def[q]) for q in range(Q))

    # structural support of G = (L0 - eta)^{-1}
    medges = set(nonzero_entries(pencil.L0))
    for q in range(Q):
        medges |= set(Pent[q])
    R = _closure(n, medges)
    # q depends on p when some (j, m) of its form reaches some entry (a, b) of P_p: j -> a, b -> m
    # (all entries of all P_p tested at once per (j, m): the loops were cubic in the pencil)
    import numpy as np

    Rn = np.array(R, dtype=bool)
    entries = [(p, a, b) for p in range(Q) for (a, b) in Pent[p]]
    owner = np.array([e[0] for e in entries], dtype=int)
    rows = np.array([e[1] for e in entries], dtype=int)
    cols = np.array([e[2] for e in entries], dtype=int)
    deps: dict[int, set] = {}
    for q in range(Q):
        hit = np.zeros(len(entries), dtype=bool)
        for (j, m) in taus_def[q]:
            hit |= Rn[j, rows] & Rn[cols, m]
        if hit.any():
            deps[q] = {int(p) for p in np.unique(owner[hit])}
    comps = _tarjan(Q, deps)

    def affine(comp: list[int]) -> bool:
        for q in comp:
            for (j, m) in taus_def[q]:
                for p in comp:
                    for p2 in comp:
                        for (a, b) in Pent[p]:
                            for (a2, b2) in Pent[p2]:
                                if R[j][a] and R[b][a2] and R[b2][m]:
                                    return False
        return True

    linear = tuple(affine(c) for c in comps)
    params = sorted(pencil.free_symbols(), key=lambda s: s.name)
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise ValueError(f"two different parameters share a name: {names}")
    readout = pencil.readout
    return FixedPointSystem(pencil, tuple(params), pencil.L0, taus, P, W, readout, pencil.constant,
                            tuple(tuple(c) for c in comps), linear,
                            tuple(tuple(r) for r in R),
                            tuple(p.name for p in params if p.is_positive))


def equations(obj: Pencil | MatExpr | Trace, cache: bool = True) -> FixedPointSystem:
    """The reduced fixed-point system of a pencil (or of an expression / trace,
    which is linearised first).  Cached on disk, keyed by the expression."""
    if isinstance(obj, (MatExpr, Trace)):
        desc = describe(obj)
        if not cache:
            return _equations_uncached(linearize(obj, cache=False))
        return cached("fixedpoint", desc, lambda: _equations_uncached(linearize(obj)), code=("pencils",))
    if isinstance(obj, Pencil):
        return _equations_uncached(obj)
    raise ValueError("equations needs a Pencil, a matrix expression or a trace")
