"""A dynamic map, pipelined: list pages, fetch each, parse each fetched page, summarize.

    list_urls ─► fetch[0..n] ─► parse[0..n] ─► summarize

What it shows:
  * ``Annotated[str, each(list_urls)]`` runs ``fetch`` once per URL, however many
    ``list_urls`` returns at run time (a Prefect ``.map`` / Hamilton ``Parallelizable``);
  * ``Annotated[str, each(fetch)]`` maps over a map *item by item*: page 1 is parsed as
    soon as page 1 arrives, while slower pages are still downloading — no barrier
    between the two maps;
  * a step that takes the mapped step as a plain parameter (``parse: list[...]``)
    receives every result, in input order, whatever order they finished in;
  * each item has its own child span (``fetch[3]``, ``parse[3]``).

Run it:  python examples/map_pipeline.py
"""

from dataclasses import dataclass
from typing import Annotated

import trio

from flowfn import each, graph, run, step

# How long each page takes to download: the first one is the slowest.
LATENCY = {"home": 0.25, "about": 0.05, "blog": 0.10, "shop": 0.15, "help": 0.20}


@dataclass(frozen=True)
class Page:
    title: str
    words: int


@step
def list_urls(site: str) -> list[str]:
    return [f"https://{site}/{page}" for page in LATENCY]


@step
async def fetch(url: Annotated[str, each(list_urls)]) -> str:
    page = url.rsplit("/", 1)[1]
    await trio.sleep(LATENCY[page])  # pretend this is the download
    return f"<h1>{page}</h1><p>{'lorem ipsum ' * len(page)}</p>"


@step
async def parse(html: Annotated[str, each(fetch)]) -> Page:
    await trio.sleep(0.05)  # pretend parsing is expensive
    title = html.split("<h1>", 1)[1].split("</h1>", 1)[0]
    body = html.split("<p>", 1)[1].split("</p>", 1)[0]
    return Page(title, words=len(body.split()))


@step
def summarize(parse: list[Page]) -> dict[str, object]:
    return {
        "pages": [page.title for page in parse],  # input order, not finishing order
        "words": sum(page.words for page in parse),
    }


flow = graph(summarize)

if __name__ == "__main__":
    result = run(flow, {"site": "example.com"})
    print(f"output: {result.output}")
    print()
    print(result.report())
    fetches, parses = result.spans["fetch"], result.spans["parse"]
    parsed_about = parses.children["parse[1]"]
    assert parsed_about.started is not None and fetches.ended is not None
    print(f"\nparse[1] started before the last fetch finished: "
          f"{parsed_about.started < fetches.ended}")
