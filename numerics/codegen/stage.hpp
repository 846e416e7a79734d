// One core stage u = f(u) at one point, generic in the number type T and in the stage S
// (a generated struct: K unknowns, map, jac and prefix, the let steps before the stage).
// The algorithm of numerics.stages, the same operations in the same order.
// cfg: the slots of numerics.options.KERNEL_CFG.

// damped fixed point (when fp_on), then Newton with step halving; returns the residual
template <typename T, typename S> static double iterate(T *_e, const double *_s, const double *_w, int _ns, T *u,
                                                        const double *cfg, bool fp_on, long *its) {
    const int K = S::K;
    T f[K], J[K * K], A[K * K], rhs[K], step[K], cand[K], fc[K], best_u[K], best_f[K];
    S::template map<T>(_e, _s, _w, _ns, u, f);
    double res = residual<T>(u, f, K);
    if (fp_on) {
        T w = T(cfg[2]);
        for (int n = 0; res > cfg[1] && n < cfg[3]; n++) {
            for (int i = 0; i < K; i++) u[i] = u[i] + w * (f[i] - u[i]);
            S::template map<T>(_e, _s, _w, _ns, u, f);
            res = residual<T>(u, f, K);
            (*its)++;
        }
    }
    double target = cfg[0] < cfg[7] ? cfg[0] : cfg[7];
    for (int it = 0; it < (int)cfg[4]; it++) {
        if (!(res > target)) break;
        S::template jac<T>(_e, _s, _w, _ns, u, f, J);
        for (int i = 0; i < K; i++) {
            for (int j = 0; j < K; j++) A[i * K + j] = T(i == j ? 1.0 : 0.0) - J[i * K + j];
            rhs[i] = u[i] - f[i];
        }
        small_solve<T>(A, rhs, step, K);
        double r0 = residual<T>(u, f, K), best_r = r0;
        for (int i = 0; i < K; i++) { best_u[i] = u[i]; best_f[i] = f[i]; }
        T s = T(1.0);
        for (int h = 0; h < 8; h++) {  // halve the step where the residual does not drop
            for (int i = 0; i < K; i++) cand[i] = u[i] - s * step[i];
            S::template map<T>(_e, _s, _w, _ns, cand, fc);
            double rc = residual<T>(cand, fc, K);
            bool better = rc < best_r;
            if (better) {
                best_r = rc;
                for (int i = 0; i < K; i++) { best_u[i] = cand[i]; best_f[i] = fc[i]; }
            }
            if (better || rc <= r0) break;
            s = s * T(0.5);
        }
        for (int i = 0; i < K; i++) { u[i] = best_u[i]; f[i] = best_f[i]; }
        res = best_r;
        (*its)++;
        if (best_r >= r0) break;
    }
    return res;
}

template <typename T, typename S> static bool attracting(T *_e, const double *_s, const double *_w, int _ns,
                                                         const T *u) {
    const int K = S::K;
    T f[K], J[K * K];
    S::template jac<T>(_e, _s, _w, _ns, u, f, J);
    return attracts<T>(J, K);
}

// solve (a linear stage: Newton only), check the root attracts, else (when cfg[5] > 0) continue in the parameter of slot
// CONT (cold solves, from max(p, 1) down to p); a repelling root gives an infinite residual.
// CONT is a constant of the generated source (-1: none), so a kernel without continuation
// compiles without it: the inlining, and with it the complex arithmetic, stay as they were.
template <typename T, typename S> static double solve_stage(T *_e, const double *_s, const double *_w, int _ns, T *u,
                                                            const double *cfg, bool warm, long *its) {
    const int K = S::K;
    if (!warm) {
        T zero[K];
        for (int i = 0; i < K; i++) zero[i] = T(0.0);
        S::template map<T>(_e, _s, _w, _ns, zero, u);
    }
    double res = iterate<T, S>(_e, _s, _w, _ns, u, cfg, !warm && !S::LINEAR, its);
    if (S::LINEAR) return res;  // affine: Newton from f(0) is the exact solve; no branch to select
    bool stable = cfg[8] > 0 ? attracting<T, S>(_e, _s, _w, _ns, u) : true;
    if ((!(res <= cfg[0]) || !stable) && !warm && cfg[5] > 0 && CONT >= 0) {
        double target = re(_e[CONT]), start = target > 1.0 ? target : 1.0;
        int steps = (int)std::ceil(cfg[6] * std::log10(start / target));
        if (steps < 1) steps = 1;
        T L[NE], uc[K], zero[K];
        for (int i = 0; i < NE; i++) L[i] = _e[i];
        double rc = INFINITY;
        for (int j = 0; j <= steps; j++) {
            L[CONT] = T(start * std::pow(target / start, (double)j / steps));
            S::template prefix<T>(L, _s, _w, _ns);
            if (j == 0) {
                for (int i = 0; i < K; i++) zero[i] = T(0.0);
                S::template map<T>(L, _s, _w, _ns, zero, uc);
                rc = iterate<T, S>(L, _s, _w, _ns, uc, cfg, true, its);
            } else {
                rc = iterate<T, S>(L, _s, _w, _ns, uc, cfg, false, its);
            }
        }
        if (attracting<T, S>(_e, _s, _w, _ns, uc) && (rc < res || !stable)) {
            for (int i = 0; i < K; i++) u[i] = uc[i];
            res = rc;
            stable = true;
        }
    }
    return stable ? res : INFINITY;
}
