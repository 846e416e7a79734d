"""Test configuration: deterministic hypothesis runs without deadlines (CI machines are shared).

BLAS is limited to one thread: the batched small-matrix work of the solvers and the
Monte Carlo runs are 3-7x slower when two BLAS threads fight over two shared cores.
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, derandomize=True, max_examples=25,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("thorough", deadline=None, max_examples=300)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
