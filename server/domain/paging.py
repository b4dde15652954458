"""Pages of a list: the page type, and the limit and offset checks every list applies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

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


def check_search(violations: Violations, search: str, maximum: int) -> None:
    """Adds a violation of `search` when it is longer than `maximum` characters."""
    if len(search) > maximum:
        violations.add("search", f"search must be {maximum} characters or fewer")


def search_window(search: str, limit: int, offset: int, maximum_search: int) -> int:
    """The limit of a searchable list (see `window`); InvalidArgument naming each bad argument."""
    violations = Violations()
    check_search(violations, search, maximum_search)
    limit = window(violations, limit, offset)
    violations.raise_if_any()
    return limit


def contains_pattern(search: str) -> str:
    """A LIKE pattern (escape character backslash) for lowercased text containing `search`."""
    escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def newest_first(
    session: Session, model: Any, where: Sequence[Any], limit: int, offset: int
) -> tuple[int, list[Any]]:
    """How many `model` rows match `where`, and the page of them newest first (then by id, descending)."""
    count = session.scalar(select(func.count()).select_from(model).where(*where)) or 0
    rows = session.scalars(
        select(model)
        .where(*where)
        .order_by(model.created_at.desc(), model.id.desc())
        .offset(offset)
        .limit(limit)
    ).all()
    return count, list(rows)
