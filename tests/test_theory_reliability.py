"""Reliability of the theory entry points: honest ridgeless error bars against 40-digit values
at lam -> 0, peaks that are never skipped silently, bounded work at absurd ridges, and clear
errors naming the argument for every malformed input of ``errors()``."""
import math
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pencils
from derivations.model import parse_m
from numerics import ConvergenceError


@pytest.fixture(scope="module")
def relu():
    return pencils.build("relu")


# -- ridgeless: the bar bounds the distance to the 40-digit value at lam = 1e-20 ----------------
# both sides of p = n (m = 1, inf) and of p = n m (m = 4)
POINTS = [(0.5, 1), (0.8, 1), (2.0, 1), (3.0, 1), (0.5, 4), (2.0, 4), (6.0, 4), (8.0, 4),
          (0.5, math.inf), (3.0, math.inf)]


@pytest.mark.parametrize("psi_p, m", POINTS)
def test_ridgeless_bar_bounds_the_forty_digit_limit(relu, psi_p, m):
    r = relu.ridgeless(psi_n=1.0, psi_p=psi_p, t=0.5, m=m)
    exact = relu.errors(psi_n=1.0, psi_p=psi_p, t=0.5, lam=1e-20, m=m, precision=40)
    # at lam = 1e-20 the limit is reached to ~1e-20 (the errors are analytic in lam)
    assert abs(r.test - float(exact.test)) <= r.test_err
    assert abs(r.train - float(exact.train)) <= r.train_err
    assert r.test_err <= 1e-3 * abs(r.test) + 1e-6  # and it is a useful bar


def test_ridgeless_single_level_was_the_value_at_lam0(relu):
    """levels=1 returned E(1e-2) = 0.6434 with a zero bar (the limit is 0.6692)."""
    with pytest.raises(ValueError, match="levels must be an integer >= 3"):
        relu.ridgeless(psi_n=1, psi_p=3, t=0.5, m=1, levels=1)
    with pytest.raises(ValueError, match="levels must be an integer >= 3"):
        relu.ridgeless(psi_n=1, psi_p=3, t=0.5, m=1, levels=0)  # was an IndexError


@pytest.mark.parametrize("ratio", [1, 2, 0, -0.5])
def test_ridgeless_ratio_must_shrink_lam(relu, ratio):
    with pytest.raises(ValueError, match="ratio"):
        relu.ridgeless(psi_n=1, psi_p=3, t=0.5, m=1, ratio=ratio)


def test_ridgeless_large_lam0_is_not_blamed_on_a_peak(relu):
    with pytest.raises(ValueError, match="lower lam0") as info:
        relu.ridgeless(psi_n=1, psi_p=3, t=0.5, m=1, lam0=1e3)
    assert "diverges" not in str(info.value)


@pytest.mark.parametrize("psi_p, m", [(1.0, 1), (4.0, 4)])
def test_ridgeless_diverges_at_the_interpolation_threshold(relu, psi_p, m):
    with pytest.raises(ValueError, match="the limit diverges"):
        relu.ridgeless(psi_n=1, psi_p=psi_p, t=0.5, m=m)


# -- peaks ----------------------------------------------------------------------------------------
def test_peak_found_at_tiny_ridge_in_bounded_time(relu):
    """lam = 1e-12: the scan returned [] after 40 s (the points past the peak were unresolved
    and skipped); the peak at p = n must be found, or its stretch reported unresolved."""
    start = time.perf_counter()
    peaks = relu.peaks(psi_n=1, t=0.5, m=1, lam=1e-12, points=24, xtol=1e-4)
    # a hang guard: each mpmath point is bounded (about 15 s alone; it was 60-120 s before the
    # mpmath rung started from the stalled double-precision core, with guard digits first)
    assert time.perf_counter() - start < 90
    near = [pk for pk in peaks if pk.bracket is None and abs(pk.psi_p - 1) < 1e-3
            or pk.bracket is not None and pk.bracket[0] <= 1 <= pk.bracket[1]]
    assert near
    for pk in near:
        assert pk.resolved or math.isnan(pk.height) or pk.height > 0


def test_unresolved_scan_points_are_reported(relu):
    """With no mpmath budget (``resolve=0``) the points past the peak at lam = 1e-12 are left
    unresolved: they must come back as flagged stretches, never be dropped."""
    peaks = relu.peaks(psi_n=1, t=0.5, m=1, lam=1e-12, points=30, resolve=0)
    flagged = [pk for pk in peaks if not pk.resolved]
    assert flagged and all(pk.bracket[0] < pk.psi_p < pk.bracket[1] for pk in flagged)


@pytest.mark.parametrize("kw, match", [(dict(points=0), "points"), (dict(points=2), "points"),
                                       (dict(points=3.5), "points"), (dict(xtol=0), "xtol"),
                                       (dict(xtol=1.0), "xtol"), (dict(psi_p_range=(2, 1)), "psi_p_range"),
                                       (dict(psi_p_range=(0, 1)), "psi_p_range"),
                                       (dict(psi_p_range=(1,)), "psi_p_range"),
                                       (dict(psi_p_range="ab"), "psi_p_range")])
def test_peaks_arguments_checked(relu, kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        relu.peaks(psi_n=1, t=0.5, m=1, lam=1e-4, **kw)


# -- the mpmath rung: the physical root, right to its accuracy ------------------------------------------
@pytest.mark.parametrize("psi_p, lam", [(1.4219737099876062, 1e-10), (1.0001, 1e-12), (2.583897710884396, 1e-7)])
def test_mpmath_rung_is_on_the_physical_branch_and_accurate(relu, psi_p, lam):
    """Past p = n at a tiny ridge the double precision stalls and mpmath resolves the point.
    The continuation at 30 digits gave E_train = -2.3e-6 at psi_p = 1.422, lam = 1e-10 (a root
    off the physical branch), and at 1.0001, 1e-12 and 2.58, 1e-7 train errors off by 3x and 5x
    (30 digits leave an error ~ 1e-25 / lam^2 there).  Both errors are means of squares (>= 0)
    and must match 100 digits reached by the fine continuation in lam (8 steps a decade)."""
    from derivations import ladder

    e = relu.errors(psi_n=1, psi_p=psi_p, t=0.5, lam=lam, m=1)
    assert bool(e.refined_mpmath)
    solver, point = relu.solver("1"), [1.0, psi_p, 0.5, lam, 1.0]
    core = ladder.continue_in_lam(relu.problem("1"), point, 100, per_decade=8, tol=1e-85)
    mp_params = {k: v for k, v in relu.mp_params(*point, 100).items() if k in solver.param_names}
    exact = solver.solve_mp(mp_params, 100, init=core, spectrum=relu.spectrum, tol=1e-85).values
    for q in ("test", "train"):
        value = float(getattr(e, q))
        assert value >= 0
        assert abs(value - float(exact[q])) <= 1e-8 * abs(float(exact[q])) + 1e-20, q


def test_a_root_with_a_negative_error_is_flagged_not_returned(relu, monkeypatch):
    """The mpmath rung checks the sign of the errors: a root with E_test < 0 is off the physical
    branch; every attempt giving one leaves the point unresolved, with that cause."""
    import types

    from derivations import ladder

    def off_branch(*args, **kwargs):
        return types.SimpleNamespace(values={"test": -1.0, "train": 0.5}, residual=0.0)

    monkeypatch.setattr(ladder, "mp_point", off_branch)
    e = relu.errors(psi_n=1, psi_p=1.5, t=0.5, lam=1e-12, m=1, throw=False)
    assert not bool(e.converged) and math.isnan(float(e.test))
    with pytest.raises(ConvergenceError, match="negative error"):
        relu.errors(psi_n=1, psi_p=1.5, t=0.5, lam=1e-12, m=1)


# -- bounded work -------------------------------------------------------------------------------------
def test_underflowing_ridge_is_refused_at_once(relu):
    start = time.perf_counter()
    with pytest.raises(ValueError, match="lam must be >= 1e-150"):
        relu.errors(psi_n=1, psi_p=2, t=0.5, lam=1e-300, m=1)
    with pytest.raises(ValueError, match="psi_n must be >= 1e-100"):
        relu.errors(psi_n=1e-300, psi_p=2, t=0.5, lam=1e-2, m=1, throw=False)
    assert time.perf_counter() - start < 1


def test_smallest_ridge_costs_bounded_time_and_is_flagged(relu):
    start = time.perf_counter()
    e = relu.errors(psi_n=1, psi_p=2, t=0.5, lam=1e-150, m=1, throw=False)
    assert time.perf_counter() - start < 30
    assert (not bool(e.converged) and math.isnan(float(e.test))) or \
        (bool(e.converged) and abs(float(e.test) - 0.9947256953) < 1e-8)  # the ridgeless value


# -- errors(): clear errors naming the argument ----------------------------------------------------------
BASE = dict(psi_n=1.0, psi_p=2.0, t=0.5, lam=1e-2, m=1)


@pytest.mark.parametrize("name, value", [("psi_n", "2"), ("psi_n", "a"), ("psi_p", 1 + 1j), ("t", True),
                                         ("lam", [True]), ("lam", np.array([1e-2, 2e-2], dtype=object)),
                                         ("psi_p", np.array([True])), ("t", None), ("lam", [[1e-2], [1, 2]])])
def test_malformed_numbers_name_the_argument(relu, name, value):
    with pytest.raises((TypeError, ValueError), match=name):
        relu.errors(**{**BASE, name: value})


def test_unknown_keyword_is_an_unknown_argument_of_errors(relu):
    with pytest.raises(TypeError, match=r"errors\(\) got unknown keyword argument\(s\) 'bogus'; accepted: .*lam"):
        relu.errors(**BASE, bogus=3)
    with pytest.raises(TypeError, match="with train_time"):
        relu.errors(**BASE, train_time=1.0, newton_maxiter=3)


def test_zero_training_time_is_the_zero_score(relu):
    start = time.perf_counter()
    e = relu.errors(**BASE, train_time=0)
    assert time.perf_counter() - start < 1
    assert float(e.test) == -math.expm1(-1.0) and float(e.train) == 1.0


def test_large_m(relu):
    """m = 10**30 (int or float) is a finite m within rounding of m = inf; above the largest double it
    is refused, naming m."""
    big = relu.errors(**{**BASE, "m": 10**30})
    assert relu.errors(**{**BASE, "m": 1e30}).test == big.test
    assert abs(float(big.test) - float(relu.errors(**{**BASE, "m": "inf"}).test)) < 1e-12
    assert parse_m(1e30) == int(1e30) and parse_m(10**30) == 10**30
    with pytest.raises(ValueError, match="m must be .*largest double"):
        parse_m(10**400)


# -- property test: only the documented outcome classes ---------------------------------------------------
WEIRD = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3), st.booleans(),
                  st.text(max_size=3), st.complex_numbers(max_magnitude=3),
                  st.lists(st.floats(0.05, 5), min_size=1, max_size=3), st.just(None))
GOOD = {"psi_n": st.floats(0.2, 4), "psi_p": st.floats(0.2, 4), "t": st.floats(0.05, 2),
        "lam": st.floats(1e-4, 1)}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_errors_outcomes_are_only_the_documented_ones(relu, data):
    kw = {k: data.draw(s, label=k) for k, s in GOOD.items()}
    kw["m"] = data.draw(st.sampled_from([1, 2, 4, math.inf, "inf"]), label="m")
    bad = data.draw(st.sampled_from([None, "psi_n", "psi_p", "t", "lam", "m"]), label="bad")
    if bad:
        kw[bad] = data.draw(WEIRD, label="value")
    try:
        e = relu.errors(**kw, throw=False)
    except (TypeError, ValueError) as exc:
        assert bad and bad in str(exc), f"message names no argument: {exc!r}"
        return
    ok = np.asarray(e.converged)
    test = np.asarray(e.test, dtype=float)
    assert np.all(np.isfinite(test[ok])) and np.all(np.isnan(test[~ok]))
