"""Benchmark of the training-time curves (a script, not a test).

For m in {1, 4, inf} (relu, t = 0.5, psi_n = 1, psi_p = 2, lam = 0), measured in this one run:

* preparation (derive or load from the disk cache, compile the trace solvers);
* one curve of 200 training times T in [1e-2, 1e4] (test and train), at ``tol = 1e-8`` and
  ``1e-6``, and the same call with a single T: the ratio shows that one grid of trace values
  serves every T (the cost is the contour solve, not the number of times);
* a 50 x 50 (psi_p, T) diagram of the train error (memorisation; one resolvent), and, with
  ``--full``, of both errors (the two-resolvent trace on every psi_p column).

Prints times, contour node counts and the largest quadrature error estimate.
Run: ``python benchmarks/bench_training_time.py [--full]``.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--full", action="store_true", help="also the 50 x 50 diagram of both errors")
    args = ap.parse_args()
    import pencils
    from derivations import training_time as tt

    th = pencils.build("relu")
    t, lam, psi_n, psi_p = 0.5, 0.0, 1.0, 2.0
    T = np.logspace(-2, 4, 200)
    psi_ps = np.geomspace(0.25, 16.0, 50)
    Tg = np.logspace(-2, 4, 50)
    for m in (1, 4, math.inf):
        label = "inf" if math.isinf(m) else str(m)
        kind = tt.m_kind(m)
        t0 = time.perf_counter()
        for name in ("s1", "s2", "q", "resolvent"):
            tt._solver(kind, name)
        prep = time.perf_counter() - t0
        timings = {}
        for tol in (1e-8, 1e-6):
            t0 = time.perf_counter()
            e = tt.errors_at_time(th, psi_n, psi_p, t, lam, m, T, tol=tol)
            timings[tol] = (time.perf_counter() - t0, int(e.nodes.max()), bool(e.converged.all()),
                            float(np.nanmax(np.maximum(e.test_error, e.train_error))))
        t0 = time.perf_counter()
        tt.errors_at_time(th, psi_n, psi_p, t, lam, m, 10.0, tol=1e-8)
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        d = tt.errors_at_time(th, psi_n, psi_ps[:, None], t, lam, m, Tg[None, :], tol=1e-6,
                              quantities=("train",))
        diag = time.perf_counter() - t0
        line = (f"m={label:>3}: compile {prep:5.2f} s | 200-T curve "
                + " | ".join(f"tol {k:g}: {v[0]:5.2f} s ({v[1]} nodes, converged {v[2]}, max est. {v[3]:.1e})"
                             for k, v in timings.items())
                + f" | one T: {one:5.2f} s (200 T / 1 T = {timings[1e-8][0] / one:4.2f})"
                + f" | 50x50 train diagram: {diag:5.2f} s ({int(d.converged.sum())}/2500 resolved)")
        if args.full:
            t0 = time.perf_counter()
            f = tt.errors_at_time(th, psi_n, psi_ps[:, None], t, lam, m, Tg[None, :], tol=1e-6)
            line += f" | 50x50 both errors: {time.perf_counter() - t0:6.1f} s ({int(f.converged.sum())}/2500)"
        print(line, flush=True)


if __name__ == "__main__":
    main()
