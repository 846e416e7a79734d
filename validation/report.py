"""Monte Carlo tables: simulations at several ``d`` and their ``d -> inf`` extrapolation.

``python -m validation.report`` prints, for each parameter point, the true-activation
and surrogate test/train errors at every ``d`` and the extrapolated limits (weighted
fit ``c0 + c1/d``, see :mod:`validation.extrapolate`), as a Markdown table.  The
default preset is the foundation check of issue 2: relu, ``psi_n = 2``,
``psi_p in {1, 4}``, ``t = 0.5``, ``lam = 1e-2``, ``m in {1, inf}``, ``d in {100, 200, 400}``.
"""
from __future__ import annotations

import argparse
import itertools
import math
import sys
import time


def _fmt(value: float, se: float) -> str:
    return f"{value:.5f} ± {se:.5f}"


def run(activation: str, ds, psi_n, psi_ps, t, lam, ms, seeds: int, out=sys.stdout) -> list[dict]:
    from validation import extrapolate, simulate

    rows = []
    start = time.perf_counter()
    print("| point | kind | quantity | " + " | ".join(f"d={d}" for d in ds) + " | d→∞ (fit c0+c1/d) |", file=out)
    print("|" + "---|" * (len(ds) + 4), file=out)
    for psi_p, m in itertools.product(psi_ps, ms):
        for surrogate in (False, True):
            results = {d: simulate(activation, d=d, psi_n=psi_n, psi_p=psi_p, t=t, lam=lam, m=m,
                                   seeds=seeds, surrogate=surrogate, progress=False) for d in ds}
            ext = extrapolate(results)
            kind = "surrogate" if surrogate else activation
            point = f"ψ_p={psi_p}, m={'∞' if math.isinf(m) else m}"
            for q in ("test", "train"):
                cells = [_fmt(getattr(r, q), getattr(r, q + "_se")) for r in results.values()]
                print(f"| {point} | {kind} | {q} | " + " | ".join(cells)
                      + f" | {_fmt(getattr(ext, q), getattr(ext, q + '_se'))} |", file=out, flush=True)
            rows.append(dict(psi_p=psi_p, m=m, surrogate=surrogate, results=results, extrapolation=ext))
        print(f"[report] ψ_p={psi_p} m={m} done at {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m validation.report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--activation", default="relu")
    ap.add_argument("--d", type=int, nargs="+", default=[100, 200, 400])
    ap.add_argument("--psi-n", type=float, default=2.0)
    ap.add_argument("--psi-p", type=float, nargs="+", default=[1.0, 4.0])
    ap.add_argument("--t", type=float, default=0.5)
    ap.add_argument("--lam", type=float, default=1e-2)
    ap.add_argument("--m", nargs="+", default=["1", "inf"])
    ap.add_argument("--seeds", type=int, default=8)
    args = ap.parse_args(argv)
    from validation import parse_m

    run(args.activation, args.d, args.psi_n, args.psi_p, args.t, args.lam,
        [parse_m(m) for m in args.m], args.seeds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
