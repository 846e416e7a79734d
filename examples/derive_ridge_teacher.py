"""Your own model, 2: ridge regression with a random teacher, averaged automatically.

Data ``X`` (``n x d``, ``N(0, 1)`` entries), teacher ``beta`` with ``E[beta betaᵀ] = (r2/d) I``,
labels ``y = X beta + eps`` with ``Var eps = sigma2``, ridge ``beta_hat = (XᵀX/n + lam)^{-1}
Xᵀy/n``. In the language (``X = sqrt(d) X_e``, ``eps = sqrt(d) e``):
``beta_hat = (gamma S + lam)^{-1} gamma (S beta + X_eᵀ e)`` with ``S = X_eᵀX_e`` and
``gamma = d/n``. The risk ``E|beta_hat − beta|²`` is a quadratic form in the random vectors
``beta`` and ``e``; ``pencils.average`` takes its expectation into traces, and
``pencils.derive`` derives them. Checked against the closed form (e.g. Hastie, Montanari,
Rosset and Tibshirani, 2022) down to ``lam = 1e-9`` at the interpolation peak ``gamma = 1``,
and against a Monte Carlo.

    python examples/derive_ridge_teacher.py [OUTPUT.png]
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import sympy  # noqa: E402

import mpmath  # noqa: E402

import pencils  # noqa: E402
from derivations.closed_forms import ridge_risk_closed  # noqa: E402

gamma, lam = sympy.symbols("gamma lam", positive=True)
r2, sigma2 = sympy.symbols("r2 sigma2", nonnegative=True)
n = pencils.Space("n", 1 / gamma)
X = pencils.gaussian("X", n, pencils.D)
beta = pencils.gaussian_vector("beta", pencils.D, r2)
e = pencils.gaussian_vector("e", n, sigma2)
S = X.T @ X
beta_hat = pencils.inverse(gamma * S + lam) @ (gamma * (S @ beta + X.T @ e))
risk = pencils.average((beta_hat - beta).T @ (beta_hat - beta))
model = pencils.derive(risk)

g = np.geomspace(0.1, 10, 200)
lams = np.array([1e-9, 1e-3, 1e-1])[:, None]
sol = model.solve(gamma=g, lam=lams, r2=1.0, sigma2=0.5)
with mpmath.workdps(50):  # the closed form itself cancels at lam = 1e-9: evaluate it at 50 digits
    exact = np.array([[float(ridge_risk_closed(mpmath.mpf(gi), mpmath.mpf(lv), 1, mpmath.mpf("0.5"), mp=True))
                       for gi in g] for lv in lams[:, 0]])
rel = float(np.max(np.abs(sol.value - exact) / exact))
assert rel < 1e-8, rel
print(f"max relative difference to the closed form, {sol.value.size} points: {rel:.1e} "
      f"({int(sol.refined.sum())} refined above double precision)")

mc = model.simulate(d=(100, 200, 400), seeds=6, gamma=0.5, lam=0.1, r2=1.0, sigma2=0.5)
th = float(model.solve(gamma=0.5, lam=0.1, r2=1.0, sigma2=0.5).value)
print(f"gamma = 1/2, lam = 0.1: theory {th:.6f}, Monte Carlo d -> inf {mc.limit['value']:.6f} "
      f"+- {mc.limit_se['value']:.1e}")
assert abs(th - mc.limit["value"]) < 4 * mc.limit_se["value"] + 1e-3

fig, ax = plt.subplots(figsize=(6, 3.6))
for row, lv in enumerate(lams[:, 0]):
    ax.plot(g, sol.value[row], label=rf"$\lambda = {lv:g}$")
    ax.plot(g[::10], exact[row][::10], "k.", ms=3)
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel(r"$\gamma = d/n$")
ax.set_ylabel(r"risk $E|\hat\beta - \beta|^2$")
ax.set_title("ridge with a random teacher: derived (lines) and closed form (dots)", fontsize=9)
ax.legend()
fig.tight_layout()
out = sys.argv[1] if len(sys.argv) > 1 else "derive_ridge_teacher.png"
fig.savefig(out, dpi=100)
print(f"wrote {out}")
