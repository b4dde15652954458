"""SharingService conversions: configurations both ways, and the Insight a shared viewer may see."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from generated.insights.v1 import common_pb2, insight_pb2, sharing_pb2
from server.domain.insights import UserRef
from server.domain.sharing import ConfigChange, ConfigView, SharedRead
from server.services.convert.common import stamp, timestamp
from server.services.convert.insights import insight


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
    stamp(message.created_at, view.created_at)
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
    if message.result.HasField("hogql"):
        # A SQL insight's result carries the statement as run: no SQL reaches a viewer.
        message.result.hogql.ClearField("clickhouse")
        message.result.hogql.ClearField("explain")
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
