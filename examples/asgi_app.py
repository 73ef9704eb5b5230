"""An ASGI app (Starlette) that runs a flow per request, without blocking its event loop.

What it shows:
  * ``await flowfn.aio.arun(flow, inputs)`` inside an ``async def`` handler: trio runs as a
    guest of the server's asyncio loop, so other requests (here a health check) are
    served while flows run, and concurrent requests share one guest run;
  * a failed run is a ``RunFailed`` like anywhere else: the handler turns the step's own
    exception into an HTTP status;
  * the run's ``timeout=`` and every other option of ``flowfn.run()`` work as usual.

Run it:  python examples/asgi_app.py    (serves a few requests in-process, through httpx)
Serve it with any ASGI server, e.g.:  uvicorn asgi_app:app --app-dir examples
"""

import asyncio
import time
from typing import Any

import httpx
import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import flowfn.aio
from flowfn import RunFailed, graph, step


class UnknownUser(LookupError):
    pass


@step
async def profile(user_id: int) -> dict[str, Any]:
    await trio.sleep(0.1)  # stands in for a database query
    if user_id <= 0:
        raise UnknownUser(f"no user {user_id}")
    return {"id": user_id, "name": f"user {user_id}"}


@step
async def orders(user_id: int) -> list[int]:
    await trio.sleep(0.1)  # another query, run in parallel with the first
    return [user_id * 10 + i for i in range(3)]


@step
def page(profile: dict[str, Any], orders: list[int]) -> dict[str, Any]:
    return {**profile, "orders": orders}


flow = graph(page)


async def user_page(request: Request) -> JSONResponse:
    try:
        result = await flowfn.aio.arun(flow, {"user_id": request.path_params["user_id"]},
                                       timeout=5)
    except RunFailed as failed:
        status = 404 if isinstance(failed.__cause__, UnknownUser) else 500
        return JSONResponse({"error": str(failed.__cause__)}, status_code=status)
    return JSONResponse(result.output)


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


app = Starlette(routes=[
    Route("/users/{user_id:int}", user_page),
    Route("/health", health),
])


async def get(client: httpx.AsyncClient, path: str) -> tuple[httpx.Response, float]:
    response = await client.get(path)
    return response, time.perf_counter()


async def main() -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        started = time.perf_counter()
        pages = asyncio.gather(*(get(client, f"/users/{i}") for i in (1, 2, 3, 0)))
        await asyncio.sleep(0.02)  # the four flows are running now
        ping, ping_at = await get(client, "/health")
        answered = await pages
    for response, _ in answered:
        print(f"GET {response.request.url.path} -> {response.status_code} {response.text}")
    print(f"GET /health -> {ping.status_code} {ping.text}")
    # Each flow takes 0.1 s: one after the other, the four would take 0.4 s.
    last = max(at for _, at in answered)
    print(f"4 requests served in parallel: {last - started < 0.35}")
    print(f"health check answered while flows ran: {ping_at < min(at for _, at in answered)}")
    # A run from asyncio gives the same RunResult as run(): here is one's report.
    result = await flowfn.aio.arun(flow, {"user_id": 1})
    print()
    print(result.report())


if __name__ == "__main__":
    asyncio.run(main())
