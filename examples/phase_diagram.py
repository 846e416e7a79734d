"""A memorisation phase diagram.

The train error relative to its generalising value ``a_t^2 = e^{-2t}`` over
``(psi_n, psi_p)`` for relu at ``m = 1``, ``t = 0.5``, ``lam = 1e-3``.  Below the
diagonal ``p = n`` the score generalises (ratio near 1); above it the random-features
score interpolates the noisy training set and the train error collapses (memorisation).
Grey pixels are points flagged by the accuracy check (``converged`` is False): tiny train
errors that double precision cannot resolve (``precision=`` resolves them).

    python examples/phase_diagram.py [OUTPUT.png]
"""
import math
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import pencils  # noqa: E402

t, lam, grid = 0.5, 1e-3, 24
psi_n, psi_p = np.meshgrid(np.geomspace(0.1, 10, grid), np.geomspace(0.1, 10, grid))
e = pencils.build("relu").errors(psi_n=psi_n, psi_p=psi_p, t=t, lam=lam, m=1, throw=False)
log_ratio = np.where(e.converged, np.log10(e.train / math.exp(-2 * t)), np.nan)

fig, ax = plt.subplots(figsize=(5.2, 4.2))
cmap = plt.get_cmap("RdBu").with_extremes(bad="0.75")
lo, hi = np.nanmin(log_ratio), np.nanmax(log_ratio)
norm = matplotlib.colors.TwoSlopeNorm(0.0, min(lo, -0.05), max(hi, 0.05))  # fitted to the data
mesh = ax.pcolormesh(psi_n, psi_p, np.ma.masked_invalid(log_ratio), cmap=cmap, norm=norm, shading="auto")
fig.colorbar(mesh, ax=ax, label=r"$\log_{10}(E_{\mathrm{train}} / a_t^2)$")
ax.plot([0.1, 10], [0.1, 10], "k:", lw=1, label="$p = n$")
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel(r"$\psi_n = n/d$")
ax.set_ylabel(r"$\psi_p = p/d$")
ax.set_title(rf"relu, $m = 1$, $t = {t}$, $\lambda = 10^{{-3}}$ (grey: flagged)", fontsize=9)
ax.legend(loc="lower right", fontsize=8)
fig.tight_layout()
out = sys.argv[1] if len(sys.argv) > 1 else "phase_diagram.png"
fig.savefig(out, dpi=100)
print(f"wrote {out}: {int(e.converged.sum())} of {e.converged.size} points resolved")
