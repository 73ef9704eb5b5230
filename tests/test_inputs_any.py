"""Any Python object can be an input (DESIGN §1): data-shaped types are converted
strictly, everything else is passed as is, checked with isinstance where possible."""

import dataclasses
from collections.abc import Callable
from typing import Any, List, Optional, Protocol, TypeVar, runtime_checkable  # noqa: UP035

import flows_forward_refs as ff
import pandas as pd
import pytest

from flowfn import GraphError, InputError, graph, run, step

T = TypeVar("T")


class Client:
    """A shared client: no data shape, never copied."""


@runtime_checkable
class Closer(Protocol):
    def close(self) -> None: ...


class Greeter(Protocol):  # not runtime-checkable: nothing to check
    def greet(self) -> str: ...


def bad(fn: Any, inputs: dict[str, Any]) -> list[str]:
    with pytest.raises(InputError) as info:
        run(graph(fn), inputs)
    return info.value.problems


def test_a_plain_class_is_passed_as_is() -> None:
    @step
    def use(client: Client) -> Client:
        return client

    client = Client()
    assert run(graph(use), {"client": client}).output is client
    assert bad(use, {"client": {"x": 1}}) == ["client: expected an instance of Client (got dict)"]


def test_a_dataframe_is_passed_as_is() -> None:
    @step
    def rows(df: pd.DataFrame) -> int:
        return len(df)

    frame = pd.DataFrame({"a": [1, 2, 3]})
    result = run(graph(rows), {"df": frame})
    assert result.output == 3 and result.spans["rows"].input["df"] is frame
    assert bad(rows, {"df": [1, 2]}) == ["df: expected an instance of DataFrame (got list)"]


def test_object_callable_and_typevar_take_anything_fitting() -> None:
    @step
    def use(anything: object, fn: Callable[[int], int], item: T) -> tuple[Any, ...]:
        return anything, fn(2), item

    marker = Client()
    assert run(graph(use), {"anything": marker, "fn": lambda x: x * 10, "item": [1]}).output == (
        marker, 20, [1])
    assert bad(use, {"anything": 1, "fn": 3, "item": 1}) == [
        "fn: expected a callable (got int)"]


def test_protocols() -> None:
    @step
    def use(closer: Closer, greeter: Greeter) -> bool:
        return True

    class File:
        def close(self) -> None: ...

    assert run(graph(use), {"closer": File(), "greeter": 5}).output is True
    assert bad(use, {"closer": 1, "greeter": 5}) == [
        "closer: expected an instance of Closer (got int)"]


def test_collections_and_unions_of_objects_keep_their_shape() -> None:
    @step
    def use(clients: list[Client], maybe: Client | None = None,
            either: Client | int = 0) -> tuple[int, Any, Any]:
        return len(clients), maybe, either

    a, b = Client(), Client()
    assert run(graph(use), {"clients": (a, b), "either": "7"}).output == (2, None, 7)
    assert run(graph(use), {"clients": [], "maybe": a, "either": b}).output == (0, a, b)
    assert bad(use, {"clients": [a, 1], "either": []}) == [
        "clients[1]: expected an instance of Client (got int)",
        "either: expected one of Client | int (got list)",
    ]


def test_a_record_with_an_object_field() -> None:
    @dataclasses.dataclass
    class Job:
        name: str
        client: Client

    @step
    def use(job: Job) -> str:
        return job.name

    client = Client()
    assert run(graph(use), {"job": {"name": "x", "client": client}}).output == "x"
    assert bad(use, {"job": {"name": 5, "client": 1}}) == [
        "job.name: invalid value for type, expected str (got 5)",
        "job.client: expected an instance of Client (got int)",
    ]


def test_data_shaped_types_stay_strict() -> None:
    @step
    def use(n: int) -> int:
        return n

    assert bad(use, {"n": 7.9}) == ["n: invalid value for type, expected int (got 7.9)"]


def test_object_inputs_are_left_out_of_the_schema_with_a_note() -> None:
    @step
    def use(df: pd.DataFrame, fn: Callable[[int], int], n: int, clients: list[Client],
            label: str = "x") -> None:
        return None

    schema = graph(use).input_schema()
    assert schema == {
        "type": "object",
        "properties": {"label": {"type": "string", "default": "x"}, "n": {"type": "integer"}},
        "required": ["n"],
        "additionalProperties": False,
        "$comment": "Python-object inputs, not described here (pass them to run() directly): "
                    "clients (list[Client]), df (DataFrame), fn (Callable[[int], int]).",
    }


# --- forward references nested in generics -----------------------------------------------------


def test_nested_forward_references_resolve_at_graph_time() -> None:
    flow = graph(ff.pick)
    assert flow.inputs["fallback"].type == Optional[ff.Item]  # noqa: UP045
    assert flow.node("load_items").output_type == list[ff.Item]
    assert isinstance(run(flow).output, ff.Item)


def test_input_schema_does_not_raise_on_nested_forward_references() -> None:
    schema = graph(ff.pick).input_schema()
    assert list(schema["properties"]) == ["count"]
    assert schema["$comment"].endswith("fallback (Optional[Item]).")


def test_nested_forward_references_are_type_checked() -> None:
    flow = graph(ff.total)
    assert flow.inputs["labels"].type == list[ff.Label]
    assert run(flow, {"labels": [ff.Label()]}).output == 2
    with pytest.raises(InputError) as info:
        run(flow, {"labels": [ff.Item(1)]})
    assert info.value.problems == ["labels[0]: expected an instance of Label (got Item)"]


def test_unknown_nested_forward_reference_is_a_graph_problem() -> None:
    @step
    def use(items: list["Nowhere"]) -> None:  # type: ignore[name-defined]  # noqa: F821
        return None

    with pytest.raises(GraphError, match="'Nowhere' is not defined"):
        graph(use)


# --- one shared input, two spellings of one type ---------------------------------------------


def test_typing_and_builtin_generics_are_one_input_type() -> None:
    @step
    def a(ids: List[int]) -> int:  # noqa: UP006 - the point of the test
        return sum(ids)

    @step
    def b(ids: list[int], note: Optional[str] = None) -> int:  # noqa: UP045
        return len(ids)

    @step
    def c(note: str | None = None) -> str | None:
        return note

    result = run(graph(a, b, c), {"ids": ["1", 2]})
    assert result.output == {"a": 3, "b": 2, "c": None}


def test_a_real_type_conflict_is_still_reported() -> None:
    @step
    def a(ids: list[int]) -> int:
        return 0

    @step
    def b(ids: list[str]) -> int:
        return 0

    with pytest.raises(GraphError, match="also asks for as list\\[int\\], not list\\[str\\]"):
        graph(a, b)


def test_text_where_an_object_is_expected_says_so() -> None:
    from dataclasses import dataclass

    from flowfn import InputError, graph, run, step

    @dataclass
    class Box:
        width: int

    @step
    def area(box: Box) -> int:
        return box.width

    with pytest.raises(InputError) as info:
        run(graph(area), {"box": "hello"})
    assert str(info.value) == (
        "1 bad input for run(area)\n"
        "  box: invalid value, expected an object with named fields (got a str)"
    )


def test_cattrs_texts_become_flowfn_messages() -> None:
    from dataclasses import dataclass

    from flowfn import InputError, graph, run, step

    @dataclass
    class Settings:
        level: int = 1

    @step
    def use(settings: Settings, pair: tuple[int, int]) -> int:
        return settings.level + pair[0]

    with pytest.raises(InputError) as info:
        run(graph(use), {"settings": 3, "pair": [1]})
    assert str(info.value) == (
        "2 bad inputs for run(use)\n"
        "  settings: invalid value, expected an object with named fields (got an int)\n"
        "  pair: invalid value, expected tuple[int, int] (not enough values)"
    )
