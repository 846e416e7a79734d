"""Gauss rules of discrete measures: a few nodes that integrate like many atoms.

A spectral measure with hundreds of distinct atoms (the bulk of an image spectrum: 783 at
``d = 784``) makes every spectral mean of a kernel a sum over all of them, at every Newton
iteration.  The means are smooth functions of the atom (rational, with poles off the support),
so the ``n``-node Gauss rule of the measure, exact for polynomials of degree ``2n - 1``, gives
them to the accuracy of the best polynomial approximation of that degree (Gautschi,
*Orthogonal Polynomials: Computation and Approximation*, 2004, sections 1.4 and 2.2): a few tens
of nodes where the poles stay away from the support.  The error is not known in advance; a
caller compares two rules (``n`` and ``n + n // 2`` nodes) and falls back to the atoms
themselves where they disagree (:func:`derivations.overlaps.spiked_errors`).

The rule comes from the Jacobi matrix of the measure (Lanczos on ``diag(atoms)`` with the
starting vector ``sqrt(weights)``, reorthogonalised fully: the Stieltjes procedure loses
orthogonality on clustered atoms), then Golub--Welsch (nodes: its eigenvalues; weights: the total
mass times the squared first components of its eigenvectors).
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import eigh_tridiagonal

__all__ = ["gauss_rule"]


def gauss_rule(atoms, weights, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n``-node Gauss rule ``(nodes, weights)`` of the discrete measure
    ``sum_i weights_i delta(atoms_i)`` (weights ``>= 0``, not all zero).  With ``n`` at least the
    number of atoms of positive weight, those atoms themselves (the rule is then the measure).

    >>> x = np.linspace(0.0, 1.0, 500); w = np.full(500, 1 / 500)
    >>> nodes, wq = gauss_rule(x, w, 6)
    >>> bool(abs(wq @ nodes**11 - w @ x**11) < 1e-14), bool(abs(wq @ nodes**12 - w @ x**12) > 1e-9)
    (True, True)
    """
    x = np.asarray(atoms, dtype=float).ravel()
    w = np.asarray(weights, dtype=float).ravel()
    if x.shape != w.shape or x.size == 0:
        raise ValueError(f"atoms and weights must be non-empty and of one length, got {x.shape} and {w.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(w)) and np.all(w >= 0) and w.sum() > 0):
        raise ValueError("a Gauss rule needs finite atoms and weights >= 0 that are not all zero")
    if not (isinstance(n, (int, np.integer)) and n >= 1):
        raise ValueError(f"the number of nodes is a whole number >= 1, got {n!r}")
    keep = w > 0
    x, w = x[keep], w[keep]
    if n >= x.size:
        return x.copy(), w.copy()
    mass = w.sum()
    Q = np.zeros((x.size, n))
    alpha, beta = np.zeros(n), np.zeros(max(n - 1, 0))
    q = np.sqrt(w / mass)
    for j in range(n):
        Q[:, j] = q
        v = x * q
        alpha[j] = q @ v
        v -= Q[:, :j + 1] @ (Q[:, :j + 1].T @ v)  # full reorthogonalisation, twice
        v -= Q[:, :j + 1] @ (Q[:, :j + 1].T @ v)
        if j + 1 < n:
            b = np.linalg.norm(v)
            if b <= 1e-14 * max(np.max(np.abs(x)), 1e-300):  # the measure has only j + 1 atoms in effect
                return gauss_rule(x, w, j + 1)
            beta[j] = b
            q = v / b
    nodes, vecs = eigh_tridiagonal(alpha, beta)
    return nodes, mass * vecs[0] ** 2
