"""Inputs are converted with a strict cattrs converter: lossless conversions only."""

import datetime as dt
import enum
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Optional

import attrs
import pytest

from flowfn import InputError, graph, run, step


def echo_flow(tp: Any) -> Any:
    """A one-step graph whose single input ``v`` is annotated ``tp`` and is returned as is."""

    def echo(v):  # type: ignore[no-untyped-def]
        return v

    echo.__annotations__ = {"v": tp}
    return graph(step(executor="inline")(echo))


def convert(tp: Any, value: Any) -> Any:
    return run(echo_flow(tp), {"v": value}).output


def problems(tp: Any, value: Any) -> list[str]:
    with pytest.raises(InputError) as info:
        run(echo_flow(tp), {"v": value})
    return info.value.problems


class Priority(enum.Enum):
    HIGH = "high"
    LOW = "low"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Kind(enum.StrEnum):
    FAST = "fast"


@pytest.mark.parametrize(("tp", "value", "expected"), [
    (int, "42", 42),
    (int, " 42 ", 42),
    (int, 42, 42),
    (int, 7.0, 7),  # integral float: nothing lost
    (float, "1.5", 1.5),
    (float, 3, 3.0),
    (str, "x", "x"),
    (bool, True, True),
    (bool, "false", False),
    (list[int], ["1", 2], [1, 2]),
    (list[int], ("1", 2), [1, 2]),
    (tuple[int, ...], ["1", "2"], (1, 2)),
    (set[str], ["a", "b"], {"a", "b"}),
    (float, 2**53, 9007199254740992.0),  # a float holds this int exactly
    (float, "-inf", float("-inf")),  # written as such: not an overflow
    (int | str, 3, 3),
    (int | str, "3", "3"),  # a union of plain types converts nothing
    (float | int, 3, 3),
    (dt.date, "2026-12-01", dt.date(2026, 12, 1)),
    (dt.date, dt.date(2026, 12, 1), dt.date(2026, 12, 1)),
    (dt.datetime, "2026-12-01T09:30:00", dt.datetime(2026, 12, 1, 9, 30)),
    (dt.time, "09:30", dt.time(9, 30)),
    (uuid.UUID, "6f1c2d3e-0000-4000-8000-000000000000",
     uuid.UUID("6f1c2d3e-0000-4000-8000-000000000000")),
    (Decimal, "19.99", Decimal("19.99")),
    (Decimal, 5, Decimal(5)),
    (Path, "/tmp/data.csv", Path("/tmp/data.csv")),
    (Priority, "high", Priority.HIGH),
    (Priority, Priority.LOW, Priority.LOW),
    (Level, 2, Level.HIGH),  # an IntEnum: by value, and a member comes out
    (Kind, "fast", Kind.FAST),  # a str enum too
    (Literal["a", "b"], "b", "b"),
    (bytes, "aGk=", b"hi"),  # JSON has no bytes: base64 text, as the schema says
    (bytes, b"hi", b"hi"),
    (dict[str, int], {"a": "1"}, {"a": 1}),
    (Optional[int], None, None),  # noqa: UP045
    (int | None, "3", 3),
    (Any, object, object),
])
def test_lossless_conversions(tp: Any, value: Any, expected: Any) -> None:
    out = convert(tp, value)
    assert out == expected
    assert type(out) is type(expected)


def test_unannotated_input_passes_through_unchanged() -> None:
    @step(executor="inline")
    def raw(v):  # type: ignore[no-untyped-def]
        return v

    marker = object()
    assert run(graph(raw), {"v": marker}).output is marker


@pytest.mark.parametrize(("tp", "value", "message"), [
    (int, 7.9, "v: invalid value for type, expected int (got 7.9)"),
    (int, "4.2", "v: invalid value for type, expected int (got '4.2')"),
    (int, "two", "v: invalid value for type, expected int (got 'two')"),
    (int, True, "v: invalid value for type, expected int (got True)"),
    (int, None, "v: invalid value for type, expected int (got None)"),
    (str, 5, "v: invalid value for type, expected str (got 5)"),
    (str, None, "v: invalid value for type, expected str (got None)"),
    (float, "abc", "v: invalid value for type, expected float (got 'abc')"),
    (float, True, "v: invalid value for type, expected float (got True)"),
    (bool, 1, "v: invalid value for type, expected bool (got 1)"),
    (bool, "yes", "v: invalid value for type, expected bool (got 'yes')"),
    (list[str], "abc", "v: invalid value for type, expected list[str] (got 'abc')"),
    (list[int], b"12", "v: invalid value for type, expected list[int] (got b'12')"),
    (list[int], {"a": 1}, "v: invalid value for type, expected list[int] (got {'a': 1})"),
    (list[int], 3, "v: invalid value for type, expected list[int] (got 3)"),
    (float, 2**53 + 1, "v: invalid value for type, expected float, which cannot hold this "
     "int exactly (got 9007199254740993)"),
    (float, "1e400", "v: invalid value for type, expected float (got '1e400')"),
    (set[int], [1, "1"], "v: invalid value for type, expected set[int] with no repeated "
     "items (got [1, '1'])"),
    (int | str, 1.5, "v: invalid value for type, expected int | str (got 1.5)"),
    (dt.date, "tomorrow", "v: invalid value for type, expected date, as an ISO 8601 date "
     "like '2026-12-01' (got 'tomorrow')"),
    (dt.date, dt.datetime(2026, 12, 1, 9), "v: invalid value for type, expected date, as an "
     "ISO 8601 date like '2026-12-01' (got datetime.datetime(2026, 12, 1, 9, 0))"),
    (uuid.UUID, "nope", "v: invalid value for type, expected UUID, as a UUID like "
     "'6f1c2d3e-0000-4000-8000-000000000000' (got 'nope')"),
    (Decimal, 1.5, "v: invalid value for type, expected Decimal, as a decimal number as "
     "text, like '19.99' (got 1.5)"),
    (Path, "", "v: invalid value for type, expected Path, as a path as text (got '')"),
    (Priority, "urgent", "v: invalid value for type, expected Priority: one of 'high', "
     "'low' (got 'urgent')"),
    (Level, 3, "v: invalid value for type, expected Level: one of 1, 2 (got 3)"),
    (Kind, "slow", "v: invalid value for type, expected Kind: one of 'fast' (got 'slow')"),
    (Literal["a", "b"], "c", "v: invalid value for type, expected one of 'a', 'b' "
     "(got 'c')"),
    (bytes, "not base64!", "v: invalid value for type, expected bytes, as bytes or base64 "
     "text (got 'not base64!')"),
])
def test_lossy_conversions_are_refused(tp: Any, value: Any, message: str) -> None:
    assert problems(tp, value) == [message]


def test_list_items_are_each_checked_with_their_index() -> None:
    assert problems(list[int], ["1", "x", 2.5]) == [
        "v[1]: invalid value for type, expected int (got 'x')",
        "v[2]: invalid value for type, expected int (got 2.5)",
    ]


@dataclass
class Item:
    sku: str
    qty: int


@dataclass
class Address:
    city: str
    zip: str = "00000"


@dataclass
class Order:
    id: str
    items: list[Item]
    ship_to: Address | None = None
    notes: list[str] = field(default_factory=list)


@attrs.define
class Customer:
    name: str
    vip: bool = False


def test_dict_to_dataclass_nested() -> None:
    order = convert(Order, {
        "id": "o1",
        "items": [{"sku": "a", "qty": "2"}, {"sku": "b", "qty": 3}],
        "ship_to": {"city": "Oslo"},
    })
    assert order == Order("o1", [Item("a", 2), Item("b", 3)], Address("Oslo"), [])


def test_dict_to_attrs_class() -> None:
    assert convert(Customer, {"name": "Ada", "vip": "true"}) == Customer("Ada", True)


def test_an_instance_is_accepted_for_its_own_class() -> None:
    order = Order("o1", [Item("a", 1)])
    assert convert(Order, order) == order


def test_nested_paths_all_at_once() -> None:
    assert problems(Order, {
        "id": 5,
        "items": [{"sku": "a", "qty": 1}, {"sku": "b"}, {"sku": "c", "qty": "two"}],
        "ship_to": {"city": "Oslo", "zip": 1234, "country": "NO"},
        "notes": "fragile",
    }) == [
        "v.id: invalid value for type, expected str (got 5)",
        "v.items[1].qty: required field missing",
        "v.items[2].qty: invalid value for type, expected int (got 'two')",
        "v.ship_to.zip: invalid value for type, expected str (got 1234)",
        "v.ship_to: unknown keys: country",
        "v.notes: invalid value for type, expected list[str] (got 'fragile')",
    ]


def test_every_input_problem_reported_together_and_nothing_runs() -> None:
    ran: list[str] = []

    @step
    def first(count: int, name: str) -> int:
        ran.append("first")
        return count

    @step
    async def second(order: Order, limit: float = 1.0) -> int:
        ran.append("second")
        return len(order.items)

    flow = graph(first, second)
    with pytest.raises(InputError) as info:
        run(flow, {
            "count": "3.5",
            "name": "ok",
            "order": {"id": "o", "items": [{"sku": 1, "qty": 1}]},
            "limt": 2,
        })
    assert info.value.problems == [
        "count: invalid value for type, expected int (got '3.5')",
        "order.items[0].sku: invalid value for type, expected str (got 1)",
        "limt: unknown input. Did you mean 'limit'? "
        "This graph's inputs: count, limit, name, order.",
    ]
    assert str(info.value).startswith("3 bad inputs for run(first, second)\n")
    assert ran == []


def test_missing_input_names_the_steps_asking() -> None:
    ran: list[str] = []

    @step
    def a(token: str) -> str:
        ran.append("a")
        return token

    @step
    def b(token: str, page: int = 1) -> str:
        ran.append("b")
        return token

    with pytest.raises(InputError) as info:
        run(graph(b, a), {"page": "2"})
    assert info.value.problems == ["token: required input missing (asked for by a, b)"]
    assert ran == []


def test_converted_values_reach_the_steps() -> None:
    @step
    def total(order: Order, factor: float) -> float:
        assert isinstance(order, Order) and isinstance(order.items[0], Item)
        return sum(i.qty for i in order.items) * factor

    result = run(graph(total), {
        "order": {"id": "o", "items": [{"sku": "a", "qty": "2"}, {"sku": "b", "qty": 3}]},
        "factor": "1.5",
    })
    assert result.output == 7.5
    assert result.spans["total"].input["factor"] == 1.5


def test_schema_covers_what_run_accepts() -> None:
    @step
    async def book(when: dt.date, ref: uuid.UUID, where: Path, kind: int | str,
                   priority: Priority = Priority.LOW) -> str:
        return "booked"

    schema = graph(book).input_schema()
    props = schema["properties"]
    assert props["when"] == {"type": "string", "format": "date"}
    assert props["ref"] == {"type": "string", "format": "uuid"}
    assert props["where"] == {"type": "string"}  # a Path is given as text
    assert props["kind"] == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert props["priority"] == {"$ref": "#/$defs/Priority", "default": "low"}
    assert schema["required"] == ["kind", "ref", "when", "where"]


def test_an_input_with_no_json_form_says_which() -> None:
    class Session:
        pass

    @step
    async def use(session: Session, n: int) -> None:
        return None

    # DESIGN §1: an input without a data shape is left out of the schema, with a note
    schema = graph(use).input_schema()
    assert list(schema["properties"]) == ["n"] and schema["required"] == ["n"]
    assert schema["$comment"] == (
        "Python-object inputs, not described here (pass them to run() directly): "
        "session (Session).")

