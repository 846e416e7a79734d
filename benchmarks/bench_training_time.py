"""Benchmark of the training-time curves (a script, not a test).

For m in {1, 4, inf} (relu, t = 0.5, psi_n = 1, psi_p = 2, lam = 0), measured in this one run,
with the traces solved by the reduced systems (the default engine, ``traces.ENGINE = "reduced"``)
and by the raw fixed-point systems (``"raw"``, the previous engine), with the ratio:

* preparation (derive or load from the disk cache, compile the trace solvers);
* one curve of 200 training times T in [1e-2, 1e4] (test and train), at ``tol = 1e-8`` and
  ``1e-6``, and the same call with a single T: the ratio shows that one grid of trace values
  serves every T (the cost is the contour solve, not the number of times);
* a 50 x 50 (psi_p, T) diagram of the train error (memorisation; one resolvent), and, with
  ``--full``, of both errors (the two-resolvent trace on every psi_p column).

Prints times, contour node counts, the largest quadrature error estimate and the largest
difference between the two engines' curves.
Run: ``python benchmarks/bench_training_time.py [--full] [--engines reduced,raw]``.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _run(tt, traces, th, m, full):
    t, lam, psi_n, psi_p = 0.5, 0.0, 1.0, 2.0
    T = np.logspace(-2, 4, 200)
    psi_ps = np.geomspace(0.25, 16.0, 50)
    Tg = np.logspace(-2, 4, 50)
    from derivations.model import m_kind

    kind = m_kind(m)
    out = {}
    t0 = time.perf_counter()
    if traces.ENGINE == "raw":
        for name in ("s1", "s2", "q", "resolvent"):
            traces._solver(kind, name)
    else:
        for group in ("one", "q"):
            traces._reduced_solver(kind, group)._fns("numpy")
    tt.errors_at_time(th, psi_n, psi_p, t, lam, m, 1.0, nodes=8)  # first call: probes, code
    out["prep"] = time.perf_counter() - t0
    for tol in (1e-8, 1e-6):
        t0 = time.perf_counter()
        e = tt.errors_at_time(th, psi_n, psi_p, t, lam, m, T, tol=tol)
        out[tol] = (time.perf_counter() - t0, int(e.nodes.max()), bool(e.converged.all()),
                    float(np.nanmax(np.maximum(e.test_error, e.train_error))), e)
    t0 = time.perf_counter()
    tt.errors_at_time(th, psi_n, psi_p, t, lam, m, 10.0, tol=1e-8)
    out["one"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    d = tt.errors_at_time(th, psi_n, psi_ps[:, None], t, lam, m, Tg[None, :], tol=1e-6, quantities=("train",))
    out["diag"] = (time.perf_counter() - t0, int(d.converged.sum()), d)
    if full:
        t0 = time.perf_counter()
        f = tt.errors_at_time(th, psi_n, psi_ps[:, None], t, lam, m, Tg[None, :], tol=1e-6)
        out["full"] = (time.perf_counter() - t0, int(f.converged.sum()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--full", action="store_true", help="also the 50 x 50 diagram of both errors")
    ap.add_argument("--engines", default="reduced,raw", help="comma-separated: reduced, raw")
    args = ap.parse_args()
    import pencils
    from derivations import training_time as tt
    from derivations.training_time import traces

    th = pencils.build("relu")
    engines = args.engines.split(",")
    for m in (1, 4, math.inf):
        label = "inf" if math.isinf(m) else str(m)
        res = {}
        for engine in engines:
            traces.ENGINE = engine
            r = res[engine] = _run(tt, traces, th, m, args.full)
            line = (f"m={label:>3} {engine:>7}: prepare {r['prep']:5.2f} s | 200-T curve "
                    + " | ".join(f"tol {k:g}: {r[k][0]:5.2f} s ({r[k][1]} nodes, converged {r[k][2]}, "
                                 f"max est. {r[k][3]:.1e})" for k in (1e-8, 1e-6))
                    + f" | one T: {r['one']:5.2f} s | 50x50 train diagram: {r['diag'][0]:5.2f} s "
                      f"({r['diag'][1]}/2500 resolved)")
            if args.full:
                line += f" | 50x50 both errors: {r['full'][0]:6.1f} s ({r['full'][1]}/2500)"
            print(line, flush=True)
        if len(engines) == 2:
            a, b = res[engines[1]], res[engines[0]]
            ea, eb = a[1e-8][4], b[1e-8][4]
            diff = max(float(np.nanmax(np.abs(ea.test - eb.test))), float(np.nanmax(np.abs(ea.train - eb.train))))
            ddiff = float(np.nanmax(np.abs(a["diag"][2].train - b["diag"][2].train)))

            def ratio(k):
                return (a[k][0] if isinstance(a[k], tuple) else a[k]) / (b[k][0] if isinstance(b[k], tuple) else b[k])

            line = (f"m={label:>3}   {engines[1]}/{engines[0]}: 200-T curve tol 1e-8 {ratio(1e-8):5.1f}x, "
                    f"tol 1e-6 {ratio(1e-6):5.1f}x | one T {ratio('one'):5.1f}x | 50x50 train diagram "
                    f"{ratio('diag'):5.1f}x | largest difference of the curves {diff:.1e} (diagram {ddiff:.1e})")
            if args.full:
                line += f" | 50x50 both errors {ratio('full'):5.1f}x"
            print(line, flush=True)


if __name__ == "__main__":
    main()
