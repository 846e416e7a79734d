"""Alias of :mod:`validation.simulation` under its former name (``validation.montecarlo.fit_on_data``
and friends keep working; the code is in :mod:`validation.simulation.problem`, ``training``,
``testerror`` and ``driver``)."""
from validation.simulation.driver import SimulationResult, simulate  # noqa: F401
from validation.simulation.problem import Coefficients, Covariance, Problem, make_problem, parse_m  # noqa: F401
from validation.simulation.testerror import fit_score  # noqa: F401
from validation.simulation.training import (CHUNK_ROWS, PROGRESS_AFTER, FittedScore, available_memory,  # noqa: F401
                                            fit_on_data, flow_filter, memory_estimate)
