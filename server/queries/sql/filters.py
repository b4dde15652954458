"""The `{filters}` placeholder: the node's HogQLFilters (date range, property filters, test-account
filters) as one condition on the `events` table its SELECT reads, every value a bound parameter."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlglot import exp

from generated.insights.v1 import query_pb2
from server.queries.common.dates import parse_point
from server.queries.common.errors import QueryError
from server.queries.common.properties import filters_sql
from server.queries.common.sql import Params
from server.queries.sql.dialect import parse
from server.queries.sql.guards import PERSON_PROPERTIES
from server.queries.sql.inputs import Inputs
from server.queries.sql.placeholders import Spot
from server.queries.sql.problems import invalid


def _moment(text: str, path: str, inputs: Inputs) -> dt.datetime:
    """A date bound, read as the service reads dates (in the environment's time zone)."""
    try:
        return parse_point(text, inputs.timezone, inputs.now)
    except ValueError as exc:
        raise QueryError(str(exc), path) from None


def _instant(text: str, path: str, inputs: Inputs) -> str:
    """A date bound as UTC text for toDateTime64(…, 6, 'UTC')."""
    return _moment(text, path, inputs).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def resolved_range(
    filters: query_pb2.HogQLFilters | None, inputs: Inputs, earliest: Callable[[], dt.datetime | None]
) -> tuple[dt.datetime, dt.datetime] | None:
    """The range `{filters}` applies, for the response's resolved_date_range: date_from (for "all",
    `earliest()`, the environment's first event) to date_to (default: now); None when the filters
    give no lower bound (nothing to show as a range) or "all" finds no event."""
    if filters is None or not filters.HasField("date_range"):
        return None
    dates = filters.date_range
    date_from = dates.date_from.strip() if dates.HasField("date_from") else ""
    date_to = dates.date_to.strip() if dates.HasField("date_to") else ""
    if not date_from:
        return None
    lower = earliest() if date_from == "all" else _moment(date_from, "filters.dateRange.date_from", inputs)
    if lower is None:
        return None
    upper = _moment(date_to, "filters.dateRange.date_to", inputs) if date_to else inputs.now
    return lower, upper


def condition_sql(filters: query_pb2.HogQLFilters | None, params: Params, inputs: Inputs) -> str:
    """The condition as SQL over unqualified `timestamp`, `properties` and `person_properties` (`1`
    when it filters nothing), as the reference: timestamp >= date_from ("all": no bound) AND timestamp
    < date_to, AND the property filters, AND the test-account filters when asked."""
    if filters is None:
        return "1"
    parts: list[str] = []
    if filters.properties:
        parts.append(filters_sql(params, filters.properties, "filters.properties", inputs.timezone))
    dates = filters.date_range
    date_from = dates.date_from.strip() if dates.HasField("date_from") else ""
    date_to = dates.date_to.strip() if dates.HasField("date_to") else ""
    if date_from and date_from != "all":
        lower = _instant(date_from, "filters.dateRange.date_from", inputs)
        parts.append(f"timestamp >= toDateTime64({params.bind(lower, 'String')}, 6, 'UTC')")
    if date_to:
        upper = _instant(date_to, "filters.dateRange.date_to", inputs)
        parts.append(f"timestamp < toDateTime64({params.bind(upper, 'String')}, 6, 'UTC')")
    if filters.filter_test_accounts and inputs.test_account_filters:
        parts.append(filters_sql(params, inputs.test_account_filters, "filters.filterTestAccounts", inputs.timezone))
    return " AND ".join(f"({p})" for p in parts) or "1"


def _events_alias(select: exp.Select, spot: Spot) -> str:
    """The name the one `events` table of `select` (FROM or JOIN, not inside a subquery) goes by."""
    sources = [select.args.get("from_"), *(select.args.get("joins") or [])]
    found = [
        s.this
        for s in sources
        if s is not None and isinstance(s.this, exp.Table) and s.this.name == "events" and not s.this.args.get("db")
    ]
    if not found:
        raise invalid(
            f"{spot.text} at {spot.where} filters the events table its SELECT reads, and that SELECT reads none "
            "(write it in the WHERE of a SELECT … FROM events)"
        )
    if len(found) > 1:
        raise invalid(
            f"{spot.text} at {spot.where}: its SELECT reads the events table {len(found)} times, so which one it "
            "filters is ambiguous (move it into a subquery that reads events once)"
        )
    return str(found[0].alias_or_name)


def _select_of(node: exp.Expr, spot: Spot) -> exp.Select:
    """The SELECT whose WHERE, HAVING or JOIN … ON holds `node`; QueryError for any other place."""
    child, parent = node, node.parent
    placed = False
    while parent is not None and not isinstance(parent, exp.Select):
        if isinstance(parent, (exp.Where, exp.Having)) or (isinstance(parent, exp.Join) and child.arg_key == "on"):
            placed = True
        if isinstance(parent, (exp.Query, exp.Subquery)):
            break
        child, parent = parent, parent.parent
    if not placed or not isinstance(parent, exp.Select):
        raise invalid(f"{spot.text} at {spot.where} is a condition: write it in a WHERE, HAVING or JOIN … ON")
    return parent


def replace_filters(node: exp.Expr, spot: Spot, inputs: Inputs, params: Params) -> bool:
    """Replaces the `{filters}` marker `node` by the condition on its SELECT's events table; whether the
    condition reads person properties (so that `events` must carry them)."""
    alias = _events_alias(_select_of(node, spot), spot)
    sql = condition_sql(inputs.filters, params, inputs)
    parsed = parse(f"SELECT {sql}")[0]
    assert isinstance(parsed, exp.Select)
    condition = parsed.expressions[0]
    for column in list(condition.find_all(exp.Column)):
        if not column.table:
            column.set("table", exp.to_identifier(alias))
    node.replace(exp.Paren(this=condition))
    return PERSON_PROPERTIES in sql
