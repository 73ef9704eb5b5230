"""A step asking for a plain function of its module by name: @step was forgotten."""

from flowfn import step


def raw_data() -> list[int]:
    return [1, 2, 3]


@step
def total(raw_data: list[int]) -> int:
    return sum(raw_data)
