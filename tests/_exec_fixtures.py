"""Shared fixtures of the executor tests (registered with ``pytest_plugins``).

Real engines, started once per session: Dask clusters (in-process for speed, one with
worker processes to prove that functions and values cross process boundaries). Worker
processes of trio-parallel come from its default cache, which outlives trio runs, so
only the first process test pays for spawning (two workers at most: one per core).
"""

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def dask_client() -> Iterator[Any]:
    """A client of an in-process LocalCluster: 2 workers, 1 thread each."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        yield client


@pytest.fixture(scope="session")
def dask_processes() -> Iterator[Any]:
    """A LocalCluster with 2 worker processes (1 thread each), on localhost."""
    distributed = pytest.importorskip("distributed")
    # dashboard_address=":0": a free port (None still serves HTTP on 8787, maybe taken)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0", host="127.0.0.1") as cluster:
        yield cluster
