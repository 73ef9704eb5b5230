"""``executor="process"``: steps in worker processes, on trio-parallel (``flowfn[process]``).

trio-parallel keeps a cache of spawned worker processes that outlive runs (the first call
pays for starting one, later calls reuse it) and caps jobs at one per CPU. Every call runs
with ``kill_on_cancel=True``: a failed sibling, a lost race or a timeout kills the worker,
so nothing keeps burning CPU after ``run()`` returns. A worker that dies fails its step
with :class:`WorkerDied` and the exit code; the step's retries apply.

The function goes by reference when it is importable (see ``_sending``), else by value
with cloudpickle; the arguments are pickled here, so a value that cannot be sent fails
its step with a message naming it.
"""

from __future__ import annotations

import signal
from typing import Any

import cloudpickle  # type: ignore[import-untyped]
import trio_parallel  # type: ignore[import-untyped]

from ._executors import Call, WorkerDied, real_work
from ._sending import dumps, invoke, target


class ProcessExecutor:
    """Runs each call in a trio-parallel worker process; cancellation kills the worker."""

    name = "process"
    sends_functions = "process"

    async def open(self) -> None:
        pass

    async def run(self, call: Call) -> Any:
        try:
            job = dumps((target(call.step, call.fn, main_ok=True), call.kwargs))
        except Exception as exc:
            raise TypeError(
                f"step {call.path!r} cannot be sent to a worker process: pickling its "
                f"function or arguments failed: {type(exc).__name__}: {exc}"
            ) from exc
        with real_work():
            try:
                out = await trio_parallel.run_sync(_run_job, job, kill_on_cancel=True)
            except trio_parallel.BrokenWorkerError as exc:
                raise _died(call, exc) from None
        return cloudpickle.loads(out)

    async def close(self) -> None:
        pass


def _run_job(job: bytes) -> bytes:
    """In the worker: unpickle, call, and pickle the result here, so that a value that
    cannot travel back fails with a message instead of a broken pipe."""
    fn, kwargs = cloudpickle.loads(job)
    value = invoke(fn, kwargs)
    try:
        out: bytes = cloudpickle.dumps(value)
    except Exception as exc:
        raise TypeError(
            f"the step's return value ({type(value).__name__}) cannot be sent back from the "
            f"worker process: {type(exc).__name__}: {exc}"
        ) from None
    return out


def _died(call: Call, exc: trio_parallel.BrokenWorkerError) -> WorkerDied:
    proc = exc.args[-1] if exc.args else None
    code = getattr(proc, "exitcode", None)
    pid = getattr(proc, "pid", None)
    how = f"exited with code {code}"
    if isinstance(code, int) and code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name} (exit code {code})"
        except ValueError:
            pass
    return WorkerDied(
        f"step {call.path!r}: its worker process (pid {pid}) {how} before the step returned.",
        code,
    )
