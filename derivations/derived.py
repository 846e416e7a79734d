"""Derive your own model: from normalised traces to verified, compiled curves.

``pencils.derive(outputs)`` is the one path from a matrix expression to numbers. It takes a
trace, a rational function of traces (:class:`pencils.outputs.TraceExpr`) or a dict of
named ones, and returns a :class:`DerivedModel`:

1. **derive** (sympy, disk-cached): each trace is linearised into a pencil, its
   operator-valued fixed-point equations are derived (:mod:`pencils.freeprob`), and all of
   them are reduced together to a few core unknowns (:mod:`pencils.reduce`); an output
   that combines several traces is computed inside the reduced program, so the rounding
   check below covers it;
2. **compile** (:mod:`numerics.reduced`): a C++ kernel where a compiler is found, else
   vectorised numpy;
3. **solve** with the precision ladder of :mod:`derivations.ladder`: double precision with
   a rounding-error estimate at every point; points whose estimate exceeds ``rtol |value| +
   atol`` are re-solved in double-double (real parameters), then in mpmath; a point no rung
   resolves is an error (``throw=True``) or NaN with ``converged = False``. Complex
   parameters (spectral arguments ``z`` off the real axis) take the double and mpmath rungs;
4. **simulate**: the same expressions realised at finite ``d`` (:mod:`pencils.sample`),
   averaged over seeds and extrapolated to ``d -> inf`` (:mod:`numerics.extrapolate`).

The DSM theory (:mod:`derivations.theory`) and the classic problems (:mod:`derivations.classic`)
are derived models: they differ only in how their user parameters map to the model's.

>>> import sympy, pencils
>>> g, lam = sympy.symbols("gamma lam", positive=True)
>>> X = pencils.gaussian("X", pencils.Space("n", 1 / g), pencils.D)
>>> model = pencils.derive(pencils.trace(pencils.inverse(g * X.T @ X + lam)))
>>> model.params, model.outputs
(('gamma', 'lam'), ('value',))
>>> sol = model.solve(gamma=0.5, lam=[1.0, 1e-9])
>>> sol.value.round(6).tolist(), bool(sol.converged.all())
([0.561553, 2.0], True)
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import cached_property

import mpmath
import numpy as np

from numerics._errors import ConvergenceError
from numerics.options import SolveOptions
from numerics.reduced import ReducedSolver, solver_layout
from pencils.cache import cached

from .ladder import CAUSES, Ledger, Problem, climb
from .model import check_precision, spectral_measure

__all__ = ["derive", "DerivedModel", "Solution", "ModelSimulation", "DERIVING_CODE"]

#: The source a derived model's reduced system depends on (its cache key): the engine and this
#: module, which splits the outputs into traces (the expressions themselves are the key's
#: description; the numerics, which only compile and solve the system, are left out).  A model
#: made by a factory under a cheap key depends on all of ``derivations`` (the factory's code).
DERIVING_CODE = ("pencils", "derivations/derived.py")
#: What the generated program and kernel of such a model depend on: its system and the codegen.
#: So an edit elsewhere in ``derivations`` renames no kernel and regenerates no source.
KERNEL_CODE = (*DERIVING_CODE, "numerics")


@dataclass(frozen=True)
class Solution:
    """The outputs of :meth:`DerivedModel.solve` on a broadcast grid.

    ``values[name]`` (also ``solution.name``): numpy arrays (0-d for scalar input), complex
    where a parameter is complex, ``mpmath`` numbers with ``precision``. Per point:
    ``converged``; ``residual`` (relative, of the core equations); ``iterations``;
    ``rounding_error`` (estimated absolute error, the largest over the outputs; 0 with
    ``precision``); ``refined`` (re-solved above double precision) and ``refined_mpmath``;
    ``cause`` ("" when resolved, else why not: :data:`derivations.ladder.CAUSES`).
    """

    values: dict
    converged: np.ndarray
    residual: np.ndarray
    iterations: np.ndarray
    rounding_error: np.ndarray
    refined: np.ndarray
    refined_mpmath: np.ndarray
    cause: np.ndarray
    precision: int | None = None

    def __getattr__(self, name: str):
        values = self.__dict__.get("values", {})
        if name in values:
            return values[name]
        raise AttributeError(f"no output {name!r}; the outputs are {sorted(values)}")

    def __getitem__(self, name: str):
        return self.values[name]


@dataclass(frozen=True)
class ModelSimulation:
    """Monte Carlo of a derived model at one point (:meth:`DerivedModel.simulate`).

    ``d_values``; ``mean[name]`` and ``se[name]``: the seed average at each ``d`` and its
    standard error; ``limit[name]`` and ``limit_se[name]``: the ``d -> inf`` extrapolation
    (fit ``c0 + c1 / d``, :func:`numerics.extrapolate.fit_inverse_d`; complex outputs are
    fitted part by part).
    """

    d_values: tuple
    seeds: int
    mean: dict
    se: dict
    limit: dict
    limit_se: dict


def _assumptions(params) -> dict:
    """What each parameter symbol is declared to be (sympy assumptions), for the checks of
    :meth:`DerivedModel.solve`: ``"positive"``, ``"nonnegative"``, ``"real"`` or ``None``."""
    return {p.name: ("positive" if p.is_positive else "nonnegative" if p.is_nonnegative else
                     "real" if p.is_real else None) for p in params}


def _check_names(outputs: dict) -> None:
    for name in outputs:
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
            raise ValueError(f"output names must be Python identifiers not starting with '_', got {name!r}")


class DerivedModel:
    """A model derived from normalised traces (module docstring).

    Build it with :func:`derive`. ``params`` and ``outputs`` are the names of the
    parameters (the symbols of the expressions) and of the outputs.
    """

    def __init__(self, outputs=None, *, continuation: str | None = "lam", key: str | None = None,
                 factory=None, solver_key: str | None = None):
        if (outputs is None) == (factory is None):
            raise ValueError("DerivedModel needs outputs or a factory (not both)")
        if factory is not None and key is None:
            raise ValueError("a DerivedModel made from a factory needs a key")
        self._outputs, self._factory = outputs, factory
        self._key = key
        self._solver_key = solver_key
        self.continuation = continuation

    # -- the symbolic side (sympy, loaded only when the caches miss) ---------------------------
    @cached_property
    def expressions(self) -> dict:
        """``{name: Trace or TraceExpr}``: the outputs as expressions."""
        from pencils.outputs import TraceExpr

        raw = self._factory() if self._factory is not None else self._outputs
        if not isinstance(raw, dict):
            raw = {"value": raw}
        _check_names(raw)
        out = {}
        for name, x in raw.items():
            if isinstance(x, (str, bytes)):  # sympy would read a string as a symbol
                raise ValueError(f"output {name!r} is not a trace or a function of traces: got the string {x!r}")
            try:
                TraceExpr.of(x)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"output {name!r} is not a trace or a function of traces: {exc}") from None
            out[name] = x
        if not out:
            raise ValueError("derive needs at least one output")
        return out

    @property
    def key(self) -> str:
        """The model's cache key (the description of its expressions)."""
        if self._key is None:
            from pencils.linearize import describe

            desc = describe(tuple((n, self._description(x)) for n, x in sorted(self.expressions.items())))
            self._key = "model:" + hashlib.sha256(desc.encode()).hexdigest()[:20]
        return self._key

    @staticmethod
    def _description(x):
        from pencils.outputs import split_output

        traces, combine = split_output(x)
        return (tuple(sorted(traces.items())), combine)

    def _split(self) -> tuple[dict, dict]:
        """``(systems, combines)``: one trace per system (a trace shared by outputs derived
        once; an output that is one linear trace names its own system) and each output's
        combination of system symbols."""
        import sympy

        from pencils.outputs import split_output

        by_key: dict = {}
        traces: dict = {}
        combines: dict = {}
        for name, x in self.expressions.items():
            ts, combine = split_output(x)
            plain = len(ts) == 1 and combine == sympy.Symbol(next(iter(ts)))
            rename = {}
            for tname, t in ts.items():
                if t.key not in by_key:
                    sname = name if plain else f"{name}_{tname}"
                    by_key[t.key] = sname
                    traces[sname] = t
                rename[sympy.Symbol(tname)] = sympy.Symbol(by_key[t.key])
            combines[name] = combine.xreplace(rename)
        return traces, combines

    @property
    def reduced(self):
        """The reduced system (:class:`pencils.reduce.ReducedSystem`): core equations and
        read-outs of every output; disk-cached."""
        return cached("derived-reduced", self.key, self._reduce, code=self._code(DERIVING_CODE))

    def _code(self, narrow: tuple) -> tuple | None:
        """The cache fingerprint's packages: ``narrow`` when the key describes the expressions,
        every deriving package (``None``) when a factory's cheap key names them."""
        return narrow if self._factory is None else None

    def _reduce(self):
        import sympy

        from pencils.expr import measure_of
        from pencils.freeprob import equations
        from pencils.reduce import ReducedSystem, reduce_systems

        traces, combines = self._split()
        R = reduce_systems({n: equations(t) for n, t in traces.items()}, cache=False) if traces else None
        if R is not None and all(combines[n] == sympy.Symbol(n) for n in combines) and \
                set(combines) == set(R.outputs):
            return R
        sys_out = {} if R is None else {sympy.Symbol(n): e for n, e in R.outputs.items()}
        outputs = {n: sympy.sympify(c).xreplace(sys_out) for n, c in combines.items()}
        free = {s for e in outputs.values() for s in e.free_symbols if measure_of(s) is None}
        step_syms = set() if R is None else {s for kind, *rest in R.steps for s in
                                            ((rest[0],) if kind == "let" else rest[0].unknowns)}
        params = {p.name: p for p in (() if R is None else R.params)}
        params.update({s.name: s for s in free - step_syms if s.name not in params})
        if R is None:
            return ReducedSystem(tuple(sorted(params.values(), key=lambda s: s.name)), (), outputs,
                                 dict(raw_unknowns={}, raw_blocks={}, core=0, readouts=0, steps=0), {})
        return ReducedSystem(tuple(sorted(params.values(), key=lambda s: s.name)), R.steps, outputs, R.sizes,
                             R.meanings)

    @cached_property
    def layout(self) -> dict:
        """Parameter, output and program names (plain data, cached apart from the sympy system,
        so that a warm start with a compiled kernel on disk loads no sympy)."""
        def make():
            lay = solver_layout(self.reduced)
            lay["spectral"] = bool(lay["measures"])
            lay["assumptions"] = _assumptions(self.reduced.params)
            return lay

        return cached("derived-layout", self.key, make, expected=dict, code=self._code(KERNEL_CODE))

    @property
    def params(self) -> tuple:
        return tuple(self.layout["params"])

    @property
    def outputs(self) -> tuple:
        return tuple(self.layout["outputs"])

    @cached_property
    def solver(self) -> ReducedSolver:
        """The compiled solver (one per process)."""
        cont = self.continuation if self.continuation in self.params else None
        return ReducedSolver(key=self._solver_key or self.key, layout=self.layout, loader=lambda: self.reduced,
                             options=SolveOptions(continuation=cont), code=self._code(KERNEL_CODE))

    def __repr__(self) -> str:
        return f"DerivedModel(outputs={list(self.outputs)}, params={list(self.params)})"

    # -- equations ---------------------------------------------------------------------------
    def equations(self, raw: bool = False):
        """The reduced system (``.latex()`` renders it); ``raw=True``: the raw operator-valued
        fixed-point system of each trace (:class:`pencils.freeprob.FixedPointSystem`)."""
        if raw:
            from pencils.freeprob import equations

            return {n: equations(t) for n, t in self._split()[0].items()}
        return self.reduced

    # -- numbers -----------------------------------------------------------------------------
    def problem(self, spectrum=None, *, params=None, mp_params=None, continuation: int | None = None,
                nonnegative: tuple = ()) -> Problem:
        """The ladder's view of this model (:class:`derivations.ladder.Problem`). By default the
        user's parameters are the model's, in the order of :attr:`params`; a caller with
        parameters of its own (the DSM theory) passes the maps ``params(raw)`` and
        ``mp_params(point, dps)`` and the index of its ridge-like parameter. ``nonnegative``:
        outputs that cannot be negative (the ladder refuses mpmath roots where they are)."""
        names = self.params
        if params is None:
            def params(raw):
                return dict(zip(names, raw))

            def mp_params(point, dps):
                with mpmath.workdps(dps):
                    return {n: mpmath.mpmathify(v) for n, v in zip(names, point)}

            if continuation is None and self.continuation in names:
                continuation = names.index(self.continuation)
        return Problem(solver=self.solver, quantities=self.outputs, params=params, mp_params=mp_params,
                       spectrum=spectrum, continuation=continuation, nonnegative=tuple(nonnegative))

    def _spectrum(self, spectrum):
        """The measures of the model's spectral means, checked: ``(atoms, weights)`` of
        ``Sigma``'s spectrum (:func:`derivations.model.spectral_measure`) for a model with only
        ``f(Sigma)`` factors; ``{measure: (atoms, weights)}`` with profile measures
        (:func:`pencils.expr.profile`; :mod:`numerics.measures` reads the atoms)."""
        need = [m for m, _ in self.layout.get("measures", ())]
        if not need:
            if spectrum is not None:
                raise ValueError("this model has no spectral factor f(Sigma) or profile: spectrum= is not used")
            return None
        if spectrum is None:
            what = "eigenvalues, or (atoms, weights)" if need == ["nu"] else \
                f"{{measure: (atoms, weights)}} for the measures {need}"
            raise ValueError(f"this model averages over {need}: pass spectrum= ({what})")
        if not isinstance(spectrum, dict):
            if need != ["nu"]:
                raise ValueError(f"this model averages over the measures {need}: pass spectrum= as "
                                 "{measure: (atoms, weights)}")
            return spectral_measure(spectrum)
        if set(spectrum) != set(need):
            raise ValueError(f"spectrum= must give the measures {need}, got {sorted(spectrum)}")
        out = {}
        for m, value in spectrum.items():
            if m == "nu":
                out[m] = spectral_measure(value)
                continue
            try:
                atoms, w = value
            except (TypeError, ValueError):
                raise ValueError(f"measure {m!r}: give (atoms, weights)") from None
            w = np.asarray(w, dtype=float).reshape(-1)
            if w.size == 0 or not np.all(np.isfinite(w)) or np.any(w < 0) or abs(w.sum() - 1.0) > 1e-9:
                raise ValueError(f"measure {m!r}: weights must be finite, non-negative and sum to 1")
            out[m] = (atoms, w)
        return out

    def _arrays(self, params: dict) -> list:
        missing = [n for n in self.params if n not in params]
        unknown = sorted(set(params) - set(self.params))
        if missing or unknown:
            raise TypeError(f"the model's parameters are {list(self.params)}"
                            + (f"; missing {missing}" if missing else "") + (f"; unknown {unknown}" if unknown else ""))
        out = []
        assumptions = self._assumptions()
        for n in self.params:
            a = np.asarray(params[n])
            if a.dtype == object or a.dtype == bool or not np.issubdtype(a.dtype, np.number):
                raise ValueError(f"parameter {n} must be a number or an array of numbers, got {params[n]!r}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"parameter {n} must be finite")
            kind = assumptions.get(n)
            if kind and np.iscomplexobj(a) and np.any(a.imag != 0):
                raise ValueError(f"parameter {n} is declared {kind}: it must be real")
            if kind == "positive" and np.any(a.real <= 0):
                raise ValueError(f"parameter {n} is declared positive, got min {a.real.min():g}")
            if kind == "nonnegative" and np.any(a.real < 0):
                raise ValueError(f"parameter {n} is declared nonnegative, got min {a.real.min():g}")
            out.append(a.real.astype(float) if kind else a)
        return out

    def _assumptions(self) -> dict:
        return self.layout.get("assumptions") or _assumptions(self.reduced.params)

    def solve(self, *, spectrum=None, precision: int | None = None, throw: bool = True, check_rounding: bool = True,
              refine=True, rtol: float = 1e-8, atol: float = 1e-12, **params) -> Solution:
        """Every output at every point of the broadcast grid of ``params`` (name -> number or array).

        The precision ladder (module docstring; :mod:`derivations.ladder`): ``check_rounding``
        estimates each double-precision value's rounding error; a point whose estimate
        exceeds ``rtol |value| + atol`` is refined (``refine=True``: double-double, then
        mpmath; ``"dd"``: double-double only; ``False``: flagged). ``precision=dps``: every
        point in mpmath at ``dps`` digits. ``throw``: raise :class:`numerics.ConvergenceError`
        if a point is unresolved (else it is NaN with ``converged = False`` and a ``cause``).
        ``spectrum``: the spectral measure of models with ``f(Sigma)`` factors.
        A parameter declared ``positive`` or ``nonnegative`` (sympy assumptions) is checked.
        """
        arrays = self._arrays(params)
        spec = self._spectrum(spectrum)
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
        flat = [np.broadcast_to(a, shape).reshape(-1) for a in arrays]
        complex_ = any(np.iscomplexobj(a) for a in flat)
        if complex_:
            flat = [a.astype(complex) for a in flat]
        exact = precision is not None
        if exact:
            check_precision(precision)
        if refine not in (True, False, "dd"):
            raise ValueError(f"refine must be True, False or 'dd', got {refine!r}")
        size = int(np.prod(shape))
        led = Ledger.empty(size, exact, self.outputs, complex_)
        if size:
            climb(self.problem(spec), np.arange(size), flat, led, precision=precision, check_rounding=check_rounding,
                  refine=refine, rtol=rtol, atol=atol, solve_options={})
        for q in self.outputs:
            led.values[q][~led.converged] = np.nan
        if throw and not led.converged.all():
            raise ConvergenceError(self._unresolved(flat, led), None)
        values = {q: v.reshape(shape) for q, v in led.values.items()}
        return Solution(values=values, converged=led.converged.reshape(shape), residual=led.residual.reshape(shape),
                        iterations=led.iterations.reshape(shape), rounding_error=led.rounding.reshape(shape),
                        refined=led.refined.reshape(shape), refined_mpmath=led.refined_mpmath.reshape(shape),
                        cause=led.cause.reshape(shape), precision=int(precision) if exact else None)

    def _unresolved(self, flat, led: Ledger) -> str:
        bad = np.nonzero(~led.converged)[0]
        k = bad[0]
        chain = [c for c in str(led.cause[k] or "residual").split("+") if c]
        point = ", ".join(f"{n}={a[k]}" for n, a in zip(self.params, flat))
        return (f"{len(bad)} of {led.converged.size} points are unresolved, e.g. {point}: "
                + "; then ".join(CAUSES[c] for c in chain)
                + "; try precision=... with more digits, or throw=False to flag these points")

    # -- Monte Carlo -------------------------------------------------------------------------
    def simulate(self, d=(100, 200, 400), seeds: int = 8, *, spectrum=None, seed: int = 0, **params) -> ModelSimulation:
        """Monte Carlo of every output at one point: the expressions realised at each ``d``
        (:class:`pencils.sample.Realisation`; one draw serves all outputs), averaged over
        ``seeds`` draws and extrapolated to ``d -> inf``. Reproducible: draw ``k`` at ``d``
        uses ``numpy.random.default_rng([seed, d, k])``."""
        from numerics.extrapolate import fit_inverse_d
        from pencils.outputs import TraceExpr, evaluate_output, split_output
        from pencils.sample import Realisation

        arrays = self._arrays(params)
        if any(a.size != 1 for a in arrays):
            raise ValueError("simulate() runs at one point: pass scalar parameters")
        values = {n: a.reshape(()).item() for n, a in zip(self.params, arrays)}
        d_values = tuple(int(x) for x in np.atleast_1d(d))
        if len(set(d_values)) != len(d_values) or any(x < 2 for x in d_values):
            raise ValueError(f"d must be distinct integers >= 2, got {d}")
        if not isinstance(seeds, (int, np.integer)) or seeds < 2:
            raise ValueError(f"seeds must be an integer >= 2 (the standard error needs two), got {seeds!r}")
        spec = self._spectrum(spectrum)
        parts = {n: split_output(TraceExpr.of(x)) for n, x in self.expressions.items()}
        mean, se = {n: [] for n in parts}, {n: [] for n in parts}
        for dd in d_values:
            draws = {n: [] for n in parts}
            for k in range(seeds):
                real = Realisation(dd, values, np.random.default_rng([seed, dd, k]), spec)
                for n, (traces, combine) in parts.items():
                    vals = dict(values, **{t: real.trace(tr) for t, tr in traces.items()})
                    draws[n].append(complex(evaluate_output(combine, vals)))
            for n, v in draws.items():
                v = np.asarray(v)
                v = v.real if np.all(v.imag == 0) else v
                mean[n].append(v.mean())
                se[n].append(v.std(ddof=1) / math.sqrt(seeds))
        limit, limit_se = {}, {}
        for n in parts:
            m_, s_ = np.asarray(mean[n]), np.asarray(se[n], dtype=float)
            if len(d_values) < 2:
                limit[n], limit_se[n] = m_[0], s_[0]
                continue
            s_ = np.maximum(s_, 1e-300)
            re = fit_inverse_d(d_values, m_.real, s_)
            if np.iscomplexobj(m_):
                im = fit_inverse_d(d_values, m_.imag, s_)
                limit[n], limit_se[n] = complex(re.c0, im.c0), math.hypot(re.c0_se, im.c0_se)
            else:
                limit[n], limit_se[n] = re.c0, re.c0_se
        return ModelSimulation(d_values=d_values, seeds=int(seeds), mean={n: np.asarray(v) for n, v in mean.items()},
                               se={n: np.asarray(v) for n, v in se.items()}, limit=limit, limit_se=limit_se)


def derive(outputs, *, continuation: str | None = "lam") -> DerivedModel:
    """Derive a model from normalised traces (module docstring).

    ``outputs``: a :class:`pencils.expr.Trace`, a rational function of traces
    (:class:`pencils.outputs.TraceExpr`: ``Trace * Trace``, ``1 / Trace``, ...) or a dict
    ``{name: trace}``; a single output is named ``"value"``. ``continuation``: the name of a
    ridge-like parameter (positive, the equations degenerate as it goes to 0) that the
    mpmath rung may walk down to reach a point double precision cannot; ``None`` for none.
    The derivation is lazy (first :meth:`DerivedModel.solve` or :attr:`DerivedModel.reduced`)
    and disk-cached: a second run does not re-derive.
    """
    if continuation is not None and not isinstance(continuation, str):
        raise ValueError(f"continuation must be a parameter name or None, got {continuation!r}")
    model = DerivedModel(outputs, continuation=continuation)
    model.expressions  # checks the outputs now (names, traces), the derivation itself stays lazy
    return model
