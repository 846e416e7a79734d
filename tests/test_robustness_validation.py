"""Reliability of validation's entry points: no input hangs or exhausts memory, no silent wrong value.

* the memorised fraction is invariant to a translation and a positive rescaling of the data;
* the samplers, Tweedie's formula and the score grid check every argument, naming it;
* ``simulate`` checks every argument and its memory estimate before allocating anything
  proportional to ``d``; ``fit_score`` too;
* ``extrapolate`` refuses runs that are not one model at different ``d``;
* ``load_images`` refuses a ``downsample`` larger than the image side;
* every ``dsm-curves`` subcommand reports a bad argument in one line, exit status 2, before work.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, strategies as st

import validation
from validation.images import data
from validation.images.memorization import memorized_fraction
from validation.simulation import problem as problem_module
from validation.simulation.extrapolate import levy_distance

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------
# 1. memorised fraction: translation and scale invariance

def _cloud(seed: int, n: int, d: int, k: int):
    """Training points and samples: ``k`` copies of training points moved by 1e-6 (memorised)
    and ``k`` fresh points; the reference indicator from exact pairwise distances."""
    rng = np.random.default_rng(seed)
    T = rng.standard_normal((n, d))
    S = np.vstack([T[:k] + 1e-6 * rng.standard_normal((k, d)), rng.standard_normal((k, d))])
    dist = np.sort(np.linalg.norm(S[:, None, :] - T[None, :, :], axis=2), axis=1)
    return S, T, dist[:, 0], dist[:, 1]


def test_memorised_fraction_reproducer_translation_and_extreme_scales():
    rng = np.random.default_rng(0)
    T = rng.standard_normal((50, 10))
    noise = rng.standard_normal((3, 10))
    assert memorized_fraction(T[:3] + 1e8 + 1e-6 * noise, T + 1e8).fraction == 1.0  # was 0 or 1/3
    for scale in (1e200, 1e-200):  # overflow / underflow of the squared norms: was 0
        r = memorized_fraction(scale * (T[:3] + 1e-6 * noise), scale * T)
        assert r.fraction == 1.0
        plain = memorized_fraction(T[:3] + 1e-6 * noise, T)
        # rounding the scaled inputs moves them by ~1e-16 of their size: 1e-10 of d1 ~ 1e-6
        np.testing.assert_allclose(r.d1 / scale, plain.d1, rtol=1e-8)
        np.testing.assert_allclose(r.d2 / scale, plain.d2, rtol=1e-12)


@given(seed=st.integers(0, 2**31), n=st.integers(3, 25), d=st.integers(1, 8), k=st.integers(1, 4),
       shift=st.floats(-1e8, 1e8), decade=st.floats(-200, 200), ratio=st.sampled_from([1 / 3, 0.5]))
@example(seed=0, n=50, d=10, k=3, shift=1e8, decade=0.0, ratio=1 / 3)
@example(seed=1, n=10, d=3, k=2, shift=0.0, decade=200.0, ratio=1 / 3)
@example(seed=2, n=10, d=3, k=2, shift=0.0, decade=-200.0, ratio=1 / 3)
def test_memorised_fraction_is_invariant_to_translation_and_scale(seed, n, d, k, shift, decade, ratio):
    S, T, d1, d2 = _cloud(seed, n, d, k)
    # points within 1 % of the threshold are left out: rounding of the transformed data may
    # legitimately move them across it
    clear = np.abs(d1 / d2 - ratio) > 1e-2 * ratio
    scale = 10.0 ** decade
    shifted = memorized_fraction((S + shift) * scale, (T + shift) * scale, ratio)
    reference = d1 < ratio * d2
    np.testing.assert_array_equal(shifted.memorized[clear], reference[clear])
    assert shifted.memorized[:k].all()  # the moved copies are memorised at any offset and scale
    if shift == 0.0:  # no translation: distances scale, up to the rounding of the scaled inputs
        # (~1e-16 of the data: 1e-10 relative for the 1e-6 moves, 1e-15 for O(1) distances)
        np.testing.assert_allclose(shifted.d1 / scale, d1, rtol=1e-8)
        np.testing.assert_allclose(shifted.d2 / scale, d2, rtol=1e-12)


@pytest.mark.parametrize("bad, message", [
    (dict(ratio="x"), "ratio must be a real number"), (dict(ratio=2), r"ratio must be in \(0, 1\]"),
    (dict(ratio=0), "ratio must be > 0"), (dict(bootstrap=1), "bootstrap must be an integer >= 2"),
    (dict(bootstrap="a"), "bootstrap must be"), (dict(seed=-1), "seed must be >= 0"),
    (dict(chunk_train=1.5), "chunk_train must be an integer"),
])
def test_memorised_fraction_names_the_bad_argument(bad, message):
    with pytest.raises(ValueError, match=message):
        memorized_fraction([[0.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]], **bad)


# ----------------------------------------------------------------------------------
# 2. samplers, Tweedie, score grid

def _score(y, t):
    return -y


GOOD = dict(n_samples=3, d=2, rng=None, T=1.0, t_min=0.1, steps=4, batch=None, progress=False)

BAD_SAMPLER = [
    (dict(d=2.5), ValueError, "d must be an integer"),
    (dict(d=0), ValueError, "d must be"),
    (dict(d=True), ValueError, "d must be an integer"),
    (dict(d="2"), ValueError, "d must be an integer"),
    (dict(rng="none"), TypeError, "rng must be a numpy.random.Generator"),
    (dict(rng=np.random.RandomState(0)), TypeError, "rng must be a numpy.random.Generator"),
    (dict(batch=0), ValueError, "batch must be"),
    (dict(batch=1.5), ValueError, "batch must be an integer"),
    (dict(n_samples=0), ValueError, "n_samples must be"),
    (dict(n_samples=2.5), ValueError, "n_samples must be an integer"),
    (dict(steps=0), ValueError, "steps must be"),
    (dict(T=math.nan), ValueError, "T is NaN"),
    (dict(T=math.inf), ValueError, "T must be finite"),
    (dict(t_min=0.0), ValueError, "t_min must be > 0"),
    (dict(t_min=2.0), ValueError, "t_min < T"),
    (dict(T="5"), ValueError, "T must be a real number"),
]


@pytest.mark.parametrize("sampler", [validation.sample_sde, validation.sample_ode])
@pytest.mark.parametrize("bad, error, message", BAD_SAMPLER)
def test_samplers_name_the_bad_argument(sampler, bad, error, message):
    kw = GOOD | dict(rng=np.random.default_rng(0)) | bad
    if sampler is validation.sample_ode and bad.get("rng") is not None and "rng" in bad:
        kw["rng"] = bad["rng"]
    with pytest.raises(error, match=message):
        sampler(_score, **kw)


def test_samplers_rng_none_is_refused_unless_the_ode_has_y0():
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator.*NoneType"):
        validation.sample_sde(_score, **GOOD)
    with pytest.raises(TypeError, match="rng must be"):
        validation.sample_ode(_score, **GOOD)
    y0 = np.ones((3, 2))
    Y = validation.sample_ode(_score, **(GOOD | dict(y0=y0)))  # deterministic: no rng needed
    assert Y.shape == (3, 2) and np.all(np.isfinite(Y))


@given(d=st.one_of(st.floats(allow_nan=True), st.integers(-5, 0), st.booleans(), st.text(max_size=3),
                   st.complex_numbers(allow_nan=False)))
@example(d=2.5)
@example(d=0)
def test_sampler_dimension_must_be_an_integer_at_least_one(d):
    if isinstance(d, float) and math.isfinite(d) and d == int(d) and d >= 1:
        d = -1  # an integral float >= 1 is a valid d; test a bad one instead
    with pytest.raises(ValueError, match=r"^d "):
        validation.sample_sde(_score, **(GOOD | dict(d=d, rng=np.random.default_rng(0))))


@pytest.mark.parametrize("t, message", [(-1.0, "t must be > 0"), (0.0, "t must be > 0"),
                                        (math.nan, "t is NaN"), (math.inf, "t must be finite"),
                                        ("0.3", "t must be a real number")])
def test_tweedie_needs_a_positive_time(t, message):
    with pytest.raises(ValueError, match=message):
        validation.tweedie(_score, np.ones((2, 2)), t)


def test_tweedie_checks_batch_and_points():
    with pytest.raises(ValueError, match="batch must be"):
        validation.tweedie(_score, np.ones((2, 2)), 0.3, batch=0)
    with pytest.raises(ValueError, match="Y contains NaN"):
        validation.tweedie(_score, np.full((2, 2), np.nan), 0.3)
    y = np.ones((2, 2))  # exact score of N(0, I): E[x0 | y] = a_t y
    np.testing.assert_allclose(validation.tweedie(_score, y, 0.3), math.exp(-0.3) * y, rtol=1e-14)


@pytest.fixture(scope="module")
def grid():
    X = np.random.default_rng(0).standard_normal((12, 4))
    return validation.train_score_grid("relu", X, [0.1, 1.0], p=8, lam=1e-2, m=1, progress=False)


def test_score_grid_dimension_is_checked(grid):
    assert grid.d == 4
    with pytest.raises(ValueError, match="d = 5 but the score was trained in dimension 4"):
        validation.sample_sde(grid, **(GOOD | dict(d=5, rng=np.random.default_rng(0))))
    with pytest.raises(ValueError, match=r"Y must be \(k >= 1, 4\)"):
        validation.tweedie(grid, np.ones((2, 5)), 0.3)
    Y = validation.sample_sde(grid, **(GOOD | dict(d=4, rng=np.random.default_rng(0))))
    assert Y.shape == (3, 4)


@pytest.mark.parametrize("bad, message", [
    (dict(times=[]), "times must be a non-empty"), (dict(times=[0.0, 1.0]), "times must be > 0"),
    (dict(times=[math.nan]), "times is NaN"), (dict(times=[0.1, 0.1]), "times repeat"),
    (dict(times="abc"), "times must be"), (dict(p=0), "p must be"), (dict(p=2.5), "p must be an integer"),
    (dict(lam=-1.0), "lam must be >= 0"), (dict(m=0), "m must be >= 1"), (dict(m=10**400), "m must be"),
    (dict(seed=-1), "seed must be an integer >= 0"), (dict(seed=1.5), "seed must be an integer"),
])
def test_train_score_grid_checks_before_training(bad, message, monkeypatch):
    import validation.simulation.training as training

    def trap(*args, **kwargs):
        raise AssertionError("a fit started before the arguments were checked")

    monkeypatch.setattr(training, "fit_on_data", trap)
    kw = dict(times=[0.1, 1.0], p=8, lam=1e-2, m=1, seed=0) | bad
    times = kw.pop("times")
    with pytest.raises(ValueError, match=message):
        validation.train_score_grid("relu", np.ones((4, 2)), times, progress=False, **kw)


# ----------------------------------------------------------------------------------
# 3. simulate: memory estimate before any allocation proportional to d, n, p

def test_huge_dimension_fails_fast_before_allocating(monkeypatch):
    def trap(*args, **kwargs):
        raise AssertionError("the covariance was built before the memory check")

    monkeypatch.setattr(problem_module.Covariance, "of", trap)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"needs about .* GiB for d=1000000000 n=1000000000 p=1000000000"):
        validation.simulate("relu", d=10**9, psi_n=1, psi_p=1, t=0.5, lam=0.1, m=1, seeds=1)
    assert time.perf_counter() - start < 5  # was: an 8 GB allocation (MemoryError)


def test_memory_estimate_counts_a_covariance_matrix():
    from validation.simulation.training import memory_estimate

    pr = validation.make_problem(d=50, psi_n=1, psi_p=1, t=0.5, lam=0.1, m=1)
    assert memory_estimate(pr, np.eye(50)) - memory_estimate(pr) == 8 * (5 * 50 * 50 - 50)
    with pytest.raises(ValueError, match="max_memory"):
        validation.simulate("relu", d=50, psi_n=1, psi_p=1, t=0.5, lam=0.1, m=1, seeds=1, covariance=np.eye(50),
                            max_memory=memory_estimate(pr) + 8 * 100)


def test_fit_score_checks_memory_before_drawing():
    pr = validation.make_problem(d=10**6, psi_n=1, psi_p=1, t=0.5, lam=0.1, m=1)
    with pytest.raises(ValueError, match="needs about"):
        validation.fit_score("relu", pr, 0)
    with pytest.raises(ValueError, match="problem must be a Problem"):
        validation.fit_score("relu", dict(d=10), 0)


# ----------------------------------------------------------------------------------
# 7. simulate: every argument named

BASE = dict(d=12, psi_n=1, psi_p=1, t=0.5, lam=0.1, m=1, seeds=1, progress=False)

BAD_SIMULATE = [
    *[(dict(**{k: v}), rf"^{k} ") for k in ("d", "psi_n", "psi_p", "t", "lam")
      for v in ("abc", "0.5", 1 + 2j, True, math.nan, math.inf, -1, 10**400)],
    (dict(d=2.5), "d must be an integer"), (dict(d=0), "d must be > 0"),
    (dict(seeds=0), "seeds must be a count >= 1"), (dict(seeds=[]), "seeds is empty"),
    (dict(seeds=-1), "seeds must be a count"), (dict(seeds=1.5), "seeds must be a count"),
    (dict(seeds="3"), "seeds must be a count"), (dict(seeds=True), "seeds must be a count"),
    (dict(seeds=[0.5]), "seeds must be integers >= 0"), (dict(seeds=[-1]), "seeds must be integers >= 0"),
    (dict(seeds=[1, 1]), "seeds repeat"),
    (dict(m=0), "m must be >= 1"), (dict(m=1.5), "m must be an integer"), (dict(m=10**400), "m must be"),
    (dict(m="abc"), "m must be"), (dict(m=True), "m must be"),
    (dict(covariance=[1.0] * 11), "covariance has 11 eigenvalues, expected d = 12"),
    (dict(covariance=[-1.0] * 12), "covariance eigenvalues must be >= 0"),
    (dict(covariance=np.eye(11)), "covariance matrix must be 12 x 12"),
    (dict(covariance="abc"), "covariance must be"), (dict(covariance=[[1.0, 2.0], [3.0]]), "covariance must be"),
    (dict(train_time=-1.0), "train_time must be >= 0"), (dict(train_time="abc"), "train_time must be"),
    (dict(train_time=math.nan), "train_time must be"),
]


@pytest.mark.parametrize("bad, message", BAD_SIMULATE, ids=[str(b)[:40] for b, _ in BAD_SIMULATE])
def test_simulate_names_the_bad_argument(bad, message):
    with pytest.raises(ValueError, match=message):
        validation.simulate("relu", **(BASE | bad))


def test_huge_m_is_a_memory_error_not_a_crash():
    with pytest.raises(ValueError, match=f"needs about .* GiB .* m={10**30}( |$)"):  # m kept exact
        validation.simulate("relu", **(BASE | dict(m=10**30)))
    with pytest.raises(ValueError, match="m must be an integer >= 1 or inf, got an integer of 401 digits"):
        validation.parse_m(10**400)


def test_integral_numbers_of_any_kind_are_accepted():
    a = validation.simulate("relu", **BASE)
    b = validation.simulate("relu", **(BASE | dict(d=np.int64(12), psi_n=np.float32(1), m=1.0, seeds=[0])))
    assert a.test == b.test and a.train == b.train


# ----------------------------------------------------------------------------------
# 4. extrapolate: one model at different d

def _runs(ds=(12, 24), **kw):
    base = dict(psi_n=1, psi_p=1, t=0.5, lam=0.1, m=1, seeds=2, progress=False)
    per_d = {key: kw.pop(key) for key in list(kw) if callable(kw[key])}
    return {d: validation.simulate(kw.get("activation", "relu"),
                                   **(base | {k: v for k, v in kw.items() if k != "activation"}
                                      | {k: f(d) for k, f in per_d.items()}), d=d)
            for d in ds}


def _mixed(first: dict, second: dict):
    """Runs at d = 12 with ``first`` and d = 24 with ``second``."""
    return {12: _runs((12,), **first)[12], 24: _runs((24,), **second)[24]}


@pytest.mark.parametrize("first, second, named", [
    (dict(), dict(covariance=lambda d: np.linspace(0.2, 2.0, d)), "covariance"),
    (dict(covariance=lambda d: np.r_[np.full(d // 2, 0.2), np.full(d - d // 2, 1.8)]),
     dict(covariance=lambda d: np.r_[np.full(d // 2, 0.5), np.full(d - d // 2, 1.5)]), "covariance spectra"),
    (dict(covariance=lambda d: np.full(d, 1.0)), dict(covariance=lambda d: np.full(d, 2.0)), "covariance"),
    (dict(), dict(t=0.3), "t is 0.5 at d=12 but 0.3 at d=24"),
    (dict(), dict(lam=0.01), "lam"), (dict(), dict(m=2), "m"), (dict(), dict(psi_n=2), "psi_n"),
    (dict(), dict(psi_p=2), "psi_p"), (dict(), dict(activation="tanh"), "activation"),
    (dict(), dict(surrogate=True), "surrogate"), (dict(), dict(train_time=5.0), "train_time"),
])
def test_extrapolate_refuses_different_models(first, second, named):
    with pytest.raises(ValueError, match=f"not one model at different d.*{named}"):
        validation.extrapolate(_mixed(first, second))


def test_extrapolate_accepts_one_model_read_at_several_d():
    validation.extrapolate(_runs((12, 24, 48)))
    validation.extrapolate(_runs((12, 24), covariance=lambda d: np.linspace(0.2, 2.0, d)))
    # the same measure: kappa = 1/4 of the directions with variance 4, rounded at each d
    validation.extrapolate(_runs((12, 26), covariance=lambda d: np.r_[np.full(round(d / 4), 4.0),
                                                                         np.zeros(d - round(d / 4))]))
    # isotropic data given explicitly or as None
    validation.extrapolate(_mixed(dict(), dict(covariance=lambda d: np.ones(d))))


def test_levy_distance_of_spectra():
    assert levy_distance(np.linspace(0.2, 2, 30), np.linspace(0.2, 2, 60)) < 1 / 30 + 1e-8
    assert levy_distance(np.full(10, 0.2), np.full(10, 0.7)) == pytest.approx(0.5, abs=1e-8)
    assert levy_distance(np.r_[np.zeros(3), np.ones(7)], np.r_[np.zeros(4), np.ones(6)]) == pytest.approx(0.1, abs=1e-8)


# ----------------------------------------------------------------------------------
# 5. images: downsample within the image side

@pytest.fixture(scope="module")
def toy_images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy")
    raw = np.random.default_rng(0).integers(0, 256, size=(20, 8, 6), dtype=np.uint8)
    data.write_idx(folder / "train-images-idx3-ubyte", raw)
    data.write_idx(folder / "t10k-labels-idx1-ubyte", raw[:, 0, 0])
    (folder / "notes.txt").write_text("not images\n")
    return folder


@pytest.mark.parametrize("k, message", [(7, "downsample must be an integer from 1 to 6"), (100, "from 1 to 6"),
                                        (0, "downsample must be > 0"), (2.5, "downsample must be an integer"),
                                        ("2", "downsample must be an integer"), (True, "downsample must be")])
def test_downsample_is_checked_against_the_image_side(toy_images, k, message):
    with pytest.raises(ValueError, match=message):
        validation.load_images(toy_images, downsample=k)
    with pytest.raises(ValueError, match=message):
        data.check_data_path(toy_images, downsample=k)
    assert validation.load_images(toy_images, downsample=6).shape == (20, 1)


def test_data_path_check_reads_headers_only(toy_images, tmp_path):
    assert data.check_data_path(toy_images) == (8, 6)
    with pytest.raises(data.DataFileError, match="labels file"):
        data.check_data_path(toy_images / "t10k-labels-idx1-ubyte")
    with pytest.raises(data.DataFileError, match="not an IDX file"):
        data.check_data_path(toy_images / "notes.txt")
    cut = tmp_path / "cut-images-idx3-ubyte"
    cut.write_bytes((toy_images / "train-images-idx3-ubyte").read_bytes()[:-5])
    with pytest.raises(data.DataFileError, match="header declares"):
        data.check_data_path(cut)
    with pytest.raises(data.MissingDataError):
        data.check_data_path(tmp_path / "missing")


# ----------------------------------------------------------------------------------
# 6. command lines: one line, status 2, before any work

def _cli_cases(tmp: Path, images: Path):
    a_file = tmp / "a_file"
    a_file.write_text("x\n")
    long_path = str(tmp / ("x" * 300))
    data = ["--data", str(images)]
    with_out = {  # subcommand -> (its other valid arguments, a bad number, an out-of-range number)
        "": ([], ["--d", "abc"], ["--d", "3"]),
        "table": ([], ["--seeds", "two"], ["--d", "3"]),
        "structured": ([], ["--seeds", "1.5"], ["--seeds", "1"]),
        "structured figures": ([], ["--grid", "x"], ["--grid", "4"]),
        "time": ([], ["--d", "1e3"], ["--d", "3"]),
        "time figures": ([], None, None),
        "real": (data, ["--seeds", "nan"], ["--downsample", "100"]),
    }
    cases = []
    for sub, (valid, bad_number, out_of_range) in with_out.items():
        cmd = ["-m", "validation.cli", *sub.split(), *valid]
        if bad_number:
            cases.append((cmd + bad_number, bad_number[0]))
            cases.append((cmd + out_of_range, out_of_range[0]))
        cases.append((cmd + ["--out", str(a_file)], "--out"))           # a regular file
        cases.append((cmd + ["--out", str(a_file / "sub")], "--out"))   # not creatable
        cases.append((cmd + ["--out", long_path], "--out"))             # over-long name
    cases += [
        (["-m", "validation.cli", "report", "--psi-n", "inf"], "--psi-n"),
        (["-m", "validation.cli", "report", "--d", "100"], "--d"),
        (["-m", "validation.cli", "real", "--data", str(tmp / "missing")], "--data"),
        (["-m", "validation.cli", "real", "--data", str(a_file)], "--data"),
        (["-m", "validation.cli", "real", *data, "--mem-downsample", "9"], "--mem-downsample"),
        (["-m", "validation.cli", "structured", "--mnist", str(tmp / "missing")], "--mnist"),
        (["-m", "validation.cli", "structured", "--mnist", str(a_file)], "--mnist"),
        (["-m", "validation.time_table", "--out", str(a_file)], "--out"),
        (["-m", "validation.real", *data, "--out", long_path], "--out"),
    ]
    return cases


def test_every_subcommand_reports_bad_arguments_in_one_line(tmp_path, toy_images):
    """Each call in a subprocess: status 2, one line naming the option, no traceback, and done
    within a timeout far below the work the command would do (tens of seconds to minutes)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MPLBACKEND="Agg",
               PYTHONPATH=str(ROOT))
    cases = _cli_cases(tmp_path, toy_images)

    def call(case):
        argv, option = case
        proc = subprocess.run([sys.executable, *argv], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=20)
        return argv, option, proc

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(call, cases))
    for argv, option, proc in results:
        err = proc.stderr
        assert proc.returncode == 2, (argv, proc.returncode, err[-500:])
        assert "Traceback" not in err, (argv, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and option in lines[0], (argv, err)
    assert not any((tmp_path / name).exists() for name in ("results",))  # nothing written by default
