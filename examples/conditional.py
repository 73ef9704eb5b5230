"""Branching with ``when=``: exactly one of two processing steps runs; a merge takes either.

    validate_data ──► process_valid   (when valid)   ──┐
                  └─► process_invalid (when invalid) ──┴─► merge_results

What it shows:
  * ``when=`` takes a predicate wired by its own signature, like a step: the parameter
    ``validate_data`` receives that step's output;
  * a step whose predicate is false is ``skipped``, and its span says why;
  * a downstream parameter typed ``str | None`` receives ``None`` for a skipped upstream,
    so ``merge_results`` always runs. (Typed plain ``str``, it would be skipped too.)

Run it:  python examples/conditional.py
"""

from flowfn import graph, run, step


@step
def validate_data(data: dict[str, str]) -> dict[str, bool]:
    email = data.get("email", "")
    name, _, domain = email.partition("@")
    return {"valid": bool(name) and "." in domain}


@step(when=lambda validate_data: validate_data["valid"])
def process_valid(data: dict[str, str]) -> str:
    return f"welcome mail queued for {data['email']}"


@step(when=lambda validate_data: not validate_data["valid"])
def process_invalid(data: dict[str, str]) -> str:
    return f"rejected {data.get('email', '')!r}: not an email address"


@step
def merge_results(
    data: dict[str, str],  # the same graph input the other steps read
    validate_data: dict[str, bool],
    process_valid: str | None,  # None when that branch was skipped
    process_invalid: str | None,
) -> dict[str, object]:
    # (Inside any step, step_span("process_valid", default=None) also tells whether a
    # step ran; typed parameters make the same thing visible in the signature.)
    return {
        "order": data,
        "validated": validate_data,
        "processed": process_valid if process_valid is not None else process_invalid,
    }


flow = graph(merge_results)

if __name__ == "__main__":
    for email in ("user@example.com", "not-an-email"):
        result = run(flow, {"data": {"email": email}})
        print(f"--- email={email!r}")
        print(result.output)
        print()
        print(result.report())
        print()
