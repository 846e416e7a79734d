"""Training-time curves (derivations.training_time): the consistency limits T -> inf (ridge),
T -> 0 (B = 0) and the first-order small-T expansion, and theory against finite-d simulation
of the Gaussian-equivalent surrogate (validation.simulate(train_time=T), exact B(T) by
eigendecomposition), extrapolated in 1/d."""
import math

import numpy as np
import pytest

import pencils
from derivations import training_time as tt
from validation.extrapolate import extrapolate
from validation.montecarlo import simulate


@pytest.fixture(scope="module")
def relu():
    return pencils.build("relu")


# -- T -> inf: the ridge curves ---------------------------------------------------------------

@pytest.mark.parametrize("psi_n,psi_p,m,quantities", [
    (2.0, 0.5, 1, ("test", "train")),        # p < n
    (1.0, 4.0, "inf", ("test", "train")),
    (1.0, 8.0, 2, ("train",)),                # finite m, p > n m (atom of K at 0)
])
def test_infinite_time_is_the_ridge_solution(relu, psi_n, psi_p, m, quantities):
    lam = 1e-2
    # T = 1e5: e^{-T lam} = e^{-1000} underflows, so B(T) is the ridge solution
    e = tt.errors_at_time(relu, psi_n, psi_p, 0.5, lam, m, [1e5, math.inf], tol=1e-9,
                          quantities=quantities)
    r = relu.errors(psi_n, psi_p, 0.5, lam, m)
    assert e.converged.all()
    assert np.all(e.train_error <= 1e-8) and np.all(e.mass_error <= 1e-6)
    np.testing.assert_allclose(e.train, float(r.train), rtol=0, atol=1e-8)
    if "test" in quantities:
        np.testing.assert_allclose(e.test, float(r.test), rtol=0, atol=1e-8)
        np.testing.assert_allclose(e.dsm_test_loss, float(r.dsm_test_loss), rtol=0, atol=1e-8)
    else:
        assert np.isnan(e.test).all()


# -- T -> 0 and the first-order expansion --------------------------------------------------------

def test_zero_time_and_gradient_at_zero(relu):
    """B(0) = 0 gives E_test = Delta, E_train = 1; B^T = -T C + O(T^2) gives the slopes
    -2 sqrt(Delta) tr(C^T V) and -2 tr(C^T C), checked against a second-order one-sided
    difference of the contour values (error O(h^2) + quadrature error / h)."""
    t, h = 0.5, 1e-3
    Delta = -math.expm1(-2 * t)
    c = relu.coefficients
    for m in (1, "inf"):
        e = tt.errors_at_time(relu, 1.0, 2.0, t, 0.0, m, [0.0, h, 2 * h], tol=1e-10)
        assert e.converged.all()
        assert e.test[0] == Delta and e.train[0] == 1.0
        slope_test = (4 * e.test[1] - e.test[2] - 3 * e.test[0]) / (2 * h)
        slope_train = (4 * e.train[1] - e.train[2] - 3 * e.train[0]) / (2 * h)
        grad_test, grad_train = tt.flow_gradient_at_zero(relu, 1.0, 2.0, t, m)
        # E[phi z^T] = mu1 sqrt(Delta) W for every m, so dE_test/dT(0) = -2 Delta mu1^2 psi_p
        assert grad_test == pytest.approx(-2 * Delta * c.mu1**2 * 2.0, rel=1e-10)
        assert slope_test == pytest.approx(grad_test, rel=1e-5)
        assert slope_train == pytest.approx(grad_train, rel=1e-5)
        if m == "inf":  # C = mu1 sqrt(Delta) W: tr(C^T C) = mu1^2 Delta psi_p
            assert grad_train == pytest.approx(-2 * c.mu1**2 * Delta * 2.0, rel=1e-10)


# -- theory against simulation ------------------------------------------------------------------

@pytest.mark.parametrize("psi_n,psi_p,m,lam,T", [
    (1.0, 2.0, 1, 0.0, 20.0),          # p > n, interpolating flow, memorising
    (1.0, 0.5, "inf", 1e-3, 300.0),    # p < n, m = inf
])
def test_matches_surrogate_simulation(relu, psi_n, psi_p, m, lam, T):
    """Simulations of the surrogate at d = 60, 120, 240 (seeds 16, 8, 4), fitted by
    ``c0 + c1/d`` (finite-size corrections of these normalised traces are O(1/d)); the fit's
    ``c0`` must agree with the theory within 3 of its standard errors (the fit's covariance
    is inflated by its reduced chi^2 when that exceeds 1, so a poor fit widens the band)."""
    e = tt.errors_at_time(relu, psi_n, psi_p, 0.5, lam, m, T)
    assert e.converged
    sims = {d: simulate("relu", d=d, psi_n=psi_n, psi_p=psi_p, t=0.5, lam=lam, m=m, seeds=s,
                        surrogate=True, train_time=T, progress=False)
            for d, s in ((60, 16), (120, 8), (240, 4))}
    ex = extrapolate(sims)
    assert abs(ex.test - float(e.test)) <= 3 * ex.test_se
    assert abs(ex.train - float(e.train)) <= 3 * ex.train_se


# -- timescales and inputs ------------------------------------------------------------------------

def test_memorisation_time(relu):
    """At p > n the train error reaches fraction * a_t^2 at the returned time (to the accuracy
    of the log-linear interpolation on the grid) and later for larger n; at p < n it never does."""
    times = np.logspace(-2, 4, 61)
    mt = tt.memorisation_time(relu, [1.0, 2.0, 8.0], 4.0, 0.5, 0.0, 1, times=times, tol=1e-7)
    assert mt.converged.all()
    assert mt.interior[:2].all() and mt.time[0] < mt.time[1]
    assert math.isinf(mt.time[2]) and not mt.interior[2]
    e = tt.errors_at_time(relu, 1.0, 4.0, 0.5, 0.0, 1, mt.time[0], quantities=("train",))
    assert float(e.train) == pytest.approx(0.5 * math.exp(-1.0), rel=2e-2)


def test_steps_round_trip():
    T = tt.steps_to_time([10, 1000], 0.1, 0.3, 50, 80)
    np.testing.assert_allclose(tt.time_to_steps(T, 0.1, 0.3, 50, 80), [10, 1000])


@pytest.mark.parametrize("kw,match", [
    (dict(train_time=-1.0), "train_time"),
    (dict(lam=-1e-3), "lam"),
    (dict(psi_p=0.0), "psi_p"),
    (dict(nodes=30), "nodes"),
    (dict(m=0), "m must be"),
    (dict(quantities=("test",)), "quantities"),
])
def test_bad_input(relu, kw, match):
    args = dict(psi_n=1.0, psi_p=2.0, t=0.5, lam=0.0, m=1, train_time=1.0)
    extra = {k: kw.pop(k) for k in ("nodes", "quantities") if k in kw}
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        tt.errors_at_time(relu, **args, **extra)


def test_infinite_time_at_zero_ridge_is_the_ridgeless_limit(relu):
    """``T = inf, lam = 0`` (the minimum-norm interpolator, computed on a contour that avoids 0)
    equals the ``lam -> 0+`` Richardson limit of the ridge curves within its error estimate."""
    r = relu.ridgeless(1.0, 2.0, 0.5, "inf")
    e = tt.errors_at_time(relu, 1.0, 2.0, 0.5, 0.0, "inf", math.inf)
    assert e.converged
    assert abs(float(e.test) - r.test) <= r.test_err + 1e-8
    assert abs(float(e.train) - r.train) <= r.train_err + 1e-8
