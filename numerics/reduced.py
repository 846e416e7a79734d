"""Compiled solver of a :class:`pencils.reduce.ReducedSystem`: Newton on the small
nonlinear core, explicit read-outs, vectorised over any grid of parameters.

The program of the reduced system (core stages and ``let`` steps) is turned into plain
Python functions by sympy's printers with common sub-expressions shared (``cse``):

* per run of consecutive ``let`` steps, one function filling the environment;
* per core stage, ``fmap(E, u) -> f(u)`` and ``fjac(E, u) -> (f(u), df/du)``, the Jacobian
  by forward differentiation along the stage's local program (analytic, straight-line).

Solving a core stage ``u = f(u)`` at every point of a flat batch (each point on its own:
the iteration of one point never looks at another, so a point's value and flag do not
depend on which other points share the call):

1. cold start ``u = f(0)`` (the large-argument / large-ridge limit of the traces);
2. damped fixed-point steps ``u <- u + w (f(u) - u)`` until the relative residual is below
   ``fp_tol``: the map is a contraction towards the physical (Stieltjes) branch;
3. Newton ``u <- u - s (I - f')^{-1} (u - f(u))`` with step halving ``s``;
4. the root must attract the damped map (spectral radius of ``(I + f')/2`` below 1; the
   physical root does, checked on 4500 random points of the DSM systems); points that are
   unconverged or repelling are re-solved by continuation in the ridge ``lam`` (when the
   system has one): from ``lam = max(lam, 1)`` down to the target, geometrically, Newton
   at each step from the previous one, and stay flagged if that fails too.

Each point gets a relative residual ``max|u - f(u)| / max(1, max|u|)``, an iteration
count and ``converged``.  The outputs are explicit functions of the core, so their only
error is rounding; :meth:`ReducedSolver.solve` estimates it on request by re-solving with
the parameters moved by a few ulps (warm-started, two Newton steps).

Complex parameters (a spectral argument off the real axis, :mod:`derivations.training_time`):
the whole batch runs in complex arithmetic (the compiled kernel's complex library, else the
numpy path), with the same algorithm; the damped fixed point from the cold start selects the
physical branch as for the raw systems (checked against :mod:`numerics.fixedpoint` at random
complex points, ``tests/test_reduced_complex.py``).  Real input stays real.

The mpmath backend (:meth:`ReducedSolver.solve_mp`) runs the same program at any
precision, point by point, with a verified residual.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pencils.cache import cached

from ._errors import ConvergenceError
from .kernel import DD_EPS, KERNEL_CFG, kernel_enabled, kernel_source, load_kernel, rounding_signs

__all__ = ["ReducedSolver", "ReducedSolution", "compile_reduced", "solver_layout"]

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


@dataclass(frozen=True)
class ReducedSolution:
    """Per-point results on the broadcast grid: ``values[name]`` (NaN where not converged),
    ``core`` (the core unknowns, ``grid + (K,)``), ``residual``, ``iterations``,
    ``converged`` and, when requested, ``error[name]`` (estimated absolute rounding error)."""

    values: dict
    core: np.ndarray
    residual: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray
    error: dict | None = None


# -- code generation ------------------------------------------------------------------


def _printer(backend: str):
    from sympy.printing.numpy import NumPyPrinter
    from sympy.printing.pycode import MpmathPrinter

    if backend == "numpy":
        return NumPyPrinter({"fully_qualified_modules": True, "allow_unknown_functions": False})
    if backend == "mpmath":
        return MpmathPrinter({"fully_qualified_modules": True})
    raise ValueError(f"unknown backend {backend!r} (use 'numpy' or 'mpmath')")


def _function(name: str, reads: list, assigns: list, returns: list | None, backend: str,
              unknowns: tuple = (), store: bool = True) -> str:
    """Source of ``def name(E, u=None)``: reads symbols from the environment ``E`` (and the
    unknowns from ``u[j]``), computes ``assigns`` (``(symbol, expr)``, in order; stored
    back into ``E`` when ``store``) and returns the list ``returns``."""
    import sympy

    from pencils.expr import S_NU, SpectralMean

    pr = _printer(backend)
    lines = [f"def {name}(E, u=None):"]
    lines += [f"    {s.name} = E[{s.name!r}]" for s in reads]
    lines += [f"    {s.name} = u[{j}]" for j, s in enumerate(unknowns)]
    names = sympy.numbered_symbols("c_")
    means = sympy.numbered_symbols("mean_")

    def hoist(exprs: list) -> list:
        """Spectral means become nested functions of ``s_nu`` averaged by ``spectral_mean``."""
        out = []
        for e in exprs:
            rep = {}
            for m in sorted(sympy.sympify(e).atoms(SpectralMean), key=sympy.default_sort_key):
                sym = next(means)
                repl, (red,) = sympy.cse([m.args[0]], symbols=names, order="none")
                lines.append(f"    def _f_{sym.name}({S_NU.name}):")
                lines.extend(f"        {c.name} = {pr.doprint(x)}" for c, x in repl)
                lines.append(f"        return {pr.doprint(red)}")
                lines.append(f"    {sym.name} = spectral_mean(E, _f_{sym.name})")
                rep[m] = sym
            out.append(sympy.sympify(e).xreplace(rep))
        return out

    # The assignments are sequential (a step reads the ones before), so each is simplified
    # by cse on its own; the returned expressions share their sub-expressions.
    for s, e in assigns:
        (e,) = hoist([e])
        repl, (red,) = sympy.cse([e], symbols=names, order="none")
        lines += [f"    {c.name} = {pr.doprint(x)}" for c, x in repl]
        lines.append(f"    {s.name} = {pr.doprint(red)}")
        if store:
            lines.append(f"    E[{s.name!r}] = {s.name}")
    if returns is not None:
        rets = hoist(list(returns))
        repl, reduced = sympy.cse(rets, symbols=names, order="none")
        lines += [f"    {c.name} = {pr.doprint(x)}" for c, x in repl]
        lines.append("    return [" + ", ".join(pr.doprint(e) for e in reduced) + "]")
    return "\n".join(lines) + "\n"


def segments_of(R) -> list:
    """The program as segments: ``("let", [(sym, expr)...])`` and ``("core", stage)``."""
    out: list = []
    for kind, *rest in R.steps:
        if kind == "let":
            if out and out[-1][0] == "let":
                out[-1][1].append(tuple(rest))
            else:
                out.append(("let", [tuple(rest)]))
        else:
            out.append(("core", rest[0]))
    return out


def _reads(exprs, defined: set) -> list:
    import sympy

    from pencils.expr import S_NU

    syms = set().union(*(sympy.sympify(e).free_symbols for e in exprs)) if exprs else set()
    return sorted(syms - defined - {S_NU}, key=lambda s: s.name)


def _source(R, backend: str) -> str:
    parts = []
    for k, (kind, body) in enumerate(segments_of(R)):
        if kind == "let":
            parts.append(_function(f"seg_{k}", _reads([e for _, e in body], {s for s, _ in body}), body,
                                   None, backend))
            continue
        st = body
        prog, jprog = list(st.program), list(st.jac_program)
        local = set(st.unknowns) | {s for s, _ in prog + jprog}
        reads = _reads([e for _, e in prog + jprog] + list(st.maps) + list(st.jacobian), local)
        parts.append(_function(f"map_{k}", reads, prog, list(st.maps), backend, st.unknowns, store=False))
        parts.append(_function(f"jac_{k}", reads, prog + jprog, list(st.maps) + list(st.jacobian), backend,
                               st.unknowns, store=False))
        parts.append(_function(f"fill_{k}", reads, prog, list(st.eliminated), backend, st.unknowns, store=False))
    outs = list(R.outputs.values())
    parts.append(_function("outputs", _reads(outs, set()), [], outs, backend))
    return "\n".join(parts)


def generate_reduced_source(R, backend: str = "numpy", key: str | None = None) -> str:
    """Python source of the compiled program for ``backend``, cached on disk under
    ``key`` (a cheap name fixed by the caller) or, by default, the system itself.
    ``R`` may be a function returning the system: it is called only to generate."""
    get = R if callable(R) else (lambda: R)
    if key is None:
        from pencils.linearize import describe

        key = describe((get().steps, tuple(get().outputs.items())))
    return cached(f"reduced-codegen-{backend}", key, lambda: _source(get(), backend))


def _spectral_mean_numpy(E, f):
    """``E_nu[f(s)]`` on a batch: atoms along axis 0 (``nu_s``, ``nu_w`` of shape ``(A, 1)``)."""
    return np.sum(E["nu_w"] * f(E["nu_s"]), axis=0)


def _spectral_mean_mpmath(E, f):
    import mpmath

    return mpmath.fsum(w * f(s) for s, w in zip(E["nu_s"], E["nu_w"]))


def _namespace(R, backend: str, key: str | None) -> dict:
    import mpmath

    ns: dict = {"numpy": np, "mpmath": mpmath,
                "spectral_mean": _spectral_mean_numpy if backend == "numpy" else _spectral_mean_mpmath}
    exec(compile(generate_reduced_source(R, backend, key), f"<reduced-{backend}>", "exec"), ns)
    return ns


# -- the solver ---------------------------------------------------------------------------


class ReducedSolver:
    """Vectorised solver of a :class:`~pencils.reduce.ReducedSystem` (module docstring).

    >>> import sympy
    >>> from pencils.expr import Space, D, gaussian, inverse, trace
    >>> from pencils.freeprob import equations
    >>> from pencils.reduce import reduce_systems
    >>> g, lam = sympy.symbols("gamma lam", positive=True)
    >>> X = gaussian("X", Space("n", 1 / g), D)
    >>> solver = compile_reduced(reduce_systems({"mp": equations(trace(inverse(g * X.T @ X + lam)))}))
    >>> sol = solver.solve(dict(gamma=0.5, lam=[1.0, 2.0]))
    >>> bool(sol.converged.all()), sol.values["mp"].shape
    (True, (2,))
    """

    def __init__(self, reduced=None, key: str | None = None, *, layout: dict | None = None, loader=None):
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
        self._layout = layout
        self._seg = None
        self._ns = {b: None for b in ("numpy", "mpmath")}
        self._key = key
        self._compiled = None

    @property
    def reduced(self):
        """The :class:`~pencils.reduce.ReducedSystem` (loaded on first use when the solver
        was made from its layout: the compiled kernel alone needs no sympy)."""
        if self._reduced is None:
            self._reduced = self._loader()
        return self._reduced

    def _layout_segments(self) -> tuple:
        """The program's segments by name: ``("let",)`` or ``("core", unknowns, eliminated)``."""
        if "segments" not in self._layout:
            self._layout = solver_layout(self.reduced)
        return self._layout["segments"]

    @property
    def _segments(self) -> list:
        if self._seg is None:
            self._seg = segments_of(self.reduced)
        return self._seg

    def _fns(self, backend: str) -> dict:
        if self._ns[backend] is None:
            # with a key, the cached source needs no system (a warm mpmath start loads no sympy)
            self._ns[backend] = _namespace((lambda: self.reduced) if self._key is not None else self.reduced,
                                           backend, self._key)
        return self._ns[backend]

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

    # -- one core stage --------------------------------------------------------------
    @staticmethod
    def _spectrum(spectrum, conv) -> dict:
        if spectrum is None:
            return {}
        s, w = spectrum
        if conv is np.asarray:
            return {"nu_s": np.asarray(s, dtype=float).reshape(-1, 1),
                    "nu_w": np.asarray(w, dtype=float).reshape(-1, 1)}
        return {"nu_s": [conv(x) for x in s], "nu_w": [conv(x) for x in w]}

    def _stage(self, fns, k, E, u, opts, its):
        """Solve stage ``k`` at every point of the batch ``E``: ``u`` (K, size) is the start."""
        from .fixedpoint import _safe_solve

        fmap, fjac = fns[f"map_{k}"], fns[f"jac_{k}"]
        size = u.shape[1]
        K = u.shape[0]

        def residual(uu, ff):
            scale = np.maximum(1.0, np.max(np.abs(uu), axis=0))
            r = np.max(np.abs(uu - ff), axis=0) / scale
            return np.where(np.isfinite(r), r, np.inf)

        with np.errstate(all="ignore"):
            f = _stack(fmap(E, u), K, size, u.dtype)
            res = residual(u, f)
            # damped fixed point: selects the physical branch
            active = res > opts["fp_tol"]
            w = opts["damping"]
            for _ in range(opts["fp_maxiter"]):
                if not active.any():
                    break
                idx = np.nonzero(active)[0]
                Ea = _take(E, idx)
                ua = u[:, idx] + w * (f[:, idx] - u[:, idx])
                fa = _stack(fmap(Ea, ua), K, len(idx), u.dtype)
                u[:, idx], f[:, idx] = ua, fa
                res[idx] = residual(ua, fa)
                its[idx] += 1
                active[idx] = res[idx] > opts["fp_tol"]
            # Newton with step halving, per point, polished beyond tol (a residual at tol
            # leaves an error of cond * tol in the values; one more step removes it)
            target = min(opts["tol"], 1e-15)
            active = res > target
            for _ in range(opts["maxiter"]):
                if not active.any():
                    break
                idx = np.nonzero(active)[0]
                Ea = _take(E, idx)
                out = _stack(fjac(Ea, u[:, idx]), K + K * K, len(idx), u.dtype)
                fa = out[:K]
                J = out[K:].reshape(K, K, len(idx)).transpose(2, 0, 1)
                A = np.eye(K)[None] - J
                rhs = (u[:, idx] - fa).T
                step = _safe_solve(A, rhs).T
                r0 = residual(u[:, idx], fa)
                s = np.ones(len(idx))
                best_u, best_f, best_r = u[:, idx].copy(), fa.copy(), r0.copy()
                for _h in range(8):  # halve the step where the residual does not drop
                    cand = u[:, idx] - s * step
                    fc = _stack(fmap(Ea, cand), K, len(idx), u.dtype)
                    rc = residual(cand, fc)
                    better = rc < best_r
                    best_u[:, better], best_f[:, better], best_r[better] = cand[:, better], fc[:, better], rc[better]
                    done = better | (rc <= r0)
                    if done.all():
                        break
                    s = np.where(done, s, s / 2)
                stuck = best_r >= r0
                u[:, idx], f[:, idx], res[idx] = best_u, best_f, best_r
                its[idx] += 1
                active[idx] = (best_r > target) & ~stuck
        return u, res

    def _solve_flat(self, flat: dict, size: int, init, opts) -> tuple:
        fns = self._fns("numpy")
        E = dict(flat)
        dtype = _dtype(flat)
        cores, res_all = [], np.zeros(size)
        its = np.zeros(size, dtype=int)
        offset = 0
        for k, (kind, body) in enumerate(self._segments):
            if kind == "let":
                with np.errstate(all="ignore"):
                    fns[f"seg_{k}"](E)
                continue
            K = len(body.unknowns)
            if init is not None:
                u = np.array(init[offset:offset + K], dtype=dtype).reshape(K, size)
            else:
                with np.errstate(all="ignore"):
                    u = _stack(fns[f"map_{k}"](E, np.zeros((K, size))), K, size, dtype)
            u, res = self._stage(fns, k, E, u, opts, its)
            # the rounding check's warm re-solves read the values only: no attractivity test
            stable = self._attracting(fns, k, E, u, K) if opts.get("attracting", True) else np.ones(size, bool)
            bad = ~(res <= opts["tol"]) | ~stable
            if bad.any() and "lam" in E and opts["continuation"] and not np.any(np.imag(E["lam"])):
                idx = np.nonzero(bad)[0]
                Ei = _take(E, idx)
                u_c, res_c = self._lam_continuation(fns, k, Ei, K, opts, its, idx)
                stable_c = self._attracting(fns, k, Ei, u_c, K)
                fix = stable_c & ((res_c < res[idx]) | ~stable[idx])
                u[:, idx[fix]], res[idx[fix]] = u_c[:, fix], res_c[fix]
                stable[idx[fix]] = True
            res = np.where(stable, res, np.inf)  # a repelling root is not the physical one
            for j, s in enumerate(body.unknowns):
                E[s.name] = u[j]
            if body.eliminated:
                with np.errstate(all="ignore"):
                    filled = _stack(fns[f"fill_{k}"](E, u), len(body.eliminated), size, dtype)
                for j, s in enumerate(body.eliminated):
                    E[s.name] = filled[j]
            cores.append(u)
            res_all = np.maximum(res_all, res)
            offset += K
        with np.errstate(all="ignore"):
            vals = [np.broadcast_to(np.asarray(v, dtype=dtype), (size,)).copy() for v in fns["outputs"](E)]
        core = np.concatenate(cores, axis=0) if cores else np.zeros((0, size))
        return dict(zip(self.outputs, vals)), core, res_all, its

    @staticmethod
    def _attracting(fns, k, E, u, K) -> np.ndarray:
        """Whether ``u`` attracts the damped map ``u + (f(u) - u)/2`` (spectral radius of
        ``(I + f')/2`` below 1): the physical (Stieltjes) root does; other roots of the
        same equations that Newton can reach from a poor start need not."""
        size = u.shape[1]
        with np.errstate(all="ignore"):
            J = _stack(fns[f"jac_{k}"](E, u), K + K * K, size, u.dtype)[K:].reshape(K, K, size).transpose(2, 0, 1)
            A = 0.5 * (np.eye(K)[None] + J)
            ok = np.all(np.isfinite(A), axis=(1, 2))
            rho = np.full(size, np.inf)
            if ok.any():
                rho[ok] = np.max(np.abs(np.linalg.eigvals(A[ok])), axis=1)
        return rho < 1.0

    def _lam_continuation(self, fns, k, E, K, opts, its, idx):
        """Walk ``lam`` down from ``max(lam, 1)`` to the target (per point, geometric steps:
        ``ceil(per_decade * log10(start / target))`` of them, so a point's path does not
        depend on the other points of the batch)."""
        target = np.real(E["lam"]).copy()  # real ridge (a complex batch stores it as complex)
        start = np.maximum(target, 1.0)
        steps = np.maximum(1, np.ceil(opts["per_decade"] * np.log10(start / target)).astype(int))
        local = dict(E)
        its_local = np.zeros(len(target), dtype=int)
        u = None
        res = np.full(len(target), np.inf)
        for j in range(int(steps.max(initial=0)) + 1):
            local["lam"] = start * (target / start) ** (np.minimum(j, steps) / steps)
            for seg_k, (kind, body) in enumerate(self._segments[:k]):
                if kind == "let":
                    with np.errstate(all="ignore"):
                        fns[f"seg_{seg_k}"](local)
            if u is None:
                with np.errstate(all="ignore"):
                    u = _stack(fns[f"map_{k}"](local, np.zeros((K, len(target)))), K, len(target), _dtype(local))
                u, res = self._stage(fns, k, local, u, opts, its_local)
            else:  # only the points still walking: the others have reached their target
                walk = np.nonzero(j <= steps)[0]
                its_walk = its_local[walk]
                u_w, res_w = self._stage(fns, k, _take(local, walk), u[:, walk].copy(), dict(opts, fp_maxiter=0),
                                         its_walk)
                u[:, walk], res[walk], its_local[walk] = u_w, res_w, its_walk
        its[idx] += its_local
        return u, res

    # -- public ------------------------------------------------------------------------
    def solve(self, params: dict, *, spectrum=None, tol: float = 1e-12, fp_tol: float = 1e-3, damping: float = 0.5,
              fp_maxiter: int = 300, maxiter: int = 60, continuation: bool = True, per_decade: int = 4,
              init=None, estimate_error: bool = False, throw: bool = True,
              chunk: int = 8192, backend: str | None = None) -> ReducedSolution:
        """Solve at every point of the broadcast grid of ``params`` (name -> array).

        ``tol``: relative residual of the core; ``fp_tol``: switch from the damped fixed
        point to Newton; ``continuation``: re-solve failed points by walking ``lam`` down;
        ``init``: warm start (core unknowns, shape ``(K,) + grid``; Newton only);
        ``estimate_error``: add ``error[name]``, the estimated absolute rounding error.
        ``spectrum``: ``(eigenvalues, weights)`` of the spectral measure, for systems with
        spectral means (structured data).  ``chunk``: points solved at once (memory bound).
        ``backend``: ``"kernel"`` (compiled per-point code, :mod:`numerics.kernel`; the
        default when a C++ compiler is found and ``DSM_KERNEL`` is not ``numpy``) or ``"numpy"``
        (vectorised arrays; the reference implementation of the same algorithm).

        Complex parameters (a spectral argument ``z`` off the real axis): when any
        parameter is complex the whole batch is solved in complex arithmetic (the kernel's
        complex library, or the numpy path); values, core and ``init`` are then complex.  The branch is selected as for real input: the
        damped fixed point from the cold start, and the root must attract the damped map.
        Real input is solved in real arithmetic, as before.
        """
        if backend not in (None, "kernel", "numpy"):
            raise ValueError(f"backend must be 'kernel' or 'numpy', got {backend!r}")
        flat, shape = self._flat_params(params)
        complex_ = _dtype(flat) is complex
        kernel = None
        if backend == "kernel" or (backend is None and kernel_enabled()):
            kernel = self._kernel()
            if kernel is None and backend == "kernel":
                raise ValueError("backend='kernel': the compiled kernel is not available (see the KernelWarning)")
        flat.update(self._spectrum(spectrum, np.asarray))
        size = int(np.prod(shape))
        opts = dict(tol=tol, fp_tol=fp_tol, damping=damping, fp_maxiter=fp_maxiter, maxiter=maxiter,
                    continuation=continuation, per_decade=per_decade)
        if init is not None:
            init = np.asarray(init, dtype=complex if complex_ else float).reshape(self.n_core, size)
            opts["fp_maxiter"] = 0
        if kernel is not None:
            out = self._solve_kernel(kernel, flat, size, init, opts, estimate_error)
            if out is not None:
                return self._finish(*out, shape, tol, throw)
            if backend == "kernel":
                raise ValueError("backend='kernel': the compiled kernel is not available (see the KernelWarning)")
        # Points are solved independently, so chunks change nothing but the memory: the
        # program keeps one array per step (a few hundred) for the points of a chunk.
        parts = []
        for lo in range(0, size, chunk):
            hi = min(size, lo + chunk)
            fl = {k: (v if k.startswith("nu_") else v[lo:hi]) for k, v in flat.items()}
            part = self._solve_flat(fl, hi - lo, None if init is None else init[:, lo:hi], opts)
            err = self._rounding(fl, hi - lo, part[1], part[0], opts) if estimate_error else None
            parts.append((*part, err))
        vals = {name: np.concatenate([pt[0][name] for pt in parts]) for name in self.outputs}
        core = np.concatenate([pt[1] for pt in parts], axis=1)
        res = np.concatenate([pt[2] for pt in parts])
        its = np.concatenate([pt[3] for pt in parts])
        error = None
        if estimate_error:
            error = {name: np.concatenate([pt[4][name] for pt in parts]) for name in self.outputs}
        return self._finish(vals, core, res, its, error, shape, tol, throw)

    def _finish(self, vals, core, res, its, error, shape, tol, throw) -> ReducedSolution:
        """Flag, NaN and reshape the flat results (shared by the numpy and kernel paths)."""
        size = res.size
        conv = (res <= tol) & np.all([np.isfinite(v) for v in vals.values()], axis=0)
        for name in vals:
            vals[name] = np.where(conv, vals[name], np.nan).reshape(shape)
        sol = ReducedSolution(values=vals, core=core.T.reshape(shape + (self.n_core,)),
                              residual=res.reshape(shape), iterations=its.reshape(shape),
                              converged=conv.reshape(shape),
                              error=None if error is None else {k: v.reshape(shape) for k, v in error.items()})
        if throw and not conv.all():
            bad = int(np.sum(~conv))
            raise ConvergenceError(f"{bad} of {size} points did not converge (residual up to "
                                   f"{np.nanmax(np.where(conv, 0, res)):.2e})", sol)
        return sol

    def _kernel(self):
        """The compiled per-point kernel (:mod:`numerics.kernel`), built on first use;
        ``None`` when it cannot be built (then the numpy path runs)."""
        if self._compiled is None:
            if self._key is None:  # named by the system itself
                from pencils.linearize import describe

                self._key = "system:" + describe((self.reduced.steps, tuple(self.reduced.outputs.items())))
            self._compiled = load_kernel(self._key, self.param_names, self.outputs, self.n_core,
                                              lambda: kernel_source(self.reduced)) or False
        return self._compiled or None

    def _solve_kernel(self, kernel, flat, size, init, opts, estimate, precision="double") -> tuple:
        """All points by the compiled kernel (the algorithm of :meth:`_solve_flat` and
        :meth:`_rounding`, one point at a time)."""
        P = np.empty((size, len(self.param_names)), dtype=_dtype(flat))
        for j, name in enumerate(self.param_names):
            P[:, j] = flat[name]
        spectrum = (flat["nu_s"].reshape(-1), flat["nu_w"].reshape(-1)) if "nu_s" in flat else None
        dd = precision == "dd"
        # double-double restarts from a double-precision root already tested for attractivity
        cfg = np.array([opts[k] for k in KERNEL_CFG[:-2]] + [DD_POLISH if dd else 1e-15, 0.0 if dd else 1.0],
                       dtype=float)
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

    def refine_dd(self, params: dict, core, *, spectrum=None, tol: float = 1e-28, maxiter: int = 20) -> ReducedSolution:
        """Re-solve points in double-double arithmetic (about 32 digits), Newton from the
        double-precision ``core`` (shape ``grid + (K,)``), with the rounding estimate at
        double-double ulps.  ``None`` when the compiled kernel is not available."""
        flat, shape = self._flat_params(params)
        if _dtype(flat) is complex:
            raise ValueError("refine_dd (the compiled kernel) is real-only: got complex parameters")
        kernel = self._kernel() if kernel_enabled() else None
        if kernel is None:
            return None
        flat.update(self._spectrum(spectrum, np.asarray))
        size = int(np.prod(shape))
        init = np.asarray(core, dtype=float).reshape(size, self.n_core).T
        opts = dict(tol=tol, fp_tol=0.0, damping=0.5, fp_maxiter=0, maxiter=maxiter, continuation=False,
                    per_decade=4)
        out = self._solve_kernel(kernel, flat, size, init, opts, True, "dd")
        if out is None:
            return None
        vals, core, res, its, error = out
        return self._finish(vals, core, res, its, error, shape, tol, False)

    def _rounding(self, flat, size, core, vals, opts) -> dict:
        """Estimated absolute rounding error of each output: re-solve (warm) with every
        parameter moved by ``ROUNDING_ULPS`` ulps in a fixed sign pattern."""
        eps = np.finfo(float).eps * ROUNDING_ULPS
        out = {name: np.zeros(size) for name in vals}
        for signs in rounding_signs(len(self.param_names)):  # the kernel's three patterns
            moved = dict(flat)
            for j, k in enumerate(self.param_names):
                moved[k] = flat[k] * (1.0 + signs[j] * eps)
            v2, _, _, _ = self._solve_flat(moved, size, core, dict(opts, fp_maxiter=0, continuation=False,
                                                                 attracting=False))
            for name, v in vals.items():
                d = np.abs(v2[name] - v)
                out[name] = np.maximum(out[name], np.where(np.isfinite(d), d, np.inf))
        tiny = 8 * np.finfo(float).eps
        return {name: ROUNDING_SAFETY * d + tiny * np.maximum(1.0, np.abs(vals[name])) for name, d in out.items()}

    # -- mpmath ----------------------------------------------------------------------
    def solve_mp(self, params: dict, dps: int, init=None, tol=None, maxiter: int = 100,
                 spectrum=None) -> dict:
        """One point at ``dps`` digits (``params``: name -> number, mpmath or float).

        Newton on each core stage from ``init`` (or the cold start), verified: raises
        :class:`ConvergenceError` if the residual is not below ``tol`` (default ``10^(-dps+5)``).
        Returns ``{"values": {name: mpf}, "core": [mpf], "residual": mpf}``.
        """
        import mpmath

        fns = self._fns("mpmath")
        with mpmath.workdps(dps):
            tol = mpmath.mpf(10) ** (-dps + 5) if tol is None else mpmath.mpf(tol)
            E = {k: mpmath.mpf(params[k]) for k in self.param_names}
            E.update(self._spectrum(spectrum, mpmath.mpf))
            core, worst, offset = [], mpmath.mpf(0), 0
            for k, (kind, *names) in enumerate(self._layout_segments()):
                if kind == "let":
                    fns[f"seg_{k}"](E)
                    continue
                unknowns, eliminated = names
                K = len(unknowns)
                if init is not None:
                    u = [mpmath.mpf(x) for x in init[offset:offset + K]]
                else:
                    u = list(fns[f"map_{k}"](E, [mpmath.mpf(0)] * K))
                res = None
                for _ in range(maxiter):
                    out = fns[f"jac_{k}"](E, u)
                    f, J = out[:K], out[K:]
                    F = mpmath.matrix([u[i] - f[i] for i in range(K)])
                    scale = max(mpmath.mpf(1), max(abs(x) for x in u))
                    res = max(abs(x) for x in F) / scale
                    if res <= tol:
                        break
                    A = mpmath.matrix(K, K)
                    for i in range(K):
                        for j in range(K):
                            A[i, j] = (1 if i == j else 0) - J[i * K + j]
                    step = mpmath.lu_solve(A, F)
                    u = [u[i] - step[i] for i in range(K)]
                if res is None or not res <= tol:
                    raise ConvergenceError(f"mpmath Newton did not converge at {dps} digits "
                                           f"(residual {mpmath.nstr(res, 3)})", None)
                for name, x in zip(unknowns, u):
                    E[name] = x
                for name, x in zip(eliminated, fns[f"fill_{k}"](E, u)):
                    E[name] = x
                core += u
                worst = max(worst, res)
                offset += K
            vals = fns["outputs"](E)
            return {"values": dict(zip(self.outputs, vals)), "core": core, "residual": worst}


def _take(E: dict, idx) -> dict:
    """The points ``idx`` of a batch (the spectral measure ``nu_*`` is shared by all)."""
    return {k: (v[idx] if isinstance(v, np.ndarray) and v.ndim and not k.startswith("nu_") else v)
            for k, v in E.items()}


def _stack(values, rows: int, size: int, dtype=float) -> np.ndarray:
    """Generated functions return scalars where an entry is constant: broadcast them."""
    return np.array([np.broadcast_to(np.asarray(v, dtype=dtype), (size,)) for v in values],
                    dtype=dtype).reshape(rows, size)


def _dtype(flat: dict):
    """``complex`` when any parameter of the batch is complex, else ``float``."""
    return complex if any(np.iscomplexobj(v) for k, v in flat.items() if not k.startswith("nu_")) else float


def solver_layout(reduced) -> dict:
    """What a solver needs to know of its system without sympy: parameter names, output
    names, the number of core unknowns and the program's segments by name (plain data,
    cached beside the system)."""
    segments = tuple(("let",) if kind == "let" else
                     ("core", tuple(u.name for u in body.unknowns), tuple(e.name for e in body.eliminated))
                     for kind, body in segments_of(reduced))
    return dict(params=tuple(p.name for p in reduced.params), outputs=tuple(reduced.outputs),
                n_core=len(reduced.core_unknowns), segments=segments)


def compile_reduced(reduced, key: str | None = None) -> ReducedSolver:
    """The vectorised solver of a reduced system (see :class:`ReducedSolver`); ``key``
    names its generated code in the disk cache (default: the system's description)."""
    return ReducedSolver(reduced, key)
