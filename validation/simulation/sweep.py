"""Monte Carlo sweeps, serially or on a Dask cluster (``dask.distributed``).

A sweep is a list of :class:`Point` (one simulation each: activation, ``d``, ``psi_n``,
``psi_p``, ``t``, ``lam``, ``m``, surrogate or not, its seeds).  :func:`run` splits every
point into tasks of :attr:`Point.seeds` batches -- one task is one ``(point, seed batch)``,
i.e. a few complete trainings of a ``p``-feature model at dimension ``d``, batched
(:func:`default_batch`) so that each task is well above Dask's per-task cost (about 30 ms
of worker CPU measured here) -- and merges the batches of each point back in seed order.

Reproducibility: a Monte Carlo instance is a deterministic function of ``(point, seed)``
(:func:`validation.simulate` draws seed ``s`` from ``SeedSequence([s, d, n, p])``), the
seeds of a point are fixed before any task starts, and the merged per-seed values are
ordered by seed.  The results therefore do not depend on the batching, the number of
workers or the order in which tasks finish: serial and distributed sweeps give
bit-identical numbers (same library versions and one BLAS thread per worker assumed --
the default for Dask workers, and what ``OPENBLAS_NUM_THREADS=1`` gives in the client).

``scheduler``:

* ``None`` -- run the tasks one after the other in this process;
* ``"local"`` -- start a :class:`distributed.LocalCluster` (``workers`` processes, one
  thread each) for the duration of the sweep;
* an address such as ``"tcp://127.0.0.1:8786"`` -- an existing scheduler (started e.g. by
  ``dask scheduler`` and ``dask worker ADDRESS``); the workers must be able to import
  this package;
* a :class:`distributed.Client` -- used as is (not closed).

Before submitting, :func:`run` checks that every worker imported the same code as the
client (:data:`CODE_VERSION`, a hash of the source of ``pencils``, ``derivations``,
``numerics`` and ``validation``) and refuses with a ``ValueError`` otherwise: a worker
started before an update would silently give other numbers.

Example (serial; the same call with ``scheduler="local"`` gives the same numbers):

>>> pts = [Point("relu", d=20, psi_n=1.0, psi_p=0.5, t=0.5, lam=0.1, m=1, seeds=(0, 1, 2))]
>>> [r] = run(pts, seeds_per_task=2)
>>> r.seeds, len(r.test_values)
((0, 1, 2), 3)
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import pickle
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

#: Seeds per task when the caller does not choose (see :func:`default_batch`).
TASK_SECONDS_TARGET = 2.0

#: Packages whose code a worker must share with the client (see :data:`CODE_VERSION`).
CODE_PACKAGES = ("pencils", "derivations", "numerics", "validation")


def _code_version() -> str:
    root = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256()
    for package in CODE_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


#: Fingerprint of the simulation code as imported by this process (hashed at import time,
#: so a worker that imported an older version reports that version).
CODE_VERSION = _code_version()


def code_version() -> str:
    """:data:`CODE_VERSION` (called on the workers to check they run the client's code)."""
    return CODE_VERSION


_ADDRESS = re.compile(r"^(tcp|tls|inproc|ucx|ws|wss)://[^\s/:]+(:\d{1,5})?/?$|^[A-Za-z0-9.\-]+:\d{1,5}$")


@dataclass(frozen=True)
class Point:
    """One Monte Carlo point: the arguments of :func:`validation.simulate` with explicit seeds.

    ``options`` holds further keyword arguments of :func:`validation.simulate` as
    ``(name, value)`` pairs (e.g. ``(("train_time", 10.0),)``).
    """

    activation: str
    d: int
    psi_n: float
    psi_p: float
    t: float
    lam: float
    m: float
    seeds: tuple[int, ...]
    surrogate: bool = False
    options: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self):
        seeds = tuple(int(s) for s in self.seeds)
        if not seeds:
            raise ValueError("a point needs at least one seed")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds repeat: {seeds}")
        object.__setattr__(self, "seeds", seeds)
        if not isinstance(self.surrogate, bool):
            raise ValueError(f"surrogate must be True or False, got {self.surrogate!r}")

    def simulate(self, seeds: Sequence[int]):
        """:func:`validation.simulate` of this point at ``seeds`` (no progress output)."""
        from validation import simulate

        return simulate(self.activation, d=self.d, psi_n=self.psi_n, psi_p=self.psi_p, t=self.t,
                        lam=self.lam, m=self.m, seeds=list(seeds), surrogate=self.surrogate,
                        progress=False, **dict(self.options))

    def cost(self) -> float:
        """Relative cost of one seed (for scheduling the largest tasks first): ``~ d^3``."""
        rows = self.psi_n * (self.m if math.isfinite(self.m) else 4.0)
        return float(self.d) ** 3 * max(self.psi_p, 1e-3) * max(rows, self.psi_p)


@dataclass(frozen=True)
class SweepStats:
    """What a sweep moved: task count and pickled bytes per task (arguments in, result out)."""

    tasks: int
    workers: int
    seconds: float
    bytes_in_per_task: float
    bytes_out_per_task: float
    scheduler: str
    compute_seconds: float = 0.0  # summed wall time inside the simulations (all workers)
    cpu_seconds: float = 0.0  # summed CPU time of the tasks (all workers)
    longest_task_cpu: float = 0.0  # CPU seconds of the longest task (bounds the critical path)

    def __str__(self) -> str:
        return (f"{self.tasks} tasks on {self.workers} worker(s) via {self.scheduler} in {self.seconds:.1f} s; "
                f"{self.bytes_in_per_task:.0f} B in and {self.bytes_out_per_task:.0f} B out per task (pickled); "
                f"tasks took {self.compute_seconds:.1f} s wall, {self.cpu_seconds:.1f} s CPU in total, "
                f"the longest {self.longest_task_cpu:.1f} s CPU")


def batches(seeds: Sequence[int], size: int) -> list[tuple[int, ...]]:
    """``seeds`` cut into consecutive batches of ``size`` (the last one may be shorter).

    >>> batches((0, 1, 2, 3, 4), 2)
    [(0, 1), (2, 3), (4,)]
    """
    if int(size) != size or size < 1:
        raise ValueError(f"seeds_per_task must be an integer >= 1, got {size!r}")
    seeds = tuple(seeds)
    return [seeds[k:k + int(size)] for k in range(0, len(seeds), int(size))]


def default_batch(point: Point) -> int:
    """Seeds per task: all seeds up to ``d = 200``, 4 up to ``d = 400``, then 1.

    Measured on two cores: a seed trains in 10-50 ms at ``d <= 200`` and in 0.2-2 s at
    ``d = 400``, while a Dask task costs its worker about 30 ms of CPU (scheduling,
    (de)serialisation, the worker's own threads).  These batches make each task at least
    ten times that overhead, and still leave the validation table 112 tasks for the
    workers to share.
    """
    if point.d <= 200:
        return len(point.seeds)
    if point.d <= 400:
        return 4
    return 1


def check_scheduler(scheduler) -> None:
    """``ValueError`` unless ``scheduler`` is ``None``, ``"local"``, a Dask address or a Client."""
    if scheduler is None or scheduler == "local" or _is_client(scheduler):
        return
    if not isinstance(scheduler, str) or not _ADDRESS.match(scheduler.strip()):
        raise ValueError(f"scheduler must be 'local' or a Dask scheduler address such as "
                         f"tcp://127.0.0.1:8786, got {scheduler!r}")


def _is_client(obj) -> bool:
    return type(obj).__name__ == "Client" and hasattr(obj, "submit")


def connect(scheduler, workers: int | None = None, timeout: float = 3.0):
    """``(client, close)`` for ``scheduler`` (see the module docstring); ``ValueError`` if unreachable."""
    check_scheduler(scheduler)
    from distributed import Client, LocalCluster

    if _is_client(scheduler):
        return scheduler, lambda: None
    if scheduler == "local":
        import os

        n = workers or max(1, os.cpu_count() or 1)
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address="127.0.0.1:0")
        client = Client(cluster)

        def close():
            client.close()
            cluster.close()

        return client, close
    try:
        client = Client(scheduler.strip(), timeout=f"{timeout}s")
    except (OSError, TimeoutError) as exc:
        raise ValueError(f"cannot reach the Dask scheduler at {scheduler} ({exc})") from None
    return client, client.close


def check_workers(client) -> int:
    """The number of workers of ``client``; ``ValueError`` if any runs other code than this process."""
    n_workers = len(client.scheduler_info().get("workers", {}))
    # Identical numbers need identical code: refuse workers that run another version.
    versions = client.run(code_version)
    stale = sorted(w for w, v in versions.items() if v != CODE_VERSION)
    if stale:
        raise ValueError(f"Dask workers {', '.join(stale)} run other code than this process "
                         f"(fingerprints {sorted(set(versions.values()))} vs {CODE_VERSION}); "
                         "restart them after updating the package")
    return n_workers


def map_tasks(fn, args: Sequence[tuple], scheduler=None, *, workers: int | None = None,
              on_result=None) -> list:
    """``[fn(*a) for a in args]``, serially (``scheduler=None``) or as one Dask task per ``a``.

    For experiments whose unit of work is not a :class:`Point` (e.g. one cell of the U-Net
    grid, :mod:`validation.unet.experiment`).  ``fn`` and the arguments must pickle; the
    workers are checked as in :func:`run`.  Tasks are submitted in the order of ``args``
    (earlier first: Dask priorities); ``on_result(k, value)`` is called in this process as
    each task ``k`` finishes (e.g. to checkpoint it), in completion order.  Returns the
    values in the order of ``args``.
    """
    args = [tuple(a) for a in args]
    check_scheduler(scheduler)
    results: list = [None] * len(args)

    def collect(k, value):
        results[k] = value
        if on_result is not None:
            on_result(k, value)

    if scheduler is None:
        for k, a in enumerate(args):
            collect(k, fn(*a))
        return results
    from distributed import as_completed

    client, close = connect(scheduler, workers)
    try:
        check_workers(client)
        futures = {client.submit(fn, *a, pure=False, priority=len(args) - k): k for k, a in enumerate(args)}
        for fut in as_completed(futures):
            collect(futures[fut], fut.result())
    finally:
        close()
    return results


def _task(point: Point, seeds: tuple[int, ...]):
    """One task: the simulation of ``point`` at ``seeds`` and the CPU seconds it took."""
    cpu = time.process_time()
    result = point.simulate(seeds)
    return result, time.process_time() - cpu


def _merge(point: Point, parts: list):
    """One result of ``point`` from the results of its seed batches (in seed order)."""
    parts = sorted(parts, key=lambda r: point.seeds.index(r.seeds[0]))
    first = parts[0]
    seeds = tuple(s for r in parts for s in r.seeds)
    if seeds != point.seeds:
        raise RuntimeError(f"seed batches do not add up: {seeds} != {point.seeds}")
    return dataclasses.replace(
        first, seeds=seeds,
        test_values=np.concatenate([r.test_values for r in parts]),
        train_values=np.concatenate([r.train_values for r in parts]),
        mehler_order=max(r.mehler_order for r in parts),
        truncation_bound=max(r.truncation_bound for r in parts),
        seconds=sum(r.seconds for r in parts))


def run(points: Sequence[Point], scheduler=None, *, workers: int | None = None,
        seeds_per_task: int | None = None, progress: bool = False, stats: list | None = None) -> list:
    """Simulate every point; returns one :class:`validation.SimulationResult` per point, in order.

    ``scheduler``: ``None`` (serial), ``"local"``, a scheduler address or a Client (see the
    module docstring).  ``workers``: processes of the ``"local"`` cluster (default: CPUs).
    ``seeds_per_task``: seeds in one task (default :func:`default_batch` per point).
    ``progress``: one line on stderr per finished point.  If ``stats`` is a list, a
    :class:`SweepStats` is appended to it.
    """
    points = list(points)
    for p in points:
        if not isinstance(p, Point):
            raise ValueError(f"sweep points must be validation.sweep.Point, got {type(p).__name__}")
    check_scheduler(scheduler)
    tasks = [(k, batch) for k, p in enumerate(points)
             for batch in batches(p.seeds, default_batch(p) if seeds_per_task is None else seeds_per_task)]
    # Largest first: the tail of the sweep is made of short tasks.
    tasks.sort(key=lambda kb: -points[kb[0]].cost() * len(kb[1]))
    parts: dict[int, list] = {k: [] for k in range(len(points))}
    results: list = [None] * len(points)
    start = time.perf_counter()
    bytes_in = sum(len(pickle.dumps((points[k], b))) for k, b in tasks)
    bytes_out, compute, cpu, longest = 0, 0.0, 0.0, 0.0

    def collect(k, outcome):
        nonlocal bytes_out, compute, cpu, longest
        result, task_cpu = outcome
        longest = max(longest, task_cpu)
        bytes_out += len(pickle.dumps(outcome))
        compute += result.seconds
        cpu += task_cpu
        parts[k].append(result)
        if sum(len(r.seeds) for r in parts[k]) == len(points[k].seeds):
            results[k] = _merge(points[k], parts[k])
            if progress:
                print(f"[sweep {sum(r is not None for r in results)}/{len(points)} "
                      f"{time.perf_counter() - start:6.1f} s] {results[k]}", file=sys.stderr, flush=True)

    if scheduler is None:
        n_workers, name = 1, "serial"
        for k, batch in tasks:
            collect(k, _task(points[k], batch))
    else:
        from distributed import as_completed

        client, close = connect(scheduler, workers)
        try:
            n_workers = check_workers(client)
            address = getattr(getattr(client, "scheduler", None), "address", None) or str(scheduler)
            name = f"{'local cluster' if scheduler == 'local' else 'scheduler'} {address}"
            futures = {}
            for rank, (k, batch) in enumerate(tasks):
                # Dask runs higher priorities first: the largest tasks start first.
                fut = client.submit(_task, points[k], batch, pure=False, priority=len(tasks) - rank)
                futures[fut] = k
            for fut in as_completed(futures):
                collect(futures[fut], fut.result())
        finally:
            close()
    if stats is not None:
        n = max(len(tasks), 1)
        stats.append(SweepStats(tasks=len(tasks), workers=n_workers, seconds=time.perf_counter() - start,
                                bytes_in_per_task=bytes_in / n, bytes_out_per_task=bytes_out / n, scheduler=name,
                                compute_seconds=compute, cpu_seconds=cpu, longest_task_cpu=longest))
    return results
