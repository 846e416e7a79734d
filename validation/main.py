"""``dsm-curves``: the project's main job.

For one activation (default relu; no download needed) it draws

1. the learning curves: theory of :func:`pencils.build` for test and train error vs
   ``psi_p`` at ``m`` in {1, 4, inf}, with Monte Carlo points (true activation, finite
   ``d``, error bars over seeds) on top -> ``results/learning_curves.{png,csv}``;
2. the memorisation phase diagram over ``(psi_n, psi_p)``: the train error relative to
   its generalising value ``a_t^2`` at ``m = 1`` and ``m = 4``, and the test-error gap
   ``E_test(m = 1) - E_test(m = inf)`` -> ``results/phase_diagram.{png,csv}``.

Defaults: ``t = 0.5``, ``lam = 1e-3``, ``psi_n = 1``, Monte Carlo at ``d = 200`` with 3 seeds.
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import numpy as np

MC_PSI_P = (0.25, 0.5, 0.8, 1.25, 2.0, 3.0, 4.0, 6.0, 8.0)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="dsm-curves", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--activation", default="relu", help="activation name (default relu)")
    ap.add_argument("--psi-n", type=float, default=1.0, help="n/d of the learning curves (default 1)")
    ap.add_argument("--m", nargs="+", default=["1", "4", "inf"], help="noise draws per sample (ints or inf)")
    ap.add_argument("--t", type=float, default=0.5, help="diffusion time (default 0.5)")
    ap.add_argument("--lam", type=float, default=1e-3, help="ridge (default 1e-3)")
    ap.add_argument("--d", type=int, default=200, help="dimension of the Monte Carlo points (default 200)")
    ap.add_argument("--seeds", type=int, default=3, help="Monte Carlo seeds per point (default 3)")
    ap.add_argument("--no-mc", action="store_true", help="theory only")
    ap.add_argument("--grid", type=int, default=60, help="phase-diagram resolution per axis (default 60)")
    ap.add_argument("--out", type=Path, default=Path("results"), help="output folder (default ./results)")
    return ap


class _Clock:
    def __init__(self):
        self.start = time.perf_counter()

    def say(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.start:6.1f} s] {text}", flush=True)


def learning_curves(theory, args, ms, clock) -> list[dict]:
    from validation import simulate

    rows = []
    psi_p = np.geomspace(0.1, 10.0, 200) * args.psi_n
    for m in ms:
        e = theory.errors(psi_n=args.psi_n, psi_p=psi_p, t=args.t, lam=args.lam, m=m, throw=False)
        for k in range(len(psi_p)):
            rows.append(dict(source="theory", m=m, psi_p=psi_p[k], test=e.test[k], train=e.train[k],
                             test_se=0.0, train_se=0.0, converged=bool(e.converged[k])))
        clock.say(f"theory m={m}: {len(psi_p)} points, {int(e.converged.sum())} converged")
    if args.no_mc:
        return rows
    for m in ms:
        for q in MC_PSI_P:
            r = simulate(theory.activation, d=args.d, psi_n=args.psi_n, psi_p=q * args.psi_n, t=args.t,
                         lam=args.lam, m=m, seeds=args.seeds, progress=False)
            rows.append(dict(source=f"monte carlo d={args.d}", m=m, psi_p=q * args.psi_n, test=r.test,
                             train=r.train, test_se=r.test_se, train_se=r.train_se, converged=True))
        clock.say(f"Monte Carlo m={m}: {len(MC_PSI_P)} points at d={args.d}, {args.seeds} seeds")
    return rows


def phase_diagram(theory, args, clock) -> dict:
    psi_n = np.geomspace(0.1, 10.0, args.grid)
    psi_p = np.geomspace(0.1, 10.0, args.grid)
    Pn, Pp = np.meshgrid(psi_n, psi_p, indexing="xy")
    out = dict(psi_n=Pn, psi_p=Pp)
    for m in (1, 4, math.inf):
        e = theory.errors(psi_n=Pn, psi_p=Pp, t=args.t, lam=args.lam, m=m, throw=False)
        out[f"test_m{m}"], out[f"train_m{m}"] = e.test, e.train
        clock.say(f"phase diagram m={m}: {Pn.size} points, {int(e.converged.sum())} converged")
    return out


def _save_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _plot_curves(rows, ms, args, name, path: Path) -> None:
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    delta, a_sq = -math.expm1(-2 * args.t), math.exp(-2 * args.t)
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.4), sharex=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for m, colour in zip(ms, colours):
        label = f"m = {'∞' if math.isinf(m) else m}"
        th = [r for r in rows if r["m"] == m and r["source"] == "theory"]
        mc = [r for r in rows if r["m"] == m and r["source"] != "theory"]
        for ax, key in zip(axes, ("test", "train")):
            ax.plot([r["psi_p"] for r in th], [r[key] for r in th], color=colour, lw=1.6, label=f"theory {label}")
            if mc:
                ax.errorbar([r["psi_p"] for r in mc], [r[key] for r in mc], yerr=[r[key + "_se"] for r in mc],
                            fmt="o", ms=4, color=colour, capsize=2, label=f"simulation d={args.d}, {label}")
    for ax, key, ref, ref_label in ((axes[0], "test", delta, "zero score (Δ_t)"),
                                    (axes[1], "train", a_sq, "exact score (a_t²)")):
        ax.axvline(args.psi_n, color="grey", ls=":", lw=1)
        ax.axhline(ref, color="grey", ls="--", lw=1, label=ref_label)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_xlabel("ψ_p = p / d   (dotted: p = n)")
        ax.set_ylabel(f"{key} error")
        if key == "test":
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.suptitle(f"DSM with random features ({name}): ψ_n = {args.psi_n}, t = {args.t}, λ = {args.lam}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_phase(ph, args, name, path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm, TwoSlopeNorm

    a_sq = math.exp(-2 * args.t)
    panels = [(ph["train_m1"] / a_sq, "E_train / a_t²,  m = 1", TwoSlopeNorm(1.0, 0.0, 2.0), "RdBu"),
              (ph["train_m4"] / a_sq, "E_train / a_t²,  m = 4", TwoSlopeNorm(1.0, 0.0, 2.0), "RdBu"),
              (ph["test_m1"] - ph[f"test_m{math.inf}"], "E_test(m = 1) − E_test(m = ∞)", LogNorm(1e-3, 1e2), "magma")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    for ax, (z, title, norm, cmap) in zip(axes, panels):
        z = np.clip(z, norm.vmin if isinstance(norm, LogNorm) else None, None)
        mesh = ax.pcolormesh(ph["psi_n"], ph["psi_p"], z, norm=norm, cmap=cmap, shading="auto")
        fig.colorbar(mesh, ax=ax)
        ax.plot([0.1, 10], [0.1, 10], color="k", ls=":", lw=1, label="p = n")
        ax.plot([0.1, 2.5], [0.4, 10], color="k", ls="--", lw=0.8, label="p = 4n")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(0.1, 10)
        ax.set_ylim(0.1, 10)
        ax.set_xlabel("ψ_n = n / d")
        ax.set_ylabel("ψ_p = p / d")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Memorisation phase diagram ({name}, t = {args.t}, λ = {args.lam}); red: train error "
                 "below its generalising value a_t² (memorisation); white: flagged, not resolved in double "
                 "precision (tiny train errors; use precision=)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import pencils
    from validation import parse_m

    clock = _Clock()
    ms = [parse_m(m) for m in args.m]
    args.out.mkdir(parents=True, exist_ok=True)
    theory = pencils.build(args.activation)
    clock.say(f"{theory}: {theory.coefficients}")
    rows = learning_curves(theory, args, ms, clock)
    _save_csv(args.out / "learning_curves.csv", rows)
    _plot_curves(rows, ms, args, theory.activation.name, args.out / "learning_curves.png")
    ph = phase_diagram(theory, args, clock)
    flat = [dict(psi_n=a, psi_p=b, **{k: ph[k].reshape(-1)[i] for k in ph if k not in ("psi_n", "psi_p")})
            for i, (a, b) in enumerate(zip(ph["psi_n"].reshape(-1), ph["psi_p"].reshape(-1)))]
    _save_csv(args.out / "phase_diagram.csv", flat)
    _plot_phase(ph, args, theory.activation.name, args.out / "phase_diagram.png")
    clock.say(f"wrote {args.out}/learning_curves.png, phase_diagram.png and their CSV files")


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
