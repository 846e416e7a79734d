"""Your own model, 3: ridge on two concatenated random-feature layers.

Two Gaussian-equivalent layers ``F_a = mu_a X W_aᵀ + s_a Xi_a`` (``p_a`` features) and
``F_b = mu_b X W_bᵀ + s_b Xi_b`` (``p_b`` features) on the same data, concatenated
(``pencils.hstack``) into ``F = [F_a, F_b]``, ridge on a linear teacher ``y = X beta``
(``|beta|² = r2``). The test error of the random-features model (Mei and Montanari, 2019)
generalises with ``V = [mu_a W_a; mu_b W_b]`` (``pencils.vstack``) and the feature
covariance ``Sigma = V Vᵀ + diag(s_a² I, s_b² I)`` (``pencils.block``):

    E = r2 + tr P [ -2 r2 / psi_n Fᵀ X Vᵀ + Sigma P Fᵀ (r2 X Xᵀ) F / psi_n² ],
    P = (FᵀF / psi_n + lam)^{-1}.

No closed form is known to us: checked against a Monte Carlo of the same expression at
``d = 100, 200, 400`` extrapolated to ``d -> inf``. ``mu_a = 0`` (a pure-noise layer) is a
legal value. With ``p_b = 0`` the model is the one-layer random-features model.

    python examples/derive_concatenated_layers.py [OUTPUT.png]
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import sympy  # noqa: E402

import pencils  # noqa: E402

psi_n, psi_a, psi_b, lam = sympy.symbols("psi_n psi_a psi_b lam", positive=True)
mu_a, mu_b = sympy.symbols("mu_a mu_b", real=True)
s_a, s_b, r2 = sympy.symbols("s_a s_b r2", nonnegative=True)
n, pa, pb = pencils.Space("n", psi_n), pencils.Space("pa", psi_a), pencils.Space("pb", psi_b)
X = pencils.gaussian("X", n, pencils.D)
Wa, Wb = pencils.gaussian("Wa", pa, pencils.D), pencils.gaussian("Wb", pb, pencils.D)
V = pencils.vstack([mu_a * Wa, mu_b * Wb])
F = X @ V.T + pencils.hstack([s_a * pencils.gaussian("Xia", n, pa), s_b * pencils.gaussian("Xib", n, pb)])
P = pencils.inverse(F.T @ F / psi_n + lam)
Sigma = V @ V.T + pencils.block([[s_a**2 * pencils.identity(pa), 0], [0, s_b**2 * pencils.identity(pb)]])
inner = -2 * r2 / psi_n * F.T @ X @ V.T + Sigma @ P @ F.T @ (r2 * X @ X.T) @ F / psi_n**2
model = pencils.derive(r2 + pencils.trace(P @ inner))
print(model, "core unknowns:", model.reduced.sizes["core"])

point = dict(psi_n=1.0, psi_a=0.6, psi_b=0.8, lam=1e-2, mu_a=0.8, mu_b=0.5, s_a=0.6, s_b=0.9, r2=1.0)
th = float(model.solve(**point).value)
mc = model.simulate(d=(100, 200, 400), seeds=6, **point)
print(f"theory {th:.6f}, Monte Carlo d -> inf {mc.limit['value']:.6f} +- {mc.limit_se['value']:.1e}")
assert abs(th - mc.limit["value"]) < 4 * mc.limit_se["value"] + 1e-3

psi = np.geomspace(0.1, 5, 120)
curves = {mu: model.solve(**dict(point, psi_a=psi, psi_b=psi, mu_a=mu)) for mu in (0.8, 0.0)}
assert all(c.converged.all() and np.isfinite(c.value).all() for c in curves.values())

fig, ax = plt.subplots(figsize=(6, 3.6))
for mu, c in curves.items():
    ax.plot(2 * psi, c.value, label=rf"$\mu_a = {mu:g}$" + (" (pure-noise layer a)" if mu == 0 else ""))
ax.errorbar([point["psi_a"] + point["psi_b"]], [mc.limit["value"]], yerr=[2 * mc.limit_se["value"]], fmt="ko",
            ms=3, label=r"Monte Carlo, $d \to \infty$")
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel(r"$(p_a + p_b)/d$ (equal layers)")
ax.set_ylabel("test error")
ax.set_title(r"two concatenated random-feature layers, $\psi_n = 1$, $\lambda = 10^{-2}$", fontsize=9)
ax.legend(fontsize=8)
fig.tight_layout()
out = sys.argv[1] if len(sys.argv) > 1 else "derive_concatenated_layers.png"
fig.savefig(out, dpi=100)
print(f"wrote {out}")
