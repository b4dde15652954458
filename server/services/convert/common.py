"""Conversions every service shares: timestamps, users, refresh modes and a run's status."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar, cast

from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.message import Message

from generated.insights.v1 import activity_pb2, common_pb2, results_pb2
from server.domain import activity
from server.domain.insights import UserRef
from server.domain.paging import Page
from server.execution.refresh import Computed, Refresh
from server.execution.runs import Run

REFRESH_MODES: dict[int, Refresh] = {
    common_pb2.REFRESH_MODE_FORCE_BLOCKING: Refresh.FORCE_BLOCKING,
    common_pb2.REFRESH_MODE_FORCE_ASYNC: Refresh.FORCE_ASYNC,
    common_pb2.REFRESH_MODE_BLOCKING: Refresh.BLOCKING,
    common_pb2.REFRESH_MODE_ASYNC: Refresh.ASYNC,
    common_pb2.REFRESH_MODE_ASYNC_EXCEPT_ON_CACHE_MISS: Refresh.ASYNC_EXCEPT_ON_CACHE_MISS,
    common_pb2.REFRESH_MODE_LAZY_ASYNC: Refresh.LAZY_ASYNC,
    common_pb2.REFRESH_MODE_FORCE_CACHE: Refresh.FORCE_CACHE,
}
# The refresh mode of a call that names none, per method (the reference's endpoint defaults).
DEFAULT_REFRESH: dict[str, Refresh] = {
    "/insights.v1.InsightsService/GetInsight": Refresh.FORCE_CACHE,
    "/insights.v1.InsightsService/ListInsights": Refresh.FORCE_CACHE,
    "/insights.v1.QueryService/RunQuery": Refresh.BLOCKING,
    "/insights.v1.QueryService/StreamQuery": Refresh.BLOCKING,
}
# The label of a complete status whose result is no longer held (see query_status).
RESULTS_EVICTED = "results_evicted"

T = TypeVar("T")
R = TypeVar("R")


def timestamp(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def stamp(field: timestamp_pb2.Timestamp, value: dt.datetime | None) -> None:
    """Sets a message's timestamp field; None leaves it unset."""
    if value is not None:
        field.FromDatetime(value)


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


def refresh(mode: int, default: Refresh) -> Refresh:
    """The domain's refresh mode of a request's enum value (unspecified: the endpoint default)."""
    return REFRESH_MODES.get(mode, default)


def reads_cache_only(method: str, request: Any) -> bool:
    """Whether a call only reads the result cache (FORCE_CACHE): such calls never compute."""
    default = DEFAULT_REFRESH.get(method)
    if default is None or not hasattr(request, "refresh"):
        return False
    return refresh(request.refresh, default) == Refresh.FORCE_CACHE


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
    stamp(status.start_time, run.start_time)
    stamp(status.pickup_time, run.pickup_time)
    stamp(status.end_time, run.end_time)
    stamp(status.expiration_time, run.expiration_time)
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


def answer_facts(message: Any, computed: Computed) -> None:
    """Sets an answer's cache times, resolved date range and run status on an Insight or QueryResponse."""
    stamp(message.last_refresh, computed.last_refresh)
    stamp(message.cache_target_age, computed.cache_target_age)
    stamp(message.next_allowed_client_refresh, computed.next_allowed_client_refresh)
    if computed.date_from is not None and computed.date_to is not None:
        message.resolved_date_range.date_from.FromDatetime(computed.date_from)
        message.resolved_date_range.date_to.FromDatetime(computed.date_to)
    if computed.status is not None:
        message.query_status.CopyFrom(query_status(computed.status, show_progress=True))


def offsets(page: Page[Any], response: Any) -> None:
    """A list response's next/previous offsets (unset at either end of the list)."""
    if page.offset + page.limit < page.count:
        response.next_offset = page.offset + page.limit
    if page.offset > 0:
        response.previous_offset = max(page.offset - page.limit, 0)


def listing(response_type: Callable[..., R], page: Page[T], convert: Callable[[T], Any], **fields: Any) -> R:
    """A list response of `page`: its count, its items converted, `fields`, its next/previous offsets."""
    response = response_type(count=page.count, results=[convert(item) for item in page.items], **fields)
    offsets(page, response)
    return response


def set_fields(message: Message) -> list[str]:
    """Names of the fields set to a non-default value: the paths of an update without a mask."""
    return [descriptor.name for descriptor, _ in message.ListFields()]


def update_paths(request: Any, given: Message) -> list[str]:
    """The paths an Update call changes: its update_mask, else the fields `given` sets."""
    return list(request.update_mask.paths) if request.HasField("update_mask") else set_fields(given)


def activity_page(response_type: Callable[..., R], page: activity.EntryPage) -> R:
    """A list-activity response of a page of entries, with the next/previous page numbers."""
    response: Any = response_type(
        results=[activity_entry(e) for e in page.entries], total_count=page.total_count
    )
    if page.has_next:
        response.next_page = page.page + 1
    if page.page > 1:
        response.previous_page = page.page - 1
    return cast(R, response)


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
