"""Activations and their Gaussian-equivalence numbers (pencils.activation).

Every reference value is computed here, independently of the library: the activations
are re-implemented as plain mpmath functions (``REF``), one-dimensional expectations
use ``mpmath.quad`` at 25 digits, the kernel ``K(c)`` a nested (two-dimensional)
``mpmath.fp.quad``, polynomials exact sympy integration.
"""
import math
import re
import warnings

import mpmath
import numpy as np
import pytest
import sympy
from hypothesis import example, given, settings
from hypothesis import strategies as st

import pencils
from pencils.activation import (
    KNOWN_ACTIVATIONS,
    Activation,
    ActivationSpecError,
    QuadratureWarning,
    activation,
)

REQUIRED = ("relu", "abs", "linear", "quadratic", "erf", "tanh", "sigmoid", "softplus", "gelu", "silu")


def _sigmoid(ctx, x):
    # stable in double precision (fp.quad samples huge |x|)
    return 1 / (1 + ctx.exp(-x)) if x >= 0 else ctx.exp(x) / (1 + ctx.exp(x))


#: name -> (function of (ctx, x), kinks); ctx is mpmath.mp or mpmath.fp.
REF = {
    "relu": (lambda ctx, x: x if x > 0 else 0 * x, (0.0,)),
    "abs": (lambda ctx, x: abs(x), (0.0,)),
    "linear": (lambda ctx, x: x, ()),
    "quadratic": (lambda ctx, x: x * x, ()),
    "erf": (lambda ctx, x: ctx.erf(x), ()),
    "tanh": (lambda ctx, x: ctx.tanh(x), ()),
    "sigmoid": (_sigmoid, ()),
    "softplus": (lambda ctx, x: max(x, 0 * x) + ctx.log(1 + ctx.exp(-abs(x))), ()),
    "gelu": (lambda ctx, x: x * ctx.ncdf(x), ()),
    "silu": (lambda ctx, x: x * _sigmoid(ctx, x), ()),
}
ODD = ("erf", "tanh", "linear")
EVEN = ("abs", "quadratic")


@pytest.fixture(autouse=True)
def _reset_mpmath():
    dps = mpmath.mp.dps
    yield
    mpmath.mp.dps = dps


def gauss_expect(g, kinks=(), dps=25):
    """E g(xi), xi ~ N(0, 1), by mpmath.quad split at the kinks."""
    with mpmath.workdps(dps):
        pts = [-mpmath.inf] + sorted(mpmath.mpf(k) for k in kinks) + [mpmath.inf]
        return mpmath.quad(lambda x: g(x) * mpmath.npdf(x), pts)


def he(ctx, k, x):
    p0, p1 = ctx.mpf(1), x
    if k == 0:
        return p0
    for j in range(1, k):
        p0, p1 = p1, x * p1 - j * p0
    return p1


def reference_kernel(name, c):
    """K(c) = int phi(u) rho(u) [int phi(w) rho(c u + s w) dw] du, nested fp.quad split at kinks."""
    f, kinks = REF[name]
    fp = mpmath.fp
    maxdegree = 6 if kinks else 5  # 5 reaches 1e-15 for analytic rho, kinks need one more level
    s = math.sqrt(1.0 - c * c)

    def inner(u):
        pts = sorted([-fp.inf, fp.inf] + [(k - c * u) / s for k in kinks])
        return fp.quad(lambda w: fp.npdf(w) * f(fp, c * u + s * w), pts, maxdegree=maxdegree)

    pts = sorted([-fp.inf, fp.inf] + list(kinks))
    value, err = fp.quad(lambda u: fp.npdf(u) * f(fp, u) * inner(u), pts, maxdegree=maxdegree, error=True)
    assert err <= 1e-11  # a crude convergence guard (fp.quad estimates are coarse)
    return value


def reference_moment(name, m, s, k):
    """E[rho(m + s xi) He_k(xi)] by fp.quad (normalised error ~1e-16 sqrt(k!))."""
    f, kinks = REF[name]
    fp = mpmath.fp
    # finite limits: He_k(x) npdf(x) is inf * 0 in floats at the huge nodes of (-inf, inf)
    pts = sorted({-40.0, -8.0, -2.0, 0.0, 2.0, 8.0, 40.0} | {(q - m) / s for q in kinks if abs((q - m) / s) < 40})
    return fp.quad(lambda x: f(fp, m + s * x) * he(fp, k, x) * fp.npdf(x), pts)


# ------------------------------------------------------------------ names and construction

def test_known_names_and_case():
    assert set(REQUIRED) <= set(KNOWN_ACTIVATIONS)
    assert pencils.KNOWN_ACTIVATIONS == KNOWN_ACTIVATIONS
    for name in REQUIRED:
        act = pencils.activation(name.upper())
        assert isinstance(act, Activation) and act.name == name
    act = activation("relu")
    assert activation(act) is act
    assert activation("swish").name == "silu"


def test_activation_is_immutable():
    act = activation("tanh")
    with pytest.raises(AttributeError):
        act.name = "other"
    with pytest.raises(AttributeError):
        act.mu0 = 1.0


# ------------------------------------------------------------------ coefficients against mpmath

@pytest.mark.parametrize("name", REQUIRED)
def test_coefficients_match_mpmath_quadrature(name):
    f, kinks = REF[name]
    act = activation(name)
    fm = lambda x: f(mpmath.mp, x)  # noqa: E731
    mu0 = gauss_expect(fm, kinks)
    mu1 = gauss_expect(lambda x: x * fm(x), kinks)
    sec = gauss_expect(lambda x: fm(x) ** 2, kinks)
    for got, ref in [(act.mu0, mu0), (act.mu1, mu1), (act.second_moment, sec),
                     (act.mu_star_sq, sec - mu0**2 - mu1**2)]:
        assert isinstance(got, float)
        assert abs(got - float(ref)) <= 1e-13 * max(1.0, abs(float(ref)))
    # the high-precision path agrees to many more digits
    hp = act.coefficients_mp()
    assert abs(hp.mu0 - mu0) < 1e-22 and abs(hp.mu1 - mu1) < 1e-22
    assert abs(hp.second_moment - sec) < 1e-22


@pytest.mark.parametrize("name", ["relu", "erf", "gelu", "tanh"])
def test_sympy_closed_forms_match_quadrature(name):
    f, kinks = REF[name]
    act = activation(name)
    fm = lambda x: f(mpmath.mp, x)  # noqa: E731
    refs = {"mu0": gauss_expect(fm, kinks), "mu1": gauss_expect(lambda x: x * fm(x), kinks),
            "second_moment": gauss_expect(lambda x: fm(x) ** 2, kinks)}
    known = 0
    for key, ref in refs.items():
        expr = act.symbolic[key]
        if expr is not None:
            known += 1
            with mpmath.workdps(30):
                assert abs(mpmath.mpf(str(sympy.N(expr, 30))) - ref) < 1e-22
    assert known >= 1
    kern = act.symbolic.kernel
    if kern is not None:
        c = sympy.Symbol("c")
        # K(0) = mu0^2, K'(0) = mu1^2, K(1) = E rho^2, exactly
        assert sympy.simplify(kern.subs(c, 0) - act.symbolic.mu0**2) == 0
        assert sympy.simplify(sympy.diff(kern, c).subs(c, 0) - act.symbolic.mu1**2) == 0
        assert abs(sympy.N(kern.subs(c, 1) - act.symbolic.second_moment, 30)) < 1e-28
        for cv in (-0.9, 0.37):
            assert abs(float(kern.subs(c, cv)) - reference_kernel(name, cv)) < 1e-13


def test_closed_form_coefficients_verified_by_sympy_integration():
    x = sympy.Symbol("x", real=True)
    phi = sympy.exp(-x**2 / 2) / sympy.sqrt(2 * sympy.pi)
    half = lambda f: sympy.integrate(f * phi, (x, 0, sympy.oo))  # noqa: E731
    relu = activation("relu").symbolic
    assert sympy.simplify(relu.mu0 - half(x)) == 0
    assert sympy.simplify(relu.mu1 - half(x**2)) == 0
    assert sympy.simplify(relu.second_moment - half(x**2)) == 0
    absf = activation("abs").symbolic  # |x| = relu(x) + relu(-x)
    assert sympy.simplify(absf.mu0 - 2 * half(x)) == 0
    erf = activation("erf").symbolic
    assert sympy.simplify(erf.mu1 - sympy.integrate(x * sympy.erf(x) * phi, (x, -sympy.oo, sympy.oo))) == 0
    gelu = activation("gelu").symbolic
    cdf = sympy.erfc(-x / sympy.sqrt(2)) / 2
    assert sympy.simplify(gelu.mu1 - sympy.integrate(x**2 * cdf * phi, (x, -sympy.oo, sympy.oo))) == 0


@pytest.mark.parametrize("name", REQUIRED)
def test_kernel_matches_2d_quadrature(name):
    act = activation(name)
    cs = np.array([-0.9, -0.3, 0.0, 0.37, 0.8, 1.0])
    K = act.kernel(cs)
    assert K.shape == cs.shape
    f, kinks = REF[name]
    fm = lambda x: f(mpmath.mp, x)  # noqa: E731
    assert abs(K[2] - float(gauss_expect(fm, kinks)) ** 2) < 1e-13
    assert abs(K[5] - float(gauss_expect(lambda x: fm(x) ** 2, kinks))) < 1e-13 * max(1, K[5])
    for c, k in zip(cs[[0, 1, 3, 4]], K[[0, 1, 3, 4]]):
        assert abs(k - reference_kernel(name, float(c))) < 1e-13 * max(1.0, abs(k))


def test_kernel_mp_high_precision():
    relu = activation("relu")
    with mpmath.workdps(40):
        exact = (mpmath.sqrt(1 - mpmath.mpf("0.3") ** 2)
                 + (mpmath.pi - mpmath.acos(mpmath.mpf("0.3"))) * mpmath.mpf("0.3")) / (2 * mpmath.pi)
        assert abs(relu.kernel_mp("0.3", dps=40) - exact) < mpmath.mpf(10) ** -38
    tanh = activation("tanh")
    # |c| = 0.37: Mehler series of high-precision Hermite coefficients; 0.8: 2D trapezoidal rule
    for c in (0.37, 0.8):
        value = tanh.kernel_mp(c, dps=18)
        assert abs(float(value) - reference_kernel("tanh", c)) < 1e-14
        assert abs(float(value) - tanh.kernel(c)) < 1e-14
    assert tanh.kernel_mp(-1, dps=18) == pytest.approx(-tanh.second_moment, rel=1e-15)


def test_coefficients_mp_at_higher_precision():
    act = activation("tanh")
    hp = act.coefficients_mp(dps=40)
    with mpmath.workdps(45):
        ref = mpmath.quad(lambda x: x * mpmath.tanh(x) * mpmath.npdf(x), [-mpmath.inf, 0, mpmath.inf])
        assert abs(hp.mu1 - ref) < mpmath.mpf(10) ** -38
        assert hp.mu0 == 0


# ------------------------------------------------------------------ kernel identities and properties

@pytest.mark.parametrize("name", REQUIRED)
def test_kernel_identities(name):
    act = activation(name)
    assert act.kernel(1.0) == pytest.approx(act.second_moment, rel=1e-13, abs=1e-15)
    assert act.kernel(0.0) == pytest.approx(act.mu0**2, abs=1e-14)
    h = 1e-4  # central difference: error O(h^2 K''') ~ 1e-9
    slope = (act.kernel(h) - act.kernel(-h)) / (2 * h)
    assert slope == pytest.approx(act.mu1**2, abs=1e-7)
    assert isinstance(act.kernel(0.5), float)


@pytest.mark.parametrize("name", ODD)
def test_odd_activations(name):
    act = activation(name)
    assert abs(act.mu0) < 1e-15
    c = np.array([0.2, 0.55, 0.9])
    np.testing.assert_allclose(act.kernel(-c), -act.kernel(c), rtol=0, atol=1e-14)
    a = act.hermite_coefficients(12)
    scale = np.sqrt([math.factorial(k) for k in range(13)])
    assert np.all(np.abs(a[0::2]) <= 1e-14 * scale[0::2])
    assert np.any(np.abs(a[1::2]) > 1e-3)


@pytest.mark.parametrize("name", EVEN)
def test_even_activations(name):
    act = activation(name)
    assert abs(act.mu1) < 1e-15
    c = np.array([0.2, 0.55, 0.9])
    np.testing.assert_allclose(act.kernel(-c), act.kernel(c), rtol=0, atol=1e-14)
    a = act.hermite_coefficients(12)
    assert np.all(a[1::2] == 0.0)


@pytest.mark.parametrize("name", ["relu", "tanh", "erf", "gelu", "softplus", "quadratic", "sigmoid"])
@settings(max_examples=15)
@given(c1=st.floats(-1.0, 1.0), c2=st.floats(0.0, 1.0))
@example(c1=1.0, c2=1.0)
@example(c1=-1.0, c2=0.0)
@example(c1=0.0, c2=0.0)
def test_kernel_is_positive_definite_like(name, c1, c2):
    act = activation(name)
    e2 = act.second_moment
    assert abs(act.kernel(c1)) <= e2 * (1 + 1e-13)
    lo, hi = sorted((abs(c1), c2))
    assert act.kernel(lo) - act.mu0**2 >= -1e-15
    assert act.kernel(lo) <= act.kernel(hi) + 1e-15  # sum_k a_k^2 c^k / k! has c^k >= 0 terms


# ------------------------------------------------------------------ Hermite coefficients

@pytest.mark.parametrize("name", REQUIRED)
def test_hermite_coefficients_match_quadrature(name):
    f, kinks = REF[name]
    act = activation(name)
    a = act.hermite_coefficients(7)
    assert a.shape == (8,)
    for k in (2, 3, 4, 7):
        ref = gauss_expect(lambda x, k=k: f(mpmath.mp, x) * he(mpmath.mp, k, x), kinks, dps=20)
        assert abs(a[k] - float(ref)) <= 1e-13 * math.sqrt(math.factorial(k))


@pytest.mark.parametrize("name, order, tail", [
    ("relu", 150, 5e-3), ("abs", 150, 1e-2), ("tanh", 64, 1e-4), ("erf", 64, 1e-8),
    ("gelu", 64, 1e-8), ("sigmoid", 64, 1e-6), ("quadratic", 2, 0.0), ("linear", 1, 0.0)])
def test_parseval_partial_sums(name, order, tail):
    act = activation(name)
    a = act.hermite_coefficients(order)
    terms = np.array([float(mpmath.mpf(float(v)) ** 2 / mpmath.factorial(k)) for k, v in enumerate(a)])
    partial = np.cumsum(terms)
    assert np.all(np.diff(partial) >= 0)
    assert partial[-1] <= act.second_moment * (1 + 1e-13)
    assert act.second_moment - partial[-1] <= tail + 1e-14
    # the tail shrinks with the order
    half = partial[len(partial) // 2]
    assert act.second_moment - partial[-1] <= act.second_moment - half


def gaussian_mean(expr, x):
    """E expr(xi) for a polynomial in x, from E xi^n = (n-1)!! (n even)."""
    poly = sympy.Poly(sympy.expand(expr), x)
    return sum(coef * (sympy.factorial2(n - 1) if n % 2 == 0 else 0)
               for (n,), coef in poly.terms())


def test_polynomials_are_exact():
    y = sympy.Symbol("y")
    p = 3 * y**3 - y + 2
    act = activation(p)
    assert act.method == "polynomial"
    x = sympy.Symbol("x")
    q = p.subs(y, x)
    exact = [gaussian_mean(q * sympy.hermite_prob(k, x), x) for k in range(6)]
    assert exact[4] == 0 and exact[5] == 0
    np.testing.assert_array_equal(act.hermite_coefficients(5), [float(v) for v in exact])
    second = gaussian_mean(q**2, x)
    assert act.symbolic.second_moment == second
    assert act.symbolic.mu0 == exact[0] and act.symbolic.mu1 == exact[1]
    c = sympy.Symbol("c")
    assert sympy.expand(act.symbolic.kernel - sum(exact[k] ** 2 * c**k / sympy.factorial(k) for k in range(4))) == 0
    assert act.second_moment == float(second)
    # Gaussian moments at a rational point, exactly: E[p(m + s xi) He_j(xi)]; the float
    # contract is |error| <= 1e-14 sqrt(j!) sqrt(E p(m + s xi)^2) (rounding of the quadrature sum)
    m, s = sympy.Rational(1, 3), sympy.Integer(2)
    alpha = act.gaussian_moments(float(m), float(s), 5)
    ref2 = gaussian_mean(q.subs(x, m + s * x) ** 2, x)
    for j in range(6):
        ref = gaussian_mean(q.subs(x, m + s * x) * sympy.hermite_prob(j, x), x)
        assert abs(alpha[j] - float(ref)) <= 1e-14 * math.sqrt(math.factorial(j) * float(ref2))
    assert float(act.gaussian_second_moment(float(m), float(s))) == pytest.approx(float(ref2), rel=1e-14)


# ------------------------------------------------------------------ the three spellings agree

def test_name_sympy_callable_agree_relu():
    y = sympy.Symbol("y")
    named = activation("relu")
    assert activation(sympy.Max(0, y)) is named
    assert activation(sympy.Piecewise((y, y > 0), (0, True))) is named
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the kink is located numerically: no accuracy warning
        opaque = activation(lambda x: max(x, 0.0))
        assert opaque.kinks == (0.0,)
        for attr in ("mu0", "mu1", "second_moment", "mu_star_sq"):
            assert getattr(opaque, attr) == pytest.approx(getattr(named, attr), abs=1e-13)
        k = opaque.kernel(0.4)
    # the reported accuracy is honest: the error is below it
    assert abs(k - named.kernel(0.4)) <= max(opaque.kernel_error(0.4), 1e-15)
    assert abs(k - named.kernel(0.4)) < 1e-14


@pytest.mark.parametrize("name, func", [("erf", math.erf), ("tanh", np.tanh)])
def test_name_sympy_callable_agree_smooth(name, func):
    y = sympy.Symbol("y")
    named = activation(name)
    assert activation(getattr(sympy, name)(y)) is named
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # smooth: no accuracy warning
        opaque = activation(func)
        assert opaque.method == "quadrature"
        for attr in ("mu0", "mu1", "second_moment", "mu_star_sq"):
            assert getattr(opaque, attr) == pytest.approx(getattr(named, attr), abs=1e-13)
        c = np.array([-0.8, 0.3, 0.95])
        np.testing.assert_allclose(opaque.kernel(c), named.kernel(c), rtol=0, atol=1e-13)
        norm = np.sqrt([math.factorial(j) for j in range(21)])
        np.testing.assert_allclose(opaque.gaussian_moments([0.4, -1.0], [0.7, 1.1], 20) / norm,
                                   named.gaussian_moments([0.4, -1.0], [0.7, 1.1], 20) / norm,
                                   rtol=0, atol=1e-12)


def test_kinked_sympy_expression_is_integrated_exactly():
    y = sympy.Symbol("y")
    leaky = activation(sympy.Max(y, y / 10))  # = 0.9 relu(y) + 0.1 y, kink found at 0
    assert leaky.kinks == (0.0,) and leaky.method == "quadrature"
    relu = activation("relu")
    assert leaky.mu0 == pytest.approx(0.9 * relu.mu0, abs=1e-15)
    assert leaky.mu1 == pytest.approx(0.55, abs=1e-15)
    # E (0.9 relu + 0.1 g)^2 = 0.81/2 + 0.18 E[g relu(g)] + 0.01
    assert leaky.second_moment == pytest.approx(0.505, abs=1e-15)
    hard = activation(sympy.Max(-1, sympy.Min(1, y)))  # hard tanh, kinks at -1 and 1
    assert hard.kinks == (-1.0, 1.0) and hard.parity == -1
    # E[g hardtanh(g)] = P(|g| < 1) = erf(1/sqrt 2)
    assert hard.mu1 == pytest.approx(math.erf(1 / math.sqrt(2)), abs=1e-15)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the float rules split at the kinks: no accuracy warning
        a0 = float(hard.gaussian_moments(0.3, 0.8, 4)[0])
    # E clip(X, -1, 1), X ~ N(0.3, 0.8^2)
    Phi = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731
    phi = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    lo, hi = (-1 - 0.3) / 0.8, (1 - 0.3) / 0.8
    exact = -Phi(lo) + (1 - Phi(hi)) + 0.3 * (Phi(hi) - Phi(lo)) + 0.8 * (phi(lo) - phi(hi))
    assert a0 == pytest.approx(exact, abs=1e-14)


def test_generic_sympy_expression():
    y = sympy.Symbol("y")
    act = activation(y * sympy.tanh(y))  # even, no closed form
    assert act.method == "quadrature" and act.parity == 1
    ref = gauss_expect(lambda x: x * mpmath.tanh(x))
    assert act.mu0 == pytest.approx(float(ref), abs=1e-14)
    assert abs(act.mu1) < 1e-15


# ------------------------------------------------------------------ Gaussian moments

MOMENT_NAMES = ["relu", "abs", "erf", "gelu", "tanh", "sigmoid", "softplus", "silu", "quadratic"]


@settings(max_examples=12)
@given(name=st.sampled_from(MOMENT_NAMES), mean=st.floats(-3.0, 3.0), std=st.floats(0.05, 2.0))
@example(name="relu", mean=0.0, std=1.0)
@example(name="tanh", mean=0.0, std=1.9)
@example(name="softplus", mean=-3.0, std=0.05)
def test_gaussian_moments_match_quadrature(name, mean, std):
    act = activation(name)
    alpha = act.gaussian_moments(mean, std, 40)
    assert alpha.shape == (41,)
    scale = math.sqrt(act.second_moment) + math.sqrt(float(act.gaussian_second_moment(mean, std)))
    for k in (0, 1, 2, 5, 17, 40):
        ref = reference_moment(name, mean, std, k)
        assert abs(alpha[k] - ref) <= 1e-12 * math.sqrt(math.factorial(k)) * scale, k
    f, kinks = REF[name]
    fp = mpmath.fp
    pts = sorted([-fp.inf, fp.inf] + [(q - mean) / std for q in kinks])
    ref2 = fp.quad(lambda x: f(fp, mean + std * x) ** 2 * fp.npdf(x), pts)
    assert float(act.gaussian_second_moment(mean, std)) == pytest.approx(ref2, rel=1e-12, abs=1e-13)


@pytest.mark.parametrize("name", REQUIRED)
def test_gaussian_moments_at_standard_normal_are_hermite_coefficients(name):
    act = activation(name)
    a = act.gaussian_moments(0.0, 1.0, 12)
    ref = act.hermite_coefficients(12)
    scale = np.sqrt([math.factorial(k) for k in range(13)])
    assert np.all(np.abs(a - ref) <= 1e-13 * scale)
    assert float(act.gaussian_second_moment(0.0, 1.0)) == pytest.approx(act.second_moment, rel=1e-13)


@pytest.mark.parametrize("name", ["relu", "tanh", "gelu", "abs"])
def test_mehler_expansion_reproduces_bivariate_expectation(name):
    act = activation(name)
    (m1, s1), (m2, s2), r = (0.7, 0.9), (-0.4, 1.3), 0.45
    order = 60  # r^61 < 1e-21
    alpha = act.gaussian_moments([m1, m2], [s1, s2], order)
    fact = np.array([float(math.factorial(j)) for j in range(order + 1)])
    mehler = np.sum(r ** np.arange(order + 1) / fact * alpha[0] * alpha[1])
    f, kinks = REF[name]
    fp = mpmath.fp
    q = math.sqrt(1 - r * r)

    def inner(x):  # v = m2 + s2 (r x + q z)
        pts = sorted([-fp.inf, fp.inf] + [((k - m2) / s2 - r * x) / q for k in kinks])
        return fp.quad(lambda z: fp.npdf(z) * f(fp, m2 + s2 * (r * x + q * z)), pts, maxdegree=5)

    pts = sorted([-fp.inf, fp.inf] + [(k - m1) / s1 for k in kinks])
    ref = fp.quad(lambda x: fp.npdf(x) * f(fp, m1 + s1 * x) * inner(x), pts, maxdegree=5)
    assert mehler == pytest.approx(ref, abs=1e-12)


def test_gaussian_moments_shapes_and_degenerate_std():
    act = activation("tanh")
    means = np.linspace(-1, 1, 12).reshape(3, 4)
    alpha = act.gaussian_moments(means, np.full(4, 0.6), 5)
    assert alpha.shape == (3, 4, 6)
    np.testing.assert_allclose(alpha[1, 2], act.gaussian_moments(means[1, 2], 0.6, 5), rtol=0, atol=1e-15)
    assert act.gaussian_second_moment(means, 0.6).shape == (3, 4)
    zero = act.gaussian_moments([0.3, -2.0], 0.0, 3)
    np.testing.assert_array_equal(zero, [[np.tanh(0.3), 0, 0, 0], [np.tanh(-2.0), 0, 0, 0]])
    for name in ("relu", "erf", "quadratic"):
        assert activation(name).gaussian_moments(1.5, 0.0, 2).tolist() == [activation(name)(1.5), 0.0, 0.0]
    # a tiny std is continuous with std = 0
    assert act.gaussian_moments(0.3, 1e-9, 1)[0] == pytest.approx(np.tanh(0.3), abs=1e-15)


def test_relu_moments_far_tails_are_finite():
    relu = activation("relu")
    alpha = relu.gaussian_moments([-60.0, 60.0, 1.0], [1.0, 1.0, 1e-12], 80)
    assert np.all(np.isfinite(alpha))
    assert alpha[1, 0] == pytest.approx(60.0) and alpha[1, 1] == pytest.approx(1.0)
    assert np.all(alpha[0] == 0.0)


# ------------------------------------------------------------------ mu_s^2 and mu_f^2

@pytest.mark.parametrize("name", ["relu", "tanh", "erf", "quadratic"])
def test_mu_s_and_mu_f(name):
    act = activation(name)
    assert act.mu_s_sq(0.0) == 0.0
    assert act.mu_s_sq(1.0) == pytest.approx(act.mu_star_sq, abs=1e-14)
    assert act.mu_f_sq(1.0) == pytest.approx(0.0, abs=1e-14)
    assert act.mu_f_sq(0.0) == pytest.approx(act.mu_star_sq, abs=1e-15)
    a = np.linspace(0.0, 1.0, 41)
    ms = act.mu_s_sq(a)
    assert ms.shape == a.shape and np.all(np.diff(ms) >= -1e-15)
    np.testing.assert_allclose(ms + act.mu_f_sq(a), act.mu_star_sq, rtol=0, atol=1e-14)
    # the series branch (a_sq <= 1/4) agrees with the direct formula
    for v in (0.25, 0.2):
        direct = act.kernel(v) - act.mu0**2 - act.mu1**2 * v
        assert act.mu_s_sq(v) == pytest.approx(direct, abs=1e-15)
    # and keeps relative accuracy where the direct formula cancels: mu_s^2 ~ a_2^2 a^4 / 2
    a2 = act.hermite_coefficients(2)[2]
    if a2 != 0:
        assert act.mu_s_sq(1e-6) == pytest.approx(a2**2 * 1e-12 / 2, rel=1e-4)


# ------------------------------------------------------------------ bad input

Y = sympy.Symbol("y")


@pytest.mark.parametrize("spec, words", [
    ("no_such_activation", "known names: relu"),
    (3.5, "cannot make an activation"),
    (None, "cannot make an activation"),
    (sympy.Integer(2), "exactly one free symbol"),
    (Y * sympy.Symbol("z"), "exactly one free symbol"),
    (sympy.exp(Y**2), "Gaussian second moment"),
    (sympy.exp(Y**2 / 4), "Gaussian second moment"),
    (1 / Y, "Gaussian second moment is not finite"),
    (1 / (Y - sympy.Rational(3, 10)), "Gaussian second moment is not finite"),
    (lambda x: 1 / x, "Gaussian second moment is not finite"),
    (lambda x: math.exp(x**2 / 4), "Gaussian second moment"),
    (sympy.sqrt(Y), "real-valued"),
    (sympy.I * Y, "real-valued"),
    (lambda x: 1j * x, "real-valued"),
    (math.sqrt, "real-valued"),
    (np.log, "real-valued"),
])
def test_bad_activation_specs(spec, words):
    with pytest.raises(ValueError, match=words):
        activation(spec)


def test_wrong_type_is_also_a_type_error():
    with pytest.raises(TypeError):
        activation(3.5)
    assert issubclass(ActivationSpecError, ValueError)


@pytest.mark.parametrize("call, words", [
    (lambda a: a.kernel(1.5), "c must lie in"),
    (lambda a: a.kernel(np.array([0.1, -1.1])), "c must lie in"),
    (lambda a: a.kernel(float("nan")), "c must not be NaN"),
    (lambda a: a.mu_s_sq(-0.1), "a_sq must lie in"),
    (lambda a: a.mu_s_sq(1.2), "a_sq must lie in"),
    (lambda a: a.mu_f_sq(float("nan")), "a_sq must not be NaN"),
    (lambda a: a.gaussian_moments(0.0, -1.0, 3), "std must be >= 0"),
    (lambda a: a.gaussian_moments(float("nan"), 1.0, 3), "mean must be finite"),
    (lambda a: a.gaussian_moments(0.0, 1.0, -1), "order must be"),
    (lambda a: a.gaussian_moments(0.0, 1.0, 2.5), "order must be"),
    (lambda a: a.gaussian_second_moment(0.0, float("inf")), "std must be finite"),
    (lambda a: a.hermite_coefficients(1000), "order must be <="),
    (lambda a: a.kernel_mp(2), "c must lie in"),
])
def test_bad_arguments(call, words):
    with pytest.raises(ValueError, match=words):
        call(activation("tanh"))


def test_bad_dps():
    with pytest.raises(ValueError, match="dps"):
        activation("relu", dps=5)


def test_range_slack_is_tolerated():
    act = activation("relu")
    assert act.kernel(1 + 1e-13) == pytest.approx(0.5, abs=1e-15)
    assert act.mu_s_sq(-1e-13) == 0.0


def test_non_smooth_callable_kink_is_located_and_used():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        act = activation(lambda x: abs(x - 0.3))
        assert act.kinks == pytest.approx((0.3,), abs=1e-9)
        a0 = float(act.gaussian_moments(0.2, 1.0, 4)[0])  # E|N(-0.1, 1)|, split at the located kink
    assert issubclass(QuadratureWarning, UserWarning)
    exact = math.sqrt(2 / math.pi) * math.exp(-0.005) - 0.1 * math.erf(-0.1 / math.sqrt(2))
    assert a0 == pytest.approx(exact, abs=1e-13)
    # the mpmath path still finds the kink: E|g - 0.3| = 2 phi(0.3) + 0.3 (2 Phi(0.3) - 1)
    exact = 2 * math.exp(-0.045) / math.sqrt(2 * math.pi) + 0.3 * math.erf(0.3 / math.sqrt(2))
    assert act.mu0 == pytest.approx(exact, abs=1e-13)


# ------------------------------------------------------------------ structured data: any variance

def _mp_pair_reference(f, v, c, kinks=()):
    """Independent E[f(h) f(h')] (variance v, covariance c): nested mpmath Gauss-Legendre, split at kinks."""
    sv = mpmath.sqrt(v)
    r = c / v
    s = mpmath.sqrt(1 - r * r)
    L = 9

    def inner(u):
        pts = sorted({-L, 0, L} | {(k / sv - r * u) / s for k in kinks if abs((k / sv - r * u) / s) < L})
        return mpmath.quad(lambda w: mpmath.npdf(w) * f(sv * (r * u + s * w)), pts, method="gauss-legendre")

    pts = sorted({-L, 0, L} | {k / sv for k in kinks})
    return mpmath.quad(lambda u: mpmath.npdf(u) * f(sv * u) * inner(u), pts, method="gauss-legendre")


def _mp_one_dim(f, v, kinks=()):
    sv = mpmath.sqrt(v)
    pts = sorted({-mpmath.inf, mpmath.inf} | {k / sv for k in kinks})
    mean = mpmath.quad(lambda u: mpmath.npdf(u) * f(sv * u), pts)
    first = mpmath.quad(lambda u: mpmath.npdf(u) * sv * u * f(sv * u), pts)
    second = mpmath.quad(lambda u: mpmath.npdf(u) * f(sv * u) ** 2, pts)
    return mean, first / v, second


@pytest.mark.parametrize("name", ["relu", "tanh", "erf", "quadratic", "gelu"])
def test_equivalence_constants_at_unit_variance_are_the_isotropic_ones(name):
    act = activation(name)
    c = np.array([0.0, 0.1, 0.3679, 0.9])
    mu0, mu1, star, shared, fresh = act.equivalence_constants(1.0, c)
    assert mu0.shape == c.shape
    np.testing.assert_array_equal(mu0, act.mu0)
    np.testing.assert_array_equal(mu1, act.mu1)
    np.testing.assert_array_equal(star, act.mu_star_sq)
    np.testing.assert_array_equal(shared, act.mu_s_sq(c))
    np.testing.assert_allclose(fresh, act.mu_f_sq(c), rtol=0, atol=1e-16)


@pytest.mark.parametrize("name, f, kinks, v, c", [
    ("relu", lambda z: max(z, 0), (0,), 2.3, 0.9),
    ("tanh", mpmath.tanh, (), 2.3, 0.9),
])
def test_equivalence_constants_match_mpmath_2d_quadrature(name, f, kinks, v, c):
    with mpmath.workdps(15):
        kern = _mp_pair_reference(f, mpmath.mpf(v), mpmath.mpf(c), kinks)
        mean, mu1, second = _mp_one_dim(f, mpmath.mpf(v), kinks)
    got = activation(name).equivalence_constants(v, c)
    assert got[0] == pytest.approx(float(mean), abs=1e-14)
    assert got[1] == pytest.approx(float(mu1), rel=1e-13)
    assert got[2] == pytest.approx(float(second - mean**2 - mu1**2 * v), rel=1e-12)
    assert got[3] == pytest.approx(float(kern - mean**2 - mu1**2 * c), rel=1e-11, abs=1e-15)


@pytest.mark.parametrize("v, c", [(0.6, -0.2), (3.0, 2.5), (1.37, 0.5)])
def test_equivalence_constants_closed_forms_at_any_variance(v, c):
    """relu: arc-cosine kernel, degree 1 homogeneous (Cho & Saul 2009); erf: arcsine (Williams 1997)."""
    r = c / v
    relu = activation("relu").equivalence_constants(v, c)
    kern = v * (math.sqrt(1 - r * r) + (math.pi - math.acos(r)) * r) / (2 * math.pi)
    mu0 = math.sqrt(v / (2 * math.pi))
    assert relu[0] == pytest.approx(mu0, rel=1e-14) and relu[1] == pytest.approx(0.5, rel=1e-14)
    assert relu[2] == pytest.approx(v / 2 - mu0**2 - v / 4, rel=1e-13)
    assert relu[3] == pytest.approx(kern - mu0**2 - c / 4, rel=1e-11, abs=1e-15)
    erf = activation("erf").equivalence_constants(v, c)
    mu1 = 2 / math.sqrt(math.pi * (1 + 2 * v))
    assert erf[1] == pytest.approx(mu1, rel=1e-13)
    assert erf[3] == pytest.approx(2 / math.pi * math.asin(2 * c / (1 + 2 * v)) - mu1**2 * c, rel=1e-11, abs=1e-15)
    assert erf[4] == pytest.approx(erf[2] - erf[3], abs=1e-15)


def test_equivalence_constants_mp_relu_closed_form():
    v, c = mpmath.mpf("2.5"), mpmath.mpf("0.7")
    with mpmath.workdps(30):
        got = activation("relu").equivalence_constants_mp(v, c, dps=25)
        r = c / v
        kern = v * (mpmath.sqrt(1 - r * r) + (mpmath.pi - mpmath.acos(r)) * r) / (2 * mpmath.pi)
        mu0 = mpmath.sqrt(v / (2 * mpmath.pi))
        assert abs(got[0] - mu0) < mpmath.mpf(10) ** -24
        assert abs(got[3] - (kern - mu0**2 - c / 4)) < mpmath.mpf(10) ** -24


@pytest.mark.parametrize("v, c, words", [
    (0.0, 0.0, "variance must be > 0"), (1.0, 1.5, "covariance must satisfy"), (np.nan, 0.1, "finite"),
])
def test_equivalence_constants_bad_input(v, c, words):
    with pytest.raises(ValueError, match=words):
        activation("relu").equivalence_constants(v, c)


# ------------------------------------------------------------------ kinked activations

_XK = sympy.Symbol("x")
KINKED = sympy.Max(_XK, _XK / 10) + sympy.cos(_XK) / 3


def _kinked_reference(c, v=1):
    """E[rho(h) rho(h')] for rho = max(z, z/10) + cos(z)/3: inner expectation in closed form,
    outer mpmath quadrature split at the kink (independent of the package)."""
    sv = mpmath.sqrt(v)
    r = mpmath.mpf(c) / v
    s = mpmath.sqrt(1 - r * r)
    f = lambda z: max(z, z / 10) + mpmath.cos(z) / 3  # noqa: E731

    def inner(u):
        mu, sig = sv * r * u, sv * s
        relu = mu * mpmath.ncdf(mu / sig) + sig * mpmath.npdf(mu / sig)
        return mu / 10 + mpmath.mpf(9) / 10 * relu + mpmath.cos(mu) * mpmath.exp(-sig * sig / 2) / 3

    return mpmath.quad(lambda u: mpmath.npdf(u) * f(sv * u) * inner(u), [-mpmath.inf, 0, mpmath.inf])


def test_kinked_sympy_activation_mu_s_sq_matches_mpmath():
    act = activation(KINKED)
    assert act.kinks == (0.0,)
    with mpmath.workdps(20):
        mu0, mu1, second = _mp_one_dim(lambda z: max(z, z / 10) + mpmath.cos(z) / 3, mpmath.mpf(1), (0,))
        for a_sq in (0.1, 0.3679, 0.8):
            ref = _kinked_reference(mpmath.mpf(a_sq)) - mu0**2 - mu1**2 * a_sq
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                got = act.mu_s_sq(a_sq)
            assert abs(got - float(ref)) <= 1e-10 * float(ref)
        # at another variance, as the structured-data constants need
        v, c = mpmath.mpf("1.7"), mpmath.mpf("0.6")
        mu0, mu1, _ = _mp_one_dim(lambda z: max(z, z / 10) + mpmath.cos(z) / 3, v, (0,))
        ref = _kinked_reference(c, v) - mu0**2 - mu1**2 * c
        assert abs(act.equivalence_constants(1.7, 0.6)[3] - float(ref)) <= 1e-10 * float(ref)


def test_kinked_sympy_activation_high_precision():
    act = activation(KINKED)
    with mpmath.workdps(25):
        got = act.kernel_mp("0.3679", dps=16)
        assert abs(got - _kinked_reference(mpmath.mpf("0.3679"))) < mpmath.mpf(10) ** -15


@pytest.mark.parametrize("func", [
    lambda x: np.maximum(x, 0.1 * x) + np.cos(x) / 3,
    lambda x: max(x, x / 10) + math.cos(x) / 3,  # maps mpf to mpf, but cos is computed in floats
])
def test_double_precision_callable_refuses_high_precision(func):
    act = activation(func)
    with pytest.raises(ValueError, match="double precision"):
        act.kernel_mp(0.5, dps=30)
    with pytest.raises(ValueError, match="double precision"):
        act.equivalence_constants_mp(2.0, 0.5, dps=30)


def test_arbitrary_precision_callable_keeps_its_digits():
    act = activation(lambda x: max(x, x / 10) + mpmath.cos(x) / 3)
    with mpmath.workdps(25):
        got = act.kernel_mp("0.3679", dps=16)
        assert abs(got - _kinked_reference(mpmath.mpf("0.3679"))) < mpmath.mpf(10) ** -15


@pytest.mark.parametrize("k0", [0.37, -1.234, 0.81])
def test_callable_kink_located_and_reported_accuracy_is_honest(k0):
    """A kink at an arbitrary point of a Python callable: located numerically; and with the kink
    hidden from the quadrature, the reported error estimate still bounds the true error."""
    from pencils.activation.quadrature import _gl_pair_with_error
    slope = mpmath.mpf("0.1")
    star = k0 / 0.9

    def reference(c):
        r = mpmath.mpf(c)
        s = mpmath.sqrt(1 - r * r)
        f = lambda z: max(z - k0, slope * z)  # noqa: E731

        def inner(u):
            mu, sig = r * u, s
            a = (mu - star) / sig
            return slope * mu + (1 - slope) * ((mu - star) * mpmath.ncdf(a) + sig * mpmath.npdf(a))

        return mpmath.quad(lambda u: mpmath.npdf(u) * f(u) * inner(u), [-mpmath.inf, star, mpmath.inf])

    fn = lambda x: np.maximum(x - k0, 0.1 * x)  # noqa: E731
    act = activation(fn)
    assert act.kinks == pytest.approx((star,), abs=1e-9)
    with mpmath.workdps(20):
        for c in (0.3, 0.9):
            ref = float(reference(c))
            assert abs(act.kernel(c) - ref) <= act.kernel_error(c)
            assert abs(act.kernel(c) - ref) < 1e-13
            blind, err = _gl_pair_with_error(fn, (), 1.0, c, robust=True)  # kink unknown
            assert abs(blind[3] - ref) <= err[3]
            assert err[3] < 1e-4


def test_kinked_sympy_gaussian_moments_match_mpmath():
    """The Monte Carlo's Gaussian moments alpha_j(m, s) are split at the kinks too (no warning)."""
    act = activation(KINKED)
    m, s = np.array([0.3, -1.2]), np.array([0.8, 1.3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        alpha = act.gaussian_moments(m, s, 7)
        second = act.gaussian_second_moment(m, s)
    f = lambda z: max(z, z / 10) + mpmath.cos(z) / 3  # noqa: E731
    with mpmath.workdps(20):
        for i in range(2):
            pts = [-mpmath.inf, -m[i] / s[i], mpmath.inf]
            for j in (0, 1, 7):
                ref = mpmath.quad(lambda xi: mpmath.npdf(xi) * f(m[i] + s[i] * xi)
                                  * mpmath.hermite(j, xi / mpmath.sqrt(2)) * 2 ** (-mpmath.mpf(j) / 2), pts)
                assert abs(alpha[i, j] - float(ref)) <= 1e-13 * math.sqrt(math.factorial(j))
            ref = mpmath.quad(lambda xi: mpmath.npdf(xi) * f(m[i] + s[i] * xi) ** 2, pts)
            assert second[i] == pytest.approx(float(ref), rel=1e-13)
