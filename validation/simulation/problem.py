"""The parameters of one Monte Carlo instance and what they imply.

* :class:`Problem` and :func:`make_problem` (checked, ``n = psi_n d`` and ``p = psi_p d`` rounded);
* :class:`Covariance`: the data covariance ``Sigma`` (MODEL.md "Structured data");
* :class:`Coefficients`: the Gaussian-equivalence numbers at diffusion time ``t``;
* :func:`instance_streams`: the random streams ``(W, X, Z, xi, xi')`` of one instance;
* :func:`m_label`: ``m`` as text in tables, file names and figures;
* :func:`check_data`: data arrays (samples, images) of real numbers of any sign;
* :func:`check_reals`: the library-side numeric checks (:func:`derivations.model.check_real_array`),
  reals and integers; :func:`parse_m` (:func:`derivations.model.parse_m`, also refusing integers
  too large for a float with a ``ValueError``).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from derivations.model import Coefficients as TheoryCoefficients
from derivations.model import check_real_array, clip_roundoff
from derivations.model import parse_m as _parse_m


@dataclass(frozen=True)
class Coefficients:
    """Gaussian-equivalence numbers of an activation at diffusion time ``t`` (MODEL.md)."""

    mu0: float
    mu1: float
    mu_star_sq: float
    mu_s_sq: float
    mu_f_sq: float

    @property
    def mu_s(self) -> float:
        return math.sqrt(max(self.mu_s_sq, 0.0))

    @property
    def mu_f(self) -> float:
        return math.sqrt(self.mu_f_sq)

    @property
    def mu_star(self) -> float:
        return math.sqrt(max(self.mu_star_sq, 0.0))

    @classmethod
    def of(cls, act, t: float) -> "Coefficients":
        """The numbers at time ``t``, from the theory's own :class:`derivations.theory.Coefficients`."""
        c = TheoryCoefficients(act)
        return cls(c.mu0, c.mu1, c.mu_star_sq, float(c.mu_s_sq(t)), float(c.mu_f_sq(t)))

    @classmethod
    def at(cls, act, t: float, tau: float = 1.0) -> "Coefficients":
        """The structured-data numbers (MODEL.md) for ``tau = tr Sigma / d``: taken at
        pre-activation variance ``v_t = a_t^2 tau + Delta_t`` and shared covariance ``a_t^2 tau``.

        ``tau = 1`` is :meth:`of` (the isotropic numbers, bit for bit).
        """
        if tau == 1.0:
            return cls.of(act, t)
        if not (math.isfinite(tau) and tau > 0):
            raise ValueError(f"tau = tr Sigma / d must be finite and > 0, got {tau!r}")
        a_sq = math.exp(-2.0 * t)
        v = a_sq * tau - math.expm1(-2.0 * t)
        mu0, mu1, star, shared, fresh = act.equivalence_constants(v, a_sq * tau, delta=-math.expm1(-2.0 * t))
        return cls(float(mu0), float(mu1), float(star), float(shared), float(fresh))


@dataclass(frozen=True)
class Problem:
    """One validated parameter point of the finite-``d`` model."""

    d: int
    n: int
    p: int
    m: float  # int >= 1 or math.inf
    t: float
    lam: float
    psi_n: float
    psi_p: float

    @property
    def a(self) -> float:
        return math.exp(-self.t)

    @property
    def delta(self) -> float:
        return -math.expm1(-2.0 * self.t)

    @property
    def rows(self) -> float:
        return self.n * self.m


def make_problem(*, d, psi_n, psi_p, t, lam, m) -> Problem:
    """Check the parameters (:func:`check_reals`, :func:`parse_m`) and round ``n = psi_n d``,
    ``p = psi_p d`` to integers.  Nothing proportional to ``d`` is allocated here."""
    v = check_reals(d=d, psi_n=psi_n, psi_p=psi_p, t=t, lam=lam, allow_zero=("lam",), integers=("d",))
    d = v["d"]
    n = max(1, int(round(v["psi_n"] * d)))
    p = max(1, int(round(v["psi_p"] * d)))
    return Problem(d=d, n=n, p=p, m=parse_m(m), t=v["t"], lam=v["lam"], psi_n=v["psi_n"], psi_p=v["psi_p"])


# ----------------------------------------------------------------------------------
# Data covariance (MODEL.md "Structured data")


@dataclass(frozen=True, eq=False)
class Covariance:
    """The data covariance ``Sigma`` of ``x ~ N(0, Sigma)``, checked, with what the Monte Carlo needs.

    Build with :meth:`Covariance.of` from ``None`` (``Sigma = I``), a 1-D array of ``d``
    eigenvalues (``Sigma`` diagonal in the standard basis: ``W`` is rotation invariant,
    so this is no loss of generality) or a symmetric PSD ``d x d`` matrix.
    """

    eigenvalues: np.ndarray
    root: np.ndarray | None = None  # Sigma^{1/2} (symmetric) for a full matrix
    matrix: np.ndarray | None = None
    isotropic: bool = False

    @property
    def d(self) -> int:
        return int(self.eigenvalues.size)

    @property
    def tau(self) -> float:
        """``tr Sigma / d``."""
        return float(np.mean(self.eigenvalues))

    @classmethod
    def of(cls, spec, d: int) -> "Covariance":
        if isinstance(spec, Covariance):
            if spec.d != d:
                raise ValueError(f"covariance has dimension {spec.d}, expected d = {d}")
            return spec
        if spec is None:
            return cls(eigenvalues=np.ones(d), isotropic=True)
        try:
            arr = np.array(spec, dtype=float)
        except (TypeError, ValueError):
            raise ValueError("covariance must be None, a 1-D array of eigenvalues or a d x d matrix, "
                             f"got {type(spec).__name__}") from None
        if arr.ndim == 1:
            if arr.size != d:
                raise ValueError(f"covariance has {arr.size} eigenvalues, expected d = {d}")
            arr = clip_roundoff(arr)  # round-off (|lambda| <= 1e-10 lambda_max) to 0, negatives refused
            arr.setflags(write=False)
            return cls(eigenvalues=arr)
        if arr.ndim == 2:
            if arr.shape != (d, d):
                raise ValueError(f"covariance matrix must be {d} x {d}, got {arr.shape[0]} x {arr.shape[1]}")
            if not np.all(np.isfinite(arr)):
                raise ValueError("covariance matrix must be finite (no NaN or inf)")
            scale = float(np.max(np.abs(arr)))
            if scale == 0:
                raise ValueError("covariance matrix is zero (the data would be constant)")
            asym = float(np.max(np.abs(arr - arr.T)))
            if asym > 1e-12 * scale:
                raise ValueError(f"covariance matrix is not symmetric (max |Sigma - Sigma^T| = {asym:.3g})")
            arr = 0.5 * (arr + arr.T)
            w, Q = np.linalg.eigh(arr)
            try:
                w = clip_roundoff(w)
            except ValueError as err:
                raise ValueError(f"covariance matrix is not positive semi-definite: {err}") from None
            root = (Q * np.sqrt(w)) @ Q.T
            for a in (w, root, arr):
                a.setflags(write=False)
            return cls(eigenvalues=w, root=root, matrix=arr)
        raise ValueError(f"covariance must be 1-D (eigenvalues) or 2-D (a matrix), got {arr.ndim}-D")

    def sample(self, G: np.ndarray) -> np.ndarray:
        """``x = Sigma^{1/2} g`` for the rows ``g`` of ``G`` (standard normal)."""
        if self.isotropic:
            return G
        if self.root is None:
            return G * np.sqrt(self.eigenvalues)
        return G @ self.root

    def feature_covariance(self, W: np.ndarray, a: float, delta: float) -> np.ndarray:
        """``W S_t W^T / d`` with ``S_t = a^2 Sigma + Delta I``: covariance of ``W y / sqrt(d)``, ``y ~ p_t``."""
        d = W.shape[1]
        if self.isotropic:
            return W @ W.T / d
        if self.root is None:
            return (W * (a * a * self.eigenvalues + delta)) @ W.T / d
        return (a * a * (W @ self.matrix) + delta * W) @ W.T / d

    def inverse_trace(self, a: float, delta: float) -> float:
        """``tr(S_t^{-1}) / d`` (1 for isotropic data)."""
        if self.isotropic:
            return 1.0
        return float(np.mean(1.0 / (a * a * self.eigenvalues + delta)))


# ----------------------------------------------------------------------------------
# Random streams, labels and checks


def instance_streams(seed: int, d: int, n: int, p: int) -> list[np.random.Generator]:
    """Independent streams ``(W, X, Z, xi, xi')`` of one instance; chunking never changes a draw."""
    streams = np.random.SeedSequence([int(seed), int(d), int(n), int(p)]).spawn(5)
    return [np.random.default_rng(s) for s in streams]


def m_label(m, infinity: str = "∞") -> str:
    """``m`` as text: ``infinity`` (default ``"∞"``; ``"inf"`` in file names and CSV keys,
    ``r"\\infty"`` in TeX) for ``m = inf``, else the integer.

    >>> m_label(4), m_label(math.inf), m_label(math.inf, "inf")
    ('4', '∞', 'inf')
    """
    return infinity if math.isinf(m) else str(int(m))


def parse_m(m) -> float:
    """``m`` as ``int >= 1`` or ``math.inf`` (:func:`derivations.model.parse_m`); an integer too
    large for a float is a ``ValueError`` naming ``m`` too (not an ``OverflowError``).

    >>> parse_m("inf"), parse_m(4.0)
    (inf, 4)
    """
    try:
        return _parse_m(m)
    except OverflowError:
        raise ValueError(f"m must be an integer >= 1 or inf, got an integer of {len(str(m))} digits "
                         "(too large for a float)") from None


def check_data(name: str, x) -> np.ndarray:
    """Data (samples, images, points: real numbers of any sign, finite) as a float array.

    The element types are those of :func:`derivations.model.check_real_array` (``TypeError``
    naming ``name`` for strings, booleans, complex numbers, ``None``, ragged lists); NaN or
    inf is a ``ValueError`` naming it.  Shapes are the caller's to check.

    >>> check_data("Y", [[0.5, -1.0]])
    array([[ 0.5, -1. ]])
    """
    check_real_array(name, x, allow_negative=True, allow_inf=True)
    arr = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains inf, a non-finite value")
    return arr


def check_reals(allow_zero: tuple[str, ...] = (), integers: tuple[str, ...] = (), at_most: dict | None = None,
                **values) -> dict:
    """Check each of ``values`` and return them converted (``float``, or ``int`` for the names in
    ``integers``); ``ValueError`` naming the argument and the accepted range otherwise.

    Accepted: a real number (Python or numpy scalar, 0-d array), finite and ``> 0`` (``>= 0`` for
    the names in ``allow_zero``; :func:`derivations.model.check_real_array`), a whole number for
    the names in ``integers``, at most ``at_most[name]`` for the names it holds.  Refused, because each is a caller's mistake that would otherwise
    pass silently or fail later without naming the argument: strings (also numeric ones, like
    the theory's checks), booleans, complex numbers, integers too large for a float.

    >>> check_reals(d=40, t=0.5, integers=("d",))
    {'d': 40, 't': 0.5}
    >>> check_reals(d=2.5, integers=("d",))
    Traceback (most recent call last):
    ...
    ValueError: d must be an integer >= 1, got 2.5
    >>> check_reals(t=800.0, at_most={"t": 700.0})
    Traceback (most recent call last):
    ...
    ValueError: t must be a real number in (0, 700], got 800.0
    """
    out = {}
    for name, value in values.items():
        zero_ok = name in allow_zero
        kind = "an integer" if name in integers else "a real number"
        bound = ">= 0" if zero_ok else (">= 1" if name in integers else "> 0")
        if isinstance(value, (str, bytes, bool, np.bool_, complex, np.complexfloating)):
            raise ValueError(f"{name} must be {kind} {bound}, got {value!r}")
        try:
            x = float(value)
        except OverflowError:
            raise ValueError(f"{name} must be {kind} {bound} and finite, got an integer too large "
                             "for a float") from None
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be {kind} {bound}, got {value!r}") from None
        check_real_array(name, np.asarray(x), allow_zero=zero_ok)
        if at_most and name in at_most and x > at_most[name]:
            raise ValueError(f"{name} must be {kind} in {'[' if zero_ok else '('}0, {at_most[name]:g}], got {value!r}")
        if name in integers:
            if x != math.floor(x):
                raise ValueError(f"{name} must be {kind} {bound}, got {value!r}")
            x = int(value) if isinstance(value, numbers.Integral) else int(x)
        out[name] = x
    return out
