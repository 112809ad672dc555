"""An annotated API whose declarations typed.test.mjs generates and compiles consumers against."""

from __future__ import annotations

import dataclasses
import enum
from typing import Iterator, List, Literal, Optional, TypedDict


class Greeting(TypedDict):
    name: str
    punctuation: Optional[Literal["!", "?"]]


class Unit(enum.Enum):
    SECONDS = "s"
    MILLISECONDS = "ms"


@dataclasses.dataclass
class Tick:
    n: int
    unit: Unit


def hello(out, data: Greeting) -> str:
    return f"Hello {data['name']}{data['punctuation'] or ''}"


def count(out, data: int) -> Iterator[Tick]:
    for n in range(data):
        yield {"n": n, "unit": Unit.SECONDS.value}


def tags(out, data: Optional[List[str]] = None) -> List[str]:
    return sorted(data or [])


API = {"hello": hello, "jobs": {"count": count}, "tags": tags}
