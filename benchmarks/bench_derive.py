"""Benchmark of pencils.derive on models that are not DSM (a script, not a test).

Prints, in one run, for the Marchenko–Pastur transform (complex z), ridge with a random
teacher, random-features ridge (Mei–Montanari) and two concatenated random-feature layers:

* cold derivation (sympy: pencil, fixed-point equations, reduction; a fresh cache folder)
  and the compile time of the kernel;
* microseconds per point on a 10^4-point grid after a first call, with the checks on (the
  default: rounding estimate with the read-outs' long-double check, refinement where
  needed) and off (``check_rounding=False``), and their ratio;
* the raw path (``numerics.compile`` on the unreduced system) on the same grid, where it
  applies, and the ratio to the derived model;
* the floor: arithmetic operations per point in the generated kernel (core map, its
  Jacobian, read-outs), at ~1 ns each on this machine.

Run: ``python benchmarks/bench_derive.py``
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DSM_CACHE_DIR", tempfile.mkdtemp(prefix="bench-derive-"))

import numpy as np  # noqa: E402
import sympy  # noqa: E402

import pencils  # noqa: E402
from derivations import classic  # noqa: E402


def models() -> dict:
    gamma, lam = sympy.symbols("gamma lam", positive=True)
    z = sympy.Symbol("z")
    r2, sigma2 = sympy.symbols("r2 sigma2", nonnegative=True)
    n = pencils.Space("n", 1 / gamma)
    X = pencils.gaussian("X", n, pencils.D)
    S = X.T @ X
    beta, e = pencils.gaussian_vector("beta", pencils.D, r2), pencils.gaussian_vector("e", n, sigma2)
    bh = pencils.inverse(gamma * S + lam) @ (gamma * (S @ beta + X.T @ e))
    psi_n, psi_a, psi_b = sympy.symbols("psi_n psi_a psi_b", positive=True)
    mu_a, mu_b = sympy.symbols("mu_a mu_b", real=True)
    s_a, s_b = sympy.symbols("s_a s_b", nonnegative=True)
    nn, pa, pb = pencils.Space("n", psi_n), pencils.Space("pa", psi_a), pencils.Space("pb", psi_b)
    Xn = pencils.gaussian("X", nn, pencils.D)
    V = pencils.vstack([mu_a * pencils.gaussian("Wa", pa, pencils.D), mu_b * pencils.gaussian("Wb", pb, pencils.D)])
    F = Xn @ V.T + pencils.hstack([s_a * pencils.gaussian("Xia", nn, pa), s_b * pencils.gaussian("Xib", nn, pb)])
    P = pencils.inverse(F.T @ F / psi_n + lam)
    Sig = V @ V.T + pencils.block([[s_a**2 * pencils.identity(pa), 0], [0, s_b**2 * pencils.identity(pb)]])
    inner = -2 * r2 / psi_n * F.T @ Xn @ V.T + Sig @ P @ F.T @ (r2 * Xn @ Xn.T) @ F / psi_n**2
    g = np.geomspace(0.1, 10, 100)[:, None]
    return {
        "marchenko_pastur": (lambda: pencils.trace(pencils.inverse(gamma * S - z)), None,
                             dict(gamma=g, z=np.linspace(-1, 5, 100)[None, :] + 0.05j), "marchenko_pastur"),
        "ridge_teacher": (lambda: pencils.average((bh - beta).T @ (bh - beta)), "lam",
                          dict(gamma=g, lam=np.geomspace(1e-6, 1, 100)[None, :], r2=1.0, sigma2=0.5), "ridge"),
        "random_features": (classic.random_features_trace, "lam",
                            dict(psi_p=g, psi_n=1.3, lam=np.geomspace(1e-4, 1, 100)[None, :], mu1=0.8,
                                 mustar=0.6, r2=1.0, sigma2=0.3), "random_features"),
        "two_layers": (lambda: r2 + pencils.trace(P @ inner), "lam",
                       dict(psi_n=1.0, psi_a=g, psi_b=0.5, lam=np.geomspace(1e-4, 1, 100)[None, :], mu_a=0.8,
                            mu_b=0.5, s_a=0.6, s_b=0.9, r2=1.0), None),
    }


def per_point(fn, size: int, repeats: int = 3) -> float:
    fn()
    best = min(_timed(fn) for _ in range(repeats))
    return best / size * 1e6


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    from numerics.codegen.cxx import kernel_source, operation_counts

    print(f"cache: {os.environ['DSM_CACHE_DIR']}")
    print(f"{'model':18s} {'derive s':>9s} {'compile s':>9s} {'checks on':>11s} {'off':>9s} {'on/off':>7s} "
          f"{'raw path':>10s} {'raw/on':>7s} {'ops/pt':>7s} {'core':>5s}")
    for name, (make, cont, grid, raw_name) in models().items():
        t0 = time.perf_counter()
        model = pencils.derive(make(), continuation=cont)
        red = model.reduced
        t_derive = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.solve(**{k: np.ravel(v)[:1] for k, v in grid.items()}, throw=False)
        t_compile = time.perf_counter() - t0
        size = int(np.prod(np.broadcast_shapes(*(np.shape(v) for v in grid.values()))))
        on = per_point(lambda: model.solve(**grid, throw=False), size)
        off = per_point(lambda: model.solve(**grid, throw=False, check_rounding=False), size)
        raw = float("nan")
        if raw_name is not None:
            solver = classic.solver(raw_name)
            raw = per_point(lambda: solver.solve(**grid, throw=False), size, repeats=1)
        counts = operation_counts(kernel_source(red, cont))
        ops = sum(v for k, v in counts.items() if not k.startswith(("prefix", "fill")))
        print(f"{name:18s} {t_derive:9.2f} {t_compile:9.2f} {on:9.2f}us {off:7.2f}us {on / off:7.1f} "
              f"{raw:8.1f}us {raw / on:7.1f} {ops:7d} {red.sizes['core']:5d}")


if __name__ == "__main__":
    main()
