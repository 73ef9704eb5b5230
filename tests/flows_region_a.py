"""One of two modules with a step named ``region`` (tests/test_wiring_more.py)."""

from flowfn import step


@step
def region() -> str:
    return "eu-west"


@step
def deploy_a(region: str) -> str:
    return f"a in {region}"
