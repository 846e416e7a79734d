"""Monte Carlo ground truth (validation.simulate): exact formulas, limits, surrogate, m = inf."""
import math

import numpy as np
import pytest

import pencils
import validation
from validation.simulation import training as sim_module
from validation import extrapolate, fit_score, make_problem, simulate
from validation.simulation.reference import straightforward_fit

RELU = None


def relu():
    global RELU
    if RELU is None:
        RELU = pencils.activation("relu")
    return RELU


# ---------------------------------------------------------------- input checks

@pytest.mark.parametrize("kwargs, words", [
    (dict(d=0), "d must be"),
    (dict(d=10.5), "d must be"),
    (dict(psi_n=0.0), "psi_n"),
    (dict(psi_p=-1.0), "psi_p"),
    (dict(lam=-1e-3), "lam"),
    (dict(t=0.0), "t must be"),
    (dict(m=0), "m must be"),
    (dict(m=2.5), "integer"),
    (dict(m="many"), "m must be"),
    (dict(psi_n=float("nan")), "NaN"),
    (dict(lam=float("nan")), "NaN"),
    (dict(t=float("inf")), "finite"),
])
def test_bad_input_is_rejected(kwargs, words):
    params = dict(d=20, psi_n=1.0, psi_p=1.0, t=0.5, lam=1e-2, m=1) | kwargs
    with pytest.raises(ValueError, match=words):
        simulate("relu", seeds=1, **params)


def test_m_accepts_inf_spellings():
    for spelling in (math.inf, "inf", "Inf", float("inf")):
        assert validation.parse_m(spelling) == math.inf
    assert validation.parse_m(3.0) == 3 and isinstance(validation.parse_m(3.0), int)


# ---------------------------------------------------------------- exactness of one instance

@pytest.mark.parametrize("name", ["relu", "tanh", "erf"])
@pytest.mark.parametrize("psi_p, m", [(0.5, 3), (3.0, 1)])  # primal and dual forms
def test_fit_matches_naive_implementation(name, psi_p, m):
    act = pencils.activation(name)
    pr = make_problem(d=40, psi_n=1.0, psi_p=psi_p, t=0.4, lam=1e-2, m=m)
    fitted = fit_score(act, pr, seed=3)
    assert fitted.form == ("primal" if pr.p <= pr.n * m else "dual")
    train, test, test_se = straightforward_fit(act, pr, 3, test_samples=40_000)
    assert fitted.train_error == pytest.approx(train, rel=1e-8)
    assert abs(fitted.test_error - test) < 4 * test_se


def test_streaming_does_not_change_the_draws(monkeypatch):
    pr = make_problem(d=30, psi_n=2.0, psi_p=1.0, t=0.5, lam=1e-2, m=4)
    whole = fit_score(relu(), pr, seed=1)
    monkeypatch.setattr(sim_module, "CHUNK_ROWS", 7)
    chunked = fit_score(relu(), pr, seed=1)
    assert chunked.train_error == pytest.approx(whole.train_error, rel=1e-10)
    assert chunked.test_error == pytest.approx(whole.test_error, rel=1e-10)


def test_seeds_reproduce_and_differ():
    kw = dict(d=30, psi_n=1.0, psi_p=2.0, t=0.5, lam=1e-2, m=2)
    a = simulate("relu", seeds=[5, 6], **kw)
    b = simulate("relu", seeds=[5, 6], **kw)
    np.testing.assert_array_equal(a.test_values, b.test_values)
    assert a.test_values[0] != a.test_values[1]


@pytest.mark.parametrize("surrogate", [False, True])
@pytest.mark.parametrize("m", [1, 3])
def test_sampled_dsm_loss_equals_test_error_plus_a_squared(surrogate, m):
    pr = make_problem(d=50, psi_n=1.0, psi_p=1.5, t=0.7, lam=1e-2, m=m)
    fitted = fit_score(relu(), pr, seed=2, surrogate=surrogate)
    rng = np.random.default_rng(7)
    loss, se = fitted.sampled_dsm_loss(40_000, rng)
    assert abs(loss - (fitted.test_error + pr.a**2)) < 4 * se
    test, test_se = fitted.sampled_test_error(40_000, rng)
    assert abs(test - fitted.test_error) < 4 * test_se


@pytest.mark.parametrize("m", [1, 4, math.inf])
@pytest.mark.parametrize("surrogate", [False, True])
def test_huge_ridge_gives_the_zero_score(m, surrogate):
    r = simulate("relu", d=30, psi_n=1.0, psi_p=2.0, t=0.3, lam=1e9, m=m, seeds=2, surrogate=surrogate)
    delta = -math.expm1(-0.6)
    assert r.test == pytest.approx(delta, abs=1e-6)
    if not math.isinf(m):  # ||Z||^2/(N d) is a chi-square average around 1
        assert abs(r.train - 1.0) < 0.1
    else:
        assert r.train == pytest.approx(1.0, abs=1e-6)


# ---------------------------------------------------------------- m = inf

@pytest.mark.parametrize("surrogate", [False, True])
def test_finite_m_approaches_exact_noise_average(surrogate):
    """Same instance (W, X): finite-m errors converge to the exact m = inf ones like c/m.

    If the noise average were wrong, m * (E_m - E_inf) would grow linearly with m.
    """
    kw = dict(d=40, psi_n=1.0, psi_p=2.0, t=0.5, lam=1e-2)
    exact = fit_score(relu(), make_problem(m=math.inf, **kw), 0, surrogate=surrogate)
    scaled = []
    for m in (16, 64, 256):
        finite = fit_score(relu(), make_problem(m=m, **kw), 0, surrogate=surrogate)
        scaled.append(m * (finite.test_error - exact.test_error))
    assert all(s > 0 for s in scaled)  # more draws of the same points: less memorisation
    assert max(scaled) < 2.5 * min(scaled)


def test_true_inf_approaches_surrogate_inf_as_d_grows():
    kw = dict(psi_n=1.0, psi_p=2.0, t=0.5, lam=1e-2, m=math.inf, seeds=4)
    gaps = []
    for d in (25, 100):
        true = simulate("relu", d=d, **kw)
        sur = simulate("relu", d=d, surrogate=True, **kw)
        gap = np.abs(true.test_values - sur.test_values).mean()  # same W, X per seed
        gaps.append(gap)
    assert gaps[1] < gaps[0] / 2


def test_surrogate_and_true_agree_at_moderate_d():
    kw = dict(psi_n=1.0, psi_p=0.5, t=0.5, lam=1e-2, m=1, seeds=6)
    diffs = {}
    for d in (25, 150):
        true = simulate("relu", d=d, **kw)
        sur = simulate("relu", d=d, surrogate=True, **kw)
        delta = true.test_values - sur.test_values
        diffs[d] = (abs(delta.mean()), delta.std(ddof=1) / math.sqrt(len(delta)))
    mean, se = diffs[150]
    assert mean < 3 * se + 0.01 * true.test
    assert diffs[150][0] < diffs[25][0]


# ---------------------------------------------------------------- extrapolation

def test_extrapolation_recovers_limit_and_inflates_bad_fits():
    from types import SimpleNamespace as R
    rng = np.random.default_rng(0)
    ds = [50, 100, 200, 400]
    exact = {d: R(test=0.4 + 3.0 / d, test_se=1e-3, train=0.2, train_se=1e-3) for d in ds}
    e = extrapolate(exact)
    assert e.test == pytest.approx(0.4, abs=1e-12) and e.fits["test"].c1 == pytest.approx(3.0)
    noisy = {d: R(test=0.4 + 3.0 / d + rng.normal(0, 0.05), test_se=1e-3, train=0.2, train_se=1e-3) for d in ds}
    assert extrapolate(noisy).test_se > 5 * e.test_se  # chi^2 >> dof inflates the error bar
    with pytest.raises(ValueError, match="two or more distinct d"):
        extrapolate({50: exact[50]})
    with pytest.raises(ValueError, match="standard error"):
        extrapolate({50: R(test=1, test_se=math.inf, train=1, train_se=1), 100: exact[100]})


def test_extrapolation_of_simulations_rejects_mixed_points():
    a = simulate("relu", d=20, psi_n=1, psi_p=1, t=0.5, lam=0.1, m=1, seeds=2)
    b = simulate("relu", d=40, psi_n=1, psi_p=2, t=0.5, lam=0.1, m=1, seeds=2)
    with pytest.raises(ValueError, match="different parameter points"):
        extrapolate([a, b])


# ---------------------------------------------------------------- training on given data

@pytest.mark.parametrize("m, psi_p", [(1, 0.5), (2, 3.0), (math.inf, 1.5)])
def test_fit_on_data_is_what_fit_score_trains(m, psi_p):
    """fit_score draws X from its stream and trains with fit_on_data: same W, B, train error."""
    pr = make_problem(d=24, psi_n=1.5, psi_p=psi_p, t=0.5, lam=1e-2, m=m)
    whole = fit_score(relu(), pr, seed=4)
    X = np.random.default_rng(np.random.SeedSequence([4, pr.d, pr.n, pr.p]).spawn(5)[1]).standard_normal((pr.n, pr.d))
    given = sim_module.fit_on_data(relu(), X, p=pr.p, t=0.5, lam=1e-2, m=m, seed=4)
    np.testing.assert_array_equal(given.W, whole.W)
    np.testing.assert_array_equal(given.Bt, whole.Bt)
    assert given.train_error == whole.train_error and given.test_error is None
    # held-out DSM loss with fresh noise agrees with the exact test error + a_t^2
    rng = np.random.default_rng(11)
    loss, se = whole.dsm_loss(rng.standard_normal((20_000, pr.d)), rng)
    assert abs(loss - whole.dsm_test_loss) < 4 * se
    y = rng.standard_normal((3, pr.d))
    np.testing.assert_allclose(whole.score(y), relu()(y @ whole.W.T / math.sqrt(pr.d)) @ whole.Bt
                               / math.sqrt(pr.delta), rtol=1e-13)


@pytest.mark.parametrize("bad, words", [
    (np.zeros((3,)), "shape"), (np.full((4, 3), np.nan), "NaN"), (np.zeros((0, 3)), "non-empty"),
])
def test_fit_on_data_rejects_bad_data(bad, words):
    with pytest.raises(ValueError, match=words):
        sim_module.fit_on_data("relu", bad, p=3, t=0.5, lam=0.1, m=1, seed=0)


# ---------------------------------------------------------------- inputs, memory, progress

@pytest.mark.parametrize("bad", ["yes", 1, 0, None, 1.0])
def test_surrogate_must_be_a_boolean(bad):
    with pytest.raises(ValueError, match="surrogate must be True or False"):
        simulate("relu", d=10, psi_n=1, psi_p=1, t=0.5, lam=0.1, m=1, seeds=1, surrogate=bad)


def test_memory_is_estimated_before_allocating():
    with pytest.raises(ValueError, match=r"needs about .* GiB .* max_memory"):
        simulate("relu", d=10, psi_n=1, psi_p=1, t=0.5, lam=0.1, m=1, seeds=1, max_memory=1000)
    with pytest.raises(ValueError, match="available memory"):  # ~10^6 x 10^6 dual kernel: refused at once
        simulate("relu", d=1000, psi_n=1000, psi_p=2000, t=0.5, lam=0.1, m=1, seeds=1)


@pytest.mark.parametrize("kw", [dict(psi_p=4.0, m=1), dict(psi_p=0.5, m=4), dict(psi_p=2.0, m=math.inf),
                                dict(psi_p=1.0, m=64)])
def test_memory_estimate_bounds_the_measured_peak(kw):
    import tracemalloc
    pr = make_problem(d=40, psi_n=2.0, t=0.5, lam=1e-2, **kw)
    fit_score(relu(), pr, 0)  # warm caches outside the measurement
    tracemalloc.start()
    try:
        fit_score(relu(), pr, 0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    estimate = sim_module.memory_estimate(pr)
    assert peak <= estimate <= 10 * peak


def test_progress_bar_only_when_asked_or_long(capsys):
    kw = dict(d=12, psi_n=1, psi_p=1, t=0.5, lam=0.1, seeds=2)
    simulate("relu", m=1, progress=False, **kw)
    simulate("relu", m=1, **kw)  # short run, progress=None: silent
    assert capsys.readouterr().err == ""
    simulate("relu", m=1, progress=True, **kw)
    assert "simulate relu" in capsys.readouterr().err
    # finite m streamed in several chunks (huge m): a bar over the chunks too
    simulate("relu", m=2 * sim_module.CHUNK_ROWS, progress=True, **(kw | dict(d=4, seeds=1)))
    assert f"m={2 * sim_module.CHUNK_ROWS}" in capsys.readouterr().err


@pytest.mark.parametrize("kw, words", [(dict(p=0), "p must be"), (dict(p=2.5), "p must be"), (dict(p="9"), "p must be"),
                                       (dict(seed=-1), "seed must be"), (dict(seed=1.5), "seed must be"),
                                       (dict(t=0.0), "t must be"), (dict(m=0), "m must be"),
                                       (dict(train_time=-1.0), "train_time")])
def test_fit_on_data_rejects_bad_parameters(kw, words):
    params = dict(p=3, t=0.5, lam=0.1, m=1, seed=0) | kw
    with pytest.raises(ValueError, match=words):
        sim_module.fit_on_data("relu", np.ones((4, 3)), **params)
