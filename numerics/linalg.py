"""Batched dense linear algebra that survives singular points: a singular point gets NaN
(and ``ok=False``) instead of an exception for the whole batch.  Shared by the raw solver
(:mod:`numerics.fixedpoint`) and the numpy stages of the reduced solver (:mod:`numerics.stages`)."""
from __future__ import annotations

import numpy as np

__all__ = ["safe_inv", "safe_cols", "safe_solve"]


def safe_inv(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched inverse; singular points get NaN (and ``ok=False``) instead of an exception."""
    try:
        G = np.linalg.inv(M)
        ok = np.all(np.isfinite(G), axis=(-2, -1))
        return G, ok
    except np.linalg.LinAlgError:
        G = np.full_like(M, np.nan)
        ok = np.zeros(M.shape[0], dtype=bool)
        for k in range(M.shape[0]):
            try:
                G[k] = np.linalg.inv(M[k])
                ok[k] = bool(np.all(np.isfinite(G[k])))
            except np.linalg.LinAlgError:
                pass
        return G, ok


def safe_cols(M: np.ndarray, cols) -> tuple[np.ndarray, np.ndarray]:
    """Columns ``cols`` of ``M^{-1}`` (all of them if ``cols`` is None) by a batched solve."""
    if cols is None:
        return safe_inv(M)
    E = np.eye(M.shape[-1], dtype=M.dtype)[:, cols]
    try:
        G = np.linalg.solve(M, np.broadcast_to(E, M.shape[:-2] + E.shape))
        return G, np.all(np.isfinite(G), axis=(-2, -1))
    except np.linalg.LinAlgError:
        G = np.full(M.shape[:-1] + (len(cols),), np.nan, dtype=M.dtype)
        ok = np.zeros(M.shape[0], dtype=bool)
        for k in range(M.shape[0]):
            try:
                G[k] = np.linalg.solve(M[k], E)
                ok[k] = bool(np.all(np.isfinite(G[k])))
            except np.linalg.LinAlgError:
                pass
        return G, ok


def safe_solve(J: np.ndarray, b: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(J, b[..., None])[..., 0]
    except np.linalg.LinAlgError:
        out = np.full_like(b, np.nan)
        for k in range(J.shape[0]):
            try:
                out[k] = np.linalg.solve(J[k], b[k])
            except np.linalg.LinAlgError:
                pass
        return out
