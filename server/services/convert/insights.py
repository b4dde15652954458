"""InsightsService conversions: requests to the insight domain's values, views and answers to Insight messages."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from typing import Any

from generated.insights.v1 import insight_pb2
from server.domain.insights import InsightFields, InsightView, Lookup
from server.execution.refresh import Computed
from server.services.convert import csv_export
from server.services.convert.common import answer_facts, stamp, timestamp, user

# Proto enum → the domain's insight type name.
INSIGHT_TYPES = {
    insight_pb2.INSIGHT_TYPE_TRENDS: "TRENDS",
    insight_pb2.INSIGHT_TYPE_FUNNELS: "FUNNELS",
    insight_pb2.INSIGHT_TYPE_RETENTION: "RETENTION",
    insight_pb2.INSIGHT_TYPE_PATHS: "PATHS",
    insight_pb2.INSIGHT_TYPE_STICKINESS: "STICKINESS",
    insight_pb2.INSIGHT_TYPE_LIFECYCLE: "LIFECYCLE",
    insight_pb2.INSIGHT_TYPE_JSON: "JSON",
    insight_pb2.INSIGHT_TYPE_SQL: "SQL",
}
BULK_ACTIONS = {
    insight_pb2.BULK_TAG_ACTION_ADD: "add",
    insight_pb2.BULK_TAG_ACTION_REMOVE: "remove",
    insight_pb2.BULK_TAG_ACTION_SET: "set",
}


def lookup(request: Any) -> Lookup:
    """The insight a request addresses through its `lookup` oneof."""
    which = request.WhichOneof("lookup")
    if which == "id":
        return Lookup(id=request.id)
    if which == "short_id":
        return Lookup(short_id=request.short_id)
    return Lookup()


def insight_fields(message: insight_pb2.Insight) -> InsightFields:
    return InsightFields(
        name=message.name if message.HasField("name") else None,
        derived_name=message.derived_name if message.HasField("derived_name") else None,
        description=message.description if message.HasField("description") else None,
        query=message.query if message.HasField("query") else None,
        order=message.order if message.HasField("order") else None,
        deleted=message.deleted,
        dashboards=list(message.dashboards),
        tags=list(message.tags),
        favorited=message.favorited,
        saved=message.saved if message.HasField("saved") else None,
    )


def insight(
    view: InsightView,
    computed: Computed | None = None,
    *,
    basic: bool = False,
    last_refresh: dt.datetime | None = None,
) -> insight_pb2.Insight:
    """The Insight message of a view; `basic` leaves out what the reference's basic list omits.

    The basic shape is the reference's basic serializer: no result, but `last_refresh` (when the
    cached result, if any, was computed) is kept.
    """
    row = view.insight
    message = insight_pb2.Insight(
        id=row.id,
        short_id=row.short_id,
        name=row.name,
        derived_name=row.derived_name,
        description=row.description,
        query=view.query,
        dashboards=view.dashboards,
        dashboard_tiles=[
            insight_pb2.DashboardTile(id=t.id, dashboard_id=t.dashboard_id, deleted=t.deleted)
            for t in view.tiles
        ],
        created_at=timestamp(row.created_at),
        created_by=user(view.created_by),
        updated_at=timestamp(row.updated_at),
        tags=view.tags,
        favorited=row.favorited,
        last_modified_at=timestamp(row.last_modified_at),
        saved=row.saved,
        user_access_level="editor",
    )
    if basic:
        stamp(message.last_refresh, last_refresh)
    else:
        if row.order is not None:
            message.order = row.order
        message.deleted = row.deleted
        modified_by = user(view.last_modified_by)
        if modified_by is not None:
            message.last_modified_by.CopyFrom(modified_by)
        message.is_sample = row.is_sample
        message.effective_restriction_level = 21
        message.effective_privilege_level = 37
        message.timezone = view.timezone
        message.is_cached = False
        message.alerts.extend(
            insight_pb2.InsightAlertSummary(id=a.id, name=a.name, enabled=a.enabled, state=a.state)
            for a in view.alerts
        )
        if view.last_viewed_at is not None:
            message.last_viewed_at.FromDatetime(view.last_viewed_at)
    if computed is not None:
        attach_result(message, computed)
    return message


def insight_with_error(view: InsightView, error: str) -> insight_pb2.Insight:
    """An insight of a list page whose result could not be computed: the error in its query_status."""
    message = insight(view)
    message.query_status.complete = True
    message.query_status.error = True
    message.query_status.error_message = error
    return message


def attach_result(message: insight_pb2.Insight, computed: Computed) -> None:
    """Copies an answer (a result with its cache facts, or a run's status) onto an insight."""
    if computed.result is not None:
        message.result.CopyFrom(computed.result)
        message.has_more = computed.has_more
        if computed.result.HasField("hogql"):
            # A SQL insight's table: the reference lists its columns and types on the insight too.
            table = computed.result.hogql
            message.columns[:] = list(table.columns)
            message.types.extend(insight_pb2.ColumnType(name=t.name, type=t.type) for t in table.types)
    message.hogql = computed.sql
    message.is_cached = computed.is_cached
    if computed.timezone:
        message.timezone = computed.timezone
    answer_facts(message, computed)


def insights_csv(messages: list[insight_pb2.Insight]) -> str:
    """The rows of a list page as CSV, one line per insight (the reference's CSV renderer, flattened)."""
    out = io.StringIO()
    csv.writer(out).writerows(insights_csv_rows(messages))
    return out.getvalue()


def insights_csv_rows(messages: list[insight_pb2.Insight]) -> Iterator[list[Any]]:
    """The header and one row per insight of a list page; text cells inert for spreadsheets."""
    yield [
        "id",
        "short_id",
        "name",
        "derived_name",
        "description",
        "tags",
        "favorited",
        "saved",
        "created_at",
        "last_modified_at",
        "created_by",
    ]
    for m in messages:
        yield [
            m.id,
            m.short_id,
            csv_export.text(m.name),
            csv_export.text(m.derived_name),
            csv_export.text(m.description),
            csv_export.text(";".join(m.tags)),
            m.favorited,
            m.saved,
            m.created_at.ToJsonString() if m.HasField("created_at") else "",
            m.last_modified_at.ToJsonString() if m.HasField("last_modified_at") else "",
            csv_export.text(m.created_by.email) if m.HasField("created_by") else "",
        ]
