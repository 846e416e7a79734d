"""One instance with a known data distribution: train it and compute its exact test error.

:func:`fit_score` draws the data ``x ~ N(0, Sigma)`` from the instance's ``X`` stream, trains
with :mod:`validation.simulation.training` and adds the exact test error given ``(W, B)``
from the feature moments of :mod:`validation.simulation.moments` (no test samples).
"""
from __future__ import annotations

import math

from . import moments as _moments
from .problem import Coefficients, Covariance, Problem, check_reals, instance_streams
from .training import (FittedScore, _check_memory, _check_surrogate, _check_train_time, _quadratic_error,
                       _train, memory_estimate)


def fit_score(act, problem: Problem, seed: int, *, surrogate: bool = False, covariance=None,
              train_time=None, progress=None, max_memory=None) -> FittedScore:
    """Draw one instance (``W``, data, noise) from ``seed``, train the score and compute its exact test error.

    The data ``x_i ~ N(0, Sigma)`` (``covariance``: ``None`` for ``Sigma = I``, a
    :class:`Covariance`, a 1-D array of eigenvalues or a ``d x d`` matrix) are drawn from
    the ``X`` stream as ``G Sigma^{1/2}``; training is :func:`fit_on_data`'s.  The memory
    estimate is checked against ``max_memory`` (default: the available memory) before any draw.
    """
    import pencils

    act = pencils.activation(act)
    surrogate = _check_surrogate(surrogate)
    pr = problem
    if not isinstance(pr, Problem):
        raise ValueError(f"problem must be a Problem (validation.make_problem), got {type(pr).__name__}")
    seed = check_reals(seed=seed, allow_zero=("seed",), integers=("seed",))["seed"]
    T = _check_train_time(train_time)
    _check_memory(memory_estimate(pr, covariance), max_memory, pr)
    cov = Covariance.of(covariance, pr.d)
    rngs = instance_streams(seed, pr.d, pr.n, pr.p)
    X = cov.sample(rngs[1].standard_normal((pr.n, pr.d)))
    coef = Coefficients.at(act, pr.t, cov.tau)
    fitted = _train(act, pr, X, rngs, surrogate, coef, T, progress=progress)
    fitted.problem = pr
    W, Bt = fitted.W, fitted.Bt
    Ct = cov.feature_covariance(W, pr.a, pr.delta)  # Cov(W y / sqrt d), y ~ p_t = N(0, S_t)
    order, bound = fitted.mehler_order, fitted.truncation_bound
    if surrogate:
        test = _moments.surrogate_test_moments(coef, W, Ct)
    else:
        test = _moments.true_test_moments(act, W, Ct)
        order, bound = max(order, test.mehler_order), max(bound, test.truncation_bound)
    trace = cov.inverse_trace(pr.a, pr.delta)  # tr(S_t^{-1}) / d
    # E[phi y^T] S_t^{-1} = E rho'(h_k) W_k / sqrt(d) (Stein), what the moments' V holds.
    test_error = _quadratic_error(Bt, test.U, test.V, math.sqrt(pr.delta), pr.d, pr.delta * trace)
    if not math.isfinite(test_error):
        raise FloatingPointError(f"non-finite test error {test_error} at {pr} seed {seed}")
    fitted.test_error = test_error
    fitted.dsm_offset = pr.a**2 if cov.isotropic else 1.0 - pr.delta * trace
    fitted.mehler_order, fitted.truncation_bound = order, bound
    return fitted

