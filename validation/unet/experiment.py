"""The U-Net grid: one cell trains a U-Net by DSM and measures losses and memorisation.

A cell is ``(dataset, n, m, width, seed)`` under a :class:`Budget`:

1. ``n`` training and ``held_out`` other images drawn without replacement from the pool
   (``SeedSequence([seed, n, 5])``: every ``m`` and width at the same ``(seed, n)`` sees the
   same images), preprocessed as MODEL.md says after ``downsample x downsample`` mean-pooling
   (default 4: 28 x 28 -> 7 x 7, ``d = 49``, the size of ``dsm-curves real``'s memorisation
   experiment);
2. a fresh :func:`~validation.unet.network.build_unet` of that width, trained ``steps`` Adam
   steps on the DSM loss with ``m`` frozen ``(t, z)`` draws per image
   (:class:`~validation.unet.training.Trainer`);
3. DSM losses at ``loss_times`` (0.1, 0.3, 1): on the held-out images (one fresh noise each)
   and on the training images (fresh noise, at least ``512/n`` draws each), with standard
   errors over images; for finite ``m`` also the training objective on the frozen pairs;
4. ``samples`` samples by the reverse SDE (:func:`validation.images.sampling.sample_sde`, from
   ``N(0, S_T)`` with the pool covariance at ``T = 3`` down to ``t_min = 0.01`` in
   ``sampler_steps`` geometric steps, the setting of ``dsm-curves real``), denoised by
   Tweedie's formula, and the memorised fraction with the 1/3 rule and its bootstrap s.e.
   (:func:`validation.memorized_fraction`) against the ``n`` training images -- after every
   step count in ``mem_checks`` (by default half the budget and the whole), so each cell
   shows whether memorisation still moves at the end (``check_samples`` samples at the earlier
   checks, ``samples`` at the end).

Cells run as Dask tasks through :func:`validation.simulation.sweep.map_tasks`; each finished
cell is written to ``cells/<key>.json`` (and its first samples to ``<key>.npz``) at once, so
an interrupted grid resumes where it stopped (:func:`run_grid`).
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from validation.images import data as _data
from validation.images import sampling as _sampling
from validation.images.memorization import memorized_fraction
from validation.simulation.problem import m_label, parse_m

from . import torch_module

#: Samples kept per cell for the sample grids (with their nearest training images).
KEPT_SAMPLES = 8


@dataclass(frozen=True)
class Budget:
    """What every cell of a grid does (see the module docstring)."""

    steps: int = 1000
    batch: int = 32
    lr: float = 1e-3
    downsample: int = 4
    held_out: int = 500
    loss_times: tuple[float, ...] = (0.1, 0.3, 1.0)
    samples: int = 300              # bootstrap s.e. <= sqrt(1/4/300) = 0.029
    check_samples: int = 100        # at the earlier mem_checks (a plateau diagnostic only)
    sampler_steps: int = 100
    T: float = 3.0
    t_min: float = 0.01
    mem_checks: tuple[int, ...] = (500, 1000)
    log_every: int = 50

    def __post_init__(self):
        if tuple(sorted(set(self.mem_checks))) != tuple(self.mem_checks) or not self.mem_checks \
                or self.mem_checks[-1] != self.steps or self.mem_checks[0] < 1:
            raise ValueError(f"mem_checks must increase and end at steps={self.steps}, got {self.mem_checks}")

    def key(self) -> str:
        """A short fingerprint: checkpoints of another budget are not reused."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Cell:
    """One point of the grid."""

    dataset: str        # the dataset's name (tables, file names)
    path: str           # its IDX file or folder
    n: int
    m: float
    width: int
    seed: int

    def key(self) -> str:
        return f"{self.dataset}_n{self.n}_m{m_label(self.m, 'inf')}_W{self.width}_s{self.seed}"


@functools.lru_cache(maxsize=4)
def _pool(path: str, downsample: int) -> _data.ImageData:
    return _data.load_dataset(path, downsample=downsample)


def draw_images(images: _data.ImageData, n: int, held_out: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(training indices, held-out indices)`` in the pool, disjoint, from ``SeedSequence([seed, n, 5])``."""
    if n + held_out > images.n:
        raise ValueError(f"n + held_out = {n + held_out} exceeds the pool ({images.n} images)")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(n), 5]))
    idx = rng.choice(images.n, size=n + held_out, replace=False)
    return idx[:n], idx[n:]


def _torch_seed(cell: Cell) -> int:
    m = 0 if math.isinf(cell.m) else int(cell.m)
    return int(np.random.SeedSequence([cell.seed, cell.n, m, cell.width, 3]).generate_state(1)[0])


def sample_and_measure(net, images: _data.ImageData, X: np.ndarray, budget: Budget, seed: int,
                       samples: int) -> dict:
    """``samples`` samples by the reverse SDE, Tweedie-denoised, and their memorised fraction against ``X``."""
    from .training import UNetScore

    score = UNetScore(net, images.image_shape)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7]))
    cov = images.X.T @ images.X / images.n
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            Y = _sampling.sample_sde(score, n_samples=samples, d=images.d, rng=rng, T=budget.T,
                                     t_min=budget.t_min, steps=budget.sampler_steps, covariance=cov,
                                     progress=False)
            Xh = _sampling.tweedie(score, Y, budget.t_min)
        diverged = not np.all(np.isfinite(Xh))
    except FloatingPointError:
        diverged = True
    if diverged:
        return dict(fraction=math.nan, se=math.nan, median_ratio=math.nan, median_norm2_over_d=math.nan,
                    diverged=True, samples=None, nearest=None)
    mem = memorized_fraction(Xh, X)
    return dict(fraction=mem.fraction, se=mem.se, median_ratio=float(np.median(mem.d1 / mem.d2)),
                median_norm2_over_d=float(np.median(np.sum(Xh ** 2, axis=1)) / images.d), diverged=False,
                samples=Xh[:KEPT_SAMPLES], nearest=mem.nearest[:KEPT_SAMPLES])


def run_cell(cell: Cell, budget: Budget) -> dict:
    """Train and measure one cell (a Dask task: one torch thread); returns a JSON-able dict
    plus ``samples``/``nearest`` arrays (the first :data:`KEPT_SAMPLES` samples)."""
    torch = torch_module()
    from .network import build_unet, parameter_count
    from .training import Trainer, dsm_loss, frozen_loss

    torch.set_num_threads(1)
    start, cpu = time.perf_counter(), time.process_time()
    images = _pool(cell.path, budget.downsample)
    train_idx, held_idx = draw_images(images, cell.n, budget.held_out, cell.seed)
    X, H = images.X[train_idx], images.X[held_idx]
    torch.manual_seed(_torch_seed(cell))
    net = build_unet(cell.width, levels=2)
    params = parameter_count(net)
    trainer = Trainer(net, X, images.image_shape, m=cell.m, seed=_torch_seed(cell) % 2**31,
                      batch=budget.batch, lr=budget.lr)
    checks, sample_seconds = [], 0.0
    for steps in budget.mem_checks:
        trainer.train(steps - trainer.step_count, log_every=budget.log_every)
        t0 = time.perf_counter()
        k = budget.samples if steps == budget.steps else budget.check_samples
        checks.append((steps, sample_and_measure(net, images, X, budget, cell.seed, k)))
        sample_seconds += time.perf_counter() - t0
    final = checks[-1][1]
    row = dict(dataset=cell.dataset, n=cell.n, m=m_label(cell.m, "inf"), width=cell.width, seed=cell.seed,
               params=params, params_per_image=params / cell.n, d=images.d, steps=budget.steps,
               batch=budget.batch, lr=budget.lr,
               final_train_loss=float(np.mean(trainer.recent)),  # mean of the last 200 minibatches
               frozen_loss=(math.nan if trainer.frozen is None
                            else frozen_loss(net, X, trainer.frozen, images.image_shape)))
    rng = np.random.default_rng(np.random.SeedSequence([cell.seed, cell.n, 11]))
    for t in budget.loss_times:
        row[f"held_out_loss_t{t:g}"], row[f"held_out_loss_se_t{t:g}"] = dsm_loss(
            net, H, t, images.image_shape, rng, draws=1)
        row[f"train_loss_t{t:g}"], row[f"train_loss_se_t{t:g}"] = dsm_loss(
            net, X, t, images.image_shape, rng, draws=max(1, math.ceil(512 / cell.n)))
    for steps, res in checks[:-1]:
        row[f"fraction_at_{steps}"] = res["fraction"]
    row |= dict(fraction=final["fraction"], fraction_se=final["se"], diverged=final["diverged"],
                median_ratio=final["median_ratio"], median_norm2_over_d=final["median_norm2_over_d"],
                samples=budget.samples, train_seconds=trainer.log.seconds, sample_seconds=sample_seconds,
                seconds=time.perf_counter() - start, cpu_seconds=time.process_time() - cpu)
    return dict(row=row, loss_curve=dict(steps=trainer.log.steps, loss=trainer.log.loss),
                samples=final["samples"], nearest=None if final["nearest"] is None else train_idx[final["nearest"]])


# ----------------------------------------------------------------------------------
# Checkpoints and the grid


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return _jsonable(value.item())
    return value


def _restore(value):
    return math.nan if value is None else value


def save_cell(folder: Path, cell: Cell, budget: Budget, result: dict) -> None:
    """Write one finished cell: ``<key>.json`` (row, loss curve, budget fingerprint) and
    ``<key>.npz`` (kept samples and the pool indices of their nearest training images)."""
    folder.mkdir(parents=True, exist_ok=True)
    if result["samples"] is not None:
        np.savez_compressed(folder / f"{cell.key()}.npz", samples=result["samples"].astype(np.float32),
                            nearest=result["nearest"])
    payload = dict(budget=budget.key(), cell=asdict(cell) | {"m": m_label(cell.m, "inf")},
                   row=result["row"], loss_curve=result["loss_curve"])
    tmp = folder / f".{cell.key()}.json.tmp"
    tmp.write_text(json.dumps(_jsonable(payload)) + "\n")
    tmp.replace(folder / f"{cell.key()}.json")  # atomic: a killed run leaves no half file


def load_cell(folder: Path, cell: Cell, budget: Budget) -> dict | None:
    """The checkpoint of ``cell`` under ``budget``, or ``None`` (missing or another budget)."""
    path = folder / f"{cell.key()}.json"
    if not path.exists():
        return None
    payload = json.loads(path.read_text())
    if payload.get("budget") != budget.key():
        return None
    payload["row"] = {k: _restore(v) for k, v in payload["row"].items()}
    npz = folder / f"{cell.key()}.npz"
    if npz.exists():
        with np.load(npz) as f:
            payload["samples"], payload["nearest"] = f["samples"].astype(np.float64), f["nearest"]
    else:
        payload["samples"] = payload["nearest"] = None
    return payload


def grid(datasets: list[tuple[str, str]], ns, ms, widths, seeds) -> list[Cell]:
    """Every cell, in the order they should run: seed first (a partial run has whole seeds),
    then ``n``, dataset, ``m`` and width."""
    return [Cell(name, str(path), int(n), parse_m(m), int(w), int(s))
            for s in seeds for n in ns for name, path in datasets for m in ms for w in widths]


def run_grid(cells: list[Cell], budget: Budget, folder: Path, scheduler=None, *, workers: int | None = None,
             log=print) -> list[dict]:
    """Run the cells that have no checkpoint under ``budget`` in ``folder``; return every cell's
    payload (checkpoints and new results), in the order of ``cells``."""
    from validation.simulation.sweep import map_tasks

    folder = Path(folder)
    done = {c: load_cell(folder, c, budget) for c in cells}
    todo = [c for c in cells if done[c] is None]
    log(f"{len(cells) - len(todo)} of {len(cells)} cells already done in {folder}; running {len(todo)}")
    start = time.perf_counter()

    def finished(k, result):
        cell = todo[k]
        save_cell(folder, cell, budget, result)
        done[cell] = load_cell(folder, cell, budget)
        r = result["row"]
        log(f"[{sum(v is not None for v in done.values())}/{len(cells)} {time.perf_counter() - start:7.0f} s] "
            f"{cell.key()}: P={r['params']} loss={r['final_train_loss']:.3f} "
            f"held-out(0.1)={r['held_out_loss_t0.1']:.3f} mem={r['fraction']:.3f} ({r['seconds']:.0f} s, "
            f"{r['cpu_seconds']:.0f} s CPU)")

    map_tasks(run_cell, [(c, budget) for c in todo], scheduler, workers=workers, on_result=finished)
    return [done[c] for c in cells]
