"""High-precision (mpmath) quadrature at ``dps`` digits: adaptive Gauss--Legendre for the Hermite
moments, piecewise two-dimensional Gauss--Legendre split at the kinks and the two-dimensional
trapezoidal rule for the kernel ``K(c)``."""
from __future__ import annotations

import functools
import heapq
import math
from typing import Callable

import mpmath

from .common import QUADRATURE_BISECTIONS_DOUBLE, QUADRATURE_BISECTIONS_PER_DIGIT

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
                      exact: bool = True, budget: int | None = None):
    """Normalised Hermite moments ``n_k = E[rho(g) He_k(g)] / sqrt(k!)``, ``E rho(g)^2`` and an error.

    Adaptive composite 24-point Gauss--Legendre quadrature of
    ``rho(x) psi_k(x)`` (``psi_k = He_k phi / sqrt(k!)``, all ``k`` from one set of
    evaluations) on ``[-L, L]``; panels start as the unit intervals between integers
    and known kinks and are bisected until the two halves agree with the whole to
    ``10^-(dps+3) scale``.  ``exact=False`` means ``fn_mp`` only has double
    precision; the tolerance is then ``1e-15 scale``.

    Budget: at most ``budget`` bisections (default :func:`quadrature_budget`), taken
    largest change first (globally adaptive, as QUADPACK's QAG: Piessens et al. 1983,
    ch. 2).  A noisy ``rho`` (a float32 callable, say) never meets the tolerance: its
    panels would be bisected down to the minimal width, millions of them.  When the
    budget runs out, every panel still pending is accepted as is and adds the change
    ``|Q_left + Q_right - Q_whole|`` of the bisection that created it (split evenly
    between the two halves) to the error estimate, which therefore stays honest.  Within
    the budget the panels accepted and the order of their summation are those of a plain
    depth-first bisection.

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

        full = cuts[-1] - cuts[0]
        left_over = quadrature_budget(dps, exact) if budget is None else int(budget)
        # pending panels, largest parent change first: (-change, position, a, b, Q_whole)
        heap = [(-mpmath.inf, k, a, b, panel(a, b)) for k, (a, b) in enumerate(zip(cuts[:-1], cuts[1:]))]
        heapq.heapify(heap)
        done = []  # accepted panels: (a, change, midpoint, Q)
        while heap and left_over > 0:
            _, _, a, b, whole = heapq.heappop(heap)
            left_over -= 1
            m = (a + b) / 2
            left, right = panel(a, m), panel(m, b)
            fine = [p + q for p, q in zip(left, right)]
            g = gap(fine, whole)
            if g <= tol * (b - a) / full or b - a < min_width:
                done.append((a, g, m, fine))
            else:
                heapq.heappush(heap, (-g / 2, float(a), a, m, left))
                heapq.heappush(heap, (-g / 2, float(m), m, b, right))
        done += [(a, -neg, (a + b) / 2, whole) for neg, _, a, b, whole in heap]  # budget spent
        # summed right to left, as the depth-first bisection does
        total = [mpmath.mpf(0)] * (order + 2)
        error = mpmath.mpf(0)
        worst = (mpmath.mpf(0), mpmath.mpf(0))
        for _, g, m, fine in sorted(done, key=lambda item: item[0], reverse=True):
            total = [p + q for p, q in zip(total, fine)]
            error += g
            if g > worst[0]:
                worst = (g, m)
        return total[:-1], total[-1], error, worst[1]


def quadrature_budget(dps: int, exact: bool) -> int:
    """Bisections allowed to :func:`_mp_gauss_moments`: :data:`~.common.QUADRATURE_BISECTIONS_DOUBLE`
    for a ``rho`` known in double precision only, else
    :data:`~.common.QUADRATURE_BISECTIONS_PER_DIGIT` times ``dps``."""
    return QUADRATURE_BISECTIONS_PER_DIGIT * int(dps) if exact else QUADRATURE_BISECTIONS_DOUBLE


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

    panels = [int(mpmath.ceil(2 * L * max(1, scale))) + len(kinks) for scale in (sv, sv * sr)]
    work = panels[0] * q * (panels[1] * q if sr else 1)
    if work > MAX_MP_PAIR_EVALUATIONS:  # panels of width 1/sqrt(v): the work grows like v
        raise ValueError(
            f"the {dps}-digit two-dimensional quadrature at variance v = {mpmath.nstr(v, 6)} needs about "
            f"{float(work):.1e} evaluations of rho (limit {MAX_MP_PAIR_EVALUATIONS:.0e}): the variance is "
            "too large (structured data: v = a_t^2 tau + Delta_t, tau = tr(Sigma)/d; rescale the data)")
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


#: Most evaluations of ``rho`` the mpmath two-dimensional rule may take (about ten minutes at 30
#: digits); its panels have width ``1/sqrt(v)``, so this bounds the variance (about 60 at 30 digits).
MAX_MP_PAIR_EVALUATIONS = 2e7


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
