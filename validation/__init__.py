"""Monte Carlo ground truth: finite-``d`` random-features scores trained by DSM.

* :func:`simulate` -- seed-averaged test/train errors of the true activation or of its
  Gaussian-equivalent surrogate, any ``m >= 1`` and ``m = inf`` (:mod:`validation.montecarlo`);
* :func:`extrapolate` -- ``d -> inf`` estimates from several ``d`` (:mod:`validation.extrapolate`);
* :mod:`validation.moments` -- exact feature moments used for test errors and ``m = inf``;
* real image data (:mod:`validation.data`), the memorised fraction of generated samples
  (:mod:`validation.memorization`) and sampling with a learned score (:mod:`validation.sampling`).

The public names are imported on first access (PEP 562), so ``import validation`` (and
``python -m validation.<tool>``) loads only what is used.
"""
from pencils._lazy import lazy_names

#: public name -> submodule that defines it
_LAZY = {
    **dict.fromkeys(["Extrapolation", "LinearFit", "extrapolate", "fit_inverse_d"], "extrapolate"),
    **dict.fromkeys(["FittedScore", "Problem", "SimulationResult", "fit_score", "make_problem",
                     "parse_m", "simulate"], "montecarlo"),
    **dict.fromkeys(["load_images", "load_dataset", "spectrum"], "data"),
    **dict.fromkeys(["Memorization", "memorized_fraction"], "memorization"),
    **dict.fromkeys(["ScoreGrid", "sample_ode", "sample_sde", "train_score_grid", "tweedie"], "sampling"),
}

__all__ = [
    "simulate", "extrapolate", "fit_score", "make_problem", "parse_m",
    "SimulationResult", "Extrapolation", "LinearFit", "FittedScore", "Problem", "fit_inverse_d",
    "load_images", "load_dataset", "spectrum",
    "memorized_fraction", "Memorization",
    "sample_sde", "sample_ode", "train_score_grid", "ScoreGrid", "tweedie",
]


lazy_names(__name__, _LAZY)
