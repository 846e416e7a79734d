"""Figures of the structured-data theory (issue 8): learning curves and the memorisation phase diagram.

``python -m validation.structured_figures [--out DIR] [--activation relu] [--grid 25]`` writes

* ``DIR/structured_curves.png``: test and train error against ``psi_p`` (200 points, log axes)
  for spectra at the same ``tau = 1`` -- isotropic, two-level ``0.8 delta_0.1 + 0.2 delta_4.6``,
  data on a subspace ``kappa = 0.25`` (``s = 4``) and the bounded power law of
  :func:`validation.structured_table.power_law` (:data:`FIGURE_ATOMS` atoms) -- for ``m = 1`` (top) and ``m = 4`` (bottom),
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
from __future__ import annotations

import csv
import math
import sys
import time
from pathlib import Path

import numpy as np

from validation.main import phase_axes
from validation.structured_table import measure, power_law

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
            key = f"{name}_m{'inf' if math.isinf(m) else m}"
            out[f"train_{key}"], out[f"test_{key}"], out[f"converged_{key}"] = e.train, e.test, e.converged
    return out


def plot_phase(ph, path: Path, *, activation, t, lam, ms=(1, 4, math.inf)) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    a_sq = math.exp(-2 * t)
    fig, axes = plt.subplots(1, len(ms), figsize=(5.2 * len(ms), 4.8), squeeze=False)
    for ax, m in zip(axes[0], ms):
        key = f"m{'inf' if math.isinf(m) else m}"
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
        mtex = r"\infty" if math.isinf(m) else str(m)
        ax.set_title(rf"$\log_{{10}}(E_{{\mathrm{{train}}}}/a_t^2)$, power law, $m = {mtex}$",
                     fontsize=10)
    fig.suptitle(rf"Memorisation phase diagram, power-law spectrum ({activation}, $t = {t:g}$, $\lambda = {lam:g}$)"
                 "\nred: train error below $a_t^2$ (memorisation); black: $E_{\\mathrm{train}} = a_t^2$ (power law), "
                 "green dashed: same for isotropic data; dotted $p = n$, dashed $p = mn$; grey: unresolved",
                 fontsize=9.5)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    from validation.main import Parser, activation_name, fail, int_in, writable_folder

    ap = Parser(prog="python -m validation.structured_figures", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("results"), help="output folder (default ./results)")
    ap.add_argument("--activation", type=activation_name, default="relu", help="activation (default relu)")
    ap.add_argument("--grid", type=int_in(5, 201), default=25, help="phase-diagram grid size (default 25)")
    args = ap.parse_args(argv)
    try:
        args.out = writable_folder(args.out)
    except ValueError as exc:
        ap.error(str(exc))
    prog = "python -m validation.structured_figures"
    try:
        t0 = time.perf_counter()
        par = dict(activation=args.activation, psi_n=1.0, t=0.5, lam=1e-2)
        rows = curves(**par)
        with (args.out / "structured_curves.csv").open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
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


if __name__ == "__main__":
    raise SystemExit(main())
