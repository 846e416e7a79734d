"""Closed forms for the named activations: numpy and mpmath, no sympy or scipy at import.

Conventions.  ``g, g'`` are standard Gaussians with correlation ``c``;
``He_k`` are the probabilists' Hermite polynomials; ``phi``/``Phi`` the standard
normal density/distribution; ``a_k = E[rho(g) He_k(g)]`` the Hermite coefficients,
so that ``K(c) = E[rho(g) rho(g')] = sum_k a_k^2 c^k / k!`` (Mehler 1866;
O'Donnell 2014, *Analysis of Boolean Functions*, Prop. 11.31).
For a shifted and scaled input ``u = m + s xi`` (``xi ~ N(0, 1)``) the
Gaussian moments are ``alpha_j(m, s) = E[rho(m + s xi) He_j(xi)]``.

Two identities produce every closed form below.

* Gaussian integration by parts (Stein 1981): ``E[f(xi) He_j(xi)] = E[f^{(j)}(xi)]``,
  in the sense of distributions, hence ``alpha_j(m, s) = s^j E[rho^{(j)}(m + s xi)]``.
  For ``relu`` the second derivative is a Dirac mass, for ``erf`` and ``gelu`` the
  derivatives are Gaussians times polynomials, whose expectations are again Gaussian.
* Price's theorem (Price 1958): ``K'(c) = E[rho'(g) rho'(g')]``, so ``K`` follows by
  integrating ``E[rho^{(k)}(g) rho^{(k)}(g')]`` ``k`` times from ``K^{(j)}(0) = a_j^2``.

Hermite functions are evaluated in the normalised form
``psi_k(z) = He_k(z) phi(z) / sqrt(k!)`` through the stable three-term recurrence
``psi_{k+1} = (z psi_k - sqrt(k) psi_{k-1}) / sqrt(k+1)``; ``|psi_k| <= 1``, so no
factorial is ever formed before the final rescaling.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Callable

import mpmath
import numpy as np

if TYPE_CHECKING:  # annotations only
    import sympy

# sympy (0.35 s) and scipy.special (0.25 s) are imported on first use only: a named
# activation's numbers come from the numpy/mpmath closed forms below, and its sympy
# expression and symbolic forms are built when first asked for.


@functools.lru_cache(maxsize=None)
def symbols():
    """``(X, C)``: the sympy symbols ``x`` of every activation expression (``Activation.expr``)
    and ``c`` of every symbolic kernel (``Activation.symbolic.kernel``)."""
    import sympy

    return sympy.Symbol("x"), sympy.Symbol("c")


def __getattr__(name: str):
    # PEP 562: X and C exist as module attributes without importing sympy at import time
    if name == "X":
        return symbols()[0]
    if name == "C":
        return symbols()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {"X", "C"})


def _special():
    """``scipy.special``, imported on first use."""
    from scipy import special

    return special


def ndtr(z):
    """``Phi(z)`` elementwise (scipy's ``ndtr``); ``Phi(0) = 1/2`` exactly needs no library,
    and the centred moments (mean 0, the structured-data constants) only ever ask for it."""
    z = np.asarray(z, dtype=float)
    if not z.any():
        return np.full(z.shape, 0.5)
    return _special().ndtr(z)


def erf(z):
    """``erf(z)`` elementwise (scipy's ``erf``); ``erf(+-0) = +-0`` exactly needs no library."""
    z = np.asarray(z, dtype=float)
    if not z.any():
        return z * 1.0  # keeps the sign of zero, as scipy does
    return _special().erf(z)


def _owens_t(h, a):
    return _special().owens_t(h, a)


def _expit(u):
    return _special().expit(u)

_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)

#: Largest Hermite order accepted by the float paths (``sqrt(k!)`` must stay finite).
MAX_ORDER = 170


@dataclass(frozen=True)
class SymbolicForms:
    """Exact sympy forms of the Gaussian-equivalence numbers, ``None`` where unknown.

    ``kernel`` is an expression in the symbol ``c`` (:data:`C`).  Also readable as a
    mapping: ``forms["mu0"]``.

    >>> import sympy
    >>> C = sympy.Symbol("c")
    >>> f = SymbolicForms(mu0=sympy.Integer(0), mu1=sympy.Integer(1),
    ...                   second_moment=sympy.Integer(1), kernel=C)
    >>> f["kernel"], f.mu_star_sq
    (c, 0)
    """

    mu0: sympy.Expr | None = None
    mu1: sympy.Expr | None = None
    second_moment: sympy.Expr | None = None
    kernel: sympy.Expr | None = None

    def __getitem__(self, key: str):
        if key == "mu_star_sq":
            return self.mu_star_sq
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    @staticmethod
    def keys() -> tuple[str, ...]:
        return tuple(f.name for f in fields(SymbolicForms))

    @property
    def mu_star_sq(self) -> sympy.Expr | None:
        """``E rho^2 - mu0^2 - mu1^2`` when all three are known."""
        if None in (self.mu0, self.mu1, self.second_moment):
            return None
        import sympy

        return sympy.simplify(self.second_moment - self.mu0**2 - self.mu1**2)


# --------------------------------------------------------------------------- helpers

def hermite_functions(z: np.ndarray, order: int, out: np.ndarray | None = None) -> np.ndarray:
    """``psi_k(z) = He_k(z) phi(z) / sqrt(k!)`` for ``k = 0..order``, shape ``(order+1,) + z.shape``.

    The order axis comes first so that every ``psi_k`` is contiguous.

    >>> psi = hermite_functions(np.array([0.0, 1.0]), 2)
    >>> bool(np.allclose(psi[:, 1], np.array([1.0, 1.0, 0.0]) / np.sqrt(2 * np.pi * np.e)))
    True
    """
    z = np.asarray(z, dtype=float)
    if out is None:
        out = np.empty((order + 1,) + z.shape)
    np.multiply(z, z, out=out[0])
    out[0] *= -0.5
    np.exp(out[0], out=out[0])
    out[0] /= _SQRT2PI
    if order >= 1:
        np.multiply(z, out[0], out=out[1])
    for k in range(1, order):
        np.multiply(z, out[k], out=out[k + 1])
        out[k + 1] -= math.sqrt(k) * out[k - 1]
        out[k + 1] /= math.sqrt(k + 1)
    return out


def sqrt_factorials(order: int) -> np.ndarray:
    """``sqrt(k!)`` for ``k = 0..order`` (correctly rounded for ``k <= 170``)."""
    if order > MAX_ORDER:
        raise ValueError(f"order must be <= {MAX_ORDER} (sqrt(order!) must be a finite float), got {order}")
    return np.array([math.sqrt(math.factorial(k)) for k in range(order + 1)])


def he_at_zero(n: int) -> int:
    """``He_n(0)``: ``(-1)^(n/2) (n-1)!!`` for even ``n``, else 0."""
    if n % 2:
        return 0
    return (-1) ** (n // 2) * math.prod(range(n - 1, 0, -2))


def _times_alternating_powers(block: np.ndarray, r: np.ndarray, first: int) -> None:
    """Multiply row ``k`` of ``block`` by ``(-r)^(first + k)`` in place."""
    power = (-r) ** first if first else np.ones_like(r)
    for k in range(block.shape[0]):
        block[k] *= power
        power = power * -r


def _column(v: np.ndarray, ndim: int) -> np.ndarray:
    return v.reshape((-1,) + (1,) * ndim)


# --------------------------------------------------------------------------- Gaussian moments
# Each function returns alpha_j(m, s), j = 0..order, with the order axis first:
# shape (order + 1,) + m.shape; m, s are float arrays of equal shape with s > 0.

def relu_moments(m: np.ndarray, s: np.ndarray, order: int) -> np.ndarray:
    """``alpha_j(m, s)`` for ``relu``, ``s > 0``.

    With ``z = m / s`` and ``a = -z``: ``alpha_0 = m Phi(z) + s phi(z)``,
    ``alpha_1 = s Phi(z)`` and, since ``d^2/dxi^2 relu(m + s xi) = s delta(xi - a)``
    and ``E[delta^{(k)}(xi - a)] = He_k(a) phi(a)``,
    ``alpha_j = s phi(a) He_{j-2}(a)`` for ``j >= 2``.
    """
    z = m / s
    out = np.empty((order + 1,) + m.shape)
    cdf = ndtr(z)
    out[0] = m * cdf + s * np.exp(-0.5 * z * z) / _SQRT2PI
    if order >= 1:
        out[1] = s * cdf
    if order >= 2:
        hermite_functions(-z, order - 2, out=out[2:])
        out[2:] *= _column(sqrt_factorials(order - 2), m.ndim) * s
    return out


def abs_moments(m: np.ndarray, s: np.ndarray, order: int) -> np.ndarray:
    """``alpha_j(m, s)`` for ``abs``, from ``|x| = 2 relu(x) - x``.

    ``alpha_0 = m erf(z / sqrt 2) + 2 s phi(z)``, ``alpha_1 = s erf(z / sqrt 2)``,
    ``alpha_j = 2 s phi(z) He_{j-2}(-z)`` (``j >= 2``), ``z = m / s``; the ``erf``
    form avoids the cancellation of ``2 Phi(z) - 1``.
    """
    z = m / s
    out = np.empty((order + 1,) + m.shape)
    e = erf(z / _SQRT2)
    out[0] = m * e + 2.0 * s * np.exp(-0.5 * z * z) / _SQRT2PI
    if order >= 1:
        out[1] = s * e
    if order >= 2:
        hermite_functions(-z, order - 2, out=out[2:])
        out[2:] *= _column(2.0 * sqrt_factorials(order - 2), m.ndim) * s
    return out


def erf_moments(m: np.ndarray, s: np.ndarray, order: int) -> np.ndarray:
    """``alpha_j(m, s)`` for ``erf``.

    ``E[erf'(m + s xi)] = (2/sqrt(pi)) exp(-m^2/sigma^2) / sigma`` with
    ``sigma^2 = 1 + 2 s^2``; differentiating ``j - 1`` times in ``m`` gives, with
    ``z = sqrt(2) m / sigma`` and ``r = sqrt(2) s / sigma < 1``,
    ``alpha_0 = erf(m / sigma)`` and
    ``alpha_j = 2 sqrt(2) (s / sigma) (-r)^{j-1} sqrt((j-1)!) psi_{j-1}(z)``.
    """
    sigma = np.sqrt(1.0 + 2.0 * s * s)
    out = np.empty((order + 1,) + m.shape)
    out[0] = erf(m / sigma)
    if order >= 1:
        hermite_functions(_SQRT2 * m / sigma, order - 1, out=out[1:])
        out[1:] *= _column(sqrt_factorials(order - 1), m.ndim) * (2.0 * _SQRT2 * s / sigma)
        _times_alternating_powers(out[1:], _SQRT2 * s / sigma, 0)
    return out


def gelu_moments(m: np.ndarray, s: np.ndarray, order: int) -> np.ndarray:
    """``alpha_j(m, s)`` for ``gelu(x) = x Phi(x)``.

    ``gelu' = Phi - phi'``, so ``gelu^{(j)} = phi^{(j-2)} - phi^{(j)}`` for ``j >= 2``,
    and ``E[phi^{(k)}(m + s xi)] = (-1)^k tau^{-k-1} He_k(z) phi(z)`` with
    ``tau^2 = 1 + s^2``, ``z = m / tau``.  With ``r = s / tau``:
    ``alpha_0 = m Phi(z) + s^2 phi(z) / tau``,
    ``alpha_1 = s (Phi(z) + z phi(z) / tau^2)``,
    ``alpha_j = (-r)^j [tau sqrt((j-2)!) psi_{j-2}(z) - sqrt(j!) psi_j(z) / tau]``.
    """
    tau = np.sqrt(1.0 + s * s)
    z = m / tau
    cdf = ndtr(z)
    pdf = np.exp(-0.5 * z * z) / _SQRT2PI
    out = np.empty((order + 1,) + m.shape)
    out[0] = m * cdf + s * s * pdf / tau
    if order >= 1:
        out[1] = s * (cdf + z * pdf / (tau * tau))
    if order >= 2:
        psi = hermite_functions(z, order)
        psi *= _column(sqrt_factorials(order), m.ndim)
        np.multiply(psi[:-2], tau, out=out[2:])
        out[2:] -= psi[2:] / tau
        _times_alternating_powers(out[2:], s / tau, 2)
    return out


def relu_second_moment(m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``E relu(m + s xi)^2 = (m^2 + s^2) Phi(m/s) + m s phi(m/s)``."""
    z = m / s
    return (m * m + s * s) * ndtr(z) + m * s * np.exp(-0.5 * z * z) / _SQRT2PI


def abs_second_moment(m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``E |m + s xi|^2 = m^2 + s^2``."""
    return m * m + s * s


def erf_second_moment(m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``E erf(m + s xi)^2 = 1 - 8 T(h, 1 / sqrt(1 + 4 s^2))``, ``h = sqrt(2) m / sqrt(1 + 2 s^2)``.

    From ``erf(x) = 2 Phi(sqrt(2) x) - 1``, ``E Phi(a + b xi) = Phi(a / sqrt(1 + b^2))`` and
    ``E Phi(a + b xi)^2 = Phi(h) - 2 T(h, 1 / sqrt(1 + 2 b^2))`` with ``h = a / sqrt(1 + b^2)``
    (Owen 1980, "A table of normal integrals", eq. 20,010.3); ``T`` is Owen's T function.
    """
    return 1.0 - 8.0 * _owens_t(_SQRT2 * m / np.sqrt(1.0 + 2.0 * s * s),
                                       1.0 / np.sqrt(1.0 + 4.0 * s * s))


def gelu_second_moment(m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``E[u^2 Phi(u)^2]`` for ``u = m + s xi``.

    Stein's lemma twice on ``g(xi) = Phi(u)^2`` (``E[xi g] = E g'``,
    ``E[xi^2 g] = E g + E g''``) gives
    ``(m^2 + s^2) E Phi(u)^2 + 4 m s^2 E[Phi phi](u) + 2 s^4 (E phi(u)^2 - E[u Phi(u) phi(u)])``.
    ``E Phi(u)^2 = Phi(h) - 2 T(h, 1/sqrt(1 + 2 s^2))``, ``h = m / tau``, ``tau^2 = 1 + s^2``
    (Owen 1980); ``phi(u)`` times the density of ``u`` is ``phi(h)/tau`` times the
    ``N(m/tau^2, s^2/tau^2)`` density, which gives the other three expectations in closed form.
    """
    s2 = s * s
    tau = np.sqrt(1.0 + s2)
    rho2 = np.sqrt(1.0 + 2.0 * s2)
    h = m / tau
    e_phi2 = ndtr(h) - 2.0 * _owens_t(h, 1.0 / rho2)
    e_pdf2 = np.exp(-m * m / (rho2 * rho2)) / (2.0 * np.pi * rho2)
    weight = np.exp(-0.5 * h * h) / (_SQRT2PI * tau)
    mean, var = m / (tau * tau), s2 / (tau * tau)
    spread = rho2 / tau  # sqrt(1 + var)
    kappa = mean / spread
    e_Phi_phi = weight * ndtr(kappa)
    e_u_Phi_phi = weight * (mean * ndtr(kappa) + var * np.exp(-0.5 * kappa * kappa) / (_SQRT2PI * spread))
    return ((m * m + s2) * e_phi2 + 4.0 * m * s2 * e_Phi_phi
            + 2.0 * s2 * s2 * (e_pdf2 - e_u_Phi_phi))


# --------------------------------------------------------------------------- kernels (numpy)

def _relu_kernel(c):
    """Arc-cosine kernel of degree 1 (Cho & Saul 2009, with unit norms):
    ``K(c) = (sqrt(1 - c^2) + (pi - arccos c) c) / (2 pi)``; by Price's theorem
    ``K''(c) = E[delta(g) delta(g')] = 1 / (2 pi sqrt(1 - c^2))``."""
    return (np.sqrt(1.0 - c * c) + (np.pi - np.arccos(c)) * c) / (2.0 * np.pi)


def _arc_gap(delta):
    """``pi delta + theta cos(theta) - sin(theta)``, ``theta = arccos(1 - delta)``, accurate for
    small ``delta`` too: ``theta = 2 arcsin(sqrt(delta / 2))`` and, for ``theta < 1/2``, the
    series ``theta cos(theta) - sin(theta) = sum_{n>=1} (-1)^n 2n theta^(2n+1) / (2n+1)!``
    (12 terms: the next one is below ``1e-30`` of the first)."""
    delta = np.asarray(delta, dtype=float)
    theta = 2.0 * np.arcsin(np.sqrt(np.clip(delta, 0.0, 2.0) / 2.0))
    direct = theta * np.cos(theta) - np.sin(theta)
    series = np.zeros_like(theta)
    term = theta.copy()  # theta^(2n+1) / (2n+1)! by recurrence
    for n in range(1, 13):
        term = term * theta * theta / ((2 * n) * (2 * n + 1))
        series = series + (-1) ** n * 2 * n * term
    return np.pi * delta + np.where(theta < 0.5, series, direct)


def _relu_kernel_gap(delta):
    """``K(1) - K(1 - delta)`` of :func:`_relu_kernel` without cancellation (``delta = 1 - c``,
    e.g. ``Delta / v`` at a huge data variance ``v``): ``(pi delta + theta cos(theta) -
    sin(theta)) / (2 pi)`` with ``theta = arccos(1 - delta)`` (:func:`_arc_gap`)."""
    return _arc_gap(delta) / (2.0 * np.pi)


def _abs_kernel_gap(delta):
    """``K(1) - K(1 - delta)`` of :func:`_abs_kernel` (``= 4 K_relu - c``): ``4 gap_relu - delta``."""
    return 4.0 * _relu_kernel_gap(delta) - np.asarray(delta, dtype=float)


def _abs_kernel(c):
    """``|x| = 2 relu(x) - x`` and ``E[relu(g) g'] = c/2`` give
    ``K(c) = 4 K_relu(c) - c = (2/pi) (sqrt(1 - c^2) + c arcsin c)``."""
    return (2.0 / np.pi) * (np.sqrt(1.0 - c * c) + c * np.arcsin(c))


def _erf_kernel(c):
    """Arcsine kernel (Williams 1997, unit variances): ``K(c) = (2/pi) arcsin(2c/3)``,
    from ``K'(c) = (4/pi) E[exp(-g^2 - g'^2)] = (4/pi) / sqrt(9 - 4 c^2)``."""
    return (2.0 / np.pi) * np.arcsin(2.0 * c / 3.0)


def _gelu_kernel(c):
    """``K(c) = c/4 + (c arcsin(c/2) + 1/sqrt(4 - c^2)) / (2 pi)`` for ``gelu(x) = x Phi(x)``.

    Price's theorem with ``gelu'' = (2 - x^2) phi(x)`` gives the Gaussian integral
    ``K''(c) = (c^4 - 10 c^2 + 36) / (2 pi (4 - c^2)^{5/2})``; integrating twice from
    ``K(0) = mu0^2 = 1/(4 pi)`` and ``K'(0) = mu1^2 = 1/4`` gives the form above (derived
    for this project; checked against two-dimensional quadrature in the tests).
    """
    return c / 4.0 + (c * np.arcsin(c / 2.0) + 1.0 / np.sqrt(4.0 - c * c)) / (2.0 * np.pi)


# --------------------------------------------------------------------------- Hermite coefficients (mpmath)

def _relu_hermite_mp(order: int) -> list:
    phi0 = 1 / mpmath.sqrt(2 * mpmath.pi)
    a = [phi0, mpmath.mpf(1) / 2]
    a += [phi0 * he_at_zero(k - 2) for k in range(2, order + 1)]
    return a[: order + 1]


def _abs_hermite_mp(order: int) -> list:
    return [2 * v if k != 1 else mpmath.mpf(0) for k, v in enumerate(_relu_hermite_mp(order))]


def _erf_hermite_mp(order: int) -> list:
    # a_{n+1} = E[erf^{(n+1)}(g)] = (2/sqrt(3 pi)) (-2/3)^{n/2} (n-1)!!  (n even).
    pref = 2 / mpmath.sqrt(3 * mpmath.pi)
    out = [mpmath.mpf(0)]
    for k in range(1, order + 1):
        n = k - 1
        out.append(pref * mpmath.mpf(-2) ** (n // 2) / mpmath.mpf(3) ** (n // 2)
                   * abs(he_at_zero(n)) if n % 2 == 0 else mpmath.mpf(0))
    return out


def _gelu_hermite_mp(order: int) -> list:
    # gelu_moments at m = 0, s = 1: tau = sqrt 2, r = 1 / sqrt 2, z = 0.
    phi0 = 1 / mpmath.sqrt(2 * mpmath.pi)
    tau = mpmath.sqrt(2)
    out = [phi0 / tau, mpmath.mpf(1) / 2]
    for j in range(2, order + 1):
        out.append((-1) ** j * tau ** (-j) * phi0 * (tau * he_at_zero(j - 2) - he_at_zero(j) / tau))
    return out[: order + 1]


def _poly_hermite_mp(coeffs: tuple[int, ...]) -> Callable[[int], list]:
    def hermite(order: int) -> list:
        return [mpmath.mpf(coeffs[k]) if k < len(coeffs) else mpmath.mpf(0) for k in range(order + 1)]
    return hermite


# --------------------------------------------------------------------------- mpmath scalar functions

def _mp_relu(x):
    x = mpmath.mpf(x)
    return x if x > 0 else mpmath.mpf(0)


def _mp_sigmoid(x):
    return 1 / (1 + mpmath.exp(-x))


def _mp_softplus(x):
    x = mpmath.mpf(x)
    # log(1 + e^x) = x + log(1 + e^-x) keeps the argument of exp non-positive.
    return x + mpmath.log1p(mpmath.exp(-x)) if x > 0 else mpmath.log1p(mpmath.exp(x))


def _mp_silu(x):
    return x / (1 + mpmath.exp(-x))


def _mp_gelu(x):
    return x * mpmath.ncdf(x)


# --------------------------------------------------------------------------- exact numbers (mpmath)
# The same closed forms as the sympy ``SymbolicForms`` of the catalogue, evaluated directly in
# mpmath (no sympy): guard bits then one rounding, so the result is the correctly rounded value
# in practice, as ``sympy.N`` gives it.

_GUARD_BITS = 40


def _exact(f: Callable[[], mpmath.mpf]) -> Callable[[], mpmath.mpf]:
    """``f()`` at the current mpmath precision, evaluated with guard bits and rounded once."""
    def value():
        with mpmath.workprec(mpmath.mp.prec + _GUARD_BITS):
            v = f()
        return +v
    return value


def _exact_kernel(f: Callable) -> Callable:
    """``K(c)`` at the current mpmath precision (``c`` an mpf in ``[-1, 1]``), with guard bits."""
    def value(c):
        with mpmath.workprec(mpmath.mp.prec + _GUARD_BITS):
            v = f(c)
        return +v
    return value


def _const(p: int, q: int = 1):
    return _exact(lambda: mpmath.mpf(p) / q)


_PI = mpmath.pi


# --------------------------------------------------------------------------- the catalogue

@dataclass(frozen=True)
class NamedForm:
    """Everything known in closed form about one named activation.

    ``exact`` maps some of ``mu0, mu1, second_moment`` to a function giving the number at
    the current mpmath precision, ``kernel_mp`` gives ``K(c)`` likewise; ``poly`` holds the
    Hermite coefficients ``a_k`` of a polynomial.  ``expr`` (``rho`` in the symbol ``x``) and
    ``symbolic`` (the same numbers as sympy expressions) are built, with sympy, on first access.
    """

    name: str
    fn: Callable[[np.ndarray], np.ndarray]
    fn_mp: Callable
    parity: int  # +1 even, -1 odd, 0 neither
    exact: dict = field(default_factory=dict)
    kernel_mp: Callable | None = None
    kernel: Callable | None = None
    hermite_mp: Callable[[int], list] | None = None
    moments: Callable | None = None
    second_moment: Callable | None = None
    degree: int | None = None  # polynomials only
    poly: tuple[int, ...] | None = None  # polynomials only: a_k = E[rho(g) He_k(g)]
    kinks: tuple[float, ...] = ()
    reference: str = ""
    #: half-width ``a`` of the strip ``|Im x| < a`` where ``rho`` is analytic (nearest
    #: complex singularity); sets the convergence rate of the trapezoidal rules
    strip: float | None = None
    #: ``k`` when ``rho(s x) = s^k rho(x)`` for every ``s > 0`` (relu, abs: 1): the constants at any
    #: variance ``v`` then follow from those at ``v = 1``, ``K_v(c) = v^k K(c / v)``
    homogeneous: int | None = None
    #: ``delta -> K(1) - K(1 - delta)`` without cancellation at small ``delta`` (the fresh part
    #: ``mu_f^2`` at a huge data variance, where ``K(1)`` and ``K(c/v)`` agree to ``Delta / v``)
    kernel_gap: Callable | None = None

    @property
    def expr(self):
        """``rho`` as a sympy expression in ``x`` (imports sympy)."""
        return _sympy_forms()[self.name][0]

    @property
    def symbolic(self) -> SymbolicForms:
        """The exact numbers as sympy expressions (imports sympy)."""
        return _sympy_forms()[self.name][1]


@functools.lru_cache(maxsize=None)
def _sympy_forms() -> dict:
    """``name -> (expr, SymbolicForms)`` for the catalogue (the only place sympy enters it)."""
    import sympy

    x, c = symbols()
    pi = sympy.pi
    half = sympy.Rational(1, 2)
    sqrt = sympy.sqrt
    return {
        "relu": (sympy.Max(0, x),
                 SymbolicForms(1 / sqrt(2 * pi), half, half,
                               (sqrt(1 - c**2) + (pi - sympy.acos(c)) * c) / (2 * pi))),
        "abs": (sympy.Abs(x),
                SymbolicForms(sqrt(2 / pi), sympy.Integer(0), sympy.Integer(1),
                              2 / pi * (sqrt(1 - c**2) + c * sympy.asin(c)))),
        "linear": (x, SymbolicForms(sympy.Integer(0), sympy.Integer(1), sympy.Integer(1), c)),
        "quadratic": (x**2, SymbolicForms(sympy.Integer(1), sympy.Integer(0), sympy.Integer(3), 1 + 2 * c**2)),
        "erf": (sympy.erf(x),
                SymbolicForms(sympy.Integer(0), 2 / sqrt(3 * pi), 2 / pi * sympy.asin(sympy.Rational(2, 3)),
                              2 / pi * sympy.asin(2 * c / 3))),
        "tanh": (sympy.tanh(x), SymbolicForms(mu0=sympy.Integer(0))),
        "sigmoid": (1 / (1 + sympy.exp(-x)), SymbolicForms(mu0=half)),
        "softplus": (sympy.log(1 + sympy.exp(x)), SymbolicForms(mu1=half)),
        "gelu": (x * (1 + sympy.erf(x / sqrt(2))) / 2,
                 SymbolicForms(1 / (2 * sqrt(pi)), half, sympy.Rational(1, 3) + 1 / (2 * sqrt(3) * pi),
                               c / 4 + (c * sympy.asin(c / 2) + 1 / sqrt(4 - c**2)) / (2 * pi))),
        "silu": (x / (1 + sympy.exp(-x)), SymbolicForms(mu1=half)),
    }


def _forms() -> dict[str, NamedForm]:
    sqrt, asin = mpmath.sqrt, mpmath.asin
    return {
        "relu": NamedForm(
            "relu", lambda u: np.maximum(u, 0.0), _mp_relu, 0,
            dict(mu0=_exact(lambda: 1 / sqrt(2 * _PI)), mu1=_const(1, 2), second_moment=_const(1, 2)),
            _exact_kernel(lambda c: (sqrt(1 - c * c) + (_PI - mpmath.acos(c)) * c) / (2 * _PI)),
            _relu_kernel, _relu_hermite_mp, relu_moments, relu_second_moment, kinks=(0.0,),
            reference="arc-cosine kernel of degree 1, Cho & Saul (2009)", homogeneous=1,
            kernel_gap=_relu_kernel_gap),
        "abs": NamedForm(
            "abs", np.abs, mpmath.fabs, 1,
            dict(mu0=_exact(lambda: sqrt(2 / _PI)), mu1=_const(0), second_moment=_const(1)),
            _exact_kernel(lambda c: 2 / _PI * (sqrt(1 - c * c) + c * asin(c))),
            _abs_kernel, _abs_hermite_mp, abs_moments, abs_second_moment, kinks=(0.0,),
            reference="|x| = 2 relu(x) - x and the arc-cosine kernel", homogeneous=1,
            kernel_gap=_abs_kernel_gap),
        "linear": NamedForm(
            "linear", lambda u: np.asarray(u, dtype=float) * 1.0, mpmath.mpf, -1,
            dict(mu0=_const(0), mu1=_const(1), second_moment=_const(1)),
            _exact_kernel(lambda c: +c),
            lambda u: np.asarray(u, dtype=float) * 1.0, _poly_hermite_mp((0, 1)), degree=1, poly=(0, 1)),
        "quadratic": NamedForm(
            "quadratic", lambda u: np.asarray(u, dtype=float) ** 2, lambda u: mpmath.mpf(u) ** 2, 1,
            dict(mu0=_const(1), mu1=_const(0), second_moment=_const(3)),
            _exact_kernel(lambda c: 1 + 2 * c * c),
            lambda u: 1.0 + 2.0 * u * u, _poly_hermite_mp((1, 0, 2)), degree=2, poly=(1, 0, 2)),
        "erf": NamedForm(
            "erf", erf, mpmath.erf, -1,
            dict(mu0=_const(0), mu1=_exact(lambda: 2 / sqrt(3 * _PI)),
                 second_moment=_exact(lambda: 2 / _PI * asin(mpmath.mpf(2) / 3))),
            _exact_kernel(lambda c: 2 / _PI * asin(2 * c / 3)),
            _erf_kernel, _erf_hermite_mp, erf_moments, erf_second_moment,
            reference="arcsine kernel, Williams (1997)"),
        "tanh": NamedForm(
            "tanh", np.tanh, mpmath.tanh, -1, dict(mu0=_const(0)), strip=math.pi / 2),  # poles at i pi/2
        "sigmoid": NamedForm(
            "sigmoid", _expit, _mp_sigmoid, 0,
            dict(mu0=_const(1, 2)), strip=math.pi),  # sigmoid - 1/2 is odd; poles at i pi
        "softplus": NamedForm(
            "softplus", lambda u: np.logaddexp(0.0, u), _mp_softplus, 0,
            dict(mu1=_const(1, 2)), strip=math.pi),  # Stein: E[g softplus(g)] = E[sigmoid(g)] = 1/2
        "gelu": NamedForm(
            "gelu", lambda u: u * ndtr(u), _mp_gelu, 0,
            dict(mu0=_exact(lambda: 1 / (2 * sqrt(_PI))), mu1=_const(1, 2),
                 second_moment=_exact(lambda: mpmath.mpf(1) / 3 + 1 / (2 * sqrt(3) * _PI))),
            _exact_kernel(lambda c: c / 4 + (c * asin(c / 2) + 1 / sqrt(4 - c * c)) / (2 * _PI)),
            _gelu_kernel, _gelu_hermite_mp, gelu_moments, gelu_second_moment,
            reference="Price's theorem: K'' = E[(2-g^2)phi(g)(2-g'^2)phi(g')] integrated twice"),
        "silu": NamedForm(
            "silu", lambda u: u * _expit(u), _mp_silu, 0,
            dict(mu1=_const(1, 2)), strip=math.pi),  # E[g^2 sigmoid(g)] = 1/2 (g^2 (sigmoid - 1/2) is odd)
    }


NAMED: dict[str, NamedForm] = _forms()

#: Alternative spellings accepted by :func:`pencils.activation`.
ALIASES = {"identity": "linear", "square": "quadratic", "logistic": "sigmoid", "swish": "silu"}
