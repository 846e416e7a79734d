"""Finite-size realisations of the expression language: the Monte Carlo of any derived trace.

A :class:`Realisation` draws every named Gaussian of an expression once, at a finite
reference size ``d`` (a space of ratio ``alpha`` has ``round(alpha d)`` indices), with the
language's normalisation: i.i.d. ``N(0, variance / d)`` entries (:mod:`pencils.expr`).
The deterministic ``f(Sigma)`` of :func:`pencils.expr.spectral` is the diagonal matrix of
``f`` at ``d`` eigenvalues that follow the given spectral measure (its quantiles at
``(i + 1/2) / d``, so the finite-``d`` spectrum is deterministic).  Normalised traces are
``(1/d) Tr``, as in the language.  The same draw serves every expression evaluated on one
:class:`Realisation`, so the traces of one output share their randomness, as they do in
the model.

Random vectors (:func:`pencils.averages.gaussian_vector`) are drawn like Gaussians with one
column; an output that was averaged over them (:func:`pencils.averages.average`) is a trace
and is realised as such.

>>> import numpy as np, sympy
>>> from pencils.expr import D, Space, gaussian, inverse, trace
>>> g = sympy.Symbol("gamma", positive=True)
>>> X = gaussian("X", Space("n", 1 / g), D)
>>> r = Realisation(400, {"gamma": 0.5}, np.random.default_rng(0))
>>> round(float(r.trace(trace(inverse(g * X.T @ X + 1)))), 2)  # MP at z = -1, gamma = 1/2: 0.56
0.56
"""
from __future__ import annotations

from typing import Any

import numpy as np
import sympy

from .expr import S_NU, MatExpr, Trace
from .spaces import parts

__all__ = ["Realisation", "spectrum_sample"]

#: Largest matrix side a realisation builds (``d`` times the largest space ratio): a dense
#: ``n x n`` float64 matrix of this side is 0.8 GB; beyond it the draw is refused up front.
MAX_SIDE = 10_000


def spectrum_sample(spectrum, d: int) -> np.ndarray:
    """``d`` eigenvalues of the measure ``spectrum = (atoms, weights)``: its quantiles at
    ``(i + 1/2) / d``, ``i = 0 .. d-1`` (deterministic; the empirical measure converges to
    the measure at rate ``1/d``)."""
    atoms, weights = (np.asarray(x, dtype=float).reshape(-1) for x in spectrum)
    order = np.argsort(atoms)
    atoms, weights = atoms[order], weights[order]
    cdf = np.cumsum(weights) / np.sum(weights)
    u = (np.arange(d) + 0.5) / d
    return atoms[np.minimum(np.searchsorted(cdf, u, side="right"), len(atoms) - 1)]


class Realisation:
    """One draw of every Gaussian of the expressions it evaluates (module docstring).

    ``values``: parameter name -> number (real or complex); ``rng``: a numpy
    ``Generator``; ``spectrum``: ``(atoms, weights)`` of the ``d``-space's spectral measure,
    needed only by expressions with :func:`pencils.expr.spectral` factors.
    """

    def __init__(self, d: int, values: dict, rng: np.random.Generator, spectrum=None):
        if not isinstance(d, (int, np.integer)) or d < 2:
            raise ValueError(f"d must be an integer >= 2, got {d!r}")
        self.d = int(d)
        self._by_name = {(k if isinstance(k, str) else k.name): v for k, v in values.items()}
        self.rng = rng
        self._eig = None if spectrum is None else spectrum_sample(spectrum, self.d)
        self._draws: dict = {}
        self._memo: dict = {}
        self._sizes: dict = {}

    # -- scalars and sizes ----------------------------------------------------------------
    def scalar(self, c: Any) -> complex | float:
        """A sympy scalar at the parameter values (complex where it is complex)."""
        c = sympy.sympify(c)
        missing = sorted(s.name for s in c.free_symbols if s.name not in self._by_name)
        if missing:
            raise ValueError(f"no value for the parameter(s) {missing}")
        v = complex(sympy.sympify(c.xreplace({s: sympy.sympify(self._by_name[s.name]) for s in c.free_symbols})).evalf(17))
        return v.real if v.imag == 0 else v

    def size(self, space) -> int:
        """The number of indices of a space (a direct sum: the sum of its parts' sizes)."""
        if space.name not in self._sizes:
            if len(parts(space)) > 1:
                n = sum(self.size(p) for p in parts(space))
            elif space.name == "1":
                n = 1
            else:
                ratio = self.scalar(space.ratio)
                if isinstance(ratio, complex) or not ratio > 0:
                    raise ValueError(f"the size ratio of space {space.name!r} is {ratio}: it must be positive")
                n = max(1, int(round(ratio * self.d)))
                if n > MAX_SIDE:
                    raise ValueError(f"space {space.name!r} has {n} indices at d = {self.d} (> {MAX_SIDE}): "
                                     "use a smaller d")
            self._sizes[space.name] = n
        return self._sizes[space.name]

    # -- matrices ---------------------------------------------------------------------------
    def _draw(self, name: str, rows, cols) -> np.ndarray:
        shape = (self.size(rows), self.size(cols))
        if name not in self._draws:
            self._draws[name] = self.rng.standard_normal(shape)
        elif self._draws[name].shape != shape:
            raise ValueError(f"Gaussian {name!r} appears with two shapes")
        return self._draws[name]

    def matrix(self, e: MatExpr) -> np.ndarray:
        """The realised matrix of ``e`` (memoised: shared sub-expressions are built once)."""
        if e.key in self._memo:
            return self._memo[e.key]
        op, a = e.op, e.args
        if op in ("gauss", "vec"):
            var = self.scalar(a[1])
            out = np.sqrt(var / self.d) * self._draw(a[0], e.rows, e.cols)
        elif op in ("gaussT", "vecT"):
            out = self.matrix(a[0]).T
        elif op == "eye":
            out = self.scalar(a[0]) * np.eye(self.size(e.rows))
        elif op == "add":
            out = np.zeros((self.size(e.rows), self.size(e.cols)))
            for c, t in a:
                out = out + self.scalar(c) * self.matrix(t)
        elif op == "mul":
            mats = [self.matrix(f) for f in a]
            out = mats[0] if len(mats) == 1 else np.linalg.multi_dot(mats)
        elif op == "scale":
            out = self.scalar(a[0]) * self.matrix(a[1])
        elif op == "inv":
            out = np.linalg.inv(self.matrix(a[0]))
        elif op == "spec":
            out = np.diag(self._spectral(a[0]))
        elif op == "block":
            k, m, bl = a[0], a[1], a[2:]
            out = np.block([[self.matrix(bl[i * m + j]) for j in range(m)] for i in range(k)])
        else:  # pragma: no cover - every op of pencils.expr is handled above
            raise AssertionError(op)
        self._memo[e.key] = out
        return out

    def _spectral(self, f) -> np.ndarray:
        if self._eig is None:
            raise ValueError("the expression has spectral factors f(Sigma): pass spectrum=(atoms, weights)")
        rest = {s for s in f.free_symbols if s != S_NU}
        missing = sorted(s.name for s in rest if s.name not in self._by_name)
        if missing:
            raise ValueError(f"no value for the parameter(s) {missing}")
        fs = sympy.lambdify([S_NU], f.xreplace({s: sympy.sympify(self._by_name[s.name]) for s in rest}), modules="numpy")
        return np.broadcast_to(fs(self._eig), (self.d,))

    def trace(self, t: Trace) -> complex | float:
        """The normalised trace ``constant + sum_k c_k (1/d) Tr(A_k)`` at this draw."""
        total = self.scalar(t.constant)
        for c, m in t.terms:
            total = total + self.scalar(c) * np.trace(self.matrix(m)) / self.d
        v = complex(total)
        return v.real if v.imag == 0 else v
