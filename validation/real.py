"""Real-data experiments: RF-DSM on image datasets, Gaussian data with the same spectrum,
the structured-data theory, sampling with the learned score and the memorised fraction.

``python -m validation.real --data PATH [--data PATH ...] [--quick] [--out DIR]``

For each dataset (an IDX images file or a folder holding one dataset, see
:func:`validation.images.data.load_dataset`; the pool is every split found, preprocessed as
MODEL.md says, optionally ``k x k`` mean-pooled first with ``--downsample k``):

1. **Learning curves** (``curves.csv/.md``, ``curves_<name>.png``).  At ``psi_n = n/d``
   and each ``psi_p = p/d``, ``m`` and ``t``: ``n`` training images drawn from the pool
   without replacement, ``p`` random features, ``m`` noise draws (``m = inf``: the exact
   noise average given each image, :func:`validation.montecarlo.fit_on_data`), ridge
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
   point by point.  When the installed ``pencils.build`` has no ``covariance=`` the
   columns are empty and the run says that the theory side is pending.
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

import argparse
import csv
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .images import data as _data
from .images import sampling as _sampling
from .images.memorization import memorized_fraction

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


def _m_label(m) -> str:
    return "inf" if math.isinf(m) else str(int(m))


def dsm_floor(eigs: np.ndarray, t: float) -> float:
    """DSM loss of the exact score of ``N(0, Σ)``: ``1 - Δ_t tr(S_t^{-1})/d``, ``S_t = a_t² Σ + Δ_t I``."""
    a, delta = _sampling.a_delta(t)
    return float(1.0 - delta * np.mean(1.0 / (a * a * eigs + delta)))


# ----------------------------------------------------------------------------------
# Structured-data theory (issue 8), optional


def structured_theory(act: str, eigs: np.ndarray):
    """``(theory, message)``: ``pencils.build(act, covariance=eigs)``, or ``None`` and why not."""
    import pencils

    try:
        theory = pencils.build(act, covariance=np.asarray(eigs, dtype=float))
    except TypeError as exc:
        if "covariance" not in str(exc):
            raise
        return None, ("structured-data theory pending: the installed pencils.build has no "
                      "covariance= argument (issue 8); theory columns left empty")
    return theory, ""


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


def _seed_streams(seed: int, tag: str, *values) -> list[np.random.Generator]:
    key = [int(seed), sum(ord(c) for c in tag)] + [int(round(v * 1000)) if math.isfinite(v) else 10**9
                                                   for v in values]
    return [np.random.default_rng(s) for s in np.random.SeedSequence(key).spawn(2)]


def _mean_se(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return float(v.mean()), (float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.inf)


def curve_point(act: str, pool: Pool, kind: str, *, psi_n, psi_p, m, t, lam, seeds, held_out) -> CurvePoint:
    """Train and measure at one ``(psi_n, psi_p, m, t, lam)``, averaged over ``seeds``.

    Seed ``s`` fixes the training/held-out draw (per ``kind``) and, through
    :func:`validation.montecarlo.fit_on_data`, ``W`` and the training noise; images and
    Gaussian data at the same seed share ``W`` and the noise (common random numbers, which
    sharpens their difference).
    """
    from validation.simulation.training import fit_on_data

    d = pool.d
    n, p = max(2, round(psi_n * d)), max(1, round(psi_p * d))
    tests, trains = [], []
    for s in range(seeds):
        rng_data, rng_noise = _seed_streams(s, kind, n, p, t)
        X, H = pool.draw(kind, n, held_out, rng_data)
        fit = fit_on_data(act, X, p=p, t=t, lam=lam, m=m, seed=s)
        loss, _ = fit.dsm_loss(H, rng_noise)
        tests.append(loss)
        trains.append(fit.train_error)
    dsm, dsm_se = _mean_se(tests)
    tr, tr_se = _mean_se(trains)
    floor = dsm_floor(pool.eigs, t)
    return CurvePoint(dataset=pool.name, kind=kind, d=d, n=n, p=p, m=_m_label(m), t=t, lam=lam,
                      psi_n=n / d, psi_p=p / d, seeds=seeds, dsm_test=dsm, dsm_test_se=dsm_se,
                      train=tr, train_se=tr_se, dsm_floor=floor, test_error=dsm - floor)


def run_curves(pool: Pool, cfg: Config, theory=None) -> list[CurvePoint]:
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
        rng_data, _ = _seed_streams(0, "phase", n, p, cfg.phase_t)
        X, _ = pool.draw("real", n, 0, rng_data)
        fit = fit_on_data(cfg.activation, X, p=p, t=cfg.phase_t, lam=cfg.phase_lam, m=m, seed=0)
        out.append(PhasePoint(dataset=pool.name, d=pool.d, n=n, p=p, m=_m_label(m), t=cfg.phase_t,
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
        rng_data, rng_held = _seed_streams(cfg.mem_seed + s, "mem" + kind, cfg.n_mem)
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
                kept[(ratio, _m_label(m))] = (Xh, mem)
        if fr:
            frac = float(np.mean(fr))
            pooled = math.sqrt(float(np.mean(np.square(ses))) / len(ses))
            between = float(np.std(fr, ddof=1) / math.sqrt(len(fr))) if len(fr) > 1 else 0.0
            se = max(pooled, between)
            ratio_med, norm_med = float(np.median(ratios)), float(np.median(norms))
        else:
            frac = se = ratio_med = norm_med = math.nan
        out.append(MemPoint(dataset=pool.name, kind=kind, d=pool.d, n=cfg.n_mem, p=p, p_over_n=p / cfg.n_mem,
                            m=_m_label(m), lam=cfg.mem_lam, samples=cfg.mem_samples, sampler=cfg.sampler,
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
                            m=_m_label(m), t=t, psi_p=psi_p, dsm_test=dsm, dsm_test_se=dsm_se,
                            theory_dsm_test=th_dsm, rel_dev_dsm_test=(dsm - th_dsm) / th_dsm,
                            train=tr, train_se=tr_se, theory_train=th_tr, rel_dev_train=(tr - th_tr) / th_tr,
                            theory_converged=conv))
    return out


# ----------------------------------------------------------------------------------
# Output: CSV (+ JSON sidecar), markdown tables, figures


def _write_csv(path: Path, rows: list, meta: dict) -> None:
    if not rows:
        return
    dicts = [asdict(r) for r in rows]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(dicts[0]))
        w.writeheader()
        w.writerows(dicts)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1, default=str))


def _fmt(x, digits=4) -> str:
    if isinstance(x, float):
        if math.isnan(x):
            return "–"
        return f"{x:.{digits}g}"
    return str(x)


def curves_table(rows: list[CurvePoint]) -> str:
    """Markdown: real vs Gaussian-same-spectrum (vs theory when present), one line per point."""
    real = {(r.dataset, r.m, r.t, r.psi_p): r for r in rows if r.kind == "real"}
    gauss = {(r.dataset, r.m, r.t, r.psi_p): r for r in rows if r.kind == "gaussian"}
    head = ("| dataset | m | t | ψ_p | DSM test real | DSM test Gauss | DSM theory | rel.dev real | "
            "rel.dev Gauss | train real | train Gauss | train theory | rel.dev real | rel.dev Gauss |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for key, r in real.items():
        g = gauss.get(key)
        pm = lambda v, se: f"{v:.4g} ± {se:.1g}"  # noqa: E731
        lines.append("| " + " | ".join([
            r.dataset, r.m, _fmt(r.t), _fmt(r.psi_p, 3), pm(r.dsm_test, r.dsm_test_se),
            pm(g.dsm_test, g.dsm_test_se) if g else "–", _fmt(r.theory_dsm_test),
            _fmt(r.rel_dev_dsm_test, 2), _fmt(g.rel_dev_dsm_test, 2) if g else "–",
            pm(r.train, r.train_se), pm(g.train, g.train_se) if g else "–", _fmt(r.theory_train),
            _fmt(r.rel_dev_train, 2), _fmt(g.rel_dev_train, 2) if g else "–"]) + " |")
    return "\n".join(lines) + "\n"


def real_vs_gaussian_table(rows: list[CurvePoint]) -> str:
    """Markdown: ``(images - Gaussian)/Gaussian`` of the DSM test loss and train error, one line per (dataset, m, t)."""
    gauss = {(r.dataset, r.m, r.t, r.psi_p): r for r in rows if r.kind == "gaussian"}
    groups: dict = {}
    for r in rows:
        g = gauss.get((r.dataset, r.m, r.t, r.psi_p))
        if r.kind == "real" and g is not None:
            groups.setdefault((r.dataset, r.m, r.t), []).append(
                (r.psi_p, (r.dsm_test - g.dsm_test) / g.dsm_test, (r.train - g.train) / g.train))
    if not groups:
        return ""
    psis = sorted({q for v in groups.values() for q, _, _ in v})
    cols = ", ".join(f"{q:g}" for q in psis)
    head = f"| dataset | m | t | DSM test, ψ_p = {cols} | train, ψ_p = {cols} |"
    lines = [head, "|---|---|---|---|---|"]
    for (name, m, t), v in groups.items():
        v = sorted(v)
        lines.append(f"| {name} | {m} | {t:g} | " + " ".join(f"{a:+.3f}" for _, a, _ in v) + " | "
                     + " ".join(f"{b:+.3f}" for _, _, b in v) + " |")
    return "\n".join(lines) + "\n"


def memorization_table(rows: list[MemPoint]) -> str:
    head = ("| dataset | data | d | n | p/n | m | memorised fraction | median d1/d2 | median ‖x̂‖²/d | "
            "train err (t≈0.1) | DSM test (t≈0.1) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        frac = "diverged" if r.diverged else f"{r.fraction:.3f} ± {r.fraction_se:.3f}"
        if r.diverged_seeds and not r.diverged:
            frac += f" ({r.diverged_seeds}/{r.seeds} seeds diverged)"
        lines.append("| " + " | ".join([r.dataset, r.kind, str(r.d), str(r.n), _fmt(r.p_over_n, 3), r.m, frac,
                                        _fmt(r.median_ratio, 3), _fmt(r.median_norm2_over_d, 3),
                                        _fmt(r.train_at_t_ref, 3), _fmt(r.dsm_test_at_t_ref, 3)]) + " |")
    return "\n".join(lines) + "\n"


def _colors(values):
    import matplotlib.pyplot as plt
    cmap = plt.get_cmap("viridis")
    return {v: cmap(i / max(1, len(values) - 1) * 0.85) for i, v in enumerate(values)}


def plot_curves(rows: list[CurvePoint], name: str, path: Path, theory_note: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.dataset == name]
    ts = sorted({r.t for r in rows})
    ms = sorted({r.m for r in rows}, key=lambda s: math.inf if s == "inf" else int(s))
    col = _colors(ms)
    fig, axes = plt.subplots(2, len(ts), figsize=(4.2 * len(ts), 7), squeeze=False)
    for j, t in enumerate(ts):
        for i, (attr, label) in enumerate((("dsm_test", "DSM test loss"), ("train", "train error"))):
            ax = axes[i, j]
            for m in ms:
                for kind, marker, fill in (("real", "o", True), ("gaussian", "s", False)):
                    pts = sorted((r for r in rows if r.t == t and r.m == m and r.kind == kind),
                                 key=lambda r: r.psi_p)
                    if not pts:
                        continue
                    x = [r.psi_p for r in pts]
                    y = [getattr(r, attr) for r in pts]
                    e = [getattr(r, attr + "_se") for r in pts]
                    ax.errorbar(x, y, yerr=e, fmt=marker, ms=5, color=col[m], capsize=2,
                                mfc=col[m] if fill else "none",
                                label=f"m={m} {'images' if kind == 'real' else 'Gaussian, same Σ̂'}")
                    th = [getattr(r, "theory_" + attr) for r in pts]
                    if np.any(np.isfinite(th)):
                        ax.plot(x, th, "-", color=col[m], lw=1)
            if attr == "dsm_test":
                ax.axhline(next(r.dsm_floor for r in rows if r.t == t),
                           color="gray", ls=":", lw=1, label="exact Gaussian score")
            ax.set_xscale("log")
            ax.set_xticks(sorted({r.psi_p for r in rows}), [f"{v:g}" for v in sorted({r.psi_p for r in rows})])
            ax.minorticks_off()
            ax.set_yscale("log" if attr == "train" else "linear")
            ax.set_xlabel("ψ_p = p/d")
            ax.set_title(f"{label}, t = {t:g}")
    axes[0, 0].legend(fontsize=7)
    d = rows[0].d
    fig.suptitle(f"{name}: RF-DSM on images (filled) and on N(0, Σ̂) (open), d = {d}, ψ_n = {rows[0].psi_n:.3g}, "
                 f"λ = {rows[0].lam:g}" + (f"\n{theory_note}" if theory_note else "\nlines: structured-data theory"),
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_phase(rows: list[PhasePoint], name: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.dataset == name]
    ms = sorted({r.m for r in rows}, key=lambda s: math.inf if s == "inf" else int(s))
    qn = sorted({r.psi_n for r in rows})
    qp = sorted({r.psi_p for r in rows})
    fig, axes = plt.subplots(1, len(ms), figsize=(4.6 * len(ms), 3.8), squeeze=False)
    for ax, m in zip(axes[0], ms):
        Z = np.full((len(qn), len(qp)), np.nan)
        for r in rows:
            if r.m == m:
                Z[qn.index(r.psi_n), qp.index(r.psi_p)] = math.log10(max(r.train_over_a2, 1e-16))
        im = ax.imshow(Z, origin="lower", aspect="auto", cmap="magma", vmin=-6, vmax=0.5)
        ax.set_xticks(range(len(qp)), [f"{v:.3g}" for v in qp])
        ax.set_yticks(range(len(qn)), [f"{v:.3g}" for v in qn])
        ax.set_xlabel("ψ_p")
        ax.set_ylabel("ψ_n")
        ax.set_title(f"m = {m}")
        fig.colorbar(im, ax=ax, label="log10 E_train / a_t²")
    fig.suptitle(f"{name}: train error relative to a_t² (t = {rows[0].t:g}, λ = {rows[0].lam:g}, d = {rows[0].d})",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_memorization(rows: list[MemPoint], name: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.dataset == name]
    ms = sorted({r.m for r in rows}, key=lambda s: math.inf if s == "inf" else int(s))
    col = _colors(ms)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for m in ms:
        for kind, ls, marker in (("real", "-", "o"), ("gaussian", "--", "s")):
            pts = sorted((r for r in rows if r.m == m and r.kind == kind), key=lambda r: r.p_over_n)
            if not pts:
                continue
            x = np.array([r.p_over_n for r in pts])
            lab = f"m={m} {'images' if kind == 'real' else 'Gaussian'}"
            f = np.array([r.fraction for r in pts])
            axes[0].errorbar(x, f, yerr=[r.fraction_se for r in pts], ls=ls, marker=marker, color=col[m],
                             mfc="none" if kind == "gaussian" else col[m], capsize=2, label=lab)
            axes[1].plot(x, [r.train_at_t_ref for r in pts], ls=ls, marker=marker, color=col[m],
                         mfc="none" if kind == "gaussian" else col[m])
            axes[2].plot(x, [r.median_norm2_over_d for r in pts], ls=ls, marker=marker, color=col[m],
                         mfc="none" if kind == "gaussian" else col[m])
    ratios = sorted({r.p_over_n for r in rows})
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(ratios, [f"{v:g}" for v in ratios])
        ax.minorticks_off()
        ax.set_xlabel("p / n = ψ_p / ψ_n")
    r0 = rows[0]
    axes[0].set_ylabel("memorised fraction (d1 < d2/3)")
    axes[0].legend(fontsize=7)
    axes[1].set_yscale("log")
    axes[1].set_ylabel(f"train error at t = {r0.t_ref:.3g}")
    axes[2].set_yscale("log")
    axes[2].set_ylabel("median ‖x̂‖²/d of samples (train ≈ 1)")
    fig.suptitle(f"{name}: samples of the learned score ({'reverse SDE' if r0.sampler == 'sde' else 'PF ODE'} + Tweedie), n = {r0.n}, d = {r0.d}, "
                 f"λ = {r0.lam:g}; missing points: sampler diverged", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_samples(kept: dict, images: _data.ImageData, name: str, path: Path, regimes) -> None:
    """Rows: training images; then for each regime 10 samples over their nearest training image."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = kept["train"]
    k = min(10, len(train))
    rows = [("training images", images.to_pixels(train[:k]))]
    for key, label in regimes:
        if key not in kept:
            continue
        Xh, mem = kept[key]
        order = np.arange(min(k, len(Xh)))
        rows.append((f"{label}: samples", images.to_pixels(Xh[order])))
        rows.append(("   nearest training image" + "  (* = memorised)", images.to_pixels(train[mem.nearest[order]])))
        rows[-1] = rows[-1] + (mem.memorized[order],)
    fig, axes = plt.subplots(len(rows), k, figsize=(1.1 * k, 1.25 * len(rows)), squeeze=False)
    for i, row in enumerate(rows):
        label, imgs = row[0], row[1]
        flags = row[2] if len(row) > 2 else None
        for j in range(k):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(imgs):
                ax.imshow(imgs[j], cmap="gray", vmin=0, vmax=1)
                if flags is not None and flags[j]:
                    ax.set_title("*", fontsize=9, pad=1)
        axes[i, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle(f"{name}: generated samples in the memorising and the generalising regime", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------
# Driver


def dataset_name(path: Path) -> str:
    path = Path(path)
    name = path.name if path.is_dir() else path.name.split(".")[0]
    return name or "data"


def run(paths, out: Path, cfg: Config, *, log=print) -> dict:
    """Run every experiment of ``cfg`` on each dataset path; write tables and figures to ``out``."""
    import pencils

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    act = pencils.activation(cfg.activation).name
    meta = {"config": asdict(cfg), "datasets": [str(p) for p in paths], "argv": sys.argv}
    curves, phase, mems, figures, notes, checks, tables = [], [], [], [], [], [], []
    for path in paths:
        name = dataset_name(path)
        images = _data.load_dataset(path, downsample=cfg.downsample)
        pool = Pool(name, images)
        log(f"{name}: pool of {len(pool.X)} images, d = {pool.d} (files {[str(f) for f in images.files]})")
        theory, note = structured_theory(act, pool.eigs)
        if note and note not in notes:
            notes.append(note)
            log(note)
        if cfg.curves:
            curves += run_curves(pool, cfg, theory)
            fig = out / f"curves_{name}.png"
            plot_curves(curves, name, fig, note)
            figures.append(fig)
        if cfg.phase:
            phase += run_phase(pool, cfg)
            fig = out / f"phase_{name}.png"
            plot_phase(phase, name, fig)
            figures.append(fig)
        if cfg.memorization:
            mimages = (images if cfg.mem_downsample == cfg.downsample
                       else _data.load_dataset(path, downsample=cfg.mem_downsample))
            mpool = Pool(name, mimages)
            kept_real = None
            for kind in (("real", "gaussian") if cfg.gaussian else ("real",)):
                rows, kept = run_memorization(mpool, cfg, kind)
                mems += rows
                if kind == "real":
                    kept_real = kept
            fig = out / f"memorization_{name}.png"
            plot_memorization(mems, name, fig)
            figures.append(fig)
            real_rows = [r for r in mems if r.dataset == name and r.kind == "real" and not r.diverged]
            if real_rows:
                best = max(real_rows, key=lambda r: (r.fraction, r.p_over_n))
                # generalising: among the points that memorise little, the one whose samples have
                # the norm closest to the training images' (diverging samplers are not "generalising")
                low = [r for r in real_rows if r.fraction <= 0.05] or real_rows
                gen = min(low, key=lambda r: abs(math.log(r.median_norm2_over_d)))
                regimes = [((best.p_over_n, best.m), f"memorising p/n={best.p_over_n:g} m={best.m}"),
                           ((gen.p_over_n, gen.m), f"generalising p/n={gen.p_over_n:g} m={gen.m}")]
                fig = out / f"samples_{name}.png"
                plot_samples(kept_real, mimages, name, fig, regimes)
                figures.append(fig)
        if cfg.spectrum_check:
            checks += spectrum_check(pool, cfg)
    meta["notes"] = notes
    if checks:
        head = "| dataset | spectrum | top eig / d | m | DSM test | theory | rel.dev | train | theory | rel.dev |"
        lines = [head, "|" + "---|" * (head.count("|") - 1)]
        for c in checks:
            lines.append(f"| {c['dataset']} | {c['spectrum']} | {c['top_eig_over_d']:.3f} | {c['m']} | "
                         f"{c['dsm_test']:.4f} ± {c['dsm_test_se']:.1g} | {_fmt(c['theory_dsm_test'])} | "
                         f"{_fmt(c['rel_dev_dsm_test'], 2)} | {c['train']:.4f} ± {c['train_se']:.1g} | "
                         f"{_fmt(c['theory_train'])} | {_fmt(c['rel_dev_train'], 2)} |")
        (out / "spectrum_check.md").write_text("\n".join(lines) + "\n")
        tables.append(out / "spectrum_check.md")
    _write_csv(out / "curves.csv", curves, meta)
    _write_csv(out / "phase.csv", phase, meta)
    _write_csv(out / "memorization.csv", mems, meta)
    if curves:
        (out / "curves.md").write_text(curves_table(curves))
        tables.append(out / "curves.md")
        rg = real_vs_gaussian_table(curves)
        if rg:
            (out / "real_vs_gaussian.md").write_text(rg)
            tables.append(out / "real_vs_gaussian.md")
    if mems:
        (out / "memorization.md").write_text(memorization_table(mems))
        tables.append(out / "memorization.md")
    return {"curves": curves, "phase": phase, "memorization": mems, "figures": figures,
            "tables": tables, "notes": notes}


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (v >= 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return v


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m validation.real",
        description="RF-DSM on real images (MNIST, Fashion-MNIST, any IDX images), Gaussian data with the "
                    "same covariance, structured-data theory, sampling and memorised fraction.")
    parser.add_argument("--data", action="append", required=True, metavar="PATH",
                        help="IDX images file (plain or .gz) or a folder holding one dataset; repeat for "
                             "several (e.g. /usr/share/datasets/fashion-mnist from the Debian package "
                             "dataset-fashion-mnist)")
    parser.add_argument("--out", default="results/real", type=Path, help="output folder (default results/real)")
    parser.add_argument("--quick", action="store_true", help="smaller grids, fewer seeds (about a minute per dataset)")
    parser.add_argument("--activation", default=None, help="activation (default relu)")
    parser.add_argument("--downsample", type=_positive_int, default=None,
                        help="k x k mean-pooling before preprocessing for the curves (default 2; 1 = MODEL.md exactly)")
    parser.add_argument("--mem-downsample", type=_positive_int, default=None,
                        help="same for the memorisation experiment (default 4, d = 49)")
    parser.add_argument("--seeds", type=_positive_int, default=None, help="seeds of the curves (default 3)")
    parser.add_argument("--mem-seeds", type=_positive_int, default=None,
                        help="training subsets per memorisation point (default 2)")
    parser.add_argument("--lam", type=_positive_float, default=None, help="ridge of the curves (default 1e-2)")
    parser.add_argument("--sampler", choices=("sde", "ode"), default=None,
                        help="memorisation sampler: reverse SDE (Euler-Maruyama, default) or probability-flow ODE (Heun)")
    parser.add_argument("--no-gaussian", action="store_true", help="skip Gaussian data with the same covariance")
    parser.add_argument("--no-curves", action="store_true")
    parser.add_argument("--spectrum-check", action="store_true",
                        help="also compare Gaussian data with the pool / clipped / isotropic spectrum to the "
                             "structured theory (t = 0.1, psi_p = 2, m = 4 and inf)")
    parser.add_argument("--no-phase", action="store_true")
    parser.add_argument("--no-memorization", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    for p in args.data:
        if not Path(p).exists():
            parser.error(f"--data {p}: no such file or folder")
    kw = {k: v for k, v in dict(activation=args.activation, downsample=args.downsample,
                                mem_downsample=args.mem_downsample, seeds=args.seeds, lam=args.lam,
                                sampler=args.sampler, mem_seeds=args.mem_seeds).items()
          if v is not None}
    kw |= dict(gaussian=not args.no_gaussian, curves=not args.no_curves, spectrum_check=args.spectrum_check, phase=not args.no_phase, memorization=not args.no_memorization,
               progress=not args.no_progress)
    cfg = Config.quick(**kw) if args.quick else Config(**kw)
    start = time.perf_counter()
    try:
        res = run([Path(p) for p in args.data], args.out, cfg)
    except (ValueError, FileNotFoundError) as exc:
        print(f"python -m validation.real: error: {exc}", file=sys.stderr)
        return 2
    for t in res["tables"]:
        print(f"\n## {t.name}\n")
        print(t.read_text())
    print("figures:", *[str(f) for f in res["figures"]], sep="\n  ")
    for note in res["notes"]:
        print("NOTE:", note)
    print(f"done in {time.perf_counter() - start:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
