"""Samplers (validation.images.sampling) on Gaussian data with the exact score, and real-data experiments."""
import math
from pathlib import Path

import numpy as np
import pytest

from validation.images import sampling

# The MNIST test split of shared/ (beside the checkout, as CI lays it; else the workplace's copy).
MNIST = next((c for c in (Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist",
                          Path("/work/shared/data/mnist")) if c.exists()), Path("/work/shared/data/mnist"))
needs_mnist = pytest.mark.skipif(not (MNIST / "t10k-images-idx3-ubyte.gz").exists(),
                                 reason="MNIST test split not available")

SIGMA = np.array([3.0, 1.0, 0.3, 0.0])   # includes a zero eigenvalue, as constant pixels do


def _rotation(d, seed=0):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q


def _S(t):
    a, delta = sampling.a_delta(t)
    return a * a * SIGMA + delta


def exact_score_factory(Q):
    def score(Y, t):
        return -((Y @ Q) / _S(t)) @ Q.T     # -S_t^{-1} y with S_t = Q diag(S) Q^T
    return score


def discretised_variance(method, times):
    """Variance per eigen-direction produced by the scheme itself (linear score, exact algebra)."""
    v = _S(times[0]).copy()
    for k in range(len(times) - 1):
        h = times[k] - times[k + 1]
        c0 = 1.0 - 1.0 / _S(times[k])          # y + s(y, t) = c(t) y
        if method == "sde":
            g = 1.0 + h * (1.0 - 2.0 / _S(times[k]))
            v = g * g * v + 2.0 * h
        else:
            c1 = 1.0 - 1.0 / _S(times[k + 1])
            g = 1.0 + 0.5 * h * (c0 + c1 + h * c0 * c1)
            v = g * g * v
    return v


@pytest.mark.parametrize("method", ["sde", "ode"])
def test_sampler_covariance_matches_its_discretisation(method):
    """Empirical covariance of the samples = the scheme's exact variance, within sampling error."""
    Q = _rotation(4)
    T, t_min, steps, N = 4.0, 0.02, 40, 40_000
    sampler = sampling.sample_sde if method == "sde" else sampling.sample_ode
    Y = sampler(exact_score_factory(Q), n_samples=N, d=4, rng=np.random.default_rng(1), T=T,
                t_min=t_min, steps=steps, covariance=Q @ np.diag(SIGMA) @ Q.T, progress=False)
    C = np.cov((Y @ Q).T, bias=True)                 # in the eigenbasis of Σ
    v = discretised_variance(method, sampling.time_grid(T, t_min, steps))
    se = np.sqrt(np.outer(v, v) / N + np.diag(v * v / N))   # sd of a sample covariance entry
    assert np.all(np.abs(C - np.diag(v)) < 5 * se), (C, v)
    # and the scheme is close to the exact marginal S_{t_min} (first/second order, checked below)
    assert np.all(np.abs(v / _S(t_min) - 1) < (0.2 if method == "sde" else 0.02))


@pytest.mark.parametrize("method, order", [("sde", 1), ("ode", 2)])
def test_discretisation_error_has_the_documented_order(method, order):
    errors = []
    for steps in (100, 200, 400):
        v = discretised_variance(method, sampling.time_grid(4.0, 0.02, steps))
        errors.append(np.max(np.abs(v / _S(0.02) - 1)))
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all(np.abs(np.log2(ratios) - order) < 0.25), ratios


def test_sampler_with_exact_score_reaches_sigma():
    """Fine steps + Tweedie denoising: the covariance of the samples approaches Σ."""
    Q = _rotation(4, seed=2)
    score = exact_score_factory(Q)
    N, t_min = 40_000, 0.005
    Y = sampling.sample_ode(score, n_samples=N, d=4, rng=np.random.default_rng(3), T=6.0, t_min=t_min,
                            steps=200, covariance=Q @ np.diag(SIGMA) @ Q.T, progress=False)
    C = np.cov((Y @ Q).T, bias=True)
    v = discretised_variance("ode", sampling.time_grid(6.0, t_min, 200))
    # at t_min the marginal is S_{t_min} = a^2 Σ + Δ I; its distance to Σ is O(t_min)
    a, delta = sampling.a_delta(t_min)
    tol = 5 * np.sqrt(2 / N) * v + np.abs(v - _S(t_min))
    assert np.all(np.abs(np.diag(C) - (a * a * SIGMA + delta)) < tol)
    assert np.all(np.abs(np.diag(C) - SIGMA) < tol + 2 * t_min * (SIGMA + 1))


def test_score_grid_interpolates_noise_prediction_in_log_t():
    times = [0.1, 0.4, 1.6]
    preds = [lambda Y, c=c: c * Y for c in (1.0, 2.0, 3.0)]
    g = sampling.ScoreGrid(times, preds)
    Y = np.ones((2, 3))
    np.testing.assert_allclose(g.noise_prediction(Y, 0.2), 1.5 * Y)      # halfway in log t
    np.testing.assert_allclose(g.noise_prediction(Y, 0.4), 2.0 * Y)
    np.testing.assert_allclose(g.noise_prediction(Y, 0.01), 1.0 * Y)     # clamped
    np.testing.assert_allclose(g.noise_prediction(Y, 5.0), 3.0 * Y)
    np.testing.assert_allclose(g(Y, 0.4), -2.0 * Y / math.sqrt(sampling.a_delta(0.4)[1]))


@pytest.mark.parametrize("kwargs, words", [
    (dict(T=0.01, t_min=0.1), "t_min < T"), (dict(steps=0), "steps"), (dict(grid="log"), "grid kind"),
    (dict(n_samples=0), "n_samples"), (dict(covariance=-np.eye(2)), "positive semi-definite"),
])
def test_sampler_bad_arguments(kwargs, words):
    args = dict(n_samples=3, d=2, rng=np.random.default_rng(0), progress=False) | kwargs
    with pytest.raises(ValueError, match=words):
        sampling.sample_sde(lambda y, t: -y, **args)


def test_sampler_flags_non_finite_score():
    with pytest.raises(FloatingPointError, match="non-finite"):
        sampling.sample_ode(lambda y, t: y * np.nan, n_samples=3, d=2, rng=np.random.default_rng(0),
                            progress=False)


# ---------------------------------------------------------------- real-data experiments (validation.images.experiments, dsm-curves real)

from validation.cli import real as real_cli  # noqa: E402
from validation.images import experiments as real  # noqa: E402


def _tiny_config(**kw):
    base = dict(downsample=4, psi_n=1.0, psi_p=(0.5, 2.0), m=(1, math.inf), t=(0.3,), lam=1e-2, seeds=2,
                held_out=300, phase_psi_n=(0.5,), phase_psi_p=(0.5, 2.0), phase_m=(1,),
                mem_downsample=4, n_mem=5, mem_ratios=(1.0, 32.0), mem_m=(math.inf,), mem_samples=30,
                mem_steps=20, mem_times=(0.05, 2.0, 4), progress=False)
    return real.Config(**(base | kw))


@pytest.fixture(scope="module")
def mnist_pool():
    from validation.images import data
    return real.Pool("mnist", data.load_dataset(MNIST, downsample=4))


@needs_mnist
def test_tiny_end_to_end_run_on_mnist(tmp_path):
    res = real_cli.run([MNIST], tmp_path, _tiny_config(), log=lambda *a: None)
    for name in ("curves.csv", "curves.json", "curves.md", "phase.csv", "memorization.csv", "memorization.md",
                 "curves_mnist.png", "phase_mnist.png", "memorization_mnist.png", "samples_mnist.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    curves = res["curves"]
    assert len(curves) == 2 * 2 * 1 * 2            # kinds x m x t x psi_p
    for r in curves:
        assert r.d == 49 and r.n == 49
        assert all(math.isfinite(v) for v in (r.dsm_test, r.dsm_test_se, r.train, r.train_se))
        if r.kind == "gaussian":
            # the floor is the DSM loss of the exact score of N(0, Σ̂): nothing does better
            assert r.dsm_test > r.dsm_floor - 4 * r.dsm_test_se
    mem = res["memorization"]
    assert len(mem) == 2 * 2 and all(0 <= r.fraction <= 1 for r in mem if not r.diverged)
    if res["notes"]:
        assert "pending" in res["notes"][0] and all(math.isnan(r.rel_dev_dsm_test) for r in curves)
    else:   # structured-data theory present: every point has a converged theory value
        assert all(r.theory_converged and math.isfinite(r.rel_dev_dsm_test) and math.isfinite(r.rel_dev_train)
                   for r in curves)


@needs_mnist
def test_zero_score_limit_on_images(mnist_pool):
    """lam -> inf gives B -> 0: the held-out DSM loss is E||z||^2/d = 1 and so is the train error."""
    for m in (1, math.inf):
        r = real.curve_point("relu", mnist_pool, "real", psi_n=1.0, psi_p=1.0, m=m, t=0.3, lam=1e8,
                             seeds=2, held_out=2000)
        assert abs(r.dsm_test - 1) < 4 * r.dsm_test_se + 1e-6
        assert abs(r.train - 1) < (1e-6 if math.isinf(m) else 6 * math.sqrt(2 / (r.n * r.d)))


@needs_mnist
def test_images_and_gaussian_agree_when_the_data_are_drowned(mnist_pool):
    """At large t the inputs are mostly noise: images and N(0, Σ̂) give the same DSM loss."""
    kw = dict(psi_n=1.0, psi_p=0.5, m=math.inf, t=2.5, lam=1e-2, seeds=3, held_out=2000)
    a = real.curve_point("relu", mnist_pool, "real", **kw)
    b = real.curve_point("relu", mnist_pool, "gaussian", **kw)
    assert abs(a.dsm_test - b.dsm_test) < 4 * math.hypot(a.dsm_test_se, b.dsm_test_se)
    assert abs(a.train - b.train) < 4 * math.hypot(a.train_se, b.train_se)


@needs_mnist
def test_against_structured_theory_when_available():
    from validation.images import data
    pool = real.Pool("mnist", data.load_dataset(MNIST, downsample=2))
    theory, note = real.structured_theory("relu", pool.eigs)
    if theory is None:
        pytest.skip(note)
    # Gaussian data with the pool covariance at d = 196, m = inf, t = 0.3: theory within
    # sampling error plus a 10 % finite-d allowance
    r = real.curve_point("relu", pool, "gaussian", psi_n=1.0, psi_p=2.0, m=math.inf, t=0.3, lam=1e-2,
                         seeds=3, held_out=2000)
    dsm, train, conv = real.theory_point(theory, psi_n=r.psi_n, psi_p=r.psi_p, t=0.3, lam=1e-2, m=math.inf,
                                         eigs=pool.eigs)
    assert conv
    assert abs(r.dsm_test - dsm) < 4 * r.dsm_test_se + 0.1 * dsm
    assert abs(r.train - train) < 4 * r.train_se + 0.1 * train


def test_command_line_rejects_missing_data(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        real_cli.main(["--data", str(tmp_path / "nothing-here"), "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "nothing-here" in capsys.readouterr().err


def test_dsm_floor_matches_isotropic_formula():
    # Σ = I: S_t = I, floor = 1 - Δ_t = a_t^2
    assert real.dsm_floor(np.ones(10), 0.4) == pytest.approx(math.exp(-0.8), rel=1e-14)


@needs_mnist
def test_spectrum_check_isotropic_row_matches_theory(mnist_pool):
    theory, note = real.structured_theory("relu", mnist_pool.eigs)
    if theory is None:
        pytest.skip(note)
    rows = real.spectrum_check(mnist_pool, _tiny_config(), m_values=(math.inf,), seeds=2, held_out=1000)
    assert [r["spectrum"] for r in rows] == ["pool", "clipped at 3", "isotropic"]
    iso = rows[-1]
    assert iso["theory_converged"]
    assert abs(iso["dsm_test"] - iso["theory_dsm_test"]) < 4 * iso["dsm_test_se"] + 0.05 * iso["theory_dsm_test"]
    assert abs(iso["train"] - iso["theory_train"]) < 4 * iso["train_se"] + 0.05 * iso["theory_train"]


@needs_mnist
@pytest.mark.filterwarnings("ignore::derivations.spiked_theory.SpikeWarning")
def test_spiked_theory_beside_the_structured_one(tmp_path, mnist_pool):
    """``--spikes``: each curve point carries the spiked theory of the pool's spectrum, the same
    values as ``pencils.build(..., spikes=k).errors`` at that point, in the table and the figure."""
    import pencils

    cfg = _tiny_config(m=(1,), spikes=1, gaussian=False, phase=False, memorization=False)
    res = real_cli.run([MNIST], tmp_path, cfg, log=lambda *a: None)
    curves = res["curves"]
    assert len(curves) == 2 and all(r.spikes == 1 for r in curves)
    th = pencils.build("relu", covariance=mnist_pool.eigs, spikes=1)
    for r in curves:
        e = th.errors(psi_n=r.psi_n, psi_p=r.psi_p, t=r.t, lam=r.lam, m=1)
        assert r.spiked_dsm_test == pytest.approx(float(e.test) + r.dsm_floor, rel=1e-12)
        assert r.spiked_train == pytest.approx(float(e.train), rel=1e-12)
        assert r.spiked_error == pytest.approx(float(e.model_error), rel=1e-12)
        assert r.rel_dev_spiked_dsm_test == pytest.approx((r.dsm_test - r.spiked_dsm_test) / r.spiked_dsm_test)
        # a spike of share kappa_1 moves the curve away from the single-variance theory
        assert r.spiked_dsm_test != pytest.approx(r.theory_dsm_test, rel=1e-6)
    table = (tmp_path / "curves.md").read_text()
    assert "DSM spiked" in table and table.count("\n") == 2 + len(curves)
    assert (tmp_path / "curves_mnist.png").stat().st_size > 0


def test_spiked_and_m_options_are_checked(tmp_path, capsys):
    for bad, words in ((["--spikes", "-1"], "spikes"), (["--spikes", "two"], "spikes"), (["--m", "0"], "--m"),
                       (["--m", "1", "1"], "repeat")):
        with pytest.raises(SystemExit) as exc:
            real_cli.main(["--data", str(MNIST), "--out", str(tmp_path), "--no-phase", "--no-memorization"] + bad)
        assert exc.value.code == 2, bad
        assert words in capsys.readouterr().err, bad
    with pytest.raises(ValueError, match="spikes"):
        real.Config(spikes="two")
    assert real.Config(spikes="matched").spikes == "matched"
    assert real_cli._spikes_value("Matched") == "matched"
    with pytest.raises(ValueError, match="spikes"):
        real.Config(spikes=-2)
