"""Activations and their Gaussian-equivalence coefficients.

First step of the pipeline (activation -> Gaussian-equivalence numbers -> ...).
For an activation ``rho`` and standard Gaussians ``g, g'`` of correlation ``c``
(MODEL.md, "Gaussian equivalence"):

* ``mu0 = E rho(g)``, ``mu1 = E[g rho(g)]``, ``second_moment = E rho(g)^2``,
  ``mu_star_sq = E rho(g)^2 - mu0^2 - mu1^2``;
* the dual kernel ``K(c) = E[rho(g) rho(g')] = sum_k a_k^2 c^k / k!`` with the Hermite
  coefficients ``a_k = E[rho(g) He_k(g)]`` (Mehler 1866; O'Donnell 2014, Prop. 11.31);
* ``mu_s_sq(a_t^2) = K(a_t^2) - mu0^2 - mu1^2 a_t^2``, the nonlinear variance shared by
  two noisy copies of one data point, and ``mu_f_sq = mu_star_sq - mu_s_sq``;
* ``gaussian_moments(m, s, J)``: ``alpha_j(m, s) = E[rho(m + s xi) He_j(xi)]``, the
  coefficients of the bivariate Mehler expansion used by the Monte Carlo code.

How each number is obtained
---------------------------
* Closed forms (``relu``, ``abs``, ``erf``, ``gelu``, polynomials): exact sympy forms,
  evaluated at any precision; Gaussian moments in closed form (see
  :mod:`pencils.activation.closed_forms` for the derivations and references).
* Everything else (``tanh``, ``sigmoid``, ``softplus``, ``silu``, sympy expressions,
  Python callables): the high-precision numbers come from adaptive composite
  Gauss--Legendre quadrature in mpmath at ``dps`` digits (panels of width one
  aligned on the integers, split at every known kink, bisected until the two
  halves agree); the float kernel and the Gaussian moments from the trapezoidal
  rule on a nested grid in ``xi`` (geometrically convergent for analytic
  integrands, Trefethen & Weideman 2014, SIAM Rev. 56:385), refined per input
  until successive levels agree.  Results that do not reach their tolerance are
  returned with a :class:`QuadratureWarning` naming the accuracy reached.

Kinks: for activations with kinks (known for sympy expressions, located numerically for
callables) the kernel ``K(c)`` and the Gaussian moments are integrated by piecewise
Gauss--Legendre with breakpoints at the kinks (in two dimensions the inner breakpoints move
with the outer variable), so every panel integrand is smooth; the error estimate compares
two rules (three panel widths for callables, whose kinks may be missed), see
:meth:`Activation.kernel_error`.  Structured data: :meth:`Activation.equivalence_constants`
gives the constants at any pre-activation variance and covariance (MODEL.md).

High-precision API: :meth:`Activation.coefficients_mp`,
:meth:`Activation.hermite_coefficients_mp`, :meth:`Activation.kernel_mp` (mpmath
numbers at ``dps`` digits, default 30; exact for closed forms).  For a quadrature-based
activation ``kernel_mp`` sums the Mehler series when ``|c|`` is small enough and falls
back to a two-dimensional quadrature (seconds) otherwise.

Layout: :mod:`~pencils.activation.spec` turns a name, sympy expression or callable into an
:class:`Activation` (:mod:`~pencils.activation.core`), whose structured-data constants and
Gaussian moments are the mixins :mod:`~pencils.activation.equivalence` and
:mod:`~pencils.activation.gaussian_moments`; the quadrature engines are in
:mod:`~pencils.activation.quadrature` (float) and :mod:`~pencils.activation.mp_quadrature`
(mpmath), the closed forms of the named activations in :mod:`~pencils.activation.closed_forms`
and the tolerances and argument checks in :mod:`~pencils.activation.common`.

Float accuracy: ``mu0, mu1, second_moment, mu_star_sq`` and ``kernel`` to about
``1e-15`` absolute (tested to ``1e-13`` against mpmath); ``gaussian_moments`` to
``1e-13 sqrt(j!)`` times the scale of ``rho`` (tested to ``1e-12``).  The float paths
call BLAS for many mid-sized products: on a machine whose cores are busy,
``OPENBLAS_NUM_THREADS=1`` is several times faster than the default thread pool.

>>> relu = activation("relu")
>>> round(relu.mu1, 12), round(relu.second_moment, 12)
(0.5, 0.5)
>>> relu.symbolic.kernel
(c*(pi - acos(c)) + sqrt(1 - c**2))/(2*pi)
>>> bool(abs(relu.kernel(1.0) - relu.second_moment) < 1e-15)
True
"""
from __future__ import annotations

# A thin re-export.  Each submodule imports only those listed after it: spec, core,
# equivalence and gaussian_moments, quadrature and mp_quadrature, common, closed_forms.
from .closed_forms import SymbolicForms
from .closed_forms import symbols as _symbols
from .common import ActivationSpecError, QuadratureWarning
from .core import Activation, MpCoefficients
from .spec import KNOWN_ACTIVATIONS as _KNOWN_ACTIVATIONS
from .spec import activation

# Importable from here as from the former single module (validation.main reads ALIASES).
from .closed_forms import ALIASES, MAX_ORDER, NAMED, hermite_functions, sqrt_factorials  # noqa: F401
from .common import FLOAT_TOL, KERNEL_TOL, MEHLER_MP_MAX_ORDER, RANGE_SLACK  # noqa: F401

#: Canonical names accepted by :func:`activation` (case-insensitive); the tuple of
#: :mod:`~pencils.activation.spec`, assigned here so that the API page lists it.
KNOWN_ACTIVATIONS: tuple[str, ...] = _KNOWN_ACTIVATIONS

__all__ = [
    "Activation", "activation", "KNOWN_ACTIVATIONS", "MpCoefficients", "SymbolicForms",
    "QuadratureWarning", "ActivationSpecError", "X", "C",
]


def __getattr__(name: str):
    # PEP 562: the symbols X and C without importing sympy at import time
    if name in ("X", "C"):
        return _symbols()[name == "C"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {"X", "C"})
