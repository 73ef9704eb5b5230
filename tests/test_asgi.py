"""The ASGI example (examples/asgi_app.py) through Starlette's own test client, and through
httpx's ASGI transport under ``asyncio.run`` for concurrent requests.

Starlette's ``TestClient`` serves the app from a thread of its own with its own asyncio
loop (anyio's blocking portal): each client gets a guest trio run of its own, and none
is left behind when it closes.
"""

import asyncio
import importlib.util
import sys
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

with warnings.catch_warnings():  # Starlette 1.x would rather use httpx2; httpx still works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

import flowfn.aio
from flowfn import step

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "asgi_app.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("flowfn_example_asgi_app", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


asgi_app = load_example()


def test_a_request_runs_a_flow() -> None:
    with TestClient(asgi_app.app) as client:
        response = client.get("/users/7")
        assert response.status_code == 200
        assert response.json() == {"id": 7, "name": "user 7", "orders": [70, 71, 72]}
        missing = client.get("/users/0")
        assert missing.status_code == 404
        assert missing.json() == {"error": "no user 0"}
        assert client.get("/health").json() == {"ok": True}


def test_one_client_after_another() -> None:
    for user in (1, 2):
        with TestClient(asgi_app.app) as client:
            assert client.get(f"/users/{user}").json()["id"] == user


def test_concurrent_requests_run_in_parallel_and_health_is_served_meanwhile() -> None:
    async def get(client: httpx.AsyncClient, path: str) -> tuple[int, float]:
        response = await client.get(path)
        return response.status_code, time.perf_counter()

    async def main() -> tuple[float, float, list[tuple[int, float]]]:
        transport = httpx.ASGITransport(app=asgi_app.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            started = time.perf_counter()
            pages = asyncio.gather(*(get(client, f"/users/{i}") for i in range(1, 5)))
            await asyncio.sleep(0.01)
            status, health_at = await get(client, "/health")
            assert status == 200
            return started, health_at, await pages

    started, health_at, pages = asyncio.run(main())
    assert [status for status, _ in pages] == [200] * 4
    assert health_at < min(at for _, at in pages)  # answered while the flows ran
    assert max(at for _, at in pages) - started < 0.35  # one after the other: 0.4 s


def test_an_asyncio_step_uses_the_apps_own_queue() -> None:
    @step(executor="asyncio")  # type: ignore[call-overload]
    async def audit(user_id: int, log: Any) -> str:
        await log.put(f"viewed {user_id}")  # the app's asyncio.Queue, on the app's loop
        return "logged"

    async def handler(request: Request) -> JSONResponse:
        log = request.app.state.log
        result = await flowfn.aio.arun(audit, {"user_id": request.path_params["n"],
                                               "log": log})
        return JSONResponse({"result": result.output, "entry": await log.get()})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.log = asyncio.Queue()
        yield

    app = Starlette(routes=[Route("/audit/{n:int}", handler)], lifespan=lifespan)
    with TestClient(app) as client:
        assert client.get("/audit/3").json() == {"result": "logged", "entry": "viewed 3"}
