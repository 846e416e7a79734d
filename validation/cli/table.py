"""Theory against simulation: the validation table of the DSM learning curves.

``dsm-curves table`` (alias ``python -m validation.table``) evaluates, at each parameter point of :data:`POINTS`
(relu, tanh, erf; both sides of ``p = n``; ``m`` in {1, 2, 4, 16, inf}; ``t`` in
{0.1, 0.5, 1.5}; ``lam`` in {1e-3, 1e-2, 1e-1}):

* the theory of :func:`pencils.build` (``d -> inf``);
* Monte Carlo of the true activation and of its Gaussian-equivalent surrogate at each
  ``d`` of ``--d`` (default 100, 200, 400), and their extrapolation ``c0 + c1/d``;
* deviations ``(simulation - theory) / uncertainty`` at every ``d`` and for the
  extrapolation.

It writes ``DIR/validation_table.md``, ``DIR/validation_table.csv`` (with a ``converged``
column) and its JSON sidecar ``DIR/validation_table.json`` (``--out DIR``, default
``results``).  A run at the defaults takes tens of minutes on two cores (``--quick`` runs
3 points at small ``d``).  ``--scheduler local`` runs the simulations on a local Dask
cluster, ``--scheduler tcp://HOST:PORT`` on an existing one (see :mod:`validation.simulation.sweep`);
the numbers are identical to the serial run.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from validation.simulation.problem import m_label

from .helpers import MAX_D, Parser, command_line, distinct, fail, int_in, jsonable, plain, save_table, writable_folder

PROG = "dsm-curves table"

#: (activation, psi_n, psi_p, m, t, lam)
POINTS = (
    ("relu", 1.0, 0.5, 1, 0.5, 1e-2),
    ("relu", 1.0, 2.0, 1, 0.5, 1e-2),
    ("relu", 2.0, 1.0, math.inf, 0.1, 1e-3),
    ("relu", 1.0, 3.0, 16, 1.5, 1e-1),
    ("relu", 0.5, 1.5, 4, 0.5, 1e-3),
    ("relu", 1.0, 1.2, 2, 0.1, 1e-2),
    ("tanh", 1.0, 0.5, 2, 0.1, 1e-2),
    ("tanh", 1.0, 2.0, math.inf, 0.5, 1e-1),
    ("tanh", 2.0, 4.0, 4, 1.5, 1e-2),
    ("tanh", 0.5, 0.25, 16, 0.5, 1e-3),
    ("erf", 1.0, 1.5, 1, 1.5, 1e-3),
    ("erf", 2.0, 1.0, 2, 0.5, 1e-1),
    ("erf", 1.0, 0.5, math.inf, 1.5, 1e-2),
    ("erf", 1.0, 3.0, 16, 0.1, 1e-2),
)
QUICK = (POINTS[0], POINTS[7], POINTS[11])


def sweep_points(points, ds, seeds: int) -> list:
    """The Monte Carlo points of the table: each parameter point x (true, surrogate) x ``d``."""
    from validation.simulation.sweep import Point

    return [Point(act, d=d, psi_n=psi_n, psi_p=psi_p, t=t, lam=lam, m=m, seeds=tuple(range(seeds)),
                  surrogate=surrogate)
            for (act, psi_n, psi_p, m, t, lam) in points for surrogate in (False, True) for d in ds]


def comparison_row(fields: dict, q: str, theory: float, converged, ext, runs: dict,
                   numbered: bool = False) -> dict:
    """One row of a theory-vs-simulation table: ``fields``, then the error ``q``'s theory
    value, its ``d -> inf`` extrapolation ``ext`` with uncertainty and deviation in units of
    it, each run of ``runs`` (``d -> result``: value, standard error, relative deviation
    from the theory) and ``converged`` (the theory resolved, every number finite).  Run
    columns are named by ``d`` (``d100``, ``d100_se``, ...), or with ``numbered`` by their
    rank (``d1`` = ``d``, ``d1_value``, ``d1_se``, ...: tables whose ``d`` differ by row)."""
    row = dict(fields, quantity=q, theory=theory, extrapolated=getattr(ext, q), uncertainty=getattr(ext, q + "_se"))
    row["deviation_sigma"] = (row["extrapolated"] - theory) / row["uncertainty"]
    for i, (d, r) in enumerate(runs.items()):
        if numbered:
            row[f"d{i + 1}"] = d
        name = f"d{i + 1}" if numbered else f"d{d}"
        row[name + ("_value" if numbered else "")] = getattr(r, q)
        row[f"{name}_se"] = getattr(r, q + "_se")
        row[f"{name}_rel_dev"] = (getattr(r, q) - theory) / theory
    row["converged"] = bool(np.all(converged)) and all(
        math.isfinite(row[k]) for k in ("theory", "extrapolated", "uncertainty"))
    return row


def agreement(rows: list[dict], where) -> str:
    """How many rows lie within 3 standard uncertainties, and the largest deviation, located
    by ``where(row)`` (the row's distinguishing fields as text)."""
    worst = max(rows, key=lambda r: abs(r["deviation_sigma"]))
    within = sum(abs(r["deviation_sigma"]) <= 3 for r in rows)
    return (f"{within} of {len(rows)} comparisons within 3 standard uncertainties; largest deviation "
            f"{worst['deviation_sigma']:+.2f}σ ({where(worst)}, {worst['kind']} {worst['quantity']}).")


def evaluate(points, ds, seeds: int, scheduler=None, *, workers: int | None = None,
             stats: list | None = None) -> list[dict]:
    """Theory, simulations and extrapolations at each point (progress on stderr).

    The simulations run through :func:`validation.simulation.sweep.run` (serially for
    ``scheduler=None``, else on Dask); the numbers do not depend on ``scheduler``.
    """
    import pencils
    from validation import extrapolate
    from validation.simulation import sweep

    start = time.perf_counter()
    theories = []
    for act, psi_n, psi_p, m, t, lam in points:
        theories.append(pencils.build(act).errors(psi_n=psi_n, psi_p=psi_p, t=t, lam=lam, m=m, throw=False))
    print(f"[table] theory at {len(points)} points in {time.perf_counter() - start:.1f} s", file=sys.stderr,
          flush=True)
    sims = sweep.run(sweep_points(points, ds, seeds), scheduler, workers=workers, progress=True, stats=stats)
    rows = []
    it = iter(sims)
    for (act, psi_n, psi_p, m, t, lam), th in zip(points, theories):
        for surrogate in (False, True):
            runs = {d: next(it) for d in ds}
            ext = extrapolate(runs)
            for q in ("test", "train"):
                theory = float(getattr(th, q))
                rows.append(comparison_row(
                    dict(activation=act, psi_n=psi_n, psi_p=psi_p, m=m_label(m), t=t, lam=lam,
                         kind="surrogate" if surrogate else "true"), q, theory, th.converged, ext, runs))
    print(f"[table] done in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return rows


def markdown(rows, ds) -> str:
    head = ("| activation | ψ_n | ψ_p | m | t | λ | kind | error | theory | simulation d→∞ | ± | dev (σ) | "
            + " | ".join(f"rel. dev d={d}" for d in ds) + " |")
    lines = [head, "|" + "---|" * (12 + len(ds))]
    for r in rows:
        lines.append(
            f"| {r['activation']} | {r['psi_n']:g} | {r['psi_p']:g} | {r['m']} | {r['t']:g} | {r['lam']:g} | "
            f"{r['kind']} | {r['quantity']} | {r['theory']:.5f} | {r['extrapolated']:.5f} | "
            f"{r['uncertainty']:.5f} | {r['deviation_sigma']:+.2f} | "
            + " | ".join(f"{r[f'd{d}_rel_dev']:+.4f}" for d in ds) + " |")
    lines += ["", agreement(rows, lambda w: f"{w['activation']}, ψ_p={w['psi_p']:g}, m={w['m']}")]
    shrink = sum(abs(r[f"d{ds[-1]}_rel_dev"]) <= abs(r[f"d{ds[0]}_rel_dev"]) for r in rows)
    lines.append(f"The relative deviation at d={ds[-1]} is below the one at d={ds[0]} in {shrink} of {len(rows)} rows.")
    return "\n".join(lines) + "\n"


def _parser(prog: str = PROG):
    ap = Parser(prog=prog, description=plain(__doc__),
                formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d", type=int_in(4, MAX_D), nargs="+", default=None,
                    help="Monte Carlo dimensions, two or more distinct (default 100 200 400)")
    ap.add_argument("--seeds", type=int_in(2), default=None, help="seeds per point and d, >= 2 (default 8)")
    ap.add_argument("--quick", action="store_true", help="3 points, d = 50 100 200, 4 seeds")
    ap.add_argument("--out", type=Path, default=Path("results"), help="output folder (default ./results)")
    ap.add_argument("--scheduler", default=None, metavar="local|ADDRESS",
                    help="run the simulations on Dask: 'local' (a local cluster) or a scheduler address "
                         "such as tcp://127.0.0.1:8786 (default: serially in this process); same numbers")
    ap.add_argument("--workers", type=int_in(1, 256), default=None,
                    help="worker processes of --scheduler local (default: number of CPUs)")
    return ap


def parse_args(argv=None, prog: str = PROG) -> argparse.Namespace:
    """Parse and check every argument (exit status 2 with one line on stderr on error)."""
    from validation.simulation.sweep import check_scheduler

    ap = _parser(prog)
    args = ap.parse_args(argv)
    try:
        if args.quick and (args.d is not None or args.seeds is not None):
            raise ValueError("--quick sets d = 50 100 200 and 4 seeds; drop --d and --seeds or drop --quick")
        if args.quick:
            args.d, args.seeds = [50, 100, 200], 4
        args.d = [100, 200, 400] if args.d is None else args.d
        args.seeds = 8 if args.seeds is None else args.seeds
        args.d = sorted(distinct("--d", list(args.d), at_least=2))
        check_scheduler(args.scheduler)
        if args.workers is not None and args.scheduler != "local":
            raise ValueError("--workers only applies to --scheduler local")
        args.out = writable_folder(args.out)
    except ValueError as exc:
        ap.error(str(exc))
    return args


def main(argv=None, prog: str = PROG) -> int:
    """``dsm-curves table`` with ``argv`` (``prog`` names the command in messages and sidecars)."""
    from validation.simulation.sweep import connect

    args = parse_args(argv, prog)
    points = QUICK if args.quick else POINTS
    try:
        scheduler, close = args.scheduler, (lambda: None)
        if args.scheduler is not None:
            # Connect (or start the local cluster) before any work: an unreachable
            # scheduler fails here, in seconds.
            scheduler, close = connect(args.scheduler, args.workers)
        stats: list = []
        try:
            rows = evaluate(points, args.d, args.seeds, scheduler, stats=stats)
        finally:
            close()
        text = markdown(rows, args.d)
        (args.out / "validation_table.md").write_text(text)
        params = jsonable(dict(points=[dict(zip(("activation", "psi_n", "psi_p", "m", "t", "lam"), p))
                                       for p in points], d=args.d, seeds=args.seeds, quick=args.quick,
                               scheduler=args.scheduler, sweep=str(stats[0]) if stats else None))
        save_table(args.out / "validation_table.csv", rows, params, command_line(prog, argv))
    except (ValueError, OSError) as exc:
        return fail(prog, exc)
    print(text)
    if stats:
        print(f"[table] {stats[0]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
