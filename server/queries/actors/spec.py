"""Checks an InsightActorsQuery's own fields: its page, and the drill-down fields of other kinds."""

from __future__ import annotations

from dataclasses import dataclass

from generated.insights.v1 import query_pb2
from server.queries.common.errors import QueryError

DEFAULT_LIMIT = 100
# As ListCohortPersons: a page of persons with their properties stays a bounded response.
MAX_LIMIT = 1000

# The fields that pick a part of another kind's result (a trends day, a funnel step, ...), with
# what they are; none means anything for a paths source, and ignoring one is no answer.
_OTHER_KINDS = (
    ("day", "day", "drill-downs to a period (trends, stickiness)"),
    ("series", "series", "drill-downs to a series (trends, stickiness)"),
    ("status", "status", "drill-downs to a lifecycle status"),
    ("breakdown", "breakdown", "drill-downs to a breakdown value (trends)"),
    ("compare", "compare", "drill-downs to a compared period (trends)"),
    ("interval", "interval", "drill-downs to a retention interval"),
    ("funnel_step", "funnelStep", "drill-downs to a funnel step"),
    ("funnel_step_breakdown", "funnelStepBreakdown", "drill-downs to a funnel step's breakdown value"),
    ("funnel_trends_drop_off", "funnelTrendsDropOff", "drill-downs to funnel trends' drop-offs"),
    ("funnel_trends_entrance_period_start", "funnelTrendsEntrancePeriodStart", "drill-downs to a funnel trends period"),
    ("funnel_custom_steps", "funnelCustomSteps", "drill-downs to custom funnel steps"),
    ("include_recordings", "includeRecordings", "actors' session recordings"),
)


@dataclass(frozen=True)
class Page:
    """Which actors of the ordered list: `offset` skipped, at most `limit`."""

    limit: int
    offset: int


def page_of(node: query_pb2.InsightActorsQuery) -> Page:
    """The checked page; QueryError naming `limit` or `offset` when out of bounds."""
    limit = node.limit if node.HasField("limit") else DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit must be between 1 and {MAX_LIMIT}", "limit")
    offset = node.offset if node.HasField("offset") else 0
    if offset < 0:
        raise QueryError("offset must not be negative", "offset")
    return Page(limit, offset)


def later_of(node: query_pb2.InsightActorsQuery) -> list[tuple[str, str]]:
    """(field, what) of each drill-down field of another kind `node` sets (a false boolean and an
    empty list are unset)."""
    # ListFields: the fields present (an empty list is absent); an explicit false is no request.
    given = {field.name for field, value in node.ListFields() if value is not False}
    return [(path, what) for name, path, what in _OTHER_KINDS if name in given]
