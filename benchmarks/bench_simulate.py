"""Benchmark: one Monte Carlo instance against a straightforward implementation.

Setting (issue 2): relu, d = 400, psi_n = 2, psi_p = 4, m = 1, t = 0.5, lam = 1e-2.
The straightforward version materialises the feature matrix, solves the p x p primal
normal equations with ``numpy.linalg.solve`` and estimates the test error from fresh
test samples; the project's :func:`validation.fit_score` picks the dual form here
(N = n m = 800 < p = 1600) and computes the test error exactly.  Both use the same
instance (same W, X, Z), so their test errors agree up to the sampling error of the
straightforward estimate.  Run:  ``python benchmarks/bench_simulate.py``.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pencils  # noqa: E402
from validation import fit_score, make_problem  # noqa: E402
from validation.simulation.reference import straightforward_fit  # noqa: E402

TEST_SAMPLES = 20_000  # fresh test points of the straightforward estimate


def main() -> None:
    act = pencils.activation("relu")
    pr = make_problem(d=400, psi_n=2, psi_p=4, t=0.5, lam=1e-2, m=1)
    fit_score(act, make_problem(d=20, psi_n=2, psi_p=4, t=0.5, lam=1e-2, m=1), 0)  # warm-up
    t0 = time.perf_counter()
    ours = fit_score(act, pr, 0)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    train, test, test_se = straightforward_fit(act, pr, 0, TEST_SAMPLES, test_seed=12345)
    t_ref = time.perf_counter() - t0
    print(f"setting: relu d={pr.d} n={pr.n} p={pr.p} m=1 t={pr.t} lam={pr.lam}")
    print(f"validation.fit_score ({ours.form}, exact test error): {t_ours:7.2f} s  "
          f"test={ours.test_error:.6f} train={ours.train_error:.6f}")
    print(f"straightforward (primal solve, {TEST_SAMPLES} test samples): {t_ref:7.2f} s  "
          f"test={test:.6f}±{test_se:.6f} train={train:.6f}")
    print(f"speed-up (straightforward / ours, one run): {t_ref / t_ours:.2f}x")
    print(f"test-error difference: {(ours.test_error - test) / test_se:+.2f} sampling s.e.; "
          f"train-error relative difference: {abs(ours.train_error - train) / train:.1e}")


if __name__ == "__main__":
    main()
