"""The interpolation peak in high precision.

Near ``p = n`` with a tiny ridge the fixed-point equations are so ill-conditioned that
double precision loses its digits while the residual stays tiny; the rounding-error check
flags those points (``converged`` False, value NaN) instead of returning noise.
``precision=20`` re-solves them with the mpmath backend (20 digits, continuation in
``lam`` from where double precision is still accurate).  relu, ``psi_n = 1``, ``m = 1``,
``t = 0.5``, ``lam = 1e-5``: the mpmath value at ``p = n`` checks an accepted
double-precision point, the one at the first flagged point replaces a rejected one.

    python examples/high_precision_peak.py [OUTPUT.png]
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import pencils  # noqa: E402

theory = pencils.build("relu")
params = dict(psi_n=1.0, t=0.5, lam=1e-5, m=1)
psi_p = np.linspace(0.9, 1.1, 41)
double = theory.errors(psi_p=psi_p, throw=False, **params)
flagged = psi_p[~double.converged]
# Re-solved with 20 digits (a few seconds each): p = n, and the first flagged point.
fixed = np.array([1.0, flagged[0] if len(flagged) else 1.05])
high = theory.errors(psi_p=fixed, precision=20, **params)
k = int(np.argmin(abs(psi_p - 1.0)))
if double.converged[k]:  # an accepted double-precision value agrees with 20 digits
    assert abs(double.test[k] - float(high.test[0])) <= 1e-6 * float(high.test[0])

fig, ax = plt.subplots(figsize=(6, 4))
ok = double.converged
ax.plot(psi_p, np.where(ok, double.test, np.nan), "o-", ms=3, label="double precision (accepted points)")
for x in flagged:
    ax.axvline(x, color="0.85", lw=2, zorder=0)
ax.plot([], [], color="0.85", lw=2, label="flagged by the rounding check")
ax.plot(fixed, [float(v) for v in high.test], "D", color="C3", ms=7, label="mpmath, 20 digits")
ax.set_yscale("log")
ax.set_xlabel(r"$\psi_p = p/d$")
ax.set_ylabel(r"test error $E_{\mathrm{test}}$")
ax.set_title(r"relu, $\psi_n = 1$, $m = 1$, $t = 0.5$, $\lambda = 10^{-5}$", fontsize=9)
ax.legend(fontsize=8)
fig.tight_layout()
out = sys.argv[1] if len(sys.argv) > 1 else "high_precision_peak.png"
fig.savefig(out, dpi=100)
print(f"wrote {out}: {int(ok.sum())} of {len(psi_p)} double-precision points accepted; "
      + ", ".join(f"E_test({x:.3f}) = {float(v):.10g}" for x, v in zip(fixed, high.test)))
