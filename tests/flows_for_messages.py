"""Flows with deliberate mistakes, used by tests/test_messages.py.

The tests compute every expected ``path:line`` from these functions (via their code
objects), so the module may be edited, but each scenario's step names must stay unique
in the module: wiring by parameter name also looks at this module's other steps.
"""

from dataclasses import dataclass
from typing import Annotated, Any

import trio

from flowfn import current_span, step, step_span

# --- 1. missing upstream step, with a near miss -------------------------------------------


@step
async def fetch_users() -> list[str]:
    return ["Alice", "Bob"]


@step
async def fetch_orders() -> list[dict[str, int]]:
    return [{"id": 1}]


@step
def merge_results(
    users: Annotated[list[str], fetch_users],
    orders: Annotated[list[dict[str, int]], "fetch_order"],
) -> dict[str, Any]:
    return {"users": users, "orders": orders}


# --- 2. type mismatch ----------------------------------------------------------------------


@step
def list_users() -> list[str]:
    return ["Alice"]


@step
def summarize(list_users: list[int]) -> str:
    return str(list_users)


# --- 3. cycle ------------------------------------------------------------------------------


@step
def validate(enrich: dict[str, Any]) -> dict[str, Any]:
    return enrich


@step
def enrich(validate: dict[str, Any]) -> dict[str, Any]:
    return validate


@step
def report(validate: dict[str, Any]) -> str:
    return str(validate)


# --- 4. a step called instead of referenced (built on demand: the call makes a coroutine) --


@step
async def fetch_names() -> list[str]:
    return ["Alice"]


def make_called_step() -> Any:
    @step
    def greet(names: Annotated[list[str], fetch_names()]) -> str:  # type: ignore[arg-type]
        return ", ".join(names)

    return greet


# --- 5. duplicate step names -----------------------------------------------------------------


@step(name="load")
def load_csv() -> int:
    return 1


@step(name="load")
def load_json() -> int:
    return 2


@step
def combine(a: Annotated[int, load_csv], b: Annotated[int, load_json]) -> int:
    return a + b


# --- 6. after= / when= naming unknown steps -----------------------------------------------


@step
def init_database() -> None:
    return None


@step(after=["init_databse"])
def migrate() -> str:
    return "migrated"


def feature_enabled(flags: Annotated[dict[str, bool], "load_flag"]) -> bool:
    return flags.get("beta", False)


@step
def load_flags() -> dict[str, bool]:
    return {"beta": True}


@step(when=feature_enabled)
def beta_feature() -> str:
    return "beta"


# --- 7. several problems at once -----------------------------------------------------------


@step
def read_rows() -> list[str]:
    return ["a"]


@step
def count_rows(read_rows: int, extra: Annotated[int, "read_row"]) -> int:
    return read_rows + extra


@step(after=["read_rowz"])
def publish(count_rows: int) -> str:
    return str(count_rows)


# --- 8. a plain function (not a step) used as metadata -------------------------------------


def helper() -> int:
    return 1


@step
def use_helper(value: Annotated[int, helper]) -> int:
    return value


# --- 9. bad inputs ---------------------------------------------------------------------------


@dataclass
class Item:
    sku: str
    qty: int


@dataclass
class Order:
    id: str
    items: list[Item]


@step
def fetch_customer(customer_id: str) -> dict[str, str]:
    return {"id": customer_id}


@step
def fetch_customer_orders(customer_id: str, order: Order) -> list[Item]:
    return order.items


@step
def order_total(
    fetch_customer: dict[str, str], fetch_customer_orders: list[Item], discount: float = 0.0
) -> int:
    return sum(i.qty for i in fetch_customer_orders)


# --- 10. a limit that the run does not define --------------------------------------------


@step(limit="api")
async def call_api() -> int:
    return 1


# --- 11. a run failure: one step fails, two siblings are running, one never starts --------


class PaymentDeclined(Exception):
    pass


@step
async def charge_card() -> str:
    await trio.sleep(1)
    raise PaymentDeclined("card declined")


@step(retries=2, backoff=0)
async def charge_card_retried() -> str:
    await trio.sleep(1)
    raise PaymentDeclined("card declined")


@step
async def audit_log() -> None:
    await trio.sleep(100)


@step
async def send_email() -> None:
    await trio.sleep(100)


@step
def ship(charge_card: str) -> str:
    return charge_card


@step
def ship_retried(charge: Annotated[str, charge_card_retried]) -> str:
    return charge


@step
def checkout(ship: str, audit_log: None, send_email: None) -> str:
    return ship


@step
def checkout_retried(
    ship: Annotated[str, ship_retried],
    log: Annotated[None, audit_log],
    mail: Annotated[None, send_email],
) -> str:
    return ship


# --- 12. step_span() without default, for a skipped step ---------------------------------


@step(when=lambda: False)
def maybe_notify() -> str:
    return "sent"


@step(after=[maybe_notify])
def read_notify_span() -> Any:
    return step_span("maybe_notify")


@step(after=[maybe_notify])
def read_notify_span_default() -> Any:
    current_span().seen = step_span("maybe_notify", default="nothing")
    return current_span().seen
