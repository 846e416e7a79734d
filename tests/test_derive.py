"""pencils.derive: from traces to verified curves, for models that are not DSM.

The gallery scripts (examples/derive_*.py, run by tests/test_examples.py) compare four
models with closed forms and Monte Carlo; here: the contract of the model object (argument
checks, the ladder's flags, complex parameters, rational outputs, zero parameters,
simulation), each with an independent reference.
"""
from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy

import pencils
from derivations import closed_forms as cf
from derivations.classic import random_features_trace, ridge_trace
from numerics import ConvergenceError

gamma, lam = sympy.symbols("gamma lam", positive=True)
z = sympy.Symbol("z")


def _mp_model(sign=-1):
    X = pencils.gaussian("X", pencils.Space("n", 1 / gamma), pencils.D)
    return X, pencils.derive(pencils.trace(pencils.inverse(gamma * X.T @ X + sign * z)), continuation=None)


def test_complex_parameters_take_the_complex_path():
    _, model = _mp_model()
    zz = np.array([1 + 0.5j, -2 + 0j, 3 - 1e-3j, 0.7j])
    sol = model.solve(gamma=2.0, z=zz)
    assert np.iscomplexobj(sol.value) and sol.converged.all()
    np.testing.assert_allclose(sol.value, cf.mp_stieltjes_closed(2.0, zz), rtol=1e-11, atol=1e-13)
    # the mpmath rung on complex parameters: 40 digits against the closed form
    hp = model.solve(gamma=2.0, z=1 + 0.5j, precision=40)
    with mpmath.workdps(40):
        ref = cf.mp_stieltjes_closed(mpmath.mpf(2), mpmath.mpc(1, 0.5), mp=True)
        assert abs(hp.value[()] - ref) < mpmath.mpf(10) ** -30


def test_parameters_are_checked_by_name():
    _, model = _mp_model()
    assert model.params == ("gamma", "z")
    with pytest.raises(TypeError, match="missing"):
        model.solve(gamma=1.0)
    with pytest.raises(TypeError, match="unknown.*bogus"):
        model.solve(gamma=1.0, z=1j, bogus=2)
    with pytest.raises(ValueError, match="gamma is declared positive"):
        model.solve(gamma=-1.0, z=1j)
    with pytest.raises(ValueError, match="gamma.*real"):
        model.solve(gamma=1 + 1j, z=1j)
    with pytest.raises(ValueError, match="z must be finite"):
        model.solve(gamma=1.0, z=np.nan)
    empty = model.solve(gamma=[], z=1j)  # numpy semantics: an empty grid gives empty outputs
    assert empty.value.shape == (0,) and empty.converged.shape == (0,)
    with pytest.raises(ValueError, match="identifiers"):
        pencils.derive({"not a name": pencils.trace(pencils.identity(pencils.D))})
    with pytest.raises(ValueError, match="not a trace"):
        pencils.derive({"x": "garbage"})


def test_the_ridge_risk_past_the_threshold_is_right_not_silently_off():
    """The issue's reproducer: gamma = 3, lam = 1e-5, where a read-out is a difference of O(1)
    terms equal to 2.5e-11; it was 4.8e-7 off with converged=True.  The read-outs' long-double
    check flags it and the ladder refines it."""
    model = pencils.derive(ridge_trace())
    for g, lv in [(3.0, 1e-5), (1.0, 1e-9), (1.0, 1e-7), (0.5, 1e-9)]:
        sol = model.solve(gamma=g, lam=lv, r2=1.0, sigma2=0.5)
        with mpmath.workdps(50):
            ref = cf.ridge_risk_closed(mpmath.mpf(g), mpmath.mpf(lv), 1, mpmath.mpf("0.5"), mp=True)
        assert abs(float(sol.value) - float(ref)) <= 1e-8 * abs(float(ref)), (g, lv)
        assert float(sol.rounding_error) <= 1e-8 * abs(float(ref)) + 1e-12


@pytest.mark.parametrize("psi_n", [0.8, 1.5])
def test_random_features_at_the_peak_right_or_flagged(psi_n):
    """lam down to 1e-9 at p = n: every value within its reported accuracy of the same model
    at 50 verified mpmath digits, or flagged (Mei–Montanari's closed form agrees at larger lam:
    tests/test_classic_derivations.py; its own fixed point does not converge this close)."""
    model = pencils.derive(random_features_trace())
    lams = np.geomspace(1e-9, 1e-2, 8)
    p = dict(psi_p=psi_n, psi_n=psi_n, mu1=0.8, mustar=0.6, r2=1.0, sigma2=0.3)
    sol = model.solve(lam=lams, throw=False, **p)
    ref = model.solve(lam=lams, precision=50, **p).value.astype(float)
    ok = sol.converged
    assert ok.sum() >= 6
    err = np.abs(sol.value[ok] - ref[ok])
    assert np.all(err <= 1e-8 * np.abs(ref[ok]) + np.maximum(sol.rounding_error[ok], 1e-12)), err


def test_rational_outputs_of_several_traces():
    X, _ = _mp_model()
    R = pencils.inverse(gamma * X.T @ X + lam)
    model = pencils.derive({"ratio": pencils.trace(R) ** 2 / pencils.trace(R @ R), "inv": 1 / pencils.trace(R)})
    g, lv = 0.5, 0.3
    s = model.solve(gamma=g, lam=lv)
    m = complex(cf.mp_stieltjes_closed(g, -lv)).real
    # tr R^2 = dS/dz at z = -lam (finite difference of the closed form, step 1e-5)
    h = 1e-5
    dm = (complex(cf.mp_stieltjes_closed(g, -lv + h)).real - complex(cf.mp_stieltjes_closed(g, -lv - h)).real) / (2 * h)
    assert float(s.inv) == pytest.approx(1 / m, rel=1e-12)
    assert float(s.ratio) == pytest.approx(m**2 / dm, rel=1e-8)


def test_zero_parameters_are_legal_and_continuous():
    """No division by a parameter: mu1 = 0 (a pure-noise layer) is the limit of small mu1."""
    model = pencils.derive(random_features_trace())
    base = dict(psi_p=1.5, psi_n=0.8, lam=0.1, mustar=0.6, r2=1.0, sigma2=0.3)
    at0 = float(model.solve(mu1=0.0, **base).value)
    small = float(model.solve(mu1=1e-7, **base).value)
    assert np.isfinite(at0) and abs(at0 - small) < 1e-10
    ref = float(cf.mei_montanari_risk(1.5, 0.8, 0.1, 1e-12, 0.6, 1.0, 0.3))
    assert at0 == pytest.approx(ref, rel=1e-9)


def test_flags_instead_of_wrong_values():
    """With the refinement off, points double precision cannot resolve are flagged (NaN,
    converged False, a cause), never returned as numbers."""
    model = pencils.derive(ridge_trace())
    sol = model.solve(gamma=3.0, lam=[1e-5, 1.0], r2=1.0, sigma2=0.5, refine=False, throw=False)
    assert not sol.converged[0] and np.isnan(sol.value[0]) and sol.cause[0] == "rounding"
    assert sol.converged[1]
    with pytest.raises(ConvergenceError, match="unresolved"):
        model.solve(gamma=3.0, lam=1e-5, r2=1.0, sigma2=0.5, refine=False)


def test_simulate_converges_to_the_theory_as_d_grows():
    X, _ = _mp_model()
    model = pencils.derive(pencils.trace(pencils.inverse(gamma * X.T @ X + lam)))
    mc = model.simulate(d=(50, 100, 200), seeds=4, gamma=0.5, lam=0.2)
    th = float(model.solve(gamma=0.5, lam=0.2).value)
    gaps = np.abs(mc.mean["value"] - th)
    assert gaps[-1] < gaps[0]
    assert abs(mc.limit["value"] - th) < 4 * mc.limit_se["value"] + 1e-3
    with pytest.raises(ValueError, match="one point"):
        model.simulate(gamma=[0.5, 1.0], lam=0.2)
    with pytest.raises(ValueError, match="seeds"):
        model.simulate(seeds=1, gamma=0.5, lam=0.2)
    # reproducible
    again = model.simulate(d=(50, 100, 200), seeds=4, gamma=0.5, lam=0.2)
    np.testing.assert_array_equal(again.mean["value"], mc.mean["value"])


def test_spectral_models_need_a_spectrum():
    S = pencils.expr.spectral(pencils.expr.S_NU)
    X = pencils.gaussian("X", pencils.Space("n", 1 / gamma), pencils.D)
    model = pencils.derive(pencils.trace(pencils.inverse(gamma * S @ X.T @ X @ S + lam)))
    with pytest.raises(ValueError, match="spectrum"):
        model.solve(gamma=0.5, lam=0.1)
    iso = float(model.solve(gamma=0.5, lam=0.1, spectrum=[1.0]).value)
    assert iso == pytest.approx(float(cf.mp_stieltjes_closed(0.5, -0.1).real), rel=1e-11)
    two = model.solve(gamma=0.5, lam=0.1, spectrum=([0.5, 2.0], [0.5, 0.5]))
    mc = model.simulate(d=(100, 200, 400), seeds=4, gamma=0.5, lam=0.1, spectrum=([0.5, 2.0], [0.5, 0.5]))
    assert abs(float(two.value) - mc.limit["value"]) < 4 * mc.limit_se["value"] + 1e-3


def test_second_run_does_not_rederive(monkeypatch):
    """The derivation is disk-cached: a new model of the same expression reduces nothing."""
    import pencils.reduce as red

    pencils.derive(ridge_trace()).solve(gamma=0.5, lam=1.0, r2=1.0, sigma2=0.0)

    def boom(*a, **k):
        raise AssertionError("re-derived")

    monkeypatch.setattr(red, "_reduce_uncached", boom)
    monkeypatch.setattr(red, "reduce_systems", boom)
    from derivations import derived

    fresh = derived.DerivedModel(ridge_trace())
    assert float(fresh.solve(gamma=0.5, lam=1.0, r2=1.0, sigma2=0.0).value) == pytest.approx(
        float(cf.ridge_risk_closed(0.5, 1.0, 1.0, 0.0)), rel=1e-12)
