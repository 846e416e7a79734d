"""The spectra of the structured-data validation (MODEL.md "Structured data"): the ``d``
eigenvalues a simulation at dimension ``d`` uses (:func:`eigenvalues`) and the spectral measure
``nu`` the theory takes (:func:`measure`), by name (:data:`SPECTRA`).

Spectra (MODEL.md "Structured data"; ``tau = E_nu[s] = tr Sigma / d``):

* ``subspace(kappa, s)``: ``nu = kappa delta_s + (1 - kappa) delta_0`` (data on a
  ``D = kappa d``-dimensional subspace with per-direction variance ``s``; ``tau = kappa s``).
  At dimension ``d``: ``round(kappa d)`` eigenvalues ``s``, the rest 0.
* ``two-level(s1, s2, w)``: ``nu = w delta_s1 + (1 - w) delta_s2``; at ``d``: ``round(w d)``
  eigenvalues ``s1``, the rest ``s2``.
* ``power law``: the quantile function ``s(u) = C (u + u0)^(-alpha)``, ``u in (0, 1]``,
  ``alpha = 1``, ``u0 = 1/50`` (a ``k^-1`` law with an offset ``k0 = d/50``, bounded:
  ``s_max / s_min = 51``), ``C`` such that ``tau = 1``.  At ``d``: the ``d`` midpoint
  quantiles ``s((k - 1/2)/d)`` rescaled to ``tau = 1``; the theory uses the same rule with
  ``4096`` atoms (midpoint-rule error ``O(1/N^2)``; ``4096`` and ``8192`` atoms agree to
  better than ``1e-7`` on every point of the table).
* ``mnist``: the ``784`` eigenvalues of the preprocessed pool covariance of the file given by
  ``--mnist`` (:func:`validation.load_images`, :func:`validation.spectrum`; ``tau = 1``).  The
  theory uses all ``784`` atoms.  The simulation at ``d = 784`` uses them as they are, at
  ``d = 392`` and ``196`` the means of consecutive pairs and quadruples of the sorted
  eigenvalues (the quantile function averaged over ``d`` equal bins: same ``tau``, converging
  to ``nu`` as ``d`` grows).

"""
from __future__ import annotations

import numpy as np

#: power-law shape: s(u) = C (u + U0)^(-ALPHA) on u in (0, 1]
ALPHA, U0 = 1.0, 1.0 / 50
#: atoms of the power-law measure given to the theory
POWER_LAW_ATOMS = 16384

#: spectrum name -> (kind, parameters)
SPECTRA = {
    "subspace κ=0.25 s=4": ("subspace", (0.25, 4.0)),      # tau = 1
    "subspace κ=0.5 s=2": ("subspace", (0.5, 2.0)),        # tau = 1
    "subspace κ=0.25 s=1": ("subspace", (0.25, 1.0)),      # tau = 0.25
    "subspace κ=0.5 s=3": ("subspace", (0.5, 3.0)),        # tau = 1.5
    "two-level 0.2/1.8": ("two-level", (0.2, 1.8, 0.5)),   # tau = 1
    "two-level 0.1/4.6": ("two-level", (0.1, 4.6, 0.8)),   # tau = 1
    "two-level 0.5/3": ("two-level", (0.5, 3.0, 0.5)),     # tau = 1.75
    "power law": ("power", ()),                             # tau = 1
    "mnist": ("mnist", ()),                                 # tau = 1
}


def power_law(n: int) -> np.ndarray:
    """``n`` midpoint quantiles ``s((k - 1/2)/n)`` of ``s(u) = C (u + u0)^(-alpha)``, mean 1 (descending).

    >>> s = power_law(100)
    >>> round(float(s.mean()), 12), bool(np.all(np.diff(s) < 0)), round(float(s[0] / s[-1]), 1)
    (1.0, True, 40.6)
    """
    if int(n) < 1:
        raise ValueError(f"the number of atoms must be >= 1, got {n}")
    u = (np.arange(int(n)) + 0.5) / int(n)
    s = (u + U0) ** (-ALPHA)
    return s / s.mean()


def coarse_grain(eig, d: int) -> np.ndarray:
    """``d`` means of the sorted eigenvalues ``eig`` over ``d`` equal bins (``len(eig)`` a multiple of ``d``).

    The quantile function of the empirical measure averaged over each bin: the mean (``tau``)
    is kept, and the measure tends to that of ``eig`` as ``d -> len(eig)``.

    >>> coarse_grain([4.0, 1.0, 3.0, 0.0], 2).tolist()
    [3.5, 0.5]
    """
    eig = np.sort(np.asarray(eig, dtype=np.float64))[::-1]
    if int(d) < 1 or eig.size % int(d):
        raise ValueError(f"d = {d} must divide the number of eigenvalues {eig.size}")
    return eig.reshape(int(d), -1).mean(axis=1)


def _two_level_count(w: float, d: int) -> int:
    return int(round(w * d))


def eigenvalues(name: str, d: int, mnist=None) -> np.ndarray:
    """The ``d`` eigenvalues of ``Sigma`` that the simulation at dimension ``d`` uses for spectrum ``name``.

    ``mnist`` is the 784-vector of MNIST's eigenvalues (needed for ``name == "mnist"``).

    >>> eigenvalues("subspace κ=0.25 s=4", 8).tolist()
    [4.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    """
    if name not in SPECTRA:
        raise ValueError(f"unknown spectrum {name!r}; known: {sorted(SPECTRA)}")
    kind, par = SPECTRA[name]
    d = int(d)
    if kind == "subspace":
        kappa, s = par
        D = int(round(kappa * d))
        return np.r_[np.full(D, s), np.zeros(d - D)]
    if kind == "two-level":
        s1, s2, w = par
        k = _two_level_count(w, d)
        return np.r_[np.full(k, s1), np.full(d - k, s2)]
    if kind == "power":
        return power_law(d)
    if mnist is None:
        raise ValueError("the MNIST spectrum needs the eigenvalues (pass --mnist PATH)")
    return coarse_grain(mnist, d)


def measure(name: str, mnist=None):
    """The spectral measure ``nu`` of spectrum ``name`` as ``pencils.build`` takes it.

    >>> measure("two-level 0.1/4.6")
    (array([0.1, 4.6]), array([0.8, 0.2]))
    """
    if name not in SPECTRA:
        raise ValueError(f"unknown spectrum {name!r}; known: {sorted(SPECTRA)}")
    kind, par = SPECTRA[name]
    if kind == "subspace":
        kappa, s = par
        return np.array([s, 0.0]), np.array([kappa, 1.0 - kappa])
    if kind == "two-level":
        s1, s2, w = par
        return np.array([s1, s2]), np.array([w, 1.0 - w])
    if kind == "power":
        return power_law(POWER_LAW_ATOMS)
    if mnist is None:
        raise ValueError("the MNIST spectrum needs the eigenvalues (pass --mnist PATH)")
    return np.asarray(mnist, dtype=np.float64)


def tau(name: str, mnist=None) -> float:
    """``tau = E_nu[s]`` of spectrum ``name``."""
    nu = measure(name, mnist)
    if isinstance(nu, tuple):
        return float(np.dot(*nu))
    return float(np.mean(nu))
