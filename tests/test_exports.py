"""The public API: exactly these names, all importable, nothing private leaking."""

import importlib
import inspect
import types

import flowfn

# Update this list deliberately when the public API grows (later issues add names).
PUBLIC = [
    "Attempt",
    "Backoff",
    "CodecError",
    "Error",
    "Event",
    "Executor",
    "Form",
    "Graph",
    "GraphError",
    "Input",
    "InputError",
    "InputSpec",
    "MapLengthError",
    "MemoryStore",
    "NotebookError",
    "Outcome",
    "RemoteError",
    "RunFailed",
    "RunResult",
    "SQLiteStore",
    "ShellError",
    "Span",
    "Step",
    "StepTimeout",
    "StoreError",
    "Value",
    "WorkerDied",
    "aresume",
    "arun",
    "ask",
    "current_span",
    "each",
    "graph",
    "notebook",
    "race",
    "resume",
    "run",
    "shell",
    "step",
    "step_span",
    "stub",
    "subflow",
]

# Named by DESIGN §1, §2 and §6 (the Core issue): these must never disappear.
CORE = {
    "step", "graph", "run", "arun", "Graph", "Step", "GraphError", "InputError", "RunFailed",
    "RunResult", "Span", "Event", "current_span", "step_span", "Outcome", "Value", "Error",
}


def test_all_is_the_explicit_sorted_list() -> None:
    assert flowfn.__all__ == PUBLIC
    assert sorted(PUBLIC) == PUBLIC
    assert len(set(PUBLIC)) == len(PUBLIC)


def test_core_names_are_public() -> None:
    assert set(PUBLIC) >= CORE


def test_every_name_is_importable() -> None:
    namespace: dict[str, object] = {}
    exec("from flowfn import *", namespace)
    namespace.pop("__builtins__")
    assert sorted(namespace) == PUBLIC
    for name in PUBLIC:
        assert getattr(flowfn, name) is namespace[name]
        assert getattr(flowfn, name) is not None


def test_nothing_private_leaks() -> None:
    assert not [n for n in PUBLIC if n.startswith("_")]
    extra = [
        name for name, value in vars(flowfn).items()
        if name.isidentifier()  # pytest's assertion rewriting adds '@py_builtins'
        and not name.startswith("_") and name not in PUBLIC
        # flowfn's own submodules (flowfn.testing, loaded by the pytest plugin) are fine
        and not (isinstance(value, types.ModuleType) and value.__name__.startswith("flowfn."))
    ]
    assert extra == []
    # Exported objects come from flowfn itself or from outcome (Outcome/Value/Error).
    for name in PUBLIC:
        module = getattr(getattr(flowfn, name), "__module__", "")
        assert module.split(".")[0] in ("flowfn", "outcome"), (name, module)


def test_outcome_types_are_trios_own() -> None:
    outcome = importlib.import_module("outcome")
    assert flowfn.Outcome is outcome.Outcome
    assert flowfn.Value is outcome.Value
    assert flowfn.Error is outcome.Error


def test_exceptions_hierarchy() -> None:
    assert issubclass(flowfn.StepTimeout, TimeoutError)
    for exc in (flowfn.GraphError, flowfn.InputError, flowfn.RunFailed, flowfn.StoreError):
        assert issubclass(exc, Exception)


def test_plugin_module_is_importable() -> None:
    testing = importlib.import_module("flowfn.testing")
    assert callable(testing.flow_run) and callable(testing.flow_clock)


def test_aio_module_is_public() -> None:
    aio = importlib.import_module("flowfn.aio")  # DESIGN §5: flows from asyncio code
    assert aio.__all__ == ["arun"]
    assert inspect.iscoroutinefunction(aio.arun)
