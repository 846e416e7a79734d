"""The C++ printer: the program of a :class:`~pencils.reduce.ReducedSystem` as scalar C++
templates in the number type ``T`` (double, double-double, complex), the source that
:mod:`numerics.kernel` compiles.

Generated here: one function per ``let`` run (``seg_k``), per core stage ``map_k``, ``jac_k``,
``fill_k``, ``prefix_k`` (the ``let`` runs before the stage: continuation re-evaluates them)
and a ``stage_k`` struct naming them for the generic stage solver, ``outputs`` and ``run``
(the program at one point).  Hand-written, shipped beside this module and pasted in:
``runtime.h`` (double-double arithmetic, residual, small solve, attractivity test),
``stage.hpp`` (the per-stage algorithm) and ``driver.hpp`` (grid loop, rounding check, C entry
points).  Numbers print as double-double literals ``lit<T>(hi, lo)``; integer powers become
products (``ipow``), half-integer powers go through ``sqrt``.
"""
from __future__ import annotations

import re

import sympy
from sympy.printing.c import C99CodePrinter

from pencils.expr import measure_of

from .measures import means_in, system_layout

from ..options import READOUT_SAFETY
from . import KMAX, runtime_text

__all__ = ["kernel_source", "CxxPrinter", "Writer", "operation_counts"]

#: C++ keywords and the names the generated code uses itself, which no symbol may take.
_CXX_RESERVED = frozenset(
    "alignas alignof and asm auto bool break case catch char class const constexpr continue decltype default "
    "delete do double else enum explicit export extern false float for friend goto if inline int long mutable "
    "namespace new noexcept not nullptr operator or private protected public register return short signed "
    "sizeof static struct switch template this throw true try typedef typename union unsigned using virtual "
    "void volatile while xor T k dd lit ipow sqrt u cfg warm its res r".split())


def _split(value) -> tuple[float, float]:
    """``(hi, lo)``: the double-double nearest a sympy number (hi = its nearest double)."""
    import mpmath

    with mpmath.workdps(60):
        x = mpmath.mpf(value.p) / value.q if hasattr(value, "q") else mpmath.mpf(str(value))
        hi = float(x)
        lo = float(x - hi)
    return hi, lo


class CxxPrinter(C99CodePrinter):
    """C99 expressions for the kernel's templates (see the module docstring)."""

    def _print_Integer(self, expr):  # exact in a double: mixed double / double-double operations
        return f"{int(expr)}.0"

    def _print_Rational(self, expr):
        hi, lo = _split(expr)
        return f"lit<T>({hi!r}, {lo!r})"

    def _print_Float(self, expr):
        hi, lo = _split(expr)
        return f"lit<T>({hi!r}, {lo!r})"

    def _print_Pow(self, expr):
        base, e = expr.args
        b = f"({self._print(base)})"
        if e.is_Integer:
            n = int(e)
            if n == 0:
                return "1.0"
            pos = b if abs(n) == 1 else (f"({b}*{b})" if abs(n) == 2 else f"ipow<T>({b}, {abs(n)})")
            return pos if n > 0 else f"(1.0/{pos})"
        if e.is_Rational and e.q == 2:
            n = int(e.p)
            root = f"sqrt({b})"
            pos = root if abs(n) == 1 else f"ipow<T>({root}, {abs(n)})"
            return pos if n > 0 else f"(1.0/{pos})"
        raise NotImplementedError(f"the compiled kernel has no power {e} (use the numpy backend)")

    def _print_Symbol(self, expr):
        if expr.name in _CXX_RESERVED or not expr.name.isidentifier():
            raise NotImplementedError(f"symbol {expr.name!r} is not a C++ name (use the numpy backend)")
        return expr.name

    def _print_Function(self, expr):
        raise NotImplementedError(f"the compiled kernel has no function {expr.func} (use the numpy backend)")


class Writer:
    """Scalar straight-line C++ of sympy assignments, spectral means as loops over atoms.

    The means one function needs are computed in as few loops as possible: every mean whose
    inputs are ready is computed in one loop per measure, with the union of their per-atom
    bindings (the means of one component and their derivatives share most of them: one loop
    per mean repeated the shared program per mean, in the source and at run time).  Call
    :meth:`begin` at the start of each generated function (means are local variables)."""

    def __init__(self, index: dict, measures: tuple = ()):
        self.index = index  # symbol name -> slot of the environment array _e
        self.measures = measures  # ((measure, coordinate names), ...): numerics.measures.pack's order
        self.pr = CxxPrinter()
        self.names = sympy.numbered_symbols("_c")
        self.means = 0
        self.memo: dict = {}  # SpectralMean -> its local variable in the current function

    def begin(self) -> None:
        """A new function: the means of the previous one are out of scope."""
        self.memo = {}

    @staticmethod
    def reads(exprs, defined: set) -> list[str]:
        syms = set()
        for e in exprs:
            syms |= sympy.sympify(e).free_symbols
        return sorted({s.name for s in syms if measure_of(s) is None} - set(defined))

    @staticmethod
    def _groups(means) -> list:
        """``[(measure, {bound symbol: expr}, [means])]``: means of one measure whose bindings
        agree (a symbol bound by two means to two expressions splits them)."""
        groups: list = []
        for mean in means:
            for measure, lets, members in groups:
                if measure == mean.measure and all(lets.get(x, e) == e for x, e in mean.lets):
                    for x, e in mean.lets:  # in order: each binding follows those it reads
                        lets.setdefault(x, e)
                    members.append(mean)
                    break
            else:
                groups.append((mean.measure, dict(mean.lets), [mean]))
        return groups

    def _loops(self, means, lines: list, indent: str) -> None:
        """Compute ``means`` (not yet in :attr:`memo`) into new local variables."""
        order = [m for m, _ in self.measures]
        J = len(order)
        for measure, lets, members in self._groups(means):
            names = [f"_mean{self.means + i}" for i in range(len(members))]
            self.means += len(members)
            # offsets of the measure's atoms in the packed arrays (numerics.measures.pack):
            # _w starts with the atom counts of the J measures
            j = order.index(measure)
            coords = list(self.measures[j][1])
            wo = " + ".join([str(J)] + [f"int(_w[{i}])" for i in range(j)])
            so = " + ".join([f"{len(self.measures[i][1])} * int(_w[{i}])" for i in range(j)] or ["0"])
            lines += [f"{indent}T {n} = T(0.0);" for n in names]
            lines.append(f"{indent}{{")
            lines.append(f"{indent}const int _q = int(_w[{j}]), _wo = {wo}, _so = {so};")
            lines.append(f"{indent}for (int _a = 0; _a < _q; _a++) {{")
            used = sorted({s.name for mean in members for s in mean.coordinates})
            for c in used:
                lines.append(f"{indent}    const T {c} = T(_s[_so + {coords.index(c)} * _q + _a]);")
            for x, e in lets.items():  # the per-atom program, one binding at a time
                lrepl, (lred,) = sympy.cse([e], symbols=self.names, order="none")
                lines += [f"{indent}    const T {c.name} = {self.pr.doprint(v)};" for c, v in lrepl]
                lines.append(f"{indent}    const T {x.name} = {self.pr.doprint(lred)};")
            repl, reds = sympy.cse([mean.args[0] for mean in members], symbols=self.names, order="none")
            lines += [f"{indent}    const T {c.name} = {self.pr.doprint(x)};" for c, x in repl]
            lines.append(f"{indent}    const T _wa = T(_w[_wo + _a]);")
            lines += [f"{indent}    {n} = {n} + _wa * ({self.pr.doprint(r)});" for n, r in zip(names, reds)]
            lines.append(f"{indent}}}")
            lines.append(f"{indent}}}")
            self.memo.update({mean: sympy.Symbol(n) for mean, n in zip(members, names)})

    def _hoist(self, exprs: list, lines: list, indent: str) -> list:
        """``exprs`` with their means replaced by local variables (computed here if new)."""
        exprs = [sympy.sympify(e) for e in exprs]
        found = [means_in(e) for e in exprs]
        new = sorted(set().union(*found) - self.memo.keys(), key=sympy.default_sort_key)
        if new:
            self._loops(new, lines, indent)
        return [e.xreplace({m: self.memo[m] for m in ms}) if ms else e for e, ms in zip(exprs, found)]

    def steps(self, pairs, lines: list, defined: set, store: bool = False, indent: str = "    ") -> None:
        """``const T name = expr;`` for each ``(symbol, expr)`` in order, loading what they read
        from ``_e`` (``store``: and writing each back).  Before the first step that needs a new
        mean, every mean of this and the later steps whose inputs are ready is computed, in one
        loop per measure."""
        pairs = [(sym.name, sympy.sympify(e)) for sym, e in pairs]
        step_means = [sorted(means_in(e), key=sympy.default_sort_key) for _, e in pairs]
        for i, (name, e) in enumerate(pairs):
            if any(m not in self.memo for m in step_means[i]):
                later = {n for n, _ in pairs[i:]}
                wave: dict = {}
                for ms in step_means[i:]:
                    for m in ms:
                        if m not in self.memo and not {s.name for s in m.free_symbols} & later:
                            wave[m] = None
                need = self.reads(list(wave), defined)
                self.load(need, lines)
                defined |= set(need)
                self._loops(list(wave), lines, indent)
            need = self.reads([e], defined)
            self.load(need, lines)
            defined |= set(need)
            self.assign(name, e, lines, indent=indent)
            defined.add(name)
            if store:
                lines.append(f"{indent}_e[{self.index[name]}] = {name};")

    def assign(self, target: str, expr, lines: list, declare: bool = True, indent: str = "    ") -> None:
        self.assign_many([target], [expr], lines, declare, indent)

    def assign_many(self, targets: list[str], exprs: list, lines: list, declare: bool = True,
                    indent: str = "    ") -> None:
        exprs = self._hoist(exprs, lines, indent)
        repl, red = sympy.cse(exprs, symbols=self.names, order="none")
        lines += [f"{indent}const T {c.name} = {self.pr.doprint(x)};" for c, x in repl]
        decl = "const T " if declare else ""
        lines += [f"{indent}{decl}{t} = {self.pr.doprint(e)};" for t, e in zip(targets, red)]

    def load(self, names, lines: list) -> None:
        lines += [f"    const T {n} = _e[{self.index[n]}];" for n in names]


_ARGS = "T *_e, const double *_s, const double *_w, int _ns"


def _let(k: int, seg, w: Writer) -> list:
    lines = [f"template <typename T> static void seg_{k}({_ARGS}) {{"]
    w.begin()
    w.steps(seg, lines, set(), store=True)
    return lines + ["}", ""]


def _core(k: int, st, w: Writer, segments) -> list:
    K = len(st.unknowns)
    linear = bool(getattr(st, "linear", False))
    limit = LINEAR_KMAX_LIMIT if linear else KMAX_LIMIT
    if K > limit:  # the Newton (and attractivity) buffers, on the stack of the solving thread
        raise NotImplementedError(f"a {'linear ' if linear else ''}core stage of {K} unknowns "
                                  f"(the kernel takes up to {limit})")
    unknowns = [s.name for s in st.unknowns]
    prog, jprog = list(st.program), list(st.jac_program)
    local = set(unknowns) | {s.name for s, _ in prog + jprog}
    reads = w.reads([e for _, e in prog + jprog] + list(st.maps) + list(st.jacobian), local)

    def header(name, extra, const=True):
        lines = [f"template <typename T> static void {name}({'const ' if const else ''}{_ARGS}, const T *u{extra}) {{"]
        w.begin()
        w.load(reads, lines)
        lines += [f"    const T {n} = u[{j}];" for j, n in enumerate(unknowns)]
        return lines

    ready = set(reads) | set(unknowns)
    out = header(f"map_{k}", ", T *_f")
    w.steps(prog, out, set(ready))
    w.assign_many([f"_f[{i}]" for i in range(K)], list(st.maps), out, declare=False)
    out += ["}", ""]
    lines = header(f"jac_{k}", ", T *_f, T *_j")
    w.steps(prog + jprog, lines, set(ready))
    w.assign_many([f"_f[{i}]" for i in range(K)] + [f"_j[{i}]" for i in range(K * K)],
                  list(st.maps) + list(st.jacobian), lines, declare=False)
    out += lines + ["}", ""]
    lines = header(f"fill_{k}", "", const=False)
    w.steps(prog, lines, set(ready))
    lines += [f"    _e[{w.index[n]}] = {n};" for n in unknowns]
    lines += [f"    _e[{w.index[s.name]}] = {s.name};" for s in st.eliminated]
    out += lines + ["}", ""]
    lets = [f"    seg_{j}<T>(_e, _s, _w, _ns);" for j, (kd, _) in enumerate(segments[:k]) if kd == "let"]
    out += [f"template <typename T> static void prefix_{k}({_ARGS}) {{"] + lets + ["}", ""]
    # the stage as stage.hpp's solver sees it
    out += [f"struct stage_{k} {{",
            f"    enum {{ K = {K}, LINEAR = {int(linear)} }};",
            f"    template <typename T> static void map(const {_ARGS}, const T *u, T *f) {{ map_{k}<T>(_e, _s, _w, _ns, u, f); }}",
            f"    template <typename T> static void jac(const {_ARGS}, const T *u, T *f, T *j) {{ jac_{k}<T>(_e, _s, _w, _ns, u, f, j); }}",
            f"    template <typename T> static void prefix({_ARGS}) {{ prefix_{k}<T>(_e, _s, _w, _ns); }}",
            "};", ""]
    return out


def kernel_source(R, continuation: str | None = None) -> str:
    """C++ source of the kernel of the reduced system ``R`` (module docstring);
    ``continuation``: the parameter the kernel can continue in (``CONT``), ``None``: none."""
    params = [p.name for p in R.params]
    segments = R.segments
    names = list(params)
    for kind, body in segments:
        if kind == "let":
            names += [s.name for s, _ in body]
        else:
            names += [s.name for s in body.unknowns] + [s.name for s in body.eliminated]
    index = {n: i for i, n in enumerate(dict.fromkeys(names))}
    w = Writer(index, system_layout(R))
    out = ["// generated by numerics.codegen.cxx from a reduced system: do not edit",
           f"// params: {' '.join(params)}", f"// outputs: {' '.join(R.outputs)}", _runtime(segments),
           f"static const int NP = {len(params)}, NE = {len(index)}, NOUT = {len(R.outputs)}, "
           f"NCORE = {len(R.core_unknowns)}, CONT = {params.index(continuation) if continuation in params else -1};",
           f"static const double READOUT_SAFETY = {READOUT_SAFETY!r};",
           "", runtime_text("stage.hpp")]
    run, offset = [], 0
    for k, (kind, seg) in enumerate(segments):
        if kind == "let":
            out += _let(k, seg, w)
            run.append(f"    seg_{k}<T>(_e, _s, _w, _ns);")
            continue
        out += _core(k, seg, w, segments)
        run += [f"    r = solve_stage<T, stage_{k}>(_e, _s, _w, _ns, u + {offset}, cfg, warm, its);",
                "    if (!(r <= res)) res = r;", f"    fill_{k}<T>(_e, _s, _w, _ns, u + {offset});"]
        offset += len(seg.unknowns)
    outs = list(R.outputs.values())
    lines = [f"template <typename T> static void outputs(const {_ARGS}, T *_out) {{"]
    w.begin()
    w.load(w.reads(outs, set()), lines)
    w.assign_many([f"_out[{i}]" for i in range(len(outs))], outs, lines, declare=False)
    out += lines + ["}", ""]
    out += ["// the whole program at one point (_e[0:NP] holds the parameters; u the core, a start when warm)",
            "template <typename T> static double run(T *_e, const double *_s, const double *_w, int _ns, T *u,",
            "                                        const double *cfg, bool warm, T *vals, long *its) {",
            "    double res = 0.0, r;", *run, "    outputs<T>(_e, _s, _w, _ns, vals);", "    return res;", "}", "",
            runtime_text("driver.hpp")]
    return "\n".join(out) + "\n"


#: Largest core stage of a kernel: the attractivity test's two ``K x K`` buffers stay under
#: 300 kB of stack (complex) in the solving thread.
KMAX_LIMIT = 96
#: Largest linear core stage (``pencils.reduce.LINEAR_STAGE_MIN``): no attractivity test, and
#: Newton's two ``K x K`` buffers stay under 1.3 MB of stack (double-double or complex).
LINEAR_KMAX_LIMIT = 200
_KMAX_LINE = f"static const int KSMALL = 8, KMAX = {KMAX};"


def _runtime(segments) -> str:
    """``runtime.h``, its buffers sized for the largest core stage when that exceeds ``KMAX``
    (the two-spike systems at rank 4: 49 unknowns).  The source of every smaller system is
    the runtime as it is, so their kernels are not rebuilt."""
    text = runtime_text("runtime.h")
    K = max((len(seg.unknowns) for kind, seg in segments
             if kind != "let" and not getattr(seg, "linear", False)), default=0)  # (linear: not tested)
    if K <= KMAX:
        return text
    if text.count(_KMAX_LINE) != 1:
        raise RuntimeError(f"runtime.h no longer declares {_KMAX_LINE!r}")
    return text.replace(_KMAX_LINE, f"static const int KSMALL = 8, KMAX = {K};")


def operation_counts(source: str) -> dict:
    """Arithmetic operations (``+ - * /`` and ``sqrt``) in each generated function of a
    kernel source, for the benchmark's floor estimate (a count of the straight-line code;
    loops over spectral atoms count once)."""
    counts, name = {}, None
    for line in source.splitlines():
        m = re.match(r"template <typename T> static \w+ (\w+)\(", line)
        if m:
            name = m.group(1)
            counts[name] = 0
        elif line.startswith("}") or line.startswith("struct "):
            name = None  # outside the generated functions
        elif name is not None and line.startswith("    ") and "=" in line:
            rhs = line.split("=", 1)[1]
            counts[name] += len(re.findall(r"(?<![eE])[-+*/](?!=)", rhs)) + rhs.count("sqrt(")
    return counts
