"""The rank-one readings of the noise kernels (``derivations.overlaps``, ``docs/spiked.md``
section 15): how far each moves the errors of the conditional model, and the validation table
with both (not a test; one core).

    python3 benchmarks/spiked_noise_rank.py mc [--d 200] [--seeds 4]   # surrogate with read kernels
    python3 benchmarks/spiked_noise_rank.py theory [NAMES ...]        # the table, std and variance readings

``mc``: the conditional surrogate (``validation.simulation.spiked``, one spike) whose noise
scales ``mu_s, mu_f`` (``m >= 2``) or ``mu_*`` (``m = 1``) are replaced by the theory's readings
of rank one -- ``std``: the first singular pair of the kernel ``mu(s)``; ``variance``: the
square root of the best rank-one approximation of ``mu(s)^2`` -- or by the kernel's rank-two
expansion, against the surrogate with the full kernels on the same draws.  The readings are the
singular vectors on a Gauss--Hermite rule of ``N(0, 1)`` x ``N(0, 1)``, extended to the drawn
overlaps by the Nystrom formula ``g_r(c) = sum_a w_a f_r(x_a) K(x_a, c) / sigma_r``.
Prints the mean relative change of the train and test errors with its standard error.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
import warnings

import numpy as np

import pencils
import validation.simulation.spiked as sp
from derivations.overlaps import hermite_atoms
from validation.simulation.problem import Covariance, make_problem

#: (activation, kappa, t, m, psi_p): the settings of the measurement (psi_n = 1, lam = 1e-2)
SETTINGS = [("relu", 0.2, 0.1, 4, 6.0), ("relu", 0.2, 0.1, 4, 2.0), ("relu", 0.2, 0.1, 1, 2.0),
            ("relu", 0.2, 0.1, 1, 0.5), ("relu", 0.2, 0.1, math.inf, 2.0), ("relu", 0.2, 0.1, math.inf, 0.5),
            ("relu", 0.3, 0.05, 4, 6.0), ("relu", 0.3, 0.05, 1, 2.0), ("erf", 0.15, 0.05, 4, 6.0),
            ("tanh", 0.34, 0.3, 4, 2.0), ("tanh", 0.34, 0.3, 1, 0.5)]
READINGS = ("std", "variance", "rank 2")
NODES = 96


def _reading(kernel, how: str):
    """``(omega (p,), c (n,)) -> (n, p)``: the reading ``how`` of the kernel ``kernel(u)`` of
    ``u = omega c`` (module docstring)."""
    x, w = hermite_atoms(1, NODES)
    x, sw = x[:, 0], np.sqrt(w)
    square = how == "variance"
    R = 2 if how == "rank 2" else 1

    def k(u):
        return kernel(u) ** 2 if square else kernel(u)

    U, sig, Vt = np.linalg.svd(sw[:, None] * k(np.outer(x, x)) * sw[None, :])
    f_nodes, g_nodes = U[:, :R] / sw[:, None], Vt[:R].T / sw[:, None]

    def read(omega, c):
        g = (w[:, None] * f_nodes).T @ k(np.outer(x, c)) / sig[:R, None]     # (R, n)
        f = k(np.outer(omega, x)) @ (w[:, None] * g_nodes) / sig[None, :R]   # (p, R)
        out = (g.T * sig[:R]) @ f.T
        return np.sqrt(np.clip(out, 0.0, None)) if square else out

    return read


def _models(cc, kappa: float, a: float, lam1: float, m):
    """The full surrogate and one subclass per reading, for ``m``: the kernels the theory reads
    (``m = 1``: ``mu_*``; ``m = inf``: ``mu_s``, the fresh part entering through its exact mean
    variance; finite ``m``: ``mu_s`` and ``mu_f``)."""
    scale = a * math.sqrt(kappa)
    names = ("mu_star",) if m == 1 else ("mu_s",) if math.isinf(m) else ("mu_s", "mu_f")

    def kernel(name):
        return lambda u: np.sqrt(np.clip(cc.at(scale * u)[name + "_sq"], 0.0, None))

    class Full(sp.ConditionalModel):
        def noise(self, S, X, W):
            return (self.fn["mu_star"](S), np.zeros_like(S)) if m == 1 else super().noise(S, X, W)

    def read_model(how):
        reads = {name: _reading(kernel(name), how) for name in names}

        class Read(sp.ConditionalModel):
            def noise(self, S, X, W):
                c, omega = X[:, 0] / math.sqrt(lam1), W[:, 0]
                if m == 1:
                    return reads["mu_star"](omega, c), np.zeros_like(S)
                fresh = reads["mu_f"](omega, c) if "mu_f" in reads else self.fn["mu_f"](S)
                return reads["mu_s"](omega, c), fresh

            def fresh_variance(self, S, X, W):
                return self.noise(S, X, W)[1] ** 2 if "mu_f" in reads else super().fresh_variance(S, X, W)

        return Read

    return Full, {how: read_model(how) for how in READINGS}


def mc(args) -> None:
    print("| activation | kappa | t | m | psi_p | " + " | ".join(f"{h}: train, test" for h in READINGS) + " |")
    print("|---" * (5 + len(READINGS)) + "|")
    for act_name, kappa, t, m, psi_p in SETTINGS:
        if args.m and str(m) not in args.m:
            continue
        t0 = time.time()
        act = pencils.activation(act_name)
        pr = make_problem(d=args.d, psi_n=1, psi_p=psi_p, t=t, lam=1e-2, m=m)
        eig = sp.spiked_eigenvalues([kappa], 1.0 - kappa, args.d)
        cov = Covariance.of(eig, pr.d)
        tau_b = float(np.sum(eig[1:])) / eig.size
        full, reads = _models(sp.ConditionalCoefficients(act, t, tau_b), kappa, pr.a, eig[0], m)
        rel = {h: [] for h in READINGS}
        for seed in range(args.seeds):
            f0, _, te0, _ = sp.conditional_instance(act, pr, cov, 1, tau_b, seed, None, 48, model=full)
            for how, model in reads.items():
                f1, _, te1, _ = sp.conditional_instance(act, pr, cov, 1, tau_b, seed, None, 48, model=model)
                rel[how].append((f1.train_error / f0.train_error - 1.0, te1 / te0 - 1.0))
        cells = []
        for how in READINGS:
            r = np.array(rel[how])
            se = r.std(axis=0, ddof=1) / math.sqrt(len(r))
            cells.append(f"{r[:, 0].mean():+.3%} ± {se[0]:.3%}, {r[:, 1].mean():+.3%} ± {se[1]:.3%}")
        print(f"| {act_name} | {kappa} | {t} | {m} | {psi_p} | " + " | ".join(cells) + f" |  <!-- {time.time() - t0:.0f} s -->",
              flush=True)


#: The validation table's points (``docs/spiked.md`` sections 5-14): the arguments and the
#: Monte Carlo limits of the true features (test, its standard error, train, its standard error).
#: S1 at m = 1 is section 3's fit, as in section 15's table; the text there revises it with
#: d = 3200 and 6400 (test 1.07727 +- 0.00018 over six d); P2, P4, P5 and P6 likewise in
#: section 16 (true and centred features to d = 3200-6400).
TABLE = {
    "S1 m=1": ("relu", [0.2], 0.8, 1, 2, 0.1, 1e-2, 1, 1.07935, 0.00061, 0.004480, 0.000014),
    "P2": ("tanh", [0.34], 0.66, 1, 0.5, 0.3, 1e-2, 1, 0.87970, 0.00116, 0.38704, 0.00104),
    "P3": ("erf", [0.15], 0.85, 2, 3, 0.05, 1e-3, 1, 2.1463, 0.0088, 0.002015, 0.000013),
    "S1 m=inf p<n": ("relu", [0.2], 0.8, 1, 0.5, 0.1, 1e-2, math.inf, 0.17608, 0.00013, 0.911926, 0.000092),
    "S1 m=inf": ("relu", [0.2], 0.8, 1, 2, 0.1, 1e-2, math.inf, 0.46502, 0.00027, 0.643998, 0.000089),
    "S1 m=4 p<nm": ("relu", [0.2], 0.8, 1, 2, 0.1, 1e-2, 4, 0.99557, 0.00048, 0.349915, 0.000147),
    "S1 m=4 p>nm": ("relu", [0.2], 0.8, 1, 6, 0.1, 1e-2, 4, 1.45479, 0.00080, 0.033245, 0.000020),
    "P4 m=1": ("relu", [0.2, 0.1], 0.7, 1, 2, 0.3, 1e-2, 1, 0.93324, 0.00266, 0.003263, 0.000031),
    "P4 m=4 p<nm": ("relu", [0.2, 0.1], 0.7, 1, 2, 0.3, 1e-2, 4, 0.57179, 0.00067, 0.266507, 0.000083),
    "P4 m=4 p>nm": ("relu", [0.2, 0.1], 0.7, 1, 6, 0.3, 1e-2, 4, 0.58960, 0.00046, 0.013919, 0.000013),
    "P5": ("relu", [0.2, 0.1, 0.05], 0.65, 1, 2, 0.1, 1e-2, 1, 1.04083, 0.00066, 0.00506, 0.00003),
    "P6": ("erf", [0.25, 0.12, 0.06], 0.57, 1, 0.5, 0.05, 1e-2, 1, 0.77919, 0.00188, 0.47565, 0.00044),
}


def theory(names) -> None:
    """The default-rank theory at the table's points with both readings, against the Monte Carlo."""
    from derivations.overlaps import spiked_errors

    for name in names or TABLE:
        act, kappa, bulk, psi_n, psi_p, t, lam, m, mt, mts, mr, mrs = TABLE[name]
        th = pencils.build(act, covariance=sp.spiked_eigenvalues(kappa, bulk, 100000), spikes=len(kappa))
        cells = [name]
        for noise in ("std", "variance"):
            t0 = time.time()
            e = spiked_errors(pencils.activation(act), th.spikes.kappa, th.spikes.bulk, psi_n=psi_n, psi_p=psi_p,
                              t=t, lam=lam, m=m, noise=noise, tau_inf=th.spikes.tau_inf, throw=False)
            te, tr = float(e["test"]), float(e["train"])
            cells.append(f"{noise}: test {te:.6f} ({(te - mt) / mt:+.2%}, {(te - mt) / mts:+.1f}σ), train {tr:.7f} "
                         f"({(tr - mr) / mr:+.2%}, {(tr - mr) / mrs:+.1f}σ); quadrature "
                         f"{float(e['quadrature_error']):.1e}, truncation {float(e['truncation_error']):.1e}, noise "
                         f"{float(e['noise_error']):.1e} [{time.time() - t0:.0f} s]")
        print(" | ".join(cells), flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("mc", help="the readings against the full kernels (conditional surrogate)")
    a.add_argument("--d", type=int, default=200)
    a.add_argument("--seeds", type=int, default=4)
    a.add_argument("--m", nargs="+", help="only these m (1, 4, inf)")
    b = sub.add_parser("theory", help="the validation table with both readings")
    b.add_argument("names", nargs="*", help=f"points (default all: {', '.join(TABLE)})")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    if args.command == "mc":
        mc(args)
    else:
        theory(args.names)


if __name__ == "__main__":
    main(sys.argv[1:])
