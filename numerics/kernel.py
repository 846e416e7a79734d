"""Compiled per-point kernel of a reduced system: the fast path of
:class:`numerics.reduced.ReducedSolver`.

The vectorised numpy solver runs the program of a reduced system on whole arrays, so a
grid costs a few hundred numpy calls per iteration and a single point costs the same
calls on arrays of length 1.  This module writes the same program as *scalar* C++ --
one function per segment, per core map and Jacobian, and a per-point driver (damped
fixed point, Newton with step halving, attractivity of the root, continuation in the
ridge, the rounding check) -- and compiles it with the system's C++ compiler into a
shared library loaded by :mod:`ctypes`.  Each point is solved on its own from its own
cold start, so its value and flag never depend on the other points of the call.

The code is a template in the number type ``T``, instantiated three times (one library
each, built on first use):

* ``T = double``: the algorithm of the numpy solver (module docstring of
  :mod:`numerics.reduced`), the same operations in the same order (``-ffp-contract=off``:
  no fused multiply-adds, no reassociation) except integer powers, which are products here;
* ``T = dd`` (double-double, about 32 significant digits): the refinement of points whose
  double-precision rounding estimate is too large (deep memorisation, where the errors are
  small differences of large traces).  Newton restarts from the double-precision core; the
  rounding check is the same, with moves of a few double-double ulps.  Double-double
  arithmetic follows Dekker (1971) and Hida, Li & Bailey (2001): error-free sums
  (Knuth's TwoSum), Veltkamp splitting for exact products, one correction step for
  quotients and square roots;
* ``T = std::complex<double>``: spectral arguments off the real axis (the contour integrals
  of :mod:`derivations.training_time`); the attractivity test then runs on the complex
  characteristic polynomial (the Schur--Cohn step with conjugates).

One more difference with the numpy solver: the attractivity test of a root (spectral radius
of ``(I + f')/2`` below 1) uses the Schur--Cohn recursion on the characteristic
polynomial (Faddeev--LeVerrier), algebraic for the few core unknowns and free of LAPACK.

The source and the library live in the disk cache, named by the cache key of their
system (a change of the deriving code gives new files), so a fresh process loads the
library without sympy.  Without a C++ compiler (``$CXX``, else ``c++``, ``g++`` or
``clang++``) or with ``DSM_KERNEL=numpy``, the numpy solver runs instead.

References: I. Schur (1917), A. Cohn (1922) for the unit-disk test; Householder, *The
Theory of Matrices in Numerical Analysis* (1964), sec. 6.7, for Faddeev--LeVerrier;
T. J. Dekker, *A floating-point technique for extending the available precision*,
Numer. Math. 18 (1971); Y. Hida, X. S. Li, D. H. Bailey, *Algorithms for quad-double
precision floating point arithmetic*, ARITH-15 (2001).
"""
from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np

__all__ = ["kernel_enabled", "threads", "compiler", "load_kernel", "kernel_source", "Kernel", "KERNEL_CFG",
           "KernelWarning", "DD_EPS", "operation_counts"]

#: Slots of the ``cfg`` array passed to the kernel (``polish``: Newton's target residual).
KERNEL_CFG = ("tol", "fp_tol", "damping", "fp_maxiter", "maxiter", "continuation", "per_decade", "polish", "attract")
#: Unit roundoff of double-double arithmetic: the accurate sum, product, quotient and square
#: root used here err by a few units of 2^-106 (Hida, Li & Bailey 2001), so 2^-104 scales the
#: moves and the floor of its rounding check.
DD_EPS = 2.0 ** -104
#: Compiler flags: IEEE double, no contraction into fused multiply-adds (double-double needs
#: exact products and sums; the double path then matches the numpy solver's operations).
CXXFLAGS = ("-O2", "-std=c++11", "-shared", "-fPIC", "-ffp-contract=off", "-fno-fast-math")


#: Largest core stage the kernel takes (``KMAX`` of the runtime).
KMAX = 8
#: Grids smaller than this many points per thread run on one thread.
MIN_POINTS_PER_THREAD = 256


def threads() -> int:
    """Threads of the kernel: ``$DSM_THREADS``, else the cores this process may use."""
    env = os.environ.get("DSM_THREADS", "").strip()
    if env:
        try:
            value = int(env)
        except ValueError:
            raise ValueError(f"DSM_THREADS must be a whole number >= 1, got {env!r}") from None
        if value < 1:
            raise ValueError(f"DSM_THREADS must be a whole number >= 1, got {env!r}")
        return value
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class KernelWarning(UserWarning):
    """The compiled kernel is not available (no compiler, or the build failed): the
    vectorised numpy solver runs instead."""


@functools.lru_cache(maxsize=None)
def _which(env: str | None) -> str | None:
    if env:
        return shutil.which(env) or env
    for name in ("c++", "g++", "clang++"):
        path = shutil.which(name)
        if path:
            return path
    return None


def compiler() -> str | None:
    """The C++ compiler: ``$CXX``, else the first of ``c++``, ``g++``, ``clang++`` on the path."""
    return _which(os.environ.get("CXX"))


@functools.lru_cache(maxsize=None)
def _cpu_flags() -> tuple:
    """``("-mfma",)`` where the CPU has fused multiply-add (Linux x86), so that
    double-double products use it (exact, 2 flops instead of Dekker's 17)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return ("-mfma",) if "fma" in line.split() else ()  # not fma4
    except OSError:
        pass
    return ()


def kernel_enabled() -> bool:
    """Whether the compiled kernel is tried (``DSM_KERNEL`` is not ``numpy`` and a compiler exists)."""
    if os.environ.get("DSM_KERNEL", "compiled").strip().lower() == "numpy":
        return False
    return compiler() is not None


# -- the runtime (C++), shared by every generated kernel --------------------------------

_RUNTIME = r"""
#include <cmath>
#include <complex>
namespace k {
using std::sqrt;
using std::fabs;

// ---- double-double: value hi + lo with |lo| <= ulp(hi)/2 ----
struct dd {
    double hi, lo;
    dd() : hi(0.0), lo(0.0) {}
    dd(double h) : hi(h), lo(0.0) {}
    dd(double h, double l) : hi(h), lo(l) {}
};
static inline dd two_sum(double a, double b) {
    double s = a + b, bb = s - a;
    return dd(s, (a - (s - bb)) + (b - bb));
}
static inline dd quick_two_sum(double a, double b) {
    double s = a + b;
    return dd(s, b - (s - a));
}
static inline void split(double a, double &h, double &l) {  // Veltkamp: a = h + l, 26-bit halves
    double t = 134217729.0 * a;
    h = t - (t - a);
    l = a - h;
}
static inline dd two_prod(double a, double b) {  // a b = p + e exactly
    double p = a * b;
#ifdef __FMA__
    return dd(p, std::fma(a, b, -p));
#else  // Dekker's product of the Veltkamp halves
    double ah, al, bh, bl;
    split(a, ah, al);
    split(b, bh, bl);
    return dd(p, ((ah * bh - p) + ah * bl + al * bh) + al * bl);
#endif
}
static inline dd operator+(const dd &a, const dd &b) {
    dd s = two_sum(a.hi, b.hi), t = two_sum(a.lo, b.lo);
    s.lo += t.hi;
    s = quick_two_sum(s.hi, s.lo);
    s.lo += t.lo;
    return quick_two_sum(s.hi, s.lo);
}
static inline dd operator-(const dd &a) { return dd(-a.hi, -a.lo); }
static inline dd operator-(const dd &a, const dd &b) { return a + (-b); }
static inline dd operator*(const dd &a, const dd &b) {
    dd p = two_prod(a.hi, b.hi);
    p.lo += a.hi * b.lo + a.lo * b.hi;
    return quick_two_sum(p.hi, p.lo);
}
static inline dd operator/(const dd &a, const dd &b) {
    double q1 = a.hi / b.hi;
    dd r = a - dd(q1) * b;
    double q2 = r.hi / b.hi;
    r = r - dd(q2) * b;
    double q3 = r.hi / b.hi;
    return quick_two_sum(q1, q2) + dd(q3);
}
// mixed with a double (integer constants of the generated code): cheaper than promoting
static inline dd operator+(const dd &a, double b) {
    dd s = two_sum(a.hi, b);
    s.lo += a.lo;
    return quick_two_sum(s.hi, s.lo);
}
static inline dd operator+(double a, const dd &b) { return b + a; }
static inline dd operator-(const dd &a, double b) { return a + (-b); }
static inline dd operator-(double a, const dd &b) { return (-b) + a; }
static inline dd operator*(const dd &a, double b) {
    dd p = two_prod(a.hi, b);
    p.lo += a.lo * b;
    return quick_two_sum(p.hi, p.lo);
}
static inline dd operator*(double a, const dd &b) { return b * a; }
static inline dd operator/(const dd &a, double b) {
    double q1 = a.hi / b;
    dd r = a - two_prod(q1, b);
    double q2 = r.hi / b;
    r = r - two_prod(q2, b);
    double q3 = r.hi / b;
    return quick_two_sum(q1, q2) + q3;
}
static inline dd operator/(double a, const dd &b) { return dd(a) / b; }
static inline dd &operator+=(dd &a, const dd &b) { a = a + b; return a; }
static inline dd sqrt(const dd &a) {  // Karp: x = 1/sqrt(a.hi), sqrt(a) ~ a x + (a - (a x)^2) x / 2
    if (!(a.hi > 0.0)) return dd(a.hi == 0.0 ? 0.0 : NAN);
    double x = 1.0 / std::sqrt(a.hi), ax = a.hi * x;
    dd d = a - two_prod(ax, ax);
    return two_sum(ax, d.hi * (x * 0.5));
}
typedef std::complex<double> cx;  // spectral arguments off the real axis (training time)
// io<T>::type: what the arrays crossing the C boundary hold (double for double and
// double-double, complex for complex); to_io converts a working number to it
template <typename T> struct io { typedef double type; };
template <> struct io<cx> { typedef cx type; };
static inline double to_io(double a) { return a; }
static inline double to_io(const dd &a) { return a.hi + a.lo; }
static inline cx to_io(const cx &a) { return a; }
static inline double re(double a) { return a; }
static inline double re(const dd &a) { return a.hi + a.lo; }
static inline double re(const cx &a) { return a.real(); }
static inline double cj(double a) { return a; }
static inline cx cj(const cx &a) { return std::conj(a); }
static inline double mag(double a) { return std::fabs(a); }
static inline double mag(const dd &a) { return std::fabs(a.hi + a.lo); }
static inline double mag(const cx &a) { return std::abs(a); }
template <typename T> static inline T lit(double hi, double lo);
template <> inline double lit<double>(double hi, double) { return hi; }
template <> inline dd lit<dd>(double hi, double lo) { return dd(hi, lo); }
template <> inline cx lit<cx>(double hi, double) { return cx(hi, 0.0); }
template <typename T> static inline T ipow(T x, int n) {  // x^n, n >= 1, binary powering
    T r = x;
    n -= 1;
    T b = x;
    while (n > 0) {
        if (n & 1) r = r * b;
        n >>= 1;
        if (n) b = b * b;
    }
    return r;
}

// relative residual max|u - f| / max(1, max|u|), +inf when not finite
template <typename T> static inline double residual(const T *u, const T *f, int K) {
    double scale = 1.0, r = 0.0;
    for (int i = 0; i < K; i++) {
        double a = mag(u[i]);
        if (a > scale) scale = a;
        double d = mag(u[i] - f[i]);
        if (d > r || d != d) r = d;
    }
    r = r / scale;
    return (r < INFINITY) ? r : INFINITY;
}

// x = A^{-1} b by Gaussian elimination with partial pivoting (A, b overwritten); NaN if singular
template <typename T> static void small_solve(T *A, T *b, T *x, int n) {
    for (int c = 0; c < n; c++) {
        int p = c;
        double best = mag(A[c * n + c]);
        for (int r = c + 1; r < n; r++)
            if (mag(A[r * n + c]) > best) { best = mag(A[r * n + c]); p = r; }
        if (!(best > 0.0) || best == INFINITY) {
            for (int i = 0; i < n; i++) x[i] = T(NAN);
            return;
        }
        if (p != c) {
            for (int q = 0; q < n; q++) { T t = A[c * n + q]; A[c * n + q] = A[p * n + q]; A[p * n + q] = t; }
            T t = b[c]; b[c] = b[p]; b[p] = t;
        }
        for (int r = c + 1; r < n; r++) {
            T q = A[r * n + c] / A[c * n + c];
            for (int s = c; s < n; s++) A[r * n + s] = A[r * n + s] - q * A[c * n + s];
            b[r] = b[r] - q * b[c];
        }
    }
    for (int i = n - 1; i >= 0; i--) {
        T s = b[i];
        for (int q = i + 1; q < n; q++) s = s - A[i * n + q] * x[q];
        x[i] = s / A[i * n + i];
    }
}

// all eigenvalues of (I + J)/2 in the open unit disk: Faddeev--LeVerrier, then Schur--Cohn
// (K <= KMAX, checked when the source is generated)
static const int KMAX = 8;
template <typename T> static bool attracts(const T *Jt, int K) {
    typedef typename io<T>::type W;  // double, or complex for a complex Jacobian
    W A[KMAX * KMAX], M[KMAX * KMAX], AM[KMAX * KMAX], c[KMAX + 1], p[KMAX + 1], q[KMAX + 1];
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) {
            A[i * K + j] = 0.5 * to_io(Jt[i * K + j]) + (i == j ? 0.5 : 0.0);
            if (!(mag(A[i * K + j]) < INFINITY)) return false;
        }
    for (int i = 0; i <= K; i++) c[i] = 0.0;
    c[K] = 1.0;
    for (int i = 0; i < K * K; i++) M[i] = 0.0;
    for (int s = 1; s <= K; s++) {
        for (int i = 0; i < K; i++)
            for (int j = 0; j < K; j++) {
                W t = 0.0;
                for (int l = 0; l < K; l++) t += A[i * K + l] * M[l * K + j];
                AM[i * K + j] = t;
            }
        for (int i = 0; i < K; i++)
            for (int j = 0; j < K; j++) M[i * K + j] = AM[i * K + j] + (i == j ? c[K - s + 1] : W(0.0));
        W tr = 0.0;
        for (int i = 0; i < K; i++)
            for (int l = 0; l < K; l++) tr += A[i * K + l] * M[l * K + i];
        c[K - s] = -tr / double(s);
    }
    for (int i = 0; i <= K; i++) p[i] = c[i];
    // p has all zeros inside iff |p0| < |pn| and (conj(pn) p - p0 p*)/z does, p*_i = conj(p_{n-i})
    for (int n = K; n >= 1; n--) {
        W lead = p[n], low = p[0];
        if (!(mag(low) < mag(lead))) return false;
        double m = 0.0;
        for (int i = 0; i < n; i++) {
            q[i] = cj(lead) * p[i + 1] - low * cj(p[n - 1 - i]);
            if (mag(q[i]) > m) m = mag(q[i]);
        }
        if (!(m > 0.0) || m == INFINITY) return false;
        for (int i = 0; i < n; i++) p[i] = q[i] / m;
    }
    return true;
}
"""

_STAGE = r"""
template <typename T> static double stage_{k}(T *_e, const double *_s, const double *_w, int _ns, T *u,
                                              const double *cfg, bool fp_on, long *its) {{
    const int K = {K};
    T f[K], J[K * K], A[K * K], rhs[K], step[K], cand[K], fc[K], best_u[K], best_f[K];
    map_{k}<T>(_e, _s, _w, _ns, u, f);
    double res = residual<T>(u, f, K);
    if (fp_on) {{
        T w = T(cfg[2]);
        for (int n = 0; res > cfg[1] && n < cfg[3]; n++) {{
            for (int i = 0; i < K; i++) u[i] = u[i] + w * (f[i] - u[i]);
            map_{k}<T>(_e, _s, _w, _ns, u, f);
            res = residual<T>(u, f, K);
            (*its)++;
        }}
    }}
    double target = cfg[0] < cfg[7] ? cfg[0] : cfg[7];
    for (int it = 0; it < (int)cfg[4]; it++) {{
        if (!(res > target)) break;
        jac_{k}<T>(_e, _s, _w, _ns, u, f, J);
        for (int i = 0; i < K; i++) {{
            for (int j = 0; j < K; j++) A[i * K + j] = T(i == j ? 1.0 : 0.0) - J[i * K + j];
            rhs[i] = u[i] - f[i];
        }}
        small_solve<T>(A, rhs, step, K);
        double r0 = residual<T>(u, f, K), best_r = r0;
        for (int i = 0; i < K; i++) {{ best_u[i] = u[i]; best_f[i] = f[i]; }}
        T s = T(1.0);
        for (int h = 0; h < 8; h++) {{  // halve the step where the residual does not drop
            for (int i = 0; i < K; i++) cand[i] = u[i] - s * step[i];
            map_{k}<T>(_e, _s, _w, _ns, cand, fc);
            double rc = residual<T>(cand, fc, K);
            bool better = rc < best_r;
            if (better) {{
                best_r = rc;
                for (int i = 0; i < K; i++) {{ best_u[i] = cand[i]; best_f[i] = fc[i]; }}
            }}
            if (better || rc <= r0) break;
            s = s * T(0.5);
        }}
        for (int i = 0; i < K; i++) {{ u[i] = best_u[i]; f[i] = best_f[i]; }}
        res = best_r;
        (*its)++;
        if (best_r >= r0) break;
    }}
    return res;
}}

template <typename T> static bool attracting_{k}(T *_e, const double *_s, const double *_w, int _ns, const T *u) {{
    const int K = {K};
    T f[K], J[K * K];
    jac_{k}<T>(_e, _s, _w, _ns, u, f, J);
    return attracts<T>(J, K);
}}

// stage {k} at one point: solve, check the root attracts, else continue in lam (cold solves)
template <typename T> static double solve_{k}(T *_e, const double *_s, const double *_w, int _ns, T *u,
                                              const double *cfg, bool warm, long *its) {{
    const int K = {K};
    if (!warm) {{
        T zero[K];
        for (int i = 0; i < K; i++) zero[i] = T(0.0);
        map_{k}<T>(_e, _s, _w, _ns, zero, u);
    }}
    double res = stage_{k}<T>(_e, _s, _w, _ns, u, cfg, !warm, its);
    bool stable = cfg[8] > 0 ? attracting_{k}<T>(_e, _s, _w, _ns, u) : true;
    if ((!(res <= cfg[0]) || !stable) && !warm && cfg[5] > 0 && LAM >= 0) {{
        double target = re(_e[LAM]), start = target > 1.0 ? target : 1.0;
        int steps = (int)std::ceil(cfg[6] * std::log10(start / target));
        if (steps < 1) steps = 1;
        T L[NE], uc[K], zero[K];
        for (int i = 0; i < NE; i++) L[i] = _e[i];
        double rc = INFINITY;
        for (int j = 0; j <= steps; j++) {{
            L[LAM] = T(start * std::pow(target / start, (double)j / steps));
            prefix_{k}<T>(L, _s, _w, _ns);
            if (j == 0) {{
                for (int i = 0; i < K; i++) zero[i] = T(0.0);
                map_{k}<T>(L, _s, _w, _ns, zero, uc);
                rc = stage_{k}<T>(L, _s, _w, _ns, uc, cfg, true, its);
            }} else {{
                rc = stage_{k}<T>(L, _s, _w, _ns, uc, cfg, false, its);
            }}
        }}
        if (attracting_{k}<T>(_e, _s, _w, _ns, uc) && (rc < res || !stable)) {{
            for (int i = 0; i < K; i++) u[i] = uc[i];
            res = rc;
            stable = true;
        }}
    }}
    return stable ? res : INFINITY;
}}
"""

_DRIVER = r"""
// the whole program at one point (_e[0:NP] holds the parameters; u the core, a start when warm)
template <typename T> static double run(T *_e, const double *_s, const double *_w, int _ns, T *u,
                                        const double *cfg, bool warm, T *vals, long *its) {{
    double res = 0.0, r;
{body}
    outputs<T>(_e, _s, _w, _ns, vals);
    return res;
}}

// every row of P (points x parameters) on its own.  eps: the relative size of the parameter
// moves of the rounding check (sgn[k*NP + j]: their signs in pattern k); tiny: the floor of
// the estimate, relative to max(1, |value|)
template <typename T> static void grid(long n, const typename io<T>::type *P, int ns, const double *S,
                                       const double *W, const double *cfg, const typename io<T>::type *init,
                                       int warm, int estimate, const double *sgn, double eps, double safety,
                                       double tiny, int npat, typename io<T>::type *V, double *ERR,
                                       typename io<T>::type *CORE, double *RES, long *ITS) {{
    T E[NE], u[NCORE > 0 ? NCORE : 1], u2[NCORE > 0 ? NCORE : 1], vals[NOUT], v2[NOUT];
    for (long i = 0; i < n; i++) {{
        for (int j = 0; j < NE; j++) E[j] = T(0.0);
        for (int j = 0; j < NP; j++) E[j] = T(P[i * NP + j]);
        for (int j = 0; j < NCORE; j++) u[j] = warm ? T(init[i * NCORE + j]) : T(0.0);
        long its = 0;
        RES[i] = run<T>(E, S, W, ns, u, cfg, warm != 0, vals, &its);
        ITS[i] = its;
        for (int j = 0; j < NOUT; j++) V[i * NOUT + j] = to_io(vals[j]);
        for (int j = 0; j < NCORE; j++) CORE[i * NCORE + j] = to_io(u[j]);
        if (!estimate) continue;
        double err[NOUT], cfg2[9];
        for (int j = 0; j < NOUT; j++) err[j] = 0.0;
        for (int j = 0; j < 9; j++) cfg2[j] = cfg[j];
        cfg2[8] = 0.0;  // the moved solves only measure the values: no attractivity test
        for (int pat = 0; pat < npat; pat++) {{
            for (int j = 0; j < NE; j++) E[j] = T(0.0);
            for (int j = 0; j < NP; j++) E[j] = T(P[i * NP + j]) * (T(1.0) + T(sgn[pat * NP + j] * eps));
            for (int j = 0; j < NCORE; j++) u2[j] = u[j];
            long its2 = 0;
            run<T>(E, S, W, ns, u2, cfg2, true, v2, &its2);
            for (int j = 0; j < NOUT; j++) {{
                double d = mag(v2[j] - vals[j]);
                if (!(d < INFINITY)) d = INFINITY;
                if (d > err[j]) err[j] = d;
            }}
        }}
        for (int j = 0; j < NOUT; j++) {{
            double v = mag(vals[j]);
            ERR[i * NOUT + j] = safety * err[j] + tiny * (v > 1.0 ? v : 1.0);
        }}
    }}
}}
}}  // namespace k

// one library per number type: the double-double instantiation takes most of the build
// time and is needed only where double precision fails, so it is built on first use
extern "C" {{
#ifdef KERNEL_DOUBLE
void grid_double(long n, const double *P, int ns, const double *S, const double *W, const double *cfg,
                 const double *init, int warm, int estimate, const double *sgn, double eps, double safety,
                 double tiny, int npat, double *V, double *ERR, double *CORE, double *RES, long *ITS) {{
    k::grid<double>(n, P, ns, S, W, cfg, init, warm, estimate, sgn, eps, safety, tiny, npat, V, ERR, CORE, RES, ITS);
}}
#endif
#ifdef KERNEL_DD
void grid_dd(long n, const double *P, int ns, const double *S, const double *W, const double *cfg,
             const double *init, int warm, int estimate, const double *sgn, double eps, double safety,
             double tiny, int npat, double *V, double *ERR, double *CORE, double *RES, long *ITS) {{
    k::grid<k::dd>(n, P, ns, S, W, cfg, init, warm, estimate, sgn, eps, safety, tiny, npat, V, ERR, CORE, RES, ITS);
}}
#endif
#ifdef KERNEL_COMPLEX
void grid_complex(long n, const k::cx *P, int ns, const double *S, const double *W, const double *cfg,
                  const k::cx *init, int warm, int estimate, const double *sgn, double eps, double safety,
                  double tiny, int npat, k::cx *V, double *ERR, k::cx *CORE, double *RES, long *ITS) {{
    k::grid<k::cx>(n, P, ns, S, W, cfg, init, warm, estimate, sgn, eps, safety, tiny, npat, V, ERR, CORE, RES, ITS);
}}
#endif
int kernel_attracts(const double *J, int K) {{ return k::attracts<double>(J, K) ? 1 : 0; }}
int kernel_attracts_complex(const k::cx *J, int K) {{ return k::attracts<k::cx>(J, K) ? 1 : 0; }}
int kernel_layout(int *out) {{
    out[0] = k::NP; out[1] = k::NE; out[2] = k::NOUT; out[3] = k::NCORE;
    return 0;
}}
}}
"""


def _split(value) -> tuple[float, float]:
    """``(hi, lo)``: the double-double nearest a sympy number (hi = its nearest double)."""
    import mpmath

    with mpmath.workdps(60):
        x = mpmath.mpf(value.p) / value.q if hasattr(value, "q") else mpmath.mpf(str(value))
        hi = float(x)
        lo = float(x - hi)
    return hi, lo


#: C++ keywords and the names the generated code uses itself, which no symbol may take.
_CXX_RESERVED = frozenset(
    "alignas alignof and asm auto bool break case catch char class const constexpr continue decltype default "
    "delete do double else enum explicit export extern false float for friend goto if inline int long mutable "
    "namespace new noexcept not nullptr operator or private protected public register return short signed "
    "sizeof static struct switch template this throw true try typedef typename union unsigned using virtual "
    "void volatile while xor T k dd lit ipow sqrt u cfg warm its res r".split())


def _printer():
    """C++ printer of the generated code: numbers as double-double literals ``lit<T>``,
    integer powers by multiplication, half-integer powers through ``sqrt``."""
    from sympy.printing.c import C99CodePrinter

    class Printer(C99CodePrinter):
        def _print_Integer(self, expr):  # exact in a double: mixed double / double-double operations
            return f"{int(expr)}.0"

        def _print_Rational(self, expr):
            hi, lo = _split(expr)
            return f"lit<T>({hi!r}, {lo!r})"

        def _print_Float(self, expr):
            hi, lo = _split(expr)
            return f"lit<T>({hi!r}, {lo!r})"

        def _print_Pow(self, expr):
            base, e = expr.args
            b = f"({self._print(base)})"
            if e.is_Integer:
                n = int(e)
                if n == 0:
                    return "1.0"
                pos = b if abs(n) == 1 else (f"({b}*{b})" if abs(n) == 2 else f"ipow<T>({b}, {abs(n)})")
                return pos if n > 0 else f"(1.0/{pos})"
            if e.is_Rational and e.q == 2:
                n = int(e.p)
                root = f"sqrt({b})"
                pos = root if abs(n) == 1 else f"ipow<T>({root}, {abs(n)})"
                return pos if n > 0 else f"(1.0/{pos})"
            raise NotImplementedError(f"the compiled kernel has no power {e} (use the numpy backend)")

        def _print_Symbol(self, expr):
            if expr.name in _CXX_RESERVED or not expr.name.isidentifier():
                raise NotImplementedError(f"symbol {expr.name!r} is not a C++ name (use the numpy backend)")
            return expr.name

        def _print_Function(self, expr):
            raise NotImplementedError(f"the compiled kernel has no function {expr.func} (use the numpy backend)")

    return Printer()


class _Writer:
    """Scalar straight-line C++ of sympy assignments, spectral means as loops over atoms."""

    def __init__(self, index: dict):
        import sympy

        self.sympy = sympy
        self.index = index  # symbol name -> slot of the environment array _e
        self.pr = _printer()
        self.names = sympy.numbered_symbols("_c")
        self.means = 0

    def reads(self, exprs, defined: set) -> list[str]:
        from pencils.expr import S_NU

        syms = set()
        for e in exprs:
            syms |= self.sympy.sympify(e).free_symbols
        return sorted({s.name for s in syms} - set(defined) - {S_NU.name})

    def _hoist(self, expr, lines: list, indent: str):
        from pencils.expr import S_NU, SpectralMean

        sympy = self.sympy
        expr = sympy.sympify(expr)
        rep = {}
        for mean in sorted(expr.atoms(SpectralMean), key=sympy.default_sort_key):
            name = f"_mean{self.means}"
            self.means += 1
            repl, (red,) = sympy.cse([mean.args[0]], symbols=sympy.numbered_symbols(f"{name}_c"), order="none")
            lines.append(f"{indent}T {name} = T(0.0);")
            lines.append(f"{indent}for (int _a = 0; _a < _ns; _a++) {{")
            lines.append(f"{indent}    const T {S_NU.name} = T(_s[_a]);")
            lines += [f"{indent}    const T {c.name} = {self.pr.doprint(x)};" for c, x in repl]
            lines.append(f"{indent}    {name} = {name} + T(_w[_a]) * ({self.pr.doprint(red)});")
            lines.append(f"{indent}}}")
            rep[mean] = sympy.Symbol(name)
        return expr.xreplace(rep)

    def assign(self, target: str, expr, lines: list, declare: bool = True, indent: str = "    ") -> None:
        self.assign_many([target], [expr], lines, declare, indent)

    def assign_many(self, targets: list[str], exprs: list, lines: list, declare: bool = True,
                    indent: str = "    ") -> None:
        exprs = [self._hoist(e, lines, indent) for e in exprs]
        repl, red = self.sympy.cse(exprs, symbols=self.names, order="none")
        lines += [f"{indent}const T {c.name} = {self.pr.doprint(x)};" for c, x in repl]
        decl = "const T " if declare else ""
        lines += [f"{indent}{decl}{t} = {self.pr.doprint(e)};" for t, e in zip(targets, red)]

    def load(self, names, lines: list) -> None:
        lines += [f"    const T {n} = _e[{self.index[n]}];" for n in names]


def kernel_source(R) -> str:
    """C++ source of the kernel of the reduced system ``R`` (module docstring)."""
    from .reduced import segments_of

    params = [p.name for p in R.params]
    segments = segments_of(R)
    names = list(params)
    for kind, body in segments:
        if kind == "let":
            names += [s.name for s, _ in body]
        else:
            names += [s.name for s in body.unknowns] + [s.name for s in body.eliminated]
    index = {n: i for i, n in enumerate(dict.fromkeys(names))}
    w = _Writer(index)
    head = ["// generated by numerics.kernel from a reduced system: do not edit",
            f"// params: {' '.join(params)}", f"// outputs: {' '.join(R.outputs)}", _RUNTIME,
            f"static const int NP = {len(params)}, NE = {len(index)}, NOUT = {len(R.outputs)}, "
            f"NCORE = {len(R.core_unknowns)}, LAM = {params.index('lam') if 'lam' in params else -1};", ""]
    out, body, offset = list(head), [], 0
    args = "T *_e, const double *_s, const double *_w, int _ns"
    for k, (kind, seg) in enumerate(segments):
        if kind == "let":
            lines = [f"template <typename T> static void seg_{k}({args}) {{"]
            defined: set = set()
            for s, e in seg:
                need = w.reads([e], defined)
                w.load(need, lines)
                defined |= set(need)
                w.assign(s.name, e, lines)
                lines.append(f"    _e[{index[s.name]}] = {s.name};")
                defined.add(s.name)
            out += lines + ["}", ""]
            body.append(f"    seg_{k}<T>(_e, _s, _w, _ns);")
            continue
        st = seg
        K = len(st.unknowns)
        if K > KMAX:  # the attractivity test's fixed buffers (no real system comes close)
            raise NotImplementedError(f"a core stage of {K} unknowns (the kernel takes up to {KMAX})")
        unknowns = [s.name for s in st.unknowns]
        prog, jprog = list(st.program), list(st.jac_program)
        local = set(unknowns) | {s.name for s, _ in prog + jprog}
        reads = w.reads([e for _, e in prog + jprog] + list(st.maps) + list(st.jacobian), local)

        def header(name, extra, const=True):
            lines = [f"template <typename T> static void {name}({'const ' if const else ''}{args}, const T *u{extra}) {{"]
            w.load(reads, lines)
            lines += [f"    const T {n} = u[{j}];" for j, n in enumerate(unknowns)]
            return lines

        lines = header(f"map_{k}", ", T *_f")
        for s, e in prog:
            w.assign(s.name, e, lines)
        w.assign_many([f"_f[{i}]" for i in range(K)], list(st.maps), lines, declare=False)
        out += lines + ["}", ""]
        lines = header(f"jac_{k}", ", T *_f, T *_j")
        for s, e in prog + jprog:
            w.assign(s.name, e, lines)
        w.assign_many([f"_f[{i}]" for i in range(K)] + [f"_j[{i}]" for i in range(K * K)],
                      list(st.maps) + list(st.jacobian), lines, declare=False)
        out += lines + ["}", ""]
        lines = header(f"fill_{k}", "", const=False)
        for s, e in prog:
            w.assign(s.name, e, lines)
        lines += [f"    _e[{index[n]}] = {n};" for n in unknowns]
        lines += [f"    _e[{index[s.name]}] = {s.name};" for s in st.eliminated]
        out += lines + ["}", ""]
        lets = [f"    seg_{j}<T>(_e, _s, _w, _ns);" for j, (kd, _) in enumerate(segments[:k]) if kd == "let"]
        out += [f"template <typename T> static void prefix_{k}({args}) {{"] + lets + ["}", ""]
        out.append(_STAGE.format(k=k, K=K))
        body += [f"    r = solve_{k}<T>(_e, _s, _w, _ns, u + {offset}, cfg, warm, its);",
                 "    if (!(r <= res)) res = r;", f"    fill_{k}<T>(_e, _s, _w, _ns, u + {offset});"]
        offset += K
    outs = list(R.outputs.values())
    lines = [f"template <typename T> static void outputs(const {args}, T *_out) {{"]
    w.load(w.reads(outs, set()), lines)
    w.assign_many([f"_out[{i}]" for i in range(len(outs))], outs, lines, declare=False)
    out += lines + ["}", ""]
    out.append(_DRIVER.format(body="\n".join(body)))
    return "\n".join(out) + "\n"


# -- build and load -------------------------------------------------------------------


_scratch: list = []  # the per-process folder used when the disk cache is off


def _kernel_dir() -> Path:
    """``<cache>/kernels``; with the disk cache off, a folder of this process's own, removed
    when it exits (a loaded library can be unlinked: the mapping stays valid)."""
    from pencils.cache import cache_dir

    base = cache_dir()
    if base is not None:
        return base / "kernels"
    if not _scratch:
        import atexit

        _scratch.append(Path(tempfile.mkdtemp(prefix="dsm-kernels-")))
        atexit.register(shutil.rmtree, _scratch[0], True)
    return _scratch[0] / "kernels"


_GRID_ARGS = [ctypes.c_long, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
              ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_double, ctypes.c_double,
              ctypes.c_double, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
              ctypes.c_void_p]


class Kernel:
    """A kernel's source in the cache and its libraries, one per number type
    (``"double"``, ``"dd"``, ``"complex"``), each built on its first use:
    ``params``, ``outputs``, ``n_core`` and :meth:`grid`."""

    _ENTRY = {"double": "grid_double", "dd": "grid_dd", "complex": "grid_complex"}

    def __init__(self, params: tuple, outputs: tuple, builder, source: Path | None = None, n_core: int = 0):
        self.params, self.outputs, self.source, self.n_core = params, outputs, source, n_core
        self.n_params, self.n_out = len(params), len(outputs)
        self._builder = builder  # variant -> library path (builds it when missing)
        self._libs: dict = {}

    def lib(self, variant: str = "double"):
        """The library of ``variant``, built and loaded on first use; ``None`` (with a
        :class:`KernelWarning`) when it cannot be built."""
        if variant not in self._libs:
            try:
                lib = ctypes.CDLL(str(self._builder(variant)))
                layout = (ctypes.c_int * 4)()
                lib.kernel_layout(layout)
                if (layout[0], layout[2], layout[3]) != (self.n_params, self.n_out, self.n_core):
                    raise RuntimeError("the compiled kernel does not match its system")
                fn = getattr(lib, self._ENTRY[variant])
                fn.argtypes = _GRID_ARGS
                fn.restype = None
                for name in ("kernel_attracts", "kernel_attracts_complex"):
                    getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.c_int]
                    getattr(lib, name).restype = ctypes.c_int
                self._libs[variant] = lib
            except (OSError, RuntimeError, NotImplementedError) as exc:
                what = {"double": "compiled kernel", "dd": "double-double kernel", "complex": "complex kernel"}
                warnings.warn(f"{what[variant]} unavailable ({exc}); using "
                              f"{'mpmath' if variant == 'dd' else 'the numpy solver'}", KernelWarning, stacklevel=3)
                self._libs[variant] = None
        return self._libs[variant]

    def attracts(self, J: np.ndarray) -> bool:
        """The kernel's attractivity test of a ``K x K`` Jacobian (``K <= KMAX``, real or
        complex): every eigenvalue of ``(I + J)/2`` in the open unit disk (for the tests)."""
        cplx = np.iscomplexobj(J)
        J = np.ascontiguousarray(J, dtype=complex if cplx else float)
        if J.ndim != 2 or J.shape[0] != J.shape[1] or not 1 <= J.shape[0] <= KMAX:
            raise ValueError(f"attracts needs a K x K matrix with 1 <= K <= {KMAX}")
        lib = self.lib("double")
        fn = lib.kernel_attracts_complex if cplx else lib.kernel_attracts
        return bool(fn(J.ctypes.data, J.shape[0]))

    def grid(self, P: np.ndarray, spectrum, cfg: np.ndarray, init: np.ndarray | None, estimate: bool,
             signs: np.ndarray, eps: float, safety: float, tiny: float, precision: str = "double",
             patterns: int = 3) -> tuple | None:
        """Solve every row of ``P`` (points x parameters; complex ``P`` runs the complex
        library); returns ``(V, ERR, CORE, RES, ITS)``, or ``None`` when the library of
        ``precision`` (``"double"`` or ``"dd"``) cannot be built."""
        variant = "complex" if np.iscomplexobj(P) else precision
        lib = self.lib(variant)
        if lib is None:
            return None
        fn = getattr(lib, self._ENTRY[variant])
        io = complex if variant == "complex" else float
        n = P.shape[0]
        P = np.ascontiguousarray(P, dtype=io)
        S, W = (np.ascontiguousarray(spectrum[0], dtype=float), np.ascontiguousarray(spectrum[1], dtype=float)) \
            if spectrum is not None else (np.zeros(1), np.zeros(1))
        ns = 0 if spectrum is None else S.size
        warm = init is not None
        init = np.ascontiguousarray(init, dtype=io) if warm else np.zeros(1, dtype=io)
        cfg = np.ascontiguousarray(cfg, dtype=float)
        signs = np.ascontiguousarray(signs, dtype=float)
        V = np.empty((n, self.n_out), dtype=io)
        ERR = np.zeros((n, self.n_out))
        CORE = np.empty((n, self.n_core), dtype=io)
        RES = np.empty(n)
        ITS = np.empty(n, dtype=np.int64)

        def ptr(a, lo=0):  # address of row lo
            return a.ctypes.data + lo * a.strides[0]

        def run(lo: int, hi: int) -> None:  # rows lo:hi (ctypes releases the GIL during the call)
            fn(hi - lo, ptr(P, lo), ns, ptr(S), ptr(W), ptr(cfg), ptr(init, lo if warm else 0), int(warm),
               int(bool(estimate)), ptr(signs), eps, safety, tiny, int(patterns), ptr(V, lo), ptr(ERR, lo),
               ptr(CORE, lo), ptr(RES, lo), ptr(ITS, lo))

        workers = min(threads(), max(1, n // MIN_POINTS_PER_THREAD))
        if workers == 1:
            run(0, n)
        else:  # points are independent: any split gives the same numbers
            from concurrent.futures import ThreadPoolExecutor

            bounds = [int(b) for b in np.linspace(0, n, workers + 1)]
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(lambda k: run(bounds[k], bounds[k + 1]), range(workers)))
        return V, ERR, CORE, RES, ITS


_loaded: dict = {}
_failed: set = set()
#: extra flags per library: the double-double one is built at -O1 (its cost is the
#: arithmetic, not the code: the same speed as -O2 in the benchmark, half the build time)
_VARIANT_FLAGS = {"double": ("-DKERNEL_DOUBLE",), "dd": ("-DKERNEL_DD", "-O1"), "complex": ("-DKERNEL_COMPLEX",)}


def _build(folder: Path, name: str, variant: str, flags: tuple) -> Path:
    """Compile ``name.cpp`` into ``name-variant.so`` (atomically) unless it exists."""
    lib_path = folder / f"{name}-{variant}.so"
    if lib_path.is_file():
        return lib_path
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX)")
    fd, tmp_lib = tempfile.mkstemp(dir=folder, suffix=".so")
    os.close(fd)
    cmd = [cxx, *flags, *_VARIANT_FLAGS[variant], "-o", tmp_lib, str(folder / f"{name}.cpp")]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError:
        os.unlink(tmp_lib)
        raise
    if proc.returncode != 0:
        os.unlink(tmp_lib)
        raise RuntimeError(f"{cxx} failed: {proc.stderr.strip()[-2000:]}")
    os.replace(tmp_lib, lib_path)  # atomic: concurrent processes never load half a library
    return lib_path


def load_kernel(key: str, params: tuple, outputs: tuple, n_core: int, source) -> Kernel | None:
    """The compiled kernel named by ``key`` (a cheap name; the cache key adds the code
    version and the compiler flags), its source written by ``source()`` when missing (its
    libraries are built on first use); ``None`` (with a :class:`KernelWarning`) when the
    source cannot be written or generated."""
    from pencils.cache import cache_key

    flags = (*CXXFLAGS, *_cpu_flags())  # the flags name the library: a machine without FMA builds its own
    name = "kernel-" + cache_key("kernel", f"{key}\0{flags}").split("-")[-1]
    if name in _loaded:
        return _loaded[name]
    if name in _failed:
        return None
    folder = _kernel_dir()
    try:
        if compiler() is None:
            raise RuntimeError("no C++ compiler found (set CXX)")
        src = folder / f"{name}.cpp"
        if not src.is_file():
            text = source()  # sympy: only when the source is missing
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".cpp")
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.replace(tmp, src)
    except (OSError, RuntimeError, NotImplementedError) as exc:
        _failed.add(name)
        warnings.warn(f"compiled kernel unavailable ({exc}); using the numpy solver", KernelWarning, stacklevel=3)
        return None
    kernel = Kernel(tuple(params), tuple(outputs), lambda variant: _build(folder, name, variant, flags), src,
                    int(n_core))
    _loaded[name] = kernel
    return kernel


def rounding_signs(n_params: int) -> np.ndarray:
    """Signs of the three parameter moves of the rounding check, shared by the kernel and
    the numpy solver: row ``p`` moves parameter ``j`` by ``+eps`` or ``-eps`` relative (three
    patterns: a change one of them misses, another sees)."""
    return np.array([[1.0 if (j * p + p // 2) % 3 else -1.0 for j in range(n_params)] for p in (1, 2, 3)])


def operation_counts(source: str) -> dict:
    """Arithmetic operations (``+ - * /`` and ``sqrt``) in each generated function of a
    kernel source, for the benchmark's floor estimate (a count of the straight-line code;
    loops over spectral atoms count once)."""
    import re

    counts, name = {}, None
    for line in source.splitlines():
        m = re.match(r"template <typename T> static \w+ (\w+)\(", line)
        if m:
            name = m.group(1)
            counts[name] = 0
        elif name is not None and line.startswith("    ") and "=" in line:
            rhs = line.split("=", 1)[1]
            counts[name] += len(re.findall(r"(?<![eE])[-+*/](?!=)", rhs)) + rhs.count("sqrt(")
    return counts
