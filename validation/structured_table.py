"""Theory against simulation on structured data: the validation table of issue 8.

``python -m validation.structured_table [--quick] [--out DIR] [--mnist PATH]`` evaluates, at
each point of :data:`POINTS` (data on a subspace, two-level spectra, a bounded power law and,
with ``--mnist``, MNIST's empirical spectrum; relu, tanh, erf; ``m`` in {1, 4, inf}; both sides
of ``p = n`` and of ``p = nm``):

* the theory ``pencils.build(act, covariance=nu).errors(...)`` (``d -> inf``), with ``nu`` the
  spectral measure of :func:`measure`;
* Monte Carlo (:func:`validation.simulate` with ``covariance=`` the ``d`` eigenvalues of
  :func:`eigenvalues`) of the true activation and of its Gaussian-equivalent surrogate at
  ``d = 100, 200, 400, 800`` (MNIST: ``196, 392, 784``), and the weighted fit
  ``c0 + c1/d`` (:func:`validation.extrapolate`);
* the deviation ``(c0 - theory) / se(c0)`` in standard uncertainties of the fit, and the
  relative deviation at each ``d``.

Spectra (MODEL.md "Structured data"; ``tau = E_nu[s] = tr Sigma / d``):

* ``subspace(kappa, s)``: ``nu = kappa delta_s + (1 - kappa) delta_0`` (data on a
  ``D = kappa d``-dimensional subspace with per-direction variance ``s``; ``tau = kappa s``).
  At dimension ``d``: ``round(kappa d)`` eigenvalues ``s``, the rest 0.
* ``two-level(s1, s2, w)``: ``nu = w delta_s1 + (1 - w) delta_s2``; at ``d``: ``round(w d)``
  eigenvalues ``s1``, the rest ``s2``.
* ``power law``: the quantile function ``s(u) = C (u + u0)^(-alpha)``, ``u in (0, 1]``,
  ``alpha = 1``, ``u0 = 1/50`` (a ``k^-1`` law with an offset ``k0 = d/50``, bounded:
  ``s_max / s_min = 51``), ``C`` such that ``tau = 1``.  At ``d``: the ``d`` midpoint
  quantiles ``s((k - 1/2)/d)`` rescaled to ``tau = 1``; the theory uses the same rule with
  ``4096`` atoms (midpoint-rule error ``O(1/N^2)``; ``4096`` and ``8192`` atoms agree to
  better than ``1e-7`` on every point of the table).
* ``mnist``: the ``784`` eigenvalues of the preprocessed pool covariance of the file given by
  ``--mnist`` (:func:`validation.load_images`, :func:`validation.spectrum`; ``tau = 1``).  The
  theory uses all ``784`` atoms.  The simulation at ``d = 784`` uses them as they are, at
  ``d = 392`` and ``196`` the means of consecutive pairs and quadruples of the sorted
  eigenvalues (the quantile function averaged over ``d`` equal bins: same ``tau``, converging
  to ``nu`` as ``d`` grows).

``--timing`` prints instead the seconds per 200-point curve of :func:`timing`.

Writes ``DIR/structured_table.md`` and ``DIR/structured_table.csv`` with its JSON sidecar
(``--out DIR``, default ``results``).  The default run (6 seeds) takes about 4 CPU minutes
(13 minutes of wall-clock time on the shared two-core machine); ``--quick`` runs 3 points at
``d = 50, 100, 200`` with 4 seeds (a few seconds).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from validation.table import _m, agreement, comparison_row

#: power-law shape: s(u) = C (u + U0)^(-ALPHA) on u in (0, 1]
ALPHA, U0 = 1.0, 1.0 / 50
#: atoms of the power-law measure given to the theory
POWER_LAW_ATOMS = 16384

#: spectrum name -> (kind, parameters)
SPECTRA = {
    "subspace κ=0.25 s=4": ("subspace", (0.25, 4.0)),      # tau = 1
    "subspace κ=0.5 s=2": ("subspace", (0.5, 2.0)),        # tau = 1
    "subspace κ=0.25 s=1": ("subspace", (0.25, 1.0)),      # tau = 0.25
    "subspace κ=0.5 s=3": ("subspace", (0.5, 3.0)),        # tau = 1.5
    "two-level 0.2/1.8": ("two-level", (0.2, 1.8, 0.5)),   # tau = 1
    "two-level 0.1/4.6": ("two-level", (0.1, 4.6, 0.8)),   # tau = 1
    "two-level 0.5/3": ("two-level", (0.5, 3.0, 0.5)),     # tau = 1.75
    "power law": ("power", ()),                             # tau = 1
    "mnist": ("mnist", ()),                                 # tau = 1
}

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


def power_law(n: int) -> np.ndarray:
    """``n`` midpoint quantiles ``s((k - 1/2)/n)`` of ``s(u) = C (u + u0)^(-alpha)``, mean 1 (descending).

    >>> s = power_law(100)
    >>> round(float(s.mean()), 12), bool(np.all(np.diff(s) < 0)), round(float(s[0] / s[-1]), 1)
    (1.0, True, 40.6)
    """
    if int(n) < 1:
        raise ValueError(f"the number of atoms must be >= 1, got {n}")
    u = (np.arange(int(n)) + 0.5) / int(n)
    s = (u + U0) ** (-ALPHA)
    return s / s.mean()


def coarse_grain(eig, d: int) -> np.ndarray:
    """``d`` means of the sorted eigenvalues ``eig`` over ``d`` equal bins (``len(eig)`` a multiple of ``d``).

    The quantile function of the empirical measure averaged over each bin: the mean (``tau``)
    is kept, and the measure tends to that of ``eig`` as ``d -> len(eig)``.

    >>> coarse_grain([4.0, 1.0, 3.0, 0.0], 2).tolist()
    [3.5, 0.5]
    """
    eig = np.sort(np.asarray(eig, dtype=np.float64))[::-1]
    if int(d) < 1 or eig.size % int(d):
        raise ValueError(f"d = {d} must divide the number of eigenvalues {eig.size}")
    return eig.reshape(int(d), -1).mean(axis=1)


def _two_level_count(w: float, d: int) -> int:
    return int(round(w * d))


def eigenvalues(name: str, d: int, mnist=None) -> np.ndarray:
    """The ``d`` eigenvalues of ``Sigma`` that the simulation at dimension ``d`` uses for spectrum ``name``.

    ``mnist`` is the 784-vector of MNIST's eigenvalues (needed for ``name == "mnist"``).

    >>> eigenvalues("subspace κ=0.25 s=4", 8).tolist()
    [4.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    """
    if name not in SPECTRA:
        raise ValueError(f"unknown spectrum {name!r}; known: {sorted(SPECTRA)}")
    kind, par = SPECTRA[name]
    d = int(d)
    if kind == "subspace":
        kappa, s = par
        D = int(round(kappa * d))
        return np.r_[np.full(D, s), np.zeros(d - D)]
    if kind == "two-level":
        s1, s2, w = par
        k = _two_level_count(w, d)
        return np.r_[np.full(k, s1), np.full(d - k, s2)]
    if kind == "power":
        return power_law(d)
    if mnist is None:
        raise ValueError("the MNIST spectrum needs the eigenvalues (pass --mnist PATH)")
    return coarse_grain(mnist, d)


def measure(name: str, mnist=None):
    """The spectral measure ``nu`` of spectrum ``name`` as ``pencils.build`` takes it.

    >>> measure("two-level 0.1/4.6")
    (array([0.1, 4.6]), array([0.8, 0.2]))
    """
    if name not in SPECTRA:
        raise ValueError(f"unknown spectrum {name!r}; known: {sorted(SPECTRA)}")
    kind, par = SPECTRA[name]
    if kind == "subspace":
        kappa, s = par
        return np.array([s, 0.0]), np.array([kappa, 1.0 - kappa])
    if kind == "two-level":
        s1, s2, w = par
        return np.array([s1, s2]), np.array([w, 1.0 - w])
    if kind == "power":
        return power_law(POWER_LAW_ATOMS)
    if mnist is None:
        raise ValueError("the MNIST spectrum needs the eigenvalues (pass --mnist PATH)")
    return np.asarray(mnist, dtype=np.float64)


def tau(name: str, mnist=None) -> float:
    """``tau = E_nu[s]`` of spectrum ``name``."""
    nu = measure(name, mnist)
    if isinstance(nu, tuple):
        return float(np.dot(*nu))
    return float(np.mean(nu))


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
                    dict(activation=act, spectrum=spec, tau=tau(spec, mnist), psi_n=psi_n, psi_p=psi_p, m=_m(m),
                         t=t, lam=lam, kind="surrogate" if surrogate else "true"),
                    q, theory, th.converged, ext, runs, numbered=True))
        if log is not None:
            print(f"[structured] {act} {spec} psi_n={psi_n:g} psi_p={psi_p:g} m={_m(m)}: "
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
            row = dict(spectrum=name, atoms=atoms, m=_m(m), first_s=time.perf_counter() - t0)
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


def _parser():
    from validation.main import Parser, int_in, plain

    ap = Parser(prog="python -m validation.structured_table", description=plain(__doc__),
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


def main(argv=None) -> int:
    from validation.main import command_line, fail, jsonable, save_table, writable_folder

    ap = _parser()
    args = ap.parse_args(argv)
    prog = "python -m validation.structured_table"
    try:
        if args.quick and args.seeds is not None:
            raise ValueError("--quick sets 4 seeds; drop --seeds or drop --quick")
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


if __name__ == "__main__":
    raise SystemExit(main())
