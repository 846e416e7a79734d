"""Training-time curves (derivations.training_time): the consistency limits T -> inf (ridge),
T -> 0 (B = 0) and the first-order small-T expansion, and theory against finite-d simulation
of the Gaussian-equivalent surrogate (validation.simulate(train_time=T), exact B(T) by
eigendecomposition), extrapolated in 1/d."""
import math

import numpy as np
import pytest

import pencils
from derivations import training_time as tt
from derivations.model import m_kind, parse_m
from derivations.training_time import traces
from validation import extrapolate, simulate


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


# -- reduced engine against the raw systems --------------------------------------------------------

def _random_z(rng, n):
    """Complex points: log-uniform modulus in [1e-3, 1e2], any angle; a third within 1e-9..1e-3 rad
    of the real axis (both sides, both half-lines), like the near-real probes of the bulk edges."""
    r = np.exp(rng.uniform(math.log(1e-3), math.log(1e2), n))
    ang = rng.uniform(-math.pi, math.pi, n)
    k = n // 3
    near = rng.choice([-1.0, 1.0], k) * 10 ** rng.uniform(-9, -3, k)
    ang[:k] = np.where(rng.random(k) < 0.8, near, math.pi - near)
    return r * np.exp(1j * ang)


@pytest.mark.parametrize("m", [1, 3, "inf"])
def test_reduced_traces_match_raw(relu, m):
    """Every trace by the reduced systems against the raw systems at random complex points.

    The bare reduced solver (numpy path, complex arithmetic): wherever both converge the values
    agree within 1e-10 relative plus the reduced rounding estimate (a wrong branch would differ
    at O(1)); points it resolves where the raw solver flags them (next to a square-root edge
    the raw solver can stall) are rare and carry the Stieltjes sign ``Im v Im z >= 0`` of the
    resolvent.  The engine used by the curves (reduced, with the raw system at the points the
    reduced one flags or whose estimate is large) agrees with the raw one to 1e-10 relative
    and flags the same points."""
    rng = np.random.default_rng(7)
    kind = m_kind(parse_m(m))
    for psi_n, psi_p in ((1.0, 2.0), (2.5, 0.7)):
        params = {k: float(np.asarray(v)) for k, v in
                  relu.solver_params(psi_n, psi_p, 0.5, 1.0, parse_m(m)).items()}
        z1, z2 = _random_z(rng, 300), _random_z(rng, 300)
        for group, extra in (("one", dict(z1=z1)), ("q", dict(z1=z1, z2=z2)), ("moments", {})):
            names = tt.GROUPS[group]
            raw = traces._solve_many(kind, names, params, engine="raw", **extra)
            S = traces._reduced_solver(kind, group)
            bare = S.solve({k: v for k, v in dict(params, **extra).items() if k in S.param_names},
                           throw=False, backend="numpy", estimate_error=True)
            red = traces._solve_many(kind, names, params, engine="reduced", **extra)
            for name in names:
                a, b, c = bare.values[name], raw[name], red[name]
                both = bare.converged & b.converged
                assert both.sum() >= 0.6 * np.size(both), name
                assert np.all(np.abs(a[both] - b.value[both])
                              <= 1e-10 * np.abs(b.value[both]) + bare.error[name][both]), name
                extra_pts = bare.converged & ~b.converged
                assert extra_pts.sum() <= 0.02 * np.size(both), name
                if name == "resolvent" and extra_pts.any():
                    v = a[extra_pts]
                    assert np.all(v.imag * np.sign(z1[extra_pts].imag) >= -1e-12 * np.abs(v))
                np.testing.assert_array_equal(c.converged, b.converged, err_msg=name)
                np.testing.assert_allclose(c.value[b.converged], b.value[b.converged], rtol=1e-10, atol=0,
                                           err_msg=name)


@pytest.mark.parametrize("m,psi_p", [(1, 2.0), (3, 8.0), ("inf", 4.0)])
def test_reduced_curves_match_raw(relu, m, psi_p, monkeypatch):
    """The learning curves by the reduced engine equal those by the raw systems: same contour
    nodes and flags, values to 1e-10 (both far below the quadrature tolerance)."""
    T = [1e-2, 1.0, 30.0, 1e3, math.inf]
    out = {}
    for engine in ("raw", "reduced"):
        monkeypatch.setattr(traces, "ENGINE", engine)
        out[engine] = tt.errors_at_time(relu, 1.0, psi_p, 0.5, [0.0, 1e-3], m, np.array(T)[:, None], tol=1e-9)
    a, b = out["raw"], out["reduced"]
    assert a.converged.all() and b.converged.all()
    np.testing.assert_array_equal(a.nodes, b.nodes)
    np.testing.assert_allclose(b.test, a.test, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.train, a.train, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.mass_error, a.mass_error, rtol=0, atol=1e-9)
