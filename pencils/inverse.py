"""Entries of ``G = M^{-1}`` as a straight-line program, and the linear forms of ``G`` that
are the equations' right-hand sides (the first half of :mod:`pencils.reduce`).

``M = L0 - eta(tau)`` is block-diagonal by space (no block couples two spaces).  Its strongly
connected components are inverted symbolically by Gauss--Jordan elimination (each new entry a
symbol of the program, :class:`_Inverse`); the entries of ``G`` off the diagonal components
follow by block back-substitution.  A block whose entries follow a measure (``f(Sigma)`` on the
``d`` space, a profile on another space: :func:`pencils.expr.profile`) gives entries that are
functions of the measure's coordinates: its traces are means over the measure (:func:`_form`),
expanded for ``Sigma``'s spectrum (a few blocks) and kept as per-atom programs for the other
measures (:meth:`_Inverse.spectral_program`).

The numeric fingerprints of the reduction (a Schwartz--Zippel identity test at random points)
evaluate these programs in mpmath (:func:`evaluate`).
"""
from __future__ import annotations

import zlib
from collections import ChainMap

import mpmath
import sympy

from .expr import S_NU, SpectralMean, has_coordinates, mean_of, measures
from .freeprob import _tarjan, nonzero_entries
from .measures import _free

__all__ = ["MAX_SYMBOLIC_CORE", "FINGERPRINT_DPS", "evaluate"]

#: Diagonal cores of ``M`` larger than this are not inverted symbolically.
MAX_SYMBOLIC_CORE = 32
#: Digits of the numeric identity test.
FINGERPRINT_DPS = 40
#: The spectral measure of the fingerprints: atoms and weights (any fixed generic choice).
_FP_MEASURE = ((mpmath.mpf("0.3712"), mpmath.mpf("0.25")), (mpmath.mpf("1.2093"), mpmath.mpf("0.35")),
               (mpmath.mpf("2.8471"), mpmath.mpf("0.4")))


def _fp_atoms(mean) -> list:
    """The atoms of the fingerprint measure of ``mean``'s measure: ``(environment, weight)``.
    ``nu`` has :data:`_FP_MEASURE`; any other measure has three atoms whose coordinates take
    fixed generic values, derived from the coordinate's name (the same in every process)."""
    coords = sorted(mean.coordinates, key=lambda s: s.name)
    if all(c == S_NU for c in coords):
        return [({S_NU: s}, w) for s, w in _FP_MEASURE]
    out = []
    for k, (_, w) in enumerate(_FP_MEASURE):
        env = {}
        for c in coords:
            h = zlib.crc32(f"{c.name}:{k}".encode())
            env[c] = mpmath.mpf(h % 100003) / 100003 * 3 - mpmath.mpf("1.37")
        out.append((env, w))
    return out


class _Inverse:
    """Entries of ``G = M^{-1}`` as a straight-line program of symbols ``g``.

    ``M`` is a sympy matrix (entries in parameters and unknowns ``tau``).  ``entry(j, m)``
    returns a symbol whose definition (``self.defs``) is an expression in ``M``'s
    entries and earlier ``g`` symbols; zero entries return ``0``.
    """

    def __init__(self, M: sympy.Matrix, spaces: tuple):
        self.M = M
        n = M.shape[0]
        self.nz = {i: [k for k in range(n) if M[i, k] != 0] for i in range(n)}
        for i in range(n):
            for k in self.nz[i]:
                if spaces[i] != spaces[k]:
                    raise ValueError(f"M couples blocks {i} and {k} of different spaces")
        comps = _tarjan(n, {i: set(self.nz[i]) - {i} for i in range(n)})
        # _tarjan lists a component after those it depends on: reverse for upper-triangular order
        self.comp_of = {}
        self.comps = []
        for c in comps:
            self.comp_of.update({i: len(self.comps) for i in c})
            self.comps.append(tuple(c))
        self.reach = self._reach(n)
        self.defs: dict = {}
        self.order: list = []  # g symbols in creation order (dependencies first)
        self._g: dict = {}
        self._dinv: dict = {}

    def _reach(self, n):
        out = {i: {i} for i in range(n)}
        changed = True
        while changed:
            changed = False
            for i in range(n):
                new = set().union(*(out[k] for k in self.nz[i])) | out[i]
                if new != out[i]:
                    out[i] = new
                    changed = True
        return out

    def _diag_inverse(self, c: int) -> sympy.Matrix:
        if c not in self._dinv:
            idx = self.comps[c]
            if len(idx) > MAX_SYMBOLIC_CORE:
                raise ValueError(f"a diagonal core of {len(idx)} blocks is too large to invert symbolically")
            sub = self.M.extract(list(idx), list(idx))
            if len(idx) == 1:
                self._dinv[c] = sympy.Matrix([[1 / sub[0, 0]]])
            else:
                self._dinv[c] = self._gauss_jordan(c, sub)
        return self._dinv[c]

    def _gauss_jordan(self, c: int, A: sympy.Matrix) -> sympy.Matrix:
        """Inverse of a small diagonal core by Gauss-Jordan elimination in the natural pivot
        order, each new entry a symbol of the program.  (Closed-form cofactors over the
        determinant lose many digits where the traces are large -- the memorisation
        regime -- while elimination is as accurate as a numeric LU there.)"""
        k = A.shape[0]
        A, inv = sympy.Matrix(A), sympy.eye(k)
        count = [0]

        def name(e):
            if e.is_number or isinstance(e, sympy.Symbol):
                return e
            s = sympy.Symbol(f"e_{c}_{count[0]}_{len(self.order)}")
            count[0] += 1
            self.defs[s] = e
            self.order.append(s)
            return s

        for q in range(k):
            ip = name(1 / A[q, q])
            A[q, :] = (A[q, :] * ip).applyfunc(name)
            inv[q, :] = (inv[q, :] * ip).applyfunc(name)
            for r in range(k):
                if r != q and A[r, q] != 0:
                    f = A[r, q]
                    A[r, :] = (A[r, :] - f * A[q, :]).applyfunc(name)
                    inv[r, :] = (inv[r, :] - f * inv[q, :]).applyfunc(name)
        return inv

    def entry(self, j: int, m: int):
        if m not in self.reach[j]:
            return sympy.Integer(0)
        key = (j, m)
        if key in self._g:
            return self._g[key]
        I, J = self.comp_of[j], self.comp_of[m]
        idx = self.comps[I]
        if I == J:
            expr = self._diag_inverse(I)[idx.index(j), idx.index(m)]
        else:
            # G_{I,m} = -Dinv_I  sum_{k outside I} M_{I,k} G_{k,m}
            # (the diagonal block of G is Dinv_I itself: reuse its symbols)
            expr = -sum((self.entry(j, r) * self.M[r, k] * self.entry(k, m) for r in idx
                         for k in self.nz[r] if self.comp_of[k] != I), sympy.Integer(0))
        sym = sympy.Symbol(f"g_{j}_{m}")
        self.defs[sym] = expr
        self.order.append(sym)
        self._g[key] = sym
        return sym

    def is_spectral(self, g) -> bool:
        """Whether the ``g`` symbol depends on the coordinates of a measure (the spectral
        variable ``s`` of ``Sigma``, or the profile of another space)."""
        memo = self.__dict__.setdefault("_spec_memo", {})
        if not isinstance(g, sympy.Symbol) or g not in self.defs:
            return has_coordinates(g)
        if g not in memo:
            d = self.defs[g]
            memo[g] = has_coordinates(d) or any(self.is_spectral(h) for h in d.free_symbols if h in self.defs)
        return memo[g]

    def measure(self, g) -> str | None:
        """The measure a spectral ``g`` symbol follows (``None`` if it is not spectral)."""
        if not self.is_spectral(g):
            return None
        if not isinstance(g, sympy.Symbol) or g not in self.defs:
            return next(iter(measures(g)), None)
        memo = self.__dict__.setdefault("_measure_memo", {})
        if g not in memo:
            found = measures(self.defs[g])
            found |= {self.measure(h) for h in self._deps(g) if self.is_spectral(h)}
            if len(found) != 1:
                raise ValueError(f"a block of the pencil follows the measures {sorted(found)}: one per space")
            memo[g] = found.pop()
        return memo[g]

    def spectral_program(self, terms) -> sympy.Expr:
        """``E[sum_k w_k g_k]`` with the spectral ``g`` symbols kept as a per-atom program
        (bindings ``x_g...``, :class:`~pencils.expr.SpectralMean`); non-spectral symbols stay
        free (they are computed once, outside the mean)."""
        need = {g for _, g in terms if isinstance(g, sympy.Symbol) and g in self.defs}
        spec = [h for h in self.closure(need) if self.is_spectral(h)]
        bound = {h: sympy.Symbol(f"x_{h.name}") for h in spec}
        lets = tuple((bound[h], self.defs[h].xreplace(bound)) for h in spec)
        body = sum((w * sympy.sympify(g).xreplace(bound) for w, g in terms), sympy.Integer(0))
        return mean_of(body, lets)

    def spectral_expand(self, expr):
        """``expr`` with every spectral ``g`` symbol replaced by its definition (they are
        functions of ``s``: they only exist inside a spectral mean)."""
        memo = self.__dict__.setdefault("_expand_memo", {})

        def full(s):
            if s not in memo:
                d = self.defs[s]
                memo[s] = d.xreplace({h: full(h) for h in d.free_symbols
                                      if h in self.defs and self.is_spectral(h)})
            return memo[s]

        expr = sympy.sympify(expr)
        return expr.xreplace({h: full(h) for h in expr.free_symbols if h in self.defs and self.is_spectral(h)})

    def closure(self, syms: set) -> list:
        """The ``g`` symbols ``syms`` depend on (themselves included), dependencies first."""
        out, todo = set(), list(syms)
        while todo:
            s = todo.pop()
            if s not in out:
                out.add(s)
                todo.extend(self._deps(s))
        pos = self.__dict__.setdefault("_pos", {})
        if len(pos) != len(self.order):
            pos.update({g: i for i, g in enumerate(self.order)})
        return sorted(out, key=pos.__getitem__)

    def _deps(self, g) -> set:
        """The ``g`` symbols the definition of ``g`` reads (memoised: definitions never change)."""
        memo = self.__dict__.setdefault("_deps_memo", {})
        if g not in memo:
            memo[g] = self.defs[g].free_symbols & self.defs.keys()
        return memo[g]


def evaluate(expr, env: dict, memo: dict):
    """``expr`` (rational operations, integer/half powers) in mpmath at the values ``env``.
    ``memo``: a fresh dict per call (the values of sub-expressions, keyed by identity: a lookup by
    equality compares equal sub-expressions node by node every time)."""
    hit = memo.get(id(expr))
    if hit is not None:
        return hit
    if expr.is_Symbol:
        v = env[expr]
    elif expr.is_Integer:
        v = mpmath.mpf(int(expr))
    elif expr.is_Rational:
        v = mpmath.mpf(int(expr.p)) / int(expr.q)
    elif expr.is_Add:
        v = mpmath.fsum(evaluate(a, env, memo) for a in expr.args)
    elif expr.is_Mul:
        v = mpmath.fprod(evaluate(a, env, memo) for a in expr.args)
    elif expr.is_Pow:
        b, e = evaluate(expr.base, env, memo), expr.exp
        v = b ** int(e) if e.is_Integer else b ** evaluate(e, env, memo)
    elif isinstance(expr, SpectralMean):  # a fixed random measure: the same for every expression
        v = _mean_value(expr, env)
    elif expr.is_number:
        v = mpmath.mpf(sympy.N(expr, FINGERPRINT_DPS))
    else:
        raise ValueError(f"cannot evaluate {type(expr).__name__} in a fingerprint")
    memo[id(expr)] = v
    return v


#: ``(id of the canonical mean, precision, values of its free symbols) -> value``: the
#: fingerprints of a reduction evaluate the same means (per-atom programs) at the same points over
#: and over.
_MEAN_VALUES: dict = {}
#: ``(id of the canonical binding, precision, values of its symbols) -> value`` (:func:`_at_atom`).
_LET_VALUES: dict = {}
#: ``expression -> the first equal expression met`` (it keeps the canonical objects, and so their
#: ids, alive), and ``id(expression) -> (expression, canonical, its free symbols sorted by name)``:
#: a memo keyed by an expression compares a rebuilt twin with the stored key node by node on every
#: lookup (more than half of a large reduction's time); keyed by the id of the canonical object,
#: each object is compared once.
_CANONICAL: dict = {}
_BY_ID: dict = {}
_MEMO_MAX = 100_000


def _canonical(e) -> tuple:
    """``(canonical object, sorted free symbols)`` of ``e`` (see :data:`_CANONICAL`)."""
    hit = _BY_ID.get(id(e))
    if hit is not None and hit[0] is e:
        return hit[1], hit[2]
    if len(_BY_ID) >= _MEMO_MAX or len(_CANONICAL) >= _MEMO_MAX:  # all together: the ids must stay valid
        _BY_ID.clear(), _CANONICAL.clear(), _MEAN_VALUES.clear(), _LET_VALUES.clear()
    canon = _CANONICAL.setdefault(e, e)
    symbols = tuple(sorted(_free(e), key=lambda x: x.name))
    _BY_ID[id(e)] = (e, canon, symbols)
    return canon, symbols


def _mean_value(mean: SpectralMean, env):
    """``mean`` on the fingerprint measure (:func:`_fp_atoms`) at the values ``env``, memoised."""
    canon, free = _canonical(mean)
    key = (id(canon), mpmath.mp.prec, tuple(env[s] for s in free))
    hit = _MEAN_VALUES.get(key)
    if hit is not None and hit[0] is canon:  # (the entry holds its object: an id is never reused under it)
        return hit[1]
    # (a scope per atom over env: a copy of env, thousands of symbols late in a reduction, per atom
    # and mean was most of the time of the large reductions)
    v = mpmath.fsum(w * _at_atom(mean, ChainMap(dict(at), env)) for at, w in _fp_atoms(mean))
    _MEAN_VALUES[key] = (canon, v)
    return v


def _at_atom(mean: SpectralMean, env):
    """The argument of ``mean`` at one atom (``env`` holds its coordinates): the bindings in
    order, then the body.  A binding's value is memoised by the values of its symbols: the
    derivatives of a mean repeat its bindings, and the means of a reduction share many."""
    for sym, e in mean.lets:
        canon, free = _canonical(e)
        key = (id(canon), mpmath.mp.prec, tuple(env[x] for x in free))
        hit = _LET_VALUES.get(key)
        if hit is not None and hit[0] is canon:
            env[sym] = hit[1]
        else:
            env[sym] = evaluate(e, env, {})
            _LET_VALUES[key] = (canon, env[sym])
    return evaluate(mean.args[0], env, {})


def _form(W, inv: _Inverse) -> sympy.Expr:
    """``sum_ij W_ij g_ij``; the entries that depend on the coordinates of a measure (the
    spectrum of ``Sigma`` on the ``d`` space of a structured model, a profile on another space)
    are averaged over it: ``E_nu[sum W_ij g_ij(s)]``, one mean per measure."""
    plain, spectral = sympy.Integer(0), {}
    for (i, j), w in nonzero_entries(W).items():
        g = inv.entry(i, j)
        if inv.is_spectral(g) or has_coordinates(w):
            key = inv.measure(g) or measures(w).pop()
            spectral.setdefault(key, []).append((w, g))
        else:
            plain += w * g
    means = sympy.Integer(0)
    for key, terms in sorted(spectral.items()):
        if key == "nu":  # Sigma's spectrum: the expanded expression (small: a few blocks on d)
            means += SpectralMean(sum((w * inv.spectral_expand(g) for w, g in terms), sympy.Integer(0)))
        else:  # a profile's measure: the per-atom inverse stays a program (it can be large)
            means += inv.spectral_program(terms)
    return plain + means


def _spectral_constant(c) -> sympy.Expr:
    """A read-out constant with bare coordinates (a trace of ``f(Sigma)`` or of a profile) is
    its mean."""
    c = sympy.sympify(c)
    if not has_coordinates(c):
        return c
    bare = c.xreplace({m: sympy.Symbol(f"__mean{k}") for k, m in enumerate(c.atoms(SpectralMean))})
    if not has_coordinates(bare):
        return c
    groups: dict = {}  # a constant over several measures: one mean per measure, term by term
    for t in sympy.Add.make_args(c):
        key = tuple(sorted(measures(t.xreplace({m: 0 for m in t.atoms(SpectralMean)}))))
        groups[key] = groups.get(key, sympy.Integer(0)) + t
    if len(groups) == 1:
        return SpectralMean(c)
    return sum((SpectralMean(e) for _, e in sorted(groups.items())), sympy.Integer(0))


