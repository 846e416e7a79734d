"""DSM learning curves from the engine (pencils.build): limits, consistency, simulation."""
import math

import mpmath
import numpy as np
import pytest
import scipy.integrate
from hypothesis import example, given, settings, strategies as st

import pencils
import validation
from numerics import ConvergenceError

THEORY = {}


def theory(name="relu"):
    if name not in THEORY:
        THEORY[name] = pencils.build(name)
    return THEORY[name]


def delta(t):
    return -math.expm1(-2 * t)


# ---------------------------------------------------------------- API and input checks

def test_errors_broadcast_over_every_argument():
    e = theory().errors(psi_n=[[1.0], [2.0]], psi_p=[0.5, 1.5, 3.0], t=0.5, lam=1e-2, m=[[1], ["inf"]])
    assert e.test.shape == e.train.shape == e.dsm_test_loss.shape == e.converged.shape == (2, 3)
    assert e.converged.all() and np.all(e.residual < 1e-10)
    np.testing.assert_allclose(e.dsm_test_loss, e.test + math.exp(-1.0), rtol=1e-14)
    single = theory().errors(psi_n=2.0, psi_p=1.5, t=0.5, lam=1e-2, m=math.inf)
    assert single.test.shape == () and float(single.test) == pytest.approx(e.test[1, 1], rel=1e-10)


@pytest.mark.parametrize("kwargs, words", [
    (dict(psi_n=-1.0), "psi_n"), (dict(psi_p=0.0), "psi_p"), (dict(t=-0.1), "t must"),
    (dict(lam=0.0), "lam must"), (dict(lam=float("nan")), "NaN"), (dict(m=0), "m must"),
    (dict(m=1.5), "integer"), (dict(precision=5), "precision"),
])
def test_bad_input(kwargs, words):
    params = dict(psi_n=1.0, psi_p=1.0, t=0.5, lam=1e-2, m=1) | kwargs
    with pytest.raises(ValueError, match=words):
        theory().errors(**params)


def test_equations_are_sympy_and_latex():
    eq = theory().equations(m=4, raw=True)
    assert eq.kind == "finite" and "m" in {s.name for s in eq.test.params}
    assert eq.test.n_unknowns > 0 and eq.train.size > 0
    tex = eq.latex()
    assert "\\tau" in tex or "tau" in tex
    assert set(eq.sympy) == {"test", "train"}
    # all finite m >= 2 share one system; m = 1 and m = inf have their own
    assert theory().equations(16, raw=True).test is eq.test
    assert theory().equations(1, raw=True).test is not eq.test
    # the default is the reduced system: a few core unknowns and explicit read-outs
    red = theory().equations(m=4)
    assert set(red.outputs) == {"test", "train"} and 0 < red.sizes["core"] <= 6
    assert red.sizes["core"] < red.sizes["raw_unknowns"]["test"] / 5


# ---------------------------------------------------------------- limits

@pytest.mark.parametrize("m", [1, 3, math.inf])
def test_huge_ridge_and_few_features_give_the_zero_score(m):
    t = 0.4
    big_ridge = theory().errors(psi_n=1.5, psi_p=2.0, t=t, lam=1e6, m=m)
    assert float(big_ridge.test) == pytest.approx(delta(t), abs=1e-5)
    assert float(big_ridge.train) == pytest.approx(1.0, abs=1e-5)
    few = theory().errors(psi_n=1.5, psi_p=1e-5, t=t, lam=1e-2, m=m)
    assert float(few.test) == pytest.approx(delta(t), rel=1e-3)


def test_finite_m_approaches_m_inf_like_one_over_m():
    kw = dict(psi_n=1.0, psi_p=2.0, t=0.5, lam=1e-2)
    inf = theory().errors(m=math.inf, **kw)
    ms = np.array([8, 32, 128, 512])
    finite = theory().errors(m=ms, **kw)
    for q in ("test", "train"):
        gap = getattr(finite, q) - getattr(inf, q)
        scaled = ms * gap
        assert np.all(np.abs(gap[1:]) < np.abs(gap[:-1]))
        assert np.ptp(scaled[1:]) < 0.1 * np.abs(scaled[-1])  # m * gap settles: an O(1/m) approach


@settings(max_examples=15)
@given(psi_n=st.floats(0.2, 4.0), ratio=st.floats(0.1, 5.0), t=st.floats(0.05, 2.0),
       log_lam=st.floats(-3, 1), m=st.sampled_from([1, 2, 5, math.inf]))
@example(psi_n=1.0, ratio=1.0, t=0.1, log_lam=-3, m=1)  # at the interpolation point
def test_errors_are_physical(psi_n, ratio, t, log_lam, m):
    e = theory().errors(psi_n=psi_n, psi_p=ratio * psi_n, t=t, lam=10**log_lam, m=m)
    test, train = float(e.test), float(e.train)
    assert bool(e.converged) and float(e.residual) < 1e-10
    assert test > 0
    assert 0 < train < 1  # B = 0 has train error 1 and the ridge minimiser does better
    assert float(e.dsm_test_loss) == pytest.approx(test + math.exp(-2 * t), rel=1e-14)


# ---------------------------------------------------------------- linear activation = linear ridge

def mp_expect(f, gamma):
    """E f(s) under the Marchenko-Pastur law of X^T X / n, gamma = d/n (atom at 0 if gamma > 1)."""
    lo, hi = (1 - math.sqrt(gamma)) ** 2, (1 + math.sqrt(gamma)) ** 2
    dens = lambda s: math.sqrt(max((hi - s) * (s - lo), 0.0)) / (2 * math.pi * gamma * s)  # noqa: E731
    value = scipy.integrate.quad(lambda s: f(s) * dens(s), lo, hi, epsabs=1e-13, epsrel=1e-12, limit=200)[0]
    if gamma > 1:
        value += (1 - 1 / gamma) * f(0.0)
    return value


@pytest.mark.parametrize("psi_n", [0.5, 2.0])
@pytest.mark.parametrize("t", [0.2, 1.0])
def test_linear_activation_is_the_optimal_linear_score(psi_n, t):
    """rho(x) = x, m = inf, p > d, lam -> 0: the score is the best linear map
    L = -sqrt(Delta) (a^2 Sigma_hat + Delta)^{-1}, whose errors are Marchenko-Pastur integrals:
    E_test = Delta E[(1 - 1/(a^2 s + Delta))^2], E_train = 1 - Delta E[1/(a^2 s + Delta)]."""
    a2, dl = math.exp(-2 * t), delta(t)
    gamma = 1 / psi_n
    want_test = dl * mp_expect(lambda s: (1 - 1 / (a2 * s + dl)) ** 2, gamma)
    want_train = 1 - dl * mp_expect(lambda s: 1 / (a2 * s + dl), gamma)
    got = theory("linear").ridgeless(psi_n=psi_n, psi_p=3.0, t=t, m=math.inf)
    assert got.test == pytest.approx(want_test, rel=1e-6)
    assert got.train == pytest.approx(want_train, rel=1e-6)


# ---------------------------------------------------------------- simulation

@pytest.mark.parametrize("m, psi_p", [(1, 0.5), (2, 1.5), (math.inf, 1.0)])
def test_theory_matches_surrogate_simulation(m, psi_p):
    kw = dict(psi_n=1.0, psi_p=psi_p, t=0.5, lam=1e-2, m=m)
    th = theory().errors(**kw)
    runs = {d: validation.simulate("relu", d=d, seeds=6, surrogate=True, **kw) for d in (60, 240)}
    ext = validation.extrapolate(runs)
    for q in ("test", "train"):
        want = float(getattr(th, q))
        assert abs(getattr(ext, q) - want) < 4 * getattr(ext, q + "_se") + 2e-3 * want
        # the finite-d deviation shrinks (up to noise) as d grows
        devs = [abs(getattr(runs[d], q) - want) for d in (60, 240)]
        assert devs[1] < devs[0] + 3 * getattr(runs[240], q + "_se")


def test_constant_shift_of_the_activation_changes_nothing():
    """mu0 drops out of the theory; check it against simulation of tanh and tanh + 1/2."""
    import sympy

    x = sympy.Symbol("x")
    shifted = pencils.activation(sympy.tanh(x) + sympy.Rational(1, 2))
    assert shifted.mu0 == pytest.approx(0.5, abs=1e-12)
    kw = dict(psi_n=1.0, psi_p=2.0, t=0.5, lam=1e-2, m=1)
    th = theory("tanh").errors(**kw)
    th_shift = pencils.build(shifted).errors(**kw)
    assert float(th_shift.test) == pytest.approx(float(th.test), rel=1e-12)
    plain = validation.simulate("tanh", d=150, seeds=6, **kw)
    moved = validation.simulate(shifted, d=150, seeds=6, **kw)
    for q in ("test", "train"):
        a, b = getattr(plain, q), getattr(moved, q)
        se = math.hypot(getattr(plain, q + "_se"), getattr(moved, q + "_se"))
        assert abs(a - b) < 4 * se + 0.02 * float(getattr(th, q))


# ---------------------------------------------------------------- high precision near the peak

def test_mpmath_agrees_with_double_away_from_the_peak():
    kw = dict(psi_n=1.0, psi_p=[0.5, 2.0], t=0.5, lam=1e-2, m=1)
    d = theory().errors(**kw)
    hp = theory().errors(precision=30, **kw)
    for q in ("test", "train"):
        for x, y in zip(getattr(d, q), getattr(hp, q)):
            assert isinstance(y, mpmath.mpf)
            assert float(y) == pytest.approx(x, rel=1e-9)


def test_peak_locations():
    th = theory()
    peaks1 = th.peaks(psi_n=1.0, t=0.5, m=1, lam=1e-4, points=80)
    assert len(peaks1) == 1 and peaks1[0].psi_p == pytest.approx(1.0, rel=1e-2)
    peaks4 = th.peaks(psi_n=1.0, t=0.5, m=4, lam=1e-4, points=80)
    assert any(p.psi_p == pytest.approx(4.0, rel=2e-2) for p in peaks4)  # p = n m
    assert th.peaks(psi_n=1.0, t=0.5, m="inf", lam=1e-4, points=80) == []


def test_near_the_peak_double_precision_is_flagged_and_mpmath_is_right():
    """psi_p / psi_n = 1 - 1e-6, lam = 1e-8, m = 1: the equations are so ill-conditioned
    that double precision cannot resolve the point: it must be flagged (unconverged, or
    converged with a rounding estimate above the tolerance), never returned wrong."""
    kw = dict(psi_n=1.0, psi_p=1 - 1e-6, t=0.5, lam=1e-8, m=1)
    checked = theory().errors(throw=False, refine=False, **kw)
    assert not bool(checked.converged) and np.isnan(checked.test) and np.isnan(checked.dsm_test_loss)
    assert np.isnan(checked.train)  # an unresolved point is NaN in every field
    with pytest.raises(ConvergenceError, match="unresolved"):
        theory().errors(refine=False, **kw)
    auto = theory().errors(**kw)  # by default such a point is re-solved in mpmath
    assert bool(auto.converged) and bool(auto.refined)
    hp30 = theory().errors(precision=30, **kw)
    hp40 = theory().errors(precision=40, **kw)
    for q in ("test", "train"):
        a, b = getattr(hp30, q).item(), getattr(hp40, q).item()
        assert abs(a - b) < mpmath.mpf(10) ** -18 * abs(b)  # mpmath is converged in precision
    for q in ("test", "train"):  # the automatic refinement is right to double precision
        exact = float(getattr(hp40, q).item())
        assert abs(float(getattr(auto, q)) - exact) <= 4 * np.finfo(float).eps * abs(exact)
