"""Theory against simulation: the validation table of the DSM learning curves.

``python -m validation.table`` evaluates, at each parameter point of :data:`POINTS`
(relu, tanh, erf; both sides of ``p = n``; ``m`` in {1, 2, 4, 16, inf}; ``t`` in
{0.1, 0.5, 1.5}; ``lam`` in {1e-3, 1e-2, 1e-1}):

* the theory of :func:`pencils.build` (``d -> inf``);
* Monte Carlo of the true activation and of its Gaussian-equivalent surrogate at each
  ``d`` of ``--d`` (default 100, 200, 400), and their extrapolation ``c0 + c1/d``;
* deviations ``(simulation - theory) / uncertainty`` at every ``d`` and for the
  extrapolation.

It writes ``results/validation_table.md`` and ``results/validation_table.csv``.  A run at
the defaults takes tens of minutes on two cores (``--quick`` runs 3 points at small ``d``).
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

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


def _m(m) -> str:
    return "∞" if math.isinf(m) else str(m)


def evaluate(points, ds, seeds: int) -> list[dict]:
    """Theory, simulations and extrapolations at each point (progress on stderr)."""
    import pencils
    from validation import extrapolate, simulate

    rows = []
    start = time.perf_counter()
    for k, (act, psi_n, psi_p, m, t, lam) in enumerate(points, start=1):
        th = pencils.build(act).errors(psi_n=psi_n, psi_p=psi_p, t=t, lam=lam, m=m)
        for surrogate in (False, True):
            runs = {d: simulate(act, d=d, psi_n=psi_n, psi_p=psi_p, t=t, lam=lam, m=m, seeds=seeds,
                                surrogate=surrogate, progress=False) for d in ds}
            ext = extrapolate(runs)
            for q in ("test", "train"):
                theory = float(getattr(th, q))
                row = dict(activation=act, psi_n=psi_n, psi_p=psi_p, m=_m(m), t=t, lam=lam,
                           kind="surrogate" if surrogate else "true", quantity=q, theory=theory,
                           extrapolated=getattr(ext, q), uncertainty=getattr(ext, q + "_se"))
                row["deviation_sigma"] = (row["extrapolated"] - theory) / row["uncertainty"]
                for d, r in runs.items():
                    row[f"d{d}"] = getattr(r, q)
                    row[f"d{d}_se"] = getattr(r, q + "_se")
                    row[f"d{d}_rel_dev"] = (getattr(r, q) - theory) / theory
                rows.append(row)
        print(f"[table {k}/{len(points)} {time.perf_counter() - start:6.0f} s] {act} psi_n={psi_n} "
              f"psi_p={psi_p} m={_m(m)} t={t} lam={lam}: " + ", ".join(
                  f"{r['kind']} {r['quantity']} {r['deviation_sigma']:+.1f}σ" for r in rows[-4:]),
              file=sys.stderr, flush=True)
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
    worst = max(rows, key=lambda r: abs(r["deviation_sigma"]))
    within = sum(abs(r["deviation_sigma"]) <= 3 for r in rows)
    lines.append("")
    lines.append(f"{within} of {len(rows)} comparisons within 3 standard uncertainties; largest deviation "
                 f"{worst['deviation_sigma']:+.2f}σ ({worst['activation']}, ψ_p={worst['psi_p']:g}, m={worst['m']}, "
                 f"{worst['kind']} {worst['quantity']}).")
    shrink = sum(abs(r[f"d{ds[-1]}_rel_dev"]) <= abs(r[f"d{ds[0]}_rel_dev"]) for r in rows)
    lines.append(f"The relative deviation at d={ds[-1]} is below the one at d={ds[0]} in {shrink} of {len(rows)} rows.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m validation.table", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d", type=int, nargs="+", default=[100, 200, 400])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="3 points, d = 50 100 200, 4 seeds")
    ap.add_argument("--out", type=Path, default=Path("results"))
    args = ap.parse_args(argv)
    points, ds, seeds = (QUICK, [50, 100, 200], 4) if args.quick else (POINTS, args.d, args.seeds)
    rows = evaluate(points, ds, seeds)
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(rows, ds)
    (args.out / "validation_table.md").write_text(text)
    with (args.out / "validation_table.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
