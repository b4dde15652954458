"""When a cached result goes stale, when a client may refresh it, and the result-cache key (pure)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from server.utc import as_utc

# Part of every cache key: bump it when the SQL, the results or their encoding change, and every
# cached entry (in this process or a shared store) stops matching at once.
# 2: trends smoothingIntervals and maths on $session_duration (results cached by 1 ignored them).
ENGINE_VERSION = 2

# A range that ended this long before the last computation is complete: its result cannot change.
# The margin absorbs events still arriving for the last instants of the range (reference §3.4).
IMMUTABLE_MARGIN = dt.timedelta(seconds=10)

# Reference §3.4. "second" is not in the verified table (the reference read suggests "never stale",
# marked UNVERIFIED); a per-second chart is the most live there is, so it gets the minute thresholds.
# Quarter and year are not intervals of our engine yet, but share week/month's row in the reference.
_STALE_AFTER: dict[str | None, dt.timedelta] = {
    "second": dt.timedelta(minutes=5),
    "minute": dt.timedelta(minutes=5),
    "hour": dt.timedelta(hours=1),
    "day": dt.timedelta(hours=6),
    "week": dt.timedelta(days=1),
    "month": dt.timedelta(days=1),
    "quarter": dt.timedelta(days=1),
    "year": dt.timedelta(days=1),
    None: dt.timedelta(hours=6),
}
_LAZY_STALE_AFTER: dict[str | None, dt.timedelta] = {
    "second": dt.timedelta(minutes=15),
    "minute": dt.timedelta(minutes=15),
    "hour": dt.timedelta(hours=2),
    "day": dt.timedelta(hours=12),
    "week": dt.timedelta(days=1),
    "month": dt.timedelta(days=1),
    "quarter": dt.timedelta(days=1),
    "year": dt.timedelta(days=1),
    None: dt.timedelta(hours=12),
}

# Reference §3.4 (TrendsQueryRunner): how soon a client may ask for a recalculation.
REFRESH_INTERVAL = dt.timedelta(minutes=15)
REDUCED_REFRESH_INTERVAL = dt.timedelta(minutes=3)
_SHORT_INTERVALS = frozenset({"second", "minute", "hour"})
_SHORT_RANGE = dt.timedelta(days=7)


def stale_after(interval: str | None, *, lazy: bool = False) -> dt.timedelta:
    """How long after its computation a result of this interval (None: interval-less) stays fresh."""
    table = _LAZY_STALE_AFTER if lazy else _STALE_AFTER
    try:
        return table[interval]
    except KeyError:
        raise ValueError(f"unknown interval {interval!r}") from None


def cache_target_age(last_refresh: dt.datetime, interval: str | None) -> dt.datetime:
    """When the entry computed at `last_refresh` goes stale (the envelope's `cache_target_age`).

    Advisory for clients: an immutable range never goes stale whatever this says (see is_stale).
    """
    return as_utc(last_refresh) + stale_after(interval)


def is_immutable(last_refresh: dt.datetime, date_to: dt.datetime | None) -> bool:
    """Whether the range had ended (by a margin) when it was computed, so its result is final."""
    return date_to is not None and as_utc(date_to) < as_utc(last_refresh) - IMMUTABLE_MARGIN


def is_stale(
    now: dt.datetime,
    entry_last_refresh: dt.datetime,
    interval: str | None,
    date_to: dt.datetime | None,
    *,
    lazy: bool = False,
) -> bool:
    """Whether an entry needs recomputing: `now` is past its target age, unless its range is immutable.

    `lazy` selects the longer thresholds of `lazy_async`. At exactly the target age it is still fresh.
    """
    if is_immutable(entry_last_refresh, date_to):
        return False
    return as_utc(now) > as_utc(entry_last_refresh) + stale_after(interval, lazy=lazy)


def next_allowed_client_refresh(
    last_refresh: dt.datetime,
    interval: str | None,
    date_from: dt.datetime | None,
    date_to: dt.datetime | None,
) -> dt.datetime:
    """The earliest time a client should force a recalculation (advisory; nothing enforces it).

    The reference's trends rule: 15 minutes, 3 minutes for an hour or minute interval (and second)
    or a range of at most 7 days. The range is `date_to - date_from` of the resolved range, whose
    `date_to` is the inclusive end of its last day, so "-7d" (7 days back to the end of today) spans
    almost 8 days and keeps 15 minutes, as in the reference; "-6d" gets 3.
    Interval-less queries (None) follow the same range rule: the reference's values for the other
    kinds are UNVERIFIED, and the range is what makes a recalculation cheap or expensive.
    """
    short = interval in _SHORT_INTERVALS or (
        date_from is not None and date_to is not None and as_utc(date_to) - as_utc(date_from) <= _SHORT_RANGE
    )
    return as_utc(last_refresh) + (REDUCED_REFRESH_INTERVAL if short else REFRESH_INTERVAL)


# --------------------------------------------------------------------------------------------------
# Cache key

# Cleared wherever they appear in the tree: labels, observability tags and the echoed last
# response change nothing the engine computes (reference §3.5; custom names are re-applied to
# cached results by the caller).
_IGNORED_FIELDS = ("custom_name", "tags", "response")

# Optional booleans whose unset value is not false: an explicit false there is a real setting.
# (The reference's convertToProjectTimezone modifier defaults to true.)
_PRESENCE_MATTERS = frozenset({"insights.v1.HogQLQueryModifiers.convert_to_project_timezone"})


def _is_proto3_optional(field: FieldDescriptor) -> bool:
    # proto3 `optional` is a one-field synthetic oneof named "_<field>"; members of a real oneof
    # must keep their presence (which member is set is the value).
    oneof = field.containing_oneof
    return oneof is not None and len(oneof.fields) == 1 and oneof.name == f"_{field.name}"


def _normalise(message: Message) -> bool:
    """Clears ignored fields and explicit-false optional booleans in place; True if it filters test accounts.

    Only booleans are normalised: for them unset and false mean the same to the engine. Other
    scalars keep their presence because it carries meaning: an EventsNode with `event: ""` matches
    no event while an unset one matches all, an explicit `math_multiplier: 0` zeroes the series,
    an explicit `aggregation_group_type_index: 0` aggregates by a group type. Keying those like the
    unset field would serve one query the other's result; not merging them only costs a computation.
    """
    fields = message.DESCRIPTOR.fields_by_name
    for name in _IGNORED_FIELDS:
        if name in fields:
            message.ClearField(name)
    filters_test_accounts = False
    for field, value in message.ListFields():
        node_type = field.message_type
        if node_type is not None:
            if node_type.full_name.startswith("google.protobuf."):
                continue  # Struct/Value payloads are data, not query nodes: nothing to clear inside
            if node_type.GetOptions().map_entry:
                value_field = node_type.fields_by_name["value"]
                items = list(value.values()) if value_field.type == FieldDescriptor.TYPE_MESSAGE else []
            elif field.is_repeated:
                items = list(value)
            else:
                items = [value]
            for item in items:
                filters_test_accounts |= _normalise(item)
        elif (
            field.type == FieldDescriptor.TYPE_BOOL
            and value is False
            and _is_proto3_optional(field)
            and field.full_name not in _PRESENCE_MATTERS
        ):
            message.ClearField(field.name)
        elif field.name == "filter_test_accounts" and value is True:
            filters_test_accounts = True
    return filters_test_accounts


def canonical_query_bytes(query: Message) -> tuple[bytes, bool]:
    """The query as keyed (a normalised copy, deterministic bytes), and whether it filters test accounts."""
    copy = type(query)()
    copy.CopyFrom(query)  # the caller's message is never touched
    copy.DiscardUnknownFields()  # fields from a newer client are ignored by the engine, so by the key
    filters_test_accounts = _normalise(copy)
    return copy.SerializeToString(deterministic=True), filters_test_accounts


def cache_key(
    query: Message,
    *,
    environment_id: int,
    timezone: str,
    week_start_day: int,
    test_account_filters: list[dict[str, Any]] | None,
    definitions: tuple[tuple[str, int, int, str], ...] = (),
) -> str:
    """The result-cache key of `query` (a source node such as TrendsQuery, or any query message).

    "query_" + sha256 of canonical JSON holding the engine version, the message type (two kinds with
    equal bytes must not share), the normalised query bytes, the environment, its time zone and week
    start, and its test-account filters when the query applies them (so editing them invalidates).
    Pass the source query rather than its InsightVizNode wrapper, whose display-only fields would
    otherwise split entries. Stable across processes for a given protobuf runtime; a protobuf upgrade
    that changed deterministic encoding would only cause misses. `definitions` are (kind, id,
    version, name) of the stored actions and cohorts the query uses: a new version is a new key.
    """
    query_bytes, filters_test_accounts = canonical_query_bytes(query)
    payload: dict[str, Any] = {
        "engine_version": ENGINE_VERSION,
        "kind": query.DESCRIPTOR.full_name,
        "query": query_bytes.hex(),
        "environment_id": environment_id,
        "timezone": timezone,
        "week_start_day": week_start_day,
        "test_account_filters": (test_account_filters or []) if filters_test_accounts else None,
    }
    if definitions:
        # Only when there are some, so that the keys of queries naming none stay as they were.
        payload["definitions"] = [list(d) for d in definitions]
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "query_" + hashlib.sha256(text.encode()).hexdigest()
