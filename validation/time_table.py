"""Theory against simulation along gradient flow: the validation table of the training-time curves.

``python -m validation.time_table`` evaluates, at each point of :data:`POINTS` (relu and tanh;
``m`` in {1, 4, inf}; ``lam`` in {0, 1e-3}; ``T`` from 1 to 1000; both sides of ``p = n``):

* the theory :func:`derivations.training_time.errors_at_time` (``d -> inf``, with its
  quadrature error estimate);
* Monte Carlo of the true activation (:func:`validation.simulate` with ``train_time=T``:
  the exact ``B(T)`` at finite ``d`` by eigendecomposition) at each ``d`` of ``--d``
  (default 100, 200, 400) and its extrapolation ``c0 + c1/d`` (:func:`validation.extrapolate`);
* the deviation ``(c0 - theory) / sqrt(se(c0)^2 + quad^2)`` of the extrapolation (``quad`` the
  theory's quadrature error estimate), and the same at the largest ``d``.

Writes ``DIR/time_table.md`` and ``DIR/time_table.csv`` (``--out DIR``, default ``results``).
``--quick`` runs 3 points at ``d = 60, 120``.  The default run takes a few minutes on one core.
"""
from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import numpy as np

#: (activation, psi_n, psi_p, m, t, lam, T)
POINTS = (
    ("relu", 1.0, 0.5, 1, 0.5, 0.0, 10.0),
    ("relu", 1.0, 2.0, 1, 0.5, 1e-3, 100.0),
    ("tanh", 1.0, 2.0, 1, 0.5, 0.0, 1000.0),
    ("tanh", 1.0, 0.5, 1, 0.5, 1e-3, 3.0),
    ("relu", 1.0, 0.5, 4, 0.5, 1e-3, 1.0),
    ("tanh", 1.0, 2.0, 4, 0.5, 0.0, 100.0),
    ("relu", 1.0, 8.0, 4, 0.5, 0.0, 1000.0),
    ("relu", 1.0, 2.0, math.inf, 0.5, 0.0, 10.0),
    ("tanh", 1.0, 0.5, math.inf, 0.5, 1e-3, 1000.0),
    ("relu", 1.0, 4.0, math.inf, 0.5, 1e-3, 300.0),
)
QUICK = (POINTS[0], POINTS[4], POINTS[7])
#: seeds at each d (more at small d, where one instance is cheap and noisier)
SEEDS = {100: 12, 200: 6, 400: 3}


def _m(m) -> str:
    return "∞" if math.isinf(m) else str(m)


def run(points=POINTS, ds=(100, 200, 400), seeds=None, progress: bool = False) -> list[dict]:
    import pencils
    from derivations.training_time import errors_at_time
    from validation.simulation.driver import simulate
    from validation.simulation.extrapolate import extrapolate

    seeds = dict(SEEDS if seeds is None else seeds)
    rows = []
    for act, psi_n, psi_p, m, t, lam, T in points:
        start = time.perf_counter()
        th = pencils.build(act)
        e = errors_at_time(th, psi_n, psi_p, t, lam, m, T)
        t_theory = time.perf_counter() - start
        sims = {}
        for d in ds:
            sims[d] = simulate(act, d=d, psi_n=psi_n, psi_p=psi_p, t=t, lam=lam, m=m,
                               seeds=seeds.get(d, 3), train_time=T, progress=False)
        ex = extrapolate(sims)
        row = dict(activation=act, psi_n=psi_n, psi_p=psi_p, m=_m(m), t=t, lam=lam, T=T,
                   converged=bool(e.converged), theory_seconds=round(t_theory, 2))
        for q in ("test", "train"):
            theory = float(getattr(e, q))
            row[f"{q}_theory"] = theory
            row[f"{q}_quad_err"] = float(getattr(e, f"{q}_error"))
            for d in ds:
                row[f"{q}_d{d}"] = getattr(sims[d], q)
                row[f"{q}_d{d}_se"] = getattr(sims[d], f"{q}_se")
            fit = ex.fits[q]
            row[f"{q}_fit"], row[f"{q}_fit_se"], row[f"{q}_c1"] = fit.c0, fit.c0_se, fit.c1
            # the theory's quadrature error estimate joins the statistical error (it matters only
            # where both are tiny, e.g. a memorised train error ~ 1e-17)
            quad = row[f"{q}_quad_err"]
            row[f"{q}_dev_fit"] = (fit.c0 - theory) / math.hypot(fit.c0_se, quad)
            dmax = max(ds)
            row[f"{q}_dev_dmax"] = (getattr(sims[dmax], q) - theory) / math.hypot(getattr(sims[dmax], f"{q}_se"), quad)
        rows.append(row)
        if progress:
            print(_line(row, ds), flush=True)
    return rows


def _line(r, ds) -> str:
    cells = [r["activation"], f"{r['psi_n']:g}", f"{r['psi_p']:g}", r["m"], f"{r['lam']:g}", f"{r['T']:g}"]
    for q in ("test", "train"):
        cells += [f"{r[f'{q}_theory']:.5f} (±{r[f'{q}_quad_err']:.0e})",
                  " / ".join(f"{r[f'{q}_d{d}']:.4f}" for d in ds),
                  f"{r[f'{q}_fit']:.4f} ± {r[f'{q}_fit_se']:.4f}", f"{r[f'{q}_dev_fit']:+.1f}"]
    return "| " + " | ".join(cells) + " |"


def markdown(rows, ds) -> str:
    head = ("| act | ψn | ψp | m | λ | T | test theory (quad. err) | test sim d=" + "/".join(map(str, ds))
            + " | test fit c0 | dev σ | train theory (quad. err) | train sim | train fit c0 | dev σ |")
    sep = "|" + "---|" * 14
    return "\n".join([head, sep] + [_line(r, ds) for r in rows])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results", help="output folder (default results)")
    ap.add_argument("--quick", action="store_true", help="3 points at d = 60, 120")
    ap.add_argument("--d", type=int, nargs="+", default=None, help="dimensions (default 100 200 400)")
    args = ap.parse_args(argv)
    ds = tuple(args.d or ((60, 120) if args.quick else (100, 200, 400)))
    seeds = {d: SEEDS.get(d, 6) for d in ds}
    start = time.perf_counter()
    rows = run(QUICK if args.quick else POINTS, ds, seeds, progress=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(rows, ds)
    (out / "time_table.md").write_text(text + "\n")
    with open(out / "time_table.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    worst = max(max(abs(r["test_dev_fit"]), abs(r["train_dev_fit"])) for r in rows)
    print(f"\n{len(rows)} points, worst |deviation of the fit| {worst:.2f} sigma, "
          f"{time.perf_counter() - start:.0f} s; written to {out}/time_table.md, .csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
