"""Pages of a list: the page type, and the limit and offset checks every list applies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from server.errors import Violations

T = TypeVar("T")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: its items, how many match in all, and the window it was cut with."""

    items: list[T]
    count: int
    limit: int
    offset: int


def window(
    violations: Violations,
    limit: int,
    offset: int,
    *,
    default: int = DEFAULT_LIMIT,
    maximum: int = MAX_LIMIT,
    fields: tuple[str, str] = ("limit", "offset"),
) -> int:
    """The limit a list uses: 0 means `default`, more than `maximum` is lowered to it (as the
    reference). A negative limit or offset is added to `violations`, named by `fields`."""
    if limit < 0:
        violations.add(fields[0], f"{fields[0]} must not be negative")
    if offset < 0:
        violations.add(fields[1], f"{fields[1]} must not be negative")
    return min(limit or default, maximum)
