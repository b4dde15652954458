"""Dashboard rules: create, read, list, update, soft delete and restore, tiles and their order, filters, activity.

A dashboard's filters are checked when saved, as a read's `filters_override` is, and are what a
read of one of its insights `from_dashboard` applies (server.domain.readcontext): the effective
query keys the result cache, so each dashboard's context has its own cached results.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from generated.insights.v1 import insight_pb2
from server.domain import activity, paging
from server.domain.insights import UserRef, check_tile_room, end_of_layout, normalize_tags, user_ref
from server.domain.masks import check_update_mask
from server.domain.paging import Page
from server.domain.taglinks import linked_tags, set_linked_tags
from server.errors import InvalidArgument, NotFound, Violations
from server.principal import EnvironmentInfo, Principal
from server.queries import overrides
from server.queries.common.codec import to_reference_json
from storage.db import Database
from storage.models import Dashboard, DashboardTag, DashboardTile, Insight, User, utcnow

SCOPE = "Dashboard"
NAME_LIMIT = 400
DESCRIPTION_LIMIT = 1000
SEARCH_LIMIT = 200
TAG_LIMIT = 255
MAX_TAGS = 100
# Fields an update may name; every other path of Dashboard is output-only or unknown.
WRITABLE = ("name", "description", "tags", "pinned", "filters", "deleted")
# Fields UpdateDashboardTile may name.
TILE_WRITABLE = ("color", "layouts", "filters")
COLOR_LIMIT = 400
# A tile's layouts are the client's to keep, not ours to read: bounded so a row stays small.
LAYOUTS_LIMIT = 16 * 1024


@dataclass
class DashboardFields:
    """Writable fields of a dashboard as given by a caller; which ones apply is decided separately."""

    name: str = ""
    description: str = ""
    tags: list[str] = field(default_factory=list)
    pinned: bool = False
    filters: insight_pb2.DashboardFilter = field(default_factory=insight_pb2.DashboardFilter)
    deleted: bool = False


@dataclass(frozen=True)
class TileView:
    """A live tile of a dashboard, with the insight it shows."""

    id: int
    insight_id: int
    insight_short_id: str
    insight_name: str
    position: int
    color: str | None = None
    layouts: dict[str, Any] | None = None
    filters: insight_pb2.DashboardFilter = field(default_factory=insight_pb2.DashboardFilter)


@dataclass
class TileFields:
    """Writable fields of a tile as given by a caller (None: unset, so a named field is cleared)."""

    color: str | None = None
    layouts: dict[str, Any] | None = None
    filters: insight_pb2.DashboardFilter = field(default_factory=insight_pb2.DashboardFilter)


@dataclass(frozen=True)
class DashboardView:
    """A dashboard with its tags, tiles and creator, as shown to callers (no ORM object leaves the domain)."""

    id: int
    environment_id: int
    name: str
    description: str
    tags: tuple[str, ...]
    pinned: bool
    filters: insight_pb2.DashboardFilter
    tiles: tuple[TileView, ...]
    deleted: bool
    created_at: dt.datetime
    created_by: UserRef | None
    updated_at: dt.datetime


def parse_filters(blob: bytes | None) -> insight_pb2.DashboardFilter:
    """The filters stored on a dashboard row (empty when it holds none)."""
    filters = insight_pb2.DashboardFilter()
    if blob:
        filters.ParseFromString(blob)
    return filters


def filters_json(filters: insight_pb2.DashboardFilter) -> dict[str, Any]:
    """The filters as the reference's dashboard JSON (snake_case keys, as its `filters` object has;
    the parts are the reference's query JSON), for activity diffs."""
    shown: dict[str, Any] = {}
    if filters.HasField("date_from"):
        shown["date_from"] = filters.date_from
    if filters.HasField("date_to"):
        shown["date_to"] = filters.date_to
    if filters.properties:
        shown["properties"] = [to_reference_json(p) for p in filters.properties]
    if filters.HasField("breakdown_filter"):
        shown["breakdown_filter"] = to_reference_json(filters.breakdown_filter)
    return shown


def find_dashboard(
    session: Session, environment_id: int, dashboard_id: int, *, include_deleted: bool = False
) -> Dashboard:
    """The dashboard in the environment; NOT_FOUND when it is not there (or deleted, unless
    `include_deleted`). Every reader reaches a dashboard by this one rule."""
    query = select(Dashboard).where(Dashboard.environment_id == environment_id, Dashboard.id == dashboard_id)
    if not include_deleted:
        query = query.where(Dashboard.deleted.is_(False))
    row = session.scalars(query).first()
    if row is None:
        raise NotFound(
            f"Dashboard {dashboard_id} not found.",
            reason="DASHBOARD_NOT_FOUND",
            metadata={"dashboard": str(dashboard_id)},
        )
    return row


class Dashboards:
    """The dashboard domain. Every method runs synchronously in one database transaction."""

    def __init__(
        self,
        db: Database,
        clock: Callable[[], dt.datetime] = utcnow,
        changed: Callable[[int], None] | None = None,
    ):
        self.db = db
        self.clock = clock
        # Called with the environment id after every committed write: insights show their
        # dashboards, so reads of them cached in memory must be forgotten.
        self.changed = changed or (lambda environment_id: None)

    # ----------------------------------------------------------------------------- commands

    def create(self, principal: Principal, environment_id: int, fields: DashboardFields) -> DashboardView:
        env = principal.environment(environment_id)
        tags = self._check_fields(fields, set(WRITABLE) - {"deleted"})
        now = self.clock()
        with self.db.session() as session:
            row = Dashboard(
                environment_id=env.id,
                name=fields.name,
                description=fields.description,
                pinned=fields.pinned,
                filters=_stored(fields.filters),
                deleted=False,
                created_at=now,
                created_by_id=principal.user_id,
                updated_at=now,
            )
            session.add(row)
            session.flush()
            self._set_tags(session, row, tags)
            activity.record_item(session, env, principal.user_id, SCOPE, row, "created", None, now)
            view = self._views(session, [row])[0]
        self.changed(env.id)
        return view

    def get(self, principal: Principal, environment_id: int, dashboard_id: int) -> DashboardView:
        """One live dashboard with its live tiles."""
        env = principal.environment(environment_id)
        with self.db.session() as session:
            return self._views(session, [find_dashboard(session, env.id, dashboard_id)])[0]

    def list_dashboards(
        self, principal: Principal, environment_id: int, search: str, pinned: bool, limit: int, offset: int
    ) -> Page[DashboardView]:
        """The environment's live dashboards whose name contains `search` (any case), newest first."""
        env = principal.environment(environment_id)
        limit = paging.search_window(search, limit, offset, SEARCH_LIMIT)
        where: list[Any] = [Dashboard.environment_id == env.id, Dashboard.deleted.is_(False)]
        if search:
            where.append(func.lower(Dashboard.name).like(paging.contains_pattern(search), escape="\\"))
        if pinned:
            where.append(Dashboard.pinned.is_(True))
        with self.db.session() as session:
            count = session.scalar(select(func.count()).select_from(Dashboard).where(*where)) or 0
            page = select(Dashboard).where(*where).order_by(Dashboard.id.desc()).offset(offset).limit(limit)
            return Page(self._views(session, list(session.scalars(page))), count, limit, offset)

    def update(
        self,
        principal: Principal,
        environment_id: int,
        dashboard_id: int,
        fields: DashboardFields,
        paths: Sequence[str],
    ) -> DashboardView:
        env = principal.environment(environment_id)
        chosen = check_update_mask(paths, WRITABLE, "Dashboard")
        tags = self._check_fields(fields, chosen)
        now = self.clock()
        with self.db.session() as session:
            # Only an update that restores may address a deleted dashboard.
            restoring = "deleted" in chosen and not fields.deleted
            row = find_dashboard(session, env.id, dashboard_id, include_deleted=restoring)
            before = self._snapshot(session, row)
            was_deleted = row.deleted
            if "name" in chosen:
                row.name = fields.name
            if "description" in chosen:
                row.description = fields.description
            if "tags" in chosen:
                self._set_tags(session, row, tags)
            if "pinned" in chosen:
                row.pinned = fields.pinned
            if "filters" in chosen:
                row.filters = _stored(fields.filters)
            if "deleted" in chosen:
                row.deleted = fields.deleted
            changes = activity.diff(before, self._snapshot(session, row), SCOPE)
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
            view = self._views(session, [row])[0]
        self.changed(env.id)
        return view

    def delete(self, principal: Principal, environment_id: int, dashboard_id: int) -> DashboardView:
        """Soft-deletes a live dashboard (the row, its tiles and history stay; an update restores it)."""
        return self.update(
            principal, environment_id, dashboard_id, DashboardFields(deleted=True), ["deleted"]
        )

    def add_tile(
        self, principal: Principal, environment_id: int, dashboard_id: int, insight_id: int
    ) -> DashboardView:
        """Places a live insight of the environment at the end of the dashboard's layout (a removed
        tile of it comes back; an insight already shown keeps its tile)."""
        try:
            return self._add_tile(principal, environment_id, dashboard_id, insight_id)
        except IntegrityError:
            # A concurrent add of the same insight committed its tile first (one tile per pair):
            # that tile is the answer, as for an insight already shown.
            return self._add_tile(principal, environment_id, dashboard_id, insight_id)

    def _add_tile(
        self, principal: Principal, environment_id: int, dashboard_id: int, insight_id: int
    ) -> DashboardView:
        env = principal.environment(environment_id)
        now = self.clock()
        with self.db.session() as session:
            row = find_dashboard(session, env.id, dashboard_id)
            insight = session.scalar(
                select(Insight.id).where(
                    Insight.environment_id == env.id, Insight.id == insight_id, Insight.deleted.is_(False)
                )
            )
            if insight is None:
                raise InvalidArgument(
                    f"insight_id: insight {insight_id} not found",
                    field="insight_id",
                    reason="INSIGHT_NOT_FOUND",
                )
            tile = session.scalars(
                select(DashboardTile).where(
                    DashboardTile.dashboard_id == row.id, DashboardTile.insight_id == insight_id
                )
            ).first()
            if tile is None or tile.deleted:
                check_tile_room(session, row.id, "insight_id")
                before = self._snapshot(session, row)
                position = end_of_layout(session, row.id)
                if tile is None:
                    session.add(
                        DashboardTile(
                            dashboard_id=row.id, insight_id=insight_id, position=position, created_at=now
                        )
                    )
                else:
                    tile.deleted, tile.position = False, position
                self._log_tiles(session, env, principal, row, before, now)
            view = self._views(session, [row])[0]
        self.changed(env.id)
        return view

    def remove_tile(
        self, principal: Principal, environment_id: int, dashboard_id: int, tile_id: int
    ) -> DashboardView:
        """Soft-deletes one live tile of a live dashboard."""
        env = principal.environment(environment_id)
        now = self.clock()
        with self.db.session() as session:
            row = find_dashboard(session, env.id, dashboard_id)
            tile = self._live_tile(session, row.id, dashboard_id, tile_id)
            before = self._snapshot(session, row)
            tile.deleted = True
            self._log_tiles(session, env, principal, row, before, now)
            view = self._views(session, [row])[0]
        self.changed(env.id)
        return view

    def update_tile(
        self,
        principal: Principal,
        environment_id: int,
        dashboard_id: int,
        tile_id: int,
        fields: TileFields,
        paths: Sequence[str],
    ) -> DashboardView:
        """Sets a live tile's color, layouts or filters (those `paths` name; unset ones are cleared)."""
        env = principal.environment(environment_id)
        chosen = check_update_mask(paths, TILE_WRITABLE, "DashboardItem")
        self._check_tile_fields(fields, chosen)
        now = self.clock()
        with self.db.session() as session:
            row = find_dashboard(session, env.id, dashboard_id)
            tile = self._live_tile(session, row.id, dashboard_id, tile_id)
            before = self._snapshot(session, row)
            if "color" in chosen:
                tile.color = fields.color.strip() if fields.color and fields.color.strip() else None
            if "layouts" in chosen:
                tile.layouts = fields.layouts or None
            if "filters" in chosen:
                tile.filters = _stored(fields.filters)
            self._log_tiles(session, env, principal, row, before, now)
            view = self._views(session, [row])[0]
        self.changed(env.id)
        return view

    def reorder_tiles(
        self, principal: Principal, environment_id: int, dashboard_id: int, tile_ids: Sequence[int]
    ) -> DashboardView:
        """Sets the layout order: `tile_ids` must name every live tile of the dashboard once."""
        env = principal.environment(environment_id)
        now = self.clock()
        with self.db.session() as session:
            row = find_dashboard(session, env.id, dashboard_id)
            tiles = {t.id: t for t in self._live_tiles(session, row.id)}
            if len(set(tile_ids)) != len(tile_ids) or set(tile_ids) != set(tiles):
                raise InvalidArgument(
                    f"tile_ids must name each of the dashboard's {len(tiles)} live tiles once "
                    f"(live tiles: {sorted(tiles)}; got {list(tile_ids)})",
                    field="tile_ids",
                    reason="INVALID_TILE_ORDER",
                )
            before = self._snapshot(session, row)
            for position, tile_id in enumerate(tile_ids):
                tiles[tile_id].position = position
            self._log_tiles(session, env, principal, row, before, now)
            view = self._views(session, [row])[0]
        self.changed(env.id)
        return view

    def activity(
        self, principal: Principal, environment_id: int, dashboard_id: int | None, page: int, limit: int
    ) -> activity.EntryPage:
        """The activity of one dashboard (deleted ones included) or of all the environment's dashboards."""
        env = principal.environment(environment_id)
        item = None
        if dashboard_id is not None:
            item = lambda session: find_dashboard(session, env.id, dashboard_id, include_deleted=True).id  # noqa: E731 (one expression, run in the listing's session)
        return activity.listing(self.db, env.id, SCOPE, page, limit, item)

    # ------------------------------------------------------------------------------ helpers

    def _check_fields(self, fields: DashboardFields, chosen: set[str]) -> list[str]:
        """The normalized tags, or INVALID_ARGUMENT naming every field that cannot be saved."""
        violations = Violations()
        if "name" in chosen:
            if not fields.name.strip():
                violations.add("dashboard.name", "a dashboard needs a name")
            elif len(fields.name) > NAME_LIMIT:
                violations.add("dashboard.name", f"dashboard.name must be at most {NAME_LIMIT} characters")
        if "description" in chosen and len(fields.description) > DESCRIPTION_LIMIT:
            violations.add(
                "dashboard.description",
                f"dashboard.description must be at most {DESCRIPTION_LIMIT} characters",
            )
        if "tags" in chosen:
            if len(fields.tags) > MAX_TAGS:
                violations.add(
                    "dashboard.tags", f"a dashboard has at most {MAX_TAGS} tags (got {len(fields.tags)})"
                )
            else:
                for i, tag in enumerate(fields.tags):
                    if len(tag.strip()) > TAG_LIMIT:
                        violations.add(f"dashboard.tags[{i}]", f"a tag is at most {TAG_LIMIT} characters")
        if "filters" in chosen:
            try:
                overrides.check(fields.filters, "dashboard.filters")
            except InvalidArgument as exc:
                violations.items.extend(exc.violations)
        violations.raise_if_any()
        return normalize_tags(fields.tags) if "tags" in chosen else []

    def _check_tile_fields(self, fields: TileFields, chosen: set[str]) -> None:
        """INVALID_ARGUMENT naming every tile field that cannot be saved."""
        violations = Violations()
        if "color" in chosen and fields.color is not None and len(fields.color.strip()) > COLOR_LIMIT:
            violations.add("tile.color", f"tile.color must be at most {COLOR_LIMIT} characters")
        if "layouts" in chosen and fields.layouts is not None:
            size = len(json.dumps(fields.layouts, separators=(",", ":")))
            if size > LAYOUTS_LIMIT:
                violations.add(
                    "tile.layouts", f"tile.layouts must be at most {LAYOUTS_LIMIT} bytes as JSON (got {size})"
                )
        if "filters" in chosen:
            try:
                overrides.check(fields.filters, "tile.filters")
            except InvalidArgument as exc:
                violations.items.extend(exc.violations)
        violations.raise_if_any()

    def _live_tile(self, session: Session, row_id: int, dashboard_id: int, tile_id: int) -> DashboardTile:
        """A live tile of the dashboard; NOT_FOUND otherwise."""
        tile = session.scalars(
            select(DashboardTile).where(
                DashboardTile.id == tile_id,
                DashboardTile.dashboard_id == row_id,
                DashboardTile.deleted.is_(False),
            )
        ).first()
        if tile is None:
            raise NotFound(
                f"Tile {tile_id} is not on dashboard {dashboard_id}.",
                reason="DASHBOARD_TILE_NOT_FOUND",
                metadata={"dashboard": str(dashboard_id), "tile": str(tile_id)},
            )
        return tile

    def _live_tiles(self, session: Session, dashboard_id: int) -> list[DashboardTile]:
        return list(
            session.scalars(
                select(DashboardTile)
                .join(Insight, Insight.id == DashboardTile.insight_id)
                .where(
                    DashboardTile.dashboard_id == dashboard_id,
                    DashboardTile.deleted.is_(False),
                    Insight.deleted.is_(False),
                )
                .order_by(DashboardTile.position, DashboardTile.id)
            )
        )

    def _log_tiles(
        self,
        session: Session,
        env: EnvironmentInfo,
        principal: Principal,
        row: Dashboard,
        before: dict[str, Any],
        now: dt.datetime,
    ) -> None:
        """Records a change of the tiles (an `updated` entry with the before and after layouts)."""
        changes = activity.diff(before, self._snapshot(session, row), SCOPE)
        if changes:
            row.updated_at = now
            activity.record_item(session, env, principal.user_id, SCOPE, row, "updated", changes, now)

    def _set_tags(self, session: Session, row: Dashboard, tags: list[str]) -> None:
        set_linked_tags(session, DashboardTag, "dashboard_id", row.id, row.environment_id, tags)

    def _tags_of(self, session: Session, dashboard_ids: list[int]) -> dict[int, list[str]]:
        return linked_tags(session, DashboardTag, "dashboard_id", dashboard_ids)

    def _snapshot(self, session: Session, row: Dashboard) -> dict[str, Any]:
        """The diffed fields of a dashboard; its tiles as the layout of insight ids."""
        session.flush()
        return {
            "name": row.name,
            "description": row.description,
            "tags": self._tags_of(session, [row.id]).get(row.id, []),
            "pinned": row.pinned,
            "filters": filters_json(parse_filters(row.filters)),
            "deleted": row.deleted,
            "tiles": [_tile_snapshot(t) for t in self._live_tiles(session, row.id)],
        }

    def _views(self, session: Session, rows: list[Dashboard]) -> list[DashboardView]:
        """Loads what is shown beside each dashboard with one query per relation, not per row."""
        if not rows:
            return []
        session.flush()
        ids = [r.id for r in rows]
        tags = self._tags_of(session, ids)
        tiles: dict[int, list[TileView]] = {}
        for tile, short_id, name in session.execute(
            select(DashboardTile, Insight.short_id, Insight.name)
            .join(Insight, Insight.id == DashboardTile.insight_id)
            .where(
                DashboardTile.dashboard_id.in_(ids),
                DashboardTile.deleted.is_(False),
                Insight.deleted.is_(False),
            )
            .order_by(DashboardTile.position, DashboardTile.id)
        ):
            tiles.setdefault(tile.dashboard_id, []).append(
                TileView(
                    tile.id,
                    tile.insight_id,
                    short_id,
                    name or "",
                    tile.position,
                    tile.color,
                    tile.layouts,
                    parse_filters(tile.filters),
                )
            )
        user_ids = {r.created_by_id for r in rows if r.created_by_id is not None}
        users = {u.id: user_ref(u) for u in session.scalars(select(User).where(User.id.in_(user_ids)))}
        return [
            DashboardView(
                id=r.id,
                environment_id=r.environment_id,
                name=r.name,
                description=r.description,
                tags=tuple(tags.get(r.id, [])),
                pinned=r.pinned,
                filters=parse_filters(r.filters),
                tiles=tuple(tiles.get(r.id, [])),
                deleted=r.deleted,
                created_at=r.created_at,
                created_by=users.get(r.created_by_id) if r.created_by_id is not None else None,
                updated_at=r.updated_at or r.created_at,
            )
            for r in rows
        ]


def _stored(filters: insight_pb2.DashboardFilter) -> bytes | None:
    """The filters as a dashboard row keeps them (None when they change nothing)."""
    return None if overrides.is_empty(filters) else filters.SerializeToString(deterministic=True)


def _tile_snapshot(tile: DashboardTile) -> dict[str, Any]:
    """A tile as the activity diff shows it: which insight, and the settings it has."""
    shown: dict[str, Any] = {"id": tile.id, "insight_id": tile.insight_id}
    if tile.color is not None:
        shown["color"] = tile.color
    if tile.layouts is not None:
        shown["layouts"] = tile.layouts
    if tile.filters:
        shown["filters"] = filters_json(parse_filters(tile.filters))
    return shown
