"""Action rules: create, read, list, update, soft delete and restore, step validation, tags and activity.

An action's steps are checked when it is saved, so that a query using it never meets a regex the
engine cannot compile, a selector outside the supported subset or a malformed property filter:
each problem is INVALID_ARGUMENT naming the field (`action.steps[1].url`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from generated.insights.v1 import actions_pb2
from server.domain import activity, paging
from server.domain.insights import UserRef, normalize_tags, user_ref
from server.domain.masks import check_update_mask
from server.domain.paging import Page
from server.domain.taglinks import linked_tags, set_linked_tags
from server.echo import shown
from server.errors import AlreadyExists, InvalidArgument, NotFound, Violations
from server.principal import EnvironmentInfo, Principal
from server.queries.common.codec import from_reference_json, to_reference_json
from server.queries.common.errors import QueryError
from server.queries.common.properties import filters_sql, regex_problem
from server.queries.common.selectors import SelectorError, parse_selector
from server.queries.common.sql import Params
from storage.db import Database
from storage.models import Action, ActionTag, User, utcnow

SCOPE = "Action"
# The ErrorInfo reason of a definition that cannot be saved.
INVALID = "INVALID_ACTION"
NAME_LIMIT = 400
DESCRIPTION_LIMIT = 1000
SEARCH_LIMIT = 200
TAG_LIMIT = 255
MAX_TAGS = 100
MAX_STEPS = 50
MAX_STEP_FILTERS = 20
EVENT_LIMIT = 400
# url, href and text: a regex is bounded by the same number (MAX_REGEX_LENGTH).
STEP_TEXT_LIMIT = 10_000
TAG_NAME_LIMIT = 100
# Fields an update may name; every other path of Action is output-only or unknown.
WRITABLE = ("name", "description", "tags", "steps", "deleted")

_M = actions_pb2.ActionStepMatching
# The comparison a text part takes when its matching is not given (the reference's defaults).
DEFAULT_MATCHING: dict[str, actions_pb2.ActionStepMatching.ValueType] = {
    "url": _M.ACTION_STEP_MATCHING_CONTAINS,
    "href": _M.ACTION_STEP_MATCHING_EXACT,
    "text": _M.ACTION_STEP_MATCHING_EXACT,
}
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]*")


@dataclass
class ActionFields:
    """Writable fields of an action as given by a caller; which ones apply is decided separately."""

    name: str = ""
    description: str = ""
    tags: list[str] = field(default_factory=list)
    steps: list[actions_pb2.ActionStep] = field(default_factory=list)
    deleted: bool = False


@dataclass(frozen=True)
class ActionView:
    """An action with its tags and creator, as shown to callers (no ORM object leaves the domain)."""

    id: int
    environment_id: int
    name: str
    description: str
    tags: tuple[str, ...]
    steps: tuple[actions_pb2.ActionStep, ...]
    version: int
    deleted: bool
    created_at: dt.datetime
    created_by: UserRef | None
    updated_at: dt.datetime


# --------------------------------------------------------------------------------- validation


def check_steps(
    steps: Sequence[actions_pb2.ActionStep], timezone: str, path: str = "action.steps"
) -> list[actions_pb2.ActionStep]:
    """The steps as saved (matching defaults filled in, tag names lowercased), or INVALID_ARGUMENT
    naming every field that cannot be saved."""
    if len(steps) > MAX_STEPS:
        # Refused before anything else: the cost of the checks below grows with the count.
        raise InvalidArgument(
            f"an action has at most {MAX_STEPS} steps (got {len(steps)})", field=path, reason=INVALID
        )
    violations = Violations()
    saved = []
    for index, step in enumerate(steps):
        _check_step(step, timezone, f"{path}[{index}]", violations)
        saved.append(normalized_step(step))
    _raise_if_any(violations)
    return saved


def _check_step(step: actions_pb2.ActionStep, timezone: str, path: str, violations: Violations) -> None:
    if len(step.event) > EVENT_LIMIT:
        violations.add(f"{path}.event", f"an event name has at most {EVENT_LIMIT} characters")
    for part in ("url", "href", "text"):
        value: str = getattr(step, part)
        matching = getattr(step, f"{part}_matching")
        if len(value) > STEP_TEXT_LIMIT:
            violations.add(
                f"{path}.{part}", f"{part} has at most {STEP_TEXT_LIMIT} characters (got {len(value)})"
            )
        elif matching == _M.ACTION_STEP_MATCHING_REGEX and value:
            problem = regex_problem(value)
            if problem is not None:
                violations.add(f"{path}.{part}", f"{part} is not a valid regex: {problem}")
    if step.selector:
        try:
            parse_selector(step.selector)
        except SelectorError as exc:
            violations.add(f"{path}.selector", f"selector {shown(step.selector, 40)!r}: {exc}")
    if step.tag_name and (len(step.tag_name) > TAG_NAME_LIMIT or not _TAG_NAME.fullmatch(step.tag_name)):
        violations.add(
            f"{path}.tag_name",
            f"a tag name holds at most {TAG_NAME_LIMIT} letters, digits and '-', starting with a letter "
            "(such as button)",
        )
    if len(step.properties) > MAX_STEP_FILTERS:
        violations.add(
            f"{path}.properties",
            f"a step has at most {MAX_STEP_FILTERS} property filters (got {len(step.properties)})",
        )
    else:
        try:
            # The filters compile exactly as a query's would; the SQL itself is thrown away.
            filters_sql(Params(), step.properties, f"{path}.properties", timezone)
        except QueryError as exc:
            violations.add(exc.path or f"{path}.properties", exc.message)


def normalized_step(step: actions_pb2.ActionStep) -> actions_pb2.ActionStep:
    """The step as saved: each given text part with its comparison, the tag name in lowercase."""
    saved = actions_pb2.ActionStep()
    saved.CopyFrom(step)
    for part, default in DEFAULT_MATCHING.items():
        name = f"{part}_matching"
        if getattr(saved, part) and not getattr(saved, name):
            setattr(saved, name, default)
    saved.tag_name = saved.tag_name.lower()
    return saved


def steps_json(steps: Iterable[actions_pb2.ActionStep]) -> list[Any]:
    """Steps as the reference's JSON (how they are stored and diffed)."""
    return [to_reference_json(step) for step in steps]


def parse_steps(stored: list[Any]) -> tuple[actions_pb2.ActionStep, ...]:
    """The steps of an action row."""
    return tuple(from_reference_json(step, actions_pb2.ActionStep) for step in stored)


def find_action(
    session: Session, environment_id: int, action_id: int, *, include_deleted: bool = False
) -> Action:
    """The action in the environment; NOT_FOUND when it is not there (or deleted, unless
    `include_deleted`). Every reader reaches an action by this one rule."""
    query = select(Action).where(Action.environment_id == environment_id, Action.id == action_id)
    if not include_deleted:
        query = query.where(Action.deleted.is_(False))
    row = session.scalars(query).first()
    if row is None:
        raise NotFound(
            f"Action {action_id} not found.", reason="ACTION_NOT_FOUND", metadata={"action": str(action_id)}
        )
    return row


# ------------------------------------------------------------------------------------- domain


class Actions:
    """The action domain. Every method runs synchronously in one database transaction."""

    def __init__(self, db: Database, clock: Callable[[], dt.datetime] = utcnow):
        self.db = db
        self.clock = clock

    def create(self, principal: Principal, environment_id: int, fields: ActionFields) -> ActionView:
        env = principal.environment(environment_id)
        chosen = {"name", "description", "tags", "steps"}
        tags, steps = self._check_fields(env, fields, chosen)
        now = self.clock()
        with _NameGuard(self.db, env.id, fields.name), self.db.session() as session:
            self._check_name_free(session, env.id, fields.name, None)
            row = Action(
                environment_id=env.id,
                name=fields.name,
                description=fields.description,
                steps=steps_json(steps),
                version=1,
                deleted=False,
                created_at=now,
                created_by_id=principal.user_id,
                updated_at=now,
            )
            session.add(row)
            session.flush()
            self._set_tags(session, row, tags)
            activity.record_item(session, env, principal.user_id, SCOPE, row, "created", None, now)
            session.flush()
            return self._views(session, [row])[0]

    def get(self, principal: Principal, environment_id: int, action_id: int) -> ActionView:
        """One live action."""
        env = principal.environment(environment_id)
        with self.db.session() as session:
            return self._views(session, [find_action(session, env.id, action_id)])[0]

    def list_actions(
        self, principal: Principal, environment_id: int, search: str, limit: int, offset: int
    ) -> Page[ActionView]:
        """The environment's live actions whose name contains `search` (any case), newest first."""
        env = principal.environment(environment_id)
        limit = paging.search_window(search, limit, offset, SEARCH_LIMIT)
        where: list[Any] = [Action.environment_id == env.id, Action.deleted.is_(False)]
        if search:
            where.append(func.lower(Action.name).like(paging.contains_pattern(search), escape="\\"))
        with self.db.session() as session:
            count = session.scalar(select(func.count()).select_from(Action).where(*where)) or 0
            page = select(Action).where(*where).order_by(Action.id.desc()).offset(offset).limit(limit)
            rows = list(session.scalars(page))
            return Page(self._views(session, rows), count, limit, offset)

    def update(
        self,
        principal: Principal,
        environment_id: int,
        action_id: int,
        fields: ActionFields,
        paths: Sequence[str],
    ) -> ActionView:
        env = principal.environment(environment_id)
        chosen = check_update_mask(paths, WRITABLE, "Action")
        tags, steps = self._check_fields(env, fields, chosen)
        now = self.clock()
        with _NameGuard(self.db, env.id) as guard, self.db.session() as session:
            # Only an update that restores may address a deleted action.
            restoring = "deleted" in chosen and not fields.deleted
            row = find_action(session, env.id, action_id, include_deleted=restoring)
            before = self._snapshot(session, row)
            was_deleted = row.deleted
            name = fields.name if "name" in chosen else row.name
            live = not (fields.deleted if "deleted" in chosen else row.deleted)
            if live and (name != row.name or was_deleted):
                # Checked before anything changes: a flush of the new name would meet the index first.
                self._check_name_free(session, env.id, name, row.id)
                guard.name = name
            if "name" in chosen:
                row.name = fields.name
            if "description" in chosen:
                row.description = fields.description
            if "tags" in chosen:
                self._set_tags(session, row, tags)
            if "steps" in chosen:
                new_steps = steps_json(steps)
                if new_steps != row.steps:
                    row.steps = new_steps
                    # Incremented by the database: two concurrent edits of the steps never
                    # leave different steps under one version (a cache key of results).
                    row.version = Action.version + 1  # type: ignore[assignment]
            if "deleted" in chosen:
                row.deleted = fields.deleted
            after = self._snapshot(session, row)
            changes = activity.diff(before, after, SCOPE)
            if changes:
                row.updated_at = now
                verb = (
                    "deleted"
                    if row.deleted and not was_deleted
                    else "restored"
                    if was_deleted and not row.deleted
                    else "updated"
                )
                activity.record_item(session, env, principal.user_id, SCOPE, row, verb, changes, now)
            session.flush()
            return self._views(session, [row])[0]

    def delete(self, principal: Principal, environment_id: int, action_id: int) -> ActionView:
        """Soft-deletes a live action (the row and its history stay; an update restores it)."""
        return self.update(principal, environment_id, action_id, ActionFields(deleted=True), ["deleted"])

    def activity(
        self, principal: Principal, environment_id: int, action_id: int | None, page: int, limit: int
    ) -> activity.EntryPage:
        """The activity of one action (deleted ones included) or of all the environment's actions."""
        env = principal.environment(environment_id)
        item = None
        if action_id is not None:
            item = lambda session: find_action(session, env.id, action_id, include_deleted=True).id  # noqa: E731 (one expression, run in the listing's session)
        return activity.listing(self.db, env.id, SCOPE, page, limit, item)

    # ------------------------------------------------------------------------------ helpers

    def _check_fields(
        self, env: EnvironmentInfo, fields: ActionFields, chosen: set[str]
    ) -> tuple[list[str], list[actions_pb2.ActionStep]]:
        violations = Violations()
        if "name" in chosen:
            if not fields.name.strip():
                violations.add("action.name", "an action needs a name")
            elif len(fields.name) > NAME_LIMIT:
                violations.add("action.name", f"action.name must be at most {NAME_LIMIT} characters")
        if "description" in chosen and len(fields.description) > DESCRIPTION_LIMIT:
            violations.add(
                "action.description", f"action.description must be at most {DESCRIPTION_LIMIT} characters"
            )
        if "tags" in chosen:
            if len(fields.tags) > MAX_TAGS:
                violations.add(
                    "action.tags", f"an action has at most {MAX_TAGS} tags (got {len(fields.tags)})"
                )
            else:
                for i, tag in enumerate(fields.tags):
                    if len(tag.strip()) > TAG_LIMIT:
                        violations.add(f"action.tags[{i}]", f"a tag is at most {TAG_LIMIT} characters")
        _raise_if_any(violations)
        steps = check_steps(fields.steps, env.timezone) if "steps" in chosen else []
        return normalize_tags(fields.tags), steps

    def _check_name_free(self, session: Session, environment_id: int, name: str, own_id: int | None) -> None:
        query = select(Action.id).where(
            Action.environment_id == environment_id, Action.name == name, Action.deleted.is_(False)
        )
        if own_id is not None:
            query = query.where(Action.id != own_id)
        taken = session.scalars(query.limit(1)).first()
        if taken is not None:
            raise _name_taken(name, taken)

    def _set_tags(self, session: Session, row: Action, tags: list[str]) -> None:
        set_linked_tags(session, ActionTag, "action_id", row.id, row.environment_id, tags)

    def _tags_of(self, session: Session, action_ids: list[int]) -> dict[int, list[str]]:
        return linked_tags(session, ActionTag, "action_id", action_ids)

    def _snapshot(self, session: Session, row: Action) -> dict[str, Any]:
        """The diffed fields of an action (the version follows the steps, so it is left out)."""
        session.flush()
        return {
            "name": row.name,
            "description": row.description,
            "tags": self._tags_of(session, [row.id]).get(row.id, []),
            "steps": row.steps,
            "deleted": row.deleted,
        }

    def _views(self, session: Session, rows: list[Action]) -> list[ActionView]:
        """Loads what is shown beside each action with one query per relation, not per row."""
        if not rows:
            return []
        session.flush()
        tags = self._tags_of(session, [r.id for r in rows])
        user_ids = {r.created_by_id for r in rows if r.created_by_id is not None}
        users = {u.id: user_ref(u) for u in session.scalars(select(User).where(User.id.in_(user_ids)))}
        return [
            ActionView(
                id=r.id,
                environment_id=r.environment_id,
                name=r.name,
                description=r.description,
                tags=tuple(tags.get(r.id, [])),
                steps=parse_steps(r.steps),
                version=r.version,
                deleted=r.deleted,
                created_at=r.created_at,
                created_by=users.get(r.created_by_id) if r.created_by_id is not None else None,
                updated_at=r.updated_at,
            )
            for r in rows
        ]


class _NameGuard:
    """Turns the database's refusal of a second live action with one name (a concurrent write that
    passed the check first) into ALREADY_EXISTS, like the check itself."""

    def __init__(self, db: Database, environment_id: int, name: str | None = None):
        self.db, self.environment_id = db, environment_id
        # The name the write leaves live; None while it leaves no live name to check.
        self.name = name

    def __enter__(self) -> _NameGuard:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: Any) -> None:
        if not isinstance(error, IntegrityError) or self.name is None:
            return
        with self.db.session() as session:
            taken = session.scalars(
                select(Action.id).where(
                    Action.environment_id == self.environment_id,
                    Action.name == self.name,
                    Action.deleted.is_(False),
                )
            ).first()
        if taken is not None:
            raise _name_taken(self.name, taken) from error


def _raise_if_any(violations: Violations) -> None:
    if violations.items:
        first = violations.items[0]
        raise InvalidArgument(first.description, violations=violations.items, reason=INVALID)


def _name_taken(name: str, taken: int) -> AlreadyExists:
    return AlreadyExists(
        f"action.name: this environment already has an action named {shown(name, 80)!r} (ID {taken})",
        reason="ACTION_NAME_TAKEN",
        metadata={"field": "action.name", "action": str(taken)},
    )
