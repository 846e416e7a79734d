"""Compiled solver of a :class:`pencils.reduce.ReducedSystem`: Newton on the small
nonlinear core, explicit read-outs, vectorised over any grid of parameters.

The program of the reduced system (core stages and ``let`` steps) is printed as plain Python
functions (:func:`numerics.codegen.python.reduced_source`): per run of ``let`` steps one
function filling the environment; per core stage ``map_k(E, u) -> f(u)`` and ``jac_k(E, u)
-> (f(u), df/du)`` (the Jacobian by forward differentiation along the stage's program).

Backends, one algorithm (:mod:`numerics.stages`) and one vocabulary (:mod:`numerics.options`):

* ``"kernel"``: the compiled per-point C++ (:mod:`numerics.kernel`), the default when a
  compiler is found; ``"numpy"``: vectorised arrays, the reference implementation;
* :meth:`ReducedSolver.refine_dd`: Newton in double-double arithmetic (the kernel's ``dd``
  library) from a double-precision core;
* :meth:`ReducedSolver.solve_mp`: one point at any precision (mpmath), residual verified.

Each point gets a residual ``max|u - f(u)| / max(1, max|u|)``, an iteration count and a
:class:`~numerics.options.Result` code (``converged`` derives from it).  The outputs are
explicit functions of the core, so their only error is rounding; :meth:`ReducedSolver.solve`
estimates it on request (absolute) by re-solving with the parameters moved by a few ulps
(warm-started).

Complex parameters (a spectral argument off the real axis, :mod:`derivations.training_time`):
the whole batch runs in complex arithmetic (the kernel's complex library, else numpy), with
the same algorithm; the damped fixed point from the cold start selects the physical branch
(checked against :mod:`numerics.fixedpoint`, ``tests/test_reduced_complex.py``).  Real input
stays real.
"""
from __future__ import annotations

import numpy as np

from pencils.cache import cached

from ._errors import ConvergenceError
from .kernel import kernel_enabled, load_kernel
from .measures import environment as measure_environment
from .measures import from_environment
from .measures import normalise as normalise_measures
from .measures import pack as pack_measures
from .options import DD_EPS, KERNEL_CFG, READOUT_SAFETY, ReducedSolution, Result, SolveOptions, result_codes, rounding_signs
from .stages import MPMATH, dtype_of, iterate, readout_rounding, run_program

__all__ = ["ReducedSolver", "ReducedSolution", "compile_reduced", "solver_layout", "SolveOptions", "Result"]

#: Relative size of the parameter moves of the rounding check, in units of machine epsilon.
ROUNDING_ULPS = 4.0
#: The rounding estimate is this many times the largest observed change.  Checked against
#: double-double values (``tests/test_kernel.py``; 146k accepted points over m = 1, 4, 16, inf,
#: lam = 1e-2..1e-6, t = 0.1..2): with 16 the true error reached 1.02 estimates at one point,
#: so 32 leaves a margin of 2.  (With 4 it missed by up to 2.5x.)  Where a point is flagged
#: (estimate above the acceptance threshold) the value is noise and the estimate is not a
#: bound: it fell short by up to 4400x deep in memorisation at lam = 1e-6.
ROUNDING_SAFETY = 32.0
#: Newton's target residual in double-double (the kernel's refinement).
DD_POLISH = 1e-30
#: Sign patterns of the double-double rounding check.  One: the estimates it gives are
#: 1e-19 relative or smaller where the acceptance threshold is 1e-8, and a second pattern
#: changes an estimate by a factor of 2.5 at most (as in double precision).
DD_PATTERNS = 1


def generate_reduced_source(R, backend: str = "numpy", key: str | None = None, code: tuple | None = None) -> str:
    """Python source of the compiled program for ``backend``, cached on disk under
    ``key`` (a cheap name fixed by the caller) or, by default, the system itself.
    ``R`` may be a function returning the system: it is called only to generate.
    ``code``: the packages the system behind ``key`` and this source depend on (the cache
    key's fingerprint, :func:`pencils.cache.cached`; default all deriving packages)."""
    get = R if callable(R) else (lambda: R)
    if key is None:
        from pencils.linearize import describe

        key = describe((get().steps, tuple(get().outputs.items())))

    def generate():
        from .codegen.python import reduced_source

        return reduced_source(get(), backend)

    return cached(f"reduced-codegen-{backend}", key, generate, code=code)


def _spectral_mean_numpy(E, f, weights: str, atoms: tuple):
    """``E_mu[f(coordinates)]`` on a batch: atoms along axis 0 (arrays of shape ``(A, 1)``,
    :mod:`numerics.codegen.measures`)."""
    return np.sum(E[weights] * f(*(E[k] for k in atoms)), axis=0)


def _spectral_mean_mpmath(E, f, weights: str, atoms: tuple):
    import mpmath

    return mpmath.fsum(w * f(*x) for w, *x in zip(E[weights], *(E[k] for k in atoms)))


def _namespace(R, backend: str, key: str | None, code: tuple | None = None) -> dict:
    import mpmath

    ns: dict = {"numpy": np, "mpmath": mpmath,
                "spectral_mean": _spectral_mean_numpy if backend == "numpy" else _spectral_mean_mpmath}
    exec(compile(generate_reduced_source(R, backend, key, code), f"<reduced-{backend}>", "exec"), ns)
    return ns


class ReducedSolver:
    """Vectorised solver of a :class:`~pencils.reduce.ReducedSystem` (module docstring).
    ``options``: the default :class:`SolveOptions` of :meth:`solve` (the caller declares
    the continuation parameter there, if any).

    >>> import sympy
    >>> from pencils.expr import Space, D, gaussian, inverse, trace
    >>> from pencils.freeprob import equations
    >>> from pencils.reduce import reduce_systems
    >>> g, lam = sympy.symbols("gamma lam", positive=True)
    >>> X = gaussian("X", Space("n", 1 / g), D)
    >>> solver = compile_reduced(reduce_systems({"mp": equations(trace(inverse(g * X.T @ X + lam)))}))
    >>> sol = solver.solve(dict(gamma=0.5, lam=[1.0, 2.0]), continuation="lam")
    >>> bool(sol.converged.all()), sol.values["mp"].shape, Result(sol.result[0]).name
    (True, (2,), 'OK')
    """

    def __init__(self, reduced=None, key: str | None = None, *, layout: dict | None = None, loader=None,
                 options: SolveOptions = SolveOptions(), code: tuple | None = None):
        if reduced is not None:
            from pencils.reduce import ReducedSystem

            if not isinstance(reduced, ReducedSystem):
                raise ValueError("compile_reduced needs a pencils.reduce.ReducedSystem")
            layout = solver_layout(reduced)
        elif layout is None or loader is None:
            raise ValueError("ReducedSolver needs a reduced system, or its layout and a loader")
        self._reduced, self._loader = reduced, loader
        self.param_names = tuple(layout["params"])
        self.outputs = tuple(layout["outputs"])
        self.n_core = int(layout["n_core"])
        self.options = options
        self._layout = layout
        self._ns = {b: None for b in ("numpy", "mpmath")}
        self._key = key
        self._code = code  # what the system named by key depends on (None: every deriving package)
        self._compiled: dict = {}  # continuation parameter -> kernel (False: unavailable)

    @property
    def reduced(self):
        """The :class:`~pencils.reduce.ReducedSystem` (loaded on first use when the solver
        was made from its layout: the compiled kernel alone needs no sympy)."""
        if self._reduced is None:
            self._reduced = self._loader()
        return self._reduced

    @property
    def segments(self) -> tuple:
        """The program's segments by name: ``("let",)`` or ``("core", unknowns, eliminated, linear)``."""
        if "segments" not in self._layout:
            self._layout = solver_layout(self.reduced)
        return self._layout["segments"]

    def _fns(self, backend: str) -> dict:
        if self._ns[backend] is None:
            # with a key, the cached source needs no system (a warm mpmath start loads no sympy)
            self._ns[backend] = _namespace((lambda: self.reduced) if self._key is not None else self.reduced,
                                           backend, self._key, self._code)
        return self._ns[backend]

    def _options(self, options, overrides) -> SolveOptions:
        return (self.options if options is None else options).replace(**overrides)

    # -- parameters ------------------------------------------------------------------
    def _flat_params(self, params: dict) -> tuple[dict, tuple]:
        missing = [n for n in self.param_names if n not in params]
        if missing:
            raise ValueError(f"missing parameters {missing} (the system needs {list(self.param_names)})")
        extra = sorted(set(params) - set(self.param_names))
        if extra:
            raise ValueError(f"unknown parameters {extra} (the system needs {list(self.param_names)})")
        # float for real input (the real path is unchanged); complex when any parameter is
        # complex (spectral parameters off the real axis), all parameters then complex
        raw = {k: np.asarray(params[k]) for k in self.param_names}
        for k, v in raw.items():
            if v.dtype == object or not (np.issubdtype(v.dtype, np.number) or v.dtype == bool):
                raise ValueError(f"parameter {k} must be numeric")
        dtype = complex if any(np.iscomplexobj(v) for v in raw.values()) else float
        arrays = {k: v.astype(dtype) for k, v in raw.items()}
        for k, v in arrays.items():
            if not np.all(np.isfinite(v)):
                raise ValueError(f"parameter {k} is not finite")
        shape = np.broadcast_shapes(*(v.shape for v in arrays.values()))
        return {k: np.broadcast_to(v, shape).reshape(-1).copy() for k, v in arrays.items()}, shape

    @property
    def measures(self) -> tuple:
        """``((measure, coordinate names), ...)`` the program averages over
        (:mod:`numerics.codegen.measures`)."""
        if "measures" not in self._layout:  # a layout cached before measures were recorded
            self._layout = solver_layout(self.reduced)
        return self._layout["measures"]

    def _spectrum(self, spectrum, conv) -> dict:
        """The environment entries of ``spectrum`` (``(atoms, weights)`` of ``nu``, or
        ``{measure: (atoms, weights)}``; :mod:`numerics.codegen.measures`)."""
        if not self.measures:  # nothing to average over (the facade refuses a needless spectrum)
            return {}
        return measure_environment(normalise_measures(spectrum, self.measures), conv)

    # -- public ------------------------------------------------------------------------
    def solve(self, params: dict, options: SolveOptions | None = None, *, spectrum=None, init=None,
              estimate_error: bool = False, throw: bool = True, chunk: int = 8192, backend: str | None = None,
              **overrides) -> ReducedSolution:
        """Solve at every point of the broadcast grid of ``params`` (name -> array).

        ``options`` (default: the solver's), with ``overrides`` by field name
        (:class:`SolveOptions`: ``tol``, ``fp_tol``, ``damping``, ``fp_maxiter``,
        ``newton_maxiter``, ``continuation``, ``per_decade``).  ``init``: warm start (core
        unknowns, shape ``(K,) + grid``; Newton only); ``estimate_error``: add
        ``error[name]``, the estimated absolute rounding error.  ``spectrum``:
        ``(eigenvalues, weights)`` of the spectral measure, for systems with spectral means
        (structured data).  ``chunk``: points solved at once by numpy (memory bound).
        ``backend``: ``"kernel"`` (compiled per-point code; the default when a C++ compiler
        is found and ``DSM_KERNEL`` is not ``numpy``) or ``"numpy"`` (the reference).

        Complex parameters: when any parameter is complex the whole batch is solved in
        complex arithmetic (values, core and ``init`` complex), the branch selected as for
        real input.  Real input is solved in real arithmetic.
        """
        if backend not in (None, "kernel", "numpy"):
            raise ValueError(f"backend must be 'kernel' or 'numpy', got {backend!r}")
        opts = self._options(options, overrides)
        flat, shape = self._flat_params(params)
        complex_ = dtype_of(flat) is complex
        kernel = None
        if backend == "kernel" or (backend is None and kernel_enabled()):
            kernel = self._kernel(opts.continuation)
            if kernel is None and backend == "kernel":
                raise ValueError("backend='kernel': the compiled kernel is not available (see the KernelWarning)")
        flat.update(self._spectrum(spectrum, np.asarray))
        size = int(np.prod(shape))
        if init is not None:
            init = np.asarray(init, dtype=complex if complex_ else float).reshape(self.n_core, size)
            opts = opts.replace(fp_maxiter=0)
        if kernel is not None:
            out = self._solve_kernel(kernel, flat, size, init, opts, estimate_error)
            if out is not None:
                vals, core, res, its, error = out
                if estimate_error and complex_:  # the real kernel re-solves in long double; complex: numpy's twin
                    error = self._with_readout(flat, core, vals, error)
                return self._finish(vals, core, res, its, error, shape, opts.tol, throw)
            if backend == "kernel":
                raise ValueError("backend='kernel': the compiled kernel is not available (see the KernelWarning)")
        # Points are solved independently, so chunks change nothing but the memory: the
        # program keeps one array per step (a few hundred) for the points of a chunk.
        parts = []
        for lo in range(0, size, chunk):
            hi = min(size, lo + chunk)
            fl = {k: (v if k.startswith("nu_") else v[lo:hi]) for k, v in flat.items()}
            part = self._solve_numpy(fl, hi - lo, None if init is None else init[:, lo:hi], opts)
            err = self._rounding(fl, hi - lo, part[1], part[0], opts) if estimate_error else None
            if estimate_error:
                err = self._with_readout(fl, part[1], part[0], err, sensitivity=not complex_)
            parts.append((*part, err))
        vals = {name: np.concatenate([pt[0][name] for pt in parts]) for name in self.outputs}
        core = np.concatenate([pt[1] for pt in parts], axis=1)
        res = np.concatenate([pt[2] for pt in parts])
        its = np.concatenate([pt[3] for pt in parts])
        error = None
        if estimate_error:
            error = {name: np.concatenate([pt[4][name] for pt in parts]) for name in self.outputs}
        return self._finish(vals, core, res, its, error, shape, opts.tol, throw)

    def _solve_numpy(self, flat: dict, size: int, init, opts: SolveOptions, attract: bool = True) -> tuple:
        vals, core, res, its = run_program(self._fns("numpy"), self.segments, dict(flat), size, init, opts,
                                           attract=attract)
        return dict(zip(self.outputs, vals)), core, res, its

    def _with_readout(self, flat, core, vals, error, sensitivity: bool = False) -> dict:
        """Add the read-outs' own rounding error (:func:`numerics.stages.readout_rounding`,
        ``READOUT_SAFETY`` times the measured difference) to the estimate ``error``."""
        extra = readout_rounding(self._fns("numpy"), self.segments, flat, core, vals, sensitivity)
        if extra is None:
            return error
        return {k: error[k] + np.where(np.isfinite(extra[k]), READOUT_SAFETY * extra[k], np.inf) for k in error}

    def _finish(self, vals, core, res, its, error, shape, tol, throw, ok=Result.OK) -> ReducedSolution:
        """Code, NaN and reshape the flat results (shared by the numpy and kernel paths)."""
        size = res.size
        result = result_codes(res, np.all([np.isfinite(v) for v in vals.values()], axis=0), tol, ok)
        conv = result == ok
        for name in vals:
            vals[name] = np.where(conv, vals[name], np.nan).reshape(shape)
        sol = ReducedSolution(values=vals, core=core.T.reshape(shape + (self.n_core,)),
                              residual=res.reshape(shape), iterations=its.reshape(shape),
                              result=result.reshape(shape),
                              error=None if error is None else {k: v.reshape(shape) for k, v in error.items()})
        if throw and not conv.all():
            bad = int(np.sum(~conv))
            raise ConvergenceError(f"{bad} of {size} points did not converge (residual up to "
                                   f"{np.nanmax(np.where(conv, 0, res)):.2e})", sol)
        return sol

    def _kernel(self, continuation: str | None = None):
        """The compiled per-point kernel (:mod:`numerics.kernel`) that can continue in the
        parameter ``continuation`` (compiled in: one kernel per name, the solver's own by
        default), built on first use; ``None`` when it cannot be built (then numpy runs)."""
        name = continuation if continuation in self.param_names else None
        if name is None and self.options.continuation in self.param_names:
            name = self.options.continuation  # off at run time (cfg), no second build
        if name not in self._compiled:
            if self._key is None:  # named by the system itself
                from pencils.linearize import describe

                self._key = "system:" + describe((self.reduced.steps, tuple(self.reduced.outputs.items())))

            def source():
                from .codegen.cxx import kernel_source

                return kernel_source(self.reduced, name)

            key = self._key if name is None else f"{self._key}\0continuation={name}"
            self._compiled[name] = load_kernel(key, self.param_names, self.outputs, self.n_core, source,
                                               self._code) or False
        return self._compiled[name] or None

    def _solve_kernel(self, kernel, flat, size, init, opts: SolveOptions, estimate, precision="double") -> tuple:
        """All points by the compiled kernel (the algorithm of :func:`numerics.stages.run_program`
        and :meth:`_rounding`, one point at a time)."""
        P = np.empty((size, len(self.param_names)), dtype=dtype_of(flat))
        for j, name in enumerate(self.param_names):
            P[:, j] = flat[name]
        spectrum = pack_measures(from_environment(flat, self.measures), self.measures)
        dd = precision == "dd"
        # double-double restarts from a double-precision root already tested for attractivity
        cont = 1.0 if opts.continuation in self.param_names else 0.0  # the kernel's compiled-in parameter
        cfg = np.array([opts.tol, opts.fp_tol, opts.damping, opts.fp_maxiter, opts.newton_maxiter, cont,
                        opts.per_decade, DD_POLISH if dd else 1e-15, 0.0 if dd else 1.0], dtype=float)
        assert len(cfg) == len(KERNEL_CFG)
        eps = (DD_EPS if dd else np.finfo(float).eps) * ROUNDING_ULPS
        tiny = 8 * (DD_EPS if dd else np.finfo(float).eps)
        out = kernel.grid(P, spectrum, cfg, None if init is None else init.T, estimate,
                          rounding_signs(len(self.param_names)), eps, ROUNDING_SAFETY, tiny, precision,
                          DD_PATTERNS if dd else 3)
        if out is None:  # the library of this number type cannot be built
            return None
        V, ERR, CORE, RES, ITS = out
        vals = {name: V[:, j].copy() for j, name in enumerate(self.outputs)}
        error = {name: ERR[:, j].copy() for j, name in enumerate(self.outputs)} if estimate else None
        return vals, CORE.T, RES, ITS, error

    def refine_dd(self, params: dict, core, *, spectrum=None, tol: float = 1e-28,
                  newton_maxiter: int = 20) -> ReducedSolution | None:
        """Re-solve points in double-double arithmetic (about 32 digits), Newton from the
        double-precision ``core`` (shape ``grid + (K,)``), with the rounding estimate at
        double-double ulps; converged points get :attr:`Result.REFINED_DD`.  ``None`` when
        the compiled kernel is not available."""
        flat, shape = self._flat_params(params)
        if dtype_of(flat) is complex:
            raise ValueError("refine_dd (the compiled kernel) is real-only: got complex parameters")
        kernel = self._kernel(self.options.continuation) if kernel_enabled() else None
        if kernel is None:
            return None
        flat.update(self._spectrum(spectrum, np.asarray))
        size = int(np.prod(shape))
        init = np.asarray(core, dtype=float).reshape(size, self.n_core).T
        opts = SolveOptions(tol=tol, fp_tol=0.0, damping=0.5, fp_maxiter=0, newton_maxiter=newton_maxiter,
                            continuation=None, per_decade=4)
        out = self._solve_kernel(kernel, flat, size, init, opts, True, "dd")
        if out is None:
            return None
        vals, core, res, its, error = out
        return self._finish(vals, core, res, its, error, shape, tol, False, ok=Result.REFINED_DD)

    def _rounding(self, flat, size, core, vals, opts: SolveOptions) -> dict:
        """Estimated absolute rounding error of each output: re-solve (warm) with every
        parameter moved by ``ROUNDING_ULPS`` ulps in a fixed sign pattern."""
        eps = np.finfo(float).eps * ROUNDING_ULPS
        out = {name: np.zeros(size) for name in vals}
        warm = opts.replace(fp_maxiter=0, continuation=None)
        for signs in rounding_signs(len(self.param_names)):  # the kernel's three patterns
            moved = dict(flat)
            for j, k in enumerate(self.param_names):
                moved[k] = flat[k] * (1.0 + signs[j] * eps)
            # the moved solves only measure the values: no attractivity test
            v2, _, _, _ = self._solve_numpy(moved, size, core, warm, attract=False)
            for name, v in vals.items():
                d = np.abs(v2[name] - v)
                out[name] = np.maximum(out[name], np.where(np.isfinite(d), d, np.inf))
        tiny = 8 * np.finfo(float).eps
        return {name: ROUNDING_SAFETY * d + tiny * np.maximum(1.0, np.abs(vals[name])) for name, d in out.items()}

    # -- mpmath ----------------------------------------------------------------------
    def solve_mp(self, params: dict, dps: int, init=None, tol=None, newton_maxiter: int = 100,
                 spectrum=None) -> ReducedSolution:
        """One point at ``dps`` digits (``params``: name -> number, mpmath or float).

        Newton on each core stage (:func:`numerics.stages.iterate` on mpmath numbers) from
        ``init`` (or the cold start), verified: raises :class:`ConvergenceError` if the
        residual is not below ``tol`` (default ``10^(-dps+5)``).  Returns a
        :class:`ReducedSolution` of mpmath scalars (``values[name]``, ``core`` a list,
        ``residual``, ``iterations``, ``result`` :attr:`Result.REFINED_MP`).
        """
        import mpmath

        fns = self._fns("mpmath")
        with mpmath.workdps(dps):
            tol = mpmath.mpf(10) ** (-dps + 5) if tol is None else mpmath.mpf(tol)
            opts = SolveOptions(tol=tol, fp_maxiter=0, newton_maxiter=newton_maxiter)
            # complex parameters (spectral arguments off the real axis) become mpc
            E = {k: mpmath.mpmathify(params[k]) for k in self.param_names}
            E.update(self._spectrum(spectrum, mpmath.mpf))
            core, worst, offset = [], mpmath.mpf(0), 0
            its = np.zeros(1, dtype=int)
            for k, (kind, *names) in enumerate(self.segments):
                if kind == "let":
                    fns[f"seg_{k}"](E)
                    continue
                unknowns, eliminated, _linear = names  # (the mpmath stage takes Newton steps only)
                K = len(unknowns)
                start = [mpmath.mpmathify(x) for x in init[offset:offset + K]] if init is not None else \
                    list(fns[f"map_{k}"](E, [mpmath.mpf(0)] * K))
                u = np.empty((K, 1), dtype=object)
                u[:, 0] = start
                fmap, fjac = fns[f"map_{k}"], fns[f"jac_{k}"]
                u, res = iterate(MPMATH, fmap, fjac, E, u, opts, its, tol, halving=False)
                res = res[0]
                if not res <= tol:
                    raise ConvergenceError(f"mpmath Newton did not converge at {dps} digits "
                                           f"(residual {mpmath.nstr(res, 3)})", None)
                u = list(u[:, 0])
                for name, x in zip(unknowns, u):
                    E[name] = x
                for name, x in zip(eliminated, fns[f"fill_{k}"](E, u)):
                    E[name] = x
                core += u
                worst = max(worst, res)
                offset += K
            vals = fns["outputs"](E)
            return ReducedSolution(values=dict(zip(self.outputs, vals)), core=core, residual=worst,
                                   iterations=int(its[0]), result=np.int8(Result.REFINED_MP))


def solver_layout(reduced) -> dict:
    """What a solver needs to know of its system without sympy: parameter names, output
    names, the number of core unknowns and the program's segments by name (plain data,
    cached beside the system)."""
    from .codegen.measures import system_layout

    segments = tuple(("let",) if kind == "let" else
                     ("core", tuple(u.name for u in body.unknowns), tuple(e.name for e in body.eliminated),
                      bool(getattr(body, "linear", False)))
                     for kind, body in reduced.segments)
    return dict(params=tuple(p.name for p in reduced.params), outputs=tuple(reduced.outputs),
                n_core=len(reduced.core_unknowns), segments=segments, measures=system_layout(reduced))


def compile_reduced(reduced, key: str | None = None, options: SolveOptions = SolveOptions()) -> ReducedSolver:
    """The vectorised solver of a reduced system (see :class:`ReducedSolver`); ``key``
    names its generated code in the disk cache (default: the system's description);
    ``options``: its default :class:`SolveOptions`."""
    return ReducedSolver(reduced, key, options=options)
