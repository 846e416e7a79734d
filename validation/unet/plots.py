"""Tables and figures of the U-Net grid (:mod:`validation.unet.experiment`).

* ``unet.csv`` (+ JSON sidecar): one row per finished cell;
* ``unet.md``: memorised fraction (mean over seeds ± s.e.) and held-out/train DSM loss at
  ``t = 0.1`` per ``(dataset, n, m, width)``;
* ``memorization_<name>.png``: memorised fraction against ``n``, one panel per width, one line
  per ``m``;
* ``losses_<name>.png``: held-out and train DSM loss against parameters per training image,
  one row per ``t``, beside the random-features theory (``pencils.build(relu,
  covariance=spectrum of the pool)`` at ``ψ_n = 1``, ridge :data:`THEORY_LAM`) against
  ``ψ_p/ψ_n`` (the number of random features per training image; the model has ``d`` times
  as many trained parameters);
* ``training_<name>.png``: the training loss curves of every cell and the memorised fraction
  at half the budget against the whole (is the step budget enough?);
* ``samples_<name>.png``: samples next to their nearest training images.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from validation.cli.helpers import jsonable, save_table
from validation.images import data as _data
from validation.images.plots import _fmt

#: Ridge of the random-features theory curves (the ``mem_lam`` of ``dsm-curves real``).
THEORY_LAM = 1e-3
#: ``ψ_p/ψ_n`` of the theory curves.
THEORY_RATIOS = np.geomspace(0.05, 100.0, 41)


def _m_sort(m: str) -> float:
    return math.inf if m == "inf" else float(m)


def _mean_se(values) -> tuple[float, float]:
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan
    return float(v.mean()), (float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.nan)


def aggregate(rows: list[dict]) -> list[dict]:
    """Rows averaged over seeds per ``(dataset, n, m, width)``; the fraction's s.e. is the larger of
    the between-seed one and the pooled bootstrap one ``sqrt(mean(se²)/k)``."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["n"], r["m"], r["width"]), []).append(r)
    out = []
    for (name, n, m, w), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], _m_sort(kv[0][2]), kv[0][3])):
        ok = [r for r in rs if not r["diverged"]]
        frac, between = _mean_se([r["fraction"] for r in ok])
        pooled = math.sqrt(float(np.mean([r["fraction_se"] ** 2 for r in ok])) / len(ok)) if ok else math.nan
        agg = dict(dataset=name, n=n, m=m, width=w, params=rs[0]["params"], params_per_image=rs[0]["params_per_image"],
                   seeds=len(rs), diverged=len(rs) - len(ok), fraction=frac,
                   fraction_se=pooled if math.isnan(between) else max(pooled, between))
        half = [k for k in rs[0] if k.startswith("fraction_at_")]
        for k in half:
            agg[k] = _mean_se([r[k] for r in ok])[0]
        for k in rs[0]:
            if k.startswith(("held_out_loss_t", "train_loss_t")) or k in ("frozen_loss", "final_train_loss"):
                agg[k] = _mean_se([r[k] for r in rs])[0]
        out.append(agg)
    return out


def table(agg: list[dict], loss_t: float = 0.1) -> str:
    """Markdown: one line per ``(dataset, n, m, width)``."""
    half = sorted({k for a in agg for k in a if k.startswith("fraction_at_")})
    head = ("| dataset | n | m | W | params | params/n | seeds | memorised fraction | "
            + "".join(f"{k.replace('fraction_at_', 'at ')} steps | " for k in half)
            + f"held-out loss (t={loss_t:g}) | train loss (t={loss_t:g}) | frozen-pair loss |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for a in agg:
        frac = "diverged" if math.isnan(a["fraction"]) else f"{a['fraction']:.3f} ± {_fmt(a['fraction_se'], 2)}"
        lines.append("| " + " | ".join([a["dataset"], str(a["n"]), a["m"], str(a["width"]), str(a["params"]),
                                        _fmt(a["params_per_image"], 3), str(a["seeds"]), frac]
                                       + [_fmt(a.get(k, math.nan), 3) for k in half]
                                       + [_fmt(a[f"held_out_loss_t{loss_t:g}"], 4), _fmt(a[f"train_loss_t{loss_t:g}"], 4),
                                          _fmt(a["frozen_loss"], 4)]) + " |")
    return "\n".join(lines) + "\n"


def theory_curves(path: str, downsample: int, ms, times, log=print) -> dict:
    """Random-features theory (structured data, the pool's spectrum) at ``ψ_n = 1`` against
    ``ψ_p/ψ_n``: ``{(m, t): (ratios, DSM test loss, train error)}``; unconverged points are NaN."""
    import pencils

    eigs = _data.spectrum(_data.load_dataset(path, downsample=downsample).X)
    theory = pencils.build("relu", covariance=eigs)
    out = {}
    for m in ms:
        for t in times:
            e = theory.errors(psi_n=1.0, psi_p=THEORY_RATIOS, t=t, lam=THEORY_LAM, m=m, throw=False)
            conv = np.asarray(e.converged, dtype=bool)
            dsm = np.where(conv, np.asarray(e.dsm_test_loss, dtype=float), np.nan)
            train = np.where(conv, np.asarray(e.train, dtype=float), np.nan)
            if not conv.all():
                log(f"theory: {int((~conv).sum())} of {conv.size} points unconverged at m={m}, t={t} (not drawn)")
            out[(m, t)] = (THEORY_RATIOS, dsm, train)
    return out


def _colors(keys):
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("viridis")
    return {k: cmap(i / max(1, len(keys) - 1) * 0.9) for i, k in enumerate(keys)}


def plot_memorization(agg: list[dict], name: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    rows = [a for a in agg if a["dataset"] == name]
    widths = sorted({a["width"] for a in rows})
    ms = sorted({a["m"] for a in rows}, key=_m_sort)
    colors = _colors(ms)
    fig, axes = plt.subplots(1, len(widths), figsize=(3.6 * len(widths), 3.2), sharey=True, squeeze=False)
    for ax, w in zip(axes[0], widths):
        for m in ms:
            pts = sorted((a["n"], a["fraction"], a["fraction_se"]) for a in rows if a["width"] == w and a["m"] == m)
            if pts:
                n, f, se = map(np.asarray, zip(*pts))
                ax.errorbar(n, f, yerr=np.nan_to_num(se), marker="o", color=colors[m], label=f"m = {m}", capsize=2)
        params = next(a["params"] for a in rows if a["width"] == w)
        ax.set(xscale="log", xlabel="n (training images)", title=f"W = {w} ({params:,} parameters)", ylim=(-0.03, 1.03))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("memorised fraction (1/3 rule)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(f"{name}: U-Net samples that copy a training image")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_losses(agg: list[dict], name: str, path: Path, theory: dict | None, times) -> None:
    import matplotlib.pyplot as plt

    rows = [a for a in agg if a["dataset"] == name]
    ms = sorted({a["m"] for a in rows}, key=_m_sort)
    ns = sorted({a["n"] for a in rows})
    colors = _colors(ms)
    markers = dict(zip(ns, "os^Dvp"))
    ncol = 2 if theory else 1
    fig, axes = plt.subplots(len(times), ncol, figsize=(5.2 * ncol, 2.9 * len(times)), squeeze=False)
    for i, t in enumerate(times):
        ax = axes[i][0]
        for m in ms:
            for n in ns:
                pts = sorted((a["params_per_image"], a[f"held_out_loss_t{t:g}"], a[f"train_loss_t{t:g}"])
                             for a in rows if a["m"] == m and a["n"] == n)
                if not pts:
                    continue
                x, h, tr = map(np.asarray, zip(*pts))
                ax.plot(x, h, "-", marker=markers[n], color=colors[m], ms=4,
                        label=f"m = {m}" if n == ns[0] else None)
                ax.plot(x, tr, "--", marker=markers[n], color=colors[m], ms=4, mfc="none")
        ax.set(xscale="log", xlabel="U-Net parameters per training image", ylabel=f"DSM loss at t = {t:g}")
        ax.set_title(f"U-Net: held-out (solid), train (dashed); markers n = {', '.join(map(str, ns))}", fontsize=8)
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=7)
        if theory:
            ax = axes[i][1]
            for m in ms:
                key = (math.inf if m == "inf" else int(m), t)
                if key not in theory:
                    continue
                r, dsm, train = theory[key]
                ax.plot(r, dsm, "-", color=colors[m], label=f"m = {m}")
                ax.plot(r, train, "--", color=colors[m])
                if m != "inf":
                    ax.axvline(float(m), color=colors[m], lw=0.6, ls=":")
            ax.set(xscale="log", yscale="log", xlabel="ψ_p / ψ_n (random features per training image)",
                   ylabel=f"DSM test loss / train error, t = {t:g}")
            ax.set_title(f"random features, theory at ψ_n = 1, λ = {THEORY_LAM:g} (dotted: p = n m)", fontsize=8)
            ax.grid(alpha=0.3)
            if i == 0:
                ax.legend(fontsize=7)
    fig.suptitle(f"{name}: DSM loss against model size per training image")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_training(payloads: list[dict], name: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    rows = [p for p in payloads if p["row"]["dataset"] == name]
    widths = sorted({p["row"]["width"] for p in rows})
    colors = _colors(widths)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for p in rows:
        c = p["loss_curve"]
        w = p["row"]["width"]
        a1.plot(c["steps"], c["loss"], color=colors[w], lw=0.6, alpha=0.6)
    for w in widths:
        a1.plot([], [], color=colors[w], label=f"W = {w}")
    a1.set(xlabel="Adam step", ylabel="training loss (mean over 50 steps)", yscale="log",
           title="training curves of every cell")
    a1.legend(fontsize=8)
    half = [k for k in rows[0]["row"] if k.startswith("fraction_at_")] if rows else []
    if half:
        k = half[-1]
        for p in rows:
            r = p["row"]
            a2.scatter(r[k], r["fraction"], color=colors[r["width"]], s=12 + 3 * math.log2(r["n"]))
        a2.plot([0, 1], [0, 1], "k:", lw=0.8)
        a2.set(xlabel=f"memorised fraction after {k.replace('fraction_at_', '')} steps",
               ylabel=f"after {rows[0]['row']['steps']} steps", title="does memorisation still move?")
    fig.suptitle(f"{name}: is the step budget enough?")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_samples(payloads: list[dict], images: _data.ImageData, name: str, path: Path) -> list[str]:
    """One row per shown cell: each sample (top) above its nearest training image (bottom).
    Shows the most, a middle and the least memorising cells with kept samples; returns them."""
    import matplotlib.pyplot as plt

    rows = [p for p in payloads if p["row"]["dataset"] == name and p.get("samples") is not None]
    if not rows:
        return []
    rows.sort(key=lambda p: (p["row"]["fraction"], p["row"]["params_per_image"]))
    shown = [rows[-1], rows[len(rows) // 2], rows[0]] if len(rows) > 2 else rows
    k = min(len(p["samples"]) for p in shown)
    fig, axes = plt.subplots(len(shown), k, figsize=(0.75 * k, 1.75 * len(shown)), squeeze=False)
    for s, p in enumerate(shown):
        r = p["row"]
        samples = images.to_pixels(p["samples"][:k])
        nearest = images.to_pixels(images.X[np.asarray(p["nearest"][:k], dtype=int)])
        gap = np.ones((1, samples.shape[2]))
        for j in range(k):
            ax = axes[s][j]
            ax.imshow(np.vstack([samples[j], gap, nearest[j]]), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[s][0].set_title(f"n={r['n']} m={r['m']} W={r['width']} seed {r['seed']}: memorised "
                             f"{r['fraction']:.2f} (top: sample, bottom: nearest training image)",
                             fontsize=7, loc="left")
    fig.subplots_adjust(left=0.02, right=0.98, top=0.9, bottom=0.02, hspace=0.35, wspace=0.08)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [f"n={p['row']['n']} m={p['row']['m']} W={p['row']['width']}" for p in shown]


def report(cells, payloads, datasets, budget, out: Path, meta: dict, command: str, *, theory: bool = True,
           log=print) -> dict:
    """Write the CSV (+ sidecar), the Markdown table and the figures of the finished cells."""
    out = Path(out)
    done = [p for p in payloads if p is not None]
    figures, tables = [], []
    if not done:
        log("no finished cell: nothing to write")
        return dict(rows=[], figures=figures, tables=tables)
    rows = [p["row"] for p in done]
    meta = dict(meta, cells_missing=[c.key() for c, p in zip(cells, payloads) if p is None])
    save_table(out / "unet.csv", rows, jsonable(meta), command, require_converged=False)
    agg = aggregate(rows)
    save_table(out / "unet_by_cell.csv", agg, jsonable(meta), command, require_converged=False)
    (out / "unet.md").write_text(table(agg))
    tables.append(out / "unet.md")
    for name, path in datasets:
        if not any(r["dataset"] == name for r in rows):
            continue
        images = _data.load_dataset(path, downsample=budget.downsample)
        fig = out / f"memorization_{name}.png"
        plot_memorization(agg, name, fig)
        figures.append(fig)
        th = None
        if theory:
            ms = sorted({math.inf if r["m"] == "inf" else int(r["m"]) for r in rows if r["dataset"] == name})
            th = theory_curves(path, budget.downsample, ms, budget.loss_times, log=log)
        fig = out / f"losses_{name}.png"
        plot_losses(agg, name, fig, th, budget.loss_times)
        figures.append(fig)
        fig = out / f"training_{name}.png"
        plot_training(done, name, fig)
        figures.append(fig)
        fig = out / f"samples_{name}.png"
        if plot_samples(done, images, name, fig):
            figures.append(fig)
    return dict(rows=rows, aggregated=agg, figures=figures, tables=tables)
