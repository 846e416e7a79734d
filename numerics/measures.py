"""The measures a reduced system averages over, and how their atoms reach the generated code.

A system's spectral means (:class:`pencils.expr.SpectralMean`) run over measures: ``"nu"``, the
spectral measure of ``Sigma`` with its one coordinate ``s_nu``, and any measure of profiles
(:func:`pencils.expr.coordinate`: coordinates ``s_<measure>_<k>``).  Their numbers are given at
solve time as ``spectrum``:

* ``(atoms, weights)``: the measure ``"nu"`` (the structured-data models);
* ``{measure: (atoms, weights)}``: ``atoms`` a 1-D array for ``"nu"``; for another measure a
  mapping ``{coordinate index or name: values}`` or a 2-D array, one column per coordinate index.

Two carriers of the same numbers:

* **the Python environment** (:func:`environment`): ``nu_s``/``nu_w`` for ``"nu"`` (as before
  profiles existed), ``nu_x_<coordinate>`` and ``nu_w_<measure>`` for the others; every key
  starts with ``nu_`` so the batch code shares them between points;
* **the compiled kernel** (:func:`pack`): one array of weights ``W`` beginning with a header of
  the atom counts ``Q_j`` of the system's measures (in :func:`layout` order), then the weights of
  each measure; one array of coordinates ``S``, measure after measure, coordinate after
  coordinate (``Q_j`` values each).  The generated loops find their offsets from the header.
"""
from __future__ import annotations

import numpy as np

__all__ = ["NU_COORDINATE", "normalise", "environment", "from_environment", "pack", "weights_key", "atoms_key"]

#: The name of :data:`pencils.expr.S_NU` (this module loads no sympy: the compiled path needs none).
NU_COORDINATE = "s_nu"


def weights_key(measure: str) -> str:
    return "nu_w" if measure == "nu" else f"nu_w_{measure}"


def atoms_key(coordinate: str) -> str:
    return "nu_s" if coordinate == NU_COORDINATE else f"nu_x_{coordinate}"


def normalise(spectrum, lay: tuple) -> dict:
    """``{measure: ({coordinate name: float array}, weights)}`` for the measures of ``lay``, from
    the ``spectrum`` forms of the module docstring (``ValueError`` naming what is missing or
    inconsistent)."""
    if spectrum is None:
        spectrum = {}
    elif isinstance(spectrum, tuple) and len(spectrum) == 2 and not isinstance(spectrum[0], dict):
        spectrum = {"nu": spectrum}
    if not isinstance(spectrum, dict):
        raise ValueError("spectrum must be (atoms, weights) or {measure: (atoms, weights)}")
    need = dict(lay)
    extra = sorted(set(spectrum) - set(need))
    if extra:
        raise ValueError(f"the system has no measure {extra} (it averages over {sorted(need) or 'none'})")
    out = {}
    for m, coords in lay:
        if m not in spectrum:
            raise ValueError(f"the system averages over the measure {m!r}: pass its atoms and weights")
        atoms, w = spectrum[m]
        w = np.asarray(w, dtype=float).reshape(-1)
        if m == "nu":
            cols = {NU_COORDINATE: np.asarray(atoms, dtype=float).reshape(-1)}
        elif isinstance(atoms, dict):
            cols = {(f"s_{m}_{k}" if isinstance(k, int) else k): np.asarray(v, dtype=float).reshape(-1)
                    for k, v in atoms.items()}
        else:
            a = np.asarray(atoms, dtype=float)
            a = a.reshape(-1, 1) if a.ndim == 1 else a
            cols = {f"s_{m}_{k}": a[:, k] for k in range(a.shape[1])}
        missing = [c for c in coords if c not in cols]
        if missing:
            raise ValueError(f"measure {m!r}: no values for the coordinates {missing}")
        bad = [c for c in coords if cols[c].shape != w.shape or not np.all(np.isfinite(cols[c]))]
        if bad or not np.all(np.isfinite(w)) or w.size == 0:
            raise ValueError(f"measure {m!r}: atoms and weights must be finite arrays of one length")
        out[m] = ({c: cols[c] for c in coords}, w)
    return out


def environment(measures: dict, conv) -> dict:
    """The environment entries of normalised ``measures`` (numpy: ``(A, 1)`` columns, atoms
    along axis 0; mpmath: lists of ``conv`` numbers)."""
    env = {}
    for m, (cols, w) in measures.items():
        if conv is np.asarray:
            env[weights_key(m)] = w.reshape(-1, 1)
            env.update({atoms_key(c): v.reshape(-1, 1) for c, v in cols.items()})
        else:
            env[weights_key(m)] = [conv(float(x)) for x in w]
            env.update({atoms_key(c): [conv(float(x)) for x in v] for c, v in cols.items()})
    return env


def from_environment(env: dict, lay: tuple) -> dict:
    """The normalised measures back from a numpy environment (the kernel path reads them there)."""
    return {m: ({c: np.asarray(env[atoms_key(c)]).reshape(-1) for c in coords},
                np.asarray(env[weights_key(m)]).reshape(-1)) for m, coords in lay}


def pack(measures: dict, lay: tuple) -> tuple | None:
    """``(S, W)`` for the compiled kernel (module docstring), ``None`` without measures."""
    if not lay:
        return None
    counts = [measures[m][1].size for m, _ in lay]
    W = np.concatenate([np.asarray(counts, dtype=float)] + [measures[m][1] for m, _ in lay])
    S = np.concatenate([measures[m][0][c] for m, coords in lay for c in coords])
    return S, W
