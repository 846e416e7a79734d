"""What every ``dsm-curves`` subcommand shares: the argument parser whose errors are one line,
the argument types and checks (integers and reals in a range, ``m``, activation names, distinct
values, a writable output folder), the record of the command line, the package version and
result tables (CSV with a JSON sidecar), and the one-line failure.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np

from pencils.cache import FALLBACK_VERSION, package_version  # noqa: F401 (re-exported)

#: Largest Monte Carlo dimension accepted on the command line (memory grows like ``d**2``).
MAX_D = 20000


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr (exit status 2)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def int_in(lo: int, hi: int | None = None):
    """``argparse`` type: an integer ``lo <= k <= hi`` (argparse names the option in the message)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            bound = f">= {lo}" if hi is None else f"between {lo} and {hi}"
            raise argparse.ArgumentTypeError(f"must be an integer {bound}, got {value}")
        return value

    return parse


def real_in(lo: float, *, open_lo: bool, hi: float | None = None):
    """``argparse`` type: a finite real ``> lo`` (``open_lo``) or ``>= lo``, and ``<= hi``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a real number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
        if value < lo or (open_lo and value == lo) or (hi is not None and value > hi):
            bound = f"{'>' if open_lo else '>='} {lo:g}" + ("" if hi is None else f" and <= {hi:g}")
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    return parse


def m_value(text: str) -> float:
    """``argparse`` type: ``m``, an integer ``>= 1`` or ``inf``."""
    from derivations.model import parse_m

    try:
        return parse_m(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def activation_names() -> tuple[str, ...]:
    """Names accepted by ``--activation`` (:data:`pencils.KNOWN_ACTIVATIONS` and aliases)."""
    import pencils

    aliases = getattr(sys.modules.get("pencils.activation"), "ALIASES", {})
    return tuple(pencils.KNOWN_ACTIVATIONS) + tuple(a for a in aliases if a not in pencils.KNOWN_ACTIVATIONS)


def activation_name(text: str) -> str:
    """``argparse`` type: a known activation name (case-insensitive), listed on error."""
    import pencils

    key = text.strip().lower()
    if key not in activation_names():
        raise argparse.ArgumentTypeError(
            f"unknown activation {text!r}; known: {', '.join(pencils.KNOWN_ACTIVATIONS)}")
    return key


def activation_help() -> str:
    """``--help`` text of ``--activation``."""
    return "activation name, one of: " + ", ".join(activation_names())


def distinct(name: str, values: list, at_least: int = 1) -> list:
    """``values`` without repeats, with at least ``at_least`` entries (``ValueError`` otherwise)."""
    if len(set(values)) != len(values):
        raise ValueError(f"{name} values repeat: {' '.join(map(str, values))}")
    if len(values) < at_least:
        raise ValueError(f"{name} needs at least {at_least} distinct values, got {len(values)}")
    return values


def _shown(path) -> str:
    """``path`` for a one-line message (a very long path is shortened in the middle)."""
    text = str(path)
    return repr(text if len(text) <= 80 else text[:38] + "..." + text[-38:])


def writable_folder(path: Path, option: str = "--out") -> Path:
    """Create ``path`` if needed and check a file can be written there; ``ValueError`` naming
    ``option`` otherwise (an existing regular file, a name too long for the file system, no
    permission...), so that a bad output folder is reported before any work, not after it."""
    path = Path(path)
    try:
        if path.exists() and not path.is_dir():
            raise ValueError(f"{option} {_shown(path)} is an existing file, not a folder (give a folder, "
                             "created if missing, where files can be written)")
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ValueError(f"{option} {_shown(path)} is not writable: cannot create it or write a file "
                         f"there ({exc.strerror or exc})") from None
    return path


def data_path(path, option: str, **downsample: int) -> tuple[int, int]:
    """Check that ``path`` exists and holds IDX images (file headers only: cheap,
    :func:`validation.images.data.check_data_path`) and that each ``downsample`` keyword
    (``option_name=k``, e.g. ``mem_downsample=4``) is at most the image side; return the
    image size ``(rows, cols)``.  ``ValueError`` naming the option otherwise."""
    from validation.images.data import check_data_path

    try:
        rows, cols = check_data_path(path)
    except OSError as exc:
        raise ValueError(f"{option} {_shown(path)}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ValueError(f"{option}: {exc}") from None
    for name, k in downsample.items():
        if k > min(rows, cols):
            raise ValueError(f"--{name.replace('_', '-')} must be an integer from 1 to {min(rows, cols)} "
                             f"(the image side of {option} {_shown(path)}, {rows} x {cols}), got {k}")
    return rows, cols


def command_line(prog: str, argv: list[str] | None = None) -> str:
    """The command that ran ``prog`` with ``argv`` (default: this process's arguments)."""
    return shlex.join([*prog.split(), *(sys.argv[1:] if argv is None else argv)])



def write_csv(path: Path, rows: list[dict]) -> None:
    """Write the dicts ``rows`` to the CSV ``path``, one column per key of the first row."""
    with Path(path).open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def save_table(path: Path, rows: list[dict], parameters: dict, command: str, *,
               require_converged: bool = True) -> Path:
    """Write ``rows`` to the CSV ``path`` and its JSON sidecar ``path.with_suffix('.json')``.

    The rows must carry a ``converged`` column (unless ``require_converged`` is false: tables
    of measurements only).  The sidecar records the parameters, the package version, the
    command line that produced the table, the columns and the UTC time of writing.  Returns
    the sidecar path.
    """
    if not rows or (require_converged and "converged" not in rows[0]):
        raise ValueError(f"{path.name}: every result table needs a 'converged' column")
    write_csv(path, rows)
    sidecar = path.with_suffix(".json")
    meta = dict(file=path.name, rows=len(rows), columns=list(rows[0]), package="dsm-curves",
                version=package_version(), command=command,
                parameters=parameters,
                written_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    sidecar.write_text(json.dumps(meta, indent=2, default=_json_default) + "\n")
    return sidecar


def _json_default(obj):
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, float) and math.isinf(obj):
        return "inf"
    return str(obj)


def jsonable(value):
    """``value`` with infinities as the string ``'inf'`` (JSON has no infinity)."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, Path):
        return str(value)
    return value


def plain(doc: str) -> str:
    """A module docstring as plain text for ``--help`` (reST roles and literals removed)."""
    import re

    doc = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", doc)
    return doc.replace("``", "")


def table_or_figures(argv, prog: str, table_main, figures_main) -> int:
    """Dispatch ``SUBCOMMAND [table] ...`` to ``table_main`` and ``SUBCOMMAND figures ...`` to
    ``figures_main`` (the subcommands that have both, e.g. ``structured`` and ``time``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["figures"]:
        return figures_main(argv[1:], prog=f"{prog} figures")
    if argv[:1] == ["table"]:
        argv, prog = argv[1:], f"{prog} table"
    return table_main(argv, prog)


def fail(prog: str, message: str) -> int:
    """Print one error line for ``prog`` on stderr; return exit status 2."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def print_tables_and_figures(res: dict) -> None:
    """Print the Markdown tables of a run's result (``res["tables"]``: paths) and list its figures."""
    for t in res["tables"]:
        print(f"\n## {t.name}\n")
        print(t.read_text())
    print("figures:", *[str(f) for f in res["figures"]], sep="\n  ")

