"""The activity log: field-level diffs of changed objects, and writing and paging entries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.domain import paging
from server.errors import Violations
from server.principal import EnvironmentInfo
from storage.db import Database
from storage.models import ActivityLog, User

# Entries per page unless asked (the reference's page size).
PAGE_SIZE = 10


def change(scope: str, field: str | None, before: Any, after: Any, action: str = "changed") -> dict[str, Any]:
    """One entry of a log record's changes, in the reference's shape."""
    return {"type": scope, "action": action, "field": field, "before": before, "after": after}


def diff(before: dict[str, Any], after: dict[str, Any], scope: str) -> list[dict[str, Any]]:
    """Field-level changes between two snapshots of the same object (only fields in either)."""
    return [
        change(scope, field, before.get(field), after.get(field))
        for field in sorted(set(before) | set(after))
        if before.get(field) != after.get(field)
    ]


def record(
    session: Session,
    env: EnvironmentInfo,
    user_id: int | None,
    verb: str,
    scope: str,
    item_id: str,
    name: str | None,
    changes: list[dict[str, Any]] | None,
    at: dt.datetime,
    short_id: str | None = None,
) -> None:
    """Appends one entry to the log in the caller's transaction."""
    session.add(
        ActivityLog(
            environment_id=env.id,
            organization_id=env.organization_id,
            user_id=user_id,
            is_system=user_id is None,
            activity=verb,
            scope=scope,
            item_id=item_id,
            detail={"changes": changes, "name": name, "short_id": short_id, "type": None},
            created_at=at,
        )
    )


def record_item(
    session: Session,
    env: EnvironmentInfo,
    user_id: int | None,
    scope: str,
    item: Any,
    verb: str,
    changes: list[dict[str, Any]] | None,
    at: dt.datetime,
) -> None:
    """Appends an entry about a named item of an environment (an action, a cohort, an alert)."""
    record(session, env, user_id, verb, scope, str(item.id), item.name, changes, at)


def record_insight(
    session: Session,
    env: EnvironmentInfo,
    user_id: int | None,
    verb: str,
    insight: Any,
    at: dt.datetime,
    changes: list[dict[str, Any]] | None = None,
) -> None:
    """Appends an entry about an insight (a storage.models.Insight row), named as it is now."""
    name = insight.name or insight.derived_name
    record(session, env, user_id, verb, "Insight", str(insight.id), name, changes, at, insight.short_id)


@dataclass(frozen=True)
class Entry:
    """An activity entry with its user, ready to be shown."""

    id: str
    user_first_name: str | None
    user_email: str | None
    is_system: bool
    was_impersonated: bool
    activity: str
    scope: str
    item_id: str
    detail: dict[str, Any]
    created_at: dt.datetime


@dataclass(frozen=True)
class EntryPage:
    """One page of entries, newest first."""

    entries: list[Entry]
    total_count: int
    page: int
    has_next: bool


def listing(
    db: Database,
    environment_id: int,
    scope: str,
    page_number: int,
    limit: int,
    item: Callable[[Session], int] | None = None,
) -> EntryPage:
    """A page of a scope's log as a list RPC asks for it: `page_number` from 1 (0 = the first),
    `limit` 0 = PAGE_SIZE; `item` finds the one object whose entries are wanted (NOT_FOUND as its
    domain says), or None for the whole scope."""
    violations = Violations()
    if page_number < 0:
        violations.add("page", "page starts at 1")
    limit = paging.window(violations, limit, 0, default=PAGE_SIZE)
    violations.raise_if_any()
    with db.session() as session:
        item_id = str(item(session)) if item is not None else None
        return page(
            session,
            environment_id=environment_id,
            scope=scope,
            item_id=item_id,
            page_number=page_number or 1,
            limit=limit,
        )


def page(
    session: Session, *, environment_id: int, scope: str, item_id: str | None, page_number: int, limit: int
) -> EntryPage:
    """Entries of one item (or of every item of the scope), newest first."""
    where = [ActivityLog.environment_id == environment_id, ActivityLog.scope == scope]
    if item_id is not None:
        where.append(ActivityLog.item_id == item_id)
    total = session.scalar(select(func.count()).select_from(ActivityLog).where(*where)) or 0
    rows = session.execute(
        select(ActivityLog, User.first_name, User.email)
        .outerjoin(User, User.id == ActivityLog.user_id)
        .where(*where)
        .order_by(ActivityLog.created_at.desc(), ActivityLog.id.desc())
        .offset((page_number - 1) * limit)
        .limit(limit)
    ).all()
    entries = [
        Entry(
            id=log.uuid,
            user_first_name=first_name,
            user_email=email,
            is_system=log.is_system,
            was_impersonated=log.was_impersonated,
            activity=log.activity,
            scope=log.scope,
            item_id=log.item_id,
            detail=log.detail,
            created_at=log.created_at,
        )
        for log, first_name, email in rows
    ]
    return EntryPage(entries, total, page_number, has_next=page_number * limit < total)
