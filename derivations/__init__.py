"""Learning curves derived by the engine (:mod:`pencils` -> :mod:`numerics`):

* three classic problems and the published closed forms they are checked against
  (:mod:`derivations.classic`, :mod:`derivations.closed_forms`);
* the DSM learning curves for any ``m`` (:mod:`derivations.dsm`: traces and derived
  equations; :mod:`derivations.theory`: the object returned by :func:`pencils.build`;
  :mod:`derivations.peaks`: interpolation peaks and the ridgeless limit).
"""
from . import closed_forms
from .classic import (marchenko_pastur_stieltjes, random_features_risk, ridge_risk, solver,
                      system)
from .dsm import dsm_equations, dsm_system, dsm_traces
from .theory import DSMTheory, Errors, parse_m

__all__ = ["marchenko_pastur_stieltjes", "ridge_risk", "random_features_risk", "system", "solver",
           "closed_forms", "dsm_traces", "dsm_system", "dsm_equations", "DSMTheory", "Errors", "parse_m"]
