"""The reduced equations in eliminated form: what a paper prints.

:class:`pencils.reduce.ReducedSystem` is a straight-line program (core stages with their
local steps, then explicit read-outs) -- the form the solvers compile.  For a reader the
same equations are written here in the core unknowns only:

1. **Elimination.**  Every local step of a core stage and every read-out step is
   substituted and cancelled to lowest terms as it is formed (so nothing grows past what
   the equations are).  The core equations ``u = f(u)`` and the outputs become rational
   functions of the Newton unknowns and the parameters.
2. **Relations.**  The caller may state identities between parameters that the derivation
   cannot know (for the DSM model, ``Delta = 1 - a^2`` and ``mu_f^2 = mu_*^2 - mu_s^2``);
   they are substituted and the result is cancelled again.
3. **Scaling.**  Each unknown is rescaled, ``u_k = c_k nu_k`` with ``c_k`` a product of
   powers of positive parameters (``psi_n``, ``psi_p``, ...) and a sign, chosen greedily to
   make the printed equations shortest (the classical normalisations come out this way:
   ``lam psi_n + u`` becomes ``psi_n (lam + nu)``).  The candidates are ``-1`` and the
   aspect ratios ``psi_*`` and their inverses.
4. **Printing.**  Numerators and denominators are factored; each factor that involves the
   unknowns is collected in them with factored coefficients.

Each unknown is named by the normalised trace it is: ``\\frac1n \\operatorname{tr}`` of a
combination of blocks of the inverse of the pencil (``CoreStage.meaning``).  The read-outs
are printed (when their program has at most :data:`MAX_READOUT_STEPS` steps) as a short
program: the steps that would otherwise make the outputs long are named ``q_j`` (with the
trace they are, where they are one); the size at which a step is named is the one of
:data:`THRESHOLDS` that gives the shortest LaTeX.  A step that grows
beyond :data:`MAX_TERMS` terms stops the elimination (:func:`eliminate` raises
``ValueError``); the work is cached on disk (:mod:`pencils.cache`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import sympy

from .cache import cached
from .expr import SpectralMean
from .freeprob import nonzero_entries
from .linearize import describe

__all__ = ["Eliminated", "block_meaning", "eliminate", "program_latex"]

#: Rational functions with more terms than this are not formed (the printing gives up).
MAX_TERMS = 4000
#: Read-out steps larger than these (terms) are tried as named intermediate quantities.
THRESHOLDS = (8, 16, 32, 64)
#: Read-out programs longer than this are not eliminated (cancelling their nested solves
#: can take minutes): the outputs are then referred to the program.
MAX_READOUT_STEPS = 40
#: :meth:`pencils.reduce.ReducedSystem.latex` prints the eliminated form by default only when
#: the core's local program has at most this many steps (larger cores take minutes of
#: cancellation: ask for them with ``eliminated=True``).
MAX_AUTO_STEPS = 30
#: Greedy sweeps over the unknowns in the search for scalings.
SCALING_SWEEPS = 1
_NAMES = {"lam": r"\lambda", "mustar": r"\mu_*", "mu_star": r"\mu_*", "Delta": r"\Delta"}


class _TooLong(ValueError):
    """An expression outgrew :data:`MAX_TERMS`, or is not rational."""


@dataclass(frozen=True)
class Eliminated:
    """The eliminated form of a reduced system.

    ``nu[k]`` are the printed unknowns, ``u[k] = scale[k] * nu[k]`` the core unknowns of
    the program; ``rhs[k]`` gives the fixed point ``nu_k = rhs_k(nu)``; ``meaning[k]`` is
    the LaTeX of the normalised trace ``u_k`` is.  ``named`` lists the intermediate read-outs
    ``(symbol, expression in nu and earlier symbols, meaning or None)``, and
    ``outputs[name]`` each output in ``nu`` and those symbols.  ``relations`` are the
    parameter identities that were substituted.
    """

    nu: tuple
    u: tuple
    scale: tuple
    rhs: tuple
    meaning: tuple
    named: tuple
    outputs: dict
    relations: tuple = ()
    text: str = ""

    def latex(self) -> str:
        """The core unknowns, their fixed-point equations and the read-outs, one per line."""
        return self.text or self._render()

    def _render(self) -> str:
        names = {s: _NAMES[s.name] for s in self._symbols() if s.name in _NAMES}
        names.update({sym: f"q_{{{k + 1}}}" for k, (sym, _, _) in enumerate(self.named)})
        tex = lambda e: sympy.latex(e, symbol_names=names)
        head = r"\text{core unknowns (solved jointly by Newton; } G = L^{-1}\text{ of each system's pencil):}"
        lines = [head]
        for v, c, mean in zip(self.nu, self.scale, self.meaning):
            pre = {1: "", -1: "-"}.get(c, None)
            pre = _pretty(1 / c, (), tex) + r"\," if pre is None else pre
            tag, _, body = mean.rpartition(r"\!:\ ")  # the system's name stays first
            if pre and "operatorname{tr}[" in body.split("operatorname{tr}[", 1)[1]:  # several traces
                body = r"\left(" + body + r"\right)"
            lines.append(f"{tex(v)} = " + (tag + r"\!:\ " if tag else "") + pre + body)
        for v, f in zip(self.nu, self.rhs):
            lines.append(f"{tex(v)} = {_pretty(f, self.nu, tex)}")
        if self.relations:
            lines.append(r"\text{with } " + r",\ ".join(f"{tex(a)} = {tex(b)}" for a, b in self.relations))
        lines.append(r"\text{read-outs:}")
        for sym, e, mean in self.named:
            lines.append(f"{tex(sym)} = " + (f"{mean} = " if mean else "") + _pretty(e, self.nu, tex))
        for name, e in self.outputs.items():
            lines.append(r"\mathrm{" + name.replace("_", r"\_") + "} = " + _pretty(e, self.nu, tex))
        if not self.outputs:
            lines.append(r"\text{the outputs are explicit in the core unknowns (a straight-line program: "
                         r"\texttt{latex(program=True)})}")
        return " \\\\\n".join(lines)

    def _symbols(self) -> set:
        out = set(self.nu)
        for e in (*self.rhs, *self.scale, *(e for _, e, _ in self.named), *self.outputs.values()):
            out |= sympy.sympify(e).free_symbols
        return out

    def _env(self, values: dict, nu) -> dict:
        env = {s: values[s.name] for s in self._symbols() if s.name in values}
        env.update(zip(self.nu, nu))
        return env

    def residuals(self, values: dict, nu) -> list:
        """``rhs_k(nu) - nu_k`` at parameter ``values`` (``{name: number}``) and ``nu``
        (30-digit evaluation)."""
        env = self._env(values, nu)
        return [complex(f.xreplace(env).evalf(30)) - complex(v) for f, v in zip(self.rhs, nu)]

    def output_values(self, values: dict, nu) -> dict:
        """The outputs at parameter ``values`` and unknowns ``nu`` (through the named steps)."""
        env = self._env(values, nu)
        for sym, e, _ in self.named:
            env[sym] = sympy.Float(e.xreplace(env).evalf(30), 30)
        return {k: complex(e.xreplace(env).evalf(30)) for k, e in self.outputs.items()}


# -- the program form and the names of the unknowns -------------------------------------


def program_latex(R, full: bool = False) -> str:
    """The straight-line program of :class:`pencils.reduce.ReducedSystem` ``R`` (its core
    stages with their local steps; ``full``: every read-out step and the outputs)."""
    lines = []
    for kind, *rest in R.steps:
        if kind != "core":
            continue
        st = rest[0]
        lines.append(rf"\text{{core: {len(st.unknowns)} unknown(s) solved jointly by Newton, "
                     rf"{len(st.eliminated)} made explicit; }} G = L^{{-1}}")
        for sym, expr in st.program:  # small steps: the core's own part of G
            mean = (r"\qquad\left[" + R.meanings[sym] + r"\right]") if sym in R.meanings else ""
            lines.append(f"{sympy.latex(sym)} = {sympy.latex(expr)}{mean}")
        for u, f, mean in zip(st.unknowns, st.maps, st.meaning):
            lines.append(f"{sympy.latex(u)} = {sympy.latex(f)}" + r"\qquad\left[" + mean + r"\right]")
    lets = [rest for kind, *rest in R.steps if kind == "let"]
    reads = [sym for sym, _ in lets if sym.name.startswith("v_")]
    lines.append(rf"\text{{read-outs, explicit in the core ({len(lets)} straight-line steps):}}\ "
                 + r",\ ".join(f"{sympy.latex(v)} = {R.meanings.get(v, '')}" for v in reads))
    if full:
        lines += [f"{sympy.latex(sym)} = {sympy.latex(expr)}" for sym, expr in lets]
        for name, expr in R.outputs.items():
            lines.append(r"\mathrm{" + name.replace("_", r"\_") + "} = " + sympy.latex(expr))
    else:
        lines.append(r"\text{outputs: } " + r",\ ".join(
            r"\mathrm{" + name.replace("_", r"\_") + "}" for name in R.outputs)
            + r"\text{ (explicit in the read-outs; \texttt{latex(full=True)})}")
    return " \\\\\n".join(lines)


def block_meaning(S, q: int, label: str = "") -> str:
    """Which normalised trace ``tau_q`` is, in the blocks ``G_ij = (L^{-1})_ij`` of the inverse
    of the pencil ``L`` of system ``label``: ``sum_ij W_ij g_ij`` with ``g_ij = (1/n_i) tr
    G_ij``, one normalised trace per space (``n_i`` the dimension of block ``i``'s space)."""
    entries, spaces = nonzero_entries(S.W[q]), S.pencil.spaces
    pieces = []
    for sp in dict.fromkeys(spaces):
        terms, names = sympy.Integer(0), {}
        for (i, j), w in entries.items():
            if spaces[i] == sp:
                g = sympy.Symbol(f"g_{i}_{j}")
                names[g] = f"G_{{{i},{j}}}"
                terms += w * g
        names.update({p: _NAMES[p.name] for p in terms.free_symbols if p.name in _NAMES})
        if names:
            n = sp.name if len(sp.name) == 1 else r"n_{\mathrm{" + sp.name.replace("_", r"\_") + "}}"
            inner = sympy.latex(terms, symbol_names=names)
            pieces.append(r"\tfrac{1}{" + n + r"}\operatorname{tr}[" + inner + "]")
    tag = (r"\mathrm{" + label.replace("_", r"\_") + r"}\!:\ ") if label else ""
    return tag + " + ".join(pieces)


# -- exact elimination ------------------------------------------------------------------


class _Field:
    """Rational functions of the parameters, the Newton unknowns and the named read-out
    steps, each step cancelled to lowest terms as it is formed (``sympy.cancel`` works in
    the polynomial ring of the symbols present only).  A read-out step whose value has more
    than ``threshold`` terms is named: it stays a symbol ``q__k`` in what follows."""

    def __init__(self, R, threshold: int):
        self.roots = {}  # root symbol r_k -> sqrt(base)
        for kind, *rest in R.steps:
            if kind == "let" and rest[0].name.startswith("r_") and rest[1].is_Pow:
                self.roots[rest[0]] = rest[1]
        self.unknowns = R.core_unknowns
        self.env: dict = dict(self.roots)
        self.threshold = threshold
        self.named: list = []  # (q symbol, value, program symbol) of the named read-out steps

    def let(self, sym, expr) -> None:
        self.name(sym, self.value(expr))

    def name(self, sym, v) -> None:
        if _size(v) > self.threshold:
            q = sympy.Symbol(f"q__{len(self.named)}")
            self.named.append((q, v, sym))
            v = q
        self.env[sym] = v

    def value(self, expr):
        """``expr`` (rational in known symbols) cancelled, in parameters, unknowns and names."""
        v = _cancel(sympy.sympify(expr).xreplace(self.env))
        if _size(v) > MAX_TERMS:
            raise _TooLong("too many terms")
        return v


def _cancel(expr):
    """``cancel`` of a sum through the factored least common denominator: the terms'
    denominators are factored and only the missing factors multiply each numerator (a plain
    ``cancel`` multiplies all denominators and then looks for a large gcd, which can take
    minutes); then each factor of the denominator is divided out of the numerator while it
    divides it."""
    if not expr.is_Add:
        return sympy.cancel(expr)
    terms = [sympy.fraction(sympy.cancel(t)) for t in expr.args]
    lcm: dict = {}
    parts = []
    for num, den in terms:
        c, facs = sympy.factor_list(den)
        facs = dict(facs)
        parts.append((num / c, facs))
        for f, k in facs.items():
            lcm[f] = max(lcm.get(f, 0), k)
    total = sympy.Integer(0)
    for num, facs in parts:
        total += sympy.expand(num * sympy.Mul(*(f ** (k - facs.get(f, 0)) for f, k in lcm.items())))
    gens = sorted(expr.free_symbols, key=lambda x: x.name)
    if total == 0:
        return sympy.Integer(0)
    for f in list(lcm):
        while lcm[f]:
            q, r = sympy.div(total, f, *gens)
            if r != 0:
                break
            total, lcm[f] = q, lcm[f] - 1
    return sympy.cancel(total / sympy.Mul(*(f ** k for f, k in lcm.items())))


def _size(v) -> int:
    num, den = sympy.fraction(v)
    return len(sympy.Add.make_args(num)) + len(sympy.Add.make_args(den))


def _eliminate(R, relations: dict, threshold: int):
    F = _Field(R, threshold)
    maps, meanings = [], []
    last = max(k for k, (kind, *_) in enumerate(R.steps) if kind == "core")
    lets = sum(1 for kind, *rest in R.steps[last:] if kind == "let")
    readouts = lets <= MAX_READOUT_STEPS
    for k, (kind, *rest) in enumerate(R.steps):
        if kind == "let":  # the steps before a core are the core's inputs
            if rest[0] not in F.roots and (readouts or k < last):
                F.let(*rest)
            continue
        st = rest[0]
        full = dict(F.env)  # the maps see every local step substituted
        for sym, e in st.program:
            full[sym] = v = _cancel(e.xreplace(full))
            F.name(sym, v)  # the read-outs see the large ones named
        qval = {q: v for q, v, _ in F.named}  # an earlier core's named steps, in full
        maps += [_cancel(_unname(f.xreplace(full), qval)) for f in st.maps]
        meanings += list(st.meaning)
    rhs = [_relate(f, relations) for f in maps]
    if not readouts:
        return list(F.unknowns), rhs, meanings, [], {}
    outputs = {name: _relate(F.value(sympy.sympify(e)), relations) for name, e in R.outputs.items()}
    used = set().union(*(e.free_symbols for e in outputs.values()))
    named = []
    for q, v, sym in reversed(F.named):  # only the named steps the outputs need
        if q in used:
            e = _relate(v, relations)
            named.append((q, e, R.meanings.get(sym)))
            used |= e.free_symbols
    return list(F.unknowns), rhs, meanings, named[::-1], outputs


def _unname(e, qval: dict):
    while e.free_symbols & qval.keys():
        e = e.xreplace(qval)
    return e


def _relate(e, relations: dict):
    return sympy.cancel(e.xreplace(relations)) if relations else e


# -- scaling and printing ---------------------------------------------------------------


def _candidates(rhs, unknowns) -> list:
    params = set().union(*(f.free_symbols for f in rhs)) - set(unknowns)
    pos = sorted((p for p in params if p.name.startswith("psi")), key=lambda s: s.name)
    out = [sympy.Integer(-1)]
    for p in pos:
        out += [p, 1 / p]
    return out


def _scaled(rhs, unknowns, nu, scale):
    rep = {u: c * v for u, c, v in zip(unknowns, scale, nu)}
    return [sympy.cancel(f.xreplace(rep) / c) for f, c in zip(rhs, scale)]


def _length(rhs, nu) -> int:
    """A cheap proxy of the printed length (the factored print costs a factorisation)."""
    return sum(len(str(f)) for f in rhs)


def _choose_scales(rhs, unknowns, nu):
    """Greedy: per unknown, the candidate factor that shortens the printed equations most."""
    scale = [sympy.Integer(1)] * len(unknowns)
    best = _length(_scaled(rhs, unknowns, nu, scale), nu)
    cands = _candidates(rhs, unknowns)
    for _ in range(SCALING_SWEEPS):
        improved = False
        for k in range(len(unknowns)):
            for c in cands:
                trial = list(scale)
                trial[k] = scale[k] * c
                n = _length(_scaled(rhs, unknowns, nu, trial), nu)
                if n < best:
                    best, scale, improved = n, trial, True
        if not improved:
            break
    return scale


def _collected(f, nu, tex) -> str:
    """A polynomial factor: collected in the unknowns, coefficients factored."""
    if not f.free_symbols & set(nu) or any(m.has(*nu) for m in f.atoms(SpectralMean)):
        return tex(sympy.factor(f))  # a mean over a measure is not a polynomial in the unknowns
    poly = sympy.Poly(sympy.expand(f), *nu)
    terms = []
    for mon, coef in poly.terms():
        c = sympy.factor(coef)
        m = sympy.Mul(*(v**k for v, k in zip(nu, mon)))
        terms.append((c, m))
    out = ""
    for c, m in terms:
        neg = c.could_extract_minus_sign()
        cc = -c if neg else c
        if m == 1:
            body = tex(cc)
        elif cc == 1:
            body = tex(m)
        else:
            body = (r"\left(" + tex(cc) + r"\right)" if cc.is_Add else tex(cc)) + " " + tex(m)
        out += (" - " if neg else (" + " if out else "")) + body
    return out.strip()


def _pretty(expr, nu, tex) -> str:
    """``expr`` as a fraction of factored polynomials, each collected in the unknowns."""
    expr = sympy.cancel(sympy.sympify(expr))
    num, den = sympy.fraction(expr)

    def product(p):
        c, factors = sympy.factor_list(p)
        parts = []
        for f, k in factors:
            body = _collected(f, nu, tex)
            many = f.is_Add
            body = (r"\left(" + body + r"\right)") if many and (len(factors) > 1 or k > 1 or c != 1) else body
            parts.append(body + (f"^{{{k}}}" if k > 1 else ""))
        return c, " ".join(parts)

    cn, pn = product(num)
    cd, pd = product(den)
    c = cn / cd
    sign = "-" if c < 0 else ""
    c = abs(c)
    cnum, cden = sympy.fraction(c)
    top = " ".join(x for x in (tex(cnum) if cnum != 1 else "", pn) if x) or "1"
    bot = " ".join(x for x in (tex(cden) if cden != 1 else "", pd) if x)
    return sign + (r"\frac{" + top + "}{" + bot + "}" if bot else top)


# -- entry point ---------------------------------------------------------------------------


def _uncached(R, relations: dict) -> Eliminated:
    best = None
    for threshold in THRESHOLDS:
        try:
            unknowns, rhs, meanings, named, outputs = _eliminate(R, relations, threshold)
        except _TooLong:
            if threshold == THRESHOLDS[0]:
                raise
            break
        nu = tuple(sympy.Symbol(f"nu_{k + 1}") for k in range(len(unknowns)))
        if best is None:  # the core equations do not depend on the threshold
            scale = _choose_scales(rhs, unknowns, nu)
            rep = {u: c * v for u, c, v in zip(unknowns, scale, nu)}
            eqs = tuple(_scaled(rhs, unknowns, nu, scale))
        E = Eliminated(nu, tuple(unknowns), tuple(scale), eqs, tuple(meanings),
                       tuple((s, sympy.cancel(e.xreplace(rep)), m) for s, e, m in named),
                       {k: sympy.cancel(e.xreplace(rep)) for k, e in outputs.items()}, tuple(relations.items()))
        E = dataclasses.replace(E, text=E._render())
        if best is None or len(E.text) < len(best.text):
            best = E
        if not outputs:  # nothing depends on the threshold
            break
    return best


def eliminate(R, relations: dict | None = None, cache: bool = True) -> Eliminated:
    """The eliminated form of the reduced system ``R`` (see the module docstring).

    ``relations``: ``{parameter symbol: expression}`` identities to substitute (optional).
    """
    relations = dict(relations or {})
    if not cache:
        return _uncached(R, relations)
    flat = tuple((kind, rest[0], rest[1]) if kind == "let" else
                 (kind, rest[0].unknowns, rest[0].program, rest[0].maps, rest[0].meaning)
                 for kind, *rest in R.steps)
    desc = describe((R.params, flat, tuple(R.outputs.items()), tuple(relations.items())))
    return cached("eliminated", desc, lambda: _uncached(R, relations), code=("pencils",))

