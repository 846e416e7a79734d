"""Real-data experiments: RF-DSM on image datasets, Gaussian data with the same spectrum,
the structured-data theory, sampling with the learned score and the memorised fraction.

The command ``dsm-curves real --data PATH [--data PATH ...] [--quick] [--out DIR]``
(:mod:`validation.cli.real`) runs them, with the tables and figures of
:mod:`validation.images.plots`.

For each dataset (an IDX images file or a folder holding one dataset, see
:func:`validation.images.data.load_dataset`; the pool is every split found, preprocessed as
MODEL.md says, optionally ``k x k`` mean-pooled first with ``--downsample k``):

1. **Learning curves** (``curves.csv/.md``, ``curves_<name>.png``).  At ``psi_n = n/d``
   and each ``psi_p = p/d``, ``m`` and ``t``: ``n`` training images drawn from the pool
   without replacement, ``p`` random features, ``m`` noise draws (``m = inf``: the exact
   noise average given each image, :func:`validation.simulation.training.fit_on_data`), ridge
   ``lam``.  Measured: the train error and the DSM loss on ``held_out`` other images of the
   pool with one fresh noise draw each, ``(1/d)‖B φ(a_t x + √Δ_t z) + z‖²`` (mean and
   standard error over the held-out images), averaged over ``seeds`` (image subset, ``W``,
   noise) with standard errors over seeds.  The same pipeline runs on **Gaussian data with
   the pool's covariance** ``N(0, Σ̂)`` (training and held-out points drawn from it): the
   structured-data theory is exact for it as ``d → ∞``, so real-vs-Gaussian separates
   non-Gaussianity from finite-``d`` effects.  The DSM loss of the true score of
   ``N(0, Σ̂)`` is ``1 - Δ_t tr(S_t^{-1})/d`` (MODEL.md), reported as ``dsm_floor``;
   ``E_test = DSM loss - dsm_floor``.
2. **Theory** (MODEL.md "Structured data"): ``pencils.build(act, covariance=eigs)`` with
   ``eigs`` the spectrum of ``Σ̂``, at the same ``psi_n, psi_p, m, t, lam``; relative
   deviations ``(measured - theory)/theory`` of the DSM test loss and of the train error,
   point by point.  With ``spikes`` (``"auto"``, ``"matched"`` or a number, ``--spikes``) also the
   spiked-covariance theory (MODEL.md "Spiked covariance", ``docs/spiked.md``):
   ``pencils.build(act, covariance=eigs, spikes=spikes)``, its values, their estimated
   relative error ``spiked_error`` and their deviations, beside the structured ones.
3. **Memorisation** (``memorization.csv/.md``, ``memorization_<name>.png``,
   ``samples_<name>.png``).  ``n_mem`` training images, scores trained at ``mem_times``
   (geometric grid) for each ``p`` and ``m`` (:func:`validation.images.sampling.train_score_grid`),
   ``mem_samples`` samples by the reverse SDE (or ``--sampler ode``) from ``T`` to ``t_min``,
   denoised by Tweedie's formula, and :func:`validation.memorized_fraction` against the
   training images, over ``mem_seeds`` training subsets; also for Gaussian data with the pool
   covariance.  Diagnostics per point: the median of
   ``d1/d2``, the median ``‖x̂‖²/d`` of the samples (the training points have about 1;
   large values mean the sampler diverged), train error and held-out DSM loss at the grid
   time nearest ``0.1``.
4. **Phase diagram on real data** (``phase.csv``, ``phase_<name>.png``): train error
   relative to its generalising value ``a_t²`` over ``(psi_n, psi_p)`` for finite ``m``.

Every CSV has a JSON sidecar with the configuration and the command line.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from validation.simulation.problem import m_label

from . import data as _data
from . import sampling as _sampling
from .memorization import memorized_fraction

# ----------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class Config:
    """Parameters of a real-data run (defaults: a few minutes per dataset on two cores)."""

    activation: str = "relu"
    downsample: int = 2                 # curves and phase diagram: 28x28 -> 14x14, d = 196
    psi_n: float = 1.0
    psi_p: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    m: tuple[float, ...] = (1, 4, math.inf)
    t: tuple[float, ...] = (0.1, 0.3, 1.0)
    lam: float = 1e-2
    seeds: int = 3
    held_out: int = 2000
    gaussian: bool = True
    curves: bool = True
    spectrum_check: bool = False        # Gaussian data: pool / clipped / isotropic spectrum vs theory
    spikes: int | str = 0               # 0: structured theory only; "auto", "matched" or k: also the spiked theory
    # phase diagram
    phase: bool = True
    phase_psi_n: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
    phase_psi_p: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    phase_m: tuple[float, ...] = (1, 4)
    phase_t: float = 0.3
    phase_lam: float = 1e-3
    # memorisation
    memorization: bool = True
    mem_downsample: int = 4             # 28x28 -> 7x7, d = 49
    n_mem: int = 10
    mem_ratios: tuple[float, ...] = (1.0, 4.0, 16.0, 64.0, 128.0)   # p / n
    mem_m: tuple[float, ...] = (1, 4, 16, math.inf)
    mem_lam: float = 1e-3
    mem_times: tuple[float, float, int] = (0.01, 3.0, 10)            # t_lo, t_hi, count
    mem_samples: int = 200
    mem_steps: int = 100
    sampler: str = "sde"                # "sde" (Euler-Maruyama) or "ode" (probability flow, Heun)
    mem_seed: int = 0
    mem_seeds: int = 2                  # training subsets (and features, noise) per point
    progress: bool = True

    def __post_init__(self):
        if self.sampler not in ("sde", "ode"):
            raise ValueError(f"sampler must be 'sde' or 'ode', got {self.sampler!r}")
        for name in ("seeds", "mem_seeds", "held_out", "n_mem", "mem_samples", "mem_steps", "downsample", "mem_downsample"):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.spikes not in ("auto", "matched") and (isinstance(self.spikes, (bool, str))
                                                       or int(self.spikes) != self.spikes or self.spikes < 0):
            raise ValueError(f"spikes must be 'auto', 'matched' or an integer >= 0, got {self.spikes!r}")
        if self.n_mem < 2:
            raise ValueError(f"n_mem must be >= 2 (the memorised fraction needs two nearest images), got {self.n_mem}")

    @classmethod
    def quick(cls, **kw) -> "Config":
        """A smaller run (about a minute per dataset)."""
        base = dict(psi_p=(0.5, 2.0), t=(0.1, 1.0), seeds=2, held_out=500,
                    phase_psi_n=(0.5, 1.0), phase_psi_p=(0.5, 2.0), phase_m=(1,),
                    mem_ratios=(1.0, 16.0, 64.0), mem_m=(1, math.inf), mem_samples=100,
                    mem_steps=60, mem_times=(0.01, 3.0, 6), mem_seeds=1)
        return cls(**(base | kw))


def dsm_floor(eigs: np.ndarray, t: float) -> float:
    """DSM loss of the exact score of ``N(0, Σ)``: ``1 - Δ_t tr(S_t^{-1})/d``, ``S_t = a_t² Σ + Δ_t I``."""
    a, delta = _sampling.a_delta(t)
    return float(1.0 - delta * np.mean(1.0 / (a * a * eigs + delta)))


# ----------------------------------------------------------------------------------
# Structured-data theory (issue 8), optional


def structured_theory(act: str, eigs: np.ndarray):
    """``(theory, note)``: ``pencils.build(act, covariance=eigs)`` and a note for the run's
    notes (empty: the structured-data theory is always available)."""
    import pencils

    return pencils.build(act, covariance=np.asarray(eigs, dtype=float)), ""


def spiked_theory(act: str, eigs: np.ndarray, spikes):
    """The spiked-covariance theory ``pencils.build(act, covariance=eigs, spikes=spikes)``, or
    ``None`` when ``spikes`` is 0 (or ``"auto"`` finds no spike: the structured theory is then
    the whole answer)."""
    import pencils

    if spikes == 0:
        return None
    theory = pencils.build(act, covariance=np.asarray(eigs, dtype=float), spikes=spikes)
    return theory if theory.spikes is not None else None


def add_spiked(rows: list[CurvePoint], theory, eigs, log=None) -> int:
    """Fill the spiked-theory columns of ``rows`` (in place): one solve per ``(m, t)`` for all
    their ``psi_p`` and ``psi_n``.  Returns how many distinct points are flagged: an estimated
    error above :data:`derivations.spiked_theory.SPIKE_RTOL`, or none (the :class:`SpikeWarning`
    of each solve is counted here instead; ``spiked_error`` keeps every point's estimate)."""
    import warnings

    from derivations.spiked_theory import SPIKE_RTOL, SpikeWarning

    groups: dict = {}
    for r in rows:
        groups.setdefault((r.m, r.t, r.lam), []).append(r)
    flagged = 0
    for (m, t, lam), pts in groups.items():
        mm = math.inf if m == "inf" else int(m)
        grid = sorted({(r.psi_n, r.psi_p) for r in pts})   # images and Gaussian data share their points
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SpikeWarning)
            try:
                e = theory.errors(psi_n=np.array([g[0] for g in grid]), psi_p=np.array([g[1] for g in grid]),
                                  t=t, lam=lam, m=mm)
            except NotImplementedError as exc:  # a theory without this m: those rows stay empty
                if log is not None:
                    log(f"spiked theory, m = {m}, t = {t:g}: not available ({exc})")
                continue
        floor = dsm_floor(eigs, t)
        at = {g: i for i, g in enumerate(grid)}
        test, train = np.broadcast_to(e.test, (len(grid),)), np.broadcast_to(e.train, (len(grid),))
        err = np.broadcast_to(e.model_error, (len(grid),))
        flagged += int(np.sum(~(err <= SPIKE_RTOL)))
        for r in pts:
            i = at[(r.psi_n, r.psi_p)]
            r.spikes = theory.spikes.k
            r.spiked_dsm_test, r.spiked_train, r.spiked_error = float(test[i]) + floor, float(train[i]), float(err[i])
            r.rel_dev_spiked_dsm_test = (r.dsm_test - r.spiked_dsm_test) / r.spiked_dsm_test
            r.rel_dev_spiked_train = (r.train - r.spiked_train) / r.spiked_train
        if log is not None:
            log(f"spiked theory, k = {theory.spikes.k}, m = {m}, t = {t:g}: largest estimated error "
                f"{float(np.max(err)):.1e}")
    return flagged


def theory_point(theory, *, psi_n, psi_p, t, lam, m, eigs) -> tuple[float, float, bool]:
    """Theory ``(DSM test loss, train error, converged)`` at one point (``nan`` when absent)."""
    if theory is None:
        return math.nan, math.nan, False
    e = theory.errors(psi_n=psi_n, psi_p=psi_p, t=t, lam=lam, m=m)
    test = float(np.asarray(e.test))
    dsm = float(np.asarray(e.dsm_test_loss)) if hasattr(e, "dsm_test_loss") else math.nan
    if not math.isfinite(dsm):
        dsm = test + dsm_floor(eigs, t)
    conv = bool(np.all(np.asarray(getattr(e, "converged", True))))
    return dsm, float(np.asarray(e.train)), conv


# ----------------------------------------------------------------------------------
# One point of the learning curves


@dataclass
class CurvePoint:
    dataset: str
    kind: str          # "real" or "gaussian" (same covariance)
    d: int
    n: int
    p: int
    m: str
    t: float
    lam: float
    psi_n: float
    psi_p: float
    seeds: int
    dsm_test: float
    dsm_test_se: float
    train: float
    train_se: float
    dsm_floor: float
    test_error: float
    theory_dsm_test: float = math.nan
    theory_train: float = math.nan
    theory_converged: bool = False
    rel_dev_dsm_test: float = math.nan
    rel_dev_train: float = math.nan
    spikes: int = 0                       # the spiked theory's k (0: not computed)
    spiked_dsm_test: float = math.nan
    spiked_train: float = math.nan
    spiked_error: float = math.nan        # its estimated relative error (Errors.model_error)
    rel_dev_spiked_dsm_test: float = math.nan
    rel_dev_spiked_train: float = math.nan


class Pool:
    """A preprocessed pool and what the experiments need from it."""

    def __init__(self, name: str, images: _data.ImageData):
        self.name = name
        self.images = images
        self.X = images.X
        self.eigs = _data.spectrum(self.X)
        self._R = None

    @property
    def d(self) -> int:
        return self.X.shape[1]

    @property
    def covariance(self) -> np.ndarray:
        return self.X.T @ self.X / len(self.X)

    @property
    def cov_sqrt(self) -> np.ndarray:
        if self._R is None:
            self._R = _data.covariance_sqrt(self.X)
        return self._R

    def draw(self, kind: str, n: int, held: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` training and ``held`` held-out points: disjoint pool images, or ``N(0, Σ̂)`` draws."""
        if kind == "real":
            if n + held > len(self.X):
                raise ValueError(f"{self.name}: n + held_out = {n + held} exceeds the pool ({len(self.X)} images)")
            idx = rng.choice(len(self.X), size=n + held, replace=False)
            return self.X[idx[:n]], self.X[idx[n:]]
        if kind == "gaussian":
            G = rng.standard_normal((n + held, self.d)) @ self.cov_sqrt.T
            return G[:n], G[n:]
        raise ValueError(f"kind must be 'real' or 'gaussian', got {kind!r}")


def experiment_streams(seed: int, tag: str, *values) -> list[np.random.Generator]:
    """Streams ``(data draw, held-out noise)`` of one experiment point, keyed by ``seed``, the
    tag ``tag`` (its characters summed) and ``values`` rounded to 1e-3 (``inf`` as ``10**9``)."""
    key = [int(seed), sum(ord(c) for c in tag)] + [int(round(v * 1000)) if math.isfinite(v) else 10**9
                                                   for v in values]
    return [np.random.default_rng(s) for s in np.random.SeedSequence(key).spawn(2)]


def _mean_se(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return float(v.mean()), (float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.inf)


def curve_point(act: str, pool: Pool, kind: str, *, psi_n, psi_p, m, t, lam, seeds, held_out) -> CurvePoint:
    """Train and measure at one ``(psi_n, psi_p, m, t, lam)``, averaged over ``seeds``.

    Seed ``s`` fixes the training/held-out draw (per ``kind``) and, through
    :func:`validation.simulation.training.fit_on_data`, ``W`` and the training noise; images and
    Gaussian data at the same seed share ``W`` and the noise (common random numbers, which
    sharpens their difference).
    """
    from validation.simulation.training import fit_on_data

    d = pool.d
    n, p = max(2, round(psi_n * d)), max(1, round(psi_p * d))
    tests, trains = [], []
    for s in range(seeds):
        rng_data, rng_noise = experiment_streams(s, kind, n, p, t)
        X, H = pool.draw(kind, n, held_out, rng_data)
        fit = fit_on_data(act, X, p=p, t=t, lam=lam, m=m, seed=s)
        loss, _ = fit.dsm_loss(H, rng_noise)
        tests.append(loss)
        trains.append(fit.train_error)
    dsm, dsm_se = _mean_se(tests)
    tr, tr_se = _mean_se(trains)
    floor = dsm_floor(pool.eigs, t)
    return CurvePoint(dataset=pool.name, kind=kind, d=d, n=n, p=p, m=m_label(m, "inf"), t=t, lam=lam,
                      psi_n=n / d, psi_p=p / d, seeds=seeds, dsm_test=dsm, dsm_test_se=dsm_se,
                      train=tr, train_se=tr_se, dsm_floor=floor, test_error=dsm - floor)


def run_curves(pool: Pool, cfg: Config, theory=None, spiked=None, log=None) -> list[CurvePoint]:
    """The learning curves of ``pool`` on the grid of ``cfg``, with the structured ``theory``
    and the ``spiked`` theory (:func:`add_spiked`) beside them when given."""
    kinds = ("real", "gaussian") if cfg.gaussian else ("real",)
    grid = [(k, m, t, q) for k in kinds for m in cfg.m for t in cfg.t for q in cfg.psi_p]
    out = []
    for kind, m, t, q in tqdm(grid, desc=f"{pool.name}: curves", disable=not cfg.progress):
        pt = curve_point(cfg.activation, pool, kind, psi_n=cfg.psi_n, psi_p=q, m=m, t=t, lam=cfg.lam,
                         seeds=cfg.seeds, held_out=cfg.held_out)
        if theory is not None:
            dsm, train, conv = theory_point(theory, psi_n=pt.psi_n, psi_p=pt.psi_p, t=t, lam=cfg.lam, m=m,
                                            eigs=pool.eigs)
            pt.theory_dsm_test, pt.theory_train, pt.theory_converged = dsm, train, conv
            pt.rel_dev_dsm_test = (pt.dsm_test - dsm) / dsm
            pt.rel_dev_train = (pt.train - train) / train
        out.append(pt)
    if spiked is not None:
        flagged = add_spiked(out, spiked, pool.eigs, log=log)
        if flagged and log is not None:
            log(f"{pool.name}: {flagged} spiked-theory points are flagged (estimated error above spike_rtol, "
                "column spiked_error)")
    return out


# ----------------------------------------------------------------------------------
# Phase diagram on real data


@dataclass
class PhasePoint:
    dataset: str
    d: int
    n: int
    p: int
    m: str
    t: float
    lam: float
    psi_n: float
    psi_p: float
    train: float
    train_over_a2: float


def run_phase(pool: Pool, cfg: Config) -> list[PhasePoint]:
    from validation.simulation.training import fit_on_data

    a2 = math.exp(-2 * cfg.phase_t)
    grid = [(m, qn, qp) for m in cfg.phase_m for qn in cfg.phase_psi_n for qp in cfg.phase_psi_p]
    out = []
    for m, qn, qp in tqdm(grid, desc=f"{pool.name}: phase diagram", disable=not cfg.progress):
        n, p = max(2, round(qn * pool.d)), max(1, round(qp * pool.d))
        rng_data, _ = experiment_streams(0, "phase", n, p, cfg.phase_t)
        X, _ = pool.draw("real", n, 0, rng_data)
        fit = fit_on_data(cfg.activation, X, p=p, t=cfg.phase_t, lam=cfg.phase_lam, m=m, seed=0)
        out.append(PhasePoint(dataset=pool.name, d=pool.d, n=n, p=p, m=m_label(m, "inf"), t=cfg.phase_t,
                              lam=cfg.phase_lam, psi_n=n / pool.d, psi_p=p / pool.d,
                              train=fit.train_error, train_over_a2=fit.train_error / a2))
    return out


# ----------------------------------------------------------------------------------
# Memorisation


@dataclass
class MemPoint:
    dataset: str
    kind: str
    d: int
    n: int
    p: int
    p_over_n: float
    m: str
    lam: float
    samples: int
    sampler: str
    seeds: int
    diverged: bool      # the sampler overflowed for every seed (no fraction measured; nan columns)
    diverged_seeds: int  # seeds whose sampler overflowed (left out of the fraction)
    fraction: float
    fraction_se: float
    median_ratio: float
    median_norm2_over_d: float
    t_ref: float
    train_at_t_ref: float
    dsm_test_at_t_ref: float
    seconds: float


def run_memorization(pool: Pool, cfg: Config, kind: str) -> tuple[list[MemPoint], dict]:
    """Memorised fraction over ``p/n`` and ``m``; returns the points and the samples of seed 0.

    Each of ``mem_seeds`` seeds draws its own ``n_mem`` training points, features and noise.
    The fraction is the mean over the seeds whose sampler stayed finite; its standard error
    is the larger of the between-seed standard error and the pooled bootstrap one
    (``sqrt(mean(se_s^2)/k)``), so that two seeds that happen to agree do not claim zero error.
    """
    lo, hi, count = cfg.mem_times
    times = np.geomspace(lo, hi, int(count))
    j_ref = int(np.argmin(np.abs(np.log(times / 0.1))))
    draws = []
    for s in range(cfg.mem_seeds):
        rng_data, rng_held = experiment_streams(cfg.mem_seed + s, "mem" + kind, cfg.n_mem)
        X, H = pool.draw(kind, cfg.n_mem, 500, rng_data)
        draws.append((cfg.mem_seed + s, X, H, rng_held))
    grid = [(r, m) for m in cfg.mem_m for r in cfg.mem_ratios]
    out, kept = [], {"train": draws[0][1]}
    sampler = _sampling.sample_sde if cfg.sampler == "sde" else _sampling.sample_ode
    for ratio, m in tqdm(grid, desc=f"{pool.name}: memorisation ({kind})", disable=not cfg.progress):
        start = time.perf_counter()
        p = max(1, round(ratio * cfg.n_mem))
        fr, ses, ratios, norms, trains, dsms, n_div = [], [], [], [], [], [], 0
        for k, (seed, X, H, rng_held) in enumerate(draws):
            score = _sampling.train_score_grid(cfg.activation, X, times, p=p, lam=cfg.mem_lam, m=m,
                                               seed=seed, progress=False)
            fit = score.fits[j_ref]
            trains.append(fit.train_error)
            dsms.append(fit.dsm_loss(H, np.random.default_rng(np.random.SeedSequence([seed, p, 11])))[0])
            rng = np.random.default_rng(np.random.SeedSequence([seed, p, 7]))
            try:
                with np.errstate(over="ignore", invalid="ignore"):
                    Y = sampler(score, n_samples=cfg.mem_samples, d=pool.d, rng=rng, T=hi, t_min=lo,
                                steps=cfg.mem_steps, covariance=pool.covariance, progress=False)
                    Xh = _sampling.tweedie(score, Y, lo)
                diverged = not np.all(np.isfinite(Xh))
            except FloatingPointError:
                diverged = True
            if diverged:
                n_div += 1
                continue
            mem = memorized_fraction(Xh, X)
            fr.append(mem.fraction)
            ses.append(mem.se)
            ratios.append(float(np.median(mem.d1 / mem.d2)))
            norms.append(float(np.median(np.sum(Xh**2, axis=1)) / pool.d))
            if k == 0:
                kept[(ratio, m_label(m, "inf"))] = (Xh, mem)
        if fr:
            frac = float(np.mean(fr))
            pooled = math.sqrt(float(np.mean(np.square(ses))) / len(ses))
            between = float(np.std(fr, ddof=1) / math.sqrt(len(fr))) if len(fr) > 1 else 0.0
            se = max(pooled, between)
            ratio_med, norm_med = float(np.median(ratios)), float(np.median(norms))
        else:
            frac = se = ratio_med = norm_med = math.nan
        out.append(MemPoint(dataset=pool.name, kind=kind, d=pool.d, n=cfg.n_mem, p=p, p_over_n=p / cfg.n_mem,
                            m=m_label(m, "inf"), lam=cfg.mem_lam, samples=cfg.mem_samples, sampler=cfg.sampler,
                            seeds=len(draws), diverged=not fr, diverged_seeds=n_div,
                            fraction=frac, fraction_se=se, median_ratio=ratio_med,
                            median_norm2_over_d=norm_med, t_ref=float(times[j_ref]),
                            train_at_t_ref=float(np.mean(trains)), dsm_test_at_t_ref=float(np.mean(dsms)),
                            seconds=time.perf_counter() - start))
    return out, kept


def spectrum_check(pool: Pool, cfg: Config, *, psi_p: float = 2.0, t: float = 0.1, clip: float = 3.0,
                   m_values=(4, math.inf), seeds: int = 3, held_out: int = 2000) -> list[dict]:
    """Gaussian data ``N(0, diag(ν))`` vs the structured theory for three spectra of the same ``d``.

    The pool spectrum, the same clipped at ``clip`` (renormalised to mean 1) and the isotropic
    one: if only the spiky spectrum deviates, the theory's gap on Gaussian data comes from the
    large eigenvalues, not from finite-``d`` noise.  Returns one dict per (spectrum, m).
    """
    from validation.simulation.training import fit_on_data

    d = pool.d
    spectra = [("pool", pool.eigs), (f"clipped at {clip:g}", np.minimum(pool.eigs, clip)),
               ("isotropic", np.ones(d))]
    out = []
    for label, eigs in spectra:
        eigs = eigs / eigs.mean()
        theory, note = structured_theory(cfg.activation, eigs)
        for m in m_values:
            tests, trains = [], []
            for s in range(seeds):
                rng = np.random.default_rng(np.random.SeedSequence([s, d, 99]))
                X = rng.standard_normal((round(cfg.psi_n * d), d)) * np.sqrt(eigs)
                H = rng.standard_normal((held_out, d)) * np.sqrt(eigs)
                fit = fit_on_data(cfg.activation, X, p=round(psi_p * d), t=t, lam=cfg.lam, m=m, seed=s)
                tests.append(fit.dsm_loss(H, rng)[0])
                trains.append(fit.train_error)
            dsm, dsm_se = _mean_se(tests)
            tr, tr_se = _mean_se(trains)
            th_dsm, th_tr, conv = theory_point(theory, psi_n=cfg.psi_n, psi_p=psi_p, t=t, lam=cfg.lam, m=m,
                                               eigs=eigs)
            out.append(dict(dataset=pool.name, spectrum=label, d=d, top_eig_over_d=float(eigs[0] / d),
                            m=m_label(m, "inf"), t=t, psi_p=psi_p, dsm_test=dsm, dsm_test_se=dsm_se,
                            theory_dsm_test=th_dsm, rel_dev_dsm_test=(dsm - th_dsm) / th_dsm,
                            train=tr, train_se=tr_se, theory_train=th_tr, rel_dev_train=(tr - th_tr) / th_tr,
                            theory_converged=conv))
    return out




# ----------------------------------------------------------------------------------
# Datasets


def dataset_name(path: Path) -> str:
    """The name of a dataset in tables and file names: its folder, or its file name up to the first dot."""
    path = Path(path)
    name = path.name if path.is_dir() else path.name.split(".")[0]
    return name or "data"
