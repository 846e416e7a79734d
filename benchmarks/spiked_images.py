"""Image spectra (issue 17, docs/spiked.md section 8): Monte Carlo of Gaussian data with the
covariance of MNIST / Fashion-MNIST (or of the images themselves) against the spiked theory
(``spikes="auto"``) and today's structured theory (not a test).

    python3 benchmarks/spiked_images.py mc --data PATH [--data PATH] [--downsample 1] [--seeds 2]
        [--kind gaussian|real] [--workers 2] --out FILE.json
    python3 benchmarks/spiked_images.py theory --results FILE.json [--m 1 4 inf] [--out TABLE.md]
    python3 benchmarks/spiked_images.py bulk --data PATH [--data PATH] [--m 1]   # bulk's Gauss rule vs its atoms
    python3 benchmarks/spiked_images.py figure --theory TABLE.json [TABLE.json ...] --out DIR [--label TEXT]   # curves_<name>.png
    python3 benchmarks/spiked_images.py clip --data PATH --cap 40 [--m inf] [--t 0.1]   # a bounded bulk

``mc`` runs the grid of docs/real_data.md (psi_n = 1, lam = 1e-2, relu; m in {1, 4, inf},
t in {0.1, 0.3, 1}, psi_p in {0.25, 0.5, 1, 2, 4}) with
:func:`validation.images.experiments.curve_point`, one Dask task per point (``--workers 0``:
serially), and writes every point with its seeds' mean and standard error.  ``theory`` reads
that file, evaluates both theories on each dataset's spectrum and prints the relative
deviations ``(measured - theory) / theory`` of the DSM test loss and of the train error.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

M_VALUES = (1, 4, math.inf)
T_VALUES = (0.1, 0.3, 1.0)
PSI_P = (0.25, 0.5, 1.0, 2.0, 4.0)
PSI_N, LAM, ACT, HELD_OUT = 1.0, 1e-2, "relu", 2000

_pools: dict = {}


def _pool(path: str, downsample: int):
    """The image pool of ``path`` (loaded once per process: a Dask worker keeps it)."""
    from validation.images import data
    from validation.images.experiments import Pool, dataset_name

    key = (path, downsample)
    if key not in _pools:
        _pools[key] = Pool(dataset_name(path), data.load_dataset(path, downsample=downsample))
    return _pools[key]


def _point(path: str, downsample: int, kind: str, m: float, t: float, psi_p: float, seeds: int) -> dict:
    from validation.images.experiments import curve_point

    t0 = time.time()
    pool = _pool(path, downsample)
    pt = curve_point(ACT, pool, kind, psi_n=PSI_N, psi_p=psi_p, m=m, t=t, lam=LAM, seeds=seeds, held_out=HELD_OUT)
    return dict(dataset=pool.name, path=path, d=pool.d, kind=kind, m="inf" if math.isinf(m) else int(m), t=t,
                psi_n=pt.psi_n, psi_p=pt.psi_p, seeds=seeds, dsm_test=pt.dsm_test, dsm_test_se=pt.dsm_test_se,
                train=pt.train, train_se=pt.train_se, seconds=time.time() - t0)


def mc(args) -> None:
    """The grid, one Dask task per point; each finished point is appended to ``--out`` + ``.jsonl``
    at once (a rerun skips the points found there), and ``--out`` is written at the end."""
    from validation.simulation.sweep import map_tasks

    if __name__ == "__main__":  # the workers import the task by name (a pool loaded once per worker)
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from benchmarks.spiked_images import _point as task
    else:
        task = _point
    log = Path(args.out + ".jsonl")
    done = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    have = {(r["path"], r["d"], r["kind"], str(r["m"]), r["t"], round(r["psi_p"], 3)) for r in done}
    grid = [(path, args.downsample, args.kind, m, t, q, args.seeds)
            for path in args.data for m in M_VALUES for t in T_VALUES for q in PSI_P]
    d_of = {path: _pool(path, args.downsample).d for path in args.data}
    tasks = [a for a in grid if (a[0], d_of[a[0]], a[2], "inf" if math.isinf(a[3]) else str(int(a[3])), a[4],
                                 round(round(a[5] * d_of[a[0]]) / d_of[a[0]], 3)) not in have]
    t0 = time.time()
    print(f"{len(tasks)} points to run ({len(grid) - len(tasks)} in {log}), {args.seeds} seeds each, kind "
          f"{args.kind}, downsample {args.downsample}", file=sys.stderr, flush=True)

    def finished(k, r):
        with log.open("a") as fh:
            fh.write(json.dumps(r) + "\n")
        print(f"[{k + 1}/{len(tasks)}] {r['dataset']} d={r['d']} m={r['m']} t={r['t']} psi_p={r['psi_p']:.2f}: DSM "
              f"{r['dsm_test']:.5f}±{r['dsm_test_se']:.5f} train {r['train']:.6g}±{r['train_se']:.2g} "
              f"({r['seconds']:.0f} s)", file=sys.stderr, flush=True)

    map_tasks(task, tasks, scheduler="local" if args.workers else None, workers=args.workers or None,
              on_result=finished)
    points = [json.loads(line) for line in log.read_text().splitlines()]
    Path(args.out).write_text(json.dumps(dict(points=points, command=" ".join(sys.argv)), indent=1))
    print(f"wrote {args.out} ({len(points)} points; this run {time.time() - t0:.0f} s)", file=sys.stderr)


def _deviations(dsm, dsm_se, train, today, spiked, est, flagged=False) -> str:
    """``DSM ... | train ...``: a measurement and its relative deviations from today's theory and
    the spiked one (each a ``(DSM test loss, train error)`` pair), with the spiked estimate."""
    return (f"DSM {dsm:.5f}±{dsm_se:.5f} today {(dsm - today[0]) / today[0]:+.4f} spiked "
            f"{(dsm - spiked[0]) / spiked[0]:+.4f} (est {est:.1e}{' flagged' if flagged else ''}) | "
            f"train {train:.5f} today {(train - today[1]) / today[1]:+.4f} spiked {(train - spiked[1]) / spiked[1]:+.4f}")


def theory(args) -> None:
    import warnings

    import pencils
    from derivations.spiked_theory import SpikeWarning
    from validation.images.experiments import dsm_floor

    points = json.loads(Path(args.results).read_text())["points"]
    keep = {str(m) for m in args.m}
    rows = []
    for path in dict.fromkeys(p["path"] for p in points):
        mine = [p for p in points if p["path"] == path and str(p["m"]) in keep]
        eigs = _pool(path, _downsample_of(mine[0]["d"])).eigs
        flat = pencils.build(ACT, covariance=eigs)
        spikes = args.spikes if args.spikes in ("auto", "matched") else int(args.spikes)
        spiked = pencils.build(ACT, covariance=eigs, spikes=spikes, spike_rank=args.rank and json.loads(args.rank))
        k = 0 if spiked.spikes is None else spiked.spikes.k   # 0: the structured theory alone
        for p in mine:
            m = math.inf if p["m"] == "inf" else p["m"]
            kw = dict(psi_n=p["psi_n"], psi_p=p["psi_p"], t=p["t"], lam=LAM, m=m)
            floor = dsm_floor(eigs, p["t"])
            e0 = flat.errors(**kw)
            t0 = time.time()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                e1 = spiked.errors(**kw) if k else None
            secs = time.time() - t0
            flagged = any(issubclass(w.category, SpikeWarning) for w in caught)
            for w in caught:  # anything else (a KernelWarning: the slow numpy path) is shown
                if not issubclass(w.category, SpikeWarning):
                    print(f"{w.category.__name__}: {w.message}", file=sys.stderr, flush=True)
            nan = math.nan
            d0, d1 = float(e0.test) + floor, (float(e1.test) + floor if k else nan)
            row = dict(p, k=k, flat_dsm=d0, spiked_dsm=d1, flat_train=float(e0.train),
                       spiked_train=float(e1.train) if k else nan,
                       model_error=float(np.max(e1.model_error)) if k else nan, flagged=flagged, theory_seconds=secs)
            rows.append(row)
            print(f"{p['dataset']} d={p['d']} k={k} m={p['m']} t={p['t']} psi_p={p['psi_p']:.2f} | "
                  + _deviations(p['dsm_test'], p['dsm_test_se'], p['train'], (d0, row['flat_train']),
                                (d1, row['spiked_train']), row['model_error'], flagged) + f" | {secs:.1f} s", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


def bulk(args) -> None:
    """The bulk's Gauss rule against all its atoms: the spiked theory (``spikes="auto"``, default
    ranks) on each dataset's spectrum at the grid's ``(t, psi_p)``, solved both ways."""
    import warnings

    import pencils
    from derivations.overlaps import DEFAULT_BULK_NODES, spiked_errors

    m = args.m
    act = pencils.activation(ACT)
    psi_p = np.array(PSI_P)
    for path in args.data:
        split = pencils.build(ACT, covariance=_pool(path, args.downsample).eigs, spikes="auto").spikes
        for t in T_VALUES:
            res = {}
            for n in (None, DEFAULT_BULK_NODES):
                t0 = time.time()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    e = spiked_errors(act, split.kappa, split.bulk, psi_n=PSI_N, psi_p=psi_p, t=t, lam=LAM, m=m,
                                      bulk_nodes=n)
                res[n] = (e, time.time() - t0)
            (full, s_full), (rule, s_rule) = res[None], res[DEFAULT_BULK_NODES]
            diff = {q: np.max(np.abs(rule[q] - full[q]) / np.abs(full[q])) for q in ("test", "train")}
            print(f"{Path(path).name} t={t} m={args.m}: {len(split.bulk[0])} bulk atoms against the Gauss rule "
                  f"({rule['bulk_nodes']} nodes): largest difference test {diff['test']:.1e}, train "
                  f"{diff['train']:.1e}; quadrature estimate {np.min(rule['quadrature_error']):.1e} to "
                  f"{np.max(rule['quadrature_error']):.1e} | {s_full:.1f} s against {s_rule:.1f} s", flush=True)


class _DiagonalPool:
    """Gaussian data ``N(0, diag(eigs))`` for :func:`validation.images.experiments.curve_point`
    (``W`` is rotation invariant: a diagonal covariance loses nothing)."""

    def __init__(self, name: str, eigs):
        self.name, self.eigs = name, np.asarray(eigs, dtype=float)

    @property
    def d(self) -> int:
        return len(self.eigs)

    def draw(self, kind, n, held, rng):
        G = rng.standard_normal((n + held, self.d)) * np.sqrt(self.eigs)
        return G[:n], G[n:]


def clip(args) -> None:
    """Where a gap comes from: Gaussian data with the image spectrum, its eigenvalues ``3, 4, ...``
    clipped at ``lambda_c`` (a bounded bulk, two spikes unchanged), against both theories on that
    same clipped spectrum (``t``, ``psi_p`` of ``--t`` and ``--psi-p``)."""
    import warnings

    import pencils
    from derivations.spiked_theory import SpikeWarning
    from validation.images.experiments import curve_point, dsm_floor

    m = args.m
    eigs = np.sort(_pool(args.data, 1).eigs)[::-1].copy()
    eigs[2:] = np.minimum(eigs[2:], eigs[args.cap])
    pool = _DiagonalPool(f"{Path(args.data).name}-clip{args.cap}", eigs)
    flat = pencils.build(ACT, covariance=eigs)
    spiked = pencils.build(ACT, covariance=eigs, spikes=2)
    print(f"{pool.name}: kappa {spiked.spikes.kappa}, sum_(j>2) kappa_j^2 = {spiked.spikes.residual:.2e}", flush=True)
    for t in args.t:
        for q in args.psi_p:
            pt = curve_point(ACT, pool, "gaussian", psi_n=PSI_N, psi_p=q, m=m, t=t, lam=LAM, seeds=args.seeds,
                             held_out=HELD_OUT)
            kw = dict(psi_n=pt.psi_n, psi_p=pt.psi_p, t=t, lam=LAM, m=m)
            floor = dsm_floor(eigs, t)
            e0 = flat.errors(**kw)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SpikeWarning)
                e1 = spiked.errors(**kw)
            d0, d1 = float(e0.test) + floor, float(e1.test) + floor
            print(f"{pool.name} m={args.m} t={t} psi_p={q}: "
                  + _deviations(pt.dsm_test, pt.dsm_test_se, pt.train, (d0, float(e0.train)), (d1, float(e1.train)),
                                float(np.max(e1.model_error))), flush=True)


def figure(args) -> None:
    """The learning-curve figures and table of ``dsm-curves real`` (:func:`validation.images.plots.plot_curves`,
    :func:`~validation.images.plots.curves_table`) from the rows written by ``theory --out`` (images
    and Gaussian data, several files), with the spiked theory dashed beside the structured one."""
    from validation.images.experiments import CurvePoint, dsm_floor
    from validation.images.plots import curves_table, plot_curves

    rows = [r for f in args.theory for r in json.loads(Path(f).read_text())]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    points = []
    for r in rows:
        eigs = _pool(r["path"], _downsample_of(r["d"])).eigs
        n, p = round(r["psi_n"] * r["d"]), round(r["psi_p"] * r["d"])
        floor = dsm_floor(eigs, r["t"])
        points.append(CurvePoint(
            dataset=r["dataset"], kind=r["kind"], d=r["d"], n=n, p=p, m=str(r["m"]), t=r["t"], lam=LAM,
            psi_n=r["psi_n"], psi_p=r["psi_p"], seeds=r["seeds"], dsm_test=r["dsm_test"], dsm_test_se=r["dsm_test_se"],
            train=r["train"], train_se=r["train_se"], dsm_floor=floor, test_error=r["dsm_test"] - floor,
            theory_dsm_test=r["flat_dsm"], theory_train=r["flat_train"], theory_converged=True,
            rel_dev_dsm_test=(r["dsm_test"] - r["flat_dsm"]) / r["flat_dsm"],
            rel_dev_train=(r["train"] - r["flat_train"]) / r["flat_train"], spikes=r["k"],
            spiked_dsm_test=r["spiked_dsm"], spiked_train=r["spiked_train"], spiked_error=r["model_error"],
            rel_dev_spiked_dsm_test=(r["dsm_test"] - r["spiked_dsm"]) / r["spiked_dsm"],
            rel_dev_spiked_train=(r["train"] - r["spiked_train"]) / r["spiked_train"]))
    for name in dict.fromkeys(pt.dataset for pt in points):
        fig = out / f"curves_{name}.png"
        plot_curves(points, name, fig, "", spiked_label=args.label)
        print(fig)
    (out / "curves.md").write_text(curves_table(points))
    print(out / "curves.md")


def _downsample_of(d: int) -> int:
    return {784: 1, 196: 2, 49: 4}[d]


def main(argv=None) -> None:
    from validation.simulation.problem import parse_m

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("mc")
    a.add_argument("--data", action="append", required=True)
    a.add_argument("--downsample", type=int, default=1)
    a.add_argument("--seeds", type=int, default=2)
    a.add_argument("--kind", choices=("gaussian", "real"), default="gaussian")
    a.add_argument("--workers", type=int, default=2)
    a.add_argument("--out", required=True)
    b = sub.add_parser("theory")
    b.add_argument("--results", required=True)
    b.add_argument("--m", nargs="+", default=["1", "4", "inf"])
    b.add_argument("--spikes", default="auto", help='"auto", "matched" or a number of spikes')
    b.add_argument("--rank", help='spike_rank as JSON (default: the default ranks), e.g. \'{"mu1": 2}\'')
    b.add_argument("--out")
    c = sub.add_parser("bulk")
    c.add_argument("--data", action="append", required=True)
    c.add_argument("--downsample", type=int, default=1)
    c.add_argument("--m", type=parse_m, default="1")
    f = sub.add_parser("figure")
    f.add_argument("--theory", nargs="+", required=True, help="files written by theory --out")
    f.add_argument("--out", required=True, help="folder of the figures and curves.md")
    f.add_argument("--label", help='what the dashed curves are (default "spiked-covariance theory, k = K spikes")')
    g = sub.add_parser("clip")
    g.add_argument("--data", required=True)
    g.add_argument("--cap", type=int, required=True, help="clip eigenvalues 3, 4, ... at the (cap+1)-th largest")
    g.add_argument("--m", type=parse_m, default="inf")
    g.add_argument("--t", type=float, nargs="+", default=[0.1])
    g.add_argument("--psi-p", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0])
    g.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args(argv)
    {"mc": mc, "theory": theory, "bulk": bulk, "figure": figure, "clip": clip}[args.cmd](args)


if __name__ == "__main__":
    main()
