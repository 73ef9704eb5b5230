"""Fork/join: process an order, send three notifications at once, then log what was sent.

    process_order ──► send_email   ──┐
                  ├─► send_slack   ──┼─► log_notifications
                  └─► send_webhook ──┘

A "parallel group" with a callback is nothing special here: the three senders each take
``process_order``'s output (the fork), and ``log_notifications`` takes all three of
theirs (the join), so it runs once, after the last one finishes.

Run it:  python examples/notifications.py
"""

from dataclasses import dataclass
from datetime import UTC, datetime

import trio

from flowfn import graph, run, step


@dataclass(frozen=True)
class Order:
    order_id: str
    status: str


@dataclass(frozen=True)
class Receipt:
    channel: str
    order_id: str
    sent_at: str


@step
async def process_order(order_id: str) -> Order:
    return Order(order_id, status="completed")


async def _deliver(channel: str, order: Order) -> Receipt:
    await trio.sleep(0.1)  # pretend to call the email / Slack / webhook API
    return Receipt(channel, order.order_id, datetime.now(UTC).isoformat(timespec="milliseconds"))


@step
async def send_email(process_order: Order) -> Receipt:
    return await _deliver("email", process_order)


@step
async def send_slack(process_order: Order) -> Receipt:
    return await _deliver("slack", process_order)


@step
async def send_webhook(process_order: Order) -> Receipt:
    return await _deliver("webhook", process_order)


@step
def log_notifications(
    send_email: Receipt, send_slack: Receipt, send_webhook: Receipt
) -> dict[str, object]:
    sent = [receipt.channel for receipt in (send_email, send_slack, send_webhook)]
    return {"notifications_sent": sent, "notification_count": len(sent)}


flow = graph(log_notifications)

if __name__ == "__main__":
    result = run(flow, {"order_id": "ORD-123"})
    print(f"Notifications sent: {result.output['notifications_sent']}")
    print(f"Count: {result.output['notification_count']}")
    print()
    print(result.report())
    senders = [result.spans[n] for n in ("send_email", "send_slack", "send_webhook")]
    first_start = min(s.started for s in senders if s.started is not None)
    last_end = max(s.ended for s in senders if s.ended is not None)
    print(f"\nthree 0.1 s notifications took {last_end - first_start:.2f} s together")
