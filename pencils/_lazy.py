"""Lazy public names for the packages (PEP 562), so that importing a package loads none of
its heavy submodules (sympy: about 0.35 s) until a name that needs them is used."""
from __future__ import annotations

import importlib
import sys
import types

__all__ = ["lazy_names"]


class _Package(types.ModuleType):
    """A package whose lazy names stay what they name: importing a submodule of the same
    name as a lazy function (``pencils.linearize``, ``validation.extrapolate``) would
    otherwise bind the submodule over the name, as the eager imports used to prevent."""

    def __setattr__(self, name, value):
        if name in self.__dict__.get("_LAZY", {}) and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


def lazy_names(package: str, table: dict) -> None:
    """Make each ``name`` of ``table`` (name -> submodule defining it, or ``None`` for the
    submodule ``name`` itself) an attribute of ``package`` imported on first access.  A
    target with a dot is an absolute module name: an alias of a name from a higher floor
    (``pencils.build`` -> :func:`derivations.theory.build`), declared here and nowhere else."""
    module = sys.modules[package]

    def __getattr__(name: str):
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        sub = table[name]
        if sub is None:
            return importlib.import_module(f"{package}.{name}")
        target = sub if "." in sub else f"{package}.{sub}"
        value = getattr(importlib.import_module(target), name)
        module.__dict__[name] = value  # later lookups skip __getattr__
        return value

    def __dir__():
        return sorted(set(module.__dict__) | set(getattr(module, "__all__", ())))

    module._LAZY = table
    module.__getattr__ = __getattr__
    module.__dir__ = __dir__
    module.__class__ = _Package
