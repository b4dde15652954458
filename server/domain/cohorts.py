"""Cohort rules: create, read, list, update, soft delete and restore, members and static uploads.

Definitions live in the metadata database (serialised CohortFilters); membership is computed in the
event store by server/queries/common/cohorts.py, and static members are kept there too
(storage/cohort_members.py), so queries join them without leaving the engine.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from generated.insights.v1 import cohorts_pb2
from server.domain import activity, paging
from server.domain.actions import parse_steps
from server.domain.ingest import MAX_TEXT, person_id_for
from server.domain.insights import UserRef, user_ref
from server.domain.masks import check_update_mask
from server.domain.paging import Page
from server.echo import shown
from server.errors import FailedPrecondition, InvalidArgument, NotFound, Violations
from server.principal import EnvironmentInfo, Principal
from server.queries.base import ActionDefinition
from server.queries.common.actions import action_sql
from server.queries.common.codec import to_reference_json
from server.queries.common.cohorts import (
    ActionSql,
    CohortDefinition,
    CohortUnavailable,
    membership_sql,
)
from server.queries.common.errors import QueryError
from server.queries.common.sql import Params
from storage.cohort_members import CohortMembers
from storage.db import Database
from storage.models import Action, Cohort, User, utcnow

SCOPE = "Cohort"
NAME_LIMIT = 400
DESCRIPTION_LIMIT = 1000
SEARCH_LIMIT = 200
WRITABLE = ("name", "description", "filters", "deleted")
# The definition's fields: changing one bumps the version.
DEFINITION = frozenset({"filters"})
# Distinct ids shown per member.
DISTINCT_IDS_SHOWN = 100
# Bounds of one upload (the whole file, over all its chunks).
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_UPLOAD_ROWS = 1_000_000
MAX_REJECTIONS = 1000
_PATH = "cohort.filters.properties"


@dataclass(frozen=True)
class CohortRecord:
    """A cohort's own fields, copied out of its row inside the session (no ORM object leaves the domain)."""

    id: int
    name: str
    description: str
    is_static: bool
    version: int
    deleted: bool
    count: int | None
    last_calculated_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class CohortView:
    """A cohort as shown to callers, with its creator."""

    cohort: CohortRecord
    filters: cohorts_pb2.CohortFilters | None
    created_by: UserRef | None


@dataclass(frozen=True)
class Member:
    """A member of a cohort, as far as the event store knows the person."""

    id: uuid.UUID
    distinct_ids: list[str]
    properties: str
    created_at: dt.datetime | None


@dataclass(frozen=True)
class MemberPage:
    """One page of a cohort's members, and the version they were computed for."""

    page: Page[Member]
    version: int


@dataclass(frozen=True)
class Rejection:
    """A CSV row that added no member: its 1-based line and why."""

    line: int
    reason: str


@dataclass(frozen=True)
class UploadOutcome:
    """What an upload did."""

    view: CohortView
    rows: int
    added: int
    duplicates: int
    rejected: int
    rejections: list[Rejection]


def parse_filters(blob: bytes | None) -> cohorts_pb2.CohortFilters | None:
    """The CohortFilters stored on a cohort row, or None for a static cohort."""
    if blob is None:
        return None
    filters = cohorts_pb2.CohortFilters()
    filters.ParseFromString(blob)
    return filters


def definition_of(row: Cohort) -> CohortDefinition:
    """What the membership compiler needs of a stored cohort."""
    return CohortDefinition(
        id=row.id,
        name=row.name,
        version=row.version,
        is_static=row.is_static,
        filters=parse_filters(row.filters) or cohorts_pb2.CohortFilters(),
        deleted=row.deleted,
    )


def resolver(session: Session, environment_id: int) -> Callable[[int], CohortDefinition | None]:
    """Looks up cohorts of one environment by id (deleted ones included: the compiler refuses them)."""

    def resolve(cohort_id: int) -> CohortDefinition | None:
        row = session.scalars(
            select(Cohort).where(Cohort.environment_id == environment_id, Cohort.id == cohort_id)
        ).first()
        return definition_of(row) if row is not None else None

    return resolve


def _action_compiler(session: Session, env: EnvironmentInfo, cohort_id: int) -> ActionSql:
    """Compiles the actions a cohort's criteria count, read in the session computing its members;
    FAILED_PRECONDITION (ACTION_UNAVAILABLE) for one that is gone or no longer compiles."""

    def compile_action(action_id: int, params: Params) -> str:
        row = session.scalars(
            select(Action).where(Action.environment_id == env.id, Action.id == action_id)
        ).first()
        problem = "does not exist or is deleted"
        if row is not None and not row.deleted:
            action = ActionDefinition(row.id, row.name, row.version, parse_steps(row.steps))
            try:
                return action_sql(params, action, env.timezone)
            except QueryError as exc:
                problem = f"cannot be computed: {exc.path}: {exc.message}"
        raise FailedPrecondition(
            f"cohort {cohort_id} counts action {action_id}, which {problem}",
            reason="ACTION_UNAVAILABLE",
            metadata={"action": str(action_id), "cohort": str(cohort_id)},
        )

    return compile_action


def _filters_json(filters: cohorts_pb2.CohortFilters | None) -> Any:
    return to_reference_json(filters) if filters is not None else None


def _snapshot(row: Cohort) -> dict[str, Any]:
    return {
        "name": row.name,
        "description": row.description,
        "filters": _filters_json(parse_filters(row.filters)),
        "deleted": row.deleted,
    }


class Cohorts:
    """The cohort domain. Metadata calls run in one database transaction; member calls also query
    the event store. Every method blocks: the servicer runs them through `Blocking`."""

    def __init__(
        self,
        db: Database,
        members: CohortMembers,
        clock: Callable[[], dt.datetime] = utcnow,
        changed: Callable[[int], None] = lambda environment_id: None,
    ):
        self.db = db
        self.members = members
        self.clock = clock
        # Told an environment id after a write commits (caches of results using cohorts forget).
        self.changed = changed

    # ------------------------------------------------------------------------------ commands

    def create(self, principal: Principal, environment_id: int, cohort: cohorts_pb2.Cohort) -> CohortView:
        env = principal.environment(environment_id)
        violations = Violations()
        self._check_texts(cohort, {"name", "description"}, violations, creating=True)
        if cohort.is_static and cohort.HasField("filters") and cohort.filters.properties.values:
            violations.add(
                "cohort.filters", "cohort.filters: a static cohort has no filters (upload its members)"
            )
        if not cohort.is_static and not cohort.filters.properties.values:
            violations.add(
                f"{_PATH}.values", f"{_PATH}.values: a dynamic cohort needs at least one group of criteria"
            )
        violations.raise_if_any()
        now = self.clock()
        with self.db.session() as session:
            if not cohort.is_static:
                self._check_definition(session, env, None, cohort.filters, now)
            row = Cohort(
                environment_id=env.id,
                name=cohort.name,
                description=cohort.description,
                is_static=cohort.is_static,
                filters=None if cohort.is_static else cohort.filters.SerializeToString(deterministic=True),
                version=1,
                count=0 if cohort.is_static else None,
                last_calculated_at=now if cohort.is_static else None,
                deleted=False,
                created_at=now,
                created_by_id=principal.user_id,
                updated_at=now,
            )
            session.add(row)
            session.flush()
            activity.record_item(session, env, principal.user_id, SCOPE, row, "created", None, now)
            view = self._view(session, row)
        self.changed(env.id)
        return view

    def update(
        self,
        principal: Principal,
        environment_id: int,
        cohort_id: int,
        cohort: cohorts_pb2.Cohort,
        paths: Sequence[str],
    ) -> CohortView:
        env = principal.environment(environment_id)
        chosen = check_update_mask(paths, WRITABLE, "Cohort")
        violations = Violations()
        self._check_texts(cohort, chosen, violations, creating=False)
        violations.raise_if_any()
        now = self.clock()
        with self.db.session() as session:
            # Only an update that restores may address a deleted cohort.
            restoring = "deleted" in chosen and not cohort.deleted
            row = find_cohort(session, env.id, cohort_id, include_deleted=restoring)
            before = _snapshot(row)
            if "filters" in chosen:
                if row.is_static:
                    raise InvalidArgument(
                        "a static cohort has no filters (upload its members)", field="cohort.filters"
                    )
                if not cohort.filters.properties.values:
                    raise InvalidArgument(
                        "a dynamic cohort needs at least one group of criteria", field=f"{_PATH}.values"
                    )
                self._check_definition(session, env, row.id, cohort.filters, now)
                row.filters = cohort.filters.SerializeToString(deterministic=True)
            if "name" in chosen:
                row.name = cohort.name
            if "description" in chosen:
                row.description = cohort.description
            if "deleted" in chosen:
                row.deleted = cohort.deleted
            changes = activity.diff(before, _snapshot(row), SCOPE)
            if any(c["field"] in DEFINITION for c in changes):
                row.version = Cohort.version + 1  # in SQL: concurrent changes each count
                # Counted for the old definition: unknown until computed again.
                row.count = None
                row.last_calculated_at = None
            if changes:
                row.updated_at = now
                verb = "deleted" if row.deleted and not before["deleted"] else "updated"
                activity.record_item(session, env, principal.user_id, SCOPE, row, verb, changes, now)
            session.flush()
            session.refresh(row)
            view = self._view(session, row)
        self.changed(env.id)
        return view

    def delete(self, principal: Principal, environment_id: int, cohort_id: int) -> CohortView:
        return self.update(
            principal, environment_id, cohort_id, cohorts_pb2.Cohort(deleted=True), ["deleted"]
        )

    # ------------------------------------------------------------------------------- queries

    def get(self, principal: Principal, environment_id: int, cohort_id: int) -> CohortView:
        env = principal.environment(environment_id)
        with self.db.session() as session:
            return self._view(session, find_cohort(session, env.id, cohort_id))

    def list_cohorts(
        self, principal: Principal, environment_id: int, search: str, limit: int, offset: int
    ) -> Page[CohortView]:
        env = principal.environment(environment_id)
        limit = paging.search_window(search, limit, offset, SEARCH_LIMIT)
        where: list[Any] = [Cohort.environment_id == env.id, Cohort.deleted.is_(False)]
        if search:
            pattern = paging.contains_pattern(search)
            where.append(
                or_(
                    func.lower(Cohort.name).like(pattern, escape="\\"),
                    func.lower(Cohort.description).like(pattern, escape="\\"),
                )
            )
        with self.db.session() as session:
            count, rows = paging.newest_first(session, Cohort, where, limit, offset)
            return Page([self._view(session, row) for row in rows], count, limit, offset)

    def persons(
        self, principal: Principal, environment_id: int, cohort_id: int, limit: int, offset: int
    ) -> MemberPage:
        """A page of the cohort's members, computed now, newest persons first."""
        env = principal.environment(environment_id)
        violations = Violations()
        limit = paging.window(violations, limit, offset)
        violations.raise_if_any()
        now = self.clock()
        params = Params()
        with self.db.session() as session:
            row = find_cohort(session, env.id, cohort_id)
            version = row.version
            try:
                members = membership_sql(
                    params,
                    definition_of(row),
                    team_id=env.id,
                    timezone=env.timezone,
                    now=now,
                    resolve=resolver(session, env.id),
                    action_sql=_action_compiler(session, env, row.id),
                    path="filters.properties",
                )
            except QueryError as exc:
                # A stored definition that no longer compiles (a bound lowered since it was saved).
                raise CohortUnavailable(
                    f"cohort {row.id} cannot be computed: {exc.path}: {exc.message}", exc.path, row.id
                ) from None
        page = self._page(params, members, env.id, limit, offset)
        with self.db.session() as session:
            # The count is kept for the version it was computed for only.
            session.execute(
                update(Cohort)
                .where(Cohort.id == cohort_id, Cohort.version == version)
                .values(count=page.count, last_calculated_at=now)
            )
        return MemberPage(page, version)

    def _page(self, params: Params, members: str, team_id: int, limit: int, offset: int) -> Page[Member]:
        team = params.bind(team_id, "Int64")
        ordered = (
            f"SELECT m.person_id, p.created_at, count() OVER () FROM ({members}) AS m "
            f"LEFT JOIN (SELECT id, created_at FROM persons FINAL WHERE team_id = {team}) AS p "
            "ON p.id = m.person_id "
            f"ORDER BY p.created_at DESC, m.person_id LIMIT {params.bind(limit, 'UInt64')} "
            f"OFFSET {params.bind(offset, 'UInt64')}"
        )
        store = self.members.store
        rows = store.query(ordered, params.values)
        if rows:
            count = int(rows[0][2])
        else:
            count = int(store.query(f"SELECT count() FROM ({members})", params.values)[0][0]) if offset else 0
        ids = [_uuid(r[0]) for r in rows]
        if not ids:
            return Page([], count, limit, offset)
        persons = {
            _uuid(pid): (properties, created_at)
            for pid, properties, created_at in store.query(
                "SELECT id, properties, created_at FROM persons FINAL "
                "WHERE team_id = {team:Int64} AND has({ids:Array(UUID)}, id)",
                {"team": team_id, "ids": ids},
            )
        }
        distinct = {
            _uuid(pid): sorted(str(d) for d in found)
            for pid, found in store.query(
                f"SELECT person_id, groupUniqArray({DISTINCT_IDS_SHOWN})(distinct_id) FROM events "
                "WHERE team_id = {team:Int64} AND has({ids:Array(UUID)}, person_id) GROUP BY person_id",
                {"team": team_id, "ids": ids},
            )
        }
        items = []
        for pid in ids:
            properties, created_at = persons.get(pid, ("{}", None))
            if created_at is not None and created_at.tzinfo is None:
                created_at = created_at.replace(tzinfo=dt.UTC)
            items.append(Member(pid, distinct.get(pid, []), properties or "{}", created_at))
        return Page(items, count, limit, offset)

    # ------------------------------------------------------------------------------ uploads

    def start_upload(self, principal: Principal, environment_id: int, cohort_id: int) -> Upload:
        """An upload of CSV members into a static cohort of the environment."""
        env = principal.environment(environment_id)
        with self.db.session() as session:
            row = find_cohort(session, env.id, cohort_id)
            if not row.is_static:
                raise InvalidArgument(
                    f"cohort {row.id} is dynamic: only a static cohort takes uploaded members",
                    field="cohort_id",
                )
        return Upload(self, principal, env, cohort_id)

    def _finish_upload(self, upload: Upload) -> UploadOutcome:
        env = upload.env
        rows, rejections, persons = _read_csv(upload.data(), env.id, self.members)
        now = self.clock()
        added = self.members.add(env.id, upload.cohort_id, persons, now)
        count = self.members.count(env.id, upload.cohort_id)
        with self.db.session() as session:
            row = find_cohort(session, env.id, upload.cohort_id)
            if added:
                row.version = Cohort.version + 1
                row.updated_at = now
                activity.record_item(
                    session,
                    env,
                    upload.principal.user_id,
                    SCOPE,
                    row,
                    "updated",
                    [activity.change(SCOPE, "members", None, None, action="added")],
                    now,
                )
            row.count = count
            row.last_calculated_at = now
            session.flush()
            session.refresh(row)
            view = self._view(session, row)
        if added:
            self.changed(env.id)
        rejected = len(rejections)
        return UploadOutcome(view, rows, added, len(persons) - added, rejected, rejections[:MAX_REJECTIONS])

    # ------------------------------------------------------------------------------ helpers

    def _check_texts(
        self, cohort: cohorts_pb2.Cohort, chosen: set[str], violations: Violations, *, creating: bool
    ) -> None:
        if "name" in chosen:
            if not cohort.name.strip():
                violations.add("cohort.name", "cohort.name is required")
            elif len(cohort.name) > NAME_LIMIT:
                violations.add("cohort.name", f"cohort.name must be at most {NAME_LIMIT} characters")
        if "description" in chosen and len(cohort.description) > DESCRIPTION_LIMIT:
            violations.add(
                "cohort.description", f"cohort.description must be at most {DESCRIPTION_LIMIT} characters"
            )

    def _check_definition(
        self,
        session: Session,
        env: EnvironmentInfo,
        cohort_id: int | None,
        filters: cohorts_pb2.CohortFilters,
        now: dt.datetime,
    ) -> None:
        """Compiles the definition once (nothing runs): bad fields, missing or deleted cohorts,
        cycles and deep nesting are INVALID_ARGUMENT naming the field. Actions are only checked
        to be positive ids (their compiler comes later)."""
        definition = CohortDefinition(id=cohort_id or 0, name="", version=0, is_static=False, filters=filters)
        try:
            membership_sql(
                Params(),
                definition,
                team_id=env.id,
                timezone=env.timezone,
                now=now,
                resolve=resolver(session, env.id),
                action_sql=lambda action_id, params: "0",
                path=_PATH,
            )
        except QueryError as exc:
            raise InvalidArgument(exc.message, field=exc.path or _PATH, reason="INVALID_COHORT") from None
        except CohortUnavailable as exc:
            raise InvalidArgument(exc.message, field=exc.path, reason="COHORT_NOT_FOUND") from None

    def _view(self, session: Session, row: Cohort) -> CohortView:
        creator = session.get(User, row.created_by_id) if row.created_by_id is not None else None
        record = CohortRecord(
            id=row.id,
            name=row.name,
            description=row.description,
            is_static=row.is_static,
            version=row.version,
            deleted=row.deleted,
            count=row.count,
            last_calculated_at=row.last_calculated_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
        return CohortView(record, parse_filters(row.filters), user_ref(creator) if creator else None)


@dataclass
class Upload:
    """One UploadCohortMembers stream: collects the file's chunks (bounded), then adds its members."""

    cohorts: Cohorts
    principal: Principal
    env: EnvironmentInfo
    cohort_id: int
    _chunks: list[bytes] = field(default_factory=list)
    _size: int = 0

    def check_target(self, environment_id: int, cohort_id: int) -> None:
        """Every message of a stream names the same environment and cohort."""
        if environment_id != self.env.id:
            raise InvalidArgument(
                f"environment_id {environment_id} differs from the stream's first message ({self.env.id})",
                field="environment_id",
            )
        if cohort_id != self.cohort_id:
            raise InvalidArgument(
                f"cohort_id {cohort_id} differs from the stream's first message ({self.cohort_id})",
                field="cohort_id",
            )

    def add(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > MAX_UPLOAD_BYTES:
            raise InvalidArgument(
                f"the file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB: split it into several uploads",
                field="csv_chunk",
            )
        self._chunks.append(chunk)

    def data(self) -> bytes:
        return b"".join(self._chunks)

    def finish(self) -> UploadOutcome:
        """Adds the file's members (blocking)."""
        return self.cohorts._finish_upload(self)


def _read_csv(
    data: bytes, environment_id: int, members: CohortMembers
) -> tuple[int, list[Rejection], list[uuid.UUID]]:
    """(rows read, rejected rows, the persons the valid rows name, in file order)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"the file is not UTF-8 text (byte {exc.start})", field="csv_chunk") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise InvalidArgument(f"the header row is not CSV: {exc}", field="csv_chunk") from None
    if header is None:
        raise InvalidArgument(
            "the file is empty: it needs a header row naming distinct_id or person_id", field="csv_chunk"
        )
    names = [name.strip().lower() for name in header]
    person_col = names.index("person_id") if "person_id" in names else None
    distinct_col = names.index("distinct_id") if "distinct_id" in names else None
    if person_col is None and distinct_col is None:
        raise InvalidArgument(
            f"the header row must name a distinct_id or a person_id column (got {shown(','.join(header))})",
            field="csv_chunk",
        )
    rows = 0
    rejections: list[Rejection] = []
    # (line, person id) or (line, distinct id) in file order; distinct ids are resolved together.
    named: list[tuple[int, uuid.UUID | str]] = []
    line = 1
    try:
        for record in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in record):
                continue  # blank lines are no rows
            rows += 1
            if rows > MAX_UPLOAD_ROWS:
                raise InvalidArgument(
                    f"the file has more than {MAX_UPLOAD_ROWS} rows: split it into several uploads",
                    field="csv_chunk",
                )
            person = record[person_col].strip() if person_col is not None and person_col < len(record) else ""
            distinct = (
                record[distinct_col].strip()
                if distinct_col is not None and distinct_col < len(record)
                else ""
            )
            if person:
                try:
                    named.append((line, uuid.UUID(person)))
                except ValueError:
                    rejections.append(Rejection(line, f"person_id is not a UUID: {shown(person)}"))
            elif distinct:
                if len(distinct) > MAX_TEXT:
                    rejections.append(Rejection(line, f"distinct_id is longer than {MAX_TEXT} characters"))
                else:
                    named.append((line, distinct))
            else:
                rejections.append(Rejection(line, "the row names no distinct_id or person_id"))
    except csv.Error as exc:
        raise InvalidArgument(f"line {line + 1} is not CSV: {exc}", field="csv_chunk") from None
    distinct_ids = sorted({value for _, value in named if isinstance(value, str)})
    found = members.persons_of(environment_id, distinct_ids) if distinct_ids else {}
    persons = [
        value if isinstance(value, uuid.UUID) else found.get(value) or person_id_for(environment_id, value)
        for _, value in named
    ]
    return rows, rejections, persons


def find_cohort(
    session: Session, environment_id: int, cohort_id: int, *, include_deleted: bool = False
) -> Cohort:
    """The cohort of the environment; NOT_FOUND when it is not there (or deleted, unless asked)."""
    query = select(Cohort).where(Cohort.environment_id == environment_id, Cohort.id == cohort_id)
    if not include_deleted:
        query = query.where(Cohort.deleted.is_(False))
    row = session.scalars(query).first()
    if row is None:
        raise NotFound(
            f"Cohort {shown(cohort_id)} not found.",
            reason="COHORT_NOT_FOUND",
            metadata={"cohort": str(cohort_id)},
        )
    return row


def _uuid(value: object) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
