"""Complex parameters in the reduced solver (numerics.reduced): real input stays real, complex
input is solved in complex arithmetic (the compiled kernel's complex library, or the numpy
path), and the physical (Stieltjes) branch is selected as by the raw solver."""
import numpy as np
import pytest
import sympy

from numerics import compile as compile_raw
from numerics.options import SolveOptions
from numerics.reduced import compile_reduced
from pencils.expr import D, Space, gaussian, inverse, trace
from pencils.freeprob import equations
from pencils.reduce import reduce_systems


@pytest.fixture(scope="module")
def mp():
    """Marchenko-Pastur: ``tr (g X^T X - z)^{-1}``, raw and reduced."""
    g, z = sympy.symbols("gamma z")
    X = gaussian("X", Space("n", 1 / g), D)
    S = equations(trace(inverse(g * X.T @ X - z)))
    return compile_raw(S), compile_reduced(reduce_systems({"r": S}))


def _stieltjes(gamma, z):
    """Closed form of the MP resolvent trace, ``m(z) = tr (W - z)^{-1}`` for ``W = g X^T X`` with
    ``X`` of aspect ``1/g`` (the branch with ``Im m > 0`` for ``Im z > 0``, ``m ~ -1/z`` at infinity)."""
    # W has ratio c = d/n = g and scale such that E tr W = 1: m solves c z m^2 + (z - 1 + c) m + 1 = 0
    c = gamma
    b = z - 1 + c
    disc = np.sqrt(b * b - 4 * c * z + 0j)
    r1, r2 = (-b + disc) / (2 * c * z), (-b - disc) / (2 * c * z)
    good = np.where(np.sign(z.imag) == 0, np.abs(r1) < np.abs(r2), np.sign(r1.imag) == np.sign(z.imag))
    return np.where(good, r1, r2)


def test_real_input_stays_real(mp):
    _, red = mp
    sol = red.solve(dict(gamma=0.5, z=[-1.0, -2.0]), backend="numpy")
    assert sol.values["r"].dtype == np.float64 and sol.core.dtype == np.float64


def test_complex_input_in_both_backends(mp):
    _, red = mp
    z = [1.0 + 1j, -2.0 + 0j, 0.3 - 1e-6j]
    k = red.solve(dict(gamma=0.5, z=z), backend="kernel", estimate_error=True)
    n = red.solve(dict(gamma=0.5, z=z), backend="numpy", estimate_error=True)
    assert k.values["r"].dtype == np.complex128 and k.core.dtype == np.complex128
    assert np.all(np.abs(k.values["r"] - n.values["r"]) <= k.error["r"] + n.error["r"])
    assert np.array_equal(k.iterations, n.iterations)
    sol = red.solve(dict(gamma=0.5, z=[1.0 + 1j, -2.0 + 0j]))
    assert sol.converged.all() and sol.values["r"].dtype == np.complex128
    # the warm start accepts complex cores
    again = red.solve(dict(gamma=0.5, z=[1.0 + 1j, -2.0 + 0j]), init=np.moveaxis(sol.core, -1, 0))
    np.testing.assert_allclose(again.values["r"], sol.values["r"], rtol=1e-13)


def test_complex_branch_matches_raw(mp):
    """Random complex points, a third within 1e-9..1e-3 rad of the real axis: the reduced value
    equals the raw one (to 1e-10) wherever both converge; the reduced path never returns a value
    where the raw one flags the point; and the values have the Stieltjes sign
    ``Im m(z) Im z >= 0``."""
    raw, red = mp
    rng = np.random.default_rng(3)
    n = 3000
    z = np.exp(rng.uniform(np.log(1e-3), np.log(1e2), n)) * np.exp(1j * rng.uniform(-np.pi, np.pi, n))
    k = n // 3
    z[:k] = np.abs(z[:k]) * np.exp(1j * rng.choice([-1, 1], k) * 10 ** rng.uniform(-9, -3, k))
    for gamma, backend in ((0.3, "kernel"), (2.0, "kernel"), (0.3, "numpy"), (2.0, "numpy")):
        a = red.solve(dict(gamma=gamma, z=z), throw=False, backend=backend)
        b = raw.solve(gamma=gamma, z=z, throw=False)
        both = a.converged & b.converged
        assert both.mean() > 0.9
        np.testing.assert_allclose(a.values["r"][both], b.value[both], rtol=1e-10)
        assert not np.any(a.converged & ~b.converged)
        v = a.values["r"][a.converged]
        assert np.all(v.imag * np.sign(z[a.converged].imag) >= -1e-12 * np.abs(v))
        # and the closed form (away from the axis, where its root choice by the sign is safe)
        off = a.converged & (np.abs(z.imag) > 1e-3 * np.abs(z))
        np.testing.assert_allclose(a.values["r"][off], _stieltjes(gamma, z[off]), rtol=1e-9)


def test_lam_continuation_with_complex_z(monkeypatch):
    """Continuation in the (real) ridge ``lam`` runs on a complex batch: with the damped fixed
    point switched off (``fp_maxiter=0``: Newton from the cold start fails or lands on a
    repelling root at ``lam = 1e-6``) the failed points are re-solved by walking ``lam`` down,
    and every value returned equals the raw solver's."""
    from numerics import stages

    g, lam, z = sympy.symbols("gamma lam z")
    X = gaussian("X", Space("n", 1 / g), D)
    S = equations(trace(inverse(g * X.T @ X + lam - z)))
    red, raw = compile_reduced(reduce_systems({"r": S}), options=SolveOptions(continuation="lam")), compile_raw(S)
    calls = []
    orig = stages.continuation

    def spy(*args, **kw):
        calls.append(len(args[-1]))
        return orig(*args, **kw)

    monkeypatch.setattr(stages, "continuation", spy)
    rng = np.random.default_rng(0)
    zz = rng.uniform(-1, 3, 400) + 1j * 10 ** rng.uniform(-6, 0, 400)
    a = red.solve(dict(gamma=2.0, lam=1e-6, z=zz), throw=False, fp_maxiter=0, backend="numpy")
    b = raw.solve(gamma=2.0, lam=1e-6, z=zz, throw=False)
    assert calls and calls[0] > 50
    assert a.converged.sum() > 200 and not np.any(a.converged & ~b.converged)
    np.testing.assert_allclose(a.values["r"][a.converged], b.value[a.converged], rtol=1e-10)
    # the kernel walks the same per-point continuation: same flags, same values within 1e-10
    k = red.solve(dict(gamma=2.0, lam=1e-6, z=zz), throw=False, fp_maxiter=0, backend="kernel")
    assert np.array_equal(k.converged, a.converged)
    np.testing.assert_allclose(k.values["r"][k.converged], a.values["r"][k.converged], rtol=1e-10)
