"""``spikes="matched"`` (docs/spiked.md section 12) against Monte Carlo of the spiked family with
many directions of order ``d`` and no gap, the shape of MNIST's spectrum (not a test; one core).

    python3 benchmarks/spiked_matched.py mc --out FILE.json [--points M1 M2] [--d 3200 --seeds 2] [--features centred]
    python3 benchmarks/spiked_matched.py theory --results FILE.json [--d-min 400] [--features centred]   # d -> inf fits
    python3 benchmarks/spiked_matched.py exact     # against the exact three-spike theory (m = 1; no Monte Carlo)
    python3 benchmarks/spiked_matched.py image --data PATH [--m inf]   # an image spectrum's directions as a family,
                                                                       # true and centred features, d = 784 ... 3136
    python3 benchmarks/spiked_matched.py limits --data PATH [--m inf] [--t 0.1]   # the family's limit at every
                                                                       # (t, psi_p) of the image tables, against matched

``mc`` appends each ``(point, d)`` to ``FILE.json.jsonl`` as it finishes (a rerun skips those).
``theory`` fits ``c0 + c1/d`` per point (:func:`validation.simulation.extrapolate.extrapolate`) and
prints it against ``spikes="matched"``, ``spikes="auto"`` and today's structured theory, each
evaluated on the family's spectrum at ``d = 100000``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np

#: eight directions of order d, slowly decaying (p2 = 0.029, like MNIST's 0.032), and a bulk
GRADUAL = [0.10, 0.08, 0.065, 0.055, 0.045, 0.04, 0.035, 0.03]
#: two large spikes and three moderate directions (like Fashion-MNIST)
STEEP = [0.30, 0.15, 0.06, 0.05, 0.04]
POINTS = {
    "M1 relu gradual m=1 p>n": dict(activation="relu", kappa=GRADUAL, psi_p=2.0, t=0.1, m=1),
    "M2 relu gradual m=inf p>n": dict(activation="relu", kappa=GRADUAL, psi_p=4.0, t=0.1, m=math.inf),
    "M3 tanh gradual m=1 p<n": dict(activation="tanh", kappa=GRADUAL, psi_p=0.5, t=0.3, m=1),
    "M4 erf steep m=inf": dict(activation="erf", kappa=STEEP, psi_p=2.0, t=0.05, m=math.inf),
    "M5 relu steep m=1 p>n": dict(activation="relu", kappa=STEEP, psi_p=4.0, t=0.1, m=1),
}
PSI_N, LAM = 1.0, 1e-2
DS, SEEDS = (200, 400, 800, 1600), (16, 8, 4, 3)


def _kw(p):
    """The family's arguments of one point (flat bulk carrying the rest of a unit trace)."""
    return dict(kappa=p["kappa"], bulk=1.0 - sum(p["kappa"]), psi_n=PSI_N, psi_p=p["psi_p"], t=p["t"], lam=LAM,
                m=p["m"])


def mc(args) -> None:
    import validation.simulation.spiked as sp

    log = Path(args.out + ".jsonl")
    done = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    have = {(r["point"], r["d"], r.get("features", "true")) for r in done}
    for name, p in POINTS.items():
        if args.points and name.split()[0] not in args.points:
            continue
        for d, seeds in zip(args.d or DS, args.seeds or SEEDS):
            if (name, d, args.features) in have:
                continue
            t0 = time.time()
            r = sp.simulate_spiked(p["activation"], d=d, seeds=seeds, features=args.features, progress=False, **_kw(p))
            row = dict(point=name, d=d, seeds=seeds, test=r.test, test_se=r.test_se, train=r.train,
                       train_se=r.train_se, seconds=time.time() - t0, features=args.features)
            with log.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(f"{name} | {args.features} | d={d} ({seeds} seeds) | test {r.test:.5f}±{r.test_se:.5f} | train "
                  f"{r.train:.6f}±{r.train_se:.6f} | {row['seconds']:.0f} s", flush=True)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    Path(args.out).write_text(json.dumps(dict(rows=rows, command=" ".join(sys.argv)), indent=1))


def theory(args) -> None:
    import pencils
    import validation.simulation.spiked as sp
    from derivations.spiked_theory import SpikeWarning
    from validation.simulation.extrapolate import extrapolate

    rows = json.loads(Path(args.results).read_text())["rows"]
    for name, p in POINTS.items():
        mine = {r["d"]: SimpleNamespace(**r) for r in rows
                if r["point"] == name and r["d"] >= args.d_min and r.get("features", "true") == args.features}
        if len(mine) < 2:
            print(f"{name}: {len(mine)} Monte Carlo d values, need 2 or more", flush=True)
            continue
        e = extrapolate(mine)
        kw = _kw(p)
        eig = sp.spiked_eigenvalues(kw.pop("kappa"), kw.pop("bulk"), 100000)
        line = []
        for label, spikes in (("matched", "matched"), ("auto", "auto"), ("today", 0)):
            t0 = time.time()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                th = pencils.build(p["activation"], covariance=eig, spikes=spikes).errors(**kw)
            flag = " flagged" if any(issubclass(w.category, SpikeWarning) for w in caught) else ""
            est = f" est {float(th.model_error):.1e}{flag}" if th.model_error is not None else ""
            dev = [(float(getattr(th, q)) - getattr(e, q)) for q in ("test", "train")]
            line.append(f"{label}: test {float(th.test):.5f} {dev[0] / e.test:+.2%} ({dev[0] / e.test_se:+.1f} sigma), "
                        f"train {float(th.train):.6f} {dev[1] / e.train:+.2%} ({dev[1] / e.train_se:+.1f} sigma){est} [{time.time() - t0:.0f} s]")
        by_d = ", ".join(f"{d}: {r.test:.5f}/{r.train:.5f}" for d, r in sorted(mine.items()))
        print(f"{name} | {args.features} features | MC d->inf test {e.test:.5f}±{e.test_se:.5f} train {e.train:.5f}±{e.train_se:.5f} "
              f"(by d, test/train: {by_d})", flush=True)
        for x in line:
            print(f"    {x}", flush=True)


#: three-direction spectra (flat bulk) for ``exact``: unequal, equal, one dominant
EXACT_SPECTRA = ([0.12, 0.08, 0.05], [0.1, 0.1, 0.1], [0.2, 0.1, 0.05])


def exact(args) -> None:
    """``spikes="matched"`` (and ``spikes=2, 1, 0``) against the three-spike theory on the same
    spectrum: relu, ``m = 1``, ``t = 0.1``, ``psi_p = 1, 2, 4``.  Theory against theory, so the
    difference is that of the ``p2, p3`` reading alone (the three-spike kernel takes minutes to
    half an hour to build the first time, cached after)."""
    import pencils
    import validation.simulation.spiked as sp

    kw = dict(psi_n=PSI_N, psi_p=np.array([1.0, 2.0, 4.0]), t=0.1, lam=LAM, m=1)
    for kappa in EXACT_SPECTRA:
        eig = sp.spiked_eigenvalues(kappa, 1.0 - sum(kappa), 100000)
        out = {}
        for label, spikes in (("exact k=3", 3), ("matched", "matched"), ("k=2", 2), ("k=1", 1), ("today", 0)):
            t0 = time.time()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out[label] = e = pencils.build("relu", covariance=eig, spikes=spikes).errors(**kw)
            est = "" if e.model_error is None else " est " + " ".join(f"{x:.1e}" for x in np.ravel(e.model_error))
            print(f"kappa {kappa} {label}: test {np.round(e.test, 6).tolist()} train {np.round(e.train, 7).tolist()}"
                  f"{est} [{time.time() - t0:.0f} s]", flush=True)
        ref = out["exact k=3"]
        for label, e in out.items():
            print(f"    {label} - exact: test " + " ".join(f"{x:+.2%}" for x in (e.test - ref.test) / ref.test)
                  + " train " + " ".join(f"{x:+.2%}" for x in (e.train - ref.train) / ref.train), flush=True)


def _family(path: str):
    """An image pool's spectrum (descending), its directions (``kappa``, by the rule of
    ``spikes="matched"``) and the bulk below them: the spiked family of ``image`` and ``limits``."""
    from derivations.spikes import matched_spikes
    from validation.images import data
    from validation.images.experiments import Pool, dataset_name

    eigs = np.sort(Pool(dataset_name(path), data.load_dataset(path)).eigs)[::-1]
    kappa = matched_spikes(eigs).shares.tolist()
    return eigs, kappa, eigs[len(kappa):]


def _through_last_two(results, name: str) -> float:
    """``c0`` of ``c0 + c1/d`` through the last two dimensions (the steps of the centred features
    halve with each doubling of ``d``, docs/spiked.md section 13)."""
    (d1, q1), (d2, q2) = ((r.d, getattr(r, name)) for r in results[-2:])
    return (d2 * q2 - d1 * q1) / (d2 - d1)


def image(args) -> None:
    """The directions (``lambda_j >= 10 tr Sigma / d``) and bulk of an image spectrum as a spiked
    family: Monte Carlo at ``--d`` (relu, ``--t`` 0.1, ``psi_p = 4, 2``, ``--m 1`` or ``inf``) with
    the true features and with the features centred on the spike part (``features="centred"``,
    which converge like ``1/d``), against ``spikes="matched"`` (the family's limit; read at the
    image's own ``d``), two spikes and today's theory (on the family at ``d = 100000``)."""
    import pencils
    import validation.simulation.spiked as sp

    eigs, kappa, bulk = _family(args.data)
    far = sp.spiked_eigenvalues(kappa, bulk, 100000)
    print(f"{args.data}: {len(kappa)} directions, p2 = {np.sum(np.square(kappa)):.4f}; m = {args.m}", flush=True)
    for psi_p in args.psi_p:
        kw = dict(psi_n=PSI_N, psi_p=psi_p, t=args.t, lam=LAM, m=args.m)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            th = {"matched": pencils.build("relu", covariance=eigs, spikes="matched").errors(**kw),
                  **{s: pencils.build("relu", covariance=far, spikes=s).errors(**kw) for s in (2, 0)}}
        print(f"psi_p = {psi_p}: theory test/train " + ", ".join(f"{s}: {float(e.test):.5f}/{float(e.train):.6f}"
                                                          for s, e in th.items())
              + f" (matched estimate {float(th['matched'].model_error):.1e})", flush=True)

        def rel(value, s, name, th=th):
            return (value - float(getattr(th[s], name))) / float(getattr(th[s], name))

        runs = {f: [] for f in args.features}
        for d, seeds in zip(args.d, args.seeds):
            for f in args.features:
                t0 = time.time()
                r = sp.simulate_spiked("relu", kappa=kappa, bulk=bulk, d=d, seeds=seeds, features=f, progress=False,
                                       **kw)
                runs[f].append(r)
                print(f"  {f:8s} d = {d} ({seeds} seeds): test {r.test:.5f}±{r.test_se:.5f} train {r.train:.6f}"
                      f"±{r.train_se:.6f} | vs matched: test {rel(r.test, 'matched', 'test'):+.2%}, train "
                      f"{rel(r.train, 'matched', 'train'):+.2%} [{time.time() - t0:.0f} s]", flush=True)
        for f, rs in runs.items():
            if len(rs) < 2:
                continue
            test, train = _through_last_two(rs, "test"), _through_last_two(rs, "train")
            print(f"  {f:8s} c0 + c1/d through d = {rs[-2].d}, {rs[-1].d}: test {test:.5f}, train {train:.6f} | theory "
                  "- that: " + ", ".join(f"{s}: test {-rel(test, s, 'test'):+.2%}, train {-rel(train, s, 'train'):+.2%}"
                                         for s in th), flush=True)


def limits(args) -> None:
    """An image spectrum as a spiked family (its ``spikes="matched"`` directions and the bulk below
    them): the centred-feature Monte Carlo at two dimensions, its ``c0 + c1/d`` limit, against
    ``spikes="matched"`` (the family's limit) at every ``(t, psi_p)`` (relu, ``psi_n = 1``,
    ``lambda = 1e-2``).  What the image tables compare at ``d = 784`` minus what is finite-size."""
    import pencils
    import validation.simulation.spiked as sp

    eigs, kappa, bulk = _family(args.data)
    th = pencils.build("relu", covariance=eigs, spikes="matched")
    print(f"{args.data}: {len(kappa)} directions; m = {args.m}; centred features at d = {args.d}", flush=True)
    for t in args.t:
        for psi_p in args.psi_p:
            kw = dict(psi_n=PSI_N, psi_p=psi_p, t=t, lam=LAM, m=args.m)
            t0 = time.time()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                e = th.errors(throw=False, **kw)
            runs = [sp.simulate_spiked("relu", kappa=kappa, bulk=bulk, d=d, seeds=args.seeds, features="centred",
                                       progress=False, **kw) for d in args.d]
            lim = {q: _through_last_two(runs, q) for q in ("dsm_test_loss", "train")}
            dsm, train = float(e.dsm_test_loss), float(e.train)
            print(f"t = {t}, psi_p = {psi_p}: centred DSM loss by d " + ", ".join(f"{r.dsm_test_loss:.5f}" for r in runs)
                  + f" -> {lim['dsm_test_loss']:.5f}; matched {dsm:.5f} ({(dsm - lim['dsm_test_loss']) / lim['dsm_test_loss']:+.2%})"
                  f" | train -> {lim['train']:.6f}; matched {train:.6f} ({(train - lim['train']) / lim['train']:+.2%}) | "
                  f"estimate {float(e.model_error):.1e} [{time.time() - t0:.0f} s]", flush=True)


def main(argv=None) -> None:
    from validation.simulation.problem import parse_m

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    a = sub.add_parser("mc", help="true features at d = 200 ... 1600")
    a.add_argument("--out", required=True)
    a.add_argument("--points", nargs="+", help="only these points (M1 ... M5)")
    a.add_argument("--d", type=int, nargs="+", help=f"dimensions (default {DS})")
    a.add_argument("--seeds", type=int, nargs="+", help=f"seeds per dimension (default {SEEDS})")
    a.add_argument("--features", default="true", choices=("true", "centred"),
                   help="true features, or centred on the spike part (converge like 1/d; section 13)")
    a.set_defaults(run=mc)
    b = sub.add_parser("theory", help="the d -> inf fits against the theories")
    b.add_argument("--results", required=True)
    b.add_argument("--d-min", type=int, default=0, help="fit only the dimensions d >= this")
    b.add_argument("--features", default="true", choices=("true", "centred"), help="which Monte Carlo rows to fit")
    b.set_defaults(run=theory)
    c = sub.add_parser("exact", help="against the exact three-spike theory (no Monte Carlo)")
    c.set_defaults(run=exact)
    e = sub.add_parser("image", help="an image spectrum's directions as a spiked family, d = 784 ... 3136")
    e.add_argument("--data", required=True, help="image folder (e.g. the MNIST test split)")
    e.add_argument("--m", type=parse_m, default="1", help="noise draws: 1, an integer or inf (default 1)")
    e.add_argument("--features", nargs="+", default=["true", "centred"], choices=("true", "centred"))
    e.add_argument("--d", type=int, nargs="+", default=[784, 1568, 3136])
    e.add_argument("--seeds", type=int, nargs="+", default=[2, 2, 2], help="per dimension")
    e.add_argument("--psi-p", type=float, nargs="+", default=[4.0, 2.0])
    e.add_argument("--t", type=float, default=0.1, help="diffusion time (default 0.1)")
    e.set_defaults(run=image)
    g = sub.add_parser("limits", help="an image spectrum's family: the centred Monte Carlo's limit against matched")
    g.add_argument("--data", required=True, help="image folder (e.g. the MNIST test split)")
    g.add_argument("--m", type=parse_m, default="1", help="noise draws: 1, an integer or inf (default 1)")
    g.add_argument("--t", type=float, nargs="+", default=[0.1, 0.3, 1.0])
    g.add_argument("--psi-p", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0, 4.0])
    g.add_argument("--d", type=int, nargs=2, default=[784, 1568])
    g.add_argument("--seeds", type=int, default=2)
    g.set_defaults(run=limits)
    args = ap.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
