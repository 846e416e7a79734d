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

How each point is resolved (double, double-double, mpmath) is :mod:`derivations.ladder`;
the model's vocabulary (``parse_m``, :class:`Coefficients`, spectral measures, argument
checks) is :mod:`derivations.model`.

The symbolic derivation is shared by every activation (the activation only enters
through the numbers ``mu1, mu_s, mu_f, mu_*``), cached on disk, and compiled once per process.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from functools import lru_cache

import mpmath
import numpy as np

from numerics._errors import ConvergenceError
from numerics.options import SolveOptions
from numerics.reduced import ReducedSolver
from pencils.activation import QuadratureWarning, activation as _activation

from .derived import DerivedModel
from .ladder import CAUSES, Ledger, Problem, climb
from .model import (QUANTITIES, Coefficients, check_precision, m_kind, parse_m, parse_m_array, real_array,
                    spectral_measure)

# The symbolic side (derivations.dsm, pencils.reduce: sympy) is imported where it is used,
# so that a warm start -- cached layout and compiled kernel -- loads no sympy.

__all__ = ["build", "DSMTheory", "Errors", "Coefficients", "parse_m", "TINY"]

#: The smallest ``psi_n, psi_p, t, lam`` that :meth:`DSMTheory.errors` takes.  Below them the
#: double-precision rung computes products that underflow (``lam`` times the ulp-sized moves
#: of the rounding check, ``psi`` times ``lam``; the double floor is ``2.2e-308``), so no rung
#: of the ladder starts from a meaningful value; such ``lam`` are the ridgeless limit
#: (:meth:`DSMTheory.ridgeless`) to far below any precision away from a peak.
TINY = (1e-100, 1e-100, 1e-100, 1e-150)
TINY_WHY = {"psi_n": "a smaller ratio n/d underflows in the solver's products",
            "psi_p": "a smaller ratio p/d underflows in the solver's products",
            "t": "Delta_t = 1 - exp(-2t) ~ 2t underflows in the solver's products below it",
            "lam": "smaller ridges underflow in double precision; use ridgeless() for lam -> 0"}


def _check_options(train_time, options: dict) -> None:
    """``TypeError`` listing the accepted names for an unknown keyword argument of
    :meth:`DSMTheory.errors` (else it would surface as an error of an internal solver)."""

    extra = ("tol", "nodes", "max_nodes", "quantities") if train_time is not None else \
        tuple(f.name for f in dataclasses.fields(SolveOptions)) + ("backend", "chunk")
    unknown = sorted(set(options) - set(extra))
    if unknown:
        raise TypeError(f"errors() got unknown keyword argument(s) {', '.join(map(repr, unknown))}; accepted: "
                        "psi_n, psi_p, t, lam, m, precision, throw, check_rounding, refine, rtol, atol, train_time"
                        f" and{' with train_time' if train_time is not None else ''} {', '.join(extra)}")


def _system_name(kind: str, structured: bool) -> str:
    return f"dsm:{kind}:{','.join(QUANTITIES)}" + (":structured" if structured else "")


@lru_cache(maxsize=None)
def dsm_model(kind: str, structured: bool = False) -> DerivedModel:
    """The DSM model of one kind of ``m`` as a derived model (:func:`derivations.derived.derive`):
    the traces ``E_test``, ``E_train`` of :func:`derivations.dsm.dsm_traces`, reduced
    together (shared core), disk-cached under a cheap key so that a warm start -- cached
    layout and compiled kernel -- never builds the expressions (no sympy).
    ``structured``: data with a covariance ``Sigma`` (spectral means over its eigenvalues)."""
    def traces():
        from .dsm import dsm_traces

        return dsm_traces(kind, structured)

    return DerivedModel(factory=traces, key=_system_name(kind, structured), continuation="lam",
                        solver_key=f"dsm:{kind}" + (":structured" if structured else ""))


def reduced_system(kind: str, structured: bool = False):
    """The reduced system (:class:`pencils.reduce.ReducedSystem`) of both errors for one
    kind of ``m`` (:func:`dsm_model`)."""
    return dsm_model(kind, structured).reduced


def reduced_solver(kind: str, structured: bool = False) -> ReducedSolver:
    """The compiled solver of :func:`reduced_system` (one per process)."""
    return dsm_model(kind, structured).solver


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
    #: points re-solved in higher precision because double precision could not resolve them:
    #: in double-double by the compiled kernel, else (or where that fails) in mpmath
    refined: np.ndarray | None = None
    #: the subset of ``refined`` solved in ``derivations.ladder.REFINE_DPS``-digit mpmath
    refined_mpmath: np.ndarray | None = None
    #: estimated relative error of the activation's Gaussian-equivalence numbers at each point
    #: (:meth:`derivations.model.Coefficients.error`): the values are only as accurate as their
    #: inputs; ``errors()`` warns (QuadratureWarning) where it exceeds ``rtol``
    coefficient_error: np.ndarray | None = None
    #: spiked covariance only (``spikes=k``): estimated relative error of the conditional
    #: expansion at each point, the larger of its quadrature and rank-truncation estimates
    #: (:mod:`derivations.spiked_theory`); ``errors()`` warns (SpikeWarning) where it exceeds
    #: ``spike_rtol``
    model_error: np.ndarray | None = None


class DSMTheory:
    """Asymptotic DSM learning curves of one activation (see module docstring)."""

    def __init__(self, activation, covariance=None, spikes=0, spike_rank=None, spike_nodes: int | None = None):
        from .spikes import split_spikes

        self.activation = activation
        #: rank of the separable expansion and Gauss--Hermite nodes per spike of the spiked theory
        self.spike_rank, self.spike_nodes = spike_rank, spike_nodes
        #: the spikes and bulk of a spiked covariance (:func:`derivations.spikes.split_spikes`), or
        #: ``None`` (``spikes=0``: the structured-data theory, unchanged)
        self.spikes = split_spikes(covariance, spikes)
        if self.spikes is not None:
            from .spiked_theory import check_rank

            check_rank(spike_rank)
            covariance = self.spikes.bulk
        #: ``(eigenvalues, weights)`` of the data covariance (of its bulk when spiked), or ``None`` (isotropic)
        self.spectrum = spectral_measure(covariance)
        self.structured = self.spectrum is not None
        tau = 1.0 if not self.structured else float(np.dot(*self.spectrum))
        self.coefficients = Coefficients(activation, tau)

    def __repr__(self) -> str:
        extra = "" if not self.structured else f", covariance with {len(self.spectrum[0])} atoms"
        from .spikes import MatchedSpikes

        if isinstance(self.spikes, MatchedSpikes):
            extra = (f", {self.spikes.shares.size} directions of order d read as matched spikes (p2="
                     f"{self.spikes.p2:.4g}, n_eff={self.spikes.n_eff:.3g}){extra} in the bulk")
        elif self.spikes is not None:
            extra = f", {self.spikes.k} spike(s) kappa={np.round(self.spikes.kappa, 4).tolist()}{extra} in the bulk"
        return f"DSMTheory({self.activation.name}{extra})"

    def solver(self, kind: str) -> ReducedSolver:
        """The compiled reduced solver of one kind of ``m`` (``"1"``, ``"finite"``, ``"inf"``)."""
        return reduced_solver(kind, self.structured)

    def problem(self, kind: str) -> Problem:
        """The ladder's view of one kind of ``m`` (:class:`derivations.ladder.Problem`): the
        user's ``psi_n, psi_p, t, lam, m`` mapped to the solver's parameters, in double
        precision and (Gaussian-equivalence numbers included) at any number of digits."""
        model = dsm_model(kind, self.structured)
        names = model.params

        def keep(p: dict) -> dict:
            return {k: v for k, v in p.items() if k in names}

        return model.problem(self.spectrum, params=lambda raw: keep(self.solver_params(*raw)),
                             mp_params=lambda point, dps: keep(self.mp_params(*point, dps)), continuation=3,
                             nonnegative=QUANTITIES)  # both errors are means of squares

    def _spectral_constant(self, t):
        """``Delta_t tr(S_t^{-1})/d`` (the zero score's test error; ``Delta_t`` when isotropic)."""
        t = np.asarray(t, dtype=float)
        delta = -np.expm1(-2.0 * t)
        if not self.structured:
            return delta
        s, w = self.spectrum
        a_sq = np.exp(-2.0 * t)
        return delta * np.sum(w / (a_sq[..., None] * s + delta[..., None]), axis=-1)

    def _refuse_spikes(self, what: str) -> None:
        """``NotImplementedError`` for a spiked covariance where only ``errors()`` and
        ``equations()`` are derived (``docs/spiked.md``): the structured-data numbers of the
        bulk alone would be wrong."""
        if self.spikes is not None:
            raise NotImplementedError(
                f"{what} with spikes={self.spikes.k}: the spiked-covariance theory gives errors() and equations() "
                "so far (docs/spiked.md); spikes=0 gives the structured-data theory of the whole spectrum")

    # -- equations -------------------------------------------------------------
    def equations(self, m=1, raw: bool = False):
        """The derived equations of ``E_test`` and ``E_train`` for this ``m``.

        Default: the reduced system (:mod:`pencils.reduce`) -- a few core unknowns solved
        by Newton and explicit read-outs, shared by both errors; ``.latex()`` renders it.
        ``raw=True``: the raw operator-valued systems of the pencils (one per error).
        All finite ``m >= 2`` share one system with ``m`` as a parameter; ``m = 1`` and
        ``m = inf`` have their own (smaller) systems.
        """
        from .dsm import dsm_equations, dsm_system

        m = parse_m(m)
        if self.spikes is not None:  # the conditional model at this theory's rank
            from .conditional import profile_traces
            from .derived import derive

            if raw:
                raise NotImplementedError("equations(raw=True) with spikes: the conditional model is derived "
                                          "through its reduced system only")
            from .overlaps import default_ranks

            rank = default_ranks(m_kind(m), self.spikes.k) if self.spike_rank is None else self.spike_rank
            return derive(profile_traces(m_kind(m), rank)).reduced
        if raw and self.structured:
            return {q: dsm_system(m_kind(m), q, True) for q in QUANTITIES}
        return dsm_equations(m) if raw else reduced_system(m_kind(m), self.structured)

    def equations_latex(self, m=1, eliminated: bool = True) -> str:
        """The reduced equations of this ``m`` in LaTeX, as short as the engine writes them: the
        eliminated form (core equations in the core unknowns, each named by its trace, then the
        read-outs; :mod:`pencils.latex`) with the model's identities substituted
        (:data:`derivations.dsm.RELATIONS`). ``m = 1`` fits on a page (about 2000 characters);
        elimination can take minutes for ``m = inf`` and gives up for finite ``m``, which then
        print as programs. Cached on disk."""
        from .dsm import RELATIONS

        return self.equations(m).latex(eliminated=eliminated, relations=RELATIONS)

    # -- numbers -----------------------------------------------------------------
    def solver_params(self, psi_n, psi_p, t, lam, m) -> dict:
        """Numeric parameters of the derived systems (broadcast arrays)."""
        t = np.asarray(t, dtype=float)
        return dict(psi_n=psi_n, psi_p=psi_p, lam=lam, m=m, a=np.exp(-t), Delta=-np.expm1(-2.0 * t),
                    **self.coefficients.at(t))

    def errors(self, psi_n, psi_p, t, lam, m=1, precision: int | None = None, throw: bool = True,
               check_rounding: bool = True, refine: bool = True, rtol: float = 1e-8, atol: float = 1e-10,
               train_time=None, spike_rtol: float | None = None, **solve_options) -> Errors:
        """Test error, train error and DSM test loss, broadcast over all array arguments.

        ``m``: integers ``>= 1`` and ``math.inf`` / ``"inf"`` (scalar or array).
        ``precision``: ``None`` for double precision (vectorised solver of the reduced
        system, :mod:`numerics.reduced`) or a number of decimal digits (15 to
        ``MAX_PRECISION``) for the mpmath backend, one point at a time, started from the
        double-precision solution or, where that failed, by continuation in ``lam``.
        ``check_rounding``: estimate each double-precision value's rounding error (warm
        re-solves with the parameters moved by a few ulps); ``refine``: a point whose
        estimate exceeds ``rtol |value| + atol`` -- near the interpolation peak and deep in
        the memorisation regime, where the traces are large and the errors are small
        differences of them -- is re-solved in double-double arithmetic (about 32 digits,
        by the compiled kernel, with its own rounding check) and, where that is unavailable
        or fails, in mpmath at :data:`derivations.ladder.REFINE_DPS` digits (``Errors.refined``,
        ``Errors.refined_mpmath``); with ``refine=False`` it is flagged instead, with
        ``refine="dd"`` where double-double fails (no mpmath: bounded, cheap work).
        ``throw``: raise :class:`numerics.ConvergenceError` if any point is left unresolved
        (else those points are NaN in every field and ``converged`` is False).
        ``train_time``: the errors along gradient flow at time ``T``
        (:mod:`derivations.training_time`); ``None`` is ``T = inf`` (the ridge solution).
        Both errors live on the scale 1 (the zero score has ``E_test = Delta_t``,
        ``E_train = 1``), hence the absolute floor ``atol``.

        With ``spikes=k`` the values are those of the spiked theory (conditional Gaussian
        equivalence, :mod:`derivations.spiked_theory`), solved per distinct ``(t, m)`` in double
        precision with the ladder's checks (``check_rounding``, ``refine``, ``rtol``, ``atol`` as
        above); ``Errors.model_error`` holds the estimated error
        of its expansion and a :class:`derivations.spiked_theory.SpikeWarning` names the
        points where it exceeds ``spike_rtol`` (default ``SPIKE_RTOL = 1e-2``).
        ``precision`` and ``train_time`` are not available there.

        >>> import pencils
        >>> e = pencils.build("relu").errors(psi_n=2, psi_p=[1, 4], t=0.5, lam=1e-2, m="inf")
        >>> e.test.round(4).tolist(), bool(e.converged.all())
        ([0.2941, 0.117], True)
        """
        _check_options(train_time, solve_options)
        if self.spikes is None and spike_rtol is not None:
            raise ValueError("spike_rtol is the accuracy of the spiked theory; this theory has spikes=0")
        if train_time is not None:
            return self._errors_at_time(psi_n, psi_p, t, lam, m, train_time, precision, throw, solve_options)
        arrays = [real_array(name, x) for name, x in zip(("psi_n", "psi_p", "t", "lam"), (psi_n, psi_p, t, lam))]
        for name, x, floor in zip(("psi_n", "psi_p", "t", "lam"), arrays, TINY):
            if np.any(x < floor):
                raise ValueError(f"{name} must be >= {floor:g}, got min {x.min():g}: {TINY_WHY[name]}")
        m_vals = parse_m_array(m)
        shape = np.broadcast_shapes(*(x.shape for x in arrays), m_vals.shape)
        flat = [np.broadcast_to(x, shape).reshape(-1) for x in (*arrays, m_vals)]
        size = int(np.prod(shape))
        if self.spikes is not None:
            ladder = dict(check_rounding=check_rounding, refine=refine, rtol=rtol, atol=atol)
            return self._spiked_errors(flat, shape, precision, throw, spike_rtol, ladder, solve_options)
        exact = precision is not None
        if exact:
            check_precision(precision)
        if refine not in (True, False, "dd"):
            raise ValueError(f"refine must be True, False or 'dd', got {refine!r}")
        led = Ledger.empty(size, exact, QUANTITIES)
        out, conv, resid, rounding = led.values, led.converged, led.residual, led.rounding
        kinds = np.where(flat[4] == 1, "1", np.where(np.isinf(flat[4]), "inf", "finite"))
        for kind in ("1", "finite", "inf"):
            sel = np.nonzero(kinds == kind)[0]
            if len(sel):
                climb(self.problem(kind), sel, [f[sel] for f in flat], led, precision=precision,
                      check_rounding=check_rounding, refine=refine, rtol=rtol, atol=atol,
                      solve_options=solve_options)
        for q in QUANTITIES:  # an unresolved point is NaN in every field
            out[q][~conv] = np.nan
        if throw and not conv.all():
            raise ConvergenceError(_unresolved_message(flat, conv, led, precision), None)
        if exact:
            with mpmath.workdps(int(precision)):
                loss = np.array([v + 1 - self._spectral_constant_mp(tt) if c else np.nan
                                 for v, tt, c in zip(out["test"], flat[2], conv)], dtype=object)
        else:  # the DSM loss on fresh data: E_test + 1 - Delta tr(S^{-1})/d  (= E_test + a^2 isotropic)
            loss = out["test"] + (np.exp(-2.0 * flat[2]) if not self.structured
                                  else 1.0 - self._spectral_constant(flat[2]))
        coef_err = np.broadcast_to(self.coefficients.error(flat[2]), (size,)).reshape(shape)
        _warn_inexact_coefficients(self, coef_err, rtol)
        return Errors(test=out["test"].reshape(shape), train=out["train"].reshape(shape),
                      dsm_test_loss=loss.reshape(shape), converged=conv.reshape(shape),
                      residual=resid.reshape(shape), iterations=led.iterations.reshape(shape),
                      rounding_error=rounding.reshape(shape), precision=int(precision) if exact else None,
                      refined=led.refined.reshape(shape), refined_mpmath=led.refined_mpmath.reshape(shape),
                      coefficient_error=coef_err)

    def _spiked_errors(self, flat, shape, precision, throw, spike_rtol, ladder, solve_options) -> Errors:
        """``errors()`` with ``spikes=k`` (:func:`derivations.spiked_theory.spiked_grid`)."""
        from .spiked_theory import SPIKE_RTOL, matched_grid, spiked_grid

        if precision is not None or solve_options:
            raise ValueError("with spikes, errors() solves in double precision with the default solver options; "
                             f"precision= and {', '.join(solve_options) or 'solver options'} are not available")
        from .spikes import MatchedSpikes

        grid = matched_grid if isinstance(self.spikes, MatchedSpikes) else spiked_grid
        g = grid(self.activation, self.spikes, *flat, rank=self.spike_rank, nodes=self.spike_nodes,
                 spike_rtol=SPIKE_RTOL if spike_rtol is None else spike_rtol, throw=throw, **ladder)
        if throw and not g["converged"].all():
            raise ConvergenceError(f"{int((~g['converged']).sum())} of {g['converged'].size} spiked points "
                                   "unresolved; throw=False flags them", None)
        return Errors(test=g["test"].reshape(shape), train=g["train"].reshape(shape),
                      dsm_test_loss=g["dsm_test_loss"].reshape(shape), converged=g["converged"].reshape(shape),
                      residual=g["residual"].reshape(shape), iterations=g["iterations"].reshape(shape),
                      rounding_error=g["rounding_error"].reshape(shape), model_error=g["model_error"].reshape(shape))

    def _errors_at_time(self, psi_n, psi_p, t, lam, m, train_time, precision, throw, solve_options) -> Errors:
        """``errors(..., train_time=T)``: gradient-flow errors (:mod:`derivations.training_time`)."""
        if precision is not None:
            raise ValueError("precision= is not available with train_time")
        if self.structured:
            raise ValueError("train_time= is derived for isotropic data only (covariance=None) so far")
        from .training_time import errors_at_time

        e = errors_at_time(self, psi_n, psi_p, t, lam, m, train_time, **solve_options)
        if throw and not e.converged.all():
            raise ConvergenceError(f"{int((~e.converged).sum())} of {e.converged.size} points not resolved "
                                   "(quadrature estimate > tol, unconverged traces, or p = n m); use throw=False",
                                   None)
        return Errors(test=e.test, train=e.train, dsm_test_loss=e.dsm_test_loss, converged=e.converged,
                      residual=np.zeros(e.test.shape), iterations=e.nodes,
                      rounding_error=np.fmax(e.test_error, e.train_error))

    # -- peaks and the ridgeless limit -------------------------------------------------
    def peaks(self, psi_n, t, m, lam, **kw):
        """Local maxima of ``E_test`` along ``psi_p`` (:func:`derivations.peaks.find_peaks`)."""
        self._refuse_spikes("peaks()")
        from .peaks import find_peaks

        return find_peaks(self, psi_n, t, m, lam, **kw)

    def peak_heights(self, psi_n, t, m, lams, **kw):
        """The peaks at each ridge of ``lams`` (:func:`derivations.peaks.peak_heights`)."""
        self._refuse_spikes("peak_heights()")
        from .peaks import peak_heights

        return peak_heights(self, psi_n, t, m, lams, **kw)

    def ridgeless(self, psi_n, psi_p, t, m, **kw):
        """``lam -> 0+`` limits of both errors (:func:`derivations.peaks.ridgeless`)."""
        self._refuse_spikes("ridgeless()")
        from .peaks import ridgeless

        return ridgeless(self, psi_n, psi_p, t, m, **kw)

    # -- high precision ------------------------------------------------------------
    def mp_params(self, psi_n, psi_p, t, lam, m, dps: int) -> dict:
        """Parameters at ``dps`` digits; the Gaussian-equivalence numbers come from the
        activation's mpmath path (closed forms or quadrature at ``dps`` digits)."""
        with mpmath.workdps(dps):
            t = mpmath.mpf(t)
            a_sq = mpmath.exp(-2 * t)
            if self.structured and self.coefficients.tau != 1.0:
                tau = mpmath.mpf(self.coefficients.tau)
                _, mu1, mu_star_sq, mu_s_sq, _ = self.activation.equivalence_constants_mp(
                    a_sq * tau - mpmath.expm1(-2 * t), a_sq * tau, dps)
                mp = type("C", (), {"mu1": mu1})
            else:
                mp = self.activation.coefficients_mp(dps)
                mu_s_sq = self.activation.kernel_mp(a_sq, dps=dps) - mp.mu0 ** 2 - mp.mu1 ** 2 * a_sq
                mu_star_sq = mp.mu_star_sq
            return dict(psi_n=mpmath.mpf(psi_n), psi_p=mpmath.mpf(psi_p), lam=mpmath.mpf(lam),
                        m=mpmath.mpmathify(getattr(m, "item", lambda: m)()) if math.isfinite(m) else None,
                        a=mpmath.exp(-t), Delta=-mpmath.expm1(-2 * t), mu1=mp.mu1,
                        mu_star=mpmath.sqrt(max(mu_star_sq, 0)), mu_s=mpmath.sqrt(max(mu_s_sq, 0)),
                        mu_f=mpmath.sqrt(max(mu_star_sq - mu_s_sq, 0)))

    def _spectral_constant_mp(self, t):
        t = mpmath.mpf(t)
        delta = -mpmath.expm1(-2 * t)
        if not self.structured:
            return delta
        a_sq = mpmath.exp(-2 * t)
        return delta * mpmath.fsum(mpmath.mpf(w) / (a_sq * mpmath.mpf(s) + delta) for s, w in zip(*self.spectrum))



def _warn_inexact_coefficients(theory, coef_err: np.ndarray, rtol: float) -> None:
    """A QuadratureWarning when the activation's numbers are known less accurately than the
    solver's ``rtol``: the errors inherit that inaccuracy (``Errors.coefficient_error``)."""
    worst = float(np.max(coef_err)) if coef_err.size else 0.0
    if worst > rtol:
        warnings.warn(
            f"the Gaussian-equivalence numbers of {theory.activation.name} are only known to {worst:.1e} "
            f"(relative, estimated: quadrature and rounding) > rtol = {rtol:.0e}: the errors are no more accurate "
            "than that (Errors.coefficient_error)", QuadratureWarning, stacklevel=3)


def _unresolved_message(flat: list, conv: np.ndarray, led: Ledger, precision) -> str:
    """What failed at the unresolved points (:data:`derivations.ladder.CAUSES`), with an example
    point and the advice that fits its cause."""
    bad = np.nonzero(~conv)[0]
    k = bad[0]
    chain = [c for c in str(led.cause[k] or "").split("+") if c] or ["residual"]
    counts: dict = {}
    for j in bad:
        key = str(led.cause[j] or "")
        counts[key] = counts.get(key, 0) + 1
    why = "; then ".join(CAUSES[c] for c in chain)
    detail = {"non-finite": "", "residual": f" (relative residual {led.residual[k]:.2e})",
              "rounding": f" (estimated rounding error {led.rounding[k]:.1e})"}.get(chain[0], "")
    if "non-finite" in chain:
        advice = "check the parameters (and the activation's coefficients); throw=False flags these points"
    elif precision is None and len(chain) == 1:  # not refined (refine=False)
        advice = ("re-solve them in higher precision (refine=True, the default, or precision=...); "
                  "throw=False flags these points")
    else:
        advice = "try precision=... with more digits; throw=False flags these points"
    summary = "" if len(counts) == 1 else " [" + ", ".join(
        f"{n} x {key.replace('+', ' then ') or 'unknown'}" for key, n in sorted(counts.items())) + "]"
    return (f"{len(bad)} of {conv.size} points are unresolved{summary}, e.g. psi_n={flat[0][k]}, "
            f"psi_p={flat[1][k]}, t={flat[2][k]}, lam={flat[3][k]}, m={flat[4][k]}: {why}{detail}; {advice}")


def build(activation, covariance=None, spikes=0, spike_rank=None, spike_nodes: int | None = None):
    """Derive (or load from the cache) the DSM learning curves of ``activation``.

    ``activation``: a name (``pencils.KNOWN_ACTIVATIONS``), a sympy expression in one
    symbol, a Python callable or an :class:`pencils.Activation`.  Returns a
    :class:`derivations.theory.DSMTheory` with ``coefficients``, ``equations(m)``,
    ``errors(psi_n, psi_p, t, lam, m, precision=None)``, ``peaks(...)`` and ``ridgeless(...)``.

    ``covariance``: the data covariance ``Sigma`` (MODEL.md, "Structured data") through its
    spectrum: ``None`` (isotropic), a 1-D array of eigenvalues (equal weights), a pair
    ``(eigenvalues, weights)`` or a symmetric PSD matrix
    (:func:`derivations.model.spectral_measure`).  The equations then hold averages over
    the spectrum, evaluated as weighted sums (cost linear in the number of atoms).
    Eigenvalues within round-off of 0 (``|lambda| <= 1e-10 lambda_max``, as ``eigvalsh`` leaves
    them) are 0; a more negative one is a ``ValueError``
    (:func:`derivations.model.clip_roundoff`).

    ``spikes``: ``0`` (default, the above), a whole number ``k``, ``"auto"`` or ``"matched"``
    (:mod:`derivations.spikes`): ``covariance`` holds the ``d`` eigenvalues at the data's own
    ``d`` (or the matrix) and its ``k`` largest are spikes with ``kappa_j = lambda_j / d``
    (MODEL.md, "Spiked covariance"); ``theory.spikes`` holds the split.  ``errors()`` and
    ``equations()`` are then those of the spiked theory (:mod:`derivations.spiked_theory`),
    with the conditional coefficients expanded at ranks ``spike_rank`` (``None``:
    ``k + 1`` for the linear kernel and 1 for the noise, :func:`derivations.overlaps.default_ranks`;
    an integer for every kernel; or a dict per kernel) on ``spike_nodes`` Gauss--Hermite nodes
    per spike; the first call derives that system (minutes, cached).
    ``spikes="matched"``: every direction of order ``d`` (``lambda_j >= 10 tr Sigma / d``) counts,
    through the power sums ``p2, p3`` of their shares; the spectrum is read as one and as two
    equal spikes and the curves are extrapolated in ``p3`` (:mod:`derivations.spikes`,
    :func:`derivations.spiked_theory.p3_extrapolation`; for slowly decaying spectra such as
    MNIST's, docs/spiked.md section 12).  ``m = 1`` and ``m = inf`` only so far.
    ``peaks()`` and ``ridgeless()`` raise ``NotImplementedError`` there.
    """
    if spikes == 0 and (spike_rank is not None or spike_nodes is not None):
        raise ValueError("spike_rank and spike_nodes set the spiked theory; this build has spikes=0")
    return DSMTheory(_activation(activation), covariance, spikes, spike_rank, spike_nodes)
