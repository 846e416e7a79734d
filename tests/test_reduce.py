"""The symbolic reduction (pencils.reduce) and its solver (numerics.reduced).

* every derivation reduces to a few core unknowns, and the reduced system agrees with the
  raw operator-valued system (pencils.freeprob + numerics.fixedpoint) at random points;
* a point's value and flag do not depend on the other points of the call;
* the rounding estimate bounds the true error (checked against mpmath);
* ridgeless where the train error vanishes, peaks at tiny ridge, precision bounds;
* structured data: consistency of the spectral measure and bad input.
"""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

import pencils
from derivations import classic
from derivations.dsm import QUANTITIES, dsm_system
from derivations.theory import reduced_solver, reduced_system, spectral_measure
from numerics import compile as compile_raw
from numerics.reduced import compile_reduced
from pencils.reduce import reduce_systems


@pytest.fixture(scope="module")
def relu():
    return pencils.build("relu")


def _random_dsm_points(rng, size, lam_range=(-3, 0)):
    return (10 ** rng.uniform(-0.5, 0.7, size), 10 ** rng.uniform(-0.7, 1, size),
            rng.uniform(0.1, 1.5, size), 10 ** rng.uniform(*lam_range, size))


# ------------------------------------------------------------------ classic problems

CLASSIC = {
    "marchenko_pastur": (1, lambda rng, k: dict(gamma=rng.uniform(0.2, 3, k), z=-10 ** rng.uniform(-2, 1, k))),
    "ridge": (2, lambda rng, k: dict(gamma=rng.uniform(0.2, 3, k), lam=10 ** rng.uniform(-2, 1, k),
                                     r2=rng.uniform(0.5, 2, k), sigma2=rng.uniform(0, 1, k))),
    "random_features": (2, lambda rng, k: dict(psi_p=rng.uniform(0.2, 3, k), psi_n=rng.uniform(0.2, 3, k),
                                               lam=10 ** rng.uniform(-2, 0, k), mu1=rng.uniform(0.3, 1, k),
                                               mustar=rng.uniform(0.2, 1, k), r2=rng.uniform(0.5, 2, k),
                                               sigma2=rng.uniform(0, 1, k))),
}


@pytest.mark.parametrize("name", sorted(CLASSIC))
def test_classic_problems_reduce_and_agree_with_the_raw_system(name):
    max_core, draw = CLASSIC[name]
    S = classic.system(name)
    R = reduce_systems({name: S})
    assert 1 <= R.sizes["core"] <= max_core < S.n_unknowns
    params = draw(np.random.default_rng(3), 40)
    new = compile_reduced(R).solve(params, continuation="lam")
    old = compile_raw(S).solve(params)
    assert new.converged.all() and old.converged.all()
    np.testing.assert_allclose(new.values[name], old.value, rtol=1e-11, atol=1e-12)


def test_marchenko_pastur_is_one_quadratic_unknown():
    R = reduce_systems({"mp": classic.system("marchenko_pastur")})
    assert R.sizes["core"] == 1
    gamma, z = 0.5, -0.7
    u = compile_reduced(R).solve(dict(gamma=gamma, z=z)).values["mp"]
    # closed form of the Stieltjes transform at real z < 0 (the positive root)
    a, b = 1.0 - gamma, gamma * z
    exact = (-(z + gamma - 1) - math.sqrt((z + gamma - 1) ** 2 - 4 * gamma * z)) / (2 * gamma * z)
    assert float(u) == pytest.approx(exact, rel=1e-12) and a * b != 0


# ------------------------------------------------------------------ DSM

@pytest.mark.parametrize("kind,m", [("1", 1), ("finite", 3), ("inf", math.inf)])
def test_dsm_reduced_agrees_with_the_raw_engine(relu, kind, m):
    R = reduced_system(kind)
    assert R.sizes["core"] <= 4 and set(R.outputs) == set(QUANTITIES)
    rng = np.random.default_rng(11)
    pts = _random_dsm_points(rng, 30, lam_range=(-1.5, 0))  # generalising regime: both are accurate
    params = relu.solver_params(*pts, m)
    new = reduced_solver(kind).solve({k: v for k, v in params.items() if k in reduced_solver(kind).param_names},
                                     estimate_error=True)
    for q in QUANTITIES:
        raw = compile_raw(dsm_system(kind, q))
        old = raw.solve({k: v for k, v in params.items() if k in raw.param_names}, tol=1e-13)
        np.testing.assert_allclose(new.values[q], old.value, rtol=1e-12, atol=1e-12)
        assert np.all(new.error[q] < 1e-10)


@pytest.mark.parametrize("kind,m", [("finite", 3), ("inf", math.inf)])
def test_a_linear_stage_is_the_explicit_solve(relu, kind, m, monkeypatch):
    """Affine components solved numerically (linear core stages, ``LINEAR_STAGE_MIN``; the
    finite-m two-spike system needs them) give the explicitly eliminated program's values in
    numpy, the compiled kernel and mpmath, where no damped iteration or branch test applies."""
    import pencils.reduce as pr
    from derivations.dsm import dsm_traces
    from numerics.kernel import kernel_enabled
    from pencils.freeprob import equations

    ref = reduced_solver(kind)
    pts = _random_dsm_points(np.random.default_rng(5), 40, lam_range=(-1.5, 0))  # well conditioned: both accurate
    params = {k: v for k, v in relu.solver_params(*pts, m).items() if k in ref.param_names}
    want = ref.solve(params, backend="numpy")  # (derived before the patch: the cached system is the explicit one)
    one = {k: (v[7] if np.ndim(v) else v) for k, v in params.items()}
    want_mp = ref.solve_mp(one, dps=30)
    monkeypatch.setattr(pr, "LINEAR_STAGE_MIN", 3)  # the DSM systems' affine blocks of 4 and 6
    R = reduce_systems({n: equations(t) for n, t in dsm_traces(kind, False).items()}, cache=False)
    linear = [body for kind_, body in R.segments if kind_ == "core" and body.linear]
    assert linear and all(len(b.unknowns) > 3 and not b.program for b in linear)
    assert R.sizes["core"] > ref.reduced.sizes["core"]
    new = compile_reduced(R)
    for backend in ("numpy",) + (("kernel",) if kernel_enabled() else ()):
        got = new.solve(params, backend=backend)
        assert got.converged.all()
        for q in QUANTITIES:
            np.testing.assert_allclose(got.values[q], want.values[q], rtol=1e-11, atol=1e-13)
    got_mp = new.solve_mp(one, dps=30)
    for q in QUANTITIES:
        assert abs(got_mp.values[q] - want_mp.values[q]) < mpmath.mpf(10) ** -25


def test_latex_of_the_reduced_system_fits_on_a_page(relu):
    for m in (1, "inf"):
        tex = relu.equations(m).latex()
        assert "core" in tex and "Newton" in tex and len(tex) < 15000
    assert len(relu.equations(1, raw=True).latex()) > 3 * len(relu.equations(1).latex())


def test_a_point_does_not_depend_on_the_other_points_of_the_call(relu):
    rng = np.random.default_rng(5)
    psi_p = np.concatenate([[0.9, 1.0, 3.0], 10 ** rng.uniform(-1, 1, 397)])
    for m in (1, 4, math.inf):
        kw = dict(psi_n=1.0, t=0.5, lam=1e-3, m=m, throw=False)
        big = relu.errors(psi_p=psi_p, **kw)
        three = relu.errors(psi_p=psi_p[:3], **kw)
        for k in range(3):
            alone = relu.errors(psi_p=psi_p[k], **kw)
            for q in ("test", "train"):
                a, b, c = float(getattr(alone, q)), getattr(three, q)[k], getattr(big, q)[k]
                assert abs(a - b) <= 1e-12 * max(1, abs(a)) and abs(a - c) <= 1e-12 * max(1, abs(a))
            assert bool(alone.converged) == bool(three.converged[k]) == bool(big.converged[k])


def test_rounding_estimate_bounds_the_error_against_mpmath(relu):
    """Deep in the memorisation regime (tiny train errors, large traces) included."""
    rng = np.random.default_rng(2)
    pts = (10 ** rng.uniform(-1, 0.5, 12), 10 ** rng.uniform(0, 1, 12), rng.uniform(0.2, 1.5, 12),
           10 ** rng.uniform(-4, -2, 12))
    solver = reduced_solver("1")
    params = relu.solver_params(*pts, 1)
    sol = solver.solve({k: v for k, v in params.items() if k in solver.param_names}, estimate_error=True,
                       throw=False)
    checked = 0
    for i in np.nonzero(sol.converged)[0]:
        mp = relu.mp_params(*(float(x[i]) for x in pts), 1, 30)
        exact = solver.solve_mp({k: v for k, v in mp.items() if k in solver.param_names}, 30,
                                init=list(sol.core[i])).values
        for q in QUANTITIES:
            assert abs(float(exact[q]) - sol.values[q][i]) <= sol.error[q][i]
            checked += 1
    assert checked >= 16


def test_no_unresolved_pixel_in_the_readme_phase_diagram(relu):
    """m = 1 and m = 4 over psi_n, psi_p in [0.1, 10] (coarse grid), t = 0.5, lam = 1e-3."""
    g = np.geomspace(0.1, 10, 9)
    for m in (1, 4):
        e = relu.errors(psi_n=g[:, None], psi_p=g[None, :], t=0.5, lam=1e-3, m=m)
        assert e.converged.all() and np.all(np.isfinite(e.train)) and np.all(e.train > 0)


def test_ridgeless_where_the_train_error_vanishes(relu):
    r = relu.ridgeless(psi_n=1, psi_p=3, t=0.5, m=1)
    assert abs(float(r.train)) < 1e-6 and 0.3 < float(r.test) < 2


@pytest.mark.parametrize("m", [1, 2, 4])
def test_peaks_found_at_tiny_ridge(relu, m):
    peaks = relu.peaks(psi_n=1, t=0.5, m=m, lam=1e-6)
    assert len(peaks) >= 1
    assert any(abs(pk.psi_p - m) < 0.05 * m for pk in peaks)


def test_absurd_precision_is_refused(relu):
    for bad in (2000, 10, 30.5, True):
        with pytest.raises(ValueError, match="precision"):
            relu.errors(psi_n=1, psi_p=2, t=0.5, lam=1e-2, m=1, precision=bad)


def test_peak_point_at_fifty_digits(relu):
    """psi_p / psi_n = 1 - 1e-6, lam = 1e-10 (the issue's independent value 14655.74071600)."""
    e = relu.errors(psi_n=1, psi_p=1 - 1e-6, t=0.5, lam=1e-10, m=1, precision=50)
    assert abs(e.test.item() - mpmath.mpf("14655.74071600")) < 1e-9 * 14655.74


# ------------------------------------------------------------------ structured data

def test_identity_covariance_equals_the_isotropic_curves(relu):
    iso = relu
    one = pencils.build("relu", covariance=[1.0])
    for m in (1, 4, "inf"):
        kw = dict(psi_n=2, psi_p=[0.5, 1.0, 4.0], t=0.5, lam=1e-2, m=m)
        a, b = iso.errors(**kw), one.errors(**kw)
        for q in ("test", "train", "dsm_test_loss"):
            np.testing.assert_allclose(getattr(b, q), getattr(a, q), rtol=0, atol=1e-12)


def test_spectral_measure_forms_agree():
    eig = np.r_[np.full(3, 0.5), np.full(5, 2.0)]
    kw = dict(psi_n=1.5, psi_p=[0.7, 3.0], t=0.4, lam=1e-2, m=1)
    a = pencils.build("tanh", covariance=eig).errors(**kw)
    b = pencils.build("tanh", covariance=([0.5, 2.0], [3 / 8, 5 / 8])).errors(**kw)
    c = pencils.build("tanh", covariance=np.diag(eig)).errors(**kw)
    for q in ("test", "train"):
        np.testing.assert_allclose(getattr(a, q), getattr(b, q), rtol=0, atol=1e-12)
        np.testing.assert_allclose(getattr(a, q), getattr(c, q), rtol=0, atol=1e-12)
    same = pencils.build("tanh", covariance=np.full(7, 1.3)).errors(**kw)
    one = pencils.build("tanh", covariance=[1.3]).errors(**kw)
    np.testing.assert_allclose(same.test, one.test, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cov,words", [
    ([1.0, -0.5], "eigenvalues"), ([1.0, np.nan], "covariance contains NaN"), ([0.0, 0.0], "all zero"),
    (([1.0, 2.0], [0.7, 0.7]), "sum to 1"), (([1.0, 2.0], [1.5, -0.5]), "non-negative"),
    (np.array([[1.0, 0.3], [0.0, 1.0]]), "symmetric"), ([], "empty"),
])
def test_bad_covariance_is_refused(cov, words):
    with pytest.raises(ValueError, match=words):
        spectral_measure(cov)


def test_zero_score_reference_of_structured_data():
    """lam -> inf: E_test -> Delta tr(S_t^{-1})/d, and the DSM loss -> 1 (MODEL.md)."""
    s = np.array([0.0, 0.5, 3.0])
    th = pencils.build("relu", covariance=s)
    t = 0.3
    e = th.errors(psi_n=1, psi_p=1, t=t, lam=1e8, m=1)
    a2, delta = math.exp(-2 * t), -math.expm1(-2 * t)
    ref = delta * np.mean(1 / (a2 * s + delta))
    assert float(e.test) == pytest.approx(ref, rel=1e-6)
    assert float(e.dsm_test_loss) == pytest.approx(1.0, abs=1e-6)
