"""Your own model, 4: how much of the DSM test error is the variance over the noise draws.

The DSM model of ``MODEL.md`` at ``m = 1``, written with the engine's matrices
(:func:`derivations.dsm.dsm_matrices`): the learned score ``B`` with ``Bᵀ = −(K + lam)^{-1} C``
and ``E_test = Delta + tr(B U Bᵀ) + 2 sqrt(Delta) tr(B V)``. ``pencils.replica`` redraws the
training noise (the targets ``Z0`` and the feature noise ``Xi0``, with the data ``X``, the
features ``W`` and the data part ``Xi`` kept), giving an independent ``B'`` trained on the
same images with other noise. Then ``tr(B U B'ᵀ)`` is the energy of the noise-averaged
score and the variance over the noise draws is

    Var = tr(B U Bᵀ) − tr(B U B'ᵀ),

the part of the test error that more noise draws per image (``m``) average away. The derived
``E_test`` is checked against ``pencils.build("relu").errors``; ``Var`` against a Monte
Carlo of the same expressions.

    python examples/derive_bias_variance.py [OUTPUT.png]
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import sympy  # noqa: E402

import pencils  # noqa: E402
from derivations.dsm import SYMBOLS, dsm_matrices  # noqa: E402

lam, Delta = SYMBOLS["lam"], SYMBOLS["Delta"]
K, C, U, V, constant = dsm_matrices("1")
Bt = -pencils.inverse(K + lam) @ C
Bt2 = pencils.replica(Bt, redraw={"Z0", "Xi0"})
energy = pencils.trace(Bt.T @ U @ Bt)
model = pencils.derive({"test": constant + energy + 2 * sympy.sqrt(Delta) * pencils.trace(Bt.T @ V),
                        "variance": energy - pencils.trace(Bt.T @ U @ Bt2)})
print(model, "core unknowns:", model.reduced.sizes["core"])

theory = pencils.build("relu")
psi_p = np.geomspace(0.1, 10, 100)
p = theory.solver_params(1.0, psi_p, 0.5, 1e-2, 1)
sol = model.solve(**{k: v for k, v in p.items() if k in model.params})
ref = theory.errors(psi_n=1.0, psi_p=psi_p, t=0.5, lam=1e-2, m=1)
worst = float(np.max(np.abs(sol.test - ref.test)))
assert worst < 1e-10, worst
print(f"derived E_test vs pencils.build('relu'): max difference {worst:.1e} on {psi_p.size} points")

point = {k: float(np.ravel(v)[0]) for k, v in theory.solver_params(1.0, 2.0, 0.5, 1e-2, 1).items()
         if k in model.params}
mc = model.simulate(d=(100, 200, 400), seeds=6, **point)
th = float(model.solve(**point).variance)
print(f"psi_p = 2: variance theory {th:.6f}, Monte Carlo d -> inf {mc.limit['variance']:.6f} "
      f"+- {mc.limit_se['variance']:.1e}")
assert abs(th - mc.limit["variance"]) < 4 * mc.limit_se["variance"] + 1e-3

fig, ax = plt.subplots(figsize=(6, 3.6))
ax.plot(psi_p, sol.test, label=r"$E_{\mathrm{test}}$")
ax.plot(psi_p, sol.variance, label="variance over the noise draws")
ax.plot(psi_p, sol.test - sol.variance, label="the rest (noise-averaged score)")
ax.errorbar([2.0], [mc.limit["variance"]], yerr=[2 * mc.limit_se["variance"]], fmt="ko", ms=3,
            label=r"Monte Carlo, $d \to \infty$")
ax.set_xscale("log")
ax.set_yscale("log")
ax.axvline(1.0, color="grey", ls=":", lw=1)
ax.set_xlabel(r"$\psi_p = p/d$")
ax.set_title(r"relu, $m = 1$, $\psi_n = 1$, $t = 0.5$, $\lambda = 10^{-2}$", fontsize=9)
ax.legend(fontsize=8)
fig.tight_layout()
out = sys.argv[1] if len(sys.argv) > 1 else "derive_bias_variance.png"
fig.savefig(out, dpi=100)
print(f"wrote {out}")
