"""The per-point ``scipy.optimize.fsolve`` loop the benchmarks compare the vectorised solver with.

It solves the same generated equations ``tau = ell((L0 - sum tau_q P_q)^{-1})`` of a compiled
:class:`numerics.Solver`, one grid point at a time, from the same cold start ``ell(L0^{-1})``.
"""
from __future__ import annotations

import time

import numpy as np
from scipy.optimize import fsolve


def fsolve_loop(solver, params: dict, reference, points: int) -> tuple[float, int, int]:
    """Time the loop on ``points`` evenly spread grid points (extrapolated to the whole grid).

    Returns ``(seconds for the whole grid, points agreeing with reference.value to 1e-8, points)``.
    """
    flat, _, _ = solver._params(params, False)
    size = flat[0].size
    K = min(points, size)
    pts = np.linspace(0, size - 1, K).astype(int)
    ref = np.asarray(reference.value).reshape(-1)
    agree = 0
    t0 = time.perf_counter()
    for k in pts:
        b = solver._batch([fl[k:k + 1] for fl in flat], 1, float)
        tau0 = solver._ell(b, np.linalg.inv(b.L0))[0]

        def F(t, b=b):
            G = np.linalg.inv(solver._M(b, t[None, :]))
            return t - solver._ell(b, G)[0]

        t_sol = fsolve(F, tau0, xtol=1e-13)
        G = np.linalg.inv(solver._M(b, t_sol[None, :]))
        val = b.c0[0] + np.sum(b.Rv[0] * G[0, solver._Ri, solver._Rj])
        agree += bool(abs(val - ref[k]) <= 1e-8 * abs(val))
    return (time.perf_counter() - t0) * size / K, agree, K
