"""Code generation: sympy expressions as source code, one printer per language.

* :mod:`.python` -- numpy / mpmath function bodies: the coefficient functions of the raw
  systems (:func:`generate_source`, :func:`build_function`) and the program of the reduced
  systems (:func:`reduced_source`);
* :mod:`.cxx` -- the C++ kernel of a reduced system (:func:`kernel_source`);
* ``runtime.h``, ``stage.hpp``, ``driver.hpp`` -- the hand-written C++ the kernel source
  includes (package data: :func:`runtime_text`, :func:`runtime_digest`).

The printers build on sympy, so their names load on first access (PEP 562); the C++ files
are read without it (a warm start checks their digest only).
"""
from __future__ import annotations

import functools
import hashlib
from importlib import resources

from pencils._lazy import lazy_names

#: the hand-written C++ pasted into every kernel source, in order
RUNTIME_FILES = ("runtime.h", "stage.hpp", "driver.hpp")
#: Largest core stage the kernel takes (``KMAX`` of ``runtime.h``: the attractivity test's buffers).
KMAX = 48

_LAZY = {
    "Layout": "python", "layout": "python", "generate_source": "python", "build_function": "python",
    "reduced_source": "python", "kernel_source": "cxx", "operation_counts": "cxx",
}

__all__ = ["generate_source", "build_function", "reduced_source", "kernel_source", "operation_counts",
           "Layout", "layout", "runtime_text", "runtime_digest", "RUNTIME_FILES", "KMAX"]


@functools.lru_cache(maxsize=None)
def runtime_text(name: str) -> str:
    """The text of one of :data:`RUNTIME_FILES` (package data, found by ``importlib.resources``)."""
    if name not in RUNTIME_FILES:
        raise ValueError(f"unknown runtime file {name!r}")
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=None)
def runtime_digest() -> str:
    """SHA-256 of the runtime files: part of a kernel's cache key (the code fingerprint of
    :mod:`pencils.cache` hashes ``.py`` files only)."""
    digest = hashlib.sha256()
    for name in RUNTIME_FILES:
        digest.update(name.encode() + b"\0" + runtime_text(name).encode() + b"\0")
    return digest.hexdigest()


lazy_names(__name__, _LAZY)
