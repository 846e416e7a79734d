"""Monte Carlo ground truth: train finite-``d`` random-features scores by DSM.

Everything follows ``MODEL.md``: data ``x_i ~ N(0, I_d)``, noisy inputs
``y_ij = a_t x_i + sqrt(Delta_t) z_ij`` with ``a_t = e^{-t}``, ``Delta_t = 1 - e^{-2t}``,
features ``phi(y) = rho(W y / sqrt(d))`` and the ridge-regularised DSM minimiser

    B^T = -(Phi^T Phi / N + lam I_p)^{-1} Phi^T Z / N,        N = n m,

with errors

    E_train = ||Phi B^T + Z||_F^2 / (N d),
    E_test  = (1/d) E_y ||B phi(y) + sqrt(Delta) y||^2,    DSM test loss = E_test + a_t^2.

Choices made here (documented for users):

* ``m`` finite: the ``N x p`` feature matrix is streamed in chunks of data points.
  When ``p <= N`` the primal normal equations (``p x p``) are accumulated, so memory
  is ``O(p^2 + chunk p)``; otherwise the dual (``N x N`` kernel) form is used,
  ``B^T = -Phi^T (Phi Phi^T + lam N I)^{-1} Z`` and ``Phi B^T + Z = lam N (Phi Phi^T + lam N)^{-1} Z``.
* ``m = inf``: the noise average is computed exactly, not sampled: the surrogate in
  closed form, the true activation with the Mehler expansion of
  :mod:`validation.simulation.moments` (truncation error bounded and reported).
* The test error is computed exactly given ``(W, B)`` (no test samples): see
  :mod:`validation.simulation.moments`.
* The Gaussian-equivalent surrogate (``surrogate=True``) uses MODEL.md's features
  ``phi_ij = mu0 + mu1 W y_ij / sqrt(d) + mu_s xi_i + mu_f xi_ij`` for training and
  ``mu0 + mu1 W y / sqrt(d) + mu_* xi`` for testing.
* Seeds: seed ``s`` drives ``numpy.random.default_rng(SeedSequence([s, d, n, p]))``;
  draws are independent of the chunk size, so a result is reproducible from
  ``(activation, d, psi_n, psi_p, t, lam, m, seed, surrogate)``.
* Given data: :func:`fit_on_data` trains on an ``(n, d)`` array (real data); :func:`fit_score`
  draws ``x ~ N(0, Sigma)`` and calls it, then adds the exact test error.
* Structured data (``covariance=``): ``x = Sigma^{1/2} g``; the test moments use the
  pre-activation covariance ``W S_t W^T / d``, ``S_t = a_t^2 Sigma + Delta_t I``, and
  ``E[phi y^T] S_t^{-1} = E rho'(h_k) W_k / sqrt(d)`` (Stein), so
  ``E_test = (1/d)[tr(B U B^T) + 2 sqrt(Delta) tr(B V)] + Delta tr(S_t^{-1}) / d``.
* Training time (``train_time=T``): ``B^T(T) = -g_T(K) Phi^T Z / N`` with
  ``g_T(x) = (1 - e^{-T(x + lam)})/(x + lam)`` from the eigendecomposition of the primal
  ``K = Phi^T Phi / N`` (or, for ``p > N``, of ``Phi Phi^T / N`` with the push-through
  identity ``g_T(Phi^T Phi/N) Phi^T = Phi^T g_T(Phi Phi^T/N)``).

Modules:

* :mod:`~validation.simulation.problem` -- parameters, data covariance, Gaussian-equivalence
  numbers, random streams of an instance, the ``m`` label and the numeric checks;
* :mod:`~validation.simulation.training` -- :func:`fit_on_data` (training on given data) and
  the memory estimate; :mod:`~validation.simulation.testerror` -- :func:`fit_score` (one
  instance with its exact test error); :mod:`~validation.simulation.driver` -- :func:`simulate`;
* :mod:`~validation.simulation.moments` -- exact feature moments (test errors, ``m = inf``);
* :mod:`~validation.simulation.extrapolate` -- ``d -> inf`` fits; :mod:`~validation.simulation.sweep`
  -- sweeps, serially or on Dask; :mod:`~validation.simulation.reference` -- a straightforward
  reference instance; :mod:`~validation.simulation.spectra` -- the spectra of the structured
  validation table; :mod:`~validation.simulation.spiked` -- the spiked-covariance family and its
  conditional Gaussian-equivalent surrogate (issue 17).

The names below are imported on first access (``import validation.simulation`` loads no scipy).
"""
from pencils._lazy import lazy_names

#: public name -> submodule that defines it
_LAZY = {
    **dict.fromkeys(["Coefficients", "Covariance", "Problem", "make_problem", "instance_streams", "m_label",
                     "check_reals", "parse_m"], "problem"),
    **dict.fromkeys(["FittedScore", "fit_on_data", "flow_filter", "memory_estimate", "CHUNK_ROWS"], "training"),
    "fit_score": "testerror",
    **dict.fromkeys(["SimulationResult", "simulate"], "driver"),
    **dict.fromkeys(["Extrapolation", "LinearFit", "extrapolate", "fit_inverse_d"], "extrapolate"),
    **dict.fromkeys(["simulate_spiked", "spiked_eigenvalues", "ConditionalCoefficients"], "spiked"),
}

__all__ = sorted(_LAZY)

lazy_names(__name__, _LAZY)
