"""Step outputs as JSON by their annotations; answers checked and described by JSON Schema."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import inspect
import json
import math
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypedDict

import attrs
import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowfn import InputError
from flowfn._codec import (
    CodecError,
    answer_schema,
    decode,
    encode,
    storable,
    to_data,
    validate_answer,
)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Item:
    sku: str
    qty: int
    price: Decimal
    color: Color = Color.RED


@dataclasses.dataclass
class Order:
    id: uuid.UUID
    placed: dt.datetime
    items: list[Item]
    tags: set[str] = dataclasses.field(default_factory=set)
    note: str | None = None


@attrs.define
class Box:
    size: tuple[int, int]
    label: Literal["small", "large"]


class Point(NamedTuple):
    x: float
    y: float


class Summary(TypedDict):
    total: int
    by_day: dict[dt.date, float]


class Client:
    """A class without a data shape."""


ORDER = Order(uuid.UUID(int=7), dt.datetime(2026, 12, 2, 9, 30, tzinfo=dt.UTC),
              [Item("a", 2, Decimal("19.99")), Item("b", 1, Decimal("5"), Color.BLUE)],
              {"rush", "gift"})

ROUND_TRIPS: list[tuple[Any, Any]] = [
    (ORDER, Order),
    (Box((2, 3), "large"), Box),
    (Summary(total=3, by_day={dt.date(2026, 1, 2): 1.5}), Summary),
    ([Path("a/b.txt")], list[Path]),
    (b"\x00\xff", bytes),
    ({1: "one", 2: "two"}, dict[int, str]),
    (frozenset({3, 1}), frozenset[int]),
    (None, None),
    (dt.time(9, 30), dt.time),
    ({"a": [1, 2.5, "x", None, True, {"b": []}]}, dict),
    (3, int | str),
]


@pytest.mark.parametrize(("value", "annotation"), ROUND_TRIPS)
def test_round_trip(value: Any, annotation: Any) -> None:
    text = encode(value, annotation)
    json.loads(text, parse_constant=pytest.fail)  # strict JSON: no NaN/Infinity literals
    assert decode(text, annotation) == value


def test_the_json_is_what_the_guide_says() -> None:
    assert json.loads(encode(ORDER, Order)) == {
        "id": "00000000-0000-0000-0000-000000000007",
        "placed": "2026-12-02T09:30:00+00:00",
        "items": [{"sku": "a", "qty": 2, "price": "19.99", "color": "red"},
                  {"sku": "b", "qty": 1, "price": "5", "color": "blue"}],
        "tags": ["gift", "rush"],
        "note": None,
    }
    assert encode(b"hi", bytes) == '"aGk="'


def test_non_finite_floats_where_the_annotation_says_float() -> None:
    text = encode([math.nan, math.inf, -math.inf, 1.0], list[float])
    assert text == '["NaN","Infinity","-Infinity",1.0]'
    back = decode(text, list[float])
    assert math.isnan(back[0]) and back[1:] == [math.inf, -math.inf, 1.0]
    assert math.isnan(decode(encode(math.nan, float | None), float | None))


@pytest.mark.parametrize(("value", "annotation", "problem"), [
    ({"a": [1, math.inf]}, dict[str, Any],
     "a[1]: inf is not JSON; a NaN or infinity is stored only where the annotation says float"),
    ({"orders": [{"placed": dt.date(2026, 1, 1)}]}, dict,
     "orders[0].placed: date is not JSON data; annotate it with a data type (a dataclass, "
     "a TypedDict, ...) so flowfn knows how to store it"),
    (Client(), Any, "value: Client is not JSON data; annotate it with a data type (a "
                    "dataclass, a TypedDict, ...) so flowfn knows how to store it"),
])
def test_values_that_cannot_be_stored_name_their_path(value: Any, annotation: Any,
                                                      problem: str) -> None:
    with pytest.raises(CodecError) as info:
        encode(value, annotation)
    assert info.value.problems == [problem]


def test_stored_json_that_no_longer_fits_lists_every_path() -> None:
    text = '{"id": "x", "placed": "2026-12-02T09:30:00", "items": [{"sku": "a", "qty": "two", ' \
           '"price": "1"}, {"sku": 5, "qty": 1, "price": 1.5}]}'
    with pytest.raises(CodecError) as info:
        decode(text, Order)
    assert info.value.problems == [
        "id: invalid value for type, expected UUID, as a UUID like "
        "'6f1c2d3e-0000-4000-8000-000000000000' (got 'x')",
        "items[0].qty: invalid value for type, expected int (got 'two')",
        "items[1].sku: invalid value for type, expected str (got 5)",
        "items[1].price: invalid value for type, expected Decimal, as a decimal number as "
        "text, like '19.99' (got 1.5)",
    ]
    with pytest.raises(CodecError) as info:
        decode('"x"', int)
    assert info.value.problems == ["value: invalid value for type, expected int (got 'x')"]
    with pytest.raises(CodecError, match="stored text is not JSON"):
        decode("[1", list[int])


def test_a_value_that_does_not_match_its_annotation() -> None:
    with pytest.raises(CodecError, match=r"^value: cannot be written as Item \("):
        to_data(5, Item)


@pytest.mark.parametrize(("annotation", "reason"), [
    (int, None), (Order, None), (Box, None), (Point, None), (Summary, None), (dict, None),
    (list[dict[str, Any]], None), (Color | None, None), (Literal["a", "b"], None),
    (None, None),
    (inspect.Signature.empty, "it has no return annotation"),
    (Any, "its return annotation is Any, which says nothing about the data"),
    (object, "its return annotation is object, which says nothing about the data"),
    (Client, "Client has no data shape (not a dataclass, attrs class, TypedDict, NamedTuple, "
             "enum, collection or builtin data type)"),
    (dict[str, list[Client]], "Client (at [*][*]) has no data shape (not a dataclass, attrs "
                              "class, TypedDict, NamedTuple, enum, collection or builtin "
                              "data type)"),
    (dict[tuple[int, int], str], "tuple[int, int] cannot be a JSON object key"),
])
def test_storable(annotation: Any, reason: str | None) -> None:
    assert storable(annotation) == reason


def test_storable_names_the_field() -> None:
    @dataclasses.dataclass
    class Report:
        rows: list[int]
        client: Client

    assert storable(Report) == (
        "Client (at client) has no data shape (not a dataclass, attrs class, TypedDict, "
        "NamedTuple, enum, collection or builtin data type)")


orders = st.builds(Order, items=st.lists(st.builds(
    Item, price=st.decimals(allow_nan=False, allow_infinity=False))), tags=st.sets(st.text()))


@given(orders)
@settings(max_examples=50, deadline=None)
def test_round_trip_property(order: Order) -> None:
    assert decode(encode(order, Order), Order) == order


# --- answers ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Approval:
    approved: bool
    reviewer: str
    level: Literal["low", "high"]
    amount: int = 0
    comments: list[str] = dataclasses.field(default_factory=list)
    when: dt.date | None = None


def test_answer_schema_has_the_answers_object_at_the_top() -> None:
    schema = answer_schema(Approval)
    assert schema["type"] == "object"
    assert schema["required"] == ["approved", "reviewer", "level"]
    assert set(schema["properties"]) == {"approved", "reviewer", "level", "amount",
                                         "comments", "when"}
    nested = answer_schema(Order)
    assert nested["type"] == "object" and "Item" in nested["$defs"]


def test_a_bad_answer_lists_every_path() -> None:
    with pytest.raises(InputError) as info:
        validate_answer(Approval, {"approved": "maybe", "level": "mid", "x": 1},
                        name="legal_approval")
    assert str(info.value) == (
        "4 bad answer fields for ask('legal_approval')\n"
        "  approved: invalid value for type, expected bool (got 'maybe')\n"
        "  reviewer: required field missing\n"
        "  level: invalid value for type, expected one of 'low', 'high' (got 'mid')\n"
        "  (the answer): unknown keys: x")
    with pytest.raises(InputError) as info:
        validate_answer(Approval, 5, name="legal_approval")
    assert str(info.value) == (
        "1 bad answer field for ask('legal_approval')\n"
        "  (the answer): expected an object with the fields approved, reviewer, level, amount, "
        "comments, when (got 5)")


def test_a_good_answer_is_converted() -> None:
    assert validate_answer(Approval, {"approved": True, "reviewer": "kim", "level": "high",
                                      "when": "2026-12-03"}) == Approval(
        True, "kim", "high", when=dt.date(2026, 12, 3))


SCHEMA = answer_schema(Approval)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=8,
)
answers = st.fixed_dictionaries(  # mostly right, sometimes anything: both sides get tested
    {"approved": st.booleans() | json_values, "reviewer": st.text() | json_values,
     "level": st.sampled_from(["low", "high"]) | json_values},
    optional={"amount": st.integers() | json_values, "comments": st.lists(st.text()),
              "when": st.dates().map(dt.date.isoformat) | st.none() | st.text(max_size=12),
              "other": json_values},
)
CHECK = jsonschema.Draft202012Validator(
    SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


@given(answers)
@settings(max_examples=300, deadline=None)
def test_what_the_schema_accepts_the_converter_accepts(data: dict[str, Any]) -> None:
    if CHECK.is_valid(data):
        validate_answer(Approval, data)


@given(st.builds(Approval, level=st.sampled_from(["low", "high"])))
@settings(max_examples=100, deadline=None)
def test_stored_answers_validate_under_the_schema(answer: Approval) -> None:
    data = json.loads(encode(answer, Approval))
    CHECK.validate(data)
    assert validate_answer(Approval, data) == answer


@settings(max_examples=200)
@given(st.one_of(st.integers(), st.text(), st.booleans(),
                 st.floats(allow_nan=True, allow_infinity=True)))
def test_a_json_native_output_is_written_as_the_converter_would(value: Any) -> None:
    tp = type(value)
    general = json.dumps(to_data(value, tp), allow_nan=False, ensure_ascii=False,
                         separators=(",", ":"))
    assert encode(value, tp) == general
    back = decode(general, tp)
    assert back == value or (math.isnan(back) and math.isnan(value))
