"""Translation between protobuf messages and the domain's values."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from generated.insights.v1 import (
    activity_pb2,
    common_pb2,
    insight_pb2,
    query_service_pb2,
    results_pb2,
    sharing_pb2,
)
from server import activity
from server.execution import Computed, Refresh
from server.insights import InsightFields, InsightView, Lookup, UserRef
from server.runs import Run
from server.sharing import ConfigChange, ConfigView, SharedRead

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
REFRESH_MODES: dict[int, Refresh] = {
    common_pb2.REFRESH_MODE_FORCE_BLOCKING: Refresh.FORCE_BLOCKING,
    common_pb2.REFRESH_MODE_FORCE_ASYNC: Refresh.FORCE_ASYNC,
    common_pb2.REFRESH_MODE_BLOCKING: Refresh.BLOCKING,
    common_pb2.REFRESH_MODE_ASYNC: Refresh.ASYNC,
    common_pb2.REFRESH_MODE_ASYNC_EXCEPT_ON_CACHE_MISS: Refresh.ASYNC_EXCEPT_ON_CACHE_MISS,
    common_pb2.REFRESH_MODE_LAZY_ASYNC: Refresh.LAZY_ASYNC,
    common_pb2.REFRESH_MODE_FORCE_CACHE: Refresh.FORCE_CACHE,
}
BULK_ACTIONS = {
    insight_pb2.BULK_TAG_ACTION_ADD: "add",
    insight_pb2.BULK_TAG_ACTION_REMOVE: "remove",
    insight_pb2.BULK_TAG_ACTION_SET: "set",
}


def timestamp(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


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


def set_fields(message: insight_pb2.Insight) -> list[str]:
    """Names of the fields set to a non-default value: the paths of an update without a mask."""
    return [descriptor.name for descriptor, _ in message.ListFields()]


def user(ref: UserRef | None) -> common_pb2.UserBasic | None:
    if ref is None:
        return None
    return common_pb2.UserBasic(
        id=ref.id,
        uuid=ref.uuid,
        distinct_id=ref.distinct_id,
        first_name=ref.first_name,
        last_name=ref.last_name,
        email=ref.email,
        is_email_verified=ref.is_email_verified,
        role_at_organization=ref.role_at_organization,
        hedgehog_config=struct_pb2.Struct(),
    )


# The refresh mode of a call that names none, per method (the reference's endpoint defaults).
DEFAULT_REFRESH: dict[str, Refresh] = {
    "/insights.v1.InsightsService/GetInsight": Refresh.FORCE_CACHE,
    "/insights.v1.InsightsService/ListInsights": Refresh.FORCE_CACHE,
    "/insights.v1.QueryService/RunQuery": Refresh.BLOCKING,
    "/insights.v1.QueryService/StreamQuery": Refresh.BLOCKING,
}


def reads_cache_only(method: str, request: Any) -> bool:
    """Whether a call only reads the result cache (FORCE_CACHE): such calls never compute."""
    default = DEFAULT_REFRESH.get(method)
    if default is None or not hasattr(request, "refresh"):
        return False
    return refresh(request.refresh, default) == Refresh.FORCE_CACHE


def refresh(mode: int, default: Refresh) -> Refresh:
    """The domain's refresh mode of a request's enum value (unspecified: the endpoint default)."""
    return REFRESH_MODES.get(mode, default)


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
    row = view.row
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
        _stamp(message.last_refresh, last_refresh)
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
    message.hogql = computed.sql
    message.is_cached = computed.is_cached
    if computed.timezone:
        message.timezone = computed.timezone
    _stamp(message.last_refresh, computed.last_refresh)
    _stamp(message.cache_target_age, computed.cache_target_age)
    _stamp(message.next_allowed_client_refresh, computed.next_allowed_client_refresh)
    if computed.date_from is not None and computed.date_to is not None:
        message.resolved_date_range.date_from.FromDatetime(computed.date_from)
        message.resolved_date_range.date_to.FromDatetime(computed.date_to)
    if computed.status is not None:
        message.query_status.CopyFrom(query_status(computed.status, show_progress=True))


def query_response(computed: Computed | None) -> query_service_pb2.QueryResponse:
    """The QueryResponse of an answer (empty on a cache miss)."""
    response = query_service_pb2.QueryResponse()
    if computed is None:
        return response
    if computed.result is not None:
        response.result.CopyFrom(computed.result)
    response.has_more = computed.has_more
    response.is_cached = computed.is_cached
    response.cache_key = computed.cache_key
    response.timezone = computed.timezone
    response.hogql = computed.sql
    response.calculation_trigger = computed.trigger
    _stamp(response.last_refresh, computed.last_refresh)
    _stamp(response.cache_target_age, computed.cache_target_age)
    _stamp(response.next_allowed_client_refresh, computed.next_allowed_client_refresh)
    if computed.date_from is not None and computed.date_to is not None:
        response.resolved_date_range.date_from.FromDatetime(computed.date_from)
        response.resolved_date_range.date_to.FromDatetime(computed.date_to)
    if computed.status is not None:
        response.query_status.CopyFrom(query_status(computed.status, show_progress=True))
    return response


# The label of a complete status whose result is no longer held (see query_status).
RESULTS_EVICTED = "results_evicted"


def query_status(run: Run, *, show_progress: bool) -> results_pb2.QueryStatus:
    """The reference's query status of a run (with its result once complete)."""
    status = results_pb2.QueryStatus(
        id=run.id,
        team_id=run.team_id,
        complete=run.complete,
        error=run.error,
        query_async=True,
        task_id=run.id,
    )
    if run.insight_id is not None:
        status.insight_id = run.insight_id
    if run.error_message is not None:
        status.error_message = run.error_message
    _stamp(status.start_time, run.start_time)
    _stamp(status.pickup_time, run.pickup_time)
    _stamp(status.end_time, run.end_time)
    _stamp(status.expiration_time, run.expiration_time)
    if show_progress and run.progress is not None and not run.complete:
        status.query_progress.CopyFrom(
            results_pb2.QueryProgress(
                bytes_read=run.progress.read_bytes,
                rows_read=run.progress.read_rows,
                estimated_rows_total=run.progress.total_rows,
                time_elapsed=int(run.progress.elapsed_seconds * 1000),
            )
        )
    entry = run.result()
    if run.complete and not run.error:
        if entry is not None:
            status.results.ParseFromString(entry.payload)
        else:
            # The memory budget let the result go before the status expired: run the query again.
            status.labels.append(RESULTS_EVICTED)
    return status


def _stamp(field: timestamp_pb2.Timestamp, value: dt.datetime | None) -> None:
    if value is not None:
        field.FromDatetime(value)


def insights_csv(messages: list[insight_pb2.Insight]) -> str:
    """The rows of a list page as CSV, one line per insight (the reference's CSV renderer, flattened)."""
    columns = [
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
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for m in messages:
        writer.writerow(
            [
                m.id,
                m.short_id,
                m.name,
                m.derived_name,
                m.description,
                ";".join(m.tags),
                m.favorited,
                m.saved,
                m.created_at.ToJsonString() if m.HasField("created_at") else "",
                m.last_modified_at.ToJsonString() if m.HasField("last_modified_at") else "",
                m.created_by.email if m.HasField("created_by") else "",
            ]
        )
    return out.getvalue()


def _value(data: Any) -> struct_pb2.Value:
    value = struct_pb2.Value()
    if data is None:
        value.null_value = struct_pb2.NULL_VALUE
    elif isinstance(data, bool):
        value.bool_value = data
    elif isinstance(data, int | float):
        value.number_value = data
    elif isinstance(data, str):
        value.string_value = data
    elif isinstance(data, dict):
        # Marked set first: updating with {} (or extending with []) would leave the Value without
        # a kind, which JSON printers refuse ("nil Value"); an empty list is `[]`, as the reference.
        value.struct_value.SetInParent()
        value.struct_value.update(data)
    else:
        value.list_value.SetInParent()
        value.list_value.extend(data)
    return value


def activity_entry(entry: activity.Entry) -> activity_pb2.ActivityLogEntry:
    detail = entry.detail
    message = activity_pb2.ActivityLogEntry(
        id=entry.id,
        activity=entry.activity,
        scope=entry.scope,
        item_id=entry.item_id,
        created_at=timestamp(entry.created_at),
        is_system=entry.is_system,
        was_impersonated=entry.was_impersonated,
        detail=activity_pb2.ActivityDetail(
            changes=[
                activity_pb2.ActivityChange(
                    type=c["type"],
                    action=c["action"],
                    field=c.get("field") or "",
                    before=_value(c.get("before")),
                    after=_value(c.get("after")),
                )
                for c in detail.get("changes") or []
            ],
            name=detail.get("name"),
            short_id=detail.get("short_id"),
            type=detail.get("type"),
        ),
    )
    if entry.user_email is not None:
        message.user.CopyFrom(
            activity_pb2.ActivityUser(first_name=entry.user_first_name or "", email=entry.user_email)
        )
    return message


def sharing_configuration(view: ConfigView) -> sharing_pb2.SharingConfiguration:
    """The SharingConfiguration message of a configuration (created_at unset for the unsaved default)."""
    message = sharing_pb2.SharingConfiguration(
        enabled=view.enabled,
        access_token=view.access_token,
        password_required=view.password_required,
        share_passwords=[
            sharing_pb2.SharePassword(
                id=p.id,
                created_at=timestamp(p.created_at),
                note=p.note,
                created_by_email=p.created_by_email,
                is_active=p.is_active,
            )
            for p in view.passwords
        ],
    )
    _stamp(message.created_at, view.created_at)
    if view.settings is not None:
        message.settings.update(view.settings)
    return message


def sharing_change(message: sharing_pb2.SharingConfiguration) -> ConfigChange:
    settings = json_format.MessageToDict(message.settings) if message.HasField("settings") else {}
    return ConfigChange(
        enabled=message.enabled, settings=settings, password_required=message.password_required
    )


# What a shared viewer (no API key) may see of an insight. An allowlist, so that a field added to
# Insight later stays private until someone decides otherwise. Left out: `hogql` (the engine's
# query text: no SQL ever reaches a viewer), `alerts` (names and states of the owners' alerts) and
# `last_viewed_at` (a user's own field).
SHARED_FIELDS = frozenset(
    {
        "id",
        "short_id",
        "name",
        "derived_name",
        "description",
        "query",
        "order",
        "deleted",
        "dashboards",
        "dashboard_tiles",
        "last_refresh",
        "cache_target_age",
        "next_allowed_client_refresh",
        "result",
        "has_more",
        "columns",
        "types",
        "created_at",
        "created_by",
        "updated_at",
        "tags",
        "favorited",
        "last_modified_at",
        "last_modified_by",
        "is_sample",
        "effective_restriction_level",
        "effective_privilege_level",
        "user_access_level",
        "timezone",
        "is_cached",
        "query_status",
        "resolved_date_range",
        "saved",
    }
)
# Of a run's status, a viewer sees whether it finished and how: not the run or environment ids,
# the engine's progress (rows and bytes of the environment's data) or the queue's timings.
SHARED_STATUS_FIELDS = frozenset(
    {"complete", "error", "error_message", "query_async", "results", "resolved_date_range"}
)
# What hideExtraDetails removes: the reference's four, and updated_at, which tells the same "when".
EXTRA_DETAILS = ("created_by", "last_modified_by", "created_at", "last_modified_at", "updated_at")


def shared_insight(read: SharedRead) -> insight_pb2.Insight:
    """The Insight a shared viewer sees: read-only, no SQL, creators by name only (none when hidden)."""
    message = insight(read.view, read.computed)
    _keep_only(message, SHARED_FIELDS)
    message.user_access_level = "viewer"
    # The reference's view-only privilege level (37 is "can edit").
    message.effective_privilege_level = 21
    if message.HasField("query_status"):
        _keep_only(message.query_status, SHARED_STATUS_FIELDS)
    if read.hide_extra_details:
        _clear(message, EXTRA_DETAILS)
    else:
        # A creator is shown by name, as the shared page names them: no email, ids or distinct_id.
        _clear(message, ("created_by", "last_modified_by"))
        if read.view.created_by is not None:
            message.created_by.CopyFrom(_named(read.view.created_by))
        if read.view.last_modified_by is not None:
            message.last_modified_by.CopyFrom(_named(read.view.last_modified_by))
    return message


def _named(ref: UserRef) -> common_pb2.UserBasic:
    return common_pb2.UserBasic(first_name=ref.first_name, last_name=ref.last_name)


def _clear(message: Any, names: tuple[str, ...]) -> None:
    for name in names:
        message.ClearField(name)


def _keep_only(message: Any, allowed: frozenset[str]) -> None:
    """Clears every set field of `message` whose name is not in `allowed`."""
    for descriptor, _ in message.ListFields():
        if descriptor.name not in allowed:
            message.ClearField(descriptor.name)
