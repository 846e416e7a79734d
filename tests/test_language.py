"""The language's extensions, each against an independent number:

* concatenation (pencils.blocks): pencils realise block expressions exactly at finite size;
  a concatenated Gaussian has the limit of one Gaussian of the summed width (to 1e-12);
  ridge on two concatenated random-feature layers against Monte Carlo;
* random vectors (pencils.averages): the ridge risk written with a random teacher and noise
  equals the closed form (to 1e-10); odd and quartic forms are refused;
* replicas: the variance over the weights of random-features ridge against Monte Carlo;
* rational outputs (pencils.outputs): ``tr(R)^2 / tr(R^2)`` against Marchenko-Pastur;
* parameters allowed to be zero: no parameter pivots, the value at 0 is the limit.
"""
from __future__ import annotations

import numpy as np
import pytest
import sympy

from derivations.closed_forms import mp_stieltjes_closed, mp_stieltjes_derivative_closed, ridge_risk_closed
from numerics.reduced import compile_reduced
from pencils.averages import average, gaussian_vector, replica
from pencils.blocks import block, grid, hstack, vstack
from pencils.expr import D, ONE, Space, SumSpace, Trace, gaussian, identity, inverse, trace
from pencils.freeprob import equations
from pencils.linearize import linearize
from pencils.outputs import TraceExpr, evaluate_output, split_output
from pencils.reduce import reduce_systems


def derive(traces: dict, params: dict) -> dict:
    """Each trace's limit at the points ``params`` (one reduced system for all)."""
    R = reduce_systems({k: equations(t) for k, t in traces.items()})
    sol = compile_reduced(R).solve({k: np.atleast_1d(np.asarray(v, float)) for k, v in params.items()})
    assert np.all(sol.converged)
    return {k: np.atleast_1d(v) for k, v in sol.values.items()}


# ------------------------------------------------------------------ finite-size exactness

def _size(space, d):
    return sum(int(round(float(s.ratio) * d)) for s in (space.spaces if isinstance(space, SumSpace) else (space,)))


def _evaluate(e, mats, d, subs):
    num = lambda c: float(sympy.sympify(c).subs(subs))  # noqa: E731
    op, a = e.op, e.args
    if op == "gauss":
        return mats[a[0]]
    if op == "gaussT":
        return mats[a[0].args[0]].T
    if op == "eye":
        return num(a[0]) * np.eye(_size(e.rows, d))
    if op == "add":
        out = np.zeros((_size(e.rows, d), _size(e.cols, d)))
        for c, t in a:
            out = out + num(c) * _evaluate(t, mats, d, subs)
        return out
    if op == "mul":
        out = _evaluate(a[0], mats, d, subs)
        for f in a[1:]:
            out = out @ _evaluate(f, mats, d, subs)
        return out
    if op == "scale":
        return num(a[0]) * _evaluate(a[1], mats, d, subs)
    if op == "inv":
        return np.linalg.inv(_evaluate(a[0], mats, d, subs))
    if op == "block":
        return np.block([[_evaluate(b, mats, d, subs) for b in r] for r in grid(e)])
    raise AssertionError(op)


def _readout(pencil, mats, d, subs):
    """The trace read out of the pencil assembled at finite size."""
    num = lambda c: float(sympy.sympify(c).subs(subs))  # noqa: E731
    sizes = [_size(s, d) for s in pencil.spaces]
    off = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    L = np.zeros((off[-1], off[-1]))
    for i in range(pencil.size):
        for j in range(pencil.size):
            blk = L[off[i]:off[i + 1], off[j]:off[j + 1]]
            if pencil.L0[i, j] != 0:
                blk += num(pencil.L0[i, j]) * np.eye(sizes[i])
            for name, (_, E, F) in pencil.gaussians.items():
                if E[i, j] != 0:
                    blk += num(E[i, j]) * mats[name]
                if F[i, j] != 0:
                    blk += num(F[i, j]) * mats[name].T
    Linv = np.linalg.inv(L)
    val = num(pencil.constant)
    for i in range(pencil.size):
        for j in range(pencil.size):
            if pencil.readout[i, j] != 0:
                val += num(pencil.readout[i, j]) * np.trace(Linv[off[i]:off[i + 1], off[j]:off[j + 1]]) / sizes[i]
    return val


a_, b_, z_ = sympy.symbols("a b z", positive=True)
N, P1, P2 = Space("n", sympy.Rational(3, 2)), Space("p1", 1), Space("p2", sympy.Rational(1, 2))
X1, X2, Y = gaussian("X1", N, P1), gaussian("X2", N, P2), gaussian("Y", P1, P1, variance=2)
F = hstack([X1, X2])
BLOCK_CASES = [
    inverse(F.T @ F + z_),
    F @ inverse(F.T @ F * a_ + 1) @ F.T,
    inverse(block([[Y @ Y.T + 1, X1.T @ X2], [X2.T @ X1, a_ * identity(P2)]])),
    inverse(block([[0, X1.T], [X1, identity(N, -1)]]) + z_) @ block([[Y, 0], [0, identity(N, b_)]]),
    vstack([X1.T, X2.T]) @ inverse(F @ F.T + 1) @ hstack([X1, X2]) @ inverse(F.T @ F + b_),
]


@pytest.mark.parametrize("k", range(len(BLOCK_CASES)))
def test_block_pencils_are_exact_at_finite_size(k):
    e, d = BLOCK_CASES[k], 12
    rng = np.random.default_rng(k)
    mats = {g.args[0]: rng.standard_normal((_size(g.rows, d), _size(g.cols, d))) * np.sqrt(float(g.args[1]) / d)
            for g in e.gaussians().values()}
    subs = {a_: 0.7, b_: 1.9, z_: 0.45}
    direct = np.trace(_evaluate(e, mats, d, subs)) / d
    for reduce in (True, False):
        got = _readout(linearize(trace(e), cache=False, reduce=reduce), mats, d, subs)
        assert abs(got - direct) <= 1e-9 * max(1.0, abs(direct))


def test_trace_of_a_block_matrix_splits_into_its_diagonal_blocks():
    M = block([[X1.T @ X1, X1.T @ X2], [X2.T @ X1, X2.T @ X2]])
    assert M != F.T @ F and F @ F.T == X1 @ X1.T + X2 @ X2.T
    assert trace(M) == trace(X1.T @ X1) + trace(X2.T @ X2)
    assert trace(M + 2) == trace(X1.T @ X1) + trace(X2.T @ X2) + 2 * (1 + sympy.Rational(1, 2))
    assert trace(identity(F.cols, 3)).constant == sympy.Rational(9, 2)
    assert F.cols == SumSpace((P1, P2)) and F.cols.ratio == sympy.Rational(3, 2)


def test_concatenated_gaussian_has_the_limit_of_one_gaussian_of_the_summed_width():
    a, b, c, z = sympy.symbols("a b c z", positive=True)
    n, p1, p2 = Space("n", a), Space("p1", b), Space("p2", c)
    Z1, Z2 = gaussian("X1", n, p1), gaussian("X2", n, p2)
    Z = gaussian("X", n, Space("p", b + c))
    G = hstack([Z1, Z2])
    H = vstack([Z1.T, Z2.T])  # the same matrix, transposed twice
    traces = {"cat_nn": trace(inverse(G @ G.T + z)), "one_nn": trace(inverse(Z @ Z.T + z)),
              "cat_pp": trace(inverse(G.T @ G + z)), "one_pp": trace(inverse(Z.T @ Z + z)),
              "vcat_pp": trace(inverse(H @ H.T + z) @ inverse(H @ H.T + 1)),
              "one_pp2": trace(inverse(Z.T @ Z + z) @ inverse(Z.T @ Z + 1))}
    pts = dict(a=[0.5, 1.3, 2.0, 0.8], b=[0.7, 0.4, 1.5, 0.2], c=[1.1, 0.3, 0.25, 0.9], z=[0.3, 1e-2, 2.0, 0.05])
    v = derive(traces, pts)
    for x, y in (("cat_nn", "one_nn"), ("cat_pp", "one_pp"), ("vcat_pp", "one_pp2")):
        np.testing.assert_allclose(v[x], v[y], rtol=1e-12, atol=0)
    # and the single Gaussian is Marchenko-Pastur: tr_p (ZᵀZ + z)^{-1} / ratio_p = m(-z) at gamma = p/n
    pa, pb = np.array(pts["a"]), np.array(pts["b"]) + np.array(pts["c"])
    ref = mp_stieltjes_closed(pb / pa, -np.array(pts["z"]) / pa) / pa * pb
    np.testing.assert_allclose(v["one_pp"], ref.real, rtol=1e-10)


def test_block_input_errors():
    with pytest.raises(ValueError, match="rows differ"):
        hstack([X1, Y])
    with pytest.raises(ValueError, match="no known space"):
        block([[X1, 0], [0, 0]])
    with pytest.raises(ValueError, match="Space"):
        gaussian("G", F.cols, D)
    with pytest.raises(ValueError, match="shape mismatch"):
        F @ X1
    with pytest.raises(ValueError):
        hstack([])


# ------------------------------------------------------------------ two concatenated RF layers

psn, ps1, ps2, lam = sympy.symbols("psi_n psi_1 psi_2 lam", positive=True)
mu1, mu2 = sympy.symbols("mu1 mu2", real=True)
ms1, ms2 = sympy.symbols("mustar1 mustar2", nonnegative=True)
r2, sg2 = sympy.symbols("r2 sigma2", nonnegative=True)


def two_layer_risk() -> Trace:
    """Test error of ridge on ``Phi = [Phi_1 | Phi_2]``, two Gaussian-equivalent feature maps
    of the same data (``Phi_k = mu_k X W_kᵀ/sqrt(d) + mustar_k Xi_k``), teacher ``y = X beta +
    eps``: ``E_x (xᵀbeta - phi(x)ᵀa)^2 = |beta|^2 - 2 betaᵀ C a + aᵀ Sigma a`` with ``C =
    E[x phiᵀ]``, ``Sigma = E[phi phiᵀ] = CᵀC + diag(mustar_k^2)``, in the engine's units."""
    n, p1, p2 = Space("n", psn), Space("p1", ps1), Space("p2", ps2)
    X, W1, W2 = gaussian("X", n, D), gaussian("W1", p1, D), gaussian("W2", p2, D)
    Phi = hstack([mu1 * X @ W1.T + ms1 * gaussian("Xi1", n, p1), mu2 * X @ W2.T + ms2 * gaussian("Xi2", n, p2)])
    beta, eps = gaussian_vector("beta", D, r2), gaussian_vector("eps", n, sg2)
    a = inverse(Phi.T @ Phi / psn + lam) @ Phi.T @ (X @ beta + eps) / psn
    C = hstack([mu1 * W1.T, mu2 * W2.T])
    Sigma = C.T @ C + block([[identity(p1, ms1 ** 2), 0], [0, identity(p2, ms2 ** 2)]])
    return average(beta.T @ beta - 2 * beta.T @ C @ a + a.T @ Sigma @ a)


RELU_MU1, RELU_MUSTAR = 0.5, float(np.sqrt(0.5 - 0.5 / np.pi - 0.25))
ERF_MU1, ERF_MUSTAR = 2 / np.sqrt(3 * np.pi), float(np.sqrt(2 / np.pi * np.arcsin(2 / 3) - 4 / (3 * np.pi)))
TWO = dict(psi_n=1.5, psi_1=0.8, psi_2=0.6, lam=0.1, mu1=RELU_MU1, mu2=ERF_MU1, mustar1=RELU_MUSTAR,
           mustar2=ERF_MUSTAR, r2=1.0, sigma2=0.3)


def _two_layer_mc(d, seed, pt=TWO):
    rng = np.random.default_rng(seed)
    n, q1, q2 = (int(round(pt[k] * d)) for k in ("psi_n", "psi_1", "psi_2"))
    X = rng.standard_normal((n, d))
    W1, W2 = rng.standard_normal((q1, d)), rng.standard_normal((q2, d))
    Phi = np.hstack([pt["mu1"] * X @ W1.T / np.sqrt(d) + pt["mustar1"] * rng.standard_normal((n, q1)),
                     pt["mu2"] * X @ W2.T / np.sqrt(d) + pt["mustar2"] * rng.standard_normal((n, q2))])
    A = np.linalg.solve(Phi.T @ Phi / n + pt["lam"] * np.eye(q1 + q2), Phi.T / n)  # a = A y
    C = np.hstack([pt["mu1"] * W1.T, pt["mu2"] * W2.T]) / np.sqrt(d)
    S = C.T @ C + np.diag(np.r_[np.full(q1, pt["mustar1"] ** 2), np.full(q2, pt["mustar2"] ** 2)])
    M = A.T @ S @ A
    # exact average over beta (E beta betaᵀ = r2/d I) and eps (variance sigma2)
    return pt["r2"] * (1 - 2 * np.trace(C @ A @ X) / d + np.trace(X.T @ M @ X) / d) + pt["sigma2"] * np.trace(M)


def _mc(sample, d, seeds):
    vals = np.array([sample(d, 1000 * d + s) for s in range(seeds)])
    return vals.mean(), vals.std(ddof=1) / np.sqrt(seeds)


def test_two_concatenated_random_feature_layers_against_monte_carlo():
    theory = derive({"risk": two_layer_risk()}, TWO)["risk"][0]
    devs, ses = [], []
    for d in (400, 800):
        mean, se = _mc(_two_layer_mc, d, 4)
        devs.append(abs(mean - theory))
        ses.append(se)
        assert devs[-1] <= 3 * se + 0.2 / d, (d, mean, se, theory)
    assert devs[1] <= devs[0] + 3 * ses[1]
    assert 0.5 < theory < 1.0  # between the zero predictor (r2 = 1) and a fit


# ------------------------------------------------------------------ random vectors

gamma_ = sympy.Symbol("gamma", positive=True)


def ridge_risk_with_vectors() -> Trace:
    """``E|beta_hat - beta|^2`` written with the teacher and the noise as random vectors."""
    n = Space("n", 1 / gamma_)
    X = gaussian("X", n, D)
    beta, eps = gaussian_vector("beta", D, r2), gaussian_vector("eps", n, sg2)
    R = inverse(gamma_ * X.T @ X + lam)
    beta_hat = R @ (gamma_ * X.T @ (X @ beta + eps))
    return average((beta_hat - beta).T @ (beta_hat - beta))


def test_ridge_risk_with_random_vectors_equals_the_closed_form():
    pts = dict(gamma=[0.5, 2.0, 1.0, 0.2, 3.0], lam=[0.1, 0.05, 1.0, 0.3, 2.0], r2=[1.3, 1.0, 0.7, 2.0, 0.4],
               sigma2=[0.5, 1.0, 0.0, 0.2, 0.8])
    got = derive({"risk": ridge_risk_with_vectors()}, pts)["risk"]
    ref = ridge_risk_closed(*(np.array(pts[k]) for k in ("gamma", "lam", "r2", "sigma2")))
    np.testing.assert_allclose(got, ref, rtol=1e-10)


def test_average_of_quadratic_forms():
    v = sympy.Symbol("v", positive=True)
    u, w = gaussian_vector("u", D, v), gaussian_vector("w", D, 3)
    e = gaussian_vector("e", N, 2)
    R = inverse(gaussian("A", D, D) @ gaussian("A", D, D).T + 1)
    assert average(u.T @ R @ u) == v * trace(R)
    assert average(u.T @ R @ w) == Trace((), 0)  # independent zero-mean vectors
    assert average((u + w).T @ R @ (u + w)) == (v + 3) * trace(R)
    assert average(e.T @ e + 1) == Trace((), 2 * sympy.Rational(3, 2) + 1)  # (2/d) Tr I_n + 1
    assert average(2 * (R @ u).T @ (R @ u)) == 2 * v * trace(R @ R)
    assert average(vstack([u, e]).T @ vstack([u, e])) == Trace((), v + 3)  # a block vector
    with pytest.raises(ValueError, match="degree 1"):
        average(u)
    with pytest.raises(ValueError, match="degree 1"):
        average(u.T @ R)
    with pytest.raises(ValueError, match="degree 3 or more"):
        average((u.T @ u) @ (w.T @ w))
    with pytest.raises(ValueError, match="degree 3 or more"):
        average(u.T @ u @ u.T @ u)
    with pytest.raises(ValueError, match="invert"):
        inverse(u.T @ u + 1)
    with pytest.raises(ValueError, match="average"):
        trace(u @ u.T)
    with pytest.raises(ValueError, match="average"):
        linearize(R @ u)
    with pytest.raises(ValueError, match="non-negative"):
        gaussian_vector("bad", D, -1)
    assert (u.T @ u).rows == ONE


# ------------------------------------------------------------------ replicas

psi_n_, psi_p_ = sympy.symbols("psi_n psi_p", positive=True)
mu1_, mustar_ = sympy.Symbol("mu1", real=True), sympy.Symbol("mustar", nonnegative=True)


def rf_variance_over_weights() -> dict:
    """``E_x[f_W(x)^2]`` and ``E_x[f_W(x) f_W'(x)]`` of random-features ridge, averaged over
    the teacher and the noise, ``W'`` (and the nonlinear parts ``Xi'``) an independent
    redraw on the same data; their difference is the variance over the weights."""
    n, p = Space("n", psi_n_), Space("p", psi_p_)
    X, W = gaussian("X", n, D), gaussian("W", p, D)
    Phi = mu1_ * X @ W.T + mustar_ * gaussian("Xi", n, p)
    beta, eps = gaussian_vector("beta", D, r2), gaussian_vector("eps", n, sg2)
    a = inverse(Phi.T @ Phi / psi_n_ + lam) @ Phi.T @ (X @ beta + eps) / psi_n_
    a2 = replica(a, redraw={"W", "Xi"})
    W2 = replica(W, redraw={"W"})
    return {"same": average(a.T @ (mu1_ ** 2 * W @ W.T + mustar_ ** 2) @ a),
            "cross": average(a.T @ (mu1_ ** 2 * W @ W2.T) @ a2)}


RF = dict(psi_n=1.2, psi_p=0.9, lam=0.05, mu1=RELU_MU1, mustar=RELU_MUSTAR, r2=1.0, sigma2=0.3)


def _rf_variance_mc(d, seed, pt=RF):
    rng = np.random.default_rng(seed)
    n, q = int(round(pt["psi_n"] * d)), int(round(pt["psi_p"] * d))
    X = rng.standard_normal((n, d))

    def fit():
        W = rng.standard_normal((q, d))
        Phi = pt["mu1"] * X @ W.T / np.sqrt(d) + pt["mustar"] * rng.standard_normal((n, q))
        return W, np.linalg.solve(Phi.T @ Phi / n + pt["lam"] * np.eye(q), Phi.T / n)

    (Wa, A), (Wb, B) = fit(), fit()

    def quad(M):  # E over beta and eps of yᵀ M y, y = X beta + eps
        return pt["r2"] * np.trace(X.T @ M @ X) / d + pt["sigma2"] * np.trace(M)

    same = quad(A.T @ (pt["mu1"] ** 2 * Wa @ Wa.T / d + pt["mustar"] ** 2 * np.eye(q)) @ A)
    return same - quad(A.T @ (pt["mu1"] ** 2 * Wa @ Wb.T / d) @ B)


def test_replica_variance_of_random_features_ridge_against_monte_carlo():
    v = derive(rf_variance_over_weights(), RF)
    theory = v["same"][0] - v["cross"][0]
    assert 0.1 < theory < v["same"][0]
    devs, ses = [], []
    for d in (400, 800):
        mean, se = _mc(_rf_variance_mc, d, 4)
        devs.append(abs(mean - theory))
        ses.append(se)
        assert devs[-1] <= 3 * se + 0.2 / d, (d, mean, se, theory)
    assert devs[1] <= devs[0] + 3 * ses[1]
    assert ses[1] < ses[0]


def test_replica_names_and_errors():
    A = gaussian("A", D, D)
    R = inverse(A @ A.T + 1)
    R2 = replica(R, redraw={"A"})
    assert R2 != R and set(R2.gaussians()) == {"A'"}
    assert replica(R, redraw={"A": "B"}) == inverse(gaussian("B", D, D) @ gaussian("B", D, D).T + 1)
    p = linearize(trace(R @ R2), cache=False)
    assert set(p.gaussians) == {"A", "A'"}
    t = replica(trace(R) + 2 * trace(R @ R), redraw={"A"})
    assert t == trace(R2) + 2 * trace(R2 @ R2)
    with pytest.raises(ValueError, match="not in the expression"):
        replica(R, redraw={"W"})
    with pytest.raises(ValueError, match="new and distinct"):
        replica(R @ R2, redraw={"A"})
    # an independent copy is not the same matrix: tr(R R') = tr(R)^2 in the limit, not tr(R^2)
    v = derive({"RR2": trace(R @ R2), "R": trace(R), "RR": trace(R @ R)}, {})
    assert v["RR2"][0] == pytest.approx(v["R"][0] ** 2, rel=1e-12)
    assert abs(v["RR"][0] - v["R"][0] ** 2) > 1e-3


# ------------------------------------------------------------------ rational outputs

def test_ratio_of_traces_against_marchenko_pastur():
    n = Space("n", 1 / gamma_)
    X = gaussian("X", n, D)
    R = inverse(gamma_ * X.T @ X + lam)
    out = trace(R) ** 2 / trace(R @ R) + 1 / trace(R) - lam * trace(R) * trace(R)
    assert isinstance(out, TraceExpr)
    traces, combine = split_output(out)
    assert set(traces) == {"T0", "T1"} and all(isinstance(t, Trace) for t in traces.values())
    gam, lm = np.array([0.5, 2.0, 1.0]), np.array([0.1, 0.3, 1.5])
    vals = derive(traces, dict(gamma=gam, lam=lm))
    got = evaluate_output(combine, {**vals, "lam": lm})
    m, dm = mp_stieltjes_closed(gam, -lm).real, mp_stieltjes_derivative_closed(gam, -lm).real
    np.testing.assert_allclose(got, m ** 2 / dm + 1 / m - lm * m ** 2, rtol=1e-11)


def test_output_algebra_and_errors():
    A = gaussian("A", D, D)
    R = inverse(A @ A.T + 1)
    t0 = sympy.Symbol("T0")
    assert isinstance(trace(R) * 2, Trace) and isinstance(trace(R) / lam, Trace)
    for out in (trace(R) * trace(R), 1 / trace(R), trace(R) / trace(R @ R), trace(R) ** 2,
                trace(R) - trace(R) * trace(R), 3 + 1 / trace(R)):
        assert isinstance(out, TraceExpr)
    traces, combine = split_output(trace(R) + 1)
    assert combine == sympy.Symbol("T0") and traces["T0"] == trace(R) + 1
    assert split_output(Trace((), 3)) == ({}, 3)
    traces, combine = split_output(t0 * trace(R) / trace(R @ R))  # a parameter named T0
    assert set(traces) == {"T_0", "T_1"} and t0 in combine.free_symbols
    with pytest.raises(ValueError, match="integers"):
        trace(R) ** sympy.Rational(1, 2)
    with pytest.raises(ValueError, match="zero"):
        trace(R) / TraceExpr.of(0)
    with pytest.raises(ValueError, match="no values"):
        evaluate_output(combine, {"T_0": 1.0})


# ------------------------------------------------------------------ parameters that may be zero

def _denominators(pencil) -> set:
    out = set()
    mats = [pencil.L0, pencil.readout] + [M for _, E, F in pencil.gaussians.values() for M in (E, F)]
    for M in mats:
        for c in M:
            den = sympy.fraction(sympy.together(c))[1]
            out |= den.free_symbols
    return out


def test_no_parameter_pivot_and_the_value_at_zero_is_the_limit():
    A, X = gaussian("A", D, D), gaussian("X", Space("n", 2), D)
    exprs = {"e1": trace(inverse(inverse(A @ A.T + 1) + a_)),  # (R + a)^{-1} -> A Aᵀ + 1 at a = 0
             "e2": trace(inverse(a_ * identity(D) + inverse(X.T @ X + 1)) @ inverse(X.T @ X + b_)),
             "e3": trace(inverse(inverse(b_ * A + 1) * a_ + 1))}
    for e in exprs.values():  # eliminating a block with diagonal a would write 1/a here
        assert a_ not in _denominators(linearize(e, cache=False))
    at0 = derive(exprs, dict(a=0.0, b=0.5))
    near = derive(exprs, dict(a=1e-9, b=0.5))
    assert at0["e1"][0] == pytest.approx(2.0, rel=1e-12) and at0["e3"][0] == pytest.approx(1.0, rel=1e-12)
    for k in exprs:
        assert np.isfinite(at0[k][0]) and at0[k][0] == pytest.approx(near[k][0], rel=1e-7)


def test_a_pure_noise_layer_leaves_no_parameter_in_a_denominator_of_the_pencil():
    # mu2 = 0: the second layer is pure noise; the pencil must stay polynomial in mu1, mu2
    assert _denominators(linearize(two_layer_risk())) == {psn}  # only the user's own / psi_n


def test_a_pure_noise_layer_has_the_limit_of_a_small_linear_part():
    vals = {m: derive({"risk": two_layer_risk()}, {**TWO, "mu2": m})["risk"][0] for m in (0.0, 1e-6)}
    assert np.isfinite(vals[0.0]) and vals[0.0] == pytest.approx(vals[1e-6], rel=1e-8)
