"""The errors along gradient flow, ``errors_at_time``, and their slope at ``T = 0``
(see :mod:`derivations.training_time`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from numerics import ConvergenceError

from ..model import m_kind, parse_m, parse_m_array, real_array
from .contour import _bulk_edges, _integrate, _level
from .traces import _solve

def flow_gradient_at_zero(theory, psi_n, psi_p, t, m) -> tuple[float, float]:
    """``(dE_test/dT, dE_train/dT)`` at ``T = 0``: ``-2 sqrt(Delta) tr(C^T V)`` and ``-2 tr(C^T C)``
    (module docstring), from the engine-derived traces without resolvent."""
    m = parse_m(m)
    params = theory.solver_params(psi_n, psi_p, t, 1.0, m)
    kind = m_kind(m)
    vals = [_solve(kind, k, params) for k in ("moment_test", "moment_train")]
    if not all(bool(v.converged) for v in vals):
        raise ConvergenceError("the moments at T = 0 did not converge", vals[0])
    Delta = float(params["Delta"])
    return (-2 * math.sqrt(Delta) * float(np.real(vals[0].value)), -2 * float(np.real(vals[1].value)))


# -- public API -------------------------------------------------------------------------------

@dataclass(frozen=True)
class TimeErrors:
    """Learning curves at training times ``T`` (arrays of the broadcast shape).

    ``test``, ``train``, ``dsm_test_loss``: NaN where not resolved; ``test_error``,
    ``train_error``: quadrature error estimates (difference between the rule on all nodes and
    on every other node; the real parts of the complex sums, whose imaginary parts are also
    folded in); ``converged``: traces converged, mass check passed and estimates ``<= tol``;
    ``nodes``: contour nodes used per point; ``mass_error``: the mass check per point.
    """

    test: np.ndarray
    train: np.ndarray
    dsm_test_loss: np.ndarray
    test_error: np.ndarray
    train_error: np.ndarray
    converged: np.ndarray
    nodes: np.ndarray
    mass_error: np.ndarray


def errors_at_time(theory, psi_n, psi_p, t, lam, m, train_time, *, tol: float = 1e-8, nodes: int | None = None,
                   max_nodes: int = 512, quantities=("test", "train")) -> TimeErrors:
    """Test error, train error and DSM test loss of gradient flow stopped at ``train_time``.

    All arguments broadcast; ``train_time`` ``T >= 0`` (``math.inf``: the ridge solution,
    or the minimum-norm interpolator at ``lam = 0``); ``lam >= 0``.  One contour solve per
    distinct ``(psi_n, psi_p, t, m)`` serves every ``T`` and ``lam``.  ``tol``: the absolute
    accuracy a value must have, by its quadrature error estimate, not to be flagged; the
    number of contour nodes doubles from 32 until every requested value meets it (at most
    ``max_nodes``), or is fixed by ``nodes`` (divisible by 4).  ``quantities=("train",)`` skips
    the two-resolvent trace (the test error is then NaN): enough for memorisation times.
    Exactly at ``T = 0`` the values are ``Delta_t`` and 1 (``B = 0``).

    >>> import pencils
    >>> e = errors_at_time(pencils.build("relu"), 2.0, 0.5, 0.5, 1e-3, "inf", [0.0, 10.0, 1000.0])
    >>> bool(e.converged.all()), float(e.test[0]) == -math.expm1(-1.0)
    (True, True)
    """
    arrays = [real_array(name, x) for name, x in zip(("psi_n", "psi_p", "t"), (psi_n, psi_p, t))]
    arrays += [real_array("lam", lam, allow_zero=True),
               real_array("train_time", train_time, allow_zero=True, allow_inf=True)]
    if quantities not in (("test", "train"), ("train",)):
        raise ValueError(f"quantities must be ('test', 'train') or ('train',), got {quantities!r}")
    with_test = "test" in quantities
    if nodes is not None and (int(nodes) != nodes or nodes < 8 or nodes % 4):
        raise ValueError(f"nodes must be an integer >= 8 divisible by 4, got {nodes!r}")
    m_vals = parse_m_array(m)
    shape = np.broadcast_shapes(*(x.shape for x in arrays), m_vals.shape)
    pn, pp, tt, ll, TT, mm = (np.broadcast_to(x, shape).reshape(-1) for x in (*arrays, m_vals))
    size = pn.size
    out = {k: np.full(size, np.nan) for k in ("test", "train", "test_error", "train_error", "mass_error")}
    conv = np.zeros(size, dtype=bool)
    used = np.zeros(size, dtype=int)
    keys = np.stack([pn, pp, tt, mm], axis=1)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    kinds = np.array([m_kind(v) for v in uniq[:, 3]])
    for kind in ("1", "finite", "inf"):
        gs = np.nonzero(kinds == kind)[0]
        if not len(gs):
            continue
        U = uniq[gs]
        if not np.any(TT[np.isin(inv, gs)] != 0):  # T = 0 only: B = 0, no spectrum needed
            for g in gs:
                zero = np.flatnonzero(inv == g)
                out["train"][zero], out["train_error"][zero], conv[zero] = 1.0, 0.0, True
                if with_test:
                    out["test"][zero], out["test_error"][zero] = -np.expm1(-2.0 * tt[zero]), 0.0
            continue
        m_par = U[:, 3] if kind == "finite" else (1 if kind == "1" else math.inf)
        raw = theory.solver_params(U[:, 0], U[:, 1], U[:, 2], 1.0, m_par)
        params = {k: np.broadcast_to(np.asarray(v, dtype=float), (len(gs),)).copy() for k, v in raw.items()}
        Delta = params["Delta"]
        scale = params["mu1"] ** 2 + params["mu_star"] ** 2
        x_lo, x_hi, ok = _bulk_edges(kind, params, scale)
        if kind == "inf":
            # K = Ubar = mu_f^2 + (rank n + d): an atom at mu_f^2 of mass psi_p - psi_n - 1 when
            # p > n + d, which the density scan cannot see; the whole spectrum is >= mu_f^2
            mf2 = params["mu_f"] ** 2
            x_lo = np.where(mf2 > 0, np.minimum(x_lo, mf2), x_lo)
        sels = [np.nonzero(inv == g)[0] for g in gs]
        for k in np.nonzero(~ok)[0]:          # no bulk found: nothing to integrate on
            out["mass_error"][sels[k]] = np.inf
        for k, sel in enumerate(sels):        # T = 0 is exact (B = 0); the rest NaN until resolved
            zero = sel[TT[sel] == 0]
            out["train"][zero], out["train_error"][zero], conv[zero] = 1.0, 0.0, True
            if with_test:
                out["test"][zero], out["test_error"][zero] = Delta[k], 0.0
        # T = 0 alone needs no spectrum (and _integrate needs at least one T)
        active = np.nonzero(ok & np.array([bool(np.any(TT[sel] != 0)) for sel in sels]))[0]
        n_k, prev = (int(nodes) if nodes is not None else 32), None
        while len(active):
            lv = _level(kind, {q: v[active] for q, v in params.items()}, x_lo[active], x_hi[active], n_k,
                        prev, with_test)
            again = []
            for a_idx, k in enumerate(active):
                sel = sels[k]
                sel = sel[TT[sel] != 0]
                if not lv.ok[a_idx]:
                    out["mass_error"][sels[k]] = lv.mass_error[a_idx]
                    used[sels[k]] = n_k
                    continue
                T, L = TT[sel], ll[sel]
                test, train = _integrate(lv, a_idx, T, L, Delta[k], 1)
                test2, train2 = _integrate(lv, a_idx, T, L, Delta[k], 2)
                e_train = np.abs(train - train2) + np.abs(train.imag)
                good = (e_train <= tol) & (lv.mass_error[a_idx] <= max(1e-6, tol) * params["psi_p"][k])
                if with_test:
                    e_test = np.abs(test - test2) + np.abs(test.imag)
                    good &= e_test <= tol
                if nodes is None and not good.all() and 2 * n_k <= max_nodes:
                    again.append(a_idx)
                    continue
                if with_test:
                    out["test"][sel] = np.where(good, test.real, np.nan)
                    out["test_error"][sel] = e_test
                out["train"][sel] = np.where(good, train.real, np.nan)
                out["train_error"][sel] = e_train
                conv[sel] = good
                out["mass_error"][sels[k]] = lv.mass_error[a_idx]
                used[sels[k]] = n_k
            prev = lv.take(np.array(again, dtype=int)) if again else None
            active = active[np.array(again, dtype=int)] if again else active[:0]
            n_k *= 2
    a_sq = np.exp(-2.0 * tt)
    return TimeErrors(test=out["test"].reshape(shape), train=out["train"].reshape(shape),
                      dsm_test_loss=(out["test"] + a_sq).reshape(shape),
                      test_error=out["test_error"].reshape(shape), train_error=out["train_error"].reshape(shape),
                      converged=conv.reshape(shape), nodes=used.reshape(shape),
                      mass_error=out["mass_error"].reshape(shape))
