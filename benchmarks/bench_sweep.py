"""Speed-up of the validation table's Monte Carlo sweep on Dask, and its identical numbers.

    python benchmarks/bench_sweep.py [--quick | --points K] [--workers 2] [--scheduler tcp://127.0.0.1:PORT]

Runs the sweep of ``dsm-curves table`` (all points x true/surrogate x d x seeds;
the theory, a few seconds, runs in the client and is not part of the sweep) serially in
this process, then on a local Dask cluster with ``--workers`` processes, then (if given)
on an existing scheduler; checks that every per-seed number is identical and prints the
wall times, the speed-ups measured in this run, the task count and the pickled bytes
moved per task.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> int:
    from validation.cli import table
    from validation.simulation import sweep

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="the --quick table (3 points, d = 50 100 200, 4 seeds)")
    ap.add_argument("--points", type=int, default=None, help="only the first K points of the full table")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scheduler", default=None, help="address of an existing scheduler to time as well")
    args = ap.parse_args()
    points, ds, seeds = (table.QUICK, [50, 100, 200], 4) if args.quick else (table.POINTS, [100, 200, 400], 8)
    points = points[:args.points] if args.points else points
    pts = table.sweep_points(points, ds, seeds)
    print(f"sweep of {len(points)} table points x (true, surrogate) x d={ds} x {seeds} seeds; "
          f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    runs = [("serial", None), (f"local cluster, {args.workers} workers", "local")]
    if args.scheduler:
        runs.append((f"scheduler {args.scheduler}", args.scheduler))
    reference, times = None, {}
    for name, scheduler in runs:
        stats = []
        start = time.perf_counter()
        results = sweep.run(pts, scheduler, workers=args.workers if scheduler == "local" else None, stats=stats)
        times[name] = time.perf_counter() - start
        numbers = [(r.seeds, r.test_values.tolist(), r.train_values.tolist()) for r in results]
        same = "reference" if reference is None else ("identical" if numbers == reference else "DIFFERENT")
        reference = reference or numbers
        print(f"{name:50s} {times[name]:8.1f} s  speed-up {times['serial'] / times[name]:5.2f}x  "
              f"numbers: {same};  {stats[0]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
