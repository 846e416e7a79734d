"""Symbolic reduction of a block fixed-point system to its irreducible nonlinear core.

The raw system of :mod:`pencils.freeprob` has one unknown per distinct linear form of
``G = (L0 - sum_q tau_q P_q)^{-1}``: tens of unknowns for a learning curve, most of
them linear read-outs, copies and products of small resolvents.  This step eliminates
symbolically everything that can be eliminated:

1. **Space split.**  ``L0`` and every ``P_q`` only couple blocks of the same space (the
   identity ``⊗ I`` cannot connect spaces of different dimensions), so ``M(tau) = L0 -
   eta(tau)`` is block-diagonal by space and ``G`` is inverted space by space.
2. **Block-triangular inversion.**  Inside a space, the blocks are ordered by the
   strongly connected components of the graph of ``M``; ``M`` is then block
   upper-triangular and ``G`` follows by back-substitution (Schur complements),
   ``G_II = M_II^{-1}``, ``G_IJ = -M_II^{-1} sum_K M_IK G_KJ``.  Only the small diagonal
   cores ``M_II`` are inverted symbolically, and only the entries of ``G`` that some
   linear form reads are produced.
3. **Components.**  The unknowns are processed component by component (the strongly
   connected components of :class:`pencils.freeprob.FixedPointSystem`, in dependency
   order).  A component whose own unknowns enter affinely is solved explicitly,
   ``u = (I - A)^{-1} b`` (``A``, ``b`` rational in the earlier unknowns): it becomes a
   *read-out*.  A component that is nonlinear in its own unknowns is a *core stage*:
   its map ``u = f(u; earlier)`` is kept explicit (with its Jacobian) for Newton.
4. **Copies.**  A component whose canonical equations equal an earlier one's (its
   unknowns renamed in order) is that component: its unknowns are replaced by the
   earlier ones.  A read-out that is ``0`` or another unknown is substituted away.
   Several systems (for example the test and the train error of one model, which read
   the same resolvent) are reduced together and share their core.

The result, :class:`ReducedSystem`, is a short straight-line program: core stages
(Newton on a handful of unknowns) and explicit assignments ending in the requested
normalised traces.  It is compiled by :mod:`numerics.reduced` and printed by
:meth:`ReducedSystem.latex`.

>>> import sympy
>>> from pencils.expr import Space, D, gaussian, inverse, trace
>>> from pencils.freeprob import equations
>>> g, lam = sympy.symbols("gamma lam", positive=True)
>>> X = gaussian("X", Space("n", 1 / g), D)
>>> R = reduce_systems({"mp": equations(trace(inverse(g * X.T @ X + lam)))})
>>> R.sizes["core"], R.sizes["raw_unknowns"]["mp"]
(1, 2)
"""
from __future__ import annotations

import contextlib
import gc
import itertools
import random
from dataclasses import dataclass, field

import mpmath
import sympy

from .cache import cached
from .expr import has_coordinates, measure_of
from .measures import _free, partial, replace_exact
from .freeprob import FixedPointSystem
from .inverse import FINGERPRINT_DPS, _form, _Inverse, _spectral_constant
from .inverse import evaluate as _evaluate
from .latex import block_meaning as _meaning
from .latex import MAX_AUTO_STEPS, eliminate, program_latex
from .linearize import describe

__all__ = ["ReducedSystem", "CoreStage", "reduce_systems"]

#: Random points of the numeric identity test that merges copies.
FINGERPRINT_POINTS = 2
#: Core stages up to this size are compared with earlier ones under every permutation of the unknowns.
MAX_PERMUTED_CORE = 6
#: Affine components with more unknowns than this become *linear core stages* (solved numerically:
#: one Newton step is the exact solve) instead of being eliminated symbolically.  The elimination
#: emits about ``k^3/3`` steps for the nearly dense matrices of the profile pencils: 165 000 at
#: ``k = 132`` (finite ``m``, two spikes, :mod:`derivations.conditional`), more than a compiled
#: kernel can hold; a fill-reducing pivot order does not help (28 500 against 29 300 steps at
#: ``k = 62``, measured).  Every smaller system keeps its explicit program.
LINEAR_STAGE_MIN = 100
@dataclass(frozen=True)
class CoreStage:
    """Nonlinear unknowns ``u`` solving ``u = f(u; params, earlier symbols)``.

    ``meaning[k]`` says which normalised trace ``u_k`` is (the linear form of ``G``).
    ``linear``: an affine component too large to eliminate (:data:`LINEAR_STAGE_MIN`): the
    solvers start from ``f(0) = b`` and take Newton steps only (the first is exact), with no
    damped iteration, attractivity test or continuation.
    """

    unknowns: tuple
    program: tuple  # local steps (symbol, expr): the component's own part of G
    maps: tuple  # f_i in unknowns, locals and earlier symbols
    jac_program: tuple  # forward-mode derivatives of the locals
    jacobian: tuple  # d f_i / d u_j, row-major, in the symbols above
    meaning: tuple
    eliminated: tuple = ()  # unknowns made explicit: steps of ``program``
    linear: bool = False  # u = A u + b (``maps`` affine, ``jacobian`` = A): no branch to select

    def explicit_maps(self) -> tuple:
        """``f_i`` with the local steps substituted: rational in the unknowns."""
        env: dict = {}
        for sym, expr in self.program:
            env[sym] = expr.xreplace(env)
        return tuple(f.xreplace(env) for f in self.maps)


@dataclass(frozen=True)
class ReducedSystem:
    """A reduced system: core stages and explicit assignments (see module docstring).

    ``steps`` is the program: ``("core", CoreStage)`` or ``("let", symbol, expr)``,
    in order; ``outputs`` maps each requested quantity to its final expression.
    ``sizes`` gives the raw and reduced sizes (``raw_unknowns``, ``raw_blocks``,
    ``core``, ``readouts``).
    """

    params: tuple
    steps: tuple
    outputs: dict
    sizes: dict
    meanings: dict = field(default_factory=dict)

    @property
    def core_unknowns(self) -> tuple:
        return tuple(u for kind, *rest in self.steps if kind == "core" for u in rest[0].unknowns)

    @property
    def segments(self) -> tuple:
        """The program in runs: ``("let", ((symbol, expr), ...))`` for consecutive ``let``
        steps and ``("core", CoreStage)``: the unit of the generated functions."""
        out: list = []
        for kind, *rest in self.steps:
            if kind != "let":
                out.append(("core", rest[0]))
            elif out and out[-1][0] == "let":
                out[-1] = ("let", out[-1][1] + (tuple(rest),))
            else:
                out.append(("let", (tuple(rest),)))
        return tuple(out)

    @property
    def readout_symbols(self) -> tuple:
        return tuple(rest[0] for kind, *rest in self.steps if kind == "let")

    def latex(self, full: bool = False, program: bool = False, relations: dict | None = None,
              eliminated: bool | None = None) -> str:
        """The reduced equations.

        Default: the eliminated form (:mod:`pencils.latex`): the core fixed points in the
        core unknowns only, each unknown named by the normalised trace it is, then the
        read-outs; ``relations`` (``{parameter: expression}``) are identities between
        parameters substituted there.  By default only for cores of at most
        ``pencils.latex.MAX_AUTO_STEPS`` local steps (``eliminated=True`` forces it, at a cost
        of minutes for the DSM cores; cached); otherwise, or where elimination gives up, the
        program form.
        ``program=True``: the straight-line program -- the core's local steps and maps, and
        the list of read-outs with the normalised trace each one is; ``full=True`` adds every
        straight-line step and the outputs.
        """
        small = sum(len(st.program) for kind, st, *_ in self.steps if kind == "core") <= MAX_AUTO_STEPS
        if not (full or program) and (eliminated or (eliminated is None and small)):
            try:
                return eliminate(self, relations).latex()
            except ValueError:
                pass
        return program_latex(self, full)

    def __repr__(self) -> str:
        s = self.sizes
        return (f"ReducedSystem(core={s['core']}, readouts={s['readouts']}, outputs={list(self.outputs)}; "
                f"raw: {s['raw_unknowns']} unknowns on {s['raw_blocks']} blocks)")


# -- inversion of M(tau), space by space and block-triangularly ---------------------------


def _eliminate_explicit(us: list, program: tuple, maps: tuple) -> tuple:
    """Make explicit every unknown whose equation does not involve itself.

    ``u_j = f_j(others)`` becomes a step of the local program (placed after the steps it
    needs, before those that need it), and ``u_j`` leaves the Newton unknowns.  Repeated
    while possible: a rectangular Marchenko-Pastur pair ``(u_n, u_d)`` becomes one
    quadratic equation in one unknown.
    """
    us, program, maps = list(us), list(program), list(maps)
    while len(us) > 1:
        deps = {}  # symbol -> unknowns it depends on (through the program)
        for y, e in program:
            deps[y] = set().union(*([{s} if s in us else deps.get(s, set()) for s in e.free_symbols] or [set()]))

        def uses(expr):
            return set().union(*([{s} if s in us else deps.get(s, set()) for s in expr.free_symbols] or [set()]))

        pick = next((j for j, u in enumerate(us) if u not in uses(maps[j])), None)
        if pick is None:
            break
        u, f = us.pop(pick), maps.pop(pick)
        need = set()
        todo = [s for s in f.free_symbols]
        while todo:  # steps f reads
            s = todo.pop()
            if s in deps and s not in need:
                need.add(s)
                todo.extend(dict(program)[s].free_symbols)
        before = [st for st in program if st[0] in need]
        after = [st for st in program if st[0] not in need]
        program = before + [(u, f)] + after
    return us, tuple(program), tuple(maps)


# -- the reduction -------------------------------------------------------------------------


class _Reducer:
    """Builds the program of :class:`ReducedSystem` (one or several systems)."""

    def __init__(self):
        self.steps: list = []
        self.canon: dict = {}  # canonical component -> its reduced unknowns
        self.cores: list = []  # (fingerprint of the maps, reduced unknowns) per core stage
        self.count = {"u": 0, "v": 0, "w": 0}
        self.meanings: dict = {}
        self.root_map: dict = {}
        self.label = ""
        # Fingerprints: every symbol's value at FINGERPRINT_POINTS random points (exact
        # rational arithmetic is too slow; 40 digits make a false match impossible in practice).
        self._rng = random.Random(20251130)
        self.point: list = [{} for _ in range(FINGERPRINT_POINTS)]
        self.by_print: dict = {}  # fingerprint -> symbol holding that value

    # -- numeric fingerprints (Schwartz-Zippel identity test) -------------------------
    def _value(self, expr, k: int):
        env = self.point[k]
        for s in [s for s in _free(expr) if s not in env]:  # parameters and unknowns: random values
            env[s] = mpmath.mpf(self._rng.randint(10**6, 2 * 10**6)) / 10**6
        with mpmath.workdps(FINGERPRINT_DPS):
            return _evaluate(expr, env, {})

    def fingerprint(self, expr, values: list | None = None) -> tuple | None:
        """Values of ``expr`` at the random points, rounded; ``None`` if not finite.  The values
        themselves are appended to ``values`` (when given) as they are computed."""
        out = []
        for k in range(FINGERPRINT_POINTS):
            try:
                v = self._value(expr, k)
            except (ZeroDivisionError, ValueError):
                return None
            if values is not None:
                values.append(v)
            if not mpmath.isfinite(v):
                return None
            out.append(mpmath.nstr(v, FINGERPRINT_DPS - 10) if abs(v) > mpmath.mpf(10) ** -(FINGERPRINT_DPS - 10)
                       else "0")
        return tuple(out)

    def _new(self, prefix: str) -> sympy.Symbol:
        s = sympy.Symbol(f"{prefix}_{self.count[prefix]}")
        self.count[prefix] += 1
        return s

    def _let(self, prefix: str, expr):
        """A step ``symbol = expr``.  Numbers, plain symbols, zeros and values already held
        by an earlier symbol (same fingerprint: a copy) are substituted instead."""
        if expr.is_number or isinstance(expr, sympy.Symbol):
            return expr
        values: list = []
        fp = self.fingerprint(expr, values)
        if fp is not None:
            if all(v == "0" for v in fp):
                return sympy.Integer(0)
            if fp in self.by_print:
                return self.by_print[fp]
        sym = self._new(prefix)
        self.steps.append(("let", sym, expr))
        for k in range(FINGERPRINT_POINTS):
            self.point[k][sym] = values[k] if k < len(values) else self._value(expr, k)
        if fp is not None:
            self.by_print[fp] = sym
        return sym

    def roots(self, systems) -> None:
        """Square roots of parameters become symbols ``r_k`` (first steps of the program):
        the algebra below is then rational, which keeps ``cancel`` fast."""
        found = set()
        for S in systems:
            for obj in (S.L0, *S.P, *S.W, S.readout, sympy.sympify(S.constant)):
                found |= {e.base for e in obj.atoms(sympy.Pow)
                          if abs(e.exp) == sympy.S.Half and not has_coordinates(e.base)}
        self.root_map = {}
        for k, base in enumerate(sorted(found, key=sympy.default_sort_key)):
            sym = sympy.Symbol(f"r_{k}", positive=True)
            self.root_map[sympy.sqrt(base)] = sym
            self.root_map[1 / sympy.sqrt(base)] = 1 / sym
            self.steps.append(("let", sym, sympy.sqrt(base)))

    def _plain(self, obj):
        if not self.root_map:
            return obj
        if isinstance(obj, sympy.MatrixBase):
            return obj.applyfunc(lambda e: replace_exact(e, self.root_map))
        return replace_exact(obj, self.root_map)

    def system(self, S: FixedPointSystem, label: str = "") -> sympy.Expr:
        """Add the steps of ``S`` (named ``label``); return its read-out in reduced symbols."""
        self.label = label
        inv = _Inverse(self._plain(sympy.Matrix(S.M())), S.pencil.spaces)
        value: dict = {}    # tau -> reduced symbol or number
        emitted: dict = {}  # g symbol -> its final reduced symbol or number

        def subst(expr):
            free = _free(expr)
            rep = {s: value[s] for s in free if s in value}
            rep.update({s: emitted[s] for s in free if s in emitted})
            return replace_exact(expr, rep)

        def emit(g):
            if g not in emitted:
                for h in sorted(inv.defs[g].free_symbols & inv.defs.keys(), key=inv.order.index):
                    emit(h)
                emitted[g] = self._let("w", subst(inv.defs[g]))
            return emitted[g]

        for comp, linear in zip(S.components, S.linear):
            own = [S.taus[q] for q in comp]
            forms = [self._plain(_form(S.W[q], inv)) for q in comp]
            gs = inv.closure(set().union(*(f.free_symbols for f in forms)) & inv.defs.keys())
            dep = [g for g in gs if self._depends(inv, g, set(own))]
            for g in gs:
                if g not in dep:
                    emit(g)
            if linear:
                canon = {t: sympy.Symbol(f"c__{k}") for k, t in enumerate(own)}
                canon.update({g: sympy.Symbol(f"c__g{k}") for k, g in enumerate(dep)})
                key = (True, tuple(replace_exact(subst(inv.defs[g]), canon) for g in dep),
                       tuple(replace_exact(subst(f), canon) for f in forms))
            else:
                stage = self._core_stage(comp, own, forms, dep, inv, subst)
                key = (False, self._stage_print(*stage, len(own)))
                if None in key[1]:  # no fingerprint: never merged
                    key = (False, len(self.canon))
                same = self._same_core(stage, len(own))
                if same is not None:
                    value.update(zip(own, same))
                    continue
            if key in self.canon:
                value.update(zip(own, self.canon[key]))
                continue
            if linear:
                reps = self._linear(S, comp, own, forms, dep, inv, subst)
            else:
                reps = self._core(S, comp, stage)
                self.cores.append((key[1], reps))
            self.canon[key] = reps
            value.update(zip(own, reps))
        ro = self._plain(_spectral_constant(S.constant) + _form(S.readout, inv))
        for g in inv.closure(ro.free_symbols & inv.defs.keys()):
            emit(g)
        return subst(ro)

    @staticmethod
    def _depends(inv: _Inverse, g, own: set) -> bool:
        memo = inv.__dict__.setdefault("_dep_memo", {})
        key = (g, frozenset(own))
        if key not in memo:
            d = inv.defs[g]
            memo[key] = bool(d.free_symbols & own) or any(
                _Reducer._depends(inv, h, own) for h in d.free_symbols if h in inv.defs)
        return memo[key]

    @staticmethod
    def _core_stage(comp, own, forms, dep, inv, subst) -> tuple:
        """The component in canonical symbols: unknowns ``c__k``, locals ``c__g<k>``
        (``(program, maps)``; also its identity key, through :meth:`_stage_print`)."""
        local = {t: sympy.Symbol(f"c__{k}") for k, t in enumerate(own)}
        local.update({g: sympy.Symbol(f"c__g{k}") for k, g in enumerate(dep)})
        program = tuple((local[g], replace_exact(subst(inv.defs[g]), local)) for g in dep)
        return program, tuple(replace_exact(subst(f), local) for f in forms)

    def _stage_print(self, program, maps, n_own: int, perm: tuple | None = None) -> tuple:
        """Fingerprints of the maps at fixed values of the unknowns (``c__j`` gets value number
        ``perm[j]``); the map of ``c__j`` lands at position ``perm[j]``."""
        perm = tuple(range(n_own)) if perm is None else perm
        local = [sympy.Symbol(f"c__{j}") for j in range(n_own)] + [s for s, _ in program]
        try:
            for k in range(FINGERPRINT_POINTS):
                for j in range(n_own):  # the same values of the unknowns for every stage
                    self.point[k][local[j]] = mpmath.mpf(7 + perm[j] + k) / 10
                for sym, expr in program:
                    self.point[k][sym] = self._value(expr, k)
            out = [None] * n_own
            for j, f in enumerate(maps):
                out[perm[j]] = self.fingerprint(f)
            return tuple(out)
        except (ZeroDivisionError, ValueError):
            return (None,) * n_own
        finally:
            for env in self.point:
                for s in local:
                    env.pop(s, None)

    def _same_core(self, stage, n_own: int):
        """The unknowns of an earlier core stage whose equations are this one's up to a
        renaming (a permutation) of the unknowns, in this stage's order; ``None`` if none.

        Stage ``B`` is stage ``A`` with ``b_j = a_{perm[j]}`` when ``f^B_j(b) = f^A_{perm[j]}(a)``
        at the fingerprint points; the unknowns of the two stages need not come in the same
        order (the test and the train pencils, or two copies of a resolvent, list their
        blocks differently)."""
        earlier = [(fp, reps) for fp, reps in self.cores if len(fp) == n_own and None not in fp]
        if not earlier or n_own > MAX_PERMUTED_CORE:
            return None
        for perm in itertools.permutations(range(n_own)):
            fp = self._stage_print(*stage, n_own, perm)
            if None in fp:
                return None
            for old, reps in earlier:
                if fp == old:
                    return [reps[perm[j]] for j in range(n_own)]
        return None

    def _core(self, S, comp, stage):
        program, maps = stage
        us = [self._new("u") for _ in comp]
        stage_no = sum(1 for s in self.steps if s[0] == "core")
        rename = {sympy.Symbol(f"c__{k}"): u for k, u in enumerate(us)}
        rename.update({sym: sympy.Symbol(f"y{stage_no}_{k}") for k, (sym, _) in enumerate(program)})
        program = tuple((rename[s], replace_exact(e, rename)) for s, e in program)
        maps = tuple(replace_exact(f, rename) for f in maps)
        all_us = list(us)
        us, program, maps = _eliminate_explicit(us, program, maps)
        eliminated = tuple(u for u in all_us if u not in us)
        # forward-mode derivatives along the local program (compact, unlike d/du of the expansion)
        dy: dict = {}
        jac_program = []
        for k, u in enumerate(us):
            for y, e in program:
                der = sympy.Add(partial(e, u), *(partial(e, z) * dy[(z, k)] for z in _free(e) if (z, k) in dy))
                if der != 0:
                    dy[(y, k)] = sympy.Symbol(f"d{y.name}_{k}")
                    jac_program.append((dy[(y, k)], der))
        jac = tuple(sympy.Add(partial(f, u), *(partial(f, z) * dy[(z, k)] for z in _free(f) if (z, k) in dy))
                    for f in maps for k, u in enumerate(us))
        meaning = dict(zip(all_us, (_meaning(S, q, self.label) for q in comp)))
        self.steps.append(("core", CoreStage(tuple(us), program, maps, tuple(jac_program), jac,
                                             tuple(meaning[u] for u in us), eliminated)))
        self.meanings.update(meaning)
        for k in range(FINGERPRINT_POINTS):  # later fingerprints need values of the new symbols
            env = self.point[k]
            for u in us:
                env[u] = mpmath.mpf(self._rng.randint(10**6, 2 * 10**6)) / 10**6
            for y, e in program:  # (the eliminated unknowns are program steps)
                env[y] = self._value(e, k)
        return all_us

    def _linear(self, S, comp, own, forms, dep, inv, subst):
        """Affine component ``tau = A tau + b``: ``b`` and ``A`` by forward differentiation
        of the straight-line program at ``tau = 0``, then ``tau = (I - A)^{-1} b``."""
        zero = {t: sympy.Integer(0) for t in own}
        g0: dict = {}
        dg: dict = {}  # (g, k) -> derivative at tau = 0
        for g in dep:
            d = subst(inv.defs[g])
            free = _free(d)
            at0 = {**zero, **{h: g0[h] for h in free if h in g0}}
            g0[g] = self._let("w", replace_exact(d, at0))
            for k, t in enumerate(own):  # (the partial derivatives are memoised: computed once for all k)
                der = sympy.Add(partial(d, t), *(partial(d, h) * dg[(h, k)] for h in free if (h, k) in dg))
                der = replace_exact(der, at0)
                if der != 0:
                    dg[(g, k)] = self._let("w", der)
        b, A = [], []
        for f in forms:
            fs = subst(f)
            b.append(replace_exact(fs, {**zero, **g0}))
            free = _free(fs)
            A.append([sympy.Add(partial(fs, t), *(partial(fs, g) * dg[(g, k)] for g in free if (g, k) in dg))
                      for k, t in enumerate(own)])
            A[-1] = [replace_exact(a, {**zero, **g0}) for a in A[-1]]
        if len(own) > LINEAR_STAGE_MIN:
            return self._linear_stage(S, comp, A, b)
        if len(own) == 1:
            sols = [b[0] / (1 - A[0][0])]
        else:
            Am = sympy.Matrix([[self._let("w", a) for a in row] for row in A])
            bm = sympy.Matrix([self._let("w", x) for x in b])
            sols = self._solve_linear(sympy.eye(len(own)) - Am, bm)
        reps = []
        for sol, q in zip(sols, comp):
            rep = self._let("v", sol)
            if isinstance(rep, sympy.Symbol) and rep.name.startswith("v_"):
                self.meanings[rep] = _meaning(S, q, self.label)
            reps.append(rep)
        return reps


    def _linear_stage(self, S, comp, A, b) -> list:
        """``tau = A tau + b`` as a linear core stage (:data:`LINEAR_STAGE_MIN`): the entries of
        ``A`` and ``b`` are steps of the program, the stage's maps ``b_i + sum_j A_ij u_j``.  The
        fingerprints of the unknowns are the solution's values (as the explicit read-outs' would
        be), so later copies and zeros are found as before."""
        us = [self._new("u") for _ in comp]
        Am = [[self._let("w", a) for a in row] for row in A]
        bm = [self._let("w", x) for x in b]
        maps = tuple(sympy.Add(bi, *(a * u for a, u in zip(row, us) if a != 0)) for bi, row in zip(bm, Am))
        meaning = dict(zip(us, (_meaning(S, q, self.label) for q in comp)))
        self.steps.append(("core", CoreStage(tuple(us), (), maps, (), tuple(a for row in Am for a in row),
                                             tuple(meaning[u] for u in us), linear=True)))
        self.meanings.update(meaning)
        with mpmath.workdps(FINGERPRINT_DPS):
            for k in range(FINGERPRINT_POINTS):
                M = mpmath.matrix([[int(i == j) - self._value(a, k) for j, a in enumerate(row)]
                                   for i, row in enumerate(Am)])
                x = mpmath.lu_solve(M, mpmath.matrix([self._value(v, k) for v in bm]))
                self.point[k].update(zip(us, x))
        return us

    def _solve_linear(self, M, b) -> list:
        """``M^{-1} b`` by Gauss elimination in the natural pivot order, every new entry a step of
        the program (a closed-form solve grows exponentially with the size of ``M``)."""
        M, b, k = sympy.Matrix(M), sympy.Matrix(b), M.shape[0]
        if k <= 4:  # small: the closed form, as the smaller systems always had
            return list(M.LUsolve(b))
        for q in range(k):
            ip = self._let("w", 1 / M[q, q])
            for r in range(q + 1, k):
                if M[r, q] != 0:
                    f = self._let("w", M[r, q] * ip)
                    for c in range(q + 1, k):
                        if M[q, c] != 0:
                            M[r, c] = self._let("w", M[r, c] - f * M[q, c])
                    b[r] = self._let("w", b[r] - f * b[q])
        x = [sympy.Integer(0)] * k
        for q in reversed(range(k)):
            x[q] = self._let("w", (b[q] - sum((M[q, c] * x[c] for c in range(q + 1, k)), sympy.Integer(0))) / M[q, q])
        return x


@contextlib.contextmanager
def _no_cycle_collection():
    """Python's cycle collector off for the duration: a reduction allocates millions of sympy
    nodes (acyclic, freed by reference counting) and each full collection walks all of them,
    a third of a large derivation's time when it was on."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _reduce_uncached(systems: dict) -> ReducedSystem:
    with _no_cycle_collection():
        return _reduce_now(systems)


def _reduce_now(systems: dict) -> ReducedSystem:
    red = _Reducer()
    red.roots(systems.values())
    outputs = {label: red.system(S, label) for label, S in systems.items()}
    params = sorted((p for p in set().union(*(set(S.params) for S in systems.values())) if measure_of(p) is None),
                    key=lambda s: s.name)
    sizes = dict(raw_unknowns={k: S.n_unknowns for k, S in systems.items()},
                 raw_blocks={k: S.size for k, S in systems.items()},
                 core=sum(len(s[1].unknowns) for s in red.steps if s[0] == "core"),
                 readouts=red.count["v"], steps=len(red.steps))
    return ReducedSystem(tuple(params), tuple(red.steps), outputs, sizes, red.meanings)


def reduce_systems(systems: dict, cache: bool = True) -> ReducedSystem:
    """Reduce ``{name: FixedPointSystem}`` jointly (shared cores); disk-cached."""
    if not systems:
        raise ValueError("reduce_systems needs at least one system")
    for name, S in systems.items():
        if not isinstance(S, FixedPointSystem):
            raise ValueError(f"{name!r} is not a FixedPointSystem")
        if S.readout is None:
            raise ValueError(f"{name!r} has no trace read-out to reduce to")
    if not cache:
        return _reduce_uncached(systems)
    desc = describe(tuple((k, S.L0, S.P, S.W, S.readout, S.constant, S.components, S.linear)
                          for k, S in systems.items()))
    return cached("reduced", desc, lambda: _reduce_uncached(systems), code=("pencils",))
