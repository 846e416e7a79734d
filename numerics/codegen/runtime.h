// Runtime of the compiled kernels (numerics.codegen.cxx pastes it at the top of every
// generated source): double-double arithmetic, the number-type adaptors, the residual,
// a small pivoted solve and the attractivity test.  Opens namespace k (closed by driver.hpp).
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
// long double: the warm re-solve of the double kernel's rounding check (driver.hpp)
static inline double re(long double a) { return (double)a; }
static inline long double cj(long double a) { return a; }
static inline double mag(long double a) { return (double)fabsl(a); }
template <typename T> static inline T lit(double hi, double lo);
template <> inline double lit<double>(double hi, double) { return hi; }
template <> inline dd lit<dd>(double hi, double lo) { return dd(hi, lo); }
template <> inline cx lit<cx>(double hi, double) { return cx(hi, 0.0); }
// long double: only the read-outs' rounding check of the double kernel runs in it (driver.hpp)
template <> inline long double lit<long double>(double hi, double lo) { return (long double)hi + (long double)lo; }
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

// all eigenvalues of (I + J)/2 in the open unit disk (K <= KMAX, checked when the source is
// generated): Faddeev--LeVerrier, then Schur--Cohn, for K <= KSMALL; above, the characteristic
// polynomial loses its accuracy and the spectral radius is estimated by repeated squaring,
// rho(A) = lim |A^n|^(1/n) (from above: n = 2^40 overestimates by a factor 1 + O(K log n / n)).
static const int KSMALL = 8, KMAX = 48;
template <typename T> static bool attracts_large(const T *Jt, int K) {
    typedef typename io<T>::type W;
    W A[KMAX * KMAX], B[KMAX * KMAX];
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) {
            A[i * K + j] = 0.5 * to_io(Jt[i * K + j]) + (i == j ? 0.5 : 0.0);
            if (!(mag(A[i * K + j]) < INFINITY)) return false;
        }
    double logs = 0.0, scale = 1.0;  // A^(2^j) = exp(logs) * A (A normalised to max-norm 1)
    for (int it = 0; it <= 40; it++) {
        double m = 0.0;
        for (int i = 0; i < K * K; i++) if (mag(A[i]) > m) m = mag(A[i]);
        if (m == 0.0) return true;  // nilpotent
        if (!(m < INFINITY)) return false;
        for (int i = 0; i < K * K; i++) A[i] = A[i] / m;
        logs += std::log(m) * scale;  // log |A^n| in units of 1/n, n = 2^it
        if (it == 40) break;
        for (int i = 0; i < K; i++)
            for (int j = 0; j < K; j++) {
                W t = 0.0;
                for (int l = 0; l < K; l++) t += A[i * K + l] * A[l * K + j];
                B[i * K + j] = t;
            }
        for (int i = 0; i < K * K; i++) A[i] = B[i];
        scale *= 0.5;
    }
    return logs < 0.0;
}
template <typename T> static bool attracts(const T *Jt, int K) {
    if (K > KSMALL) return attracts_large<T>(Jt, K);
    typedef typename io<T>::type W;  // double, or complex for a complex Jacobian
    W A[KSMALL * KSMALL], M[KSMALL * KSMALL], AM[KSMALL * KSMALL], c[KSMALL + 1], p[KSMALL + 1], q[KSMALL + 1];
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
