"""Retries with backoff, and per-step timeouts with and without a fallback value.

What it shows:
  * ``@step(retries=3, backoff=Backoff(...), retry_on=(ConnectionError,))``: a flaky call
    is tried again after a growing pause; every attempt is recorded on the span;
  * ``@step(timeout=0.2, on_timeout=...)``: a slow call is cancelled at its deadline and
    the step returns the fallback value instead of failing;
  * ``@step(timeout=0.1)`` without a fallback fails with ``StepTimeout`` (a
    ``TimeoutError``); here a downstream ``Outcome`` parameter takes that failure, so the
    run still succeeds.

Run it:  python examples/timeouts_retries.py
"""

import trio

from flowfn import Backoff, Outcome, StepTimeout, Value, current_span, graph, run, step


@step(retries=3, backoff=Backoff(initial=0.05, factor=2, jitter=0), retry_on=(ConnectionError,))
async def fetch_quote(symbol: str) -> float:
    await trio.sleep(0.01)
    attempt = current_span().attempts  # 1, 2, 3, ...
    if attempt < 3:  # this service drops the first two calls
        raise ConnectionError(f"quote service reset the connection (attempt {attempt})")
    return 101.5


@step(timeout=0.2, on_timeout={"status": "stale", "price": 99.0})
async def fetch_reference_price(symbol: str) -> dict[str, object]:
    await trio.sleep(5)  # far too slow: cancelled at 0.2 s, the fallback is returned
    return {"status": "fresh", "price": 100.0}


@step(timeout=0.1)
async def fetch_volume(symbol: str) -> int:
    await trio.sleep(5)  # also too slow, and there is no fallback: StepTimeout
    return 1_000


@step
def summarize(
    fetch_quote: float,
    fetch_reference_price: dict[str, object],
    fetch_volume: Outcome[int],
) -> dict[str, object]:
    volume = fetch_volume.value if isinstance(fetch_volume, Value) else None
    return {"quote": fetch_quote, "reference": fetch_reference_price, "volume": volume}


flow = graph(summarize)

if __name__ == "__main__":
    result = run(flow, {"symbol": "ACME"})
    print(f"output: {result.output}")
    print()
    quote = result.spans["fetch_quote"]
    assert quote.started is not None
    print("fetch_quote attempts:")
    for attempt in quote.attempt_log:
        outcome = "ok" if attempt.error is None else f"{type(attempt.error).__name__}"
        print(f"  #{attempt.number} at +{attempt.started - quote.started:.2f} s: {outcome}")
    reference = result.spans["fetch_reference_price"]
    print(f"fetch_reference_price: {reference.status}, {reference.reason}")
    volume = result.spans["fetch_volume"]
    print(f"fetch_volume: {volume.status}, "
          f"StepTimeout: {isinstance(volume.error, StepTimeout)} ({volume.error})")
    print()
    print(result.report())
