"""Run steps on a Dask distributed cluster (``flowfn[dask]``).

    from flowfn.dask import DaskExecutor
    run(flow, inputs, executor=DaskExecutor("tcp://scheduler:8786"))   # every sync step
    @step(executor=DaskExecutor(client))                               # one step

flowfn talks to Dask through an ordinary synchronous ``distributed.Client`` (Dask's
asynchronous mode needs asyncio; flowfn runs on trio): submitting is a quick message to
the client's own event-loop thread, and waiting for a result happens in one of flowfn's
worker threads, so the trio loop never blocks.

What Dask cannot do, flowfn says instead of hiding:

- A task that already started on a worker cannot be interrupted. A cancelled step's
  future is cancelled; if the task was running, its span says so (``span.reason``) and
  ``span.abandoned`` is set. Steps that must stop at once belong on ``executor="process"``.
- Dask waits forever for ``resources=`` that no worker has. flowfn checks the cluster's
  workers first and fails the step at once with :class:`ResourcesUnavailable`.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from typing import Any

import trio
from distributed import Client

from ._executors import Call, note, real_work, threads_of_this_run
from ._sending import invoke, target

__all__ = ["DaskExecutor", "ResourcesUnavailable"]


class ResourcesUnavailable(RuntimeError):
    """A step asks for Dask resources that no worker of the cluster has."""

    __module__ = "flowfn.dask"


class DaskExecutor:
    """Runs step calls as tasks on a Dask cluster.

    ``client_or_address``: a ``distributed.Client`` (used as it is, never closed by
    flowfn) or a scheduler address such as ``"tcp://127.0.0.1:8786"`` (flowfn connects
    when a run first needs it and disconnects when the last run using it ends).
    ``client_options`` go to ``Client(...)`` in the second case.
    """

    name = "dask"
    sends_functions = "cluster"  # what check_sendable tests: by value unless importable

    def __init__(self, client_or_address: Client | str, **client_options: Any) -> None:
        if not isinstance(client_or_address, Client | str):
            raise TypeError(
                "DaskExecutor() takes a distributed.Client or a scheduler address such as "
                f"'tcp://127.0.0.1:8786', got {client_or_address!r}."
            )
        self._given = client_or_address if isinstance(client_or_address, Client) else None
        self._address = client_or_address if isinstance(client_or_address, str) else None
        self._options = client_options
        self._client: Client | None = self._given
        self._opened = 0
        self._workers: dict[str, Mapping[str, float]] = {}
        self._lock = threading.Lock()

    @property
    def client(self) -> Client:
        """The client in use (connected at the first run that needs it)."""
        if self._client is None:
            raise RuntimeError(f"DaskExecutor({self._address!r}) is not connected: no run "
                               "is using it right now.")
        return self._client

    async def open(self) -> None:
        # Runs may open and close this executor at once, even from different threads
        # (each plain run() is a trio run of its own): the count and the connection are
        # guarded by a thread lock, and connecting happens in a thread.
        with self._lock:
            self._opened += 1
        try:
            await trio.to_thread.run_sync(self._connect)
        except BaseException:
            await self.close()
            raise

    def _connect(self) -> None:
        with self._lock:
            if self._client is None:
                self._client = _connect(self._address, self._options)
            client = self._client
        self._workers = _worker_resources(client)

    async def close(self) -> None:
        with self._lock:
            self._opened -= 1
            if self._opened > 0 or self._given is not None or self._client is None:
                return
            client, self._client = self._client, None
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(client.close)

    async def run(self, call: Call) -> Any:
        """Submit the call as a Dask task, wait for it, return its value or raise."""
        client = self.client
        resources = getattr(call.step, "resources", None) or None
        if resources:
            await self._check_resources(call, resources)
        fn = target(call.step, call.fn, main_ok=False)
        key = f"flowfn-{call.path}-{uuid.uuid4().hex[:12]}"
        future = client.submit(invoke, fn, call.kwargs, key=key, pure=False,
                               resources=resources)
        try:
            with real_work():
                # Abandoned on cancellation: the thread returns once the future is cancelled.
                return await threads_of_this_run().run_sync(future.result, {}, lambda: True)
        except trio.Cancelled:
            with trio.CancelScope(shield=True):
                where = await trio.to_thread.run_sync(_cancel, client, future)
            if where is not None:
                call.span.abandoned = True
                note(call.span, f"the Dask task was already running on {where} and runs to "
                                "its end (Dask cannot interrupt a running task)")
            raise


    def _has(self, resources: Mapping[str, float]) -> bool:
        return any(all(have.get(k, 0) >= v for k, v in resources.items())
                   for have in self._workers.values())

    async def _check_resources(self, call: Call, resources: Mapping[str, float]) -> None:
        if self._has(resources):
            return
        # a worker may have joined since
        self._workers = await trio.to_thread.run_sync(_worker_resources, self.client)
        if self._has(resources):
            return
        wanted = ", ".join(f"{k}={v:g}" for k, v in resources.items())
        workers = "; ".join(
            f"{addr}: {', '.join(f'{k}={v:g}' for k, v in have.items()) or 'none'}"
            for addr, have in sorted(self._workers.items())
        ) or "no workers"
        raise ResourcesUnavailable(
            f"step {call.path!r} asks for Dask resources {wanted}, but no worker of the "
            f"cluster has them (Dask would wait forever). Workers' resources: {workers}. "
            f"Start workers with --resources \"{wanted.replace(', ', ',')}\", or change the "
            "step's resources=."
        )


def _worker_resources(client: Client) -> dict[str, Mapping[str, float]]:
    """Each worker's resources, asked of the scheduler now."""
    info = client.scheduler_info(n_workers=-1)
    return {addr: dict(w.get("resources") or {}) for addr, w in info.get("workers", {}).items()}


def _connect(address: str | None, options: dict[str, Any]) -> Client:
    client: Client = Client(address, set_as_default=False, **options)  # type: ignore[no-untyped-call]
    return client


def _cancel(client: Client, future: Any) -> str | None:
    """Cancel ``future``; the worker it was already running on, if any."""
    try:
        where: str | None = client.run_on_scheduler(  # type: ignore[no-untyped-call]
            _running_on, future.key)
    except Exception:
        where = None
    client.cancel([future], force=True, reason="cancelled by flowfn")  # type: ignore[no-untyped-call]
    return where


def _running_on(key: str, dask_scheduler: Any = None) -> str | None:
    """On the scheduler: the address of the worker processing ``key``, if any."""
    task = dask_scheduler.tasks.get(key) if dask_scheduler is not None else None
    if task is None or task.state != "processing" or task.processing_on is None:
        return None
    address: str = task.processing_on.address
    return address
