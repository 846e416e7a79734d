"""The ``dsm-curves`` command: the main job and its subcommands.

``dsm-curves [OPTIONS]`` runs the main job (:mod:`validation.cli.main_job`);
``dsm-curves SUBCOMMAND [OPTIONS]`` runs one of :data:`SUBCOMMANDS`, each a module with
``main(argv, prog)`` (``dsm-curves SUBCOMMAND --help`` for its options).  Shared argument
types, checks and output writers are in :mod:`validation.cli.helpers`.  A new subcommand is
one line of :data:`SUBCOMMANDS`.  The old ``python -m validation.<tool>`` commands are thin
aliases of these subcommands.
"""
from __future__ import annotations

import importlib
import sys

PROG = "dsm-curves"

#: subcommand -> (module with ``main(argv, prog)``, one-line summary for ``dsm-curves --help``)
SUBCOMMANDS = {
    "table": ("validation.cli.table", "theory against Monte Carlo: the validation table"),
    "structured": ("validation.cli.structured", "structured data: validation table ('figures': the figures)"),
    "time": ("validation.cli.training_time", "training time: validation table ('figures': figures and findings)"),
    "real": ("validation.cli.real", "real images: learning curves, phase diagram, memorisation"),
    "unet": ("validation.cli.unet", "U-Net scores on images: memorisation against n, m and width (extra 'unet')"),
    "report": ("validation.cli.report", "Monte Carlo at several d with the d -> inf extrapolation"),
}


def subcommand_help() -> str:
    """The list of subcommands closing ``dsm-curves --help``."""
    width = max(map(len, SUBCOMMANDS))
    lines = [f"  {name:<{width}}  {summary}" for name, (_, summary) in SUBCOMMANDS.items()]
    return "subcommands (dsm-curves SUBCOMMAND --help for their options):\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run ``dsm-curves`` with ``argv`` (default: this process's arguments); return the exit status."""
    from .helpers import fail
    from .main_job import main as main_job

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUBCOMMANDS:
        module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
        return module.main(argv[1:], prog=f"{PROG} {argv[0]}")
    if argv and not argv[0].startswith("-"):  # the main job takes no positional argument
        return fail(PROG, f"unknown subcommand {argv[0]!r}; known: {', '.join(SUBCOMMANDS)}")
    return main_job(argv, epilog=subcommand_help())
