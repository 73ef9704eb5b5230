"""Wiring: how graph() decides where each parameter's value comes from (DESIGN §1)."""

import collections.abc
import inspect
import textwrap
import types
from dataclasses import dataclass
from typing import Annotated, Any, Optional, TypeVar

import flows_for_wiring as fw
import pytest
import trio

from flowfn import Graph, GraphError, InputSpec, Step, graph, run, step

T = TypeVar("T")


def make_module(name: str, source: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(textwrap.dedent(source), module.__dict__)
    return module


# --- the three ways to wire a parameter ---------------------------------------------------


def test_annotated_with_step_object() -> None:
    @step
    async def fetch_users() -> list[str]:
        return ["Alice", "Bob"]

    @step
    def merge(users: Annotated[list[str], fetch_users]) -> int:
        return len(users)

    flow = graph(merge)
    assert flow.steps == (fetch_users, merge)
    assert flow.inputs == {}
    assert run(flow).output == 2


def test_annotated_with_step_name() -> None:
    @step
    def fetch_orders() -> list[int]:
        return [1, 2, 3]

    @step
    def total(orders: Annotated[list[int], "fetch_orders"]) -> int:
        return sum(orders)

    # the name resolves among the steps given to graph(), whatever their order
    assert run(graph(total, fetch_orders)).output == {"total": 6, "fetch_orders": [1, 2, 3]}
    assert run(graph(fetch_orders, total)).output == {"fetch_orders": [1, 2, 3], "total": 6}


def test_annotated_step_wins_over_parameter_name() -> None:
    @step
    def a() -> int:
        return 1

    @step
    def b() -> int:
        return 2

    @step
    def pick(a: Annotated[int, b]) -> int:  # named like step 'a', wired to step 'b'
        return a

    assert run(graph(pick, a)).output["pick"] == 2


def test_parameter_name_of_a_given_step() -> None:
    @step
    def price() -> float:
        return 2.5

    @step
    def with_tax(price: float) -> float:
        return price * 2

    flow = graph(with_tax, price)
    assert flow.inputs == {}
    assert run(flow).output == {"with_tax": 5.0, "price": 2.5}
    # without the step, the same parameter is a graph input
    alone = graph(with_tax)
    assert list(alone.inputs) == ["price"]
    assert run(alone, {"price": "4"}).output == 8.0


def test_parameter_name_of_a_reached_step() -> None:
    @step
    def base() -> int:
        return 10

    @step
    def middle(x: Annotated[int, base]) -> int:
        return x + 1

    @step
    def top(m: Annotated[int, middle], base: int) -> int:  # 'base' reached through middle
        return m * base

    flow = graph(top)
    assert flow.inputs == {}
    assert {s.name for s in flow.steps} == {"base", "middle", "top"}
    assert run(flow).output == 110


def test_parameter_name_of_a_step_in_a_module_given_to_graph() -> None:
    module = make_module("flowfn_test_wiring_mod", """
        from flowfn import step

        @step
        def rate() -> float:
            return 0.5

        @step
        def unused_sink() -> str:
            return "sink"
    """)

    @step
    def convert(amount: float, rate: float) -> float:
        return amount * rate

    flow = graph(module, convert)
    assert list(flow.inputs) == ["amount"]
    result = run(flow, {"amount": 8})
    # targets: the step given, and every sink of the module
    assert result.output == {"convert": 4.0, "unused_sink": "sink"}
    assert graph(convert).inputs.keys() == {"amount", "rate"}


def test_parameter_name_of_a_step_in_the_functions_own_module() -> None:
    flow = graph(fw.make_report)
    assert {s.name for s in flow.steps} == {"make_report", "summary", "load_rows"}
    assert list(flow.inputs) == ["limit"]
    assert run(flow).output == "2 rows: 0, 1"


def test_graph_does_not_depend_on_discovery_order() -> None:
    @step
    def b() -> int:
        return 2

    @step
    def a(b: int) -> int:  # 'b' must be the step, although 'a' is discovered first
        return b + 1

    for flow in (graph(a, b), graph(b, a)):
        assert flow.inputs == {}
        assert [s.name for s in flow.steps] == ["b", "a"]


# --- inputs --------------------------------------------------------------------------------


def test_inputs_are_shared_by_name() -> None:
    seen: list[tuple[str, object]] = []

    @step
    def left(user_id: int) -> int:
        seen.append(("left", user_id))
        return user_id

    @step
    def right(user_id: int) -> int:
        seen.append(("right", user_id))
        return user_id * 2

    flow = graph(left, right)
    assert list(flow.inputs) == ["user_id"]
    spec = flow.inputs["user_id"]
    assert isinstance(spec, InputSpec)
    assert spec.type is int and spec.required
    assert sorted(spec.askers) == ["left", "right"]
    assert run(flow, {"user_id": "7"}).output == {"left": 7, "right": 14}
    assert sorted(seen) == [("left", 7), ("right", 7)]


def test_defaults() -> None:
    @step
    def greet(name: str = "world", punctuation: str = "!") -> str:
        return f"hello {name}{punctuation}"

    flow = graph(greet)
    assert flow.inputs["name"].default == "world"
    assert not flow.inputs["name"].required
    assert run(flow).output == "hello world!"
    assert run(flow, {"name": "Ada"}).output == "hello Ada!"


def test_input_required_when_any_asker_has_no_default() -> None:
    @step
    def one(n: int = 3) -> int:
        return n

    @step
    def two(n: int) -> int:
        return n

    flow = graph(one, two)
    assert flow.inputs["n"].required
    assert run(flow, {"n": 1}).output == {"one": 1, "two": 1}


def test_optional_input_keeps_each_default_of_its_own() -> None:
    @step
    def one(n: int = 3) -> int:
        return n

    @step
    def two(n: int = 4) -> int:
        return n

    flow = graph(one, two)
    assert not flow.inputs["n"].required
    assert run(flow).output == {"one": 3, "two": 4}
    assert run(flow, {"n": 9}).output == {"one": 9, "two": 9}


# --- lazy annotations ----------------------------------------------------------------------


def test_future_annotations_and_forward_references() -> None:
    flow = graph(fw.make_report)
    assert flow.inputs["limit"].type is int
    assert run(flow, {"limit": "3"}).output == "3 rows: 0, 1, 2"
    assert flow.targets[0].output_type is str


def test_future_annotations_are_type_checked() -> None:
    with pytest.raises(GraphError) as info:
        graph(fw.count_only_fn)
    assert "parameter 'load_rows' expects list[" in str(info.value)
    assert "but step 'load_rows' returns list[" in str(info.value)


def test_graph_of_a_module_checks_all_its_steps() -> None:
    with pytest.raises(GraphError) as info:
        graph(fw)
    assert str(info.value).startswith("1 problem in graph(flows_for_wiring)\n")
    assert "count_only" in str(info.value)


def test_unresolvable_forward_reference_is_a_graph_error() -> None:
    module = make_module("flowfn_test_bad_ref", """
        from __future__ import annotations
        from flowfn import step

        @step
        def needs(x: Missing) -> int:
            return 1
    """)
    with pytest.raises(GraphError) as info:
        graph(module.needs)
    text = str(info.value)
    assert text.startswith("1 problem in graph(needs)\n")
    assert "parameter 'x'" in text and "Missing" in text


# --- @step ---------------------------------------------------------------------------------


def test_step_bare_and_with_name_on_def_and_async_def() -> None:
    def plain(x: int) -> int:
        """Doc."""
        return x + 1

    async def coro(x: int) -> int:
        return x + 2

    bare_sync = step(plain)
    bare_async = step(coro)
    named_sync = step(name="renamed")(plain)
    named_async = step(name="renamed_async")(coro)
    for s in (bare_sync, bare_async, named_sync, named_async):
        assert isinstance(s, Step)
    assert (bare_sync.name, bare_async.name) == ("plain", "coro")
    assert (named_sync.name, named_async.name) == ("renamed", "renamed_async")
    assert (bare_sync.executor, bare_async.executor) == ("thread", "async")
    assert step(executor="inline")(plain).executor == "inline"
    assert bare_sync.__doc__ == "Doc." and bare_sync.__name__ == "plain"
    assert inspect.signature(bare_sync) == inspect.signature(plain)
    assert inspect.signature(named_async) == inspect.signature(coro)


def test_steps_stay_callable_as_plain_functions() -> None:
    @step
    def add(a: int, b: int = 1) -> int:
        return a + b

    @step(name="doubled")
    async def double(x: int) -> int:
        return 2 * x

    assert add(1) == 2 and add(1, b=5) == 6
    assert trio.run(double, 21) == 42


def test_step_with_name_runs_under_that_name() -> None:
    @step(name="users")
    async def fetch_users_v2() -> list[str]:
        return ["A"]

    @step
    def count(users: list[str]) -> int:  # by name: the step's name, not the function's
        return len(users)

    result = run(graph(count, fetch_users_v2))
    assert result.output["count"] == 1
    assert result["users"] == ["A"]
    assert "fetch_users_v2" not in result.spans


def test_steps_compare_by_identity() -> None:
    def body() -> int:
        return 1

    first = step(name="first")(body)
    second = step(name="second")(body)
    assert first != second and first == first
    assert hash(first) != hash(second)
    assert len({first, second}) == 2
    # typing caches Annotated[...] by equality: equal steps would share one annotation
    assert Annotated[int, first] != Annotated[int, second]

    @step
    def both(a: Annotated[int, first], b: Annotated[int, second]) -> int:
        return a + b

    flow = graph(both)
    assert [s.name for s in flow.steps] == ["first", "second", "both"]
    assert run(flow).output == 2


def test_bad_step_options() -> None:
    def sync() -> None:
        return None

    with pytest.raises(ValueError, match="executor='async' needs an 'async def'"):
        step(executor="async")(sync)
    with pytest.raises(ValueError, match="executor='gpu' is not known"):
        step(executor="gpu")(sync)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        step(42)  # type: ignore[call-overload]


# --- graphs of graphs, modules, targets --------------------------------------------------


def test_graph_of_a_module_targets_its_sinks() -> None:
    module = make_module("flowfn_test_sinks", """
        from flowfn import step

        @step
        def source() -> int:
            return 2

        @step
        def square(source: int) -> int:
            return source * source

        @step
        def cube(source: int) -> int:
            return source ** 3
    """)
    flow = graph(module)
    assert flow.name == "flowfn_test_sinks"
    assert sorted(n.name for n in flow.targets) == ["cube", "square"]
    result = run(flow)
    assert result.output == {"square": 4, "cube": 8}
    assert result["source"] == 2


def test_graph_of_graphs_merges() -> None:
    @step
    def shared() -> int:
        return 3

    @step
    def plus(s: Annotated[int, shared]) -> int:
        return s + 1

    @step
    def times(s: Annotated[int, shared]) -> int:
        return s * 10

    g1, g2 = graph(plus, shared), graph(times, shared)
    merged = graph(graph(plus), graph(times))
    assert isinstance(merged, Graph)
    assert [n.name for n in merged.targets] == ["plus", "times"]
    assert sorted(s.name for s in merged.steps) == ["plus", "shared", "times"]
    assert run(merged).output == {"plus": 4, "times": 30}
    both = graph(g1, g2)
    assert len(both) == 3  # 'shared' once, not twice


def test_single_target_output_and_several_targets_dict() -> None:
    @step
    def x() -> int:
        return 1

    @step
    def y(v: Annotated[int, x]) -> int:
        return v + 1

    @step
    def z(v: Annotated[int, x]) -> int:
        return v + 2

    assert run(graph(y, x)).output == {"y": 2, "x": 1}
    assert run(graph(y)).output == 2
    result = run(graph(y, z))
    assert result.output == {"y": 2, "z": 3}
    assert result[x] == 1 and result["x"] == 1
    assert run(y).output == 2  # run() also takes a step


# --- type compatibility ---------------------------------------------------------------------


class Animal:
    pass


class Dog(Animal):
    pass


MISSING = object()


def pair(provided: Any, expected: Any) -> Step[..., Any]:
    """Two steps: ``up`` returning ``provided`` and ``down`` taking it as ``expected``."""

    def up() -> None:
        return None

    def down(x):  # type: ignore[no-untyped-def]
        return x

    if provided is not MISSING:
        up.__annotations__ = {"return": provided}
    else:
        up.__annotations__ = {}
    up_step = step(name="up")(up)
    down.__annotations__ = {"x": Annotated[Any, up_step] if expected is MISSING
                            else Annotated[expected, up_step]}
    return step(name="down")(down)


COMPATIBLE = [
    (int, int),
    (bool, int),  # subclass
    (Dog, Animal),
    (int, float),  # numeric promotion
    (list[str], list[str]),
    (list[str], list),  # bare generic says nothing about items
    (list, list[int]),
    (list[str], collections.abc.Sequence[str]),
    (list[Dog], list[Animal]),
    (dict[str, int], collections.abc.Mapping[str, int]),
    (tuple[int, ...], tuple[int, ...]),
    (tuple[int, int], tuple[int, ...]),
    (str, str | None),
    (str, Optional[str]),  # noqa: UP045
    (int, int | str),
    (None, int | None),
    (Any, int),
    (int, Any),
    (T, int),
    (int, T),
    (MISSING, int),
    (int, MISSING),
    (list[int], list[Any]),
]

INCOMPATIBLE = [
    (int, str),
    (Animal, Dog),
    (float, int),
    (str, list[str]),
    (list[str], list[int]),
    (list[Animal], list[Dog]),
    (dict[str, int], dict[str, str]),
    (tuple[int, str], tuple[int, int]),
    (tuple[int, str], tuple[int, ...]),
    (int | str, int),  # a union result must fit as a whole
    (str | None, str),
    (str, int | None),
    (None, int),
]


@pytest.mark.parametrize(("provided", "expected"), COMPATIBLE)
def test_compatible_annotations(provided: Any, expected: Any) -> None:
    graph(pair(provided, expected))


@pytest.mark.parametrize(("provided", "expected"), INCOMPATIBLE)
def test_incompatible_annotations(provided: Any, expected: Any) -> None:
    with pytest.raises(GraphError) as info:
        graph(pair(provided, expected))
    assert "parameter 'x' expects" in str(info.value)
    assert len(info.value.problems) == 1


def test_optional_parameter_is_checked_against_its_inner_type() -> None:
    with pytest.raises(GraphError):
        graph(pair(list[str], Optional[list[int]]))  # noqa: UP045
    graph(pair(list[str], Optional[list[str]]))  # noqa: UP045


# --- describing a graph --------------------------------------------------------------------


@dataclass
class Point:
    x: int
    y: float = 0.0


def test_flow_inputs_and_input_schema() -> None:
    @step
    def place(p: Point, n: int = 3, tags: list[str] | None = None) -> int:
        return n

    @step
    def again(n: int, placed: Annotated[int, place], who: str = "me") -> int:
        return n + placed

    flow = graph(again)
    assert {k: (v.type, v.required) for k, v in flow.inputs.items()} == {
        "n": (int, True), "who": (str, False), "p": (Point, True),
        "tags": (list[str] | None, False),
    }
    assert flow.inputs["who"].default == "me"
    assert flow.input_schema() == {
        "type": "object",
        "properties": {
            "n": {"type": "integer"},
            "p": {"$ref": "#/$defs/Point"},
            "tags": {"anyOf": [{"type": "array", "items": {"type": "string"}},
                               {"type": "null"}], "default": None},
            "who": {"type": "string", "default": "me"},
        },
        "required": ["n", "p"],
        "additionalProperties": False,
        "$defs": {
            "Point": {
                "title": "Point",
                "type": "object",
                "properties": {"x": {"type": "integer"},
                               "y": {"type": "number", "default": 0.0}},
                "required": ["x"],
            },
        },
    }


def test_input_schema_without_inputs() -> None:
    @step
    def nothing() -> int:
        return 0

    assert graph(nothing).input_schema() == {
        "type": "object", "properties": {}, "required": [], "additionalProperties": False,
    }


def test_to_mermaid_and_to_dot() -> None:
    @step
    def fetch_a() -> int:
        return 1

    @step
    def fetch_b() -> int:
        return 2

    @step
    def join(a: Annotated[int, fetch_a], b: Annotated[int, "fetch_b"]) -> int:
        return a + b

    @step(after=[join])
    def notify() -> None:
        return None

    flow = graph(notify, fetch_b)
    mermaid = flow.to_mermaid()
    assert mermaid.splitlines()[0] == "flowchart TD"
    for line in ("fetch_a --> join", "fetch_b --> join", "join -.->|after| notify"):
        assert line in mermaid
    dot = flow.to_dot()
    assert dot.startswith('digraph "notify, fetch_b" {') and dot.rstrip().endswith("}")
    for line in ('"fetch_a" -> "join";', '"fetch_b" -> "join";',
                 '"join" -> "notify" [style=dashed, label="after"];'):
        assert line in dot


def test_graph_is_reusable_and_runs_are_independent() -> None:
    calls: list[int] = []

    @step
    def count(n: int) -> int:
        calls.append(n)
        return n

    flow = graph(count)
    assert [run(flow, {"n": i}).output for i in range(3)] == [0, 1, 2]
    assert calls == [0, 1, 2]


def test_typing_get_type_hints_is_not_needed_for_stringified_generics() -> None:
    module = make_module("flowfn_test_strings", """
        from __future__ import annotations
        from typing import Annotated
        from flowfn import step

        @step
        def words() -> list[str]:
            return ["a", "b"]

        @step
        def joined(ws: Annotated[list[str], words]) -> str:
            return "-".join(ws)
    """)
    assert run(graph(module.joined)).output == "a-b"
    assert graph(module.joined).targets[0].output_type is str
