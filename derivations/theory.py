"""The public DSM theory object returned by :func:`pencils.build`.

``theory = pencils.build(activation)`` gives the asymptotic (``d, n, p -> inf``)
learning curves of ``MODEL.md`` for that activation:

* ``theory.coefficients`` -- the Gaussian-equivalence numbers ``mu0, mu1, mu_*^2`` and
  ``mu_s^2(t)``, ``mu_f^2(t)``;
* ``theory.equations(m)`` -- the derived fixed-point systems (sympy, ``.latex()``);
* ``theory.errors(psi_n, psi_p, t, lam, m, precision=None)`` -- ``.test``, ``.train``,
  ``.dsm_test_loss`` broadcast over all array arguments, with per-point diagnostics;
  ``precision=dps`` re-solves in mpmath at ``dps`` digits;
* ``theory.peaks(...)``, ``theory.ridgeless(...)`` -- the interpolation peaks along
  ``psi_p`` and the ``lam -> 0+`` limit (:mod:`derivations.peaks`).

The symbolic derivation is shared by every activation (the activation only enters
through the numbers ``mu1, mu_s, mu_f, mu_*``), cached on disk, and compiled once per process.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import mpmath
import numpy as np

from numerics import ConvergenceError, Solver, compile as compile_system, solve_mp

from .dsm import QUANTITIES, DSMEquations, dsm_equations, dsm_system, m_kind

__all__ = ["DSMTheory", "Errors", "Coefficients", "parse_m"]


def parse_m(m) -> float:
    """``m`` as ``int >= 1`` or ``math.inf`` (accepts ``"inf"``); ``ValueError`` otherwise.

    >>> parse_m("inf"), parse_m(4.0), parse_m("16")
    (inf, 4, 16)
    """
    if isinstance(m, str):
        text = m.strip().lower()
        if text in ("inf", "infinity", "∞"):
            return math.inf
        if not text.lstrip("+").isdigit():
            raise ValueError(f"m must be an integer >= 1 or 'inf', got {m!r}")
        m = int(text)
    if isinstance(m, bool):
        raise ValueError(f"m must be an integer >= 1 or inf, got {m!r}")
    try:
        value = float(m)
    except (TypeError, ValueError):
        raise ValueError(f"m must be an integer >= 1 or inf, got {m!r}") from None
    if math.isnan(value):
        raise ValueError("m is NaN")
    if math.isinf(value):
        if value < 0:
            raise ValueError("m must be >= 1, got -inf")
        return math.inf
    if value != int(value):
        raise ValueError(f"finite m must be an integer, got {m!r}")
    if value < 1:
        raise ValueError(f"m must be >= 1, got {m!r}")
    return int(value)


@lru_cache(maxsize=None)
def _solver(kind: str, quantity: str) -> Solver:
    return compile_system(dsm_system(kind, quantity))


@dataclass(frozen=True)
class Coefficients:
    """Gaussian-equivalence numbers of an activation (``MODEL.md``).

    ``mu_s_sq(t)`` and ``mu_f_sq(t)`` are vectorised over the diffusion time ``t``
    (two noisy copies of one data point have pre-activation correlation ``a_t^2 = e^{-2t}``).
    """

    activation: object

    @property
    def mu0(self) -> float:
        return float(self.activation.mu0)

    @property
    def mu1(self) -> float:
        return float(self.activation.mu1)

    @property
    def mu_star_sq(self) -> float:
        return float(self.activation.mu_star_sq)

    def mu_s_sq(self, t):
        return np.asarray(self.activation.mu_s_sq(np.exp(-2.0 * np.asarray(t, dtype=float))))

    def mu_f_sq(self, t):
        a_sq = np.exp(-2.0 * np.asarray(t, dtype=float))
        return np.clip(np.asarray(self.activation.mu_f_sq(a_sq)), 0.0, None)

    def __repr__(self) -> str:
        return (f"Coefficients({self.activation.name}: mu0={self.mu0:.6g}, mu1={self.mu1:.6g}, "
                f"mu_star_sq={self.mu_star_sq:.6g})")


@dataclass(frozen=True)
class Errors:
    """Learning curves on a broadcast grid.

    ``test``, ``train``, ``dsm_test_loss`` are numpy arrays (0-d for scalar input;
    dtype ``object`` holding ``mpmath.mpf`` when solved with ``precision``).
    ``converged`` is per point; ``residual`` is the larger relative residual of the two
    systems; ``iterations`` the larger iteration count; ``rounding_error`` the larger
    estimated absolute rounding error (0 when not estimated or with ``precision``).
    Unconverged or untrustworthy points are NaN (only returned with ``throw=False``).
    """

    test: np.ndarray
    train: np.ndarray
    dsm_test_loss: np.ndarray
    converged: np.ndarray
    residual: np.ndarray
    iterations: np.ndarray
    rounding_error: np.ndarray
    precision: int | None = None


def _check_positive(name: str, x: np.ndarray, allow_zero: bool = False) -> None:
    if x.dtype == object or not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise ValueError(f"{name} must be real numbers")
    if np.any(np.isnan(x)):
        raise ValueError(f"{name} is NaN")
    if np.any(np.isinf(x)):
        raise ValueError(f"{name} must be finite")
    if np.any(x < 0) or (not allow_zero and np.any(x == 0)):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got min {x.min()}")


class DSMTheory:
    """Asymptotic DSM learning curves of one activation (see module docstring)."""

    def __init__(self, activation):
        self.activation = activation
        self.coefficients = Coefficients(activation)

    def __repr__(self) -> str:
        return f"DSMTheory({self.activation.name})"

    # -- equations -------------------------------------------------------------
    def equations(self, m=1) -> DSMEquations:
        """The derived fixed-point systems of ``E_test`` and ``E_train`` for this ``m``.

        All finite ``m >= 2`` share one system with ``m`` as a parameter; ``m = 1`` and
        ``m = inf`` have their own (smaller) systems.
        """
        return dsm_equations(parse_m(m))

    # -- numbers -----------------------------------------------------------------
    def solver_params(self, psi_n, psi_p, t, lam, m) -> dict:
        """Numeric parameters of the derived systems (broadcast arrays)."""
        t = np.asarray(t, dtype=float)
        c = self.coefficients
        return dict(psi_n=psi_n, psi_p=psi_p, lam=lam, m=m, a=np.exp(-t), Delta=-np.expm1(-2.0 * t),
                    mu1=c.mu1, mu_star=math.sqrt(max(c.mu_star_sq, 0.0)),
                    mu_s=np.sqrt(np.clip(c.mu_s_sq(t), 0.0, None)), mu_f=np.sqrt(c.mu_f_sq(t)))

    def errors(self, psi_n, psi_p, t, lam, m=1, precision: int | None = None, throw: bool = True,
               check_rounding: bool = True, rtol: float = 1e-8, atol: float = 1e-10,
               **solve_options) -> Errors:
        """Test error, train error and DSM test loss, broadcast over all array arguments.

        ``m``: integers ``>= 1`` and ``math.inf`` / ``"inf"`` (scalar or array).
        ``precision``: ``None`` for double precision (vectorised numpy solver) or a number
        of decimal digits for the mpmath backend (one point at a time, started from the
        double-precision solution or, where that failed, by continuation in ``lam``).
        ``throw``: raise :class:`numerics.ConvergenceError` if any point does not converge
        (else those points are NaN and flagged).
        ``check_rounding``: estimate the rounding error of each double-precision value by
        re-solving with the parameters moved by a few ulps (doubles the cost); a point whose
        estimate exceeds ``rtol |value| + atol`` is flagged like an unconverged one -- near
        the interpolation peak the equations are so ill-conditioned that a tiny residual
        no longer means an accurate value (use ``precision=`` there).  Both errors live on
        the scale 1 (the zero score has ``E_test = Delta_t``, ``E_train = 1``), hence the
        absolute floor ``atol``: a memorising train error of ``1e-7`` is reported to ``1e-10``.

        >>> import pencils
        >>> e = pencils.build("relu").errors(psi_n=2, psi_p=[1, 4], t=0.5, lam=1e-2, m="inf")
        >>> e.test.round(4).tolist(), bool(e.converged.all())
        ([0.2941, 0.117], True)
        """
        arrays = [np.asarray(x, dtype=float) for x in (psi_n, psi_p, t, lam)]
        for name, x in zip(("psi_n", "psi_p", "t", "lam"), arrays):
            _check_positive(name, x)
        m_arr = np.asarray(m, dtype=object)
        m_vals = np.vectorize(parse_m, otypes=[float])(m_arr) if m_arr.ndim else np.asarray(parse_m(m_arr.item()))
        shape = np.broadcast_shapes(*(x.shape for x in arrays), m_vals.shape)
        flat = [np.broadcast_to(x, shape).reshape(-1) for x in (*arrays, m_vals)]
        size = int(np.prod(shape))
        exact = precision is not None
        if exact and (int(precision) != precision or precision < 15):
            raise ValueError(f"precision is a number of decimal digits >= 15, got {precision!r}")
        dtype = object if exact else float
        out = {q: np.full(size, np.nan, dtype=dtype) for q in QUANTITIES}
        conv = np.zeros(size, dtype=bool)
        resid = np.zeros(size)
        iters = np.zeros(size, dtype=int)
        rounding = np.zeros(size)
        kinds = np.array([m_kind(v) for v in flat[4]])
        for kind in ("1", "finite", "inf"):
            sel = np.nonzero(kinds == kind)[0]
            if not len(sel):
                continue
            raw = [f[sel] for f in flat]
            params = self.solver_params(*raw)
            ok = np.ones(len(sel), dtype=bool)
            for q in QUANTITIES:
                solver = _solver(kind, q)
                checked = check_rounding and not exact
                # With the rounding check the accuracy of the value is measured directly, so the
                # residual only has to show that Newton finished: where the unknowns are large
                # (small lam, memorising regime) the residual floor of double precision is ~1e-12.
                options = dict(dict(tol=1e-10) if checked else {}, **solve_options)
                sol = solver.solve({k: v for k, v in params.items() if k in solver.param_names},
                                   throw=False, estimate_error=checked, **options)
                if exact:
                    out[q][sel] = self._solve_mp(kind, q, raw, sol, int(precision))
                else:
                    good = sol.converged
                    if sol.error is not None:
                        err = np.where(good, sol.error * np.abs(sol.value), np.inf)
                        rounding[sel] = np.maximum(rounding[sel], err)
                        good = good & (err <= rtol * np.abs(sol.value) + atol)
                    out[q][sel] = np.where(good, sol.value, np.nan)
                    ok &= good
                    resid[sel] = np.maximum(resid[sel], sol.residual)
                iters[sel] = np.maximum(iters[sel], sol.iterations)
            conv[sel] = ok
        if throw and not conv.all():
            bad = np.nonzero(~conv)[0]
            k = bad[0]
            raise ConvergenceError(
                f"{len(bad)} of {size} points did not converge, e.g. psi_n={flat[0][k]}, psi_p={flat[1][k]}, "
                f"t={flat[2][k]}, lam={flat[3][k]}, m={flat[4][k]} (residual {resid[k]:.2e}, "
                f"estimated rounding error {rounding[k]:.1e}); "
                "use throw=False to get them flagged, or precision=... near the interpolation peak",
                None)
        a_sq = np.exp(-2.0 * flat[2])
        if exact:
            with mpmath.workdps(int(precision)):
                loss = np.array([v + mpmath.exp(-2 * mpmath.mpf(tt)) for v, tt in zip(out["test"], flat[2])],
                                dtype=object)
        else:
            loss = out["test"] + a_sq
        return Errors(test=out["test"].reshape(shape), train=out["train"].reshape(shape),
                      dsm_test_loss=loss.reshape(shape), converged=conv.reshape(shape),
                      residual=resid.reshape(shape), iterations=iters.reshape(shape),
                      rounding_error=rounding.reshape(shape), precision=int(precision) if exact else None)

    # -- peaks and the ridgeless limit -------------------------------------------------
    def peaks(self, psi_n, t, m, lam, **kw):
        """Local maxima of ``E_test`` along ``psi_p`` (:func:`derivations.peaks.find_peaks`)."""
        from .peaks import find_peaks

        return find_peaks(self, psi_n, t, m, lam, **kw)

    def peak_heights(self, psi_n, t, m, lams, **kw):
        """The peaks at each ridge of ``lams`` (:func:`derivations.peaks.peak_heights`)."""
        from .peaks import peak_heights

        return peak_heights(self, psi_n, t, m, lams, **kw)

    def ridgeless(self, psi_n, psi_p, t, m, **kw):
        """``lam -> 0+`` limits of both errors (:func:`derivations.peaks.ridgeless`)."""
        from .peaks import ridgeless

        return ridgeless(self, psi_n, psi_p, t, m, **kw)

    # -- high precision ------------------------------------------------------------
    def mp_params(self, psi_n, psi_p, t, lam, m, dps: int) -> dict:
        """Parameters at ``dps`` digits; the Gaussian-equivalence numbers come from the
        activation's mpmath path (closed forms or quadrature at ``dps`` digits)."""
        with mpmath.workdps(dps):
            t = mpmath.mpf(t)
            a_sq = mpmath.exp(-2 * t)
            mp = self.activation.coefficients_mp(dps)
            mu_s_sq = self.activation.kernel_mp(a_sq, dps=dps) - mp.mu0 ** 2 - mp.mu1 ** 2 * a_sq
            mu_star_sq = mp.mu_star_sq
            return dict(psi_n=mpmath.mpf(psi_n), psi_p=mpmath.mpf(psi_p), lam=mpmath.mpf(lam),
                        m=mpmath.mpf(m) if math.isfinite(m) else None,
                        a=mpmath.exp(-t), Delta=-mpmath.expm1(-2 * t), mu1=mp.mu1,
                        mu_star=mpmath.sqrt(max(mu_star_sq, 0)), mu_s=mpmath.sqrt(max(mu_s_sq, 0)),
                        mu_f=mpmath.sqrt(max(mu_star_sq - mu_s_sq, 0)))

    def _solve_mp(self, kind, quantity, raw, dsol, dps) -> np.ndarray:
        """mpmath values at the points ``raw = (psi_n, psi_p, t, lam, m)`` (flat arrays);
        raises :class:`numerics.ConvergenceError` if a residual is not verified."""
        system = dsm_system(kind, quantity)
        names = {p.name for p in system.params}
        values = np.empty(len(raw[0]), dtype=object)
        for k in range(len(values)):
            point = [float(r[k]) for r in raw]
            if dsol.converged[k]:
                init = list(dsol.tau[k])
            else:
                init = self._continue_in_lam(kind, quantity, point, dps)
            mp_p = {q: v for q, v in self.mp_params(*point, dps).items() if q in names}
            values[k] = solve_mp(system, mp_p, dps=dps, init=init).value
        return values

    def _continue_in_lam(self, kind, quantity, point, dps, per_decade: int = 8) -> list:
        """Starting point for mpmath Newton where double precision failed.

        Walk the ridge down from ``max(lam, 1e-2)`` to the target ``lam`` geometrically
        (``per_decade`` steps a decade): double precision while it is accurate (one
        vectorised solve with rounding-error estimates), then mpmath Newton from each step
        to the next, predicting each start by geometric extrapolation (the unknowns grow
        like powers of ``lam`` near a peak).
        """
        psi_n, psi_p, t, lam, m = point
        start = max(lam, 1e-2)
        steps = max(1, int(math.ceil(per_decade * math.log10(start / lam))))
        lams = start * (lam / start) ** (np.arange(steps + 1) / steps)
        solver = _solver(kind, quantity)
        params = self.solver_params(psi_n, psi_p, t, lams, m)
        dsol = solver.solve({q: v for q, v in params.items() if q in solver.param_names}, throw=False,
                            estimate_error=True)
        # A start for Newton must be accurate, not just converged: keep well-resolved points.
        ok = np.cumprod(dsol.converged & (dsol.error <= 1e-7)).astype(bool)
        if not ok[0]:
            raise ConvergenceError(f"no double-precision start at lam={start} for {point}", None)
        last = int(np.nonzero(ok)[0][-1])
        system = dsm_system(kind, quantity)
        names = {p.name for p in system.params}

        def solve_at(lam_k, init):
            mp_p = {q: v for q, v in self.mp_params(psi_n, psi_p, t, float(lam_k), m, dps).items() if q in names}
            return list(solve_mp(system, mp_p, dps=dps, init=init).tau)

        prev, tau = None, solve_at(lams[last], list(dsol.tau[last]))
        for lam_k in lams[last + 1:-1]:
            guess = tau if prev is None else [_geometric_step(a, b) for a, b in zip(prev, tau)]
            prev, tau = tau, solve_at(lam_k, guess)
        if prev is not None:
            tau = [_geometric_step(a, b) for a, b in zip(prev, tau)]
        return tau


def _geometric_step(a, b):
    """Predict the next term of a sequence ``a, b, ?`` on a geometric grid of ``lam``:
    ``b^2 / a`` when ``a, b`` have the same sign, else the linear ``2b - a``."""
    if a != 0 and (a > 0) == (b > 0):
        return b * b / a
    return 2 * b - a
