"""Monte Carlo with structured data (MODEL.md "Structured data"): x ~ N(0, Sigma)."""
import math

import numpy as np
import pytest

import pencils
from validation import make_problem, simulate
from validation.simulation import Coefficients, fit_score

KW = dict(psi_n=1.0, psi_p=1.5, t=0.5, lam=1e-2)


def two_level(d):
    return np.r_[np.full(d // 2, 0.2), np.full(d - d // 2, 1.8)]


@pytest.mark.parametrize("m", [1, 3, math.inf])
@pytest.mark.parametrize("surrogate", [False, True])
def test_unit_spectrum_reproduces_isotropic_simulate(m, surrogate):
    d = 24
    iso = simulate("relu", d=d, m=m, seeds=2, surrogate=surrogate, **KW)
    ones = simulate("relu", d=d, m=m, seeds=2, surrogate=surrogate, covariance=np.ones(d), **KW)
    np.testing.assert_allclose(ones.test_values, iso.test_values, rtol=1e-12, atol=0)
    np.testing.assert_allclose(ones.train_values, iso.train_values, rtol=1e-12, atol=0)
    assert ones.dsm_test_loss == pytest.approx(iso.dsm_test_loss, rel=1e-12)


def test_diagonal_matrix_equals_its_eigenvalues():
    d = 20
    eig = two_level(d)
    a = simulate("tanh", d=d, m=2, seeds=[3], covariance=eig, **KW)
    b = simulate("tanh", d=d, m=2, seeds=[3], covariance=np.diag(eig), **KW)
    assert b.test == pytest.approx(a.test, rel=1e-9) and b.train == pytest.approx(a.train, rel=1e-9)


@pytest.mark.parametrize("rotated", [False, True])
@pytest.mark.parametrize("surrogate", [False, True])
def test_exact_structured_test_error_against_samples(rotated, surrogate):
    """E_test = (1/d) E||B phi(y) + sqrt(Delta) S^{-1} y||^2, y ~ N(0, S_t), and the held-out DSM
    loss on x ~ N(0, Sigma) with fresh noise equals E_test + 1 - Delta tr(S^{-1})/d."""
    d = 30
    eig = two_level(d)
    rng = np.random.default_rng(5)
    Q = np.linalg.qr(rng.standard_normal((d, d)))[0] if rotated else np.eye(d)
    sigma = (Q * eig) @ Q.T if rotated else eig
    pr = make_problem(d=d, psi_n=2.0, psi_p=1.5, t=0.5, lam=1e-2, m=2)
    f = fit_score(pencils.activation("relu"), pr, 1, surrogate=surrogate, covariance=sigma)
    S = Q @ np.diag(pr.a**2 * eig + pr.delta) @ Q.T
    Sinv = np.linalg.inv(S)
    L = np.linalg.cholesky(S)
    samples = 60_000
    Y = rng.standard_normal((samples, d)) @ L.T
    per = np.sum((f.features(Y, rng) @ f.Bt + math.sqrt(pr.delta) * Y @ Sinv) ** 2, axis=1) / d
    assert abs(per.mean() - f.test_error) < 4 * per.std() / math.sqrt(samples)
    X = rng.standard_normal((samples, d)) @ (Q * np.sqrt(eig)).T
    loss, se = f.dsm_loss(X, rng)
    assert abs(loss - f.dsm_test_loss) < 4 * se
    assert f.dsm_test_loss == pytest.approx(f.test_error + 1 - pr.delta * np.trace(Sinv) / d, rel=1e-12)


@pytest.mark.parametrize("m", [1, math.inf])
@pytest.mark.parametrize("surrogate", [False, True])
def test_huge_ridge_gives_the_zero_score(m, surrogate):
    d = 24
    eig = np.r_[np.zeros(d // 2), np.full(d // 2, 2.0)]  # data on a subspace, kappa = 1/2
    r = simulate("relu", d=d, psi_n=1.0, psi_p=2.0, t=0.3, lam=1e9, m=m, seeds=2, surrogate=surrogate,
                 covariance=eig)
    a2, delta = math.exp(-0.6), -math.expm1(-0.6)
    zero = delta * np.mean(1.0 / (a2 * eig + delta))
    assert r.test == pytest.approx(zero, abs=1e-6)
    assert r.dsm_test_loss == pytest.approx(1.0, abs=1e-6)
    assert not r.isotropic and r.tau == pytest.approx(1.0)


def test_surrogate_uses_the_structured_constants():
    d = 20
    eig = np.full(d, 2.5)  # tau = 2.5
    pr = make_problem(d=d, m=1, **KW)
    f = fit_score(pencils.activation("tanh"), pr, 0, surrogate=True, covariance=eig)
    a2 = pr.a**2
    expected = pencils.activation("tanh").equivalence_constants(a2 * 2.5 + pr.delta, a2 * 2.5)
    got = (f.coefficients.mu0, f.coefficients.mu1, f.coefficients.mu_star_sq, f.coefficients.mu_s_sq,
           f.coefficients.mu_f_sq)
    assert got == pytest.approx(expected, rel=1e-14, abs=1e-300)
    assert Coefficients.at(pencils.activation("tanh"), 0.5, 1.0) == Coefficients.of(pencils.activation("tanh"), 0.5)


@pytest.mark.parametrize("cov, words", [
    (np.r_[np.ones(9), -0.1], "must be >= 0"),
    (np.r_[np.ones(9), np.nan], "finite"),
    (np.r_[np.ones(9), np.inf], "finite"),
    (np.ones(9), "expected d = 10"),
    (np.zeros(10), "all zero"),
    (np.triu(np.ones((10, 10))), "not symmetric"),
    (-np.eye(10), "positive semi-definite"),
    (np.zeros((10, 10)), "zero"),
    (np.eye(9), "10 x 10"),
    (np.ones((2, 5, 2)), "1-D"),
    ("wide", "covariance must be"),
])
def test_bad_covariance_is_rejected(cov, words):
    with pytest.raises(ValueError, match=words):
        simulate("relu", d=10, m=1, seeds=1, covariance=cov, **KW)
