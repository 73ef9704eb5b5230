"""@step options checked at decoration (DESIGN §2, §4, §5), async callables, and pickling
steps by reference."""

import copy
import functools
import pickle
import threading
from typing import Any

import flows_for_options as fo
import pytest
from messages_help import at, repo_root_cwd  # noqa: F401 (a fixture)

from flowfn import GraphError, graph, run, step

pytestmark = pytest.mark.usefixtures("repo_root_cwd")


def work(x: int) -> int:
    return x


async def awork(x: int) -> int:
    return x


HERE = f"step 'work' ({at(work)})"
AHERE = f"step 'awork' ({at(awork)})"


def error(exc_type: type[Exception], fn: Any = work, **options: Any) -> str:
    with pytest.raises(exc_type) as info:
        step(**options)(fn)
    return str(info.value)


# --- misspelt and mistyped options ------------------------------------------------------------


def test_unknown_option_suggests_the_real_one() -> None:
    assert error(TypeError, retrys=3) == (
        f"{HERE}: @step has no option retrys=. Did you mean retries=? Its options: after, "
        "backoff, cache, checkpoint, executor, limit, map, name, on_timeout, resources, "
        "retries, retry_on, timeout, version, when."
    )


def test_unknown_option_without_a_near_miss() -> None:
    assert error(TypeError, colour="red").startswith(
        f"{HERE}: @step has no option colour=. Its options: after,")


def test_unknown_option_on_a_bare_step_call() -> None:
    with pytest.raises(TypeError) as info:
        step(work, timeut=3)
    assert str(info.value).startswith(
        f"{HERE}: @step has no option timeut=. Did you mean timeout=?")


def test_name_that_is_not_a_string() -> None:
    assert error(TypeError, name=5) == (
        f"{HERE}: name= must be a non-empty str, got 5 (an int). Leave it out to use the "
        "function's name."
    )


def test_timeout_as_text() -> None:
    assert error(ValueError, timeout="5") == (
        f"{HERE}: timeout= must be a number of seconds > 0, got '5'. Leave it out for no "
        "timeout."
    )


def test_timeout_true_is_not_a_number() -> None:
    assert "timeout= must be a number of seconds > 0, got True" in error(ValueError, timeout=True)


def test_retries_as_text() -> None:
    assert error(ValueError, retries="2").startswith(
        f"{HERE}: retries= must be a whole number >= 0, got '2'.")


def test_limit_that_is_not_a_name() -> None:
    assert error(TypeError, limit=5) == (
        f"{HERE}: limit= must be the name of a capacity limit (a str), got 5 (an int). "
        'Write limit="api" and run(..., limits={"api": 5}).'
    )


def test_resources() -> None:
    assert step(resources={"GPU": 1})(work).resources == {"GPU": 1}
    assert step(work).resources is None
    assert error(TypeError, resources=["GPU"]) == (
        f"{HERE}: resources= must map resource names to amounts, got ['GPU'] (a list). "
        'Write for example resources={"GPU": 1}.'
    )
    assert error(TypeError, resources={"GPU": 0}) == (
        f"{HERE}: resources= must map resource names (str) to amounts > 0, but it has "
        "'GPU': 0. Write for example resources={\"GPU\": 1}."
    )


def test_cache_version_checkpoint() -> None:
    s = step(cache=True, version="2", checkpoint=False)(work)
    assert (s.cache, s.version, s.checkpoint) == (True, "2", False)
    d = step(work)
    assert (d.cache, d.version, d.checkpoint) == (False, None, True)
    assert error(TypeError, cache="yes") == (
        f"{HERE}: cache= must be True or False, got 'yes' (a str)."
    )
    assert error(TypeError, checkpoint=None) == (
        f"{HERE}: checkpoint= must be True or False, got None."
    )
    assert error(TypeError, version=2) == (
        f"{HERE}: version= must be a non-empty str that you change when the step's results "
        'change, got 2 (an int). Write for example version="2".'
    )


def test_map_mode() -> None:
    assert step(work).map == "zip"
    assert step(map="product")(work).map == "product"
    assert error(ValueError, map="cartesian") == (
        f"{HERE}: map= must be 'zip' (the items of the each() parameters side by side) or "
        "'product' (every combination), got 'cartesian' (a str)."
    )


# --- executors --------------------------------------------------------------------------------


def test_every_executor_name() -> None:
    assert step(executor="process")(work).executor == "process"
    assert step(executor="inline")(work).executor == "inline"
    assert step(executor="asyncio")(awork).executor == "asyncio"
    assert step(executor="inline")(awork).executor == "inline"


def test_executor_given_or_defaulted() -> None:
    assert step(work).executor == "thread" and not step(work).executor_given
    assert step(awork).executor == "async" and not step(awork).executor_given
    assert step(executor="thread")(work).executor_given


def test_thread_executor_on_an_async_def_is_refused() -> None:
    assert error(ValueError, awork, executor="thread") == (
        f"{AHERE}: executor='thread' runs a plain 'def' in a worker thread, but this is an "
        "'async def' function. Leave executor= out to await it on the event loop, or use "
        "executor='asyncio' for asyncio libraries."
    )
    assert "in a worker process" in error(ValueError, awork, executor="process")


def test_asyncio_executor_on_a_plain_def_is_refused() -> None:
    assert error(ValueError, executor="asyncio") == (
        f"{HERE}: executor='asyncio' needs an 'async def' function. Use executor='thread' or "
        "'inline' for a plain 'def'."
    )


def test_executor_typo() -> None:
    assert error(ValueError, executor="threads") == (
        f"{HERE}: executor='threads' is not known. Did you mean 'thread'? Use one of: "
        "'async', 'thread', 'inline', 'process', 'asyncio'."
    )


def test_executor_object() -> None:
    executor = fo.FakeExecutor()
    s = step(executor=executor)(work)
    assert s.executor is executor and s.executor_given


def test_executor_object_without_async_run() -> None:
    assert error(TypeError, executor=object()) == (
        f"{HERE}: executor= must be one of 'async', 'thread', 'inline', 'process', 'asyncio' "
        "or an executor object (with an async run() method and open()/close()), got an "
        "object."
    )


# --- async callables --------------------------------------------------------------------------


def test_object_with_async_call_is_awaited() -> None:
    s = step(fo.AsyncAdder())
    assert (s.is_async, s.executor, s.name) == (True, "async", "AsyncAdder")
    assert run(graph(s), {"x": 1}).output == 2


def test_async_wraps_wrapper_around_a_def_is_awaited() -> None:
    s = step(fo.async_wrapper(fo.plain_add))
    assert (s.is_async, s.executor, s.name) == (True, "async", "plain_add")
    assert run(graph(s), {"x": 1, "y": 2}).output == 3


def test_partial_of_an_async_function_is_awaited() -> None:
    s = step(functools.partial(fo.async_add, y=10))
    assert (s.is_async, s.executor, s.name) == (True, "async", "async_add")
    assert run(graph(s), {"x": 1}).output == 11


def test_sync_callables_still_go_to_a_thread() -> None:
    threads = []

    class Adder:
        def __call__(self, x: int) -> int:
            threads.append(threading.current_thread())
            return x + 1

    s = step(Adder())
    assert (s.is_async, s.executor) == (False, "thread")
    assert run(graph(s), {"x": 1}).output == 2
    assert threads[0] is not threading.main_thread()
    assert step(functools.partial(fo.plain_add, y=1)).executor == "thread"


def test_callable_object_location_is_its_call_method() -> None:
    assert step(fo.AsyncAdder()).location == at(fo.AsyncAdder.__call__)


# --- pickling by reference --------------------------------------------------------------------


def test_module_level_step_pickles_by_reference() -> None:
    assert pickle.loads(pickle.dumps(fo.double)) is fo.double
    assert pickle.loads(pickle.dumps([fo.double, fo.triple])) == [fo.double, fo.triple]


def test_step_held_under_another_name_pickles() -> None:
    assert fo.triple.__qualname__ == "_triple_impl"
    assert pickle.loads(pickle.dumps(fo.triple)) is fo.triple


def test_copies_are_the_step_itself() -> None:
    @step
    def local() -> int:
        return 1

    assert copy.copy(local) is local and copy.deepcopy(local) is local
    assert copy.deepcopy({"s": fo.double})["s"] is fo.double


def test_closure_step_cannot_be_pickled() -> None:
    @step
    def local() -> int:
        return 1

    with pytest.raises(pickle.PicklingError) as info:
        pickle.dumps(local)
    assert str(info.value) == (
        f"step 'local' ({at(local)}) cannot be pickled by reference: it is defined inside a "
        "function or is a lambda ('test_closure_step_cannot_be_pickled.<locals>.local'). "
        "Define it with @step at the top level of an importable module, or send its function "
        "by value (cloudpickle)."
    )


def test_lambda_step_cannot_be_pickled() -> None:
    with pytest.raises(pickle.PicklingError, match="is a lambda"):
        pickle.dumps(step(lambda: 1, name="one"))


def test_callable_object_and_partial_return_types_are_checked() -> None:
    adder = step(fo.AsyncAdder(), name="adder")
    half = step(functools.partial(fo.async_add, y=1), name="half")
    assert graph(adder).node("adder").output_type is int
    assert graph(half).node("half").output_type is int

    @step
    def shout(adder: str) -> str:
        return adder

    with pytest.raises(GraphError, match="expects str, but step 'adder' returns int"):
        graph(shout, adder)
