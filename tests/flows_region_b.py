"""The other module with a step named ``region`` (tests/test_wiring_more.py)."""

from typing import Annotated

from flowfn import Input, step


@step
def region() -> str:
    return "us-east"


@step
def deploy_b(region: str) -> str:
    return f"b in {region}"


@step
def deploy_to(region: Annotated[str, Input]) -> str:
    return f"to {region}"
