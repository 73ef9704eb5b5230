"""Custom span attributes: one step leaves a note on its span, a later step reads it.

What it shows:
  * ``current_span()`` is the running step's own span; any attribute you set on it is
    kept (``result.spans[...].attributes``) and visible to other steps;
  * ``step_span("process_user")`` looks up another step's span from inside a step;
  * reading a span is not a data dependency, so the reader declares the order itself
    with ``after=`` (otherwise the two steps would start together).

Run it:  python examples/user_pipeline.py
"""

from flowfn import current_span, graph, run, step, step_span


@step
async def process_user(user_id: str) -> str:
    current_span().user_status = "active"  # a custom variable on this step's span
    return f"Processed user: {user_id}"


@step(after=[process_user])  # order without data: the span must be final before we read it
async def check_status() -> str:
    status = step_span("process_user").user_status
    return f"User status: {status}"


flow = graph(check_status)  # process_user is found through after=

if __name__ == "__main__":
    result = run(flow, {"user_id": "user_123"})
    print(f"output: {result.output}")
    print()
    for name in ("process_user", "check_status"):
        span = result.spans[name]
        print(f"{name}:")
        fields = {"input": span.input, "output": span.output, **span.attributes}
        for key, value in fields.items():
            print(f"  {'.' + key:<13} = {value!r}")
    print()
    print(result.report())
