// Driver of the compiled kernels (pasted after the generated run<T>): every point of a grid
// on its own, with the rounding check; closes namespace k and exports one C entry per number
// type (KERNEL_DOUBLE, KERNEL_DD, KERNEL_COMPLEX: one library each).
// every row of P (points x parameters) on its own.  eps: the relative size of the parameter
// moves of the rounding check (sgn[k*NP + j]: their signs in pattern k); tiny: the floor of
// the estimate, relative to max(1, |value|)
// The rounding check's deterministic part (double kernel only): the point re-solved in long
// double (64-bit significand), warm from the double core (a Newton step or two to ~1e-18),
// |v_double - v_long| per output. It sees what the moved solves below can miss when the
// moved inputs round alike: read-outs that cancel, and read-outs that amplify the core's
// own rounding error (terms of size lam^-3 summing to O(1)). Beyond the long double's reach
// both runs can be equally wrong: the ladder's consistency test of the next rung catches that.
static void long_double_error(const double *p, const double *S, const double *W, int ns, const double *u,
                              const double *vals, const double *cfg, double *ro) {
    long double E[NE], U[NCORE > 0 ? NCORE : 1], V[NOUT];
    for (int j = 0; j < NE; j++) E[j] = 0.0L;
    for (int j = 0; j < NP; j++) E[j] = p[j];
    for (int j = 0; j < NCORE; j++) U[j] = u[j];
    double c[9];
    for (int j = 0; j < 9; j++) c[j] = cfg[j];
    c[0] = c[7] = 1e-18;  // tol and polish at the long double's resolution
    c[1] = 0.0;           // no fixed-point steps: Newton from the double root
    c[3] = 0.0;
    c[4] = 4.0;           // a few Newton steps (it starts within rounding of the root)
    c[5] = 0.0;           // no continuation
    c[8] = 0.0;           // the double solve tested attractivity
    long its = 0;
    run<long double>(E, S, W, ns, U, c, true, V, &its);
    for (int j = 0; j < NOUT; j++) {
        double d = (double)fabsl(V[j] - (long double)vals[j]);
        ro[j] = d < INFINITY ? d : INFINITY;
    }
}
static void long_double_error(const dd *, const double *, const double *, int, const dd *, const dd *,
                              const double *, double *ro) {
    for (int j = 0; j < NOUT; j++) ro[j] = 0.0;  // double-double: the ladder scales the double estimate
}
static void long_double_error(const cx *, const double *, const double *, int, const cx *, const cx *,
                              const double *, double *ro) {
    for (int j = 0; j < NOUT; j++) ro[j] = 0.0;  // complex: numpy's twin (numerics.stages.readout_rounding)
}

template <typename T> static void grid(long n, const typename io<T>::type *P, int ns, const double *S,
                                       const double *W, const double *cfg, const typename io<T>::type *init,
                                       int warm, int estimate, const double *sgn, double eps, double safety,
                                       double tiny, int npat, typename io<T>::type *V, double *ERR,
                                       typename io<T>::type *CORE, double *RES, long *ITS) {
    T E[NE], u[NCORE > 0 ? NCORE : 1], u2[NCORE > 0 ? NCORE : 1], vals[NOUT], v2[NOUT];
    for (long i = 0; i < n; i++) {
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
        for (int pat = 0; pat < npat; pat++) {
            for (int j = 0; j < NE; j++) E[j] = T(0.0);
            for (int j = 0; j < NP; j++) E[j] = T(P[i * NP + j]) * (T(1.0) + T(sgn[pat * NP + j] * eps));
            for (int j = 0; j < NCORE; j++) u2[j] = u[j];
            long its2 = 0;
            run<T>(E, S, W, ns, u2, cfg2, true, v2, &its2);
            for (int j = 0; j < NOUT; j++) {
                double d = mag(v2[j] - vals[j]);
                if (!(d < INFINITY)) d = INFINITY;
                if (d > err[j]) err[j] = d;
            }
        }
        double ro[NOUT];
        for (int j = 0; j < NP; j++) E[j] = T(P[i * NP + j]);
        long_double_error(E, S, W, ns, u, vals, cfg, ro);
        for (int j = 0; j < NOUT; j++) {
            double v = mag(vals[j]);
            ERR[i * NOUT + j] = safety * err[j] + READOUT_SAFETY * ro[j] + tiny * (v > 1.0 ? v : 1.0);
        }
    }
}
}  // namespace k

// one library per number type: the double-double instantiation takes most of the build
// time and is needed only where double precision fails, so it is built on first use
extern "C" {
#ifdef KERNEL_DOUBLE
void grid_double(long n, const double *P, int ns, const double *S, const double *W, const double *cfg,
                 const double *init, int warm, int estimate, const double *sgn, double eps, double safety,
                 double tiny, int npat, double *V, double *ERR, double *CORE, double *RES, long *ITS) {
    k::grid<double>(n, P, ns, S, W, cfg, init, warm, estimate, sgn, eps, safety, tiny, npat, V, ERR, CORE, RES, ITS);
}
#endif
#ifdef KERNEL_DD
void grid_dd(long n, const double *P, int ns, const double *S, const double *W, const double *cfg,
             const double *init, int warm, int estimate, const double *sgn, double eps, double safety,
             double tiny, int npat, double *V, double *ERR, double *CORE, double *RES, long *ITS) {
    k::grid<k::dd>(n, P, ns, S, W, cfg, init, warm, estimate, sgn, eps, safety, tiny, npat, V, ERR, CORE, RES, ITS);
}
#endif
#ifdef KERNEL_COMPLEX
void grid_complex(long n, const k::cx *P, int ns, const double *S, const double *W, const double *cfg,
                  const k::cx *init, int warm, int estimate, const double *sgn, double eps, double safety,
                  double tiny, int npat, k::cx *V, double *ERR, k::cx *CORE, double *RES, long *ITS) {
    k::grid<k::cx>(n, P, ns, S, W, cfg, init, warm, estimate, sgn, eps, safety, tiny, npat, V, ERR, CORE, RES, ITS);
}
#endif
int kernel_attracts(const double *J, int K) { return k::attracts<double>(J, K) ? 1 : 0; }
int kernel_attracts_complex(const k::cx *J, int K) { return k::attracts<k::cx>(J, K) ? 1 : 0; }
int kernel_layout(int *out) {
    out[0] = k::NP; out[1] = k::NE; out[2] = k::NOUT; out[3] = k::NCORE;
    return 0;
}
}
