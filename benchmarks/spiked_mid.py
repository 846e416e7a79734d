"""What the directions of order ``d`` left in the bulk do (issue 17, docs/spiked.md section 11):
Monte Carlo of Gaussian data against the spiked theory with two spikes (not a test; one core).

    python3 benchmarks/spiked_mid.py directions --data PATH [--variant base one four] [--kappa 0.0612]
        [--scale 1|2] [--m 1] [--spikes 2 3]
    python3 benchmarks/spiked_mid.py norms --data PATH [--mode none samples features both] [--cap 40]
    python3 benchmarks/spiked_mid.py probe --data PATH [--eps 0.03]

``directions``: MNIST's spectrum with its eigenvalues 3, 4, ... clipped at the 41st (as ``spiked_images.py clip --cap 40``)
(``base``; two spikes and a bounded bulk), then eigenvalue 3 put back at ``kappa d`` (``one``),
or eigenvalues 3-6 at ``kappa d / 2`` (``four``: the same sum of ``kappa_j^2``).  ``--scale 2``
doubles ``d`` with the same spikes and bulk measure (each bulk eigenvalue twice), to tell an
effect of the limit from a finite-size one.  ``--spikes 3`` adds the three-spike theory, which
resolves the ``one`` direction.

``norms``: the full spectrum, with each sample's (``samples``) and/or each feature's
(``features``) coordinates along eigenvalues ``3 ... cap`` rescaled so that
``sum_j lambda_j g_j^2`` equals its mean ``sum_j lambda_j``.  This removes the per-sample and
per-feature fluctuations of the pre-activation variance that those directions cause
(``sum_j kappa_j (g_j^2 - 1)``, standard deviation ``sqrt(2 sum_j kappa_j^2)``) and keeps
everything else; what is left of the gap is not those fluctuations.

``probe``: the full spectrum against the two-spike theory corrected by ``c sum_{j>2} kappa_j^2``,
``c eps^2`` being the change when a probe direction of share ``eps`` is resolved as a second spike
(one spike resolved, the second spike and the probe in the bulk; rank 3 for both): the correction
of section 10 of docs/spiked.md, measured.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from spiked_images import ACT, HELD_OUT, LAM, PSI_N, _DiagonalPool, _pool

T = 0.1
CAP = 40


def _spectrum(path: str) -> np.ndarray:
    """The data's eigenvalues at ``d = 784``, largest first, round-off clipped at 0."""
    return np.maximum(np.sort(_pool(path, 1).eigs)[::-1], 0.0)


def _variant(eigs: np.ndarray, variant: str, kappa: float, scale: int) -> np.ndarray:
    e = eigs.copy()
    e[2:] = np.minimum(e[2:], e[CAP])
    if scale > 1:  # the same spikes and bulk measure at scale * d
        e = np.concatenate([e[:2] * scale, np.repeat(e[2:], scale), e[len(e) - 2 * (scale - 1):]])
    d = len(e)
    if variant == "one":
        e[2] = kappa * d
    elif variant == "four":
        e[2:6] = kappa / 2 * d
    elif variant != "base":
        raise ValueError(f"variant must be base, one or four, got {variant!r}")
    return np.sort(e)[::-1]


def _theory(eigs, spikes, psi_p, m):
    """``(DSM test loss, train error)`` of the spiked theory with ``spikes`` spikes."""
    import pencils
    from derivations.spiked_theory import SpikeWarning
    from validation.images.experiments import dsm_floor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpikeWarning)  # these points are flagged; the deviation is the subject
        e = pencils.build(ACT, covariance=eigs, spikes=spikes).errors(psi_n=PSI_N, psi_p=psi_p, t=T, lam=LAM, m=m)
    return float(e.test) + dsm_floor(eigs, T), float(e.train)


def _line(name, q, dsm, dsm_se, train, train_se, theories) -> str:
    devs = " | ".join(f"k={k}: dsm {(dsm - a) / a:+.4f} train {(train - b) / b:+.4f}" for k, (a, b) in theories.items())
    return f"{name} psi_p={q}: DSM {dsm:.5f}±{dsm_se:.5f} train {train:.6f}±{train_se:.6f} | {devs}"


def directions(args) -> None:
    from validation.images.experiments import curve_point

    m = args.m
    for variant in args.variant:
        eigs = _variant(_spectrum(args.data), variant, args.kappa, args.scale)
        pool = _DiagonalPool(f"{variant}-d{len(eigs)}", eigs)
        for q in args.psi_p:
            pt = curve_point(ACT, pool, "gaussian", psi_n=PSI_N, psi_p=q, m=m, t=T, lam=LAM, seeds=args.seeds,
                             held_out=HELD_OUT)
            th = {k: _theory(eigs, k, pt.psi_p, m) for k in args.spikes}
            print(_line(pool.name, q, pt.dsm_test, pt.dsm_test_se, pt.train, pt.train_se, th), flush=True)


def norms(args) -> None:
    import pencils
    from validation.images.experiments import _mean_se, experiment_streams
    from validation.simulation import training
    from validation.simulation.problem import Problem, instance_streams

    m = args.m
    eigs = _spectrum(args.data)
    d, mid = len(eigs), slice(2, args.cap)

    def normalise(G):
        """Rows of standard normals, their coordinates along ``mid`` rescaled to the mean norm."""
        s = np.sqrt(eigs[mid].sum() / (G[:, mid] ** 2 @ eigs[mid]))
        G = G.copy()
        G[:, mid] *= s[:, None]
        return G

    class FeatureDraws:
        """The stream of ``W`` (training draws it with ``standard_normal``), normalised."""

        def __init__(self, rng):
            self.rng = rng

        def standard_normal(self, shape):
            return normalise(self.rng.standard_normal(shape))

    act = pencils.activation(ACT)
    for mode in args.mode:
        for q in args.psi_p:
            n, p = round(PSI_N * d), round(q * d)
            tests, trains = [], []
            for s in range(args.seeds):
                rng_data, rng_noise = experiment_streams(s, "gaussian", n, p, T)
                G = rng_data.standard_normal((n + HELD_OUT, d))
                if mode in ("samples", "both"):
                    G = normalise(G)
                G *= np.sqrt(eigs)
                pr = Problem(d=d, n=n, p=p, m=m, t=T, lam=LAM, psi_n=n / d, psi_p=p / d)
                rngs = instance_streams(s, d, n, p)
                if mode in ("features", "both"):
                    rngs[0] = FeatureDraws(rngs[0])
                # (the private trainer: fit_on_data draws W itself and has no hook for its stream)
                fit = training._train(act, pr, G[:n], rngs, False, None, None)
                tests.append(fit.dsm_loss(G[n:], rng_noise)[0])
                trains.append(fit.train_error)
            th = {2: _theory(eigs, 2, p / d, m)}
            print(_line(f"{Path(args.data).name} {mode} cap={args.cap}", q, *_mean_se(tests), *_mean_se(trains), th),
                  flush=True)


def probe(args) -> None:
    import pencils
    from derivations.overlaps import spiked_errors
    from validation.images.experiments import curve_point, dsm_floor

    m = args.m
    eigs = _spectrum(args.data)
    d = len(eigs)
    split = pencils.build(ACT, covariance=eigs, spikes=2).spikes
    atoms, weights = split.bulk
    act, eps, rank = pencils.activation(ACT), args.eps, {"mu1": 3, ("star" if m == 1 else "s"): 1}

    def bulk_with(*shares):
        """The bulk measure with eigenvalues ``share * d`` added (weights: one per eigenvalue)."""
        n_b = d - split.k
        return np.r_[atoms, np.multiply(shares, d)], np.r_[weights * n_b, np.ones(len(shares))] / (n_b + len(shares))

    def theory(kappa, bulk, psi_p):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # flagged points: the deviation is the subject
            e = spiked_errors(act, kappa, bulk, psi_n=PSI_N, psi_p=psi_p, t=T, lam=LAM, m=m, R=rank)
        return np.array([float(e["test"][0]) + dsm_floor(eigs, T), float(e["train"][0])])

    pool = _DiagonalPool(Path(args.data).name, eigs)
    for q in args.psi_p:
        pt = curve_point(ACT, pool, "gaussian", psi_n=PSI_N, psi_p=q, m=m, t=T, lam=LAM, seeds=args.seeds,
                         held_out=HELD_OUT)
        psi = np.array([pt.psi_p])
        two = theory(split.kappa, split.bulk, psi)
        c = (theory([split.kappa[0], eps], bulk_with(split.kappa[1]), psi)
             - theory(split.kappa[:1], bulk_with(split.kappa[1], eps), psi)) / eps**2
        corrected = two + c * split.residual
        print(_line(pool.name, q, pt.dsm_test, pt.dsm_test_se, pt.train, pt.train_se,
                    {"2": tuple(two), "2 + c R": tuple(corrected)}) + f" | c/E {c[0] / two[0]:+.2f} {c[1] / two[1]:+.2f}",
              flush=True)


def main(argv=None) -> None:
    from validation.simulation.problem import parse_m

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("directions", "norms", "probe"):
        s = sub.add_parser(name)
        s.add_argument("--data", required=True, help="an image folder (MNIST's at d = 784)")
        s.add_argument("--m", type=parse_m, default="1")
        s.add_argument("--psi-p", type=float, nargs="+", default=[1.0, 2.0, 4.0])
        s.add_argument("--seeds", type=int, default=2)
    a = sub.choices["directions"]
    a.add_argument("--variant", nargs="+", default=["base", "one", "four"])
    a.add_argument("--kappa", type=float, default=0.0612, help="share of the restored direction (MNIST's kappa_3)")
    a.add_argument("--scale", type=int, default=1, help="d = 784 * scale")
    a.add_argument("--spikes", type=int, nargs="+", default=[2])
    b = sub.choices["norms"]
    b.add_argument("--mode", nargs="+", default=["none", "samples", "features", "both"])
    b.add_argument("--cap", type=int, default=CAP, help="normalise the directions 3 ... cap")
    sub.choices["probe"].add_argument("--eps", type=float, default=0.03, help="the probe direction's share")
    args = ap.parse_args(argv)
    {"directions": directions, "norms": norms, "probe": probe}[args.cmd](args)


if __name__ == "__main__":
    main()
