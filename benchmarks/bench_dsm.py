"""Benchmark of the DSM learning curves (a script, not a test).

For m in {1, 4, inf} (relu, t = 0.5, lam = 1e-2): one 200-point curve along psi_p and one
100 x 100 (psi_n, psi_p) phase diagram, both errors, solved by the compiled vectorised solver
(`pencils.build(...).errors`, with and without the rounding-error check), against a per-point
`scipy.optimize.fsolve` loop over the same equations (timed on a subset, extrapolated).
Prints the times and ratios measured in this one run.

Run: ``python benchmarks/bench_dsm.py [--fsolve-points K]``.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fsolve-points", type=int, default=300)
    args = ap.parse_args()
    from _fsolve import fsolve_loop

    import pencils
    from derivations.theory import _solver

    theory = pencils.build("relu")
    t, lam = 0.5, 1e-2
    axis = np.geomspace(0.2, 4.0, 100)
    for m in (1, 4, math.inf):
        t0 = time.perf_counter()
        theory.errors(psi_n=1.0, psi_p=1.0, t=t, lam=lam, m=m)  # derive (or load) and compile
        prep = time.perf_counter() - t0
        t0 = time.perf_counter()
        theory.errors(psi_n=1.0, psi_p=np.geomspace(0.1, 10, 200), t=t, lam=lam, m=m, throw=False)
        curve = time.perf_counter() - t0
        t0 = time.perf_counter()
        e = theory.errors(psi_n=axis[None, :], psi_p=axis[:, None], t=t, lam=lam, m=m, throw=False,
                          check_rounding=False)
        grid = time.perf_counter() - t0
        t0 = time.perf_counter()
        theory.errors(psi_n=axis[None, :], psi_p=axis[:, None], t=t, lam=lam, m=m, throw=False)
        grid_checked = time.perf_counter() - t0
        label = "inf" if math.isinf(m) else str(m)
        print(f"m={label:>3}: derive+compile {prep:6.2f} s | 200-point curve {curve:6.3f} s | "
              f"100x100 grid {grid:6.2f} s ({int(e.converged.sum())} / 10000 converged), "
              f"{grid_checked:6.2f} s with the rounding check")
        kind = "1" if m == 1 else ("inf" if math.isinf(m) else "finite")
        total = 0.0
        for q in ("test", "train"):
            solver = _solver(kind, q)
            params = theory.solver_params(axis[None, :], axis[:, None], t, lam, m)
            params = {k: v for k, v in params.items() if k in solver.param_names}
            t0 = time.perf_counter()
            ref = solver.solve(params, throw=False)
            vec = time.perf_counter() - t0
            loop, agree, K = fsolve_loop(solver, params, ref, args.fsolve_points)
            total += loop
            print(f"        E_{q}: vectorised {vec:6.2f} s, fsolve loop {loop:8.1f} s (extrapolated from {K} "
                  f"points, {agree}/{K} agree to 1e-8): ratio {loop / vec:7.1f}x")
        print(f"        both errors: fsolve loop / vectorised grid = {total / grid:7.1f}x")


if __name__ == "__main__":
    main()
