"""Markdown tables and figures of the real-data experiments (:mod:`validation.images.experiments`):
learning curves, real vs Gaussian data, the phase diagram, the memorised fraction and samples."""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import data as _data

if TYPE_CHECKING:
    from .experiments import CurvePoint, MemPoint, PhasePoint


def _fmt(x, digits=4) -> str:
    if isinstance(x, float):
        if math.isnan(x):
            return "–"
        return f"{x:.{digits}g}"
    return str(x)


def curves_table(rows: list[CurvePoint]) -> str:
    """Markdown: real vs Gaussian-same-spectrum (vs theory when present), one line per point."""
    real = {(r.dataset, r.m, r.t, r.psi_p): r for r in rows if r.kind == "real"}
    gauss = {(r.dataset, r.m, r.t, r.psi_p): r for r in rows if r.kind == "gaussian"}
    head = ("| dataset | m | t | ψ_p | DSM test real | DSM test Gauss | DSM theory | rel.dev real | "
            "rel.dev Gauss | train real | train Gauss | train theory | rel.dev real | rel.dev Gauss |")
    spiked = any(r.spikes for r in rows)
    if spiked:
        head += (" DSM spiked | rel.dev real | rel.dev Gauss | train spiked | rel.dev real | rel.dev Gauss | "
                 "spiked est. error |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for key, r in real.items():
        g = gauss.get(key)
        pm = lambda v, se: f"{v:.4g} ± {se:.1g}"  # noqa: E731
        cells = [
            r.dataset, r.m, _fmt(r.t), _fmt(r.psi_p, 3), pm(r.dsm_test, r.dsm_test_se),
            pm(g.dsm_test, g.dsm_test_se) if g else "–", _fmt(r.theory_dsm_test),
            _fmt(r.rel_dev_dsm_test, 2), _fmt(g.rel_dev_dsm_test, 2) if g else "–",
            pm(r.train, r.train_se), pm(g.train, g.train_se) if g else "–", _fmt(r.theory_train),
            _fmt(r.rel_dev_train, 2), _fmt(g.rel_dev_train, 2) if g else "–"]
        if spiked:
            cells += [_fmt(r.spiked_dsm_test), _fmt(r.rel_dev_spiked_dsm_test, 2),
                      _fmt(g.rel_dev_spiked_dsm_test, 2) if g else "–", _fmt(r.spiked_train),
                      _fmt(r.rel_dev_spiked_train, 2), _fmt(g.rel_dev_spiked_train, 2) if g else "–",
                      _fmt(r.spiked_error, 2)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def real_vs_gaussian_table(rows: list[CurvePoint]) -> str:
    """Markdown: ``(images - Gaussian)/Gaussian`` of the DSM test loss and train error, one line per (dataset, m, t)."""
    gauss = {(r.dataset, r.m, r.t, r.psi_p): r for r in rows if r.kind == "gaussian"}
    groups: dict = {}
    for r in rows:
        g = gauss.get((r.dataset, r.m, r.t, r.psi_p))
        if r.kind == "real" and g is not None:
            groups.setdefault((r.dataset, r.m, r.t), []).append(
                (r.psi_p, (r.dsm_test - g.dsm_test) / g.dsm_test, (r.train - g.train) / g.train))
    if not groups:
        return ""
    psis = sorted({q for v in groups.values() for q, _, _ in v})
    cols = ", ".join(f"{q:g}" for q in psis)
    head = f"| dataset | m | t | DSM test, ψ_p = {cols} | train, ψ_p = {cols} |"
    lines = [head, "|---|---|---|---|---|"]
    for (name, m, t), v in groups.items():
        v = sorted(v)
        lines.append(f"| {name} | {m} | {t:g} | " + " ".join(f"{a:+.3f}" for _, a, _ in v) + " | "
                     + " ".join(f"{b:+.3f}" for _, _, b in v) + " |")
    return "\n".join(lines) + "\n"


def memorization_table(rows: list[MemPoint]) -> str:
    head = ("| dataset | data | d | n | p/n | m | memorised fraction | median d1/d2 | median ‖x̂‖²/d | "
            "train err (t≈0.1) | DSM test (t≈0.1) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        frac = "diverged" if r.diverged else f"{r.fraction:.3f} ± {r.fraction_se:.3f}"
        if r.diverged_seeds and not r.diverged:
            frac += f" ({r.diverged_seeds}/{r.seeds} seeds diverged)"
        lines.append("| " + " | ".join([r.dataset, r.kind, str(r.d), str(r.n), _fmt(r.p_over_n, 3), r.m, frac,
                                        _fmt(r.median_ratio, 3), _fmt(r.median_norm2_over_d, 3),
                                        _fmt(r.train_at_t_ref, 3), _fmt(r.dsm_test_at_t_ref, 3)]) + " |")
    return "\n".join(lines) + "\n"


def _colors(values):
    import matplotlib.pyplot as plt
    cmap = plt.get_cmap("viridis")
    return {v: cmap(i / max(1, len(values) - 1) * 0.85) for i, v in enumerate(values)}


def plot_curves(rows: list[CurvePoint], name: str, path: Path, theory_note: str,
                spiked_label: str | None = None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.dataset == name]
    ts = sorted({r.t for r in rows})
    ms = sorted({r.m for r in rows}, key=lambda s: math.inf if s == "inf" else int(s))
    col = _colors(ms)
    fig, axes = plt.subplots(2, len(ts), figsize=(4.2 * len(ts), 7), squeeze=False)
    for j, t in enumerate(ts):
        for i, (attr, label) in enumerate((("dsm_test", "DSM test loss"), ("train", "train error"))):
            ax = axes[i, j]
            for m in ms:
                drawn = False   # the theory lines once per m
                for kind, marker, fill in (("real", "o", True), ("gaussian", "s", False)):
                    pts = sorted((r for r in rows if r.t == t and r.m == m and r.kind == kind),
                                 key=lambda r: r.psi_p)
                    if not pts:
                        continue
                    x = [r.psi_p for r in pts]
                    y = [getattr(r, attr) for r in pts]
                    e = [getattr(r, attr + "_se") for r in pts]
                    ax.errorbar(x, y, yerr=e, fmt=marker, ms=5, color=col[m], capsize=2,
                                mfc=col[m] if fill else "none",
                                label=f"m={m} {'images' if kind == 'real' else 'Gaussian, same Σ̂'}")
                    if drawn:
                        continue
                    drawn = True
                    th = [getattr(r, "theory_" + attr) for r in pts]
                    if np.any(np.isfinite(th)):
                        ax.plot(x, th, "-", color=col[m], lw=1)
                    sp = [getattr(r, "spiked_" + attr) for r in pts]
                    if np.any(np.isfinite(sp)):
                        ax.plot(x, sp, "--", color=col[m], lw=1.3)
            if attr == "dsm_test":
                ax.axhline(next(r.dsm_floor for r in rows if r.t == t),
                           color="gray", ls=":", lw=1, label="exact Gaussian score")
            ax.set_xscale("log")
            ax.set_xticks(sorted({r.psi_p for r in rows}), [f"{v:g}" for v in sorted({r.psi_p for r in rows})])
            ax.minorticks_off()
            ax.set_yscale("log" if attr == "train" else "linear")
            ax.set_xlabel("ψ_p = p/d")
            ax.set_title(f"{label}, t = {t:g}")
    axes[0, 0].legend(fontsize=7)
    d = rows[0].d
    lines = "solid: structured-data theory"
    k = max(r.spikes for r in rows)
    if k:
        with_k = [m for m in ms if any(r.spikes for r in rows if r.m == m)]
        lines += f"; dashed: {spiked_label or f'spiked-covariance theory, k = {k} spikes'}"
        if len(with_k) < len(ms):
            lines += f" (m = {', '.join(with_k)})"
    fig.suptitle(f"{name}: RF-DSM on images (filled) and on N(0, Σ̂) (open), d = {d}, ψ_n = {rows[0].psi_n:.3g}, "
                 f"λ = {rows[0].lam:g}\n" + (f"{theory_note}; " if theory_note else "") + lines, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_phase(rows: list[PhasePoint], name: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.dataset == name]
    ms = sorted({r.m for r in rows}, key=lambda s: math.inf if s == "inf" else int(s))
    qn = sorted({r.psi_n for r in rows})
    qp = sorted({r.psi_p for r in rows})
    fig, axes = plt.subplots(1, len(ms), figsize=(4.6 * len(ms), 3.8), squeeze=False)
    for ax, m in zip(axes[0], ms):
        Z = np.full((len(qn), len(qp)), np.nan)
        for r in rows:
            if r.m == m:
                Z[qn.index(r.psi_n), qp.index(r.psi_p)] = math.log10(max(r.train_over_a2, 1e-16))
        im = ax.imshow(Z, origin="lower", aspect="auto", cmap="magma", vmin=-6, vmax=0.5)
        ax.set_xticks(range(len(qp)), [f"{v:.3g}" for v in qp])
        ax.set_yticks(range(len(qn)), [f"{v:.3g}" for v in qn])
        ax.set_xlabel("ψ_p")
        ax.set_ylabel("ψ_n")
        ax.set_title(f"m = {m}")
        fig.colorbar(im, ax=ax, label="log10 E_train / a_t²")
    fig.suptitle(f"{name}: train error relative to a_t² (t = {rows[0].t:g}, λ = {rows[0].lam:g}, d = {rows[0].d})",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_memorization(rows: list[MemPoint], name: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.dataset == name]
    ms = sorted({r.m for r in rows}, key=lambda s: math.inf if s == "inf" else int(s))
    col = _colors(ms)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for m in ms:
        for kind, ls, marker in (("real", "-", "o"), ("gaussian", "--", "s")):
            pts = sorted((r for r in rows if r.m == m and r.kind == kind), key=lambda r: r.p_over_n)
            if not pts:
                continue
            x = np.array([r.p_over_n for r in pts])
            lab = f"m={m} {'images' if kind == 'real' else 'Gaussian'}"
            f = np.array([r.fraction for r in pts])
            axes[0].errorbar(x, f, yerr=[r.fraction_se for r in pts], ls=ls, marker=marker, color=col[m],
                             mfc="none" if kind == "gaussian" else col[m], capsize=2, label=lab)
            axes[1].plot(x, [r.train_at_t_ref for r in pts], ls=ls, marker=marker, color=col[m],
                         mfc="none" if kind == "gaussian" else col[m])
            axes[2].plot(x, [r.median_norm2_over_d for r in pts], ls=ls, marker=marker, color=col[m],
                         mfc="none" if kind == "gaussian" else col[m])
    ratios = sorted({r.p_over_n for r in rows})
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(ratios, [f"{v:g}" for v in ratios])
        ax.minorticks_off()
        ax.set_xlabel("p / n = ψ_p / ψ_n")
    r0 = rows[0]
    axes[0].set_ylabel("memorised fraction (d1 < d2/3)")
    axes[0].legend(fontsize=7)
    axes[1].set_yscale("log")
    axes[1].set_ylabel(f"train error at t = {r0.t_ref:.3g}")
    axes[2].set_yscale("log")
    axes[2].set_ylabel("median ‖x̂‖²/d of samples (train ≈ 1)")
    fig.suptitle(f"{name}: samples of the learned score ({'reverse SDE' if r0.sampler == 'sde' else 'PF ODE'} + Tweedie), n = {r0.n}, d = {r0.d}, "
                 f"λ = {r0.lam:g}; missing points: sampler diverged", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_samples(kept: dict, images: _data.ImageData, name: str, path: Path, regimes) -> None:
    """Rows: training images; then for each regime 10 samples over their nearest training image."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = kept["train"]
    k = min(10, len(train))
    rows = [("training images", images.to_pixels(train[:k]))]
    for key, label in regimes:
        if key not in kept:
            continue
        Xh, mem = kept[key]
        order = np.arange(min(k, len(Xh)))
        rows.append((f"{label}: samples", images.to_pixels(Xh[order])))
        rows.append(("   nearest training image" + "  (* = memorised)", images.to_pixels(train[mem.nearest[order]])))
        rows[-1] = rows[-1] + (mem.memorized[order],)
    fig, axes = plt.subplots(len(rows), k, figsize=(1.1 * k, 1.25 * len(rows)), squeeze=False)
    for i, row in enumerate(rows):
        label, imgs = row[0], row[1]
        flags = row[2] if len(row) > 2 else None
        for j in range(k):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(imgs):
                ax.imshow(imgs[j], cmap="gray", vmin=0, vmax=1)
                if flags is not None and flags[j]:
                    ax.set_title("*", fontsize=9, pad=1)
        axes[i, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle(f"{name}: generated samples in the memorising and the generalising regime", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

