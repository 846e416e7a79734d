"""Reading a measured spectrum as a spiked covariance (MODEL.md, "Spiked covariance").

A covariance at the data's own dimension ``d`` has ``d`` eigenvalues.  In the spiked family the
``k`` largest are spikes, ``lambda_j = kappa_j d`` with a fixed share ``kappa_j``, and the other
``d - k`` follow a bounded measure ``nu_b``.  :func:`split_spikes` makes that split for
``pencils.build(act, covariance=eigs, spikes=k)``:

* ``kappa_j = lambda_j / d`` for the ``k`` largest eigenvalues (descending);
* ``nu_b``: the other ``d - k`` eigenvalues, each of weight ``1 / (d - k)`` (so
  ``tau_b = int s dnu_b`` is their mean; ``sum_j kappa_j + tau_b`` differs from ``tr Sigma / d``
  by ``k tau_b / d``, a finite-size term the limit drops).

``spikes="auto"`` (:func:`auto_spikes`) counts the eigenvalues that carry a share
``lambda_j / tr Sigma >= KAPPA_MIN = 0.07`` of the variance and stand clear of the bulk,
``lambda_j >= SEPARATION * tr Sigma / d`` (``SEPARATION = 10``).  Why these numbers:

* the single-variance theory misses a spike by an amount of order ``kappa^2``: measured
  ``-4.4 %`` of the test error at ``kappa = 0.2`` (relu, ``m = 1``, small ``t``,
  ``shared/notes/spiked-route.md``), i.e. about ``1.1 kappa^2``.  A direction with
  ``kappa < 0.07`` moves the curves by less than about ``0.5 %`` and stays in the bulk;
* the separation keeps a small-``d`` spectrum out (at ``d <= 14`` every eigenvalue of an
  isotropic covariance has a share ``>= 0.07``): a spike is of order ``d``, ten times the
  mean eigenvalue at least.

On the image spectra (``validation.spectrum`` of the preprocessed pools, ``tau = 1``) the rule
gives the same answer at both resolutions for Fashion-MNIST and one more spike at ``d = 196``
for MNIST, whose spectrum has no gap (``kappa``: ``0.100, 0.075, 0.061, 0.054, 0.050`` at
``d = 784``; ``0.122, 0.086, 0.072, 0.064`` at ``d = 196``):

=================  =====  ===========================  ========
spectrum            d      largest kappa_j              auto k
=================  =====  ===========================  ========
MNIST (test)        784    0.100 0.075 0.061 0.054       2
MNIST (test)        196    0.122 0.086 0.072 0.064       3
Fashion (test)      784    0.292 0.176 0.060 0.050       2
Fashion (test)      196    0.341 0.202 0.066 0.056       2
=================  =====  ===========================  ========

What the rule leaves in the bulk is reported by :attr:`SpikeSplit.residual`,
``sum_{j > k} kappa_j^2`` -- the size of the neglected order-``kappa^2`` effect (MNIST at
``d = 784``: ``0.018`` with two spikes, against ``0.034`` for the whole spectrum).

``spikes="matched"`` (:func:`matched_spikes`) is for spectra like MNIST's, with many directions of
order ``d`` and no gap.  Each direction ``j`` with ``lambda_j >= SEPARATION tr Sigma / d`` is a
spike of share ``kappa_j``; there are too many to resolve (the cost grows like ``Q^k``).  Their
effect beyond the single-variance theory comes from the cycles of the feature matrix that stay
on one direction: a cycle of length ``2r`` weighs ``p_r = sum_j kappa_j^r``, so to third order
the effect is a function of ``p2`` and ``p3`` alone (``docs/spiked.md`` section 12).  The
spectrum is therefore read twice, as ``n = 1`` and ``n = 2`` equal spikes of share
``sqrt(p2 / n)`` (same ``p2``, ``p3`` of the equal spikes ``p2^{3/2} / sqrt(n)``), and the two
curves are extrapolated linearly in that ``p3`` to the spectrum's own ``p3``
(:func:`derivations.spiked_theory.matched_grid`).  Both readings are the family's limit
(:func:`equal_spikes`): every direction is of order ``d``, so the variance the equal spikes do
not carry stays at infinity (:attr:`SpikeSplit.tau_inf`) and the bulk is the eigenvalues below
the directions; the trace is kept.  (A reading that left those directions in the bulk at the
data's own ``d`` depended on ``d``; ``docs/spiked.md`` section 13.)
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from .model import clip_roundoff, covariance_eigenvalues

__all__ = ["KAPPA_MIN", "SEPARATION", "SpikeSplit", "MatchedSpikes", "split_spikes", "auto_spikes",
           "matched_spikes", "equal_spikes"]

#: ``spikes="auto"``: the least share ``lambda_j / tr Sigma`` of a spike.
KAPPA_MIN = 0.07
#: ``spikes="auto"``: a spike is at least this many times the mean eigenvalue ``tr Sigma / d``.
SEPARATION = 10.0


@dataclass(frozen=True)
class SpikeSplit:
    """A spectrum read as ``k`` spikes and a bulk.

    ``kappa``: the spike shares ``lambda_j / d`` (descending, length ``k``); ``bulk``: the
    bulk's spectral measure ``(atoms, weights)`` (equal atoms merged); ``d``: the dimension the
    spectrum was measured at; ``residual``: ``sum_{j > k} kappa_j^2`` over the bulk eigenvalues
    (what the bulk would contribute to the order-``kappa^2`` effect of the spikes at this ``d``).
    """

    kappa: np.ndarray
    bulk: tuple[np.ndarray, np.ndarray]
    d: int
    residual: float
    #: variance at infinity (a share of ``tr Sigma / d``): directions of order ``d`` that the
    #: reading does not resolve as spikes (:func:`equal_spikes`).  It is part of the variance of
    #: the conditional coefficients (``tau_b``) and of no spectral mean (a direction of order
    #: ``d`` has weight ``1/d`` in the bulk's measure, and its linear part is of finite rank).
    tau_inf: float = 0.0

    @property
    def k(self) -> int:
        return int(self.kappa.size)

    @property
    def tau_b(self) -> float:
        """``int s dnu_b + tau_inf``: the variance of the pre-activation outside the spikes."""
        return float(np.dot(*self.bulk)) + self.tau_inf

    @property
    def tau(self) -> float:
        """``sum_j kappa_j + tau_b``, the limit's ``tr Sigma / d``."""
        return float(self.kappa.sum()) + self.tau_b


def auto_spikes(eigenvalues) -> int:
    """The number of spikes of ``spikes="auto"`` (module docstring): eigenvalues with
    ``lambda_j >= KAPPA_MIN tr Sigma`` and ``lambda_j >= SEPARATION tr Sigma / d``.

    >>> auto_spikes(np.r_[0.3 * 1000, np.ones(999)]), auto_spikes(np.ones(10))
    (1, 0)
    """
    s = clip_roundoff(eigenvalues)
    total = float(s.sum())
    bar = max(KAPPA_MIN * total, SEPARATION * total / s.size)
    return int(np.count_nonzero(s >= bar))


@dataclass(frozen=True)
class MatchedSpikes:
    """``spikes="matched"`` (module docstring): the order-``d`` directions of a spectrum, with
    their equal-spike readings ``one`` (``n = 1``) and ``two`` (``n = 2``).

    ``shares``: the ``kappa_j`` of the directions (descending); ``residual``: ``sum kappa_j^2``
    of the eigenvalues below the directions (what stays unresolved)."""

    shares: np.ndarray
    one: SpikeSplit
    two: SpikeSplit | None
    d: int
    residual: float

    @property
    def p2(self) -> float:
        return float(np.sum(self.shares ** 2))

    @property
    def p3(self) -> float:
        return float(np.sum(self.shares ** 3))

    @property
    def n_eff(self) -> float:
        """``p2^3 / p3^2``: the number of equal spikes with the spectrum's ``p2`` and ``p3`` (>= 1)."""
        return self.p2 ** 3 / self.p3 ** 2

    # what DSMTheory reads from a split: the last reading (two spikes, or one) stands for the pair
    @property
    def _last(self) -> SpikeSplit:
        return self.one if self.two is None else self.two

    @property
    def k(self) -> int:
        return self._last.k

    @property
    def kappa(self) -> np.ndarray:
        return self._last.kappa

    @property
    def bulk(self):
        return self._last.bulk


def equal_spikes(eigenvalues, n: int, shares) -> SpikeSplit:
    """The directions of a spectrum (its ``len(shares)`` largest eigenvalues, ``lambda_j =
    kappa_j d``) read as ``n`` equal spikes that carry their ``p2 = sum shares^2``: each of share
    ``sqrt(p2 / n)``, in the family's limit.

    Every direction is of order ``d``, so what the ``n`` spikes do not carry, ``sum shares -
    sqrt(n p2)``, is variance at infinity (:attr:`SpikeSplit.tau_inf`), and the bulk is the
    eigenvalues below the directions.  When the spikes carry more than the directions hold (one
    dominant direction: ``n p2 > (sum shares)^2``), the rest is taken from the bulk's largest
    eigenvalues, lowered to one level (water-filling).  The trace is kept; a single direction
    read as one spike, or ``n`` equal ones as ``n``, is the plain split.

    >>> sp = equal_spikes(np.r_[30.0, 20.0, 10.0, np.ones(97)], 2, [0.3, 0.2, 0.1])
    >>> sp.kappa.round(4).tolist(), round(sp.tau_inf, 4), float(sp.bulk[0].max())
    ([0.2646, 0.2646], 0.0708, 1.0)
    """
    s = np.sort(np.asarray(eigenvalues, dtype=float))[::-1]
    d, shares = s.size, np.asarray(shares, dtype=float)
    share = math.sqrt(float(np.sum(shares ** 2)) / n)
    rest = s[shares.size:]
    surplus = float(shares.sum()) - n * share  # a share of tr Sigma / d
    if abs(surplus) < 1e-12 * float(shares.sum()):  # round-off: the spikes carry the directions exactly
        surplus = 0.0
    owed = max(-surplus, 0.0) * d
    if owed > rest.sum():
        raise ValueError(f"{n} equal spike(s) of share {share:.4g} cannot carry the variance of the largest "
                         f"eigenvalues (owed {owed:.4g}); the spectrum has too little variance outside its directions")
    bulk = rest
    if owed > 0:
        lo, hi = 0.0, float(rest[0])
        for _ in range(200):  # the level L with sum (rest - L)_+ = owed
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if np.maximum(rest - mid, 0.0).sum() > owed else (lo, mid)
        bulk = np.minimum(rest, hi)
    if share * d <= bulk.max():
        raise ValueError(f"{n} equal spike(s) of share {share:.4g} do not stand above the bulk ({bulk.max():.4g})")
    atoms, inverse = np.unique(bulk, return_inverse=True)
    kappa = np.full(n, share)
    kappa.setflags(write=False)
    # residual: as for any split; matched_grid replaces it by the eigenvalues below the directions
    return SpikeSplit(kappa=kappa, bulk=(atoms, np.bincount(inverse, minlength=len(atoms)) / bulk.size), d=d,
                      residual=float(np.sum((bulk / d) ** 2)), tau_inf=max(surplus, 0.0))


def matched_spikes(eigenvalues) -> MatchedSpikes | None:
    """``spikes="matched"`` (module docstring): the directions ``lambda_j >= SEPARATION tr Sigma / d``
    and their readings as one and as two equal spikes; ``None`` when there is no such direction
    (the structured theory); ``two`` is ``None`` for a single direction (then ``p3 = p2^{3/2}``
    and the one-spike reading is exact).

    >>> ms = matched_spikes(np.r_[30.0, 20.0, np.ones(98)])
    >>> ms.shares.tolist(), round(ms.n_eff, 3), ms.two.kappa.round(4).tolist()
    ([0.3, 0.2], 1.793, [0.255, 0.255])
    """
    s = np.sort(np.asarray(eigenvalues, dtype=float))[::-1]
    d = s.size
    mask = s >= SEPARATION * s.sum() / d
    if not mask.any():
        return None
    shares = s[mask] / d
    shares.setflags(write=False)
    two = equal_spikes(s, 2, shares) if shares.size > 1 else None
    return MatchedSpikes(shares=shares, one=equal_spikes(s, 1, shares), two=two, d=d,
                         residual=float(np.sum((s[~mask] / d) ** 2)))


def _spectrum_of(covariance) -> np.ndarray:
    """The ``d`` eigenvalues of ``covariance`` (a 1-D array of them, or a symmetric matrix)."""
    if isinstance(covariance, tuple):
        raise ValueError("spikes= needs the d eigenvalues at the data's own d (a 1-D array or a covariance "
                         "matrix), not a weighted measure (eigenvalues, weights): a spike's share "
                         "kappa_j = lambda_j / d needs d")
    return clip_roundoff(covariance_eigenvalues(covariance))


def _check_spikes(spikes) -> int | str:
    """``spikes`` as ``"auto"``, ``"matched"`` or an int ``>= 0``; ``ValueError`` naming it otherwise."""
    if isinstance(spikes, str) and spikes in ("auto", "matched"):
        return spikes
    if isinstance(spikes, (bool, np.bool_)) or not isinstance(spikes, (numbers.Integral, np.integer)):
        raise ValueError(f"spikes must be a whole number >= 0, 'auto' or 'matched', got {spikes!r}")
    if spikes < 0:
        raise ValueError(f"spikes must be >= 0 (0 is the structured-data theory), got {int(spikes)}")
    return int(spikes)


def split_spikes(covariance, spikes) -> SpikeSplit | MatchedSpikes | None:
    """The spikes and bulk of ``covariance`` (module docstring); ``None`` for ``spikes=0``.

    ``covariance``: the ``d`` eigenvalues (1-D, any order) or a symmetric PSD ``d x d`` matrix
    (round-off handled by :func:`derivations.model.clip_roundoff`).  ``spikes``: a whole number
    ``0 <= k < d``, ``"auto"`` (:func:`auto_spikes`) or ``"matched"`` (:func:`matched_spikes`).
    A spike must be positive and strictly above the bulk (a ``k`` that cuts through a run of
    equal eigenvalues is refused).

    >>> sp = split_spikes(np.r_[np.ones(98), 20.0, 10.0], 2)
    >>> sp.kappa.tolist(), sp.bulk, sp.d
    ([0.2, 0.1], (array([1.]), array([1.])), 100)
    """
    spikes = _check_spikes(spikes)
    if spikes == 0:
        return None
    if covariance is None:
        if spikes in ("auto", "matched"):
            return None
        raise ValueError(f"spikes={spikes} needs covariance= (the d eigenvalues of the data covariance)")
    s = _spectrum_of(covariance)
    if spikes == "matched":
        return matched_spikes(s)
    d = s.size
    k = auto_spikes(s) if spikes == "auto" else spikes
    if k == 0:
        return None
    if k >= d:
        raise ValueError(f"spikes = {k} must be below the number of eigenvalues d = {d} (the bulk "
                         "needs at least one)")
    s = np.sort(s)[::-1]
    if s[k - 1] <= 0.0:
        raise ValueError(f"spikes = {k} but only {int(np.count_nonzero(s > 0))} eigenvalues are positive")
    if s[k - 1] == s[k]:
        raise ValueError(f"spikes = {k} cuts through equal eigenvalues ({s[k]!r} is both the smallest spike and "
                         "the largest bulk eigenvalue): choose a k at a gap")
    kappa = s[:k] / d
    rest = s[k:]
    atoms, inverse = np.unique(rest, return_inverse=True)
    weights = np.bincount(inverse, minlength=len(atoms)) / rest.size
    if not np.any(atoms > 0):
        raise ValueError(f"with spikes = {k} the bulk is all zero; the spiked theory needs a bulk with variance")
    kappa.setflags(write=False)
    return SpikeSplit(kappa=kappa, bulk=(atoms, weights), d=d, residual=float(np.sum((rest / d) ** 2)))
