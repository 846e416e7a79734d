"""A new activation in three lines.

Any sympy expression in one symbol (or a Python callable) is an activation: its
Gaussian-equivalence numbers ``mu0, mu1, mu_*^2, mu_s^2(t)`` are computed from it, and the
DSM learning curves follow from the derived fixed-point system.  Here
``rho(x) = tanh(x) + x/4`` at ``psi_n = 1``, ``t = 0.5``, ``lam = 1e-2``, for ``m = 1`` and
``m = inf``.

    python examples/new_activation.py [OUTPUT.png]
"""
import math
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import sympy  # noqa: E402

import pencils  # noqa: E402

psi_p = np.geomspace(0.1, 10, 40)

# The three lines: a symbol, an expression, its theory.
x = sympy.Symbol("x")
theory = pencils.build(sympy.tanh(x) + x / 4)
errors = theory.errors(psi_n=1, psi_p=psi_p, t=0.5, lam=1e-2, m=[[1], [math.inf]], throw=False)

fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
for row, label in enumerate(("$m = 1$", r"$m = \infty$")):
    ok = errors.converged[row]  # unconverged points are NaN and flagged: not drawn
    axes[0].plot(psi_p[ok], errors.test[row][ok], label=label)
    axes[1].plot(psi_p[ok], errors.train[row][ok], label=label)
for ax, name in zip(axes, (r"test error $E_{\mathrm{test}}$", r"train error $E_{\mathrm{train}}$")):
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.axvline(1.0, color="grey", ls=":", lw=1)
    ax.set_xlabel(r"$\psi_p = p/d$")
    ax.set_ylabel(name)
    ax.legend()
fig.suptitle(rf"$\rho(x) = \tanh(x) + x/4$: $\psi_n = 1$, $t = 0.5$, $\lambda = 10^{{-2}}$; "
             f"{theory.coefficients}", fontsize=8)
fig.tight_layout()
out = sys.argv[1] if len(sys.argv) > 1 else "new_activation.png"
fig.savefig(out, dpi=100)
print(f"wrote {out}")
