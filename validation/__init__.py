"""Monte Carlo ground truth: finite-``d`` random-features scores trained by DSM.

* :func:`simulate` -- seed-averaged test/train errors of the true activation or of its
  Gaussian-equivalent surrogate, any ``m >= 1`` and ``m = inf`` (:mod:`validation.montecarlo`);
* :func:`extrapolate` -- ``d -> inf`` estimates from several ``d`` (:mod:`validation.extrapolate`);
* :mod:`validation.moments` -- exact feature moments used for test errors and ``m = inf``.
"""
from .extrapolate import Extrapolation, LinearFit, extrapolate, fit_inverse_d
from .montecarlo import FittedScore, Problem, SimulationResult, fit_score, make_problem, parse_m, simulate

__all__ = [
    "simulate", "extrapolate", "fit_score", "make_problem", "parse_m",
    "SimulationResult", "Extrapolation", "LinearFit", "FittedScore", "Problem", "fit_inverse_d",
]

# Real image data (validation/data.py)
from .data import load_images, load_dataset, spectrum  # noqa: E402
__all__ += ["load_images", "load_dataset", "spectrum"]

# Memorised fraction of generated samples (validation/memorization.py)
from .memorization import Memorization, memorized_fraction  # noqa: E402
__all__ += ["memorized_fraction", "Memorization"]

# Sampling with a (learned) score (validation/sampling.py)
from .sampling import ScoreGrid, sample_ode, sample_sde, train_score_grid, tweedie  # noqa: E402
__all__ += ["sample_sde", "sample_ode", "train_score_grid", "ScoreGrid", "tweedie"]
