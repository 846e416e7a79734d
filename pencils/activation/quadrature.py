"""Float quadrature engines: nested trapezoidal rules (kernel and Gaussian moments of smooth
activations), piecewise Gauss--Legendre split at the kinks (kernel, structured-data pairs and
Gaussian moments of kinked activations), numerical kink detection for callables, and
Gauss--Hermite nodes."""
from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

from .closed_forms import hermite_functions
from .common import FLOAT_TOL

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


#: Floats per array of one block of the two-dimensional rule (16 MB): memory stays bounded.
_PAIR_BLOCK = 1 << 21
#: Most evaluations of ``rho`` one piecewise Gauss--Legendre integral may take.  Panels have
#: width ``1 / std`` (the scale of ``rho(std xi)``), so the work grows like the standard deviation
#: (like its square in two dimensions): 20 nodes a panel at std = 1 take about 7e3 evaluations in
#: two dimensions, 2e5 in one.  Beyond this a ValueError names the variance (seconds of work left).
MAX_QUADRATURE_EVALUATIONS = 5e7


def _check_work(evaluations: float, what: str, argument: str) -> None:
    """ValueError before a quadrature whose work (and, unblocked, memory) grows with the variance
    exceeds :data:`MAX_QUADRATURE_EVALUATIONS`."""
    if evaluations > MAX_QUADRATURE_EVALUATIONS:
        raise ValueError(
            f"{what} needs about {evaluations:.1e} evaluations of rho (panels of width 1/sqrt({argument}) "
            f"resolve rho(sqrt({argument}) xi); the limit is {MAX_QUADRATURE_EVALUATIONS:.0e}): the "
            f"variance is too large for the quadrature. For structured data it is v = a_t^2 tau + Delta_t "
            "with tau = tr(Sigma)/d of the covariance: rescale the data (MODEL.md normalises tau = 1)")


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
    L = _GL_HALF_WIDTH
    outer = int(math.ceil(2.0 * L * refine / min(1.0, 1.0 / sv))) + kinks.size
    inner = (int(math.ceil(2.0 * L * refine / min(1.0, 1.0 / (sv * sr)))) + kinks.size) if sr * sv >= 1e-12 else 1
    _check_work(outer * q * inner * q, f"the Gaussian pair at variance v = {v:.6g}, covariance c = {c:.6g}",
                "v")
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
    base = np.linspace(-L, L, int(math.ceil(2.0 * L * refine / min(1.0, 1.0 / (sv * sr)))) + 1)
    # the inner integrals, a block of outer nodes at a time (bounded memory)
    block = max(1, _PAIR_BLOCK // ((base.size + kinks.size) * q))
    G = np.empty(U.size)
    for lo in range(0, U.size, block):
        Ub = U[lo:lo + block]
        if kinks.size:
            moving = np.clip((kinks[None, :] / sv - r * Ub[:, None]) / sr, -L, L)
            wb = np.sort(np.concatenate([np.broadcast_to(base, (Ub.size, base.size)), moving], axis=1), axis=1)
        else:
            wb = base[None, :]
        Wn, Ww = _panels(wb, q)
        gauss_w = Ww * np.exp(-0.5 * Wn * Wn) / math.sqrt(2.0 * math.pi)
        with np.errstate(all="ignore"):
            vals = np.asarray(fn(sv * (r * Ub[:, None] + sr * Wn)), dtype=float)
        G[lo:lo + block] = np.sum(gauss_w * vals, axis=1)
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
    quadrature (``robust=True`` in :func:`_gl_pair_with_error`) covers them.  Second
    differences below ``64 eps |rho|`` (``eps`` of the callable's output type: a float32
    callable is noisy at ``6e-8``) are rounding, never a kink.
    """
    def raw(x):
        with np.errstate(all="ignore"):
            return np.asarray(fn(x))

    def values(x):
        return np.asarray(raw(x), dtype=float) * np.ones_like(x)

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
        out = raw(x)
        f = np.asarray(out, dtype=float) * np.ones_like(x)
    except Exception:  # noqa: BLE001 - not vectorised / not evaluable: no kink information
        return ()
    if not np.all(np.isfinite(f)):
        return ()
    # the callable's own precision (float32: 6e-8): rounding of its values at that level makes
    # second differences of ~ eps |rho| everywhere, spikes among them are noise, not kinks
    eps = float(np.finfo(out.dtype).eps) if out.dtype.kind == "f" else float(np.finfo(float).eps)
    d2 = np.abs(f[:-2] - 2 * f[1:-1] + f[2:])
    scale = max(float(np.max(np.abs(f[np.abs(x) < 8]))), 1e-300)
    nb = np.maximum(np.r_[np.zeros(3), d2[:-3]], np.r_[d2[3:], np.zeros(3)])
    local = np.maximum(np.maximum(np.abs(f[:-2]), np.abs(f[1:-1])), np.abs(f[2:]))
    flagged = np.nonzero((d2 > 50 * nb) & (d2 > 1e-9 * scale) & (d2 > 64 * eps * local))[0] + 1
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
    per_input = (2.0 * L / width + kinks.size) * q
    _check_work(per_input, f"the Gaussian moments at std up to {float(np.max(s)):.6g}", "std^2")
    rows = int(min(_GL_MOMENT_ROWS, max(1, _PAIR_BLOCK // per_input)))  # bounded memory
    base = np.linspace(-L, L, int(math.ceil(2.0 * L / width)) + 1)
    A = np.empty((order + 1, m.size))
    S = np.empty(m.size)
    inv_sqrt = 1.0 / np.sqrt(np.arange(1, order + 2, dtype=float))
    for start in range(0, m.size, rows):
        mm, ss = m[start:start + rows], s[start:start + rows]
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


# =========================================================================== small helpers

@functools.lru_cache(maxsize=32)
def _gauss_hermite(q: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss--Hermite nodes and probability weights for the standard normal."""
    x, w = hermegauss(q)
    w = w / math.sqrt(2 * math.pi)
    x.setflags(write=False)
    w.setflags(write=False)
    return x, w
