"""The API reference builds with Sphinx from the docstrings, every public module imports
and gets a page, and the gallery page includes every example script."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _conf():
    spec = importlib.util.spec_from_file_location("dsm_docs_conf", ROOT / "docs" / "conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    return conf


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning", "ignore::DeprecationWarning")
def test_sphinx_builds_the_api_reference_without_import_failures(tmp_path):
    from sphinx.cmd.build import build_main

    warnings_file = tmp_path / "warnings.txt"
    status = build_main(["-b", "html", "-E", "-q", "-d", str(tmp_path / "doctrees"), "-w", str(warnings_file),
                         str(ROOT / "docs"), str(tmp_path / "html")])
    warnings = warnings_file.read_text()
    assert status == 0, warnings
    # A module that cannot be imported (or a missing page or include) fails the build;
    # reST formatting remarks on individual docstrings ([docutils]) are tolerated.
    serious = [w for w in warnings.splitlines()
               if "WARNING" in w and ("import" in w.lower() or "No module named" in w or "[docutils]" not in w)]
    assert not serious, "\n".join(serious)
    for module in _conf().public_modules():
        page = tmp_path / "html" / "api" / "_generated" / f"{module}.html"
        assert page.exists(), module
    sweep_page = (tmp_path / "html" / "api" / "_generated" / "validation.simulation.sweep.html").read_text()
    assert "validation.simulation.sweep.run" in sweep_page and "seeds_per_task" in sweep_page  # docstrings rendered
    gallery = (tmp_path / "html" / "gallery.html").read_text()
    for script in sorted((ROOT / "examples").glob("*.py")):
        first_line = script.read_text().split('"""')[1].strip().splitlines()[0]
        assert first_line.rstrip(".") in gallery, script.name  # the script's code is on the page


def test_every_example_is_in_the_gallery():
    text = (ROOT / "docs" / "gallery.rst").read_text()
    for script in sorted((ROOT / "examples").glob("*.py")):
        assert f"../examples/{script.name}" in text, f"{script.name} is missing from docs/gallery.rst"


@pytest.mark.parametrize("package", ["pencils", "derivations", "numerics", "validation"])
def test_public_modules_are_found(package):
    modules = _conf().public_modules()
    assert package in modules and any(m.startswith(package + ".") for m in modules)
