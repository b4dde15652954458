"""Who a query counts (its "actor"): a person, a group (`$group_N`), a session (`$session_id`) or
the value of a HogQL expression of the event.

Reference (query-engine-semantics §4.2 `aggregation_target`): the person by default; the event's
group key `$group_N` when `aggregation_group_type_index` is N; an expression (the UI sends
`properties.$session_id`) otherwise. The last two drop events whose key is empty or absent.
Funnels, paths, retention and lifecycle use it (trends and stickiness have no such option); only
funnels take expressions other than the session's (`expressions=True`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from server.queries.common.errors import QueryError
from server.queries.common.properties import property_text
from server.queries.common.sql import Params
from server.queries.sql.expression import check_expression, compile_expression

MAX_GROUP_TYPE_INDEX = 4  # group types 0-4, the reference's `$group_0` .. `$group_4`
SESSION_KEY = "$session_id"
# The one expression aggregated by until SQL insights exist, in its whitespace variants.
_SESSION_EXPRESSION = re.compile(r"\s*properties\s*\.\s*\$session_id\s*")
# The reference takes this expression as the default (aggregating by persons).
_PERSON_EXPRESSION = re.compile(r"\s*(person_id)?\s*")


@dataclass(frozen=True)
class Aggregation:
    """What one actor is: "person", "group" (with its type index), "session" or "expression" (with
    its text and the field path that gave it)."""

    kind: str
    group_type_index: int | None = None
    expression: str | None = None
    path: str = ""


PERSONS = Aggregation("person")


def aggregation(
    group_type_index: int | None,
    expression: str | None,
    *,
    group_path: str,
    expression_path: str,
    later: list[tuple[str, str]],
    expressions: bool = False,
) -> Aggregation:
    """The checked aggregation of a query. QueryError naming `group_path` for an index outside
    0-4. An expression other than `properties.$session_id` (or `person_id`): with `expressions`
    (the caller computes them) checked (QueryError naming `expression_path`) and kept, else it goes
    to `later` ((field path, what)) to be refused as not built yet; so does one together with a
    group type."""
    person = expression is None or _PERSON_EXPRESSION.fullmatch(expression) is not None
    session = expression is not None and _SESSION_EXPRESSION.fullmatch(expression) is not None
    if group_type_index is not None:
        if not 0 <= group_type_index <= MAX_GROUP_TYPE_INDEX:
            raise QueryError(
                f"aggregation_group_type_index must be between 0 and {MAX_GROUP_TYPE_INDEX} (got {group_type_index})",
                group_path,
            )
        if not person:
            # The reference lets the group type win; taking one and ignoring the other is no answer.
            later.append((expression_path, "an aggregation expression together with a group type"))
        return Aggregation("group", group_type_index)
    if session:
        return Aggregation("session")
    if person:
        return PERSONS
    assert expression is not None
    if not expressions:
        later.append((expression_path, "aggregating by expressions other than properties.$session_id"))
        return PERSONS
    check_expression(expression, path=expression_path)
    return Aggregation("expression", expression=expression, path=expression_path)


@dataclass(frozen=True)
class ActorSql:
    """The actor of an event as SQL, and the condition an event needs to have one (None: always)."""

    expression: str
    condition: str | None


def actor_sql(params: Params, agg: Aggregation, timezone: str = "UTC") -> ActorSql:
    """SQL for the actor of an event row of `events`. A group's or session's key is the event
    property's text (a missing key, JSON null and '' are no key: the event has no actor); an
    expression's actor is its value as text (NULL and '' are none, as the reference's
    `aggregation_target != '' AND aggregation_target IS NOT NULL`), `timezone` the one its
    `timestamp` reads in."""
    if agg.kind == "person":
        return ActorSql("person_id", None)
    if agg.kind == "expression":
        assert agg.expression is not None
        value = compile_expression(agg.expression, params, path=agg.path, timezone=timezone)
        text = f"ifNull(toString({value}), '')"
        return ActorSql(text, f"notEmpty({text})")
    key = SESSION_KEY if agg.kind == "session" else f"$group_{agg.group_type_index}"
    text = f"ifNull({property_text(params, key, 'event')}, '')"
    return ActorSql(text, f"notEmpty({text})")
