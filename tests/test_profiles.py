"""Profiles on any space (pencils.expr.profile, measures other than Sigma's spectrum), the
per-atom programs of spectral means, and the conditional spiked model built on them (issue 17).

The references are independent: deterministic equivalents solved here by plain numpy
iteration (Silverstein's equation with a variance profile; Couillet--Liao's two-sided form),
and today's structured theory for the conditional model with constant profiles."""
from __future__ import annotations

import math

import numpy as np
import pytest
import sympy

import pencils
from pencils.expr import D, S_NU, Space, SpectralMean, coordinate, gaussian, inverse, mean_of, profile, spectral, trace

psi, lam = sympy.symbols("psi lam", positive=True)
ATOMS, WEIGHTS = np.array([0.5, 2.0, 3.5]), np.array([0.3, 0.5, 0.2])
EIGS, EW = np.array([0.4, 1.0, 2.5]), np.array([0.25, 0.5, 0.25])


def _row_profile_model():
    X = gaussian("X", Space("n", psi), D)
    return pencils.derive({"m": trace(inverse(X.T @ profile(coordinate("c", 0), Space("n", psi)) @ X + lam))})


def _silverstein(psi_, lam_, atoms, weights, sigma=(np.array([1.0]), np.array([1.0]))):
    """``(1/d) tr (Sigma^1/2 X^T D X Sigma^1/2 + lam)^-1`` by iteration of the two-sided
    deterministic equivalent: ``delta = E_c[g / (1 + g e)]``, ``e = E_nu[s / (lam + s psi delta)]``."""
    s, ws = sigma
    e = 1.0
    for _ in range(20000):
        delta = np.sum(weights * atoms / (1.0 + atoms * e))
        new = np.sum(ws * s / (lam_ + s * psi_ * delta))
        if abs(new - e) < 1e-15 * max(1.0, abs(e)):
            break
        e = 0.5 * e + 0.5 * new
    delta = np.sum(weights * atoms / (1.0 + atoms * e))
    return float(np.sum(ws / (lam_ + s * psi_ * delta)))


@pytest.mark.parametrize("backend", ["kernel", "numpy"])
def test_row_profile_is_silverstein(backend, monkeypatch):
    if backend == "numpy":
        monkeypatch.setenv("DSM_KERNEL", "numpy")
    model = _row_profile_model()
    lams = np.array([1e-3, 0.1, 1.0, 10.0])
    for p in (0.5, 1.5, 4.0):
        sol = model.solve(psi=p, lam=lams, spectrum={"c": (ATOMS[:, None], WEIGHTS)})
        ref = [_silverstein(p, x, ATOMS, WEIGHTS) for x in lams]
        np.testing.assert_allclose(sol["m"], ref, rtol=1e-10)


def test_two_measures_in_one_system():
    """A profile on the samples and Sigma's spectrum on d: two measures packed for the kernel."""
    n = Space("n", psi)
    X = gaussian("X", n, D)
    root = spectral(sympy.sqrt(S_NU))
    model = pencils.derive({"m": trace(inverse(root @ X.T @ profile(coordinate("c", 0), n) @ X @ root + lam))})
    assert [m for m, _ in model.layout["measures"]] == ["c", "nu"]
    lams = np.array([1e-2, 0.3, 3.0])
    sol = model.solve(psi=1.3, lam=lams, spectrum={"c": (ATOMS[:, None], WEIGHTS), "nu": (EIGS, EW)})
    ref = [_silverstein(1.3, x, ATOMS, WEIGHTS, (EIGS, EW)) for x in lams]
    np.testing.assert_allclose(sol["m"], ref, rtol=1e-10)
    # the same numbers in any accepted form of the measure: a coordinate mapping
    again = model.solve(psi=1.3, lam=lams, spectrum={"c": ({0: ATOMS}, WEIGHTS), "nu": (EIGS, EW)})
    np.testing.assert_array_equal(again["m"], sol["m"])


def test_row_profile_against_monte_carlo():
    """Rows of X scaled by g drawn in exact proportions: the d -> inf limit is the theory."""
    model = _row_profile_model()
    theory = float(model.solve(psi=1.5, lam=0.1, spectrum={"c": (ATOMS[:, None], WEIGHTS)})["m"])
    rng = np.random.default_rng(3)
    gaps = []
    for d in (150, 600):
        n = int(1.5 * d)
        g = np.repeat(ATOMS, np.round(WEIGHTS * n).astype(int))[:n]
        vals = []
        for _ in range(4):
            X = rng.standard_normal((g.size, d)) / math.sqrt(d)
            vals.append(np.mean(1.0 / (np.linalg.eigvalsh(X.T @ (g[:, None] * X)) + 0.1)))
        gaps.append(abs(np.mean(vals) - theory))
    assert gaps[1] < 0.01 * theory


def test_measure_errors_name_what_is_wrong():
    model = _row_profile_model()
    with pytest.raises(ValueError, match="averages over"):
        model.solve(psi=1.0, lam=1.0)
    with pytest.raises(ValueError, match="must give the measures"):
        model.solve(psi=1.0, lam=1.0, spectrum={"nu": (EIGS, EW)})
    with pytest.raises(ValueError, match="sum to 1"):
        model.solve(psi=1.0, lam=1.0, spectrum={"c": (ATOMS[:, None], 2 * WEIGHTS)})
    with pytest.raises(ValueError, match="coordinates"):
        model.solve(psi=1.0, lam=1.0, spectrum={"c": (np.zeros((3, 0)), WEIGHTS)})
    with pytest.raises(ValueError, match="one length"):
        model.solve(psi=1.0, lam=1.0, spectrum={"c": (ATOMS[:2, None], WEIGHTS)})
    with pytest.raises(ValueError, match="'nu'"):
        coordinate("nu", 0)
    with pytest.raises(ValueError, match="one measure"):
        profile(coordinate("a", 0) * coordinate("b", 0), Space("n", psi))
    with pytest.raises(ValueError, match="one measure"):
        SpectralMean(coordinate("a", 0) + S_NU)
    with pytest.raises(ValueError, match="S_NU only"):
        spectral(coordinate("a", 0))


def test_let_program_mean_differentiates_like_its_expansion():
    """A mean with bindings: its value and derivative equal those of the expanded argument."""
    from pencils.inverse import evaluate

    c, u, g, h = coordinate("c", 0), sympy.Symbol("u"), sympy.Symbol("x_g"), sympy.Symbol("x_h")
    lets = [(g, c / (1 + c * u)), (h, g**2 + u * g)]
    prog, expanded = mean_of(h * g, lets), SpectralMean((c / (1 + c * u))**3 + u * (c / (1 + c * u))**2)
    assert prog.free_symbols == {u} and prog.measure == "c"
    import mpmath

    with mpmath.workdps(40):
        for expr in (prog, sympy.diff(prog, u)):
            ref = expanded if expr is prog else sympy.diff(expanded, u)
            a, b = evaluate(expr, {u: sympy.Rational(3, 7)}, {}), evaluate(ref, {u: sympy.Rational(3, 7)}, {})
            assert abs(a - b) < 1e-30 * max(1, abs(b)) and abs(b) > 0.1


@pytest.mark.parametrize("kind,m", [("1", 1), ("finite", 4), ("inf", "inf")])
def test_conditional_model_with_constant_profiles_is_the_structured_theory(kind, m, monkeypatch):
    """Rank 1, every profile constant: the conditional model is today's structured model (the
    k = 0 limit of the spiked theory) at every kind of m, to rounding."""
    from derivations.conditional import profile_traces
    from derivations.overlaps import constant_profiles

    if kind != "1":  # no second kernel compilation; numpy evaluates the same program
        monkeypatch.setenv("DSM_KERNEL", "numpy")
    model = pencils.derive(profile_traces(kind, 1))
    th = pencils.build("relu", covariance=np.linspace(0.2, 3.0, 40))
    args = dict(psi_n=1.3, psi_p=np.array([0.5, 1.0, 1.2, 2.5, 6.0]), t=0.3, lam=1e-3, m=m)
    ref = th.errors(**args)
    params, spectrum = constant_profiles(th, kind, **args)
    sol = model.solve(**params, spectrum=spectrum)
    np.testing.assert_allclose(sol["test"], ref.test, rtol=1e-11)
    np.testing.assert_allclose(sol["train"], ref.train, rtol=1e-10, atol=1e-12)  # errors live on the scale 1


def test_separable_expansion_of_the_kernels():
    from derivations.conditional import profile_names
    from derivations.overlaps import conditional_coefficients, overlap_measures

    act = pencils.activation("relu")
    om = overlap_measures(act, 0.2, 0.8, 0.1, "1", 3, 24)
    (G, wc), (F, wo) = om.samples, om.features
    names = profile_names("1", 3)
    gi = {k: j for j, k in enumerate(names["c"])}
    fi = {k: j for j, k in enumerate(names["w"])}
    # the sample functions are orthonormal under the sample weights
    Gm = G[:, [gi[("mu1", r)] for r in range(3)]]
    np.testing.assert_allclose(Gm.T @ (wc[:, None] * Gm), np.eye(3), atol=1e-12)
    # rank 3 reproduces mu1(s) to about the first discarded singular value
    x, _ = np.polynomial.hermite_e.hermegauss(24)
    K = conditional_coefficients(act, 0.1, 0.8, math.exp(-0.1) * math.sqrt(0.2) * np.outer(x, x))["mu1"]
    approx = sum(np.outer(F[:, fi[("mu1", r)]], Gm[:, r]) for r in range(3))
    err = np.sqrt(wo @ ((approx - K) ** 2) @ wc) / np.sqrt(wo @ K**2 @ wc)
    assert err < 2 * om.tail["mu1"] and om.tail["mu1"] < 0.01
    # E_c[mu1] on the feature atoms, exactly
    np.testing.assert_allclose(F[:, fi[("v", 0)]], K @ wc, rtol=1e-12)
    # a vanishing spike: every kernel is constant, rank one is exact
    flat = overlap_measures(act, 1e-12, 0.8, 0.1, "1", 2, 8)
    assert max(flat.tail.values()) < 1e-8


def test_profiles_hold_at_atoms_of_tiny_weight():
    """With 72 Gauss--Hermite nodes the outer atoms weigh 1e-56: the singular functions are read
    through the kernel there (``f_r = K W g_r``, ``g_r = K^T W f_r / sigma_r^2``, the variance
    profile ``f^2 = V W g^2``), not as singular vectors over ``sqrt(weight)``, which gave
    profiles of 1e10 and NaN solves; and the solve on that rule is the solve on the default one."""
    from derivations.conditional import profile_names
    from derivations.overlaps import (
        conditional_coefficients,
        default_ranks,
        overlap_measures,
        spiked_errors,
    )

    act, q, t = pencils.activation("relu"), 72, 0.05
    ranks = default_ranks("1", 1)
    om = overlap_measures(act, 0.2, 0.8, t, "1", ranks, q)
    (G, wc), (F, wo) = om.samples, om.features
    names = profile_names("1", ranks)
    x, _ = np.polynomial.hermite_e.hermegauss(q)
    coef = conditional_coefficients(act, t, 0.8, math.exp(-t) * math.sqrt(0.2) * np.outer(x, x))
    K, V = coef["mu1"], coef["mu_star_sq"]
    for r in range(ranks["mu1"]):
        f, g = F[:, names["w"].index(("mu1", r))], G[:, names["c"].index(("mu1", r))]
        scale = np.max(np.abs(K)) * (1.0 + np.abs(x))  # mu1 of relu grows at most linearly
        assert np.all(np.abs(f) < 2 * scale)
        np.testing.assert_allclose(f, K @ (wc * g), rtol=1e-10, atol=1e-12 * scale.max())
        sig2 = wo @ f**2
        np.testing.assert_allclose(g, K.T @ (wo * f) / sig2, rtol=1e-10, atol=1e-10)
    f, g = F[:, names["w"].index(("star", 0))], G[:, names["c"].index(("star", 0))]
    np.testing.assert_allclose(f**2, V @ (wc * g**2), rtol=1e-10, atol=1e-14)
    # the solve on 72 nodes per spike (the adaptive rule's first refinement of 24) is the
    # default's, within the default's own quadrature estimate
    bulk = (np.array([0.5, 1.1]), np.array([0.6, 0.4]))
    kw = {"psi_n": 1.0, "psi_p": np.array([0.5, 2.0]), "t": t, "lam": 1e-2, "truncation": False}
    base = spiked_errors(act, [0.2], bulk, **kw)
    fine = spiked_errors(act, [0.2], bulk, Q=48, **kw)
    assert fine["Q"] == q and np.all(fine["converged"])
    for name in ("test", "train"):
        np.testing.assert_allclose(fine[name], base[name], rtol=max(1e-9, 2 * base["quadrature_error"].max()))


@pytest.mark.parametrize("kind, ranks", [("1", {"mu1": 2, "star": 1}), ("finite", {"mu1": 2, "s": 1, "f": 1})])
def test_rank_one_noise_kernels_are_read_from_their_variance(kind, ranks):
    """A rank-one noise term ``g(c) Xi f(omega)`` has the variance profile ``g^2 f^2``: the default
    reading makes it the best rank-one approximation of the variance kernel ``mu^2(s)``; the
    square of the kernel's own first singular pair (``noise="std"``, orthonormal ``g``) misses
    the total noise variance by the discarded share, the variance reading by far less."""
    from derivations import overlaps as ov
    from derivations.conditional import profile_names

    act, q = pencils.activation("relu"), 24
    var = ov.overlap_measures(act, 0.2, 0.8, 0.1, kind, ranks, q)
    std = ov.overlap_measures(act, 0.2, 0.8, 0.1, kind, ranks, q, noise="std")
    x, w = ov.hermite_atoms(1, q)
    coef = ov.conditional_coefficients(act, 0.1, 0.8, math.exp(-0.1) * math.sqrt(0.2) * x @ x.T)
    names = profile_names(kind, ranks)
    sw = np.sqrt(w)

    def l2(A):
        return math.sqrt(w @ (A * A) @ w)

    for name in ranks:
        if name == "mu1":
            continue
        V = coef[{"star": "mu_star_sq", "s": "mu_s_sq", "f": "mu_f_sq"}[name]]
        sig = np.linalg.svd(sw[:, None] * V * sw[None, :], compute_uv=False)
        cols = {}
        for label, om in (("variance", var), ("std", std)):
            (G, _), (F, _) = om.samples, om.features
            cols[label] = (F[:, names["w"].index((name, 0))], G[:, names["c"].index((name, 0))])
        f, g = cols["variance"]
        assert np.all(f >= 0) and np.all(g >= 0)
        # the residual of the best rank-one approximation is the discarded singular values' norm
        assert l2(V - np.outer(f**2, g**2)) == pytest.approx(math.sqrt(np.sum(sig[1:] ** 2)), rel=1e-8)
        fs, gs = cols["std"]
        # the std reading loses the discarded singular values' share of the total variance
        # (here about tail^2 = 0.6 %); the variance reading keeps it within a fifth of that
        sk = np.linalg.svd(sw[:, None] * np.sqrt(V) * sw[None, :], compute_uv=False)
        mass = w @ V @ w
        assert mass - w @ np.outer(fs**2, gs**2) @ w == pytest.approx(np.sum(sk[1:] ** 2), rel=1e-8)
        assert abs(w @ np.outer(f**2, g**2) @ w - mass) < 0.2 * np.sum(sk[1:] ** 2)
        assert w @ gs**2 == pytest.approx(1.0, rel=1e-12)
        # tail and singular describe the kernel itself, whichever the reading
        assert var.tail[name] == std.tail[name] and 0.03 < var.tail[name] < 0.2
    # the linear kernel is read the same way by both
    np.testing.assert_array_equal(var.samples[0][:, :2], std.samples[0][:, :2])


def test_the_shared_noise_variance_is_the_same_in_blocks(monkeypatch):
    """mu_s^2(s) is a Gauss--Hermite mean over a shared draw, computed in blocks of s (three
    spikes have millions of (feature, sample) atom pairs): blocks of any size give the same
    values as one block, for an array of any shape."""
    import derivations.overlaps as ov

    act = pencils.activation("relu")
    s = np.random.default_rng(3).normal(scale=0.5, size=(37, 23))
    whole = ov.conditional_coefficients(act, 0.2, 0.7, s)
    for block in (ov.SHARED_NODES, 7 * ov.SHARED_NODES + 3, 10**9):
        monkeypatch.setattr(ov, "SHARED_BLOCK", block)
        part = ov.conditional_coefficients(act, 0.2, 0.7, s)
        for name in whole:
            assert part[name].shape == s.shape
            np.testing.assert_allclose(part[name], whole[name], rtol=1e-13, atol=1e-15)
    # and no temporary of the shared quadrature exceeds a block
    sizes = []

    class Recorded:  # the activation, recording the size of each argument of its moments
        def gaussian_moments(self, m, *a):
            sizes.append(np.size(m))
            return act.gaussian_moments(m, *a)

        gaussian_second_moment = staticmethod(act.gaussian_second_moment)

    monkeypatch.setattr(ov, "SHARED_BLOCK", 5 * ov.SHARED_NODES)
    ov.conditional_coefficients(Recorded(), 0.2, 0.7, s)
    assert max(sizes[1:]) == 5 * ov.SHARED_NODES and len(sizes) == 1 + -(-s.size // 5)
