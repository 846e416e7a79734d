"""The rank of the linear kernel ``mu1`` (``derivations.overlaps``, ``docs/spiked.md`` section 17):
how far its truncated expansion moves the errors, measured on the conditional surrogate without a
derivation (not a test; one core).

    python3 benchmarks/spiked_mu1_rank.py [NAMES ...] [--d 200] [--seeds 4] [--ranks 3 4 5 6]

The conditional surrogate (``validation.simulation.spiked``) whose linear coefficient ``mu1(s)``,
``s = a sum_j sqrt(kappa_j) omega_j c_j``, is replaced -- in the training features and in the test
moments -- by the theory's reading at rank ``R``: the singular triples ``(u_r, sigma_r, v_r)`` of
``diag(sqrt w) K diag(sqrt w)`` on the tensor Gauss--Hermite rule the theory uses (``1.5 Q`` nodes
per spike, ``Q`` of :data:`derivations.overlaps.DEFAULT_NODES`), extended to the drawn overlaps by
the Nystrom formulas of :func:`derivations.overlaps.overlap_measures`, ``f_r(omega) = sum_b
K(omega, c_b) sqrt(w_b) v_r(b)`` and ``g_r(c) = sum_a sqrt(w_a) u_r(a) K(omega_a, c) / sigma_r``.
Every other part of the surrogate (``mu0``, the noise) is the full one, and both runs use the same
draws, so the paired change is the truncation's alone.  Prints the mean relative change of the
train and test errors per rank, with its standard error over the seeds.
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
from derivations.overlaps import DEFAULT_NODES, hermite_atoms
from validation.simulation.problem import Covariance, make_problem

#: (activation, kappa, bulk, psi_n, psi_p, t, lam, m): points of the validation table
#: (benchmarks/spiked_noise_rank.py TABLE).
POINTS = {
    "P4": ("relu", [0.2, 0.1], 0.7, 1, 2, 0.3, 1e-2, 1),
    "P5": ("relu", [0.2, 0.1, 0.05], 0.65, 1, 2, 0.1, 1e-2, 1),
    "P6": ("erf", [0.25, 0.12, 0.06], 0.57, 1, 0.5, 0.05, 1e-2, 1),
    "P4 m=4 p<nm": ("relu", [0.2, 0.1], 0.7, 1, 2, 0.3, 1e-2, 4),
    "S1 m=4 p<nm": ("relu", [0.2], 0.8, 1, 2, 0.1, 1e-2, 4),
    "S1 m=inf": ("relu", [0.2], 0.8, 1, 2, 0.1, 1e-2, math.inf),
    "S1 m=4 p>nm": ("relu", [0.2], 0.8, 1, 6, 0.1, 1e-2, 4),
    "P4 m=4 p>nm": ("relu", [0.2, 0.1], 0.7, 1, 6, 0.3, 1e-2, 4),
}


def mu1_kernel(act, t: float, tau_b: float):
    """``s -> mu1(s) = E[g rho(s + g)] / v_b``, ``g ~ N(0, v_b)`` (the coefficient of
    :func:`derivations.overlaps.conditional_coefficients`, without the noise parts)."""
    sig = math.sqrt(math.exp(-2.0 * t) * tau_b - math.expm1(-2.0 * t))
    return lambda s: act.gaussian_moments(np.asarray(s, dtype=float), sig, 1)[..., 1] / sig


def truncated(kernel, kappa, a: float, eig_sp, R: int, q: int):
    """``(S, X_sp, W_sp) -> K_R`` of the pairs: the rank-``R`` reading (module docstring) of
    ``kernel(a sum_j sqrt(kappa_j) omega_j c_j)`` with ``c = X_sp / sqrt(eig_sp)``, ``omega = W_sp``."""
    k = len(kappa)
    x, w = hermite_atoms(k, q)
    scale = a * np.sqrt(np.asarray(kappa, dtype=float))
    sw = np.sqrt(w)
    U, sig, Vt = np.linalg.svd(sw[:, None] * kernel((x * scale) @ x.T) * sw[None, :])
    U, sig, Vt = U[:, :R], sig[:R], Vt[:R]

    def linear(S, X_sp, W_sp):
        c = X_sp / np.sqrt(eig_sp[:k])
        f = kernel((W_sp * scale) @ x.T) @ (sw[:, None] * Vt.T)          # (p, R)
        g = kernel((x * scale) @ c.T).T @ (sw[:, None] * U) / sig          # (n, R)
        return g @ f.T

    return linear


def run(name: str, d: int, seeds: int, ranks) -> None:
    act_name, kappa, bulk, psi_n, psi_p, t, lam, m = POINTS[name]
    k = len(kappa)
    act = pencils.activation(act_name)
    pr = make_problem(d=d, psi_n=psi_n, psi_p=psi_p, t=t, lam=lam, m=m)
    eig = sp.spiked_eigenvalues(kappa, bulk, d)
    cov = Covariance.of(eig, pr.d)
    tau_b = float(np.sum(eig[k:])) / eig.size
    kernel = mu1_kernel(act, t, tau_b)
    q = DEFAULT_NODES[k] + DEFAULT_NODES[k] // 2
    nodes = {1: 48, 2: 24}.get(k, 12)  # simulate_spiked's test quadrature
    models = {}
    for R in ranks:
        reading = truncated(kernel, kappa, pr.a, eig, R, q)

        class Read(sp.ConditionalModel):
            def linear(self, S, X_sp, W_sp, _reading=reading):
                return _reading(S, X_sp, W_sp)

        models[R] = Read
    rel = {R: [] for R in ranks}
    base = []
    t0 = time.time()
    for seed in range(seeds):
        f0, _, te0, _ = sp.conditional_instance(act, pr, cov, k, tau_b, seed, None, nodes)
        base.append((f0.train_error, te0))
        for R, model in models.items():
            f1, _, te1, _ = sp.conditional_instance(act, pr, cov, k, tau_b, seed, None, nodes, model=model)
            rel[R].append((f1.train_error / f0.train_error - 1.0, te1 / te0 - 1.0))
    b = np.array(base)
    cells = []
    for R in ranks:
        r = np.array(rel[R])
        se = r.std(axis=0, ddof=1) / math.sqrt(len(r)) if len(r) > 1 else np.full(2, np.nan)
        cells.append(f"R={R}: train {r[:, 0].mean():+.3%} ± {se[0]:.3%}, test {r[:, 1].mean():+.3%} ± {se[1]:.3%}")
    print(f"| {name} | d={d} | {seeds} seeds | full: train {b[:, 0].mean():.6f}, test {b[:, 1].mean():.5f} | "
          + " | ".join(cells) + f" |  <!-- {time.time() - t0:.0f} s -->", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"points (default all: {', '.join(POINTS)})")
    parser.add_argument("--d", type=int, nargs="+", default=[200])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--ranks", type=int, nargs="+", default=[3, 4, 5, 6])
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    for name in args.names or POINTS:
        for d in args.d:
            run(name, d, args.seeds, args.ranks)


if __name__ == "__main__":
    main(sys.argv[1:])
