"""The table of ``docs/crosschecks.md`` (a script, not a test).

At the 100 seeded points of ``tests/test_urfin_crosscheck.py`` (relu, tanh, erf in turn), the
relative differences between the engine's finite-``m`` errors and the two-scalar reference
(:mod:`derivations.two_scalar`), over the 200 values (test and train):

* ``errors(...)`` with its default accuracy (``rtol=1e-8``, ``atol=1e-10``);
* ``errors(..., rtol=1e-12, atol=0)``;
* with ``--mp``: ``errors(..., precision=30)`` against the reference at 40 digits, both with
  the activation's mpmath constants (slow: tanh's kernel at 40 digits takes seconds a point).

Also the reference's time for the 100 points at 30 digits.
Run: ``python benchmarks/crosscheck_two_scalar.py [--mp]``.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import mpmath
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from test_urfin_crosscheck import ACTIVATIONS, _points, _reference

import pencils
from pencils.activation import QuadratureWarning


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mp", action="store_true", help="also compare precision=30 (slow for tanh)")
    args = parser.parse_args()
    warnings.simplefilter("ignore", QuadratureWarning)
    pts = _points(seed=16, count=100)
    which = np.arange(100) % len(ACTIVATIONS)
    rows: dict = {"default": [], "rtol=1e-12": [], "precision=30": []}
    ref_time = 0.0
    for k, name in enumerate(ACTIVATIONS):
        theory = pencils.build(name)
        sel = np.nonzero(which == k)[0]
        grid = {key: val[sel] for key, val in pts.items()}
        default, tight = theory.errors(**grid), theory.errors(**grid, rtol=1e-12, atol=0.0)
        exact = theory.errors(**grid, precision=30) if args.mp else None
        c = theory.coefficients.at(grid["t"])
        for j in range(len(sel)):
            point = {key: val[j] for key, val in grid.items()}
            consts = (float(c["mu1"][j]), float(c["mu_s"][j]) ** 2, float(c["mu_f"][j]) ** 2,
                      float(c["mu_star"][j]) ** 2)
            start = time.perf_counter()
            ref = _reference(point, consts, dps=30)
            ref_time += time.perf_counter() - start
            for q in ("test", "train"):
                r = float(ref[q])
                rows["default"].append(abs(getattr(default, q)[j] - r) / abs(r))
                rows["rtol=1e-12"].append(abs(getattr(tight, q)[j] - r) / abs(r))
            if exact is not None:
                mp = theory.mp_params(point["psi_n"], point["psi_p"], point["t"], point["lam"], float(point["m"]), 40)
                with mpmath.workdps(40):
                    ref40 = _reference(point, (mp["mu1"], mp["mu_s"] ** 2, mp["mu_f"] ** 2, mp["mu_star"] ** 2), dps=40)
                    for q in ("test", "train"):
                        rows["precision=30"].append(float(abs(getattr(exact, q)[j] - ref40[q]) / abs(ref40[q])))
    for label, diffs in rows.items():
        if diffs:
            diffs = np.array(diffs)
            print(f"{label:>13}: max {diffs.max():.2e}  median {np.median(diffs):.2e}  ({diffs.size} values)")
    print(f"reference, 100 points at 30 digits: {ref_time:.2f} s")


if __name__ == "__main__":
    main()
