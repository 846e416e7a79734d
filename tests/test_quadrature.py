"""Gauss rules of discrete measures (`numerics.quadrature.gauss_rule`): exact to degree 2n - 1,
positive weights inside the support, the atoms themselves when n is large, clear errors."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from numerics.quadrature import gauss_rule


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 12), st.integers(40, 400))
def test_exact_to_degree_2n_minus_1(seed, n, size):
    rng = np.random.default_rng(seed)
    x = np.sort(rng.gamma(0.5, 2.0, size))  # clustered near 0, a long tail: like an image bulk
    w = rng.random(size)
    w /= w.sum()
    nodes, wq = gauss_rule(x, w, n)
    assert nodes.shape == wq.shape == (n,)
    assert np.all(wq > 0) and np.all((nodes >= x[0] - 1e-9) & (nodes <= x[-1] + 1e-9))
    scale = x[-1]
    for k in range(2 * n):
        exact = w @ (x / scale) ** k
        assert abs(wq @ (nodes / scale) ** k - exact) <= 1e-9 * max(exact, 1e-3)
    assert np.all(np.diff(nodes) > 0)  # n distinct nodes


def test_rational_means_converge_geometrically():
    """A resolvent mean 1 / (1 + c x) (poles off the support): the error falls fast with n."""
    x = np.geomspace(1e-3, 40.0, 783)
    w = np.full(x.size, 1 / x.size)
    exact = w @ (1 / (1 + 5.0 * x))
    errors = [abs(wq @ (1 / (1 + 5.0 * nodes)) - exact) / exact
              for nodes, wq in (gauss_rule(x, w, n) for n in (8, 16, 32, 48))]
    assert errors[0] > 10 * errors[1] > 100 * errors[2] > 1000 * errors[3]
    assert errors[3] < 1e-5


def test_few_atoms_give_the_measure_itself():
    x, w = np.array([0.5, 2.0, 3.0, 7.0]), np.array([0.1, 0.2, 0.3, 0.4])
    nodes, wq = gauss_rule(x, w, 4)
    assert np.array_equal(nodes, x) and np.array_equal(wq, w)
    nodes, wq = gauss_rule(np.r_[x, 9.0], np.r_[w, 0.0], 6)  # zero weights drop out
    assert np.array_equal(nodes, x)
    nodes, wq = gauss_rule(x, w, 2)
    assert np.isclose(wq.sum(), 1.0) and np.isclose(wq @ nodes, w @ x) and np.isclose(wq @ nodes**3, w @ x**3)


def test_repeated_atoms_stop_early():
    """Atoms repeated (a measure with 3 distinct points): at most 3 nodes come back, exact."""
    x = np.repeat([1.0, 2.0, 5.0], 50)
    w = np.full(x.size, 1 / x.size)
    nodes, wq = gauss_rule(x, w, 10)
    assert nodes.size == 3
    assert np.allclose(np.sort(nodes), [1.0, 2.0, 5.0]) and np.allclose(wq, 1 / 3)


@pytest.mark.parametrize("atoms, weights, n, match", [
    ([], [], 3, "non-empty"),
    ([1.0, 2.0], [0.5], 1, "one length"),
    ([1.0, np.nan], [0.5, 0.5], 1, "finite"),
    ([1.0, 2.0], [0.5, -0.5], 1, ">= 0"),
    ([1.0, 2.0], [0.0, 0.0], 1, "not all zero"),
    ([1.0, 2.0], [0.5, 0.5], 0, "whole number"),
    ([1.0, 2.0], [0.5, 0.5], 1.5, "whole number"),
])
def test_bad_input(atoms, weights, n, match):
    with pytest.raises(ValueError, match=match):
        gauss_rule(atoms, weights, n)
