"""The three classic problems, derived by the engine, against their published closed forms
(double precision and mpmath at 40 digits) and against Monte Carlo at finite size."""
import mpmath
import numpy as np
import pytest

import derivations as dv
from derivations import closed_forms as cf


# -- closed forms, double precision -----------------------------------------------------

def test_marchenko_pastur_matches_closed_form():
    gamma = np.array([0.1, 0.5, 0.99, 1.0, 1.5, 4.0])[:, None]
    z = np.array([-3.0, -0.01, 0.3j, 1 + 0.5j, 2 - 0.05j, 5 + 1e-3j, -1 - 1j, 50.0, 1e3j])[None, :]
    got = dv.marchenko_pastur_stieltjes(gamma, z)
    ref = cf.mp_stieltjes_closed(gamma, z)
    assert got.shape == (6, 9) and np.iscomplexobj(got)
    np.testing.assert_allclose(got, ref, rtol=1e-9)
    # real z below / between / above the support: real result
    x = np.array([-2.0, 0.02, 8.0])
    r = dv.marchenko_pastur_stieltjes(0.3, x)
    assert not np.iscomplexobj(r)
    np.testing.assert_allclose(r, cf.mp_stieltjes_closed(0.3, x).real, rtol=1e-9)


def test_ridge_matches_closed_form():
    gamma = np.array([0.2, 0.8, 1.0, 1.25, 3.0])[:, None, None]
    lam = np.array([1e-2, 0.1, 1.0, 10.0])[None, :, None]
    sigma2 = np.array([0.0, 0.5, 2.0])[None, None, :]
    got = dv.ridge_risk(gamma, lam, 1.3, sigma2)
    assert got.shape == (5, 4, 3)
    np.testing.assert_allclose(got, cf.ridge_risk_closed(gamma, lam, 1.3, sigma2), rtol=1e-9)


def test_random_features_matches_mei_montanari():
    psi_p = np.array([0.3, 1.0, 2.5])[:, None]
    psi_n = np.array([0.5, 1.2, 4.0])[None, :]
    for lam, mu1, mus, s2 in [(0.1, 0.8, 0.6, 0.3), (1e-2, 0.5, 1.0, 0.0), (1.0, 1.2, 0.3, 1.0)]:
        got = dv.random_features_risk(psi_p, psi_n, lam, mu1, mus, 1.0, s2)
        ref = cf.mei_montanari_risk(psi_p, psi_n, lam, mu1, mus, 1.0, s2)
        np.testing.assert_allclose(got, ref, rtol=1e-9)


# -- closed forms, mpmath at 40 digits --------------------------------------------------

@pytest.mark.parametrize("gamma,z", [("0.5", "-1"), ("2", "0.5+0.25j"), ("0.3", "7"), ("1", "1j")])
def test_marchenko_pastur_mpmath(gamma, z):
    with mpmath.workdps(40):
        zz = mpmath.mpmathify(z)
        sol = dv.solver("marchenko_pastur")  # compiled numpy solver gives the start point
        from numerics import solve_mp
        got = solve_mp(dv.system("marchenko_pastur"), {"gamma": gamma, "z": zz}, dps=40).value
        ref = cf.mp_stieltjes_closed(gamma, zz, mp=True)
        assert abs(got - ref) <= mpmath.mpf(10) ** -25 * abs(ref)
        assert sol is dv.solver("marchenko_pastur")


@pytest.mark.parametrize("gamma,lam,sigma2", [("0.5", "0.1", "0.5"), ("2", "0.01", "1"), ("1", "1", "0")])
def test_ridge_mpmath(gamma, lam, sigma2):
    from numerics import solve_mp
    with mpmath.workdps(40):
        got = solve_mp(dv.system("ridge"), {"gamma": gamma, "lam": lam, "r2": "1.3", "sigma2": sigma2},
                       dps=40).value
        ref = cf.ridge_risk_closed(gamma, lam, "1.3", sigma2, mp=True)
        assert abs(got - ref) <= mpmath.mpf(10) ** -25 * abs(ref)


def test_random_features_mpmath():
    from numerics import solve_mp
    p = {"psi_p": "1.5", "psi_n": "0.8", "lam": "0.1", "mu1": "0.8", "mustar": "0.6", "r2": "1",
         "sigma2": "0.3"}
    with mpmath.workdps(40):
        got = solve_mp(dv.system("random_features"), p, dps=40).value
        ref = cf.mei_montanari_risk(*(p[k] for k in ("psi_p", "psi_n", "lam", "mu1", "mustar", "r2",
                                                     "sigma2")), mp=True)
        assert abs(got - ref) <= mpmath.mpf(10) ** -25 * abs(ref)
    assert mpmath.mp.dps == 15


# -- Monte Carlo at finite size ---------------------------------------------------------
# Each estimate is a mean over seeds; its error bar is the seed spread / sqrt(seeds).
# Finite-size corrections of these normalised traces are O(1/d) (smooth linear
# statistics away from the spectrum edge), hence the allowance 3 SE + C/d with C named.

def _mc(sample, d, seeds):
    vals = np.array([sample(d, np.random.default_rng(1000 * d + s)) for s in range(seeds)])
    return vals.mean(axis=0), vals.std(axis=0, ddof=1) / np.sqrt(seeds)


def _mp_sample(gamma, z):
    def f(d, rng):
        n = int(round(d / gamma))
        X = rng.standard_normal((n, d))
        ev = np.linalg.eigvalsh(X.T @ X / n)
        return np.mean(1 / (ev - z))
    return f


@pytest.mark.parametrize("gamma,z", [(0.5, 1 + 0.5j), (2.0, -0.5), (0.25, 0.3 + 0.05j)])
def test_marchenko_pastur_monte_carlo(gamma, z):
    theory = dv.marchenko_pastur_stieltjes(gamma, z)
    devs, ses = [], []
    for d in (60, 240):
        mean, se = _mc(_mp_sample(gamma, z), d, 6)
        dev = abs(mean - theory)
        assert dev <= 3 * abs(se) + 5 / d
        devs.append(dev)
        ses.append(abs(se))
    # the deviation shrinks with d (up to the larger size's error bar)
    assert devs[1] <= devs[0] + 3 * ses[1]


def _ridge_sample(gamma, lam, r2, sigma2):
    # exact average over isotropic beta and the noise: r2 lam^2 tr(R^2)/d + sigma2 tr(R S R)/n
    def f(d, rng):
        n = int(round(d / gamma))
        X = rng.standard_normal((n, d))
        ev = np.linalg.eigvalsh(X.T @ X / n)
        return r2 * lam ** 2 * np.mean(1 / (ev + lam) ** 2) + sigma2 * (d / n) * np.mean(ev / (ev + lam) ** 2)
    return f


@pytest.mark.parametrize("gamma,lam", [(0.5, 0.1), (2.0, 0.2), (1.0, 0.5)])
def test_ridge_monte_carlo(gamma, lam):
    theory = dv.ridge_risk(gamma, lam, 1.0, 0.5)
    for d in (60, 240):
        mean, se = _mc(_ridge_sample(gamma, lam, 1.0, 0.5), d, 6)
        assert abs(mean - theory) <= 3 * se + 10 / d


def _rf_sample(psi_p, psi_n, lam, mu1, mus, r2, sigma2):
    # Gaussian-equivalent model at finite d, exact average over beta, noise and the test point
    def f(d, rng):
        n, p = int(round(psi_n * d)), int(round(psi_p * d))
        X = rng.standard_normal((n, d))
        W = rng.standard_normal((p, d))
        Phi = mu1 * X @ W.T / np.sqrt(d) + mus * rng.standard_normal((n, p))
        P = np.linalg.inv(Phi.T @ Phi / n + lam * np.eye(p))
        Sigma = mu1 ** 2 * W @ W.T / d + mus ** 2 * np.eye(p)
        A = P @ Phi.T / n                       # a = A y
        C = mu1 * W.T / np.sqrt(d)              # E[x phiᵀ]
        M = A.T @ Sigma @ A
        bias = r2 * (1 - 2 * np.trace(C @ A @ X) / d + np.trace(X.T @ M @ X) / d)
        return bias + sigma2 * np.trace(M)
    return f


@pytest.mark.parametrize("psi_p,psi_n", [(1.5, 0.8), (0.5, 2.0)])
def test_random_features_monte_carlo(psi_p, psi_n):
    args = (psi_p, psi_n, 0.1, 0.8, 0.6, 1.0, 0.3)
    theory = dv.random_features_risk(*args)
    for d in (60, 180):
        mean, se = _mc(_rf_sample(*args), d, 5)
        assert abs(mean - theory) <= 3 * se + 10 / d


# -- bad input --------------------------------------------------------------------------

@pytest.mark.parametrize("call,match", [
    (lambda: dv.marchenko_pastur_stieltjes(-0.5, 1j), "gamma"),
    (lambda: dv.marchenko_pastur_stieltjes(0.5, 1.0), "support"),
    (lambda: dv.marchenko_pastur_stieltjes(2.0, 0.0), "support"),
    (lambda: dv.marchenko_pastur_stieltjes(1.0, 0.0), "support"),
    (lambda: dv.marchenko_pastur_stieltjes(0.5, np.inf), "finite"),
    (lambda: dv.ridge_risk(0.5, 0.0, 1.0, 1.0), "lam"),
    (lambda: dv.ridge_risk(0.5, 1.0, -1.0, 1.0), "r2"),
    (lambda: dv.ridge_risk(0.5, 1.0, 1.0, -0.1), "sigma2"),
    (lambda: dv.ridge_risk(-2, 1.0, 1.0, 0.1), "gamma"),
    (lambda: dv.random_features_risk(-1, 1, 0.1, 0.5, 0.5), "psi_p"),
    (lambda: dv.random_features_risk(1, 1, 0.1, 0.5, -0.5), "mustar"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
