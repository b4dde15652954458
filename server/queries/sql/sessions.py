"""The `sessions` virtual table: one row per `$session_id` of the caller's environment, computed from
its events at query time (no stored sessions table), under the reference's column names."""

from __future__ import annotations

from functools import lru_cache

from sqlglot import exp

from server.queries.sql.dialect import parse, render
from server.queries.sql.guards import TEAM_PARAM

SESSIONS = "sessions"
# A session that lasts at least this long is no bounce (the reference's default, 10 s).
BOUNCE_SECONDS = 10

# Every event of the session in time order; the uuid breaks ties so that "first" and "last" are
# always the same event (the oracle relies on it).
_ORDER = "(__s.timestamp, __s.uuid)"
_URL = "JSONExtractString(__s.properties, '$current_url')"
_START = "min(__s.timestamp)"
_END = "max(__s.timestamp)"
_DURATION = f"dateDiff('second', {_START}, {_END})"
_PAGEVIEWS = "countIf(__s.event = '$pageview')"
_AUTOCAPTURES = "countIf(__s.event = '$autocapture')"
# The first and the last URL the session's events carry (events without `$current_url` are skipped;
# NULL when none has one).
_ENTRY_URL = f"nullIf(argMinIf({_URL}, {_ORDER}, {_URL} != ''), '')"
_END_URL = f"nullIf(argMaxIf({_URL}, {_ORDER}, {_URL} != ''), '')"
# The reference's rule: no pageview -> NULL (counts neither way); else a bounce unless the session
# has more than one pageview, an autocapture, or lasts BOUNCE_SECONDS or more.
_IS_BOUNCE = (
    f"if({_PAGEVIEWS} = 0, NULL, toBool({_PAGEVIEWS} <= 1 AND {_AUTOCAPTURES} = 0 "
    f"AND {_DURATION} < {BOUNCE_SECONDS}))"
)

# What `sessions` shows, by column name (README "SQL insights: the sessions table" documents them).
SESSION_COLUMNS: dict[str, str] = {
    "session_id": "__s.`$session_id`",
    "id": "__s.`$session_id`",  # the reference's alias of session_id
    "distinct_id": f"argMax(__s.distinct_id, {_ORDER})",  # the last event's, as the reference
    "person_id": f"argMax(__s.person_id, {_ORDER})",
    "$start_timestamp": _START,
    "$end_timestamp": _END,
    "$session_duration": _DURATION,
    "duration": _DURATION,  # the reference's older name of $session_duration
    "$entry_current_url": _ENTRY_URL,
    "$entry_pathname": f"path({_ENTRY_URL})",
    "$end_current_url": _END_URL,
    "$end_pathname": f"path({_END_URL})",
    "$exit_current_url": _END_URL,  # the reference's older name of $end_current_url
    "$exit_pathname": f"path({_END_URL})",
    "$pageview_count": _PAGEVIEWS,
    "$autocapture_count": _AUTOCAPTURES,
    "$screen_count": "countIf(__s.event = '$screen')",
    "$event_count": "count()",
    "$is_bounce": _IS_BOUNCE,
}


def sessions_sql() -> str:
    """The subquery `sessions` becomes: the environment filter inside it, the id a bound parameter;
    events without a `$session_id` are in no session."""
    columns = ", ".join(f"{expression} AS `{name}`" for name, expression in SESSION_COLUMNS.items())
    return (
        f"SELECT {columns} FROM events AS __s "
        f"WHERE __s.team_id = {{{TEAM_PARAM}:Int64}} AND __s.`$session_id` != '' GROUP BY __s.`$session_id`"
    )


@lru_cache(maxsize=1)
def sessions_guard() -> str:
    """The engine's text of the guarded subquery standing for `sessions`: parsed and printed once."""
    tree = parse(sessions_sql())[0]
    assert isinstance(tree, exp.Query)
    return render(tree)
