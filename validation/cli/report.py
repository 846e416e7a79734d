"""Monte Carlo tables: simulations at several ``d`` and their ``d -> inf`` extrapolation.

``dsm-curves report`` (alias ``python -m validation.report``) prints, for each parameter point, the true-activation
and surrogate test/train errors at every ``d`` and the extrapolated limits (weighted
fit ``c0 + c1/d``, see :mod:`validation.simulation.extrapolate`), as a Markdown table.  The
default preset is the foundation check of issue 2: relu, ``psi_n = 2``,
``psi_p in {1, 4}``, ``t = 0.5``, ``lam = 1e-2``, ``m in {1, inf}``, ``d in {100, 200, 400}``.
"""
from __future__ import annotations

import argparse
import itertools
import math
import sys
import time

from validation.simulation.problem import m_label

from .helpers import (MAX_D, Parser, activation_help, activation_name, distinct, fail, int_in, m_value, plain,
                      real_in)

PROG = "dsm-curves report"


def _fmt(value: float, se: float) -> str:
    return f"{value:.5f} ± {se:.5f}"


def run(activation: str, ds, psi_n, psi_ps, t, lam, ms, seeds: int, out=sys.stdout, scheduler=None,
        stats: list | None = None) -> list[dict]:
    """Simulate every ``(psi_p, m)`` x (true, surrogate) x ``d``, print the table to ``out``.

    The simulations run through :func:`validation.simulation.sweep.run` (serially for
    ``scheduler=None``, else on Dask, with the same numbers).
    """
    from validation import extrapolate
    from validation.simulation import sweep

    start = time.perf_counter()
    combos = [(psi_p, m, surrogate) for psi_p, m in itertools.product(psi_ps, ms) for surrogate in (False, True)]
    points = [sweep.Point(activation, d=d, psi_n=psi_n, psi_p=psi_p, t=t, lam=lam, m=m,
                          seeds=tuple(range(seeds)), surrogate=surrogate)
              for psi_p, m, surrogate in combos for d in ds]
    sims = iter(sweep.run(points, scheduler, stats=stats))
    rows = []
    print("| point | kind | quantity | " + " | ".join(f"d={d}" for d in ds) + " | d→∞ (fit c0+c1/d) |", file=out)
    print("|" + "---|" * (len(ds) + 4), file=out)
    for psi_p, m, surrogate in combos:
        results = {d: next(sims) for d in ds}
        ext = extrapolate(results)
        kind = "surrogate" if surrogate else activation
        point = f"ψ_p={psi_p}, m={m_label(m)}"
        for q in ("test", "train"):
            cells = [_fmt(getattr(r, q), getattr(r, q + "_se")) for r in results.values()]
            print(f"| {point} | {kind} | {q} | " + " | ".join(cells)
                  + f" | {_fmt(getattr(ext, q), getattr(ext, q + '_se'))} |", file=out, flush=True)
        rows.append(dict(psi_p=psi_p, m=m, surrogate=surrogate, results=results, extrapolation=ext))
    print(f"[report] done in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return rows


def _parser(prog: str = PROG):
    ap = Parser(prog=prog, description=plain(__doc__),
                formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--activation", type=activation_name, default="relu", metavar="NAME",
                    help=activation_help() + " (default relu)")
    ap.add_argument("--d", type=int_in(4, MAX_D), nargs="+", default=[100, 200, 400],
                    help="dimensions, two or more distinct (default 100 200 400)")
    ap.add_argument("--psi-n", type=real_in(0.0, open_lo=True), default=2.0, help="n/d (default 2)")
    ap.add_argument("--psi-p", type=real_in(0.0, open_lo=True), nargs="+", default=[1.0, 4.0],
                    help="p/d values (default 1 4)")
    ap.add_argument("--t", type=real_in(0.0, open_lo=True), default=0.5, help="diffusion time > 0 (default 0.5)")
    ap.add_argument("--lam", type=real_in(0.0, open_lo=False), default=1e-2, help="ridge >= 0 (default 1e-2)")
    ap.add_argument("--m", type=m_value, nargs="+", default=[1, math.inf],
                    help="noise draws per sample: integers >= 1 or inf (default 1 inf)")
    ap.add_argument("--seeds", type=int_in(2), default=8, help="seeds per point and d, >= 2 (default 8)")
    ap.add_argument("--scheduler", default=None, metavar="local|ADDRESS",
                    help="run on Dask: 'local' or a scheduler address (default: serially); same numbers")
    return ap


def main(argv=None, prog: str = PROG) -> int:
    """``dsm-curves report`` with ``argv`` (``prog`` names the command in messages)."""
    from validation.simulation.sweep import check_scheduler, connect

    ap = _parser(prog)
    args = ap.parse_args(argv)
    try:
        args.d = sorted(distinct("--d", list(args.d), at_least=2))
        distinct("--psi-p", list(args.psi_p))
        distinct("--m", list(args.m))
        check_scheduler(args.scheduler)
    except ValueError as exc:
        ap.error(str(exc))
    try:
        scheduler, close = args.scheduler, (lambda: None)
        if args.scheduler is not None:
            scheduler, close = connect(args.scheduler)
        try:
            run(args.activation, args.d, args.psi_n, args.psi_p, args.t, args.lam, args.m, args.seeds,
                scheduler=scheduler)
        finally:
            close()
    except (ValueError, OSError) as exc:
        return fail(prog, exc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
