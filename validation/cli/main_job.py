"""``dsm-curves`` without a subcommand: the project's main job.

For one activation (default relu; no download needed) it draws

1. the learning curves: theory of :func:`pencils.build` for test and train error vs
   ``psi_p`` at each ``--m`` (default 1, 4, inf), with Monte Carlo points (true
   activation at ``d``, error bars over seeds) and their ``d -> inf`` extrapolation
   from ``d/2`` and ``d`` (open diamonds) on top -> ``results/learning_curves.{png,csv,json}``;
   the train error is on a log axis, so the memorisation branch (train error far below
   its generalising value ``a_t^2``) is visible;
2. the memorisation phase diagram over ``(psi_n, psi_p)``: the train error relative to
   its generalising value ``a_t^2`` at each ``--m``, and the test-error gap
   ``E_test(m) - E_test(m = inf)`` of the smallest finite ``m``
   -> ``results/phase_diagram.{png,csv,json}``.

Every CSV has a ``converged`` column and a JSON sidecar (parameters, package version,
command line).  Every argument is checked before any work starts; a bad call exits
with status 2 and one line on stderr.

Defaults: ``t = 0.5``, ``lam = 1e-3``, ``psi_n = 1``, Monte Carlo at ``d = 200`` (and
``d = 100`` for the extrapolation) with 3 seeds.

Other subcommands: ``dsm-curves SUBCOMMAND --help`` (listed by ``dsm-curves --help``).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from validation.simulation.problem import m_label

from .helpers import (MAX_D, Parser, activation_help, activation_name, command_line, distinct, fail, int_in,
                      jsonable, m_value, plain, real_in, save_table, writable_folder)

MC_PSI_P = (0.25, 0.5, 0.8, 1.25, 2.0, 3.0, 4.0, 6.0, 8.0)
#: Largest phase-diagram resolution accepted (the diagram costs ``grid**2`` solves per ``m``).
MAX_GRID = 400



def _parser(epilog: str | None = None) -> Parser:
    ap = Parser(prog="dsm-curves", description=plain(__doc__), epilog=epilog,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--activation", type=activation_name, default="relu", metavar="NAME",
                    help=activation_help() + " (default relu)")
    ap.add_argument("--psi-n", type=real_in(0.0, open_lo=True), default=1.0,
                    help="n/d of the learning curves (default 1)")
    ap.add_argument("--m", type=m_value, nargs="+", default=[1, 4, math.inf],
                    help="noise draws per sample: integers >= 1 or inf (default 1 4 inf)")
    ap.add_argument("--t", type=real_in(0.0, open_lo=True), default=0.5, help="diffusion time > 0 (default 0.5)")
    ap.add_argument("--lam", type=real_in(0.0, open_lo=True), default=1e-3, help="ridge > 0 (default 1e-3)")
    ap.add_argument("--d", type=int_in(4, MAX_D), default=200,
                    help=f"dimension of the Monte Carlo points, 4 to {MAX_D} (default 200; d/2 too, for d -> inf)")
    ap.add_argument("--seeds", type=int_in(2), default=3, help="Monte Carlo seeds per point, >= 2 (default 3)")
    ap.add_argument("--no-mc", action="store_true", help="theory only")
    ap.add_argument("--grid", type=int_in(2, MAX_GRID), default=60,
                    help=f"phase-diagram resolution per axis, 2 to {MAX_GRID} (default 60)")
    ap.add_argument("--out", type=Path, default=Path("results"), help="output folder (default ./results)")
    return ap


def parse_args(argv: list[str] | None = None, epilog: str | None = None) -> argparse.Namespace:
    """Parse and check every argument of ``dsm-curves`` (exit status 2, one line, on error);
    ``epilog`` closes ``--help`` (the list of subcommands)."""
    ap = _parser(epilog)
    args = ap.parse_args(argv)
    try:
        args.m = distinct("--m", list(args.m))
        args.out = writable_folder(args.out)
    except ValueError as exc:
        ap.error(str(exc))
    return args


class _Clock:
    def __init__(self):
        self.start = time.perf_counter()

    def say(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.start:6.1f} s] {text}", flush=True)


def _m_text(m: float, tex: bool = False) -> str:
    return m_label(m, r"\infty" if tex else "inf")


def learning_curves(theory, args, ms, clock) -> list[dict]:
    """Theory rows (200 ``psi_p`` per ``m``) and Monte Carlo rows (``d/2``, ``d`` and ``d -> inf``)."""
    from validation import extrapolate, simulate

    rows = []
    psi_p = np.geomspace(0.1, 10.0, 200) * args.psi_n
    for m in ms:
        e = theory.errors(psi_n=args.psi_n, psi_p=psi_p, t=args.t, lam=args.lam, m=m, throw=False)
        for k in range(len(psi_p)):
            rows.append(dict(source="theory", m=m, d="inf", psi_p=psi_p[k], test=e.test[k], train=e.train[k],
                             test_se=0.0, train_se=0.0, converged=bool(e.converged[k])))
        clock.say(f"theory m={_m_text(m)}: {len(psi_p)} points, {int(e.converged.sum())} converged")
    if args.no_mc:
        return rows
    ds = (args.d // 2, args.d)
    for m in ms:
        for q in MC_PSI_P:
            runs = {d: simulate(theory.activation, d=d, psi_n=args.psi_n, psi_p=q * args.psi_n, t=args.t,
                                lam=args.lam, m=m, seeds=args.seeds, progress=False) for d in ds}
            for d, r in runs.items():
                rows.append(dict(source="monte carlo", m=m, d=d, psi_p=q * args.psi_n, test=r.test, train=r.train,
                                 test_se=r.test_se, train_se=r.train_se, converged=True))
            ext = extrapolate(runs)
            ok = all(math.isfinite(v) for v in (ext.test, ext.test_se, ext.train, ext.train_se))
            rows.append(dict(source="monte carlo extrapolated", m=m, d="inf", psi_p=q * args.psi_n, test=ext.test,
                             train=ext.train, test_se=ext.test_se, train_se=ext.train_se, converged=ok))
        clock.say(f"Monte Carlo m={_m_text(m)}: {len(MC_PSI_P)} points at d={ds[0]} and {ds[1]}, {args.seeds} seeds")
    return rows


def phase_diagram(theory, args, ms, clock) -> dict:
    """Theory over a ``grid x grid`` log grid of ``(psi_n, psi_p)`` for each ``m`` of ``ms`` and ``inf``."""
    psi_n = np.geomspace(0.1, 10.0, args.grid)
    psi_p = np.geomspace(0.1, 10.0, args.grid)
    Pn, Pp = np.meshgrid(psi_n, psi_p, indexing="xy")
    out = dict(psi_n=Pn, psi_p=Pp)
    for m in _phase_ms(ms):
        e = theory.errors(psi_n=Pn, psi_p=Pp, t=args.t, lam=args.lam, m=m, throw=False)
        key = _m_text(m)
        out[f"test_m{key}"], out[f"train_m{key}"], out[f"converged_m{key}"] = e.test, e.train, e.converged
        out[f"refined_m{key}"] = e.refined
        out[f"refinedmp_m{key}"] = e.refined_mpmath
        clock.say(f"phase diagram m={key}: {Pn.size} points, {int(e.converged.sum())} converged "
                  f"({int(e.refined.sum())} refined: {int(e.refined.sum() - e.refined_mpmath.sum())} in "
                  f"double-double, {int(e.refined_mpmath.sum())} in 30-digit mpmath)")
    return out


def _phase_ms(ms) -> list[float]:
    """The ``m`` of the phase diagram: those asked for, plus ``inf`` when a finite one needs its gap."""
    out = list(ms)
    if any(math.isfinite(m) for m in ms) and math.inf not in out:
        out.append(math.inf)
    return out


def _plot_curves(rows, ms, args, name, path: Path) -> None:
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    delta, a_sq = -math.expm1(-2 * args.t), math.exp(-2 * args.t)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.6), sharex=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for m, colour in zip(ms, colours):
        label = f"$m = {_m_text(m, tex=True)}$"
        th = [r for r in rows if r["m"] == m and r["source"] == "theory"]
        mc = [r for r in rows if r["m"] == m and r["source"] == "monte carlo" and r["d"] == args.d]
        ext = [r for r in rows if r["m"] == m and r["source"] == "monte carlo extrapolated" and r["converged"]]
        for ax, key in zip(axes, ("test", "train")):
            # Unconverged theory points are NaN: the line breaks there instead of lying.
            ax.plot([r["psi_p"] for r in th], [r[key] if r["converged"] else np.nan for r in th],
                    color=colour, lw=1.6, label=f"theory {label}")
            if mc:
                ax.errorbar([r["psi_p"] for r in mc], [r[key] for r in mc], yerr=[r[key + "_se"] for r in mc],
                            fmt="o", ms=4, color=colour, capsize=2, label=f"simulation $d = {args.d}$, {label}")
            if ext:
                ax.errorbar([r["psi_p"] * 1.06 for r in ext], [r[key] for r in ext],
                            yerr=[r[key + "_se"] for r in ext], fmt="D", ms=4.5, mfc="none", color=colour,
                            capsize=2, lw=0.8, label=rf"simulation $d \to \infty$, {label}")
    for ax, key, ref, ref_label in ((axes[0], "test", delta, r"zero score ($\Delta_t$)"),
                                    (axes[1], "train", a_sq, r"generalising value ($a_t^2$)")):
        ax.axvline(args.psi_n, color="grey", ls=":", lw=1)
        ax.axhline(ref, color="grey", ls="--", lw=1, label=ref_label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_xlabel(r"$\psi_p = p/d$   (dotted: $p = n$)")
        ax.set_ylabel(r"test error $E_{\mathrm{test}}$" if key == "test" else r"train error $E_{\mathrm{train}}$")
    handles, labels = axes[0].get_legend_handles_labels()
    h1, l1 = axes[1].get_legend_handles_labels()
    handles.append(h1[l1.index(r"generalising value ($a_t^2$)")])
    labels.append(r"generalising value ($a_t^2$)")
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=7.5, frameon=False)
    axes[1].set_title("log axis: the memorisation branch (train error $\\ll a_t^2$) is visible", fontsize=9)
    fig.suptitle(rf"DSM with random features ({name}): $\psi_n = {args.psi_n:g}$, $t = {args.t:g}$, "
                 rf"$\lambda = {args.lam:g}$; error bars: $\pm 1$ s.e. over {args.seeds} seeds; "
                 rf"diamonds: fit $c_0 + c_1/d$ over $d = {args.d // 2}, {args.d}$", fontsize=10)
    fig.tight_layout(rect=(0, 0.04 * (1 + len(labels) // 5), 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_phase(ph, args, ms, name, path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm, TwoSlopeNorm

    a_sq = math.exp(-2 * args.t)
    panels = []
    for m in ms:
        key = _m_text(m)
        ratio = np.where(ph[f"converged_m{key}"], ph[f"train_m{key}"] / a_sq, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.log10(ratio)
        z[~np.isfinite(z)] = np.nan
        lo, hi = _range(z)
        lo, hi = min(lo, -0.05), max(hi, 0.05)
        panels.append((z, rf"$\log_{{10}}(E_{{\mathrm{{train}}}} / a_t^2)$,  $m = {_m_text(m, tex=True)}$",
                       TwoSlopeNorm(0.0, lo, hi), "RdBu", m))
    finite = [m for m in ms if math.isfinite(m)]
    if finite:
        m0, key = min(finite), _m_text(min(finite))
        ok = ph[f"converged_m{key}"] & ph["converged_minf"]
        gap = np.where(ok, ph[f"test_m{key}"] - ph["test_minf"], np.nan)
        positive = np.where(gap > 0, gap, np.nan)
        lo, hi = _range(positive, log=True)
        panels.append((positive, rf"$E_{{\mathrm{{test}}}}(m = {key}) - E_{{\mathrm{{test}}}}(m = \infty)$",
                       LogNorm(lo, hi), "magma", m0))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.9 * len(panels), 4.6), squeeze=False)
    for ax, (z, title, norm, cmap_name, m) in zip(axes[0], panels):
        cmap = plt.get_cmap(cmap_name).with_extremes(bad="0.75")
        mesh = ax.pcolormesh(ph["psi_n"], ph["psi_p"], np.ma.masked_invalid(z), norm=norm, cmap=cmap,
                             shading="auto")
        fig.colorbar(mesh, ax=ax)
        phase_axes(ax, m)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
    refined = sum(int(np.sum(v)) for k, v in ph.items() if k.startswith("refined_m"))
    refined_mp = sum(int(np.sum(v)) for k, v in ph.items() if k.startswith("refinedmp_m"))
    fig.suptitle(rf"Memorisation phase diagram ({name}, $t = {args.t:g}$, $\lambda = {args.lam:g}$)" "\n"
                 r"red: train error below its generalising value $a_t^2$ (memorisation); "
                 f"{refined} points that double precision cannot resolve were re-solved "
                 f"({refined - refined_mp} in double-double, {refined_mp} in 30-digit mpmath); "
                 "grey: unresolved", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def phase_axes(ax, m) -> None:
    """The axes of a memorisation phase diagram over ``(psi_n, psi_p)`` in ``[0.1, 10]^2``:
    log scales, labels, the line ``p = n`` and, for finite ``m > 1``, ``p = mn``."""
    ax.plot([0.1, 10], [0.1, 10], color="k", ls=":", lw=1, label="$p = n$")
    if math.isfinite(m) and m > 1:  # p = nm: as many features as noisy training inputs
        ax.plot([0.1, 10 / m], [0.1 * m, 10], color="k", ls="--", lw=0.8, label=f"$p = {int(m)}n$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(0.1, 10)
    ax.set_ylim(0.1, 10)
    ax.set_xlabel(r"$\psi_n = n/d$")
    ax.set_ylabel(r"$\psi_p = p/d$")


def _range(z, log: bool = False) -> tuple[float, float]:
    """Colour limits fitted to the finite data (0.5 and 99.5 percentiles)."""
    v = z[np.isfinite(z)]
    if v.size == 0:
        return (1e-3, 1.0) if log else (-1.0, 1.0)
    lo, hi = np.percentile(v, [0.5, 99.5])
    if log:
        lo = max(lo, hi * 1e-12)
        if hi <= lo:
            lo, hi = lo / 2, hi * 2
    elif hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return float(lo), float(hi)


def _parameters(args) -> dict:
    return jsonable(dict(activation=args.activation, psi_n=args.psi_n, m=list(args.m), t=args.t, lam=args.lam,
                         d=args.d, seeds=args.seeds, no_mc=args.no_mc, grid=args.grid, out=str(args.out)))


def run(args: argparse.Namespace, command: str = "dsm-curves") -> None:
    """Run the main job on checked arguments (see :func:`parse_args`)."""
    import matplotlib

    matplotlib.use("Agg")
    import pencils

    clock = _Clock()
    ms = list(args.m)
    theory = pencils.build(args.activation)
    clock.say(f"{theory}: {theory.coefficients}")
    rows = learning_curves(theory, args, ms, clock)
    params = _parameters(args)
    save_table(args.out / "learning_curves.csv", [{**r, "m": _m_text(r["m"])} for r in rows], params, command)
    _plot_curves(rows, ms, args, theory.activation.name, args.out / "learning_curves.png")
    ph = phase_diagram(theory, args, ms, clock)
    phase_ms = _phase_ms(ms)
    flat = []
    for i, (a, b) in enumerate(zip(ph["psi_n"].reshape(-1), ph["psi_p"].reshape(-1))):
        row = dict(psi_n=a, psi_p=b)
        for m in phase_ms:
            key = _m_text(m)
            row[f"test_m{key}"] = ph[f"test_m{key}"].reshape(-1)[i]
            row[f"train_m{key}"] = ph[f"train_m{key}"].reshape(-1)[i]
            row[f"converged_m{key}"] = bool(ph[f"converged_m{key}"].reshape(-1)[i])
        row["converged"] = all(row[f"converged_m{_m_text(m)}"] for m in phase_ms)
        flat.append(row)
    save_table(args.out / "phase_diagram.csv", flat, params, command)
    _plot_phase(ph, args, ms, theory.activation.name, args.out / "phase_diagram.png")
    clock.say(f"wrote {args.out}/learning_curves.png, phase_diagram.png and their CSV and JSON files")


def main(argv: list[str] | None = None, *, epilog: str | None = None) -> int:
    """The main job (``dsm-curves`` without a subcommand, see :func:`validation.cli.main`)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv, epilog)
    try:
        run(args, command_line("dsm-curves", argv))
    except (ValueError, OSError) as exc:
        return fail("dsm-curves", exc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
