"""The spiked theory with profiles (``derivations.conditional``, ``docs/spiked.md`` section 5)
against Monte Carlo of the spiked Gaussian family (not a test; one core).

    python3 benchmarks/spiked_profiles.py theory     # ranks 1, 2 and the default at every point
    python3 benchmarks/spiked_profiles.py mc         # true features at d = 200, 400, 800, d -> inf fit
    python3 benchmarks/spiked_profiles.py noise      # m = 4 and m = inf at S1: theory and Monte Carlo
    python3 benchmarks/spiked_profiles.py noise "P4 m=4 p<nm" "P4 m=4 p>nm"   # two spikes at m = 4
    python3 benchmarks/spiked_profiles.py k0         # finite m, k = 0: conditional model = structured theory
    python3 benchmarks/spiked_profiles.py k3         # three spikes (m = 1): theory and true features to d = 1600
    python3 benchmarks/spiked_profiles.py speed 1 2  # cost of a point and of a 200-point curve, k = 1, 2
    python3 benchmarks/spiked_profiles.py ledger 1 2 # what a checked point of that curve pays for, per part
    python3 benchmarks/spiked_profiles.py derive     # seconds of each cold derivation (no cache)

The first run derives the rank-2 system (about 5 minutes at m = 1, longer at m = inf) and
compiles its kernel; both are cached.  ``mc`` takes about 3 minutes per point.
"""
from __future__ import annotations

import sys
import time

import numpy as np

import pencils
import validation.simulation.spiked as sp
from derivations.overlaps import spiked_errors
from validation.simulation.extrapolate import extrapolate

#: m = 1 points: k = 1 and 2, relu / tanh / erf, both sides of p = n, t from 0.05 to 0.3.
POINTS = {
    "S1 relu k=1": dict(activation="relu", kappa=[0.2], bulk=0.8, psi_n=1, psi_p=2, t=0.1, lam=1e-2),
    "P2 tanh k=1 p<n": dict(activation="tanh", kappa=[0.34], bulk=0.66, psi_n=1, psi_p=0.5, t=0.3, lam=1e-2),
    "P3 erf k=1": dict(activation="erf", kappa=[0.15], bulk=0.85, psi_n=2, psi_p=3, t=0.05, lam=1e-3),
    "P4 relu k=2": dict(activation="relu", kappa=[0.2, 0.1], bulk=0.7, psi_n=1, psi_p=2, t=0.3, lam=1e-2),
}


def _bulk(kw):
    return np.array([kw["bulk"]]), np.array([1.0])


def theory(R=(1, 2, None), Q=16):
    out = {}
    for name, kw in POINTS.items():
        act = pencils.activation(kw["activation"])
        for r in R:
            t0 = time.time()
            q = Q if len(kw["kappa"]) == 1 else 8
            e = spiked_errors(act, kw["kappa"], _bulk(kw), psi_n=kw["psi_n"], psi_p=kw["psi_p"], t=kw["t"],
                              lam=kw["lam"], R=r, Q=q)
            out[(name, r)] = e
            tail = ", ".join(f"{k} {v:.3f}" for k, v in sorted(e["tail"].items()))
            print(f"{name} | ranks {e['ranks']} Q={e['Q']} | test {float(e['test']):.6f} | train "
                  f"{float(e['train']):.7f} | quadrature {float(e['quadrature_error']):.1e} | truncation estimate "
                  f"{float(e['truncation_error']):.1e} (change {float(e['truncation_change']):.1e}) | tail {tail} | "
                  f"{time.time() - t0:.0f} s", flush=True)
        eig = sp.spiked_eigenvalues(kw["kappa"], kw["bulk"], 100000)
        s = pencils.build(kw["activation"], covariance=eig).errors(
            psi_n=kw["psi_n"], psi_p=kw["psi_p"], t=kw["t"], lam=kw["lam"], m=1)
        print(f"{name} | structured theory (today) | test {float(s.test):.6f} | train {float(s.train):.7f}", flush=True)
    return out


def mc(ds=(200, 400, 800), seeds=4):
    for name, kw in POINTS.items():
        if name.startswith("S1"):
            print("S1: Monte Carlo in docs/spiked.md (true features, d = 200..1600, 8 seeds): "
                  "test 1.07935 ± 0.00061, train 0.004480 ± 0.000014; revised in section 15 with d = 3200 and 6400 "
                  "to test 1.07727 ± 0.00018 (six d)")
            continue
        kw = dict(kw, m=1)
        act = kw.pop("activation")
        runs = {}
        for d in ds:
            runs[d] = sp.simulate_spiked(act, d=d, seeds=seeds, features="true", progress=False, **kw)
            print(f"{name} | d={d} | test {runs[d].test:.5f}±{runs[d].test_se:.5f} | "
                  f"train {runs[d].train:.6f}±{runs[d].train_se:.6f}", flush=True)
        e = extrapolate(runs)
        print(f"{name} | d->inf | test {e.test:.5f}±{e.test_se:.5f} | train {e.train:.6f}±{e.train_se:.6f}",
              flush=True)


#: Noise draws: ``name -> (base point, m, psi_p)``; the interpolation thresholds p = n (m = inf: none)
#: and p = n m on both sides.  S1 (one spike) at m = inf and 4; P4 (two spikes) at m = 4.
NOISE_POINTS = {"S1 m=inf p<n": ("S1 relu k=1", "inf", 0.5), "S1 m=inf": ("S1 relu k=1", "inf", 2.0),
                "S1 m=4 p<nm": ("S1 relu k=1", 4, 2.0), "S1 m=4 p>nm": ("S1 relu k=1", 4, 6.0),
                "P4 m=4 p<nm": ("P4 relu k=2", 4, 2.0), "P4 m=4 p>nm": ("P4 relu k=2", 4, 6.0)}


def noise(ds=(200, 400, 800, 1600), seeds=8, names=None):
    """The points of :data:`NOISE_POINTS` (``names``: a subset; default the S1 ones): the spiked
    theory at its default ranks (``pencils.build(..., spikes=k)``) against true features to
    ``d = 1600``."""
    names = names or [n for n in NOISE_POINTS if n.startswith("S1")]
    d_eig = 100000
    for name in names:
        base, m, psi_p = NOISE_POINTS[name]
        kw = POINTS[base]
        eig = sp.spiked_eigenvalues(kw["kappa"], kw["bulk"], d_eig)
        spiked = pencils.build(kw["activation"], covariance=eig, spikes=len(kw["kappa"]))
        today = pencils.build(kw["activation"], covariance=eig)
        args = dict(psi_n=kw["psi_n"], psi_p=psi_p, t=kw["t"], lam=kw["lam"], m=m)
        t0 = time.time()
        th = spiked.errors(**args)
        old = today.errors(**args)
        print(f"{name} | theory test {float(th.test):.6f} train {float(th.train):.7f} | model_error "
              f"{float(th.model_error):.1e} | today test {float(old.test):.6f} train {float(old.train):.7f} | "
              f"{time.time() - t0:.0f} s", flush=True)
        runs = {}
        for d in ds:
            runs[d] = sp.simulate_spiked(kw["activation"], d=d, seeds=seeds, features="true", progress=False,
                                         kappa=kw["kappa"], bulk=kw["bulk"], **args)
        _against_limit(name, runs, th, old)


def _against_limit(name, runs, th, old) -> None:
    """The ``d -> inf`` fit of ``runs`` (Monte Carlo by ``d``) against the spiked theory ``th``
    and today's ``old`` (both :class:`Errors`): test and train, relative and in standard errors."""
    e = extrapolate(runs)
    for q in ("test", "train"):
        mc_, se, want = getattr(e, q), getattr(e, q + "_se"), float(getattr(th, q))
        print(f"{name} | {q} | MC d->inf {mc_:.5f} ± {se:.5f} | theory {want:.5f} "
              f"({(want - mc_) / mc_:+.2%}, {(want - mc_) / se:+.1f} sigma) | today "
              f"{(float(getattr(old, q)) - mc_) / mc_:+.2%} | by d: "
              + ", ".join(f"{d}: {getattr(r, q):.5f}" for d, r in runs.items()), flush=True)


#: m = 1 points with three spikes (the public path, ``pencils.build(..., spikes=3)``, default ranks).
K3_POINTS = {
    "P5 relu k=3 p>n": dict(activation="relu", kappa=[0.2, 0.1, 0.05], bulk=0.65, psi_n=1, psi_p=2, t=0.1,
                            lam=1e-2),
    "P6 erf k=3 p<n": dict(activation="erf", kappa=[0.25, 0.12, 0.06], bulk=0.57, psi_n=1, psi_p=0.5, t=0.05,
                           lam=1e-2),
}


def k3(ds=(200, 400, 800, 1600), seeds=(16, 8, 4, 3)):
    """Three spikes at ``m = 1``: the spiked theory (and today's) against true features at
    ``d = 200 ... 1600`` and their ``c0 + c1/d`` fit.  The three-spike kernel takes minutes to derive
    and about half an hour to compile the first time (cached after)."""
    import warnings

    for name, kw in K3_POINTS.items():
        kw = dict(kw)
        act, kappa, bulk = kw.pop("activation"), kw.pop("kappa"), kw.pop("bulk")
        eig = sp.spiked_eigenvalues(kappa, bulk, 100000)
        t0 = time.time()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            th = pencils.build(act, covariance=eig, spikes=3).errors(m=1, **kw)
        for w in caught:
            print(f"{name} | {w.category.__name__}: {w.message}", flush=True)
        old = pencils.build(act, covariance=eig).errors(m=1, **kw)
        print(f"{name} | theory test {float(th.test):.6f} train {float(th.train):.7f} | model_error "
              f"{float(th.model_error):.1e} | {time.time() - t0:.0f} s", flush=True)
        runs = {}
        for d, s in zip(ds, seeds):
            runs[d] = sp.simulate_spiked(act, kappa=kappa, bulk=bulk, d=d, seeds=s, features="true", progress=False,
                                         m=1, **kw)
            print(f"{name} | d={d} ({s} seeds) | test {runs[d].test:.5f}±{runs[d].test_se:.5f} | "
                  f"train {runs[d].train:.6f}±{runs[d].train_se:.6f}", flush=True)
        _against_limit(name, runs, th, old)


def k0(kinds=("finite",)):
    """Rank 1 with constant profiles is the structured theory (tests/test_profiles.py checks one
    m of each kind; here m = 2, 4, 16)."""
    from derivations.conditional import profile_traces
    from derivations.overlaps import constant_profiles

    th = pencils.build("relu", covariance=np.linspace(0.2, 3.0, 40))
    for kind in kinds:
        for m in (2, 4, 16):
            t0 = time.time()
            model = pencils.derive(profile_traces(kind, 1))
            args = dict(psi_n=1.3, psi_p=np.array([0.5, 1.0, 1.2, 2.5, 6.0]), t=0.3, lam=1e-3, m=m)
            ref = th.errors(**args)
            params, spectrum = constant_profiles(th, kind, **args)
            sol = model.solve(**params, spectrum=spectrum)
            dev = {q: float(np.max(np.abs(sol[q] - getattr(ref, q)) / np.abs(getattr(ref, q)))) for q in sol.values}
            print(f"k = 0, {kind} m = {m}: largest relative difference test {dev['test']:.1e}, train "
                  f"{dev['train']:.1e} ({time.time() - t0:.0f} s)", flush=True)


def speed(ks=(1,), repeat=5):
    """Seconds per point of the default-rank kernel (one solve; and ``errors()`` with its two
    estimates, three solves, :func:`derivations.overlaps.spiked_errors`) for ``k`` spikes,
    against today's structured theory; 200-point curves.  Each ``k`` derives its own system on
    first use (minutes)."""
    import warnings

    from derivations.overlaps import DEFAULT_BULK_NODES, DEFAULT_NODES, default_ranks, overlap_measures, spiked_model
    from numerics.quadrature import gauss_rule

    act = pencils.activation("relu")
    psi_p = np.linspace(0.2, 4.0, 200)
    a, delta = np.exp(-0.1), -np.expm1(-0.2)
    # an image-like spectrum at d = 784: k spikes and a bulk of 784 - k distinct eigenvalues
    def eigs(kappa):
        b = np.geomspace(0.01, 5.0, 784 - len(kappa))
        return np.r_[np.asarray(kappa) * 784, b * (1.0 - sum(kappa)) / b.mean()]

    base = pencils.build("relu", covariance=eigs([0.2]))
    base.errors(psi_n=1.0, psi_p=psi_p, t=0.1, lam=1e-2, m=1)
    t0 = time.perf_counter()
    for _ in range(repeat):
        base.errors(psi_n=1.0, psi_p=psi_p, t=0.1, lam=1e-2, m=1)
    ref = (time.perf_counter() - t0) / repeat / psi_p.size
    print(f"structured theory (783 atoms, m = 1): {ref * 1e6:.0f} us per point (200-point curve)", flush=True)
    for k in ks:
        kappa = [0.2, 0.1, 0.05][:k]
        th = pencils.build("relu", covariance=eigs(kappa), spikes=k)
        bulk = th.spikes.bulk
        ranks = default_ranks("1", k)
        model = spiked_model("1", ranks)
        q = DEFAULT_NODES[k] + DEFAULT_NODES[k] // 2
        spikes = overlap_measures(act, kappa, th.spikes.tau_b, 0.1, "1", ranks, q).spectrum()
        one = {}
        rule = gauss_rule(*bulk, DEFAULT_BULK_NODES)
        # the last: the solve alone, without the rounding check (three moved solves and a long
        # double re-solve per point) and the double-double refinement it may ask for
        for label, nu, check in (("all bulk atoms", bulk, True), ("bulk Gauss rule", rule, True),
                                 ("bulk Gauss rule, no rounding check", rule, False)):
            spec = {"nu": nu, **spikes}
            # errors()' tolerances (atol 1e-10: DerivedModel.solve's 1e-12 refines 35 of these points)
            kw = {"psi_n": 1.0, "psi_p": psi_p, "lam": 1e-2, "a": a, "Delta": delta, "spectrum": spec,
                  "check_rounding": check, "rtol": 1e-8, "atol": 1e-10}
            model.solve(**kw)
            t0 = time.perf_counter()
            for _ in range(repeat):
                model.solve(**kw)
            one[label] = (time.perf_counter() - t0) / repeat / psi_p.size
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            th.errors(psi_n=1.0, psi_p=psi_p, t=0.1, lam=1e-2, m=1)
            t0 = time.perf_counter()
            th.errors(psi_n=1.0, psi_p=psi_p, t=0.1, lam=1e-2, m=1)
        curve = time.perf_counter() - t0
        solves = "; ".join(f"{v * 1e6:.0f} us per point on the {label} ({v / ref:.1f} x structured)"
                           for label, v in one.items())
        print(f"k = {k}, ranks {ranks} ({q}^{k} = {q ** k} atoms per measure): one solve {solves}; errors() with "
              f"its estimates (the values' solve checked, two estimate solves unchecked where it needed no refinement): "
              f"200-point curve {curve:.2f} s ({curve / (ref * psi_p.size):.1f} x structured; the cost of "
              f"{curve / psi_p.size / one['bulk Gauss rule']:.2f} checked solves per point)",
              flush=True)


def ledger(ks=(2,), repeat=2):
    """What a checked point of :func:`speed`'s curve pays for, per part, in ms per point: the
    values' solve (the kernel's grid call without its rounding check), the check's three moved
    solves and its long-double re-solve (the same call with 0 and 3 move patterns), and the rest
    of ``errors()`` (its two estimate solves and the Python around them).  The grid call is the
    one the values' solve makes (captured), timed alone."""
    for k in ks:
        curve, parts = _ledger(k, repeat)
        print(f"k = {k}: errors() {curve * 1e3:.1f} ms per point; " +
              "; ".join(f"{name} {v * 1e3:.1f} ms ({v / curve:.0%})" for name, v in parts.items()), flush=True)


def _ledger(k: int, repeat: int) -> tuple:
    """``(seconds per point of errors(), {part: seconds per point})`` for :func:`ledger`."""
    import warnings

    from numerics import kernel as K

    psi_p = np.linspace(0.2, 4.0, 200)
    b = np.geomspace(0.01, 5.0, 784 - k)  # the spectrum of :func:`speed`
    kappa = np.array([0.2, 0.1, 0.05][:k])
    th = pencils.build("relu", covariance=np.r_[kappa * 784, b * (1.0 - kappa.sum()) / b.mean()], spikes=k)
    calls = []
    grid = K.Kernel.grid

    def spy(self, *args, **kw):
        calls.append((self, args))
        return grid(self, *args, **kw)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        th.errors(psi_n=1.0, psi_p=psi_p, t=0.1, lam=1e-2, m=1)  # derives and builds on first use
        t0 = time.perf_counter()
        th.errors(psi_n=1.0, psi_p=psi_p, t=0.1, lam=1e-2, m=1)
        curve = (time.perf_counter() - t0) / psi_p.size
        K.Kernel.grid = spy
        try:
            th.errors(psi_n=1.0, psi_p=psi_p, t=0.1, lam=1e-2, m=1)
        finally:
            K.Kernel.grid = grid
    # the first checked double-precision call: the values' solve
    kern, args = next(c for c in calls if c[1][4] and c[1][9] == "double")
    P, spectrum, cfg, init, _, signs, eps, safety, tiny = args[:9]

    def timed(estimate, patterns):
        t0 = time.perf_counter()
        for _ in range(repeat):
            grid(kern, P, spectrum, cfg, init, estimate, signs, eps, safety, tiny, patterns=patterns)
        return (time.perf_counter() - t0) / repeat / P.shape[0]

    plain, ld, full = timed(False, 3), timed(True, 0), timed(True, 3)
    return curve, {"the values' solve": plain, "its three moved solves": full - ld, "its long-double re-solve": ld - plain,
                   "the rest of errors() (two estimate solves, Python)": curve - full}


#: The systems of ``derive``: (kind of m, ranks), the default ranks of one and two spikes.
DERIVE_SYSTEMS = (("1", {"mu1": 2, "star": 1}), ("finite", {"mu1": 2, "s": 1, "f": 1}), ("inf", {"mu1": 2, "s": 1}),
                  ("1", {"mu1": 3, "star": 1}), ("finite", {"mu1": 3, "s": 1, "f": 1}), ("inf", {"mu1": 3, "s": 1}))


def derive(which=None):
    """Seconds of a cold reduction (no disk cache; sympy: pencil, equations, reduction) of each
    system of :data:`DERIVE_SYSTEMS` (``which``: their indices), with its sizes.  Run on an idle
    core: the derivation is single-threaded."""
    import os

    os.environ["DSM_CACHE_DIR"] = "off"
    from derivations.conditional import profile_traces
    from derivations.derived import derive as derive_model

    for i, (kind, R) in enumerate(DERIVE_SYSTEMS):
        if which and i not in which:
            continue
        t0 = time.perf_counter()
        red = derive_model(profile_traces(kind, R)).reduced
        s = red.sizes
        print(f"m kind {kind!r}, ranks {R}: reduced in {time.perf_counter() - t0:.1f} s (core {s['core']}, "
              f"{s['steps']} steps)", flush=True)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "theory"
    if command == "speed":
        speed(tuple(int(k) for k in sys.argv[2:]) or (1,))
    elif command == "ledger":
        ledger(tuple(int(k) for k in sys.argv[2:]) or (2,))
    elif command == "derive":
        derive(tuple(int(k) for k in sys.argv[2:]))
    elif command == "noise":  # noise [names...]: e.g. noise "P4 m=4 p<nm" "P4 m=4 p>nm"
        noise(names=sys.argv[2:] or None)
    else:
        {"theory": theory, "mc": mc, "k0": k0, "k3": k3}[command]()
