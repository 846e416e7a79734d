"""From a specification to an :class:`~pencils.activation.core.Activation`: a name
(:data:`KNOWN_ACTIVATIONS` and aliases), a sympy expression in one symbol or a Python callable;
the checks that reject bad ones (complex, not finite, too heavy-tailed) and the sympy helpers
(kinks, matching a named activation, exact Hermite coefficients of a polynomial)."""
from __future__ import annotations

import functools
import math
import numbers
import sys
import warnings
from typing import TYPE_CHECKING, Callable

import mpmath
import numpy as np

if TYPE_CHECKING:  # annotations only
    import sympy

from .closed_forms import ALIASES, NAMED, SymbolicForms, symbols as _symbols
from .common import FLOAT_TOL, ActivationSpecError, QuadratureWarning, _check_dps, _check_growth
from .core import Activation
from .quadrature import _detect_kinks

# sympy is imported inside the functions that handle sympy expressions: a named activation
# (and a Python callable) never needs it, and ``import sympy`` costs about 0.35 s.

#: Canonical names accepted by :func:`activation` (case-insensitive).
KNOWN_ACTIVATIONS: tuple[str, ...] = tuple(NAMED)


# =========================================================================== spec parsing helpers

def _sample_points() -> np.ndarray:
    base = [0.0, 0.123, 0.5, 1.0, 1.7, 2.5, 3.3, 4.9, 7.1, 10.3, math.pi / 4, 2.0 / 3.0]
    return np.array(sorted({v for b in base for v in (b, -b)}))


def _as_vectorised(func: Callable) -> Callable[[np.ndarray], np.ndarray]:
    """``func`` itself when it maps arrays elementwise, else ``np.vectorize(func)``."""
    probe = np.array([-1.3, 0.0, 0.4, 2.2])
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = np.asarray(func(probe))
            single = [complex(func(float(v))) for v in probe[[0, 2]]]
        if out.shape == probe.shape and np.allclose(out[[0, 2]], single, rtol=1e-12, atol=1e-300,
                                                    equal_nan=True):
            return func
    except Exception:  # noqa: BLE001 - any failure means "not vectorised"
        pass
    vec = np.vectorize(func, otypes=[float])

    def vectorised(u):
        u = np.asarray(u, dtype=float)
        try:
            return vec(u)
        except TypeError:  # complex results cannot be cast to float
            return np.vectorize(func, otypes=[complex])(u)
    return vectorised


def _mp_wrapper(func: Callable) -> tuple[Callable, bool]:
    """An mpmath-scalar version of a callable and whether it keeps arbitrary precision.

    The callable counts as arbitrary-precision when it maps mpf to mpf (or int) at
    a few points, at least one value moves under a ``1e-30`` perturbation, and the slope
    seen by that perturbation agrees with the slope over ``1e-12`` (a part computed in
    floats inside, e.g. ``math.cos`` of an mpf, would stay frozen); otherwise it is
    evaluated in double precision.
    """
    exact = False
    try:
        with mpmath.workdps(40):
            for p in ("0.3333", "-0.6667", "1.7", "-3.3"):
                x = mpmath.mpf(p)
                v = func(x)
                if not isinstance(v, (mpmath.mpf, numbers.Integral)) or isinstance(v, bool):
                    exact = False
                    break
                # derivative seen by a 1e-30 step vs a 1e-12 step: they agree (to ~1e-12) only when
                # every part of func keeps the precision; a part computed in floats (math.cos of an
                # mpf, say) is frozen under the tiny step and the two slopes differ
                tiny = (func(x + mpmath.mpf(10) ** -30) - v) * mpmath.mpf(10) ** 30
                small = (func(x + mpmath.mpf(10) ** -12) - v) * mpmath.mpf(10) ** 12
                if abs(tiny - small) > 1e-6 * (1 + abs(small)):
                    exact = False
                    break
                if tiny != 0:
                    exact = True
    except Exception:  # noqa: BLE001 - anything else: use double precision
        exact = False
    if exact:
        return (lambda x: mpmath.mpf(func(x))), True

    def via_float(x):
        v = func(float(x))
        if isinstance(v, complex) or np.iscomplexobj(v):
            return mpmath.mpc(complex(v))
        return mpmath.mpf(float(v))
    return via_float, False


def _check_real_finite(fn: Callable[[np.ndarray], np.ndarray], name: str) -> None:
    xs = _sample_points()
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            v = np.asarray(fn(xs))
        except Exception:  # noqa: BLE001 - find the offending point one by one
            for x in xs:
                try:
                    fn(np.array([x]))
                except Exception as exc:  # noqa: BLE001
                    raise ValueError(
                        f"rho = {name} could not be evaluated at x = {x:g}: {exc!r}. rho must be "
                        "real-valued and finite on the whole real line (otherwise the Gaussian "
                        "second moment is not finite)") from None
            raise
    if np.iscomplexobj(v):
        bad = np.abs(v.imag) > 1e-12 * (1.0 + np.abs(v.real))
        if np.any(bad):
            x = xs[np.argmax(bad)]
            raise ValueError(f"rho must be real-valued: {name} is complex at x = {x:g}")
        v = v.real
    v = v.astype(float)
    if np.any(np.isnan(v)):
        x = xs[np.argmax(np.isnan(v))]
        raise ValueError(f"rho must be real-valued and finite: {name} is NaN at x = {x:g} "
                         "(e.g. a square root or logarithm of a negative number)")
    if np.any(np.isinf(v)):
        x = xs[np.argmax(np.isinf(v))]
        raise ValueError(f"Gaussian second moment is not finite: {name} is infinite at x = {x:g}")


def _real_roots(f: sympy.Expr) -> set[float]:
    """Real zeros of ``f(x)`` in ``(-60, 60)``: exact for polynomials of degree <= 4, else the
    sign changes on a fine grid refined by bisection in mpmath."""
    import sympy

    X = _symbols()[0]
    f = sympy.sympify(f)
    if not f.has(X):
        return set()
    try:
        poly = sympy.Poly(f, X)
        if 0 < poly.degree() <= 4 and all(cf.is_number for cf in poly.coeffs()):
            return {float(r) for r in poly.real_roots() if abs(float(r)) < 60}
    except sympy.PolynomialError:
        pass
    try:
        fn = sympy.lambdify(X, f, modules=["scipy", "numpy"])
        fn_mp = sympy.lambdify(X, f, modules="mpmath")
        grid = np.linspace(-60.0, 60.0, 24001)
        with np.errstate(all="ignore"):
            v = np.real(np.asarray(fn(grid), dtype=complex)) * np.ones_like(grid)
    except Exception:  # noqa: BLE001 - cannot evaluate: no kink information
        return set()
    roots = set()
    for i in np.nonzero(np.sign(v[:-1]) * np.sign(v[1:]) <= 0)[0]:
        if v[i] == 0:
            roots.add(float(grid[i]))
            continue
        try:
            with mpmath.workdps(30):
                r = mpmath.findroot(lambda t: mpmath.re(fn_mp(t)), (grid[i], grid[i + 1]), solver="anderson")
            roots.add(float(r))
        except Exception:  # noqa: BLE001 - a pole, not a root
            continue
    return roots


def _sympy_kinks(expr: sympy.Expr) -> tuple[tuple[float, ...], bool]:
    """Real points where ``expr`` may be non-smooth, and whether any non-smooth atom was seen.

    Max/Min/Piecewise contribute the boundaries of the ``Piecewise`` rewrite, Abs, sign
    and Heaviside the zeros of their arguments.
    """
    import sympy

    args = [atom.args[0] for atom in expr.atoms(sympy.Abs, sympy.sign, sympy.Heaviside)]
    if expr.has(sympy.Max, sympy.Min, sympy.Piecewise):
        try:
            folded = sympy.piecewise_fold(expr.rewrite(sympy.Piecewise))
        except Exception:  # noqa: BLE001
            folded = expr
        for pw in folded.atoms(sympy.Piecewise):
            for _, cond in pw.args:
                args += [rel.lhs - rel.rhs for rel in cond.atoms(sympy.core.relational.Relational)]
        for atom in folded.atoms(sympy.Max, sympy.Min):  # whatever the rewrite left
            a = atom.args
            args += [p - q for i, p in enumerate(a) for q in a[i + 1:]]
    non_smooth = bool(args) or expr.has(sympy.floor, sympy.ceiling, sympy.frac)
    points = set()
    for a in args:
        points |= _real_roots(a)
    return tuple(sorted(points)), non_smooth


def _confirm_equal(e: sympy.Expr, known: sympy.Expr) -> bool:
    import sympy

    X = _symbols()[0]
    xr = sympy.Symbol("x", real=True)
    diff = (e - known).xreplace({X: xr})
    for candidate in (diff, diff.rewrite(sympy.Piecewise)):
        try:
            if sympy.simplify(candidate) == 0:
                return True
            if sympy.piecewise_fold(sympy.simplify(candidate)) == 0:
                return True
        except Exception:  # noqa: BLE001 - simplification failures mean "not shown equal"
            continue
    return False


def _match_named(e: sympy.Expr) -> str | None:
    """The named activation equal to ``e`` (structurally, or numerically and then symbolically)."""
    import sympy

    X = _symbols()[0]
    for name, form in NAMED.items():
        if e == form.expr:
            return name
    try:
        f = sympy.lambdify(X, e, modules="mpmath")
        pts = [mpmath.mpf(v) for v in (-3.7, -1.3, -0.45, 0.31, 0.9, 2.6, 5.3)]
        with mpmath.workdps(30):
            vals = [mpmath.mpmathify(f(p)) for p in pts]
    except Exception:  # noqa: BLE001
        return None
    for name, form in NAMED.items():
        with mpmath.workdps(30):
            ref = [form.fn_mp(p) for p in pts]
            if all(abs(v - r) <= mpmath.mpf(10) ** -22 * (1 + abs(r)) for v, r in zip(vals, ref)):
                if _confirm_equal(e, form.expr):
                    return name
    return None


def _polynomial_hermite(e: sympy.Expr) -> tuple[sympy.Expr, ...] | None:
    """Exact Hermite coefficients ``a_k`` of a polynomial in ``x`` (``None`` if not a polynomial)."""
    import sympy

    X = _symbols()[0]
    if not e.is_polynomial(X):
        return None
    poly = sympy.Poly(sympy.expand(e), X)
    coeffs = poly.all_coeffs()[::-1]  # ascending
    for cf in coeffs:
        if not cf.is_number:
            return None
        if sympy.im(cf.evalf(30)) != 0:
            raise ValueError(f"rho must be real-valued: polynomial coefficient {cf} is complex")
    # Peel off He_d from the top: x^n = sum of He's, exact arithmetic.
    rest = sympy.Poly(sympy.expand(e), X)
    b = [sympy.Integer(0)] * (poly.degree() + 1)
    for d in range(poly.degree(), -1, -1):
        lead = rest.coeff_monomial(X**d)
        if lead != 0:
            b[d] = lead
            rest = rest - sympy.Poly(lead * sympy.hermite_prob_poly(d, X), X)
    return tuple(b[k] * sympy.factorial(k) for k in range(len(b)))


# =========================================================================== the factory

@functools.lru_cache(maxsize=None)
def _named(name: str, dps: int) -> Activation:
    form = NAMED[name]
    # expr and symbolic stay None: the Activation reads them from the form on first access
    return Activation(name=name, expr=None, symbolic=None,
                      method="polynomial" if form.degree is not None else
                      ("closed-form" if form.kernel is not None else "quadrature"),
                      parity=form.parity, kinks=form.kinks, dps=dps, fn=form.fn, fn_mp=form.fn_mp,
                      mp_exact=True, form=form, key=f"named:{name}", poly=form.poly)


def _from_sympy(spec: sympy.Basic, dps: int) -> Activation:
    import sympy

    X = _symbols()[0]
    expr = sympy.sympify(spec)
    free = expr.free_symbols
    if len(free) != 1:
        raise ValueError(f"a sympy activation must have exactly one free symbol, got {len(free)}"
                         + (f": {sorted(map(str, free))}" if free else f" ({expr} is a constant)"))
    (sym,) = free
    e = expr.xreplace({sym: X})
    if e.xreplace({X: sympy.Symbol("x", real=True)}).is_real is False:
        # I*x, x + I, ...; sqrt(x) and the like are caught numerically below
        raise ValueError(f"rho must be real-valued: {expr} is complex for real arguments")
    known = _match_named(e)
    if known is not None:
        return _named(known, dps)
    coeffs = _polynomial_hermite(e)
    if coeffs is not None:
        return _polynomial(e, coeffs, dps)
    fn = sympy.lambdify(X, e, modules=["scipy", "numpy"])
    fn_mp_raw = sympy.lambdify(X, e, modules="mpmath")

    def fn_mp(x):
        return mpmath.mpmathify(fn_mp_raw(x))

    vec = _as_vectorised(fn)
    name = str(e)
    _check_real_finite(vec, name)
    try:
        from sympy.calculus.singularities import singularities
        sing = singularities(e, X, sympy.S.Reals)
    except Exception:  # noqa: BLE001 - unsupported expression: rely on the numerical checks
        sing = sympy.S.EmptySet
    if isinstance(sing, sympy.FiniteSet) and len(sing) > 0:
        point = sorted(sing, key=lambda p: abs(float(p)))[0]
        raise ValueError(f"Gaussian second moment is not finite (or rho is undefined): {name} is "
                         f"singular at x = {point}")
    if not isinstance(sing, (sympy.FiniteSet, type(sympy.S.EmptySet))):
        raise ValueError(f"{name} has infinitely many real singularities ({sing}): its Gaussian "
                         "second moment is not finite")
    with mpmath.workdps(30):
        for p in (-2.3, -0.7, 0.0, 0.9, 3.1):
            v = mpmath.mpmathify(fn_mp_raw(mpmath.mpf(p)))
            if isinstance(v, mpmath.mpc) and v.imag != 0:
                raise ValueError(f"rho must be real-valued: {name} is complex at x = {p}")
    _check_growth(fn_mp, name)
    kinks, non_smooth = _sympy_kinks(e)
    act = Activation(name=name, expr=e, symbolic=SymbolicForms(), method="quadrature",
                     parity=_numeric_parity(fn_mp), kinks=kinks, dps=dps, fn=vec, fn_mp=fn_mp,
                     mp_exact=True, smooth=not non_smooth, key=f"sympy:{sympy.srepr(e)}")
    if non_smooth:
        return act
    _smoothness_probe(act)
    return act


def _polynomial(e: sympy.Expr, coeffs: tuple, dps: int) -> Activation:
    import sympy

    X, C = _symbols()
    a = list(coeffs)
    mu0 = a[0]
    mu1 = a[1] if len(a) > 1 else sympy.Integer(0)
    second = sum(a[k] ** 2 / sympy.factorial(k) for k in range(len(a)))
    kern = sympy.expand(sum(a[k] ** 2 / sympy.factorial(k) * C**k for k in range(len(a))))
    fn_np = sympy.lambdify(X, e, modules="numpy")
    fn_mp_raw = sympy.lambdify(X, e, modules="mpmath")
    parity = 1 if all(a[k] == 0 for k in range(1, len(a), 2)) else (
        -1 if all(a[k] == 0 for k in range(0, len(a), 2)) else 0)
    return Activation(name=str(e), expr=e,
                      symbolic=SymbolicForms(sympy.simplify(mu0), sympy.simplify(mu1), sympy.simplify(second), kern),
                      method="polynomial", parity=parity, kinks=(), dps=dps,
                      fn=lambda u: np.asarray(fn_np(u), dtype=float) + 0.0 * u,
                      fn_mp=lambda x: mpmath.mpmathify(fn_mp_raw(x)), mp_exact=True, poly=tuple(a),
                      key=f"poly:{sympy.srepr(e)}")


def _numeric_parity(fn_mp) -> int:
    try:
        with mpmath.workdps(30):
            pts = [mpmath.mpf(v) for v in ("0.37", "1.21", "2.9", "6.3")]
            plus = [fn_mp(p) for p in pts]
            minus = [fn_mp(-p) for p in pts]
            tol = mpmath.mpf(10) ** -25
            if all(abs(p - q) <= tol * (1 + abs(p)) for p, q in zip(plus, minus)):
                return 1
            if all(abs(p + q) <= tol * (1 + abs(p)) for p, q in zip(plus, minus)):
                return -1
    except Exception:  # noqa: BLE001
        pass
    return 0


def _smoothness_probe(act: Activation) -> None:
    """Warn once when the float quadrature cannot reach its tolerance at typical inputs."""
    m = np.array([0.0, 0.7, -1.3])
    s = np.array([1.0, 0.5, 1.2])
    _, _, err = act._trapezoid_moments(m, s, 8, second=True)
    if np.any(err > FLOAT_TOL):
        warnings.warn(
            f"the float quadrature of {act.name} reaches only {float(np.max(err)):.1e} relative accuracy "
            "at typical (mean, std) (trapezoidal rules with spacing h and 2h disagree): rho looks "
            "non-smooth or grows too fast, so gaussian_moments and kernel will be less accurate than "
            f"{FLOAT_TOL:.0e} (each call warns with its own estimate)", QuadratureWarning,
            stacklevel=4)
        object.__setattr__(act, "_smooth", False)


def _from_callable(func: Callable, dps: int) -> Activation:
    name = getattr(func, "__name__", None) or type(func).__name__
    vec = _as_vectorised(func)
    _check_real_finite(vec, name)
    fn_mp, exact = _mp_wrapper(func)
    _check_growth(fn_mp, name)

    def fn(u):
        return np.asarray(vec(u), dtype=float)

    # numerically located (on the callable's own output type: its precision sets the noise floor);
    # the quadrature error estimate covers a miss
    kinks = _detect_kinks(vec)
    act = Activation(name=name, expr=None, symbolic=SymbolicForms(), method="quadrature", parity=None,
                     kinks=kinks, dps=dps, fn=fn, fn_mp=fn_mp, mp_exact=exact, smooth=not kinks, key=None)
    if not kinks:
        _smoothness_probe(act)
    return act


def activation(spec, *, dps: int = 30) -> Activation:
    """Build an :class:`Activation` from a name, a sympy expression, a callable or an Activation.

    * name: one of :data:`KNOWN_ACTIVATIONS` (case-insensitive; also ``identity``,
      ``square``, ``logistic``, ``swish``);
    * sympy expression in exactly one free symbol (any name); expressions equal to a
      named activation use its closed forms, polynomials are exact;
    * Python callable, scalar in and scalar out (vectorised with ``np.vectorize``
      when it does not accept arrays);
    * an :class:`Activation` is returned as is.

    ``dps`` is the number of digits of the high-precision path.  Bad input raises a
    ValueError naming the problem (a wrong type raises :class:`ActivationSpecError`,
    both a ValueError and a TypeError).

    >>> activation("ReLU").name
    'relu'
    >>> import sympy
    >>> y = sympy.Symbol("y")
    >>> activation(sympy.Max(y, 0)) is activation("relu")
    True
    >>> activation("swish").name
    'silu'
    """
    if isinstance(spec, Activation):
        return spec
    dps = _check_dps(dps)
    if isinstance(spec, str):
        key = spec.strip().lower()
        key = ALIASES.get(key, key)
        if key not in NAMED:
            raise ValueError(f"unknown activation {spec!r}; known names: {', '.join(KNOWN_ACTIVATIONS)} "
                             "(pass a sympy expression or a callable for other activations)")
        return _named(key, dps)
    sympy = sys.modules.get("sympy")  # a sympy object means sympy is imported already
    if sympy is not None and isinstance(spec, sympy.FunctionClass):
        return _from_sympy(spec(_symbols()[0]), dps)
    if sympy is not None and isinstance(spec, sympy.Basic):
        return _from_sympy(spec, dps)
    if callable(spec):
        return _from_callable(spec, dps)
    raise ActivationSpecError(
        f"cannot make an activation from {type(spec).__name__} {spec!r}: pass a name (one of "
        f"{', '.join(KNOWN_ACTIVATIONS)}), a sympy expression in one symbol, or a callable")
