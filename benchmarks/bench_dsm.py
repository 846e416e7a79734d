"""Benchmark of the DSM learning curves on the reduced engine (a script, not a test).

Prints, in one run (relu, t = 0.5, lam = 1e-2 unless said):

* per m in {1, 4, inf}: a 100 x 100 (psi_n, psi_p) grid of both errors with the accuracy
  check on (rounding estimate + automatic refinement in double-double, then mpmath), and
  without it, in us per point, after a first call that builds what it needs; the same grid
  on the raw operator-valued systems (the previous engine), on the numpy backend of the
  same algorithm, and by a per-point ``scipy.optimize.fsolve`` loop on the same reduced
  equations (timed on a subset, extrapolated), with the ratios; the floor estimate
  (arithmetic operations per point, from the generated code);
* a single point after the first call;
* cold derivation of all kinds, and a fresh process with a warm cache to the first number;
* 50-digit mpmath: an ordinary point and the interpolation peak (psi_p/psi_n = 1 - 1e-6,
  lam = 1e-10, m = 1);
* the peak memory of a 1e5-point grid (tracemalloc).

Run: ``python benchmarks/bench_dsm.py [--fsolve-points K] [--skip-cold] [--lo 0.2 --hi 4]``
(the default grid is the previous benchmark's; ``--lo 0.1 --hi 10`` reaches deep memorisation).
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _fsolve_loop(solver, params: dict, points: int) -> float:
    """Seconds for the whole grid by a per-point fsolve on the reduced core (extrapolated)."""
    from scipy.optimize import fsolve

    from numerics.stages import stack as _stack

    fns = solver._fns("numpy")
    flat, _ = solver._flat_params(params)
    size = next(iter(flat.values())).size
    pts = np.linspace(0, size - 1, min(points, size)).astype(int)
    t0 = time.perf_counter()
    for k in pts:
        E = {name: v[k:k + 1] for name, v in flat.items()}
        for j, (kind, body) in enumerate(solver.reduced.segments):
            if kind == "let":
                fns[f"seg_{j}"](E)
                continue
            K = len(body.unknowns)
            u0 = _stack(fns[f"map_{j}"](E, np.zeros((K, 1))), K, 1)[:, 0]

            def F(u, E=E, j=j, K=K):
                return u - _stack(fns[f"map_{j}"](E, u[:, None]), K, 1)[:, 0]

            u = fsolve(F, u0, xtol=1e-13)
            for s, x in zip(body.unknowns, u):
                E[s.name] = np.array([x])
            if body.eliminated:
                for s, x in zip(body.eliminated, _stack(fns[f"fill_{j}"](E, u[:, None]), len(body.eliminated), 1)):
                    E[s.name] = x
        fns["outputs"](E)
    return (time.perf_counter() - t0) * size / len(pts)


def _floor(solver, iterations) -> float:
    """Arithmetic operations per point of the checked double-precision solve, from the
    generated code: fixed-point/Newton iterations on the core map (a Newton step is one
    Jacobian and about one map), the attractivity Jacobian, the read-outs, and three warm
    re-solves (map, read-outs) for the rounding check."""
    from numerics.codegen.cxx import operation_counts

    kernel = solver._kernel()
    if kernel is None or kernel.source is None:
        return 0.0
    c = operation_counts(kernel.source.read_text())
    core = [k for k in c if k.startswith("map_")]
    its = float(np.median(iterations))
    total = 0.0
    for mk in core:
        k = mk.split("_")[1]
        newton = 5.0  # typical Newton steps after the fixed point (the rest of the iterations)
        total += (its - newton) * c[mk] + newton * (c[f"jac_{k}"] + c[mk]) + c[f"jac_{k}"]
        total += 3 * c[mk] + 4 * c[f"fill_{k}"]
    lets = sum(v for k, v in c.items() if k.startswith("seg_")) + c.get("outputs", 0)
    return total + 4 * lets


def _subprocess_seconds(code: str, cache: str) -> float:
    env = dict(os.environ, DSM_CACHE_DIR=cache, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fsolve-points", type=int, default=300)
    ap.add_argument("--skip-cold", action="store_true")
    ap.add_argument("--lo", type=float, default=0.2, help="grid of psi_n and psi_p: geomspace(lo, hi, 100)")
    ap.add_argument("--hi", type=float, default=4.0)
    args = ap.parse_args()

    import pencils
    from derivations.dsm import dsm_system
    from derivations.theory import m_kind, reduced_solver
    from numerics import compile as compile_raw

    first = "import pencils; pencils.build('relu').errors(psi_n=2, psi_p=4, t=0.5, lam=1e-2, m=1)"
    if not args.skip_cold:
        with tempfile.TemporaryDirectory() as cache:
            every = ("import pencils; th = pencils.build('relu')\n"
                     "for m in (1, 4, 'inf'): th.errors(psi_n=2, psi_p=4, t=0.5, lam=1e-2, m=m)")
            cold = _subprocess_seconds(every, cache)
            warm = _subprocess_seconds(first, cache)
            print(f"cold derivation of m = 1, finite m, inf (fresh process, empty cache): {cold:6.1f} s")
            print(f"fresh process, warm cache, to the first number:                     {warm:6.2f} s")

    theory = pencils.build("relu")
    t, lam = 0.5, 1e-2
    axis = np.geomspace(args.lo, args.hi, 100)
    grid = dict(psi_n=axis[None, :], psi_p=axis[:, None], t=t, lam=lam)
    for m in (1, 4, math.inf):
        label = "inf" if math.isinf(m) else str(m)
        t0 = time.perf_counter()
        theory.errors(m=m, throw=False, **grid)  # first call: loads, and builds the double-double library if needed
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        e = theory.errors(m=m, throw=False, **grid)
        checked = time.perf_counter() - t0
        t0 = time.perf_counter()
        theory.errors(m=m, throw=False, check_rounding=False, **grid)
        plain = time.perf_counter() - t0
        kind = m_kind(m)
        params = theory.solver_params(axis[None, :], axis[:, None], t, lam, m)
        t0 = time.perf_counter()
        for q in ("test", "train"):
            raw = compile_raw(dsm_system(kind, q))
            raw.solve({k: v for k, v in params.items() if k in raw.param_names}, throw=False)
        old = time.perf_counter() - t0
        solver = reduced_solver(kind)
        loop = _fsolve_loop(solver, {k: v for k, v in params.items() if k in solver.param_names},
                            args.fsolve_points)
        t0 = time.perf_counter()
        theory.errors(m=m, throw=False, check_rounding=False, backend="numpy", **grid)
        vec = time.perf_counter() - t0
        reps = 50
        t0 = time.perf_counter()
        for _ in range(reps):
            theory.errors(psi_n=1.3, psi_p=2.7, t=t, lam=lam, m=m)
        single = (time.perf_counter() - t0) / reps
        floor = _floor(solver, e.iterations)
        print(f"m={label:>3}: 100x100 both errors {checked / 1e4 * 1e6:7.1f} us/point with the check "
              f"({int(e.converged.sum())}/10000 resolved, {int(e.refined.sum())} refined: "
              f"{int(e.refined.sum() - e.refined_mpmath.sum())} in double-double, "
              f"{int(e.refined_mpmath.sum())} in mpmath), "
              f"{plain / 1e4 * 1e6:6.1f} us/point without | previous engine {old / 1e4 * 1e6:7.1f} us/point "
              f"({old / checked:5.1f}x slower) | fsolve loop on the reduced core {loop / 1e4 * 1e6:7.1f} us/point "
              f"({loop / checked:6.1f}x slower) | numpy backend of the same algorithm, no check "
              f"{vec / 1e4 * 1e6:6.1f} us/point ({vec / plain:4.1f}x the kernel) | single point {single * 1e3:5.2f} ms"
              f" | first grid call {first:5.2f} s")
        if floor:
            ops = floor
            print(f"       floor: about {ops:,.0f} arithmetic operations per point with the check "
                  f"(generated code x median iterations) -> {checked / 1e4 / ops * 1e9:.2f} ns per operation "
                  "(one core; scalar code retires 1-2 operations per cycle, SIMD across points could "
                  "give up to 4x on the double-precision part)")

    t0 = time.perf_counter()
    theory.errors(psi_n=2.5, psi_p=3, t=0.5, lam=1e-2, m=1, precision=50)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    ordinary = theory.errors(psi_n=2, psi_p=4, t=0.5, lam=1e-2, m=1, precision=50)
    t_ord = time.perf_counter() - t0
    t0 = time.perf_counter()
    peak = theory.errors(psi_n=1, psi_p=1 - 1e-6, t=0.5, lam=1e-10, m=1, precision=50)
    t_peak = time.perf_counter() - t0
    print(f"50 digits: first call {t_first * 1e3:6.0f} ms; ordinary point {t_ord * 1e3:6.0f} ms (E_test = {float(ordinary.test.item()):.10f}); "
          f"peak point {t_peak:5.2f} s (E_test = {peak.test.item()})")

    big = np.geomspace(0.1, 10.0, 316)
    tracemalloc.start()
    theory.errors(psi_n=big[None, :], psi_p=big[:, None], t=t, lam=lam, m=1, throw=False)
    _, peak_mem = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"peak memory of a {big.size ** 2}-point grid (m = 1, with the check): {peak_mem / 2**20:6.1f} MB")


if __name__ == "__main__":
    main()
