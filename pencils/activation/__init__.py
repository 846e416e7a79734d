"""Activations and their Gaussian-equivalence coefficients.

First step of the pipeline (activation -> Gaussian-equivalence numbers -> ...).
For an activation ``rho`` and standard Gaussians ``g, g'`` of correlation ``c``
(MODEL.md, "Gaussian equivalence"):

* ``mu0 = E rho(g)``, ``mu1 = E[g rho(g)]``, ``second_moment = E rho(g)^2``,
  ``mu_star_sq = E rho(g)^2 - mu0^2 - mu1^2``;
* the dual kernel ``K(c) = E[rho(g) rho(g')] = sum_k a_k^2 c^k / k!`` with the Hermite
  coefficients ``a_k = E[rho(g) He_k(g)]`` (Mehler 1866; O'Donnell 2014, Prop. 11.31);
* ``mu_s_sq(a_t^2) = K(a_t^2) - mu0^2 - mu1^2 a_t^2``, the nonlinear variance shared by
  two noisy copies of one data point, and ``mu_f_sq = mu_star_sq - mu_s_sq``;
* ``gaussian_moments(m, s, J)``: ``alpha_j(m, s) = E[rho(m + s xi) He_j(xi)]``, the
  coefficients of the bivariate Mehler expansion used by the Monte Carlo code.

How each number is obtained
---------------------------
* Closed forms (``relu``, ``abs``, ``erf``, ``gelu``, polynomials): exact sympy forms,
  evaluated at any precision; Gaussian moments in closed form (see
  :mod:`pencils.activation.closed_forms` for the derivations and references).
* Everything else (``tanh``, ``sigmoid``, ``softplus``, ``silu``, sympy expressions,
  Python callables): the high-precision numbers come from adaptive composite
  Gauss--Legendre quadrature in mpmath at ``dps`` digits (panels of width one
  aligned on the integers, split at every known kink, bisected until the two
  halves agree); the float kernel and the Gaussian moments from the trapezoidal
  rule on a nested grid in ``xi`` (geometrically convergent for analytic
  integrands, Trefethen & Weideman 2014, SIAM Rev. 56:385), refined per input
  until successive levels agree.  Results that do not reach their tolerance are
  returned with a :class:`QuadratureWarning` naming the accuracy reached.

Kinks: for activations with kinks (known for sympy expressions, located numerically for
callables) the kernel ``K(c)`` and the Gaussian moments are integrated by piecewise
Gauss--Legendre with breakpoints at the kinks (in two dimensions the inner breakpoints move
with the outer variable), so every panel integrand is smooth; the error estimate compares
two rules (three panel widths for callables, whose kinks may be missed), see
:meth:`Activation.kernel_error`.  Structured data: :meth:`Activation.equivalence_constants`
gives the constants at any pre-activation variance and covariance (MODEL.md).

High-precision API: :meth:`Activation.coefficients_mp`,
:meth:`Activation.hermite_coefficients_mp`, :meth:`Activation.kernel_mp` (mpmath
numbers at ``dps`` digits, default 30; exact for closed forms).  For a quadrature-based
activation ``kernel_mp`` sums the Mehler series when ``|c|`` is small enough and falls
back to a two-dimensional quadrature (seconds) otherwise.

Float accuracy: ``mu0, mu1, second_moment, mu_star_sq`` and ``kernel`` to about
``1e-15`` absolute (tested to ``1e-13`` against mpmath); ``gaussian_moments`` to
``1e-13 sqrt(j!)`` times the scale of ``rho`` (tested to ``1e-12``).  The float paths
call BLAS for many mid-sized products: on a machine whose cores are busy,
``OPENBLAS_NUM_THREADS=1`` is several times faster than the default thread pool.

>>> relu = activation("relu")
>>> round(relu.mu1, 12), round(relu.second_moment, 12)
(0.5, 0.5)
>>> relu.symbolic.kernel
(c*(pi - acos(c)) + sqrt(1 - c**2))/(2*pi)
>>> bool(abs(relu.kernel(1.0) - relu.second_moment) < 1e-15)
True
"""
from __future__ import annotations

import functools
import math
import numbers
import sys
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import mpmath
import numpy as np
from numpy.polynomial.hermite_e import hermegauss

if TYPE_CHECKING:  # annotations only
    import sympy

from .. import cache as _cache
from .closed_forms import (
    ALIASES,
    MAX_ORDER,
    NAMED,
    SymbolicForms,
    hermite_functions,
    sqrt_factorials,
    symbols as _symbols,
)

# sympy is imported inside the functions that handle sympy expressions: a named activation
# (and a Python callable) never needs it, and ``import sympy`` costs about 0.35 s.


def __getattr__(name: str):
    # PEP 562: the symbols X and C without importing sympy at import time
    if name in ("X", "C"):
        return _symbols()[name == "C"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {"X", "C"})

__all__ = [
    "Activation", "activation", "KNOWN_ACTIVATIONS", "MpCoefficients", "SymbolicForms",
    "QuadratureWarning", "ActivationSpecError", "X", "C",
]

#: Canonical names accepted by :func:`activation` (case-insensitive).
KNOWN_ACTIVATIONS: tuple[str, ...] = tuple(NAMED)

#: Accepted (conservatively estimated) error of the float Gaussian moments, relative to the
#: scale of ``rho`` (see :meth:`Activation.gaussian_moments`); tests check 1e-12 against mpmath.
FLOAT_TOL = 1e-13
#: Tolerance of the nested trapezoidal rules behind :meth:`Activation.kernel` (one number per ``c``).
KERNEL_TOL = 1e-15
#: Largest Hermite order used by the Mehler series of :meth:`Activation.kernel_mp`.
MEHLER_MP_MAX_ORDER = 128
#: Slack allowed on ``c`` in ``[-1, 1]`` and ``a_sq`` in ``[0, 1]`` before a ValueError.
RANGE_SLACK = 1e-12

_CACHE_VERSION = "activation-v1"


class ActivationSpecError(ValueError, TypeError):
    """An activation specification of the wrong type (both a ValueError and a TypeError)."""


class QuadratureWarning(UserWarning):
    """A numerical quadrature did not reach its target accuracy; the message says how far it got."""


@dataclass(frozen=True)
class MpCoefficients:
    """Gaussian-equivalence numbers as mpmath numbers, accurate to about ``dps`` digits."""

    mu0: mpmath.mpf
    mu1: mpmath.mpf
    second_moment: mpmath.mpf
    mu_star_sq: mpmath.mpf
    dps: int


# =========================================================================== float quadrature

_TRAP_HALF_WIDTH = 13  # |xi| <= 13: psi_k(xi) <= exp(-xi^2/4) < 1e-18 beyond, any k
_TRAP_PROBES = 3  # Hermite orders always included in the error estimate
_TRAP_ROWS = 16384  # inputs processed together
_TRAP_BLOCK = 1 << 21  # floats per evaluation block (16 MB; fewer, larger BLAS calls)


@functools.lru_cache(maxsize=128)
def _trap_level(level: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    """New nodes of level ``level`` (spacing ``2^-level``) and ``h psi_k`` there, shape ``(order+1, nodes)``."""
    half = _TRAP_HALF_WIDTH
    if level == 0:
        xi = np.arange(-half, half + 1, dtype=float)
    else:
        count = half * 2 ** (level - 1)
        xi = 2.0**-level * (2.0 * np.arange(-count, count) + 1.0)
    table = hermite_functions(xi, order) * 2.0**-level
    table.setflags(write=False)
    xi.setflags(write=False)
    return xi, table


def _trapezoid(evaluate: Callable[[np.ndarray, np.ndarray], np.ndarray], n: int, order: int, *,
               scale: float, tol: float = FLOAT_TOL, max_level: int = 7, second: bool = False,
               strip: np.ndarray | None = None):
    """Normalised Gaussian moments of ``n`` integrands by nested trapezoidal rules.

    ``evaluate(idx, xi)`` returns ``f_i(xi_q)``, shape ``(len(idx), len(xi))``.
    Returns ``(A, S, err)``: ``A[k, i] = E[f_i(xi) He_k(xi)] / sqrt(k!)`` for
    ``k <= max(order, 3)`` (order axis first), ``S[i] = E f_i(xi)^2`` (``None`` unless
    ``second``) and ``err[i]``, the estimated error relative to
    ``scale + |A[0, i]|`` (``+ sqrt(S[i])`` when ``second``).

    The rule is ``h sum_q f(xi_q) He_k(xi_q) phi(xi_q)`` on ``|xi| <= 13`` with
    ``h = 2^-level``; levels share their nodes.  For an integrand analytic in the
    strip ``|Im xi| < a`` the error is ``O(exp(-2 pi a / h))`` (Trefethen & Weideman
    2014, Thm. 5.1), so halving ``h`` multiplies it by ``exp(-pi a / h)``.  With ``d_l``
    the change from level ``l-1`` to level ``l`` (about the error of level ``l-1``), the
    error of level ``l`` is estimated by ``10 d_l exp(-pi a / h_l)`` when the strip
    half-width ``a = strip[i]`` is known, else by ``d_l`` itself (two levels agree).
    Level 2 (``h = 1/4``, where the Gaussian factor of any ``He_k phi``, ``k <= 170``,
    is resolved to far below ``1e-16``) is the first that may be accepted.
    """
    J = max(order, _TRAP_PROBES)
    A = np.empty((J + 1, n))
    S = np.empty(n) if second else None
    err = np.empty(n)
    tail_weight = math.exp(-_TRAP_HALF_WIDTH**2 / 4.0)
    for start in range(0, n, _TRAP_ROWS):
        rows = np.arange(start, min(n, start + _TRAP_ROWS))
        xi, PT = _trap_level(0, J)
        R = evaluate(rows, xi)
        a = PT @ R.T
        s2 = np.einsum("ij,ij,j->i", R, R, PT[0]) if second else None
        tail = (np.abs(R[:, 0]) + np.abs(R[:, -1])) * tail_weight
        d_prev = np.full(rows.size, np.inf)
        est = np.full(rows.size, np.inf)
        active = np.arange(rows.size)
        for level in range(1, max_level + 1):
            xi, PT = _trap_level(level, J)
            block = max(1, _TRAP_BLOCK // xi.size)
            everyone = active.size == rows.size  # plain slices, no gathers
            a_old = a if everyone else a[:, active]
            a_new = 0.5 * a_old
            s_new = (0.5 * s2 if everyone else 0.5 * s2[active]) if second else None
            for b in range(0, active.size, block):
                R = evaluate(rows[b:b + block] if everyone else rows[active[b:b + block]], xi)
                a_new[:, b:b + block] += PT @ R.T
                if second:
                    s_new[b:b + block] += np.einsum("ij,ij,j->i", R, R, PT[0])
            norm = scale + np.abs(a_new[0])
            if second:
                norm += np.sqrt(np.maximum(s_new, 0.0))
            d = np.max(np.abs(a_new - a_old), axis=0)
            if second:
                np.maximum(d, np.abs(s_new - s2[active]) / norm, out=d)
            d /= norm
            if not np.all(np.isfinite(d)):
                bad = rows[active[np.argmin(np.isfinite(d))]]
                raise ValueError(f"rho(mean + std*xi) is not finite for input {bad}: the Gaussian "
                                 "moments are not finite (or rho overflows in double precision)")
            e = d.copy()
            if strip is not None:
                converging = d <= d_prev[active]
                factor = 10.0 * np.exp(-math.pi * strip[rows[active]] * 2.0**level)
                e[converging] *= factor[converging]
            np.maximum(e, tail[active] / norm, out=e)
            if everyone:
                a, s2 = a_new, s_new
            else:
                a[:, active] = a_new
                if second:
                    s2[active] = s_new
            d_prev[active] = d
            est[active] = e
            if level >= 2:
                active = active[e > tol]
                if active.size == 0:
                    break
        A[:, rows] = a
        if second:
            S[rows] = s2
        err[rows] = est
    return A, S, err


def _evaluate_shifted(fn, m: np.ndarray, s: np.ndarray):
    """``evaluate(idx, xi) = rho(m[idx] + s[idx] xi)`` for :func:`_trapezoid`."""
    def evaluate(idx, xi):
        u = np.multiply.outer(s[idx], xi)
        u += m[idx, None]
        with np.errstate(all="ignore"):
            v = fn(u)
        if np.iscomplexobj(v):
            raise ValueError("rho must be real-valued; it returned complex values")
        return np.asarray(v, dtype=float)
    return evaluate


def _safe_eval(fn, u: np.ndarray, what: str) -> np.ndarray:
    with np.errstate(all="ignore"):
        v = fn(u)
    v = np.asarray(v)
    if np.iscomplexobj(v):
        raise ValueError(f"rho must be real-valued; it returned complex values for {what}")
    v = v.astype(float, copy=False)
    if not np.all(np.isfinite(v)):
        raise ValueError(f"rho(mean + std*xi) is not finite for {what}: the Gaussian moments "
                         "are not finite (or rho overflows in double precision)")
    return v


# =========================================================================== mpmath quadrature

@functools.lru_cache(maxsize=16)
def _gl_nodes(prec: int) -> tuple[tuple, tuple]:
    """24-point Gauss--Legendre nodes and weights on ``[-1, 1]`` at binary precision ``prec``."""
    from mpmath.calculus.quadrature import GaussLegendre

    with mpmath.workprec(prec):
        nodes = GaussLegendre(mpmath.mp).calc_nodes(4, prec)
    return tuple(x for x, _ in nodes), tuple(w for _, w in nodes)


def _truncation_point(dps: int) -> int:
    """``L`` with ``phi(L) < 10^-(dps+8)``, so ``[-L, L]`` holds the Gaussian mass."""
    return int(math.ceil(math.sqrt(2.0 * (dps + 8) * math.log(10.0)))) + 2


def _mp_gauss_moments(fn_mp: Callable, order: int, dps: int, *, kinks=(), scale: float = 1.0,
                      exact: bool = True):
    """Normalised Hermite moments ``n_k = E[rho(g) He_k(g)] / sqrt(k!)``, ``E rho(g)^2`` and an error.

    Adaptive composite 24-point Gauss--Legendre quadrature of
    ``rho(x) psi_k(x)`` (``psi_k = He_k phi / sqrt(k!)``, all ``k`` from one set of
    evaluations) on ``[-L, L]``; panels start as the unit intervals between integers
    and known kinks and are bisected until the two halves agree with the whole to
    ``10^-(dps+3) scale``.  ``exact=False`` means ``fn_mp`` only has double
    precision; the tolerance is then ``1e-15 scale``.

    Returns ``(n, second_moment, error_estimate, worst_x)`` as mpf numbers at
    ``dps + 10`` digits; ``worst_x`` locates the panel with the largest residual.
    """
    work = dps + 10 if exact else 25
    with mpmath.workdps(work):
        tol = mpmath.mpf(10) ** (-(dps + 3)) * scale if exact else mpmath.mpf("1e-15") * scale
        min_width = mpmath.mpf(2) ** (-int(3.4 * dps) - 20) if exact else mpmath.mpf("1e-13")
        L = _truncation_point(dps if exact else 16)
        cuts = sorted({mpmath.mpf(k) for k in range(-L, L + 1)}
                      | {mpmath.mpf(k) for k in kinks if -L < k < L})
        gx, gw = _gl_nodes(mpmath.mp.prec)
        sqrt_k = [mpmath.sqrt(k) for k in range(order + 2)]
        inv_sqrt_k = [1 / v if v else v for v in sqrt_k]
        inv_sqrt2pi = 1 / mpmath.sqrt(2 * mpmath.pi)

        def value(x):
            try:
                r = fn_mp(x)
            except (ArithmeticError, ValueError, TypeError) as exc:
                raise ValueError(
                    f"rho could not be evaluated at x = {mpmath.nstr(x, 8)}: {exc!r}. rho must be "
                    "real-valued and finite on the real line (otherwise the Gaussian second "
                    "moment is not finite)") from None
            if isinstance(r, mpmath.mpc) or isinstance(r, complex):
                if abs(mpmath.mpc(r).imag) > 0:
                    raise ValueError(f"rho must be real-valued; rho({mpmath.nstr(x, 8)}) = {r}")
                r = mpmath.mpc(r).real
            r = mpmath.mpf(r)
            if not mpmath.isfinite(r):
                raise ValueError(f"Gaussian second moment is not finite: rho({mpmath.nstr(x, 8)}) = {r}")
            return r

        def panel(a, b):
            half, mid = (b - a) / 2, (a + b) / 2
            acc = [mpmath.mpf(0)] * (order + 2)
            for t, w in zip(gx, gw):
                x = mid + half * t
                r = value(x)
                p_prev = mpmath.exp(-x * x / 2) * inv_sqrt2pi
                wr = w * r
                acc[order + 1] += wr * r * p_prev
                acc[0] += wr * p_prev
                if order >= 1:
                    p = x * p_prev
                    acc[1] += wr * p
                    for k in range(1, order):
                        p, p_prev = (x * p - sqrt_k[k] * p_prev) * inv_sqrt_k[k + 1], p
                        acc[k + 1] += wr * p
            return [half * v for v in acc]

        def gap(u, v):
            d = max(abs(p - q) for p, q in zip(u[:-1], v[:-1]))
            return max(d, abs(u[-1] - v[-1]) / scale)

        total = [mpmath.mpf(0)] * (order + 2)
        error = mpmath.mpf(0)
        worst = (mpmath.mpf(0), mpmath.mpf(0))
        full = cuts[-1] - cuts[0]
        stack = [(a, b, panel(a, b)) for a, b in zip(cuts[:-1], cuts[1:])]
        while stack:
            a, b, whole = stack.pop()
            m = (a + b) / 2
            left, right = panel(a, m), panel(m, b)
            fine = [p + q for p, q in zip(left, right)]
            g = gap(fine, whole)
            if g <= tol * (b - a) / full or b - a < min_width:
                total = [p + q for p, q in zip(total, fine)]
                error += g
                if g > worst[0]:
                    worst = (g, m)
            else:
                stack.append((a, m, left))
                stack.append((m, b, right))
        return total[:-1], total[-1], error, worst[1]


# =========================================================================== piecewise Gauss--Legendre

#: Gaussian integrals are cut at ``|xi| <= 9`` in double precision: ``2 Phi(-9) < 3e-19``.
_GL_HALF_WIDTH = 9.0
#: Nodes per panel of the two nested Gauss--Legendre rules (the error estimate compares them).
_GL_NODES = (12, 20)


@functools.lru_cache(maxsize=16)
def _leggauss(q: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.legendre.leggauss(q)
    x.setflags(write=False)
    w.setflags(write=False)
    return x, w


def _panels(breaks: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss--Legendre nodes and weights on the panels between sorted ``breaks`` (last axis).

    ``breaks`` has shape ``(..., B)``; the result has shape ``(..., (B-1) q)``.
    """
    x, w = _leggauss(q)
    a = breaks[..., :-1, None]
    b = breaks[..., 1:, None]
    half = 0.5 * (b - a)
    nodes = (0.5 * (a + b) + half * x).reshape(breaks.shape[:-1] + (-1,))
    weights = (half * w).reshape(breaks.shape[:-1] + (-1,))
    return nodes, weights


def _breaks(width: float, kinks: np.ndarray) -> np.ndarray:
    """Panel boundaries on ``[-L, L]``: a uniform grid of spacing ``<= width`` plus the kinks inside."""
    L = _GL_HALF_WIDTH
    count = int(math.ceil(2.0 * L / width))
    grid = np.linspace(-L, L, count + 1)
    inside = kinks[(kinks > -L) & (kinks < L)]
    return np.unique(np.concatenate([grid, inside]))


def _gl_gaussian_pair(fn, kinks: tuple, v: float, c: float, q: int,
                      refine: int = 1) -> tuple[float, float, float, float]:
    """``(E rho(h), E[h rho(h)], E rho(h)^2, E[rho(h) rho(h')])`` for centred Gaussians ``h, h'``
    of variance ``v`` and covariance ``c``, by piecewise Gauss--Legendre with ``q`` nodes a panel.

    ``h = sqrt(v) u``, ``h' = sqrt(v) (r u + sqrt(1 - r^2) w)`` with ``r = c / v`` and
    ``u, w`` independent standard normals.  Panels have width ``min(1, 1/scale)`` (the
    scale on which the integrand varies) and are split at every kink of ``rho``: in ``u``
    at ``k / sqrt(v)``, in ``w`` at ``(k / sqrt(v) - r u) / sqrt(1 - r^2)`` (moving with ``u``),
    so each panel integrates a smooth function and the rule converges geometrically.
    """
    sv = math.sqrt(v)
    r = max(-1.0, min(1.0, c / v))
    sr = math.sqrt(max(0.0, 1.0 - r * r))
    kinks = np.asarray(kinks, dtype=float)
    U, Wu = _panels(_breaks(min(1.0, 1.0 / sv) / refine, kinks / sv), q)
    gauss_u = Wu * np.exp(-0.5 * U * U) / math.sqrt(2.0 * math.pi)
    with np.errstate(all="ignore"):
        rho_u = np.asarray(fn(sv * U), dtype=float) * np.ones_like(U)
    mean = float(gauss_u @ rho_u)
    first = float(gauss_u @ (sv * U * rho_u))
    second = float(gauss_u @ (rho_u * rho_u))
    if sr * sv < 1e-12:  # h' = sign(r) h
        with np.errstate(all="ignore"):
            other = np.asarray(fn(sv * r * U), dtype=float) * np.ones_like(U)
        return mean, first, second, float(gauss_u @ (rho_u * other))
    L = _GL_HALF_WIDTH
    base = np.linspace(-L, L, int(math.ceil(2.0 * L * refine / min(1.0, 1.0 / (sv * sr)))) + 1)
    if kinks.size:
        moving = np.clip((kinks[None, :] / sv - r * U[:, None]) / sr, -L, L)
        wb = np.sort(np.concatenate([np.broadcast_to(base, (U.size, base.size)), moving], axis=1), axis=1)
    else:
        wb = base[None, :]
    Wn, Ww = _panels(wb, q)
    gauss_w = Ww * np.exp(-0.5 * Wn * Wn) / math.sqrt(2.0 * math.pi)
    with np.errstate(all="ignore"):
        inner = np.asarray(fn(sv * (r * U[:, None] + sr * Wn)), dtype=float)
    G = np.sum(gauss_w * inner, axis=1)
    return mean, first, second, float(gauss_u @ (rho_u * G))


def _gl_pair_with_error(fn, kinks, v: float, c: float, robust: bool = False):
    """:func:`_gl_gaussian_pair` with an error estimate per entry.

    ``robust=False`` (every kink known, each panel integrand smooth): 20 nodes a panel,
    estimate ``2 |Q_20 - Q_12|`` (the rounding level for a smooth integrand).
    ``robust=True`` (kinks possibly unknown, Python callables): the 20-node rule on
    panels of width ``h``, ``h/2`` and ``h/4`` in both variables; the value is the finest,
    the estimate ``3 max(|Q_{h/4} - Q_{h/2}|, |Q_{h/2} - Q_h|)``.  A kink inside a panel makes
    the composite rule converge like ``h^2`` but not monotonically (it depends on where
    the kink falls among the nodes); over 45 random kink positions the finest error was
    at most 1.4 times the larger change (tests check the bound against mpmath).
    """
    if robust:
        levels = [np.array(_gl_gaussian_pair(fn, kinks, v, c, _GL_NODES[1], refine=k)) for k in (1, 2, 4)]
        fine = levels[2]
        change = 3.0 * np.maximum(np.abs(levels[2] - levels[1]), np.abs(levels[1] - levels[0]))
    else:
        coarse = np.array(_gl_gaussian_pair(fn, kinks, v, c, _GL_NODES[0]))
        fine = np.array(_gl_gaussian_pair(fn, kinks, v, c, _GL_NODES[1]))
        change = 2.0 * np.abs(fine - coarse)
    if not np.all(np.isfinite(fine)):
        raise ValueError("rho(h) is not finite at some Gaussian quadrature node: the Gaussian "
                         "moments are not finite (or rho overflows in double precision)")
    return fine, change + 1e-15 * np.abs(fine)


def _detect_kinks(fn, half_width: float = 30.0) -> tuple[float, ...]:
    """Points where a callable ``rho`` has a kink (jump of ``rho'``) or a jump, found numerically.

    Second differences on a grid of spacing ``h = 2^-9`` are ``h^2 rho''`` where ``rho`` is
    smooth and of order ``h |[rho']|`` at a kink: an index whose ``|D2|`` exceeds 50 times
    that of its neighbours three steps away (and ``1e-9`` of the scale) is a candidate.  A
    kink is located at the crossing of the tangent lines from either side, refined on a
    grid ``2^-9`` times finer; a jump by bisection.  Kinks closer than the grid spacing to
    each other, or on a scale finer than ``h``, can be missed: the error estimate of the
    quadrature (``robust=True`` in :func:`_gl_pair_with_error`) covers them.
    """
    def values(x):
        with np.errstate(all="ignore"):
            return np.asarray(fn(x), dtype=float) * np.ones_like(x)

    def locate(x0, h):
        xs = x0 + h * np.arange(-8, 9)
        f = values(xs)
        d2 = np.abs(f[:-2] - 2 * f[1:-1] + f[2:])
        i = int(np.argmax(d2[4:11])) + 5  # the candidate is near the middle; keep 4 points each side
        d1 = np.abs(np.diff(f))
        j = int(np.argmax(d1[4:12])) + 4
        if d1[j] > 20 * np.median(d1) and d1[j] > 1e-6 * max(np.max(np.abs(f)), 1e-300):  # a jump
            a, b = xs[j], xs[j + 1]
            fa = values(np.array([a]))[0]
            for _ in range(60):
                mid = 0.5 * (a + b)
                fm = values(np.array([mid]))[0]
                if abs(fm - fa) < 0.5 * abs(values(np.array([b]))[0] - fa):
                    a, fa = mid, fm
                else:
                    b = mid
            return 0.5 * (a + b)
        sl = (f[i - 2] - f[i - 4]) / (2 * h)
        sr = (f[i + 4] - f[i + 2]) / (2 * h)
        if abs(sl - sr) < 1e-12 * (abs(sl) + abs(sr) + 1e-300):
            return None
        # tangent lines through x_{i-3} (slope sl) and x_{i+3} (slope sr)
        xl, xr = xs[i - 3], xs[i + 3]
        return (f[i + 3] - f[i - 3] + sl * xl - sr * xr) / (sl - sr)

    h = 2.0**-9
    x = np.arange(-half_width, half_width + h / 2, h)
    try:
        f = values(x)
    except Exception:  # noqa: BLE001 - not vectorised / not evaluable: no kink information
        return ()
    if not np.all(np.isfinite(f)):
        return ()
    d2 = np.abs(f[:-2] - 2 * f[1:-1] + f[2:])
    scale = max(float(np.max(np.abs(f[np.abs(x) < 8]))), 1e-300)
    nb = np.maximum(np.r_[np.zeros(3), d2[:-3]], np.r_[d2[3:], np.zeros(3)])
    flagged = np.nonzero((d2 > 50 * nb) & (d2 > 1e-9 * scale))[0] + 1
    points = []
    for idx in flagged:
        if points and abs(x[idx] - points[-1][0]) < 4 * h:
            continue
        coarse = locate(x[idx], h)
        if coarse is None:
            continue
        fine = locate(coarse, h * 2.0**-9)
        points.append((x[idx], coarse if fine is None else fine))
    return tuple(sorted({round(float(p), 15) for _, p in points}))


#: Half-width in ``xi`` for the Gaussian moments with Hermite weights: ``|psi_k(xi)| <= exp(-xi^2/4)``.
_GL_MOMENT_HALF_WIDTH = 13.0
_GL_MOMENT_ROWS = 2048  # inputs processed together


def _gl_shifted_moments(fn, kinks, m: np.ndarray, s: np.ndarray, order: int, q: int):
    """Normalised ``A[k, i] = E[rho(m_i + s_i xi) He_k(xi)] / sqrt(k!)`` and ``E rho(m_i + s_i xi)^2``
    by piecewise ``q``-node Gauss--Legendre on ``|xi| <= 13``, split at every kink
    ``(kink - m_i) / s_i`` (so each panel integrand is smooth).  Panels have width
    ``min(1, 1/max s)``; the caller raises ``q`` with the order (``He_k phi`` oscillates)."""
    L = _GL_MOMENT_HALF_WIDTH
    kinks = np.asarray(kinks, dtype=float)
    width = min(1.0, 1.0 / max(float(np.max(s)), 1e-300))
    base = np.linspace(-L, L, int(math.ceil(2.0 * L / width)) + 1)
    A = np.empty((order + 1, m.size))
    S = np.empty(m.size)
    inv_sqrt = 1.0 / np.sqrt(np.arange(1, order + 2, dtype=float))
    for start in range(0, m.size, _GL_MOMENT_ROWS):
        mm, ss = m[start:start + _GL_MOMENT_ROWS], s[start:start + _GL_MOMENT_ROWS]
        if kinks.size:
            moving = np.clip((kinks[None, :] - mm[:, None]) / ss[:, None], -L, L)
            breaks = np.sort(np.concatenate([np.broadcast_to(base, (mm.size, base.size)), moving], axis=1),
                             axis=1)
        else:
            breaks = np.broadcast_to(base, (mm.size, base.size))
        xi, w = _panels(breaks, q)
        with np.errstate(all="ignore"):
            vals = np.asarray(fn(mm[:, None] + ss[:, None] * xi), dtype=float)
        weighted = vals * w * np.exp(-0.5 * xi * xi) / math.sqrt(2.0 * math.pi)
        S[start:start + mm.size] = np.sum(weighted * vals, axis=1)
        prev = np.zeros_like(xi)
        cur = np.ones_like(xi)  # psi-normalised He_k / sqrt(k!)
        for k in range(order + 1):
            A[k, start:start + mm.size] = np.sum(weighted * cur, axis=1)
            # He_{k+1}/sqrt((k+1)!) = (xi He_k/sqrt(k!) - sqrt(k) He_{k-1}/sqrt((k-1)!)) / sqrt(k+1)
            prev, cur = cur, (xi * cur - math.sqrt(k) * prev) * inv_sqrt[k]
    return A, S


@functools.lru_cache(maxsize=16)
def _mp_leggauss(q: int, prec: int) -> tuple[tuple, tuple]:
    """``q``-point Gauss--Legendre nodes and weights on ``[-1, 1]`` at binary precision ``prec``
    (Newton on the three-term recurrence of the Legendre polynomials)."""
    with mpmath.workprec(prec + 20):
        nodes, weights = [], []
        for i in range(1, q + 1):
            x = mpmath.cos(mpmath.pi * (i - mpmath.mpf(1) / 4) / (q + mpmath.mpf(1) / 2))
            for _ in range(100):
                p0, p1 = mpmath.mpf(1), x
                for k in range(2, q + 1):
                    p0, p1 = p1, ((2 * k - 1) * x * p1 - (k - 1) * p0) / k
                dp = q * (x * p1 - p0) / (x * x - 1)
                step = p1 / dp
                x -= step
                if abs(step) < mpmath.ldexp(1, -prec - 10):
                    break
            p0, p1 = mpmath.mpf(1), x
            for k in range(2, q + 1):
                p0, p1 = p1, ((2 * k - 1) * x * p1 - (k - 1) * p0) / k
            dp = q * (x * p1 - p0) / (x * x - 1)
            nodes.append(+x)
            weights.append(2 / ((1 - x * x) * dp * dp))
    return tuple(nodes), tuple(weights)


def _mp_pair_kernel(fn_mp, kinks, v, c, dps: int, q: int) -> mpmath.mpf:
    """``E[rho(h) rho(h')]`` (variance ``v``, covariance ``c``) by piecewise ``q``-point
    Gauss--Legendre at ``dps`` digits, split at the kinks exactly as :func:`_gl_gaussian_pair`;
    panels of width ``min(1, 1/scale)`` on ``[-L, L]`` with ``phi(L) < 10^-(dps+8)``."""
    gx, gw = _mp_leggauss(q, mpmath.mp.prec)
    sv = mpmath.sqrt(v)
    r = max(mpmath.mpf(-1), min(mpmath.mpf(1), c / v))
    sr = mpmath.sqrt(max(mpmath.mpf(0), 1 - r * r))
    L = _truncation_point(dps)
    inv = 1 / mpmath.sqrt(2 * mpmath.pi)

    def grid(scale, extra):
        width = min(mpmath.mpf(1), 1 / scale) if scale > 0 else mpmath.mpf(1)
        count = int(mpmath.ceil(2 * L / width))
        pts = {-L + 2 * L * k / count for k in range(count + 1)} | {e for e in extra if -L < e < L}
        return sorted(pts)

    def rule(breaks):
        for a, b in zip(breaks[:-1], breaks[1:]):
            half, mid = (b - a) / 2, (a + b) / 2
            for x, w in zip(gx, gw):
                yield mid + half * x, half * w

    kinks = [mpmath.mpf(k) for k in kinks]
    total = mpmath.mpf(0)
    for u, wu in rule(grid(sv, [k / sv for k in kinks])):
        ru = fn_mp(sv * u)
        if ru == 0:
            continue
        if sr == 0:
            inner = fn_mp(sv * r * u)
        else:
            moving = [(k / sv - r * u) / sr for k in kinks]
            inner = mpmath.fsum(wq * mpmath.exp(-w * w / 2) * fn_mp(sv * (r * u + sr * w))
                                for w, wq in rule(grid(sv * sr, moving))) * inv
        total += wu * mpmath.exp(-u * u / 2) * ru * inner
    return total * inv


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


def _check_growth(fn_mp: Callable, name: str) -> None:
    """Reject ``rho`` whose ``rho(x)^2 phi(x)`` does not decay fast at large ``|x|``.

    ``E rho(g)^2 < inf`` needs ``2 log|rho(x)| - x^2/2 -> -inf`` faster than ``-log|x|``;
    we ask for ``2 log|rho(x)| - x^2/2 + 2 log|x| < -200`` at ``|x| = 64`` and ``128``
    (``exp(x^2/4)`` is exactly borderline and fails, ``exp(x^2/5)`` passes).
    """
    for x in (64, -64, 128, -128):
        with mpmath.workdps(30):
            try:
                r = fn_mp(mpmath.mpf(x))
            except OverflowError:
                r = mpmath.inf
            except (ArithmeticError, ValueError, TypeError) as exc:
                raise ValueError(
                    f"rho = {name} could not be evaluated at x = {x}: {exc!r}. rho must be real-valued "
                    "and finite on the whole real line (otherwise the Gaussian second moment is not "
                    "finite)") from None
            r = abs(mpmath.mpmathify(r))
            if mpmath.isnan(r):
                raise ValueError(f"rho must be real-valued and finite: {name} is NaN at x = {x}")
            if r == 0:
                continue
            if mpmath.isinf(r) or 2 * mpmath.log(r) - x * x / 2 + 2 * math.log(abs(x)) > -200:
                raise ValueError(
                    f"Gaussian second moment E[rho(g)^2] is not finite (or rho is too heavy-tailed to "
                    f"integrate accurately): rho(x)^2 phi(x) does not decay at x = {x} for {name}")


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


# =========================================================================== the Activation object

class Activation:
    """An activation ``rho`` with its Gaussian-equivalence numbers (immutable; build with :func:`activation`).

    Attributes
    ----------
    name : str
        ``"relu"``, ``str(expr)`` or the callable's ``__name__``.
    expr : sympy.Expr or None
        ``rho`` as an expression in the symbol ``x`` (:data:`X`); ``None`` for a callable.
        Built on first access for a named activation (importing sympy).
    symbolic : SymbolicForms
        Exact sympy ``mu0``, ``mu1``, ``second_moment``, ``kernel`` (in ``c``), ``None`` where unknown.
        Built on first access for a named activation, whose numbers come from the same closed
        forms evaluated in numpy and mpmath.
    mu0, mu1, second_moment, mu_star_sq : float
        ``E rho(g)``, ``E[g rho(g)]``, ``E rho(g)^2``, ``E rho(g)^2 - mu0^2 - mu1^2``.
    method : str
        ``"closed-form"``, ``"polynomial"`` or ``"quadrature"`` (how the numbers are computed).
    parity : int or None
        ``+1`` even, ``-1`` odd, ``0`` neither, ``None`` unknown (callables).
    kinks : tuple of float
        Known points of non-smoothness (quadrature breakpoints).
    dps : int
        Decimal digits of the high-precision path.
    accuracy : float
        Estimated absolute error of the high-precision coefficients (0 for closed forms).
    """

    __slots__ = ("name", "_expr", "_symbolic", "method", "parity", "kinks", "dps", "accuracy",
                 "_fn", "_fn_mp", "_mp_exact", "_form", "_poly", "_smooth", "_key", "_scale", "_strip",
                 "_coeffs", "_memo", "_frozen")

    def __init__(self, *, name, expr, symbolic, method, parity, kinks, dps, fn, fn_mp, mp_exact,
                 form=None, poly=None, smooth=True, key=None):
        object.__setattr__(self, "_frozen", False)
        self.name = name
        self._expr = expr  # None with a form: built from the form on first access
        self._symbolic = symbolic
        self.method = method
        self.parity = parity
        self.kinks = tuple(kinks)
        self.dps = dps
        self._fn = fn
        self._fn_mp = fn_mp
        self._mp_exact = mp_exact
        self._form = form
        self._poly = poly
        self._smooth = smooth
        self._key = key
        self._strip = form.strip if form is not None else None
        self._memo = {}
        self._scale = 1.0
        self.accuracy = 0.0
        coeffs = self.coefficients_mp(dps)
        self._coeffs = coeffs
        self._scale = math.sqrt(max(float(coeffs.second_moment), 1e-300))
        object.__setattr__(self, "_frozen", True)

    @property
    def expr(self):
        # documented in the class docstring (a docstring here would describe it twice in the API pages)
        if self._expr is None and self._form is not None:
            return self._form.expr
        return self._expr

    @property
    def symbolic(self) -> SymbolicForms:
        # documented in the class docstring
        if self._symbolic is None and self._form is not None:
            return self._form.symbolic
        return self._symbolic

    @property
    def _from_callable(self) -> bool:
        """A Python callable: no expression, so kinks were located numerically (if at all)."""
        return self._expr is None and self._form is None

    def _exact_mp(self, key: str, dps: int):
        """The exact ``mu0``, ``mu1`` or ``second_moment`` as an mpf at ``dps`` digits, ``None`` if unknown.

        Named activations evaluate their closed forms in mpmath; others evaluate ``symbolic``.
        """
        if self._form is not None:
            f = self._form.exact.get(key)
            if f is None:
                return None
            with mpmath.workdps(dps):
                return f()
        value = getattr(self.symbolic, key)
        return None if value is None else _sympy_to_mp(value, dps)

    def __setattr__(self, key, value):
        if getattr(self, "_frozen", False):
            raise AttributeError(f"Activation is immutable; cannot set {key!r}")
        object.__setattr__(self, key, value)

    def __repr__(self) -> str:
        return (f"Activation({self.name!r}, method={self.method!r}, mu0={self.mu0:.6g}, "
                f"mu1={self.mu1:.6g}, mu_star_sq={self.mu_star_sq:.6g})")

    # ------------------------------------------------------------------ evaluation
    def __call__(self, x):
        """``rho(x)``, numpy-vectorised (scalar in, float out)."""
        arr = np.asarray(x, dtype=float)
        with np.errstate(over="ignore", under="ignore"):
            out = np.asarray(self._fn(arr), dtype=float)
        if out.shape != arr.shape:
            out = np.broadcast_to(out, arr.shape).copy()
        return float(out) if out.ndim == 0 else out

    def fn_mpmath(self, x):
        """``rho(x)`` for an mpmath (or float) scalar, as an mpf."""
        return mpmath.mpf(self._fn_mp(mpmath.mpf(x)))

    # ------------------------------------------------------------------ float coefficients
    @property
    def mu0(self) -> float:
        return float(self._coeffs.mu0)

    @property
    def mu1(self) -> float:
        return float(self._coeffs.mu1)

    @property
    def second_moment(self) -> float:
        return float(self._coeffs.second_moment)

    @property
    def mu_star_sq(self) -> float:
        return float(self._coeffs.mu_star_sq)

    # ------------------------------------------------------------------ high precision
    def coefficients_mp(self, dps: int | None = None) -> MpCoefficients:
        """``mu0, mu1, E rho^2, mu_*^2`` as mpmath numbers at ``dps`` digits (default ``self.dps``).

        Closed forms are evaluated exactly (mpmath for named activations, ``evalf`` for sympy
        ones); otherwise adaptive Gauss--Legendre quadrature (cached on disk for named and
        sympy activations).
        """
        dps = self.dps if dps is None else _check_dps(dps)
        memo_key = ("coeffs", dps)
        if memo_key in self._memo:
            return self._memo[memo_key]
        with mpmath.workdps(dps + 10):
            mu0, mu1, sec = (self._exact_mp(k, dps + 10) for k in ("mu0", "mu1", "second_moment"))
            if sec is None or mu0 is None or mu1 is None:
                n, sec, _ = self._quadrature_moments(1, dps)
                mu0 = n[0] if mu0 is None else mu0
                mu1 = n[1] if mu1 is None else mu1
            result = MpCoefficients(+mu0, +mu1, +sec, sec - mu0**2 - mu1**2, dps)
        self._memo[memo_key] = result
        return result

    def hermite_coefficients_mp(self, order: int, dps: int | None = None) -> list:
        """``a_k = E[rho(g) He_k(g)]``, ``k = 0..order``, as mpmath numbers.

        Closed forms are exact.  Quadrature results are accurate to about
        ``10^-dps sqrt(k!) ||rho||`` (absolute): ``a_k / sqrt(k!)`` is what enters every
        Mehler series, and it is computed to ``dps`` digits absolute.
        """
        order = _check_order(order, limit=None)
        dps = self.dps if dps is None else _check_dps(dps)
        if self._form is not None and self._form.hermite_mp is not None:
            with mpmath.workdps(dps + 10):
                return [+v for v in self._form.hermite_mp(order)]
        if self._poly is not None:
            with mpmath.workdps(dps + 10):
                return [_sympy_to_mp(self._poly[k], dps + 10) if k < len(self._poly) else mpmath.mpf(0)
                        for k in range(order + 1)]
        n, _, _ = self._quadrature_moments(order, dps)
        with mpmath.workdps(dps + 10):
            out = [n[k] * mpmath.sqrt(mpmath.factorial(k)) for k in range(order + 1)]
        if self.parity in (1, -1):  # exact zeros for a known parity
            out = [v if (k % 2 == 0) == (self.parity == 1) else mpmath.mpf(0) for k, v in enumerate(out)]
        return out

    def hermite_coefficients(self, order: int) -> np.ndarray:
        """Float ``a_k = E[rho(g) He_k(g)]`` for ``k = 0..order`` (probabilists' Hermite).

        ``K(c) = sum_k a_k^2 c^k / k!`` and ``sum_k a_k^2 / k! = E rho(g)^2``.

        >>> activation("quadratic").hermite_coefficients(3).tolist()
        [1.0, 0.0, 2.0, 0.0]
        """
        order = _check_order(order)
        key = ("hermite-float", order)
        if key not in self._memo:
            arr = np.array([float(v) for v in self.hermite_coefficients_mp(order)])
            arr.setflags(write=False)
            self._memo[key] = arr
        return self._memo[key].copy()

    def kernel_mp(self, c, dps: int | None = None):
        """``K(c)`` as an mpmath number at ``dps`` digits.

        Closed forms and polynomials are exact; ``c = 0, 1, -1`` reduce to ``mu0^2``,
        ``E rho^2`` and the one-dimensional ``E[rho(g) rho(-g)]``.  Otherwise the Mehler
        series ``sum_k a_k^2 c^k / k!`` with high-precision Hermite coefficients when
        its tail bound ``(E rho^2 - partial sum) |c|^(K+1)`` is below ``10^-dps`` with at
        most :data:`MEHLER_MP_MAX_ORDER` terms (small ``|c|``), else a two-dimensional
        trapezoidal rule (analytic ``rho`` only, seconds at 30 digits; a ValueError
        when it does not converge).  Results are memoised.
        """
        dps = self.dps if dps is None else _check_dps(dps)
        with mpmath.workdps(dps + 10):
            c = mpmath.mpf(c)
            if mpmath.isnan(c):
                raise ValueError("c must not be NaN")
            if abs(c) > 1 + RANGE_SLACK:
                raise ValueError(f"c must lie in [-1, 1], got {mpmath.nstr(c, 17)}")
            c = max(min(c, mpmath.mpf(1)), mpmath.mpf(-1))
            if self._form is not None:
                if self._form.kernel_mp is not None:
                    return +self._form.kernel_mp(c)
            elif self.symbolic.kernel is not None:
                import sympy

                C = _symbols()[1]
                return +_sympy_to_mp(self.symbolic.kernel.subs(C, sympy.Float(c, dps + 10)), dps + 10)
            key = ("kernel_mp", mpmath.nstr(c, dps + 10), dps)
            if key not in self._memo:
                self._memo[key] = self._kernel_mp_quadrature(c, dps)
            return +self._memo[key]

    # ------------------------------------------------------------------ kernel
    def kernel(self, c):
        """``K(c) = E[rho(g) rho(g')]`` for correlation ``c`` in ``[-1, 1]`` (numpy-vectorised).

        >>> round(activation("erf").kernel(0.0), 15), round(activation("linear").kernel(0.3), 15)
        (0.0, 0.3)
        """
        arr, scalar = _check_range(c, -1.0, 1.0, "c")
        if self._form is not None and self._form.kernel is not None:
            out = np.asarray(self._form.kernel(arr), dtype=float)
        elif self._poly is not None:
            n2 = self._normalised_hermite_float(len(self._poly) - 1) ** 2
            out = np.polynomial.polynomial.polyval(arr, n2)
        elif self._gl_kernel_applies():
            out = self._gl_kernel(arr)
        else:
            out = self._kernel_quadrature(arr)
        return float(out) if scalar else out

    def mu_s_sq(self, a_sq):
        """``K(a^2) - mu0^2 - mu1^2 a^2`` for ``a_sq = a_t^2`` in ``[0, 1]`` (vectorised).

        For ``a_sq <= 1/4`` the Mehler tail ``sum_{k>=2} a_k^2 a_sq^k / k!`` is summed
        instead, so small values keep their relative accuracy.
        """
        arr, scalar = _check_range(a_sq, 0.0, 1.0, "a_sq")
        out = np.empty(arr.shape)
        small = arr <= 0.25
        if np.any(~small):
            big = arr[~small]
            out[~small] = self.kernel(big) - self.mu0**2 - self.mu1**2 * big
        if np.any(small):
            order = 48  # 0.25^49 < 1e-29: the truncation is invisible in double precision
            n2 = self._normalised_hermite_float(order) ** 2
            n2[:2] = 0.0
            out[small] = np.polynomial.polynomial.polyval(arr[small], n2)
        out = np.where((out < 0) & (out > -1e-14 * self._scale**2), 0.0, out)
        return float(out) if scalar else out

    def mu_f_sq(self, a_sq):
        """``mu_star_sq - mu_s_sq(a_sq)``: the per-draw (fresh) nonlinear variance."""
        s = self.mu_s_sq(a_sq)
        out = self.mu_star_sq - np.asarray(s)
        out = np.where((out < 0) & (out > -1e-14 * self._scale**2), 0.0, out)
        return float(out) if np.ndim(s) == 0 else out

    # ------------------------------------------------------------------ structured data (any variance)
    def equivalence_constants(self, variance, covariance, *, with_error: bool = False):
        """MODEL.md's structured-data constants at pre-activation variance ``v`` and covariance ``c``.

        With ``h, h'`` centred Gaussians of variance ``v`` and covariance ``c``:
        ``mu0 = E rho(h)``, ``mu1 = E[h rho(h)] / v``, ``mu_*^2 = E rho(h)^2 - mu0^2 - mu1^2 v``,
        ``mu_s^2 = E[rho(h) rho(h')] - mu0^2 - mu1^2 c``, ``mu_f^2 = mu_*^2 - mu_s^2``
        (structured data: ``v = a_t^2 tau + Delta_t``, ``c = a_t^2 tau``).  Vectorised over
        ``broadcast(variance, covariance)``; returns the five float arrays (and, with
        ``with_error=True``, an estimated absolute error bound of ``mu_s^2`` as a sixth).

        ``v = 1`` gives exactly :attr:`mu0`, :attr:`mu1`, :attr:`mu_star_sq` and
        :meth:`mu_s_sq` ``(c)``.  Otherwise: polynomials exactly (Mehler series, finite);
        everything else by piecewise Gauss--Legendre in ``(u, w)``, ``h = sqrt(v) u``,
        ``h' = sqrt(v)(r u + sqrt(1 - r^2) w)``, ``r = c / v``, split at the kinks of
        ``rho`` (geometric convergence on every panel), with the 1-D moments from the
        closed forms where they exist (and, for those, the Mehler series in ``r`` when
        ``|r| <= 1/2``); the error estimate compares 12- and 20-node
        rules and a :class:`QuadratureWarning` is raised above ``1e-12`` of ``E rho(h)^2``.

        >>> relu = activation("relu")
        >>> [round(float(q), 12) for q in relu.equivalence_constants(4.0, 1.0)[:3]]
        [0.797884560803, 0.5, 0.363380227632]
        >>> bool(abs(relu.equivalence_constants(1.0, 0.3)[3] - relu.mu_s_sq(0.3)) == 0)
        True
        """
        v, c = np.broadcast_arrays(np.asarray(variance, dtype=float), np.asarray(covariance, dtype=float))
        if not (np.all(np.isfinite(v)) and np.all(np.isfinite(c))):
            raise ValueError("variance and covariance must be finite (no NaN or inf)")
        if np.any(v <= 0):
            raise ValueError(f"variance must be > 0, got {float(v[v <= 0].ravel()[0])!r}")
        if np.any(np.abs(c) > v * (1 + RANGE_SLACK)):
            raise ValueError("covariance must satisfy |c| <= variance (a correlation in [-1, 1])")
        out = np.empty((6,) + v.shape)
        flat_v, flat_c = v.ravel(), c.ravel()
        rows = out.reshape(6, -1)
        unit = (flat_v == 1.0) & (flat_c >= 0.0) & (flat_c <= 1.0)
        if np.any(unit):  # the isotropic numbers themselves (one vectorised call, as mu_s_sq(c) gives them)
            cu = flat_c[unit]
            rows[0, unit], rows[1, unit], rows[2, unit] = self.mu0, self.mu1, self.mu_star_sq
            rows[3, unit] = self.mu_s_sq(cu)
            rows[4, unit] = self.mu_f_sq(cu)
            rows[5, unit] = (np.vectorize(self._kernel_error_at, otypes=[float])(cu)
                             if self._gl_kernel_applies() else 0.0)
        for key in sorted(set(zip(flat_v[~unit].tolist(), flat_c[~unit].tolist()))):
            sel = (flat_v == key[0]) & (flat_c == key[1])
            rows[:, sel] = np.array(self._constants_at(*key))[:, None]
        result = tuple(float(q) if q.ndim == 0 else q for q in out)
        return result if with_error else result[:5]

    def _constants_at(self, v: float, c: float) -> tuple:
        """``(mu0, mu1, mu_*^2, mu_s^2, mu_f^2, error of mu_s^2)`` at one ``(v, c)`` (memoised)."""
        key = ("constants", v, c)
        if key in self._memo:
            return self._memo[key]
        if v == 1.0:
            mu0, mu1, star = self.mu0, self.mu1, self.mu_star_sq
            if 0.0 <= c <= 1.0:
                shared = float(self.mu_s_sq(c))
            else:
                shared = float(self.kernel(max(-1.0, c))) - mu0**2 - mu1**2 * c
            err = self._kernel_error_at(max(-1.0, min(1.0, c))) if self._gl_kernel_applies() else 0.0
        else:
            sv = math.sqrt(v)
            r = max(-1.0, min(1.0, c / v))
            if self._poly is not None:
                alpha = self.gaussian_moments(0.0, sv, len(self._poly) - 1)
                norm2 = alpha**2 / sqrt_factorials(len(self._poly) - 1) ** 2
                mu0, mu1 = float(alpha[0]), float(alpha[1]) / sv if alpha.size > 1 else 0.0
                second = float(np.sum(norm2))
                kern = float(np.polynomial.polynomial.polyval(r, norm2))
                err = 0.0
            elif self._form is not None and self._form.moments is not None and abs(r) <= 0.5:
                # closed-form Gaussian moments: the Mehler series sum_j r^j alpha_j^2 / j!, its tail
                # after J = 60 terms below |r|^61 (E rho(h)^2 - partial sum) <= 4e-19 E rho(h)^2
                order = 60
                alpha = self.gaussian_moments(0.0, sv, order)
                norm2 = (alpha / sqrt_factorials(order)) ** 2
                second = float(self.gaussian_second_moment(0.0, sv))
                mu0, mu1 = float(alpha[0]), float(alpha[1]) / sv
                kern = float(np.polynomial.polynomial.polyval(r, norm2))
                err = abs(r) ** (order + 1) * max(second - float(np.sum(norm2)), 0.0) + 1e-16 * second
            else:
                fine, error = _gl_pair_with_error(self._fn, self.kinks, v, c, robust=self._from_callable)
                mean, first, second, kern = (float(q) for q in fine)
                err = float(error[3] + 2 * abs(mean) * error[0] + 2 * abs(first) * error[1] * abs(c) / v**2)
                mu0, mu1 = mean, first / v
                if self._form is not None and self._form.moments is not None:
                    alpha = self.gaussian_moments(0.0, sv, 1)
                    mu0, mu1 = float(alpha[0]), float(alpha[1]) / sv
                    second = float(self.gaussian_second_moment(0.0, sv))
            star = second - mu0**2 - mu1**2 * v
            shared = kern - mu0**2 - mu1**2 * c
            if err > 1e-12 * max(second, 1e-300):
                warnings.warn(
                    f"equivalence_constants: quadrature for {self.name} at variance {v:.6g}, covariance "
                    f"{c:.6g} reached only {err:.1e} (absolute, on mu_s^2); rho may have kinks that are "
                    "not known (pass a sympy expression so they can be located)", QuadratureWarning,
                    stacklevel=3)
        fresh = star - shared
        tiny = 1e-14 * max(self._scale**2, 1e-300)
        shared = 0.0 if -tiny < shared < 0 else shared
        fresh = 0.0 if -tiny < fresh < 0 else fresh
        value = (mu0, mu1, star, shared, fresh, err)
        self._memo[key] = value
        return value

    def equivalence_constants_mp(self, variance, covariance, dps: int | None = None) -> tuple:
        """:meth:`equivalence_constants` at one ``(v, c)`` as mpmath numbers at ``dps`` digits.

        ``v = 1`` uses :meth:`coefficients_mp` and :meth:`kernel_mp`.  Otherwise the 1-D
        moments of ``rho(sqrt(v) x)`` come from the adaptive Gauss--Legendre quadrature
        (split at the kinks ``k / sqrt(v)``) and ``E[rho(h) rho(h')]`` from their Mehler
        series ``sum_k n_k^2 r^k`` when its tail bound is below ``10^-dps``, else from the
        piecewise two-dimensional Gauss--Legendre rule (tens of seconds; two rules
        must agree to ``10^-dps``, else a ValueError).  Callables that only
        evaluate in double precision raise a ValueError (their digits beyond 16 are unknown).
        """
        dps = self.dps if dps is None else _check_dps(dps)
        with mpmath.workdps(dps + 10):
            v, c = mpmath.mpf(variance), mpmath.mpf(covariance)
            if not (mpmath.isfinite(v) and mpmath.isfinite(c)) or v <= 0:
                raise ValueError(f"variance must be finite and > 0 and covariance finite, got {variance!r}, {covariance!r}")
            if abs(c) > v * (1 + RANGE_SLACK):
                raise ValueError("covariance must satisfy |c| <= variance")
            c = max(min(c, v), -v)
            if v == 1:
                co = self.coefficients_mp(dps)
                mu0, mu1, star = co.mu0, co.mu1, co.mu_star_sq
                kern = self.kernel_mp(c, dps)
            else:
                self._require_mp_exact()
                sv = mpmath.sqrt(v)
                fn = self._fn_mp
                scaled = [mpmath.mpf(k) / sv for k in self.kinks]
                r = c / v
                if abs(r) < mpmath.mpf(10) ** (-dps - 3):
                    order = 1
                elif abs(r) >= 1:
                    order = MEHLER_MP_MAX_ORDER + 1
                else:
                    order = int(math.ceil((dps + 3) * math.log(10) / -math.log(float(abs(r))))) + 1
                n, second, _, _ = _mp_gauss_moments(lambda x: fn(sv * x), min(order, MEHLER_MP_MAX_ORDER),
                                                    dps, kinks=scaled,
                                                    scale=self._scale_guess() * max(1.0, float(sv)))
                mu0, mu1 = n[0], n[1] / sv
                star = second - mu0**2 - mu1**2 * v
                tail = max(second - mpmath.fsum(q * q for q in n), mpmath.mpf(0)) * abs(r) ** len(n)
                if order <= MEHLER_MP_MAX_ORDER and tail <= mpmath.mpf(10) ** (-dps) * second:
                    kern = mpmath.polyval([q * q for q in reversed(n)], r)
                else:
                    kern = self._mp_pair_kernel_checked(v, c, dps, second)
            shared = kern - mu0**2 - mu1**2 * c
            return (+mu0, +mu1, +star, +shared, star - shared)

    # ------------------------------------------------------------------ kinked activations
    def _gl_kernel_applies(self) -> bool:
        """The float kernel uses piecewise Gauss--Legendre: quadrature activations with known
        kinks, non-smooth ones, and callables (kinks unknown; the error estimate is honest)."""
        return (self._form is None or self._form.kernel is None) and self._poly is None and (
            bool(self.kinks) or not self._smooth or self._from_callable)

    def _kernel_error_at(self, c: float) -> float:
        key = ("kernel-gl", c)
        if key not in self._memo:
            fine, error = _gl_pair_with_error(self._fn, self.kinks, 1.0, c, robust=self._from_callable)
            self._memo[key] = (float(fine[3]), float(error[3]))
        return self._memo[key][1]

    def kernel_error(self, c):
        """An estimated bound on the absolute error of :meth:`kernel` ``(c)`` (0 for closed forms).

        For activations given as Python callables the kinks are unknown: the estimate
        compares two Gauss--Legendre rules and bounds the true error (tested against mpmath).
        """
        arr, scalar = _check_range(c, -1.0, 1.0, "c")
        if not self._gl_kernel_applies():
            out = np.zeros(arr.shape) if self._form is not None or self._poly is not None else \
                np.full(arr.shape, KERNEL_TOL * self._scale**2)
        else:
            out = np.vectorize(self._kernel_error_at, otypes=[float])(arr)
        return float(out) if scalar else out

    def _gl_kernel(self, c: np.ndarray) -> np.ndarray:
        """Float ``K(c)`` by piecewise Gauss--Legendre split at the kinks, with a warning when
        its error estimate exceeds :data:`KERNEL_TOL` of ``E rho^2``."""
        flat = c.ravel()
        out = np.empty(flat.size)
        worst = 0.0
        for value in np.unique(flat):
            self._kernel_error_at(float(value))
            k, e = self._memo[("kernel-gl", float(value))]
            out[flat == value] = k
            worst = max(worst, e)
        if worst > KERNEL_TOL * max(self._scale**2, 1e-300) * 10:
            warnings.warn(f"kernel: quadrature for {self.name} reached only {worst:.1e} absolute accuracy "
                          "(kinks not known: pass a sympy expression so they can be located)",
                          QuadratureWarning, stacklevel=3)
        return out.reshape(c.shape)

    def _require_mp_exact(self) -> None:
        if not self._mp_exact:
            raise ValueError(
                f"high precision needs rho in arbitrary precision, but {self.name} is a callable that "
                "only evaluates in double precision (its values beyond 16 digits are unknown); pass a "
                "sympy expression, or a callable that maps mpmath numbers to mpmath numbers")

    def _mp_pair_kernel_checked(self, v, c, dps: int, second) -> mpmath.mpf:
        """:func:`_mp_pair_kernel` with ``q = 8 + 0.6 dps`` nodes a panel, checked against ``q - 6``
        nodes (a ValueError when they disagree by more than ``10^-dps``)."""
        q = 8 + int(math.ceil(0.6 * dps))
        fine = _mp_pair_kernel(self._fn_mp, self.kinks, v, c, dps, q)
        coarse = _mp_pair_kernel(self._fn_mp, self.kinks, v, c, dps, q - 6)
        if abs(fine - coarse) > mpmath.mpf(10) ** (-dps) * max(second, mpmath.mpf(10) ** -30):
            raise ValueError(
                f"two-dimensional Gauss-Legendre for {self.name} at covariance {mpmath.nstr(c, 8)} reached "
                f"only {mpmath.nstr(abs(fine - coarse), 3)} (target 1e-{dps}); rho may have kinks that are "
                "not known (pass a sympy expression)")
        return fine

    # ------------------------------------------------------------------ Gaussian moments
    def gaussian_moments(self, mean, std, order: int) -> np.ndarray:
        """``alpha_j = E[rho(mean + std xi) He_j(xi)]``, ``xi ~ N(0, 1)``, ``j = 0..order``.

        Shape ``broadcast(mean, std).shape + (order + 1,)``; the order axis is the
        slowest in memory, so ``alpha[..., j]`` is contiguous.  With these,
        ``E[rho(u) rho(v)] = sum_j r^j / j! alpha_j(u) alpha_j(v)`` for a bivariate normal
        with means, standard deviations and correlation ``r`` (Mehler).  ``std = 0``
        gives ``(rho(mean), 0, ..., 0)``.

        Closed forms for relu, abs, erf and gelu, exact Gauss--Hermite quadrature for
        polynomials, else the nested trapezoidal rule with per-input error control:
        ``|alpha_j - exact| <= 1e-13 sqrt(j!) (||rho|| + |alpha_0|)`` with
        ``||rho|| = sqrt(E rho(g)^2)``, or a :class:`QuadratureWarning`.

        >>> a = activation("relu").gaussian_moments(0.0, 1.0, 3)
        >>> bool(np.allclose(a, activation("relu").hermite_coefficients(3)))
        True
        """
        order = _check_order(order)
        m, s, shape = _check_mean_std(mean, std)
        out = np.zeros((order + 1, m.size))
        zero = s == 0
        if np.any(zero):
            out[0, zero] = _safe_eval(self._fn, m[zero], "std = 0")
        pos = ~zero
        if np.any(pos):
            m_, s_ = (m, s) if pos.all() else (m[pos], s[pos])
            if self._form is not None and self._form.moments is not None:
                with np.errstate(under="ignore"):
                    block = self._form.moments(m_, s_, order)
            elif self._poly is not None:
                block = self._polynomial_moments(m_, s_, order)
            elif self.kinks:
                block = self._kinked_moments(m_, s_, order)[0][:order + 1]
                block *= sqrt_factorials(order)[:, None]
            else:
                A, _, err = self._trapezoid_moments(m_, s_, order)
                self._warn_accuracy(err, s_, "gaussian_moments")
                block = A[:order + 1]
                block *= sqrt_factorials(order)[:, None]
            if pos.all():
                out = block
            else:
                out[:, pos] = block
        return out.T.reshape(shape + (order + 1,))

    def gaussian_second_moment(self, mean, std) -> np.ndarray:
        """``E[rho(mean + std xi)^2]``, vectorised (closed form for relu, abs, erf and polynomials).

        >>> float(activation("abs").gaussian_second_moment(1.0, 2.0))
        5.0
        """
        m, s, shape = _check_mean_std(mean, std)
        out = np.empty(m.size)
        zero = s == 0
        if np.any(zero):
            out[zero] = _safe_eval(self._fn, m[zero], "std = 0") ** 2
        pos = ~zero
        if np.any(pos):
            m_, s_ = m[pos], s[pos]
            if self._form is not None and self._form.second_moment is not None:
                with np.errstate(under="ignore"):
                    # cancellation far in a tail can leave -1e-300: the moment is >= 0
                    out[pos] = np.maximum(self._form.second_moment(m_, s_), 0.0)
            elif self._poly is not None:
                deg = len(self._poly) - 1
                x, w = _gauss_hermite(deg + 1)
                vals = _safe_eval(self._fn, m_[:, None] + s_[:, None] * x, "a polynomial")
                out[pos] = (vals * vals) @ w
            elif self.kinks:
                out[pos] = self._kinked_moments(m_, s_, 0)[1]
            else:
                _, S, err = self._trapezoid_moments(m_, s_, 0, second=True)
                self._warn_accuracy(err, s_, "gaussian_second_moment")
                out[pos] = S
        return out.reshape(shape)

    # ------------------------------------------------------------------ internals
    def _normalised_hermite_float(self, order: int) -> np.ndarray:
        """Float ``a_k / sqrt(k!)``, ``k = 0..order`` (accurate in absolute terms)."""
        key = ("hermite-normalised", order)
        if key not in self._memo:
            if self._form is not None and self._form.hermite_mp is not None or self._poly is not None:
                with mpmath.workdps(self.dps + 10):
                    vals = [float(v / mpmath.sqrt(mpmath.factorial(k)))
                            for k, v in enumerate(self.hermite_coefficients_mp(order))]
            else:
                n, _, _ = self._quadrature_moments(order, self.dps)
                vals = [float(v) for v in n]
                if self.parity in (1, -1):
                    vals = [v if (k % 2 == 0) == (self.parity == 1) else 0.0 for k, v in enumerate(vals)]
            self._memo[key] = np.array(vals)
        return self._memo[key].copy()

    def _quadrature_moments(self, order: int, dps: int):
        """``(n_k, E rho^2, error)`` from :func:`_mp_gauss_moments`, memoised and disk-cached."""
        # one pass serves every order up to 48 (what mu_s_sq needs); beyond, multiples of 8
        order_eff = 1 if order <= 1 else max(48, 8 * math.ceil(order / 8))
        for key, val in self._memo.items():  # the same or a higher order already computed serves
            if isinstance(key, tuple) and key[0] == "quad" and key[1] >= order_eff and key[2] == dps:
                n, sec, err = val
                return n[: order + 1], sec, err
        key = ("quad", order_eff, dps)

        def compute():
            n, sec, err, worst = _mp_gauss_moments(
                self._fn_mp, order_eff, dps, kinks=self.kinks, scale=self._scale_guess(),
                exact=self._mp_exact)
            return tuple(n), sec, err, worst

        if self._key is not None:
            desc = f"{_CACHE_VERSION}|{self._key}|order={order_eff}|dps={dps}|kinks={self.kinks}"
            n, sec, err, worst = _cache.cached("activation-moments", desc, compute)
        else:
            n, sec, err, worst = compute()
        scale = self._scale_guess()
        limit = (10.0 ** -(dps - 2) if self._mp_exact else 1e-13) * scale
        if not (mpmath.isfinite(sec) and sec >= 0):
            raise ValueError(f"Gaussian second moment is not finite for {self.name} (quadrature gave {sec})")
        if err > 1e-6 * (scale + math.sqrt(float(sec))):
            raise ValueError(
                f"Gaussian second moment is not finite (or rho is too singular to integrate) for "
                f"{self.name}: quadrature does not converge near x = {mpmath.nstr(worst, 6)}")
        if err > limit:
            warnings.warn(
                f"Gauss-Legendre quadrature for {self.name} reached only {mpmath.nstr(err, 2)} "
                f"(target {limit:.0e}); the worst panel is near x = {mpmath.nstr(worst, 6)} "
                "(a kink or jump that is not at an integer? pass a sympy expression so kinks "
                "can be located)", QuadratureWarning, stacklevel=4)
        object.__setattr__(self, "accuracy", max(self.accuracy, float(err)))
        self._memo[key] = (list(n), sec, err)
        return list(n)[: order + 1], sec, err

    def _kernel_mp_quadrature(self, c, dps: int):
        self._require_mp_exact()
        coeffs = self.coefficients_mp(dps)
        if c == 0:
            return coeffs.mu0 ** 2
        if c == 1:
            return +coeffs.second_moment
        if c == -1:
            fn = self._fn_mp
            n, _, _ = self._mp_moments_of(lambda x: fn(x) * fn(-x), 0, dps)
            return n[0]
        tol = mpmath.mpf(10) ** (-dps) * self._scale**2
        terms = int(math.ceil((dps + 3) * math.log(10) / -math.log(float(abs(c))))) + 1
        if terms <= MEHLER_MP_MAX_ORDER:
            n, sec, _ = self._quadrature_moments(terms, dps)
            partial = mpmath.fsum(v * v for v in n)
            tail = max(sec - partial, mpmath.mpf(0)) * abs(c) ** (len(n))
            if tail <= tol:
                return mpmath.polyval([v * v for v in reversed(n)], c)
        if self.kinks or not self._smooth:
            # piecewise 2-D Gauss--Legendre split at the kinks (the trapezoidal rule needs analytic rho)
            return self._mp_pair_kernel_checked(mpmath.mpf(1), c, dps, coeffs.second_moment)
        return _mp_kernel_trapezoid(self._fn_mp, c, dps, self._scale, self.name, self._strip)

    def _mp_moments_of(self, fn, order, dps):
        """:func:`_mp_gauss_moments` of another function built from ``rho`` (same kinks)."""
        kinks = tuple(sorted(set(self.kinks) | {-k for k in self.kinks}))
        n, sec, err, _ = _mp_gauss_moments(fn, order, dps, kinks=kinks, scale=self._scale_guess() ** 2,
                                           exact=self._mp_exact)
        return n, sec, err

    def _scale_guess(self) -> float:
        """``sqrt(E rho(g)^2)`` from 80-node Gauss--Hermite (only used to scale tolerances)."""
        if "scale" not in self._memo:
            x, w = _gauss_hermite(80)
            v = _safe_eval(self._fn, x, "the scale estimate")
            self._memo["scale"] = max(math.sqrt(float((v * v) @ w)), 1e-300)
        return self._memo["scale"]

    def _trapezoid_moments(self, m, s, order, second=False, tol=FLOAT_TOL):
        strip = None if self._strip is None else self._strip / s  # rho(m + s xi): strip a / s in xi
        return _trapezoid(_evaluate_shifted(self._fn, m, s), m.size, order, scale=self._scale,
                          max_level=7 if self._smooth else 5, second=second, tol=tol, strip=strip)

    def _warn_accuracy(self, err, s, where):
        bad = err > FLOAT_TOL
        if np.any(bad):
            warnings.warn(
                f"{where}: quadrature for {self.name} reached only {float(np.max(err)):.1e} "
                f"(relative to the scale of rho; target {FLOAT_TOL:.0e}) on {int(np.sum(bad))} of "
                f"{err.size} inputs (std up to {float(np.max(s[bad])):.3g}); rho may be non-smooth "
                "or the std too large", QuadratureWarning, stacklevel=3)

    def _kinked_moments(self, m, s, order):
        """Piecewise Gauss--Legendre moments split at the known kinks (:func:`_gl_shifted_moments`),
        ``q = 20 + 2 (order - 16)/3`` nodes a panel (every panel integrand is smooth and resolved);
        for callables, whose kinks were located numerically, a :class:`QuadratureWarning` when the
        rule with 6 nodes fewer disagrees by more than :data:`FLOAT_TOL` of the scale."""
        q = 20 + 2 * max(0, order - 16) // 3  # He_k phi has ~sqrt(k) oscillations per unit of xi
        A, S = _gl_shifted_moments(self._fn, self.kinks, m, s, order, q)
        if not np.all(np.isfinite(A)) or not np.all(np.isfinite(S)):
            raise ValueError("rho(mean + std*xi) is not finite: the Gaussian moments are not finite "
                             "(or rho overflows in double precision)")
        if self._from_callable:  # kinks located numerically: check against a coarser rule
            Ac, Sc = _gl_shifted_moments(self._fn, self.kinks, m, s, order, q - 6)
            norm = self._scale + np.abs(A[0]) + np.sqrt(np.maximum(S, 0.0))
            err = np.maximum(np.max(np.abs(A - Ac), axis=0), np.abs(S - Sc) / norm) / norm
            self._warn_accuracy(err, s, "gaussian_moments")
        return A, S

    def _polynomial_moments(self, m, s, order):
        """Gauss--Hermite with ``(deg + order) // 2 + 1`` nodes: exact for ``p(m + s xi) He_j(xi)``."""
        deg = len(self._poly) - 1
        x, w = _gauss_hermite((deg + order) // 2 + 1)
        # w_q He_j(x_q) = w_q psi_j(x_q) sqrt(j!) sqrt(2 pi) exp(x_q^2 / 2)
        weighted = hermite_functions(x, order) * (sqrt_factorials(order)[:, None]
                                                  * (w * math.sqrt(2 * math.pi) * np.exp(0.5 * x * x)))
        vals = _safe_eval(self._fn, m[:, None] + s[:, None] * x, "a polynomial")
        return weighted @ vals.T

    def _kernel_quadrature(self, c: np.ndarray) -> np.ndarray:
        """``K(c) = E_u[rho(u) E_w rho(c u + sqrt(1-c^2) w)]`` by nested trapezoidal rules."""
        flat = c.ravel()
        sc = np.sqrt(np.maximum(1.0 - flat * flat, 0.0))
        worst = [0.0]
        fn = self._fn

        def evaluate(idx, u):
            mean = (flat[idx, None] * u).ravel()
            std = np.repeat(sc[idx], u.size)
            inner = np.empty(mean.size)
            zero = std == 0
            if np.any(zero):
                inner[zero] = _safe_eval(fn, mean[zero], "the kernel")
            if not np.all(zero):
                A, _, err = self._trapezoid_moments(mean[~zero], std[~zero], 0, tol=KERNEL_TOL)
                inner[~zero] = A[0]
                worst[0] = max(worst[0], float(np.max(err)))
            return _safe_eval(fn, u, "the kernel")[None, :] * inner.reshape(idx.size, u.size)

        # rho(u) E_w rho(c u + s w) is analytic where rho(u) is (|c| <= 1)
        strip = None if self._strip is None else np.full(flat.size, self._strip)
        A, _, err = _trapezoid(evaluate, flat.size, 0, scale=self._scale**2, tol=KERNEL_TOL,
                               max_level=7 if self._smooth else 5, strip=strip)
        worst[0] = max(worst[0], float(np.max(err)) if err.size else 0.0)
        if worst[0] > KERNEL_TOL:
            warnings.warn(f"kernel: quadrature for {self.name} reached only {worst[0]:.1e} relative "
                          "accuracy; rho may be non-smooth", QuadratureWarning, stacklevel=3)
        return A[0].reshape(c.shape)


# =========================================================================== small helpers

@functools.lru_cache(maxsize=32)
def _gauss_hermite(q: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss--Hermite nodes and probability weights for the standard normal."""
    x, w = hermegauss(q)
    w = w / math.sqrt(2 * math.pi)
    x.setflags(write=False)
    w.setflags(write=False)
    return x, w


def _sympy_to_mp(value: sympy.Expr, dps: int):
    """A real sympy number as an mpf with ``dps`` correct digits."""
    import sympy

    re, im = sympy.N(value, dps).as_real_imag()
    if im != 0:
        raise ValueError(f"rho must be real-valued; a coefficient evaluated to {value} = {re} + {im} I")
    return mpmath.mpf(sympy.Float(re, dps)._mpf_) if re != 0 else mpmath.mpf(0)


def _check_dps(dps) -> int:
    if isinstance(dps, bool) or not isinstance(dps, numbers.Integral) or dps < 15:
        raise ValueError(f"dps must be an integer >= 15, got {dps!r}")
    return int(dps)


def _check_order(order, limit: int | None = MAX_ORDER) -> int:
    if isinstance(order, bool) or not isinstance(order, numbers.Integral) or order < 0:
        raise ValueError(f"order must be a non-negative integer, got {order!r}")
    if limit is not None and order > limit:
        raise ValueError(f"order must be <= {limit} (sqrt(order!) must be a finite float), got {order}")
    return int(order)


def _check_range(value, lo: float, hi: float, name: str):
    arr = np.asarray(value, dtype=float)
    if np.any(np.isnan(arr)):
        raise ValueError(f"{name} must not be NaN")
    if np.any(arr < lo - RANGE_SLACK) or np.any(arr > hi + RANGE_SLACK):
        bad = arr[(arr < lo - RANGE_SLACK) | (arr > hi + RANGE_SLACK)].ravel()[0]
        raise ValueError(f"{name} must lie in [{lo:g}, {hi:g}], got {bad!r}")
    return np.clip(arr, lo, hi), arr.ndim == 0


def _check_mean_std(mean, std):
    try:
        m, s = np.broadcast_arrays(np.asarray(mean, dtype=float), np.asarray(std, dtype=float))
    except ValueError as exc:
        raise ValueError(f"mean and std must broadcast together: {exc}") from None
    if not np.all(np.isfinite(m)):
        raise ValueError("mean must be finite (no NaN or inf)")
    if not np.all(np.isfinite(s)):
        raise ValueError("std must be finite (no NaN or inf)")
    if np.any(s < 0):
        raise ValueError("std must be >= 0")
    return m.ravel().copy(), s.ravel().copy(), m.shape


def _mp_kernel_trapezoid(fn_mp, c, dps: int, scale: float, name: str, strip: float | None = None):
    """``K(c)`` by a nested two-dimensional trapezoidal rule at ``dps`` digits (analytic ``rho``).

    ``K(c) = int int phi(u) phi(w) rho(u) rho(c u + sqrt(1-c^2) w) du dw`` on the disc
    ``u^2 + w^2 <= L^2`` outside which the Gaussian weight is below ``10^-(dps+8)``;
    spacings ``2^-level`` share their nodes.  The integrand is analytic for
    ``|Im u|, |Im w| < strip`` when ``rho`` is analytic in that strip, so the error
    estimate is the one of :func:`_trapezoid` (``10 d exp(-pi strip / h)``, or the
    change ``d`` itself when the strip is unknown).
    """
    s = mpmath.sqrt(1 - c * c)
    L = _truncation_point(dps)
    inv = 1 / mpmath.sqrt(2 * mpmath.pi)
    tol = mpmath.mpf(10) ** (-dps) * scale * scale
    total = mpmath.mpf(0)
    prev = d_prev = None
    for level in range(0, 8):
        n = L << level
        h = mpmath.ldexp(1, -level)
        xs = [k * h for k in range(-n, n + 1)]
        phis = [mpmath.exp(-x * x / 2) * inv for x in xs]
        for i, u in enumerate(xs):
            ki = i - n
            row_new = level == 0 or ki % 2 != 0
            ru = mpmath.mpf(fn_mp(u)) * phis[i]
            acc = []
            for j, w in enumerate(xs):
                if not row_new and (j - n) % 2 == 0:
                    continue  # an old node, already in the running total
                if u * u + w * w > L * L:
                    continue
                acc.append(phis[j] * fn_mp(c * u + s * w))
            total += ru * mpmath.fsum(acc)
        T = total * h * h
        if prev is not None:
            d = abs(T - prev)
            est = d
            if strip is not None and (d_prev is None or d <= d_prev):
                est = 10 * d * mpmath.exp(-mpmath.pi * strip / h)
            if level >= 2 and est <= tol:
                return T
            d_prev = d
        prev = T
    raise ValueError(f"kernel_mp for {name} did not converge (the two-dimensional trapezoidal rule "
                     "needs an analytic rho); use kernel() or a closed-form activation")


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

    kinks = _detect_kinks(fn)  # numerically located; the quadrature error estimate covers a miss
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
