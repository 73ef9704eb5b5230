"""Hamilton habit: functions without @step, and a module with no step at all."""


def raw_data() -> list[int]:
    return [1, 2, 3]


def total(raw_data: list[int]) -> int:
    return sum(raw_data)
