"""Theory against simulation along gradient flow: the validation table of the training-time curves.

``dsm-curves time [table]`` (alias ``python -m validation.time_table``) evaluates, at each point of :data:`POINTS` (relu and tanh;
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

``dsm-curves time figures`` (alias ``python -m validation.time_figures``) draws the figures and
findings instead (:data:`FIGURES_DOC`).
"""
from __future__ import annotations

import json
import math
import time

import numpy as np

from validation.simulation.problem import m_label

from .helpers import MAX_D, Parser, distinct, int_in, table_or_figures, writable_folder, write_csv

PROG = "dsm-curves time"

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
        row = dict(activation=act, psi_n=psi_n, psi_p=psi_p, m=m_label(m), t=t, lam=lam, T=T,
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


def main(argv=None, prog: str = PROG) -> int:
    """``dsm-curves time [table] ...`` (the table) or ``dsm-curves time figures ...``."""
    return table_or_figures(argv, prog, table_main, figures_main)


def table_main(argv=None, prog: str = PROG) -> int:
    """The training-time validation table."""
    ap = Parser(prog=prog, description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results", help="output folder (default results)")
    ap.add_argument("--quick", action="store_true", help="3 points at d = 60, 120")
    ap.add_argument("--d", type=int_in(4, MAX_D), nargs="+", default=None, help="dimensions (default 100 200 400)")
    args = ap.parse_args(argv)
    try:  # every argument before the simulations
        ds = tuple(distinct("--d", list(args.d or ((60, 120) if args.quick else (100, 200, 400))), at_least=2))
        out = writable_folder(args.out)
    except ValueError as exc:
        ap.error(str(exc))
    seeds = {d: SEEDS.get(d, 6) for d in ds}
    start = time.perf_counter()
    rows = run(QUICK if args.quick else POINTS, ds, seeds, progress=True)
    text = markdown(rows, ds)
    (out / "time_table.md").write_text(text + "\n")
    write_csv(out / "time_table.csv", rows)
    worst = max(max(abs(r["test_dev_fit"]), abs(r["train_dev_fit"])) for r in rows)
    print(f"\n{len(rows)} points, worst |deviation of the fit| {worst:.2f} sigma, "
          f"{time.perf_counter() - start:.0f} s; written to {out}/time_table.md, .csv")
    return 0


# ----------------------------------------------------------------------------------
# Figures and findings

FIGURES_DOC = """Figures and findings of the training-time curves (:mod:`derivations.training_time`).

``dsm-curves time figures [--out DIR] [--quick]`` writes, under ``DIR`` (default
``results``):

* ``time_curves.png``: test and train error vs ``T`` for several ``psi_n`` at fixed ``psi_p``
  (``m = 1`` and ``m = 4``), generalisation (argmin E_test) and memorisation
  (E_train = a_t^2 / 2) times marked;
* ``time_memorisation.png``: memorisation time vs ``psi_n`` (log-log) for ``m = 1, 4, inf`` with
  the fitted power law ``T_mem ~ psi_n^k``, and the generalisation times (``m = 1, 4``), at
  ``psi_p = 512`` (``p >> n m``: the regime where both timescales exist);
* ``time_phase.png``: the ``(psi_p, T)`` phase diagram of memorisation, ``E_train / a_t^2``
  on a 50 x 50 grid for ``m = 1`` and ``m = 4``, with the level ``1/2``;
* ``time_findings.json``: the numbers behind them (fitted exponents, timescales, timings).

Relu, ``t = 0.5``, ``lam = 0`` (pure gradient flow: the interpolating limit at ``T = inf``).
"""



def _fit_power(x, y):
    """Least-squares slope and intercept of ``log y`` vs ``log x`` (finite points only)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(y) & (y > 0)
    if ok.sum() < 2:
        return math.nan, math.nan
    k, c = np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)
    return float(k), float(c)


def figures_main(argv=None, prog: str = f"{PROG} figures") -> int:
    """The training-time figures and findings (:data:`FIGURES_DOC`)."""
    ap = Parser(prog=prog, description=FIGURES_DOC.splitlines()[0])
    ap.add_argument("--out", default="results")
    ap.add_argument("--quick", action="store_true", help="coarser grids (a smoke run)")
    args = ap.parse_args(argv)
    try:
        out = writable_folder(args.out)
    except ValueError as exc:
        ap.error(str(exc))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import pencils
    from derivations import training_time as tt

    th = pencils.build("relu")
    t, lam, tol = 0.5, 0.0, 1e-6
    a_sq = math.exp(-2 * t)
    findings: dict = dict(activation="relu", t=t, lam=lam, tol=tol)
    quick = args.quick

    # 1. curves vs T for several n ------------------------------------------------------------
    psi_p = 512.0
    psi_ns = [1.0, 16.0] if quick else [1.0, 4.0, 16.0]
    T = np.logspace(-4, 2, 60 if quick else 200)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    curves = {}
    for ax, m in zip(axes, (1, 4)):
        for k, pn in enumerate(psi_ns):
            start = time.perf_counter()
            e = tt.errors_at_time(th, pn, psi_p, t, lam, m, T, tol=tol)
            sec = time.perf_counter() - start
            col = f"C{k}"
            ax.semilogx(T, e.test, color=col, label=f"test, ψn={pn:g}")
            ax.semilogx(T, e.train, color=col, ls="--", label=f"train, ψn={pn:g}")
            i = int(np.nanargmin(e.test))
            below = np.nonzero(e.train < 0.5 * a_sq)[0]
            t_gen = float(T[i]) if 0 < i < len(T) - 1 else math.inf
            t_mem = float(T[below[0]]) if len(below) else math.inf
            ax.axvline(t_mem, color=col, ls=":", lw=0.8)
            ax.plot([T[i]], [e.test[i]], "o", color=col)
            curves[f"m={m},psi_n={pn:g}"] = dict(t_gen_grid=t_gen, test_min=float(e.test[i]), t_mem_grid=t_mem,
                                                 seconds=round(sec, 2), all_converged=bool(e.converged.all()),
                                                 max_quad_err=float(np.nanmax(np.maximum(e.test_error, e.train_error))))
        ax.axhline(a_sq, color="k", lw=0.6)
        ax.set_title(f"relu, ψp={psi_p:g}, m={m}, t={t}, λ=0")
        ax.set_xlabel("training time T")
    axes[0].set_ylabel("error")
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "time_curves.png", dpi=130)
    plt.close(fig)
    findings["curves_psi_p"] = psi_p
    findings["curves"] = curves

    # 2. memorisation and generalisation times vs n ------------------------------------------------
    psi_ns = np.geomspace(1.0, 32.0, 3 if quick else 6)
    times = np.logspace(-5, 3, 81 if quick else 161)
    fig, ax = plt.subplots(figsize=(6, 4.4))
    mem = {}
    for k, m in enumerate((1, 4, "inf")):
        start = time.perf_counter()
        mt = tt.memorisation_time(th, psi_ns, psi_p, t, lam, m, times=times, tol=tol)
        sec = time.perf_counter() - start
        slope, icpt = _fit_power(psi_ns, mt.time)
        tail, _ = _fit_power(psi_ns[psi_ns >= 4], mt.time[psi_ns >= 4])
        entry = dict(psi_n=psi_ns.tolist(), t_mem=[float(x) for x in mt.time], exponent=slope,
                     exponent_psi_n_ge_4=tail, prefactor=math.exp(icpt) if math.isfinite(icpt) else math.nan,
                     seconds_mem=round(sec, 2), converged=bool(mt.converged.all()))
        if np.isfinite(mt.time).any():
            ax.loglog(psi_ns, mt.time, "o-", color=f"C{k}", label=f"T_mem, m={m}: ∝ ψn^{slope:.2f}")
        if m != "inf":
            start = time.perf_counter()
            gt = tt.generalisation_time(th, psi_ns, psi_p, t, lam, m, times=times, tol=tol)
            gslope, _ = _fit_power(psi_ns[psi_ns >= 4], gt.time[psi_ns >= 4])
            entry.update(t_gen=[float(x) for x in gt.time], test_min=[float(x) for x in gt.value],
                         gen_interior=[bool(x) for x in gt.interior], gen_exponent_psi_n_ge_4=gslope,
                         seconds_gen=round(time.perf_counter() - start, 2))
            ax.loglog(psi_ns, gt.time, "s--", color=f"C{k}", label=f"T_gen, m={m}")
        mem[str(m)] = entry
    ax.set_xlabel("ψn = n/d")
    ax.set_ylabel("training time")
    ax.set_title(f"relu, ψp={psi_p:g}, t={t}, λ=0: T_mem (E_train = a²/2), T_gen (min E_test)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "time_memorisation.png", dpi=130)
    plt.close(fig)
    findings["timescales_psi_p"] = psi_p
    findings["timescales_vs_n"] = mem

    # 3. (psi_p, T) phase diagram of memorisation ---------------------------------------------------
    n_grid = 20 if quick else 50
    psi_ps = np.geomspace(0.25, 16.0, n_grid)
    Tg = np.logspace(-2, 4, n_grid)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    phase = {}
    for ax, m in zip(axes, (1, 4)):
        start = time.perf_counter()
        e = tt.errors_at_time(th, 1.0, psi_ps[:, None], t, lam, m, Tg[None, :], tol=tol, quantities=("train",))
        sec = time.perf_counter() - start
        ratio = e.train / a_sq
        pc = ax.pcolormesh(psi_ps, Tg, ratio.T, shading="nearest", cmap="viridis", vmin=0, vmax=1.0 / a_sq)
        ax.contour(psi_ps, Tg, np.nan_to_num(ratio.T, nan=1.0), levels=[0.5], colors="w")
        ax.axvline(m * 1.0, color="r", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("ψp = p/d  (dashed: p = n m)")
        ax.set_title(f"E_train / a² (white: 1/2), ψn=1, m={m}")
        phase[str(m)] = dict(seconds=round(sec, 2), unresolved=int((~e.converged).sum()), points=int(e.converged.size))
    axes[0].set_ylabel("training time T")
    fig.colorbar(pc, ax=axes, shrink=0.9)
    fig.savefig(out / "time_phase.png", dpi=130)
    plt.close(fig)
    findings["phase_diagram"] = dict(grid=f"{n_grid}x{n_grid}", psi_n=1.0, **phase)

    (out / "time_findings.json").write_text(json.dumps(findings, indent=1))
    print(json.dumps(findings, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
