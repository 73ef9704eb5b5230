"""Order without data: ``process_data`` waits for ``init_database`` through ``after=``.

``init_database`` returns nothing that ``process_data`` needs, yet it must finish first:
the table has to exist before rows go into it. ``@step(after=[init_database])`` says
exactly that. Everything else still runs as early as it can: ``load_records`` has no
ordering constraint, so it runs at the same time as ``init_database``.

Run it:  python examples/explicit_order.py
"""

import trio

from flowfn import graph, run, step


class Database:
    """A stand-in for a real database: tables are lists of rows."""

    def __init__(self) -> None:
        self.tables: dict[str, list[str]] = {}


DB = Database()


@step
async def init_database() -> None:
    await trio.sleep(0.1)  # pretend to run migrations
    DB.tables = {"records": []}


@step
async def load_records(source: str) -> list[str]:
    await trio.sleep(0.05)  # pretend to read a file
    return [f"{source}-{i}" for i in range(3)]


@step(after=[init_database])  # a step object or its name ("init_database") both work
async def process_data(load_records: list[str]) -> int:
    if "records" not in DB.tables:
        raise RuntimeError("the database is not initialised")
    DB.tables["records"].extend(load_records)
    return len(DB.tables["records"])


flow = graph(process_data)

if __name__ == "__main__":
    result = run(flow, {"source": "orders.csv"})
    print(f"rows written: {result.output}")
    print()
    print(result.report())
    init, load, process = (result.spans[n] for n in
                           ("init_database", "load_records", "process_data"))
    assert init.ended is not None and process.started is not None
    assert load.started is not None
    print(f"\nprocess_data started after init_database finished: {process.started >= init.ended}")
    print(f"load_records ran alongside init_database: {load.started < init.ended}")
