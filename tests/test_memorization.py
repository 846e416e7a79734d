"""Memorised fraction (validation.memorized_fraction) on constructed cases."""
import math

import numpy as np
import pytest

import validation
from validation.images.memorization import memorized_fraction, two_nearest


def _train(rng, n=200, d=10):
    return rng.standard_normal((n, d)) * 3.0


def test_exact_copies_are_memorised():
    rng = np.random.default_rng(0)
    train = _train(rng)
    r = memorized_fraction(train[rng.integers(0, len(train), 300)], train)
    assert r.fraction == 1.0 and r.se == 0.0
    np.testing.assert_allclose(r.d1, 0.0, atol=1e-12)


def test_points_far_from_all_are_not():
    rng = np.random.default_rng(1)
    train = _train(rng)
    far = 1e3 + rng.standard_normal((150, 10))           # all training points ~ equally far
    r = memorized_fraction(far, train)
    assert r.fraction == 0.0
    assert np.all(r.d1 / r.d2 > 0.99)


def test_known_mixture():
    rng = np.random.default_rng(2)
    train = _train(rng, n=500, d=20)
    k_copy, k_new = 120, 280
    near = train[rng.integers(0, 500, k_copy)] + 1e-3 * rng.standard_normal((k_copy, 20))
    fresh = 3.0 * rng.standard_normal((k_new, 20))      # new draws of the same law: d1/d2 ~ 1
    samples = rng.permutation(np.vstack([near, fresh]))
    r = memorized_fraction(samples, train, bootstrap=4000, seed=3)
    expected = k_copy / (k_copy + k_new)
    assert r.fraction == pytest.approx(expected, abs=1e-12)
    assert r.se == pytest.approx(math.sqrt(expected * (1 - expected) / 400), rel=0.1)
    fraction, se = r                                      # unpacks
    assert (fraction, se) == (r.fraction, r.se)


def test_matches_brute_force_and_chunking_invariance():
    rng = np.random.default_rng(4)
    train = rng.standard_normal((97, 6))
    samples = np.vstack([train[:30] + 0.2 * rng.standard_normal((30, 6)), rng.standard_normal((41, 6))])
    D = np.linalg.norm(samples[:, None, :] - train[None, :, :], axis=2)
    srt = np.sort(D, axis=1)
    whole = memorized_fraction(samples, train, ratio=0.5)
    np.testing.assert_allclose(whole.d1, srt[:, 0], rtol=1e-12)
    np.testing.assert_allclose(whole.d2, srt[:, 1], rtol=1e-12)
    np.testing.assert_array_equal(whole.nearest, np.argmin(D, axis=1))
    np.testing.assert_array_equal(whole.memorized, srt[:, 0] < 0.5 * srt[:, 1])
    for cs, ct in [(1, 2), (7, 5), (16, 96), (100, 1000)]:
        part = memorized_fraction(samples, train, ratio=0.5, chunk_samples=cs, chunk_train=ct)
        np.testing.assert_array_equal(part.memorized, whole.memorized)
        np.testing.assert_array_equal(part.nearest, whole.nearest)
        np.testing.assert_allclose(part.d1, whole.d1, rtol=1e-14)
        assert part.fraction == whole.fraction


def test_ratio_threshold_monotone():
    rng = np.random.default_rng(5)
    train = rng.standard_normal((60, 4))
    samples = train[:40] + 0.3 * rng.standard_normal((40, 4))
    fr = [memorized_fraction(samples, train, ratio=r).fraction for r in (0.1, 0.3, 0.6, 1.0)]
    assert fr == sorted(fr) and fr[0] < fr[-1]


def test_cancellation_guard_for_large_offsets():
    # far from the origin, ||a||^2 + ||b||^2 - 2ab cancels badly; distances are re-measured
    rng = np.random.default_rng(6)
    train = 1e6 + rng.standard_normal((50, 8))
    samples = train[:10] + 1e-6 * rng.standard_normal((10, 8))
    idx, d1, d2 = two_nearest(samples, train)
    np.testing.assert_array_equal(idx[:, 0], np.arange(10))
    np.testing.assert_allclose(d1, np.linalg.norm(samples - train[:10], axis=1), rtol=1e-6)
    assert np.all(d1 >= 0)


@pytest.mark.parametrize("kwargs, words", [
    (dict(ratio=0), "ratio"), (dict(ratio=1.5), "ratio"), (dict(ratio="a"), "ratio"),
    (dict(bootstrap=1), "bootstrap"),
])
def test_bad_arguments(kwargs, words):
    x = np.zeros((3, 2)) + np.arange(3)[:, None]
    with pytest.raises(ValueError, match=words):
        memorized_fraction(x, x, **kwargs)


def test_bad_shapes():
    with pytest.raises(ValueError, match="dimension"):
        validation.memorized_fraction(np.zeros((2, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="at least 2 training"):
        validation.memorized_fraction(np.zeros((2, 3)), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        validation.memorized_fraction(np.full((2, 3), np.nan), np.zeros((4, 3)))


def test_memory_scale_10k_by_60k_is_chunked():
    # one block is chunk_samples x chunk_train floats, whatever the totals
    from validation.images import memorization
    assert memorization.CHUNK_SAMPLES * memorization.CHUNK_TRAIN * 8 <= 128 * 2**20
