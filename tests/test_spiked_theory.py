"""``pencils.build(act, covariance=eigs, spikes=k).errors(...)`` (derivations.spiked_theory): the
public path to the spiked-covariance theory, its error estimates and its refusals.

The default systems (linear kernel of rank k + 1) take minutes to derive, so these tests run at
rank 1 (the plumbing, the flags, the small-spike limit) with the numpy evaluator; the default
curves are checked against Monte Carlo in ``benchmarks/spiked_profiles.py`` (``docs/spiked.md``
section 7)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import pencils
from derivations.spiked_theory import SpikeWarning


@pytest.fixture(autouse=True)
def _numpy_backend(monkeypatch):
    monkeypatch.setenv("DSM_KERNEL", "numpy")  # no kernel compilation in the unit tests


def _spectrum(kappa, d, bulk=1.0):
    """``d`` eigenvalues: spikes ``kappa_j d`` and a flat bulk."""
    return np.r_[np.asarray(kappa, dtype=float) * d, np.full(d - len(kappa), bulk)]


def test_arguments_are_checked_by_name():
    eigs = _spectrum([0.2], 1000)
    for bad in (0, True, {"mu1": 0, "star": 1}):
        with pytest.raises(ValueError, match="rank"):
            pencils.build("relu", covariance=eigs, spikes=1, spike_rank=bad)
    with pytest.raises(ValueError, match="spikes=0"):
        pencils.build("relu", covariance=eigs, spike_rank=3)
    th = pencils.build("relu", covariance=eigs, spikes=1, spike_rank=1)
    with pytest.raises(ValueError, match="spike_rtol"):
        pencils.build("relu", covariance=eigs).errors(psi_n=1, psi_p=2, t=0.1, lam=1e-2, spike_rtol=0.1)
    with pytest.raises(ValueError, match="precision"):
        th.errors(psi_n=1, psi_p=2, t=0.1, lam=1e-2, precision=30)
    with pytest.raises(ValueError, match="isotropic"):
        th.errors(psi_n=1, psi_p=2, t=0.1, lam=1e-2, train_time=10.0)
    with pytest.raises(NotImplementedError, match="errors\\(\\) and equations\\(\\)"):
        th.peaks(psi_n=1, t=0.1, m=1, lam=1e-2)
    with pytest.raises(ValueError, match="nodes"):
        pencils.build("relu", covariance=_spectrum([0.2, 0.1, 0.05], 1000), spikes=3,
                      spike_nodes=40).errors(psi_n=1, psi_p=2, t=0.1, lam=1e-2)


@pytest.mark.parametrize("m", [1, "inf"])
def test_a_small_spike_gives_the_structured_theory_of_its_bulk(m):
    """kappa = 1e-5: the spike part of a pre-activation is ~3e-3, so the spiked theory is the
    structured theory of the flat bulk up to O(kappa); the DSM loss takes the bulk's constant.
    Every point comes with a rank-1 flag (its truncation is not estimated)."""
    d, kappa = 200000, 1e-5
    eigs = _spectrum([kappa], d)
    th = pencils.build("relu", covariance=eigs, spikes=1, spike_rank=1)
    assert th.spikes.k == 1 and th.spikes.kappa[0] == pytest.approx(kappa)
    args = dict(psi_n=1.2, psi_p=np.array([0.6, 2.5]), t=0.1, lam=1e-2, m=m)
    with pytest.warns(SpikeWarning, match="not estimated"):
        e = th.errors(**args)
    ref = pencils.build("relu", covariance=np.ones(3)).errors(**args)
    assert e.test.shape == (2,) and np.isnan(e.model_error).all() and e.converged.all()
    # the solver's own accounting is carried through (it was zeros before)
    assert np.all(e.residual < 1e-10) and np.all(e.iterations > 0)
    assert np.all(np.isfinite(e.rounding_error)) and np.all(e.rounding_error < 1e-8 * np.abs(e.test))
    for q in ("test", "train", "dsm_test_loss"):
        np.testing.assert_allclose(getattr(e, q), getattr(ref, q), rtol=2e-4)
    # and the spike is felt: at kappa = 0.2 the curves move by percent
    big = pencils.build("relu", covariance=_spectrum([0.2], 1000, bulk=0.8 * 1000 / 999), spikes=1, spike_rank=1)
    with pytest.warns(SpikeWarning):
        moved = big.errors(**args)
    assert np.max(np.abs(moved.test / ref.test - 1)) > 5e-3


def test_ranks_per_kernel():
    from derivations.conditional import profile_names, ranks_of
    from derivations.overlaps import default_ranks, overlap_measures

    assert default_ranks("1", 2) == {"mu1": 3, "star": 1}
    assert default_ranks("finite", 1) == {"mu1": 2, "s": 1, "f": 1}
    assert ranks_of("inf", 2) == {"mu1": 2, "s": 2}
    names = profile_names("1", {"mu1": 3, "star": 1})
    assert names["c"] == [("mu1", 0), ("mu1", 1), ("mu1", 2), ("star", 0)]
    for bad in ({"mu1": 2}, {"mu1": 2, "star": 0}, {"mu1": 2, "star": 1, "s": 1}, 0, 1.5):
        with pytest.raises(ValueError, match="rank"):
            ranks_of("1", bad)
    om = overlap_measures(pencils.activation("relu"), [0.2, 0.1], 0.7, 0.3, "1", {"mu1": 3, "star": 1}, 8)
    assert om.samples[0].shape == (64, 4) and om.features[0].shape == (64, 6)
    # two spikes: the linear kernel's third singular value is still large, its fourth is small
    sig = om.singular["mu1"]
    assert sig.size == 4 and sig[2] > 0.1 > 0.03 > sig[3] and om.tail["mu1"] == pytest.approx(sig[3])


def test_equations_are_the_conditional_reduced_system():
    from derivations.conditional import profile_traces

    th = pencils.build("relu", covariance=_spectrum([0.2], 1000), spikes=1, spike_rank=1)
    sys_ = th.equations(m=1)
    assert sys_ is pencils.derive(profile_traces("1", 1)).reduced
    assert {"test", "train"} <= set(sys_.outputs)


def test_quadrature_error_is_estimated_and_small():
    th = pencils.build("tanh", covariance=_spectrum([0.3], 1000), spikes=1, spike_rank=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpikeWarning)
        from derivations.spiked_theory import spiked_grid

        g = spiked_grid(th.activation, th.spikes, np.array([1.0, 1.0]), np.array([0.5, 3.0]), np.array([0.1, 0.1]),
                        np.array([1e-2, 1e-2]), np.array([1.0, 1.0]), rank=1)
    assert np.all(g["quadrature_error"] < 1e-4) and np.all(g["quadrature_error"] >= 0)
    assert np.isnan(g["truncation_error"]).all()


def test_the_bulk_gauss_rule_agrees_with_the_bulk_within_its_estimate():
    """A bulk of 400 distinct eigenvalues (an image-like decay): the default solve uses its Gauss
    rule (32 and 48 nodes, ``derivations.overlaps.DEFAULT_BULK_NODES``); the values agree with the
    solve on all the atoms to within the reported quadrature estimate."""
    from derivations.overlaps import DEFAULT_BULK_NODES, spiked_errors

    rng = np.random.default_rng(7)
    bulk = np.sort(rng.gamma(0.5, 2.0, 400))
    bulk *= 0.8 / bulk.mean()
    args = dict(psi_n=1.0, psi_p=np.array([0.5, 2.0]), t=0.1, lam=1e-2, m=1, R=1, Q=8)
    act = pencils.activation("relu")
    atoms = (bulk, np.full(bulk.size, 1 / bulk.size))
    rule = spiked_errors(act, [0.2], atoms, **args)
    full = spiked_errors(act, [0.2], atoms, bulk_nodes=None, **args)
    assert rule["bulk_nodes"] == DEFAULT_BULK_NODES + DEFAULT_BULK_NODES // 2 and full["bulk_nodes"] == bulk.size
    for q in ("test", "train"):
        diff = np.abs(rule[q] - full[q]) / np.abs(full[q])
        assert np.all(diff <= np.maximum(rule["quadrature_error"], 1e-12))
    # and the rule is a real approximation: 4 nodes move the values by more than rounding
    few = spiked_errors(act, [0.2], atoms, bulk_nodes=4, **args)
    assert np.max(np.abs(few["test"] - full["test"]) / full["test"]) > 1e-8


def test_directions_of_order_d_left_in_the_bulk_are_estimated():
    """A spectrum like MNIST's (no gap after the spikes): one spike taken, two eigenvalues of order
    ``d`` left in the bulk.  ``bulk_spike_error`` is BULK_SPIKE_COEFF times their squared shares,
    scaled to the pre-activation's variance at ``t``; it enters ``model_error``, is above 1 % at
    small ``t`` and falls with ``t``; with a flat bulk it is the finite-``d`` term ``tau_b^2 / d``,
    below the 1 % flag at ``d = 500`` and gone as ``d`` grows."""
    from derivations.spiked_theory import BULK_SPIKE_COEFF, spiked_grid

    d = 500
    eigs = np.r_[0.2 * d, 0.08 * d, 0.06 * d, np.full(d - 3, 0.66 * d / (d - 3))]
    flat = _spectrum([0.2], d, bulk=0.8 * d / (d - 1))
    t = np.array([0.1, 1.0])
    one = np.ones(2)
    out = {}
    for name, spectrum in (("gap-free", eigs), ("flat", flat)):
        th = pencils.build("relu", covariance=spectrum, spikes=1, spike_rank=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SpikeWarning)
            out[name] = (th.spikes, spiked_grid(th.activation, th.spikes, one, 2 * one, t, 1e-2 * one, one, rank=1))
    split, g = out["gap-free"]
    assert split.residual > 0.08**2 + 0.06**2 - 1e-9
    a2 = np.exp(-2 * t)
    want = BULK_SPIKE_COEFF * (a2 / (a2 * split.tau_b + 1 - a2)) ** 2 * split.residual
    assert np.allclose(g["bulk_spike_error"], want, rtol=1e-12)
    assert g["bulk_spike_error"][0] > 0.01 > g["bulk_spike_error"][1]
    assert out["flat"][1]["bulk_spike_error"].max() < 0.005


# -- spikes="matched": the order-d directions through p2 and p3 (docs/spiked.md section 12) --------

def test_matched_readings_carry_p2_and_keep_the_trace():
    from derivations.spikes import matched_spikes

    d = 500
    eigs = np.r_[np.array([0.12, 0.08, 0.05, 0.03]) * d, np.linspace(0.2, 0.9, d - 4)]
    ms = matched_spikes(eigs)
    assert ms.shares.tolist() == pytest.approx([0.12, 0.08, 0.05, 0.03])
    assert ms.p2 == pytest.approx(0.12 ** 2 + 0.08 ** 2 + 0.05 ** 2 + 0.03 ** 2)
    assert 1.0 < ms.n_eff < 4.0   # between one spike and four equal ones
    for n, split in ((1, ms.one), (2, ms.two)):
        assert split.k == n and np.allclose(split.kappa, np.sqrt(ms.p2 / n))
        # what the spikes do not carry is at infinity; the bulk is the eigenvalues below the directions
        assert split.tau_inf == pytest.approx(ms.shares.sum() - np.sqrt(n * ms.p2), rel=1e-12)
        assert split.tau_inf > 0
        assert np.array_equal(split.bulk[0], np.unique(eigs[4:]))
        # the trace: n spikes of kappa d, the variance at infinity and d - 4 bulk eigenvalues
        bulk_mean = split.tau_b - split.tau_inf
        assert (n * split.kappa[0] + split.tau_inf) * d + bulk_mean * (d - 4) == pytest.approx(eigs.sum(), rel=1e-12)
    assert ms.residual == pytest.approx(np.sum((eigs[4:] / d) ** 2))


def test_matched_readings_are_the_limit_of_the_family():
    """The same directions and bulk at two dimensions give the same readings (the family's
    limit, not a finite-``d`` placement of the unresolved directions); a dominant direction that
    holds less than two equal spikes need takes the rest from the bulk, keeping the trace."""
    from derivations.spikes import matched_spikes

    shares = [0.12, 0.08, 0.05, 0.03]
    a, b = (matched_spikes(_spectrum(shares, d, bulk=0.72)) for d in (500, 4000))
    for x, y in ((a.one, b.one), (a.two, b.two)):
        assert np.allclose(x.kappa, y.kappa, rtol=1e-14) and x.tau_inf == pytest.approx(y.tau_inf, rel=1e-12)
        assert np.allclose(x.bulk[0], y.bulk[0]) and np.allclose(x.bulk[1], y.bulk[1])
    d = 1000
    dominant = np.r_[0.3 * d, 0.02 * d, np.full(d - 2, 0.68 * d / (d - 2))]
    two = matched_spikes(dominant).two
    assert two.tau_inf == 0.0 and two.bulk[0].max() < 0.68 * d / (d - 2)   # the bulk paid the rest
    assert 2 * two.kappa[0] * d + (two.tau_b * (d - 2)) == pytest.approx(dominant.sum(), rel=1e-9)


def test_matched_limits_are_the_plain_splits():
    """A single direction: only the one-spike reading, which is ``spikes=1``; two equal ones: the
    two-spike reading is ``spikes=2`` and the extrapolation weight on the other is 0."""
    from derivations.spikes import matched_spikes, split_spikes
    from derivations.spiked_theory import p3_extrapolation

    one = _spectrum([0.2], 1000)
    ms, plain = matched_spikes(one), split_spikes(one, 1)
    assert ms.two is None and ms.k == 1
    assert ms.one.kappa.tolist() == plain.kappa.tolist()
    assert all(np.array_equal(a, b) for a, b in zip(ms.one.bulk, plain.bulk))
    two = _spectrum([0.15, 0.15], 1000)
    ms, plain = matched_spikes(two), split_spikes(two, 2)
    assert np.allclose(ms.two.kappa, plain.kappa, rtol=1e-14)
    assert all(np.allclose(a, b, rtol=1e-14) for a, b in zip(ms.two.bulk, plain.bulk))
    value, err = p3_extrapolation(1.3, 1.7, ms.p2, ms.p3)
    assert value == pytest.approx(1.7, rel=1e-12) and err == pytest.approx(0.0, abs=1e-12)
    assert split_spikes(np.ones(1000), "matched") is None   # no direction of order d
    with pytest.raises(ValueError, match="matched"):
        split_spikes(one, "match")


def test_p3_extrapolation_is_exact_to_third_order():
    """If the effect is ``c2 p2 + c3 p3`` the two equal-spike readings give it at any ``p3``, and
    a fourth-order term shows up in the estimate."""
    from derivations.spiked_theory import p3_extrapolation

    p2, c2, c3 = 0.03, 2.0, -5.0
    reading = {n: c2 * p2 + c3 * p2 ** 1.5 / np.sqrt(n) for n in (1, 2)}
    for p3 in (p2 ** 1.5, 0.7 * p2 ** 1.5, 0.2 * p2 ** 1.5):
        value, _ = p3_extrapolation(reading[1], reading[2], p2, p3)
        assert value == pytest.approx(c2 * p2 + c3 * p3, rel=1e-12)
    quartic = {n: reading[n] + 40.0 * p2 ** 2 / n for n in (1, 2)}
    value, err = p3_extrapolation(quartic[1], quartic[2], p2, 0.2 * p2 ** 1.5)
    n_eff = 1 / 0.2 ** 2
    truth = c2 * p2 + c3 * 0.2 * p2 ** 1.5 + 40.0 * p2 ** 2 / n_eff
    assert err > 0.3 * abs(value - truth) > 0


@pytest.mark.parametrize("m", [1, 4])
def test_matched_errors_with_one_direction_are_the_one_spike_theory(m):
    eigs = _spectrum([0.2], 1000)
    args = dict(psi_n=1.0, psi_p=np.array([0.5, 2.0]), t=0.1, lam=1e-2, m=m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpikeWarning)  # rank 1: not estimated, flagged by both
        a = pencils.build("relu", covariance=eigs, spikes="matched", spike_rank=1).errors(**args)
        b = pencils.build("relu", covariance=eigs, spikes=1, spike_rank=1).errors(**args)
    for q in ("test", "train", "dsm_test_loss"):
        assert np.allclose(getattr(a, q), getattr(b, q), rtol=1e-12, atol=0)
    assert np.isnan(a.model_error).all()   # rank 1 has no truncation estimate: NaN, not 0
    many = pencils.build("relu", covariance=_spectrum([0.12, 0.08, 0.05], 1000), spikes="matched", spike_rank=1)
    assert "3 directions of order d" in repr(many)
    if m != 1:  # finite m: the two-spike reading exists (linear core stages, docs/spiked.md section 14)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SpikeWarning)
            e = many.errors(psi_n=1.0, psi_p=np.array([0.5, 2.0]), t=0.1, lam=1e-2, m=m)
        assert np.all(e.converged) and np.all(np.isfinite(e.test)) and np.all(np.isfinite(e.train))


def test_variance_at_infinity_is_a_far_direction():
    """``tau_inf`` (a direction of order ``d`` that a reading does not resolve) is the limit of that
    direction kept as a bulk eigenvalue at ever larger ``d``: at ``d = 10^6`` the two agree to
    ``1e-4``, and dropping the variance instead moves each error by more than a per cent at one point."""
    from derivations.spiked_theory import spiked_grid
    from derivations.spikes import SpikeSplit

    d, args = 10**6, (np.ones(2), np.array([0.5, 2.0]), np.full(2, 0.1), np.full(2, 1e-2), np.ones(2))
    far = pencils.build("relu", covariance=np.r_[0.2 * d, 0.1 * d, np.full(d - 2, 0.7 * d / (d - 2))], spikes=1,
                        spike_rank=1)
    act = far.activation
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpikeWarning)  # rank 1: not estimated
        ref = spiked_grid(act, far.spikes, *args, rank=1)
        out = {tau: spiked_grid(act, SpikeSplit(kappa=np.array([0.2]), bulk=(np.array([0.7]), np.array([1.0])), d=d,
                                                residual=0.0, tau_inf=tau), *args, rank=1) for tau in (0.1, 0.0)}
    for q in ("test", "train"):
        assert np.allclose(out[0.1][q], ref[q], rtol=1e-4)
        assert np.max(np.abs(out[0.0][q] / ref[q] - 1)) > 0.01


def test_the_first_call_says_what_it_costs():
    """One spike's default ranks take minutes; two spikes' (rank 3 for mu1) or a noise kernel
    above rank 1 an hour at most, as measured (the line printed before a first derivation)."""
    from derivations.overlaps import default_ranks, first_call_cost

    for kind in ("1", "finite", "inf"):
        assert first_call_cost(kind, default_ranks(kind, 1)).startswith("a few minutes")
        assert "60 minutes" in first_call_cost(kind, default_ranks(kind, 2))
    assert "60 minutes" in first_call_cost("1", {"mu1": 2, "star": 2})
    with pytest.raises(ValueError, match="expansion rank"):
        first_call_cost("finite", {"mu1": 2})


def test_estimate_solves_check_their_rounding_where_the_value_needed_more(monkeypatch):
    """``spiked_errors`` checks the rounding of the value's own solve at every point, but that of
    the solve serving the quadrature estimate only where the value's solve was refined above
    double precision (near the interpolation peak at small ``lam``); the estimates are those of
    solves checked everywhere, to the bit (a check that passes returns the double values)."""
    from derivations.derived import DerivedModel
    from derivations.overlaps import spiked_errors

    solve, calls = DerivedModel.solve, []

    def spy(self, *, force=False, **kw):
        if force:
            kw["check_rounding"] = True
        sol = solve(self, **kw)
        calls.append((kw.get("check_rounding", True), np.size(kw["psi_p"]), np.asarray(sol.refined)))
        return sol

    args = {"psi_n": 1.0, "psi_p": np.array([0.5, 1.0, 2.0]), "t": 0.1, "lam": 1e-6, "m": 1, "R": 1, "Q": 8}
    act, bulk = pencils.activation("relu"), (np.array([0.8]), np.array([1.0]))
    monkeypatch.setattr(DerivedModel, "solve", spy)
    cheap = spiked_errors(act, [0.2], bulk, **args)
    (value_checked, n_value, refined), (est_checked, n_est, _), *redo = calls
    assert value_checked and n_value == 3 and not est_checked and n_est == 3
    assert 0 < refined.sum() < 3  # the peak's points need more than double precision, p = 2n does not
    assert len(redo) == 1 and redo[0][0] and redo[0][1] == refined.sum()

    calls.clear()
    monkeypatch.setattr(DerivedModel, "solve", lambda self, **kw: spy(self, force=True, **kw))
    checked = spiked_errors(act, [0.2], bulk, **args)
    assert all(c[0] for c in calls)
    for q in ("test", "train", "rounding_error"):
        np.testing.assert_array_equal(cheap[q], checked[q])
    assert np.all(cheap["quadrature_error"] > 1e-6)
    np.testing.assert_array_equal(cheap["quadrature_error"], checked["quadrature_error"])
    # without the ladder (check_rounding=False) no solve is checked
    calls.clear()
    monkeypatch.setattr(DerivedModel, "solve", spy)
    spiked_errors(act, [0.2], bulk, check_rounding=False, **args)
    assert [c[0] for c in calls] == [False, False]
