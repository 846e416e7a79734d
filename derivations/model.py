"""The model's vocabulary, shared by every floor above :mod:`numerics`: what an ``m`` is,
which errors a DSM system computes, the Gaussian-equivalence numbers of an activation, the
spectral measure of a data covariance, and the checks of numeric arguments.

Theory (:mod:`derivations.theory`), peaks, training time and the Monte Carlo
(:mod:`validation`) all import these from here, so that none of them imports another
for a helper.  Light on purpose: numpy and mpmath only, no sympy (a warm start loads
this module and a compiled kernel, nothing symbolic).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from pencils.activation.common import MAX_DPS, check_digits

__all__ = ["QUANTITIES", "m_kind", "parse_m", "Coefficients", "spectral_measure", "check_real_array",
           "check_precision", "MAX_PRECISION", "parse_m_array", "real_array", "complex_array", "ROUNDOFF_RTOL",
           "clip_roundoff", "covariance_eigenvalues"]

#: The errors every DSM system computes (one shared reduced system per kind of ``m``).
QUANTITIES = ("test", "train")


def m_kind(m) -> str:
    """``"1"``, ``"finite"`` (any integer ``m >= 2``, one symbolic system) or ``"inf"``."""
    if isinstance(m, str) and m in ("1", "finite", "inf"):
        return m
    if math.isinf(m):
        return "inf"
    return "1" if m == 1 else "finite"


def parse_m(m) -> float:
    """``m`` as ``int >= 1`` or ``math.inf`` (accepts ``"inf"``); ``ValueError`` otherwise.

    Any whole number up to the largest double (about ``1.8e308``) is a finite ``m``: the
    solvers take ``m`` as a double, and ``m (E_m - E_inf)`` tends to a constant (it is flat
    from ``m = 1e4`` to ``1e12``), so a large ``m`` is legitimate and lands within rounding
    of ``m = inf`` once ``1/m`` drops below the double epsilon.  A larger integer cannot be
    passed to the solvers at all and is refused (use ``"inf"``).  Booleans are refused.

    >>> parse_m("inf"), parse_m(4.0), parse_m("16"), parse_m(10**30) == 10**30
    (inf, 4, 16, True)
    """
    if isinstance(m, str):
        text = m.strip().lower()
        if text in ("inf", "infinity", "∞"):
            return math.inf
        if not text.lstrip("+").isdigit():
            raise ValueError(f"m must be an integer >= 1 or 'inf', got {m!r}")
        m = int(text)
    if isinstance(m, (bool, np.bool_)):
        raise ValueError(f"m must be an integer >= 1 or inf, got {m!r}")
    try:
        value = float(m)
    except OverflowError:
        raise ValueError(f"m must be an integer >= 1 or inf, got an integer of {len(str(m))} digits: above "
                         "the largest double (about 1.8e308), which the solvers cannot take; "
                         "use m='inf' (the difference is far below any precision)") from None
    except (TypeError, ValueError):
        raise ValueError(f"m must be an integer >= 1 or inf, got {m!r}") from None
    if isinstance(m, (complex, np.complexfloating)):
        raise ValueError(f"m must be an integer >= 1 or inf, got {m!r}")
    if math.isnan(value):
        raise ValueError("m is NaN")
    if math.isinf(value):
        if value < 0:
            raise ValueError("m must be >= 1, got -inf")
        return math.inf
    if value != int(value):
        raise ValueError(f"finite m must be an integer, got {m!r}")
    if value < 1:
        raise ValueError(f"m must be >= 1, got {m!r}")
    return int(m) if isinstance(m, (int, np.integer)) else int(value)


def parse_m_array(m) -> np.ndarray:
    """:func:`parse_m` elementwise, as a float array (``inf`` for ``m = inf``)."""
    m_arr = np.asarray(m, dtype=object)
    return np.asarray(np.vectorize(parse_m, otypes=[float])(m_arr) if m_arr.ndim else parse_m(m_arr.item()),
                      dtype=float)


#: ``precision=`` above this many digits is refused (hours of work, no use).
MAX_PRECISION = MAX_DPS


#: Relative tolerance of :func:`clip_roundoff`: an eigenvalue ``|lambda| <= ROUNDOFF_RTOL *
#: lambda_max`` of a covariance is read as round-off and set to 0.
ROUNDOFF_RTOL = 1e-10


def clip_roundoff(eigenvalues, name: str = "covariance") -> np.ndarray:
    """The eigenvalues of a covariance with their round-off set to 0; ``ValueError`` naming
    ``name`` for a non-finite, all-zero or genuinely negative spectrum.

    A spectrum computed in double precision (``numpy.linalg.eigvalsh`` of ``X^T X / N``) has
    exact-zero directions (constant pixels, rank below ``d``) at ``+-`` a few ``eps lambda_max``:
    LAPACK's backward error is ``O(d eps ||Sigma||)``, so MNIST's ``784`` eigenvalues reach
    ``-4e-15`` beside ``lambda_max = 79``.  Every ``|lambda| <= rtol lambda_max``, with
    ``rtol =`` :data:`ROUNDOFF_RTOL` ``= 1e-10``, is therefore 0: far above that round-off for
    any ``d`` up to ``1e5`` (``d eps ~ 2e-11``), and far below anything that moves the curves
    (such an eigenvalue changes ``tau`` and every spectral mean by ``<= 1e-10`` relative).  A
    more negative eigenvalue is not round-off of a double-precision computation (a spectrum
    computed in single precision is: recompute it in double) and is refused.

    >>> clip_roundoff([2.0, 1.0, -6e-15, 3e-16]).tolist()
    [2.0, 1.0, 0.0, 0.0]
    """
    s = np.array(eigenvalues, dtype=float)
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{name} eigenvalues must be finite (no NaN or inf)")
    if s.size == 0:
        raise ValueError(f"the {name} spectrum is empty")
    top = float(s.max())
    if top <= 0.0:
        if top < 0.0:
            raise ValueError(f"{name} eigenvalues must be >= 0 (a covariance is positive semi-definite): "
                             f"all are negative, the largest is {top!r}")
        raise ValueError(f"the {name} spectrum is all zero (no data)")
    tol = ROUNDOFF_RTOL * top
    low = float(s.min())
    if low < -tol:
        raise ValueError(f"{name} eigenvalues must be >= 0 (a covariance is positive semi-definite): "
                         f"got {low!r}, beyond the round-off tolerance {ROUNDOFF_RTOL:g} x lambda_max = {tol:.3g} "
                         "(derivations.model.clip_roundoff)")
    s[np.abs(s) <= tol] = 0.0
    return s


def covariance_eigenvalues(covariance) -> np.ndarray:
    """The eigenvalues of ``covariance``: a 1-D array of them (returned as given), or a
    symmetric matrix (``numpy.linalg.eigvalsh``); ``ValueError`` naming it otherwise.  Round-off
    is not clipped here (:func:`clip_roundoff`)."""
    c = real_array("covariance", covariance, allow_negative=True, allow_inf=True)
    if c.ndim == 2:
        if c.shape[0] != c.shape[1] or not np.allclose(c, c.T, rtol=1e-10, atol=1e-12):
            raise ValueError("a covariance matrix must be square and symmetric")
        if not np.all(np.isfinite(c)):
            raise ValueError("covariance eigenvalues must be finite (no NaN or inf)")
        return np.linalg.eigvalsh(c)
    if c.ndim != 1:
        raise ValueError("covariance must be None, eigenvalues, (eigenvalues, weights) or a matrix")
    return c


def spectral_measure(covariance) -> tuple[np.ndarray, np.ndarray] | None:
    """``(eigenvalues, weights)`` of the data covariance's spectral measure ``nu``.

    ``covariance``: ``None`` (isotropic data), a 1-D array of eigenvalues (equal weights;
    zeros allowed), a pair ``(eigenvalues, weights)`` with non-negative weights summing to
    1, or a symmetric positive semi-definite matrix.  Equal atoms are merged.  Eigenvalues
    within round-off of 0 (``|lambda| <= 1e-10 lambda_max``, :func:`clip_roundoff`; e.g. the
    ``-4e-15`` of an ``eigvalsh`` spectrum) are 0; a more negative one is a ``ValueError``.

    >>> spectral_measure(([1.0, 2.0, 1.0], [0.25, 0.5, 0.25]))
    (array([1., 2.]), array([0.5, 0.5]))
    >>> spectral_measure([2.0, 1.0, -4e-15])
    (array([0., 1., 2.]), array([0.33333333, 0.33333333, 0.33333333]))
    """
    if covariance is None:
        return None
    if isinstance(covariance, tuple) and len(covariance) == 2:
        s = real_array("covariance eigenvalues", covariance[0], allow_negative=True, allow_inf=True)
        w = real_array("covariance weights", covariance[1], allow_negative=True, allow_inf=True)
        if s.ndim != 1 or w.shape != s.shape:
            raise ValueError("covariance=(eigenvalues, weights) needs two 1-D arrays of the same length")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError("spectral weights must be finite and non-negative")
        if abs(w.sum() - 1.0) > 1e-9:
            raise ValueError(f"spectral weights must sum to 1, got {w.sum()!r}")
    else:
        s = covariance_eigenvalues(covariance)
        w = np.full(s.shape, 1.0 / max(len(s), 1))
    if s.size == 0:
        raise ValueError("the covariance spectrum is empty")
    s = clip_roundoff(s)
    if not np.any((s > 0) & (w > 0)):
        raise ValueError("the covariance spectrum is all zero (no data)")
    atoms, inverse = np.unique(s, return_inverse=True)
    return atoms, np.bincount(inverse, weights=w, minlength=len(atoms))


@dataclass(frozen=True)
class Coefficients:
    """Gaussian-equivalence numbers of an activation (``MODEL.md``).

    ``mu_s_sq(t)`` and ``mu_f_sq(t)`` are vectorised over the diffusion time ``t``
    (two noisy copies of one data point have pre-activation correlation ``a_t^2 = e^{-2t}``).
    """

    activation: object
    #: ``tau = tr(Sigma)/d`` of the data covariance (1 for isotropic data)
    tau: float = 1.0

    def at(self, t) -> dict:
        """``mu1, mu_star, mu_s, mu_f`` at diffusion time ``t`` (arrays): for structured
        data the constants at pre-activation variance ``v_t = a_t^2 tau + Delta_t`` and
        shared covariance ``a_t^2 tau`` (MODEL.md); ``tau = 1`` gives the isotropic ones."""
        t = np.asarray(t, dtype=float)
        if self.tau == 1.0:
            return dict(mu1=np.full(t.shape, self.mu1), mu_star=np.full(t.shape, math.sqrt(max(self.mu_star_sq, 0.0))),
                        mu_s=np.sqrt(np.clip(self.mu_s_sq(t), 0.0, None)), mu_f=np.sqrt(self.mu_f_sq(t)))
        a_sq = np.exp(-2.0 * t)
        # Delta_t passed exactly: a_t^2 tau + Delta_t rounds it away when tau is huge
        _, mu1, star, s_sq, f_sq = self.activation.equivalence_constants(
            a_sq * self.tau - np.expm1(-2.0 * t), a_sq * self.tau, delta=-np.expm1(-2.0 * t))
        star = np.clip(star, 0.0, None)
        s_sq = np.clip(s_sq, 0.0, None)
        return dict(mu1=np.asarray(mu1), mu_star=np.sqrt(star), mu_s=np.sqrt(s_sq),
                    mu_f=np.sqrt(np.clip(f_sq, 0.0, None)))

    def error(self, t) -> np.ndarray:
        """Estimated relative error of the numbers of :meth:`at` at diffusion time ``t``: the
        largest absolute error -- the quadrature error of the one-dimensional moments
        (``Activation.accuracy``: ``mu0``, ``mu1``, ``mu_*^2``, the Hermite coefficients), that of
        the kernel behind ``mu_s^2`` (``Activation.kernel_error``, or the structured-data
        estimate) and the rounding of ``mu_s^2``, ``mu_f^2`` as differences of numbers of size
        ``E rho(h)^2`` -- relative to the scale ``E rho(h)^2 - mu0^2`` of the features, and for
        ``mu_f^2`` (the fresh noise) relative to itself.  About ``1e-15`` for closed forms at
        ordinary parameters; large where ``mu_f^2 << E rho(h)^2`` (a huge data variance) or
        for a noisy activation."""
        t = np.asarray(t, dtype=float)
        times, index = np.unique(t, return_inverse=True)  # one estimate per distinct time
        return self._error_at(times)[index].reshape(t.shape)

    def _error_at(self, t: np.ndarray) -> np.ndarray:
        act = self.activation
        a_sq = np.exp(-2.0 * t)
        eps4 = 4 * np.finfo(float).eps
        acc = float(act.accuracy)
        if self.tau == 1.0:
            kern = np.where(a_sq > 0.25, act.kernel_error(np.clip(a_sq, 0.0, 1.0)), 0.0)
            star, shared, fresh = float(act.mu_star_sq), self.mu_s_sq(t), self.mu_f_sq(t)
            second = float(act.second_moment)
            # for a_t^2 <= 1/4, mu_s^2 is its Mehler tail (no cancellation), else K(a^2) - mu0^2 - mu1^2 a^2
            cancel = np.where(a_sq > 0.25, eps4 * second, 0.0)
        else:
            v = a_sq * self.tau - np.expm1(-2.0 * t)
            mu0, mu1, star, shared, fresh, kern = act.equivalence_constants(v, a_sq * self.tau, with_error=True,
                                                                            delta=-np.expm1(-2.0 * t))
            second = np.asarray(star) + np.asarray(mu0) ** 2 + np.asarray(mu1) ** 2 * v
            cancel = eps4 * second
        # mu_*^2, mu_s^2 are differences of numbers of size E rho^2, and mu_f^2 = mu_*^2 - mu_s^2
        err_star = np.maximum(acc, eps4 * second)
        err_shared = np.maximum(np.maximum(acc, kern), cancel)
        err_fresh = err_star + err_shared + eps4 * np.abs(star)
        if self.tau != 1.0 and act.exact_fresh:  # mu_f^2 from the kernel's gap, not a difference
            err_fresh = 16 * eps4 * np.abs(np.asarray(fresh, dtype=float)) + acc
        # relative to the scale E rho^2 - mu0^2 of the features; mu_f^2 (the fresh noise, where a
        # huge data variance leaves only rounding) relative to itself
        scale = np.maximum(np.maximum(second - np.asarray(mu0 if self.tau != 1.0 else act.mu0) ** 2, 0.0), 1e-300)
        fresh = np.asarray(fresh, dtype=float)
        rel = np.maximum(np.maximum(err_star, err_shared) / scale,
                         np.where(fresh > 0, err_fresh / np.where(fresh > 0, fresh, 1.0), err_fresh / scale))
        return np.broadcast_to(rel, t.shape).copy()

    @property
    def mu0(self) -> float:
        return float(self.activation.mu0)

    @property
    def mu1(self) -> float:
        return float(self.activation.mu1)

    @property
    def mu_star_sq(self) -> float:
        return float(self.activation.mu_star_sq)

    def mu_s_sq(self, t):
        return np.asarray(self.activation.mu_s_sq(np.exp(-2.0 * np.asarray(t, dtype=float))))

    def mu_f_sq(self, t):
        a_sq = np.exp(-2.0 * np.asarray(t, dtype=float))
        return np.clip(np.asarray(self.activation.mu_f_sq(a_sq)), 0.0, None)

    def __repr__(self) -> str:
        extra = "" if self.tau == 1.0 else f"; structured data, tau={self.tau:.6g}: see .at(t)"
        return (f"Coefficients({self.activation.name}: mu0={self.mu0:.6g}, mu1={self.mu1:.6g}, "
                f"mu_star_sq={self.mu_star_sq:.6g}{extra})")


def check_precision(precision) -> None:
    """``precision=``: a whole number of digits from 15 to :data:`MAX_PRECISION`
    (:func:`pencils.activation.common.check_digits`, the one check of digits)."""
    check_digits(precision, "precision")


def _refused(x) -> str | None:
    """What is wrong with the type of an element of a numeric argument, or ``None``."""
    if isinstance(x, (bool, np.bool_)):
        return "a boolean"
    if isinstance(x, (str, bytes)):
        return "a string"
    if isinstance(x, (complex, np.complexfloating)):
        return "a complex number"
    if not isinstance(x, (numbers.Real, np.integer, np.floating)):
        return f"a {type(x).__name__}"
    return None


def real_array(name: str, x, allow_zero: bool = False, allow_inf: bool = False,
               allow_negative: bool = False) -> np.ndarray:
    """``x`` as a float array after :func:`check_real_array` (the one place the numeric
    arguments of the theory are checked).

    >>> real_array("lam", [1e-2, 1.0])
    array([0.01, 1.  ])
    >>> real_array("X", [[1.0, -2.0]], allow_negative=True)
    array([[ 1., -2.]])
    """
    check_real_array(name, x, allow_zero=allow_zero, allow_inf=allow_inf, allow_negative=allow_negative)
    return np.asarray(x, dtype=float)


def complex_array(name: str, x) -> np.ndarray:
    """``x`` as an array of finite numbers, complex where any element is (a spectral argument
    ``z``), else real: ``TypeError`` / ``ValueError`` naming ``name`` as in
    :func:`check_real_array`, which refuses the same things except complex numbers.

    >>> complex_array("z", [-1.0, 1 + 1j])
    array([-1.+0.j,  1.+1.j])
    """
    if isinstance(x, np.ndarray) and x.dtype.kind != "c":
        return real_array(name, x, allow_zero=True, allow_negative=True)
    if not isinstance(x, np.ndarray):
        try:
            obj = np.asarray(x, dtype=object)
        except ValueError:
            raise TypeError(f"{name} must be numbers (a number or a rectangular array), got a ragged sequence") from None
        elements = obj.reshape(-1)
        if not any(isinstance(v, (complex, np.complexfloating)) for v in elements):
            return real_array(name, x, allow_zero=True, allow_negative=True)
        for v in elements:
            bad = None if isinstance(v, (complex, np.complexfloating)) else _refused(v)
            if bad:
                raise TypeError(f"{name} must be numbers, got {bad} ({v!r})")
        try:
            x = obj.astype(complex)
        except OverflowError:
            raise ValueError(f"{name} must be finite numbers, got an integer too large for a double") from None
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return np.asarray(x, dtype=complex)


def check_real_array(name: str, x, allow_zero: bool = False, allow_inf: bool = False,
                     allow_negative: bool = False) -> None:
    """``TypeError`` / ``ValueError`` naming ``name`` unless ``x`` (a number, a nested list
    or an array) holds real numbers ``> 0`` (``>= 0`` with ``allow_zero``, of any sign with
    ``allow_negative``: data and coordinates), finite unless ``allow_inf``.

    Refused by type (``TypeError``), because each would otherwise be taken silently or fail
    deep inside numpy: booleans (``True`` is not ``1.0`` here), strings (also numeric ones),
    complex numbers, object arrays, other objects, ragged lists.  Integers too large for a double are a
    ``ValueError``.  An empty array passes (the calls broadcast it to an empty result).
    """
    if isinstance(x, np.ndarray) and x.dtype == object:
        raise TypeError(f"{name} must be real numbers, got an object array")
    if isinstance(x, np.ndarray):
        kind = x.dtype.kind
        what = {"b": "booleans", "c": "complex numbers", "U": "strings", "S": "strings"}.get(
            kind, None if kind in "iuf" else f"dtype {x.dtype}")
        if what:
            raise TypeError(f"{name} must be real numbers, got {what}")
    else:
        try:
            obj = np.asarray(x, dtype=object)
        except ValueError:
            raise TypeError(f"{name} must be real numbers (a number or a rectangular array), "
                            "got a ragged sequence") from None
        for v in obj.reshape(-1):
            bad = _refused(v)
            if bad:
                raise TypeError(f"{name} must be real numbers, got {bad} ({v!r})")
        try:
            x = obj.astype(float)
        except OverflowError:
            raise ValueError(f"{name} must be finite real numbers, got an integer too large for a double") from None
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be real numbers") from None
    if np.any(np.isnan(x)):
        raise ValueError(f"{name} is NaN" if np.ndim(x) == 0 else f"{name} contains NaN, a non-finite value")
    if not allow_inf and np.any(np.isinf(x)):
        raise ValueError(f"{name} must be finite")
    if allow_negative:
        return
    if np.any(x < 0) or (not allow_zero and np.any(x == 0)):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got min {x.min()}")
