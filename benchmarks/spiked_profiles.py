"""The spiked theory with profiles (``derivations.conditional``, ``docs/spiked.md`` section 5)
against Monte Carlo of the spiked Gaussian family (not a test; one core).

    python3 benchmarks/spiked_profiles.py theory     # R = 1, 2 at every point, quadrature check
    python3 benchmarks/spiked_profiles.py mc         # true features at d = 200, 400, 800, d -> inf fit

The first run derives the rank-2 system (about 5 minutes) and compiles its kernel; both are
cached.  ``mc`` takes about 3 minutes per point.
"""
from __future__ import annotations

import sys
import time

import numpy as np

import pencils
import validation.simulation.spiked as sp
from derivations.overlaps import spiked_errors
from validation.simulation.extrapolate import extrapolate

#: m = 1 points: k = 1 and 2, relu / tanh / erf, both sides of p = n, t from 0.05 to 0.3.
POINTS = {
    "S1 relu k=1": dict(activation="relu", kappa=[0.2], bulk=0.8, psi_n=1, psi_p=2, t=0.1, lam=1e-2),
    "P2 tanh k=1 p<n": dict(activation="tanh", kappa=[0.34], bulk=0.66, psi_n=1, psi_p=0.5, t=0.3, lam=1e-2),
    "P3 erf k=1": dict(activation="erf", kappa=[0.15], bulk=0.85, psi_n=2, psi_p=3, t=0.05, lam=1e-3),
    "P4 relu k=2": dict(activation="relu", kappa=[0.2, 0.1], bulk=0.7, psi_n=1, psi_p=2, t=0.3, lam=1e-2),
}


def _bulk(kw):
    return np.array([kw["bulk"]]), np.array([1.0])


def theory(R=(1, 2), Q=16):
    out = {}
    for name, kw in POINTS.items():
        act = pencils.activation(kw["activation"])
        for r in R:
            t0 = time.time()
            q = Q if len(kw["kappa"]) == 1 else 8
            e = spiked_errors(act, kw["kappa"], _bulk(kw), psi_n=kw["psi_n"], psi_p=kw["psi_p"], t=kw["t"],
                              lam=kw["lam"], R=r, Q=q)
            out[(name, r)] = e
            tail = ", ".join(f"{k} {v:.3f}" for k, v in sorted(e["tail"].items()))
            print(f"{name} | R={r} Q={e['Q']} | test {float(e['test']):.6f} | train {float(e['train']):.7f} | "
                  f"quadrature {e['quadrature_error']:.1e} | tail {tail} | {time.time() - t0:.0f} s", flush=True)
        eig = sp.spiked_eigenvalues(kw["kappa"], kw["bulk"], 100000)
        s = pencils.build(kw["activation"], covariance=eig).errors(
            psi_n=kw["psi_n"], psi_p=kw["psi_p"], t=kw["t"], lam=kw["lam"], m=1)
        print(f"{name} | structured theory (today) | test {float(s.test):.6f} | train {float(s.train):.7f}", flush=True)
    return out


def mc(ds=(200, 400, 800), seeds=4):
    for name, kw in POINTS.items():
        if name.startswith("S1"):
            print("S1: Monte Carlo in docs/spiked.md (true features, d = 200..1600, 8 seeds): "
                  "test 1.07935 ± 0.00061, train 0.004480 ± 0.000014")
            continue
        kw = dict(kw, m=1)
        act = kw.pop("activation")
        runs = {}
        for d in ds:
            runs[d] = sp.simulate_spiked(act, d=d, seeds=seeds, features="true", progress=False, **kw)
            print(f"{name} | d={d} | test {runs[d].test:.5f}±{runs[d].test_se:.5f} | "
                  f"train {runs[d].train:.6f}±{runs[d].train_se:.6f}", flush=True)
        e = extrapolate(runs)
        print(f"{name} | d->inf | test {e.test:.5f}±{e.test_se:.5f} | train {e.train:.6f}±{e.train_se:.6f}",
              flush=True)


if __name__ == "__main__":
    {"theory": theory, "mc": mc}[sys.argv[1] if len(sys.argv) > 1 else "theory"]()
