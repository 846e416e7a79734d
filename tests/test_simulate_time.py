"""Monte Carlo along gradient flow (MODEL.md "Training time"): B(T) = -g_T(K) Phi^T Z / (nm)."""
import math

import numpy as np
import pytest

import pencils
from validation import make_problem, simulate
from validation.simulation import fit_on_data, fit_score
from validation.simulation import moments as mom

RELU = pencils.activation("relu")


@pytest.mark.parametrize("psi_p, m", [(0.5, 2), (3.0, 1), (1.5, math.inf)])  # primal, dual, noise-averaged
@pytest.mark.parametrize("surrogate", [False, True])
def test_long_training_time_is_the_ridge_fit(psi_p, m, surrogate):
    kw = dict(d=24, psi_n=1.0, psi_p=psi_p, t=0.5, lam=1e-2, m=m, seeds=2, surrogate=surrogate)
    ridge = simulate("relu", **kw)
    flow = simulate("relu", train_time=1e8, **kw)
    assert flow.form == ridge.form
    np.testing.assert_allclose(flow.test_values, ridge.test_values, rtol=1e-8)
    np.testing.assert_allclose(flow.train_values, ridge.train_values, rtol=1e-8)
    assert simulate("relu", train_time=math.inf, **kw).test == ridge.test


def _instance(pr, seed):
    """Phi, Z (finite m) or U, V (m = inf) of fit_score's instance, rebuilt from its seed streams."""
    streams = np.random.SeedSequence([seed, pr.d, pr.n, pr.p]).spawn(5)
    rng_w, rng_x, rng_z = (np.random.default_rng(s) for s in streams[:3])
    W = rng_w.standard_normal((pr.p, pr.d))
    X = rng_x.standard_normal((pr.n, pr.d))
    if math.isinf(pr.m):
        mo = mom.true_train_moments_inf(RELU, W, X, pr.a, pr.delta)
        return mo.U, mo.V, None, None
    Z = rng_z.standard_normal((pr.n * pr.m, pr.d))
    Phi = RELU((pr.a * np.repeat(X, pr.m, axis=0) + math.sqrt(pr.delta) * Z) @ W.T / math.sqrt(pr.d))
    N = Phi.shape[0]
    return Phi.T @ Phi / N, Phi.T @ Z / N, Phi, Z


@pytest.mark.parametrize("psi_p, m, lam", [(0.5, 2, 1e-2), (2.0, 1, 0.0), (1.5, math.inf, 1e-3)])
def test_euler_steps_of_the_flow_converge_to_B_of_T(psi_p, m, lam):
    """Explicit Euler for dB^T/dT = -(K + lam) B^T - Phi^T Z / (nm) from B = 0; first order in the step."""
    pr = make_problem(d=12, psi_n=1.0, psi_p=psi_p, t=0.4, lam=lam, m=m)
    T = 3.0
    fitted = fit_score(RELU, pr, 7, train_time=T)
    K, R, _, _ = _instance(pr, 7)
    errors = []
    for steps in (2000, 4000):
        h = T / steps
        Bt = np.zeros_like(R)
        for _ in range(steps):
            Bt -= h * ((K + lam * np.eye(len(K))) @ Bt + R)
        errors.append(np.linalg.norm(Bt - fitted.Bt) / np.linalg.norm(fitted.Bt))
    assert errors[1] < 2e-3
    assert 0.4 < errors[1] / errors[0] < 0.6  # first order: the limit of the steps is B(T)


def test_gradient_descent_on_A_is_the_flow_at_T_equal_2_k_eta_Delta_over_pd():
    """Plain GD on A with the loss L(A) of MODEL.md, learning rate eta, k steps, equals B(T) with
    T = 2 k eta Delta_t / (p d) (docs/simulation.md), up to O(eta) discretisation."""
    pr = make_problem(d=10, psi_n=2.0, psi_p=1.0, t=0.5, lam=1e-2, m=3)
    _, _, Phi, Z = _instance(pr, 2)
    N, p, d, delta = Phi.shape[0], pr.p, pr.d, pr.delta
    eta, k = 2.0, 3000
    A = np.zeros((d, p))
    for _ in range(k):
        resid = math.sqrt(delta) * Phi @ A.T / math.sqrt(p) + Z  # sqrt(Delta) s_A(y_ij) + z_ij
        grad = (2 / (N * d)) * (math.sqrt(delta / p) * Phi.T @ resid).T + 2 * pr.lam * delta / (d * p) * A
        A -= eta * grad
    T = 2 * k * eta * delta / (p * d)
    fitted = fit_score(RELU, pr, 2, train_time=T)
    Bt_gd = math.sqrt(delta) * A.T / math.sqrt(p)
    assert np.linalg.norm(Bt_gd - fitted.Bt) / np.linalg.norm(fitted.Bt) < 5e-3


def test_training_time_limits_and_monotone_train_error():
    kw = dict(d=20, psi_n=1.0, psi_p=2.0, t=0.5, m=1, seeds=[1])
    zero = simulate("relu", lam=0.0, train_time=0.0, **kw)
    assert zero.test == pytest.approx(-math.expm1(-1.0), rel=1e-12)  # B = 0: E_test = Delta
    trains = [simulate("relu", lam=0.0, train_time=T, **kw).train for T in (0.1, 1.0, 10.0, 100.0)]
    assert all(b < a for a, b in zip(trains, trains[1:]))  # gradient flow decreases the objective
    interp = simulate("relu", lam=0.0, **kw)  # p > nm: the minimum-norm interpolator
    late = simulate("relu", lam=0.0, train_time=1e9, **kw)
    assert late.test == pytest.approx(interp.test, rel=1e-6)


def test_fit_on_data_accepts_train_time():
    X = np.random.default_rng(0).standard_normal((30, 10))
    early = fit_on_data("tanh", X, p=15, t=0.5, lam=0.0, m=2, seed=1, train_time=0.5)
    late = fit_on_data("tanh", X, p=15, t=0.5, lam=0.0, m=2, seed=1, train_time=50.0)
    assert late.train_error < early.train_error and early.train_time == 0.5


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "soon", True])
def test_bad_train_time(bad):
    with pytest.raises(ValueError, match="train_time"):
        simulate("relu", d=10, psi_n=1, psi_p=1, t=0.5, lam=0.1, m=1, seeds=1, train_time=bad)


@pytest.mark.parametrize("psi_p, m", [(0.5, 3), (3.0, 1)])  # primal and dual forms
def test_flow_on_structured_data_matches_the_straightforward_implementation(psi_p, m):
    """B(T) by eigendecomposition vs scipy.linalg.expm on the materialised features, two-level Sigma."""
    from validation.simulation.reference import straightforward_fit
    pr = make_problem(d=30, psi_n=1.0, psi_p=psi_p, t=0.4, lam=1e-2, m=m)
    eig = np.r_[np.full(15, 0.2), np.full(15, 1.8)]
    fitted = fit_score(RELU, pr, 3, covariance=eig, train_time=4.0)
    train, test, se = straightforward_fit(RELU, pr, 3, test_samples=40_000, eigenvalues=eig, train_time=4.0)
    assert fitted.train_error == pytest.approx(train, rel=1e-9)
    assert abs(fitted.test_error - test) < 4 * se
