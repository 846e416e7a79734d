"""``pencils.build(activation)``: the entry point to the DSM learning curves of an activation.

The derivation itself (traces -> pencils -> fixed-point equations -> compiled solvers)
lives in :mod:`derivations.dsm` and :mod:`derivations.theory`; this module only joins the
activation of :mod:`pencils.activation` to it.  The import is deferred because
``derivations`` builds on ``pencils``.
"""
from __future__ import annotations

from .activation import activation as _activation


def build(activation, covariance=None):
    """Derive (or load from the cache) the DSM learning curves of ``activation``.

    ``activation``: a name (``pencils.KNOWN_ACTIVATIONS``), a sympy expression in one
    symbol, a Python callable or an :class:`pencils.Activation`.  Returns a
    :class:`derivations.theory.DSMTheory` with ``coefficients``, ``equations(m)``,
    ``errors(psi_n, psi_p, t, lam, m, precision=None)``, ``peaks(...)`` and ``ridgeless(...)``.

    ``covariance``: the data covariance ``Sigma`` (MODEL.md, "Structured data") through its
    spectrum: ``None`` (isotropic), a 1-D array of eigenvalues (equal weights), a pair
    ``(eigenvalues, weights)`` or a symmetric PSD matrix
    (:func:`derivations.theory.spectral_measure`).  The equations then hold averages over
    the spectrum, evaluated as weighted sums (cost linear in the number of atoms).
    """
    from derivations.theory import DSMTheory

    return DSMTheory(_activation(activation), covariance)
