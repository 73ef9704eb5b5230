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
import weakref
from collections.abc import Mapping
from typing import Any

import outcome
import trio
from distributed import Client

from ._executors import Call, note, real_work
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
        self._collectors: weakref.WeakKeyDictionary[trio.lowlevel.TrioToken, _Collector] = (
            weakref.WeakKeyDictionary())

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
            with real_work():
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
        with trio.CancelScope(shield=True), real_work():
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
                return await self._collector(client).wait(future)
        except trio.Cancelled:
            with trio.CancelScope(shield=True), real_work():
                where = await trio.to_thread.run_sync(_cancel, client, future)
            if where is not None:
                call.span.abandoned = True
                note(call.span, f"the Dask task was already running on {where} and runs to "
                                "its end (Dask cannot interrupt a running task)")
            raise


    def _collector(self, client: Client) -> _Collector:
        """The collector of the current trio run (results go back to the run that waits)."""
        token = trio.lowlevel.current_trio_token()
        with self._lock:
            collector = self._collectors.get(token)
            if collector is None:
                collector = self._collectors[token] = _Collector(client, token)
            return collector

    def _has(self, resources: Mapping[str, float]) -> bool:
        return any(all(have.get(k, 0) >= v for k, v in resources.items())
                   for have in self._workers.values())

    async def _check_resources(self, call: Call, resources: Mapping[str, float]) -> None:
        if self._has(resources):
            return
        # a worker may have joined since
        with real_work():
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


class _Collector:
    """Brings the results of finished Dask futures back to one trio run, in batches.

    Dask calls ``add_done_callback`` callbacks one after the other in a thread of its own;
    they only queue the future here. One fetcher thread takes every finished future
    queued, gets their values with one ``client.gather`` (one request per worker, as a
    hand-written ``client.gather(futures)`` would), and hands the batch to the trio run
    in one wake-up.
    """

    def __init__(self, client: Client, token: trio.lowlevel.TrioToken) -> None:
        self._client = client
        self._token = token
        self._lock = threading.Lock()
        self._done: list[tuple[Any, _Waiter]] = []
        self._fetching = False

    async def wait(self, future: Any) -> Any:
        """The future's value (or its exception, raised), without blocking the loop.

        Cancelled while waiting: nobody takes the value any more (the caller cancels the
        future); the fetcher drops it.
        """
        waiter = _Waiter(trio.lowlevel.current_task())
        future.add_done_callback(lambda f: self._finished(f, waiter))

        def abort(raise_cancel: Any) -> trio.lowlevel.Abort:
            waiter.task = None
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)

    def _finished(self, future: Any, waiter: _Waiter) -> None:  # Dask's callback thread
        with self._lock:
            self._done.append((future, waiter))
            if self._fetching:
                return
            self._fetching = True
        threading.Thread(target=self._fetch, name="flowfn Dask results", daemon=True).start()

    def _fetch(self) -> None:
        while True:
            with self._lock:
                batch, self._done = self._done, []
                if not batch:
                    self._fetching = False
                    return
            outcomes = _outcomes(self._client, [f for f, _ in batch])
            try:
                self._token.run_sync_soon(_deliver, [w for _, w in batch], outcomes)
            except trio.RunFinishedError:
                pass


class _Waiter:
    __slots__ = ("task",)

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task: trio.lowlevel.Task | None = task


def _deliver(waiters: list[_Waiter], outcomes: list[outcome.Outcome[Any]]) -> None:
    for waiter, result in zip(waiters, outcomes, strict=True):
        if waiter.task is not None:
            trio.lowlevel.reschedule(waiter.task, result)


def _outcomes(client: Client, futures: list[Any]) -> list[outcome.Outcome[Any]]:
    """Each future's value or exception; the finished ones gathered in one go."""
    finished = [f for f in futures if f.status == "finished"]
    values: dict[Any, Any] = {}
    if finished:
        try:
            values = dict(zip(finished, client.gather(finished), strict=True))  # type: ignore[no-untyped-call]
        except Exception:  # e.g. a worker holding one of them died: one by one
            values = {}
    out: list[outcome.Outcome[Any]] = []
    for f in futures:
        if f in values:
            out.append(outcome.Value(values[f]))
        else:
            out.append(outcome.capture(f.result))
    return out


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
