"""Exact DSM learning curves along gradient flow (``MODEL.md``, section "Training time").

Gradient flow from ``B = 0`` gives ``B^T(T) = -g_T(K) C`` with

    g_T(x) = (1 - e^{-T(x + lam)}) / (x + lam)          (entire in x; g_0 = 0, g_inf = 1/(x + lam)),

``K`` the (engine-normalised) Gram matrix of the training features and ``C`` the
feature-target cross moment: in the notation of :mod:`derivations.dsm`, ``K = F^T F / N``,
``C = F^T Z_e / N`` for finite ``m`` (``N = psi_n m``, Helmert-rotated rows) and
``K = Ubar``, ``C = Vbar`` for ``m = inf``.  With ``U, V`` the test moments of
:mod:`derivations.dsm` (``tr = (1/d) Tr``):

    E_test(T)  = Delta + tr(B U B^T) + 2 sqrt(Delta) tr(B V),
    E_train(T) = 1 + tr(B K B^T) + 2 tr(B C)

(the second is :mod:`derivations.dsm`'s train error rewritten with ``F^T F = N K``,
``G = N C``).  **Contour integrals.**  With the resolvent ``R(z) = (K - z)^{-1}`` and a
counter-clockwise contour ``Gamma`` enclosing the non-zero spectrum of ``K``,
``h(K) C = -(1/2 pi i) oint h(z) R(z) C dz`` for ``h`` analytic inside ``Gamma``, so

    E_test  = Delta + (1/2 pi i)^2 oint oint g(z1) g(z2) q(z1, z2) dz1 dz2 + 2 sqrt(Delta) (1/2 pi i) oint g(z) s1(z) dz,
    E_train = 1 + (1/2 pi i) oint [2 g(z) - z g(z)^2] s2(z) dz,

    s1(z) = tr(C^T R(z) V),   s2(z) = tr(C^T R(z) C),   q(z1, z2) = tr(C^T R(z1) U R(z2) C).

``s1, s2, q`` are rational expressions of the Gaussian matrices: the engine derives their
fixed-point equations (:func:`pencils.freeprob.equations`), reduces them
(:func:`reduced_time_system`: ``s1, s2, tr R`` share one core; ``q``; the moments) and solves
them at complex ``z`` (:class:`numerics.reduced.ReducedSolver`: the compiled kernel's complex
library, or the numpy path without a compiler); nothing here is a
hand-typed fixed-point equation.  The raw systems (:func:`time_system`, ``ENGINE = "raw"``)
remain the reference: they re-solve the points the reduced core flags or whose rounding
estimate is large, and they give the bulk edges (see :func:`_solve_many`, :func:`_bulk_edges`).  The train
error needs one resolvent only (``K`` commutes with ``g(K)``); the test error needs the
two-resolvent trace ``q`` because ``U`` is not a function of ``K``.  The same contour
integrals at ``T = inf`` give the ridge curves (``lam > 0``) or the minimum-norm
interpolator (``lam = 0``); at ``T = 0``, ``B = 0``: ``E_test = Delta``, ``E_train = 1``.
For small ``T``, ``B^T = -T C + O(T^2)``, so

    dE_test/dT(0) = -2 sqrt(Delta) tr(C^T V),     dE_train/dT(0) = -2 tr(C^T C)

(the gradient of the errors at ``B = 0`` along the flow direction ``-C``).

**The atom at 0.**  When ``p > N`` (finite ``m``) ``K`` has an atom at 0, but
``C = F^T Z_e / N`` lies in the range of ``K``, so ``s1, s2, q`` carry no weight at 0:
``Gamma`` only has to enclose the bulk ``[x_-, x_+]`` (``x_- > 0`` away from ``p = N``)
and may cross the real axis in ``(0, x_-)``.  For ``m = inf``, ``K = Ubar >= mu_f^2`` has an
atom at ``mu_f^2`` when ``p > n + d`` (``Ubar - mu_f^2`` has rank ``n + d``), which the
contour must enclose (``x_-`` is taken ``<= mu_f^2``).  A check (:func:`errors_at_time`) verifies that
``-(1/2 pi i) oint tr R(z) dz`` (the enclosed mass) plus the atom at 0
(``lim_{z -> 0-} -z tr R(z)``) equals ``tr I_p = psi_p``: no part of the spectrum is missed.

**Contour and quadrature.**  The bulk spans several decades when ``p`` is close to ``N``,
so the contour is an ellipse in ``w = log z``: with foci ``w_lo = log(x_-/kappa)``,
``w_hi = log(kappa x_+)`` (``x_-, x_+`` the bulk edges read off the density of ``K``, margin
``kappa``), centre ``c``, half focal distance ``f``,

    z(theta) = exp(c + f cos(theta - i rho)),   theta_k = 2 pi k / N_nodes,

and the (spectrally accurate) trapezoid rule in ``theta``.  ``|Im w| <= f sinh(rho) < pi/2`` keeps
``Re z > 0`` on the contour, so ``|e^{-T z}| <= 1`` there and on the strip of analyticity
``|Im theta| < a`` used by the error bound (``f sinh(rho + a) < pi/2``; ``a < rho`` keeps the
shifted contour off the bulk): the trapezoid error is ``O(e^{-a N_nodes})`` *uniformly in
T* (Trefethen and Weideman 2014, "The exponentially convergent trapezoidal rule", SIAM Rev.
56, thm. 2.2; the log map is the standard device for multi-scale spectra, Hale, Higham and
Trefethen 2008, "Computing A^alpha, log(A) and related matrix functions by contour
integrals").  The default ``rho`` balances both conditions (``f sinh(2 rho) = 0.9 pi/2``).
Each value carries a quadrature error estimate: the difference between the rule on
``N_nodes`` and on the nested ``N_nodes/2`` nodes (with geometric convergence the error
of the finer rule is about the square of that, relative, so the estimate is conservative).
One grid of trace values serves every ``T`` and every ``lam``: ``lam`` does not enter ``K``.
Values whose estimate exceeds ``tol`` (or whose traces did not converge, or whose mass
check failed) are NaN and flagged.

**Timescales.**  :func:`generalisation_time` is the ``T`` of minimal ``E_test`` on a log grid
(refined by a parabola in ``log T``); :func:`memorisation_time` is the first ``T`` at which
``E_train`` falls below ``fraction * a_t^2`` (interpolated in ``log T``).

**Gradient-descent steps.**  The objective of ``MODEL.md`` in terms of ``A`` is
``L(A) = (1/d)[(1/N)||Phi B^T + Z||^2 + lam ||B||^2]`` with ``B = sqrt(Delta) A / sqrt(p)``.
Its gradient in ``A`` is ``(sqrt(Delta)/sqrt(p)) dL/dB``, and ``dL/dB^T = (2/d)[(K + lam) B^T + C]``
(``K, C`` here in units of the un-normalised ``Phi``).  Plain gradient descent
``A <- A - eta dL/dA`` therefore moves ``B^T`` by ``-(2 eta Delta / (d p)) [(K + lam) B^T + C]``
per step, i.e. by the flow of ``MODEL.md`` over ``dT = 2 eta Delta / (d p)``: ``k`` steps of
learning rate ``eta`` are ``T = 2 eta Delta k / (d p)`` (for ``eta`` small enough that the
discrete map tracks the flow, ``eta (x_max + lam) 2 Delta / (d p) << 1``); see
:func:`steps_to_time`.

The package: :mod:`.traces` (derivation and solution of the traces), :mod:`.contour` (the
filter, the contours, the quadrature), :mod:`.curves` (:func:`errors_at_time`) and
:mod:`.timescales` (generalisation and memorisation times, steps and flow time).
"""
from .contour import Contour, g_T
from .curves import TimeErrors, errors_at_time, flow_gradient_at_zero
from .timescales import (DEFAULT_TIMES, Timescale, generalisation_time, memorisation_time, steps_to_time,
                         time_to_steps)
from .traces import GROUPS, TRACES, flow_matrices, reduced_time_system, time_system, time_traces

__all__ = ["flow_matrices", "time_traces", "time_system", "reduced_time_system", "TimeErrors", "errors_at_time",
           "Timescale", "generalisation_time", "memorisation_time", "flow_gradient_at_zero", "steps_to_time",
           "time_to_steps", "g_T", "Contour", "DEFAULT_TIMES", "GROUPS", "TRACES"]
