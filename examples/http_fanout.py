"""An HTTP fan-out: list the users of an API, fetch every user's profile and repositories
concurrently, and add up the stars per team — against a small local API this example
starts itself (stdlib ``http.server`` on 127.0.0.1, a free port; no network needed).

    user_ids ─┬─► profile[0..n] ─┬─► team_stars
              └─► repos[0..n] ───┘

What it shows:
  * one HTTP client for the run, passed as a graph input, and ``await arun(...)`` inside
    the trio program that owns it;
  * two maps over the same list, ``each(user_ids)``: every user's two requests start as
    soon as the list arrives, all users at once;
  * ``@step(limit="api")`` with ``run(limits={"api": 4})``: at most four requests in
    flight, however many users there are (the server counts and reports it);
  * ``retries=`` with ``retry_on=``: the API answers 503 once for user 3, and that one
    request is retried after a short backoff; a 404 is not retried;
  * ``list[Outcome[...]]``: a user that no longer exists (404) is reported as missing,
    and the other users' results are kept.

Run it:  python examples/http_fanout.py
"""

import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Annotated, Any

import httpx
import trio

from flowfn import Backoff, Error, Outcome, RunResult, Value, arun, each, graph, step

# --- the flow ----------------------------------------------------------------------------


class Unavailable(Exception):
    """The API answered 5xx: worth trying again."""


class NotFound(LookupError):
    """The API answered 404: trying again will not help."""


@dataclass(frozen=True)
class User:
    id: int
    name: str
    team: str


@dataclass(frozen=True)
class Repo:
    name: str
    stars: int


async def get_json(client: httpx.AsyncClient, path: str) -> Any:
    response = await client.get(path)
    if response.status_code >= 500:
        raise Unavailable(f"GET {path}: {response.status_code}")
    if response.status_code == 404:
        raise NotFound(f"GET {path}: not found")
    response.raise_for_status()
    return response.json()


API_CALL: dict[str, Any] = {
    "limit": "api", "retries": 2, "retry_on": Unavailable,
    "backoff": Backoff(initial=0.05, jitter=0),
}


# ``client`` is a graph input: one httpx.AsyncClient (one connection pool) for the whole
# run, passed as it is (flowfn only checks that it is an AsyncClient).
@step(**API_CALL)
async def user_ids(client: httpx.AsyncClient) -> list[int]:
    return list((await get_json(client, "/users"))["ids"])


@step(**API_CALL)
async def profile(user_id: Annotated[int, each(user_ids)], client: httpx.AsyncClient) -> User:
    return User(**await get_json(client, f"/users/{user_id}"))


@step(**API_CALL)
async def repos(user_id: Annotated[int, each(user_ids)],
                client: httpx.AsyncClient) -> list[Repo]:
    return [Repo(**r) for r in await get_json(client, f"/users/{user_id}/repos")]


@step
def team_stars(
    user_ids: list[int], profile: list[Outcome[User]], repos: list[Outcome[list[Repo]]]
) -> dict[str, Any]:
    """Stars per team, most first; users whose profile or repositories failed are listed."""
    stars: dict[str, int] = defaultdict(int)
    missing: dict[int, str] = {}
    for uid, user, owned in zip(user_ids, profile, repos, strict=True):
        match user, owned:
            case Value(value=u), Value(value=rs):
                stars[u.team] += sum(r.stars for r in rs)
            case _:
                missing[uid] = next(str(o.error) for o in (user, owned) if isinstance(o, Error))
    return {"stars": dict(sorted(stars.items(), key=lambda kv: -kv[1])), "missing": missing}


flow = graph(team_stars)


async def fetch_team_stars(base_url: str, limit: int = 4) -> RunResult:
    """Run the flow with one HTTP client, open for exactly as long as the run."""
    # trust_env=False: a local server must not be reached through a configured proxy.
    async with httpx.AsyncClient(base_url=base_url, timeout=10, trust_env=False) as client:
        return await arun(flow, {"client": client}, limits={"api": limit})

# --- the local API -----------------------------------------------------------------------

USERS = {
    1: ("Ada", "compilers"), 2: ("Brian", "compilers"), 3: ("Chen", "web"),
    4: ("Dana", "web"), 5: ("Emil", "data"), 7: ("Farah", "data"),
    8: ("Gus", "web"), 9: ("Hana", "data"),
}
IDS = [1, 2, 3, 4, 5, 6, 7, 8, 9]  # user 6 was deleted: listed, but 404
LATENCY = 0.02  # seconds per request


class DemoAPI(ThreadingHTTPServer):
    """A JSON API on 127.0.0.1 that counts requests and how many were in flight at once."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.requests: list[str] = []
        self.in_flight = self.max_in_flight = 0
        self.flaky = {"/users/3"}  # answers 503 once

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def answer(self, path: str) -> tuple[int, Any]:
        with self.lock:
            self.requests.append(path)
            if path in self.flaky:
                self.flaky.discard(path)
                return 503, {"error": "try again"}
        parts = path.strip("/").split("/")
        if parts == ["users"]:
            return 200, {"ids": IDS}
        uid = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if uid not in USERS:
            return 404, {"error": "no such user"}
        name, team = USERS[uid]
        if len(parts) == 2:
            return 200, {"id": uid, "name": name, "team": team}
        return 200, [{"name": f"{name.lower()}-{i}", "stars": uid * 10 + i} for i in range(3)]


class _Handler(BaseHTTPRequestHandler):
    server: DemoAPI

    def do_GET(self) -> None:
        api = self.server
        with api.lock:
            api.in_flight += 1
            api.max_in_flight = max(api.max_in_flight, api.in_flight)
        try:
            time.sleep(LATENCY)
            status, body = api.answer(self.path)
        finally:
            with api.lock:
                api.in_flight -= 1
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the example's output to the flow's


@contextmanager
def serve() -> Iterator[DemoAPI]:
    """Run the demo API in a background thread for the duration of the ``with`` block."""
    api = DemoAPI()
    # A short poll interval: shutdown() waits for the server loop's next poll.
    thread = threading.Thread(target=api.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield api
    finally:
        api.shutdown()
        api.server_close()
        thread.join()


if __name__ == "__main__":
    with serve() as api:
        result = trio.run(fetch_team_stars, api.url)
    print(f"stars per team: {result.output['stars']}")
    print(f"missing users: {result.output['missing']}")
    print(f"requests: {len(api.requests)}, at most {api.max_in_flight} in flight "
          f"(limit 4: {api.max_in_flight <= 4})")
    print(f"profile[2] attempts: {result.spans['profile'].children['profile[2]'].attempts}")
    print()
    print(result.report())
