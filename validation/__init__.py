"""Monte Carlo ground truth, real images and the ``dsm-curves`` command, in three wings:

* :mod:`validation.simulation` -- finite-``d`` random-features scores trained by DSM:
  :func:`simulate` (seed-averaged test/train errors of the true activation or of its
  Gaussian-equivalent surrogate, any ``m >= 1`` and ``m = inf``), :func:`fit_score`,
  :func:`extrapolate` (``d -> inf`` from several ``d``), the exact feature moments, Dask sweeps;
* :mod:`validation.images` -- real image data (:func:`load_images`, :func:`spectrum`), sampling
  with a learned score (:func:`sample_sde`, :func:`sample_ode`, :func:`tweedie`), the memorised
  fraction of generated samples and the real-data experiments with their plots;
* :mod:`validation.cli` -- the ``dsm-curves`` command and its subcommands (the old
  ``python -m validation.<tool>`` commands are aliases of them; :mod:`validation.montecarlo`
  is an alias of the simulation modules).

The public names are imported on first access (PEP 562), so ``import validation`` (and
``python -m validation.<tool>``) loads only what is used.
"""
from pencils._lazy import lazy_names

#: public name -> module that defines it
_LAZY = {
    **dict.fromkeys(["Extrapolation", "LinearFit", "extrapolate", "fit_inverse_d"],
                    "validation.simulation.extrapolate"),
    **dict.fromkeys(["Problem", "make_problem", "parse_m"], "validation.simulation.problem"),
    "FittedScore": "validation.simulation.training",
    "fit_score": "validation.simulation.testerror",
    **dict.fromkeys(["SimulationResult", "simulate"], "validation.simulation.driver"),
    **dict.fromkeys(["load_images", "load_dataset", "spectrum"], "validation.images.data"),
    **dict.fromkeys(["Memorization", "memorized_fraction"], "validation.images.memorization"),
    **dict.fromkeys(["ScoreGrid", "sample_ode", "sample_sde", "train_score_grid", "tweedie"],
                    "validation.images.sampling"),
}

__all__ = [
    "simulate", "extrapolate", "fit_score", "make_problem", "parse_m",
    "SimulationResult", "Extrapolation", "LinearFit", "FittedScore", "Problem", "fit_inverse_d",
    "load_images", "load_dataset", "spectrum",
    "memorized_fraction", "Memorization",
    "sample_sde", "sample_ode", "train_score_grid", "ScoreGrid", "tweedie",
]


lazy_names(__name__, _LAZY)
