"""flowfn: run workflows of plain Python functions in parallel, wired by their signatures."""

from outcome import Error as Error
from outcome import Outcome as Outcome
from outcome import Value as Value

from ._codec import CodecError as CodecError
from ._errors import GraphError as GraphError
from ._errors import InputError as InputError
from ._errors import MapLengthError as MapLengthError
from ._errors import RunFailed as RunFailed
from ._errors import StepTimeout as StepTimeout
from ._executors import Executor as Executor
from ._executors import WorkerDied as WorkerDied
from ._graph import Graph as Graph
from ._graph import graph as graph
from ._inputs import InputSpec as InputSpec
from ._notebook import NotebookError as NotebookError
from ._notebook import notebook as notebook
from ._patterns import ShellError as ShellError
from ._patterns import ask as ask
from ._patterns import race as race
from ._patterns import shell as shell
from ._patterns import stub as stub
from ._patterns import subflow as subflow
from ._result import Attempt as Attempt
from ._result import Event as Event
from ._result import Form as Form
from ._result import RunResult as RunResult
from ._result import Span as Span
from ._result import current_span as current_span
from ._result import step_span as step_span
from ._run import aresume as aresume
from ._run import arun as arun
from ._run import resume as resume
from ._run import run as run
from ._sending import RemoteError as RemoteError
from ._sqlite import SQLiteStore as SQLiteStore
from ._step import Backoff as Backoff
from ._step import Step as Step
from ._step import step as step
from ._store import MemoryStore as MemoryStore
from ._store import StoreError as StoreError
from ._wiring import Input as Input
from ._wiring import each as each

__all__ = [
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
