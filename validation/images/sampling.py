"""Generating samples with a (learned) score: reverse-time SDE and probability-flow ODE.

Forward process (MODEL.md): the Ornstein–Uhlenbeck SDE ``dx = -x dt + sqrt(2) dB``, whose
marginal at time ``t`` is ``x_t = a_t x_0 + sqrt(Delta_t) z`` (``a_t = e^{-t}``,
``Delta_t = 1 - e^{-2t}``); for data ``x_0 ~ N(0, Σ)`` it is ``N(0, S_t)``,
``S_t = a_t² Σ + Delta_t I``.  Given a score ``s(y, t) ≈ ∇ log p_t(y)``, the reverse-time
SDE (Anderson 1982; Song et al. 2021, *Score-based generative modeling through SDEs*) and
the probability-flow ODE run from ``t = T`` down to ``t_min``:

    reverse SDE:  dy = [-y - 2 s(y, t)] dt + sqrt(2) dB̄      (dt < 0)
    PF ODE:       dy/dt = -y - s(y, t)

Discretisation (documented choice).  The time grid ``T = t_0 > t_1 > ... > t_K = t_min``
is geometric by default (uniform in ``log t``: the score changes on the scale of ``t``
near 0, and the step ``h_k = t_k - t_{k+1} = (1 - r) t_k`` keeps the stiff part of the
drift, of size ``1/Delta_t ≈ 1/(2t)``, stable), or uniform.  With ``h_k`` the step:

* SDE, Euler–Maruyama:  ``y_{k+1} = y_k + h_k (y_k + 2 s(y_k, t_k)) + sqrt(2 h_k) ξ_k``
  (weak order 1);
* ODE, Heun (explicit trapezoid, order 2): with ``f(y, t) = y + s(y, t)``,
  ``ỹ = y_k + h_k f(y_k, t_k)``, ``y_{k+1} = y_k + h_k/2 [f(y_k, t_k) + f(ỹ, t_{k+1})]``.

The start is ``y_0 ~ N(0, S_T)`` with the data covariance ``Σ`` (identity by default; the
preprocessed images have ``tr Σ/d = 1``); the samples returned are at ``t_min`` (noise of
variance ``Delta_{t_min}`` remains).  :func:`tweedie` gives the posterior-mean denoised
points ``x̂ = (y + Delta_t s(y, t)) / a_t`` (Efron 2011, "Tweedie's formula").

A *learned* score is a family of random-features scores trained by DSM at the times of a
grid ``τ_1 < ... < τ_J`` on the same training points (:func:`train_score_grid`, one
:func:`validation.simulation.training.fit_on_data` per time).  Between grid times the noise
predictor ``ε̂(y, t) = -sqrt(Delta_t) s(y, t) = -B_t φ_t(y)`` (which is what DSM trains and
which stays ``O(1)`` as ``t → 0``) is interpolated linearly in ``log t`` between the two
neighbouring trained scores, and ``s = -ε̂ / sqrt(Delta_t)``; outside ``[τ_1, τ_J]`` the
nearest trained score's ``ε̂`` is used (:class:`ScoreGrid`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from validation.simulation.problem import check_data, check_reals, parse_m
from validation.simulation.training import check_memory

Score = Callable[[np.ndarray, float], np.ndarray]
#: Arrays of ``n_samples x d`` floats a sampler holds at once (samples, drift or slopes, noise, score values).
SAMPLER_ARRAYS = 6
#: Largest diffusion time of :func:`tweedie`: ``1 / a_t = e^t`` must stay a double.
TWEEDIE_T_MAX = 700.0


def a_delta(t: float) -> tuple[float, float]:
    """``(a_t, Delta_t) = (e^{-t}, 1 - e^{-2t})`` (``Delta_t`` by ``expm1``, accurate for small ``t``)."""
    return math.exp(-t), -math.expm1(-2.0 * t)


def time_grid(T: float, t_min: float, steps: int, kind: str = "geometric") -> np.ndarray:
    """Decreasing times ``t_0 = T > ... > t_steps = t_min`` (``geometric`` or ``uniform``).

    ``T`` and ``t_min`` must be finite reals with ``0 < t_min < T`` and ``steps`` an integer
    ``>= 1`` (``ValueError`` naming the argument otherwise).
    """
    v = check_reals(T=T, t_min=t_min, steps=steps, integers=("steps",))
    T, t_min, steps = v["T"], v["t_min"], v["steps"]
    if not t_min < T:
        raise ValueError(f"need 0 < t_min < T, got t_min={t_min!r}, T={T!r}")
    if kind == "geometric":
        grid = np.geomspace(T, t_min, steps + 1)
    elif kind == "uniform":
        grid = np.linspace(T, t_min, steps + 1)
    else:
        raise ValueError(f"grid kind must be 'geometric' or 'uniform', got {kind!r}")
    grid[0], grid[-1] = T, t_min
    return grid


def _check_rng(rng) -> np.random.Generator:
    """``rng`` itself if it is a ``numpy.random.Generator`` (``TypeError`` otherwise: ``None``
    or the legacy ``RandomState`` would fail later without naming it)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (numpy.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")
    return rng


def _check_batch(batch) -> int | None:
    """``None`` (no limit) or an integer ``>= 1``: the rows passed to the score at once."""
    if batch is None:
        return None
    return check_reals(batch=batch, integers=("batch",))["batch"]


def _score_dimension(score) -> int | None:
    """The input dimension a score is known to take (a :class:`ScoreGrid`'s ``d``), else ``None``."""
    if not callable(score):
        raise TypeError(f"score must be a callable score(Y, t), got {type(score).__name__}")
    return getattr(score, "d", None)


def _cov_sqrt(covariance, d: int) -> np.ndarray | None:
    if covariance is None:
        return None
    C = np.asarray(covariance, dtype=np.float64)
    if C.shape != (d, d):
        raise ValueError(f"covariance must be {d} x {d}, got shape {C.shape}")
    if not np.allclose(C, C.T, atol=1e-12 * max(1.0, np.abs(C).max())):
        raise ValueError("covariance is not symmetric")
    w, Q = np.linalg.eigh(C)
    if w[0] < -1e-10 * max(w[-1], 1e-300):
        raise ValueError(f"covariance is not positive semi-definite (eigenvalue {w[0]:.3g})")
    return (Q * np.sqrt(np.clip(w, 0.0, None))) @ Q.T


def initial_samples(n_samples: int, d: int, T: float, rng: np.random.Generator,
                    covariance=None) -> np.ndarray:
    """``n_samples`` draws of ``N(0, S_T)``, ``S_T = a_T² Σ + Delta_T I`` (``Σ = I`` when ``covariance`` is None)."""
    a, delta = a_delta(T)
    G = rng.standard_normal((int(n_samples), int(d)))
    R = _cov_sqrt(covariance, d)
    if R is None:
        return math.sqrt(a * a + delta) * G
    return a * (G @ R.T) + math.sqrt(delta) * rng.standard_normal(G.shape)


def _evaluate(score: Score, Y: np.ndarray, t: float, batch: int | None) -> np.ndarray:
    if batch is None or Y.shape[0] <= batch:
        out = score(Y, t)
    else:
        out = np.vstack([score(Y[i:i + batch], t) for i in range(0, Y.shape[0], batch)])
    out = np.asarray(out, dtype=np.float64)
    if out.shape != Y.shape:
        raise ValueError(f"score returned shape {out.shape} for inputs of shape {Y.shape}")
    if not np.all(np.isfinite(out)):
        raise FloatingPointError(f"score returned non-finite values at t={t:.4g}")
    return out


@dataclass(frozen=True)
class SamplerSetup:
    """Checked arguments shared by the samplers."""

    grid: np.ndarray
    Y0: np.ndarray
    batch: int | None = None


def _setup(score, n_samples, d, T, t_min, steps, grid, rng, covariance, y0, batch,
           rng_needed: bool = True) -> SamplerSetup:
    """Check every sampler argument before any work (``ValueError``/``TypeError`` naming it)."""
    d = check_reals(d=d, integers=("d",))["d"]
    known = _score_dimension(score)
    if known is not None and known != d:
        raise ValueError(f"d = {d} but the score was trained in dimension {known}")
    steps = check_reals(T=T, t_min=t_min, steps=steps, integers=("steps",))["steps"]
    batch = _check_batch(batch)
    if rng_needed or y0 is None:
        rng = _check_rng(rng)
    if y0 is not None:
        Y = np.array(check_data("y0", y0))
        if Y.ndim != 2 or Y.shape[1] != d or Y.shape[0] < 1:
            raise ValueError(f"y0 must be (k >= 1, {d}), got shape {Y.shape}")
        n_samples = Y.shape[0]
    else:
        n_samples = check_reals(n_samples=n_samples, integers=("n_samples",))["n_samples"]
    # the time grid, and the samples, drift, noise and score values (a few k x d arrays)
    check_memory(8 * (int(steps) + 1 + SAMPLER_ARRAYS * n_samples * d), None, "the sampler",
                 f"for n_samples={n_samples} d={d} steps={int(steps)}", "lower n_samples, d or steps")
    times = time_grid(T, t_min, steps, grid)
    if y0 is None:
        Y = initial_samples(n_samples, d, T, rng, covariance)
    return SamplerSetup(grid=times, Y0=Y, batch=batch)


def sample_sde(score: Score, *, n_samples: int, d: int, rng: np.random.Generator, T: float = 5.0,
               t_min: float = 1e-2, steps: int = 200, grid: str = "geometric", covariance=None,
               y0: np.ndarray | None = None, batch: int | None = 4096,
               progress: bool = True) -> np.ndarray:
    """Reverse-time SDE by Euler–Maruyama from ``N(0, S_T)`` at ``T`` down to ``t_min``.

    ``score(Y, t)`` maps ``(k, d)`` points to ``(k, d)`` scores.  Returns ``(n_samples, d)``
    samples at ``t_min``.  ``y0`` overrides the initial draw; ``batch`` bounds the rows
    passed to ``score`` at once; ``progress`` shows a tqdm bar over the steps.

    Checked before any work (``ValueError`` naming the argument and its range, ``TypeError``
    for ``rng`` and ``score``): ``d`` an integer ``>= 1`` (equal to the score's dimension when
    it is a :class:`ScoreGrid`, and to ``y0``'s), ``T``, ``t_min`` finite with
    ``0 < t_min < T``, ``steps`` and ``n_samples`` integers ``>= 1``, ``batch`` ``None`` or an
    integer ``>= 1``, ``rng`` a ``numpy.random.Generator``.

    >>> rng = np.random.default_rng(0)
    >>> Y = sample_sde(lambda y, t: -y, n_samples=20000, d=2, rng=rng, progress=False)
    >>> bool(abs(Y.var() - 1) < 0.05)
    True
    """
    setup = _setup(score, n_samples, d, T, t_min, steps, grid, rng, covariance, y0, batch)
    Y, times, batch = setup.Y0, setup.grid, setup.batch
    for k in tqdm(range(len(times) - 1), desc="reverse SDE", disable=not progress, leave=False):
        t, h = times[k], times[k] - times[k + 1]
        drift = Y + 2.0 * _evaluate(score, Y, t, batch)
        Y = Y + h * drift + math.sqrt(2.0 * h) * rng.standard_normal(Y.shape)
    return Y


def sample_ode(score: Score, *, n_samples: int, d: int, rng: np.random.Generator, T: float = 5.0,
               t_min: float = 1e-2, steps: int = 100, grid: str = "geometric", covariance=None,
               y0: np.ndarray | None = None, batch: int | None = 4096,
               progress: bool = True) -> np.ndarray:
    """Probability-flow ODE by Heun's method from ``N(0, S_T)`` at ``T`` down to ``t_min``.

    Same arguments and checks as :func:`sample_sde`; the randomness is only in the initial
    draw (``rng`` may be ``None`` when ``y0`` is given).  Two score evaluations per step.
    """
    setup = _setup(score, n_samples, d, T, t_min, steps, grid, rng, covariance, y0, batch, rng_needed=False)
    Y, times, batch = setup.Y0, setup.grid, setup.batch
    f = _evaluate(score, Y, times[0], batch) + Y
    for k in tqdm(range(len(times) - 1), desc="probability-flow ODE", disable=not progress, leave=False):
        h = times[k] - times[k + 1]
        Yp = Y + h * f
        fp = _evaluate(score, Yp, times[k + 1], batch) + Yp
        Y = Y + 0.5 * h * (f + fp)
        f = _evaluate(score, Y, times[k + 1], batch) + Y if k + 2 < len(times) else f
    return Y


def tweedie(score: Score, Y: np.ndarray, t: float, batch: int | None = 4096) -> np.ndarray:
    """Posterior mean ``E[x_0 | y_t = y] = (y + Delta_t s(y, t)) / a_t`` (Tweedie's formula).

    ``Y`` is ``(k, d)`` and finite, ``t`` a real in ``(0, 700]`` (the formula has no meaning at
    ``t <= 0``: ``a_t > 1``, ``Delta_t < 0``; beyond 700, ``1/a_t = e^t`` overflows a double, and
    the posterior mean is the data mean to double precision), ``batch`` ``None`` or an integer ``>= 1``
    (``ValueError`` naming the argument otherwise).
    """
    t = check_reals(t=t, at_most={"t": TWEEDIE_T_MAX})["t"]
    batch = _check_batch(batch)
    Y = check_data("Y", Y)
    known = _score_dimension(score)
    if Y.ndim != 2 or Y.shape[0] < 1 or (known is not None and Y.shape[1] != known):
        raise ValueError(f"Y must be (k >= 1, {known or 'd'}), got shape {Y.shape}")
    a, delta = a_delta(t)
    return (Y + delta * _evaluate(score, Y, t, batch)) / a


# ----------------------------------------------------------------------------------
# Scores on a grid of diffusion times


class ScoreGrid:
    """A score ``s(y, t)`` from noise predictors trained at increasing times ``τ_1 < ... < τ_J``.

    ``predictors[j](Y)`` returns ``ε̂_j(Y) = -sqrt(Delta_{τ_j}) s_j(Y)`` (``k x d``).  At
    time ``t`` the two neighbouring predictors are mixed linearly in ``log t`` and divided
    by ``-sqrt(Delta_t)``; outside ``[τ_1, τ_J]`` the nearest one is used.
    """

    def __init__(self, times: Sequence[float], predictors: Sequence[Callable[[np.ndarray], np.ndarray]],
                 fits: Sequence | None = None):
        times = np.asarray(times, dtype=np.float64)
        if times.ndim != 1 or len(times) < 1 or len(times) != len(predictors):
            raise ValueError("need one predictor per time (at least one)")
        if np.any(times <= 0) or np.any(np.diff(times) <= 0):
            raise ValueError(f"times must be positive and increasing, got {times}")
        self.times = times
        self.predictors = list(predictors)
        self.fits = list(fits) if fits is not None else None

    @property
    def d(self) -> int | None:
        """The input dimension of the trained scores (``None`` without ``fits``)."""
        return int(self.fits[0].W.shape[1]) if self.fits else None

    def noise_prediction(self, Y: np.ndarray, t: float) -> np.ndarray:
        lt = math.log(t)
        logs = np.log(self.times)
        if lt <= logs[0]:
            return self.predictors[0](Y)
        if lt >= logs[-1]:
            return self.predictors[-1](Y)
        j = int(np.searchsorted(logs, lt)) - 1          # logs[j] < lt <= logs[j+1]
        w = (lt - logs[j]) / (logs[j + 1] - logs[j])
        if w >= 1.0 - 1e-12:
            return self.predictors[j + 1](Y)
        return (1.0 - w) * self.predictors[j](Y) + w * self.predictors[j + 1](Y)

    def __call__(self, Y: np.ndarray, t: float) -> np.ndarray:
        _, delta = a_delta(t)
        return -self.noise_prediction(Y, t) / math.sqrt(delta)


def train_score_grid(act, X: np.ndarray, times: Sequence[float], *, p: int, lam: float, m,
                     seed: int = 0, surrogate: bool = False, progress: bool = True) -> ScoreGrid:
    """Train one random-features DSM score per time of ``times`` on the same points ``X``.

    Each time ``τ_j`` gets its own features and noise: seed ``SeedSequence(seed)``'s
    ``j``-th spawned integer is passed to :func:`validation.simulation.training.fit_on_data`
    (``m`` noise draws per point, ``m = inf`` the exact noise average).  The surrogate
    needs fresh randomness at evaluation and is therefore not supported here.  ``times``
    (finite, ``> 0``, distinct), ``p`` (integer ``>= 1``), ``lam`` (``>= 0``), ``m`` and
    ``seed`` (integer ``>= 0``) are checked before the first fit; ``X`` by the fit.
    """
    from validation.simulation.training import fit_on_data

    if surrogate:
        raise ValueError("sampling needs a deterministic score: surrogate=True is not supported")
    try:
        times = np.asarray(times, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"times must be a 1-D sequence of diffusion times > 0, got {times!r}") from None
    if times.ndim != 1 or times.size < 1:
        raise ValueError(f"times must be a non-empty 1-D sequence of diffusion times > 0, got shape {times.shape}")
    for t in times:
        check_reals(times=t)
    times = np.sort(times)
    if np.any(np.diff(times) == 0):
        raise ValueError(f"times repeat: {times.tolist()}")
    check_reals(p=p, lam=lam, allow_zero=("lam",), integers=("p",))
    parse_m(m)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    seeds = np.random.SeedSequence(int(seed)).generate_state(len(times))
    fits, predictors = [], []
    for t, s in tqdm(list(zip(times, seeds)), desc=f"train scores p={p} m={m}", disable=not progress,
                     leave=False):
        fit = fit_on_data(act, X, p=p, t=float(t), lam=lam, m=m, seed=int(s))
        fits.append(fit)
        predictors.append(_predictor(fit))
    return ScoreGrid(times, predictors, fits)


def _predictor(fit):
    """``ε̂(Y) = -B φ(Y)`` of one trained score (so that ``s = -ε̂ / sqrt(Delta)``)."""
    def eps_hat(Y):
        return -(fit.features(Y) @ fit.Bt)
    return eps_hat
