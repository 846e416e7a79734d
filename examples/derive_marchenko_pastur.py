"""Your own model, 1: the Marchenko–Pastur law from its matrix expression.

``S(z) = lim (1/d) tr (XᵀX/n − z)^{-1}`` for ``X`` of size ``n x d`` with ``N(0, 1)``
entries and ``gamma = d/n``. In the language (Gaussians have ``N(0, 1/d)`` entries) that
is ``tr (gamma X_eᵀX_e − z)^{-1}``. ``pencils.derive`` turns it into a compiled solver; we
evaluate it just above the real axis, read off the density ``−Im S(x + i eta) / pi`` and
compare with the closed form (Marchenko and Pastur, 1967) and with a Monte Carlo.

    python examples/derive_marchenko_pastur.py [OUTPUT.png]
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import sympy  # noqa: E402

import pencils  # noqa: E402
from derivations.closed_forms import mp_stieltjes_closed  # noqa: E402

gamma, z = sympy.Symbol("gamma", positive=True), sympy.Symbol("z")
X = pencils.gaussian("X", pencils.Space("n", 1 / gamma), pencils.D)
model = pencils.derive(pencils.trace(pencils.inverse(gamma * X.T @ X - z)), continuation=None)

x = np.linspace(-0.5, 3.5, 400)
zz = x + 0.02j
S = model.solve(gamma=0.5, z=zz).value
exact = mp_stieltjes_closed(0.5, zz)
worst = float(np.max(np.abs(S - exact)))
assert worst < 1e-10, worst
print(f"max |S - closed form| on {x.size} points: {worst:.1e}")

mc = model.simulate(d=(100, 200, 400), seeds=4, gamma=0.5, z=1.0 + 0.5j)
th = complex(model.solve(gamma=0.5, z=1.0 + 0.5j).value)
print(f"at z = 1 + 0.5i: theory {th:.6f}, Monte Carlo d -> inf {mc.limit['value']:.6f} "
      f"+- {mc.limit_se['value']:.1e}")
assert abs(th - mc.limit["value"]) < 4 * mc.limit_se["value"] + 1e-3

fig, ax = plt.subplots(figsize=(6, 3.6))
ax.plot(x, -S.imag / np.pi, label=r"derived: $-\mathrm{Im}\,S(x + 0.02i)/\pi$")
ax.plot(x, -exact.imag / np.pi, "--", label="closed form")
ax.set_xlabel("$x$")
ax.set_ylabel("density")
ax.set_title(r"Marchenko–Pastur, $\gamma = d/n = 1/2$, from its matrix expression", fontsize=9)
ax.legend()
fig.tight_layout()
out = sys.argv[1] if len(sys.argv) > 1 else "derive_marchenko_pastur.png"
fig.savefig(out, dpi=100)
print(f"wrote {out}")
