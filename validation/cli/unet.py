"""``dsm-curves unet``: U-Net scores trained by DSM on images, against ``n``, ``m`` and width
(:mod:`validation.unet`), beside the random-features theory.  Needs the ``unet`` extra
(``pip install -e '.[unet]'``)."""
from __future__ import annotations

import math
import time
from dataclasses import asdict, replace
from pathlib import Path

from .helpers import (print_tables_and_figures, 
    Parser,
    command_line,
    data_path,
    distinct,
    fail,
    int_in,
    m_value,
    writable_folder,
)

PROG = "dsm-curves unet"

#: The default grid (issue 19) and the ``--quick`` one.
DEFAULT = dict(ns=(16, 64, 256, 1024), ms=(1, 4, 16, math.inf), widths=(4, 10, 24), seeds=2)
QUICK = dict(ns=(16, 256), ms=(1, math.inf), widths=(4, 16), seeds=1)


def run(paths, out: Path, *, quick: bool = False, ns=None, ms=None, widths=None, seeds=None, steps=None,
        scheduler=None, workers=None, collect_only: bool = False, theory: bool = True, log=print,
        command: str | None = None) -> dict:
    """Run (or resume) the grid on the datasets ``paths`` and write tables and figures to ``out``.

    Finished cells are checkpointed in ``out/cells``; ``collect_only`` writes the tables and
    figures of the checkpoints found without running the missing cells.
    """
    from validation.images.experiments import dataset_name
    from validation.unet import experiment, plots

    out = Path(out)
    grid = dict(QUICK if quick else DEFAULT)
    grid |= {k: v for k, v in dict(ns=ns, ms=ms, widths=widths, seeds=seeds).items() if v is not None}
    budget = experiment.Budget(steps=200, mem_checks=(200,), sampler_steps=100) if quick else experiment.Budget()
    if steps is not None:
        budget = replace(budget, steps=steps, mem_checks=tuple(sorted({max(1, steps // 2), steps})))
    datasets = [(dataset_name(p), str(p)) for p in paths]
    if len({name for name, _ in datasets}) != len(datasets):
        raise ValueError(f"two datasets have the same name: {[name for name, _ in datasets]}")
    cells = experiment.grid(datasets, grid["ns"], grid["ms"], grid["widths"], range(grid["seeds"]))
    folder = out / "cells"
    if collect_only:
        payloads = [experiment.load_cell(folder, c, budget) for c in cells]
        log(f"{sum(p is not None for p in payloads)} of {len(cells)} cells found in {folder}")
    else:
        payloads = experiment.run_grid(cells, budget, folder, scheduler, workers=workers, log=log)
    meta = dict(grid={k: [str(v) for v in vals] if isinstance(vals, tuple) else vals for k, vals in grid.items()},
                budget=asdict(budget), datasets=[p for _, p in datasets],
                cells_expected=len(cells), cells_done=sum(p is not None for p in payloads))
    command = command_line(PROG) if command is None else command
    return plots.report(cells, payloads, datasets, budget, out, meta, command, theory=theory, log=log)


def main(argv=None, prog: str = PROG) -> int:
    """``dsm-curves unet`` with ``argv``."""
    parser = Parser(prog=prog, description=(
        "DSM-trained U-Net scores (DDPM layout, width knob W) on image datasets: held-out and train DSM "
        "loss at t = 0.1, 0.3, 1 and the memorised fraction of reverse-SDE samples, over n, m (frozen "
        "noise draws per image) and width; beside the random-features theory. Each cell is a Dask task, "
        "checkpointed in OUT/cells (a rerun resumes). Needs pip install -e '.[unet]'."))
    parser.add_argument("--data", action="append", required=True, metavar="PATH",
                        help="IDX images file or a folder holding one dataset; repeat for several")
    parser.add_argument("--out", default="results/unet", type=Path, help="output folder (default results/unet)")
    parser.add_argument("--quick", action="store_true",
                        help="n in {16, 256}, m in {1, inf}, W in {4, 16}, one seed, 200 steps (minutes)")
    parser.add_argument("--n", type=int_in(2), nargs="+", default=None, metavar="N", help="training set sizes")
    parser.add_argument("--m", type=m_value, nargs="+", default=None, metavar="M", help="noise draws per image (inf)")
    parser.add_argument("--widths", type=int_in(1), nargs="+", default=None, metavar="W", help="U-Net base widths")
    parser.add_argument("--seeds", type=int_in(1), default=None, help="seeds per cell (default 2; quick 1)")
    parser.add_argument("--steps", type=int_in(1), default=None, help="Adam steps per cell (default 1000; quick 200)")
    parser.add_argument("--scheduler", default=None, metavar="local|ADDRESS",
                        help="run the cells on Dask: 'local' or a scheduler address (default: serially)")
    parser.add_argument("--workers", type=int_in(1), default=None,
                        help="workers of --scheduler local (default: one per CPU)")
    parser.add_argument("--no-theory", action="store_true",
                        help="leave the random-features theory out of the loss figures")
    parser.add_argument("--collect", action="store_true",
                        help="only write tables and figures from the checkpoints in OUT/cells")
    args = parser.parse_args(argv)
    try:
        from validation.simulation.sweep import check_scheduler
        from validation.unet import torch_module

        torch_module()
        if args.workers is not None and args.scheduler != "local":
            raise ValueError("--workers only applies to --scheduler local")
        check_scheduler(args.scheduler)
        for name in ("n", "m", "widths"):
            if getattr(args, name) is not None:
                distinct(f"--{name}", getattr(args, name))
        for p in args.data:
            data_path(p, "--data", downsample=4)
        args.out = writable_folder(args.out)
    except ImportError as exc:
        return fail(prog, exc)
    except ValueError as exc:
        parser.error(str(exc))
    start = time.perf_counter()
    try:
        res = run([Path(p) for p in args.data], args.out, quick=args.quick, ns=args.n, ms=args.m,
                  widths=args.widths, seeds=args.seeds, steps=args.steps, scheduler=args.scheduler,
                  workers=args.workers, collect_only=args.collect, theory=not args.no_theory,
                  command=command_line(prog, argv))
    except (ValueError, FileNotFoundError) as exc:
        return fail(prog, exc)
    print_tables_and_figures(res)
    print(f"done in {time.perf_counter() - start:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
