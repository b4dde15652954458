"""Insight rules: create, read, list, update, soft delete and restore, tags, views and activity."""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
import string
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, and_, delete, exists, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from generated.insights.v1 import insight_pb2, query_pb2
from server.domain import activity, paging
from server.domain.create_requests import CreateRequest, create_request, prior_insight, remember
from server.domain.masks import check_update_mask
from server.domain.paging import Page
from server.domain.readcache import ReadCache
from server.echo import shown
from server.errors import FailedPrecondition, InvalidArgument, NotFound, Violations
from server.principal import EnvironmentInfo, Principal
from server.queries.common.codec import to_reference_json
from server.queries.common.dates import parse_point
from server.queries.common.kinds import insight_type
from storage.db import Database
from storage.models import (
    AlertConfiguration,
    Dashboard,
    DashboardTile,
    Insight,
    InsightViewed,
    Tag,
    TaggedItem,
    User,
    utcnow,
)

SCOPE = "Insight"
TEXT_LIMIT = 400
SEARCH_LIMIT = 200
TAG_LIMIT = 255
BULK_MAX_IDS = 500
BULK_MAX_TAGS = 100
BULK_MAX_PAIRS = 10_000
# Live tiles a dashboard may show: the reference's MAX_INSIGHTS_PER_DASHBOARD (its limit catalog's
# default, analytics.max_insights_per_dashboard = 100).
MAX_TILES = 100
SKIP_REASON = "Not found or no edit access"
# A view closer than this to the recorded one is not written again: reads stay reads.
VIEW_RESOLUTION = dt.timedelta(seconds=60)
# Fields an update may name; every other path of Insight is output-only or unknown.
WRITABLE = (
    "name",
    "derived_name",
    "description",
    "query",
    "order",
    "deleted",
    "dashboards",
    "tags",
    "favorited",
    "saved",
)
# Changing one of these moves last_modified_at/by (the reference's "material" fields).
MATERIAL = frozenset({"name", "description", "query"})
_SHORT_ID_ALPHABET = string.ascii_letters + string.digits



@dataclass(frozen=True)
class DashboardContext:
    """A dashboard's filters and, for an insight on it, its tile's filters, color and layouts."""

    filters: insight_pb2.DashboardFilter
    tile_filters: insight_pb2.DashboardFilter = field(default_factory=insight_pb2.DashboardFilter)
    color: str | None = None
    layouts: dict[str, Any] | None = None

@dataclass(frozen=True)
class Lookup:
    """An insight addressed by numeric id or by short id."""

    id: int | None = None
    short_id: str | None = None

    def where(self) -> Any:
        if self.id is not None:
            return Insight.id == self.id
        if self.short_id:
            return Insight.short_id == self.short_id
        raise InvalidArgument("give the insight's id or short_id", field="id")


@dataclass
class InsightFields:
    """Writable fields of an insight as given by a caller; which ones apply is decided separately."""

    name: str | None = None
    derived_name: str | None = None
    description: str | None = None
    query: query_pb2.QueryNode | None = None
    order: int | None = None
    deleted: bool = False
    dashboards: list[int] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    favorited: bool = False
    saved: bool | None = None


@dataclass(frozen=True)
class UserRef:
    """A user as shown on an insight."""

    id: int
    uuid: str
    distinct_id: str
    first_name: str
    last_name: str
    email: str
    is_email_verified: bool
    role_at_organization: str


@dataclass(frozen=True)
class TileRef:
    """A dashboard tile showing the insight."""

    id: int
    dashboard_id: int
    deleted: bool


@dataclass(frozen=True)
class AlertRef:
    """An alert watching the insight, as listed on it."""

    id: str
    name: str
    enabled: bool
    state: str


@dataclass(frozen=True)
class InsightRecord:
    """An insight's own fields, copied out of its row inside the session (no ORM object leaves
    the domain: a view outlives its session, in the read cache and in the servicers)."""

    id: int
    environment_id: int
    short_id: str
    name: str | None
    derived_name: str | None
    description: str | None
    order: int | None
    deleted: bool
    saved: bool
    favorited: bool
    is_sample: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    last_modified_at: dt.datetime


def insight_record(row: Insight) -> InsightRecord:
    """The record of an insight row (called inside the session that loaded it)."""
    return InsightRecord(
        id=row.id,
        environment_id=row.environment_id,
        short_id=row.short_id,
        name=row.name,
        derived_name=row.derived_name,
        description=row.description,
        order=row.order,
        deleted=row.deleted,
        saved=row.saved,
        favorited=row.favorited,
        is_sample=row.is_sample,
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_modified_at=row.last_modified_at,
    )


@dataclass(frozen=True)
class InsightView:
    """An insight with everything shown alongside it, as seen by one caller."""

    insight: InsightRecord
    query: query_pb2.QueryNode | None
    tags: list[str]
    dashboards: list[int]
    tiles: list[TileRef]
    created_by: UserRef | None
    last_modified_by: UserRef | None
    last_viewed_at: dt.datetime | None
    timezone: str
    alerts: list[AlertRef] = field(default_factory=list)


@dataclass(frozen=True)
class ListFilters:
    """The filters, ordering and page of a list request (empty values mean "no filter")."""

    basic: bool = False
    created_by: Sequence[int] = ()
    created_date_from: str = ""
    created_date_to: str = ""
    dashboards: Sequence[int] = ()
    date_from: str = ""
    date_to: str = ""
    favorited: bool = False
    insight: str = ""
    last_viewed_date_from: str = ""
    last_viewed_date_to: str = ""
    limit: int = 0
    offset: int = 0
    saved: bool | None = None
    search: str = ""
    short_id: str = ""
    tags: Sequence[str] = ()
    user: bool = False
    order: str = ""


@dataclass(frozen=True)
class BulkTagResult:
    """Outcome of a bulk tag update: the changed insights' tags, and the skipped ids."""

    updated: list[tuple[int, list[str]]]
    skipped: list[tuple[int, str]]


def normalize_tags(tags: Iterable[str]) -> list[str]:
    """Trimmed, lowercased, without empties and duplicates, sorted (the reference's tagify)."""
    return sorted({t.strip().lower() for t in tags if t.strip()})


def tag_ids(session: Session, environment_id: int, names: list[str]) -> set[int]:
    """The ids of the environment's tags named `names`, creating those that do not exist yet."""
    existing = {
        t.name: t
        for t in session.scalars(select(Tag).where(Tag.environment_id == environment_id, Tag.name.in_(names)))
    }
    for name in names:
        if name not in existing:
            tag = Tag(environment_id=environment_id, name=name)
            session.add(tag)
            existing[name] = tag
    session.flush()
    return {existing[name].id for name in names}


def query_json(query: query_pb2.QueryNode | None) -> Any:
    """The query as the reference's JSON (the form users know), for activity diffs."""
    return to_reference_json(query) if query is not None else None


class Insights:
    """The insight domain. Every method runs synchronously in one database transaction."""

    def __init__(
        self,
        db: Database,
        clock: Callable[[], dt.datetime] = utcnow,
        validate_query: Callable[[EnvironmentInfo, query_pb2.QueryNode | None, str], None] | None = None,
        read_cache: ReadCache | None = None,
        on_update: Callable[[Session, int | None, EnvironmentInfo, Insight, dt.datetime], None] | None = None,
    ):
        self.db = db
        # Called in the transaction of every update (the alerts of a deleted insight go with it).
        self.on_update = on_update or (lambda session, user_id, env, row, now: None)
        self.clock = clock
        self.cache = read_cache or ReadCache(0)
        # Refuses queries the engine could never run, before anything is saved.
        self.validate_query = validate_query or (lambda env, query, prefix: None)

    # ----------------------------------------------------------------------------- commands

    def create(
        self, principal: Principal, environment_id: int, fields: InsightFields, request_id: str = ""
    ) -> InsightView:
        """A new insight; with a request_id, a retry answers the insight the first call created."""
        env = principal.environment(environment_id)
        tags = self._check_fields(fields, set(WRITABLE))
        request = create_request(request_id, fields)
        self.validate_query(env, fields.query, "insight.")
        try:
            return self._create(principal, env, fields, tags, request)
        except IntegrityError:
            if request is None:
                raise
            # A concurrent twin of this create committed first: its insight is the answer.
            return self._create(principal, env, fields, tags, request)

    def _create(
        self,
        principal: Principal,
        env: EnvironmentInfo,
        fields: InsightFields,
        tags: list[str],
        request: CreateRequest | None,
    ) -> InsightView:
        now = self.clock()
        with self.db.session() as session:
            prior = prior_insight(session, env.id, request) if request else None
            if prior is not None:
                row = find_insight(session, env.id, Lookup(id=prior), include_deleted=True)
                return self._views(session, principal.user_id, env, [row])[0]
            self._check_dashboards(session, env.id, fields.dashboards)
            row = Insight(
                environment_id=env.id,
                short_id=self._new_short_id(session, env.id),
                name=fields.name,
                derived_name=fields.derived_name,
                description=fields.description,
                query=fields.query.SerializeToString(deterministic=True) if fields.query else None,
                insight_type=insight_type(fields.query),
                order=fields.order,
                deleted=fields.deleted,
                saved=True if fields.saved is None else fields.saved,
                favorited=fields.favorited,
                created_at=now,
                created_by_id=principal.user_id,
                updated_at=now,
                last_modified_at=now,
                last_modified_by_id=principal.user_id,
            )
            session.add(row)
            session.flush()
            self._set_tags(session, row, tags)
            self._set_dashboards(session, row, fields.dashboards, now)
            session.add(
                InsightViewed(
                    environment_id=env.id, user_id=principal.user_id, insight_id=row.id, last_viewed_at=now
                )
            )
            if row.name or row.derived_name:
                activity.record_insight(session, env, principal.user_id, "created", row, now)
            if request is not None:
                remember(session, env.id, request, row.id)
            session.flush()
            view = self._views(session, principal.user_id, env, [row])[0]
        self.cache.saw(principal.user_id, view.insight.id, now)
        return view

    def update(
        self,
        principal: Principal,
        environment_id: int,
        lookup: Lookup,
        fields: InsightFields,
        paths: Sequence[str],
    ) -> InsightView:
        env = principal.environment(environment_id)
        check_update_mask(paths, WRITABLE, "Insight")
        chosen = set(paths)
        tags = self._check_fields(fields, chosen)
        if "query" in chosen:
            self.validate_query(env, fields.query, "insight.")
        now = self.clock()
        with self.db.session() as session:
            # Only an update that restores may address a deleted insight.
            restoring = "deleted" in chosen and not fields.deleted
            row = find_insight(session, env.id, lookup, include_deleted=restoring)
            if "dashboards" in chosen:
                self._check_dashboards(session, env.id, fields.dashboards)
            before = self._snapshot(session, row)
            if "name" in chosen:
                row.name = fields.name
            if "derived_name" in chosen:
                row.derived_name = fields.derived_name
            if "description" in chosen:
                row.description = fields.description
            if "query" in chosen:
                row.query = fields.query.SerializeToString(deterministic=True) if fields.query else None
                row.insight_type = insight_type(fields.query)
            if "order" in chosen:
                row.order = fields.order
            if "favorited" in chosen:
                row.favorited = fields.favorited
            # As the reference: an update that does not name `saved` saves the insight.
            row.saved = fields.saved if "saved" in chosen and fields.saved is not None else True
            if "tags" in chosen:
                self._set_tags(session, row, tags)
            if "dashboards" in chosen:
                self._set_dashboards(session, row, fields.dashboards, now)
            was_deleted = row.deleted
            if "deleted" in chosen:
                row.deleted = fields.deleted
                if fields.deleted and not was_deleted:
                    self._soft_delete_tiles(session, row.id)
            after = self._snapshot(session, row)
            changes = activity.diff(before, after, SCOPE)
            if any(c["field"] in MATERIAL for c in changes):
                row.last_modified_at = now
                row.last_modified_by_id = principal.user_id
            row.updated_at = now
            self._log_update(session, principal, env, row, was_deleted, changes, now)
            self.on_update(session, principal.user_id, env, row, now)
            session.flush()
            view = self._views(session, principal.user_id, env, [row])[0]
        self.cache.forget(env.id)  # after the commit, so no reader re-caches the old state
        return view

    def delete(self, principal: Principal, environment_id: int, lookup: Lookup) -> InsightView:
        return self.update(principal, environment_id, lookup, InsightFields(deleted=True), ["deleted"])

    def bulk_update_tags(
        self, principal: Principal, environment_id: int, ids: Sequence[int], action: str, tags: Sequence[str]
    ) -> BulkTagResult:
        env = principal.environment(environment_id)
        violations = Violations()
        if not 1 <= len(ids) <= BULK_MAX_IDS:
            violations.add("ids", f"ids must hold 1 to {BULK_MAX_IDS} insight ids (got {len(ids)})")
        if action not in ("add", "remove", "set"):
            violations.add("action", "action must be add, remove or set")
        if len(tags) > BULK_MAX_TAGS:
            violations.add("tags", f"at most {BULK_MAX_TAGS} tags (got {len(tags)})")
        for i, tag in enumerate(tags):
            if len(tag) > TAG_LIMIT:
                violations.add(f"tags[{i}]", f"a tag is at most {TAG_LIMIT} characters (got {len(tag)})")
        wanted = normalize_tags(tags)
        if action in ("add", "remove") and not wanted:
            violations.add("tags", f"{action} needs at least one tag")
        if len(set(ids)) * len(wanted) > BULK_MAX_PAIRS:
            violations.add("tags", f"ids x tags must be at most {BULK_MAX_PAIRS}")
        violations.raise_if_any()
        now = self.clock()
        updated: list[tuple[int, list[str]]] = []
        skipped: list[tuple[int, str]] = []
        with self.db.session() as session:
            rows = {
                r.id: r
                for r in session.scalars(
                    select(Insight).where(
                        Insight.environment_id == env.id, Insight.id.in_(set(ids)), Insight.deleted.is_(False)
                    )
                )
            }
            current = self._tags_of(session, list(rows))
            seen: set[int] = set()
            for insight_id in ids:
                if insight_id in seen:
                    continue
                seen.add(insight_id)
                row = rows.get(insight_id)
                if row is None:
                    skipped.append((insight_id, SKIP_REASON))
                    continue
                old = current.get(insight_id, [])
                if action == "add":
                    new = normalize_tags([*old, *wanted])
                elif action == "remove":
                    new = [t for t in old if t not in set(wanted)]
                else:
                    new = wanted
                if new != old:
                    self._set_tags(session, row, new)
                    row.updated_at = now
                    changes = activity.diff({"tags": old}, {"tags": new}, SCOPE)
                    activity.record_insight(session, env, principal.user_id, "updated", row, now, changes)
                updated.append((insight_id, new))
        self.cache.forget(env.id)
        return BulkTagResult(updated, skipped)

    # ------------------------------------------------------------------------------ queries

    def get(self, principal: Principal, environment_id: int, lookup: Lookup) -> InsightView:
        """One live insight; records the caller's view."""
        env = principal.environment(environment_id)
        now = self.clock()
        generation = self.cache.generation(env.id)
        try:
            view = self._get(principal, env, lookup, now)
        except IntegrityError:
            # A concurrent first view by the same user (a read or a mark) inserted the record: this
            # pass finds it.
            view = self._get(principal, env, lookup, now)
        self.cache.put(view, generation)
        self.cache.saw(principal.user_id, view.insight.id, view.last_viewed_at)
        return view

    def _get(self, principal: Principal, env: EnvironmentInfo, lookup: Lookup, now: dt.datetime) -> InsightView:
        with self.db.session() as session:
            row = find_insight(session, env.id, lookup)
            self._record_view(session, env.id, principal.user_id, row.id, now)
            return self._views(session, principal.user_id, env, [row])[0]

    def dashboard_context(
        self, principal: Principal, environment_id: int, dashboard_id: int, lookup: Lookup
    ) -> DashboardContext:
        """What a read of the insight `lookup` names from a live dashboard applies and shows: the
        dashboard's filters and, when the insight is on it, its tile's filters, color and layouts.
        NOT_FOUND unless the dashboard is live in the environment (the insight is looked up by the
        read itself)."""
        filters = self.check_dashboard(principal, environment_id, dashboard_id)
        env = principal.environment(environment_id)
        with self.db.session() as session:
            tile = session.execute(
                select(DashboardTile.filters, DashboardTile.color, DashboardTile.layouts)
                .join(Insight, Insight.id == DashboardTile.insight_id)
                .where(
                    DashboardTile.dashboard_id == dashboard_id,
                    DashboardTile.deleted.is_(False),
                    Insight.environment_id == env.id,
                    Insight.deleted.is_(False),
                    lookup.where(),
                )
            ).first()
        if tile is None:
            return DashboardContext(filters)
        tile_filters = insight_pb2.DashboardFilter()
        if tile.filters:
            tile_filters.ParseFromString(tile.filters)
        return DashboardContext(filters, tile_filters, tile.color, tile.layouts)

    def check_dashboard(
        self, principal: Principal, environment_id: int, dashboard_id: int
    ) -> insight_pb2.DashboardFilter:
        """The stored filters of a live dashboard of the environment (what a read in its context
        applies; empty when it holds none); NOT_FOUND unless the dashboard is live there."""
        env = principal.environment(environment_id)
        with self.db.session() as session:
            found = session.execute(
                select(Dashboard.id, Dashboard.filters).where(
                    Dashboard.environment_id == env.id, Dashboard.id == dashboard_id, Dashboard.deleted.is_(False)
                )
            ).first()
        if found is None:
            raise NotFound(
                f"Dashboard {dashboard_id} not found.",
                reason="DASHBOARD_NOT_FOUND",
                metadata={"dashboard": str(dashboard_id)},
            )
        filters = insight_pb2.DashboardFilter()
        if found.filters:
            filters.ParseFromString(found.filters)
        return filters

    def get_shared(self, env: EnvironmentInfo, insight_id: int) -> InsightView:
        """A live insight as an anonymous viewer of its public link sees it: no user, no view recorded."""
        with self.db.session() as session:
            row = find_insight(session, env.id, Lookup(id=insight_id))
            return self._views(session, None, env, [row])[0]

    def get_cached(self, principal: Principal, environment_id: int, lookup: Lookup) -> InsightView | None:
        """The insight from memory when a recent read has it and the caller's view needs no write.

        Never blocks, so the servicer tries it on the event loop before falling back to get().
        """
        env = principal.environment(environment_id)
        key = lookup.id if lookup.id is not None else lookup.short_id
        if key is None:
            return None
        view = self.cache.get(env.id, key)
        if view is None:
            return None
        last = self.cache.last_view(principal.user_id, view.insight.id)
        if last is None or self.clock() - last >= VIEW_RESOLUTION:
            return None
        return dataclasses.replace(view, last_viewed_at=last)

    def list_insights(self, principal: Principal, environment_id: int, filters: ListFilters) -> Page[InsightView]:
        env = principal.environment(environment_id)
        violations = Violations()
        paging.check_search(violations, filters.search, SEARCH_LIMIT)
        limit = paging.window(violations, filters.limit, filters.offset)
        now = self.clock()
        where: list[Any] = [Insight.environment_id == env.id, Insight.deleted.is_(False)]
        for name, column in (
            ("created_date_from", Insight.created_at),
            ("date_from", Insight.last_modified_at),
        ):
            moment = self._filter_date(getattr(filters, name), name, env, now, violations)
            if moment is not None:
                where.append(column >= moment)
        for name, column in (("created_date_to", Insight.created_at), ("date_to", Insight.last_modified_at)):
            moment = self._filter_date(getattr(filters, name), name, env, now, violations)
            if moment is not None:
                where.append(column < moment)
        viewed_from = self._filter_date(
            filters.last_viewed_date_from, "last_viewed_date_from", env, now, violations
        )
        viewed_to = self._filter_date(
            filters.last_viewed_date_to, "last_viewed_date_to", env, now, violations
        )
        order_by = self._ordering(filters.order, violations)
        violations.raise_if_any()

        if filters.created_by:
            where.append(Insight.created_by_id.in_(list(filters.created_by)))
        if filters.user:
            where.append(Insight.created_by_id == principal.user_id)
        if filters.favorited:
            where.append(Insight.favorited.is_(True))
        if filters.short_id:
            where.append(Insight.short_id == filters.short_id)
        if filters.insight:
            where.append(Insight.insight_type == filters.insight)
        for dashboard_id in set(filters.dashboards):
            where.append(
                exists().where(
                    DashboardTile.insight_id == Insight.id,
                    DashboardTile.dashboard_id == dashboard_id,
                    DashboardTile.deleted.is_(False),
                )
            )
        if filters.tags:
            where.append(
                exists().where(
                    TaggedItem.insight_id == Insight.id,
                    Tag.id == TaggedItem.tag_id,
                    Tag.name.in_(normalize_tags(filters.tags)),
                )
            )
        if filters.saved is not None:
            on_dashboard = exists().where(
                DashboardTile.insight_id == Insight.id,
                DashboardTile.deleted.is_(False),
                Dashboard.id == DashboardTile.dashboard_id,
                Dashboard.deleted.is_(False),
            )
            where.append(
                or_(Insight.saved.is_(True), on_dashboard) if filters.saved else Insight.saved.is_(False)
            )
        if filters.search:
            pattern = paging.contains_pattern(filters.search)
            where.append(
                or_(
                    func.lower(Insight.name).like(pattern, escape="\\"),
                    func.lower(Insight.derived_name).like(pattern, escape="\\"),
                    func.lower(Insight.description).like(pattern, escape="\\"),
                    exists().where(
                        TaggedItem.insight_id == Insight.id,
                        Tag.id == TaggedItem.tag_id,
                        Tag.name.like(pattern, escape="\\"),
                    ),
                )
            )
        view = (
            select(InsightViewed.insight_id, InsightViewed.last_viewed_at)
            .where(InsightViewed.user_id == principal.user_id)
            .subquery()
        )
        query: Select[Any] = (
            select(Insight).outerjoin(view, view.c.insight_id == Insight.id).where(and_(*where))
        )
        if viewed_from is not None:
            query = query.where(view.c.last_viewed_at >= viewed_from)
        if viewed_to is not None:
            query = query.where(view.c.last_viewed_at < viewed_to)
        with self.db.session() as session:
            count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = list(
                session.scalars(
                    query.order_by(*order_by(view.c.last_viewed_at)).offset(filters.offset).limit(limit)
                )
            )
            return Page(
                self._views(session, principal.user_id, env, rows), count, limit, filters.offset
            )

    def activity(
        self, principal: Principal, environment_id: int, lookup: Lookup | None, page: int, limit: int
    ) -> activity.EntryPage:
        env = principal.environment(environment_id)
        item = None
        if lookup is not None:
            item = lambda session: find_insight(session, env.id, lookup, include_deleted=True).id  # noqa: E731 (one expression, run in the listing's session)
        return activity.listing(self.db, env.id, SCOPE, page, limit, item)

    # ------------------------------------------------------------------------------ helpers

    def _check_fields(self, fields: InsightFields, chosen: set[str]) -> list[str]:
        violations = Violations()
        for name in ("name", "derived_name", "description"):
            value = getattr(fields, name)
            if name in chosen and value is not None and len(value) > TEXT_LIMIT:
                violations.add(f"insight.{name}", f"insight.{name} must be at most {TEXT_LIMIT} characters")
        if "tags" in chosen:
            for i, tag in enumerate(fields.tags):
                if len(tag.strip()) > TAG_LIMIT:
                    violations.add(
                        f"insight.tags[{i}]", f"insight.tags[{i}] is longer than {TAG_LIMIT} characters"
                    )
        violations.raise_if_any()
        return normalize_tags(fields.tags)

    def _check_dashboards(self, session: Session, environment_id: int, ids: Sequence[int]) -> None:
        if not ids:
            return
        found = set(
            session.scalars(
                select(Dashboard.id).where(
                    Dashboard.environment_id == environment_id,
                    Dashboard.id.in_(set(ids)),
                    Dashboard.deleted.is_(False),
                )
            )
        )
        missing = sorted(set(ids) - found)
        if missing:
            raise InvalidArgument(
                f"Dashboard not found: {missing[0]}", field="insight.dashboards", reason="DASHBOARD_NOT_FOUND"
            )

    def _new_short_id(self, session: Session, environment_id: int) -> str:
        while True:
            candidate = "".join(secrets.choice(_SHORT_ID_ALPHABET) for _ in range(8))
            taken = session.scalar(
                select(Insight.id).where(
                    Insight.environment_id == environment_id, Insight.short_id == candidate
                )
            )
            if taken is None:
                return candidate

    def _tags_of(self, session: Session, insight_ids: list[int]) -> dict[int, list[str]]:
        tags: dict[int, list[str]] = {}
        if not insight_ids:
            return tags
        for insight_id, name in session.execute(
            select(TaggedItem.insight_id, Tag.name)
            .join(Tag, Tag.id == TaggedItem.tag_id)
            .where(TaggedItem.insight_id.in_(insight_ids))
            .order_by(Tag.name)
        ):
            tags.setdefault(insight_id, []).append(name)
        return tags

    def _set_tags(self, session: Session, row: Insight, tags: list[str]) -> None:
        wanted_ids = tag_ids(session, row.environment_id, tags)
        have = set(session.scalars(select(TaggedItem.tag_id).where(TaggedItem.insight_id == row.id)))
        if have - wanted_ids:
            session.execute(
                delete(TaggedItem).where(
                    TaggedItem.insight_id == row.id, TaggedItem.tag_id.in_(have - wanted_ids)
                )
            )
        for tag_id in sorted(wanted_ids - have):
            session.add(TaggedItem(tag_id=tag_id, insight_id=row.id))

    def _set_dashboards(
        self, session: Session, row: Insight, dashboard_ids: Sequence[int], now: dt.datetime
    ) -> None:
        # Tiles on deleted dashboards are not shown, so not listing them is no removal: they stay
        # for the dashboard's restore.
        tiles = {
            t.dashboard_id: t
            for t in session.scalars(
                select(DashboardTile)
                .join(Dashboard, Dashboard.id == DashboardTile.dashboard_id)
                .where(DashboardTile.insight_id == row.id, Dashboard.deleted.is_(False))
            )
        }
        wanted = set(dashboard_ids)
        for dashboard_id, tile in tiles.items():
            if tile.deleted and dashboard_id in wanted:
                check_tile_room(session, dashboard_id, "insight.dashboards")
                tile.position = end_of_layout(session, dashboard_id)
            tile.deleted = dashboard_id not in wanted
        for dashboard_id in sorted(wanted - set(tiles)):
            check_tile_room(session, dashboard_id, "insight.dashboards")
            session.add(
                DashboardTile(
                    dashboard_id=dashboard_id,
                    insight_id=row.id,
                    position=end_of_layout(session, dashboard_id),
                    created_at=now,
                )
            )

    def _soft_delete_tiles(self, session: Session, insight_id: int) -> None:
        for tile in session.scalars(select(DashboardTile).where(DashboardTile.insight_id == insight_id)):
            tile.deleted = True

    def _record_view(
        self, session: Session, environment_id: int, user_id: int, insight_id: int, now: dt.datetime
    ) -> None:
        view = session.scalars(
            select(InsightViewed).where(
                InsightViewed.user_id == user_id, InsightViewed.insight_id == insight_id
            )
        ).first()
        if view is None:
            session.add(
                InsightViewed(
                    environment_id=environment_id, user_id=user_id, insight_id=insight_id, last_viewed_at=now
                )
            )
        elif now - view.last_viewed_at >= VIEW_RESOLUTION:
            view.last_viewed_at = now

    def _snapshot(self, session: Session, row: Insight) -> dict[str, Any]:
        """The diffed fields of an insight (the reference's excluded fields left out)."""
        session.flush()
        dashboards = session.execute(
            select(Dashboard.id, Dashboard.name)
            .join(DashboardTile, DashboardTile.dashboard_id == Dashboard.id)
            .where(DashboardTile.insight_id == row.id, DashboardTile.deleted.is_(False), Dashboard.deleted.is_(False))
            .order_by(Dashboard.id)
        ).all()
        return {
            "name": row.name,
            "derived_name": row.derived_name,
            "description": row.description,
            "query": query_json(parse_query(row.query)),
            "deleted": row.deleted,
            "favorited": row.favorited,
            "tags": self._tags_of(session, [row.id]).get(row.id, []),
            "dashboards": [{"id": i, "name": n} for i, n in dashboards],
        }

    def _log_update(
        self,
        session: Session,
        principal: Principal,
        env: EnvironmentInfo,
        row: Insight,
        was_deleted: bool,
        changes: list[dict[str, Any]],
        now: dt.datetime,
    ) -> None:
        if row.deleted and not was_deleted:
            verb = "deleted"
        elif was_deleted and not row.deleted:
            verb = "restored"
        elif changes:
            verb = "updated"
        else:
            return
        activity.record_insight(session, env, principal.user_id, verb, row, now, changes)

    def _filter_date(
        self, value: str, name: str, env: EnvironmentInfo, now: dt.datetime, violations: Violations
    ) -> dt.datetime | None:
        if not value:
            return None
        try:
            return parse_point(value, env.timezone, now)
        except ValueError as exc:
            violations.add(name, str(exc))
            return None

    def _ordering(self, order: str, violations: Violations) -> Callable[[Any], list[Any]]:
        columns = {
            "last_modified_at": Insight.last_modified_at,
            "created_at": Insight.created_at,
            "name": Insight.name,
            "order": Insight.order,
        }
        key = order.lstrip("-")
        descending = order.startswith("-")
        if order and key not in (*columns, "last_viewed_at"):
            violations.add("order", f"cannot order by {order!r}")

        def build(viewed: Any) -> list[Any]:
            if not order or key == "order":
                return [
                    Insight.order.is_(None),
                    Insight.order.desc() if descending else Insight.order,
                    Insight.last_modified_at.desc(),
                    Insight.id.desc(),
                ]
            column = viewed if key == "last_viewed_at" else columns[key]
            direction = column.desc() if descending else column.asc()
            # Nulls last in both directions, on both dialects.
            return [column.is_(None), direction, Insight.id.desc()]

        return build

    def views(
        self, session: Session, user_id: int | None, env: EnvironmentInfo, rows: list[Insight]
    ) -> list[InsightView]:
        """The views of `rows` as `user_id` sees them (for the domains built over this one)."""
        return self._views(session, user_id, env, rows)

    def _views(
        self, session: Session, user_id: int | None, env: EnvironmentInfo, rows: list[Insight]
    ) -> list[InsightView]:
        """Loads what is shown beside each insight with one query per relation, not per row."""
        ids = [r.id for r in rows]
        if not ids:
            return []
        tags = self._tags_of(session, ids)
        tiles: dict[int, list[TileRef]] = {}
        # A deleted dashboard's tiles stay (for its restore) but are not shown, as the reference hides them.
        for tile in session.scalars(
            select(DashboardTile)
            .join(Dashboard, Dashboard.id == DashboardTile.dashboard_id)
            .where(DashboardTile.insight_id.in_(ids), Dashboard.deleted.is_(False))
            .order_by(DashboardTile.id)
        ):
            tiles.setdefault(tile.insight_id, []).append(TileRef(tile.id, tile.dashboard_id, tile.deleted))
        user_ids = {u for r in rows for u in (r.created_by_id, r.last_modified_by_id) if u is not None}
        users = {u.id: user_ref(u) for u in session.scalars(select(User).where(User.id.in_(user_ids)))}
        viewed: dict[int, dt.datetime] = {
            insight_id: at
            for insight_id, at in session.execute(
                select(InsightViewed.insight_id, InsightViewed.last_viewed_at).where(
                    InsightViewed.user_id == user_id, InsightViewed.insight_id.in_(ids)
                )
            )
        }
        alerts: dict[int, list[AlertRef]] = {}
        for alert in session.scalars(
            select(AlertConfiguration)
            .where(AlertConfiguration.insight_id.in_(ids), AlertConfiguration.deleted.is_(False))
            .order_by(AlertConfiguration.created_at, AlertConfiguration.id)
        ):
            alerts.setdefault(alert.insight_id, []).append(AlertRef(alert.id, alert.name, alert.enabled, alert.state))
        return [
            InsightView(
                insight=insight_record(r),
                query=parse_query(r.query),
                tags=tags.get(r.id, []),
                dashboards=[t.dashboard_id for t in tiles.get(r.id, []) if not t.deleted],
                tiles=tiles.get(r.id, []),
                created_by=users.get(r.created_by_id) if r.created_by_id else None,
                last_modified_by=users.get(r.last_modified_by_id) if r.last_modified_by_id else None,
                last_viewed_at=viewed.get(r.id),
                timezone=env.timezone,
                alerts=alerts.get(r.id, []),
            )
            for r in rows
        ]


def check_tile_room(session: Session, dashboard_id: int, field: str) -> None:
    """FAILED_PRECONDITION (reason DASHBOARD_TILE_LIMIT, naming `field`) when the dashboard already
    shows MAX_TILES live insights: one more tile would exceed the reference's limit."""
    session.flush()
    shown = session.scalar(
        select(func.count())
        .select_from(DashboardTile)
        .join(Insight, Insight.id == DashboardTile.insight_id)
        .where(
            DashboardTile.dashboard_id == dashboard_id,
            DashboardTile.deleted.is_(False),
            Insight.deleted.is_(False),
        )
    )
    if (shown or 0) >= MAX_TILES:
        raise FailedPrecondition(
            f"{field}: dashboard {dashboard_id} already shows {MAX_TILES} insights, the most a dashboard "
            "can: remove a tile first",
            reason="DASHBOARD_TILE_LIMIT",
            metadata={"field": field, "dashboard": str(dashboard_id), "limit": str(MAX_TILES)},
        )


def end_of_layout(session: Session, dashboard_id: int) -> int:
    """The position after the last live tile of a dashboard (a tile placed there goes last)."""
    session.flush()
    end = session.scalar(
        select(func.max(DashboardTile.position)).where(
            DashboardTile.dashboard_id == dashboard_id, DashboardTile.deleted.is_(False)
        )
    )
    return 0 if end is None else end + 1


def find_insight(session: Session, environment_id: int, lookup: Lookup, *, include_deleted: bool = False) -> Insight:
    """The insight `lookup` names in the environment; NOT_FOUND when it is not there (or deleted,
    unless `include_deleted`). Every domain reaches an insight by this one rule."""
    query = select(Insight).where(Insight.environment_id == environment_id, lookup.where())
    if not include_deleted:
        query = query.where(Insight.deleted.is_(False))
    row = session.scalars(query).first()
    if row is None:
        ident = shown(lookup.id if lookup.id is not None else lookup.short_id)
        raise NotFound(f"Insight {ident} not found.", reason="INSIGHT_NOT_FOUND", metadata={"insight": str(ident)})
    return row


def parse_query(blob: bytes | None) -> query_pb2.QueryNode | None:
    """The QueryNode stored on an insight row (serialised protobuf), or None."""
    if blob is None:
        return None
    node = query_pb2.QueryNode()
    node.ParseFromString(blob)
    return node


def user_ref(user: User) -> UserRef:
    """A user as shown on resources (insights, alerts)."""
    return UserRef(
        user.id,
        user.uuid,
        user.distinct_id,
        user.first_name,
        user.last_name,
        user.email,
        user.is_email_verified,
        user.role_at_organization,
    )
