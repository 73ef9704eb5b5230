"""Forward references nested in generics, to classes defined later in this module (no
``from __future__ import annotations``: the strings sit inside real generic objects)."""

from typing import List, Optional  # noqa: UP035 - the typing spellings are the point

from flowfn import step


@step
def load_items(count: int = 2) -> list["Item"]:
    return [Item(i) for i in range(count)]


@step
def pick(load_items: list["Item"], fallback: Optional["Item"] = None) -> Optional["Item"]:
    return load_items[0] if load_items else fallback


@step
def total(load_items: List["Item"], labels: list["Label"]) -> int:  # noqa: UP006
    return sum(i.n for i in load_items) + len(labels)


class Item:
    def __init__(self, n: int) -> None:
        self.n = n


class Label:
    pass
