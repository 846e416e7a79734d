"""Theory against simulation on structured data: the validation table of issue 8.

``dsm-curves structured [table] [--quick] [--out DIR] [--mnist PATH]`` (alias
``python -m validation.structured_table``) evaluates, at each point of :data:`POINTS` (data on a subspace, two-level spectra, a bounded power law and,
with ``--mnist``, MNIST's empirical spectrum; relu, tanh, erf; ``m`` in {1, 4, inf}; both sides
of ``p = n`` and of ``p = nm``):

* the theory ``pencils.build(act, covariance=nu).errors(...)`` (``d -> inf``), with ``nu`` the
  spectral measure of :func:`~validation.simulation.spectra.measure`;
* Monte Carlo (:func:`validation.simulate` with ``covariance=`` the ``d`` eigenvalues of
  :func:`~validation.simulation.spectra.eigenvalues`) of the true activation and of its Gaussian-equivalent surrogate at
  ``d = 100, 200, 400, 800`` (MNIST: ``196, 392, 784``), and the weighted fit
  ``c0 + c1/d`` (:func:`validation.extrapolate`);
* the deviation ``(c0 - theory) / se(c0)`` in standard uncertainties of the fit, and the
  relative deviation at each ``d``.

Spectra: :mod:`validation.simulation.spectra` (data on a subspace, two-level, a bounded power
law, MNIST's empirical spectrum).

``--timing`` prints instead the seconds per 200-point curve of :func:`timing`.

Writes ``DIR/structured_table.md`` and ``DIR/structured_table.csv`` with its JSON sidecar
(``--out DIR``, default ``results``).  The default run (6 seeds) takes about 4 CPU minutes
(13 minutes of wall-clock time on the shared two-core machine); ``--quick`` runs 3 points at
``d = 50, 100, 200`` with 4 seeds (a few seconds).

``dsm-curves structured figures`` (alias ``python -m validation.structured_figures``) draws
the figures of the structured-data theory instead (:data:`FIGURES_DOC`).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from validation.simulation.problem import m_label
from validation.simulation.spectra import ALPHA, POWER_LAW_ATOMS, U0, eigenvalues, measure, power_law, tau

from .helpers import (Parser, activation_name, command_line, data_path, fail, int_in, jsonable, plain, save_table,
                      table_or_figures, write_csv, writable_folder)
from .main_job import phase_axes
from .table import agreement, comparison_row

PROG = "dsm-curves structured"

#: (activation, spectrum, psi_n, psi_p, m, t, lam)
POINTS = (
    ("relu", "subspace κ=0.25 s=4", 1.0, 0.5, 1, 0.5, 1e-2),
    ("relu", "subspace κ=0.5 s=2", 0.5, 3.0, 4, 0.5, 1e-2),
    ("tanh", "subspace κ=0.25 s=1", 0.5, 1.0, 4, 0.5, 1e-2),
    ("erf", "subspace κ=0.5 s=3", 1.0, 3.0, math.inf, 1.5, 1e-2),
    ("relu", "two-level 0.2/1.8", 2.0, 4.0, 4, 0.5, 1e-2),
    ("tanh", "two-level 0.1/4.6", 1.0, 0.5, math.inf, 0.5, 1e-3),
    ("erf", "two-level 0.5/3", 0.5, 3.0, 4, 0.1, 1e-2),
    ("relu", "power law", 1.0, 2.0, math.inf, 0.5, 1e-2),
    ("tanh", "power law", 1.0, 2.0, 1, 0.5, 1e-2),
    ("erf", "power law", 0.5, 1.5, 4, 0.5, 1e-3),
    ("relu", "mnist", 1.0, 0.5, 1, 0.5, 1e-2),
    ("erf", "mnist", 0.5, 1.0, 4, 0.5, 1e-2),
)
QUICK = (POINTS[0], POINTS[5], POINTS[9])
DS = (100, 200, 400, 800)
MNIST_DS = (196, 392, 784)

def evaluate(points, ds, seeds: int, mnist=None, mnist_ds=MNIST_DS, log=sys.stderr) -> list[dict]:
    """Theory, simulations (true and surrogate) and ``1/d`` extrapolations at each point."""
    import pencils
    from validation import extrapolate, simulate

    rows = []
    start = time.perf_counter()
    for act, spec, psi_n, psi_p, m, t, lam in points:
        t0 = time.perf_counter()
        th = pencils.build(act, covariance=measure(spec, mnist)).errors(
            psi_n=psi_n, psi_p=psi_p, t=t, lam=lam, m=m, throw=False)
        dims = tuple(mnist_ds) if spec == "mnist" else tuple(ds)
        for surrogate in (False, True):
            runs = {d: simulate(act, d=d, psi_n=psi_n, psi_p=psi_p, t=t, lam=lam, m=m, seeds=seeds,
                                surrogate=surrogate, covariance=eigenvalues(spec, d, mnist), progress=False)
                    for d in dims}
            ext = extrapolate(runs)
            for q in ("test", "train"):
                theory = float(getattr(th, q))
                rows.append(comparison_row(
                    dict(activation=act, spectrum=spec, tau=tau(spec, mnist), psi_n=psi_n, psi_p=psi_p, m=m_label(m),
                         t=t, lam=lam, kind="surrogate" if surrogate else "true"),
                    q, theory, th.converged, ext, runs, numbered=True))
        if log is not None:
            print(f"[structured] {act} {spec} psi_n={psi_n:g} psi_p={psi_p:g} m={m_label(m)}: "
                  f"{time.perf_counter() - t0:.1f} s", file=log, flush=True)
    if log is not None:
        print(f"[structured] done in {time.perf_counter() - start:.0f} s", file=log, flush=True)
    return rows


def markdown(rows) -> str:
    head = ("| act. | spectrum | τ | ψ_n | ψ_p | m | t | λ | kind | error | theory | sim. d→∞ ± σ | dev (σ) | "
            "rel. dev (d) at each d |")
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        rel = ", ".join(f"{r[f'd{i}_rel_dev']:+.4f} ({r[f'd{i}']})" for i in range(1, 9) if f"d{i}" in r)
        lines.append(
            f"| {r['activation']} | {r['spectrum']} | {r['tau']:.3g} | {r['psi_n']:g} | {r['psi_p']:g} | {r['m']} | "
            f"{r['t']:g} | {r['lam']:g} | {r['kind']} | {r['quantity']} | {r['theory']:.6g} | "
            f"{r['extrapolated']:.6g} ± {r['uncertainty']:.2g} | {r['deviation_sigma']:+.2f} | {rel} |")
    lines += ["", agreement(rows, lambda w: f"{w['activation']}, {w['spectrum']}, ψ_p={w['psi_p']:g}, m={w['m']}")]
    unconverged = [r for r in rows if not r["converged"]]
    if unconverged:
        lines.append(f"{len(unconverged)} rows have an unconverged theory or a non-finite fit.")
    return "\n".join(lines) + "\n"


def timing(mnist=None, activation="relu", repeats: int = 2, log=sys.stderr) -> list[dict]:
    """Seconds per 200-point learning curve (``psi_p`` in ``[0.1, 10]``, ``psi_n = 1``, ``t = 0.5``,
    ``lam = 1e-2``) with 2, 100 and 784 atoms, ``m = 1, 4, inf``, after a first (compiling) call.

    Atoms: the two-level ``0.2/1.8`` spectrum, the power law with 100 atoms, MNIST's 784
    eigenvalues (the power law with 784 atoms without ``mnist``).  Each curve is timed with the
    default settings (points double precision cannot resolve are re-solved in double-double,
    else in mpmath; their number is reported) and with ``refine=False`` (the double-precision engine alone); the
    best of ``repeats`` calls, wall-clock and CPU seconds of this process (on a shared
    machine the CPU time is the fairer number).
    """
    import pencils

    spectra = [("two-level 0.2/1.8", measure("two-level 0.2/1.8")), ("power law, 100 atoms", power_law(100)),
               ("mnist" if mnist is not None else "power law, 784 atoms",
                np.asarray(mnist, dtype=float) if mnist is not None else power_law(784))]
    psi_p = np.geomspace(0.1, 10.0, 200)
    rows = []
    for name, cov in spectra:
        th = pencils.build(activation, covariance=cov)
        atoms = len(cov[0]) if isinstance(cov, tuple) else len(cov)
        for m in (1, 4, math.inf):
            kw = dict(psi_n=1.0, psi_p=psi_p, t=0.5, lam=1e-2, m=m, throw=False)
            t0 = time.perf_counter()
            th.errors(**kw)  # first call: derivation, compilation, caches
            row = dict(spectrum=name, atoms=atoms, m=m_label(m), first_s=time.perf_counter() - t0)
            k = 0
            for label, extra in (("default", {}), ("no_refine", dict(refine=False))):
                best, best_cpu = math.inf, math.inf
                for _ in range(repeats):
                    # a fresh grid each call (moved by 1e-7 relative): no cached point is reused
                    k += 1
                    kw["psi_p"] = psi_p * (1 + 1e-7 * k)
                    t0, c0 = time.perf_counter(), time.process_time()
                    e = th.errors(**kw, **extra)
                    best = min(best, time.perf_counter() - t0)
                    best_cpu = min(best_cpu, time.process_time() - c0)
                row[f"{label}_s"] = best
                row[f"{label}_cpu_s"] = best_cpu
                row[f"{label}_converged"] = int(np.sum(e.converged))
                if label == "default":
                    row["refined"] = int(np.sum(e.refined)) if e.refined is not None else 0
            rows.append(row)
            if log is not None:
                print(f"[timing] {row}", file=log, flush=True)
    return rows


def _parser(prog: str = PROG):
    ap = Parser(prog=prog, description=plain(__doc__),
                formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 points, d = 50 100 200, 4 seeds")
    ap.add_argument("--seeds", type=int_in(2, 1000), default=None, help="seeds per point and d (default 6)")
    ap.add_argument("--out", type=Path, default=Path("results"), help="output folder (default ./results)")
    ap.add_argument("--timing", action="store_true",
                    help="instead of the table: seconds per 200-point curve with 2, 100 and 784 atoms")
    ap.add_argument("--mnist", type=Path, default=None,
                    help="MNIST IDX file (or folder) whose pool spectrum gives the 'mnist' points "
                         "(without it those points are skipped)")
    return ap


def main(argv=None, prog: str = PROG) -> int:
    """``dsm-curves structured [table] ...`` (the table) or ``dsm-curves structured figures ...``."""
    return table_or_figures(argv, prog, table_main, figures_main)


def table_main(argv=None, prog: str = PROG) -> int:
    """The structured-data validation table (or, with ``--timing``, the timings)."""
    ap = _parser(prog)
    args = ap.parse_args(argv)
    try:
        if args.quick and args.seeds is not None:
            raise ValueError("--quick sets 4 seeds; drop --seeds or drop --quick")
        if args.mnist is not None:
            data_path(args.mnist, "--mnist")
        args.out = writable_folder(args.out)
    except ValueError as exc:
        ap.error(str(exc))
    try:
        mnist = None
        if args.mnist is not None:
            from validation import load_images, spectrum

            mnist = spectrum(load_images(args.mnist))
        if args.timing:
            rows = timing(mnist)
            lines = ["| spectrum | atoms | m | first call (s) | s per curve (CPU s) | refined points | "
                     "s per curve, refine=False (CPU s) | converged (refine=False) |", "|---|---|---|---|---|---|---|---|"]
            lines += [f"| {r['spectrum']} | {r['atoms']} | {r['m']} | {r['first_s']:.2f} | {r['default_s']:.3f} "
                      f"({r['default_cpu_s']:.3f}) | {r['refined']} | {r['no_refine_s']:.3f} ({r['no_refine_cpu_s']:.3f}) | "
                      f"{r['no_refine_converged']}/200 |" for r in rows]
            print("\n".join(lines))
            return 0
        points = QUICK if args.quick else POINTS
        if mnist is None:
            points = tuple(p for p in points if p[1] != "mnist")
        ds, seeds = ((50, 100, 200), 4) if args.quick else (DS, 6 if args.seeds is None else args.seeds)
        rows = evaluate(points, ds, seeds, mnist)
        text = markdown(rows)
        (args.out / "structured_table.md").write_text(text)
        params = jsonable(dict(points=[dict(zip(("activation", "spectrum", "psi_n", "psi_p", "m", "t", "lam"), p))
                                       for p in points], d=list(ds), mnist_d=list(MNIST_DS), seeds=seeds,
                               quick=args.quick, mnist=str(args.mnist) if args.mnist else None,
                               power_law=dict(alpha=ALPHA, u0=U0, theory_atoms=POWER_LAW_ATOMS)))
        save_table(args.out / "structured_table.csv", rows, params, command_line(prog, argv))
    except (ValueError, OSError) as exc:
        return fail(prog, exc)
    print(text)
    return 0




# ----------------------------------------------------------------------------------
# Figures

FIGURES_DOC = """Figures of the structured-data theory (issue 8): learning curves and the memorisation phase diagram.

``dsm-curves structured figures [--out DIR] [--activation relu] [--grid 25]`` writes

* ``DIR/structured_curves.png``: test and train error against ``psi_p`` (200 points, log axes)
  for spectra at the same ``tau = 1`` -- isotropic, two-level ``0.8 delta_0.1 + 0.2 delta_4.6``,
  data on a subspace ``kappa = 0.25`` (``s = 4``) and the bounded power law of
  :func:`validation.simulation.spectra.power_law` (:data:`FIGURE_ATOMS` atoms) -- for ``m = 1`` (top) and ``m = 4`` (bottom),
  with the lines ``p = n`` and ``p = nm``;
* ``DIR/structured_phase.png``: ``log10(E_train / a_t^2)`` over a log grid of ``(psi_n, psi_p)``
  in ``[0.1, 10]^2`` (``--grid`` points a side) for the power-law spectrum, ``m = 1, 4, inf``; the solid black contour is
  ``E_train = a_t^2`` of the power law, the dashed green one that of isotropic data;
* ``DIR/structured_curves.csv`` / ``structured_phase.npz``: the numbers behind them.

Theory only (``pencils.build(act, covariance=...)``); points the solver flags as unconverged are
drawn as gaps (curves) or grey (phase diagram); ``t = 0.5``, ``lam = 1e-2``, ``psi_n = 1``
(curves).  A run takes about 6 s with a warm cache (curves 2 s, phase diagram 4 s; about 80 s
when the structured systems must first be derived and compiled); the points of the
memorisation regime that double precision cannot resolve are re-solved in double-double
(``Errors.refined``).
"""

#: atoms of the power-law measure in the figures (the table uses 16384; at 256 atoms the
#: midpoint rule moves the errors by less than the line width, see docs/structured.md)
FIGURE_ATOMS = 256

#: curve label -> covariance argument of pencils.build (all tau = 1)
CURVE_SPECTRA = {
    "isotropic": None,
    "two-level 0.1 (80%) / 4.6 (20%)": measure("two-level 0.1/4.6"),
    "subspace κ = 0.25 (s = 4)": measure("subspace κ=0.25 s=4"),
    "power law s(u) ∝ (u + 1/50)⁻¹": power_law(FIGURE_ATOMS),
}


def curves(activation="relu", psi_n=1.0, t=0.5, lam=1e-2, ms=(1, 4), points=200) -> list[dict]:
    """Theory rows ``(spectrum, m, psi_p, test, train, converged)`` over ``psi_p`` in ``[0.1, 10] psi_n``."""
    import pencils

    psi_p = np.geomspace(0.1, 10.0, points) * psi_n
    rows = []
    for label, cov in CURVE_SPECTRA.items():
        th = pencils.build(activation, covariance=cov)
        for m in ms:
            e = th.errors(psi_n=psi_n, psi_p=psi_p, t=t, lam=lam, m=m, throw=False)
            for k in range(points):
                rows.append(dict(spectrum=label, m=m, psi_p=float(psi_p[k]), test=float(e.test[k]),
                                 train=float(e.train[k]), converged=bool(e.converged[k])))
    return rows


def plot_curves(rows, path: Path, *, activation, psi_n, t, lam) -> None:
    import matplotlib.pyplot as plt

    ms = sorted({r["m"] for r in rows})
    fig, axes = plt.subplots(len(ms), 2, figsize=(12, 4.3 * len(ms)), sharex=True, squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    a_sq, delta = math.exp(-2 * t), -math.expm1(-2 * t)
    for i, m in enumerate(ms):
        for label, colour in zip(CURVE_SPECTRA, colours):
            sel = [r for r in rows if r["m"] == m and r["spectrum"] == label]
            x = [r["psi_p"] for r in sel]
            for j, key in enumerate(("test", "train")):
                axes[i, j].plot(x, [r[key] if r["converged"] else np.nan for r in sel], color=colour, lw=1.6,
                                label=label)
        for j, key in enumerate(("test", "train")):
            ax = axes[i, j]
            ax.axvline(psi_n, color="grey", ls=":", lw=1, label="$p = n$")
            if m > 1:
                ax.axvline(psi_n * m, color="grey", ls="--", lw=1, label=f"$p = {m}n$")
            ax.axhline(delta if key == "test" else a_sq, color="k", lw=0.7, alpha=0.5,
                       label=r"$\Delta_t$ (zero score)" if key == "test" else r"$a_t^2$ (generalising value)")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_ylabel(("test error $E_{\\mathrm{test}}$" if key == "test" else
                           "train error $E_{\\mathrm{train}}$") + f",  $m = {m}$")
            ax.legend(fontsize=7.5, loc="best")
        for ax in axes[-1]:
            ax.set_xlabel(r"$\psi_p = p/d$")
    fig.suptitle(rf"Structured data, same $\tau = \mathrm{{tr}}\,\Sigma/d = 1$ ({activation}, $\psi_n = {psi_n:g}$, "
                 rf"$t = {t:g}$, $\lambda = {lam:g}$; theory, $d \to \infty$)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def phase(activation="relu", t=0.5, lam=1e-2, ms=(1, 4, math.inf), grid=25) -> dict:
    """``E_train`` over a ``grid x grid`` log grid of ``(psi_n, psi_p)``: power law and isotropic."""
    import pencils

    g = np.geomspace(0.1, 10.0, grid)
    Pn, Pp = np.meshgrid(g, g, indexing="xy")
    out = dict(psi_n=Pn, psi_p=Pp)
    for name, cov in (("power", power_law(FIGURE_ATOMS)), ("iso", None)):
        th = pencils.build(activation, covariance=cov)
        for m in ms:
            e = th.errors(psi_n=Pn, psi_p=Pp, t=t, lam=lam, m=m, throw=False)
            key = f"{name}_m{m_label(m, 'inf')}"
            out[f"train_{key}"], out[f"test_{key}"], out[f"converged_{key}"] = e.train, e.test, e.converged
    return out


def plot_phase(ph, path: Path, *, activation, t, lam, ms=(1, 4, math.inf)) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    a_sq = math.exp(-2 * t)
    fig, axes = plt.subplots(1, len(ms), figsize=(5.2 * len(ms), 4.8), squeeze=False)
    for ax, m in zip(axes[0], ms):
        key = f"m{m_label(m, 'inf')}"
        z = {}
        for name in ("power", "iso"):
            ok = ph[f"converged_{name}_{key}"]
            with np.errstate(divide="ignore", invalid="ignore"):
                zz = np.log10(np.where(ok, ph[f"train_{name}_{key}"] / a_sq, np.nan))
            zz[~np.isfinite(zz)] = np.nan
            z[name] = zz
        v = z["power"][np.isfinite(z["power"])]
        lo = min(float(np.percentile(v, 0.5)), -0.05) if v.size else -1.0
        hi = max(float(np.percentile(v, 99.5)), 0.05) if v.size else 1.0
        cmap = plt.get_cmap("RdBu").with_extremes(bad="0.75")
        mesh = ax.pcolormesh(ph["psi_n"], ph["psi_p"], np.ma.masked_invalid(z["power"]),
                             norm=TwoSlopeNorm(0.0, lo, hi), cmap=cmap, shading="auto")
        fig.colorbar(mesh, ax=ax)
        for name, style in (("power", dict(colors="k", linestyles="solid")),
                            ("iso", dict(colors="tab:green", linestyles="dashed"))):
            zz = z[name]
            if np.isfinite(zz).any() and np.nanmin(zz) < 0 < np.nanmax(zz):
                ax.contour(ph["psi_n"], ph["psi_p"], zz, levels=[0.0], linewidths=1.2, **style)
        phase_axes(ax, m)
        mtex = m_label(m, r"\infty")
        ax.set_title(rf"$\log_{{10}}(E_{{\mathrm{{train}}}}/a_t^2)$, power law, $m = {mtex}$",
                     fontsize=10)
    fig.suptitle(rf"Memorisation phase diagram, power-law spectrum ({activation}, $t = {t:g}$, $\lambda = {lam:g}$)"
                 "\nred: train error below $a_t^2$ (memorisation); black: $E_{\\mathrm{train}} = a_t^2$ (power law), "
                 "green dashed: same for isotropic data; dotted $p = n$, dashed $p = mn$; grey: unresolved",
                 fontsize=9.5)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figures_main(argv=None, prog: str = f"{PROG} figures") -> int:
    """The figures of the structured-data theory (:data:`FIGURES_DOC`)."""
    ap = Parser(prog=prog, description=FIGURES_DOC.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("results"), help="output folder (default ./results)")
    ap.add_argument("--activation", type=activation_name, default="relu", help="activation (default relu)")
    ap.add_argument("--grid", type=int_in(5, 201), default=25, help="phase-diagram grid size (default 25)")
    args = ap.parse_args(argv)
    try:
        args.out = writable_folder(args.out)
    except ValueError as exc:
        ap.error(str(exc))
    try:
        t0 = time.perf_counter()
        par = dict(activation=args.activation, psi_n=1.0, t=0.5, lam=1e-2)
        rows = curves(**par)
        write_csv(args.out / "structured_curves.csv", rows)
        plot_curves(rows, args.out / "structured_curves.png", **par)
        bad = sum(not r["converged"] for r in rows)
        print(f"[figures] curves: {len(rows)} points, {bad} unconverged, {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)
        t0 = time.perf_counter()
        ph = phase(args.activation, t=0.5, lam=1e-2, grid=args.grid)
        np.savez(args.out / "structured_phase.npz", **ph)
        plot_phase(ph, args.out / "structured_phase.png", activation=args.activation, t=0.5, lam=1e-2)
        bad = sum(int((~ph[k]).sum()) for k in ph if k.startswith("converged"))
        print(f"[figures] phase diagram: {args.grid}x{args.grid} grid, {bad} unconverged points, "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    except (ValueError, OSError) as exc:
        return fail(prog, exc)
    return 0


