"""Every example in ``examples/`` works: as a script, and as a flow in virtual time.

Two kinds of test per example:
  * ``test_script[name]`` runs ``python examples/name.py`` in a subprocess (all scripts
    are started together, once per session, so the real sleeps overlap) and checks what
    it prints: exit code 0, nothing on stderr, the key lines and the report's rows;
  * ``test_<name>_*`` imports the module and runs its ``flow`` with the ``flow_run``
    fixture (trio ``MockClock`` with autojump): sleeps take no real time, so exact
    virtual timings can be asserted — the scenario the example illustrates, precisely.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pandas as pd
import pytest
import trio

from flowfn import Graph, RunFailed, StepTimeout

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# What each script must print: regular expressions, searched line by line (re.MULTILINE).
REPORT_HEADER = r"^step +status +time +tries +detail$"
EXPECTED_OUTPUT: dict[str, list[str]] = {
    "data_loader": [
        r"^\{'users': \['Alice', 'Bob'\], 'orders': \[\{'id': 1\}, \{'id': 2\}\]\}$",
        r"^fetch_users and fetch_orders ran in parallel: True$",
    ],
    "parallel_sum": [
        r"^output: 20$",
        r"^step1 +succeeded +0\.\d+s +1$",
        r"^step1 and step2 ran in parallel: True$",
    ],
    "user_pipeline": [
        r"^output: User status: active$",
        r"^process_user:\n  \.input +\= \{'user_id': 'user_123'\}\n"
        r"  \.output +\= 'Processed user: user_123'\n  \.user_status +\= 'active'$",
        r"^check_status:\n  \.input +\= \{\}\n  \.output +\= 'User status: active'$",
    ],
    "explicit_order": [
        r"^rows written: 3$",
        r"^process_data started after init_database finished: True$",
        r"^load_records ran alongside init_database: True$",
    ],
    "conditional": [
        r"^--- email='user@example.com'\n\{'order': \{'email': 'user@example.com'\}, "
        r"'validated': \{'valid': True\}, 'processed': 'welcome mail queued for "
        r"user@example.com'\}$",
        r"^--- email='not-an-email'\n\{'order': \{'email': 'not-an-email'\}, "
        r"'validated': \{'valid': False\}, 'processed': \"rejected 'not-an-email': not an "
        r"email address\"\}$",
        r"^process_invalid +skipped +its when= predicate was false$",
        r"^process_valid +skipped +its when= predicate was false$",
        r"^merge_results +succeeded ",
    ],
    "notifications": [
        r"^Notifications sent: \['email', 'slack', 'webhook'\]$",
        r"^Count: 3$",
        r"^log_notifications +succeeded ",
        r"^three 0\.1 s notifications took \d+\.\d\d s together$",
    ],
    "chord": [
        r"^api1: \['api1-item-0', 'api1-item-1'\]$",
        r"^api2: \['api2-item-0', 'api2-item-1'\]$",
        r"^api3: \['api3-item-0', 'api3-item-1'\]$",
        r"^aggregate started after the slowest fetch: True$",
    ],
    "partial_failures": [
        r"^status: succeeded$",
        r"^successful fetches: \['api1', 'api3'\]$",
        r"^failed fetches: \{'api2': 'ConnectionError: api2.example.com refused the "
        r"connection'\}$",
        r"^failures recorded on the run: \['fetch_api2'\]$",
        r"^fetch_api2 +failed +0\.\d+s +1 +ConnectionError: api2.example.com refused",
        r"^RunFailed: step 'handle_results' failed on attempt 1: ValueError: all 3 data "
        r"fetches failed$",
        r"^handle_results +failed ",
    ],
    "race": [
        r"^--- normal day\noutput: answer 42 \(from the fast source\)\nwinner: fast_source\n"
        r"fast_source: succeeded\n"
        r"reliable_source: cancelled \(lost the race 'data' to 'fast_source'\)$",
        r"^--- the fast source is down\noutput: answer 42 \(from the reliable source\)\n"
        r"winner: reliable_source\nfast_source: failed\nreliable_source: succeeded$",
    ],
    "timeouts_retries": [
        r"^output: \{'quote': 101\.5, 'reference': \{'status': 'stale', 'price': 99\.0\}, "
        r"'volume': None\}$",
        r"^fetch_quote attempts:\n  #1 at \+0\.00 s: ConnectionError\n"
        r"  #2 at \+\d+\.\d\d s: ConnectionError\n  #3 at \+\d+\.\d\d s: ok$",
        r"^fetch_reference_price: succeeded, timed out after 0\.2s, returned on_timeout$",
        r"^fetch_volume: failed, StepTimeout: True ",
        r"^fetch_quote +succeeded +0\.\d+s +3$",
    ],
    "throttled": [
        r"^calls made: 10$",
        r"^max concurrency: 5$",
        r"^call_api\[9\] +succeeded ",
    ],
    "parallel_branches": [
        r"^branch1: shell said 'Hello World!\\n', python said 'Hello from Python!'$",
        r"^branch2: shell said 'Hello World!\\n', python said 'Hello from Python!'$",
        r"^continue_processing: succeeded$",
        r"^branch2/hello_shell +succeeded ",
        r"^the two branches ran in parallel: True$",
    ],
    "nested_parallel": [
        r"^output: \['task 1L-A', 'task 1L-B', 'task 1R-A', 'task 1R-B', "
        r"'task 2L-A', 'task 2L-B', 'task 2R-A', 'task 2R-B'\]$",
        r"^branch2/right/task_b +succeeded ",
        r"^8 leaf tasks, all running at the same time: True$",
    ],
    "map_pipeline": [
        r"^output: \{'pages': \['home', 'about', 'blog', 'shop', 'help'\], 'words': 42\}$",
        r"^fetch\[4\] +succeeded ",
        r"^parse\[4\] +succeeded ",
        r"^parse\[1\] started before the last fetch finished: True$",
    ],
    "feature_pipeline": [
        r"^customer +$",
        r"^c0 +45 +1045\.0 +23\.22 +43\.0 +2 +88 +0\.50 +0\.00 +0\.50 +0\.00$",
        r"^customers: 6, features: 10$",
        r"^churn risk: \['c5', 'c4', 'c3', 'c2'\]$",
        r"^category_mix +succeeded ",
    ],
    "http_fanout": [
        r"^stars per team: \{'data': 639, 'web': 459, 'compilers': 96\}$",
        r"^missing users: \{6: 'GET /users/6: not found'\}$",
        r"^requests: 20, at most [1-4] in flight \(limit 4: True\)$",
        r"^profile\[2\] attempts: 2$",
        r"^profile\[5\] +failed .* NotFound: GET /users/6: not found$",
    ],
    "asgi_app": [
        r'^GET /users/1 -> 200 \{"id":1,"name":"user 1","orders":\[10,11,12\]\}$',
        r'^GET /users/0 -> 404 \{"error":"no user 0"\}$',
        r'^GET /health -> 200 \{"ok":true\}$',
        r"^4 requests served in parallel: True$",
        r"^health check answered while flows ran: True$",
    ],
    "log_files": [
        r"^12 requests in 3 files, statuses \{200: 6, 201: 1, 204: 1, 404: 1, 500: 1, "
        r"502: 1, 503: 1\}$",
        r"^slowest: /orders in api-2\.log \(1200 ms\)$",
        r"^unreadable: broken\.log:2: not a request line: 'this line is not a request'$",
        r"^ALERT: 3 server errors \(more than 2\)$",
        r"^parse_log\[3\] +failed .* ValueError: broken\.log:2: ",
        r"^files parsed: 4, failed: \['parse_log'\]$",
    ],
    "approvals": [
        r"^status: waiting$",
        r"^  form security_review: 'Security Review Required', fields \['approved', "
        r"'risk_level'\]$",
        r"^after legal: waiting, waiting for \['finance_review', 'security_review'\]$",
        r"^  security_review\.approved: invalid value for type, expected bool \(got 'yes'\)$",
        r"^after finance: waiting, waiting for \['security_review'\]$",
        r"^after security: succeeded, output: Verdict\(approved=True, blocked_by=\[\]\)$",
        r"^check_approvals +succeeded ",
    ],
}


def test_every_example_is_tested() -> None:
    on_disk = {p.stem for p in EXAMPLES.glob("*.py")}
    assert on_disk == set(EXPECTED_OUTPUT), "add the new example to EXPECTED_OUTPUT"


# --- flows in virtual time ---------------------------------------------------------------


@cache
def example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` once (it is not a package)."""
    spec = importlib.util.spec_from_file_location(f"flowfn_example_{name}",
                                                  EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    assert isinstance(module.flow, Graph)
    return module


def times(span: Any, origin: float = 0.0) -> tuple[float, float]:
    """(started, ended) of a span since ``origin``, rounded away from float noise."""
    return round(span.started - origin, 6), round(span.ended - origin, 6)


def test_parallel_sum(flow_run, flow_clock) -> None:
    result = flow_run(example("parallel_sum").flow, {"value": 10})
    assert result.output == 20
    assert times(result.spans["step1"]) == times(result.spans["step2"]) == (0, 0.1)
    assert result.spans["step3"].input == {"step1": 10, "step2": 10}
    assert flow_clock.current_time() == pytest.approx(0.1)


def test_parallel_sum_converts_the_input(flow_run) -> None:
    assert flow_run(example("parallel_sum").flow, {"value": "21"}).output == 42


def test_user_pipeline(flow_run) -> None:
    result = flow_run(example("user_pipeline").flow, {"user_id": "user_123"})
    assert result.output == "User status: active"
    process, check = result.spans["process_user"], result.spans["check_status"]
    assert process.input == {"user_id": "user_123"}
    assert process.output == "Processed user: user_123"
    assert process.attributes == {"user_status": "active"}
    assert check.input == {}
    assert check.started >= process.ended


def test_explicit_order(flow_run, flow_clock) -> None:
    module = example("explicit_order")
    for _ in range(2):  # init_database starts each run from an empty table
        t0 = flow_clock.current_time()  # the virtual clock keeps going between runs
        result = flow_run(module.flow, {"source": "a.csv"})
        assert result.output == 3
        assert times(result.spans["load_records"], t0) == (0, 0.05)
        assert times(result.spans["init_database"], t0) == (0, 0.1)
        assert times(result.spans["process_data"], t0) == (0.1, 0.1)
    assert module.DB.tables == {"records": ["a.csv-0", "a.csv-1", "a.csv-2"]}


@pytest.mark.parametrize(("email", "ran", "skipped"), [
    ("user@example.com", "process_valid", "process_invalid"),
    ("not-an-email", "process_invalid", "process_valid"),
    ("user@localhost", "process_invalid", "process_valid"),
])
def test_conditional(flow_run, email: str, ran: str, skipped: str) -> None:
    result = flow_run(example("conditional").flow, {"data": {"email": email}})
    assert result.spans[ran].status == "succeeded"
    assert result.spans[skipped].status == "skipped"
    assert result.spans[skipped].reason == "its when= predicate was false"
    assert result.output["processed"] == result[ran]
    assert result.spans["merge_results"].input[skipped] is None
    assert result.output["order"] == {"email": email}


def test_notifications(flow_run, flow_clock) -> None:
    module = example("notifications")
    result = flow_run(module.flow, {"order_id": "ORD-123"})
    assert result.output == {"notifications_sent": ["email", "slack", "webhook"],
                             "notification_count": 3}
    for name in ("send_email", "send_slack", "send_webhook"):
        assert times(result.spans[name]) == (0, 0.1)
        assert result[name].order_id == "ORD-123"
    assert result["process_order"] == module.Order("ORD-123", "completed")
    assert flow_clock.current_time() == pytest.approx(0.1)  # not 0.3


def test_chord(flow_run) -> None:
    result = flow_run(example("chord").flow)
    assert sorted(result.output) == ["api1", "api2", "api3"]
    assert result.output["api2"] == {"api": "api2", "items": ["api2-item-0", "api2-item-1"]}
    assert times(result.spans["aggregate"])[0] == 0.15  # the slowest fetch's end


def test_partial_failures(flow_run) -> None:
    result = flow_run(example("partial_failures").flow)
    assert result.status == "succeeded"
    assert result.output["successful"] == ["api1", "api3"]
    assert result.output["failed"] == {
        "api2": "ConnectionError: api2.example.com refused the connection"}
    assert result.output["data"] == {"api1": {"orders": 12}, "api3": {"customers": 4}}
    assert list(result.failures) == ["fetch_api2"]
    assert isinstance(result.failures["fetch_api2"], ConnectionError)


def test_partial_failures_one_success_is_enough(flow_run) -> None:
    module = example("partial_failures")
    result = flow_run(module.flow, overrides={module.fetch_api1: OSError("api1 is down")})
    assert result.status == "succeeded"
    assert result.output["successful"] == ["api3"]
    assert result.output["failed"]["api1"] == "OSError: api1 is down"
    assert sorted(result.failures) == ["fetch_api1", "fetch_api2"]


def test_partial_failures_all_failed(flow_run) -> None:
    module = example("partial_failures")
    down = {module.fetch_api1: OSError("down"), module.fetch_api3: OSError("down")}
    result = flow_run(module.flow, overrides=down, expect_failure=True)
    error = result.error
    assert isinstance(error, RunFailed)
    assert str(error).startswith(
        "step 'handle_results' failed on attempt 1: ValueError: all 3 data fetches failed")
    assert isinstance(error.__cause__, ValueError)
    assert sorted(result.failures) == ["fetch_api1", "fetch_api2", "fetch_api3",
                                       "handle_results"]


def test_race_fast_source_wins(flow_run, flow_clock) -> None:
    result = flow_run(example("race").flow, {"query": "q"})
    assert result.output == "answer 42 (from the fast source)"
    assert result.spans["data"].winner == "fast_source"
    loser = result.spans["reliable_source"]
    assert loser.status == "cancelled"
    assert loser.reason == "lost the race 'data' to 'fast_source'"
    assert flow_clock.current_time() == pytest.approx(0.05)  # the loser did not hold the run


def test_race_a_failing_contestant_does_not_win(flow_run, flow_clock) -> None:
    module = example("race")
    result = flow_run(module.flow, {"query": "q"},
                      overrides={module.fast_source: ConnectionError("down")})
    assert result.spans["data"].winner == "reliable_source"
    assert result.output == "answer 42 (from the reliable source)"
    assert result.spans["fast_source"].status == "failed"
    assert flow_clock.current_time() == pytest.approx(0.3)


def test_race_all_contestants_fail(flow_run) -> None:
    module = example("race")
    result = flow_run(module.flow, {"query": "q"}, expect_failure=True, overrides={
        module.fast_source: ConnectionError("a"), module.reliable_source: ConnectionError("b")})
    assert result.spans["data"].status == "failed"
    assert result.spans["use_data"].status != "succeeded"


def test_timeouts_retries(flow_run, flow_clock) -> None:
    result = flow_run(example("timeouts_retries").flow, {"symbol": "ACME"})
    assert result.output == {"quote": 101.5, "reference": {"status": "stale", "price": 99.0},
                             "volume": None}
    quote = result.spans["fetch_quote"]
    assert quote.attempts == 3
    assert times(quote) == (0, 0.18)
    log = quote.attempt_log
    assert [type(a.error) for a in log] == [ConnectionError, ConnectionError, type(None)]
    # 0.01 s per try, then 0.05 s and 0.1 s of backoff (Backoff(jitter=0) is exact)
    assert [round(a.ended, 6) for a in log] == [0.01, 0.07, 0.18]
    assert times(result.spans["fetch_reference_price"]) == (0, 0.2)
    volume = result.spans["fetch_volume"]
    assert volume.status == "failed" and isinstance(volume.error, StepTimeout)
    assert times(volume) == (0, 0.1)
    assert list(result.failures) == ["fetch_volume"]
    assert flow_clock.current_time() == pytest.approx(0.2)  # not 5 s


def test_timeouts_retries_attempt_start_times(flow_run) -> None:
    result = flow_run(example("timeouts_retries").flow, {"symbol": "ACME"})
    log = result.spans["fetch_quote"].attempt_log
    assert [(round(a.started, 6), round(a.ended, 6)) for a in log] == [
        (0, 0.01), (0.06, 0.07), (0.17, 0.18)]


@pytest.mark.parametrize(("cap", "seconds"), [(5, 0.2), (2, 0.5), (1, 1.0), (10, 0.1)])
def test_throttled(flow_run, flow_clock, cap: int, seconds: float) -> None:
    result = flow_run(example("throttled").flow, limits={"api": cap})
    assert result.output == {"calls": 10, "max_concurrency": cap}
    assert [r["endpoint"] for r in result["call_api"]] == [f"/items/{i}" for i in range(10)]
    assert len(result.spans["call_api"].children) == 10
    assert flow_clock.current_time() == pytest.approx(seconds)


def test_throttled_by_max_concurrency(flow_run, flow_clock) -> None:
    result = flow_run(example("throttled").flow, limits={"api": 10}, max_concurrency=3)
    assert result.output == {"calls": 10, "max_concurrency": 3}
    assert flow_clock.current_time() == pytest.approx(0.4)  # waves of 3, 3, 3, 1


def test_parallel_branches(flow_run) -> None:
    result = flow_run(example("parallel_branches").flow)
    assert result.output is None  # continue_processing is a stub
    for branch in ("branch1", "branch2"):
        assert result[branch] == "Hello World!\n"
        assert result[f"{branch}/hello_python"] == "Hello from Python!"
        span = result.spans[branch]
        assert list(span.children) == ["hello_stub", "hello_python", "hello_shell"]
        stub_, python, shell_ = span.children.values()
        assert stub_.ended <= python.started and python.ended <= shell_.started
    last = result.spans["continue_processing"]
    assert last.status == "succeeded"
    assert last.started >= max(result.spans[b].ended for b in ("branch1", "branch2"))


def test_parallel_branches_failure_names_the_path(flow_run) -> None:
    result = flow_run(example("parallel_branches").flow, expect_failure=True,
                      overrides={"branch1/hello_shell": RuntimeError("no shell")})
    assert str(result.error).startswith(
        "step 'branch1/hello_shell' failed on attempt 1: RuntimeError: no shell")
    assert isinstance(result.error.__cause__, RuntimeError)
    assert result.span("branch1/hello_shell").status == "failed"
    assert result.spans["continue_processing"].status == "cancelled"
    assert result.spans["continue_processing"].reason.startswith("never started")


def test_nested_parallel(flow_run, flow_clock) -> None:
    result = flow_run(example("nested_parallel").flow)
    assert result.output == [f"task {b}{s}-{t}" for b in "12" for s in "LR" for t in "AB"]
    leaves = [s for s in result.walk() if s.path.count("/") == 2]
    assert sorted(s.path for s in leaves) == sorted(
        f"branch{b}/{side}/task_{t}" for b in "12" for side in ("left", "right") for t in "ab")
    assert {times(s) for s in leaves} == {(0, 0.2)}  # all eight at once
    assert flow_clock.current_time() == pytest.approx(0.2)


def test_nested_parallel_inner_input(flow_run) -> None:
    module = example("nested_parallel")
    assert set(module.sub_parallel.inputs) == {"branch"}
    assert set(module.pair.inputs) == {"branch", "side"}
    assert module.flow.inputs == {}
    result = flow_run(module.sub_parallel, {"branch": "9"})
    assert result.output == {"left": {"task_a": "task 9L-A", "task_b": "task 9L-B"},
                             "right": {"task_a": "task 9R-A", "task_b": "task 9R-B"}}


def test_nested_parallel_run_timeout(flow_run) -> None:
    result = flow_run(example("nested_parallel").flow, timeout=0.1, expect_failure=True)
    assert isinstance(result.error.__cause__, TimeoutError)
    leaves = [s for s in result.walk() if s.path.count("/") == 2]
    assert len(leaves) == 8
    for span in leaves:
        assert span.status == "cancelled"
        assert span.reason == "cancelled: the run timed out after 0.1s"
        assert times(span) == (0, 0.1)
    assert result.spans["end"].status == "cancelled"
    assert result.spans["end"].started is None


def test_nested_parallel_cancelled_sub_workflows_record_their_end(flow_run) -> None:
    events: list[tuple[str, str]] = []
    result = flow_run(example("nested_parallel").flow, timeout=0.1, expect_failure=True,
                      on_event=lambda e: events.append((e.kind, e.step)))
    for path in ("branch1", "branch1/left", "branch2/right"):
        span = result.span(path)
        assert span.status == "cancelled"
        assert span.ended is not None, f"{path}: cancelled, but no end time"
        assert times(span) == (0, 0.1), path  # a cancelled container ends when it stops
        assert ("cancelled", path) in events


def test_map_pipeline(flow_run, flow_clock) -> None:
    module = example("map_pipeline")
    result = flow_run(module.flow, {"site": "example.com"})
    assert result.output == {"pages": ["home", "about", "blog", "shop", "help"], "words": 42}
    fetches = result.spans["fetch"].children
    parses = result.spans["parse"].children
    for i, latency in enumerate(module.LATENCY.values()):
        assert times(fetches[f"fetch[{i}]"]) == (0, latency)
        # pipelined: each page is parsed right after it arrives, not after the slowest
        assert times(parses[f"parse[{i}]"]) == (latency, round(latency + 0.05, 6))
    assert flow_clock.current_time() == pytest.approx(0.3)


def test_map_pipeline_with_other_pages(flow_run) -> None:
    module = example("map_pipeline")
    urls = ["https://x.org/help", "https://x.org/about"]
    result = flow_run(module.flow, {"site": "x.org"}, overrides={module.list_urls: urls})
    assert result.output == {"pages": ["help", "about"], "words": 2 * 4 + 2 * 5}


def test_feature_pipeline(flow_run) -> None:
    result = flow_run(example("feature_pipeline").flow, {"as_of": "2026-04-01"})
    table = result.output["feature_table"]
    assert table.index.tolist() == ["c0", "c1", "c2", "c3", "c4", "c5"]
    assert table.loc["c0", "orders"] == 45 and table.loc["c5", "days_since_last"] == 62
    shares = table[[c for c in table.columns if c.startswith("share_")]]
    assert (shares.sum(axis=1) - 1).abs().max() < 0.02  # rounded shares still add up
    assert result.output["churn_risk"] == ["c5", "c4", "c3", "c2"]
    assert str(result.spans["recency_features"].input["as_of"]) == "2026-04-01"
    ended = result.spans["purchases"].ended
    for name in ("spend_features", "recency_features", "category_mix"):
        assert result.spans[name].started == ended  # all three as soon as the data exists


def test_feature_pipeline_on_other_data(flow_run) -> None:
    module = example("feature_pipeline")
    rows = pd.DataFrame({
        "customer": ["a", "a", "b"],
        "date": pd.to_datetime(["2026-03-01", "2026-03-31", "2026-01-15"]),
        "category": ["books", "travel", "books"],
        "amount": [10.0, 30.0, 5.0],
    })
    result = flow_run(module.flow, {"quiet_days": 10}, overrides={module.purchases: rows})
    table = result.output["feature_table"]
    assert table.loc["a"].to_dict() == {
        "orders": 2, "total_spend": 40.0, "mean_basket": 20.0, "max_basket": 30.0,
        "days_since_last": 1, "active_days": 30, "share_groceries": 0.0,
        "share_travel": 0.75, "share_electronics": 0.0, "share_books": 0.25}
    assert result.output["churn_risk"] == ["b"]
    assert module.churn_risk(table, quiet_days=0) == ["b", "a"]  # still the plain function


@pytest.mark.parametrize("limit", [4, 2])
def test_http_fanout(limit: int) -> None:
    # Real sockets, so a real clock: under flow_run's autojumping MockClock, trio would
    # see every task waiting on the network and leap to httpx's own timeout.
    module = example("http_fanout")
    with module.serve() as api:
        result = trio.run(module.fetch_team_stars, api.url, limit)
    assert result.output == {"stars": {"data": 639, "web": 459, "compilers": 96},
                             "missing": {6: "GET /users/6: not found"}}
    assert 1 <= api.max_in_flight <= limit
    assert len(api.requests) == 20 and api.requests.count("/users/3") == 2  # one retry
    profile3 = result.spans["profile"].children["profile[2]"]
    assert profile3.attempts == 2 and type(profile3.attempt_log[0].error).__name__ == (
        "Unavailable")
    assert result.spans["profile"].children["profile[5]"].attempts == 1  # 404: no retry
    assert sorted(result.failures) == ["profile", "repos"]


def test_http_fanout_logic_in_virtual_time(flow_run) -> None:
    module = example("http_fanout")

    async def fake_profile(user_id: int, client: object) -> object:
        await trio.sleep(0.1 * user_id)
        if user_id == 2:
            raise module.NotFound("GET /users/2: not found")
        return module.User(user_id, f"u{user_id}", "odd" if user_id % 2 else "even")

    unused = httpx.AsyncClient()  # every step that would use it is overridden
    result = flow_run(module.flow, {"client": unused}, limits={"api": 8}, overrides={
        module.user_ids: [1, 2, 3, 4],
        module.profile: fake_profile,
        module.repos: lambda user_id, client: [module.Repo("r", user_id)],
    })
    assert result.output == {"stars": {"even": 4, "odd": 4},
                             "missing": {2: "GET /users/2: not found"}}
    assert result.spans["team_stars"].started == pytest.approx(0.4)  # the slowest profile


def test_log_files(flow_run, tmp_path: Path) -> None:
    module = example("log_files")
    module.write_sample_logs(tmp_path)
    result = flow_run(module.flow, {"folder": str(tmp_path)})
    summary = result["summarize"]
    assert summary.files == 3 and summary.requests == 12 and summary.server_errors == 3
    assert summary.slowest == ("api-2.log", "/orders", 1200)
    assert list(summary.unreadable) == ["broken.log"]
    items = result.spans["parse_log"].children
    assert [span.input["path"].name for span in items.values()] == [
        "api-1.log", "api-2.log", "api-3.log", "broken.log"]  # README.txt is not a log
    assert items["parse_log[3]"].status == "failed"
    assert list(result.failures) == ["parse_log"]  # handled by the Outcome, still recorded
    assert result.spans["alert"].status == "succeeded"
    assert result.output.endswith("ALERT: 3 server errors (more than 2)")


def test_log_files_below_the_alert_threshold(flow_run, tmp_path: Path) -> None:
    module = example("log_files")
    module.write_sample_logs(tmp_path)
    result = flow_run(module.flow, {"folder": tmp_path, "max_server_errors": 3})
    assert result.spans["alert"].status == "skipped"
    assert result.spans["report"].input["alert"] is None
    assert "ALERT" not in result.output


def test_log_files_with_no_readable_file(flow_run, tmp_path: Path) -> None:
    (tmp_path / "bad.log").write_text("nonsense\n", encoding="utf-8")
    result = flow_run(example("log_files").flow, {"folder": tmp_path}, expect_failure=True)
    assert str(result.error).startswith(
        "step 'summarize' failed on attempt 1: ValueError: none of the 1 log files could "
        "be read")


# --- scripts ------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def scripts(request: pytest.FixtureRequest) -> Iterator[dict[str, subprocess.Popen[str]]]:
    """The selected examples, all started at once as ``python examples/<name>.py`` from the
    repo root when the session starts (so their start-ups overlap each other and the
    virtual-time tests above; ``test_script`` then only collects what they printed)."""
    selected = [item.callspec.params["name"] for item in request.session.items
                if item.path == Path(__file__).resolve()
                and getattr(item, "originalname", None) == "test_script"]
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(Path("examples") / f"{name}.py")], cwd=ROOT, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        for name in selected
    }
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.mark.parametrize("name", list(EXPECTED_OUTPUT))
def test_script(name: str, scripts: dict[str, subprocess.Popen[str]]) -> None:
    stdout, stderr = scripts[name].communicate(timeout=60)
    assert scripts[name].returncode == 0, stderr
    assert stderr == ""
    for pattern in [*EXPECTED_OUTPUT[name], REPORT_HEADER]:
        assert re.search(pattern, stdout, re.MULTILINE), f"{pattern!r} not in:\n{stdout}"


def test_approvals_all_three_answers(flow_run) -> None:
    module = example("approvals")
    result = flow_run(module.flow, answers={
        "legal_review": {"approved": True},
        "finance_review": {"approved": False, "comments": "over budget"},
        "security_review": {"approved": True, "risk_level": "medium"},
    })
    assert result.output == module.Verdict(approved=False, blocked_by=["finance"])


def test_approvals_waits_for_every_form(flow_run) -> None:
    waiting = flow_run(example("approvals").flow, answers={"legal_review": {"approved": True}})
    assert waiting.status == "waiting"  # for finance; security was escalated meanwhile
    assert [f.name for f in waiting.waiting] == ["finance_review"]
    assert waiting.waiting[0].schema["required"] == ["approved"]
    assert waiting.spans["check_approvals"].status == "pending"


def test_approvals_security_is_escalated_after_72_hours(flow_run, flow_clock) -> None:
    module = example("approvals")
    result = flow_run(module.flow, answers={"legal_review": {"approved": True},
                                            "finance_review": {"approved": True}})
    assert result.output == module.Verdict(approved=False, blocked_by=["security"])
    assert result.spans["security_review"].reason == "its deadline passed without an answer"
    assert flow_clock.current_time() == pytest.approx(72 * 3600)
