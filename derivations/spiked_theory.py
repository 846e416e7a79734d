"""The curves of ``pencils.build(act, covariance=eigs, spikes=k).errors(...)`` (issue 17,
MODEL.md "Spiked covariance"): the conditional model of :mod:`derivations.conditional`,
derived by the engine once per kind of ``m`` and expansion rank, solved on the grid of the
user's arguments with the numbers of :mod:`derivations.overlaps`.

Accuracy.  Besides the solver's own checks (convergence, rounding), a spiked value carries the
error of its two approximations, estimated at every point and returned as
``Errors.model_error`` (relative):

* the quadratures: of the spike overlaps (``Q`` against ``Q + Q // 2`` nodes per spike) and of
  the bulk's spectral measure (its Gauss rule, ``n`` against ``n + n // 2`` nodes,
  :data:`derivations.overlaps.DEFAULT_BULK_NODES`), estimated together; where the estimate exceeds
  ``spike_rtol / 10`` the diffusion time is re-solved with twice the nodes of both, again and
  again up to :data:`MAX_ATOMS` atoms per spike measure and the bulk's own atoms;
* the rank of the linear kernel's separable expansion (the change from one rank less, scaled
  by the decay of the singular values, :func:`derivations.overlaps.spiked_errors`; at rank 1
  there is no estimate and ``model_error`` is NaN);
* the rank of the noise kernels (``noise_error``: the share of their norm the expansion leaves
  out, ``tail^2``; a scale measured against the full kernels, :mod:`derivations.overlaps`);
* the eigenvalues left in the bulk (``bulk_spike_error``): each is a spike the theory does not
  resolve, whose effect on the curves is of order ``kappa^2``.  Estimated as
  :data:`BULK_SPIKE_COEFF` ``* sum_{j > k} (a^2 kappa_j / (a^2 tau_b + Delta))^2``
  (:attr:`derivations.spikes.SpikeSplit.residual`, each share scaled to the pre-activation's
  variance at ``t``).  A flag, not a bound: at ``d -> inf`` it vanishes; on MNIST at ``d = 784``
  (slowly decaying spectrum) it is what flags the points where two spikes are not enough
  (``docs/spiked.md`` section 9).  Its size can be 5 times too small: there it says 4.2 % at
  ``t = 0.1``, and the train error above ``p = n`` is 15-20 % off (the DSM test loss 3 %;
  ``docs/spiked.md`` section 11).

A point whose estimate exceeds ``spike_rtol`` (default :data:`SPIKE_RTOL`), or has none, is returned
with a :class:`SpikeWarning` naming how many points and the largest estimate: with two or more
spikes the default ranks (:func:`derivations.overlaps.default_ranks`) may be too low, and the
warning says so instead of returning the number silently.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from .overlaps import DEFAULT_BULK_NODES, DEFAULT_NODES, spiked_errors

__all__ = ["SPIKE_RTOL", "MAX_ATOMS", "BULK_SPIKE_COEFF", "SpikeWarning", "check_rank", "spiked_grid", "p3_weight",
           "matched_grid", "p3_extrapolation"]

#: Default accuracy asked of the spiked expansion (relative): above it a point is flagged.
SPIKE_RTOL = 1e-2
#: A reading's own error estimates (:func:`derivations.overlaps.spiked_errors`): quadrature,
#: rank of the linear kernel, rank of the noise kernels.
OWN_ERRORS = ("quadrature_error", "truncation_error", "noise_error")
#: Most quadrature atoms per measure when the nodes are doubled (``Q^k``).
MAX_ATOMS = 4096
#: Relative effect on the curves of one unresolved direction of share ``kappa``, per ``kappa^2``:
#: the largest measured miss of the single-variance theory on one spike, the train error at
#: ``kappa = 0.2``, ``m = 1``, ``t = 0.1`` (-9.3 %, i.e. ``2.3 kappa^2``; the test error misses
#: by at most ``1.25 kappa^2``, ``docs/spiked.md`` section 8), rounded up.
BULK_SPIKE_COEFF = 2.5


class SpikeWarning(UserWarning):
    """A spiked value's estimated expansion error (``Errors.model_error``) exceeds ``spike_rtol``."""


def check_rank(rank) -> None:
    """``ValueError`` unless ``rank`` is ``None`` (the default ranks), a whole number ``>= 1`` or
    a dict of them per kernel (``mu1`` and the noise kernels, checked per kind of ``m`` when
    solving, :func:`derivations.conditional.ranks_of`)."""
    values = [] if rank is None else list(rank.values()) if isinstance(rank, dict) else [rank]
    for r in values:
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 1:
            raise ValueError(f"the spiked expansion rank must be None, a whole number >= 1 or a dict of them "
                             f"per kernel, got {rank!r}")


def _bulk_spike_error(t, tau_b: float, residual: float):
    """``bulk_spike_error`` (module docstring): ``BULK_SPIKE_COEFF sum_{j > k} (a^2 kappa_j /
    (a^2 tau_b + Delta))^2`` at diffusion time(s) ``t``, from ``residual = sum kappa_j^2``."""
    a2 = np.exp(-2.0 * t)
    return BULK_SPIKE_COEFF * (a2 / (a2 * tau_b - np.expm1(-2.0 * t))) ** 2 * residual


def _group(t, m):
    """Indices of the flattened grid by distinct ``(t, m)`` (the kernels depend on both)."""
    keys = {}
    for i, key in enumerate(zip(t.tolist(), m.tolist())):
        keys.setdefault(key, []).append(i)
    return {key: np.array(idx) for key, idx in keys.items()}


def spiked_grid(activation, split, psi_n, psi_p, t, lam, m, *, rank=None, nodes: int | None = None,
                spike_rtol: float = SPIKE_RTOL, throw: bool = True, **solve_options) -> dict:
    """Test, train error and DSM loss of the spiked theory at flattened points (1-D arrays of
    equal length; ``m`` as floats, ``inf`` allowed), with ``quadrature_error``,
    ``truncation_error``, ``noise_error``, ``bulk_spike_error``, ``model_error`` (their maximum), the solver's ``residual``,
    ``rounding_error`` and ``iterations``, and ``converged`` per point.
    ``split``: a :class:`derivations.spikes.SpikeSplit`; ``rank``: :func:`check_rank` (the
    truncation estimate needs the linear kernel at rank 2 or more); ``nodes``: Gauss--Hermite nodes per spike (default
    :data:`derivations.overlaps.DEFAULT_NODES`); ``solve_options``: the precision ladder's
    ``check_rounding``, ``refine``, ``rtol``, ``atol`` (:meth:`derivations.derived.DerivedModel.solve`)."""
    check_rank(rank)
    k = split.k
    q0 = int(nodes) if nodes is not None else DEFAULT_NODES.get(k, 6)
    if q0 < 2 or (q0 + q0 // 2) ** k > MAX_ATOMS:
        raise ValueError(f"nodes = {q0} per spike gives {(q0 + q0 // 2) ** k} atoms with k = {k} spikes; "
                         f"use 2 <= nodes with (nodes * 3/2)^k <= {MAX_ATOMS}")
    size = len(t)
    names = ("test", "train", "dsm_test_loss", *OWN_ERRORS, "residual", "rounding_error", "iterations")
    out_bulk = np.full(size, np.nan)
    out = {q: np.full(size, np.nan) for q in names}
    converged = np.zeros(size, dtype=bool)
    n_atoms = len(split.bulk[0])
    for (tt, mm), idx in _group(t, m).items():
        m_arg = math.inf if math.isinf(mm) else int(mm)
        q, n = q0, (DEFAULT_BULK_NODES if n_atoms > DEFAULT_BULK_NODES + DEFAULT_BULK_NODES // 2 else None)
        while True:
            e = spiked_errors(activation, split.kappa, split.bulk, psi_n=psi_n[idx], psi_p=psi_p[idx], t=tt,
                              lam=lam[idx], m=m_arg, R=rank, Q=q, bulk_nodes=n, throw=throw, tau_inf=split.tau_inf,
                              **solve_options)
            more_q = (2 * q + q) ** k <= MAX_ATOMS
            more_n = n is not None
            if not np.any(e["quadrature_error"] > spike_rtol / 10) or not (more_q or more_n):
                break
            q = 2 * q if more_q else q
            n = (2 * n if 3 * n < n_atoms else None) if more_n else None
        for name in names:
            out[name][idx] = e[name]
        converged[idx] = e["converged"]
        out_bulk[idx] = _bulk_spike_error(tt, split.tau_b, split.residual)
    out["bulk_spike_error"] = out_bulk
    # NaN (not estimated) stays NaN: maximum propagates it
    out["model_error"] = np.maximum.reduce([*(out[q] for q in OWN_ERRORS), out_bulk])
    out["converged"] = converged
    out["iterations"] = np.nan_to_num(out["iterations"]).astype(int)
    if np.isnan(out["truncation_error"][converged]).any():
        warnings.warn(f"spike_rank = {rank}: the truncation error of the {size} spiked values is not estimated "
                      "(Errors.model_error is NaN); a linear kernel of rank 2 or more estimates it", SpikeWarning,
                      stacklevel=4)
        return out
    bad = converged & (out["model_error"] > spike_rtol)
    if bad.any():
        warnings.warn(
            f"{int(bad.sum())} of {size} spiked values have an estimated expansion error above "
            f"spike_rtol = {spike_rtol:g} "
            f"(largest {np.max(out['model_error'][bad]):.1e}; Errors.model_error); with {k} spike(s) the ranks "
            f"{e['ranks']} may be too low (spike_rank=), or the bulk keeps directions of order d "
            f"(largest bulk_spike_error {np.max(out_bulk[bad]):.1e}: more spikes=; docs/spiked.md)", SpikeWarning, stacklevel=4)
    return out


def p3_weight(p2: float, p3: float) -> float:
    """The weight ``w = (p3 - q2) / (q1 - q2)`` of the one-spike reading in :func:`p3_extrapolation`
    (``q_n = p2^{3/2} / sqrt(n)``)."""
    q1, q2 = p2 ** 1.5, p2 ** 1.5 / math.sqrt(2.0)
    return (p3 - q2) / (q1 - q2)


def p3_extrapolation(one, two, p2: float, p3: float):
    """The value at the spectrum's ``p3`` from the readings as one and two equal spikes of the same
    ``p2`` (``spikes="matched"``, :mod:`derivations.spikes`), and the estimate of its error.

    To third order in the shares the effect of the directions is ``c2 p2 + c3 p3``; the reading
    as ``n`` equal spikes has ``p3 = p2^{3/2} / sqrt(n)``, so the two readings fix ``c3`` and the
    value is linear in ``p3`` through them.  The weight on the one-spike value is
    ``w = (p3 - q2) / (q1 - q2)`` with ``q_n = p2^{3/2} / sqrt(n)``: 1 for a single direction,
    0 for two equal ones, at least ``-(sqrt 2 + 1)`` for many small ones.

    The error estimate is the whole step from the nearer reading, ``|value - two|`` (or
    ``|value - one|``), and at least the distance to the same readings extrapolated in ``1/n``
    to ``n_eff = p2^3 / p3^2`` instead.  The extrapolation is checked against Monte Carlo only to
    about the size of its own step (``docs/spiked.md`` section 12), so it claims no better.

    >>> value, err = p3_extrapolation(1.0, 2.0, 0.02, 0.02 ** 1.5)   # one direction: the one-spike value
    >>> float(value), round(float(err), 12)
    (1.0, 0.0)
    >>> value, err = p3_extrapolation(1.0, 2.0, 0.02, 0.3 * 0.02 ** 1.5)   # many directions: a step beyond two
    >>> round(float(value), 4), round(float(err), 4)
    (3.3899, 1.3899)
    >>> float(p3_extrapolation(1.0, 2.0, 0.02, 0.02 ** 1.5 / 2 ** 0.5)[0])   # two equal ones
    2.0
    """
    one, two = np.asarray(one, dtype=float), np.asarray(two, dtype=float)
    w = p3_weight(p2, p3)
    value = two + w * (one - two)
    w_inv = 2.0 * p3 ** 2 / p2 ** 3 - 1.0   # 1/n_eff = 1/2 + w_inv (1 - 1/2)
    step = np.minimum(np.abs(w), np.abs(1.0 - w)) * np.abs(one - two)
    return value, np.maximum(step, np.abs((w - w_inv) * (one - two)))


def matched_grid(activation, matched, psi_n, psi_p, t, lam, m, *, rank=None, nodes: int | None = None,
                 spike_rtol: float = SPIKE_RTOL, throw: bool = True, **solve_options) -> dict:
    """:func:`spiked_grid` for ``spikes="matched"`` (a :class:`derivations.spikes.MatchedSpikes`):
    both equal-spike readings solved, extrapolated in ``p3`` (:func:`p3_extrapolation`).

    ``model_error`` adds the estimates of three independent sources: the readings' own
    (quadrature, rank truncation and noise rank, each the larger of the two; carried through the
    extrapolation, ``|w| e_one + |1 - w| e_two``), the extrapolation's (``extrapolation_error``,
    relative, the larger over the test and train errors) and ``bulk_spike_error`` of the
    eigenvalues below the directions.  (Their maximum, used before, was below the misses measured
    against the family's limit on MNIST's directions: ``docs/spiked.md`` section 13.)  One
    :class:`SpikeWarning` names the points above ``spike_rtol``."""
    kw = dict(rank=rank, nodes=nodes, spike_rtol=math.inf, throw=throw, **solve_options)
    one = spiked_grid(activation, matched.one, psi_n, psi_p, t, lam, m, **kw)
    if matched.two is None:  # a single direction: the one-spike reading is the theory
        two, ext = one, np.zeros(len(t))
    else:
        two = spiked_grid(activation, matched.two, psi_n, psi_p, t, lam, m, **kw)
    out = dict(two)
    if matched.two is not None:
        rel = []
        for name in ("test", "train", "dsm_test_loss"):
            out[name], err = p3_extrapolation(one[name], two[name], matched.p2, matched.p3)
            if name != "dsm_test_loss":
                rel.append(err / np.abs(out[name]))
        ext = np.maximum(*rel)
    out["bulk_spike_error"] = _bulk_spike_error(np.asarray(t, dtype=float), matched.one.tau_b, matched.residual)
    out["extrapolation_error"] = ext
    for name in (*OWN_ERRORS, "residual", "rounding_error"):
        out[name] = np.fmax(one[name], two[name])
    out["converged"] = one["converged"] & two["converged"]
    w = p3_weight(matched.p2, matched.p3) if matched.two is not None else 1.0
    # np.maximum keeps a NaN truncation estimate (rank 1: not estimated) NaN
    own = {name: np.maximum.reduce([r[q] for q in OWN_ERRORS]) for name, r in (("one", one), ("two", two))}
    carried = abs(w) * own["one"] + abs(1.0 - w) * own["two"] if matched.two is not None else own["one"]
    out["model_error"] = carried + ext + out["bulk_spike_error"]
    if np.isnan(out["model_error"][out["converged"]]).any():
        warnings.warn(f"spike_rank = {rank}: the truncation error of the {len(t)} matched-spike values is not "
                      "estimated (Errors.model_error is NaN); a linear kernel of rank 2 or more estimates it",
                      SpikeWarning, stacklevel=4)
        return out
    bad = out["converged"] & (out["model_error"] > spike_rtol)
    if bad.any():
        warnings.warn(f"{int(bad.sum())} of {len(t)} matched-spike values have an estimated error above spike_rtol = "
                      f"{spike_rtol:g} (largest {np.nanmax(out['model_error'][bad]):.1e}: quadrature/rank "
                      f"{np.nanmax(np.fmax.reduce([out[q] for q in OWN_ERRORS])[bad]):.1e}, extrapolation "
                      f"in p3 {np.nanmax(ext[bad]):.1e}; Errors.model_error, docs/spiked.md section 12)", SpikeWarning,
                      stacklevel=4)
    return out
