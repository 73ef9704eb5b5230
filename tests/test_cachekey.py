"""Cache keys: the same code and arguments give the same key, in any process; any change
that could change the output gives another key."""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowfn._cachekey import Uncacheable, cache_key, code_hash

ROOT = Path(__file__).parent.parent
_names = itertools.count()


def load(tmp_path: Path, source: str, attr: str = "price") -> Callable[..., Any]:
    """``attr`` of a fresh module made from ``source`` (a real file, so getsource works)."""
    name = f"cachekey_mod_{next(_names)}"
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn: Callable[..., Any] = getattr(module, attr)
    return fn


BASE = """
RATE = 2

def price(qty: int, discount: float = 0.0) -> float:
    \"\"\"The price.\"\"\"
    return qty * RATE - discount
"""


def key(fn: Callable[..., Any], version: str | None = None, **args: Any) -> str | Uncacheable:
    return cache_key("shop.price", code_hash(fn, version=version), args or {"qty": 3})


def test_the_same_code_and_arguments_give_the_same_key(tmp_path: Path) -> None:
    first, second = load(tmp_path, BASE), load(tmp_path, BASE)
    assert key(first) == key(second)
    assert key(first, qty=3) != key(first, qty=4)


@pytest.mark.parametrize("edit", [
    BASE.replace('"""The price."""', '"""Another docstring."""'),
    BASE.replace("return qty", "# a comment\n    return  qty"),
    "import functools\n" + BASE.replace("def price", "@functools.lru_cache\ndef price"),
])
def test_edits_that_cannot_matter_keep_the_key(tmp_path: Path, edit: str) -> None:
    assert key(load(tmp_path, BASE)) == key(load(tmp_path, edit))


@pytest.mark.parametrize("edit", [
    BASE.replace("qty * RATE", "qty * RATE * 1"),  # body
    BASE.replace("discount: float = 0.0", "discount: float = 0.5"),  # default
    BASE.replace("RATE = 2", "RATE = 3"),  # a global it reads
])
def test_edits_that_can_matter_change_the_key(tmp_path: Path, edit: str) -> None:
    assert key(load(tmp_path, BASE)) != key(load(tmp_path, edit))


def test_a_helper_function_counts_with_its_code(tmp_path: Path) -> None:
    source = """
    def rate():
        return 2

    def price(qty: int) -> int:
        return qty * rate()
    """
    assert key(load(tmp_path, source)) != key(load(tmp_path, source.replace("2", "3")))


def test_closure_values_count(tmp_path: Path) -> None:
    source = """
    def make(rate):
        def price(qty: int) -> int:
            return qty * rate
        return price

    price = make(2)
    price_too = make(2)
    price_three = make(3)
    """
    assert key(load(tmp_path, source)) == key(load(tmp_path, source, "price_too"))
    assert key(load(tmp_path, source)) != key(load(tmp_path, source, "price_three"))


def test_version_replaces_the_code_hash(tmp_path: Path) -> None:
    changed = BASE.replace("qty * RATE", "qty * RATE * 1")
    assert key(load(tmp_path, BASE), "2") == key(load(tmp_path, changed), "2")
    assert key(load(tmp_path, BASE), "2") != key(load(tmp_path, BASE), "3")


def test_functions_without_source_use_their_bytecode() -> None:
    def make(body: str) -> Callable[..., Any]:
        namespace: dict[str, Any] = {}
        exec(f"def price(qty):\n    return {body}", namespace)
        fn: Callable[..., Any] = namespace["price"]
        return fn

    assert key(make("qty * 2")) == key(make("qty * 2"))
    assert key(make("qty * 2")) != key(make("qty * 3"))


@dataclasses.dataclass
class Order:
    sku: str
    tags: set[str]


def test_arguments_hash_by_their_canonical_json(tmp_path: Path) -> None:
    fn = load(tmp_path, BASE)
    assert key(fn, qty={"a": 1, "b": 2}) == key(fn, qty={"b": 2, "a": 1})
    assert key(fn, qty=Order("x", {"b", "a"})) == key(fn, qty=Order("x", {"a", "b"}))
    assert key(fn, qty=1) != key(fn, qty=1.0) != key(fn, qty=True)


def test_an_argument_without_a_json_form_is_not_cached(tmp_path: Path) -> None:
    fn = load(tmp_path, BASE)
    assert key(fn, qty=3, client=threading.Lock()) == Uncacheable(
        "argument 'client' is a lock, which has no JSON form to hash")


def test_the_key_is_the_same_in_another_process(tmp_path: Path) -> None:
    (tmp_path / "pricing.py").write_text(textwrap.dedent(BASE))
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import pricing\n"
        "from flowfn._cachekey import cache_key, code_hash\n"
        "print(cache_key('shop.price', code_hash(pricing.price), "
        "{'qty': {'b': {1, 2, 3}, 'a': 'x'}}))\n")
    out = [subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                          text=True, check=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PYTHONHASHSEED": seed}).stdout
           for seed in ("1", "2")]
    assert out[0] == out[1] and len(out[0].strip()) == 64
