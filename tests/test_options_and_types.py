"""Type checks at graph() time, wiring of decorated and positional-only functions, and the
validation of step options when a step is created. Messages are checked verbatim (§8)."""

import collections
import functools
import inspect
from collections.abc import (
    Callable,
    Collection,
    Container,
    Generator,
    Iterable,
    Mapping,
    MutableMapping,
    Reversible,
    Sequence,
    Set,
)
from typing import Annotated, Any, Generic, Optional, TypeVar

import pytest
from messages_help import at, graph_error, repo_root_cwd  # noqa: F401 (a fixture)

from flowfn import Backoff, Outcome, Step, Value, each, graph, run, step
from flowfn._step import BackoffError, backoff_delay
from flowfn._types import compatible

pytestmark = pytest.mark.usefixtures("repo_root_cwd")
PATH = "tests/test_options_and_types.py"
T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


# --- compatible(): generic origins and arguments ------------------------------------------


class Box(list[T], Generic[T]):
    pass


class Tagged(list[int], Generic[T]):  # T is not the item type
    pass


class StrMap(dict[str, T], Generic[T]):
    pass


class Pair(Generic[K, V]):
    pass


class StrPair(Pair[str, V]):
    pass


ACCEPTED = [
    (tuple[int, int], Sequence[int]),
    (tuple[int, ...], Sequence[int]),
    (tuple[int, str], Sequence[int | str]),
    (tuple[int, int], Iterable[float]),
    (tuple[int, int], Collection[int]),
    (tuple[int, int], Container[int]),
    (tuple[int, int], Reversible[int]),
    (tuple[int, int], tuple[int, ...]),
    (tuple[int, ...], tuple[int, int]),  # the length is unknown: not reported
    (dict[str, int], Iterable[str]),
    (dict[str, int], Collection[str]),
    (dict[str, int], Container[str]),
    (dict[str, int], Reversible[str]),
    (dict[str, int], Mapping[str, int]),
    (dict[str, int], MutableMapping[str, int]),
    (dict[str, list[int]], Mapping[str, Sequence[int]]),
    (dict[str, bool], Mapping[str, int]),
    (collections.defaultdict[str, int], Mapping[str, int]),
    (collections.OrderedDict[str, int], dict[str, int]),
    (collections.Counter[str], Mapping[str, int]),
    (collections.Counter[str], Iterable[str]),
    (list[int], Sequence[int]),
    (set[int], Set[int]),
    (Generator[int, None, None], Iterable[int]),
    (Box[int], Sequence[int]),
    (Tagged[str], Sequence[int]),
    (StrMap[int], Iterable[str]),
    (StrMap[int], Mapping[str, int]),
    (StrPair[int], Pair[str, int]),
    (list[int], Annotated[Sequence[int], "meta"]),
    (int, Optional[int]),  # noqa: UP045
    (int, float),
    (list[str], Any),
    (T, list[int]),
    (list[T], list[int]),
]

REJECTED = [
    (tuple[int, str], Sequence[int]),
    (tuple[str, ...], Sequence[int]),
    (tuple[int, str], tuple[int, ...]),
    (tuple[int, int], tuple[int, int, int]),
    (tuple[int, int], list[int]),
    (dict[str, int], Iterable[int]),
    (dict[str, int], Iterable[tuple[str, int]]),
    (dict[str, int], Sequence[str]),
    (dict[str, int], Mapping[str, str]),
    (collections.Counter[str], Mapping[str, str]),
    (Mapping[str, int], dict[str, int]),
    (list[str], Sequence[int]),
    (frozenset[str], Set[int]),
    (Generator[str, None, None], Iterable[int]),
    (Box[int], Sequence[str]),
    (Tagged[str], Sequence[str]),
    (StrMap[int], Mapping[str, str]),
    (StrPair[int], Pair[int, int]),
]


@pytest.mark.parametrize(("provided", "expected"), ACCEPTED)
def test_compatible_accepts(provided: Any, expected: Any) -> None:
    assert compatible(provided, expected)


@pytest.mark.parametrize(("provided", "expected"), REJECTED)
def test_compatible_rejects(provided: Any, expected: Any) -> None:
    assert not compatible(provided, expected)


def test_tuple_feeds_a_sequence_parameter() -> None:
    @step
    def pair() -> tuple[int, int]:
        return (1, 2)

    @step
    def total(pair: Annotated[Sequence[int], pair]) -> int:
        return sum(pair)

    assert run(graph(total)).output == 3


def test_dict_feeds_an_iterable_of_its_keys_and_a_mapping() -> None:
    @step
    def counts() -> dict[str, int]:
        return {"a": 1, "b": 2}

    @step
    def keys(counts: Annotated[Iterable[str], counts]) -> list[str]:
        return sorted(counts)

    @step
    def values(counts: Annotated[Mapping[str, int], counts]) -> int:
        return sum(counts.values())

    assert run(graph(keys, values)).output == {"keys": ["a", "b"], "values": 3}


def test_tuple_with_a_wrong_member_is_still_reported() -> None:
    @step
    def mixed() -> tuple[int, str]:
        return (1, "a")

    @step
    def total(mixed: Annotated[Sequence[int], mixed]) -> int:
        return len(mixed)

    assert graph_error(total) == (
        "1 problem in graph(total)\n"
        "\n"
        f"  {at(total)} in def total(mixed: Sequence[int]) -> int\n"
        "    parameter 'mixed' expects Sequence[int], but step 'mixed' returns tuple[int, str]\n"
        f"      {at(mixed)} in def mixed() -> tuple[int, str]\n"
        "    Change one of the two annotations, or annotate the parameter as Any to skip "
        "this check."
    )


def test_dict_into_an_iterable_of_values_is_still_reported() -> None:
    @step
    def counts() -> dict[str, int]:
        return {"a": 1}

    @step
    def total(counts: Annotated[Iterable[int], counts]) -> int:
        return sum(counts)

    assert graph_error(total) == (
        "1 problem in graph(total)\n"
        "\n"
        f"  {at(total)} in def total(counts: Iterable[int]) -> int\n"
        "    parameter 'counts' expects Iterable[int], but step 'counts' returns "
        "dict[str, int]\n"
        f"      {at(counts)} in def counts() -> dict[str, int]\n"
        "    Change one of the two annotations, or annotate the parameter as Any to skip "
        "this check."
    )


# --- Outcome[T] | None ------------------------------------------------------------------------


def test_optional_outcome_parameter_is_a_clear_problem() -> None:
    """``Outcome[T] | None`` cannot be delivered: an Outcome parameter never gets None."""

    @step
    def num() -> int:
        return 1

    @step
    def use(num: Annotated[Outcome[int] | None, num]) -> int:
        return 0

    assert graph_error(use) == (
        "1 problem in graph(use)\n"
        "\n"
        f"  {at(use)} in def use(num)\n"
        "    parameter 'num' is annotated Optional[Outcome[int]], but an Outcome parameter "
        "never receives None: it gets Value(x) or Error(exc).\n"
        "    Use Outcome[int] to receive the upstream's failure too (a skipped upstream skips "
        "this step), or int | None to receive None when the upstream is skipped."
    )


def test_optional_list_of_outcomes_is_a_clear_problem() -> None:
    @step
    def items() -> list[int]:
        return [1]

    @step
    def double(n: Annotated[int, each(items)]) -> int:
        return n * 2

    @step
    def collect(double: Annotated[list[Outcome[int]] | None, double]) -> int:
        return 0

    assert graph_error(collect) == (
        "1 problem in graph(collect)\n"
        "\n"
        f"  {at(collect)} in def collect(double)\n"
        "    parameter 'double' is annotated list[Outcome[int]] | None, but an Outcome "
        "parameter never receives None: it gets Value(x) or Error(exc).\n"
        "    Use list[Outcome[int]] to receive the upstream's failure too (a skipped upstream "
        "skips this step), or list[int] | None to receive None when the upstream is skipped."
    )


def test_plain_outcome_and_plain_optional_still_work() -> None:
    @step
    def num() -> int:
        return 1

    @step
    def wrapped(num: Annotated[Outcome[int], num]) -> Any:
        return num

    @step
    def maybe(num: Annotated[int | None, num]) -> int | None:
        return num

    assert run(graph(wrapped, maybe)).output == {"wrapped": Value(1), "maybe": 1}


# --- each() given something that is not a step ---------------------------------------------


def list_urls() -> list[str]:
    return ["a", "b"]


def test_each_of_a_plain_function() -> None:
    @step
    def fetch(url: Annotated[str, each(list_urls)]) -> str:
        return url

    assert graph_error(fetch) == (
        "1 problem in graph(fetch)\n"
        "\n"
        f"  {at(fetch)} in def fetch(url)\n"
        "    the each() of parameter 'url' is given the plain function 'list_urls', not a "
        "step.\n"
        f"    Decorate it with @step ({at(list_urls)}), or wire it by name."
    )


def test_each_of_a_called_step() -> None:
    @step
    async def urls() -> list[str]:
        return ["a"]

    @step
    def fetch(url: Annotated[str, each(urls())]) -> str:
        return url

    assert graph_error(fetch) == (
        "1 problem in graph(fetch)\n"
        "\n"
        f"  {at(fetch)} in def fetch(url)\n"
        "    the each() of parameter 'url' is given a coroutine object, not a step.\n"
        "    Probably you wrote:\n"
        "        url: Annotated[str, each(urls())]    # incorrect!\n"
        "    Instead, write (notice: no parentheses):\n"
        "        url: Annotated[str, each(urls)]      # correct!"
    )


def test_each_of_a_called_sync_step() -> None:
    @step
    def fetch(url: Annotated[str, each(list_urls())]) -> str:
        return url

    assert graph_error(fetch) == (
        "1 problem in graph(fetch)\n"
        "\n"
        f"  {at(fetch)} in def fetch(url)\n"
        "    the each() of parameter 'url' is given a list, not a step.\n"
        "    Probably you wrote:\n"
        "        url: Annotated[str, each(the_step())]    # incorrect!\n"
        "    Instead, write (notice: no parentheses):\n"
        "        url: Annotated[str, each(the_step)]      # correct!"
    )


def test_each_of_a_class() -> None:
    class Urls:
        pass

    @step
    def fetch(url: Annotated[str, each(Urls)]) -> str:
        return url

    assert graph_error(fetch) == (
        "1 problem in graph(fetch)\n"
        "\n"
        f"  {at(fetch)} in def fetch(url)\n"
        "    the each() of parameter 'url' is given the class 'Urls', not a step.\n"
        "    Pass the step whose output to map over, or its name: "
        'Annotated[str, each(list_items)] or Annotated[str, each("list_items")].'
    )


def test_each_repr_of_a_plain_function() -> None:
    assert repr(each(list_urls)) == "each('list_urls')"  # type: ignore[arg-type]


# --- signatures: decorated steps and positional-only parameters --------------------------------


def logged(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


def logged_async(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return await fn(*args, **kwargs)

    return wrapper


def test_step_decorated_with_functools_wraps_is_wired_by_the_wrapped_signature() -> None:
    @step
    def base() -> int:
        return 20

    @step
    @logged
    def plus(base: Annotated[int, base], extra: int = 1) -> int:
        return base + extra

    @step
    @logged_async
    async def double(plus: Annotated[int, plus]) -> int:
        return plus * 2

    flow = graph(double)
    assert [s.name for s in flow.steps] == ["base", "plus", "double"]
    assert list(flow.inputs) == ["extra"]
    assert run(flow, {"extra": 2}).output == 44


def test_wrapped_signature_type_check_uses_the_wrapped_annotations() -> None:
    @step
    def base() -> str:
        return "x"

    @step
    @logged
    def plus(base: Annotated[int, base]) -> int:
        return base

    message = graph_error(plus)
    assert "parameter 'base' expects int, but step 'base' returns str" in message, message
    assert f"{at(plus)} in def plus(base: int) -> int" in message, message


def test_explicit_signature_is_respected() -> None:
    def anything(**kwargs: Any) -> int:
        return sum(kwargs.values())

    anything.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("a", inspect.Parameter.KEYWORD_ONLY, annotation=int)])
    flow = graph(step(anything))
    assert list(flow.inputs) == ["a"]
    assert run(flow, {"a": 5}).output == 5


def test_positional_only_parameter_is_a_graph_problem() -> None:
    @step
    def up() -> int:
        return 1

    @step
    def down(up: Annotated[int, up], /) -> int:
        return up

    assert graph_error(down) == (
        "1 problem in graph(down)\n"
        "\n"
        f"  {at(down)} in def down(up)\n"
        "    parameter 'up' is positional-only, but flowfn passes every argument by name; "
        "remove the '/' from the signature."
    )


def test_several_positional_only_parameters_are_one_problem() -> None:
    @step
    def add(a: int, b: int, /, c: int = 0) -> int:
        return a + b + c

    assert graph_error(add) == (
        "1 problem in graph(add)\n"
        "\n"
        f"  {at(add)} in def add(a, b, c)\n"
        "    parameters 'a', 'b' are positional-only, but flowfn passes every argument by "
        "name; remove the '/' from the signature."
    )


def test_positional_only_behind_functools_wraps() -> None:
    @step
    @logged
    def down(up: int, /) -> int:
        return up

    assert graph_error(down) == (
        "1 problem in graph(down)\n"
        "\n"
        f"  {at(down)} in def down(up)\n"
        "    parameter 'up' is positional-only, but flowfn passes every argument by name; "
        "remove the '/' from the signature."
    )


def test_variadic_parameters_are_one_problem() -> None:
    @step
    def loose(a: int, *args: int, **kwargs: int) -> int:
        return a

    assert graph_error(loose) == (
        "1 problem in graph(loose)\n"
        "\n"
        f"  {at(loose)} in def loose(a)\n"
        "    variadic parameters (*args, **kwargs) cannot be wired; name each parameter the "
        "step needs."
    )


# --- step options, checked when the step is created ----------------------------------------------


def call_api() -> int:
    return 1


def not_a_step() -> None:
    pass


def option_error(exc_type: type[Exception], **options: Any) -> str:
    with pytest.raises(exc_type) as info:
        step(**options)(call_api)
    return str(info.value)


HERE = f"step 'call_api' ({at(call_api)})"


def test_negative_backoff() -> None:
    assert option_error(ValueError, backoff=-1) == (
        f"{HERE}: backoff= must be a number of seconds >= 0, a Backoff(...) or a function of "
        "the attempt number, got -1 (an int). Use backoff=0 to retry at once."
    )


def test_backoff_that_is_not_a_number() -> None:
    assert option_error(ValueError, backoff="1s") == (
        f"{HERE}: backoff= must be a number of seconds >= 0, a Backoff(...) or a function of "
        "the attempt number, got '1s' (a str). Use backoff=0 to retry at once."
    )


def test_backoff_with_bad_fields() -> None:
    assert option_error(ValueError, backoff=Backoff(initial=-1, factor=0)) == (
        f"{HERE}: backoff=Backoff(initial=-1, factor=0, maximum=30.0, jitter=0.1) has "
        "initial=-1 and factor=0. initial and maximum must be seconds >= 0, factor a number "
        "> 0 and jitter between 0 and 1."
    )


def test_backoff_with_too_much_jitter_or_negative_maximum() -> None:
    assert option_error(ValueError, backoff=Backoff(maximum=-5, jitter=1.5)) == (
        f"{HERE}: backoff=Backoff(initial=0.1, factor=2.0, maximum=-5, jitter=1.5) has "
        "maximum=-5 and jitter=1.5. initial and maximum must be seconds >= 0, factor a "
        "number > 0 and jitter between 0 and 1."
    )


def test_good_backoffs_are_kept() -> None:
    exact = Backoff(initial=0, jitter=0)

    def by_attempt(n: int) -> float:
        return n

    assert step(backoff=0)(call_api).backoff == 0
    assert step(backoff=exact)(call_api).backoff is exact
    assert step(backoff=by_attempt)(call_api).backoff is by_attempt


def test_retry_on_accepts_any_iterable_of_exception_classes() -> None:
    assert step(retry_on=[ConnectionError])(call_api).retry_on == (ConnectionError,)
    assert step(retry_on=ConnectionError)(call_api).retry_on == (ConnectionError,)
    assert step(retry_on={KeyError})(call_api).retry_on == (KeyError,)
    assert step(retry_on=(e for e in [OSError, ValueError]))(call_api).retry_on == (
        OSError, ValueError)
    assert step(call_api).retry_on == (Exception,)


def test_retry_on_a_list_is_retried(flow_run: Any) -> None:
    tries = []

    @step(retries=2, backoff=0, retry_on=[ConnectionError])
    def flaky() -> int:
        tries.append(1)
        if len(tries) < 3:
            raise ConnectionError("down")
        return len(tries)

    assert flow_run(graph(flaky)).output == 3


def test_retry_on_with_a_class_that_is_not_an_exception() -> None:
    assert option_error(TypeError, retry_on=[ConnectionError, int]) == (
        f"{HERE}: retry_on= must be exception classes, but it contains the class 'int'. "
        "Write for example retry_on=(ConnectionError, TimeoutError)."
    )


def test_retry_on_an_exception_instance() -> None:
    assert option_error(TypeError, retry_on=ValueError("x")) == (
        f"{HERE}: retry_on= must be exception classes, but it is the exception "
        "ValueError('x') (an instance, not a class). Write for example "
        "retry_on=(ConnectionError, TimeoutError)."
    )


def test_retry_on_a_string() -> None:
    assert option_error(TypeError, retry_on="ValueError") == (
        f"{HERE}: retry_on= must be exception classes, but it is 'ValueError' (a str). "
        "Write for example retry_on=(ConnectionError, TimeoutError)."
    )


def test_when_that_is_not_callable() -> None:
    assert option_error(TypeError, when=True) == (
        f"{HERE}: when= must be a function (a predicate wired by its own signature, like a "
        "step), but it is True (a bool). Write for example "
        'when=lambda validate: validate["ok"], or leave it out to always run.'
    )


def test_after_with_a_plain_function() -> None:
    message = option_error(TypeError, after=[not_a_step])
    assert message == (
        f"{HERE}: after= must list steps or step names, but it contains the plain function "
        f"'not_a_step' ({at(not_a_step)}). Decorate it with @step, or give a step's name."
    )
    assert "0x" not in message


def test_after_a_single_plain_function() -> None:
    assert option_error(TypeError, after=not_a_step) == (
        f"{HERE}: after= must list steps or step names, but it is the plain function "
        f"'not_a_step' ({at(not_a_step)}). Decorate it with @step, or give a step's name."
    )


def test_after_with_something_else() -> None:
    assert option_error(TypeError, after=[3]) == (
        f"{HERE}: after= must list steps or step names, but it contains 3 (an int). "
        'Pass steps or their names: after=[load] or after=["load"].'
    )


def test_after_accepts_steps_names_and_none() -> None:
    first = step(not_a_step)
    assert step(after=[first, "other"])(call_api).after == (first, "other")
    assert step(after=first)(call_api).after == (first,)
    assert step(after="other")(call_api).after == ("other",)
    assert step(after=None)(call_api).after == ()


def test_options_of_pattern_helpers_are_checked_at_the_call_site() -> None:
    from flowfn import stub

    line = inspect.currentframe().f_lineno + 2  # type: ignore[union-attr]
    with pytest.raises(ValueError) as info:
        stub("later", backoff=-2)
    assert str(info.value).startswith(f"step 'later' ({PATH}:{line}): backoff= must be")


# --- backoff= functions at run time ---------------------------------------------------------


def broken_backoff(attempt: int) -> float:
    raise ValueError("boom")


def test_backoff_function_that_raises() -> None:
    flaky = step(call_api)
    with pytest.raises(BackoffError) as info:
        backoff_delay(broken_backoff, 2, flaky)
    assert str(info.value) == (
        f"{HERE}: backoff= function 'broken_backoff' raised ValueError: boom for attempt 2. "
        "It must return the number of seconds to wait before the next attempt."
    )
    assert isinstance(info.value.__cause__, ValueError)


def test_backoff_function_that_raises_without_a_step() -> None:
    with pytest.raises(BackoffError) as info:
        backoff_delay(broken_backoff, 1)
    assert str(info.value) == (
        "backoff= function 'broken_backoff' raised ValueError: boom for attempt 1. "
        "It must return the number of seconds to wait before the next attempt."
    )


@pytest.mark.parametrize(("returned", "shown"), [(None, "None"), (-3, "-3 (an int)"),
                                                 ("2", "'2' (a str)")])
def test_backoff_function_returning_no_wait(returned: Any, shown: str) -> None:
    def odd_backoff(attempt: int) -> Any:
        return returned

    with pytest.raises(BackoffError) as info:
        backoff_delay(odd_backoff, 3, step(call_api))
    assert str(info.value) == (
        f"{HERE}: backoff= function 'odd_backoff' returned {shown} for attempt 3, not a "
        "number of seconds >= 0. It must return the number of seconds to wait before the "
        "next attempt."
    )


def test_backoff_delay_of_numbers_backoffs_and_functions() -> None:
    assert backoff_delay(0, 1) == 0.0
    assert backoff_delay(2, 5) == 2.0
    assert backoff_delay(Backoff(initial=1, jitter=0), 3) == 4.0
    assert backoff_delay(lambda n: n / 2, 3) == 1.5


def test_step_is_still_a_step() -> None:
    assert isinstance(step(retry_on=[OSError], after=[], backoff=0)(call_api), Step)

