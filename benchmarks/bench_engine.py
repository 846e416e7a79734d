"""Benchmark of the linear-pencil engine (a script, not a test).

Measures, for the three classic problems: derivation time (cold, i.e. empty disk
cache, and cached), pencil size, the solve time of a 200-point curve and of a
100 x 100 grid, and the same grid solved by a per-point ``scipy.optimize.fsolve``
loop over the same equations (same generated coefficient code), then prints the ratios.

Run: ``python benchmarks/bench_engine.py [--fsolve-points K]`` (the fsolve loop is
timed on K grid points, default all 10 000 for the ridge problem, and extrapolated
only if K is smaller).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _timeit(f, repeat=3):
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fsolve-points", type=int, default=10000)
    args = ap.parse_args()
    os.environ["DSM_CACHE_DIR"] = tempfile.mkdtemp(prefix="dsm-bench-")

    from _fsolve import fsolve_loop
    from derivations import classic
    from numerics import build_function, compile
    from pencils import cache
    from pencils.freeprob import equations

    problems = {"marchenko_pastur": classic.mp_trace, "ridge": classic.ridge_trace,
                "random_features": classic.random_features_trace}
    systems = {}
    print("== derivation (expression -> pencil -> equations -> generated code)")
    for name, make in problems.items():
        cache.clear_memory()
        t0 = time.perf_counter()
        S = equations(make())
        build_function(S, "numpy"); build_function(S, "mpmath")
        cold = time.perf_counter() - t0
        cache.clear_memory()
        t0 = time.perf_counter()
        S = equations(make())
        build_function(S, "numpy"); build_function(S, "mpmath")
        warm = time.perf_counter() - t0
        systems[name] = S
        print(f"{name:17s} pencil N={S.size:2d} {S.pencil.sizes_by_space()}  unknowns={S.n_unknowns:2d} "
              f"components={len(S.components):2d}  cold {cold:7.3f} s  cached {warm:6.3f} s  "
              f"ratio {cold / warm:6.1f}x")

    solvers = {k: compile(S) for k, S in systems.items()}
    curve = {
        "marchenko_pastur": dict(gamma=0.5, z=np.linspace(-2, 6, 200) + 0.05j),
        "ridge": dict(gamma=0.8, lam=np.geomspace(1e-2, 10, 200), r2=1.0, sigma2=0.5),
        "random_features": dict(psi_p=np.geomspace(0.1, 10, 200), psi_n=1.5, lam=0.05, mu1=0.8,
                                mustar=0.6, r2=1.0, sigma2=0.3),
    }
    g1, g2 = np.geomspace(0.1, 10, 100), np.geomspace(1e-2, 10, 100)
    grid = {
        "marchenko_pastur": dict(gamma=g1[:, None], z=np.linspace(-2, 6, 100)[None, :] + 0.05j),
        "ridge": dict(gamma=g1[:, None], lam=g2[None, :], r2=1.0, sigma2=0.5),
        "random_features": dict(psi_p=g1[:, None], psi_n=np.geomspace(0.1, 10, 100)[None, :], lam=0.05,
                                mu1=0.8, mustar=0.6, r2=1.0, sigma2=0.3),
    }
    print("\n== solves (best of 3; default = damped fixed point to fp_tol = 1e-2, then Newton)")
    grid_times = {}
    for name, s in solvers.items():
        s.solve(**curve[name])  # warm-up
        tc, _ = _timeit(lambda: s.solve(**curve[name]))
        tca = np.nan if name == "marchenko_pastur" else _timeit(lambda: s.solve(**curve[name], anderson=4))[0]
        tcc, _ = _timeit(lambda: s.solve(**curve[name], continuation_axis=0), repeat=1)
        tg, sol = _timeit(lambda: s.solve(**grid[name]), repeat=2)
        grid_times[name] = (tg, sol)
        assert sol.ok
        print(f"{name:17s} 200-curve {tc * 1e3:7.1f} ms (anderson {tca * 1e3:6.1f} ms, "
              f"continuation {tcc * 1e3:7.1f} ms)   100x100 grid {tg:6.3f} s, "
              f"mean iterations {sol.iterations.mean():.0f}")

    print("\n== per-point scipy.optimize.fsolve loop on the same equations (ridge, 100 x 100 grid)")
    tg, ref = grid_times["ridge"]
    tf, agree, K = fsolve_loop(solvers["ridge"], grid["ridge"], ref, args.fsolve_points)
    print(f"fsolve loop {tf:7.2f} s for 10 000 points ({'measured' if K == 10000 else f'extrapolated from {K}'}); "
          f"agrees with the vectorised solution at {agree}/{K} points")
    print(f"ratio fsolve / vectorised = {tf / tg:6.1f}x")


if __name__ == "__main__":
    main()
