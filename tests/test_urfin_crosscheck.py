"""The engine's finite-``m`` DSM curves against an independent two-scalar derivation
(:mod:`derivations.two_scalar`: anisotropic deterministic equivalent given ``W``, then
Marchenko-Pastur; no pencil, no compiled solver).  This is the cross-check that issue 16
asks for against Urfin, Bonnaire, Biroli and Mézard's two-scalar equations; their text was
not available, so the reference is our own derivation of the same two-scalar form."""
from __future__ import annotations

import mpmath
import numpy as np
import pytest

import pencils
from derivations.two_scalar import finite_m_errors

ACTIVATIONS = ("relu", "tanh", "erf")


def _points(seed: int, count: int) -> dict:
    """Log-uniform ``psi_n, psi_p, t, lam`` in ``[1e-3, 1]``, ``m`` uniform in ``2..64``."""
    rng = np.random.default_rng(seed)

    def log_u():
        return np.exp(rng.uniform(np.log(1e-3), 0.0, count))

    return {"psi_n": log_u(), "psi_p": log_u(), "t": log_u(), "lam": log_u(), "m": rng.integers(2, 65, count)}


def _reference(point: dict, consts: tuple, dps: int) -> dict:
    return finite_m_errors(point["psi_n"], point["psi_p"], point["t"], point["lam"], int(point["m"]), *consts, dps=dps)


@pytest.mark.filterwarnings("ignore::pencils.activation.QuadratureWarning")  # rtol below the coefficients' accuracy
def test_finite_m_curves_match_the_two_scalar_equations_at_100_random_points():
    """Same Gaussian-equivalence numbers on both sides (the engine's, in double), so only
    the equations are compared; the engine is asked for 1e-12 relative accuracy."""
    pts = _points(seed=16, count=100)
    which = np.arange(100) % len(ACTIVATIONS)
    worst = 0.0
    for k, name in enumerate(ACTIVATIONS):
        theory = pencils.build(name)
        sel = np.nonzero(which == k)[0]
        args = {key: val[sel] for key, val in pts.items()}
        got = theory.errors(**args, rtol=1e-12, atol=0.0)
        c = theory.coefficients.at(args["t"])
        for j in range(len(sel)):
            consts = (float(c["mu1"][j]), float(c["mu_s"][j]) ** 2, float(c["mu_f"][j]) ** 2,
                      float(c["mu_star"][j]) ** 2)
            ref = _reference({key: val[j] for key, val in args.items()}, consts, dps=30)
            for q in ("test", "train", "dsm_test_loss"):
                r = float(ref[q])
                rel = abs(float(getattr(got, q)[j]) - r) / abs(r)
                assert rel <= 1e-10, (name, q, {key: val[j] for key, val in args.items()}, r, getattr(got, q)[j])
                worst = max(worst, rel)
    assert worst > 0  # the two computations are not the same code path


def _closed_form_constants(name: str, t: float, dps: int) -> tuple:
    """``(mu1, mu_s^2, mu_f^2, mu_*^2)`` from the published kernels: the arc-cosine kernel of
    ReLU (Cho and Saul 2009) and Williams' erf kernel (1997), ``(2/pi) asin(2c/3)``."""
    with mpmath.workdps(dps + 10):
        a_sq = mpmath.exp(-2 * mpmath.mpf(t))
        if name == "relu":
            mu0, mu1 = 1 / mpmath.sqrt(2 * mpmath.pi), mpmath.mpf(1) / 2

            def kernel(c):
                return (mpmath.sqrt(1 - c ** 2) + c * (mpmath.pi - mpmath.acos(c))) / (2 * mpmath.pi)
        else:
            mu0, mu1 = mpmath.mpf(0), 2 / mpmath.sqrt(3 * mpmath.pi)

            def kernel(c):
                return 2 / mpmath.pi * mpmath.asin(2 * c / 3)
        star = kernel(mpmath.mpf(1)) - mu0 ** 2 - mu1 ** 2
        shared = kernel(a_sq) - mu0 ** 2 - mu1 ** 2 * a_sq
        return mu1, shared, star - shared, star


@pytest.mark.parametrize("name", ["relu", "erf"])
def test_precision_30_matches_the_two_scalar_equations_with_closed_form_constants(name):
    """Fully independent inputs: the reference takes its constants from the published
    kernels, the engine from its own activation code, both at 30+ digits."""
    pts = _points(seed=1616, count=8)
    theory = pencils.build(name)
    got = theory.errors(**pts, precision=30)
    for j in range(8):
        point = {key: val[j] for key, val in pts.items()}
        ref = _reference(point, _closed_form_constants(name, point["t"], 40), dps=40)
        for q in ("test", "train"):
            with mpmath.workdps(30):
                rel = abs(getattr(got, q)[j] - ref[q]) / abs(ref[q])
            assert rel < 1e-18, (name, q, point, ref[q], getattr(got, q)[j])


@pytest.mark.filterwarnings("ignore::pencils.activation.QuadratureWarning")
def test_the_same_equations_give_the_m_equal_one_curves():
    """``m = 1`` (no noise rows) is the engine's separate ``"1"`` system."""
    pts = _points(seed=61, count=6)
    pts["m"] = np.ones(6, dtype=int)
    theory = pencils.build("relu")
    got = theory.errors(**pts, rtol=1e-12, atol=0.0)
    c = theory.coefficients.at(pts["t"])
    for j in range(6):
        consts = (float(c["mu1"][j]), float(c["mu_s"][j]) ** 2, float(c["mu_f"][j]) ** 2, float(c["mu_star"][j]) ** 2)
        ref = _reference({key: val[j] for key, val in pts.items()}, consts, dps=30)
        for q in ("test", "train"):
            assert abs(float(getattr(got, q)[j]) - float(ref[q])) <= 1e-10 * abs(float(ref[q]))


def test_reference_flags_what_it_cannot_do():
    with pytest.raises(ValueError, match="mu1 = 0"):
        finite_m_errors(1, 1, 0.5, 0.1, 4, 0.0, 0.1, 0.1, 0.2)
    with pytest.raises(ValueError, match="m must be"):
        finite_m_errors(1, 1, 0.5, 0.1, 0, 0.5, 0.1, 0.1, 0.2)
    with pytest.raises(ValueError, match="m must be"):
        finite_m_errors(1, 1, 0.5, 0.1, 2.5, 0.5, 0.1, 0.1, 0.2)
