"""``dsm-curves real``: the real-data experiments of :mod:`validation.images.experiments` on
image datasets (alias ``python -m validation.real``); tables and figures by
:mod:`validation.images.plots`, CSV files with JSON sidecars."""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict
from pathlib import Path

from validation.images import data as _data
from validation.images.experiments import (Config, Pool, dataset_name, run_curves, run_memorization, run_phase,
                                           spectrum_check, spiked_theory, structured_theory)
from validation.images.plots import (_fmt, curves_table, memorization_table, plot_curves, plot_memorization,
                                     plot_phase, plot_samples, real_vs_gaussian_table)

from .helpers import (print_tables_and_figures, Parser, activation_help, activation_name, command_line, data_path, distinct, fail, int_in, jsonable, m_value,
                      real_in, save_table, writable_folder)

PROG = "dsm-curves real"


def run(paths, out: Path, cfg: Config, *, log=print, command: str | None = None) -> dict:
    """Run every experiment of ``cfg`` on each dataset path; write tables and figures to ``out``.

    Each CSV gets a JSON sidecar with the configuration, the datasets, the run's notes and
    ``command`` (default: this process's command line as ``dsm-curves real ...``).
    """
    import pencils

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    act = pencils.activation(cfg.activation).name
    command = command_line(PROG) if command is None else command
    meta = {"config": asdict(cfg), "datasets": [str(p) for p in paths]}
    curves, phase, mems, figures, notes, checks, tables = [], [], [], [], [], [], []
    for path in paths:
        name = dataset_name(path)
        images = _data.load_dataset(path, downsample=cfg.downsample)
        pool = Pool(name, images)
        log(f"{name}: pool of {len(pool.X)} images, d = {pool.d} (files {[str(f) for f in images.files]})")
        theory, note = structured_theory(act, pool.eigs)
        if note and note not in notes:
            notes.append(note)
            log(note)
        if cfg.curves:
            spiked = spiked_theory(act, pool.eigs, cfg.spikes)
            if spiked is not None:
                log(f"{name}: spiked theory {spiked!r}")   # its spikes, or the matched directions
            curves += run_curves(pool, cfg, theory, spiked, log=log)
            fig = out / f"curves_{name}.png"
            label = ('spikes="matched" (every direction of order d through p2, p3; m = 1 and inf)'
                     if cfg.spikes == "matched" else None)
            plot_curves(curves, name, fig, note, spiked_label=label)
            figures.append(fig)
        if cfg.phase:
            phase += run_phase(pool, cfg)
            fig = out / f"phase_{name}.png"
            plot_phase(phase, name, fig)
            figures.append(fig)
        if cfg.memorization:
            mimages = (images if cfg.mem_downsample == cfg.downsample
                       else _data.load_dataset(path, downsample=cfg.mem_downsample))
            mpool = Pool(name, mimages)
            kept_real = None
            for kind in (("real", "gaussian") if cfg.gaussian else ("real",)):
                rows, kept = run_memorization(mpool, cfg, kind)
                mems += rows
                if kind == "real":
                    kept_real = kept
            fig = out / f"memorization_{name}.png"
            plot_memorization(mems, name, fig)
            figures.append(fig)
            real_rows = [r for r in mems if r.dataset == name and r.kind == "real" and not r.diverged]
            if real_rows:
                best = max(real_rows, key=lambda r: (r.fraction, r.p_over_n))
                # generalising: among the points that memorise little, the one whose samples have
                # the norm closest to the training images' (diverging samplers are not "generalising")
                low = [r for r in real_rows if r.fraction <= 0.05] or real_rows
                gen = min(low, key=lambda r: abs(math.log(r.median_norm2_over_d)))
                regimes = [((best.p_over_n, best.m), f"memorising p/n={best.p_over_n:g} m={best.m}"),
                           ((gen.p_over_n, gen.m), f"generalising p/n={gen.p_over_n:g} m={gen.m}")]
                fig = out / f"samples_{name}.png"
                plot_samples(kept_real, mimages, name, fig, regimes)
                figures.append(fig)
        if cfg.spectrum_check:
            checks += spectrum_check(pool, cfg)
    meta["notes"] = notes
    if checks:
        head = "| dataset | spectrum | top eig / d | m | DSM test | theory | rel.dev | train | theory | rel.dev |"
        lines = [head, "|" + "---|" * (head.count("|") - 1)]
        for c in checks:
            lines.append(f"| {c['dataset']} | {c['spectrum']} | {c['top_eig_over_d']:.3f} | {c['m']} | "
                         f"{c['dsm_test']:.4f} ± {c['dsm_test_se']:.1g} | {_fmt(c['theory_dsm_test'])} | "
                         f"{_fmt(c['rel_dev_dsm_test'], 2)} | {c['train']:.4f} ± {c['train_se']:.1g} | "
                         f"{_fmt(c['theory_train'])} | {_fmt(c['rel_dev_train'], 2)} |")
        (out / "spectrum_check.md").write_text("\n".join(lines) + "\n")
        tables.append(out / "spectrum_check.md")
    for name, rows in (("curves", curves), ("phase", phase), ("memorization", mems)):
        if rows:
            save_table(out / f"{name}.csv", [asdict(r) for r in rows], jsonable(meta), command,
                       require_converged=False)
    if curves:
        (out / "curves.md").write_text(curves_table(curves))
        tables.append(out / "curves.md")
        rg = real_vs_gaussian_table(curves)
        if rg:
            (out / "real_vs_gaussian.md").write_text(rg)
            tables.append(out / "real_vs_gaussian.md")
    if mems:
        (out / "memorization.md").write_text(memorization_table(mems))
        tables.append(out / "memorization.md")
    return {"curves": curves, "phase": phase, "memorization": mems, "figures": figures,
            "tables": tables, "notes": notes}


def _spikes_value(text: str):
    """``auto``, ``matched`` or a whole number of spikes >= 0."""
    if text.strip().lower() in ("auto", "matched"):
        return text.strip().lower()
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"spikes must be auto, matched or a whole number >= 0, got {text!r}") from None
    if k < 0:
        raise argparse.ArgumentTypeError(f"spikes must be auto, matched or a whole number >= 0, got {text!r}")
    return k


def main(argv=None, prog: str = PROG) -> int:
    """``dsm-curves real`` with ``argv`` (``prog`` names the command in messages and sidecars)."""
    parser = Parser(
        prog=prog,
        description="RF-DSM on real images (MNIST, Fashion-MNIST, any IDX images), Gaussian data with the "
                    "same covariance, structured-data theory, sampling and memorised fraction.")
    parser.add_argument("--data", action="append", required=True, metavar="PATH",
                        help="IDX images file (plain or .gz) or a folder holding one dataset; repeat for "
                             "several (e.g. /usr/share/datasets/fashion-mnist from the Debian package "
                             "dataset-fashion-mnist)")
    parser.add_argument("--out", default="results/real", type=Path, help="output folder (default results/real)")
    parser.add_argument("--quick", action="store_true", help="smaller grids, fewer seeds (about a minute per dataset)")
    parser.add_argument("--activation", type=activation_name, default=None, metavar="NAME",
                        help=activation_help() + " (default relu)")
    parser.add_argument("--downsample", type=int_in(1), default=None,
                        help="k x k mean-pooling before preprocessing for the curves (default 2; 1 = MODEL.md exactly)")
    parser.add_argument("--mem-downsample", type=int_in(1), default=None,
                        help="same for the memorisation experiment (default 4, d = 49)")
    parser.add_argument("--seeds", type=int_in(1), default=None, help="seeds of the curves (default 3)")
    parser.add_argument("--mem-seeds", type=int_in(1), default=None,
                        help="training subsets per memorisation point (default 2)")
    parser.add_argument("--lam", type=real_in(0.0, open_lo=False), default=None, help="ridge of the curves (default 1e-2)")
    parser.add_argument("--sampler", choices=("sde", "ode"), default=None,
                        help="memorisation sampler: reverse SDE (Euler-Maruyama, default) or probability-flow ODE (Heun)")
    parser.add_argument("--no-gaussian", action="store_true", help="skip Gaussian data with the same covariance")
    parser.add_argument("--no-curves", action="store_true")
    parser.add_argument("--spectrum-check", action="store_true",
                        help="also compare Gaussian data with the pool / clipped / isotropic spectrum to the "
                             "structured theory (t = 0.1, psi_p = 2, m = 4 and inf)")
    parser.add_argument("--m", nargs="+", type=m_value, default=None, metavar="M",
                        help="noise draws of the curves (default 1 4 inf)")
    parser.add_argument("--spikes", type=_spikes_value, default=None, metavar="K",
                        help="0 (default): the structured theory only; auto, matched or a number: also the "
                             "spiked-covariance theory (docs/spiked.md; matched: m = 1 and inf) beside it. Its first use per kind of m "
                             "derives and compiles a system: minutes (m = 1, one or two spikes) to hours "
                             "(finite m with two spikes); cached after")
    parser.add_argument("--no-phase", action="store_true")
    parser.add_argument("--no-memorization", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    kw = {k: v for k, v in dict(activation=args.activation, downsample=args.downsample,
                                mem_downsample=args.mem_downsample, seeds=args.seeds, lam=args.lam,
                                sampler=args.sampler, mem_seeds=args.mem_seeds, spikes=args.spikes,
                                m=tuple(args.m) if args.m else None).items()
          if v is not None}
    kw |= dict(gaussian=not args.no_gaussian, curves=not args.no_curves, spectrum_check=args.spectrum_check, phase=not args.no_phase, memorization=not args.no_memorization,
               progress=not args.no_progress)
    try:  # every argument before any work: the data headers, the output folder
        if args.m:
            distinct("--m", args.m)
        cfg = Config.quick(**kw) if args.quick else Config(**kw)
        sizes = dict(downsample=cfg.downsample) | (dict(mem_downsample=cfg.mem_downsample)
                                                     if cfg.memorization else {})
        for p in args.data:
            data_path(p, "--data", **sizes)
        args.out = writable_folder(args.out)
    except ValueError as exc:
        parser.error(str(exc))
    start = time.perf_counter()
    try:
        res = run([Path(p) for p in args.data], args.out, cfg, command=command_line(prog, argv))
    except (ValueError, FileNotFoundError) as exc:
        return fail(prog, exc)
    print_tables_and_figures(res)
    for note in res["notes"]:
        print("NOTE:", note)
    print(f"done in {time.perf_counter() - start:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
