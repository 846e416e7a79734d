"""Monte Carlo sweeps give the same numbers serially and on a Dask cluster, whatever the
batching, the number of workers or the order in which tasks finish."""
from __future__ import annotations

import math

import numpy as np
import pytest

from validation.simulation import sweep

POINTS = [
    sweep.Point("relu", d=24, psi_n=1.0, psi_p=0.5, t=0.5, lam=1e-2, m=1, seeds=(0, 1, 2)),
    sweep.Point("tanh", d=16, psi_n=1.0, psi_p=2.0, t=0.5, lam=1e-1, m=math.inf, seeds=(3, 5, 7, 9)),
    sweep.Point("erf", d=20, psi_n=2.0, psi_p=1.0, t=0.5, lam=1e-1, m=2, seeds=(0, 1, 2), surrogate=True),
]


def _numbers(results):
    return [(r.seeds, r.test_values.tolist(), r.train_values.tolist()) for r in results]


def test_serial_sweep_equals_direct_simulation_and_any_batching():
    from validation import simulate

    serial = sweep.run(POINTS)
    direct = [simulate(p.activation, d=p.d, psi_n=p.psi_n, psi_p=p.psi_p, t=p.t, lam=p.lam, m=p.m,
                       seeds=list(p.seeds), surrogate=p.surrogate, progress=False) for p in POINTS]
    assert _numbers(serial) == _numbers(direct)
    assert _numbers(sweep.run(POINTS, seeds_per_task=1)) == _numbers(serial)
    assert [r.test for r in serial] == [r.test for r in direct]


def test_local_cluster_with_two_workers_gives_identical_numbers():
    distributed = pytest.importorskip("distributed")
    serial = sweep.run(POINTS, seeds_per_task=2)
    stats = []
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        parallel = sweep.run(POINTS, client, seeds_per_task=1, stats=stats)
    assert _numbers(parallel) == _numbers(serial)
    assert [r.test_se for r in parallel] == [r.test_se for r in serial]
    (s,) = stats
    assert s.tasks == sum(len(p.seeds) for p in POINTS) and s.workers == 2
    assert 0 < s.bytes_in_per_task < 10_000 and 0 < s.bytes_out_per_task < 10_000


def test_bad_sweep_input():
    with pytest.raises(ValueError, match="surrogate must be True or False"):
        sweep.Point("relu", d=10, psi_n=1, psi_p=1, t=0.5, lam=0.1, m=1, seeds=(0,), surrogate=1)
    with pytest.raises(ValueError, match="seeds repeat"):
        sweep.Point("relu", d=10, psi_n=1, psi_p=1, t=0.5, lam=0.1, m=1, seeds=(0, 0))
    with pytest.raises(ValueError, match="scheduler must be 'local' or a Dask scheduler address"):
        sweep.run(POINTS, "http//oops")
    with pytest.raises(ValueError, match="seeds_per_task"):
        sweep.run(POINTS, seeds_per_task=0)
    with pytest.raises(ValueError, match="cannot reach the Dask scheduler"):
        sweep.connect("tcp://127.0.0.1:9", timeout=1)


def test_workers_running_other_code_are_refused(monkeypatch):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        # In-process workers share this module: pretend the client was updated after them.
        monkeypatch.setattr(sweep, "code_version", lambda: "an older version")
        with pytest.raises(ValueError, match="run other code than this process"):
            sweep.run(POINTS[:1], client)


def test_map_tasks_serial_and_on_a_cluster_give_the_values_in_order(monkeypatch):
    distributed = pytest.importorskip("distributed")
    args = [(k, 3) for k in range(6)]
    seen = []
    assert sweep.map_tasks(pow, args, on_result=lambda k, v: seen.append((k, v))) == [k ** 3 for k in range(6)]
    assert seen == [(k, k ** 3) for k in range(6)]
    seen.clear()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        assert sweep.map_tasks(pow, args, client, on_result=lambda k, v: seen.append((k, v))) == [k ** 3 for k in range(6)]
        assert sorted(seen) == [(k, k ** 3) for k in range(6)]
        monkeypatch.setattr(sweep, "code_version", lambda: "an older version")
        with pytest.raises(ValueError, match="run other code than this process"):
            sweep.map_tasks(pow, args, client)
