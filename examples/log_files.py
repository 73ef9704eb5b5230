"""A map over files: parse every access log in a folder, then aggregate — a broken file does not sink the rest.

    log_files ─► parse_log[0..n] ─► summarize ─┬─────────────────► report
                                               └─► alert (when=) ─┘

What it shows:
  * ``Annotated[Path, each(log_files)]`` parses each file in its own worker thread (plain
    ``def`` steps run in threads, so blocking file reads never stall the others);
  * ``list[Outcome[LogStats]]`` gives the aggregator one ``Value`` or ``Error`` per file,
    in the order of the files: a malformed file is reported, not fatal;
  * ``when=`` runs ``alert`` only when there were too many server errors, and
    ``report`` takes ``alert: str | None`` so it runs either way;
  * the folder is a graph input: ``"/some/dir"`` given as text becomes a ``Path``.

The script writes a few sample logs into a temporary folder and runs the flow on it.

Run it:  python examples/log_files.py
"""

import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from flowfn import Error, Outcome, Value, each, graph, run, step


@dataclass(frozen=True)
class LogStats:
    file: str
    requests: int
    statuses: dict[int, int]  # status code -> count
    slowest: tuple[str, int]  # (path, milliseconds)


@dataclass(frozen=True)
class Summary:
    files: int
    requests: int
    server_errors: int
    statuses: dict[int, int]
    slowest: tuple[str, str, int]  # (file, path, milliseconds)
    unreadable: dict[str, str] = field(default_factory=dict)  # file -> why


@step
def log_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.log"))


@step
def parse_log(path: Annotated[Path, each(log_files)]) -> LogStats:
    """One line per request: ``METHOD PATH STATUS MILLISECONDS``."""
    statuses: Counter[int] = Counter()
    slowest = ("", -1)
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            parts = line.split()
            if len(parts) != 4 or not (parts[2].isdigit() and parts[3].isdigit()):
                raise ValueError(f"{path.name}:{number}: not a request line: {line.strip()!r}")
            _, url, status, millis = parts
            statuses[int(status)] += 1
            slowest = max(slowest, (url, int(millis)), key=lambda s: s[1])
    return LogStats(path.name, sum(statuses.values()), dict(sorted(statuses.items())), slowest)


@step
def summarize(parse_log: list[Outcome[LogStats]]) -> Summary:
    parsed: list[LogStats] = []
    unreadable: dict[str, str] = {}
    for outcome in parse_log:
        match outcome:
            case Value(value=stats):
                parsed.append(stats)
            case Error(error=exc):
                unreadable[str(exc).split(":", 1)[0]] = str(exc)
    if not parsed:
        raise ValueError(f"none of the {len(parse_log)} log files could be read")
    statuses: Counter[int] = Counter()
    for stats in parsed:
        statuses.update(stats.statuses)
    file, (url, millis) = max(((s.file, s.slowest) for s in parsed), key=lambda x: x[1][1])
    return Summary(
        files=len(parsed),
        requests=sum(s.requests for s in parsed),
        server_errors=sum(n for code, n in statuses.items() if code >= 500),
        statuses=dict(sorted(statuses.items())),
        slowest=(file, url, millis),
        unreadable=unreadable,
    )


MAX_SERVER_ERRORS = 2  # the default of the input max_server_errors


# The predicate asks for the input too, so it needs the default as well: each asker
# falls back to its own default.
@step(when=lambda summarize, max_server_errors=MAX_SERVER_ERRORS:
      summarize.server_errors > max_server_errors)
def alert(summarize: Summary, max_server_errors: int = MAX_SERVER_ERRORS) -> str:
    return f"ALERT: {summarize.server_errors} server errors (more than {max_server_errors})"


@step
def report(summarize: Summary, alert: str | None) -> str:
    s = summarize
    lines = [
        f"{s.requests} requests in {s.files} files, statuses {s.statuses}",
        f"slowest: {s.slowest[1]} in {s.slowest[0]} ({s.slowest[2]} ms)",
        *(f"unreadable: {why}" for why in s.unreadable.values()),
    ]
    if alert is not None:
        lines.append(alert)
    return "\n".join(lines)


flow = graph(report)

SAMPLE_LOGS = {
    "api-1.log": ["GET /users 200 12", "GET /users/7 200 8", "POST /orders 201 95",
                  "GET /orders/3 500 310"],
    "api-2.log": ["GET /users 200 15", "GET /health 200 1", "POST /orders 503 1200"],
    "api-3.log": ["GET /users/9 404 4", "DELETE /orders/3 204 40", "GET /orders 502 880",
                  "GET /users 200 11", "GET /users 200 9"],
    "broken.log": ["GET /users 200 10", "this line is not a request"],
}


def write_sample_logs(folder: Path) -> None:
    """The sample folder: three good logs, one with a malformed line, and a non-log file."""
    for name, lines in SAMPLE_LOGS.items():
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "README.txt").write_text("not a log\n", encoding="utf-8")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        write_sample_logs(Path(tmp))
        result = run(flow, {"folder": tmp})
    print(result.output)
    print()
    print(result.report())
    print(f"\nfiles parsed: {len(result.spans['parse_log'].children)}, "
          f"failed: {sorted(result.failures)}")
