"""Staleness thresholds, immutable ranges, the client refresh hint, and the result-cache key."""

from __future__ import annotations

import copy
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from generated.insights.v1 import query_pb2
from server.execution import staleness
from server.execution.staleness import cache_key, cache_target_age, is_stale, next_allowed_client_refresh
from server.queries.common.codec import from_reference_json
from server.queries.common.dates import resolve_date_range

UTC = dt.UTC
REFRESHED = dt.datetime(2024, 5, 10, 12, 0, tzinfo=UTC)
US = dt.timedelta(microseconds=1)
OPEN = REFRESHED + dt.timedelta(hours=12)  # a date_to still in the future: the range can change

THRESHOLDS = [
    # interval, default, lazy (reference §3.4)
    ("minute", dt.timedelta(minutes=5), dt.timedelta(minutes=15)),
    ("hour", dt.timedelta(hours=1), dt.timedelta(hours=2)),
    ("day", dt.timedelta(hours=6), dt.timedelta(hours=12)),
    ("week", dt.timedelta(days=1), dt.timedelta(days=1)),
    ("month", dt.timedelta(days=1), dt.timedelta(days=1)),
    (None, dt.timedelta(hours=6), dt.timedelta(hours=12)),
]


@pytest.mark.parametrize(("interval", "after", "lazy_after"), THRESHOLDS)
def test_stale_just_after_the_threshold_not_at_it(
    interval: str | None, after: dt.timedelta, lazy_after: dt.timedelta
) -> None:
    assert cache_target_age(REFRESHED, interval) == REFRESHED + after
    assert not is_stale(REFRESHED + after - US, REFRESHED, interval, OPEN)
    assert not is_stale(REFRESHED + after, REFRESHED, interval, OPEN)
    assert is_stale(REFRESHED + after + US, REFRESHED, interval, OPEN)
    assert not is_stale(REFRESHED + lazy_after, REFRESHED, interval, OPEN, lazy=True)
    assert is_stale(REFRESHED + lazy_after + US, REFRESHED, interval, OPEN, lazy=True)


@pytest.mark.parametrize(("interval", "after", "lazy_after"), [t for t in THRESHOLDS if t[1] != t[2]])
def test_lazy_keeps_an_entry_that_is_stale_by_default(
    interval: str | None, after: dt.timedelta, lazy_after: dt.timedelta
) -> None:
    between = REFRESHED + (after + lazy_after) / 2
    assert is_stale(between, REFRESHED, interval, OPEN)
    assert not is_stale(between, REFRESHED, interval, OPEN, lazy=True)


def test_an_unknown_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown interval"):
        is_stale(REFRESHED, REFRESHED, "fortnight", OPEN)


def test_a_range_that_ended_before_the_refresh_never_goes_stale() -> None:
    ended = REFRESHED - dt.timedelta(seconds=10) - US
    years_later = REFRESHED + dt.timedelta(days=3650)
    assert not is_stale(years_later, REFRESHED, "minute", ended)
    assert not is_stale(years_later, REFRESHED, None, ended, lazy=True)


def test_a_range_ending_within_the_margin_of_the_refresh_still_goes_stale() -> None:
    # Events for the last seconds of the range may still have been arriving.
    at_margin = REFRESHED - dt.timedelta(seconds=10)
    assert is_stale(REFRESHED + dt.timedelta(minutes=6), REFRESHED, "minute", at_margin)
    assert is_stale(REFRESHED + dt.timedelta(hours=7), REFRESHED, "day", None)  # no range: by age


def test_instants_compare_across_time_zones_and_naive_is_utc() -> None:
    paris = dt.timezone(dt.timedelta(hours=2))
    refreshed_in_paris = REFRESHED.astimezone(paris)
    # date_to 14:00 in Paris is 12:00 UTC: not before the refresh, so not immutable.
    date_to = dt.datetime(2024, 5, 10, 14, 0, tzinfo=paris)
    assert is_stale(REFRESHED + dt.timedelta(hours=2), refreshed_in_paris, "hour", date_to)
    naive_refresh = REFRESHED.replace(tzinfo=None)
    assert cache_target_age(naive_refresh, "hour") == REFRESHED + dt.timedelta(hours=1)
    assert not is_stale(REFRESHED + dt.timedelta(minutes=59), naive_refresh, "hour", OPEN)


def _day(days: float) -> tuple[dt.datetime, dt.datetime]:
    return REFRESHED - dt.timedelta(days=days), REFRESHED


@pytest.mark.parametrize(
    ("interval", "span", "minutes"),
    [
        ("day", dt.timedelta(days=30), 15),
        ("week", dt.timedelta(days=90), 15),
        ("hour", dt.timedelta(days=30), 3),
        ("minute", dt.timedelta(days=30), 3),
        ("day", dt.timedelta(days=7), 3),
        ("day", dt.timedelta(days=7) + US, 15),
        ("day", dt.timedelta(days=1), 3),
        (None, dt.timedelta(days=3), 3),  # interval-less: the range rule alone
        (None, dt.timedelta(days=30), 15),
    ],
)
def test_next_allowed_client_refresh(interval: str | None, span: dt.timedelta, minutes: int) -> None:
    allowed = next_allowed_client_refresh(REFRESHED, interval, REFRESHED - span, REFRESHED)
    assert allowed == REFRESHED + dt.timedelta(minutes=minutes)


def test_next_allowed_client_refresh_without_a_range_is_the_long_one() -> None:
    assert next_allowed_client_refresh(REFRESHED, None, None, None) == REFRESHED + dt.timedelta(minutes=15)


def test_next_allowed_client_refresh_on_resolved_ranges() -> None:
    def resolved(date_from: str, interval: str) -> tuple[dt.datetime, dt.datetime]:
        r = resolve_date_range(
            date_from,
            None,
            explicit_date=False,
            interval=interval,
            timezone="Europe/Paris",
            week_start_day=0,
            now=REFRESHED,
        )
        return r.date_from, r.date_to

    # "-7d" runs to the end of today: almost 8 days, so the long interval (as the reference).
    assert next_allowed_client_refresh(REFRESHED, "day", *resolved("-7d", "day")) - REFRESHED == (
        dt.timedelta(minutes=15)
    )
    assert next_allowed_client_refresh(REFRESHED, "day", *resolved("-6d", "day")) - REFRESHED == (
        dt.timedelta(minutes=3)
    )


# --------------------------------------------------------------------------------------------------
# Cache key

BASE: dict[str, Any] = {
    "kind": "TrendsQuery",
    "series": [
        {"kind": "EventsNode", "event": "$pageview", "custom_name": "Views", "math": "dau"},
        {
            "kind": "GroupNode",
            "custom_name": "Signups",
            "nodes": [
                {"kind": "EventsNode", "event": "signup", "custom_name": "a"},
                {"kind": "ActionsNode", "id": 3, "custom_name": "b"},
            ],
        },
    ],
    "interval": "day",
    "dateRange": {"date_from": "-14d"},
    "properties": [{"key": "$browser", "value": ["Chrome"], "operator": "exact", "type": "event"}],
    "breakdownFilter": {"breakdown": "$os", "breakdown_type": "event"},
    "trendsFilter": {"formulaNodes": [{"formula": "A+B", "custom_name": "Total"}]},
    "tags": {"productKey": "product_analytics", "scene": "Insight"},
}
ENV: dict[str, Any] = {
    "environment_id": 1,
    "timezone": "Europe/Paris",
    "week_start_day": 0,
    "test_account_filters": [
        {"key": "email", "value": "@example.com", "operator": "not_icontains", "type": "person"}
    ],
}


def trends(**changes: Any) -> query_pb2.TrendsQuery:
    body = copy.deepcopy(BASE)
    body.update(changes)
    return from_reference_json(body, query_pb2.TrendsQuery)


def key(query: Any = None, **env: Any) -> str:
    return cache_key(trends() if query is None else query, **{**ENV, **env})


def test_the_key_is_prefixed_sha256_hex() -> None:
    k = key()
    assert k.startswith("query_") and len(k) == len("query_") + 64
    assert key() == k


def test_renaming_series_and_changing_tags_keep_the_key() -> None:
    renamed = copy.deepcopy(BASE)
    renamed["series"][0]["custom_name"] = "Page views"
    renamed["series"][1]["custom_name"] = "New users"
    renamed["series"][1]["nodes"][0]["custom_name"] = "x"
    del renamed["series"][1]["nodes"][1]["custom_name"]
    renamed["trendsFilter"]["formulaNodes"][0]["custom_name"] = "Sum"
    renamed["tags"] = {"productKey": "dashboards"}
    assert key(from_reference_json(renamed, query_pb2.TrendsQuery)) == key()
    untagged = trends()
    untagged.ClearField("tags")
    assert key(untagged) == key()


def test_the_echoed_response_is_ignored() -> None:
    echoed = trends()
    echoed.response.update({"results": [1, 2, 3]})
    echoed.series[0].events_node.response.update({"x": 1})
    assert key(echoed) == key()


@pytest.mark.parametrize(
    "changes",
    [
        {"properties": [{"key": "$browser", "value": ["Firefox"], "operator": "exact", "type": "event"}]},
        {"properties": []},
        {"interval": "week"},
        {"dateRange": {"date_from": "-30d"}},
        {"dateRange": {"date_from": "-14d", "date_to": "-1d"}},
        {"breakdownFilter": {"breakdown": "$browser", "breakdown_type": "event"}},
        {"trendsFilter": {"formulaNodes": [{"formula": "A-B", "custom_name": "Total"}]}},
        {"series": [{"kind": "EventsNode", "event": "$pageview", "custom_name": "Views", "math": "total"}]},
        {"filterTestAccounts": True},
        {"compareFilter": {"compare": True}},
    ],
)
def test_changing_what_is_computed_changes_the_key(changes: dict[str, Any]) -> None:
    assert key(trends(**changes)) != key()


@pytest.mark.parametrize("env", [{"environment_id": 2}, {"timezone": "UTC"}, {"week_start_day": 1}])
def test_changing_the_environment_or_its_calendar_changes_the_key(env: dict[str, Any]) -> None:
    assert key(**env) != key()


def test_test_account_filters_count_only_when_the_query_applies_them() -> None:
    other_filters = {
        "test_account_filters": [
            {"key": "email", "value": "@x.io", "operator": "icontains", "type": "person"}
        ]
    }
    assert key(**other_filters) == key()
    assert key(test_account_filters=None) == key()
    filtered = trends(filterTestAccounts=True)
    assert key(filtered, **other_filters) != key(filtered)
    # Canonical JSON: the order of a filter's keys does not matter.
    reordered = [dict(reversed(list(f.items()))) for f in ENV["test_account_filters"]]
    assert key(filtered, test_account_filters=reordered) == key(filtered)


def test_explicit_false_booleans_key_like_unset_ones() -> None:
    assert key(trends(filterTestAccounts=False)) == key()
    assert key(trends(compareFilter={"compare": False})) == key(trends(compareFilter={}))
    assert key(trends(dateRange={"date_from": "-14d", "explicitDate": False})) == key()
    assert (
        key(
            trends(
                breakdownFilter={
                    "breakdown": "$os",
                    "breakdown_type": "event",
                    "breakdown_normalize_url": False,
                }
            )
        )
        == key()
    )


def test_other_explicit_defaults_keep_their_meaning() -> None:
    # An explicit multiplier of 0 zeroes the series; an empty event name matches no event.
    plain = trends(series=[{"kind": "EventsNode", "event": "$pageview"}])
    zeroed = trends(series=[{"kind": "EventsNode", "event": "$pageview", "math_multiplier": 0}])
    assert zeroed.series[0].events_node.HasField("math_multiplier")
    assert key(zeroed) != key(plain)
    any_event = trends(series=[{"kind": "EventsNode"}])
    empty_name = trends(series=[{"kind": "EventsNode", "event": ""}])
    assert key(empty_name) != key(any_event)


def test_an_explicit_false_project_timezone_modifier_is_not_the_unset_one() -> None:
    explicit_false = trends(modifiers={"convertToProjectTimezone": False})
    assert explicit_false.modifiers.HasField("convert_to_project_timezone")
    assert key(explicit_false) != key(trends(modifiers={}))


def test_oneof_members_keep_their_presence() -> None:
    # A property value of false is the value false (a oneof member), not an unset field.
    query = trends(properties=[{"key": "flag", "value": False, "operator": "exact", "type": "event"}])
    keyed, _ = staleness.canonical_query_bytes(query)
    value = query_pb2.TrendsQuery.FromString(keyed).properties.list.values[0].value
    assert value.WhichOneof("kind") == "bool_value"
    empty_value = trends(properties=[{"key": "flag", "operator": "exact", "type": "event"}])
    empty_value.properties.list.values[0].value.SetInParent()
    assert key(query) != key(empty_value)


def test_two_query_kinds_with_equal_bytes_do_not_share_a_key() -> None:
    assert cache_key(query_pb2.TrendsQuery(), **ENV) != cache_key(query_pb2.FunnelsQuery(), **ENV)


def test_the_engine_version_is_part_of_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    before = key()
    monkeypatch.setattr(staleness, "ENGINE_VERSION", staleness.ENGINE_VERSION + 1)
    assert key() != before


def test_the_callers_message_is_not_mutated() -> None:
    query = trends(filterTestAccounts=False)
    query.response.update({"x": 1})
    snapshot = query.SerializeToString(deterministic=True)
    key(query)
    assert query.SerializeToString(deterministic=True) == snapshot
    assert query.HasField("filter_test_accounts") and query.HasField("tags")
    assert query.series[0].events_node.custom_name == "Views"


_SUBPROCESS = """
import json, sys
from generated.insights.v1 import query_pb2
from server.queries.common.codec import from_reference_json
from server.execution.staleness import cache_key
body, env = json.loads(sys.stdin.read())
print(cache_key(from_reference_json(body, query_pb2.TrendsQuery), **env))
"""


def test_the_key_is_stable_across_processes() -> None:
    import json

    root = Path(__file__).resolve().parents[2]
    body = {**BASE, "filterTestAccounts": True}
    keys = set()
    for seed in ("1", "2"):  # different str hashing: no dict or set order may leak into the key
        done = subprocess.run(
            [sys.executable, "-c", _SUBPROCESS],
            input=json.dumps([body, ENV]),
            capture_output=True,
            text=True,
            cwd=root,
            env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(root)},
            check=True,
        )
        keys.add(done.stdout.strip())
    assert keys == {key(from_reference_json(body, query_pb2.TrendsQuery))}


def test_the_key_of_a_known_query_does_not_change_between_releases() -> None:
    # Cached entries outlive a deploy (in a shared store too): a new key for the same query drops
    # them all at once. Intended only with an ENGINE_VERSION bump (or a protobuf upgrade that
    # changes deterministic encoding): then update the value here.
    body = {**BASE, "filterTestAccounts": True}
    query = from_reference_json(body, query_pb2.TrendsQuery)
    filters = [{"key": "email", "value": "@exämple.com", "operator": "not_icontains", "type": "person"}]
    # ENGINE_VERSION 2 (smoothing and session durations computed); version 1 gave query_fd3aa531….
    assert key(query, test_account_filters=filters) == "query_2afa9075090b7cce282267c5ebfcfda154998df2517499383275681139e9f212"
