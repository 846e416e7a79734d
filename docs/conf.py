"""Sphinx configuration of the dsm-curves documentation (API reference and gallery).

Build:  python -m sphinx -b html docs /tmp/dsm-docs

The API pages are generated at build time, one per public module of ``pencils``,
``derivations``, ``numerics`` and ``validation`` (into ``api/_generated``, ignored by git),
so a new module is documented as soon as it exists.  Docstrings are numpy style
(``sphinx.ext.napoleon``).
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PACKAGES = ("pencils", "derivations", "numerics", "validation")

project = "dsm-curves"
author = "the dsm-curves developers"
try:
    from importlib.metadata import version as _version

    release = _version("dsm-curves")
except Exception:  # not installed: the docs still build
    release = "0+unknown"

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]
source_suffix = {".rst": "restructuredtext"}
exclude_patterns = ["_build", "MODEL.md", "**/.gitignore"]
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_numpy_docstring = True
napoleon_google_docstring = False
html_theme = "alabaster"
html_static_path: list[str] = []
suppress_warnings = ["toc.not_included"]


def public_modules() -> list[str]:
    """Every importable public module of :data:`PACKAGES` and their subpackages (names without a leading underscore)."""
    names = []
    for package in PACKAGES:
        names.append(package)
        pkg = importlib.import_module(package)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{package}."):  # subpackages too
            if not any(part.startswith("_") for part in info.name.split(".")):
                names.append(info.name)
    return names


def write_api_pages(srcdir: Path) -> list[str]:
    """Write ``api/_generated/<module>.rst`` (only files whose text changed); return the modules."""
    out = srcdir / "api" / "_generated"
    out.mkdir(parents=True, exist_ok=True)
    modules = public_modules()
    for name in modules:
        text = f"{name}\n{'=' * len(name)}\n\n.. automodule:: {name}\n"
        if hasattr(importlib.import_module(name), "__path__"):  # a package: its members have their modules' pages
            text += "   :no-members:\n"
        path = out / f"{name}.rst"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    for stale in out.glob("*.rst"):
        if stale.stem not in modules:
            stale.unlink()
    return modules


def setup(app):
    write_api_pages(Path(app.srcdir))
