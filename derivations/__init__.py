"""Learning curves derived by the engine (:mod:`pencils` -> :mod:`numerics`):

* three classic problems and the published closed forms they are checked against
  (:mod:`derivations.classic`, :mod:`derivations.closed_forms`);
* the DSM learning curves for any ``m`` (:mod:`derivations.dsm`: traces and derived
  equations; :mod:`derivations.theory`: the object returned by :func:`pencils.build`;
  :mod:`derivations.peaks`: interpolation peaks and the ridgeless limit);
* an independent reference for the finite-``m`` curves, derived by hand as a two-scalar
  fixed point (:mod:`derivations.two_scalar`, ``docs/crosschecks.md``).

The public names are imported on first access (PEP 562): importing one submodule, say
:mod:`derivations.theory` through :func:`pencils.build`, does not import the others.
"""
from pencils._lazy import lazy_names

#: public name -> submodule that defines it (``closed_forms`` is the submodule itself)
_LAZY = {
    "closed_forms": None,
    **dict.fromkeys(["marchenko_pastur_stieltjes", "random_features_risk", "ridge_risk", "solver",
                     "system"], "classic"),
    **dict.fromkeys(["dsm_equations", "dsm_system", "dsm_traces"], "dsm"),
    **dict.fromkeys(["DSMTheory", "Errors"], "theory"),
    **dict.fromkeys(["Coefficients", "parse_m", "spectral_measure"], "model"),
}

__all__ = ["marchenko_pastur_stieltjes", "ridge_risk", "random_features_risk", "system", "solver",
           "closed_forms", "dsm_traces", "dsm_system", "dsm_equations", "DSMTheory", "Errors", "Coefficients", "parse_m",
           "spectral_measure"]


lazy_names(__name__, _LAZY)
