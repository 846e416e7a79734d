"""The :func:`simulate` driver: seed-averaged errors of one parameter point (:class:`SimulationResult`)."""
from __future__ import annotations

import math
import numbers
import time
from dataclasses import InitVar, dataclass, field
from typing import Iterable

import numpy as np

from .problem import Covariance, Problem, make_problem
from .testerror import fit_score
from .training import _check_memory, _check_surrogate, _check_train_time, _progress_bar, memory_estimate


@dataclass(frozen=True)
class SimulationResult:
    """Seed averages of one parameter point (``.test``, ``.train``, ``.dsm_test_loss``)
    with standard errors of the mean (``inf`` when a single seed was run)."""

    problem: Problem
    activation: str
    surrogate: bool
    seeds: tuple[int, ...]
    test_values: np.ndarray = field(repr=False)
    train_values: np.ndarray = field(repr=False)
    form: str = ""
    mehler_order: int = 0
    truncation_bound: float = 0.0
    seconds: float = 0.0
    #: ``1 - Delta tr(S_t^{-1}) / d`` (``a_t^2`` for isotropic data): DSM test loss minus test error.
    dsm_offset: float | None = None
    train_time: float | None = None
    #: ``tr Sigma / d`` of the data covariance (1 for isotropic data).
    tau: float = 1.0
    isotropic: bool = True
    #: the ``d`` eigenvalues of ``Sigma`` (init-only: kept as :attr:`eigenvalues`, read by
    #: :func:`validation.extrapolate` to refuse runs of different covariances)
    spectrum: InitVar[np.ndarray | None] = None

    def __post_init__(self, spectrum):
        if spectrum is not None:
            spectrum = np.sort(np.asarray(spectrum, dtype=float))
            spectrum.setflags(write=False)
        object.__setattr__(self, "_eigenvalues", spectrum)

    @property
    def eigenvalues(self) -> np.ndarray | None:
        """The data covariance's eigenvalues, ascending (``None`` when not recorded)."""
        return getattr(self, "_eigenvalues", None)

    @property
    def d(self) -> int:
        return self.problem.d

    @property
    def test(self) -> float:
        return float(np.mean(self.test_values))

    @property
    def train(self) -> float:
        return float(np.mean(self.train_values))

    @property
    def dsm_test_loss(self) -> float:
        offset = self.problem.a**2 if self.dsm_offset is None else self.dsm_offset
        return self.test + offset

    @property
    def test_se(self) -> float:
        return _standard_error(self.test_values)

    @property
    def train_se(self) -> float:
        return _standard_error(self.train_values)

    @property
    def dsm_test_loss_se(self) -> float:
        return self.test_se

    def __str__(self) -> str:
        pr = self.problem
        kind = "surrogate" if self.surrogate else self.activation
        extra = "" if self.train_time is None else f" T={self.train_time:g}"
        extra += "" if self.isotropic else f" tau={self.tau:.4g} (structured)"
        return (f"{kind} d={pr.d} n={pr.n} p={pr.p} m={pr.m} t={pr.t} lam={pr.lam}{extra}: "
                f"test={self.test:.6g}±{self.test_se:.2g} train={self.train:.6g}±{self.train_se:.2g}")


def _standard_error(values: np.ndarray) -> float:
    if len(values) < 2:
        return math.inf
    return float(np.std(values, ddof=1) / math.sqrt(len(values)))


def _seed_list(seeds) -> tuple[int, ...]:
    """``seeds`` as a tuple of distinct integers ``>= 0``: a count ``k >= 1`` gives ``0..k-1``.

    Strings, booleans, fractional or negative seeds are refused (``ValueError`` naming
    ``seeds``): a string would be iterated character by character and ``int(0.5)`` would
    silently run seed 0.
    """
    if isinstance(seeds, (numbers.Integral, np.integer)) and not isinstance(seeds, (bool, np.bool_)):
        if seeds < 1:
            raise ValueError(f"seeds must be a count >= 1 or a list of distinct integers >= 0, got {seeds!r}")
        return tuple(range(int(seeds)))
    if isinstance(seeds, (str, bytes, bool, np.bool_)) or not isinstance(seeds, Iterable):
        raise ValueError(f"seeds must be a count >= 1 or a list of distinct integers >= 0, got {seeds!r}")
    out = tuple(seeds)
    bad = [s for s in out if isinstance(s, (bool, np.bool_)) or not isinstance(s, (numbers.Integral, np.integer))
           or s < 0]
    if bad:
        raise ValueError(f"seeds must be integers >= 0, got {bad[0]!r}")
    out = tuple(int(s) for s in out)
    if not out:
        raise ValueError("seeds is empty (give a count >= 1 or a list of distinct integers >= 0)")
    if len(set(out)) != len(out):
        raise ValueError(f"seeds repeat: {out}")
    return out


def simulate(activation, *, d, psi_n, psi_p, t, lam, m, seeds: int | Iterable[int] = 4,
             surrogate: bool = False, covariance=None, train_time=None,
             progress: bool | None = None, max_memory: float | None = None) -> SimulationResult:
    """Monte Carlo test and train errors of the DSM random-features model.

    Parameters
    ----------
    activation : name, sympy expression, callable or :class:`pencils.Activation`.
    d, psi_n, psi_p : dimension and ratios ``n = round(psi_n d)``, ``p = round(psi_p d)``.
    t, lam : diffusion time (> 0) and ridge (>= 0; 0 is the minimum-norm interpolator).
    m : noise draws per data point, an integer >= 1 or ``math.inf`` / ``"inf"``.
    seeds : a count (seeds ``0..k-1``) or explicit integer seeds; one instance each.
    surrogate : ``True`` or ``False``: train and test the Gaussian-equivalent surrogate
        instead of ``rho``.
    covariance : ``None`` (``x ~ N(0, I)``), a 1-D array of the ``d`` eigenvalues of ``Sigma``
        or a symmetric PSD ``d x d`` matrix: data ``x ~ N(0, Sigma)`` (MODEL.md "Structured
        data").  The test error is then ``(1/d) E ||B phi(y) + sqrt(Delta) S_t^{-1} y||^2`` on
        ``p_t = N(0, S_t)``, ``S_t = a_t^2 Sigma + Delta_t I``, and the DSM test loss is
        ``E_test + 1 - Delta_t tr(S_t^{-1})/d``; the surrogate's constants are taken at
        ``v_t = a_t^2 tau + Delta_t``, covariance ``a_t^2 tau``, ``tau = tr Sigma / d``.
    train_time : ``None`` (``T = inf``, the ridge solution) or ``T >= 0``: ``B(T)`` of gradient
        flow from ``B = 0`` (MODEL.md "Training time"), by eigendecomposition of the Gram matrix.
    progress : a tqdm bar on stderr over seeds (and over feature chunks of long finite-``m``
        runs): ``True`` always, ``False`` never, ``None`` once a run takes over 3 s.
    max_memory : bytes one instance may use (default: the available memory, /proc/meminfo);
        a larger :func:`memory_estimate` (with the covariance's own arrays) raises a ValueError
        naming ``d, n, p, m`` before anything proportional to them is allocated.

    Every argument is checked before any work (``ValueError`` naming it: non-numbers, strings,
    booleans, NaN, inf, out of range, a covariance of the wrong size or not PSD).

    Examples
    --------
    >>> r = simulate("relu", d=40, psi_n=1, psi_p=0.5, t=0.5, lam=0.1, m=1, seeds=2)
    >>> 0 < r.train < 1 and 0 < r.test and abs(r.dsm_test_loss - r.test - math.exp(-1)) < 1e-12
    True
    """
    import pencils  # local: validation depends on pencils, not the reverse

    surrogate = _check_surrogate(surrogate)
    if progress is not None and not isinstance(progress, (bool, np.bool_)):
        raise ValueError(f"progress must be True, False or None, got {progress!r}")
    problem = make_problem(d=d, psi_n=psi_n, psi_p=psi_p, t=t, lam=lam, m=m)
    T = _check_train_time(train_time)
    seed_list = _seed_list(seeds)
    # before Covariance.of: it allocates d numbers (d^2 for a matrix)
    _check_memory(memory_estimate(problem, covariance), max_memory, problem)
    cov = Covariance.of(covariance, problem.d)
    act = pencils.activation(activation)
    tests, trains = [], []
    form, order, bound, offset = "", 0, 0.0, None
    start = time.perf_counter()
    label = "surrogate" if surrogate else act.name
    bar = _progress_bar(progress, len(seed_list), f"simulate {label} d={problem.d} m={problem.m}")
    try:
        for seed in seed_list:
            fitted = fit_score(act, problem, seed, surrogate=surrogate, covariance=cov, train_time=T,
                               progress=progress, max_memory=max_memory)
            tests.append(fitted.test_error)
            trains.append(fitted.train_error)
            form, offset = fitted.form, fitted.dsm_offset
            order, bound = max(order, fitted.mehler_order), max(bound, fitted.truncation_bound)
            if bar is not None:
                bar.set_postfix_str(f"test={fitted.test_error:.5g} train={fitted.train_error:.5g}",
                                    refresh=False)
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return SimulationResult(problem=problem, activation=act.name, surrogate=surrogate,
                            seeds=seed_list, test_values=np.array(tests),
                            train_values=np.array(trains), form=form, mehler_order=order,
                            truncation_bound=bound, seconds=time.perf_counter() - start,
                            dsm_offset=offset, train_time=T, tau=cov.tau, isotropic=cov.isotropic,
                            spectrum=cov.eigenvalues)
