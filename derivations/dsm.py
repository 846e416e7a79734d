"""DSM learning curves derived by the engine, for ``m = 1``, every finite ``m`` and ``m = inf``.

Model: ``MODEL.md`` (see ``docs/MODEL.md``).  Gaussian equivalence replaces the training
features by ``phi_ij = mu0 + mu1 W y_ij/sqrt(d) + mu_s xi_i + mu_f xi_ij`` and the test
features by ``mu0 + mu1 W y/sqrt(d) + mu_* xi``.  The constant ``mu0`` is a rank-one
perturbation of the feature matrices and drops out of every normalised trace in the limit
(the validation checks this against simulation: ``tests/test_dsm_theory.py``).

**Helmert rotation.**  For each data point rotate its ``m`` rows (of the features and of
the targets ``Z`` together; the ridge solution and both errors are invariant) by an
orthogonal ``m x m`` matrix whose first row is ``1/sqrt(m)``.  The ``m`` draws of point
``i`` become one *signal* row and ``m - 1`` pure-noise rows:

    signal:  phi = mu1 (sqrt(m) a x_i + sqrt(Delta) z0_i) W^T/sqrt(d) + sqrt(m) mu_s xi_i + mu_f xi0_i,
             target z0_i;
    noise:   phi = mu1 sqrt(Delta) z_r W^T/sqrt(d) + mu_f xi_r,   target z_r   (n (m-1) rows),

all ``z``, ``xi`` i.i.d. standard Gaussian.  So ``m`` enters only through the size
``psi_n (m - 1) d`` of the noise block and the scale ``sqrt(m)``.

**Traces.**  In the engine's convention (Gaussians ``N(0, 1/d)``, ``X = sqrt(d) X_e``):
``F_s = mu1 (sqrt(m) a X_e + sqrt(Delta) Z0_e) W_e^T + sqrt(m) mu_s Xi_e + mu_f Xi0_e``,
``F_r = mu1 sqrt(Delta) Z1_e W_e^T + mu_f Xi1_e``, ``N = psi_n m``,

    R = (F^T F / N + lam)^{-1},   G = F^T Z_e,   B^T = -R G / N,
    E_test  = Delta + tr(B U B^T) + 2 sqrt(Delta) tr(B V),   U = mu1^2 W_e W_e^T + mu_*^2,  V = mu1 W_e,
    E_train = 1 + [tr(B F^T F B^T) + 2 tr(B G)] / N,

with ``tr = (1/d) Tr``.  For ``m = inf`` the noise block is averaged exactly:
``Ubar = Fbar^T Fbar / psi_n + mu1^2 Delta W_e W_e^T + mu_f^2`` with
``Fbar = a mu1 X_e W_e^T + mu_s Xi_e``, ``Vbar = mu1 sqrt(Delta) W_e``, ``B^T = -(Ubar + lam)^{-1} Vbar``,
``E_train = 1 + tr(B Ubar B^T) + 2 tr(B Vbar)``, ``E_test`` as above.
``m = 1`` has no noise block.  Nothing here is a hand-typed fixed-point equation: the
engine linearises these traces and derives the equations (:mod:`pencils.freeprob`).

References: George, Veiga, Macris (2025) for the model and the ``m = 1``, ``m = inf``
curves; the Helmert rotation is the classical orthogonal contrast matrix (Helmert 1876).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sympy

from pencils.expr import S_NU, D, Space, SpectralMean, Trace, gaussian, inverse, spectral, trace
from pencils.freeprob import FixedPointSystem, equations

from .model import QUANTITIES, m_kind

__all__ = ["SYMBOLS", "RELATIONS", "m_kind", "dsm_matrices", "dsm_traces", "dsm_system", "DSMEquations", "dsm_equations"]

psi_n, psi_p, lam, m_ = sympy.symbols("psi_n psi_p lam m", positive=True)
a_, Delta_ = sympy.symbols("a Delta", positive=True)
mu1_ = sympy.Symbol("mu1", real=True)
mu_s_, mu_f_, mu_star_ = sympy.symbols("mu_s mu_f mu_star", nonnegative=True)

#: The parameters of the derived equations, by name.
SYMBOLS = {s.name: s for s in (psi_n, psi_p, lam, m_, a_, Delta_, mu1_, mu_s_, mu_f_, mu_star_)}

#: Identities between them (MODEL.md: ``Delta_t = 1 - a_t^2``; the feature noise is the part of
#: ``mu_*^2`` not shared by the draws of a sample, ``mu_f^2 = mu_*^2 - mu_s^2``), substituted
#: in the printed equations (:meth:`derivations.theory.DSMTheory.equations_latex`).
RELATIONS = {Delta_: 1 - a_**2, mu_f_: sympy.sqrt(mu_star_**2 - mu_s_**2)}

def dsm_matrices(kind: str, structured: bool = False) -> tuple:
    """``(K, C, U, V, constant)`` of the Gaussian-equivalent model (module docstring):
    the ridge solution is ``B^T = -(K + lam)^{-1} C`` and

        E_test  = constant + tr(B U B^T) + 2 sqrt(Delta) tr(B V),
        E_train = 1 + tr(B K B^T) + 2 tr(B C),

    with ``K = F^T F / N``, ``C = F^T Z / N`` (``m = inf``: their noise averages ``Ubar``,
    ``Vbar``).  Shared with :mod:`derivations.training_time` (gradient flow: ``g_T(K) C``).

    ``structured``: data ``x = Sigma^{1/2} x0`` (MODEL.md, "Structured data"): the data
    matrix becomes ``X Sigma^{1/2}``, the test features have the linear covariance
    ``mu1^2 W S_t W^T`` with ``S_t = a^2 Sigma + Delta``, and the score error gains the
    constant ``Delta tr(S_t^{-1})/d = Delta E_nu[1/(a^2 s + Delta)]`` (the cross term is
    unchanged: by Stein's lemma ``E[phi y^T] S_t^{-1} = mu1 W / sqrt(d)``).  The
    Gaussian-equivalence numbers are then those at variance ``v_t = a^2 tau + Delta``.
    """
    n, p = Space("n", psi_n), Space("p", psi_p)
    X, W = gaussian("X", n, D), gaussian("W", p, D)
    if structured:
        X = X @ spectral(sympy.sqrt(S_NU))
        U = mu1_**2 * W @ spectral(a_**2 * S_NU + Delta_) @ W.T + mu_star_**2
        constant = Delta_ * SpectralMean(1 / (a_**2 * S_NU + Delta_))
    else:
        U = mu1_**2 * W @ W.T + mu_star_**2
        constant = Delta_
    V = mu1_ * W
    sd = sympy.sqrt(Delta_)
    if kind == "inf":
        Xi = gaussian("Xi", n, p)
        Fbar = a_ * mu1_ * X @ W.T + mu_s_ * Xi
        K = Fbar.T @ Fbar / psi_n + mu1_**2 * Delta_ * W @ W.T + mu_f_**2
        C = mu1_ * sd * W
    elif kind in ("1", "finite"):
        m = sympy.Integer(1) if kind == "1" else m_
        Z0, Xi, Xi0 = gaussian("Z0", n, D), gaussian("Xi", n, p), gaussian("Xi0", n, p)
        F = mu1_ * (sympy.sqrt(m) * a_ * X + sd * Z0) @ W.T + sympy.sqrt(m) * mu_s_ * Xi + mu_f_ * Xi0
        FtF, G = F.T @ F, F.T @ Z0
        if kind == "finite":
            r = Space("r", psi_n * (m_ - 1))
            Z1, Xi1 = gaussian("Z1", r, D), gaussian("Xi1", r, p)
            Fr = mu1_ * sd * Z1 @ W.T + mu_f_ * Xi1
            FtF, G = FtF + Fr.T @ Fr, G + Fr.T @ Z1
        N = psi_n * m
        K, C = FtF / N, G / N
    else:
        raise ValueError(f"unknown m kind {kind!r}; use '1', 'finite' or 'inf'")
    return K, C, U, V, constant


def dsm_traces(kind: str, structured: bool = False) -> dict[str, Trace]:
    """``{"test": E_test, "train": E_train}`` as normalised traces (:func:`dsm_matrices`)."""
    K, C, U, V, constant = dsm_matrices(kind, structured)
    Bt = -inverse(K + lam) @ C
    train = 1 + trace(Bt.T @ K @ Bt) + 2 * trace(Bt.T @ C)
    test = constant + trace(Bt.T @ U @ Bt) + 2 * sympy.sqrt(Delta_) * trace(Bt.T @ V)
    return {"test": test, "train": train}


@lru_cache(maxsize=None)
def dsm_system(kind: str, quantity: str, structured: bool = False) -> FixedPointSystem:
    """The fixed-point system of one error (disk-cached by :func:`pencils.freeprob.equations`)."""
    if quantity not in QUANTITIES:
        raise ValueError(f"unknown quantity {quantity!r}; use one of {QUANTITIES}")
    return equations(dsm_traces(kind, structured)[quantity])


@dataclass(frozen=True)
class DSMEquations:
    """The derived equations of ``E_test`` and ``E_train`` for one kind of ``m``.

    ``test`` and ``train`` are :class:`pencils.freeprob.FixedPointSystem` objects
    (sympy ``L0``, ``eta``, unknowns, read-out); :meth:`latex` renders both.
    """

    m: object
    kind: str
    test: FixedPointSystem
    train: FixedPointSystem

    @property
    def sympy(self) -> dict:
        """Sympy objects of both systems: ``M = L0 - eta(tau)``, the linear forms and read-outs."""
        out = {}
        for q in QUANTITIES:
            S = getattr(self, q)
            out[q] = dict(M=S.M(), unknowns=S.taus,
                          equations=[sympy.Eq(t, S.ell(k)) for k, t in enumerate(S.taus)],
                          readout=S.readout_expr())
        return out

    def latex(self) -> str:
        parts = []
        for q in QUANTITIES:
            S = getattr(self, q)
            parts.append(f"% E_{q} (m = {self.m}): pencil of {S.size} blocks, {S.n_unknowns} unknowns\n"
                         + S.latex())
        return "\n\n".join(parts)

    def __repr__(self) -> str:
        return f"DSMEquations(m={self.m}, test={self.test!r}, train={self.train!r})"


def dsm_equations(m) -> DSMEquations:
    kind = m_kind(m)
    return DSMEquations(m=m, kind=kind, test=dsm_system(kind, "test"), train=dsm_system(kind, "train"))
