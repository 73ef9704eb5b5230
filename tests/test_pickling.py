"""flowfn's exceptions survive ``pickle`` and ``copy`` (DESIGN §5): same text, same
attributes, and ``RunFailed.result`` with its spans.

Values a span holds that cannot be pickled (a lock, a lambda, an exception whose
``__init__`` takes other arguments) arrive as stand-ins instead of breaking the pickle.
"""

import copy
import copyreg
import pickle
import threading
from pathlib import Path
from typing import Annotated, Any

import pytest
import trio

from flowfn import (
    GraphError,
    InputError,
    MapLengthError,
    NotebookError,
    RunFailed,
    RunResult,
    ShellError,
    StepTimeout,
    each,
    graph,
    run,
    shell,
    step,
    subflow,
)


def round_trips(exc: BaseException) -> list[BaseException]:
    return [pickle.loads(pickle.dumps(exc)), copy.copy(exc), copy.deepcopy(exc)]


def assert_same(exc: BaseException, *attributes: str) -> None:
    for other in round_trips(exc):
        assert type(other) is type(exc)
        assert str(other) == str(exc)
        for name in attributes:
            assert getattr(other, name) == getattr(exc, name), name


def test_graph_error() -> None:
    @step
    def needs(x: Annotated[int, "no_such_step"]) -> int:
        return x

    with pytest.raises(GraphError) as info:
        graph(needs)
    assert "no_such_step" in str(info.value)
    assert_same(info.value, "context", "problems")


def test_input_error() -> None:
    @step
    def double(x: int) -> int:
        return 2 * x

    with pytest.raises(InputError) as info:
        run(double, {"x": "not a number"})
    assert_same(info.value, "context", "problems")


def test_shell_error() -> None:
    with pytest.raises(RunFailed) as info:
        run(shell("echo out; echo err >&2; exit 3", name="fails"))
    err = info.value.__cause__
    assert isinstance(err, ShellError)
    assert_same(err, "returncode", "stdout", "stderr")
    assert pickle.loads(pickle.dumps(err)).returncode == 3


def test_notebook_error() -> None:
    err = NotebookError("cell 2 raised ValueError: bad", notebook=Path("in.ipynb"),
                        output=Path("out.ipynb"), cell=2, source="1/0", ename="ValueError",
                        evalue="bad", traceback="Traceback ...")
    assert_same(err, "notebook", "output", "cell", "source", "ename", "evalue", "traceback")


def test_step_timeout_and_map_length_error(flow_run: Any) -> None:
    @step(timeout=1)
    async def slow() -> None:
        await trio.sleep(5)

    timed_out = flow_run(slow, expect_failure=True).error.__cause__
    assert isinstance(timed_out, StepTimeout)
    assert_same(timed_out)

    @step
    def names() -> list[str]:
        return ["ann", "bob"]

    @step
    def ages() -> list[int]:
        return [1]

    @step
    def pair(n: Annotated[str, each(names)], a: Annotated[int, each(ages)]) -> str:
        return f"{n}{a}"

    mismatch = flow_run(pair, expect_failure=True).error.__cause__
    assert isinstance(mismatch, MapLengthError)
    assert_same(mismatch)


def test_run_failed_keeps_its_result(flow_run: Any) -> None:
    @step
    async def ok() -> dict[str, int]:
        return {"rows": 3}

    @step(retries=1)
    async def boom(data: Annotated[dict[str, int], ok]) -> None:
        raise ValueError(f"bad data {data}")

    result = flow_run(graph(boom), expect_failure=True)
    err = result.error
    assert isinstance(err, RunFailed)
    for other in round_trips(err):
        assert isinstance(other, RunFailed)
        assert str(other) == str(err)
        assert (other.step, other.attempt, other.attempts) == ("boom", 2, 2)
        got = other.result
        assert isinstance(got, RunResult)
        assert (got.run_id, got.status, got.graph_name) == (
            result.run_id, "failed", result.graph_name)
        assert got.report() == result.report()
        assert got["ok"] == {"rows": 3}
        span = got.spans["boom"]
        assert span.input == {"data": {"rows": 3}}
        assert str(span.error) == "bad data {'rows': 3}"
        assert [str(a.error) for a in span.attempt_log] == ["bad data {'rows': 3}"] * 2
        assert str(got.failures["boom"]) == "bad data {'rows': 3}"
    # The result's error points back at the same RunFailed after a round trip.
    again = pickle.loads(pickle.dumps(err))
    assert again.result.error is again


class NeedsTwo(Exception):
    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"a={a} b={b}")


def test_unpicklable_values_become_stand_ins(flow_run: Any) -> None:
    if copyreg.dispatch_table.get(RunFailed) is not None:
        # distributed installs tblib's exception reducers process-wide: they also send
        # an exception's __cause__ as it is, which flowfn cannot make portable.
        pytest.skip("tblib's exception pickling is installed in this process")
    lock = threading.Lock()

    @step
    async def make_lock() -> Any:
        return lock

    @step
    async def use(held: Annotated[Any, make_lock]) -> None:
        raise NeedsTwo(1, 2)

    result = flow_run(graph(use), expect_failure=True)
    result.spans["make_lock"].note = lambda: None  # a custom span attribute
    again = pickle.loads(pickle.dumps(result.error))
    got = again.result
    assert got.spans["make_lock"].output.startswith("<not picklable: <unlocked _thread.lock")
    assert got.spans["use"].input["held"] == got.spans["make_lock"].output
    assert got.spans["make_lock"].attributes["note"].startswith("<not picklable: <function")
    error = got.spans["use"].error
    assert type(error) is Exception and str(error) == "NeedsTwo: a=1 b=2"
    assert str(again) == str(result.error)
    # copy.copy and copy.deepcopy keep the values themselves.
    assert copy.copy(result).spans["make_lock"].output is lock
    assert copy.copy(result.spans["use"]).input["held"] is lock


def test_subflow_and_map_spans_pickle(flow_run: Any) -> None:
    @step
    async def items() -> list[int]:
        return [1, 2, 3]

    @step
    async def square(x: Annotated[int, each(items)]) -> int:
        return x * x

    inner = subflow(graph(square), name="inner")

    @step
    async def fail(v: Annotated[list[int], inner]) -> None:
        raise RuntimeError(f"got {v}")

    result = flow_run(graph(fail), expect_failure=True)
    got = pickle.loads(pickle.dumps(result))
    assert got.report() == result.report()
    assert got["inner/square"] == [1, 4, 9]
    assert got.span("inner/square").children["square[2]"].output == 9
    assert [s.path for s in got.walk()] == [s.path for s in result.walk()]


def test_run_failed_keeps_its_cause_across_pickle_and_copy(flow_run: Any) -> None:
    @step
    async def fails() -> None:
        raise ValueError("the step's own error")

    error = flow_run(graph(fails), expect_failure=True).error
    for other in (pickle.loads(pickle.dumps(error)), copy.copy(error)):
        assert isinstance(other.__cause__, ValueError)
        assert str(other.__cause__) == "the step's own error"
