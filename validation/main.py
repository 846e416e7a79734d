"""``dsm-curves``: the project's main job.

Default run (no download, under two minutes on two cores): relu features, ``psi_n = 1``,
``t = 0.5``, ``lam = 1e-3``, a sweep of ``psi_p`` across the interpolation point
``p = n`` at ``d = 200`` for ``m = 1`` and ``m = inf``; Monte Carlo test and train
errors with standard errors go to ``results/learning_curves.csv`` and a plot to
``results/learning_curves.png``.
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_PSI_P = (0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 4.0)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="dsm-curves", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--activation", default="relu", help="activation name (default relu)")
    ap.add_argument("--d", type=int, default=200, help="input dimension (default 200)")
    ap.add_argument("--psi-n", type=float, default=1.0, help="n/d (default 1)")
    ap.add_argument("--psi-p", type=float, nargs="+", default=list(DEFAULT_PSI_P), help="p/d values")
    ap.add_argument("--m", nargs="+", default=["1", "inf"], help="noise draws per sample (ints or inf)")
    ap.add_argument("--t", type=float, default=0.5, help="diffusion time (default 0.5)")
    ap.add_argument("--lam", type=float, default=1e-3, help="ridge (default 1e-3)")
    ap.add_argument("--seeds", type=int, default=3, help="Monte Carlo seeds per point (default 3)")
    ap.add_argument("--out", type=Path, default=Path("results"), help="output folder (default ./results)")
    return ap


def run(args: argparse.Namespace) -> Path:
    from validation import parse_m, simulate

    ms = [parse_m(m) for m in args.m]
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    start = time.perf_counter()
    total = len(ms) * len(args.psi_p)
    for k, (m, psi_p) in enumerate(((m, q) for m in ms for q in args.psi_p), start=1):
        r = simulate(args.activation, d=args.d, psi_n=args.psi_n, psi_p=psi_p, t=args.t,
                     lam=args.lam, m=m, seeds=args.seeds, progress=False)
        rows.append(dict(activation=r.activation, d=args.d, n=r.problem.n, p=r.problem.p,
                         psi_n=args.psi_n, psi_p=psi_p, m=m, t=args.t, lam=args.lam,
                         test=r.test, test_se=r.test_se, train=r.train, train_se=r.train_se,
                         dsm_test_loss=r.dsm_test_loss, seeds=len(r.seeds)))
        print(f"[{k}/{total} {time.perf_counter() - start:5.1f} s] m={m} psi_p={psi_p}: "
              f"test={r.test:.4f}±{r.test_se:.4f} train={r.train:.4f}±{r.train_se:.4f}", flush=True)
    csv_path = args.out / "learning_curves.csv"
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    png_path = args.out / "learning_curves.png"
    _plot(rows, ms, args, png_path)
    print(f"wrote {csv_path} and {png_path} in {time.perf_counter() - start:.1f} s")
    return png_path


def _plot(rows, ms, args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    delta = -math.expm1(-2 * args.t)
    a_sq = math.exp(-2 * args.t)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for m, colour in zip(ms, plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        sel = [r for r in rows if r["m"] == m]
        x = np.array([r["psi_p"] for r in sel])
        for ax, key in zip(axes, ("test", "train")):
            y = np.array([r[key] for r in sel])
            se = np.array([r[key + "_se"] for r in sel])
            ax.errorbar(x, y, yerr=se, marker="o", ms=4, capsize=2, color=colour,
                        label=f"m = {'∞' if math.isinf(m) else m}")
    for ax, key, ref, ref_label in ((axes[0], "test", delta, "B = 0 (Δ_t)"),
                                    (axes[1], "train", a_sq, "exact score (a_t²)")):
        ax.axvline(args.psi_n, color="grey", ls=":", lw=1, label="p = n")
        ax.axhline(ref, color="grey", ls="--", lw=1, label=ref_label)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks([q for q in (0.1, 0.25, 0.5, 1, 2, 4, 8) if min(args.psi_p) <= q <= max(args.psi_p)])
        ax.set_xlabel("ψ_p = p / d")
        ax.set_ylabel(f"{key} error")
        if key == "test":
            ax.set_yscale("log")
        ax.legend(fontsize=8)
    fig.suptitle(f"DSM with random features ({rows[0]['activation']}): Monte Carlo, d = {args.d}, "
                 f"ψ_n = {args.psi_n}, t = {args.t}, λ = {args.lam}, {args.seeds} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        run(args)
    except ValueError as exc:
        print(f"dsm-curves: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
