"""Every user-mistake message, checked verbatim (DESIGN §8, house style).

The flows live in ``tests/flows_for_messages.py``; expected ``path:line`` values are
computed from the source of each function (its ``def`` line, past decorators), and paths
are rendered relative to the cwd, which these tests pin to the repository root.
"""

import traceback
from typing import Annotated

import flows_for_messages as m
import pytest
import trio.testing
from messages_help import at, graph_error, repo_root_cwd  # noqa: F401 (a fixture)

from flowfn import GraphError, InputError, RunFailed, graph, run, step

pytestmark = pytest.mark.usefixtures("repo_root_cwd")


def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


# --- graph() problems -----------------------------------------------------------------------


def test_missing_upstream_step_with_did_you_mean() -> None:
    assert graph_error(m.merge_results) == (
        "1 problem in graph(merge_results)\n"
        "\n"
        f"  {at(m.merge_results)} in def merge_results(users, orders)\n"
        "    parameter 'orders' is wired to step 'fetch_order', but no step has that name.\n"
        f"    Did you mean 'fetch_orders' ({at(m.fetch_orders)})?\n"
        "    Steps in this graph: fetch_users, merge_results."
    )


def test_graph_error_problems_are_data() -> None:
    with pytest.raises(GraphError) as info:
        graph(m.merge_results)
    err = info.value
    assert err.context == "graph(merge_results)"
    assert len(err.problems) == 1
    assert err.problems[0].step == "merge_results"
    assert err.problems[0].where == f"{at(m.merge_results)} in def merge_results(users, orders)"


def test_type_mismatch() -> None:
    assert graph_error(m.summarize) == (
        "1 problem in graph(summarize)\n"
        "\n"
        f"  {at(m.summarize)} in def summarize(list_users: list[int]) -> str\n"
        "    parameter 'list_users' expects list[int], but step 'list_users' returns list[str]\n"
        f"      {at(m.list_users)} in def list_users() -> list[str]\n"
        "    Change one of the two annotations, or annotate the parameter as Any to skip "
        "this check."
    )


def test_type_mismatch_names_user_classes_briefly() -> None:
    """Types inside generics read as written (``list[Item]``), not module-qualified."""

    @step
    def make_items() -> list[m.Item]:
        return []

    @step
    def take_orders(items: Annotated[list[m.Order], make_items]) -> int:
        return len(items)

    message = graph_error(take_orders)
    assert "parameter 'items' expects list[Order], but step 'make_items' returns list[Item]" in (
        message
    ), message


def test_cycle_with_path_and_locations() -> None:
    assert graph_error(m.report) == (
        "1 problem in graph(report)\n"
        "\n"
        "  cycle: validate -> enrich -> validate\n"
        f"    {at(m.validate)} in def validate(enrich: dict[str, Any]) -> dict[str, Any]\n"
        f"    {at(m.enrich)} in def enrich(validate: dict[str, Any]) -> dict[str, Any]\n"
        "    A step cannot depend on itself, directly or through other steps."
    )


def test_step_called_instead_of_referenced() -> None:
    greet = m.make_called_step()
    assert graph_error(greet) == (
        "1 problem in graph(greet)\n"
        "\n"
        f"  {at(greet)} in def greet(names)\n"
        "    the metadata of parameter 'names' is a coroutine object, not a step.\n"
        "    Probably you wrote:\n"
        "        names: Annotated[list[str], fetch_names()]    # incorrect!\n"
        "    Instead, write (notice: no parentheses):\n"
        "        names: Annotated[list[str], fetch_names]      # correct!"
    )


def test_sync_step_called_instead_of_referenced() -> None:
    @step
    def load_table() -> dict[str, int]:
        return {}

    @step
    def use_table(table: Annotated[dict[str, int], load_table()]) -> int:
        return len(table)

    here = at(use_table)
    assert graph_error(use_table) == (
        "1 problem in graph(use_table)\n"
        "\n"
        f"  {here} in def use_table(table)\n"
        "    the metadata of parameter 'table' is a dict, not a step.\n"
        "    Probably you wrote:\n"
        "        table: Annotated[dict[str, int], the_step()]    # incorrect!\n"
        "    Instead, write (notice: no parentheses):\n"
        "        table: Annotated[dict[str, int], the_step]      # correct!"
    )


def test_duplicate_step_names() -> None:
    # The header names the step by its step name ('load'); the list shows both defs.
    assert graph_error(m.combine) == (
        "1 problem in graph(combine)\n"
        "\n"
        f"  {at(m.load_csv)} in def load()\n"
        "    step name 'load' is used by 2 different steps:\n"
        f"      {at(m.load_csv)} in def load_csv\n"
        f"      {at(m.load_json)} in def load_json\n"
        '    Give all but one another name: @step(name="...").'
    )


def test_unknown_after_name() -> None:
    assert graph_error(m.migrate) == (
        "1 problem in graph(migrate)\n"
        "\n"
        f"  {at(m.migrate)} in def migrate()\n"
        "    after= is wired to step 'init_databse', but no step has that name.\n"
        f"    Did you mean 'init_database' ({at(m.init_database)})?\n"
        "    Steps in this graph: migrate."
    )


def test_unknown_when_name() -> None:
    assert graph_error(m.beta_feature) == (
        "1 problem in graph(beta_feature)\n"
        "\n"
        f"  {at(m.beta_feature)} in def beta_feature()\n"
        "    when= predicate parameter 'flags' is wired to step 'load_flag', but no step has "
        "that name.\n"
        f"    Did you mean 'load_flags' ({at(m.load_flags)})?\n"
        "    Steps in this graph: beta_feature."
    )


def test_several_problems_at_once() -> None:
    steps = "    Steps in this graph: count_rows, publish, read_rows."
    assert graph_error(m.publish) == (
        "3 problems in graph(publish)\n"
        "\n"
        f"  {at(m.publish)} in def publish(count_rows)\n"
        "    after= is wired to step 'read_rowz', but no step has that name.\n"
        f"    Did you mean 'read_rows' ({at(m.read_rows)})?\n"
        f"{steps}\n"
        "\n"
        f"  {at(m.count_rows)} in def count_rows(read_rows, extra)\n"
        "    parameter 'extra' is wired to step 'read_row', but no step has that name.\n"
        f"    Did you mean 'read_rows' ({at(m.read_rows)})?\n"
        f"{steps}\n"
        "\n"
        f"  {at(m.count_rows)} in def count_rows(read_rows: int, extra: int) -> int\n"
        "    parameter 'read_rows' expects int, but step 'read_rows' returns list[str]\n"
        f"      {at(m.read_rows)} in def read_rows() -> list[str]\n"
        "    Change one of the two annotations, or annotate the parameter as Any to skip "
        "this check."
    )


def test_plain_function_as_metadata() -> None:
    assert graph_error(m.use_helper) == (
        "1 problem in graph(use_helper)\n"
        "\n"
        f"  {at(m.use_helper)} in def use_helper(value)\n"
        "    the metadata of parameter 'value' is the plain function 'helper', not a step.\n"
        f"    Decorate it with @step ({at(m.helper)}), or wire it by name."
    )


def test_plain_function_given_to_graph() -> None:
    """Passing an undecorated function to graph() names it by name and file:line.

    No ``<function ... at 0x...>`` repr (not stable, not house style), and each argument is
    numbered by its own position.
    """
    message = graph_error(m.helper, m.feature_enabled)
    assert "0x" not in message, message
    assert "'helper'" in message and at(m.helper) in message, message
    assert "'feature_enabled'" in message and at(m.feature_enabled) in message, message
    assert "argument 1 of graph()" in message and "argument 2 of graph()" in message, message
    assert message.startswith("2 problems in graph("), message


def test_graph_without_parts() -> None:
    assert graph_error() == "1 problem in graph()\n\n  graph() needs a step, a module or a graph."


def test_exception_names_render_as_public() -> None:
    """Tracebacks show ``flowfn.GraphError: ...`` as in DESIGN §8, not a private module."""
    shown = {}
    for exc in (GraphError("graph(x)", []), InputError("run(x)", []),
                RunFailed("boom", None)):  # type: ignore[arg-type]
        shown[type(exc).__name__] = traceback.format_exception_only(exc)[0].split(":")[0]
    assert shown == {
        "GraphError": "flowfn.GraphError",
        "InputError": "flowfn.InputError",
        "RunFailed": "flowfn.RunFailed",
    }


# --- run() argument problems -----------------------------------------------------------------


def test_override_naming_no_step() -> None:
    flow = graph(m.list_users)
    with pytest.raises(GraphError) as info:
        run(flow, overrides={"list_user": ["x"]})
    assert str(info.value) == (
        "1 problem in run(list_users, overrides=...)\n"
        "  overrides names 'list_user', but no step in this graph has that name.\n"
        "  Did you mean 'list_users'? Overridable steps: list_users."
    )


def test_override_naming_no_step_without_near_miss() -> None:
    ran = []

    @step
    def lonely() -> int:
        ran.append(1)
        return 1

    with pytest.raises(GraphError) as info:
        run(graph(lonely), overrides={"zzz": 1, lonely: 2})
    assert str(info.value) == (
        "1 problem in run(lonely, overrides=...)\n"
        "  overrides names 'zzz', but no step in this graph has that name.\n"
        "  Overridable steps: lonely."
    )
    assert ran == []


def test_unknown_limit_name() -> None:
    with pytest.raises(GraphError) as info:
        run(graph(m.call_api), limits={"apu": 2})
    assert str(info.value) == (
        "1 problem in run(call_api, limits=...)\n"
        "\n"
        f"  {at(m.call_api)} in def call_api()\n"
        "    step 'call_api': @step(limit='api') names a limit that this run does not "
        "define. Did you mean 'apu'?\n"
        "    Pass it to the run: limits={'api': 5} (defined: apu)."
    )


def test_missing_limit() -> None:
    with pytest.raises(GraphError) as info:
        run(graph(m.call_api))
    assert str(info.value) == (
        "1 problem in run(call_api, limits=...)\n"
        "\n"
        f"  {at(m.call_api)} in def call_api()\n"
        "    step 'call_api': @step(limit='api') names a limit that this run does not "
        "define.\n"
        "    Pass it to the run: limits={'api': 5}."
    )


# --- bad inputs --------------------------------------------------------------------------------

ORDER_FLOW = graph(m.order_total)


def test_bad_inputs_all_at_once_as_data_paths() -> None:
    with pytest.raises(InputError) as info:
        run(ORDER_FLOW, {
            "order": {"id": "o1", "items": [
                {"sku": "a", "qty": 1}, {"sku": "b", "qty": "2"}, {"sku": "c", "qty": "two"},
            ]},
            "discont": 0.1,
        })
    assert str(info.value) == (
        "3 bad inputs for run(order_total)\n"
        "  order.items[2].qty: invalid value for type, expected int (got 'two')\n"
        "  discont: unknown input. Did you mean 'discount'? "
        "This graph's inputs: customer_id, discount, order.\n"
        "  customer_id: required input missing (asked for by fetch_customer, "
        "fetch_customer_orders)"
    )
    assert info.value.context == "run(order_total)"
    assert len(info.value.problems) == 3


def test_bad_inputs_lossy_values_extra_and_missing_fields() -> None:
    with pytest.raises(InputError) as info:
        run(ORDER_FLOW, {
            "customer_id": 5,
            "order": {"id": "o1", "items": [{"sku": "a", "qty": 7.9, "x": 1}, {}]},
        })
    assert str(info.value) == (
        "5 bad inputs for run(order_total)\n"
        "  customer_id: invalid value for type, expected str (got 5)\n"
        "  order.items[0].qty: invalid value for type, expected int (got 7.9)\n"
        "  order.items[0]: unknown keys: x\n"
        "  order.items[1].sku: required field missing\n"
        "  order.items[1].qty: required field missing"
    )


def test_bad_input_list_from_string() -> None:
    @step
    def tag_count(tags: list[str]) -> int:
        return len(tags)

    with pytest.raises(InputError) as info:
        run(graph(tag_count), {"tags": "a,b"})
    assert str(info.value) == (
        "1 bad input for run(tag_count)\n"
        "  tags: invalid value for type, expected list[str] (got 'a,b')"
    )


def test_bad_input_list_of_user_class_named_briefly() -> None:
    with pytest.raises(InputError) as info:
        run(ORDER_FLOW, {"customer_id": "c", "order": {"id": "o1", "items": "abc"}})
    assert str(info.value) == (
        "1 bad input for run(order_total)\n"
        "  order.items: invalid value for type, expected list[Item] (got 'abc')"
    )


def test_unknown_input_without_near_miss() -> None:
    @step
    def constant() -> int:
        return 1

    with pytest.raises(InputError) as info:
        run(graph(constant), {"zzz": 1})
    assert str(info.value) == (
        "1 bad input for run(constant)\n"
        "  zzz: unknown input. This graph's inputs: none."
    )


# --- run failures ------------------------------------------------------------------------------


def test_run_failed_message_first_attempt() -> None:
    with pytest.raises(RunFailed) as info:
        run(graph(m.checkout), clock=mock_clock())
    assert str(info.value) == (
        "step 'charge_card' failed on attempt 1: PaymentDeclined: card declined\n"
        f"  step defined at {at(m.charge_card)}\n"
        "  cancelled while running: audit_log, send_email; never started: checkout, ship"
    )
    assert isinstance(info.value.__cause__, m.PaymentDeclined)
    assert info.value.step == "charge_card"
    assert info.value.attempt == 1


def test_run_failed_message_after_retries() -> None:
    with pytest.raises(RunFailed) as info:
        run(graph(m.checkout_retried), clock=mock_clock())
    assert str(info.value) == (
        f"step 'charge_card_retried' failed on attempt 3 of 3 ({at(m.charge_card_retried)}):\n"
        "  PaymentDeclined: card declined\n"
        "  cancelled while running: audit_log, send_email; "
        "never started: checkout_retried, ship_retried"
    )
    assert (info.value.attempt, info.value.attempts) == (3, 3)


def test_run_failed_message_without_siblings() -> None:
    @step
    def lone_failure() -> None:
        raise ValueError("boom")

    with pytest.raises(RunFailed) as info:
        run(graph(lone_failure))
    here = at(lone_failure)
    assert str(info.value) == (
        "step 'lone_failure' failed on attempt 1: ValueError: boom\n"
        f"  step defined at {here}"
    )


def test_step_span_without_default_for_skipped_step() -> None:
    with pytest.raises(RunFailed) as info:
        run(graph(m.read_notify_span))
    assert str(info.value) == (
        "step 'read_notify_span' failed on attempt 1: LookupError: "
        "step_span('maybe_notify'): that step was skipped or has not run. "
        "Pass default=None to handle it: step_span('maybe_notify', default=None).\n"
        f"  step defined at {at(m.read_notify_span)}"
    )
    assert info.value.result.spans["maybe_notify"].status == "skipped"


def test_step_span_with_default_for_skipped_step() -> None:
    result = run(graph(m.read_notify_span_default))
    assert result.output == "nothing"
    assert result.spans["read_notify_span_default"].seen == "nothing"


def test_current_span_outside_a_step() -> None:
    from flowfn import current_span, step_span

    with pytest.raises(RuntimeError) as info:
        current_span()
    assert str(info.value) == (
        "current_span() was called outside a running step. It only works inside a "
        "function that run() is executing."
    )
    with pytest.raises(RuntimeError) as info:
        step_span("x")
    assert str(info.value) == (
        "step_span() was called outside a running step. It only works inside a "
        "function that run() is executing."
    )


# --- options and run arguments -----------------------------------------------------------------




def test_negative_retries() -> None:
    with pytest.raises(ValueError) as info:
        step(retries=-1)(m.call_api.fn)
    assert str(info.value) == (
        f"step 'call_api' ({at(m.call_api)}): retries= must be a whole number >= 0, got -1. "
        "It counts the tries after the first: retries=2 tries up to 3 times."
    )


def test_non_positive_timeout() -> None:
    with pytest.raises(ValueError) as info:
        step(timeout=0)(m.call_api.fn)
    assert str(info.value) == (
        f"step 'call_api' ({at(m.call_api)}): timeout= must be a number of seconds > 0, "
        "got 0. Leave it out for no timeout."
    )


def test_bad_max_concurrency() -> None:
    with pytest.raises(ValueError) as info:
        run(graph(m.call_api), max_concurrency=0, limits={"api": 1})
    assert str(info.value) == (
        "run(call_api, max_concurrency=0): the cap must be a whole number >= 1, or None for "
        "no cap."
    )


def test_bad_limit_capacity() -> None:
    with pytest.raises(GraphError) as info:
        run(graph(m.call_api), limits={"api": True})
    assert str(info.value) == (
        "1 problem in run(call_api, limits=...)\n"
        "\n"
        "  limits['api'] = True\n"
        "    a capacity limit must be a whole number >= 1."
    )


def test_output_of_a_skipped_step() -> None:
    @step(when=lambda: False)
    async def optional_report() -> str:
        return "report"

    result = run(graph(optional_report))
    with pytest.raises(KeyError) as info:
        result[optional_report]
    assert info.value.args[0] == (
        "step 'optional_report' has no output: its status is 'skipped' "
        "(its when= predicate was false)"
    )


def test_failing_when_predicate_names_the_predicate() -> None:
    @step(when=lambda: {}["valid"], retries=2)
    async def guarded() -> str:
        return "x"

    with pytest.raises(RunFailed) as info:
        run(graph(guarded))
    line = at(guarded)
    assert str(info.value) == (
        "step 'guarded' failed in its when= predicate: KeyError: 'valid'\n"
        f"  step defined at {line}"
    )


def test_a_contestant_waiting_for_a_fellow_contestant() -> None:
    from flowfn import Outcome, race

    @step
    async def primary() -> int:
        return 1

    @step
    async def fallback(seen: Annotated[Outcome[int], primary]) -> int:
        return 2

    with pytest.raises(GraphError) as info:
        graph(race(primary, fallback, name="source"))
    line = at(fallback)
    assert str(info.value) == (
        "1 problem in graph(source)\n"
        "\n"
        f"  {line} in def fallback(seen)\n"
        "    contestant 'fallback' of race 'source' waits for 'primary', which runs in the "
        "same race.\n"
        "    Contestants run side by side and the losers are cancelled, so one cannot wait "
        "for another: take 'primary' out of the race, or make 'fallback' a step after the "
        "race."
    )
