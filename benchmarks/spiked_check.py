"""The measurements of ``docs/spiked.md`` (issue 17), as a script (not a test; one core).

    python3 benchmarks/spiked_check.py table        # true / plain / conditional at d = 200, 400, 800 (S1-S3)
    python3 benchmarks/spiked_check.py s1           # S1 at d = 200..1600, 8 seeds, with d -> inf fits
    python3 benchmarks/spiked_check.py quadrature   # the Q-atom conditional theory at S1, Q = 1..3 [4]
    python3 benchmarks/spiked_check.py mu0          # the mean part mu0(s) removed, d = 100, 200, 400

Each prints one line per point; ``table`` takes about 6 minutes, ``s1`` about 10, ``quadrature``
about 2 (add ``4`` for Q = 4: about 10 more).
"""
from __future__ import annotations

import sys

import numpy as np
from scipy.interpolate import CubicSpline

import pencils
import validation.simulation.spiked as sp
from derivations.spiked import conditional_errors
from validation.simulation.extrapolate import extrapolate

SETTINGS = {
    "S1 relu k=1": dict(activation="relu", kappa=[0.2], bulk=0.8, psi_n=1, psi_p=2, t=0.1, lam=1e-2, m=1),
    "S2 tanh k=2": dict(activation="tanh", kappa=[0.3, 0.1], bulk=0.6, psi_n=1, psi_p=2, t=0.3, lam=1e-2, m=4),
    "S3 relu k=1 inf": dict(activation="relu", kappa=[0.34], bulk=0.66, psi_n=1, psi_p=2, t=0.1, lam=1e-2, m="inf"),
}
_TABLE = sp.ConditionalCoefficients.table


def _without_mu0(self, s_max):
    """The conditional coefficients with ``mu0(s) = 0`` (the mean part removed)."""
    fn = _TABLE(self, s_max)
    fn["mu0"] = CubicSpline(fn["mu0"].x, np.zeros_like(fn["mu0"].x))
    return fn


def _rel(a, b):
    x = a / b - 1
    return 100 * x.mean(), 100 * x.std(ddof=1) / np.sqrt(x.size)


def table():
    for name, kw in SETTINGS.items():
        kw = dict(kw)
        act = kw.pop("activation")
        for d in (200, 400, 800):
            r = {f: sp.simulate_spiked(act, d=d, seeds=4, features=f, progress=False, **kw)
                 for f in ("true", "plain", "conditional")}
            p, c = (_rel(r[f].test_values, r["true"].test_values) for f in ("plain", "conditional"))
            ct = _rel(r["conditional"].train_values, r["true"].train_values)
            print(f"{name} | d={d} | true {r['true'].test:.5f} | plain {p[0]:+.2f}±{p[1]:.2f}% | "
                  f"cond {c[0]:+.2f}±{c[1]:.2f}% | train cond {ct[0]:+.2f}±{ct[1]:.2f}%", flush=True)


def s1():
    kw = dict(SETTINGS["S1 relu k=1"])
    act = kw.pop("activation")
    res = {"true": {}, "cond": {}, "cond-mu0": {}}
    for d, seeds in ((200, 8), (400, 8), (800, 8), (1600, 4)):
        sp.ConditionalCoefficients.table = _TABLE
        res["true"][d] = sp.simulate_spiked(act, d=d, seeds=seeds, features="true", progress=False, **kw)
        res["cond"][d] = sp.simulate_spiked(act, d=d, seeds=seeds, features="conditional", **kw)
        sp.ConditionalCoefficients.table = _without_mu0
        res["cond-mu0"][d] = sp.simulate_spiked(act, d=d, seeds=seeds, features="conditional", **kw)
        sp.ConditionalCoefficients.table = _TABLE
        c = _rel(res["cond"][d].test_values, res["true"][d].test_values)
        print(f"d={d} | " + " | ".join(f"{k} {res[k][d].test:.5f}±{res[k][d].test_se:.5f} "
                                        f"train {res[k][d].train:.6f}" for k in res)
              + f" | cond-true {c[0]:+.2f}±{c[1]:.2f}%", flush=True)
    for k, runs in res.items():
        e = extrapolate(runs)
        print(f"{k} d->inf: test {e.test:.5f}±{e.test_se:.5f} train {e.train:.6f}±{e.train_se:.6f}", flush=True)
    theory = pencils.build(act, covariance=sp.spiked_eigenvalues(kw["kappa"], kw["bulk"], 100000))
    e = theory.errors(psi_n=kw["psi_n"], psi_p=kw["psi_p"], t=kw["t"], lam=kw["lam"], m=kw["m"])
    print(f"structured theory (today): test {float(e.test):.5f} train {float(e.train):.7f}")


def quadrature(Qs=(1, 2, 3)):
    kw = dict(SETTINGS["S1 relu k=1"])
    act = pencils.activation(kw.pop("activation"))
    for Q in Qs:
        r = conditional_errors(act, kw["kappa"][0], kw["bulk"], Q, psi_n=kw["psi_n"], psi_p=kw["psi_p"],
                               t=kw["t"], lam=kw["lam"])
        print(f"Q={Q}: test {r['test']:.5f} train {r['train']:.6f} converged {r['converged']}", flush=True)


def mu0():
    for d in (100, 200, 400):
        kw = dict(kappa=[0.2], bulk=0.8, d=d, psi_n=1, psi_p=2, t=0.1, lam=1e-2, m=1, seeds=3,
                  features="conditional")
        a = sp.simulate_spiked("relu", **kw)
        sp.ConditionalCoefficients.table = _without_mu0
        b = sp.simulate_spiked("relu", **kw)
        sp.ConditionalCoefficients.table = _TABLE
        t, r = _rel(b.test_values, a.test_values), _rel(b.train_values, a.train_values)
        print(f"d={d}: removing mu0 changes test by {t[0]:+.2f}±{t[1]:.2f}%, train by {r[0]:+.2f}±{r[1]:.2f}%",
              flush=True)


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "quadrature"
    if what == "quadrature":
        quadrature(tuple(int(q) for q in sys.argv[2:]) or (1, 2, 3))
    else:
        {"table": table, "s1": s1, "mu0": mu0}[what]()
