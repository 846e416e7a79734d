"""A straightforward reference implementation of one Monte Carlo instance.

It materialises the ``nm x p`` feature matrix, solves the ``p x p`` primal normal equations
with ``numpy.linalg.solve`` and estimates the test error from fresh test samples.  It draws
``W``, ``X``, ``Z`` from the same seed streams as :func:`validation.fit_score`, so the two
can be compared instance by instance: the tests use it as an independent check of the
streamed/dual solver and of the exact test-error formula, the benchmark as the baseline.
"""
from __future__ import annotations

import math

import numpy as np

from .problem import instance_streams


def straightforward_fit(act, problem, seed: int, test_samples: int, test_seed: int = 99,
                        batch: int = 2000, eigenvalues=None, train_time=None) -> tuple[float, float, float]:
    """``(train error, sampled test error, its standard error)`` of one instance (finite ``m``).

    ``eigenvalues``: structured data ``x ~ N(0, diag(eigenvalues))`` (default ``I``); the test
    error is sampled from ``y ~ N(0, S_t)`` against the true score ``-S_t^{-1} y``.
    ``train_time``: gradient flow ``B^T(T) = -(K + lam)^{-1} (I - expm(-T (K + lam))) Phi^T Z / N``
    with ``scipy.linalg.expm`` (``lam > 0``; an independent route to the eigendecomposition).
    """
    pr = problem
    rng_w, rng_x, rng_z = instance_streams(seed, pr.d, pr.n, pr.p)[:3]
    eig = np.ones(pr.d) if eigenvalues is None else np.asarray(eigenvalues, dtype=float)
    W = rng_w.standard_normal((pr.p, pr.d))
    X = rng_x.standard_normal((pr.n, pr.d)) * np.sqrt(eig)
    Z = rng_z.standard_normal((pr.n * pr.m, pr.d))
    Y = pr.a * np.repeat(X, pr.m, axis=0) + math.sqrt(pr.delta) * Z
    Phi = act(Y @ W.T / math.sqrt(pr.d))
    N = Phi.shape[0]
    M = Phi.T @ Phi / N + pr.lam * np.eye(pr.p)
    Bt = -np.linalg.solve(M, Phi.T @ Z / N)
    if train_time is not None:
        import scipy.linalg

        Bt = Bt - scipy.linalg.expm(-train_time * M) @ Bt
    train = float(np.sum((Phi @ Bt + Z) ** 2) / (N * pr.d))
    rng = np.random.default_rng(test_seed)
    S = pr.a**2 * eig + pr.delta
    per = []
    for start in range(0, test_samples, batch):
        Yt = rng.standard_normal((min(batch, test_samples - start), pr.d)) * np.sqrt(S)
        per.append(np.sum((act(Yt @ W.T / math.sqrt(pr.d)) @ Bt + math.sqrt(pr.delta) * Yt / S) ** 2, axis=1)
                   / pr.d)
    per = np.concatenate(per)
    return train, float(per.mean()), float(per.std(ddof=1) / math.sqrt(len(per)))
